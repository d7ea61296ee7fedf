/* Fuzz names through the metrics exports (Prometheus text and JSON,
 * src/metrics_*.c) and the health report JSON (src/health_json.c).
 *
 * The input is a list of records, each a kind byte and one or two strings
 * (a length byte, then that many bytes): the name of a breaker, bulkhead,
 * rate limiter, leak detector, degradation manager (with a fuzzed mode
 * name), breaker group (with a key) or health checker (with a check name,
 * a status and a message). Each object is made in a fresh registry; a few
 * calls give the metrics non-zero values. Then the registry is exported
 * in both formats and every health checker's report rendered.
 *
 * Checked, strictly: the Prometheus text passes tests/prom_check.h (which
 * also refuses two samples of one family with the same labels, so two
 * names that become one after escaping are caught) and both JSON texts
 * pass tests/json_check.h. A failure prints the checker's reason and
 * aborts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "puffinflow/alloc.h"
#include "puffinflow/breaker.h"
#include "puffinflow/bulkhead.h"
#include "puffinflow/clock.h"
#include "puffinflow/degrade.h"
#include "puffinflow/error.h"
#include "puffinflow/health.h"
#include "puffinflow/leak.h"
#include "puffinflow/ratelimit.h"
#include "puffinflow/registry.h"

#include "fuzz_util.h"
#include "json_check.h"
#include "prom_check.h"

#define MAX_OBJECTS 12
#define NAME_CAP 96

/* What a check reports; lives until the input is done, longer than its
 * checker. */
typedef struct check_arg {
    pf_health_status_t status;
    char message[PF_HEALTH_MESSAGE_MAX];
} check_arg_t;

static int
fuzzed_check(pf_health_result_t *res, void *arg)
{
    const check_arg_t *c = arg;

    res->status = c->status;
    snprintf(res->message, sizeof(res->message), "%s", c->message);
    return 0;
}

static int
no_source(pf_system_health_t *out, void *arg)
{
    (void)arg;
    out->cpu_usage = 50.0;
    out->memory_usage = 50.0;
    return 0;
}

static int
fixed_sample(int pid, pf_leak_sample_t *out, void *arg)
{
    (void)pid;
    (void)arg;
    out->rss_bytes = 1 << 20;
    out->memory_limit_bytes = 1 << 30;
    out->open_fds = 10;
    out->fd_limit = 1024;
    return 0;
}

static void
check_ok(int rc, const char *what, const char *name)
{
    /* A name the library refuses ("" for most kinds) is fine; anything
     * but a refusal or running out of memory is not. */
    FUZZ_CHECK(rc == 0 || rc == PF_EINVAL || rc == PF_EEXIST ||
                   rc == PF_ENOMEM,
               "%s \"%s\": %d", what, name, rc);
}

static void
add_health(pf_registry_t *r, const char *name, fz_t *f, check_arg_t *arg)
{
    pf_health_checker_t *hc;
    pf_health_report_t *rep = NULL;
    char check[NAME_CAP];
    char *json = NULL;
    int rc;

    fz_str(f, check, sizeof(check));
    arg->status = (pf_health_status_t)(fz_u8(f) % 3);
    fz_str(f, arg->message, sizeof(arg->message));
    rc = pf_registry_get_health_checker(r, name, NULL, &hc);
    check_ok(rc, "health checker", name);
    if (rc != 0) {
        return;
    }
    rc = pf_health_add_check(hc, check, fuzzed_check, arg);
    check_ok(rc, "health check", check);
    rc = pf_health_check_all(hc, &rep);
    FUZZ_CHECK(rc == 0, "check_all %d", rc);
    rc = pf_health_report_json_alloc(rep, &json);
    FUZZ_CHECK(rc == 0, "report json %d", rc);
    FUZZ_CHECK(json_valid(json), "health report JSON rejected:\n%s", json);
    pf_free(json);
    pf_health_report_free(rep);
}

static void
add_object(pf_registry_t *r, pf_clock_t *clock, fz_t *f, check_arg_t *arg)
{
    char name[NAME_CAP];
    char extra[NAME_CAP];
    uint8_t kind = fz_u8(f);
    pf_breaker_t *b;
    pf_breaker_group_t *g;
    pf_bulkhead_t *bh;
    pf_ratelimit_t *rl;
    pf_leak_detector_t *ld;
    pf_degrade_t *d;
    pf_degrade_config_t dcfg;
    pf_permit_t p = PF_PERMIT_INIT;
    const char *modes[2];
    int rc;

    fz_str(f, name, sizeof(name));
    switch (kind % 7) {
    case 0:
        rc = pf_registry_get_breaker(r, name, NULL, &b);
        check_ok(rc, "breaker", name);
        if (rc == 0 && pf_breaker_acquire(b, &p) == 0) {
            pf_breaker_record(b, &p, -1);
        }
        break;
    case 1:
        rc = pf_registry_get_bulkhead(r, name, NULL, &bh);
        check_ok(rc, "bulkhead", name);
        if (rc == 0 && pf_bulkhead_try_enter(bh) == 0) {
            pf_bulkhead_leave(bh);
        }
        break;
    case 2:
        rc = pf_registry_get_ratelimit(r, name, NULL, &rl);
        check_ok(rc, "ratelimit", name);
        if (rc == 0) {
            (void)pf_ratelimit_try_acquire(rl, 1);
        }
        break;
    case 3:
        rc = pf_registry_get_leak_detector(r, name, NULL, &ld);
        check_ok(rc, "leak detector", name);
        break;
    case 4:
        fz_str(f, extra, sizeof(extra));
        modes[0] = "full";
        modes[1] = extra;
        pf_degrade_config_init(&dcfg);
        dcfg.modes = modes;
        dcfg.modes_len = 2;
        dcfg.source = no_source;
        dcfg.clock = clock;
        rc = pf_registry_get_degrade(r, name, &dcfg, &d);
        check_ok(rc, "degradation", name);
        break;
    case 5:
        fz_str(f, extra, sizeof(extra));
        rc = pf_registry_get_breaker_group(r, name, NULL, &g);
        check_ok(rc, "breaker group", name);
        if (rc == 0) {
            rc = pf_breaker_group_get(g, extra, &b);
            check_ok(rc, "group key", extra);
        }
        break;
    default:
        add_health(r, name, f, arg);
        break;
    }
}

static void
export_and_check(pf_registry_t *r)
{
    prom_doc_t doc;
    char *text = NULL;
    size_t len = 0;
    int rc;

    rc = pf_registry_export(r, PF_METRICS_PROMETHEUS, &text, &len);
    FUZZ_CHECK(rc == 0, "prometheus export %d", rc);
    FUZZ_CHECK(strlen(text) == len, "prometheus length");
    if (!prom_check(text, &doc)) {
        FUZZ_CHECK(false, "Prometheus text rejected: %s\n---\n%s---",
                   doc.error, text);
    }
    (void)prom_find; /* the header's query helper; unused here */
    prom_doc_free(&doc);
    pf_free(text);

    rc = pf_registry_export(r, PF_METRICS_JSON, &text, &len);
    FUZZ_CHECK(rc == 0, "json export %d", rc);
    FUZZ_CHECK(strlen(text) == len, "json length");
    FUZZ_CHECK(json_valid(text), "JSON export rejected:\n%s", text);
    pf_free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static check_arg_t args[MAX_OBJECTS];
    pf_registry_config_t rcfg;
    pf_leak_config_t lcfg;
    pf_registry_t *r;
    pf_clock_t *clock;
    fz_t f = {data, size};
    int i;

    if (size > 4096) {
        return -1;
    }
    FUZZ_CHECK(pf_clock_manual_new(&clock) == 0, "clock");
    pf_registry_config_init(&rcfg);
    rcfg.process_metrics = false; /* the same text for the same input */
    FUZZ_CHECK(pf_registry_new(&rcfg, &r) == 0, "registry");
    pf_leak_config_init(&lcfg);
    lcfg.sample = fixed_sample;
    lcfg.clock = clock;
    FUZZ_CHECK(pf_registry_set_leak_detector_defaults(r, &lcfg) == 0,
               "leak defaults");
    for (i = 0; i < MAX_OBJECTS && f.n > 0; i++) {
        add_object(r, clock, &f, &args[i]);
    }
    export_and_check(r);
    pf_registry_free(r);
    pf_clock_free(clock);
    return 0;
}
