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
 *      reported;
 *   3. with no lock held, call on_alert for each alert, then hand the
 *      report to the caller (check) or drop it (the monitoring thread).
 *
 * The monitoring thread waits between ticks with pf__wait_until on the
 * detector's clock, so a manual clock drives it; stop sets the state to
 * STOPPING and signals mon_cv, which wakes the wait at once.
 *
 * Locks: mon_mu guards the monitoring state and thread; check_mu guards
 * the trend window, the levels, the history, the counters and the last
 * sample; each allocation shard has its own lock. Order: check_mu before a
 * shard lock; mon_mu is never held with another. */
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
#include "leak_track.h"
#include "leak_trend.h"
#include "mem.h"
#include "procfs.h"
#include "timeutil.h"
#include "wait.h"

#define MB_BYTES 1048576.0
#define MAX_TREND_WINDOW 4096u
#define MAX_HISTORY 1000000u
#define MSG_LEN 200

/* The five alerts with a level (all but ALLOCATION). */
#define LEVELS 5

enum { MON_IDLE = 0, MON_RUNNING = 1, MON_STOPPING = 2 };

/* Immutable after _new: everything from name to t0_ns. track has its own
 * locks. mon_state is written under mon_mu and read lock-free by
 * is_monitoring. The rest is under check_mu. */
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
    pf_leak_alert_fn on_alert;
    void *on_alert_arg;
    int64_t t0_ns;

    pf__track_t track;

    pthread_mutex_t mon_mu;
    pthread_cond_t mon_cv;
    _Atomic int mon_state;
    pthread_t thread;

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
};

/* An alert prepared under check_mu and delivered after it. */
typedef struct pending {
    pf_leak_alert_t alert;
    char msg[MSG_LEN];
} pending_t;

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
        rc = pthread_mutex_init(&d->mon_mu, NULL) == 0 ? 0 : PF_ESYSTEM;
        stage = rc == 0 ? 2 : stage;
    }
    if (rc == 0) {
        rc = pf__cond_init(&d->mon_cv);
        stage = rc == 0 ? 3 : stage;
    }
    if (rc == 0) {
        rc = pthread_mutex_init(&d->check_mu, NULL) == 0 ? 0 : PF_ESYSTEM;
    }
    if (rc != 0) {
        if (stage >= 3) {
            pthread_cond_destroy(&d->mon_cv);
        }
        if (stage >= 2) {
            pthread_mutex_destroy(&d->mon_mu);
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
    d->on_alert = cfg->on_alert;
    d->on_alert_arg = cfg->on_alert_arg;
    d->t0_ns = pf_clock_now_ns(cfg->clock);
    d->mem_slope = NAN;
    d->fd_slope = NAN;
    atomic_init(&d->mon_state, MON_IDLE);
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
    pf_leak_detector_stop_monitoring(d);
    for (i = 0; i < d->hist_len; i++) {
        pf__free((char *)d->hist[(d->hist_head + i) % d->history_cap].agent);
    }
    pf__free(d->hist);
    if (d->trend_window > 0) {
        pf__trend_window_destroy(&d->win);
    }
    pf__track_destroy(&d->track);
    pthread_mutex_destroy(&d->check_mu);
    pthread_cond_destroy(&d->mon_cv);
    pthread_mutex_destroy(&d->mon_mu);
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
    vsnprintf(p->msg, sizeof(p->msg), fmt, ap);
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
    if (rep != NULL) {
        for (i = 0; i < LEVELS; i++) {
            rep->alerting[i] = d->levels[i].raised;
        }
        rep->alerting[PF_LEAK_ALERT_ALLOCATION] = rc == 0 && sr.nhits > 0;
        rep->memory_slope = d->mem_slope;
        rep->fd_slope = d->fd_slope;
    }
    /* Purge here, where no scan's pointers are in use by anyone else. */
    pf__track_purge(&d->track);
    pthread_mutex_unlock(&d->check_mu);

    if (d->on_alert != NULL) {
        for (i = 0; i < npend; i++) {
            d->on_alert(&pend[i].alert, d->on_alert_arg);
        }
        for (i = 0; rc == 0 && i < sr.nhits; i++) {
            pending_t p;

            if (!sr.hits[i].is_new) {
                continue;
            }
            memset(&p.alert, 0, sizeof(p.alert));
            p.alert.kind = PF_LEAK_ALERT_ALLOCATION;
            p.alert.value = sr.leaks[i].held_seconds;
            p.alert.limit = sr.leaks[i].threshold_seconds;
            p.alert.at_ns = now;
            p.alert.leak = &sr.leaks[i];
            if (sr.leaks[i].instance == 0) {
                set_msg(&p, "%s/%s has held its resources %.1f s, over %.1f s",
                        sr.leaks[i].agent, sr.leaks[i].state,
                        sr.leaks[i].held_seconds,
                        sr.leaks[i].threshold_seconds);
            } else {
                set_msg(&p,
                        "%s/%s#%llu has held its resources %.1f s, over "
                        "%.1f s",
                        sr.leaks[i].agent, sr.leaks[i].state,
                        (unsigned long long)sr.leaks[i].instance,
                        sr.leaks[i].held_seconds,
                        sr.leaks[i].threshold_seconds);
            }
            d->on_alert(&p.alert, d->on_alert_arg);
        }
    }
    /* The hits point into the table: not used past this point. */
    pf__free(sr.hits);
    sr.hits = NULL;
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
pf_leak_report_clear(pf_leak_report_t *r)
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

static void *
monitor_main(void *arg)
{
    pf_leak_detector_t *d = arg;
    int64_t next = pf_clock_now_ns(d->clock);

    pthread_mutex_lock(&d->mon_mu);
    /* Relaxed loads: mon_state is only written under mon_mu, held here. */
    while (atomic_load_explicit(&d->mon_state, memory_order_relaxed) ==
           MON_RUNNING) {
        int64_t now;

        pthread_mutex_unlock(&d->mon_mu);
        (void)tick(d, NULL);
        pthread_mutex_lock(&d->mon_mu);
        /* Fixed rate; after a tick that overran, restart from now rather
         * than firing the missed ticks in a burst. */
        now = pf_clock_now_ns(d->clock);
        next = pf__add_sat(next, d->interval_ns);
        if (next <= now) {
            next = pf__add_sat(now, d->interval_ns);
        }
        while (atomic_load_explicit(&d->mon_state, memory_order_relaxed) ==
                   MON_RUNNING &&
               pf_clock_now_ns(d->clock) < next) {
            pf__wait_until(&d->mon_cv, &d->mon_mu, d->clock,
                           next == INT64_MAX ? PF_DEADLINE_NEVER_NS : next,
                           NULL);
        }
    }
    pthread_mutex_unlock(&d->mon_mu);
    return NULL;
}

int
pf_leak_detector_start_monitoring(pf_leak_detector_t *d)
{
    int rc = 0;

    if (d == NULL) {
        return PF_EINVAL;
    }
    pthread_mutex_lock(&d->mon_mu);
    if (atomic_load_explicit(&d->mon_state, memory_order_relaxed) != MON_IDLE) {
        rc = PF_ESTATE;
    } else {
        atomic_store_explicit(&d->mon_state, MON_RUNNING, memory_order_relaxed);
        if (pthread_create(&d->thread, NULL, monitor_main, d) != 0) {
            atomic_store_explicit(&d->mon_state, MON_IDLE,
                                  memory_order_relaxed);
            rc = PF_ESYSTEM;
        }
    }
    pthread_mutex_unlock(&d->mon_mu);
    return rc;
}

int
pf_leak_detector_stop_monitoring(pf_leak_detector_t *d)
{
    pthread_t th;

    if (d == NULL) {
        return PF_EINVAL;
    }
    pthread_mutex_lock(&d->mon_mu);
    if (atomic_load_explicit(&d->mon_state, memory_order_relaxed) !=
            MON_RUNNING ||
        pthread_equal(pthread_self(), d->thread)) {
        pthread_mutex_unlock(&d->mon_mu);
        return PF_ESTATE;
    }
    /* STOPPING, not IDLE, until joined: a start meanwhile must not make a
     * second thread, nor a second stop join this one. */
    atomic_store_explicit(&d->mon_state, MON_STOPPING, memory_order_relaxed);
    th = d->thread;
    pthread_cond_broadcast(&d->mon_cv);
    pthread_mutex_unlock(&d->mon_mu);
    pthread_join(th, NULL);
    pthread_mutex_lock(&d->mon_mu);
    atomic_store_explicit(&d->mon_state, MON_IDLE, memory_order_relaxed);
    pthread_mutex_unlock(&d->mon_mu);
    return 0;
}

bool
pf_leak_detector_is_monitoring(const pf_leak_detector_t *d)
{
    /* A snapshot for display; relaxed is enough, nothing is read through
     * it. */
    return d != NULL &&
           atomic_load_explicit(&((pf_leak_detector_t *)d)->mon_state,
                                memory_order_relaxed) == MON_RUNNING;
}
