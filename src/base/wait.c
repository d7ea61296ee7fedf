/* The timed wait. On the system clock it is pthread_cond_timedwait on
 * CLOCK_MONOTONIC. On a manual clock the thread links itself into the
 * clock's waiter list and sleeps untimed; an advance past its deadline
 * signals it (clock.c). A token, when given, gets a callback registered for
 * the length of the wait that signals cv under mu, so a cancel wakes the
 * waiter at once.
 *
 * After waking, the clock entry and the token registration are removed with
 * mu released: removing either may have to wait for a waker that is about to
 * take mu, and holding mu then would deadlock. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <time.h>

#include "puffinflow/deadline.h"
#include "puffinflow/error.h"

#include "clock_impl.h"
#include "timeutil.h"
#include "wait.h"

typedef struct wake {
    pthread_cond_t *cv;
    pthread_mutex_t *mu;
} wake_t;

static void
wake_on_cancel(void *arg)
{
    wake_t *w = arg;

    pthread_mutex_lock(w->mu);
    pthread_cond_broadcast(w->cv);
    pthread_mutex_unlock(w->mu);
}

static int
timed_wait_system(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t deadline)
{
    struct timespec ts;

    if (deadline == PF_DEADLINE_NEVER_NS) {
        return pthread_cond_wait(cv, mu);
    }
    ts.tv_sec = (time_t)(deadline / PF_NS_PER_SEC);
    ts.tv_nsec = (long)(deadline % PF_NS_PER_SEC);
    return pthread_cond_timedwait(cv, mu, &ts);
}

int
pf__wait_until(pthread_cond_t *cv, pthread_mutex_t *mu,
               const pf_clock_t *clock, int64_t deadline_ns, pf_token_t *tok)
{
    pf_clock_t *c = (pf_clock_t *)pf__clock_norm(clock);
    bool manual = c->kind == PF__CLOCK_MANUAL;
    pf__clock_waiter_t entry;
    bool linked = false;
    pf_token_reg_t reg = {0};
    bool registered = false;
    wake_t wk = {cv, mu};

    if (tok != NULL) {
        int64_t tok_deadline = pf__token_deadline_on(tok, c);

        if (pf_token_is_cancelled(tok)) {
            return PF_ECANCELED;
        }
        if (tok_deadline < deadline_ns) {
            deadline_ns = tok_deadline;
        }
    }
    if (pf_clock_now_ns(c) >= deadline_ns) {
        return PF_ETIMEDOUT;
    }
    if (tok != NULL) {
        if (pf_token_on_cancel(tok, &reg, wake_on_cancel, &wk) != 0) {
            return PF_ECANCELED;
        }
        registered = true;
    }
    if (manual) {
        entry.cv = cv;
        entry.mu = mu;
        entry.deadline_ns = deadline_ns;
        entry.wake = NULL;
        linked = pf__clock_link_waiter(c, &entry);
        if (linked) {
            pthread_cond_wait(cv, mu);
        }
    } else {
        timed_wait_system(cv, mu, deadline_ns);
    }
    if (linked || registered) {
        pthread_mutex_unlock(mu);
        if (linked) {
            pf__clock_unlink_waiter(c, &entry);
        }
        if (registered) {
            pf_token_unregister(&reg);
        }
        pthread_mutex_lock(mu);
    }
    if (tok != NULL && pf_token_is_cancelled(tok)) {
        return PF_ECANCELED;
    }
    if (pf_clock_now_ns(c) >= deadline_ns) {
        return PF_ETIMEDOUT;
    }
    return 0;
}

int64_t
pf__token_deadline_on(const pf_token_t *tok, const pf_clock_t *clock)
{
    pf_deadline_t own;

    if (tok == NULL) {
        return PF_DEADLINE_NEVER_NS;
    }
    own = pf_token_deadline(tok);
    if (pf_deadline_is_none(&own)) {
        return PF_DEADLINE_NEVER_NS;
    }
    return pf__deadline_on(&own, clock, pf_clock_now_ns(clock));
}

int
pf_token_wait(pf_token_t *t, const pf_deadline_t *d)
{
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv;
    pf_deadline_t own;
    pf_deadline_t until;
    int rc;

    if (t == NULL) {
        return PF_EINVAL;
    }
    rc = pf__cond_init(&cv);
    if (rc != 0) {
        return rc;
    }
    /* Wait on the clock of the earlier deadline, so a token whose deadline
     * is on a manual clock wakes when that clock is advanced. */
    own = pf_token_deadline(t);
    until = pf_deadline_earlier(d, &own);
    pthread_mutex_lock(&mu);
    do {
        rc = pf__wait_until(&cv, &mu, until.priv_clock, until.priv_at_ns, t);
    } while (rc == 0);
    pthread_mutex_unlock(&mu);
    pthread_cond_destroy(&cv);
    pthread_mutex_destroy(&mu);
    return rc;
}

int
pf_clock_sleep(const pf_clock_t *c, double seconds)
{
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv;
    int64_t ns;
    int64_t deadline;
    int rc;

    rc = pf__secs_to_ns(seconds, &ns);
    if (rc != 0) {
        return rc;
    }
    rc = pf__cond_init(&cv);
    if (rc != 0) {
        return rc;
    }
    deadline = pf__add_sat(pf_clock_now_ns(c), ns);
    pthread_mutex_lock(&mu);
    while (pf__wait_until(&cv, &mu, c, deadline, NULL) != PF_ETIMEDOUT) {
    }
    pthread_mutex_unlock(&mu);
    pthread_cond_destroy(&cv);
    pthread_mutex_destroy(&mu);
    return 0;
}
