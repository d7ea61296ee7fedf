/* Resilient HTTP calls as asynchronous states, on real I/O: a local
 * libmicrohttpd server whose /flaky endpoint answers 503 to the first two
 * calls of each caller (?id=N) and 200 to the third, and whose /slow endpoint never finishes; 50 agent runs at once,
 * each one state calling /flaky through pf_ctx_curl with retries, a
 * breaker and a 2 s timeout; then one state calling /slow with a 0.2 s
 * timeout, which removes the transfer (the server sees the connection
 * close). Runs on the real clock; prints what happened; exits 0 when every
 * /flaky run completed and /slow timed out. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <microhttpd.h>

#include "puffinflow/agent.h"
#include "puffinflow/curl.h"

#define RUNS 50

#define RUNS_MAX 64

static atomic_int g_calls;       /* requests to /flaky */
static atomic_int g_per_id[RUNS_MAX];
static atomic_int g_slow_closed; /* /slow requests the client ended */

static enum MHD_Result
reply(struct MHD_Connection *conn, unsigned status, const char *body)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
    enum MHD_Result ret = MHD_queue_response(conn, status, r);

    MHD_destroy_response(r);
    return ret;
}

/* /slow: one byte every 10 ms, for ever. */
static ssize_t
trickle(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct timespec nap = {0, 10000000};

    (void)cls;
    (void)pos;
    (void)max;
    nanosleep(&nap, NULL);
    buf[0] = '.';
    return 1;
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *conn, const char *url,
           const char *method, const char *version, const char *data,
           size_t *size, void **ctx)
{
    static int seen;
    struct MHD_Response *r;
    enum MHD_Result ret;

    (void)cls;
    (void)method;
    (void)version;
    (void)data;
    (void)size;
    if (*ctx == NULL) {
        *ctx = &seen; /* answer on the second call: keeps the connection */
        return MHD_YES;
    }
    if (strcmp(url, "/slow") == 0) {
        r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 1, trickle,
                                              NULL, NULL);
        ret = MHD_queue_response(conn, 200, r);
        MHD_destroy_response(r);
        return ret;
    }
    {
        const char *id = MHD_lookup_connection_value(
            conn, MHD_GET_ARGUMENT_KIND, "id");
        int n = id != NULL ? atoi(id) : 0;

        atomic_fetch_add(&g_calls, 1);
        if (n < 0 || n >= RUNS_MAX ||
            atomic_fetch_add(&g_per_id[n], 1) < 2) {
            return reply(conn, 503, "busy");
        }
        return reply(conn, 200, "ok");
    }
}

static void
on_completed(void *cls, struct MHD_Connection *conn, void **ctx,
             enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)ctx;
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK) {
        atomic_fetch_add(&g_slow_closed, 1);
    }
}

typedef struct call {
    pf_curl_client_t *client;
    CURL *easy;
} call_t;

static size_t
discard(char *p, size_t size, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return size * n;
}

static int
fetch(pf_ctx_t *ctx, void *arg)
{
    call_t *c = arg;

    return pf_ctx_curl(ctx, c->client, c->easy);
}

/* An agent of one state calling c's URL with these options. */
static pf_agent_t *
http_agent(pf_executor_t *ex, call_t *c, unsigned retries, double timeout)
{
    static const pf_backoff_t backoff = {0.01, 2.0, 0.1, PF_JITTER_FULL};
    pf_breaker_config_t bc;
    pf_agent_config_t cfg;
    pf_state_opts_t o;
    pf_agent_t *a = NULL;

    pf_agent_config_init(&cfg);
    cfg.executor = ex;
    if (pf_agent_new_ex(&cfg, &a) != 0) {
        return NULL;
    }
    pf_breaker_config_init(&bc);
    bc.failure_threshold = 5;
    pf_state_opts_init(&o);
    o.max_retries = retries;
    o.backoff = &backoff;
    o.timeout = timeout;
    o.own_breaker = true;
    o.breaker_config = &bc;
    if (pf_agent_add_state(a, "fetch", fetch, c, &o) != 0) {
        pf_agent_free(a);
        return NULL;
    }
    return a;
}

int
main(void)
{
    static call_t calls[RUNS];
    static pf_agent_t *agents[RUNS];
    static pf_run_t *runs[RUNS];
    struct MHD_Daemon *d;
    pf_executor_config_t ecfg;
    pf_executor_t *ex;
    pf_curl_config_t ccfg;
    pf_curl_client_t *client;
    char url[64];
    unsigned port;
    int completed = 0;
    unsigned attempts = 0;
    int slow_rc;
    int i;

    d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION |
                             MHD_USE_INTERNAL_POLLING_THREAD,
                         0, NULL, NULL, on_request, NULL,
                         MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
                         MHD_OPTION_END);
    if (d == NULL) {
        return 1;
    }
    port = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT)->port;
    pf_executor_config_init(&ecfg);
    ecfg.workers = 2;
    pf_curl_config_init(&ccfg);
    if (pf_executor_new(&ecfg, &ex) != 0) {
        return 1;
    }
    ccfg.executor = ex;
    if (pf_curl_client_new(&ccfg, &client) != 0) {
        return 1;
    }

    /* 50 runs at once against /flaky: retries get every one through. */
    for (i = 0; i < RUNS; i++) {
        snprintf(url, sizeof(url), "http://127.0.0.1:%u/flaky?id=%d", port,
                 i);
        calls[i].client = client;
        calls[i].easy = curl_easy_init();
        curl_easy_setopt(calls[i].easy, CURLOPT_URL, url);
        curl_easy_setopt(calls[i].easy, CURLOPT_WRITEFUNCTION, discard);
        agents[i] = http_agent(ex, &calls[i], 3, 2.0);
        if (agents[i] == NULL ||
            pf_agent_start(agents[i], NULL, NULL, &runs[i]) != 0) {
            return 1;
        }
    }
    for (i = 0; i < RUNS; i++) {
        pf_run_result_t res;
        pf_state_result_t sr;

        if (pf_run_wait(runs[i], NULL, &res) == 0) {
            completed++;
        }
        if (pf_run_result_find(&res, "fetch", &sr) == 0) {
            attempts += sr.attempts;
        }
        pf_run_result_free(&res);
        pf_run_free(runs[i]);
        pf_agent_free(agents[i]);
        curl_easy_cleanup(calls[i].easy);
    }
    printf("/flaky (503, 503, then 200 per caller): %d of %d runs completed, "
           "%u attempts, %d requests served\n",
           completed, RUNS, attempts, atomic_load(&g_calls));

    /* /slow with a 0.2 s timeout: the transfer is removed at once. */
    {
        pf_agent_t *a;

        snprintf(url, sizeof(url), "http://127.0.0.1:%u/slow", port);
        calls[0].easy = curl_easy_init();
        curl_easy_setopt(calls[0].easy, CURLOPT_URL, url);
        curl_easy_setopt(calls[0].easy, CURLOPT_WRITEFUNCTION, discard);
        a = http_agent(ex, &calls[0], 0, 0.2);
        slow_rc = a != NULL ? pf_agent_run(a, NULL, NULL) : -1;
        pf_agent_free(a);
        curl_easy_cleanup(calls[0].easy);
    }
    pf_curl_client_free(client);
    pf_executor_free(ex);
    MHD_stop_daemon(d);
    printf("/slow with a 0.2 s timeout: %s; the server saw %d request(s) "
           "ended by the client\n",
           pf_strerror(slow_rc), atomic_load(&g_slow_closed));
    return completed == RUNS && slow_rc == PF_ETIMEDOUT ? 0 : 1;
}
