/* puffinflow — rate limiter: a token bucket.
 *
 * The bucket holds at most `burst` permits and refills at `rate` permits per
 * second; it starts full. Over any stretch of time t, at most
 * burst + rate * t permits are handed out (plus rate times the coarse
 * clock's resolution when the limiter reads that clock: see
 * docs/ratelimit.md). The count is exact, with no drift: on a manual clock
 * the k-th permit after an empty bucket is there at the first nanosecond
 * at or after k / rate seconds. That holds for every rate whose permit
 * interval, 1e9 / rate ns, is a whole number of 1/q ns for some q up to 64:
 * every integer rate up to 64, every divisor of 1e9 (1, 2, 4, 5, 8, 10, ...
 * 1000, 1e6 per second) and those times up to 64 (3, 30, 7e6, 2.5 ...).
 * Any other rate has its interval rounded up by less than 1/64 ns: fewer
 * permits, never more (at most 0.2% fewer at 1e8 per second, 0.002% at
 * 1e6).
 *
 * Faces:
 *   - pf_ratelimit_try_acquire: never blocks; lock-free;
 *   - pf_ratelimit_acquire / pf_ratelimit_acquire_until: wait up to a
 *     timeout (and the caller's deadline and token) for permits;
 *   - pf_ratelimit_time_until + pf_ratelimit_reserve / pf_ratelimit_refund:
 *     for schedulers that turn the wait into a timer instead of a blocked
 *     thread.
 *
 * Waiting callers are served in the order they asked: a blocking acquire
 * reserves its permits at once (the bucket goes into debt) and sleeps until
 * they are due, so a later caller cannot take them first. */
#ifndef PUFFINFLOW_RATELIMIT_H
#define PUFFINFLOW_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

#include "puffinflow/clock.h"
#include "puffinflow/deadline.h"
#include "puffinflow/export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pf_ratelimit pf_ratelimit_t; /* opaque */

/* The highest rate accepted: one permit per nanosecond. */
#define PF_RATELIMIT_MAX_RATE 1e9

/* ---- events ----------------------------------------------------------- */

typedef enum pf_ratelimit_event_kind {
    /* Permits were refused: try_acquire found too few, or an acquire or
     * reserve would have had to wait longer than it may. */
    PF_RATELIMIT_REJECTED = 0
} pf_ratelimit_event_kind_t;

/* What the listener is told; valid only during the callback. */
typedef struct pf_ratelimit_event {
    pf_ratelimit_event_kind_t kind;
    const char *name;   /* the limiter's name */
    unsigned requested; /* permits asked for */
    int64_t wait_ns;    /* how long until they would have been available */
} pf_ratelimit_event_t;

/* Called on the thread that was refused, with no lock held; it may call
 * any function of the limiter except pf_ratelimit_free. */
typedef void (*pf_ratelimit_listener_fn)(const pf_ratelimit_event_t *ev,
                                         void *arg);

/* ---- config ----------------------------------------------------------- */

typedef struct pf_ratelimit_config {
    const char *name;        /* copied by _new; default "default" */
    double rate;             /* permits per second, > 0 and at most
                                PF_RATELIMIT_MAX_RATE; default 10 */
    unsigned burst;          /* bucket size: most permits at once, >= 1;
                                default 10 */
    const pf_clock_t *clock; /* NULL = system monotonic clock */
    pf_ratelimit_listener_fn listener; /* NULL = none; default NULL */
    void *listener_arg;
    /* Keep the bucket in a shared-memory segment that every process
     * opening the same name shares (shared.h, docs/shared.md): the rate
     * and burst then hold for all of them together. Not kept (used by
     * _new only). NULL (default) = in this process. Every process sharing
     * it must use the same clock (the system clock: times are stored in
     * the segment) and the same rate and burst (otherwise _new fails with
     * PF_EEXIST). The bucket is shared; counts in metrics and the listener
     * are this process's. Decisions stay one CAS on a word in the mapping,
     * with no lock and no system call. _new also returns PF_EFORMAT for a
     * corrupt, truncated, foreign or newer segment file, and PF_ESYSTEM
     * for one owned by another user (errno EACCES) or when the file cannot
     * be made. */
    const struct pf_shared_config *shared;
    /* Take permits from a store outside the process shared with other
     * processes (sync.h; filled by pf_redis_ratelimit_new, redis.h): each
     * decision asks the hook (no network: the store lends this process
     * permits ahead of time) and uses this limiter's own bucket (rate,
     * burst) only when the hook says the store cannot answer. Such a
     * limiter never waits for permits: acquire and reserve decide as
     * try_acquire does (0 or PF_ERATELIMIT at once). Copied. NULL
     * (default) = none. With shared also set: PF_EINVAL. */
    const struct pf_sync *sync;
} pf_ratelimit_config_t;

/* Fill cfg with the defaults listed above. Never fails; NULL is a no-op. */
PF_API void pf_ratelimit_config_init(pf_ratelimit_config_t *cfg);

/* Create a rate limiter, its bucket full. Returns 0 and stores it in *out;
 * PF_EINVAL for a NULL argument or a bad field (NULL name; rate zero,
 * negative, NaN, infinite or above PF_RATELIMIT_MAX_RATE; burst 0; a
 * bucket that would take more than about two years to refill); PF_ENOMEM.
 * On error nothing is created and *out is untouched. cfg is not kept (the
 * name is copied); the clock must outlive the limiter. Thread-safe. */
PF_API int pf_ratelimit_new(const pf_ratelimit_config_t *cfg,
                            pf_ratelimit_t **out);

/* Destroy rl; NULL is a no-op. Nothing may be waiting in an acquire, and no
 * other call on rl may be running or follow. */
PF_API void pf_ratelimit_free(pf_ratelimit_t *rl);

/* ---- acquiring -------------------------------------------------------- */

/* Take n permits now if the bucket holds them: all n or none. Returns 0,
 * PF_ERATELIMIT (nothing taken; counted in rejected, the listener hears
 * REJECTED), or PF_EINVAL (NULL, n == 0, n > burst: never possible).
 * Never blocks; lock-free. Thread-safe. */
PF_API int pf_ratelimit_try_acquire(pf_ratelimit_t *rl, unsigned n);

/* Take n permits, waiting up to timeout seconds for them. Whether they come
 * in time is known at once: if they would not, returns PF_ERATELIMIT
 * without waiting and takes nothing. Otherwise they are reserved at once
 * (later callers queue behind them) and the call sleeps until they are
 * due, then returns 0. timeout 0 behaves as try_acquire; INFINITY waits as
 * long as it takes. PF_EINVAL for NULL, n == 0, n > burst, or a negative
 * or NaN timeout. Blocks up to timeout on the limiter's clock.
 * Thread-safe. */
PF_API int pf_ratelimit_acquire(pf_ratelimit_t *rl, unsigned n, double timeout);

/* pf_ratelimit_acquire that also honours the caller's deadline (NULL =
 * none; on any clock) and tok (NULL = none). Returns 0, PF_ERATELIMIT (the
 * permits come after timeout, and timeout ends before the caller's
 * deadline), PF_ETIMEDOUT (they come after the caller's deadline or the
 * token's, which ends first: decided at once, nothing taken),
 * PF_ECANCELED (tok was cancelled, before or during the wait: the reserved
 * permits are given back), PF_EINVAL as pf_ratelimit_acquire. Blocks up to
 * the earliest of timeout and the caller's limits. Thread-safe. */
PF_API int pf_ratelimit_acquire_until(pf_ratelimit_t *rl, unsigned n,
                                      double timeout,
                                      const pf_deadline_t *deadline,
                                      pf_token_t *tok);

/* ---- for schedulers: waits as timers ----------------------------------- */

/* Nanoseconds from now until n permits will be in the bucket (0 = now), if
 * nobody else takes any meanwhile: a scheduler sets a timer for it and
 * calls try_acquire when it fires. INT64_MAX for n == 0 or n > burst (never
 * possible) or NULL. Reads the clock once. Never blocks. Thread-safe. */
PF_API int64_t pf_ratelimit_time_until_ns(pf_ratelimit_t *rl, unsigned n);

/* The same in seconds (INFINITY for never). */
PF_API double pf_ratelimit_time_until(pf_ratelimit_t *rl, unsigned n);

/* Reserve n permits now, due up to max_wait seconds in the future: the
 * non-blocking acquire. Returns 0 and stores in *wait_ns how long from now
 * until they are due (0 = now); the caller must not use them before then
 * (a timer), and gives them back with pf_ratelimit_refund if it no longer
 * wants them. Returns PF_ERATELIMIT when they would be due later than
 * max_wait (nothing reserved), PF_EINVAL as pf_ratelimit_acquire or for a
 * NULL wait_ns. Never blocks. Thread-safe. */
PF_API int pf_ratelimit_reserve(pf_ratelimit_t *rl, unsigned n, double max_wait,
                                int64_t *wait_ns);

/* Give back n permits taken or reserved and not used: the bucket gains
 * them, never beyond burst. Later reservations do not move earlier (their
 * callers were already told when to come), but the permits become
 * available to the next request. NULL or n == 0 is a no-op. Never blocks.
 * Thread-safe. */
PF_API void pf_ratelimit_refund(pf_ratelimit_t *rl, unsigned n);

/* ---- introspection ---------------------------------------------------- */

/* The limiter's name (its own copy, valid until pf_ratelimit_free). */
PF_API const char *pf_ratelimit_name(const pf_ratelimit_t *rl);

typedef struct pf_ratelimit_metrics {
    double rate; /* permits per second */
    unsigned burst;
    unsigned available; /* whole permits in the bucket now (0 while in
                           debt to waiting callers) */
    uint64_t acquired;  /* permits handed out (acquired or reserved) */
    uint64_t rejected;  /* requests refused */
    uint64_t waited;    /* requests that had to wait (acquire, reserve) */
    uint64_t refunded;  /* permits given back */
    bool precise_clock; /* decisions read the precise clock (true) or
                           the cheap coarse one (false); see docs */
} pf_ratelimit_metrics_t;

/* Fill *out with a snapshot (each field read atomically). NULL arguments
 * are a no-op. Never blocks. Thread-safe. */
PF_API void pf_ratelimit_metrics(pf_ratelimit_t *rl,
                                 pf_ratelimit_metrics_t *out);

#ifdef __cplusplus
}
#endif

#endif /* PUFFINFLOW_RATELIMIT_H */
