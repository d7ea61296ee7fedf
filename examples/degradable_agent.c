/* The reference's DegradableAgent: processing that adapts to the health of
 * the system.
 *
 *   system_health = await self.check_system_health()
 *   if system_health.cpu_usage > 90:
 *       ctx.result = await self.simple_processing(ctx.input_data)
 *   elif system_health.memory_usage > 85:
 *       ctx.result = await self.batch_processing(ctx.input_data)
 *   elif not system_health.external_services_available:
 *       ctx.result = await self.offline_processing(ctx.input_data)
 *   else:
 *       ctx.result = await self.full_processing(ctx.input_data)
 *
 * Here the if/elif chain becomes three rules and four ordered modes. When
 * several rules fire the most degraded mode asked for wins, so ordering
 * the modes full < offline < batch < simple gives exactly the chain's
 * precedence. The processing step reads the current mode with one atomic
 * load and dispatches on it.
 *
 * The signals are simulated: CPU and memory come from a source callback
 * the program feeds, and external services are down while the external
 * API's circuit breaker is open. Time is a manual clock, so the dwell time
 * that keeps the mode from flapping shows without sleeping.
 *
 * The program exits 0 only if every situation chose the reference's
 * processing, the mode held for the dwell time before recovering, the
 * hysteresis kept a high CPU mode while the load hovered near the
 * threshold, an override pinned a mode, and the listener heard each
 * change. */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "puffinflow/breaker.h"
#include "puffinflow/clock.h"
#include "puffinflow/degrade.h"
#include "puffinflow/error.h"

static bool g_ok = true;

static void
check(bool cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "FAILED: %s\n", what);
        g_ok = false;
    }
}

/* ---- simulated signals ------------------------------------------------ */

typedef struct machine {
    double cpu;
    double memory;
} machine_t;

static int
sample_machine(pf_system_health_t *out, void *arg)
{
    const machine_t *m = arg;

    out->cpu_usage = m->cpu;
    out->memory_usage = m->memory;
    return 0;
}

/* ---- the agent -------------------------------------------------------- */

typedef struct agent {
    pf_degradation_t *degradation;
    pf_breaker_t *external_api;
    unsigned simple, batch, offline; /* mode indexes, resolved once */
    int changes;
} agent_t;

static const char *
simple_processing(const char *input)
{
    (void)input;
    return "simple";
}

static const char *
batch_processing(const char *input)
{
    (void)input;
    return "batch";
}

static const char *
offline_processing(const char *input)
{
    (void)input;
    return "offline (cached)";
}

static const char *
full_processing(const char *input)
{
    (void)input;
    return "full";
}

/* adaptive_processing: sample, decide, dispatch on the mode. */
static const char *
adaptive_processing(agent_t *a, const char *input)
{
    pf_system_health_t system_health;
    unsigned mode;

    if (pf_degradation_update(a->degradation, &system_health) != 0) {
        return "error";
    }
    mode = pf_degradation_mode(a->degradation); /* lock-free */
    if (mode == a->simple) {
        return simple_processing(input);
    }
    if (mode == a->batch) {
        return batch_processing(input);
    }
    if (mode == a->offline) {
        return offline_processing(input);
    }
    return full_processing(input);
}

static void
on_mode_change(const pf_degrade_event_t *ev, void *arg)
{
    agent_t *a = arg;

    a->changes++;
    printf("  [mode] %s -> %s (%s; cpu %.0f%%, memory %.0f%%, external %s)\n",
           ev->from_name, ev->to_name, ev->reason, ev->health.cpu_usage,
           ev->health.memory_usage,
           ev->health.external_services_available ? "up" : "down");
}

static int
agent_init(agent_t *a, pf_clock_t *clock, machine_t *m)
{
    static const char *const modes[] = {"full", "offline", "batch",
                                        "simple"};
    pf_degradation_config_t cfg;
    pf_breaker_config_t bc;
    int rc;

    memset(a, 0, sizeof(*a));
    pf_breaker_config_init(&bc);
    bc.name = "external_api";
    bc.clock = clock;
    rc = pf_breaker_new(&bc, &a->external_api);
    if (rc != 0) {
        return rc;
    }
    pf_degradation_config_init(&cfg);
    cfg.name = "degradable_agent";
    cfg.modes = modes;
    cfg.modes_len = 4;
    cfg.min_dwell = 30.0; /* recover only after 30 s in a mode */
    cfg.source = sample_machine;
    cfg.source_arg = m;
    cfg.on_change = on_mode_change;
    cfg.on_change_arg = a;
    cfg.clock = clock;
    rc = pf_degradation_new(&cfg, &a->degradation);
    if (rc == 0) {
        rc = pf_degradation_add_rule_str(a->degradation,
                                         "cpu > 90 hysteresis 10 -> simple");
    }
    if (rc == 0) {
        rc = pf_degradation_add_rule_str(a->degradation,
                                         "memory > 85 -> batch");
    }
    if (rc == 0) {
        rc = pf_degradation_add_rule_str(a->degradation,
                                         "external services down -> offline");
    }
    if (rc == 0) {
        rc = pf_degradation_add_breaker(a->degradation, a->external_api);
    }
    if (rc == 0) {
        pf_degradation_mode_index(a->degradation, "simple", &a->simple);
        pf_degradation_mode_index(a->degradation, "batch", &a->batch);
        pf_degradation_mode_index(a->degradation, "offline", &a->offline);
    }
    return rc;
}

static void
step(agent_t *a, const char *what, const char *want)
{
    const char *got = adaptive_processing(a, "input_data");

    printf("%-58s -> %s processing\n", what, got);
    check(strcmp(got, want) == 0, what);
}

int
main(void)
{
    pf_clock_t *clock;
    machine_t m = {20, 40};
    agent_t a;

    if (pf_clock_manual_new(&clock) != 0 || agent_init(&a, clock, &m) != 0) {
        fprintf(stderr, "FAILED: could not set up the agent\n");
        return 1;
    }

    step(&a, "1. all well", "full");

    m.cpu = 95;
    step(&a, "2. CPU at 95%", "simple");
    m.cpu = 85; /* near the threshold: hysteresis holds simple */
    pf_clock_manual_advance(clock, 60 * PF_NS_PER_SEC);
    step(&a, "3. CPU back to 85% (hysteresis: still above 80)", "simple");
    m.cpu = 50;
    step(&a, "4. CPU at 50%, 60 s in simple: recovers", "full");

    m.memory = 90;
    step(&a, "5. memory at 90%", "batch");
    m.cpu = 97; /* CPU comes first in the reference's chain */
    step(&a, "6. CPU at 97% and memory at 90%", "simple");
    m.cpu = 20;
    m.memory = 40;
    pf_clock_manual_advance(clock, 10 * PF_NS_PER_SEC);
    step(&a, "7. all well again, but only 10 s in simple (dwell)", "simple");
    pf_clock_manual_advance(clock, 20 * PF_NS_PER_SEC);
    step(&a, "8. 30 s in simple: recovers", "full");

    pf_breaker_force_open(a.external_api);
    step(&a, "9. the external API's breaker opens", "offline (cached)");
    m.memory = 90;
    step(&a, "10. memory at 90% with the API down", "batch");
    m.memory = 40;
    pf_breaker_force_close(a.external_api);
    pf_clock_manual_advance(clock, 30 * PF_NS_PER_SEC);
    step(&a, "11. the API is back, 30 s later", "full");

    check(pf_degradation_override(a.degradation, "offline") == 0, "override");
    step(&a, "12. an operator pins offline", "offline (cached)");
    pf_clock_manual_advance(clock, 60 * PF_NS_PER_SEC);
    step(&a, "13. still pinned a minute later", "offline (cached)");
    check(pf_degradation_clear_override(a.degradation) == 0, "clear");
    step(&a, "14. override cleared", "full");

    /* full->simple, simple->full, full->batch, batch->simple,
     * simple->full, full->offline, offline->batch, batch->full,
     * full->offline (override), offline->full (cleared). */
    check(a.changes == 10, "the listener heard every mode change");
    printf("%d mode changes heard\n", a.changes);

    pf_degradation_free(a.degradation);
    pf_breaker_free(a.external_api);
    pf_clock_free(clock);
    if (!g_ok) {
        return 1;
    }
    printf("degradable_agent: OK\n");
    return 0;
}
