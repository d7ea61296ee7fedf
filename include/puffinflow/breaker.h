/* puffinflow — circuit breaker.
 *
 * A circuit breaker stops calling a dependency that keeps failing, gives it
 * time to recover, then lets a few trial calls through to see whether it
 * has. It is CLOSED (calls pass, failures are counted), OPEN (calls are
 * rejected with PF_EOPEN at once) or HALF_OPEN (a few trial calls pass;
 * enough successes close it, one failure opens it again):
 *
 *   CLOSED --failures reach the threshold--> OPEN
 *   OPEN --recovery_timeout has passed--> HALF_OPEN
 *   HALF_OPEN --success_threshold successes--> CLOSED
 *   HALF_OPEN --a failure, or a trial never recorded--> OPEN (timer restarts)
 *
 * Failures are counted one of three ways (config `window`): consecutive
 * failures (the default: a success in CLOSED resets the count), or the
 * failure rate and slow-call rate over a sliding window of the last N calls
 * or the last N seconds.
 *
 * Two faces: the permit face (pf_breaker_acquire, then run the call, then
 * pf_breaker_record) never blocks and suits event loops and schedulers;
 * pf_breaker_call wraps a plain function, with fallback and timeout. A
 * closed breaker takes no lock: both faces cost nanoseconds.
 *
 * Keyed groups (pf_breaker_group_*) hold one breaker per key (one per
 * downstream host, say), created from one config on first use, bounded in
 * number with least-recently-used eviction of closed breakers. Named
 * registries of breakers live in registry.h. */
#ifndef PUFFINFLOW_BREAKER_H
#define PUFFINFLOW_BREAKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "puffinflow/clock.h"
#include "puffinflow/export.h"
#include "puffinflow/types.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pf_breaker pf_breaker_t; /* opaque */

typedef enum pf_breaker_state {
    PF_BREAKER_CLOSED,
    PF_BREAKER_OPEN,
    PF_BREAKER_HALF_OPEN
} pf_breaker_state_t;

/* How failures are counted while CLOSED. */
typedef enum pf_breaker_window {
    /* failure_threshold failures in a row open it (the reference's rule). */
    PF_BREAKER_WINDOW_CONSECUTIVE,
    /* Rates over the last window_size recorded calls. */
    PF_BREAKER_WINDOW_COUNT,
    /* Rates over the calls recorded in the last window_size seconds (the
     * current second and window_size - 1 whole seconds before it). */
    PF_BREAKER_WINDOW_TIME
} pf_breaker_window_t;

/* How a recorded result was counted (pf_breaker_record_outcome). */
typedef enum pf_breaker_outcome {
    PF_BREAKER_OUTCOME_NONE,    /* empty, already recorded or foreign permit:
                                   nothing was counted */
    PF_BREAKER_OUTCOME_SUCCESS, /* result 0 within the timeout */
    PF_BREAKER_OUTCOME_FAILURE, /* a result that counts as a failure */
    PF_BREAKER_OUTCOME_TIMEOUT, /* took longer than timeout: a failure */
    PF_BREAKER_OUTCOME_IGNORED  /* a non-zero result that is not a failure */
} pf_breaker_outcome_t;

/* Decides whether a non-zero result counts as a failure: return true to
 * count it. Runs on the recording thread with no lock held. */
typedef bool (*pf_breaker_failure_fn)(int result, void *arg);

/* Told of every state change of b, in order, one at a time, with no lock
 * held: on the thread that made the change, or on a thread already telling
 * of an earlier one. It may call any function on b but pf_breaker_free
 * (a change it makes is told after the current one). Changes queue up
 * while it runs; only if memory runs out is the oldest dropped (counted in
 * the metrics' events_dropped). */
typedef void (*pf_breaker_listener_fn)(pf_breaker_t *b,
                                       pf_breaker_state_t from,
                                       pf_breaker_state_t to, void *arg);

/* A permission to make one call, filled by pf_breaker_acquire and given
 * back by pf_breaker_record (or pf_breaker_release). Caller memory: it may
 * live on the stack; fields are private. A rejected acquire leaves it
 * empty. Recording an empty permit, one already recorded, or one from
 * another breaker does nothing; so does recording one taken before a state
 * change, except for the counts in the metrics: a slow success that began
 * while CLOSED and ends after the breaker opened never helps close it.
 * Record through the permit acquire filled, not a copy: a copy recorded a
 * second time cannot be told from the first. Zero it (PF_PERMIT_INIT) if
 * it may be recorded without having been acquired. */
typedef struct pf_permit {
    const pf_breaker_t *priv_breaker;
    uint64_t priv_epoch;    /* breaker state epoch at acquire; 0 = empty */
    uint64_t priv_ticket;   /* half-open trial ticket; 0 = not a trial */
    int64_t priv_start_ns;  /* clock at acquire, when durations count */
    uint32_t priv_slot;
    uint32_t priv_flags;
} pf_permit_t;

/* An empty permit. */
#define PF_PERMIT_INIT {NULL, 0, 0, 0, 0, 0}

/* A breaker's configuration. Durations are seconds; INFINITY means never.
 * Fields are appended, never reordered. */
typedef struct pf_breaker_config {
    const char *name;              /* copied; not NULL or ""; "default" */
    /* Consecutive failures that open it (window CONSECUTIVE); 1 .. 2^24-1;
     * default 5. */
    unsigned failure_threshold;
    double recovery_timeout;       /* open this long before a trial; 60 */
    unsigned success_threshold;    /* trial successes that close it; >= 1;
                                      default 3 */
    unsigned half_open_max_calls;  /* trials in flight at once; 0 (default)
                                      = success_threshold */
    /* A trial whose result is not recorded within this long counts as a
     * failure (and frees its place); 0 (default) = recovery_timeout. */
    double max_wait_in_half_open;
    /* Each reopening from HALF_OPEN multiplies the open period by this, up
     * to max_recovery_timeout; closing returns it to recovery_timeout.
     * >= 1; default 1 (no growth). */
    double recovery_multiplier;
    double max_recovery_timeout;   /* default 600; a value below
                                      recovery_timeout counts as it */
    /* Compute state, events and metrics, but never reject a call: to watch
     * a new breaker before it enforces. Default false. */
    bool shadow;
    /* A call that takes longer (from acquire to record, on the breaker's
     * clock) counts as a failure, and pf_breaker_call returns PF_ETIMEDOUT
     * for it. The call is not interrupted. 0 = no timeout; default 30. */
    double timeout;
    /* Non-zero results that count as failures; any other non-zero result
     * is handed back unchanged and counts as neither failure nor success
     * (ignored). Copied; none listed and no is_failure = every non-zero
     * result is a failure. 0 must not be listed. */
    const int *expected_errors;
    size_t expected_errors_len;
    /* Also counts a result as a failure when it returns true (a result
     * counts when listed or accepted). NULL = not used. */
    pf_breaker_failure_fn is_failure;
    void *is_failure_arg;
    /* Run by pf_breaker_call instead of a rejected call (reason PF_EOPEN)
     * and after a counted failure (reason PF_ETIMEDOUT or the call's
     * result), with the call's arg; its result is the call's. NULL = none. */
    pf_fallback_fn fallback;
    pf_breaker_window_t window;    /* default PF_BREAKER_WINDOW_CONSECUTIVE */
    /* Calls (COUNT, at most 1000000) or seconds (TIME, at most 86400) in
     * the window; >= 1 in those modes; default 100. */
    unsigned window_size;
    /* Calls in the window before a rate can open it; >= 1 in window modes
     * (a COUNT window caps it at window_size); default 20. */
    unsigned minimum_calls;
    double failure_rate_threshold; /* percent, (0, 100]; default 50 */
    double slow_call_duration;     /* a call slower than this is slow; 60 */
    double slow_call_rate_threshold; /* percent, (0, 100]; default 100 */
    const pf_clock_t *clock;       /* NULL = system monotonic clock */
    /* Told of every state change; NULL = none. */
    pf_breaker_listener_fn listener;
    void *listener_arg;
    /* Each open period is lengthened by a random fraction of itself, up to
     * this (0 .. 1), so many breakers do not probe in step; never
     * shortened. Default 0. */
    double recovery_jitter;
    uint64_t jitter_seed;          /* 0 (default) = a random seed */
    /* Keep the state in a shared-memory segment that every process opening
     * the same name shares (shared.h, docs/shared.md): one process trips
     * the breaker, all reject. Not kept (used by _new only). NULL
     * (default) = in this process. A shared breaker counts consecutive
     * failures only (window CONSECUTIVE; another window is PF_EINVAL),
     * takes at most 1024 trials at once, and every process sharing it
     * must use the same clock (the system clock: times are stored in the
     * segment) and the same thresholds, periods and trial counts
     * (otherwise _new fails with PF_EEXIST). The state (the word, the open
     * period, trials, transitions) is shared; counts in metrics, events
     * and listeners are this process's. A trial held by a process that
     * dies is given back (not counted as a failure). _new also returns
     * PF_EFORMAT for a corrupt, truncated, foreign or newer segment file,
     * and PF_ESYSTEM for one owned by another user (errno EACCES) or when
     * the file cannot be made. A keyed group (breaker_group.h) refuses a
     * template with shared (PF_EINVAL). */
    const struct pf_shared_config *shared;
    /* Keep the state in step with other processes through a store outside
     * the process (sync.h; filled by pf_redis_breaker_new, redis.h):
     * every call still decides on the local state; the hook is told of
     * each change of state this process makes, and the store applies
     * other processes' changes with pf_breaker_sync_apply. Copied. NULL
     * (default) = none. With shared also set: PF_EINVAL; a keyed group
     * refuses a template with sync (PF_EINVAL). */
    const struct pf_sync *sync;
} pf_breaker_config_t;

/* A snapshot of a breaker, filled by pf_breaker_metrics. Counts are since
 * creation (pf_breaker_reset does not clear them); times are on the
 * breaker's clock, -1 = never. */
typedef struct pf_breaker_metrics {
    pf_breaker_state_t state;   /* as pf_breaker_state says */
    uint64_t calls;             /* successes + failures + ignored + rejected */
    uint64_t successes;
    uint64_t failures;          /* including timeouts and reclaimed trials */
    uint64_t ignored;           /* non-zero results that are not failures */
    uint64_t rejected;          /* refused with PF_EOPEN */
    uint64_t timeouts;          /* calls that took longer than timeout */
    double failure_rate;        /* percent of failures among counted calls:
                                   in the window (window modes) or since
                                   creation (CONSECUTIVE); 0 with none */
    double slow_call_rate;      /* percent of slow calls in the window;
                                   0 in CONSECUTIVE mode */
    int64_t last_failure_ns;
    int64_t last_transition_ns;
    uint64_t slow_calls;        /* slower than slow_call_duration (window
                                   modes only) */
    uint64_t shadow_rejected;   /* calls shadow mode let through that it
                                   would have rejected */
    uint64_t reclaimed;         /* trials never recorded in time, counted as
                                   failures */
    uint64_t transitions;       /* state changes */
    uint64_t times_opened;      /* changes to OPEN */
    unsigned consecutive_failures; /* CONSECUTIVE mode, while CLOSED */
    unsigned half_open_in_flight;  /* trial calls not yet recorded */
    unsigned half_open_successes;  /* trial successes toward closing */
    uint64_t window_calls;      /* calls in the window (window modes) */
    uint64_t window_failures;
    uint64_t window_slow_calls;
    int64_t recovery_timeout_ns; /* the open period now (grown, no jitter) */
    int64_t retry_at_ns;        /* OPEN: when trials may start; else -1 */
    int64_t now_ns;             /* the clock when the snapshot was taken */
    bool forced_open;           /* held open by pf_breaker_force_open */
    bool shadow;
    uint64_t events_dropped;    /* changes the listener was never told of
                                   (only when memory ran out) */
} pf_breaker_metrics_t;

/* ---- configuration and lifetime --------------------------------------- */

/* Fill cfg with the defaults listed above. Never fails; NULL is a no-op. */
PF_API void pf_breaker_config_init(pf_breaker_config_t *cfg);

/* Create a breaker, CLOSED. Returns 0 and stores it in *out, or PF_EINVAL
 * for a NULL pointer or a bad field (a zero threshold, a NaN or negative
 * duration, a rate threshold outside (0, 100], window_size or
 * minimum_calls 0 in a window mode, recovery_multiplier < 1, jitter
 * outside [0, 1], an unknown window, expected_errors NULL with a length or
 * listing 0), or PF_ENOMEM / PF_ESYSTEM; on error nothing is created and
 * *out is untouched. cfg is not kept (name and expected_errors are
 * copied); its clock must outlive the breaker. Thread-safe. */
PF_API int pf_breaker_new(const pf_breaker_config_t *cfg, pf_breaker_t **out);

/* Destroy b; NULL is a no-op. No other call on b may be running or
 * follow, and it must not be called from b's own listener; permits still
 * out become invalid. */
PF_API void pf_breaker_free(pf_breaker_t *b);

/* ---- the permit face -------------------------------------------------- */

/* Ask to make one call. Returns 0 and fills *permit: make the call, then
 * give its result to pf_breaker_record. Returns PF_EOPEN when the breaker
 * rejects the call (OPEN, or HALF_OPEN with half_open_max_calls trials in
 * flight), leaving *permit empty; PF_EINVAL for a NULL argument. In shadow
 * mode it never returns PF_EOPEN. Takes no lock while CLOSED or while OPEN
 * before recovery_timeout. Never blocks. Thread-safe. */
PF_API int pf_breaker_acquire(pf_breaker_t *b, pf_permit_t *permit);

/* Give back a permit with the call's result (0 = success; non-zero is a
 * failure or ignored, see expected_errors and is_failure). A call that
 * took longer than timeout is a failure whatever its result. The permit
 * is left empty. An empty, already recorded, foreign or NULL permit does
 * nothing. May call is_failure and the listener (no lock held). Never
 * blocks. Thread-safe. */
PF_API void pf_breaker_record(pf_breaker_t *b, pf_permit_t *permit,
                              int result);

/* The same, returning how the result was counted: PF_BREAKER_OUTCOME_NONE
 * when the permit was empty, already recorded or foreign; a trial that was
 * reclaimed before its result came is reported TIMEOUT (it was counted as
 * a failure then). */
PF_API pf_breaker_outcome_t pf_breaker_record_outcome(pf_breaker_t *b,
                                                      pf_permit_t *permit,
                                                      int result);

/* Give back a permit whose call was never made (the caller gave up before
 * starting it): nothing is counted, and a trial's place is freed. The
 * permit is left empty; an empty, recorded or foreign permit does
 * nothing. Never blocks. Thread-safe. */
PF_API void pf_breaker_release(pf_breaker_t *b, pf_permit_t *permit);

/* True when permit holds one of the breaker's half-open trial places. */
PF_API bool pf_permit_is_trial(const pf_permit_t *permit);

/* ---- the blocking face ------------------------------------------------ */

/* Run fn(arg) under the breaker. Returns fn's result when it succeeds (0)
 * or fails in a way that is ignored. When the breaker rejects the call,
 * returns PF_EOPEN without calling fn; when fn took longer than timeout,
 * PF_ETIMEDOUT; when fn's result counts as a failure, that result. In
 * those three cases, if the config has a fallback, returns
 * fallback(arg, reason) instead, reason being PF_EOPEN, PF_ETIMEDOUT or
 * the result. PF_EINVAL when b or fn is NULL (fn is not called). Calls fn
 * and the fallback on the calling thread with no lock held. Thread-safe. */
PF_API int pf_breaker_call(pf_breaker_t *b, pf_call_fn fn, void *arg);

/* ---- control and introspection ---------------------------------------- */

/* The state now: HALF_OPEN as soon as recovery_timeout has passed, even
 * before a call makes the change (the listener hears of it then, or at
 * pf_breaker_tick). CLOSED for NULL. Takes no lock. Never blocks.
 * Thread-safe. */
PF_API pf_breaker_state_t pf_breaker_state(pf_breaker_t *b);

/* "closed", "open" or "half_open"; "unknown" for any other value. */
PF_API const char *pf_breaker_state_name(pf_breaker_state_t s);

/* The breaker's name (a copy owned by b, valid until pf_breaker_free).
 * Never NULL for a valid b; NULL for NULL. Thread-safe. */
PF_API const char *pf_breaker_name(const pf_breaker_t *b);

/* The fallback from b's config (the one pf_breaker_call runs), or NULL
 * when it has none or b is NULL. For code that drives the permit face and
 * wants to run the same fallback pf_breaker_call would: after a rejection
 * (reason PF_EOPEN), and after pf_breaker_record_outcome reported FAILURE
 * (reason: the result) or TIMEOUT (reason PF_ETIMEDOUT), never for SUCCESS,
 * IGNORED or NONE; the agent runtime does so for a state's breaker. Fixed
 * at creation. Never blocks. Thread-safe. */
PF_API pf_fallback_fn pf_breaker_fallback(const pf_breaker_t *b);

/* Open the breaker and hold it open: it rejects every call (except in
 * shadow mode) until pf_breaker_force_close or pf_breaker_reset. Permits
 * out at the time no longer count toward its state. NULL is a no-op.
 * Thread-safe. */
PF_API void pf_breaker_force_open(pf_breaker_t *b);

/* Close the breaker (releasing a force_open) with its failure counts
 * cleared and its open period back to recovery_timeout; it then counts
 * failures as usual. A closed breaker stays as it is. NULL is a no-op.
 * Thread-safe. */
PF_API void pf_breaker_force_close(pf_breaker_t *b);

/* Back to the state of a new breaker: CLOSED, failure counts and window
 * cleared, open period back to recovery_timeout, force_open released.
 * Permits out no longer count toward its state. The metrics' counts since
 * creation are kept. NULL is a no-op. Thread-safe. */
PF_API void pf_breaker_reset(pf_breaker_t *b);

/* Make the changes that time alone causes now, instead of at the next
 * call: OPEN -> HALF_OPEN once recovery_timeout has passed, and reclaiming
 * trials not recorded within max_wait_in_half_open. For a timer that wants
 * listeners told promptly. NULL is a no-op. Never blocks. Thread-safe. */
PF_API void pf_breaker_tick(pf_breaker_t *b);

/* Put b in state `to` because another process did (for a sync store,
 * sync.h): OPEN for open_ns nanoseconds from now (INT64_MAX = held open,
 * as pf_breaker_force_open), HALF_OPEN, or CLOSED (failure counts
 * cleared). The sync hook is not told (the change came from the store);
 * the listener is, as for any change. Already OPEN: only the end of the
 * open period moves. Permits out no longer count toward its state.
 * Returns 0, or PF_EINVAL for a NULL b, an unknown state or a negative
 * open_ns. Thread-safe. */
PF_API int pf_breaker_sync_apply(pf_breaker_t *b, pf_breaker_state_t to,
                                 int64_t open_ns);

/* Fill *out with a snapshot of b. Counts are read without stopping
 * callers, so a snapshot taken while calls run may be a few calls apart
 * between fields. Nothing happens when b or out is NULL. Thread-safe. */
PF_API void pf_breaker_metrics(pf_breaker_t *b, pf_breaker_metrics_t *out);

/* ---- keyed groups ----------------------------------------------------- */

typedef struct pf_breaker_group pf_breaker_group_t; /* opaque */

typedef struct pf_breaker_group_config {
    const char *name;            /* copied; not NULL or ""; "default". Each
                                    breaker is named "<name>/<key>". */
    const pf_breaker_config_t *breaker; /* every breaker's config, copied
                                           by _new (name ignored); NULL =
                                           pf_breaker_config_init's */
    size_t max_breakers;         /* >= 1; default 1024 */
} pf_breaker_group_config_t;

/* A snapshot of a group. */
typedef struct pf_breaker_group_metrics {
    size_t size;                 /* breakers now */
    size_t max_breakers;
    uint64_t created;
    uint64_t evicted;            /* closed, unused breakers dropped for room */
    uint64_t rejected_full;      /* new keys refused: full of breakers that
                                    are open, half-open or in use */
} pf_breaker_group_metrics_t;

/* Visited by pf_breaker_group_foreach with each key and its breaker;
 * return non-zero to stop. */
typedef int (*pf_breaker_group_fn)(const char *key, pf_breaker_t *b,
                                   void *arg);

/* Fill cfg with the defaults (breaker as pf_breaker_config_init). Never
 * fails; NULL is a no-op. */
PF_API void pf_breaker_group_config_init(pf_breaker_group_config_t *cfg);

/* Create an empty group. Returns 0 and stores it in *out, or PF_EINVAL for
 * a NULL pointer or a bad field (the breaker config is checked as
 * pf_breaker_new does), or PF_ENOMEM / PF_ESYSTEM; on error nothing is
 * created. cfg is not kept. Thread-safe. */
PF_API int pf_breaker_group_new(const pf_breaker_group_config_t *cfg,
                                pf_breaker_group_t **out);

/* Destroy g and all its breakers; NULL is a no-op. No other call on g or
 * its breakers may be running or follow. */
PF_API void pf_breaker_group_free(pf_breaker_group_t *g);

/* The breaker for key, created on first use. When the group is full, the
 * least recently used breaker that is CLOSED and not in use is dropped to
 * make room. Returns 0 and stores the breaker in *out, which stays valid
 * until pf_breaker_group_put(g, *out); PF_EFULL when the group is full
 * and no breaker can be dropped; PF_EINVAL for a NULL argument;
 * PF_ENOMEM. key is copied. Never blocks beyond the group's lock.
 * Thread-safe. */
PF_API int pf_breaker_group_get(pf_breaker_group_t *g, const char *key,
                                pf_breaker_t **out);

/* The same for a key already present: PF_ENOTFOUND otherwise (nothing is
 * created). Thread-safe. */
PF_API int pf_breaker_group_find(pf_breaker_group_t *g, const char *key,
                                 pf_breaker_t **out);

/* Give back a breaker from pf_breaker_group_get or _find. Thread-safe. */
PF_API void pf_breaker_group_put(pf_breaker_group_t *g, pf_breaker_t *b);

/* pf_breaker_acquire on key's breaker (created on first use). On 0 the
 * breaker stays valid until the permit is recorded or released with
 * pf_breaker_record / pf_breaker_release (or pf_breaker_group_record).
 * Returns 0, PF_EOPEN, PF_EFULL, PF_EINVAL or PF_ENOMEM; the permit is
 * empty unless 0. Thread-safe. */
PF_API int pf_breaker_group_acquire(pf_breaker_group_t *g, const char *key,
                                    pf_permit_t *permit);

/* pf_breaker_record for a permit from pf_breaker_group_acquire. */
PF_API void pf_breaker_group_record(pf_breaker_group_t *g,
                                    pf_permit_t *permit, int result);

/* pf_breaker_call on key's breaker. Returns what pf_breaker_call returns,
 * or PF_EFULL / PF_EINVAL / PF_ENOMEM before calling anything (the
 * fallback does not run for those). Thread-safe. */
PF_API int pf_breaker_group_call(pf_breaker_group_t *g, const char *key,
                                 pf_call_fn fn, void *arg);

/* Drop key's breaker from the group; it is freed once no one uses it.
 * Returns 0, PF_ENOTFOUND or PF_EINVAL. Thread-safe. */
PF_API int pf_breaker_group_remove(pf_breaker_group_t *g, const char *key);

/* Breakers in the group now. Thread-safe. */
PF_API size_t pf_breaker_group_size(pf_breaker_group_t *g);

/* The group's name (owned by g). NULL for NULL. */
PF_API const char *pf_breaker_group_name(const pf_breaker_group_t *g);

/* Call fn(key, breaker, arg) for each breaker in the group, in least- to
 * most-recently-used order as of the call, with no lock held (each breaker
 * stays valid during its visit; fn may use the group). Stops when fn
 * returns non-zero and returns that value; 0 after a full visit;
 * PF_EINVAL or PF_ENOMEM (fn not called). Thread-safe. */
PF_API int pf_breaker_group_foreach(pf_breaker_group_t *g,
                                    pf_breaker_group_fn fn, void *arg);

/* Fill *out with a snapshot of g. Nothing happens for NULL. Thread-safe. */
PF_API void pf_breaker_group_metrics(pf_breaker_group_t *g,
                                     pf_breaker_group_metrics_t *out);

#ifdef __cplusplus
}
#endif

#endif /* PUFFINFLOW_BREAKER_H */
