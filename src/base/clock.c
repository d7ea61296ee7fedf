/* Clocks. The system clock reads CLOCK_MONOTONIC. A manual clock holds its
 * time in an atomic that only pf_clock_manual_advance moves, and keeps a list
 * of the threads waiting on it (see wait.c): an advance walks the list and
 * signals every waiter whose deadline has now passed, so a wait on a manual
 * clock wakes exactly when a test moves time past it.
 *
 * An advance must signal a waiter's condition variable under the waiter's
 * own mutex (or the wake-up could fall between the waiter's check and its
 * sleep), but waiters link themselves while holding that mutex, so the clock
 * lock and a waiter's mutex are never held together by the advance: it pins
 * the entry with a busy count, drops the clock lock, signals, and retakes
 * the clock lock to move on. An entry with a busy count is never unlinked,
 * so the walk's next pointer stays valid. A waiter that sleeps elsewhere
 * than on a condition variable (the executor's reactor, in epoll_wait)
 * gives a wake function instead, which the advance calls the same way. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <time.h>

#include "puffinflow/clock.h"
#include "puffinflow/error.h"

#include "clock_impl.h"
#include "mem.h"
#include "timeutil.h"

static pf_clock_t g_system_clock = {
    .kind = PF__CLOCK_SYSTEM,
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .idle = PTHREAD_COND_INITIALIZER,
};

const pf_clock_t *
pf_clock_system(void)
{
    return &g_system_clock;
}

int
pf_clock_manual_new(pf_clock_t **out)
{
    pf_clock_t *c;
    int rc;

    if (out == NULL) {
        return PF_EINVAL;
    }
    c = pf__calloc(1, sizeof(*c));
    if (c == NULL) {
        return PF_ENOMEM;
    }
    c->kind = PF__CLOCK_MANUAL;
    atomic_init(&c->now_ns, 0);
    if (pthread_mutex_init(&c->lock, NULL) != 0) {
        pf__free(c);
        return PF_ESYSTEM;
    }
    rc = pf__cond_init(&c->idle);
    if (rc != 0) {
        pthread_mutex_destroy(&c->lock);
        pf__free(c);
        return rc;
    }
    *out = c;
    return 0;
}

void
pf_clock_free(pf_clock_t *c)
{
    if (c == NULL || c->kind != PF__CLOCK_MANUAL) {
        return;
    }
    pthread_cond_destroy(&c->idle);
    pthread_mutex_destroy(&c->lock);
    pf__free(c);
}

int64_t
pf_clock_now_ns(const pf_clock_t *c)
{
    if (c == NULL || c->kind == PF__CLOCK_SYSTEM) {
        return pf__clock_read_system(CLOCK_MONOTONIC);
    }
    /* Acquire pairs with the advance's release store: whatever the test
     * did before advancing is visible to code that sees the new time. */
    return atomic_load_explicit(&c->now_ns, memory_order_acquire);
}

int64_t
pf__clock_now_coarse_ns(const pf_clock_t *c)
{
    if (c == NULL || c->kind == PF__CLOCK_SYSTEM) {
        return pf__clock_read_system(CLOCK_MONOTONIC_COARSE);
    }
    return atomic_load_explicit(&c->now_ns, memory_order_acquire);
}

double
pf_clock_now(const pf_clock_t *c)
{
    return (double)pf_clock_now_ns(c) / 1e9;
}

bool
pf_clock_is_manual(const pf_clock_t *c)
{
    return c != NULL && c->kind == PF__CLOCK_MANUAL;
}

int64_t
pf_wall_time_ns(void)
{
    return pf__clock_read_system(CLOCK_REALTIME);
}

/* Signal, one by one, the waiters whose deadline is at or before now. Called
 * with c->lock held; returns with it held. */
static void
wake_due_waiters(pf_clock_t *c, int64_t now)
{
    pf__clock_waiter_t *w = c->waiters;

    while (w != NULL) {
        pf__clock_waiter_t *next;

        if (w->deadline_ns > now) {
            w = w->next;
            continue;
        }
        w->busy++;
        pthread_mutex_unlock(&c->lock);
        if (w->wake != NULL) {
            w->wake(w);
        } else {
            pthread_mutex_lock(w->mu);
            pthread_cond_broadcast(w->cv);
            pthread_mutex_unlock(w->mu);
        }
        pthread_mutex_lock(&c->lock);
        next = w->next; /* w is still linked: its busy count pins it */
        w->busy--;
        if (w->busy == 0) {
            pthread_cond_broadcast(&c->idle);
        }
        w = next;
    }
}

void
pf_clock_manual_set(pf_clock_t *c, int64_t at_ns)
{
    int64_t now;

    if (c == NULL || c->kind != PF__CLOCK_MANUAL) {
        return;
    }
    if (at_ns > INT64_MAX - 1) {
        at_ns = INT64_MAX - 1; /* INT64_MAX stays "never" */
    }
    pthread_mutex_lock(&c->lock);
    now = atomic_load_explicit(&c->now_ns, memory_order_relaxed);
    if (at_ns > now) {
        atomic_store_explicit(&c->now_ns, at_ns, memory_order_release);
        wake_due_waiters(c, at_ns);
    }
    pthread_mutex_unlock(&c->lock);
}

void
pf_clock_manual_advance(pf_clock_t *c, int64_t ns)
{
    if (c == NULL || c->kind != PF__CLOCK_MANUAL || ns <= 0) {
        return;
    }
    /* Read, add and store under the lock: two concurrent advances both
     * count, and a waiter linking itself (also under the lock) either sees
     * the new time or is in the list the walk signals. */
    pthread_mutex_lock(&c->lock);
    {
        int64_t now = atomic_load_explicit(&c->now_ns, memory_order_relaxed);
        int64_t to = pf__add_sat(now, ns);

        if (to > INT64_MAX - 1) {
            to = INT64_MAX - 1;
        }
        atomic_store_explicit(&c->now_ns, to, memory_order_release);
        wake_due_waiters(c, to);
    }
    pthread_mutex_unlock(&c->lock);
}

size_t
pf_clock_manual_waiters(const pf_clock_t *c)
{
    pf_clock_t *m = (pf_clock_t *)c;
    const pf__clock_waiter_t *w;
    size_t n = 0;

    if (c == NULL || c->kind != PF__CLOCK_MANUAL) {
        return 0;
    }
    pthread_mutex_lock(&m->lock);
    for (w = m->waiters; w != NULL; w = w->next) {
        n++;
    }
    pthread_mutex_unlock(&m->lock);
    return n;
}

int
pf__clock_link_waiter(pf_clock_t *c, pf__clock_waiter_t *w)
{
    bool linked = false;

    pthread_mutex_lock(&c->lock);
    if (atomic_load_explicit(&c->now_ns, memory_order_relaxed) <
        w->deadline_ns) {
        w->busy = 0;
        w->prev = NULL;
        w->next = c->waiters;
        if (c->waiters != NULL) {
            c->waiters->prev = w;
        }
        c->waiters = w;
        linked = true;
    }
    pthread_mutex_unlock(&c->lock);
    return linked;
}

void
pf__clock_unlink_waiter(pf_clock_t *c, pf__clock_waiter_t *w)
{
    pthread_mutex_lock(&c->lock);
    while (w->busy != 0) {
        pthread_cond_wait(&c->idle, &c->lock);
    }
    if (w->prev != NULL) {
        w->prev->next = w->next;
    } else {
        c->waiters = w->next;
    }
    if (w->next != NULL) {
        w->next->prev = w->prev;
    }
    pthread_mutex_unlock(&c->lock);
}

int
pf__cond_init(pthread_cond_t *cv)
{
    pthread_condattr_t attr;
    int rc;

    if (pthread_condattr_init(&attr) != 0) {
        return PF_ESYSTEM;
    }
    rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (rc == 0) {
        rc = pthread_cond_init(cv, &attr);
    }
    pthread_condattr_destroy(&attr);
    return rc == 0 ? 0 : PF_ESYSTEM;
}
