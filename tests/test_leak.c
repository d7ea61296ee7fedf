/* The leak detector: config validation, allocation tracking and leak
 * detection on the manual clock (history, metrics, leaks per agent),
 * thresholds with hysteresis and growth trends on scripted samples, the
 * monitoring thread driven by the manual clock, start/stop with nothing
 * leaked, and allocation failures. Real /proc sampling is in
 * test_leak_sample.c. */
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "puffinflow/leak.h"
#include "procfs.h"
#include "test.h"

/* ---- a scripted sampler and a recording listener ------------------------- */

typedef struct script {
    const pf_leak_sample_t *vals; /* returned in turn; the last one repeats */
    size_t n;
    atomic_size_t next;
    atomic_int calls;
    int fail; /* non-zero: every call returns it */
} script_t;

static int
script_sample(int pid, pf_leak_sample_t *out, void *arg)
{
    script_t *s = arg;
    size_t i = atomic_fetch_add(&s->next, 1);
    int64_t at = out->at_ns;

    (void)pid;
    atomic_fetch_add(&s->calls, 1);
    if (s->fail != 0) {
        return s->fail;
    }
    if (s->n == 0) {
        return 0;
    }
    *out = s->vals[i < s->n ? i : s->n - 1];
    out->at_ns = at; /* the detector sets it; make sure it does */
    return 0;
}

#define MAX_ALERTS 64

typedef struct alerts {
    pthread_mutex_t mu;
    size_t n;
    pf_leak_alert_t a[MAX_ALERTS];
    char msg[MAX_ALERTS][200];
    char agent[MAX_ALERTS][32];
    atomic_int count;
} alerts_t;

static void
record_alert(const pf_leak_alert_t *al, void *arg)
{
    alerts_t *r = arg;

    pthread_mutex_lock(&r->mu);
    if (r->n < MAX_ALERTS) {
        r->a[r->n] = *al;
        snprintf(r->msg[r->n], sizeof(r->msg[0]), "%s", al->message);
        r->a[r->n].message = r->msg[r->n];
        snprintf(r->agent[r->n], sizeof(r->agent[0]), "%s",
                 al->leak != NULL ? al->leak->agent : "");
        r->a[r->n].sample = NULL;
        r->a[r->n].leak = NULL;
        r->n++;
    }
    pthread_mutex_unlock(&r->mu);
    atomic_fetch_add(&r->count, 1);
}

static void
alerts_init(alerts_t *r)
{
    memset(r, 0, sizeof(*r));
    pthread_mutex_init(&r->mu, NULL);
}

/* How many alerts of kind (raised, or cleared) were recorded. */
static size_t
count_kind(alerts_t *r, pf_leak_alert_kind_t kind, bool cleared)
{
    size_t i;
    size_t n = 0;

    pthread_mutex_lock(&r->mu);
    for (i = 0; i < r->n; i++) {
        n += r->a[i].kind == kind && r->a[i].cleared == cleared;
    }
    pthread_mutex_unlock(&r->mu);
    return n;
}

/* A config on clock with the scripted sampler s returning vals[0..n) in
 * turn (n 0: the sampler leaves the sample empty) and the recorder r,
 * freshly initialised. */
static void
test_config(pf_leak_config_t *cfg, pf_clock_t *clock, script_t *s,
            const pf_leak_sample_t *vals, size_t n, alerts_t *r)
{
    s->vals = vals;
    s->n = n;
    alerts_init(r);
    pf_leak_config_init(cfg);
    cfg->clock = clock;
    cfg->sample = script_sample;
    cfg->sample_arg = s;
    cfg->listener = record_alert;
    cfg->listener_arg = r;
}

static pf_leak_sample_t
fds_sample(int64_t fds)
{
    pf_leak_sample_t s;

    memset(&s, 0, sizeof(s));
    s.open_fds = fds;
    s.rss_bytes = 100 << 20;
    s.memory_limit_bytes = INT64_C(1) << 30;
    return s;
}

/* ---- config -------------------------------------------------------------- */

static void
test_leak_config_init_sets_the_documented_defaults(void **state)
{
    pf_leak_config_t cfg;

    (void)state;
    memset(&cfg, 0x5a, sizeof(cfg));
    pf_leak_config_init(&cfg);
    assert_string_equal(cfg.name, "default");
    assert_float_equal(cfg.check_interval, 60.0, 0.0);
    assert_float_equal(cfg.memory_threshold, 0.8, 0.0);
    assert_int_equal(cfg.file_handle_threshold, 1000);
    assert_int_equal(cfg.connection_threshold, 100);
    assert_float_equal(cfg.leak_threshold, 300.0, 0.0);
    assert_null(cfg.listener);
    assert_null(cfg.clock);
    assert_float_equal(cfg.hysteresis, 0.1, 0.0);
    assert_int_equal(cfg.trend_window, 10);
    assert_int_equal(cfg.leak_history, 100);
    assert_int_equal(cfg.pid, 0);
    assert_null(cfg.sample);
    pf_leak_config_init(NULL); /* no crash */
}

typedef void (*cfg_edit_fn)(pf_leak_config_t *cfg);

#define BAD(name, stmt)                                                        \
    static void name(pf_leak_config_t *cfg)                                    \
    {                                                                          \
        stmt;                                                                  \
    }
BAD(bad_name, cfg->name = NULL)
BAD(bad_interval_zero, cfg->check_interval = 0)
BAD(bad_interval_negative, cfg->check_interval = -1)
BAD(bad_interval_nan, cfg->check_interval = NAN)
BAD(bad_interval_tiny, cfg->check_interval = 1e-12)
BAD(bad_memory_zero, cfg->memory_threshold = 0)
BAD(bad_memory_over_one, cfg->memory_threshold = 1.5)
BAD(bad_memory_nan, cfg->memory_threshold = NAN)
BAD(bad_fds_zero, cfg->file_handle_threshold = 0)
BAD(bad_conns_zero, cfg->connection_threshold = 0)
BAD(bad_leak_zero, cfg->leak_threshold = 0)
BAD(bad_leak_negative, cfg->leak_threshold = -300)
BAD(bad_leak_nan, cfg->leak_threshold = NAN)
BAD(bad_hysteresis_negative, cfg->hysteresis = -0.1)
BAD(bad_hysteresis_one, cfg->hysteresis = 1.0)
BAD(bad_window_small, cfg->trend_window = 3)
BAD(bad_window_large, cfg->trend_window = 5000)
BAD(bad_mem_slope, cfg->trend_memory_slope = 0)
BAD(bad_fd_slope, cfg->trend_fd_slope = -1)
BAD(bad_fd_slope_inf, cfg->trend_fd_slope = INFINITY)
BAD(bad_history, cfg->leak_history = 2000000)
BAD(bad_pid, cfg->pid = -1)

static void
test_leak_new_rejects_bad_config_and_creates_nothing(void **state)
{
    static const cfg_edit_fn edits[] = {
        bad_name,
        bad_interval_zero,
        bad_interval_negative,
        bad_interval_nan,
        bad_interval_tiny,
        bad_memory_zero,
        bad_memory_over_one,
        bad_memory_nan,
        bad_fds_zero,
        bad_conns_zero,
        bad_leak_zero,
        bad_leak_negative,
        bad_leak_nan,
        bad_hysteresis_negative,
        bad_hysteresis_one,
        bad_window_small,
        bad_window_large,
        bad_mem_slope,
        bad_fd_slope,
        bad_fd_slope_inf,
        bad_history,
        bad_pid,
    };
    pf_leak_config_t cfg;
    pf_leak_detector_t *d = (pf_leak_detector_t *)&cfg; /* a sentinel */
    size_t i;

    (void)state;
    pf_test_alloc_install();
    for (i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
        pf_leak_config_init(&cfg);
        edits[i](&cfg);
        if (pf_leak_detector_new(&cfg, &d) != PF_EINVAL) {
            fail_msg("bad config %zu accepted", i);
        }
    }
    assert_ptr_equal(d, (pf_leak_detector_t *)&cfg);
    pf_leak_config_init(&cfg);
    assert_pf_err(pf_leak_detector_new(NULL, &d), PF_EINVAL);
    assert_pf_err(pf_leak_detector_new(&cfg, NULL), PF_EINVAL);
    assert_int_equal(pf_test_alloc_live(), 0);
    pf_test_alloc_uninstall();
}

static void
test_leak_new_accepts_edge_values(void **state)
{
    pf_leak_config_t cfg;
    pf_leak_detector_t *d;

    (void)state;
    pf_leak_config_init(&cfg);
    cfg.check_interval = INFINITY; /* never samples on its own */
    cfg.leak_threshold = INFINITY; /* nothing is ever a leak */
    cfg.memory_threshold = 1.0;
    cfg.hysteresis = 0.0;
    cfg.trend_window = 0;
    cfg.leak_history = 0;
    cfg.name = "edge";
    assert_pf_ok(pf_leak_detector_new(&cfg, &d));
    assert_string_equal(pf_leak_detector_name(d), "edge");
    assert_false(pf_leak_detector_is_monitoring(d));
    pf_leak_detector_free(d);
    pf_leak_detector_free(NULL);
    assert_null(pf_leak_detector_name(NULL));
}

static void
test_leak_new_rejects_a_pid_that_does_not_exist(void **state)
{
    pf_leak_config_t cfg;
    pf_leak_detector_t *d = NULL;

    (void)state;
    pf_leak_config_init(&cfg);
    cfg.pid = 2147483646;
    assert_pf_err(pf_leak_detector_new(&cfg, &d), PF_ENOTFOUND);
    assert_null(d);
}

/* ---- allocation tracking ------------------------------------------------- */

static void
test_leak_allocation_held_past_threshold_is_a_leak(void **state)
{
    pf_clock_t *clock = *state;
    pf_leak_resources_t res = {2.0, 512.0, 1.0, 0.5, 1.0};
    pf_leak_config_t cfg;
    pf_leak_detector_t *d;
    pf_leak_report_t rep;
    script_t s = {0};
    alerts_t al;

    test_config(&cfg, clock, &s, NULL, 0, &al);
    assert_pf_ok(pf_leak_detector_new(&cfg, &d));
    pf_clock_manual_advance(clock, 5 * NS_PER_SEC);
    assert_pf_ok(pf_leak_detector_track_allocation(d, "loader", "fetch", &res));
    pf_clock_manual_advance(clock, 300 * NS_PER_SEC);
    /* Exactly 300 s: not longer than the threshold yet. */
    assert_pf_ok(pf_leak_detector_check(d, &rep));
    assert_int_equal(rep.leaks_len, 0);
    assert_null(rep.leaks);
    assert_false(rep.alerting[PF_LEAK_ALERT_ALLOCATION]);
    pf_leak_report_free(&rep);
    pf_clock_manual_advance(clock, 1);
    assert_pf_ok(pf_leak_detector_check(d, &rep));
    assert_int_equal(rep.leaks_len, 1);
    assert_string_equal(rep.leaks[0].agent, "loader");
    assert_string_equal(rep.leaks[0].state, "fetch");
    assert_float_equal(rep.leaks[0].resources.memory_mb, 512.0, 0.0);
    assert_float_equal(rep.leaks[0].resources.cpu_units, 2.0, 0.0);
    assert_float_equal(rep.leaks[0].resources.gpu_units, 1.0, 0.0);
    assert_int_equal(rep.leaks[0].allocated_ns, 5 * NS_PER_SEC);
    assert_float_equal(rep.leaks[0].held_seconds, 300.000000001, 1e-9);
    assert_float_equal(rep.leaks[0].threshold_seconds, 300.0, 0.0);
    assert_true(rep.alerting[PF_LEAK_ALERT_ALLOCATION]);
    pf_leak_report_free(&rep);
    assert_null(rep.leaks);
    assert_int_equal(count_kind(&al, PF_LEAK_ALERT_ALLOCATION, false), 1);
    assert_string_equal(al.agent[0], "loader");
    assert_non_null(strstr(al.msg[0], "loader/fetch"));

    /* Still held: listed again, alerted and recorded once. */
    pf_clock_manual_advance(clock, 60 * NS_PER_SEC);
    assert_pf_ok(pf_leak_detector_check(d, &rep));
    assert_int_equal(rep.leaks_len, 1);
    assert_float_equal(rep.leaks[0].held_seconds, 360.000000001, 1e-9);
    pf_leak_report_free(&rep);
    assert_int_equal(count_kind(&al, PF_LEAK_ALERT_ALLOCATION, false), 1);

    assert_pf_ok(pf_leak_detector_track_release(d, "loader", "fetch"));
    assert_pf_ok(pf_leak_detector_check(d, &rep));
    assert_int_equal(rep.leaks_len, 0);
    pf_leak_report_free(&rep);
    pf_leak_detector_free(d);
}

static void
test_leak_reallocation_restarts_the_clock(void **state)
{
    pf_clock_t *clock = *state;
    pf_leak_config_t cfg;
    pf_leak_detector_t *d;
    pf_leak_report_t rep;
    pf_leak_metrics_t m;

    pf_leak_config_init(&cfg);
    cfg.clock = clock;
    cfg.leak_threshold = 10.0;
    cfg.sample = script_sample;
    cfg.sample_arg = &(script_t){0};
    assert_pf_ok(pf_leak_detector_new(&cfg, &d));
    assert_pf_ok(pf_leak_detector_track_allocation(d, "a", "s", NULL));
    pf_clock_manual_advance(clock, 8 * NS_PER_SEC);
    assert_pf_ok(pf_leak_detector_track_allocation(d, "a", "s", NULL));
    pf_clock_manual_advance(clock, 8 * NS_PER_SEC);
    assert_pf_ok(pf_leak_detector_check(d, &rep));
    assert_int_equal(rep.leaks_len, 0);
    pf_leak_report_free(&rep);
    pf_leak_detector_metrics(d, &m);
    assert_int_equal(m.total_allocations, 1); /* one pair, held once */
    assert_int_equal(m.allocations, 2);
    assert_float_equal(m.oldest_allocation_age, 8.0, 1e-9);
    pf_leak_detector_free(d);
}

static void
test_leak_release_of_nothing_held_is_enotfound(void **state)
{
    pf_clock_t *clock = *state;
    pf_leak_config_t cfg;
    pf_leak_detector_t *d;
    pf_leak_resources_t bad = {-1, 0, 0, 0, 0};
    pf_leak_resources_t nan = {0, NAN, 0, 0, 0};

    pf_leak_config_init(&cfg);
    cfg.clock = clock;
    assert_pf_ok(pf_leak_detector_new(&cfg, &d));
    assert_pf_err(pf_leak_detector_track_release(d, "a", "s"), PF_ENOTFOUND);
    assert_pf_ok(pf_leak_detector_track_allocation(d, "a", "s", NULL));
    /* Same bytes split differently are another pair. */
    assert_pf_err(pf_leak_detector_track_release(d, "as", ""), PF_ENOTFOUND);
    assert_pf_err(pf_leak_detector_track_release(d, "", "as"), PF_ENOTFOUND);
    assert_pf_ok(pf_leak_detector_track_release(d, "a", "s"));
    assert_pf_err(pf_leak_detector_track_release(d, "a", "s"), PF_ENOTFOUND);

    assert_pf_err(pf_leak_detector_track_allocation(NULL, "a", "s", NULL),
                  PF_EINVAL);
    assert_pf_err(pf_leak_detector_track_allocation(d, NULL, "s", NULL),
                  PF_EINVAL);
    assert_pf_err(pf_leak_detector_track_allocation(d, "a", NULL, NULL),
                  PF_EINVAL);
    assert_pf_err(pf_leak_detector_track_allocation(d, "a", "s", &bad),
                  PF_EINVAL);
    assert_pf_err(pf_leak_detector_track_allocation(d, "a", "s", &nan),
                  PF_EINVAL);
    assert_pf_err(pf_leak_detector_track_release(NULL, "a", "s"), PF_EINVAL);
    assert_pf_err(pf_leak_detector_track_release(d, NULL, "s"), PF_EINVAL);
    assert_pf_err(pf_leak_detector_track_release(d, "a", NULL), PF_EINVAL);
    pf_leak_detector_free(d);
}

static void
test_leak_instances_of_one_pair_are_held_and_released_apart(void **state)
{
    pf_clock_t *clock = *state;
    pf_leak_resources_t res = {1.0, 100.0, 1.0, 1.0, 0.0};
    pf_leak_config_t cfg;
    pf_leak_detector_t *d;
    pf_leak_report_t rep;
    pf_leak_metrics_t m;
    pf_leak_t *hist = NULL;
    size_t len = 0;
    script_t s = {0};
    alerts_t al;

    test_config(&cfg, clock, &s, NULL, 0, &al);
    cfg.leak_threshold = 10.0;
    assert_pf_ok(pf_leak_detector_new(&cfg, &d));
    assert_pf_ok(pf_leak_detector_track_allocation_ex(d, "a", "s", 1, &res));
    pf_clock_manual_advance(clock, NS_PER_SEC);
    assert_pf_ok(pf_leak_detector_track_allocation_ex(d, "a", "s", 2, &res));
    assert_pf_ok(pf_leak_detector_track_allocation_ex(d, "a", "s", 3, NULL));
    /* Instance 0 is what the plain pair tracks: one more holder. */
    assert_pf_ok(pf_leak_detector_track_allocation(d, "a", "s", NULL));
    pf_leak_detector_metrics(d, &m);
    assert_int_equal(m.total_allocations, 4);
    /* Run 2 ends: runs 1 and 3 still hold theirs. */
    assert_pf_ok(pf_leak_detector_track_release_ex(d, "a", "s", 2));
    assert_pf_err(pf_leak_detector_track_release_ex(d, "a", "s", 2),
                  PF_ENOTFOUND);
    assert_pf_err(pf_leak_detector_track_release_ex(d, "a", "s", 9),
                  PF_ENOTFOUND);
    assert_pf_ok(pf_leak_detector_track_release(d, "a", "s"));
    assert_pf_err(pf_leak_detector_track_release_ex(d, "a", "s", 0),
                  PF_ENOTFOUND);
    pf_leak_detector_metrics(d, &m);
    assert_int_equal(m.total_allocations, 2);
    assert_int_equal(m.releases, 2);
    assert_float_equal(m.oldest_allocation_age, 1.0, 1e-9);
    pf_clock_manual_advance(clock, 10 * NS_PER_SEC);
    /* Instance 1 is 11 s old, 3 is 10 s (not longer than 10 s yet). */
    assert_pf_ok(pf_leak_detector_check(d, &rep));
    assert_int_equal(rep.leaks_len, 1);
    assert_int_equal(rep.leaks[0].instance, 1);
    assert_float_equal(rep.leaks[0].resources.memory_mb, 100.0, 0.0);
    pf_leak_report_free(&rep);
    pf_clock_manual_advance(clock, 1);
    assert_pf_ok(pf_leak_detector_check(d, &rep));
    assert_int_equal(rep.leaks_len, 2);
    assert_int_equal(rep.leaks[0].instance, 1); /* oldest first */
    assert_int_equal(rep.leaks[1].instance, 3);
    assert_string_equal(rep.leaks[1].agent, "a");
    assert_string_equal(rep.leaks[1].state, "s");
    assert_int_equal(rep.by_agent_len, 1);
    assert_int_equal(rep.by_agent[0].leaks, 2);
    pf_leak_report_free(&rep);
    /* Each alerted once, naming its instance. */
    assert_int_equal(count_kind(&al, PF_LEAK_ALERT_ALLOCATION, false), 2);
    assert_non_null(strstr(al.msg[0], "a/s#1 "));
    assert_non_null(strstr(al.msg[1], "a/s#3 "));
    assert_pf_ok(pf_leak_detector_history(d, &hist, &len));
    assert_int_equal(len, 2);
    assert_int_equal(hist[0].instance, 1);
    assert_int_equal(hist[1].instance, 3);
    pf_leak_list_free(hist, len);
    /* Instance 1 taken again: its clock restarts, the other is kept. */
    assert_pf_ok(pf_leak_detector_track_allocation_ex(d, "a", "s", 1, NULL));
    assert_pf_ok(pf_leak_detector_check(d, &rep));
    assert_int_equal(rep.leaks_len, 1);
    assert_int_equal(rep.leaks[0].instance, 3);
    pf_leak_report_free(&rep);
    assert_pf_ok(pf_leak_detector_track_release_ex(d, "a", "s", 3));
    assert_pf_ok(pf_leak_detector_track_release_ex(d, "a", "s", 1));
    pf_leak_detector_metrics(d, &m);
    assert_int_equal(m.total_allocations, 0);
    assert_int_equal(m.allocations, 5);
    assert_int_equal(m.releases, 4);

    assert_pf_err(pf_leak_detector_track_allocation_ex(NULL, "a", "s", 1, NULL),
                  PF_EINVAL);
    assert_pf_err(pf_leak_detector_track_allocation_ex(d, NULL, "s", 1, NULL),
                  PF_EINVAL);
    assert_pf_err(pf_leak_detector_track_allocation_ex(d, "a", NULL, 1, NULL),
                  PF_EINVAL);
    assert_pf_err(pf_leak_detector_track_allocation_ex(
                      d, "a", "s", 1, &(pf_leak_resources_t){0, -1, 0, 0, 0}),
                  PF_EINVAL);
    assert_pf_err(pf_leak_detector_track_release_ex(NULL, "a", "s", 1),
                  PF_EINVAL);
    assert_pf_err(pf_leak_detector_track_release_ex(d, NULL, "s", 1),
                  PF_EINVAL);
    assert_pf_err(pf_leak_detector_track_release_ex(d, "a", NULL, 1),
                  PF_EINVAL);
    pf_leak_detector_free(d);
}

#define MANY_HOLDERS 40

static void
test_leak_many_holders_of_a_pair_reuse_their_places(void **state)
{
    pf_clock_t *clock = *state;
    pf_leak_config_t cfg;
    pf_leak_detector_t *d;
    pf_leak_report_t rep;
    pf_leak_metrics_t m;
    long made;
    uint64_t i;
    int round;

    pf_test_alloc_install();
    pf_leak_config_init(&cfg);
    cfg.clock = clock;
    cfg.leak_threshold = 5.0;
    cfg.sample = script_sample;
    cfg.sample_arg = &(script_t){0};
    assert_pf_ok(pf_leak_detector_new(&cfg, &d));
    made = 0;
    for (round = 0; round < 3; round++) {
        if (round == 1) {
            made = pf_test_alloc_count();
        }
        for (i = 1; i <= MANY_HOLDERS; i++) {
            assert_pf_ok(pf_leak_detector_track_allocation_ex(
                d, "agent", "state", (uint64_t)round * 1000 + i, NULL));
        }
        pf_leak_detector_metrics(d, &m);
        assert_int_equal(m.total_allocations, MANY_HOLDERS);
        /* Released in another order than taken. */
        for (i = MANY_HOLDERS; i >= 1; i -= 2) {
            assert_pf_ok(pf_leak_detector_track_release_ex(
                d, "agent", "state", (uint64_t)round * 1000 + i));
        }
        for (i = 1; i <= MANY_HOLDERS; i += 2) {
            assert_pf_ok(pf_leak_detector_track_release_ex(
                d, "agent", "state", (uint64_t)round * 1000 + i));
        }
        pf_leak_detector_metrics(d, &m);
        assert_int_equal(m.total_allocations, 0);
    }
    /* Rounds after the first allocated nothing. */
    assert_int_equal(pf_test_alloc_count(), made);
    /* Every holder is seen by a check. */
    for (i = 1; i <= MANY_HOLDERS; i++) {
        assert_pf_ok(pf_leak_detector_track_allocation_ex(d, "agent", "state",
                                                          i, NULL));
    }
    pf_clock_manual_advance(clock, 6 * NS_PER_SEC);
    assert_pf_ok(pf_leak_detector_check(d, &rep));
    assert_int_equal(rep.leaks_len, MANY_HOLDERS);
    for (i = 0; i < MANY_HOLDERS; i++) {
        assert_int_equal(rep.leaks[i].instance, i + 1);
    }
    pf_leak_report_free(&rep);
    pf_leak_detector_free(d);
    pf_test_alloc_uninstall();
}

static void
test_leak_report_counts_leaks_per_agent_oldest_first(void **state)
{
    pf_clock_t *clock = *state;
    pf_leak_config_t cfg;
    pf_leak_detector_t *d;
    pf_leak_report_t rep;
    pf_leak_metrics_t m;

    pf_leak_config_init(&cfg);
    cfg.clock = clock;
    cfg.leak_threshold = 100.0;
    cfg.sample = script_sample;
    cfg.sample_arg = &(script_t){0};
    assert_pf_ok(pf_leak_detector_new(&cfg, &d));
    assert_pf_ok(pf_leak_detector_track_allocation(d, "zeta", "z1", NULL));
    pf_clock_manual_advance(clock, NS_PER_SEC);
    assert_pf_ok(pf_leak_detector_track_allocation(d, "alpha", "a1", NULL));
    pf_clock_manual_advance(clock, NS_PER_SEC);
    assert_pf_ok(pf_leak_detector_track_allocation(d, "alpha", "a2", NULL));
    assert_pf_ok(pf_leak_detector_track_allocation(d, "alpha", "a3", NULL));
    assert_pf_ok(pf_leak_detector_track_allocation(d, "fresh", "f1", NULL));
    pf_clock_manual_advance(clock, 99 * NS_PER_SEC);
    /* zeta/z1 is 101 s old, alpha/a1 100 s (not yet), the rest 99 s. */
    assert_pf_ok(pf_leak_detector_check(d, &rep));
    assert_int_equal(rep.leaks_len, 1);
    pf_leak_report_free(&rep);
    pf_clock_manual_advance(clock, 2 * NS_PER_SEC);
    assert_pf_ok(pf_leak_detector_track_release(d, "fresh", "f1"));
    assert_pf_ok(pf_leak_detector_check(d, &rep));
    assert_int_equal(rep.leaks_len, 4);
    assert_string_equal(rep.leaks[0].agent, "zeta");
    assert_string_equal(rep.leaks[1].state, "a1");
    assert_int_equal(rep.by_agent_len, 2);
    assert_string_equal(rep.by_agent[0].agent, "alpha");
    assert_int_equal(rep.by_agent[0].leaks, 3);
    assert_string_equal(rep.by_agent[1].agent, "zeta");
    assert_int_equal(rep.by_agent[1].leaks, 1);
    pf_leak_report_free(&rep);

    pf_leak_detector_metrics(d, &m);
    assert_int_equal(m.total_allocations, 4);
    assert_int_equal(m.allocations, 5);
    assert_int_equal(m.releases, 1);
    assert_int_equal(m.current_leaks, 4);
    assert_int_equal(m.total_detected, 4);
    assert_int_equal(m.history_len, 4);
    assert_float_equal(m.leak_threshold, 100.0, 0.0);
    assert_float_equal(m.oldest_allocation_age, 103.0, 1e-9);
    assert_true(m.alerting[PF_LEAK_ALERT_ALLOCATION]);
    pf_leak_detector_free(d);
}

static void
test_leak_history_keeps_the_last_n_and_clears(void **state)
{
    pf_clock_t *clock = *state;
    pf_leak_config_t cfg;
    pf_leak_detector_t *d;
    pf_leak_report_t rep;
    pf_leak_metrics_t m;
    pf_leak_t *hist;
    size_t len;
    char st[8];
    int i;
    script_t s = {0};
    alerts_t al;

    test_config(&cfg, clock, &s, NULL, 0, &al);
    cfg.leak_threshold = 10.0;
    cfg.leak_history = 3;
    assert_pf_ok(pf_leak_detector_new(&cfg, &d));
    for (i = 0; i < 5; i++) {
        snprintf(st, sizeof(st), "s%d", i);
        assert_pf_ok(pf_leak_detector_track_allocation(d, "a", st, NULL));
        pf_clock_manual_advance(clock, 11 * NS_PER_SEC);
        assert_pf_ok(pf_leak_detector_check(d, &rep));
        assert_int_equal(rep.leaks_len, (size_t)i + 1);
        pf_leak_report_free(&rep);
    }
    assert_pf_ok(pf_leak_detector_history(d, &hist, &len));
    assert_int_equal(len, 3);
    assert_string_equal(hist[0].state, "s2");
    assert_string_equal(hist[2].state, "s4");
    assert_float_equal(hist[2].held_seconds, 11.0, 1e-9);
    pf_leak_list_free(hist, len);
    pf_leak_detector_metrics(d, &m);
    assert_int_equal(m.total_detected, 5);
    assert_int_equal(m.history_len, 3);
    assert_int_equal(count_kind(&al, PF_LEAK_ALERT_ALLOCATION, false), 5);

    pf_leak_detector_clear_history(d);
    assert_pf_ok(pf_leak_detector_history(d, &hist, &len));
    assert_int_equal(len, 0);
    assert_null(hist);
    /* Still-held leaks are not new again after a clear. */
    assert_pf_ok(pf_leak_detector_check(d, &rep));
    assert_int_equal(rep.leaks_len, 5);
    pf_leak_report_free(&rep);
    pf_leak_detector_metrics(d, &m);
    assert_int_equal(m.history_len, 0);
    assert_int_equal(m.total_detected, 5);
    assert_pf_err(pf_leak_detector_history(d, NULL, &len), PF_EINVAL);
    assert_pf_err(pf_leak_detector_history(NULL, &hist, &len), PF_EINVAL);
    pf_leak_detector_clear_history(NULL);
    pf_leak_list_free(NULL, 3);
    pf_leak_detector_free(d);
}

/* ---- thresholds and hysteresis ------------------------------------------- */

static void
test_leak_fd_threshold_alerts_once_and_rearms_below_margin(void **state)
{
    pf_clock_t *clock = *state;
    /* Threshold 100, hysteresis 10 %. */
    static const int64_t fds[] = {50, 101, 150, 99, 101, 95, 91, 90, 101, 100};
    pf_leak_sample_t vals[10];
    pf_leak_config_t cfg;
    pf_leak_detector_t *d;
    pf_leak_report_t rep;
    pf_leak_metrics_t m;
    script_t s = {0};
    alerts_t al;
    size_t i;

    for (i = 0; i < 10; i++) {
        vals[i] = fds_sample(fds[i]);
    }
    test_config(&cfg, clock, &s, vals, 10, &al);
    cfg.file_handle_threshold = 100;
    cfg.trend_window = 0;
    assert_pf_ok(pf_leak_detector_new(&cfg, &d));
    for (i = 0; i < 10; i++) {
        assert_pf_ok(pf_leak_detector_check(d, &rep));
        assert_int_equal(rep.sample.open_fds, fds[i]);
        assert_int_equal(rep.sample_error, 0);
        pf_leak_report_free(&rep);
        if (i == 2) {
            assert_int_equal(al.n, 1);
            assert_int_equal(al.a[0].kind, PF_LEAK_ALERT_FILE_HANDLES);
            assert_false(al.a[0].cleared);
            assert_float_equal(al.a[0].value, 101, 0.0);
            assert_float_equal(al.a[0].limit, 100, 0.0);
            assert_non_null(strstr(al.msg[0], "101 open fds"));
        }
    }
    /* Raised at 101, cleared at 90, raised again at the next 101. */
    assert_int_equal(count_kind(&al, PF_LEAK_ALERT_FILE_HANDLES, false), 2);
    assert_int_equal(count_kind(&al, PF_LEAK_ALERT_FILE_HANDLES, true), 1);
    assert_int_equal(al.n, 3);
    pf_leak_detector_metrics(d, &m);
    assert_true(m.alerting[PF_LEAK_ALERT_FILE_HANDLES]);
    assert_int_equal(m.alerts, 2);
    assert_int_equal(m.samples, 10);
    assert_int_equal(m.last_sample.open_fds, 100);
    pf_leak_detector_free(d);
}

static void
test_leak_memory_and_connection_thresholds_alert(void **state)
{
    pf_clock_t *clock = *state;
    pf_leak_sample_t v[4];
    pf_leak_config_t cfg;
    pf_leak_detector_t *d;
    pf_leak_report_t rep;
    script_t s = {0};
    alerts_t al;
    int i;

    memset(v, 0, sizeof(v));
    for (i = 0; i < 4; i++) {
        v[i].memory_limit_bytes = 1000;
    }
    v[0].rss_bytes = 800; /* exactly 0.8: not over */
    v[0].tcp = 60;
    v[0].udp = 40; /* 100 connections: not over */
    v[1].rss_bytes = 801;
    v[1].tcp = 61;
    v[1].udp = 40;
    v[1].unix_sockets = 500; /* unix sockets are no connections */
    v[2].rss_bytes = 500;    /* 0.5 <= 0.72: cleared */
    v[2].tcp = 95;           /* 95 > 90: still raised */
    v[3].rss_bytes = 0;
    v[3].memory_limit_bytes = 0; /* unknown limit: memory not judged */
    v[3].tcp = 10;
    test_config(&cfg, clock, &s, v, 4, &al);
    assert_pf_ok(pf_leak_detector_new(&cfg, &d));
    for (i = 0; i < 4; i++) {
        assert_pf_ok(pf_leak_detector_check(d, &rep));
        if (i == 1) {
            assert_float_equal(rep.sample.memory_fraction, 0.801, 1e-12);
            assert_int_equal(rep.sample.connections, 101);
            assert_true(rep.alerting[PF_LEAK_ALERT_MEMORY]);
            assert_true(rep.alerting[PF_LEAK_ALERT_CONNECTIONS]);
        }
        pf_leak_report_free(&rep);
    }
    assert_int_equal(count_kind(&al, PF_LEAK_ALERT_MEMORY, false), 1);
    assert_int_equal(count_kind(&al, PF_LEAK_ALERT_MEMORY, true), 1);
    assert_int_equal(count_kind(&al, PF_LEAK_ALERT_CONNECTIONS, false), 1);
    assert_int_equal(count_kind(&al, PF_LEAK_ALERT_CONNECTIONS, true), 1);
    assert_int_equal(count_kind(&al, PF_LEAK_ALERT_FILE_HANDLES, false), 0);
    pf_leak_detector_free(d);
}

static void
test_leak_connections_saturate_for_huge_socket_counts(void **state)
{
    pf_clock_t *clock = *state;
    pf_leak_sample_t v[4];
    static const int64_t want[4] = {INT64_MAX, INT64_MAX, INT64_MAX,
                                    INT64_MAX - 1};
    pf_leak_config_t cfg;
    pf_leak_detector_t *d;
    pf_leak_report_t rep;
    script_t s = {0};
    alerts_t al;
    int i;

    /* A custom sampler may report anything; tcp + udp must not overflow
     * (signed overflow is undefined: this runs under UBSan too). */
    for (i = 0; i < 4; i++) {
        v[i] = fds_sample(INT64_MAX);
        v[i].rss_bytes = INT64_MAX;
        v[i].memory_limit_bytes = INT64_MAX;
        v[i].fd_limit = INT64_MAX;
        v[i].threads = INT64_MAX;
        v[i].sockets = INT64_MAX;
    }
    v[0].tcp = INT64_MAX; /* both at the top */
    v[0].udp = INT64_MAX;
    v[1].tcp = INT64_MAX - 1; /* one past the top */
    v[1].udp = 2;
    v[2].tcp = INT64_MAX - 1; /* exactly the top: no saturation needed */
    v[2].udp = 1;
    v[3].tcp = 0;
    v[3].udp = INT64_MAX - 1;
    test_config(&cfg, clock, &s, v, 4, &al);
    assert_pf_ok(pf_leak_detector_new(&cfg, &d));
    for (i = 0; i < 4; i++) {
        assert_pf_ok(pf_leak_detector_check(d, &rep));
        assert_true(rep.sample.connections == want[i]);
        assert_true(rep.alerting[PF_LEAK_ALERT_CONNECTIONS]);
        pf_leak_report_free(&rep);
    }
    assert_int_equal(count_kind(&al, PF_LEAK_ALERT_CONNECTIONS, false), 1);
    pf_leak_detector_free(d);
}

static void
test_leak_unknown_sockets_are_not_judged(void **state)
{
    pf_clock_t *clock = *state;
    pf_leak_sample_t v = fds_sample(10);
    pf_leak_config_t cfg;
    pf_leak_detector_t *d;
    pf_leak_report_t rep;
    script_t s = {0};
    alerts_t al;

    /* Another user's process: descriptors counted, their kinds not. */
    v.tcp = -1;
    v.udp = -1;
    v.sockets = -1;
    test_config(&cfg, clock, &s, &v, 1, &al);
    cfg.connection_threshold = 1;
    assert_pf_ok(pf_leak_detector_new(&cfg, &d));
    assert_pf_ok(pf_leak_detector_check(d, &rep));
    assert_int_equal(rep.sample.connections, -1);
    assert_false(rep.alerting[PF_LEAK_ALERT_CONNECTIONS]);
    pf_leak_report_free(&rep);
    assert_int_equal(al.n, 0);
    pf_leak_detector_free(d);
}

static void
test_leak_failed_sample_is_reported_not_judged(void **state)
{
    pf_clock_t *clock = *state;
    pf_leak_config_t cfg;
    pf_leak_detector_t *d;
    pf_leak_report_t rep;
    pf_leak_metrics_t m;
    script_t s = {0};
    alerts_t al;

    s.fail = -1; /* a user code, handed back as is */
    test_config(&cfg, clock, &s, NULL, 0, &al);
    assert_pf_ok(pf_leak_detector_new(&cfg, &d));
    assert_pf_ok(pf_leak_detector_check(d, &rep));
    assert_int_equal(rep.sample_error, -1);
    assert_int_equal(rep.sample.open_fds, 0);
    pf_leak_report_free(&rep);
    pf_leak_detector_metrics(d, &m);
    assert_int_equal(m.samples, 0);
    assert_int_equal(m.sample_errors, 1);
    assert_int_equal(al.n, 0);
    assert_pf_err(pf_leak_detector_check(d, NULL), PF_EINVAL);
    assert_pf_err(pf_leak_detector_check(NULL, &rep), PF_EINVAL);
    pf_leak_report_free(NULL);
    pf_leak_detector_metrics(NULL, &m);
    pf_leak_detector_metrics(d, NULL);
    pf_leak_detector_free(d);
}

/* ---- trends -------------------------------------------------------------- */

static void
test_leak_fd_growth_is_flagged_before_any_threshold(void **state)
{
    pf_clock_t *clock = *state;
    pf_leak_sample_t v[30];
    pf_leak_config_t cfg;
    pf_leak_detector_t *d;
    pf_leak_report_t rep;
    script_t s = {0};
    alerts_t al;
    size_t i;

    /* +40 fds a minute for 15 minutes, then flat: far below 1000. */
    for (i = 0; i < 30; i++) {
        v[i] = fds_sample(100 + 40 * (int64_t)(i < 15 ? i : 14));
    }
    test_config(&cfg, clock, &s, v, 30, &al);
    assert_pf_ok(pf_leak_detector_new(&cfg, &d));
    for (i = 0; i < 30; i++) {
        assert_pf_ok(pf_leak_detector_check(d, &rep));
        if (i < 9) {
            assert_true(isnan(rep.fd_slope)); /* window not full */
            assert_false(rep.alerting[PF_LEAK_ALERT_FD_TREND]);
        }
        if (i == 9) {
            assert_float_equal(rep.fd_slope, 40.0, 1e-6);
            assert_true(rep.alerting[PF_LEAK_ALERT_FD_TREND]);
            assert_float_equal(rep.memory_slope, 0.0, 1e-9);
        }
        pf_leak_report_free(&rep);
        pf_clock_manual_advance(clock, 60 * NS_PER_SEC);
    }
    assert_int_equal(count_kind(&al, PF_LEAK_ALERT_FD_TREND, false), 1);
    assert_int_equal(count_kind(&al, PF_LEAK_ALERT_FD_TREND, true), 1);
    assert_int_equal(count_kind(&al, PF_LEAK_ALERT_FILE_HANDLES, false), 0);
    assert_int_equal(count_kind(&al, PF_LEAK_ALERT_MEMORY_TREND, false), 0);
    assert_int_equal(al.a[0].kind, PF_LEAK_ALERT_FD_TREND);
    assert_float_equal(al.a[0].window_seconds, 540.0, 1e-9);
    assert_non_null(strstr(al.msg[0], "fds +40.0/min over 9.0 min"));
    pf_leak_detector_free(d);
}

static void
test_leak_memory_growth_is_flagged(void **state)
{
    pf_clock_t *clock = *state;
    pf_leak_sample_t v[10];
    pf_leak_config_t cfg;
    pf_leak_detector_t *d;
    pf_leak_report_t rep;
    script_t s = {0};
    alerts_t al;
    size_t i;

    /* +8 MB a minute, sampled every 30 s. */
    for (i = 0; i < 10; i++) {
        v[i] = fds_sample(20);
        v[i].rss_bytes = (INT64_C(64) << 20) + (int64_t)i * (4 << 20);
    }
    test_config(&cfg, clock, &s, v, 10, &al);
    cfg.trend_memory_slope = 5.0;
    assert_pf_ok(pf_leak_detector_new(&cfg, &d));
    for (i = 0; i < 10; i++) {
        assert_pf_ok(pf_leak_detector_check(d, &rep));
        pf_leak_report_free(&rep);
        pf_clock_manual_advance(clock, 30 * NS_PER_SEC);
    }
    assert_int_equal(count_kind(&al, PF_LEAK_ALERT_MEMORY_TREND, false), 1);
    assert_float_equal(al.a[0].value, 8.0, 1e-6);
    assert_float_equal(al.a[0].limit, 5.0, 0.0);
    assert_int_equal(count_kind(&al, PF_LEAK_ALERT_FD_TREND, false), 0);
    pf_leak_detector_free(d);
}

/* ---- monitoring ---------------------------------------------------------- */

static void
test_leak_monitor_samples_every_interval_on_the_clock(void **state)
{
    pf_clock_t *clock = *state;
    pf_leak_sample_t v[2];
    pf_leak_config_t cfg;
    pf_leak_detector_t *d;
    pf_leak_metrics_t m;
    script_t s = {0};
    alerts_t al;

    v[0] = fds_sample(10);
    v[1] = fds_sample(5000);
    test_config(&cfg, clock, &s, v, 2, &al);
    cfg.check_interval = 60.0;
    assert_pf_ok(pf_leak_detector_new(&cfg, &d));
    assert_pf_ok(pf_leak_detector_start_monitoring(d));
    assert_true(pf_leak_detector_is_monitoring(d));
    /* The first sample at once, then the thread parks on the clock. */
    pf_test_wait_for_flag(&s.calls, 1);
    pf_test_wait_for_waiters(clock, 1);
    pf_clock_manual_advance(clock, 60 * NS_PER_SEC - 1);
    assert_int_equal(atomic_load(&s.calls), 1);
    pf_clock_manual_advance(clock, 1);
    /* The second sample (5000 fds) alerts from the monitoring thread. */
    pf_test_wait_for_flag(&al.count, 1);
    assert_int_equal(atomic_load(&s.calls), 2);
    assert_int_equal(al.a[0].kind, PF_LEAK_ALERT_FILE_HANDLES);
    assert_int_equal(al.a[0].at_ns, 60 * NS_PER_SEC);
    pf_test_wait_for_waiters(clock, 1);
    /* Two intervals at once: one sample, no burst. */
    pf_clock_manual_advance(clock, 120 * NS_PER_SEC);
    pf_test_wait_for_flag(&s.calls, 3);
    pf_test_wait_for_waiters(clock, 1);
    pf_clock_manual_advance(clock, 59 * NS_PER_SEC);
    assert_int_equal(atomic_load(&s.calls), 3);
    pf_clock_manual_advance(clock, 1 * NS_PER_SEC);
    pf_test_wait_for_flag(&s.calls, 4);
    pf_test_wait_for_waiters(clock, 1);
    /* Stop returns without the clock moving. */
    assert_pf_ok(pf_leak_detector_stop_monitoring(d));
    assert_false(pf_leak_detector_is_monitoring(d));
    assert_int_equal(pf_clock_manual_waiters(clock), 0);
    pf_leak_detector_metrics(d, &m);
    assert_int_equal(m.samples, 4);
    assert_int_equal(m.alerts, 1);
    assert_false(m.monitoring);
    pf_leak_detector_free(d);
}

static void
test_leak_monitor_start_and_stop_states(void **state)
{
    pf_clock_t *clock = *state;
    pf_leak_config_t cfg;
    pf_leak_detector_t *d;
    script_t s = {0};
    alerts_t al;

    test_config(&cfg, clock, &s, NULL, 0, &al);
    assert_pf_ok(pf_leak_detector_new(&cfg, &d));
    assert_pf_err(pf_leak_detector_stop_monitoring(d), PF_ESTATE);
    assert_pf_ok(pf_leak_detector_start_monitoring(d));
    assert_pf_err(pf_leak_detector_start_monitoring(d), PF_ESTATE);
    assert_pf_ok(pf_leak_detector_stop_monitoring(d));
    assert_pf_err(pf_leak_detector_stop_monitoring(d), PF_ESTATE);
    assert_pf_err(pf_leak_detector_start_monitoring(NULL), PF_EINVAL);
    assert_pf_err(pf_leak_detector_stop_monitoring(NULL), PF_EINVAL);
    assert_false(pf_leak_detector_is_monitoring(NULL));
    /* Free stops a running monitor. */
    assert_pf_ok(pf_leak_detector_start_monitoring(d));
    pf_test_wait_for_waiters(clock, 1);
    pf_leak_detector_free(d);
    assert_int_equal(pf_clock_manual_waiters(clock), 0);
}

typedef struct self_stop {
    pf_leak_detector_t *d;
    atomic_int rc;
    atomic_int done;
} self_stop_t;

static void
stop_from_listener(const pf_leak_alert_t *al, void *arg)
{
    self_stop_t *ss = arg;

    (void)al;
    atomic_store(&ss->rc, pf_leak_detector_stop_monitoring(ss->d));
    atomic_store(&ss->done, 1);
}

static void
test_leak_stop_from_own_listener_is_estate(void **state)
{
    pf_clock_t *clock = *state;
    pf_leak_sample_t v = fds_sample(5000);
    pf_leak_config_t cfg;
    script_t s = {0};
    self_stop_t ss = {0};

    s.vals = &v;
    s.n = 1;
    pf_leak_config_init(&cfg);
    cfg.clock = clock;
    cfg.sample = script_sample;
    cfg.sample_arg = &s;
    cfg.listener = stop_from_listener;
    cfg.listener_arg = &ss;
    assert_pf_ok(pf_leak_detector_new(&cfg, &ss.d));
    assert_pf_ok(pf_leak_detector_start_monitoring(ss.d));
    pf_test_wait_for_flag(&ss.done, 1);
    assert_int_equal(atomic_load(&ss.rc), PF_ESTATE);
    assert_pf_ok(pf_leak_detector_stop_monitoring(ss.d));
    pf_leak_detector_free(ss.d);
}

static int64_t
thread_count(void)
{
    pf__proc_status_t st;

    assert_pf_ok(pf__proc_read_status(PF__PROC_ROOT, 0, &st));
    return st.threads;
}

static int64_t
fd_count(void)
{
    int64_t n;

    assert_pf_ok(pf__proc_count_fds(PF__PROC_ROOT, 0, &n));
    return n;
}

static void
test_leak_start_stop_1000_times_leaks_nothing(void **state)
{
    pf_clock_t *clock = *state;
    pf_leak_config_t cfg;
    pf_leak_detector_t *d;
    script_t s = {0};
    int64_t threads0 = thread_count();
    int64_t fds0 = fd_count();
    long live0;
    int i;

    pf_test_alloc_install();
    live0 = pf_test_alloc_live();
    pf_leak_config_init(&cfg);
    cfg.clock = clock;
    cfg.sample = script_sample;
    cfg.sample_arg = &s;
    assert_pf_ok(pf_leak_detector_new(&cfg, &d));
    for (i = 0; i < 1000; i++) {
        assert_pf_ok(pf_leak_detector_start_monitoring(d));
        if (i % 2 == 0) {
            /* Half the time stop a thread parked on the clock, half the
             * time one that may not have sampled yet. */
            pf_test_wait_for_waiters(clock, 1);
        }
        assert_pf_ok(pf_leak_detector_stop_monitoring(d));
    }
    assert_true(atomic_load(&s.calls) >= 500);
    pf_leak_detector_free(d);
    assert_int_equal(pf_test_alloc_live(), live0);
    pf_test_alloc_uninstall();
    assert_int_equal(thread_count(), threads0);
    assert_int_equal(fd_count(), fds0);
}

/* Two checks at once: the second clears the alert the first raised while
 * the first is still telling it. The listener must hear them one at a
 * time, raised before cleared. */
typedef struct told {
    pf_leak_detector_t *d;
    atomic_int active; /* listener calls in progress */
    atomic_int overlap;
    atomic_int n;
    bool cleared[4];
} told_t;

static void
one_at_a_time(const pf_leak_alert_t *al, void *arg)
{
    told_t *t = arg;
    int i;

    if (atomic_fetch_add(&t->active, 1) != 0) {
        atomic_store(&t->overlap, 1);
    }
    i = atomic_fetch_add(&t->n, 1);
    if (i < 4) {
        t->cleared[i] = al->cleared;
    }
    if (!al->cleared) {
        pf_leak_metrics_t m;

        /* Hold the raise until the other check has judged its sample. */
        do {
            sched_yield();
            pf_leak_detector_metrics(t->d, &m);
        } while (m.samples < 2);
    }
    atomic_fetch_sub(&t->active, 1);
}

static void *
check_thread(void *arg)
{
    told_t *t = arg;
    pf_leak_report_t rep;

    assert_pf_ok(pf_leak_detector_check(t->d, &rep));
    pf_leak_report_free(&rep);
    return NULL;
}

static void
test_leak_concurrent_checks_alert_one_at_a_time_in_order(
    void **state)
{
    pf_clock_t *clock = *state;
    pf_leak_sample_t v[2];
    pf_leak_config_t cfg;
    pf_leak_report_t rep;
    script_t s = {0};
    alerts_t al;
    told_t t = {0};
    pthread_t th;

    v[0] = fds_sample(5000);
    v[1] = fds_sample(10);
    test_config(&cfg, clock, &s, v, 2, &al);
    cfg.listener = one_at_a_time;
    cfg.listener_arg = &t;
    assert_pf_ok(pf_leak_detector_new(&cfg, &t.d));
    assert_int_equal(pthread_create(&th, NULL, check_thread, &t), 0);
    pf_test_wait_for_flag(&t.active, 1); /* telling the raise */
    assert_pf_ok(pf_leak_detector_check(t.d, &rep)); /* clears it */
    pf_leak_report_free(&rep);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(atomic_load(&t.n), 2);
    assert_int_equal(atomic_load(&t.overlap), 0);
    assert_false(t.cleared[0]);
    assert_true(t.cleared[1]);
    pf_leak_detector_free(t.d);
}

/* ---- concurrency --------------------------------------------------------- */

typedef struct churn {
    pf_leak_detector_t *d;
    atomic_int failures;
} churn_t;

static void
churn_thread(void *arg, unsigned i)
{
    churn_t *c = arg;
    char agent[16];
    char st[16];
    int k;

    for (k = 0; k < 2000; k++) {
        /* Pairs shared between threads, and pairs of their own. */
        snprintf(agent, sizeof(agent), "agent%u", (unsigned)(k % 7));
        snprintf(st, sizeof(st), "state%u", i * 1000 + (unsigned)(k % 50));
        if (pf_leak_detector_track_allocation(c->d, agent, st, NULL) != 0 ||
            pf_leak_detector_track_release(c->d, agent, st) != 0) {
            atomic_fetch_add(&c->failures, 1);
        }
    }
}

static void
test_leak_concurrent_tracking_loses_no_count(void **state)
{
    pf_clock_t *clock = *state;
    pf_leak_config_t cfg;
    pf_leak_metrics_t m;
    pf_leak_report_t rep;
    churn_t c = {0};

    pf_leak_config_init(&cfg);
    cfg.clock = clock;
    cfg.sample = script_sample;
    cfg.sample_arg = &(script_t){0};
    cfg.leak_threshold = 1.0;
    assert_pf_ok(pf_leak_detector_new(&cfg, &c.d));
    pf_test_run_threads(4, churn_thread, &c);
    assert_int_equal(atomic_load(&c.failures), 0);
    pf_clock_manual_advance(clock, 10 * NS_PER_SEC);
    assert_pf_ok(pf_leak_detector_check(c.d, &rep));
    assert_int_equal(rep.leaks_len, 0);
    pf_leak_report_free(&rep);
    pf_leak_detector_metrics(c.d, &m);
    assert_int_equal(m.allocations, 4 * 2000);
    assert_int_equal(m.releases, 4 * 2000);
    assert_int_equal(m.total_allocations, 0);
    assert_true(isnan(m.oldest_allocation_age));
    pf_leak_detector_free(c.d);
}

/* Every thread holds the same pair as instances of its own, two at a time,
 * and gives them back. */
static void
instance_churn_thread(void *arg, unsigned i)
{
    churn_t *c = arg;
    uint64_t base = (uint64_t)(i + 1) << 32;
    int k;

    for (k = 0; k < 2000; k++) {
        uint64_t x = base + (uint64_t)k;

        if (pf_leak_detector_track_allocation_ex(c->d, "agent", "state", x,
                                                 NULL) != 0 ||
            pf_leak_detector_track_allocation_ex(c->d, "agent", "state",
                                                 x + 100000, NULL) != 0 ||
            pf_leak_detector_track_release_ex(c->d, "agent", "state", x) != 0 ||
            pf_leak_detector_track_release_ex(c->d, "agent", "state",
                                              x + 100000) != 0) {
            atomic_fetch_add(&c->failures, 1);
        }
    }
    /* One kept, to be found held at the end. */
    if (pf_leak_detector_track_allocation_ex(c->d, "agent", "state", base,
                                             NULL) != 0) {
        atomic_fetch_add(&c->failures, 1);
    }
}

static void
test_leak_concurrent_instances_of_one_pair_lose_no_count(void **state)
{
    pf_clock_t *clock = *state;
    pf_leak_config_t cfg;
    pf_leak_metrics_t m;
    pf_leak_report_t rep;
    churn_t c = {0};
    size_t i;

    pf_leak_config_init(&cfg);
    cfg.clock = clock;
    cfg.sample = script_sample;
    cfg.sample_arg = &(script_t){0};
    cfg.leak_threshold = 1.0;
    assert_pf_ok(pf_leak_detector_new(&cfg, &c.d));
    pf_test_run_threads(4, instance_churn_thread, &c);
    assert_int_equal(atomic_load(&c.failures), 0);
    pf_leak_detector_metrics(c.d, &m);
    assert_int_equal(m.allocations, 4 * 4001);
    assert_int_equal(m.releases, 4 * 4000);
    assert_int_equal(m.total_allocations, 4);
    pf_clock_manual_advance(clock, 10 * NS_PER_SEC);
    assert_pf_ok(pf_leak_detector_check(c.d, &rep));
    assert_int_equal(rep.leaks_len, 4);
    for (i = 0; i < 4; i++) { /* same age: by instance */
        assert_int_equal(rep.leaks[i].instance, (uint64_t)(i + 1) << 32);
    }
    pf_leak_report_free(&rep);
    pf_leak_detector_free(c.d);
}

/* ---- allocation failures ------------------------------------------------- */

typedef struct sweep {
    pf_clock_t *clock;
    bool listen; /* with a listener: alerts are queued with copies */
} sweep_t;

static void
count_alert(const pf_leak_alert_t *al, void *arg)
{
    (void)al;
    atomic_fetch_add((atomic_int *)arg, 1);
}

static void
alloc_scenario(void *arg)
{
    sweep_t *sw = arg;
    pf_clock_t *clock = sw->clock;
    atomic_int heard = 0;
    pf_leak_config_t cfg;
    pf_leak_detector_t *d;
    pf_leak_report_t rep;
    pf_leak_t *hist;
    size_t len;
    int rc;
    int i;
    char st[8];

    pf_leak_config_init(&cfg);
    cfg.clock = clock;
    cfg.leak_threshold = 1.0;
    cfg.sample = script_sample;
    cfg.sample_arg = &(script_t){0};
    cfg.trend_window = 4;
    if (sw->listen) {
        cfg.listener = count_alert;
        cfg.listener_arg = &heard;
    }
    rc = pf_leak_detector_new(&cfg, &d);
    if (rc != 0) {
        assert_int_equal(rc, PF_ENOMEM);
        return;
    }
    for (i = 0; i < 3; i++) {
        snprintf(st, sizeof(st), "s%d", i);
        rc = pf_leak_detector_track_allocation(d, i == 2 ? "b" : "a", st, NULL);
        assert_true(rc == 0 || rc == PF_ENOMEM);
    }
    for (i = 1; i <= 3; i++) { /* more holders of a pair at once */
        rc = pf_leak_detector_track_allocation_ex(d, "a", "s0", (uint64_t)i,
                                                  NULL);
        assert_true(rc == 0 || rc == PF_ENOMEM);
    }
    rc = pf_leak_detector_track_release_ex(d, "a", "s0", 2);
    assert_true(rc == 0 || rc == PF_ENOTFOUND);
    pf_clock_manual_advance(clock, 2 * NS_PER_SEC);
    for (i = 0; i < 2; i++) {
        rc = pf_leak_detector_check(d, &rep);
        if (rc == 0) {
            pf_leak_report_free(&rep);
        } else {
            assert_int_equal(rc, PF_ENOMEM);
            assert_null(rep.leaks);
            assert_int_equal(rep.leaks_len, 0);
        }
    }
    rc = pf_leak_detector_history(d, &hist, &len);
    if (rc == 0) {
        pf_leak_list_free(hist, len);
    } else {
        assert_int_equal(rc, PF_ENOMEM);
    }
    pf_leak_detector_free(d);
}

static void
test_leak_allocation_failures_leak_nothing(void **state)
{
    sweep_t sw = {*state, false};

    assert_true(pf_test_alloc_sweep(alloc_scenario, &sw) > 10);
}

static void
test_leak_allocation_failures_with_a_listener_leak_nothing(void **state)
{
    sweep_t sw = {*state, true};

    assert_true(pf_test_alloc_sweep(alloc_scenario, &sw) > 10);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_leak_config_init_sets_the_documented_defaults),
        cmocka_unit_test(test_leak_new_rejects_bad_config_and_creates_nothing),
        cmocka_unit_test(test_leak_new_accepts_edge_values),
        cmocka_unit_test(test_leak_new_rejects_a_pid_that_does_not_exist),
        CLOCK_TEST(test_leak_allocation_held_past_threshold_is_a_leak),
        CLOCK_TEST(test_leak_reallocation_restarts_the_clock),
        CLOCK_TEST(test_leak_release_of_nothing_held_is_enotfound),
        CLOCK_TEST(test_leak_instances_of_one_pair_are_held_and_released_apart),
        CLOCK_TEST(test_leak_many_holders_of_a_pair_reuse_their_places),
        CLOCK_TEST(test_leak_report_counts_leaks_per_agent_oldest_first),
        CLOCK_TEST(test_leak_history_keeps_the_last_n_and_clears),
        CLOCK_TEST(test_leak_fd_threshold_alerts_once_and_rearms_below_margin),
        CLOCK_TEST(test_leak_memory_and_connection_thresholds_alert),
        CLOCK_TEST(test_leak_connections_saturate_for_huge_socket_counts),
        CLOCK_TEST(test_leak_unknown_sockets_are_not_judged),
        CLOCK_TEST(test_leak_failed_sample_is_reported_not_judged),
        CLOCK_TEST(test_leak_fd_growth_is_flagged_before_any_threshold),
        CLOCK_TEST(test_leak_memory_growth_is_flagged),
        CLOCK_TEST(test_leak_monitor_samples_every_interval_on_the_clock),
        CLOCK_TEST(test_leak_monitor_start_and_stop_states),
        CLOCK_TEST(test_leak_stop_from_own_listener_is_estate),
        CLOCK_TEST(test_leak_start_stop_1000_times_leaks_nothing),
        CLOCK_TEST(test_leak_concurrent_checks_alert_one_at_a_time_in_order),
        CLOCK_TEST(test_leak_concurrent_tracking_loses_no_count),
        CLOCK_TEST(test_leak_concurrent_instances_of_one_pair_lose_no_count),
        CLOCK_TEST(test_leak_allocation_failures_leak_nothing),
        CLOCK_TEST(test_leak_allocation_failures_with_a_listener_leak_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
