/* Every kind a registry holds, described once (metrics_desc.h explains the
 * descriptor and its metric table): the hooks the container and the
 * snapshot call, the metrics both exports write, and the kind's typed
 * public functions (registry.h). A new metric is a new row in its kind's
 * table; docs/metrics.md lists the Prometheus families, and
 * tests/test_metrics.c checks the list and both exports against these
 * tables. */
#include <math.h>
#include <stddef.h>

#include "puffinflow/breaker.h"
#include "puffinflow/bulkhead.h"
#include "puffinflow/degrade.h"
#include "puffinflow/error.h"
#include "puffinflow/health.h"
#include "puffinflow/leak.h"
#include "puffinflow/ratelimit.h"

#include "mem.h"
#include "metrics_desc.h"
#include "registry_impl.h"

/* One row: JSON member, Prometheus family (after the kind's prefix), type,
 * storage, offset, unit, help. Optional fields follow as designated
 * initialisers. */
#define ROW(j, p, t, st, off, u, h)                                            \
    .json = (j), .prom = (p), .type = (t), .store = (st), .offset = (off),     \
    .unit = (u), .help = (h)

static pf__metric_value_t
num(double d)
{
    pf__metric_value_t v = {isnan(d) ? PF__V_UNKNOWN : PF__V_NUM, 0, d, NULL};

    return v;
}

static pf__metric_value_t
integer(int64_t i)
{
    pf__metric_value_t v = {PF__V_INT, i, 0, NULL};

    return v;
}

static const pf__metric_value_t unknown = {PF__V_UNKNOWN, 0, 0, NULL};

/* ---- the functions every kind has ------------------------------------- *
 *
 * For a kind NOUN with object type OBJ and config type CFG: the hooks
 * NOUN_destroy, NOUN_create (copies cfg or the module's defaults, puts
 * the registry's name in it, calls the module's _new) and NOUN_read, and
 * the public pf_registry_add_NOUN, _get_NOUN, _find_NOUN and
 * pf_registry_set_NOUN_defaults of registry.h. */

static bool
own_ok(pf_registry_ownership_t own)
{
    return own == PF_REGISTRY_BORROW || own == PF_REGISTRY_OWN;
}

static int
typed_get(pf_registry_t *r, pf_registry_kind_t kind, const char *name,
          const void *cfg, void **out)
{
    void *object;
    int rc;

    if (out == NULL) {
        return PF_EINVAL;
    }
    rc = pf__registry_get(r, kind, name, cfg, &object);
    if (rc == 0) {
        *out = object;
    }
    return rc;
}

static int
typed_find(pf_registry_t *r, pf_registry_kind_t kind, const char *name,
           void **out)
{
    void *object;
    int rc;

    if (out == NULL) {
        return PF_EINVAL;
    }
    rc = pf_registry_find(r, kind, name, &object);
    if (rc == 0) {
        *out = object;
    }
    return rc;
}

#define KIND_FUNCTIONS(NOUN, KIND, OBJ, CFG, CFG_INIT, NEW, FREE, NAME, READ)  \
    static void NOUN##_destroy(void *object)                                   \
    {                                                                          \
        FREE(object);                                                          \
    }                                                                          \
    static int NOUN##_create(const void *cfg, const char *name, void **out)    \
    {                                                                          \
        CFG c;                                                                 \
        OBJ *o;                                                                \
        int rc;                                                                \
        if (cfg != NULL) {                                                     \
            c = *(const CFG *)cfg;                                             \
        } else {                                                               \
            CFG_INIT(&c);                                                      \
        }                                                                      \
        c.name = name;                                                         \
        rc = NEW(&c, &o);                                                      \
        if (rc == 0) {                                                         \
            *out = o;                                                          \
        }                                                                      \
        return rc;                                                             \
    }                                                                          \
    static void NOUN##_read(void *object, void *metrics)                       \
    {                                                                          \
        READ(object, metrics);                                                 \
    }                                                                          \
    int pf_registry_add_##NOUN(pf_registry_t *r, OBJ *o,                       \
                               pf_registry_ownership_t own)                    \
    {                                                                          \
        if (o == NULL || !own_ok(own)) {                                       \
            return PF_EINVAL;                                                  \
        }                                                                      \
        return pf__registry_add(r, KIND, NAME(o), o, own == PF_REGISTRY_OWN);  \
    }                                                                          \
    int pf_registry_get_##NOUN(pf_registry_t *r, const char *name,             \
                               const CFG *cfg, OBJ **out)                      \
    {                                                                          \
        void *o = NULL;                                                        \
        int rc = typed_get(r, KIND, name, cfg, out == NULL ? NULL : &o);       \
        if (rc == 0) {                                                         \
            *out = o;                                                          \
        }                                                                      \
        return rc;                                                             \
    }                                                                          \
    int pf_registry_find_##NOUN(pf_registry_t *r, const char *name, OBJ **out) \
    {                                                                          \
        void *o = NULL;                                                        \
        int rc = typed_find(r, KIND, name, out == NULL ? NULL : &o);           \
        if (rc == 0) {                                                         \
            *out = o;                                                          \
        }                                                                      \
        return rc;                                                             \
    }                                                                          \
    int pf_registry_set_##NOUN##_defaults(pf_registry_t *r, const CFG *cfg)    \
    {                                                                          \
        return pf__registry_set_defaults(r, KIND, cfg);                        \
    }

/* The registry half of a descriptor. */
#define KIND_HOOKS(NOUN, KIND, LABEL, CFG)                                     \
    .kind = (KIND), .label = (LABEL), .config_size = sizeof(CFG),              \
    .create = NOUN##_create, .destroy = NOUN##_destroy, .read = NOUN##_read

/* The snapshot half: ITEM is the kind's pf_registry_*_t, ARRAY its array
 * in pf_registry_snapshot_t. */
#define KIND_SNAPSHOT(ITEM, ARRAY)                                             \
    .snap_items = offsetof(pf_registry_snapshot_t, ARRAY),                     \
    .snap_len = offsetof(pf_registry_snapshot_t, ARRAY##_len),                 \
    .item_size = sizeof(ITEM), .metrics_offset = offsetof(ITEM, metrics)

/* ---- circuit breakers ------------------------------------------------- */

KIND_FUNCTIONS(breaker, PF_REGISTRY_BREAKER, pf_breaker_t, pf_breaker_config_t,
               pf_breaker_config_init, pf_breaker_new, pf_breaker_free,
               pf_breaker_name, pf_breaker_metrics)

#define BR(f) offsetof(pf_breaker_metrics_t, f)

static const char *
br_state_name(const void *m, int64_t v)
{
    (void)m;
    return pf_breaker_state_name((pf_breaker_state_t)v);
}

static size_t
br_states(const void *m)
{
    (void)m;
    return 3; /* closed, open, half-open: the enum's values 0..2 */
}

static const char *
br_state_label(const void *m, size_t i)
{
    (void)m;
    return pf_breaker_state_name((pf_breaker_state_t)i);
}

static pf__metric_value_t
br_in_state(const void *m, size_t i)
{
    const pf_breaker_metrics_t *b = m;

    return integer((size_t)b->state == i ? 1 : 0);
}

static const pf__metric_split_t br_one_hot = {"state", br_states,
                                              br_state_label, br_in_state};

/* failures include timeouts; the outcomes partition the calls. */
static pf__metric_value_t
br_failure_outcome(const void *m)
{
    const pf_breaker_metrics_t *b = m;

    return integer((int64_t)(b->failures - b->timeouts));
}

/* Seconds from then_ns to now on the breaker's clock; unknown for a time
 * that never happened (-1). */
static pf__metric_value_t
br_age(const pf_breaker_metrics_t *b, int64_t then_ns)
{
    return then_ns < 0 ? unknown : num((double)(b->now_ns - then_ns) / 1e9);
}

static pf__metric_value_t
br_since_transition(const void *m)
{
    const pf_breaker_metrics_t *b = m;

    return br_age(b, b->last_transition_ns);
}

static pf__metric_value_t
br_since_failure(const void *m)
{
    const pf_breaker_metrics_t *b = m;

    return br_age(b, b->last_failure_ns);
}

/* Open breakers only. */
static pf__metric_value_t
br_retry_in(const void *m)
{
    const pf_breaker_metrics_t *b = m;

    if (b->state != PF_BREAKER_OPEN || b->retry_at_ns < 0) {
        return unknown;
    }
    return num(b->retry_at_ns > b->now_ns
                   ? (double)(b->retry_at_ns - b->now_ns) / 1e9
                   : 0.0);
}

static const pf__metric_desc_t breaker_metrics[] = {
    {ROW("state", "state", PF__GAUGE, PF__INT, BR(state), NULL,
         "State of a circuit breaker: 0 closed, 1 open, 2 half-open."),
     .name = br_state_name},
    {ROW(NULL, "in_state", PF__GAUGE, PF__DERIVED, 0, NULL,
         "1 for the state a circuit breaker is in, 0 for the others."),
     .split = &br_one_hot},
    {ROW("calls", NULL, PF__COUNTER, PF__U64, BR(calls), NULL, NULL)},
    {ROW("successes", "calls_total", PF__COUNTER, PF__U64, BR(successes), NULL,
         "Calls through a circuit breaker by outcome: success, failure "
         "(counted, not a timeout), timeout, ignored (a result that is not "
         "a failure), rejected (PF_EOPEN)."),
     .label_key = "outcome", .label_value = "success"},
    {ROW("failures", NULL, PF__COUNTER, PF__U64, BR(failures), NULL, NULL)},
    {ROW(NULL, "calls_total", PF__COUNTER, PF__DERIVED, 0, NULL, NULL),
     .get = br_failure_outcome, .label_key = "outcome",
     .label_value = "failure"},
    {ROW("timeouts", "calls_total", PF__COUNTER, PF__U64, BR(timeouts), NULL,
         NULL),
     .label_key = "outcome", .label_value = "timeout"},
    {ROW("ignored", "calls_total", PF__COUNTER, PF__U64, BR(ignored), NULL,
         NULL),
     .label_key = "outcome", .label_value = "ignored"},
    {ROW("rejected", "calls_total", PF__COUNTER, PF__U64, BR(rejected), NULL,
         NULL),
     .label_key = "outcome", .label_value = "rejected"},
    {ROW("failure_rate", "failure_rate_percent", PF__GAUGE, PF__DOUBLE,
         BR(failure_rate), "percent",
         "Percent of counted calls that failed (in the window, or since "
         "creation in consecutive mode).")},
    {ROW("slow_call_rate", "slow_call_rate_percent", PF__GAUGE, PF__DOUBLE,
         BR(slow_call_rate), "percent",
         "Percent of calls in the window slower than slow_call_duration (0 "
         "in consecutive mode).")},
    {ROW("slow_calls", "slow_calls_total", PF__COUNTER, PF__U64, BR(slow_calls),
         NULL, "Calls slower than slow_call_duration (window modes).")},
    {ROW("shadow_rejected", "shadow_rejected_total", PF__COUNTER, PF__U64,
         BR(shadow_rejected), NULL,
         "Calls a shadow-mode breaker let through that it would have "
         "rejected.")},
    {ROW("reclaimed", "reclaimed_trials_total", PF__COUNTER, PF__U64,
         BR(reclaimed), NULL,
         "Half-open trials never recorded in time, counted as failures.")},
    {ROW("transitions", "transitions_total", PF__COUNTER, PF__U64,
         BR(transitions), NULL, "State changes of a circuit breaker.")},
    {ROW("times_opened", "opened_total", PF__COUNTER, PF__U64, BR(times_opened),
         NULL, "Times a circuit breaker opened.")},
    {ROW("consecutive_failures", "consecutive_failures", PF__GAUGE, PF__UINT,
         BR(consecutive_failures), NULL,
         "Failures in a row while closed (consecutive mode).")},
    {ROW("half_open_in_flight", "half_open_in_flight", PF__GAUGE, PF__UINT,
         BR(half_open_in_flight), NULL,
         "Trial calls taken and not yet recorded.")},
    {ROW("recovery_timeout", "recovery_timeout_seconds", PF__GAUGE, PF__NS,
         BR(recovery_timeout_ns), "seconds",
         "The open period now (grown by recovery_multiplier, before "
         "jitter).")},
    {ROW(NULL, "retry_in_seconds", PF__GAUGE, PF__DERIVED, 0, "seconds",
         "Seconds until an open breaker lets trials through (open breakers "
         "only)."),
     .get = br_retry_in},
    {ROW("seconds_since_transition", "seconds_since_transition", PF__GAUGE,
         PF__DERIVED, 0, "seconds",
         "Seconds since the last state change (breakers that have changed "
         "state)."),
     .get = br_since_transition},
    {ROW("seconds_since_failure", "seconds_since_failure", PF__GAUGE,
         PF__DERIVED, 0, "seconds",
         "Seconds since the last failure (breakers that have failed)."),
     .get = br_since_failure},
    {ROW("forced_open", "forced_open", PF__GAUGE, PF__BOOL, BR(forced_open),
         NULL, "1 while held open by pf_breaker_force_open.")},
    {ROW("shadow", "shadow", PF__GAUGE, PF__BOOL, BR(shadow), NULL,
         "1 for a breaker in shadow mode (never rejects).")},
};

static const pf__kind_desc_t breaker_kind = {
    KIND_HOOKS(breaker, PF_REGISTRY_BREAKER, "breaker", pf_breaker_config_t),
    KIND_SNAPSHOT(pf_registry_breaker_t, breakers),
    .json = "breakers",
    .prom_prefix = "puffinflow_breaker_",
    .name_label = "name",
    .metrics = PF__TABLE(breaker_metrics),
};

/* ---- keyed breaker groups --------------------------------------------- */

KIND_FUNCTIONS(breaker_group, PF_REGISTRY_BREAKER_GROUP, pf_breaker_group_t,
               pf_breaker_group_config_t, pf_breaker_group_config_init,
               pf_breaker_group_new, pf_breaker_group_free,
               pf_breaker_group_name, pf_breaker_group_metrics)

typedef struct group_visit {
    pf_registry_breaker_group_t *g;
    size_t cap;
    int rc;
} group_visit_t;

/* Append one of the group's breakers (the group keeps it alive during the
 * visit). Stops the walk on allocation failure. */
static int
group_visit(const char *key, pf_breaker_t *b, void *arg)
{
    group_visit_t *v = arg;
    pf_registry_breaker_t *item;
    char *name;

    (void)key;
    if (pf__grow((void **)&v->g->breakers, &v->cap, v->g->breakers_len + 1,
                 sizeof(*v->g->breakers)) != 0) {
        v->rc = PF_ENOMEM;
        return 1;
    }
    name = pf__name_dup(pf_breaker_name(b));
    if (name == NULL) {
        v->rc = PF_ENOMEM;
        return 1;
    }
    item = &v->g->breakers[v->g->breakers_len++];
    item->name = name;
    pf_breaker_metrics(b, &item->metrics);
    return 0;
}

static int
group_fill(void *object, void *item)
{
    group_visit_t v = {item, 0, 0};
    int rc = pf_breaker_group_foreach(object, group_visit, &v);

    return v.rc != 0 ? v.rc : rc;
}

static void
group_clear(void *item)
{
    pf_registry_breaker_group_t *g = item;
    size_t i;

    for (i = 0; i < g->breakers_len; i++) {
        pf__free((char *)g->breakers[i].name);
    }
    pf__free(g->breakers);
}

#define GR(f) offsetof(pf_breaker_group_metrics_t, f)

static const pf__metric_desc_t group_metrics[] = {
    {ROW("size", "size", PF__GAUGE, PF__SIZE, GR(size), NULL,
         "Breakers in a keyed group now.")},
    {ROW("max_breakers", "max_breakers", PF__GAUGE, PF__SIZE, GR(max_breakers),
         NULL, "Most breakers a keyed group holds.")},
    {ROW("created", "created_total", PF__COUNTER, PF__U64, GR(created), NULL,
         "Breakers a keyed group created.")},
    {ROW("evicted", "evicted_total", PF__COUNTER, PF__U64, GR(evicted), NULL,
         "Closed, unused breakers a keyed group dropped to make room.")},
    {ROW("rejected_full", "rejected_total", PF__COUNTER, PF__U64,
         GR(rejected_full), NULL,
         "New keys a full keyed group refused (PF_EFULL).")},
};

static const pf__kind_children_t group_breakers = {
    &breaker_kind,
    "breakers",
    offsetof(pf_registry_breaker_group_t, breakers),
    offsetof(pf_registry_breaker_group_t, breakers_len),
    "group",
    false,
};

static const pf__kind_desc_t group_kind = {
    KIND_HOOKS(breaker_group, PF_REGISTRY_BREAKER_GROUP, "breaker_group",
               pf_breaker_group_config_t),
    KIND_SNAPSHOT(pf_registry_breaker_group_t, breaker_groups),
    .fill = group_fill,
    .clear = group_clear,
    .json = "breaker_groups",
    .prom_prefix = "puffinflow_breaker_group_",
    .name_label = "group",
    .metrics = PF__TABLE(group_metrics),
    .children = &group_breakers,
};

/* ---- bulkheads -------------------------------------------------------- */

KIND_FUNCTIONS(bulkhead, PF_REGISTRY_BULKHEAD, pf_bulkhead_t,
               pf_bulkhead_config_t, pf_bulkhead_config_init, pf_bulkhead_new,
               pf_bulkhead_free, pf_bulkhead_name, pf_bulkhead_metrics)

#define BH(f) offsetof(pf_bulkhead_metrics_t, f)

static bool
bh_adaptive(const void *m)
{
    return ((const pf_bulkhead_metrics_t *)m)->adaptive;
}

/* peak_in_use has two rows: Prometheus writes it with the gauges, JSON
 * after the rejections, as both always have. */
static const pf__metric_desc_t bulkhead_metrics[] = {
    {ROW("max_concurrent", "max_concurrent", PF__GAUGE, PF__UINT,
         BH(max_concurrent), NULL,
         "Callers a bulkhead lets in at once (adaptive: its current "
         "limit).")},
    {ROW("in_use", "in_use", PF__GAUGE, PF__UINT, BH(in_use), NULL,
         "Callers inside a bulkhead now.")},
    {ROW("available", "available", PF__GAUGE, PF__UINT, BH(available), NULL,
         "Free slots of a bulkhead now.")},
    {ROW("waiting", "waiting", PF__GAUGE, PF__UINT, BH(waiting), NULL,
         "Callers and tickets waiting for a slot now.")},
    {ROW("max_queue_size", "max_queue_size", PF__GAUGE, PF__UINT,
         BH(max_queue_size), NULL, "Callers allowed to wait at once.")},
    {ROW(NULL, "peak_in_use", PF__GAUGE, PF__UINT, BH(peak_in_use), NULL,
         "Most callers ever inside a bulkhead at once.")},
    {ROW("accepted", "accepted_total", PF__COUNTER, PF__U64, BH(accepted), NULL,
         "Entries a bulkhead granted.")},
    {ROW("rejected_full", "rejected_total", PF__COUNTER, PF__U64,
         BH(rejected_full), NULL,
         "Callers a bulkhead turned away with PF_EFULL, by reason: full (no "
         "room to wait) or timeout (the wait ran out)."),
     .label_key = "reason", .label_value = "full"},
    {ROW("rejected_timeout", "rejected_total", PF__COUNTER, PF__U64,
         BH(rejected_timeout), NULL, NULL),
     .label_key = "reason", .label_value = "timeout"},
    {ROW("peak_in_use", NULL, PF__GAUGE, PF__UINT, BH(peak_in_use), NULL,
         NULL)},
    {ROW("cancelled", "cancelled_total", PF__COUNTER, PF__U64, BH(cancelled),
         NULL, "Waits ended by the caller's deadline or cancellation token.")},
    {ROW("leave_without_enter", "leave_without_enter_total", PF__COUNTER,
         PF__U64, BH(leave_without_enter), NULL,
         "Leaves ignored because nobody was inside.")},
    {ROW("adaptive", NULL, PF__GAUGE, PF__BOOL, BH(adaptive), NULL, NULL)},
    {ROW("adaptive_floor", "adaptive_floor", PF__GAUGE, PF__UINT,
         BH(adaptive_floor), NULL,
         "Lowest limit an adaptive bulkhead may set itself."),
     .when = bh_adaptive, .json_when = true},
    {ROW("adaptive_ceiling", "adaptive_ceiling", PF__GAUGE, PF__UINT,
         BH(adaptive_ceiling), NULL,
         "Highest limit an adaptive bulkhead may set itself."),
     .when = bh_adaptive, .json_when = true},
};

static const pf__kind_desc_t bulkhead_kind = {
    KIND_HOOKS(bulkhead, PF_REGISTRY_BULKHEAD, "bulkhead",
               pf_bulkhead_config_t),
    KIND_SNAPSHOT(pf_registry_bulkhead_t, bulkheads),
    .json = "bulkheads",
    .prom_prefix = "puffinflow_bulkhead_",
    .name_label = "name",
    .metrics = PF__TABLE(bulkhead_metrics),
};

/* ---- rate limiters ---------------------------------------------------- */

KIND_FUNCTIONS(ratelimit, PF_REGISTRY_RATELIMIT, pf_ratelimit_t,
               pf_ratelimit_config_t, pf_ratelimit_config_init,
               pf_ratelimit_new, pf_ratelimit_free, pf_ratelimit_name,
               pf_ratelimit_metrics)

#define RL(f) offsetof(pf_ratelimit_metrics_t, f)

static const pf__metric_desc_t ratelimit_metrics[] = {
    {ROW("rate", "rate", PF__GAUGE, PF__DOUBLE_RAW, RL(rate), NULL,
         "Permits per second a rate limiter refills.")},
    {ROW("burst", "burst", PF__GAUGE, PF__UINT, RL(burst), NULL,
         "Most permits a rate limiter holds at once.")},
    {ROW("available", "available_permits", PF__GAUGE, PF__UINT, RL(available),
         NULL, "Whole permits in the bucket now.")},
    {ROW("acquired", "acquired_permits_total", PF__COUNTER, PF__U64,
         RL(acquired), NULL, "Permits handed out (acquired or reserved).")},
    {ROW("rejected", "rejected_total", PF__COUNTER, PF__U64, RL(rejected), NULL,
         "Requests refused with PF_ERATELIMIT.")},
    {ROW("waited", "waited_total", PF__COUNTER, PF__U64, RL(waited), NULL,
         "Requests that had to wait for their permits.")},
    {ROW("refunded", "refunded_permits_total", PF__COUNTER, PF__U64,
         RL(refunded), NULL, "Permits given back.")},
};

static const pf__kind_desc_t ratelimit_kind = {
    KIND_HOOKS(ratelimit, PF_REGISTRY_RATELIMIT, "ratelimit",
               pf_ratelimit_config_t),
    KIND_SNAPSHOT(pf_registry_ratelimit_t, ratelimits),
    .json = "ratelimits",
    .prom_prefix = "puffinflow_ratelimit_",
    .name_label = "name",
    .metrics = PF__TABLE(ratelimit_metrics),
};

/* ---- health checkers and their checks --------------------------------- */

KIND_FUNCTIONS(health_checker, PF_REGISTRY_HEALTH, pf_health_checker_t,
               pf_health_config_t, pf_health_config_init, pf_health_checker_new,
               pf_health_checker_free, pf_health_checker_name,
               pf_health_metrics)

/* Copy the checks of a health snapshot report (nothing runs). */
static int
health_fill(void *object, void *item)
{
    pf_registry_health_t *h = item;
    pf_health_report_t *rep;
    size_t n;
    size_t i;
    int rc;

    rc = pf_health_snapshot(object, &rep);
    if (rc != 0) {
        return rc;
    }
    n = pf_health_report_count(rep);
    if (n > 0) {
        h->checks = pf__calloc(n, sizeof(*h->checks));
        if (h->checks == NULL) {
            pf_health_report_free(rep);
            return PF_ENOMEM;
        }
    }
    for (i = 0; i < n; i++) {
        const pf_health_entry_t *e = pf_health_report_entry(rep, i);
        pf_registry_health_check_t *c = &h->checks[i];

        c->name = pf__name_dup(e->name);
        c->message = pf__utf8_dup(e->message);
        h->checks_len++;
        if (c->name == NULL || c->message == NULL) {
            pf_health_report_free(rep);
            return PF_ENOMEM;
        }
        c->status = e->status;
        c->critical = e->critical;
        c->timed_out = e->timed_out;
        c->duration = e->duration;
        c->time_ns = e->time_ns;
        c->consecutive_failures = e->consecutive_failures;
        c->runs = e->runs;
        c->failures = e->failures;
        c->timeouts = e->timeouts;
    }
    pf_health_report_free(rep);
    return 0;
}

static void
health_clear(void *item)
{
    pf_registry_health_t *h = item;
    size_t i;

    for (i = 0; i < h->checks_len; i++) {
        pf__free((char *)h->checks[i].name);
        pf__free((char *)h->checks[i].message);
    }
    pf__free(h->checks);
}

static const char *
health_status_name(const void *m, int64_t v)
{
    (void)m;
    return pf_health_status_name((pf_health_status_t)v);
}

#define HC(f) offsetof(pf_registry_health_check_t, f)

/* A check that never ran has a status and a duration that mean nothing
 * yet: Prometheus leaves them out. */
static bool
hc_ran(const void *m)
{
    return ((const pf_registry_health_check_t *)m)->runs > 0;
}

/* Wall-clock seconds of the last result; unknown when it never ran. */
static pf__metric_value_t
hc_time(const void *m)
{
    const pf_registry_health_check_t *c = m;

    return c->time_ns == 0 ? unknown : num((double)c->time_ns / 1e9);
}

static const pf__metric_desc_t check_metrics[] = {
    {ROW("status", "status", PF__GAUGE, PF__INT, HC(status), NULL,
         "Status of a check's latest result: 0 healthy, 1 degraded, 2 "
         "unhealthy (checks that never ran are left out)."),
     .name = health_status_name, .when = hc_ran},
    {ROW("message", NULL, PF__GAUGE, PF__STR, HC(message), NULL, NULL)},
    {ROW("critical", NULL, PF__GAUGE, PF__BOOL, HC(critical), NULL, NULL)},
    {ROW("timed_out", NULL, PF__GAUGE, PF__BOOL, HC(timed_out), NULL, NULL)},
    {ROW("duration", "check_duration_seconds", PF__GAUGE, PF__DOUBLE_RAW,
         HC(duration), "seconds",
         "Seconds a check's latest run took (its timeout if it timed "
         "out)."),
     .when = hc_ran},
    {ROW("time", NULL, PF__GAUGE, PF__DERIVED, 0, "seconds", NULL),
     .get = hc_time},
    {ROW("consecutive_failures", "check_consecutive_failures", PF__GAUGE,
         PF__UINT, HC(consecutive_failures), NULL,
         "Unhealthy results of a check in a row.")},
    {ROW("runs", "check_results_total", PF__COUNTER, PF__U64, HC(runs), NULL,
         "Results a check has had.")},
    {ROW("failures", "check_failures_total", PF__COUNTER, PF__U64, HC(failures),
         NULL, "Unhealthy results of a check (before flap damping).")},
    {ROW("timeouts", "check_timeouts_total", PF__COUNTER, PF__U64, HC(timeouts),
         NULL, "Results of a check that were timeouts.")},
};

/* A check is not a registry kind: it lives in its checker's item. */
static const pf__kind_desc_t check_kind = {
    .kind = PF_REGISTRY_ANY,
    .item_size = sizeof(pf_registry_health_check_t),
    .metrics_offset = 0,
    .prom_prefix = "puffinflow_health_",
    .name_label = "check",
    .metrics = PF__TABLE(check_metrics),
};

#define HM(f) offsetof(pf_health_metrics_t, f)

static const pf__metric_desc_t health_metrics[] = {
    {ROW("status", "overall_status", PF__GAUGE, PF__INT, HM(status), NULL,
         "Overall status of a health checker's latest results: 0 healthy, 1 "
         "degraded, 2 unhealthy."),
     .name = health_status_name},
    {ROW("checks_registered", "checks", PF__GAUGE, PF__SIZE, HM(checks), NULL,
         "Checks registered in a health checker.")},
    {ROW("reports", "reports_total", PF__COUNTER, PF__U64, HM(reports), NULL,
         "Health reports made (check_all, tagged or one check).")},
    {ROW("runs", "check_runs_started_total", PF__COUNTER, PF__U64, HM(runs),
         NULL, "Check runs a health checker started.")},
    {ROW("cache_hits", "cache_hits_total", PF__COUNTER, PF__U64, HM(cache_hits),
         NULL, "Check results reused from the cache instead of run.")},
    {ROW("shared", "shared_runs_total", PF__COUNTER, PF__U64, HM(shared), NULL,
         "Times a caller waited for a run another caller started.")},
    {ROW("failures", NULL, PF__COUNTER, PF__U64, HM(failures), NULL, NULL)},
    {ROW("timeouts", NULL, PF__COUNTER, PF__U64, HM(timeouts), NULL, NULL)},
    {ROW("running", "checks_running", PF__GAUGE, PF__SIZE, HM(running), NULL,
         "Checks running now, hung ones included.")},
    {ROW("hung", "checks_hung", PF__GAUGE, PF__SIZE, HM(hung), NULL,
         "Checks still running past their timeout.")},
};

static const pf__kind_children_t health_checks = {
    &check_kind,
    "checks",
    offsetof(pf_registry_health_t, checks),
    offsetof(pf_registry_health_t, checks_len),
    "checker",
    true,
};

static const pf__kind_desc_t health_kind = {
    KIND_HOOKS(health_checker, PF_REGISTRY_HEALTH, "health",
               pf_health_config_t),
    KIND_SNAPSHOT(pf_registry_health_t, health),
    .fill = health_fill,
    .clear = health_clear,
    .json = "health_checkers",
    .prom_prefix = "puffinflow_health_",
    .name_label = "checker",
    .metrics = PF__TABLE(health_metrics),
    .children = &health_checks,
};

/* ---- leak detectors --------------------------------------------------- */

KIND_FUNCTIONS(leak_detector, PF_REGISTRY_LEAK, pf_leak_detector_t,
               pf_leak_config_t, pf_leak_config_init, pf_leak_detector_new,
               pf_leak_detector_free, pf_leak_detector_name,
               pf_leak_detector_metrics)

#define LS(f) offsetof(pf_leak_sample_t, f)

static bool
ls_has_limit(const void *m)
{
    return ((const pf_leak_sample_t *)m)->memory_limit_bytes > 0;
}

static size_t
ls_tcp_states(const void *m)
{
    (void)m;
    return PF_LEAK_TCP_STATES - 1; /* state 0 is not a TCP state */
}

static const char *
ls_tcp_state_label(const void *m, size_t i)
{
    (void)m;
    return pf_leak_tcp_state_name((int)i + 1);
}

static pf__metric_value_t
ls_tcp_state_count(const void *m, size_t i)
{
    return integer(((const pf_leak_sample_t *)m)->tcp_by_state[i + 1]);
}

static const pf__metric_split_t ls_tcp_by_state = {
    NULL, ls_tcp_states, ls_tcp_state_label, ls_tcp_state_count};

/* threads has two rows: JSON keeps pf_leak_sample_t's order, Prometheus
 * writes it last, as both always have. */
static const pf__metric_desc_t leak_sample_metrics[] = {
    {ROW("pid", NULL, PF__GAUGE, PF__INT, LS(pid), NULL, NULL)},
    {ROW("rss_bytes", "sample_resident_memory_bytes", PF__GAUGE, PF__I64_OPT,
         LS(rss_bytes), "bytes",
         "Resident memory of the watched process at the last sample.")},
    {ROW("memory_limit_bytes", NULL, PF__GAUGE, PF__I64_OPT,
         LS(memory_limit_bytes), "bytes", NULL)},
    {ROW("memory_fraction", "sample_memory_fraction", PF__GAUGE, PF__DOUBLE,
         LS(memory_fraction), NULL,
         "Resident memory over the memory limit at the last sample."),
     .when = ls_has_limit},
    {ROW("threads", NULL, PF__GAUGE, PF__I64_OPT, LS(threads), NULL, NULL)},
    {ROW("open_fds", "sample_open_fds", PF__GAUGE, PF__I64_OPT, LS(open_fds),
         NULL, "Open fds of the watched process at the last sample.")},
    {ROW("fd_limit", "sample_fd_limit", PF__GAUGE, PF__I64_OPT, LS(fd_limit),
         NULL, "Its RLIMIT_NOFILE soft limit at the last sample.")},
    {ROW("sockets", "sample_sockets", PF__GAUGE, PF__I64_OPT, LS(sockets), NULL,
         "Its sockets of every kind at the last sample.")},
    {ROW("tcp", NULL, PF__GAUGE, PF__I64_OPT, LS(tcp), NULL, NULL)},
    {ROW("udp", NULL, PF__GAUGE, PF__I64_OPT, LS(udp), NULL, NULL)},
    {ROW("unix", NULL, PF__GAUGE, PF__I64_OPT, LS(unix_sockets), NULL, NULL)},
    {ROW("connections", "sample_connections", PF__GAUGE, PF__I64_OPT,
         LS(connections), NULL, "Its TCP and UDP sockets at the last sample.")},
    {ROW("tcp_by_state", NULL, PF__GAUGE, PF__DERIVED, 0, NULL, NULL),
     .split = &ls_tcp_by_state},
    {ROW(NULL, "sample_threads", PF__GAUGE, PF__I64_OPT, LS(threads), NULL,
         "Its threads at the last sample.")},
};

static const pf__metric_table_t leak_sample_table =
    PF__TABLE(leak_sample_metrics);

#define LK(f) offsetof(pf_leak_metrics_t, f)

/* The last sample is all zero until a sample succeeded. */
static bool
lk_sampled(const void *m)
{
    const pf_leak_metrics_t *l = m;

    return l->samples > l->sample_errors;
}

static size_t
lk_alert_kinds(const void *m)
{
    (void)m;
    return PF_LEAK_ALERT_KINDS;
}

static const char *
lk_alert_label(const void *m, size_t i)
{
    (void)m;
    return pf_leak_alert_kind_name((pf_leak_alert_kind_t)i);
}

static pf__metric_value_t
lk_alerting(const void *m, size_t i)
{
    pf__metric_value_t v = {PF__V_BOOL, 0, 0, NULL};

    v.i = ((const pf_leak_metrics_t *)m)->alerting[i] ? 1 : 0;
    return v;
}

static const pf__metric_split_t lk_alerts = {"kind", lk_alert_kinds,
                                             lk_alert_label, lk_alerting};

static const pf__metric_desc_t leak_metrics[] = {
    {ROW("tracked_allocations", "tracked_allocations", PF__GAUGE, PF__U64,
         LK(total_allocations), NULL,
         "Allocations tracked and not released now.")},
    {ROW("allocations", "allocations_total", PF__COUNTER, PF__U64,
         LK(allocations), NULL, "track_allocation calls.")},
    {ROW("releases", "releases_total", PF__COUNTER, PF__U64, LK(releases), NULL,
         "Successful track_release calls.")},
    {ROW("current_leaks", "current_leaks", PF__GAUGE, PF__U64,
         LK(current_leaks), NULL,
         "Allocations held longer than leak_threshold now.")},
    {ROW("total_detected", "detected_total", PF__COUNTER, PF__U64,
         LK(total_detected), NULL, "Leaks ever detected.")},
    {ROW("leak_threshold", NULL, PF__GAUGE, PF__DOUBLE, LK(leak_threshold),
         "seconds", NULL)},
    {ROW("oldest_allocation_age", "oldest_allocation_age_seconds", PF__GAUGE,
         PF__DOUBLE, LK(oldest_allocation_age), "seconds",
         "Age of the oldest allocation held (when any).")},
    {ROW("samples", "samples_total", PF__COUNTER, PF__U64, LK(samples), NULL,
         "Process samples taken.")},
    {ROW("sample_errors", "sample_errors_total", PF__COUNTER, PF__U64,
         LK(sample_errors), NULL, "Process samples that failed.")},
    {ROW("alerts", "alerts_total", PF__COUNTER, PF__U64, LK(alerts), NULL,
         "Alerts raised (clearings not counted).")},
    {ROW("monitoring", "monitoring", PF__GAUGE, PF__BOOL, LK(monitoring), NULL,
         "1 while the monitoring thread runs.")},
    {ROW("alerting", "alerting", PF__GAUGE, PF__DERIVED, 0, NULL,
         "1 while an alert of this kind is raised and not cleared."),
     .split = &lk_alerts},
    {ROW("memory_slope_mb_per_minute", "memory_slope_mb_per_minute", PF__GAUGE,
         PF__DOUBLE, LK(memory_slope), "mb_per_minute",
         "Growth of resident memory over the trend window.")},
    {ROW("fd_slope_per_minute", "fd_slope_per_minute", PF__GAUGE, PF__DOUBLE,
         LK(fd_slope), "per_minute",
         "Growth of the open fd count over the trend window.")},
    {ROW("last_sample", NULL, PF__GAUGE, PF__OBJECT, LK(last_sample), NULL,
         NULL),
     .sub = &leak_sample_table, .when = lk_sampled},
};

static const pf__kind_desc_t leak_kind = {
    KIND_HOOKS(leak_detector, PF_REGISTRY_LEAK, "leak", pf_leak_config_t),
    KIND_SNAPSHOT(pf_registry_leak_detector_t, leak_detectors),
    .json = "leak_detectors",
    .prom_prefix = "puffinflow_leak_",
    .name_label = "name",
    .metrics = PF__TABLE(leak_metrics),
};

/* ---- degradation managers --------------------------------------------- */

KIND_FUNCTIONS(degrade, PF_REGISTRY_DEGRADE, pf_degrade_t,
               pf_degrade_config_t, pf_degrade_config_init,
               pf_degrade_new, pf_degrade_free, pf_degrade_name,
               pf_degrade_metrics)

/* Copy a manager's mode names (immutable after it was made). */
static int
degradation_fill(void *object, void *item)
{
    pf_registry_degrade_t *g = item;
    size_t n = pf_degrade_mode_count(object);
    size_t i;

    if (n == 0) {
        return 0;
    }
    g->modes = pf__calloc(n, sizeof(*g->modes));
    if (g->modes == NULL) {
        return PF_ENOMEM;
    }
    for (i = 0; i < n; i++) {
        g->modes[i] = pf__name_dup(pf_degrade_mode_name_at(object, i));
        if (g->modes[i] == NULL) {
            return PF_ENOMEM;
        }
        g->modes_len++;
    }
    return 0;
}

static void
degradation_clear(void *item)
{
    pf_registry_degrade_t *g = item;
    size_t i;

    for (i = 0; i < g->modes_len; i++) {
        pf__free((char *)g->modes[i]);
    }
    pf__free(g->modes);
}

/* The item around a manager's metrics: the mode names live beside them. */
static const pf_registry_degrade_t *
dg_item(const void *m)
{
    const char *item =
        (const char *)m - offsetof(pf_registry_degrade_t, metrics);

    return (const pf_registry_degrade_t *)(const void *)item;
}

static const char *
dg_mode_name(const void *m, int64_t v)
{
    const pf_registry_degrade_t *g = dg_item(m);

    return v >= 0 && (size_t)v < g->modes_len ? g->modes[v] : NULL;
}

static size_t
dg_modes(const void *m)
{
    return dg_item(m)->modes_len;
}

static const char *
dg_mode_label(const void *m, size_t i)
{
    return dg_item(m)->modes[i];
}

static pf__metric_value_t
dg_in_mode(const void *m, size_t i)
{
    return integer(((const pf_degrade_metrics_t *)m)->mode == i ? 1 : 0);
}

static const pf__metric_split_t dg_one_hot = {"mode", dg_modes, dg_mode_label,
                                              dg_in_mode};

static void
dg_mode_list(pf__sb_t *sb, const void *m)
{
    const pf_registry_degrade_t *g = dg_item(m);
    size_t i;

    pf__sb_append(sb, "[");
    for (i = 0; i < g->modes_len; i++) {
        if (i > 0) {
            pf__sb_append(sb, ",");
        }
        pf__sb_json_str(sb, g->modes[i]);
    }
    pf__sb_append(sb, "]");
}

#define SH(f) offsetof(pf_system_health_t, f)

static const pf__metric_desc_t signal_metrics[] = {
    {ROW("cpu_usage", "cpu_usage_percent", PF__GAUGE, PF__DOUBLE, SH(cpu_usage),
         "percent", "CPU usage at the last evaluation (when known).")},
    {ROW("memory_usage", "memory_usage_percent", PF__GAUGE, PF__DOUBLE,
         SH(memory_usage), "percent",
         "Memory usage at the last evaluation (when known).")},
    {ROW("external_services_available", "external_services_available",
         PF__GAUGE, PF__BOOL, SH(external_services_available), NULL,
         "1 when no registered breaker was open and no registered health "
         "checker unhealthy at the last evaluation.")},
};

static const pf__metric_table_t signal_table = PF__TABLE(signal_metrics);

#define DG(f) offsetof(pf_degrade_metrics_t, f)

static bool
dg_evaluated(const void *m)
{
    return ((const pf_degrade_metrics_t *)m)->updates > 0;
}

static const pf__metric_desc_t degradation_metrics[] = {
    {ROW("mode", "mode", PF__GAUGE, PF__UINT, DG(mode), NULL,
         "Index of the current mode: 0 normal, higher more degraded."),
     .name = dg_mode_name},
    {ROW("mode_index", NULL, PF__GAUGE, PF__UINT, DG(mode), NULL, NULL)},
    {ROW(NULL, "in_mode", PF__GAUGE, PF__DERIVED, 0, NULL,
         "1 for the mode a degradation manager is in, 0 for the others."),
     .split = &dg_one_hot},
    {ROW("target", "target_mode", PF__GAUGE, PF__UINT, DG(target), NULL,
         "Index of the mode the rules asked for last."),
     .name = dg_mode_name},
    {ROW("modes", NULL, PF__GAUGE, PF__DERIVED, 0, NULL, NULL),
     .json_fn = dg_mode_list},
    {ROW("overridden", "overridden", PF__GAUGE, PF__BOOL, DG(overridden), NULL,
         "1 while a manual override pins the mode.")},
    {ROW("sampling", "sampling", PF__GAUGE, PF__BOOL, DG(sampling), NULL,
         "1 while the background sampler runs.")},
    {ROW("seconds_in_mode", "seconds_in_mode", PF__GAUGE, PF__DOUBLE,
         DG(time_in_mode), "seconds", "Seconds since the last mode change.")},
    {ROW("updates", "updates_total", PF__COUNTER, PF__U64, DG(updates), NULL,
         "Evaluations of the rules.")},
    {ROW("transitions", "transitions_total", PF__COUNTER, PF__U64,
         DG(transitions), NULL, "Mode changes.")},
    {ROW("sample_errors", "sample_errors_total", PF__COUNTER, PF__U64,
         DG(sample_errors), NULL, "Figures the sampler could not read.")},
    {ROW("rules", NULL, PF__GAUGE, PF__SIZE, DG(rules), NULL, NULL)},
    {ROW("last", NULL, PF__GAUGE, PF__OBJECT, DG(last), NULL, NULL),
     .sub = &signal_table, .when = dg_evaluated},
};

static const pf__kind_desc_t degradation_kind = {
    KIND_HOOKS(degrade, PF_REGISTRY_DEGRADE, "degrade",
               pf_degrade_config_t),
    KIND_SNAPSHOT(pf_registry_degrade_t, degradations),
    .fill = degradation_fill,
    .clear = degradation_clear,
    .json = "degradations",
    .prom_prefix = "puffinflow_degradation_",
    .name_label = "name",
    .metrics = PF__TABLE(degradation_metrics),
};

/* ---- the process ------------------------------------------------------ */

#define PM(f) offsetof(pf_process_metrics_t, f)

static const pf__metric_desc_t process_metrics[] = {
    {ROW("open_fds", "open_fds", PF__GAUGE, PF__I64_OPT, PM(open_fds), NULL,
         "Open file descriptors of this process.")},
    {ROW("max_fds", "max_fds", PF__GAUGE, PF__I64_OPT, PM(max_fds), NULL,
         "Soft limit on open file descriptors (RLIMIT_NOFILE).")},
    {ROW("resident_memory_bytes", "resident_memory_bytes", PF__GAUGE,
         PF__I64_OPT, PM(resident_bytes), "bytes",
         "Resident memory of this process (VmRSS).")},
    {ROW("virtual_memory_bytes", "virtual_memory_bytes", PF__GAUGE, PF__I64_OPT,
         PM(virtual_bytes), "bytes",
         "Virtual memory of this process (VmSize).")},
    {ROW("threads", "threads", PF__GAUGE, PF__I64_OPT, PM(threads), NULL,
         "Threads of this process.")},
};

const pf__metric_table_t pf__process_metrics = PF__TABLE(process_metrics);

/* ---- the lists -------------------------------------------------------- */

const pf__kind_desc_t *const pf__kinds[] = {
    &breaker_kind, &group_kind, &bulkhead_kind, &ratelimit_kind,
    &health_kind,  &check_kind, &leak_kind,     &degradation_kind,
};

const size_t pf__kinds_len = sizeof(pf__kinds) / sizeof(pf__kinds[0]);

const pf__kind_desc_t *const pf__reg_kinds[PF_REGISTRY_KINDS] = {
    [PF_REGISTRY_BREAKER] = &breaker_kind,
    [PF_REGISTRY_BULKHEAD] = &bulkhead_kind,
    [PF_REGISTRY_RATELIMIT] = &ratelimit_kind,
    [PF_REGISTRY_HEALTH] = &health_kind,
    [PF_REGISTRY_LEAK] = &leak_kind,
    [PF_REGISTRY_DEGRADE] = &degradation_kind,
    [PF_REGISTRY_BREAKER_GROUP] = &group_kind,
};
