/* The timer heap: order by due time, first-armed first among equals,
 * removal from any place, growth failure. */
#include <stdlib.h>

#include "test.h"
#include "timerheap.h"

static void
nop(pf__timer_t *t)
{
    (void)t;
}

static void
test_timerheap_pops_in_due_order_when_pushed_shuffled(void **state)
{
    pf__timerheap_t h;
    pf__timer_t t[64];
    uint64_t rng = 7;
    int64_t last = INT64_MIN;
    int i;

    (void)state;
    pf__timerheap_init(&h);
    for (i = 0; i < 64; i++) {
        pf__timer_init(&t[i], nop);
        rng = rng * 6364136223846793005u + 1442695040888963407u;
        assert_pf_ok(pf__timerheap_push(&h, &t[i], (int64_t)(rng >> 40)));
        assert_true(pf__timer_armed(&t[i]));
    }
    assert_int_equal(pf__timerheap_len(&h), 64);
    for (i = 0; i < 64; i++) {
        pf__timer_t *p = pf__timerheap_pop(&h);

        assert_non_null(p);
        assert_true(p->at_ns >= last);
        assert_false(pf__timer_armed(p));
        last = p->at_ns;
    }
    assert_null(pf__timerheap_pop(&h));
    pf__timerheap_destroy(&h);
}

static void
test_timerheap_fires_equal_times_in_arming_order(void **state)
{
    pf__timerheap_t h;
    pf__timer_t t[10];
    int i;

    (void)state;
    pf__timerheap_init(&h);
    for (i = 0; i < 10; i++) {
        pf__timer_init(&t[i], nop);
        assert_pf_ok(pf__timerheap_push(&h, &t[i], 100));
    }
    for (i = 0; i < 10; i++) {
        assert_ptr_equal(pf__timerheap_pop(&h), &t[i]);
    }
    pf__timerheap_destroy(&h);
}

static void
test_timerheap_remove_keeps_order_of_the_rest(void **state)
{
    pf__timerheap_t h;
    pf__timer_t t[100];
    bool removed[100] = {false};
    int64_t last = -1;
    int i;

    (void)state;
    pf__timerheap_init(&h);
    for (i = 0; i < 100; i++) {
        pf__timer_init(&t[i], nop);
        assert_pf_ok(pf__timerheap_push(&h, &t[i], (i * 37) % 100));
    }
    for (i = 0; i < 100; i += 3) {
        assert_true(pf__timerheap_remove(&h, &t[i]));
        assert_false(pf__timerheap_remove(&h, &t[i])); /* twice: no-op */
        removed[i] = true;
    }
    while (pf__timerheap_len(&h) > 0) {
        pf__timer_t *p = pf__timerheap_pop(&h);
        int idx = (int)(p - t);

        assert_false(removed[idx]);
        assert_true(p->at_ns > last);
        last = p->at_ns;
        removed[idx] = true;
    }
    for (i = 0; i < 100; i++) {
        assert_true(removed[i]);
    }
    pf__timerheap_destroy(&h);
}

static void
test_timerheap_remove_of_an_idle_timer_is_false(void **state)
{
    pf__timerheap_t h;
    pf__timer_t t;

    (void)state;
    pf__timerheap_init(&h);
    pf__timer_init(&t, nop);
    assert_false(pf__timerheap_remove(&h, &t));
    assert_null(pf__timerheap_peek(&h));
    pf__timerheap_destroy(&h);
}

static void
push_many(void *arg)
{
    pf__timerheap_t h;
    pf__timer_t *t = arg;
    int i;

    pf__timerheap_init(&h);
    for (i = 0; i < 40; i++) {
        pf__timer_init(&t[i], nop);
        if (pf__timerheap_push(&h, &t[i], 40 - i) != 0) {
            assert_false(pf__timer_armed(&t[i]));
            break;
        }
    }
    pf__timerheap_destroy(&h);
}

static void
test_timerheap_push_reports_enomem_when_growth_fails(void **state)
{
    pf__timer_t t[40];

    (void)state;
    assert_true(pf_test_alloc_sweep(push_many, t) > 1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timerheap_pops_in_due_order_when_pushed_shuffled),
        cmocka_unit_test(test_timerheap_fires_equal_times_in_arming_order),
        cmocka_unit_test(test_timerheap_remove_keeps_order_of_the_rest),
        cmocka_unit_test(test_timerheap_remove_of_an_idle_timer_is_false),
        cmocka_unit_test(test_timerheap_push_reports_enomem_when_growth_fails),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
