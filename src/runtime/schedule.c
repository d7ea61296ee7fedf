/* The scheduler: how a run's slots are driven.
 *
 * A slot is an activation of its state: it is claimed at most once per
 * run (the move IDLE -> READY: a compare-and-swap for a goto, the last
 * decrement of its dependency count for depends_on), then driven by one
 * thread at a time through the phases of slot_impl.h.
 *
 * Driving. pf__sched_drive runs a state through its gates (rate limit,
 * bulkhead, breaker), calls it, retries it, ends it, and claims its
 * successors: when exactly one is claimed the same thread goes on with it
 * at once (no queue, no lock, no atomic but the claim); several are
 * counted into the run's `active` count and all but the first of the
 * highest priority are queued on the executor as tasks of the run's
 * group, which the thread waiting for the run takes and runs itself when
 * it has nothing else to do. `active` counts activations not yet ended
 * (ready, running or waiting); the thread that brings it to zero is told
 * so, and run.c ends the run.
 *
 * Waiting. A retry delay or a rate-limit delay parks the slot on a timer;
 * a full bulkhead parks it on a ticket in the bulkhead's queue (with a
 * timer for the wait limit). Nothing sleeps. The slot's phase says what
 * it waits for (slot_impl.h has the table of phases); its `park` word
 * says who holds it: the driving thread sets QUEUED, arms the timer or
 * queues the ticket, then moves QUEUED -> PARKED (publish_park); whoever
 * resumes it (a timer firing, a bulkhead grant, a cancellation that took
 * the timer or ticket back) moves PARKED -> OWNED and queues its task,
 * or, finding QUEUED, leaves EARLY for the driving thread to go on by
 * itself. Exactly one resumer exists per park: a timer either fires or is
 * cancelled, a ticket either is granted or is cancelled. The resumer
 * leaves what it knows in the slot (a grant: in_bulkhead); the phase is
 * moved only by the thread driving the slot.
 *
 * Pending work. A state that returns PF_PENDING after pf_ctx_pending
 * parks its slot in PENDING the same way; pf_ctx_pending already set the
 * park word to QUEUED, because the work may complete (or its deadline
 * abort it) before the state's function returns. The one resumer is
 * whoever claims the completion record (pending.c): the provider's
 * completion, or an abort by the slot's timer (the attempt's own
 * deadline) or by a cancellation. The resumed thread ends the attempt as
 * a synchronous one ends after its call (end_attempt): bulkhead, breaker,
 * leak tracking, timeout, then success or after_failure.
 *
 * Cancellation (run.c) sets cancel_reason (seq_cst) and then looks at
 * every slot's park word (seq_cst, pf__sched_cancel_parked); a thread
 * parking a slot reads cancel_reason (seq_cst) after its CAS to PARKED.
 * In the single total order of these operations one of the two sees the
 * other, so a slot parked while the run is cancelled is always taken
 * back. Running states see the flag through pf_ctx_is_cancelled and their
 * token. */
#include <assert.h>
#include <sched.h>
#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "puffinflow/agent.h"
#include "puffinflow/error.h"

#include "agent_impl.h"
#include "completion_impl.h"
#include "executor_impl.h"
#include "run_impl.h"
#include "schedule_impl.h"
#include "slot_impl.h"
#include "timeutil.h"
#include "wait.h"

#define NO_TIME INT64_MIN

/* What run_state and the gates tell their caller. PARKED_LAST: parked,
 * and meanwhile every activation of the run ended (this one too, resumed
 * and ended on another thread): the caller must finish the run. */
enum { GO, PARKED, PARKED_LAST, FAILED, ENDED };

static bool
is_parked(int act)
{
    return act == PARKED || act == PARKED_LAST;
}

static void slot_timer_fn(pf__timer_t *t);
static void abort_pending(pf__run_t *r, pf__slot_t *s, int reason);
static int after_failure(pf__run_t *r, pf__slot_t *s, const pf__state_t *d,
                         int rc, int64_t *now);

static pf__slot_t *
slot_of_timer(pf__timer_t *t)
{
    return (pf__slot_t *)((char *)t - offsetof(pf__slot_t, timer));
}

static int64_t
min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* ---- the slot's life ---------------------------------------------------- */

/* The table is what slot_move asserts; with NDEBUG it is not built. */
#ifndef NDEBUG
#define TO(phase) (1u << PF__SLOT_##phase)

/* The moves of the table in slot_impl.h: bit `to` of may_move[from]. */
static const uint16_t may_move[PF__SLOT_PHASES] = {
    [PF__SLOT_IDLE] = TO(READY),
    [PF__SLOT_READY] = TO(READY) | TO(RATE_WAIT) | TO(BULKHEAD_WAIT) |
                       TO(ADMITTED) | TO(RETRY_WAIT) | TO(DONE) | TO(CANCELLED),
    [PF__SLOT_RATE_WAIT] = TO(BULKHEAD_WAIT) | TO(ADMITTED) | TO(READY) |
                           TO(RETRY_WAIT) | TO(DONE) | TO(CANCELLED),
    [PF__SLOT_BULKHEAD_WAIT] =
        TO(ADMITTED) | TO(READY) | TO(RETRY_WAIT) | TO(DONE) | TO(CANCELLED),
    [PF__SLOT_ADMITTED] = TO(RUNNING) | TO(DONE),
    [PF__SLOT_RUNNING] =
        TO(PENDING) | TO(READY) | TO(RETRY_WAIT) | TO(DONE) | TO(CANCELLED),
    [PF__SLOT_PENDING] = TO(READY) | TO(RETRY_WAIT) | TO(DONE) | TO(CANCELLED),
    [PF__SLOT_RETRY_WAIT] = TO(READY) | TO(DONE) | TO(CANCELLED),
    [PF__SLOT_DONE] = 0,
    [PF__SLOT_CANCELLED] = 0,
};

#undef TO

static inline bool
slot_may_move(unsigned from, unsigned to)
{
    return from < PF__SLOT_PHASES && ((may_move[from] >> to) & 1u) != 0;
}
#endif

static inline pf__slot_phase_t
slot_phase(const pf__slot_t *s)
{
    return (pf__slot_phase_t)atomic_load_explicit(&s->phase,
                                                  memory_order_relaxed);
}

/* Move slot s from phase `from` to `to`, a move the table allows: the one
 * function that changes a phase. Every move but the claim (IDLE -> READY)
 * is made by the slot's holder, and a relaxed store suffices: other
 * threads read the phase only of a parked slot (published by the park
 * word's seq_cst hand-over) or from its timer (armed after the move, under
 * the executor's lock). The claim is raced for by the gotos of several
 * states, so it is a compare-and-swap, acq_rel to order it with the run's
 * other claims; it returns false when another thread claimed s first. */
static bool
slot_move(pf__slot_t *s, pf__slot_phase_t from, pf__slot_phase_t to)
{
    uint8_t idle = PF__SLOT_IDLE;

    assert(slot_may_move(from, to));
    if (from == PF__SLOT_IDLE) {
        /* A relaxed look first: most gotos to a claimed state end here. */
        return atomic_load_explicit(&s->phase, memory_order_relaxed) ==
                   PF__SLOT_IDLE &&
               atomic_compare_exchange_strong_explicit(
                   &s->phase, &idle, (uint8_t)to, memory_order_acq_rel,
                   memory_order_relaxed);
    }
    assert(slot_phase(s) == from);
    atomic_store_explicit(&s->phase, (uint8_t)to, memory_order_relaxed);
    return true;
}

/* ---- slots --------------------------------------------------------------- */

void
pf__sched_init_slot(pf__run_t *r, uint32_t i, pf__task_fn task_fn)
{
    pf__slot_t *s = &r->slots[i];

    s->task.fn = task_fn;
    s->task.group = &r->group;
    s->task.prio = r->agent->states[i].prio;
    pf__timer_init(&s->timer, slot_timer_fn);
    s->ctx.run = r;
    s->ctx.state = i;
}

void
pf__sched_reset(pf__run_t *r)
{
    const pf_agent_t *a = r->agent;
    size_t i;

    for (i = 0; i < r->nslots; i++) {
        pf__slot_t *s = &r->slots[i];

        s->ctx.store = r->store;
        s->ctx.attempt = 0;
        s->ctx.deadline_ns = PF_DEADLINE_NEVER_NS;
        s->ctx.token = NULL;
        s->ctx.ngotos = 0;
        s->ctx.goto_error = 0;
        s->ctx.retry_after = -1.0;
        atomic_store_explicit(&s->phase, PF__SLOT_IDLE, memory_order_relaxed);
        atomic_store_explicit(&s->deps_left, a->states[i].ndeps,
                              memory_order_relaxed);
        atomic_store_explicit(&s->park, PF__PARK_OWNED, memory_order_relaxed);
        memset(&s->permit, 0, sizeof(s->permit));
        s->link = PF__NONE;
        s->outcome = PF_STATE_NOT_RUN;
        s->timed_out = false;
        s->fell_back = false;
        s->in_bulkhead = false;
        s->rate_reserved = false;
        s->retry_started = false;
        s->own_token = false;
        atomic_store_explicit(&s->completion, NULL, memory_order_relaxed);
        atomic_store_explicit(&s->aborters, 0, memory_order_relaxed);
        s->error = 0;
        s->attempts = 0;
        s->order = 0;
        s->dl_order = 0;
        s->start_ns = 0;
        s->attempt_start_ns = 0;
        s->end_ns = 0;
        s->failed_at_ns = 0;
        memset(&s->counts, 0, sizeof(s->counts));
    }
    for (i = 0; i < a->nentries; i++) {
        slot_move(&r->slots[a->entries[i]], PF__SLOT_IDLE, PF__SLOT_READY);
    }
}

void
pf__sched_watch_token(pf__run_t *r, pf__slot_t *s, pf_token_t *tok,
                      int64_t at_ns)
{
    s->own_token = true;
    if (pf__run_now(r) >= at_ns) {
        pf_token_cancel(tok); /* raise the flag now: no timer */
        return;
    }
    /* The slot's timer in RUNNING: see slot_timer_fn. It raises the flag and
     * runs the token's callbacks at the deadline. If it cannot be armed the
     * token still counts as cancelled from the deadline on; only callbacks
     * registered on it do not run. */
    pf__exec_timer_arm(r->ex, &s->timer, at_ns);
}

/* ---- parking ------------------------------------------------------------ */

/* Hand a parked slot back to a thread: its task is queued. Called by the
 * one resumer of the current park. */
static void
resume(pf__run_t *r, pf__slot_t *s)
{
    int p = atomic_load_explicit(&s->park, memory_order_seq_cst);

    for (;;) {
        if (p == PF__PARK_QUEUED) {
            if (atomic_compare_exchange_weak_explicit(
                    &s->park, &p, PF__PARK_EARLY, memory_order_seq_cst,
                    memory_order_seq_cst)) {
                return; /* the driving thread goes on by itself */
            }
        } else if (p == PF__PARK_PARKED) {
            if (atomic_compare_exchange_weak_explicit(
                    &s->park, &p, PF__PARK_OWNED, memory_order_seq_cst,
                    memory_order_seq_cst)) {
                pf__exec_push(r->ex, &s->task);
                return;
            }
        } else {
            return;
        }
    }
}

void
pf__sched_cancel_parked(pf__run_t *r, pf__slot_t *s)
{
    if (atomic_load_explicit(&s->park, memory_order_seq_cst) !=
        PF__PARK_PARKED) {
        return;
    }
    /* What it waits for is its phase, stable while it is parked. */
    switch (slot_phase(s)) {
    case PF__SLOT_RATE_WAIT:
    case PF__SLOT_RETRY_WAIT:
        if (pf__exec_timer_cancel(r->ex, &s->timer)) {
            resume(r, s);
        }
        break;
    case PF__SLOT_BULKHEAD_WAIT:
        if (pf_bulkhead_cancel(r->agent->states[s->ctx.state].bulkhead,
                               &s->ticket, PF_ECANCELED)) {
            pf__exec_timer_cancel(r->ex, &s->timer);
            resume(r, s);
        }
        break;
    case PF__SLOT_PENDING:
        abort_pending(
            r, s,
            atomic_load_explicit(&r->cancel_reason, memory_order_seq_cst));
        break;
    default:
        break;
    }
}

/* ---- pending work -------------------------------------------------------- */

/* Abort the pending work of s, if it has some and nobody claimed it yet,
 * and resume s. From the slot's timer (reason PF_ETIMEDOUT) or a
 * cancellation (the run's reason), on any thread, no lock held. The
 * aborters count keeps the record alive while it is looked at: the
 * attempt's end waits for it to fall to 0 (take_completion). */
static void
abort_pending(pf__run_t *r, pf__slot_t *s, int reason)
{
    pf_completion_t *c;

    atomic_fetch_add_explicit(&s->aborters, 1, memory_order_seq_cst);
    c = atomic_load_explicit(&s->completion, memory_order_seq_cst);
    if (c != NULL && pf__completion_abort(c, reason)) {
        resume(r, s);
    }
    /* Release: the taker, seeing 0, sees this thread done with s. */
    atomic_fetch_sub_explicit(&s->aborters, 1, memory_order_release);
}

void
pf__sched_pend(pf__run_t *r, pf__slot_t *s, pf_completion_t *c)
{
    (void)r;
    /* QUEUED first: a completion or abort that sees the record finds the
     * slot being set up and leaves EARLY (resume). */
    atomic_store_explicit(&s->park, PF__PARK_QUEUED, memory_order_seq_cst);
    atomic_store_explicit(&s->completion, c, memory_order_seq_cst);
}

void
pf__sched_completed(pf__run_t *r, uint32_t state)
{
    resume(r, &r->slots[state]);
}

/* Take the record of the ended pending work of s back: no aborter looks
 * at it any more (seq_cst with abort_pending: an aborter either sees NULL
 * or is counted and waited for). Returns how the work ended. */
static int
take_completion(pf__slot_t *s)
{
    pf_completion_t *c =
        atomic_exchange_explicit(&s->completion, NULL, memory_order_seq_cst);
    int rc;

    while (atomic_load_explicit(&s->aborters, memory_order_seq_cst) != 0) {
        sched_yield(); /* an aborter that lost its claim: a few loads */
    }
    rc = pf__completion_result(c);
    if (pf__completion_retry_after(c) >= 0.0) {
        s->ctx.retry_after = pf__completion_retry_after(c);
    }
    pf__completion_unref(c);
    return rc;
}

/* The state's function made its work pending and is giving up on it
 * (pf__sched_unpend, or it returned a result of its own): abort the work
 * unless a completion or abort claimed it first, and wait for that
 * claimer's hand-over (it resumes s, finding it QUEUED, and is then done
 * with it). Returns how the work ended. */
static int
withdraw_pending(pf__slot_t *s)
{
    pf_completion_t *c =
        atomic_load_explicit(&s->completion, memory_order_relaxed);

    if (!pf__completion_abort(c, PF_ECANCELED)) {
        while (atomic_load_explicit(&s->park, memory_order_seq_cst) ==
               PF__PARK_QUEUED) {
            sched_yield();
        }
    }
    atomic_store_explicit(&s->park, PF__PARK_OWNED, memory_order_relaxed);
    return take_completion(s);
}

void
pf__sched_unpend(pf__run_t *r, pf__slot_t *s)
{
    (void)r;
    (void)withdraw_pending(s);
}

/* Publish the park of s, set up under QUEUED: QUEUED -> PARKED. Returns
 * GO when it was resumed while being set up (the caller goes on), else
 * PARKED or PARKED_LAST. Once published, the slot may be resumed, driven
 * and ended on another thread at any moment, and the run with it; so this
 * thread holds an extra count of the run's activations while it still
 * looks at the run (its cancel_reason, then maybe the slot), and drops it
 * last. Nothing of the slot or the run is touched after that. */
static int
publish_park(pf__run_t *r, pf__slot_t *s)
{
    int p = PF__PARK_QUEUED;

    /* Relaxed: the seq_cst swap below publishes it with the park, so the
     * activation's end, wherever it happens, comes after it. */
    atomic_fetch_add_explicit(&r->active, 1, memory_order_relaxed);
    if (!atomic_compare_exchange_strong_explicit(&s->park, &p, PF__PARK_PARKED,
                                                 memory_order_seq_cst,
                                                 memory_order_seq_cst)) {
        /* EARLY. Never the last count: this activation is still going. */
        atomic_fetch_sub_explicit(&r->active, 1, memory_order_relaxed);
        atomic_store_explicit(&s->park, PF__PARK_OWNED, memory_order_relaxed);
        return GO;
    }
    /* The run may have been cancelled meanwhile (see the top of the file). */
    if (atomic_load_explicit(&r->cancel_reason, memory_order_seq_cst) != 0) {
        pf__sched_cancel_parked(r, s);
    }
    /* acq_rel, as every end of an activation (dispatch). */
    return atomic_fetch_sub_explicit(&r->active, 1, memory_order_acq_rel) == 1
               ? PARKED_LAST
               : PARKED;
}

/* Park s, already moved to RATE_WAIT or RETRY_WAIT, until at_ns
 * (executor clock). Returns PARKED or PARKED_LAST, GO (it was resumed
 * while being parked: go on) or FAILED (no memory for the timer). */
static int
park_timer(pf__run_t *r, pf__slot_t *s, int64_t at_ns)
{
    atomic_store_explicit(&s->park, PF__PARK_QUEUED, memory_order_seq_cst);
    if (pf__exec_timer_arm(r->ex, &s->timer, at_ns) != 0) {
        atomic_store_explicit(&s->park, PF__PARK_OWNED, memory_order_relaxed);
        return FAILED;
    }
    return publish_park(r, s);
}

static void
grant_fn(pf_bulkhead_ticket_t *t, void *arg)
{
    pf__slot_t *s = arg;
    pf__run_t *r = s->ctx.run;

    (void)t;
    /* The place is the slot's now; its driver, resumed, sees it here and
     * moves on to ADMITTED. */
    s->in_bulkhead = true;
    /* The wait-limit timer, if armed: when it is firing now, its cancel of
     * the ticket fails (we were granted) and it does nothing. */
    pf__exec_timer_cancel(r->ex, &s->timer);
    resume(r, s);
}

/* Queue s, in phase from (READY or RATE_WAIT), in its bulkhead. GO:
 * inside at once (ADMITTED), or resumed while being parked (BULKHEAD_WAIT:
 * granted, or its wait ran out); PARKED or PARKED_LAST (BULKHEAD_WAIT);
 * FAILED with *err
 * when there is no room or no memory for the wait limit's timer. */
static int
park_ticket(pf__run_t *r, pf__slot_t *s, const pf__state_t *d,
            pf__slot_phase_t from, int *err)
{
    pf_deadline_t limit;
    int64_t at;
    bool entered = false;
    int rc;

    atomic_store_explicit(&s->park, PF__PARK_QUEUED, memory_order_seq_cst);
    rc = pf_bulkhead_enqueue(d->bulkhead, &s->ticket, (pf_priority_t)d->prio,
                             grant_fn, s, &entered);
    if (rc != 0 || entered) {
        atomic_store_explicit(&s->park, PF__PARK_OWNED, memory_order_relaxed);
        *err = PF_EFULL;
        if (rc != 0) {
            return FAILED;
        }
        s->in_bulkhead = true;
        slot_move(s, from, PF__SLOT_ADMITTED);
        return GO;
    }
    /* Before the timer is armed: the timer serves the phase. */
    slot_move(s, from, PF__SLOT_BULKHEAD_WAIT);
    limit = pf_bulkhead_ticket_deadline(&s->ticket);
    at = pf__deadline_on(&limit, r->clock, pf__run_now(r));
    if (at != PF_DEADLINE_NEVER_NS &&
        pf__exec_timer_arm(r->ex, &s->timer, at) != 0 &&
        pf_bulkhead_cancel(d->bulkhead, &s->ticket, PF_ENOMEM)) {
        atomic_store_explicit(&s->park, PF__PARK_OWNED, memory_order_relaxed);
        *err = PF_ENOMEM;
        return FAILED;
    }
    rc = publish_park(r, s);
    if (rc == GO) {
        /* Granted (or timed out) while being set up: withdraw the timer. */
        pf__exec_timer_cancel(r->ex, &s->timer);
    }
    return rc;
}

/* The slot's one timer; what it does is given by the phase it serves,
 * which does not change while the timer is armed (each phase's way out
 * withdraws it first). */
static void
slot_timer_fn(pf__timer_t *t)
{
    pf__slot_t *s = slot_of_timer(t);
    pf__run_t *r = s->ctx.run;

    switch (slot_phase(s)) {
    case PF__SLOT_RATE_WAIT:
    case PF__SLOT_RETRY_WAIT:
        resume(r, s); /* the delay is over */
        break;
    case PF__SLOT_BULKHEAD_WAIT:
        /* The wait limit ran out, unless a grant came first. */
        if (pf_bulkhead_cancel(r->agent->states[s->ctx.state].bulkhead,
                               &s->ticket, PF_EFULL)) {
            resume(r, s);
        }
        break;
    case PF__SLOT_RUNNING:
    case PF__SLOT_PENDING:
        pf_token_cancel(s->ctx.token);     /* the attempt's own deadline */
        abort_pending(r, s, PF_ETIMEDOUT); /* its work, if it has some */
        break;
    default:
        break;
    }
}

/* ---- ending a state ------------------------------------------------------ */

/* End the state: DONE, or CANCELLED for outcome PF_STATE_CANCELLED. */
static void
end_state(pf__run_t *r, pf__slot_t *s, int outcome, int error)
{
    slot_move(s, slot_phase(s),
              outcome == PF_STATE_CANCELLED ? PF__SLOT_CANCELLED
                                            : PF__SLOT_DONE);
    s->outcome = (uint8_t)outcome;
    s->error = error;
    s->order =
        atomic_fetch_add_explicit(&r->order_seq, 1, memory_order_relaxed) + 1;
}

/* Give back what the gates took for an attempt that will not be made. */
static void
release_gates(pf__slot_t *s, const pf__state_t *d)
{
    if (s->in_bulkhead) {
        pf_bulkhead_leave(d->bulkhead);
        s->in_bulkhead = false;
    }
    if (s->rate_reserved) {
        pf_ratelimit_refund(d->ratelimit, 1);
        s->rate_reserved = false;
    }
}

static void
end_failed(pf__run_t *r, pf__slot_t *s, const pf__state_t *d, int error)
{
    end_state(r, s, PF_STATE_FAILED, error);
    if (d->dead_letter) {
        s->failed_at_ns = pf_wall_time_ns();
        s->dl_order =
            atomic_fetch_add_explicit(&r->dl_seq, 1, memory_order_relaxed) + 1;
        pf__run_emit(r, PF_AGENT_EVENT_DEAD_LETTER, s->ctx.state, error,
                     s->attempts, 0.0);
    }
}

/* Withdraw the attempt's token (and its timer) once the state's code has
 * returned. */
static void
drop_token(pf__run_t *r, pf__slot_t *s)
{
    pf_ctx_t *ctx = &s->ctx;

    if (ctx->token == NULL) {
        return;
    }
    if (s->own_token) {
        /* Its timer cancels it at the deadline: withdraw that first (and
         * wait for it if it is firing) before the token goes. */
        pf__exec_timer_cancel(r->ex, &s->timer);
        pf_token_free(ctx->token);
        s->own_token = false;
    }
    ctx->token = NULL;
}

/* The state was rejected (reason PF_EOPEN) or failed for good: its
 * fallback takes over, or it fails. */
static void
fall_back_or_fail(pf__run_t *r, pf__slot_t *s, const pf__state_t *d, int reason,
                  bool allowed)
{
    pf_ctx_t *ctx = &s->ctx;
    int rc;

    if (!allowed || (d->fallback == NULL && d->fallback_state == PF__NONE)) {
        end_failed(r, s, d, reason);
        return;
    }
    s->counts.fallbacks++;
    s->fell_back = true;
    pf__run_emit(r, PF_AGENT_EVENT_FALLBACK, ctx->state, reason, s->attempts,
                 0.0);
    if (d->fallback == NULL) {
        end_state(r, s, PF_STATE_FELL_BACK, reason);
        return;
    }
    ctx->ngotos = 0;
    ctx->goto_error = 0;
    ctx->deadline_ns = r->deadline_ns; /* the state's timeout is not its */
    rc = d->fallback(ctx, d->fallback_arg, reason);
    drop_token(r, s);
    if (rc == 0 && ctx->goto_error != 0) {
        rc = ctx->goto_error;
    }
    if (rc == 0) {
        end_state(r, s, PF_STATE_COMPLETED, reason);
    } else {
        end_failed(r, s, d, rc);
    }
}

/* Run the breaker's own fallback, as pf_breaker_call would, with the
 * state's arg: after a rejection (reason PF_EOPEN) or a failure the
 * breaker counted (reason PF_ETIMEDOUT or the result). Returns its result,
 * which stands for the attempt's. */
static int
breaker_fallback(pf__run_t *r, pf__slot_t *s, const pf__state_t *d, int reason)
{
    s->counts.fallbacks++;
    s->fell_back = true;
    pf__run_emit(r, PF_AGENT_EVENT_FALLBACK, s->ctx.state, reason, s->attempts,
                 0.0);
    return d->breaker_fallback(d->arg, reason);
}

/* The breaker rejected the state (PF_EOPEN): no attempt, no retry. */
static void
rejected(pf__run_t *r, pf__slot_t *s, const pf__state_t *d)
{
    int rc;

    release_gates(s, d);
    s->counts.rejections++;
    pf__run_emit(r, PF_AGENT_EVENT_REJECTED, s->ctx.state, PF_EOPEN,
                 s->attempts, 0.0);
    if (d->breaker_fallback == NULL) {
        fall_back_or_fail(r, s, d, PF_EOPEN, true);
        return;
    }
    /* No attempt was made now: an earlier attempt's gotos do not count. */
    s->ctx.ngotos = 0;
    s->ctx.goto_error = 0;
    rc = breaker_fallback(r, s, d, PF_EOPEN);
    if (rc == 0) {
        end_state(r, s, PF_STATE_COMPLETED, PF_EOPEN);
    } else {
        end_failed(r, s, d, rc);
    }
}

/* Give the attempt's result to its breaker, as pf_breaker_call does: a
 * result the breaker counted as a timeout fails the attempt with
 * PF_ETIMEDOUT, whatever it returned; a counted failure or timeout goes to
 * the breaker's fallback, whose result stands for the attempt's (0: the
 * state completes through it, error = the reason). Returns the attempt's
 * result. */
static int
record_breaker(pf__run_t *r, pf__slot_t *s, const pf__state_t *d, int rc)
{
    pf_ctx_t *ctx = &s->ctx;
    pf_breaker_outcome_t out =
        pf_breaker_record_outcome(d->breaker, &s->permit, rc);

    if (out == PF_BREAKER_OUTCOME_TIMEOUT) {
        rc = PF_ETIMEDOUT;
        if (!s->timed_out) { /* past the breaker's timeout, not ours */
            s->timed_out = true;
            s->counts.timeouts++;
            pf__run_emit(r, PF_AGENT_EVENT_TIMEOUT, ctx->state, rc, s->attempts,
                         0.0);
        }
    }
    /* A bad goto is a bug in the definition, not the dependency failing:
     * it is not answered for. */
    if (d->breaker_fallback == NULL || ctx->goto_error != 0 ||
        (out != PF_BREAKER_OUTCOME_TIMEOUT &&
         out != PF_BREAKER_OUTCOME_FAILURE)) {
        return rc;
    }
    s->error = rc;
    return breaker_fallback(r, s, d, rc);
}

/* ---- one attempt --------------------------------------------------------- */

/* The attempt's function returned PF_PENDING, or made its work pending
 * and returned rc: park s in PENDING until the work completes or is
 * aborted (*act PARKED or PARKED_LAST), or, when that has happened
 * already, go on with *act GO. Returns the attempt's result when *act is
 * GO. */
static int
pend_attempt(pf__run_t *r, pf__slot_t *s, int rc, int *act)
{
    pf_ctx_t *ctx = &s->ctx;
    pf_completion_t *c =
        atomic_load_explicit(&s->completion, memory_order_relaxed);

    *act = GO;
    if (c == NULL) {
        return PF_ESTATE; /* PF_PENDING with no pending work */
    }
    if (rc != PF_PENDING) {
        (void)withdraw_pending(s); /* its own result stands */
        return rc;
    }
    /* Its deadline passed before a timer could be armed for it. */
    if (ctx->deadline_ns != PF_DEADLINE_NEVER_NS &&
        pf__run_now(r) >= ctx->deadline_ns &&
        pf__completion_abort(c, PF_ETIMEDOUT)) {
        resume(r, s); /* QUEUED: leaves EARLY, we go on below */
    }
    slot_move(s, PF__SLOT_RUNNING, PF__SLOT_PENDING);
    *act = publish_park(r, s);
    if (*act != GO) {
        return 0; /* nothing of s may be touched now */
    }
    return take_completion(s);
}

/* The attempt has ended with rc, after its function returned or its work
 * completed: what a synchronous call does after the call, done once the
 * work is over (so a pending attempt holds its bulkhead place, breaker
 * permit and leak record to its completion). Returns its result. */
static int
end_attempt(pf__run_t *r, pf__slot_t *s, const pf__state_t *d, int rc,
            int64_t *now)
{
    pf_agent_t *a = r->agent;
    pf_ctx_t *ctx = &s->ctx;
    bool timed = r->timings || d->timeout_ns != 0 ||
                 r->deadline_ns != PF_DEADLINE_NEVER_NS;
    int64_t end = 0;

    if (rc == 0 && ctx->goto_error != 0) {
        rc = ctx->goto_error;
    }
    drop_token(r, s);
    if (d->leak && a->cfg.leak_detector != NULL) {
        pf_leak_detector_track_release_ex(a->cfg.leak_detector, a->name,
                                          d->name, r->id);
    }
    if (timed) {
        end = *now != NO_TIME ? *now : pf__run_now(r);
        *now = end;
    } else {
        *now = NO_TIME;
    }
    s->end_ns = end;
    s->timed_out =
        ctx->deadline_ns != PF_DEADLINE_NEVER_NS && end >= ctx->deadline_ns;
    if (s->timed_out) {
        rc = PF_ETIMEDOUT;
        s->counts.timeouts++;
        pf__run_emit(r, PF_AGENT_EVENT_TIMEOUT, ctx->state, rc, s->attempts,
                     0.0);
    }
    if (s->in_bulkhead) {
        pf_bulkhead_record(d->bulkhead, rc, end - s->attempt_start_ns);
        pf_bulkhead_leave(d->bulkhead);
        s->in_bulkhead = false;
    }
    if (d->breaker != NULL) {
        rc = record_breaker(r, s, d, rc);
    }
    return rc;
}

/* Call the state once: it is inside its bulkhead and holds its breaker
 * permit, if it has them. Returns the attempt's result with *act GO, or
 * *act PARKED / PARKED_LAST when its work is pending (pend_attempt). */
static int
call_attempt(pf__run_t *r, pf__slot_t *s, const pf__state_t *d, int64_t *now,
             int *act)
{
    pf_agent_t *a = r->agent;
    pf_ctx_t *ctx = &s->ctx;
    bool timed = r->timings || d->timeout_ns != 0 ||
                 r->deadline_ns != PF_DEADLINE_NEVER_NS;
    int64_t start = 0;
    int rc;

    *act = GO;
    if (timed) {
        start = *now != NO_TIME ? *now : pf__run_now(r);
    }
    if (s->attempts == 0) {
        s->start_ns = start;
    }
    s->attempt_start_ns = start;
    s->attempts++;
    s->fell_back = false; /* set again if a fallback answers this one */
    ctx->attempt = s->attempts;
    ctx->ngotos = 0;
    ctx->goto_error = 0;
    ctx->retry_after = -1.0;
    ctx->deadline_ns = r->deadline_ns;
    if (d->timeout_ns != 0) {
        ctx->deadline_ns =
            min64(ctx->deadline_ns, pf__add_sat(start, d->timeout_ns));
    }
    if (d->retry_eager && !s->retry_started) {
        pf_retry_start(&d->retry, &s->retry, start);
        s->retry_started = true;
    }
    if (d->leak && a->cfg.leak_detector != NULL) {
        /* Keyed by the run too: runs of this state held at once are
         * tracked apart, so a hung one stays visible. */
        pf_leak_detector_track_allocation_ex(a->cfg.leak_detector, a->name,
                                             d->name, r->id, &d->resources);
    }
    ctx->may_pend = true;
    rc = d->fn(ctx, d->arg);
    ctx->may_pend = false;
    /* Relaxed: written by this thread (pf_ctx_pending). */
    if (rc == PF_PENDING ||
        atomic_load_explicit(&s->completion, memory_order_relaxed) != NULL) {
        rc = pend_attempt(r, s, rc, act);
        if (*act != GO) {
            return 0;
        }
        *now = NO_TIME; /* it waited, or its work did */
    } else if (timed) {
        *now = NO_TIME; /* the end is read after the call */
    }
    return end_attempt(r, s, d, rc, now);
}

/* The attempt ended with err: the state completes (ENDED), or its failure
 * is handled (after_failure). */
static int
after_attempt(pf__run_t *r, pf__slot_t *s, const pf__state_t *d, int err,
              int64_t *now)
{
    if (err == 0) {
        /* Answered by the breaker's fallback: error keeps why. */
        end_state(r, s, PF_STATE_COMPLETED, s->fell_back ? s->error : 0);
        return ENDED;
    }
    return after_failure(r, s, d, err, now);
}

/* After a failed attempt (or a gate's refusal, counted as one): retry now
 * (GO, READY), later (PARKED in RETRY_WAIT, or GO when resumed while
 * parking), or end the state (ENDED). GO without a move when the run was
 * cancelled: the loop ends the state as cancelled. */
static int
after_failure(pf__run_t *r, pf__slot_t *s, const pf__state_t *d, int rc,
              int64_t *now)
{
    int64_t delay = 0;
    bool retry = false;
    /* The attempt's Retry-After counts for this decision only: a gate's
     * refusal after the retry must not reuse it. */
    double retry_after = s->ctx.retry_after;
    int act;

    s->ctx.retry_after = -1.0;
    s->error = rc;
    if (atomic_load_explicit(&r->cancel_reason, memory_order_acquire) != 0) {
        return GO; /* the loop ends it as cancelled */
    }
    if (s->ctx.goto_error == 0) {
        int64_t t = *now;

        if (t == NO_TIME && d->retry.max_elapsed > 0.0) {
            t = pf__run_now(r);
        }
        if (!s->retry_started) {
            pf_retry_start(&d->retry, &s->retry, t == NO_TIME ? 0 : t);
            s->retry_started = true;
        }
        (void)pf_retry_decide_after(&d->retry, &s->retry, rc,
                                    t == NO_TIME ? 0 : t, retry_after, &retry,
                                    &delay);
    }
    if (retry) {
        int64_t due = 0;

        s->counts.retries++;
        if (delay != 0) {
            /* Fix the due time before the listener runs: a slow listener
             * (or one moving a manual clock) must not push the retry past
             * the delay it was told. */
            if (*now == NO_TIME) {
                *now = pf__run_now(r);
            }
            due = pf__add_sat(*now, delay);
        }
        pf__run_emit(r, PF_AGENT_EVENT_RETRY, s->ctx.state, rc, s->attempts,
                     pf__ns_to_secs(delay));
        if (delay == 0) {
            slot_move(s, slot_phase(s), PF__SLOT_READY);
            return GO;
        }
        slot_move(s, slot_phase(s), PF__SLOT_RETRY_WAIT);
        act = park_timer(r, s, due);
        if (act != FAILED) {
            if (act == GO) {
                *now = NO_TIME;
            }
            return act;
        }
        rc = PF_ENOMEM;
    }
    fall_back_or_fail(r, s, d, rc, d->fallback_on_failure);
    return ENDED;
}

/* ---- the gates ----------------------------------------------------------- */

/* The rate gate, in READY: GO (a permit taken, or one reserved earlier),
 * PARKED in RATE_WAIT until the permit reserved now is due (GO when
 * resumed while parking), or FAILED. */
static int
gate_rate(pf__run_t *r, pf__slot_t *s, const pf__state_t *d, int64_t *now)
{
    int64_t wait = 0;
    int64_t due;

    if (d->ratelimit == NULL || s->rate_reserved) {
        return GO;
    }
    if (pf_ratelimit_reserve(d->ratelimit, 1, INFINITY, &wait) != 0) {
        return FAILED;
    }
    if (wait == 0) {
        return GO;
    }
    s->rate_reserved = true;
    s->counts.rejections++;
    /* The due time is fixed before the listener runs (see after_failure). */
    if (*now == NO_TIME) {
        *now = pf__run_now(r);
    }
    due = pf__add_sat(*now, wait);
    *now = NO_TIME;
    pf__run_emit(r, PF_AGENT_EVENT_REJECTED, s->ctx.state, PF_ERATELIMIT,
                 s->attempts, pf__ns_to_secs(wait));
    slot_move(s, PF__SLOT_READY, PF__SLOT_RATE_WAIT);
    return park_timer(r, s, due);
}

/* The bulkhead gate, in phase from (READY or RATE_WAIT): GO in ADMITTED
 * (a place taken, or no bulkhead) or in BULKHEAD_WAIT (resumed while
 * parking: see bulkhead_woken), PARKED in BULKHEAD_WAIT, or FAILED with
 * *err. */
static int
gate_bulkhead(pf__run_t *r, pf__slot_t *s, const pf__state_t *d,
              pf__slot_phase_t from, int *err)
{
    int rc;

    if (d->bulkhead == NULL) {
        slot_move(s, from, PF__SLOT_ADMITTED);
        return GO;
    }
    rc = park_ticket(r, s, d, from, err);
    if (rc == FAILED) {
        s->counts.rejections++;
        pf__run_emit(r, PF_AGENT_EVENT_REJECTED, s->ctx.state, *err,
                     s->attempts, 0.0);
    }
    return rc;
}

/* Back in BULKHEAD_WAIT, not cancelled: a grant left the place in
 * in_bulkhead (GO, ADMITTED); otherwise the wait limit ran out (FAILED,
 * *err = PF_EFULL). */
static int
bulkhead_woken(pf__run_t *r, pf__slot_t *s, int *err)
{
    if (s->in_bulkhead) {
        slot_move(s, PF__SLOT_BULKHEAD_WAIT, PF__SLOT_ADMITTED);
        return GO;
    }
    s->counts.rejections++;
    *err = PF_EFULL;
    pf__run_emit(r, PF_AGENT_EVENT_REJECTED, s->ctx.state, PF_EFULL,
                 s->attempts, 0.0);
    return FAILED;
}

/* ---- driving a state ----------------------------------------------------- */

/* Run state i from the phase it is in (READY when claimed, or the waiting
 * phase it was resumed from) until it parks (PARKED) or ends (ENDED: DONE
 * or CANCELLED, outcome set). */
static int
run_state(pf__run_t *r, uint32_t i, int64_t *now)
{
    pf__slot_t *s = &r->slots[i];
    const pf__state_t *d = &r->agent->states[i];

    for (;;) {
        int reason =
            atomic_load_explicit(&r->cancel_reason, memory_order_acquire);
        pf__slot_phase_t phase = slot_phase(s);
        int err = 0;
        int act = GO;

        /* Its work completed or was aborted. (Still PENDING with the
         * record taken: the attempt has ended and the run is cancelled.) */
        if (phase == PF__SLOT_PENDING &&
            atomic_load_explicit(&s->completion, memory_order_relaxed) !=
                NULL) {
            err = end_attempt(r, s, d, take_completion(s), now);
            act = after_attempt(r, s, d, err, now);
            if (act != GO) {
                return act;
            }
            continue;
        }
        if (reason != 0) {
            release_gates(s, d);
            end_state(r, s, PF_STATE_CANCELLED, reason);
            return ENDED;
        }
        if (phase == PF__SLOT_RETRY_WAIT) { /* its delay is over */
            slot_move(s, PF__SLOT_RETRY_WAIT, PF__SLOT_READY);
            phase = PF__SLOT_READY;
        }
        if (phase == PF__SLOT_READY) {
            act = gate_rate(r, s, d, now);
            if (is_parked(act)) {
                return act; /* nothing of s may be touched now */
            }
            if (act == FAILED) {
                err = PF_ERATELIMIT;
            }
            phase = slot_phase(s); /* RATE_WAIT once it waited */
        }
        if (act == GO &&
            (phase == PF__SLOT_READY || phase == PF__SLOT_RATE_WAIT)) {
            act = gate_bulkhead(r, s, d, phase, &err);
            if (is_parked(act)) {
                return act;
            }
            if (act == FAILED) {
                release_gates(s, d);
            }
            phase = slot_phase(s);
        }
        if (act == GO && phase == PF__SLOT_BULKHEAD_WAIT) {
            act = bulkhead_woken(r, s, &err);
            if (act == FAILED) {
                release_gates(s, d);
            }
        }
        if (act == FAILED) {
            s->fell_back = false; /* this error is no fallback's */
            act = after_failure(r, s, d, err, now);
            if (act != GO) {
                return act;
            }
            continue;
        }
        s->rate_reserved = false; /* ADMITTED: the permit is being used */
        if (d->breaker != NULL &&
            pf_breaker_acquire(d->breaker, &s->permit) != 0) {
            rejected(r, s, d);
            return ENDED;
        }
        slot_move(s, PF__SLOT_ADMITTED, PF__SLOT_RUNNING);
        err = call_attempt(r, s, d, now, &act);
        if (is_parked(act)) {
            return act; /* pending: nothing of s may be touched now */
        }
        act = after_attempt(r, s, d, err, now);
        if (act != GO) {
            return act;
        }
    }
}

/* ---- successors ---------------------------------------------------------- */

static bool
claim_goto(pf__run_t *r, uint32_t t)
{
    if (r->agent->states[t].ndeps != 0) {
        return false; /* it runs when its dependencies complete */
    }
    return slot_move(&r->slots[t], PF__SLOT_IDLE, PF__SLOT_READY);
}

/* State i has ended: claim its successors. Returns the one this thread
 * runs next, or PF__NONE; queues the others. Sets *ended when i was the
 * run's last activation. */
static uint32_t
dispatch(pf__run_t *r, uint32_t i, bool *ended)
{
    pf__slot_t *s = &r->slots[i];
    const pf__state_t *d = &r->agent->states[i];
    uint32_t head = PF__NONE;
    uint32_t tail = PF__NONE;
    uint32_t best = PF__NONE;
    uint32_t k = 0;
    uint32_t j;

#define APPEND(t)                                                              \
    do {                                                                       \
        r->slots[t].link = PF__NONE;                                           \
        if (tail == PF__NONE) {                                                \
            head = (t);                                                        \
        } else {                                                               \
            r->slots[tail].link = (t);                                         \
        }                                                                      \
        tail = (t);                                                            \
        k++;                                                                   \
    } while (0)

    if (s->outcome == PF_STATE_COMPLETED) {
        const pf_ctx_t *ctx = &s->ctx;

        for (j = 0; j < ctx->ngotos; j++) {
            uint32_t t = j < PF__CTX_INLINE_GOTOS
                             ? ctx->inline_gotos[j]
                             : ctx->more[j - PF__CTX_INLINE_GOTOS];

            if (claim_goto(r, t)) {
                APPEND(t);
            }
        }
        for (j = 0; j < d->ndependents; j++) {
            uint32_t t = d->dependents[j];

            /* acq_rel: the last dependency to complete sees the others'
             * completion. */
            if (atomic_fetch_sub_explicit(&r->slots[t].deps_left, 1,
                                          memory_order_acq_rel) == 1) {
                slot_move(&r->slots[t], PF__SLOT_IDLE, PF__SLOT_READY);
                APPEND(t);
            }
        }
    } else if (s->outcome == PF_STATE_FELL_BACK &&
               claim_goto(r, d->fallback_state)) {
        APPEND(d->fallback_state);
    }
#undef APPEND
    if (k == 0) {
        /* acq_rel: the thread that ends the run sees every state's end. */
        *ended =
            atomic_fetch_sub_explicit(&r->active, 1, memory_order_acq_rel) == 1;
        return PF__NONE;
    }
    for (j = head; j != PF__NONE; j = r->slots[j].link) {
        if (best == PF__NONE ||
            r->agent->states[j].prio > r->agent->states[best].prio) {
            best = j;
        }
    }
    if (k > 1) {
        /* Count the new activations before any can end. Relaxed: the
         * pushes below go through the executor's lock, which orders this
         * before any decrement by the threads that run them. */
        atomic_fetch_add_explicit(&r->active, k - 1, memory_order_relaxed);
        for (j = head; j != PF__NONE;) {
            uint32_t next = r->slots[j].link;

            if (j != best) {
                pf__exec_push(r->ex, &r->slots[j].task);
            }
            j = next;
        }
    }
    return best;
}

bool
pf__sched_drive(pf__run_t *r, uint32_t i)
{
    int64_t now = NO_TIME;
    bool ended = false;

    while (i != PF__NONE) {
        int act = run_state(r, i, &now);

        if (is_parked(act)) {
            return act == PARKED_LAST;
        }
        i = dispatch(r, i, &ended);
    }
    return ended;
}
