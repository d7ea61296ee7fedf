/* The reference's HighlyResilientAgent on real I/O: 20 runs at once of a
 * state calling a local HTTP API (libmicrohttpd, started here; it takes
 * 50 ms per answer) through pf_ctx_curl, behind a circuit breaker, a
 * bulkhead of 5 and 3 retries. The API is overloaded at first: each
 * caller's first request gets 429 with "Retry-After: 1". The retries honour
 * it (the backoff alone would retry after 10-20 ms), the bulkhead keeps at
 * most 5 requests at the API at once, and the breaker — a failure-rate
 * window with a minimum of calls, as recommended for HTTP (docs/curl.md) —
 * does not trip on the one burst of 429s. (examples/highly_resilient_agent.c
 * is the manual-clock version.)
 *
 * Prints what happened; exits 0 only if every run completed on its second
 * attempt, each retry came at least 1 s after its 429, and the API never
 * had more than 5 requests at once. */
#include <stdio.h>
#include <stdlib.h>

#include "puffinflow/agent.h"
#include "puffinflow/breaker.h"
#include "puffinflow/bulkhead.h"

#include "example_server.h"

#define RUNS 20

static atomic_int g_calls[RUNS];
static double g_first_at[RUNS]; /* when caller N got its 429 */
static double g_second_at[RUNS];
static atomic_int g_in_flight;
static atomic_int g_max_in_flight;

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *conn, const char *url,
           const char *method, const char *version, const char *data,
           size_t *size, void **ctx)
{
    static int seen;
    struct timespec nap = {0, 50000000};
    const char *id;
    int n;
    int now;
    int max;
    int call;

    (void)cls;
    (void)url;
    (void)method;
    (void)version;
    (void)data;
    (void)size;
    if (*ctx == NULL) {
        *ctx = &seen;
        return MHD_YES;
    }
    id = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "id");
    n = id != NULL ? atoi(id) : -1;
    if (n < 0 || n >= RUNS) {
        return ex_reply(conn, 404, "no", NULL);
    }
    now = atomic_fetch_add(&g_in_flight, 1) + 1;
    max = atomic_load(&g_max_in_flight);
    while (now > max &&
           !atomic_compare_exchange_weak(&g_max_in_flight, &max, now)) {
    }
    nanosleep(&nap, NULL); /* the API's own work */
    atomic_fetch_sub(&g_in_flight, 1);
    call = atomic_fetch_add(&g_calls[n], 1);
    if (call == 0) {
        g_first_at[n] = ex_now();
        return ex_reply(conn, 429, "too many requests", "1");
    }
    if (call == 1) {
        g_second_at[n] = ex_now();
    }
    return ex_reply(conn, 200, "ok", NULL);
}

/* Each run's transfer is its own: the state finds it in the run's ctx. */
static int
fetch(pf_ctx_t *ctx, void *arg)
{
    void *easy = NULL;

    if (pf_ctx_get_ptr(ctx, "easy", &easy) != 0) {
        return PF_EINVAL;
    }
    return pf_ctx_curl(ctx, arg, easy);
}

int
main(void)
{
    static const pf_backoff_t backoff = {0.01, 2.0, 5.0, PF_JITTER_EQUAL};
    struct MHD_Daemon *d;
    pf_executor_config_t ecfg;
    pf_executor_t *ex = NULL;
    pf_curl_config_t ccfg;
    pf_curl_client_t *client = NULL;
    pf_breaker_config_t bc;
    pf_bulkhead_config_t hc;
    pf_agent_config_t acfg;
    pf_state_opts_t o;
    pf_agent_t *a = NULL;
    CURL *easy[RUNS];
    pf_ctx_t *ctx[RUNS];
    pf_run_t *run[RUNS];
    char url[80];
    unsigned port;
    int second_attempt = 0;
    double min_gap = 1e9;
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
    pf_agent_config_init(&acfg);
    acfg.name = "HighlyResilientAgent";
    acfg.executor = ex;
    pf_breaker_config_init(&bc);
    bc.window = PF_BREAKER_WINDOW_COUNT;
    bc.window_size = 100;
    bc.minimum_calls = 50;
    bc.failure_rate_threshold = 50.0;
    bc.recovery_timeout = 5.0;
    pf_bulkhead_config_init(&hc);
    hc.max_concurrent_calls = 5;
    hc.max_queue_size = RUNS;
    hc.max_wait_duration = 10.0;
    pf_state_opts_init(&o);
    o.max_retries = 3;
    o.backoff = &backoff;
    o.timeout = 2.0;
    o.own_breaker = true;
    o.breaker_config = &bc;
    o.own_bulkhead = true;
    o.bulkhead_config = &hc;
    if (pf_curl_client_new(&ccfg, &client) != 0 ||
        pf_agent_new_ex(&acfg, &a) != 0 ||
        pf_agent_add_state(a, "call_api", fetch, client, &o) != 0) {
        return 1;
    }
    for (i = 0; i < RUNS; i++) {
        snprintf(url, sizeof(url), "http://127.0.0.1:%u/api?id=%d", port, i);
        easy[i] = ex_easy(url);
        if (easy[i] == NULL || pf_ctx_new(&ctx[i]) != 0 ||
            pf_ctx_set_ptr(ctx[i], "easy", easy[i], NULL) != 0 ||
            pf_agent_start(a, ctx[i], NULL, &run[i]) != 0) {
            return 1;
        }
    }
    for (i = 0; i < RUNS; i++) {
        pf_run_result_t res;
        pf_state_result_t sr;

        if (pf_run_wait(run[i], NULL, &res) == 0 &&
            pf_run_result_find(&res, "call_api", &sr) == 0 &&
            sr.outcome == PF_STATE_COMPLETED && sr.attempts == 2) {
            second_attempt++;
        }
        pf_run_result_free(&res);
        pf_run_free(run[i]);
        pf_ctx_free(ctx[i]);
        curl_easy_cleanup(easy[i]);
        if (atomic_load(&g_calls[i]) >= 2 &&
            g_second_at[i] - g_first_at[i] < min_gap) {
            min_gap = g_second_at[i] - g_first_at[i];
        }
    }
    printf("%d of %d runs completed on their second attempt; the shortest "
           "wait between a 429 (Retry-After: 1) and its retry: %.3f s; at "
           "most %d requests at the API at once (bulkhead of 5)\n",
           second_attempt, RUNS, min_gap, atomic_load(&g_max_in_flight));
    /* The gap is measured between the server's answers, each after 50 ms
     * of work: the retry's request left at least 1 s after the 429. */
    ok = second_attempt == RUNS && min_gap >= 1.0 &&
         atomic_load(&g_max_in_flight) <= 5;
    pf_agent_free(a);
    pf_curl_client_free(client);
    pf_executor_free(ex);
    MHD_stop_daemon(d);
    printf("%s\n", ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
}
