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
 *   {"status":"healthy","checkers":{"api":{...report...}}}
 * where each report is pf_health_report_json's. Degraded is 200: a
 * degraded service still serves, as Kubernetes probes expect.
 *
 * The server reads the registry with the registry's own functions, so
 * objects may be added and removed while it runs; see registry.h. */
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
    unsigned max_connections;  /* open connections at once, >= 1; more
                                  are refused; default 64 */
    double connection_timeout; /* seconds a connection may stay idle; > 0
                                  (whole seconds, rounded up); default 10 */
    size_t max_header_bytes;   /* memory for the request line and headers
                                  of one request (libmicrohttpd's
                                  connection memory limit, which also holds
                                  its bookkeeping, so slightly less is
                                  usable), 4096..1048576; default 16384 */
    size_t max_body_bytes;     /* request body allowed (these endpoints
                                  read none); default 0 */
} pf_http_config_t;

/* Fill cfg with the defaults listed above. Never fails; NULL is a no-op. */
PF_API void pf_http_config_init(pf_http_config_t *cfg);

/* Start a server and store it in *out. Returns 0 once it is listening;
 * PF_EINVAL for a NULL argument or a bad field (an address that is not a
 * numeric IPv4/IPv6 address, a port above 65535, values outside the
 * ranges above, an empty tag); PF_ESYSTEM when it cannot listen (the
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
