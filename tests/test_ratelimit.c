/* Rate limiter: the bucket counted exactly on the manual clock (integer and
 * fractional rates), all-or-nothing takes, blocking acquires with timeout,
 * deadline and token, reservations and refunds for schedulers, events,
 * metrics, many threads on one bucket, bad input, allocation failure. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "puffinflow/ratelimit.h"
#include "test.h"

static pf_ratelimit_t *
make(pf_clock_t *c, double rate, unsigned burst)
{
    pf_ratelimit_config_t cfg;
    pf_ratelimit_t *rl = NULL;

    pf_ratelimit_config_init(&cfg);
    cfg.name = "test";
    cfg.rate = rate;
    cfg.burst = burst;
    cfg.clock = c;
    assert_pf_ok(pf_ratelimit_new(&cfg, &rl));
    return rl;
}

static unsigned
available(pf_ratelimit_t *rl)
{
    pf_ratelimit_metrics_t m;

    pf_ratelimit_metrics(rl, &m);
    return m.available;
}

/* Take single permits until refused; how many were taken. */
static unsigned
drain(pf_ratelimit_t *rl)
{
    unsigned n = 0;

    while (pf_ratelimit_try_acquire(rl, 1) == 0) {
        n++;
    }
    return n;
}

/* ---- config ------------------------------------------------------------ */

static void
test_ratelimit_config_init_sets_documented_defaults(void **state)
{
    pf_ratelimit_config_t cfg;

    (void)state;
    memset(&cfg, 0xab, sizeof(cfg));
    pf_ratelimit_config_init(&cfg);
    assert_string_equal(cfg.name, "default");
    assert_true(cfg.rate == 10.0);
    assert_int_equal(cfg.burst, 10);
    assert_null(cfg.clock);
    assert_null(cfg.listener);
    assert_null(cfg.listener_arg);
    pf_ratelimit_config_init(NULL);
}

static void
expect_einval(const pf_ratelimit_config_t *cfg)
{
    pf_ratelimit_t *sentinel = (pf_ratelimit_t *)(uintptr_t)0x1;
    pf_ratelimit_t *rl = sentinel;

    assert_pf_err(pf_ratelimit_new(cfg, &rl), PF_EINVAL);
    assert_ptr_equal(rl, sentinel);
}

static void
test_ratelimit_new_rejects_bad_config_and_creates_nothing(void **state)
{
    pf_ratelimit_config_t cfg;
    pf_ratelimit_t *rl = NULL;
    long live0;

    (void)state;
    pf_test_alloc_install();
    live0 = pf_test_alloc_live();
    pf_ratelimit_config_init(&cfg);
    assert_pf_err(pf_ratelimit_new(NULL, &rl), PF_EINVAL);
    assert_pf_err(pf_ratelimit_new(&cfg, NULL), PF_EINVAL);
    cfg.name = NULL;
    expect_einval(&cfg);
    pf_ratelimit_config_init(&cfg);
    cfg.burst = 0;
    expect_einval(&cfg);
    pf_ratelimit_config_init(&cfg);
    cfg.rate = 0.0;
    expect_einval(&cfg);
    cfg.rate = -5.0;
    expect_einval(&cfg);
    cfg.rate = NAN;
    expect_einval(&cfg);
    cfg.rate = INFINITY;
    expect_einval(&cfg);
    cfg.rate = PF_RATELIMIT_MAX_RATE * 1.5;
    expect_einval(&cfg);
    /* One permit every 31 years, ten at once: the bucket cannot be
     * counted. */
    cfg.rate = 1e-9;
    cfg.burst = 10;
    expect_einval(&cfg);
    assert_int_equal(pf_test_alloc_live(), live0);
    pf_test_alloc_uninstall();

    /* The edges are accepted. */
    pf_ratelimit_config_init(&cfg);
    cfg.rate = PF_RATELIMIT_MAX_RATE;
    assert_pf_ok(pf_ratelimit_new(&cfg, &rl));
    pf_ratelimit_free(rl);
    cfg.rate = 0.001; /* one permit every 1000 s */
    cfg.burst = 1;
    assert_pf_ok(pf_ratelimit_new(&cfg, &rl));
    pf_ratelimit_free(rl);
    pf_ratelimit_free(NULL);
}

static void
test_ratelimit_name_is_a_copy(void **state)
{
    pf_ratelimit_config_t cfg;
    pf_ratelimit_t *rl;
    char name[16] = "search-api";

    pf_ratelimit_config_init(&cfg);
    cfg.name = name;
    cfg.clock = *state;
    assert_pf_ok(pf_ratelimit_new(&cfg, &rl));
    name[0] = 'X';
    assert_string_equal(pf_ratelimit_name(rl), "search-api");
    assert_null(pf_ratelimit_name(NULL));
    pf_ratelimit_free(rl);
}

/* ---- the bucket, exactly ------------------------------------------------ */

static void
test_ratelimit_starts_full_and_refuses_past_the_burst(void **state)
{
    pf_ratelimit_t *rl = make(*state, 10.0, 5);
    pf_ratelimit_metrics_t m;

    assert_int_equal(available(rl), 5);
    assert_int_equal(drain(rl), 5);
    assert_pf_err(pf_ratelimit_try_acquire(rl, 1), PF_ERATELIMIT);
    pf_ratelimit_metrics(rl, &m);
    assert_int_equal(m.available, 0);
    assert_int_equal(m.acquired, 5);
    assert_int_equal(m.rejected, 2); /* drain's last try, and this one */
    assert_int_equal(m.burst, 5);
    assert_true(m.rate == 10.0);
    pf_ratelimit_free(rl);
}

static void
test_ratelimit_refills_one_permit_per_interval_to_the_nanosecond(void **state)
{
    pf_clock_t *c = *state;
    pf_ratelimit_t *rl = make(c, 10.0, 5);

    drain(rl);
    pf_clock_manual_advance(c, 100 * NS_PER_MS - 1);
    assert_pf_err(pf_ratelimit_try_acquire(rl, 1), PF_ERATELIMIT);
    pf_clock_manual_advance(c, 1);
    assert_pf_ok(pf_ratelimit_try_acquire(rl, 1));
    assert_pf_err(pf_ratelimit_try_acquire(rl, 1), PF_ERATELIMIT);
    pf_clock_manual_advance(c, 250 * NS_PER_MS);
    assert_int_equal(drain(rl), 2); /* 2.5 intervals: two whole permits */
    pf_clock_manual_advance(c, 50 * NS_PER_MS);
    assert_int_equal(drain(rl), 1); /* the half left over was kept */
    pf_ratelimit_free(rl);
}

static void
test_ratelimit_fractional_interval_is_exact_without_drift(void **state)
{
    pf_clock_t *c = *state;
    pf_ratelimit_t *rl = make(c, 3.0, 1000); /* 333333333.3 ns apart */

    assert_int_equal(drain(rl), 1000);
    /* The first permit is due at 333333333.33 ns: the first whole
     * nanosecond at or after it is 333333334. */
    assert_int_equal(pf_ratelimit_time_until_ns(rl, 1), 333333334);
    pf_clock_manual_advance(c, 333333333);
    assert_pf_err(pf_ratelimit_try_acquire(rl, 1), PF_ERATELIMIT);
    pf_clock_manual_advance(c, 1);
    assert_pf_ok(pf_ratelimit_try_acquire(rl, 1));
    /* After exactly 100 s, exactly 300 permits have come in all: no
     * rounding error has piled up over them. */
    pf_clock_manual_set(c, 100 * NS_PER_SEC);
    assert_int_equal(drain(rl), 299);
    assert_int_equal(pf_ratelimit_time_until_ns(rl, 1), 333333334);
    pf_ratelimit_free(rl);
}

static void
test_ratelimit_slow_and_odd_rates_are_exact(void **state)
{
    pf_clock_t *c = *state;
    pf_ratelimit_t *half = make(c, 0.5, 1);  /* one every 2 s */
    pf_ratelimit_t *seven = make(c, 7.0, 7); /* 142857142.86 ns */
    pf_ratelimit_t *odd = make(c, 2.5, 1);   /* one every 400 ms */

    assert_int_equal(drain(half), 1);
    assert_int_equal(drain(seven), 7);
    assert_int_equal(drain(odd), 1);
    assert_int_equal(pf_ratelimit_time_until_ns(half, 1), 2 * NS_PER_SEC);
    assert_int_equal(pf_ratelimit_time_until_ns(seven, 1), 142857143);
    assert_int_equal(pf_ratelimit_time_until_ns(seven, 7), NS_PER_SEC);
    assert_int_equal(pf_ratelimit_time_until_ns(odd, 1), 400 * NS_PER_MS);
    pf_clock_manual_advance(c, NS_PER_SEC - 1);
    assert_int_equal(drain(seven), 6);
    pf_clock_manual_advance(c, 1);
    assert_int_equal(drain(seven), 1);
    assert_int_equal(drain(half), 0);
    assert_int_equal(drain(odd), 1); /* 1 s: capped by the burst of 1 */
    pf_clock_manual_advance(c, NS_PER_SEC);
    assert_int_equal(drain(half), 1);
    pf_ratelimit_free(half);
    pf_ratelimit_free(seven);
    pf_ratelimit_free(odd);
}

static void
test_ratelimit_inexact_rate_rounds_towards_fewer_permits(void **state)
{
    pf_clock_t *c = *state;
    /* An interval of 8.10000007 ns: no multiple of 1/64 ns. */
    pf_ratelimit_t *rl = make(c, 123456789.0, 200000000);
    unsigned got;

    assert_pf_ok(pf_ratelimit_try_acquire(rl, 200000000));
    pf_clock_manual_advance(c, NS_PER_SEC);
    got = available(rl);
    assert_true(got <= 123456789);              /* never more than the rate */
    assert_true(got >= 123456789 / 1000 * 998); /* rounded by < 1/64 ns */
    pf_ratelimit_free(rl);
}

static void
test_ratelimit_takes_all_or_nothing(void **state)
{
    pf_ratelimit_t *rl = make(*state, 1.0, 5);

    assert_pf_ok(pf_ratelimit_try_acquire(rl, 3));
    assert_pf_err(pf_ratelimit_try_acquire(rl, 3), PF_ERATELIMIT);
    assert_int_equal(available(rl), 2); /* the refusal took nothing */
    assert_pf_ok(pf_ratelimit_try_acquire(rl, 2));
    assert_int_equal(available(rl), 0);
    pf_ratelimit_free(rl);
}

static void
test_ratelimit_rejects_impossible_requests(void **state)
{
    pf_ratelimit_t *rl = make(*state, 1.0, 5);
    int64_t w;

    assert_pf_err(pf_ratelimit_try_acquire(rl, 0), PF_EINVAL);
    assert_pf_err(pf_ratelimit_try_acquire(rl, 6), PF_EINVAL);
    assert_pf_err(pf_ratelimit_try_acquire(NULL, 1), PF_EINVAL);
    assert_pf_err(pf_ratelimit_acquire(rl, 6, 1.0), PF_EINVAL);
    assert_pf_err(pf_ratelimit_acquire(rl, 1, -1.0), PF_EINVAL);
    assert_pf_err(pf_ratelimit_acquire(rl, 1, NAN), PF_EINVAL);
    assert_pf_err(pf_ratelimit_acquire(NULL, 1, 1.0), PF_EINVAL);
    assert_pf_err(pf_ratelimit_reserve(rl, 0, 1.0, &w), PF_EINVAL);
    assert_pf_err(pf_ratelimit_reserve(rl, 1, NAN, &w), PF_EINVAL);
    assert_pf_err(pf_ratelimit_reserve(rl, 1, 1.0, NULL), PF_EINVAL);
    assert_int_equal(pf_ratelimit_time_until_ns(rl, 6), INT64_MAX);
    assert_int_equal(pf_ratelimit_time_until_ns(rl, 0), INT64_MAX);
    assert_int_equal(pf_ratelimit_time_until_ns(NULL, 1), INT64_MAX);
    assert_true(isinf(pf_ratelimit_time_until(rl, 6)));
    assert_int_equal(available(rl), 5); /* nothing was taken */
    pf_ratelimit_free(rl);
}

static void
test_ratelimit_never_holds_more_than_the_burst_after_idling(void **state)
{
    pf_clock_t *c = *state;
    pf_ratelimit_t *rl = make(c, 1000.0, 4);

    drain(rl);
    pf_clock_manual_advance(c, 3600 * NS_PER_SEC);
    assert_int_equal(available(rl), 4);
    assert_int_equal(drain(rl), 4);
    pf_ratelimit_free(rl);
}

static void
test_ratelimit_is_full_after_an_idle_longer_than_its_time_range(void **state)
{
    pf_clock_t *c = *state;
    /* An interval of 65/64 ns: time is counted in 1/64 ns, which wraps
     * around 2^64 after 2^58 ns (9.1 years). */
    pf_ratelimit_t *rl = make(c, 64e9 / 65.0, 10);

    assert_int_equal(drain(rl), 10);
    /* Exactly one wrap later the bucket's time reads as it did when it was
     * drained; it must still know that 9 years have passed. */
    pf_clock_manual_advance(c, INT64_C(1) << 58);
    assert_int_equal(available(rl), 10);
    assert_int_equal(pf_ratelimit_time_until_ns(rl, 10), 0);
    assert_int_equal(drain(rl), 10);
    /* And it counts as usual from there: 2 ns are 128 units, one permit
     * (65) and 63 towards the next. */
    pf_clock_manual_advance(c, 2);
    assert_int_equal(drain(rl), 1);
    pf_ratelimit_free(rl);
}

static void
test_ratelimit_time_until_says_when_permits_will_be_there(void **state)
{
    pf_clock_t *c = *state;
    pf_ratelimit_t *rl = make(c, 10.0, 5);

    assert_int_equal(pf_ratelimit_time_until_ns(rl, 5), 0);
    assert_pf_ok(pf_ratelimit_try_acquire(rl, 4));
    assert_int_equal(pf_ratelimit_time_until_ns(rl, 1), 0);
    assert_int_equal(pf_ratelimit_time_until_ns(rl, 2), 100 * NS_PER_MS);
    assert_int_equal(pf_ratelimit_time_until_ns(rl, 5), 400 * NS_PER_MS);
    assert_true(pf_ratelimit_time_until(rl, 5) == 0.4);
    pf_clock_manual_advance(c, 400 * NS_PER_MS);
    assert_int_equal(pf_ratelimit_time_until_ns(rl, 5), 0);
    assert_pf_ok(pf_ratelimit_try_acquire(rl, 5));
    pf_ratelimit_free(rl);
}

/* ---- reservations -------------------------------------------------------- */

static void
test_ratelimit_reservations_queue_in_order(void **state)
{
    pf_clock_t *c = *state;
    pf_ratelimit_t *rl = make(c, 10.0, 2);
    pf_ratelimit_metrics_t m;
    int64_t w = -1;

    assert_pf_ok(pf_ratelimit_reserve(rl, 2, 0.0, &w));
    assert_int_equal(w, 0);
    assert_pf_ok(pf_ratelimit_reserve(rl, 1, 1.0, &w));
    assert_int_equal(w, 100 * NS_PER_MS);
    assert_pf_ok(pf_ratelimit_reserve(rl, 2, 1.0, &w));
    assert_int_equal(w, 300 * NS_PER_MS); /* behind the first */
    /* Too far: refused, nothing reserved. */
    assert_pf_err(pf_ratelimit_reserve(rl, 1, 0.399, &w), PF_ERATELIMIT);
    /* Exactly as far as allowed: accepted. */
    assert_pf_ok(pf_ratelimit_reserve(rl, 1, 0.4, &w));
    assert_int_equal(w, 400 * NS_PER_MS);
    assert_int_equal(available(rl), 0);
    assert_pf_err(pf_ratelimit_try_acquire(rl, 1), PF_ERATELIMIT);
    pf_ratelimit_metrics(rl, &m);
    assert_int_equal(m.acquired, 6);
    assert_int_equal(m.waited, 3);
    assert_int_equal(m.rejected, 2);
    /* Once every reservation is due, the bucket refills as usual. */
    pf_clock_manual_advance(c, 600 * NS_PER_MS);
    assert_int_equal(available(rl), 2);
    pf_ratelimit_free(rl);
}

static void
test_ratelimit_refund_gives_permits_back_up_to_the_burst(void **state)
{
    pf_clock_t *c = *state;
    pf_ratelimit_t *rl = make(c, 10.0, 3);
    pf_ratelimit_metrics_t m;
    int64_t w;

    assert_pf_ok(pf_ratelimit_try_acquire(rl, 3));
    assert_pf_ok(pf_ratelimit_reserve(rl, 2, 1.0, &w));
    assert_int_equal(w, 200 * NS_PER_MS);
    pf_ratelimit_refund(rl, 2); /* the reservation is given up */
    assert_int_equal(pf_ratelimit_time_until_ns(rl, 1), 100 * NS_PER_MS);
    pf_ratelimit_refund(rl, 1);
    assert_int_equal(available(rl), 1);
    pf_ratelimit_refund(rl, 100); /* never beyond the burst */
    assert_int_equal(available(rl), 3);
    pf_ratelimit_refund(rl, 0);
    pf_ratelimit_refund(NULL, 1);
    pf_ratelimit_metrics(rl, &m);
    assert_int_equal(m.refunded, 103);
    assert_int_equal(drain(rl), 3);
    pf_ratelimit_free(rl);
}

/* ---- blocking acquire ---------------------------------------------------- */

typedef struct acquirer {
    pf_ratelimit_t *rl;
    unsigned n;
    double timeout;
    const pf_deadline_t *deadline;
    pf_token_t *tok;
    int rc;
    atomic_int done;
    pthread_t tid;
} acquirer_t;

static void *
acquirer_main(void *p)
{
    acquirer_t *a = p;

    a->rc = pf_ratelimit_acquire_until(a->rl, a->n, a->timeout, a->deadline,
                                       a->tok);
    atomic_store(&a->done, 1);
    return NULL;
}

static void
acquirer_start(acquirer_t *a, pf_ratelimit_t *rl, unsigned n, double timeout)
{
    a->rl = rl;
    a->n = n;
    a->timeout = timeout;
    atomic_init(&a->done, 0);
    assert_int_equal(pthread_create(&a->tid, NULL, acquirer_main, a), 0);
}

static int
acquirer_join(acquirer_t *a)
{
    pthread_join(a->tid, NULL);
    return a->rc;
}

static void
test_ratelimit_acquire_sleeps_until_the_permits_are_due(void **state)
{
    pf_clock_t *c = *state;
    pf_ratelimit_t *rl = make(c, 10.0, 1);
    acquirer_t a = {0};
    pf_ratelimit_metrics_t m;

    assert_pf_ok(pf_ratelimit_acquire(rl, 1, 0.0)); /* there: no wait */
    acquirer_start(&a, rl, 1, 1.0);
    pf_test_wait_for_waiters(c, 1);
    /* Reserved at once: a newcomer cannot take it first. */
    assert_pf_err(pf_ratelimit_try_acquire(rl, 1), PF_ERATELIMIT);
    pf_clock_manual_advance(c, 100 * NS_PER_MS - 1);
    assert_int_equal(atomic_load(&a.done), 0);
    pf_clock_manual_advance(c, 1);
    assert_pf_ok(acquirer_join(&a));
    pf_ratelimit_metrics(rl, &m);
    assert_int_equal(m.acquired, 2);
    assert_int_equal(m.waited, 1);
    pf_ratelimit_free(rl);
}

static void
test_ratelimit_acquire_refuses_at_once_when_the_wait_is_too_long(void **state)
{
    pf_clock_t *c = *state;
    pf_ratelimit_t *rl = make(c, 1.0, 1);

    assert_pf_ok(pf_ratelimit_try_acquire(rl, 1));
    assert_pf_err(pf_ratelimit_acquire(rl, 1, 0.5), PF_ERATELIMIT);
    assert_int_equal(pf_clock_manual_waiters(c), 0); /* did not wait */
    assert_int_equal(pf_ratelimit_time_until_ns(rl, 1), NS_PER_SEC);
    assert_pf_err(pf_ratelimit_acquire(rl, 1, 0.0), PF_ERATELIMIT);
    pf_ratelimit_free(rl);
}

static void
test_ratelimit_acquire_until_times_out_at_once_before_the_deadline(void **state)
{
    pf_clock_t *c = *state;
    pf_ratelimit_t *rl = make(c, 1.0, 1);
    pf_deadline_t soon = pf_deadline_in(c, 0.5);
    pf_deadline_t later = pf_deadline_in(c, 5.0);
    pf_ratelimit_metrics_t m;

    assert_pf_ok(pf_ratelimit_try_acquire(rl, 1));
    /* Due in 1 s; the caller must be done in 0.5 s. */
    assert_pf_err(pf_ratelimit_acquire_until(rl, 1, 10.0, &soon, NULL),
                  PF_ETIMEDOUT);
    /* The caller has 5 s, but the limiter's own timeout is shorter. */
    assert_pf_err(pf_ratelimit_acquire_until(rl, 1, 0.5, &later, NULL),
                  PF_ERATELIMIT);
    assert_int_equal(pf_clock_manual_waiters(c), 0);
    assert_int_equal(pf_ratelimit_time_until_ns(rl, 1), NS_PER_SEC);
    pf_ratelimit_metrics(rl, &m);
    assert_int_equal(m.rejected, 1); /* only the limiter's own refusal */
    pf_ratelimit_free(rl);
}

static void
test_ratelimit_acquire_until_is_cancelled_and_gives_permits_back(void **state)
{
    pf_clock_t *c = *state;
    pf_ratelimit_t *rl = make(c, 1.0, 1);
    pf_token_t *tok;
    acquirer_t a = {0};

    assert_pf_ok(pf_token_new(NULL, NULL, &tok));
    assert_pf_ok(pf_ratelimit_try_acquire(rl, 1));
    a.tok = tok;
    acquirer_start(&a, rl, 1, 10.0);
    pf_test_wait_for_waiters(c, 1);
    assert_int_equal(pf_ratelimit_time_until_ns(rl, 1), 2 * NS_PER_SEC);
    pf_token_cancel(tok);
    assert_pf_err(acquirer_join(&a), PF_ECANCELED);
    /* The reserved permit went back: the next is due in 1 s again. */
    assert_int_equal(pf_ratelimit_time_until_ns(rl, 1), NS_PER_SEC);
    /* A token cancelled before the call: nothing is taken. */
    assert_pf_err(pf_ratelimit_acquire_until(rl, 1, 10.0, NULL, tok),
                  PF_ECANCELED);
    assert_int_equal(pf_ratelimit_time_until_ns(rl, 1), NS_PER_SEC);
    pf_token_free(tok);
    pf_ratelimit_free(rl);
}

static void
test_ratelimit_acquire_until_waits_within_the_deadline(void **state)
{
    pf_clock_t *c = *state;
    pf_ratelimit_t *rl = make(c, 2.0, 1);
    pf_deadline_t d = pf_deadline_in(c, 0.5);
    pf_token_t *tok;
    acquirer_t a = {0};

    assert_pf_ok(pf_token_new(NULL, &d, &tok));
    assert_pf_ok(pf_ratelimit_try_acquire(rl, 1));
    a.tok = tok;
    a.deadline = &d;
    acquirer_start(&a, rl, 1, INFINITY);
    pf_test_wait_for_waiters(c, 1);
    pf_clock_manual_advance(c, 500 * NS_PER_MS); /* due exactly then */
    assert_pf_ok(acquirer_join(&a));
    pf_token_free(tok);
    pf_ratelimit_free(rl);
}

/* ---- events ----------------------------------------------------------------
 */

typedef struct events {
    int count;
    pf_ratelimit_event_t last;
    pf_ratelimit_t *rl;
} events_t;

static void
on_event(const pf_ratelimit_event_t *ev, void *arg)
{
    events_t *e = arg;

    e->count++;
    e->last = *ev;
    /* No lock is held: calling back into the limiter is fine. */
    assert_int_equal(pf_ratelimit_time_until_ns(e->rl, 1), ev->wait_ns);
}

static void
test_ratelimit_listener_hears_every_refusal(void **state)
{
    pf_clock_t *c = *state;
    pf_ratelimit_config_t cfg;
    pf_ratelimit_t *rl;
    events_t e = {0};
    int64_t w;

    pf_ratelimit_config_init(&cfg);
    cfg.name = "listened";
    cfg.rate = 4.0;
    cfg.burst = 1;
    cfg.clock = c;
    cfg.listener = on_event;
    cfg.listener_arg = &e;
    assert_pf_ok(pf_ratelimit_new(&cfg, &rl));
    e.rl = rl;
    assert_pf_ok(pf_ratelimit_try_acquire(rl, 1));
    assert_int_equal(e.count, 0);
    assert_pf_err(pf_ratelimit_try_acquire(rl, 1), PF_ERATELIMIT);
    assert_int_equal(e.count, 1);
    assert_int_equal(e.last.kind, PF_RATELIMIT_REJECTED);
    assert_string_equal(e.last.name, "listened");
    assert_int_equal(e.last.requested, 1);
    assert_int_equal(e.last.wait_ns, 250 * NS_PER_MS);
    assert_pf_err(pf_ratelimit_acquire(rl, 1, 0.1), PF_ERATELIMIT);
    assert_pf_err(pf_ratelimit_reserve(rl, 1, 0.1, &w), PF_ERATELIMIT);
    assert_int_equal(e.count, 3);
    pf_ratelimit_free(rl);
}

/* ---- clocks ---------------------------------------------------------------
 */

static void
test_ratelimit_reads_the_coarse_clock_only_when_it_is_precise_enough(
    void **state)
{
    pf_ratelimit_config_t cfg;
    pf_ratelimit_t *rl;
    pf_ratelimit_metrics_t m;

    pf_ratelimit_config_init(&cfg);
    /* A million a second, one at a time: a 1-4 ms tick is far too coarse. */
    cfg.rate = 1e6;
    cfg.burst = 1;
    assert_pf_ok(pf_ratelimit_new(&cfg, &rl));
    pf_ratelimit_metrics(rl, &m);
    assert_true(m.precise_clock);
    pf_ratelimit_free(rl);
    /* Ten a second with room for a hundred: a tick's refill fits. */
    cfg.rate = 10.0;
    cfg.burst = 100;
    assert_pf_ok(pf_ratelimit_new(&cfg, &rl));
    pf_ratelimit_metrics(rl, &m);
    assert_false(m.precise_clock);
    assert_int_equal(m.available, 100);
    assert_pf_ok(pf_ratelimit_try_acquire(rl, 100));
    assert_pf_err(pf_ratelimit_try_acquire(rl, 100), PF_ERATELIMIT);
    pf_ratelimit_free(rl);
    /* The manual clock is exact either way. */
    cfg.clock = *state;
    assert_pf_ok(pf_ratelimit_new(&cfg, &rl));
    pf_ratelimit_metrics(rl, &m);
    assert_true(m.precise_clock);
    pf_ratelimit_free(rl);
}

/* ---- many threads
 * ------------------------------------------------------------ */

typedef struct hammer {
    pf_ratelimit_t *rl;
    atomic_long got;
    atomic_long refused;
} hammer_t;

static void
hammer(void *arg, unsigned i)
{
    hammer_t *h = arg;

    for (int k = 0; k < 400; k++) {
        int rc = pf_ratelimit_try_acquire(h->rl, 1 + (i + k) % 2);

        if (rc == 0) {
            atomic_fetch_add(&h->got, 1 + (i + k) % 2);
        } else {
            assert_int_equal(rc, PF_ERATELIMIT);
            atomic_fetch_add(&h->refused, 1);
        }
    }
}

static void
test_ratelimit_threads_share_exactly_the_permits_there_are(void **state)
{
    pf_clock_t *c = *state;
    pf_ratelimit_t *rl = make(c, 100.0, 1000);
    hammer_t h;
    pf_ratelimit_metrics_t m;

    h.rl = rl;
    atomic_init(&h.got, 0);
    atomic_init(&h.refused, 0);
    /* 8 threads ask for 4800 permits; the clock stands still. */
    pf_test_run_threads(8, hammer, &h);
    /* Requests of 1 and 2: the last permit may be left when only pairs
     * were asked for it. */
    assert_true(atomic_load(&h.got) == 1000 || atomic_load(&h.got) == 999);
    pf_ratelimit_metrics(rl, &m);
    assert_int_equal(m.acquired, atomic_load(&h.got));
    assert_int_equal(m.rejected, atomic_load(&h.refused));
    drain(rl);
    atomic_store(&h.got, 0);
    pf_clock_manual_advance(c, 2 * NS_PER_SEC);
    pf_test_run_threads(8, hammer, &h);
    assert_true(atomic_load(&h.got) == 200 || atomic_load(&h.got) == 199);
    pf_ratelimit_free(rl);
}

typedef struct mixer {
    pf_ratelimit_t *rl;
    atomic_long net; /* permits kept: taken minus given back */
} mixer_t;

static void
mixer(void *arg, unsigned i)
{
    mixer_t *m = arg;
    int64_t w;

    for (unsigned k = 0; k < 300; k++) {
        switch ((i + k) % 3) {
        case 0:
            if (pf_ratelimit_try_acquire(m->rl, 1) == 0) {
                atomic_fetch_add(&m->net, 1);
            }
            break;
        case 1:
            if (pf_ratelimit_reserve(m->rl, 1, 0.0, &w) == 0) {
                assert_int_equal(w, 0);
                atomic_fetch_add(&m->net, 1);
            }
            break;
        default:
            /* Reserve ahead, then change one's mind. */
            assert_pf_ok(pf_ratelimit_reserve(m->rl, 1, 3600.0, &w));
            pf_ratelimit_refund(m->rl, 1);
            break;
        }
    }
}

static void
test_ratelimit_threads_mixing_reserve_and_refund_lose_no_permit(void **state)
{
    pf_ratelimit_t *rl = make(*state, 1.0, 100);
    mixer_t m;
    pf_ratelimit_metrics_t met;

    m.rl = rl;
    atomic_init(&m.net, 0);
    pf_test_run_threads(6, mixer, &m);
    /* Every refund gave back a reservation still outstanding, so the
     * bucket's debt is exactly the permits kept: no more than the burst
     * were kept, and the rest are still there. */
    pf_ratelimit_metrics(rl, &met);
    assert_true(atomic_load(&m.net) <= 100);
    assert_true(atomic_load(&m.net) > 0);
    assert_int_equal(met.available, 100 - atomic_load(&m.net));
    assert_int_equal((long)(met.acquired - met.refunded), atomic_load(&m.net));
    pf_ratelimit_free(rl);
}

/* ---- allocation failure
 * --------------------------------------------------------- */

static void
alloc_scenario(void *arg)
{
    pf_clock_t *c = arg;
    pf_ratelimit_config_t cfg;
    pf_ratelimit_t *rl = NULL;
    int64_t w;
    int rc;

    pf_ratelimit_config_init(&cfg);
    cfg.name = "sweep";
    cfg.clock = c;
    rc = pf_ratelimit_new(&cfg, &rl);
    if (rc != 0) {
        assert_pf_err(rc, PF_ENOMEM);
        assert_null(rl);
        return;
    }
    assert_pf_ok(pf_ratelimit_try_acquire(rl, 5));
    assert_pf_ok(pf_ratelimit_acquire(rl, 5, 0.0));
    assert_pf_ok(pf_ratelimit_reserve(rl, 1, 1.0, &w));
    pf_ratelimit_refund(rl, 1);
    pf_ratelimit_free(rl);
}

static void
test_ratelimit_survives_every_allocation_failure(void **state)
{
    assert_true(pf_test_alloc_sweep(alloc_scenario, *state) >= 2);
}

#define T(name) CLOCK_TEST(name)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_ratelimit_config_init_sets_documented_defaults),
        T(test_ratelimit_new_rejects_bad_config_and_creates_nothing),
        T(test_ratelimit_name_is_a_copy),
        T(test_ratelimit_starts_full_and_refuses_past_the_burst),
        T(test_ratelimit_refills_one_permit_per_interval_to_the_nanosecond),
        T(test_ratelimit_fractional_interval_is_exact_without_drift),
        T(test_ratelimit_slow_and_odd_rates_are_exact),
        T(test_ratelimit_inexact_rate_rounds_towards_fewer_permits),
        T(test_ratelimit_takes_all_or_nothing),
        T(test_ratelimit_rejects_impossible_requests),
        T(test_ratelimit_never_holds_more_than_the_burst_after_idling),
        T(test_ratelimit_is_full_after_an_idle_longer_than_its_time_range),
        T(test_ratelimit_time_until_says_when_permits_will_be_there),
        T(test_ratelimit_reservations_queue_in_order),
        T(test_ratelimit_refund_gives_permits_back_up_to_the_burst),
        T(test_ratelimit_acquire_sleeps_until_the_permits_are_due),
        T(test_ratelimit_acquire_refuses_at_once_when_the_wait_is_too_long),
        T(test_ratelimit_acquire_until_times_out_at_once_before_the_deadline),
        T(test_ratelimit_acquire_until_is_cancelled_and_gives_permits_back),
        T(test_ratelimit_acquire_until_waits_within_the_deadline),
        T(test_ratelimit_listener_hears_every_refusal),
        T(test_ratelimit_reads_the_coarse_clock_only_when_it_is_precise_enough),
        T(test_ratelimit_threads_share_exactly_the_permits_there_are),
        T(test_ratelimit_threads_mixing_reserve_and_refund_lose_no_permit),
        T(test_ratelimit_survives_every_allocation_failure),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
