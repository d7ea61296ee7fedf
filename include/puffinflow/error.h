/* puffinflow — error codes.
 *
 * Every function that can fail returns int: 0 (PF_OK) or a negative PF_E*
 * code. The codes lie at -1001 and below, far from -1 and from -errno, so a
 * user's own `return -1` handed back by a pattern is never mistaken for one of
 * ours. Values are never renumbered or reused; new codes are appended. */
#ifndef PUFFINFLOW_ERROR_H
#define PUFFINFLOW_ERROR_H

#include <stdbool.h>

#include "puffinflow/export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum pf_error {
    PF_OK = 0,
    PF_EINVAL = -1001,      /* bad argument or config field */
    PF_ENOMEM = -1002,      /* an allocation failed */
    PF_EOPEN = -1003,       /* circuit breaker is open */
    PF_EFULL = -1004,       /* bulkhead full, or its wait ran out */
    PF_ERATELIMIT = -1005,  /* rate limit reached */
    PF_ETIMEDOUT = -1006,   /* a call or wait ran past its timeout */
    PF_EDEADLINE = -1007,   /* the deadline had passed before work started */
    PF_ECANCELED = -1008,   /* cancelled through a cancellation token */
    PF_EUNHEALTHY = -1009,  /* a health check failed */
    PF_ENOTFOUND = -1010,   /* no such name, file or entry */
    PF_EEXIST = -1011,      /* the name is taken */
    PF_ESTATE = -1012,      /* not allowed in the object's current state */
    PF_ESYSTEM = -1013,     /* a system call failed (errno has details) */
    PF_EFORMAT = -1014,     /* malformed input (a /proc file, a request) */
    PF_EBUDGET = -1015,     /* a retry budget refused the retry */
    PF_ERANGE = -1016,      /* a buffer is too small or a value too large */
    PF_PENDING = -1017,     /* not an error: a state's work completes later
                               (pf_ctx_pending) */
    PF_ENOTSUP = -1018      /* a feature this build or library lacks */
} pf_error_t;

/* The lowest (most negative) code in use, for range checks. */
#define PF_ERROR_LAST PF_ENOTSUP

/* A short English name for code: "success", "circuit breaker is open", ...
 * Any int is accepted; one that is not a puffinflow code gets
 * "not a puffinflow error code". Returns a constant string, never NULL; never
 * allocates. Thread-safe. */
PF_API const char *pf_strerror(int code);

/* The symbolic name of code ("PF_EOPEN"), or NULL for a code that is not
 * ours. Thread-safe. */
PF_API const char *pf_error_name(int code);

/* True when code is one of the PF_E* codes (not PF_OK, not a user code). */
PF_API bool pf_is_error_code(int code);

#ifdef __cplusplus
}
#endif

#endif /* PUFFINFLOW_ERROR_H */
