/* The worker pool of pool.h. One mutex guards everything; one condition
 * variable (work) wakes idle threads, another (gone) tells pf__pool_free
 * that an idle thread has ended.
 *
 * Dispatch. A submitted task always goes to the tail of the queue. If the
 * threads waiting on `work` outnumber the tasks queued, one is signalled;
 * otherwise, below max_threads, one more thread is started (outside the
 * lock: pthread_create costs tens of microseconds and should not stall
 * other submitters). Every thread counted idle looks at the queue before it
 * sleeps again or ends, so a signal that lands while it is between waits is
 * never lost: it finds the task itself.
 *
 * Shrinking. A thread that becomes idle notes the time it may end
 * (now + idle_ns on the pool's clock) and waits until then; woken with
 * nothing to do, it waits again for the rest of that time; when it runs
 * out with the queue empty, it ends. The clock is read only when a thread
 * becomes idle, never while the pool is closing (the owner may free a
 * manual clock right after pf__pool_free).
 *
 * Ownership. Threads are detached. pf__pool_free closes the pool, wakes
 * the idle threads and waits until only busy ones remain, then sets
 * owner_gone: from then on the last thread to end frees the memory (or
 * free does, when none is left). The default pool is static and never
 * freed; a fork() child forgets the parent's threads and queue, since
 * neither exists there.
 *
 * Locks: mu only (pf__wait_until may take the manual clock's lock inside,
 * with mu released). No user code runs under mu. */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "puffinflow/error.h"

#include "clock_impl.h"
#include "mem.h"
#include "pool.h"
#include "timeutil.h"
#include "wait.h"

/* max_threads, idle_ns, clock and is_default are immutable after _new;
 * everything else is under mu. */
struct pf__pool {
    unsigned max_threads;
    int64_t idle_ns;
    const pf_clock_t *clock;
    bool is_default;

    pthread_mutex_t mu;
    pthread_cond_t work; /* a task was queued, or the pool closes */
    pthread_cond_t gone; /* a thread ended while the pool closes */
    pf__pool_task_t *head;
    pf__pool_task_t *tail;
    unsigned threads;
    unsigned busy;
    unsigned idle;
    unsigned queued;
    unsigned peak;
    uint64_t created;
    uint64_t ended;
    uint64_t started;
    uint64_t cancelled;
    bool closing;
    bool owner_gone;
};

void
pf__pool_config_init(pf__pool_config_t *cfg)
{
    if (cfg == NULL) {
        return;
    }
    cfg->max_threads = PF__POOL_DEFAULT_MAX_THREADS;
    cfg->idle_ns = PF__POOL_DEFAULT_IDLE_NS;
    cfg->clock = NULL;
}

/* ---- the queue (under mu) --------------------------------------------- */

static void
enqueue(pf__pool_t *p, pf__pool_task_t *t)
{
    t->next = NULL;
    t->prev = p->tail;
    if (p->tail != NULL) {
        p->tail->next = t;
    } else {
        p->head = t;
    }
    p->tail = t;
    t->queued = true;
    p->queued++;
}

static void
unlink_task(pf__pool_t *p, pf__pool_task_t *t)
{
    if (t->prev != NULL) {
        t->prev->next = t->next;
    } else {
        p->head = t->next;
    }
    if (t->next != NULL) {
        t->next->prev = t->prev;
    } else {
        p->tail = t->prev;
    }
    t->prev = NULL;
    t->next = NULL;
    t->queued = false;
    p->queued--;
}

/* ---- threads ---------------------------------------------------------- */

static void
destroy(pf__pool_t *p)
{
    pthread_cond_destroy(&p->gone);
    pthread_cond_destroy(&p->work);
    pthread_mutex_destroy(&p->mu);
    pf__free(p);
}

/* Wait for work as an idle thread. Returns false when the thread should
 * end: its idle time ran out with nothing queued, or the pool closes.
 * *until is the time it may end, set when it became idle (-1: not yet).
 * Under mu. */
static bool
wait_for_work(pf__pool_t *p, int64_t *until)
{
    int rc;

    if (p->closing) {
        return false;
    }
    if (*until < 0) {
        *until = p->idle_ns == INT64_MAX
                     ? PF_DEADLINE_NEVER_NS
                     : pf__add_sat(pf_clock_now_ns(p->clock), p->idle_ns);
    }
    p->idle++;
    rc = pf__wait_until(&p->work, &p->mu, p->clock, *until, NULL);
    p->idle--;
    return !(rc == PF_ETIMEDOUT && p->head == NULL && !p->closing);
}

static void *
worker_main(void *arg)
{
    pf__pool_t *p = arg;
    int64_t until = -1;
    bool last;

    pthread_mutex_lock(&p->mu);
    for (;;) {
        pf__pool_task_t *t = p->head;

        if (t != NULL) {
            pf__pool_fn fn = t->fn;
            void *fn_arg = t->arg;

            /* From here t belongs to fn: never touched again. */
            unlink_task(p, t);
            p->busy++;
            p->started++;
            pthread_mutex_unlock(&p->mu);
            fn(fn_arg);
            pthread_mutex_lock(&p->mu);
            p->busy--;
            until = -1;
            continue;
        }
        if (!wait_for_work(p, &until)) {
            break;
        }
    }
    p->threads--;
    p->ended++;
    pthread_cond_broadcast(&p->gone);
    last = p->owner_gone && p->threads == 0;
    pthread_mutex_unlock(&p->mu);
    if (last) {
        destroy(p);
    }
    return NULL;
}

static int
start_thread(pf__pool_t *p)
{
    pthread_attr_t attr;
    pthread_t tid;
    int rc;

    if (pthread_attr_init(&attr) != 0) {
        return PF_ESYSTEM;
    }
    rc = pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (rc == 0) {
        rc = pthread_create(&tid, &attr, worker_main, p);
    }
    pthread_attr_destroy(&attr);
    return rc == 0 ? 0 : PF_ESYSTEM;
}

/* ---- lifecycle -------------------------------------------------------- */

static int
pool_init(pf__pool_t *p, const pf__pool_config_t *cfg)
{
    int rc;

    p->max_threads = cfg->max_threads;
    p->idle_ns = cfg->idle_ns;
    p->clock = cfg->clock;
    if (pthread_mutex_init(&p->mu, NULL) != 0) {
        return PF_ESYSTEM;
    }
    rc = pf__cond_init(&p->work);
    if (rc != 0) {
        pthread_mutex_destroy(&p->mu);
        return rc;
    }
    rc = pf__cond_init(&p->gone);
    if (rc != 0) {
        pthread_cond_destroy(&p->work);
        pthread_mutex_destroy(&p->mu);
        return rc;
    }
    return 0;
}

int
pf__pool_new(const pf__pool_config_t *cfg, pf__pool_t **out)
{
    pf__pool_config_t def;
    pf__pool_t *p;
    int rc;

    if (cfg == NULL) {
        pf__pool_config_init(&def);
        cfg = &def;
    }
    if (out == NULL || cfg->max_threads == 0 || cfg->idle_ns <= 0) {
        return PF_EINVAL;
    }
    p = pf__calloc(1, sizeof(*p));
    if (p == NULL) {
        return PF_ENOMEM;
    }
    rc = pool_init(p, cfg);
    if (rc != 0) {
        pf__free(p);
        return rc;
    }
    *out = p;
    return 0;
}

void
pf__pool_free(pf__pool_t *p)
{
    bool last;

    if (p == NULL || p->is_default) {
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->closing = true;
    pthread_cond_broadcast(&p->work);
    while (p->threads > p->busy) {
        pthread_cond_wait(&p->gone, &p->mu);
    }
    p->owner_gone = true;
    last = p->threads == 0;
    pthread_mutex_unlock(&p->mu);
    if (last) {
        destroy(p);
    }
}

/* ---- the default pool ------------------------------------------------- */

static pf__pool_t g_default = {
    .max_threads = PF__POOL_DEFAULT_MAX_THREADS,
    .idle_ns = PF__POOL_DEFAULT_IDLE_NS,
    .is_default = true,
    .mu = PTHREAD_MUTEX_INITIALIZER,
};
static pthread_once_t g_default_once = PTHREAD_ONCE_INIT;
static bool g_default_ok;

/* fork() copies the pool's counts and queue but none of its threads: the
 * child starts from an empty pool. The lock is held across fork so the
 * copy is consistent. */
static void
fork_prepare(void)
{
    pthread_mutex_lock(&g_default.mu);
}

static void
fork_parent(void)
{
    pthread_mutex_unlock(&g_default.mu);
}

static void
fork_child(void)
{
    g_default.head = NULL;
    g_default.tail = NULL;
    g_default.threads = 0;
    g_default.busy = 0;
    g_default.idle = 0;
    g_default.queued = 0;
    /* No thread of the child waits on them: make them afresh. */
    if (pf__cond_init(&g_default.work) != 0 ||
        pf__cond_init(&g_default.gone) != 0) {
        g_default_ok = false;
    }
    pthread_mutex_unlock(&g_default.mu);
}

static void
default_init(void)
{
    if (pf__cond_init(&g_default.work) != 0) {
        return;
    }
    if (pf__cond_init(&g_default.gone) != 0) {
        pthread_cond_destroy(&g_default.work);
        return;
    }
    g_default_ok = pthread_atfork(fork_prepare, fork_parent, fork_child) == 0;
}

pf__pool_t *
pf__pool_default(void)
{
    pthread_once(&g_default_once, default_init);
    return g_default_ok ? &g_default : NULL;
}

/* ---- tasks ------------------------------------------------------------ */

int
pf__pool_submit(pf__pool_t *p, pf__pool_task_t *t, pf__pool_fn fn, void *arg)
{
    bool spawn = false;
    int rc;

    if (p == NULL || t == NULL || fn == NULL) {
        return PF_EINVAL;
    }
    t->fn = fn;
    t->arg = arg;
    pthread_mutex_lock(&p->mu);
    enqueue(p, t);
    if (p->idle >= p->queued) {
        pthread_cond_signal(&p->work);
    } else if (p->threads < p->max_threads) {
        /* Counted now, so concurrent submitters see it coming. */
        p->threads++;
        p->created++;
        if (p->threads > p->peak) {
            p->peak = p->threads;
        }
        spawn = true;
    }
    pthread_mutex_unlock(&p->mu);
    if (!spawn) {
        return 0;
    }
    rc = start_thread(p);
    if (rc == 0) {
        return 0;
    }
    pthread_mutex_lock(&p->mu);
    p->threads--;
    p->created--;
    /* With other threads alive, one of them runs t when it is free; with
     * none, nothing ever would. */
    if (t->queued && p->threads == 0) {
        unlink_task(p, t);
    } else {
        rc = 0;
    }
    pthread_mutex_unlock(&p->mu);
    return rc;
}

static bool
cancel(pf__pool_t *p, pf__pool_task_t *t, bool only_at_cap)
{
    bool taken;

    if (p == NULL || t == NULL) {
        return false;
    }
    pthread_mutex_lock(&p->mu);
    taken = t->queued && (!only_at_cap || p->threads >= p->max_threads);
    if (taken) {
        unlink_task(p, t);
        p->cancelled++;
    }
    pthread_mutex_unlock(&p->mu);
    return taken;
}

bool
pf__pool_cancel(pf__pool_t *p, pf__pool_task_t *t)
{
    return cancel(p, t, false);
}

bool
pf__pool_cancel_starved(pf__pool_t *p, pf__pool_task_t *t)
{
    return cancel(p, t, true);
}

void
pf__pool_stats(pf__pool_t *p, pf__pool_stats_t *out)
{
    if (p == NULL || out == NULL) {
        return;
    }
    pthread_mutex_lock(&p->mu);
    out->threads = p->threads;
    out->busy = p->busy;
    out->idle = p->idle;
    out->queued = p->queued;
    out->peak_threads = p->peak;
    out->created = p->created;
    out->ended = p->ended;
    out->started = p->started;
    out->cancelled = p->cancelled;
    pthread_mutex_unlock(&p->mu);
}
