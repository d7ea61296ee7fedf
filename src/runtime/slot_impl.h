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

/* Where a state's activation resumes. */
enum { PF__PH_RATE = 0, PF__PH_BULKHEAD, PF__PH_BREAKER, PF__PH_CALL };

/* Parking of a state waiting on a timer or a bulkhead ticket. */
enum {
    PF__PARK_NONE = 0, /* owned by the thread driving it */
    PF__PARK_QUEUED,   /* wait being set up by the driving thread */
    PF__PARK_PARKED,   /* waiting; its resumer pushes its task */
    PF__PARK_EARLY     /* resumed while being set up: the driver goes on */
};

/* What the slot's timer does when it fires. */
enum {
    PF__TIMER_RESUME = 0, /* a retry or rate-limit delay ended */
    PF__TIMER_TICKET,     /* a bulkhead wait limit ran out */
    PF__TIMER_TOKEN       /* the attempt's deadline: cancel its token */
};

/* One state of one run. The activation is owned by one thread at a time
 * (the one driving it, or whoever resumes it from a park); activated,
 * deps_left and park are atomics shared with other states' threads and
 * with cancellation. */
typedef struct pf__slot {
    pf__task_t task;
    pf__timer_t timer;
    pf_bulkhead_ticket_t ticket;
    pf_ctx_t ctx;
    pf_permit_t permit;
    pf_retry_state_t retry;
    atomic_uint activated;
    atomic_uint deps_left;
    atomic_int park;
    int timer_kind;
    uint32_t link; /* successor list, while being dispatched */
    uint8_t phase;
    uint8_t outcome; /* pf_state_outcome_t */
    bool timed_out;
    bool fell_back;
    bool dead_letter;
    bool in_bulkhead;
    bool bh_granted;
    bool bh_timed_out;
    bool rate_reserved;
    bool retry_started;
    bool own_token; /* ctx.token is the attempt's own */
    int error;
    unsigned attempts;
    uint64_t order;
    uint64_t dl_order; /* 1.. among dead letters; 0 = none */
    int64_t start_ns;
    int64_t end_ns;
    int64_t failed_at_ns;
    pf__counts_t counts;
} pf__slot_t;

#endif /* PF_SRC_SLOT_IMPL_H */
