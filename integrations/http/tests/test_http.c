/* Placeholder while the tests are written. */
#include "test.h"

static void
test_http_placeholder(void **state)
{
    (void)state;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_placeholder),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
