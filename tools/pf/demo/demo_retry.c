/* pf demo, scene "retry": the reference's RetryableAgent.
 *
 * Agent "retryable" runs two states in a row. fetch_stock calls
 * inventory-db through the breaker inventory-db (3 failures in a row open
 * it) and retries a failed call up to 3 times, waiting 1 s, 2 s, then 4 s
 * (exponential backoff; jitter is off so the delays read round). When the
 * breaker is open it does not retry at all: its fallback answers from the
 * cache. record_audit then writes to audit-log, retrying once after 1 s;
 * it has no fallback, so when both attempts fail it becomes a dead letter.
 *
 *   run 1 at 0 s   a transient error: one retry, then success
 *   run 2 at 10 s  inventory-db is down: attempts at 10, 11 and 13 s fail,
 *                  the third opens the breaker; the retry planned for 17 s
 *                  is refused by the open breaker, the fallback answers;
 *                  audit-log is down too: record_audit is a dead letter
 *   run 3 at 20 s  the breaker is still open: no call, no retry
 *
 * A retry delay is a timer on the executor, so the scene moves the clock
 * to each retry as the listener announces it (demo_run_driven). */
#include "demo.h"

typedef struct retry_scene {
    demo_t *demo;
    demo_dep_t inventory;
    demo_dep_t audit;
} retry_scene_t;

static int
fetch_stock(pf_ctx_t *ctx, void *arg)
{
    retry_scene_t *s = arg;
    int rc = demo_dep_call(s->demo, &s->inventory);

    if (rc == 0) {
        rc = pf_ctx_set_string(ctx, "stock", "live");
    }
    return rc != 0 ? rc : pf_ctx_goto(ctx, "record_audit");
}

/* The breaker is open (reason PF_EOPEN): answer from the cache and go on. */
static int
stock_from_cache(pf_ctx_t *ctx, void *arg, int reason)
{
    int rc = pf_ctx_set_string(ctx, "stock", "cached");

    (void)arg;
    (void)reason;
    return rc != 0 ? rc : pf_ctx_goto(ctx, "record_audit");
}

static int
record_audit(pf_ctx_t *ctx, void *arg)
{
    retry_scene_t *s = arg;

    (void)ctx;
    return demo_dep_call(s->demo, &s->audit);
}

static int
make_agent(retry_scene_t *s, pf_agent_t **out)
{
    pf_breaker_config_t bcfg;
    pf_backoff_t backoff;
    pf_state_opts_t o;
    pf_breaker_t *b;
    int rc;

    pf_breaker_config_init(&bcfg);
    bcfg.name = "inventory-db";
    bcfg.failure_threshold = 3;
    bcfg.recovery_timeout = 30.0;
    rc = demo_breaker(s->demo, &bcfg, &b);
    if (rc != 0) {
        return rc;
    }
    rc = demo_agent(s->demo, "retryable", PF_EXEC_SEQUENTIAL, NULL, out);
    if (rc != 0) {
        return rc;
    }
    pf_backoff_init(&backoff);
    backoff.initial_delay = 1.0;
    backoff.multiplier = 2.0;
    backoff.jitter = PF_JITTER_NONE;
    pf_state_opts_init(&o);
    o.breaker = b;
    o.fallback = stock_from_cache;
    o.max_retries = 3;
    o.backoff = &backoff;
    rc = pf_agent_add_state(*out, "fetch_stock", fetch_stock, s, &o);
    if (rc == 0) {
        pf_state_opts_init(&o);
        o.max_retries = 1;
        o.backoff = &backoff;
        rc = pf_agent_add_state(*out, "record_audit", record_audit, s, &o);
    }
    if (rc != 0) {
        pf_agent_free(*out);
    }
    return rc;
}

/* One run at scene time t, driven through its retries; its result is
 * kept in *res. */
static void
run_at(retry_scene_t *s, pf_agent_t *a, double t, pf_run_result_t *res)
{
    int rc;

    demo_advance_to(s->demo, t);
    rc = demo_run_driven(s->demo, a, NULL, res);
    demo_expect(s->demo, rc == 0 || rc == PF_ESTATE, "a run to start (%s)",
                pf_strerror(rc));
}

static void
check_and_summarise(retry_scene_t *s, pf_agent_t *a, const pf_run_result_t *r2)
{
    demo_t *d = s->demo;
    pf_agent_metrics_t am;
    pf_dead_letter_t dl = {0};
    pf_breaker_metrics_t m;

    pf_agent_metrics(a, &am);
    pf_breaker_metrics(pf_agent_state_breaker(a, "fetch_stock"), &m);
    demo_blank(d);
    demo_note(d,
              "agent retryable: runs 3, retries %llu, fallbacks %llu, "
              "dead letters %llu; inventory-db: calls %u, rejected %llu",
              (unsigned long long)am.retries, (unsigned long long)am.fallbacks,
              (unsigned long long)am.dead_letters,
              atomic_load(&s->inventory.calls), (unsigned long long)m.rejected);
    if (pf_run_result_dead_letter(r2, 0, &dl) == 0) {
        demo_note(d,
                  "run 2's dead letter: state %s of agent %s, %s, attempts "
                  "%u%s",
                  dl.state, dl.agent, demo_strerror(dl.error), dl.attempts,
                  dl.timed_out ? " (timed out)" : "");
    }
    demo_expect(d,
                demo_retry_delay(d, 1) == 1.0 &&
                    demo_retry_delay(d, 2) == 2.0 &&
                    demo_retry_delay(d, 3) == 4.0,
                "run 2's retries to wait 1 s, 2 s, then 4 s");
    demo_expect(d, demo_count(d, DEMO_OPENED) == 1,
                "inventory-db's breaker to open on the third failure");
    demo_expect(d, atomic_load(&s->inventory.calls) == 5 && m.rejected == 2,
                "the retry after the breaker opened, and run 3, to reach no "
                "call");
    demo_expect(d, demo_count(d, DEMO_FALLBACKS) == 2,
                "the fallback to answer twice while the breaker is open");
    demo_expect(d, r2->dead_letters == 1 && dl.attempts == 2,
                "record_audit to become a dead letter after 2 attempts");
}

int
demo_scene_retry(demo_t *d)
{
    retry_scene_t *s = demo_alloc(d, sizeof(*s));
    pf_run_result_t res[3] = {{0}};
    pf_agent_t *a;
    int rc;

    if (s == NULL) {
        return PF_ENOMEM;
    }
    s->demo = d;
    s->inventory.name = "inventory-db";
    s->inventory.down_from = 10.0;
    s->inventory.down_until = 60.0;
    s->inventory.error = DEMO_ECONNREFUSED;
    atomic_init(&s->inventory.glitches, 1);
    s->audit.name = "audit-log";
    s->audit.down_from = 15.0;
    s->audit.down_until = 19.0;
    s->audit.error = DEMO_EUNAVAILABLE;
    rc = make_agent(s, &a);
    if (rc != 0) {
        return rc;
    }
    demo_note(d, "Agent retryable: fetch_stock calls inventory-db through "
                 "breaker inventory-db (3 failures");
    demo_note(d, "open it) and retries up to 3 times after 1 s, 2 s, 4 s; an "
                 "open breaker is not retried:");
    demo_note(d, "the fallback answers. Then record_audit writes to "
                 "audit-log, retried once after 1 s.");
    demo_note(d, "Runs at 0 s (a transient error), 10 s (inventory-db and "
                 "audit-log down) and 20 s.");
    demo_blank(d);
    run_at(s, a, 0.0, &res[0]);
    run_at(s, a, 10.0, &res[1]);
    run_at(s, a, 20.0, &res[2]);
    if (demo_verdict(d) == 0) {
        check_and_summarise(s, a, &res[1]);
    }
    for (int i = 0; i < 3; i++) {
        pf_run_result_free(&res[i]);
    }
    pf_agent_free(a);
    return demo_verdict(d);
}
