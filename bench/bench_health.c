/* Costs of the health checker and the degradation manager:
 *   - the wall time of pf_health_check_all over 10 checks that each take
 *     100 ms (they run at once, so the target is about 100 ms, not 1 s);
 *   - the overhead of a check_all over 10 instant checks (each run on a
 *     pool thread), and of one served from the cache;
 *   - reading the current degradation mode (target <= 5 ns), its name,
 *     the checker's overall status, and one evaluation of three rules. */
#include <math.h>
#include <stdio.h>
#include <time.h>

#include "puffinflow/puffinflow.h"
#include "puffinflow/degrade.h"
#include "puffinflow/health.h"

#include "harness.h"

#define CHECKS 10

static int
sleepy_check(pf_health_result_t *res, void *arg)
{
    struct timespec ts = {0, 100 * 1000 * 1000};

    (void)arg;
    nanosleep(&ts, NULL);
    res->status = PF_HEALTHY;
    return 0;
}

static int
instant_check(pf_health_result_t *res, void *arg)
{
    (void)arg;
    res->status = PF_HEALTHY;
    return 0;
}

static void
bench_check_all(void *arg, uint64_t ops)
{
    for (uint64_t i = 0; i < ops; i++) {
        pf_health_report_t *r;

        if (pf_health_check_all(arg, &r) == 0) {
            PF_BENCH_KEEP(r);
            pf_health_report_free(r);
        }
    }
}

static void
bench_checker_status(void *arg, uint64_t ops)
{
    for (uint64_t i = 0; i < ops; i++) {
        PF_BENCH_KEEP(pf_health_checker_status(arg));
    }
}

static void
bench_mode(void *arg, uint64_t ops)
{
    const pf_degrade_t *d = arg;

    for (uint64_t i = 0; i < ops; i++) {
        PF_BENCH_KEEP(pf_degrade_mode(d));
    }
}

static void
bench_mode_name(void *arg, uint64_t ops)
{
    const pf_degrade_t *d = arg;

    for (uint64_t i = 0; i < ops; i++) {
        PF_BENCH_KEEP(pf_degrade_mode_name(d));
    }
}

static void
bench_evaluate(void *arg, uint64_t ops)
{
    pf_system_health_t h = {50.0, 50.0, true, 0};

    for (uint64_t i = 0; i < ops; i++) {
        h.cpu_usage = (i & 1) ? 95.0 : 10.0;
        pf_degrade_evaluate(arg, &h);
    }
}

static pf_health_checker_t *
checker_of(pf_health_fn fn, double ttl)
{
    pf_health_config_t cfg;
    pf_health_checker_t *hc;
    char name[16];

    pf_health_config_init(&cfg);
    cfg.cache_ttl = ttl;
    if (pf_health_checker_new(&cfg, &hc) != 0) {
        return NULL;
    }
    for (int i = 0; i < CHECKS; i++) {
        snprintf(name, sizeof(name), "check%d", i);
        if (pf_health_add_check(hc, name, fn, NULL) != 0) {
            pf_health_checker_free(hc);
            return NULL;
        }
    }
    return hc;
}

int
main(void)
{
    static const char *const modes[] = {"full", "offline", "batch",
                                        "simple"};
    pf_health_checker_t *sleepy = checker_of(sleepy_check, 0.0);
    pf_health_checker_t *instant = checker_of(instant_check, 0.0);
    pf_health_checker_t *cached = checker_of(instant_check, INFINITY);
    pf_degrade_config_t dcfg;
    pf_degrade_t *d;
    pf_bench_result_t res;

    pf_degrade_config_init(&dcfg);
    dcfg.modes = modes;
    dcfg.modes_len = 4;
    dcfg.min_dwell = 0;
    if (sleepy == NULL || instant == NULL || cached == NULL ||
        pf_degrade_new(&dcfg, &d) != 0 ||
        pf_degrade_add_rule_str(d, "cpu > 90 -> simple") != 0 ||
        pf_degrade_add_rule_str(d, "memory > 85 -> batch") != 0 ||
        pf_degrade_add_rule_str(d, "external_down -> offline") != 0) {
        fprintf(stderr, "setup failed\n");
        return 1;
    }
    pf_bench_header("health checker and graceful degradation");
    res = pf_bench_run("health: check_all, 10 checks of 100 ms each",
                       bench_check_all, sleepy, 1, 7);
    pf_bench_print("health: check_all, 10 x 100 ms (median)",
                   res.median_ns / 1e6, "ms");
    pf_bench_run("health: check_all, 10 instant checks", bench_check_all,
                 instant, 200, 7);
    pf_bench_run("health: check_all, 10 cached results", bench_check_all,
                 cached, 20000, 7);
    pf_bench_run("health: checker status (atomic read)", bench_checker_status,
                 instant, 10000000, 9);
    pf_bench_run("degrade: current mode (lock-free read)", bench_mode, d,
                 50000000, 9);
    pf_bench_run("degrade: current mode name", bench_mode_name, d, 50000000,
                 9);
    pf_bench_run("degrade: evaluate 3 rules (mode flips each time)",
                 bench_evaluate, d, 200000, 7);
    pf_degrade_free(d);
    pf_health_checker_free(cached);
    pf_health_checker_free(instant);
    pf_health_checker_free(sleepy);
    return 0;
}
