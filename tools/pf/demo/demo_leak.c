/* pf demo, scene "leak": the reference's LeakAwareAgent, with a leak
 * injected on purpose.
 *
 * Leak detector "leak-aware" samples the process every 10 s (its
 * monitoring thread) and tracks the resources agent "leak_aware"'s states
 * hold (the runtime reports each attempt's start and end). The process is
 * simulated (the detector's sampler callback, a script standing in for
 * /proc): 48 open fds plus the temp files export_report keeps; the
 * narration says so, so no one takes 48 for this process's real count.
 *
 * Agent "leak_aware" runs resource_using_task, which opens what it needs
 * and closes it, then export_report, which has the bug: it never finishes,
 * and every 10 s it opens 4 more temp files and keeps them. The detector
 * finds it twice over: at 30 s the fd count's steady growth (+24/min), at
 * 40 s the allocation export_report has held for longer than the 30 s
 * leak threshold. Then the run is cancelled, export_report closes its
 * files, and at 50 s the trend alert clears.
 *
 * Two threads wait on the clock here, the monitor and export_report; they
 * never wake at the same instant (ticks at 0, 10, 20 s..., the export at
 * 5, 15, 25 s...), and the scene moves the clock only once both are
 * parked again. */
#include <stdio.h>

#include "demo.h"

#define BASE_FDS 48
#define FILES_PER_STEP 4

typedef struct leak_scene {
    demo_t *demo;
    pf_leak_detector_t *ld;
    atomic_int temp_files; /* open in the simulated process */
    atomic_uint alerts[PF_LEAK_ALERT_KINDS];
    atomic_uint cleared[PF_LEAK_ALERT_KINDS];
} leak_scene_t;

/* The simulated process, as the detector's sampler. */
static int
sample(int pid, pf_leak_sample_t *out, void *arg)
{
    leak_scene_t *s = arg;

    (void)pid;
    demo_say(s->demo, "leak detector leak-aware",
             "scripted sample: %d open fds",
             BASE_FDS + atomic_load(&s->temp_files));
    out->rss_bytes = INT64_C(120) << 20;
    out->memory_limit_bytes = INT64_C(1) << 30;
    out->threads = 9;
    out->open_fds = BASE_FDS + atomic_load(&s->temp_files);
    out->fd_limit = 1024;
    out->sockets = 4;
    out->tcp = 3;
    out->unix_sockets = 1;
    out->tcp_by_state[PF_LEAK_TCP_ESTABLISHED] = 3;
    return 0;
}

static void
alert_listener(const pf_leak_alert_t *alert, void *arg)
{
    leak_scene_t *s = arg;
    char who[64];

    snprintf(who, sizeof(who), "leak detector %s",
             pf_leak_detector_name(s->ld));
    demo_say(s->demo, who, "%s %s: %s", alert->cleared ? "cleared" : "ALERT",
             pf_leak_alert_kind_name(alert->kind), alert->message);
    atomic_fetch_add(
        alert->cleared ? &s->cleared[alert->kind] : &s->alerts[alert->kind], 1);
    demo_bump(s->demo, alert->cleared ? DEMO_MARK_B : DEMO_MARK_A);
}

static int
resource_using_task(pf_ctx_t *ctx, void *arg)
{
    leak_scene_t *s = arg;

    demo_say(s->demo, "resource_using_task",
             "reads data.txt and queries the database, closes both");
    return pf_ctx_goto(ctx, "export_report");
}

/* The injected bug: it never ends, and keeps every file it opens. */
static int
export_report(pf_ctx_t *ctx, void *arg)
{
    leak_scene_t *s = arg;
    int rc;

    do {
        int open =
            atomic_fetch_add(&s->temp_files, FILES_PER_STEP) + FILES_PER_STEP;

        demo_say(s->demo, "export_report",
                 "opens %d more temp files and keeps them (%d open)",
                 FILES_PER_STEP, open);
        rc = demo_sleep(s->demo, pf_ctx_token(ctx), 10.0);
    } while (rc == 0);
    demo_say(s->demo, "export_report", "cancelled: closes its %d temp files",
             atomic_exchange(&s->temp_files, 0));
    return rc;
}

static int
make_detector(leak_scene_t *s)
{
    pf_leak_config_t cfg;
    pf_leak_detector_t *ld;
    int rc;

    pf_leak_config_init(&cfg);
    cfg.name = "leak-aware";
    cfg.check_interval = 10.0;
    cfg.leak_threshold = 30.0;
    cfg.trend_window = 4;
    cfg.listener = alert_listener;
    cfg.listener_arg = s;
    cfg.sample = sample;
    cfg.sample_arg = s;
    cfg.clock = demo_clock(s->demo);
    rc = pf_leak_detector_new(&cfg, &ld);
    if (rc != 0) {
        return rc;
    }
    s->ld = ld;
    rc = pf_registry_add_leak_detector(demo_registry(s->demo), ld,
                                       PF_REGISTRY_OWN);
    if (rc != 0) {
        pf_leak_detector_free(ld);
        s->ld = NULL;
    }
    return rc;
}

static int
make_agent(leak_scene_t *s, pf_agent_t **out)
{
    int rc = demo_agent(s->demo, "leak_aware", PF_EXEC_SEQUENTIAL, s->ld, out);

    if (rc != 0) {
        return rc;
    }
    rc = pf_agent_add_state(*out, "resource_using_task", resource_using_task, s,
                            NULL);
    if (rc == 0) {
        rc = pf_agent_add_state(*out, "export_report", export_report, s, NULL);
    }
    if (rc != 0) {
        pf_agent_free(*out);
    }
    return rc;
}

typedef struct tick_wait {
    leak_scene_t *scene;
    uint64_t samples;
    size_t parked;
} tick_wait_t;

static bool
tick_done(void *arg)
{
    tick_wait_t *w = arg;
    pf_leak_metrics_t m;

    pf_leak_detector_metrics(w->scene->ld, &m);
    return m.samples >= w->samples && demo_parked(w->scene->demo) == w->parked;
}

/* Move to scene time t, when the monitor takes its sample number
 * `samples`; wait until it is done and parked again, with `parked`
 * threads on the clock in all. */
static void
tick(leak_scene_t *s, double t, uint64_t samples, size_t parked)
{
    tick_wait_t w = {s, samples, parked};

    demo_advance_to(s->demo, t);
    demo_await(s->demo, tick_done, &w, "the monitor's sample");
}

/* Move to scene time t, when export_report wakes to open more files; wait
 * until it waits again. */
static void
export_step(leak_scene_t *s, double t, unsigned parks)
{
    demo_advance_to(s->demo, t);
    demo_await_count(s->demo, DEMO_PARKED, parks, "export_report's next step");
    demo_await_parked(s->demo, 2, "export_report back to waiting");
}

static void
play(leak_scene_t *s, pf_agent_t *a)
{
    demo_t *d = s->demo;
    pf_run_t *run = NULL;
    int rc = pf_leak_detector_start_monitoring(s->ld);

    demo_expect(d, rc == 0, "monitoring to start (%s)", pf_strerror(rc));
    tick(s, 0.0, 1, 1);
    demo_advance_to(d, 5.0);
    rc = demo_start(d, a, NULL, 0.0, &run);
    demo_expect(d, rc == 0, "the run to start (%s)", pf_strerror(rc));
    demo_await_count(d, DEMO_PARKED, 1, "export_report's first step");
    demo_await_parked(d, 2, "export_report waiting");
    for (int i = 1; i <= 3; i++) {
        tick(s, 10.0 * i, 1 + (unsigned)i, 2);
        export_step(s, 10.0 * i + 5.0, 1 + (unsigned)i);
    }
    demo_await_count(d, DEMO_MARK_A, 1, "the fd growth trend alert at 30 s");
    tick(s, 40.0, 5, 2);
    demo_await_count(d, DEMO_MARK_A, 2, "the allocation leak alert at 40 s");
    if (run != NULL) {
        demo_say(d, "leak_aware",
                 "the run is cancelled (someone read the alerts)");
        pf_run_cancel(run);
        demo_finish(d, run, NULL);
    }
    tick(s, 50.0, 6, 1);
    demo_await_count(d, DEMO_MARK_B, 1, "the trend alert to clear");
    rc = pf_leak_detector_stop_monitoring(s->ld);
    demo_expect(d, rc == 0, "monitoring to stop (%s)", pf_strerror(rc));
}

static void
check_and_summarise(leak_scene_t *s)
{
    demo_t *d = s->demo;
    pf_leak_metrics_t m;

    pf_leak_detector_metrics(s->ld, &m);
    demo_blank(d);
    demo_note(d,
              "leak detector leak-aware: samples %llu, alerts %llu; "
              "allocations tracked %llu, released %llu; leaks detected %llu, "
              "held now %llu",
              (unsigned long long)m.samples, (unsigned long long)m.alerts,
              (unsigned long long)m.allocations, (unsigned long long)m.releases,
              (unsigned long long)m.total_detected,
              (unsigned long long)m.current_leaks);
    demo_expect(d,
                atomic_load(&s->alerts[PF_LEAK_ALERT_FD_TREND]) == 1 &&
                    atomic_load(&s->cleared[PF_LEAK_ALERT_FD_TREND]) == 1,
                "the fd trend alert to be raised once, and cleared");
    demo_expect(d,
                atomic_load(&s->alerts[PF_LEAK_ALERT_ALLOCATION]) == 1 &&
                    m.total_detected == 1,
                "export_report's allocation to be reported as a leak once");
    demo_expect(d, m.current_leaks == 0 && m.total_allocations == 0,
                "nothing held once the run is cancelled");
    demo_expect(
        d, demo_count(d, DEMO_MARK_A) == 2 && demo_count(d, DEMO_MARK_B) == 1,
        "no alert but those two");
}

int
demo_scene_leak(demo_t *d)
{
    leak_scene_t *s = demo_alloc(d, sizeof(*s));
    pf_agent_t *a;
    int rc;

    if (s == NULL) {
        return PF_ENOMEM;
    }
    s->demo = d;
    rc = make_detector(s);
    if (rc == 0) {
        rc = make_agent(s, &a);
    }
    if (rc != 0) {
        return rc;
    }
    demo_note(d, "Leak detector leak-aware samples the process every 10 s "
                 "and tracks what agent leak_aware's");
    demo_note(d, "states hold (leak threshold 30 s). resource_using_task "
                 "cleans up after itself; export_report");
    demo_note(d, "has a bug: it never ends, and keeps 4 more temp files "
                 "every 10 s. The process is simulated:");
    demo_note(d,
              "a scripted sampler stands in for /proc, reporting %d fds "
              "plus the temp files export_report keeps.",
              BASE_FDS);
    demo_blank(d);
    play(s, a);
    if (demo_verdict(d) == 0) {
        check_and_summarise(s);
    }
    if (pf_leak_detector_is_monitoring(s->ld)) {
        pf_leak_detector_stop_monitoring(s->ld);
    }
    pf_agent_free(a);
    return demo_verdict(d);
}
