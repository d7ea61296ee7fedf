/* The adaptive concurrency limit of a bulkhead: AIMD (additive increase,
 * multiplicative decrease), as TCP congestion control and adaptive
 * concurrency limiters do. Pure logic on a small struct: the bulkhead holds
 * its lock around every call and applies the limit it returns. */
#ifndef PF_SRC_ADAPTIVE_H
#define PF_SRC_ADAPTIVE_H

#include <stdbool.h>
#include <stdint.h>

typedef struct pf__aimd {
    unsigned floor;           /* the limit never goes below ... */
    unsigned ceiling;         /* ... nor above these */
    double backoff;           /* decrease factor, in (0, 1) */
    int64_t latency_ns;       /* slower counts as overload; 0 = ignored */
    unsigned credit;          /* good calls since the last change */
    int64_t last_decrease_ns; /* when the limit last went down */
    bool decreased;           /* last_decrease_ns is set */
} pf__aimd_t;

/* Start a controller. No allocation; never fails. */
void pf__aimd_init(pf__aimd_t *a, unsigned floor, unsigned ceiling,
                   double backoff, int64_t latency_ns);

/* One call ended at now_ns after latency_ns with result (0 = success);
 * in_use callers are inside (the recording one included) under limit.
 * Returns the new limit (== limit when unchanged).
 *
 * Decrease: a failed or slow call multiplies the limit by backoff, rounding
 * down and by at least one, not below the floor. Only calls that started
 * after the last decrease can decrease it again: the calls in flight when
 * it went down were admitted under the old limit and say nothing about the
 * new one (TCP's "once per window").
 * Increase: a good call earns one credit when at least half the limit is
 * in use (an idle limit proves nothing); a limit's worth of credits adds
 * one, not above the ceiling. */
unsigned pf__aimd_update(pf__aimd_t *a, unsigned limit, unsigned in_use,
                         int result, int64_t latency_ns, int64_t now_ns);

#endif /* PF_SRC_ADAPTIVE_H */
