/* The ticker of ticker.h. The thread keeps the due time of its next tick
 * and sleeps until it in pf__wait_until with the ticker's mutex; a stop
 * sets STOPPING under that mutex and broadcasts cv, which ends the wait at
 * once on either clock, then joins the thread. The state is an atomic only
 * so that pf__ticker_running can read it without the mutex; every write
 * happens under it. */
#include <pthread.h>
#include <stdatomic.h>

#include "puffinflow/error.h"

#include "clock_impl.h"
#include "ticker.h"
#include "timeutil.h"
#include "wait.h"

enum { T_IDLE = 0, T_RUNNING = 1, T_STOPPING = 2 };

/* Every initialised ticker, for the fork handlers. Lock order: g_list_mu,
 * then a ticker's mu; a ticker thread never takes g_list_mu. */
static pthread_mutex_t g_list_mu = PTHREAD_MUTEX_INITIALIZER;
static pf__ticker_t *g_list;
static pthread_once_t g_fork_once = PTHREAD_ONCE_INIT;

/* Hold every ticker's mutex across fork: a thread of the parent between
 * two ticks holds it only briefly; one waiting for its next tick has
 * released it in its wait. */
static void
fork_prepare(void)
{
    pf__ticker_t *t;

    pthread_mutex_lock(&g_list_mu);
    for (t = g_list; t != NULL; t = t->next) {
        pthread_mutex_lock(&t->mu);
    }
}

static void
fork_parent(void)
{
    pf__ticker_t *t;

    for (t = g_list; t != NULL; t = t->next) {
        pthread_mutex_unlock(&t->mu);
    }
    pthread_mutex_unlock(&g_list_mu);
}

/* The child has no ticker thread: every ticker is stopped, and its
 * condition variable (whose waiters were the parent's threads) is made
 * afresh. */
static void
fork_child(void)
{
    pf__ticker_t *t;

    for (t = g_list; t != NULL; t = t->next) {
        atomic_store_explicit(&t->state, T_IDLE, memory_order_relaxed);
        (void)pf__cond_init(&t->cv);
        pthread_mutex_unlock(&t->mu);
    }
    pthread_mutex_unlock(&g_list_mu);
}

static void
fork_register(void)
{
    (void)pthread_atfork(fork_prepare, fork_parent, fork_child);
}

static void
list_add(pf__ticker_t *t)
{
    pthread_once(&g_fork_once, fork_register);
    pthread_mutex_lock(&g_list_mu);
    t->prev = NULL;
    t->next = g_list;
    if (g_list != NULL) {
        g_list->prev = t;
    }
    g_list = t;
    pthread_mutex_unlock(&g_list_mu);
}

static void
list_remove(pf__ticker_t *t)
{
    pthread_mutex_lock(&g_list_mu);
    if (t->prev != NULL) {
        t->prev->next = t->next;
    } else {
        g_list = t->next;
    }
    if (t->next != NULL) {
        t->next->prev = t->prev;
    }
    pthread_mutex_unlock(&g_list_mu);
}

/* Relaxed: state is written only under mu, and these reads are either
 * under mu or a snapshot for display. */
static int
state_of(const pf__ticker_t *t)
{
    return atomic_load_explicit(&((pf__ticker_t *)t)->state,
                                memory_order_relaxed);
}

static void
set_state(pf__ticker_t *t, int s)
{
    atomic_store_explicit(&t->state, s, memory_order_relaxed);
}

int
pf__ticker_init(pf__ticker_t *t, const pf_clock_t *clock, int64_t interval_ns,
                pf__tick_fn fn, void *arg)
{
    int rc;

    if (t == NULL || fn == NULL || interval_ns <= 0) {
        return PF_EINVAL;
    }
    if (pthread_mutex_init(&t->mu, NULL) != 0) {
        return PF_ESYSTEM;
    }
    rc = pf__cond_init(&t->cv);
    if (rc != 0) {
        pthread_mutex_destroy(&t->mu);
        return rc;
    }
    t->clock = clock;
    t->interval_ns = interval_ns;
    t->fn = fn;
    t->arg = arg;
    atomic_init(&t->state, T_IDLE);
    list_add(t);
    return 0;
}

/* Wait, with mu held, until the tick due at next or a stop. */
static void
wait_for(pf__ticker_t *t, int64_t next)
{
    /* INT64_MAX, a saturated sum, is PF_DEADLINE_NEVER_NS: wait for the
     * stop alone. */
    while (state_of(t) == T_RUNNING &&
           pf__wait_until(&t->cv, &t->mu, t->clock, next, NULL) !=
               PF_ETIMEDOUT) {
    }
}

static void *
ticker_main(void *p)
{
    pf__ticker_t *t = p;
    int64_t next = pf_clock_now_ns(t->clock);

    pthread_mutex_lock(&t->mu);
    while (state_of(t) == T_RUNNING) {
        int64_t now;

        pthread_mutex_unlock(&t->mu);
        t->fn(t->arg);
        pthread_mutex_lock(&t->mu);
        /* Fixed rate from the first tick. After a tick that ended at or
         * past the next due time (it ran late, or overran), restart from
         * now rather than firing the missed ticks in a burst: the tick
         * just made stands for them. */
        now = pf_clock_now_ns(t->clock);
        next = pf__add_sat(next, t->interval_ns);
        if (next <= now) {
            next = pf__add_sat(now, t->interval_ns);
        }
        wait_for(t, next);
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

int
pf__ticker_start(pf__ticker_t *t)
{
    int rc = 0;

    pthread_mutex_lock(&t->mu);
    if (state_of(t) != T_IDLE) {
        rc = PF_ESTATE;
    } else {
        /* RUNNING before the thread exists, under mu: the thread reads it
         * only after we unlock, and a stop from its first tick finds
         * thread set. */
        set_state(t, T_RUNNING);
        if (pthread_create(&t->thread, NULL, ticker_main, t) != 0) {
            set_state(t, T_IDLE);
            rc = PF_ESYSTEM;
        }
    }
    pthread_mutex_unlock(&t->mu);
    return rc;
}

int
pf__ticker_stop(pf__ticker_t *t)
{
    pthread_t th;

    pthread_mutex_lock(&t->mu);
    if (state_of(t) != T_RUNNING || pthread_equal(pthread_self(), t->thread)) {
        pthread_mutex_unlock(&t->mu);
        return PF_ESTATE;
    }
    /* STOPPING, not IDLE, until joined: a start meanwhile must not make a
     * second thread, nor a second stop join this one. */
    set_state(t, T_STOPPING);
    th = t->thread;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
    pthread_join(th, NULL);
    pthread_mutex_lock(&t->mu);
    set_state(t, T_IDLE);
    pthread_mutex_unlock(&t->mu);
    return 0;
}

bool
pf__ticker_running(const pf__ticker_t *t)
{
    return state_of(t) == T_RUNNING;
}

void
pf__ticker_destroy(pf__ticker_t *t)
{
    (void)pf__ticker_stop(t);
    list_remove(t);
    pthread_cond_destroy(&t->cv);
    pthread_mutex_destroy(&t->mu);
}
