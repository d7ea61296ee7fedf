/* puffinflow — retries: backoff, retry policies, the retry loop and retry
 * budgets.
 *
 * A backoff (pf_backoff_t) says how long to wait before each retry: an
 * initial delay growing by a multiplier up to a cap, spread by jitter so
 * that many clients failing together do not retry together.
 *
 * A retry policy (pf_retry_policy_t) says which results are retried, how
 * many times, for how long, under which deadline and cancellation token,
 * whether a shared retry budget must agree, and who hears about each retry.
 * It has two faces:
 *   - pf_retry_call / pf_retry_call_ex, the blocking loop for plain
 *     threaded code: it calls, waits on the policy's clock, calls again;
 *   - pf_retry_start / pf_retry_next, the decision alone, which never
 *     sleeps: the caller runs each attempt and waits the returned delay as
 *     it likes (a timer in an event loop or in the agent runtime).
 * pf_retry_call is built on the second face, so both decide alike.
 *
 * A retry budget (pf_retry_budget_t) is shared by many callers: it allows
 * retries only up to a ratio of the calls made recently (20 percent by
 * default) plus a small reserve per second, so a failing dependency sees at
 * most a bounded extra load instead of a retry storm. */
#ifndef PUFFINFLOW_RETRY_H
#define PUFFINFLOW_RETRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "puffinflow/clock.h"
#include "puffinflow/deadline.h"
#include "puffinflow/export.h"
#include "puffinflow/types.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- backoff ---------------------------------------------------------- */

/* How a delay d = min(max_delay, initial_delay * multiplier^attempt) is
 * spread. r is a uniform random number in [0, 1).
 *
 * Decorrelated jitter ignores d: with prev the previous delay (raised to
 * initial_delay when below it or NaN) and hi = min(3 * prev, max_delay),
 * the delay is initial_delay + (hi - initial_delay) * r, uniform in
 * [initial_delay, hi). At the cap the range is narrowed before the draw,
 * not the draw clamped after it: once 3 * prev reaches max_delay every
 * delay is uniform in [initial_delay, max_delay) (mean halfway), and none
 * is max_delay itself, where AWS's min(cap, random(base, 3 * sleep)) would
 * return the cap for most draws. Without a random state (r taken as 1)
 * the delay is hi. */
typedef enum pf_jitter {
    PF_JITTER_NONE = 0,        /* d exactly */
    PF_JITTER_FULL = 1,        /* d * r: uniform in [0, d) */
    PF_JITTER_EQUAL = 2,       /* d * (0.5 + r / 2): uniform in [d/2, d) */
    PF_JITTER_DECORRELATED = 3 /* uniform in [initial_delay,
                                  min(3 * previous delay, max_delay)) */
} pf_jitter_t;

/* A backoff: caller memory, copied freely, fields edited after
 * pf_backoff_init. */
typedef struct pf_backoff {
    double initial_delay; /* seconds before the first retry; finite, >= 0;
                             default 1 */
    double multiplier;    /* growth per retry; finite, >= 1; default 2 */
    double max_delay;     /* cap in seconds; >= initial_delay, INFINITY =
                             no cap; default 60 */
    pf_jitter_t jitter;   /* default PF_JITTER_EQUAL */
} pf_backoff_t;

/* Fill b with the defaults above. Never fails. */
PF_API void pf_backoff_init(pf_backoff_t *b);

/* Check b: 0, or PF_EINVAL for NULL, a NaN, negative or infinite initial
 * delay, a multiplier below 1 (or NaN or infinite), a max delay below the
 * initial delay (or NaN), or an unknown jitter kind. Never blocks. */
PF_API int pf_backoff_validate(const pf_backoff_t *b);

/* The delay in seconds before retry number attempt + 1 (attempt 0 is the
 * first retry, after the first failed call), drawn with the random state
 * *rng_state (any value seeds it; it is advanced). Never negative, never
 * above max_delay, and the same for the same seed. For decorrelated jitter
 * the previous delay is taken to be the unjittered delay of attempt - 1
 * (initial_delay for attempt 0); pf_backoff_next takes the one actually
 * drawn. rng_state NULL gives the largest delay the draw could give. A
 * NULL or invalid b gives 0. Never blocks. Thread-safe (with its own
 * rng_state per thread). */
PF_API double pf_exponential_backoff(const pf_backoff_t *b, unsigned attempt,
                                     uint64_t *rng_state);

/* The same with the previous delay given (seconds; used only by
 * decorrelated jitter, where a NaN or a value below initial_delay counts as
 * initial_delay). */
PF_API double pf_backoff_next(const pf_backoff_t *b, unsigned attempt,
                              double prev_delay, uint64_t *rng_state);

/* ---- retry budget ------------------------------------------------------ */

typedef struct pf_retry_budget pf_retry_budget_t; /* opaque */

/* What a budget tells its listener: a retry was refused. */
typedef struct pf_retry_budget_event {
    const char *budget_name;  /* valid during the callback only */
    uint64_t window_calls;    /* calls counted in the window */
    uint64_t window_retries;  /* retries allowed in the window */
} pf_retry_budget_event_t;

typedef void (*pf_retry_budget_listener_fn)(const pf_retry_budget_event_t *ev,
                                            void *arg);

typedef struct pf_retry_budget_config {
    const char *name;            /* copied by _new; default "default" */
    double ratio;                /* retries allowed per call in the window;
                                    finite, 0..1000; default 0.2 */
    double min_retries_per_sec;  /* reserve allowed whatever the calls;
                                    finite, >= 0; default 10 */
    double window;               /* seconds calls and retries are counted,
                                    0.01 to 86400 (1 day); default 10 */
    pf_retry_budget_listener_fn listener; /* told of each refusal; may be
                                             NULL (default) */
    void *listener_arg;
    const pf_clock_t *clock;     /* NULL = system monotonic clock */
    /* Keep the counts of the window (calls and retries) in a
     * shared-memory segment that every process opening the same name
     * shares (shared.h, docs/shared.md): the allowance then holds for all
     * of them together, so a retry storm is bounded across processes.
     * Not kept (used by _new only). NULL (default) = in this process.
     * Every process sharing it must use the same clock (the system clock)
     * and the same ratio, min_retries_per_sec and window (otherwise _new
     * fails with PF_EEXIST). Totals in metrics (calls, retries, refused)
     * and the listener are this process's; window_calls, window_retries
     * and available are the shared window's. _new also returns PF_EFORMAT
     * for a corrupt, truncated, foreign or newer segment file, and
     * PF_ESYSTEM for one owned by another user (errno EACCES) or when the
     * file cannot be made. */
    const struct pf_shared_config *shared;
    /* Count the other processes' window too, through a store outside the
     * process (sync.h; filled by pf_redis_retry_budget_new, redis.h): a
     * withdrawal adds the others' calls and retries in their windows, as
     * the store last learned them (at most a sync interval old), to this
     * process's own before deciding; no call waits on the network. The
     * metrics' window_calls, window_retries and available then include
     * the others'. Copied. NULL (default) = none. With shared also set:
     * PF_EINVAL. */
    const struct pf_sync *sync;
} pf_retry_budget_config_t;

/* Fill cfg with the defaults above. Never fails. */
PF_API void pf_retry_budget_config_init(pf_retry_budget_config_t *cfg);

/* Create a budget. A retry is allowed while the retries allowed in the
 * last `window` seconds stay within ratio * calls in that window +
 * min_retries_per_sec * window. The window slides in steps of window / 10.
 * Returns 0 and stores it in *out, PF_EINVAL for a bad field (or NULL cfg,
 * out or name), or PF_ENOMEM / PF_ESYSTEM; on error nothing is created and
 * *out is untouched. cfg is not kept. Thread-safe. */
PF_API int pf_retry_budget_new(const pf_retry_budget_config_t *cfg,
                               pf_retry_budget_t **out);

/* Destroy b; NULL is a no-op. No other call on b may be running or
 * follow, and no policy still in use may point to it. */
PF_API void pf_retry_budget_free(pf_retry_budget_t *b);

/* Count one call (a first attempt, not a retry). Lock-free: one coarse
 * clock read and two atomic updates. NULL is a no-op. Never blocks.
 * Thread-safe. */
PF_API void pf_retry_budget_deposit(pf_retry_budget_t *b);

/* Ask for one retry: 0 and the retry is counted, or PF_EBUDGET when the
 * window's allowance is used up (then the listener runs, on the calling
 * thread with no lock held). PF_EINVAL for NULL. Takes the budget's mutex
 * for a few loads, so concurrent retries never exceed the allowance.
 * Thread-safe. */
PF_API int pf_retry_budget_try_withdraw(pf_retry_budget_t *b);

/* The budget's name, owned by b. */
PF_API const char *pf_retry_budget_name(const pf_retry_budget_t *b);

typedef struct pf_retry_budget_metrics {
    uint64_t calls;            /* deposits since creation */
    uint64_t retries;          /* withdrawals allowed since creation */
    uint64_t refused;          /* withdrawals refused since creation */
    uint64_t window_calls;     /* calls counted in the current window */
    uint64_t window_retries;   /* retries counted in the current window */
    uint64_t available;        /* retries allowed now */
    double ratio;              /* as configured */
    double min_retries_per_sec;
    double window;             /* seconds */
} pf_retry_budget_metrics_t;

/* Fill *out with a snapshot (counts read one by one, so a busy budget's
 * figures may be a few calls apart). NULL b or out: no-op. Thread-safe. */
PF_API void pf_retry_budget_metrics(pf_retry_budget_t *b,
                                    pf_retry_budget_metrics_t *out);

/* ---- retry policy ------------------------------------------------------ */

/* Why a retried operation stopped. */
typedef enum pf_retry_stop {
    PF_RETRY_STOP_NONE = 0,      /* not stopped: a retry is planned */
    PF_RETRY_STOP_SUCCESS,       /* the last attempt returned 0 */
    PF_RETRY_STOP_NOT_RETRYABLE, /* its result is not retried */
    PF_RETRY_STOP_EXHAUSTED,     /* max_retries retries were made */
    PF_RETRY_STOP_ELAPSED,       /* the next attempt would start at or after
                                    max_elapsed */
    PF_RETRY_STOP_DEADLINE,      /* ... at or after the deadline (the
                                    policy's or the token's), or it had
                                    passed before the first attempt */
    PF_RETRY_STOP_CANCELED,      /* the token was cancelled */
    PF_RETRY_STOP_BUDGET,        /* the retry budget refused the retry */
    PF_RETRY_STOP_LISTENER,      /* the policy's listener vetoed it */
    PF_RETRY_STOP_INVALID,       /* bad policy or argument (PF_EINVAL) */
    PF_RETRY_STOP_SYSTEM         /* the wait could not be set up
                                    (PF_ESYSTEM) */
} pf_retry_stop_t;

/* A constant name for a stop reason ("deadline", ...); never NULL. */
PF_API const char *pf_retry_stop_name(pf_retry_stop_t stop);

/* Decides whether a non-zero result is retried. */
typedef bool (*pf_retry_predicate_fn)(int result, void *arg);

/* What the policy's listener sees before a planned retry. */
typedef struct pf_retry_event {
    unsigned attempt; /* the attempt that just failed: 1 = the first call */
    int result;       /* what it returned */
    double delay;     /* seconds until the next attempt: the listener may
                         change it (to honour a server's Retry-After); NaN
                         or negative values are ignored */
} pf_retry_event_t;

/* Called after a failed attempt that is going to be retried, before the
 * deadline, max_elapsed and budget checks (which see the delay it chose,
 * and may still stop the retry). Return 0 to go on, non-zero to stop
 * retrying (PF_RETRY_STOP_LISTENER). Runs on the deciding thread with no
 * lock held. */
typedef int (*pf_retry_listener_fn)(pf_retry_event_t *ev, void *arg);

/* A retry policy: caller memory, fields edited after pf_retry_policy_init.
 * Nothing in it is copied; pointed-to objects must outlive its use. */
typedef struct pf_retry_policy {
    unsigned max_retries;      /* retries after the first attempt (so at
                                  most max_retries + 1 calls); default 3 */
    const pf_backoff_t *backoff; /* not copied: must outlive the policy's
                                    use; NULL (default) = pf_backoff_init's
                                    defaults */
    const int *retry_on;       /* when retry_on_len > 0: only these results
                                  are retried; default NULL */
    size_t retry_on_len;
    pf_retry_predicate_fn is_retryable; /* when set: also must say yes;
                                           default NULL */
    void *is_retryable_arg;
    double max_elapsed;        /* seconds from the first attempt's start
                                  within which every attempt must start;
                                  0 = no limit (default) */
    pf_deadline_t deadline;    /* no attempt starts at or after it;
                                  default none */
    pf_token_t *token;         /* cancels the waits and stops retrying;
                                  its deadline counts too; default NULL */
    pf_retry_budget_t *budget; /* when set: each operation is counted as a
                                  call and each retry must be allowed by
                                  it; default NULL */
    pf_retry_listener_fn listener; /* default NULL */
    void *listener_arg;
    uint64_t seed;             /* jitter seed; 0 (default) = a fresh seed
                                  per operation. A fixed seed makes every
                                  operation wait alike: for tests. */
    const pf_clock_t *clock;   /* waits and elapsed time; NULL = system */
} pf_retry_policy_t;

/* Fill p with the defaults above: 3 retries, 1 s initial delay doubling up
 * to 60 s with equal jitter, every non-zero result retried except PF_EOPEN
 * (a circuit breaker said no: retrying only hammers it), PF_ECANCELED and
 * PF_EDEADLINE (neither can succeed later), no time limit, no budget.
 * With retry_on or is_retryable set, exactly what they allow is retried.
 * Never fails. */
PF_API void pf_retry_policy_init(pf_retry_policy_t *p);

/* Check p: 0, or PF_EINVAL for NULL, a bad backoff, a NaN or negative
 * max_elapsed, or retry_on NULL with retry_on_len > 0. Never blocks. */
PF_API int pf_retry_policy_validate(const pf_retry_policy_t *p);

/* True when p retries result (0 is never retried). */
PF_API bool pf_retry_is_retryable(const pf_retry_policy_t *p, int result);

/* The outcome of a retried operation. */
typedef struct pf_retry_result {
    int result;            /* what the operation returned */
    unsigned attempts;     /* calls made (0 when none started) */
    pf_retry_stop_t stop;  /* why it stopped */
    bool budget_refused;   /* the budget refused a retry */
    double delayed;        /* seconds of delay planned between attempts */
} pf_retry_result_t;

/* Call fn(arg) until it returns 0 or p says stop, waiting on p's clock
 * between attempts; return the last result. It stops at success, at a
 * result p does not retry, after max_retries retries, when the next
 * attempt would start at or after max_elapsed or the deadline (then it
 * returns at once, without waiting out a delay it could not use), when the
 * token is cancelled (the wait ends at once), or when the budget or the
 * listener refuses. Before the first attempt: PF_EINVAL for a NULL or
 * invalid p or NULL fn, PF_ECANCELED when the token is already cancelled,
 * PF_EDEADLINE when the deadline has already passed; fn is then never
 * called. When the first attempt succeeds it costs a few comparisons: no
 * clock read (unless p has a deadline or max_elapsed), no allocation.
 * Calls fn and the listener on the calling thread with no lock held.
 * Blocks up to the sum of the delays. Thread-safe (p is only read). */
PF_API int pf_retry_call(const pf_retry_policy_t *p, pf_call_fn fn,
                         void *arg);

/* The same, also filling *out (may be NULL) with the outcome, whatever is
 * returned. */
PF_API int pf_retry_call_ex(const pf_retry_policy_t *p, pf_call_fn fn,
                            void *arg, pf_retry_result_t *out);

/* ---- the non-blocking face --------------------------------------------- */

/* The progress of one retried operation: caller memory, set up by
 * pf_retry_start. Fields are private. */
typedef struct pf_retry_state {
    unsigned priv_attempts;
    int priv_last_result;
    int priv_stop;
    bool priv_budget_refused;
    int64_t priv_start_ns;
    int64_t priv_delayed_ns;
    double priv_prev_delay;
    uint64_t priv_rng;
} pf_retry_state_t;

/* Start an operation retried under p, at now_ns on p's clock: reset *st,
 * seed its jitter, and count the operation as a call in p's budget.
 * Returns 0 (make the first attempt), PF_EINVAL (NULL or invalid p, NULL
 * st), PF_ECANCELED (token already cancelled) or PF_EDEADLINE (the
 * deadline has passed); on error no attempt may be made, and st (when not
 * NULL) records why. Never blocks. Thread-safe (p is only read). */
PF_API int pf_retry_start(const pf_retry_policy_t *p, pf_retry_state_t *st,
                          int64_t now_ns);

/* Decide after an attempt that returned result, at now_ns on p's clock
 * (read after the attempt). Returns true when the operation is to be
 * retried: *delay_ns is then the wait before the next attempt, that retry
 * has been charged to the budget, and the listener has run. Returns false
 * when it is over: result is final, and pf_retry_state_result says why.
 * A decision to stop is final: once pf_retry_next has returned false (or
 * pf_retry_start refused, or pf_retry_call's wait ended it), every later
 * call on st returns false and changes nothing: no attempt is counted, the
 * stop reason and result stay, the predicate, the listener and the budget
 * are not consulted, and *delay_ns is untouched. pf_retry_decide tells
 * such a late call apart (PF_ESTATE). Never sleeps; reads no clock but the
 * deadline's own when it is on another clock than p's. Calls the
 * predicate and the listener on the calling thread with no lock held.
 * False for NULL arguments. Not thread-safe for one st: one operation is
 * decided by one thread at a time. */
PF_API bool pf_retry_next(const pf_retry_policy_t *p, pf_retry_state_t *st,
                          int result, int64_t now_ns, int64_t *delay_ns);

/* pf_retry_next with its misuse reported: returns 0 when it decided, with
 * *retry true (retry after *delay_ns) or false (the operation is over, as
 * pf_retry_next's false); PF_ESTATE when the operation had already ended
 * before this call (nothing changes, as above); PF_EINVAL for a NULL
 * argument. On an error *retry is false (when retry is not NULL).
 * Otherwise as pf_retry_next. */
PF_API int pf_retry_decide(const pf_retry_policy_t *p, pf_retry_state_t *st,
                           int result, int64_t now_ns, bool *retry,
                           int64_t *delay_ns);

/* pf_retry_decide with the delay the failed operation asked for (a
 * server's Retry-After): when retry_after >= 0 it is the delay before the
 * next attempt instead of the backoff's draw, capped at the backoff's
 * max_delay; the listener, max_elapsed, the deadline and the budget then
 * see it as any other delay (so one that would start the next attempt at
 * or after the deadline or max_elapsed stops the retries). Negative or NaN
 * retry_after = none: exactly pf_retry_decide. A hinted delay does not
 * draw jitter; it becomes the previous delay of decorrelated jitter. */
PF_API int pf_retry_decide_after(const pf_retry_policy_t *p,
                                 pf_retry_state_t *st, int result,
                                 int64_t now_ns, double retry_after,
                                 bool *retry, int64_t *delay_ns);

/* The outcome so far of the operation st tracks. NULL st or out: no-op. */
PF_API void pf_retry_state_result(const pf_retry_state_t *st,
                                  pf_retry_result_t *out);

#ifdef __cplusplus
}
#endif

#endif /* PUFFINFLOW_RETRY_H */
