/* A local HTTP server for the examples on real I/O (libmicrohttpd on
 * 127.0.0.1, an ephemeral port), and the helpers they share. Each example
 * gives its own handler; the server counts requests the client ended
 * before the answer was complete (a connection closed by an aborted
 * transfer). */
#ifndef PF_EXAMPLE_SERVER_H
#define PF_EXAMPLE_SERVER_H

#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <microhttpd.h>

#include "puffinflow/curl.h"

static atomic_int g_client_closed; /* requests ended by the client */

static inline enum MHD_Result
ex_reply(struct MHD_Connection *conn, unsigned status, const char *body,
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

/* A body of one byte every 10 ms, for ever: ends when the client goes. */
static inline ssize_t
ex_trickle(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct timespec nap = {0, 10000000};

    (void)cls;
    (void)pos;
    (void)max;
    nanosleep(&nap, NULL);
    buf[0] = '.';
    return 1;
}

static inline enum MHD_Result
ex_reply_forever(struct MHD_Connection *conn)
{
    struct MHD_Response *r = MHD_create_response_from_callback(
        MHD_SIZE_UNKNOWN, 1, ex_trickle, NULL, NULL);
    enum MHD_Result ret = MHD_queue_response(conn, 200, r);

    MHD_destroy_response(r);
    return ret;
}

static inline void
ex_on_completed(void *cls, struct MHD_Connection *conn, void **ctx,
                enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)ctx;
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK) {
        atomic_fetch_add(&g_client_closed, 1);
    }
}

/* Start a server calling handler (a thread per connection: a slow answer
 * holds no other); *port gets its port. NULL when it cannot start. */
static inline struct MHD_Daemon *
ex_server_start(MHD_AccessHandlerCallback handler, unsigned *port)
{
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD, 0,
        NULL, NULL, handler, NULL, MHD_OPTION_NOTIFY_COMPLETED,
        ex_on_completed, NULL, MHD_OPTION_END);

    if (d != NULL) {
        *port = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT)->port;
    }
    return d;
}

static inline double
ex_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline size_t
ex_discard(char *p, size_t size, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return size * n;
}

/* An easy handle for url, its body discarded; NULL on failure. */
static inline CURL *
ex_easy(const char *url)
{
    CURL *e = curl_easy_init();

    if (e != NULL) {
        curl_easy_setopt(e, CURLOPT_URL, url);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, ex_discard);
    }
    return e;
}

/* A state's argument: the client and the transfer it makes. */
typedef struct ex_call {
    pf_curl_client_t *client;
    CURL *easy;
} ex_call_t;

static inline int
ex_fetch(pf_ctx_t *ctx, void *arg)
{
    ex_call_t *c = arg;

    return pf_ctx_curl(ctx, c->client, c->easy);
}

/* Wait (real time, up to `seconds`) until *flag reaches value. */
static inline int
ex_wait_for(atomic_int *flag, int value, double seconds)
{
    double give_up = ex_now() + seconds;
    struct timespec nap = {0, 1000000};

    while (atomic_load(flag) < value) {
        if (ex_now() > give_up) {
            return -1;
        }
        nanosleep(&nap, NULL);
    }
    return 0;
}

#endif /* PF_EXAMPLE_SERVER_H */
