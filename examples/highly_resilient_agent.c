/* The reference's HighlyResilientAgent (REFERENCE.md, "Combined Reliability
 * Patterns"):
 *
 *   class HighlyResilientAgent(Agent):
 *       def __init__(self):
 *           self.external_service_cb = CircuitBreaker(CircuitBreakerConfig(
 *               failure_threshold=5, recovery_timeout=30,
 *               expected_exception=ServiceUnavailableError))
 *           self.processing_bulkhead = Bulkhead(BulkheadConfig(
 *               max_concurrent_calls=10, max_wait_duration=15))
 *           self.leak_detector = ResourceLeakDetector()
 *           self.leak_detector.start_monitoring()
 *
 *       @state
 *       async def resilient_processing(self, ctx: Context) -> None:
 *           try:
 *               async with self.processing_bulkhead:
 *                   async with self.external_service_cb:
 *                       external_data = await fetch_external_data()
 *                   processed_data = await process_data(external_data)
 *                   ctx.result = processed_data
 *           except BulkheadFullError:
 *               await self.queue_for_retry(ctx)
 *           except CircuitBreakerOpenError:
 *               ctx.result = await get_cached_data()
 *
 * In C the state's options compose the three patterns, and the runtime
 * applies them before each attempt, in the reference's order: the bulkhead
 * (a full one queues the state as a ticket, no thread waits, for up to
 * 15 s), then the breaker. The two `except` branches:
 *   - BulkheadFullError (PF_EFULL: still no room after 15 s) is the one
 *     error the state's retry policy retries: the request is queued for a
 *     retry 5 s later (a timer), and then finds room;
 *   - CircuitBreakerOpenError (PF_EOPEN) is answered by the state's
 *     fallback with cached data, without calling the service.
 * The leak detector is the agent's: the runtime reports each attempt's
 * resources to it, and at the end nothing may still be held.
 *
 * The external service is simulated; it can be made slow (calls wait until
 * the program lets them go) or unavailable. The executor runs on a manual
 * clock, so the 15 s wait, the 5 s retry delay and the 30 s recovery pass
 * when the program says so. Exits 0 only if every promise held. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "puffinflow/agent.h"

#define SERVICE_UNAVAILABLE 503 /* the reference's ServiceUnavailableError */
#define SLOW_REQUESTS 10

static const char *
error_name(int rc)
{
    if (rc == SERVICE_UNAVAILABLE) {
        return "ServiceUnavailableError";
    }
    return pf_error_name(rc) != NULL ? pf_error_name(rc) : "error";
}

/* ---- the simulated external service ----------------------------------------
 */

typedef struct external_service {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool slow;        /* calls wait until the program lets them go */
    bool unavailable; /* calls fail with SERVICE_UNAVAILABLE */
    int held;         /* calls waiting now */
    int calls;
} external_service_t;

static int
fetch_external_data(external_service_t *s, const char **data)
{
    int rc = 0;

    pthread_mutex_lock(&s->mu);
    s->calls++;
    s->held++;
    while (s->slow) {
        pthread_cond_wait(&s->cv, &s->mu);
    }
    s->held--;
    if (s->unavailable) {
        rc = SERVICE_UNAVAILABLE;
    }
    pthread_mutex_unlock(&s->mu);
    *data = "live data";
    return rc;
}

static int
process_data(pf_ctx_t *ctx, const char *data)
{
    char processed[64];

    snprintf(processed, sizeof(processed), "processed(%s)", data);
    return pf_ctx_set_string(ctx, "result", processed);
}

static const char *
get_cached_data(void)
{
    return "processed(cached data)";
}

/* ---- the agent -------------------------------------------------------------
 */

/* @state resilient_processing: runs inside the bulkhead, with a permit of
 * the breaker. */
static int
resilient_processing(pf_ctx_t *ctx, void *arg)
{
    const char *external_data;
    int rc = fetch_external_data(arg, &external_data);

    if (rc != 0) {
        return rc; /* counted by the breaker */
    }
    return process_data(ctx, external_data);
}

/* except CircuitBreakerOpenError: ctx.result = await get_cached_data() */
static int
use_cached_data(pf_ctx_t *ctx, void *arg, int reason)
{
    (void)arg;
    (void)reason; /* PF_EOPEN */
    return pf_ctx_set_string(ctx, "result", get_cached_data());
}

static atomic_int g_retries; /* retries announced by the runtime */

static void
on_agent_event(const pf_agent_event_t *ev, void *arg)
{
    (void)arg;
    switch (ev->kind) {
    case PF_AGENT_EVENT_REJECTED:
        printf("   [agent] %s refused: %s\n", ev->state,
               pf_strerror(ev->error));
        break;
    case PF_AGENT_EVENT_RETRY:
        printf("   [agent] %s queued for retry in %.0f s\n", ev->state,
               ev->delay);
        atomic_fetch_add(&g_retries, 1);
        break;
    case PF_AGENT_EVENT_FALLBACK:
        printf("   [agent] %s: cached data used\n", ev->state);
        break;
    case PF_AGENT_EVENT_DEAD_LETTER:
        printf("   [agent] %s failed: %s (dead letter)\n", ev->state,
               error_name(ev->error));
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
    printf("   [breaker] %s: %s -> %s\n", pf_breaker_name(b),
           pf_breaker_state_name(from), pf_breaker_state_name(to));
}

static void
on_bulkhead_event(const pf_bulkhead_event_t *ev, void *arg)
{
    (void)arg;
    if (ev->kind == PF_BULKHEAD_REJECTED_TIMEOUT) {
        printf("   [bulkhead] %s: a queued request found no room in time\n",
               ev->name);
    }
}

static int
highly_resilient_agent_new(pf_executor_t *ex, pf_leak_detector_t *leaks,
                           external_service_t *service, pf_agent_t **out)
{
    static const int expected_exception[] = {SERVICE_UNAVAILABLE};
    static const int bulkhead_full[] = {PF_EFULL};
    pf_backoff_t backoff;
    pf_breaker_config_t breaker_cfg;
    pf_bulkhead_config_t bulkhead_cfg;
    pf_agent_config_t cfg;
    pf_retry_policy_t queue_for_retry;
    pf_state_opts_t o;
    int rc;

    pf_agent_config_init(&cfg);
    cfg.name = "HighlyResilientAgent";
    cfg.executor = ex;
    cfg.leak_detector = leaks;
    cfg.listener = on_agent_event;
    rc = pf_agent_new_ex(&cfg, out);
    if (rc != 0) {
        return rc;
    }
    pf_state_opts_init(&o);
    o.own_breaker = true;
    pf_breaker_config_init(&breaker_cfg);
    breaker_cfg.name = "external_service";
    breaker_cfg.failure_threshold = 5;
    breaker_cfg.recovery_timeout = 30.0;
    breaker_cfg.expected_errors = expected_exception;
    breaker_cfg.expected_errors_len = 1;
    breaker_cfg.listener = on_breaker_change;
    o.breaker_config = &breaker_cfg;
    o.own_bulkhead = true;
    pf_bulkhead_config_init(&bulkhead_cfg);
    bulkhead_cfg.name = "processing";
    bulkhead_cfg.max_concurrent_calls = 10;
    bulkhead_cfg.max_wait_duration = 15.0;
    bulkhead_cfg.listener = on_bulkhead_event;
    o.bulkhead_config = &bulkhead_cfg;
    o.fallback = use_cached_data;
    /* except BulkheadFullError: queue for retry, 5 s later (then 10 s,
     * 20 s). Nothing else is retried. */
    pf_retry_policy_init(&queue_for_retry);
    queue_for_retry.max_retries = 3;
    pf_backoff_init(&backoff);
    backoff.initial_delay = 5.0;
    backoff.jitter = PF_JITTER_NONE;
    queue_for_retry.backoff = &backoff;
    queue_for_retry.retry_on = bulkhead_full;
    queue_for_retry.retry_on_len = 1;
    o.retry = &queue_for_retry;
    return pf_agent_add_state(*out, "resilient_processing",
                              resilient_processing, service, &o);
}

/* ---- the walk-through
 * -------------------------------------------------------- */

static int failures;

static void
check(int ok, const char *what)
{
    printf("%s %s\n", ok ? "ok  " : "FAIL", what);
    if (!ok) {
        failures++;
    }
}

typedef struct request {
    pf_ctx_t *ctx;
    pf_run_t *run;
} request_t;

static int
request_start(pf_agent_t *agent, request_t *r)
{
    int rc = pf_ctx_new(&r->ctx);

    if (rc == 0) {
        rc = pf_agent_start(agent, r->ctx, NULL, &r->run);
    }
    return rc;
}

/* Wait for the request; its result, ctx.result in result (cap bytes), and
 * its state's result in sr (may be NULL). */
static int
request_finish(request_t *r, char *result, size_t cap, pf_state_result_t *sr)
{
    pf_run_result_t res;
    int rc = pf_run_wait(r->run, NULL, &res);

    result[0] = '\0';
    pf_ctx_get_string(r->ctx, "result", result, cap, NULL);
    if (sr != NULL) {
        pf_run_result_find(&res, "resilient_processing", sr);
    }
    pf_run_result_free(&res);
    pf_run_free(r->run);
    pf_ctx_free(r->ctx);
    return rc;
}

static int
request(pf_agent_t *agent, char *result, size_t cap)
{
    request_t r;
    int rc = request_start(agent, &r);

    return rc != 0 ? rc : request_finish(&r, result, cap, NULL);
}

/* True when the executor's timer thread waits for a timer on the clock. */
static bool
timer_parked(pf_executor_t *ex, const pf_clock_t *clock)
{
    pf_executor_metrics_t m;

    pf_executor_metrics(ex, &m);
    return m.timers_armed == 1 && pf_clock_manual_waiters(clock) > 0;
}

static int
held_calls(external_service_t *s)
{
    int n;

    pthread_mutex_lock(&s->mu);
    n = s->held;
    pthread_mutex_unlock(&s->mu);
    return n;
}

static void
set_service(external_service_t *s, bool slow, bool unavailable)
{
    pthread_mutex_lock(&s->mu);
    s->slow = slow;
    s->unavailable = unavailable;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

int
main(void)
{
    external_service_t service;
    pf_executor_config_t ecfg;
    pf_leak_config_t lcfg;
    pf_clock_t *clock;
    pf_executor_t *ex = NULL;
    pf_leak_detector_t *leak_detector = NULL;
    pf_agent_t *agent = NULL;
    pf_bulkhead_t *bulkhead;
    pf_breaker_t *breaker;
    pf_bulkhead_metrics_t bm;
    pf_leak_report_t rep;
    pf_leak_metrics_t lm;
    pf_state_result_t sr;
    request_t slow[SLOW_REQUESTS];
    request_t late;
    char result[64];
    int calls;
    int ok;
    int rc;

    memset(&service, 0, sizeof(service));
    pthread_mutex_init(&service.mu, NULL);
    pthread_cond_init(&service.cv, NULL);
    if (pf_clock_manual_new(&clock) != 0) {
        return 1;
    }
    /* Ten slow requests hold ten workers; a few more keep the rest going. */
    pf_executor_config_init(&ecfg);
    ecfg.clock = clock;
    ecfg.workers = SLOW_REQUESTS + 2;
    /* ResourceLeakDetector(): the defaults, on the real clock. */
    pf_leak_config_init(&lcfg);
    lcfg.name = "HighlyResilientAgent";
    if (pf_executor_new(&ecfg, &ex) != 0 ||
        pf_leak_detector_new(&lcfg, &leak_detector) != 0 ||
        highly_resilient_agent_new(ex, leak_detector, &service, &agent) != 0) {
        fprintf(stderr, "setup failed\n");
        return 1;
    }
    check(pf_leak_detector_start_monitoring(leak_detector) == 0,
          "leak monitoring started");
    bulkhead = pf_agent_state_bulkhead(agent, "resilient_processing");
    breaker = pf_agent_state_breaker(agent, "resilient_processing");

    printf("1. a request\n");
    rc = request(agent, result, sizeof(result));
    check(rc == 0 && strcmp(result, "processed(live data)") == 0,
          "fetched, processed: ctx.result");

    printf("2. the service is slow: ten requests fill the bulkhead\n");
    set_service(&service, true, false);
    for (int i = 0; i < SLOW_REQUESTS; i++) {
        if (request_start(agent, &slow[i]) != 0) {
            return 1;
        }
    }
    while (held_calls(&service) != SLOW_REQUESTS) {
        sched_yield();
    }
    printf("   an eleventh request arrives\n");
    if (request_start(agent, &late) != 0) {
        return 1;
    }
    do {
        sched_yield();
        pf_bulkhead_metrics(bulkhead, &bm);
    } while (bm.waiting != 1 || !timer_parked(ex, clock));
    check(bm.in_use == 10, "it waits in the bulkhead's queue (10 inside)");
    printf("   15 s pass\n");
    pf_clock_manual_advance(clock, 15 * PF_NS_PER_SEC);
    while (atomic_load(&g_retries) != 1 || !timer_parked(ex, clock)) {
        sched_yield();
    }
    pf_bulkhead_metrics(bulkhead, &bm);
    check(bm.rejected_timeout == 1 && bm.waiting == 0,
          "no room within 15 s (BulkheadFullError): queued for retry");
    printf("   the service answers the slow requests\n");
    set_service(&service, false, false);
    ok = 0;
    for (int i = 0; i < SLOW_REQUESTS; i++) {
        ok += request_finish(&slow[i], result, sizeof(result), NULL) == 0 &&
              strcmp(result, "processed(live data)") == 0;
    }
    check(ok == SLOW_REQUESTS, "the ten slow requests complete");
    printf("   5 s pass\n");
    pf_clock_manual_advance(clock, 5 * PF_NS_PER_SEC);
    rc = request_finish(&late, result, sizeof(result), &sr);
    check(rc == 0 && strcmp(result, "processed(live data)") == 0 &&
              sr.attempts == 1 && sr.error == 0,
          "the retry finds room: the eleventh request is processed");

    printf("3. the service becomes unavailable\n");
    set_service(&service, false, true);
    for (int i = 0; i < 5; i++) {
        rc = request(agent, result, sizeof(result));
    }
    check(rc == SERVICE_UNAVAILABLE &&
              pf_breaker_state(breaker) == PF_BREAKER_OPEN,
          "five ServiceUnavailableErrors (not retried) open the breaker");

    printf("4. requests while the breaker is open\n");
    pthread_mutex_lock(&service.mu);
    calls = service.calls;
    pthread_mutex_unlock(&service.mu);
    for (int i = 0; i < 2; i++) {
        rc = request(agent, result, sizeof(result));
    }
    pthread_mutex_lock(&service.mu);
    calls = service.calls - calls;
    pthread_mutex_unlock(&service.mu);
    check(rc == 0 && strcmp(result, "processed(cached data)") == 0 &&
              calls == 0,
          "cached data answers; the service is not called");

    printf("5. 30 s later the service is back\n");
    set_service(&service, false, false);
    pf_clock_manual_advance(clock, 30 * PF_NS_PER_SEC);
    for (int i = 0; i < 3; i++) {
        rc = request(agent, result, sizeof(result));
    }
    check(rc == 0 && strcmp(result, "processed(live data)") == 0 &&
              pf_breaker_state(breaker) == PF_BREAKER_CLOSED,
          "three good trials close the breaker");

    printf("6. cleanup\n");
    check(pf_leak_detector_stop_monitoring(leak_detector) == 0,
          "leak monitoring stopped");
    pf_leak_detector_check(leak_detector, &rep);
    pf_leak_detector_metrics(leak_detector, &lm);
    printf("   leak detector: %llu attempts tracked, %llu held now, "
           "%zu leaks\n",
           (unsigned long long)lm.allocations,
           (unsigned long long)lm.total_allocations, rep.leaks_len);
    check(lm.allocations == 20 && lm.total_allocations == 0 &&
              rep.leaks_len == 0,
          "every attempt's resources were tracked and given back");
    pf_leak_report_free(&rep);

    pf_agent_free(agent);
    pf_executor_free(ex);
    pf_leak_detector_free(leak_detector);
    pf_clock_free(clock);
    pthread_cond_destroy(&service.cv);
    pthread_mutex_destroy(&service.mu);
    if (failures != 0) {
        printf("%d check(s) failed\n", failures);
        return 1;
    }
    printf("all checks passed\n");
    return 0;
}
