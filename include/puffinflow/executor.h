/* puffinflow — the executor: worker threads and a reactor.
 *
 * The runtime (agent.h) runs the states of agents on an executor. It has a
 * fixed set of worker threads (by default one per online core) taking
 * ready work from priority-ordered queues, and one reactor thread running
 * an epoll loop with the timer heap on it: retry backoff, rate-limit
 * delays, bulkhead wait limits, state timeouts and run deadlines are
 * timers, and waiting for an fd is a registration in the epoll set, never
 * a sleeping worker. Many runs, of many agents, share one executor.
 *
 * A thread blocked in pf_agent_run, or in pf_run_wait with no deadline,
 * is not idle: it runs its own run's ready states itself, so a sequential
 * chain never changes thread, and workers are woken only for parallel
 * work. A pf_run_wait with a deadline never runs a state (it must return
 * by its deadline, and a state may take any time): it only waits.
 *
 * Waits (pf_executor_wait_fd, _timer, _until) are one-shot operations in
 * the style of nng's aio: each completes exactly once, by calling its
 * callback on a worker with 0 (ready), PF_ETIMEDOUT (its deadline passed)
 * or PF_ECANCELED (pf_wait_abort, or the executor was freed), and holds no
 * thread while pending.
 *
 * An embedded executor (config field `embedded`) has no threads at all: a
 * program with its own event loop watches one fd (pf_executor_fd) and
 * calls pf_executor_drive when it is readable or when
 * pf_executor_timeout_ms has passed, the way c-ares and libcurl's multi
 * interface are embedded.
 *
 * Timers run on the executor's clock. With a manual clock (tests), a timer
 * fires when the clock is advanced past it, and pf_clock_manual_waiters
 * counts the reactor while it waits for a timer (for an embedded executor:
 * while a timer is armed after a drive); it is not counted while no timer
 * is armed. fd readiness comes from epoll whatever the clock. */
#ifndef PUFFINFLOW_EXECUTOR_H
#define PUFFINFLOW_EXECUTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "puffinflow/clock.h"
#include "puffinflow/deadline.h"
#include "puffinflow/export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pf_executor pf_executor_t; /* opaque */

typedef struct pf_executor_config {
    const char *name;        /* copied by _new; default "executor" */
    unsigned workers;        /* worker threads, 0..1024; 0 = one per online
                                core (default) */
    const pf_clock_t *clock; /* timers run on it; NULL = system monotonic
                                clock (default) */
    bool embedded;           /* true: no threads of its own; the caller's
                                event loop drives it (pf_executor_fd,
                                pf_executor_drive); workers must then be
                                0. Default false */
} pf_executor_config_t;

/* Fill cfg with the defaults above. Never fails. */
PF_API void pf_executor_config_init(pf_executor_config_t *cfg);

/* Create an executor and start its threads (none when embedded). Returns
 * 0 and stores it in *out, PF_EINVAL for a NULL argument or a bad field,
 * PF_ENOMEM, or PF_ESYSTEM when a thread, the epoll set or its eventfd
 * cannot be made; on error nothing is created and *out is untouched. cfg
 * is not kept; the clock must outlive the executor. Thread-safe. */
PF_API int pf_executor_new(const pf_executor_config_t *cfg,
                           pf_executor_t **out);

/* Stop and destroy ex: every pending wait ends with PF_ECANCELED, work
 * already queued (those completions included) is run first, then the
 * threads are joined; other armed timers are dropped. An embedded
 * executor runs that work on the calling thread. NULL and the default
 * executor are no-ops. No run may be in progress on ex, no agent using ex
 * may start one, no wait may be started on it (one started from a
 * completion that this runs fails with PF_ESTATE), and it must not be
 * called from one of ex's own threads or from inside pf_executor_drive.
 * Wait handles stay valid after it: pf_wait_abort on them is a no-op,
 * pf_wait_free still frees them. Blocks until the queued work is done.
 * In a fork() child, an executor made before the fork is not the child's:
 * its threads are not there, and free is the one call allowed on it (it
 * releases the child's copy at once, joining nothing; its queued work and
 * waits are dropped). See docs/shared.md, "fork()". */
PF_API void pf_executor_free(pf_executor_t *ex);

/* The default executor (system clock, one worker per core), created on
 * first use and kept until the process exits. Returns 0 and stores it in
 * *out, PF_EINVAL if out is NULL, or PF_ENOMEM / PF_ESYSTEM when it cannot
 * be created (a later call tries again). Thread-safe: concurrent first
 * calls get the same executor. A fork() child forgets its parent's default
 * executor: its first call makes one of its own. */
PF_API int pf_executor_default(pf_executor_t **out);

/* The executor's name, owned by ex. Thread-safe. */
PF_API const char *pf_executor_name(const pf_executor_t *ex);

/* Number of worker threads (0 when embedded). Thread-safe. */
PF_API unsigned pf_executor_workers(const pf_executor_t *ex);

/* The clock timers run on (never NULL: the system clock when the config
 * gave none). Thread-safe. */
PF_API const pf_clock_t *pf_executor_clock(const pf_executor_t *ex);

/* The due time, on the executor's clock (pf_executor_clock), of the
 * earliest timer armed on ex now, or PF_DEADLINE_NEVER_NS when none is
 * armed or ex is NULL. A timer that is due but whose callback has not
 * started yet still counts; one whose callback is running does not. The
 * answer is a snapshot: other threads may arm or cancel timers right
 * after. Never blocks beyond the executor's short timer lock.
 * Thread-safe. */
PF_API int64_t pf_executor_next_timer_ns(pf_executor_t *ex);

typedef struct pf_executor_metrics {
    unsigned workers;      /* worker threads */
    unsigned idle_workers; /* workers asleep waiting for work */
    uint64_t tasks_run;    /* work items taken from the queues, by
                              workers or by waiting callers */
    uint64_t tasks_helped; /* ... of which by waiting callers */
    uint64_t queued;       /* work items waiting now */
    uint64_t peak_queued;  /* most ever waiting at once */
    uint64_t timers_armed; /* timers waiting now */
    uint64_t timers_fired; /* timers that came due since creation */
    uint64_t waits_pending; /* pf_wait_t waits not yet ended */
} pf_executor_metrics_t;

/* Fill *out with a snapshot. NULL ex or out: no-op. Thread-safe. */
PF_API void pf_executor_metrics(pf_executor_t *ex, pf_executor_metrics_t *out);

/* ---- plain tasks -------------------------------------------------------- */

/* A piece of work for pf_executor_submit. */
typedef void (*pf_task_fn)(void *arg);

/* Run fn(arg) once on one of ex's workers (on an embedded executor: in a
 * later pf_executor_drive), at normal priority, after the work queued
 * before it of the same or higher priority. Returns 0, PF_EINVAL for a
 * NULL ex or fn, PF_ENOMEM, or PF_ESTATE while ex is being freed. A
 * failed call never runs fn. Thread-safe; never blocks beyond the
 * executor's queue lock; may be called from fn itself. */
PF_API int pf_executor_submit(pf_executor_t *ex, pf_task_fn fn, void *arg);

/* ---- waits: timers and fds that hold no thread ------------------------- */

typedef struct pf_wait pf_wait_t; /* opaque */

/* How a wait ends: called once, on a worker of the executor (on an
 * embedded executor: inside pf_executor_drive), with no lock held.
 * result: 0 = the fd is ready or the timer's time came, PF_ETIMEDOUT = an
 * fd wait's deadline passed first, PF_ECANCELED = pf_wait_abort or
 * pf_executor_free came first. It may start new waits, abort or free any
 * wait, and free its own handle. */
typedef void (*pf_wait_fn)(int result, void *arg);

/* Events for pf_executor_wait_fd; OR them to wait for either. */
#define PF_WAIT_READABLE 0x1u
#define PF_WAIT_WRITABLE 0x2u

/* Handles: with out non-NULL, *out receives the wait's handle, stored
 * before the wait can complete (so done may read it). The record behind
 * it lives until both sides are done with it: the executor (after done
 * returns and the fd and timer are withdrawn) and the owner (after
 * pf_wait_free). So pf_wait_abort may race a completion from any thread,
 * and a handle outlives its completion and its executor safely. With out
 * NULL the wait cannot be aborted (but pf_executor_free ends it) and the
 * executor frees it after done returns. On error *out is untouched and
 * done is never called. */

/* Wait until fd is ready for events (PF_WAIT_READABLE / _WRITABLE; an
 * error or hang-up on fd counts as ready: the caller's I/O then reports
 * it) or, with deadline (NULL or pf_deadline_none = none; any clock), until
 * the deadline passes (PF_ETIMEDOUT; one already past ends the wait at
 * once, unless fd is ready first). fd must stay open until done runs
 * (abort first to stop early); a second wait on an fd that has one uses a
 * duplicate of fd for its registration. Returns 0; PF_EINVAL for a NULL ex
 * or done, a negative fd, no or unknown events, or an fd epoll cannot
 * watch (closed, a regular file); PF_ENOMEM; PF_ESTATE while ex is being
 * freed; PF_ESYSTEM (out of fds for the duplicate). Never blocks.
 * Thread-safe. */
PF_API int pf_executor_wait_fd(pf_executor_t *ex, int fd, unsigned events,
                               const pf_deadline_t *deadline, pf_wait_fn done,
                               void *arg, pf_wait_t **out);

/* Wait `seconds` on the executor's clock (0 = at once, still through
 * done; INFINITY = until aborted), then complete with 0. Returns 0;
 * PF_EINVAL for a NULL ex or done, or negative or NaN seconds; PF_ENOMEM;
 * PF_ESTATE while ex is being freed. Never blocks. Thread-safe. */
PF_API int pf_executor_wait_timer(pf_executor_t *ex, double seconds,
                                  pf_wait_fn done, void *arg,
                                  pf_wait_t **out);

/* The same, until deadline at (any clock; pf_deadline_none = until
 * aborted). PF_EINVAL also for a NULL at. */
PF_API int pf_executor_wait_until(pf_executor_t *ex, const pf_deadline_t *at,
                                  pf_wait_fn done, void *arg,
                                  pf_wait_t **out);

/* End w now with PF_ECANCELED, unless it has ended already (then a
 * no-op): its fd and timer are withdrawn at once and done is queued.
 * NULL is a no-op. Must not follow pf_wait_free(w). Thread-safe, from any
 * thread, done callbacks included; never blocks beyond short locks (it may
 * wait for the reactor to finish firing w's own timer). */
PF_API void pf_wait_abort(pf_wait_t *w);

/* True once w has ended (ready, timed out or aborted); its done may still
 * be about to run. NULL: false. Must not follow pf_wait_free(w).
 * Thread-safe. */
PF_API bool pf_wait_ended(const pf_wait_t *w);

/* Give up the owner's hold on w. It does not abort w: a pending wait still
 * completes and calls done once. The record is freed when the executor is
 * done with it too. NULL is a no-op; at most once per handle; w must not
 * be used after. Thread-safe; may be called from done. */
PF_API void pf_wait_free(pf_wait_t *w);

/* ---- embedding: driving an executor from another event loop ----------- */

/* The fd a host event loop watches for readability (the epoll set: it
 * becomes readable when a watched fd is ready, a timer is due on a manual
 * clock, or work was queued from another thread). Owned by ex; do not
 * read, close or modify it. Returns it, PF_EINVAL for NULL, or PF_ESTATE
 * when ex is not embedded. Thread-safe. */
PF_API int pf_executor_fd(pf_executor_t *ex);

/* Run what is ready, without blocking: fire due timers, handle ready fds,
 * then run the work queued at that point (wait completions included). Work
 * queued while it runs waits for the next call (pf_executor_timeout_ms
 * then returns 0). Returns how many timers, fd events and tasks it ran
 * (>= 0), PF_EINVAL for NULL, or PF_ESTATE when ex is not embedded or a
 * drive is already under way (another thread, or from inside a task). Call
 * it from one thread at a time: the host loop's. */
PF_API int pf_executor_drive(pf_executor_t *ex);

/* When the host loop must call pf_executor_drive again even if the fd
 * stays quiet: 0 = now (work is queued or a timer is due), a number of
 * milliseconds (rounded up) until the earliest timer, or -1 = only when
 * the fd becomes readable (no timer armed; or a manual clock, whose
 * advance makes the fd readable). PF_EINVAL for NULL, PF_ESTATE when ex is
 * not embedded. Call it after each drive. Thread-safe. */
PF_API int pf_executor_timeout_ms(pf_executor_t *ex);

#ifdef __cplusplus
}
#endif

#endif /* PUFFINFLOW_EXECUTOR_H */
