/* A small seedable random generator for jitter and sampling: SplitMix64 on
 * one 64-bit state word, so it can live in caller memory and a given seed
 * always yields the same sequence. Not for cryptography; not rand(), which
 * has hidden shared state. */
#ifndef PF_SRC_RNG_H
#define PF_SRC_RNG_H

#include <stdint.h>

/* The next 64 random bits; advances *state. */
static inline uint64_t
pf__rng_next(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9E3779B97F4A7C15));

    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* A uniform double in [0, 1), with 53 random bits. */
static inline double
pf__rng_double(uint64_t *state)
{
    return (double)(pf__rng_next(state) >> 11) * 0x1.0p-53;
}

/* A uniform integer in [0, n) for n >= 1 (Lemire's multiply-shift; the
 * bias is below 2^-32 for any n < 2^32). */
__extension__ typedef unsigned __int128 pf__u128;

static inline uint64_t
pf__rng_below(uint64_t *state, uint64_t n)
{
    return (uint64_t)(((pf__u128)pf__rng_next(state) * n) >> 64);
}

/* A seed that differs between calls and processes (time, address, and a
 * counter), for objects whose config gives no seed. Thread-safe. */
uint64_t pf__rng_seed(void);

#endif /* PF_SRC_RNG_H */
