/* The cost of running work off the caller's thread: a timed call
 * (pf_timeout_call) whose work returns at once, and a health check run
 * (pf_health_check_all) whose checks return at once. Both hand the work to
 * another thread and wait for it, so the figure is the hand-off: a thread
 * start per call before the shared worker pool, a wake-up of a pooled
 * thread after. Uses the public API only, so the same file builds against
 * an older tree for the "before" figures. */
#include <stdint.h>
#include <stdio.h>

#include "harness.h"
#include "puffinflow/health.h"
#include "puffinflow/timeout.h"

static int
quick(const pf_deadline_t *d, pf_token_t *tok, void *arg)
{
    (void)d;
    (void)tok;
    (void)arg;
    return 0;
}

static void
bench_timeout_call(void *arg, uint64_t ops)
{
    (void)arg;
    for (uint64_t i = 0; i < ops; i++) {
        PF_BENCH_KEEP(pf_timeout_call(1.0, quick, NULL));
    }
}

static void
bench_timeout_call_threads(void *arg, unsigned thread, uint64_t ops)
{
    (void)thread;
    bench_timeout_call(arg, ops);
}

static int
instant_check(pf_health_result_t *res, void *arg)
{
    (void)res;
    (void)arg;
    return 0;
}

static void
bench_check_all(void *arg, uint64_t ops)
{
    for (uint64_t i = 0; i < ops; i++) {
        pf_health_report_t *r;

        if (pf_health_check_all(arg, &r) == 0) {
            pf_health_report_free(r);
        }
    }
}

static pf_health_checker_t *
checker_with(unsigned nchecks)
{
    pf_health_checker_t *hc;
    unsigned i;

    if (pf_health_checker_new(NULL, &hc) != 0) {
        return NULL;
    }
    for (i = 0; i < nchecks; i++) {
        char name[16];

        snprintf(name, sizeof(name), "check-%u", i);
        if (pf_health_add_check(hc, name, instant_check, NULL) != 0) {
            pf_health_checker_free(hc);
            return NULL;
        }
    }
    return hc;
}

/* Wall and caller CPU time per op, one line each. */
static void
measure(const char *name, pf_bench_fn fn, void *arg, uint64_t ops)
{
    pf_bench_result_t cpu;
    pf_bench_result_t wall = pf_bench_measure(fn, arg, ops, 7, &cpu);
    char line[128];

    snprintf(line, sizeof(line), "%s: wall", name);
    pf_bench_print(line, wall.median_ns / 1000.0, "us/op (median)");
    snprintf(line, sizeof(line), "%s: caller cpu", name);
    pf_bench_print(line, cpu.median_ns / 1000.0, "us/op (median)");
}

int
main(void)
{
    pf_health_checker_t *one = checker_with(1);
    pf_health_checker_t *ten = checker_with(10);
    pf_bench_result_t two;

    if (one == NULL || ten == NULL) {
        return 1;
    }
    pf_bench_header("work off the caller's thread: timed calls, health runs");
    measure("timeout_call: in time", bench_timeout_call, NULL, 2000);
    two = pf_bench_run_threads("timeout_call: in time, 2 callers at once",
                               bench_timeout_call_threads, NULL, 2, 2000, 7);
    (void)two;
    measure("health: check_all, 1 instant check", bench_check_all, one, 2000);
    measure("health: check_all, 10 instant checks", bench_check_all, ten,
            500);
    pf_health_checker_free(ten);
    pf_health_checker_free(one);
    return 0;
}
