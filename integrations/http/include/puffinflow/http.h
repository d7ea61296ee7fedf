/* puffinflow — HTTP endpoint for health probes and metrics (optional
 * library puffinflow-http, built on libmicrohttpd).
 *
 * One call starts a small HTTP/1.1 server on its own threads, one call
 * stops it. It serves, for GET and HEAD:
 *
 *   /healthz   liveness: the checks tagged liveness_tag of every health
 *              checker in the registry. 200 unless one of them reports
 *              unhealthy, then 503. With no such checks, 200: the process
 *              answers, so it is alive.
 *   /readyz    readiness: the same with readiness_tag.
 *   /metrics   every metric of the registry, Prometheus text format 0.0.4.
 *   /status    the same snapshot as JSON, with each health checker's
 *              latest results.
 *
 * Any other path is 404; another method is 405 (with Allow: GET, HEAD); a
 * request the parser rejects is 400; a body larger than max_body_bytes is
 * 413; a request line and headers larger than max_header_bytes are 431
 * (414 when the request line alone is too long). After any of these the
 * server goes on serving. Probe bodies are JSON:
 *   {"checkers":[{...report...},{...report...}],"status":"healthy"}
 * an array with one report (pf_health_report_json's, which names its
 * checker) per health checker that has checks with the tag. "status" is
 * "unhealthy" (503) when one of those checks is unhealthy, "unknown"
 * (503) when the checks could not be run (out of memory), else "healthy"
 * (200, degraded checks included: a degraded service still serves, as
 * Kubernetes probes expect).
 *
 * The server reads the registry with the registry's own functions, so
 * objects may be added and removed while it runs; see registry.h.
 *
 * Connections. The server accepts every connection at once (none waits in
 * the listen backlog) and then decides. It holds at most max_connections,
 * and at most max_connections_per_client from one IP address. A
 * connection over either limit takes the place of the connection that has
 * waited longest for its request (an idle keep-alive connection or a
 * request still arriving; for the per-client limit, one of that client's
 * own), which is closed; when there is none such (every connection is
 * being answered), the new connection is closed at once, unanswered. Each
 * request must arrive whole within request_timeout of the connection (or
 * of the end of the previous answer), and each answer be taken within
 * request_timeout of being ready, or the connection is closed: a client
 * sending a byte now and then holds a connection no longer than that.
 * Slow or idle clients therefore cannot keep probes out: a probe sends
 * its request at once and is answered, while the slow connections give
 * way. */
#ifndef PUFFINFLOW_HTTP_H
#define PUFFINFLOW_HTTP_H

#include <stddef.h>

#include "puffinflow/export.h"
#include "puffinflow/registry.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pf_http_server pf_http_server_t; /* opaque */

typedef struct pf_http_config {
    const char *address;       /* numeric IPv4 or IPv6 address to bind;
                                  copied; default "127.0.0.1" (loopback
                                  only: use "0.0.0.0" or "::" to serve
                                  other hosts) */
    unsigned port;             /* 0..65535; 0 = any free port, see
                                  pf_http_server_port; default 0 */
    pf_registry_t *registry;   /* what to serve; NULL = the default
                                  registry; must outlive the server */
    const char *liveness_tag;  /* copied; default "liveness" */
    const char *readiness_tag; /* copied; default "readiness" */
    unsigned threads;          /* worker threads, 1..64; a slow health
                                  check holds one; default 2 */
    unsigned max_connections;  /* open connections at once, >= 1; see
                                  "Connections" above; default 64 */
    double connection_timeout; /* seconds a connection may stay idle (no
                                  byte either way); > 0 (whole seconds,
                                  rounded up); default 10 */
    size_t max_header_bytes;   /* memory for the request line and headers
                                  of one request (libmicrohttpd's
                                  connection memory limit, which also holds
                                  its bookkeeping, so slightly less is
                                  usable), 4096..1048576; default 16384 */
    size_t max_body_bytes;     /* request body allowed (these endpoints
                                  read none); default 0 */
    unsigned max_connections_per_client; /* open connections at once from
                                  one IP address, >= 1; see "Connections"
                                  above; default 16 */
    double request_timeout;    /* seconds a client has to send a whole
                                  request, and again to take the whole
                                  answer, however steadily bytes come; > 0
                                  (INFINITY = no limit); default 10 */
} pf_http_config_t;

/* Fill cfg with the defaults listed above. Never fails; NULL is a no-op. */
PF_API void pf_http_config_init(pf_http_config_t *cfg);

/* Start a server and store it in *out. Returns 0 once it is listening;
 * PF_EINVAL for a NULL argument or a bad field (an address that is not a
 * numeric IPv4/IPv6 address, a port above 65535, values outside the
 * ranges above, a zero, negative or NaN timeout, an empty tag); PF_ESYSTEM when it cannot listen (the
 * address is in use, say; errno tells more) or start its threads;
 * PF_ENOMEM. On error nothing is left running and *out is untouched. cfg
 * is not kept (strings are copied). Thread-safe. */
PF_API int pf_http_server_start(const pf_http_config_t *cfg,
                                pf_http_server_t **out);

/* The port s listens on: the configured one, or the one the system chose
 * for port 0. 0 for NULL. Thread-safe. Never blocks. */
PF_API unsigned pf_http_server_port(const pf_http_server_t *s);

/* Stop s and free it; NULL is a no-op. Closes the listening socket and
 * every connection, waits for requests being answered to finish (a health
 * check in progress bounds it: at most its timeout), and joins the
 * server's threads. No other call on s may be running or follow. Blocks
 * as said. */
PF_API void pf_http_server_stop(pf_http_server_t *s);

#ifdef __cplusplus
}
#endif

#endif /* PUFFINFLOW_HTTP_H */
