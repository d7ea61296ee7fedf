/* The timeout manager.
 *
 * Scopes: every thread has one list of the scopes it is inside, innermost
 * first, linking the caller's pf_timeout_scope_t structs through a
 * thread-local head pointer. Scopes of several managers share the list
 * (that is what keeps enter and leave strictly nested on a thread), and a
 * manager finds its own innermost scope by walking it past the others;
 * nesting is shallow, so the walk is a few pointer loads. A thread-local
 * head rather than a pthread key per manager: keys are few (1024 a
 * process), and an agent runtime may hold a manager per agent. The list
 * holds nothing but what the thread itself entered, so no other thread
 * ever reads it and no lock is needed. A manager's counters are atomics
 * that guard nothing but themselves: relaxed order. */
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "puffinflow/error.h"
#include "puffinflow/timeout.h"

#include "clock_impl.h"
#include "mem.h"
#include "timeutil.h"

/* name, token, clock, listener: immutable after _new. Counters: atomics. */
struct pf_timeout_manager {
    char *name;
    pf_token_t *token;
    const pf_clock_t *clock;
    pf_timeout_listener_fn listener;
    void *listener_arg;
    _Atomic uint64_t entered;
    _Atomic uint64_t left;
    _Atomic uint64_t timed_out;
    _Atomic uint64_t cancelled;
    _Atomic uint64_t deadline_exceeded;
};

/* The innermost scope this thread is inside, of any manager. */
static _Thread_local pf_timeout_scope_t *t_scopes;

void
pf_timeout_config_init(pf_timeout_config_t *cfg)
{
    if (cfg == NULL) {
        return;
    }
    cfg->name = "default";
    cfg->token = NULL;
    cfg->listener = NULL;
    cfg->listener_arg = NULL;
    cfg->clock = NULL;
}

int
pf_timeout_manager_new(const pf_timeout_config_t *cfg,
                       pf_timeout_manager_t **out)
{
    pf_timeout_manager_t *tm;

    if (cfg == NULL || out == NULL || cfg->name == NULL) {
        return PF_EINVAL;
    }
    tm = pf__calloc(1, sizeof(*tm));
    if (tm == NULL) {
        return PF_ENOMEM;
    }
    tm->name = pf__strdup(cfg->name);
    if (tm->name == NULL) {
        pf__free(tm);
        return PF_ENOMEM;
    }
    tm->token = cfg->token;
    tm->clock = pf__clock_norm(cfg->clock);
    tm->listener = cfg->listener;
    tm->listener_arg = cfg->listener_arg;
    atomic_init(&tm->entered, 0);
    atomic_init(&tm->left, 0);
    atomic_init(&tm->timed_out, 0);
    atomic_init(&tm->cancelled, 0);
    atomic_init(&tm->deadline_exceeded, 0);
    *out = tm;
    return 0;
}

void
pf_timeout_manager_free(pf_timeout_manager_t *tm)
{
    if (tm == NULL) {
        return;
    }
    pf__free(tm->name);
    pf__free(tm);
}

const char *
pf_timeout_manager_name(const pf_timeout_manager_t *tm)
{
    return tm == NULL ? NULL : tm->name;
}

static void
count(_Atomic uint64_t *c)
{
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

/* This thread's innermost scope of tm, or NULL. */
static pf_timeout_scope_t *
innermost(const pf_timeout_manager_t *tm)
{
    pf_timeout_scope_t *s;

    for (s = t_scopes; s != NULL; s = s->priv_outer) {
        if (s->priv_manager == tm) {
            return s;
        }
    }
    return NULL;
}

static void
notify(const pf_timeout_manager_t *tm, pf_timeout_event_kind_t kind,
       double seconds, double overrun)
{
    pf_timeout_event_t ev;

    if (tm->listener == NULL) {
        return;
    }
    ev.kind = kind;
    ev.manager_name = tm->name;
    ev.seconds = seconds;
    ev.overrun = overrun;
    tm->listener(&ev, tm->listener_arg);
}

static int
enter_until(pf_timeout_manager_t *tm, pf_timeout_scope_t *s,
            const pf_deadline_t *own, double seconds)
{
    pf_timeout_scope_t *outer = innermost(tm);
    pf_token_t *parent = outer != NULL ? outer->priv_token : tm->token;
    pf_deadline_t eff =
        pf_deadline_earlier(own, outer != NULL ? &outer->priv_deadline : NULL);
    pf_token_t *tok;
    int rc;

    if (pf_token_is_cancelled(parent)) {
        return PF_ECANCELED;
    }
    if (pf_deadline_expired(&eff)) {
        count(&tm->deadline_exceeded);
        notify(tm, PF_TIMEOUT_EVENT_DEADLINE_EXCEEDED, seconds, 0.0);
        return PF_EDEADLINE;
    }
    rc = pf_token_new(parent, &eff, &tok);
    if (rc != 0) {
        return rc;
    }
    if (pf_token_is_cancelled(tok)) { /* the parent was cancelled just now */
        pf_token_free(tok);
        return PF_ECANCELED;
    }
    s->priv_manager = tm;
    s->priv_token = tok;
    s->priv_deadline = eff;
    s->priv_seconds = seconds;
    s->priv_outer = t_scopes;
    t_scopes = s;
    count(&tm->entered);
    return 0;
}

int
pf_timeout_enter(pf_timeout_manager_t *tm, pf_timeout_scope_t *s,
                 double seconds)
{
    pf_deadline_t own;

    if (tm == NULL || s == NULL || isnan(seconds) || seconds < 0.0) {
        return PF_EINVAL;
    }
    own = pf_deadline_in(tm->clock, seconds); /* 0 s: already passed */
    return enter_until(tm, s, &own, seconds);
}

int
pf_timeout_enter_deadline(pf_timeout_manager_t *tm, pf_timeout_scope_t *s,
                          const pf_deadline_t *d)
{
    if (tm == NULL || s == NULL || d == NULL) {
        return PF_EINVAL;
    }
    return enter_until(tm, s, d, pf_deadline_remaining(d));
}

int
pf_timeout_leave(pf_timeout_manager_t *tm, pf_timeout_scope_t *s)
{
    int64_t over;
    int rc = 0;

    if (tm == NULL || s == NULL || s->priv_manager != tm) {
        return PF_EINVAL;
    }
    if (t_scopes != s) {
        return PF_ESTATE;
    }
    t_scopes = s->priv_outer;
    over = pf_deadline_is_none(&s->priv_deadline)
               ? -1
               : pf_clock_now_ns(s->priv_deadline.priv_clock) -
                     s->priv_deadline.priv_at_ns;
    if (pf_token_is_cancelled(s->priv_token)) {
        rc = PF_ECANCELED;
        count(&tm->cancelled);
    } else if (over >= 0) {
        rc = PF_ETIMEDOUT;
        count(&tm->timed_out);
    }
    pf_token_free(s->priv_token);
    s->priv_token = NULL;
    s->priv_manager = NULL;
    s->priv_outer = NULL;
    count(&tm->left);
    if (rc == PF_ETIMEDOUT) {
        notify(tm, PF_TIMEOUT_EVENT_EXPIRED, s->priv_seconds,
               pf__ns_to_secs(over));
    }
    return rc;
}

pf_deadline_t
pf_timeout_deadline(const pf_timeout_manager_t *tm)
{
    const pf_timeout_scope_t *s = tm == NULL ? NULL : innermost(tm);

    return s == NULL ? pf_deadline_none() : s->priv_deadline;
}

double
pf_timeout_remaining(const pf_timeout_manager_t *tm)
{
    pf_deadline_t d = pf_timeout_deadline(tm);

    return pf_deadline_remaining(&d);
}

pf_token_t *
pf_timeout_token(const pf_timeout_manager_t *tm)
{
    const pf_timeout_scope_t *s;

    if (tm == NULL) {
        return NULL;
    }
    s = innermost(tm);
    return s == NULL ? tm->token : s->priv_token;
}

int
pf_timeout_check(const pf_timeout_manager_t *tm)
{
    const pf_timeout_scope_t *s;

    if (tm == NULL) {
        return 0;
    }
    s = innermost(tm);
    if (s == NULL) {
        return pf_token_is_cancelled(tm->token) ? PF_ECANCELED : 0;
    }
    if (pf_token_is_cancelled(s->priv_token)) {
        return PF_ECANCELED;
    }
    return pf_deadline_expired(&s->priv_deadline) ? PF_ETIMEDOUT : 0;
}

unsigned
pf_timeout_depth(const pf_timeout_manager_t *tm)
{
    const pf_timeout_scope_t *s;
    unsigned n = 0;

    for (s = t_scopes; s != NULL && tm != NULL; s = s->priv_outer) {
        n += s->priv_manager == tm;
    }
    return n;
}

void
pf_timeout_manager_metrics(const pf_timeout_manager_t *tm,
                           pf_timeout_metrics_t *out)
{
    pf_timeout_manager_t *m = (pf_timeout_manager_t *)tm;

    if (tm == NULL || out == NULL) {
        return;
    }
    memset(out, 0, sizeof(*out));
    out->entered = atomic_load_explicit(&m->entered, memory_order_relaxed);
    out->left = atomic_load_explicit(&m->left, memory_order_relaxed);
    out->timed_out = atomic_load_explicit(&m->timed_out, memory_order_relaxed);
    out->cancelled = atomic_load_explicit(&m->cancelled, memory_order_relaxed);
    out->deadline_exceeded =
        atomic_load_explicit(&m->deadline_exceeded, memory_order_relaxed);
    /* Read left before entered would undercount; entered first may count
     * a scope entered and left in between as active: clamp. */
    out->active = out->entered > out->left ? out->entered - out->left : 0;
}
