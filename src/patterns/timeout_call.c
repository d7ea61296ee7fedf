/* Timed calls: run work under a timeout.
 *
 * The caller and a helper share a record (reference-counted: one each).
 * The helper is a task on the shared worker pool (pool.h): a thread there
 * is reused from call to call, so a timed call costs a wake-up, not a
 * thread. fn runs on the helper; the caller waits
 * for it on the record's condition variable through pf__wait_until, so the
 * wait honours a manual clock and the parent token. Whoever settles the
 * record's state first under its mutex decides the outcome: the helper
 * marks it FINISHED when fn returns, the caller marks it ABANDONED when its
 * wait runs out. On FINISHED the helper hands its reference over and never
 * touches the record again, so the caller frees it and runs the completion
 * hook before returning: nothing of an in-time call outlives it. On
 * ABANDONED the caller cancels fn's token (still holding its reference,
 * since the token lives in the record) and leaves, and the helper runs the
 * hook when fn returns, after dropping its reference, so the hook may free
 * anything.
 *
 * Never started. When every pool thread is busy and the pool is at its
 * cap, the helper waits in the pool's queue. If the caller gives up while
 * it is still there, it takes the task back (pf__pool_cancel_starved; below
 * the cap a thread is on its way and fn runs as usual): fn never runs, the
 * caller holds both references, and the hook runs on the calling thread
 * with the caller's result, as for a call that could not start. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "puffinflow/error.h"
#include "puffinflow/timeout.h"

#include "clock_impl.h"
#include "mem.h"
#include "pool.h"
#include "timeutil.h"
#include "wait.h"

enum { CALL_RUNNING, CALL_FINISHED, CALL_ABANDONED };

/* fn, arg, deadline, token, hook: immutable once the helper starts.
 * state and result under mu. refs: atomic. */
typedef struct timed_call {
    pf__pool_task_t task; /* the pool's until the helper starts */
    pf__pool_t *pool;
    _Atomic int refs;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int state;
    int result;
    pf_deadline_t deadline;
    pf_token_t *token;
    pf_deadline_fn fn;
    void *arg;
    pf_timeout_done_fn done;
    void *done_arg;
} timed_call_t;

static void
call_destroy(timed_call_t *c)
{
    pf_token_free(c->token);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    pf__free(c);
}

static void
call_unref(timed_call_t *c)
{
    /* acq_rel: the last owner sees every write of the other before it
     * frees the record. */
    if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1) {
        return;
    }
    call_destroy(c);
}

static void
helper_main(void *p)
{
    timed_call_t *c = p;
    pf_timeout_done_fn done = c->done;
    void *done_arg = c->done_arg;
    int rc = c->fn(&c->deadline, c->token, c->arg);
    bool abandoned;

    pthread_mutex_lock(&c->mu);
    abandoned = c->state == CALL_ABANDONED;
    if (!abandoned) {
        c->state = CALL_FINISHED;
        c->result = rc;
        pthread_cond_broadcast(&c->cv);
    }
    pthread_mutex_unlock(&c->mu);
    if (!abandoned) {
        /* FINISHED hands our reference to the caller, who frees the record
         * as soon as it sees the state: not touching c after the unlock
         * means nothing of the call outlives pf_timeout_call_ex. */
        return;
    }
    call_unref(c);
    /* The record may be gone now: the hook gets copies only. */
    if (done != NULL) {
        done(rc, done_arg);
    }
}

void
pf_timeout_opts_init(pf_timeout_opts_t *o)
{
    if (o == NULL) {
        return;
    }
    o->clock = NULL;
    o->parent = NULL;
    o->on_complete = NULL;
    o->on_complete_arg = NULL;
}

/* Return rc after running the hook (fn never started, or finished in
 * time). */
static int
finish(const pf_timeout_opts_t *o, int rc)
{
    if (o->on_complete != NULL) {
        o->on_complete(rc, o->on_complete_arg);
    }
    return rc;
}

/* fn on the calling thread: no limit and nothing to wake the caller. */
static int
call_inline(pf_deadline_fn fn, void *arg, const pf_timeout_opts_t *o)
{
    pf_deadline_t none = pf_deadline_none();
    pf_token_t *tok;
    int rc = pf_token_new(NULL, NULL, &tok);

    if (rc != 0) {
        return finish(o, rc);
    }
    rc = fn(&none, tok, arg);
    pf_token_free(tok);
    return finish(o, rc);
}

static int
call_new(pf_deadline_fn fn, void *arg, const pf_timeout_opts_t *o,
         const pf_deadline_t *d, timed_call_t **out)
{
    timed_call_t *c = pf__calloc(1, sizeof(*c));
    int rc;

    if (c == NULL) {
        return PF_ENOMEM;
    }
    if (pthread_mutex_init(&c->mu, NULL) != 0) {
        pf__free(c);
        return PF_ESYSTEM;
    }
    rc = pf__cond_init(&c->cv);
    if (rc == 0) {
        rc = pf_token_new(o->parent, d, &c->token);
        if (rc != 0) {
            pthread_cond_destroy(&c->cv);
        }
    }
    if (rc != 0) {
        pthread_mutex_destroy(&c->mu);
        pf__free(c);
        return rc;
    }
    atomic_init(&c->refs, 2); /* the caller's and the helper's */
    c->state = CALL_RUNNING;
    c->deadline = pf_token_deadline(c->token); /* own and parent's */
    c->fn = fn;
    c->arg = arg;
    c->done = o->on_complete;
    c->done_arg = o->on_complete_arg;
    *out = c;
    return 0;
}

/* Wait for c; returns with the outcome settled. */
static int
await_call(timed_call_t *c, const pf_timeout_opts_t *o, bool *finished)
{
    const pf_clock_t *clock = c->deadline.priv_clock;
    int wrc = 0;
    int rc;

    pthread_mutex_lock(&c->mu);
    while (c->state == CALL_RUNNING) {
        wrc = pf__wait_until(&c->cv, &c->mu, clock, c->deadline.priv_at_ns,
                             o->parent);
        if (wrc != 0 && c->state == CALL_RUNNING) {
            c->state = CALL_ABANDONED;
        }
    }
    *finished = c->state == CALL_FINISHED;
    rc = *finished ? c->result
                   : (wrc == PF_ECANCELED ? PF_ECANCELED : PF_ETIMEDOUT);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int
pf_timeout_call_ex(double seconds, pf_deadline_fn fn, void *arg,
                   const pf_timeout_opts_t *opts)
{
    pf_timeout_opts_t none;
    const pf_timeout_opts_t *o = opts;
    pf_deadline_t d;
    timed_call_t *c;
    bool finished;
    int rc;

    if (o == NULL) {
        pf_timeout_opts_init(&none);
        o = &none;
    }
    if (fn == NULL || isnan(seconds) || seconds < 0.0) {
        return finish(o, PF_EINVAL);
    }
    if (pf_token_is_cancelled(o->parent)) {
        return finish(o, PF_ECANCELED);
    }
    if (isinf(seconds) && o->parent == NULL) {
        return call_inline(fn, arg, o);
    }
    d = pf_deadline_in(o->clock, seconds);
    {
        pf_deadline_t pd = pf_token_deadline(o->parent);
        pf_deadline_t eff = pf_deadline_earlier(&d, &pd);

        if (pf_deadline_expired(&eff)) {
            return finish(o, PF_EDEADLINE);
        }
    }
    rc = call_new(fn, arg, o, &d, &c);
    if (rc != 0) {
        return finish(o, rc);
    }
    c->pool = pf__pool_default();
    rc = c->pool == NULL ? PF_ESYSTEM
                         : pf__pool_submit(c->pool, &c->task, helper_main, c);
    if (rc != 0) {
        call_destroy(c);
        return finish(o, rc);
    }
    rc = await_call(c, o, &finished);
    if (!finished && pf__pool_cancel_starved(c->pool, &c->task)) {
        /* fn never started and never will: both references are ours. */
        call_destroy(c);
        return finish(o, rc);
    }
    if (!finished) {
        /* Before dropping our reference: the token lives in the record. */
        pf_token_cancel(c->token);
        call_unref(c);
        return rc;
    }
    call_unref(c); /* ours ... */
    call_unref(c); /* ... and the one the helper handed over: frees */
    return finish(o, rc);
}

int
pf_timeout_call(double seconds, pf_deadline_fn fn, void *arg)
{
    return pf_timeout_call_ex(seconds, fn, arg, NULL);
}
