/* The timeout manager (nested scopes on the manual clock) and timed calls
 * (on the manual clock, and on the real clock with short bounded waits,
 * including work that returns long after its timeout). */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "puffinflow/deadline.h"
#include "puffinflow/timeout.h"
#include "test.h"

/* ---- timeout manager --------------------------------------------------- */

typedef struct events {
    int expired;
    int exceeded;
    double overrun;
    double seconds;
} events_t;

static void
on_event(const pf_timeout_event_t *ev, void *arg)
{
    events_t *e = arg;

    if (ev->kind == PF_TIMEOUT_EVENT_EXPIRED) {
        e->expired++;
        e->overrun = ev->overrun;
    } else {
        e->exceeded++;
    }
    e->seconds = ev->seconds;
}

static pf_timeout_manager_t *
manager_on(pf_clock_t *c, events_t *ev, pf_token_t *tok)
{
    pf_timeout_config_t cfg;
    pf_timeout_manager_t *tm = NULL;

    pf_timeout_config_init(&cfg);
    cfg.clock = c;
    cfg.token = tok;
    if (ev != NULL) {
        cfg.listener = on_event;
        cfg.listener_arg = ev;
    }
    assert_pf_ok(pf_timeout_manager_new(&cfg, &tm));
    return tm;
}

static void
test_timeout_manager_defaults_and_bad_input(void **state)
{
    pf_timeout_config_t cfg;
    pf_timeout_manager_t *tm;
    pf_timeout_scope_t s;

    (void)state;
    pf_timeout_config_init(&cfg);
    assert_string_equal(cfg.name, "default");
    assert_null(cfg.token);
    assert_null(cfg.clock);
    assert_null(cfg.listener);
    assert_pf_err(pf_timeout_manager_new(NULL, &tm), PF_EINVAL);
    assert_pf_err(pf_timeout_manager_new(&cfg, NULL), PF_EINVAL);
    cfg.name = NULL;
    assert_pf_err(pf_timeout_manager_new(&cfg, &tm), PF_EINVAL);
    cfg.name = "agent";
    assert_pf_ok(pf_timeout_manager_new(&cfg, &tm));
    assert_string_equal(pf_timeout_manager_name(tm), "agent");
    assert_pf_err(pf_timeout_enter(NULL, &s, 1.0), PF_EINVAL);
    assert_pf_err(pf_timeout_enter(tm, NULL, 1.0), PF_EINVAL);
    assert_pf_err(pf_timeout_enter(tm, &s, NAN), PF_EINVAL);
    assert_pf_err(pf_timeout_enter(tm, &s, -1.0), PF_EINVAL);
    assert_pf_err(pf_timeout_enter_deadline(tm, &s, NULL), PF_EINVAL);
    assert_pf_err(pf_timeout_leave(NULL, &s), PF_EINVAL);
    assert_pf_err(pf_timeout_leave(tm, NULL), PF_EINVAL);
    assert_int_equal(pf_timeout_depth(tm), 0);
    assert_null(pf_timeout_manager_name(NULL));
    assert_null(pf_timeout_token(NULL));
    assert_pf_ok(pf_timeout_check(NULL));
    pf_timeout_manager_free(tm);
    pf_timeout_manager_free(NULL);
    pf_timeout_config_init(NULL);
}

static void
test_timeout_nested_scope_takes_the_earliest_deadline(void **state)
{
    pf_clock_t *c = *state;
    pf_timeout_manager_t *tm = manager_on(c, NULL, NULL);
    pf_timeout_scope_t outer;
    pf_timeout_scope_t inner;
    pf_timeout_scope_t innermost;
    pf_deadline_t d;

    d = pf_timeout_deadline(tm);
    assert_true(pf_deadline_is_none(&d)); /* outside any scope */
    assert_true(isinf(pf_timeout_remaining(tm)));
    assert_pf_ok(pf_timeout_enter(tm, &outer, 10.0));
    assert_pf_ok(pf_timeout_enter(tm, &inner, 30.0)); /* later: outer wins */
    d = pf_timeout_deadline(tm);
    assert_int_equal(d.priv_at_ns, 10 * NS_PER_SEC);
    assert_pf_ok(pf_timeout_enter(tm, &innermost, 4.0)); /* earlier: own */
    assert_int_equal(pf_timeout_depth(tm), 3);
    pf_clock_manual_advance(c, NS_PER_SEC);
    assert_true(pf_timeout_remaining(tm) == 3.0);
    assert_pf_ok(pf_timeout_leave(tm, &innermost));
    assert_true(pf_timeout_remaining(tm) == 9.0);
    assert_pf_ok(pf_timeout_leave(tm, &inner));
    assert_true(pf_timeout_remaining(tm) == 9.0);
    assert_pf_ok(pf_timeout_leave(tm, &outer));
    assert_true(isinf(pf_timeout_remaining(tm)));
    assert_int_equal(pf_timeout_depth(tm), 0);
    pf_timeout_manager_free(tm);
}

static void
test_timeout_enter_fails_with_edeadline_once_the_deadline_passed(void **state)
{
    pf_clock_t *c = *state;
    events_t ev = {0};
    pf_timeout_manager_t *tm = manager_on(c, &ev, NULL);
    pf_timeout_metrics_t m;
    pf_timeout_scope_t outer;
    pf_timeout_scope_t inner;
    pf_deadline_t past = pf_deadline_in(c, 1.0);

    assert_pf_ok(pf_timeout_enter(tm, &outer, 2.0));
    pf_clock_manual_advance(c, 2 * NS_PER_SEC);
    /* The enclosing deadline passed before the inner work started. */
    assert_pf_err(pf_timeout_enter(tm, &inner, 60.0), PF_EDEADLINE);
    assert_int_equal(pf_timeout_depth(tm), 1); /* nothing entered */
    assert_int_equal(ev.exceeded, 1);
    assert_true(ev.seconds == 60.0);
    assert_pf_err(pf_timeout_leave(tm, &outer), PF_ETIMEDOUT);
    /* A deadline handed down with the work, already passed. */
    assert_pf_err(pf_timeout_enter_deadline(tm, &inner, &past), PF_EDEADLINE);
    /* Zero seconds: the deadline is now, so it has passed. */
    assert_pf_err(pf_timeout_enter(tm, &inner, 0.0), PF_EDEADLINE);
    assert_int_equal(pf_timeout_depth(tm), 0);
    pf_timeout_manager_metrics(tm, &m);
    assert_int_equal(m.entered, 1);
    assert_int_equal(m.left, 1);
    assert_int_equal(m.timed_out, 1);
    assert_int_equal(m.deadline_exceeded, 3);
    assert_int_equal(m.active, 0);
    pf_timeout_manager_free(tm);
}

static void
test_timeout_leave_reports_an_overrun(void **state)
{
    pf_clock_t *c = *state;
    events_t ev = {0};
    pf_timeout_manager_t *tm = manager_on(c, &ev, NULL);
    pf_timeout_scope_t s;
    pf_timeout_metrics_t m;

    assert_pf_ok(pf_timeout_enter(tm, &s, 30.0));
    pf_clock_manual_advance(c, 29 * NS_PER_SEC);
    assert_pf_ok(pf_timeout_check(tm));
    pf_timeout_manager_metrics(tm, &m);
    assert_int_equal(m.active, 1);
    pf_clock_manual_advance(c, 1 * NS_PER_SEC); /* at the deadline */
    assert_pf_err(pf_timeout_check(tm), PF_ETIMEDOUT);
    pf_clock_manual_advance(c, 2 * NS_PER_SEC);
    assert_pf_err(pf_timeout_leave(tm, &s), PF_ETIMEDOUT);
    assert_int_equal(ev.expired, 1);
    assert_true(ev.overrun == 2.0);
    assert_true(ev.seconds == 30.0);
    assert_pf_ok(pf_timeout_check(tm)); /* no scope left */
    /* Left in time: 0. */
    assert_pf_ok(pf_timeout_enter(tm, &s, 5.0));
    pf_clock_manual_advance(c, 4 * NS_PER_SEC);
    assert_pf_ok(pf_timeout_leave(tm, &s));
    assert_int_equal(ev.expired, 1);
    pf_timeout_manager_free(tm);
}

static void
test_timeout_leave_out_of_order_is_refused(void **state)
{
    pf_clock_t *c = *state;
    pf_timeout_manager_t *tm = manager_on(c, NULL, NULL);
    pf_timeout_manager_t *other = manager_on(c, NULL, NULL);
    pf_timeout_scope_t a;
    pf_timeout_scope_t b;

    assert_pf_ok(pf_timeout_enter(tm, &a, 10.0));
    assert_pf_ok(pf_timeout_enter(other, &b, 10.0));
    assert_pf_err(pf_timeout_leave(tm, &a), PF_ESTATE); /* b is inner */
    assert_pf_err(pf_timeout_leave(tm, &b), PF_EINVAL); /* not tm's */
    assert_int_equal(pf_timeout_depth(tm), 1);
    assert_int_equal(pf_timeout_depth(other), 1);
    assert_pf_ok(pf_timeout_leave(other, &b));
    assert_pf_ok(pf_timeout_leave(tm, &a));
    assert_pf_err(pf_timeout_leave(tm, &a), PF_EINVAL); /* left already */
    pf_timeout_manager_free(other);
    pf_timeout_manager_free(tm);
}

static void
test_timeout_managers_keep_their_own_deadlines(void **state)
{
    pf_clock_t *c = *state;
    pf_timeout_manager_t *tm = manager_on(c, NULL, NULL);
    pf_timeout_manager_t *other = manager_on(c, NULL, NULL);
    pf_timeout_scope_t a;
    pf_timeout_scope_t b;
    pf_deadline_t d;

    assert_pf_ok(pf_timeout_enter(tm, &a, 5.0));
    assert_pf_ok(pf_timeout_enter(other, &b, 50.0));
    d = pf_timeout_deadline(other);
    assert_int_equal(d.priv_at_ns, 50 * NS_PER_SEC);
    d = pf_timeout_deadline(tm); /* found past other's inner scope */
    assert_int_equal(d.priv_at_ns, 5 * NS_PER_SEC);
    assert_pf_ok(pf_timeout_leave(other, &b));
    assert_pf_ok(pf_timeout_leave(tm, &a));
    pf_timeout_manager_free(other);
    pf_timeout_manager_free(tm);
}

typedef struct peek {
    pf_timeout_manager_t *tm;
    pf_deadline_t seen;
    unsigned depth;
    int rc;
} peek_t;

static void *
peek_main(void *arg)
{
    peek_t *p = arg;
    pf_timeout_scope_t s;

    p->seen = pf_timeout_deadline(p->tm);
    p->depth = pf_timeout_depth(p->tm);
    /* This thread's own scope does not nest in the other thread's. */
    p->rc = pf_timeout_enter(p->tm, &s, 100.0);
    if (p->rc == 0) {
        p->seen = pf_timeout_deadline(p->tm);
        p->rc = pf_timeout_leave(p->tm, &s);
    }
    return NULL;
}

static void
test_timeout_scopes_belong_to_their_thread(void **state)
{
    pf_clock_t *c = *state;
    pf_timeout_manager_t *tm = manager_on(c, NULL, NULL);
    pf_timeout_scope_t s;
    pthread_t t;
    peek_t p = {tm, {0}, 9, -1};

    assert_pf_ok(pf_timeout_enter(tm, &s, 1.0));
    assert_int_equal(pthread_create(&t, NULL, peek_main, &p), 0);
    pthread_join(t, NULL);
    assert_int_equal(p.depth, 0);
    assert_pf_ok(p.rc);
    assert_int_equal(p.seen.priv_at_ns, 100 * NS_PER_SEC);
    assert_pf_ok(pf_timeout_leave(tm, &s));
    pf_timeout_manager_free(tm);
}

typedef struct waiter {
    pf_token_t *tok;
    int rc;
} waiter_t;

static void *
wait_main(void *arg)
{
    waiter_t *w = arg;

    w->rc = pf_token_wait(w->tok, NULL);
    return NULL;
}

static void
test_timeout_scope_token_bounds_waits_and_follows_cancel(void **state)
{
    pf_clock_t *c = *state;
    pf_token_t *root;
    pf_timeout_manager_t *tm;
    pf_timeout_scope_t outer;
    pf_timeout_scope_t inner;
    pf_deadline_t d;
    waiter_t w;
    pthread_t t;

    assert_pf_ok(pf_token_new(NULL, NULL, &root));
    tm = manager_on(c, NULL, root);
    assert_ptr_equal(pf_timeout_token(tm), root); /* outside any scope */
    assert_pf_ok(pf_timeout_enter(tm, &outer, 3.0));
    assert_pf_ok(pf_timeout_enter(tm, &inner, 60.0));
    w.tok = pf_timeout_token(tm);
    d = pf_token_deadline(w.tok);
    assert_int_equal(d.priv_at_ns, 3 * NS_PER_SEC);
    /* A wait given the scope's token ends at the scope's deadline. */
    assert_int_equal(pthread_create(&t, NULL, wait_main, &w), 0);
    pf_test_wait_for_waiters(c, 1);
    pf_clock_manual_advance(c, 3 * NS_PER_SEC);
    pthread_join(t, NULL);
    assert_pf_err(w.rc, PF_ETIMEDOUT);
    /* Cancelling the manager's token cancels every scope. */
    pf_token_cancel(root);
    assert_pf_err(pf_timeout_check(tm), PF_ECANCELED);
    assert_pf_err(pf_timeout_leave(tm, &inner), PF_ECANCELED);
    assert_pf_err(pf_timeout_leave(tm, &outer), PF_ECANCELED);
    assert_pf_err(pf_timeout_check(tm), PF_ECANCELED);
    assert_pf_err(pf_timeout_enter(tm, &outer, 1.0), PF_ECANCELED);
    pf_timeout_manager_free(tm);
    pf_token_free(root);
}

static void
manager_alloc_scenario(void *arg)
{
    pf_timeout_config_t cfg;
    pf_timeout_manager_t *tm;
    pf_timeout_scope_t a;
    pf_timeout_scope_t b;
    int rc;

    pf_timeout_config_init(&cfg);
    cfg.clock = arg;
    rc = pf_timeout_manager_new(&cfg, &tm);
    if (rc == PF_ENOMEM) {
        return;
    }
    rc = pf_timeout_enter(tm, &a, 10.0);
    if (rc == 0) {
        rc = pf_timeout_enter(tm, &b, 5.0);
        if (rc == 0) {
            assert_int_equal(pf_timeout_depth(tm), 2);
            assert_pf_ok(pf_timeout_leave(tm, &b));
        }
        assert_pf_ok(pf_timeout_leave(tm, &a));
    }
    assert_true(rc == 0 || rc == PF_ENOMEM);
    assert_int_equal(pf_timeout_depth(tm), 0);
    pf_timeout_manager_free(tm);
}

static void
test_timeout_manager_allocation_failures_leak_nothing(void **state)
{
    /* manager, name, then one token per scope */
    assert_int_equal(pf_test_alloc_sweep(manager_alloc_scenario, *state), 5);
}

/* ---- timed calls ------------------------------------------------------- */

typedef struct job {
    atomic_int started;
    atomic_int release;   /* fn returns once this is set */
    atomic_int finished;
    atomic_int completions;
    atomic_int token_was_cancelled;
    int result;           /* what fn returns */
    int completed_with;
    pf_deadline_t seen_deadline;
    pthread_t fn_thread;
    pthread_t done_thread;
} job_t;

static void
job_init(job_t *j, int result)
{
    atomic_init(&j->started, 0);
    atomic_init(&j->release, 0);
    atomic_init(&j->finished, 0);
    atomic_init(&j->completions, 0);
    atomic_init(&j->token_was_cancelled, 0);
    j->result = result;
    j->completed_with = 12345;
}

/* Spins (yielding) until released, then reports whether its token was
 * cancelled by then. */
static int
gated(const pf_deadline_t *d, pf_token_t *tok, void *arg)
{
    job_t *j = arg;

    j->seen_deadline = *d;
    j->fn_thread = pthread_self();
    atomic_store(&j->started, 1);
    pf_test_wait_for_flag(&j->release, 1);
    atomic_store(&j->token_was_cancelled, pf_token_is_cancelled(tok));
    atomic_store(&j->finished, 1);
    return j->result;
}

static void
completed(int result, void *arg)
{
    job_t *j = arg;

    j->completed_with = result;
    j->done_thread = pthread_self();
    atomic_fetch_add(&j->completions, 1);
}

static int
quick(const pf_deadline_t *d, pf_token_t *tok, void *arg)
{
    job_t *j = arg;

    j->seen_deadline = *d;
    j->fn_thread = pthread_self();
    atomic_store(&j->token_was_cancelled, pf_token_is_cancelled(tok));
    atomic_store(&j->finished, 1);
    return j->result;
}

static void
opts_for(pf_timeout_opts_t *o, pf_clock_t *c, job_t *j)
{
    pf_timeout_opts_init(o);
    o->clock = c;
    o->on_complete = completed;
    o->on_complete_arg = j;
}

static void
test_timeout_call_returns_the_result_in_time(void **state)
{
    pf_clock_t *c = *state;
    pf_timeout_opts_t o;
    job_t j;

    job_init(&j, 42);
    opts_for(&o, c, &j);
    assert_int_equal(pf_timeout_call_ex(5.0, quick, &j, &o), 42);
    /* The hook ran once, on the caller's thread, before the return. */
    assert_int_equal(atomic_load(&j.completions), 1);
    assert_int_equal(j.completed_with, 42);
    assert_true(pthread_equal(j.done_thread, pthread_self()));
    assert_false(pthread_equal(j.fn_thread, pthread_self()));
    assert_int_equal(j.seen_deadline.priv_at_ns, 5 * NS_PER_SEC);
    assert_false(atomic_load(&j.token_was_cancelled));
    /* Without options. */
    job_init(&j, 0);
    assert_pf_ok(pf_timeout_call(5.0, quick, &j));
    assert_int_equal(atomic_load(&j.finished), 1);
}

/* pf_timeout_call_ex run on its own thread, so this one can move time. */
typedef struct caller {
    pthread_t tid;
    double seconds;
    pf_timeout_opts_t o;
    job_t *j;
    int rc;
    atomic_int done;
} caller_t;

static void *
caller_main(void *arg)
{
    caller_t *cl = arg;

    cl->rc = pf_timeout_call_ex(cl->seconds, gated, cl->j, &cl->o);
    atomic_store(&cl->done, 1);
    return NULL;
}

static void
caller_start(caller_t *cl, double seconds, pf_clock_t *c, job_t *j,
             pf_token_t *parent)
{
    cl->seconds = seconds;
    cl->j = j;
    opts_for(&cl->o, c, j);
    cl->o.parent = parent;
    atomic_init(&cl->done, 0);
    assert_int_equal(pthread_create(&cl->tid, NULL, caller_main, cl), 0);
}

static void
test_timeout_call_times_out_and_fn_finishes_later(void **state)
{
    pf_clock_t *c = *state;
    caller_t cl;
    job_t j;

    job_init(&j, 7);
    caller_start(&cl, 5.0, c, &j, NULL);
    pf_test_wait_for_flag(&j.started, 1);
    pf_test_wait_for_waiters(c, 1); /* the caller is parked on the clock */
    pf_clock_manual_advance(c, 5 * NS_PER_SEC - 1);
    assert_int_equal(atomic_load(&cl.done), 0);
    pf_clock_manual_advance(c, 1);
    pf_test_wait_for_flag(&cl.done, 1);
    pthread_join(cl.tid, NULL);
    assert_pf_err(cl.rc, PF_ETIMEDOUT);
    /* fn is still running: its hook has not run yet. */
    assert_int_equal(atomic_load(&j.finished), 0);
    assert_int_equal(atomic_load(&j.completions), 0);
    atomic_store(&j.release, 1);
    pf_test_wait_for_flag(&j.completions, 1);
    /* It ran once, on the helper thread, with fn's late result; fn's token
     * had been cancelled at the timeout. */
    assert_int_equal(j.completed_with, 7);
    assert_true(pthread_equal(j.done_thread, j.fn_thread));
    assert_int_equal(atomic_load(&j.token_was_cancelled), 1);
}

static void
test_timeout_call_ends_when_the_parent_is_cancelled(void **state)
{
    pf_clock_t *c = *state;
    pf_token_t *parent;
    caller_t cl;
    job_t j;

    job_init(&j, 8);
    assert_pf_ok(pf_token_new(NULL, NULL, &parent));
    caller_start(&cl, 60.0, c, &j, parent);
    pf_test_wait_for_flag(&j.started, 1);
    pf_test_wait_for_waiters(c, 1);
    pf_token_cancel(parent);
    pf_test_wait_for_flag(&cl.done, 1);
    pthread_join(cl.tid, NULL);
    assert_pf_err(cl.rc, PF_ECANCELED);
    assert_int_equal(pf_clock_now_ns(c), 0); /* no time had to pass */
    atomic_store(&j.release, 1);
    pf_test_wait_for_flag(&j.completions, 1);
    assert_int_equal(j.completed_with, 8);
    assert_int_equal(atomic_load(&j.token_was_cancelled), 1);
    pf_token_free(parent);
}

/* ---- timed calls on the real clock ------------------------------------- */

static atomic_int g_real_done;

typedef struct slow {
    int result;
    char *payload;      /* heap memory the hook frees */
    atomic_int release; /* set by the test once it has checked the hook
                           has not run: fn finishes only then */
} slow_t;

static void
sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* Waits for its token (cancelled at the timeout), then keeps working until
 * the test releases it: every access to arg comes after the caller got
 * PF_ETIMEDOUT, and the test decides when, however loaded the machine. */
static int
slow_fn(const pf_deadline_t *d, pf_token_t *tok, void *arg)
{
    slow_t *s = arg;

    (void)d;
    pf_token_wait(tok, NULL);
    pf_test_wait_for_flag(&s->release, 1);
    sleep_ms(5);
    s->payload[0] = 'x';
    return s->result;
}

static void
free_slow(int result, void *arg)
{
    slow_t *s = arg;

    assert_int_equal(result, s->result);
    free(s->payload);
    free(s);
    atomic_fetch_add(&g_real_done, 1);
}

static void
test_timeout_call_real_clock_fn_returns_long_after_its_timeout(void **state)
{
    pf_timeout_opts_t o;
    slow_t *s = malloc(sizeof(*s));

    (void)state;
    assert_non_null(s);
    s->result = 11;
    atomic_init(&s->release, 0);
    s->payload = malloc(16);
    assert_non_null(s->payload);
    atomic_store(&g_real_done, 0);
    pf_timeout_opts_init(&o);
    o.on_complete = free_slow;
    o.on_complete_arg = s;
    /* The caller is back after about 20 ms; fn goes on until released,
     * then the hook frees its memory: ASan sees any use after free or
     * leak. */
    assert_pf_err(pf_timeout_call_ex(0.02, slow_fn, s, &o), PF_ETIMEDOUT);
    assert_int_equal(atomic_load(&g_real_done), 0);
    atomic_store(&s->release, 1);
    pf_test_wait_for_flag(&g_real_done, 1);
}

/* Deadlines of about a millisecond against work of about a millisecond:
 * each call's hook runs exactly once, whoever wins the race. */
static atomic_int g_race_done;
static atomic_int g_race_timeouts;

static int
racy_fn(const pf_deadline_t *d, pf_token_t *tok, void *arg)
{
    int *n = arg;

    (void)d;
    (void)tok;
    sleep_ms(*n % 3);
    return 1;
}

static void
free_racy(int result, void *arg)
{
    assert_true(result == 1);
    free(arg);
    atomic_fetch_add(&g_race_done, 1);
}

static void
test_timeout_call_real_clock_hook_runs_once_in_every_race(void **state)
{
    const int n = 150;

    (void)state;
    atomic_store(&g_race_done, 0);
    atomic_store(&g_race_timeouts, 0);
    for (int i = 0; i < n; i++) {
        pf_timeout_opts_t o;
        int *arg = malloc(sizeof(*arg));
        int rc;

        assert_non_null(arg);
        *arg = i;
        pf_timeout_opts_init(&o);
        o.on_complete = free_racy;
        o.on_complete_arg = arg;
        rc = pf_timeout_call_ex(0.001, racy_fn, arg, &o);
        assert_true(rc == 1 || rc == PF_ETIMEDOUT);
        atomic_fetch_add(&g_race_timeouts, rc == PF_ETIMEDOUT);
    }
    pf_test_wait_for_flag(&g_race_done, n);
    sleep_ms(5);
    assert_int_equal(atomic_load(&g_race_done), n); /* never twice */
}

static void
test_timeout_call_rejects_bad_input_and_still_completes(void **state)
{
    pf_clock_t *c = *state;
    pf_timeout_opts_t o;
    job_t j;

    job_init(&j, 0);
    opts_for(&o, c, &j);
    assert_pf_err(pf_timeout_call_ex(NAN, quick, &j, &o), PF_EINVAL);
    assert_pf_err(pf_timeout_call_ex(-1.0, quick, &j, &o), PF_EINVAL);
    assert_pf_err(pf_timeout_call_ex(1.0, NULL, &j, &o), PF_EINVAL);
    assert_int_equal(atomic_load(&j.completions), 3);
    assert_int_equal(j.completed_with, PF_EINVAL);
    /* Zero seconds: the deadline passed before fn could start. */
    assert_pf_err(pf_timeout_call_ex(0.0, quick, &j, &o), PF_EDEADLINE);
    assert_int_equal(atomic_load(&j.completions), 4);
    assert_int_equal(j.completed_with, PF_EDEADLINE);
    assert_int_equal(atomic_load(&j.finished), 0); /* fn never ran */
    assert_pf_err(pf_timeout_call(NAN, quick, &j), PF_EINVAL);
}

static void
test_timeout_call_without_limit_runs_on_the_caller(void **state)
{
    pf_clock_t *c = *state;
    pf_timeout_opts_t o;
    job_t j;

    job_init(&j, 3);
    opts_for(&o, c, &j);
    assert_int_equal(pf_timeout_call_ex(INFINITY, quick, &j, &o), 3);
    assert_true(pthread_equal(j.fn_thread, pthread_self()));
    assert_true(pf_deadline_is_none(&j.seen_deadline));
    assert_int_equal(atomic_load(&j.completions), 1);
}

static void
test_timeout_call_honours_the_parent_token(void **state)
{
    pf_clock_t *c = *state;
    pf_deadline_t soon = pf_deadline_in(c, 2.0);
    pf_timeout_opts_t o;
    pf_token_t *parent;
    job_t j;

    job_init(&j, 0);
    opts_for(&o, c, &j);
    assert_pf_ok(pf_token_new(NULL, &soon, &parent));
    o.parent = parent;
    /* The parent's deadline bounds fn's. */
    assert_pf_ok(pf_timeout_call_ex(10.0, quick, &j, &o));
    assert_int_equal(j.seen_deadline.priv_at_ns, 2 * NS_PER_SEC);
    pf_token_cancel(parent);
    assert_pf_err(pf_timeout_call_ex(10.0, quick, &j, &o), PF_ECANCELED);
    assert_int_equal(j.completed_with, PF_ECANCELED);
    assert_int_equal(atomic_load(&j.completions), 2);
    pf_token_free(parent);
}

static void
call_alloc_scenario(void *arg)
{
    pf_timeout_opts_t o;
    job_t j;
    int rc;

    job_init(&j, 5);
    opts_for(&o, arg, &j);
    rc = pf_timeout_call_ex(5.0, quick, &j, &o);
    assert_true(rc == 5 || rc == PF_ENOMEM);
    assert_int_equal(atomic_load(&j.completions), 1);
    assert_int_equal(j.completed_with, rc);
}

static void
test_timeout_call_allocation_failures_leak_nothing(void **state)
{
    /* the call's record, then fn's token */
    assert_int_equal(pf_test_alloc_sweep(call_alloc_scenario, *state), 3);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timeout_manager_defaults_and_bad_input),
        CLOCK_TEST(test_timeout_nested_scope_takes_the_earliest_deadline),
        CLOCK_TEST(
            test_timeout_enter_fails_with_edeadline_once_the_deadline_passed),
        CLOCK_TEST(test_timeout_leave_reports_an_overrun),
        CLOCK_TEST(test_timeout_leave_out_of_order_is_refused),
        CLOCK_TEST(test_timeout_managers_keep_their_own_deadlines),
        CLOCK_TEST(test_timeout_scopes_belong_to_their_thread),
        CLOCK_TEST(test_timeout_scope_token_bounds_waits_and_follows_cancel),
        CLOCK_TEST(test_timeout_manager_allocation_failures_leak_nothing),
        CLOCK_TEST(test_timeout_call_returns_the_result_in_time),
        CLOCK_TEST(test_timeout_call_times_out_and_fn_finishes_later),
        CLOCK_TEST(test_timeout_call_ends_when_the_parent_is_cancelled),
        cmocka_unit_test(
            test_timeout_call_real_clock_fn_returns_long_after_its_timeout),
        cmocka_unit_test(
            test_timeout_call_real_clock_hook_runs_once_in_every_race),
        CLOCK_TEST(test_timeout_call_rejects_bad_input_and_still_completes),
        CLOCK_TEST(test_timeout_call_without_limit_runs_on_the_caller),
        CLOCK_TEST(test_timeout_call_honours_the_parent_token),
        CLOCK_TEST(test_timeout_call_allocation_failures_leak_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
