/* Numbers the library writes or parses do not follow the process locale.
 *
 * The group setup builds a real comma-decimal locale (de_DE, UTF-8) with
 * localedef into a temporary folder and selects it through LOCPATH, so the
 * test needs no locale generated on the machine, only localedef (Debian
 * package locales, in scripts/deps.sh). Without it the test fails: it never
 * passes silently. Each test runs under that locale with LC_ALL set, as a
 * program that called setlocale(LC_ALL, "") would; checkers run after the
 * C locale is restored, so they read the text as any other program does. */
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "puffinflow/breaker.h"
#include "puffinflow/degrade.h"
#include "puffinflow/health.h"
#include "puffinflow/ratelimit.h"
#include "puffinflow/registry.h"
#include "json_check.h"
#include "prom_check.h"
#include "test.h"

#include "strbuf.h"

static char g_dir[] = "/tmp/pf_locale_XXXXXX";

static void
remove_dir(void)
{
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "could not remove %s\n", g_dir);
    }
}

/* Build de_DE.UTF-8 into g_dir and make it selectable by name. */
static int
group_setup(void **state)
{
    char cmd[256];
    int rc;

    (void)state;
    if (mkdtemp(g_dir) == NULL) {
        fprintf(stderr, "mkdtemp failed\n");
        return -1;
    }
    snprintf(cmd, sizeof(cmd),
             "localedef -i de_DE -f UTF-8 '%s/de_DE.UTF-8' >/dev/null 2>&1",
             g_dir);
    rc = system(cmd);
    /* localedef exits 1 when it only warned; the setlocale below is the
     * real test of whether the locale was made. */
    if (rc == -1 || !WIFEXITED(rc) || WEXITSTATUS(rc) > 1) {
        fprintf(stderr,
                "localedef failed (exit %d): install the Debian "
                "package locales (scripts/deps.sh)\n",
                WIFEXITED(rc) ? WEXITSTATUS(rc) : -1);
        remove_dir();
        return -1;
    }
    if (setenv("LOCPATH", g_dir, 1) != 0 ||
        setlocale(LC_ALL, "de_DE.UTF-8") == NULL) {
        fprintf(stderr, "the locale built by localedef cannot be used\n");
        remove_dir();
        return -1;
    }
    if (strcmp(localeconv()->decimal_point, ",") != 0) {
        fprintf(stderr, "de_DE.UTF-8 has decimal point \"%s\", not \",\"\n",
                localeconv()->decimal_point);
        remove_dir();
        return -1;
    }
    setlocale(LC_ALL, "C");
    return 0;
}

static int
group_teardown(void **state)
{
    (void)state;
    setlocale(LC_ALL, "C");
    remove_dir();
    return 0;
}

/* Each test starts under the comma-decimal locale, with a manual clock. */
static int
setup(void **state)
{
    if (setlocale(LC_ALL, "de_DE.UTF-8") == NULL) {
        return -1;
    }
    return pf_test_clock_setup(state);
}

static int
teardown(void **state)
{
    setlocale(LC_ALL, "C");
    return pf_test_clock_teardown(state);
}

static pf_registry_t *
quiet_registry(void)
{
    pf_registry_config_t cfg;
    pf_registry_t *r;

    pf_registry_config_init(&cfg);
    cfg.process_metrics = false;
    assert_pf_ok(pf_registry_new(&cfg, &r));
    return r;
}

/* A registry with a breaker "db" (recovery_timeout 2.5 s) and a rate
 * limiter "api" (0.5 per second). */
static pf_registry_t *
registry_with_fractions(pf_clock_t *clock)
{
    pf_registry_t *r = quiet_registry();
    pf_breaker_config_t bcfg;
    pf_ratelimit_config_t rcfg;
    pf_breaker_t *b;
    pf_ratelimit_t *rl;

    pf_breaker_config_init(&bcfg);
    bcfg.recovery_timeout = 2.5;
    bcfg.clock = clock;
    assert_pf_ok(pf_registry_get_breaker(r, "db", &bcfg, &b));
    pf_ratelimit_config_init(&rcfg);
    rcfg.rate = 0.5;
    rcfg.clock = clock;
    assert_pf_ok(pf_registry_get_ratelimit(r, "api", &rcfg, &rl));
    return r;
}

static void
test_locale_prometheus_export_writes_a_decimal_point(void **state)
{
    pf_registry_t *r = registry_with_fractions(*state);
    const prom_sample_t *smp;
    prom_doc_t doc;
    char *text;

    assert_string_equal(localeconv()->decimal_point, ",");
    assert_pf_ok(pf_registry_export(r, PF_METRICS_PROMETHEUS, &text, NULL));
    setlocale(LC_ALL, "C");
    if (strstr(text, "puffinflow_breaker_recovery_timeout_seconds"
                     "{name=\"db\"} 2.5\n") == NULL) {
        fail_msg("no recovery_timeout 2.5 in:\n%s", text);
    }
    assert_non_null(
        strstr(text, "puffinflow_ratelimit_rate{name=\"api\"} 0.5\n"));
    if (!prom_check(text, &doc)) {
        fail_msg("Prometheus text rejected: %s\n---\n%s---", doc.error, text);
    }
    smp = prom_find(&doc, "puffinflow_breaker_recovery_timeout_seconds",
                    (const char *const[]){"name", "db", NULL});
    assert_non_null(smp);
    assert_true(smp->value == 2.5);
    prom_doc_free(&doc);
    pf_free(text);
    pf_registry_free(r);
}

static void
test_locale_json_export_is_valid_json(void **state)
{
    pf_registry_t *r = registry_with_fractions(*state);
    char *text;

    assert_pf_ok(pf_registry_export(r, PF_METRICS_JSON, &text, NULL));
    setlocale(LC_ALL, "C");
    if (!json_valid(text)) {
        fail_msg("invalid JSON:\n%s", text);
    }
    assert_non_null(strstr(text, "\"recovery_timeout\":2.5"));
    assert_non_null(strstr(text, "\"rate\":0.5"));
    pf_free(text);
    pf_registry_free(r);
}

static int
slow_check(pf_health_result_t *res, void *arg)
{
    pf_clock_t *clock = arg;

    /* 1.25 ms on the manual clock: a duration with a fraction. */
    pf_clock_manual_advance(clock, 1250000);
    pf_health_result_set(res, PF_DEGRADED, "load %.1f", 2.5);
    return 0;
}

static void
test_locale_health_report_json_is_valid_json(void **state)
{
    pf_health_config_t cfg;
    pf_health_checker_t *hc;
    pf_health_report_t *rep;
    char *json;

    pf_health_config_init(&cfg);
    cfg.clock = *state;
    assert_pf_ok(pf_health_checker_new(&cfg, &hc));
    assert_pf_ok(pf_health_add_check(hc, "load", slow_check, *state));
    assert_pf_ok(pf_health_check_all(hc, &rep));
    assert_pf_ok(pf_health_report_json_alloc(rep, &json));
    setlocale(LC_ALL, "C");
    if (!json_valid(json)) {
        fail_msg("invalid JSON:\n%s", json);
    }
    assert_non_null(strstr(json, "\"duration_ms\":1.250"));
    /* A message formatted by pf_health_result_set, too. */
    assert_non_null(strstr(json, "\"message\":\"load 2.5\""));
    pf_free(json);
    pf_health_report_free(rep);
    pf_health_checker_free(hc);
}

/* The reason a rule gives once it fires, as the listener hears it. */
static void
on_change(const pf_degrade_event_t *ev, void *arg)
{
    snprintf(arg, 64, "%s", ev->reason);
}

static void
test_locale_rule_text_reads_a_decimal_point_only(void **state)
{
    pf_degrade_config_t cfg;
    pf_system_health_t h;
    pf_degrade_t *d;
    char reason[64] = "";

    pf_degrade_config_init(&cfg);
    cfg.min_dwell = 0;
    cfg.clock = *state;
    cfg.listener = on_change;
    cfg.listener_arg = reason;
    assert_pf_ok(pf_degrade_new(&cfg, &d));
    assert_pf_ok(pf_degrade_add_rule_str(d, "cpu > 90.5 -> reduced"));
    assert_pf_err(pf_degrade_add_rule_str(d, "cpu > 90,5 -> reduced"),
                  PF_EINVAL);
    memset(&h, 0, sizeof(h));
    h.cpu_usage = 90.75;
    h.memory_usage = 0;
    h.external_services_available = true;
    assert_pf_ok(pf_degrade_evaluate(d, &h));
    assert_string_equal(pf_degrade_mode_name(d), "reduced");
    assert_string_equal(reason, "cpu > 90.5");
    pf_degrade_free(d);
}

/* Threads exporting at once all get '.', whichever of them makes the C
 * locale object first (TSan checks the one-time setup). */
static void
export_many(void *arg, unsigned i)
{
    pf_registry_t *r = arg;
    int k;

    (void)i;
    for (k = 0; k < 20; k++) {
        char *text;

        assert_pf_ok(pf_registry_export(r, PF_METRICS_JSON, &text, NULL));
        if (strstr(text, "\"recovery_timeout\":2.5") == NULL) {
            fail_msg("thread %u: %s", i, text);
        }
        pf_free(text);
    }
}

static void
test_locale_concurrent_exports_all_write_a_decimal_point(void **state)
{
    pf_registry_t *r = registry_with_fractions(*state);

    pf_test_run_threads(8, export_many, r);
    pf_registry_free(r);
}

/* The internal formatter and parser every writer uses. */
static void
test_locale_number_helpers_ignore_the_locale(void **state)
{
    char buf[PF__NUM_BUF];
    char *end;

    (void)state;
    pf__fmt_double(buf, 2.5);
    assert_string_equal(buf, "2.5");
    pf__fmt_double(buf, 0.1);
    assert_string_equal(buf, "0.1");
    assert_true(pf__strtod_c("90.5 ->", &end) == 90.5);
    assert_string_equal(end, " ->");
    assert_true(pf__strtod_c("90,5", &end) == 90.0);
    assert_string_equal(end, ",5");
    assert_string_equal(localeconv()->decimal_point, ",");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        /* First, so the C locale object is made while threads race. */
        cmocka_unit_test_setup_teardown(
            test_locale_concurrent_exports_all_write_a_decimal_point, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_locale_prometheus_export_writes_a_decimal_point, setup,
            teardown),
        cmocka_unit_test_setup_teardown(test_locale_json_export_is_valid_json,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_locale_health_report_json_is_valid_json, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_locale_rule_text_reads_a_decimal_point_only, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_locale_number_helpers_ignore_the_locale, setup, teardown),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
