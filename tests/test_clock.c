/* Clocks and the wait primitive: the manual clock moves only by hand, a
 * wait on it wakes exactly when time passes its deadline (also with many
 * waiters), a wait on the system clock times out for real, and tokens cut
 * waits short. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "puffinflow/deadline.h"
#include "test.h"
#include "wait.h"

static void
test_clock_manual_starts_at_zero_and_moves_by_hand(void **state)
{
    pf_clock_t *c = *state;

    assert_int_equal(pf_clock_now_ns(c), 0);
    assert_true(pf_clock_is_manual(c));
    pf_clock_manual_advance(c, 1500);
    assert_int_equal(pf_clock_now_ns(c), 1500);
    pf_clock_manual_advance(c, -10); /* ignored */
    pf_clock_manual_advance(c, 0);
    assert_int_equal(pf_clock_now_ns(c), 1500);
    pf_clock_manual_set(c, 1000); /* never backwards */
    assert_int_equal(pf_clock_now_ns(c), 1500);
    pf_clock_manual_set(c, 3 * NS_PER_SEC);
    assert_true(pf_clock_now(c) == 3.0);
}

static void
test_clock_manual_saturates_below_never(void **state)
{
    pf_clock_t *c = *state;

    pf_clock_manual_advance(c, INT64_MAX);
    pf_clock_manual_advance(c, INT64_MAX);
    assert_int_equal(pf_clock_now_ns(c), INT64_MAX - 1);
}

static void
test_clock_system_is_monotonic_and_not_manual(void **state)
{
    int64_t a = pf_clock_now_ns(NULL);
    int64_t b = pf_clock_now_ns(pf_clock_system());

    (void)state;
    assert_true(b >= a);
    assert_false(pf_clock_is_manual(NULL));
    assert_false(pf_clock_is_manual(pf_clock_system()));
    pf_clock_manual_advance((pf_clock_t *)pf_clock_system(), 100); /* no-op */
    pf_clock_free((pf_clock_t *)pf_clock_system());                /* no-op */
    pf_clock_free(NULL);
    assert_int_equal(pf_clock_manual_waiters(NULL), 0);
    assert_true(pf_wall_time_ns() > INT64_C(1600000000) * NS_PER_SEC);
}

static void
test_clock_manual_new_rejects_null(void **state)
{
    (void)state;
    assert_pf_err(pf_clock_manual_new(NULL), PF_EINVAL);
}

static void
test_clock_sleep_rejects_bad_durations(void **state)
{
    pf_clock_t *c = *state;

    assert_pf_err(pf_clock_sleep(c, -1.0), PF_EINVAL);
    assert_pf_err(pf_clock_sleep(c, NAN), PF_EINVAL);
    assert_pf_ok(pf_clock_sleep(c, 0.0));
}

/* ---- one waiter ------------------------------------------------------- */

typedef struct waiter {
    pf_clock_t *clock;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int64_t deadline;
    pf_token_t *tok;
    bool ready; /* the predicate, under mu */
    atomic_int done;
    int rc;
    int64_t woke_at;
} waiter_t;

static void *
wait_thread(void *p)
{
    waiter_t *w = p;
    int rc;

    pthread_mutex_lock(&w->mu);
    do {
        rc = pf__wait_until(&w->cv, &w->mu, w->clock, w->deadline, w->tok);
    } while (rc == 0 && !w->ready);
    pthread_mutex_unlock(&w->mu);
    w->woke_at = pf_clock_now_ns(w->clock);
    w->rc = rc;
    atomic_store(&w->done, 1);
    return NULL;
}

static void
waiter_init(waiter_t *w, pf_clock_t *c, int64_t deadline)
{
    w->clock = c;
    pthread_mutex_init(&w->mu, NULL);
    assert_pf_ok(pf__cond_init(&w->cv));
    w->deadline = deadline;
    w->tok = NULL;
    w->ready = false;
    atomic_init(&w->done, 0);
}

static void
waiter_destroy(waiter_t *w)
{
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
}

static void
test_clock_wait_wakes_only_when_advanced_past_deadline(void **state)
{
    pf_clock_t *c = *state;
    waiter_t w;
    pthread_t t;

    waiter_init(&w, c, 10 * NS_PER_SEC);
    assert_int_equal(pthread_create(&t, NULL, wait_thread, &w), 0);
    pf_test_wait_for_waiters(c, 1);
    pf_clock_manual_advance(c, 9 * NS_PER_SEC);
    /* Still parked: it can only finish once the clock reads 10 s. */
    pf_test_wait_for_waiters(c, 1);
    assert_int_equal(atomic_load(&w.done), 0);
    pf_clock_manual_advance(c, 1 * NS_PER_SEC);
    pthread_join(t, NULL);
    assert_int_equal(w.rc, PF_ETIMEDOUT);
    assert_int_equal(w.woke_at, 10 * NS_PER_SEC);
    assert_int_equal(pf_clock_manual_waiters(c), 0);
    waiter_destroy(&w);
}

static void
test_clock_wait_returns_at_once_when_deadline_passed(void **state)
{
    pf_clock_t *c = *state;
    waiter_t w;

    pf_clock_manual_advance(c, 5);
    waiter_init(&w, c, 5);
    pthread_mutex_lock(&w.mu);
    assert_pf_err(pf__wait_until(&w.cv, &w.mu, c, 5, NULL), PF_ETIMEDOUT);
    assert_pf_err(pf__wait_until(&w.cv, &w.mu, c, 0, NULL), PF_ETIMEDOUT);
    pthread_mutex_unlock(&w.mu);
    waiter_destroy(&w);
}

static void
test_clock_wait_is_woken_by_its_condition(void **state)
{
    pf_clock_t *c = *state;
    waiter_t w;
    pthread_t t;

    waiter_init(&w, c, PF_DEADLINE_NEVER_NS);
    assert_int_equal(pthread_create(&t, NULL, wait_thread, &w), 0);
    pf_test_wait_for_waiters(c, 1);
    pthread_mutex_lock(&w.mu);
    w.ready = true;
    pthread_cond_signal(&w.cv);
    pthread_mutex_unlock(&w.mu);
    pthread_join(t, NULL);
    assert_pf_ok(w.rc);
    assert_int_equal(pf_clock_now_ns(c), 0); /* no time had to pass */
    assert_int_equal(pf_clock_manual_waiters(c), 0);
    waiter_destroy(&w);
}

static void
test_clock_wait_is_cut_short_by_a_cancelled_token(void **state)
{
    pf_clock_t *c = *state;
    waiter_t w;
    pthread_t t;

    waiter_init(&w, c, 100 * NS_PER_SEC);
    assert_pf_ok(pf_token_new(NULL, NULL, &w.tok));
    assert_int_equal(pthread_create(&t, NULL, wait_thread, &w), 0);
    pf_test_wait_for_waiters(c, 1);
    pf_token_cancel(w.tok);
    pthread_join(t, NULL);
    assert_pf_err(w.rc, PF_ECANCELED);
    assert_int_equal(pf_clock_now_ns(c), 0);
    /* Already cancelled: returns at once, without waiting. */
    wait_thread(&w);
    assert_pf_err(w.rc, PF_ECANCELED);
    pf_token_free(w.tok);
    waiter_destroy(&w);
}

static void
test_clock_wait_honours_token_deadline_on_manual_clock(void **state)
{
    pf_clock_t *c = *state;
    pf_deadline_t d = pf_deadline_in(c, 2.0);
    waiter_t w;
    pthread_t t;

    waiter_init(&w, c, 100 * NS_PER_SEC);
    assert_pf_ok(pf_token_new(NULL, &d, &w.tok));
    assert_int_equal(pthread_create(&t, NULL, wait_thread, &w), 0);
    pf_test_wait_for_waiters(c, 1);
    pf_clock_manual_advance(c, 2 * NS_PER_SEC);
    pthread_join(t, NULL);
    assert_pf_err(w.rc, PF_ETIMEDOUT);
    assert_int_equal(w.woke_at, 2 * NS_PER_SEC);
    pf_token_free(w.tok);
    waiter_destroy(&w);
}

/* ---- many waiters on one manual clock -------------------------------- */

#define MANY 32

static void
test_clock_many_waiters_each_wake_at_their_deadline(void **state)
{
    pf_clock_t *c = *state;
    waiter_t w[MANY];
    pthread_t t[MANY];

    for (int i = 0; i < MANY; i++) {
        /* Deadlines 1..MANY ms, two waiters per deadline in places. */
        waiter_init(&w[i], c, (int64_t)(i / 2 + 1) * NS_PER_MS);
        assert_int_equal(pthread_create(&t[i], NULL, wait_thread, &w[i]), 0);
    }
    pf_test_wait_for_waiters(c, MANY);
    for (int step = 1; step <= MANY / 2; step++) {
        pf_clock_manual_advance(c, NS_PER_MS);
        /* Everyone due by now finishes; nobody later has. */
        for (int i = 0; i < MANY; i++) {
            if (i / 2 + 1 <= step) {
                pf_test_wait_for_flag(&w[i].done, 1);
            } else {
                assert_int_equal(atomic_load(&w[i].done), 0);
            }
        }
    }
    for (int i = 0; i < MANY; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].rc, PF_ETIMEDOUT);
        assert_true(w[i].woke_at >= w[i].deadline);
        waiter_destroy(&w[i]);
    }
    assert_int_equal(pf_clock_manual_waiters(c), 0);
}

/* Many threads advancing while many wait: no wake-up is lost and no time
 * step is lost. */
typedef struct race {
    pf_clock_t *clock;
    waiter_t *w;
} race_t;

static void
race_fn(void *arg, unsigned i)
{
    race_t *r = arg;

    if (i < 4) {
        for (int k = 0; k < 250; k++) {
            pf_clock_manual_advance(r->clock, NS_PER_MS);
        }
        return;
    }
    wait_thread(&r->w[i - 4]);
}

static void
test_clock_concurrent_advances_and_waits_lose_nothing(void **state)
{
    pf_clock_t *c = *state;
    waiter_t w[16];
    race_t r = {c, w};

    for (int i = 0; i < 16; i++) {
        waiter_init(&w[i], c, (int64_t)(i * 60 + 1) * NS_PER_MS);
    }
    pf_test_run_threads(20, race_fn, &r);
    assert_int_equal(pf_clock_now_ns(c), 1000 * NS_PER_MS);
    for (int i = 0; i < 16; i++) {
        assert_int_equal(w[i].rc, PF_ETIMEDOUT);
        assert_true(w[i].woke_at >= w[i].deadline);
        waiter_destroy(&w[i]);
    }
}

/* ---- the system clock ------------------------------------------------- */

static void
test_clock_system_wait_times_out_for_real(void **state)
{
    waiter_t w;
    int64_t start = pf_clock_now_ns(NULL);

    (void)state;
    waiter_init(&w, NULL, start + 20 * NS_PER_MS);
    wait_thread(&w);
    assert_int_equal(w.rc, PF_ETIMEDOUT);
    assert_true(pf_clock_now_ns(NULL) >= start + 20 * NS_PER_MS);
    waiter_destroy(&w);
}

static void
test_clock_system_wait_honours_token_deadline(void **state)
{
    waiter_t w;
    pf_deadline_t d = pf_deadline_in(NULL, 0.02);

    (void)state;
    waiter_init(&w, NULL, PF_DEADLINE_NEVER_NS);
    assert_pf_ok(pf_token_new(NULL, &d, &w.tok));
    wait_thread(&w);
    assert_int_equal(w.rc, PF_ETIMEDOUT);
    assert_true(pf_deadline_expired(&d));
    pf_token_free(w.tok);
    waiter_destroy(&w);
}

static atomic_int g_slept;

static void *
sleep_thread(void *p)
{
    pf_clock_sleep(p, 3.0);
    atomic_store(&g_slept, 1);
    return NULL;
}

static void
test_clock_sleep_on_manual_clock_returns_after_advance(void **state)
{
    pf_clock_t *c = *state;
    pthread_t t;

    atomic_store(&g_slept, 0);
    assert_int_equal(pthread_create(&t, NULL, sleep_thread, c), 0);
    pf_test_wait_for_waiters(c, 1);
    pf_clock_manual_advance(c, 2 * NS_PER_SEC);
    pf_test_wait_for_waiters(c, 1);
    assert_int_equal(atomic_load(&g_slept), 0);
    pf_clock_manual_advance(c, 1 * NS_PER_SEC);
    pthread_join(t, NULL);
    assert_int_equal(atomic_load(&g_slept), 1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_clock_manual_starts_at_zero_and_moves_by_hand,
            pf_test_clock_setup, pf_test_clock_teardown),
        cmocka_unit_test_setup_teardown(test_clock_manual_saturates_below_never,
                                        pf_test_clock_setup,
                                        pf_test_clock_teardown),
        cmocka_unit_test(test_clock_system_is_monotonic_and_not_manual),
        cmocka_unit_test(test_clock_manual_new_rejects_null),
        cmocka_unit_test_setup_teardown(test_clock_sleep_rejects_bad_durations,
                                        pf_test_clock_setup,
                                        pf_test_clock_teardown),
        cmocka_unit_test_setup_teardown(
            test_clock_wait_wakes_only_when_advanced_past_deadline,
            pf_test_clock_setup, pf_test_clock_teardown),
        cmocka_unit_test_setup_teardown(
            test_clock_wait_returns_at_once_when_deadline_passed,
            pf_test_clock_setup, pf_test_clock_teardown),
        cmocka_unit_test_setup_teardown(test_clock_wait_is_woken_by_its_condition,
                                        pf_test_clock_setup,
                                        pf_test_clock_teardown),
        cmocka_unit_test_setup_teardown(
            test_clock_wait_is_cut_short_by_a_cancelled_token,
            pf_test_clock_setup, pf_test_clock_teardown),
        cmocka_unit_test_setup_teardown(
            test_clock_wait_honours_token_deadline_on_manual_clock,
            pf_test_clock_setup, pf_test_clock_teardown),
        cmocka_unit_test_setup_teardown(
            test_clock_sleep_on_manual_clock_returns_after_advance,
            pf_test_clock_setup, pf_test_clock_teardown),
        cmocka_unit_test_setup_teardown(
            test_clock_many_waiters_each_wake_at_their_deadline,
            pf_test_clock_setup, pf_test_clock_teardown),
        cmocka_unit_test_setup_teardown(
            test_clock_concurrent_advances_and_waits_lose_nothing,
            pf_test_clock_setup, pf_test_clock_teardown),
        cmocka_unit_test(test_clock_system_wait_times_out_for_real),
        cmocka_unit_test(test_clock_system_wait_honours_token_deadline),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
