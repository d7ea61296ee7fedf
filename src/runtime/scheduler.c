/* Runs: the scheduler.
 *
 * A run object holds one slot per state, preallocated and reused (the
 * agent keeps a few finished run objects), so a run allocates nothing once
 * warm. A slot is an activation of its state: it is claimed at most once
 * per run (an atomic exchange for a goto, the last decrement of its
 * dependency count for depends_on), then driven by one thread at a time.
 *
 * Driving. drive() runs a state through its gates (rate limit, bulkhead,
 * breaker), calls it, retries it, ends it, and claims its successors: when
 * exactly one is claimed the same thread goes on with it at once (no queue,
 * no lock, no atomic but the claim); several are counted into the run's
 * `active` count and all but the first of the highest priority are queued
 * on the executor as tasks of the run's group, which the thread waiting for
 * the run takes and runs itself when it has nothing else to do. `active`
 * counts activations not yet ended (ready, running or waiting); the thread
 * that brings it to zero ends the run.
 *
 * Waiting. A retry delay or a rate-limit delay parks the slot on a timer;
 * a full bulkhead parks it on a ticket in the bulkhead's queue (with a
 * timer for the wait limit). Nothing sleeps. The slot's `park` word says
 * who owns it: the driving thread sets QUEUED, arms the timer or queues
 * the ticket, then moves QUEUED -> PARKED_*; whoever resumes it (a timer
 * firing, a bulkhead grant, a cancellation that took the timer or ticket
 * back) moves PARKED_* -> NONE and queues its task, or, finding QUEUED,
 * leaves EARLY for the driving thread to go on by itself. Exactly one
 * resumer exists per park: a timer either fires or is cancelled, a ticket
 * either is granted or is cancelled.
 *
 * Cancellation sets cancel_reason (seq_cst) and then looks at every slot's
 * park word (seq_cst); a thread parking a slot reads cancel_reason
 * (seq_cst) after its CAS to PARKED_*. In the single total order of these
 * operations one of the two sees the other, so a slot parked while the run
 * is cancelled is always taken back. Running states see the flag through
 * pf_ctx_is_cancelled and their token.
 *
 * Lifetime: a run has references: the caller's (its handle or result) and
 * the execution's, dropped by the thread that ends the run in the same
 * locked step that releases its waiters (so once a wait returns, nothing
 * of the run is in flight); the last reference returns the object to the
 * agent's cache. Each run object holds a reference to its agent, so an
 * agent freed while a result or handle is still held stays readable. */
#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "puffinflow/agent.h"
#include "puffinflow/error.h"

#include "agent_impl.h"
#include "clock_impl.h"
#include "context_impl.h"
#include "executor_impl.h"
#include "mem.h"
#include "timeutil.h"

#define NO_TIME INT64_MIN

enum { PARK_NONE = 0, PARK_QUEUED, PARK_TIMER, PARK_TICKET, PARK_EARLY };

/* What run_state and the gates tell their caller. */
enum { GO, PARKED, FAILED, ENDED };

static void slot_task_fn(pf__task_t *t);
static void slot_timer_fn(pf__timer_t *t);
static void deadline_timer_fn(pf__timer_t *t);

static pf__slot_t *
slot_of_task(pf__task_t *t)
{
    return (pf__slot_t *)((char *)t - offsetof(pf__slot_t, task));
}

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

/* ---- run objects --------------------------------------------------------- */

static pf__run_t *
run_alloc(pf_agent_t *a)
{
    pf__run_t *r = pf__calloc(1, a->run_bytes);
    size_t i;

    if (r == NULL) {
        return NULL;
    }
    if (pthread_mutex_init(&r->lock, NULL) != 0) {
        pf__free(r);
        return NULL;
    }
    if (pf__group_init(&r->group) != 0) {
        pthread_mutex_destroy(&r->lock);
        pf__free(r);
        return NULL;
    }
    if (pf__ctx_store_init(&r->own_store) != 0) {
        pf__group_destroy(&r->group);
        pthread_mutex_destroy(&r->lock);
        pf__free(r);
        return NULL;
    }
    r->agent = a;
    r->nslots = a->nstates;
    /* Relaxed: the caller holds a reference, so the count is not 0. */
    atomic_fetch_add_explicit(&a->refs, 1, memory_order_relaxed);
    pf__timer_init(&r->deadline_timer, deadline_timer_fn);
    for (i = 0; i < r->nslots; i++) {
        pf__slot_t *s = &r->slots[i];

        s->task.fn = slot_task_fn;
        s->task.group = &r->group;
        s->task.prio = a->states[i].prio;
        pf__timer_init(&s->timer, slot_timer_fn);
        s->ctx.run = r;
        s->ctx.state = (uint32_t)i;
    }
    return r;
}

void
pf__run_destroy(pf__run_t *r)
{
    pf_agent_t *a = r->agent;
    size_t i;

    for (i = 0; i < r->nslots; i++) {
        pf__free(r->slots[i].ctx.more);
    }
    pf_token_free(r->token);
    pf__ctx_store_destroy(&r->own_store);
    pf__group_destroy(&r->group);
    pthread_mutex_destroy(&r->lock);
    pf__free(r);
    pf__agent_unref(a);
}

/* A run object from the agent's cache, or a new one. */
static pf__run_t *
run_acquire(pf_agent_t *a)
{
    size_t i;

    /* Each cache entry is taken by an exchange, so two threads never get
     * the same object; acquire pairs with the release that put it there. */
    for (i = 0; i < PF__RUN_CACHE; i++) {
        if (atomic_load_explicit(&a->cache[i], memory_order_relaxed) != NULL) {
            pf__run_t *r = atomic_exchange_explicit(&a->cache[i], NULL,
                                                    memory_order_acquire);

            if (r != NULL) {
                return r;
            }
        }
    }
    return run_alloc(a);
}

/* The last reference is gone: clean up and give the object back. */
static void
run_release(pf__run_t *r)
{
    pf_agent_t *a = r->agent;
    size_t i;

    pf_token_free(r->token);
    r->token = NULL;
    if (r->own_store_used) {
        pf_ctx_t view = {0};

        view.store = &r->own_store;
        pf_ctx_clear(&view);
        r->own_store_used = false;
    }
    if (!atomic_load_explicit(&a->closing, memory_order_seq_cst)) {
        for (i = 0; i < PF__RUN_CACHE; i++) {
            pf__run_t *expected = NULL;

            if (atomic_load_explicit(&a->cache[i], memory_order_relaxed) ==
                    NULL &&
                atomic_compare_exchange_strong_explicit(&a->cache[i], &expected,
                                                        r, memory_order_seq_cst,
                                                        memory_order_relaxed)) {
                /* pf_agent_free sets closing, then drains the cache; we
                 * cached, then look at closing (both seq_cst): one of us
                 * sees the other, so the object is never stranded. */
                if (atomic_load_explicit(&a->closing, memory_order_seq_cst)) {
                    /* Take back this entry (ours, or nothing if the drain
                     * got it). Nothing of a is read after a destroy: it
                     * may drop the agent's last reference. */
                    pf__run_t *back = atomic_exchange_explicit(
                        &a->cache[i], NULL, memory_order_acquire);

                    if (back != NULL) {
                        pf__run_destroy(back);
                    }
                }
                return;
            }
        }
    }
    pf__run_destroy(r);
}

void
pf__run_unref(pf__run_t *r)
{
    /* acq_rel: the last owner sees every other owner's writes. */
    if (atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) == 1) {
        run_release(r);
    }
}

/* Reset r for a new run. The run is published to other threads by the
 * executor's lock (pushes) or by the caller, so plain stores suffice. */
static void
run_prepare(pf__run_t *r, pf_ctx_t *ctx, const pf_run_opts_t *opts, bool async)
{
    pf_agent_t *a = r->agent;
    size_t i;

    r->ex = a->ex;
    r->clock = a->clock;
    r->store = ctx != NULL ? ctx->store : &r->own_store;
    r->user_ctx = ctx;
    r->own_store_used = ctx == NULL;
    atomic_store_explicit(&r->active, 0, memory_order_relaxed);
    atomic_store_explicit(&r->cancel_reason, 0, memory_order_relaxed);
    atomic_store_explicit(&r->done, false, memory_order_relaxed);
    atomic_store_explicit(&r->refs, 2, memory_order_relaxed);
    atomic_store_explicit(&r->order_seq, 0, memory_order_relaxed);
    atomic_store_explicit(&r->dl_seq, 0, memory_order_relaxed);
    pf__group_reset(&r->group);
    r->parent_token = opts == NULL ? NULL : opts->token;
    r->parent_registered = false;
    r->deadline_ns = PF_DEADLINE_NEVER_NS;
    r->timings = a->cfg.timings;
    r->async = async;
    r->on_done = async && opts != NULL ? opts->on_done : NULL;
    r->on_done_arg = opts == NULL ? NULL : opts->on_done_arg;
    r->caller_finished = false;
    r->status = 0;
    r->start_ns = 0;
    r->end_ns = 0;
    memset(&r->summary, 0, sizeof(r->summary));
    for (i = 0; i < r->nslots; i++) {
        pf__slot_t *s = &r->slots[i];

        s->ctx.store = r->store;
        s->ctx.attempt = 0;
        s->ctx.deadline_ns = PF_DEADLINE_NEVER_NS;
        s->ctx.token = NULL;
        s->ctx.ngotos = 0;
        s->ctx.goto_error = 0;
        atomic_store_explicit(&s->activated, 0, memory_order_relaxed);
        atomic_store_explicit(&s->deps_left, a->states[i].ndeps,
                              memory_order_relaxed);
        atomic_store_explicit(&s->park, PARK_NONE, memory_order_relaxed);
        memset(&s->permit, 0, sizeof(s->permit));
        s->timer_kind = PF__TIMER_RESUME;
        s->link = PF__NONE;
        s->phase = PF__PH_RATE;
        s->outcome = PF_STATE_NOT_RUN;
        s->timed_out = false;
        s->fell_back = false;
        s->dead_letter = false;
        s->in_bulkhead = false;
        s->bh_granted = false;
        s->bh_timed_out = false;
        s->rate_reserved = false;
        s->retry_started = false;
        s->own_token = false;
        s->error = 0;
        s->attempts = 0;
        s->order = 0;
        s->dl_order = 0;
        s->start_ns = 0;
        s->end_ns = 0;
        s->failed_at_ns = 0;
        memset(&s->counts, 0, sizeof(s->counts));
    }
}

/* ---- events -------------------------------------------------------------- */

static void
emit(pf__run_t *r, pf_agent_event_kind_t kind, uint32_t state, int error,
     unsigned attempt, double delay)
{
    const pf_agent_t *a = r->agent;
    pf_agent_event_t ev;

    if (a->cfg.listener == NULL) {
        return;
    }
    ev.kind = kind;
    ev.agent = a->name;
    ev.state = state == PF__NONE ? NULL : a->states[state].name;
    ev.error = error;
    ev.attempt = attempt;
    ev.delay = delay;
    ev.run = r->id;
    ev.ctx = r->user_ctx;
    a->cfg.listener(&ev, a->cfg.listener_arg);
}

/* ---- cancellation and parking -------------------------------------------- */

/* Hand a parked slot back to a thread: its task is queued. Called by the
 * one resumer of the current park. */
static void
resume(pf__run_t *r, pf__slot_t *s)
{
    int p = atomic_load_explicit(&s->park, memory_order_seq_cst);

    for (;;) {
        if (p == PARK_QUEUED) {
            if (atomic_compare_exchange_weak_explicit(&s->park, &p, PARK_EARLY,
                                                      memory_order_seq_cst,
                                                      memory_order_seq_cst)) {
                return; /* the driving thread goes on by itself */
            }
        } else if (p == PARK_TIMER || p == PARK_TICKET) {
            if (atomic_compare_exchange_weak_explicit(&s->park, &p, PARK_NONE,
                                                      memory_order_seq_cst,
                                                      memory_order_seq_cst)) {
                pf__exec_push(r->ex, &s->task);
                return;
            }
        } else {
            return;
        }
    }
}

/* Take back a parked slot of a cancelled run, if its timer or ticket can
 * still be withdrawn; otherwise its resumer is already on the way. */
static void
cancel_parked(pf__run_t *r, pf__slot_t *s)
{
    int p = atomic_load_explicit(&s->park, memory_order_seq_cst);

    if (p == PARK_TIMER) {
        if (pf__exec_timer_cancel(r->ex, &s->timer)) {
            resume(r, s);
        }
    } else if (p == PARK_TICKET) {
        pf_bulkhead_t *bh = r->agent->states[s->ctx.state].bulkhead;

        if (pf_bulkhead_cancel(bh, &s->ticket, PF_ECANCELED)) {
            pf__exec_timer_cancel(r->ex, &s->timer);
            resume(r, s);
        }
    }
}

static void
run_cancel(pf__run_t *r, int reason)
{
    int expected = 0;
    pf_token_t *tok;
    size_t i;

    if (!atomic_compare_exchange_strong_explicit(&r->cancel_reason, &expected,
                                                 reason, memory_order_seq_cst,
                                                 memory_order_seq_cst)) {
        return; /* already cancelled: the first reason stands */
    }
    pthread_mutex_lock(&r->lock);
    tok = r->token;
    pthread_mutex_unlock(&r->lock);
    /* The token lives until the run object is released, and whoever
     * cancels holds a reference (or is the run's own timer, cancelled
     * before the run ends). */
    pf_token_cancel(tok);
    for (i = 0; i < r->nslots; i++) {
        cancel_parked(r, &r->slots[i]);
    }
}

static void
deadline_timer_fn(pf__timer_t *t)
{
    pf__run_t *r =
        (pf__run_t *)((char *)t - offsetof(pf__run_t, deadline_timer));

    run_cancel(r, PF_ETIMEDOUT);
}

static void
parent_cancel_fn(void *arg)
{
    run_cancel(arg, PF_ECANCELED);
}

/* After a successful park: the run may have been cancelled meanwhile. */
static int
parked(pf__run_t *r, pf__slot_t *s)
{
    if (atomic_load_explicit(&r->cancel_reason, memory_order_seq_cst) != 0) {
        cancel_parked(r, s);
    }
    return PARKED;
}

/* Park s until at_ns (executor clock). Returns PARKED, GO (it was resumed
 * while being parked: go on) or FAILED (no memory for the timer). */
static int
park_timer(pf__run_t *r, pf__slot_t *s, int64_t at_ns)
{
    int p = PARK_QUEUED;

    atomic_store_explicit(&s->park, PARK_QUEUED, memory_order_seq_cst);
    s->timer_kind = PF__TIMER_RESUME;
    if (pf__exec_timer_arm(r->ex, &s->timer, at_ns) != 0) {
        atomic_store_explicit(&s->park, PARK_NONE, memory_order_relaxed);
        return FAILED;
    }
    if (atomic_compare_exchange_strong_explicit(&s->park, &p, PARK_TIMER,
                                                memory_order_seq_cst,
                                                memory_order_seq_cst)) {
        return parked(r, s);
    }
    atomic_store_explicit(&s->park, PARK_NONE, memory_order_relaxed);
    return GO;
}

static void
grant_fn(pf_bulkhead_ticket_t *t, void *arg)
{
    pf__slot_t *s = arg;
    pf__run_t *r = s->ctx.run;

    (void)t;
    s->bh_granted = true;
    /* The wait-limit timer, if armed: when it is firing now, its cancel of
     * the ticket fails (we were granted) and it does nothing. */
    pf__exec_timer_cancel(r->ex, &s->timer);
    resume(r, s);
}

/* A deadline on another clock, as a time on clock. */
static int64_t
deadline_on(const pf_deadline_t *d, const pf_clock_t *clock)
{
    if (pf_deadline_is_none(d)) {
        return PF_DEADLINE_NEVER_NS;
    }
    if (pf__clock_norm(d->priv_clock) == clock) {
        return d->priv_at_ns;
    }
    return pf__add_sat(pf_clock_now_ns(clock), pf_deadline_remaining_ns(d));
}

/* Queue s in its bulkhead. GO: inside (at once, or granted while being
 * parked; or its wait ran out: see bh_timed_out); PARKED; FAILED with
 * *err when there is no room. */
static int
park_ticket(pf__run_t *r, pf__slot_t *s, const pf__state_t *d, int *err)
{
    pf_deadline_t limit;
    int64_t at;
    bool entered = false;
    int p = PARK_QUEUED;
    int rc;

    atomic_store_explicit(&s->park, PARK_QUEUED, memory_order_seq_cst);
    rc = pf_bulkhead_enqueue(d->bulkhead, &s->ticket, (pf_priority_t)d->prio,
                             grant_fn, s, &entered);
    if (rc != 0 || entered) {
        atomic_store_explicit(&s->park, PARK_NONE, memory_order_relaxed);
        *err = PF_EFULL;
        s->bh_granted = entered;
        return rc != 0 ? FAILED : GO;
    }
    limit = pf_bulkhead_ticket_deadline(&s->ticket);
    at = deadline_on(&limit, r->clock);
    if (at != PF_DEADLINE_NEVER_NS) {
        s->timer_kind = PF__TIMER_TICKET;
        if (pf__exec_timer_arm(r->ex, &s->timer, at) != 0 &&
            pf_bulkhead_cancel(d->bulkhead, &s->ticket, PF_ENOMEM)) {
            atomic_store_explicit(&s->park, PARK_NONE, memory_order_relaxed);
            *err = PF_ENOMEM;
            return FAILED;
        }
    }
    if (atomic_compare_exchange_strong_explicit(&s->park, &p, PARK_TICKET,
                                                memory_order_seq_cst,
                                                memory_order_seq_cst)) {
        return parked(r, s);
    }
    /* Granted (or timed out) while being set up: withdraw the timer. */
    atomic_store_explicit(&s->park, PARK_NONE, memory_order_relaxed);
    pf__exec_timer_cancel(r->ex, &s->timer);
    return GO;
}

static void
slot_timer_fn(pf__timer_t *t)
{
    pf__slot_t *s = slot_of_timer(t);
    pf__run_t *r = s->ctx.run;

    switch (s->timer_kind) {
    case PF__TIMER_RESUME:
        resume(r, s);
        break;
    case PF__TIMER_TICKET:
        if (pf_bulkhead_cancel(r->agent->states[s->ctx.state].bulkhead,
                               &s->ticket, PF_EFULL)) {
            s->bh_timed_out = true;
            resume(r, s);
        }
        break;
    default:
        pf_token_cancel(s->ctx.token);
        break;
    }
}

/* ---- ending a state ------------------------------------------------------ */

static void
end_state(pf__run_t *r, pf__slot_t *s, int outcome, int error)
{
    s->outcome = (uint8_t)outcome;
    s->error = error;
    s->order =
        atomic_fetch_add_explicit(&r->order_seq, 1, memory_order_relaxed) + 1;
}

/* Give back what the gates took for an attempt that will not be made. */
static void
release_gates(pf__slot_t *s, const pf__state_t *d)
{
    if (s->in_bulkhead || s->bh_granted) {
        pf_bulkhead_leave(d->bulkhead);
        s->in_bulkhead = false;
        s->bh_granted = false;
    }
    if (s->rate_reserved) {
        pf_ratelimit_refund(d->ratelimit, 1);
        s->rate_reserved = false;
    }
    s->phase = PF__PH_RATE;
}

static void
end_failed(pf__run_t *r, pf__slot_t *s, const pf__state_t *d, int error)
{
    end_state(r, s, PF_STATE_FAILED, error);
    if (d->dead_letter) {
        s->dead_letter = true;
        s->failed_at_ns = pf_wall_time_ns();
        s->dl_order =
            atomic_fetch_add_explicit(&r->dl_seq, 1, memory_order_relaxed) + 1;
        emit(r, PF_AGENT_EVENT_DEAD_LETTER, s->ctx.state, error, s->attempts,
             0.0);
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
    emit(r, PF_AGENT_EVENT_FALLBACK, ctx->state, reason, s->attempts, 0.0);
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
    emit(r, PF_AGENT_EVENT_FALLBACK, s->ctx.state, reason, s->attempts, 0.0);
    return d->breaker_fallback(d->arg, reason);
}

/* The breaker rejected the state (PF_EOPEN): no attempt, no retry. */
static void
rejected(pf__run_t *r, pf__slot_t *s, const pf__state_t *d)
{
    int rc;

    release_gates(s, d);
    s->counts.rejections++;
    emit(r, PF_AGENT_EVENT_REJECTED, s->ctx.state, PF_EOPEN, s->attempts, 0.0);
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
            emit(r, PF_AGENT_EVENT_TIMEOUT, ctx->state, rc, s->attempts, 0.0);
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

static int64_t
clock_now(const pf__run_t *r)
{
    return pf_clock_now_ns(r->clock);
}

/* Call the state once: it is inside its bulkhead and holds its breaker
 * permit, if it has them. Returns the attempt's result. */
static int
call_attempt(pf__run_t *r, pf__slot_t *s, const pf__state_t *d, int64_t *now)
{
    pf_agent_t *a = r->agent;
    pf_ctx_t *ctx = &s->ctx;
    bool timed = r->timings || d->timeout_ns != 0 ||
                 r->deadline_ns != PF_DEADLINE_NEVER_NS;
    bool leak = d->leak && a->cfg.leak_detector != NULL;
    int64_t start = 0;
    int64_t end = 0;
    int rc;

    if (timed) {
        start = *now != NO_TIME ? *now : clock_now(r);
    }
    if (s->attempts == 0) {
        s->start_ns = start;
    }
    s->attempts++;
    s->fell_back = false; /* set again if a fallback answers this one */
    ctx->attempt = s->attempts;
    ctx->ngotos = 0;
    ctx->goto_error = 0;
    ctx->deadline_ns = r->deadline_ns;
    if (d->timeout_ns != 0) {
        ctx->deadline_ns =
            min64(ctx->deadline_ns, pf__add_sat(start, d->timeout_ns));
    }
    if (d->retry_eager && !s->retry_started) {
        pf_retry_start(&d->retry, &s->retry, start);
        s->retry_started = true;
    }
    if (leak) {
        /* Keyed by the run too: runs of this state held at once are
         * tracked apart, so a hung one stays visible. */
        pf_leak_detector_track_allocation_ex(a->cfg.leak_detector, a->name,
                                             d->name, r->id, &d->resources);
    }
    rc = d->fn(ctx, d->arg);
    if (rc == 0 && ctx->goto_error != 0) {
        rc = ctx->goto_error;
    }
    drop_token(r, s);
    if (leak) {
        pf_leak_detector_track_release_ex(a->cfg.leak_detector, a->name,
                                          d->name, r->id);
    }
    if (timed) {
        end = clock_now(r);
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
        emit(r, PF_AGENT_EVENT_TIMEOUT, ctx->state, rc, s->attempts, 0.0);
    }
    if (s->in_bulkhead) {
        pf_bulkhead_record(d->bulkhead, rc, end - start);
        pf_bulkhead_leave(d->bulkhead);
        s->in_bulkhead = false;
    }
    if (d->breaker != NULL) {
        rc = record_breaker(r, s, d, rc);
    }
    return rc;
}

/* After a failed attempt (or a gate's refusal, counted as one): retry now
 * (GO), later (PARKED), or end the state (ENDED). */
static int
after_failure(pf__run_t *r, pf__slot_t *s, const pf__state_t *d, int rc,
              int64_t *now)
{
    int64_t delay = 0;
    bool retry = false;

    s->error = rc;
    if (atomic_load_explicit(&r->cancel_reason, memory_order_acquire) != 0) {
        return GO; /* the loop ends it as cancelled */
    }
    if (s->ctx.goto_error == 0) {
        int64_t t = *now;

        if (t == NO_TIME && d->retry.max_elapsed > 0.0) {
            t = clock_now(r);
        }
        if (!s->retry_started) {
            pf_retry_start(&d->retry, &s->retry, t == NO_TIME ? 0 : t);
            s->retry_started = true;
        }
        retry = pf_retry_next(&d->retry, &s->retry, rc, t == NO_TIME ? 0 : t,
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
                *now = clock_now(r);
            }
            due = pf__add_sat(*now, delay);
        }
        emit(r, PF_AGENT_EVENT_RETRY, s->ctx.state, rc, s->attempts,
             pf__ns_to_secs(delay));
        s->phase = PF__PH_RATE;
        if (delay == 0) {
            return GO;
        }
        switch (park_timer(r, s, due)) {
        case PARKED:
            return PARKED;
        case GO:
            *now = NO_TIME;
            return GO;
        default:
            rc = PF_ENOMEM;
            break;
        }
    }
    fall_back_or_fail(r, s, d, rc, d->fallback_on_failure);
    return ENDED;
}

/* ---- the gates ----------------------------------------------------------- */

static int
gate_rate(pf__run_t *r, pf__slot_t *s, const pf__state_t *d, int64_t *now)
{
    int64_t wait = 0;
    int64_t due;

    s->phase = PF__PH_BULKHEAD;
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
        *now = clock_now(r);
    }
    due = pf__add_sat(*now, wait);
    *now = NO_TIME;
    emit(r, PF_AGENT_EVENT_REJECTED, s->ctx.state, PF_ERATELIMIT, s->attempts,
         pf__ns_to_secs(wait));
    return park_timer(r, s, due);
}

static int
gate_bulkhead(pf__run_t *r, pf__slot_t *s, const pf__state_t *d, int *err)
{
    int rc;

    if (d->bulkhead == NULL || s->in_bulkhead) {
        s->phase = PF__PH_BREAKER;
        return GO;
    }
    if (!s->bh_granted && !s->bh_timed_out) {
        rc = park_ticket(r, s, d, err);
        if (rc == PARKED) {
            return PARKED;
        }
        if (rc == FAILED) {
            s->counts.rejections++;
            emit(r, PF_AGENT_EVENT_REJECTED, s->ctx.state, *err, s->attempts,
                 0.0);
            return FAILED;
        }
    }
    if (s->bh_timed_out) {
        s->bh_timed_out = false;
        s->counts.rejections++;
        *err = PF_EFULL;
        emit(r, PF_AGENT_EVENT_REJECTED, s->ctx.state, PF_EFULL, s->attempts,
             0.0);
        return FAILED;
    }
    s->bh_granted = false;
    s->in_bulkhead = true;
    s->phase = PF__PH_BREAKER;
    return GO;
}

/* ---- driving a state ----------------------------------------------------- */

/* Run state i from where it stopped: PARKED, or ENDED (outcome set). */
static int
run_state(pf__run_t *r, uint32_t i, int64_t *now)
{
    pf__slot_t *s = &r->slots[i];
    const pf__state_t *d = &r->agent->states[i];

    for (;;) {
        int reason =
            atomic_load_explicit(&r->cancel_reason, memory_order_acquire);
        int err = 0;
        int act;

        if (reason != 0) {
            release_gates(s, d);
            end_state(r, s, PF_STATE_CANCELLED, reason);
            return ENDED;
        }
        if (s->phase == PF__PH_RATE) {
            act = gate_rate(r, s, d, now);
            if (act == PARKED) {
                return PARKED;
            }
            if (act == FAILED) {
                s->phase = PF__PH_RATE;
                s->fell_back = false; /* this error is no fallback's */
                act = after_failure(r, s, d, PF_ERATELIMIT, now);
                if (act != GO) {
                    return act;
                }
                continue;
            }
        }
        if (s->phase == PF__PH_BULKHEAD) {
            act = gate_bulkhead(r, s, d, &err);
            if (act == PARKED) {
                return PARKED;
            }
            if (act == FAILED) {
                release_gates(s, d);
                s->fell_back = false;
                act = after_failure(r, s, d, err, now);
                if (act != GO) {
                    return act;
                }
                continue;
            }
            s->rate_reserved = false; /* the permit is being used */
        }
        if (s->phase == PF__PH_BREAKER) {
            if (d->breaker != NULL &&
                pf_breaker_acquire(d->breaker, &s->permit) != 0) {
                rejected(r, s, d);
                return ENDED;
            }
            s->phase = PF__PH_CALL;
        }
        err = call_attempt(r, s, d, now);
        s->phase = PF__PH_RATE;
        if (err == 0) {
            /* Answered by the breaker's fallback: error keeps why. */
            end_state(r, s, PF_STATE_COMPLETED, s->fell_back ? s->error : 0);
            return ENDED;
        }
        act = after_failure(r, s, d, err, now);
        if (act != GO) {
            return act;
        }
    }
}

/* ---- successors ---------------------------------------------------------- */

static bool
claim_goto(pf__run_t *r, uint32_t t)
{
    pf__slot_t *s = &r->slots[t];

    if (r->agent->states[t].ndeps != 0) {
        return false; /* it runs when its dependencies complete */
    }
    /* A relaxed look first: most gotos to an activated state end here. The
     * exchange decides; acq_rel orders the claim with the run's other
     * claims (each slot is claimed once). */
    if (atomic_load_explicit(&s->activated, memory_order_relaxed) != 0) {
        return false;
    }
    return atomic_exchange_explicit(&s->activated, 1, memory_order_acq_rel) ==
           0;
}

static void finish(pf__run_t *r, bool on_caller);

/* State i has ended: claim its successors. Returns the one this thread
 * runs next, or PF__NONE; queues the others. */
static uint32_t
dispatch(pf__run_t *r, uint32_t i, bool on_caller)
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
                atomic_store_explicit(&r->slots[t].activated, 1,
                                      memory_order_relaxed);
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
        if (atomic_fetch_sub_explicit(&r->active, 1, memory_order_acq_rel) ==
            1) {
            finish(r, on_caller);
        }
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

/* Drive state i and the chain that follows it on this thread. */
static void
drive(pf__run_t *r, uint32_t i, bool on_caller)
{
    int64_t now = NO_TIME;

    while (i != PF__NONE) {
        if (run_state(r, i, &now) == PARKED) {
            return;
        }
        i = dispatch(r, i, on_caller);
    }
}

static void
slot_task_fn(pf__task_t *t)
{
    pf__slot_t *s = slot_of_task(t);

    drive(s->ctx.run, s->ctx.state, false);
}

/* ---- ending a run -------------------------------------------------------- */

static bool
blocks_dependents(int outcome)
{
    return outcome == PF_STATE_FAILED || outcome == PF_STATE_FELL_BACK ||
           outcome == PF_STATE_CANCELLED || outcome == PF_STATE_SKIPPED;
}

/* Fill r->summary and r->status; mark skipped states. */
static void
summarize(pf__run_t *r)
{
    pf_agent_t *a = r->agent;
    pf_run_result_t *sum = &r->summary;
    pf__counts_t c = {0};
    uint64_t first_fail = UINT64_MAX;
    size_t k;

    memset(sum, 0, sizeof(*sum));
    for (k = 0; k < r->nslots; k++) {
        uint32_t i = a->topo[k];
        pf__slot_t *s = &r->slots[i];
        const pf__state_t *d = &a->states[i];
        uint32_t j;

        if (s->outcome == PF_STATE_NOT_RUN) {
            for (j = 0; j < d->ndeps; j++) {
                if (blocks_dependents(r->slots[d->deps[j]].outcome)) {
                    s->outcome = PF_STATE_SKIPPED;
                    break;
                }
            }
        }
        switch (s->outcome) {
        case PF_STATE_COMPLETED:
            sum->completed++;
            break;
        case PF_STATE_FAILED:
            sum->failed++;
            if (s->order < first_fail) {
                first_fail = s->order;
                r->status = s->error;
            }
            break;
        case PF_STATE_FELL_BACK:
            sum->fell_back++;
            break;
        case PF_STATE_CANCELLED:
            sum->cancelled++;
            break;
        case PF_STATE_SKIPPED:
            sum->skipped++;
            break;
        default:
            sum->not_run++;
            break;
        }
        sum->dead_letters += s->dead_letter;
        c.retries += s->counts.retries;
        c.rejections += s->counts.rejections;
        c.timeouts += s->counts.timeouts;
        c.fallbacks += s->counts.fallbacks;
    }
    k = (size_t)atomic_load_explicit(&r->cancel_reason, memory_order_acquire);
    if (k != 0) {
        r->status =
            atomic_load_explicit(&r->cancel_reason, memory_order_acquire);
    }
    sum->status = r->status;
    sum->start_ns = r->start_ns;
    sum->end_ns = r->end_ns;
    sum->duration = r->timings ? pf__ns_to_secs(r->end_ns - r->start_ns) : 0.0;
    /* Relaxed: independent statistics counters. */
    atomic_fetch_add_explicit(&a->runs_finished, 1, memory_order_relaxed);
    if (r->status != 0) {
        atomic_fetch_add_explicit(&a->runs_failed, 1, memory_order_relaxed);
    }
    atomic_fetch_add_explicit(&a->states_completed, sum->completed,
                              memory_order_relaxed);
    if (sum->failed + sum->fell_back != 0) {
        atomic_fetch_add_explicit(&a->states_failed,
                                  sum->failed + sum->fell_back,
                                  memory_order_relaxed);
    }
    if (sum->dead_letters != 0) {
        atomic_fetch_add_explicit(&a->dead_letters, sum->dead_letters,
                                  memory_order_relaxed);
    }
    if (c.retries + c.rejections + c.timeouts + c.fallbacks != 0) {
        atomic_fetch_add_explicit(&a->retries, c.retries, memory_order_relaxed);
        atomic_fetch_add_explicit(&a->rejections, c.rejections,
                                  memory_order_relaxed);
        atomic_fetch_add_explicit(&a->timeouts, c.timeouts,
                                  memory_order_relaxed);
        atomic_fetch_add_explicit(&a->fallbacks, c.fallbacks,
                                  memory_order_relaxed);
    }
}

/* The run has ended (active reached 0): nothing of it is running, queued
 * or parked. on_caller: this is the blocking caller's own thread, which
 * nobody else waits for. */
static void
finish(pf__run_t *r, bool on_caller)
{
    if (r->deadline_ns != PF_DEADLINE_NEVER_NS) {
        pf__exec_timer_cancel(r->ex, &r->deadline_timer);
    }
    if (r->parent_registered) {
        pf_token_unregister(&r->parent_reg);
        r->parent_registered = false;
    }
    if (r->timings) {
        r->end_ns = clock_now(r);
    }
    summarize(r);
    emit(r, PF_AGENT_EVENT_RUN_DONE, PF__NONE, r->status, 0, 0.0);
    /* Release: whoever sees done sees the summary. */
    atomic_store_explicit(&r->done, true, memory_order_release);
    if (r->on_done != NULL) {
        r->on_done(r, r->on_done_arg);
    }
    if (on_caller) {
        r->caller_finished = true; /* nobody else waits for this run */
        pf__run_unref(r);
        return;
    }
    /* Drop the execution's reference in the step that releases the
     * waiters: once a wait returns, nothing of the run is in flight. */
    if (pf__exec_group_finish(r->ex, &r->group, &r->refs)) {
        run_release(r);
    }
}

/* ---- starting a run ------------------------------------------------------ */

static int
run_start(pf_agent_t *a, pf_ctx_t *ctx, const pf_run_opts_t *opts, bool async,
          pf__run_t **out)
{
    pf__run_t *r;
    double secs;
    int64_t ns = 0;
    size_t i;
    int rc;

    if (a == NULL) {
        return PF_EINVAL;
    }
    secs = opts != NULL && opts->timeout != 0.0 ? opts->timeout
                                                : a->cfg.run_timeout;
    if (pf__secs_to_ns(secs, &ns) != 0) {
        return PF_EINVAL;
    }
    if (!atomic_load_explicit(&a->frozen, memory_order_acquire)) {
        rc = pf_agent_validate(a);
        if (rc != 0) {
            return rc;
        }
    }
    r = run_acquire(a);
    if (r == NULL) {
        return PF_ENOMEM;
    }
    run_prepare(r, ctx, opts, async);
    if (r->timings || (ns != 0 && ns != INT64_MAX)) {
        r->start_ns = clock_now(r);
    }
    if (ns != 0 && ns != INT64_MAX) {
        r->deadline_ns = pf__add_sat(r->start_ns, ns);
        if (pf__exec_timer_arm(r->ex, &r->deadline_timer, r->deadline_ns) !=
            0) {
            atomic_store_explicit(&r->refs, 1, memory_order_relaxed);
            pf__run_unref(r);
            return PF_ENOMEM;
        }
    }
    if (r->parent_token != NULL) {
        rc = pf_token_on_cancel(r->parent_token, &r->parent_reg,
                                parent_cancel_fn, r);
        if (rc == 0) {
            r->parent_registered = true;
        } else {
            atomic_store_explicit(&r->cancel_reason, PF_ECANCELED,
                                  memory_order_relaxed);
        }
    }
    /* Relaxed: the count only numbers runs; nothing is published by it. */
    r->id = atomic_fetch_add_explicit(&a->runs_started, 1,
                                      memory_order_relaxed) +
            1;
    for (i = 0; i < a->nentries; i++) {
        atomic_store_explicit(&r->slots[a->entries[i]].activated, 1,
                              memory_order_relaxed);
    }
    atomic_store_explicit(&r->active, (uint32_t)a->nentries,
                          memory_order_relaxed);
    *out = r;
    return 0;
}

static void
fill_result(pf__run_t *r, pf_run_result_t *out)
{
    *out = r->summary;
    out->priv_run = r;
}

int
pf_agent_run_with(pf_agent_t *a, pf_ctx_t *ctx, const pf_run_opts_t *opts,
                  pf_run_result_t *out)
{
    pf__run_t *r;
    size_t i;
    int rc;
    int status;

    if (out != NULL) {
        memset(out, 0, sizeof(*out));
    }
    rc = run_start(a, ctx, opts, false, &r);
    if (rc != 0) {
        return rc;
    }
    if (a->nentries == 0) {
        atomic_store_explicit(&r->active, 1, memory_order_relaxed);
        if (atomic_fetch_sub_explicit(&r->active, 1, memory_order_acq_rel) ==
            1) {
            finish(r, true);
        }
    } else {
        for (i = 1; i < a->nentries; i++) {
            pf__exec_push(r->ex, &r->slots[a->entries[i]].task);
        }
        drive(r, a->entries[0], true);
    }
    if (!r->caller_finished) {
        pf__exec_help(r->ex, &r->group, NULL);
    }
    status = r->status;
    if (out != NULL) {
        fill_result(r, out); /* the caller's reference goes with it */
    } else {
        pf__run_unref(r);
    }
    return status;
}

int
pf_agent_run(pf_agent_t *a, pf_ctx_t *ctx, pf_run_result_t *out)
{
    return pf_agent_run_with(a, ctx, NULL, out);
}

int
pf_agent_start(pf_agent_t *a, pf_ctx_t *ctx, const pf_run_opts_t *opts,
               pf_run_t **out)
{
    pf__run_t *r;
    size_t i;
    int rc;

    if (out == NULL) {
        return PF_EINVAL;
    }
    rc = run_start(a, ctx, opts, true, &r);
    if (rc != 0) {
        return rc;
    }
    *out = r;
    if (a->nentries == 0) {
        finish(r, false);
        return 0;
    }
    for (i = 0; i < a->nentries; i++) {
        pf__exec_push(r->ex, &r->slots[a->entries[i]].task);
    }
    return 0;
}

void
pf_run_opts_init(pf_run_opts_t *opts)
{
    if (opts != NULL) {
        memset(opts, 0, sizeof(*opts));
    }
}

int
pf_run_wait(pf_run_t *run, const pf_deadline_t *d, pf_run_result_t *out)
{
    if (out != NULL) {
        memset(out, 0, sizeof(*out));
    }
    if (run == NULL) {
        return PF_EINVAL;
    }
    /* Through the executor's lock even when done is already set: the wait
     * ends once the finishing thread has let go of the run. */
    if (pf__exec_help(run->ex, &run->group, d) == PF_ETIMEDOUT) {
        return PF_ETIMEDOUT;
    }
    if (out != NULL) {
        atomic_fetch_add_explicit(&run->refs, 1, memory_order_relaxed);
        fill_result(run, out);
    }
    return run->status;
}

bool
pf_run_done(const pf_run_t *run)
{
    return run != NULL &&
           atomic_load_explicit(&run->done, memory_order_acquire);
}

void
pf_run_cancel(pf_run_t *run)
{
    if (run != NULL &&
        !atomic_load_explicit(&run->done, memory_order_acquire)) {
        run_cancel(run, PF_ECANCELED);
    }
}

void
pf_run_free(pf_run_t *run)
{
    if (run != NULL) {
        pf__run_unref(run);
    }
}

/* ---- results ------------------------------------------------------------- */

void
pf_run_result_free(pf_run_result_t *res)
{
    if (res == NULL) {
        return;
    }
    if (res->priv_run != NULL) {
        pf__run_unref(res->priv_run);
    }
    memset(res, 0, sizeof(*res));
}

const char *
pf_state_outcome_name(pf_state_outcome_t o)
{
    switch (o) {
    case PF_STATE_NOT_RUN:
        return "not_run";
    case PF_STATE_COMPLETED:
        return "completed";
    case PF_STATE_FAILED:
        return "failed";
    case PF_STATE_FELL_BACK:
        return "fell_back";
    case PF_STATE_CANCELLED:
        return "cancelled";
    case PF_STATE_SKIPPED:
        return "skipped";
    }
    return "unknown";
}

int
pf_run_result_state(const pf_run_result_t *res, size_t i,
                    pf_state_result_t *out)
{
    const pf__run_t *r;
    const pf__slot_t *s;

    if (res == NULL || out == NULL || res->priv_run == NULL) {
        return PF_EINVAL;
    }
    r = res->priv_run;
    if (i >= r->nslots) {
        return PF_ERANGE;
    }
    s = &r->slots[i];
    memset(out, 0, sizeof(*out));
    out->name = r->agent->states[i].name;
    out->outcome = (pf_state_outcome_t)s->outcome;
    out->error = s->error;
    if (s->outcome == PF_STATE_COMPLETED && !s->fell_back) {
        out->error = 0;
    }
    out->attempts = s->attempts;
    out->timed_out = s->timed_out;
    out->fell_back = s->fell_back;
    out->dead_letter = s->dead_letter;
    out->order = s->order;
    if (r->timings && s->attempts > 0) {
        out->start_ns = s->start_ns;
        out->end_ns = s->end_ns;
        out->duration = pf__ns_to_secs(s->end_ns - s->start_ns);
    }
    return 0;
}

int
pf_run_result_find(const pf_run_result_t *res, const char *name,
                   pf_state_result_t *out)
{
    const pf__run_t *r;
    uint32_t i;

    if (res == NULL || name == NULL || out == NULL || res->priv_run == NULL) {
        return PF_EINVAL;
    }
    r = res->priv_run;
    i = pf__agent_find(r->agent, name);
    if (i == PF__NONE) {
        return PF_ENOTFOUND;
    }
    return pf_run_result_state(res, i, out);
}

int
pf_run_result_dead_letter(const pf_run_result_t *res, size_t i,
                          pf_dead_letter_t *out)
{
    const pf__run_t *r;
    size_t k;

    if (res == NULL || out == NULL || res->priv_run == NULL) {
        return PF_EINVAL;
    }
    r = res->priv_run;
    for (k = 0; k < r->nslots; k++) {
        const pf__slot_t *s = &r->slots[k];

        if (s->dead_letter && s->dl_order == i + 1) {
            out->state = r->agent->states[k].name;
            out->agent = r->agent->name;
            out->error = s->error;
            out->attempts = s->attempts;
            out->timed_out = s->timed_out;
            out->failed_at_ns = s->failed_at_ns;
            return 0;
        }
    }
    return PF_ERANGE;
}

/* ---- the per-state view of the context ----------------------------------- */

int
pf_ctx_goto(pf_ctx_t *ctx, const char *state)
{
    const pf__state_t *d;
    uint32_t t;
    uint32_t j;

    if (ctx == NULL || state == NULL) {
        return PF_EINVAL;
    }
    if (ctx->run == NULL) {
        return PF_ESTATE;
    }
    t = pf__agent_find(ctx->run->agent, state);
    if (t == PF__NONE) {
        if (ctx->goto_error == 0) {
            ctx->goto_error = PF_ENOTFOUND;
        }
        return PF_ENOTFOUND;
    }
    d = &ctx->run->agent->states[ctx->state];
    if (d->nnext != 0) {
        for (j = 0; j < d->nnext && d->next[j] != t; j++) {
        }
        if (j == d->nnext) {
            if (ctx->goto_error == 0) {
                ctx->goto_error = PF_EINVAL;
            }
            return PF_EINVAL;
        }
    }
    for (j = 0; j < ctx->ngotos; j++) {
        uint32_t g = j < PF__CTX_INLINE_GOTOS
                         ? ctx->inline_gotos[j]
                         : ctx->more[j - PF__CTX_INLINE_GOTOS];

        if (g == t) {
            return 0;
        }
    }
    if (ctx->ngotos < PF__CTX_INLINE_GOTOS) {
        ctx->inline_gotos[ctx->ngotos++] = t;
        return 0;
    }
    j = ctx->ngotos - PF__CTX_INLINE_GOTOS;
    if (j >= ctx->more_cap) {
        size_t cap = ctx->more_cap;

        if (pf__grow((void **)&ctx->more, &cap, (size_t)j + 1,
                     sizeof(uint32_t)) != 0) {
            return PF_ENOMEM;
        }
        ctx->more_cap = (uint32_t)cap;
    }
    ctx->more[j] = t;
    ctx->ngotos++;
    return 0;
}

const char *
pf_ctx_state_name(const pf_ctx_t *ctx)
{
    if (ctx == NULL || ctx->run == NULL) {
        return NULL;
    }
    return ctx->run->agent->states[ctx->state].name;
}

const char *
pf_ctx_agent_name(const pf_ctx_t *ctx)
{
    if (ctx == NULL || ctx->run == NULL) {
        return NULL;
    }
    return ctx->run->agent->name;
}

unsigned
pf_ctx_attempt(const pf_ctx_t *ctx)
{
    return ctx == NULL || ctx->run == NULL ? 0 : ctx->attempt;
}

pf_deadline_t
pf_ctx_deadline(const pf_ctx_t *ctx)
{
    if (ctx == NULL || ctx->run == NULL ||
        ctx->deadline_ns == PF_DEADLINE_NEVER_NS) {
        return pf_deadline_none();
    }
    return pf_deadline_at_ns(ctx->run->clock, ctx->deadline_ns);
}

/* The run's token, made on first use. */
static pf_token_t *
run_token(pf__run_t *r)
{
    pf_token_t *tok;

    pthread_mutex_lock(&r->lock);
    if (r->token == NULL) {
        pf_deadline_t d = r->deadline_ns == PF_DEADLINE_NEVER_NS
                              ? pf_deadline_none()
                              : pf_deadline_at_ns(r->clock, r->deadline_ns);

        if (pf_token_new(r->parent_token, &d, &r->token) != 0) {
            r->token = NULL;
        }
    }
    tok = r->token;
    pthread_mutex_unlock(&r->lock);
    /* Made after a cancellation that found no token: cancel it here (see
     * run_cancel, which reads the token under the same lock). */
    if (tok != NULL &&
        atomic_load_explicit(&r->cancel_reason, memory_order_seq_cst) != 0) {
        pf_token_cancel(tok);
    }
    return tok;
}

pf_token_t *
pf_ctx_token(pf_ctx_t *ctx)
{
    pf__run_t *r;
    pf__slot_t *s;
    pf_token_t *rt;
    pf_token_t *tok;
    pf_deadline_t d;

    if (ctx == NULL || ctx->run == NULL) {
        return NULL;
    }
    if (ctx->token != NULL) {
        return ctx->token;
    }
    r = ctx->run;
    s = &r->slots[ctx->state];
    rt = run_token(r);
    if (rt == NULL || ctx->deadline_ns == r->deadline_ns) {
        ctx->token = rt; /* no deadline of its own: the run's token */
        return rt;
    }
    d = pf_deadline_at_ns(r->clock, ctx->deadline_ns);
    if (pf_token_new(rt, &d, &tok) != 0) {
        return NULL;
    }
    ctx->token = tok;
    s->own_token = true;
    s->timer_kind = PF__TIMER_TOKEN;
    /* If the timer cannot be armed the token's own deadline still ends
     * waits given it in time; only its flag is not raised. */
    pf__exec_timer_arm(r->ex, &s->timer, ctx->deadline_ns);
    return tok;
}

bool
pf_ctx_is_cancelled(const pf_ctx_t *ctx)
{
    if (ctx == NULL || ctx->run == NULL) {
        return false;
    }
    if (atomic_load_explicit(&ctx->run->cancel_reason, memory_order_acquire) !=
        0) {
        return true;
    }
    if (ctx->token != NULL && pf_token_is_cancelled(ctx->token)) {
        return true;
    }
    return ctx->deadline_ns != PF_DEADLINE_NEVER_NS &&
           clock_now(ctx->run) >= ctx->deadline_ns;
}
