/* A slot: one state's record in one run, and its life. Part of the run's
 * layout (run_impl.h), kept apart because it is the scheduler's unit of
 * work: schedule.c drives slots, run.c resets them and reads their
 * results, context.c answers a running state's questions from its slot's
 * context view. */
#ifndef PF_SRC_SLOT_IMPL_H
#define PF_SRC_SLOT_IMPL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "puffinflow/agent.h"

#include "context_impl.h"
#include "executor_impl.h"
#include "timerheap.h"

/* Counts added to the agent's metrics when a run ends. */
typedef struct pf__counts {
    uint64_t retries;
    uint64_t rejections;
    uint64_t timeouts;
    uint64_t fallbacks;
} pf__counts_t;

/* A slot's life in one run: one phase at a time, moved only through
 * pf__slot_move (schedule.c), which asserts each move against this table.
 *
 *   IDLE ----> READY               claimed: an entry state at the start, a
 *                                  goto (compare-and-swap: gotos race), or
 *                                  the last of its dependencies completing
 *   READY ---> RATE_WAIT           its rate limit reserved a permit due later
 *   READY, RATE_WAIT
 *         ---> BULKHEAD_WAIT       no bulkhead place free: a ticket queued
 *   READY, RATE_WAIT, BULKHEAD_WAIT
 *         ---> ADMITTED            through its rate limit and bulkhead
 *   ADMITTED -> RUNNING            its breaker let it through: called
 *   ADMITTED -> DONE               its breaker rejected it (a fallback may
 *                                  answer; no retry)
 *   RUNNING -> PENDING             it returned PF_PENDING: its work
 *                                  completes later (pf_ctx_pending)
 *   READY, RATE_WAIT, BULKHEAD_WAIT, RUNNING, PENDING
 *         ---> READY               the attempt (or a gate) failed: retry now
 *         ---> RETRY_WAIT          ... retry after a backoff delay
 *         ---> DONE                ... or end: failed, or a fallback answered
 *   RUNNING, PENDING -> DONE       the attempt succeeded
 *   RETRY_WAIT -> READY            the delay is over
 *   RETRY_WAIT -> DONE             its timer could not be armed
 *   every phase but IDLE, ADMITTED, DONE, CANCELLED
 *         ---> CANCELLED           the run was cancelled or ran out of time
 *
 * DONE and CANCELLED are final: the next run on the same object resets
 * the slot to IDLE (pf__sched_reset). A slot never activated stays IDLE;
 * its outcome (skipped, cancelled, not run) is settled when the run ends.
 *
 * RATE_WAIT, BULKHEAD_WAIT and RETRY_WAIT (and PENDING) are the waiting
 * phases: the slot is parked, no thread holds it, and the park word says
 * whose it is (below). The slot's one timer serves its phase: the delay
 * in RATE_WAIT and RETRY_WAIT, the queue's wait limit in BULKHEAD_WAIT,
 * the attempt's own token deadline in RUNNING (and PENDING). */
typedef enum pf__slot_phase {
    PF__SLOT_IDLE = 0,
    PF__SLOT_READY,
    PF__SLOT_RATE_WAIT,
    PF__SLOT_BULKHEAD_WAIT,
    PF__SLOT_ADMITTED,
    PF__SLOT_RUNNING,
    PF__SLOT_PENDING,
    PF__SLOT_RETRY_WAIT,
    PF__SLOT_DONE,
    PF__SLOT_CANCELLED,
    PF__SLOT_PHASES /* the number of phases */
} pf__slot_phase_t;

/* Who holds a slot in a waiting phase: the hand-over between the thread
 * that parks it and the one thing that resumes it (a timer, a bulkhead
 * grant, a cancellation that withdrew the timer or ticket, a completion
 * or an abort of pending work). Outside the waiting phases it is always
 * OWNED, except that pf_ctx_pending sets QUEUED while the state's
 * function still runs: its work may complete before the function
 * returns. */
typedef enum pf__park {
    PF__PARK_OWNED = 0, /* held by the thread driving it */
    PF__PARK_QUEUED,    /* wait being set up by the driving thread */
    PF__PARK_PARKED,    /* waiting; its resumer queues its task */
    PF__PARK_EARLY      /* resumed while being set up: the driver goes on */
} pf__park_t;

/* One state of one run. The slot is held by one thread at a time (the
 * one driving it, or whoever resumes it from a park); phase, deps_left
 * and park are atomics shared with other states' threads (a goto's claim,
 * a dependency's completion) and with cancellation and timers (which read
 * the phase of a parked slot). The other fields belong to the holder.
 *
 * The flags left beside the phase are not phases, and each says why:
 *   timed_out, fell_back: how the last attempt ended, reported in the
 *     results; they hold across retries and into DONE.
 *   in_bulkhead: holds a place in its bulkhead, from ADMITTED (or a grant
 *     in BULKHEAD_WAIT, which the resumer records here) until the
 *     attempt's end; every way out gives it back.
 *   rate_reserved: holds a rate-limit permit reserved after a wait and not
 *     yet used (RATE_WAIT, and BULKHEAD_WAIT after it); refunded if the
 *     attempt is not made.
 *   retry_started: the retry state is initialised (lazily: most states
 *     never fail); it lives across attempts.
 *   own_token: ctx.token is the attempt's own, freed with its timer when
 *     the attempt ends, rather than the run's.
 *
 * completion and aborters serve a pending attempt (pf_ctx_pending): the
 * record, from pf_ctx_pending until the attempt's end takes it back; and
 * how many threads (the slot's timer, a cancellation) are looking at it
 * to abort it, which the taker waits out before dropping its reference
 * (both seq_cst: see take_completion in schedule.c). */
typedef struct pf__slot {
    pf__task_t task;
    pf__timer_t timer;
    pf_bulkhead_ticket_t ticket;
    pf_ctx_t ctx;
    pf_permit_t permit;
    pf_retry_state_t retry;
    _Atomic uint8_t phase; /* pf__slot_phase_t */
    atomic_uint deps_left;
    atomic_int park; /* pf__park_t */
    uint32_t link;   /* successor list, while being dispatched */
    uint8_t outcome; /* pf_state_outcome_t, set with DONE/CANCELLED */
    bool timed_out;
    bool fell_back;
    bool in_bulkhead;
    bool rate_reserved;
    bool retry_started;
    bool own_token;
    _Atomic(struct pf_completion *) completion;
    atomic_uint aborters;
    int error;
    unsigned attempts;
    uint64_t order;
    uint64_t dl_order; /* 1.. among dead letters; 0 = not one */
    int64_t start_ns;
    int64_t attempt_start_ns; /* the current attempt's, when timed */
    int64_t end_ns;
    int64_t failed_at_ns;
    pf__counts_t counts;
} pf__slot_t;

#endif /* PF_SRC_SLOT_IMPL_H */
