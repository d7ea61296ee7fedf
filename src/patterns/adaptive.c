/* AIMD limit for adaptive bulkheads; see adaptive.h. The caller serialises
 * every call (the bulkhead's lock), so nothing here is atomic. */
#include "adaptive.h"

void
pf__aimd_init(pf__aimd_t *a, unsigned floor, unsigned ceiling, double backoff,
              int64_t latency_ns)
{
    a->floor = floor;
    a->ceiling = ceiling;
    a->backoff = backoff;
    a->latency_ns = latency_ns;
    a->credit = 0;
    a->last_decrease_ns = 0;
    a->decreased = false;
}

static bool
is_overload(const pf__aimd_t *a, int result, int64_t latency_ns)
{
    if (result != 0) {
        return true;
    }
    return a->latency_ns > 0 && latency_ns > a->latency_ns;
}

static unsigned
decrease(pf__aimd_t *a, unsigned limit, int64_t now_ns)
{
    unsigned next = (unsigned)((double)limit * a->backoff);

    /* At least one step down, so a limit of 5 with backoff 0.9 (4.5 -> 4)
     * and one of 2 (1.8 -> 1) both move, but never below the floor. */
    if (next >= limit) {
        next = limit - 1;
    }
    if (next < a->floor) {
        next = a->floor;
    }
    a->credit = 0;
    a->last_decrease_ns = now_ns;
    a->decreased = true;
    return next;
}

unsigned
pf__aimd_update(pf__aimd_t *a, unsigned limit, unsigned in_use, int result,
                int64_t latency_ns, int64_t now_ns)
{
    if (latency_ns < 0) {
        latency_ns = 0;
    }
    if (is_overload(a, result, latency_ns)) {
        int64_t started = now_ns - latency_ns;

        /* <, not <=: a call started at the very instant of the decrease was
         * admitted under the new limit. */
        if (a->decreased && started < a->last_decrease_ns) {
            return limit;
        }
        return decrease(a, limit, now_ns);
    }
    if ((uint64_t)in_use * 2 < limit) {
        return limit;
    }
    a->credit++;
    if (a->credit < limit) {
        return limit;
    }
    a->credit = 0;
    return limit < a->ceiling ? limit + 1 : limit;
}
