/* pf demo: the harness the scenes run on.
 *
 * All simulated time is one manual clock; only the scene moves it, and only
 * once everything it started has settled: after a run step, it waits (in
 * real time, briefly) for what it expects to see next — a listener's event,
 * a counter, a thread parked on the clock — and only then advances. So every
 * event happens at an exact simulated instant, the output is the same on
 * every run, and the whole demo takes a fraction of a second.
 *
 * The waits double as the demo's checks: a scene waits for what it has
 * narrated, and if that never comes the wait gives up after a few seconds
 * of real time, says what was missing, and the scene fails.
 *
 * Output goes through one mutex, so lines from listeners on executor,
 * timer, health-check and monitoring threads never interleave. Locks: the
 * harness's `lock` is never held while a library function is called that
 * could call back into the harness. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "demo.h"

/* Real time a scene waits for what it expects before giving up. Generous:
 * under ThreadSanitizer on a busy machine a hand-off can take a while. */
#define AWAIT_LIMIT_NS (10 * PF_NS_PER_SEC)

/* How often a wait re-checks a condition nobody signals (a thread parked
 * on the clock, a bulkhead's queue). */
#define AWAIT_POLL_NS (200 * PF_NS_PER_US)

/* Retry delays remembered per scene, for its checks. */
#define RETRIES_KEPT 32

/* Width of the "who" column of event lines. */
#define WHO_WIDTH 28

/* clock, executor, registry: made by demo_new, freed by demo_free.
 * origin_ns, scene: written by demo_begin while no scene thread runs.
 * counters: atomics. gen, kept, retry_due_ns, failed: under lock. */
struct demo {
    pf_clock_t *clock;
    pf_executor_t *executor;
    pf_registry_t *registry;
    int64_t origin_ns;
    const char *scene;
    atomic_uint counters[DEMO_COUNTERS];
    pthread_mutex_t lock;
    pthread_cond_t cv; /* a counter moved (gen changed) */
    uint64_t gen;
    /* When the last planned retry is due, and the delays of the scene's
     * first retries. */
    int64_t retry_due_ns;
    double retry_delays[RETRIES_KEPT];
    /* A check or a wait of this scene failed. */
    bool failed;
    /* demo_alloc's blocks. */
    void **kept;
    size_t nkept;
    size_t capkept;
};

/* What a breaker's listener needs to explain a transition. */
typedef struct breaker_watch {
    demo_t *demo;
    unsigned failure_threshold;
    unsigned success_threshold;
} breaker_watch_t;

/* ---- time ---------------------------------------------------------------- */

static int64_t
mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * PF_NS_PER_SEC + ts.tv_nsec;
}

double
demo_now(demo_t *d)
{
    return (double)(pf_clock_now_ns(d->clock) - d->origin_ns) / 1e9;
}

void
demo_advance_to(demo_t *d, double t)
{
    pf_clock_manual_set(d->clock, d->origin_ns + llround(t * 1e9));
}

/* ---- lifetime ------------------------------------------------------------ */

int
demo_new(unsigned workers, demo_t **out)
{
    pf_executor_config_t ecfg;
    pf_registry_config_t rcfg;
    pthread_condattr_t ca;
    demo_t *d;
    int rc;

    d = calloc(1, sizeof(*d));
    if (d == NULL) {
        return PF_ENOMEM;
    }
    for (int i = 0; i < DEMO_COUNTERS; i++) {
        atomic_init(&d->counters[i], 0);
    }
    pthread_mutex_init(&d->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&d->cv, &ca);
    pthread_condattr_destroy(&ca);
    d->scene = "demo";
    rc = pf_clock_manual_new(&d->clock);
    if (rc != 0) {
        goto fail;
    }
    pf_executor_config_init(&ecfg);
    ecfg.name = "demo";
    ecfg.workers = workers;
    ecfg.clock = d->clock;
    rc = pf_executor_new(&ecfg, &d->executor);
    if (rc != 0) {
        goto fail;
    }
    /* No process block: its figures (fds, memory) differ from run to run,
     * and the demo's output should not. */
    pf_registry_config_init(&rcfg);
    rcfg.process_metrics = false;
    rc = pf_registry_new(&rcfg, &d->registry);
    if (rc != 0) {
        goto fail;
    }
    *out = d;
    return 0;
fail:
    demo_free(d);
    return rc;
}

void
demo_free(demo_t *d)
{
    if (d == NULL) {
        return;
    }
    /* The registry's objects may point into kept blocks (listener, check
     * and sampler arguments) and run on the clock: free them first. */
    pf_registry_free(d->registry);
    pf_executor_free(d->executor);
    pf_clock_free(d->clock);
    for (size_t i = 0; i < d->nkept; i++) {
        free(d->kept[i]);
    }
    free(d->kept);
    pthread_cond_destroy(&d->cv);
    pthread_mutex_destroy(&d->lock);
    free(d);
}

pf_clock_t *
demo_clock(demo_t *d)
{
    return d->clock;
}

pf_executor_t *
demo_executor(demo_t *d)
{
    return d->executor;
}

pf_registry_t *
demo_registry(demo_t *d)
{
    return d->registry;
}

void *
demo_alloc(demo_t *d, size_t size)
{
    void *p = calloc(1, size);

    if (p == NULL) {
        return NULL;
    }
    pthread_mutex_lock(&d->lock);
    if (d->nkept == d->capkept) {
        size_t cap = d->capkept == 0 ? 16 : d->capkept * 2;
        void **k = realloc(d->kept, cap * sizeof(*k));

        if (k == NULL) {
            pthread_mutex_unlock(&d->lock);
            free(p);
            return NULL;
        }
        d->kept = k;
        d->capkept = cap;
    }
    d->kept[d->nkept++] = p;
    pthread_mutex_unlock(&d->lock);
    return p;
}

void
demo_begin(demo_t *d, const char *name, const char *title)
{
    d->scene = name;
    d->origin_ns = pf_clock_now_ns(d->clock);
    for (int i = 0; i < DEMO_COUNTERS; i++) {
        atomic_store(&d->counters[i], 0);
    }
    pthread_mutex_lock(&d->lock);
    d->failed = false;
    printf("\n== %s\n", title);
    fflush(stdout);
    pthread_mutex_unlock(&d->lock);
}

/* ---- output ------------------------------------------------------------- */

void
demo_say(demo_t *d, const char *who, const char *fmt, ...)
{
    char head[64];
    va_list ap;

    /* The time stamp is the event's: the clock does not move while a
     * scene waits for the line of the event it expects. */
    snprintf(head, sizeof(head), "%s:", who);
    va_start(ap, fmt);
    pthread_mutex_lock(&d->lock);
    printf("[%8.3f s] %-*s ", demo_now(d), WHO_WIDTH, head);
    vprintf(fmt, ap);
    putchar('\n');
    fflush(stdout);
    pthread_mutex_unlock(&d->lock);
    va_end(ap);
}

void
demo_note(demo_t *d, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    pthread_mutex_lock(&d->lock);
    fputs("  ", stdout);
    vprintf(fmt, ap);
    putchar('\n');
    fflush(stdout);
    pthread_mutex_unlock(&d->lock);
    va_end(ap);
}

void
demo_blank(demo_t *d)
{
    pthread_mutex_lock(&d->lock);
    putchar('\n');
    fflush(stdout);
    pthread_mutex_unlock(&d->lock);
}

void
demo_expect(demo_t *d, bool ok, const char *fmt, ...)
{
    va_list ap;

    if (ok) {
        return;
    }
    va_start(ap, fmt);
    pthread_mutex_lock(&d->lock);
    d->failed = true;
    fflush(stdout);
    fprintf(stderr, "pf demo: scene %s: expected ", d->scene);
    vfprintf(stderr, fmt, ap);
    fputs(", which did not happen\n", stderr);
    pthread_mutex_unlock(&d->lock);
    va_end(ap);
}

int
demo_verdict(demo_t *d)
{
    bool failed;

    pthread_mutex_lock(&d->lock);
    failed = d->failed;
    pthread_mutex_unlock(&d->lock);
    return failed ? PF_ESTATE : 0;
}

const char *
demo_strerror(int code)
{
    static _Thread_local char buf[32];

    switch (code) {
    case DEMO_ECONNRESET:
        return "connection reset";
    case DEMO_ECONNREFUSED:
        return "connection refused";
    case DEMO_EUNAVAILABLE:
        return "503 service unavailable";
    default:
        break;
    }
    if (code == 0 || pf_is_error_code(code)) {
        return pf_strerror(code);
    }
    snprintf(buf, sizeof(buf), "error %d", code);
    return buf;
}

/* ---- counters and waiting ------------------------------------------------ */

unsigned
demo_count(demo_t *d, demo_counter_t c)
{
    return atomic_load(&d->counters[c]);
}

void
demo_bump(demo_t *d, demo_counter_t c)
{
    atomic_fetch_add(&d->counters[c], 1);
    pthread_mutex_lock(&d->lock);
    d->gen++;
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->lock);
}

int
demo_await(demo_t *d, demo_pred_fn pred, void *arg, const char *what)
{
    int64_t limit = mono_ns() + AWAIT_LIMIT_NS;

    /* After a failure the scene's script is off its rails: the rest of
     * its waits fail at once instead of each waiting out the limit. */
    if (demo_verdict(d) != 0) {
        return PF_ESTATE;
    }
    for (;;) {
        uint64_t gen;
        int64_t until;
        struct timespec ts;

        pthread_mutex_lock(&d->lock);
        gen = d->gen;
        pthread_mutex_unlock(&d->lock);
        /* Evaluated without the lock: pred calls into the library. A
         * counter moving meanwhile changes gen, so its wake-up is not
         * lost. */
        if (pred(arg)) {
            return 0;
        }
        if (mono_ns() >= limit) {
            demo_expect(d, false, "%s", what);
            return PF_ESTATE;
        }
        until = mono_ns() + AWAIT_POLL_NS;
        ts.tv_sec = (time_t)(until / PF_NS_PER_SEC);
        ts.tv_nsec = (long)(until % PF_NS_PER_SEC);
        pthread_mutex_lock(&d->lock);
        while (d->gen == gen &&
               pthread_cond_timedwait(&d->cv, &d->lock, &ts) != ETIMEDOUT) {
        }
        pthread_mutex_unlock(&d->lock);
    }
}

double
demo_retry_delay(demo_t *d, unsigned i)
{
    double delay = NAN;

    pthread_mutex_lock(&d->lock);
    if (i < RETRIES_KEPT && i < demo_count(d, DEMO_RETRIES)) {
        delay = d->retry_delays[i];
    }
    pthread_mutex_unlock(&d->lock);
    return delay;
}

typedef struct count_wait {
    demo_t *demo;
    demo_counter_t counter;
    unsigned n;
} count_wait_t;

static bool
count_reached(void *arg)
{
    count_wait_t *w = arg;

    return demo_count(w->demo, w->counter) >= w->n;
}

int
demo_await_count(demo_t *d, demo_counter_t c, unsigned n, const char *what)
{
    count_wait_t w = {d, c, n};

    return demo_await(d, count_reached, &w, what);
}

size_t
demo_parked(demo_t *d)
{
    pf_executor_metrics_t before;
    pf_executor_metrics_t after;
    size_t n;

    /* The timer thread waits on the clock while a timer is armed. If the
     * executor's timers changed while the waiters were counted, the count
     * means nothing: report one no scene waits for. */
    pf_executor_metrics(d->executor, &before);
    n = pf_clock_manual_waiters(d->clock);
    pf_executor_metrics(d->executor, &after);
    if (before.timers_armed != after.timers_armed ||
        before.timers_fired != after.timers_fired) {
        return SIZE_MAX;
    }
    if (after.timers_armed > 0 && n > 0) {
        n--;
    }
    return n;
}

typedef struct parked_wait {
    demo_t *demo;
    size_t n;
} parked_wait_t;

static bool
parked_reached(void *arg)
{
    parked_wait_t *w = arg;

    return demo_parked(w->demo) == w->n;
}

int
demo_await_parked(demo_t *d, size_t n, const char *what)
{
    parked_wait_t w = {d, n};

    return demo_await(d, parked_reached, &w, what);
}

int
demo_sleep(demo_t *d, pf_token_t *tok, double seconds)
{
    pf_deadline_t until = pf_deadline_in(d->clock, seconds);
    int rc;

    if (tok == NULL) {
        return PF_ENOMEM;
    }
    /* The deadline is taken: from here the scene may move the clock, and
     * a wait that starts after the move returns at once. */
    demo_bump(d, DEMO_PARKED);
    rc = pf_token_wait(tok, &until);
    return pf_deadline_expired(&until) ? 0 : rc;
}

/* ---- listeners ----------------------------------------------------------- */

static void
breaker_listener(pf_breaker_t *b, pf_breaker_state_t from,
                 pf_breaker_state_t to, void *arg)
{
    breaker_watch_t *w = arg;
    pf_breaker_metrics_t m;
    char who[64];
    char why[96];

    pf_breaker_metrics(b, &m);
    snprintf(who, sizeof(who), "breaker %s", pf_breaker_name(b));
    if (from == PF_BREAKER_CLOSED && to == PF_BREAKER_OPEN) {
        snprintf(why, sizeof(why), "%u consecutive failures",
                 w->failure_threshold);
    } else if (from == PF_BREAKER_OPEN && to == PF_BREAKER_HALF_OPEN) {
        snprintf(why, sizeof(why), "%g s passed: trial calls may go through",
                 (double)m.recovery_timeout_ns / 1e9);
    } else if (from == PF_BREAKER_HALF_OPEN && to == PF_BREAKER_OPEN) {
        snprintf(why, sizeof(why),
                 "a trial call failed: closed to calls for another %g s",
                 (double)m.recovery_timeout_ns / 1e9);
    } else if (from == PF_BREAKER_HALF_OPEN && to == PF_BREAKER_CLOSED) {
        snprintf(why, sizeof(why), "%u trial calls succeeded",
                 w->success_threshold);
    } else {
        snprintf(why, sizeof(why), "by hand");
    }
    demo_say(w->demo, who, "%s -> %s (%s)", pf_breaker_state_name(from),
             pf_breaker_state_name(to), why);
    demo_bump(w->demo, to == PF_BREAKER_OPEN        ? DEMO_OPENED
                       : to == PF_BREAKER_HALF_OPEN ? DEMO_HALF_OPENED
                                                    : DEMO_CLOSED);
}

int
demo_breaker(demo_t *d, pf_breaker_config_t *cfg, pf_breaker_t **out)
{
    breaker_watch_t *w = demo_alloc(d, sizeof(*w));

    if (w == NULL) {
        return PF_ENOMEM;
    }
    w->demo = d;
    w->failure_threshold = cfg->failure_threshold;
    w->success_threshold = cfg->success_threshold;
    cfg->clock = d->clock;
    cfg->listener = breaker_listener;
    cfg->listener_arg = w;
    return pf_registry_get_breaker(d->registry, cfg->name, cfg, out);
}

static void
bulkhead_listener(const pf_bulkhead_event_t *ev, void *arg)
{
    demo_t *d = arg;
    char who[64];

    snprintf(who, sizeof(who), "bulkhead %s", ev->name);
    switch (ev->kind) {
    case PF_BULKHEAD_REJECTED_FULL:
        demo_say(d, who,
                 "rejected a call: %u of %u slots in use, %u waiting "
                 "(the queue is full)",
                 ev->in_use, ev->max_concurrent, ev->waiting);
        demo_bump(d, DEMO_BULKHEAD_FULL);
        break;
    case PF_BULKHEAD_REJECTED_TIMEOUT:
        demo_say(d, who,
                 "a waiter gave up: no slot came within its wait "
                 "limit (%u of %u in use)",
                 ev->in_use, ev->max_concurrent);
        demo_bump(d, DEMO_BULKHEAD_TIMEOUT);
        break;
    case PF_BULKHEAD_LIMIT_CHANGED:
        demo_say(d, who, "limit %u -> %u", ev->old_max_concurrent,
                 ev->max_concurrent);
        break;
    case PF_BULKHEAD_LEAVE_WITHOUT_ENTER:
        demo_say(d, who, "a leave without an enter, ignored");
        break;
    case PF_BULKHEAD_QUEUED:
    case PF_BULKHEAD_GRANTED:
        /* The scene narrates queueing itself, at points where the clock
         * stands still: a ticket's GRANTED may come from another thread
         * before its QUEUED, which would make the output order vary. */
        break;
    }
}

int
demo_bulkhead(demo_t *d, pf_bulkhead_config_t *cfg, pf_bulkhead_t **out)
{
    cfg->clock = d->clock;
    cfg->listener = bulkhead_listener;
    cfg->listener_arg = d;
    return pf_registry_get_bulkhead(d->registry, cfg->name, cfg, out);
}

static void
agent_listener(const pf_agent_event_t *ev, void *arg)
{
    demo_t *d = arg;
    const char *who = ev->state != NULL ? ev->state : ev->agent;
    unsigned n;

    switch (ev->kind) {
    case PF_AGENT_EVENT_RETRY:
        /* Before the line: the scene reads it once it has seen the line.
         * The delay left the runtime as nanoseconds / 1e9, so rounding
         * recovers them exactly. */
        pthread_mutex_lock(&d->lock);
        d->retry_due_ns = pf_clock_now_ns(d->clock) + llround(ev->delay * 1e9);
        n = demo_count(d, DEMO_RETRIES);
        if (n < RETRIES_KEPT) {
            d->retry_delays[n] = ev->delay;
        }
        pthread_mutex_unlock(&d->lock);
        demo_say(d, who, "attempt %u failed (%s): retry in %.3f s", ev->attempt,
                 demo_strerror(ev->error), ev->delay);
        demo_bump(d, DEMO_RETRIES);
        break;
    case PF_AGENT_EVENT_REJECTED:
        /* A bulkhead's rejection has already been told by its listener. */
        if (ev->error == PF_EOPEN) {
            demo_say(d, who,
                     "rejected: the circuit breaker is open, not called");
        } else if (ev->error == PF_ERATELIMIT) {
            demo_say(d, who, "rate limited: waits %.3f s", ev->delay);
        }
        demo_bump(d, DEMO_REJECTIONS);
        break;
    case PF_AGENT_EVENT_TIMEOUT:
        demo_say(d, who, "attempt %u timed out: it ran past its deadline",
                 ev->attempt);
        demo_bump(d, DEMO_TIMEOUTS);
        break;
    case PF_AGENT_EVENT_FALLBACK:
        demo_say(d, who, "fallback used (%s)", demo_strerror(ev->error));
        demo_bump(d, DEMO_FALLBACKS);
        break;
    case PF_AGENT_EVENT_DEAD_LETTER:
        demo_say(d, who, "dead letter: failed for good after %u attempt%s (%s)",
                 ev->attempt, ev->attempt == 1 ? "" : "s",
                 demo_strerror(ev->error));
        demo_bump(d, DEMO_DEAD_LETTERS);
        break;
    case PF_AGENT_EVENT_RUN_DONE:
        demo_bump(d, DEMO_RUNS_DONE);
        break;
    }
}

int
demo_agent(demo_t *d, const char *name, pf_exec_mode_t mode,
           pf_leak_detector_t *ld, pf_agent_t **out)
{
    pf_agent_config_t cfg;

    pf_agent_config_init(&cfg);
    cfg.name = name;
    cfg.executor = d->executor;
    cfg.mode = mode;
    cfg.leak_detector = ld;
    cfg.listener = agent_listener;
    cfg.listener_arg = d;
    return pf_agent_new_ex(&cfg, out);
}

/* ---- runs ---------------------------------------------------------------- */

int
demo_start(demo_t *d, pf_agent_t *a, pf_ctx_t *ctx, double timeout,
           pf_run_t **out)
{
    pf_run_opts_t opts;

    (void)d;
    pf_run_opts_init(&opts);
    opts.timeout = timeout;
    return pf_agent_start(a, ctx, &opts, out);
}

typedef struct drive_wait {
    demo_t *demo;
    pf_run_t *run;
    unsigned retries;
} drive_wait_t;

static bool
run_moved(void *arg)
{
    drive_wait_t *w = arg;

    return pf_run_done(w->run) ||
           demo_count(w->demo, DEMO_RETRIES) > w->retries;
}

static int
drive(demo_t *d, pf_run_t *run, unsigned retries)
{
    drive_wait_t w = {d, run, retries};

    for (;;) {
        int64_t due;
        int rc = demo_await(d, run_moved, &w, "the run to go on");

        if (rc != 0) {
            return rc;
        }
        if (pf_run_done(run)) {
            return 0;
        }
        /* One retry at a time: the next can only be planned once the
         * clock has reached this one. Its timer may not be armed yet; it
         * is armed for an absolute time, so moving the clock first only
         * makes it fire as soon as it is. */
        w.retries++;
        pthread_mutex_lock(&d->lock);
        due = d->retry_due_ns;
        pthread_mutex_unlock(&d->lock);
        pf_clock_manual_set(d->clock, due);
    }
}

static bool
run_done(void *arg)
{
    return pf_run_done(arg);
}

int
demo_finish(demo_t *d, pf_run_t *run, pf_run_result_t *res)
{
    int rc = demo_await(d, run_done, run, "the run to end");

    if (rc != 0) {
        pf_deadline_t limit = pf_deadline_in(NULL, 5.0);

        pf_run_cancel(run);
        if (pf_run_wait(run, &limit, res) == PF_ETIMEDOUT) {
            /* Its states ignore their token: nothing can be freed safely
             * while they run, so give up here. */
            fprintf(stderr,
                    "pf demo: scene %s: a run does not end even "
                    "when cancelled; giving up\n",
                    d->scene);
            exit(1);
        }
        pf_run_free(run);
        return rc;
    }
    pf_run_wait(run, NULL, res);
    pf_run_free(run);
    return 0;
}

int
demo_run_driven(demo_t *d, pf_agent_t *a, pf_ctx_t *ctx, pf_run_result_t *res)
{
    /* Counted before the start: the first retry may come before start
     * returns. */
    unsigned retries = demo_count(d, DEMO_RETRIES);
    pf_run_t *run;
    int rc = demo_start(d, a, ctx, 0.0, &run);
    int frc;

    if (rc != 0) {
        return rc;
    }
    rc = drive(d, run, retries);
    frc = demo_finish(d, run, res);
    return rc != 0 ? rc : frc;
}

/* ---- the simulated dependency -------------------------------------------- */

/* Take one glitch, if any is left. */
static bool
take_glitch(demo_dep_t *dep)
{
    unsigned g = atomic_load(&dep->glitches);

    while (g > 0 && !atomic_compare_exchange_weak(&dep->glitches, &g, g - 1)) {
    }
    return g > 0;
}

int
demo_dep_call(demo_t *d, demo_dep_t *dep)
{
    double now = demo_now(d);
    unsigned n = atomic_fetch_add(&dep->calls, 1) + 1;
    int error = 0;

    if (now >= dep->down_from && now < dep->down_until) {
        error = dep->error;
    } else if (take_glitch(dep)) {
        error = DEMO_ECONNRESET;
    }
    if (error != 0) {
        atomic_fetch_add(&dep->failures, 1);
        demo_say(d, dep->name, "call %u failed: %s", n, demo_strerror(error));
        return error;
    }
    demo_say(d, dep->name, "call %u ok", n);
    return 0;
}
