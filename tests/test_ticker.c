/* The periodic ticker of src/base/ticker.c, driven by a manual clock: the
 * first tick at once, a fixed rate, no burst after a jump, stop wakes a
 * parked thread at once, start/stop states, stop from the tick itself. */
#include <stdatomic.h>
#include <string.h>

#include "test.h"
#include "ticker.h"

#define INTERVAL (10 * NS_PER_SEC)

typedef struct counter {
    pf__ticker_t *t;
    pf_clock_t *clock;
    atomic_int ticks;
    int64_t busy_ns;    /* each tick advances the clock this much */
    int64_t at[8];      /* clock reading at the start of each tick */
    atomic_int stop_rc; /* what a stop from the tick returned */
    bool stop_in_tick;
} counter_t;

static void
count_tick(void *arg)
{
    counter_t *c = arg;
    int n = atomic_load(&c->ticks);

    if (n < 8) {
        c->at[n] = pf_clock_now_ns(c->clock);
    }
    if (c->busy_ns > 0) {
        pf_clock_manual_advance(c->clock, c->busy_ns);
    }
    if (c->stop_in_tick) {
        atomic_store(&c->stop_rc, pf__ticker_stop(c->t));
    }
    atomic_fetch_add(&c->ticks, 1);
}

static void
counter_init(counter_t *c, pf__ticker_t *t, pf_clock_t *clock)
{
    memset(c, 0, sizeof(*c));
    c->t = t;
    c->clock = clock;
    atomic_init(&c->ticks, 0);
    atomic_init(&c->stop_rc, 1);
}

/* Wait until the ticker has made n ticks and parked on the clock. */
static void
settle(counter_t *c, int n)
{
    pf_test_wait_for_flag(&c->ticks, n);
    pf_test_wait_for_waiters(c->clock, 1);
    assert_int_equal(atomic_load(&c->ticks), n);
}

static void
test_ticker_ticks_at_once_then_every_interval(void **state)
{
    pf_clock_t *clock = *state;
    pf__ticker_t t;
    counter_t c;

    counter_init(&c, &t, clock);
    assert_pf_ok(pf__ticker_init(&t, clock, INTERVAL, count_tick, &c));
    assert_false(pf__ticker_running(&t));
    assert_pf_ok(pf__ticker_start(&t));
    assert_true(pf__ticker_running(&t));
    settle(&c, 1);
    pf_clock_manual_advance(clock, INTERVAL - 1);
    assert_int_equal(pf_clock_manual_waiters(clock), 1); /* not yet due */
    assert_int_equal(atomic_load(&c.ticks), 1);
    pf_clock_manual_advance(clock, 1);
    settle(&c, 2);
    pf_clock_manual_advance(clock, INTERVAL);
    settle(&c, 3);
    assert_int_equal(c.at[0], 0);
    assert_int_equal(c.at[1], INTERVAL);
    assert_int_equal(c.at[2], 2 * INTERVAL);
    assert_pf_ok(pf__ticker_stop(&t));
    pf__ticker_destroy(&t);
}

static void
test_ticker_keeps_a_fixed_rate_when_a_tick_takes_time(void **state)
{
    pf_clock_t *clock = *state;
    pf__ticker_t t;
    counter_t c;

    counter_init(&c, &t, clock);
    c.busy_ns = 4 * NS_PER_SEC; /* each tick takes 4 s of the 10 */
    assert_pf_ok(pf__ticker_init(&t, clock, INTERVAL, count_tick, &c));
    assert_pf_ok(pf__ticker_start(&t));
    settle(&c, 1);
    /* Due 10 s after the first was due, not 10 s after it ended. */
    pf_clock_manual_advance(clock, 6 * NS_PER_SEC - 1);
    assert_int_equal(atomic_load(&c.ticks), 1);
    pf_clock_manual_advance(clock, 1);
    settle(&c, 2);
    assert_int_equal(c.at[1], INTERVAL);
    pf_clock_manual_advance(clock, 6 * NS_PER_SEC);
    settle(&c, 3);
    assert_int_equal(c.at[2], 2 * INTERVAL);
    pf__ticker_destroy(&t);
}

static void
test_ticker_skips_missed_ticks_after_a_jump(void **state)
{
    pf_clock_t *clock = *state;
    pf__ticker_t t;
    counter_t c;

    counter_init(&c, &t, clock);
    assert_pf_ok(pf__ticker_init(&t, clock, INTERVAL, count_tick, &c));
    assert_pf_ok(pf__ticker_start(&t));
    settle(&c, 1);
    /* Three intervals at once: one tick, no burst; the next is due one
     * interval after it. */
    pf_clock_manual_advance(clock, 3 * INTERVAL + NS_PER_SEC);
    settle(&c, 2);
    assert_int_equal(c.at[1], 3 * INTERVAL + NS_PER_SEC);
    pf_clock_manual_advance(clock, INTERVAL - 1);
    assert_int_equal(atomic_load(&c.ticks), 2);
    pf_clock_manual_advance(clock, 1);
    settle(&c, 3);
    assert_int_equal(c.at[2], 4 * INTERVAL + NS_PER_SEC);
    pf__ticker_destroy(&t);
}

static void
test_ticker_skips_missed_ticks_after_an_overrun(void **state)
{
    pf_clock_t *clock = *state;
    pf__ticker_t t;
    counter_t c;

    counter_init(&c, &t, clock);
    c.busy_ns = 25 * NS_PER_SEC; /* each tick takes 2.5 intervals */
    assert_pf_ok(pf__ticker_init(&t, clock, INTERVAL, count_tick, &c));
    assert_pf_ok(pf__ticker_start(&t));
    settle(&c, 1);
    /* The first tick ended at 25 s: the next is due at 35 s. */
    pf_clock_manual_advance(clock, INTERVAL - 1);
    assert_int_equal(atomic_load(&c.ticks), 1);
    pf_clock_manual_advance(clock, 1);
    settle(&c, 2);
    assert_int_equal(c.at[1], 35 * NS_PER_SEC);
    pf__ticker_destroy(&t);
}

static void
test_ticker_stop_wakes_a_parked_thread_without_the_clock_moving(void **state)
{
    pf_clock_t *clock = *state;
    pf__ticker_t t;
    counter_t c;

    counter_init(&c, &t, clock);
    assert_pf_ok(pf__ticker_init(&t, clock, INTERVAL, count_tick, &c));
    assert_pf_ok(pf__ticker_start(&t));
    settle(&c, 1);
    assert_pf_ok(pf__ticker_stop(&t));
    assert_false(pf__ticker_running(&t));
    assert_int_equal(pf_clock_manual_waiters(clock), 0);
    assert_int_equal(pf_clock_now_ns(clock), 0);
    pf_clock_manual_advance(clock, 5 * INTERVAL);
    assert_int_equal(atomic_load(&c.ticks), 1); /* no thread left */
    pf__ticker_destroy(&t);
}

static void
test_ticker_start_and_stop_report_the_state(void **state)
{
    pf_clock_t *clock = *state;
    pf__ticker_t t;
    counter_t c;

    counter_init(&c, &t, clock);
    assert_pf_ok(pf__ticker_init(&t, clock, INTERVAL, count_tick, &c));
    assert_pf_err(pf__ticker_stop(&t), PF_ESTATE);
    assert_pf_ok(pf__ticker_start(&t));
    assert_pf_err(pf__ticker_start(&t), PF_ESTATE);
    settle(&c, 1);
    assert_pf_ok(pf__ticker_stop(&t));
    assert_pf_err(pf__ticker_stop(&t), PF_ESTATE);
    /* Restartable: a new thread ticks at once again. */
    assert_pf_ok(pf__ticker_start(&t));
    settle(&c, 2);
    /* Destroy stops a running ticker. */
    pf__ticker_destroy(&t);
    assert_int_equal(pf_clock_manual_waiters(clock), 0);
}

static void
test_ticker_stop_from_its_own_tick_is_estate(void **state)
{
    pf_clock_t *clock = *state;
    pf__ticker_t t;
    counter_t c;

    counter_init(&c, &t, clock);
    c.stop_in_tick = true;
    assert_pf_ok(pf__ticker_init(&t, clock, INTERVAL, count_tick, &c));
    assert_pf_ok(pf__ticker_start(&t));
    settle(&c, 1);
    assert_int_equal(atomic_load(&c.stop_rc), PF_ESTATE);
    assert_true(pf__ticker_running(&t));
    assert_pf_ok(pf__ticker_stop(&t));
    pf__ticker_destroy(&t);
}

static void
test_ticker_infinite_interval_ticks_once(void **state)
{
    pf_clock_t *clock = *state;
    pf__ticker_t t;
    counter_t c;

    counter_init(&c, &t, clock);
    assert_pf_ok(pf__ticker_init(&t, clock, INT64_MAX, count_tick, &c));
    assert_pf_ok(pf__ticker_start(&t));
    settle(&c, 1);
    pf_clock_manual_advance(clock, INT64_MAX / 2);
    assert_int_equal(pf_clock_manual_waiters(clock), 1);
    assert_int_equal(atomic_load(&c.ticks), 1);
    assert_pf_ok(pf__ticker_stop(&t));
    pf__ticker_destroy(&t);
}

static void
test_ticker_init_rejects_bad_arguments(void **state)
{
    pf_clock_t *clock = *state;
    pf__ticker_t t;
    counter_t c;

    counter_init(&c, &t, clock);
    assert_pf_err(pf__ticker_init(NULL, clock, INTERVAL, count_tick, &c),
                  PF_EINVAL);
    assert_pf_err(pf__ticker_init(&t, clock, INTERVAL, NULL, &c), PF_EINVAL);
    assert_pf_err(pf__ticker_init(&t, clock, 0, count_tick, &c), PF_EINVAL);
    assert_pf_err(pf__ticker_init(&t, clock, -1, count_tick, &c), PF_EINVAL);
}

typedef struct stopper {
    pf__ticker_t *t;
    atomic_int ok;
} stopper_t;

static void
stop_thread(void *arg, unsigned i)
{
    stopper_t *s = arg;

    (void)i;
    if (pf__ticker_stop(s->t) == 0) {
        atomic_fetch_add(&s->ok, 1);
    }
}

static void
test_ticker_concurrent_stops_join_once(void **state)
{
    pf_clock_t *clock = *state;
    pf__ticker_t t;
    counter_t c;
    stopper_t s = {&t, 0};
    int round;

    counter_init(&c, &t, clock);
    assert_pf_ok(pf__ticker_init(&t, clock, INTERVAL, count_tick, &c));
    for (round = 0; round < 50; round++) {
        atomic_store(&s.ok, 0);
        assert_pf_ok(pf__ticker_start(&t));
        pf_test_run_threads(4, stop_thread, &s);
        assert_int_equal(atomic_load(&s.ok), 1);
        assert_false(pf__ticker_running(&t));
    }
    pf__ticker_destroy(&t);
    assert_int_equal(pf_clock_manual_waiters(clock), 0);
}

#define CLOCK_TEST(f)                                                          \
    cmocka_unit_test_setup_teardown(f, pf_test_clock_setup,                    \
                                    pf_test_clock_teardown)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        CLOCK_TEST(test_ticker_ticks_at_once_then_every_interval),
        CLOCK_TEST(test_ticker_keeps_a_fixed_rate_when_a_tick_takes_time),
        CLOCK_TEST(test_ticker_skips_missed_ticks_after_a_jump),
        CLOCK_TEST(test_ticker_skips_missed_ticks_after_an_overrun),
        CLOCK_TEST(
            test_ticker_stop_wakes_a_parked_thread_without_the_clock_moving),
        CLOCK_TEST(test_ticker_start_and_stop_report_the_state),
        CLOCK_TEST(test_ticker_stop_from_its_own_tick_is_estate),
        CLOCK_TEST(test_ticker_infinite_interval_ticks_once),
        CLOCK_TEST(test_ticker_init_rejects_bad_arguments),
        CLOCK_TEST(test_ticker_concurrent_stops_join_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
