/* The string buffer, JSON and Prometheus escaping. */
#include <math.h>
#include <string.h>

#include "mem.h"
#include "strbuf.h"
#include "test.h"

static void
test_strbuf_appends_and_formats(void **state)
{
    pf__sb_t sb = PF__SB_INIT;
    char *out;

    (void)state;
    pf__sb_append(&sb, "a");
    pf__sb_appendf(&sb, "%d-%s", 42, "x");
    for (int i = 0; i < 1000; i++) {
        pf__sb_append(&sb, "0123456789");
    }
    assert_pf_ok(pf__sb_finish(&sb, &out));
    assert_int_equal(strlen(out), 5 + 10000);
    assert_memory_equal(out, "a42-x0123", 9);
    pf_free(out);
}

static void
test_strbuf_empty_finish_gives_empty_string(void **state)
{
    pf__sb_t sb = PF__SB_INIT;
    char *out;

    (void)state;
    assert_pf_ok(pf__sb_finish(&sb, &out));
    assert_string_equal(out, "");
    pf_free(out);
}

static void
test_strbuf_json_escapes(void **state)
{
    pf__sb_t sb = PF__SB_INIT;
    char buf[128];
    bool first = true;

    (void)state;
    pf__sb_append(&sb, "{");
    pf__sb_json_key(&sb, &first, "s");
    pf__sb_json_str(&sb, "a\"b\\c\nd\x01");
    pf__sb_json_key(&sb, &first, "n");
    pf__sb_json_num(&sb, NAN);
    pf__sb_json_key(&sb, &first, "i");
    pf__sb_json_int(&sb, -7);
    pf__sb_json_key(&sb, &first, "b");
    pf__sb_json_bool(&sb, true);
    pf__sb_json_key(&sb, &first, "z");
    pf__sb_json_str(&sb, NULL);
    pf__sb_append(&sb, "}");
    assert_pf_ok(pf__sb_copy_out(&sb, buf, sizeof(buf), NULL));
    assert_string_equal(
        buf, "{\"s\":\"a\\\"b\\\\c\\nd\\u0001\",\"n\":null,\"i\":-7,"
             "\"b\":true,\"z\":null}");
}

static void
test_strbuf_copy_out_reports_needed_size(void **state)
{
    pf__sb_t sb = PF__SB_INIT;
    char buf[4];
    size_t need = 0;

    (void)state;
    pf__sb_append(&sb, "hello");
    assert_pf_err(pf__sb_copy_out(&sb, buf, sizeof(buf), &need), PF_ERANGE);
    assert_int_equal(need, 6);
    assert_null(sb.buf);
}

static void
test_strbuf_prometheus_label_escapes(void **state)
{
    pf__sb_t sb = PF__SB_INIT;
    char buf[64];

    (void)state;
    pf__sb_prom_label(&sb, "a\"b\\c\nd");
    assert_pf_ok(pf__sb_copy_out(&sb, buf, sizeof(buf), NULL));
    assert_string_equal(buf, "a\\\"b\\\\c\\nd");
}

static void
sb_scenario(void *arg)
{
    pf__sb_t sb = PF__SB_INIT;
    char *out = NULL;
    int rc;

    (void)arg;
    for (int i = 0; i < 100; i++) {
        pf__sb_appendf(&sb, "%d,", i);
    }
    rc = pf__sb_finish(&sb, &out);
    assert_true(rc == 0 || rc == PF_ENOMEM);
    if (rc == 0) {
        assert_int_equal(strlen(out), 290);
    }
    pf_free(out);
}

static void
test_strbuf_allocation_failure_is_sticky_and_leaks_nothing(void **state)
{
    (void)state;
    assert_true(pf_test_alloc_sweep(sb_scenario, NULL) > 1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strbuf_appends_and_formats),
        cmocka_unit_test(test_strbuf_empty_finish_gives_empty_string),
        cmocka_unit_test(test_strbuf_json_escapes),
        cmocka_unit_test(test_strbuf_copy_out_reports_needed_size),
        cmocka_unit_test(test_strbuf_prometheus_label_escapes),
        cmocka_unit_test(
            test_strbuf_allocation_failure_is_sticky_and_leaks_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
