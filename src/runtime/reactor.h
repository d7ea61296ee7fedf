/* The executor's reactor: one epoll set, one eventfd to wake it, and the
 * timer heap, served by one loop. The loop runs on the executor's reactor
 * thread, or, for an embedded executor, inside pf_executor_drive on the
 * host's thread. Used by executor.c (timers, wake-ups) and waits.c (fd
 * registrations). */
#ifndef PF_SRC_REACTOR_H
#define PF_SRC_REACTOR_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "puffinflow/clock.h"

#include "clock_impl.h"
#include "timerheap.h"

struct pf__fdreg;

/* Called on the loop when a registered fd becomes ready (events are the
 * epoll bits seen). No lock is held; it must not block. */
typedef void (*pf__fdreg_fn)(struct pf__fdreg *reg, uint32_t events);

/* Called on the loop once the registration has left the epoll set: the
 * loop will never look at reg again, so its owner may free it. */
typedef void (*pf__fdreg_release_fn)(struct pf__fdreg *reg);

/* An fd in the epoll set, caller memory. fn and release are set by the
 * owner before pf__reactor_fd_add; the rest belongs to the reactor. */
typedef struct pf__fdreg {
    pf__fdreg_fn fn;
    pf__fdreg_release_fn release;
    int fd;      /* the fd in the set: the caller's, or a duplicate */
    bool dup;    /* fd is a duplicate the reactor closes */
    _Atomic bool published; /* release before the ADD, acquire at events */
    _Atomic bool fired; /* the loop saw its event: the one-shot is spent */
    struct pf__fdreg *rnext; /* on the retire list, under rlock */
} pf__fdreg_t;

/* epfd, efd, clock, embedded: immutable after init. heap, running_timer,
 * timers_fired, stop: under tlock. retire, parked, nparked: under rlock. centry and clinked
 * belong to the loop (one thread at a time). wake_pending is atomic.
 * tlock and rlock are never held together, nor with the executor's
 * queue lock. */
typedef struct pf__reactor {
    int epfd;
    int efd;
    const pf_clock_t *clock;
    bool manual;
    bool embedded;
    pthread_t thread;
    bool thread_started;

    pthread_mutex_t tlock;
    pthread_cond_t tidle; /* a timer callback returned */
    pf__timerheap_t heap;
    pf__timer_t *running_timer;
    uint64_t timers_fired;
    bool stop;

    pthread_mutex_t rlock;
    pf__fdreg_t *retire;   /* registrations to take out of the set */
    unsigned char *parked; /* per fd number: a spent entry left in the set */
    int nparked;           /* length of parked */

    pf__clock_waiter_t centry; /* on a manual clock: wakes the loop */
    bool clinked;
    _Atomic bool wake_pending; /* the eventfd holds an unread wake-up */
} pf__reactor_t;

/* Set up r (epoll set, eventfd, locks) for clock; starts no thread.
 * Returns 0, PF_ESYSTEM or PF_ENOMEM; on error r holds nothing. */
int pf__reactor_init(pf__reactor_t *r, const pf_clock_t *clock,
                     bool embedded);

/* Start the loop thread. Returns 0 or PF_ESYSTEM. */
int pf__reactor_start(pf__reactor_t *r);

/* Stop and join the loop thread (if started), take every retiring fd out
 * of the set, then free what r holds. Armed timers are forgotten; fds
 * still registered are released. No other call on r may follow. */
void pf__reactor_destroy(pf__reactor_t *r);

/* In a fork() child, release what the child's copy of a parent's reactor
 * holds: its copies of the epoll and event fds (the kernel objects stay
 * the parent's) and the heap array. No thread is joined and no lock
 * touched: the loop thread does not exist in the child. No other call on
 * r may follow. */
void pf__reactor_abandon(pf__reactor_t *r);

/* Wake the loop (an eventfd write, coalesced: at most one unread). From
 * any thread; async-signal-unsafe only in that it may call write(2). */
void pf__reactor_wake(pf__reactor_t *r);

/* True when the calling thread is r's loop right now (its thread, or the
 * thread inside pf_executor_drive). */
bool pf__reactor_on_loop(const pf__reactor_t *r);

/* Timers, with the contract of pf__exec_timer_arm / pf__exec_timer_cancel
 * in executor_impl.h. */
int pf__reactor_timer_arm(pf__reactor_t *r, pf__timer_t *t, int64_t at_ns);
bool pf__reactor_timer_cancel(pf__reactor_t *r, pf__timer_t *t);

/* The earliest armed timer's due time, or PF_DEADLINE_NEVER_NS. */
int64_t pf__reactor_next_timer_ns(pf__reactor_t *r);

/* Timers armed now, and fired since init. */
void pf__reactor_timer_counts(pf__reactor_t *r, uint64_t *armed,
                              uint64_t *fired);

/* Add fd to the set for events (EPOLLIN / EPOLLOUT bits), one-shot: reg->fn
 * runs at most once. When fd is already in the set (another wait on it),
 * a duplicate of fd is registered instead. An fd whose last registration
 * fired and was retired is still in the set, spent (parked): it is
 * re-armed with one EPOLL_CTL_MOD. Returns 0, PF_EINVAL for an fd
 * epoll cannot watch (closed, a regular file), PF_ENOMEM, or PF_ESYSTEM.
 * From any thread. After a 0, the owner must retire reg exactly once. */
int pf__reactor_fd_add(pf__reactor_t *r, pf__fdreg_t *reg, int fd,
                       uint32_t events);

/* Take reg out of the set: on the loop, outside any batch of events, so
 * an event already read for reg is handled first; then reg->release runs
 * there. From any thread, exactly once per added reg. A reg whose event
 * the loop has handed to reg->fn stays in the set, spent (EPOLLONESHOT
 * reports nothing more until a MOD), and its fd is parked for the next
 * pf__reactor_fd_add of the same fd (no epoll_ctl here); closing the fd
 * takes it out. Any other reg leaves with EPOLL_CTL_DEL. */
void pf__reactor_fd_retire(pf__reactor_t *r, pf__fdreg_t *reg);

/* One turn of the loop on the calling thread: fire due timers, take
 * retired fds out, wait for events (up to the earliest timer when block,
 * else not at all) and handle them. Returns how many timers fired plus
 * fd events handled. For pf_executor_drive; the loop thread calls it in
 * a loop. The caller makes sure only one thread turns r at a time. */
unsigned pf__reactor_turn(pf__reactor_t *r, bool block);

/* After a turn of an embedded reactor on a manual clock: watch the clock
 * for the earliest timer, so that an advance makes the epoll fd readable
 * (or wake at once when it is already due). No-op otherwise. */
void pf__reactor_watch_clock(pf__reactor_t *r);

/* Milliseconds until the earliest timer (rounded up), 0 when one is due,
 * -1 when none is armed or the clock is manual (an advance wakes the
 * epoll fd instead). */
int pf__reactor_timeout_ms(pf__reactor_t *r);

#endif /* PF_SRC_REACTOR_H */
