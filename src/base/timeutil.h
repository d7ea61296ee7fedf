/* Conversions between the public double seconds and the internal int64_t
 * nanoseconds, with the checks every config field needs. */
#ifndef PF_SRC_TIMEUTIL_H
#define PF_SRC_TIMEUTIL_H

#include <math.h>
#include <stdint.h>

#include "puffinflow/error.h"

/* Seconds to nanoseconds for a config field. NaN or negative: PF_EINVAL.
 * Infinity, or anything past INT64_MAX ns (292 years): INT64_MAX, which
 * every module reads as "never". */
static inline int
pf__secs_to_ns(double s, int64_t *out)
{
    if (isnan(s) || s < 0.0) {
        return PF_EINVAL;
    }
    if (s >= 9.2e9) {
        *out = INT64_MAX;
        return 0;
    }
    *out = (int64_t)(s * 1e9 + 0.5);
    return 0;
}

static inline double
pf__ns_to_secs(int64_t ns)
{
    return ns == INT64_MAX ? INFINITY : (double)ns / 1e9;
}

/* a + b for b >= 0, saturating at INT64_MAX. */
static inline int64_t
pf__add_sat(int64_t a, int64_t b)
{
    return a > INT64_MAX - b ? INT64_MAX : a + b;
}

#endif /* PF_SRC_TIMEUTIL_H */
