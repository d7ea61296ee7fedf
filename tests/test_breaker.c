/* Circuit breaker: every transition and option on the manual clock, bad
 * input, stale and repeated permits, listener, fallback, metrics and
 * allocation failures. Windows: test_breaker_window.c; the model check:
 * test_breaker_model.c; threads: test_breaker_stress.c; keyed groups:
 * test_breaker_group.c. */
#include <math.h>
#include <string.h>

#include "puffinflow/breaker.h"
#include "test.h"
#include "breaker_testutil.h"

#define HTTP_ERR 502 /* another of the user's own failure codes */

static void
config(pf_breaker_config_t *cfg, pf_clock_t *clock)
{
    pf_breaker_config_init(cfg);
    cfg->clock = clock;
}

/* A config whose breaker opens after `failure` consecutive failures, waits
 * `recovery` seconds, then closes after `success` trial successes. */
static void
config_trip(pf_breaker_config_t *cfg, pf_clock_t *clock, unsigned failure,
            double recovery, unsigned success)
{
    config(cfg, clock);
    cfg->failure_threshold = failure;
    cfg->recovery_timeout = recovery;
    cfg->success_threshold = success;
}

static void
fail_n(pf_breaker_t *b, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        assert_int_equal(run(b, -1), PF_BREAKER_OUTCOME_FAILURE);
    }
}

/* A breaker with the defaults but failure_threshold n. */
static pf_breaker_t *
make_failing_after(pf_clock_t *clock, unsigned n)
{
    pf_breaker_config_t cfg;

    config(&cfg, clock);
    cfg.failure_threshold = n;
    return make(&cfg);
}

/* A breaker opened by failure_threshold 1 at the clock's time now. */
static pf_breaker_t *
make_open(pf_clock_t *clock, double recovery, unsigned success_threshold)
{
    pf_breaker_config_t cfg;
    pf_breaker_t *b;

    config_trip(&cfg, clock, 1, recovery, success_threshold);
    b = make(&cfg);
    fail_n(b, 1);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_OPEN);
    return b;
}

/* ---- configuration ---------------------------------------------------- */

static void
test_breaker_config_init_sets_documented_defaults(void **state)
{
    pf_breaker_config_t cfg;

    (void)state;
    memset(&cfg, 0x5a, sizeof(cfg));
    pf_breaker_config_init(&cfg);
    assert_string_equal(cfg.name, "default");
    assert_int_equal(cfg.failure_threshold, 5);
    assert_true(cfg.recovery_timeout == 60.0);
    assert_int_equal(cfg.success_threshold, 3);
    assert_int_equal(cfg.half_open_max_calls, 0);
    assert_true(cfg.max_wait_in_half_open == 0.0);
    assert_true(cfg.recovery_multiplier == 1.0);
    assert_true(cfg.max_recovery_timeout == 600.0);
    assert_false(cfg.shadow);
    assert_true(cfg.timeout == 30.0);
    assert_null(cfg.expected_errors);
    assert_int_equal(cfg.expected_errors_len, 0);
    assert_null(cfg.is_failure);
    assert_null(cfg.fallback);
    assert_int_equal(cfg.window, PF_BREAKER_WINDOW_CONSECUTIVE);
    assert_int_equal(cfg.window_size, 100);
    assert_int_equal(cfg.minimum_calls, 20);
    assert_true(cfg.failure_rate_threshold == 50.0);
    assert_true(cfg.slow_call_duration == 60.0);
    assert_true(cfg.slow_call_rate_threshold == 100.0);
    assert_null(cfg.clock);
    assert_null(cfg.listener);
    assert_true(cfg.recovery_jitter == 0.0);
    assert_int_equal(cfg.jitter_seed, 0);
    pf_breaker_config_init(NULL); /* no crash */
}

typedef void (*mutate_fn)(pf_breaker_config_t *cfg);

static const int zero_listed[] = {CONN_ERR, 0};

/* Each mutator sets one field to a value pf_breaker_new must reject. */
#define MUTATOR(name, body)                                                    \
    static void name(pf_breaker_config_t *c)                                   \
    {                                                                          \
        body                                                                   \
    }

MUTATOR(m_null_name, c->name = NULL;)
MUTATOR(m_empty_name, c->name = "";)
MUTATOR(m_failure_0, c->failure_threshold = 0;)
MUTATOR(m_failure_huge, c->failure_threshold = 1u << 24;)
MUTATOR(m_success_0, c->success_threshold = 0;)
MUTATOR(m_recovery_neg, c->recovery_timeout = -1;)
MUTATOR(m_recovery_nan, c->recovery_timeout = NAN;)
MUTATOR(m_wait_neg, c->max_wait_in_half_open = -0.5;)
MUTATOR(m_wait_nan, c->max_wait_in_half_open = NAN;)
MUTATOR(m_max_rec_neg, c->max_recovery_timeout = -1;)
MUTATOR(m_max_rec_nan, c->max_recovery_timeout = NAN;)
MUTATOR(m_timeout_neg, c->timeout = -30;)
MUTATOR(m_timeout_nan, c->timeout = NAN;)
MUTATOR(m_slow_neg, c->slow_call_duration = -1;)
MUTATOR(m_slow_nan, c->slow_call_duration = NAN;)
MUTATOR(m_mult_low, c->recovery_multiplier = 0.99;)
MUTATOR(m_mult_nan, c->recovery_multiplier = NAN;)
MUTATOR(m_mult_inf, c->recovery_multiplier = INFINITY;)
MUTATOR(m_jitter_neg, c->recovery_jitter = -0.1;)
MUTATOR(m_jitter_big, c->recovery_jitter = 1.5;)
MUTATOR(m_jitter_nan, c->recovery_jitter = NAN;)
MUTATOR(m_rate_0, c->failure_rate_threshold = 0;)
MUTATOR(m_rate_neg, c->failure_rate_threshold = -5;)
MUTATOR(m_rate_big, c->failure_rate_threshold = 100.5;)
MUTATOR(m_rate_nan, c->failure_rate_threshold = NAN;)
MUTATOR(m_srate_0, c->slow_call_rate_threshold = 0;)
MUTATOR(m_srate_big, c->slow_call_rate_threshold = 101;)
MUTATOR(m_srate_nan, c->slow_call_rate_threshold = NAN;)
MUTATOR(m_window_bad, c->window = (pf_breaker_window_t)7;)
MUTATOR(m_count_size_0, c->window = PF_BREAKER_WINDOW_COUNT;
        c->window_size = 0;)
MUTATOR(m_time_size_0, c->window = PF_BREAKER_WINDOW_TIME; c->window_size = 0;)
MUTATOR(m_count_size_big, c->window = PF_BREAKER_WINDOW_COUNT;
        c->window_size = 1000001;)
MUTATOR(m_time_size_big, c->window = PF_BREAKER_WINDOW_TIME;
        c->window_size = 86401;)
MUTATOR(m_min_calls_0, c->window = PF_BREAKER_WINDOW_COUNT;
        c->minimum_calls = 0;)
MUTATOR(m_errors_null, c->expected_errors = NULL; c->expected_errors_len = 2;)
MUTATOR(m_errors_zero, c->expected_errors = zero_listed;
        c->expected_errors_len = 2;)
MUTATOR(m_half_open_huge, c->half_open_max_calls = 2000000;)
#undef MUTATOR

static void
test_breaker_new_rejects_each_bad_field_with_einval(void **state)
{
    static const mutate_fn bad[] = {
        m_null_name,     m_empty_name,    m_failure_0,    m_failure_huge,
        m_success_0,     m_recovery_neg,  m_recovery_nan, m_wait_neg,
        m_wait_nan,      m_max_rec_neg,   m_max_rec_nan,  m_timeout_neg,
        m_timeout_nan,   m_slow_neg,      m_slow_nan,     m_mult_low,
        m_mult_nan,      m_mult_inf,      m_jitter_neg,   m_jitter_big,
        m_jitter_nan,    m_rate_0,        m_rate_neg,     m_rate_big,
        m_rate_nan,      m_srate_0,       m_srate_big,    m_srate_nan,
        m_window_bad,    m_count_size_0,  m_time_size_0,  m_count_size_big,
        m_time_size_big, m_min_calls_0,   m_errors_null,  m_errors_zero,
        m_half_open_huge,
    };
    pf_breaker_t *sentinel = (pf_breaker_t *)&bad;

    pf_test_alloc_install();
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        pf_breaker_config_t cfg;
        pf_breaker_t *b = sentinel;
        long live = pf_test_alloc_live();

        config(&cfg, *state);
        bad[i](&cfg);
        assert_pf_err(pf_breaker_new(&cfg, &b), PF_EINVAL);
        assert_ptr_equal(b, sentinel); /* *out untouched */
        assert_int_equal(pf_test_alloc_live(), live); /* nothing made */
    }
    pf_test_alloc_uninstall();
}

static void
test_breaker_new_rejects_null_pointers_with_einval(void **state)
{
    pf_breaker_config_t cfg;
    pf_breaker_t *b;

    config(&cfg, *state);
    assert_pf_err(pf_breaker_new(NULL, &b), PF_EINVAL);
    assert_pf_err(pf_breaker_new(&cfg, NULL), PF_EINVAL);
}

static void
test_breaker_new_accepts_edge_values(void **state)
{
    static const int listed[] = {CONN_ERR};
    pf_breaker_config_t cfg;

    config(&cfg, *state);
    cfg.failure_threshold = (1u << 24) - 1;
    cfg.recovery_timeout = INFINITY;
    cfg.max_wait_in_half_open = INFINITY;
    cfg.max_recovery_timeout = 1.0; /* below recovery: counts as it */
    cfg.timeout = 0.0;
    cfg.recovery_multiplier = 1.0;
    cfg.recovery_jitter = 1.0;
    cfg.failure_rate_threshold = 100.0;
    cfg.slow_call_rate_threshold = 0.001;
    cfg.expected_errors = listed;
    cfg.expected_errors_len = 1;
    pf_breaker_free(make(&cfg));
    cfg.window = PF_BREAKER_WINDOW_COUNT;
    cfg.window_size = 1;
    cfg.minimum_calls = 1000; /* capped at window_size */
    pf_breaker_free(make(&cfg));
    cfg.window = PF_BREAKER_WINDOW_TIME;
    cfg.window_size = 86400;
    pf_breaker_free(make(&cfg));
    /* Window fields do not matter in consecutive mode. */
    cfg.window = PF_BREAKER_WINDOW_CONSECUTIVE;
    cfg.window_size = 0;
    cfg.minimum_calls = 0;
    pf_breaker_free(make(&cfg));
}

static int g_fn_calls;

static int
count_call(void *arg)
{
    (void)arg;
    g_fn_calls++;
    return 0;
}

static void
test_breaker_null_arguments_are_harmless(void **state)
{
    pf_breaker_config_t cfg;
    pf_breaker_t *b;
    pf_permit_t p;

    config(&cfg, *state);
    b = make(&cfg);
    assert_pf_err(pf_breaker_acquire(NULL, &p), PF_EINVAL);
    assert_int_equal(p.priv_epoch, 0); /* left empty */
    assert_pf_err(pf_breaker_acquire(b, NULL), PF_EINVAL);
    pf_breaker_record(NULL, &p, 0);
    pf_breaker_record(b, NULL, 0);
    pf_breaker_release(NULL, &p);
    pf_breaker_release(b, NULL);
    assert_int_equal(pf_breaker_state(NULL), PF_BREAKER_CLOSED);
    assert_null(pf_breaker_name(NULL));
    g_fn_calls = 0;
    assert_pf_err(pf_breaker_call(NULL, count_call, NULL), PF_EINVAL);
    assert_pf_err(pf_breaker_call(b, NULL, NULL), PF_EINVAL);
    assert_int_equal(g_fn_calls, 0); /* a failed call never calls fn */
    pf_breaker_force_open(NULL);
    pf_breaker_force_close(NULL);
    pf_breaker_reset(NULL);
    pf_breaker_tick(NULL);
    pf_breaker_metrics(NULL, NULL);
    pf_breaker_metrics(b, NULL);
    assert_false(pf_permit_is_trial(NULL));
    pf_breaker_free(NULL);
    assert_int_equal(metrics(b).calls, 0);
    pf_breaker_free(b);
}

static void
test_breaker_name_is_a_copy_of_the_config_name(void **state)
{
    pf_breaker_config_t cfg;
    char name[] = "payments-api";
    pf_breaker_t *b;

    config(&cfg, *state);
    cfg.name = name;
    b = make(&cfg);
    name[0] = 'X';
    assert_string_equal(pf_breaker_name(b), "payments-api");
    pf_breaker_free(b);
}

static void
test_breaker_state_name_names_each_state(void **state)
{
    (void)state;
    assert_string_equal(pf_breaker_state_name(PF_BREAKER_CLOSED), "closed");
    assert_string_equal(pf_breaker_state_name(PF_BREAKER_OPEN), "open");
    assert_string_equal(pf_breaker_state_name(PF_BREAKER_HALF_OPEN),
                        "half_open");
    assert_string_equal(pf_breaker_state_name((pf_breaker_state_t)9),
                        "unknown");
}

/* ---- CLOSED -> OPEN --------------------------------------------------- */

static void
test_breaker_stays_closed_below_failure_threshold(void **state)
{
    pf_breaker_t *b;

    b = make_failing_after(*state, 3);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_CLOSED);
    fail_n(b, 2);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_CLOSED);
    assert_int_equal(metrics(b).consecutive_failures, 2);
    pf_breaker_free(b);
}

static void
test_breaker_opens_when_failures_reach_threshold(void **state)
{
    pf_breaker_t *b;
    pf_permit_t p;

    b = make_failing_after(*state, 3);
    fail_n(b, 3);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_OPEN);
    assert_pf_err(pf_breaker_acquire(b, &p), PF_EOPEN);
    assert_int_equal(p.priv_epoch, 0); /* a rejected acquire leaves it empty */
    pf_breaker_record(b, &p, -1);      /* recording it does nothing */
    assert_int_equal(metrics(b).failures, 3);
    assert_int_equal(metrics(b).rejected, 1);
    pf_breaker_free(b);
}

static void
test_breaker_success_resets_consecutive_count_when_closed(void **state)
{
    pf_breaker_t *b;

    b = make_failing_after(*state, 3);
    fail_n(b, 2);
    assert_int_equal(run(b, 0), PF_BREAKER_OUTCOME_SUCCESS);
    assert_int_equal(metrics(b).consecutive_failures, 0);
    fail_n(b, 2);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_CLOSED);
    fail_n(b, 1);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_OPEN);
    pf_breaker_free(b);
}

/* ---- OPEN -> HALF_OPEN ------------------------------------------------ */

static void
test_breaker_half_opens_after_recovery_timeout(void **state)
{
    pf_clock_t *clock = *state;
    pf_breaker_t *b = make_open(clock, 30.0, 3);
    pf_permit_t p;

    pf_clock_manual_advance(clock, 30 * NS_PER_SEC - 1);
    assert_pf_err(pf_breaker_acquire(b, &p), PF_EOPEN);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_OPEN);
    pf_clock_manual_advance(clock, 1);
    assert_pf_ok(pf_breaker_acquire(b, &p));
    assert_true(pf_permit_is_trial(&p));
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_HALF_OPEN);
    pf_breaker_record(b, &p, 0);
    pf_breaker_free(b);
}

static void
test_breaker_state_reports_half_open_without_a_call_when_due(void **state)
{
    pf_clock_t *clock = *state;
    pf_breaker_t *b = make_open(clock, 10.0, 1);
    pf_breaker_metrics_t m;

    pf_clock_manual_advance(clock, 10 * NS_PER_SEC);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_HALF_OPEN);
    m = metrics(b);
    assert_int_equal(m.state, PF_BREAKER_HALF_OPEN);
    assert_int_equal(m.transitions, 1); /* the change itself waits */
    pf_breaker_free(b);
}

static void
test_breaker_recovery_timeout_infinite_never_half_opens(void **state)
{
    pf_clock_t *clock = *state;
    pf_breaker_t *b = make_open(clock, INFINITY, 1);
    pf_permit_t p;

    pf_clock_manual_advance(clock, INT64_MAX / 2);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_OPEN);
    assert_pf_err(pf_breaker_acquire(b, &p), PF_EOPEN);
    pf_breaker_free(b);
}

/* ---- HALF_OPEN -> CLOSED / OPEN --------------------------------------- */

static void
test_breaker_closes_after_success_threshold_trial_successes(void **state)
{
    pf_clock_t *clock = *state;
    pf_breaker_t *b = make_open(clock, 5.0, 3);
    pf_permit_t p[3];

    pf_clock_manual_advance(clock, 5 * NS_PER_SEC);
    for (int i = 0; i < 3; i++) {
        assert_pf_ok(pf_breaker_acquire(b, &p[i]));
    }
    pf_breaker_record(b, &p[0], 0);
    pf_breaker_record(b, &p[1], 0);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_HALF_OPEN);
    assert_int_equal(metrics(b).half_open_successes, 2);
    pf_breaker_record(b, &p[2], 0);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_CLOSED);
    assert_int_equal(metrics(b).half_open_in_flight, 0);
    pf_breaker_free(b);
}

static void
test_breaker_reopens_on_trial_failure_and_restarts_timer(void **state)
{
    pf_clock_t *clock = *state;
    pf_breaker_t *b = make_open(clock, 5.0, 3);
    pf_permit_t p;
    pf_breaker_metrics_t m;

    pf_clock_manual_advance(clock, 5 * NS_PER_SEC);
    assert_int_equal(run(b, 0), PF_BREAKER_OUTCOME_SUCCESS);
    pf_clock_manual_advance(clock, 2 * NS_PER_SEC);
    assert_int_equal(run(b, -1), PF_BREAKER_OUTCOME_FAILURE);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_OPEN);
    m = metrics(b);
    assert_int_equal(m.retry_at_ns, 12 * NS_PER_SEC); /* 7 s + 5 s */
    assert_int_equal(m.times_opened, 2);
    pf_clock_manual_advance(clock, 5 * NS_PER_SEC - 1);
    assert_pf_err(pf_breaker_acquire(b, &p), PF_EOPEN);
    pf_clock_manual_advance(clock, 1);
    assert_pf_ok(pf_breaker_acquire(b, &p));
    pf_breaker_record(b, &p, 0);
    pf_breaker_free(b);
}

static void
test_breaker_half_open_admits_at_most_max_calls_trials(void **state)
{
    pf_clock_t *clock = *state;
    pf_breaker_config_t cfg;
    pf_breaker_t *b;
    pf_permit_t p[4];
    pf_permit_t extra;

    config_trip(&cfg, clock, 1, 1.0, 5);
    cfg.half_open_max_calls = 2;
    b = make(&cfg);
    fail_n(b, 1);
    pf_clock_manual_advance(clock, NS_PER_SEC);
    assert_pf_ok(pf_breaker_acquire(b, &p[0]));
    assert_pf_ok(pf_breaker_acquire(b, &p[1]));
    assert_pf_err(pf_breaker_acquire(b, &extra), PF_EOPEN);
    assert_int_equal(metrics(b).half_open_in_flight, 2);
    pf_breaker_record(b, &p[0], 0); /* a place frees up */
    assert_pf_ok(pf_breaker_acquire(b, &p[2]));
    assert_pf_err(pf_breaker_acquire(b, &extra), PF_EOPEN);
    pf_breaker_record(b, &p[1], 0);
    pf_breaker_record(b, &p[2], 0);
    assert_pf_ok(pf_breaker_acquire(b, &p[3]));
    pf_breaker_record(b, &p[3], 0);
    assert_int_equal(metrics(b).half_open_successes, 4);
    assert_int_equal(metrics(b).rejected, 2);
    pf_breaker_free(b);
}

static void
test_breaker_half_open_max_calls_defaults_to_success_threshold(void **state)
{
    pf_clock_t *clock = *state;
    pf_breaker_t *b = make_open(clock, 1.0, 2);
    pf_permit_t p[3];

    pf_clock_manual_advance(clock, NS_PER_SEC);
    assert_pf_ok(pf_breaker_acquire(b, &p[0]));
    assert_pf_ok(pf_breaker_acquire(b, &p[1]));
    assert_pf_err(pf_breaker_acquire(b, &p[2]), PF_EOPEN);
    pf_breaker_record(b, &p[0], 0);
    pf_breaker_record(b, &p[1], 0);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_CLOSED);
    pf_breaker_free(b);
}

static void
test_breaker_ignored_trial_frees_its_place_without_counting(void **state)
{
    static const int listed[] = {CONN_ERR};
    pf_clock_t *clock = *state;
    pf_breaker_config_t cfg;
    pf_breaker_t *b;

    config_trip(&cfg, clock, 1, 1.0, 1);
    cfg.expected_errors = listed;
    cfg.expected_errors_len = 1;
    b = make(&cfg);
    assert_int_equal(run(b, CONN_ERR), PF_BREAKER_OUTCOME_FAILURE);
    pf_clock_manual_advance(clock, NS_PER_SEC);
    assert_int_equal(run(b, VALUE_ERR), PF_BREAKER_OUTCOME_IGNORED);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_HALF_OPEN);
    assert_int_equal(metrics(b).half_open_in_flight, 0);
    assert_int_equal(run(b, 0), PF_BREAKER_OUTCOME_SUCCESS);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_CLOSED);
    pf_breaker_free(b);
}

/* ---- stuck trials ----------------------------------------------------- */

static void
test_breaker_reclaims_stuck_trial_as_failure_after_max_wait(void **state)
{
    pf_clock_t *clock = *state;
    pf_breaker_config_t cfg;
    pf_breaker_t *b;
    pf_permit_t stuck;
    pf_permit_t p;
    pf_breaker_metrics_t m;

    config_trip(&cfg, clock, 1, 10.0, 1);
    cfg.max_wait_in_half_open = 3.0;
    b = make(&cfg);
    fail_n(b, 1);
    pf_clock_manual_advance(clock, 10 * NS_PER_SEC);
    assert_pf_ok(pf_breaker_acquire(b, &stuck)); /* never recorded */
    pf_clock_manual_advance(clock, 3 * NS_PER_SEC);
    assert_pf_err(pf_breaker_acquire(b, &p), PF_EOPEN); /* not yet */
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_HALF_OPEN);
    pf_clock_manual_advance(clock, 1);
    /* This call finds the trial overdue: a failure, so it reopens. */
    assert_pf_err(pf_breaker_acquire(b, &p), PF_EOPEN);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_OPEN);
    m = metrics(b);
    assert_int_equal(m.reclaimed, 1);
    assert_int_equal(m.failures, 2);
    assert_int_equal(m.half_open_in_flight, 0);
    assert_int_equal(m.last_failure_ns, 13 * NS_PER_SEC + 1);
    pf_breaker_free(b);
}

static void
test_breaker_reclaimed_trial_late_record_is_not_counted_again(void **state)
{
    pf_clock_t *clock = *state;
    pf_breaker_config_t cfg;
    pf_breaker_t *b;
    pf_permit_t stuck;
    pf_breaker_metrics_t before;
    pf_breaker_metrics_t after;

    config(&cfg, clock);
    cfg.failure_threshold = 1;
    cfg.recovery_timeout = 10.0;
    cfg.max_wait_in_half_open = 1.0;
    b = make(&cfg);
    fail_n(b, 1);
    pf_clock_manual_advance(clock, 10 * NS_PER_SEC);
    assert_pf_ok(pf_breaker_acquire(b, &stuck));
    pf_clock_manual_advance(clock, 2 * NS_PER_SEC);
    pf_breaker_tick(b); /* reclaims it */
    before = metrics(b);
    assert_int_equal(before.reclaimed, 1);
    assert_int_equal(pf_breaker_record_outcome(b, &stuck, 0),
                     PF_BREAKER_OUTCOME_TIMEOUT);
    after = metrics(b);
    assert_int_equal(after.successes, before.successes);
    assert_int_equal(after.failures, before.failures);
    assert_int_equal(after.calls, before.calls);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_OPEN);
    pf_breaker_free(b);
}

static void
test_breaker_max_wait_defaults_to_recovery_timeout(void **state)
{
    pf_clock_t *clock = *state;
    pf_breaker_t *b = make_open(clock, 10.0, 1);
    pf_permit_t stuck;

    pf_clock_manual_advance(clock, 10 * NS_PER_SEC);
    assert_pf_ok(pf_breaker_acquire(b, &stuck));
    pf_clock_manual_advance(clock, 10 * NS_PER_SEC);
    pf_breaker_tick(b);
    assert_int_equal(metrics(b).reclaimed, 0);
    pf_clock_manual_advance(clock, 1);
    pf_breaker_tick(b);
    assert_int_equal(metrics(b).reclaimed, 1);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_OPEN);
    pf_breaker_free(b);
}

static void
test_breaker_stale_trial_holds_its_place_in_next_half_open(void **state)
{
    pf_clock_t *clock = *state;
    pf_breaker_config_t cfg;
    pf_breaker_t *b;
    pf_permit_t old;
    pf_permit_t p;
    pf_permit_t p2;

    config_trip(&cfg, clock, 1, 1.0, 1);
    cfg.half_open_max_calls = 2;
    cfg.max_wait_in_half_open = INFINITY;
    b = make(&cfg);
    fail_n(b, 1);
    pf_clock_manual_advance(clock, NS_PER_SEC);
    assert_pf_ok(pf_breaker_acquire(b, &old)); /* still running later */
    assert_int_equal(run(b, -1), PF_BREAKER_OUTCOME_FAILURE); /* reopens */
    pf_clock_manual_advance(clock, 2 * NS_PER_SEC);
    assert_pf_ok(pf_breaker_acquire(b, &p));
    assert_pf_err(pf_breaker_acquire(b, &p2), PF_EOPEN); /* old in flight */
    pf_breaker_record(b, &old, 0); /* stale: frees its place, closes nothing */
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_HALF_OPEN);
    assert_pf_ok(pf_breaker_acquire(b, &p2));
    pf_breaker_record(b, &p2, 0);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_CLOSED);
    pf_breaker_record(b, &p, 0);
    pf_breaker_free(b);
}

/* ---- growing open period and jitter ----------------------------------- */

static void
test_breaker_recovery_timeout_grows_by_multiplier_up_to_max(void **state)
{
    pf_clock_t *clock = *state;
    pf_breaker_config_t cfg;
    pf_breaker_t *b;
    const int64_t want[] = {10, 20, 35, 35};
    int64_t t = 0;

    config(&cfg, clock);
    cfg.failure_threshold = 1;
    cfg.recovery_timeout = 10.0;
    cfg.recovery_multiplier = 2.0;
    cfg.max_recovery_timeout = 35.0;
    b = make(&cfg);
    fail_n(b, 1);
    for (int i = 0; i < 4; i++) {
        pf_breaker_metrics_t m = metrics(b);

        assert_int_equal(m.recovery_timeout_ns, want[i] * NS_PER_SEC);
        assert_int_equal(m.retry_at_ns, t + want[i] * NS_PER_SEC);
        pf_clock_manual_advance(clock, want[i] * NS_PER_SEC);
        t += want[i] * NS_PER_SEC;
        assert_int_equal(run(b, -1), PF_BREAKER_OUTCOME_FAILURE);
    }
    pf_breaker_free(b);
}

static void
test_breaker_recovery_timeout_returns_to_base_once_closed(void **state)
{
    pf_clock_t *clock = *state;
    pf_breaker_config_t cfg;
    pf_breaker_t *b;

    config(&cfg, clock);
    cfg.failure_threshold = 1;
    cfg.success_threshold = 1;
    cfg.recovery_timeout = 10.0;
    cfg.recovery_multiplier = 3.0;
    b = make(&cfg);
    fail_n(b, 1);
    pf_clock_manual_advance(clock, 10 * NS_PER_SEC);
    fail_n(b, 1);
    assert_int_equal(metrics(b).recovery_timeout_ns, 30 * NS_PER_SEC);
    pf_clock_manual_advance(clock, 30 * NS_PER_SEC);
    assert_int_equal(run(b, 0), PF_BREAKER_OUTCOME_SUCCESS);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_CLOSED);
    fail_n(b, 1);
    assert_int_equal(metrics(b).recovery_timeout_ns, 10 * NS_PER_SEC);
    assert_int_equal(metrics(b).retry_at_ns, 50 * NS_PER_SEC);
    pf_breaker_free(b);
}

/* The open period of a breaker with jitter, opened at clock time 0. */
static int64_t
jittered_period(uint64_t seed)
{
    pf_clock_t *clock;
    pf_breaker_config_t cfg;
    pf_breaker_t *b;
    int64_t period;

    assert_pf_ok(pf_clock_manual_new(&clock));
    config(&cfg, clock);
    cfg.failure_threshold = 1;
    cfg.recovery_timeout = 10.0;
    cfg.recovery_jitter = 0.5;
    cfg.jitter_seed = seed;
    b = make(&cfg);
    fail_n(b, 1);
    period = metrics(b).retry_at_ns;
    /* The breaker holds exactly that long. */
    pf_clock_manual_advance(clock, period - 1);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_OPEN);
    pf_clock_manual_advance(clock, 1);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_HALF_OPEN);
    pf_breaker_free(b);
    pf_clock_free(clock);
    return period;
}

static void
test_breaker_jitter_lengthens_open_period_within_bound(void **state)
{
    int64_t first = jittered_period(1);
    bool differ = false;

    (void)state;
    for (uint64_t seed = 1; seed <= 20; seed++) {
        int64_t p = jittered_period(seed);

        assert_true(p >= 10 * NS_PER_SEC);
        assert_true(p < 15 * NS_PER_SEC);
        differ = differ || p != first;
    }
    assert_true(differ);                           /* not in lockstep */
    assert_int_equal(jittered_period(7), jittered_period(7)); /* seeded */
}

/* ---- shadow mode ------------------------------------------------------ */

static void
test_breaker_shadow_never_rejects_but_tracks_state(void **state)
{
    pf_clock_t *clock = *state;
    pf_breaker_config_t cfg;
    pf_breaker_t *b;
    pf_breaker_metrics_t m;
    pf_permit_t p;

    config_trip(&cfg, clock, 2, 5.0, 1);
    cfg.shadow = true;
    b = make(&cfg);
    fail_n(b, 2);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_OPEN);
    /* Would be rejected: passes, and its success does not close it. */
    assert_pf_ok(pf_breaker_acquire(b, &p));
    pf_breaker_record(b, &p, 0);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_OPEN);
    g_fn_calls = 0;
    assert_pf_ok(pf_breaker_call(b, count_call, NULL));
    assert_int_equal(g_fn_calls, 1);
    pf_breaker_force_open(b);
    assert_pf_ok(pf_breaker_acquire(b, &p));
    pf_breaker_record(b, &p, 0);
    m = metrics(b);
    assert_true(m.shadow);
    assert_int_equal(m.rejected, 0);
    assert_int_equal(m.shadow_rejected, 3);
    assert_int_equal(m.successes, 3);
    assert_int_equal(m.calls, 5);
    /* It still half-opens and closes by its own rules. */
    pf_breaker_force_close(b);
    fail_n(b, 2);
    pf_clock_manual_advance(clock, 5 * NS_PER_SEC);
    assert_int_equal(run(b, 0), PF_BREAKER_OUTCOME_SUCCESS);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_CLOSED);
    pf_breaker_free(b);
}

static void
test_breaker_shadow_lets_trials_past_the_half_open_limit(void **state)
{
    pf_clock_t *clock = *state;
    pf_breaker_config_t cfg;
    pf_breaker_t *b;
    pf_permit_t p[3];

    config_trip(&cfg, clock, 1, 1.0, 2);
    cfg.half_open_max_calls = 1;
    cfg.shadow = true;
    b = make(&cfg);
    fail_n(b, 1);
    pf_clock_manual_advance(clock, NS_PER_SEC);
    assert_pf_ok(pf_breaker_acquire(b, &p[0]));
    assert_true(pf_permit_is_trial(&p[0]));
    assert_pf_ok(pf_breaker_acquire(b, &p[1]));
    assert_false(pf_permit_is_trial(&p[1])); /* would have been refused */
    pf_breaker_record(b, &p[1], -1);         /* so it cannot reopen it */
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_HALF_OPEN);
    pf_breaker_record(b, &p[0], 0);
    assert_pf_ok(pf_breaker_acquire(b, &p[2]));
    pf_breaker_record(b, &p[2], 0);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_CLOSED);
    assert_int_equal(metrics(b).shadow_rejected, 1);
    pf_breaker_free(b);
}

/* ---- timeout ---------------------------------------------------------- */

static void
test_breaker_timeout_counts_late_success_as_failure(void **state)
{
    pf_clock_t *clock = *state;
    pf_breaker_config_t cfg;
    pf_breaker_t *b;
    pf_permit_t p;
    pf_breaker_metrics_t m;

    config(&cfg, clock);
    cfg.failure_threshold = 2;
    cfg.timeout = 30.0;
    b = make(&cfg);
    assert_pf_ok(pf_breaker_acquire(b, &p));
    pf_clock_manual_advance(clock, 30 * NS_PER_SEC); /* exactly: in time */
    assert_int_equal(pf_breaker_record_outcome(b, &p, 0),
                     PF_BREAKER_OUTCOME_SUCCESS);
    for (int i = 0; i < 2; i++) {
        assert_pf_ok(pf_breaker_acquire(b, &p));
        pf_clock_manual_advance(clock, 30 * NS_PER_SEC + 1);
        assert_int_equal(pf_breaker_record_outcome(b, &p, 0),
                         PF_BREAKER_OUTCOME_TIMEOUT);
    }
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_OPEN);
    m = metrics(b);
    assert_int_equal(m.timeouts, 2);
    assert_int_equal(m.failures, 2);
    assert_int_equal(m.successes, 1);
    pf_breaker_free(b);
}

typedef struct slow_call {
    pf_clock_t *clock;
    int64_t takes_ns;
    int result;
    int calls;
} slow_call_t;

static int
slow_fn(void *arg)
{
    slow_call_t *s = arg;

    s->calls++;
    pf_clock_manual_advance(s->clock, s->takes_ns);
    return s->result;
}

static void
test_breaker_call_returns_etimedout_for_a_late_call(void **state)
{
    pf_clock_t *clock = *state;
    pf_breaker_config_t cfg;
    pf_breaker_t *b;
    slow_call_t s = {clock, 2 * NS_PER_SEC, 0, 0};

    config(&cfg, clock);
    cfg.timeout = 1.5;
    b = make(&cfg);
    assert_pf_err(pf_breaker_call(b, slow_fn, &s), PF_ETIMEDOUT);
    s.result = VALUE_ERR; /* late, whatever it returned */
    assert_pf_err(pf_breaker_call(b, slow_fn, &s), PF_ETIMEDOUT);
    s.takes_ns = NS_PER_SEC;
    assert_pf_err(pf_breaker_call(b, slow_fn, &s), VALUE_ERR);
    assert_int_equal(metrics(b).timeouts, 2);
    pf_breaker_free(b);
}

static void
test_breaker_timeout_zero_disables_it(void **state)
{
    pf_clock_t *clock = *state;
    pf_breaker_config_t cfg;
    pf_breaker_t *b;
    slow_call_t s = {clock, 1000 * NS_PER_SEC, 0, 0};

    config(&cfg, clock);
    cfg.timeout = 0.0;
    b = make(&cfg);
    assert_pf_ok(pf_breaker_call(b, slow_fn, &s));
    assert_int_equal(metrics(b).timeouts, 0);
    assert_int_equal(metrics(b).successes, 1);
    pf_breaker_free(b);
}

/* ---- which results count ---------------------------------------------- */

static void
test_breaker_expected_errors_only_listed_results_count(void **state)
{
    static const int listed[] = {CONN_ERR, HTTP_ERR};
    pf_breaker_config_t cfg;
    pf_breaker_t *b;
    pf_breaker_metrics_t m;

    config(&cfg, *state);
    cfg.failure_threshold = 2;
    cfg.expected_errors = listed;
    cfg.expected_errors_len = 2;
    b = make(&cfg);
    assert_int_equal(run(b, CONN_ERR), PF_BREAKER_OUTCOME_FAILURE);
    assert_int_equal(run(b, VALUE_ERR), PF_BREAKER_OUTCOME_IGNORED);
    assert_int_equal(run(b, -1), PF_BREAKER_OUTCOME_IGNORED);
    /* Ignored results neither count nor reset the count. */
    assert_int_equal(metrics(b).consecutive_failures, 1);
    assert_int_equal(run(b, HTTP_ERR), PF_BREAKER_OUTCOME_FAILURE);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_OPEN);
    m = metrics(b);
    assert_int_equal(m.ignored, 2);
    assert_int_equal(m.failures, 2);
    assert_int_equal(m.calls, 4);
    pf_breaker_free(b);
}

static bool
is_server_error(int result, void *arg)
{
    int *seen = arg;

    (*seen)++;
    return result >= 500 && result < 600;
}

static void
test_breaker_is_failure_decides_results_not_listed(void **state)
{
    static const int listed[] = {CONN_ERR};
    pf_breaker_config_t cfg;
    pf_breaker_t *b;
    int seen = 0;

    config(&cfg, *state);
    cfg.expected_errors = listed;
    cfg.expected_errors_len = 1;
    cfg.is_failure = is_server_error;
    cfg.is_failure_arg = &seen;
    b = make(&cfg);
    assert_int_equal(run(b, CONN_ERR), PF_BREAKER_OUTCOME_FAILURE);
    assert_int_equal(seen, 0); /* listed: no need to ask */
    assert_int_equal(run(b, 503), PF_BREAKER_OUTCOME_FAILURE);
    assert_int_equal(run(b, 404), PF_BREAKER_OUTCOME_IGNORED);
    assert_int_equal(run(b, 0), PF_BREAKER_OUTCOME_SUCCESS);
    assert_int_equal(seen, 2); /* never asked about success */
    pf_breaker_free(b);
}

static void
test_breaker_expected_errors_list_is_copied(void **state)
{
    int listed[] = {CONN_ERR};
    pf_breaker_config_t cfg;
    pf_breaker_t *b;

    config(&cfg, *state);
    cfg.expected_errors = listed;
    cfg.expected_errors_len = 1;
    b = make(&cfg);
    listed[0] = HTTP_ERR;
    assert_int_equal(run(b, CONN_ERR), PF_BREAKER_OUTCOME_FAILURE);
    assert_int_equal(run(b, HTTP_ERR), PF_BREAKER_OUTCOME_IGNORED);
    pf_breaker_free(b);
}

static int
return_arg(void *arg)
{
    return *(int *)arg;
}

static void
test_breaker_call_returns_ignored_result_unchanged(void **state)
{
    static const int listed[] = {CONN_ERR};
    pf_breaker_config_t cfg;
    pf_breaker_t *b;
    int r = VALUE_ERR;

    config(&cfg, *state);
    cfg.expected_errors = listed;
    cfg.expected_errors_len = 1;
    b = make(&cfg);
    assert_int_equal(pf_breaker_call(b, return_arg, &r), VALUE_ERR);
    r = CONN_ERR;
    assert_int_equal(pf_breaker_call(b, return_arg, &r), CONN_ERR);
    r = 0;
    assert_int_equal(pf_breaker_call(b, return_arg, &r), 0);
    assert_int_equal(metrics(b).ignored, 1);
    pf_breaker_free(b);
}

/* ---- fallback --------------------------------------------------------- */

typedef struct fb_arg {
    pf_clock_t *clock;
    int64_t takes_ns;
    int result;
    int calls;
    int fallbacks;
    int reason;
    const char *out;
} fb_arg_t;

static int
fb_call(void *arg)
{
    fb_arg_t *a = arg;

    a->calls++;
    pf_clock_manual_advance(a->clock, a->takes_ns);
    if (a->result == 0) {
        a->out = "fresh";
    }
    return a->result;
}

static int
fb_fallback(void *arg, int reason)
{
    fb_arg_t *a = arg;

    a->fallbacks++;
    a->reason = reason;
    a->out = "cached";
    return 7;
}

static pf_breaker_t *
make_with_fallback(pf_clock_t *clock)
{
    static const int listed[] = {CONN_ERR};
    pf_breaker_config_t cfg;

    config(&cfg, clock);
    cfg.failure_threshold = 2;
    cfg.timeout = 5.0;
    cfg.expected_errors = listed;
    cfg.expected_errors_len = 1;
    cfg.fallback = fb_fallback;
    return make(&cfg);
}

static void
test_breaker_fallback_runs_after_counted_failure_with_result(void **state)
{
    pf_breaker_t *b = make_with_fallback(*state);
    fb_arg_t a = {*state, 0, CONN_ERR, 0, 0, 0, NULL};

    assert_int_equal(pf_breaker_call(b, fb_call, &a), 7);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.fallbacks, 1);
    assert_int_equal(a.reason, CONN_ERR);
    assert_string_equal(a.out, "cached"); /* it got the call's own arg */
    pf_breaker_free(b);
}

static void
test_breaker_fallback_runs_on_rejection_with_eopen(void **state)
{
    pf_breaker_t *b = make_with_fallback(*state);
    fb_arg_t a = {*state, 0, CONN_ERR, 0, 0, 0, NULL};

    pf_breaker_call(b, fb_call, &a);
    pf_breaker_call(b, fb_call, &a);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_OPEN);
    a.calls = 0;
    a.fallbacks = 0;
    assert_int_equal(pf_breaker_call(b, fb_call, &a), 7);
    assert_int_equal(a.calls, 0); /* rejected: never called */
    assert_int_equal(a.fallbacks, 1);
    assert_int_equal(a.reason, PF_EOPEN);
    pf_breaker_free(b);
}

static void
test_breaker_fallback_runs_after_timeout_with_etimedout(void **state)
{
    pf_breaker_t *b = make_with_fallback(*state);
    fb_arg_t a = {*state, 6 * NS_PER_SEC, 0, 0, 0, 0, NULL};

    assert_int_equal(pf_breaker_call(b, fb_call, &a), 7);
    assert_int_equal(a.reason, PF_ETIMEDOUT);
    assert_string_equal(a.out, "cached");
    pf_breaker_free(b);
}

static void
test_breaker_fallback_not_run_for_success_or_ignored_error(void **state)
{
    pf_breaker_t *b = make_with_fallback(*state);
    fb_arg_t a = {*state, 0, 0, 0, 0, 0, NULL};

    assert_int_equal(pf_breaker_call(b, fb_call, &a), 0);
    assert_string_equal(a.out, "fresh");
    a.result = VALUE_ERR;
    assert_int_equal(pf_breaker_call(b, fb_call, &a), VALUE_ERR);
    assert_int_equal(a.fallbacks, 0);
    pf_breaker_free(b);
}

static void
test_breaker_fallback_getter_returns_the_configured_fallback(void **state)
{
    pf_breaker_t *b = make_with_fallback(*state);
    pf_breaker_config_t cfg;
    pf_breaker_t *plain;
    pf_permit_t p = PF_PERMIT_INIT;
    fb_arg_t a = {*state, 0, CONN_ERR, 0, 0, 0, NULL};
    pf_fallback_fn fb = pf_breaker_fallback(b);

    assert_true(fb == fb_fallback);
    /* The permit face with it gives what pf_breaker_call gives. */
    assert_pf_ok(pf_breaker_acquire(b, &p));
    assert_int_equal(pf_breaker_record_outcome(b, &p, fb_call(&a)),
                     PF_BREAKER_OUTCOME_FAILURE);
    assert_int_equal(fb(&a, CONN_ERR), 7);
    assert_int_equal(a.reason, CONN_ERR);
    assert_string_equal(a.out, "cached");
    config(&cfg, *state);
    plain = make(&cfg);
    assert_null(pf_breaker_fallback(plain));
    assert_null(pf_breaker_fallback(NULL));
    pf_breaker_free(plain);
    pf_breaker_free(b);
}

/* ---- force and reset -------------------------------------------------- */

static void
test_breaker_force_open_is_sticky_until_force_close(void **state)
{
    pf_clock_t *clock = *state;
    pf_breaker_config_t cfg;
    pf_breaker_t *b;
    pf_permit_t p;

    config(&cfg, clock);
    cfg.recovery_timeout = 1.0;
    b = make(&cfg);
    pf_breaker_force_open(b);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_OPEN);
    pf_clock_manual_advance(clock, 3600 * NS_PER_SEC);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_OPEN);
    assert_pf_err(pf_breaker_acquire(b, &p), PF_EOPEN);
    pf_breaker_tick(b);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_OPEN);
    assert_true(metrics(b).forced_open);
    pf_breaker_force_close(b);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_CLOSED);
    assert_false(metrics(b).forced_open);
    assert_pf_ok(pf_breaker_acquire(b, &p));
    pf_breaker_record(b, &p, 0);
    pf_breaker_free(b);
}

static void
test_breaker_force_open_is_sticky_until_reset(void **state)
{
    pf_clock_t *clock = *state;
    pf_breaker_t *b = make_open(clock, 1.0, 1);
    pf_permit_t p;

    pf_breaker_force_open(b); /* from OPEN: now held open */
    pf_clock_manual_advance(clock, 10 * NS_PER_SEC);
    assert_pf_err(pf_breaker_acquire(b, &p), PF_EOPEN);
    pf_breaker_reset(b);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_CLOSED);
    assert_pf_ok(pf_breaker_acquire(b, &p));
    pf_breaker_record(b, &p, 0);
    pf_breaker_free(b);
}

static void
test_breaker_force_close_clears_count_and_open_period(void **state)
{
    pf_clock_t *clock = *state;
    pf_breaker_config_t cfg;
    pf_breaker_t *b;

    config(&cfg, clock);
    cfg.failure_threshold = 2;
    cfg.recovery_timeout = 10.0;
    cfg.recovery_multiplier = 2.0;
    b = make(&cfg);
    fail_n(b, 2);
    pf_clock_manual_advance(clock, 10 * NS_PER_SEC);
    fail_n(b, 1); /* trial fails: 20 s now */
    assert_int_equal(metrics(b).recovery_timeout_ns, 20 * NS_PER_SEC);
    pf_breaker_force_close(b);
    assert_int_equal(metrics(b).recovery_timeout_ns, 10 * NS_PER_SEC);
    fail_n(b, 1);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_CLOSED);
    assert_int_equal(metrics(b).consecutive_failures, 1);
    pf_breaker_force_close(b); /* closed already: stays as it is */
    assert_int_equal(metrics(b).consecutive_failures, 1);
    pf_breaker_free(b);
}

static void
test_breaker_reset_clears_state_and_keeps_lifetime_counts(void **state)
{
    pf_clock_t *clock = *state;
    pf_breaker_t *b;
    pf_breaker_metrics_t m;

    b = make_failing_after(clock, 3);
    fail_n(b, 2);
    pf_breaker_reset(b);
    m = metrics(b);
    assert_int_equal(m.state, PF_BREAKER_CLOSED);
    assert_int_equal(m.consecutive_failures, 0);
    assert_int_equal(m.failures, 2);
    assert_int_equal(m.transitions, 0); /* closed to closed: no change */
    fail_n(b, 2);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_CLOSED);
    pf_breaker_free(b);
}

/* ---- stale, repeated and foreign permits ------------------------------ */

static void
test_breaker_slow_success_from_closed_does_not_close_it(void **state)
{
    pf_clock_t *clock = *state;
    pf_breaker_config_t cfg;
    pf_breaker_t *b;
    pf_permit_t slow;

    config_trip(&cfg, clock, 1, 5.0, 1);
    b = make(&cfg);
    assert_pf_ok(pf_breaker_acquire(b, &slow)); /* taken while CLOSED */
    fail_n(b, 1);
    pf_clock_manual_advance(clock, 5 * NS_PER_SEC);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_HALF_OPEN);
    assert_int_equal(pf_breaker_record_outcome(b, &slow, 0),
                     PF_BREAKER_OUTCOME_SUCCESS);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_HALF_OPEN);
    assert_int_equal(metrics(b).successes, 1); /* counted, nothing more */
    pf_breaker_free(b);
}

static void
test_breaker_stale_failure_does_not_count_after_reclose(void **state)
{
    pf_clock_t *clock = *state;
    pf_breaker_config_t cfg;
    pf_breaker_t *b;
    pf_permit_t old;

    config_trip(&cfg, clock, 2, 5.0, 1);
    b = make(&cfg);
    assert_pf_ok(pf_breaker_acquire(b, &old));
    fail_n(b, 2);
    pf_clock_manual_advance(clock, 5 * NS_PER_SEC);
    assert_int_equal(run(b, 0), PF_BREAKER_OUTCOME_SUCCESS); /* closes */
    fail_n(b, 1);
    pf_breaker_record(b, &old, -1); /* from the old CLOSED period */
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_CLOSED);
    assert_int_equal(metrics(b).consecutive_failures, 1);
    pf_breaker_free(b);
}

static void
test_breaker_record_twice_counts_once(void **state)
{
    pf_breaker_t *b;
    pf_permit_t p;

    b = make_failing_after(*state, 2);
    assert_pf_ok(pf_breaker_acquire(b, &p));
    assert_int_equal(pf_breaker_record_outcome(b, &p, -1),
                     PF_BREAKER_OUTCOME_FAILURE);
    assert_int_equal(pf_breaker_record_outcome(b, &p, -1),
                     PF_BREAKER_OUTCOME_NONE);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_CLOSED);
    assert_int_equal(metrics(b).failures, 1);
    pf_breaker_free(b);
}

static void
test_breaker_record_of_never_acquired_permit_is_ignored(void **state)
{
    pf_breaker_t *b;
    pf_permit_t p = PF_PERMIT_INIT;

    b = make_failing_after(*state, 1);
    assert_int_equal(pf_breaker_record_outcome(b, &p, -1),
                     PF_BREAKER_OUTCOME_NONE);
    pf_breaker_release(b, &p);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_CLOSED);
    assert_int_equal(metrics(b).calls, 0);
    pf_breaker_free(b);
}

static void
test_breaker_record_of_another_breakers_permit_is_ignored(void **state)
{
    pf_breaker_config_t cfg;
    pf_breaker_t *a;
    pf_breaker_t *b;
    pf_permit_t p;

    config(&cfg, *state);
    cfg.failure_threshold = 1;
    a = make(&cfg);
    b = make(&cfg);
    assert_pf_ok(pf_breaker_acquire(a, &p));
    assert_int_equal(pf_breaker_record_outcome(b, &p, -1),
                     PF_BREAKER_OUTCOME_NONE);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_CLOSED);
    assert_int_equal(pf_breaker_record_outcome(a, &p, -1),
                     PF_BREAKER_OUTCOME_FAILURE); /* still a's */
    assert_int_equal(pf_breaker_state(a), PF_BREAKER_OPEN);
    pf_breaker_free(a);
    pf_breaker_free(b);
}

static void
test_breaker_release_frees_trial_place_without_counting(void **state)
{
    pf_clock_t *clock = *state;
    pf_breaker_config_t cfg;
    pf_breaker_t *b;
    pf_permit_t p;
    pf_breaker_metrics_t m;

    config_trip(&cfg, clock, 1, 1.0, 1);
    cfg.half_open_max_calls = 1;
    b = make(&cfg);
    fail_n(b, 1);
    pf_clock_manual_advance(clock, NS_PER_SEC);
    assert_pf_ok(pf_breaker_acquire(b, &p));
    pf_breaker_release(b, &p);
    assert_int_equal(p.priv_epoch, 0);
    pf_breaker_record(b, &p, -1); /* released: nothing */
    m = metrics(b);
    assert_int_equal(m.half_open_in_flight, 0);
    assert_int_equal(m.calls, 1);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_HALF_OPEN);
    assert_int_equal(run(b, 0), PF_BREAKER_OUTCOME_SUCCESS);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_CLOSED);
    pf_breaker_free(b);
}

/* ---- listener --------------------------------------------------------- */

#define MAX_EVENTS 32

typedef struct events {
    pf_breaker_t *b;
    int n;
    pf_breaker_state_t from[MAX_EVENTS];
    pf_breaker_state_t to[MAX_EVENTS];
    bool close_on_open;
    pf_breaker_state_t seen_state;
} events_t;

static void
on_change(pf_breaker_t *b, pf_breaker_state_t from, pf_breaker_state_t to,
          void *arg)
{
    events_t *e = arg;
    pf_breaker_metrics_t m;

    assert_ptr_equal(b, e->b);
    assert_true(e->n < MAX_EVENTS);
    e->from[e->n] = from;
    e->to[e->n] = to;
    e->n++;
    /* No lock held: these would deadlock otherwise. */
    pf_breaker_metrics(b, &m);
    e->seen_state = pf_breaker_state(b);
    if (e->close_on_open && to == PF_BREAKER_OPEN) {
        pf_breaker_force_close(b);
    }
}

static void
test_breaker_listener_told_every_transition_in_order(void **state)
{
    pf_clock_t *clock = *state;
    pf_breaker_config_t cfg;
    events_t ev;
    const pf_breaker_state_t want[][2] = {
        {PF_BREAKER_CLOSED, PF_BREAKER_OPEN},
        {PF_BREAKER_OPEN, PF_BREAKER_HALF_OPEN},
        {PF_BREAKER_HALF_OPEN, PF_BREAKER_OPEN},
        {PF_BREAKER_OPEN, PF_BREAKER_HALF_OPEN},
        {PF_BREAKER_HALF_OPEN, PF_BREAKER_CLOSED},
        {PF_BREAKER_CLOSED, PF_BREAKER_OPEN},
        {PF_BREAKER_OPEN, PF_BREAKER_CLOSED},
    };

    memset(&ev, 0, sizeof(ev));
    config_trip(&cfg, clock, 1, 1.0, 1);
    cfg.listener = on_change;
    cfg.listener_arg = &ev;
    ev.b = make(&cfg);
    fail_n(ev.b, 1);
    pf_clock_manual_advance(clock, NS_PER_SEC);
    fail_n(ev.b, 1);
    pf_clock_manual_advance(clock, NS_PER_SEC);
    assert_int_equal(run(ev.b, 0), PF_BREAKER_OUTCOME_SUCCESS);
    pf_breaker_force_open(ev.b);
    pf_breaker_force_open(ev.b); /* already: no event */
    pf_breaker_reset(ev.b);
    pf_breaker_reset(ev.b); /* closed already: no event */
    assert_int_equal(ev.n, 7);
    for (int i = 0; i < ev.n; i++) {
        assert_int_equal(ev.from[i], want[i][0]);
        assert_int_equal(ev.to[i], want[i][1]);
    }
    assert_int_equal(metrics(ev.b).transitions, 7);
    assert_int_equal(metrics(ev.b).last_transition_ns, 2 * NS_PER_SEC);
    pf_breaker_free(ev.b);
}

static void
test_breaker_listener_may_change_state_from_its_callback(void **state)
{
    pf_breaker_config_t cfg;
    events_t ev;

    memset(&ev, 0, sizeof(ev));
    config(&cfg, *state);
    cfg.failure_threshold = 1;
    cfg.listener = on_change;
    cfg.listener_arg = &ev;
    ev.close_on_open = true;
    ev.b = make(&cfg);
    fail_n(ev.b, 1);
    assert_int_equal(ev.n, 2); /* the nested change told after the first */
    assert_int_equal(ev.to[0], PF_BREAKER_OPEN);
    assert_int_equal(ev.from[1], PF_BREAKER_OPEN);
    assert_int_equal(ev.to[1], PF_BREAKER_CLOSED);
    assert_int_equal(pf_breaker_state(ev.b), PF_BREAKER_CLOSED);
    pf_breaker_free(ev.b);
}

typedef struct flapper {
    events_t ev;
    int flaps;
} flapper_t;

/* On the first change, flap the breaker many times from inside the
 * listener: the changes queue up behind the one being told. */
static void
on_change_flap(pf_breaker_t *b, pf_breaker_state_t from,
               pf_breaker_state_t to, void *arg)
{
    flapper_t *f = arg;

    on_change(b, from, to, &f->ev);
    if (f->ev.n == 1) {
        for (int i = 0; i < f->flaps; i++) {
            pf_breaker_force_close(b);
            pf_breaker_force_open(b);
        }
    }
}

static void
test_breaker_listener_hears_all_changes_queued_behind_it(void **state)
{
    pf_breaker_config_t cfg;
    flapper_t f;

    memset(&f, 0, sizeof(f));
    f.flaps = 12; /* 24 changes queue while the first is being told */
    config(&cfg, *state);
    cfg.failure_threshold = 1;
    cfg.listener = on_change_flap;
    cfg.listener_arg = &f;
    f.ev.b = make(&cfg);
    fail_n(f.ev.b, 1);
    assert_int_equal(f.ev.n, 25);
    for (int i = 1; i < f.ev.n; i++) {
        assert_int_equal(f.ev.from[i], f.ev.to[i - 1]); /* in order */
    }
    assert_int_equal(metrics(f.ev.b).events_dropped, 0);
    assert_int_equal(metrics(f.ev.b).transitions, 25);
    pf_breaker_free(f.ev.b);
}

static void
test_breaker_tick_makes_due_change_and_tells_listener(void **state)
{
    pf_clock_t *clock = *state;
    pf_breaker_config_t cfg;
    events_t ev;

    memset(&ev, 0, sizeof(ev));
    config(&cfg, clock);
    cfg.failure_threshold = 1;
    cfg.recovery_timeout = 4.0;
    cfg.listener = on_change;
    cfg.listener_arg = &ev;
    ev.b = make(&cfg);
    fail_n(ev.b, 1);
    pf_clock_manual_advance(clock, 3 * NS_PER_SEC);
    pf_breaker_tick(ev.b);
    assert_int_equal(ev.n, 1);
    pf_clock_manual_advance(clock, NS_PER_SEC);
    pf_breaker_tick(ev.b);
    assert_int_equal(ev.n, 2);
    assert_int_equal(ev.to[1], PF_BREAKER_HALF_OPEN);
    assert_int_equal(metrics(ev.b).last_transition_ns, 4 * NS_PER_SEC);
    pf_breaker_free(ev.b);
}

/* ---- metrics ---------------------------------------------------------- */

static void
test_breaker_metrics_count_calls_and_times(void **state)
{
    static const int listed[] = {CONN_ERR};
    pf_clock_t *clock = *state;
    pf_breaker_config_t cfg;
    pf_breaker_t *b;
    pf_breaker_metrics_t m;
    pf_permit_t p;

    config(&cfg, clock);
    cfg.failure_threshold = 2;
    cfg.expected_errors = listed;
    cfg.expected_errors_len = 1;
    b = make(&cfg);
    m = metrics(b);
    assert_int_equal(m.last_failure_ns, -1);
    assert_int_equal(m.last_transition_ns, -1);
    assert_int_equal(m.retry_at_ns, -1);
    assert_true(m.failure_rate == 0.0);
    run(b, 0);
    run(b, 0);
    run(b, 0);
    pf_clock_manual_advance(clock, 7 * NS_PER_SEC);
    run(b, CONN_ERR);
    run(b, VALUE_ERR);
    pf_clock_manual_advance(clock, NS_PER_SEC);
    run(b, CONN_ERR);
    assert_pf_err(pf_breaker_acquire(b, &p), PF_EOPEN);
    m = metrics(b);
    assert_int_equal(m.state, PF_BREAKER_OPEN);
    assert_int_equal(m.successes, 3);
    assert_int_equal(m.failures, 2);
    assert_int_equal(m.ignored, 1);
    assert_int_equal(m.rejected, 1);
    assert_int_equal(m.calls, 7);
    assert_int_equal(m.timeouts, 0);
    assert_true(fabs(m.failure_rate - 40.0) < 1e-9);
    assert_true(m.slow_call_rate == 0.0);
    assert_int_equal(m.last_failure_ns, 8 * NS_PER_SEC);
    assert_int_equal(m.last_transition_ns, 8 * NS_PER_SEC);
    assert_int_equal(m.retry_at_ns, 68 * NS_PER_SEC);
    assert_int_equal(m.now_ns, 8 * NS_PER_SEC);
    assert_int_equal(m.times_opened, 1);
    assert_int_equal(m.transitions, 1);
    assert_false(m.shadow);
    assert_false(m.forced_open);
    pf_breaker_free(b);
}

/* ---- allocation failures ---------------------------------------------- */

static void
sweep_scenario(void *arg)
{
    static const int listed[] = {CONN_ERR, HTTP_ERR};
    static const pf_breaker_window_t windows[] = {
        PF_BREAKER_WINDOW_CONSECUTIVE, PF_BREAKER_WINDOW_COUNT,
        PF_BREAKER_WINDOW_TIME};
    pf_clock_t *clock = arg;

    for (int w = 0; w < 3; w++) {
        pf_breaker_config_t cfg;
        pf_breaker_t *b = NULL;
        events_t ev;
        int rc;

        memset(&ev, 0, sizeof(ev));
        config(&cfg, clock);
        cfg.failure_threshold = 1;
        cfg.recovery_timeout = 1.0;
        cfg.success_threshold = 1;
        cfg.window = windows[w];
        cfg.window_size = 4;
        cfg.minimum_calls = 1;
        cfg.expected_errors = listed;
        cfg.expected_errors_len = 2;
        cfg.listener = on_change;
        cfg.listener_arg = &ev;
        rc = pf_breaker_new(&cfg, &b);
        if (rc == PF_ENOMEM) {
            assert_null(b);
            continue;
        }
        assert_pf_ok(rc);
        ev.b = b;
        /* Every operation works whatever failed before. */
        assert_int_equal(run(b, CONN_ERR), PF_BREAKER_OUTCOME_FAILURE);
        pf_clock_manual_advance(clock, NS_PER_SEC);
        assert_int_equal(run(b, 0), PF_BREAKER_OUTCOME_SUCCESS);
        assert_int_equal(pf_breaker_state(b), PF_BREAKER_CLOSED);
        assert_int_equal(metrics(b).calls, 2);
        pf_breaker_free(b);
    }
}

static void
test_breaker_allocation_failure_leaks_nothing(void **state)
{
    long runs = pf_test_alloc_sweep(sweep_scenario, *state);

    assert_true(runs > 3); /* name, errors, slots, window: each failed */
}

#define T(name) CLOCK_TEST(name)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_breaker_config_init_sets_documented_defaults),
        T(test_breaker_new_rejects_each_bad_field_with_einval),
        T(test_breaker_new_rejects_null_pointers_with_einval),
        T(test_breaker_new_accepts_edge_values),
        T(test_breaker_null_arguments_are_harmless),
        T(test_breaker_name_is_a_copy_of_the_config_name),
        T(test_breaker_state_name_names_each_state),
        T(test_breaker_stays_closed_below_failure_threshold),
        T(test_breaker_opens_when_failures_reach_threshold),
        T(test_breaker_success_resets_consecutive_count_when_closed),
        T(test_breaker_half_opens_after_recovery_timeout),
        T(test_breaker_state_reports_half_open_without_a_call_when_due),
        T(test_breaker_recovery_timeout_infinite_never_half_opens),
        T(test_breaker_closes_after_success_threshold_trial_successes),
        T(test_breaker_reopens_on_trial_failure_and_restarts_timer),
        T(test_breaker_half_open_admits_at_most_max_calls_trials),
        T(test_breaker_half_open_max_calls_defaults_to_success_threshold),
        T(test_breaker_ignored_trial_frees_its_place_without_counting),
        T(test_breaker_reclaims_stuck_trial_as_failure_after_max_wait),
        T(test_breaker_reclaimed_trial_late_record_is_not_counted_again),
        T(test_breaker_max_wait_defaults_to_recovery_timeout),
        T(test_breaker_stale_trial_holds_its_place_in_next_half_open),
        T(test_breaker_recovery_timeout_grows_by_multiplier_up_to_max),
        T(test_breaker_recovery_timeout_returns_to_base_once_closed),
        T(test_breaker_jitter_lengthens_open_period_within_bound),
        T(test_breaker_shadow_never_rejects_but_tracks_state),
        T(test_breaker_shadow_lets_trials_past_the_half_open_limit),
        T(test_breaker_timeout_counts_late_success_as_failure),
        T(test_breaker_call_returns_etimedout_for_a_late_call),
        T(test_breaker_timeout_zero_disables_it),
        T(test_breaker_expected_errors_only_listed_results_count),
        T(test_breaker_is_failure_decides_results_not_listed),
        T(test_breaker_expected_errors_list_is_copied),
        T(test_breaker_call_returns_ignored_result_unchanged),
        T(test_breaker_fallback_runs_after_counted_failure_with_result),
        T(test_breaker_fallback_runs_on_rejection_with_eopen),
        T(test_breaker_fallback_runs_after_timeout_with_etimedout),
        T(test_breaker_fallback_not_run_for_success_or_ignored_error),
        T(test_breaker_fallback_getter_returns_the_configured_fallback),
        T(test_breaker_force_open_is_sticky_until_force_close),
        T(test_breaker_force_open_is_sticky_until_reset),
        T(test_breaker_force_close_clears_count_and_open_period),
        T(test_breaker_reset_clears_state_and_keeps_lifetime_counts),
        T(test_breaker_slow_success_from_closed_does_not_close_it),
        T(test_breaker_stale_failure_does_not_count_after_reclose),
        T(test_breaker_record_twice_counts_once),
        T(test_breaker_record_of_never_acquired_permit_is_ignored),
        T(test_breaker_record_of_another_breakers_permit_is_ignored),
        T(test_breaker_release_frees_trial_place_without_counting),
        T(test_breaker_listener_told_every_transition_in_order),
        T(test_breaker_listener_may_change_state_from_its_callback),
        T(test_breaker_listener_hears_all_changes_queued_behind_it),
        T(test_breaker_tick_makes_due_change_and_tells_listener),
        T(test_breaker_metrics_count_calls_and_times),
        T(test_breaker_allocation_failure_leaks_nothing),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
