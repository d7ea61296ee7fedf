/* puffinflow — bulkhead: concurrency isolation with a bounded, fair queue.
 *
 * A bulkhead lets at most max_concurrent_calls callers inside at once (the
 * reference's Bulkhead / BulkheadConfig; PF_EFULL is its BulkheadFullError).
 * A caller that finds no free slot may wait in a queue of at most
 * max_queue_size entries for up to max_wait_duration. The queue is fair:
 * a slot freed while anyone waits is handed straight to the oldest waiter
 * of the highest priority, never to a newcomer (no barging), so nobody
 * starves within a priority.
 *
 * Three faces share that one queue and its order:
 *   - pf_bulkhead_try_enter + pf_bulkhead_leave: never blocks (the permit
 *     face; lock-free while nobody waits);
 *   - pf_bulkhead_enter / pf_bulkhead_enter_until / pf_bulkhead_call: block
 *     the calling thread up to the wait limit;
 *   - pf_bulkhead_enqueue + pf_bulkhead_cancel: a caller-owned ticket that
 *     waits without a thread (for event loops and the agent runtime): a
 *     callback runs when a slot is handed to it.
 *
 * The limit can change live (pf_bulkhead_set_max_concurrent), or adapt
 * itself between a floor and a ceiling from the latency and errors of calls
 * (config field adaptive: additive increase, multiplicative decrease). */
#ifndef PUFFINFLOW_BULKHEAD_H
#define PUFFINFLOW_BULKHEAD_H

#include <stdbool.h>
#include <stdint.h>

#include "puffinflow/clock.h"
#include "puffinflow/deadline.h"
#include "puffinflow/export.h"
#include "puffinflow/types.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pf_bulkhead pf_bulkhead_t; /* opaque */

/* The largest max_concurrent_calls (and adaptive ceiling) accepted. */
#define PF_BULKHEAD_MAX_LIMIT 1073741824u

/* ---- events ----------------------------------------------------------- */

typedef enum pf_bulkhead_event_kind {
    /* No free slot and no room to wait (queue full, max_queue_size 0 or
     * max_wait_duration 0): the caller got PF_EFULL at once. */
    PF_BULKHEAD_REJECTED_FULL = 0,
    /* A waiter's max_wait_duration ran out: it got PF_EFULL. */
    PF_BULKHEAD_REJECTED_TIMEOUT = 1,
    /* The limit changed (pf_bulkhead_set_max_concurrent or the adaptive
     * controller); old_max_concurrent holds the previous one. */
    PF_BULKHEAD_LIMIT_CHANGED = 2,
    /* pf_bulkhead_leave was called while nobody was inside: ignored. */
    PF_BULKHEAD_LEAVE_WITHOUT_ENTER = 3,
    /* No free slot: a blocking caller or a ticket joined the queue. Only
     * the waiting path reports it; a caller let in at once reports
     * nothing. waiting counts the new waiter. */
    PF_BULKHEAD_QUEUED = 4,
    /* A queued caller or ticket was handed a slot after waiting; wait_ns
     * holds how long it waited on the bulkhead's clock. Reported on the
     * waiting thread once it wakes (blocking callers), or on the thread
     * that handed the slot over just before the grant callback (tickets):
     * a ticket's GRANTED may then reach the listener before its QUEUED,
     * which is delivered on the enqueuing thread. */
    PF_BULKHEAD_GRANTED = 5
} pf_bulkhead_event_kind_t;

/* What the listener is told. A snapshot taken when the event happened;
 * valid only during the callback. */
typedef struct pf_bulkhead_event {
    pf_bulkhead_event_kind_t kind;
    const char *name;            /* the bulkhead's name */
    unsigned max_concurrent;     /* the limit, after a change */
    unsigned old_max_concurrent; /* LIMIT_CHANGED: the limit before */
    unsigned in_use;
    unsigned waiting;
    int64_t wait_ns; /* GRANTED: ns spent in the queue; 0 otherwise */
} pf_bulkhead_event_t;

/* Called for every event, on the thread that caused it, with no lock held:
 * it may call any function of the bulkhead except pf_bulkhead_free. Keep it
 * short; it delays the caller it runs on. */
typedef void (*pf_bulkhead_listener_fn)(const pf_bulkhead_event_t *ev,
                                        void *arg);

/* ---- config ----------------------------------------------------------- */

typedef struct pf_bulkhead_config {
    const char *name;                 /* copied by _new; default "default" */
    unsigned max_concurrent_calls;    /* 1..PF_BULKHEAD_MAX_LIMIT; default 10 */
    double max_wait_duration;         /* seconds a caller may wait for a slot;
                                         0 or INFINITY = no limit (to never
                                         wait, set max_queue_size 0);
                                         default 30 */
    unsigned max_queue_size;          /* callers allowed to wait at once;
                                         0 = nobody waits; default 100 */
    const pf_clock_t *clock;          /* NULL = system monotonic clock */
    pf_bulkhead_listener_fn listener; /* NULL = none; default NULL */
    void *listener_arg;

    /* Adaptive limit (AIMD). When on, max_concurrent_calls is the starting
     * limit and the limit then moves by itself between adaptive_floor and
     * adaptive_ceiling: every call recorded as failed (non-zero result) or
     * slower than adaptive_latency multiplies it by adaptive_backoff
     * (rounding down, at least one step, at most once per round of calls:
     * calls that started before the last decrease do not decrease it
     * again); every limit's worth of good calls made while at least half
     * the limit was in use adds one. Results come from pf_bulkhead_call or
     * pf_bulkhead_record. */
    bool adaptive;             /* default false */
    unsigned adaptive_floor;   /* >= 1; default 1 */
    unsigned adaptive_ceiling; /* >= floor; 0 = max_concurrent_calls;
                                  default 0 */
    double adaptive_latency;   /* seconds; a call slower than this counts as
                                  overload; 0 = latency ignored; default 0 */
    double adaptive_backoff;   /* factor in (0, 1); default 0.9 */
    /* Share the limit with every process that opens the same name
     * (shared.h, docs/shared.md): max_concurrent_calls then holds across
     * all of them, each slot a lease on its process, given back when the
     * process dies. Not kept (used by _new only). NULL (default) = this
     * process only. A shared bulkhead never queues: when every slot of
     * the host is taken, enter, enter_until, call and enqueue refuse at
     * once with PF_EFULL (max_wait_duration and max_queue_size are not
     * used). max_concurrent_calls is at most 4096 and every process must
     * use the same (otherwise _new fails with PF_EEXIST);
     * pf_bulkhead_set_max_concurrent and adaptive change only this
     * process's own cap below it. Metrics and events are this process's.
     * _new also returns PF_EFORMAT for a corrupt, truncated, foreign or
     * newer segment file, and PF_ESYSTEM for one owned by another user
     * (errno EACCES), when the file cannot be made or /proc cannot be
     * read. */
    const struct pf_shared_config *shared;
    /* Share the limit through a store outside the process (sync.h; filled
     * by pf_redis_bulkhead_new, redis.h): each admission asks the hook
     * (no network: the store holds a lease on some of the limit for this
     * process ahead of time) after taking a local slot, and each leave
     * tells it. Such a bulkhead never queues, as a shared one: enter,
     * enter_until, call and enqueue refuse at once with PF_EFULL. Copied.
     * NULL (default) = none. With shared also set: PF_EINVAL. */
    const struct pf_sync *sync;
} pf_bulkhead_config_t;

/* Fill cfg with the defaults listed above. Never fails; NULL is a no-op. */
PF_API void pf_bulkhead_config_init(pf_bulkhead_config_t *cfg);

/* Create a bulkhead. Returns 0 and stores it in *out; PF_EINVAL for a NULL
 * argument or a bad field (NULL name, max_concurrent_calls 0 or above
 * PF_BULKHEAD_MAX_LIMIT, a negative or NaN duration, adaptive bounds that
 * do not hold max_concurrent_calls, a backoff outside (0, 1)); PF_ENOMEM or
 * PF_ESYSTEM. On error nothing is created and *out is untouched. cfg is not
 * kept (the name is copied); the clock must outlive the bulkhead.
 * Thread-safe. */
PF_API int pf_bulkhead_new(const pf_bulkhead_config_t *cfg,
                           pf_bulkhead_t **out);

/* Destroy bh; NULL is a no-op. Nobody may be inside, waiting or queued
 * (cancel tickets first), no other call on bh may be running or follow,
 * and it must not be called from bh's listener or a grant callback. */
PF_API void pf_bulkhead_free(pf_bulkhead_t *bh);

/* ---- the permit face: never blocks ------------------------------------- */

/* Take a slot if one is free and nobody is waiting for one. Returns 0 (the
 * caller is inside and must call pf_bulkhead_leave once), PF_EFULL
 * (counted in rejected_full; the listener hears REJECTED_FULL), or
 * PF_EINVAL for NULL. A free slot is never taken while others wait: it is
 * theirs. Never blocks; lock-free while nobody waits. Thread-safe. */
PF_API int pf_bulkhead_try_enter(pf_bulkhead_t *bh);

/* Give back a slot taken by any successful enter (try_enter, enter,
 * enter_until, an enqueue that entered or was granted). If anyone waits,
 * the slot goes straight to the first of them (a ticket's grant callback
 * then runs on this thread, after the bulkhead's lock is released).
 *
 * Leaving without having entered is a caller's bug that the bulkhead can
 * only partly see: if nobody is inside it is detected and ignored (no
 * counter goes below zero; counted in leave_without_enter and reported as
 * LEAVE_WITHOUT_ENTER), but while others are inside it frees one of their
 * slots, which lets one extra caller in. NULL is a no-op. Never blocks
 * (apart from the bulkhead's own short lock while others wait).
 * Thread-safe. */
PF_API void pf_bulkhead_leave(pf_bulkhead_t *bh);

/* ---- the blocking face ------------------------------------------------ */

/* Take a slot, waiting in the queue (priority normal) for up to
 * max_wait_duration when none is free. Returns 0 (inside: call
 * pf_bulkhead_leave once), PF_EFULL when the queue is full or waiting is
 * off (rejected_full) or when the wait ran out (rejected_timeout), or
 * PF_EINVAL for NULL. Blocks up to max_wait_duration on the bulkhead's
 * clock. Thread-safe. */
PF_API int pf_bulkhead_enter(pf_bulkhead_t *bh);

/* pf_bulkhead_enter with a priority and the caller's own limits: deadline
 * (NULL = none; on any clock) and tok (NULL = none). Waiters of a higher
 * priority are served first, first come first served within a priority.
 * Returns 0, PF_EFULL (as pf_bulkhead_enter: the bulkhead's own wait limit
 * ran out first, or no room to wait), PF_ETIMEDOUT (the caller's deadline,
 * or the token's, came first; also at once when it had already passed and
 * no slot was free), PF_ECANCELED (tok was cancelled, also before the
 * call, when no slot was free), or PF_EINVAL (NULL bh, a priority outside
 * pf_priority_t). A wait ended by the deadline or token is counted in
 * cancelled. A slot that is free is taken even when the deadline has
 * passed. Blocks up to the earliest of max_wait_duration and the caller's
 * limits. Thread-safe. */
PF_API int pf_bulkhead_enter_until(pf_bulkhead_t *bh, pf_priority_t prio,
                                   const pf_deadline_t *deadline,
                                   pf_token_t *tok);

/* Enter (pf_bulkhead_enter), call fn(arg), leave. Returns fn's result
 * unchanged (0 or the user's own non-zero code), or the enter's PF_EFULL /
 * PF_EINVAL without calling fn. On an adaptive bulkhead the call's latency
 * and result are recorded. Calls fn on the calling thread with no lock
 * held. Blocks up to max_wait_duration plus the time fn takes.
 * Thread-safe. */
PF_API int pf_bulkhead_call(pf_bulkhead_t *bh, pf_call_fn fn, void *arg);

/* ---- the queued face: a ticket waits instead of a thread --------------- */

typedef struct pf_bulkhead_ticket pf_bulkhead_ticket_t;

/* Runs exactly once when a slot is handed to a queued ticket: on the thread
 * that freed the slot (a leave, a growing limit), with no lock held. The
 * slot then belongs to the ticket's owner, who must pf_bulkhead_leave it
 * (from the callback or later). From the moment it is called the ticket
 * memory is the owner's again. It should be short and must not block: it
 * typically schedules the work. A pf_bulkhead_leave made inside it hands
 * the slot on after it returns (grants on one thread never nest). */
typedef void (*pf_bulkhead_grant_fn)(pf_bulkhead_ticket_t *t, void *arg);

/* A place in the queue, in caller memory (on the stack or inside the
 * caller's own task struct). Fields are private. */
struct pf_bulkhead_ticket {
    struct pf_bulkhead_ticket *priv_next;
    struct pf_bulkhead_ticket *priv_prev;
    pf_bulkhead_grant_fn priv_fn;
    void *priv_arg;
    void *priv_owner; /* the bulkhead it is queued on */
    void *priv_cv;    /* a blocked thread's condition, or NULL */
    const pf_clock_t *priv_clock;
    int64_t priv_expires_ns;
    int priv_state;
    int priv_prio;
    int64_t priv_queued_ns; /* when it joined the queue (GRANTED's wait) */
};

/* Ask for a slot without blocking. If one is free (and nobody waits) it is
 * taken at once: returns 0 with *entered = true, and fn is never called.
 * Otherwise the ticket joins the queue (after everyone of its priority or
 * higher): returns 0 with *entered = false, and fn(t, arg) will run exactly
 * once when a slot is handed to it, unless pf_bulkhead_cancel removes it
 * first. The wait limit is the caller's to enforce: set a timer for
 * pf_bulkhead_ticket_deadline(t) and cancel with PF_EFULL when it fires.
 * Returns PF_EFULL when no slot is free and there is no room to wait
 * (queue full, max_queue_size 0 or max_wait_duration 0; counted in
 * rejected_full), PF_EINVAL for a NULL argument, a bad priority or a
 * ticket already queued. The ticket must stay valid and untouched until fn
 * is called or pf_bulkhead_cancel returns true. Never blocks (apart from
 * the bulkhead's own short lock). Thread-safe. */
PF_API int pf_bulkhead_enqueue(pf_bulkhead_t *bh, pf_bulkhead_ticket_t *t,
                               pf_priority_t prio, pf_bulkhead_grant_fn fn,
                               void *arg, bool *entered);

/* Take a queued ticket out of the queue. Returns true when it was still
 * waiting: it is removed and its callback will never run. reason says why,
 * for the metrics: PF_EFULL = the bulkhead's wait limit ran out (counted in
 * rejected_timeout, reported as REJECTED_TIMEOUT); anything else (the
 * caller's deadline, a cancellation) is counted in cancelled. Returns false
 * when the ticket is not waiting on bh: a slot was already handed to it
 * (its callback has run, or is about to run on another thread, and the slot
 * is the owner's to leave), or it was never queued, or NULL. Never blocks
 * (apart from the bulkhead's own short lock). Thread-safe. */
PF_API bool pf_bulkhead_cancel(pf_bulkhead_t *bh, pf_bulkhead_ticket_t *t,
                               int reason);

/* When a queued ticket's wait limit (max_wait_duration after it was
 * queued) runs out, on the bulkhead's clock; pf_deadline_none() for no
 * limit. Meaningful while t is queued. Never blocks. */
PF_API pf_deadline_t pf_bulkhead_ticket_deadline(const pf_bulkhead_ticket_t *t);

/* ---- limits ----------------------------------------------------------- */

/* Change the limit while calls are in flight. Growing hands the new slots
 * to waiters at once (their grant callbacks run on this thread). Shrinking
 * cancels nothing: callers inside stay, and nobody is admitted until
 * in_use falls below the new limit. On an adaptive bulkhead it sets the
 * current limit, which must lie between the floor and the ceiling.
 * Returns 0, or PF_EINVAL (NULL, 0, above PF_BULKHEAD_MAX_LIMIT, outside
 * the adaptive bounds). Never blocks (apart from the bulkhead's own short
 * lock). Thread-safe. */
PF_API int pf_bulkhead_set_max_concurrent(pf_bulkhead_t *bh, unsigned n);

/* Tell the adaptive controller how a call made inside the bulkhead went:
 * result 0 = success, anything else = failure; latency_ns = how long it
 * took. Call it before pf_bulkhead_leave (pf_bulkhead_call does it
 * itself). A no-op on a bulkhead that is not adaptive, and for NULL.
 * Never blocks (apart from the bulkhead's own short lock). Thread-safe. */
PF_API void pf_bulkhead_record(pf_bulkhead_t *bh, int result,
                               int64_t latency_ns);

/* ---- introspection ---------------------------------------------------- */

/* The bulkhead's name (its own copy, valid until pf_bulkhead_free). */
PF_API const char *pf_bulkhead_name(const pf_bulkhead_t *bh);

typedef struct pf_bulkhead_metrics {
    unsigned max_concurrent; /* the limit now (adaptive: its current one) */
    unsigned in_use;         /* callers inside */
    unsigned available;      /* free slots: max_concurrent - in_use, or 0
                                while in_use is above a shrunk limit */
    unsigned waiting;        /* threads and tickets in the queue */
    unsigned max_queue_size;
    uint64_t accepted;            /* entries granted, by every face */
    uint64_t rejected_full;       /* PF_EFULL with no room to wait */
    uint64_t rejected_timeout;    /* PF_EFULL after max_wait_duration */
    unsigned peak_in_use;         /* the most callers inside at once */
    uint64_t cancelled;           /* waits ended by the caller's deadline or
                                     token, or tickets cancelled by it */
    uint64_t leave_without_enter; /* leaves ignored: nobody was inside */
    bool adaptive;
    unsigned adaptive_floor; /* the adaptive bounds (0 when not adaptive) */
    unsigned adaptive_ceiling;
} pf_bulkhead_metrics_t;

/* Fill *out with a snapshot. Each field is read atomically, but they are
 * not all read at one instant while callers come and go. NULL arguments
 * are a no-op. Never blocks. Thread-safe. */
PF_API void pf_bulkhead_metrics(pf_bulkhead_t *bh, pf_bulkhead_metrics_t *out);

/* A shared bulkhead (config field shared): store in *out how many of its
 * slots are held now by every process of the host together, counting only
 * processes that are alive (a slot a dead process left behind is not
 * counted; the next admission that finds no free slot frees it).
 * pf_bulkhead_metrics' in_use counts this process's callers only. Reads
 * /proc for each slot held by another process; a snapshot while callers
 * come and go. Returns 0; PF_EINVAL for a NULL argument or a bulkhead
 * that is not shared (*out untouched). Never blocks. Thread-safe. */
PF_API int pf_bulkhead_shared_in_use(pf_bulkhead_t *bh, unsigned *out);

#ifdef __cplusplus
}
#endif

#endif /* PUFFINFLOW_BULKHEAD_H */
