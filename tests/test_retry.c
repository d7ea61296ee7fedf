/* Backoff, retry policies, the retry decision and the retry loop. Time
 * moves only through the manual clock. */
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>

#include "puffinflow/retry.h"
#include "rng.h"
#include "test.h"

/* ---- backoff ----------------------------------------------------------- */

static void
test_backoff_defaults_match_the_design(void **state)
{
    pf_backoff_t b;
    pf_retry_policy_t p;

    (void)state;
    pf_backoff_init(&b);
    assert_true(b.initial_delay == 1.0);
    assert_true(b.multiplier == 2.0);
    assert_true(b.max_delay == 60.0);
    assert_int_equal(b.jitter, PF_JITTER_EQUAL);
    pf_retry_policy_init(&p);
    assert_int_equal(p.max_retries, 3);
    assert_null(p.backoff); /* pf_backoff_init's defaults */
    assert_null(p.retry_on);
    assert_null(p.is_retryable);
    assert_null(p.listener);
    assert_int_equal(p.seed, 0);
    assert_true(p.max_elapsed == 0.0);
    assert_true(pf_deadline_is_none(&p.deadline));
    assert_null(p.token);
    assert_null(p.budget);
    assert_null(p.clock);
    assert_pf_ok(pf_backoff_validate(&b));
    assert_pf_ok(pf_retry_policy_validate(&p));
    pf_backoff_init(NULL);
    pf_retry_policy_init(NULL);
}

static void
test_backoff_validate_rejects_bad_fields(void **state)
{
    pf_backoff_t ok;
    pf_backoff_t b;

    (void)state;
    pf_backoff_init(&ok);
    assert_pf_err(pf_backoff_validate(NULL), PF_EINVAL);
#define BAD(field, value)                                                      \
    do {                                                                       \
        b = ok;                                                                \
        b.field = (value);                                                     \
        assert_pf_err(pf_backoff_validate(&b), PF_EINVAL);                     \
        assert_true(pf_exponential_backoff(&b, 1, NULL) == 0.0);               \
    } while (0)
    BAD(initial_delay, NAN);
    BAD(initial_delay, -1.0);
    BAD(initial_delay, INFINITY);
    BAD(multiplier, 0.5);
    BAD(multiplier, NAN);
    BAD(multiplier, INFINITY);
    BAD(max_delay, 0.5); /* below the initial delay */
    BAD(max_delay, NAN);
    BAD(jitter, (pf_jitter_t)7);
#undef BAD
    b = ok;
    b.max_delay = INFINITY; /* no cap is fine */
    assert_pf_ok(pf_backoff_validate(&b));
    b.initial_delay = 0.0;
    b.multiplier = 1.0;
    assert_pf_ok(pf_backoff_validate(&b));
}

static void
test_backoff_grows_by_the_multiplier_up_to_the_cap(void **state)
{
    static const double want[] = {1, 2, 4, 8, 16, 32, 60, 60, 60};
    pf_backoff_t b;
    uint64_t rng = 1;

    (void)state;
    pf_backoff_init(&b);
    b.jitter = PF_JITTER_NONE;
    for (unsigned i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        assert_true(pf_exponential_backoff(&b, i, &rng) == want[i]);
    }
    assert_true(pf_exponential_backoff(&b, 5000, &rng) == 60.0);
    assert_true(pf_exponential_backoff(&b, UINT32_MAX, &rng) == 60.0);
    b.multiplier = 3.0;
    assert_true(pf_exponential_backoff(&b, 2, &rng) == 9.0);
    assert_true(pf_exponential_backoff(&b, 4000, &rng) == 60.0);
    b.multiplier = 1.0;
    assert_true(pf_exponential_backoff(&b, 40, &rng) == 1.0);
    b.multiplier = 10.0;
    b.initial_delay = 0.0; /* 0 * 10^400 must stay 0, not NaN */
    assert_true(pf_exponential_backoff(&b, 400, &rng) == 0.0);
    b.initial_delay = 1.0;
    b.max_delay = INFINITY;
    assert_true(isinf(pf_exponential_backoff(&b, 400, &rng)));
    assert_true(pf_exponential_backoff(NULL, 1, &rng) == 0.0);
}

static void
test_backoff_same_seed_gives_same_draws(void **state)
{
    pf_backoff_t b;

    (void)state;
    pf_backoff_init(&b);
    for (int kind = PF_JITTER_FULL; kind <= PF_JITTER_DECORRELATED; kind++) {
        uint64_t s1 = 1234;
        uint64_t s2 = 1234;
        uint64_t s3 = 999;
        int differ = 0;

        b.jitter = (pf_jitter_t)kind;
        for (unsigned i = 0; i < 100; i++) {
            double a = pf_exponential_backoff(&b, i % 8, &s1);

            assert_true(a == pf_exponential_backoff(&b, i % 8, &s2));
            differ += a != pf_exponential_backoff(&b, i % 8, &s3);
        }
        assert_true(differ > 90); /* another seed, other draws */
    }
}

/* Draw n delays for attempt, check each lies in [lo, hi] and the mean is
 * within tol of mean. Fixed seed: the figures are the same every run, so
 * the test cannot flake; the tolerances are several standard errors. */
static void
check_draws(const pf_backoff_t *b, unsigned attempt, double lo, double hi,
            double mean, double tol)
{
    uint64_t rng = 42;
    double sum = 0.0;
    double min = INFINITY;
    double max = 0.0;
    const int n = 200000;

    for (int i = 0; i < n; i++) {
        double d = pf_exponential_backoff(b, attempt, &rng);

        assert_true(d >= lo && d <= hi);
        sum += d;
        min = d < min ? d : min;
        max = d > max ? d : max;
    }
    assert_true(fabs(sum / n - mean) < tol);
    /* The draws fill the range: both ends are approached. */
    assert_true(min < lo + (hi - lo) * 0.001);
    assert_true(max > hi - (hi - lo) * 0.001);
}

static void
test_backoff_full_jitter_is_uniform_below_the_delay(void **state)
{
    pf_backoff_t b;

    (void)state;
    pf_backoff_init(&b);
    b.jitter = PF_JITTER_FULL;
    check_draws(&b, 3, 0.0, 8.0, 4.0, 0.05); /* base delay 8 s */
    check_draws(&b, 20, 0.0, 60.0, 30.0, 0.3); /* capped at 60 s */
}

static void
test_backoff_equal_jitter_is_uniform_in_the_upper_half(void **state)
{
    pf_backoff_t b;

    (void)state;
    pf_backoff_init(&b);
    check_draws(&b, 3, 4.0, 8.0, 6.0, 0.02);
    check_draws(&b, 20, 30.0, 60.0, 45.0, 0.15);
}

static void
test_backoff_decorrelated_jitter_spans_initial_to_thrice_previous(void **state)
{
    pf_backoff_t b;
    uint64_t rng = 7;
    double prev;

    (void)state;
    pf_backoff_init(&b);
    b.jitter = PF_JITTER_DECORRELATED;
    check_draws(&b, 0, 1.0, 3.0, 2.0, 0.01);   /* previous: initial 1 s */
    check_draws(&b, 3, 1.0, 12.0, 6.5, 0.05);  /* previous: 4 s */
    check_draws(&b, 9, 1.0, 60.0, 30.5, 0.3);  /* capped at 60 s */
    /* With the previous delay actually drawn: a chain stays in range. */
    prev = b.initial_delay;
    for (unsigned i = 0; i < 10000; i++) {
        double d = pf_backoff_next(&b, i, prev, &rng);
        double hi = prev * 3.0 < 60.0 ? prev * 3.0 : 60.0;

        assert_true(d >= 1.0 && d <= hi);
        prev = d;
    }
    /* A NaN or too small previous delay counts as the initial delay. */
    for (unsigned i = 0; i < 1000; i++) {
        double d = pf_backoff_next(&b, 0, NAN, &rng);

        assert_true(d >= 1.0 && d <= 3.0);
        d = pf_backoff_next(&b, 0, -5.0, &rng);
        assert_true(d >= 1.0 && d <= 3.0);
    }
}

static void
test_backoff_decorrelated_jitter_narrows_its_range_at_the_cap(void **state)
{
    pf_backoff_t b;

    (void)state;
    pf_backoff_init(&b);
    b.jitter = PF_JITTER_DECORRELATED;
    b.initial_delay = 1.0;
    b.max_delay = 10.0;
    for (uint64_t seed = 1; seed <= 1000; seed++) {
        uint64_t rng = seed;
        uint64_t mirror = seed;
        double r = pf__rng_double(&mirror);
        /* 3 x 100 s is far past the 10 s cap: the range is narrowed to
         * [1, 10) before the draw, so the delay is 1 + 9r, uniform, and
         * never the cap itself. A draw from [1, 300) clamped to 10 would
         * be 10 for 97 % of the seeds. */
        double d = pf_backoff_next(&b, 5, 100.0, &rng);

        assert_true(d == 1.0 + 9.0 * r);
        assert_true(d < 10.0);
        assert_true(rng == mirror); /* exactly one draw */
        /* Below the cap the range is [1, 3 x previous). */
        rng = seed;
        assert_true(pf_backoff_next(&b, 0, 2.0, &rng) == 1.0 + 5.0 * r);
    }
    /* Without a random state: the top of the narrowed range. */
    assert_true(pf_backoff_next(&b, 5, 100.0, NULL) == 10.0);
    assert_true(pf_backoff_next(&b, 5, INFINITY, NULL) == 10.0);
    assert_true(pf_backoff_next(&b, 0, 2.0, NULL) == 6.0);
}

static void
test_backoff_without_rng_gives_the_largest_delay(void **state)
{
    pf_backoff_t b;

    (void)state;
    pf_backoff_init(&b);
    assert_true(pf_exponential_backoff(&b, 2, NULL) == 4.0);
    b.jitter = PF_JITTER_FULL;
    assert_true(pf_exponential_backoff(&b, 2, NULL) == 4.0);
    b.jitter = PF_JITTER_DECORRELATED;
    assert_true(pf_exponential_backoff(&b, 0, NULL) == 3.0);
}

/* ---- a scripted call --------------------------------------------------- */

/* Returns script[i] on call i (the last entry forever after), recording the
 * manual clock's time of each call. */
typedef struct script {
    const int *results;
    int n;
    atomic_int calls;
    int64_t at[32];
    const pf_clock_t *clock;
} script_t;

static int
scripted(void *arg)
{
    script_t *s = arg;
    int i = atomic_load(&s->calls);

    if (i < 32) {
        s->at[i] = pf_clock_now_ns(s->clock);
    }
    atomic_fetch_add(&s->calls, 1);
    return s->results[i < s->n ? i : s->n - 1];
}

static void
script_init(script_t *s, const int *results, int n, const pf_clock_t *c)
{
    s->results = results;
    s->n = n;
    atomic_init(&s->calls, 0);
    s->clock = c;
}

/* A policy on clock c with fixed delays 1 s, 2 s, 4 s ... */
static void
fixed_policy(pf_retry_policy_t *p, const pf_clock_t *c)
{
    static const pf_backoff_t fixed = {.initial_delay = 1.0,
                                       .multiplier = 2.0,
                                       .max_delay = 60.0,
                                       .jitter = PF_JITTER_NONE};

    pf_retry_policy_init(p);
    p->backoff = &fixed;
    p->clock = c;
}

/* pf_retry_call_ex run on its own thread. */
typedef struct runner {
    pthread_t tid;
    const pf_retry_policy_t *p;
    script_t *s;
    pf_retry_result_t res;
    int rc;
    atomic_int done;
} runner_t;

static void *
runner_main(void *arg)
{
    runner_t *r = arg;

    r->rc = pf_retry_call_ex(r->p, scripted, r->s, &r->res);
    atomic_store(&r->done, 1);
    return NULL;
}

static void
runner_start(runner_t *r, const pf_retry_policy_t *p, script_t *s)
{
    r->p = p;
    r->s = s;
    atomic_init(&r->done, 0);
    assert_int_equal(pthread_create(&r->tid, NULL, runner_main, r), 0);
}

/* Wait until the runner has made n calls and is parked in its delay. */
static void
runner_parked_after(runner_t *r, const pf_clock_t *c, int n)
{
    pf_test_wait_for_flag(&r->s->calls, n);
    pf_test_wait_for_waiters(c, 1);
}

static void
runner_join(runner_t *r)
{
    pf_test_wait_for_flag(&r->done, 1); /* fails the test if it hangs */
    pthread_join(r->tid, NULL);
}

/* ---- pf_retry_call ----------------------------------------------------- */

static void
test_retry_call_first_success_returns_at_once(void **state)
{
    pf_clock_t *c = *state;
    static const int ok[] = {0};
    pf_retry_policy_t p;
    pf_retry_result_t res;
    script_t s;

    fixed_policy(&p, c);
    script_init(&s, ok, 1, c);
    assert_pf_ok(pf_retry_call(&p, scripted, &s));
    assert_pf_ok(pf_retry_call_ex(&p, scripted, &s, &res));
    assert_int_equal(atomic_load(&s.calls), 2);
    assert_int_equal(res.result, 0);
    assert_int_equal(res.attempts, 1);
    assert_int_equal(res.stop, PF_RETRY_STOP_SUCCESS);
    assert_false(res.budget_refused);
    assert_true(res.delayed == 0.0);
}

static void
test_retry_call_waits_the_backoff_between_attempts(void **state)
{
    pf_clock_t *c = *state;
    static const int results[] = {-1, -2, 0};
    pf_retry_policy_t p;
    script_t s;
    runner_t r;

    fixed_policy(&p, c);
    script_init(&s, results, 3, c);
    runner_start(&r, &p, &s);
    runner_parked_after(&r, c, 1);
    pf_clock_manual_advance(c, NS_PER_SEC - 1); /* not yet */
    pf_test_wait_for_waiters(c, 1);
    pf_clock_manual_advance(c, 1);
    runner_parked_after(&r, c, 2);
    pf_clock_manual_advance(c, 2 * NS_PER_SEC);
    runner_join(&r);
    assert_pf_ok(r.rc);
    assert_int_equal(atomic_load(&s.calls), 3);
    /* Each attempt starts exactly when its delay is over. */
    assert_int_equal(s.at[0], 0);
    assert_int_equal(s.at[1], NS_PER_SEC);
    assert_int_equal(s.at[2], 3 * NS_PER_SEC);
    assert_int_equal(r.res.attempts, 3);
    assert_int_equal(r.res.stop, PF_RETRY_STOP_SUCCESS);
    assert_true(r.res.delayed == 3.0);
}

static void
test_retry_call_returns_last_result_when_retries_run_out(void **state)
{
    pf_backoff_t backoff;
    pf_clock_t *c = *state;
    static const int results[] = {-1, -2, -3, -4, -5};
    pf_retry_policy_t p;
    pf_retry_result_t res;
    script_t s;

    fixed_policy(&p, c);
    pf_backoff_init(&backoff);
    backoff.initial_delay = 0.0; /* no waits: runs on this thread */
    p.backoff = &backoff;
    script_init(&s, results, 5, c);
    assert_pf_err(pf_retry_call_ex(&p, scripted, &s, &res), -4);
    assert_int_equal(atomic_load(&s.calls), 4); /* 1 + max_retries 3 */
    assert_int_equal(res.attempts, 4);
    assert_int_equal(res.stop, PF_RETRY_STOP_EXHAUSTED);
    p.max_retries = 0;
    script_init(&s, results, 5, c);
    assert_pf_err(pf_retry_call(&p, scripted, &s), -1);
    assert_int_equal(atomic_load(&s.calls), 1);
}

static void
test_retry_call_does_not_retry_an_open_breaker_by_default(void **state)
{
    pf_clock_t *c = *state;
    static const int open[] = {PF_EOPEN, 0};
    static const int cancelled[] = {PF_ECANCELED, 0};
    static const int late[] = {PF_EDEADLINE, 0};
    pf_retry_policy_t p;
    pf_retry_result_t res;
    script_t s;

    fixed_policy(&p, c);
    script_init(&s, open, 2, c);
    assert_pf_err(pf_retry_call_ex(&p, scripted, &s, &res), PF_EOPEN);
    assert_int_equal(res.attempts, 1);
    assert_int_equal(res.stop, PF_RETRY_STOP_NOT_RETRYABLE);
    script_init(&s, cancelled, 2, c);
    assert_pf_err(pf_retry_call(&p, scripted, &s), PF_ECANCELED);
    script_init(&s, late, 2, c);
    assert_pf_err(pf_retry_call(&p, scripted, &s), PF_EDEADLINE);
    assert_true(pf_retry_is_retryable(&p, -1));
    assert_true(pf_retry_is_retryable(&p, PF_ETIMEDOUT));
    assert_false(pf_retry_is_retryable(&p, 0));
    assert_false(pf_retry_is_retryable(NULL, -1));
}

static void
test_retry_call_retries_only_listed_results_when_given_a_list(void **state)
{
    pf_backoff_t backoff;
    pf_clock_t *c = *state;
    static const int list[] = {-5, PF_EOPEN};
    static const int results[] = {-5, PF_EOPEN, -7, 0};
    pf_retry_policy_t p;
    pf_retry_result_t res;
    script_t s;

    fixed_policy(&p, c);
    pf_backoff_init(&backoff);
    backoff.initial_delay = 0.0;
    p.backoff = &backoff;
    p.retry_on = list;
    p.retry_on_len = 2;
    script_init(&s, results, 4, c);
    /* -5 and PF_EOPEN (listed explicitly) are retried, -7 is not. */
    assert_pf_err(pf_retry_call_ex(&p, scripted, &s, &res), -7);
    assert_int_equal(res.attempts, 3);
    assert_int_equal(res.stop, PF_RETRY_STOP_NOT_RETRYABLE);
}

static bool
odd_only(int result, void *arg)
{
    (*(int *)arg)++;
    return (result & 1) != 0;
}

static void
test_retry_call_asks_the_predicate(void **state)
{
    pf_backoff_t backoff;
    pf_clock_t *c = *state;
    static const int results[] = {-1, -3, -4, 0};
    static const int list[] = {-3, -4};
    pf_retry_policy_t p;
    script_t s;
    int asked = 0;

    fixed_policy(&p, c);
    pf_backoff_init(&backoff);
    backoff.initial_delay = 0.0;
    p.backoff = &backoff;
    p.is_retryable = odd_only;
    p.is_retryable_arg = &asked;
    script_init(&s, results, 4, c);
    assert_pf_err(pf_retry_call(&p, scripted, &s), -4);
    assert_int_equal(atomic_load(&s.calls), 3);
    assert_int_equal(asked, 3);
    /* With a list too, both must agree: -1 is not listed. */
    p.retry_on = list;
    p.retry_on_len = 2;
    asked = 0;
    script_init(&s, results, 4, c);
    assert_pf_err(pf_retry_call(&p, scripted, &s), -1);
    assert_int_equal(asked, 0);
}

static void
test_retry_call_skips_a_retry_that_would_end_after_the_deadline(void **state)
{
    pf_clock_t *c = *state;
    static const int fail[] = {-1};
    pf_retry_policy_t p;
    script_t s;
    runner_t r;

    fixed_policy(&p, c);
    p.deadline = pf_deadline_in(c, 2.5); /* 1 s fits, then 2 s does not */
    script_init(&s, fail, 1, c);
    runner_start(&r, &p, &s);
    runner_parked_after(&r, c, 1);
    pf_clock_manual_advance(c, NS_PER_SEC);
    runner_join(&r); /* returns at once, without a further advance */
    assert_pf_err(r.rc, -1);
    assert_int_equal(r.res.attempts, 2);
    assert_int_equal(r.res.stop, PF_RETRY_STOP_DEADLINE);
    assert_int_equal(pf_clock_now_ns(c), NS_PER_SEC);
}

static void
test_retry_call_refuses_to_start_after_the_deadline(void **state)
{
    pf_clock_t *c = *state;
    static const int ok[] = {0};
    pf_retry_policy_t p;
    pf_retry_result_t res;
    script_t s;

    fixed_policy(&p, c);
    p.deadline = pf_deadline_in(c, 1.0);
    pf_clock_manual_advance(c, NS_PER_SEC);
    script_init(&s, ok, 1, c);
    assert_pf_err(pf_retry_call_ex(&p, scripted, &s, &res), PF_EDEADLINE);
    assert_int_equal(atomic_load(&s.calls), 0);
    assert_int_equal(res.attempts, 0);
    assert_int_equal(res.stop, PF_RETRY_STOP_DEADLINE);
}

static void
test_retry_call_honours_the_token_deadline(void **state)
{
    pf_clock_t *c = *state;
    static const int fail[] = {-1};
    pf_deadline_t d = pf_deadline_in(c, 0.5);
    pf_retry_policy_t p;
    pf_retry_result_t res;
    script_t s;

    fixed_policy(&p, c);
    assert_pf_ok(pf_token_new(NULL, &d, &p.token));
    script_init(&s, fail, 1, c);
    /* The first delay (1 s) would end after the token's deadline. */
    assert_pf_err(pf_retry_call_ex(&p, scripted, &s, &res), -1);
    assert_int_equal(res.attempts, 1);
    assert_int_equal(res.stop, PF_RETRY_STOP_DEADLINE);
    pf_token_free(p.token);
}

static void
test_retry_call_stops_waiting_when_cancelled(void **state)
{
    pf_clock_t *c = *state;
    static const int fail[] = {-1};
    pf_retry_policy_t p;
    pf_retry_result_t res;
    script_t s;
    runner_t r;

    fixed_policy(&p, c);
    assert_pf_ok(pf_token_new(NULL, NULL, &p.token));
    script_init(&s, fail, 1, c);
    runner_start(&r, &p, &s);
    runner_parked_after(&r, c, 1);
    pf_token_cancel(p.token);
    runner_join(&r);
    assert_pf_err(r.rc, -1);
    assert_int_equal(r.res.attempts, 1);
    assert_int_equal(r.res.stop, PF_RETRY_STOP_CANCELED);
    assert_int_equal(pf_clock_now_ns(c), 0);
    /* Cancelled before the first attempt: fn is never called. */
    assert_pf_err(pf_retry_call_ex(&p, scripted, &s, &res), PF_ECANCELED);
    assert_int_equal(atomic_load(&s.calls), 1);
    assert_int_equal(res.attempts, 0);
    assert_int_equal(res.stop, PF_RETRY_STOP_CANCELED);
    pf_token_free(p.token);
}

static void
test_retry_call_rejects_bad_input_without_calling(void **state)
{
    pf_backoff_t backoff;
    pf_clock_t *c = *state;
    static const int ok[] = {0};
    pf_retry_policy_t good;
    pf_retry_policy_t p;
    pf_retry_result_t res;
    pf_retry_state_t st;
    script_t s;

    fixed_policy(&good, c);
    script_init(&s, ok, 1, c);
    assert_pf_err(pf_retry_call(NULL, scripted, &s), PF_EINVAL);
    assert_pf_err(pf_retry_call_ex(&good, NULL, &s, &res), PF_EINVAL);
    assert_int_equal(res.stop, PF_RETRY_STOP_INVALID);
    assert_pf_err(pf_retry_policy_validate(NULL), PF_EINVAL);
#define BAD_IN(obj, field, value)                                              \
    do {                                                                       \
        p = good;                                                              \
        pf_backoff_init(&backoff);                                             \
        p.backoff = &backoff;                                                  \
        obj.field = (value);                                                   \
        assert_pf_err(pf_retry_policy_validate(&p), PF_EINVAL);                \
        assert_pf_err(pf_retry_call(&p, scripted, &s), PF_EINVAL);             \
        assert_pf_err(pf_retry_start(&p, &st, 0), PF_EINVAL);                  \
    } while (0)
#define BAD(field, value) BAD_IN(p, field, value)
    BAD_IN(backoff, initial_delay, NAN);
    BAD_IN(backoff, initial_delay, -0.5);
    BAD_IN(backoff, multiplier, 0.9);
    BAD_IN(backoff, max_delay, 0.1);
    BAD(max_elapsed, -1.0);
    BAD(max_elapsed, NAN);
    BAD(retry_on_len, 2); /* with retry_on NULL */
#undef BAD
#undef BAD_IN
    assert_int_equal(atomic_load(&s.calls), 0);
    assert_pf_err(pf_retry_start(&good, NULL, 0), PF_EINVAL);
    assert_pf_err(pf_retry_start(NULL, &st, 0), PF_EINVAL);
    assert_int_equal(st.priv_stop, PF_RETRY_STOP_INVALID);
}

/* ---- the non-blocking face --------------------------------------------- */

static void
test_retry_next_plans_exact_delays(void **state)
{
    pf_clock_t *c = *state;
    pf_retry_policy_t p;
    pf_retry_state_t st;
    pf_retry_result_t res;
    int64_t delay = -1;
    int64_t now = 0;

    fixed_policy(&p, c);
    p.max_retries = 4;
    assert_pf_ok(pf_retry_start(&p, &st, now));
    for (int i = 0; i < 4; i++) {
        assert_true(pf_retry_next(&p, &st, -1, now, &delay));
        assert_int_equal(delay, (NS_PER_SEC << i));
        now += delay;
    }
    assert_false(pf_retry_next(&p, &st, -1, now, &delay));
    pf_retry_state_result(&st, &res);
    assert_int_equal(res.attempts, 5);
    assert_int_equal(res.result, -1);
    assert_int_equal(res.stop, PF_RETRY_STOP_EXHAUSTED);
    assert_true(res.delayed == 15.0);
    /* Success ends it. */
    assert_pf_ok(pf_retry_start(&p, &st, 0));
    assert_true(pf_retry_next(&p, &st, -1, 0, &delay));
    assert_false(pf_retry_next(&p, &st, 0, delay, &delay));
    pf_retry_state_result(&st, &res);
    assert_int_equal(res.attempts, 2);
    assert_int_equal(res.stop, PF_RETRY_STOP_SUCCESS);
    assert_false(pf_retry_next(NULL, &st, -1, 0, &delay));
    assert_false(pf_retry_next(&p, NULL, -1, 0, &delay));
    assert_false(pf_retry_next(&p, &st, -1, 0, NULL));
    pf_retry_state_result(NULL, &res);
    pf_retry_state_result(&st, NULL);
}

static void
test_retry_next_same_seed_same_delays(void **state)
{
    pf_backoff_t backoff;
    pf_clock_t *c = *state;
    pf_retry_policy_t p;
    pf_retry_state_t a;
    pf_retry_state_t b;
    int64_t da;
    int64_t db;

    pf_retry_policy_init(&p);
    p.clock = c;
    p.seed = 77;
    p.max_retries = 50;
    for (int kind = PF_JITTER_NONE; kind <= PF_JITTER_DECORRELATED; kind++) {
        pf_backoff_init(&backoff);
        backoff.jitter = (pf_jitter_t)kind;
        p.backoff = &backoff;
        assert_pf_ok(pf_retry_start(&p, &a, 0));
        assert_pf_ok(pf_retry_start(&p, &b, 0));
        for (int i = 0; i < 50; i++) {
            assert_true(pf_retry_next(&p, &a, -1, 0, &da));
            assert_true(pf_retry_next(&p, &b, -1, 0, &db));
            assert_int_equal(da, db);
            assert_true(da >= 0 && da <= 60 * NS_PER_SEC);
        }
    }
}

static void
test_retry_next_decorrelated_follows_the_drawn_delay(void **state)
{
    pf_backoff_t backoff;
    pf_clock_t *c = *state;
    pf_retry_policy_t p;
    pf_retry_state_t st;
    int64_t d;
    int64_t prev = NS_PER_SEC;

    pf_retry_policy_init(&p);
    p.clock = c;
    p.seed = 5;
    p.max_retries = 1000;
    pf_backoff_init(&backoff);
    backoff.jitter = PF_JITTER_DECORRELATED;
    p.backoff = &backoff;
    assert_pf_ok(pf_retry_start(&p, &st, 0));
    for (int i = 0; i < 1000; i++) {
        int64_t hi = prev * 3 < 60 * NS_PER_SEC ? prev * 3 : 60 * NS_PER_SEC;

        assert_true(pf_retry_next(&p, &st, -1, 0, &d));
        assert_true(d >= NS_PER_SEC && d <= hi + 1);
        prev = d;
    }
}

static void
test_retry_next_stops_when_max_elapsed_would_pass(void **state)
{
    pf_clock_t *c = *state;
    pf_retry_policy_t p;
    pf_retry_state_t st;
    pf_retry_result_t res;
    int64_t d;

    fixed_policy(&p, c);
    p.max_elapsed = 3.0;
    assert_pf_ok(pf_retry_start(&p, &st, 10 * NS_PER_SEC));
    assert_true(pf_retry_next(&p, &st, -1, 10 * NS_PER_SEC, &d)); /* to 11 */
    /* Next: 2 s from 11 s ends at 13 s = start + 3 s: not started. */
    assert_false(pf_retry_next(&p, &st, -1, 11 * NS_PER_SEC, &d));
    pf_retry_state_result(&st, &res);
    assert_int_equal(res.stop, PF_RETRY_STOP_ELAPSED);
    assert_int_equal(res.attempts, 2);
}

static void
test_retry_next_stops_at_the_deadline(void **state)
{
    pf_clock_t *c = *state;
    pf_retry_policy_t p;
    pf_retry_state_t st;
    pf_retry_result_t res;
    int64_t d;

    fixed_policy(&p, c);
    p.deadline = pf_deadline_at_ns(c, 3 * NS_PER_SEC);
    assert_pf_ok(pf_retry_start(&p, &st, 0));
    assert_true(pf_retry_next(&p, &st, -1, 0, &d)); /* ends at 1 s */
    /* 1 s + 2 s = the deadline itself: an attempt then would be late. */
    assert_false(pf_retry_next(&p, &st, -1, NS_PER_SEC, &d));
    pf_retry_state_result(&st, &res);
    assert_int_equal(res.stop, PF_RETRY_STOP_DEADLINE);
    /* Already passed at the start: PF_EDEADLINE, recorded. */
    assert_pf_err(pf_retry_start(&p, &st, 3 * NS_PER_SEC), PF_EDEADLINE);
    pf_retry_state_result(&st, &res);
    assert_int_equal(res.stop, PF_RETRY_STOP_DEADLINE);
    assert_int_equal(res.result, PF_EDEADLINE);
    assert_int_equal(res.attempts, 0);
}

static void
test_retry_next_converts_a_deadline_on_another_clock(void **state)
{
    pf_clock_t *c = *state;
    pf_clock_t *other;
    pf_retry_policy_t p;
    pf_retry_state_t st;
    int64_t d;

    assert_pf_ok(pf_clock_manual_new(&other));
    pf_clock_manual_advance(other, 100 * NS_PER_SEC);
    fixed_policy(&p, c);
    p.deadline = pf_deadline_in(other, 1.5); /* 1.5 s left */
    assert_pf_ok(pf_retry_start(&p, &st, 0));
    assert_true(pf_retry_next(&p, &st, -1, 0, &d)); /* 1 s fits */
    assert_false(pf_retry_next(&p, &st, -1, 0, &d)); /* 2 s does not */
    pf_clock_free(other);
}

typedef struct heard {
    int calls;
    unsigned attempt;
    int result;
    double delay;
    double set_delay; /* what to change the delay to */
    int veto_at;      /* attempt to veto, 0 = never */
} heard_t;

static int
listen(pf_retry_event_t *ev, void *arg)
{
    heard_t *h = arg;

    h->calls++;
    h->attempt = ev->attempt;
    h->result = ev->result;
    h->delay = ev->delay;
    ev->delay = h->set_delay;
    return h->veto_at != 0 && ev->attempt == (unsigned)h->veto_at;
}

static void
test_retry_listener_sees_each_retry_and_may_override_the_delay(void **state)
{
    pf_clock_t *c = *state;
    pf_retry_policy_t p;
    pf_retry_state_t st;
    pf_retry_result_t res;
    heard_t h = {0};
    int64_t d;

    fixed_policy(&p, c);
    p.listener = listen;
    p.listener_arg = &h;
    h.set_delay = 30.0; /* a server's Retry-After, above max_delay too */
    assert_pf_ok(pf_retry_start(&p, &st, 0));
    assert_true(pf_retry_next(&p, &st, -9, 0, &d));
    assert_int_equal(h.calls, 1);
    assert_int_equal(h.attempt, 1);
    assert_int_equal(h.result, -9);
    assert_true(h.delay == 1.0);
    assert_int_equal(d, 30 * NS_PER_SEC);
    h.set_delay = NAN; /* ignored: the planned delay stands */
    assert_true(pf_retry_next(&p, &st, -9, 0, &d));
    assert_int_equal(h.attempt, 2);
    assert_int_equal(d, 2 * NS_PER_SEC);
    h.set_delay = -1.0;
    assert_true(pf_retry_next(&p, &st, -9, 0, &d));
    assert_int_equal(d, 4 * NS_PER_SEC);
    /* The override still has to fit before the deadline. */
    p.deadline = pf_deadline_at_ns(c, 10 * NS_PER_SEC);
    h.set_delay = 20.0;
    assert_pf_ok(pf_retry_start(&p, &st, 0));
    assert_false(pf_retry_next(&p, &st, -9, 0, &d));
    pf_retry_state_result(&st, &res);
    assert_int_equal(res.stop, PF_RETRY_STOP_DEADLINE);
    /* A veto stops retrying. */
    h.set_delay = 0.0;
    h.veto_at = 2;
    assert_pf_ok(pf_retry_start(&p, &st, 0));
    assert_true(pf_retry_next(&p, &st, -9, 0, &d));
    assert_false(pf_retry_next(&p, &st, -9, 0, &d));
    pf_retry_state_result(&st, &res);
    assert_int_equal(res.stop, PF_RETRY_STOP_LISTENER);
    assert_int_equal(res.result, -9);
    /* Not called for results that are not retried. */
    h.calls = 0;
    assert_pf_ok(pf_retry_start(&p, &st, 0));
    assert_false(pf_retry_next(&p, &st, PF_EOPEN, 0, &d));
    assert_false(pf_retry_next(&p, &st, 0, 0, &d));
    assert_int_equal(h.calls, 0);
}

static void
test_retry_next_stops_when_the_token_is_cancelled(void **state)
{
    pf_clock_t *c = *state;
    pf_retry_policy_t p;
    pf_retry_state_t st;
    pf_retry_result_t res;
    int64_t d;

    fixed_policy(&p, c);
    assert_pf_ok(pf_token_new(NULL, NULL, &p.token));
    assert_pf_ok(pf_retry_start(&p, &st, 0));
    pf_token_cancel(p.token);
    assert_false(pf_retry_next(&p, &st, -1, 0, &d));
    pf_retry_state_result(&st, &res);
    assert_int_equal(res.stop, PF_RETRY_STOP_CANCELED);
    assert_pf_err(pf_retry_start(&p, &st, 0), PF_ECANCELED);
    pf_token_free(p.token);
}

/* A policy with a listener and a budget, both counting, and an operation
 * on it that ended after two attempts: a failure, then result (with
 * max_retries 1, a failure ends it too). */
typedef struct ended {
    pf_retry_policy_t p;
    pf_retry_state_t st;
    heard_t h;
    pf_retry_result_t res; /* the outcome when it ended */
    uint64_t retries;      /* retries the budget allowed by then */
} ended_t;

static void
ended_make(ended_t *e, pf_clock_t *c, unsigned max_retries, int result)
{
    pf_retry_budget_config_t bc;
    pf_retry_budget_metrics_t m;
    int64_t d;

    memset(e, 0, sizeof(*e));
    fixed_policy(&e->p, c);
    e->p.max_retries = max_retries;
    e->p.listener = listen;
    e->p.listener_arg = &e->h;
    e->h.set_delay = NAN; /* keep the planned delay */
    pf_retry_budget_config_init(&bc);
    bc.clock = c;
    assert_pf_ok(pf_retry_budget_new(&bc, &e->p.budget));
    assert_pf_ok(pf_retry_start(&e->p, &e->st, 0));
    assert_true(pf_retry_next(&e->p, &e->st, -1, 0, &d));
    assert_false(pf_retry_next(&e->p, &e->st, result, d, &d));
    pf_retry_state_result(&e->st, &e->res);
    pf_retry_budget_metrics(e->p.budget, &m);
    e->retries = m.retries;
}

/* A late call changed nothing: outcome, listener, budget. */
static void
ended_check_unchanged(ended_t *e)
{
    pf_retry_budget_metrics_t m;
    pf_retry_result_t now;

    pf_retry_state_result(&e->st, &now);
    assert_int_equal(now.result, e->res.result);
    assert_int_equal(now.attempts, e->res.attempts);
    assert_int_equal(now.stop, e->res.stop);
    assert_int_equal(now.budget_refused, e->res.budget_refused);
    assert_true(now.delayed == e->res.delayed);
    assert_int_equal(e->h.calls, 1);
    pf_retry_budget_metrics(e->p.budget, &m);
    assert_int_equal(m.retries, e->retries);
    pf_retry_budget_free(e->p.budget);
}

static void
test_retry_next_after_success_stays_final(void **state)
{
    ended_t e;
    int64_t d = -7;
    bool retry = true;

    ended_make(&e, *state, 3, 0);
    assert_int_equal(e.res.stop, PF_RETRY_STOP_SUCCESS);
    assert_int_equal(e.res.attempts, 2);
    /* A failure reported after the success does not restart it, though
     * two retries are left. */
    assert_false(pf_retry_next(&e.p, &e.st, -1, 5 * NS_PER_SEC, &d));
    assert_int_equal(d, -7);
    assert_pf_err(pf_retry_decide(&e.p, &e.st, -1, 5 * NS_PER_SEC, &retry, &d),
                  PF_ESTATE);
    assert_false(retry);
    assert_int_equal(d, -7);
    ended_check_unchanged(&e);
}

static void
test_retry_next_after_exhaustion_stays_final(void **state)
{
    ended_t e;
    int64_t d = -7;
    bool retry = true;

    ended_make(&e, *state, 1, -2);
    assert_int_equal(e.res.stop, PF_RETRY_STOP_EXHAUSTED);
    assert_int_equal(e.res.result, -2);
    assert_false(pf_retry_next(&e.p, &e.st, -3, 5 * NS_PER_SEC, &d));
    assert_false(pf_retry_next(&e.p, &e.st, 0, 5 * NS_PER_SEC, &d));
    assert_pf_err(pf_retry_decide(&e.p, &e.st, 0, 5 * NS_PER_SEC, &retry, &d),
                  PF_ESTATE);
    assert_false(retry);
    assert_int_equal(d, -7);
    ended_check_unchanged(&e);
}

static void
test_retry_next_after_a_refused_start_stays_final(void **state)
{
    pf_retry_policy_t p;
    pf_retry_state_t st;
    pf_retry_result_t res;
    heard_t h = {0};
    int64_t d = -7;
    bool retry = true;

    fixed_policy(&p, *state);
    p.listener = listen;
    p.listener_arg = &h;
    assert_pf_ok(pf_token_new(NULL, NULL, &p.token));
    pf_token_cancel(p.token);
    assert_pf_err(pf_retry_start(&p, &st, 0), PF_ECANCELED);
    assert_false(pf_retry_next(&p, &st, -1, 0, &d));
    assert_pf_err(pf_retry_decide(&p, &st, -1, 0, &retry, &d), PF_ESTATE);
    assert_false(retry);
    assert_int_equal(d, -7);
    assert_int_equal(h.calls, 0);
    pf_retry_state_result(&st, &res);
    assert_int_equal(res.attempts, 0);
    assert_int_equal(res.stop, PF_RETRY_STOP_CANCELED);
    assert_int_equal(res.result, PF_ECANCELED);
    pf_token_free(p.token);
}

static void
test_retry_decide_reports_each_decision_and_misuse(void **state)
{
    pf_retry_policy_t p;
    pf_retry_state_t st;
    int64_t d = -7;
    bool retry = false;

    fixed_policy(&p, *state);
    assert_pf_ok(pf_retry_start(&p, &st, 0));
    assert_pf_ok(pf_retry_decide(&p, &st, -1, 0, &retry, &d));
    assert_true(retry);
    assert_int_equal(d, NS_PER_SEC);
    assert_pf_ok(pf_retry_decide(&p, &st, 0, d, &retry, &d));
    assert_false(retry); /* success: over, and that is not an error */
    retry = true;
    assert_pf_err(pf_retry_decide(NULL, &st, -1, 0, &retry, &d), PF_EINVAL);
    assert_false(retry);
    assert_pf_err(pf_retry_decide(&p, NULL, -1, 0, &retry, &d), PF_EINVAL);
    assert_pf_err(pf_retry_decide(&p, &st, -1, 0, &retry, NULL), PF_EINVAL);
    assert_pf_err(pf_retry_decide(&p, &st, -1, 0, NULL, &d), PF_EINVAL);
}

static void
test_retry_call_reports_a_budget_refusal(void **state)
{
    pf_backoff_t backoff;
    pf_clock_t *c = *state;
    static const int fail[] = {-1};
    pf_retry_budget_config_t bc;
    pf_retry_budget_metrics_t m;
    pf_retry_policy_t p;
    pf_retry_result_t res;
    script_t s;

    pf_retry_budget_config_init(&bc);
    bc.ratio = 0.0;
    bc.min_retries_per_sec = 0.1; /* one retry in the 10 s window */
    bc.clock = c;
    fixed_policy(&p, c);
    pf_backoff_init(&backoff);
    backoff.initial_delay = 0.0;
    p.backoff = &backoff;
    assert_pf_ok(pf_retry_budget_new(&bc, &p.budget));
    script_init(&s, fail, 1, c);
    assert_pf_err(pf_retry_call_ex(&p, scripted, &s, &res), -1);
    assert_int_equal(res.attempts, 2); /* one retry allowed, then refused */
    assert_int_equal(res.stop, PF_RETRY_STOP_BUDGET);
    assert_true(res.budget_refused);
    pf_retry_budget_metrics(p.budget, &m);
    assert_int_equal(m.calls, 1);
    assert_int_equal(m.retries, 1);
    assert_int_equal(m.refused, 1);
    pf_retry_budget_free(p.budget);
}

static void
test_retry_stop_names_are_distinct(void **state)
{
    (void)state;
    for (int i = PF_RETRY_STOP_NONE; i <= PF_RETRY_STOP_SYSTEM; i++) {
        assert_non_null(pf_retry_stop_name((pf_retry_stop_t)i));
        for (int j = 0; j < i; j++) {
            assert_string_not_equal(pf_retry_stop_name((pf_retry_stop_t)i),
                                    pf_retry_stop_name((pf_retry_stop_t)j));
        }
    }
    assert_string_equal(pf_retry_stop_name((pf_retry_stop_t)99), "unknown");
}

/* Many threads share one policy and one budget: every call ends, and the
 * budget never allows more retries than its allowance. */
typedef struct shared {
    pf_retry_policy_t p;
    atomic_int refused;
    atomic_int retried;
} shared_t;

static int
always_fail(void *arg)
{
    (void)arg;
    return -1;
}

static void
shared_fn(void *arg, unsigned i)
{
    shared_t *sh = arg;

    (void)i;
    for (int k = 0; k < 200; k++) {
        pf_retry_result_t res;

        pf_retry_call_ex(&sh->p, always_fail, NULL, &res);
        atomic_fetch_add(&sh->retried, (int)res.attempts - 1);
        atomic_fetch_add(&sh->refused, res.budget_refused);
    }
}

static void
test_retry_call_shared_budget_holds_under_threads(void **state)
{
    pf_backoff_t backoff;
    pf_clock_t *c = *state;
    pf_retry_budget_config_t bc;
    pf_retry_budget_metrics_t m;
    shared_t sh;

    pf_retry_budget_config_init(&bc);
    bc.min_retries_per_sec = 0.0;
    bc.clock = c;
    fixed_policy(&sh.p, c);
    pf_backoff_init(&backoff);
    backoff.initial_delay = 0.0;
    sh.p.backoff = &backoff;
    sh.p.seed = 3;
    assert_pf_ok(pf_retry_budget_new(&bc, &sh.p.budget));
    atomic_init(&sh.refused, 0);
    atomic_init(&sh.retried, 0);
    pf_test_run_threads(4, shared_fn, &sh);
    pf_retry_budget_metrics(sh.p.budget, &m);
    assert_int_equal(m.calls, 800);
    assert_int_equal(m.retries, (uint64_t)atomic_load(&sh.retried));
    assert_int_equal(m.refused, (uint64_t)atomic_load(&sh.refused));
    assert_true(m.retries <= 160); /* 20 % of 800 calls */
    assert_true(m.retries >= 150); /* and most of it is used */
    pf_retry_budget_free(sh.p.budget);
}

static void
alloc_scenario(void *arg)
{
    pf_backoff_t backoff;
    pf_clock_t *c = arg;
    static const int results[] = {-1, 0};
    pf_retry_budget_config_t bc;
    pf_retry_policy_t p;
    script_t s;
    int rc;

    fixed_policy(&p, c);
    pf_backoff_init(&backoff);
    backoff.initial_delay = 0.0;
    p.backoff = &backoff;
    pf_retry_budget_config_init(&bc);
    bc.clock = c;
    rc = pf_retry_budget_new(&bc, &p.budget);
    if (rc == PF_ENOMEM) {
        return;
    }
    assert_pf_ok(rc);
    script_init(&s, results, 2, c);
    assert_pf_ok(pf_retry_call(&p, scripted, &s));
    assert_int_equal(atomic_load(&s.calls), 2);
    pf_retry_budget_free(p.budget);
}

static void
test_retry_allocation_failures_leak_nothing(void **state)
{
    /* The budget allocates twice (itself, its name); the retry loop never
     * allocates. */
    assert_int_equal(pf_test_alloc_sweep(alloc_scenario, *state), 3);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff_defaults_match_the_design),
        cmocka_unit_test(test_backoff_validate_rejects_bad_fields),
        cmocka_unit_test(test_backoff_grows_by_the_multiplier_up_to_the_cap),
        cmocka_unit_test(test_backoff_same_seed_gives_same_draws),
        cmocka_unit_test(test_backoff_full_jitter_is_uniform_below_the_delay),
        cmocka_unit_test(
            test_backoff_equal_jitter_is_uniform_in_the_upper_half),
        cmocka_unit_test(
            test_backoff_decorrelated_jitter_spans_initial_to_thrice_previous),
        cmocka_unit_test(
            test_backoff_decorrelated_jitter_narrows_its_range_at_the_cap),
        cmocka_unit_test(test_backoff_without_rng_gives_the_largest_delay),
        CLOCK_TEST(test_retry_call_first_success_returns_at_once),
        CLOCK_TEST(test_retry_call_waits_the_backoff_between_attempts),
        CLOCK_TEST(test_retry_call_returns_last_result_when_retries_run_out),
        CLOCK_TEST(test_retry_call_does_not_retry_an_open_breaker_by_default),
        CLOCK_TEST(
            test_retry_call_retries_only_listed_results_when_given_a_list),
        CLOCK_TEST(test_retry_call_asks_the_predicate),
        CLOCK_TEST(
            test_retry_call_skips_a_retry_that_would_end_after_the_deadline),
        CLOCK_TEST(test_retry_call_refuses_to_start_after_the_deadline),
        CLOCK_TEST(test_retry_call_honours_the_token_deadline),
        CLOCK_TEST(test_retry_call_stops_waiting_when_cancelled),
        CLOCK_TEST(test_retry_call_rejects_bad_input_without_calling),
        CLOCK_TEST(test_retry_next_plans_exact_delays),
        CLOCK_TEST(test_retry_next_same_seed_same_delays),
        CLOCK_TEST(test_retry_next_decorrelated_follows_the_drawn_delay),
        CLOCK_TEST(test_retry_next_stops_when_max_elapsed_would_pass),
        CLOCK_TEST(test_retry_next_stops_at_the_deadline),
        CLOCK_TEST(test_retry_next_converts_a_deadline_on_another_clock),
        CLOCK_TEST(
            test_retry_listener_sees_each_retry_and_may_override_the_delay),
        CLOCK_TEST(test_retry_next_stops_when_the_token_is_cancelled),
        CLOCK_TEST(test_retry_next_after_success_stays_final),
        CLOCK_TEST(test_retry_next_after_exhaustion_stays_final),
        CLOCK_TEST(test_retry_next_after_a_refused_start_stays_final),
        CLOCK_TEST(test_retry_decide_reports_each_decision_and_misuse),
        CLOCK_TEST(test_retry_call_reports_a_budget_refusal),
        cmocka_unit_test(test_retry_stop_names_are_distinct),
        CLOCK_TEST(test_retry_call_shared_budget_holds_under_threads),
        CLOCK_TEST(test_retry_allocation_failures_leak_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
