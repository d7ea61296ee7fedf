/* The reactor: the executor's one loop for time and I/O. An epoll set
 * holds the fds that waits watch plus one eventfd; the timer heap sits
 * beside it, and each turn of the loop fires the due timers, then sleeps
 * in epoll_pwait2 until the earliest timer is due, an fd is ready or the
 * eventfd is written (a new earliest timer, a cancelled first timer, a
 * retired fd, a stop, a manual-clock advance), then handles what it saw.
 *
 * On the system clock the sleep's timeout is the time left to the earliest
 * timer, in nanoseconds. On a manual clock the loop cannot sleep "until
 * the clock says t": it links an entry into the clock's waiter list whose
 * wake function writes the eventfd, and sleeps with no timeout; an advance
 * past the timer wakes it. The entry is linked exactly while the loop
 * sleeps with a timer armed, so pf_clock_manual_waiters counts the loop
 * as it counted the timer thread before the reactor.
 *
 * Registrations are one-shot (EPOLLONESHOT) and carry a pointer to caller
 * memory, and an epoll_wait may hand back a pointer to a registration that
 * another thread is withdrawing at that moment. So a registration leaves
 * the set at once (epoll_ctl DEL, from any thread, before the owner can
 * close the fd and the number be reused), but its memory is given back
 * (release) only on the loop, between two batches of events: no batch
 * still holds the pointer then.
 *
 * Except when its event has been seen: a one-shot entry that reported is
 * spent, the kernel reports nothing more for it until an EPOLL_CTL_MOD,
 * so its stale pointer can never come back. Retiring it leaves it in the
 * set and marks its fd number parked; the next add of that fd re-arms the
 * entry with one MOD instead of a DEL now and an ADD then (a provider that
 * waits on the same socket again and again pays one epoll_ctl per event).
 * If the fd was closed meanwhile, the entry left with its file (or, if the
 * file lives on elsewhere, stays spent and keyed on that file): the MOD
 * finds no entry for the fd's current file (ENOENT) and the add falls back
 * to ADD. A duplicate (below) is never parked: its number is closed at
 * retire while the file stays open, which would leave the entry behind.
 *
 * The eventfd's wake-ups are coalesced by wake_pending: a writer writes
 * only when it flips the flag, and the loop reads the counter before it
 * clears the flag, so a wake-up is never lost and rarely doubled.
 *
 * Locks: tlock (timers) and rlock (retire list) are never held together,
 * and neither is held while a callback runs. Cancelling a timer whose
 * callback is running waits for it to return unless called on the loop,
 * so the owner may reuse or free the timer's memory afterwards. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "puffinflow/deadline.h"
#include "puffinflow/error.h"

#include "clock_impl.h"
#include "mem.h"
#include "reactor.h"
#include "timerheap.h"
#include "timeutil.h"

#define MAX_EVENTS 64

/* The reactor whose loop this thread is running now, if any. */
static _Thread_local const pf__reactor_t *tl_loop_of;

/* ---- waking ------------------------------------------------------------ */

void
pf__reactor_wake(pf__reactor_t *r)
{
    uint64_t one = 1;
    ssize_t n;

    /* acq_rel: the loop's clearing exchange reads this flip, so whatever
     * the waker did before (under its own lock) is visible to the loop. */
    if (atomic_exchange_explicit(&r->wake_pending, true,
                                 memory_order_acq_rel)) {
        return;
    }
    do {
        n = write(r->efd, &one, sizeof(one));
    } while (n < 0 && errno == EINTR);
    /* EAGAIN (counter full) still leaves the fd readable: nothing lost. */
}

static void
drain_wake(pf__reactor_t *r)
{
    uint64_t v;
    ssize_t n;

    /* Read, then clear: a waker that comes after the clear writes again;
     * one that comes between sees the flag set and does not, but the turn
     * looks at timers, retired fds and the stop flag after this. Clearing
     * first would let the read swallow a later waker's write and leave the
     * flag set with nothing to read: every wake-up after it lost. */
    do {
        n = read(r->efd, &v, sizeof(v));
    } while (n < 0 && errno == EINTR);
    atomic_exchange_explicit(&r->wake_pending, false, memory_order_acq_rel);
}

bool
pf__reactor_on_loop(const pf__reactor_t *r)
{
    return r != NULL && tl_loop_of == r;
}

/* ---- the manual clock -------------------------------------------------- */

static void
on_clock_advance(pf__clock_waiter_t *w)
{
    pf__reactor_t *r =
        (pf__reactor_t *)((char *)w - offsetof(pf__reactor_t, centry));

    pf__reactor_wake(r);
}

/* Watch the manual clock for time at. Returns false when the clock is
 * already there (nothing linked: the caller must not sleep). */
static bool
clock_watch(pf__reactor_t *r, int64_t at)
{
    r->centry.deadline_ns = at;
    r->centry.wake = on_clock_advance;
    r->clinked = pf__clock_link_waiter((pf_clock_t *)r->clock, &r->centry);
    return r->clinked;
}

static void
clock_unwatch(pf__reactor_t *r)
{
    if (r->clinked) {
        pf__clock_unlink_waiter((pf_clock_t *)r->clock, &r->centry);
        r->clinked = false;
    }
}

void
pf__reactor_watch_clock(pf__reactor_t *r)
{
    int64_t at;

    if (!r->manual) {
        return;
    }
    clock_unwatch(r);
    at = pf__reactor_next_timer_ns(r);
    if (at != PF_DEADLINE_NEVER_NS && !clock_watch(r, at)) {
        pf__reactor_wake(r); /* due already: come back at once */
    }
}

/* ---- timers ------------------------------------------------------------ */

int
pf__reactor_timer_arm(pf__reactor_t *r, pf__timer_t *t, int64_t at_ns)
{
    bool first;
    int rc;

    pthread_mutex_lock(&r->tlock);
    rc = pf__timerheap_push(&r->heap, t, at_ns);
    first = rc == 0 && pf__timerheap_peek(&r->heap) == t;
    pthread_mutex_unlock(&r->tlock);
    /* On the loop, the turn looks at the heap again before it sleeps. */
    if (first && !pf__reactor_on_loop(r)) {
        pf__reactor_wake(r); /* a new earliest deadline */
    }
    return rc;
}

bool
pf__reactor_timer_cancel(pf__reactor_t *r, pf__timer_t *t)
{
    bool on_loop = pf__reactor_on_loop(r);
    bool was_first;
    bool removed;

    pthread_mutex_lock(&r->tlock);
    was_first = pf__timerheap_peek(&r->heap) == t;
    removed = pf__timerheap_remove(&r->heap, t);
    if (!removed && !on_loop) {
        while (r->running_timer == t) {
            pthread_cond_wait(&r->tidle, &r->tlock);
        }
    }
    pthread_mutex_unlock(&r->tlock);
    if (was_first && !on_loop) {
        /* The loop sleeps for this one: let it sleep for the next (or stop
         * watching the clock at all). */
        pf__reactor_wake(r);
    }
    return removed;
}

int64_t
pf__reactor_next_timer_ns(pf__reactor_t *r)
{
    int64_t at = PF_DEADLINE_NEVER_NS;
    const pf__timer_t *t;

    pthread_mutex_lock(&r->tlock);
    t = pf__timerheap_peek(&r->heap);
    if (t != NULL) {
        at = t->at_ns;
    }
    pthread_mutex_unlock(&r->tlock);
    return at;
}

void
pf__reactor_timer_counts(pf__reactor_t *r, uint64_t *armed, uint64_t *fired)
{
    pthread_mutex_lock(&r->tlock);
    *armed = pf__timerheap_len(&r->heap);
    *fired = r->timers_fired;
    pthread_mutex_unlock(&r->tlock);
}

/* Fire every timer due at one reading of the clock, callbacks with no
 * lock held. Returns how many fired; *next is the earliest left. */
static unsigned
fire_due_timers(pf__reactor_t *r, int64_t *next)
{
    int64_t now = pf_clock_now_ns(r->clock);
    unsigned n = 0;

    pthread_mutex_lock(&r->tlock);
    for (;;) {
        pf__timer_t *t = pf__timerheap_peek(&r->heap);

        if (t == NULL || t->at_ns > now) {
            *next = t == NULL ? PF_DEADLINE_NEVER_NS : t->at_ns;
            break;
        }
        pf__timerheap_pop(&r->heap);
        r->running_timer = t;
        r->timers_fired++;
        n++;
        pthread_mutex_unlock(&r->tlock);
        t->fn(t);
        pthread_mutex_lock(&r->tlock);
        r->running_timer = NULL;
        pthread_cond_broadcast(&r->tidle);
    }
    pthread_mutex_unlock(&r->tlock);
    return n;
}

int
pf__reactor_timeout_ms(pf__reactor_t *r)
{
    int64_t at = pf__reactor_next_timer_ns(r);
    int64_t left;

    if (at == PF_DEADLINE_NEVER_NS) {
        return -1;
    }
    left = at - pf_clock_now_ns(r->clock);
    if (left <= 0) {
        return 0;
    }
    if (r->manual) {
        return -1;
    }
    /* Rounded up: a host that wakes early would find nothing due. */
    left = (left + PF_NS_PER_MS - 1) / PF_NS_PER_MS;
    return left > INT_MAX ? INT_MAX : (int)left;
}

/* ---- fds --------------------------------------------------------------- */

static int
errno_to_pf(int e)
{
    switch (e) {
    case EBADF:
    case EPERM:
    case EINVAL:
    case ELOOP:
        return PF_EINVAL;
    case ENOMEM:
    case ENOSPC:
        return PF_ENOMEM;
    default:
        return PF_ESYSTEM;
    }
}

/* Claim fd's parked entry, if any. */
static bool
unpark(pf__reactor_t *r, int fd)
{
    bool was;

    pthread_mutex_lock(&r->rlock);
    was = fd < r->nparked && r->parked[fd] != 0;
    if (was) {
        r->parked[fd] = 0;
    }
    pthread_mutex_unlock(&r->rlock);
    return was;
}

/* Mark fd parked. Under rlock. False when the table cannot grow (then the
 * caller takes the entry out instead). */
static bool
park_locked(pf__reactor_t *r, int fd)
{
    if (fd >= r->nparked) {
        int n = r->nparked < 64 ? 64 : r->nparked;
        unsigned char *p;

        while (n <= fd) {
            if (n > INT_MAX / 2) {
                return false;
            }
            n *= 2;
        }
        p = pf__realloc(r->parked, (size_t)n);
        if (p == NULL) {
            return false;
        }
        memset(p + r->nparked, 0, (size_t)(n - r->nparked));
        r->parked = p;
        r->nparked = n;
    }
    r->parked[fd] = 1;
    return true;
}

int
pf__reactor_fd_add(pf__reactor_t *r, pf__fdreg_t *reg, int fd,
                   uint32_t events)
{
    struct epoll_event ev;
    int d;

    ev.events = events | EPOLLONESHOT;
    ev.data.ptr = reg;
    reg->fd = fd;
    reg->dup = false;
    reg->rnext = NULL;
    atomic_store_explicit(&reg->fired, false, memory_order_relaxed);
    /* The kernel orders this ADD before the event the loop reads, but
     * neither C11 nor a race detector sees that edge: this release and the
     * loop's acquire state it. Everything reg's owner wrote before is then
     * visible to reg->fn. */
    atomic_store_explicit(&reg->published, true, memory_order_release);
    if (unpark(r, fd)) {
        if (epoll_ctl(r->epfd, EPOLL_CTL_MOD, fd, &ev) == 0) {
            return 0;
        }
        if (errno != ENOENT) {
            return errno_to_pf(errno);
        }
        /* fd was closed since, and the number reused: add it afresh. */
    }
    if (epoll_ctl(r->epfd, EPOLL_CTL_ADD, fd, &ev) == 0) {
        return 0;
    }
    if (errno != EEXIST) {
        return errno_to_pf(errno);
    }
    /* fd has a wait already: epoll keys a registration on the fd number
     * and the open file, so a duplicate number is a registration of its
     * own that reports the same file's readiness. */
    d = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (d < 0) {
        return errno == EMFILE || errno == ENFILE ? PF_ESYSTEM
                                                  : errno_to_pf(errno);
    }
    /* Set before the ADD: once added, the event and a retire may come at
     * once. */
    reg->fd = d;
    reg->dup = true;
    atomic_store_explicit(&reg->published, true, memory_order_release);
    /* Under rlock, as the retire's close of d: an event may retire reg
     * before this ADD returns, and the lock orders the two uses of d for
     * readers (and race detectors) that cannot see the kernel's order. */
    pthread_mutex_lock(&r->rlock);
    if (epoll_ctl(r->epfd, EPOLL_CTL_ADD, d, &ev) != 0) {
        int rc = errno_to_pf(errno);

        pthread_mutex_unlock(&r->rlock);
        reg->fd = fd;
        reg->dup = false;
        close(d);
        return rc;
    }
    pthread_mutex_unlock(&r->rlock);
    return 0;
}

void
pf__reactor_fd_retire(pf__reactor_t *r, pf__fdreg_t *reg)
{
    /* A spent entry stays, parked; any other leaves the set now, before
     * the owner can close fd (an error only means the fd was closed
     * already, and so left the set). */
    bool park = !reg->dup &&
                atomic_load_explicit(&reg->fired, memory_order_acquire);

    if (!park) {
        epoll_ctl(r->epfd, EPOLL_CTL_DEL, reg->fd, NULL);
    }
    pthread_mutex_lock(&r->rlock);
    if (park && !park_locked(r, reg->fd)) {
        epoll_ctl(r->epfd, EPOLL_CTL_DEL, reg->fd, NULL);
    }
    if (reg->dup) {
        close(reg->fd);
    }
    reg->rnext = r->retire;
    r->retire = reg;
    pthread_mutex_unlock(&r->rlock);
    if (!pf__reactor_on_loop(r)) {
        pf__reactor_wake(r);
    }
}

/* Release the retired registrations; called between batches. */
static void
release_retired(pf__reactor_t *r)
{
    pf__fdreg_t *reg;

    pthread_mutex_lock(&r->rlock);
    reg = r->retire;
    r->retire = NULL;
    pthread_mutex_unlock(&r->rlock);
    while (reg != NULL) {
        pf__fdreg_t *next = reg->rnext;

        reg->release(reg);
        reg = next;
    }
}

/* ---- the loop ---------------------------------------------------------- */

/* epoll_pwait2 takes nanoseconds; kernels before 5.11 lack it, and then
 * epoll_wait with the timeout rounded up to a millisecond does. */
static int
wait_events(pf__reactor_t *r, struct epoll_event *evs, int64_t timeout_ns)
{
    static _Atomic bool no_pwait2;
    struct timespec ts;
    int n;

    if (!atomic_load_explicit(&no_pwait2, memory_order_relaxed)) {
        ts.tv_sec = (time_t)(timeout_ns / PF_NS_PER_SEC);
        ts.tv_nsec = (long)(timeout_ns % PF_NS_PER_SEC);
        n = epoll_pwait2(r->epfd, evs, MAX_EVENTS,
                         timeout_ns < 0 ? NULL : &ts, NULL);
        if (n >= 0 || errno != ENOSYS) {
            return n;
        }
        atomic_store_explicit(&no_pwait2, true, memory_order_relaxed);
    }
    if (timeout_ns < 0) {
        return epoll_wait(r->epfd, evs, MAX_EVENTS, -1);
    }
    timeout_ns = (timeout_ns + PF_NS_PER_MS - 1) / PF_NS_PER_MS;
    return epoll_wait(r->epfd, evs, MAX_EVENTS,
                      timeout_ns > INT_MAX ? INT_MAX : (int)timeout_ns);
}

/* How long a blocking turn may sleep for the earliest timer next: -1 for
 * ever, else nanoseconds. On a manual clock this links the clock entry. */
static int64_t
sleep_for(pf__reactor_t *r, int64_t next)
{
    int64_t left;

    if (next == PF_DEADLINE_NEVER_NS) {
        return -1;
    }
    if (r->manual) {
        return clock_watch(r, next) ? -1 : 0;
    }
    left = next - pf_clock_now_ns(r->clock);
    return left < 0 ? 0 : left;
}

unsigned
pf__reactor_turn(pf__reactor_t *r, bool block)
{
    const pf__reactor_t *outer = tl_loop_of;
    struct epoll_event evs[MAX_EVENTS];
    int64_t next;
    unsigned done;
    int n;
    int i;

    tl_loop_of = r;
    clock_unwatch(r);
    done = fire_due_timers(r, &next);
    release_retired(r);
    n = wait_events(r, evs, block ? sleep_for(r, next) : 0);
    clock_unwatch(r);
    for (i = 0; i < n; i++) {
        pf__fdreg_t *reg = evs[i].data.ptr;

        if (reg == NULL) {
            drain_wake(r);
            continue;
        }
        (void)atomic_load_explicit(&reg->published, memory_order_acquire);
        /* Its one-shot is spent now: a retire may leave it parked. */
        atomic_store_explicit(&reg->fired, true, memory_order_release);
        reg->fn(reg, evs[i].events);
        done++;
    }
    release_retired(r);
    tl_loop_of = outer;
    return done;
}

static void *
loop_main(void *arg)
{
    pf__reactor_t *r = arg;
    bool stop = false;

    while (!stop) {
        pf__reactor_turn(r, true);
        pthread_mutex_lock(&r->tlock);
        stop = r->stop;
        pthread_mutex_unlock(&r->tlock);
    }
    return NULL;
}

/* ---- create, destroy --------------------------------------------------- */

int
pf__reactor_init(pf__reactor_t *r, const pf_clock_t *clock, bool embedded)
{
    struct epoll_event ev;
    int rc = PF_ESYSTEM;

    r->clock = pf__clock_norm(clock);
    r->manual = pf_clock_is_manual(r->clock);
    r->embedded = embedded;
    r->thread_started = false;
    r->running_timer = NULL;
    r->timers_fired = 0;
    r->stop = false;
    r->retire = NULL;
    r->parked = NULL;
    r->nparked = 0;
    r->clinked = false;
    atomic_init(&r->wake_pending, false);
    pf__timerheap_init(&r->heap);
    r->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (r->epfd < 0) {
        return errno == ENOMEM ? PF_ENOMEM : PF_ESYSTEM;
    }
    r->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (r->efd < 0) {
        goto fail_ep;
    }
    ev.events = EPOLLIN;
    ev.data.ptr = NULL; /* the one registration that is not a pf__fdreg */
    if (epoll_ctl(r->epfd, EPOLL_CTL_ADD, r->efd, &ev) != 0) {
        goto fail_efd;
    }
    if (pthread_mutex_init(&r->tlock, NULL) != 0) {
        goto fail_efd;
    }
    if (pthread_mutex_init(&r->rlock, NULL) != 0) {
        goto fail_tlock;
    }
    if (pf__cond_init(&r->tidle) != 0) {
        goto fail_rlock;
    }
    return 0;
fail_rlock:
    pthread_mutex_destroy(&r->rlock);
fail_tlock:
    pthread_mutex_destroy(&r->tlock);
fail_efd:
    close(r->efd);
fail_ep:
    close(r->epfd);
    return rc;
}

int
pf__reactor_start(pf__reactor_t *r)
{
    if (pthread_create(&r->thread, NULL, loop_main, r) != 0) {
        return PF_ESYSTEM;
    }
    r->thread_started = true;
    return 0;
}

void
pf__reactor_destroy(pf__reactor_t *r)
{
    pthread_mutex_lock(&r->tlock);
    r->stop = true;
    pthread_mutex_unlock(&r->tlock);
    if (r->thread_started) {
        pf__reactor_wake(r);
        pthread_join(r->thread, NULL);
    }
    clock_unwatch(r);
    release_retired(r);
    pf__free(r->parked);
    pf__timerheap_destroy(&r->heap);
    pthread_cond_destroy(&r->tidle);
    pthread_mutex_destroy(&r->rlock);
    pthread_mutex_destroy(&r->tlock);
    close(r->efd);
    close(r->epfd);
}

void
pf__reactor_abandon(pf__reactor_t *r)
{
    /* The heap's array is this process's copy; the timers it points to
     * are owned by their callers. Locks are left as fork() copied them
     * (possibly held by a thread that no longer exists): never touched. */
    pf__free(r->heap.items);
    pf__timerheap_init(&r->heap);
    close(r->efd);
    close(r->epfd);
}
