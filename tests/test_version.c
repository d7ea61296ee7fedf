/* The version macros and pf_version() agree. */
#include <stdio.h>
#include <string.h>

#include "puffinflow/version.h"
#include "test.h"

static void
test_version_library_matches_headers(void **state)
{
    char buf[32];

    (void)state;
    snprintf(buf, sizeof(buf), "%d.%d.%d", PF_VERSION_MAJOR, PF_VERSION_MINOR,
             PF_VERSION_PATCH);
    assert_string_equal(pf_version(), buf);
    assert_string_equal(PF_VERSION_STRING, buf);
    assert_int_equal(pf_version_num(), PF_VERSION_NUM);
    assert_int_equal(PF_VERSION_NUM, (PF_VERSION_MAJOR << 16) |
                                         (PF_VERSION_MINOR << 8) |
                                         PF_VERSION_PATCH);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version_library_matches_headers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
