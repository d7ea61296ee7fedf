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
 * Threads: a request is answered entirely on one MHD worker thread; the
 * server object is immutable after start, so workers share it without
 * locks. pf_http_server_stop relies on MHD_stop_daemon, which closes every
 * connection and joins the workers, after which nothing refers to the
 * server. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "puffinflow/alloc.h"
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

/* ---- responses -------------------------------------------------------- */

/* Queue a response with body text (taken over: freed by free_fn once sent,
 * or at once when MHD refuses it). */
static enum MHD_Result
reply(struct MHD_Connection *c, unsigned status, const char *type, char *text,
      size_t len, void (*free_fn)(void *))
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
    return ok;
}

static void
no_free(void *p)
{
    (void)p;
}

/* A constant plain-text body. */
static enum MHD_Result
reply_const(struct MHD_Connection *c, unsigned status, const char *text)
{
    return reply(c, status, "text/plain; charset=utf-8", (char *)text,
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
        return reply_const(c, MHD_HTTP_SERVICE_UNAVAILABLE, "out of memory\n");
    }
    return reply(c,
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
        return reply_const(c, MHD_HTTP_INTERNAL_SERVER_ERROR,
                           "metrics export failed\n");
    }
    return reply(c, MHD_HTTP_OK,
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
            return reply_const(c, MHD_HTTP_NOT_FOUND, "not found\n");
        }
        if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
            strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
            return reply_const(c, MHD_HTTP_METHOD_NOT_ALLOWED,
                               "method not allowed\n");
        }
        if (declared_too_large(s, c)) {
            return reply_const(c, MHD_HTTP_CONTENT_TOO_LARGE,
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
        return reply_const(c, MHD_HTTP_CONTENT_TOO_LARGE,
                           "request body too large\n");
    }
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
    return reply_const(c, MHD_HTTP_NOT_FOUND, "not found\n");
}

static void
completed(void *cls, struct MHD_Connection *c, void **req_cls,
          enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    free(*req_cls);
    *req_cls = NULL;
}

/* ---- start, stop ------------------------------------------------------ */

static bool
tag_ok(const char *t)
{
    return t != NULL && t[0] != '\0';
}

static int
check_config(const pf_http_config_t *cfg)
{
    if (cfg->address == NULL || cfg->port > 65535 ||
        !tag_ok(cfg->liveness_tag) || !tag_ok(cfg->readiness_tag) ||
        cfg->threads < 1 || cfg->threads > 64 || cfg->max_connections < 1 ||
        isnan(cfg->connection_timeout) || cfg->connection_timeout <= 0.0 ||
        cfg->max_header_bytes < 4096 || cfg->max_header_bytes > 1048576) {
        return PF_EINVAL;
    }
    return 0;
}

static void
server_free(pf_http_server_t *s)
{
    free(s->liveness_tag);
    free(s->readiness_tag);
    free(s);
}

static char *
dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *c = malloc(n);

    if (c != NULL) {
        memcpy(c, s, n);
    }
    return c;
}

int
pf_http_server_start(const pf_http_config_t *cfg, pf_http_server_t **out)
{
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
    const struct sockaddr *addr;
    unsigned flags =
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ITC;
    unsigned timeout_s;
    pf_http_server_t *s;
    const union MHD_DaemonInfo *info;
    int rc;

    if (cfg == NULL || out == NULL) {
        return PF_EINVAL;
    }
    rc = check_config(cfg);
    if (rc != 0) {
        return rc;
    }
    memset(&in4, 0, sizeof(in4));
    memset(&in6, 0, sizeof(in6));
    if (inet_pton(AF_INET, cfg->address, &in4.sin_addr) == 1) {
        in4.sin_family = AF_INET;
        in4.sin_port = htons((uint16_t)cfg->port);
        addr = (const struct sockaddr *)&in4;
    } else if (inet_pton(AF_INET6, cfg->address, &in6.sin6_addr) == 1) {
        in6.sin6_family = AF_INET6;
        in6.sin6_port = htons((uint16_t)cfg->port);
        addr = (const struct sockaddr *)&in6;
        flags |= MHD_USE_IPv6;
    } else {
        return PF_EINVAL;
    }
    timeout_s = cfg->connection_timeout >= (double)UINT_MAX
                    ? UINT_MAX
                    : (unsigned)ceil(cfg->connection_timeout);

    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return PF_ENOMEM;
    }
    s->registry = cfg->registry != NULL ? cfg->registry : pf_registry_default();
    s->max_body_bytes = cfg->max_body_bytes;
    s->liveness_tag = dup_str(cfg->liveness_tag);
    s->readiness_tag = dup_str(cfg->readiness_tag);
    if (s->liveness_tag == NULL || s->readiness_tag == NULL) {
        server_free(s);
        return PF_ENOMEM;
    }
    errno = 0;
    s->daemon = MHD_start_daemon(
        flags, (uint16_t)cfg->port, NULL, NULL, handle, s, MHD_OPTION_SOCK_ADDR,
        addr, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)cfg->threads,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg->max_connections,
        MHD_OPTION_CONNECTION_TIMEOUT, timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, cfg->max_header_bytes,
        MHD_OPTION_STRICT_FOR_CLIENT, (int)1, MHD_OPTION_NOTIFY_COMPLETED,
        completed, (void *)NULL, MHD_OPTION_END);
    if (s->daemon == NULL) {
        int e = errno;

        server_free(s);
        errno = e;
        return PF_ESYSTEM;
    }
    info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info != NULL ? info->port : cfg->port;
    *out = s;
    return 0;
}

unsigned
pf_http_server_port(const pf_http_server_t *s)
{
    return s == NULL ? 0 : s->port;
}

void
pf_http_server_stop(pf_http_server_t *s)
{
    if (s == NULL) {
        return;
    }
    MHD_stop_daemon(s->daemon);
    server_free(s);
}
