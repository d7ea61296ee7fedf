/* The reference's ResilientAgent (REFERENCE.md, "Circuit Breaker Pattern"):
 *
 *   class ResilientAgent(Agent):
 *       def __init__(self):
 *           self.api_circuit_breaker = CircuitBreaker(CircuitBreakerConfig(
 *               failure_threshold=5, recovery_timeout=30,
 *               expected_exception=ConnectionError))
 *
 *       @state
 *       async def call_external_api(self, ctx: Context) -> None:
 *           try:
 *               async with self.api_circuit_breaker:
 *                   ctx.api_response = await external_api_call()
 *           except CircuitBreakerOpenError:
 *               ctx.api_response = await get_cached_response()
 *
 * In C the state gets its own breaker through its options, and the
 * `except CircuitBreakerOpenError` branch is the state's fallback: the
 * runtime calls it instead of the state while the breaker is open
 * (PF_EOPEN). Errors other than connection errors go back to the caller
 * (the run's result) without counting against the API.
 *
 * Each request is one run of the agent against a simulated external API
 * whose behaviour the program scripts. The executor runs on a manual clock,
 * so the 30 s recovery timeout passes in no time. The program prints what
 * happens and checks each promise; it exits 0 only if all hold. */
#include <stdio.h>
#include <string.h>

#include "puffinflow/agent.h"

/* The API's failures, as the user's own result codes. */
#define CONNECTION_ERROR 111 /* Python's ConnectionError */
#define VALUE_ERROR 22       /* any other error: not the breaker's business */

static const char *
error_name(int rc)
{
    switch (rc) {
    case CONNECTION_ERROR:
        return "ConnectionError";
    case VALUE_ERROR:
        return "ValueError";
    }
    return pf_error_name(rc) != NULL ? pf_error_name(rc) : "error";
}

/* ---- the simulated external API ------------------------------------------ */

typedef enum { API_UP, API_DOWN, API_BAD_INPUT } api_mode_t;

typedef struct external_api {
    api_mode_t mode;
    int hits; /* requests that reached it */
} external_api_t;

static int
external_api_call(external_api_t *api, const char **response)
{
    api->hits++;
    switch (api->mode) {
    case API_UP:
        *response = "fresh response";
        return 0;
    case API_BAD_INPUT:
        return VALUE_ERROR;
    case API_DOWN:
        break;
    }
    return CONNECTION_ERROR;
}

static const char *
get_cached_response(void)
{
    return "cached response";
}

/* ---- the agent ----------------------------------------------------------- */

/* @state call_external_api: runs inside the state's circuit breaker. */
static int
call_external_api(pf_ctx_t *ctx, void *arg)
{
    const char *response = NULL;
    int rc = external_api_call(arg, &response);

    if (rc != 0) {
        printf("   call_external_api: the API failed: %s\n", error_name(rc));
        return rc;
    }
    printf("   call_external_api: the API answered\n");
    return pf_ctx_set_string(ctx, "api_response", response);
}

/* except CircuitBreakerOpenError: the runtime calls this instead of the
 * state while the breaker is open (reason == PF_EOPEN). */
static int
use_cached_response(pf_ctx_t *ctx, void *arg, int reason)
{
    (void)arg;
    (void)reason;
    return pf_ctx_set_string(ctx, "api_response", get_cached_response());
}

static void
on_breaker_change(pf_breaker_t *b, pf_breaker_state_t from,
                  pf_breaker_state_t to, void *arg)
{
    (void)arg;
    printf("   [breaker] %s: %s -> %s\n", pf_breaker_name(b),
           pf_breaker_state_name(from), pf_breaker_state_name(to));
}

static void
on_agent_event(const pf_agent_event_t *ev, void *arg)
{
    (void)arg;
    switch (ev->kind) {
    case PF_AGENT_EVENT_REJECTED:
        printf("   [agent] %s refused: %s\n", ev->state,
               pf_strerror(ev->error));
        break;
    case PF_AGENT_EVENT_FALLBACK:
        printf("   [agent] %s: fallback used (%s)\n", ev->state,
               error_name(ev->error));
        break;
    case PF_AGENT_EVENT_DEAD_LETTER:
        printf("   [agent] %s failed: %s (dead letter)\n", ev->state,
               error_name(ev->error));
        break;
    default:
        break;
    }
}

static int
resilient_agent_new(pf_executor_t *ex, external_api_t *api, pf_agent_t **out)
{
    static const int expected_exception[] = {CONNECTION_ERROR};
    pf_breaker_config_t breaker_cfg;
    pf_agent_config_t cfg;
    pf_state_opts_t o;
    int rc;

    pf_agent_config_init(&cfg);
    cfg.name = "ResilientAgent";
    cfg.executor = ex;
    cfg.listener = on_agent_event;
    rc = pf_agent_new_ex(&cfg, out);
    if (rc != 0) {
        return rc;
    }
    pf_state_opts_init(&o);
    o.max_retries = 0; /* the reference does not retry */
    o.own_breaker = true;
    pf_breaker_config_init(&breaker_cfg);
    breaker_cfg.name = "external_api";
    breaker_cfg.failure_threshold = 5;
    breaker_cfg.recovery_timeout = 30.0;
    breaker_cfg.expected_errors = expected_exception;
    breaker_cfg.expected_errors_len = 1;
    breaker_cfg.listener = on_breaker_change;
    o.breaker_config = &breaker_cfg;
    o.fallback = use_cached_response;
    return pf_agent_add_state(*out, "call_external_api", call_external_api, api,
                              &o);
}

/* ---- the walk-through ---------------------------------------------------- */

/* One request: a run of the agent. Returns the run's result and copies
 * ctx.api_response (or "") into response. */
static int
request(pf_agent_t *agent, char *response, size_t cap)
{
    pf_ctx_t *ctx;
    int rc;

    response[0] = '\0';
    rc = pf_ctx_new(&ctx);
    if (rc != 0) {
        return rc;
    }
    rc = pf_agent_run(agent, ctx, NULL);
    pf_ctx_get_string(ctx, "api_response", response, cap, NULL);
    pf_ctx_free(ctx);
    return rc;
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
    external_api_t api = {API_UP, 0};
    pf_executor_config_t ecfg;
    pf_clock_t *clock = NULL;
    pf_executor_t *ex = NULL;
    pf_agent_t *agent = NULL;
    pf_breaker_t *b;
    pf_breaker_metrics_t bm;
    pf_agent_metrics_t am;
    char response[64];
    int hits;
    int rc = 0;

    /* Simulated time: an executor (one worker is plenty) on a manual
     * clock, which the agent's breaker uses too. */
    if (pf_clock_manual_new(&clock) != 0) {
        return 1;
    }
    pf_executor_config_init(&ecfg);
    ecfg.clock = clock;
    ecfg.workers = 1;
    if (pf_executor_new(&ecfg, &ex) != 0 ||
        resilient_agent_new(ex, &api, &agent) != 0) {
        fprintf(stderr, "setup failed\n");
        return 1;
    }
    b = pf_agent_state_breaker(agent, "call_external_api");

    printf("1. the API is up\n");
    rc = request(agent, response, sizeof(response));
    check(rc == 0 && strcmp(response, "fresh response") == 0,
          "the API's response reaches ctx.api_response");

    printf("2. six requests the API rejects as bad input\n");
    api.mode = API_BAD_INPUT;
    for (int i = 0; i < 6; i++) {
        rc = request(agent, response, sizeof(response));
    }
    check(rc == VALUE_ERROR && pf_breaker_state(b) == PF_BREAKER_CLOSED,
          "other errors go back to the caller and leave the breaker closed");

    printf("3. the API goes down\n");
    api.mode = API_DOWN;
    for (int i = 0; i < 4; i++) {
        rc = request(agent, response, sizeof(response));
    }
    check(rc == CONNECTION_ERROR && pf_breaker_state(b) == PF_BREAKER_CLOSED,
          "four connection errors: still closed");
    rc = request(agent, response, sizeof(response));
    check(rc == CONNECTION_ERROR && pf_breaker_state(b) == PF_BREAKER_OPEN,
          "the fifth opens the breaker");

    printf("4. three requests while the breaker is open\n");
    hits = api.hits;
    for (int i = 0; i < 3; i++) {
        rc = request(agent, response, sizeof(response));
        printf("   -> %s, api_response \"%s\"\n",
               rc == 0 ? "ok" : error_name(rc), response);
    }
    check(rc == 0 && strcmp(response, "cached response") == 0,
          "while open, the cached response is used");
    check(api.hits == hits, "while open, no request reaches the API");

    printf("5. 30 s later the breaker lets one trial through\n");
    pf_clock_manual_advance(clock, 29 * PF_NS_PER_SEC);
    check(pf_breaker_state(b) == PF_BREAKER_OPEN, "still open after 29 s");
    pf_clock_manual_advance(clock, 1 * PF_NS_PER_SEC);
    check(pf_breaker_state(b) == PF_BREAKER_HALF_OPEN, "half-open after 30 s");
    rc = request(agent, response, sizeof(response));
    check(rc == CONNECTION_ERROR && api.hits == hits + 1 &&
              pf_breaker_state(b) == PF_BREAKER_OPEN,
          "the trial fails: open for another 30 s");

    printf("6. the API recovers\n");
    api.mode = API_UP;
    pf_clock_manual_advance(clock, 30 * PF_NS_PER_SEC);
    for (int i = 0; i < 3; i++) {
        rc = request(agent, response, sizeof(response));
    }
    check(rc == 0 && strcmp(response, "fresh response") == 0 &&
              pf_breaker_state(b) == PF_BREAKER_CLOSED,
          "three good trials close it; fresh responses again");

    pf_breaker_metrics(b, &bm);
    pf_agent_metrics(agent, &am);
    printf("breaker: %llu successes, %llu failures, %llu ignored, "
           "%llu rejected, opened %llu times\n",
           (unsigned long long)bm.successes, (unsigned long long)bm.failures,
           (unsigned long long)bm.ignored, (unsigned long long)bm.rejected,
           (unsigned long long)bm.times_opened);
    printf("agent: %llu runs, %llu fallbacks, %llu dead letters\n",
           (unsigned long long)am.runs_finished,
           (unsigned long long)am.fallbacks,
           (unsigned long long)am.dead_letters);
    check(bm.failures == 6 && bm.ignored == 6 && bm.rejected == 3 &&
              bm.successes == 4 && bm.times_opened == 2,
          "the breaker's metrics tell the same story");
    check(am.runs_finished == 19 && am.fallbacks == 3 && am.dead_letters == 12,
          "the agent's metrics too: 3 fallbacks, 12 failed requests");

    pf_agent_free(agent);
    pf_executor_free(ex);
    pf_clock_free(clock);
    if (failures != 0) {
        printf("%d check(s) failed\n", failures);
        return 1;
    }
    printf("all checks passed\n");
    return 0;
}
