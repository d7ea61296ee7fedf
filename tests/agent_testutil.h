/* Helpers shared by the agent test programs: a configurable state
 * function and agent constructors. Header-only (static functions), so each
 * test program includes it once. */
#ifndef PF_TESTS_AGENT_TESTUTIL_H
#define PF_TESTS_AGENT_TESTUTIL_H

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>

#include "puffinflow/agent.h"

#include "test.h"

/* What a test state does: count its calls, fail its first fail_first
 * attempts with code, then go to the states in go[]. */
typedef struct spec {
    atomic_int calls;
    int fail_first;
    int code;
    const char *go[6];
    pthread_t thread; /* thread of the last call */
    unsigned last_attempt;
    const char *seen_state;
    const char *seen_agent;
} spec_t;

static inline int
spec_fn(pf_ctx_t *ctx, void *arg)
{
    spec_t *s = arg;
    int i;

    atomic_fetch_add(&s->calls, 1);
    s->thread = pthread_self();
    s->last_attempt = pf_ctx_attempt(ctx);
    s->seen_state = pf_ctx_state_name(ctx);
    s->seen_agent = pf_ctx_agent_name(ctx);
    if ((int)pf_ctx_attempt(ctx) <= s->fail_first) {
        return s->code;
    }
    for (i = 0; i < 6 && s->go[i] != NULL; i++) {
        int rc = pf_ctx_goto(ctx, s->go[i]);

        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

/* A state that holds its slot: sets inside, then spins until release. */
typedef struct holder {
    atomic_int inside;
    atomic_int release;
} holder_t;

static inline int
hold(pf_ctx_t *ctx, void *arg)
{
    holder_t *h = arg;

    (void)ctx;
    atomic_store(&h->inside, 1);
    while (atomic_load(&h->release) == 0) {
        sched_yield();
    }
    return 0;
}

static inline pf_agent_t *
agent_on(pf_executor_t *ex, pf_exec_mode_t mode)
{
    pf_agent_config_t cfg;
    pf_agent_t *a = NULL;

    pf_agent_config_init(&cfg);
    cfg.name = "test";
    cfg.executor = ex;
    cfg.mode = mode;
    assert_pf_ok(pf_agent_new_ex(&cfg, &a));
    return a;
}

static inline pf_executor_t *
executor_on(const pf_clock_t *clock, unsigned workers)
{
    pf_executor_config_t cfg;
    pf_executor_t *ex = NULL;

    pf_executor_config_init(&cfg);
    cfg.clock = clock;
    cfg.workers = workers;
    assert_pf_ok(pf_executor_new(&cfg, &ex));
    return ex;
}

/* A manual clock and a 2-worker executor on it, per test: the group
 * setup and teardown of the agent tests whose time is the point. */
typedef struct fixture {
    pf_clock_t *clock;
    pf_executor_t *ex;
} fixture_t;

static inline int
fixture_setup(void **state)
{
    static fixture_t f;

    assert_pf_ok(pf_clock_manual_new(&f.clock));
    f.ex = executor_on(f.clock, 2);
    *state = &f;
    return 0;
}

static inline int
fixture_teardown(void **state)
{
    fixture_t *f = *state;

    pf_executor_free(f->ex);
    pf_clock_free(f->clock);
    return 0;
}

/* Options with immediate retries (no backoff delay). */
static inline void
quick_retries(pf_state_opts_t *o, unsigned max_retries)
{
    static const pf_backoff_t at_once = {.initial_delay = 0.0,
                                         .multiplier = 2.0,
                                         .max_delay = 0.0,
                                         .jitter = PF_JITTER_EQUAL};

    pf_state_opts_init(o);
    o->max_retries = max_retries;
    o->backoff = &at_once;
}

static inline pf_state_result_t
state_result(const pf_run_result_t *res, const char *name)
{
    pf_state_result_t sr;

    memset(&sr, 0, sizeof(sr));
    assert_pf_ok(pf_run_result_find(res, name, &sr));
    return sr;
}

#endif /* PF_TESTS_AGENT_TESTUTIL_H */
