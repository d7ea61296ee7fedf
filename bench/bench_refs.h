/* Reference loops: the raw operations every pattern's hot path is built
 * from (a precise and a coarse clock read, one uncontended CAS).
 * bench_base.c measures the clocks, and other programs print these beside
 * their own figures, to read those against on a noisy machine. Static
 * inline, so a program that uses some carries no unused copy of the
 * others. */
#ifndef PF_BENCH_REFS_H
#define PF_BENCH_REFS_H

#include <stdatomic.h>
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

/* One uncontended compare-and-swap on arg, an _Atomic uint64_t. */
static inline void
bench_cas(void *arg, uint64_t ops)
{
    _Atomic uint64_t *w = arg;

    for (uint64_t i = 0; i < ops; i++) {
        uint64_t v = atomic_load_explicit(w, memory_order_relaxed);

        atomic_compare_exchange_weak_explicit(
            w, &v, v + 1, memory_order_relaxed, memory_order_relaxed);
    }
}

#endif /* PF_BENCH_REFS_H */
