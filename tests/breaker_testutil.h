/* Helpers shared by the circuit breaker tests (test_breaker.c,
 * test_breaker_window.c): make a breaker, run one call through the permit
 * face, read the metrics. Each fails the calling test on error. */
#ifndef PF_TESTS_BREAKER_TESTUTIL_H
#define PF_TESTS_BREAKER_TESTUTIL_H

#include "test.h"

#include <string.h>

#include "puffinflow/breaker.h"

static inline pf_breaker_t *
make(const pf_breaker_config_t *cfg)
{
    pf_breaker_t *b = NULL;

    assert_pf_ok(pf_breaker_new(cfg, &b));
    assert_non_null(b);
    return b;
}

/* One call with the given result through the permit face; the acquire
 * must succeed. Returns how the result was counted. */
static inline pf_breaker_outcome_t
run(pf_breaker_t *b, int result)
{
    pf_permit_t p;

    assert_pf_ok(pf_breaker_acquire(b, &p));
    return pf_breaker_record_outcome(b, &p, result);
}

/* The metrics snapshot; the struct is poisoned first so a field the
 * library forgets to fill shows up as garbage. */
static inline pf_breaker_metrics_t
metrics(pf_breaker_t *b)
{
    pf_breaker_metrics_t m;

    memset(&m, 0xab, sizeof(m));
    pf_breaker_metrics(b, &m);
    return m;
}

#endif
