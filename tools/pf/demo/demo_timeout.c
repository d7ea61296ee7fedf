/* pf demo, scene "timeout": the reference's TimeoutAwareAgent.
 *
 * Agent "timeout_aware" runs three states in a row, under a deadline for
 * the whole run:
 *   - fetch_report: each attempt may take 5 s (the state option timeout);
 *     report-service hangs the first time, so the attempt's token fires at
 *     5 s, the attempt counts as timed out and is retried after 1 s;
 *   - time_bounded_operation: a 3 s scope of the timeout manager around a
 *     search that takes 4 s; the search watches the scope's token, stops
 *     at 3 s, and the state goes on with a partial result;
 *   - deadline_aware_processing: looks at the time left before the run's
 *     deadline and picks quick processing when it is under 10 s.
 * Run 1 has 20 s and makes it in 12 s. Run 2 has 5.5 s: its deadline
 * passes while fetch_report waits for its retry, and the run ends there.
 *
 * The states wait on the clock (demo_sleep on their tokens), so the scene
 * moves the clock from one wait's end to the next. */
#include <stdio.h>

#include "demo.h"

typedef struct timeout_scene {
    demo_t *demo;
    pf_timeout_manager_t *tm;
    atomic_uint report_calls;
} timeout_scene_t;

static int
fetch_report(pf_ctx_t *ctx, void *arg)
{
    timeout_scene_t *s = arg;
    unsigned n = atomic_fetch_add(&s->report_calls, 1) + 1;
    double takes = n % 2 == 1 ? 8.0 : 2.0; /* each run: hang, then answer */
    int rc;

    demo_say(s->demo, "report-service", "request %u: the answer takes %g s", n,
             takes);
    rc = demo_sleep(s->demo, pf_ctx_token(ctx), takes);
    if (rc != 0) {
        return rc; /* the attempt's time is up: the runtime says so */
    }
    demo_say(s->demo, "fetch_report", "got the report");
    return pf_ctx_set_string(ctx, "report", "full");
}

static int
time_bounded_operation(pf_ctx_t *ctx, void *arg)
{
    timeout_scene_t *s = arg;
    pf_timeout_scope_t scope;
    int rc = pf_timeout_enter(s->tm, &scope, 3.0);

    if (rc != 0) {
        return rc;
    }
    demo_say(s->demo, "search-index", "query: the answer takes 4 s");
    demo_sleep(s->demo, pf_timeout_token(s->tm), 4.0);
    rc = pf_timeout_leave(s->tm, &scope);
    if (rc == PF_ETIMEDOUT) {
        demo_say(s->demo, "time_bounded_operation",
                 "goes on with a partial result (timeout_occurred = 1)");
        rc = pf_ctx_set_int(ctx, "timeout_occurred", 1);
    }
    return rc;
}

static int
deadline_aware_processing(pf_ctx_t *ctx, void *arg)
{
    timeout_scene_t *s = arg;
    pf_deadline_t deadline = pf_ctx_deadline(ctx);
    double left = pf_deadline_remaining(&deadline);
    bool quick = left < 10.0;
    int rc;

    if (left <= 0.0) {
        return PF_EDEADLINE;
    }
    demo_say(s->demo, "deadline_aware_processing",
             "%.1f s left before the run's deadline: %s processing (%g s)",
             left, quick ? "quick" : "full", quick ? 1.0 : 5.0);
    rc = demo_sleep(s->demo, pf_ctx_token(ctx), quick ? 1.0 : 5.0);
    if (rc == 0 && quick) {
        demo_bump(s->demo, DEMO_MARK_A);
    }
    return rc;
}

static void
timeout_listener(const pf_timeout_event_t *ev, void *arg)
{
    timeout_scene_t *s = arg;
    char who[64];

    snprintf(who, sizeof(who), "timeouts %s", ev->manager_name);
    if (ev->kind == PF_TIMEOUT_EVENT_EXPIRED) {
        demo_say(s->demo, who, "a %g s scope expired (%.3f s over)",
                 ev->seconds, ev->overrun);
    } else {
        demo_say(s->demo, who, "a scope refused: its deadline had passed");
    }
    demo_bump(s->demo, DEMO_MARK_B);
}

static int
make_agent(timeout_scene_t *s, pf_agent_t **out)
{
    pf_timeout_config_t tcfg;
    pf_backoff_t backoff;
    pf_state_opts_t o;
    int rc;

    pf_timeout_config_init(&tcfg);
    tcfg.name = "bounded-ops";
    tcfg.listener = timeout_listener;
    tcfg.listener_arg = s;
    tcfg.clock = demo_clock(s->demo);
    rc = pf_timeout_manager_new(&tcfg, &s->tm);
    if (rc != 0) {
        return rc;
    }
    rc = demo_agent(s->demo, "timeout_aware", PF_EXEC_SEQUENTIAL, NULL, out);
    if (rc != 0) {
        return rc;
    }
    pf_backoff_init(&backoff);
    backoff.initial_delay = 1.0;
    backoff.jitter = PF_JITTER_NONE;
    pf_state_opts_init(&o);
    o.timeout = 5.0;
    o.max_retries = 1;
    o.backoff = &backoff;
    rc = pf_agent_add_state(*out, "fetch_report", fetch_report, s, &o);
    if (rc == 0) {
        const char *after_fetch[] = {"fetch_report"};

        pf_state_opts_init(&o);
        o.depends_on = after_fetch;
        o.depends_on_len = 1;
        rc = pf_agent_add_state(*out, "time_bounded_operation",
                                time_bounded_operation, s, &o);
    }
    if (rc == 0) {
        const char *after_search[] = {"time_bounded_operation"};

        pf_state_opts_init(&o);
        o.depends_on = after_search;
        o.depends_on_len = 1;
        rc = pf_agent_add_state(*out, "deadline_aware_processing",
                                deadline_aware_processing, s, &o);
    }
    if (rc != 0) {
        pf_agent_free(*out);
    }
    return rc;
}

/* Start a run with a deadline `seconds` away; a failure to start is a
 * failed step. */
static pf_run_t *
start(timeout_scene_t *s, pf_agent_t *a, pf_ctx_t *ctx, double seconds)
{
    pf_run_t *run = NULL;
    int rc = demo_start(s->demo, a, ctx, seconds, &run);

    demo_expect(s->demo, rc == 0, "a run to start (%s)", pf_strerror(rc));
    return rc == 0 ? run : NULL;
}

/* Run 1, 20 s: every wait ends in time or is cut short as narrated. */
static void
run_in_time(timeout_scene_t *s, pf_agent_t *a, pf_ctx_t *ctx,
            pf_run_result_t *res)
{
    demo_t *d = s->demo;
    pf_run_t *run = start(s, a, ctx, 20.0);

    if (run == NULL) {
        return;
    }
    demo_await_count(d, DEMO_PARKED, 1, "report-service's first request");
    demo_advance_to(d, 5.0);
    demo_await_count(d, DEMO_RETRIES, 1,
                     "fetch_report's attempt to time out at 5 s");
    demo_advance_to(d, 6.0);
    demo_await_count(d, DEMO_PARKED, 2, "fetch_report's retry at 6 s");
    demo_advance_to(d, 8.0);
    demo_await_count(d, DEMO_PARKED, 3, "the search, under its 3 s scope");
    demo_advance_to(d, 11.0);
    demo_await_count(d, DEMO_PARKED, 4, "processing picked by the deadline");
    demo_advance_to(d, 12.0);
    demo_finish(d, run, res);
    demo_say(d, "timeout_aware", "run 1 finished, %.1f s before its deadline",
             20.0 - res->duration);
}

/* Run 2, 5.5 s: the deadline comes during the wait for the retry. */
static void
run_out_of_time(timeout_scene_t *s, pf_agent_t *a, pf_run_result_t *res)
{
    demo_t *d = s->demo;
    pf_run_t *run;

    demo_advance_to(d, 30.0);
    demo_say(d, "timeout_aware", "run 2 starts, with 5.5 s to finish");
    run = start(s, a, NULL, 5.5);
    if (run == NULL) {
        return;
    }
    demo_await_count(d, DEMO_PARKED, 5, "report-service's request in run 2");
    demo_advance_to(d, 35.0);
    demo_await_count(d, DEMO_RETRIES, 2, "run 2's attempt to time out");
    demo_advance_to(d, 35.5);
    demo_finish(d, run, res);
    demo_say(d, "timeout_aware",
             "run 2 ended at its deadline (%s): fetch_report's retry and the "
             "%zu states after it were cancelled, never started",
             pf_error_name(res->status),
             res->cancelled > 0 ? res->cancelled - 1 : 0);
}

static void
check_and_summarise(timeout_scene_t *s, pf_agent_t *a, pf_ctx_t *ctx,
                    const pf_run_result_t *r1, const pf_run_result_t *r2)
{
    demo_t *d = s->demo;
    pf_timeout_metrics_t tm;
    pf_agent_metrics_t am;
    int64_t occurred = 0;

    pf_timeout_manager_metrics(s->tm, &tm);
    pf_agent_metrics(a, &am);
    pf_ctx_get_int(ctx, "timeout_occurred", &occurred);
    demo_blank(d);
    demo_note(d,
              "agent timeout_aware: attempts timed out %llu, retries %llu; "
              "timeout manager bounded-ops: scopes %llu, expired %llu",
              (unsigned long long)am.timeouts, (unsigned long long)am.retries,
              (unsigned long long)tm.entered, (unsigned long long)tm.timed_out);
    demo_expect(d,
                r1->status == 0 && r1->completed == 3 && r1->duration == 12.0,
                "run 1 to complete its 3 states in 12 s, within its deadline");
    demo_expect(d, demo_count(d, DEMO_TIMEOUTS) == 2,
                "each run's first attempt to time out at 5 s");
    demo_expect(d,
                tm.timed_out == 1 && occurred == 1 &&
                    demo_count(d, DEMO_MARK_B) == 1,
                "the search's 3 s scope to expire, with a partial result");
    demo_expect(d, demo_count(d, DEMO_MARK_A) == 1,
                "quick processing with 9 s left");
    demo_expect(d,
                r2->status == PF_ETIMEDOUT && r2->cancelled == 3 &&
                    r2->not_run + r2->skipped == 0 && r2->duration == 5.5,
                "run 2 to end at its 5.5 s deadline, fetch_report and the two "
                "states after it cancelled");
}

int
demo_scene_timeout(demo_t *d)
{
    timeout_scene_t *s = demo_alloc(d, sizeof(*s));
    pf_run_result_t r1 = {0};
    pf_run_result_t r2 = {0};
    pf_ctx_t *ctx = NULL;
    pf_agent_t *a;
    int rc;

    if (s == NULL) {
        return PF_ENOMEM;
    }
    s->demo = d;
    rc = make_agent(s, &a);
    if (rc == 0) {
        rc = pf_ctx_new(&ctx);
        if (rc != 0) {
            pf_agent_free(a);
        }
    }
    if (rc != 0) {
        pf_timeout_manager_free(s->tm);
        return rc;
    }
    demo_note(d, "Agent timeout_aware: fetch_report (each attempt 5 s at "
                 "most, one retry after 1 s),");
    demo_note(d, "then time_bounded_operation (a 3 s timeout-manager scope), "
                 "then deadline_aware_processing");
    demo_note(d, "(quick when under 10 s are left). Run 1 has 20 s, run 2 "
                 "5.5 s.");
    demo_blank(d);
    run_in_time(s, a, ctx, &r1);
    run_out_of_time(s, a, &r2);
    if (demo_verdict(d) == 0) {
        check_and_summarise(s, a, ctx, &r1, &r2);
    }
    pf_run_result_free(&r1);
    pf_run_result_free(&r2);
    pf_ctx_free(ctx);
    pf_agent_free(a);
    pf_timeout_manager_free(s->tm);
    return demo_verdict(d);
}
