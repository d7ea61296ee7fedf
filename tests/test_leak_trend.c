/* The leak detector's arithmetic on synthetic series: least squares, the
 * steady-growth test (growth flagged; noise, plateaus, steps and shrinking
 * not), the sample window, and threshold levels with hysteresis. */
#include <math.h>
#include <string.h>

#include "leak_trend.h"
#include "rng.h"
#include "test.h"

#define MINUTE 60.0

/* n samples one minute apart: y = base + per_min * minute + noise in
 * [-amp, amp] (deterministic for a seed). */
static void
series(double *x, double *y, size_t n, double base, double per_min, double amp,
       uint64_t seed)
{
    size_t i;

    for (i = 0; i < n; i++) {
        x[i] = (double)i * MINUTE;
        y[i] = base + per_min * (double)i +
               (amp > 0 ? (pf__rng_double(&seed) * 2.0 - 1.0) * amp : 0.0);
    }
}

static void
test_leak_trend_lsq_fits_a_line_exactly(void **state)
{
    double x[5] = {0, 1, 2, 3, 4};
    double y[5] = {3, 5, 7, 9, 11};
    double slope = 0;
    double r2 = 0;

    (void)state;
    assert_true(pf__lsq(x, y, 5, &slope, &r2));
    assert_float_equal(slope, 2.0, 1e-12);
    assert_float_equal(r2, 1.0, 1e-12);
}

static void
test_leak_trend_lsq_flat_has_no_slope_and_no_fit(void **state)
{
    double x[4] = {0, 1, 2, 3};
    double y[4] = {7, 7, 7, 7};
    double same[4] = {2, 2, 2, 2};
    double slope = -1;
    double r2 = -1;

    (void)state;
    assert_true(pf__lsq(x, y, 4, &slope, &r2));
    assert_float_equal(slope, 0.0, 0.0);
    assert_float_equal(r2, 0.0, 0.0);
    slope = 42;
    assert_false(pf__lsq(x, y, 1, &slope, &r2));
    assert_false(pf__lsq(same, y, 4, &slope, &r2)); /* all x equal */
    assert_float_equal(slope, 42, 0.0);
}

static void
test_leak_trend_lsq_keeps_precision_at_large_values(void **state)
{
    double x[10];
    double y[10];
    double slope;
    double r2;

    (void)state;
    /* A week into the process, 8 GB resident, growing 1 MB a minute. */
    series(x, y, 10, 8e9, 1048576.0, 0, 0);
    for (size_t i = 0; i < 10; i++) {
        x[i] += 604800.0;
    }
    assert_true(pf__lsq(x, y, 10, &slope, &r2));
    assert_float_equal(slope * MINUTE, 1048576.0, 1e-3);
    assert_float_equal(r2, 1.0, 1e-9);
}

static void
test_leak_trend_steady_growth_is_flagged(void **state)
{
    double x[10];
    double y[10];
    double slope = 0;

    (void)state;
    /* "fds +40/min for 10 min": flagged with a 1/min threshold. */
    series(x, y, 10, 100, 40, 0, 0);
    assert_true(pf__trend_growing(x, y, 10, 1.0 / MINUTE, &slope));
    assert_float_equal(slope * MINUTE, 40.0, 1e-9);
    /* Also with noise on top, and slow growth just over the threshold. */
    series(x, y, 10, 100, 40, 10, 7);
    assert_true(pf__trend_growing(x, y, 10, 1.0 / MINUTE, NULL));
    series(x, y, 10, 100, 1.5, 0.2, 9);
    assert_true(pf__trend_growing(x, y, 10, 1.0 / MINUTE, NULL));
    /* Not when the threshold is above the rate. */
    series(x, y, 10, 100, 40, 0, 0);
    assert_false(pf__trend_growing(x, y, 10, 50.0 / MINUTE, NULL));
}

static void
test_leak_trend_noise_is_not_flagged(void **state)
{
    double x[600];
    double y[600];
    size_t flagged = 0;
    size_t i;
    uint64_t seed;

    (void)state;
    /* Independent windows of noise 20 times the threshold's rate. */
    for (seed = 1; seed <= 100; seed++) {
        series(x, y, 10, 500, 0, 20, seed);
        flagged += pf__trend_growing(x, y, 10, 1.0 / MINUTE, NULL);
    }
    assert_int_equal(flagged, 0);
    /* A long noisy series seen through a sliding window, as the detector
     * sees it. */
    series(x, y, 600, 500, 0, 20, 12345);
    for (i = 0; i + 10 <= 600; i++) {
        flagged += pf__trend_growing(x + i, y + i, 10, 1.0 / MINUTE, NULL);
    }
    assert_int_equal(flagged, 0);
}

static void
test_leak_trend_plateau_and_step_are_not_flagged(void **state)
{
    double x[20];
    double y[20];
    size_t i;

    (void)state;
    /* Rise 10/min for 10 minutes, then flat. */
    for (i = 0; i < 20; i++) {
        x[i] = (double)i * MINUTE;
        y[i] = 100 + 10.0 * (double)(i < 10 ? i : 9);
    }
    assert_true(pf__trend_growing(x, y, 10, 1.0 / MINUTE, NULL));
    /* As soon as half the window has levelled off: no longer growth,
     * although the overall slope is still steep. */
    for (i = 5; i + 10 <= 20; i++) {
        if (pf__trend_growing(x + i, y + i, 10, 1.0 / MINUTE, NULL)) {
            fail_msg("window starting at %zu flagged", i);
        }
    }
    /* A single step (a pool warming up): flat, +50, flat. */
    for (i = 0; i < 10; i++) {
        y[i] = i < 5 ? 100 : 150;
    }
    assert_false(pf__trend_growing(x, y, 10, 1.0 / MINUTE, NULL));
    /* Shrinking. */
    series(x, y, 10, 500, -40, 0, 0);
    assert_false(pf__trend_growing(x, y, 10, 1.0 / MINUTE, NULL));
}

static void
test_leak_trend_needs_four_points(void **state)
{
    double x[3] = {0, 60, 120};
    double y[3] = {1, 100, 200};
    double slope = 0;

    (void)state;
    assert_false(pf__trend_growing(x, y, 3, 1.0 / MINUTE, &slope));
    assert_true(slope > 0); /* the slope is still reported */
    assert_false(pf__trend_growing(x, y, 1, 1.0 / MINUTE, &slope));
    assert_true(isnan(slope));
}

static void
test_leak_trend_window_keeps_the_last_samples_in_order(void **state)
{
    pf__trend_window_t w;
    double slope = 0;
    size_t i;

    (void)state;
    assert_pf_ok(pf__trend_window_init(&w, 10));
    assert_false(pf__trend_window_full(&w));
    /* 5 samples of nothing, then 10 of growth: the ring wraps. */
    for (i = 0; i < 15; i++) {
        double fds = i < 5 ? 1000.0 : 100.0 + 40.0 * (double)(i - 5);

        pf__trend_window_push(&w, (double)i * MINUTE, 1e6, fds);
    }
    assert_true(pf__trend_window_full(&w));
    assert_float_equal(pf__trend_window_span(&w), 9 * MINUTE, 1e-9);
    assert_true(
        pf__trend_window_growing(&w, PF__TREND_FDS, 1.0 / MINUTE, &slope));
    assert_float_equal(slope * MINUTE, 40.0, 1e-9);
    assert_false(
        pf__trend_window_growing(&w, PF__TREND_RSS, 1.0 / MINUTE, &slope));
    assert_float_equal(slope, 0.0, 0.0);
    pf__trend_window_destroy(&w);
    assert_pf_err(pf__trend_window_init(&w, 0), PF_EINVAL);
}

static void
test_leak_trend_level_raises_once_and_rearms_below_margin(void **state)
{
    /* Threshold 100, hysteresis 10 %: raise above 100, re-arm at 90. */
    static const double values[] = {50, 101, 150, 99,  101,
                                    95, 91,  90,  101, 100.5};
    static const int expect[] = {0, 1, 0, 0, 0, 0, 0, -1, 1, 0};
    pf__level_t lv = {false};
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        int got = pf__level_step(&lv, values[i] > 100, values[i] <= 90);

        if (got != expect[i]) {
            fail_msg("value %zu (%.1f): got %d, expected %d", i, values[i], got,
                     expect[i]);
        }
    }
    assert_true(lv.raised);
}

static void
window_scenario(void *arg)
{
    pf__trend_window_t w;
    int rc = pf__trend_window_init(&w, 8);

    (void)arg;
    if (rc == 0) {
        pf__trend_window_push(&w, 0, 1, 1);
        pf__trend_window_destroy(&w);
    } else {
        assert_int_equal(rc, PF_ENOMEM);
    }
}

static void
test_leak_trend_window_allocation_failure_leaks_nothing(void **state)
{
    (void)state;
    assert_int_equal(pf_test_alloc_sweep(window_scenario, NULL), 2);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_leak_trend_lsq_fits_a_line_exactly),
        cmocka_unit_test(test_leak_trend_lsq_flat_has_no_slope_and_no_fit),
        cmocka_unit_test(test_leak_trend_lsq_keeps_precision_at_large_values),
        cmocka_unit_test(test_leak_trend_steady_growth_is_flagged),
        cmocka_unit_test(test_leak_trend_noise_is_not_flagged),
        cmocka_unit_test(test_leak_trend_plateau_and_step_are_not_flagged),
        cmocka_unit_test(test_leak_trend_needs_four_points),
        cmocka_unit_test(
            test_leak_trend_window_keeps_the_last_samples_in_order),
        cmocka_unit_test(
            test_leak_trend_level_raises_once_and_rearms_below_margin),
        cmocka_unit_test(
            test_leak_trend_window_allocation_failure_leaks_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
