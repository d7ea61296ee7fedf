/* puffinflow — the executor: worker threads and a timer thread.
 *
 * The runtime (agent.h) runs the states of agents on an executor. It has a
 * fixed set of worker threads (by default one per online core) taking
 * ready work from priority-ordered queues, and one timer thread keeping a
 * heap of timers: retry backoff, rate-limit delays, bulkhead wait limits,
 * state timeouts and run deadlines are timers, never a sleeping worker.
 * Many runs, of many agents, share one executor.
 *
 * A thread blocked in pf_agent_run, or in pf_run_wait with no deadline,
 * is not idle: it runs its own run's ready states itself, so a sequential
 * chain never changes thread, and workers are woken only for parallel
 * work. A pf_run_wait with a deadline never runs a state (it must return
 * by its deadline, and a state may take any time): it only waits.
 *
 * Timers run on the executor's clock. With a manual clock (tests), a timer
 * fires when the clock is advanced past it, and pf_clock_manual_waiters
 * counts the timer thread while it waits for a timer; it is not counted
 * while no timer is armed. */
#ifndef PUFFINFLOW_EXECUTOR_H
#define PUFFINFLOW_EXECUTOR_H

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
} pf_executor_config_t;

/* Fill cfg with the defaults above. Never fails. */
PF_API void pf_executor_config_init(pf_executor_config_t *cfg);

/* Create an executor and start its threads. Returns 0 and stores it in
 * *out, PF_EINVAL for a NULL argument or a bad field, PF_ENOMEM, or
 * PF_ESYSTEM when a thread cannot be started; on error nothing is created
 * and *out is untouched. cfg is not kept; the clock must outlive the
 * executor. Thread-safe. */
PF_API int pf_executor_new(const pf_executor_config_t *cfg,
                           pf_executor_t **out);

/* Stop and destroy ex: work already queued is run first, then the threads
 * are joined; armed timers are dropped. NULL and the default executor are
 * no-ops. No run may be in progress on ex, no agent using ex may start
 * one, and it must not be called from one of ex's own threads. Blocks
 * until the queued work is done. */
PF_API void pf_executor_free(pf_executor_t *ex);

/* The default executor (system clock, one worker per core), created on
 * first use and kept until the process exits. Returns 0 and stores it in
 * *out, PF_EINVAL if out is NULL, or PF_ENOMEM / PF_ESYSTEM when it cannot
 * be created (a later call tries again). Thread-safe: concurrent first
 * calls get the same executor. */
PF_API int pf_executor_default(pf_executor_t **out);

/* The executor's name, owned by ex. Thread-safe. */
PF_API const char *pf_executor_name(const pf_executor_t *ex);

/* Number of worker threads. Thread-safe. */
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
} pf_executor_metrics_t;

/* Fill *out with a snapshot. NULL ex or out: no-op. Thread-safe. */
PF_API void pf_executor_metrics(pf_executor_t *ex, pf_executor_metrics_t *out);

#ifdef __cplusplus
}
#endif

#endif /* PUFFINFLOW_EXECUTOR_H */
