/* The reference's RetryableAgent (REFERENCE.md, "Retry Mechanisms with
 * Reliability Patterns"):
 *
 *   class RetryableAgent(Agent):
 *       def __init__(self):
 *           self.circuit_breaker = CircuitBreaker(
 *               CircuitBreakerConfig(failure_threshold=3))
 *
 *       @state
 *       async def resilient_operation_with_retry(self, ctx: Context) -> None:
 *           max_retries = 3
 *           base_delay = 1
 *           for attempt in range(max_retries + 1):
 *               try:
 *                   async with self.circuit_breaker:
 *                       ctx.result = await unreliable_operation()
 *                       return  # Success, exit retry loop
 *               except CircuitBreakerOpenError:
 *                   # Circuit breaker is open, don't retry
 *                   ctx.result = await get_fallback_result()
 *                   return
 *               except TransientError as e:
 *                   if attempt == max_retries:
 *                       raise
 *                   delay = base_delay * (2 ** attempt)
 *                   await asyncio.sleep(delay)
 *
 * In C the loop is the runtime's: the state's options say "3 retries,
 * 1 s doubling, only TransientError", the state has its own breaker
 * (failure_threshold 3), and its fallback answers when the breaker rejects
 * an attempt (PF_EOPEN is never retried). The backoff is a timer on the
 * executor: no thread sleeps. A non-transient error is not retried: it
 * fails the state and is the run's result.
 *
 * Note what the reference's numbers imply: with failure_threshold 3 and up
 * to 4 attempts, a request alone against a dead dependency never runs out
 * of retries; its third failure opens the breaker and its fourth attempt
 * is answered by the fallback.
 *
 * The dependency is simulated, and the executor runs on a manual clock:
 * the program starts each run, and whenever the run waits for its backoff
 * it moves the clock by the delay the runtime announced. The delays are
 * the reference's exactly (1 s, 2 s, 4 s). Exits 0 only if every promise
 * held. */
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "puffinflow/agent.h"

#define TRANSIENT_ERROR 11 /* the reference's TransientError */
#define FATAL_ERROR 5      /* anything else: never retried */

static const char *
error_name(int rc)
{
    switch (rc) {
    case TRANSIENT_ERROR:
        return "TransientError";
    case FATAL_ERROR:
        return "FatalError";
    }
    return pf_error_name(rc) != NULL ? pf_error_name(rc) : "error";
}

static pf_clock_t *g_clock; /* simulated time, for the printed lines */

static double
now(void)
{
    return pf_clock_now(g_clock);
}

/* ---- the simulated dependency -------------------------------------------- */

/* Fails `failures` times with `error`, then answers. */
typedef struct dependency {
    int failures;
    int error;
    int calls;
} dependency_t;

static int
unreliable_operation(dependency_t *d)
{
    d->calls++;
    return d->calls <= d->failures ? d->error : 0;
}

static const char *
get_fallback_result(void)
{
    return "cached";
}

/* ---- the agent ----------------------------------------------------------- */

/* @state resilient_operation_with_retry: one attempt; the runtime does the
 * loop. */
static int
resilient_operation_with_retry(pf_ctx_t *ctx, void *arg)
{
    int rc = unreliable_operation(arg);

    printf("   t=%2.0fs attempt %u: %s\n", now(), pf_ctx_attempt(ctx),
           rc == 0 ? "success" : error_name(rc));
    if (rc != 0) {
        return rc;
    }
    return pf_ctx_set_string(ctx, "result", "fresh");
}

/* except CircuitBreakerOpenError: ctx.result = await get_fallback_result() */
static int
use_fallback_result(pf_ctx_t *ctx, void *arg, int reason)
{
    (void)arg;
    (void)reason; /* PF_EOPEN */
    return pf_ctx_set_string(ctx, "result", get_fallback_result());
}

/* The retry delays the runtime announced, for the program to let pass. */
typedef struct retry_log {
    atomic_int count;
    double delay[8];
} retry_log_t;

static void
on_agent_event(const pf_agent_event_t *ev, void *arg)
{
    retry_log_t *log = arg;
    int n;

    switch (ev->kind) {
    case PF_AGENT_EVENT_RETRY:
        printf("   t=%2.0fs [agent] retry in %.0f s\n", now(), ev->delay);
        n = atomic_load(&log->count);
        if (n < 8) {
            log->delay[n] = ev->delay;
            /* Publishes the delay to the thread that reads the count. */
            atomic_store(&log->count, n + 1);
        }
        break;
    case PF_AGENT_EVENT_REJECTED:
        printf("   t=%2.0fs [agent] attempt refused: %s\n", now(),
               pf_strerror(ev->error));
        break;
    case PF_AGENT_EVENT_FALLBACK:
        printf("   t=%2.0fs [agent] fallback result used\n", now());
        break;
    case PF_AGENT_EVENT_DEAD_LETTER:
        printf("   t=%2.0fs [agent] failed for good after %u attempt(s): %s\n",
               now(), ev->attempt, error_name(ev->error));
        break;
    default:
        break;
    }
}

static void
on_breaker_change(pf_breaker_t *b, pf_breaker_state_t from,
                  pf_breaker_state_t to, void *arg)
{
    (void)arg;
    printf("   t=%2.0fs [breaker] %s: %s -> %s\n", now(), pf_breaker_name(b),
           pf_breaker_state_name(from), pf_breaker_state_name(to));
}

static int
retryable_agent_new(pf_executor_t *ex, dependency_t *dep, retry_log_t *log,
                    pf_agent_t **out)
{
    static const int transient[] = {TRANSIENT_ERROR};
    pf_backoff_t backoff;
    pf_breaker_config_t breaker_cfg;
    pf_agent_config_t cfg;
    pf_retry_policy_t retry;
    pf_state_opts_t o;
    int rc;

    pf_agent_config_init(&cfg);
    cfg.name = "RetryableAgent";
    cfg.executor = ex;
    cfg.listener = on_agent_event;
    cfg.listener_arg = log;
    rc = pf_agent_new_ex(&cfg, out);
    if (rc != 0) {
        return rc;
    }
    /* max_retries = 3, delay = base_delay * 2 ** attempt, TransientError
     * only. */
    pf_retry_policy_init(&retry);
    retry.max_retries = 3;
    pf_backoff_init(&backoff);
    backoff.initial_delay = 1.0;
    backoff.multiplier = 2.0;
    backoff.jitter = PF_JITTER_NONE;
    retry.backoff = &backoff;
    retry.retry_on = transient;
    retry.retry_on_len = 1;

    pf_state_opts_init(&o);
    o.retry = &retry;
    o.own_breaker = true;
    pf_breaker_config_init(&breaker_cfg);
    breaker_cfg.name = "unreliable_operation";
    breaker_cfg.failure_threshold = 3;
    breaker_cfg.listener = on_breaker_change;
    o.breaker_config = &breaker_cfg;
    o.fallback = use_fallback_result;
    return pf_agent_add_state(*out, "resilient_operation_with_retry",
                              resilient_operation_with_retry, dep, &o);
}

/* ---- driving simulated time ---------------------------------------------- */

/* True when the executor's timer thread waits for a timer on the clock. */
static int
timer_parked(pf_executor_t *ex, const pf_clock_t *clock)
{
    pf_executor_metrics_t m;

    pf_executor_metrics(ex, &m);
    return m.timers_armed > 0 && pf_clock_manual_waiters(clock) > 0;
}

/* Run the agent once on the executor. Each time the run waits for a retry,
 * move the clock by the delay announced. Returns the run's result, with
 * ctx.result in result. */
static int
request(pf_agent_t *agent, pf_executor_t *ex, retry_log_t *log,
        pf_run_result_t *res, char *result, size_t cap)
{
    pf_ctx_t *ctx;
    pf_run_t *run;
    int used = 0;
    int rc;

    result[0] = '\0';
    rc = pf_ctx_new(&ctx);
    if (rc != 0) {
        return rc;
    }
    rc = pf_agent_start(agent, ctx, NULL, &run);
    if (rc != 0) {
        pf_ctx_free(ctx);
        return rc;
    }
    while (!pf_run_done(run)) {
        int n = atomic_load(&log->count);

        if (n > used && timer_parked(ex, g_clock)) {
            pf_clock_manual_advance(
                g_clock, (int64_t)(log->delay[used] * PF_NS_PER_SEC));
            used++;
        }
        sched_yield();
    }
    rc = pf_run_wait(run, NULL, res);
    pf_run_free(run);
    pf_ctx_get_string(ctx, "result", result, cap, NULL);
    pf_ctx_free(ctx);
    return rc;
}

/* ---- the walk-through ---------------------------------------------------- */

static int failures;

static void
check(int ok, const char *what)
{
    printf("%s %s\n", ok ? "ok  " : "FAIL", what);
    if (!ok) {
        failures++;
    }
}

typedef struct outcome {
    int rc;
    char result[32];
    pf_state_result_t state;
    int delays;
    double delay[8];
    double elapsed;
    int calls;
    pf_breaker_state_t breaker;
} outcome_t;

/* One request on a new agent (so a new breaker) against dep. */
static int
scenario(pf_executor_t *ex, dependency_t dep, outcome_t *out)
{
    retry_log_t log;
    pf_agent_t *agent;
    pf_run_result_t res;
    double t0 = now();
    int rc;

    atomic_init(&log.count, 0);
    rc = retryable_agent_new(ex, &dep, &log, &agent);
    if (rc != 0) {
        return rc;
    }
    out->rc = request(agent, ex, &log, &res, out->result, sizeof(out->result));
    pf_run_result_find(&res, "resilient_operation_with_retry", &out->state);
    pf_run_result_free(&res);
    out->delays = atomic_load(&log.count);
    memcpy(out->delay, log.delay, sizeof(out->delay));
    out->elapsed = now() - t0;
    out->calls = dep.calls;
    out->breaker =
        pf_breaker_state(pf_agent_state_breaker(agent, out->state.name));
    pf_agent_free(agent);
    return 0;
}

int
main(void)
{
    pf_executor_config_t ecfg;
    pf_executor_t *ex;
    outcome_t o;

    if (pf_clock_manual_new(&g_clock) != 0) {
        return 1;
    }
    pf_executor_config_init(&ecfg);
    ecfg.clock = g_clock;
    ecfg.workers = 2;
    if (pf_executor_new(&ecfg, &ex) != 0) {
        return 1;
    }

    printf("1. two transient errors, then success\n");
    memset(&o, 0, sizeof(o));
    if (scenario(ex, (dependency_t){2, TRANSIENT_ERROR, 0}, &o) != 0) {
        return 1;
    }
    check(o.rc == 0 && strcmp(o.result, "fresh") == 0,
          "the third attempt's result reaches ctx.result");
    check(o.state.attempts == 3 && o.delays == 2 && o.delay[0] == 1.0 &&
              o.delay[1] == 2.0 && o.elapsed == 3.0,
          "after waiting 1 s, then 2 s");

    printf("2. the dependency is down\n");
    memset(&o, 0, sizeof(o));
    if (scenario(ex, (dependency_t){100, TRANSIENT_ERROR, 0}, &o) != 0) {
        return 1;
    }
    check(o.calls == 3 && o.breaker == PF_BREAKER_OPEN,
          "the third failure opens the breaker");
    check(o.delays == 3 && o.delay[2] == 4.0 && o.elapsed == 7.0,
          "the fourth attempt comes after 1 + 2 + 4 s");
    check(o.rc == 0 && strcmp(o.result, "cached") == 0 && o.state.fell_back &&
              o.state.error == PF_EOPEN &&
              o.state.outcome == PF_STATE_COMPLETED,
          "it is refused (open: no more retries) and the fallback answers");

    printf("3. a non-transient error\n");
    memset(&o, 0, sizeof(o));
    if (scenario(ex, (dependency_t){100, FATAL_ERROR, 0}, &o) != 0) {
        return 1;
    }
    check(o.rc == FATAL_ERROR && o.calls == 1 && o.delays == 0 &&
              o.state.dead_letter,
          "is not retried: it is the run's result, and a dead letter");

    pf_executor_free(ex);
    pf_clock_free(g_clock);
    if (failures != 0) {
        printf("%d check(s) failed\n", failures);
        return 1;
    }
    printf("all checks passed\n");
    return 0;
}
