/* A registry snapshot as one JSON object (shape in docs/metrics.md):
 * {"puffinflow_version": ..., "time": ..., "process": {...},
 *  "breakers": [...], "bulkheads": [...], ...}
 * Names were made valid UTF-8 by the snapshot, so the text is valid JSON
 * (RFC 8259); unknown values (-1 in the snapshot) are written as null. */
#include <math.h>

#include "puffinflow/breaker.h"
#include "puffinflow/bulkhead.h"
#include "puffinflow/degrade.h"
#include "puffinflow/health.h"
#include "puffinflow/leak.h"
#include "puffinflow/ratelimit.h"
#include "puffinflow/version.h"

#include "registry_impl.h"

/* ---- members: ,"key":value -------------------------------------------- */

/* An int64 member, null when negative (unknown). */
static void
member_opt_int(pf__sb_t *sb, bool *first, const char *key, int64_t v)
{
    pf__sb_json_key(sb, first, key);
    if (v < 0) {
        pf__sb_append(sb, "null");
    } else {
        pf__sb_json_int(sb, v);
    }
}

static void
json_process(const pf_registry_snapshot_t *s, pf__sb_t *sb, bool *first)
{
    const pf_process_metrics_t *p = &s->process;
    bool f = true;

    if (!s->has_process) {
        return;
    }
    pf__sb_json_key(sb, first, "process");
    pf__sb_append(sb, "{");
    member_opt_int(sb, &f, "open_fds", p->open_fds);
    member_opt_int(sb, &f, "max_fds", p->max_fds);
    member_opt_int(sb, &f, "resident_memory_bytes", p->resident_bytes);
    member_opt_int(sb, &f, "virtual_memory_bytes", p->virtual_bytes);
    member_opt_int(sb, &f, "threads", p->threads);
    pf__sb_append(sb, "}");
}

/* Seconds from then_ns to now_ns on a breaker's clock; NaN (null) when
 * then_ns is -1, a time that never happened. */
static double
age(int64_t now_ns, int64_t then_ns)
{
    return then_ns < 0 ? NAN : (double)(now_ns - then_ns) / 1e9;
}

/* A breaker's members; times on its clock become ages in seconds. */
static void
json_breaker(const pf_registry_breaker_t *b, pf__sb_t *sb)
{
    const pf_breaker_metrics_t *m = &b->metrics;
    bool f = true;

    pf__sb_append(sb, "{");
    pf__sb_json_member_str(sb, &f, "name", b->name);
    pf__sb_json_member_str(sb, &f, "state", pf_breaker_state_name(m->state));
    pf__sb_json_member_int(sb, &f, "calls", (int64_t)m->calls);
    pf__sb_json_member_int(sb, &f, "successes", (int64_t)m->successes);
    pf__sb_json_member_int(sb, &f, "failures", (int64_t)m->failures);
    pf__sb_json_member_int(sb, &f, "timeouts", (int64_t)m->timeouts);
    pf__sb_json_member_int(sb, &f, "ignored", (int64_t)m->ignored);
    pf__sb_json_member_int(sb, &f, "rejected", (int64_t)m->rejected);
    pf__sb_json_member_num(sb, &f, "failure_rate", m->failure_rate);
    pf__sb_json_member_num(sb, &f, "slow_call_rate", m->slow_call_rate);
    pf__sb_json_member_int(sb, &f, "slow_calls", (int64_t)m->slow_calls);
    pf__sb_json_member_int(sb, &f, "shadow_rejected",
                           (int64_t)m->shadow_rejected);
    pf__sb_json_member_int(sb, &f, "reclaimed", (int64_t)m->reclaimed);
    pf__sb_json_member_int(sb, &f, "transitions", (int64_t)m->transitions);
    pf__sb_json_member_int(sb, &f, "times_opened", (int64_t)m->times_opened);
    pf__sb_json_member_int(sb, &f, "consecutive_failures",
                           m->consecutive_failures);
    pf__sb_json_member_int(sb, &f, "half_open_in_flight",
                           m->half_open_in_flight);
    pf__sb_json_member_num(sb, &f, "recovery_timeout",
                           (double)m->recovery_timeout_ns / 1e9);
    pf__sb_json_member_num(sb, &f, "seconds_since_transition",
                           age(m->now_ns, m->last_transition_ns));
    pf__sb_json_member_num(sb, &f, "seconds_since_failure",
                           age(m->now_ns, m->last_failure_ns));
    pf__sb_json_member_bool(sb, &f, "forced_open", m->forced_open);
    pf__sb_json_member_bool(sb, &f, "shadow", m->shadow);
    pf__sb_append(sb, "}");
}

/* An array of breakers, as the member key. */
static void
json_breaker_list(pf__sb_t *sb, bool *first, const char *key,
                  const pf_registry_breaker_t *b, size_t n)
{
    size_t i;

    pf__sb_json_key(sb, first, key);
    pf__sb_append(sb, "[");
    for (i = 0; i < n; i++) {
        if (i > 0) {
            pf__sb_append(sb, ",");
        }
        json_breaker(&b[i], sb);
    }
    pf__sb_append(sb, "]");
}

static void
json_breakers(const pf_registry_snapshot_t *s, pf__sb_t *sb, bool *first)
{
    size_t i;

    json_breaker_list(sb, first, "breakers", s->breakers, s->breakers_len);
    pf__sb_json_key(sb, first, "breaker_groups");
    pf__sb_append(sb, "[");
    for (i = 0; i < s->breaker_groups_len; i++) {
        const pf_registry_breaker_group_t *g = &s->breaker_groups[i];
        bool f = true;

        pf__sb_append(sb, i > 0 ? ",{" : "{");
        pf__sb_json_member_str(sb, &f, "name", g->name);
        pf__sb_json_member_int(sb, &f, "size", (int64_t)g->metrics.size);
        pf__sb_json_member_int(sb, &f, "max_breakers",
                               (int64_t)g->metrics.max_breakers);
        pf__sb_json_member_int(sb, &f, "created", (int64_t)g->metrics.created);
        pf__sb_json_member_int(sb, &f, "evicted", (int64_t)g->metrics.evicted);
        pf__sb_json_member_int(sb, &f, "rejected_full",
                               (int64_t)g->metrics.rejected_full);
        json_breaker_list(sb, &f, "breakers", g->breakers, g->breakers_len);
        pf__sb_append(sb, "}");
    }
    pf__sb_append(sb, "]");
}

static void
json_bulkheads(const pf_registry_snapshot_t *s, pf__sb_t *sb, bool *first)
{
    size_t i;

    pf__sb_json_key(sb, first, "bulkheads");
    pf__sb_append(sb, "[");
    for (i = 0; i < s->bulkheads_len; i++) {
        const pf_bulkhead_metrics_t *m = &s->bulkheads[i].metrics;
        bool f = true;

        pf__sb_append(sb, i > 0 ? ",{" : "{");
        pf__sb_json_member_str(sb, &f, "name", s->bulkheads[i].name);
        pf__sb_json_member_int(sb, &f, "max_concurrent", m->max_concurrent);
        pf__sb_json_member_int(sb, &f, "in_use", m->in_use);
        pf__sb_json_member_int(sb, &f, "available", m->available);
        pf__sb_json_member_int(sb, &f, "waiting", m->waiting);
        pf__sb_json_member_int(sb, &f, "max_queue_size", m->max_queue_size);
        pf__sb_json_member_int(sb, &f, "accepted", (int64_t)m->accepted);
        pf__sb_json_member_int(sb, &f, "rejected_full",
                               (int64_t)m->rejected_full);
        pf__sb_json_member_int(sb, &f, "rejected_timeout",
                               (int64_t)m->rejected_timeout);
        pf__sb_json_member_int(sb, &f, "peak_in_use", m->peak_in_use);
        pf__sb_json_member_int(sb, &f, "cancelled", (int64_t)m->cancelled);
        pf__sb_json_member_int(sb, &f, "leave_without_enter",
                               (int64_t)m->leave_without_enter);
        pf__sb_json_member_bool(sb, &f, "adaptive", m->adaptive);
        if (m->adaptive) {
            pf__sb_json_member_int(sb, &f, "adaptive_floor", m->adaptive_floor);
            pf__sb_json_member_int(sb, &f, "adaptive_ceiling",
                                   m->adaptive_ceiling);
        }
        pf__sb_append(sb, "}");
    }
    pf__sb_append(sb, "]");
}

static void
json_ratelimits(const pf_registry_snapshot_t *s, pf__sb_t *sb, bool *first)
{
    size_t i;

    pf__sb_json_key(sb, first, "ratelimits");
    pf__sb_append(sb, "[");
    for (i = 0; i < s->ratelimits_len; i++) {
        const pf_ratelimit_metrics_t *m = &s->ratelimits[i].metrics;
        bool f = true;

        pf__sb_append(sb, i > 0 ? ",{" : "{");
        pf__sb_json_member_str(sb, &f, "name", s->ratelimits[i].name);
        pf__sb_json_member_num(sb, &f, "rate", m->rate);
        pf__sb_json_member_int(sb, &f, "burst", m->burst);
        pf__sb_json_member_int(sb, &f, "available", m->available);
        pf__sb_json_member_int(sb, &f, "acquired", (int64_t)m->acquired);
        pf__sb_json_member_int(sb, &f, "rejected", (int64_t)m->rejected);
        pf__sb_json_member_int(sb, &f, "waited", (int64_t)m->waited);
        pf__sb_json_member_int(sb, &f, "refunded", (int64_t)m->refunded);
        pf__sb_append(sb, "}");
    }
    pf__sb_append(sb, "]");
}

static void
json_health_check(const pf_registry_health_check_t *c, pf__sb_t *sb)
{
    bool f = true;

    pf__sb_append(sb, "{");
    pf__sb_json_member_str(sb, &f, "name", c->name);
    pf__sb_json_member_str(sb, &f, "status", pf_health_status_name(c->status));
    pf__sb_json_member_str(sb, &f, "message", c->message);
    pf__sb_json_member_bool(sb, &f, "critical", c->critical);
    pf__sb_json_member_bool(sb, &f, "timed_out", c->timed_out);
    pf__sb_json_member_num(sb, &f, "duration", c->duration);
    /* Wall-clock seconds of the last result; null when it never ran. */
    pf__sb_json_member_num(sb, &f, "time",
                           c->time_ns == 0 ? NAN : (double)c->time_ns / 1e9);
    pf__sb_json_member_int(sb, &f, "consecutive_failures",
                           (int64_t)c->consecutive_failures);
    pf__sb_json_member_int(sb, &f, "runs", (int64_t)c->runs);
    pf__sb_json_member_int(sb, &f, "failures", (int64_t)c->failures);
    pf__sb_json_member_int(sb, &f, "timeouts", (int64_t)c->timeouts);
    pf__sb_append(sb, "}");
}

static void
json_health(const pf_registry_snapshot_t *s, pf__sb_t *sb, bool *first)
{
    size_t i, j;

    pf__sb_json_key(sb, first, "health_checkers");
    pf__sb_append(sb, "[");
    for (i = 0; i < s->health_len; i++) {
        const pf_registry_health_t *h = &s->health[i];
        const pf_health_metrics_t *m = &h->metrics;
        bool f = true;

        pf__sb_append(sb, i > 0 ? ",{" : "{");
        pf__sb_json_member_str(sb, &f, "name", h->name);
        pf__sb_json_member_str(sb, &f, "status",
                               pf_health_status_name(m->status));
        pf__sb_json_member_int(sb, &f, "checks_registered", (int64_t)m->checks);
        pf__sb_json_member_int(sb, &f, "reports", (int64_t)m->reports);
        pf__sb_json_member_int(sb, &f, "runs", (int64_t)m->runs);
        pf__sb_json_member_int(sb, &f, "cache_hits", (int64_t)m->cache_hits);
        pf__sb_json_member_int(sb, &f, "shared", (int64_t)m->shared);
        pf__sb_json_member_int(sb, &f, "failures", (int64_t)m->failures);
        pf__sb_json_member_int(sb, &f, "timeouts", (int64_t)m->timeouts);
        pf__sb_json_member_int(sb, &f, "running", (int64_t)m->running);
        pf__sb_json_member_int(sb, &f, "hung", (int64_t)m->hung);
        pf__sb_json_key(sb, &f, "checks");
        pf__sb_append(sb, "[");
        for (j = 0; j < h->checks_len; j++) {
            if (j > 0) {
                pf__sb_append(sb, ",");
            }
            json_health_check(&h->checks[j], sb);
        }
        pf__sb_append(sb, "]}");
    }
    pf__sb_append(sb, "]");
}

static void
json_leak_sample(const pf_leak_sample_t *ls, pf__sb_t *sb)
{
    bool f = true;
    int k;

    pf__sb_append(sb, "{");
    pf__sb_json_member_int(sb, &f, "pid", ls->pid);
    member_opt_int(sb, &f, "rss_bytes", ls->rss_bytes);
    member_opt_int(sb, &f, "memory_limit_bytes", ls->memory_limit_bytes);
    pf__sb_json_member_num(sb, &f, "memory_fraction", ls->memory_fraction);
    member_opt_int(sb, &f, "threads", ls->threads);
    member_opt_int(sb, &f, "open_fds", ls->open_fds);
    member_opt_int(sb, &f, "fd_limit", ls->fd_limit);
    member_opt_int(sb, &f, "sockets", ls->sockets);
    member_opt_int(sb, &f, "tcp", ls->tcp);
    member_opt_int(sb, &f, "udp", ls->udp);
    member_opt_int(sb, &f, "unix", ls->unix_sockets);
    member_opt_int(sb, &f, "connections", ls->connections);
    pf__sb_json_key(sb, &f, "tcp_by_state");
    pf__sb_append(sb, "{");
    for (k = 1; k < PF_LEAK_TCP_STATES; k++) {
        bool g = k == 1;

        pf__sb_json_key(sb, &g, pf_leak_tcp_state_name(k));
        pf__sb_json_int(sb, ls->tcp_by_state[k]);
    }
    pf__sb_append(sb, "}}");
}

static void
json_leaks(const pf_registry_snapshot_t *s, pf__sb_t *sb, bool *first)
{
    size_t i;
    int k;

    pf__sb_json_key(sb, first, "leak_detectors");
    pf__sb_append(sb, "[");
    for (i = 0; i < s->leak_detectors_len; i++) {
        const pf_leak_metrics_t *m = &s->leak_detectors[i].metrics;
        bool f = true;
        bool g = true;

        pf__sb_append(sb, i > 0 ? ",{" : "{");
        pf__sb_json_member_str(sb, &f, "name", s->leak_detectors[i].name);
        pf__sb_json_member_int(sb, &f, "tracked_allocations",
                               (int64_t)m->total_allocations);
        pf__sb_json_member_int(sb, &f, "allocations", (int64_t)m->allocations);
        pf__sb_json_member_int(sb, &f, "releases", (int64_t)m->releases);
        pf__sb_json_member_int(sb, &f, "current_leaks",
                               (int64_t)m->current_leaks);
        pf__sb_json_member_int(sb, &f, "total_detected",
                               (int64_t)m->total_detected);
        pf__sb_json_member_num(sb, &f, "leak_threshold", m->leak_threshold);
        pf__sb_json_member_num(sb, &f, "oldest_allocation_age",
                               m->oldest_allocation_age);
        pf__sb_json_member_int(sb, &f, "samples", (int64_t)m->samples);
        pf__sb_json_member_int(sb, &f, "sample_errors",
                               (int64_t)m->sample_errors);
        pf__sb_json_member_int(sb, &f, "alerts", (int64_t)m->alerts);
        pf__sb_json_member_bool(sb, &f, "monitoring", m->monitoring);
        pf__sb_json_key(sb, &f, "alerting");
        pf__sb_append(sb, "{");
        for (k = 0; k < PF_LEAK_ALERT_KINDS; k++) {
            pf__sb_json_key(sb, &g,
                            pf_leak_alert_kind_name((pf_leak_alert_kind_t)k));
            pf__sb_json_bool(sb, m->alerting[k]);
        }
        pf__sb_append(sb, "}");
        pf__sb_json_member_num(sb, &f, "memory_slope_mb_per_minute",
                               m->memory_slope);
        pf__sb_json_member_num(sb, &f, "fd_slope_per_minute", m->fd_slope);
        pf__sb_json_key(sb, &f, "last_sample");
        if (m->samples > m->sample_errors) {
            json_leak_sample(&m->last_sample, sb);
        } else {
            pf__sb_append(sb, "null");
        }
        pf__sb_append(sb, "}");
    }
    pf__sb_append(sb, "]");
}

static void
json_degradations(const pf_registry_snapshot_t *s, pf__sb_t *sb, bool *first)
{
    size_t i, j;

    pf__sb_json_key(sb, first, "degradations");
    pf__sb_append(sb, "[");
    for (i = 0; i < s->degradations_len; i++) {
        const pf_registry_degradation_t *g = &s->degradations[i];
        const pf_degradation_metrics_t *m = &g->metrics;
        bool f = true;

        pf__sb_append(sb, i > 0 ? ",{" : "{");
        pf__sb_json_member_str(sb, &f, "name", g->name);
        pf__sb_json_member_str(
            sb, &f, "mode", m->mode < g->modes_len ? g->modes[m->mode] : NULL);
        pf__sb_json_member_int(sb, &f, "mode_index", m->mode);
        pf__sb_json_member_str(sb, &f, "target",
                               m->target < g->modes_len ? g->modes[m->target]
                                                        : NULL);
        pf__sb_json_key(sb, &f, "modes");
        pf__sb_append(sb, "[");
        for (j = 0; j < g->modes_len; j++) {
            if (j > 0) {
                pf__sb_append(sb, ",");
            }
            pf__sb_json_str(sb, g->modes[j]);
        }
        pf__sb_append(sb, "]");
        pf__sb_json_member_bool(sb, &f, "overridden", m->overridden);
        pf__sb_json_member_bool(sb, &f, "sampling", m->sampling);
        pf__sb_json_member_num(sb, &f, "seconds_in_mode", m->time_in_mode);
        pf__sb_json_member_int(sb, &f, "updates", (int64_t)m->updates);
        pf__sb_json_member_int(sb, &f, "transitions", (int64_t)m->transitions);
        pf__sb_json_member_int(sb, &f, "sample_errors",
                               (int64_t)m->sample_errors);
        pf__sb_json_member_int(sb, &f, "rules", (int64_t)m->rules);
        pf__sb_json_key(sb, &f, "last");
        if (m->updates == 0) {
            pf__sb_append(sb, "null");
        } else {
            bool h = true;

            pf__sb_append(sb, "{");
            pf__sb_json_member_num(sb, &h, "cpu_usage", m->last.cpu_usage);
            pf__sb_json_member_num(sb, &h, "memory_usage",
                                   m->last.memory_usage);
            pf__sb_json_member_bool(sb, &h, "external_services_available",
                                    m->last.external_services_available);
            pf__sb_append(sb, "}");
        }
        pf__sb_append(sb, "}");
    }
    pf__sb_append(sb, "]");
}

void
pf__metrics_json(const pf_registry_snapshot_t *s, pf__sb_t *sb)
{
    bool first = true;

    pf__sb_append(sb, "{");
    pf__sb_json_member_str(sb, &first, "puffinflow_version", PF_VERSION_STRING);
    pf__sb_json_member_num(sb, &first, "time", (double)s->wall_time_ns / 1e9);
    json_process(s, sb, &first);
    json_breakers(s, sb, &first);
    json_bulkheads(s, sb, &first);
    json_ratelimits(s, sb, &first);
    json_health(s, sb, &first);
    json_leaks(s, sb, &first);
    json_degradations(s, sb, &first);
    pf__sb_append(sb, "}");
}
