/* The libcurl client on the reactor, against real libmicrohttpd servers
 * this test starts on 127.0.0.1: outcomes and their classification (200,
 * 404, 408, 429 with Retry-After, 500), connection reuse, a slow endpoint
 * ended by a manual-clock deadline and by an abort while the server sees
 * the connection close, an unreachable port, bad input, the client's free
 * with transfers running, 1,000 concurrent transfers each completed
 * exactly once, the Retry-After parser; as agent states: a 429's
 * Retry-After as the retry delay (manual clock), and 10,000 states through
 * breakers and bulkheads, each run ended exactly once. */
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <microhttpd.h>

#include "puffinflow/agent.h"
#include "puffinflow/curl.h"
#include "puffinflow/deadline.h"
#include "puffinflow/executor.h"

#include "test.h"

/* ---- the servers -------------------------------------------------------- */

typedef struct server {
    struct MHD_Daemon *fast; /* epoll, 2 threads: every quick answer */
    struct MHD_Daemon *slow; /* a thread per connection: /slow trickles */
    unsigned fast_port;
    unsigned slow_port;
    atomic_int slow_started; /* requests to /slow seen */
    atomic_int slow_closed;  /* requests to /slow ended (client gone) */
    atomic_int busy_calls;   /* requests to /busy-once seen */
    atomic_int many_ok;      /* requests to /many-ok */
    atomic_int many_500;     /* requests to /many-500 */
} server_t;

static server_t g_srv;

static enum MHD_Result
reply(struct MHD_Connection *conn, unsigned status, const char *body,
      const char *retry_after)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
    enum MHD_Result ret;

    if (retry_after != NULL) {
        MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, retry_after);
    }
    ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result
on_fast(void *cls, struct MHD_Connection *conn, const char *url,
        const char *method, const char *version, const char *data,
        size_t *size, void **ctx)
{
    static int first;

    (void)cls;
    (void)method;
    (void)version;
    (void)data;
    (void)size;
    if (*ctx == NULL) {
        /* Answering on the first call (headers only) would make
         * libmicrohttpd close the connection after the response. */
        *ctx = &first;
        return MHD_YES;
    }
    if (strcmp(url, "/500") == 0) {
        return reply(conn, 500, "boom", NULL);
    }
    if (strcmp(url, "/429") == 0) {
        return reply(conn, 429, "later", "7");
    }
    if (strcmp(url, "/many-ok") == 0) {
        atomic_fetch_add(&g_srv.many_ok, 1);
        return reply(conn, 200, "ok", NULL);
    }
    if (strcmp(url, "/many-500") == 0) {
        atomic_fetch_add(&g_srv.many_500, 1);
        return reply(conn, 500, "boom", NULL);
    }
    if (strcmp(url, "/busy-once") == 0) { /* 429, Retry-After: 3; then ok */
        return atomic_fetch_add(&g_srv.busy_calls, 1) == 0
                   ? reply(conn, 429, "later", "3")
                   : reply(conn, 200, "ok", NULL);
    }
    if (strcmp(url, "/503date") == 0) {
        return reply(conn, 503, "later", "Wed, 21 Oct 2015 07:28:00 GMT");
    }
    if (strcmp(url, "/404") == 0) {
        return reply(conn, 404, "no", NULL);
    }
    if (strcmp(url, "/408") == 0) {
        return reply(conn, 408, "slow", NULL);
    }
    return reply(conn, 200, "ok", NULL);
}

/* /slow: one byte every 10 ms, for ever; ends when the client goes. */
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
on_slow(void *cls, struct MHD_Connection *conn, const char *url,
        const char *method, const char *version, const char *data,
        size_t *size, void **ctx)
{
    struct MHD_Response *r;
    enum MHD_Result ret;

    (void)cls;
    (void)url;
    (void)method;
    (void)version;
    (void)data;
    (void)size;
    (void)ctx;
    atomic_fetch_add(&g_srv.slow_started, 1);
    r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 1, trickle, NULL,
                                          NULL);
    ret = MHD_queue_response(conn, 200, r);
    MHD_destroy_response(r);
    return ret;
}

/* A request to the slow server ended: its client went away. */
static void
on_slow_completed(void *cls, struct MHD_Connection *conn, void **ctx,
                  enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)ctx;
    (void)toe;
    atomic_fetch_add(&g_srv.slow_closed, 1);
}

static int
servers_up(void **state)
{
    (void)state;
    memset(&g_srv, 0, sizeof(g_srv));
    g_srv.fast = MHD_start_daemon(
        MHD_USE_EPOLL_INTERNAL_THREAD, 0, NULL, NULL, on_fast, NULL,
        MHD_OPTION_THREAD_POOL_SIZE, 2u, MHD_OPTION_CONNECTION_LIMIT, 8000u,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, 4096u,
        MHD_OPTION_CONNECTION_TIMEOUT, 60u, MHD_OPTION_END);
    g_srv.slow = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD, 0,
        NULL, NULL, on_slow, NULL, MHD_OPTION_NOTIFY_COMPLETED, on_slow_completed,
        NULL, MHD_OPTION_END);
    if (g_srv.fast == NULL || g_srv.slow == NULL) {
        return -1;
    }
    g_srv.fast_port =
        MHD_get_daemon_info(g_srv.fast, MHD_DAEMON_INFO_BIND_PORT)->port;
    g_srv.slow_port =
        MHD_get_daemon_info(g_srv.slow, MHD_DAEMON_INFO_BIND_PORT)->port;
    return 0;
}

static int
servers_down(void **state)
{
    (void)state;
    MHD_stop_daemon(g_srv.fast);
    MHD_stop_daemon(g_srv.slow);
    return 0;
}

/* ---- helpers ------------------------------------------------------------ */

static pf_executor_t *
make_ex(const pf_clock_t *clock, unsigned workers)
{
    pf_executor_config_t cfg;
    pf_executor_t *ex = NULL;

    pf_executor_config_init(&cfg);
    cfg.clock = clock;
    cfg.workers = workers;
    assert_pf_ok(pf_executor_new(&cfg, &ex));
    return ex;
}

/* A client on ex with at most max_transfers in libcurl (-1: default). */
static pf_curl_client_t *
make_client_max(pf_executor_t *ex, long max_transfers)
{
    pf_curl_config_t cfg;
    pf_curl_client_t *c = NULL;

    pf_curl_config_init(&cfg);
    cfg.executor = ex;
    if (max_transfers >= 0) {
        cfg.max_transfers = max_transfers;
    }
    assert_pf_ok(pf_curl_client_new(&cfg, &c));
    return c;
}

static pf_curl_client_t *
make_client(pf_executor_t *ex)
{
    return make_client_max(ex, -1);
}

typedef struct call {
    CURL *easy;
    char body[64];
    size_t len;
    atomic_int calls;
    pf_curl_result_t r;
    long connects; /* CURLINFO_NUM_CONNECTS, read in done */
} call_t;

static size_t
on_body(char *p, size_t size, size_t n, void *arg)
{
    call_t *k = arg;
    size_t bytes = size * n;
    size_t room = sizeof(k->body) - 1 - k->len;
    size_t take = bytes < room ? bytes : room;

    memcpy(k->body + k->len, p, take);
    k->len += take;
    k->body[k->len] = '\0';
    return bytes;
}

static void
record(const pf_curl_result_t *r, void *arg)
{
    call_t *k = arg;

    k->r = *r;
    curl_easy_getinfo(r->easy, CURLINFO_NUM_CONNECTS, &k->connects);
    atomic_fetch_add(&k->calls, 1); /* seq_cst: publishes k->r */
}

static void
never(const pf_curl_result_t *r, void *arg)
{
    (void)r;
    (void)arg;
    fail_msg("done called for a start that failed");
}

static void
call_init(call_t *k, unsigned port, const char *path)
{
    char url[128];

    memset(k, 0, sizeof(*k));
    k->easy = curl_easy_init();
    assert_non_null(k->easy);
    snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", port, path);
    curl_easy_setopt(k->easy, CURLOPT_URL, url);
    curl_easy_setopt(k->easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(k->easy, CURLOPT_WRITEDATA, k);
}

/* GET path on the fast server and wait for done. */
static void
get(pf_curl_client_t *c, const char *path, call_t *k)
{
    call_init(k, g_srv.fast_port, path);
    assert_pf_ok(pf_curl_start(c, k->easy, NULL, record, k, NULL));
    pf_test_wait_for_flag(&k->calls, 1);
}

/* ---- outcomes ----------------------------------------------------------- */

static void
test_curl_get_completes_with_status_and_body(void **state)
{
    pf_executor_t *ex = make_ex(*state, 2);
    pf_curl_client_t *c = make_client(ex);
    call_t k;

    get(c, "/ok", &k);
    assert_int_equal(k.r.result, 0);
    assert_int_equal(k.r.curl_code, CURLE_OK);
    assert_int_equal(k.r.http_status, 200);
    assert_false(k.r.failure);
    assert_true(k.r.retry_after < 0);
    assert_string_equal(k.r.error, "");
    assert_ptr_equal(k.r.easy, k.easy);
    assert_string_equal(k.body, "ok");
    assert_int_equal(pf_curl_client_pending(c), 0);
    curl_easy_cleanup(k.easy);
    pf_curl_client_free(c);
    pf_executor_free(ex);
    assert_int_equal(atomic_load(&k.calls), 1);
}

static void
test_curl_classifies_statuses_for_breakers_and_retries(void **state)
{
    static const struct {
        const char *path;
        long status;
        bool failure;
    } cases[] = {
        {"/500", 500, true},  {"/429", 429, true}, {"/408", 408, true},
        {"/503date", 503, true}, {"/404", 404, false}, {"/ok", 200, false},
    };
    pf_executor_t *ex = make_ex(*state, 2);
    pf_curl_client_t *c = make_client(ex);
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        call_t k;

        get(c, cases[i].path, &k);
        assert_int_equal(k.r.result, 0);
        assert_int_equal(k.r.http_status, cases[i].status);
        assert_int_equal(k.r.failure, cases[i].failure);
        curl_easy_cleanup(k.easy);
    }
    pf_curl_client_free(c);
    pf_executor_free(ex);
}

static void
test_curl_exposes_retry_after_seconds_and_date(void **state)
{
    pf_executor_t *ex = make_ex(*state, 2);
    pf_curl_client_t *c = make_client(ex);
    call_t k;

    get(c, "/429", &k);
    assert_int_equal(k.r.http_status, 429);
    assert_true(k.r.retry_after == 7.0);
    curl_easy_cleanup(k.easy);
    get(c, "/503date", &k); /* a date in the past: retry at once */
    assert_int_equal(k.r.http_status, 503);
    assert_true(k.r.retry_after == 0.0);
    curl_easy_cleanup(k.easy);
    pf_curl_client_free(c);
    pf_executor_free(ex);
}

static void
test_curl_reuses_connections_across_transfers(void **state)
{
    pf_executor_t *ex = make_ex(*state, 2);
    pf_curl_client_t *c = make_client(ex);
    call_t a;
    call_t b;

    get(c, "/ok", &a);
    call_init(&b, g_srv.fast_port, "/ok");
    assert_pf_ok(pf_curl_start(c, b.easy, NULL, record, &b, NULL));
    pf_test_wait_for_flag(&b.calls, 1);
    assert_int_equal(a.connects, 1);
    assert_int_equal(b.connects, 0);
    curl_easy_cleanup(a.easy);
    curl_easy_cleanup(b.easy);
    pf_curl_client_free(c);
    pf_executor_free(ex);
}

/* done retries once with the same easy handle, from the worker. */
typedef struct retry_once {
    call_t k;
    pf_curl_client_t *c;
    atomic_int attempts;
} retry_once_t;

static void
retry_done(const pf_curl_result_t *r, void *arg)
{
    retry_once_t *t = arg;
    char url[64];

    if (atomic_fetch_add(&t->attempts, 1) == 0) {
        assert_true(r->failure);
        snprintf(url, sizeof(url), "http://127.0.0.1:%u/ok",
                 g_srv.fast_port);
        curl_easy_setopt(r->easy, CURLOPT_URL, url);
        assert_pf_ok(pf_curl_start(t->c, r->easy, NULL, retry_done, t, NULL));
        return;
    }
    record(r, &t->k);
}

static void
test_curl_done_may_restart_the_same_handle(void **state)
{
    pf_executor_t *ex = make_ex(*state, 2);
    retry_once_t t;

    memset(&t, 0, sizeof(t));
    t.c = make_client(ex);
    call_init(&t.k, g_srv.fast_port, "/500");
    assert_pf_ok(pf_curl_start(t.c, t.k.easy, NULL, retry_done, &t, NULL));
    pf_test_wait_for_flag(&t.k.calls, 1);
    assert_int_equal(atomic_load(&t.attempts), 2);
    assert_int_equal(t.k.r.http_status, 200);
    curl_easy_cleanup(t.k.easy);
    pf_curl_client_free(t.c);
    pf_executor_free(ex);
}

/* ---- ending a transfer early ------------------------------------------- */

static void
test_curl_manual_deadline_ends_slow_transfer_and_closes_it(void **state)
{
    pf_clock_t *clock = *state;
    pf_executor_t *ex = make_ex(clock, 2);
    pf_curl_client_t *c = make_client(ex);
    pf_deadline_t d = pf_deadline_in(clock, 2.0);
    int closed0 = atomic_load(&g_srv.slow_closed);
    int started0 = atomic_load(&g_srv.slow_started);
    call_t k;

    call_init(&k, g_srv.slow_port, "/slow");
    assert_pf_ok(pf_curl_start(c, k.easy, &d, record, &k, NULL));
    pf_test_wait_for_flag(&g_srv.slow_started, started0 + 1);
    pf_clock_manual_advance(clock, 2 * NS_PER_SEC - 1);
    assert_int_equal(atomic_load(&k.calls), 0);
    pf_clock_manual_advance(clock, 1);
    pf_test_wait_for_flag(&k.calls, 1);
    assert_int_equal(k.r.result, PF_ETIMEDOUT);
    assert_int_equal(k.r.curl_code, CURLE_ABORTED_BY_CALLBACK);
    assert_true(k.r.failure);
    assert_int_equal(pf_curl_client_pending(c), 0);
    /* The server sees the connection close at once, not at the client's
     * free (which would close cached connections). */
    pf_test_wait_for_flag(&g_srv.slow_closed, closed0 + 1);
    curl_easy_cleanup(k.easy);
    pf_curl_client_free(c);
    pf_executor_free(ex);
    assert_int_equal(atomic_load(&k.calls), 1);
}

static void
test_curl_abort_ends_transfer_with_ecanceled(void **state)
{
    pf_executor_t *ex = make_ex(*state, 2);
    pf_curl_client_t *c = make_client(ex);
    int closed0 = atomic_load(&g_srv.slow_closed);
    int started0 = atomic_load(&g_srv.slow_started);
    pf_curl_xfer_t *x;
    call_t k;

    call_init(&k, g_srv.slow_port, "/slow");
    assert_pf_ok(pf_curl_start(c, k.easy, NULL, record, &k, &x));
    pf_test_wait_for_flag(&g_srv.slow_started, started0 + 1);
    pf_curl_abort(x);
    pf_curl_abort(x); /* a no-op */
    pf_test_wait_for_flag(&k.calls, 1);
    assert_int_equal(k.r.result, PF_ECANCELED);
    assert_false(k.r.failure); /* says nothing of the server */
    pf_test_wait_for_flag(&g_srv.slow_closed, closed0 + 1);
    pf_curl_xfer_free(x);
    curl_easy_cleanup(k.easy);
    pf_curl_client_free(c);
    pf_executor_free(ex);
    assert_int_equal(atomic_load(&k.calls), 1);
}

static void
test_curl_client_free_cancels_running_transfers(void **state)
{
    pf_executor_t *ex = make_ex(*state, 2);
    pf_curl_client_t *c = make_client(ex);
    int started0 = atomic_load(&g_srv.slow_started);
    call_t k[3];
    int i;

    for (i = 0; i < 3; i++) {
        call_init(&k[i], g_srv.slow_port, "/slow");
        assert_pf_ok(pf_curl_start(c, k[i].easy, NULL, record, &k[i], NULL));
    }
    pf_test_wait_for_flag(&g_srv.slow_started, started0 + 3);
    assert_int_equal(pf_curl_client_pending(c), 3);
    pf_curl_client_free(c);
    for (i = 0; i < 3; i++) {
        assert_int_equal(atomic_load(&k[i].calls), 1); /* before return */
        assert_int_equal(k[i].r.result, PF_ECANCELED);
        curl_easy_cleanup(k[i].easy);
    }
    pf_executor_free(ex);
}

/* ---- bad input ----------------------------------------------------------- */

static void
test_curl_unreachable_port_is_a_transport_failure(void **state)
{
    pf_executor_t *ex = make_ex(*state, 2);
    pf_curl_client_t *c = make_client(ex);
    call_t k;

    call_init(&k, 1, "/"); /* nothing listens on port 1 */
    assert_pf_ok(pf_curl_start(c, k.easy, NULL, record, &k, NULL));
    pf_test_wait_for_flag(&k.calls, 1);
    assert_int_equal(k.r.result, PF_ESYSTEM);
    assert_int_equal(k.r.curl_code, CURLE_COULDNT_CONNECT);
    assert_int_equal(k.r.http_status, 0);
    assert_true(k.r.failure);
    assert_string_equal(k.r.error, curl_easy_strerror(CURLE_COULDNT_CONNECT));
    curl_easy_cleanup(k.easy);
    pf_curl_client_free(c);
    pf_executor_free(ex);
}

static void
test_curl_rejects_null_and_busy_handles(void **state)
{
    pf_executor_t *ex = make_ex(*state, 2);
    pf_curl_client_t *c = make_client(ex);
    pf_curl_xfer_t *x = (pf_curl_xfer_t *)&x;
    int started0 = atomic_load(&g_srv.slow_started);
    call_t k;

    call_init(&k, g_srv.slow_port, "/slow");
    assert_pf_err(pf_curl_start(NULL, k.easy, NULL, never, NULL, NULL),
                  PF_EINVAL);
    assert_pf_err(pf_curl_start(c, NULL, NULL, never, NULL, NULL), PF_EINVAL);
    assert_pf_err(pf_curl_start(c, k.easy, NULL, NULL, NULL, NULL),
                  PF_EINVAL);
    assert_pf_ok(pf_curl_start(c, k.easy, NULL, record, &k, NULL));
    /* The same handle while its transfer runs. */
    assert_pf_err(pf_curl_start(c, k.easy, NULL, never, NULL, &x),
                  PF_ESTATE);
    assert_ptr_equal(x, (pf_curl_xfer_t *)&x); /* untouched */
    assert_int_equal(pf_curl_client_pending(c), 1);
    pf_test_wait_for_flag(&g_srv.slow_started, started0 + 1);
    pf_curl_client_free(c); /* the first still ends, once */
    assert_int_equal(atomic_load(&k.calls), 1);
    assert_int_equal(k.r.result, PF_ECANCELED);
    curl_easy_cleanup(k.easy);
    pf_executor_free(ex);
}

static void
test_curl_client_rejects_bad_config(void **state)
{
    pf_curl_config_t cfg;
    pf_curl_client_t *c = NULL;

    (void)state;
    pf_curl_config_init(&cfg);
    assert_pf_err(pf_curl_client_new(&cfg, NULL), PF_EINVAL);
    cfg.max_connections = -1;
    assert_pf_err(pf_curl_client_new(&cfg, &c), PF_EINVAL);
    pf_curl_config_init(&cfg);
    cfg.max_host_connections = -1;
    assert_pf_err(pf_curl_client_new(&cfg, &c), PF_EINVAL);
    pf_curl_config_init(&cfg);
    assert_int_equal(cfg.max_transfers, PF_CURL_MAX_TRANSFERS_DEFAULT);
    cfg.max_transfers = -1;
    assert_pf_err(pf_curl_client_new(&cfg, &c), PF_EINVAL);
    assert_null(c);
    pf_curl_config_init(NULL);
    pf_curl_client_free(NULL);
    pf_curl_abort(NULL);
    pf_curl_xfer_free(NULL);
    assert_int_equal(pf_curl_client_pending(NULL), 0);
}

/* ---- many at once ---------------------------------------------------- */

#define MANY 1000

/* Wait until each of the n calls k has had its done, check that nothing
 * is pending, then free the client and the executor. */
static void
wait_all_then_free(call_t *k, int n, pf_curl_client_t *c, pf_executor_t *ex)
{
    int i;

    for (i = 0; i < n; i++) {
        pf_test_wait_for_flag(&k[i].calls, 1);
    }
    assert_int_equal(pf_curl_client_pending(c), 0);
    pf_curl_client_free(c);
    pf_executor_free(ex);
}

static void
many_transfers_each_complete_once(const pf_clock_t *clock,
                                  long max_transfers)
{
    static call_t k[MANY];
    pf_executor_t *ex = make_ex(clock, 2);
    pf_curl_client_t *c = make_client_max(ex, max_transfers);
    int i;

    for (i = 0; i < MANY; i++) {
        call_init(&k[i], g_srv.fast_port, i % 10 == 0 ? "/500" : "/ok");
        assert_pf_ok(pf_curl_start(c, k[i].easy, NULL, record, &k[i], NULL));
    }
    wait_all_then_free(k, MANY, c, ex);
    for (i = 0; i < MANY; i++) {
        assert_int_equal(atomic_load(&k[i].calls), 1);
        assert_int_equal(k[i].r.result, 0);
        assert_int_equal(k[i].r.http_status, i % 10 == 0 ? 500 : 200);
        assert_string_equal(k[i].body, i % 10 == 0 ? "boom" : "ok");
        curl_easy_cleanup(k[i].easy);
    }
}

static void
test_curl_1000_concurrent_transfers_each_complete_once(void **state)
{
    many_transfers_each_complete_once(*state, -1);
}

/* The same through 7 places: 993 wait in the client's queue at first. */
static void
test_curl_1000_transfers_through_7_places_each_complete_once(void **state)
{
    many_transfers_each_complete_once(*state, 7);
}

/* ---- admission ---------------------------------------------------------- */

/* 1,000 transfers through 7 places, every third aborted from this thread
 * while the others run, queue and get admitted on the workers: each done
 * runs exactly once; an aborted one ended either way, the others
 * completed; nothing is left pending, and (under ASan) nothing leaks. */
static void
test_curl_aborts_race_admission_each_done_once(void **state)
{
    static call_t k[MANY];
    static pf_curl_xfer_t *xs[MANY];
    pf_executor_t *ex = make_ex(*state, 2);
    pf_curl_client_t *c = make_client_max(ex, 7);
    int i;

    for (i = 0; i < MANY; i++) {
        call_init(&k[i], g_srv.fast_port, "/ok");
        assert_pf_ok(pf_curl_start(c, k[i].easy, NULL, record, &k[i], &xs[i]));
        if (i % 3 == 0 && i >= 30) {
            pf_curl_abort(xs[i - 30]); /* running, queued or done */
        }
    }
    wait_all_then_free(k, MANY, c, ex);
    for (i = 0; i < MANY; i++) {
        bool aborted = i % 3 == 0 && i + 30 < MANY;

        assert_int_equal(atomic_load(&k[i].calls), 1);
        if (aborted && k[i].r.result == PF_ECANCELED) {
            assert_int_equal(k[i].r.curl_code, CURLE_ABORTED_BY_CALLBACK);
        } else {
            assert_int_equal(k[i].r.result, 0);
            assert_int_equal(k[i].r.http_status, 200);
        }
        pf_curl_xfer_free(xs[i]);
        curl_easy_cleanup(k[i].easy);
    }
}

/* max_transfers 2, both places held by /slow transfers that never end by
 * themselves: the others wait in the client's queue, where a busy handle
 * is refused, an abort and a (manual-clock) deadline end them without
 * the server seeing them, and when a place frees they go to libcurl in
 * the order they were started (k3, a /slow that keeps its place, before
 * k5). */
static void
test_curl_transfers_beyond_max_wait_in_order(void **state)
{
    pf_clock_t *clock = *state;
    pf_executor_t *ex = make_ex(clock, 2);
    pf_curl_client_t *c = make_client_max(ex, 2);
    int started0 = atomic_load(&g_srv.slow_started);
    pf_deadline_t d = pf_deadline_in(clock, 1.0);
    pf_curl_xfer_t *xs[2];
    pf_curl_xfer_t *x3;
    pf_curl_xfer_t *x6;
    call_t slow[2];
    call_t k3;
    call_t k4;
    call_t k5;
    call_t k6;
    int i;

    for (i = 0; i < 2; i++) {
        call_init(&slow[i], g_srv.slow_port, "/slow");
        assert_pf_ok(
            pf_curl_start(c, slow[i].easy, NULL, record, &slow[i], &xs[i]));
    }
    call_init(&k3, g_srv.slow_port, "/slow");
    call_init(&k4, g_srv.slow_port, "/slow");
    call_init(&k5, g_srv.fast_port, "/ok");
    call_init(&k6, g_srv.slow_port, "/slow");
    assert_pf_ok(pf_curl_start(c, k3.easy, NULL, record, &k3, &x3));
    assert_pf_ok(pf_curl_start(c, k4.easy, &d, record, &k4, NULL));
    assert_pf_ok(pf_curl_start(c, k5.easy, NULL, record, &k5, NULL));
    assert_pf_ok(pf_curl_start(c, k6.easy, NULL, record, &k6, &x6));
    /* A handle running in the client, started again while it queues. */
    assert_pf_err(pf_curl_start(c, slow[0].easy, NULL, never, NULL, NULL),
                  PF_ESTATE);
    assert_int_equal(pf_curl_client_pending(c), 6);
    pf_test_wait_for_flag(&g_srv.slow_started, started0 + 2);

    pf_curl_abort(x6); /* queued: ends at once */
    pf_test_wait_for_flag(&k6.calls, 1);
    assert_int_equal(k6.r.result, PF_ECANCELED);
    pf_clock_manual_advance(clock, NS_PER_SEC); /* k4's deadline, queued */
    pf_test_wait_for_flag(&k4.calls, 1);
    assert_int_equal(k4.r.result, PF_ETIMEDOUT);
    assert_int_equal(k4.r.http_status, 0);
    assert_int_equal(pf_curl_client_pending(c), 4);
    assert_int_equal(atomic_load(&k5.calls), 0); /* no place yet */
    assert_int_equal(atomic_load(&g_srv.slow_started), started0 + 2);

    pf_curl_abort(xs[0]); /* a place: k3 first, which keeps it */
    pf_test_wait_for_flag(&g_srv.slow_started, started0 + 3);
    assert_int_equal(atomic_load(&k5.calls), 0);
    assert_int_equal(pf_curl_client_pending(c), 3);
    pf_curl_abort(x3); /* its place: k5 */
    pf_test_wait_for_flag(&k5.calls, 1);
    assert_int_equal(k5.r.result, 0);
    assert_int_equal(k5.r.http_status, 200);
    pf_test_wait_for_flag(&k3.calls, 1);
    assert_int_equal(k3.r.result, PF_ECANCELED);
    assert_int_equal(pf_curl_client_pending(c), 1);
    pf_curl_client_free(c); /* slow[1] */
    assert_int_equal(atomic_load(&slow[1].calls), 1);
    assert_int_equal(slow[1].r.result, PF_ECANCELED);
    /* k4 and k6 never reached the server. */
    assert_int_equal(atomic_load(&g_srv.slow_started), started0 + 3);
    pf_executor_free(ex);
    for (i = 0; i < 2; i++) {
        assert_int_equal(atomic_load(&slow[i].calls), 1);
        pf_curl_xfer_free(xs[i]);
        curl_easy_cleanup(slow[i].easy);
    }
    pf_curl_xfer_free(x3);
    pf_curl_xfer_free(x6);
    assert_int_equal(atomic_load(&k3.calls), 1);
    assert_int_equal(atomic_load(&k4.calls), 1);
    assert_int_equal(atomic_load(&k5.calls), 1);
    assert_int_equal(atomic_load(&k6.calls), 1);
    curl_easy_cleanup(k3.easy);
    curl_easy_cleanup(k4.easy);
    curl_easy_cleanup(k5.easy);
    curl_easy_cleanup(k6.easy);
}

/* Queued transfers end with the client's free, before it returns. */
static void
test_curl_client_free_ends_queued_transfers(void **state)
{
    pf_executor_t *ex = make_ex(*state, 2);
    pf_curl_client_t *c = make_client_max(ex, 1);
    call_t k[3];
    int i;

    for (i = 0; i < 3; i++) {
        call_init(&k[i], g_srv.slow_port, "/slow");
        assert_pf_ok(pf_curl_start(c, k[i].easy, NULL, record, &k[i], NULL));
    }
    assert_int_equal(pf_curl_client_pending(c), 3);
    pf_curl_client_free(c);
    for (i = 0; i < 3; i++) {
        assert_int_equal(atomic_load(&k[i].calls), 1);
        assert_int_equal(k[i].r.result, PF_ECANCELED);
        curl_easy_cleanup(k[i].easy);
    }
    pf_executor_free(ex);
}


/* ---- as an asynchronous state ------------------------------------------ */

typedef struct http_state {
    pf_curl_client_t *c;
    CURL *easy;
    pf_agent_t *agent; /* kept when the run is handed back */
} http_state_t;

static int
http_get(pf_ctx_t *ctx, void *arg)
{
    http_state_t *h = arg;

    return pf_ctx_curl(ctx, h->c, h->easy);
}

/* Run a one-state agent doing h's transfer; the state's error. */
static int
run_http_state(pf_executor_t *ex, http_state_t *h, double timeout,
               pf_run_t **run_out)
{
    pf_agent_config_t cfg;
    pf_state_opts_t o;
    pf_agent_t *a = NULL;
    pf_run_result_t res;
    pf_state_result_t sr;
    pf_run_t *run = NULL;

    pf_agent_config_init(&cfg);
    cfg.executor = ex;
    assert_pf_ok(pf_agent_new_ex(&cfg, &a));
    pf_state_opts_init(&o);
    o.max_retries = 0;
    o.timeout = timeout;
    assert_pf_ok(pf_agent_add_state(a, "get", http_get, h, &o));
    assert_pf_ok(pf_agent_start(a, NULL, NULL, &run));
    if (run_out != NULL) {
        *run_out = run; /* the caller moves time and frees both */
        h->agent = a;
        return 0;
    }
    (void)pf_run_wait(run, NULL, &res);
    assert_pf_ok(pf_run_result_find(&res, "get", &sr));
    pf_run_result_free(&res);
    pf_run_free(run);
    pf_agent_free(a);
    return sr.error;
}

static void
test_curl_state_completes_with_classified_outcome(void **state)
{
    pf_executor_t *ex = make_ex(*state, 2);
    http_state_t h;
    call_t k;

    h.c = make_client(ex);
    call_init(&k, g_srv.fast_port, "/ok");
    h.easy = k.easy;
    assert_int_equal(run_http_state(ex, &h, 0, NULL), 0);
    assert_string_equal(k.body, "ok");
    curl_easy_setopt(k.easy, CURLOPT_URL, "http://127.0.0.1:1/");
    assert_int_equal(run_http_state(ex, &h, 0, NULL), PF_ESYSTEM);
    curl_easy_cleanup(k.easy);
    call_init(&k, g_srv.fast_port, "/500");
    h.easy = k.easy;
    assert_int_equal(run_http_state(ex, &h, 0, NULL), 500);
    curl_easy_cleanup(k.easy);
    call_init(&k, g_srv.fast_port, "/404");
    h.easy = k.easy;
    assert_int_equal(run_http_state(ex, &h, 0, NULL), 0); /* not a failure */
    curl_easy_cleanup(k.easy);
    pf_curl_client_free(h.c);
    pf_executor_free(ex);
}

static void
test_curl_state_timeout_removes_the_transfer(void **state)
{
    pf_clock_t *clock = *state;
    pf_executor_t *ex = make_ex(clock, 2);
    int closed0 = atomic_load(&g_srv.slow_closed);
    int started0 = atomic_load(&g_srv.slow_started);
    http_state_t h;
    pf_run_result_t res;
    pf_state_result_t sr;
    pf_run_t *run;
    call_t k;

    h.c = make_client(ex);
    call_init(&k, g_srv.slow_port, "/slow");
    h.easy = k.easy;
    run_http_state(ex, &h, 1.0, &run);
    pf_test_wait_for_flag(&g_srv.slow_started, started0 + 1);
    pf_clock_manual_advance(clock, NS_PER_SEC - 1);
    assert_false(pf_run_done(run));
    pf_clock_manual_advance(clock, 1); /* the state's timeout */
    assert_int_equal(pf_run_wait(run, NULL, &res), PF_ETIMEDOUT);
    assert_pf_ok(pf_run_result_find(&res, "get", &sr));
    assert_int_equal(sr.error, PF_ETIMEDOUT);
    pf_test_wait_for_flag(&g_srv.slow_closed, closed0 + 1);
    pf_run_result_free(&res);
    pf_run_free(run);
    pf_agent_free(h.agent);
    pf_curl_client_free(h.c);
    pf_executor_free(ex);
    curl_easy_cleanup(k.easy);
}

/* Notes the first retry's announced delay. Its due time is fixed before
 * the listener runs, on the manual clock nobody moves meanwhile. */
typedef struct retry_seen {
    double delay;
    atomic_int heard;
} retry_seen_t;

static void
on_retry(const pf_agent_event_t *ev, void *arg)
{
    retry_seen_t *t = arg;

    if (ev->kind == PF_AGENT_EVENT_RETRY && atomic_load(&t->heard) == 0) {
        t->delay = ev->delay;
        atomic_store(&t->heard, 1);
    }
}

static void
test_curl_state_429_retry_after_3_retries_exactly_3_s_later(void **state)
{
    pf_clock_t *clock = *state;
    pf_executor_t *ex = make_ex(clock, 2);
    pf_agent_config_t cfg;
    pf_state_opts_t o;
    pf_agent_t *a = NULL;
    pf_run_t *run = NULL;
    pf_run_result_t res;
    pf_state_result_t sr;
    http_state_t h;
    call_t k;
    retry_seen_t seen = {0};

    atomic_store(&g_srv.busy_calls, 0);
    h.c = make_client(ex);
    call_init(&k, g_srv.fast_port, "/busy-once");
    h.easy = k.easy;
    pf_agent_config_init(&cfg);
    cfg.executor = ex;
    cfg.listener = on_retry;
    cfg.listener_arg = &seen;
    assert_pf_ok(pf_agent_new_ex(&cfg, &a));
    pf_state_opts_init(&o);
    o.max_retries = 3; /* the default backoff: 0.5 to 1 s, not 3 s */
    o.timeout = 2.0;   /* per attempt: the wait is not an attempt */
    assert_pf_ok(pf_agent_add_state(a, "get", http_get, &h, &o));
    assert_pf_ok(pf_agent_start(a, NULL, NULL, &run));
    pf_test_wait_for_flag(&seen.heard, 1);
    assert_true(seen.delay == 3.0); /* not the backoff's */
    pf_clock_manual_advance(clock, 3 * NS_PER_SEC - 1);
    assert_int_equal(atomic_load(&g_srv.busy_calls), 1);
    assert_false(pf_run_done(run));
    pf_clock_manual_advance(clock, 1);
    assert_pf_ok(pf_run_wait(run, NULL, &res));
    assert_int_equal(atomic_load(&g_srv.busy_calls), 2);
    assert_pf_ok(pf_run_result_find(&res, "get", &sr));
    assert_int_equal(sr.error, 0);
    assert_int_equal(sr.attempts, 2);
    assert_true(res.duration == 3.0);
    assert_string_equal(k.body, "laterok"); /* both answers, in turn */
    pf_run_result_free(&res);
    pf_run_free(run);
    pf_agent_free(a);
    pf_curl_client_free(h.c);
    pf_executor_free(ex);
    curl_easy_cleanup(k.easy);
}

/* ---- 10,000 HTTP states through breakers and bulkheads ----------------- */

#define STATES 10000
#define GROUPS 4 /* agents, each a breaker and a bulkhead of its own */

typedef struct many_run {
    CURL *easy;
    pf_ctx_t *ctx;
    pf_run_t *run;
    atomic_int calls; /* of the state's function */
    atomic_int done;  /* of the run's on_done */
} many_run_t;

static pf_curl_client_t *g_many_client;

static size_t
discard_body(char *p, size_t size, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return size * n;
}

static int
many_get(pf_ctx_t *ctx, void *arg)
{
    many_run_t *m = NULL;

    (void)arg;
    if (pf_ctx_get_ptr(ctx, "run", (void **)&m) != 0) {
        return PF_EINVAL;
    }
    atomic_fetch_add(&m->calls, 1);
    return pf_ctx_curl(ctx, g_many_client, m->easy);
}

static void
many_done(pf_run_t *run, void *arg)
{
    many_run_t *m = arg;

    (void)run;
    atomic_fetch_add(&m->done, 1);
}

/* Groups 0-2 call /many-ok: every state completes on its first attempt.
 * Group 3 calls /many-500: its breaker (a failure-rate window) opens and
 * rejects the rest with PF_EOPEN. The clock is manual and never moves, so
 * the breaker stays open and the bulkhead waits never run out: the
 * outcome is exact. */
static void
test_curl_10000_states_through_breakers_and_bulkheads_complete_once(
    void **state)
{
    static const pf_backoff_t at_once = {0.0, 2.0, 0.0, PF_JITTER_NONE};
    static many_run_t m[STATES];
    pf_executor_t *ex = make_ex(*state, 2);
    pf_curl_config_t ccfg;
    pf_agent_t *a[GROUPS];
    pf_breaker_config_t bc;
    pf_bulkhead_config_t hc;
    pf_agent_config_t acfg;
    pf_state_opts_t o;
    pf_run_opts_t ro;
    char url[64];
    int ok0 = atomic_load(&g_srv.many_ok);
    int bad0 = atomic_load(&g_srv.many_500);
    unsigned attempts[2] = {0, 0}; /* groups 0-2, group 3 */
    int completed = 0;
    int failed = 0;
    int rejected = 0;
    int g;
    int i;

    pf_curl_config_init(&ccfg);
    ccfg.executor = ex;
    ccfg.max_connections = 512;
    assert_pf_ok(pf_curl_client_new(&ccfg, &g_many_client));
    pf_breaker_config_init(&bc);
    bc.window = PF_BREAKER_WINDOW_COUNT;
    bc.window_size = 100;
    bc.minimum_calls = 20;
    bc.failure_rate_threshold = 50.0;
    pf_bulkhead_config_init(&hc);
    hc.max_concurrent_calls = 100;
    hc.max_queue_size = STATES;
    hc.max_wait_duration = 0.0; /* no limit */
    pf_state_opts_init(&o);
    o.max_retries = 2;
    o.backoff = &at_once;
    o.own_breaker = true;
    o.breaker_config = &bc;
    o.own_bulkhead = true;
    o.bulkhead_config = &hc;
    for (g = 0; g < GROUPS; g++) {
        pf_agent_config_init(&acfg);
        acfg.executor = ex;
        assert_pf_ok(pf_agent_new_ex(&acfg, &a[g]));
        assert_pf_ok(pf_agent_add_state(a[g], "get", many_get, NULL, &o));
    }
    for (i = 0; i < STATES; i++) {
        g = i % GROUPS;
        snprintf(url, sizeof(url), "http://127.0.0.1:%u/%s", g_srv.fast_port,
                 g == GROUPS - 1 ? "many-500" : "many-ok");
        m[i].easy = curl_easy_init();
        assert_non_null(m[i].easy);
        curl_easy_setopt(m[i].easy, CURLOPT_URL, url);
        curl_easy_setopt(m[i].easy, CURLOPT_WRITEFUNCTION, discard_body);
        atomic_init(&m[i].calls, 0);
        atomic_init(&m[i].done, 0);
        assert_pf_ok(pf_ctx_new(&m[i].ctx));
        assert_pf_ok(pf_ctx_set_ptr(m[i].ctx, "run", &m[i], NULL));
        pf_run_opts_init(&ro);
        ro.on_done = many_done;
        ro.on_done_arg = &m[i];
        assert_pf_ok(pf_agent_start(a[g], m[i].ctx, &ro, &m[i].run));
    }
    for (i = 0; i < STATES; i++) {
        pf_run_result_t res;
        pf_state_result_t sr;

        (void)pf_run_wait(m[i].run, NULL, &res);
        assert_pf_ok(pf_run_result_find(&res, "get", &sr));
        assert_int_equal(sr.attempts, atomic_load(&m[i].calls));
        if (i % GROUPS != GROUPS - 1) {
            assert_int_equal(sr.outcome, PF_STATE_COMPLETED);
            assert_int_equal(sr.error, 0);
            assert_int_equal(sr.attempts, 1);
            attempts[0] += sr.attempts;
            completed++;
        } else {
            assert_int_equal(sr.outcome, PF_STATE_FAILED);
            assert_true(sr.error == 500 || sr.error == PF_EOPEN);
            attempts[1] += sr.attempts;
            if (sr.error == PF_EOPEN) {
                rejected++;
            } else {
                failed++;
            }
        }
        pf_run_result_free(&res);
        pf_run_free(m[i].run);
    }
    /* Every run ended exactly once, and every attempt reached the server
     * exactly once. */
    for (i = 0; i < STATES; i++) {
        assert_int_equal(atomic_load(&m[i].done), 1);
    }
    assert_int_equal(completed, STATES / GROUPS * (GROUPS - 1));
    assert_int_equal(failed + rejected, STATES / GROUPS);
    assert_true(rejected > 0); /* the breaker shed the failing API */
    assert_int_equal(atomic_load(&g_srv.many_ok) - ok0, (int)attempts[0]);
    assert_int_equal(atomic_load(&g_srv.many_500) - bad0, (int)attempts[1]);
    assert_int_equal(pf_curl_client_pending(g_many_client), 0);
    for (g = 0; g < GROUPS; g++) {
        pf_agent_free(a[g]);
    }
    pf_curl_client_free(g_many_client);
    pf_executor_free(ex);
    for (i = 0; i < STATES; i++) {
        pf_ctx_free(m[i].ctx);
        curl_easy_cleanup(m[i].easy);
    }
}

/* ---- classification and Retry-After, without a server ----------------- */

static void
test_curl_is_failure_table(void **state)
{
    (void)state;
    assert_false(pf_curl_is_failure(0, 200));
    assert_false(pf_curl_is_failure(0, 204));
    assert_false(pf_curl_is_failure(0, 301));
    assert_false(pf_curl_is_failure(0, 400));
    assert_false(pf_curl_is_failure(0, 401));
    assert_false(pf_curl_is_failure(0, 404));
    assert_false(pf_curl_is_failure(0, 499));
    assert_true(pf_curl_is_failure(0, 408));
    assert_true(pf_curl_is_failure(0, 429));
    assert_true(pf_curl_is_failure(0, 500));
    assert_true(pf_curl_is_failure(0, 503));
    assert_true(pf_curl_is_failure(PF_ETIMEDOUT, 0));
    assert_true(pf_curl_is_failure(PF_ESYSTEM, 0));
    assert_true(pf_curl_is_failure(PF_ENOTFOUND, 0));
    assert_false(pf_curl_is_failure(PF_ECANCELED, 0));
}

static void
test_curl_retry_after_parses_seconds_and_dates(void **state)
{
    /* 2015-10-21 07:28:00 UTC */
    const int64_t at = 1445412480;
    double s = -1;

    (void)state;
    assert_pf_ok(pf_curl_retry_after_parse("120", at, &s));
    assert_true(s == 120.0);
    assert_pf_ok(pf_curl_retry_after_parse(" 0 ", at, &s));
    assert_true(s == 0.0);
    assert_pf_ok(
        pf_curl_retry_after_parse("Wed, 21 Oct 2015 07:28:30 GMT", at, &s));
    assert_true(s == 30.0);
    assert_pf_ok(
        pf_curl_retry_after_parse("Wednesday, 21-Oct-15 07:29:00 GMT", at, &s));
    assert_true(s == 60.0);
    assert_pf_ok(pf_curl_retry_after_parse("Wed Oct 21 07:28:10 2015", at, &s));
    assert_true(s == 10.0);
    assert_pf_ok(
        pf_curl_retry_after_parse("Wed, 21 Oct 2015 07:00:00 GMT", at, &s));
    assert_true(s == 0.0); /* in the past */
    s = 42;
    assert_pf_err(pf_curl_retry_after_parse("", at, &s), PF_EFORMAT);
    assert_pf_err(pf_curl_retry_after_parse("-5", at, &s), PF_EFORMAT);
    assert_pf_err(pf_curl_retry_after_parse("1.5", at, &s), PF_EFORMAT);
    assert_pf_err(pf_curl_retry_after_parse("soon", at, &s), PF_EFORMAT);
    assert_pf_err(pf_curl_retry_after_parse("12 apples", at, &s),
                  PF_EFORMAT);
    assert_true(s == 42); /* untouched */
    assert_pf_err(pf_curl_retry_after_parse(NULL, at, &s), PF_EINVAL);
    assert_pf_err(pf_curl_retry_after_parse("1", at, NULL), PF_EINVAL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        CLOCK_TEST(test_curl_get_completes_with_status_and_body),
        CLOCK_TEST(test_curl_classifies_statuses_for_breakers_and_retries),
        CLOCK_TEST(test_curl_exposes_retry_after_seconds_and_date),
        CLOCK_TEST(test_curl_reuses_connections_across_transfers),
        CLOCK_TEST(test_curl_done_may_restart_the_same_handle),
        CLOCK_TEST(test_curl_manual_deadline_ends_slow_transfer_and_closes_it),
        CLOCK_TEST(test_curl_abort_ends_transfer_with_ecanceled),
        CLOCK_TEST(test_curl_client_free_cancels_running_transfers),
        CLOCK_TEST(test_curl_unreachable_port_is_a_transport_failure),
        CLOCK_TEST(test_curl_rejects_null_and_busy_handles),
        cmocka_unit_test(test_curl_client_rejects_bad_config),
        CLOCK_TEST(test_curl_1000_concurrent_transfers_each_complete_once),
        CLOCK_TEST(test_curl_1000_transfers_through_7_places_each_complete_once),
        CLOCK_TEST(test_curl_transfers_beyond_max_wait_in_order),
        CLOCK_TEST(test_curl_aborts_race_admission_each_done_once),
        CLOCK_TEST(test_curl_client_free_ends_queued_transfers),
        CLOCK_TEST(test_curl_state_completes_with_classified_outcome),
        CLOCK_TEST(test_curl_state_timeout_removes_the_transfer),
        CLOCK_TEST(test_curl_state_429_retry_after_3_retries_exactly_3_s_later),
        CLOCK_TEST(
            test_curl_10000_states_through_breakers_and_bulkheads_complete_once),
        cmocka_unit_test(test_curl_is_failure_table),
        cmocka_unit_test(test_curl_retry_after_parses_seconds_and_dates),
    };

    return cmocka_run_group_tests(tests, servers_up, servers_down);
}
