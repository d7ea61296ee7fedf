/* The resource leak detector (see leak.h).
 *
 * A tick (one monitoring step, or one pf_leak_detector_check) does, in
 * order:
 *   1. take a sample with no lock held (the /proc sampler or the user's);
 *   2. under check_mu: record it, push it into the trend window, step the
 *      five threshold levels (leak_trend.c) and note the alerts they raise
 *      or clear; scan the allocation table (leak_track.c) for allocations
 *      held too long and prepare every copy the results need (the
 *      report's list, history entries, per-agent counts) before changing
 *      anything, so an allocation failure leaves no half-applied state;
 *      then commit: push new leaks into the history ring and mark them
 *      reported; queue the alerts (evq.c), each record owning copies of
 *      what its alert points at;
 *   3. deliver the queued alerts to on_alert, one at a time, in the order
 *      they were queued, with no lock held, then hand the report to the
 *      caller (check) or drop it (the monitoring thread). A check waits
 *      for a delivery in progress on another thread (so its own alerts
 *      have been told when it returns); the monitoring thread does not
 *      (that thread delivers its alerts too), so stop_monitoring from a
 *      listener on a checking thread cannot deadlock with it.
 *
 * The monitoring thread is a ticker (ticker.c): it ticks at once, then
 * every interval on the detector's clock, and stops at once.
 *
 * Locks: check_mu guards the trend window, the levels, the history, the
 * counters, the last sample and the alert queue; each allocation shard has
 * its own lock; the ticker has its own, never held with another. Order:
 * check_mu before a shard lock. */
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "puffinflow/error.h"
#include "puffinflow/leak.h"

#include "clock_impl.h"
#include "evq.h"
#include "leak_track.h"
#include "leak_trend.h"
#include "mem.h"
#include "procfs.h"
#include "strbuf.h"
#include "ticker.h"
#include "timeutil.h"

#define MB_BYTES 1048576.0
#define MAX_TREND_WINDOW 4096u
#define MAX_HISTORY 1000000u
#define MSG_LEN 200

/* The five alerts with a level (all but ALLOCATION). */
#define LEVELS 5

/* Immutable after _new: everything from name to t0_ns. track and monitor
 * have their own locks. The rest is under check_mu. */
struct pf_leak_detector {
    char *name;
    const pf_clock_t *clock;
    int64_t interval_ns;
    int64_t leak_threshold_ns;
    double memory_threshold;
    double fd_threshold;
    double conn_threshold;
    double hysteresis;
    double mem_slope_bps; /* trend_memory_slope in bytes per second */
    double fd_slope_ps;   /* trend_fd_slope in fds per second */
    double mem_slope_cfg; /* as configured, per minute, for messages */
    double fd_slope_cfg;
    unsigned trend_window;
    unsigned history_cap;
    int pid;
    pf_leak_sample_fn sample;
    void *sample_arg;
    pf_leak_alert_fn listener;
    void *listener_arg;
    int64_t t0_ns;

    pf__track_t track;

    pf__ticker_t monitor;

    pthread_mutex_t check_mu;
    pf__trend_window_t win;
    pf__level_t levels[LEVELS];
    double mem_slope; /* MB per minute, NaN until the window fills */
    double fd_slope;
    pf_leak_t *hist; /* ring of history_cap; oldest at hist_head */
    size_t hist_head;
    size_t hist_len;
    uint64_t total_detected;
    uint64_t samples;
    uint64_t sample_errors;
    uint64_t alerts;
    bool leaks_now; /* the last scan found leaks */
    pf_leak_sample_t last_sample;
    pf__evq_t alerts_q;  /* alert_ev_t records not yet told */
    pthread_cond_t idle; /* a delivery of alerts_q ended */
};

/* An alert prepared under check_mu and delivered after it. */
typedef struct pending {
    pf_leak_alert_t alert;
    char msg[MSG_LEN];
} pending_t;

/* A queued alert. It owns what its alert points at (the pointers are set
 * when it is delivered), so any thread may deliver it after the tick that
 * raised it has returned. */
typedef struct alert_ev {
    pending_t p;
    pf_leak_sample_t sample; /* the deciding sample (not ALLOCATION) */
    pf_leak_t leak;          /* ALLOCATION: agent and state in one block */
} alert_ev_t;

/* ---- names and sampling -------------------------------------------------- */

const char *
pf_leak_alert_kind_name(pf_leak_alert_kind_t kind)
{
    switch (kind) {
    case PF_LEAK_ALERT_MEMORY:
        return "memory";
    case PF_LEAK_ALERT_FILE_HANDLES:
        return "file_handles";
    case PF_LEAK_ALERT_CONNECTIONS:
        return "connections";
    case PF_LEAK_ALERT_MEMORY_TREND:
        return "memory_trend";
    case PF_LEAK_ALERT_FD_TREND:
        return "fd_trend";
    case PF_LEAK_ALERT_ALLOCATION:
        return "allocation";
    }
    return "unknown";
}

/* Take this tick's sample with no lock held. */
static int
take_sample(pf_leak_detector_t *d, pf_leak_sample_t *s)
{
    int rc;

    memset(s, 0, sizeof(*s));
    s->pid = d->pid;
    if (d->sample != NULL) {
        rc = d->sample(d->pid, s, d->sample_arg);
    } else {
        rc = pf_leak_sample_process(d->pid, s);
    }
    if (rc != 0) {
        memset(s, 0, sizeof(*s));
        return rc;
    }
    s->pid = d->pid;
    s->at_ns = pf_clock_now_ns(d->clock);
    s->memory_fraction =
        s->memory_limit_bytes > 0
            ? (double)s->rss_bytes / (double)s->memory_limit_bytes
            : 0.0;
    /* A custom sampler may report any count: saturate rather than overflow
     * (signed overflow is undefined); INT64_MAX is over every threshold,
     * which is the right judgement for an absurd count. */
    s->connections =
        s->tcp < 0 || s->udp < 0 ? -1 : pf__add_sat(s->tcp, s->udp);
    return 0;
}

/* ---- config -------------------------------------------------------------- */

void
pf_leak_config_init(pf_leak_config_t *cfg)
{
    if (cfg == NULL) {
        return;
    }
    memset(cfg, 0, sizeof(*cfg));
    cfg->name = "default";
    cfg->check_interval = 60.0;
    cfg->memory_threshold = 0.8;
    cfg->file_handle_threshold = 1000;
    cfg->connection_threshold = 100;
    cfg->leak_threshold = 300.0;
    cfg->hysteresis = 0.1;
    cfg->trend_window = 10;
    cfg->trend_memory_slope = 1.0;
    cfg->trend_fd_slope = 1.0;
    cfg->leak_history = 100;
}

static bool
positive_finite(double v)
{
    return isfinite(v) && v > 0.0;
}

/* Check every field; convert durations. 0 or PF_EINVAL. */
static int
validate(const pf_leak_config_t *cfg, int64_t *interval_ns,
         int64_t *threshold_ns)
{
    if (cfg->name == NULL || cfg->check_interval == 0.0 ||
        cfg->leak_threshold == 0.0 ||
        pf__secs_to_ns(cfg->check_interval, interval_ns) != 0 ||
        pf__secs_to_ns(cfg->leak_threshold, threshold_ns) != 0 ||
        *interval_ns == 0 || *threshold_ns == 0) {
        return PF_EINVAL;
    }
    if (!(cfg->memory_threshold > 0.0 && cfg->memory_threshold <= 1.0) ||
        cfg->file_handle_threshold == 0 || cfg->connection_threshold == 0 ||
        !(cfg->hysteresis >= 0.0 && cfg->hysteresis < 1.0)) {
        return PF_EINVAL;
    }
    if (cfg->trend_window != 0 &&
        (cfg->trend_window < 4 || cfg->trend_window > MAX_TREND_WINDOW)) {
        return PF_EINVAL;
    }
    if (!positive_finite(cfg->trend_memory_slope) ||
        !positive_finite(cfg->trend_fd_slope) ||
        cfg->leak_history > MAX_HISTORY || cfg->pid < 0) {
        return PF_EINVAL;
    }
    return 0;
}

/* ---- lifecycle ----------------------------------------------------------- */

static void monitor_tick(void *arg);
static void release_alert(void *ev, void *ctx);

int
pf_leak_detector_new(const pf_leak_config_t *cfg, pf_leak_detector_t **out)
{
    pf_leak_detector_t *d;
    int64_t interval_ns;
    int64_t threshold_ns;
    int stage = 0;
    int rc;

    if (cfg == NULL || out == NULL) {
        return PF_EINVAL;
    }
    rc = validate(cfg, &interval_ns, &threshold_ns);
    if (rc != 0) {
        return rc;
    }
    if (cfg->sample == NULL && cfg->pid != 0) {
        pf__proc_status_t st;

        rc = pf__proc_read_status(PF__PROC_ROOT, cfg->pid, &st);
        if (rc != 0) {
            return rc;
        }
    }
    d = pf__calloc(1, sizeof(*d));
    if (d == NULL) {
        return PF_ENOMEM;
    }
    d->name = pf__strdup(cfg->name);
    rc = d->name == NULL ? PF_ENOMEM : 0;
    if (rc == 0 && cfg->leak_history > 0) {
        d->hist = pf__calloc(cfg->leak_history, sizeof(*d->hist));
        rc = d->hist == NULL ? PF_ENOMEM : 0;
    }
    if (rc == 0 && cfg->trend_window > 0) {
        rc = pf__trend_window_init(&d->win, cfg->trend_window);
    }
    if (rc == 0) {
        rc = pf__track_init(&d->track);
        stage = rc == 0 ? 1 : 0;
    }
    if (rc == 0) {
        rc = pf__ticker_init(&d->monitor, cfg->clock, interval_ns,
                             monitor_tick, d);
        stage = rc == 0 ? 2 : stage;
    }
    if (rc == 0) {
        rc = pthread_cond_init(&d->idle, NULL) == 0 ? 0 : PF_ESYSTEM;
        stage = rc == 0 ? 3 : stage;
    }
    if (rc == 0) {
        rc = pthread_mutex_init(&d->check_mu, NULL) == 0 ? 0 : PF_ESYSTEM;
    }
    if (rc != 0) {
        if (stage >= 3) {
            pthread_cond_destroy(&d->idle);
        }
        if (stage >= 2) {
            pf__ticker_destroy(&d->monitor);
        }
        if (stage >= 1) {
            pf__track_destroy(&d->track);
        }
        if (cfg->trend_window > 0) {
            pf__trend_window_destroy(&d->win);
        }
        pf__free(d->hist);
        pf__free(d->name);
        pf__free(d);
        return rc;
    }
    d->clock = cfg->clock;
    d->interval_ns = interval_ns;
    d->leak_threshold_ns = threshold_ns;
    d->memory_threshold = cfg->memory_threshold;
    d->fd_threshold = (double)cfg->file_handle_threshold;
    d->conn_threshold = (double)cfg->connection_threshold;
    d->hysteresis = cfg->hysteresis;
    d->mem_slope_cfg = cfg->trend_memory_slope;
    d->fd_slope_cfg = cfg->trend_fd_slope;
    d->mem_slope_bps = cfg->trend_memory_slope * MB_BYTES / 60.0;
    d->fd_slope_ps = cfg->trend_fd_slope / 60.0;
    d->trend_window = cfg->trend_window;
    d->history_cap = cfg->leak_history;
    d->pid = cfg->pid;
    d->sample = cfg->sample;
    d->sample_arg = cfg->sample_arg;
    d->listener = cfg->listener;
    d->listener_arg = cfg->listener_arg;
    d->t0_ns = pf_clock_now_ns(cfg->clock);
    d->mem_slope = NAN;
    d->fd_slope = NAN;
    pf__evq_init(&d->alerts_q, sizeof(alert_ev_t));
    *out = d;
    return 0;
}

void
pf_leak_detector_free(pf_leak_detector_t *d)
{
    size_t i;

    if (d == NULL) {
        return;
    }
    pf__ticker_destroy(&d->monitor); /* stops it */
    /* No other call may be running and the monitor has ended, so no
     * delivery is under way; every tick empties the queue, so this only
     * frees its memory. */
    pf__evq_clear(&d->alerts_q, release_alert, NULL);
    for (i = 0; i < d->hist_len; i++) {
        pf__free((char *)d->hist[(d->hist_head + i) % d->history_cap].agent);
    }
    pf__free(d->hist);
    if (d->trend_window > 0) {
        pf__trend_window_destroy(&d->win);
    }
    pf__track_destroy(&d->track);
    pthread_mutex_destroy(&d->check_mu);
    pthread_cond_destroy(&d->idle);
    pf__free(d->name);
    pf__free(d);
}

const char *
pf_leak_detector_name(const pf_leak_detector_t *d)
{
    return d == NULL ? NULL : d->name;
}

/* ---- allocation tracking ------------------------------------------------- */

static bool
valid_amount(double v)
{
    return isfinite(v) && v >= 0.0;
}

int
pf_leak_detector_track_allocation(pf_leak_detector_t *d, const char *agent,
                                  const char *state,
                                  const pf_leak_resources_t *resources)
{
    return pf_leak_detector_track_allocation_ex(d, agent, state, 0,
                                                resources);
}

int
pf_leak_detector_track_release(pf_leak_detector_t *d, const char *agent,
                               const char *state)
{
    return pf_leak_detector_track_release_ex(d, agent, state, 0);
}

int
pf_leak_detector_track_allocation_ex(pf_leak_detector_t *d, const char *agent,
                                     const char *state, uint64_t instance,
                                     const pf_leak_resources_t *resources)
{
    if (d == NULL || agent == NULL || state == NULL) {
        return PF_EINVAL;
    }
    if (resources != NULL && (!valid_amount(resources->cpu_units) ||
                              !valid_amount(resources->memory_mb) ||
                              !valid_amount(resources->io_weight) ||
                              !valid_amount(resources->network_weight) ||
                              !valid_amount(resources->gpu_units))) {
        return PF_EINVAL;
    }
    /* A coarse read: leak_threshold counts seconds, and this is the hot
     * path the runtime takes for every state. */
    return pf__track_alloc(&d->track, agent, state, instance, resources,
                           pf__clock_now_coarse_ns(d->clock));
}

int
pf_leak_detector_track_release_ex(pf_leak_detector_t *d, const char *agent,
                                  const char *state, uint64_t instance)
{
    if (d == NULL || agent == NULL || state == NULL) {
        return PF_EINVAL;
    }
    return pf__track_release(&d->track, agent, state, instance);
}

/* ---- one tick ------------------------------------------------------------ */

static void __attribute__((format(printf, 2, 3)))
set_msg(pending_t *p, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    pf__vsnprintf_c(p->msg, sizeof(p->msg), fmt, ap);
    va_end(ap);
    p->alert.message = p->msg;
}

/* Step level k with value against limit; queue the alert it raises or
 * clears. over/under are the level's conditions. */
static void
step_level(pf_leak_detector_t *d, int k, bool over, bool under, double value,
           double limit, const pf_leak_sample_t *s, pending_t *pend,
           size_t *npend)
{
    int step = pf__level_step(&d->levels[k], over, under);
    pending_t *p;
    const char *verb = step > 0 ? "above" : "back below";
    double span = d->trend_window > 0 ? pf__trend_window_span(&d->win) : 0.0;

    if (step == 0) {
        return;
    }
    p = &pend[(*npend)++];
    memset(&p->alert, 0, sizeof(p->alert));
    p->alert.kind = (pf_leak_alert_kind_t)k;
    p->alert.cleared = step < 0;
    p->alert.value = value;
    p->alert.limit = limit;
    p->alert.at_ns = s->at_ns;
    p->alert.sample = s;
    if (step > 0) {
        d->alerts++;
    }
    switch ((pf_leak_alert_kind_t)k) {
    case PF_LEAK_ALERT_MEMORY:
        set_msg(p, "memory %.1f%% of %.1f MB, %s the %.1f%% threshold",
                value * 100.0, (double)s->memory_limit_bytes / MB_BYTES, verb,
                limit * 100.0);
        break;
    case PF_LEAK_ALERT_FILE_HANDLES:
        set_msg(p, "%.0f open fds, %s the threshold of %.0f", value, verb,
                limit);
        break;
    case PF_LEAK_ALERT_CONNECTIONS:
        set_msg(p, "%.0f connections, %s the threshold of %.0f", value, verb,
                limit);
        break;
    case PF_LEAK_ALERT_MEMORY_TREND:
        p->alert.window_seconds = span;
        set_msg(p, "memory %+.1f MB/min over %.1f min, %s %.1f MB/min", value,
                span / 60.0, verb, limit);
        break;
    case PF_LEAK_ALERT_FD_TREND:
        p->alert.window_seconds = span;
        set_msg(p, "fds %+.1f/min over %.1f min, %s %.1f/min", value,
                span / 60.0, verb, limit);
        break;
    case PF_LEAK_ALERT_ALLOCATION:
        break;
    }
}

/* Record a good sample, update the trends and step every level. Under
 * check_mu. s must outlive the pending alerts. */
static void
judge_sample(pf_leak_detector_t *d, const pf_leak_sample_t *s, pending_t *pend,
             size_t *npend)
{
    double keep = 1.0 - d->hysteresis;
    double mem_slope = NAN;
    double fd_slope = NAN;
    bool mem_grows = false;
    bool fd_grows = false;

    d->samples++;
    d->last_sample = *s;
    if (s->memory_limit_bytes > 0) {
        step_level(d, PF_LEAK_ALERT_MEMORY,
                   s->memory_fraction > d->memory_threshold,
                   s->memory_fraction <= d->memory_threshold * keep,
                   s->memory_fraction, d->memory_threshold, s, pend, npend);
    }
    step_level(d, PF_LEAK_ALERT_FILE_HANDLES,
               (double)s->open_fds > d->fd_threshold,
               (double)s->open_fds <= d->fd_threshold * keep,
               (double)s->open_fds, d->fd_threshold, s, pend, npend);
    if (s->connections >= 0) {
        step_level(d, PF_LEAK_ALERT_CONNECTIONS,
                   (double)s->connections > d->conn_threshold,
                   (double)s->connections <= d->conn_threshold * keep,
                   (double)s->connections, d->conn_threshold, s, pend, npend);
    }
    if (d->trend_window == 0) {
        return;
    }
    pf__trend_window_push(&d->win, (double)(s->at_ns - d->t0_ns) / 1e9,
                          (double)s->rss_bytes, (double)s->open_fds);
    if (!pf__trend_window_full(&d->win)) {
        return;
    }
    mem_grows = pf__trend_window_growing(&d->win, PF__TREND_RSS,
                                         d->mem_slope_bps, &mem_slope);
    fd_grows = pf__trend_window_growing(&d->win, PF__TREND_FDS, d->fd_slope_ps,
                                        &fd_slope);
    /* Per second to per minute (and bytes to MB) for people. */
    d->mem_slope = mem_slope * 60.0 / MB_BYTES;
    d->fd_slope = fd_slope * 60.0;
    step_level(d, PF_LEAK_ALERT_MEMORY_TREND, mem_grows,
               !(d->mem_slope > d->mem_slope_cfg * keep), d->mem_slope,
               d->mem_slope_cfg, s, pend, npend);
    step_level(d, PF_LEAK_ALERT_FD_TREND, fd_grows,
               !(d->fd_slope > d->fd_slope_cfg * keep), d->fd_slope,
               d->fd_slope_cfg, s, pend, npend);
}

/* One block holding agent '\0' state '\0'; the leak's strings point in. */
static int
leak_fill(pf_leak_t *l, const pf__track_hit_t *h, int64_t now_ns,
          double threshold_s)
{
    size_t a = strlen(h->agent) + 1;
    size_t s = strlen(h->state) + 1;
    char *block = pf__malloc(a + s);

    if (block == NULL) {
        return PF_ENOMEM;
    }
    memcpy(block, h->agent, a);
    memcpy(block + a, h->state, s);
    l->agent = block;
    l->state = block + a;
    l->instance = h->instance;
    l->resources = h->res;
    l->allocated_ns = h->allocated_ns;
    l->held_seconds = (double)(now_ns - h->allocated_ns) / 1e9;
    l->threshold_seconds = threshold_s;
    return 0;
}

void
pf_leak_list_free(pf_leak_t *list, size_t len)
{
    size_t i;

    if (list == NULL) {
        return;
    }
    for (i = 0; i < len; i++) {
        pf__free((char *)list[i].agent);
    }
    pf__free(list);
}

static int
hit_cmp(const void *a, const void *b)
{
    const pf__track_hit_t *x = a;
    const pf__track_hit_t *y = b;

    int c;

    if (x->allocated_ns != y->allocated_ns) {
        return x->allocated_ns < y->allocated_ns ? -1 : 1;
    }
    c = strcmp(x->agent, y->agent);
    if (c != 0) {
        return c;
    }
    c = strcmp(x->state, y->state);
    if (c != 0) {
        return c;
    }
    return x->instance < y->instance ? -1 : x->instance > y->instance;
}

static int
str_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Leaks per agent of a list, sorted by agent name. */
static int
count_by_agent(const pf_leak_t *leaks, size_t n, pf_leak_agent_count_t **out,
               size_t *out_len)
{
    const char **names;
    pf_leak_agent_count_t *counts;
    size_t i;
    size_t k = 0;

    *out = NULL;
    *out_len = 0;
    if (n == 0) {
        return 0;
    }
    names = pf__calloc(n, sizeof(*names));
    counts = pf__calloc(n, sizeof(*counts));
    if (names == NULL || counts == NULL) {
        pf__free(names);
        pf__free(counts);
        return PF_ENOMEM;
    }
    for (i = 0; i < n; i++) {
        names[i] = leaks[i].agent;
    }
    qsort(names, n, sizeof(*names), str_cmp);
    for (i = 0; i < n; i++) {
        if (k == 0 || strcmp(counts[k - 1].agent, names[i]) != 0) {
            counts[k].agent = names[i];
            k++;
        }
        counts[k - 1].leaks++;
    }
    pf__free(names);
    *out = counts;
    *out_len = k;
    return 0;
}

/* What the allocation part of a tick prepares before committing. */
typedef struct scan_result {
    pf__track_hit_t *hits;
    size_t nhits;
    size_t hits_cap;
    pf_leak_t *leaks; /* one per hit, in hit order (oldest first) */
    pf_leak_t *fresh; /* history copies of the new ones */
    size_t nfresh;
    pf_leak_agent_count_t *by_agent;
    size_t by_agent_len;
} scan_result_t;

static void
scan_result_free(scan_result_t *r)
{
    pf__free(r->hits);
    pf_leak_list_free(r->leaks, r->nhits);
    pf_leak_list_free(r->fresh, r->nfresh);
    pf__free(r->by_agent);
    memset(r, 0, sizeof(*r));
}

/* Scan for leaks and make every copy; changes nothing. Under check_mu. */
static int
scan_prepare(pf_leak_detector_t *d, int64_t now_ns, bool want_by_agent,
             scan_result_t *r)
{
    double thr_s = pf__ns_to_secs(d->leak_threshold_ns);
    size_t i;
    size_t nnew = 0;
    int rc;

    memset(r, 0, sizeof(*r));
    rc = pf__track_scan(&d->track, now_ns, d->leak_threshold_ns, &r->hits,
                        &r->nhits, &r->hits_cap);
    if (rc != 0 || r->nhits == 0) {
        return rc;
    }
    qsort(r->hits, r->nhits, sizeof(*r->hits), hit_cmp);
    r->leaks = pf__calloc(r->nhits, sizeof(*r->leaks));
    if (r->leaks == NULL) {
        scan_result_free(r);
        return PF_ENOMEM;
    }
    for (i = 0; i < r->nhits; i++) {
        nnew += r->hits[i].is_new ? 1 : 0;
    }
    if (nnew > 0 && d->history_cap > 0) {
        r->fresh = pf__calloc(nnew, sizeof(*r->fresh));
        if (r->fresh == NULL) {
            rc = PF_ENOMEM;
        }
    }
    for (i = 0; i < r->nhits && rc == 0; i++) {
        rc = leak_fill(&r->leaks[i], &r->hits[i], now_ns, thr_s);
        if (rc == 0 && r->hits[i].is_new && r->fresh != NULL) {
            rc = leak_fill(&r->fresh[r->nfresh], &r->hits[i], now_ns, thr_s);
            r->nfresh += rc == 0 ? 1 : 0;
        }
    }
    if (rc == 0 && want_by_agent) {
        rc = count_by_agent(r->leaks, r->nhits, &r->by_agent, &r->by_agent_len);
    }
    if (rc != 0) {
        scan_result_free(r);
    }
    return rc;
}

/* Commit a prepared scan: history, counters, reported marks. Under
 * check_mu; cannot fail. The fresh copies move into the history. */
static void
scan_commit(pf_leak_detector_t *d, scan_result_t *r)
{
    size_t i;
    size_t nnew = 0;

    for (i = 0; i < r->nhits; i++) {
        nnew += r->hits[i].is_new ? 1 : 0;
    }
    for (i = 0; i < r->nfresh; i++) {
        size_t slot;

        if (d->hist_len == d->history_cap) {
            /* Full: drop the oldest. */
            pf__free((char *)d->hist[d->hist_head].agent);
            d->hist_head = (d->hist_head + 1) % d->history_cap;
            d->hist_len--;
        }
        slot = (d->hist_head + d->hist_len) % d->history_cap;
        d->hist[slot] = r->fresh[i];
        d->hist_len++;
    }
    pf__free(r->fresh);
    r->fresh = NULL;
    r->nfresh = 0;
    d->total_detected += nnew;
    d->alerts += nnew;
    d->leaks_now = r->nhits > 0;
    pf__track_mark_reported(&d->track, r->hits, r->nhits);
}

/* ---- alerts -------------------------------------------------------------- */

static void
deliver_alert(void *ev, void *ctx)
{
    alert_ev_t *e = ev;
    pf_leak_detector_t *d = ctx;
    bool alloc = e->p.alert.kind == PF_LEAK_ALERT_ALLOCATION;

    /* The record was copied into the queue: point into this copy. */
    e->p.alert.message = e->p.msg;
    e->p.alert.sample = alloc ? NULL : &e->sample;
    e->p.alert.leak = alloc ? &e->leak : NULL;
    d->listener(&e->p.alert, d->listener_arg);
}

static void
release_alert(void *ev, void *ctx)
{
    alert_ev_t *e = ev;

    (void)ctx;
    pf__free((char *)e->leak.agent);
}

/* Queue an ALLOCATION alert for new hit h (its report copy is l). Under
 * check_mu, before the purge: h points into the table. A copy that cannot
 * be made loses the alert, counted as the queue's own losses are. */
static void
queue_allocation_alert(pf_leak_detector_t *d, const pf__track_hit_t *h,
                       const pf_leak_t *l, int64_t now)
{
    alert_ev_t e;

    memset(&e, 0, sizeof(e));
    if (leak_fill(&e.leak, h, now, l->threshold_seconds) != 0) {
        d->alerts_q.dropped++;
        return;
    }
    e.p.alert.kind = PF_LEAK_ALERT_ALLOCATION;
    e.p.alert.value = l->held_seconds;
    e.p.alert.limit = l->threshold_seconds;
    e.p.alert.at_ns = now;
    if (l->instance == 0) {
        set_msg(&e.p, "%s/%s has held its resources %.1f s, over %.1f s",
                l->agent, l->state, l->held_seconds, l->threshold_seconds);
    } else {
        set_msg(&e.p,
                "%s/%s#%llu has held its resources %.1f s, over %.1f s",
                l->agent, l->state, (unsigned long long)l->instance,
                l->held_seconds, l->threshold_seconds);
    }
    if (!pf__evq_push(&d->alerts_q, &e)) {
        release_alert(&e, NULL);
    }
}

/* Queue this tick's alerts in the order the old code told them: the
 * levels' (raised by sample s), then one per new leak of sr (NULL when
 * the scan failed). Under check_mu. */
static void
queue_alerts(pf_leak_detector_t *d, const pending_t *pend, size_t npend,
             const pf_leak_sample_t *s, const scan_result_t *sr, int64_t now)
{
    alert_ev_t e;
    size_t i;

    if (d->listener == NULL) {
        return;
    }
    for (i = 0; i < npend; i++) {
        memset(&e, 0, sizeof(e));
        e.p = pend[i];
        e.sample = *s;
        (void)pf__evq_push(&d->alerts_q, &e);
    }
    for (i = 0; sr != NULL && i < sr->nhits; i++) {
        if (sr->hits[i].is_new) {
            queue_allocation_alert(d, &sr->hits[i], &sr->leaks[i], now);
        }
    }
}

/* Tell the queued alerts; called and returns with check_mu held. wait:
 * first let a delivery in progress on another thread finish (check); the
 * monitoring thread leaves its alerts to that thread instead. */
static void
deliver_alerts(pf_leak_detector_t *d, bool wait)
{
    if (d->listener == NULL) {
        return;
    }
    if (wait) {
        pf__evq_drain_all(&d->alerts_q, &d->check_mu, &d->idle, NULL,
                          deliver_alert, release_alert, d);
    } else {
        pf__evq_drain(&d->alerts_q, &d->check_mu, &d->idle, NULL,
                      deliver_alert, release_alert, d);
    }
}

/* ---- the tick ------------------------------------------------------------ */

/* One tick. With rep (check), the report is filled and returned;
 * without (the monitoring thread), results are only alerted. */
static int
tick(pf_leak_detector_t *d, pf_leak_report_t *rep)
{
    pf_leak_sample_t s;
    pending_t pend[LEVELS];
    size_t npend = 0;
    scan_result_t sr;
    int sample_rc;
    int rc;
    int64_t now;
    size_t i;

    sample_rc = take_sample(d, &s);
    pthread_mutex_lock(&d->check_mu);
    now = pf_clock_now_ns(d->clock);
    if (sample_rc == 0) {
        judge_sample(d, &s, pend, &npend);
    } else {
        d->sample_errors++;
    }
    rc = scan_prepare(d, now, rep != NULL, &sr);
    if (rc == 0) {
        scan_commit(d, &sr);
    }
    queue_alerts(d, pend, npend, &s, rc == 0 ? &sr : NULL, now);
    if (rep != NULL) {
        for (i = 0; i < LEVELS; i++) {
            rep->alerting[i] = d->levels[i].raised;
        }
        rep->alerting[PF_LEAK_ALERT_ALLOCATION] = rc == 0 && sr.nhits > 0;
        rep->memory_slope = d->mem_slope;
        rep->fd_slope = d->fd_slope;
    }
    /* The hits point into the table: not used past this point. */
    pf__free(sr.hits);
    sr.hits = NULL;
    /* Purge here, where no scan's pointers are in use by anyone else. */
    pf__track_purge(&d->track);
    deliver_alerts(d, rep != NULL);
    pthread_mutex_unlock(&d->check_mu);

    if (rep == NULL || rc != 0) {
        scan_result_free(&sr);
        return rc;
    }
    rep->sample = s;
    rep->sample_error = sample_rc;
    rep->leaks = sr.leaks;
    rep->leaks_len = sr.nhits;
    rep->by_agent = sr.by_agent;
    rep->by_agent_len = sr.by_agent_len;
    return 0;
}

int
pf_leak_detector_check(pf_leak_detector_t *d, pf_leak_report_t *out)
{
    pf_leak_report_t r;
    int rc;

    if (d == NULL || out == NULL) {
        return PF_EINVAL;
    }
    memset(&r, 0, sizeof(r));
    rc = tick(d, &r);
    if (rc != 0) {
        memset(out, 0, sizeof(*out));
        out->memory_slope = NAN;
        out->fd_slope = NAN;
        return rc;
    }
    *out = r;
    return 0;
}

void
pf_leak_report_free(pf_leak_report_t *r)
{
    if (r == NULL) {
        return;
    }
    pf_leak_list_free(r->leaks, r->leaks_len);
    pf__free(r->by_agent);
    memset(r, 0, sizeof(*r));
    r->memory_slope = NAN;
    r->fd_slope = NAN;
}

/* ---- history and metrics ------------------------------------------------- */

int
pf_leak_detector_history(pf_leak_detector_t *d, pf_leak_t **out, size_t *len)
{
    pf_leak_t *copy = NULL;
    size_t i;
    size_t n;

    if (d == NULL || out == NULL || len == NULL) {
        return PF_EINVAL;
    }
    pthread_mutex_lock(&d->check_mu);
    n = d->hist_len;
    if (n > 0) {
        copy = pf__calloc(n, sizeof(*copy));
    }
    for (i = 0; copy != NULL && i < n; i++) {
        const pf_leak_t *h = &d->hist[(d->hist_head + i) % d->history_cap];
        size_t a = strlen(h->agent) + 1;
        size_t s = strlen(h->state) + 1;
        char *block = pf__malloc(a + s);

        if (block == NULL) {
            pf_leak_list_free(copy, i);
            copy = NULL;
            break;
        }
        copy[i] = *h;
        memcpy(block, h->agent, a);
        memcpy(block + a, h->state, s);
        copy[i].agent = block;
        copy[i].state = block + a;
    }
    pthread_mutex_unlock(&d->check_mu);
    if (n > 0 && copy == NULL) {
        return PF_ENOMEM;
    }
    *out = copy;
    *len = n;
    return 0;
}

void
pf_leak_detector_clear_history(pf_leak_detector_t *d)
{
    size_t i;

    if (d == NULL) {
        return;
    }
    pthread_mutex_lock(&d->check_mu);
    for (i = 0; i < d->hist_len; i++) {
        pf__free((char *)d->hist[(d->hist_head + i) % d->history_cap].agent);
    }
    d->hist_head = 0;
    d->hist_len = 0;
    pthread_mutex_unlock(&d->check_mu);
}

void
pf_leak_detector_metrics(pf_leak_detector_t *d, pf_leak_metrics_t *out)
{
    pf__track_stats_t ts;
    int64_t now;
    size_t i;

    if (d == NULL || out == NULL) {
        return;
    }
    memset(out, 0, sizeof(*out));
    now = pf_clock_now_ns(d->clock);
    pthread_mutex_lock(&d->check_mu);
    pf__track_stats(&d->track, now, d->leak_threshold_ns, &ts);
    out->total_detected = d->total_detected;
    out->history_len = d->hist_len;
    out->samples = d->samples;
    out->sample_errors = d->sample_errors;
    out->alerts = d->alerts;
    for (i = 0; i < LEVELS; i++) {
        out->alerting[i] = d->levels[i].raised;
    }
    out->last_sample = d->last_sample;
    out->memory_slope = d->mem_slope;
    out->fd_slope = d->fd_slope;
    pthread_mutex_unlock(&d->check_mu);
    out->total_allocations = ts.live;
    out->allocations = ts.allocs;
    out->releases = ts.releases;
    out->current_leaks = ts.over;
    out->alerting[PF_LEAK_ALERT_ALLOCATION] = ts.over > 0;
    out->leak_threshold = pf__ns_to_secs(d->leak_threshold_ns);
    out->oldest_allocation_age =
        ts.live > 0 ? (double)(now - ts.oldest_ns) / 1e9 : NAN;
    out->monitoring = pf_leak_detector_is_monitoring(d);
}

/* ---- monitoring ---------------------------------------------------------- */

static void
monitor_tick(void *arg)
{
    (void)tick(arg, NULL);
}

int
pf_leak_detector_start_monitoring(pf_leak_detector_t *d)
{
    if (d == NULL) {
        return PF_EINVAL;
    }
    return pf__ticker_start(&d->monitor);
}

int
pf_leak_detector_stop_monitoring(pf_leak_detector_t *d)
{
    if (d == NULL) {
        return PF_EINVAL;
    }
    return pf__ticker_stop(&d->monitor);
}

bool
pf_leak_detector_is_monitoring(const pf_leak_detector_t *d)
{
    return d != NULL && pf__ticker_running(&d->monitor);
}
