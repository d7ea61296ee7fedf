/* Asynchronous states: a state that returns PF_PENDING after
 * pf_ctx_pending (or pf_ctx_sleep, pf_ctx_wait_fd) is completed later,
 * exactly once, holds no thread while it waits, and is aborted by its
 * timeout, the run's deadline or a cancellation. Time logic on a manual
 * clock; races as stress tests checking exactly-once and leaks (the
 * sanitizer builds catch a leaked record or a use after free). */
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "puffinflow/agent.h"
#include "puffinflow/error.h"
#include "puffinflow/executor.h"

#include "agent_testutil.h"
#include "test.h"

/* ---- a provider the tests drive by hand ---------------------------------- */

/* Each pending attempt leaves its handle in `handles` (up to cap); the
 * abort counts its calls. */
typedef struct manual {
    _Atomic(pf_completion_t *) *handles;
    size_t cap;
    atomic_size_t n;
    atomic_int aborts;
    atomic_int started;
    atomic_int pending_rc; /* what pf_ctx_pending returned last */
} manual_t;

static void
count_abort(void *arg)
{
    manual_t *m = arg;

    atomic_fetch_add(&m->aborts, 1);
}

static int
pend_manual(pf_ctx_t *ctx, void *arg)
{
    manual_t *m = arg;
    pf_completion_t *c = NULL;
    size_t i;
    int rc = pf_ctx_pending(ctx, count_abort, m, &c);

    atomic_store(&m->pending_rc, rc);
    if (rc != 0) {
        return rc;
    }
    i = atomic_fetch_add(&m->n, 1);
    assert_true(i < m->cap);
    atomic_store(&m->handles[i], c);
    atomic_fetch_add(&m->started, 1);
    return PF_PENDING;
}

/* The handle of the i-th pending attempt, once it has been published. */
static pf_completion_t *
handle(manual_t *m, size_t i)
{
    pf_completion_t *c;

    while ((c = atomic_load(&m->handles[i])) == NULL) {
        sched_yield();
    }
    return c;
}

static void
manual_init(manual_t *m, size_t cap)
{
    memset(m, 0, sizeof(*m));
    m->handles = calloc(cap, sizeof(*m->handles));
    assert_non_null(m->handles);
    m->cap = cap;
}

static void
manual_free(manual_t *m)
{
    free(m->handles);
}

static pf_agent_t *
one_state_agent(pf_executor_t *ex, pf_state_fn fn, void *arg,
                const pf_state_opts_t *o)
{
    pf_agent_t *a = agent_on(ex, PF_EXEC_PARALLEL);

    assert_pf_ok(pf_agent_add_state(a, "s", fn, arg, o));
    return a;
}

/* ---- the basics ---------------------------------------------------------- */

static void
test_async_pending_code_has_a_name(void **state)
{
    (void)state;
    assert_string_equal(pf_error_name(PF_PENDING), "PF_PENDING");
    assert_string_equal(pf_strerror(PF_PENDING), "pending: completes later");
    assert_true(pf_is_error_code(PF_PENDING));
    assert_true(PF_ERROR_LAST <= PF_PENDING);
}

static void
test_async_completion_from_another_thread_completes_the_state(void **state)
{
    fixture_t *f = *state;
    manual_t m;
    pf_agent_t *a;
    pf_run_t *run = NULL;
    pf_run_result_t res;
    pf_state_result_t sr;

    manual_init(&m, 1);
    a = one_state_agent(f->ex, pend_manual, &m, NULL);
    assert_pf_ok(pf_agent_start(a, NULL, NULL, &run));
    pf_test_wait_for_flag(&m.started, 1);
    assert_false(pf_run_done(run));
    assert_pf_ok(pf_completion_complete(handle(&m, 0), 0));
    assert_pf_ok(pf_run_wait(run, NULL, &res));
    sr = state_result(&res, "s");
    assert_int_equal(sr.outcome, PF_STATE_COMPLETED);
    assert_int_equal(sr.attempts, 1);
    /* Completing twice is refused, and the attempt keeps its result. */
    assert_int_equal(pf_completion_complete(handle(&m, 0), -7), PF_ESTATE);
    pf_completion_free(handle(&m, 0));
    assert_int_equal(atomic_load(&m.aborts), 0);
    pf_run_result_free(&res);
    pf_run_free(run);
    pf_agent_free(a);
    manual_free(&m);
}

/* Completed inside the state's own function, before it returns. */
static int
complete_at_once(pf_ctx_t *ctx, void *arg)
{
    pf_completion_t *c = NULL;
    int rc = pf_ctx_pending(ctx, NULL, NULL, &c);

    (void)arg;
    if (rc != 0) {
        return rc;
    }
    rc = pf_completion_complete(c, -42);
    pf_completion_free(c);
    return rc == 0 ? PF_PENDING : rc;
}

static void
test_async_completion_before_the_state_returns(void **state)
{
    fixture_t *f = *state;
    pf_state_opts_t o;
    pf_agent_t *a;
    pf_run_result_t res;

    pf_state_opts_init(&o);
    o.max_retries = 0;
    a = one_state_agent(f->ex, complete_at_once, NULL, &o);
    assert_int_equal(pf_agent_run(a, NULL, &res), -42);
    assert_int_equal(state_result(&res, "s").error, -42);
    pf_run_result_free(&res);
    pf_agent_free(a);
}

/* ---- bad input ----------------------------------------------------------- */

static int
pending_without_work(pf_ctx_t *ctx, void *arg)
{
    (void)ctx;
    (void)arg;
    return PF_PENDING;
}

static int
pending_twice(pf_ctx_t *ctx, void *arg)
{
    pf_completion_t *c = NULL;
    pf_completion_t *c2 = NULL;
    int *second = arg;

    assert_pf_ok(pf_ctx_pending(ctx, NULL, NULL, &c));
    *second = pf_ctx_pending(ctx, NULL, NULL, &c2);
    assert_null(c2);
    assert_pf_ok(pf_completion_complete(c, 0));
    pf_completion_free(c);
    return PF_PENDING;
}

static int
fallback_pends(pf_ctx_t *ctx, void *arg, int reason)
{
    int *rc = arg;

    (void)reason;
    *rc = pf_ctx_sleep(ctx, 1.0);
    return 0;
}

static int
fail_state(pf_ctx_t *ctx, void *arg)
{
    (void)ctx;
    (void)arg;
    return -5;
}

static void
test_async_bad_input(void **state)
{
    fixture_t *f = *state;
    pf_completion_t *c = NULL;
    pf_ctx_t *user = NULL;
    pf_state_opts_t o;
    pf_agent_t *a;
    pf_run_result_t res;
    int second = 0;
    int in_fallback = 0;

    assert_int_equal(pf_completion_complete(NULL, 0), PF_EINVAL);
    pf_completion_free(NULL);
    assert_int_equal(pf_ctx_pending(NULL, NULL, NULL, &c), PF_EINVAL);
    assert_pf_ok(pf_ctx_new(&user));
    assert_int_equal(pf_ctx_pending(user, NULL, NULL, &c), PF_EINVAL);
    assert_int_equal(pf_ctx_sleep(user, 1.0), PF_EINVAL);
    assert_int_equal(pf_ctx_wait_fd(user, 0, PF_WAIT_READABLE), PF_EINVAL);
    assert_null(c);
    pf_ctx_free(user);

    /* PF_PENDING with no pending work fails the attempt. */
    pf_state_opts_init(&o);
    o.max_retries = 0;
    a = one_state_agent(f->ex, pending_without_work, NULL, &o);
    assert_int_equal(pf_agent_run(a, NULL, &res), PF_ESTATE);
    pf_run_result_free(&res);
    pf_agent_free(a);

    /* Twice in one attempt. */
    a = one_state_agent(f->ex, pending_twice, &second, &o);
    assert_pf_ok(pf_agent_run(a, NULL, NULL));
    assert_int_equal(second, PF_ESTATE);
    pf_agent_free(a);

    /* From a fallback. */
    o.fallback = fallback_pends;
    o.fallback_arg = &in_fallback;
    o.fallback_on_failure = true;
    a = one_state_agent(f->ex, fail_state, NULL, &o);
    assert_pf_ok(pf_agent_run(a, NULL, NULL));
    assert_int_equal(in_fallback, PF_ESTATE);
    pf_agent_free(a);
}

static int
complete_with_pending(pf_ctx_t *ctx, void *arg)
{
    pf_completion_t *c = NULL;
    int *rc = arg;

    assert_pf_ok(pf_ctx_pending(ctx, NULL, NULL, &c));
    *rc = pf_completion_complete(c, PF_PENDING);
    assert_pf_ok(pf_completion_complete(c, 0));
    pf_completion_free(c);
    return PF_PENDING;
}

static void
test_async_completing_with_pending_is_refused(void **state)
{
    fixture_t *f = *state;
    pf_agent_t *a;
    int rc = 0;

    a = one_state_agent(f->ex, complete_with_pending, &rc, NULL);
    assert_pf_ok(pf_agent_run(a, NULL, NULL));
    assert_int_equal(rc, PF_EINVAL);
    pf_agent_free(a);
}

/* A state that makes its work pending and then returns a result of its
 * own: its result stands and the work is aborted. */
static int
pend_then_return(pf_ctx_t *ctx, void *arg)
{
    manual_t *m = arg;

    assert_int_equal(pend_manual(ctx, m), PF_PENDING);
    return -9;
}

static void
test_async_returning_a_result_aborts_the_work(void **state)
{
    fixture_t *f = *state;
    pf_state_opts_t o;
    manual_t m;
    pf_agent_t *a;

    manual_init(&m, 1);
    pf_state_opts_init(&o);
    o.max_retries = 0;
    a = one_state_agent(f->ex, pend_then_return, &m, &o);
    assert_int_equal(pf_agent_run(a, NULL, NULL), -9);
    assert_int_equal(atomic_load(&m.aborts), 1);
    assert_int_equal(pf_completion_complete(handle(&m, 0), 0), PF_ECANCELED);
    pf_completion_free(handle(&m, 0));
    pf_agent_free(a);
    manual_free(&m);
}

/* ---- time: aborts on the manual clock -------------------------------------
 */

static void
test_async_timeout_aborts_the_work_and_ends_the_attempt(void **state)
{
    fixture_t *f = *state;
    pf_state_opts_t o;
    manual_t m;
    pf_agent_t *a;
    pf_run_t *run = NULL;
    pf_run_result_t res;
    pf_state_result_t sr;

    manual_init(&m, 1);
    pf_state_opts_init(&o);
    o.max_retries = 0;
    o.timeout = 1.0;
    a = one_state_agent(f->ex, pend_manual, &m, &o);
    assert_pf_ok(pf_agent_start(a, NULL, NULL, &run));
    pf_test_wait_for_flag(&m.started, 1);
    pf_test_wait_for_waiters(f->clock, 1);
    pf_clock_manual_advance(f->clock, 999 * NS_PER_MS);
    assert_false(pf_run_done(run));
    assert_int_equal(atomic_load(&m.aborts), 0);
    pf_clock_manual_advance(f->clock, 1 * NS_PER_MS);
    assert_int_equal(pf_run_wait(run, NULL, &res), PF_ETIMEDOUT);
    assert_int_equal(atomic_load(&m.aborts), 1);
    sr = state_result(&res, "s");
    assert_int_equal(sr.outcome, PF_STATE_FAILED);
    assert_int_equal(sr.error, PF_ETIMEDOUT);
    assert_true(sr.timed_out);
    assert_true(sr.duration == 1.0);
    pf_run_result_free(&res);
    pf_run_free(run);
    pf_agent_free(a);
    /* After the run and its agent are freed: refused, nothing touched. */
    assert_int_equal(pf_completion_complete(handle(&m, 0), 0), PF_ETIMEDOUT);
    assert_int_equal(pf_completion_complete(handle(&m, 0), 0), PF_ETIMEDOUT);
    pf_completion_free(handle(&m, 0));
    assert_int_equal(atomic_load(&m.aborts), 1);
    manual_free(&m);
}

static void
test_async_run_deadline_and_cancel_abort_pending_work(void **state)
{
    fixture_t *f = *state;
    pf_run_opts_t ro;
    manual_t m;
    pf_agent_t *a;
    pf_run_t *run = NULL;
    pf_run_result_t res;

    manual_init(&m, 2);
    a = one_state_agent(f->ex, pend_manual, &m, NULL);
    pf_run_opts_init(&ro);
    ro.timeout = 2.0;
    assert_pf_ok(pf_agent_start(a, NULL, &ro, &run));
    pf_test_wait_for_flag(&m.started, 1);
    pf_test_wait_for_waiters(f->clock, 1);
    pf_clock_manual_advance(f->clock, 2 * NS_PER_SEC);
    assert_int_equal(pf_run_wait(run, NULL, &res), PF_ETIMEDOUT);
    assert_int_equal(atomic_load(&m.aborts), 1);
    assert_int_equal(state_result(&res, "s").outcome, PF_STATE_CANCELLED);
    pf_run_result_free(&res);
    pf_run_free(run);

    assert_pf_ok(pf_agent_start(a, NULL, NULL, &run));
    pf_test_wait_for_flag(&m.started, 2);
    pf_run_cancel(run);
    assert_int_equal(pf_run_wait(run, NULL, &res), PF_ECANCELED);
    assert_int_equal(atomic_load(&m.aborts), 2);
    assert_int_equal(state_result(&res, "s").outcome, PF_STATE_CANCELLED);
    assert_int_equal(pf_completion_complete(handle(&m, 1), 0), PF_ECANCELED);
    pf_run_result_free(&res);
    pf_run_free(run);
    pf_agent_free(a);
    pf_completion_free(handle(&m, 0));
    pf_completion_free(handle(&m, 1));
    manual_free(&m);
}

static int
sleep_state(pf_ctx_t *ctx, void *arg)
{
    double *secs = arg;

    return pf_ctx_sleep(ctx, *secs);
}

static void
test_async_sleep_completes_when_its_timer_fires(void **state)
{
    fixture_t *f = *state;
    double secs = 0.1;
    pf_agent_t *a = one_state_agent(f->ex, sleep_state, &secs, NULL);
    pf_run_t *run = NULL;
    pf_run_result_t res;
    pf_executor_metrics_t em;

    assert_pf_ok(pf_agent_start(a, NULL, NULL, &run));
    pf_test_wait_for_waiters(f->clock, 1);
    pf_executor_metrics(f->ex, &em);
    assert_int_equal(em.waits_pending, 1);
    pf_clock_manual_advance(f->clock, 99 * NS_PER_MS);
    assert_false(pf_run_done(run));
    pf_clock_manual_advance(f->clock, 1 * NS_PER_MS);
    assert_pf_ok(pf_run_wait(run, NULL, &res));
    assert_true(state_result(&res, "s").duration == 0.1);
    pf_run_result_free(&res);
    pf_run_free(run);
    pf_agent_free(a);
}

static void
test_async_sleep_past_its_timeout_is_aborted_through_the_wait(void **state)
{
    fixture_t *f = *state;
    double secs = 10.0;
    pf_state_opts_t o;
    pf_agent_t *a;
    pf_run_t *run = NULL;
    pf_run_result_t res;
    pf_executor_metrics_t em;

    pf_state_opts_init(&o);
    o.max_retries = 0;
    o.timeout = 0.5;
    a = one_state_agent(f->ex, sleep_state, &secs, &o);
    assert_pf_ok(pf_agent_start(a, NULL, NULL, &run));
    pf_test_wait_for_waiters(f->clock, 1);
    pf_clock_manual_advance(f->clock, 500 * NS_PER_MS);
    assert_int_equal(pf_run_wait(run, NULL, &res), PF_ETIMEDOUT);
    assert_true(state_result(&res, "s").timed_out);
    pf_run_result_free(&res);
    pf_run_free(run);
    /* The reactor's wait was aborted, not left to run 10 s. */
    for (;;) {
        pf_executor_metrics(f->ex, &em);
        if (em.waits_pending == 0) {
            break;
        }
        sched_yield();
    }
    pf_agent_free(a);
}

static int
wait_pipe(pf_ctx_t *ctx, void *arg)
{
    int *fd = arg;

    return pf_ctx_wait_fd(ctx, *fd, PF_WAIT_READABLE);
}

static void
test_async_wait_fd_completes_when_readable(void **state)
{
    fixture_t *f = *state;
    int p[2];
    pf_agent_t *a;
    pf_run_t *run = NULL;
    pf_executor_metrics_t em;
    pf_state_opts_t o;

    assert_int_equal(pipe(p), 0);
    a = one_state_agent(f->ex, wait_pipe, &p[0], NULL);
    assert_pf_ok(pf_agent_start(a, NULL, NULL, &run));
    for (;;) {
        pf_executor_metrics(f->ex, &em);
        if (em.waits_pending == 1) {
            break;
        }
        sched_yield();
    }
    assert_false(pf_run_done(run));
    assert_int_equal(write(p[1], "x", 1), 1);
    assert_pf_ok(pf_run_wait(run, NULL, NULL));
    pf_run_free(run);
    pf_agent_free(a);

    /* A bad fd is reported by the state at once: nothing was started. */
    pf_state_opts_init(&o);
    o.max_retries = 0;
    close(p[0]);
    close(p[1]);
    p[0] = 1 << 20;
    a = one_state_agent(f->ex, wait_pipe, &p[0], &o);
    assert_int_equal(pf_agent_run(a, NULL, NULL), PF_EINVAL);
    pf_agent_free(a);
}

/* ---- holding no thread ----------------------------------------------------
 */

static void
test_async_bulkhead_of_200_is_reached_with_2_workers(void **state)
{
    fixture_t *f = *state;
    pf_bulkhead_config_t bc;
    pf_state_opts_t o;
    pf_bulkhead_metrics_t bm;
    manual_t m;
    pf_agent_t *a;
    pf_run_t *runs[250];
    size_t i;

    manual_init(&m, 250);
    pf_bulkhead_config_init(&bc);
    bc.max_concurrent_calls = 200;
    bc.max_queue_size = 100;
    pf_state_opts_init(&o);
    o.own_bulkhead = true;
    o.bulkhead_config = &bc;
    a = one_state_agent(f->ex, pend_manual, &m, &o);
    for (i = 0; i < 250; i++) {
        assert_pf_ok(pf_agent_start(a, NULL, NULL, &runs[i]));
    }
    pf_test_wait_for_flag(&m.started, 200);
    do { /* the other 50 queue as tickets: no thread waits */
        sched_yield();
        pf_bulkhead_metrics(pf_agent_state_bulkhead(a, "s"), &bm);
    } while (bm.waiting < 50);
    assert_int_equal(bm.in_use, 200);
    assert_int_equal(bm.waiting, 50);
    assert_int_equal(atomic_load(&m.started), 200);
    /* Completing one lets one more in. */
    for (i = 0; i < 250; i++) {
        while (atomic_load(&m.n) <= i) {
            sched_yield();
        }
        assert_pf_ok(pf_completion_complete(handle(&m, i), 0));
    }
    for (i = 0; i < 250; i++) {
        assert_pf_ok(pf_run_wait(runs[i], NULL, NULL));
        pf_run_free(runs[i]);
        pf_completion_free(handle(&m, i));
    }
    pf_bulkhead_metrics(pf_agent_state_bulkhead(a, "s"), &bm);
    assert_int_equal(bm.in_use, 0);
    assert_int_equal(bm.peak_in_use, 200);
    pf_agent_free(a);
    manual_free(&m);
}

/* A blocking pf_agent_run whose states are pending: the caller waits,
 * and the states are completed from another thread. */
typedef struct late {
    manual_t *m;
    size_t count;
} late_t;

static void *
complete_when_pending(void *arg)
{
    late_t *l = arg;
    size_t i;

    for (i = 0; i < l->count; i++) {
        while (atomic_load(&l->m->n) <= i) {
            sched_yield();
        }
        assert_pf_ok(pf_completion_complete(handle(l->m, i), 0));
    }
    return NULL;
}

static void
test_async_blocking_run_waits_for_pending_states(void **state)
{
    fixture_t *f = *state;
    manual_t m;
    pf_agent_t *a = agent_on(f->ex, PF_EXEC_PARALLEL);
    late_t l;
    pthread_t t;
    pf_run_result_t res;
    size_t i;

    manual_init(&m, 3);
    l.m = &m;
    l.count = 3;
    assert_pf_ok(pf_agent_add_state(a, "a", pend_manual, &m, NULL));
    assert_pf_ok(pf_agent_add_state(a, "b", pend_manual, &m, NULL));
    assert_pf_ok(pf_agent_add_state(a, "c", pend_manual, &m, NULL));
    assert_int_equal(pthread_create(&t, NULL, complete_when_pending, &l), 0);
    assert_pf_ok(pf_agent_run(a, NULL, &res));
    pthread_join(t, NULL);
    assert_int_equal(res.completed, 3);
    pf_run_result_free(&res);
    for (i = 0; i < 3; i++) {
        pf_completion_free(handle(&m, i));
    }
    manual_free(&m);
    pf_agent_free(a);
}

/* ---- the patterns see no difference -------------------------------------- */

/* What a state does, synchronously or through pending work that a worker
 * of the executor completes (a zero-second wait's callback). */
typedef struct twin {
    spec_t spec;
    bool async;
    pf_executor_t *ex;
} twin_t;

typedef struct later {
    pf_completion_t *c;
    int rc;
} later_t;

static void
complete_later(int result, void *arg)
{
    later_t *l = arg;

    assert_int_equal(result, 0);
    assert_pf_ok(pf_completion_complete(l->c, l->rc));
    pf_completion_free(l->c);
    free(l);
}

static int
twin_fn(pf_ctx_t *ctx, void *arg)
{
    twin_t *t = arg;
    int rc = spec_fn(ctx, &t->spec);
    later_t *l;

    if (!t->async) {
        return rc;
    }
    l = malloc(sizeof(*l));
    assert_non_null(l);
    l->rc = rc;
    assert_pf_ok(pf_ctx_pending(ctx, NULL, NULL, &l->c));
    assert_pf_ok(pf_executor_wait_timer(t->ex, 0.0, complete_later, l, NULL));
    return PF_PENDING;
}

typedef struct events {
    char kinds[64];
    atomic_int n;
} events_t;

static void
note_event(const pf_agent_event_t *ev, void *arg)
{
    events_t *e = arg;
    int i = atomic_fetch_add(&e->n, 1);

    if (i < 63) {
        e->kinds[i] = (char)('0' + (int)ev->kind);
    }
}

typedef struct outcome {
    int status;
    pf_state_result_t sr;
    size_t dead_letters;
    events_t ev;
    int calls;
} outcome_t;

/* Run an agent of one state "s" (options o, then runs more runs) and
 * note what the last run gives. */
static void
run_twin(pf_executor_t *ex, bool async, const spec_t *spec,
         const pf_state_opts_t *o, int runs, outcome_t *out)
{
    pf_agent_config_t cfg;
    pf_agent_t *a = NULL;
    twin_t t;
    pf_run_result_t res;
    int i;

    memset(out, 0, sizeof(*out));
    memset(&t, 0, sizeof(t));
    t.spec.fail_first = spec->fail_first;
    t.spec.code = spec->code;
    t.async = async;
    t.ex = ex;
    pf_agent_config_init(&cfg);
    cfg.name = "twin";
    cfg.executor = ex;
    cfg.timings = false;
    cfg.listener = note_event;
    cfg.listener_arg = &out->ev;
    assert_pf_ok(pf_agent_new_ex(&cfg, &a));
    assert_pf_ok(pf_agent_add_state(a, "s", twin_fn, &t, o));
    for (i = 0; i < runs; i++) {
        out->status = pf_agent_run(a, NULL, &res);
        out->sr = state_result(&res, "s");
        out->dead_letters = res.dead_letters;
        pf_run_result_free(&res);
    }
    out->calls = atomic_load(&t.spec.calls);
    pf_agent_free(a);
}

static void
assert_same(pf_executor_t *ex, const spec_t *spec, const pf_state_opts_t *o,
            int runs)
{
    outcome_t sync;
    outcome_t async;

    run_twin(ex, false, spec, o, runs, &sync);
    run_twin(ex, true, spec, o, runs, &async);
    assert_int_equal(async.status, sync.status);
    assert_int_equal(async.sr.outcome, sync.sr.outcome);
    assert_int_equal(async.sr.error, sync.sr.error);
    assert_int_equal(async.sr.attempts, sync.sr.attempts);
    assert_int_equal(async.sr.fell_back, sync.sr.fell_back);
    assert_int_equal(async.sr.dead_letter, sync.sr.dead_letter);
    assert_int_equal(async.dead_letters, sync.dead_letters);
    assert_int_equal(async.calls, sync.calls);
    assert_int_equal(atomic_load(&async.ev.n), atomic_load(&sync.ev.n));
    assert_string_equal(async.ev.kinds, sync.ev.kinds);
}

static int
answer_fallback(pf_ctx_t *ctx, void *arg, int reason)
{
    (void)ctx;
    (void)arg;
    return reason == -3 ? 0 : -1;
}

static void
test_async_retries_fallbacks_dead_letters_as_sync(void **state)
{
    fixture_t *f = *state;
    spec_t spec = {0};
    pf_state_opts_t o;

    spec.code = -3;
    spec.fail_first = 2; /* two failures, then success: retried */
    quick_retries(&o, 3);
    assert_same(f->ex, &spec, &o, 1);

    spec.fail_first = 100; /* fails for good: a dead letter */
    quick_retries(&o, 2);
    assert_same(f->ex, &spec, &o, 1);

    quick_retries(&o, 1); /* ... or a fallback answers */
    o.fallback = answer_fallback;
    o.fallback_on_failure = true;
    assert_same(f->ex, &spec, &o, 1);
}

static void
test_async_breaker_and_bulkhead_as_sync(void **state)
{
    fixture_t *f = *state;
    spec_t spec = {0};
    pf_breaker_config_t bc;
    pf_bulkhead_config_t hc;
    pf_state_opts_t o;
    outcome_t out;

    spec.code = -3;
    spec.fail_first = 100;
    quick_retries(&o, 0);
    pf_breaker_config_init(&bc);
    bc.failure_threshold = 1;
    o.own_breaker = true;
    o.breaker_config = &bc;
    assert_same(f->ex, &spec, &o, 1); /* the failure is counted */
    assert_same(f->ex, &spec, &o, 2); /* then the breaker is open */
    run_twin(f->ex, true, &spec, &o, 2, &out);
    assert_int_equal(out.status, PF_EOPEN);
    assert_int_equal(out.calls, 1);

    pf_bulkhead_config_init(&hc);
    hc.max_concurrent_calls = 1;
    quick_retries(&o, 0);
    o.own_bulkhead = true;
    o.bulkhead_config = &hc;
    spec.fail_first = 0;
    assert_same(f->ex, &spec, &o, 3);
}

/* ---- races --------------------------------------------------------------- */

enum { RACES = 2000 };

typedef struct racer {
    manual_t *m;
    atomic_int accepted;
} racer_t;

static void *
complete_all(void *arg)
{
    racer_t *r = arg;
    size_t i;

    for (i = 0; i < RACES; i++) {
        if (pf_completion_complete(handle(r->m, i), 0) == 0) {
            atomic_fetch_add(&r->accepted, 1);
        }
    }
    return NULL;
}

/* Each run's pending state is completed by one thread while the main
 * thread cancels the run (or, with a timeout, while its timer fires):
 * exactly one of the completion and the abort wins, every time. */
static void
race(bool by_timeout)
{
    pf_executor_t *ex = executor_on(NULL, 2);
    pf_state_opts_t o;
    manual_t m;
    racer_t r;
    pf_agent_t *a;
    pthread_t t;
    pf_run_t **runs = calloc(RACES, sizeof(*runs));
    int completed = 0;
    int ended_by_abort = 0;
    size_t i;

    assert_non_null(runs);
    manual_init(&m, RACES);
    r.m = &m;
    atomic_init(&r.accepted, 0);
    pf_state_opts_init(&o);
    o.max_retries = 0;
    if (by_timeout) {
        o.timeout = 20e-6;
    }
    a = one_state_agent(ex, pend_manual, &m, &o);
    assert_int_equal(pthread_create(&t, NULL, complete_all, &r), 0);
    for (i = 0; i < RACES; i++) {
        assert_pf_ok(pf_agent_start(a, NULL, NULL, &runs[i]));
        if (!by_timeout) {
            (void)handle(&m, i);
            pf_run_cancel(runs[i]);
        }
    }
    pthread_join(t, NULL);
    for (i = 0; i < RACES; i++) {
        pf_run_result_t res;
        pf_state_result_t sr;

        (void)pf_run_wait(runs[i], NULL, &res);
        sr = state_result(&res, "s");
        completed += sr.outcome == PF_STATE_COMPLETED;
        ended_by_abort += sr.error == PF_ECANCELED || sr.error == PF_ETIMEDOUT;
        pf_run_result_free(&res);
        pf_run_free(runs[i]);
        pf_completion_free(handle(&m, i));
    }
    /* Exactly once: every attempt was either completed or aborted. */
    assert_int_equal(atomic_load(&r.accepted) + atomic_load(&m.aborts), RACES);
    assert_true(completed <= atomic_load(&r.accepted));
    assert_int_equal(completed + ended_by_abort, RACES);
    pf_agent_free(a);
    pf_executor_free(ex);
    manual_free(&m);
    free(runs);
}

static void
test_async_completions_race_cancellations(void **state)
{
    (void)state;
    race(false);
}

static void
test_async_completions_race_timeouts(void **state)
{
    (void)state;
    race(true);
}

/* ---- many at once ----------------------------------------------------------
 */

typedef struct completer {
    manual_t *m;
    size_t from;
    size_t step;
    size_t total;
    atomic_int accepted;
} completer_t;

static void *
complete_some(void *arg)
{
    completer_t *c = arg;
    size_t i;

    for (i = c->from; i < c->total; i += c->step) {
        while (atomic_load(&c->m->n) <= i) {
            sched_yield();
        }
        if (pf_completion_complete(handle(c->m, i), 0) == 0) {
            atomic_fetch_add(&c->accepted, 1);
        }
    }
    return NULL;
}

static void
test_async_100000_pending_states_complete_exactly_once(void **state)
{
    enum { N = 100000, T = 4 };
    fixture_t *f = *state;
    pf_agent_config_t cfg;
    manual_t m;
    pf_agent_t *a = NULL;
    pf_run_t **runs = calloc(N, sizeof(*runs));
    completer_t c[T];
    pthread_t th[T];
    pf_agent_metrics_t am;
    int accepted = 0;
    size_t i;

    assert_non_null(runs);
    manual_init(&m, N);
    pf_agent_config_init(&cfg);
    cfg.name = "many";
    cfg.executor = f->ex;
    cfg.timings = false;
    assert_pf_ok(pf_agent_new_ex(&cfg, &a));
    assert_pf_ok(pf_agent_add_state(a, "s", pend_manual, &m, NULL));
    for (i = 0; i < T; i++) {
        c[i].m = &m;
        c[i].from = i;
        c[i].step = T;
        c[i].total = N;
        atomic_init(&c[i].accepted, 0);
        assert_int_equal(pthread_create(&th[i], NULL, complete_some, &c[i]), 0);
    }
    for (i = 0; i < N; i++) {
        assert_pf_ok(pf_agent_start(a, NULL, NULL, &runs[i]));
    }
    for (i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        accepted += atomic_load(&c[i].accepted);
    }
    assert_int_equal(accepted, N);
    for (i = 0; i < N; i++) {
        assert_pf_ok(pf_run_wait(runs[i], NULL, NULL));
        pf_run_free(runs[i]);
        /* Exactly once: a second completion is refused. */
        assert_int_equal(pf_completion_complete(handle(&m, i), 0), PF_ESTATE);
        pf_completion_free(handle(&m, i));
    }
    pf_agent_metrics(a, &am);
    if (am.states_completed != N) {
        print_message("finished %llu failed %llu sfailed %llu\n",
                      (unsigned long long)am.runs_finished,
                      (unsigned long long)am.runs_failed,
                      (unsigned long long)am.states_failed);
    }
    assert_int_equal(am.states_completed, N);
    assert_int_equal(am.runs_failed, 0);
    assert_int_equal(atomic_load(&m.aborts), 0);
    free(runs);
    manual_free(&m);
    pf_agent_free(a);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_async_pending_code_has_a_name),
        cmocka_unit_test_setup_teardown(
            test_async_completion_from_another_thread_completes_the_state,
            fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(
            test_async_completion_before_the_state_returns, fixture_setup,
            fixture_teardown),
        cmocka_unit_test_setup_teardown(test_async_bad_input, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(
            test_async_completing_with_pending_is_refused, fixture_setup,
            fixture_teardown),
        cmocka_unit_test_setup_teardown(
            test_async_returning_a_result_aborts_the_work, fixture_setup,
            fixture_teardown),
        cmocka_unit_test_setup_teardown(
            test_async_timeout_aborts_the_work_and_ends_the_attempt,
            fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(
            test_async_run_deadline_and_cancel_abort_pending_work,
            fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(
            test_async_sleep_completes_when_its_timer_fires, fixture_setup,
            fixture_teardown),
        cmocka_unit_test_setup_teardown(
            test_async_sleep_past_its_timeout_is_aborted_through_the_wait,
            fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(
            test_async_wait_fd_completes_when_readable, fixture_setup,
            fixture_teardown),
        cmocka_unit_test_setup_teardown(
            test_async_bulkhead_of_200_is_reached_with_2_workers, fixture_setup,
            fixture_teardown),
        cmocka_unit_test_setup_teardown(
            test_async_blocking_run_waits_for_pending_states, fixture_setup,
            fixture_teardown),
        cmocka_unit_test_setup_teardown(
            test_async_retries_fallbacks_dead_letters_as_sync, fixture_setup,
            fixture_teardown),
        cmocka_unit_test_setup_teardown(test_async_breaker_and_bulkhead_as_sync,
                                        fixture_setup, fixture_teardown),
        cmocka_unit_test(test_async_completions_race_cancellations),
        cmocka_unit_test(test_async_completions_race_timeouts),
        cmocka_unit_test_setup_teardown(
            test_async_100000_pending_states_complete_exactly_once,
            fixture_setup, fixture_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
