/* pf demo, scene "degrade": the reference's DegradableAgent.
 *
 * Degradation manager "adaptive" has four modes, normal first: full,
 * batch, simple, offline; and three rules, as the reference's branches:
 * "memory > 85 -> batch", "cpu > 90 hysteresis 10 -> simple" and
 * "external_down -> offline" (when several fire, the most degraded mode
 * wins). It counts external services down while the breaker
 * recommendations-api is open. Agent "degradable" has one state,
 * adaptive_processing, which updates the manager (it samples the system's
 * health) and then processes the way the mode says; in full mode it also
 * calls recommendations-api through its breaker.
 *
 * The system's figures are simulated (the manager's source callback):
 * cpu 95 % at 10 s, memory 90 % at 20 s, both back at 30 s;
 * recommendations-api is down from 38 s. The manager counts it down only
 * while its breaker is open, and the breaker needs two failures: the calls
 * at 40 s and 45 s. Each run updates the manager before it calls, so the
 * update at 45 s still sees the breaker closed, and the mode goes offline
 * at the next update, 50 s; the scene says so when the breaker opens. One
 * run every 10 s, and one at 45 s. The runs are synchronous (pf_agent_run
 * on this thread). */
#include <stdio.h>
#include <string.h>

#include "demo.h"

typedef struct degrade_scene {
    demo_t *demo;
    pf_degrade_t *mgr;
    pf_breaker_t *recs;
    bool told_open; /* the breaker's opening was explained */
    demo_dep_t recs_api;
    char modes_seen[96]; /* " -> simple -> ..." from the listener */
} degrade_scene_t;

static const double run_times[] = {0.0, 10.0, 20.0, 30.0, 40.0, 45.0, 50.0};

#define RUNS (sizeof(run_times) / sizeof(run_times[0]))

/* The scene time of the first run after now; -1 when none is left. */
static double
next_run_after(double now)
{
    for (size_t i = 0; i < RUNS; i++) {
        if (run_times[i] > now) {
            return run_times[i];
        }
    }
    return -1.0;
}

/* The system's figures at the scene's time. */
static int
sample(pf_system_health_t *out, void *arg)
{
    degrade_scene_t *s = arg;
    double now = demo_now(s->demo);

    out->cpu_usage = now >= 10.0 && now < 20.0 ? 95.0 : 35.0;
    out->memory_usage = now >= 20.0 && now < 30.0 ? 90.0 : 50.0;
    if (now >= 20.0 && now < 30.0) {
        out->cpu_usage = 70.0; /* below 90, and below 80: the rule lets go */
    }
    return 0;
}

static void
mode_listener(const pf_degrade_event_t *ev, void *arg)
{
    degrade_scene_t *s = arg;
    char who[64];
    size_t used = strlen(s->modes_seen);

    snprintf(who, sizeof(who), "degradation %s", ev->manager);
    demo_say(s->demo, who, "%s -> %s (%s)", ev->from_name, ev->to_name,
             ev->reason);
    snprintf(s->modes_seen + used, sizeof(s->modes_seen) - used, " -> %s",
             ev->to_name);
    demo_bump(s->demo, DEMO_MARK_A);
}

static int
recommend(void *arg)
{
    degrade_scene_t *s = arg;

    return demo_dep_call(s->demo, &s->recs_api);
}

static int
adaptive_processing(pf_ctx_t *ctx, void *arg)
{
    degrade_scene_t *s = arg;
    pf_system_health_t h;
    const char *mode;
    int rc = pf_degrade_update(s->mgr, &h);

    if (rc != 0) {
        return rc;
    }
    mode = pf_degrade_mode_name(s->mgr);
    /* Say what the manager saw: it knows an external service is down only
     * by its breaker being open, not by the service's own state. */
    demo_say(s->demo, "adaptive_processing",
             "cpu %.0f%%, memory %.0f%%, %s: %s processing", h.cpu_usage,
             h.memory_usage,
             h.external_services_available ? "breaker closed"
                                           : "breaker open (service down)",
             mode);
    if (strcmp(mode, "full") == 0) {
        /* Recommendations are a nice-to-have: without them, go on. */
        pf_breaker_call(s->recs, recommend, s);
    }
    if (!s->told_open && pf_breaker_state(s->recs) == PF_BREAKER_OPEN) {
        s->told_open = true;
        demo_say(s->demo, "adaptive_processing",
                 "sampled before the breaker opened: the mode changes at "
                 "the next update, %.0f s",
                 next_run_after(demo_now(s->demo)));
    }
    return pf_ctx_set_string(ctx, "mode", mode);
}

static int
make_manager(degrade_scene_t *s)
{
    static const char *const modes[] = {"full", "batch", "simple", "offline"};
    static const char *const rules[] = {"memory > 85 -> batch",
                                        "cpu > 90 hysteresis 10 -> simple",
                                        "external_down -> offline"};
    pf_degrade_config_t cfg;
    pf_breaker_config_t bcfg;
    pf_degrade_t *mgr;
    int rc;

    pf_breaker_config_init(&bcfg);
    bcfg.name = "recommendations-api";
    bcfg.failure_threshold = 2;
    rc = demo_breaker(s->demo, &bcfg, &s->recs);
    if (rc != 0) {
        return rc;
    }
    pf_degrade_config_init(&cfg);
    cfg.name = "adaptive";
    cfg.modes = modes;
    cfg.modes_len = 4;
    cfg.min_dwell = 5.0;
    cfg.source = sample;
    cfg.source_arg = s;
    cfg.listener = mode_listener;
    cfg.listener_arg = s;
    cfg.clock = demo_clock(s->demo);
    rc = pf_degrade_new(&cfg, &mgr);
    if (rc != 0) {
        return rc;
    }
    for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]) && rc == 0; i++) {
        rc = pf_degrade_add_rule_str(mgr, rules[i]);
    }
    if (rc == 0) {
        rc = pf_degrade_add_breaker(mgr, s->recs);
    }
    if (rc == 0) {
        rc = pf_registry_add_degrade(demo_registry(s->demo), mgr,
                                         PF_REGISTRY_OWN);
    }
    if (rc != 0) {
        pf_degrade_free(mgr);
        return rc;
    }
    s->mgr = mgr;
    return 0;
}

static int
make_agent(degrade_scene_t *s, pf_agent_t **out)
{
    pf_state_opts_t o;
    int rc = demo_agent(s->demo, "degradable", PF_EXEC_SEQUENTIAL, NULL, out);

    if (rc != 0) {
        return rc;
    }
    pf_state_opts_init(&o);
    o.max_retries = 0;
    rc = pf_agent_add_state(*out, "adaptive_processing", adaptive_processing, s,
                            &o);
    if (rc != 0) {
        pf_agent_free(*out);
    }
    return rc;
}

static void
check_and_summarise(degrade_scene_t *s)
{
    demo_t *d = s->demo;
    pf_degrade_metrics_t m;

    pf_degrade_metrics(s->mgr, &m);
    demo_blank(d);
    demo_note(d,
              "degradation adaptive: updates %llu, mode changes %llu "
              "(full%s); now %s",
              (unsigned long long)m.updates, (unsigned long long)m.transitions,
              s->modes_seen, pf_degrade_mode_name(s->mgr));
    demo_expect(
        d, strcmp(s->modes_seen, " -> simple -> batch -> full -> offline") == 0,
        "the modes full -> simple -> batch -> full -> offline (got full%s)",
        s->modes_seen);
    demo_expect(d, demo_count(d, DEMO_OPENED) == 1 && s->told_open,
                "recommendations-api's breaker to open during a run");
}

int
demo_scene_degrade(demo_t *d)
{
    degrade_scene_t *s = demo_alloc(d, sizeof(*s));
    pf_agent_t *a;
    int rc;

    if (s == NULL) {
        return PF_ENOMEM;
    }
    s->demo = d;
    s->recs_api.name = "recommendations-api";
    s->recs_api.down_from = 38.0;
    s->recs_api.down_until = 1e9;
    s->recs_api.error = DEMO_EUNAVAILABLE;
    rc = make_manager(s);
    if (rc == 0) {
        rc = make_agent(s, &a);
    }
    if (rc != 0) {
        return rc;
    }
    demo_note(d, "Degradation manager adaptive: modes full, batch, simple, "
                 "offline; rules memory > 85 ->");
    demo_note(d, "batch, cpu > 90 -> simple, external services down -> "
                 "offline (the most degraded wins).");
    demo_note(d, "Agent degradable's state adaptive_processing samples the "
                 "system, then processes as the");
    demo_note(d, "mode says. Simulated: cpu 95%% at 10 s, memory 90%% at 20 "
                 "s; recommendations-api down from 38 s.");
    demo_note(d, "The manager counts a service down only while its breaker is "
                 "open (2 failures: the calls");
    demo_note(d, "at 40 s and 45 s), and sees it at its next update: a run "
                 "every 10 s, and one at 45 s.");
    demo_blank(d);
    for (size_t i = 0; i < RUNS; i++) {
        demo_advance_to(d, run_times[i]);
        rc = pf_agent_run(a, NULL, NULL);
        demo_expect(d, rc == 0, "every run to process in some mode (got %s)",
                    pf_strerror(rc));
    }
    if (demo_verdict(d) == 0) {
        check_and_summarise(s);
    }
    pf_agent_free(a);
    return demo_verdict(d);
}
