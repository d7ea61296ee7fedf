/* Backoff and retry policies.
 *
 * The backoff is pure arithmetic on caller memory: the delay before retry
 * attempt + 1 is initial * multiplier^attempt (ldexp when the multiplier is
 * 2, the default, which is exact and cheaper than pow), capped, then spread
 * by one random draw from the caller's SplitMix64 state.
 *
 * The retry decision (pf_retry_next) is a function of the policy, a small
 * caller-owned state and the time passed in: it never reads a clock of its
 * own and never sleeps, so an event loop or the agent runtime can drive it
 * with timers. pf_retry_call is that decision plus a wait through
 * pf__wait_until, so it honours a manual clock and the policy's token.
 *
 * The first attempt is kept cheap: pf_retry_call validates the policy (a
 * few comparisons) and calls; only when the policy has a token, a budget,
 * a deadline or max_elapsed does it do anything before, and only a
 * deadline or max_elapsed needs a clock read. The state is set up after a
 * failure, when the cost no longer matters. */
#include <math.h>
#include <pthread.h>
#include <stddef.h>

#include "puffinflow/error.h"
#include "puffinflow/retry.h"

#include "clock_impl.h"
#include "rng.h"
#include "timeutil.h"
#include "wait.h"

/* ---- backoff ----------------------------------------------------------- */

/* The defaults, once: pf_backoff_init copies them, and a policy with no
 * backoff of its own uses them. */
static const pf_backoff_t g_default_backoff = {
    .initial_delay = 1.0,
    .multiplier = 2.0,
    .max_delay = 60.0,
    .jitter = PF_JITTER_EQUAL,
};

void
pf_backoff_init(pf_backoff_t *b)
{
    if (b == NULL) {
        return;
    }
    *b = g_default_backoff;
}

/* The backoff a policy uses: its own, or the defaults when it has none. */
static const pf_backoff_t *
policy_backoff(const pf_retry_policy_t *p)
{
    return p->backoff != NULL ? p->backoff : &g_default_backoff;
}

/* Comparisons written so that NaN fails each of them. */
static bool
backoff_valid(const pf_backoff_t *b)
{
    return b->initial_delay >= 0.0 && isfinite(b->initial_delay) &&
           b->multiplier >= 1.0 && isfinite(b->multiplier) &&
           b->max_delay >= b->initial_delay &&
           (unsigned)b->jitter <= (unsigned)PF_JITTER_DECORRELATED;
}

int
pf_backoff_validate(const pf_backoff_t *b)
{
    return b != NULL && backoff_valid(b) ? 0 : PF_EINVAL;
}

/* min(max_delay, initial * multiplier^attempt) for a valid b. */
static double
backoff_base(const pf_backoff_t *b, unsigned attempt)
{
    double d;

    if (b->initial_delay == 0.0) {
        return 0.0; /* also keeps 0 * inf (a huge power) from making NaN */
    }
    if (b->multiplier == 2.0) {
        /* A shift and an int-to-double conversion are exact and cheaper
         * than ldexp; past 2^1100 every finite delay overflows to inf. */
        d = attempt < 63 ? b->initial_delay * (double)(UINT64_C(1) << attempt)
                         : ldexp(b->initial_delay,
                                 attempt > 1100 ? 1100 : (int)attempt);
    } else if (b->multiplier == 1.0) {
        d = b->initial_delay;
    } else {
        d = b->initial_delay * pow(b->multiplier, (double)attempt);
    }
    return d < b->max_delay ? d : b->max_delay;
}

/* A draw in [0, 1), or just below 1 without a state: "the largest delay". */
static double
draw(uint64_t *rng)
{
    return rng == NULL ? 1.0 : pf__rng_double(rng);
}

/* pf_backoff_next for a valid b. */
static double
backoff_draw(const pf_backoff_t *b, unsigned attempt, double prev_delay,
             uint64_t *rng_state)
{
    double d;
    double hi;

    switch (b->jitter) {
    case PF_JITTER_NONE:
        return backoff_base(b, attempt);
    case PF_JITTER_FULL:
        return backoff_base(b, attempt) * draw(rng_state);
    case PF_JITTER_EQUAL:
        return backoff_base(b, attempt) * (0.5 + draw(rng_state) * 0.5);
    case PF_JITTER_DECORRELATED:
        /* Decorrelated jitter: uniform between the initial delay and three
         * times the previous one. !(>=) also catches NaN. */
        if (!(prev_delay >= b->initial_delay)) {
            prev_delay = b->initial_delay;
        }
        hi = prev_delay * 3.0;
        if (!(hi <= b->max_delay)) {
            hi = b->max_delay;
        }
        d = b->initial_delay + (hi - b->initial_delay) * draw(rng_state);
        return d < b->max_delay ? d : b->max_delay;
    }
    return 0.0;
}

double
pf_backoff_next(const pf_backoff_t *b, unsigned attempt, double prev_delay,
                uint64_t *rng_state)
{
    if (b == NULL || !backoff_valid(b)) {
        return 0.0;
    }
    return backoff_draw(b, attempt, prev_delay, rng_state);
}

double
pf_exponential_backoff(const pf_backoff_t *b, unsigned attempt,
                       uint64_t *rng_state)
{
    double prev;

    if (b == NULL || !backoff_valid(b)) {
        return 0.0;
    }
    if (b->jitter != PF_JITTER_DECORRELATED) {
        return backoff_draw(b, attempt, 0.0, rng_state);
    }
    prev = attempt == 0 ? b->initial_delay : backoff_base(b, attempt - 1);
    return backoff_draw(b, attempt, prev, rng_state);
}

/* ---- policy ------------------------------------------------------------ */

void
pf_retry_policy_init(pf_retry_policy_t *p)
{
    if (p == NULL) {
        return;
    }
    p->max_retries = 3;
    p->backoff = NULL;
    p->retry_on = NULL;
    p->retry_on_len = 0;
    p->is_retryable = NULL;
    p->is_retryable_arg = NULL;
    p->max_elapsed = 0.0;
    p->deadline = pf_deadline_none();
    p->token = NULL;
    p->budget = NULL;
    p->listener = NULL;
    p->listener_arg = NULL;
    p->seed = 0;
    p->clock = NULL;
}

static bool
policy_valid(const pf_retry_policy_t *p)
{
    /* max_elapsed: >= 0 and not NaN (infinity means no limit too). */
    return backoff_valid(policy_backoff(p)) && p->max_elapsed >= 0.0 &&
           (p->retry_on != NULL || p->retry_on_len == 0);
}

int
pf_retry_policy_validate(const pf_retry_policy_t *p)
{
    return p != NULL && policy_valid(p) ? 0 : PF_EINVAL;
}

bool
pf_retry_is_retryable(const pf_retry_policy_t *p, int result)
{
    if (p == NULL || result == 0) {
        return false;
    }
    if (p->retry_on_len > 0) {
        size_t i;

        for (i = 0; i < p->retry_on_len; i++) {
            if (p->retry_on[i] == result) {
                break;
            }
        }
        if (i == p->retry_on_len) {
            return false;
        }
    }
    if (p->is_retryable != NULL) {
        return p->is_retryable(result, p->is_retryable_arg);
    }
    if (p->retry_on_len > 0) {
        return true;
    }
    return result != PF_EOPEN && result != PF_ECANCELED &&
           result != PF_EDEADLINE;
}

const char *
pf_retry_stop_name(pf_retry_stop_t stop)
{
    switch (stop) {
    case PF_RETRY_STOP_NONE:
        return "none";
    case PF_RETRY_STOP_SUCCESS:
        return "success";
    case PF_RETRY_STOP_NOT_RETRYABLE:
        return "not retryable";
    case PF_RETRY_STOP_EXHAUSTED:
        return "retries exhausted";
    case PF_RETRY_STOP_ELAPSED:
        return "max elapsed time";
    case PF_RETRY_STOP_DEADLINE:
        return "deadline";
    case PF_RETRY_STOP_CANCELED:
        return "cancelled";
    case PF_RETRY_STOP_BUDGET:
        return "retry budget";
    case PF_RETRY_STOP_LISTENER:
        return "stopped by listener";
    case PF_RETRY_STOP_INVALID:
        return "invalid argument";
    case PF_RETRY_STOP_SYSTEM:
        return "system error";
    }
    return "unknown";
}

/* ---- the decision ------------------------------------------------------ */

/* The earliest instant, on clock c, at which no attempt may start: the
 * policy's deadline and the token's, converted through the time remaining
 * when on another clock. PF_DEADLINE_NEVER_NS for none. */
static int64_t
limit_on(const pf_retry_policy_t *p, const pf_clock_t *c, int64_t now)
{
    int64_t at = pf__token_deadline_on(p->token, c);
    int64_t d;

    if (pf_deadline_is_none(&p->deadline)) {
        return at;
    }
    if (pf__clock_norm(p->deadline.priv_clock) == c) {
        d = p->deadline.priv_at_ns;
    } else {
        d = pf__add_sat(now, pf_deadline_remaining_ns(&p->deadline));
    }
    return d < at ? d : at;
}

static void
state_reset(const pf_retry_policy_t *p, pf_retry_state_t *st, int64_t now)
{
    st->priv_attempts = 0;
    st->priv_last_result = 0;
    st->priv_stop = PF_RETRY_STOP_NONE;
    st->priv_budget_refused = false;
    st->priv_start_ns = now;
    st->priv_delayed_ns = 0;
    st->priv_prev_delay = policy_backoff(p)->initial_delay;
    /* 0: seeded when the first delay is drawn. A fresh seed costs a clock
     * read and a system call, which an operation that succeeds at once
     * should not pay. */
    st->priv_rng = p->seed;
}

static int
stop_with(pf_retry_state_t *st, pf_retry_stop_t stop, int rc)
{
    st->priv_stop = stop;
    st->priv_last_result = rc;
    return rc;
}

/* The checks of pf_retry_start that can refuse, without the budget. */
static int
start_checks(const pf_retry_policy_t *p, pf_retry_state_t *st, int64_t now)
{
    const pf_clock_t *c = pf__clock_norm(p->clock);

    if (pf_token_is_cancelled(p->token)) {
        return stop_with(st, PF_RETRY_STOP_CANCELED, PF_ECANCELED);
    }
    if (now >= limit_on(p, c, now)) {
        return stop_with(st, PF_RETRY_STOP_DEADLINE, PF_EDEADLINE);
    }
    return 0;
}

int
pf_retry_start(const pf_retry_policy_t *p, pf_retry_state_t *st,
               int64_t now_ns)
{
    int rc;

    if (st == NULL) {
        return PF_EINVAL;
    }
    if (p == NULL || !policy_valid(p)) {
        st->priv_attempts = 0;
        st->priv_budget_refused = false;
        st->priv_delayed_ns = 0;
        return stop_with(st, PF_RETRY_STOP_INVALID, PF_EINVAL);
    }
    state_reset(p, st, now_ns);
    rc = start_checks(p, st, now_ns);
    if (rc != 0) {
        return rc;
    }
    pf_retry_budget_deposit(p->budget);
    return 0;
}

/* The planned delay, after the listener had its say; false if it vetoed.
 * A hint (>= 0; NaN and negative = none) replaces the backoff's draw,
 * capped at the backoff's max_delay. */
static bool
plan_delay(const pf_retry_policy_t *p, pf_retry_state_t *st, int result,
           double hint, double *delay)
{
    const pf_backoff_t *b = policy_backoff(p);
    pf_retry_event_t ev;

    if (hint >= 0.0) { /* false for NaN */
        *delay = hint < b->max_delay ? hint : b->max_delay;
    } else {
        if (st->priv_rng == 0) {
            st->priv_rng = pf__rng_seed();
        }
        *delay = backoff_draw(b, st->priv_attempts - 1, st->priv_prev_delay,
                              &st->priv_rng);
    }
    if (p->listener == NULL) {
        return true;
    }
    ev.attempt = st->priv_attempts;
    ev.result = result;
    ev.delay = *delay;
    if (p->listener(&ev, p->listener_arg) != 0) {
        return false;
    }
    if (ev.delay >= 0.0) { /* false for NaN and negative values */
        *delay = ev.delay;
    }
    return true;
}

/* The decision for an operation still under way (stop NONE). */
static bool
decide(const pf_retry_policy_t *p, pf_retry_state_t *st, int result,
       int64_t now_ns, double hint, int64_t *delay_ns)
{
    const pf_clock_t *c;
    double delay;
    int64_t ns = 0;
    int64_t at;
    int64_t max_elapsed_ns = 0;

    st->priv_attempts++;
    st->priv_last_result = result;
    if (result == 0) {
        st->priv_stop = PF_RETRY_STOP_SUCCESS;
        return false;
    }
    if (!pf_retry_is_retryable(p, result)) {
        st->priv_stop = PF_RETRY_STOP_NOT_RETRYABLE;
        return false;
    }
    if (st->priv_attempts > p->max_retries) {
        st->priv_stop = PF_RETRY_STOP_EXHAUSTED;
        return false;
    }
    if (pf_token_is_cancelled(p->token)) {
        st->priv_stop = PF_RETRY_STOP_CANCELED;
        return false;
    }
    if (!plan_delay(p, st, result, hint, &delay)) {
        st->priv_stop = PF_RETRY_STOP_LISTENER;
        return false;
    }
    pf__secs_to_ns(delay, &ns); /* delay >= 0: cannot fail */
    at = pf__add_sat(now_ns, ns);
    /* max_elapsed was validated (>= 0), so this conversion succeeds. */
    pf__secs_to_ns(p->max_elapsed, &max_elapsed_ns);
    if (max_elapsed_ns > 0 &&
        at - st->priv_start_ns >= max_elapsed_ns) {
        st->priv_stop = PF_RETRY_STOP_ELAPSED;
        return false;
    }
    c = pf__clock_norm(p->clock);
    if (at >= limit_on(p, c, now_ns)) {
        st->priv_stop = PF_RETRY_STOP_DEADLINE;
        return false;
    }
    if (p->budget != NULL && pf_retry_budget_try_withdraw(p->budget) != 0) {
        st->priv_stop = PF_RETRY_STOP_BUDGET;
        st->priv_budget_refused = true;
        return false;
    }
    st->priv_prev_delay = delay;
    st->priv_delayed_ns = pf__add_sat(st->priv_delayed_ns, ns);
    *delay_ns = ns;
    return true;
}

int
pf_retry_decide(const pf_retry_policy_t *p, pf_retry_state_t *st, int result,
                int64_t now_ns, bool *retry, int64_t *delay_ns)
{
    return pf_retry_decide_after(p, st, result, now_ns, -1.0, retry,
                                 delay_ns);
}

int
pf_retry_decide_after(const pf_retry_policy_t *p, pf_retry_state_t *st,
                      int result, int64_t now_ns, double retry_after,
                      bool *retry, int64_t *delay_ns)
{
    if (retry != NULL) {
        *retry = false;
    }
    if (p == NULL || st == NULL || retry == NULL || delay_ns == NULL) {
        return PF_EINVAL;
    }
    /* A stop reason is set exactly when the operation ended (pf_retry_start
     * refused, or an earlier decision said stop, or the blocking loop's
     * wait failed); that decision is final, so a late call must not count
     * an attempt, run the listener, charge the budget or plan a delay. */
    if (st->priv_stop != PF_RETRY_STOP_NONE) {
        return PF_ESTATE;
    }
    *retry = decide(p, st, result, now_ns, retry_after, delay_ns);
    return 0;
}

bool
pf_retry_next(const pf_retry_policy_t *p, pf_retry_state_t *st, int result,
              int64_t now_ns, int64_t *delay_ns)
{
    bool retry = false;

    return pf_retry_decide(p, st, result, now_ns, &retry, delay_ns) == 0 &&
           retry;
}

void
pf_retry_state_result(const pf_retry_state_t *st, pf_retry_result_t *out)
{
    if (st == NULL || out == NULL) {
        return;
    }
    out->result = st->priv_last_result;
    out->attempts = st->priv_attempts;
    out->stop = (pf_retry_stop_t)st->priv_stop;
    out->budget_refused = st->priv_budget_refused;
    out->delayed = pf__ns_to_secs(st->priv_delayed_ns);
}

/* ---- the blocking loop ------------------------------------------------- */

/* Wait until `until` on p's clock. 0 when the delay is over, PF_ECANCELED,
 * PF_ETIMEDOUT when the token's deadline ended the wait early, or
 * PF_ESYSTEM. */
static int
wait_delay(const pf_retry_policy_t *p, int64_t until)
{
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv;
    int rc;

    if (pf__cond_init(&cv) != 0) {
        return PF_ESYSTEM;
    }
    pthread_mutex_lock(&mu);
    do {
        rc = pf__wait_until(&cv, &mu, p->clock, until, p->token);
    } while (rc == 0);
    pthread_mutex_unlock(&mu);
    pthread_cond_destroy(&cv);
    pthread_mutex_destroy(&mu);
    if (rc == PF_ETIMEDOUT) {
        return pf_clock_now_ns(p->clock) >= until ? 0 : PF_ETIMEDOUT;
    }
    return rc;
}

/* Everything after a first attempt that failed. */
static int
retry_loop(const pf_retry_policy_t *p, pf_retry_state_t *st, pf_call_fn fn,
           void *arg, int rc)
{
    int64_t delay;

    for (;;) {
        int64_t now = pf_clock_now_ns(p->clock); /* one read per decision */
        int wrc;

        if (!pf_retry_next(p, st, rc, now, &delay)) {
            break;
        }
        wrc = wait_delay(p, pf__add_sat(now, delay));

        if (wrc != 0) {
            st->priv_stop = wrc == PF_ECANCELED  ? PF_RETRY_STOP_CANCELED
                            : wrc == PF_ESYSTEM ? PF_RETRY_STOP_SYSTEM
                                                : PF_RETRY_STOP_DEADLINE;
            return rc;
        }
        rc = fn(arg);
    }
    return rc;
}

/* Whether anything must happen before the first attempt. */
static bool
needs_start(const pf_retry_policy_t *p)
{
    return p->token != NULL || p->budget != NULL || p->max_elapsed > 0.0 ||
           p->deadline.priv_at_ns != PF_DEADLINE_NEVER_NS;
}

/* Whether that needs the time: a limit to check or an elapsed time to
 * measure from the start. A token or a budget alone does not. */
static bool
needs_clock(const pf_retry_policy_t *p)
{
    pf_deadline_t td = pf_token_deadline(p->token);

    return p->max_elapsed > 0.0 || !pf_deadline_is_none(&p->deadline) ||
           !pf_deadline_is_none(&td);
}

int
pf_retry_call_ex(const pf_retry_policy_t *p, pf_call_fn fn, void *arg,
                 pf_retry_result_t *out)
{
    pf_retry_state_t st;
    int rc;

    if (p == NULL || fn == NULL || !policy_valid(p)) {
        if (out != NULL) {
            *out = (pf_retry_result_t){PF_EINVAL, 0, PF_RETRY_STOP_INVALID,
                                       false, 0.0};
        }
        return PF_EINVAL;
    }
    if (needs_start(p)) {
        rc = pf_retry_start(p, &st,
                            needs_clock(p) ? pf_clock_now_ns(p->clock) : 0);
        if (rc != 0) {
            pf_retry_state_result(&st, out);
            return rc;
        }
        rc = fn(arg);
    } else {
        rc = fn(arg);
        if (rc == 0 && out == NULL) {
            return 0; /* the fast path: nothing to set up or report */
        }
        state_reset(p, &st, 0);
    }
    if (rc != 0) {
        rc = retry_loop(p, &st, fn, arg, rc);
    } else {
        st.priv_attempts = 1;
        st.priv_stop = PF_RETRY_STOP_SUCCESS;
    }
    st.priv_last_result = rc;
    pf_retry_state_result(&st, out);
    return rc;
}

int
pf_retry_call(const pf_retry_policy_t *p, pf_call_fn fn, void *arg)
{
    return pf_retry_call_ex(p, fn, arg, NULL);
}
