/* One-shot waits on the executor's reactor: a timer, or an fd with an
 * optional deadline, that completes exactly once (ready, timed out or
 * aborted) by running its callback on a worker. Modelled on nng's aio.
 *
 * Exactly once: a wait is PENDING until one party claims it with a CAS to
 * DONE: the fd's event or the timer (on the loop), pf_wait_abort (any
 * thread) or the executor's shutdown. Only the claimer finishes it: it
 * takes the fd out of the epoll set, withdraws the timer, and queues the
 * completion task, which calls done(result, arg). A loser does nothing.
 *
 * Memory: the record is freed when its last reference goes. References,
 * each dropped by exactly one party:
 *   - owner:      held when the starter asked for the handle (*out); dropped
 *                 by pf_wait_free;
 *   - completion: dropped after done returns (or by a start that fails);
 *   - timer:      held while the timer is armed; dropped by whoever retires
 *                 it: the timer callback when it fired, else the finisher
 *                 whose cancel withdrew it;
 *   - fd:         held while the fd is registered; dropped on the loop by
 *                 the registration's release, once no batch of events can
 *                 still point at it.
 * So an abort racing a completion, or a late event after a timeout, always
 * finds valid memory, and pf_wait_abort on a wait that has completed only
 * reads its phase.
 *
 * Shutdown: pf_executor_free closes the set: no new wait starts, every
 * pending one is claimed and finished with PF_ECANCELED, and the close
 * waits for finishes that other threads have begun (`finishing`), since a
 * finisher still uses the executor after its claim. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/epoll.h>

#include "puffinflow/error.h"
#include "puffinflow/executor.h"
#include "puffinflow/types.h"

#include "clock_impl.h"
#include "executor_impl.h"
#include "mem.h"
#include "reactor.h"
#include "timeutil.h"
#include "wait.h"
#include "waits.h"

enum { WAIT_PENDING = 0, WAIT_DONE = 1 };

/* Fields up to `fd` are immutable after start. Links are under the set's
 * lock; phase and refs are atomic; result is written by the claimer before
 * it queues the task (the queue's lock publishes it). */
struct pf_wait {
    pf_executor_t *ex;
    pf_wait_fn done;
    void *arg;
    bool has_timer;
    bool has_fd;
    pf__timer_t timer;
    pf__fdreg_t reg;
    pf__task_t task;
    struct pf_wait *lnext;
    struct pf_wait *lprev;
    struct pf_wait *cnext; /* on pf__waitset_close's own list */
    bool linked;
    _Atomic int phase;
    _Atomic int refs;
    int result;
};

#define WAIT_OF(p, field) \
    ((pf_wait_t *)(void *)((char *)(p) - offsetof(pf_wait_t, field)))

/* ---- the set ----------------------------------------------------------- */

int
pf__waitset_init(pf__waitset_t *ws)
{
    ws->live = NULL;
    ws->pending = 0;
    ws->finishing = 0;
    ws->closing = false;
    if (pthread_mutex_init(&ws->lock, NULL) != 0) {
        return PF_ESYSTEM;
    }
    if (pf__cond_init(&ws->drained) != 0) {
        pthread_mutex_destroy(&ws->lock);
        return PF_ESYSTEM;
    }
    return 0;
}

void
pf__waitset_destroy(pf__waitset_t *ws)
{
    pthread_cond_destroy(&ws->drained);
    pthread_mutex_destroy(&ws->lock);
}

uint64_t
pf__waitset_pending(pf__waitset_t *ws)
{
    uint64_t n;

    pthread_mutex_lock(&ws->lock);
    n = ws->pending;
    pthread_mutex_unlock(&ws->lock);
    return n;
}

/* Under the set's lock. */
static void
link_wait(pf__waitset_t *ws, pf_wait_t *w)
{
    w->lprev = NULL;
    w->lnext = ws->live;
    if (ws->live != NULL) {
        ws->live->lprev = w;
    }
    ws->live = w;
    w->linked = true;
    ws->pending++;
}

/* Under the set's lock. */
static void
unlink_wait(pf__waitset_t *ws, pf_wait_t *w)
{
    if (!w->linked) {
        return;
    }
    if (w->lprev != NULL) {
        w->lprev->lnext = w->lnext;
    } else {
        ws->live = w->lnext;
    }
    if (w->lnext != NULL) {
        w->lnext->lprev = w->lprev;
    }
    w->linked = false;
    ws->pending--;
}

/* ---- references and the claim ------------------------------------------ */

static void
unref(pf_wait_t *w)
{
    /* acq_rel: the last holder sees every other holder's writes. */
    if (atomic_fetch_sub_explicit(&w->refs, 1, memory_order_acq_rel) == 1) {
        pf__free(w);
    }
}

/* True for the one caller that moves w from PENDING to DONE. Acquire so
 * the claimer sees the start's writes; the start published them with the
 * release of its locks before any party could see w. */
static bool
claim(pf_wait_t *w)
{
    int expected = WAIT_PENDING;

    return atomic_compare_exchange_strong_explicit(
        &w->phase, &expected, WAIT_DONE, memory_order_acq_rel,
        memory_order_acquire);
}

static void
run_done(pf__task_t *t)
{
    pf_wait_t *w = WAIT_OF(t, task);

    w->done(w->result, w->arg);
    unref(w);
}

/* The claimer's work. from_timer: called from w's own timer callback,
 * which drops the timer's reference itself. */
static void
finish(pf_wait_t *w, int result, bool from_timer)
{
    pf_executor_t *ex = w->ex;
    pf__waitset_t *ws = pf__exec_waitset(ex);
    pf__reactor_t *r = pf__exec_reactor(ex);

    pthread_mutex_lock(&ws->lock);
    ws->finishing++;
    unlink_wait(ws, w);
    pthread_mutex_unlock(&ws->lock);
    w->result = result;
    if (w->has_fd) {
        pf__reactor_fd_retire(r, &w->reg);
    }
    if (w->has_timer && !from_timer && pf__reactor_timer_cancel(r, &w->timer)) {
        unref(w);
    }
    pf__exec_push(ex, &w->task); /* w may be gone from here on */
    pthread_mutex_lock(&ws->lock);
    ws->finishing--;
    if (ws->closing && ws->finishing == 0) {
        pthread_cond_broadcast(&ws->drained);
    }
    pthread_mutex_unlock(&ws->lock);
}

static void
on_timer(pf__timer_t *t)
{
    pf_wait_t *w = WAIT_OF(t, timer);

    if (claim(w)) {
        finish(w, w->has_fd ? PF_ETIMEDOUT : 0, true);
    }
    unref(w);
}

static void
on_ready(pf__fdreg_t *reg, uint32_t events)
{
    pf_wait_t *w = WAIT_OF(reg, reg);

    (void)events; /* readiness, hang-up or error: the caller's I/O says */
    if (claim(w)) {
        finish(w, 0, false);
    }
}

static void
on_release(pf__fdreg_t *reg)
{
    unref(WAIT_OF(reg, reg));
}

void
pf__waitset_close(pf__waitset_t *ws)
{
    pf_wait_t *mine = NULL;
    pf_wait_t *w;

    pthread_mutex_lock(&ws->lock);
    ws->closing = true;
    /* Claim every pending wait; ones claimed elsewhere are being finished
     * and stay linked until their finisher unlinks them. */
    for (w = ws->live; w != NULL; w = w->lnext) {
        if (claim(w)) {
            w->cnext = mine;
            mine = w;
        }
    }
    pthread_mutex_unlock(&ws->lock);
    while (mine != NULL) {
        pf_wait_t *next = mine->cnext;

        finish(mine, PF_ECANCELED, false);
        mine = next;
    }
    pthread_mutex_lock(&ws->lock);
    while (ws->finishing > 0 || ws->live != NULL) {
        pthread_cond_wait(&ws->drained, &ws->lock);
    }
    pthread_mutex_unlock(&ws->lock);
}

/* ---- start ------------------------------------------------------------- */

/* Undo a start that failed after w became visible to the set: claim it
 * (false: it completed meanwhile, and the start must report success), take
 * it out, and drop the references nobody else will drop. */
static bool
abandon(pf_wait_t *w, pf_wait_t **out, pf_wait_t *old_out)
{
    pf__waitset_t *ws = pf__exec_waitset(w->ex);

    if (!claim(w)) {
        return false;
    }
    pthread_mutex_lock(&ws->lock);
    unlink_wait(ws, w);
    if (ws->closing) {
        pthread_cond_broadcast(&ws->drained);
    }
    pthread_mutex_unlock(&ws->lock);
    if (out != NULL) {
        *out = old_out;
        unref(w); /* the owner's */
    }
    if (w->has_fd) {
        pf__reactor_fd_retire(pf__exec_reactor(w->ex), &w->reg);
    }
    unref(w); /* the completion's: done never runs */
    return true;
}

static int
start(pf_executor_t *ex, int fd, uint32_t events, int64_t at,
      pf_wait_fn done, void *arg, pf_wait_t **out)
{
    pf__waitset_t *ws = pf__exec_waitset(ex);
    pf_wait_t *old_out = out == NULL ? NULL : *out;
    pf_wait_t *w;
    int rc;

    w = pf__calloc(1, sizeof(*w));
    if (w == NULL) {
        return PF_ENOMEM;
    }
    w->ex = ex;
    w->done = done;
    w->arg = arg;
    w->has_fd = fd >= 0;
    w->has_timer = at != PF_DEADLINE_NEVER_NS;
    pf__timer_init(&w->timer, on_timer);
    w->reg.fn = on_ready;
    w->reg.release = on_release;
    w->task.fn = run_done;
    w->task.prio = PF_PRIORITY_NORMAL;
    w->task.group = NULL;
    atomic_init(&w->phase, WAIT_PENDING);
    atomic_init(&w->refs, out == NULL ? 1 : 2);
    pthread_mutex_lock(&ws->lock);
    if (ws->closing) {
        pthread_mutex_unlock(&ws->lock);
        pf__free(w);
        return PF_ESTATE;
    }
    link_wait(ws, w);
    pthread_mutex_unlock(&ws->lock);
    /* Before the wait can complete: done may look for the handle. */
    if (out != NULL) {
        *out = w;
    }
    if (w->has_fd) {
        atomic_fetch_add_explicit(&w->refs, 1, memory_order_relaxed);
        rc = pf__reactor_fd_add(pf__exec_reactor(ex), &w->reg, fd, events);
        if (rc != 0) {
            /* Not registered: nothing else can have seen w. */
            pthread_mutex_lock(&ws->lock);
            unlink_wait(ws, w);
            pthread_mutex_unlock(&ws->lock);
            if (out != NULL) {
                *out = old_out;
            }
            pf__free(w);
            return rc;
        }
    }
    if (w->has_timer) {
        atomic_fetch_add_explicit(&w->refs, 1, memory_order_relaxed);
        rc = pf__reactor_timer_arm(pf__exec_reactor(ex), &w->timer, at);
        if (rc != 0) {
            /* A finisher's cancel of the idle timer returns false and
             * drops nothing: the timer's reference goes here. */
            unref(w);
            return abandon(w, out, old_out) ? rc : 0;
        }
    }
    return 0;
}

static uint32_t
epoll_events(unsigned events)
{
    uint32_t e = 0;

    if (events & PF_WAIT_READABLE) {
        e |= EPOLLIN;
    }
    if (events & PF_WAIT_WRITABLE) {
        e |= EPOLLOUT;
    }
    return e;
}

int
pf_executor_wait_fd(pf_executor_t *ex, int fd, unsigned events,
                    const pf_deadline_t *deadline, pf_wait_fn done, void *arg,
                    pf_wait_t **out)
{
    const pf_clock_t *clock;

    if (ex == NULL || done == NULL || fd < 0 || events == 0 ||
        (events & ~(unsigned)(PF_WAIT_READABLE | PF_WAIT_WRITABLE)) != 0) {
        return PF_EINVAL;
    }
    clock = pf_executor_clock(ex);
    return start(ex, fd, epoll_events(events),
                 pf__deadline_on(deadline, clock, pf_clock_now_ns(clock)),
                 done, arg, out);
}

int
pf_executor_wait_timer(pf_executor_t *ex, double seconds, pf_wait_fn done,
                       void *arg, pf_wait_t **out)
{
    int64_t ns;
    int64_t at;

    if (ex == NULL || done == NULL || pf__secs_to_ns(seconds, &ns) != 0) {
        return PF_EINVAL;
    }
    at = ns == INT64_MAX
             ? PF_DEADLINE_NEVER_NS
             : pf__add_sat(pf_clock_now_ns(pf_executor_clock(ex)), ns);
    return start(ex, -1, 0, at, done, arg, out);
}

int
pf_executor_wait_until(pf_executor_t *ex, const pf_deadline_t *at,
                       pf_wait_fn done, void *arg, pf_wait_t **out)
{
    const pf_clock_t *clock;

    if (ex == NULL || done == NULL || at == NULL) {
        return PF_EINVAL;
    }
    clock = pf_executor_clock(ex);
    return start(ex, -1, 0, pf__deadline_on(at, clock, pf_clock_now_ns(clock)),
                 done, arg, out);
}

/* ---- the owner's face -------------------------------------------------- */

void
pf_wait_abort(pf_wait_t *w)
{
    if (w != NULL && claim(w)) {
        finish(w, PF_ECANCELED, false);
    }
}

bool
pf_wait_ended(const pf_wait_t *w)
{
    return w != NULL &&
           atomic_load_explicit(&w->phase, memory_order_acquire) == WAIT_DONE;
}

void
pf_wait_free(pf_wait_t *w)
{
    if (w != NULL) {
        unref(w);
    }
}
