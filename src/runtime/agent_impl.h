/* The agent's layout: a definition of states, read-only once validated.
 * The lowest of the runtime's private headers about agents: attach_impl.h
 * (a state's pattern attachments) and run_impl.h (runs) build on it, and
 * it knows nothing of either (a run object is only a forward-declared
 * pointer in the agent's cache of finished run objects). */
#ifndef PF_SRC_AGENT_IMPL_H
#define PF_SRC_AGENT_IMPL_H

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "puffinflow/agent.h"

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
    pf_backoff_t *backoff; /* our copy, which retry.backoff points to */
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

struct pf_run;

/* name, cfg, executor, clock and the compiled arrays: immutable once
 * frozen (set under lock by validate). states: written only by add_state
 * before freezing. Counters and the run cache: atomics. The cache and the
 * run counters belong to run.c, which only keeps them here. */
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
    uint32_t *entries;    /* highest priority first */
    size_t nentries;
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

/* ---- agent.c ------------------------------------------------------------ */

/* The index of the state called name, or PF__NONE. */
uint32_t pf__agent_find(const pf_agent_t *a, const char *name);

/* Drop a reference to a (the user's or a run object's); the last one
 * frees the definition. Run objects keep their agent alive, so a run that
 * is still finishing, or a result or handle kept after pf_agent_free, can
 * still read it. */
void pf__agent_unref(pf_agent_t *a);

/* Set the message pf_agent_last_error returns. Called by the thread
 * defining or validating a (not thread-safe, like those calls). Inline so
 * that the files defining states need nothing but this header. */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static inline void
pf__agent_error(pf_agent_t *a, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(a->errbuf, sizeof(a->errbuf), fmt, ap);
    va_end(ap);
}

#endif /* PF_SRC_AGENT_IMPL_H */
