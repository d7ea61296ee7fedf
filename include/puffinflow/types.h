/* puffinflow — callback types and small enums shared by the patterns. */
#ifndef PUFFINFLOW_TYPES_H
#define PUFFINFLOW_TYPES_H

#ifdef __cplusplus
extern "C" {
#endif

/* A user's call. Returns 0 for success and any non-zero value for failure;
 * the library hands a non-zero value back to the caller unchanged, so user
 * codes and PF_E* codes meet without translation. */
typedef int (*pf_call_fn)(void *arg);

/* Runs instead of a rejected call (reason PF_EOPEN, PF_EFULL, ...) or after a
 * counted failure (reason PF_ETIMEDOUT or the call's own result). It gets the
 * call's own arg, so it can fill the same output the call would have; its
 * return value is what the protected call returns. Errors a pattern ignores
 * never reach it. */
typedef int (*pf_fallback_fn)(void *arg, int reason);

/* Priority of a waiter or a workflow state: higher is served first. */
typedef enum pf_priority {
    PF_PRIORITY_LOW = 0,
    PF_PRIORITY_NORMAL = 1,
    PF_PRIORITY_HIGH = 2,
    PF_PRIORITY_CRITICAL = 3
} pf_priority_t;

#define PF_PRIORITY_COUNT 4

#ifdef __cplusplus
}
#endif

#endif /* PUFFINFLOW_TYPES_H */
