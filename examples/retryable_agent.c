/* The reference's RetryableAgent: an operation retried with exponential
 * backoff behind a circuit breaker (failure_threshold 3). Transient errors
 * are retried; an open breaker is not retried but answered from a fallback;
 * when the last attempt fails, its error goes back to the caller.
 *
 * The dependency is simulated. The first scenarios run on the real clock
 * with the reference's 1 s base delay scaled down to 5 ms; the last one
 * drives the same policy through the non-blocking face (as the agent
 * runtime does, with timers) on a manual clock, where the delays are the
 * reference's exactly: 1 s, 2 s, 4 s. Exits 0 only if every promise
 * held. */
#include <stdio.h>
#include <string.h>

#include "puffinflow/breaker.h"
#include "puffinflow/clock.h"
#include "puffinflow/error.h"
#include "puffinflow/retry.h"

#define TRANSIENT_ERROR (-1) /* the reference's TransientError */
#define FATAL_ERROR (-2)     /* anything else: never retried */

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "retryable_agent: %s:%d: %s failed\n", __FILE__,   \
                    __LINE__, #cond);                                          \
            return 1;                                                          \
        }                                                                      \
    } while (0)

/* A dependency that fails `failures` times with `error`, then answers. */
typedef struct dependency {
    int failures;
    int error;
    int calls;
} dependency_t;

static int
unreliable_operation(void *arg)
{
    dependency_t *d = arg;

    d->calls++;
    return d->calls <= d->failures ? d->error : 0;
}

typedef struct agent {
    pf_breaker_t *circuit_breaker;
    dependency_t *dep;
    const char *result;
} agent_t;

static int
call_through_breaker(void *arg)
{
    agent_t *a = arg;

    return pf_breaker_call(a->circuit_breaker, unreliable_operation, a->dep);
}

static const char *
get_fallback_result(void)
{
    return "cached";
}

/* The reference's policy: max_retries 3, delay = base_delay * 2^attempt,
 * and only transient errors retried. */
static void
reference_policy(pf_retry_policy_t *p, double base_delay)
{
    static const int transient[] = {TRANSIENT_ERROR};

    pf_retry_policy_init(p);
    p->max_retries = 3;
    p->backoff.initial_delay = base_delay;
    p->backoff.multiplier = 2.0;
    p->backoff.jitter = PF_JITTER_NONE;
    p->retry_on = transient;
    p->retry_on_len = 1;
}

/* The state: returns 0 with a->result set, or the last attempt's error. */
static int
resilient_operation_with_retry(agent_t *a, pf_retry_result_t *out)
{
    pf_retry_policy_t p;
    int rc;

    reference_policy(&p, 0.005);
    rc = pf_retry_call_ex(&p, call_through_breaker, a, out);
    if (rc == PF_EOPEN) {
        a->result = get_fallback_result(); /* open: don't retry */
        return 0;
    }
    if (rc == 0) {
        a->result = "fresh";
    }
    return rc;
}

static int
new_agent(agent_t *a, dependency_t *dep)
{
    pf_breaker_config_t cfg;

    pf_breaker_config_init(&cfg);
    cfg.name = "unreliable";
    cfg.failure_threshold = 3;
    a->dep = dep;
    a->result = NULL;
    return pf_breaker_new(&cfg, &a->circuit_breaker);
}

/* The same policy on the non-blocking face: the caller makes each attempt
 * and "sleeps" by moving a manual clock, as a runtime timer would. */
static int
drive_by_hand(void)
{
    pf_clock_t *clock;
    pf_retry_policy_t p;
    pf_retry_state_t st;
    pf_retry_result_t res;
    dependency_t dep = {100, TRANSIENT_ERROR, 0};
    int64_t delays[8];
    int64_t delay;
    int n = 0;
    int rc;

    CHECK(pf_clock_manual_new(&clock) == 0);
    reference_policy(&p, 1.0);
    p.clock = clock;
    CHECK(pf_retry_start(&p, &st, pf_clock_now_ns(clock)) == 0);
    for (;;) {
        rc = unreliable_operation(&dep);
        if (!pf_retry_next(&p, &st, rc, pf_clock_now_ns(clock), &delay)) {
            break;
        }
        delays[n++] = delay;
        pf_clock_manual_advance(clock, delay);
    }
    pf_retry_state_result(&st, &res);
    printf("by hand: %u attempts, waited %.0f s, stopped: %s, error %d\n",
           res.attempts, res.delayed, pf_retry_stop_name(res.stop), rc);
    CHECK(n == 3);
    CHECK(delays[0] == 1 * PF_NS_PER_SEC); /* base_delay * 2**0 */
    CHECK(delays[1] == 2 * PF_NS_PER_SEC);
    CHECK(delays[2] == 4 * PF_NS_PER_SEC);
    CHECK(res.attempts == 4);
    CHECK(res.stop == PF_RETRY_STOP_EXHAUSTED);
    CHECK(rc == TRANSIENT_ERROR); /* the last attempt failed: re-raise */
    CHECK(pf_clock_now_ns(clock) == 7 * PF_NS_PER_SEC);
    pf_clock_free(clock);
    return 0;
}

int
main(void)
{
    pf_retry_result_t res;
    dependency_t dep;
    agent_t a;
    int64_t t0;
    int rc;

    /* 1. Two transient failures, then success: retried, after 5 + 10 ms. */
    dep = (dependency_t){2, TRANSIENT_ERROR, 0};
    CHECK(new_agent(&a, &dep) == 0);
    t0 = pf_clock_now_ns(NULL);
    rc = resilient_operation_with_retry(&a, &res);
    printf("transient: rc %d, result %s, %u attempts, waited %.3f s\n", rc,
           a.result, res.attempts, res.delayed);
    CHECK(rc == 0 && strcmp(a.result, "fresh") == 0);
    CHECK(res.attempts == 3 && dep.calls == 3);
    CHECK(pf_clock_now_ns(NULL) - t0 >= 15 * PF_NS_PER_MS);
    pf_breaker_free(a.circuit_breaker);

    /* 2. A dependency that keeps failing: the third failure opens the
     * breaker, the fourth attempt is rejected (PF_EOPEN, not retried) and
     * the fallback answers. */
    dep = (dependency_t){100, TRANSIENT_ERROR, 0};
    CHECK(new_agent(&a, &dep) == 0);
    rc = resilient_operation_with_retry(&a, &res);
    printf("down: rc %d, result %s, %u attempts, dependency called %d "
           "times, stopped: %s\n",
           rc, a.result, res.attempts, dep.calls,
           pf_retry_stop_name(res.stop));
    CHECK(rc == 0 && strcmp(a.result, "cached") == 0);
    CHECK(res.attempts == 4 && dep.calls == 3);
    CHECK(res.stop == PF_RETRY_STOP_NOT_RETRYABLE);
    CHECK(pf_breaker_state(a.circuit_breaker) == PF_BREAKER_OPEN);
    pf_breaker_free(a.circuit_breaker);

    /* 3. A non-transient error is not retried: it goes straight back. */
    dep = (dependency_t){100, FATAL_ERROR, 0};
    CHECK(new_agent(&a, &dep) == 0);
    rc = resilient_operation_with_retry(&a, &res);
    printf("fatal: rc %d after %u attempt(s)\n", rc, res.attempts);
    CHECK(rc == FATAL_ERROR && res.attempts == 1 && dep.calls == 1);
    pf_breaker_free(a.circuit_breaker);

    /* 4. The reference's delays, exactly, on the non-blocking face. */
    if (drive_by_hand() != 0) {
        return 1;
    }
    printf("retryable_agent: ok\n");
    return 0;
}
