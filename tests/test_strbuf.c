/* The string buffer, JSON and Prometheus escaping. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "json_check.h"
#include "mem.h"
#include "strbuf.h"
#include "test.h"

/* s written by fn into a new string the test frees with pf_free. */
static char *
render(void (*fn)(pf__sb_t *sb, const char *s), const char *s)
{
    pf__sb_t sb = PF__SB_INIT;
    char *out;

    fn(&sb, s);
    assert_pf_ok(pf__sb_finish(&sb, &out));
    return out;
}

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
    need = 0;
    pf__sb_append(&sb, "hello");
    assert_pf_ok(pf__sb_copy_out(&sb, NULL, 0, &need)); /* measures */
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

/* Text: each byte that is not valid UTF-8 becomes U+FFFD, so the JSON
 * stays valid (a message "caf\xe9" once went out as it was). */
static void
test_strbuf_json_text_replaces_invalid_utf8(void **state)
{
    char *out;

    (void)state;
    out = render(pf__sb_json_str, "caf\xe9 \xc3\xa9 \xe2\x9c");
    assert_string_equal(out, "\"caf\xef\xbf\xbd \xc3\xa9 "
                             "\xef\xbf\xbd\xef\xbf\xbd\"");
    assert_true(json_valid(out));
    pf_free(out);
    out = pf__utf8_dup("\xff\xc0\xafok\xf0\x9f\x98\x80");
    assert_non_null(out);
    assert_string_equal(out, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdok"
                             "\xf0\x9f\x98\x80");
    pf__free(out);
}

static void
test_strbuf_names_escape_invalid_bytes_as_hex(void **state)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"db", "db"},
        {"caf\xc3\xa9", "caf\xc3\xa9"}, /* valid: unchanged */
        {"a\\b", "a\\b"},               /* a lone backslash too */
        {"db\xff", "db\\xFF"},
        {"db\xfe", "db\\xFE"},
        {"trunc\xe2\x9c", "trunc\\xE2\\x9C"},
        {"db\\xFF", "db\\\\xFF"},  /* looks like an escape */
        {"a\\\\b", "a\\\\\\b"},    /* "\\" + "\\b" */
        {"a\\\xff", "a\\\\\\xFF"}, /* backslash, bad byte */
        {"end\\", "end\\"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *out = pf__name_dup(cases[i].in);

        assert_non_null(out);
        if (strcmp(out, cases[i].out) != 0) {
            fail_msg("case %zu: got \"%s\", want \"%s\"", i, out, cases[i].out);
        }
        pf__free(out);
    }
}

/* The documented way back (docs/metrics.md): "\\\\" is a backslash,
 * "\\xHH" the byte 0xHH, any other backslash itself. */
static size_t
name_decode(const char *s, char *out)
{
    size_t o = 0;

    while (*s != '\0') {
        if (s[0] == '\\' && s[1] == '\\') {
            out[o++] = '\\';
            s += 2;
        } else if (s[0] == '\\' && s[1] == 'x' && s[2] != '\0' &&
                   s[3] != '\0') {
            char hex[3] = {s[2], s[3], '\0'};

            out[o++] = (char)strtol(hex, NULL, 16);
            s += 4;
        } else {
            out[o++] = *s++;
        }
    }
    out[o] = '\0';
    return o;
}

/* Injective: decoding gives back every input, so no two inputs share an
 * output. Inputs are random strings over the bytes that matter. */
static void
test_strbuf_name_escaping_reads_back_exactly(void **state)
{
    static const char alphabet[] = {'\\',   'x',    'F',    'f',
                                    '0',    'a',    '\xff', '\xc3',
                                    '\xa9', '\xe2', '\x9c', '\x80'};
    unsigned seed = 12345;
    int round;

    (void)state;
    for (round = 0; round < 20000; round++) {
        char in[16];
        char back[16 * 4 + 1];
        size_t len = (size_t)(round % 12) + 1;
        size_t i;
        char *out;

        for (i = 0; i < len; i++) {
            seed = seed * 1103515245u + 12345u;
            in[i] = alphabet[(seed >> 16) % sizeof(alphabet)];
        }
        in[len] = '\0';
        out = pf__name_dup(in);
        assert_non_null(out);
        name_decode(out, back);
        if (strcmp(back, in) != 0) {
            fail_msg("round %d: name does not read back", round);
        }
        pf__free(out);
    }
}

/* In JSON and Prometheus the name's backslashes are escaped once more. */
static void
test_strbuf_names_in_json_and_labels(void **state)
{
    pf__sb_t sb = PF__SB_INIT;
    char buf[64];
    char *out;

    (void)state;
    out = render(pf__sb_json_name, "db\xff\"");
    assert_string_equal(out, "\"db\\\\xFF\\\"\"");
    assert_true(json_valid(out));
    pf_free(out);
    pf__sb_json_name(&sb, NULL);
    assert_pf_ok(pf__sb_copy_out(&sb, buf, sizeof(buf), NULL));
    assert_string_equal(buf, "null");
    out = pf__name_dup("db\xff");
    assert_non_null(out);
    pf__sb_prom_label(&sb, out);
    pf__free(out);
    assert_pf_ok(pf__sb_copy_out(&sb, buf, sizeof(buf), NULL));
    assert_string_equal(buf, "db\\\\xFF");
}

static void
test_strbuf_utf8_cut_keeps_whole_sequences(void **state)
{
    (void)state;
    assert_int_equal(pf__utf8_cut("abc", 3), 3);
    assert_int_equal(pf__utf8_cut("ab\xc3\xa9", 3), 2); /* half of é */
    assert_int_equal(pf__utf8_cut("ab\xc3\xa9", 4), 4);
    assert_int_equal(pf__utf8_cut("a\xe2\x9c\x93", 3), 1); /* 2 of 3 */
    assert_int_equal(pf__utf8_cut("\xf0\x9f\x98\x80", 3), 0);
    assert_int_equal(pf__utf8_cut("a\x80\x80", 3), 3); /* stray: kept */
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
        cmocka_unit_test(test_strbuf_json_text_replaces_invalid_utf8),
        cmocka_unit_test(test_strbuf_names_escape_invalid_bytes_as_hex),
        cmocka_unit_test(test_strbuf_name_escaping_reads_back_exactly),
        cmocka_unit_test(test_strbuf_names_in_json_and_labels),
        cmocka_unit_test(test_strbuf_utf8_cut_keeps_whole_sequences),
        cmocka_unit_test(
            test_strbuf_allocation_failure_is_sticky_and_leaks_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
