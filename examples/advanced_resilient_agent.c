/* The reference's advanced circuit breaker configuration:
 *
 *   config = CircuitBreakerConfig(
 *       failure_threshold=10,     # Open after 10 failures
 *       recovery_timeout=60,      # Try to recover after 60 seconds
 *       expected_exception=(ConnectionError, TimeoutError, HTTPError),
 *       success_threshold=3,      # Need 3 successes to close
 *       timeout=30,               # Individual call timeout
 *       fallback_function=get_fallback_data)
 *
 *   class AdvancedResilientAgent(Agent):
 *       @state
 *       async def protected_operation(self, ctx):
 *           async with circuit_breaker:
 *               ctx.result = await risky_operation()
 *
 * In C the state runs risky_operation through pf_breaker_call, which runs
 * get_fallback_data instead when the breaker rejects the call or when the
 * call fails in a way that counts (one of the three errors, or longer than
 * 30 s); any other error goes back unchanged and is not counted. The state
 * is a plain function for now (it moves onto an agent when the runtime
 * exists), run against a simulated flaky operation on a manual clock. The
 * program checks each promise and exits 0 only if all hold. */
#include <stdio.h>
#include <string.h>

#include "puffinflow/breaker.h"
#include "puffinflow/clock.h"
#include "puffinflow/error.h"

#define CONNECTION_ERROR 111 /* the three expected "exceptions" */
#define TIMEOUT_ERROR 110
#define HTTP_ERROR 502
#define VALUE_ERROR 22 /* not expected: handed back, not counted */

typedef enum { OP_OK, OP_CONNECTION, OP_TIMEOUT, OP_HTTP, OP_SLOW, OP_VALUE }
    behaviour_t;

/* The context of a run, and what the simulated operation will do. */
typedef struct context {
    pf_clock_t *clock;
    behaviour_t next;
    int operation_runs;
    int fallback_runs;
    int fallback_reason;
    const char *result;
} context_t;

/* risky_operation: its behaviour is scripted by the test. A slow call
 * takes 45 s of the manual clock, past the 30 s timeout. */
static int
risky_operation(void *arg)
{
    context_t *ctx = arg;

    ctx->operation_runs++;
    switch (ctx->next) {
    case OP_OK:
        ctx->result = "live data";
        return 0;
    case OP_SLOW:
        pf_clock_manual_advance(ctx->clock, 45 * PF_NS_PER_SEC);
        ctx->result = "late data";
        return 0;
    case OP_CONNECTION:
        return CONNECTION_ERROR;
    case OP_TIMEOUT:
        return TIMEOUT_ERROR;
    case OP_HTTP:
        return HTTP_ERROR;
    case OP_VALUE:
        return VALUE_ERROR;
    }
    return HTTP_ERROR;
}

/* fallback_function: fills the same context the operation would have. */
static int
get_fallback_data(void *arg, int reason)
{
    context_t *ctx = arg;

    ctx->fallback_runs++;
    ctx->fallback_reason = reason;
    ctx->result = "fallback data";
    return 0;
}

/* @state protected_operation */
static int
protected_operation(pf_breaker_t *circuit_breaker, context_t *ctx)
{
    return pf_breaker_call(circuit_breaker, risky_operation, ctx);
}

static int failures;

static void
check(int ok, const char *what)
{
    printf("%s %s\n", ok ? "ok  " : "FAIL", what);
    if (!ok) {
        failures++;
    }
}

/* Run the state once with the operation behaving as b. */
static int
run(pf_breaker_t *cb, context_t *ctx, behaviour_t b)
{
    ctx->next = b;
    ctx->result = NULL;
    ctx->fallback_reason = 0;
    return protected_operation(cb, ctx);
}

int
main(void)
{
    static const int expected_exception[] = {CONNECTION_ERROR, TIMEOUT_ERROR,
                                             HTTP_ERROR};
    pf_breaker_config_t config;
    pf_breaker_t *circuit_breaker;
    pf_clock_t *clock;
    pf_breaker_metrics_t m;
    context_t ctx;
    int rc;
    int runs;

    if (pf_clock_manual_new(&clock) != 0) {
        return 1;
    }
    pf_breaker_config_init(&config);
    config.name = "risky_operation";
    config.failure_threshold = 10;
    config.recovery_timeout = 60.0;
    config.expected_errors = expected_exception;
    config.expected_errors_len = 3;
    config.success_threshold = 3;
    config.timeout = 30.0;
    config.fallback = get_fallback_data;
    config.clock = clock;
    if (pf_breaker_new(&config, &circuit_breaker) != 0) {
        fprintf(stderr, "pf_breaker_new failed\n");
        return 1;
    }
    memset(&ctx, 0, sizeof(ctx));
    ctx.clock = clock;

    rc = run(circuit_breaker, &ctx, OP_OK);
    check(rc == 0 && strcmp(ctx.result, "live data") == 0 &&
              ctx.fallback_runs == 0,
          "a good call's result reaches the context");

    rc = run(circuit_breaker, &ctx, OP_HTTP);
    check(rc == 0 && strcmp(ctx.result, "fallback data") == 0 &&
              ctx.fallback_reason == HTTP_ERROR,
          "an HTTP error is a failure: the fallback answers, told why");

    rc = run(circuit_breaker, &ctx, OP_SLOW);
    check(rc == 0 && strcmp(ctx.result, "fallback data") == 0 &&
              ctx.fallback_reason == PF_ETIMEDOUT,
          "a call longer than 30 s is a timeout: the fallback answers");

    rc = run(circuit_breaker, &ctx, OP_VALUE);
    check(rc == VALUE_ERROR && ctx.result == NULL &&
              ctx.fallback_reason == 0,
          "an error not listed goes back unchanged, no fallback");

    /* Eight more counted failures of the three kinds: ten in a row. */
    for (int i = 0; i < 8; i++) {
        behaviour_t kinds[] = {OP_CONNECTION, OP_TIMEOUT, OP_HTTP, OP_SLOW};

        run(circuit_breaker, &ctx, kinds[i % 4]);
        if (i == 6) {
            check(pf_breaker_state(circuit_breaker) == PF_BREAKER_CLOSED,
                  "nine counted failures: still closed");
        }
    }
    check(pf_breaker_state(circuit_breaker) == PF_BREAKER_OPEN,
          "the tenth counted failure opens it");

    runs = ctx.operation_runs;
    rc = run(circuit_breaker, &ctx, OP_OK);
    check(rc == 0 && ctx.operation_runs == runs &&
              strcmp(ctx.result, "fallback data") == 0 &&
              ctx.fallback_reason == PF_EOPEN,
          "while open, the operation is not run: the fallback answers");

    pf_clock_manual_advance(clock, 60 * PF_NS_PER_SEC);
    check(pf_breaker_state(circuit_breaker) == PF_BREAKER_HALF_OPEN,
          "after 60 s it lets trials through");
    for (int i = 0; i < 3; i++) {
        rc = run(circuit_breaker, &ctx, OP_OK);
        check(rc == 0 && strcmp(ctx.result, "live data") == 0,
              "a trial call runs the operation");
        if (i < 2) {
            check(pf_breaker_state(circuit_breaker) ==
                      PF_BREAKER_HALF_OPEN,
                  "fewer than 3 successes: still half-open");
        }
    }
    check(pf_breaker_state(circuit_breaker) == PF_BREAKER_CLOSED,
          "three successes close it");

    pf_breaker_metrics(circuit_breaker, &m);
    printf("metrics: calls %llu, successes %llu, failures %llu (timeouts "
           "%llu), ignored %llu, rejected %llu\n",
           (unsigned long long)m.calls, (unsigned long long)m.successes,
           (unsigned long long)m.failures, (unsigned long long)m.timeouts,
           (unsigned long long)m.ignored, (unsigned long long)m.rejected);
    check(m.failures == 10 && m.timeouts == 3 && m.ignored == 1 &&
              m.rejected == 1 && m.successes == 4,
          "the metrics count 10 failures (3 timeouts), 1 ignored, "
          "1 rejected");
    pf_breaker_free(circuit_breaker);
    pf_clock_free(clock);
    if (failures != 0) {
        printf("%d check(s) failed\n", failures);
        return 1;
    }
    printf("all checks passed\n");
    return 0;
}
