/* A run's layout: one record per run (run.c: start, wait, cancel, finish,
 * results), holding one slot per state (slot_impl.h). Built on the
 * agent's definition; schedule_impl.h builds on it in turn. */
#ifndef PF_SRC_RUN_IMPL_H
#define PF_SRC_RUN_IMPL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "puffinflow/agent.h"

#include "agent_impl.h"
#include "context_impl.h"
#include "executor_impl.h"
#include "slot_impl.h"
#include "timerheap.h"

/* A run. Immutable after start: agent, ex, clock, store, deadline, flags.
 * Atomics: active, cancel_reason, done, refs, sequence counters. token
 * and the parent registration: under lock. The summary is written by the
 * thread that ends the run, before it publishes done. */
struct pf_run {
    pf_agent_t *agent;
    uint64_t id; /* 1, 2, ...: the agent's runs in the order started; the
                    instance its states' leak tracking is keyed by */
    pf_executor_t *ex;
    const pf_clock_t *clock;
    pf__ctx_store_t *store;
    pf_ctx_t *user_ctx;       /* the context the run was given; NULL = none */
    _Atomic uint32_t active;  /* activations not yet ended */
    atomic_int cancel_reason; /* 0, PF_ECANCELED or PF_ETIMEDOUT */
    atomic_bool done;
    _Atomic int refs;
    _Atomic uint64_t order_seq;
    _Atomic uint64_t dl_seq;
    pf__group_t group;
    pthread_mutex_t lock;
    pf_token_t *token;        /* made on first pf_ctx_token */
    pf_token_t *parent_token; /* the run options' token */
    pf_token_reg_t parent_reg;
    bool parent_registered;
    pf__timer_t deadline_timer;
    int64_t deadline_ns; /* PF_DEADLINE_NEVER_NS = none */
    bool timings;
    bool own_store_used;
    bool caller_finished; /* the blocking caller ended it */
    pf_run_done_fn on_done;
    void *on_done_arg;
    int status;
    int64_t start_ns;
    int64_t end_ns;
    pf_run_result_t summary;   /* filled when the run ends */
    pf__ctx_store_t own_store; /* the context when none was given */
    size_t nslots;
    pf__slot_t slots[];
};

typedef struct pf_run pf__run_t;

/* The run's clock, read once per decision. */
static inline int64_t
pf__run_now(const pf__run_t *r)
{
    return pf_clock_now_ns(r->clock);
}

/* Tell the agent's listener, if any, of an event of run r (state PF__NONE
 * for the run itself). Calls the listener on the calling thread with no
 * lock held. */
static inline void
pf__run_emit(const pf__run_t *r, pf_agent_event_kind_t kind, uint32_t state,
             int error, unsigned attempt, double delay)
{
    const pf_agent_t *a = r->agent;
    pf_agent_event_t ev;

    if (a->cfg.listener == NULL) {
        return;
    }
    ev.kind = kind;
    ev.agent = a->name;
    ev.state = state == PF__NONE ? NULL : a->states[state].name;
    ev.error = error;
    ev.attempt = attempt;
    ev.delay = delay;
    ev.run = r->id;
    ev.ctx = r->user_ctx;
    a->cfg.listener(&ev, a->cfg.listener_arg);
}

#endif /* PF_SRC_RUN_IMPL_H */
