/* puffinflow — the context shared by the states of a run.
 *
 * A context holds typed variables (64-bit integers, doubles, strings, byte
 * strings, and pointers with an optional destructor) under string keys.
 * Every state of a run sees the same variables, from any thread, so each
 * access takes the context's lock for a moment; values are copied in and
 * out, never shared. A variable may be marked as an output of the run.
 *
 * Inside a state, the pf_ctx_t the state receives also describes the state
 * being run: its name, its attempt number, its deadline and cancellation
 * token (when it has a timeout, or the run a deadline), and it is how the
 * state says where the run goes next (pf_ctx_goto, in agent.h). That
 * per-state view is owned by the run and valid only while the state runs;
 * variables set through it land in the run's context. */
#ifndef PUFFINFLOW_CONTEXT_H
#define PUFFINFLOW_CONTEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "puffinflow/deadline.h"
#include "puffinflow/error.h"
#include "puffinflow/export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pf_ctx pf_ctx_t; /* opaque */

/* The type of a variable. */
typedef enum pf_value_type {
    PF_VALUE_NONE = 0, /* no such variable */
    PF_VALUE_INT = 1,
    PF_VALUE_DOUBLE = 2,
    PF_VALUE_STRING = 3,
    PF_VALUE_BYTES = 4,
    PF_VALUE_PTR = 5
} pf_value_type_t;

/* Frees a pointer variable's value when the variable is replaced, removed
 * or cleared, or the context freed. */
typedef void (*pf_ctx_dtor_fn)(void *ptr);

/* ---- create, free ------------------------------------------------------ */

/* Create an empty context. Returns 0 and stores it in *out, PF_EINVAL if
 * out is NULL, or PF_ENOMEM / PF_ESYSTEM; on error *out is untouched.
 * Thread-safe. */
PF_API int pf_ctx_new(pf_ctx_t **out);

/* Destroy ctx and its variables, running the destructors of pointer
 * variables on the calling thread. NULL is a no-op, and so is the
 * per-state view a state receives (the run owns it). No run may be using
 * ctx, and no other call on it may be running or follow. */
PF_API void pf_ctx_free(pf_ctx_t *ctx);

/* Remove every variable (destructors run on the calling thread, with no
 * lock held). NULL is a no-op. Thread-safe. */
PF_API void pf_ctx_clear(pf_ctx_t *ctx);

/* ---- variables ---------------------------------------------------------
 *
 * Setters create the variable or replace its value and type (a replaced
 * pointer's destructor runs, on the calling thread with no lock held), and
 * keep its output mark. They return 0, PF_EINVAL for a NULL ctx or key or
 * an empty key, or PF_ENOMEM (then the old value is untouched). Getters
 * return 0, PF_ENOTFOUND when there is no such variable, PF_EINVAL for a
 * NULL argument or when the variable has another type (nothing is
 * converted). All are thread-safe and never block beyond the context's
 * lock; keys and values are copied. */

PF_API int pf_ctx_set_int(pf_ctx_t *ctx, const char *key, int64_t value);
PF_API int pf_ctx_set_double(pf_ctx_t *ctx, const char *key, double value);

/* value is copied up to its NUL. */
PF_API int pf_ctx_set_string(pf_ctx_t *ctx, const char *key, const char *value);

/* len bytes from data are copied (data may be NULL when len is 0). */
PF_API int pf_ctx_set_bytes(pf_ctx_t *ctx, const char *key, const void *data,
                            size_t len);

/* Store a pointer. With dtor, the context owns ptr from now on (also when
 * this call fails: then dtor(ptr) has run) and frees it with dtor; without,
 * it is only a reference. */
PF_API int pf_ctx_set_ptr(pf_ctx_t *ctx, const char *key, void *ptr,
                          pf_ctx_dtor_fn dtor);

PF_API int pf_ctx_get_int(const pf_ctx_t *ctx, const char *key, int64_t *out);
PF_API int pf_ctx_get_double(const pf_ctx_t *ctx, const char *key, double *out);

/* Copy a string variable and its NUL into buf (cap bytes); *len (may be
 * NULL) gets its length without the NUL. PF_ERANGE when cap is too small:
 * nothing is copied and *len says how long it is. buf may be NULL when cap
 * is 0. */
PF_API int pf_ctx_get_string(const pf_ctx_t *ctx, const char *key, char *buf,
                             size_t cap, size_t *len);

/* A copy of a string variable in *out, to be freed with pf_free. Also
 * PF_ENOMEM. */
PF_API int pf_ctx_dup_string(const pf_ctx_t *ctx, const char *key, char **out);

/* Copy a bytes (or string) variable into buf (cap bytes); *len (may be
 * NULL) gets its length. PF_ERANGE when cap is too small, as above. */
PF_API int pf_ctx_get_bytes(const pf_ctx_t *ctx, const char *key, void *buf,
                            size_t cap, size_t *len);

/* The pointer stored under key; the context keeps ownership. */
PF_API int pf_ctx_get_ptr(const pf_ctx_t *ctx, const char *key, void **out);

/* Remove a pointer variable without running its destructor: the caller
 * owns the pointer from now on. */
PF_API int pf_ctx_take_ptr(pf_ctx_t *ctx, const char *key, void **out);

/* The variable's type, PF_VALUE_NONE when there is none (or for NULL
 * arguments). Thread-safe. */
PF_API pf_value_type_t pf_ctx_type(const pf_ctx_t *ctx, const char *key);

/* True when the variable exists. Thread-safe. */
PF_API bool pf_ctx_has(const pf_ctx_t *ctx, const char *key);

/* Remove a variable (its destructor runs, with no lock held). Returns 0,
 * PF_ENOTFOUND, or PF_EINVAL for NULL arguments. Thread-safe. */
PF_API int pf_ctx_remove(pf_ctx_t *ctx, const char *key);

/* Number of variables (0 for NULL). Thread-safe. */
PF_API size_t pf_ctx_count(const pf_ctx_t *ctx);

/* ---- outputs ------------------------------------------------------------ */

/* Mark a variable as an output of the run: it stays marked when its value
 * is replaced, until it is removed. Returns 0, PF_ENOTFOUND, or PF_EINVAL.
 * Thread-safe. */
PF_API int pf_ctx_mark_output(pf_ctx_t *ctx, const char *key);

/* True when the variable exists and is marked as an output. Thread-safe. */
PF_API bool pf_ctx_is_output(const pf_ctx_t *ctx, const char *key);

/* Which keys to list. */
typedef enum pf_ctx_keys_filter {
    PF_CTX_KEYS_ALL = 0,
    PF_CTX_KEYS_OUTPUTS = 1
} pf_ctx_keys_filter_t;

/* The keys present now, sorted by byte order, in *out: an array of *n
 * strings followed by NULL, allocated as one block that pf_free releases.
 * Returns 0, PF_EINVAL for NULL arguments or a bad filter, or PF_ENOMEM.
 * Thread-safe. */
PF_API int pf_ctx_keys(const pf_ctx_t *ctx, pf_ctx_keys_filter_t filter,
                       char ***out, size_t *n);

/* ---- the running state -------------------------------------------------
 *
 * These describe the state the context was given to; on a context made by
 * pf_ctx_new (not inside a state) they return the neutral value said. */

/* The state's name, or NULL. Valid while the state runs. */
PF_API const char *pf_ctx_state_name(const pf_ctx_t *ctx);

/* The agent's name, or NULL. */
PF_API const char *pf_ctx_agent_name(const pf_ctx_t *ctx);

/* Which attempt this is: 1 for the first run of the state, 2 for its first
 * retry, and so on; 0 outside a state. */
PF_API unsigned pf_ctx_attempt(const pf_ctx_t *ctx);

/* The state's deadline: the earlier of its timeout and the run's
 * deadline; none when it has neither (or outside a state). A state that
 * returns at or after its deadline has failed with PF_ETIMEDOUT, whatever
 * it returned. */
PF_API pf_deadline_t pf_ctx_deadline(const pf_ctx_t *ctx);

/* The state's cancellation token: cancelled when the run is cancelled
 * (pf_run_cancel, the run's token, its deadline) or when the state's
 * timeout passes, and bounded by the state's deadline, so waits given it
 * end in time. It follows the deadline exactly: from the deadline on,
 * pf_token_is_cancelled reports it (and any token made below it)
 * cancelled and waits given it return PF_ECANCELED, even before the timer
 * that runs its callbacks has fired; asked for after the deadline, it is
 * returned cancelled. (So pf_token_is_cancelled on it also reads the
 * clock.) Made on first call (the run keeps it; do not free it). NULL
 * outside a state, or when it could not be allocated. Thread-safe from the
 * state's own code. */
PF_API pf_token_t *pf_ctx_token(pf_ctx_t *ctx);

/* True once the run has been cancelled or the state's deadline has
 * passed: the cheap check for a long state to poll (no token is made).
 * False outside a state. */
PF_API bool pf_ctx_is_cancelled(const pf_ctx_t *ctx);

/* ---- routing: what runs next ------------------------------------------- */

/* Name a state to run after this one completes (call it several times for
 * several: they run in parallel). Takes effect only if this attempt
 * succeeds (or its breaker's fallback answers for it with 0); a retry
 * starts with no gotos. Returns 0; PF_ENOTFOUND for an
 * unknown state and PF_EINVAL for one outside the state's `next` list
 * (both also fail the attempt, with that error, and are not retried);
 * PF_ESTATE when ctx is not a running state's; PF_ENOMEM. Never blocks.
 * Call it only from the state's own thread. */
PF_API int pf_ctx_goto(pf_ctx_t *ctx, const char *state);

/* ---- asynchronous states: work that completes later --------------------
 *
 * A state may start work and return PF_PENDING instead of a result; the
 * work then completes the attempt later, exactly once, from any thread.
 * While it is pending the attempt holds no thread. Everything about the
 * attempt (breaker permit and call timeout, bulkhead place, leak
 * tracking, retries, fallbacks, dead letters, events, metrics) lasts until
 * the completion, as if the state's function had returned then.
 *
 *     static int fetch(pf_ctx_t *ctx, void *arg)
 *     {
 *         pf_completion_t *c;
 *         int rc = pf_ctx_pending(ctx, abort_transfer, xfer, &c);
 *
 *         if (rc != 0) {
 *             return rc;
 *         }
 *         start_transfer(xfer, c);  // its end: pf_completion_complete(c,
 *         return PF_PENDING;        //   result), then pf_completion_free(c)
 *     }
 *
 * The record behind a completion handle has two references: the
 * runtime's, dropped when the attempt has ended, and the provider's (the
 * caller of pf_ctx_pending), dropped by pf_completion_free. So a
 * completion that arrives after the attempt ended, or after the run was
 * freed, finds valid memory and is refused with an error code. */

typedef struct pf_completion pf_completion_t; /* opaque */

/* Abort the work of a pending attempt: called by the runtime at most once,
 * and only when no completion was accepted, when the attempt's timeout,
 * the run's deadline or a cancellation ends it, on whatever thread noticed
 * that (a worker, the reactor's loop, the thread calling pf_run_cancel),
 * with no lock of the runtime held. It must not block waiting for the
 * work, and must not free the completion; the attempt has already ended
 * when the work next calls pf_completion_complete (which is refused). */
typedef void (*pf_abort_fn)(void *arg);

/* Make the current attempt of ctx's state pending: *out receives the
 * completion handle, and the state's function must then return PF_PENDING.
 * abort (NULL = the work cannot be aborted; the attempt still ends at its
 * deadline) is called with abort_arg as pf_abort_fn says; abort_arg must
 * stay valid until the caller's pf_completion_free. Call it before
 * starting the work, so that a completion can never come first. Once per
 * attempt. Returns 0; PF_EINVAL for a NULL ctx or out, or a ctx that is
 * not a running state's; PF_ESTATE when the attempt is pending already, or
 * from a fallback; PF_ENOMEM (*out untouched: do not start the work).
 *
 * A state that returns PF_PENDING without a completion fails its attempt
 * with PF_ESTATE. One that made a completion and returns anything else
 * ends its attempt with that result; its work is aborted (unless it has
 * completed) and later completions are refused. */
PF_API int pf_ctx_pending(pf_ctx_t *ctx, pf_abort_fn abort, void *abort_arg,
                          pf_completion_t **out);

/* Complete the attempt of c with result (0 = success, anything else =
 * failure, as a state's return value; not PF_PENDING). From any thread,
 * including inside the state's function before it returns. Returns 0 when
 * the result was taken; otherwise nothing changes and it returns
 * PF_EINVAL for a NULL c or result PF_PENDING, PF_ESTATE when c was
 * completed already, or PF_ETIMEDOUT / PF_ECANCELED when the attempt had
 * already been ended that way (its abort was called). Never blocks beyond
 * queueing the state on the executor. Must not follow
 * pf_completion_free(c). */
PF_API int pf_completion_complete(pf_completion_t *c, int result);

/* pf_completion_complete, also telling the runtime how long to wait
 * before the attempt's retry (a server's Retry-After), as
 * pf_ctx_retry_after does for an attempt that returns its result:
 * retry_after seconds (>= 0; negative = none, as pf_completion_complete).
 * Taken only with the result (when the call returns 0). Also PF_EINVAL
 * for a NaN retry_after. */
PF_API int pf_completion_complete_after(pf_completion_t *c, int result,
                                        double retry_after);

/* Drop the provider's reference to c; the record is freed when the
 * runtime has dropped its own. It does not complete c: a provider that
 * gives up calls pf_completion_complete first. If the runtime is calling
 * c's abort at that moment, waits for the abort to return (so abort_arg
 * may be freed once this returns). NULL is a no-op; once per handle. */
PF_API void pf_completion_free(pf_completion_t *c);

/* Wait `seconds` (the executor's clock; 0 = complete at once, still
 * through the executor) without a thread: makes the attempt pending on a
 * timer of the executor's reactor and returns PF_PENDING, which the state
 * returns; the attempt then completes with 0. Its timeout, the run's
 * deadline or a cancellation aborts the timer (pf_wait_abort) and ends
 * the attempt at once. Use: `return pf_ctx_sleep(ctx, 0.1);`. Returns
 * PF_PENDING, or (nothing started) PF_EINVAL for a NULL ctx, negative or
 * NaN seconds, or a ctx that is not a running state's, PF_ESTATE, or
 * PF_ENOMEM. */
PF_API int pf_ctx_sleep(pf_ctx_t *ctx, double seconds);

/* Wait until fd is ready for events (PF_WAIT_READABLE and/or
 * PF_WAIT_WRITABLE, executor.h) without a thread, as pf_ctx_sleep: the
 * attempt completes with 0 when fd is ready (an error or hang-up counts as
 * ready), and its timeout, the run's deadline or a cancellation aborts the
 * wait and ends the attempt at once. fd must stay open until the attempt
 * has ended. The state records its gotos before returning; the next state
 * does the I/O. Returns PF_PENDING, or (nothing started) PF_EINVAL (also
 * for a negative fd, no or unknown events, an fd epoll cannot watch),
 * PF_ESTATE, PF_ENOMEM or PF_ESYSTEM. */
PF_API int pf_ctx_wait_fd(pf_ctx_t *ctx, int fd, unsigned events);

/* ---- Retry-After: the delay before the next retry ---------------------
 *
 * Tell the runtime how long to wait before retrying the current attempt
 * (a server's Retry-After): `seconds` replaces the delay the state's retry
 * policy's backoff would draw, for the retry after this attempt only,
 * capped at the backoff's max_delay; the policy's deadline, max_elapsed,
 * retry budget and listener still apply (a delay that would start the
 * next attempt at or after the deadline or max_elapsed ends the retries,
 * pf_retry_decide_after). It changes nothing when the attempt succeeds or
 * is not retried; a later call in the same attempt replaces it. Call it
 * from the state's function while it runs (an attempt that goes pending
 * gives it with pf_completion_complete_after instead, which wins). Returns
 * 0, or PF_EINVAL for a NULL ctx, a ctx that is not a running state's (or
 * from a fallback), or negative or NaN seconds. Never blocks. */
PF_API int pf_ctx_retry_after(pf_ctx_t *ctx, double seconds);

#ifdef __cplusplus
}
#endif

#endif /* PUFFINFLOW_CONTEXT_H */
