/* The clock object, shared by clock.c and wait.c. */
#ifndef PF_SRC_CLOCK_IMPL_H
#define PF_SRC_CLOCK_IMPL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "puffinflow/clock.h"

enum { PF__CLOCK_SYSTEM = 0, PF__CLOCK_MANUAL = 1 };

/* A thread waiting on a manual clock: it lives on the waiter's stack, linked
 * into the clock's list for the duration of one wait. */
typedef struct pf__clock_waiter {
    struct pf__clock_waiter *next;
    struct pf__clock_waiter *prev;
    pthread_cond_t *cv;    /* the waiter's condition variable ... */
    pthread_mutex_t *mu;   /* ... and the mutex it waits with */
    int64_t deadline_ns;   /* wake it once now reaches this */
    unsigned busy;         /* advances signalling it now; under clock lock */
    /* NULL for a thread asleep on cv. Otherwise the advance calls wake(w),
     * with no lock held, instead of signalling cv under mu: for a waiter
     * that sleeps elsewhere (the executor's reactor in epoll_wait). */
    void (*wake)(struct pf__clock_waiter *w);
} pf__clock_waiter_t;

/* kind is immutable. now_ns is atomic so reads never lock; it is written
 * only under lock, so a waiter that links itself under lock either sees the
 * new time or is in the list when the advance walks it. waiters, every
 * waiter's busy count and the idle condition are under lock. */
struct pf_clock {
    int kind;
    _Atomic int64_t now_ns;
    pthread_mutex_t lock;
    pthread_cond_t idle;          /* a waiter's busy count fell to 0 */
    pf__clock_waiter_t *waiters;  /* newest first */
};

/* The system clock for NULL, c otherwise. */
static inline const pf_clock_t *
pf__clock_norm(const pf_clock_t *c)
{
    return c == NULL ? pf_clock_system() : c;
}

/* Link w (deadline set) into manual clock c's list, unless c already reads
 * w->deadline_ns or later: then returns false and links nothing. */
int pf__clock_link_waiter(pf_clock_t *c, pf__clock_waiter_t *w);

/* Unlink w, first waiting for any advance that is signalling it. The
 * caller must not hold w->mu (the advance may need it). */
void pf__clock_unlink_waiter(pf_clock_t *c, pf__clock_waiter_t *w);

/* A cheap read with coarse resolution (CLOCK_MONOTONIC_COARSE, about 4 ms
 * behind at most) on the system clock; the exact value on a manual clock.
 * For measuring durations counted in seconds on hot paths. */
int64_t pf__clock_now_coarse_ns(const pf_clock_t *c);

/* A read of the system's monotonic clock id (CLOCK_MONOTONIC or
 * CLOCK_MONOTONIC_COARSE) in ns. Inline: the breaker's closed path reads
 * the coarse clock on every call, and the call through pf_clock_now_ns
 * was a fifth of that read's cost. */
static inline int64_t
pf__clock_read_system(clockid_t id)
{
    struct timespec ts;

    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * PF_NS_PER_SEC + ts.tv_nsec;
}

/* Initialise a condition variable for pf__wait_until (it times out on
 * CLOCK_MONOTONIC). Returns 0 or PF_ESYSTEM. */
int pf__cond_init(pthread_cond_t *cv);

#endif /* PF_SRC_CLOCK_IMPL_H */
