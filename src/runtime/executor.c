/* The executor: worker threads taking tasks from four FIFO queues, one per
 * priority, and a reactor (timers and fds) on a thread of its own.
 *
 * Tasks are intrusive (they live in the objects that need running), so
 * queueing allocates nothing. A task may also belong to a group, the tasks
 * of one run: a thread that waits for the run with no deadline
 * (pf__exec_help) takes the group's tasks and runs them itself instead of
 * sleeping, and a push to a group with such a helper asleep wakes the
 * helper rather than a worker, so a run driven by a blocking caller stays
 * on the caller's thread unless there is parallel work for a worker to
 * pick up. A wait with a deadline never runs a task (it could not return
 * by its deadline while one runs): it only watches for the group's end.
 *
 * Waking: a push wakes one sleeping worker unless enough wake-ups are
 * already in flight for the tasks queued (wakes_pending), so a burst of
 * pushes does not wake every worker for one task each. Workers do not spin:
 * on a small machine a spinning worker takes the core from the thread that
 * is producing the work.
 *
 * Timers and fds belong to the reactor (reactor.c): one loop, on its own
 * thread, that fires timers and watches the epoll set; waits (waits.c) are
 * built on it. An embedded executor starts no thread at all: the host's
 * loop calls pf_executor_drive, which turns the reactor once without
 * blocking and then runs the tasks queued at that point; a push from
 * elsewhere than the drive wakes the host through the reactor's eventfd.
 *
 * Locks: `lock` (queues) is never held together with the reactor's or the
 * wait set's locks.
 *
 * fork(): the child has none of an executor's threads, and its copies of
 * the reactor's epoll set and eventfd are the parent's kernel objects. So
 * an executor belongs to the process that made it (owner): in a child,
 * pf_executor_free releases the child's copy without joining anything,
 * and every other call is off limits. The default executor is forgotten
 * by the child at fork (an atfork handler), so the child's first
 * pf_executor_default makes one of its own. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "puffinflow/error.h"
#include "puffinflow/executor.h"
#include "puffinflow/types.h"

#include "clock_impl.h"
#include "executor_impl.h"
#include "mem.h"
#include "reactor.h"
#include "timerheap.h"
#include "wait.h"
#include "waits.h"

#define MAX_WORKERS 1024

/* name, nworkers, clock, embedded, threads: immutable after _new. Queue
 * fields, counters and stopping: under lock. reactor and waits guard
 * themselves; driving is atomic. */
struct pf_executor {
    char *name;
    unsigned nworkers;
    const pf_clock_t *clock;
    bool embedded;
    pthread_t *threads;
    unsigned started; /* workers started (for unwinding) */
    bool reactor_ready;
    bool waits_ready;
    pf__reactor_t reactor;
    pf__waitset_t waits;
    _Atomic bool driving; /* a pf_executor_drive is under way */
    pid_t owner;          /* the process that made it (fork) */

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
};

/* The executor whose worker this thread is, if any, and the one this
 * thread is driving now (embedded), if any. */
static _Thread_local const pf_executor_t *tl_worker_of;
static _Thread_local const pf_executor_t *tl_drive_of;

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
    cfg->embedded = false;
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

    if (g != NULL && g->helpers > 0) {
        /* Watchers (waits with a deadline) sleep on the same cv and do not
         * take tasks: a signal could reach one of them instead of a
         * helper, so wake them all then. */
        if (g->waiting > g->helpers) {
            pthread_cond_broadcast(&g->cv);
        } else {
            pthread_cond_signal(&g->cv);
        }
        return;
    }
    if (ex->sleeping > ex->wakes_pending && ex->queued > ex->wakes_pending) {
        ex->wakes_pending++;
        pthread_cond_signal(&ex->work_cv);
    }
}

/* An embedded executor has no worker to wake: wake the host's loop
 * instead, unless the push comes from the drive, which reports the queued
 * work through pf_executor_timeout_ms. */
static void
wake_host(pf_executor_t *ex)
{
    if (ex->embedded && tl_drive_of != ex) {
        pf__reactor_wake(&ex->reactor);
    }
}

void
pf__exec_push(pf_executor_t *ex, pf__task_t *t)
{
    pthread_mutex_lock(&ex->lock);
    link_task(ex, t);
    wake_for(ex, t);
    pthread_mutex_unlock(&ex->lock);
    wake_host(ex);
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
    if (n > 0) {
        wake_host(ex);
    }
}

/* ---- groups ------------------------------------------------------------ */

int
pf__group_init(pf__group_t *g)
{
    g->head = NULL;
    g->tail = NULL;
    g->waiting = 0;
    g->helpers = 0;
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
    g->helpers = 0;
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
    /* Only a wait that may last for ever runs tasks: a task may take any
     * time, and a wait with a deadline must end by it. */
    bool help = at == PF_DEADLINE_NEVER_NS;
    int rc = 0;

    pthread_mutex_lock(&ex->lock);
    while (!g->finished) {
        pf__task_t *t = help ? best_of_group(g) : NULL;

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
        g->helpers += help;
        rc = pf__wait_until(&g->cv, &ex->lock, clock, at, NULL);
        g->helpers -= help;
        g->waiting--;
        if (rc == PF_ETIMEDOUT && !g->finished) {
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

/* ---- timers and the reactor -------------------------------------------- */

int
pf__exec_timer_arm(pf_executor_t *ex, pf__timer_t *t, int64_t at_ns)
{
    return pf__reactor_timer_arm(&ex->reactor, t, at_ns);
}

bool
pf__exec_timer_cancel(pf_executor_t *ex, pf__timer_t *t)
{
    return pf__reactor_timer_cancel(&ex->reactor, t);
}

pf__reactor_t *
pf__exec_reactor(pf_executor_t *ex)
{
    return &ex->reactor;
}

pf__waitset_t *
pf__exec_waitset(pf_executor_t *ex)
{
    return &ex->waits;
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

/* Run queued tasks on the calling thread until the queue is empty (an
 * embedded executor being freed has no worker to do it). */
static void
run_all_queued(pf_executor_t *ex)
{
    pthread_mutex_lock(&ex->lock);
    for (;;) {
        pf__task_t *t = pop_task(ex);

        if (t == NULL) {
            break;
        }
        pthread_mutex_unlock(&ex->lock);
        t->fn(t);
        pthread_mutex_lock(&ex->lock);
    }
    pthread_mutex_unlock(&ex->lock);
}

/* End the pending waits, stop and join whatever threads were started
 * (workers first: they drain the queue, wait completions included, while
 * the reactor still runs), then free ex. */
static void
destroy(pf_executor_t *ex)
{
    unsigned i;

    if (ex->waits_ready) {
        pf__waitset_close(&ex->waits);
    }
    if (ex->embedded) {
        const pf_executor_t *outer = tl_drive_of;

        tl_drive_of = ex; /* completions queued now need no host wake-up */
        run_all_queued(ex);
        tl_drive_of = outer;
    }
    pthread_mutex_lock(&ex->lock);
    ex->stopping = true;
    pthread_cond_broadcast(&ex->work_cv);
    pthread_mutex_unlock(&ex->lock);
    for (i = 0; i < ex->started; i++) {
        pthread_join(ex->threads[i], NULL);
    }
    if (ex->reactor_ready) {
        pf__reactor_destroy(&ex->reactor);
    }
    if (ex->waits_ready) {
        pf__waitset_destroy(&ex->waits);
    }
    pthread_cond_destroy(&ex->work_cv);
    pthread_mutex_destroy(&ex->lock);
    pf__free(ex->threads);
    pf__free(ex->name);
    pf__free(ex);
}

/* In a fork() child, release the child's copy of an executor made by an
 * ancestor: its threads are not here to be stopped or joined, its locks
 * may be held by one of them and are never touched, and its queued tasks
 * belong to the parent's runs (their memory is the child's copy: left to
 * their owners). */
static void
abandon(pf_executor_t *ex)
{
    if (ex->reactor_ready) {
        pf__reactor_abandon(&ex->reactor);
    }
    pf__free(ex->threads);
    pf__free(ex->name);
    pf__free(ex);
}

/* Initialise the queue lock and condition variable of a zeroed ex. Undoes
 * its own work on failure. */
static int
init_sync(pf_executor_t *ex)
{
    if (pthread_mutex_init(&ex->lock, NULL) != 0) {
        return PF_ESYSTEM;
    }
    if (pf__cond_init(&ex->work_cv) != 0) {
        pthread_mutex_destroy(&ex->lock);
        return PF_ESYSTEM;
    }
    return 0;
}

static pthread_mutex_t g_default_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic(pf_executor_t *) g_default;
/* The parent's default executor as a fork() child inherited it: kept only
 * so that the child's copy stays reachable (never used). */
static pf_executor_t *g_default_of_parent;
static pthread_once_t g_fork_once = PTHREAD_ONCE_INIT;

/* The default executor's lock is held across fork so the child's copy of
 * g_default is consistent; the child then forgets it. */
static void
fork_prepare(void)
{
    pthread_mutex_lock(&g_default_lock);
}

static void
fork_parent(void)
{
    pthread_mutex_unlock(&g_default_lock);
}

static void
fork_child(void)
{
    pf_executor_t *ex = atomic_load_explicit(&g_default, memory_order_relaxed);

    if (ex != NULL) {
        g_default_of_parent = ex;
    }
    atomic_store_explicit(&g_default, NULL, memory_order_relaxed);
    pthread_mutex_unlock(&g_default_lock);
}

/* Registered by the first executor made, before any fork that could
 * matter: a process with no executor has nothing to forget. */
static void
fork_register(void)
{
    (void)pthread_atfork(fork_prepare, fork_parent, fork_child);
}

int
pf_executor_new(const pf_executor_config_t *cfg, pf_executor_t **out)
{
    pf_executor_t *ex;
    unsigned n;
    unsigned i;
    int rc;

    if (cfg == NULL || out == NULL || cfg->name == NULL ||
        cfg->workers > MAX_WORKERS || (cfg->embedded && cfg->workers != 0)) {
        return PF_EINVAL;
    }
    n = cfg->embedded ? 0 : cfg->workers == 0 ? online_cores() : cfg->workers;
    ex = pf__calloc(1, sizeof(*ex));
    if (ex == NULL) {
        return PF_ENOMEM;
    }
    ex->name = pf__strdup(cfg->name);
    ex->threads = pf__calloc(n == 0 ? 1 : n, sizeof(*ex->threads));
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
    ex->embedded = cfg->embedded;
    ex->clock = pf__clock_norm(cfg->clock);
    atomic_init(&ex->driving, false);
    ex->owner = getpid();
    pthread_once(&g_fork_once, fork_register);
    rc = pf__waitset_init(&ex->waits);
    if (rc != 0) {
        destroy(ex);
        return rc;
    }
    ex->waits_ready = true;
    rc = pf__reactor_init(&ex->reactor, ex->clock, ex->embedded);
    if (rc != 0) {
        destroy(ex);
        return rc;
    }
    ex->reactor_ready = true;
    for (i = 0; i < n; i++) {
        if (pthread_create(&ex->threads[i], NULL, worker_main, ex) != 0) {
            destroy(ex);
            return PF_ESYSTEM;
        }
        ex->started++;
    }
    if (!ex->embedded) {
        rc = pf__reactor_start(&ex->reactor);
        if (rc != 0) {
            destroy(ex);
            return rc;
        }
    }
    *out = ex;
    return 0;
}

void
pf_executor_free(pf_executor_t *ex)
{
    if (ex == NULL ||
        ex == atomic_load_explicit(&g_default, memory_order_acquire)) {
        return;
    }
    if (ex->owner != getpid()) {
        if (ex == g_default_of_parent) {
            g_default_of_parent = NULL;
        }
        abandon(ex);
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
    if (ex == NULL) {
        return PF_DEADLINE_NEVER_NS;
    }
    return pf__reactor_next_timer_ns(&ex->reactor);
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
    pf__reactor_timer_counts(&ex->reactor, &out->timers_armed,
                             &out->timers_fired);
    out->waits_pending = pf__waitset_pending(&ex->waits);
}

/* ---- plain tasks -------------------------------------------------------- */

typedef struct submitted {
    pf__task_t task; /* first: the task is the record */
    pf_task_fn fn;
    void *arg;
} submitted_t;

static void
run_submitted(pf__task_t *t)
{
    submitted_t *s = (submitted_t *)(void *)t;
    pf_task_fn fn = s->fn;
    void *arg = s->arg;

    pf__free(s); /* before fn: fn may free what arg points to, or ex */
    fn(arg);
}

int
pf_executor_submit(pf_executor_t *ex, pf_task_fn fn, void *arg)
{
    submitted_t *s;
    bool stopping;

    if (ex == NULL || fn == NULL) {
        return PF_EINVAL;
    }
    pthread_mutex_lock(&ex->lock);
    stopping = ex->stopping;
    pthread_mutex_unlock(&ex->lock);
    if (stopping) {
        return PF_ESTATE;
    }
    s = pf__calloc(1, sizeof(*s));
    if (s == NULL) {
        return PF_ENOMEM;
    }
    s->task.fn = run_submitted;
    s->task.prio = PF_PRIORITY_NORMAL;
    s->task.group = NULL;
    s->fn = fn;
    s->arg = arg;
    pf__exec_push(ex, &s->task);
    return 0;
}

/* ---- embedding ---------------------------------------------------------- */

int
pf_executor_fd(pf_executor_t *ex)
{
    if (ex == NULL) {
        return PF_EINVAL;
    }
    return ex->embedded ? ex->reactor.epfd : PF_ESTATE;
}

/* Run at most the n tasks queued when called: work that a task queues
 * waits for the next drive, so one drive always ends. */
static unsigned
run_queued(pf_executor_t *ex)
{
    unsigned ran = 0;
    uint64_t n;

    pthread_mutex_lock(&ex->lock);
    for (n = ex->queued; n > 0; n--) {
        pf__task_t *t = pop_task(ex);

        if (t == NULL) {
            break;
        }
        pthread_mutex_unlock(&ex->lock);
        t->fn(t);
        ran++;
        pthread_mutex_lock(&ex->lock);
    }
    pthread_mutex_unlock(&ex->lock);
    return ran;
}

int
pf_executor_drive(pf_executor_t *ex)
{
    unsigned done;

    if (ex == NULL) {
        return PF_EINVAL;
    }
    if (!ex->embedded ||
        atomic_exchange_explicit(&ex->driving, true, memory_order_acquire)) {
        return PF_ESTATE;
    }
    tl_drive_of = ex;
    done = pf__reactor_turn(&ex->reactor, false);
    done += run_queued(ex);
    pf__reactor_watch_clock(&ex->reactor);
    tl_drive_of = NULL;
    /* Release: the next driver sees everything this one did. */
    atomic_store_explicit(&ex->driving, false, memory_order_release);
    return done > INT32_MAX ? INT32_MAX : (int)done;
}

int
pf_executor_timeout_ms(pf_executor_t *ex)
{
    uint64_t queued;

    if (ex == NULL) {
        return PF_EINVAL;
    }
    if (!ex->embedded) {
        return PF_ESTATE;
    }
    pthread_mutex_lock(&ex->lock);
    queued = ex->queued;
    pthread_mutex_unlock(&ex->lock);
    if (queued > 0) {
        return 0;
    }
    return pf__reactor_timeout_ms(&ex->reactor);
}
