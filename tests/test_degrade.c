/* Graceful degradation: rules, hysteresis, dwell time and override on
 * injected signals with the manual clock; the rule language; external
 * services from breakers and health checkers; the system sampler on
 * fixture files (tests/fixtures/degrade) and on files this test rewrites
 * between samples; the background sampler; the listener; bad input and
 * allocation failure. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "puffinflow/breaker.h"
#include "puffinflow/degrade.h"
#include "puffinflow/health.h"
#include "test.h"

#include "sysmon.h"

/* ---- helpers ---------------------------------------------------------- */

/* The reference's DegradableAgent: modes ordered so that the most
 * degraded mode any rule asks for reproduces its if/elif chain (CPU first,
 * then memory, then external services). */
static const char *const agent_modes[] = {"full", "offline", "batch",
                                          "simple"};

static pf_degrade_t *
new_manager(pf_clock_t *clock, double dwell, double dwell_degrade)
{
    pf_degrade_config_t cfg;
    pf_degrade_t *d = NULL;

    pf_degrade_config_init(&cfg);
    cfg.modes = agent_modes;
    cfg.modes_len = 4;
    cfg.min_dwell = dwell;
    cfg.min_dwell_degrade = dwell_degrade;
    cfg.clock = clock;
    assert_pf_ok(pf_degrade_new(&cfg, &d));
    return d;
}

static pf_degrade_t *
agent_manager(pf_clock_t *clock, double dwell)
{
    pf_degrade_t *d = new_manager(clock, dwell, 0.0);

    assert_pf_ok(pf_degrade_add_rule_str(d, "cpu > 90 -> simple"));
    assert_pf_ok(pf_degrade_add_rule_str(d, "memory > 85 -> batch"));
    assert_pf_ok(pf_degrade_add_rule_str(d, "external_down -> offline"));
    return d;
}

static pf_system_health_t
signals(double cpu, double mem, bool ext)
{
    pf_system_health_t h;

    memset(&h, 0, sizeof(h));
    h.cpu_usage = cpu;
    h.memory_usage = mem;
    h.external_services_available = ext;
    return h;
}

static const char *
eval(pf_degrade_t *d, double cpu, double mem, bool ext)
{
    pf_system_health_t h = signals(cpu, mem, ext);

    assert_pf_ok(pf_degrade_evaluate(d, &h));
    return pf_degrade_mode_name(d);
}

/* ---- defaults and modes ----------------------------------------------- */

static void
test_degrade_config_init_sets_documented_defaults(void **state)
{
    pf_degrade_config_t cfg;
    pf_degrade_rule_t r;
    pf_degrade_t *d;

    pf_degrade_config_init(&cfg);
    assert_string_equal(cfg.name, "degradation");
    assert_null(cfg.modes);
    assert_int_equal(cfg.modes_len, 0);
    assert_true(cfg.min_dwell == 30.0);
    assert_true(cfg.min_dwell_degrade == 0.0);
    assert_true(cfg.sample_interval == 5.0);
    assert_null(cfg.source);
    assert_null(cfg.listener);
    pf_degrade_rule_init(&r);
    assert_int_equal(r.signal, PF_DEGRADE_SIGNAL_CPU);
    assert_int_equal(r.op, PF_DEGRADE_ABOVE);
    assert_true(r.hysteresis == 0.0);

    cfg.clock = *state;
    assert_pf_ok(pf_degrade_new(&cfg, &d));
    assert_int_equal(pf_degrade_mode_count(d), 4);
    assert_string_equal(pf_degrade_mode_name_at(d, 0), "full");
    assert_string_equal(pf_degrade_mode_name_at(d, 1), "reduced");
    assert_string_equal(pf_degrade_mode_name_at(d, 2), "minimal");
    assert_string_equal(pf_degrade_mode_name_at(d, 3), "offline");
    assert_null(pf_degrade_mode_name_at(d, 4));
    assert_int_equal(pf_degrade_mode(d), 0);
    assert_string_equal(pf_degrade_mode_name(d), "full");
    assert_string_equal(pf_degrade_name(d), "degradation");
    pf_degrade_free(d);
    pf_degrade_free(NULL);
}

static void
test_degrade_mode_index_resolves_names(void **state)
{
    pf_degrade_t *d = new_manager(*state, 0, 0);
    unsigned idx = 99;

    assert_pf_ok(pf_degrade_mode_index(d, "batch", &idx));
    assert_int_equal(idx, 2);
    assert_pf_err(pf_degrade_mode_index(d, "nope", &idx), PF_ENOTFOUND);
    assert_pf_err(pf_degrade_mode_index(d, NULL, &idx), PF_EINVAL);
    assert_pf_err(pf_degrade_mode_index(d, "batch", NULL), PF_EINVAL);
    assert_int_equal(pf_degrade_mode(NULL), 0);
    assert_null(pf_degrade_mode_name(NULL));
    assert_int_equal(pf_degrade_mode_count(NULL), 0);
    pf_degrade_free(d);
}

/* ---- rules ------------------------------------------------------------ */

typedef struct agent_row {
    double cpu;
    double mem;
    bool ext;
    const char *mode;
} agent_row_t;

static void
test_degrade_rules_pick_the_reference_agent_modes(void **state)
{
    static const agent_row_t rows[] = {
        {10, 10, true, "full"},      {95, 10, true, "simple"},
        {10, 90, true, "batch"},     {10, 10, false, "offline"},
        {95, 90, false, "simple"},   {10, 90, false, "batch"},
        {90, 85, true, "full"},      /* at a threshold is not above it */
        {NAN, NAN, true, "full"},    /* unknown figures never fire */
        {100, 100, true, "simple"},
    };
    pf_degrade_t *d = agent_manager(*state, 0.0);
    size_t i;

    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const char *got = eval(d, rows[i].cpu, rows[i].mem, rows[i].ext);

        if (strcmp(got, rows[i].mode) != 0) {
            fail_msg("row %zu: cpu %g mem %g ext %d: %s, expected %s", i,
                     rows[i].cpu, rows[i].mem, rows[i].ext, got,
                     rows[i].mode);
        }
    }
    pf_degrade_free(d);
}

static void
test_degrade_operators_compare_as_written(void **state)
{
    pf_degrade_t *d = new_manager(*state, 0, 0);

    assert_pf_ok(pf_degrade_add_rule_str(d, "cpu >= 90 -> offline"));
    assert_pf_ok(pf_degrade_add_rule_str(d, "memory < 5 -> batch"));
    assert_pf_ok(pf_degrade_add_rule_str(d, "memory <= 1 -> simple"));
    assert_string_equal(eval(d, 90, 50, true), "offline");
    assert_string_equal(eval(d, 89.9, 50, true), "full");
    assert_string_equal(eval(d, 0, 4, true), "batch");
    assert_string_equal(eval(d, 0, 5, true), "full");
    assert_string_equal(eval(d, 0, 1, true), "simple");
    pf_degrade_free(d);
}

static void
test_degrade_hysteresis_keeps_a_rule_firing_until_well_back(void **state)
{
    pf_degrade_t *d = new_manager(*state, 0, 0);

    assert_pf_ok(pf_degrade_add_rule_str(
        d, "cpu > 90 hysteresis 10 -> simple"));
    assert_string_equal(eval(d, 85, 0, true), "full");   /* not yet */
    assert_string_equal(eval(d, 91, 0, true), "simple"); /* fires */
    assert_string_equal(eval(d, 85, 0, true), "simple"); /* still */
    assert_string_equal(eval(d, 80.5, 0, true), "simple");
    assert_string_equal(eval(d, 80, 0, true), "full");   /* back past */
    assert_string_equal(eval(d, 85, 0, true), "full");   /* must re-cross */
    assert_string_equal(eval(d, 90.5, 0, true), "simple");
    pf_degrade_free(d);
}

static void
test_degrade_recovery_waits_for_the_dwell_time(void **state)
{
    pf_clock_t *clock = *state;
    pf_degrade_t *d = agent_manager(clock, 30.0);
    pf_degrade_metrics_t m;

    assert_string_equal(eval(d, 95, 0, true), "simple"); /* at once */
    pf_clock_manual_advance(clock, 10 * NS_PER_SEC);
    assert_string_equal(eval(d, 10, 0, true), "simple"); /* too soon */
    pf_clock_manual_advance(clock, 20 * NS_PER_SEC - 1);
    assert_string_equal(eval(d, 10, 0, true), "simple");
    pf_degrade_metrics(d, &m);
    assert_int_equal(m.mode, 3);
    assert_int_equal(m.target, 0);
    pf_clock_manual_advance(clock, 1);
    assert_string_equal(eval(d, 10, 0, true), "full"); /* 30 s in simple */
    /* Degrading again is immediate, and restarts the dwell. */
    assert_string_equal(eval(d, 10, 90, true), "batch");
    pf_clock_manual_advance(clock, 29 * NS_PER_SEC);
    assert_string_equal(eval(d, 10, 10, true), "batch");
    pf_clock_manual_advance(clock, NS_PER_SEC);
    assert_string_equal(eval(d, 10, 10, true), "full");
    pf_degrade_metrics(d, &m);
    assert_int_equal(m.transitions, 4);
    pf_degrade_free(d);
}

static void
test_degrade_degrading_waits_for_its_own_dwell_time(void **state)
{
    pf_clock_t *clock = *state;
    pf_degrade_t *d = new_manager(clock, 0.0, 5.0);

    assert_pf_ok(pf_degrade_add_rule_str(d, "cpu > 90 -> simple"));
    pf_clock_manual_advance(clock, 2 * NS_PER_SEC);
    assert_string_equal(eval(d, 95, 0, true), "full"); /* 2 s in full */
    pf_clock_manual_advance(clock, 3 * NS_PER_SEC);
    assert_string_equal(eval(d, 95, 0, true), "simple");
    assert_string_equal(eval(d, 10, 0, true), "full"); /* no recover dwell */
    pf_degrade_free(d);
}

static void
test_degrade_override_pins_a_mode_until_cleared(void **state)
{
    pf_clock_t *clock = *state;
    pf_degrade_t *d = agent_manager(clock, 30.0);
    pf_degrade_metrics_t m;

    assert_pf_ok(pf_degrade_override(d, "offline"));
    assert_string_equal(pf_degrade_mode_name(d), "offline");
    assert_string_equal(eval(d, 95, 90, true), "offline");
    pf_degrade_metrics(d, &m);
    assert_true(m.overridden);
    assert_int_equal(m.target, 3); /* the rules still decide a target */
    /* Cleared: the target applies at once, dwell or not. */
    assert_pf_ok(pf_degrade_clear_override(d));
    assert_string_equal(pf_degrade_mode_name(d), "simple");
    assert_pf_err(pf_degrade_clear_override(d), PF_ESTATE);
    assert_pf_err(pf_degrade_override(d, "nope"), PF_EINVAL);
    assert_pf_err(pf_degrade_override(d, NULL), PF_EINVAL);
    assert_pf_err(pf_degrade_override(NULL, "full"), PF_EINVAL);
    assert_pf_err(pf_degrade_clear_override(NULL), PF_EINVAL);
    assert_string_equal(pf_degrade_mode_name(d), "simple");
    pf_degrade_free(d);
}

static void
test_degrade_gauge_rules_fire_on_the_value_set(void **state)
{
    pf_degrade_t *d = new_manager(*state, 0, 0);
    pf_degrade_rule_t r;

    assert_pf_ok(pf_degrade_add_rule_str(d, "queue_depth > 1000 -> batch"));
    pf_degrade_rule_init(&r);
    r.signal = PF_DEGRADE_SIGNAL_GAUGE;
    r.gauge = "error.rate";
    r.op = PF_DEGRADE_AT_LEAST;
    r.threshold = -0.5; /* gauges may be any finite value */
    r.mode = "offline";
    assert_pf_ok(pf_degrade_add_rule(d, &r));
    assert_string_equal(eval(d, 0, 0, true), "full"); /* never set */
    assert_pf_ok(pf_degrade_set_gauge(d, "queue_depth", 1500));
    assert_string_equal(pf_degrade_mode_name(d), "full"); /* next eval */
    assert_string_equal(eval(d, 0, 0, true), "batch");
    assert_pf_ok(pf_degrade_set_gauge(d, "queue_depth", 10));
    assert_pf_ok(pf_degrade_set_gauge(d, "error.rate", -0.5));
    assert_string_equal(eval(d, 0, 0, true), "offline");
    assert_pf_ok(pf_degrade_set_gauge(d, "unused", 1)); /* created */
    assert_pf_err(pf_degrade_set_gauge(d, NULL, 1), PF_EINVAL);
    assert_pf_err(pf_degrade_set_gauge(d, "", 1), PF_EINVAL);
    assert_pf_err(pf_degrade_set_gauge(d, "queue_depth", NAN),
                  PF_EINVAL);
    assert_pf_err(pf_degrade_set_gauge(NULL, "q", 1), PF_EINVAL);
    pf_degrade_free(d);
}

/* ---- the rule language ------------------------------------------------ */

typedef struct last_event {
    int n;
    char reason[64];
    char from[16];
    char to[16];
    unsigned from_i;
    unsigned to_i;
    pf_system_health_t health;
    int64_t time_ns;
    size_t rules_seen;
    pf_degrade_t *d;
} last_event_t;

static void
on_mode(const pf_degrade_event_t *ev, void *arg)
{
    last_event_t *le = arg;
    pf_degrade_metrics_t m;

    le->n++;
    snprintf(le->reason, sizeof(le->reason), "%s", ev->reason);
    snprintf(le->from, sizeof(le->from), "%s", ev->from_name);
    snprintf(le->to, sizeof(le->to), "%s", ev->to_name);
    le->from_i = ev->from;
    le->to_i = ev->to;
    le->health = ev->health;
    le->time_ns = ev->time_ns;
    /* Takes the manager's lock: would deadlock if called under it. */
    pf_degrade_metrics(le->d, &m);
    le->rules_seen = m.rules;
}

static pf_degrade_t *
listened_manager(pf_clock_t *clock, last_event_t *le)
{
    pf_degrade_config_t cfg;
    pf_degrade_t *d;

    memset(le, 0, sizeof(*le));
    pf_degrade_config_init(&cfg);
    cfg.name = "agent";
    cfg.modes = agent_modes;
    cfg.modes_len = 4;
    cfg.min_dwell = 0;
    cfg.clock = clock;
    cfg.listener = on_mode;
    cfg.listener_arg = le;
    assert_pf_ok(pf_degrade_new(&cfg, &d));
    le->d = d;
    return d;
}

static void
test_degrade_rule_text_parses_every_form(void **state)
{
    static const struct {
        const char *text;
        double cpu, mem;
        bool ext;
        const char *reason;
    } forms[] = {
        {"cpu > 90 -> simple", 95, 0, true, "cpu > 90"},
        {"  cpu>=90->simple  ", 90, 0, true, "cpu >= 90"},
        {"memory > 85 hysteresis 5 -> batch", 0, 86, true,
         "memory > 85 hysteresis 5"},
        {"memory <= 1.5 -> batch", 0, 1.5, true, "memory <= 1.5"},
        {"external_down -> offline", 0, 0, false, "external_down"},
        {"external services down -> offline", 0, 0, false, "external_down"},
    };
    size_t i;

    for (i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
        last_event_t le;
        pf_degrade_t *d = listened_manager(*state, &le);

        assert_pf_ok(pf_degrade_add_rule_str(d, forms[i].text));
        eval(d, forms[i].cpu, forms[i].mem, forms[i].ext);
        if (le.n != 1 || strcmp(le.reason, forms[i].reason) != 0) {
            fail_msg("\"%s\": %d events, reason \"%s\"", forms[i].text, le.n,
                     le.reason);
        }
        pf_degrade_free(d);
    }
}

static void
test_degrade_rule_text_rejects_what_does_not_parse(void **state)
{
    static const char *const bad[] = {
        "",
        "cpu > 90",
        "cpu > -> simple",
        "cpu >> 90 -> simple",
        "cpu 90 -> simple",
        "cpu = 90 -> simple",
        "-> simple",
        "cpu > 90 ->",
        "cpu > 90 -> unknown_mode",
        "cpu > 190 -> simple",
        "memory > -1 -> batch",
        "memory > 85 hysteresis -1 -> batch",
        "memory > 85 hysteresis -> batch",
        "external services up -> offline",
        "external -> offline",
        "cpu > nan -> simple",
        "cpu > inf -> simple",
        "queue > 1e999 -> batch",
    };
    pf_degrade_t *d = new_manager(*state, 0, 0);
    pf_degrade_metrics_t m;
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = pf_degrade_add_rule_str(d, bad[i]);

        if (rc != PF_EINVAL) {
            fail_msg("\"%s\" gave %d, expected PF_EINVAL", bad[i], rc);
        }
    }
    assert_pf_err(pf_degrade_add_rule_str(d, NULL), PF_EINVAL);
    assert_pf_err(pf_degrade_add_rule_str(NULL, "cpu > 1 -> full"),
                  PF_EINVAL);
    pf_degrade_metrics(d, &m);
    assert_int_equal(m.rules, 0);
    pf_degrade_free(d);
}

static void
test_degrade_add_rule_rejects_bad_rules(void **state)
{
    pf_degrade_t *d = new_manager(*state, 0, 0);
    pf_degrade_rule_t r;

    assert_pf_err(pf_degrade_add_rule(d, NULL), PF_EINVAL);
    pf_degrade_rule_init(&r);
    assert_pf_err(pf_degrade_add_rule(d, &r), PF_EINVAL); /* no mode */
    r.mode = "offline";
    r.threshold = 100.5;
    assert_pf_err(pf_degrade_add_rule(d, &r), PF_EINVAL);
    r.threshold = NAN;
    assert_pf_err(pf_degrade_add_rule(d, &r), PF_EINVAL);
    r.threshold = 50;
    r.hysteresis = NAN;
    assert_pf_err(pf_degrade_add_rule(d, &r), PF_EINVAL);
    r.hysteresis = 0;
    r.signal = (pf_degrade_signal_t)9;
    assert_pf_err(pf_degrade_add_rule(d, &r), PF_EINVAL);
    r.signal = PF_DEGRADE_SIGNAL_MEMORY;
    r.op = (pf_degrade_op_t)9;
    assert_pf_err(pf_degrade_add_rule(d, &r), PF_EINVAL);
    r.op = PF_DEGRADE_BELOW;
    r.signal = PF_DEGRADE_SIGNAL_GAUGE;
    assert_pf_err(pf_degrade_add_rule(d, &r), PF_EINVAL); /* no gauge */
    r.gauge = "";
    assert_pf_err(pf_degrade_add_rule(d, &r), PF_EINVAL);
    r.gauge = "g";
    r.threshold = INFINITY;
    assert_pf_err(pf_degrade_add_rule(d, &r), PF_EINVAL);
    r.threshold = 1e6; /* gauges are not percentages */
    assert_pf_ok(pf_degrade_add_rule(d, &r));
    pf_degrade_free(d);
}

/* ---- config ----------------------------------------------------------- */

static void
test_degrade_new_rejects_bad_config(void **state)
{
    static const char *const dup[] = {"full", "full"};
    static const char *const empty[] = {"full", ""};
    static const char *const null_mode[] = {"full", NULL};
    pf_degrade_config_t cfg;
    pf_degrade_t *d = (pf_degrade_t *)&cfg;
    pf_degrade_rule_t r;

    (void)state;
    assert_pf_err(pf_degrade_new(NULL, NULL), PF_EINVAL);
#define BAD(field, value)                                                      \
    do {                                                                       \
        pf_degrade_config_init(&cfg);                                      \
        cfg.field = value;                                                     \
        assert_pf_err(pf_degrade_new(&cfg, &d), PF_EINVAL);                \
    } while (0)
    BAD(name, NULL);
    BAD(name, "");
    BAD(modes_len, 2);  /* with modes NULL */
    BAD(modes, dup);    /* with modes_len 0 */
    BAD(min_dwell, -1);
    BAD(min_dwell, NAN);
    BAD(min_dwell_degrade, -0.5);
    BAD(sample_interval, 0);
    BAD(sample_interval, -1);
    BAD(rules_len, 1);  /* with rules NULL */
#undef BAD
    pf_degrade_config_init(&cfg);
    cfg.modes = dup;
    cfg.modes_len = 2;
    assert_pf_err(pf_degrade_new(&cfg, &d), PF_EINVAL);
    cfg.modes = empty;
    assert_pf_err(pf_degrade_new(&cfg, &d), PF_EINVAL);
    cfg.modes = null_mode;
    assert_pf_err(pf_degrade_new(&cfg, &d), PF_EINVAL);

    /* A rule naming a mode that does not exist. */
    pf_degrade_config_init(&cfg);
    pf_degrade_rule_init(&r);
    r.threshold = 90;
    r.mode = "simple"; /* the default modes have no "simple" */
    cfg.rules = &r;
    cfg.rules_len = 1;
    assert_pf_err(pf_degrade_new(&cfg, &d), PF_EINVAL);
    r.mode = "minimal";
    r.threshold = 101;
    assert_pf_err(pf_degrade_new(&cfg, &d), PF_EINVAL);
    assert_ptr_equal(d, (pf_degrade_t *)&cfg); /* untouched */
    r.threshold = 90;
    assert_pf_ok(pf_degrade_new(&cfg, &d));
    assert_string_equal(eval(d, 95, 0, true), "minimal");
    pf_degrade_free(d);
}

/* ---- listener --------------------------------------------------------- */

static void
test_degrade_listener_hears_each_change_with_its_reason(void **state)
{
    pf_clock_t *clock = *state;
    last_event_t le;
    pf_degrade_t *d = listened_manager(clock, &le);

    assert_pf_ok(pf_degrade_add_rule_str(d, "cpu > 90 -> simple"));
    assert_pf_ok(pf_degrade_add_rule_str(d, "memory > 85 -> batch"));
    pf_clock_manual_advance(clock, 7 * NS_PER_SEC);
    eval(d, 95, 90, true);
    assert_int_equal(le.n, 1);
    assert_string_equal(le.from, "full");
    assert_string_equal(le.to, "simple");
    assert_int_equal(le.to_i, 3);
    assert_string_equal(le.reason, "cpu > 90"); /* the most degraded wins */
    assert_true(le.health.cpu_usage == 95.0);
    assert_true(le.health.memory_usage == 90.0);
    assert_int_equal(le.time_ns, 7 * NS_PER_SEC);
    assert_int_equal(le.rules_seen, 2);
    eval(d, 95, 90, true); /* no change, no event */
    assert_int_equal(le.n, 1);
    eval(d, 10, 90, true);
    assert_int_equal(le.n, 2);
    assert_string_equal(le.to, "batch");
    assert_string_equal(le.reason, "memory > 85");
    eval(d, 10, 10, true);
    assert_string_equal(le.reason, "no rule fires");
    assert_pf_ok(pf_degrade_override(d, "offline"));
    assert_string_equal(le.reason, "override");
    assert_pf_ok(pf_degrade_clear_override(d));
    assert_string_equal(le.reason, "override cleared");
    assert_string_equal(le.to, "full");
    assert_int_equal(le.n, 5);
    pf_degrade_free(d);
}

/* ---- sources, breakers, health checkers ------------------------------- */

typedef struct fake_source {
    double cpu;
    double mem;
    bool ext;
    int rc;
    atomic_int calls;
} fake_source_t;

static int
fake_sample(pf_system_health_t *out, void *arg)
{
    fake_source_t *s = arg;

    atomic_fetch_add(&s->calls, 1);
    out->cpu_usage = s->cpu;
    out->memory_usage = s->mem;
    if (!s->ext) {
        out->external_services_available = false;
    }
    return s->rc;
}

static pf_degrade_t *
sourced_manager(pf_clock_t *clock, fake_source_t *src)
{
    pf_degrade_config_t cfg;
    pf_degrade_t *d;

    pf_degrade_config_init(&cfg);
    cfg.modes = agent_modes;
    cfg.modes_len = 4;
    cfg.min_dwell = 0;
    cfg.clock = clock;
    cfg.source = fake_sample;
    cfg.source_arg = src;
    assert_pf_ok(pf_degrade_new(&cfg, &d));
    assert_pf_ok(pf_degrade_add_rule_str(d, "cpu > 90 -> simple"));
    assert_pf_ok(pf_degrade_add_rule_str(d, "memory > 85 -> batch"));
    assert_pf_ok(pf_degrade_add_rule_str(d, "external_down -> offline"));
    return d;
}

static void
test_degrade_update_samples_the_source_and_decides(void **state)
{
    fake_source_t src = {95, 10, true, 0, 0};
    pf_degrade_t *d = sourced_manager(*state, &src);
    pf_system_health_t h;
    pf_degrade_metrics_t m;

    assert_pf_ok(pf_degrade_check_system_health(d, &h));
    assert_true(h.cpu_usage == 95.0);
    assert_string_equal(pf_degrade_mode_name(d), "full"); /* no change */
    assert_pf_ok(pf_degrade_update(d, &h));
    assert_string_equal(pf_degrade_mode_name(d), "simple");
    assert_true(h.external_services_available);
    src.cpu = 10;
    src.ext = false;
    assert_pf_ok(pf_degrade_update(d, NULL));
    assert_string_equal(pf_degrade_mode_name(d), "offline");
    /* A failing source changes nothing and hands its code back. */
    src.ext = true;
    src.rc = 42;
    assert_int_equal(pf_degrade_update(d, NULL), 42);
    assert_string_equal(pf_degrade_mode_name(d), "offline");
    pf_degrade_metrics(d, &m);
    assert_int_equal(m.updates, 2);
    assert_false(m.last.external_services_available);
    assert_int_equal(atomic_load(&src.calls), 4);
    assert_pf_err(pf_degrade_check_system_health(d, NULL), PF_EINVAL);
    assert_pf_err(pf_degrade_update(NULL, NULL), PF_EINVAL);
    assert_pf_err(pf_degrade_evaluate(d, NULL), PF_EINVAL);
    pf_degrade_free(d);
}

static void
test_degrade_open_breaker_means_external_services_down(void **state)
{
    pf_clock_t *clock = *state;
    fake_source_t src = {10, 10, true, 0, 0};
    pf_degrade_t *d = sourced_manager(clock, &src);
    pf_breaker_config_t bc;
    pf_breaker_t *b;
    pf_system_health_t h;

    pf_breaker_config_init(&bc);
    bc.clock = clock;
    assert_pf_ok(pf_breaker_new(&bc, &b));
    assert_pf_ok(pf_degrade_add_breaker(d, b));
    assert_pf_ok(pf_degrade_update(d, &h));
    assert_true(h.external_services_available);
    assert_string_equal(pf_degrade_mode_name(d), "full");
    pf_breaker_force_open(b);
    assert_pf_ok(pf_degrade_update(d, &h));
    assert_false(h.external_services_available);
    assert_string_equal(pf_degrade_mode_name(d), "offline");
    pf_breaker_force_close(b);
    assert_pf_ok(pf_degrade_update(d, &h));
    assert_string_equal(pf_degrade_mode_name(d), "full");
    assert_pf_err(pf_degrade_add_breaker(d, NULL), PF_EINVAL);
    assert_pf_err(pf_degrade_add_breaker(NULL, b), PF_EINVAL);
    pf_degrade_free(d);
    pf_breaker_free(b);
}

static int
status_check(pf_health_result_t *res, void *arg)
{
    res->status = *(pf_health_status_t *)arg;
    return 0;
}

static void
test_degrade_unhealthy_checker_means_external_services_down(void **state)
{
    pf_clock_t *clock = *state;
    fake_source_t src = {10, 10, true, 0, 0};
    pf_degrade_t *d = sourced_manager(clock, &src);
    pf_health_config_t hcfg;
    pf_health_checker_t *hc;
    pf_health_status_t api = PF_DEGRADED;
    pf_health_report_t *r;
    pf_system_health_t h;

    pf_health_config_init(&hcfg);
    hcfg.clock = clock;
    assert_pf_ok(pf_health_checker_new(&hcfg, &hc));
    assert_pf_ok(pf_health_add_check(hc, "api", status_check, &api));
    assert_pf_ok(pf_degrade_add_health_checker(d, hc));
    assert_pf_ok(pf_health_check_all(hc, &r));
    pf_health_report_free(r);
    assert_pf_ok(pf_degrade_update(d, &h));
    assert_true(h.external_services_available); /* degraded still serves */
    api = PF_UNHEALTHY;
    assert_pf_ok(pf_health_check_all(hc, &r));
    pf_health_report_free(r);
    assert_pf_ok(pf_degrade_update(d, &h));
    assert_false(h.external_services_available);
    assert_string_equal(pf_degrade_mode_name(d), "offline");
    assert_pf_err(pf_degrade_add_health_checker(d, NULL), PF_EINVAL);
    pf_degrade_free(d);
    pf_health_checker_free(hc);
}

/* ---- the system sampler on fixtures ----------------------------------- */

static char g_proc[4096];
static char g_cgroup[4096];

static void
fixture(const char *set)
{
    const char *root = getenv("PF_FIXTURES");

    if (root == NULL) {
        fail_msg("PF_FIXTURES is not set (run through ctest)");
    }
    snprintf(g_proc, sizeof(g_proc), "%s/degrade/%s/proc", root, set);
    snprintf(g_cgroup, sizeof(g_cgroup), "%s/degrade/%s/cgroup", root, set);
}

static void
test_degrade_sysmon_reads_memory_from_cgroup_fixtures(void **state)
{
    static const struct {
        const char *set;
        double pct;
        int64_t used;
        int64_t limit;
    } cases[] = {
        {"host", 75.0, INT64_C(6442450944), INT64_C(8589934592)},
        {"limited", 85.0, INT64_C(912680550), INT64_C(1073741824)},
        {"hybrid", 50.0, INT64_C(268435456), INT64_C(536870912)},
        {"unlimited", 75.0, INT64_C(6442450944), INT64_C(8589934592)},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        double pct = -1;
        int64_t used = 0;
        int64_t limit = 0;

        fixture(cases[i].set);
        assert_pf_ok(pf__sysmon_memory_percent(g_proc, g_cgroup, &pct, &used,
                                               &limit));
        if (fabs(pct - cases[i].pct) > 1e-6 || used != cases[i].used ||
            limit != cases[i].limit) {
            fail_msg("%s: %.6f%% %lld of %lld", cases[i].set, pct,
                     (long long)used, (long long)limit);
        }
    }
    fixture("bad");
    assert_pf_err(pf__sysmon_memory_percent(g_proc, g_cgroup, &(double){0},
                                            NULL, NULL),
                  PF_EFORMAT);
    fixture("missing");
    assert_pf_err(pf__sysmon_memory_percent(g_proc, g_cgroup, &(double){0},
                                            NULL, NULL),
                  PF_ENOTFOUND);
}

static void
test_degrade_sysmon_reads_the_cpu_quota_up_the_tree(void **state)
{
    double cpus = 0;

    (void)state;
    fixture("limited"); /* agent: 2 CPUs; its parent: no quota */
    assert_pf_ok(pf__sysmon_cpu_quota(g_proc, g_cgroup, &cpus));
    assert_true(cpus == 2.0);
    fixture("hybrid");
    assert_pf_ok(pf__sysmon_cpu_quota(g_proc, g_cgroup, &cpus));
    assert_true(cpus == 0.5);
    fixture("unlimited");
    assert_pf_ok(pf__sysmon_cpu_quota(g_proc, g_cgroup, &cpus));
    assert_true(cpus == -1.0);
    fixture("host"); /* no cgroup v2 at all */
    assert_pf_ok(pf__sysmon_cpu_quota(g_proc, g_cgroup, &cpus));
    assert_true(cpus == -1.0);
    fixture("bad");
    assert_pf_err(pf__sysmon_cpu_quota(g_proc, g_cgroup, &cpus), PF_EFORMAT);
}

/* A scratch tree of /proc and cgroup files the test rewrites between
 * samples. */
typedef struct scratch {
    char root[256];
    char proc[300];
    char cgroup[300];
} scratch_t;

static void
put_file(const char *root, const char *rel, const char *text)
{
    char path[1024];
    char *slash;
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", root, rel);
    for (slash = strchr(path + strlen(root) + 1, '/'); slash != NULL;
         slash = strchr(slash + 1, '/')) {
        *slash = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST) {
            fail_msg("mkdir %s: %s", path, strerror(errno));
        }
        *slash = '/';
    }
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static const char *const scratch_files[] = {
    "proc/self/cgroup", "proc/meminfo", "proc/stat",
    "cgroup/cgroup.controllers", "cgroup/app/cpu.max", "cgroup/app/cpu.stat",
    "cgroup/app/memory.max", "cgroup/app/memory.current",
};
static const char *const scratch_dirs[] = {"proc/self", "proc", "cgroup/app",
                                           "cgroup", ""};

static void
scratch_make(scratch_t *s, bool quota)
{
    snprintf(s->root, sizeof(s->root), "/tmp/pf_degrade_XXXXXX");
    assert_non_null(mkdtemp(s->root));
    snprintf(s->proc, sizeof(s->proc), "%s/proc", s->root);
    snprintf(s->cgroup, sizeof(s->cgroup), "%s/cgroup", s->root);
    put_file(s->root, "proc/self/cgroup", "0::/app\n");
    put_file(s->root, "proc/meminfo",
             "MemTotal: 1000000 kB\nMemAvailable: 600000 kB\n");
    put_file(s->root, "proc/stat", "cpu  1000 0 1000 8000 0 0 0 0 0 0\n");
    put_file(s->root, "cgroup/cgroup.controllers", "cpu memory\n");
    put_file(s->root, "cgroup/app/cpu.max",
             quota ? "200000 100000\n" : "max 100000\n");
    put_file(s->root, "cgroup/app/cpu.stat", "usage_usec 1000000\n");
    put_file(s->root, "cgroup/app/memory.max", "max\n");
    put_file(s->root, "cgroup/app/memory.current", "1\n");
}

static void
scratch_remove(scratch_t *s)
{
    char path[1024];
    size_t i;

    for (i = 0; i < sizeof(scratch_files) / sizeof(scratch_files[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", s->root, scratch_files[i]);
        unlink(path);
    }
    for (i = 0; i < sizeof(scratch_dirs) / sizeof(scratch_dirs[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", s->root, scratch_dirs[i]);
        rmdir(path);
    }
}

static pf_degrade_t *
file_manager(pf_clock_t *clock, const scratch_t *s)
{
    pf_degrade_config_t cfg;
    pf_degrade_t *d;

    pf_degrade_config_init(&cfg);
    cfg.clock = clock;
    cfg.min_dwell = 0;
    cfg.proc_root = s->proc;
    cfg.cgroup_root = s->cgroup;
    assert_pf_ok(pf_degrade_new(&cfg, &d));
    assert_pf_ok(pf_degrade_add_rule_str(d, "cpu > 40 -> reduced"));
    return d;
}

static void
test_degrade_cpu_is_measured_against_the_cgroup_quota(void **state)
{
    pf_clock_t *clock = *state;
    pf_system_health_t h;
    pf_degrade_t *d;
    scratch_t s;

    scratch_make(&s, true);
    d = file_manager(clock, &s); /* baseline: 1 s of CPU used at t = 0 */
    assert_pf_ok(pf_degrade_check_system_health(d, &h));
    assert_true(isnan(h.cpu_usage)); /* no time has passed yet */
    assert_true(fabs(h.memory_usage - 40.0) < 1e-9); /* no memory.max */

    /* One second later the cgroup has used one more CPU-second of the two
     * its quota allows: 50 %. The machine's /proc/stat is not looked at. */
    pf_clock_manual_advance(clock, NS_PER_SEC);
    put_file(s.root, "cgroup/app/cpu.stat", "usage_usec 2000000\n");
    assert_pf_ok(pf_degrade_update(d, &h));
    assert_true(fabs(h.cpu_usage - 50.0) < 1e-9);
    assert_string_equal(pf_degrade_mode_name(d), "reduced");

    /* Two idle seconds: 0 %. */
    pf_clock_manual_advance(clock, 2 * NS_PER_SEC);
    assert_pf_ok(pf_degrade_update(d, &h));
    assert_true(h.cpu_usage == 0.0);
    assert_string_equal(pf_degrade_mode_name(d), "full");

    /* More than the quota in the period (bursts) reads as 100 %. */
    pf_clock_manual_advance(clock, NS_PER_SEC);
    put_file(s.root, "cgroup/app/cpu.stat", "usage_usec 9000000\n");
    assert_pf_ok(pf_degrade_update(d, &h));
    assert_true(h.cpu_usage == 100.0);
    pf_degrade_free(d);
    scratch_remove(&s);
}

static void
test_degrade_cpu_without_quota_comes_from_proc_stat(void **state)
{
    pf_clock_t *clock = *state;
    pf_system_health_t h;
    pf_degrade_t *d;
    scratch_t s;

    scratch_make(&s, false);
    d = file_manager(clock, &s);
    pf_clock_manual_advance(clock, NS_PER_SEC);
    /* 300 user + 200 system + 500 idle ticks since the baseline. */
    put_file(s.root, "proc/stat", "cpu  1300 0 1200 8500 0 0 0 0 0 0\n");
    assert_pf_ok(pf_degrade_update(d, &h));
    assert_true(fabs(h.cpu_usage - 50.0) < 1e-9);
    assert_string_equal(pf_degrade_mode_name(d), "reduced");

    /* A quota appears: the next reading is a new baseline (unknown). */
    put_file(s.root, "cgroup/app/cpu.max", "100000 100000\n");
    pf_clock_manual_advance(clock, NS_PER_SEC);
    assert_pf_ok(pf_degrade_update(d, &h));
    assert_true(isnan(h.cpu_usage));
    pf_clock_manual_advance(clock, NS_PER_SEC);
    put_file(s.root, "cgroup/app/cpu.stat", "usage_usec 1250000\n");
    assert_pf_ok(pf_degrade_update(d, &h));
    assert_true(fabs(h.cpu_usage - 25.0) < 1e-9);
    pf_degrade_free(d);
    scratch_remove(&s);
}

static void
test_degrade_unreadable_files_give_unknown_figures(void **state)
{
    pf_degrade_config_t cfg;
    pf_degrade_t *d;
    pf_system_health_t h;
    pf_degrade_metrics_t m;

    fixture("bad");
    pf_degrade_config_init(&cfg);
    cfg.clock = *state;
    cfg.proc_root = g_proc;
    cfg.cgroup_root = g_cgroup;
    assert_pf_ok(pf_degrade_new(&cfg, &d));
    assert_pf_ok(pf_degrade_update(d, &h));
    assert_true(isnan(h.cpu_usage));
    assert_true(isnan(h.memory_usage));
    assert_true(h.external_services_available);
    assert_string_equal(pf_degrade_mode_name(d), "full");
    pf_degrade_metrics(d, &m);
    assert_int_equal(m.sample_errors, 2);
    pf_degrade_free(d);
}

static void
test_degrade_samples_this_machine(void **state)
{
    pf_degrade_t *d;
    pf_system_health_t h;
    pf_degrade_config_t cfg;

    (void)state;
    pf_degrade_config_init(&cfg);
    assert_pf_ok(pf_degrade_new(&cfg, &d));
    assert_pf_ok(pf_degrade_check_system_health(d, &h));
    /* The real /proc: memory is known; CPU is known or not yet. */
    assert_true(h.memory_usage >= 0.0 && h.memory_usage <= 100.0);
    assert_true(isnan(h.cpu_usage) ||
                (h.cpu_usage >= 0.0 && h.cpu_usage <= 100.0));
    pf_degrade_free(d);
}

/* ---- the background sampler ------------------------------------------- */

static void
test_degrade_background_sampler_updates_every_interval(void **state)
{
    pf_clock_t *clock = *state;
    pf_degrade_config_t cfg;
    fake_source_t src = {95, 10, true, 0, 0};
    pf_degrade_t *d;
    pf_degrade_metrics_t m;

    pf_degrade_config_init(&cfg);
    cfg.modes = agent_modes;
    cfg.modes_len = 4;
    cfg.sample_interval = 2.0;
    cfg.clock = clock;
    cfg.source = fake_sample;
    cfg.source_arg = &src;
    assert_pf_ok(pf_degrade_new(&cfg, &d));
    assert_pf_ok(pf_degrade_add_rule_str(d, "cpu > 90 -> simple"));
    assert_pf_ok(pf_degrade_start(d));
    assert_pf_err(pf_degrade_start(d), PF_ESTATE);
    pf_test_wait_for_flag(&src.calls, 1); /* the first update at once */
    pf_test_wait_for_waiters(clock, 1);
    assert_string_equal(pf_degrade_mode_name(d), "simple");
    pf_degrade_metrics(d, &m);
    assert_true(m.sampling);
    assert_int_equal(atomic_load(&src.calls), 1);
    pf_clock_manual_advance(clock, 2 * NS_PER_SEC - 1);
    assert_int_equal(pf_clock_manual_waiters(clock), 1); /* not yet */
    pf_clock_manual_advance(clock, 1);
    pf_test_wait_for_flag(&src.calls, 2);
    assert_pf_ok(pf_degrade_stop(d));
    assert_pf_err(pf_degrade_stop(d), PF_ESTATE);
    assert_int_equal(atomic_load(&src.calls), 2);
    pf_degrade_metrics(d, &m);
    assert_false(m.sampling);
    assert_pf_ok(pf_degrade_start(d)); /* restartable */
    pf_test_wait_for_flag(&src.calls, 3);
    pf_degrade_free(d); /* stops it */
}

/* ---- concurrency ------------------------------------------------------ */

typedef struct mode_stress {
    pf_degrade_t *d;
    atomic_int done;
    atomic_int bad_reads;
    atomic_long reads;
} mode_stress_t;

static void
stress_thread(void *arg, unsigned i)
{
    mode_stress_t *ms = arg;
    int k;

    if (i == 0) {
        for (k = 0; k < 2000; k++) {
            pf_system_health_t h = signals(k % 2 ? 95 : 10, k % 3 ? 90 : 10,
                                           k % 5 != 0);

            pf_degrade_evaluate(ms->d, &h);
            if (k % 100 == 0) {
                pf_degrade_set_gauge(ms->d, "g", k);
            }
        }
        atomic_store(&ms->done, 1);
        return;
    }
    while (!atomic_load(&ms->done)) {
        unsigned m = pf_degrade_mode(ms->d);
        const char *name = pf_degrade_mode_name(ms->d);

        if (m >= 4 || name == NULL) {
            atomic_fetch_add(&ms->bad_reads, 1);
        }
        atomic_fetch_add(&ms->reads, 1);
    }
}

static void
test_degrade_mode_reads_stay_valid_while_it_changes(void **state)
{
    mode_stress_t ms;
    pf_degrade_metrics_t m;

    ms.d = agent_manager(*state, 0.0);
    atomic_init(&ms.done, 0);
    atomic_init(&ms.bad_reads, 0);
    atomic_init(&ms.reads, 0);
    pf_test_run_threads(4, stress_thread, &ms);
    assert_int_equal(atomic_load(&ms.bad_reads), 0);
    pf_degrade_metrics(ms.d, &m);
    assert_int_equal(m.updates, 2000);
    assert_true(m.transitions > 0);
    pf_degrade_free(ms.d);
}

/* ---- allocation failure ----------------------------------------------- */

static void
ignore_mode(const pf_degrade_event_t *ev, void *arg)
{
    (void)ev;
    (void)arg;
}

static void
sweep_scenario(void *arg)
{
    pf_clock_t *clock = arg;
    pf_degrade_config_t cfg;
    pf_degrade_t *d;
    pf_degrade_rule_t r;
    pf_system_health_t h = signals(95, 90, false);
    int rc;

    pf_degrade_config_init(&cfg);
    pf_degrade_rule_init(&r);
    r.signal = PF_DEGRADE_SIGNAL_GAUGE;
    r.gauge = "queue";
    r.threshold = 10;
    r.mode = "reduced";
    cfg.rules = &r;
    cfg.rules_len = 1;
    cfg.clock = clock;
    cfg.min_dwell = 0;
    cfg.listener = ignore_mode;
    fixture("limited");
    cfg.proc_root = g_proc;
    cfg.cgroup_root = g_cgroup;
    rc = pf_degrade_new(&cfg, &d);
    if (rc != 0) {
        assert_pf_err(rc, PF_ENOMEM);
        return;
    }
    rc = pf_degrade_add_rule_str(d, "cpu > 90 -> offline");
    assert_true(rc == 0 || rc == PF_ENOMEM);
    rc = pf_degrade_set_gauge(d, "other", 3);
    assert_true(rc == 0 || rc == PF_ENOMEM);
    rc = pf_degrade_add_breaker(d, (struct pf_breaker *)NULL);
    assert_pf_err(rc, PF_EINVAL);
    assert_pf_ok(pf_degrade_evaluate(d, &h)); /* events may be lost */
    assert_pf_ok(pf_degrade_update(d, NULL));
    assert_pf_ok(pf_degrade_override(d, "minimal"));
    pf_degrade_free(d);
}

static void
test_degrade_survives_allocation_failure_everywhere(void **state)
{
    assert_true(pf_test_alloc_sweep(sweep_scenario, *state) > 10);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
#define T(name) CLOCK_TEST(name)
        T(test_degrade_config_init_sets_documented_defaults),
        T(test_degrade_mode_index_resolves_names),
        T(test_degrade_rules_pick_the_reference_agent_modes),
        T(test_degrade_operators_compare_as_written),
        T(test_degrade_hysteresis_keeps_a_rule_firing_until_well_back),
        T(test_degrade_recovery_waits_for_the_dwell_time),
        T(test_degrade_degrading_waits_for_its_own_dwell_time),
        T(test_degrade_override_pins_a_mode_until_cleared),
        T(test_degrade_gauge_rules_fire_on_the_value_set),
        T(test_degrade_rule_text_parses_every_form),
        T(test_degrade_rule_text_rejects_what_does_not_parse),
        T(test_degrade_add_rule_rejects_bad_rules),
        T(test_degrade_new_rejects_bad_config),
        T(test_degrade_listener_hears_each_change_with_its_reason),
        T(test_degrade_update_samples_the_source_and_decides),
        T(test_degrade_open_breaker_means_external_services_down),
        T(test_degrade_unhealthy_checker_means_external_services_down),
        T(test_degrade_sysmon_reads_memory_from_cgroup_fixtures),
        T(test_degrade_sysmon_reads_the_cpu_quota_up_the_tree),
        T(test_degrade_cpu_is_measured_against_the_cgroup_quota),
        T(test_degrade_cpu_without_quota_comes_from_proc_stat),
        T(test_degrade_unreadable_files_give_unknown_figures),
        T(test_degrade_samples_this_machine),
        T(test_degrade_background_sampler_updates_every_interval),
        T(test_degrade_mode_reads_stay_valid_while_it_changes),
        T(test_degrade_survives_allocation_failure_everywhere),
#undef T
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
