/* puffinflow — HTTP calls through libcurl on the executor's reactor
 * (library puffinflow-curl, built when libcurl is present).
 *
 * A client owns one libcurl multi handle, driven through its socket
 * interface (curl_multi_socket_action): the sockets libcurl asks to watch
 * and libcurl's timer (a timerfd: always real time, whatever the
 * executor's clock, as libcurl's own timeouts are) sit in an epoll set of
 * the client's, which the executor's reactor watches as one fd; a worker
 * drains it in batches. No thread waits for a transfer. Connections are
 * reused across the transfers of a client, so create one client per
 * executor and share it. At most max_transfers transfers are in libcurl
 * at once; the others wait in the client's queue (docs/curl.md,
 * "Admission").
 *
 * pf_curl_start hands a configured CURL easy handle to the client; the
 * transfer completes exactly once by calling done on a worker with the
 * outcome: libcurl's code, the HTTP status, a Retry-After delay, and
 * whether the outcome is a failure for a breaker or a retry policy (5xx,
 * 408, 429 and transport errors are; other 4xx are not). A deadline (on
 * any clock, the executor's manual clock included) or pf_curl_abort
 * removes the transfer at once: libcurl closes its connection, so the
 * server sees it close. */
#ifndef PUFFINFLOW_CURL_H
#define PUFFINFLOW_CURL_H

#include <stdbool.h>
#include <stdint.h>

#include <curl/curl.h>

#include "puffinflow/context.h"
#include "puffinflow/deadline.h"
#include "puffinflow/executor.h"
#include "puffinflow/export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pf_curl_client pf_curl_client_t; /* opaque */
typedef struct pf_curl_xfer pf_curl_xfer_t;     /* opaque */

typedef struct pf_curl_config {
    pf_executor_t *executor;   /* runs the transfers; NULL =
                                  pf_executor_default() (default) */
    long max_connections;      /* open connections at most
                                  (CURLMOPT_MAX_TOTAL_CONNECTIONS); 0 = no
                                  limit (default) */
    long max_host_connections; /* ... to one host
                                  (CURLMOPT_MAX_HOST_CONNECTIONS); 0 = no
                                  limit (default) */
    long max_transfers;        /* transfers handed to libcurl at once; the
                                  others wait in the client's queue, in
                                  the order they were started, and are
                                  handed over as transfers end (their
                                  deadline runs while they wait); 0 = no
                                  limit; default
                                  PF_CURL_MAX_TRANSFERS_DEFAULT */
} pf_curl_config_t;

/* The default max_transfers (see docs/curl.md, "Admission"). */
#define PF_CURL_MAX_TRANSFERS_DEFAULT 2048

/* Fill cfg with the defaults above. NULL is a no-op. */
PF_API void pf_curl_config_init(pf_curl_config_t *cfg);

/* Create a client. Returns 0 and stores it in *out; PF_EINVAL for a NULL
 * out or a negative limit; PF_ENOMEM; PF_ESYSTEM when libcurl or the
 * timerfd cannot be set up (or the default executor cannot be made);
 * PF_ESTATE while the executor is being freed. On error nothing is
 * created. cfg is not kept; the executor must outlive the client.
 * Calls curl_global_init the first time (thread-safe from libcurl 7.84).
 * Thread-safe. */
PF_API int pf_curl_client_new(const pf_curl_config_t *cfg,
                              pf_curl_client_t **out);

/* End every transfer still running (done runs with PF_ECANCELED, on the
 * calling thread, before this returns), close the client's connections and
 * give up the owner's hold; its memory goes once the reactor is done with
 * it. NULL is a no-op. No pf_curl_start may race or follow it; must not be
 * called from a done callback of c. Call it before freeing the executor.
 * Not thread-safe with other calls on c. */
PF_API void pf_curl_client_free(pf_curl_client_t *c);

/* How a transfer ended, passed to done. */
typedef struct pf_curl_result {
    int result;        /* 0 = it completed (any HTTP status); PF_ETIMEDOUT
                          = the deadline came first, or libcurl's own
                          timeout (CURLOPT_TIMEOUT); PF_ECANCELED =
                          pf_curl_abort or pf_curl_client_free;
                          PF_ENOTFOUND = the host name did not resolve;
                          PF_ESYSTEM = any other transport failure
                          (curl_code says which); PF_ESTATE /
                          PF_ENOMEM = libcurl refused a queued handle
                          at its turn (curl_code CURLE_FAILED_INIT) */
    int curl_code;     /* libcurl's CURLcode (CURLE_OK when it completed;
                          CURLE_ABORTED_BY_CALLBACK when the deadline or
                          an abort ended it) */
    long http_status;  /* the response's status, 0 when none came */
    double retry_after; /* seconds the server asked to wait before a
                           retry (Retry-After: seconds or HTTP-date; a
                           date in the past is 0), or -1 when absent or
                           malformed */
    bool failure;      /* pf_curl_is_failure(result, http_status): what a
                          breaker and a retry policy count */
    const char *error; /* a constant description ("Couldn't connect to
                          server"), "" on success */
    CURL *easy;        /* the easy handle given to pf_curl_start */
} pf_curl_result_t;

/* Called once, on a worker of the client's executor, with no lock held.
 * r is valid during the call only. The easy handle is out of the client
 * already: done may reuse it (pf_curl_start again, to retry), clean it up,
 * and free the transfer's handle. */
typedef void (*pf_curl_done_fn)(const pf_curl_result_t *r, void *arg);

/* Start the transfer set up in easy (URL, method, headers, write
 * callback...: configured by the caller and owned by it). While the
 * transfer runs, the client uses CURLOPT_PRIVATE of easy, and resets it
 * (to NULL) when it ends: the caller must not use that option. When the
 * client has max_transfers in libcurl, the transfer waits in its queue
 * (its deadline runs) and goes to libcurl, in start order, when one ends.
 * deadline NULL or
 * pf_deadline_none = none (any clock; one already past ends the transfer
 * at once with PF_ETIMEDOUT). With out non-NULL, *out receives the
 * transfer's handle before done can run; the record lives until both the
 * owner (pf_curl_xfer_free) and the client are done with it.
 *
 * Returns 0; PF_EINVAL for a NULL c, easy or done; PF_ESTATE when easy is
 * already in a transfer (of any multi handle; one busy elsewhere that is
 * queued is refused when its turn comes: done then gets PF_ESTATE) or c
 * is being freed;
 * PF_ENOMEM; PF_ESYSTEM when libcurl refuses the handle. On error done is
 * never called and *out is untouched; a handle that is already in a
 * transfer is left as it was. Never blocks beyond the client's lock.
 * Thread-safe. */
PF_API int pf_curl_start(pf_curl_client_t *c, CURL *easy,
                         const pf_deadline_t *deadline, pf_curl_done_fn done,
                         void *arg, pf_curl_xfer_t **out);

/* End x now: the transfer is removed from the client and its connection
 * closed; done is queued on a worker with PF_ECANCELED. A no-op once x
 * has ended. NULL is a no-op; must not follow pf_curl_xfer_free(x).
 * Thread-safe, done callbacks included; never blocks beyond the client's
 * lock. */
PF_API void pf_curl_abort(pf_curl_xfer_t *x);

/* Give up the owner's hold on x; does not abort it. NULL is a no-op; at
 * most once. Thread-safe; may be called from done. */
PF_API void pf_curl_xfer_free(pf_curl_xfer_t *x);

/* Transfers started on c and not yet completed. Thread-safe. */
PF_API unsigned pf_curl_client_pending(pf_curl_client_t *c);

/* Run the transfer set up in easy as the current attempt of ctx's state,
 * without a thread: makes the attempt pending (pf_ctx_pending) on
 * pf_curl_start and returns PF_PENDING, which the state returns. The
 * attempt completes with 0 when the outcome is not a failure
 * (pf_curl_is_failure: 2xx, 3xx, and 4xx other than 408 / 429, so read
 * the status with CURLINFO_RESPONSE_CODE in the next state), with the
 * HTTP status (408, 429, 5xx) when the server failed it, and with the
 * result (PF_ETIMEDOUT, PF_ENOTFOUND, PF_ESYSTEM) on a transport failure:
 * breakers and retry policies of the state count exactly the failures.
 * The attempt's timeout, the run's deadline or a cancellation removes the
 * transfer at once (pf_curl_abort; its connection is closed) and ends the
 * attempt. A retry calls the state again with the same easy handle,
 * which is out of the client by then. A 429 or 503 response's
 * Retry-After is the delay before that retry (pf_completion_complete_after:
 * it replaces the backoff's delay, capped at its max_delay; the retry
 * policy's deadline still applies). Use: `return pf_ctx_curl(ctx,
 * client, easy);`.
 *
 * Returns PF_PENDING; or, nothing started, PF_EINVAL for a NULL client or
 * easy or a ctx that is not a running state's, or pf_ctx_pending's
 * PF_ESTATE / PF_ENOMEM. When pf_curl_start itself fails (a handle in
 * another transfer: PF_ESTATE), the attempt fails with its error. Call it
 * from the state's own thread. */
PF_API int pf_ctx_curl(pf_ctx_t *ctx, pf_curl_client_t *client, CURL *easy);

/* Whether an outcome counts as a failure for a breaker and a retry
 * policy: any result other than 0 and PF_ECANCELED (a transport error or
 * a timeout), or a completed transfer whose status is 5xx, 408 (request
 * timeout) or 429 (too many requests). Other 4xx are the caller's error:
 * retrying them cannot help and the server is not unhealthy. A
 * cancellation says nothing of the server: not a failure. Never fails. */
PF_API bool pf_curl_is_failure(int result, long http_status);

/* Parse a Retry-After header value: delta-seconds ("120") or an HTTP-date
 * ("Wed, 21 Oct 2015 07:28:00 GMT", and the two obsolete forms), measured
 * from now_unix (seconds since the epoch, wall clock). Stores seconds to
 * wait (>= 0; a date in the past is 0) in *seconds and returns 0; PF_EINVAL
 * for a NULL value or seconds; PF_EFORMAT for anything else (then
 * *seconds is untouched). Thread-safe. */
PF_API int pf_curl_retry_after_parse(const char *value, int64_t now_unix,
                                     double *seconds);

#ifdef __cplusplus
}
#endif

#endif /* PUFFINFLOW_CURL_H */
