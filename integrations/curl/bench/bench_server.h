/* The local server of the HTTP benchmarks: libmicrohttpd in a child
 * process, one epoll thread, each request suspended and answered 100 ms
 * later by a timer thread (so the client's CPU is measured alone), plus the
 * client-side helpers both benchmarks use. Included by bench_curl.c and
 * bench_curl_agents.c only. */
#ifndef PF_BENCH_CURL_SERVER_H
#define PF_BENCH_CURL_SERVER_H

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "puffinflow/curl.h"

/* ---- the server (child process) ---------------------------------------- */

typedef struct pending {
    struct MHD_Connection *conn;
    int64_t due_ns;
    unsigned status; /* what to answer */
    struct pending *next;
} pending_t;

/* The status to answer url with; NULL = always 200. Set before
 * server_main. Runs on the server's one epoll thread. */
static unsigned (*g_answer)(const char *url);

static pthread_mutex_t g_plock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_pcond = PTHREAD_COND_INITIALIZER;
static pending_t *g_head;
static pending_t *g_tail;

static int64_t
now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Resume each suspended request when its 100 ms are up (FIFO: they were
 * suspended in order, so due times only grow). */
static void *
resumer(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&g_plock);
    for (;;) {
        while (g_head == NULL) {
            pthread_cond_wait(&g_pcond, &g_plock);
        }
        while (g_head != NULL && g_head->due_ns <= now_ns()) {
            pending_t *p = g_head;

            g_head = p->next;
            if (g_head == NULL) {
                g_tail = NULL;
            }
            MHD_resume_connection(p->conn);
        }
        if (g_head != NULL) {
            int64_t wait = g_head->due_ns - now_ns();

            if (wait > 0) {
                struct timespec nap = {0, (long)(wait < 1000000 ? wait
                                                                : 1000000)};

                pthread_mutex_unlock(&g_plock);
                nanosleep(&nap, NULL);
                pthread_mutex_lock(&g_plock);
            }
        }
    }
    return NULL;
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *conn, const char *url,
           const char *method, const char *version, const char *data,
           size_t *size, void **ctx)
{
    pending_t *p = *ctx;
    struct MHD_Response *r;
    enum MHD_Result ret;

    (void)cls;
    (void)method;
    (void)version;
    (void)data;
    (void)size;
    if (p == NULL) {
        p = calloc(1, sizeof(*p));
        *ctx = p;
        p->status = g_answer != NULL ? g_answer(url) : 200;
        return MHD_YES;
    }
    if (p->due_ns == 0) {
        p->conn = conn;
        p->due_ns = now_ns() + 100000000LL;
        MHD_suspend_connection(conn);
        pthread_mutex_lock(&g_plock);
        if (g_tail != NULL) {
            g_tail->next = p;
        } else {
            g_head = p;
        }
        g_tail = p;
        pthread_cond_signal(&g_pcond);
        pthread_mutex_unlock(&g_plock);
        return MHD_YES;
    }
    r = MHD_create_response_from_buffer(2, (void *)"ok",
                                        MHD_RESPMEM_PERSISTENT);
    ret = MHD_queue_response(conn, p->status, r);
    MHD_destroy_response(r);
    return ret;
}

static void
on_completed(void *cls, struct MHD_Connection *conn, void **ctx,
             enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)toe;
    free(*ctx);
    *ctx = NULL;
}

/* Run the server; write its port to out, stop when in reaches EOF. */
static void
server_main(int out, int in)
{
    struct MHD_Daemon *d;
    pthread_t t;
    unsigned port;
    char c;

    pthread_create(&t, NULL, resumer, NULL);
    d = MHD_start_daemon(MHD_USE_EPOLL_INTERNAL_THREAD |
                             MHD_ALLOW_SUSPEND_RESUME,
                         0, NULL, NULL, on_request, NULL,
                         MHD_OPTION_CONNECTION_LIMIT, 30000u,
                         MHD_OPTION_LISTEN_BACKLOG_SIZE, 4096u,
                         MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
                         MHD_OPTION_END);
    if (d == NULL) {
        _exit(1);
    }
    port = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT)->port;
    if (write(out, &port, sizeof(port)) != sizeof(port)) {
        _exit(1);
    }
    while (read(in, &c, 1) > 0) {
    }
    MHD_stop_daemon(d);
    _exit(0);
}

/* ---- the client ---------------------------------------------------------- */

static size_t
discard(char *p, size_t size, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return size * n;
}

static int64_t
cpu_ns(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return ((int64_t)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) *
               1000000000LL +
           ((int64_t)ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000LL;
}

/* The clients' max_transfers: BENCH_MAX_TRANSFERS when set (0 = no
 * limit), else the default. */
static long
bench_max_transfers(void)
{
    const char *m = getenv("BENCH_MAX_TRANSFERS");

    return m != NULL ? atol(m) : PF_CURL_MAX_TRANSFERS_DEFAULT;
}

/* The client config of the benches: the defaults, with
 * bench_max_transfers(). */
static void
bench_client_config(pf_curl_config_t *cfg, pf_executor_t *ex)
{
    pf_curl_config_init(cfg);
    cfg->executor = ex;
    cfg->max_transfers = bench_max_transfers();
}

/* One batch of n bare transfers (pf_curl_start, a 2 s deadline each) on a
 * fresh client, waited for together: the wall time, client CPU per call
 * and the calls not ending in 200. */
typedef struct bare_figures {
    double wall_s;
    double cpu_us_per_call;
    int errors;
} bare_figures_t;

typedef struct bare_batch {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int left;
    int errors;
} bare_batch_t;

static void
bare_done(const pf_curl_result_t *r, void *arg)
{
    bare_batch_t *b = arg;

    pthread_mutex_lock(&b->lock);
    if (r->result != 0 || r->http_status != 200) {
        b->errors++;
    }
    if (--b->left == 0) {
        pthread_cond_signal(&b->cond);
    }
    pthread_mutex_unlock(&b->lock);
}

static bare_figures_t
bench_bare_batch(pf_executor_t *ex, const char *url, int n)
{
    bare_batch_t b = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, n,
                      0};
    CURL **easy = calloc((size_t)n, sizeof(*easy));
    pf_curl_config_t cfg;
    pf_curl_client_t *c;
    bare_figures_t f;
    int64_t t0;
    int64_t c0;
    int i;

    bench_client_config(&cfg, ex);
    if (easy == NULL || pf_curl_client_new(&cfg, &c) != 0) {
        abort();
    }
    t0 = now_ns();
    c0 = cpu_ns();
    for (i = 0; i < n; i++) {
        pf_deadline_t d = pf_deadline_in(NULL, 2.0);

        easy[i] = curl_easy_init();
        curl_easy_setopt(easy[i], CURLOPT_URL, url);
        curl_easy_setopt(easy[i], CURLOPT_WRITEFUNCTION, discard);
        if (pf_curl_start(c, easy[i], &d, bare_done, &b, NULL) != 0) {
            abort();
        }
    }
    pthread_mutex_lock(&b.lock);
    while (b.left > 0) {
        pthread_cond_wait(&b.cond, &b.lock);
    }
    pthread_mutex_unlock(&b.lock);
    f.wall_s = (double)(now_ns() - t0) / 1e9;
    f.cpu_us_per_call = (double)(cpu_ns() - c0) / 1e3 / n;
    f.errors = b.errors;
    pf_curl_client_free(c);
    for (i = 0; i < n; i++) {
        curl_easy_cleanup(easy[i]);
    }
    free(easy);
    return f;
}

#endif /* PF_BENCH_CURL_SERVER_H */
