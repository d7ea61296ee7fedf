/* The raw clock reads every pattern's hot path is built from, as benchmark
 * loops: bench_base.c measures them, and other programs print them beside
 * their own figures to read those against on a noisy machine. Static
 * inline, so a program that uses one of the two carries no unused copy of
 * the other. */
#ifndef PF_BENCH_CLOCKS_H
#define PF_BENCH_CLOCKS_H

#include <stdint.h>

#include "puffinflow/clock.h"

#include "clock_impl.h"
#include "harness.h"

/* pf_clock_now_ns on the system clock: clock_gettime(CLOCK_MONOTONIC). */
static inline void
bench_clock_precise(void *arg, uint64_t ops)
{
    (void)arg;
    for (uint64_t i = 0; i < ops; i++) {
        PF_BENCH_KEEP(pf_clock_now_ns(NULL));
    }
}

/* The cheap read hot paths use: clock_gettime(CLOCK_MONOTONIC_COARSE). */
static inline void
bench_clock_coarse(void *arg, uint64_t ops)
{
    (void)arg;
    for (uint64_t i = 0; i < ops; i++) {
        PF_BENCH_KEEP(pf__clock_now_coarse_ns(NULL));
    }
}

#endif /* PF_BENCH_CLOCKS_H */
