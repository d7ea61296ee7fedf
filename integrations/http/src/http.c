/* The HTTP endpoint: libmicrohttpd (MHD) with its own polling thread and a
 * pool of workers, answering four GET paths from a registry.
 *
 * MHD calls the access handler several times per request: once when the
 * headers are in, then once per piece of body, then once with no data.
 * Everything these endpoints decide (path, method, declared body size) is
 * known at the first call, so errors are queued there and MHD, seeing a
 * response before the body was read, closes the connection after it.
 * A good request is answered at the last call, once any (small, allowed)
 * body has been drained. Errors MHD detects itself (a malformed request
 * line or header: 400; headers past the connection memory limit: 431 or
 * 414) never reach the handler.
 *
 * This library uses only the public API of libpuffinflow. Its own small
 * allocations use libc's allocator (as MHD does); text made by
 * libpuffinflow is released with pf_free.
 *
 * Connections. The server listens itself: a listener thread of its own
 * accepts every connection at once, decides with the connection table
 * (http_conns.c) whether it gets room, and hands it to MHD with
 * MHD_add_connection; MHD (started with MHD_USE_NO_LISTEN_SOCKET) never
 * sees the listen socket. That is what lets the server refuse fast: MHD,
 * at its connection limit, stops polling its listen socket, so a
 * connection over the limit waited in the backlog, and a listener that
 * is one of the workers also stops accepting while a health check holds
 * it. MHD reports each connection's start and close
 * (MHD_OPTION_NOTIFY_CONNECTION) and the handler its phases; the same
 * listener thread sweeps the table for requests past request_timeout.
 * MHD's own connection limit is set high enough never to bind: the table
 * keeps the count.
 *
 * Threads: a request is answered entirely on one MHD worker thread; the
 * server object is immutable after start but for the connection table
 * (its own lock), so workers share it. pf_http_server_stop stops the
 * listener first, then relies on MHD_stop_daemon, which closes every
 * connection and joins the workers, after which nothing refers to the
 * server. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "http_conns.h"
#include "puffinflow/alloc.h"
#include "puffinflow/clock.h"
#include "puffinflow/error.h"
#include "puffinflow/health.h"
#include "puffinflow/http.h"
#include "puffinflow/registry.h"

struct pf_http_server {
    struct MHD_Daemon *daemon;
    pf_registry_t *registry;
    char *liveness_tag;
    char *readiness_tag;
    size_t max_body_bytes;
    unsigned port;
    int listen_fd;
    int wake[2]; /* a byte in wake[1] stops the listener */
    pthread_t listener;
    bool conns_ready;
    pf__http_conns_t conns;
};

/* What the handler remembers between the calls for one request. */
typedef struct request {
    size_t body_bytes; /* body received so far */
} request_t;

/* Past max_body_bytes by this much, a chunked body is not drained to the
 * end for its 413: the connection is dropped. */
#define DRAIN_LIMIT (64 * 1024)

void
pf_http_config_init(pf_http_config_t *cfg)
{
    if (cfg == NULL) {
        return;
    }
    memset(cfg, 0, sizeof(*cfg));
    cfg->address = "127.0.0.1";
    cfg->port = 0;
    cfg->registry = NULL;
    cfg->liveness_tag = "liveness";
    cfg->readiness_tag = "readiness";
    cfg->threads = 2;
    cfg->max_connections = 64;
    cfg->connection_timeout = 10.0;
    cfg->max_header_bytes = 16384;
    cfg->max_body_bytes = 0;
    cfg->max_connections_per_client = 16;
    cfg->request_timeout = 10.0;
}

/* ---- a growable buffer (libc memory) ---------------------------------- */

typedef struct buf {
    char *p;
    size_t len;
    size_t cap;
    bool failed;
} buf_t;

static void
buf_add(buf_t *b, const char *s)
{
    size_t n = strlen(s);

    if (b->failed) {
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap == 0 ? 256 : b->cap;
        char *p;

        while (cap < b->len + n + 1) {
            cap *= 2;
        }
        p = realloc(b->p, cap);
        if (p == NULL) {
            b->failed = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n + 1);
    b->len += n;
}

/* ---- connection phases ------------------------------------------------ */

/* The table record of c, set when MHD started it (NULL if none). */
static pf__http_conn_t *
conn_of(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

    return info != NULL ? info->socket_context : NULL;
}

static void
set_phase(const pf_http_server_t *s, struct MHD_Connection *c,
          pf__http_phase_t phase)
{
    /* The table is the one mutable part of the server; it has its own
     * lock. */
    pf__http_conns_set_phase((pf__http_conns_t *)&s->conns, conn_of(c), phase,
                             pf_clock_now_ns(NULL));
}

/* ---- responses -------------------------------------------------------- */

/* Queue a response with body text (taken over: freed by free_fn once sent,
 * or at once when MHD refuses it). */
static enum MHD_Result
reply(const pf_http_server_t *s, struct MHD_Connection *c, unsigned status,
      const char *type, char *text, size_t len, void (*free_fn)(void *))
{
    struct MHD_Response *r;
    enum MHD_Result ok;

    r = MHD_create_response_from_buffer_with_free_callback(len, text, free_fn);
    if (r == NULL) {
        free_fn(text);
        return MHD_NO; /* MHD closes the connection */
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED) {
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    }
    ok = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    if (ok == MHD_YES) {
        /* From here the client has request_timeout to take the answer. */
        set_phase(s, c, PF__HTTP_SENDING);
    }
    return ok;
}

static void
no_free(void *p)
{
    (void)p;
}

/* A constant plain-text body. */
static enum MHD_Result
reply_const(const pf_http_server_t *s, struct MHD_Connection *c,
            unsigned status, const char *text)
{
    return reply(s, c, status, "text/plain; charset=utf-8", (char *)text,
                 strlen(text), no_free);
}

/* ---- the endpoints ---------------------------------------------------- */

typedef struct probe {
    const char *tag;
    buf_t body;
    bool first;
    bool unhealthy;
    int error;
} probe_t;

/* One health checker's part of a probe: its checks with the tag. A
 * checker with no such check adds nothing. */
static int
probe_visit(pf_registry_kind_t kind, const char *name, void *object, void *arg)
{
    probe_t *p = arg;
    pf_health_report_t *rep;
    char *json;
    int rc;

    (void)kind;
    (void)name;
    rc = pf_health_check_tagged(object, p->tag, &rep);
    if (rc != 0) {
        p->error = rc;
        return 0;
    }
    if (pf_health_report_count(rep) > 0) {
        if (!pf_health_report_is_healthy(rep)) {
            p->unhealthy = true;
        }
        rc = pf_health_report_json_alloc(rep, &json);
        if (rc == 0) {
            buf_add(&p->body, p->first ? "" : ",");
            buf_add(&p->body, json);
            p->first = false;
            pf_free(json);
        } else {
            p->error = rc;
        }
    }
    pf_health_report_free(rep);
    return 0;
}

/* /healthz and /readyz: 503 when a check with the tag is unhealthy, or
 * when the checks could not be run at all (out of memory). */
static enum MHD_Result
serve_probe(const pf_http_server_t *s, struct MHD_Connection *c,
            const char *tag)
{
    probe_t p;
    const char *status;

    memset(&p, 0, sizeof(p));
    p.tag = tag;
    p.first = true;
    buf_add(&p.body, "{\"checkers\":[");
    pf_registry_foreach(s->registry, PF_REGISTRY_HEALTH, probe_visit, &p);
    if (p.error != 0) {
        status = "\"unknown\"";
    } else {
        status = p.unhealthy ? "\"unhealthy\"" : "\"healthy\"";
    }
    buf_add(&p.body, "],\"status\":");
    buf_add(&p.body, status);
    buf_add(&p.body, "}\n");
    if (p.body.failed) {
        free(p.body.p);
        return reply_const(s, c, MHD_HTTP_SERVICE_UNAVAILABLE,
                           "out of memory\n");
    }
    return reply(s, c,
                 p.unhealthy || p.error != 0 ? MHD_HTTP_SERVICE_UNAVAILABLE
                                             : MHD_HTTP_OK,
                 "application/json", p.body.p, p.body.len, free);
}

static enum MHD_Result
serve_export(const pf_http_server_t *s, struct MHD_Connection *c,
             pf_metrics_format_t fmt)
{
    char *text;
    size_t len;

    if (pf_registry_export(s->registry, fmt, &text, &len) != 0) {
        return reply_const(s, c, MHD_HTTP_INTERNAL_SERVER_ERROR,
                           "metrics export failed\n");
    }
    return reply(s, c, MHD_HTTP_OK,
                 fmt == PF_METRICS_PROMETHEUS
                     ? PF_METRICS_PROMETHEUS_CONTENT_TYPE
                     : PF_METRICS_JSON_CONTENT_TYPE,
                 text, len, pf_free);
}

typedef enum endpoint {
    EP_NONE,
    EP_HEALTHZ,
    EP_READYZ,
    EP_METRICS,
    EP_STATUS
} endpoint_t;

static endpoint_t
endpoint_of(const char *url)
{
    if (strcmp(url, "/healthz") == 0) {
        return EP_HEALTHZ;
    }
    if (strcmp(url, "/readyz") == 0) {
        return EP_READYZ;
    }
    if (strcmp(url, "/metrics") == 0) {
        return EP_METRICS;
    }
    if (strcmp(url, "/status") == 0) {
        return EP_STATUS;
    }
    return EP_NONE;
}

/* The declared body is too large: Content-Length above the limit. A
 * malformed Content-Length never gets here (MHD answers 400). */
static bool
declared_too_large(const pf_http_server_t *s, struct MHD_Connection *c)
{
    const char *cl = MHD_lookup_connection_value(
        c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    unsigned long long n;
    char *end;

    if (cl == NULL) {
        return false;
    }
    errno = 0;
    n = strtoull(cl, &end, 10);
    return errno != 0 || end == cl || n > s->max_body_bytes;
}

static enum MHD_Result
handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
       const char *version, const char *upload_data, size_t *upload_data_size,
       void **req_cls)
{
    const pf_http_server_t *s = cls;
    request_t *req = *req_cls;
    endpoint_t ep = endpoint_of(url);

    (void)version;
    (void)upload_data;
    if (req == NULL) {
        /* First call: the headers are in, the body (if any) is not. */
        if (ep == EP_NONE) {
            return reply_const(s, c, MHD_HTTP_NOT_FOUND, "not found\n");
        }
        if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
            strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
            return reply_const(s, c, MHD_HTTP_METHOD_NOT_ALLOWED,
                               "method not allowed\n");
        }
        if (declared_too_large(s, c)) {
            return reply_const(s, c, MHD_HTTP_CONTENT_TOO_LARGE,
                               "request body too large\n");
        }
        req = calloc(1, sizeof(*req));
        if (req == NULL) {
            return MHD_NO;
        }
        *req_cls = req;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        /* A chunked body has no declared size: count it as it comes. MHD
         * takes a response only before the body or after all of it, so an
         * oversized one is drained (up to DRAIN_LIMIT) and answered at the
         * end. */
        req->body_bytes += *upload_data_size;
        *upload_data_size = 0;
        if (req->body_bytes > s->max_body_bytes &&
            req->body_bytes - s->max_body_bytes > DRAIN_LIMIT) {
            return MHD_NO;
        }
        return MHD_YES;
    }
    if (req->body_bytes > s->max_body_bytes) {
        return reply_const(s, c, MHD_HTTP_CONTENT_TOO_LARGE,
                           "request body too large\n");
    }
    /* The request is in; no deadline while it is answered (a health check
     * bounds that with its own timeout). */
    set_phase(s, c, PF__HTTP_HANDLING);
    switch (ep) {
    case EP_HEALTHZ:
        return serve_probe(s, c, s->liveness_tag);
    case EP_READYZ:
        return serve_probe(s, c, s->readiness_tag);
    case EP_METRICS:
        return serve_export(s, c, PF_METRICS_PROMETHEUS);
    case EP_STATUS:
        return serve_export(s, c, PF_METRICS_JSON);
    case EP_NONE:
        break;
    }
    return reply_const(s, c, MHD_HTTP_NOT_FOUND, "not found\n");
}

/* An answer is sent (or the request abandoned): a kept-alive connection
 * now waits for its next request, with a fresh deadline. */
static void
completed(void *cls, struct MHD_Connection *c, void **req_cls,
          enum MHD_RequestTerminationCode toe)
{
    (void)toe;
    set_phase(cls, c, PF__HTTP_WAITING);
    free(*req_cls);
    *req_cls = NULL;
}

/* MHD took up a connection the listener handed it, or closed one. CLOSED
 * comes before MHD closes the socket (see http_conns.c). */
static void
notify_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                  enum MHD_ConnectionNotificationCode toe)
{
    pf_http_server_t *s = cls;

    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *info =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);

        *socket_context =
            info != NULL ? pf__http_conns_started(&s->conns, info->connect_fd)
                         : NULL;
    } else {
        pf__http_conns_closed(&s->conns, *socket_context);
        *socket_context = NULL;
    }
}

/* ---- the listener ----------------------------------------------------- */

/* Accept what is waiting (a bounded batch, so the sweep keeps its turn)
 * and admit or refuse each. Returns true when out of descriptors or
 * memory: the listener then rests briefly instead of spinning on a listen
 * socket that stays readable. */
static bool
accept_batch(pf_http_server_t *s)
{
    int i;

    for (i = 0; i < 64; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        pf__http_client_t client;
        pf__http_conn_t *rec;
        int fd = accept4(s->listen_fd, (struct sockaddr *)&ss, &len,
                         SOCK_CLOEXEC | SOCK_NONBLOCK);

        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            return errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
                   errno == ENOMEM;
        }
        pf__http_client_of((struct sockaddr *)&ss, len, &client);
        rec =
            pf__http_conns_admit(&s->conns, fd, &client, pf_clock_now_ns(NULL));
        if (rec == NULL) {
            close(fd); /* no room: refused at once */
            continue;
        }
        if (MHD_add_connection(s->daemon, fd, (struct sockaddr *)&ss, len) !=
            MHD_YES) {
            pf__http_conns_refused(&s->conns, rec); /* MHD closed fd */
        }
    }
    return false;
}

/* Milliseconds from now until due (rounded up), for poll; -1 for never. */
static int
poll_ms(int64_t due, int64_t now)
{
    int64_t ms;

    if (due == INT64_MAX) {
        return -1;
    }
    if (due <= now) {
        return 0;
    }
    ms = (due - now + PF_NS_PER_MS - 1) / PF_NS_PER_MS;
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

/* The listener thread: accepts, and cuts off requests past their
 * deadline, until a byte arrives on wake[0]. */
static void *
listen_run(void *arg)
{
    pf_http_server_t *s = arg;
    int64_t next = INT64_MAX;
    bool rest = false;

    for (;;) {
        struct pollfd p[2] = {{s->wake[0], POLLIN, 0},
                              {s->listen_fd, POLLIN, 0}};
        int64_t now = pf_clock_now_ns(NULL);
        int64_t due = rest && next - now > 100 * PF_NS_PER_MS
                          ? now + 100 * PF_NS_PER_MS
                          : next;

        /* A failed poll (EINTR, or ENOMEM: passing) leaves every revents 0:
         * the loop sweeps and polls again. */
        (void)poll(p, rest ? 1 : 2, poll_ms(due, now));
        if (p[0].revents != 0) {
            break;
        }
        rest = false;
        if ((p[1].revents & POLLIN) != 0) {
            rest = accept_batch(s);
        }
        next = pf__http_conns_sweep(&s->conns, pf_clock_now_ns(NULL));
    }
    return NULL;
}

/* ---- start, stop ------------------------------------------------------ */

static bool
tag_ok(const char *t)
{
    return t != NULL && t[0] != '\0';
}

static bool
seconds_ok(double v)
{
    return !isnan(v) && v > 0.0;
}

static int
check_config(const pf_http_config_t *cfg)
{
    if (cfg->address == NULL || cfg->port > 65535 ||
        !tag_ok(cfg->liveness_tag) || !tag_ok(cfg->readiness_tag) ||
        cfg->threads < 1 || cfg->threads > 64 || cfg->max_connections < 1 ||
        !seconds_ok(cfg->connection_timeout) || cfg->max_header_bytes < 4096 ||
        cfg->max_header_bytes > 1048576 ||
        cfg->max_connections_per_client < 1 ||
        !seconds_ok(cfg->request_timeout)) {
        return PF_EINVAL;
    }
    return 0;
}

/* Free s and whatever of it was set up; s->daemon must be stopped (or
 * NULL) and the listener joined (or never started). */
static void
server_free(pf_http_server_t *s)
{
    if (s->listen_fd >= 0) {
        close(s->listen_fd);
    }
    if (s->wake[0] >= 0) {
        close(s->wake[0]);
        close(s->wake[1]);
    }
    if (s->conns_ready) {
        pf__http_conns_destroy(&s->conns);
    }
    free(s->liveness_tag);
    free(s->readiness_tag);
    free(s);
}

/* Parse cfg->address and port into *ss. Returns its length, or 0 for an
 * address that is not numeric IPv4 or IPv6. */
static socklen_t
parse_address(const pf_http_config_t *cfg, struct sockaddr_storage *ss)
{
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

    memset(ss, 0, sizeof(*ss));
    if (inet_pton(AF_INET, cfg->address, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)cfg->port);
        return sizeof(*in4);
    }
    memset(ss, 0, sizeof(*ss));
    if (inet_pton(AF_INET6, cfg->address, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)cfg->port);
        return sizeof(*in6);
    }
    return 0;
}

/* Open the listen socket, as MHD would have (SO_REUSEADDR; an IPv6 socket
 * is IPv6 only), and learn its port. Returns 0 or PF_ESYSTEM with errno
 * set. */
static int
open_listener(pf_http_server_t *s, const struct sockaddr_storage *ss,
              socklen_t len)
{
    struct sockaddr_storage bound;
    socklen_t bound_len = sizeof(bound);
    int one = 1;

    s->listen_fd =
        socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (s->listen_fd < 0) {
        return PF_ESYSTEM;
    }
    (void)setsockopt(s->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ss->ss_family == AF_INET6) {
        (void)setsockopt(s->listen_fd, IPPROTO_IPV6, IPV6_V6ONLY, &one,
                         sizeof(one));
    }
    if (bind(s->listen_fd, (const struct sockaddr *)ss, len) != 0 ||
        listen(s->listen_fd, SOMAXCONN) != 0 ||
        getsockname(s->listen_fd, (struct sockaddr *)&bound, &bound_len) != 0) {
        return PF_ESYSTEM;
    }
    s->port = ntohs(bound.ss_family == AF_INET6
                        ? ((struct sockaddr_in6 *)&bound)->sin6_port
                        : ((struct sockaddr_in *)&bound)->sin_port);
    return 0;
}

/* Seconds to nanoseconds, saturating (INFINITY: INT64_MAX, no deadline). */
static int64_t
to_ns(double seconds)
{
    double ns = ceil(seconds * 1e9);

    return ns >= 9.2e18 ? INT64_MAX : (int64_t)ns;
}

static int
start_daemon(pf_http_server_t *s, const pf_http_config_t *cfg)
{
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO |
                     MHD_USE_ITC | MHD_USE_NO_LISTEN_SOCKET;
    unsigned timeout_s = cfg->connection_timeout >= (double)UINT_MAX
                             ? UINT_MAX
                             : (unsigned)ceil(cfg->connection_timeout);
    /* MHD splits its limit between the workers, and MHD_add_connection
     * refuses what the chosen worker has no room for: let every worker
     * hold all the table allows, so only the table decides. */
    uint64_t limit = (uint64_t)s->conns.max_total * cfg->threads;

    s->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, handle, s, MHD_OPTION_THREAD_POOL_SIZE,
        (unsigned)cfg->threads, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)(limit > UINT_MAX ? UINT_MAX : limit),
        MHD_OPTION_CONNECTION_TIMEOUT, timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, cfg->max_header_bytes,
        MHD_OPTION_STRICT_FOR_CLIENT, (int)1, MHD_OPTION_NOTIFY_COMPLETED,
        completed, (void *)s, MHD_OPTION_NOTIFY_CONNECTION, notify_connection,
        (void *)s, MHD_OPTION_END);
    return s->daemon != NULL ? 0 : PF_ESYSTEM;
}

int
pf_http_server_start(const pf_http_config_t *cfg, pf_http_server_t **out)
{
    struct sockaddr_storage ss;
    socklen_t len;
    pf_http_server_t *s;
    int rc;
    int e;

    if (cfg == NULL || out == NULL) {
        return PF_EINVAL;
    }
    rc = check_config(cfg);
    if (rc != 0) {
        return rc;
    }
    len = parse_address(cfg, &ss);
    if (len == 0) {
        return PF_EINVAL;
    }

    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return PF_ENOMEM;
    }
    s->listen_fd = -1;
    s->wake[0] = -1;
    s->wake[1] = -1;
    s->registry = cfg->registry != NULL ? cfg->registry : pf_registry_default();
    s->max_body_bytes = cfg->max_body_bytes;
    s->liveness_tag = strdup(cfg->liveness_tag);
    s->readiness_tag = strdup(cfg->readiness_tag);
    if (s->liveness_tag == NULL || s->readiness_tag == NULL) {
        server_free(s);
        return PF_ENOMEM;
    }
    errno = 0;
    rc = PF_ESYSTEM;
    if (pf__http_conns_init(&s->conns, cfg->max_connections,
                            cfg->max_connections_per_client,
                            to_ns(cfg->request_timeout)) != 0) {
        goto fail;
    }
    s->conns_ready = true;
    if (pipe2(s->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        s->wake[0] = -1;
        goto fail;
    }
    if (open_listener(s, &ss, len) != 0 || start_daemon(s, cfg) != 0) {
        goto fail;
    }
    e = pthread_create(&s->listener, NULL, listen_run, s);
    if (e != 0) {
        errno = e;
        goto fail;
    }
    *out = s;
    return 0;
fail:
    e = errno;
    if (s->daemon != NULL) {
        MHD_stop_daemon(s->daemon);
    }
    server_free(s);
    errno = e;
    return rc;
}

unsigned
pf_http_server_port(const pf_http_server_t *s)
{
    return s == NULL ? 0 : s->port;
}

void
pf_http_server_stop(pf_http_server_t *s)
{
    char b = 0;

    if (s == NULL) {
        return;
    }
    /* The listener first, so nothing is handed to MHD while it stops;
     * then MHD, which reports every connection closed to the table. */
    while (write(s->wake[1], &b, 1) < 0 && errno == EINTR) {
    }
    pthread_join(s->listener, NULL);
    close(s->listen_fd);
    s->listen_fd = -1;
    MHD_stop_daemon(s->daemon);
    s->daemon = NULL;
    server_free(s);
}
