/* The degradation manager. The current mode lives in an atomic, so hot
 * paths read it without a lock; everything that decides it (rules,
 * gauges, dwell, override) is under the manager's one mutex, and the CPU
 * sampler's previous reading under a second one (sample_lock), held only
 * while /proc and cgroup files are read. The two are never held together.
 *
 * Deciding. Each evaluation walks the rules: a rule not firing starts to
 * fire when its comparison holds; a firing rule keeps firing while the
 * comparison holds with the threshold moved back by the hysteresis. The
 * target is the most degraded mode any firing rule asks for (the first
 * such rule is the reason shown). The mode moves to the target once it has
 * been kept min_dwell (towards a less degraded mode) or min_dwell_degrade
 * (towards a more degraded one); an override pins it instead.
 *
 * Registered breakers and health checkers are kept in a list that only
 * grows: nodes are immutable once published with a release store, so a
 * sample walks it without a lock and calls their getters with no lock of
 * ours held.
 *
 * Mode changes are queued under the lock and delivered to the listener
 * outside it, in order, by evq.c. The background sampler is a ticker
 * (ticker.c) whose tick is pf_degrade_update. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "puffinflow/breaker.h"
#include "puffinflow/degrade.h"
#include "puffinflow/error.h"
#include "puffinflow/health.h"

#include "evq.h"
#include "mem.h"
#include "procfs.h"
#include "strbuf.h"
#include "sysmon.h"
#include "ticker.h"
#include "timeutil.h"
#include "wait.h"

#define DEFAULT_NAME "degradation"

static const char *const default_modes[] = {"full", "reduced", "minimal",
                                            "offline"};

/* A rule as kept. Everything but active is immutable once added. */
typedef struct rule {
    pf_degrade_signal_t signal;
    pf_degrade_op_t op;
    double threshold;
    double hysteresis;
    size_t gauge;       /* SIGNAL_GAUGE: index into gauges */
    unsigned mode;
    char *desc;         /* "cpu > 90": an event's reason */
    bool active;
} rule_t;

typedef struct gauge {
    char *name;
    double value;       /* NaN until set */
} gauge_t;

/* A borrowed breaker or health checker. Immutable once published. */
typedef struct watched {
    struct watched *next;
    pf_breaker_t *breaker;
    pf_health_checker_t *checker;
} watched_t;

/* A queued mode change. reason points at a rule's desc or a constant,
 * both alive as long as the manager. */
typedef struct mode_ev {
    unsigned from;
    unsigned to;
    const char *reason;
    pf_system_health_t health;
    int64_t time_ns;
} mode_ev_t;

/* Immutable after _new: name, modes, nmodes, clock, the durations, the
 * roots, source, on_change and their args. mode and watched are atomics;
 * cpu is under sample_lock; sampler has its own lock; the rest under
 * lock. */
struct pf_degrade {
    char *name;
    char **modes;
    size_t nmodes;
    const pf_clock_t *clock;
    int64_t dwell_recover_ns;
    int64_t dwell_degrade_ns;
    char *proc_root;
    char *cgroup_root;
    pf_degrade_source_fn source;
    void *source_arg;
    pf_degrade_listener_fn listener;
    void *listener_arg;

    _Atomic unsigned mode;
    _Atomic(watched_t *) watched;
    atomic_ullong sample_errors;

    pthread_mutex_t sample_lock;
    pf__cpu_sampler_t cpu;

    pthread_mutex_t lock;
    pthread_cond_t cv;          /* delivery ended */
    rule_t *rules;
    size_t nrules;
    size_t rules_cap;
    gauge_t *gauges;
    size_t ngauges;
    size_t gauges_cap;
    unsigned target;
    bool overridden;
    int64_t entered_ns;         /* when the current mode began */
    pf_system_health_t last;
    uint64_t updates;
    uint64_t transitions;
    pf__evq_t evq;
    bool closing;

    pf__ticker_t sampler;       /* the background sampler */
};

/* ---- defaults --------------------------------------------------------- */

void
pf_degrade_config_init(pf_degrade_config_t *cfg)
{
    if (cfg == NULL) {
        return;
    }
    memset(cfg, 0, sizeof(*cfg));
    cfg->name = DEFAULT_NAME;
    cfg->min_dwell = 30.0;
    cfg->min_dwell_degrade = 0.0;
    cfg->sample_interval = 5.0;
}

void
pf_degrade_rule_init(pf_degrade_rule_t *r)
{
    if (r == NULL) {
        return;
    }
    memset(r, 0, sizeof(*r));
    r->signal = PF_DEGRADE_SIGNAL_CPU;
    r->op = PF_DEGRADE_ABOVE;
}

/* ---- events ----------------------------------------------------------- */

static void
deliver_event(void *p, void *ctx)
{
    mode_ev_t *e = p;
    pf_degrade_t *d = ctx;
    pf_degrade_event_t ev;

    ev.manager = d->name;
    ev.from = e->from;
    ev.to = e->to;
    ev.from_name = d->modes[e->from];
    ev.to_name = d->modes[e->to];
    ev.reason = e->reason;
    ev.health = e->health;
    ev.time_ns = e->time_ns;
    d->listener(&ev, d->listener_arg);
}

/* Deliver queued changes; called and returns with d->lock held. */
static void
drain_events(pf_degrade_t *d)
{
    if (d->listener != NULL) {
        pf__evq_drain_all(&d->evq, &d->lock, &d->cv, &d->closing,
                          deliver_event, NULL, d);
    }
}

/* Move to mode `to` now. Under lock. */
static void
set_mode(pf_degrade_t *d, unsigned to, const char *reason, int64_t now)
{
    unsigned from = atomic_load_explicit(&d->mode, memory_order_relaxed);
    mode_ev_t e;

    if (to == from) {
        return;
    }
    /* Relaxed: the mode is a value of its own; readers act on it but do
     * not read other fields on its strength. */
    atomic_store_explicit(&d->mode, to, memory_order_relaxed);
    d->entered_ns = now;
    d->transitions++;
    if (d->listener != NULL) {
        memset(&e, 0, sizeof(e));
        e.from = from;
        e.to = to;
        e.reason = reason;
        e.health = d->last;
        e.time_ns = now;
        pf__evq_push(&d->evq, &e);
    }
}

/* ---- rules ------------------------------------------------------------ */

static int
find_mode(char *const *modes, size_t n, const char *name, unsigned *out)
{
    size_t i;

    if (name == NULL) {
        return PF_EINVAL;
    }
    for (i = 0; i < n; i++) {
        if (strcmp(modes[i], name) == 0) {
            *out = (unsigned)i;
            return 0;
        }
    }
    return PF_ENOTFOUND;
}

static bool
is_percent_signal(pf_degrade_signal_t s)
{
    return s == PF_DEGRADE_SIGNAL_CPU || s == PF_DEGRADE_SIGNAL_MEMORY;
}

/* Check r against d's modes; its mode's index in *mode. */
static int
validate_rule(const pf_degrade_t *d, const pf_degrade_rule_t *r,
              unsigned *mode)
{
    if ((unsigned)r->signal > PF_DEGRADE_SIGNAL_GAUGE ||
        (unsigned)r->op > PF_DEGRADE_AT_MOST) {
        return PF_EINVAL;
    }
    if (find_mode(d->modes, d->nmodes, r->mode, mode) != 0) {
        return PF_EINVAL;
    }
    if (r->signal == PF_DEGRADE_SIGNAL_EXTERNAL_DOWN) {
        return 0;
    }
    if (!isfinite(r->threshold) || !isfinite(r->hysteresis) ||
        r->hysteresis < 0.0) {
        return PF_EINVAL;
    }
    if (is_percent_signal(r->signal) &&
        (r->threshold < 0.0 || r->threshold > 100.0 ||
         r->hysteresis > 100.0)) {
        return PF_EINVAL;
    }
    if (r->signal == PF_DEGRADE_SIGNAL_GAUGE &&
        (r->gauge == NULL || r->gauge[0] == '\0')) {
        return PF_EINVAL;
    }
    return 0;
}

static const char *
op_text(pf_degrade_op_t op)
{
    switch (op) {
    case PF_DEGRADE_ABOVE:
        return ">";
    case PF_DEGRADE_AT_LEAST:
        return ">=";
    case PF_DEGRADE_BELOW:
        return "<";
    case PF_DEGRADE_AT_MOST:
        return "<=";
    }
    return "?";
}

/* "cpu > 90", "queue > 10 hysteresis 2", "external_down"; NULL on
 * allocation failure. */
static char *
describe(const pf_degrade_rule_t *r)
{
    const char *what = r->signal == PF_DEGRADE_SIGNAL_CPU      ? "cpu"
                       : r->signal == PF_DEGRADE_SIGNAL_MEMORY ? "memory"
                       : r->signal == PF_DEGRADE_SIGNAL_GAUGE  ? r->gauge
                                                               : NULL;
    char *s;
    int n;

    if (what == NULL) {
        return pf__strdup("external_down");
    }
    /* In the C locale, so the reason reads "cpu > 90.5" everywhere, the
     * same text the rule language accepts. */
    if (r->hysteresis > 0.0) {
        n = pf__snprintf_c(NULL, 0, "%s %s %g hysteresis %g", what,
                           op_text(r->op), r->threshold, r->hysteresis);
    } else {
        n = pf__snprintf_c(NULL, 0, "%s %s %g", what, op_text(r->op),
                           r->threshold);
    }
    s = pf__malloc((size_t)n + 1);
    if (s == NULL) {
        return NULL;
    }
    if (r->hysteresis > 0.0) {
        pf__snprintf_c(s, (size_t)n + 1, "%s %s %g hysteresis %g", what,
                       op_text(r->op), r->threshold, r->hysteresis);
    } else {
        pf__snprintf_c(s, (size_t)n + 1, "%s %s %g", what, op_text(r->op),
                       r->threshold);
    }
    return s;
}

/* The gauge called name, created (NaN) if absent. Under lock. */
static int
gauge_index(pf_degrade_t *d, const char *name, size_t *out)
{
    char *copy;
    size_t i;

    for (i = 0; i < d->ngauges; i++) {
        if (strcmp(d->gauges[i].name, name) == 0) {
            *out = i;
            return 0;
        }
    }
    if (pf__grow((void **)&d->gauges, &d->gauges_cap, d->ngauges + 1,
                 sizeof(gauge_t)) != 0) {
        return PF_ENOMEM;
    }
    copy = pf__strdup(name);
    if (copy == NULL) {
        return PF_ENOMEM;
    }
    d->gauges[d->ngauges].name = copy;
    d->gauges[d->ngauges].value = NAN;
    *out = d->ngauges++;
    return 0;
}

int
pf_degrade_add_rule(pf_degrade_t *d, const pf_degrade_rule_t *r)
{
    rule_t nr;
    int rc;

    if (d == NULL || r == NULL) {
        return PF_EINVAL;
    }
    memset(&nr, 0, sizeof(nr));
    rc = validate_rule(d, r, &nr.mode);
    if (rc != 0) {
        return rc;
    }
    nr.signal = r->signal;
    nr.op = r->op;
    nr.threshold = r->threshold;
    nr.hysteresis = r->hysteresis;
    nr.desc = describe(r);
    if (nr.desc == NULL) {
        return PF_ENOMEM;
    }
    pthread_mutex_lock(&d->lock);
    if (r->signal == PF_DEGRADE_SIGNAL_GAUGE) {
        rc = gauge_index(d, r->gauge, &nr.gauge);
    }
    if (rc == 0) {
        rc = pf__grow((void **)&d->rules, &d->rules_cap, d->nrules + 1,
                      sizeof(rule_t));
    }
    if (rc == 0) {
        d->rules[d->nrules++] = nr;
    }
    pthread_mutex_unlock(&d->lock);
    if (rc != 0) {
        pf__free(nr.desc);
    }
    return rc;
}

/* ---- the rule language ------------------------------------------------ */

static char *
skip_ws(char *p)
{
    while (*p == ' ' || *p == '\t') {
        p++;
    }
    return p;
}

/* ASCII letters and digits by hand: isalnum follows the locale, and in a
 * single-byte locale (de_DE.ISO-8859-1) it would take bytes such as 0xE9
 * for letters, so the same rule text would parse differently. */
static bool
word_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
}

/* Does p start with word w followed by a non-word character? */
static bool
starts_word(const char *p, const char *w)
{
    size_t n = strlen(w);

    return strncmp(p, w, n) == 0 && !word_char(p[n]);
}

/* Parse a finite number at *p, moving *p past it. Always with '.' as the
 * decimal point: "90,5" is not a number here, in any locale. */
static bool
parse_number(char **p, double *out)
{
    char *end;
    double v = pf__strtod_c(*p, &end);

    if (end == *p || !isfinite(v)) {
        return false;
    }
    *p = end;
    *out = v;
    return true;
}

/* Parse text (a writable copy) into r; names point into text. */
static int
parse_rule(char *text, pf_degrade_rule_t *r)
{
    char *p = skip_ws(text);
    char *end;

    pf_degrade_rule_init(r);
    if (starts_word(p, "external_down")) {
        r->signal = PF_DEGRADE_SIGNAL_EXTERNAL_DOWN;
        p += strlen("external_down");
    } else if (starts_word(p, "external")) {
        /* "external services down" */
        p = skip_ws(p + strlen("external"));
        if (!starts_word(p, "services")) {
            return PF_EINVAL;
        }
        p = skip_ws(p + strlen("services"));
        if (!starts_word(p, "down")) {
            return PF_EINVAL;
        }
        r->signal = PF_DEGRADE_SIGNAL_EXTERNAL_DOWN;
        p += strlen("down");
    } else {
        char *name = p;

        while (word_char(*p)) {
            p++;
        }
        if (p == name) {
            return PF_EINVAL;
        }
        end = p;
        p = skip_ws(p);
        if (p[0] == '>' && p[1] == '=') {
            r->op = PF_DEGRADE_AT_LEAST;
            p += 2;
        } else if (p[0] == '<' && p[1] == '=') {
            r->op = PF_DEGRADE_AT_MOST;
            p += 2;
        } else if (p[0] == '>' && p[1] != '>') {
            r->op = PF_DEGRADE_ABOVE;
            p++;
        } else if (p[0] == '<') {
            r->op = PF_DEGRADE_BELOW;
            p++;
        } else {
            return PF_EINVAL;
        }
        *end = '\0';
        if (strcmp(name, "cpu") == 0) {
            r->signal = PF_DEGRADE_SIGNAL_CPU;
        } else if (strcmp(name, "memory") == 0) {
            r->signal = PF_DEGRADE_SIGNAL_MEMORY;
        } else {
            r->signal = PF_DEGRADE_SIGNAL_GAUGE;
            r->gauge = name;
        }
        p = skip_ws(p);
        if (!parse_number(&p, &r->threshold)) {
            return PF_EINVAL;
        }
        p = skip_ws(p);
        if (starts_word(p, "hysteresis")) {
            p = skip_ws(p + strlen("hysteresis"));
            if (!parse_number(&p, &r->hysteresis)) {
                return PF_EINVAL;
            }
        }
    }
    p = skip_ws(p);
    if (p[0] != '-' || p[1] != '>') {
        return PF_EINVAL;
    }
    p = skip_ws(p + 2);
    end = p + strlen(p);
    while (end > p && (end[-1] == ' ' || end[-1] == '\t' ||
                       end[-1] == '\n' || end[-1] == '\r')) {
        end--;
    }
    *end = '\0';
    if (*p == '\0') {
        return PF_EINVAL;
    }
    r->mode = p;
    return 0;
}

int
pf_degrade_add_rule_str(pf_degrade_t *d, const char *rule)
{
    pf_degrade_rule_t r;
    char *copy;
    int rc;

    if (d == NULL || rule == NULL) {
        return PF_EINVAL;
    }
    copy = pf__strdup(rule);
    if (copy == NULL) {
        return PF_ENOMEM;
    }
    rc = parse_rule(copy, &r);
    if (rc == 0) {
        rc = pf_degrade_add_rule(d, &r);
    }
    pf__free(copy);
    return rc;
}

int
pf_degrade_set_gauge(pf_degrade_t *d, const char *name, double value)
{
    size_t i;
    int rc;

    if (d == NULL || name == NULL || name[0] == '\0' || isnan(value)) {
        return PF_EINVAL;
    }
    pthread_mutex_lock(&d->lock);
    rc = gauge_index(d, name, &i);
    if (rc == 0) {
        d->gauges[i].value = value;
    }
    pthread_mutex_unlock(&d->lock);
    return rc;
}

/* ---- watched breakers and checkers ------------------------------------ */

static int
add_watched(pf_degrade_t *d, pf_breaker_t *b, pf_health_checker_t *hc)
{
    watched_t *w = pf__calloc(1, sizeof(*w));

    if (w == NULL) {
        return PF_ENOMEM;
    }
    w->breaker = b;
    w->checker = hc;
    pthread_mutex_lock(&d->lock);
    w->next = atomic_load_explicit(&d->watched, memory_order_relaxed);
    /* Release: a sampler that loads the new head (acquire) sees the
     * node's fields. Adds are serialised by the lock. */
    atomic_store_explicit(&d->watched, w, memory_order_release);
    pthread_mutex_unlock(&d->lock);
    return 0;
}

int
pf_degrade_add_breaker(pf_degrade_t *d, struct pf_breaker *b)
{
    if (d == NULL || b == NULL) {
        return PF_EINVAL;
    }
    return add_watched(d, b, NULL);
}

int
pf_degrade_add_health_checker(pf_degrade_t *d,
                                  struct pf_health_checker *hc)
{
    if (d == NULL || hc == NULL) {
        return PF_EINVAL;
    }
    return add_watched(d, NULL, hc);
}

/* No registered breaker open and no registered checker unhealthy. No lock
 * held: the getters may take their own objects' locks. */
static bool
externals_available(pf_degrade_t *d)
{
    const watched_t *w =
        atomic_load_explicit(&d->watched, memory_order_acquire);

    for (; w != NULL; w = w->next) {
        if (w->breaker != NULL &&
            pf_breaker_state(w->breaker) == PF_BREAKER_OPEN) {
            return false;
        }
        if (w->checker != NULL &&
            pf_health_checker_status(w->checker) == PF_UNHEALTHY) {
            return false;
        }
    }
    return true;
}

/* ---- sampling --------------------------------------------------------- */

static int
sample(pf_degrade_t *d, pf_system_health_t *h)
{
    int64_t now = pf_clock_now_ns(d->clock);
    unsigned errors = 0;
    int rc;

    memset(h, 0, sizeof(*h));
    h->cpu_usage = NAN;
    h->memory_usage = NAN;
    h->external_services_available = true;
    if (d->source != NULL) {
        rc = d->source(h, d->source_arg);
        if (rc != 0) {
            return rc;
        }
    } else {
        pthread_mutex_lock(&d->sample_lock);
        rc = pf__cpu_sample(&d->cpu, d->proc_root, d->cgroup_root, now,
                            &h->cpu_usage);
        pthread_mutex_unlock(&d->sample_lock);
        if (rc != 0) {
            h->cpu_usage = NAN;
            errors++;
        }
        rc = pf__sysmon_memory_percent(d->proc_root, d->cgroup_root,
                                       &h->memory_usage, NULL, NULL);
        if (rc != 0) {
            h->memory_usage = NAN;
            errors++;
        }
    }
    if (!externals_available(d)) {
        h->external_services_available = false;
    }
    h->time_ns = now;
    if (errors > 0) {
        atomic_fetch_add_explicit(&d->sample_errors, errors,
                                  memory_order_relaxed);
    }
    return 0;
}

int
pf_degrade_check_system_health(pf_degrade_t *d,
                                   pf_system_health_t *out)
{
    if (d == NULL || out == NULL) {
        return PF_EINVAL;
    }
    return sample(d, out);
}

/* ---- deciding --------------------------------------------------------- */

static double
signal_value(const pf_degrade_t *d, const rule_t *r,
             const pf_system_health_t *h)
{
    switch (r->signal) {
    case PF_DEGRADE_SIGNAL_CPU:
        return h->cpu_usage;
    case PF_DEGRADE_SIGNAL_MEMORY:
        return h->memory_usage;
    case PF_DEGRADE_SIGNAL_EXTERNAL_DOWN:
        return h->external_services_available ? 0.0 : 1.0;
    case PF_DEGRADE_SIGNAL_GAUGE:
        return d->gauges[r->gauge].value;
    }
    return NAN;
}

/* Does rule r fire for value v? A firing rule's threshold is moved back
 * by its hysteresis. NaN never fires. */
static bool
fires(const rule_t *r, double v)
{
    double slack = r->active ? r->hysteresis : 0.0;

    if (isnan(v)) {
        return false;
    }
    if (r->signal == PF_DEGRADE_SIGNAL_EXTERNAL_DOWN) {
        return v > 0.5;
    }
    switch (r->op) {
    case PF_DEGRADE_ABOVE:
        return v > r->threshold - slack;
    case PF_DEGRADE_AT_LEAST:
        return v >= r->threshold - slack;
    case PF_DEGRADE_BELOW:
        return v < r->threshold + slack;
    case PF_DEGRADE_AT_MOST:
        return v <= r->threshold + slack;
    }
    return false;
}

/* Evaluate the rules on h at now. Under lock. */
static void
decide(pf_degrade_t *d, const pf_system_health_t *h, int64_t now)
{
    const char *reason = "no rule fires";
    unsigned target = 0;
    unsigned cur;
    size_t i;

    d->last = *h;
    d->last.time_ns = now;
    d->updates++;
    for (i = 0; i < d->nrules; i++) {
        rule_t *r = &d->rules[i];

        r->active = fires(r, signal_value(d, r, h));
        if (r->active && r->mode > target) {
            target = r->mode;
            reason = r->desc;
        }
    }
    d->target = target;
    if (d->overridden) {
        return;
    }
    cur = atomic_load_explicit(&d->mode, memory_order_relaxed);
    if (target != cur) {
        int64_t dwell = target > cur ? d->dwell_degrade_ns
                                     : d->dwell_recover_ns;

        if (now - d->entered_ns >= dwell) {
            set_mode(d, target, reason, now);
        }
    }
}

int
pf_degrade_evaluate(pf_degrade_t *d, const pf_system_health_t *h)
{
    if (d == NULL || h == NULL) {
        return PF_EINVAL;
    }
    pthread_mutex_lock(&d->lock);
    decide(d, h, pf_clock_now_ns(d->clock));
    drain_events(d);
    pthread_mutex_unlock(&d->lock);
    return 0;
}

int
pf_degrade_update(pf_degrade_t *d, pf_system_health_t *out)
{
    pf_system_health_t h;
    int rc;

    if (d == NULL) {
        return PF_EINVAL;
    }
    rc = sample(d, &h);
    if (rc != 0) {
        return rc;
    }
    if (out != NULL) {
        *out = h;
    }
    return pf_degrade_evaluate(d, &h);
}

/* ---- override --------------------------------------------------------- */

int
pf_degrade_override(pf_degrade_t *d, const char *mode)
{
    unsigned idx;

    if (d == NULL || find_mode(d->modes, d->nmodes, mode, &idx) != 0) {
        return PF_EINVAL;
    }
    pthread_mutex_lock(&d->lock);
    d->overridden = true;
    set_mode(d, idx, "override", pf_clock_now_ns(d->clock));
    drain_events(d);
    pthread_mutex_unlock(&d->lock);
    return 0;
}

int
pf_degrade_clear_override(pf_degrade_t *d)
{
    int rc = 0;

    if (d == NULL) {
        return PF_EINVAL;
    }
    pthread_mutex_lock(&d->lock);
    if (!d->overridden) {
        rc = PF_ESTATE;
    } else {
        d->overridden = false;
        set_mode(d, d->target, "override cleared",
                 pf_clock_now_ns(d->clock));
        drain_events(d);
    }
    pthread_mutex_unlock(&d->lock);
    return rc;
}

/* ---- the background sampler ------------------------------------------- */

static void
sampler_tick(void *p)
{
    (void)pf_degrade_update(p, NULL);
}

int
pf_degrade_start(pf_degrade_t *d)
{
    if (d == NULL) {
        return PF_EINVAL;
    }
    return pf__ticker_start(&d->sampler);
}

int
pf_degrade_stop(pf_degrade_t *d)
{
    if (d == NULL) {
        return PF_EINVAL;
    }
    return pf__ticker_stop(&d->sampler);
}

/* ---- create, free ----------------------------------------------------- */

static int
validate_config(const pf_degrade_config_t *cfg, int64_t *recover,
                int64_t *degrade, int64_t *interval)
{
    size_t i;
    size_t j;

    if (cfg->name == NULL || cfg->name[0] == '\0') {
        return PF_EINVAL;
    }
    if ((cfg->modes == NULL) != (cfg->modes_len == 0)) {
        return PF_EINVAL;
    }
    for (i = 0; i < cfg->modes_len; i++) {
        if (cfg->modes[i] == NULL || cfg->modes[i][0] == '\0') {
            return PF_EINVAL;
        }
        for (j = 0; j < i; j++) {
            if (strcmp(cfg->modes[i], cfg->modes[j]) == 0) {
                return PF_EINVAL;
            }
        }
    }
    if (cfg->rules_len > 0 && cfg->rules == NULL) {
        return PF_EINVAL;
    }
    if (pf__secs_to_ns(cfg->min_dwell, recover) != 0 ||
        pf__secs_to_ns(cfg->min_dwell_degrade, degrade) != 0 ||
        pf__secs_to_ns(cfg->sample_interval, interval) != 0 ||
        *interval == 0) {
        return PF_EINVAL;
    }
    return 0;
}

static void
destroy(pf_degrade_t *d)
{
    watched_t *w = atomic_load_explicit(&d->watched, memory_order_relaxed);
    size_t i;

    while (w != NULL) {
        watched_t *next = w->next;

        pf__free(w);
        w = next;
    }
    for (i = 0; i < d->nrules; i++) {
        pf__free(d->rules[i].desc);
    }
    for (i = 0; i < d->ngauges; i++) {
        pf__free(d->gauges[i].name);
    }
    pf__evq_clear(&d->evq, NULL, NULL);
    pf__free(d->rules);
    pf__free(d->gauges);
    if (d->modes != NULL) {
        for (i = 0; i < d->nmodes; i++) {
            pf__free(d->modes[i]);
        }
    }
    pf__free(d->modes);
    pf__free(d->proc_root);
    pf__free(d->cgroup_root);
    pf__free(d->name);
    pf__free(d);
}

/* Allocate d's copies of the config's strings. */
static int
copy_strings(pf_degrade_t *d, const pf_degrade_config_t *cfg)
{
    const char *const *modes = cfg->modes != NULL ? cfg->modes : default_modes;
    size_t n = cfg->modes != NULL
                   ? cfg->modes_len
                   : sizeof(default_modes) / sizeof(default_modes[0]);
    size_t i;

    d->name = pf__strdup(cfg->name);
    d->proc_root = pf__strdup(cfg->proc_root != NULL ? cfg->proc_root
                                                     : PF__PROC_ROOT);
    d->cgroup_root = pf__strdup(cfg->cgroup_root != NULL ? cfg->cgroup_root
                                                         : PF__CGROUP_ROOT);
    d->modes = pf__calloc(n, sizeof(char *));
    if (d->name == NULL || d->proc_root == NULL || d->cgroup_root == NULL ||
        d->modes == NULL) {
        return PF_ENOMEM;
    }
    d->nmodes = n;
    for (i = 0; i < n; i++) {
        d->modes[i] = pf__strdup(modes[i]);
        if (d->modes[i] == NULL) {
            return PF_ENOMEM;
        }
    }
    return 0;
}

int
pf_degrade_new(const pf_degrade_config_t *cfg, pf_degrade_t **out)
{
    pf_degrade_config_t def;
    pf_degrade_t *d;
    int64_t recover;
    int64_t degrade;
    int64_t interval;
    size_t i;
    int rc;

    if (out == NULL) {
        return PF_EINVAL;
    }
    if (cfg == NULL) {
        pf_degrade_config_init(&def);
        cfg = &def;
    }
    rc = validate_config(cfg, &recover, &degrade, &interval);
    if (rc != 0) {
        return rc;
    }
    d = pf__calloc(1, sizeof(*d));
    if (d == NULL) {
        return PF_ENOMEM;
    }
    rc = copy_strings(d, cfg);
    if (rc != 0) {
        destroy(d);
        return rc;
    }
    if (pthread_mutex_init(&d->lock, NULL) != 0) {
        destroy(d);
        return PF_ESYSTEM;
    }
    if (pthread_mutex_init(&d->sample_lock, NULL) != 0) {
        pthread_mutex_destroy(&d->lock);
        destroy(d);
        return PF_ESYSTEM;
    }
    rc = pf__cond_init(&d->cv);
    if (rc != 0) {
        pthread_mutex_destroy(&d->sample_lock);
        pthread_mutex_destroy(&d->lock);
        destroy(d);
        return rc;
    }
    rc = pf__ticker_init(&d->sampler, cfg->clock, interval, sampler_tick, d);
    if (rc != 0) {
        pthread_cond_destroy(&d->cv);
        pthread_mutex_destroy(&d->sample_lock);
        pthread_mutex_destroy(&d->lock);
        destroy(d);
        return rc;
    }
    d->clock = cfg->clock;
    d->dwell_recover_ns = recover;
    d->dwell_degrade_ns = degrade;
    d->source = cfg->source;
    d->source_arg = cfg->source_arg;
    d->listener = cfg->listener;
    d->listener_arg = cfg->listener_arg;
    atomic_init(&d->mode, 0u);
    atomic_init(&d->watched, NULL);
    atomic_init(&d->sample_errors, 0);
    pf__evq_init(&d->evq, sizeof(mode_ev_t));
    pf__cpu_sampler_init(&d->cpu);
    d->entered_ns = pf_clock_now_ns(d->clock);
    d->last.cpu_usage = NAN;
    d->last.memory_usage = NAN;
    d->last.external_services_available = true;
    for (i = 0; i < cfg->rules_len && rc == 0; i++) {
        rc = pf_degrade_add_rule(d, &cfg->rules[i]);
    }
    if (rc != 0) {
        pf__ticker_destroy(&d->sampler);
        pthread_cond_destroy(&d->cv);
        pthread_mutex_destroy(&d->sample_lock);
        pthread_mutex_destroy(&d->lock);
        destroy(d);
        return rc;
    }
    if (d->source == NULL) {
        double ignored;

        /* The first reading: a baseline for the first delta. A failure
         * here shows up, and is counted, at the first sample. */
        pf__cpu_sample(&d->cpu, d->proc_root, d->cgroup_root, d->entered_ns,
                       &ignored);
    }
    *out = d;
    return 0;
}

void
pf_degrade_free(pf_degrade_t *d)
{
    if (d == NULL) {
        return;
    }
    pf__ticker_destroy(&d->sampler); /* stops it */
    pthread_mutex_lock(&d->lock);
    d->closing = true;
    pf__evq_wait_idle(&d->evq, &d->lock, &d->cv);
    pthread_mutex_unlock(&d->lock);
    pthread_cond_destroy(&d->cv);
    pthread_mutex_destroy(&d->sample_lock);
    pthread_mutex_destroy(&d->lock);
    destroy(d);
}

/* ---- the mode and introspection --------------------------------------- */

unsigned
pf_degrade_mode(const pf_degrade_t *d)
{
    if (d == NULL) {
        return 0;
    }
    return atomic_load_explicit(&((pf_degrade_t *)d)->mode,
                                memory_order_relaxed);
}

const char *
pf_degrade_mode_name(const pf_degrade_t *d)
{
    if (d == NULL) {
        return NULL;
    }
    return d->modes[pf_degrade_mode(d)];
}

size_t
pf_degrade_mode_count(const pf_degrade_t *d)
{
    return d == NULL ? 0 : d->nmodes;
}

const char *
pf_degrade_mode_name_at(const pf_degrade_t *d, size_t i)
{
    if (d == NULL || i >= d->nmodes) {
        return NULL;
    }
    return d->modes[i];
}

int
pf_degrade_mode_index(const pf_degrade_t *d, const char *name,
                          unsigned *out)
{
    if (d == NULL || name == NULL || out == NULL) {
        return PF_EINVAL;
    }
    return find_mode(d->modes, d->nmodes, name, out);
}

const char *
pf_degrade_name(const pf_degrade_t *d)
{
    return d == NULL ? NULL : d->name;
}

void
pf_degrade_metrics(pf_degrade_t *d, pf_degrade_metrics_t *out)
{
    if (out == NULL) {
        return;
    }
    memset(out, 0, sizeof(*out));
    if (d == NULL) {
        return;
    }
    pthread_mutex_lock(&d->lock);
    out->mode = atomic_load_explicit(&d->mode, memory_order_relaxed);
    out->target = d->target;
    out->overridden = d->overridden;
    out->sampling = pf__ticker_running(&d->sampler);
    out->time_in_mode =
        (double)(pf_clock_now_ns(d->clock) - d->entered_ns) / 1e9;
    out->updates = d->updates;
    out->transitions = d->transitions;
    out->events_dropped = d->evq.dropped;
    out->rules = d->nrules;
    out->last = d->last;
    pthread_mutex_unlock(&d->lock);
    out->sample_errors =
        atomic_load_explicit(&d->sample_errors, memory_order_relaxed);
}
