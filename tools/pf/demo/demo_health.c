/* pf demo, scene "health": the reference's MonitoredAgent.
 *
 * Health checker "monitored" has three checks, as in the reference:
 * database (unhealthy while its ping fails), external_api (degraded while
 * it answers 503) and memory_usage. Agent "monitored" has one state,
 * monitored_processing, that runs every check first and refuses to work
 * (PF_EUNHEALTHY) unless the report is healthy; a degraded report still
 * serves. One run every 10 s; external_api answers 503 from 10 s to 35 s,
 * the database is down from 20 s to 30 s, so the overall status goes
 * healthy -> degraded -> unhealthy -> degraded -> healthy. The checker's
 * listener prints every change, of a check and of the overall status.
 *
 * Checks run on threads of their own; only one check changes per run, so
 * the events come in the same order every time. The runs are synchronous
 * (pf_agent_run on this thread). */
#include <stdio.h>

#include "demo.h"

#define RUNS 5

typedef struct health_scene {
    demo_t *demo;
    pf_health_checker_t *hc;
} health_scene_t;

static bool
between(health_scene_t *s, double from, double until)
{
    double now = demo_now(s->demo);

    return now >= from && now < until;
}

static int
check_database(pf_health_result_t *res, void *arg)
{
    if (between(arg, 20.0, 30.0)) {
        pf_health_result_set(res, PF_UNHEALTHY,
                             "database check failed: connection reset");
    } else {
        pf_health_result_set(res, PF_HEALTHY, "database connection is active");
    }
    return 0;
}

static int
check_external_api(pf_health_result_t *res, void *arg)
{
    int status = between(arg, 10.0, 35.0) ? 503 : 200;

    pf_health_result_set(res, status == 200 ? PF_HEALTHY : PF_DEGRADED,
                         "API status: %d", status);
    return 0;
}

static int
check_memory(pf_health_result_t *res, void *arg)
{
    (void)arg;
    pf_health_result_set(res, PF_HEALTHY, "memory usage: 62%%");
    return 0;
}

static void
health_listener(const pf_health_event_t *ev, void *arg)
{
    health_scene_t *s = arg;
    char who[64];

    if (ev->check != NULL) {
        snprintf(who, sizeof(who), "check %s", ev->check);
        demo_say(s->demo, who, "%s -> %s (%s)", pf_health_status_name(ev->from),
                 pf_health_status_name(ev->to), ev->message);
        demo_bump(s->demo, DEMO_MARK_B);
    } else {
        snprintf(who, sizeof(who), "health %s", ev->checker);
        demo_say(s->demo, who, "overall %s -> %s",
                 pf_health_status_name(ev->from),
                 pf_health_status_name(ev->to));
        demo_bump(s->demo, DEMO_MARK_C);
    }
}

/* The failed checks of r, "a, b", into buf. */
static void
failed_checks(const pf_health_report_t *r, char *buf, size_t cap)
{
    size_t used = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < pf_health_report_failed_count(r); i++) {
        int n = snprintf(buf + used, cap - used, "%s%s", i == 0 ? "" : ", ",
                         pf_health_report_failed(r, i));

        if (n < 0 || (size_t)n >= cap - used) {
            break;
        }
        used += (size_t)n;
    }
}

/* Check health first; work only when it is not unhealthy. */
static int
monitored_processing(pf_ctx_t *ctx, void *arg)
{
    health_scene_t *s = arg;
    pf_health_report_t *r;
    char failed[128];
    int rc = pf_health_check_all(s->hc, &r);

    if (rc != 0) {
        return rc;
    }
    if (!pf_health_report_is_healthy(r)) {
        failed_checks(r, failed, sizeof(failed));
        demo_say(s->demo, "monitored_processing",
                 "health checks failed (%s): refuses to process", failed);
        pf_health_report_free(r);
        return PF_EUNHEALTHY;
    }
    demo_say(s->demo, "monitored_processing", "health is %s: processes",
             pf_health_status_name(pf_health_report_status(r)));
    pf_health_report_free(r);
    demo_bump(s->demo, DEMO_MARK_A);
    return pf_ctx_set_string(ctx, "result", "processed");
}

static int
make_checker(health_scene_t *s)
{
    pf_health_config_t cfg;
    pf_health_checker_t *hc;
    int rc;

    pf_health_config_init(&cfg);
    cfg.name = "monitored";
    cfg.listener = health_listener;
    cfg.listener_arg = s;
    cfg.clock = demo_clock(s->demo);
    rc = pf_health_checker_new(&cfg, &hc);
    if (rc != 0) {
        return rc;
    }
    rc = pf_health_add_check(hc, "database", check_database, s);
    if (rc == 0) {
        rc = pf_health_add_check(hc, "external_api", check_external_api, s);
    }
    if (rc == 0) {
        rc = pf_health_add_check(hc, "memory_usage", check_memory, s);
    }
    if (rc == 0) {
        rc = pf_registry_add_health_checker(demo_registry(s->demo), hc,
                                            PF_REGISTRY_OWN);
    }
    if (rc != 0) {
        pf_health_checker_free(hc);
        return rc;
    }
    s->hc = hc;
    return 0;
}

static int
make_agent(health_scene_t *s, pf_agent_t **out)
{
    pf_state_opts_t o;
    int rc = demo_agent(s->demo, "monitored", PF_EXEC_SEQUENTIAL, NULL, out);

    if (rc != 0) {
        return rc;
    }
    pf_state_opts_init(&o);
    o.max_retries = 0; /* the next run will try again */
    rc = pf_agent_add_state(*out, "monitored_processing", monitored_processing,
                            s, &o);
    if (rc != 0) {
        pf_agent_free(*out);
    }
    return rc;
}

static void
check_and_summarise(health_scene_t *s, pf_agent_t *a)
{
    demo_t *d = s->demo;
    pf_health_metrics_t hm;
    pf_agent_metrics_t am;

    pf_health_metrics(s->hc, &hm);
    pf_agent_metrics(a, &am);
    demo_blank(d);
    demo_note(d,
              "health monitored: reports %llu, check runs %llu, unhealthy "
              "results %llu, status changes %llu; now %s",
              (unsigned long long)hm.reports, (unsigned long long)hm.runs,
              (unsigned long long)hm.failures, (unsigned long long)hm.events,
              pf_health_status_name(hm.status));
    demo_note(d,
              "agent monitored: runs %llu: processed %u, refused %llu (each "
              "a dead letter)",
              (unsigned long long)am.runs_finished, demo_count(d, DEMO_MARK_A),
              (unsigned long long)am.dead_letters);
    demo_expect(d, demo_count(d, DEMO_MARK_B) == 4,
                "4 check status changes (external_api degraded and back, "
                "database unhealthy and back)");
    demo_expect(d, demo_count(d, DEMO_MARK_C) == 4,
                "the overall status to go healthy, degraded, unhealthy, "
                "degraded, healthy");
    demo_expect(d,
                demo_count(d, DEMO_MARK_A) == 4 &&
                    demo_count(d, DEMO_DEAD_LETTERS) == 1,
                "4 runs processed and 1 refused while the database was down");
    demo_expect(d, hm.status == PF_HEALTHY, "health back to healthy");
}

int
demo_scene_health(demo_t *d)
{
    health_scene_t *s = demo_alloc(d, sizeof(*s));
    pf_agent_t *a;
    int rc;

    if (s == NULL) {
        return PF_ENOMEM;
    }
    s->demo = d;
    rc = make_checker(s);
    if (rc == 0) {
        rc = make_agent(s, &a);
    }
    if (rc != 0) {
        return rc;
    }
    demo_note(d, "Health checker monitored: checks database, external_api "
                 "and memory_usage. Agent");
    demo_note(d, "monitored's state monitored_processing checks health "
                 "first and refuses to work when");
    demo_note(d, "it is unhealthy (degraded still serves). A run every 10 s; "
                 "external_api answers 503");
    demo_note(d, "from 10 s to 35 s, the database is down from 20 s to 30 s.");
    demo_blank(d);
    for (int i = 0; i < RUNS; i++) {
        demo_advance_to(d, 10.0 * i);
        rc = pf_agent_run(a, NULL, NULL);
        demo_expect(d, rc == 0 || rc == PF_EUNHEALTHY,
                    "each run to process or be refused (got %s)",
                    pf_strerror(rc));
    }
    if (demo_verdict(d) == 0) {
        check_and_summarise(s, a);
    }
    pf_agent_free(a);
    return demo_verdict(d);
}
