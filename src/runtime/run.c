/* Runs: their lifetime and their results.
 *
 * A run object holds one slot per state, preallocated and reused (the
 * agent keeps a few finished run objects), so a run allocates nothing once
 * warm. run_start takes one, resets it, arms the run's deadline and
 * registers with the caller's token; the entry states are then driven by
 * the scheduler (schedule.c): a blocking run drives the first on the
 * calling thread and helps with the rest, an asynchronous one queues them
 * all. The thread whose activation was the run's last one ends the run
 * (finish): it settles the states that never started, sums the results
 * into the agent's metrics, tells on_done and releases the waiters.
 *
 * Cancellation (pf_run_cancel, the caller's token, the run's deadline)
 * sets cancel_reason once, cancels the run's token and has the scheduler
 * take back every parked slot; running states see it through their
 * context.
 *
 * Lifetime: a run has references: the caller's (its handle or result) and
 * the execution's, dropped by the thread that ends the run in the same
 * locked step that releases its waiters (so once a wait returns, nothing
 * of the run is in flight); the last reference returns the object to the
 * agent's cache. Each run object holds a reference to its agent, so an
 * agent freed while a result or handle is still held stays readable; for
 * the same reason pf_agent_free lives here: it must first empty the cache,
 * whose objects hold references to the agent. */
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "puffinflow/agent.h"
#include "puffinflow/error.h"

#include "agent_impl.h"
#include "context_impl.h"
#include "executor_impl.h"
#include "mem.h"
#include "run_impl.h"
#include "schedule_impl.h"
#include "timeutil.h"

/* A closed entry of a's run cache: a's own address, never a run object's
 * (both come from the allocator, suitably aligned for any type). */
#define CACHE_CLOSED(a) ((pf__run_t *)(void *)(a))

static void deadline_timer_fn(pf__timer_t *t);
static void activation_task_fn(pf__task_t *t);

/* ---- run objects --------------------------------------------------------- */

static pf__run_t *
run_alloc(pf_agent_t *a)
{
    pf__run_t *r = pf__calloc(1, sizeof(*r) + a->nstates * sizeof(pf__slot_t));
    uint32_t i;

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
        pf__sched_init_slot(r, i, activation_task_fn);
    }
    return r;
}

/* Free a run object for good (the agent is being freed, or the cache is
 * full). */
static void
run_destroy(pf__run_t *r)
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
    /* r holds a reference to a until the compare-and-swap below hands r
     * to the cache; from then on the drain may destroy r and free a, so
     * nothing of either is touched after it. A drain that came first has
     * left every entry CLOSED: the swap fails and r is destroyed here. */
    if (!atomic_load_explicit(&a->closing, memory_order_relaxed)) {
        for (i = 0; i < PF__RUN_CACHE; i++) {
            pf__run_t *expected = NULL;

            /* Release: whoever takes r from the cache sees it reset. */
            if (atomic_load_explicit(&a->cache[i], memory_order_relaxed) ==
                    NULL &&
                atomic_compare_exchange_strong_explicit(&a->cache[i], &expected,
                                                        r, memory_order_release,
                                                        memory_order_relaxed)) {
                return;
            }
        }
    }
    run_destroy(r);
}

/* Drop one reference to r; the last one returns it to the agent's cache
 * (or frees it). */
static void
run_unref(pf__run_t *r)
{
    /* acq_rel: the last owner sees every other owner's writes. */
    if (atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) == 1) {
        run_release(r);
    }
}

/* Destroy the run objects in a's cache and close every entry, so a run
 * object released later is destroyed instead of cached (run_release). */
static void
drain_cache(pf_agent_t *a)
{
    size_t i;

    for (i = 0; i < PF__RUN_CACHE; i++) {
        pf__run_t *r = atomic_exchange_explicit(&a->cache[i], CACHE_CLOSED(a),
                                                memory_order_acquire);

        if (r != NULL && r != CACHE_CLOSED(a)) {
            run_destroy(r);
        }
    }
}

void
pf_agent_free(pf_agent_t *a)
{
    if (a == NULL) {
        return;
    }
    /* Only a hint for run_release (do not even try the cache): the closed
     * entries are what keeps a run object from being stranded there. */
    atomic_store_explicit(&a->closing, true, memory_order_relaxed);
    drain_cache(a);
    pf__agent_unref(a);
}

/* Reset r for a new run. The run is published to other threads by the
 * executor's lock (pushes) or by the caller, so plain stores suffice. */
static void
run_prepare(pf__run_t *r, pf_ctx_t *ctx, const pf_run_opts_t *opts, bool async)
{
    pf_agent_t *a = r->agent;

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
    r->on_done = async && opts != NULL ? opts->on_done : NULL;
    r->on_done_arg = opts == NULL ? NULL : opts->on_done_arg;
    r->caller_finished = false;
    r->status = 0;
    r->start_ns = 0;
    r->end_ns = 0;
    memset(&r->summary, 0, sizeof(r->summary));
    pf__sched_reset(r);
}

/* ---- cancellation -------------------------------------------------------- */

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
        pf__sched_cancel_parked(r, &r->slots[i]);
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

static void finish(pf__run_t *r, bool on_caller);

/* A queued activation: the executor runs it on a worker (or on the thread
 * waiting for the run). */
static void
activation_task_fn(pf__task_t *t)
{
    pf__slot_t *s = (pf__slot_t *)((char *)t - offsetof(pf__slot_t, task));
    pf__run_t *r = s->ctx.run;

    if (pf__sched_drive(r, s->ctx.state)) {
        finish(r, false);
    }
}

/* ---- ending a run -------------------------------------------------------- */

/* How a state that never started ended, from its dependencies (already
 * settled: states are visited in dependency order). Skipped when one
 * failed, fell back or was skipped: it could not have run. Cancelled when
 * the others completed and some were cancelled: the run's cancellation or
 * deadline stopped it, as it stops a ready state. Not run otherwise. */
static int
never_started_outcome(const pf__run_t *r, const pf__state_t *d)
{
    int outcome = PF_STATE_NOT_RUN;
    uint32_t j;

    for (j = 0; j < d->ndeps; j++) {
        switch (r->slots[d->deps[j]].outcome) {
        case PF_STATE_FAILED:
        case PF_STATE_FELL_BACK:
        case PF_STATE_SKIPPED:
            return PF_STATE_SKIPPED;
        case PF_STATE_CANCELLED:
            outcome = PF_STATE_CANCELLED;
            break;
        default:
            break;
        }
    }
    return outcome;
}

/* Fill r->summary and r->status; settle the states that never started. */
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

        if (s->outcome == PF_STATE_NOT_RUN) {
            s->outcome = (uint8_t)never_started_outcome(r, d);
            if (s->outcome == PF_STATE_CANCELLED) {
                /* Only a cancelled run has cancelled states. */
                s->error = atomic_load_explicit(&r->cancel_reason,
                                                memory_order_acquire);
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
        sum->dead_letters += s->dl_order != 0;
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

/* The run whose on_done this thread is calling, if any: a pf_run_wait on
 * it from there returns at once (its waiters are released only after
 * on_done returns, so waiting for that would never end). */
static _Thread_local const pf__run_t *tl_finishing;

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
        r->end_ns = pf__run_now(r);
    }
    summarize(r);
    pf__run_emit(r, PF_AGENT_EVENT_RUN_DONE, PF__NONE, r->status, 0, 0.0);
    /* Release: whoever sees done sees the summary. */
    atomic_store_explicit(&r->done, true, memory_order_release);
    if (r->on_done != NULL) {
        const pf__run_t *outer = tl_finishing;

        tl_finishing = r;
        r->on_done(r, r->on_done_arg);
        tl_finishing = outer;
    }
    if (on_caller) {
        r->caller_finished = true; /* nobody else waits for this run */
        run_unref(r);
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
        r->start_ns = pf__run_now(r);
    }
    if (ns != 0 && ns != INT64_MAX) {
        r->deadline_ns = pf__add_sat(r->start_ns, ns);
        if (pf__exec_timer_arm(r->ex, &r->deadline_timer, r->deadline_ns) !=
            0) {
            atomic_store_explicit(&r->refs, 1, memory_order_relaxed);
            run_unref(r);
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
    r->id =
        atomic_fetch_add_explicit(&a->runs_started, 1, memory_order_relaxed) +
        1;
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
pf_agent_run_ex(pf_agent_t *a, pf_ctx_t *ctx, const pf_run_opts_t *opts,
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
        if (pf__sched_drive(r, a->entries[0])) {
            finish(r, true);
        }
    }
    if (!r->caller_finished) {
        pf__exec_help(r->ex, &r->group, NULL);
    }
    status = r->status;
    if (out != NULL) {
        fill_result(r, out); /* the caller's reference goes with it */
    } else {
        run_unref(r);
    }
    return status;
}

int
pf_agent_run(pf_agent_t *a, pf_ctx_t *ctx, pf_run_result_t *out)
{
    return pf_agent_run_ex(a, ctx, NULL, out);
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
     * ends once the finishing thread has let go of the run. Except on that
     * thread, from the run's own on_done: the run has ended, and the
     * finishing thread holds its reference until on_done returns. */
    if (run != tl_finishing &&
        pf__exec_help(run->ex, &run->group, d) == PF_ETIMEDOUT) {
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
        run_unref(run);
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
        run_unref(res->priv_run);
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
    out->dead_letter = s->dl_order != 0;
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

        if (s->dl_order == i + 1) {
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

/* ---- metrics ------------------------------------------------------------- */

void
pf_agent_metrics(pf_agent_t *a, pf_agent_metrics_t *out)
{
    uint64_t started;
    uint64_t finished;

    if (a == NULL || out == NULL) {
        return;
    }
    memset(out, 0, sizeof(*out));
    out->states = a->nstates;
    /* Relaxed: independent counters, a snapshot may be a run apart. Read
     * finished first so active never goes below zero. */
    finished = atomic_load_explicit(&a->runs_finished, memory_order_relaxed);
    started = atomic_load_explicit(&a->runs_started, memory_order_relaxed);
    out->runs_started = started;
    out->runs_finished = finished;
    out->runs_active = started >= finished ? started - finished : 0;
    out->runs_failed =
        atomic_load_explicit(&a->runs_failed, memory_order_relaxed);
    out->states_completed =
        atomic_load_explicit(&a->states_completed, memory_order_relaxed);
    out->states_failed =
        atomic_load_explicit(&a->states_failed, memory_order_relaxed);
    out->retries = atomic_load_explicit(&a->retries, memory_order_relaxed);
    out->rejections =
        atomic_load_explicit(&a->rejections, memory_order_relaxed);
    out->timeouts = atomic_load_explicit(&a->timeouts, memory_order_relaxed);
    out->fallbacks = atomic_load_explicit(&a->fallbacks, memory_order_relaxed);
    out->dead_letters =
        atomic_load_explicit(&a->dead_letters, memory_order_relaxed);
}
