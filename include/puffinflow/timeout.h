/* puffinflow — timeouts: nested timeout scopes (the timeout manager) and
 * running a call under a timeout.
 *
 * Both build on the deadlines and cancellation tokens of deadline.h. */
#ifndef PUFFINFLOW_TIMEOUT_H
#define PUFFINFLOW_TIMEOUT_H

#include <stdbool.h>
#include <stdint.h>

#include "puffinflow/clock.h"
#include "puffinflow/deadline.h"
#include "puffinflow/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- timeout manager --------------------------------------------------- */

/* A timeout manager keeps nested timeout scopes, like the reference's
 * TimeoutManager: work enters a scope with a time limit and leaves it when
 * done. A scope's effective deadline is the earliest of its own and those
 * of the scopes it is nested in, so inner work can never outlive outer
 * limits. Scopes are kept per thread: one manager may be shared by many
 * threads (an agent's states running at once), each seeing only its own
 * scopes; a scope is entered and left on the same thread. Each scope owns a
 * cancellation token carrying its effective deadline, a child of the
 * enclosing scope's token (or of the manager's token), to hand to every
 * wait the work makes.
 *
 * Scopes do not interrupt work: work polls pf_timeout_check (or its token),
 * and pf_timeout_leave says whether the limit was overrun. */
typedef struct pf_timeout_manager pf_timeout_manager_t; /* opaque */

/* One scope: caller memory (usually a local), from pf_timeout_enter to
 * pf_timeout_leave. Fields are private. */
typedef struct pf_timeout_scope {
    struct pf_timeout_scope *priv_outer;
    pf_timeout_manager_t *priv_manager;
    pf_token_t *priv_token;
    pf_deadline_t priv_deadline;
    double priv_seconds;
} pf_timeout_scope_t;

typedef enum pf_timeout_event_kind {
    PF_TIMEOUT_EVENT_EXPIRED = 0,          /* a scope was left after its
                                              deadline (leave returned
                                              PF_ETIMEDOUT) */
    PF_TIMEOUT_EVENT_DEADLINE_EXCEEDED = 1 /* an enter found the deadline
                                              already passed (PF_EDEADLINE) */
} pf_timeout_event_kind_t;

typedef struct pf_timeout_event {
    pf_timeout_event_kind_t kind;
    const char *manager_name; /* valid during the callback only */
    double seconds;           /* the scope's own limit (INFINITY: none) */
    double overrun;           /* seconds past the deadline (0 at enter) */
} pf_timeout_event_t;

typedef void (*pf_timeout_listener_fn)(const pf_timeout_event_t *ev,
                                       void *arg);

typedef struct pf_timeout_config {
    const char *name;              /* copied by _new; default "default" */
    pf_token_t *token;             /* parent of outermost scopes' tokens:
                                      cancelling it cancels every scope;
                                      must outlive the manager; default
                                      NULL */
    pf_timeout_listener_fn listener; /* default NULL */
    void *listener_arg;
    const pf_clock_t *clock;       /* NULL = system monotonic clock */
} pf_timeout_config_t;

/* Fill cfg with the defaults above. Never fails. */
PF_API void pf_timeout_config_init(pf_timeout_config_t *cfg);

/* Create a manager. Returns 0 and stores it in *out, PF_EINVAL (NULL cfg,
 * out or name), or PF_ENOMEM; on error nothing is created and *out is
 * untouched. cfg is not kept. Thread-safe. */
PF_API int pf_timeout_manager_new(const pf_timeout_config_t *cfg,
                                  pf_timeout_manager_t **out);

/* Destroy tm; NULL is a no-op. No scope of tm may still be entered on any
 * thread, and no other call on tm may be running or follow. */
PF_API void pf_timeout_manager_free(pf_timeout_manager_t *tm);

/* The manager's name, owned by tm. */
PF_API const char *pf_timeout_manager_name(const pf_timeout_manager_t *tm);

/* Enter scope s of tm on this thread, limited to `seconds` from now
 * (INFINITY: no limit of its own, only the enclosing ones). Returns 0 (s is
 * entered: leave it with pf_timeout_leave), or, with s not entered:
 * PF_EINVAL (NULL tm or s, NaN or negative seconds); PF_EDEADLINE when the
 * effective deadline has already passed before the work starts (an
 * enclosing scope's, or seconds == 0; the reference's
 * DeadlineExceededError); PF_ECANCELED when the enclosing token is
 * cancelled; PF_ENOMEM / PF_ESYSTEM. Never blocks. Thread-safe; the
 * scope belongs to the calling thread. */
PF_API int pf_timeout_enter(pf_timeout_manager_t *tm, pf_timeout_scope_t *s,
                            double seconds);

/* The same with an absolute deadline (for a deadline handed down with the
 * work, as in the reference's deadline_aware_processing); d NULL:
 * PF_EINVAL (pass pf_deadline_none() for no limit of its own). */
PF_API int pf_timeout_enter_deadline(pf_timeout_manager_t *tm,
                                     pf_timeout_scope_t *s,
                                     const pf_deadline_t *d);

/* Leave scope s, which must be this thread's innermost scope (of any
 * manager): then it is left and frees its token, and the result says how
 * it went: 0 (in time), PF_ETIMEDOUT (its deadline had passed: the work
 * overran), PF_ECANCELED (its token was cancelled). PF_EINVAL (NULL, or s
 * not entered on tm) or PF_ESTATE (s is not the innermost scope) leave
 * nothing. Never blocks. Thread-safe. */
PF_API int pf_timeout_leave(pf_timeout_manager_t *tm, pf_timeout_scope_t *s);

/* The effective deadline of this thread's innermost scope of tm; none
 * outside any scope (or NULL tm). One pointer walk, no clock read. */
PF_API pf_deadline_t pf_timeout_deadline(const pf_timeout_manager_t *tm);

/* Seconds left before that deadline, >= 0; INFINITY outside any scope. */
PF_API double pf_timeout_remaining(const pf_timeout_manager_t *tm);

/* The token of this thread's innermost scope of tm (owned by the scope,
 * valid until it is left), or the manager's own token (may be NULL)
 * outside any scope. Hand it to every wait the work makes. */
PF_API pf_token_t *pf_timeout_token(const pf_timeout_manager_t *tm);

/* For work polling its limit: 0, PF_ETIMEDOUT (the innermost scope's
 * deadline has passed) or PF_ECANCELED. Outside any scope: 0, or
 * PF_ECANCELED when the manager's token is cancelled. */
PF_API int pf_timeout_check(const pf_timeout_manager_t *tm);

/* How many scopes of tm this thread is inside. */
PF_API unsigned pf_timeout_depth(const pf_timeout_manager_t *tm);

typedef struct pf_timeout_metrics {
    uint64_t entered;           /* scopes entered */
    uint64_t left;              /* scopes left, however */
    uint64_t timed_out;         /* ... of them after their deadline */
    uint64_t cancelled;         /* ... of them with their token cancelled */
    uint64_t deadline_exceeded; /* enters refused with PF_EDEADLINE */
    uint64_t active;            /* scopes entered now, on all threads */
} pf_timeout_metrics_t;

/* Fill *out with a snapshot. NULL tm or out: no-op. Thread-safe. */
PF_API void pf_timeout_manager_metrics(const pf_timeout_manager_t *tm,
                                       pf_timeout_metrics_t *out);

/* ---- running a call under a timeout ------------------------------------ */

/* Work run under a timeout: it gets its deadline and a token that is
 * cancelled when the caller stops waiting, and should return soon after
 * either. Returns 0 or its own non-zero result. */
typedef int (*pf_deadline_fn)(const pf_deadline_t *deadline,
                              pf_token_t *token, void *arg);

/* Told when a timed call's work is over, with its result. */
typedef void (*pf_timeout_done_fn)(int result, void *arg);

typedef struct pf_timeout_opts {
    const pf_clock_t *clock;        /* NULL = system monotonic clock */
    pf_token_t *parent;             /* fn's token is its child: cancelling
                                       it ends the wait (PF_ECANCELED), and
                                       its deadline bounds fn's; may be
                                       NULL (default) */
    pf_timeout_done_fn on_complete; /* the owner's release hook; default
                                       NULL */
    void *on_complete_arg;
} pf_timeout_opts_t;

/* Fill o with the defaults above. Never fails. */
PF_API void pf_timeout_opts_init(pf_timeout_opts_t *o);

/* Run fn(deadline, token, arg) on a helper thread and wait for it up to
 * `seconds` on opts->clock (opts NULL: system clock, no parent, no hook).
 * Returns fn's result when it returns in time; PF_ETIMEDOUT at the
 * deadline, when fn's token is cancelled and the caller returns while fn
 * goes on to finish on the helper thread; PF_ECANCELED when the parent
 * token is cancelled meanwhile (the same otherwise). Before fn starts:
 * PF_EINVAL (NULL fn, NaN or negative seconds), PF_EDEADLINE (seconds 0,
 * or the parent's deadline had passed), PF_ECANCELED (parent already
 * cancelled), PF_ENOMEM or PF_ESYSTEM (no thread); fn is then never
 * called. INFINITY seconds with no parent run fn on the calling thread.
 *
 * Helper threads come from a process-wide pool shared with the health
 * checkers, made on first use: a thread is reused from call to call, and
 * one left idle for 10 s ends. A fn that outlives its caller keeps its
 * thread; the pool grows past it, up to 256 threads. With all 256 busy the
 * call waits for one to become free, within its own deadline: if none is
 * free in time it returns PF_ETIMEDOUT (or PF_ECANCELED) and fn is never
 * called (on_complete then runs on the calling thread with that result).
 *
 * Ownership: on_complete(result, on_complete_arg) runs exactly once for
 * every call with opts, whatever happens: when fn finished in time, on the
 * calling thread before this returns; after PF_ETIMEDOUT or PF_ECANCELED,
 * on the helper thread when fn really returns; when fn never started
 * (an error above, or still waiting for a pool thread at the deadline), on
 * the calling thread with the error. After it ran, the library touches
 * neither arg nor on_complete_arg: it is the place to free them. Without
 * on_complete, arg must stay valid until fn returns, which after
 * PF_ETIMEDOUT the caller cannot know. Blocks up to `seconds`.
 * Thread-safe. */
PF_API int pf_timeout_call_ex(double seconds, pf_deadline_fn fn, void *arg,
                              const pf_timeout_opts_t *opts);

/* pf_timeout_call_ex with no options. */
PF_API int pf_timeout_call(double seconds, pf_deadline_fn fn, void *arg);

#ifdef __cplusplus
}
#endif

#endif /* PUFFINFLOW_TIMEOUT_H */
