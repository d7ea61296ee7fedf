/* Costs of the base layer: clock reads, deadline checks, token polls and
 * random draws, which every pattern's hot path is built from. */
#include <stdio.h>

#include "puffinflow/puffinflow.h"

#include "bench_refs.h"
#include "harness.h"
#include "rng.h"

static void
bench_clock_manual(void *arg, uint64_t ops)
{
    for (uint64_t i = 0; i < ops; i++) {
        PF_BENCH_KEEP(pf_clock_now_ns(arg));
    }
}

static void
bench_deadline_expired(void *arg, uint64_t ops)
{
    const pf_deadline_t *d = arg;

    for (uint64_t i = 0; i < ops; i++) {
        PF_BENCH_KEEP(pf_deadline_expired(d));
    }
}

static void
bench_token_poll(void *arg, uint64_t ops)
{
    for (uint64_t i = 0; i < ops; i++) {
        PF_BENCH_KEEP(pf_token_is_cancelled(arg));
    }
}

static void
bench_rng(void *arg, uint64_t ops)
{
    uint64_t *s = arg;

    for (uint64_t i = 0; i < ops; i++) {
        PF_BENCH_KEEP(pf__rng_double(s));
    }
}

int
main(void)
{
    pf_clock_t *manual;
    pf_token_t *tok;
    pf_deadline_t d = pf_deadline_in(NULL, 3600.0);
    uint64_t seed = 42;

    if (pf_clock_manual_new(&manual) != 0 || pf_token_new(NULL, NULL, &tok)) {
        return 1;
    }
    pf_bench_header("base layer: clocks, deadlines, tokens, rng");
    pf_bench_run("clock: system now (CLOCK_MONOTONIC)", bench_clock_precise,
                 NULL, 2000000, 9);
    pf_bench_run("clock: coarse now (CLOCK_MONOTONIC_COARSE)",
                 bench_clock_coarse, NULL, 2000000, 9);
    pf_bench_run("clock: manual now", bench_clock_manual, manual, 10000000, 9);
    pf_bench_run("deadline: expired? (system clock)", bench_deadline_expired,
                 &d, 2000000, 9);
    pf_bench_run("token: is_cancelled", bench_token_poll, tok, 10000000, 9);
    pf_bench_run("rng: uniform double", bench_rng, &seed, 10000000, 9);
    pf_token_free(tok);
    pf_clock_free(manual);
    return 0;
}
