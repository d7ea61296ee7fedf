/* The reference's advanced circuit breaker configuration (REFERENCE.md,
 * "Advanced Circuit Breaker Configuration"):
 *
 *   config = CircuitBreakerConfig(
 *       failure_threshold=10,     # Open after 10 failures
 *       recovery_timeout=60,      # Try to recover after 60 seconds
 *       expected_exception=(ConnectionError, TimeoutError, HTTPError),
 *       success_threshold=3,      # Need 3 successes to close
 *       timeout=30,               # Individual call timeout
 *       fallback_function=get_fallback_data)
 *   circuit_breaker = CircuitBreaker(config)
 *
 *   class AdvancedResilientAgent(Agent):
 *       @state
 *       async def protected_operation(self, ctx: Context) -> None:
 *           async with circuit_breaker:
 *               ctx.result = await risky_operation()
 *
 * As in the reference, the breaker is made once, outside the agent, and the
 * state runs its operation through it: pf_breaker_call runs
 * get_fallback_data instead when the breaker rejects the call (PF_EOPEN)
 * or when the call fails in a way that counts (one of the three errors, or
 * longer than 30 s: PF_ETIMEDOUT). Any other error is not counted and goes
 * back unchanged: the state fails with it and the run returns it.
 *
 * Each request is one run of the agent against a simulated operation whose
 * behaviour the program scripts. Everything runs on a manual clock: a slow
 * call moves it 45 s, and the 60 s recovery timeout passes in no time. The
 * program prints what happens, checks each promise, and exits 0 only if
 * all hold. */
#include <stdio.h>
#include <string.h>

#include "puffinflow/agent.h"

#define CONNECTION_ERROR 111 /* the three expected "exceptions" */
#define TIMEOUT_ERROR 110
#define HTTP_ERROR 502
#define VALUE_ERROR 22 /* not expected: handed back, not counted */

static const char *
error_name(int rc)
{
    switch (rc) {
    case CONNECTION_ERROR:
        return "ConnectionError";
    case TIMEOUT_ERROR:
        return "TimeoutError";
    case HTTP_ERROR:
        return "HTTPError";
    case VALUE_ERROR:
        return "ValueError";
    }
    return pf_error_name(rc) != NULL ? pf_error_name(rc) : "error";
}

/* ---- the simulated operation --------------------------------------------- */

typedef enum {
    OP_OK,
    OP_CONNECTION,
    OP_TIMEOUT,
    OP_HTTP,
    OP_SLOW,
    OP_VALUE
} behaviour_t;

typedef struct world {
    pf_clock_t *clock;
    behaviour_t next; /* what risky_operation does next */
    int operation_runs;
    int fallback_runs;
    int fallback_reason;
} world_t;

/* One protected call: what pf_breaker_call hands to the operation and to
 * the fallback. */
typedef struct call {
    world_t *world;
    pf_ctx_t *ctx;
} call_t;

/* risky_operation: a slow call takes 45 s of the manual clock, past the
 * breaker's 30 s timeout. */
static int
risky_operation(void *arg)
{
    call_t *c = arg;
    world_t *w = c->world;
    const char *result = "live data";

    w->operation_runs++;
    switch (w->next) {
    case OP_OK:
        break;
    case OP_SLOW:
        pf_clock_manual_advance(w->clock, 45 * PF_NS_PER_SEC);
        result = "late data";
        break;
    case OP_CONNECTION:
        return CONNECTION_ERROR;
    case OP_TIMEOUT:
        return TIMEOUT_ERROR;
    case OP_HTTP:
        return HTTP_ERROR;
    case OP_VALUE:
        return VALUE_ERROR;
    }
    return pf_ctx_set_string(c->ctx, "result", result);
}

/* fallback_function: fills the same ctx.result the operation would have. */
static int
get_fallback_data(void *arg, int reason)
{
    call_t *c = arg;

    printf("   get_fallback_data: instead of the operation (%s)\n",
           error_name(reason));
    c->world->fallback_runs++;
    c->world->fallback_reason = reason;
    return pf_ctx_set_string(c->ctx, "result", "fallback data");
}

static pf_breaker_t *circuit_breaker;

/* @state protected_operation */
static int
protected_operation(pf_ctx_t *ctx, void *arg)
{
    call_t c = {arg, ctx};
    int rc = pf_breaker_call(circuit_breaker, risky_operation, &c);

    if (rc != 0) {
        printf("   protected_operation: %s goes back to the caller\n",
               error_name(rc));
    }
    return rc;
}

static void
on_breaker_change(pf_breaker_t *b, pf_breaker_state_t from,
                  pf_breaker_state_t to, void *arg)
{
    (void)arg;
    printf("   [breaker] %s: %s -> %s\n", pf_breaker_name(b),
           pf_breaker_state_name(from), pf_breaker_state_name(to));
}

static int
make_circuit_breaker(const pf_clock_t *clock)
{
    static const int expected_exception[] = {CONNECTION_ERROR, TIMEOUT_ERROR,
                                             HTTP_ERROR};
    pf_breaker_config_t config;

    pf_breaker_config_init(&config);
    config.name = "risky_operation";
    config.failure_threshold = 10;
    config.recovery_timeout = 60.0;
    config.expected_errors = expected_exception;
    config.expected_errors_len = 3;
    config.success_threshold = 3;
    config.timeout = 30.0;
    config.fallback = get_fallback_data;
    config.listener = on_breaker_change;
    config.clock = clock;
    return pf_breaker_new(&config, &circuit_breaker);
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

/* One request with the operation behaving as b: the run's result, and
 * ctx.result (or "") in result. */
static int
request(pf_agent_t *agent, world_t *w, behaviour_t b, char *result, size_t cap)
{
    pf_ctx_t *ctx;
    int rc;

    w->next = b;
    w->fallback_reason = 0;
    result[0] = '\0';
    rc = pf_ctx_new(&ctx);
    if (rc != 0) {
        return rc;
    }
    rc = pf_agent_run(agent, ctx, NULL);
    pf_ctx_get_string(ctx, "result", result, cap, NULL);
    pf_ctx_free(ctx);
    return rc;
}

int
main(void)
{
    static const behaviour_t counted[] = {OP_CONNECTION, OP_TIMEOUT, OP_HTTP,
                                          OP_SLOW};
    world_t w;
    pf_executor_config_t ecfg;
    pf_agent_config_t acfg;
    pf_state_opts_t o;
    pf_executor_t *ex = NULL;
    pf_agent_t *agent = NULL;
    pf_breaker_metrics_t m;
    char result[64];
    int runs;
    int rc;

    memset(&w, 0, sizeof(w));
    if (pf_clock_manual_new(&w.clock) != 0 ||
        make_circuit_breaker(w.clock) != 0) {
        return 1;
    }
    pf_executor_config_init(&ecfg);
    ecfg.clock = w.clock;
    ecfg.workers = 1;
    if (pf_executor_new(&ecfg, &ex) != 0) {
        return 1;
    }
    pf_agent_config_init(&acfg);
    acfg.name = "AdvancedResilientAgent";
    acfg.executor = ex;
    pf_state_opts_init(&o);
    o.max_retries = 0; /* the reference does not retry */
    if (pf_agent_new_ex(&acfg, &agent) != 0 ||
        pf_agent_add_state(agent, "protected_operation", protected_operation,
                           &w, &o) != 0) {
        fprintf(stderr, "setup failed\n");
        return 1;
    }

    printf("1. a good call\n");
    rc = request(agent, &w, OP_OK, result, sizeof(result));
    check(rc == 0 && strcmp(result, "live data") == 0 && w.fallback_runs == 0,
          "its result reaches ctx.result");

    printf("2. an HTTP error\n");
    rc = request(agent, &w, OP_HTTP, result, sizeof(result));
    check(rc == 0 && strcmp(result, "fallback data") == 0 &&
              w.fallback_reason == HTTP_ERROR,
          "it counts as a failure: the fallback answers, told why");

    printf("3. a call that takes 45 s\n");
    rc = request(agent, &w, OP_SLOW, result, sizeof(result));
    check(rc == 0 && strcmp(result, "fallback data") == 0 &&
              w.fallback_reason == PF_ETIMEDOUT,
          "past the 30 s timeout: a failure, the fallback answers");

    printf("4. an error that is not expected\n");
    rc = request(agent, &w, OP_VALUE, result, sizeof(result));
    check(rc == VALUE_ERROR && result[0] == '\0' && w.fallback_reason == 0,
          "it goes back unchanged as the run's result, no fallback");

    printf("5. eight more counted failures, ten in all\n");
    for (int i = 0; i < 8; i++) {
        request(agent, &w, counted[i % 4], result, sizeof(result));
        if (i == 6) {
            check(pf_breaker_state(circuit_breaker) == PF_BREAKER_CLOSED,
                  "nine counted failures: still closed");
        }
    }
    check(pf_breaker_state(circuit_breaker) == PF_BREAKER_OPEN,
          "the tenth counted failure opens it");

    printf("6. a request while it is open\n");
    runs = w.operation_runs;
    rc = request(agent, &w, OP_OK, result, sizeof(result));
    check(rc == 0 && w.operation_runs == runs &&
              strcmp(result, "fallback data") == 0 &&
              w.fallback_reason == PF_EOPEN,
          "the operation is not run: the fallback answers");

    printf("7. 60 s later, three good calls\n");
    pf_clock_manual_advance(w.clock, 60 * PF_NS_PER_SEC);
    check(pf_breaker_state(circuit_breaker) == PF_BREAKER_HALF_OPEN,
          "after 60 s it lets trials through");
    for (int i = 0; i < 3; i++) {
        rc = request(agent, &w, OP_OK, result, sizeof(result));
        check(rc == 0 && strcmp(result, "live data") == 0,
              "a trial call runs the operation");
        if (i < 2) {
            check(pf_breaker_state(circuit_breaker) == PF_BREAKER_HALF_OPEN,
                  "fewer than 3 successes: still half-open");
        }
    }
    check(pf_breaker_state(circuit_breaker) == PF_BREAKER_CLOSED,
          "three successes close it");

    pf_breaker_metrics(circuit_breaker, &m);
    printf("breaker: %llu calls, %llu successes, %llu failures (%llu "
           "timeouts), %llu ignored, %llu rejected\n",
           (unsigned long long)m.calls, (unsigned long long)m.successes,
           (unsigned long long)m.failures, (unsigned long long)m.timeouts,
           (unsigned long long)m.ignored, (unsigned long long)m.rejected);
    check(m.failures == 10 && m.timeouts == 3 && m.ignored == 1 &&
              m.rejected == 1 && m.successes == 4,
          "10 failures (3 timeouts), 1 ignored, 1 rejected, 4 successes");
    check(w.fallback_runs == 11, "the fallback answered 11 times");

    pf_agent_free(agent);
    pf_executor_free(ex);
    pf_breaker_free(circuit_breaker);
    pf_clock_free(w.clock);
    if (failures != 0) {
        printf("%d check(s) failed\n", failures);
        return 1;
    }
    printf("all checks passed\n");
    return 0;
}
