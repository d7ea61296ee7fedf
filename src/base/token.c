/* Cancellation tokens.
 *
 * A token is a flag (atomic, so polling it is one load), a list of callback
 * registrations and a list of children, under the token's mutex. Cancel sets
 * the flag, runs the callbacks (pf_token_wait waits through one) one by one
 * with the lock released (recording which one runs, so unregister can wait
 * for it), then cancels the children one at a time, each pinned by a
 * reference while the lock is released.
 *
 * Lifetime: a token is reference-counted; the creator holds one reference
 * and every child holds one on its parent, so pf_token_free may be called on
 * a parent while children still use it. A token unlinks itself from its
 * parent when its last reference goes.
 *
 * Lock order: a parent's lock is never held while a child's is taken, nor
 * the reverse: each step above takes one token lock at a time. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "puffinflow/deadline.h"
#include "puffinflow/error.h"

#include "clock_impl.h"
#include "mem.h"
#include "timeutil.h"

/* deadline, parent: immutable after pf_token_new. cancelled: atomic, set
 * only under lock. refs: atomic. Everything else under lock; sibling links
 * under the parent's lock. */
struct pf_token {
    _Atomic int refs;
    atomic_bool cancelled;
    pf_deadline_t deadline;
    pf_token_t *parent;
    pthread_mutex_t lock;
    pthread_cond_t cv;          /* a running callback ended */
    pf_token_reg_t *regs;       /* callbacks not yet run */
    pf_token_reg_t *running;    /* the callback running now, if any */
    pthread_t running_thread;
    pf_token_t *children;
    pf_token_t *sib_next;
    pf_token_t *sib_prev;
};

static void
token_unref(pf_token_t *t)
{
    pf_token_t *p;

    /* acq_rel: the last owner must see every write of the others before it
     * destroys the token. */
    if (atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) != 1) {
        return;
    }
    p = t->parent;
    if (p != NULL) {
        pthread_mutex_lock(&p->lock);
        if (t->sib_prev != NULL) {
            t->sib_prev->sib_next = t->sib_next;
        } else {
            p->children = t->sib_next;
        }
        if (t->sib_next != NULL) {
            t->sib_next->sib_prev = t->sib_prev;
        }
        pthread_mutex_unlock(&p->lock);
    }
    pthread_cond_destroy(&t->cv);
    pthread_mutex_destroy(&t->lock);
    pf__free(t);
    if (p != NULL) {
        token_unref(p);
    }
}

/* Take a reference unless the count already reached 0 (the token is being
 * destroyed and only waits for the parent's lock to unlink itself). */
static bool
token_tryref(pf_token_t *t)
{
    int n = atomic_load_explicit(&t->refs, memory_order_relaxed);

    do {
        if (n == 0) {
            return false;
        }
    } while (!atomic_compare_exchange_weak_explicit(
        &t->refs, &n, n + 1, memory_order_relaxed, memory_order_relaxed));
    return true;
}

int
pf_token_new(pf_token_t *parent, const pf_deadline_t *deadline,
             pf_token_t **out)
{
    pf_token_t *t;
    int rc;

    if (out == NULL) {
        return PF_EINVAL;
    }
    t = pf__calloc(1, sizeof(*t));
    if (t == NULL) {
        return PF_ENOMEM;
    }
    if (pthread_mutex_init(&t->lock, NULL) != 0) {
        pf__free(t);
        return PF_ESYSTEM;
    }
    rc = pf__cond_init(&t->cv);
    if (rc != 0) {
        pthread_mutex_destroy(&t->lock);
        pf__free(t);
        return rc;
    }
    atomic_init(&t->refs, 1);
    atomic_init(&t->cancelled, false);
    t->deadline = deadline == NULL ? pf_deadline_none() : *deadline;
    if (parent != NULL) {
        t->deadline = pf_deadline_earlier(&t->deadline, &parent->deadline);
        atomic_fetch_add_explicit(&parent->refs, 1, memory_order_relaxed);
        t->parent = parent;
        pthread_mutex_lock(&parent->lock);
        /* Under the parent's lock: a cancel of the parent either set its
         * flag before (we are born cancelled) or will find us in the list. */
        if (atomic_load_explicit(&parent->cancelled, memory_order_relaxed)) {
            atomic_store_explicit(&t->cancelled, true, memory_order_release);
        }
        t->sib_next = parent->children;
        if (parent->children != NULL) {
            parent->children->sib_prev = t;
        }
        parent->children = t;
        pthread_mutex_unlock(&parent->lock);
    }
    *out = t;
    return 0;
}

void
pf_token_free(pf_token_t *t)
{
    if (t != NULL) {
        token_unref(t);
    }
}

bool
pf_token_is_cancelled(const pf_token_t *t)
{
    /* Acquire: whoever sees the flag also sees what the canceller wrote
     * before cancelling. */
    return t != NULL &&
           atomic_load_explicit(&t->cancelled, memory_order_acquire);
}

pf_deadline_t
pf_token_deadline(const pf_token_t *t)
{
    return t == NULL ? pf_deadline_none() : t->deadline;
}

/* The first child not yet cancelled, referenced; NULL when none is left. */
static pf_token_t *
next_uncancelled_child(pf_token_t *t)
{
    pf_token_t *c;

    pthread_mutex_lock(&t->lock);
    for (c = t->children; c != NULL; c = c->sib_next) {
        if (!atomic_load_explicit(&c->cancelled, memory_order_relaxed) &&
            token_tryref(c)) {
            break;
        }
    }
    pthread_mutex_unlock(&t->lock);
    return c;
}

void
pf_token_cancel(pf_token_t *t)
{
    pf_token_t *child;

    if (t == NULL) {
        return;
    }
    pthread_mutex_lock(&t->lock);
    if (atomic_load_explicit(&t->cancelled, memory_order_relaxed)) {
        pthread_mutex_unlock(&t->lock);
        return;
    }
    atomic_store_explicit(&t->cancelled, true, memory_order_release);
    while (t->regs != NULL) {
        pf_token_reg_t *r = t->regs;

        t->regs = r->priv_next;
        if (t->regs != NULL) {
            t->regs->priv_prev = NULL;
        }
        r->priv_linked = 0;
        t->running = r;
        t->running_thread = pthread_self();
        pthread_mutex_unlock(&t->lock);
        r->priv_fn(r->priv_arg);
        pthread_mutex_lock(&t->lock);
        t->running = NULL;
        pthread_cond_broadcast(&t->cv);
    }
    pthread_mutex_unlock(&t->lock);
    /* Each child cancelled leaves the "not cancelled" set, so this ends;
     * children born now are born cancelled. */
    while ((child = next_uncancelled_child(t)) != NULL) {
        pf_token_cancel(child);
        token_unref(child);
    }
}

int
pf_token_on_cancel(pf_token_t *t, pf_token_reg_t *reg, pf_token_fn fn,
                   void *arg)
{
    if (t == NULL || reg == NULL || fn == NULL) {
        return PF_EINVAL;
    }
    pthread_mutex_lock(&t->lock);
    if (atomic_load_explicit(&t->cancelled, memory_order_relaxed)) {
        pthread_mutex_unlock(&t->lock);
        reg->priv_token = NULL;
        reg->priv_linked = 0;
        return PF_ECANCELED;
    }
    reg->priv_fn = fn;
    reg->priv_arg = arg;
    reg->priv_token = t;
    reg->priv_linked = 1;
    reg->priv_prev = NULL;
    reg->priv_next = t->regs;
    if (t->regs != NULL) {
        t->regs->priv_prev = reg;
    }
    t->regs = reg;
    pthread_mutex_unlock(&t->lock);
    return 0;
}

void
pf_token_unregister(pf_token_reg_t *reg)
{
    pf_token_t *t;

    if (reg == NULL || reg->priv_token == NULL) {
        return;
    }
    t = reg->priv_token;
    pthread_mutex_lock(&t->lock);
    if (reg->priv_linked) {
        if (reg->priv_prev != NULL) {
            reg->priv_prev->priv_next = reg->priv_next;
        } else {
            t->regs = reg->priv_next;
        }
        if (reg->priv_next != NULL) {
            reg->priv_next->priv_prev = reg->priv_prev;
        }
        reg->priv_linked = 0;
    } else {
        while (t->running == reg &&
               !pthread_equal(t->running_thread, pthread_self())) {
            pthread_cond_wait(&t->cv, &t->lock);
        }
    }
    pthread_mutex_unlock(&t->lock);
}
