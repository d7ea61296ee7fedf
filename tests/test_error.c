/* Error codes: every code named, unknown codes answered, values fixed. */
#include <string.h>

#include "test.h"

static const int all_codes[] = {
    PF_EINVAL,  PF_ENOMEM,   PF_EOPEN,   PF_EFULL,     PF_ERATELIMIT,
    PF_ETIMEDOUT, PF_EDEADLINE, PF_ECANCELED, PF_EUNHEALTHY, PF_ENOTFOUND,
    PF_EEXIST,  PF_ESTATE,   PF_ESYSTEM, PF_EFORMAT,   PF_EBUDGET,
    PF_ERANGE,  PF_ENOTSUP,
};
#define NCODES (sizeof(all_codes) / sizeof(all_codes[0]))

static void
test_error_every_code_has_a_distinct_message(void **state)
{
    (void)state;
    for (size_t i = 0; i < NCODES; i++) {
        const char *m = pf_strerror(all_codes[i]);

        assert_non_null(m);
        assert_string_not_equal(m, "not a puffinflow error code");
        assert_non_null(pf_error_name(all_codes[i]));
        assert_true(pf_is_error_code(all_codes[i]));
        for (size_t j = 0; j < i; j++) {
            assert_string_not_equal(m, pf_strerror(all_codes[j]));
        }
    }
}

static void
test_error_codes_are_far_from_errno_and_minus_one(void **state)
{
    (void)state;
    assert_int_equal(PF_OK, 0);
    assert_int_equal(PF_EINVAL, -1001);
    for (size_t i = 0; i < NCODES; i++) {
        assert_true(all_codes[i] <= -1001);
        assert_true(all_codes[i] >= PF_ERROR_LAST);
    }
    assert_false(pf_is_error_code(-1));
    assert_false(pf_is_error_code(PF_OK));
    assert_false(pf_is_error_code(-22)); /* -EINVAL */
}

static void
test_error_unknown_codes_get_an_answer(void **state)
{
    int unknown[] = {-1, 1, 42, -22, -1000, PF_ERROR_LAST - 1, INT32_MIN,
                     INT32_MAX};

    (void)state;
    assert_string_equal(pf_strerror(0), "success");
    for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
        assert_string_equal(pf_strerror(unknown[i]),
                            "not a puffinflow error code");
        assert_null(pf_error_name(unknown[i]));
    }
}

static void
test_error_names_match_the_enum(void **state)
{
    (void)state;
    assert_string_equal(pf_error_name(PF_EOPEN), "PF_EOPEN");
    assert_string_equal(pf_error_name(PF_ETIMEDOUT), "PF_ETIMEDOUT");
    assert_string_equal(pf_strerror(PF_EOPEN), "circuit breaker is open");
    assert_string_equal(pf_strerror(PF_EFULL), "bulkhead is full");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_every_code_has_a_distinct_message),
        cmocka_unit_test(test_error_codes_are_far_from_errno_and_minus_one),
        cmocka_unit_test(test_error_unknown_codes_get_an_answer),
        cmocka_unit_test(test_error_names_match_the_enum),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
