/* The reference's TimeoutAwareAgent (REFERENCE.md, "Timeout and Deadline
 * Management"):
 *
 *   class TimeoutAwareAgent(Agent):
 *       def __init__(self):
 *           self.timeout_manager = TimeoutManager()
 *
 *       @state
 *       async def time_bounded_operation(self, ctx: Context) -> None:
 *           try:
 *               async with self.timeout_manager.timeout(30):  # 30 s max
 *                   ctx.result = await long_running_operation()
 *           except asyncio.TimeoutError:
 *               ctx.result = await get_partial_result()
 *               ctx.timeout_occurred = True
 *
 *       @state
 *       async def deadline_aware_processing(self, ctx: Context) -> None:
 *           deadline = ctx.get('deadline')
 *           if deadline:
 *               remaining_time = (deadline - datetime.utcnow()).total_seconds()
 *               if remaining_time <= 0:
 *                   raise DeadlineExceededError("Processing deadline exceeded")
 *               if remaining_time < 10:
 *                   ctx.result = await quick_processing(ctx.input_data)
 *               else:
 *                   ctx.result = await full_processing(ctx.input_data)
 *
 * In C, a timeout scope (pf_timeout_enter) bounds the operation, which polls
 * it between units of work; running past it gives the partial result and
 * ctx.timeout_occurred. The deadline handed down with the work is the ctx
 * variable "deadline" (nanoseconds on the agent's clock); entering a scope
 * at it refuses with PF_EDEADLINE (DeadlineExceededError) once it has
 * passed, and otherwise says how much time remains. The second state writes
 * ctx.processing_result, so that a run shows both results.
 *
 * The second state depends on the first, so their simulated work takes
 * turns: each unit of work moves a manual clock by one second, and the
 * agent's executor and timeout manager run on that clock, so the example
 * takes no real time. Exits 0 only if every promise held. */
#include <stdio.h>
#include <string.h>

#include "puffinflow/agent.h"
#include "puffinflow/timeout.h"

typedef struct timeout_aware_agent {
    pf_timeout_manager_t *timeout_manager;
    pf_clock_t *clock;
} timeout_aware_agent_t;

/* Work of `seconds`, one second at a time, stopping as soon as the
 * innermost timeout scope says so. *done counts the seconds done. */
static int
simulated_work(timeout_aware_agent_t *a, int64_t seconds, int64_t *done)
{
    for (int64_t i = 0; i < seconds; i++) {
        int rc = pf_timeout_check(a->timeout_manager);

        if (rc != 0) {
            return rc;
        }
        pf_clock_manual_advance(a->clock, PF_NS_PER_SEC);
        (*done)++;
    }
    return 0;
}

/* @state time_bounded_operation: ctx.work_seconds says how long the
 * operation would take. */
static int
time_bounded_operation(pf_ctx_t *ctx, void *arg)
{
    timeout_aware_agent_t *a = arg;
    pf_timeout_scope_t scope;
    int64_t work = 0;
    int64_t done = 0;
    int rc;
    int left;

    pf_ctx_get_int(ctx, "work_seconds", &work);
    rc = pf_timeout_enter(a->timeout_manager, &scope, 30.0); /* 30 s max */
    if (rc != 0) {
        return rc;
    }
    rc = simulated_work(a, work, &done); /* long_running_operation() */
    left = pf_timeout_leave(a->timeout_manager, &scope);
    printf("   time_bounded_operation: %lld s of %lld s done\n",
           (long long)done, (long long)work);
    if (rc == PF_ETIMEDOUT || left == PF_ETIMEDOUT) {
        /* except asyncio.TimeoutError: */
        rc = pf_ctx_set_string(ctx, "result", "partial");
        return rc != 0 ? rc : pf_ctx_set_int(ctx, "timeout_occurred", 1);
    }
    return rc != 0 ? rc : pf_ctx_set_string(ctx, "result", "complete");
}

/* @state deadline_aware_processing */
static int
deadline_aware_processing(pf_ctx_t *ctx, void *arg)
{
    timeout_aware_agent_t *a = arg;
    pf_timeout_scope_t scope;
    pf_deadline_t deadline;
    int64_t at_ns;
    int64_t done = 0;
    double remaining_time;
    const char *kind;
    int rc;

    if (pf_ctx_get_int(ctx, "deadline", &at_ns) != 0) {
        printf("   deadline_aware_processing: no deadline, nothing to do\n");
        return 0;
    }
    deadline = pf_deadline_at_ns(a->clock, at_ns);
    rc = pf_timeout_enter_deadline(a->timeout_manager, &scope, &deadline);
    if (rc != 0) {
        printf("   deadline_aware_processing: %s\n", pf_strerror(rc));
        return rc; /* PF_EDEADLINE: "Processing deadline exceeded" */
    }
    remaining_time = pf_timeout_remaining(a->timeout_manager);
    if (remaining_time < 10.0) {
        kind = "quick"; /* quick_processing(ctx.input_data): 2 s */
        rc = simulated_work(a, 2, &done);
    } else {
        kind = "full"; /* full_processing(ctx.input_data): 20 s */
        rc = simulated_work(a, 20, &done);
    }
    printf("   deadline_aware_processing: %.0f s left: %s processing\n",
           remaining_time, kind);
    pf_timeout_leave(a->timeout_manager, &scope);
    return rc != 0 ? rc : pf_ctx_set_string(ctx, "processing_result", kind);
}

static void
on_timeout_event(const pf_timeout_event_t *ev, void *arg)
{
    (void)arg;
    if (ev->kind == PF_TIMEOUT_EVENT_EXPIRED) {
        printf("   [timeout] a %.0f s scope ran out\n", ev->seconds);
    } else {
        printf("   [timeout] deadline already passed\n");
    }
}

static void
on_agent_event(const pf_agent_event_t *ev, void *arg)
{
    (void)arg;
    if (ev->kind == PF_AGENT_EVENT_DEAD_LETTER) {
        printf("   [agent] %s failed: %s (dead letter)\n", ev->state,
               pf_error_name(ev->error));
    }
}

static int
timeout_aware_agent_new(pf_executor_t *ex, timeout_aware_agent_t *a,
                        pf_agent_t **out)
{
    static const char *const after_first[] = {"time_bounded_operation"};
    pf_timeout_config_t tcfg;
    pf_agent_config_t cfg;
    pf_state_opts_t o;
    int rc;

    pf_timeout_config_init(&tcfg);
    tcfg.name = "TimeoutAwareAgent";
    tcfg.listener = on_timeout_event;
    tcfg.clock = a->clock;
    rc = pf_timeout_manager_new(&tcfg, &a->timeout_manager);
    if (rc != 0) {
        return rc;
    }
    pf_agent_config_init(&cfg);
    cfg.name = "TimeoutAwareAgent";
    cfg.executor = ex;
    cfg.listener = on_agent_event;
    rc = pf_agent_new_ex(&cfg, out);
    if (rc == 0) {
        rc = pf_agent_add_state(*out, "time_bounded_operation",
                                time_bounded_operation, a, NULL);
    }
    if (rc == 0) {
        pf_state_opts_init(&o);
        o.depends_on = after_first;
        o.depends_on_len = 1;
        rc = pf_agent_add_state(*out, "deadline_aware_processing",
                                deadline_aware_processing, a, &o);
    }
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
    char result[16];            /* ctx.result */
    int64_t timeout_occurred;   /* ctx.timeout_occurred */
    char processing_result[16]; /* ctx.processing_result */
    double took;                /* simulated seconds */
} outcome_t;

/* One run: work_seconds of work, with a deadline that many seconds from
 * the start (< 0: none). */
static outcome_t
request(pf_agent_t *agent, pf_clock_t *clock, int64_t work_seconds,
        int64_t deadline_in)
{
    outcome_t o;
    pf_ctx_t *ctx;
    double t0 = pf_clock_now(clock);

    memset(&o, 0, sizeof(o));
    o.rc = pf_ctx_new(&ctx);
    if (o.rc != 0) {
        return o;
    }
    pf_ctx_set_int(ctx, "work_seconds", work_seconds);
    if (deadline_in >= 0) {
        pf_ctx_set_int(ctx, "deadline",
                       pf_clock_now_ns(clock) + deadline_in * PF_NS_PER_SEC);
    }
    o.rc = pf_agent_run(agent, ctx, NULL);
    pf_ctx_get_string(ctx, "result", o.result, sizeof(o.result), NULL);
    pf_ctx_get_int(ctx, "timeout_occurred", &o.timeout_occurred);
    pf_ctx_get_string(ctx, "processing_result", o.processing_result,
                      sizeof(o.processing_result), NULL);
    pf_ctx_free(ctx);
    o.took = pf_clock_now(clock) - t0;
    return o;
}

int
main(void)
{
    timeout_aware_agent_t a;
    pf_executor_config_t ecfg;
    pf_executor_t *ex = NULL;
    pf_agent_t *agent = NULL;
    pf_timeout_metrics_t m;
    outcome_t o;

    if (pf_clock_manual_new(&a.clock) != 0) {
        return 1;
    }
    pf_executor_config_init(&ecfg);
    ecfg.clock = a.clock;
    ecfg.workers = 1;
    if (pf_executor_new(&ecfg, &ex) != 0 ||
        timeout_aware_agent_new(ex, &a, &agent) != 0) {
        fprintf(stderr, "setup failed\n");
        return 1;
    }

    printf("1. 10 s of work, deadline in 60 s\n");
    o = request(agent, a.clock, 10, 60);
    check(o.rc == 0 && strcmp(o.result, "complete") == 0 &&
              o.timeout_occurred == 0,
          "the operation completes within its 30 s");
    check(strcmp(o.processing_result, "full") == 0 && o.took == 30.0,
          "50 s remain: full processing");

    printf("2. 45 s of work, deadline in 35 s\n");
    o = request(agent, a.clock, 45, 35);
    check(o.rc == 0 && strcmp(o.result, "partial") == 0 &&
              o.timeout_occurred == 1,
          "stopped at 30 s: partial result, timeout_occurred");
    check(strcmp(o.processing_result, "quick") == 0 && o.took == 32.0,
          "5 s remain: quick processing");

    printf("3. 5 s of work, deadline in 3 s\n");
    o = request(agent, a.clock, 5, 3);
    check(o.rc == PF_EDEADLINE && strcmp(o.result, "complete") == 0 &&
              o.processing_result[0] == '\0',
          "the deadline has passed: PF_EDEADLINE, nothing processed");

    printf("4. 10 s of work, no deadline\n");
    o = request(agent, a.clock, 10, -1);
    check(o.rc == 0 && strcmp(o.result, "complete") == 0 &&
              o.processing_result[0] == '\0',
          "no deadline: the second state has nothing to do");

    pf_timeout_manager_metrics(a.timeout_manager, &m);
    printf("timeout manager: %llu scopes, %llu timed out, %llu refused at a "
           "passed deadline\n",
           (unsigned long long)m.entered, (unsigned long long)m.timed_out,
           (unsigned long long)m.deadline_exceeded);
    check(m.entered == 6 && m.timed_out == 1 && m.deadline_exceeded == 1 &&
              m.active == 0,
          "the manager counted each scope");

    pf_agent_free(agent);
    pf_executor_free(ex);
    pf_timeout_manager_free(a.timeout_manager);
    pf_clock_free(a.clock);
    if (failures != 0) {
        printf("%d check(s) failed\n", failures);
        return 1;
    }
    printf("all checks passed\n");
    return 0;
}
