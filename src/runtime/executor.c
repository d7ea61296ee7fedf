/* The executor: worker threads taking tasks from four FIFO queues, one per
 * priority, and a timer thread keeping a heap of timers.
 *
 * Tasks are intrusive (they live in the objects that need running), so
 * queueing allocates nothing. A task may also belong to a group, the tasks
 * of one run: a thread that waits for the run (pf__exec_help) takes the
 * group's tasks and runs them itself instead of sleeping, and a push to a
 * group with such a helper asleep wakes the helper rather than a worker, so
 * a run driven by a blocking caller stays on the caller's thread unless
 * there is parallel work for a worker to pick up.
 *
 * Waking: a push wakes one sleeping worker unless enough wake-ups are
 * already in flight for the tasks queued (wakes_pending), so a burst of
 * pushes does not wake every worker for one task each. Workers do not spin:
 * on a small machine a spinning worker takes the core from the thread that
 * is producing the work.
 *
 * Timers: the timer thread sleeps on the executor's clock until the
 * earliest timer is due, pops it and runs its callback with no lock held.
 * While the heap is empty it sleeps with no deadline on a plain condition
 * wait, so on a manual clock it is counted as a waiter exactly while a
 * timer is armed. Cancelling a timer whose callback is running waits for
 * the callback to return (unless called from it), so the owner may reuse
 * or free the timer's memory afterwards.
 *
 * Locks: `lock` (queues) and `tlock` (timers) are never held together. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "puffinflow/error.h"
#include "puffinflow/executor.h"

#include "clock_impl.h"
#include "executor_impl.h"
#include "mem.h"
#include "timerheap.h"
#include "wait.h"

#define MAX_WORKERS 1024

/* name, nworkers, clock, threads, timer_thread: immutable after _new.
 * Queue fields, counters and stopping: under lock. Timer fields: under
 * tlock. */
struct pf_executor {
    char *name;
    unsigned nworkers;
    const pf_clock_t *clock;
    pthread_t *threads;
    pthread_t timer_thread;
    unsigned started; /* workers started (for unwinding) */
    bool timer_started;

    pthread_mutex_t lock;
    pthread_cond_t work_cv; /* work arrived, or stopping */
    pf__task_t *qhead[PF__EXEC_PRIOS];
    pf__task_t *qtail[PF__EXEC_PRIOS];
    uint64_t queued;
    uint64_t peak_queued;
    uint64_t tasks_run;
    uint64_t tasks_helped;
    unsigned sleeping;      /* workers asleep on work_cv */
    unsigned wakes_pending; /* signalled, not yet awake */
    bool stopping;

    pthread_mutex_t tlock;
    pthread_cond_t tcv;   /* earliest timer changed, or tstop */
    pthread_cond_t tidle; /* a timer callback returned */
    pf__timerheap_t heap;
    pf__timer_t *running_timer;
    uint64_t timers_fired;
    bool tstop;
};

/* The executor whose worker (or timer thread) this thread is, if any. */
static _Thread_local const pf_executor_t *tl_worker_of;
static _Thread_local const pf_executor_t *tl_timer_of;

void
pf_executor_config_init(pf_executor_config_t *cfg)
{
    if (cfg == NULL) {
        return;
    }
    memset(cfg, 0, sizeof(*cfg));
    cfg->name = "executor";
    cfg->workers = 0;
    cfg->clock = NULL;
}

/* ---- queues (under lock) ---------------------------------------------- */

static void
link_task(pf_executor_t *ex, pf__task_t *t)
{
    unsigned p = t->prio < PF__EXEC_PRIOS ? t->prio : PF__EXEC_PRIOS - 1;
    pf__group_t *g = t->group;

    t->prio = p;
    t->next = NULL;
    t->prev = ex->qtail[p];
    if (ex->qtail[p] != NULL) {
        ex->qtail[p]->next = t;
    } else {
        ex->qhead[p] = t;
    }
    ex->qtail[p] = t;
    if (g != NULL) {
        t->gnext = NULL;
        t->gprev = g->tail;
        if (g->tail != NULL) {
            g->tail->gnext = t;
        } else {
            g->head = t;
        }
        g->tail = t;
    }
    t->queued = true;
    ex->queued++;
    if (ex->queued > ex->peak_queued) {
        ex->peak_queued = ex->queued;
    }
}

static void
unlink_task(pf_executor_t *ex, pf__task_t *t)
{
    unsigned p = t->prio;
    pf__group_t *g = t->group;

    if (t->prev != NULL) {
        t->prev->next = t->next;
    } else {
        ex->qhead[p] = t->next;
    }
    if (t->next != NULL) {
        t->next->prev = t->prev;
    } else {
        ex->qtail[p] = t->prev;
    }
    if (g != NULL) {
        if (t->gprev != NULL) {
            t->gprev->gnext = t->gnext;
        } else {
            g->head = t->gnext;
        }
        if (t->gnext != NULL) {
            t->gnext->gprev = t->gprev;
        } else {
            g->tail = t->gprev;
        }
    }
    t->queued = false;
    ex->queued--;
}

/* The first task of the highest non-empty priority, unlinked; or NULL. */
static pf__task_t *
pop_task(pf_executor_t *ex)
{
    int p;

    for (p = PF__EXEC_PRIOS - 1; p >= 0; p--) {
        pf__task_t *t = ex->qhead[p];

        if (t != NULL) {
            unlink_task(ex, t);
            ex->tasks_run++;
            return t;
        }
    }
    return NULL;
}

/* After linking t: wake whoever should run it. */
static void
wake_for(pf_executor_t *ex, pf__task_t *t)
{
    pf__group_t *g = t->group;

    if (g != NULL && g->waiting > 0) {
        pthread_cond_signal(&g->cv);
        return;
    }
    if (ex->sleeping > ex->wakes_pending && ex->queued > ex->wakes_pending) {
        ex->wakes_pending++;
        pthread_cond_signal(&ex->work_cv);
    }
}

void
pf__exec_push(pf_executor_t *ex, pf__task_t *t)
{
    pthread_mutex_lock(&ex->lock);
    link_task(ex, t);
    wake_for(ex, t);
    pthread_mutex_unlock(&ex->lock);
}

void
pf__exec_push_many(pf_executor_t *ex, pf__task_t *const *tasks, size_t n)
{
    size_t i;

    pthread_mutex_lock(&ex->lock);
    for (i = 0; i < n; i++) {
        link_task(ex, tasks[i]);
        wake_for(ex, tasks[i]);
    }
    pthread_mutex_unlock(&ex->lock);
}

/* ---- groups ------------------------------------------------------------ */

int
pf__group_init(pf__group_t *g)
{
    g->head = NULL;
    g->tail = NULL;
    g->waiting = 0;
    g->finished = false;
    return pf__cond_init(&g->cv);
}

void
pf__group_destroy(pf__group_t *g)
{
    pthread_cond_destroy(&g->cv);
}

void
pf__group_reset(pf__group_t *g)
{
    g->head = NULL;
    g->tail = NULL;
    g->waiting = 0;
    g->finished = false;
}

bool
pf__exec_group_finish(pf_executor_t *ex, pf__group_t *g, _Atomic int *refs)
{
    bool last;

    pthread_mutex_lock(&ex->lock);
    g->finished = true;
    if (g->waiting > 0) {
        pthread_cond_broadcast(&g->cv);
    }
    /* acq_rel: the last owner sees the others' writes. */
    last = atomic_fetch_sub_explicit(refs, 1, memory_order_acq_rel) == 1;
    pthread_mutex_unlock(&ex->lock);
    return last;
}

/* The group's first task of the highest priority: a group holds the few
 * ready states of one run, so a scan is cheap. */
static pf__task_t *
best_of_group(const pf__group_t *g)
{
    pf__task_t *best = g->head;
    pf__task_t *t;

    for (t = g->head; t != NULL; t = t->gnext) {
        if (t->prio > best->prio) {
            best = t;
        }
    }
    return best;
}

int
pf__exec_help(pf_executor_t *ex, pf__group_t *g, const pf_deadline_t *d)
{
    const pf_clock_t *clock = d == NULL ? NULL : d->priv_clock;
    int64_t at = d == NULL ? PF_DEADLINE_NEVER_NS : d->priv_at_ns;
    int rc = 0;

    pthread_mutex_lock(&ex->lock);
    while (!g->finished) {
        pf__task_t *t = best_of_group(g);

        if (t != NULL) {
            unlink_task(ex, t);
            ex->tasks_run++;
            ex->tasks_helped++;
            pthread_mutex_unlock(&ex->lock);
            t->fn(t);
            pthread_mutex_lock(&ex->lock);
            continue;
        }
        g->waiting++;
        rc = pf__wait_until(&g->cv, &ex->lock, clock, at, NULL);
        g->waiting--;
        if (rc == PF_ETIMEDOUT && !g->finished && g->head == NULL) {
            break;
        }
        rc = 0;
    }
    pthread_mutex_unlock(&ex->lock);
    return rc;
}

/* ---- workers ----------------------------------------------------------- */

static void *
worker_main(void *arg)
{
    pf_executor_t *ex = arg;

    tl_worker_of = ex;
    pthread_mutex_lock(&ex->lock);
    for (;;) {
        pf__task_t *t = pop_task(ex);

        if (t != NULL) {
            pthread_mutex_unlock(&ex->lock);
            t->fn(t);
            pthread_mutex_lock(&ex->lock);
            continue;
        }
        if (ex->stopping) {
            break;
        }
        ex->sleeping++;
        pf__wait_until(&ex->work_cv, &ex->lock, NULL, PF_DEADLINE_NEVER_NS,
                       NULL);
        ex->sleeping--;
        if (ex->wakes_pending > 0) {
            ex->wakes_pending--;
        }
    }
    pthread_mutex_unlock(&ex->lock);
    return NULL;
}

bool
pf__exec_on_worker(const pf_executor_t *ex)
{
    return ex != NULL && tl_worker_of == ex;
}

/* ---- timers ------------------------------------------------------------ */

static void *
timer_main(void *arg)
{
    pf_executor_t *ex = arg;

    tl_timer_of = ex;
    pthread_mutex_lock(&ex->tlock);
    while (!ex->tstop) {
        pf__timer_t *t = pf__timerheap_peek(&ex->heap);

        if (t == NULL) {
            /* No deadline and the system clock: not a manual-clock waiter
             * while nothing is armed (see the file comment). */
            pf__wait_until(&ex->tcv, &ex->tlock, NULL, PF_DEADLINE_NEVER_NS,
                           NULL);
            continue;
        }
        if (pf_clock_now_ns(ex->clock) >= t->at_ns) {
            pf__timerheap_pop(&ex->heap);
            ex->running_timer = t;
            ex->timers_fired++;
            pthread_mutex_unlock(&ex->tlock);
            t->fn(t);
            pthread_mutex_lock(&ex->tlock);
            ex->running_timer = NULL;
            pthread_cond_broadcast(&ex->tidle);
            continue;
        }
        pf__wait_until(&ex->tcv, &ex->tlock, ex->clock, t->at_ns, NULL);
    }
    pthread_mutex_unlock(&ex->tlock);
    return NULL;
}

int
pf__exec_timer_arm(pf_executor_t *ex, pf__timer_t *t, int64_t at_ns)
{
    int rc;

    pthread_mutex_lock(&ex->tlock);
    rc = pf__timerheap_push(&ex->heap, t, at_ns);
    if (rc == 0 && pf__timerheap_peek(&ex->heap) == t) {
        pthread_cond_signal(&ex->tcv); /* a new earliest deadline */
    }
    pthread_mutex_unlock(&ex->tlock);
    return rc;
}

bool
pf__exec_timer_cancel(pf_executor_t *ex, pf__timer_t *t)
{
    bool was_first;
    bool removed;

    pthread_mutex_lock(&ex->tlock);
    was_first = pf__timerheap_peek(&ex->heap) == t;
    removed = pf__timerheap_remove(&ex->heap, t);
    if (was_first) {
        /* The timer thread waits for this one: let it wait for the next
         * (or stop waiting on the clock at all). */
        pthread_cond_signal(&ex->tcv);
    }
    if (!removed && tl_timer_of != ex) {
        while (ex->running_timer == t) {
            pthread_cond_wait(&ex->tidle, &ex->tlock);
        }
    }
    pthread_mutex_unlock(&ex->tlock);
    return removed;
}

/* ---- create, free ------------------------------------------------------ */

static unsigned
online_cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    if (n < 1) {
        return 1;
    }
    return n > MAX_WORKERS ? MAX_WORKERS : (unsigned)n;
}

/* Stop and join whatever threads were started, then free ex. */
static void
destroy(pf_executor_t *ex)
{
    unsigned i;

    pthread_mutex_lock(&ex->lock);
    ex->stopping = true;
    pthread_cond_broadcast(&ex->work_cv);
    pthread_mutex_unlock(&ex->lock);
    for (i = 0; i < ex->started; i++) {
        pthread_join(ex->threads[i], NULL);
    }
    pthread_mutex_lock(&ex->tlock);
    ex->tstop = true;
    pthread_cond_broadcast(&ex->tcv);
    pthread_mutex_unlock(&ex->tlock);
    if (ex->timer_started) {
        pthread_join(ex->timer_thread, NULL);
    }
    pf__timerheap_destroy(&ex->heap);
    pthread_cond_destroy(&ex->tidle);
    pthread_cond_destroy(&ex->tcv);
    pthread_mutex_destroy(&ex->tlock);
    pthread_cond_destroy(&ex->work_cv);
    pthread_mutex_destroy(&ex->lock);
    pf__free(ex->threads);
    pf__free(ex->name);
    pf__free(ex);
}

/* Initialise the locks and condition variables of a zeroed ex. Undoes its
 * own work on failure. */
static int
init_sync(pf_executor_t *ex)
{
    if (pthread_mutex_init(&ex->lock, NULL) != 0) {
        return PF_ESYSTEM;
    }
    if (pf__cond_init(&ex->work_cv) != 0) {
        goto fail_lock;
    }
    if (pthread_mutex_init(&ex->tlock, NULL) != 0) {
        goto fail_work;
    }
    if (pf__cond_init(&ex->tcv) != 0) {
        goto fail_tlock;
    }
    if (pf__cond_init(&ex->tidle) != 0) {
        goto fail_tcv;
    }
    return 0;
fail_tcv:
    pthread_cond_destroy(&ex->tcv);
fail_tlock:
    pthread_mutex_destroy(&ex->tlock);
fail_work:
    pthread_cond_destroy(&ex->work_cv);
fail_lock:
    pthread_mutex_destroy(&ex->lock);
    return PF_ESYSTEM;
}

int
pf_executor_new(const pf_executor_config_t *cfg, pf_executor_t **out)
{
    pf_executor_t *ex;
    unsigned n;
    unsigned i;
    int rc;

    if (cfg == NULL || out == NULL || cfg->name == NULL ||
        cfg->workers > MAX_WORKERS) {
        return PF_EINVAL;
    }
    n = cfg->workers == 0 ? online_cores() : cfg->workers;
    ex = pf__calloc(1, sizeof(*ex));
    if (ex == NULL) {
        return PF_ENOMEM;
    }
    ex->name = pf__strdup(cfg->name);
    ex->threads = pf__calloc(n, sizeof(*ex->threads));
    if (ex->name == NULL || ex->threads == NULL) {
        pf__free(ex->threads);
        pf__free(ex->name);
        pf__free(ex);
        return PF_ENOMEM;
    }
    rc = init_sync(ex);
    if (rc != 0) {
        pf__free(ex->threads);
        pf__free(ex->name);
        pf__free(ex);
        return rc;
    }
    ex->nworkers = n;
    ex->clock = pf__clock_norm(cfg->clock);
    pf__timerheap_init(&ex->heap);
    for (i = 0; i < n; i++) {
        if (pthread_create(&ex->threads[i], NULL, worker_main, ex) != 0) {
            destroy(ex);
            return PF_ESYSTEM;
        }
        ex->started++;
    }
    if (pthread_create(&ex->timer_thread, NULL, timer_main, ex) != 0) {
        destroy(ex);
        return PF_ESYSTEM;
    }
    ex->timer_started = true;
    *out = ex;
    return 0;
}

static pthread_mutex_t g_default_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic(pf_executor_t *) g_default;

void
pf_executor_free(pf_executor_t *ex)
{
    if (ex == NULL ||
        ex == atomic_load_explicit(&g_default, memory_order_acquire)) {
        return;
    }
    destroy(ex);
}

int
pf_executor_default(pf_executor_t **out)
{
    pf_executor_t *ex;
    int rc = 0;

    if (out == NULL) {
        return PF_EINVAL;
    }
    /* Acquire pairs with the release store below: a thread that sees the
     * pointer sees the executor fully built. */
    ex = atomic_load_explicit(&g_default, memory_order_acquire);
    if (ex == NULL) {
        pthread_mutex_lock(&g_default_lock);
        ex = atomic_load_explicit(&g_default, memory_order_relaxed);
        if (ex == NULL) {
            pf_executor_config_t cfg;

            pf_executor_config_init(&cfg);
            cfg.name = "default";
            rc = pf_executor_new(&cfg, &ex);
            if (rc == 0) {
                atomic_store_explicit(&g_default, ex, memory_order_release);
            }
        }
        pthread_mutex_unlock(&g_default_lock);
    }
    if (rc == 0) {
        *out = ex;
    }
    return rc;
}

const char *
pf_executor_name(const pf_executor_t *ex)
{
    return ex == NULL ? NULL : ex->name;
}

unsigned
pf_executor_workers(const pf_executor_t *ex)
{
    return ex == NULL ? 0 : ex->nworkers;
}

const pf_clock_t *
pf_executor_clock(const pf_executor_t *ex)
{
    return ex == NULL ? pf_clock_system() : ex->clock;
}

int64_t
pf_executor_next_timer_ns(pf_executor_t *ex)
{
    int64_t at = PF_DEADLINE_NEVER_NS;
    const pf__timer_t *t;

    if (ex == NULL) {
        return PF_DEADLINE_NEVER_NS;
    }
    pthread_mutex_lock(&ex->tlock);
    t = pf__timerheap_peek(&ex->heap);
    if (t != NULL) {
        at = t->at_ns;
    }
    pthread_mutex_unlock(&ex->tlock);
    return at;
}

void
pf_executor_metrics(pf_executor_t *ex, pf_executor_metrics_t *out)
{
    if (ex == NULL || out == NULL) {
        return;
    }
    memset(out, 0, sizeof(*out));
    out->workers = ex->nworkers;
    pthread_mutex_lock(&ex->lock);
    out->idle_workers = ex->sleeping;
    out->tasks_run = ex->tasks_run;
    out->tasks_helped = ex->tasks_helped;
    out->queued = ex->queued;
    out->peak_queued = ex->peak_queued;
    pthread_mutex_unlock(&ex->lock);
    pthread_mutex_lock(&ex->tlock);
    out->timers_armed = pf__timerheap_len(&ex->heap);
    out->timers_fired = ex->timers_fired;
    pthread_mutex_unlock(&ex->tlock);
}
