/* The agent runtime: what a workflow step costs.
 *
 * Per-step overhead is measured as the original measures it: the latency
 * of a 5-step sequential run minus that of a 3-step run, divided by 2
 * (states that do nothing but name the next state). Also: 3- and 5-step
 * latency, a fan-out to 3 branches joined by a fourth state, three-step
 * workflows per second from 2 threads, heap bytes per run (through the
 * allocator hook), resident memory across 1,000,000 runs, and the per-step
 * overhead with a breaker, a bulkhead and retries on every state. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "puffinflow/puffinflow.h"
#include "puffinflow/agent.h"

#include "harness.h"

static const char *g_names[] = {"s0", "s1", "s2", "s3", "s4", "s5"};

/* Go to the state named by arg (NULL: the last state). */
static int
step(pf_ctx_t *ctx, void *arg)
{
    return arg == NULL ? 0 : pf_ctx_goto(ctx, arg);
}

/* Fails every other attempt (the first of each pair), then goes on. */
static int
flaky_step(pf_ctx_t *ctx, void *arg)
{
    if (pf_ctx_attempt(ctx) == 1) {
        return -1;
    }
    return arg == NULL ? 0 : pf_ctx_goto(ctx, arg);
}

static int
noop(pf_ctx_t *ctx, void *arg)
{
    (void)ctx;
    (void)arg;
    return 0;
}

static int
fan(pf_ctx_t *ctx, void *arg)
{
    (void)arg;
    pf_ctx_goto(ctx, "b");
    pf_ctx_goto(ctx, "c");
    return pf_ctx_goto(ctx, "d");
}

enum { PLAIN, PATTERNS, FLAKY };

static pf_agent_t *
chain(pf_executor_t *ex, unsigned n, int kind, bool timings)
{
    pf_agent_config_t cfg;
    pf_backoff_t at_once; /* retry at once */
    pf_agent_t *a;
    unsigned i;

    pf_backoff_init(&at_once);
    at_once.initial_delay = 0.0;
    at_once.max_delay = 0.0;
    pf_agent_config_init(&cfg);
    cfg.name = "bench";
    cfg.executor = ex;
    cfg.mode = PF_EXEC_SEQUENTIAL;
    cfg.timings = timings;
    if (pf_agent_new_ex(&cfg, &a) != 0) {
        exit(1);
    }
    for (i = 0; i < n; i++) {
        pf_state_opts_t o;

        pf_state_opts_init(&o);
        if (kind != PLAIN) {
            o.own_breaker = true;
            o.own_bulkhead = true;
            o.max_retries = 3;
            o.backoff = &at_once;
        }
        if (pf_agent_add_state(a, g_names[i], kind == FLAKY ? flaky_step : step,
                               i + 1 < n ? (void *)g_names[i + 1] : NULL,
                               &o) != 0) {
            exit(1);
        }
    }
    if (pf_agent_validate(a) != 0) {
        exit(1);
    }
    return a;
}

static pf_agent_t *
fan_out(pf_executor_t *ex)
{
    static const char *deps[] = {"b", "c", "d"};
    pf_agent_config_t cfg;
    pf_state_opts_t o;
    pf_agent_t *a;

    pf_agent_config_init(&cfg);
    cfg.name = "fan";
    cfg.executor = ex;
    cfg.mode = PF_EXEC_SEQUENTIAL;
    if (pf_agent_new_ex(&cfg, &a) != 0) {
        exit(1);
    }
    pf_state_opts_init(&o);
    o.depends_on = deps;
    o.depends_on_len = 3;
    if (pf_agent_add_state(a, "a", fan, NULL, NULL) != 0 ||
        pf_agent_add_state(a, "b", noop, NULL, NULL) != 0 ||
        pf_agent_add_state(a, "c", noop, NULL, NULL) != 0 ||
        pf_agent_add_state(a, "d", noop, NULL, NULL) != 0 ||
        pf_agent_add_state(a, "join", noop, NULL, &o) != 0 ||
        pf_agent_validate(a) != 0) {
        exit(1);
    }
    return a;
}

static void
bench_runs(void *arg, uint64_t ops)
{
    pf_agent_t *a = arg;

    for (uint64_t i = 0; i < ops; i++) {
        if (pf_agent_run(a, NULL, NULL) != 0) {
            abort();
        }
    }
}

/* Asynchronous runs, 8 in flight at a time (the agent's run-object cache),
 * run by the executor's workers while this thread waits for them. */
static void
bench_async(void *arg, uint64_t ops)
{
    pf_agent_t *a = arg;
    pf_run_t *runs[8];

    for (uint64_t i = 0; i < ops; i += 8) {
        unsigned n = ops - i < 8 ? (unsigned)(ops - i) : 8;
        unsigned k;

        for (k = 0; k < n; k++) {
            if (pf_agent_start(a, NULL, NULL, &runs[k]) != 0) {
                abort();
            }
        }
        for (k = 0; k < n; k++) {
            if (pf_run_wait(runs[k], NULL, NULL) != 0) {
                abort();
            }
            pf_run_free(runs[k]);
        }
    }
}

static void
bench_runs_thread(void *arg, unsigned thread, uint64_t ops)
{
    (void)thread;
    bench_runs(arg, ops);
}

/* ---- heap accounting ----------------------------------------------------- */

static atomic_long g_allocs;
static atomic_long g_bytes;

static void *
count_malloc(size_t n)
{
    atomic_fetch_add(&g_allocs, 1);
    atomic_fetch_add(&g_bytes, (long)n);
    return malloc(n);
}

static void *
count_realloc(void *p, size_t n)
{
    atomic_fetch_add(&g_allocs, 1);
    atomic_fetch_add(&g_bytes, (long)n);
    return realloc(p, n);
}

static void *
count_calloc(size_t c, size_t n)
{
    atomic_fetch_add(&g_allocs, 1);
    atomic_fetch_add(&g_bytes, (long)(c * n));
    return calloc(c, n);
}

static long
rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;

    if (f == NULL) {
        return -1;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kb = strtol(line + 6, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kb;
}

int
main(void)
{
    pf_executor_config_t ecfg;
    pf_executor_t *ex;
    pf_agent_t *a3;
    pf_agent_t *a5;
    pf_agent_t *p3;
    pf_agent_t *p5;
    pf_agent_t *f3;
    pf_agent_t *f5;
    pf_agent_t *n3;
    pf_agent_t *n5;
    pf_agent_t *fo;
    pf_bench_result_t r3;
    pf_bench_result_t r5;
    long rss0;
    long rss1;
    long allocs;
    long bytes;
    int64_t t0;
    const uint64_t heap_runs = 100000;
    const uint64_t rss_runs = 1000000;

    /* The counting allocator goes in first: memory from one allocator
     * must go back to the same one. */
    pf_set_allocator(count_malloc, count_realloc, count_calloc, free);
    pf_executor_config_init(&ecfg);
    ecfg.workers = 2;
    if (pf_executor_new(&ecfg, &ex) != 0) {
        return 1;
    }
    a3 = chain(ex, 3, PLAIN, true);
    a5 = chain(ex, 5, PLAIN, true);
    n3 = chain(ex, 3, PLAIN, false);
    n5 = chain(ex, 5, PLAIN, false);
    p3 = chain(ex, 3, PATTERNS, true);
    p5 = chain(ex, 5, PATTERNS, true);
    f3 = chain(ex, 3, FLAKY, true);
    f5 = chain(ex, 5, FLAKY, true);
    fo = fan_out(ex);

    pf_bench_header("agent runtime: sequential steps, fan-out, throughput");
    r3 = pf_bench_run("run: 3-step sequential (timings on)", bench_runs, a3,
                      200000, 9);
    r5 = pf_bench_run("run: 5-step sequential (timings on)", bench_runs, a5,
                      200000, 9);
    pf_bench_print("per-step overhead (5-step - 3-step) / 2",
                   (r5.median_ns - r3.median_ns) / 2, "ns");
    r3 = pf_bench_run("run: 3-step sequential (timings off)", bench_runs, n3,
                      200000, 9);
    r5 = pf_bench_run("run: 5-step sequential (timings off)", bench_runs, n5,
                      200000, 9);
    pf_bench_print("per-step overhead, timings off",
                   (r5.median_ns - r3.median_ns) / 2, "ns");
    r3 = pf_bench_run("run: 3-step, breaker+bulkhead+retries", bench_runs, p3,
                      200000, 9);
    r5 = pf_bench_run("run: 5-step, breaker+bulkhead+retries", bench_runs, p5,
                      200000, 9);
    pf_bench_print("per-step overhead, breaker+bulkhead+retries",
                   (r5.median_ns - r3.median_ns) / 2, "ns");
    r3 = pf_bench_run("run: 3-step, patterns, 1 retry per step", bench_runs, f3,
                      100000, 9);
    r5 = pf_bench_run("run: 5-step, patterns, 1 retry per step", bench_runs, f5,
                      100000, 9);
    pf_bench_print("per-step overhead, patterns + a retry each",
                   (r5.median_ns - r3.median_ns) / 2, "ns");
    pf_bench_run("run: fan-out to 3 branches + join", bench_runs, fo, 50000, 9);
    r3 = pf_bench_run("run: 3-step async, 8 in flight, 2 workers", bench_async,
                      a3, 100000, 9);
    pf_bench_print("three-step async workflows per second", 1e9 / r3.median_ns,
                   "runs/s");
    r3 = pf_bench_run_threads("run: 3-step, 2 threads at once",
                              bench_runs_thread, a3, 2, 200000, 9);
    pf_bench_print("three-step workflows per second, 2 threads",
                   2e9 / r3.median_ns, "runs/s");
    r3 = pf_bench_run_threads("run: 3-step timings off, 2 threads",
                              bench_runs_thread, n3, 2, 200000, 9);
    pf_bench_print("three-step workflows per second, 2 threads, no timings",
                   2e9 / r3.median_ns, "runs/s");

    atomic_store(&g_allocs, 0);
    atomic_store(&g_bytes, 0);
    bench_runs(a3, heap_runs);
    allocs = atomic_load(&g_allocs);
    bytes = atomic_load(&g_bytes);
    pf_bench_print("heap bytes per 3-step run (warm)",
                   (double)bytes / (double)heap_runs, "B");
    pf_bench_print("heap allocations per 3-step run (warm)",
                   (double)allocs / (double)heap_runs, "allocs");

    rss0 = rss_kb();
    t0 = pf_bench_now_ns();
    bench_runs(a3, rss_runs);
    rss1 = rss_kb();
    pf_bench_print("resident memory before 1,000,000 runs", (double)rss0, "kB");
    pf_bench_print("resident memory after 1,000,000 runs", (double)rss1, "kB");
    pf_bench_print("  (1,000,000 runs took)",
                   (double)(pf_bench_now_ns() - t0) / 1e9, "s");

    pf_agent_free(a3);
    pf_agent_free(a5);
    pf_agent_free(n3);
    pf_agent_free(n5);
    pf_agent_free(p3);
    pf_agent_free(p5);
    pf_agent_free(f3);
    pf_agent_free(f5);
    pf_agent_free(fo);
    pf_executor_free(ex);
    return 0;
}
