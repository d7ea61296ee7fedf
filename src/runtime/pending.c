/* Asynchronous states: completions, and the timer and fd providers.
 *
 * A completion is the record of one pending attempt. Its phase is claimed
 * exactly once, by a compare-and-swap out of PENDING: to COMPLETED by
 * pf_completion_complete (the provider, any thread), or to ABORTING by the
 * runtime (the attempt's timer, a cancellation, or the state's own thread
 * when it gave up on the work), which then calls the provider's abort and
 * moves on to ABORTED. The claimer hands the slot back to the scheduler;
 * every loser changes nothing. The abort's reason is in the phase itself,
 * so a late completion reads it without a race.
 *
 * Memory: two references, the runtime's (dropped when the attempt's end
 * takes the record back, schedule.c) and the provider's (dropped by
 * pf_completion_free). The run and slot the record points to are touched
 * only by the claimer, before it resumes the slot: until then the
 * attempt, and so the run, cannot end. pf_completion_free waits for an
 * abort under way to return, so a provider may free abort_arg after it.
 *
 * Providers (pf_ctx_sleep, pf_ctx_wait_fd) are a one-shot wait of the
 * executor (pf_executor_wait_timer / _fd) completing the record. Their
 * own record, a waiter, has two references: the starting thread's and
 * the wait's completion callback's; the last one frees the completion
 * handle and the wait handle. The abort may run before the wait has a
 * handle: it raises abort_req, and the starter, having published the
 * handle, looks at abort_req (both seq_cst: one of the two sees the
 * other) and aborts the wait itself. */
#include <math.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "puffinflow/agent.h"
#include "puffinflow/context.h"
#include "puffinflow/error.h"
#include "puffinflow/executor.h"

#include "completion_impl.h"
#include "context_impl.h"
#include "mem.h"
#include "run_impl.h"
#include "schedule_impl.h"

enum {
    C_PENDING = 0,
    C_COMPLETED,
    C_ABORTING_TIMEDOUT,
    C_ABORTING_CANCELED,
    C_ABORTED_TIMEDOUT,
    C_ABORTED_CANCELED
};

/* abort, abort_arg, run and state are immutable. result and retry_after
 * are written by the
 * claimer of COMPLETED before it resumes the slot (the park word's hand-
 * over publishes it to the thread that reads it). */
struct pf_completion {
    _Atomic int phase;
    _Atomic int refs;
    int result;
    double retry_after; /* written with result; < 0 = none */
    pf_abort_fn abort;
    void *abort_arg;
    pf__run_t *run;
    uint32_t state;
};

static void
completion_unref(pf_completion_t *c)
{
    /* acq_rel: the last one sees the other side's writes. */
    if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1) {
        pf__free(c);
    }
}

bool
pf__completion_abort(pf_completion_t *c, int reason)
{
    bool timedout = reason == PF_ETIMEDOUT;
    int expected = C_PENDING;

    if (!atomic_compare_exchange_strong_explicit(
            &c->phase, &expected,
            timedout ? C_ABORTING_TIMEDOUT : C_ABORTING_CANCELED,
            memory_order_acq_rel, memory_order_acquire)) {
        return false;
    }
    if (c->abort != NULL) {
        c->abort(c->abort_arg);
    }
    /* Release: pf_completion_free, seeing ABORTED, may free abort_arg. */
    atomic_store_explicit(&c->phase,
                          timedout ? C_ABORTED_TIMEDOUT : C_ABORTED_CANCELED,
                          memory_order_release);
    return true;
}

static int
reason_of(int phase)
{
    switch (phase) {
    case C_ABORTING_TIMEDOUT:
    case C_ABORTED_TIMEDOUT:
        return PF_ETIMEDOUT;
    case C_ABORTING_CANCELED:
    case C_ABORTED_CANCELED:
        return PF_ECANCELED;
    default:
        return PF_ESTATE;
    }
}

int
pf__completion_result(const pf_completion_t *c)
{
    int phase = atomic_load_explicit(&c->phase, memory_order_acquire);

    return phase == C_COMPLETED ? c->result : reason_of(phase);
}

double
pf__completion_retry_after(const pf_completion_t *c)
{
    int phase = atomic_load_explicit(&c->phase, memory_order_acquire);

    return phase == C_COMPLETED ? c->retry_after : -1.0;
}

void
pf__completion_unref(pf_completion_t *c)
{
    completion_unref(c);
}

int
pf_ctx_pending(pf_ctx_t *ctx, pf_abort_fn abort, void *abort_arg,
               pf_completion_t **out)
{
    pf__run_t *r;
    pf__slot_t *s;
    pf_completion_t *c;

    if (ctx == NULL || out == NULL || ctx->run == NULL) {
        return PF_EINVAL;
    }
    r = ctx->run;
    s = &r->slots[ctx->state];
    if (!ctx->may_pend ||
        atomic_load_explicit(&s->completion, memory_order_relaxed) != NULL) {
        return PF_ESTATE;
    }
    /* An attempt with a deadline of its own needs its token's timer: it is
     * what aborts the work at that deadline (the run's deadline cancels
     * the run, which aborts it too). */
    if (ctx->deadline_ns != PF_DEADLINE_NEVER_NS && pf_ctx_token(ctx) == NULL) {
        return PF_ENOMEM;
    }
    c = pf__malloc(sizeof(*c));
    if (c == NULL) {
        return PF_ENOMEM;
    }
    atomic_init(&c->phase, C_PENDING);
    atomic_init(&c->refs, 2);
    c->result = 0;
    c->retry_after = -1.0;
    c->abort = abort;
    c->abort_arg = abort_arg;
    c->run = r;
    c->state = ctx->state;
    pf__sched_pend(r, s, c);
    *out = c;
    return 0;
}

int
pf_completion_complete(pf_completion_t *c, int result)
{
    return pf_completion_complete_after(c, result, -1.0);
}

int
pf_completion_complete_after(pf_completion_t *c, int result,
                             double retry_after)
{
    int expected = C_PENDING;

    if (c == NULL || result == PF_PENDING || isnan(retry_after)) {
        return PF_EINVAL;
    }
    if (!atomic_compare_exchange_strong_explicit(
            &c->phase, &expected, C_COMPLETED, memory_order_acq_rel,
            memory_order_acquire)) {
        return reason_of(expected);
    }
    c->result = result;
    c->retry_after = retry_after;
    pf__sched_completed(c->run, c->state);
    return 0;
}

void
pf_completion_free(pf_completion_t *c)
{
    if (c == NULL) {
        return;
    }
    /* An abort under way uses abort_arg until it returns; it is short (an
     * abort never waits for the work). */
    while (atomic_load_explicit(&c->phase, memory_order_acquire) ==
               C_ABORTING_TIMEDOUT ||
           atomic_load_explicit(&c->phase, memory_order_acquire) ==
               C_ABORTING_CANCELED) {
        sched_yield();
    }
    completion_unref(c);
}

/* ---- providers: a timer or an fd on the executor's reactor --------------- */

typedef struct waiter {
    pf_completion_t *c;
    _Atomic(pf_wait_t *) w;
    atomic_bool abort_req;
    _Atomic int refs;
} waiter_t;

static void
waiter_unref(waiter_t *p)
{
    if (atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) != 1) {
        return;
    }
    /* The completion first: it waits for an abort under way, which may
     * still use the wait handle. */
    pf_completion_free(p->c);
    pf_wait_free(atomic_load_explicit(&p->w, memory_order_relaxed));
    pf__free(p);
}

static void
waiter_abort(void *arg)
{
    waiter_t *p = arg;

    atomic_store_explicit(&p->abort_req, true, memory_order_seq_cst);
    pf_wait_abort(atomic_load_explicit(&p->w, memory_order_seq_cst));
}

static void
waiter_done(int result, void *arg)
{
    waiter_t *p = arg;

    /* Refused when the attempt was aborted: nothing to do then. */
    (void)pf_completion_complete(p->c, result);
    waiter_unref(p);
}

typedef struct wait_req {
    bool fd_wait;
    int fd;
    unsigned events;
    double seconds;
} wait_req_t;

static int
start_wait(pf_ctx_t *ctx, const wait_req_t *q)
{
    pf__run_t *r = ctx->run;
    waiter_t *p = pf__malloc(sizeof(*p));
    pf_wait_t *w = NULL;
    int rc;

    if (p == NULL) {
        return PF_ENOMEM;
    }
    atomic_init(&p->w, NULL);
    atomic_init(&p->abort_req, false);
    atomic_init(&p->refs, 2);
    rc = pf_ctx_pending(ctx, waiter_abort, p, &p->c);
    if (rc != 0) {
        pf__free(p);
        return rc;
    }
    if (q->fd_wait) {
        rc = pf_executor_wait_fd(r->ex, q->fd, q->events, NULL, waiter_done, p,
                                 &w);
    } else {
        rc = pf_executor_wait_timer(r->ex, q->seconds, waiter_done, p, &w);
    }
    if (rc != 0) {
        /* Nothing started: take the pending back, report the error. */
        pf__sched_unpend(r, &r->slots[ctx->state]);
        pf_completion_free(p->c);
        pf__free(p);
        return rc;
    }
    atomic_store_explicit(&p->w, w, memory_order_seq_cst);
    if (atomic_load_explicit(&p->abort_req, memory_order_seq_cst)) {
        pf_wait_abort(w); /* the abort came before the handle */
    }
    waiter_unref(p);
    return PF_PENDING;
}

int
pf_ctx_retry_after(pf_ctx_t *ctx, double seconds)
{
    if (ctx == NULL || ctx->run == NULL || !ctx->may_pend ||
        !(seconds >= 0.0)) {
        return PF_EINVAL;
    }
    ctx->retry_after = seconds;
    return 0;
}

int
pf_ctx_sleep(pf_ctx_t *ctx, double seconds)
{
    wait_req_t q = {false, -1, 0, seconds};

    if (ctx == NULL || ctx->run == NULL || !(seconds >= 0.0)) {
        return PF_EINVAL;
    }
    return start_wait(ctx, &q);
}

int
pf_ctx_wait_fd(pf_ctx_t *ctx, int fd, unsigned events)
{
    wait_req_t q = {true, fd, events, 0.0};

    if (ctx == NULL || ctx->run == NULL || fd < 0 || events == 0 ||
        (events & ~(PF_WAIT_READABLE | PF_WAIT_WRITABLE)) != 0) {
        return PF_EINVAL;
    }
    return start_wait(ctx, &q);
}
