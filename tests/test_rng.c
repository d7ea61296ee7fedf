/* The internal random generator: seeded sequences repeat, draws are in
 * range and roughly uniform. */
#include <math.h>

#include "rng.h"
#include "test.h"

static void
test_rng_same_seed_same_sequence(void **state)
{
    uint64_t a = 12345;
    uint64_t b = 12345;
    uint64_t c = 54321;
    int differs = 0;

    (void)state;
    for (int i = 0; i < 1000; i++) {
        uint64_t x = pf__rng_next(&a);

        assert_true(x == pf__rng_next(&b));
        differs += x != pf__rng_next(&c);
    }
    assert_true(differs > 990);
}

static void
test_rng_double_is_in_unit_interval_with_mean_half(void **state)
{
    uint64_t s = 7;
    double sum = 0;
    int n = 200000;

    (void)state;
    for (int i = 0; i < n; i++) {
        double d = pf__rng_double(&s);

        assert_true(d >= 0.0 && d < 1.0);
        sum += d;
    }
    /* The mean of n uniforms has sd 0.289/sqrt(n) = 0.00065: 0.005 is more
     * than seven sd away. */
    assert_true(fabs(sum / n - 0.5) < 0.005);
}

static void
test_rng_below_covers_range_evenly(void **state)
{
    uint64_t s = 99;
    int hist[10] = {0};

    (void)state;
    for (int i = 0; i < 100000; i++) {
        uint64_t v = pf__rng_below(&s, 10);

        assert_true(v < 10);
        hist[v]++;
    }
    for (int i = 0; i < 10; i++) {
        assert_true(hist[i] > 9500 && hist[i] < 10500);
    }
}

static void
test_rng_seeds_differ(void **state)
{
    (void)state;
    assert_true(pf__rng_seed() != pf__rng_seed());
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rng_same_seed_same_sequence),
        cmocka_unit_test(test_rng_double_is_in_unit_interval_with_mean_half),
        cmocka_unit_test(test_rng_below_covers_range_evenly),
        cmocka_unit_test(test_rng_seeds_differ),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
