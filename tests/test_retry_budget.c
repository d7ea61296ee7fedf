/* Retry budgets: the allowance, the sliding window, the listener, and the
 * allowance holding under threads. Time moves only through the manual
 * clock. */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>

#include "puffinflow/retry.h"
#include "test.h"

static pf_retry_budget_t *
budget_on(pf_clock_t *c, double ratio, double min_per_sec)
{
    pf_retry_budget_config_t cfg;
    pf_retry_budget_t *b = NULL;

    pf_retry_budget_config_init(&cfg);
    cfg.ratio = ratio;
    cfg.min_retries_per_sec = min_per_sec;
    cfg.clock = c;
    assert_pf_ok(pf_retry_budget_new(&cfg, &b));
    return b;
}

static void
deposit(pf_retry_budget_t *b, int n)
{
    for (int i = 0; i < n; i++) {
        pf_retry_budget_deposit(b);
    }
}

/* How many withdrawals succeed in a row, at most limit. */
static int
drain(pf_retry_budget_t *b, int limit)
{
    int n = 0;

    while (n < limit && pf_retry_budget_try_withdraw(b) == 0) {
        n++;
    }
    return n;
}

static void
test_retry_budget_defaults_match_the_design(void **state)
{
    pf_retry_budget_config_t cfg;
    pf_retry_budget_metrics_t m;
    pf_retry_budget_t *b;

    (void)state;
    pf_retry_budget_config_init(&cfg);
    assert_string_equal(cfg.name, "default");
    assert_true(cfg.ratio == 0.2);
    assert_true(cfg.min_retries_per_sec == 10.0);
    assert_true(cfg.window == 10.0);
    assert_null(cfg.listener);
    assert_null(cfg.clock);
    assert_pf_ok(pf_retry_budget_new(&cfg, &b));
    assert_string_equal(pf_retry_budget_name(b), "default");
    pf_retry_budget_metrics(b, &m);
    assert_true(m.ratio == 0.2);
    assert_true(m.window == 10.0);
    assert_int_equal(m.available, 100); /* 10 per second over 10 s */
    pf_retry_budget_free(b);
    pf_retry_budget_free(NULL);
    pf_retry_budget_config_init(NULL);
}

static void
test_retry_budget_new_rejects_bad_fields(void **state)
{
    pf_retry_budget_config_t ok;
    pf_retry_budget_config_t cfg;
    pf_retry_budget_t *b = (pf_retry_budget_t *)&ok; /* must stay put */

    (void)state;
    pf_retry_budget_config_init(&ok);
    assert_pf_err(pf_retry_budget_new(NULL, &b), PF_EINVAL);
    assert_pf_err(pf_retry_budget_new(&ok, NULL), PF_EINVAL);
#define BAD(field, value)                                                      \
    do {                                                                       \
        cfg = ok;                                                              \
        cfg.field = (value);                                                   \
        assert_pf_err(pf_retry_budget_new(&cfg, &b), PF_EINVAL);               \
    } while (0)
    BAD(name, NULL);
    BAD(ratio, NAN);
    BAD(ratio, -0.1);
    BAD(ratio, 1001.0);
    BAD(ratio, INFINITY);
    BAD(min_retries_per_sec, NAN);
    BAD(min_retries_per_sec, -1.0);
    BAD(min_retries_per_sec, INFINITY);
    BAD(window, 0.0);
    BAD(window, -1.0);
    BAD(window, NAN);
    BAD(window, 0.001);
    BAD(window, 86401.0);
#undef BAD
    assert_ptr_equal(b, (pf_retry_budget_t *)&ok);
    assert_pf_err(pf_retry_budget_try_withdraw(NULL), PF_EINVAL);
    pf_retry_budget_deposit(NULL);
    pf_retry_budget_metrics(NULL, NULL);
    assert_null(pf_retry_budget_name(NULL));
}

static void
test_retry_budget_allows_the_ratio_of_recent_calls(void **state)
{
    pf_retry_budget_t *b = budget_on(*state, 0.2, 0.0);
    pf_retry_budget_metrics_t m;

    assert_pf_err(pf_retry_budget_try_withdraw(b), PF_EBUDGET); /* no call */
    deposit(b, 100);
    assert_int_equal(drain(b, 1000), 20);
    assert_pf_err(pf_retry_budget_try_withdraw(b), PF_EBUDGET);
    deposit(b, 5); /* one more retry per 5 calls */
    assert_int_equal(drain(b, 1000), 1);
    pf_retry_budget_metrics(b, &m);
    assert_int_equal(m.calls, 105);
    assert_int_equal(m.retries, 21);
    assert_int_equal(m.refused, 4); /* each drain ends with a refusal */
    assert_int_equal(m.window_calls, 105);
    assert_int_equal(m.window_retries, 21);
    assert_int_equal(m.available, 0);
    pf_retry_budget_free(b);
}

static void
test_retry_budget_reserve_allows_retries_without_calls(void **state)
{
    pf_retry_budget_t *b = budget_on(*state, 0.0, 2.0);

    /* 2 per second over the 10 s window. */
    assert_int_equal(drain(b, 1000), 20);
    pf_retry_budget_free(b);
    b = budget_on(*state, 0.5, 1.0);
    deposit(b, 10);
    assert_int_equal(drain(b, 1000), 15); /* 5 from calls + 10 reserve */
    pf_retry_budget_free(b);
}

static void
test_retry_budget_forgets_calls_after_the_window(void **state)
{
    pf_clock_t *c = *state;
    pf_retry_budget_t *b = budget_on(c, 0.5, 0.0);
    pf_retry_budget_metrics_t m;

    deposit(b, 10);                       /* at 0 s */
    pf_clock_manual_advance(c, 5 * NS_PER_SEC);
    deposit(b, 10);                       /* at 5 s */
    assert_int_equal(drain(b, 3), 3);     /* at 5 s */
    pf_clock_manual_advance(c, 5 * NS_PER_SEC);
    /* At 10 s the first 10 calls left the window: 10 calls allow 5, of
     * which the 3 retries (made at 5 s) are still counted. */
    pf_retry_budget_metrics(b, &m);
    assert_int_equal(m.window_calls, 10);
    assert_int_equal(m.window_retries, 3);
    assert_int_equal(m.available, 2);
    assert_int_equal(drain(b, 100), 2);
    pf_clock_manual_advance(c, 5 * NS_PER_SEC);
    /* At 15 s every call left the window; the 2 retries of 10 s stay. */
    pf_retry_budget_metrics(b, &m);
    assert_int_equal(m.window_calls, 0);
    assert_int_equal(m.window_retries, 2);
    pf_clock_manual_advance(c, 5 * NS_PER_SEC);
    pf_retry_budget_metrics(b, &m); /* at 20 s, they left too */
    assert_int_equal(m.window_retries, 0);
    assert_int_equal(m.calls, 20); /* totals stay */
    assert_int_equal(m.retries, 5);
    assert_pf_err(pf_retry_budget_try_withdraw(b), PF_EBUDGET);
    deposit(b, 2);
    assert_int_equal(drain(b, 100), 1);
    /* Far later, a slot reused after many windows starts afresh. */
    pf_clock_manual_advance(c, 1000 * NS_PER_SEC);
    pf_retry_budget_metrics(b, &m);
    assert_int_equal(m.window_calls, 0);
    deposit(b, 4);
    pf_retry_budget_metrics(b, &m);
    assert_int_equal(m.window_calls, 4);
    pf_retry_budget_free(b);
}

typedef struct refusals {
    pf_retry_budget_t *b;
    int calls;
    uint64_t window_calls;
    uint64_t window_retries;
    char name[32];
    int inner_rc;
} refusals_t;

static void
on_refused(const pf_retry_budget_event_t *ev, void *arg)
{
    refusals_t *r = arg;

    r->calls++;
    r->window_calls = ev->window_calls;
    r->window_retries = ev->window_retries;
    snprintf(r->name, sizeof(r->name), "%s", ev->budget_name);
    if (r->calls == 1) {
        /* No lock is held: calling the budget again cannot deadlock. */
        r->inner_rc = pf_retry_budget_try_withdraw(r->b);
    }
}

static void
test_retry_budget_tells_the_listener_of_refusals(void **state)
{
    pf_retry_budget_config_t cfg;
    refusals_t r = {0};

    pf_retry_budget_config_init(&cfg);
    cfg.name = "payments";
    cfg.ratio = 0.5;
    cfg.min_retries_per_sec = 0.0;
    cfg.listener = on_refused;
    cfg.listener_arg = &r;
    cfg.clock = *state;
    assert_pf_ok(pf_retry_budget_new(&cfg, &r.b));
    deposit(r.b, 4);
    assert_int_equal(drain(r.b, 100), 2);
    assert_int_equal(r.calls, 2); /* the refusal, and the nested one */
    assert_int_equal(r.inner_rc, PF_EBUDGET);
    assert_int_equal(r.window_calls, 4);
    assert_int_equal(r.window_retries, 2);
    assert_string_equal(r.name, "payments");
    assert_string_equal(pf_retry_budget_name(r.b), "payments");
    pf_retry_budget_free(r.b);
}

/* Threads deposit and withdraw at once: every deposit is counted and the
 * retries allowed never exceed the allowance. */
typedef struct storm {
    pf_retry_budget_t *b;
    atomic_int allowed;
} storm_t;

static void
storm_fn(void *arg, unsigned i)
{
    storm_t *s = arg;

    for (int k = 0; k < 5000; k++) {
        if (i % 2 == 0) {
            pf_retry_budget_deposit(s->b);
        } else if (pf_retry_budget_try_withdraw(s->b) == 0) {
            atomic_fetch_add(&s->allowed, 1);
        }
    }
}

static void
test_retry_budget_allowance_holds_under_threads(void **state)
{
    storm_t s;
    pf_retry_budget_metrics_t m;

    s.b = budget_on(*state, 0.1, 1.0);
    atomic_init(&s.allowed, 0);
    pf_test_run_threads(6, storm_fn, &s);
    pf_retry_budget_metrics(s.b, &m);
    assert_int_equal(m.calls, 15000);
    assert_int_equal(m.window_calls, 15000);
    assert_int_equal(m.retries, (uint64_t)atomic_load(&s.allowed));
    assert_int_equal(m.retries + m.refused, 15000);
    assert_true(m.retries <= 1500 + 10); /* 10 % + 1 per second x 10 s */
    /* Afterwards, exactly what is left of the allowance can be taken. */
    assert_int_equal(drain(s.b, 100000), (int)(1510 - m.retries));
    pf_retry_budget_free(s.b);
}

static void
alloc_scenario(void *arg)
{
    pf_retry_budget_config_t cfg;
    pf_retry_budget_t *b;
    int rc;

    pf_retry_budget_config_init(&cfg);
    cfg.clock = arg;
    rc = pf_retry_budget_new(&cfg, &b);
    if (rc == PF_ENOMEM) {
        return;
    }
    assert_pf_ok(rc);
    deposit(b, 10);
    assert_pf_ok(pf_retry_budget_try_withdraw(b));
    pf_retry_budget_free(b);
}

static void
test_retry_budget_allocation_failures_leak_nothing(void **state)
{
    assert_int_equal(pf_test_alloc_sweep(alloc_scenario, *state), 3);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retry_budget_defaults_match_the_design),
        cmocka_unit_test(test_retry_budget_new_rejects_bad_fields),
        CLOCK_TEST(test_retry_budget_allows_the_ratio_of_recent_calls),
        CLOCK_TEST(test_retry_budget_reserve_allows_retries_without_calls),
        CLOCK_TEST(test_retry_budget_forgets_calls_after_the_window),
        CLOCK_TEST(test_retry_budget_tells_the_listener_of_refusals),
        CLOCK_TEST(test_retry_budget_allowance_holds_under_threads),
        CLOCK_TEST(test_retry_budget_allocation_failures_leak_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
