/* The built-in check of a circuit breaker's state: closed is healthy,
 * half-open degraded (it is probing whether the dependency is back), open
 * unhealthy. The breaker is borrowed: the check only reads its state,
 * which never blocks. */
#include "puffinflow/breaker.h"
#include "puffinflow/error.h"
#include "puffinflow/health.h"

#include "health_impl.h"

static int
breaker_check(pf_health_result_t *res, void *arg)
{
    pf_breaker_t *b = arg;
    pf_breaker_state_t s = pf_breaker_state(b);
    pf_health_status_t st = PF_UNHEALTHY;

    switch (s) {
    case PF_BREAKER_CLOSED:
        st = PF_HEALTHY;
        break;
    case PF_BREAKER_HALF_OPEN:
        st = PF_DEGRADED;
        break;
    case PF_BREAKER_OPEN:
        st = PF_UNHEALTHY;
        break;
    }
    pf_health_result_set(res, st, "circuit breaker %s is %s",
                         pf_breaker_name(b), pf_breaker_state_name(s));
    return 0;
}

int
pf_health_add_breaker_check(pf_health_checker_t *hc, const char *name,
                            struct pf_breaker *b,
                            const pf_health_check_opts_t *opts)
{
    if (b == NULL) {
        return PF_EINVAL;
    }
    return pf__health_add_owned(hc, name, breaker_check, b, NULL, opts);
}
