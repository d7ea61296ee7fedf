/* Deadlines: an absolute time on a clock, compared with one clock read. */
#include <math.h>
#include <stddef.h>

#include "puffinflow/deadline.h"

#include "clock_impl.h"
#include "timeutil.h"

pf_deadline_t
pf_deadline_at_ns(const pf_clock_t *c, int64_t at_ns)
{
    pf_deadline_t d = {pf__clock_norm(c), at_ns};

    return d;
}

pf_deadline_t
pf_deadline_in_ns(const pf_clock_t *c, int64_t ns)
{
    int64_t at;

    if (ns == INT64_MAX) {
        return pf_deadline_at_ns(c, PF_DEADLINE_NEVER_NS);
    }
    at = pf__add_sat(pf_clock_now_ns(c), ns < 0 ? 0 : ns);
    if (at == INT64_MAX) {
        at = INT64_MAX - 1; /* a finite wait never means "no deadline" */
    }
    return pf_deadline_at_ns(c, at);
}

pf_deadline_t
pf_deadline_in(const pf_clock_t *c, double seconds)
{
    int64_t ns = 0;

    if (isnan(seconds) || seconds <= 0.0) {
        return pf_deadline_in_ns(c, 0);
    }
    if (isinf(seconds)) {
        return pf_deadline_in_ns(c, INT64_MAX);
    }
    pf__secs_to_ns(seconds, &ns);
    if (ns == INT64_MAX) {
        ns = INT64_MAX - 1; /* finite seconds give a finite deadline */
    }
    return pf_deadline_in_ns(c, ns);
}

pf_deadline_t
pf_deadline_none(void)
{
    return pf_deadline_at_ns(NULL, PF_DEADLINE_NEVER_NS);
}

bool
pf_deadline_is_none(const pf_deadline_t *d)
{
    return d == NULL || d->priv_at_ns == PF_DEADLINE_NEVER_NS;
}

int64_t
pf_deadline_remaining_ns(const pf_deadline_t *d)
{
    int64_t now;

    if (pf_deadline_is_none(d)) {
        return INT64_MAX;
    }
    now = pf_clock_now_ns(d->priv_clock);
    return d->priv_at_ns > now ? d->priv_at_ns - now : 0;
}

double
pf_deadline_remaining(const pf_deadline_t *d)
{
    int64_t ns = pf_deadline_remaining_ns(d);

    return ns == INT64_MAX ? INFINITY : (double)ns / 1e9;
}

bool
pf_deadline_expired(const pf_deadline_t *d)
{
    if (pf_deadline_is_none(d)) {
        return false;
    }
    return pf_clock_now_ns(d->priv_clock) >= d->priv_at_ns;
}

bool
pf_deadline_expired_coarse(const pf_deadline_t *d)
{
    if (pf_deadline_is_none(d)) {
        return false;
    }
    return pf__clock_now_coarse_ns(d->priv_clock) >= d->priv_at_ns;
}

pf_deadline_t
pf_deadline_earlier(const pf_deadline_t *a, const pf_deadline_t *b)
{
    if (pf_deadline_is_none(a)) {
        return b == NULL ? pf_deadline_none() : *b;
    }
    if (pf_deadline_is_none(b)) {
        return *a;
    }
    if (pf__clock_norm(a->priv_clock) == pf__clock_norm(b->priv_clock)) {
        return a->priv_at_ns <= b->priv_at_ns ? *a : *b;
    }
    return pf_deadline_remaining_ns(a) <= pf_deadline_remaining_ns(b) ? *a
                                                                      : *b;
}
