/* Circuit breaker sliding windows: the failure rate and slow-call rate
 * over the last N calls (count window) or the last N seconds (time
 * window), minimum_calls, what enters a window and when it is cleared. */
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "puffinflow/breaker.h"
#include "rng.h"
#include "test.h"
#include "breaker_testutil.h"
#include "window.h"


static void
config(pf_breaker_config_t *cfg, pf_clock_t *clock, pf_breaker_window_t w,
       unsigned size, unsigned minimum, double rate)
{
    pf_breaker_config_init(cfg);
    cfg->clock = clock;
    cfg->window = w;
    cfg->window_size = size;
    cfg->minimum_calls = minimum;
    cfg->failure_rate_threshold = rate;
    cfg->recovery_timeout = 10.0;
    cfg->success_threshold = 1;
}

/* A breaker made from config() with no other field changed. */
static pf_breaker_t *
make_window(pf_clock_t *clock, pf_breaker_window_t w, unsigned size,
            unsigned minimum, double rate)
{
    pf_breaker_config_t cfg;

    config(&cfg, clock, w, size, minimum, rate);
    return make(&cfg);
}

/* A call that takes ns nanoseconds of the manual clock. */
static void
run_taking(pf_breaker_t *b, pf_clock_t *clock, int64_t ns, int result)
{
    pf_permit_t p;

    assert_pf_ok(pf_breaker_acquire(b, &p));
    pf_clock_manual_advance(clock, ns);
    pf_breaker_record(b, &p, result);
}

static void
runs(pf_breaker_t *b, int n, int result)
{
    for (int i = 0; i < n; i++) {
        run(b, result);
    }
}

/* ---- count window ----------------------------------------------------- */

static void
test_breaker_count_window_opens_when_failure_rate_reaches_threshold(
    void **state)
{
    pf_breaker_t *b;

    b = make_window(*state, PF_BREAKER_WINDOW_COUNT, 10, 10, 50.0);
    runs(b, 5, 0);
    runs(b, 4, -1);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_CLOSED); /* 9 calls */
    runs(b, 1, -1); /* 10 calls, 5 failures: 50 % */
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_OPEN);
    pf_breaker_free(b);
}

static void
test_breaker_count_window_stays_closed_below_failure_rate(void **state)
{
    pf_breaker_t *b;
    pf_breaker_metrics_t m;

    b = make_window(*state, PF_BREAKER_WINDOW_COUNT, 10, 10, 50.0);
    runs(b, 6, 0);
    runs(b, 4, -1);
    m = metrics(b);
    assert_int_equal(m.state, PF_BREAKER_CLOSED);
    assert_int_equal(m.window_calls, 10);
    assert_int_equal(m.window_failures, 4);
    assert_true(fabs(m.failure_rate - 40.0) < 1e-9);
    pf_breaker_free(b);
}

static void
test_breaker_count_window_stays_closed_below_minimum_calls(void **state)
{
    pf_breaker_config_t cfg;
    pf_breaker_t *b;

    config(&cfg, *state, PF_BREAKER_WINDOW_COUNT, 10, 5, 50.0);
    cfg.failure_threshold = 1; /* consecutive count: unused here */
    b = make(&cfg);
    runs(b, 4, -1);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_CLOSED);
    assert_true(metrics(b).failure_rate == 100.0);
    runs(b, 1, 0); /* the call that reaches the minimum may be a success */
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_OPEN);
    pf_breaker_free(b);
}

static void
test_breaker_count_window_forgets_calls_older_than_its_size(void **state)
{
    pf_breaker_t *b;

    b = make_window(*state, PF_BREAKER_WINDOW_COUNT, 4, 4, 50.0);
    run(b, -1);
    runs(b, 3, 0); /* f s s s: 25 % */
    assert_int_equal(metrics(b).window_failures, 1);
    run(b, 0); /* s s s s: the failure left */
    assert_int_equal(metrics(b).window_calls, 4);
    assert_int_equal(metrics(b).window_failures, 0);
    run(b, -1); /* s s s f */
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_CLOSED);
    run(b, -1); /* s s f f: 50 % */
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_OPEN);
    pf_breaker_free(b);
}

static void
test_breaker_count_window_caps_minimum_calls_at_its_size(void **state)
{
    pf_breaker_t *b;

    b = make_window(*state, PF_BREAKER_WINDOW_COUNT, 3, 100, 100.0);
    runs(b, 2, -1);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_CLOSED);
    runs(b, 1, -1);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_OPEN);
    pf_breaker_free(b);
}

static void
test_breaker_count_window_holds_exactly_the_last_n_outcomes(void **state)
{
    uint64_t rng = 12345;

    for (unsigned size = 2; size <= 9; size++) {
        pf_breaker_config_t cfg;
        pf_breaker_t *b;
        bool hist[400];

        /* Rate 100 %: never opens while a success stays in the window. */
        config(&cfg, *state, PF_BREAKER_WINDOW_COUNT, size, 1, 100.0);
        b = make(&cfg);
        for (unsigned i = 0; i < 400; i++) {
            pf_breaker_metrics_t m;
            unsigned want = 0;
            bool fail = pf__rng_below(&rng, 2) == 0 && i % size != 0;

            run(b, fail ? -1 : 0);
            hist[i] = fail;
            for (unsigned j = i + 1 > size ? i + 1 - size : 0; j <= i; j++) {
                want += hist[j];
            }
            m = metrics(b);
            assert_int_equal(m.state, PF_BREAKER_CLOSED);
            assert_int_equal(m.window_calls, i + 1 < size ? i + 1 : size);
            assert_int_equal(m.window_failures, want);
        }
        pf_breaker_free(b);
    }
}

/* ---- time window ------------------------------------------------------ */

static void
test_breaker_time_window_opens_on_rate_of_last_seconds(void **state)
{
    pf_clock_t *clock = *state;
    pf_breaker_t *b;

    b = make_window(clock, PF_BREAKER_WINDOW_TIME, 10, 4, 50.0);
    runs(b, 2, -1);
    pf_clock_manual_advance(clock, 5 * NS_PER_SEC);
    run(b, 0);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_CLOSED);
    pf_clock_manual_advance(clock, 4 * NS_PER_SEC); /* t = 9 s: all inside */
    run(b, 0); /* 4 calls, 2 failures */
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_OPEN);
    pf_breaker_free(b);
}

static void
test_breaker_time_window_drops_seconds_that_left_it(void **state)
{
    pf_clock_t *clock = *state;
    pf_breaker_t *b;
    pf_breaker_metrics_t m;

    b = make_window(clock, PF_BREAKER_WINDOW_TIME, 3, 2, 50.0);
    run(b, -1); /* second 0 */
    pf_clock_manual_advance(clock, 3 * NS_PER_SEC - 1); /* 2.999... s */
    m = metrics(b);
    assert_int_equal(m.window_calls, 1); /* seconds 0, 1, 2 */
    assert_int_equal(m.window_failures, 1);
    pf_clock_manual_advance(clock, 1); /* 3 s: seconds 1, 2, 3 */
    m = metrics(b);
    assert_int_equal(m.window_calls, 0);
    run(b, 0);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_CLOSED); /* 0 % */
    run(b, -1); /* 2 calls, 1 failure */
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_OPEN);
    pf_breaker_free(b);
}

static void
test_breaker_time_window_checks_rates_as_if_at_every_call(
    void **state)
{
    pf_clock_t *clock = *state;
    pf_breaker_t *b;

    b = make_window(clock, PF_BREAKER_WINDOW_TIME, 10, 4, 50.0);
    runs(b, 3, -1);
    run(b, 0); /* 4 calls, 75 %: the success reaching minimum_calls looks */
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_OPEN);
    pf_breaker_reset(b);
    /* Old successes leaving the window can raise the rate: the first call
     * of the second in which they left sees it. */
    runs(b, 4, 0);
    pf_clock_manual_advance(clock, 5 * NS_PER_SEC);
    runs(b, 3, -1); /* 7 calls, 3 failures: 43 % */
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_CLOSED);
    run(b, 0);
    pf_clock_manual_advance(clock, 5 * NS_PER_SEC); /* the 4 have left */
    run(b, 0); /* 3 failures of 5 */
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_OPEN);
    pf_breaker_free(b);
}

/* The exact threshold, reached by a success in mid-second: two failures
 * and two successes with minimum_calls 4 and 50 %. The breaker opens at
 * the fourth call, as resilience4j does; before, it stayed closed and the
 * next second's success diluted the rate to 40 %, so it never opened. */
static void
test_breaker_time_window_opens_when_a_success_reaches_minimum_calls(
    void **state)
{
    pf_clock_t *clock = *state;
    pf_breaker_t *b;

    b = make_window(clock, PF_BREAKER_WINDOW_TIME, 10, 4, 50.0);
    run(b, -1);
    run(b, -1);
    run(b, 0);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_CLOSED); /* 3 calls */
    run(b, 0); /* 4 calls, 50 % */
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_OPEN);
    pf_breaker_free(b);

    /* The same just after a clear in the same second: a reset forgets
     * what the window had seen, including that it had enough calls. */
    b = make_window(clock, PF_BREAKER_WINDOW_TIME, 10, 4, 50.0);
    runs(b, 6, 0); /* enough calls, 0 %: successes stop looking */
    pf_breaker_reset(b);
    run(b, -1);
    run(b, -1);
    run(b, 0);
    run(b, 0);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_OPEN);
    pf_breaker_free(b);
}

/* Drive a count window and a time window (both larger than the sequence,
 * so nothing leaves either) through the same results within one second:
 * they must agree after every call. Every order of f failures and s
 * successes, for every f + s <= 7, with minimum_calls 4 and 50 %. */
static void
test_breaker_count_and_time_windows_agree_within_a_second(void **state)
{
    pf_clock_t *clock = *state;
    long opened = 0;

    for (unsigned len = 1; len <= 7; len++) {
        for (unsigned bits = 0; bits < (1u << len); bits++) {
            pf_breaker_t *cw =
                make_window(clock, PF_BREAKER_WINDOW_COUNT, 10, 4, 50.0);
            pf_breaker_t *tw =
                make_window(clock, PF_BREAKER_WINDOW_TIME, 10, 4, 50.0);

            for (unsigned i = 0; i < len; i++) {
                int result = (bits >> i) & 1 ? -1 : 0;

                if (pf_breaker_state(cw) == PF_BREAKER_CLOSED) {
                    run(cw, result);
                }
                if (pf_breaker_state(tw) == PF_BREAKER_CLOSED) {
                    run(tw, result);
                }
                assert_int_equal(pf_breaker_state(cw), pf_breaker_state(tw));
            }
            opened += pf_breaker_state(tw) == PF_BREAKER_OPEN;
            pf_breaker_free(cw);
            pf_breaker_free(tw);
        }
    }
    assert_true(opened > 0);
}

static void
test_breaker_time_window_forgets_everything_after_a_long_pause(void **state)
{
    pf_clock_t *clock = *state;
    pf_breaker_t *b;

    b = make_window(clock, PF_BREAKER_WINDOW_TIME, 5, 3, 50.0);
    runs(b, 2, -1);
    pf_clock_manual_advance(clock, 1000 * NS_PER_SEC);
    assert_int_equal(metrics(b).window_calls, 0);
    run(b, -1);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_CLOSED); /* 1 call */
    pf_breaker_free(b);
}

static void
test_breaker_time_window_counts_exactly_the_last_n_seconds(void **state)
{
    pf_clock_t *clock = *state;
    uint64_t rng = 99;

    for (unsigned size = 1; size <= 6; size++) {
        pf_breaker_config_t cfg;
        pf_breaker_t *b;
        int64_t at[300];
        bool fail[300];

        config(&cfg, clock, PF_BREAKER_WINDOW_TIME, size, 1000, 50.0);
        b = make(&cfg);
        for (unsigned i = 0; i < 300; i++) {
            pf_breaker_metrics_t m;
            uint64_t calls = 0;
            uint64_t fails = 0;
            int64_t now_sec;

            pf_clock_manual_advance(clock, (int64_t)pf__rng_below(&rng, 700) *
                                               NS_PER_MS);
            at[i] = pf_clock_now_ns(clock) / NS_PER_SEC;
            fail[i] = pf__rng_below(&rng, 3) == 0;
            run(b, fail[i] ? -1 : 0);
            now_sec = pf_clock_now_ns(clock) / NS_PER_SEC;
            for (unsigned j = 0; j <= i; j++) {
                if (at[j] > now_sec - (int64_t)size) {
                    calls++;
                    fails += fail[j];
                }
            }
            m = metrics(b);
            assert_int_equal(m.window_calls, calls);
            assert_int_equal(m.window_failures, fails);
        }
        pf_breaker_free(b);
    }
}

/* ---- slow calls ------------------------------------------------------- */

static void
test_breaker_slow_call_rate_opens_the_breaker(void **state)
{
    pf_clock_t *clock = *state;
    pf_breaker_config_t cfg;
    pf_breaker_t *b;
    pf_breaker_metrics_t m;

    config(&cfg, clock, PF_BREAKER_WINDOW_COUNT, 4, 4, 100.0);
    cfg.slow_call_duration = 2.0;
    cfg.slow_call_rate_threshold = 50.0;
    b = make(&cfg);
    run_taking(b, clock, 3 * NS_PER_SEC, 0);
    run_taking(b, clock, 0, 0);
    run_taking(b, clock, 0, 0);
    m = metrics(b);
    assert_int_equal(m.slow_calls, 1);
    assert_int_equal(m.window_slow_calls, 1);
    run_taking(b, clock, 2 * NS_PER_SEC + 1, 0); /* slow: 2 of 4 */
    m = metrics(b);
    assert_int_equal(m.state, PF_BREAKER_OPEN);
    assert_int_equal(m.successes, 4); /* slow is still a success */
    assert_int_equal(m.failures, 0);
    assert_true(fabs(m.slow_call_rate - 50.0) < 1e-9);
    pf_breaker_free(b);
}

static void
test_breaker_slow_calls_below_slow_rate_keep_it_closed(void **state)
{
    pf_clock_t *clock = *state;
    pf_breaker_config_t cfg;
    pf_breaker_t *b;

    config(&cfg, clock, PF_BREAKER_WINDOW_TIME, 60, 4, 100.0);
    cfg.slow_call_duration = 2.0;
    cfg.slow_call_rate_threshold = 50.0;
    b = make(&cfg);
    run_taking(b, clock, 3 * NS_PER_SEC, 0);
    run_taking(b, clock, 2 * NS_PER_SEC, 0); /* exactly 2 s: not slow */
    runs(b, 2, 0);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_CLOSED);
    assert_int_equal(metrics(b).window_slow_calls, 1);
    pf_breaker_free(b);
}

static void
test_breaker_default_slow_rate_opens_only_when_all_calls_slow(void **state)
{
    pf_clock_t *clock = *state;
    pf_breaker_config_t cfg;
    pf_breaker_t *b;

    config(&cfg, clock, PF_BREAKER_WINDOW_COUNT, 3, 3, 100.0);
    cfg.timeout = 0.0;
    cfg.slow_call_duration = 1.0; /* rate threshold: default 100 % */
    b = make(&cfg);
    run_taking(b, clock, 2 * NS_PER_SEC, 0);
    run_taking(b, clock, 2 * NS_PER_SEC, 0);
    run_taking(b, clock, 0, 0);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_CLOSED);
    run_taking(b, clock, 2 * NS_PER_SEC, 0);
    run_taking(b, clock, 2 * NS_PER_SEC, 0);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_CLOSED); /* 2 of 3 */
    run_taking(b, clock, 2 * NS_PER_SEC, 0); /* last 3: all slow */
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_OPEN);
    pf_breaker_free(b);
}

/* ---- what enters a window --------------------------------------------- */

static void
test_breaker_window_leaves_out_ignored_results(void **state)
{
    static const int listed[] = {CONN_ERR};
    pf_breaker_config_t cfg;
    pf_breaker_t *b;
    pf_breaker_metrics_t m;

    config(&cfg, *state, PF_BREAKER_WINDOW_COUNT, 4, 2, 50.0);
    cfg.expected_errors = listed;
    cfg.expected_errors_len = 1;
    b = make(&cfg);
    run(b, 0);
    runs(b, 5, VALUE_ERR);
    m = metrics(b);
    assert_int_equal(m.window_calls, 1);
    assert_int_equal(m.ignored, 5);
    run(b, CONN_ERR);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_OPEN);
    pf_breaker_free(b);
}

static void
test_breaker_window_counts_timeouts_as_failures(void **state)
{
    pf_clock_t *clock = *state;
    pf_breaker_config_t cfg;
    pf_breaker_t *b;

    config(&cfg, clock, PF_BREAKER_WINDOW_COUNT, 2, 2, 100.0);
    cfg.timeout = 1.0;
    b = make(&cfg);
    run_taking(b, clock, 2 * NS_PER_SEC, 0);
    assert_int_equal(metrics(b).window_failures, 1);
    run_taking(b, clock, 2 * NS_PER_SEC, 0);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_OPEN);
    assert_int_equal(metrics(b).timeouts, 2);
    pf_breaker_free(b);
}

static void
test_breaker_window_is_cleared_when_the_breaker_closes(void **state)
{
    pf_clock_t *clock = *state;
    pf_breaker_t *b;
    pf_breaker_metrics_t m;

    b = make_window(clock, PF_BREAKER_WINDOW_COUNT, 10, 4, 50.0);
    runs(b, 4, -1);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_OPEN);
    pf_clock_manual_advance(clock, 10 * NS_PER_SEC);
    run(b, 0); /* the trial closes it */
    m = metrics(b);
    assert_int_equal(m.state, PF_BREAKER_CLOSED);
    assert_int_equal(m.window_calls, 0);
    assert_true(m.failure_rate == 0.0);
    runs(b, 3, -1); /* below minimum_calls again */
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_CLOSED);
    pf_breaker_free(b);
}

static void
test_breaker_window_is_cleared_by_reset(void **state)
{
    pf_clock_t *clock = *state;
    pf_breaker_t *b;

    b = make_window(clock, PF_BREAKER_WINDOW_TIME, 30, 4, 50.0);
    runs(b, 3, -1);
    pf_breaker_reset(b);
    assert_int_equal(metrics(b).window_calls, 0);
    run(b, -1);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_CLOSED);
    pf_breaker_free(b);
}

static void
test_breaker_window_leaves_out_stale_results(void **state)
{
    pf_clock_t *clock = *state;
    pf_breaker_t *b;
    pf_permit_t old;

    b = make_window(clock, PF_BREAKER_WINDOW_COUNT, 10, 2, 50.0);
    assert_pf_ok(pf_breaker_acquire(b, &old));
    runs(b, 2, -1);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_OPEN);
    pf_clock_manual_advance(clock, 10 * NS_PER_SEC);
    run(b, 0); /* closes: a new, empty window */
    run(b, 0);
    pf_breaker_record(b, &old, -1); /* from before: not in the window */
    assert_int_equal(metrics(b).window_calls, 1);
    assert_int_equal(metrics(b).window_failures, 0);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_CLOSED);
    pf_breaker_free(b);
}

static void
test_breaker_window_mode_ignores_failure_threshold(void **state)
{
    pf_breaker_config_t cfg;
    pf_breaker_t *b;

    config(&cfg, *state, PF_BREAKER_WINDOW_COUNT, 10, 5, 50.0);
    cfg.failure_threshold = 1;
    b = make(&cfg);
    runs(b, 3, -1);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_CLOSED);
    assert_int_equal(metrics(b).consecutive_failures, 0);
    pf_breaker_free(b);
}

static void
test_breaker_window_half_open_follows_trial_rules(void **state)
{
    pf_clock_t *clock = *state;
    pf_breaker_config_t cfg;
    pf_breaker_t *b;

    config(&cfg, clock, PF_BREAKER_WINDOW_TIME, 10, 2, 50.0);
    cfg.success_threshold = 2;
    b = make(&cfg);
    runs(b, 2, -1);
    pf_clock_manual_advance(clock, 10 * NS_PER_SEC);
    run(b, 0);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_HALF_OPEN);
    run(b, -1); /* one trial failure reopens it */
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_OPEN);
    pf_breaker_free(b);
}

/* ---- the windows alone, under threads --------------------------------- */

#define ADDERS 8
#define ADDS 20000

typedef struct adders {
    pf__window_t w;
    pf_clock_t *clock;
    bool move_time;
    atomic_ulong failures;
} adders_t;

static void
adder(void *arg, unsigned i)
{
    adders_t *a = arg;
    uint64_t rng = 500 + i;

    for (int k = 0; k < ADDS; k++) {
        pf__window_totals_t t;
        bool fail = pf__rng_below(&rng, 3) == 0;

        if (a->move_time && pf__rng_below(&rng, 50) == 0) {
            pf_clock_manual_advance(a->clock, 300 * NS_PER_MS);
        }
        /* Every add is a failure or slow: it always reports totals. */
        assert_true(pf__window_add(&a->w, i, pf_clock_now_ns(a->clock),
                                   fail, !fail, &t));
        assert_true(t.failures <= t.calls);
        assert_true(t.slow <= t.calls);
        if (fail) {
            atomic_fetch_add(&a->failures, 1);
        }
    }
}

static void
test_breaker_count_window_loses_no_outcome_under_threads(void **state)
{
    adders_t a;
    pf__window_totals_t t;

    memset(&a, 0, sizeof(a));
    a.clock = *state;
    /* Room for every add and each writer's last, partly filled chunk: no
     * slot is written twice, so every outcome must still be there. */
    assert_pf_ok(pf__window_init(&a.w, PF__WINDOW_COUNT,
                                 ADDERS * ADDS + ADDERS * 64, 0, ADDERS, 1));
    pf_test_run_threads(ADDERS, adder, &a);
    pf__window_totals(&a.w, 0, &t);
    assert_int_equal(t.calls, ADDERS * ADDS);
    assert_int_equal(t.failures, atomic_load(&a.failures));
    assert_int_equal(t.slow, ADDERS * ADDS - atomic_load(&a.failures));
    pf__window_destroy(&a.w);
}

static void
test_breaker_count_window_totals_match_ring_after_laps(void **state)
{
    adders_t a;
    pf__window_totals_t t;
    uint64_t fails = 0;

    memset(&a, 0, sizeof(a));
    a.clock = *state;
    assert_pf_ok(pf__window_init(&a.w, PF__WINDOW_COUNT, 64, 0, 2, 1));
    pf_test_run_threads(ADDERS, adder, &a); /* lapping all the time */
    for (uint32_t i = 0; i < 64; i++) {
        assert_int_not_equal(pf__window_slot(&a.w, i), 0);
        fails += (pf__window_slot(&a.w, i) & 2) != 0;
    }
    pf__window_totals(&a.w, 0, &t);
    assert_int_equal(t.calls, 64);
    assert_int_equal(t.failures, fails);
    assert_int_equal(t.slow, 64 - fails);
    pf__window_destroy(&a.w);
}

static void
test_breaker_time_window_loses_no_outcome_under_threads(void **state)
{
    adders_t a;
    pf__window_totals_t t;

    memset(&a, 0, sizeof(a));
    a.clock = *state;
    assert_pf_ok(pf__window_init(&a.w, PF__WINDOW_TIME, 10, 0, ADDERS, 1));
    pf_test_run_threads(ADDERS, adder, &a); /* all within second 0 */
    pf__window_totals(&a.w, 0, &t);
    assert_int_equal(t.calls, ADDERS * ADDS);
    assert_int_equal(t.failures, atomic_load(&a.failures));
    pf__window_destroy(&a.w);
}

static void
test_breaker_time_window_sums_stay_consistent_as_seconds_pass(void **state)
{
    adders_t a;
    pf__window_totals_t t;
    uint64_t c = 0;
    uint64_t f = 0;
    int64_t now;

    memset(&a, 0, sizeof(a));
    a.clock = *state;
    a.move_time = true;
    assert_pf_ok(pf__window_init(&a.w, PF__WINDOW_TIME, 5, 0, ADDERS, 1));
    pf_test_run_threads(ADDERS, adder, &a);
    /* Quiet now. One second on (a rotation recomputes the sums, taking in
     * any add that raced the last one), the totals are the buckets of the
     * window, the new second's empty. */
    pf_clock_manual_advance(a.clock, NS_PER_SEC);
    now = pf_clock_now_ns(a.clock);
    pf__window_totals(&a.w, now, &t);
    for (uint32_t i = 0; i < 5; i++) {
        c += atomic_load(&a.w.buckets[i].calls);
        f += atomic_load(&a.w.buckets[i].failures);
    }
    assert_true(t.calls > 0);
    assert_int_equal(t.calls, c);
    assert_int_equal(t.failures, f);
    /* Five seconds on, all of it has left. */
    pf_clock_manual_advance(a.clock, 5 * NS_PER_SEC);
    pf__window_totals(&a.w, pf_clock_now_ns(a.clock), &t);
    assert_int_equal(t.calls, 0);
    pf__window_destroy(&a.w);
}

#define T(name) CLOCK_TEST(name)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_breaker_count_window_opens_when_failure_rate_reaches_threshold),
        T(test_breaker_count_window_stays_closed_below_failure_rate),
        T(test_breaker_count_window_stays_closed_below_minimum_calls),
        T(test_breaker_count_window_forgets_calls_older_than_its_size),
        T(test_breaker_count_window_caps_minimum_calls_at_its_size),
        T(test_breaker_count_window_holds_exactly_the_last_n_outcomes),
        T(test_breaker_time_window_opens_on_rate_of_last_seconds),
        T(test_breaker_time_window_drops_seconds_that_left_it),
        T(test_breaker_time_window_checks_rates_as_if_at_every_call),
        T(test_breaker_time_window_opens_when_a_success_reaches_minimum_calls),
        T(test_breaker_count_and_time_windows_agree_within_a_second),
        T(test_breaker_time_window_forgets_everything_after_a_long_pause),
        T(test_breaker_time_window_counts_exactly_the_last_n_seconds),
        T(test_breaker_slow_call_rate_opens_the_breaker),
        T(test_breaker_slow_calls_below_slow_rate_keep_it_closed),
        T(test_breaker_default_slow_rate_opens_only_when_all_calls_slow),
        T(test_breaker_window_leaves_out_ignored_results),
        T(test_breaker_window_counts_timeouts_as_failures),
        T(test_breaker_window_is_cleared_when_the_breaker_closes),
        T(test_breaker_window_is_cleared_by_reset),
        T(test_breaker_window_leaves_out_stale_results),
        T(test_breaker_window_mode_ignores_failure_threshold),
        T(test_breaker_window_half_open_follows_trial_rules),
        T(test_breaker_count_window_loses_no_outcome_under_threads),
        T(test_breaker_count_window_totals_match_ring_after_laps),
        T(test_breaker_time_window_loses_no_outcome_under_threads),
        T(test_breaker_time_window_sums_stay_consistent_as_seconds_pass),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
