/* Circuit breaker under threads: eight workers make random calls (random
 * outcomes, some held across a yield so trials overlap) while another
 * thread moves the manual clock, so the breaker opens, half-opens, closes
 * and reclaims trials the whole time. Checked: trial calls in flight never
 * exceed half_open_max_calls; every call is counted exactly once (calls =
 * successes + failures + ignored + rejected, each equal to what the
 * workers saw); the listener is told of every change, in order, never two
 * at once. The workers move the clock too, so the run covers many minutes
 * of breaker time however the threads are scheduled. Bounded to stay
 * within a few seconds under TSan. */
#include <math.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "puffinflow/breaker.h"
#include "rng.h"
#include "test.h"

#define WORKERS 8
#define OPS_PER_WORKER 25000
#define IGNORED_ERR 7
#define COUNTED_ERR -1

typedef struct shared {
    pf_breaker_t *b;
    pf_clock_t *clock;
    unsigned half_open_max;
    int64_t takes_ns;          /* workers advance the clock this much in a
                                  held call, to make some time out */
    atomic_int done;           /* workers finished */
    atomic_uint trials_now;    /* trial permits held by workers */
    atomic_uint trials_peak;
    atomic_uint metrics_peak;  /* half_open_in_flight seen by the ticker */
    /* What the workers saw. */
    atomic_ulong attempts;
    atomic_ulong rejected;
    atomic_ulong out[5];       /* by pf_breaker_outcome_t */
    /* The listener's view. */
    atomic_int in_listener;
    atomic_int overlaps;
    atomic_ulong events;
    atomic_int breaks;         /* from != previous to */
    atomic_int last_to;
} shared_t;

static void
on_change(pf_breaker_t *b, pf_breaker_state_t from, pf_breaker_state_t to,
          void *arg)
{
    shared_t *s = arg;

    (void)b;
    if (atomic_exchange(&s->in_listener, 1) != 0) {
        atomic_fetch_add(&s->overlaps, 1);
    }
    if ((int)from != atomic_load(&s->last_to)) {
        atomic_fetch_add(&s->breaks, 1);
    }
    atomic_store(&s->last_to, (int)to);
    atomic_fetch_add(&s->events, 1);
    atomic_store(&s->in_listener, 0);
}

static void
raise_peak(atomic_uint *peak, unsigned v)
{
    unsigned p = atomic_load(peak);

    while (v > p && !atomic_compare_exchange_weak(peak, &p, v)) {
    }
}

static void
worker(shared_t *s, unsigned i)
{
    uint64_t rng = 0xC0FFEE + i;

    for (int k = 0; k < OPS_PER_WORKER; k++) {
        pf_permit_t p;
        uint64_t dice = pf__rng_below(&rng, 100);
        int result = dice < 65 ? 0 : dice < 93 ? COUNTED_ERR : IGNORED_ERR;
        bool trial;
        int rc;

        if (pf__rng_below(&rng, 40) == 0) {
            /* Time moves on from every thread, not only the ticker. */
            pf_clock_manual_advance(s->clock, 25 * NS_PER_MS);
        }
        atomic_fetch_add(&s->attempts, 1);
        rc = pf_breaker_acquire(s->b, &p);
        if (rc == PF_EOPEN) {
            atomic_fetch_add(&s->rejected, 1);
            continue;
        }
        assert_int_equal(rc, 0);
        trial = pf_permit_is_trial(&p);
        if (trial) {
            raise_peak(&s->trials_peak,
                       atomic_fetch_add(&s->trials_now, 1) + 1);
        }
        if (pf__rng_below(&rng, 10) == 0) {
            sched_yield(); /* hold it a while: trials overlap */
            if (s->takes_ns > 0 && pf__rng_below(&rng, 4) == 0) {
                pf_clock_manual_advance(s->clock, s->takes_ns);
            }
        }
        if (trial) {
            atomic_fetch_sub(&s->trials_now, 1);
        }
        atomic_fetch_add(&s->out[pf_breaker_record_outcome(s->b, &p, result)],
                         1);
    }
    atomic_fetch_add(&s->done, 1);
}

/* Moves time on while the workers run, and samples the metrics. */
static void
ticker(shared_t *s)
{
    while (atomic_load(&s->done) < WORKERS) {
        pf_breaker_metrics_t m;

        pf_clock_manual_advance(s->clock, 50 * NS_PER_MS);
        pf_breaker_tick(s->b);
        pf_breaker_metrics(s->b, &m);
        raise_peak(&s->metrics_peak, m.half_open_in_flight);
        sched_yield();
    }
}

static void
thread_main(void *arg, unsigned i)
{
    if (i < WORKERS) {
        worker(arg, i);
    } else {
        ticker(arg);
    }
}

static shared_t *
start(pf_breaker_config_t *cfg, pf_clock_t *clock, int64_t takes_ns)
{
    static const int listed[] = {COUNTED_ERR};
    shared_t *s = calloc(1, sizeof(*s));

    assert_non_null(s);
    s->clock = clock;
    s->takes_ns = takes_ns;
    cfg->clock = clock;
    cfg->expected_errors = listed;
    cfg->expected_errors_len = 1;
    cfg->listener = on_change;
    cfg->listener_arg = s;
    assert_pf_ok(pf_breaker_new(cfg, &s->b));
    s->half_open_max = cfg->half_open_max_calls;
    pf_test_run_threads(WORKERS + 1, thread_main, s);
    return s;
}

/* The counts every run must satisfy, whatever the interleaving. */
static void
check_counts(shared_t *s)
{
    pf_breaker_metrics_t m;
    unsigned long timeouts_seen =
        atomic_load(&s->out[PF_BREAKER_OUTCOME_TIMEOUT]);

    pf_breaker_metrics(s->b, &m);
    assert_int_equal(m.calls, atomic_load(&s->attempts));
    assert_int_equal(m.calls,
                     m.successes + m.failures + m.ignored + m.rejected);
    assert_int_equal(m.rejected, atomic_load(&s->rejected));
    assert_int_equal(m.successes,
                     atomic_load(&s->out[PF_BREAKER_OUTCOME_SUCCESS]));
    assert_int_equal(m.ignored,
                     atomic_load(&s->out[PF_BREAKER_OUTCOME_IGNORED]));
    /* A reclaimed trial was counted as a failure when reclaimed, and its
     * late result reports TIMEOUT without being counted again. */
    assert_int_equal(m.failures,
                     atomic_load(&s->out[PF_BREAKER_OUTCOME_FAILURE]) +
                         timeouts_seen);
    assert_int_equal(m.timeouts + m.reclaimed, timeouts_seen);
    assert_int_equal(atomic_load(&s->out[PF_BREAKER_OUTCOME_NONE]), 0);
    assert_int_equal(m.half_open_in_flight, 0); /* all recorded */
    assert_true(m.times_opened > 10);           /* it really flapped */
    assert_true(m.rejected > 0);
    /* Listener: every change told, in order, one at a time, the last one
     * to the state the breaker is in. */
    assert_int_equal(atomic_load(&s->events), m.transitions);
    assert_int_equal(m.events_dropped, 0);
    assert_int_equal(atomic_load(&s->breaks), 0);
    assert_int_equal(atomic_load(&s->overlaps), 0);
    assert_int_equal(atomic_load(&s->last_to),
                     m.retry_at_ns != -1 ? PF_BREAKER_OPEN : m.state);
}

static void
finish(shared_t *s)
{
    pf_breaker_free(s->b);
    free(s);
}

static void
test_breaker_stress_trials_never_exceed_limit_and_counts_hold(void **state)
{
    pf_breaker_config_t cfg;
    shared_t *s;

    pf_breaker_config_init(&cfg);
    cfg.failure_threshold = 3;
    cfg.recovery_timeout = 1.0;
    cfg.success_threshold = 4;
    cfg.half_open_max_calls = 2;
    cfg.max_wait_in_half_open = INFINITY; /* trials end only by record */
    cfg.timeout = 0.0;
    s = start(&cfg, *state, 0);
    check_counts(s);
    /* Trials the workers held at once: never more than the limit. */
    assert_true(atomic_load(&s->trials_peak) >= 1);
    assert_true(atomic_load(&s->trials_peak) <= 2);
    assert_true(atomic_load(&s->metrics_peak) <= 2);
    assert_int_equal(atomic_load(&s->out[PF_BREAKER_OUTCOME_TIMEOUT]), 0);
    finish(s);
}

/* Windows, timeouts, slow calls, growing jittered open periods and
 * reclaimed trials, all at once. */
static void
run_with_reclaim(pf_clock_t *clock, pf_breaker_window_t window)
{
    pf_breaker_config_t cfg;
    shared_t *s;

    pf_breaker_config_init(&cfg);
    cfg.window = window;
    cfg.window_size = window == PF_BREAKER_WINDOW_COUNT ? 50 : 2;
    cfg.minimum_calls = 10;
    cfg.failure_rate_threshold = 40.0;
    cfg.slow_call_duration = 0.2;
    cfg.slow_call_rate_threshold = 60.0;
    cfg.recovery_timeout = 0.5;
    cfg.recovery_multiplier = 2.0;
    cfg.max_recovery_timeout = 2.0;
    cfg.recovery_jitter = 0.5;
    cfg.success_threshold = 3;
    cfg.half_open_max_calls = 3;
    cfg.max_wait_in_half_open = 0.3; /* held trials get reclaimed */
    cfg.timeout = 0.25;              /* and held calls time out */
    s = start(&cfg, clock, 300 * NS_PER_MS);
    check_counts(s);
    assert_true(atomic_load(&s->metrics_peak) <= 3);
    assert_true(atomic_load(&s->out[PF_BREAKER_OUTCOME_TIMEOUT]) > 0);
    finish(s);
}

static void
test_breaker_stress_count_window_with_reclaim_counts_hold(void **state)
{
    run_with_reclaim(*state, PF_BREAKER_WINDOW_COUNT);
}

static void
test_breaker_stress_time_window_with_reclaim_counts_hold(void **state)
{
    run_with_reclaim(*state, PF_BREAKER_WINDOW_TIME);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_breaker_stress_trials_never_exceed_limit_and_counts_hold,
            pf_test_clock_setup, pf_test_clock_teardown),
        cmocka_unit_test_setup_teardown(
            test_breaker_stress_count_window_with_reclaim_counts_hold,
            pf_test_clock_setup, pf_test_clock_teardown),
        cmocka_unit_test_setup_teardown(
            test_breaker_stress_time_window_with_reclaim_counts_hold,
            pf_test_clock_setup, pf_test_clock_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
