/* The health checker: concurrent runs, timeouts, aggregation, single
 * flight, caching, flap damping, tags, the listener, watch, the JSON
 * report, bad input and allocation failure. Built-in checks are in
 * test_health_checks.c. */
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "puffinflow/health.h"
#include "test.h"

#include "health_impl.h"
#include "health_json_parse.h"

/* ---- helpers ---------------------------------------------------------- */

static int64_t
real_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS_PER_SEC + ts.tv_nsec;
}

/* A check that reports what its fixed_t says, counting its calls. */
typedef struct fixed {
    pf_health_status_t status;
    const char *msg;
    int rc;
    atomic_int calls;
} fixed_t;

static int
fixed_check(pf_health_result_t *res, void *arg)
{
    fixed_t *f = arg;

    atomic_fetch_add(&f->calls, 1);
    res->status = f->status;
    if (f->msg != NULL) {
        snprintf(res->message, sizeof(res->message), "%s", f->msg);
    }
    return f->rc;
}

/* A check that blocks until the test opens its gate. */
typedef struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool open;
    atomic_int entered;
    atomic_int left;
    pf_health_status_t status;
} gate_t;

static void
gate_init(gate_t *g)
{
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->open = false;
    atomic_init(&g->entered, 0);
    atomic_init(&g->left, 0);
    g->status = PF_HEALTHY;
}

static void
gate_open(gate_t *g)
{
    pthread_mutex_lock(&g->mu);
    g->open = true;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static void
gate_destroy(gate_t *g)
{
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
}

static int
gate_check(pf_health_result_t *res, void *arg)
{
    gate_t *g = arg;

    atomic_fetch_add(&g->entered, 1);
    pthread_mutex_lock(&g->mu);
    while (!g->open) {
        pthread_cond_wait(&g->cv, &g->mu);
    }
    pthread_mutex_unlock(&g->mu);
    res->status = g->status;
    snprintf(res->message, sizeof(res->message), "gate passed");
    atomic_fetch_add(&g->left, 1);
    return 0;
}

/* check_all on a thread of its own, for the calls that block. */
typedef struct runner {
    pf_health_checker_t *hc;
    pf_health_report_t *report;
    int rc;
    pthread_t tid;
} runner_t;

static void *
runner_main(void *p)
{
    runner_t *r = p;

    r->rc = pf_health_check_all(r->hc, &r->report);
    return NULL;
}

static void
runner_start(runner_t *r, pf_health_checker_t *hc)
{
    r->hc = hc;
    r->report = NULL;
    r->rc = -1;
    assert_int_equal(pthread_create(&r->tid, NULL, runner_main, r), 0);
}

static void
runner_join(runner_t *r)
{
    pthread_join(r->tid, NULL);
    assert_pf_ok(r->rc);
}

/* check_all on a thread while g holds hc's one check, and the manual clock
 * moved past the check's timeout: the run ends in a timeout (its report is
 * freed) and the check is left hung until the test opens g. */
static void
run_into_timeout(pf_health_checker_t *hc, pf_clock_t *clock, gate_t *g,
                 int64_t timeout_ns)
{
    runner_t run;

    runner_start(&run, hc);
    pf_test_wait_for_flag(&g->entered, 1);
    pf_test_wait_for_waiters(clock, 1);
    pf_clock_manual_advance(clock, timeout_ns);
    runner_join(&run);
    pf_health_report_free(run.report);
}

/* Spin until hc has exactly `running` check threads alive (a safety net
 * of 30 s real time, never a timing assertion). */
static void
wait_running(pf_health_checker_t *hc, size_t running)
{
    int64_t give_up = real_ns() + 30 * NS_PER_SEC;
    pf_health_metrics_t m;

    for (;;) {
        pf_health_metrics(hc, &m);
        if (m.running == running) {
            return;
        }
        if (real_ns() > give_up) {
            fail_msg("gave up waiting for %zu running checks (%zu)", running,
                     m.running);
        }
        sched_yield();
    }
}

static void
set_flag(void *arg)
{
    atomic_store((atomic_int *)arg, 1);
}

static pf_health_checker_t *
new_checker(pf_clock_t *clock)
{
    pf_health_config_t cfg;
    pf_health_checker_t *hc = NULL;

    pf_health_config_init(&cfg);
    cfg.clock = clock;
    assert_pf_ok(pf_health_checker_new(&cfg, &hc));
    return hc;
}

static pf_health_check_opts_t
opts_with(double timeout, bool critical)
{
    pf_health_check_opts_t o;

    pf_health_check_opts_init(&o);
    o.timeout = timeout;
    o.critical = critical;
    return o;
}

/* ---- defaults and basics ---------------------------------------------- */

static void
test_health_config_init_sets_documented_defaults(void **state)
{
    pf_health_config_t cfg;
    pf_health_check_opts_t o;

    (void)state;
    pf_health_config_init(&cfg);
    assert_string_equal(cfg.name, "health");
    assert_true(cfg.cache_ttl == 0.0);
    assert_null(cfg.listener);
    assert_null(cfg.clock);
    pf_health_check_opts_init(&o);
    assert_true(o.timeout == 5.0);
    assert_true(o.critical);
    assert_int_equal(o.failures_before_unhealthy, 1);
    assert_int_equal(o.tags_len, 0);
    assert_string_equal(pf_health_status_name(PF_HEALTHY), "healthy");
    assert_string_equal(pf_health_status_name(PF_DEGRADED), "degraded");
    assert_string_equal(pf_health_status_name(PF_UNHEALTHY), "unhealthy");
    assert_string_equal(pf_health_status_name((pf_health_status_t)7),
                        "unknown");
}

static void
test_health_checker_name_is_a_copy(void **state)
{
    pf_health_config_t cfg;
    pf_health_checker_t *hc;
    char name[] = "orders";

    pf_health_config_init(&cfg);
    cfg.name = name;
    cfg.clock = *state;
    assert_pf_ok(pf_health_checker_new(&cfg, &hc));
    name[0] = 'X';
    assert_string_equal(pf_health_checker_name(hc), "orders");
    assert_int_equal(pf_health_check_count(hc), 0);
    pf_health_checker_free(hc);
    pf_health_checker_free(NULL);
    assert_null(pf_health_checker_name(NULL));
}

static void
test_health_check_all_reports_each_check_when_all_pass(void **state)
{
    pf_health_checker_t *hc = new_checker(*state);
    fixed_t db = {PF_HEALTHY, "Database connection is active", 0, 0};
    fixed_t api = {PF_HEALTHY, "API status: 200", 0, 0};
    pf_health_report_t *r;
    const pf_health_entry_t *e;

    assert_pf_ok(pf_health_add_check(hc, "database", fixed_check, &db));
    assert_pf_ok(pf_health_add_check(hc, "external_api", fixed_check, &api));
    assert_int_equal(pf_health_check_count(hc), 2);
    assert_pf_ok(pf_health_check_all(hc, &r));
    assert_true(pf_health_report_is_healthy(r));
    assert_int_equal(pf_health_report_status(r), PF_HEALTHY);
    assert_int_equal(pf_health_report_count(r), 2);
    assert_int_equal(pf_health_report_failed_count(r), 0);
    e = pf_health_report_entry(r, 0);
    assert_string_equal(e->name, "database");
    assert_string_equal(e->message, "Database connection is active");
    assert_int_equal(e->status, PF_HEALTHY);
    assert_true(e->critical);
    assert_false(e->cached);
    assert_false(e->timed_out);
    assert_int_equal(e->runs, 1);
    assert_true(e->time_ns > 0);
    assert_true(e->duration >= 0.0);
    e = pf_health_report_find(r, "external_api");
    assert_non_null(e);
    assert_string_equal(e->message, "API status: 200");
    assert_null(pf_health_report_find(r, "nope"));
    assert_null(pf_health_report_entry(r, 2));
    assert_null(pf_health_report_failed(r, 0));
    assert_true(pf_health_report_time_ns(r) > 0);
    assert_int_equal(atomic_load(&db.calls), 1);
    assert_int_equal(atomic_load(&api.calls), 1);
    pf_health_report_free(r);
    pf_health_checker_free(hc);
}

static void
test_health_check_all_with_no_checks_is_healthy(void **state)
{
    pf_health_checker_t *hc = new_checker(*state);
    pf_health_report_t *r;

    assert_pf_ok(pf_health_check_all(hc, &r));
    assert_int_equal(pf_health_report_count(r), 0);
    assert_int_equal(pf_health_report_status(r), PF_HEALTHY);
    assert_true(pf_health_report_is_healthy(r));
    pf_health_report_free(r);
    pf_health_checker_free(hc);
}

/* ---- concurrency ------------------------------------------------------ */

#define RENDEZVOUS_N 8

/* Each check counts itself started, then waits until every check has
 * started before it finishes. Run one after another, the first would wait
 * for the others forever: it gives up after 30 s of real time (a safety
 * net) and records a violation. */
typedef struct rendezvous {
    atomic_int started;
    atomic_int finished;
    atomic_int violations;
} rendezvous_t;

static int
rendezvous_check(pf_health_result_t *res, void *arg)
{
    rendezvous_t *rv = arg;
    int64_t give_up = real_ns() + 30 * NS_PER_SEC;

    atomic_fetch_add(&rv->started, 1);
    while (atomic_load(&rv->started) < RENDEZVOUS_N) {
        if (real_ns() > give_up) {
            atomic_fetch_add(&rv->violations, 1);
            break;
        }
        sched_yield();
    }
    if (atomic_load(&rv->finished) > 0 &&
        atomic_load(&rv->started) < RENDEZVOUS_N) {
        atomic_fetch_add(&rv->violations, 1);
    }
    atomic_fetch_add(&rv->finished, 1);
    res->status = PF_HEALTHY;
    return 0;
}

static void
test_health_check_all_starts_every_check_before_any_finishes(void **state)
{
    pf_health_checker_t *hc;
    rendezvous_t rv;
    pf_health_report_t *r;
    pf_health_check_opts_t o = opts_with(INFINITY, true);
    char name[16];
    int i;

    (void)state;
    hc = new_checker(NULL); /* system clock: the checks rendezvous for real */
    atomic_init(&rv.started, 0);
    atomic_init(&rv.finished, 0);
    atomic_init(&rv.violations, 0);
    for (i = 0; i < RENDEZVOUS_N; i++) {
        snprintf(name, sizeof(name), "c%d", i);
        assert_pf_ok(pf_health_add_check_ex(hc, name, rendezvous_check, &rv,
                                            &o));
    }
    assert_pf_ok(pf_health_check_all(hc, &r));
    assert_int_equal(atomic_load(&rv.violations), 0);
    assert_int_equal(atomic_load(&rv.finished), RENDEZVOUS_N);
    assert_int_equal(pf_health_report_count(r), RENDEZVOUS_N);
    assert_int_equal(pf_health_report_status(r), PF_HEALTHY);
    pf_health_report_free(r);
    pf_health_checker_free(hc);
}

/* ---- timeouts --------------------------------------------------------- */

static void
test_health_hung_check_times_out_without_holding_the_report(void **state)
{
    pf_clock_t *clock = *state;
    pf_health_checker_t *hc = new_checker(clock);
    pf_health_check_opts_t o = opts_with(2.0, true);
    fixed_t quick = {PF_HEALTHY, "fine", 0, 0};
    gate_t g;
    runner_t run;
    const pf_health_entry_t *e;
    pf_health_metrics_t m;

    gate_init(&g);
    assert_pf_ok(pf_health_add_check_ex(hc, "hangs", gate_check, &g, &o));
    assert_pf_ok(pf_health_add_check_ex(hc, "quick", fixed_check, &quick,
                                        &o));
    runner_start(&run, hc);
    pf_test_wait_for_flag(&g.entered, 1);
    wait_running(hc, 1);              /* quick has settled */
    pf_test_wait_for_waiters(clock, 1); /* the caller waits for "hangs" */
    pf_clock_manual_advance(clock, 2 * NS_PER_SEC);
    runner_join(&run);

    assert_int_equal(atomic_load(&g.left), 0); /* still hung */
    assert_int_equal(pf_health_report_status(run.report), PF_UNHEALTHY);
    assert_false(pf_health_report_is_healthy(run.report));
    e = pf_health_report_find(run.report, "hangs");
    assert_int_equal(e->status, PF_UNHEALTHY);
    assert_true(e->timed_out);
    assert_string_equal(e->message, "timed out after 2 s");
    assert_true(e->duration == 2.0);
    e = pf_health_report_find(run.report, "quick");
    assert_int_equal(e->status, PF_HEALTHY);
    assert_int_equal(pf_health_report_failed_count(run.report), 1);
    assert_string_equal(pf_health_report_failed(run.report, 0), "hangs");
    pf_health_report_free(run.report);
    pf_health_metrics(hc, &m);
    assert_int_equal(m.timeouts, 1);
    assert_int_equal(m.running, 1);
    assert_int_equal(m.hung, 1);

    gate_open(&g);
    wait_running(hc, 0);
    pf_health_checker_free(hc);
    gate_destroy(&g);
}

static void
test_health_hung_check_is_not_started_again_while_it_runs(void **state)
{
    pf_clock_t *clock = *state;
    pf_health_checker_t *hc = new_checker(clock);
    pf_health_check_opts_t o = opts_with(1.0, true);
    gate_t g;
    pf_health_report_t *r;
    const pf_health_entry_t *e;
    pf_health_metrics_t m;

    gate_init(&g);
    assert_pf_ok(pf_health_add_check_ex(hc, "hangs", gate_check, &g, &o));
    run_into_timeout(hc, clock, &g, NS_PER_SEC);

    /* Asked again while the first run still hangs: answered at once, as
     * another timeout, and no second thread is started. */
    assert_pf_ok(pf_health_check_all(hc, &r));
    e = pf_health_report_find(r, "hangs");
    assert_int_equal(e->status, PF_UNHEALTHY);
    assert_true(e->timed_out);
    assert_string_equal(e->message, "timed out after 1 s (still running)");
    assert_int_equal(e->timeouts, 2);
    pf_health_report_free(r);
    assert_int_equal(atomic_load(&g.entered), 1);
    pf_health_metrics(hc, &m);
    assert_int_equal(m.runs, 1);

    /* Once it returns, the next run starts a new thread. */
    gate_open(&g);
    wait_running(hc, 0);
    assert_pf_ok(pf_health_check_all(hc, &r));
    e = pf_health_report_find(r, "hangs");
    assert_int_equal(e->status, PF_HEALTHY);
    assert_string_equal(e->message, "gate passed");
    assert_int_equal(atomic_load(&g.entered), 2);
    pf_health_report_free(r);
    pf_health_checker_free(hc);
    gate_destroy(&g);
}

static void
test_health_late_result_is_dropped_after_a_timeout(void **state)
{
    pf_clock_t *clock = *state;
    pf_health_checker_t *hc = new_checker(clock);
    pf_health_check_opts_t o = opts_with(1.0, true);
    gate_t g;
    pf_health_report_t *r;

    gate_init(&g);
    assert_pf_ok(pf_health_add_check_ex(hc, "slow", gate_check, &g, &o));
    run_into_timeout(hc, clock, &g, NS_PER_SEC);
    gate_open(&g);
    wait_running(hc, 0);
    /* The healthy result that came in late did not replace the timeout. */
    assert_int_equal(pf_health_checker_status(hc), PF_UNHEALTHY);
    assert_pf_ok(pf_health_snapshot(hc, &r));
    assert_true(pf_health_report_entry(r, 0)->timed_out);
    assert_int_equal(pf_health_report_entry(r, 0)->runs, 1);
    pf_health_report_free(r);
    pf_health_checker_free(hc);
    gate_destroy(&g);
}

static atomic_int g_events_after_free;

static void
count_event(const pf_health_event_t *ev, void *arg)
{
    (void)ev;
    (void)arg;
    atomic_fetch_add(&g_events_after_free, 1);
}

static void
test_health_free_while_a_check_hangs_cleans_up_when_it_returns(void **state)
{
    pf_clock_t *clock = *state;
    pf_health_config_t cfg;
    pf_health_checker_t *hc;
    pf_health_check_opts_t o = opts_with(1.0, true);
    atomic_int destroyed = 0;
    gate_t g;
    int before;

    gate_init(&g);
    pf_health_config_init(&cfg);
    cfg.clock = clock;
    cfg.listener = count_event;
    assert_pf_ok(pf_health_checker_new(&cfg, &hc));
    g.status = PF_DEGRADED; /* would be a change, were it not dropped */
    assert_pf_ok(pf_health_add_check_ex(hc, "hangs", gate_check, &g, &o));
    run_into_timeout(hc, clock, &g, NS_PER_SEC);

    pf__health_on_destroy(hc, set_flag, &destroyed);
    pf_health_checker_free(hc); /* the check still hangs */
    assert_int_equal(atomic_load(&destroyed), 0);
    before = atomic_load(&g_events_after_free);
    gate_open(&g);
    pf_test_wait_for_flag(&destroyed, 1); /* its thread freed the rest */
    assert_int_equal(atomic_load(&g.left), 1);
    assert_int_equal(atomic_load(&g_events_after_free), before);
    gate_destroy(&g);
}

/* ---- aggregation ------------------------------------------------------ */

typedef struct agg_case {
    pf_health_status_t a;   /* a critical check */
    pf_health_status_t b;   /* a non-critical check */
    pf_health_status_t overall;
    bool healthy;
    size_t failed;
} agg_case_t;

static void
test_health_overall_status_follows_the_aggregation_table(void **state)
{
    static const agg_case_t table[] = {
        {PF_HEALTHY, PF_HEALTHY, PF_HEALTHY, true, 0},
        {PF_DEGRADED, PF_HEALTHY, PF_DEGRADED, true, 0},
        {PF_UNHEALTHY, PF_HEALTHY, PF_UNHEALTHY, false, 1},
        {PF_HEALTHY, PF_DEGRADED, PF_DEGRADED, true, 0},
        {PF_HEALTHY, PF_UNHEALTHY, PF_DEGRADED, true, 1},
        {PF_DEGRADED, PF_UNHEALTHY, PF_DEGRADED, true, 1},
        {PF_UNHEALTHY, PF_UNHEALTHY, PF_UNHEALTHY, false, 2},
        {PF_UNHEALTHY, PF_DEGRADED, PF_UNHEALTHY, false, 1},
    };
    size_t i;

    for (i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        pf_health_checker_t *hc = new_checker(*state);
        fixed_t a = {table[i].a, "a", 0, 0};
        fixed_t b = {table[i].b, "b", 0, 0};
        pf_health_check_opts_t crit = opts_with(5.0, true);
        pf_health_check_opts_t soft = opts_with(5.0, false);
        pf_health_report_t *r;

        assert_pf_ok(pf_health_add_check_ex(hc, "a", fixed_check, &a, &crit));
        assert_pf_ok(pf_health_add_check_ex(hc, "b", fixed_check, &b, &soft));
        assert_pf_ok(pf_health_check_all(hc, &r));
        if (pf_health_report_status(r) != table[i].overall ||
            pf_health_report_is_healthy(r) != table[i].healthy ||
            pf_health_report_failed_count(r) != table[i].failed) {
            fail_msg("row %zu: overall %s healthy %d failed %zu", i,
                     pf_health_status_name(pf_health_report_status(r)),
                     pf_health_report_is_healthy(r),
                     pf_health_report_failed_count(r));
        }
        assert_int_equal(pf_health_checker_status(hc), table[i].overall);
        /* Each entry keeps its own status: only the overall is capped. */
        assert_int_equal(pf_health_report_find(r, "b")->status, table[i].b);
        assert_false(pf_health_report_find(r, "b")->critical);
        pf_health_report_free(r);
        pf_health_checker_free(hc);
    }
}

static void
test_health_check_returning_nonzero_is_unhealthy(void **state)
{
    pf_health_checker_t *hc = new_checker(*state);
    fixed_t quiet = {PF_HEALTHY, NULL, 7, 0};
    fixed_t said = {PF_HEALTHY, "db ping failed: refused", -1, 0};
    fixed_t bogus = {(pf_health_status_t)9, "?", 0, 0};
    pf_health_report_t *r;
    const pf_health_entry_t *e;

    assert_pf_ok(pf_health_add_check(hc, "quiet", fixed_check, &quiet));
    assert_pf_ok(pf_health_add_check(hc, "said", fixed_check, &said));
    assert_pf_ok(pf_health_add_check(hc, "bogus", fixed_check, &bogus));
    assert_pf_ok(pf_health_check_all(hc, &r));
    e = pf_health_report_find(r, "quiet");
    assert_int_equal(e->status, PF_UNHEALTHY);
    assert_string_equal(e->message, "check failed (returned 7)");
    e = pf_health_report_find(r, "said");
    assert_int_equal(e->status, PF_UNHEALTHY);
    assert_string_equal(e->message, "db ping failed: refused");
    e = pf_health_report_find(r, "bogus");
    assert_int_equal(e->status, PF_UNHEALTHY);
    assert_string_equal(e->message, "check gave an invalid status");
    assert_int_equal(pf_health_report_failed_count(r), 3);
    assert_string_equal(pf_health_report_failed(r, 0), "quiet");
    assert_string_equal(pf_health_report_failed(r, 2), "bogus");
    pf_health_report_free(r);
    pf_health_checker_free(hc);
}

/* ---- single flight and cache ------------------------------------------ */

static void
test_health_concurrent_callers_share_one_run(void **state)
{
    pf_clock_t *clock = *state;
    pf_health_checker_t *hc = new_checker(clock);
    gate_t g;
    runner_t one;
    runner_t two;
    pf_health_metrics_t m;

    gate_init(&g);
    g.status = PF_DEGRADED;
    assert_pf_ok(pf_health_add_check(hc, "dep", gate_check, &g));
    runner_start(&one, hc);
    pf_test_wait_for_flag(&g.entered, 1);
    runner_start(&two, hc);
    pf_test_wait_for_waiters(clock, 2); /* both wait for the one run */
    gate_open(&g);
    runner_join(&one);
    runner_join(&two);
    assert_int_equal(atomic_load(&g.entered), 1);
    assert_int_equal(pf_health_report_status(one.report), PF_DEGRADED);
    assert_int_equal(pf_health_report_status(two.report), PF_DEGRADED);
    assert_int_equal(pf_health_report_entry(one.report, 0)->runs, 1);
    assert_int_equal(pf_health_report_entry(two.report, 0)->runs, 1);
    pf_health_metrics(hc, &m);
    assert_int_equal(m.runs, 1);
    assert_int_equal(m.shared, 1);
    assert_int_equal(m.reports, 2);
    pf_health_report_free(one.report);
    pf_health_report_free(two.report);
    wait_running(hc, 0);
    pf_health_checker_free(hc);
    gate_destroy(&g);
}

static void
test_health_cache_reuses_a_result_until_the_ttl_passes(void **state)
{
    pf_clock_t *clock = *state;
    pf_health_config_t cfg;
    pf_health_checker_t *hc;
    fixed_t f = {PF_HEALTHY, "ok", 0, 0};
    pf_health_report_t *r;
    pf_health_metrics_t m;

    pf_health_config_init(&cfg);
    cfg.clock = clock;
    cfg.cache_ttl = 10.0;
    assert_pf_ok(pf_health_checker_new(&cfg, &hc));
    assert_pf_ok(pf_health_add_check(hc, "dep", fixed_check, &f));
    assert_pf_ok(pf_health_check_all(hc, &r));
    assert_false(pf_health_report_entry(r, 0)->cached);
    pf_health_report_free(r);

    f.status = PF_UNHEALTHY;
    pf_clock_manual_advance(clock, 10 * NS_PER_SEC - 1);
    assert_pf_ok(pf_health_check_all(hc, &r));
    assert_true(pf_health_report_entry(r, 0)->cached);
    assert_int_equal(pf_health_report_status(r), PF_HEALTHY);
    assert_int_equal(atomic_load(&f.calls), 1);
    pf_health_report_free(r);

    pf_clock_manual_advance(clock, 1);
    assert_pf_ok(pf_health_check_all(hc, &r));
    assert_false(pf_health_report_entry(r, 0)->cached);
    assert_int_equal(pf_health_report_status(r), PF_UNHEALTHY);
    assert_int_equal(atomic_load(&f.calls), 2);
    pf_health_report_free(r);
    pf_health_metrics(hc, &m);
    assert_int_equal(m.cache_hits, 1);
    assert_int_equal(m.runs, 2);
    pf_health_checker_free(hc);
}

/* ---- flap damping ----------------------------------------------------- */

static pf_health_status_t
run_status(pf_health_checker_t *hc, const char *name, unsigned *consecutive)
{
    pf_health_report_t *r;
    const pf_health_entry_t *e;
    pf_health_status_t s;

    assert_pf_ok(pf_health_check_one(hc, name, &r));
    e = pf_health_report_entry(r, 0);
    s = e->status;
    if (consecutive != NULL) {
        *consecutive = e->consecutive_failures;
    }
    pf_health_report_free(r);
    return s;
}

static void
test_health_damped_check_needs_n_failures_in_a_row(void **state)
{
    pf_health_checker_t *hc = new_checker(*state);
    pf_health_check_opts_t o = opts_with(5.0, true);
    fixed_t f = {PF_UNHEALTHY, "down", 0, 0};
    unsigned n;

    o.failures_before_unhealthy = 3;
    assert_pf_ok(pf_health_add_check_ex(hc, "flaky", fixed_check, &f, &o));
    assert_int_equal(run_status(hc, "flaky", &n), PF_HEALTHY);
    assert_int_equal(n, 1);
    assert_int_equal(run_status(hc, "flaky", &n), PF_HEALTHY);
    assert_int_equal(n, 2);
    assert_int_equal(run_status(hc, "flaky", &n), PF_UNHEALTHY);
    assert_int_equal(n, 3);
    assert_int_equal(run_status(hc, "flaky", &n), PF_UNHEALTHY);
    assert_int_equal(n, 4);

    f.status = PF_HEALTHY; /* one success resets the count */
    assert_int_equal(run_status(hc, "flaky", &n), PF_HEALTHY);
    assert_int_equal(n, 0);
    f.status = PF_UNHEALTHY;
    assert_int_equal(run_status(hc, "flaky", NULL), PF_HEALTHY);
    assert_int_equal(run_status(hc, "flaky", NULL), PF_HEALTHY);
    f.status = PF_DEGRADED; /* degraded is no failure: resets too */
    assert_int_equal(run_status(hc, "flaky", &n), PF_DEGRADED);
    assert_int_equal(n, 0);
    f.status = PF_UNHEALTHY; /* a damped failure keeps the last status */
    assert_int_equal(run_status(hc, "flaky", NULL), PF_DEGRADED);
    pf_health_checker_free(hc);
}

/* ---- tags, one, remove, snapshot -------------------------------------- */

static void
test_health_check_tagged_runs_only_that_group(void **state)
{
    pf_health_checker_t *hc = new_checker(*state);
    const char *ready_tags[] = {"readiness"};
    const char *both_tags[] = {"liveness", "readiness"};
    pf_health_check_opts_t ready = opts_with(5.0, true);
    pf_health_check_opts_t both = opts_with(5.0, true);
    fixed_t db = {PF_UNHEALTHY, "down", 0, 0};
    fixed_t loop = {PF_HEALTHY, "ok", 0, 0};
    fixed_t other = {PF_HEALTHY, "ok", 0, 0};
    pf_health_report_t *r;

    ready.tags = ready_tags;
    ready.tags_len = 1;
    both.tags = both_tags;
    both.tags_len = 2;
    assert_pf_ok(pf_health_add_check_ex(hc, "db", fixed_check, &db, &ready));
    assert_pf_ok(pf_health_add_check_ex(hc, "loop", fixed_check, &loop,
                                        &both));
    assert_pf_ok(pf_health_add_check(hc, "other", fixed_check, &other));

    assert_pf_ok(pf_health_check_tagged(hc, "liveness", &r));
    assert_int_equal(pf_health_report_count(r), 1);
    assert_string_equal(pf_health_report_entry(r, 0)->name, "loop");
    assert_int_equal(pf_health_report_status(r), PF_HEALTHY);
    pf_health_report_free(r);

    assert_pf_ok(pf_health_check_tagged(hc, "readiness", &r));
    assert_int_equal(pf_health_report_count(r), 2);
    assert_int_equal(pf_health_report_status(r), PF_UNHEALTHY);
    pf_health_report_free(r);
    assert_int_equal(atomic_load(&other.calls), 0);

    assert_pf_ok(pf_health_check_tagged(hc, "startup", &r));
    assert_int_equal(pf_health_report_count(r), 0);
    assert_int_equal(pf_health_report_status(r), PF_HEALTHY);
    pf_health_report_free(r);

    assert_pf_ok(pf_health_check_one(hc, "other", &r));
    assert_int_equal(pf_health_report_count(r), 1);
    pf_health_report_free(r);
    assert_pf_err(pf_health_check_one(hc, "missing", &r), PF_ENOTFOUND);
    pf_health_checker_free(hc);
}

static void
test_health_remove_check_drops_it_from_the_overall_status(void **state)
{
    pf_health_checker_t *hc = new_checker(*state);
    fixed_t bad = {PF_UNHEALTHY, "down", 0, 0};
    fixed_t good = {PF_HEALTHY, "up", 0, 0};
    pf_health_report_t *r;

    assert_pf_ok(pf_health_add_check(hc, "bad", fixed_check, &bad));
    assert_pf_ok(pf_health_add_check(hc, "good", fixed_check, &good));
    assert_pf_ok(pf_health_check_all(hc, &r));
    pf_health_report_free(r);
    assert_int_equal(pf_health_checker_status(hc), PF_UNHEALTHY);
    assert_pf_ok(pf_health_remove_check(hc, "bad"));
    assert_int_equal(pf_health_checker_status(hc), PF_HEALTHY);
    assert_int_equal(pf_health_check_count(hc), 1);
    assert_pf_err(pf_health_remove_check(hc, "bad"), PF_ENOTFOUND);
    /* The name is free again. */
    assert_pf_ok(pf_health_add_check(hc, "bad", fixed_check, &good));
    assert_pf_ok(pf_health_check_all(hc, &r));
    assert_string_equal(pf_health_report_entry(r, 1)->name, "bad");
    assert_int_equal(pf_health_report_entry(r, 1)->status, PF_HEALTHY);
    pf_health_report_free(r);
    pf_health_checker_free(hc);
}

static void
test_health_remove_during_a_run_still_reports_it(void **state)
{
    pf_clock_t *clock = *state;
    pf_health_checker_t *hc = new_checker(clock);
    gate_t g;
    runner_t run;

    gate_init(&g);
    g.status = PF_UNHEALTHY;
    assert_pf_ok(pf_health_add_check(hc, "going", gate_check, &g));
    runner_start(&run, hc);
    pf_test_wait_for_waiters(clock, 1);
    assert_pf_ok(pf_health_remove_check(hc, "going"));
    gate_open(&g);
    runner_join(&run);
    assert_int_equal(pf_health_report_count(run.report), 1);
    assert_int_equal(pf_health_report_entry(run.report, 0)->status,
                     PF_UNHEALTHY);
    assert_int_equal(pf_health_checker_status(hc), PF_HEALTHY);
    pf_health_report_free(run.report);
    wait_running(hc, 0);
    pf_health_checker_free(hc);
    gate_destroy(&g);
}

static void
test_health_snapshot_reports_latest_results_without_running(void **state)
{
    pf_health_checker_t *hc = new_checker(*state);
    fixed_t f = {PF_DEGRADED, "slow", 0, 0};
    pf_health_report_t *r;
    const pf_health_entry_t *e;

    assert_pf_ok(pf_health_add_check(hc, "dep", fixed_check, &f));
    assert_pf_ok(pf_health_snapshot(hc, &r));
    e = pf_health_report_entry(r, 0);
    assert_int_equal(e->runs, 0);
    assert_string_equal(e->message, "not checked yet");
    assert_int_equal(e->time_ns, 0);
    assert_int_equal(pf_health_report_status(r), PF_HEALTHY);
    pf_health_report_free(r);

    assert_pf_ok(pf_health_check_all(hc, &r));
    pf_health_report_free(r);
    assert_pf_ok(pf_health_snapshot(hc, &r));
    e = pf_health_report_entry(r, 0);
    assert_int_equal(e->runs, 1);
    assert_string_equal(e->message, "slow");
    assert_int_equal(pf_health_report_status(r), PF_DEGRADED);
    pf_health_report_free(r);
    assert_int_equal(atomic_load(&f.calls), 1);
    pf_health_checker_free(hc);
}

/* ---- listener --------------------------------------------------------- */

#define MAX_EVENTS 16

typedef struct recorder {
    pf_health_checker_t *hc;
    int n;
    int wrong_checker;
    char check[MAX_EVENTS][32];
    pf_health_status_t from[MAX_EVENTS];
    pf_health_status_t to[MAX_EVENTS];
    size_t count_seen[MAX_EVENTS];
} recorder_t;

static void
record_event(const pf_health_event_t *ev, void *arg)
{
    recorder_t *rec = arg;

    /* No cmocka assertions here: this may run on a check's thread. */
    if (strcmp(ev->checker, "svc") != 0) {
        rec->wrong_checker++;
    }
    if (rec->n < MAX_EVENTS) {
        snprintf(rec->check[rec->n], sizeof(rec->check[0]), "%s",
                 ev->check == NULL ? "(overall)" : ev->check);
        rec->from[rec->n] = ev->from;
        rec->to[rec->n] = ev->to;
        /* Takes the checker's lock: would deadlock if we were called
         * under it. */
        rec->count_seen[rec->n] = pf_health_check_count(rec->hc);
    }
    rec->n++;
}

static void
expect_event(const recorder_t *rec, int i, const char *check,
             pf_health_status_t from, pf_health_status_t to)
{
    assert_true(i < rec->n);
    assert_string_equal(rec->check[i], check);
    assert_int_equal(rec->from[i], from);
    assert_int_equal(rec->to[i], to);
}

static void
test_health_listener_hears_check_and_overall_changes_in_order(void **state)
{
    pf_health_config_t cfg;
    pf_health_checker_t *hc;
    recorder_t rec;
    fixed_t db = {PF_HEALTHY, "up", 0, 0};
    fixed_t cache = {PF_HEALTHY, "up", 0, 0};
    pf_health_check_opts_t soft = opts_with(5.0, false);
    pf_health_report_t *r;
    pf_health_metrics_t m;

    memset(&rec, 0, sizeof(rec));
    pf_health_config_init(&cfg);
    cfg.name = "svc";
    cfg.clock = *state;
    cfg.listener = record_event;
    cfg.listener_arg = &rec;
    assert_pf_ok(pf_health_checker_new(&cfg, &hc));
    rec.hc = hc;
    assert_pf_ok(pf_health_add_check(hc, "db", fixed_check, &db));
    assert_pf_ok(pf_health_add_check_ex(hc, "cache", fixed_check, &cache,
                                        &soft));
    assert_pf_ok(pf_health_check_all(hc, &r)); /* all healthy: no events */
    pf_health_report_free(r);
    assert_int_equal(rec.n, 0);

    db.status = PF_UNHEALTHY;
    assert_pf_ok(pf_health_check_one(hc, "db", &r));
    pf_health_report_free(r);
    assert_int_equal(rec.n, 2); /* delivered before check_one returned */
    expect_event(&rec, 0, "db", PF_HEALTHY, PF_UNHEALTHY);
    expect_event(&rec, 1, "(overall)", PF_HEALTHY, PF_UNHEALTHY);
    assert_int_equal(rec.count_seen[0], 2);

    db.status = PF_HEALTHY;
    cache.status = PF_UNHEALTHY;
    assert_pf_ok(pf_health_check_one(hc, "db", &r));
    pf_health_report_free(r);
    assert_pf_ok(pf_health_check_one(hc, "cache", &r));
    pf_health_report_free(r);
    assert_int_equal(rec.n, 6);
    expect_event(&rec, 2, "db", PF_UNHEALTHY, PF_HEALTHY);
    expect_event(&rec, 3, "(overall)", PF_UNHEALTHY, PF_HEALTHY);
    expect_event(&rec, 4, "cache", PF_HEALTHY, PF_UNHEALTHY);
    /* cache is not critical: the overall status goes to degraded only. */
    expect_event(&rec, 5, "(overall)", PF_HEALTHY, PF_DEGRADED);
    assert_pf_ok(pf_health_check_all(hc, &r)); /* no change: no event */
    pf_health_report_free(r);
    assert_int_equal(rec.n, 6);
    assert_int_equal(pf_health_checker_status(hc), PF_DEGRADED);

    assert_pf_ok(pf_health_remove_check(hc, "cache"));
    assert_int_equal(rec.n, 7);
    expect_event(&rec, 6, "(overall)", PF_DEGRADED, PF_HEALTHY);
    assert_int_equal(rec.wrong_checker, 0);
    pf_health_metrics(hc, &m);
    assert_int_equal(m.events, (uint64_t)rec.n);
    assert_int_equal(m.events_dropped, 0);
    pf_health_checker_free(hc);
}

/* Runs its checker from inside the listener: allowed, and must not
 * deadlock. */
typedef struct reentrant {
    pf_health_checker_t *hc;
    int calls;
    int nested_rc;
} reentrant_t;

static void
rerun_from_listener(const pf_health_event_t *ev, void *arg)
{
    reentrant_t *re = arg;
    pf_health_report_t *r;

    (void)ev;
    if (re->calls++ == 0) {
        re->nested_rc = pf_health_check_all(re->hc, &r);
        if (re->nested_rc == 0) {
            pf_health_report_free(r);
        }
    }
}

static void
test_health_listener_may_run_checks_itself(void **state)
{
    pf_health_config_t cfg;
    pf_health_checker_t *hc;
    reentrant_t re = {NULL, 0, -1};
    fixed_t f = {PF_UNHEALTHY, "down", 0, 0};
    pf_health_report_t *r;

    pf_health_config_init(&cfg);
    cfg.clock = *state;
    cfg.listener = rerun_from_listener;
    cfg.listener_arg = &re;
    assert_pf_ok(pf_health_checker_new(&cfg, &hc));
    re.hc = hc;
    assert_pf_ok(pf_health_add_check(hc, "dep", fixed_check, &f));
    assert_pf_ok(pf_health_check_all(hc, &r));
    pf_health_report_free(r);
    assert_pf_ok(re.nested_rc);
    assert_int_equal(re.calls, 2); /* the check's event and the overall */
    assert_int_equal(atomic_load(&f.calls), 2);
    pf_health_checker_free(hc);
}

/* ---- watch ------------------------------------------------------------ */

typedef struct watcher {
    pf_health_checker_t *hc;
    const char *check;
    pf_health_status_t current;
    double timeout;
    pf_health_status_t seen;
    int rc;
    pthread_t tid;
} watcher_t;

static void *
watcher_main(void *p)
{
    watcher_t *w = p;

    w->rc = pf_health_watch(w->hc, w->check, w->current, w->timeout,
                            &w->seen);
    return NULL;
}

static void
watcher_start(watcher_t *w, pf_health_checker_t *hc, const char *check,
              pf_health_status_t current, double timeout)
{
    w->hc = hc;
    w->check = check;
    w->current = current;
    w->timeout = timeout;
    w->seen = (pf_health_status_t)-1;
    w->rc = 1;
    assert_int_equal(pthread_create(&w->tid, NULL, watcher_main, w), 0);
}

static void
test_health_watch_returns_when_the_status_changes(void **state)
{
    pf_clock_t *clock = *state;
    pf_health_checker_t *hc = new_checker(clock);
    fixed_t f = {PF_DEGRADED, "slow", 0, 0};
    pf_health_report_t *r;
    watcher_t w;

    assert_pf_ok(pf_health_add_check(hc, "dep", fixed_check, &f));
    watcher_start(&w, hc, NULL, PF_HEALTHY, INFINITY);
    pf_test_wait_for_waiters(clock, 1);
    assert_pf_ok(pf_health_check_all(hc, &r));
    pf_health_report_free(r);
    pthread_join(w.tid, NULL);
    assert_pf_ok(w.rc);
    assert_int_equal(w.seen, PF_DEGRADED);

    /* Per check, and already different: at once. */
    assert_pf_ok(pf_health_watch(hc, "dep", PF_HEALTHY, 0.0, &w.seen));
    assert_int_equal(w.seen, PF_DEGRADED);
    pf_health_checker_free(hc);
}

static void
test_health_watch_times_out_when_nothing_changes(void **state)
{
    pf_clock_t *clock = *state;
    pf_health_checker_t *hc = new_checker(clock);
    pf_health_status_t s;
    watcher_t w;

    assert_pf_err(pf_health_watch(hc, NULL, PF_HEALTHY, 0.0, &s),
                  PF_ETIMEDOUT);
    assert_int_equal(s, PF_HEALTHY);
    watcher_start(&w, hc, NULL, PF_HEALTHY, 5.0);
    pf_test_wait_for_waiters(clock, 1);
    pf_clock_manual_advance(clock, 5 * NS_PER_SEC - 1);
    assert_int_equal(pf_clock_manual_waiters(clock), 1); /* still waiting */
    pf_clock_manual_advance(clock, 1);
    pthread_join(w.tid, NULL);
    assert_pf_err(w.rc, PF_ETIMEDOUT);
    assert_int_equal(w.seen, PF_HEALTHY);
    pf_health_checker_free(hc);
}

static void
test_health_watch_of_a_removed_check_is_not_found(void **state)
{
    pf_clock_t *clock = *state;
    pf_health_checker_t *hc = new_checker(clock);
    fixed_t f = {PF_HEALTHY, "ok", 0, 0};
    pf_health_status_t s;
    watcher_t w;

    assert_pf_err(pf_health_watch(hc, "nope", PF_HEALTHY, 1.0, &s),
                  PF_ENOTFOUND);
    assert_pf_ok(pf_health_add_check(hc, "dep", fixed_check, &f));
    watcher_start(&w, hc, "dep", PF_HEALTHY, INFINITY);
    pf_test_wait_for_waiters(clock, 1);
    assert_pf_ok(pf_health_remove_check(hc, "dep"));
    pthread_join(w.tid, NULL);
    assert_pf_err(w.rc, PF_ENOTFOUND);
    pf_health_checker_free(hc);
}

/* ---- JSON ------------------------------------------------------------- */

static const char *const tricky_msg =
    "quote \" backslash \\ newline \n tab \t ctrl \x01 caf\xc3\xa9";

static void
test_health_report_json_parses_back_to_the_report(void **state)
{
    pf_health_config_t cfg;
    pf_health_checker_t *hc;
    fixed_t db = {PF_HEALTHY, NULL, 0, 0};
    fixed_t api = {PF_DEGRADED, "API status: 503", 0, 0};
    fixed_t cache = {PF_UNHEALTHY, "cache down", 0, 0};
    pf_health_check_opts_t soft = opts_with(5.0, false);
    pf_health_report_t *r;
    jc_value_t *root;
    const jc_value_t *checks;
    const jc_value_t *c;
    const jc_value_t *failed;
    char *json;

    db.msg = tricky_msg;
    pf_health_config_init(&cfg);
    cfg.name = "api \"v2\"";
    cfg.clock = *state;
    assert_pf_ok(pf_health_checker_new(&cfg, &hc));
    assert_pf_ok(pf_health_add_check(hc, "database", fixed_check, &db));
    assert_pf_ok(pf_health_add_check(hc, "external_api", fixed_check, &api));
    assert_pf_ok(pf_health_add_check_ex(hc, "ca\"che", fixed_check, &cache,
                                        &soft));
    assert_pf_ok(pf_health_check_all(hc, &r));
    assert_pf_ok(pf_health_report_json_alloc(r, &json));

    root = jc_parse(json);
    if (root == NULL) {
        fail_msg("not valid JSON: %s", json);
    }
    assert_int_equal(root->type, JC_OBJECT);
    assert_string_equal(jc_str(jc_get(root, "status")), "degraded");
    assert_int_equal(jc_get(root, "healthy")->type, JC_TRUE);
    assert_string_equal(jc_str(jc_get(root, "checker")), "api \"v2\"");
    assert_true(jc_is_iso_time(jc_str(jc_get(root, "time"))));
    assert_int_equal(jc_get(root, "duration_ms")->type, JC_NUMBER);
    checks = jc_get(root, "checks");
    assert_int_equal(checks->type, JC_OBJECT);
    assert_int_equal(checks->n, 3);
    assert_string_equal(checks->keys[0], "database");
    c = jc_get(checks, "database");
    assert_string_equal(jc_str(jc_get(c, "status")), "healthy");
    assert_string_equal(jc_str(jc_get(c, "message")), tricky_msg);
    assert_int_equal(jc_get(c, "critical")->type, JC_TRUE);
    assert_int_equal(jc_get(c, "cached")->type, JC_FALSE);
    assert_int_equal(jc_get(c, "timed_out")->type, JC_FALSE);
    assert_true(jc_get(c, "consecutive_failures")->num == 0.0);
    assert_true(jc_is_iso_time(jc_str(jc_get(c, "time"))));
    c = jc_get(checks, "external_api");
    assert_string_equal(jc_str(jc_get(c, "status")), "degraded");
    assert_string_equal(jc_str(jc_get(c, "message")), "API status: 503");
    c = jc_get(checks, "ca\"che");
    assert_non_null(c);
    assert_int_equal(c->type, JC_OBJECT);
    assert_string_equal(jc_str(jc_get(c, "status")), "unhealthy");
    assert_int_equal(jc_get(c, "critical")->type, JC_FALSE);
    assert_true(jc_get(c, "consecutive_failures")->num == 1.0);
    failed = jc_get(root, "failed_checks");
    assert_int_equal(failed->type, JC_ARRAY);
    assert_int_equal(failed->n, 1);
    assert_string_equal(jc_str(failed->items[0]), "ca\"che");
    jc_free(root);
    pf_free(json);
    pf_health_report_free(r);
    pf_health_checker_free(hc);
}

/* A message that is not UTF-8 (latin-1 "café") is cleaned, as the
 * registry's exports clean it: each bad byte becomes U+FFFD. */
static void
test_health_report_json_replaces_invalid_utf8_in_messages(void **state)
{
    pf_health_checker_t *hc = new_checker(*state);
    fixed_t f = {PF_DEGRADED, "caf\xe9 \xc3\xa9", 0, 0};
    pf_health_report_t *r;
    jc_value_t *root;
    char *json;

    assert_pf_ok(pf_health_add_check(hc, "menu", fixed_check, &f));
    assert_pf_ok(pf_health_check_all(hc, &r));
    assert_pf_ok(pf_health_report_json_alloc(r, &json));
    root = jc_parse(json);
    if (root == NULL) {
        fail_msg("not JSON: %s", json);
    }
    assert_string_equal(
        jc_str(jc_get(jc_get(jc_get(root, "checks"), "menu"), "message")),
        "caf\xef\xbf\xbd \xc3\xa9");
    jc_free(root);
    pf_free(json);
    pf_health_report_free(r);
    pf_health_checker_free(hc);
}

/* Check names that differ only in bytes that are not UTF-8 stay two keys
 * (the parser rejects a repeated key), written as docs/metrics.md says. */
static void
test_health_report_json_keeps_names_distinct(void **state)
{
    pf_health_config_t cfg;
    pf_health_checker_t *hc;
    fixed_t ok = {PF_HEALTHY, "ok", 0, 0};
    fixed_t bad = {PF_UNHEALTHY, "down", 0, 0};
    pf_health_report_t *r;
    jc_value_t *root;
    const jc_value_t *failed;
    char *json;

    pf_health_config_init(&cfg);
    cfg.name = "api\xff";
    cfg.clock = *state;
    assert_pf_ok(pf_health_checker_new(&cfg, &hc));
    assert_pf_ok(pf_health_add_check(hc, "db\xff", fixed_check, &ok));
    assert_pf_ok(pf_health_add_check(hc, "db\xfe", fixed_check, &bad));
    assert_pf_ok(pf_health_check_all(hc, &r));
    assert_pf_ok(pf_health_report_json_alloc(r, &json));
    root = jc_parse(json);
    if (root == NULL) {
        fail_msg("not JSON: %s", json);
    }
    assert_string_equal(jc_str(jc_get(root, "checker")), "api\\xFF");
    assert_non_null(jc_get(jc_get(root, "checks"), "db\\xFF"));
    assert_non_null(jc_get(jc_get(root, "checks"), "db\\xFE"));
    failed = jc_get(root, "failed_checks");
    assert_int_equal(failed->n, 1);
    assert_string_equal(jc_str(failed->items[0]), "db\\xFE");
    jc_free(root);
    pf_free(json);
    pf_health_report_free(r);
    pf_health_checker_free(hc);
}

/* A check that fills message by hand, with no NUL, a 2-byte letter
 * straddling the 255-byte limit. */
static int
hand_filled_check(pf_health_result_t *res, void *arg)
{
    (void)arg;
    memset(res->message, 'x', sizeof(res->message));
    memcpy(res->message + 254, "\xc3\xa9", 2);
    return 0;
}

static void
test_health_hand_filled_message_is_cut_at_a_character_boundary(void **state)
{
    pf_health_checker_t *hc = new_checker(*state);
    pf_health_report_t *r;
    const pf_health_entry_t *e;
    jc_value_t *root;
    char *json;

    assert_pf_ok(pf_health_add_check(hc, "hand", hand_filled_check, NULL));
    assert_pf_ok(pf_health_check_all(hc, &r));
    e = pf_health_report_entry(r, 0);
    assert_int_equal(strlen(e->message), 254);
    assert_pf_ok(pf_health_report_json_alloc(r, &json));
    root = jc_parse(json);
    if (root == NULL) {
        fail_msg("not JSON: %s", json);
    }
    jc_free(root);
    pf_free(json);
    pf_health_report_free(r);
    pf_health_checker_free(hc);
}

static void
test_health_report_json_into_a_buffer_says_what_it_needs(void **state)
{
    pf_health_checker_t *hc = new_checker(*state);
    fixed_t f = {PF_HEALTHY, "ok", 0, 0};
    pf_health_report_t *r;
    size_t needed = 0;
    size_t again = 0;
    char small[16];
    char *big;
    char *alloc;

    assert_pf_ok(pf_health_add_check(hc, "dep", fixed_check, &f));
    assert_pf_ok(pf_health_check_all(hc, &r));
    /* Measuring is not an error: the size alone, as snprintf gives. */
    assert_pf_ok(pf_health_report_json(r, NULL, 0, &needed));
    assert_true(needed > sizeof(small));
    assert_pf_err(pf_health_report_json(r, small, sizeof(small), &again),
                  PF_ERANGE);
    assert_int_equal(needed, again);
    big = malloc(needed);
    assert_non_null(big);
    again = 0;
    assert_pf_ok(pf_health_report_json(r, big, needed, &again));
    assert_int_equal(strlen(big) + 1, needed);
    assert_int_equal(again, needed);
    assert_pf_ok(pf_health_report_json_alloc(r, &alloc));
    assert_string_equal(big, alloc);
    assert_pf_err(pf_health_report_json(r, NULL, 4, NULL), PF_EINVAL);
    assert_pf_err(pf_health_report_json(NULL, big, needed, NULL), PF_EINVAL);
    assert_pf_err(pf_health_report_json_alloc(r, NULL), PF_EINVAL);
    pf_free(alloc);
    free(big);
    pf_health_report_free(r);
    pf_health_checker_free(hc);
}

static int
long_message_check(pf_health_result_t *res, void *arg)
{
    char msg[400];

    (void)arg;
    memset(msg, 'x', sizeof(msg));
    /* 254 x's then a 2-byte UTF-8 letter that cannot fit in 255 bytes. */
    memcpy(msg + 254, "\xc3\xa9 tail", 8);
    pf_health_result_set(res, PF_HEALTHY, "%s", msg);
    return 0;
}

static void
test_health_long_message_is_cut_at_a_character_boundary(void **state)
{
    pf_health_checker_t *hc = new_checker(*state);
    pf_health_report_t *r;
    const pf_health_entry_t *e;
    jc_value_t *root;
    char *json;

    assert_pf_ok(pf_health_add_check(hc, "long", long_message_check, NULL));
    assert_pf_ok(pf_health_check_all(hc, &r));
    e = pf_health_report_entry(r, 0);
    assert_int_equal(strlen(e->message), 254);
    assert_pf_ok(pf_health_report_json_alloc(r, &json));
    root = jc_parse(json);
    assert_non_null(root);
    jc_free(root);
    pf_free(json);
    pf_health_report_free(r);
    pf_health_checker_free(hc);
}

/* ---- bad input -------------------------------------------------------- */

static int
noop_check(pf_health_result_t *res, void *arg)
{
    (void)res;
    (void)arg;
    return 0;
}

static void
test_health_new_rejects_bad_config(void **state)
{
    pf_health_config_t cfg;
    pf_health_checker_t *hc = (pf_health_checker_t *)&cfg;

    (void)state;
    pf_health_config_init(&cfg);
    assert_pf_err(pf_health_checker_new(&cfg, NULL), PF_EINVAL);
    cfg.name = NULL;
    assert_pf_err(pf_health_checker_new(&cfg, &hc), PF_EINVAL);
    cfg.name = "";
    assert_pf_err(pf_health_checker_new(&cfg, &hc), PF_EINVAL);
    pf_health_config_init(&cfg);
    cfg.cache_ttl = -1.0;
    assert_pf_err(pf_health_checker_new(&cfg, &hc), PF_EINVAL);
    cfg.cache_ttl = NAN;
    assert_pf_err(pf_health_checker_new(&cfg, &hc), PF_EINVAL);
    assert_ptr_equal(hc, (pf_health_checker_t *)&cfg); /* untouched */
    assert_pf_ok(pf_health_checker_new(NULL, &hc)); /* NULL = defaults */
    assert_string_equal(pf_health_checker_name(hc), "health");
    pf_health_checker_free(hc);
}

static void
test_health_add_check_rejects_bad_input(void **state)
{
    pf_health_checker_t *hc = new_checker(*state);
    pf_health_check_opts_t o;
    const char *null_tag[] = {NULL};
    const char *empty_tag[] = {""};

    assert_pf_err(pf_health_add_check(NULL, "a", noop_check, NULL),
                  PF_EINVAL);
    assert_pf_err(pf_health_add_check(hc, NULL, noop_check, NULL), PF_EINVAL);
    assert_pf_err(pf_health_add_check(hc, "", noop_check, NULL), PF_EINVAL);
    assert_pf_err(pf_health_add_check(hc, "a", NULL, NULL), PF_EINVAL);
    assert_pf_ok(pf_health_add_check(hc, "a", noop_check, NULL));
    assert_pf_err(pf_health_add_check(hc, "a", noop_check, NULL), PF_EINVAL);

    pf_health_check_opts_init(&o);
    o.timeout = 1e-12; /* rounds to no time at all */
    assert_pf_err(pf_health_add_check_ex(hc, "b", noop_check, NULL, &o),
                  PF_EINVAL);
    o.timeout = -1.0;
    assert_pf_err(pf_health_add_check_ex(hc, "b", noop_check, NULL, &o),
                  PF_EINVAL);
    o.timeout = NAN;
    assert_pf_err(pf_health_add_check_ex(hc, "b", noop_check, NULL, &o),
                  PF_EINVAL);
    pf_health_check_opts_init(&o);
    o.failures_before_unhealthy = 0;
    assert_pf_err(pf_health_add_check_ex(hc, "b", noop_check, NULL, &o),
                  PF_EINVAL);
    pf_health_check_opts_init(&o);
    o.tags_len = 1;
    assert_pf_err(pf_health_add_check_ex(hc, "b", noop_check, NULL, &o),
                  PF_EINVAL);
    o.tags = null_tag;
    assert_pf_err(pf_health_add_check_ex(hc, "b", noop_check, NULL, &o),
                  PF_EINVAL);
    o.tags = empty_tag;
    assert_pf_err(pf_health_add_check_ex(hc, "b", noop_check, NULL, &o),
                  PF_EINVAL);
    assert_int_equal(pf_health_check_count(hc), 1); /* nothing half-added */
    pf_health_check_opts_init(&o);
    o.timeout = INFINITY; /* no timeout at all is allowed */
    assert_pf_ok(pf_health_add_check_ex(hc, "b", noop_check, NULL, &o));
    o.timeout = 0.0; /* 0 is "off": no timeout too */
    assert_pf_ok(pf_health_add_check_ex(hc, "c", noop_check, NULL, &o));
    pf_health_checker_free(hc);
}

static void
test_health_calls_reject_null_arguments(void **state)
{
    pf_health_checker_t *hc = new_checker(*state);
    pf_health_report_t *r = NULL;
    pf_health_status_t s;
    pf_health_metrics_t m;

    assert_pf_err(pf_health_check_all(NULL, &r), PF_EINVAL);
    assert_pf_err(pf_health_check_all(hc, NULL), PF_EINVAL);
    assert_pf_err(pf_health_check_tagged(hc, NULL, &r), PF_EINVAL);
    assert_pf_err(pf_health_check_tagged(hc, "", &r), PF_EINVAL);
    assert_pf_err(pf_health_check_one(hc, NULL, &r), PF_EINVAL);
    assert_pf_err(pf_health_snapshot(NULL, &r), PF_EINVAL);
    assert_pf_err(pf_health_remove_check(hc, NULL), PF_EINVAL);
    assert_pf_err(pf_health_remove_check(NULL, "a"), PF_EINVAL);
    assert_pf_err(pf_health_watch(NULL, NULL, PF_HEALTHY, 1.0, &s),
                  PF_EINVAL);
    assert_pf_err(pf_health_watch(hc, NULL, PF_HEALTHY, 1.0, NULL),
                  PF_EINVAL);
    assert_pf_err(pf_health_watch(hc, NULL, (pf_health_status_t)5, 1.0, &s),
                  PF_EINVAL);
    assert_pf_err(pf_health_watch(hc, NULL, PF_HEALTHY, -1.0, &s),
                  PF_EINVAL);
    assert_pf_err(pf_health_watch(hc, NULL, PF_HEALTHY, NAN, &s), PF_EINVAL);
    assert_null(r);
    assert_int_equal(pf_health_check_count(NULL), 0);
    assert_false(pf_health_report_is_healthy(NULL));
    assert_int_equal(pf_health_report_count(NULL), 0);
    assert_null(pf_health_report_entry(NULL, 0));
    assert_null(pf_health_report_find(NULL, "a"));
    assert_int_equal(pf_health_report_failed_count(NULL), 0);
    pf_health_report_free(NULL);
    pf_health_metrics(NULL, &m);
    assert_int_equal(m.checks, 0);
    pf_health_metrics(hc, NULL);
    pf_health_result_set(NULL, PF_HEALTHY, "x");
    pf_health_checker_free(hc);
}

/* ---- allocation failure ----------------------------------------------- */

static void
ignore_event(const pf_health_event_t *ev, void *arg)
{
    (void)ev;
    (void)arg;
}

static void
sweep_scenario(void *arg)
{
    pf_clock_t *clock = arg;
    pf_health_config_t cfg;
    pf_health_checker_t *hc;
    pf_health_check_opts_t o;
    const char *tags[] = {"readiness", "liveness"};
    static fixed_t good = {PF_HEALTHY, "ok", 0, 0};
    static fixed_t bad = {PF_UNHEALTHY, "down", 0, 0};
    pf_health_report_t *r;
    atomic_int destroyed = 0;
    char *json;
    int rc;

    pf_health_config_init(&cfg);
    cfg.clock = clock;
    cfg.listener = ignore_event;
    rc = pf_health_checker_new(&cfg, &hc);
    if (rc != 0) {
        assert_pf_err(rc, PF_ENOMEM);
        return;
    }
    pf__health_on_destroy(hc, set_flag, &destroyed);
    pf_health_check_opts_init(&o);
    o.tags = tags;
    o.tags_len = 2;
    rc = pf_health_add_check_ex(hc, "good", fixed_check, &good, &o);
    assert_true(rc == 0 || rc == PF_ENOMEM);
    rc = pf_health_add_check(hc, "bad", fixed_check, &bad);
    assert_true(rc == 0 || rc == PF_ENOMEM);
    rc = pf_health_check_all(hc, &r);
    assert_true(rc == 0 || rc == PF_ENOMEM);
    if (rc == 0) {
        rc = pf_health_report_json_alloc(r, &json);
        assert_true(rc == 0 || rc == PF_ENOMEM);
        if (rc == 0) {
            pf_free(json);
        }
        pf_health_report_free(r);
    }
    rc = pf_health_check_tagged(hc, "readiness", &r);
    assert_true(rc == 0 || rc == PF_ENOMEM);
    if (rc == 0) {
        pf_health_report_free(r);
    }
    rc = pf_health_snapshot(hc, &r);
    assert_true(rc == 0 || rc == PF_ENOMEM);
    if (rc == 0) {
        pf_health_report_free(r);
    }
    rc = pf_health_remove_check(hc, "bad");
    assert_true(rc == 0 || rc == PF_ENOTFOUND);
    pf_health_checker_free(hc);
    /* Check threads may still be finishing: wait for the last one. */
    pf_test_wait_for_flag(&destroyed, 1);
}

static void
test_health_survives_allocation_failure_everywhere(void **state)
{
    long runs = pf_test_alloc_sweep(sweep_scenario, *state);

    assert_true(runs > 10);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
#define T(name) CLOCK_TEST(name)
        T(test_health_config_init_sets_documented_defaults),
        T(test_health_checker_name_is_a_copy),
        T(test_health_check_all_reports_each_check_when_all_pass),
        T(test_health_check_all_with_no_checks_is_healthy),
        T(test_health_check_all_starts_every_check_before_any_finishes),
        T(test_health_hung_check_times_out_without_holding_the_report),
        T(test_health_hung_check_is_not_started_again_while_it_runs),
        T(test_health_late_result_is_dropped_after_a_timeout),
        T(test_health_free_while_a_check_hangs_cleans_up_when_it_returns),
        T(test_health_overall_status_follows_the_aggregation_table),
        T(test_health_check_returning_nonzero_is_unhealthy),
        T(test_health_concurrent_callers_share_one_run),
        T(test_health_cache_reuses_a_result_until_the_ttl_passes),
        T(test_health_damped_check_needs_n_failures_in_a_row),
        T(test_health_check_tagged_runs_only_that_group),
        T(test_health_remove_check_drops_it_from_the_overall_status),
        T(test_health_remove_during_a_run_still_reports_it),
        T(test_health_snapshot_reports_latest_results_without_running),
        T(test_health_listener_hears_check_and_overall_changes_in_order),
        T(test_health_listener_may_run_checks_itself),
        T(test_health_watch_returns_when_the_status_changes),
        T(test_health_watch_times_out_when_nothing_changes),
        T(test_health_watch_of_a_removed_check_is_not_found),
        T(test_health_report_json_parses_back_to_the_report),
        T(test_health_report_json_replaces_invalid_utf8_in_messages),
        T(test_health_report_json_keeps_names_distinct),
        T(test_health_hand_filled_message_is_cut_at_a_character_boundary),
        T(test_health_report_json_into_a_buffer_says_what_it_needs),
        T(test_health_long_message_is_cut_at_a_character_boundary),
        T(test_health_new_rejects_bad_config),
        T(test_health_add_check_rejects_bad_input),
        T(test_health_calls_reject_null_arguments),
        T(test_health_survives_allocation_failure_everywhere),
#undef T
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
