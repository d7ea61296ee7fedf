/* Agents and time, on a manual clock: retry backoff and rate-limit delays
 * are timers (no thread waits), timeouts fail slow attempts and cancel
 * their token, runs can be cancelled (by handle, token or deadline) while
 * states run or wait, bulkhead waits are tickets with a wait limit. No
 * sleeps: the tests move the clock and watch the executor's timers. */
#include <math.h>
#include <sched.h>
#include <string.h>
#include <time.h>

#include "puffinflow/agent.h"

#include "agent_testutil.h"
#include "test.h"

static int64_t
real_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS_PER_SEC + ts.tv_nsec;
}

/* Spin until the executor has exactly n timers armed (30 s safety net,
 * never a timing assertion). */
static void
wait_timers(pf_executor_t *ex, uint64_t n)
{
    int64_t give_up = real_ns() + 30 * NS_PER_SEC;
    pf_executor_metrics_t m;

    for (;;) {
        pf_executor_metrics(ex, &m);
        if (m.timers_armed == n) {
            return;
        }
        if (real_ns() > give_up) {
            fail_msg("gave up waiting for %llu armed timer(s)",
                     (unsigned long long)n);
        }
        sched_yield();
    }
}

/* Spin until every worker sleeps waiting for work. */
static void
wait_idle_workers(pf_executor_t *ex)
{
    int64_t give_up = real_ns() + 30 * NS_PER_SEC;
    pf_executor_metrics_t m;

    for (;;) {
        pf_executor_metrics(ex, &m);
        if (m.idle_workers == m.workers) {
            return;
        }
        if (real_ns() > give_up) {
            fail_msg("gave up waiting for the workers to go idle");
        }
        sched_yield();
    }
}

static void
backoff_exactly(pf_state_opts_t *o, pf_backoff_t *b, unsigned retries,
                double first)
{
    pf_state_opts_init(o);
    o->max_retries = retries;
    pf_backoff_init(b);
    b->initial_delay = first;
    b->multiplier = 2.0;
    b->max_delay = 600.0;
    b->jitter = PF_JITTER_NONE;
    o->backoff = b;
}

/* Adds state "s" to a, running s: its first fail_first attempts fail with -1
 * and it retries up to retries times, first after exactly first seconds. */
static void
add_retrying_state(pf_agent_t *a, spec_t *s, int fail_first, unsigned retries,
                   double first)
{
    pf_backoff_t backoff;
    pf_state_opts_t o;

    s->fail_first = fail_first;
    s->code = -1;
    backoff_exactly(&o, &backoff, retries, first);
    assert_pf_ok(pf_agent_add_state(a, "s", spec_fn, s, &o));
}

/* ---- retries ------------------------------------------------------------- */

static void
test_agent_retry_waits_its_backoff_on_a_timer(void **state)
{
    fixture_t *f = *state;
    pf_agent_t *a = agent_on(f->ex, PF_EXEC_SEQUENTIAL);
    spec_t s = {0};
    pf_run_t *run = NULL;
    pf_run_result_t res;
    pf_state_result_t sr;

    add_retrying_state(a, &s, 2, 3, 1.0); /* waits 1 s, then 2 s */
    assert_pf_ok(pf_agent_start(a, NULL, NULL, &run));
    pf_test_wait_for_flag(&s.calls, 1);
    wait_timers(f->ex, 1);
    wait_idle_workers(f->ex);              /* nothing sleeps on a worker */
    pf_test_wait_for_waiters(f->clock, 1); /* the timer thread */
    pf_clock_manual_advance(f->clock, 999 * NS_PER_MS);
    wait_timers(f->ex, 1); /* not yet due: still armed */
    assert_int_equal(atomic_load(&s.calls), 1);
    pf_clock_manual_advance(f->clock, 1 * NS_PER_MS);
    pf_test_wait_for_flag(&s.calls, 2);
    wait_timers(f->ex, 1); /* the second backoff, 2 s from now */
    pf_clock_manual_advance(f->clock, 1999 * NS_PER_MS);
    wait_timers(f->ex, 1);
    assert_int_equal(atomic_load(&s.calls), 2);
    assert_false(pf_run_done(run));
    pf_clock_manual_advance(f->clock, 1 * NS_PER_MS);
    assert_pf_ok(pf_run_wait(run, NULL, &res));
    assert_int_equal(atomic_load(&s.calls), 3);
    sr = state_result(&res, "s");
    assert_int_equal(sr.outcome, PF_STATE_COMPLETED);
    assert_int_equal(sr.attempts, 3);
    assert_true(sr.duration == 3.0); /* 1 s + 2 s of backoff */
    assert_true(res.duration == 3.0);
    pf_run_result_free(&res);
    pf_run_free(run);
    pf_agent_free(a);
}

/* A listener that, told of a delay, notes when it was told and then moves
 * the manual clock on by part of that delay, as a slow listener would. */
typedef struct mover {
    pf_clock_t *clock;
    int kind;         /* the event kind it reacts to */
    int64_t told_at;  /* the clock when it was told */
    int64_t delay_ns; /* the delay it was told */
    int64_t moves_ns; /* how far it moves the clock */
    atomic_int heard;
} mover_t;

static void
move_clock(const pf_agent_event_t *ev, void *arg)
{
    mover_t *m = arg;

    if ((int)ev->kind != m->kind || atomic_load(&m->heard) != 0) {
        return;
    }
    m->told_at = pf_clock_now_ns(m->clock);
    m->delay_ns = (int64_t)llround(ev->delay * (double)NS_PER_SEC);
    pf_clock_manual_advance(m->clock, m->moves_ns);
    atomic_store(&m->heard, 1);
}

/* Timings off and no timeout: the attempt takes no clock reading, so the
 * due time is read for the delay itself, before the listener runs. */
static pf_agent_t *
untimed_agent_on(pf_executor_t *ex, mover_t *m)
{
    pf_agent_config_t cfg;
    pf_agent_t *a = NULL;

    pf_agent_config_init(&cfg);
    cfg.name = "untimed";
    cfg.executor = ex;
    cfg.mode = PF_EXEC_SEQUENTIAL;
    cfg.timings = false;
    cfg.listener = move_clock;
    cfg.listener_arg = m;
    assert_pf_ok(pf_agent_new_ex(&cfg, &a));
    return a;
}

static void
test_agent_retry_fires_at_the_announced_time_when_the_listener_is_slow(
    void **state)
{
    fixture_t *f = *state;
    mover_t m = {.clock = f->clock,
                 .kind = PF_AGENT_EVENT_RETRY,
                 .moves_ns = 400 * NS_PER_MS};
    pf_agent_t *a = untimed_agent_on(f->ex, &m);
    spec_t s = {0};
    pf_run_t *run = NULL;

    add_retrying_state(a, &s, 1, 1, 1.0);
    assert_pf_ok(pf_agent_start(a, NULL, NULL, &run));
    pf_test_wait_for_flag(&m.heard, 1);
    assert_int_equal(m.delay_ns, 1 * NS_PER_SEC);
    wait_timers(f->ex, 1);
    pf_test_wait_for_waiters(f->clock, 1); /* the timer thread */
    /* 1 ns short of the announced time: not yet. */
    pf_clock_manual_advance(f->clock, m.told_at + m.delay_ns - 1 -
                                          pf_clock_now_ns(f->clock));
    wait_timers(f->ex, 1);
    assert_int_equal(atomic_load(&s.calls), 1);
    /* At the announced time, not 400 ms (the listener's time) later. */
    pf_clock_manual_advance(f->clock, 1);
    pf_test_wait_for_flag(&s.calls, 2);
    assert_pf_ok(pf_run_wait(run, NULL, NULL));
    pf_run_free(run);
    pf_agent_free(a);
}

/* A state whose attempts fail, asking for the delays in after[] before
 * their retries (a server's Retry-After); the last attempt succeeds. */
typedef struct asker {
    double after[3];
    int bad_input; /* what pf_ctx_retry_after said to bad seconds */
    atomic_int calls;
} asker_t;

static int
ask_fn(pf_ctx_t *ctx, void *arg)
{
    asker_t *k = arg;
    int n = atomic_fetch_add(&k->calls, 1);

    if (pf_ctx_retry_after(ctx, -1.0) == PF_EINVAL &&
        pf_ctx_retry_after(ctx, NAN) == PF_EINVAL &&
        pf_ctx_retry_after(NULL, 1.0) == PF_EINVAL) {
        k->bad_input = PF_EINVAL;
    }
    if (n >= 2) {
        return 0;
    }
    if (k->after[n] >= 0.0) {
        assert_pf_ok(pf_ctx_retry_after(ctx, 99.0)); /* replaced below */
        assert_pf_ok(pf_ctx_retry_after(ctx, k->after[n]));
    }
    return -1;
}

static void
test_agent_retry_after_replaces_the_backoff_capped_at_max_delay(void **state)
{
    fixture_t *f = *state;
    pf_agent_t *a = agent_on(f->ex, PF_EXEC_SEQUENTIAL);
    asker_t k = {.after = {3.0, 1000.0, -1.0}};
    pf_backoff_t b;
    pf_state_opts_t o;
    pf_run_t *run = NULL;
    pf_run_result_t res;
    pf_state_result_t sr;
    pf_ctx_t *plain = NULL;

    backoff_exactly(&o, &b, 3, 1.0);
    b.max_delay = 10.0;
    assert_pf_ok(pf_agent_add_state(a, "s", ask_fn, &k, &o));
    assert_pf_ok(pf_agent_start(a, NULL, NULL, &run));
    pf_test_wait_for_flag(&k.calls, 1);
    wait_timers(f->ex, 1);
    pf_test_wait_for_waiters(f->clock, 1);
    /* Retry-After 3 s, not the backoff's 1 s. */
    pf_clock_manual_advance(f->clock, 3 * NS_PER_SEC - 1);
    wait_timers(f->ex, 1);
    assert_int_equal(atomic_load(&k.calls), 1);
    pf_clock_manual_advance(f->clock, 1);
    pf_test_wait_for_flag(&k.calls, 2);
    wait_timers(f->ex, 1);
    /* 1,000 s asked for: capped at the backoff's max_delay, 10 s. */
    pf_clock_manual_advance(f->clock, 10 * NS_PER_SEC - 1);
    wait_timers(f->ex, 1);
    assert_int_equal(atomic_load(&k.calls), 2);
    pf_clock_manual_advance(f->clock, 1);
    assert_pf_ok(pf_run_wait(run, NULL, &res));
    assert_int_equal(atomic_load(&k.calls), 3);
    assert_int_equal(k.bad_input, PF_EINVAL);
    sr = state_result(&res, "s");
    assert_int_equal(sr.attempts, 3);
    assert_true(res.duration == 13.0);
    pf_run_result_free(&res);
    pf_run_free(run);
    pf_agent_free(a);
    /* Outside a state: refused. */
    assert_pf_ok(pf_ctx_new(&plain));
    assert_int_equal(pf_ctx_retry_after(plain, 1.0), PF_EINVAL);
    pf_ctx_free(plain);
}

/* ---- timeouts ------------------------------------------------------------ */

typedef struct slow {
    pf_clock_t *clock;
    int64_t takes_ns;
    pf_deadline_t seen;
} slow_t;

static int
slow_fn(pf_ctx_t *ctx, void *arg)
{
    slow_t *s = arg;

    s->seen = pf_ctx_deadline(ctx);
    pf_clock_manual_advance(s->clock, s->takes_ns); /* the work takes time */
    return 0;
}

static void
test_agent_timeout_fails_an_attempt_that_returns_late(void **state)
{
    fixture_t *f = *state;
    pf_agent_t *a = agent_on(f->ex, PF_EXEC_SEQUENTIAL);
    slow_t slow = {f->clock, 6 * NS_PER_SEC, {0}};
    pf_state_opts_t o;
    pf_run_result_t res;
    pf_state_result_t sr;
    pf_dead_letter_t dl;
    int64_t t0 = pf_clock_now_ns(f->clock);

    pf_state_opts_init(&o);
    o.timeout = 5.0;
    o.max_retries = 0;
    assert_pf_ok(pf_agent_add_state(a, "slow", slow_fn, &slow, &o));
    assert_pf_err(pf_agent_run(a, NULL, &res), PF_ETIMEDOUT);
    assert_int_equal(slow.seen.priv_at_ns, t0 + 5 * NS_PER_SEC);
    sr = state_result(&res, "slow");
    assert_int_equal(sr.outcome, PF_STATE_FAILED);
    assert_int_equal(sr.error, PF_ETIMEDOUT);
    assert_true(sr.timed_out);
    assert_pf_ok(pf_run_result_dead_letter(&res, 0, &dl));
    assert_true(dl.timed_out);
    pf_run_result_free(&res);
    /* In time: fine. */
    slow.takes_ns = 4 * NS_PER_SEC;
    assert_pf_ok(pf_agent_run(a, NULL, &res));
    assert_false(state_result(&res, "slow").timed_out);
    pf_run_result_free(&res);
    pf_agent_free(a);
}

typedef struct waiter {
    atomic_int waiting;
    int wait_rc;
    bool cancelled_after;
    bool polled_cancelled;
    int result;
} waiter_t;

static int
wait_on_token(pf_ctx_t *ctx, void *arg)
{
    waiter_t *w = arg;
    pf_token_t *tok = pf_ctx_token(ctx);
    int64_t give_up = real_ns() + 30 * NS_PER_SEC;

    assert_non_null(tok);
    assert_ptr_equal(pf_ctx_token(ctx), tok); /* made once */
    atomic_store(&w->waiting, 1);
    w->wait_rc = pf_token_wait(tok, NULL);
    /* The timer raises the flag at the deadline, maybe a moment after the
     * wait itself ended there. */
    while (!pf_token_is_cancelled(tok) && real_ns() < give_up) {
        sched_yield();
    }
    w->cancelled_after = pf_token_is_cancelled(tok);
    w->polled_cancelled = pf_ctx_is_cancelled(ctx);
    return w->result;
}

static void
test_agent_timeout_cancels_the_attempts_token_at_the_deadline(void **state)
{
    fixture_t *f = *state;
    pf_agent_t *a = agent_on(f->ex, PF_EXEC_SEQUENTIAL);
    waiter_t w = {0};
    pf_state_opts_t o;
    pf_run_t *run = NULL;
    pf_run_result_t res;

    pf_state_opts_init(&o);
    o.timeout = 5.0;
    o.max_retries = 0;
    assert_pf_ok(pf_agent_add_state(a, "bounded", wait_on_token, &w, &o));
    assert_pf_ok(pf_agent_start(a, NULL, NULL, &run));
    pf_test_wait_for_flag(&w.waiting, 1);
    wait_timers(f->ex, 1);                 /* the token's timer */
    pf_test_wait_for_waiters(f->clock, 2); /* the state and the timer */
    pf_clock_manual_advance(f->clock, 5 * NS_PER_SEC);
    assert_pf_err(pf_run_wait(run, NULL, &res), PF_ETIMEDOUT);
    assert_true(w.wait_rc == PF_ECANCELED || w.wait_rc == PF_ETIMEDOUT);
    assert_true(w.cancelled_after);
    assert_true(w.polled_cancelled);
    assert_true(state_result(&res, "bounded").timed_out);
    pf_run_result_free(&res);
    pf_run_free(run);
    wait_timers(f->ex, 0);
    pf_agent_free(a);
}

/* Holds the executor's timer thread: a callback on a state's token, run
 * by the timer that cancels it, that waits until released. While it waits
 * no timer fires, so what follows cannot lean on one. */
typedef struct stall {
    holder_t h;
    atomic_int waiting;
} stall_t;

static void
stall_callback(void *arg)
{
    hold(NULL, arg);
}

static int
stall_fn(pf_ctx_t *ctx, void *arg)
{
    stall_t *st = arg;
    pf_token_t *tok = pf_ctx_token(ctx);
    pf_token_reg_t reg;

    assert_non_null(tok);
    assert_pf_ok(pf_token_on_cancel(tok, &reg, stall_callback, &st->h));
    atomic_store(&st->waiting, 1);
    pf_token_wait(tok, NULL); /* ends at the deadline */
    /* Keep the callback registered until the timer has started it (the
     * unregister then waits for it to return). */
    pf_test_wait_for_flag(&st->h.inside, 1);
    pf_token_unregister(&reg);
    return 0;
}

/* What a state saw of its token after moving the clock past its deadline:
 * asked for late (late = true) or asked for before. */
typedef struct past_deadline {
    pf_clock_t *clock;
    bool late;
    bool tok_cancelled;
    bool child_cancelled;
    bool ctx_cancelled;
    int wait_rc;
    int on_cancel_rc;
} past_deadline_t;

static int
past_deadline_fn(pf_ctx_t *ctx, void *arg)
{
    past_deadline_t *l = arg;
    pf_token_t *tok = l->late ? NULL : pf_ctx_token(ctx);
    pf_token_t *child = NULL;
    pf_token_reg_t reg;

    if (tok != NULL) {
        assert_pf_ok(pf_token_new(tok, NULL, &child));
        assert_false(pf_token_is_cancelled(tok));
    }
    pf_clock_manual_advance(l->clock, 6 * NS_PER_SEC); /* past 5 s */
    if (tok == NULL) {
        tok = pf_ctx_token(ctx);
        assert_non_null(tok);
    }
    l->tok_cancelled = pf_token_is_cancelled(tok);
    l->child_cancelled = child == NULL || pf_token_is_cancelled(child);
    l->ctx_cancelled = pf_ctx_is_cancelled(ctx);
    l->wait_rc = pf_token_wait(tok, NULL);
    l->on_cancel_rc = pf_token_on_cancel(tok, &reg, stall_callback, NULL);
    if (l->on_cancel_rc == 0) {
        pf_token_unregister(&reg);
    }
    pf_token_free(child);
    return 0;
}

/* Run a one-state agent whose state, with a 5 s timeout (or, run_timeout,
 * in a run with a 5 s deadline), moves the clock 6 s and looks at its
 * token. */
static void
run_past_deadline(fixture_t *f, past_deadline_t *l, bool run_timeout)
{
    pf_agent_t *a = agent_on(f->ex, PF_EXEC_SEQUENTIAL);
    pf_state_opts_t o;
    pf_run_opts_t ro;

    pf_state_opts_init(&o);
    o.max_retries = 0;
    o.timeout = run_timeout ? 0.0 : 5.0;
    assert_pf_ok(pf_agent_add_state(a, "state", past_deadline_fn, l, &o));
    pf_run_opts_init(&ro);
    ro.timeout = run_timeout ? 5.0 : 0.0;
    assert_pf_err(pf_agent_run_ex(a, NULL, &ro, NULL), PF_ETIMEDOUT);
    pf_agent_free(a);
}

static void
test_agent_token_is_cancelled_from_the_deadline_on_timer_or_not(void **state)
{
    fixture_t *f = *state;
    pf_agent_t *stalled = agent_on(f->ex, PF_EXEC_SEQUENTIAL);
    stall_t st = {0};
    pf_state_opts_t o;
    pf_run_t *run = NULL;
    past_deadline_t cases[3];
    size_t i;

    pf_state_opts_init(&o);
    o.timeout = 1.0;
    o.max_retries = 0;
    assert_pf_ok(pf_agent_add_state(stalled, "stall", stall_fn, &st, &o));
    assert_pf_ok(pf_agent_start(stalled, NULL, NULL, &run));
    pf_test_wait_for_flag(&st.waiting, 1);
    wait_timers(f->ex, 1);
    pf_test_wait_for_waiters(f->clock, 2); /* "stall" and the timer */
    pf_clock_manual_advance(f->clock, 1 * NS_PER_SEC);
    pf_test_wait_for_flag(&st.h.inside, 1); /* the timer thread is held */

    memset(cases, 0, sizeof(cases));
    for (i = 0; i < 3; i++) {
        cases[i].clock = f->clock;
        cases[i].late = i != 1;
        run_past_deadline(f, &cases[i], i == 2);
    }
    atomic_store(&st.h.release, 1);
    assert_pf_err(pf_run_wait(run, NULL, NULL), PF_ETIMEDOUT);
    pf_run_free(run);
    pf_agent_free(stalled);
    wait_timers(f->ex, 0);
    /* 0: the state's timeout, token asked for late; 1: asked for before
     * the deadline, read after it, as a child made below it; 2: the run's
     * deadline, asked for late. No timer fired for any of them. */
    for (i = 0; i < 3; i++) {
        assert_true(cases[i].tok_cancelled);
        assert_true(cases[i].child_cancelled);
        assert_true(cases[i].ctx_cancelled);
        assert_int_equal(cases[i].wait_rc, PF_ECANCELED);
        assert_int_equal(cases[i].on_cancel_rc, PF_ECANCELED);
    }
}

static int
fallback_with_token(pf_ctx_t *ctx, void *arg, int reason)
{
    pf_deadline_t d = pf_ctx_deadline(ctx);

    (void)arg;
    assert_int_equal(reason, PF_ETIMEDOUT);
    assert_true(pf_deadline_is_none(&d)); /* the timeout was the state's */
    assert_non_null(pf_ctx_token(ctx));
    return 0;
}

static void
test_agent_fallback_after_a_timeout_runs_without_the_states_deadline(
    void **state)
{
    fixture_t *f = *state;
    pf_agent_t *a = agent_on(f->ex, PF_EXEC_SEQUENTIAL);
    slow_t slow = {f->clock, 6 * NS_PER_SEC, {0}};
    pf_state_opts_t o;
    pf_run_result_t res;
    pf_state_result_t sr;

    pf_state_opts_init(&o);
    o.timeout = 5.0;
    o.max_retries = 0;
    o.fallback = fallback_with_token;
    o.fallback_on_failure = true;
    assert_pf_ok(pf_agent_add_state(a, "slow", slow_fn, &slow, &o));
    assert_pf_ok(pf_agent_run(a, NULL, &res));
    sr = state_result(&res, "slow");
    assert_int_equal(sr.outcome, PF_STATE_COMPLETED);
    assert_true(sr.fell_back);
    assert_int_equal(sr.error, PF_ETIMEDOUT);
    pf_run_result_free(&res);
    wait_timers(f->ex, 0);
    pf_agent_free(a);
}

/* ---- the breaker's call timeout ------------------------------------------ */

/* Its first slow_attempts attempts take 45 s and succeed; the rest are
 * instant. The breaker's fallback shares the arg. */
typedef struct late {
    pf_clock_t *clock;
    int slow_attempts;
    atomic_int calls;
    atomic_int fallbacks;
    int reason;
} late_t;

static int
late_fn(pf_ctx_t *ctx, void *arg)
{
    late_t *l = arg;

    (void)ctx;
    if (atomic_fetch_add(&l->calls, 1) < l->slow_attempts) {
        pf_clock_manual_advance(l->clock, 45 * NS_PER_SEC);
    }
    return 0;
}

static int
late_fallback(void *arg, int reason)
{
    late_t *l = arg;

    atomic_fetch_add(&l->fallbacks, 1);
    l->reason = reason;
    return 0;
}

/* A state with its own breaker whose call timeout is 30 s. */
static pf_agent_t *
late_agent(pf_executor_t *ex, late_t *l, unsigned retries, bool fallback)
{
    pf_breaker_config_t breaker_cfg;
    pf_agent_t *a = agent_on(ex, PF_EXEC_SEQUENTIAL);
    pf_state_opts_t o;

    quick_retries(&o, retries);
    o.own_breaker = true;
    pf_breaker_config_init(&breaker_cfg);
    breaker_cfg.timeout = 30.0;
    breaker_cfg.fallback = fallback ? late_fallback : NULL;
    o.breaker_config = &breaker_cfg;
    assert_pf_ok(pf_agent_add_state(a, "fetch", late_fn, l, &o));
    return a;
}

static void
test_agent_breaker_timeout_fails_a_slow_attempt_that_returned_success(
    void **state)
{
    fixture_t *f = *state;
    late_t l = {f->clock, 1, 0, 0, 0};
    pf_agent_t *a = late_agent(f->ex, &l, 0, false);
    pf_run_result_t res;
    pf_state_result_t sr;
    pf_dead_letter_t dl;
    pf_breaker_metrics_t bm;
    pf_agent_metrics_t am;

    assert_pf_err(pf_agent_run(a, NULL, &res), PF_ETIMEDOUT);
    sr = state_result(&res, "fetch");
    assert_int_equal(sr.outcome, PF_STATE_FAILED);
    assert_int_equal(sr.error, PF_ETIMEDOUT);
    assert_true(sr.timed_out);
    assert_int_equal(sr.attempts, 1);
    assert_pf_ok(pf_run_result_dead_letter(&res, 0, &dl));
    assert_int_equal(dl.error, PF_ETIMEDOUT);
    assert_true(dl.timed_out);
    pf_run_result_free(&res);
    /* The state and its breaker agree: one timed-out failure. */
    pf_breaker_metrics(pf_agent_state_breaker(a, "fetch"), &bm);
    assert_int_equal(bm.failures, 1);
    assert_int_equal(bm.timeouts, 1);
    assert_int_equal(bm.successes, 0);
    pf_agent_metrics(a, &am);
    assert_int_equal(am.timeouts, 1);
    assert_int_equal(am.states_failed, 1);
    pf_agent_free(a);
}

static void
test_agent_breaker_timeout_is_retried_as_any_timeout(void **state)
{
    fixture_t *f = *state;
    late_t l = {f->clock, 1, 0, 0, 0};
    pf_agent_t *a = late_agent(f->ex, &l, 2, false);
    pf_run_result_t res;
    pf_state_result_t sr;
    pf_breaker_metrics_t bm;

    assert_pf_ok(pf_agent_run(a, NULL, &res));
    sr = state_result(&res, "fetch");
    assert_int_equal(sr.outcome, PF_STATE_COMPLETED);
    assert_int_equal(sr.attempts, 2); /* the slow one, then a quick one */
    assert_false(sr.timed_out);
    assert_int_equal(atomic_load(&l.calls), 2);
    pf_run_result_free(&res);
    pf_breaker_metrics(pf_agent_state_breaker(a, "fetch"), &bm);
    assert_int_equal(bm.timeouts, 1);
    assert_int_equal(bm.successes, 1);
    pf_agent_free(a);
}

static void
test_agent_breaker_fallback_answers_a_breaker_timeout(void **state)
{
    fixture_t *f = *state;
    late_t l = {f->clock, 1, 0, 0, 0};
    pf_agent_t *a = late_agent(f->ex, &l, 2, true);
    pf_run_result_t res;
    pf_state_result_t sr;

    assert_pf_ok(pf_agent_run(a, NULL, &res));
    sr = state_result(&res, "fetch");
    assert_int_equal(sr.outcome, PF_STATE_COMPLETED);
    assert_true(sr.fell_back);
    assert_int_equal(sr.error, PF_ETIMEDOUT);
    assert_true(sr.timed_out);
    assert_int_equal(sr.attempts, 1); /* answered: not retried */
    assert_int_equal(atomic_load(&l.fallbacks), 1);
    assert_int_equal(l.reason, PF_ETIMEDOUT);
    pf_run_result_free(&res);
    pf_agent_free(a);
}

/* ---- cancellation -------------------------------------------------------- */

static void
test_agent_cancel_ends_a_run_waiting_for_a_retry(void **state)
{
    fixture_t *f = *state;
    pf_agent_t *a = agent_on(f->ex, PF_EXEC_SEQUENTIAL);
    const char *deps[] = {"s"};
    spec_t s = {0};
    spec_t after = {0};
    pf_state_opts_t o;
    pf_run_t *run = NULL;
    pf_run_result_t res;
    pf_state_result_t sr;

    add_retrying_state(a, &s, 100, 3, 60.0);
    pf_state_opts_init(&o);
    o.depends_on = deps;
    o.depends_on_len = 1;
    assert_pf_ok(pf_agent_add_state(a, "after", spec_fn, &after, &o));
    assert_pf_ok(pf_agent_start(a, NULL, NULL, &run));
    pf_test_wait_for_flag(&s.calls, 1);
    wait_timers(f->ex, 1);
    pf_run_cancel(run);
    assert_pf_err(pf_run_wait(run, NULL, &res), PF_ECANCELED);
    wait_timers(f->ex, 0); /* the backoff timer was withdrawn */
    sr = state_result(&res, "s");
    assert_int_equal(sr.outcome, PF_STATE_CANCELLED);
    assert_int_equal(sr.error, PF_ECANCELED);
    assert_int_equal(sr.attempts, 1);
    assert_false(sr.dead_letter);
    /* Never started, stopped by the cancellation: cancelled too. */
    sr = state_result(&res, "after");
    assert_int_equal(sr.outcome, PF_STATE_CANCELLED);
    assert_int_equal(sr.error, PF_ECANCELED);
    assert_int_equal(sr.attempts, 0);
    assert_int_equal(res.cancelled, 2);
    assert_int_equal(res.skipped, 0);
    assert_int_equal(atomic_load(&s.calls), 1);
    pf_run_cancel(run); /* ended: no-op */
    pf_run_result_free(&res);
    pf_run_free(run);
    pf_agent_free(a);
}

static void
test_agent_cancel_reaches_a_running_state_through_its_token(void **state)
{
    fixture_t *f = *state;
    pf_agent_t *a = agent_on(f->ex, PF_EXEC_SEQUENTIAL);
    waiter_t w = {0};
    spec_t next = {0};
    pf_state_opts_t o;
    pf_run_t *run = NULL;
    pf_run_result_t res;

    pf_state_opts_init(&o);
    assert_pf_ok(pf_agent_add_state(a, "long", wait_on_token, &w, &o));
    assert_pf_ok(pf_agent_add_state(a, "next", spec_fn, &next, NULL));
    assert_pf_ok(pf_agent_start(a, NULL, NULL, &run));
    pf_test_wait_for_flag(&w.waiting, 1);
    pf_run_cancel(run);
    assert_pf_err(pf_run_wait(run, NULL, &res), PF_ECANCELED);
    assert_int_equal(w.wait_rc, PF_ECANCELED);
    assert_true(w.polled_cancelled);
    assert_int_equal(atomic_load(&next.calls), 0);
    pf_run_result_free(&res);
    pf_run_free(run);
    pf_agent_free(a);
}

static void
test_agent_run_deadline_cancels_what_is_left(void **state)
{
    fixture_t *f = *state;
    pf_agent_t *a = agent_on(f->ex, PF_EXEC_SEQUENTIAL);
    spec_t s = {0};
    pf_run_opts_t ro;
    pf_run_t *run = NULL;
    pf_run_result_t res;
    pf_state_result_t sr;

    add_retrying_state(a, &s, 100, 3, 60.0);
    pf_run_opts_init(&ro);
    ro.timeout = 10.0;
    assert_pf_ok(pf_agent_start(a, NULL, &ro, &run));
    pf_test_wait_for_flag(&s.calls, 1);
    wait_timers(f->ex, 2); /* the run's deadline and the backoff */
    pf_clock_manual_advance(f->clock, 10 * NS_PER_SEC);
    assert_pf_err(pf_run_wait(run, NULL, &res), PF_ETIMEDOUT);
    sr = state_result(&res, "s");
    assert_int_equal(sr.outcome, PF_STATE_CANCELLED);
    assert_int_equal(sr.error, PF_ETIMEDOUT);
    wait_timers(f->ex, 0);
    pf_run_result_free(&res);
    pf_run_free(run);
    pf_agent_free(a);
}

/* A fails at once (a dependent of it could never run); b waits on its
 * token until the run's deadline; c and d follow b, e follows a. */
static void
test_agent_run_deadline_cancels_dependents_never_started(void **state)
{
    fixture_t *f = *state;
    pf_agent_t *a = agent_on(f->ex, PF_EXEC_PARALLEL);
    const char *on_a[] = {"a"};
    const char *on_b[] = {"b"};
    const char *on_c[] = {"c"};
    spec_t fails = {0};
    spec_t later[3];
    waiter_t w = {0};
    pf_state_opts_t o;
    pf_run_opts_t ro;
    pf_run_t *run = NULL;
    pf_run_result_t res;
    pf_state_result_t sr;

    memset(later, 0, sizeof(later));
    fails.fail_first = 1;
    fails.code = -7;
    pf_state_opts_init(&o);
    o.max_retries = 0;
    assert_pf_ok(pf_agent_add_state(a, "a", spec_fn, &fails, &o));
    assert_pf_ok(pf_agent_add_state(a, "b", wait_on_token, &w, NULL));
    pf_state_opts_init(&o);
    o.depends_on = on_b;
    o.depends_on_len = 1;
    assert_pf_ok(pf_agent_add_state(a, "c", spec_fn, &later[0], &o));
    o.depends_on = on_c;
    assert_pf_ok(pf_agent_add_state(a, "d", spec_fn, &later[1], &o));
    o.depends_on = on_a;
    assert_pf_ok(pf_agent_add_state(a, "e", spec_fn, &later[2], &o));
    pf_run_opts_init(&ro);
    ro.timeout = 10.0;
    assert_pf_ok(pf_agent_start(a, NULL, &ro, &run));
    pf_test_wait_for_flag(&w.waiting, 1);
    pf_test_wait_for_flag(&fails.calls, 1);
    wait_timers(f->ex, 1);                 /* the run's deadline */
    pf_test_wait_for_waiters(f->clock, 2); /* "b" and the timer */
    pf_clock_manual_advance(f->clock, 10 * NS_PER_SEC);
    assert_pf_err(pf_run_wait(run, NULL, &res), PF_ETIMEDOUT);
    assert_int_equal(state_result(&res, "a").outcome, PF_STATE_FAILED);
    assert_int_equal(state_result(&res, "b").outcome, PF_STATE_CANCELLED);
    /* Never started, stopped by the deadline, as pf_run_cancel stops them. */
    sr = state_result(&res, "c");
    assert_int_equal(sr.outcome, PF_STATE_CANCELLED);
    assert_int_equal(sr.error, PF_ETIMEDOUT);
    assert_int_equal(sr.attempts, 0);
    assert_int_equal(sr.order, 0);
    assert_int_equal(state_result(&res, "d").outcome, PF_STATE_CANCELLED);
    /* Its dependency had failed for good: it could never have run. */
    assert_int_equal(state_result(&res, "e").outcome, PF_STATE_SKIPPED);
    assert_int_equal(res.failed, 1);
    assert_int_equal(res.cancelled, 3);
    assert_int_equal(res.skipped, 1);
    assert_int_equal(res.not_run, 0);
    assert_int_equal(atomic_load(&later[0].calls), 0);
    assert_int_equal(atomic_load(&later[1].calls), 0);
    assert_int_equal(atomic_load(&later[2].calls), 0);
    pf_run_result_free(&res);
    pf_run_free(run);
    wait_timers(f->ex, 0);
    pf_agent_free(a);
}

static void
test_agent_run_token_cancels_the_run(void **state)
{
    fixture_t *f = *state;
    pf_agent_t *a = agent_on(f->ex, PF_EXEC_SEQUENTIAL);
    spec_t s = {0};
    pf_run_opts_t ro;
    pf_token_t *tok = NULL;
    pf_run_t *run = NULL;
    pf_run_result_t res;

    add_retrying_state(a, &s, 100, 3, 60.0);
    assert_pf_ok(pf_token_new(NULL, NULL, &tok));
    pf_run_opts_init(&ro);
    ro.token = tok;
    assert_pf_ok(pf_agent_start(a, NULL, &ro, &run));
    pf_test_wait_for_flag(&s.calls, 1);
    wait_timers(f->ex, 1);
    pf_token_cancel(tok);
    assert_pf_err(pf_run_wait(run, NULL, NULL), PF_ECANCELED);
    pf_run_free(run);
    /* A token cancelled already: nothing runs. */
    atomic_store(&s.calls, 0);
    assert_pf_err(pf_agent_run_ex(a, NULL, &ro, &res), PF_ECANCELED);
    assert_int_equal(atomic_load(&s.calls), 0);
    assert_int_equal(state_result(&res, "s").outcome, PF_STATE_CANCELLED);
    pf_run_result_free(&res);
    pf_token_free(tok);
    pf_agent_free(a);
}

typedef struct waiting_caller {
    pf_run_t *run;
    pf_deadline_t d;
    atomic_int rc;
    atomic_int returned;
} waiting_caller_t;

static void *
wait_thread(void *arg)
{
    waiting_caller_t *w = arg;

    atomic_store(&w->rc, pf_run_wait(w->run, &w->d, NULL));
    atomic_store(&w->returned, 1);
    return NULL;
}

static void
test_agent_run_wait_times_out_and_the_run_goes_on(void **state)
{
    fixture_t *f = *state;
    pf_agent_t *a = agent_on(f->ex, PF_EXEC_SEQUENTIAL);
    spec_t s = {0};
    waiting_caller_t w = {0};
    pthread_t tid;

    add_retrying_state(a, &s, 1, 3, 10.0);
    assert_pf_ok(pf_agent_start(a, NULL, NULL, &w.run));
    pf_test_wait_for_flag(&s.calls, 1);
    wait_timers(f->ex, 1);
    w.d = pf_deadline_in(f->clock, 5.0);
    assert_int_equal(pthread_create(&tid, NULL, wait_thread, &w), 0);
    pf_test_wait_for_waiters(f->clock, 2); /* the waiter and the timer */
    pf_clock_manual_advance(f->clock, 5 * NS_PER_SEC);
    pthread_join(tid, NULL);
    assert_int_equal(atomic_load(&w.rc), PF_ETIMEDOUT);
    assert_false(pf_run_done(w.run));
    pf_clock_manual_advance(f->clock, 5 * NS_PER_SEC);
    assert_pf_ok(pf_run_wait(w.run, NULL, NULL));
    assert_int_equal(atomic_load(&s.calls), 2);
    pf_run_free(w.run);
    pf_agent_free(a);
}

/* The waiter sleeps on the clock (fixed), or it took a state and runs it
 * (the old behaviour); spin until one of the two shows, 30 s safety net. */
static bool
waiter_took_a_state(const pf_clock_t *clock, const atomic_int *inside)
{
    int64_t give_up = real_ns() + 30 * NS_PER_SEC;

    for (;;) {
        if (atomic_load(inside) != 0) {
            return true;
        }
        if (pf_clock_manual_waiters(clock) >= 1) {
            return false;
        }
        if (real_ns() > give_up) {
            fail_msg("gave up waiting for the waiter to wait or run");
        }
        sched_yield();
    }
}

static void
test_agent_run_wait_with_a_deadline_returns_by_it_while_states_run(void **state)
{
    fixture_t *f = *state;
    pf_executor_t *ex = executor_on(f->clock, 1);
    pf_agent_t *a = agent_on(ex, PF_EXEC_PARALLEL);
    holder_t first = {0};
    holder_t second = {0};
    waiting_caller_t w = {0};
    pthread_t tid;
    bool took;
    int rc;
    bool done;

    assert_pf_ok(pf_agent_add_state(a, "first", hold, &first, NULL));
    assert_pf_ok(pf_agent_add_state(a, "second", hold, &second, NULL));
    assert_pf_ok(pf_agent_start(a, NULL, NULL, &w.run));
    /* The only worker runs "first" until released; "second" is queued. */
    pf_test_wait_for_flag(&first.inside, 1);
    w.d = pf_deadline_in(f->clock, 0.2);
    assert_int_equal(pthread_create(&tid, NULL, wait_thread, &w), 0);
    took = waiter_took_a_state(f->clock, &second.inside);
    if (!took) {
        pf_clock_manual_advance(f->clock, 300 * NS_PER_MS);
        pthread_join(tid, NULL);
    }
    rc = atomic_load(&w.rc);
    done = pf_run_done(w.run);
    /* Let everything end before judging, so a failure leaves no thread. */
    atomic_store(&first.release, 1);
    atomic_store(&second.release, 1);
    if (took) {
        pthread_join(tid, NULL);
    }
    assert_false(took); /* the waiter never runs a state */
    assert_int_equal(rc, PF_ETIMEDOUT);
    assert_false(done); /* returned while "first" still ran */
    assert_pf_ok(pf_run_wait(w.run, NULL, NULL));
    assert_int_equal(atomic_load(&second.inside), 1); /* run by the worker */
    pf_run_free(w.run);
    pf_agent_free(a);
    pf_executor_free(ex);
}

/* ---- rate limit ---------------------------------------------------------- */

static void
test_agent_rate_limit_delay_is_a_timer(void **state)
{
    fixture_t *f = *state;
    pf_agent_t *a = agent_on(f->ex, PF_EXEC_SEQUENTIAL);
    pf_ratelimit_config_t rc;
    pf_ratelimit_t *rl = NULL;
    spec_t s[2];
    pf_state_opts_t o;
    pf_run_t *run = NULL;
    pf_run_result_t res;

    memset(s, 0, sizeof(s));
    pf_ratelimit_config_init(&rc);
    rc.rate = 1.0;
    rc.burst = 1;
    rc.clock = f->clock;
    assert_pf_ok(pf_ratelimit_new(&rc, &rl));
    pf_state_opts_init(&o);
    o.ratelimit = rl;
    s[0].go[0] = "second";
    assert_pf_ok(pf_agent_add_state(a, "first", spec_fn, &s[0], &o));
    assert_pf_ok(pf_agent_add_state(a, "second", spec_fn, &s[1], &o));
    assert_pf_ok(pf_agent_start(a, NULL, NULL, &run));
    pf_test_wait_for_flag(&s[0].calls, 1);
    wait_timers(f->ex, 1); /* the second waits for its permit */
    assert_int_equal(atomic_load(&s[1].calls), 0);
    pf_clock_manual_advance(f->clock, 1 * NS_PER_SEC);
    assert_pf_ok(pf_run_wait(run, NULL, &res));
    assert_int_equal(atomic_load(&s[1].calls), 1);
    assert_int_equal(state_result(&res, "second").start_ns, 1 * NS_PER_SEC);
    pf_run_result_free(&res);
    pf_run_free(run);
    pf_agent_free(a);
    pf_ratelimit_free(rl);
}

static void
test_agent_rate_limit_wait_ends_at_the_announced_time_when_the_listener_is_slow(
    void **state)
{
    fixture_t *f = *state;
    mover_t m = {.clock = f->clock,
                 .kind = PF_AGENT_EVENT_REJECTED,
                 .moves_ns = 400 * NS_PER_MS};
    pf_agent_t *a = untimed_agent_on(f->ex, &m);
    pf_ratelimit_config_t rc;
    pf_ratelimit_t *rl = NULL;
    spec_t s[2];
    pf_state_opts_t o;
    pf_run_t *run = NULL;

    memset(s, 0, sizeof(s));
    pf_ratelimit_config_init(&rc);
    rc.rate = 1.0;
    rc.burst = 1;
    rc.clock = f->clock;
    assert_pf_ok(pf_ratelimit_new(&rc, &rl));
    pf_state_opts_init(&o);
    o.ratelimit = rl;
    s[0].go[0] = "second";
    assert_pf_ok(pf_agent_add_state(a, "first", spec_fn, &s[0], &o));
    assert_pf_ok(pf_agent_add_state(a, "second", spec_fn, &s[1], &o));
    assert_pf_ok(pf_agent_start(a, NULL, NULL, &run));
    pf_test_wait_for_flag(&m.heard, 1);
    assert_int_equal(m.delay_ns, 1 * NS_PER_SEC);
    wait_timers(f->ex, 1);
    pf_test_wait_for_waiters(f->clock, 1); /* the timer thread */
    pf_clock_manual_advance(f->clock, m.told_at + m.delay_ns - 1 -
                                          pf_clock_now_ns(f->clock));
    wait_timers(f->ex, 1);
    assert_int_equal(atomic_load(&s[1].calls), 0);
    pf_clock_manual_advance(f->clock, 1);
    pf_test_wait_for_flag(&s[1].calls, 1);
    assert_pf_ok(pf_run_wait(run, NULL, NULL));
    pf_run_free(run);
    pf_agent_free(a);
    pf_ratelimit_free(rl);
}

/* ---- bulkhead ------------------------------------------------------------ */

static pf_bulkhead_t *
bulkhead_of_one(pf_clock_t *clock, double wait, unsigned queue)
{
    pf_bulkhead_config_t bc;
    pf_bulkhead_t *bh = NULL;

    pf_bulkhead_config_init(&bc);
    bc.max_concurrent_calls = 1;
    bc.max_wait_duration = wait;
    bc.max_queue_size = queue;
    bc.clock = clock;
    assert_pf_ok(pf_bulkhead_new(&bc, &bh));
    return bh;
}

static void
wait_bulkhead_waiting(pf_bulkhead_t *bh, unsigned n)
{
    pf_bulkhead_metrics_t m;

    for (;;) {
        pf_bulkhead_metrics(bh, &m);
        if (m.waiting == n) {
            return;
        }
        sched_yield();
    }
}

static void
test_agent_bulkhead_wait_limit_fails_the_queued_state(void **state)
{
    fixture_t *f = *state;
    pf_agent_t *x = agent_on(f->ex, PF_EXEC_SEQUENTIAL);
    pf_agent_t *y = agent_on(f->ex, PF_EXEC_SEQUENTIAL);
    pf_bulkhead_t *bh = bulkhead_of_one(f->clock, 5.0, 10);
    holder_t h = {0};
    spec_t s = {0};
    pf_state_opts_t o;
    pf_run_t *rx = NULL;
    pf_run_t *ry = NULL;
    pf_run_result_t res;

    pf_state_opts_init(&o);
    o.bulkhead = bh;
    o.max_retries = 0;
    assert_pf_ok(pf_agent_add_state(x, "holder", hold, &h, &o));
    assert_pf_ok(pf_agent_add_state(y, "queued", spec_fn, &s, &o));
    assert_pf_ok(pf_agent_start(x, NULL, NULL, &rx));
    pf_test_wait_for_flag(&h.inside, 1);
    assert_pf_ok(pf_agent_start(y, NULL, NULL, &ry));
    wait_bulkhead_waiting(bh, 1);
    wait_timers(f->ex, 1); /* its wait limit */
    pf_clock_manual_advance(f->clock, 5 * NS_PER_SEC);
    assert_pf_err(pf_run_wait(ry, NULL, &res), PF_EFULL);
    assert_int_equal(atomic_load(&s.calls), 0);
    assert_int_equal(state_result(&res, "queued").error, PF_EFULL);
    wait_bulkhead_waiting(bh, 0);
    pf_run_result_free(&res);
    atomic_store(&h.release, 1);
    assert_pf_ok(pf_run_wait(rx, NULL, NULL));
    pf_run_free(rx);
    pf_run_free(ry);
    pf_agent_free(x);
    pf_agent_free(y);
    pf_bulkhead_free(bh);
}

static void
test_agent_full_bulkhead_is_retried_after_the_backoff(void **state)
{
    pf_backoff_t backoff;
    fixture_t *f = *state;
    pf_agent_t *x = agent_on(f->ex, PF_EXEC_SEQUENTIAL);
    pf_agent_t *y = agent_on(f->ex, PF_EXEC_SEQUENTIAL);
    pf_bulkhead_t *bh = bulkhead_of_one(f->clock, 1.0, 0);
    holder_t h = {0};
    spec_t s = {0};
    pf_state_opts_t o;
    pf_run_t *rx = NULL;
    pf_run_t *ry = NULL;
    pf_run_result_t res;
    pf_state_result_t sr;

    backoff_exactly(&o, &backoff, 3, 1.0);
    o.bulkhead = bh;
    assert_pf_ok(pf_agent_add_state(x, "holder", hold, &h, &o));
    assert_pf_ok(pf_agent_add_state(y, "later", spec_fn, &s, &o));
    assert_pf_ok(pf_agent_start(x, NULL, NULL, &rx));
    pf_test_wait_for_flag(&h.inside, 1);
    assert_pf_ok(pf_agent_start(y, NULL, NULL, &ry));
    wait_timers(f->ex, 1); /* refused: it waits for its retry */
    atomic_store(&h.release, 1);
    assert_pf_ok(pf_run_wait(rx, NULL, NULL));
    pf_clock_manual_advance(f->clock, 1 * NS_PER_SEC);
    assert_pf_ok(pf_run_wait(ry, NULL, &res));
    sr = state_result(&res, "later");
    assert_int_equal(sr.outcome, PF_STATE_COMPLETED);
    assert_int_equal(sr.attempts, 1); /* called once, when it got in */
    assert_int_equal(atomic_load(&s.calls), 1);
    pf_run_result_free(&res);
    pf_run_free(rx);
    pf_run_free(ry);
    pf_agent_free(x);
    pf_agent_free(y);
    pf_bulkhead_free(bh);
}

static void
test_agent_cancel_withdraws_a_queued_bulkhead_ticket(void **state)
{
    fixture_t *f = *state;
    pf_agent_t *x = agent_on(f->ex, PF_EXEC_SEQUENTIAL);
    pf_agent_t *y = agent_on(f->ex, PF_EXEC_SEQUENTIAL);
    pf_bulkhead_t *bh = bulkhead_of_one(f->clock, INFINITY, 10);
    holder_t h = {0};
    spec_t s = {0};
    pf_state_opts_t o;
    pf_run_t *rx = NULL;
    pf_run_t *ry = NULL;
    pf_run_result_t res;
    pf_bulkhead_metrics_t m;

    pf_state_opts_init(&o);
    o.bulkhead = bh;
    assert_pf_ok(pf_agent_add_state(x, "holder", hold, &h, &o));
    assert_pf_ok(pf_agent_add_state(y, "queued", spec_fn, &s, &o));
    assert_pf_ok(pf_agent_start(x, NULL, NULL, &rx));
    pf_test_wait_for_flag(&h.inside, 1);
    assert_pf_ok(pf_agent_start(y, NULL, NULL, &ry));
    wait_bulkhead_waiting(bh, 1);
    pf_run_cancel(ry);
    assert_pf_err(pf_run_wait(ry, NULL, &res), PF_ECANCELED);
    assert_int_equal(state_result(&res, "queued").outcome, PF_STATE_CANCELLED);
    pf_bulkhead_metrics(bh, &m);
    assert_int_equal(m.waiting, 0);
    assert_int_equal(m.in_use, 1); /* the holder's slot only */
    pf_run_result_free(&res);
    atomic_store(&h.release, 1);
    assert_pf_ok(pf_run_wait(rx, NULL, NULL));
    pf_bulkhead_metrics(bh, &m);
    assert_int_equal(m.in_use, 0);
    assert_int_equal(atomic_load(&s.calls), 0);
    pf_run_free(rx);
    pf_run_free(ry);
    pf_agent_free(x);
    pf_agent_free(y);
    pf_bulkhead_free(bh);
}

/* ---- timings ------------------------------------------------------------- */

static void
test_agent_timings_follow_the_executors_clock(void **state)
{
    fixture_t *f = *state;
    pf_agent_config_t cfg;
    pf_agent_t *a = agent_on(f->ex, PF_EXEC_SEQUENTIAL);
    pf_agent_t *b = NULL;
    slow_t slow = {f->clock, 3 * NS_PER_SEC, {0}};
    pf_run_result_t res;
    pf_state_result_t sr;
    int64_t t0 = pf_clock_now_ns(f->clock);

    assert_pf_ok(pf_agent_add_state(a, "work", slow_fn, &slow, NULL));
    assert_pf_ok(pf_agent_run(a, NULL, &res));
    sr = state_result(&res, "work");
    assert_int_equal(sr.start_ns, t0);
    assert_int_equal(sr.end_ns, t0 + 3 * NS_PER_SEC);
    assert_true(sr.duration == 3.0);
    assert_true(res.duration == 3.0);
    pf_run_result_free(&res);
    pf_agent_config_init(&cfg);
    cfg.executor = f->ex;
    cfg.timings = false;
    assert_pf_ok(pf_agent_new_ex(&cfg, &b));
    assert_pf_ok(pf_agent_add_state(b, "work", slow_fn, &slow, NULL));
    assert_pf_ok(pf_agent_run(b, NULL, &res));
    sr = state_result(&res, "work");
    assert_int_equal(sr.start_ns, 0);
    assert_true(sr.duration == 0.0);
    assert_true(res.duration == 0.0);
    pf_run_result_free(&res);
    pf_agent_free(a);
    pf_agent_free(b);
}

#define T(name)                                                                \
    cmocka_unit_test_setup_teardown(name, fixture_setup, fixture_teardown)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_agent_retry_waits_its_backoff_on_a_timer),
        T(test_agent_retry_fires_at_the_announced_time_when_the_listener_is_slow),
        T(test_agent_retry_after_replaces_the_backoff_capped_at_max_delay),
        T(test_agent_timeout_fails_an_attempt_that_returns_late),
        T(test_agent_timeout_cancels_the_attempts_token_at_the_deadline),
        T(test_agent_token_is_cancelled_from_the_deadline_on_timer_or_not),
        T(test_agent_fallback_after_a_timeout_runs_without_the_states_deadline),
        T(test_agent_breaker_timeout_fails_a_slow_attempt_that_returned_success),
        T(test_agent_breaker_timeout_is_retried_as_any_timeout),
        T(test_agent_breaker_fallback_answers_a_breaker_timeout),
        T(test_agent_cancel_ends_a_run_waiting_for_a_retry),
        T(test_agent_cancel_reaches_a_running_state_through_its_token),
        T(test_agent_run_deadline_cancels_what_is_left),
        T(test_agent_run_deadline_cancels_dependents_never_started),
        T(test_agent_run_token_cancels_the_run),
        T(test_agent_run_wait_times_out_and_the_run_goes_on),
        T(test_agent_run_wait_with_a_deadline_returns_by_it_while_states_run),
        T(test_agent_rate_limit_delay_is_a_timer),
        T(test_agent_rate_limit_wait_ends_at_the_announced_time_when_the_listener_is_slow),
        T(test_agent_bulkhead_wait_limit_fails_the_queued_state),
        T(test_agent_full_bulkhead_is_retried_after_the_backoff),
        T(test_agent_cancel_withdraws_a_queued_bulkhead_ticket),
        T(test_agent_timings_follow_the_executors_clock),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
