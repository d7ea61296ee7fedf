/* The reference's DegradableAgent (REFERENCE.md, "Graceful Degradation"):
 *
 *   class DegradableAgent(Agent):
 *       def __init__(self):
 *           self.degradation = GracefulDegradation()
 *
 *       @state
 *       async def adaptive_processing(self, ctx: Context) -> None:
 *           system_health = await self.check_system_health()
 *           if system_health.cpu_usage > 90:
 *               ctx.result = await self.simple_processing(ctx.input_data)
 *           elif system_health.memory_usage > 85:
 *               ctx.result = await self.batch_processing(ctx.input_data)
 *           elif not system_health.external_services_available:
 *               ctx.result = await self.offline_processing(ctx.input_data)
 *           else:
 *               ctx.result = await self.full_processing(ctx.input_data)
 *
 * Here the if/elif chain becomes three rules and four ordered modes. When
 * several rules fire the most degraded mode asked for wins, so ordering
 * the modes full < offline < batch < simple gives exactly the chain's
 * precedence. The state samples the signals, lets the rules decide, reads
 * the mode (one atomic load) and dispatches on it; each request is one run
 * of the agent, with ctx.input_data in and ctx.result out.
 *
 * The signals are simulated: CPU and memory come from a source callback
 * the program feeds, and external services are down while the external
 * API's circuit breaker is open. Time is a manual clock (the agent's
 * executor runs on it too), so the dwell time that keeps the mode from
 * flapping shows without sleeping.
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

#include "puffinflow/agent.h"
#include "puffinflow/degrade.h"

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

typedef struct degradable_agent {
    pf_agent_t *agent;
    pf_degrade_t *degradation;
    pf_breaker_t *external_api;
    unsigned simple, batch, offline; /* mode indexes, resolved once */
    int changes;
} degradable_agent_t;

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

/* @state adaptive_processing: sample, decide, dispatch on the mode. */
static int
adaptive_processing(pf_ctx_t *ctx, void *arg)
{
    degradable_agent_t *a = arg;
    pf_system_health_t system_health;
    char input_data[64];
    const char *result;
    unsigned mode;
    int rc;

    rc = pf_ctx_get_string(ctx, "input_data", input_data, sizeof(input_data),
                           NULL);
    if (rc != 0) {
        return rc;
    }
    rc = pf_degrade_update(a->degradation, &system_health);
    if (rc != 0) {
        return rc;
    }
    mode = pf_degrade_mode(a->degradation); /* lock-free */
    if (mode == a->simple) {
        result = simple_processing(input_data);
    } else if (mode == a->batch) {
        result = batch_processing(input_data);
    } else if (mode == a->offline) {
        result = offline_processing(input_data);
    } else {
        result = full_processing(input_data);
    }
    return pf_ctx_set_string(ctx, "result", result);
}

static void
on_mode_change(const pf_degrade_event_t *ev, void *arg)
{
    degradable_agent_t *a = arg;

    a->changes++;
    printf("  [mode] %s -> %s (%s; cpu %.0f%%, memory %.0f%%, external %s)\n",
           ev->from_name, ev->to_name, ev->reason, ev->health.cpu_usage,
           ev->health.memory_usage,
           ev->health.external_services_available ? "up" : "down");
}

static int
degradable_agent_init(degradable_agent_t *a, pf_executor_t *ex,
                      pf_clock_t *clock, machine_t *m)
{
    static const char *const modes[] = {"full", "offline", "batch", "simple"};
    pf_degrade_config_t cfg;
    pf_agent_config_t acfg;
    pf_breaker_config_t bc;
    int rc;

    memset(a, 0, sizeof(*a));
    pf_agent_config_init(&acfg);
    acfg.name = "DegradableAgent";
    acfg.executor = ex;
    rc = pf_agent_new_ex(&acfg, &a->agent);
    if (rc != 0) {
        return rc;
    }
    rc = pf_agent_add_state(a->agent, "adaptive_processing",
                            adaptive_processing, a, NULL);
    if (rc != 0) {
        return rc;
    }
    pf_breaker_config_init(&bc);
    bc.name = "external_api";
    bc.clock = clock;
    rc = pf_breaker_new(&bc, &a->external_api);
    if (rc != 0) {
        return rc;
    }
    pf_degrade_config_init(&cfg);
    cfg.name = "degradable_agent";
    cfg.modes = modes;
    cfg.modes_len = 4;
    cfg.min_dwell = 30.0; /* recover only after 30 s in a mode */
    cfg.source = sample_machine;
    cfg.source_arg = m;
    cfg.listener = on_mode_change;
    cfg.listener_arg = a;
    cfg.clock = clock;
    rc = pf_degrade_new(&cfg, &a->degradation);
    if (rc == 0) {
        rc = pf_degrade_add_rule_str(a->degradation,
                                         "cpu > 90 hysteresis 10 -> simple");
    }
    if (rc == 0) {
        rc =
            pf_degrade_add_rule_str(a->degradation, "memory > 85 -> batch");
    }
    if (rc == 0) {
        rc = pf_degrade_add_rule_str(a->degradation,
                                         "external services down -> offline");
    }
    if (rc == 0) {
        rc = pf_degrade_add_breaker(a->degradation, a->external_api);
    }
    if (rc == 0) {
        pf_degrade_mode_index(a->degradation, "simple", &a->simple);
        pf_degrade_mode_index(a->degradation, "batch", &a->batch);
        pf_degrade_mode_index(a->degradation, "offline", &a->offline);
    }
    return rc;
}

/* One request: a run of the agent on ctx.input_data; checks that it chose
 * the processing wanted. */
static void
step(degradable_agent_t *a, const char *what, const char *want)
{
    char result[32] = "";
    pf_ctx_t *ctx;
    int rc;

    rc = pf_ctx_new(&ctx);
    if (rc == 0) {
        pf_ctx_set_string(ctx, "input_data", "some records");
        rc = pf_agent_run(a->agent, ctx, NULL);
        pf_ctx_get_string(ctx, "result", result, sizeof(result), NULL);
        pf_ctx_free(ctx);
    }
    printf("%-58s -> %s processing\n", what, result);
    check(rc == 0 && strcmp(result, want) == 0, what);
}

int
main(void)
{
    pf_clock_t *clock;
    pf_executor_config_t ecfg;
    pf_executor_t *ex = NULL;
    machine_t m = {20, 40};
    degradable_agent_t a;

    if (pf_clock_manual_new(&clock) != 0) {
        return 1;
    }
    pf_executor_config_init(&ecfg);
    ecfg.clock = clock;
    ecfg.workers = 1;
    if (pf_executor_new(&ecfg, &ex) != 0 ||
        degradable_agent_init(&a, ex, clock, &m) != 0) {
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

    check(pf_degrade_override(a.degradation, "offline") == 0, "override");
    step(&a, "12. an operator pins offline", "offline (cached)");
    pf_clock_manual_advance(clock, 60 * PF_NS_PER_SEC);
    step(&a, "13. still pinned a minute later", "offline (cached)");
    check(pf_degrade_clear_override(a.degradation) == 0, "clear");
    step(&a, "14. override cleared", "full");

    /* full->simple, simple->full, full->batch, batch->simple,
     * simple->full, full->offline, offline->batch, batch->full,
     * full->offline (override), offline->full (cleared). */
    check(a.changes == 10, "the listener heard every mode change");
    printf("%d mode changes heard\n", a.changes);

    pf_agent_free(a.agent);
    pf_executor_free(ex);
    pf_degrade_free(a.degradation);
    pf_breaker_free(a.external_api);
    pf_clock_free(clock);
    if (!g_ok) {
        return 1;
    }
    printf("degradable_agent: OK\n");
    return 0;
}
