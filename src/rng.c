/* Seeds for the random generator when the user gives none. */
#include <stdatomic.h>
#include <stdint.h>
#include <unistd.h>

#include "puffinflow/clock.h"

#include "rng.h"

uint64_t
pf__rng_seed(void)
{
    static _Atomic uint64_t counter;
    /* Relaxed: the counter only has to differ between calls. */
    uint64_t n = atomic_fetch_add_explicit(&counter, 1, memory_order_relaxed);
    uint64_t s = (uint64_t)pf_clock_now_ns(NULL) ^ ((uint64_t)getpid() << 32) ^
                 (uint64_t)(uintptr_t)&n ^ (n * UINT64_C(0x9E3779B97F4A7C15));

    return pf__rng_next(&s);
}
