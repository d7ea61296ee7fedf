/* The reference's ResilientAgent on real I/O: a state calls a local HTTP
 * API (libmicrohttpd, started here) through pf_ctx_curl, behind its own
 * circuit breaker (5 failures in a row open it, 0.5 s before a trial);
 * while the breaker is open the state's fallback answers from a cache.
 * (examples/resilient_agent.c is the same agent on a manual clock.)
 *
 * 1. The API is down (503): the first 5 runs fail with 503, the breaker
 *    opens, and the next 5 are answered by the fallback without a request.
 * 2. The API is back: after the recovery timeout, the trial call succeeds
 *    and the breaker closes.
 *
 * Prints what happened; exits 0 only if exactly that happened. */
#include <stdio.h>

#include "puffinflow/agent.h"
#include "puffinflow/breaker.h"

#include "example_server.h"

static atomic_int g_up;       /* the API answers 200 */
static atomic_int g_requests; /* requests the API saw */

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *conn, const char *url,
           const char *method, const char *version, const char *data,
           size_t *size, void **ctx)
{
    static int seen;

    (void)cls;
    (void)url;
    (void)method;
    (void)version;
    (void)data;
    (void)size;
    if (*ctx == NULL) {
        *ctx = &seen; /* answer on the second call: keeps the connection */
        return MHD_YES;
    }
    atomic_fetch_add(&g_requests, 1);
    return atomic_load(&g_up) ? ex_reply(conn, 200, "fresh", NULL)
                              : ex_reply(conn, 503, "down", NULL);
}

/* The `except CircuitBreakerOpenError` branch: the cached response. */
static int
cached_response(pf_ctx_t *ctx, void *arg, int reason)
{
    (void)arg;
    (void)reason; /* PF_EOPEN */
    return pf_ctx_set_string(ctx, "api_response", "cached");
}

/* One run: 'f' failed with 503, 'c' answered from the cache, 'o' a fresh
 * answer, '?' anything else. */
static char
one_run(pf_agent_t *a)
{
    pf_run_result_t res;
    pf_state_result_t sr;
    char what = '?';

    (void)pf_agent_run(a, NULL, &res);
    if (pf_run_result_find(&res, "call_external_api", &sr) == 0) {
        if (sr.outcome == PF_STATE_FAILED && sr.error == 503) {
            what = 'f';
        } else if (sr.outcome == PF_STATE_COMPLETED && sr.fell_back &&
                   sr.error == PF_EOPEN) {
            what = 'c';
        } else if (sr.outcome == PF_STATE_COMPLETED && !sr.fell_back) {
            what = 'o';
        }
    }
    pf_run_result_free(&res);
    return what;
}

int
main(void)
{
    struct MHD_Daemon *d;
    pf_executor_config_t ecfg;
    pf_executor_t *ex = NULL;
    pf_curl_config_t ccfg;
    pf_curl_client_t *client = NULL;
    pf_breaker_config_t bc;
    pf_agent_config_t acfg;
    pf_state_opts_t o;
    pf_agent_t *a = NULL;
    ex_call_t call;
    char url[64];
    char seen[16] = {0};
    unsigned port;
    int down_requests;
    struct timespec nap = {0, 600000000};
    int i;
    int ok;

    d = ex_server_start(on_request, &port);
    pf_executor_config_init(&ecfg);
    ecfg.workers = 2;
    if (d == NULL || pf_executor_new(&ecfg, &ex) != 0) {
        return 1;
    }
    pf_curl_config_init(&ccfg);
    ccfg.executor = ex;
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/api", port);
    call.easy = ex_easy(url);
    pf_agent_config_init(&acfg);
    acfg.name = "ResilientAgent";
    acfg.executor = ex;
    pf_breaker_config_init(&bc);
    bc.failure_threshold = 5;
    bc.recovery_timeout = 0.5;
    pf_state_opts_init(&o);
    o.max_retries = 0;
    o.timeout = 2.0;
    o.own_breaker = true;
    o.breaker_config = &bc;
    o.fallback = cached_response;
    if (call.easy == NULL || pf_curl_client_new(&ccfg, &client) != 0 ||
        pf_agent_new_ex(&acfg, &a) != 0 ||
        pf_agent_add_state(a, "call_external_api", ex_fetch, &call, &o) !=
            0) {
        return 1;
    }
    call.client = client;

    for (i = 0; i < 10; i++) {
        seen[i] = one_run(a);
    }
    down_requests = atomic_load(&g_requests);
    printf("API down: runs %s (f = failed with 503, c = the cache answered "
           "while the breaker was open); the API saw %d requests\n",
           seen, down_requests);

    atomic_store(&g_up, 1);
    nanosleep(&nap, NULL); /* past the 0.5 s recovery timeout */
    seen[10] = one_run(a);
    seen[11] = one_run(a);
    printf("API back, after the recovery timeout: runs %c%c (o = a fresh "
           "answer); the API saw %d requests in all\n",
           seen[10], seen[11], atomic_load(&g_requests));

    ok = strcmp(seen, "fffffcccccoo") == 0 && down_requests == 5 &&
         atomic_load(&g_requests) == 7;
    pf_agent_free(a);
    pf_curl_client_free(client);
    pf_executor_free(ex);
    curl_easy_cleanup(call.easy);
    MHD_stop_daemon(d);
    printf("%s\n", ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
}
