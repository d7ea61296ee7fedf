/* Rate-limiter costs: try_acquire when permits are there (target <= 25 ns)
 * on the coarse clock (what a limiter whose bucket absorbs a clock tick
 * uses) and on the precise one (high rates, small bursts), a refusal, the
 * "time until" query, a reservation, and two threads on one bucket. The
 * raw clock reads and one CAS are printed alongside, to read the figures
 * against on a noisy machine. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "puffinflow/puffinflow.h"
#include "puffinflow/ratelimit.h"

#include "bench_refs.h"
#include "harness.h"

static pf_ratelimit_t *
make(double rate, unsigned burst, bool want_precise)
{
    pf_ratelimit_config_t cfg;
    pf_ratelimit_metrics_t m;
    pf_ratelimit_t *rl;

    pf_ratelimit_config_init(&cfg);
    cfg.name = "bench";
    cfg.rate = rate;
    cfg.burst = burst;
    if (pf_ratelimit_new(&cfg, &rl) != 0) {
        fprintf(stderr, "pf_ratelimit_new failed\n");
        exit(1);
    }
    pf_ratelimit_metrics(rl, &m);
    if (m.precise_clock != want_precise) {
        fprintf(stderr, "unexpected clock choice for rate %g burst %u\n", rate,
                burst);
        exit(1);
    }
    return rl;
}

static void
bench_try_acquire(void *arg, uint64_t ops)
{
    pf_ratelimit_t *rl = arg;

    for (uint64_t i = 0; i < ops; i++) {
        PF_BENCH_KEEP(pf_ratelimit_try_acquire(rl, 1));
    }
}

static void
bench_time_until(void *arg, uint64_t ops)
{
    pf_ratelimit_t *rl = arg;

    for (uint64_t i = 0; i < ops; i++) {
        PF_BENCH_KEEP(pf_ratelimit_time_until_ns(rl, 1));
    }
}

static void
bench_reserve(void *arg, uint64_t ops)
{
    pf_ratelimit_t *rl = arg;
    int64_t w;

    for (uint64_t i = 0; i < ops; i++) {
        PF_BENCH_KEEP(pf_ratelimit_reserve(rl, 1, 1.0, &w));
    }
}

static void
bench_try_acquire_threads(void *arg, unsigned thread, uint64_t ops)
{
    (void)thread;
    bench_try_acquire(arg, ops);
}

int
main(void)
{
    /* A billion a second: a bucket that never runs dry in the benchmark.
     * With a burst of a billion a 4 ms tick fits: coarse clock. */
    pf_ratelimit_t *coarse = make(1e9, 1000000000u, false);
    /* The same rate one permit at a time: the precise clock. */
    pf_ratelimit_t *precise = make(1e9, 1, true);
    /* Two permits a day, both taken: every request is refused. */
    pf_ratelimit_t *empty = make(2.0 / 86400.0, 2, false);
    /* A reservation with the permits there: try_acquire's path plus the
     * wait's conversion. */
    pf_ratelimit_t *reserve = make(1e9, 1000000000u, false);
    _Atomic uint64_t word = 0;

    pf_ratelimit_try_acquire(empty, 2);
    pf_bench_header("rate limiter");
    pf_bench_run("reference: clock_gettime(CLOCK_MONOTONIC)",
                 bench_clock_precise, NULL, 2000000, 9);
    pf_bench_run("reference: clock_gettime(CLOCK_MONOTONIC_COARSE)",
                 bench_clock_coarse, NULL, 5000000, 9);
    pf_bench_run("reference: one uncontended CAS", bench_cas, &word, 10000000,
                 9);
    pf_bench_run("ratelimit: try_acquire, granted (coarse clock)",
                 bench_try_acquire, coarse, 5000000, 9);
    pf_bench_run("ratelimit: try_acquire, granted (precise clock)",
                 bench_try_acquire, precise, 2000000, 9);
    pf_bench_run("ratelimit: try_acquire, refused", bench_try_acquire, empty,
                 5000000, 9);
    pf_bench_run("ratelimit: time_until_ns", bench_time_until, coarse, 5000000,
                 9);
    pf_bench_run("ratelimit: reserve (no wait)", bench_reserve, reserve,
                 5000000, 9);
    pf_bench_run_threads("ratelimit: try_acquire, 2 threads, one bucket",
                         bench_try_acquire_threads, coarse, 2, 2000000, 9);
    pf_ratelimit_free(reserve);
    pf_ratelimit_free(empty);
    pf_ratelimit_free(precise);
    pf_ratelimit_free(coarse);
    return 0;
}
