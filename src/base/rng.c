/* Seeds for the random generator when the user gives none. The process
 * part (pid and start time) is computed once: getpid() is a system call,
 * and retry policies seed on their hot path. Each call then mixes in a
 * counter and the clock, so seeds differ between calls and processes. */
#include <stdatomic.h>
#include <stdint.h>
#include <unistd.h>

#include "puffinflow/clock.h"

#include "rng.h"

uint64_t
pf__rng_seed(void)
{
    static _Atomic uint64_t process_base;
    static _Atomic uint64_t counter;
    /* Relaxed: the base is written with the same value by whoever comes
     * first (a race between two first calls is benign), and the counter
     * only has to differ between calls. */
    uint64_t base = atomic_load_explicit(&process_base, memory_order_relaxed);
    uint64_t n = atomic_fetch_add_explicit(&counter, 1, memory_order_relaxed);
    uint64_t s;

    if (base == 0) {
        base = ((uint64_t)getpid() << 32) ^ (uint64_t)pf_clock_now_ns(NULL) ^
               (uint64_t)(uintptr_t)&process_base;
        base |= 1; /* never 0, so it is computed once */
        atomic_store_explicit(&process_base, base, memory_order_relaxed);
    }
    s = base ^ (uint64_t)pf_clock_now_ns(NULL) ^
        (n * UINT64_C(0x9E3779B97F4A7C15));
    return pf__rng_next(&s);
}
