/* The reference's ResilientAgent: a circuit breaker (failure_threshold 5,
 * recovery_timeout 30 s, only connection errors count) protects the calls
 * to an external API; while it is open, the agent answers from its cache
 * instead of calling the API.
 *
 *   try:
 *       async with self.api_circuit_breaker:
 *           ctx.api_response = await external_api_call()
 *   except CircuitBreakerOpenError:
 *       ctx.api_response = await get_cached_response()
 *
 * The state is a plain function for now (it moves onto an agent when the
 * runtime exists), run against a simulated flaky service on a manual clock
 * so that 30 seconds pass in no time. The program checks each thing the
 * example promises and exits 0 only if all hold. */
#include <stdio.h>
#include <string.h>

#include "puffinflow/breaker.h"
#include "puffinflow/clock.h"
#include "puffinflow/error.h"

/* The service's failures, as a user's own result codes. */
#define CONNECTION_ERROR 111 /* Python's ConnectionError */
#define VALUE_ERROR 22       /* any other error: not the breaker's business */

typedef enum { SERVICE_UP, SERVICE_DOWN, SERVICE_BAD_INPUT } service_mode_t;

/* A simulated external API. */
typedef struct service {
    service_mode_t mode;
    int hits; /* requests that reached it */
} service_t;

static int
external_api_call(service_t *s, const char **response)
{
    s->hits++;
    switch (s->mode) {
    case SERVICE_UP:
        *response = "fresh response";
        return 0;
    case SERVICE_DOWN:
        return CONNECTION_ERROR;
    case SERVICE_BAD_INPUT:
        return VALUE_ERROR;
    }
    return CONNECTION_ERROR;
}

static const char *
get_cached_response(void)
{
    return "cached response";
}

/* The agent and its context. */
typedef struct resilient_agent {
    pf_breaker_t *api_circuit_breaker;
    service_t *service;
} resilient_agent_t;

typedef struct context {
    const char *api_response;
} context_t;

static int
resilient_agent_init(resilient_agent_t *agent, service_t *service,
                     const pf_clock_t *clock)
{
    static const int expected_exception[] = {CONNECTION_ERROR};
    pf_breaker_config_t cfg;

    pf_breaker_config_init(&cfg);
    cfg.name = "external_api";
    cfg.failure_threshold = 5;
    cfg.recovery_timeout = 30.0;
    cfg.expected_errors = expected_exception;
    cfg.expected_errors_len = 1;
    cfg.clock = clock;
    agent->service = service;
    return pf_breaker_new(&cfg, &agent->api_circuit_breaker);
}

/* @state call_external_api: call the API under the breaker; when the
 * breaker is open, use the cached response. Other errors go to the caller
 * (in Python: the exception propagates). */
static int
call_external_api(resilient_agent_t *agent, context_t *ctx)
{
    pf_permit_t permit;
    const char *response = NULL;
    int rc;

    if (pf_breaker_acquire(agent->api_circuit_breaker, &permit) == PF_EOPEN) {
        ctx->api_response = get_cached_response();
        return 0;
    }
    rc = external_api_call(agent->service, &response);
    pf_breaker_record(agent->api_circuit_breaker, &permit, rc);
    if (rc != 0) {
        return rc;
    }
    ctx->api_response = response;
    return 0;
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

int
main(void)
{
    pf_clock_t *clock;
    service_t service = {SERVICE_UP, 0};
    resilient_agent_t agent;
    context_t ctx = {NULL};
    pf_breaker_t *b;
    int rc;
    int hits;

    if (pf_clock_manual_new(&clock) != 0 ||
        resilient_agent_init(&agent, &service, clock) != 0) {
        fprintf(stderr, "setup failed\n");
        return 1;
    }
    b = agent.api_circuit_breaker;

    /* 1. A healthy API answers through the breaker. */
    rc = call_external_api(&agent, &ctx);
    check(rc == 0 && strcmp(ctx.api_response, "fresh response") == 0,
          "a healthy API's response reaches the context");

    /* 2. Errors that are not connection errors do not trip it. */
    service.mode = SERVICE_BAD_INPUT;
    for (int i = 0; i < 20; i++) {
        rc = call_external_api(&agent, &ctx);
    }
    check(rc == VALUE_ERROR && pf_breaker_state(b) == PF_BREAKER_CLOSED,
          "20 other errors go back to the caller and leave it closed");

    /* 3. Five connection errors in a row open it. */
    service.mode = SERVICE_DOWN;
    for (int i = 0; i < 4; i++) {
        rc = call_external_api(&agent, &ctx);
    }
    check(rc == CONNECTION_ERROR && pf_breaker_state(b) == PF_BREAKER_CLOSED,
          "four connection errors: still closed");
    rc = call_external_api(&agent, &ctx);
    check(rc == CONNECTION_ERROR && pf_breaker_state(b) == PF_BREAKER_OPEN,
          "the fifth opens the breaker");

    /* 4. While open, the cache answers and the API is left alone. */
    hits = service.hits;
    ctx.api_response = NULL;
    for (int i = 0; i < 100; i++) {
        rc = call_external_api(&agent, &ctx);
    }
    check(rc == 0 && strcmp(ctx.api_response, "cached response") == 0,
          "while open, the cached response is used");
    check(service.hits == hits, "while open, no request reaches the API");

    /* 5. 30 s later it tries again; the API is still down: open again. */
    pf_clock_manual_advance(clock, 29 * PF_NS_PER_SEC);
    check(pf_breaker_state(b) == PF_BREAKER_OPEN, "still open after 29 s");
    pf_clock_manual_advance(clock, 1 * PF_NS_PER_SEC);
    check(pf_breaker_state(b) == PF_BREAKER_HALF_OPEN,
          "half-open after 30 s");
    rc = call_external_api(&agent, &ctx);
    check(rc == CONNECTION_ERROR && service.hits == hits + 1 &&
              pf_breaker_state(b) == PF_BREAKER_OPEN,
          "one trial request fails: open for another 30 s");

    /* 6. The API recovers: three good trials close the breaker. */
    service.mode = SERVICE_UP;
    pf_clock_manual_advance(clock, 30 * PF_NS_PER_SEC);
    for (int i = 0; i < 3; i++) {
        rc = call_external_api(&agent, &ctx);
    }
    check(rc == 0 && strcmp(ctx.api_response, "fresh response") == 0 &&
              pf_breaker_state(b) == PF_BREAKER_CLOSED,
          "three good trials close it; fresh responses again");

    {
        pf_breaker_metrics_t m;

        pf_breaker_metrics(b, &m);
        printf("metrics: calls %llu, successes %llu, failures %llu, "
               "ignored %llu, rejected %llu, opened %llu times\n",
               (unsigned long long)m.calls, (unsigned long long)m.successes,
               (unsigned long long)m.failures, (unsigned long long)m.ignored,
               (unsigned long long)m.rejected,
               (unsigned long long)m.times_opened);
        check(m.failures == 6 && m.ignored == 20 && m.rejected == 100 &&
                  m.successes == 4 && m.times_opened == 2,
              "the metrics tell the same story");
    }
    pf_breaker_free(b);
    pf_clock_free(clock);
    if (failures != 0) {
        printf("%d check(s) failed\n", failures);
        return 1;
    }
    printf("all checks passed\n");
    return 0;
}
