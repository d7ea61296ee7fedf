/* Deadlines and cancellation tokens. */
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "puffinflow/deadline.h"
#include "test.h"
#include "wait.h"

static void
test_deadline_in_counts_down_on_the_manual_clock(void **state)
{
    pf_clock_t *c = *state;
    pf_deadline_t d = pf_deadline_in(c, 10.0);

    assert_false(pf_deadline_expired(&d));
    assert_true(pf_deadline_remaining(&d) == 10.0);
    pf_clock_manual_advance(c, 4 * NS_PER_SEC);
    assert_true(pf_deadline_remaining(&d) == 6.0);
    assert_int_equal(pf_deadline_remaining_ns(&d), 6 * NS_PER_SEC);
    pf_clock_manual_advance(c, 6 * NS_PER_SEC);
    assert_true(pf_deadline_expired(&d)); /* expired at its exact instant */
    assert_true(pf_deadline_remaining(&d) == 0.0);
    pf_clock_manual_advance(c, 6 * NS_PER_SEC);
    assert_true(pf_deadline_remaining(&d) == 0.0); /* never negative */
}

static void
test_deadline_bad_seconds_give_an_expired_deadline(void **state)
{
    pf_clock_t *c = *state;
    pf_deadline_t a = pf_deadline_in(c, -1.0);
    pf_deadline_t b = pf_deadline_in(c, NAN);
    pf_deadline_t z = pf_deadline_in(c, 0.0);

    assert_true(pf_deadline_expired(&a));
    assert_true(pf_deadline_expired(&b));
    assert_true(pf_deadline_expired(&z));
}

static void
test_deadline_none_never_expires(void **state)
{
    pf_clock_t *c = *state;
    pf_deadline_t n = pf_deadline_none();
    pf_deadline_t inf = pf_deadline_in(c, INFINITY);
    pf_deadline_t huge = pf_deadline_in(c, 1e300);

    assert_true(pf_deadline_is_none(&n));
    assert_true(pf_deadline_is_none(&inf));
    assert_true(pf_deadline_is_none(NULL));
    assert_false(pf_deadline_is_none(&huge)); /* finite stays finite */
    assert_false(pf_deadline_expired(&n));
    assert_false(pf_deadline_expired(NULL));
    assert_true(isinf(pf_deadline_remaining(&n)));
    assert_true(isinf(pf_deadline_remaining(NULL)));
    pf_clock_manual_advance(c, INT64_MAX);
    assert_false(pf_deadline_expired(&inf));
}

static void
test_deadline_earlier_picks_the_sooner(void **state)
{
    pf_clock_t *c = *state;
    pf_deadline_t a = pf_deadline_in(c, 5.0);
    pf_deadline_t b = pf_deadline_in(c, 3.0);
    pf_deadline_t n = pf_deadline_none();
    pf_deadline_t e;

    e = pf_deadline_earlier(&a, &b);
    assert_int_equal(e.priv_at_ns, b.priv_at_ns);
    e = pf_deadline_earlier(&b, &a);
    assert_int_equal(e.priv_at_ns, b.priv_at_ns);
    e = pf_deadline_earlier(&n, &a);
    assert_int_equal(e.priv_at_ns, a.priv_at_ns);
    e = pf_deadline_earlier(&a, NULL);
    assert_int_equal(e.priv_at_ns, a.priv_at_ns);
    e = pf_deadline_earlier(NULL, NULL);
    assert_true(pf_deadline_is_none(&e));
}

static void
test_deadline_earlier_across_clocks_uses_remaining_time(void **state)
{
    pf_clock_t *c = *state;
    pf_deadline_t manual = pf_deadline_in(c, 5.0);
    pf_deadline_t sys = pf_deadline_in(NULL, 3600.0);
    pf_deadline_t e = pf_deadline_earlier(&sys, &manual);

    assert_ptr_equal(e.priv_clock, c);
}

static void
test_deadline_ns_and_absolute_forms_agree(void **state)
{
    pf_clock_t *c = *state;
    pf_deadline_t a;
    pf_deadline_t b;

    pf_clock_manual_advance(c, 5 * NS_PER_SEC);
    a = pf_deadline_in_ns(c, 2 * NS_PER_SEC);
    b = pf_deadline_at_ns(c, 7 * NS_PER_SEC);
    assert_int_equal(a.priv_at_ns, b.priv_at_ns);
    assert_int_equal(pf_deadline_remaining_ns(&a), 2 * NS_PER_SEC);
    a = pf_deadline_in_ns(c, -3); /* negative: now, already passed */
    assert_true(pf_deadline_expired(&a));
    a = pf_deadline_in_ns(c, INT64_MAX);
    assert_true(pf_deadline_is_none(&a));
    a = pf_deadline_in_ns(c, INT64_MAX - 1); /* finite stays finite */
    assert_false(pf_deadline_is_none(&a));
    assert_int_equal(pf_deadline_remaining_ns(NULL), INT64_MAX);
}

static void
test_deadline_coarse_check_agrees_on_the_manual_clock(void **state)
{
    pf_clock_t *c = *state;
    pf_deadline_t d = pf_deadline_in(c, 1.0);
    pf_deadline_t n = pf_deadline_none();

    assert_false(pf_deadline_expired_coarse(&d));
    pf_clock_manual_advance(c, NS_PER_SEC - 1);
    assert_false(pf_deadline_expired_coarse(&d));
    pf_clock_manual_advance(c, 1);
    assert_true(pf_deadline_expired_coarse(&d));
    assert_false(pf_deadline_expired_coarse(&n));
    assert_false(pf_deadline_expired_coarse(NULL));
}

static void
test_deadline_coarse_check_is_never_early_on_the_system_clock(void **state)
{
    (void)state;
    /* A deadline just ahead: whenever the coarse check says expired, a
     * precise check made after it says so too (the coarse clock never
     * leads the precise one). The order matters: time passes between the
     * two reads. */
    for (int i = 0; i < 2000; i++) {
        pf_deadline_t d = pf_deadline_in_ns(NULL, (i % 50) * 1000);
        bool coarse;

        do {
            coarse = pf_deadline_expired_coarse(&d);
            if (coarse) {
                assert_true(pf_deadline_expired(&d));
            }
        } while (!pf_deadline_expired(&d));
    }
    {
        pf_deadline_t past = pf_deadline_in_ns(NULL, 1000);

        /* It does see it, one tick later at most (the test's time limit is
         * the safety net). */
        while (!pf_deadline_expired_coarse(&past)) {
            sched_yield();
        }
        assert_true(pf_deadline_expired(&past));
    }
}

static void
test_deadline_earlier_with_null_first_takes_the_second(void **state)
{
    pf_clock_t *c = *state;
    pf_deadline_t b = pf_deadline_in(c, 2.0);
    pf_deadline_t e = pf_deadline_earlier(NULL, &b);

    assert_int_equal(e.priv_at_ns, b.priv_at_ns);
    assert_ptr_equal(e.priv_clock, c);
}

/* ---- tokens ----------------------------------------------------------- */

static void
test_token_cancel_sets_flag_once(void **state)
{
    pf_token_t *t;

    (void)state;
    assert_pf_ok(pf_token_new(NULL, NULL, &t));
    assert_false(pf_token_is_cancelled(t));
    pf_token_cancel(t);
    assert_true(pf_token_is_cancelled(t));
    pf_token_cancel(t);
    assert_true(pf_token_is_cancelled(t));
    assert_false(pf_token_is_cancelled(NULL));
    pf_token_cancel(NULL);
    pf_token_free(t);
    pf_token_free(NULL);
}

static void
test_token_new_rejects_null_out(void **state)
{
    (void)state;
    assert_pf_err(pf_token_new(NULL, NULL, NULL), PF_EINVAL);
    assert_pf_err(pf_token_wait(NULL, NULL), PF_EINVAL);
}

static int g_calls;

static void
count_call(void *arg)
{
    (void)arg;
    g_calls++;
}

static void
test_token_callbacks_run_once_on_cancel(void **state)
{
    pf_token_t *t;
    pf_token_reg_t r1;
    pf_token_reg_t r2;
    pf_token_reg_t r3;

    (void)state;
    g_calls = 0;
    assert_pf_ok(pf_token_new(NULL, NULL, &t));
    assert_pf_ok(pf_token_on_cancel(t, &r1, count_call, NULL));
    assert_pf_ok(pf_token_on_cancel(t, &r2, count_call, NULL));
    assert_pf_ok(pf_token_on_cancel(t, &r3, count_call, NULL));
    pf_token_unregister(&r2);
    pf_token_cancel(t);
    assert_int_equal(g_calls, 2);
    pf_token_cancel(t);
    assert_int_equal(g_calls, 2);
    /* Registering on a cancelled token says so and never calls. */
    assert_pf_err(pf_token_on_cancel(t, &r2, count_call, NULL), PF_ECANCELED);
    assert_int_equal(g_calls, 2);
    pf_token_unregister(&r1); /* already ran: no-op */
    pf_token_unregister(&r2); /* never registered: no-op */
    assert_pf_err(pf_token_on_cancel(t, NULL, count_call, NULL), PF_EINVAL);
    assert_pf_err(pf_token_on_cancel(t, &r1, NULL, NULL), PF_EINVAL);
    pf_token_free(t);
}

static void
unregister_self(void *arg)
{
    pf_token_unregister(arg);
    g_calls++;
}

static void
test_token_callback_may_unregister_itself(void **state)
{
    pf_token_t *t;
    pf_token_reg_t r;

    (void)state;
    g_calls = 0;
    assert_pf_ok(pf_token_new(NULL, NULL, &t));
    assert_pf_ok(pf_token_on_cancel(t, &r, unregister_self, &r));
    pf_token_cancel(t);
    assert_int_equal(g_calls, 1);
    pf_token_free(t);
}

static void
test_token_cancelling_parent_cancels_descendants(void **state)
{
    pf_token_t *root;
    pf_token_t *child;
    pf_token_t *grandchild;
    pf_token_t *other;
    pf_token_reg_t r;

    (void)state;
    g_calls = 0;
    assert_pf_ok(pf_token_new(NULL, NULL, &root));
    assert_pf_ok(pf_token_new(root, NULL, &child));
    assert_pf_ok(pf_token_new(child, NULL, &grandchild));
    assert_pf_ok(pf_token_new(NULL, NULL, &other));
    assert_pf_ok(pf_token_on_cancel(grandchild, &r, count_call, NULL));
    pf_token_cancel(child); /* a child does not cancel its parent */
    assert_false(pf_token_is_cancelled(root));
    assert_true(pf_token_is_cancelled(child));
    assert_true(pf_token_is_cancelled(grandchild));
    assert_int_equal(g_calls, 1);
    pf_token_cancel(root);
    assert_false(pf_token_is_cancelled(other));
    pf_token_free(grandchild);
    pf_token_free(child);
    pf_token_free(root);
    pf_token_free(other);
}

static void
test_token_child_of_cancelled_parent_is_born_cancelled(void **state)
{
    pf_token_t *p;
    pf_token_t *c;

    (void)state;
    assert_pf_ok(pf_token_new(NULL, NULL, &p));
    pf_token_cancel(p);
    assert_pf_ok(pf_token_new(p, NULL, &c));
    assert_true(pf_token_is_cancelled(c));
    pf_token_free(c);
    pf_token_free(p);
}

static void
test_token_parent_may_be_freed_before_child(void **state)
{
    pf_token_t *p;
    pf_token_t *c;

    (void)state;
    assert_pf_ok(pf_token_new(NULL, NULL, &p));
    assert_pf_ok(pf_token_new(p, NULL, &c));
    pf_token_free(p);
    assert_false(pf_token_is_cancelled(c));
    pf_token_cancel(c);
    assert_true(pf_token_is_cancelled(c));
    pf_token_free(c);
}

static void
test_token_child_deadline_never_later_than_parent(void **state)
{
    pf_clock_t *clock = *state;
    pf_deadline_t pd = pf_deadline_in(clock, 5.0);
    pf_deadline_t late = pf_deadline_in(clock, 50.0);
    pf_deadline_t soon = pf_deadline_in(clock, 1.0);
    pf_token_t *p;
    pf_token_t *c1;
    pf_token_t *c2;
    pf_token_t *c3;
    pf_deadline_t d;

    assert_pf_ok(pf_token_new(NULL, &pd, &p));
    assert_pf_ok(pf_token_new(p, &late, &c1));
    assert_pf_ok(pf_token_new(p, &soon, &c2));
    assert_pf_ok(pf_token_new(p, NULL, &c3));
    d = pf_token_deadline(c1);
    assert_int_equal(d.priv_at_ns, 5 * NS_PER_SEC);
    d = pf_token_deadline(c2);
    assert_int_equal(d.priv_at_ns, 1 * NS_PER_SEC);
    d = pf_token_deadline(c3);
    assert_int_equal(d.priv_at_ns, 5 * NS_PER_SEC);
    d = pf_token_deadline(NULL);
    assert_true(pf_deadline_is_none(&d));
    pf_token_free(c1);
    pf_token_free(c2);
    pf_token_free(c3);
    pf_token_free(p);
}

typedef struct token_waiter {
    pf_token_t *tok;
    pf_deadline_t d;
    int rc;
} token_waiter_t;

static void *
token_wait_thread(void *p)
{
    token_waiter_t *w = p;

    w->rc = pf_token_wait(w->tok, &w->d);
    return NULL;
}

static void
test_token_wait_returns_on_cancel_or_deadline(void **state)
{
    pf_clock_t *c = *state;
    token_waiter_t w;
    pthread_t t;

    assert_pf_ok(pf_token_new(NULL, NULL, &w.tok));
    w.d = pf_deadline_in(c, 3.0);
    assert_int_equal(pthread_create(&t, NULL, token_wait_thread, &w), 0);
    pf_test_wait_for_waiters(c, 1);
    pf_clock_manual_advance(c, 3 * NS_PER_SEC);
    pthread_join(t, NULL);
    assert_pf_err(w.rc, PF_ETIMEDOUT);

    w.d = pf_deadline_in(c, 3.0);
    assert_int_equal(pthread_create(&t, NULL, token_wait_thread, &w), 0);
    pf_test_wait_for_waiters(c, 1);
    pf_token_cancel(w.tok);
    pthread_join(t, NULL);
    assert_pf_err(w.rc, PF_ECANCELED);
    pf_token_free(w.tok);
}

static void
test_token_wait_ends_at_the_token_deadline(void **state)
{
    pf_clock_t *c = *state;
    pf_deadline_t td = pf_deadline_in(c, 2.0);
    token_waiter_t w;
    pthread_t t;

    assert_pf_ok(pf_token_new(NULL, &td, &w.tok));
    w.d = pf_deadline_in(c, 60.0); /* later than the token's own */
    assert_int_equal(pthread_create(&t, NULL, token_wait_thread, &w), 0);
    pf_test_wait_for_waiters(c, 1);
    pf_clock_manual_advance(c, 2 * NS_PER_SEC);
    pthread_join(t, NULL);
    assert_pf_err(w.rc, PF_ETIMEDOUT);
    /* Reaching the deadline does not cancel the token. */
    assert_false(pf_token_is_cancelled(w.tok));
    /* Already passed: returns at once. */
    assert_pf_err(pf_token_wait(w.tok, NULL), PF_ETIMEDOUT);
    pf_token_cancel(w.tok);
    assert_pf_err(pf_token_wait(w.tok, NULL), PF_ECANCELED);
    pf_token_free(w.tok);
}

/* A callback that blocks until released, so unregister can be seen to wait
 * for it. */
typedef struct slow_cb {
    atomic_int running;
    atomic_int release;
    atomic_int finished;
    pf_token_t *tok;
    pf_token_reg_t reg;
    atomic_int unregistered;
} slow_cb_t;

static void
slow_callback(void *arg)
{
    slow_cb_t *s = arg;

    atomic_store(&s->running, 1);
    pf_test_wait_for_flag(&s->release, 1);
    atomic_store(&s->finished, 1);
}

static void *
cancel_thread(void *arg)
{
    pf_token_cancel(((slow_cb_t *)arg)->tok);
    return NULL;
}

static void *
unregister_thread(void *arg)
{
    slow_cb_t *s = arg;

    pf_token_unregister(&s->reg);
    /* The callback has certainly returned by now. */
    atomic_store(&s->unregistered, 1 + atomic_load(&s->finished));
    return NULL;
}

static void
test_token_unregister_waits_for_a_running_callback(void **state)
{
    slow_cb_t s;
    pthread_t canceller;
    pthread_t unreg;

    (void)state;
    atomic_init(&s.running, 0);
    atomic_init(&s.release, 0);
    atomic_init(&s.finished, 0);
    atomic_init(&s.unregistered, 0);
    assert_pf_ok(pf_token_new(NULL, NULL, &s.tok));
    assert_pf_ok(pf_token_on_cancel(s.tok, &s.reg, slow_callback, &s));
    assert_int_equal(pthread_create(&canceller, NULL, cancel_thread, &s), 0);
    pf_test_wait_for_flag(&s.running, 1);
    assert_int_equal(pthread_create(&unreg, NULL, unregister_thread, &s), 0);
    atomic_store(&s.release, 1);
    pthread_join(unreg, NULL);
    pthread_join(canceller, NULL);
    assert_int_equal(atomic_load(&s.unregistered), 2);
    pf_token_free(s.tok);
}

static void
test_token_deadline_converts_to_another_clock(void **state)
{
    pf_clock_t *c = *state;
    pf_clock_t *other;
    pf_deadline_t d = pf_deadline_in(c, 3.0);
    pf_token_t *t;

    assert_pf_ok(pf_clock_manual_new(&other));
    pf_clock_manual_advance(other, 50 * NS_PER_SEC);
    assert_pf_ok(pf_token_new(NULL, &d, &t));
    assert_int_equal(pf__token_deadline_on(t, c), 3 * NS_PER_SEC);
    assert_int_equal(pf__token_deadline_on(t, other), 53 * NS_PER_SEC);
    assert_int_equal(pf__token_deadline_on(NULL, c), PF_DEADLINE_NEVER_NS);
    pf_token_free(t);
    pf_clock_free(other);
}

/* Cancel races with registrations, unregistrations, waits and children
 * being created and freed: every registered callback runs at most once, a
 * callback unregistered before cancel never runs, and all ends cleanly. */
typedef struct storm {
    pf_token_t *root;
    atomic_int ran;
    atomic_int registered_at_cancel;
} storm_t;

static void
storm_cb(void *arg)
{
    atomic_fetch_add((atomic_int *)arg, 1);
}

static void
storm_fn(void *arg, unsigned i)
{
    storm_t *s = arg;

    if (i == 0) {
        for (int k = 0; k < 200; k++) {
            sched_yield();
        }
        pf_token_cancel(s->root);
        return;
    }
    for (int k = 0; k < 300; k++) {
        pf_token_t *child;
        pf_token_reg_t r;
        atomic_int ran = 0;

        if (pf_token_new(s->root, NULL, &child) != 0) {
            fail();
        }
        if (pf_token_on_cancel(child, &r, storm_cb, &ran) == 0) {
            pf_token_unregister(&r);
            /* After unregister, the callback has run fully or never. */
            assert_true(atomic_load(&ran) <= 1);
            int seen = atomic_load(&ran);
            sched_yield();
            assert_int_equal(atomic_load(&ran), seen);
        }
        atomic_fetch_add(&s->ran, atomic_load(&ran));
        pf_token_free(child);
    }
}

static void
test_token_cancel_storm_is_clean(void **state)
{
    storm_t s;

    (void)state;
    assert_pf_ok(pf_token_new(NULL, NULL, &s.root));
    atomic_init(&s.ran, 0);
    atomic_init(&s.registered_at_cancel, 0);
    pf_test_run_threads(8, storm_fn, &s);
    assert_true(pf_token_is_cancelled(s.root));
    pf_token_free(s.root);
}

static void
alloc_scenario(void *arg)
{
    pf_token_t *p = NULL;
    pf_token_t *c = NULL;
    int rc;

    (void)arg;
    rc = pf_token_new(NULL, NULL, &p);
    if (rc == PF_ENOMEM) {
        return;
    }
    rc = pf_token_new(p, NULL, &c);
    if (rc == PF_ENOMEM) {
        pf_token_cancel(p); /* the parent still works */
        assert_true(pf_token_is_cancelled(p));
        pf_token_free(p);
        return;
    }
    pf_token_cancel(p);
    assert_true(pf_token_is_cancelled(c));
    pf_token_free(c);
    pf_token_free(p);
}

static void
test_token_allocation_failures_leak_nothing(void **state)
{
    (void)state;
    assert_int_equal(pf_test_alloc_sweep(alloc_scenario, NULL), 3);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        CLOCK_TEST(test_deadline_in_counts_down_on_the_manual_clock),
        CLOCK_TEST(test_deadline_bad_seconds_give_an_expired_deadline),
        CLOCK_TEST(test_deadline_none_never_expires),
        CLOCK_TEST(test_deadline_earlier_picks_the_sooner),
        CLOCK_TEST(test_deadline_earlier_across_clocks_uses_remaining_time),
        CLOCK_TEST(test_deadline_ns_and_absolute_forms_agree),
        CLOCK_TEST(test_deadline_coarse_check_agrees_on_the_manual_clock),
        cmocka_unit_test(
            test_deadline_coarse_check_is_never_early_on_the_system_clock),
        CLOCK_TEST(test_deadline_earlier_with_null_first_takes_the_second),
        cmocka_unit_test(test_token_cancel_sets_flag_once),
        cmocka_unit_test(test_token_new_rejects_null_out),
        cmocka_unit_test(test_token_callbacks_run_once_on_cancel),
        cmocka_unit_test(test_token_callback_may_unregister_itself),
        cmocka_unit_test(test_token_cancelling_parent_cancels_descendants),
        cmocka_unit_test(test_token_child_of_cancelled_parent_is_born_cancelled),
        cmocka_unit_test(test_token_parent_may_be_freed_before_child),
        CLOCK_TEST(test_token_child_deadline_never_later_than_parent),
        CLOCK_TEST(test_token_wait_returns_on_cancel_or_deadline),
        CLOCK_TEST(test_token_wait_ends_at_the_token_deadline),
        cmocka_unit_test(test_token_unregister_waits_for_a_running_callback),
        CLOCK_TEST(test_token_deadline_converts_to_another_clock),
        cmocka_unit_test(test_token_cancel_storm_is_clean),
        cmocka_unit_test(test_token_allocation_failures_leak_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
