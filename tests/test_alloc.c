/* The allocator hook: all allocations go through it, partial sets are
 * refused, and the k-th-allocation sweep finds leaks on failure paths. */
#include <stdlib.h>

#include "puffinflow/deadline.h"
#include "mem.h"
#include "test.h"

static void
test_alloc_partial_set_is_refused(void **state)
{
    (void)state;
    assert_pf_err(pf_set_allocator(malloc, NULL, calloc, free), PF_EINVAL);
    assert_pf_err(pf_set_allocator(NULL, NULL, NULL, free), PF_EINVAL);
    assert_pf_ok(pf_set_allocator(NULL, NULL, NULL, NULL));
}

static void
test_alloc_library_allocations_go_through_the_hook(void **state)
{
    pf_clock_t *c;
    long before;

    (void)state;
    pf_test_alloc_install();
    before = pf_test_alloc_live();
    assert_pf_ok(pf_clock_manual_new(&c));
    assert_int_equal(pf_test_alloc_live(), before + 1);
    pf_clock_free(c);
    assert_int_equal(pf_test_alloc_live(), before);
    pf_test_alloc_uninstall();
}

static void
test_alloc_failure_returns_enomem_and_leaves_out_untouched(void **state)
{
    pf_clock_t *c = (pf_clock_t *)0x1;
    pf_token_t *t = (pf_token_t *)0x1;

    (void)state;
    pf_test_alloc_install();
    pf_test_alloc_fail_at(1);
    assert_pf_err(pf_clock_manual_new(&c), PF_ENOMEM);
    assert_ptr_equal(c, (pf_clock_t *)0x1);
    pf_test_alloc_fail_at(1);
    assert_pf_err(pf_token_new(NULL, NULL, &t), PF_ENOMEM);
    assert_ptr_equal(t, (pf_token_t *)0x1);
    assert_true(pf_test_alloc_failed());
    pf_test_alloc_fail_at(0);
    pf_test_alloc_uninstall();
}

static void
test_alloc_calloc_overflow_fails_cleanly(void **state)
{
    (void)state;
    assert_null(pf__calloc(SIZE_MAX / 2, 4));
}

static void
test_alloc_grow_keeps_array_on_failure(void **state)
{
    int *a = NULL;
    size_t cap = 0;

    (void)state;
    pf_test_alloc_install();
    assert_pf_ok(pf__grow((void **)&a, &cap, 3, sizeof(*a)));
    assert_true(cap >= 3);
    a[0] = 7;
    pf_test_alloc_fail_at(1);
    assert_pf_err(pf__grow((void **)&a, &cap, 100, sizeof(*a)), PF_ENOMEM);
    assert_true(cap >= 3 && cap < 100);
    assert_int_equal(a[0], 7);
    pf_test_alloc_fail_at(0);
    pf__free(a);
    assert_int_equal(pf_test_alloc_live(), 0);
    pf_test_alloc_uninstall();
}

/* A scenario with three allocations: a sweep must run it 4 times (three
 * failing, one clean), and the scenario frees what it made each time. */
static void
three_tokens(void *arg)
{
    pf_token_t *a = NULL;
    pf_token_t *b = NULL;
    pf_token_t *c = NULL;
    int rc;

    (void)arg;
    rc = pf_token_new(NULL, NULL, &a);
    if (rc == 0) {
        rc = pf_token_new(a, NULL, &b);
    }
    if (rc == 0) {
        rc = pf_token_new(b, NULL, &c);
    }
    assert_true(rc == 0 || rc == PF_ENOMEM);
    if (rc == 0) {
        pf_token_cancel(a);
        assert_true(pf_token_is_cancelled(c));
    }
    pf_token_free(c);
    pf_token_free(b);
    pf_token_free(a);
}

static void
test_alloc_sweep_visits_every_allocation(void **state)
{
    (void)state;
    assert_int_equal(pf_test_alloc_sweep(three_tokens, NULL), 4);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alloc_partial_set_is_refused),
        cmocka_unit_test(test_alloc_library_allocations_go_through_the_hook),
        cmocka_unit_test(
            test_alloc_failure_returns_enomem_and_leaves_out_untouched),
        cmocka_unit_test(test_alloc_calloc_overflow_fails_cleanly),
        cmocka_unit_test(test_alloc_grow_keeps_array_on_failure),
        cmocka_unit_test(test_alloc_sweep_visits_every_allocation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
