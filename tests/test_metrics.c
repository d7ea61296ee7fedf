/* Metrics export: Prometheus text (checked by a strict parser, and by
 * the Prometheus project's own Python parser) and JSON (checked by a strict
 * validator), with the values each kind of object reports, escaping of
 * hostile names, the process block, and bad input / allocation failure. */
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "puffinflow/breaker.h"
#include "puffinflow/bulkhead.h"
#include "puffinflow/degrade.h"
#include "puffinflow/health.h"
#include "puffinflow/leak.h"
#include "puffinflow/ratelimit.h"
#include "puffinflow/registry.h"
#include "puffinflow/version.h"
#include "json_check.h"
#include "metrics_desc.h"
#include "prom_check.h"
#include "test.h"

/* A registry with no process block, so the text depends on the objects
 * alone. */
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

static char *export(pf_registry_t *r, pf_metrics_format_t fmt)
{
    char *text = NULL;
    size_t len = 0;

    assert_pf_ok(pf_registry_export(r, fmt, &text, &len));
    assert_int_equal(strlen(text), len);
    return text;
}

/* Parse text strictly; fail the test with the parser's reason if not. */
static void
check_prom(const char *text, prom_doc_t *doc)
{
    if (!prom_check(text, doc)) {
        fail_msg("Prometheus text rejected: %s\n---\n%s---", doc->error, text);
    }
}

static double
value_of(const prom_doc_t *doc, const char *metric, const char *const *kv)
{
    const prom_sample_t *s = prom_find(doc, metric, kv);

    if (s == NULL) {
        fail_msg("no sample %s with the labels asked for", metric);
    }
    return s->value;
}

#define LABELS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* ---- format ----------------------------------------------------------- */

static void
test_metrics_empty_registry_exports_only_the_info_gauge(void **state)
{
    pf_registry_t *r = quiet_registry();
    char *text = export(r, PF_METRICS_PROMETHEUS);
    prom_doc_t doc;

    (void)state;
    check_prom(text, &doc);
    assert_int_equal(doc.nfamilies, 1);
    assert_true(value_of(&doc, "puffinflow_info",
                         LABELS("version", pf_version())) == 1.0);
    prom_doc_free(&doc);
    pf_free(text);
    text = export(r, PF_METRICS_JSON);
    assert_true(json_valid(text));
    assert_non_null(strstr(text, "\"bulkheads\":[]"));
    assert_null(strstr(text, "\"process\""));
    pf_free(text);
    pf_registry_free(r);
}

static void
test_metrics_breaker_state_and_outcomes_follow_its_calls(void **state)
{
    static const int expected[] = {-5};
    pf_clock_t *clock = *state;
    pf_registry_t *r = quiet_registry();
    pf_breaker_config_t cfg;
    pf_breaker_t *b;
    pf_permit_t p = PF_PERMIT_INIT;
    prom_doc_t doc;
    char *text;

    pf_breaker_config_init(&cfg);
    cfg.failure_threshold = 2;
    cfg.recovery_timeout = 60.0;
    cfg.timeout = 1.0;
    cfg.expected_errors = expected;
    cfg.expected_errors_len = 1;
    cfg.clock = clock;
    assert_pf_ok(pf_registry_get_breaker(r, "payments", &cfg, &b));
    assert_pf_ok(pf_breaker_acquire(b, &p));
    pf_breaker_record(b, &p, 0); /* success */
    assert_pf_ok(pf_breaker_acquire(b, &p));
    pf_breaker_record(b, &p, -7); /* not listed: ignored */
    assert_pf_ok(pf_breaker_acquire(b, &p));
    pf_breaker_record(b, &p, -5); /* failure */
    assert_pf_ok(pf_breaker_acquire(b, &p));
    pf_clock_manual_advance(clock, 2 * NS_PER_SEC);
    pf_breaker_record(b, &p, 0); /* too slow: a timeout, opens it */
    assert_pf_err(pf_breaker_acquire(b, &p), PF_EOPEN); /* rejected */
    pf_clock_manual_advance(clock, 15 * NS_PER_SEC);

    text = export(r, PF_METRICS_PROMETHEUS);
    check_prom(text, &doc);
    assert_true(value_of(&doc, "puffinflow_breaker_state",
                         LABELS("name", "payments")) == 1);
    assert_true(value_of(&doc, "puffinflow_breaker_in_state",
                         LABELS("name", "payments", "state", "open")) == 1);
    assert_true(value_of(&doc, "puffinflow_breaker_in_state",
                         LABELS("name", "payments", "state", "closed")) == 0);
    assert_true(value_of(&doc, "puffinflow_breaker_in_state",
                         LABELS("name", "payments", "state", "half_open")) ==
                0);
    assert_true(value_of(&doc, "puffinflow_breaker_calls_total",
                         LABELS("outcome", "success")) == 1);
    assert_true(value_of(&doc, "puffinflow_breaker_calls_total",
                         LABELS("outcome", "failure")) == 1);
    assert_true(value_of(&doc, "puffinflow_breaker_calls_total",
                         LABELS("outcome", "timeout")) == 1);
    assert_true(value_of(&doc, "puffinflow_breaker_calls_total",
                         LABELS("outcome", "ignored")) == 1);
    assert_true(value_of(&doc, "puffinflow_breaker_calls_total",
                         LABELS("outcome", "rejected")) == 1);
    assert_true(value_of(&doc, "puffinflow_breaker_opened_total",
                         LABELS("name", "payments")) == 1);
    assert_true(value_of(&doc, "puffinflow_breaker_retry_in_seconds",
                         LABELS("name", "payments")) == 45);
    assert_true(value_of(&doc, "puffinflow_breaker_seconds_since_transition",
                         LABELS("name", "payments")) == 15);
    prom_doc_free(&doc);
    pf_free(text);

    /* After the open period it reports half-open at once. */
    pf_clock_manual_advance(clock, 45 * NS_PER_SEC);
    text = export(r, PF_METRICS_PROMETHEUS);
    check_prom(text, &doc);
    assert_true(value_of(&doc, "puffinflow_breaker_state",
                         LABELS("name", "payments")) == 2);
    assert_true(value_of(&doc, "puffinflow_breaker_in_state",
                         LABELS("name", "payments", "state", "half_open")) ==
                1);
    assert_null(prom_find(&doc, "puffinflow_breaker_retry_in_seconds", NULL));
    prom_doc_free(&doc);
    pf_free(text);
    text = export(r, PF_METRICS_JSON);
    assert_true(json_valid(text));
    assert_non_null(strstr(text, "\"breakers\":[{\"name\":\"payments\","
                                 "\"state\":\"half_open\",\"calls\":5,"));
    pf_free(text);
    pf_registry_free(r);
}

static void
test_metrics_breaker_group_breakers_carry_their_group(void **state)
{
    pf_clock_t *clock = *state;
    pf_registry_t *r = quiet_registry();
    pf_breaker_group_config_t gcfg;
    pf_breaker_config_t gbreaker;
    pf_breaker_config_t bcfg;
    pf_breaker_group_t *g;
    pf_breaker_t *b;
    pf_permit_t p = PF_PERMIT_INIT;
    prom_doc_t doc;
    char *text;

    pf_breaker_group_config_init(&gcfg);
    pf_breaker_config_init(&gbreaker);
    gbreaker.failure_threshold = 1;
    gbreaker.clock = clock;
    gcfg.breaker = &gbreaker;
    gcfg.max_breakers = 4;
    assert_pf_ok(pf_registry_get_breaker_group(r, "hosts", &gcfg, &g));
    assert_pf_ok(pf_breaker_group_acquire(g, "a.example", &p));
    pf_breaker_group_record(g, &p, -1); /* opens hosts/a.example */
    assert_pf_ok(pf_breaker_group_acquire(g, "b.example", &p));
    pf_breaker_group_record(g, &p, 0);
    /* A standalone breaker that happens to have a group breaker's name. */
    pf_breaker_config_init(&bcfg);
    bcfg.clock = clock;
    assert_pf_ok(pf_registry_get_breaker(r, "hosts/a.example", &bcfg, &b));

    text = export(r, PF_METRICS_PROMETHEUS);
    check_prom(text, &doc); /* label sets differ: no duplicate */
    assert_true(value_of(&doc, "puffinflow_breaker_state",
                         LABELS("name", "hosts/a.example", "group", "hosts")) ==
                1);
    assert_true(value_of(&doc, "puffinflow_breaker_state",
                         LABELS("name", "hosts/b.example", "group", "hosts")) ==
                0);
    assert_int_equal(prom_count(&doc, "puffinflow_breaker_state"), 3);
    assert_true(value_of(&doc, "puffinflow_breaker_group_size",
                         LABELS("group", "hosts")) == 2);
    assert_true(value_of(&doc, "puffinflow_breaker_group_max_breakers",
                         LABELS("group", "hosts")) == 4);
    prom_doc_free(&doc);
    pf_free(text);
    text = export(r, PF_METRICS_JSON);
    assert_true(json_valid(text));
    assert_non_null(strstr(text, "\"breaker_groups\":[{\"name\":\"hosts\","));
    pf_free(text);
    pf_registry_free(r);
}

/* A group that has made no breaker yet still reports its own figures
 * (they were left out while the registry held no breaker at all). */
static void
test_metrics_breaker_group_is_exported_before_its_first_breaker(void **state)
{
    pf_registry_t *r = quiet_registry();
    pf_breaker_group_t *g;
    prom_doc_t doc;
    char *text;

    (void)state;
    assert_pf_ok(pf_registry_get_breaker_group(r, "hosts", NULL, &g));
    text = export(r, PF_METRICS_PROMETHEUS);
    check_prom(text, &doc);
    assert_int_equal(prom_count(&doc, "puffinflow_breaker_state"), 0);
    assert_true(value_of(&doc, "puffinflow_breaker_group_size",
                         LABELS("group", "hosts")) == 0);
    assert_true(value_of(&doc, "puffinflow_breaker_group_created_total",
                         LABELS("group", "hosts")) == 0);
    prom_doc_free(&doc);
    pf_free(text);
    pf_registry_free(r);
}

/* A sampler giving fixed figures, so the exported sample is known. */
static int
fixed_sample(int pid, pf_leak_sample_t *out, void *arg)
{
    (void)pid;
    (void)arg;
    out->rss_bytes = 512 * 1024 * 1024;
    out->memory_limit_bytes = INT64_C(1024) * 1024 * 1024;
    out->threads = 7;
    out->open_fds = 42;
    out->fd_limit = 1024;
    out->sockets = 5;
    out->tcp = 3;
    out->udp = 1;
    out->unix_sockets = 1;
    return 0;
}

static void
test_metrics_leak_detector_values_follow_its_samples_and_allocations(
    void **state)
{
    pf_clock_t *clock = *state;
    pf_registry_t *r = quiet_registry();
    pf_leak_config_t cfg;
    pf_leak_detector_t *d;
    pf_leak_report_t rep;
    prom_doc_t doc;
    char *text;

    pf_leak_config_init(&cfg);
    cfg.sample = fixed_sample;
    cfg.clock = clock;
    cfg.leak_threshold = 300.0;
    cfg.file_handle_threshold = 40; /* 42 open: raises the alert */
    assert_pf_ok(pf_registry_get_leak_detector(r, "self", &cfg, &d));
    /* Before any sample: no sample figures at all. */
    text = export(r, PF_METRICS_PROMETHEUS);
    check_prom(text, &doc);
    assert_int_equal(prom_count(&doc, "puffinflow_leak_sample_open_fds"), 0);
    assert_true(value_of(&doc, "puffinflow_leak_samples_total",
                         LABELS("name", "self")) == 0);
    prom_doc_free(&doc);
    pf_free(text);

    assert_pf_ok(
        pf_leak_detector_track_allocation(d, "agent", "old_state", NULL));
    pf_clock_manual_advance(clock, 400 * NS_PER_SEC);
    assert_pf_ok(
        pf_leak_detector_track_allocation(d, "agent", "new_state", NULL));
    assert_pf_ok(pf_leak_detector_check(d, &rep));
    pf_leak_report_free(&rep);

    text = export(r, PF_METRICS_PROMETHEUS);
    check_prom(text, &doc);
    assert_true(value_of(&doc, "puffinflow_leak_sample_open_fds",
                         LABELS("name", "self")) == 42);
    assert_true(value_of(&doc, "puffinflow_leak_sample_threads",
                         LABELS("name", "self")) == 7);
    assert_true(value_of(&doc, "puffinflow_leak_sample_memory_fraction",
                         LABELS("name", "self")) == 0.5);
    assert_true(value_of(&doc, "puffinflow_leak_sample_connections",
                         LABELS("name", "self")) == 4);
    assert_true(value_of(&doc, "puffinflow_leak_tracked_allocations",
                         LABELS("name", "self")) == 2);
    assert_true(value_of(&doc, "puffinflow_leak_current_leaks",
                         LABELS("name", "self")) == 1);
    assert_true(value_of(&doc, "puffinflow_leak_oldest_allocation_age_seconds",
                         LABELS("name", "self")) == 400);
    assert_true(value_of(&doc, "puffinflow_leak_alerting",
                         LABELS("name", "self", "kind", "file_handles")) == 1);
    assert_true(value_of(&doc, "puffinflow_leak_alerting",
                         LABELS("name", "self", "kind", "memory")) == 0);
    assert_true(value_of(&doc, "puffinflow_leak_alerting",
                         LABELS("name", "self", "kind", "allocation")) == 1);
    prom_doc_free(&doc);
    pf_free(text);
    text = export(r, PF_METRICS_JSON);
    assert_true(json_valid(text));
    assert_non_null(strstr(text, "\"leak_detectors\":[{\"name\":\"self\","));
    assert_non_null(strstr(text, "\"open_fds\":42"));
    pf_free(text);
    pf_registry_free(r);
}

static void
test_metrics_degradation_mode_is_exported_by_index_and_name(void **state)
{
    static const char *const modes[] = {"full", "reduced", "offline"};
    pf_clock_t *clock = *state;
    pf_registry_t *r = quiet_registry();
    pf_degrade_config_t cfg;
    pf_degrade_t *d;
    pf_system_health_t h;
    prom_doc_t doc;
    char *text;

    pf_degrade_config_init(&cfg);
    cfg.modes = modes;
    cfg.modes_len = 3;
    cfg.clock = clock;
    assert_pf_ok(pf_registry_get_degrade(r, "svc", &cfg, &d));
    assert_pf_ok(pf_degrade_add_rule_str(d, "cpu > 90 -> reduced"));
    text = export(r, PF_METRICS_PROMETHEUS);
    check_prom(text, &doc);
    assert_true(value_of(&doc, "puffinflow_degradation_mode",
                         LABELS("name", "svc")) == 0);
    /* No evaluation yet: no signal figures. */
    assert_int_equal(
        prom_count(&doc, "puffinflow_degradation_cpu_usage_percent"), 0);
    prom_doc_free(&doc);
    pf_free(text);

    memset(&h, 0, sizeof(h));
    h.cpu_usage = 95.0;
    h.memory_usage = 40.0;
    h.external_services_available = true;
    assert_pf_ok(pf_degrade_evaluate(d, &h));
    text = export(r, PF_METRICS_PROMETHEUS);
    check_prom(text, &doc);
    assert_true(value_of(&doc, "puffinflow_degradation_mode",
                         LABELS("name", "svc")) == 1);
    assert_true(value_of(&doc, "puffinflow_degradation_in_mode",
                         LABELS("name", "svc", "mode", "reduced")) == 1);
    assert_true(value_of(&doc, "puffinflow_degradation_in_mode",
                         LABELS("name", "svc", "mode", "full")) == 0);
    assert_true(value_of(&doc, "puffinflow_degradation_in_mode",
                         LABELS("name", "svc", "mode", "offline")) == 0);
    assert_true(value_of(&doc, "puffinflow_degradation_cpu_usage_percent",
                         LABELS("name", "svc")) == 95);
    assert_true(value_of(&doc,
                         "puffinflow_degradation_external_services_available",
                         LABELS("name", "svc")) == 1);
    assert_true(value_of(&doc, "puffinflow_degradation_transitions_total",
                         LABELS("name", "svc")) == 1);
    prom_doc_free(&doc);
    pf_free(text);
    assert_pf_ok(pf_degrade_override(d, "offline"));
    text = export(r, PF_METRICS_JSON);
    assert_true(json_valid(text));
    assert_non_null(strstr(text, "\"degradations\":[{\"name\":\"svc\","
                                 "\"mode\":\"offline\",\"mode_index\":2,"));
    pf_free(text);
    pf_registry_free(r);
}

static void
test_metrics_bulkhead_values_follow_its_activity(void **state)
{
    pf_registry_t *r = quiet_registry();
    pf_bulkhead_config_t cfg;
    pf_bulkhead_t *bh;
    prom_doc_t doc;
    char *text;

    (void)state;
    pf_bulkhead_config_init(&cfg);
    cfg.max_concurrent_calls = 2;
    cfg.max_queue_size = 0;
    assert_pf_ok(pf_registry_get_bulkhead(r, "db", &cfg, &bh));
    assert_pf_ok(pf_bulkhead_try_enter(bh));
    assert_pf_ok(pf_bulkhead_try_enter(bh));
    assert_pf_err(pf_bulkhead_try_enter(bh), PF_EFULL);
    pf_bulkhead_leave(bh);
    text = export(r, PF_METRICS_PROMETHEUS);
    check_prom(text, &doc);
    assert_true(value_of(&doc, "puffinflow_bulkhead_in_use",
                         LABELS("name", "db")) == 1);
    assert_true(value_of(&doc, "puffinflow_bulkhead_max_concurrent",
                         LABELS("name", "db")) == 2);
    assert_true(value_of(&doc, "puffinflow_bulkhead_available",
                         LABELS("name", "db")) == 1);
    assert_true(value_of(&doc, "puffinflow_bulkhead_peak_in_use",
                         LABELS("name", "db")) == 2);
    assert_true(value_of(&doc, "puffinflow_bulkhead_accepted_total",
                         LABELS("name", "db")) == 2);
    assert_true(value_of(&doc, "puffinflow_bulkhead_rejected_total",
                         LABELS("name", "db", "reason", "full")) == 1);
    assert_true(value_of(&doc, "puffinflow_bulkhead_rejected_total",
                         LABELS("name", "db", "reason", "timeout")) == 0);
    /* Not adaptive: no adaptive families at all. */
    assert_int_equal(prom_count(&doc, "puffinflow_bulkhead_adaptive_floor"), 0);
    prom_doc_free(&doc);
    pf_free(text);
    pf_bulkhead_leave(bh);
    pf_registry_free(r);
}

static void
test_metrics_ratelimit_values_follow_its_activity(void **state)
{
    pf_clock_t *clock = *state;
    pf_registry_t *r = quiet_registry();
    pf_ratelimit_config_t cfg;
    pf_ratelimit_t *rl;
    prom_doc_t doc;
    char *text;

    pf_ratelimit_config_init(&cfg);
    cfg.rate = 0.5;
    cfg.burst = 3;
    cfg.clock = clock;
    assert_pf_ok(pf_registry_get_ratelimit(r, "api", &cfg, &rl));
    assert_pf_ok(pf_ratelimit_try_acquire(rl, 2));
    assert_pf_err(pf_ratelimit_try_acquire(rl, 2), PF_ERATELIMIT);
    text = export(r, PF_METRICS_PROMETHEUS);
    check_prom(text, &doc);
    assert_true(value_of(&doc, "puffinflow_ratelimit_rate",
                         LABELS("name", "api")) == 0.5);
    assert_non_null(strstr(text, "puffinflow_ratelimit_rate{name=\"api\"} "
                                 "0.5\n"));
    assert_true(value_of(&doc, "puffinflow_ratelimit_burst",
                         LABELS("name", "api")) == 3);
    assert_true(value_of(&doc, "puffinflow_ratelimit_available_permits",
                         LABELS("name", "api")) == 1);
    assert_true(value_of(&doc, "puffinflow_ratelimit_acquired_permits_total",
                         LABELS("name", "api")) == 2);
    assert_true(value_of(&doc, "puffinflow_ratelimit_rejected_total",
                         LABELS("name", "api")) == 1);
    prom_doc_free(&doc);
    pf_free(text);
    pf_registry_free(r);
}

static int
status_check(pf_health_result_t *res, void *arg)
{
    pf_health_result_set(res, *(pf_health_status_t *)arg, "as told");
    return 0;
}

static void
test_metrics_health_status_per_check_and_overall(void **state)
{
    static pf_health_status_t ok = PF_HEALTHY;
    static pf_health_status_t slow = PF_DEGRADED;
    static pf_health_status_t down = PF_UNHEALTHY;
    pf_registry_t *r = quiet_registry();
    pf_health_checker_t *hc;
    pf_health_report_t *rep;
    prom_doc_t doc;
    char *text;

    (void)state;
    assert_pf_ok(pf_registry_get_health_checker(r, "api", NULL, &hc));
    assert_pf_ok(pf_health_add_check(hc, "db", status_check, &ok));
    assert_pf_ok(pf_health_add_check(hc, "cache", status_check, &slow));
    assert_pf_ok(pf_health_add_check(hc, "queue", status_check, &down));
    assert_pf_ok(pf_health_add_check(hc, "never", status_check, &ok));
    assert_pf_ok(pf_health_check_one(hc, "db", &rep));
    pf_health_report_free(rep);
    assert_pf_ok(pf_health_check_one(hc, "cache", &rep));
    pf_health_report_free(rep);
    assert_pf_ok(pf_health_check_one(hc, "queue", &rep));
    pf_health_report_free(rep);
    text = export(r, PF_METRICS_PROMETHEUS);
    check_prom(text, &doc);
    assert_true(value_of(&doc, "puffinflow_health_status",
                         LABELS("checker", "api", "check", "db")) == 0);
    assert_true(value_of(&doc, "puffinflow_health_status",
                         LABELS("checker", "api", "check", "cache")) == 1);
    assert_true(value_of(&doc, "puffinflow_health_status",
                         LABELS("checker", "api", "check", "queue")) == 2);
    /* A check that never ran has no status yet, but has its counters. */
    assert_null(
        prom_find(&doc, "puffinflow_health_status", LABELS("check", "never")));
    assert_true(value_of(&doc, "puffinflow_health_check_results_total",
                         LABELS("check", "never")) == 0);
    assert_true(value_of(&doc, "puffinflow_health_check_results_total",
                         LABELS("check", "queue")) == 1);
    assert_true(value_of(&doc, "puffinflow_health_check_failures_total",
                         LABELS("check", "queue")) == 1);
    assert_true(value_of(&doc, "puffinflow_health_overall_status",
                         LABELS("checker", "api")) == 2);
    assert_true(value_of(&doc, "puffinflow_health_checks",
                         LABELS("checker", "api")) == 4);
    prom_doc_free(&doc);
    pf_free(text);
    pf_registry_free(r);
}

/* Names with every character the format must escape, and bytes that are
 * not UTF-8: label values come back exactly (or with \xHH for the bad
 * bytes, docs/metrics.md), and both formats stay valid. */
static void
test_metrics_label_values_are_escaped_and_made_utf8(void **state)
{
    static const char *const hostile = "a\"b\\c\nd}e,f=g\"";
    pf_registry_t *r = quiet_registry();
    pf_bulkhead_t *bh;
    pf_ratelimit_t *rl;
    prom_doc_t doc;
    char *text;

    (void)state;
    assert_pf_ok(pf_registry_get_bulkhead(r, hostile, NULL, &bh));
    assert_pf_ok(
        pf_registry_get_bulkhead(r, "caf\xc3\xa9 \xe2\x9c\x93", NULL, &bh));
    assert_pf_ok(
        pf_registry_get_ratelimit(r, "bad\xff\xc0\xafutf8", NULL, &rl));
    assert_pf_ok(pf_registry_get_ratelimit(r, "trunc\xe2\x9c", NULL, &rl));
    text = export(r, PF_METRICS_PROMETHEUS);
    check_prom(text, &doc);
    assert_non_null(strstr(text, "{name=\"a\\\"b\\\\c\\nd}e,f=g\\\"\"}"));
    assert_non_null(
        prom_find(&doc, "puffinflow_bulkhead_in_use", LABELS("name", hostile)));
    assert_non_null(prom_find(&doc, "puffinflow_bulkhead_in_use",
                              LABELS("name", "caf\xc3\xa9 \xe2\x9c\x93")));
    assert_non_null(prom_find(&doc, "puffinflow_ratelimit_burst",
                              LABELS("name", "bad\\xFF\\xC0\\xAFutf8")));
    assert_non_null(prom_find(&doc, "puffinflow_ratelimit_burst",
                              LABELS("name", "trunc\\xE2\\x9C")));
    prom_doc_free(&doc);
    pf_free(text);
    text = export(r, PF_METRICS_JSON);
    assert_true(json_valid(text));
    assert_non_null(strstr(text, "\"a\\\"b\\\\c\\nd}e,f=g\\\"\""));
    pf_free(text);
    pf_registry_free(r);
}

/* Names that differ only in bytes that are not UTF-8 stay two series (the
 * strict checker rejects a repeated label set) and two JSON objects. */
static void
test_metrics_names_differing_in_invalid_bytes_stay_distinct(void **state)
{
    pf_registry_t *r = quiet_registry();
    pf_registry_snapshot_t *snap;
    pf_bulkhead_t *bh;
    prom_doc_t doc;
    char *text;

    (void)state;
    assert_pf_ok(pf_registry_get_bulkhead(r, "db\xff", NULL, &bh));
    assert_pf_ok(pf_registry_get_bulkhead(r, "db\xfe", NULL, &bh));
    assert_pf_ok(pf_registry_get_bulkhead(r, "db\\xFE", NULL, &bh));
    text = export(r, PF_METRICS_PROMETHEUS);
    check_prom(text, &doc);
    assert_non_null(prom_find(&doc, "puffinflow_bulkhead_in_use",
                              LABELS("name", "db\\xFF")));
    assert_non_null(prom_find(&doc, "puffinflow_bulkhead_in_use",
                              LABELS("name", "db\\xFE")));
    assert_non_null(prom_find(&doc, "puffinflow_bulkhead_in_use",
                              LABELS("name", "db\\\\xFE")));
    prom_doc_free(&doc);
    pf_free(text);
    text = export(r, PF_METRICS_JSON);
    assert_true(json_valid(text));
    assert_non_null(strstr(text, "\"name\":\"db\\\\xFF\""));
    assert_non_null(strstr(text, "\"name\":\"db\\\\xFE\""));
    assert_non_null(strstr(text, "\"name\":\"db\\\\\\\\xFE\""));
    pf_free(text);
    /* The snapshot carries the same cleaned names, in the order of the
     * names as given ('\\' sorts before 0xFE). */
    assert_pf_ok(pf_registry_snapshot(r, &snap));
    assert_int_equal(snap->bulkheads_len, 3);
    assert_string_equal(snap->bulkheads[0].name, "db\\\\xFE");
    assert_string_equal(snap->bulkheads[1].name, "db\\xFE");
    assert_string_equal(snap->bulkheads[2].name, "db\\xFF");
    pf_registry_snapshot_free(snap);
    pf_registry_free(r);
}

static void
test_metrics_numbers_are_written_as_prometheus_reads_them(void **state)
{
    pf_registry_ratelimit_t rls[4];
    pf_registry_snapshot_t s;
    char *text;

    (void)state;
    memset(&s, 0, sizeof(s));
    memset(rls, 0, sizeof(rls));
    rls[0].name = "a";
    rls[0].metrics.rate = 0.1;
    rls[1].name = "b";
    rls[1].metrics.rate = NAN;
    rls[2].name = "c";
    rls[2].metrics.rate = INFINITY;
    rls[3].name = "d";
    rls[3].metrics.rate = 1e20;
    rls[3].metrics.acquired = UINT64_C(9007199254740993); /* 2^53 + 1 */
    s.ratelimits = rls;
    s.ratelimits_len = 4;
    assert_pf_ok(
        pf_registry_snapshot_export(&s, PF_METRICS_PROMETHEUS, &text, NULL));
    assert_non_null(
        strstr(text, "puffinflow_ratelimit_rate{name=\"a\"} 0.1\n"));
    assert_non_null(
        strstr(text, "puffinflow_ratelimit_rate{name=\"b\"} NaN\n"));
    assert_non_null(
        strstr(text, "puffinflow_ratelimit_rate{name=\"c\"} +Inf\n"));
    assert_non_null(
        strstr(text, "puffinflow_ratelimit_rate{name=\"d\"} 1e+20\n"));
    assert_non_null(strstr(text, "puffinflow_ratelimit_acquired_permits_total"
                                 "{name=\"d\"} 9007199254740993\n"));
    pf_free(text);
    assert_pf_ok(pf_registry_snapshot_export(&s, PF_METRICS_JSON, &text, NULL));
    assert_true(json_valid(text)); /* NaN and Inf became null */
    assert_non_null(strstr(text, "\"rate\":null"));
    pf_free(text);
}

/* Every integer family is written exactly, whatever its kind (breaker,
 * leak and degradation counters once went through a double). */
static void
test_metrics_counters_of_every_kind_are_written_exactly(void **state)
{
    pf_registry_breaker_t br;
    pf_registry_leak_detector_t lk;
    pf_registry_degrade_t dg;
    pf_registry_snapshot_t s;
    char *text;

    (void)state;
    memset(&s, 0, sizeof(s));
    memset(&br, 0, sizeof(br));
    memset(&lk, 0, sizeof(lk));
    memset(&dg, 0, sizeof(dg));
    br.name = "b";
    br.metrics.slow_calls = UINT64_C(9007199254740993); /* 2^53 + 1 */
    br.metrics.last_failure_ns = -1;
    br.metrics.last_transition_ns = -1;
    lk.name = "l";
    lk.metrics.allocations = UINT64_C(9007199254740993);
    dg.name = "d";
    dg.metrics.updates = UINT64_C(9007199254740993);
    s.breakers = &br;
    s.breakers_len = 1;
    s.leak_detectors = &lk;
    s.leak_detectors_len = 1;
    s.degradations = &dg;
    s.degradations_len = 1;
    assert_pf_ok(
        pf_registry_snapshot_export(&s, PF_METRICS_PROMETHEUS, &text, NULL));
    assert_non_null(strstr(text, "puffinflow_breaker_slow_calls_total"
                                 "{name=\"b\"} 9007199254740993\n"));
    assert_non_null(strstr(text, "puffinflow_leak_allocations_total"
                                 "{name=\"l\"} 9007199254740993\n"));
    assert_non_null(strstr(text, "puffinflow_degradation_updates_total"
                                 "{name=\"d\"} 9007199254740993\n"));
    pf_free(text);
}

/* A figure a leak sampler could not read (negative) is left out of the
 * Prometheus text, as it is null in the JSON. */
static void
test_metrics_unknown_leak_sample_figures_are_left_out(void **state)
{
    pf_registry_leak_detector_t lk;
    pf_registry_snapshot_t s;
    char *text;

    (void)state;
    memset(&s, 0, sizeof(s));
    memset(&lk, 0, sizeof(lk));
    lk.name = "l";
    lk.metrics.samples = 1;
    lk.metrics.oldest_allocation_age = NAN;
    lk.metrics.last_sample.rss_bytes = 4096;
    lk.metrics.last_sample.threads = -1;
    lk.metrics.last_sample.open_fds = -1;
    lk.metrics.last_sample.fd_limit = -1;
    lk.metrics.last_sample.sockets = -1;
    lk.metrics.last_sample.connections = -1;
    s.leak_detectors = &lk;
    s.leak_detectors_len = 1;
    assert_pf_ok(
        pf_registry_snapshot_export(&s, PF_METRICS_PROMETHEUS, &text, NULL));
    assert_non_null(strstr(text, "puffinflow_leak_sample_resident_memory_bytes"
                                 "{name=\"l\"} 4096\n"));
    assert_null(strstr(text, "puffinflow_leak_sample_threads"));
    assert_null(strstr(text, "puffinflow_leak_sample_open_fds"));
    pf_free(text);
    assert_pf_ok(pf_registry_snapshot_export(&s, PF_METRICS_JSON, &text, NULL));
    assert_non_null(strstr(text, "\"threads\":null,\"open_fds\":null"));
    pf_free(text);
}

static void
test_metrics_json_is_valid_and_lists_every_kind(void **state)
{
    pf_registry_t *r = quiet_registry();
    pf_bulkhead_t *bh;
    pf_ratelimit_t *rl;
    pf_health_checker_t *hc;
    char *text;

    (void)state;
    assert_pf_ok(pf_registry_get_bulkhead(r, "b1", NULL, &bh));
    assert_pf_ok(pf_registry_get_ratelimit(r, "r1", NULL, &rl));
    assert_pf_ok(pf_registry_get_health_checker(r, "h1", NULL, &hc));
    text = export(r, PF_METRICS_JSON);
    assert_true(json_valid(text));
    assert_non_null(strstr(text, "\"bulkheads\":[{\"name\":\"b1\","));
    assert_non_null(strstr(text, "\"ratelimits\":[{\"name\":\"r1\","));
    assert_non_null(strstr(text, "\"health_checkers\":[{\"name\":\"h1\","));
    assert_non_null(strstr(text, "\"puffinflow_version\":\""));
    pf_free(text);
    pf_registry_free(r);
}

/* ---- the process block ------------------------------------------------ */

static void
test_metrics_process_open_fds_counts_new_descriptors(void **state)
{
    pf_registry_t *r;
    prom_doc_t doc;
    char *text;
    double before, after;
    int fds[20][2];
    int i;

    (void)state;
    assert_pf_ok(pf_registry_new(NULL, &r));
    text = export(r, PF_METRICS_PROMETHEUS);
    check_prom(text, &doc);
    before = value_of(&doc, "puffinflow_process_open_fds", NULL);
    assert_true(value_of(&doc, "puffinflow_process_max_fds", NULL) > 0);
    assert_true(
        value_of(&doc, "puffinflow_process_resident_memory_bytes", NULL) > 0);
    assert_true(value_of(&doc, "puffinflow_process_threads", NULL) >= 1);
    prom_doc_free(&doc);
    pf_free(text);
    for (i = 0; i < 20; i++) {
        assert_int_equal(pipe(fds[i]), 0);
    }
    text = export(r, PF_METRICS_PROMETHEUS);
    check_prom(text, &doc);
    after = value_of(&doc, "puffinflow_process_open_fds", NULL);
    prom_doc_free(&doc);
    pf_free(text);
    for (i = 0; i < 20; i++) {
        close(fds[i][0]);
        close(fds[i][1]);
    }
    assert_true(after - before == 40);
    text = export(r, PF_METRICS_JSON);
    assert_true(json_valid(text));
    assert_non_null(strstr(text, "\"process\":{\"open_fds\":"));
    pf_free(text);
    pf_registry_free(r);
}

/* ---- buffers, bad input, allocation failure --------------------------- */

static void
test_metrics_export_to_reports_the_size_needed(void **state)
{
    pf_registry_t *r = quiet_registry();
    pf_bulkhead_t *bh;
    char small[16];
    char *big;
    size_t needed = 0;

    (void)state;
    assert_pf_ok(pf_registry_get_bulkhead(r, "b", NULL, &bh));
    assert_pf_err(pf_registry_export_to(r, PF_METRICS_PROMETHEUS, small,
                                        sizeof(small), &needed),
                  PF_ERANGE);
    assert_true(needed > sizeof(small));
    big = malloc(needed);
    assert_pf_ok(
        pf_registry_export_to(r, PF_METRICS_PROMETHEUS, big, needed, NULL));
    assert_int_equal(strlen(big) + 1, needed);
    free(big);
    pf_registry_free(r);
}

/* Measuring, as with snprintf: a buffer of size 0 (NULL or not) gives the
 * size alone, in both formats. The Prometheus text of this registry does
 * not change between calls, so its size is exactly enough; the JSON one
 * carries the time, whose digits vary, so a second call reports its own
 * size. */
static void
test_metrics_export_to_measures_with_a_null_buffer(void **state)
{
    pf_registry_t *r = quiet_registry();
    pf_bulkhead_t *bh;
    size_t needed = 0;
    size_t got = 0;
    char *buf;

    (void)state;
    assert_pf_ok(pf_registry_get_bulkhead(r, "b", NULL, &bh));
    assert_pf_ok(
        pf_registry_export_to(r, PF_METRICS_PROMETHEUS, NULL, 0, &needed));
    assert_true(needed > 1);
    buf = malloc(needed);
    assert_non_null(buf);
    assert_pf_ok(
        pf_registry_export_to(r, PF_METRICS_PROMETHEUS, buf, needed, &got));
    assert_int_equal(got, needed);
    assert_int_equal(strlen(buf) + 1, needed);
    got = 0;
    buf[0] = 'z';
    assert_pf_ok(pf_registry_export_to(r, PF_METRICS_PROMETHEUS, buf, 0, &got));
    assert_int_equal(got, needed);
    assert_int_equal(buf[0], 'z'); /* size 0: left alone */
    free(buf);

    needed = 0;
    assert_pf_ok(pf_registry_export_to(r, PF_METRICS_JSON, NULL, 0, &needed));
    assert_true(needed > 1);
    buf = malloc(needed + 64);
    assert_non_null(buf);
    assert_pf_ok(
        pf_registry_export_to(r, PF_METRICS_JSON, buf, needed + 64, &got));
    assert_int_equal(got, strlen(buf) + 1);
    assert_true(json_valid(buf));
    free(buf);
    pf_registry_free(r);
}

static void
test_metrics_bad_arguments_are_einval(void **state)
{
    pf_registry_t *r = quiet_registry();
    pf_registry_snapshot_t *s;
    char *text;

    (void)state;
    assert_pf_err(pf_registry_export(NULL, PF_METRICS_JSON, &text, NULL),
                  PF_EINVAL);
    assert_pf_err(pf_registry_export(r, PF_METRICS_JSON, NULL, NULL),
                  PF_EINVAL);
    assert_pf_err(pf_registry_export(r, (pf_metrics_format_t)9, &text, NULL),
                  PF_EINVAL);
    assert_pf_err(pf_registry_export_to(r, PF_METRICS_JSON, NULL, 10, NULL),
                  PF_EINVAL);
    assert_pf_err(pf_registry_snapshot(NULL, &s), PF_EINVAL);
    assert_pf_err(pf_registry_snapshot(r, NULL), PF_EINVAL);
    assert_pf_err(
        pf_registry_snapshot_export(NULL, PF_METRICS_JSON, &text, NULL),
        PF_EINVAL);
    pf_registry_snapshot_free(NULL);
    pf_registry_free(r);
}

static int
ok_check(pf_health_result_t *res, void *arg)
{
    (void)res;
    (void)arg;
    return 0;
}

static int
ok_call(void *arg)
{
    (void)arg;
    return 0;
}

static void
alloc_scenario(void *arg)
{
    pf_registry_t *r = arg;
    pf_registry_snapshot_t *s;
    char buf[8192];
    char *text;
    int rc;

    rc = pf_registry_export(r, PF_METRICS_PROMETHEUS, &text, NULL);
    if (rc == 0) {
        prom_doc_t doc;

        check_prom(text, &doc);
        prom_doc_free(&doc);
        pf_free(text);
    } else {
        assert_int_equal(rc, PF_ENOMEM);
    }
    rc = pf_registry_export(r, PF_METRICS_JSON, &text, NULL);
    if (rc == 0) {
        assert_true(json_valid(text));
        pf_free(text);
    } else {
        assert_int_equal(rc, PF_ENOMEM);
    }
    rc = pf_registry_export_to(r, PF_METRICS_JSON, buf, sizeof(buf), NULL);
    assert_true(rc == 0 || rc == PF_ENOMEM);
    rc = pf_registry_snapshot(r, &s);
    if (rc == 0) {
        pf_registry_snapshot_free(s);
    } else {
        assert_int_equal(rc, PF_ENOMEM);
    }
}

static void
test_metrics_allocation_failures_leak_nothing(void **state)
{
    pf_registry_t *r;
    pf_breaker_t *br;
    pf_breaker_group_t *grp;
    pf_bulkhead_t *bh;
    pf_ratelimit_t *rl;
    pf_health_checker_t *hc;
    pf_health_report_t *rep;
    pf_leak_config_t lcfg;
    pf_leak_detector_t *leak;
    pf_leak_report_t lrep;
    pf_degrade_t *deg;

    (void)state;
    assert_pf_ok(pf_registry_new(NULL, &r));
    assert_pf_ok(pf_registry_get_bulkhead(r, "b1", NULL, &bh));
    assert_pf_ok(pf_registry_get_bulkhead(r, "b2", NULL, &bh));
    assert_pf_ok(pf_registry_get_breaker(r, "br", NULL, &br));
    assert_pf_ok(pf_registry_get_breaker_group(r, "grp", NULL, &grp));
    pf_leak_config_init(&lcfg);
    lcfg.sample = fixed_sample;
    assert_pf_ok(pf_registry_get_leak_detector(r, "leak", &lcfg, &leak));
    assert_pf_ok(pf_leak_detector_check(leak, &lrep));
    pf_leak_report_free(&lrep);
    assert_pf_ok(pf_registry_get_degrade(r, "deg", NULL, &deg));
    assert_pf_ok(pf_breaker_group_call(grp, "k1", ok_call, NULL));
    assert_pf_ok(pf_breaker_group_call(grp, "k2", ok_call, NULL));
    assert_pf_ok(pf_registry_get_ratelimit(r, "r\xff", NULL, &rl));
    assert_pf_ok(pf_registry_get_health_checker(r, "h", NULL, &hc));
    assert_pf_ok(pf_health_add_check(hc, "c1", ok_check, NULL));
    assert_pf_ok(pf_health_add_check(hc, "c2", ok_check, NULL));
    assert_pf_ok(pf_health_check_all(hc, &rep));
    pf_health_report_free(rep);
    assert_true(pf_test_alloc_sweep(alloc_scenario, r) > 10);
    pf_registry_free(r);
}

/* ---- the Prometheus project's parser ---------------------------------- */

static void
test_metrics_prometheus_parser_accepts_the_export(void **state)
{
    pf_registry_t *r;
    pf_bulkhead_t *bh;
    pf_ratelimit_t *rl;
    pf_health_checker_t *hc;
    pf_health_report_t *rep;
    char *text;
    int rc;

    (void)state;
    assert_pf_ok(pf_registry_new(NULL, &r));
    assert_pf_ok(pf_registry_get_bulkhead(r, "db \"primary\"\n", NULL, &bh));
    assert_pf_ok(pf_registry_get_ratelimit(r, "api\\v1", NULL, &rl));
    assert_pf_ok(pf_registry_get_health_checker(r, "svc", NULL, &hc));
    assert_pf_ok(pf_health_add_check(hc, "c", ok_check, NULL));
    assert_pf_ok(pf_health_check_all(hc, &rep));
    pf_health_report_free(rep);
    text = export(r, PF_METRICS_PROMETHEUS);
    rc = prom_parse_external(text);
    pf_free(text);
    pf_registry_free(r);
    if (rc == PROM_PARSE_SKIPPED) {
        skip();
    }
    assert_int_equal(rc, 0);
}

/* ---- the descriptions, the exports and the documentation ------------- *
 *
 * Each kind's metrics are described once (src/patterns/registry_kinds.c);
 * these tests hold both exports and docs/metrics.md to those tables. */

/* One Prometheus family of the descriptions. */
typedef struct described {
    char name[128];
    pf__metric_type_t type;
    const char *unit;
} described_t;

typedef struct described_list {
    described_t f[256];
    size_t n;
} described_list_t;

static void
describe_table(described_list_t *dl, const char *prefix,
               const pf__metric_table_t *t)
{
    size_t i;

    for (i = 0; i < t->len; i++) {
        const pf__metric_desc_t *r = &t->rows[i];
        described_t *d;
        char name[128];

        if (r->store == PF__OBJECT) {
            describe_table(dl, prefix, r->sub);
            continue;
        }
        if (r->prom == NULL) {
            continue;
        }
        snprintf(name, sizeof(name), "%s%s", prefix, r->prom);
        if (dl->n > 0 && strcmp(dl->f[dl->n - 1].name, name) == 0) {
            continue; /* a later row of the same family */
        }
        assert_true(dl->n < 256);
        d = &dl->f[dl->n++];
        snprintf(d->name, sizeof(d->name), "%s", name);
        d->type = r->type;
        d->unit = r->unit;
    }
}

/* Every family the tables describe, in export order. */
static void
described_families(described_list_t *dl)
{
    size_t i;

    dl->n = 1;
    snprintf(dl->f[0].name, sizeof(dl->f[0].name), "puffinflow_info");
    dl->f[0].type = PF__GAUGE;
    dl->f[0].unit = NULL;
    describe_table(dl, "puffinflow_process_", &pf__process_metrics);
    for (i = 0; i < pf__kinds_len; i++) {
        describe_table(dl, pf__kinds[i]->prom_prefix, &pf__kinds[i]->metrics);
    }
}

static const described_t *
described_find(const described_list_t *dl, const char *name)
{
    size_t i;

    for (i = 0; i < dl->n; i++) {
        if (strcmp(dl->f[i].name, name) == 0) {
            return &dl->f[i];
        }
    }
    return NULL;
}

static const char *
type_name(pf__metric_type_t t)
{
    return t == PF__COUNTER ? "counter" : "gauge";
}

/* Rows of a table: each is exported somewhere; a family's HELP is on its
 * first row and only there. */
static void
check_rows(const char *prefix, const pf__metric_table_t *t)
{
    const char *family = NULL;
    size_t i;

    for (i = 0; i < t->len; i++) {
        const pf__metric_desc_t *r = &t->rows[i];

        if (r->store == PF__OBJECT) {
            assert_non_null(r->sub);
            check_rows(prefix, r->sub);
            family = NULL;
            continue;
        }
        if (r->json == NULL && r->prom == NULL) {
            fail_msg("a row of %s is in neither export", prefix);
        }
        if (r->store == PF__DERIVED && r->get == NULL && r->split == NULL &&
            r->json_fn == NULL) {
            fail_msg("%s%s: derived without a way to compute it", prefix,
                     r->prom != NULL ? r->prom : r->json);
        }
        if (r->prom == NULL) {
            continue;
        }
        if (family != NULL && strcmp(family, r->prom) == 0) {
            if (r->help != NULL) {
                fail_msg("%s%s: help on a later row", prefix, r->prom);
            }
        } else if (r->help == NULL) {
            fail_msg("%s%s: no help", prefix, r->prom);
        }
        family = r->prom;
    }
}

/* Counters end in _total and nothing else does; a family's unit is in
 * its name; no family is described twice. */
static void
test_metrics_descriptions_follow_the_naming_rules(void **state)
{
    described_list_t dl;
    size_t i, j;

    (void)state;
    described_families(&dl);
    assert_true(dl.n > 80);
    check_rows("puffinflow_process_", &pf__process_metrics);
    for (i = 0; i < pf__kinds_len; i++) {
        check_rows(pf__kinds[i]->prom_prefix, &pf__kinds[i]->metrics);
    }
    for (i = 0; i < dl.n; i++) {
        const char *name = dl.f[i].name;
        size_t len = strlen(name);
        bool total = len > 6 && strcmp(name + len - 6, "_total") == 0;

        if (total != (dl.f[i].type == PF__COUNTER)) {
            fail_msg("%s: a %s", name, type_name(dl.f[i].type));
        }
        if (dl.f[i].unit != NULL && strstr(name, dl.f[i].unit) == NULL) {
            fail_msg("%s: its unit %s is not in its name", name, dl.f[i].unit);
        }
        for (j = 0; j < i; j++) {
            if (strcmp(dl.f[j].name, name) == 0) {
                fail_msg("%s is described twice", name);
            }
        }
    }
}

/* docs/metrics.md (found from PF_FIXTURES, tests/fixtures), or NULL. */
static char *
read_metrics_doc(void)
{
    const char *fixtures = getenv("PF_FIXTURES");
    char path[4096];
    char *doc;
    size_t len;
    FILE *f;

    if (fixtures == NULL) {
        return NULL;
    }
    snprintf(path, sizeof(path), "%s/../../docs/metrics.md", fixtures);
    f = fopen(path, "r");
    assert_non_null(f);
    doc = malloc(1 << 20);
    assert_non_null(doc);
    len = fread(doc, 1, (1 << 20) - 1, f);
    doc[len] = '\0';
    fclose(f);
    return doc;
}

/* docs/metrics.md's tables list exactly the described families, each
 * once and with its type. */
static void
test_metrics_docs_list_exactly_the_described_families(void **state)
{
    described_list_t dl;
    bool listed[256] = {false};
    char *doc = read_metrics_doc();
    char *line;
    size_t i;

    (void)state;
    if (doc == NULL) {
        skip();
    }
    described_families(&dl);
    for (line = doc; line != NULL && *line != '\0';) {
        char *next = strchr(line, '\n');
        char name[128];
        char type[16];

        if (next != NULL) {
            *next++ = '\0';
        }
        if (sscanf(line, "| `%127[a-z_]` | %15[a-z] |", name, type) == 2) {
            const described_t *d = described_find(&dl, name);

            if (d == NULL) {
                fail_msg("docs/metrics.md lists %s, which no table describes",
                         name);
            }
            if (strcmp(type, type_name(d->type)) != 0) {
                fail_msg("docs/metrics.md: %s is a %s, not a %s", name,
                         type_name(d->type), type);
            }
            if (listed[d - dl.f]) {
                fail_msg("docs/metrics.md lists %s twice", name);
            }
            listed[d - dl.f] = true;
        }
        line = next;
    }
    for (i = 0; i < dl.n; i++) {
        if (!listed[i]) {
            fail_msg("%s is not listed in docs/metrics.md", dl.f[i].name);
        }
    }
    free(doc);
}

/* A registry with one object of each kind, each in a state where every
 * family has a sample: an open breaker, a keyed group, an adaptive
 * bulkhead, a check that ran, a leak detector whose trend window is full,
 * a degradation manager that evaluated its rules. */
static pf_registry_t *
full_registry(pf_clock_t *clock)
{
    pf_registry_t *r;
    pf_breaker_config_t bcfg;
    pf_breaker_t *b;
    pf_breaker_group_t *g;
    pf_bulkhead_config_t bhcfg;
    pf_bulkhead_t *bh;
    pf_ratelimit_t *rl;
    pf_health_checker_t *hc;
    pf_health_report_t *rep;
    pf_leak_config_t lcfg;
    pf_leak_detector_t *ld;
    pf_leak_report_t lrep;
    pf_degrade_t *dg;
    pf_system_health_t h;
    pf_permit_t p = PF_PERMIT_INIT;
    size_t i;

    assert_pf_ok(pf_registry_new(NULL, &r));
    assert_pf_ok(pf_registry_get_breaker_group(r, "g", NULL, &g));
    assert_pf_ok(pf_breaker_group_call(g, "k", ok_call, NULL));
    pf_bulkhead_config_init(&bhcfg);
    bhcfg.adaptive = true;
    assert_pf_ok(pf_registry_get_bulkhead(r, "bh", &bhcfg, &bh));
    assert_pf_ok(pf_registry_get_ratelimit(r, "rl", NULL, &rl));
    assert_pf_ok(pf_registry_get_health_checker(r, "hc", NULL, &hc));
    assert_pf_ok(pf_health_add_check(hc, "c", ok_check, NULL));
    assert_pf_ok(pf_health_check_all(hc, &rep));
    pf_health_report_free(rep);
    pf_leak_config_init(&lcfg);
    lcfg.sample = fixed_sample;
    lcfg.clock = clock;
    lcfg.trend_window = 4;
    assert_pf_ok(pf_registry_get_leak_detector(r, "ld", &lcfg, &ld));
    assert_pf_ok(pf_leak_detector_track_allocation(ld, "a", "s", NULL));
    for (i = 0; i < 4; i++) {
        pf_clock_manual_advance(clock, 60 * NS_PER_SEC);
        assert_pf_ok(pf_leak_detector_check(ld, &lrep));
        pf_leak_report_free(&lrep);
    }
    assert_pf_ok(pf_registry_get_degrade(r, "dg", NULL, &dg));
    memset(&h, 0, sizeof(h));
    h.cpu_usage = 10;
    h.memory_usage = 10;
    h.external_services_available = true;
    assert_pf_ok(pf_degrade_evaluate(dg, &h));
    /* Last, so no time passes while it is open: every time-based family. */
    pf_breaker_config_init(&bcfg);
    bcfg.failure_threshold = 1;
    bcfg.clock = clock;
    assert_pf_ok(pf_registry_get_breaker(r, "b", &bcfg, &b));
    assert_pf_ok(pf_breaker_acquire(b, &p));
    pf_breaker_record(b, &p, -1);
    return r;
}

/* The JSON holds a member for every row with a JSON name. */
static void
check_json_members(const char *text, const pf__metric_table_t *t)
{
    size_t i;

    for (i = 0; i < t->len; i++) {
        const pf__metric_desc_t *r = &t->rows[i];
        char key[160];

        if (r->store == PF__OBJECT) {
            check_json_members(text, r->sub);
        }
        if (r->json == NULL) {
            continue;
        }
        snprintf(key, sizeof(key), "\"%s\":", r->json);
        if (strstr(text, key) == NULL) {
            fail_msg("the JSON has no %s", key);
        }
    }
}

/* With every kind present and every value known, the Prometheus text has
 * exactly the described families (with their types) and the JSON every
 * described member. */
static void
test_metrics_exports_hold_exactly_the_described_metrics(void **state)
{
    pf_clock_t *clock = *state;
    pf_registry_t *r = full_registry(clock);
    described_list_t dl;
    prom_doc_t pd;
    char *text;
    size_t i;

    described_families(&dl);
    text = export(r, PF_METRICS_PROMETHEUS);
    check_prom(text, &pd);
    for (i = 0; i < pd.nfamilies; i++) {
        const described_t *d = described_find(&dl, pd.families[i].name);

        if (d == NULL) {
            fail_msg("%s is exported but not described", pd.families[i].name);
        }
        assert_string_equal(pd.families[i].type, type_name(d->type));
    }
    for (i = 0; i < dl.n; i++) {
        if (prom_count(&pd, dl.f[i].name) == 0) {
            fail_msg("%s is described but not exported", dl.f[i].name);
        }
    }
    prom_doc_free(&pd);
    pf_free(text);
    text = export(r, PF_METRICS_JSON);
    assert_true(json_valid(text));
    check_json_members(text, &pf__process_metrics);
    for (i = 0; i < pf__kinds_len; i++) {
        const pf__kind_desc_t *k = pf__kinds[i];
        char key[64];

        if (k->json != NULL) {
            snprintf(key, sizeof(key), "\"%s\":[{", k->json);
            assert_non_null(strstr(text, key));
        }
        if (k->children != NULL) {
            snprintf(key, sizeof(key), "\"%s\":[{", k->children->json);
            assert_non_null(strstr(text, key));
        }
        check_json_members(text, &k->metrics);
    }
    pf_free(text);
    pf_registry_free(r);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            test_metrics_empty_registry_exports_only_the_info_gauge),
        CLOCK_TEST(test_metrics_breaker_state_and_outcomes_follow_its_calls),
        CLOCK_TEST(test_metrics_breaker_group_breakers_carry_their_group),
        cmocka_unit_test(
            test_metrics_breaker_group_is_exported_before_its_first_breaker),
        cmocka_unit_test(test_metrics_bulkhead_values_follow_its_activity),
        CLOCK_TEST(
            test_metrics_leak_detector_values_follow_its_samples_and_allocations),
        CLOCK_TEST(test_metrics_degradation_mode_is_exported_by_index_and_name),
        CLOCK_TEST(test_metrics_ratelimit_values_follow_its_activity),
        cmocka_unit_test(test_metrics_health_status_per_check_and_overall),
        cmocka_unit_test(test_metrics_label_values_are_escaped_and_made_utf8),
        cmocka_unit_test(
            test_metrics_names_differing_in_invalid_bytes_stay_distinct),
        cmocka_unit_test(
            test_metrics_numbers_are_written_as_prometheus_reads_them),
        cmocka_unit_test(
            test_metrics_counters_of_every_kind_are_written_exactly),
        cmocka_unit_test(test_metrics_unknown_leak_sample_figures_are_left_out),
        cmocka_unit_test(test_metrics_json_is_valid_and_lists_every_kind),
        cmocka_unit_test(test_metrics_process_open_fds_counts_new_descriptors),
        cmocka_unit_test(test_metrics_export_to_reports_the_size_needed),
        cmocka_unit_test(test_metrics_export_to_measures_with_a_null_buffer),
        cmocka_unit_test(test_metrics_bad_arguments_are_einval),
        cmocka_unit_test(test_metrics_allocation_failures_leak_nothing),
        cmocka_unit_test(test_metrics_prometheus_parser_accepts_the_export),
        cmocka_unit_test(test_metrics_descriptions_follow_the_naming_rules),
        cmocka_unit_test(test_metrics_docs_list_exactly_the_described_families),
        CLOCK_TEST(test_metrics_exports_hold_exactly_the_described_metrics),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
