/* pf demo, scene "http": 1,000 agents calling a local HTTP server at once
 * on 2 worker threads, on real I/O.
 *
 * The scene starts a libmicrohttpd server on 127.0.0.1 that is busy for a
 * third of its callers (a 503 to their first request), then starts 1,000 runs of an agent at once, each one
 * state calling the server through pf_ctx_curl (an asynchronous state: no
 * thread waits for the answer) with the HTTP config of docs/curl.md: a
 * failure-rate breaker, a bulkhead, 3 retries and a 2 s timeout per
 * attempt. Every run must complete; the retries absorb the 503s and the
 * breaker stays closed. It runs on the system clock, on an executor of its
 * own with 2 workers (not the demo's manual clock).
 *
 * Built only when the pf tool finds puffinflow-curl (libcurl) and
 * libmicrohttpd; otherwise the scene says so and is skipped. */
#include <stdio.h>

#include "demo.h"

#ifndef PF_DEMO_HTTP

int
demo_scene_http(demo_t *d)
{
    demo_note(d, "skipped: the pf tool was built without libcurl and "
                 "libmicrohttpd (Debian: libcurl4-openssl-dev "
                 "libmicrohttpd-dev; then rebuild)");
    return 0;
}

#else

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <microhttpd.h>

#include "puffinflow/breaker.h"
#include "puffinflow/bulkhead.h"
#include "puffinflow/curl.h"

#define AGENTS 1000

static atomic_uint g_served;
static atomic_uint g_per_caller[AGENTS]; /* requests from caller ?id=N */

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *conn, const char *url,
           const char *method, const char *version, const char *data,
           size_t *size, void **ctx)
{
    static int seen;
    const char *id;
    unsigned n;
    bool busy;
    struct MHD_Response *r;
    enum MHD_Result ret;

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
    atomic_fetch_add(&g_served, 1);
    id = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "id");
    n = id != NULL ? (unsigned)strtoul(id, NULL, 10) : AGENTS;
    /* Busy for every third caller's first request. */
    busy = n >= AGENTS ||
           (n % 3 == 0 && atomic_fetch_add(&g_per_caller[n], 1) == 0);
    r = MHD_create_response_from_buffer(2, (void *)"ok",
                                        MHD_RESPMEM_PERSISTENT);
    ret = MHD_queue_response(conn, busy ? 503 : 200, r);
    MHD_destroy_response(r);
    return ret;
}

static size_t
discard(char *p, size_t size, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return size * n;
}

typedef struct http_scene {
    pf_curl_client_t *client;
} http_scene_t;

static int
call_api(pf_ctx_t *ctx, void *arg)
{
    http_scene_t *s = arg;
    void *easy = NULL;

    if (pf_ctx_get_ptr(ctx, "easy", &easy) != 0) {
        return PF_EINVAL;
    }
    return pf_ctx_curl(ctx, s->client, easy);
}

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct one {
    CURL *easy;
    pf_ctx_t *ctx;
    pf_run_t *run;
} one_t;

/* Start the 1,000 runs, wait for them, count what happened. */
static void
run_all(demo_t *d, pf_executor_t *ex, http_scene_t *s, unsigned port)
{
    static const pf_backoff_t backoff = {0.05, 2.0, 1.0, PF_JITTER_FULL};
    static one_t runs[AGENTS];
    pf_breaker_config_t bc;
    pf_bulkhead_config_t hc;
    pf_agent_config_t acfg;
    pf_state_opts_t o;
    pf_agent_t *a = NULL;
    unsigned completed = 0;
    unsigned attempts = 0;
    unsigned started = 0;
    char url[80];
    double t0;
    double took;
    int i;

    pf_agent_config_init(&acfg);
    acfg.name = "api_caller";
    acfg.executor = ex;
    pf_breaker_config_init(&bc);
    bc.window = PF_BREAKER_WINDOW_COUNT;
    bc.window_size = 100;
    bc.minimum_calls = 50;
    bc.failure_rate_threshold = 60.0;
    pf_bulkhead_config_init(&hc);
    hc.max_concurrent_calls = 500;
    hc.max_queue_size = AGENTS;
    hc.max_wait_duration = 0.0;
    pf_state_opts_init(&o);
    o.max_retries = 3;
    o.backoff = &backoff;
    o.timeout = 2.0;
    o.own_breaker = true;
    o.breaker_config = &bc;
    o.own_bulkhead = true;
    o.bulkhead_config = &hc;
    if (pf_agent_new_ex(&acfg, &a) != 0 ||
        pf_agent_add_state(a, "call_api", call_api, s, &o) != 0) {
        demo_expect(d, false, "the agent to be set up");
        pf_agent_free(a);
        return;
    }
    demo_note(d, "agent api_caller: state call_api = one GET through "
                 "pf_ctx_curl; breaker (failure rate over 100 calls, open "
                 "at 60 %%), bulkhead of 500, 3 retries, 2 s per attempt");
    t0 = now_s();
    for (i = 0; i < AGENTS; i++) {
        runs[i].easy = curl_easy_init();
        runs[i].ctx = NULL;
        runs[i].run = NULL;
        if (runs[i].easy == NULL) {
            break;
        }
        snprintf(url, sizeof(url), "http://127.0.0.1:%u/api?id=%d", port, i);
        curl_easy_setopt(runs[i].easy, CURLOPT_URL, url);
        curl_easy_setopt(runs[i].easy, CURLOPT_WRITEFUNCTION, discard);
        if (pf_ctx_new(&runs[i].ctx) != 0 ||
            pf_ctx_set_ptr(runs[i].ctx, "easy", runs[i].easy, NULL) != 0 ||
            pf_agent_start(a, runs[i].ctx, NULL, &runs[i].run) != 0) {
            break;
        }
        started++;
    }
    demo_note(d, "%u runs started at once on 2 worker threads", started);
    for (i = 0; i < (int)started; i++) {
        pf_run_result_t res;
        pf_state_result_t sr;

        if (pf_run_wait(runs[i].run, NULL, &res) == 0) {
            completed++;
        }
        if (pf_run_result_find(&res, "call_api", &sr) == 0) {
            attempts += sr.attempts;
        }
        pf_run_result_free(&res);
        pf_run_free(runs[i].run);
    }
    took = now_s() - t0;
    for (i = 0; i < AGENTS; i++) {
        pf_ctx_free(runs[i].ctx);
        curl_easy_cleanup(runs[i].easy);
    }
    demo_note(d, "%u of %d runs completed in %.2f s: %u attempts, %u "
                 "answers served (a third of the callers got a 503 first, "
                 "and retried)",
              completed, AGENTS, took, attempts, atomic_load(&g_served));
    demo_expect(d, started == AGENTS && completed == AGENTS,
                "all %d runs to complete (%u did)", AGENTS, completed);
    demo_expect(d, attempts == AGENTS + (AGENTS + 2) / 3,
                "each busy caller to retry once (%u attempts)", attempts);
    pf_agent_free(a);
}

int
demo_scene_http(demo_t *d)
{
    pf_executor_config_t ecfg;
    pf_executor_t *ex = NULL;
    pf_curl_config_t ccfg;
    http_scene_t s = {NULL};
    struct MHD_Daemon *server;
    unsigned port;
    int i;

    atomic_store(&g_served, 0);
    for (i = 0; i < AGENTS; i++) {
        atomic_store(&g_per_caller[i], 0);
    }
    server = MHD_start_daemon(
        MHD_USE_EPOLL_INTERNAL_THREAD, 0, NULL, NULL, on_request, NULL,
        MHD_OPTION_CONNECTION_LIMIT, 4000u, MHD_OPTION_LISTEN_BACKLOG_SIZE,
        2048u, MHD_OPTION_END);
    if (server == NULL) {
        demo_expect(d, false, "a local HTTP server to start");
        return demo_verdict(d);
    }
    port = MHD_get_daemon_info(server, MHD_DAEMON_INFO_BIND_PORT)->port;
    demo_note(d, "this scene runs on real time and real sockets, on an "
                 "executor of its own");
    demo_note(d, "a local HTTP server on 127.0.0.1:%u (busy for a third of "
                 "its callers: a 503 to their first request)", port);
    pf_executor_config_init(&ecfg);
    ecfg.workers = 2;
    pf_curl_config_init(&ccfg);
    if (pf_executor_new(&ecfg, &ex) == 0) {
        ccfg.executor = ex;
        if (pf_curl_client_new(&ccfg, &s.client) == 0) {
            run_all(d, ex, &s, port);
            pf_curl_client_free(s.client);
        } else {
            demo_expect(d, false, "an HTTP client");
        }
        pf_executor_free(ex);
    } else {
        demo_expect(d, false, "an executor of 2 workers");
    }
    MHD_stop_daemon(server);
    return demo_verdict(d);
}

#endif /* PF_DEMO_HTTP */
