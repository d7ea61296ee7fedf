/* A registry snapshot as Prometheus text, exposition format 0.0.4.
 *
 * Every metric family is written as one group: "# HELP", "# TYPE", then
 * one sample per object (and per label value), since the format requires
 * a family's samples to be contiguous. A family with no samples is left
 * out. Names are fixed strings of ours (see docs/metrics.md, the list is
 * part of the API); label values are escaped with pf__sb_prom_label
 * (backslash, double quote, line feed) after the snapshot made them valid
 * UTF-8. No timestamps: the scraper stamps the samples. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "puffinflow/version.h"

#include "registry_impl.h"

typedef struct label {
    const char *key;
    const char *value;
} label_t;

/* Append v in decimal. The renderer writes thousands of numbers per
 * scrape; formatting them by hand instead of through printf halves its
 * cost. */
static void
put_int(pf__sb_t *sb, int64_t v)
{
    char buf[24];
    char *p = buf + sizeof(buf);
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;

    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0) {
        *--p = '-';
    }
    pf__sb_append_n(sb, p, (size_t)(buf + sizeof(buf) - p));
}

/* HELP texts are constants of ours with no backslash or line feed, so they
 * need no escaping. */
static void
family(pf__sb_t *sb, const char *name, const char *type, const char *help)
{
    pf__sb_append(sb, "# HELP ");
    pf__sb_append(sb, name);
    pf__sb_append(sb, " ");
    pf__sb_append(sb, help);
    pf__sb_append(sb, "\n# TYPE ");
    pf__sb_append(sb, name);
    pf__sb_append(sb, " ");
    pf__sb_append(sb, type);
    pf__sb_append(sb, "\n");
}

static void
labels(pf__sb_t *sb, const label_t *l, size_t n)
{
    size_t i;

    if (n == 0) {
        return;
    }
    for (i = 0; i < n; i++) {
        pf__sb_append(sb, i == 0 ? "{" : ",");
        pf__sb_append(sb, l[i].key);
        pf__sb_append(sb, "=\"");
        pf__sb_prom_label(sb, l[i].value);
        pf__sb_append(sb, "\"");
    }
    pf__sb_append(sb, "}");
}

/* A float value as Prometheus reads it: NaN, +Inf, -Inf, integers without
 * an exponent, others in the shortest of %.15g / %.17g that reads back
 * exactly. */
static void
value(pf__sb_t *sb, double v)
{
    char buf[40];

    if (isnan(v)) {
        pf__sb_append(sb, "NaN");
    } else if (isinf(v)) {
        pf__sb_append(sb, v > 0 ? "+Inf" : "-Inf");
    } else if (v == floor(v) && fabs(v) < 1e15) {
        put_int(sb, (int64_t)v);
    } else {
        snprintf(buf, sizeof(buf), "%.15g", v);
        if (strtod(buf, NULL) != v) {
            snprintf(buf, sizeof(buf), "%.17g", v);
        }
        pf__sb_append(sb, buf);
    }
}

static void
sample(pf__sb_t *sb, const char *name, const label_t *l, size_t n, double v)
{
    pf__sb_append(sb, name);
    labels(sb, l, n);
    pf__sb_append(sb, " ");
    value(sb, v);
    pf__sb_append(sb, "\n");
}

/* Counters and gauges that are integers are written exactly, whatever
 * their size (a double would round past 2^53). */
static void
sample_int(pf__sb_t *sb, const char *name, const label_t *l, size_t n,
           int64_t v)
{
    pf__sb_append(sb, name);
    labels(sb, l, n);
    pf__sb_append(sb, " ");
    put_int(sb, v);
    pf__sb_append(sb, "\n");
}

/* A family written lazily: HELP and TYPE go out before its first sample,
 * so a family no object has a value for is left out entirely. */
typedef struct lazy_family {
    const char *name;
    const char *type;
    const char *help;
    bool started;
} lazy_family_t;

static void
lazy_start(pf__sb_t *sb, lazy_family_t *f)
{
    if (!f->started) {
        family(sb, f->name, f->type, f->help);
        f->started = true;
    }
}

/* A float sample; NaN means the object has no such value (a time that
 * never happened, a figure not known yet): the sample is left out. */
static void
lazy_sample(pf__sb_t *sb, lazy_family_t *f, const label_t *l, size_t n,
            double v)
{
    if (isnan(v)) {
        return;
    }
    lazy_start(sb, f);
    sample(sb, f->name, l, n, v);
}

static void
lazy_sample_int(pf__sb_t *sb, lazy_family_t *f, const label_t *l, size_t n,
                int64_t v)
{
    lazy_start(sb, f);
    sample_int(sb, f->name, l, n, v);
}

/* ---- process ---------------------------------------------------------- */

/* One gauge family of the process block; left out when unknown (-1). */
static void
process_gauge(pf__sb_t *sb, const char *name, const char *help, int64_t v)
{
    if (v < 0) {
        return;
    }
    family(sb, name, "gauge", help);
    sample_int(sb, name, NULL, 0, v);
}

static void
prom_process(const pf_registry_snapshot_t *s, pf__sb_t *sb)
{
    const pf_process_metrics_t *p = &s->process;

    if (!s->has_process) {
        return;
    }
    process_gauge(sb, "puffinflow_process_open_fds",
                  "Open file descriptors of this process.", p->open_fds);
    process_gauge(sb, "puffinflow_process_max_fds",
                  "Soft limit on open file descriptors (RLIMIT_NOFILE).",
                  p->max_fds);
    process_gauge(sb, "puffinflow_process_resident_memory_bytes",
                  "Resident memory of this process (VmRSS).",
                  p->resident_bytes);
    process_gauge(sb, "puffinflow_process_virtual_memory_bytes",
                  "Virtual memory of this process (VmSize).", p->virtual_bytes);
    process_gauge(sb, "puffinflow_process_threads", "Threads of this process.",
                  p->threads);
}

/* ---- breakers ---------------------------------------------------------- *
 *
 * Standalone breakers carry the label name; the breakers of keyed groups
 * carry name ("<group>/<key>") and group, so the two never clash. */

/* Labels of one breaker, with room for one more that a family adds. */
typedef struct breaker_labels {
    label_t l[3];
    size_t n;
} breaker_labels_t;

typedef void (*breaker_fn)(pf__sb_t *sb, breaker_labels_t *bl,
                           const pf_breaker_metrics_t *m, void *ctx);

static void
breakers_each(const pf_registry_snapshot_t *s, pf__sb_t *sb, breaker_fn fn,
              void *ctx)
{
    size_t i, j;

    for (i = 0; i < s->breakers_len; i++) {
        breaker_labels_t bl = {{{"name", s->breakers[i].name}}, 1};

        fn(sb, &bl, &s->breakers[i].metrics, ctx);
    }
    for (i = 0; i < s->breaker_groups_len; i++) {
        const pf_registry_breaker_group_t *g = &s->breaker_groups[i];

        for (j = 0; j < g->breakers_len; j++) {
            breaker_labels_t bl = {
                {{"name", g->breakers[j].name}, {"group", g->name}}, 2};

            fn(sb, &bl, &g->breakers[j].metrics, ctx);
        }
    }
}

static size_t
breakers_count(const pf_registry_snapshot_t *s)
{
    size_t n = s->breakers_len;
    size_t i;

    for (i = 0; i < s->breaker_groups_len; i++) {
        n += s->breaker_groups[i].breakers_len;
    }
    return n;
}

typedef enum br_value {
    BR_STATE,
    BR_FAILURE_RATE,
    BR_SLOW_RATE,
    BR_SLOW_CALLS,
    BR_SHADOW_REJECTED,
    BR_RECLAIMED,
    BR_TRANSITIONS,
    BR_OPENED,
    BR_CONSECUTIVE,
    BR_IN_FLIGHT,
    BR_RECOVERY,
    BR_FORCED,
    BR_SHADOW,
    BR_SINCE_TRANSITION,
    BR_SINCE_FAILURE,
    BR_RETRY_IN
} br_value_t;

/* The value, or NaN when the breaker has none (a time that never
 * happened, a retry time while not OPEN): such samples are left out. */
static double
br_get(const pf_breaker_metrics_t *m, br_value_t v)
{
    switch (v) {
    case BR_STATE:
        return (double)m->state;
    case BR_FAILURE_RATE:
        return m->failure_rate;
    case BR_SLOW_RATE:
        return m->slow_call_rate;
    case BR_SLOW_CALLS:
        return (double)m->slow_calls;
    case BR_SHADOW_REJECTED:
        return (double)m->shadow_rejected;
    case BR_RECLAIMED:
        return (double)m->reclaimed;
    case BR_TRANSITIONS:
        return (double)m->transitions;
    case BR_OPENED:
        return (double)m->times_opened;
    case BR_CONSECUTIVE:
        return (double)m->consecutive_failures;
    case BR_IN_FLIGHT:
        return (double)m->half_open_in_flight;
    case BR_RECOVERY:
        return (double)m->recovery_timeout_ns / 1e9;
    case BR_FORCED:
        return m->forced_open ? 1.0 : 0.0;
    case BR_SHADOW:
        return m->shadow ? 1.0 : 0.0;
    case BR_SINCE_TRANSITION:
        return m->last_transition_ns < 0
                   ? NAN
                   : (double)(m->now_ns - m->last_transition_ns) / 1e9;
    case BR_SINCE_FAILURE:
        return m->last_failure_ns < 0
                   ? NAN
                   : (double)(m->now_ns - m->last_failure_ns) / 1e9;
    case BR_RETRY_IN:
        if (m->state != PF_BREAKER_OPEN || m->retry_at_ns < 0) {
            return NAN;
        }
        return m->retry_at_ns > m->now_ns
                   ? (double)(m->retry_at_ns - m->now_ns) / 1e9
                   : 0.0;
    }
    return NAN;
}

typedef struct br_family {
    lazy_family_t f;
    br_value_t v;
} br_family_t;

static void
br_sample(pf__sb_t *sb, breaker_labels_t *bl, const pf_breaker_metrics_t *m,
          void *ctx)
{
    br_family_t *bf = ctx;

    lazy_sample(sb, &bf->f, bl->l, bl->n, br_get(m, bf->v));
}

static void
br_family(const pf_registry_snapshot_t *s, pf__sb_t *sb, const char *name,
          const char *type, const char *help, br_value_t v)
{
    br_family_t bf = {{name, type, help, false}, v};

    breakers_each(s, sb, br_sample, &bf);
}

static void
br_outcomes(pf__sb_t *sb, breaker_labels_t *bl, const pf_breaker_metrics_t *m,
            void *ctx)
{
    static const char *const name = "puffinflow_breaker_calls_total";
    /* failures include timeouts: the outcomes partition the calls. */
    const struct {
        const char *outcome;
        uint64_t n;
    } o[5] = {{"success", m->successes},
              {"failure", m->failures - m->timeouts},
              {"timeout", m->timeouts},
              {"ignored", m->ignored},
              {"rejected", m->rejected}};
    size_t i;

    (void)ctx;
    for (i = 0; i < 5; i++) {
        bl->l[bl->n] = (label_t){"outcome", o[i].outcome};
        sample_int(sb, name, bl->l, bl->n + 1, (int64_t)o[i].n);
    }
}

static void
br_one_hot(pf__sb_t *sb, breaker_labels_t *bl, const pf_breaker_metrics_t *m,
           void *ctx)
{
    static const pf_breaker_state_t states[3] = {
        PF_BREAKER_CLOSED, PF_BREAKER_OPEN, PF_BREAKER_HALF_OPEN};
    size_t i;

    (void)ctx;
    for (i = 0; i < 3; i++) {
        bl->l[bl->n] = (label_t){"state", pf_breaker_state_name(states[i])};
        sample_int(sb, "puffinflow_breaker_in_state", bl->l, bl->n + 1,
                   m->state == states[i] ? 1 : 0);
    }
}

typedef enum gr_value {
    GR_SIZE,
    GR_MAX,
    GR_CREATED,
    GR_EVICTED,
    GR_REJECTED
} gr_value_t;

static int64_t
gr_get(const pf_breaker_group_metrics_t *m, gr_value_t v)
{
    switch (v) {
    case GR_SIZE:
        return (int64_t)m->size;
    case GR_MAX:
        return (int64_t)m->max_breakers;
    case GR_CREATED:
        return (int64_t)m->created;
    case GR_EVICTED:
        return (int64_t)m->evicted;
    case GR_REJECTED:
        return (int64_t)m->rejected_full;
    }
    return 0;
}

static void
group_family(const pf_registry_snapshot_t *s, pf__sb_t *sb, const char *name,
             const char *type, const char *help, gr_value_t v)
{
    size_t i;

    family(sb, name, type, help);
    for (i = 0; i < s->breaker_groups_len; i++) {
        label_t l = {"group", s->breaker_groups[i].name};

        sample_int(sb, name, &l, 1, gr_get(&s->breaker_groups[i].metrics, v));
    }
}

static void
prom_breakers(const pf_registry_snapshot_t *s, pf__sb_t *sb)
{
    if (breakers_count(s) == 0) {
        return;
    }
    br_family(s, sb, "puffinflow_breaker_state", "gauge",
              "State of a circuit breaker: 0 closed, 1 open, 2 half-open.",
              BR_STATE);
    family(sb, "puffinflow_breaker_in_state", "gauge",
           "1 for the state a circuit breaker is in, 0 for the others.");
    breakers_each(s, sb, br_one_hot, NULL);
    family(sb, "puffinflow_breaker_calls_total", "counter",
           "Calls through a circuit breaker by outcome: success, failure "
           "(counted, not a timeout), timeout, ignored (a result that is "
           "not a failure), rejected (PF_EOPEN).");
    breakers_each(s, sb, br_outcomes, NULL);
    br_family(s, sb, "puffinflow_breaker_failure_rate_percent", "gauge",
              "Percent of counted calls that failed (in the window, or "
              "since creation in consecutive mode).",
              BR_FAILURE_RATE);
    br_family(s, sb, "puffinflow_breaker_slow_call_rate_percent", "gauge",
              "Percent of calls in the window slower than "
              "slow_call_duration (0 in consecutive mode).",
              BR_SLOW_RATE);
    br_family(s, sb, "puffinflow_breaker_slow_calls_total", "counter",
              "Calls slower than slow_call_duration (window modes).",
              BR_SLOW_CALLS);
    br_family(s, sb, "puffinflow_breaker_shadow_rejected_total", "counter",
              "Calls a shadow-mode breaker let through that it would have "
              "rejected.",
              BR_SHADOW_REJECTED);
    br_family(s, sb, "puffinflow_breaker_reclaimed_trials_total", "counter",
              "Half-open trials never recorded in time, counted as "
              "failures.",
              BR_RECLAIMED);
    br_family(s, sb, "puffinflow_breaker_transitions_total", "counter",
              "State changes of a circuit breaker.", BR_TRANSITIONS);
    br_family(s, sb, "puffinflow_breaker_opened_total", "counter",
              "Times a circuit breaker opened.", BR_OPENED);
    br_family(s, sb, "puffinflow_breaker_consecutive_failures", "gauge",
              "Failures in a row while closed (consecutive mode).",
              BR_CONSECUTIVE);
    br_family(s, sb, "puffinflow_breaker_half_open_in_flight", "gauge",
              "Trial calls taken and not yet recorded.", BR_IN_FLIGHT);
    br_family(s, sb, "puffinflow_breaker_recovery_timeout_seconds", "gauge",
              "The open period now (grown by recovery_multiplier, before "
              "jitter).",
              BR_RECOVERY);
    br_family(s, sb, "puffinflow_breaker_retry_in_seconds", "gauge",
              "Seconds until an open breaker lets trials through (open "
              "breakers only).",
              BR_RETRY_IN);
    br_family(s, sb, "puffinflow_breaker_seconds_since_transition", "gauge",
              "Seconds since the last state change (breakers that have "
              "changed state).",
              BR_SINCE_TRANSITION);
    br_family(s, sb, "puffinflow_breaker_seconds_since_failure", "gauge",
              "Seconds since the last failure (breakers that have failed).",
              BR_SINCE_FAILURE);
    br_family(s, sb, "puffinflow_breaker_forced_open", "gauge",
              "1 while held open by pf_breaker_force_open.", BR_FORCED);
    br_family(s, sb, "puffinflow_breaker_shadow", "gauge",
              "1 for a breaker in shadow mode (never rejects).", BR_SHADOW);
    if (s->breaker_groups_len == 0) {
        return;
    }
    group_family(s, sb, "puffinflow_breaker_group_size", "gauge",
                 "Breakers in a keyed group now.", GR_SIZE);
    group_family(s, sb, "puffinflow_breaker_group_max_breakers", "gauge",
                 "Most breakers a keyed group holds.", GR_MAX);
    group_family(s, sb, "puffinflow_breaker_group_created_total", "counter",
                 "Breakers a keyed group created.", GR_CREATED);
    group_family(s, sb, "puffinflow_breaker_group_evicted_total", "counter",
                 "Closed, unused breakers a keyed group dropped to make "
                 "room.",
                 GR_EVICTED);
    group_family(s, sb, "puffinflow_breaker_group_rejected_total", "counter",
                 "New keys a full keyed group refused (PF_EFULL).",
                 GR_REJECTED);
}

/* ---- bulkheads --------------------------------------------------------- */

typedef enum bh_value {
    BH_MAX,
    BH_IN_USE,
    BH_AVAILABLE,
    BH_WAITING,
    BH_QUEUE,
    BH_PEAK,
    BH_ACCEPTED,
    BH_CANCELLED,
    BH_LEAVE_WITHOUT_ENTER,
    BH_FLOOR,
    BH_CEILING
} bh_value_t;

static int64_t
bh_get(const pf_bulkhead_metrics_t *m, bh_value_t v)
{
    switch (v) {
    case BH_MAX:
        return m->max_concurrent;
    case BH_IN_USE:
        return m->in_use;
    case BH_AVAILABLE:
        return m->available;
    case BH_WAITING:
        return m->waiting;
    case BH_QUEUE:
        return m->max_queue_size;
    case BH_PEAK:
        return m->peak_in_use;
    case BH_ACCEPTED:
        return (int64_t)m->accepted;
    case BH_CANCELLED:
        return (int64_t)m->cancelled;
    case BH_LEAVE_WITHOUT_ENTER:
        return (int64_t)m->leave_without_enter;
    case BH_FLOOR:
        return m->adaptive_floor;
    case BH_CEILING:
        return m->adaptive_ceiling;
    }
    return 0;
}

/* adaptive_only: only bulkheads with an adaptive limit. */
static void
bh_family(const pf_registry_snapshot_t *s, pf__sb_t *sb, const char *name,
          const char *type, const char *help, bh_value_t v, bool adaptive_only)
{
    lazy_family_t f = {name, type, help, false};
    size_t i;

    for (i = 0; i < s->bulkheads_len; i++) {
        const pf_registry_bulkhead_t *b = &s->bulkheads[i];
        label_t l = {"name", b->name};

        if (!adaptive_only || b->metrics.adaptive) {
            lazy_sample_int(sb, &f, &l, 1, bh_get(&b->metrics, v));
        }
    }
}

static void
prom_bulkheads(const pf_registry_snapshot_t *s, pf__sb_t *sb)
{
    size_t i;

    if (s->bulkheads_len == 0) {
        return;
    }
    bh_family(s, sb, "puffinflow_bulkhead_max_concurrent", "gauge",
              "Callers a bulkhead lets in at once (adaptive: its current "
              "limit).",
              BH_MAX, false);
    bh_family(s, sb, "puffinflow_bulkhead_in_use", "gauge",
              "Callers inside a bulkhead now.", BH_IN_USE, false);
    bh_family(s, sb, "puffinflow_bulkhead_available", "gauge",
              "Free slots of a bulkhead now.", BH_AVAILABLE, false);
    bh_family(s, sb, "puffinflow_bulkhead_waiting", "gauge",
              "Callers and tickets waiting for a slot now.", BH_WAITING, false);
    bh_family(s, sb, "puffinflow_bulkhead_max_queue_size", "gauge",
              "Callers allowed to wait at once.", BH_QUEUE, false);
    bh_family(s, sb, "puffinflow_bulkhead_peak_in_use", "gauge",
              "Most callers ever inside a bulkhead at once.", BH_PEAK, false);
    bh_family(s, sb, "puffinflow_bulkhead_accepted_total", "counter",
              "Entries a bulkhead granted.", BH_ACCEPTED, false);
    family(sb, "puffinflow_bulkhead_rejected_total", "counter",
           "Callers a bulkhead turned away with PF_EFULL, by reason: full "
           "(no room to wait) or timeout (the wait ran out).");
    for (i = 0; i < s->bulkheads_len; i++) {
        const pf_registry_bulkhead_t *b = &s->bulkheads[i];
        label_t full[2] = {{"name", b->name}, {"reason", "full"}};
        label_t timeout[2] = {{"name", b->name}, {"reason", "timeout"}};

        sample_int(sb, "puffinflow_bulkhead_rejected_total", full, 2,
                   (int64_t)b->metrics.rejected_full);
        sample_int(sb, "puffinflow_bulkhead_rejected_total", timeout, 2,
                   (int64_t)b->metrics.rejected_timeout);
    }
    bh_family(s, sb, "puffinflow_bulkhead_cancelled_total", "counter",
              "Waits ended by the caller's deadline or cancellation token.",
              BH_CANCELLED, false);
    bh_family(s, sb, "puffinflow_bulkhead_leave_without_enter_total", "counter",
              "Leaves ignored because nobody was inside.",
              BH_LEAVE_WITHOUT_ENTER, false);
    bh_family(s, sb, "puffinflow_bulkhead_adaptive_floor", "gauge",
              "Lowest limit an adaptive bulkhead may set itself.", BH_FLOOR,
              true);
    bh_family(s, sb, "puffinflow_bulkhead_adaptive_ceiling", "gauge",
              "Highest limit an adaptive bulkhead may set itself.", BH_CEILING,
              true);
}

/* ---- rate limiters ---------------------------------------------------- */

typedef enum rl_value {
    RL_BURST,
    RL_AVAILABLE,
    RL_ACQUIRED,
    RL_REJECTED,
    RL_WAITED,
    RL_REFUNDED
} rl_value_t;

static int64_t
rl_get(const pf_ratelimit_metrics_t *m, rl_value_t v)
{
    switch (v) {
    case RL_BURST:
        return m->burst;
    case RL_AVAILABLE:
        return m->available;
    case RL_ACQUIRED:
        return (int64_t)m->acquired;
    case RL_REJECTED:
        return (int64_t)m->rejected;
    case RL_WAITED:
        return (int64_t)m->waited;
    case RL_REFUNDED:
        return (int64_t)m->refunded;
    }
    return 0;
}

static void
rl_family(const pf_registry_snapshot_t *s, pf__sb_t *sb, const char *name,
          const char *type, const char *help, rl_value_t v)
{
    size_t i;

    family(sb, name, type, help);
    for (i = 0; i < s->ratelimits_len; i++) {
        label_t l = {"name", s->ratelimits[i].name};

        sample_int(sb, name, &l, 1, rl_get(&s->ratelimits[i].metrics, v));
    }
}

static void
prom_ratelimits(const pf_registry_snapshot_t *s, pf__sb_t *sb)
{
    size_t i;

    if (s->ratelimits_len == 0) {
        return;
    }
    family(sb, "puffinflow_ratelimit_rate", "gauge",
           "Permits per second a rate limiter refills.");
    for (i = 0; i < s->ratelimits_len; i++) {
        label_t l = {"name", s->ratelimits[i].name};

        sample(sb, "puffinflow_ratelimit_rate", &l, 1,
               s->ratelimits[i].metrics.rate);
    }
    rl_family(s, sb, "puffinflow_ratelimit_burst", "gauge",
              "Most permits a rate limiter holds at once.", RL_BURST);
    rl_family(s, sb, "puffinflow_ratelimit_available_permits", "gauge",
              "Whole permits in the bucket now.", RL_AVAILABLE);
    rl_family(s, sb, "puffinflow_ratelimit_acquired_permits_total", "counter",
              "Permits handed out (acquired or reserved).", RL_ACQUIRED);
    rl_family(s, sb, "puffinflow_ratelimit_rejected_total", "counter",
              "Requests refused with PF_ERATELIMIT.", RL_REJECTED);
    rl_family(s, sb, "puffinflow_ratelimit_waited_total", "counter",
              "Requests that had to wait for their permits.", RL_WAITED);
    rl_family(s, sb, "puffinflow_ratelimit_refunded_permits_total", "counter",
              "Permits given back.", RL_REFUNDED);
}

/* ---- health checkers -------------------------------------------------- */

/* The per-checker values exported. */
typedef enum hc_value {
    HC_OVERALL,
    HC_CHECKS,
    HC_REPORTS,
    HC_RUNS,
    HC_CACHE_HITS,
    HC_SHARED,
    HC_RUNNING,
    HC_HUNG
} hc_value_t;

static int64_t
hc_get(const pf_health_metrics_t *m, hc_value_t v)
{
    switch (v) {
    case HC_OVERALL:
        return (int64_t)m->status;
    case HC_CHECKS:
        return (int64_t)m->checks;
    case HC_REPORTS:
        return (int64_t)m->reports;
    case HC_RUNS:
        return (int64_t)m->runs;
    case HC_CACHE_HITS:
        return (int64_t)m->cache_hits;
    case HC_SHARED:
        return (int64_t)m->shared;
    case HC_RUNNING:
        return (int64_t)m->running;
    case HC_HUNG:
        return (int64_t)m->hung;
    }
    return 0;
}

static void
hc_family(const pf_registry_snapshot_t *s, pf__sb_t *sb, const char *name,
          const char *type, const char *help, hc_value_t v)
{
    size_t i;

    family(sb, name, type, help);
    for (i = 0; i < s->health_len; i++) {
        label_t l = {"checker", s->health[i].name};

        sample_int(sb, name, &l, 1, hc_get(&s->health[i].metrics, v));
    }
}

/* The per-check values exported. */
typedef enum check_value {
    CK_STATUS,
    CK_DURATION,
    CK_CONSECUTIVE,
    CK_RUNS,
    CK_FAILURES,
    CK_TIMEOUTS
} check_value_t;

/* The integer values; CK_DURATION is the one float (see check_family). */
static int64_t
check_get(const pf_registry_health_check_t *c, check_value_t v)
{
    switch (v) {
    case CK_STATUS:
        return (int64_t)c->status;
    case CK_DURATION:
        break;
    case CK_CONSECUTIVE:
        return (int64_t)c->consecutive_failures;
    case CK_RUNS:
        return (int64_t)c->runs;
    case CK_FAILURES:
        return (int64_t)c->failures;
    case CK_TIMEOUTS:
        return (int64_t)c->timeouts;
    }
    return 0;
}

/* One family over every check of every checker; ran_only skips checks
 * that have never run (their status and duration mean nothing yet). */
static void
check_family(const pf_registry_snapshot_t *s, pf__sb_t *sb, const char *name,
             const char *type, const char *help, check_value_t v, bool ran_only)
{
    lazy_family_t f = {name, type, help, false};
    size_t i, j;

    for (i = 0; i < s->health_len; i++) {
        for (j = 0; j < s->health[i].checks_len; j++) {
            const pf_registry_health_check_t *c = &s->health[i].checks[j];
            label_t l[2] = {{"checker", s->health[i].name}, {"check", c->name}};

            if (ran_only && c->runs == 0) {
                continue;
            }
            if (v == CK_DURATION) {
                /* A float, never left out: a check that ran took time. */
                lazy_start(sb, &f);
                sample(sb, name, l, 2, c->duration);
            } else {
                lazy_sample_int(sb, &f, l, 2, check_get(c, v));
            }
        }
    }
}

static void
prom_health(const pf_registry_snapshot_t *s, pf__sb_t *sb)
{
    if (s->health_len == 0) {
        return;
    }
    hc_family(s, sb, "puffinflow_health_overall_status", "gauge",
              "Overall status of a health checker's latest results: "
              "0 healthy, 1 degraded, 2 unhealthy.",
              HC_OVERALL);
    hc_family(s, sb, "puffinflow_health_checks", "gauge",
              "Checks registered in a health checker.", HC_CHECKS);
    hc_family(s, sb, "puffinflow_health_reports_total", "counter",
              "Health reports made (check_all, tagged or one check).",
              HC_REPORTS);
    hc_family(s, sb, "puffinflow_health_check_runs_started_total", "counter",
              "Check runs a health checker started.", HC_RUNS);
    hc_family(s, sb, "puffinflow_health_cache_hits_total", "counter",
              "Check results reused from the cache instead of run.",
              HC_CACHE_HITS);
    hc_family(s, sb, "puffinflow_health_shared_runs_total", "counter",
              "Times a caller waited for a run another caller started.",
              HC_SHARED);
    hc_family(s, sb, "puffinflow_health_checks_running", "gauge",
              "Checks running now, hung ones included.", HC_RUNNING);
    hc_family(s, sb, "puffinflow_health_checks_hung", "gauge",
              "Checks still running past their timeout.", HC_HUNG);
    check_family(s, sb, "puffinflow_health_status", "gauge",
                 "Status of a check's latest result: 0 healthy, 1 degraded, "
                 "2 unhealthy (checks that never ran are left out).",
                 CK_STATUS, true);
    check_family(s, sb, "puffinflow_health_check_duration_seconds", "gauge",
                 "Seconds a check's latest run took (its timeout if it "
                 "timed out).",
                 CK_DURATION, true);
    check_family(s, sb, "puffinflow_health_check_consecutive_failures", "gauge",
                 "Unhealthy results of a check in a row.", CK_CONSECUTIVE,
                 false);
    check_family(s, sb, "puffinflow_health_check_results_total", "counter",
                 "Results a check has had.", CK_RUNS, false);
    check_family(s, sb, "puffinflow_health_check_failures_total", "counter",
                 "Unhealthy results of a check (before flap damping).",
                 CK_FAILURES, false);
    check_family(s, sb, "puffinflow_health_check_timeouts_total", "counter",
                 "Results of a check that were timeouts.", CK_TIMEOUTS, false);
}

/* ---- leak detectors ---------------------------------------------------- */

typedef enum lk_value {
    LK_HELD,
    LK_ALLOCATIONS,
    LK_RELEASES,
    LK_CURRENT,
    LK_DETECTED,
    LK_OLDEST,
    LK_SAMPLES,
    LK_SAMPLE_ERRORS,
    LK_ALERTS,
    LK_MONITORING,
    LK_MEMORY_SLOPE,
    LK_FD_SLOPE,
    LK_RSS,
    LK_MEMORY_FRACTION,
    LK_FDS,
    LK_FD_LIMIT,
    LK_SOCKETS,
    LK_CONNECTIONS,
    LK_THREADS
} lk_value_t;

/* NaN when the value is unknown (no sample yet, nothing held, trend
 * window not full): the sample is left out. */
static double
lk_get(const pf_leak_metrics_t *m, lk_value_t v)
{
    /* The last sample is all zero until a sample succeeded. */
    bool sampled = m->last_sample.at_ns != 0 || m->samples > m->sample_errors;
    const pf_leak_sample_t *ls = &m->last_sample;

    switch (v) {
    case LK_HELD:
        return (double)m->total_allocations;
    case LK_ALLOCATIONS:
        return (double)m->allocations;
    case LK_RELEASES:
        return (double)m->releases;
    case LK_CURRENT:
        return (double)m->current_leaks;
    case LK_DETECTED:
        return (double)m->total_detected;
    case LK_OLDEST:
        return m->oldest_allocation_age;
    case LK_SAMPLES:
        return (double)m->samples;
    case LK_SAMPLE_ERRORS:
        return (double)m->sample_errors;
    case LK_ALERTS:
        return (double)m->alerts;
    case LK_MONITORING:
        return m->monitoring ? 1.0 : 0.0;
    case LK_MEMORY_SLOPE:
        return m->memory_slope;
    case LK_FD_SLOPE:
        return m->fd_slope;
    case LK_RSS:
        return sampled ? (double)ls->rss_bytes : NAN;
    case LK_MEMORY_FRACTION:
        return sampled && ls->memory_limit_bytes > 0 ? ls->memory_fraction
                                                     : NAN;
    case LK_FDS:
        return sampled ? (double)ls->open_fds : NAN;
    case LK_FD_LIMIT:
        return sampled && ls->fd_limit >= 0 ? (double)ls->fd_limit : NAN;
    case LK_SOCKETS:
        return sampled && ls->sockets >= 0 ? (double)ls->sockets : NAN;
    case LK_CONNECTIONS:
        return sampled && ls->connections >= 0 ? (double)ls->connections : NAN;
    case LK_THREADS:
        return sampled ? (double)ls->threads : NAN;
    }
    return NAN;
}

static void
lk_family(const pf_registry_snapshot_t *s, pf__sb_t *sb, const char *name,
          const char *type, const char *help, lk_value_t v)
{
    lazy_family_t f = {name, type, help, false};
    size_t i;

    for (i = 0; i < s->leak_detectors_len; i++) {
        label_t l = {"name", s->leak_detectors[i].name};

        lazy_sample(sb, &f, &l, 1, lk_get(&s->leak_detectors[i].metrics, v));
    }
}

static void
prom_leaks(const pf_registry_snapshot_t *s, pf__sb_t *sb)
{
    size_t i;
    int k;

    if (s->leak_detectors_len == 0) {
        return;
    }
    lk_family(s, sb, "puffinflow_leak_tracked_allocations", "gauge",
              "Allocations tracked and not released now.", LK_HELD);
    lk_family(s, sb, "puffinflow_leak_allocations_total", "counter",
              "track_allocation calls.", LK_ALLOCATIONS);
    lk_family(s, sb, "puffinflow_leak_releases_total", "counter",
              "Successful track_release calls.", LK_RELEASES);
    lk_family(s, sb, "puffinflow_leak_current_leaks", "gauge",
              "Allocations held longer than leak_threshold now.", LK_CURRENT);
    lk_family(s, sb, "puffinflow_leak_detected_total", "counter",
              "Leaks ever detected.", LK_DETECTED);
    lk_family(s, sb, "puffinflow_leak_oldest_allocation_age_seconds", "gauge",
              "Age of the oldest allocation held (when any).", LK_OLDEST);
    lk_family(s, sb, "puffinflow_leak_samples_total", "counter",
              "Process samples taken.", LK_SAMPLES);
    lk_family(s, sb, "puffinflow_leak_sample_errors_total", "counter",
              "Process samples that failed.", LK_SAMPLE_ERRORS);
    lk_family(s, sb, "puffinflow_leak_alerts_total", "counter",
              "Alerts raised (clearings not counted).", LK_ALERTS);
    lk_family(s, sb, "puffinflow_leak_monitoring", "gauge",
              "1 while the monitoring thread runs.", LK_MONITORING);
    family(sb, "puffinflow_leak_alerting", "gauge",
           "1 while an alert of this kind is raised and not cleared.");
    for (i = 0; i < s->leak_detectors_len; i++) {
        for (k = 0; k < PF_LEAK_ALERT_KINDS; k++) {
            label_t l[2] = {
                {"name", s->leak_detectors[i].name},
                {"kind", pf_leak_alert_kind_name((pf_leak_alert_kind_t)k)}};

            sample_int(sb, "puffinflow_leak_alerting", l, 2,
                       s->leak_detectors[i].metrics.alerting[k] ? 1 : 0);
        }
    }
    lk_family(s, sb, "puffinflow_leak_memory_slope_mb_per_minute", "gauge",
              "Growth of resident memory over the trend window.",
              LK_MEMORY_SLOPE);
    lk_family(s, sb, "puffinflow_leak_fd_slope_per_minute", "gauge",
              "Growth of the open fd count over the trend window.",
              LK_FD_SLOPE);
    lk_family(s, sb, "puffinflow_leak_sample_resident_memory_bytes", "gauge",
              "Resident memory of the watched process at the last sample.",
              LK_RSS);
    lk_family(s, sb, "puffinflow_leak_sample_memory_fraction", "gauge",
              "Resident memory over the memory limit at the last sample.",
              LK_MEMORY_FRACTION);
    lk_family(s, sb, "puffinflow_leak_sample_open_fds", "gauge",
              "Open fds of the watched process at the last sample.", LK_FDS);
    lk_family(s, sb, "puffinflow_leak_sample_fd_limit", "gauge",
              "Its RLIMIT_NOFILE soft limit at the last sample.", LK_FD_LIMIT);
    lk_family(s, sb, "puffinflow_leak_sample_sockets", "gauge",
              "Its sockets of every kind at the last sample.", LK_SOCKETS);
    lk_family(s, sb, "puffinflow_leak_sample_connections", "gauge",
              "Its TCP and UDP sockets at the last sample.", LK_CONNECTIONS);
    lk_family(s, sb, "puffinflow_leak_sample_threads", "gauge",
              "Its threads at the last sample.", LK_THREADS);
}

/* ---- degradation managers --------------------------------------------- */

typedef enum dg_value {
    DG_MODE,
    DG_TARGET,
    DG_OVERRIDDEN,
    DG_SAMPLING,
    DG_TIME_IN_MODE,
    DG_UPDATES,
    DG_TRANSITIONS,
    DG_SAMPLE_ERRORS,
    DG_CPU,
    DG_MEMORY,
    DG_EXTERNAL
} dg_value_t;

/* NaN for a signal not known yet: left out. */
static double
dg_get(const pf_degradation_metrics_t *m, dg_value_t v)
{
    switch (v) {
    case DG_MODE:
        return (double)m->mode;
    case DG_TARGET:
        return (double)m->target;
    case DG_OVERRIDDEN:
        return m->overridden ? 1.0 : 0.0;
    case DG_SAMPLING:
        return m->sampling ? 1.0 : 0.0;
    case DG_TIME_IN_MODE:
        return m->time_in_mode;
    case DG_UPDATES:
        return (double)m->updates;
    case DG_TRANSITIONS:
        return (double)m->transitions;
    case DG_SAMPLE_ERRORS:
        return (double)m->sample_errors;
    case DG_CPU:
        return m->updates > 0 ? m->last.cpu_usage : NAN;
    case DG_MEMORY:
        return m->updates > 0 ? m->last.memory_usage : NAN;
    case DG_EXTERNAL:
        if (m->updates == 0) {
            return NAN;
        }
        return m->last.external_services_available ? 1.0 : 0.0;
    }
    return NAN;
}

static void
dg_family(const pf_registry_snapshot_t *s, pf__sb_t *sb, const char *name,
          const char *type, const char *help, dg_value_t v)
{
    lazy_family_t f = {name, type, help, false};
    size_t i;

    for (i = 0; i < s->degradations_len; i++) {
        label_t l = {"name", s->degradations[i].name};

        lazy_sample(sb, &f, &l, 1, dg_get(&s->degradations[i].metrics, v));
    }
}

static void
prom_degradations(const pf_registry_snapshot_t *s, pf__sb_t *sb)
{
    size_t i, j;

    if (s->degradations_len == 0) {
        return;
    }
    dg_family(s, sb, "puffinflow_degradation_mode", "gauge",
              "Index of the current mode: 0 normal, higher more degraded.",
              DG_MODE);
    family(sb, "puffinflow_degradation_in_mode", "gauge",
           "1 for the mode a degradation manager is in, 0 for the others.");
    for (i = 0; i < s->degradations_len; i++) {
        const pf_registry_degradation_t *g = &s->degradations[i];

        for (j = 0; j < g->modes_len; j++) {
            label_t l[2] = {{"name", g->name}, {"mode", g->modes[j]}};

            sample_int(sb, "puffinflow_degradation_in_mode", l, 2,
                       g->metrics.mode == j ? 1 : 0);
        }
    }
    dg_family(s, sb, "puffinflow_degradation_target_mode", "gauge",
              "Index of the mode the rules asked for last.", DG_TARGET);
    dg_family(s, sb, "puffinflow_degradation_overridden", "gauge",
              "1 while a manual override pins the mode.", DG_OVERRIDDEN);
    dg_family(s, sb, "puffinflow_degradation_sampling", "gauge",
              "1 while the background sampler runs.", DG_SAMPLING);
    dg_family(s, sb, "puffinflow_degradation_seconds_in_mode", "gauge",
              "Seconds since the last mode change.", DG_TIME_IN_MODE);
    dg_family(s, sb, "puffinflow_degradation_updates_total", "counter",
              "Evaluations of the rules.", DG_UPDATES);
    dg_family(s, sb, "puffinflow_degradation_transitions_total", "counter",
              "Mode changes.", DG_TRANSITIONS);
    dg_family(s, sb, "puffinflow_degradation_sample_errors_total", "counter",
              "Figures the sampler could not read.", DG_SAMPLE_ERRORS);
    dg_family(s, sb, "puffinflow_degradation_cpu_usage_percent", "gauge",
              "CPU usage at the last evaluation (when known).", DG_CPU);
    dg_family(s, sb, "puffinflow_degradation_memory_usage_percent", "gauge",
              "Memory usage at the last evaluation (when known).", DG_MEMORY);
    dg_family(s, sb, "puffinflow_degradation_external_services_available",
              "gauge",
              "1 when no registered breaker was open and no registered "
              "health checker unhealthy at the last evaluation.",
              DG_EXTERNAL);
}

void
pf__metrics_prometheus(const pf_registry_snapshot_t *s, pf__sb_t *sb)
{
    label_t version = {"version", PF_VERSION_STRING};

    family(sb, "puffinflow_info", "gauge",
           "Always 1; the version label is the puffinflow library's.");
    sample(sb, "puffinflow_info", &version, 1, 1.0);
    prom_process(s, sb);
    prom_breakers(s, sb);
    prom_bulkheads(s, sb);
    prom_ratelimits(s, sb);
    prom_health(s, sb);
    prom_leaks(s, sb);
    prom_degradations(s, sb);
}
