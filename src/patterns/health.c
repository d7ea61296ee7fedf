/* The health checker. Checks live in an array under the checker's one
 * mutex. A run of a check (a "flight") happens on a thread of the shared
 * worker pool (pool.h; threads are reused from run to run), never on the
 * caller's, so a hung check never holds anyone up: the callers that asked
 * for the run wait on the checker's condition variable until every flight
 * they need has settled, or its deadline has passed, whichever comes
 * first. A flight still queued in the pool when its deadline passes with
 * the pool at its cap (every thread busy) is taken back: it settles as a
 * timeout and the check does not run.
 *
 * Settling. A flight settles exactly once, under the lock: when its thread
 * returns before the deadline (with the check's result), or when the first
 * waiting caller sees the deadline pass (as a timeout). Settling applies
 * flap damping, stores the result as the check's latest, and updates the
 * overall status; so concurrent callers sharing a flight count it once.
 * A thread that returns after its flight settled as a timeout only cleans
 * up; its result is dropped. While that thread is still running, the check
 * is not started again: each run asked for meanwhile settles at once as
 * another timeout ("still running"), so a hung dependency holds one pool
 * thread, however often it is probed.
 *
 * Ownership. The checker is reference-counted: one reference for the user
 * (dropped by pf_health_checker_free) and one per flight not yet over.
 * Checks are reference-counted too (the array, each flight, each caller
 * holding one, each queued event). So a check thread that outlives
 * pf_health_checker_free still finds its check and the checker's mutex,
 * sees `closed`, drops its result, and the last reference frees the
 * memory. After `closed` nothing reads the clock or calls the listener:
 * the user may free both once pf_health_checker_free has returned.
 *
 * Events are queued under the lock and delivered by evq.c outside it, one
 * at a time, in order.
 *
 * Locks: the checker's lock alone (pf__wait_until takes the clock's lock
 * inside, with ours released). */
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "puffinflow/error.h"
#include "puffinflow/health.h"

#include "evq.h"
#include "health_impl.h"
#include "mem.h"
#include "pool.h"
#include "strbuf.h"
#include "timeutil.h"
#include "wait.h"

#define DEFAULT_NAME "health"
#define DEFAULT_TIMEOUT 5.0

/* A settled result, as stored and reported. */
typedef struct outcome {
    pf_health_status_t status;   /* after damping */
    bool timed_out;
    unsigned consecutive;        /* consecutive failures so far */
    int64_t duration_ns;
    int64_t wall_ns;
    char msg[PF_HEALTH_MESSAGE_MAX];
} outcome_t;

struct flight;

/* Fields above refs are immutable once added; the rest are under the
 * checker's lock. */
typedef struct check {
    char *name;
    pf_health_fn fn;
    void *arg;
    void (*arg_free)(void *arg);
    int64_t timeout_ns;          /* INT64_MAX = none */
    double timeout_s;
    bool critical;
    char **tags;
    size_t ntags;
    unsigned fail_limit;

    unsigned refs;
    bool removed;
    struct flight *running;      /* its thread has not returned yet */
    bool has_result;
    int64_t done_ns;             /* checker clock when last settled */
    unsigned consecutive;
    outcome_t last;
    uint64_t runs;
    uint64_t failures;
    uint64_t timeouts;
} check_t;

/* One run of a check. hc, chk, start_ns and deadline_ns are immutable;
 * the rest is under the checker's lock. */
typedef struct flight {
    pf__pool_task_t task;        /* the pool's until the run starts */
    pf_health_checker_t *hc;
    check_t *chk;                /* holds a reference */
    int64_t start_ns;
    int64_t deadline_ns;
    unsigned refs;               /* its thread + callers waiting for it */
    bool settled;
    outcome_t out;               /* once settled */
} flight_t;

/* A queued listener event: holds a reference on chk (NULL = overall). */
typedef struct hev {
    check_t *chk;
    pf_health_status_t from;
    pf_health_status_t to;
    int64_t time_ns;
    char msg[PF_HEALTH_MESSAGE_MAX];
} hev_t;

/* Immutable after _new: name, clock, ttl_ns, on_change, on_change_arg.
 * status_pub is an atomic copy of overall for lock-free reads. Everything
 * else is under lock. */
struct pf_health_checker {
    char *name;
    const pf_clock_t *clock;
    int64_t ttl_ns;
    pf_health_listener_fn listener;
    void *listener_arg;
    pthread_mutex_t lock;
    pthread_cond_t cv;  /* a flight settled, a status changed, delivery
                           ended, a check went away */
    _Atomic int status_pub;

    unsigned refs;
    bool closed;
    check_t **checks;
    size_t nchecks;
    size_t cap;
    pf_health_status_t overall;
    pf__evq_t evq;
    uint64_t reports;
    uint64_t runs;
    uint64_t cache_hits;
    uint64_t shared;
    uint64_t failures;
    uint64_t timeouts;
    size_t running;
    void (*on_destroy)(void *arg);
    void *on_destroy_arg;
};

/* ---- small helpers ---------------------------------------------------- */

const char *
pf_health_status_name(pf_health_status_t s)
{
    switch (s) {
    case PF_HEALTHY:
        return "healthy";
    case PF_DEGRADED:
        return "degraded";
    case PF_UNHEALTHY:
        return "unhealthy";
    }
    return "unknown";
}

static bool
status_valid(pf_health_status_t s)
{
    return s == PF_HEALTHY || s == PF_DEGRADED || s == PF_UNHEALTHY;
}

void
pf_health_result_set(pf_health_result_t *res, pf_health_status_t status,
                     const char *fmt, ...)
{
    va_list ap;
    int n;

    if (res == NULL) {
        return;
    }
    res->status = status;
    if (fmt == NULL) {
        res->message[0] = '\0';
        return;
    }
    va_start(ap, fmt);
    n = pf__vsnprintf_c(res->message, sizeof(res->message), fmt, ap);
    va_end(ap);
    if (n < 0) {
        res->message[0] = '\0';
    } else if ((size_t)n >= sizeof(res->message)) {
        res->message[pf__utf8_cut(res->message, sizeof(res->message) - 1)] =
            '\0';
    }
}

static void
copy_msg(char *dst, const char *src)
{
    size_t n = strlen(src);

    if (n >= PF_HEALTH_MESSAGE_MAX) {
        n = pf__utf8_cut(src, PF_HEALTH_MESSAGE_MAX - 1);
    }
    memmove(dst, src, n);
    dst[n] = '\0';
}

void
pf_health_config_init(pf_health_config_t *cfg)
{
    if (cfg == NULL) {
        return;
    }
    memset(cfg, 0, sizeof(*cfg));
    cfg->name = DEFAULT_NAME;
    cfg->cache_ttl = 0.0;
}

void
pf_health_check_opts_init(pf_health_check_opts_t *opts)
{
    if (opts == NULL) {
        return;
    }
    memset(opts, 0, sizeof(*opts));
    opts->timeout = DEFAULT_TIMEOUT;
    opts->critical = true;
    opts->failures_before_unhealthy = 1;
}

/* ---- reference counting (all under hc->lock) -------------------------- */

static void
check_destroy(check_t *chk)
{
    size_t i;

    if (chk->arg_free != NULL) {
        chk->arg_free(chk->arg);
    }
    for (i = 0; i < chk->ntags; i++) {
        pf__free(chk->tags[i]);
    }
    pf__free(chk->tags);
    pf__free(chk->name);
    pf__free(chk);
}

static void
check_release(check_t *chk)
{
    if (--chk->refs == 0) {
        check_destroy(chk);
    }
}

static void
flight_release(flight_t *fl)
{
    if (--fl->refs == 0) {
        check_release(fl->chk);
        pf__free(fl);
    }
}

static void
destroy(pf_health_checker_t *hc)
{
    void (*hook)(void *) = hc->on_destroy;
    void *hook_arg = hc->on_destroy_arg;

    pthread_cond_destroy(&hc->cv);
    pthread_mutex_destroy(&hc->lock);
    pf__free(hc->checks);
    pf__free(hc->name);
    pf__free(hc);
    if (hook != NULL) {
        hook(hook_arg);
    }
}

void
pf__health_on_destroy(pf_health_checker_t *hc, void (*fn)(void *arg),
                      void *arg)
{
    pthread_mutex_lock(&hc->lock);
    hc->on_destroy = fn;
    hc->on_destroy_arg = arg;
    pthread_mutex_unlock(&hc->lock);
}

/* ---- events ----------------------------------------------------------- */

static void
deliver_event(void *p, void *ctx)
{
    hev_t *e = p;
    pf_health_checker_t *hc = ctx;
    pf_health_event_t ev;

    ev.checker = hc->name;
    ev.check = e->chk == NULL ? NULL : e->chk->name;
    ev.from = e->from;
    ev.to = e->to;
    ev.message = e->msg;
    ev.time_ns = e->time_ns;
    hc->listener(&ev, hc->listener_arg);
}

static void
release_event(void *p, void *ctx)
{
    hev_t *e = p;

    (void)ctx;
    if (e->chk != NULL) {
        check_release(e->chk);
    }
}

static void
push_event(pf_health_checker_t *hc, check_t *chk, pf_health_status_t from,
           pf_health_status_t to, const char *msg, int64_t now)
{
    hev_t e;

    if (hc->listener == NULL) {
        return;
    }
    memset(&e, 0, sizeof(e));
    e.chk = chk;
    e.from = from;
    e.to = to;
    e.time_ns = now;
    copy_msg(e.msg, msg);
    if (pf__evq_push(&hc->evq, &e) && chk != NULL) {
        chk->refs++;
    }
}

/* Deliver queued events; called and returns with hc->lock held. A check
 * thread delivers what it can without waiting (drain_events); a caller of
 * the API waits for a delivery in progress elsewhere (drain_events_all),
 * so the events its call caused have reached the listener when it
 * returns. */
static void
drain_events(pf_health_checker_t *hc)
{
    if (hc->listener == NULL) {
        return;
    }
    pf__evq_drain(&hc->evq, &hc->lock, &hc->cv, &hc->closed, deliver_event,
                  release_event, hc);
}

static void
drain_events_all(pf_health_checker_t *hc)
{
    if (hc->listener == NULL) {
        return;
    }
    pf__evq_drain_all(&hc->evq, &hc->lock, &hc->cv, &hc->closed,
                      deliver_event, release_event, hc);
}

/* ---- statuses --------------------------------------------------------- */

/* What a status counts for in an aggregate: a non-critical check makes it
 * degraded at most. */
static pf_health_status_t
weigh(pf_health_status_t s, bool critical)
{
    return !critical && s > PF_DEGRADED ? PF_DEGRADED : s;
}

static void
update_overall(pf_health_checker_t *hc, int64_t now)
{
    pf_health_status_t worst = PF_HEALTHY;
    size_t i;

    for (i = 0; i < hc->nchecks; i++) {
        check_t *chk = hc->checks[i];

        if (chk->has_result) {
            pf_health_status_t s = weigh(chk->last.status, chk->critical);

            if (s > worst) {
                worst = s;
            }
        }
    }
    if (worst != hc->overall) {
        push_event(hc, NULL, hc->overall, worst, "", now);
        hc->overall = worst;
        /* Relaxed: status_pub publishes one value and nothing else is
         * read on its strength. */
        atomic_store_explicit(&hc->status_pub, (int)worst,
                              memory_order_relaxed);
        pthread_cond_broadcast(&hc->cv);
    }
}

/* Apply one raw result to chk: damping, counters, its latest result, its
 * event. The outcome goes to *out (may be NULL). The overall status is
 * recomputed once per report (make_report), after all its results are in,
 * so results arriving one by one do not make it flicker. Under lock. */
static void
settle(pf_health_checker_t *hc, check_t *chk, pf_health_status_t raw,
       const char *msg, bool timed_out, int64_t duration_ns, int64_t now,
       outcome_t *out)
{
    pf_health_status_t prev = chk->has_result ? chk->last.status : PF_HEALTHY;
    pf_health_status_t st = raw;
    outcome_t o;

    chk->runs++;
    if (raw == PF_UNHEALTHY) {
        chk->failures++;
        hc->failures++;
        chk->consecutive++;
        if (chk->consecutive < chk->fail_limit) {
            st = prev; /* damped: not enough failures in a row yet */
        }
    } else {
        chk->consecutive = 0;
    }
    if (timed_out) {
        chk->timeouts++;
        hc->timeouts++;
    }
    memset(&o, 0, sizeof(o));
    o.status = st;
    o.timed_out = timed_out;
    o.consecutive = chk->consecutive;
    o.duration_ns = duration_ns < 0 ? 0 : duration_ns;
    o.wall_ns = pf_wall_time_ns();
    copy_msg(o.msg, msg);
    if (out != NULL) {
        *out = o;
    }
    if (chk->removed || hc->closed) {
        return;
    }
    chk->last = o;
    chk->has_result = true;
    chk->done_ns = now;
    if (st != prev) {
        push_event(hc, chk, prev, st, o.msg, now);
    }
    pthread_cond_broadcast(&hc->cv);
}

static void
settle_timeout(pf_health_checker_t *hc, flight_t *fl, int64_t now,
               bool still_running, outcome_t *out)
{
    char msg[PF_HEALTH_MESSAGE_MAX];

    pf__snprintf_c(msg, sizeof(msg), "timed out after %g s%s",
                   fl->chk->timeout_s, still_running ? " (still running)" : "");
    settle(hc, fl->chk, PF_UNHEALTHY, msg, true, now - fl->start_ns, now,
           out);
}

/* ---- create, free ----------------------------------------------------- */

int
pf_health_checker_new(const pf_health_config_t *cfg,
                      pf_health_checker_t **out)
{
    pf_health_config_t def;
    pf_health_checker_t *hc;
    int64_t ttl;
    int rc;

    if (out == NULL) {
        return PF_EINVAL;
    }
    if (cfg == NULL) {
        pf_health_config_init(&def);
        cfg = &def;
    }
    if (cfg->name == NULL || cfg->name[0] == '\0') {
        return PF_EINVAL;
    }
    rc = pf__secs_to_ns(cfg->cache_ttl, &ttl);
    if (rc != 0) {
        return rc;
    }
    hc = pf__calloc(1, sizeof(*hc));
    if (hc == NULL) {
        return PF_ENOMEM;
    }
    hc->name = pf__strdup(cfg->name);
    if (hc->name == NULL) {
        pf__free(hc);
        return PF_ENOMEM;
    }
    if (pthread_mutex_init(&hc->lock, NULL) != 0) {
        pf__free(hc->name);
        pf__free(hc);
        return PF_ESYSTEM;
    }
    rc = pf__cond_init(&hc->cv);
    if (rc != 0) {
        pthread_mutex_destroy(&hc->lock);
        pf__free(hc->name);
        pf__free(hc);
        return rc;
    }
    hc->clock = cfg->clock;
    hc->ttl_ns = ttl;
    hc->listener = cfg->listener;
    hc->listener_arg = cfg->listener_arg;
    hc->refs = 1;
    hc->overall = PF_HEALTHY;
    atomic_init(&hc->status_pub, (int)PF_HEALTHY);
    pf__evq_init(&hc->evq, sizeof(hev_t));
    *out = hc;
    return 0;
}

void
pf_health_checker_free(pf_health_checker_t *hc)
{
    bool last;
    size_t i;

    if (hc == NULL) {
        return;
    }
    pthread_mutex_lock(&hc->lock);
    hc->closed = true;
    /* A check thread may be delivering an event right now; it stops after
     * that one (closed), and the listener is never called after we
     * return. */
    pf__evq_wait_idle(&hc->evq, &hc->lock, &hc->cv);
    pf__evq_clear(&hc->evq, release_event, hc);
    for (i = 0; i < hc->nchecks; i++) {
        hc->checks[i]->removed = true;
        check_release(hc->checks[i]);
    }
    hc->nchecks = 0;
    last = --hc->refs == 0;
    pthread_mutex_unlock(&hc->lock);
    if (last) {
        destroy(hc);
    }
}

/* ---- adding and removing checks --------------------------------------- */

static int
validate_opts(const pf_health_check_opts_t *o, int64_t *timeout_ns)
{
    size_t i;
    int rc;

    if (o->failures_before_unhealthy == 0) {
        return PF_EINVAL;
    }
    /* One rule for durations: 0 is "off", no timeout (as INFINITY). */
    rc = pf__secs_to_ns(o->timeout == 0.0 ? INFINITY : o->timeout, timeout_ns);
    if (rc != 0) {
        return rc;
    }
    if (*timeout_ns == 0) {
        return PF_EINVAL; /* below a nanosecond: a zero timeout too */
    }
    if (o->tags_len > 0 && o->tags == NULL) {
        return PF_EINVAL;
    }
    for (i = 0; i < o->tags_len; i++) {
        if (o->tags[i] == NULL || o->tags[i][0] == '\0') {
            return PF_EINVAL;
        }
    }
    return 0;
}

static check_t *
find_check(pf_health_checker_t *hc, const char *name, size_t *at)
{
    size_t i;

    for (i = 0; i < hc->nchecks; i++) {
        if (strcmp(hc->checks[i]->name, name) == 0) {
            if (at != NULL) {
                *at = i;
            }
            return hc->checks[i];
        }
    }
    return NULL;
}

/* A new check, not yet linked; NULL on allocation failure. */
static check_t *
make_check(const char *name, pf_health_fn fn, void *arg,
           const pf_health_check_opts_t *o, int64_t timeout_ns)
{
    check_t *chk = pf__calloc(1, sizeof(*chk));
    size_t i;

    if (chk == NULL) {
        return NULL;
    }
    chk->name = pf__strdup(name);
    if (chk->name == NULL) {
        goto fail;
    }
    if (o->tags_len > 0) {
        chk->tags = pf__calloc(o->tags_len, sizeof(char *));
        if (chk->tags == NULL) {
            goto fail;
        }
        for (i = 0; i < o->tags_len; i++) {
            chk->tags[i] = pf__strdup(o->tags[i]);
            if (chk->tags[i] == NULL) {
                chk->ntags = i;
                goto fail;
            }
        }
        chk->ntags = o->tags_len;
    }
    chk->fn = fn;
    chk->arg = arg;
    chk->timeout_ns = timeout_ns;
    chk->timeout_s = o->timeout;
    chk->critical = o->critical;
    chk->fail_limit = o->failures_before_unhealthy;
    chk->refs = 1;
    return chk;
fail:
    check_destroy(chk);
    return NULL;
}

int
pf__health_add_owned(pf_health_checker_t *hc, const char *name,
                     pf_health_fn fn, void *arg, void (*arg_free)(void *arg),
                     const pf_health_check_opts_t *opts)
{
    pf_health_check_opts_t def;
    check_t *chk;
    int64_t timeout_ns;
    int rc;

    if (hc == NULL || name == NULL || name[0] == '\0' || fn == NULL) {
        return PF_EINVAL;
    }
    if (opts == NULL) {
        pf_health_check_opts_init(&def);
        opts = &def;
    }
    rc = validate_opts(opts, &timeout_ns);
    if (rc != 0) {
        return rc;
    }
    chk = make_check(name, fn, arg, opts, timeout_ns);
    if (chk == NULL) {
        return PF_ENOMEM;
    }
    pthread_mutex_lock(&hc->lock);
    if (find_check(hc, name, NULL) != NULL) {
        rc = PF_EINVAL; /* a name already in use */
    } else {
        rc = pf__grow((void **)&hc->checks, &hc->cap, hc->nchecks + 1,
                      sizeof(check_t *));
    }
    if (rc == 0) {
        hc->checks[hc->nchecks++] = chk;
        chk->arg_free = arg_free; /* only now: on error arg stays theirs */
    }
    pthread_mutex_unlock(&hc->lock);
    if (rc != 0) {
        check_destroy(chk);
    }
    return rc;
}

int
pf_health_add_check_ex(pf_health_checker_t *hc, const char *name,
                       pf_health_fn fn, void *arg,
                       const pf_health_check_opts_t *opts)
{
    return pf__health_add_owned(hc, name, fn, arg, NULL, opts);
}

int
pf_health_add_check(pf_health_checker_t *hc, const char *name,
                    pf_health_fn fn, void *arg)
{
    return pf__health_add_owned(hc, name, fn, arg, NULL, NULL);
}

int
pf_health_remove_check(pf_health_checker_t *hc, const char *name)
{
    check_t *chk;
    size_t at;

    if (hc == NULL || name == NULL) {
        return PF_EINVAL;
    }
    pthread_mutex_lock(&hc->lock);
    chk = find_check(hc, name, &at);
    if (chk == NULL) {
        pthread_mutex_unlock(&hc->lock);
        return PF_ENOTFOUND;
    }
    memmove(&hc->checks[at], &hc->checks[at + 1],
            (hc->nchecks - at - 1) * sizeof(check_t *));
    hc->nchecks--;
    chk->removed = true;
    update_overall(hc, pf_clock_now_ns(hc->clock));
    pthread_cond_broadcast(&hc->cv); /* watchers of it give up */
    check_release(chk);
    drain_events_all(hc);
    pthread_mutex_unlock(&hc->lock);
    return 0;
}

size_t
pf_health_check_count(pf_health_checker_t *hc)
{
    size_t n;

    if (hc == NULL) {
        return 0;
    }
    pthread_mutex_lock(&hc->lock);
    n = hc->nchecks;
    pthread_mutex_unlock(&hc->lock);
    return n;
}

/* ---- reports ---------------------------------------------------------- */

enum select_kind { SELECT_ALL, SELECT_TAG, SELECT_ONE };

static bool
selected(const check_t *chk, enum select_kind kind, const char *key)
{
    size_t i;

    switch (kind) {
    case SELECT_ALL:
        return true;
    case SELECT_ONE:
        return strcmp(chk->name, key) == 0;
    case SELECT_TAG:
        for (i = 0; i < chk->ntags; i++) {
            if (strcmp(chk->tags[i], key) == 0) {
                return true;
            }
        }
        return false;
    }
    return false;
}

#define ALIGN_UP(x, a) (((x) + (a) - 1) / (a) * (a))

/* A report for the n checks in sel, with names copied and items not yet
 * filled; NULL on allocation failure. Under lock. */
static pf_health_report_t *
report_alloc(pf_health_checker_t *hc, check_t **sel, size_t n)
{
    size_t items_at = ALIGN_UP(sizeof(pf_health_report_t), sizeof(void *));
    size_t failed_at = ALIGN_UP(items_at + n * sizeof(pf__health_item_t),
                                sizeof(void *));
    size_t strings_at = failed_at + n * sizeof(char *);
    size_t total = strings_at + strlen(hc->name) + 1;
    pf_health_report_t *r;
    char *s;
    size_t i;

    for (i = 0; i < n; i++) {
        total += strlen(sel[i]->name) + 1;
    }
    r = pf__calloc(1, total);
    if (r == NULL) {
        return NULL;
    }
    r->items = (pf__health_item_t *)((char *)r + items_at);
    r->failed = (const char **)((char *)r + failed_at);
    r->n = n;
    s = (char *)r + strings_at;
    memcpy(s, hc->name, strlen(hc->name) + 1);
    r->checker = s;
    s += strlen(hc->name) + 1;
    for (i = 0; i < n; i++) {
        size_t len = strlen(sel[i]->name) + 1;

        memcpy(s, sel[i]->name, len);
        r->items[i].pub.name = s;
        r->items[i].pub.message = r->items[i].msg;
        s += len;
    }
    return r;
}

static void
fill_item(pf__health_item_t *it, const check_t *chk, const outcome_t *o,
          bool cached)
{
    it->pub.status = o->status;
    it->pub.critical = chk->critical;
    it->pub.cached = cached;
    it->pub.timed_out = o->timed_out;
    it->pub.duration = (double)o->duration_ns / 1e9;
    it->pub.time_ns = o->wall_ns;
    it->pub.consecutive_failures = o->consecutive;
    it->pub.runs = chk->runs;
    it->pub.failures = chk->failures;
    it->pub.timeouts = chk->timeouts;
    it->counted = true;
    memcpy(it->msg, o->msg, sizeof(it->msg));
}

static void
fill_never_run(pf__health_item_t *it, const check_t *chk)
{
    it->pub.status = PF_HEALTHY;
    it->pub.critical = chk->critical;
    it->counted = false;
    copy_msg(it->msg, "not checked yet");
}

/* Overall status and failed list, once the items are filled. */
static void
report_finish(pf_health_report_t *r)
{
    pf_health_status_t worst = PF_HEALTHY;
    size_t i;

    r->nfailed = 0;
    for (i = 0; i < r->n; i++) {
        const pf__health_item_t *it = &r->items[i];

        if (!it->counted) {
            continue;
        }
        if (weigh(it->pub.status, it->pub.critical) > worst) {
            worst = weigh(it->pub.status, it->pub.critical);
        }
        if (it->pub.status == PF_UNHEALTHY) {
            r->failed[r->nfailed++] = it->pub.name;
        }
    }
    r->status = worst;
}

/* ---- running ---------------------------------------------------------- */

enum slot_mode { SLOT_SNAPSHOT, SLOT_CACHED, SLOT_JOIN, SLOT_NEW, SLOT_DONE };

/* What one caller does about one selected check. */
typedef struct slot {
    check_t *chk;      /* holds a reference */
    enum slot_mode mode;
    flight_t *fl;      /* JOIN, NEW: holds a reference */
    outcome_t out;     /* DONE */
} slot_t;

/* The run of fl is over (its check returned, or it was taken back from
 * the pool's queue unstarted): the check may run again. The flight's
 * references are dropped by the caller. Under lock. */
static void
flight_over(pf_health_checker_t *hc, flight_t *fl)
{
    hc->running--;
    if (fl->chk->running == fl) {
        fl->chk->running = NULL;
    }
}

static void
flight_main(void *p)
{
    flight_t *fl = p;
    pf_health_checker_t *hc = fl->hc;
    check_t *chk = fl->chk;
    pf_health_result_t res;
    bool last;
    int rc;

    res.status = PF_HEALTHY;
    res.message[0] = '\0';
    res.timeout = pf__ns_to_secs(chk->timeout_ns);
    rc = chk->fn(&res, chk->arg);
    /* A check may fill message by hand and leave no NUL: cut it where
     * pf_health_result_set would, never inside a UTF-8 sequence. */
    if (strnlen(res.message, PF_HEALTH_MESSAGE_MAX) == PF_HEALTH_MESSAGE_MAX) {
        res.message[pf__utf8_cut(res.message, PF_HEALTH_MESSAGE_MAX - 1)] =
            '\0';
    }

    pthread_mutex_lock(&hc->lock);
    if (!hc->closed && !fl->settled) {
        int64_t now = pf_clock_now_ns(hc->clock);

        if (now >= fl->deadline_ns) {
            settle_timeout(hc, fl, now, false, &fl->out);
        } else if (rc != 0) {
            char msg[PF_HEALTH_MESSAGE_MAX];

            if (res.message[0] == '\0') {
                snprintf(msg, sizeof(msg), "check failed (returned %d)", rc);
            } else {
                copy_msg(msg, res.message);
            }
            settle(hc, chk, PF_UNHEALTHY, msg, false, now - fl->start_ns, now,
                   &fl->out);
        } else if (!status_valid(res.status)) {
            settle(hc, chk, PF_UNHEALTHY, "check gave an invalid status",
                   false, now - fl->start_ns, now, &fl->out);
        } else {
            settle(hc, chk, res.status, res.message, false,
                   now - fl->start_ns, now, &fl->out);
        }
        fl->settled = true;
        pthread_cond_broadcast(&hc->cv);
    }
    /* This run is over before the listener hears of it, so a listener
     * that runs the check again (on this thread) starts a new run rather
     * than finding this one "still running". */
    flight_over(hc, fl);
    if (!hc->closed) {
        drain_events(hc);
    }
    /* Only cleanup from here: nothing reads the clock or calls the user
     * once the checker is closed. */
    flight_release(fl);
    last = --hc->refs == 0;
    pthread_mutex_unlock(&hc->lock);
    if (last) {
        destroy(hc);
    }
}

static int
start_flight(flight_t *fl)
{
    pf__pool_t *pool = pf__pool_default();

    if (pool == NULL) {
        return PF_ESYSTEM;
    }
    return pf__pool_submit(pool, &fl->task, flight_main, fl);
}

/* Decide each slot's mode and allocate what it needs, changing nothing
 * shared: on PF_ENOMEM the caller unwinds by freeing the new flights.
 * Under lock. */
static int
plan_slots(pf_health_checker_t *hc, slot_t *slots, size_t n, bool run,
           int64_t now)
{
    size_t i;

    for (i = 0; i < n; i++) {
        check_t *chk = slots[i].chk;

        if (!run) {
            slots[i].mode = SLOT_SNAPSHOT;
        } else if (hc->ttl_ns > 0 && chk->has_result &&
                   now - chk->done_ns < hc->ttl_ns) {
            slots[i].mode = SLOT_CACHED;
        } else if (chk->running != NULL && !chk->running->settled) {
            slots[i].mode = SLOT_JOIN;
        } else if (chk->running != NULL) {
            slots[i].mode = SLOT_DONE; /* hung past its timeout */
        } else {
            flight_t *fl = pf__calloc(1, sizeof(*fl));

            if (fl == NULL) {
                return PF_ENOMEM;
            }
            fl->hc = hc;
            fl->chk = chk;
            fl->start_ns = now;
            fl->deadline_ns = pf__add_sat(now, chk->timeout_ns);
            slots[i].mode = SLOT_NEW;
            slots[i].fl = fl;
        }
    }
    return 0;
}

/* Carry out the plan: register new flights, join running ones, settle the
 * hung ones. Under lock; cannot fail. */
static void
commit_slots(pf_health_checker_t *hc, slot_t *slots, size_t n, int64_t now)
{
    size_t i;

    for (i = 0; i < n; i++) {
        slot_t *s = &slots[i];

        switch (s->mode) {
        case SLOT_SNAPSHOT:
            break;
        case SLOT_CACHED:
            hc->cache_hits++;
            break;
        case SLOT_JOIN:
            s->fl = s->chk->running;
            s->fl->refs++;
            hc->shared++;
            break;
        case SLOT_NEW:
            s->chk->refs++; /* the flight's */
            s->fl->refs = 2; /* its thread's and ours */
            s->chk->running = s->fl;
            hc->refs++;      /* the thread's */
            hc->running++;
            hc->runs++;
            break;
        case SLOT_DONE:
            settle_timeout(hc, s->chk->running, now, true, &s->out);
            break;
        }
    }
}

/* A new flight could not be handed to the pool (no thread could be
 * started): settle it as a failure and undo what its run would have
 * undone. Under lock. */
static void
thread_failed(pf_health_checker_t *hc, flight_t *fl)
{
    int64_t now = pf_clock_now_ns(hc->clock);

    settle(hc, fl->chk, PF_UNHEALTHY, "could not start a thread for the check",
           false, 0, now, &fl->out);
    fl->settled = true;
    pthread_cond_broadcast(&hc->cv);
    flight_over(hc, fl);
    flight_release(fl);
    hc->refs--; /* never the last: the caller holds the user's */
}

/* Wait until every flight in slots has settled, settling those whose
 * deadline passes as timeouts. Under lock. */
static void
wait_flights(pf_health_checker_t *hc, slot_t *slots, size_t n)
{
    for (;;) {
        int64_t now = pf_clock_now_ns(hc->clock);
        int64_t earliest = PF_DEADLINE_NEVER_NS;
        bool pending = false;
        size_t i;

        for (i = 0; i < n; i++) {
            flight_t *fl = slots[i].fl;

            if (fl == NULL || fl->settled) {
                continue;
            }
            if (now >= fl->deadline_ns) {
                settle_timeout(hc, fl, now, false, &fl->out);
                fl->settled = true;
                pthread_cond_broadcast(&hc->cv);
                /* Still queued in the pool: it never runs. Not the last
                 * reference: the caller holds the user's. */
                if (pf__pool_cancel_starved(pf__pool_default(), &fl->task)) {
                    flight_over(hc, fl);
                    flight_release(fl);
                    hc->refs--;
                }
                continue;
            }
            pending = true;
            if (fl->deadline_ns < earliest) {
                earliest = fl->deadline_ns;
            }
        }
        if (!pending) {
            return;
        }
        pf__wait_until(&hc->cv, &hc->lock, hc->clock, earliest, NULL);
    }
}

static void
fill_slots(pf_health_report_t *r, slot_t *slots, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        slot_t *s = &slots[i];
        pf__health_item_t *it = &r->items[i];

        switch (s->mode) {
        case SLOT_SNAPSHOT:
        case SLOT_CACHED:
            if (s->chk->has_result) {
                fill_item(it, s->chk, &s->chk->last, s->mode == SLOT_CACHED);
            } else {
                fill_never_run(it, s->chk);
            }
            break;
        case SLOT_JOIN:
        case SLOT_NEW:
            fill_item(it, s->chk, &s->fl->out, false);
            break;
        case SLOT_DONE:
            fill_item(it, s->chk, &s->out, false);
            break;
        }
    }
    report_finish(r);
}

static void
release_slots(slot_t *slots, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (slots[i].fl != NULL) {
            flight_release(slots[i].fl);
        }
        check_release(slots[i].chk);
    }
}

/* The body of check_all, check_tagged, check_one (run) and snapshot. */
static int
make_report(pf_health_checker_t *hc, enum select_kind kind, const char *key,
            bool run, pf_health_report_t **out)
{
    pf_health_report_t *r = NULL;
    slot_t *slots = NULL;
    check_t **sel = NULL;
    int64_t start;
    size_t n = 0;
    size_t i;
    int rc = PF_ENOMEM;

    pthread_mutex_lock(&hc->lock);
    start = pf_clock_now_ns(hc->clock);
    for (i = 0; i < hc->nchecks; i++) {
        n += selected(hc->checks[i], kind, key) ? 1 : 0;
    }
    if (kind == SELECT_ONE && n == 0) {
        pthread_mutex_unlock(&hc->lock);
        return PF_ENOTFOUND;
    }
    if (n > 0) {
        sel = pf__calloc(n, sizeof(*sel));
        slots = pf__calloc(n, sizeof(*slots));
        if (sel == NULL || slots == NULL) {
            goto fail;
        }
        n = 0;
        for (i = 0; i < hc->nchecks; i++) {
            if (selected(hc->checks[i], kind, key)) {
                sel[n] = hc->checks[i];
                slots[n].chk = hc->checks[i];
                n++;
            }
        }
    }
    r = report_alloc(hc, sel, n);
    if (r == NULL) {
        goto fail;
    }
    rc = plan_slots(hc, slots, n, run, start);
    if (rc != 0) {
        goto fail;
    }
    for (i = 0; i < n; i++) {
        slots[i].chk->refs++;
    }
    commit_slots(hc, slots, n, start);
    if (run) {
        hc->reports++;
    }
    pthread_mutex_unlock(&hc->lock);

    for (i = 0; i < n; i++) {
        if (slots[i].mode == SLOT_NEW && start_flight(slots[i].fl) != 0) {
            pthread_mutex_lock(&hc->lock);
            thread_failed(hc, slots[i].fl);
            pthread_mutex_unlock(&hc->lock);
        }
    }

    pthread_mutex_lock(&hc->lock);
    wait_flights(hc, slots, n);
    if (run) {
        update_overall(hc, pf_clock_now_ns(hc->clock));
    }
    fill_slots(r, slots, n);
    release_slots(slots, n);
    r->time_ns = pf_wall_time_ns();
    r->duration_ns = pf_clock_now_ns(hc->clock) - start;
    drain_events_all(hc);
    pthread_mutex_unlock(&hc->lock);
    pf__free(slots);
    pf__free(sel);
    *out = r;
    return 0;
fail:
    if (slots != NULL) {
        for (i = 0; i < n; i++) {
            if (slots[i].mode == SLOT_NEW) {
                pf__free(slots[i].fl);
            }
        }
    }
    pthread_mutex_unlock(&hc->lock);
    pf__free(r);
    pf__free(slots);
    pf__free(sel);
    return rc;
}

int
pf_health_check_all(pf_health_checker_t *hc, pf_health_report_t **out)
{
    if (hc == NULL || out == NULL) {
        return PF_EINVAL;
    }
    return make_report(hc, SELECT_ALL, NULL, true, out);
}

int
pf_health_check_tagged(pf_health_checker_t *hc, const char *tag,
                       pf_health_report_t **out)
{
    if (hc == NULL || tag == NULL || tag[0] == '\0' || out == NULL) {
        return PF_EINVAL;
    }
    return make_report(hc, SELECT_TAG, tag, true, out);
}

int
pf_health_check_one(pf_health_checker_t *hc, const char *name,
                    pf_health_report_t **out)
{
    if (hc == NULL || name == NULL || out == NULL) {
        return PF_EINVAL;
    }
    return make_report(hc, SELECT_ONE, name, true, out);
}

int
pf_health_snapshot(pf_health_checker_t *hc, pf_health_report_t **out)
{
    if (hc == NULL || out == NULL) {
        return PF_EINVAL;
    }
    return make_report(hc, SELECT_ALL, NULL, false, out);
}

/* ---- status, watch, metrics ------------------------------------------- */

pf_health_status_t
pf_health_checker_status(pf_health_checker_t *hc)
{
    if (hc == NULL) {
        return PF_HEALTHY;
    }
    return (pf_health_status_t)atomic_load_explicit(&hc->status_pub,
                                                    memory_order_relaxed);
}

static pf_health_status_t
current_status(pf_health_checker_t *hc, const check_t *chk)
{
    if (chk == NULL) {
        return hc->overall;
    }
    return chk->has_result ? chk->last.status : PF_HEALTHY;
}

int
pf_health_watch(pf_health_checker_t *hc, const char *check,
                pf_health_status_t current, double timeout,
                pf_health_status_t *out)
{
    check_t *chk = NULL;
    int64_t ns;
    int64_t deadline;
    int rc;

    if (hc == NULL || out == NULL || !status_valid(current)) {
        return PF_EINVAL;
    }
    rc = pf__secs_to_ns(timeout, &ns);
    if (rc != 0) {
        return rc;
    }
    pthread_mutex_lock(&hc->lock);
    if (check != NULL) {
        chk = find_check(hc, check, NULL);
        if (chk == NULL) {
            pthread_mutex_unlock(&hc->lock);
            return PF_ENOTFOUND;
        }
        chk->refs++;
    }
    deadline = pf__add_sat(pf_clock_now_ns(hc->clock), ns);
    for (;;) {
        pf_health_status_t s;
        int w;

        if (chk != NULL && chk->removed) {
            rc = PF_ENOTFOUND;
            break;
        }
        s = current_status(hc, chk);
        *out = s;
        if (s != current) {
            rc = 0;
            break;
        }
        w = pf__wait_until(&hc->cv, &hc->lock, hc->clock, deadline, NULL);
        if (w == PF_ETIMEDOUT) {
            s = current_status(hc, chk);
            *out = s;
            rc = s != current ? 0 : PF_ETIMEDOUT;
            if (chk != NULL && chk->removed) {
                rc = PF_ENOTFOUND;
            }
            break;
        }
    }
    if (chk != NULL) {
        check_release(chk);
    }
    pthread_mutex_unlock(&hc->lock);
    return rc;
}

const char *
pf_health_checker_name(const pf_health_checker_t *hc)
{
    return hc == NULL ? NULL : hc->name;
}

void
pf_health_metrics(pf_health_checker_t *hc, pf_health_metrics_t *out)
{
    size_t i;

    if (out == NULL) {
        return;
    }
    memset(out, 0, sizeof(*out));
    if (hc == NULL) {
        return;
    }
    pthread_mutex_lock(&hc->lock);
    out->status = hc->overall;
    out->checks = hc->nchecks;
    out->reports = hc->reports;
    out->runs = hc->runs;
    out->cache_hits = hc->cache_hits;
    out->shared = hc->shared;
    out->failures = hc->failures;
    out->timeouts = hc->timeouts;
    out->events = hc->evq.delivered;
    out->events_dropped = hc->evq.dropped;
    out->running = hc->running;
    for (i = 0; i < hc->nchecks; i++) {
        const flight_t *fl = hc->checks[i]->running;

        if (fl != NULL && fl->settled) {
            out->hung++;
        }
    }
    pthread_mutex_unlock(&hc->lock);
}

/* ---- report accessors ------------------------------------------------- */

pf_health_status_t
pf_health_report_status(const pf_health_report_t *r)
{
    return r == NULL ? PF_UNHEALTHY : r->status;
}

bool
pf_health_report_is_healthy(const pf_health_report_t *r)
{
    return r != NULL && r->status != PF_UNHEALTHY;
}

size_t
pf_health_report_count(const pf_health_report_t *r)
{
    return r == NULL ? 0 : r->n;
}

const pf_health_entry_t *
pf_health_report_entry(const pf_health_report_t *r, size_t i)
{
    if (r == NULL || i >= r->n) {
        return NULL;
    }
    return &r->items[i].pub;
}

const pf_health_entry_t *
pf_health_report_find(const pf_health_report_t *r, const char *name)
{
    size_t i;

    if (r == NULL || name == NULL) {
        return NULL;
    }
    for (i = 0; i < r->n; i++) {
        if (strcmp(r->items[i].pub.name, name) == 0) {
            return &r->items[i].pub;
        }
    }
    return NULL;
}

size_t
pf_health_report_failed_count(const pf_health_report_t *r)
{
    return r == NULL ? 0 : r->nfailed;
}

const char *
pf_health_report_failed(const pf_health_report_t *r, size_t i)
{
    if (r == NULL || i >= r->nfailed) {
        return NULL;
    }
    return r->failed[i];
}

int64_t
pf_health_report_time_ns(const pf_health_report_t *r)
{
    return r == NULL ? 0 : r->time_ns;
}

double
pf_health_report_duration(const pf_health_report_t *r)
{
    return r == NULL ? 0.0 : (double)r->duration_ns / 1e9;
}

void
pf_health_report_free(pf_health_report_t *r)
{
    pf__free(r);
}
