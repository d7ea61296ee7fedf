/* The agent's and the run's layout, shared by agent.c (definitions,
 * validation, results) and scheduler.c (running). */
#ifndef PF_SRC_AGENT_IMPL_H
#define PF_SRC_AGENT_IMPL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "puffinflow/agent.h"

#include "context_impl.h"
#include "executor_impl.h"
#include "timerheap.h"

#define PF__NONE UINT32_MAX
#define PF__RUN_CACHE 8

/* One state's definition. Immutable once the agent is validated. */
typedef struct pf__state {
    char *name;
    uint32_t hash;
    pf_state_fn fn;
    void *arg;
    unsigned prio;
    bool entry;
    bool dead_letter;
    bool fallback_on_failure;
    bool leak;               /* report to the leak detector */
    bool retry_eager;        /* start the retry state before the first
                                attempt (a budget or max_elapsed) */
    int64_t timeout_ns;      /* 0 = none */
    pf_retry_policy_t retry; /* our copy; retry_on points to retry_on */
    int *retry_on;
    pf_backoff_t *backoff;   /* our copy, which retry.backoff points to */
    char **dep_names;
    uint32_t ndep_names;
    uint32_t ndeps;
    uint32_t *deps; /* indices, distinct (after validation) */
    char **next_names;
    uint32_t nnext_names;
    uint32_t nnext;
    uint32_t *next;       /* indices (after validation) */
    uint32_t *dependents; /* into the agent's CSR array */
    uint32_t ndependents;
    pf_breaker_t *breaker;
    bool breaker_owned;
    /* The breaker's configured fallback, run as pf_breaker_call would;
     * NULL when the breaker has none or the state has a fallback or a
     * fallback state of its own (those win). */
    pf_fallback_fn breaker_fallback;
    pf_bulkhead_t *bulkhead;
    bool bulkhead_owned;
    pf_ratelimit_t *ratelimit;
    bool ratelimit_owned;
    pf_state_fallback_fn fallback;
    void *fallback_arg;
    char *fallback_state_name;
    uint32_t fallback_state; /* PF__NONE = none */
    pf_leak_resources_t resources;
} pf__state_t;

/* Counts added to the agent's metrics when a run ends. */
typedef struct pf__counts {
    uint64_t retries;
    uint64_t rejections;
    uint64_t timeouts;
    uint64_t fallbacks;
} pf__counts_t;

struct pf_run;

/* name, cfg, executor, clock and the compiled arrays: immutable once
 * frozen (set under lock by validate). states: written only by add_state
 * before freezing. Counters and the run cache: atomics. */
struct pf_agent {
    char *name;
    pf_agent_config_t cfg;   /* cfg.name points to name */
    pf_executor_t *ex;       /* set by validate */
    const pf_clock_t *clock; /* the executor's, or the config's
                                executor's, or system */
    pf__state_t *states;
    size_t nstates;
    size_t cap;
    uint32_t *htab; /* name hash: index + 1, 0 = empty */
    size_t hcap;
    uint32_t *dependents; /* CSR storage for every state */
    uint32_t *topo;       /* states in dependency order */
    uint32_t *entries;
    size_t nentries;
    size_t run_bytes; /* size of one run object */
    atomic_bool frozen;
    atomic_bool closing;  /* pf_agent_free was called */
    _Atomic int refs;     /* the user's, and one per run object */
    pthread_mutex_t lock; /* validate and errbuf */
    char errbuf[256];
    _Atomic(struct pf_run *) cache[PF__RUN_CACHE];
    _Atomic uint64_t runs_started;
    _Atomic uint64_t runs_finished;
    _Atomic uint64_t runs_failed;
    _Atomic uint64_t states_completed;
    _Atomic uint64_t states_failed;
    _Atomic uint64_t retries;
    _Atomic uint64_t rejections;
    _Atomic uint64_t timeouts;
    _Atomic uint64_t fallbacks;
    _Atomic uint64_t dead_letters;
};

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
    pf_ctx_t *user_ctx; /* the context the run was given; NULL = none */
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
    bool async;
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

/* ---- agent.c ------------------------------------------------------------ */

/* The index of the state called name, or PF__NONE. */
uint32_t pf__agent_find(const pf_agent_t *a, const char *name);

/* Drop a reference to a (the user's or a run object's); the last one
 * frees the definition. Run objects keep their agent alive, so a run that
 * is still finishing, or a result or handle kept after pf_agent_free, can
 * still read it. */
void pf__agent_unref(pf_agent_t *a);

/* Destroy the run objects in a's cache. */
void pf__agent_drain_cache(pf_agent_t *a);

/* ---- scheduler.c --------------------------------------------------------- */

/* Drop one reference to r; the last one returns it to the agent's cache
 * (or frees it). */
void pf__run_unref(pf__run_t *r);

/* Free a run object for good (the agent is being destroyed, or the cache
 * is full). */
void pf__run_destroy(pf__run_t *r);

#endif /* PF_SRC_AGENT_IMPL_H */
