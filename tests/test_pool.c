/* The shared worker pool (src/base/pool.c) and the two users of it: timed
 * calls and health check runs. Thread reuse is shown by counting the
 * threads the pool started and the thread ids tasks ran on; growth, the
 * cap and shrinking by the pool's counts; shrinking on the manual clock.
 * Waits for another thread's progress spin on the pool's counts (with a
 * safety net), never sleep. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "puffinflow/health.h"
#include "puffinflow/timeout.h"
#include "pool.h"
#include "test.h"

/* ---- helpers ---------------------------------------------------------- */

typedef bool (*pool_pred_fn)(const pf__pool_stats_t *s, unsigned n);

/* Spin until pred(stats of p, n) holds; a hung test fails after 30 s of
 * real time (a safety net, not a timing assertion). */
static void
wait_pool(pf__pool_t *p, pool_pred_fn pred, unsigned n)
{
    time_t start = time(NULL);
    pf__pool_stats_t s;

    for (;;) {
        pf__pool_stats(p, &s);
        if (pred(&s, n)) {
            return;
        }
        if (time(NULL) - start > 30) {
            fail_msg("pool never got there: %u threads, %u busy, %u idle, "
                     "%u queued",
                     s.threads, s.busy, s.idle, s.queued);
        }
        sched_yield();
    }
}

static bool
busy_is(const pf__pool_stats_t *s, unsigned n)
{
    return s->busy == n;
}

static bool
idle_is(const pf__pool_stats_t *s, unsigned n)
{
    return s->idle == n;
}

static bool
threads_are(const pf__pool_stats_t *s, unsigned n)
{
    return s->threads == n;
}

static bool
queued_is(const pf__pool_stats_t *s, unsigned n)
{
    return s->queued == n;
}

/* A gate tasks block on until the test opens it. */
typedef struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool open;
} gate_t;

static void
gate_init(gate_t *g)
{
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->open = false;
}

static void
gate_pass(gate_t *g)
{
    pthread_mutex_lock(&g->mu);
    while (!g->open) {
        pthread_cond_wait(&g->cv, &g->mu);
    }
    pthread_mutex_unlock(&g->mu);
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

/* A task that counts its runs and notes its thread. */
typedef struct job {
    pf__pool_task_t task;
    gate_t *gate; /* NULL: returns at once */
    _Atomic int runs;
    _Atomic int done;
    pthread_t ran_on;
} job_t;

static void
job_main(void *arg)
{
    job_t *j = arg;

    j->ran_on = pthread_self();
    atomic_fetch_add(&j->runs, 1);
    if (j->gate != NULL) {
        gate_pass(j->gate);
    }
    atomic_store(&j->done, 1);
}

static pf__pool_t *
pool_with(unsigned max_threads, int64_t idle_ns, const pf_clock_t *clock)
{
    pf__pool_config_t cfg;
    pf__pool_t *p = NULL;

    pf__pool_config_init(&cfg);
    cfg.max_threads = max_threads;
    cfg.idle_ns = idle_ns;
    cfg.clock = clock;
    assert_pf_ok(pf__pool_new(&cfg, &p));
    return p;
}

/* ---- the pool --------------------------------------------------------- */

static void
test_pool_rejects_bad_input(void **state)
{
    pf__pool_config_t cfg;
    pf__pool_t *p = NULL;
    job_t j = {0};

    (void)state;
    pf__pool_config_init(&cfg);
    assert_int_equal(cfg.max_threads, 256);
    assert_true(cfg.idle_ns == 10 * NS_PER_SEC);
    assert_null(cfg.clock);
    assert_pf_err(pf__pool_new(&cfg, NULL), PF_EINVAL);
    cfg.max_threads = 0;
    assert_pf_err(pf__pool_new(&cfg, &p), PF_EINVAL);
    cfg.max_threads = 1;
    cfg.idle_ns = 0;
    assert_pf_err(pf__pool_new(&cfg, &p), PF_EINVAL);
    assert_null(p);
    assert_pf_ok(pf__pool_new(NULL, &p));
    assert_pf_err(pf__pool_submit(NULL, &j.task, job_main, &j), PF_EINVAL);
    assert_pf_err(pf__pool_submit(p, NULL, job_main, &j), PF_EINVAL);
    assert_pf_err(pf__pool_submit(p, &j.task, NULL, &j), PF_EINVAL);
    assert_false(pf__pool_cancel(NULL, &j.task));
    assert_false(pf__pool_cancel(p, NULL));
    pf__pool_free(p);
    pf__pool_free(NULL);
    pf__pool_free(pf__pool_default()); /* a no-op: never freed */
    assert_non_null(pf__pool_default());
}

static void
new_and_free(void *arg)
{
    pf__pool_t *p = NULL;
    int rc = pf__pool_new(NULL, &p);

    (void)arg;
    if (rc == PF_ENOMEM) {
        assert_null(p);
        return;
    }
    assert_pf_ok(rc);
    pf__pool_free(p);
}

static void
test_pool_new_fails_cleanly_without_memory(void **state)
{
    (void)state;
    assert_true(pf_test_alloc_sweep(new_and_free, NULL) >= 2);
}

/* One task at a time, each submitted once the thread is idle again: one
 * thread runs them all. */
static void
test_pool_reuses_an_idle_thread(void **state)
{
    pf__pool_t *p = pool_with(8, INT64_MAX, NULL);
    pf__pool_stats_t s;
    pthread_t first = pthread_self();
    int i;

    (void)state;
    for (i = 0; i < 1000; i++) {
        job_t j = {0};

        assert_pf_ok(pf__pool_submit(p, &j.task, job_main, &j));
        pf_test_wait_for_flag(&j.done, 1);
        wait_pool(p, idle_is, 1);
        if (i == 0) {
            first = j.ran_on;
        }
        assert_true(pthread_equal(first, j.ran_on));
        assert_int_equal(atomic_load(&j.runs), 1);
    }
    pf__pool_stats(p, &s);
    assert_int_equal(s.created, 1);
    assert_int_equal(s.started, 1000);
    assert_int_equal(s.threads, 1);
    pf__pool_free(p);
}

/* Busy threads make the pool grow, one thread per task while below the
 * cap; at the cap tasks queue, a queued task can be taken back (it never
 * runs), and the rest run when a thread is free. */
static void
test_pool_grows_when_busy_then_queues_at_the_cap(void **state)
{
    pf__pool_t *p = pool_with(3, INT64_MAX, NULL);
    pf__pool_stats_t s;
    gate_t gate;
    job_t held[3];
    job_t taken_back = {0};
    job_t later = {0};
    int i;

    (void)state;
    memset(held, 0, sizeof(held));
    gate_init(&gate);
    for (i = 0; i < 3; i++) {
        held[i].gate = &gate;
        assert_pf_ok(pf__pool_submit(p, &held[i].task, job_main, &held[i]));
        wait_pool(p, busy_is, (unsigned)i + 1);
    }
    assert_pf_ok(pf__pool_submit(p, &taken_back.task, job_main, &taken_back));
    assert_pf_ok(pf__pool_submit(p, &later.task, job_main, &later));
    pf__pool_stats(p, &s);
    assert_int_equal(s.created, 3);
    assert_int_equal(s.threads, 3);
    assert_int_equal(s.queued, 2);
    /* At the cap, so a starved task can be taken back too. */
    assert_true(pf__pool_cancel_starved(p, &taken_back.task));
    assert_false(pf__pool_cancel(p, &taken_back.task)); /* once only */
    gate_open(&gate);
    pf_test_wait_for_flag(&later.done, 1);
    for (i = 0; i < 3; i++) {
        pf_test_wait_for_flag(&held[i].done, 1);
        assert_false(pf__pool_cancel(p, &held[i].task)); /* started */
    }
    wait_pool(p, busy_is, 0);
    pf__pool_stats(p, &s);
    assert_int_equal(atomic_load(&taken_back.runs), 0);
    assert_int_equal(atomic_load(&later.runs), 1);
    assert_int_equal(s.created, 3);
    assert_int_equal(s.started, 4);
    assert_int_equal(s.cancelled, 1);
    assert_int_equal(s.peak_threads, 3);
    assert_int_equal(s.queued, 0);
    pf__pool_free(p);
    gate_destroy(&gate);
}

/* A task that never returns (until the end of the test) keeps one thread;
 * the pool grows past it and every later task runs on the other one. */
static void
test_pool_hung_task_does_not_starve_later_ones(void **state)
{
    pf__pool_t *p = pool_with(4, INT64_MAX, NULL);
    pf__pool_stats_t s;
    gate_t gate;
    job_t hung = {0};
    int i;

    (void)state;
    gate_init(&gate);
    hung.gate = &gate;
    assert_pf_ok(pf__pool_submit(p, &hung.task, job_main, &hung));
    pf_test_wait_for_flag(&hung.runs, 1); /* ran_on is written */
    for (i = 0; i < 100; i++) {
        job_t j = {0};

        assert_pf_ok(pf__pool_submit(p, &j.task, job_main, &j));
        pf_test_wait_for_flag(&j.done, 1);
        wait_pool(p, idle_is, 1);
        assert_false(pthread_equal(j.ran_on, hung.ran_on));
    }
    pf__pool_stats(p, &s);
    assert_int_equal(s.created, 2);
    assert_int_equal(s.busy, 1);
    /* Freed with the hung task still running: free does not wait for it,
     * and the thread frees the pool when the task returns. */
    pf__pool_free(p);
    gate_open(&gate);
    pf_test_wait_for_flag(&hung.done, 1);
    gate_destroy(&gate);
}

/* Idle threads end after idle_ns on the pool's clock: not a nanosecond
 * before. */
static void
test_pool_idle_threads_end_after_idle_time(void **state)
{
    pf_clock_t *clock = *state;
    pf__pool_t *p = pool_with(4, 5 * NS_PER_SEC, clock);
    pf__pool_stats_t s;
    gate_t gate;
    job_t j[2];
    job_t again = {0};
    int i;

    memset(j, 0, sizeof(j));
    gate_init(&gate);
    for (i = 0; i < 2; i++) {
        j[i].gate = &gate;
        assert_pf_ok(pf__pool_submit(p, &j[i].task, job_main, &j[i]));
        wait_pool(p, busy_is, (unsigned)i + 1);
    }
    gate_open(&gate);
    wait_pool(p, idle_is, 2);
    pf_test_wait_for_waiters(clock, 2);
    pf_clock_manual_advance(clock, 5 * NS_PER_SEC - 1);
    pf__pool_stats(p, &s);
    assert_int_equal(s.threads, 2);
    assert_int_equal(s.ended, 0);
    pf_clock_manual_advance(clock, 1);
    wait_pool(p, threads_are, 0);
    pf__pool_stats(p, &s);
    assert_int_equal(s.ended, 2);
    /* An empty pool starts a thread again when asked. */
    assert_pf_ok(pf__pool_submit(p, &again.task, job_main, &again));
    pf_test_wait_for_flag(&again.done, 1);
    pf__pool_stats(p, &s);
    assert_int_equal(s.created, 3);
    pf__pool_free(p);
    gate_destroy(&gate);
}

/* free ends the idle threads at once: it waits for them, whatever the
 * idle time. */
static void
test_pool_free_ends_idle_threads(void **state)
{
    pf__pool_t *p = pool_with(4, INT64_MAX, NULL);
    gate_t gate;
    job_t j[3];
    int i;

    (void)state;
    memset(j, 0, sizeof(j));
    gate_init(&gate);
    for (i = 0; i < 3; i++) {
        j[i].gate = &gate;
        assert_pf_ok(pf__pool_submit(p, &j[i].task, job_main, &j[i]));
        wait_pool(p, busy_is, (unsigned)i + 1);
    }
    gate_open(&gate);
    wait_pool(p, idle_is, 3);
    pf__pool_free(p); /* ASan: nothing left behind */
    gate_destroy(&gate);
}

typedef struct self_free {
    pf__pool_task_t task;
    pf__pool_t *pool;
    _Atomic int done;
} self_free_t;

static void
free_own_pool(void *arg)
{
    self_free_t *sf = arg;

    pf__pool_free(sf->pool);
    atomic_store(&sf->done, 1);
}

static void
test_pool_free_from_its_own_task(void **state)
{
    self_free_t sf = {0};

    (void)state;
    sf.pool = pool_with(2, INT64_MAX, NULL);
    assert_pf_ok(pf__pool_submit(sf.pool, &sf.task, free_own_pool, &sf));
    pf_test_wait_for_flag(&sf.done, 1);
}

/* Stress: several threads submit at once into a small pool, half of the
 * tasks raced by a cancel. Each task runs exactly once or is taken back
 * exactly once, never both, never neither. */
#define STRESS_SUBMITTERS 4
#define STRESS_TASKS 2000

typedef struct stress {
    pf__pool_t *pool;
    job_t jobs[STRESS_SUBMITTERS][STRESS_TASKS];
    bool cancelled[STRESS_SUBMITTERS][STRESS_TASKS];
} stress_t;

static void
stress_submitter(void *arg, unsigned t)
{
    stress_t *st = arg;
    int i;

    for (i = 0; i < STRESS_TASKS; i++) {
        job_t *j = &st->jobs[t][i];

        assert_pf_ok(pf__pool_submit(st->pool, &j->task, job_main, j));
        if (i % 2 == 1) {
            st->cancelled[t][i] = pf__pool_cancel(st->pool, &j->task);
        }
    }
}

static void
test_pool_stress_each_task_runs_or_is_cancelled_once(void **state)
{
    stress_t *st = calloc(1, sizeof(*st));
    pf__pool_stats_t s;
    uint64_t cancelled = 0;
    unsigned t;
    int i;

    (void)state;
    assert_non_null(st);
    st->pool = pool_with(3, INT64_MAX, NULL);
    pf_test_run_threads(STRESS_SUBMITTERS, stress_submitter, st);
    for (t = 0; t < STRESS_SUBMITTERS; t++) {
        for (i = 0; i < STRESS_TASKS; i++) {
            if (st->cancelled[t][i]) {
                cancelled++;
            } else {
                pf_test_wait_for_flag(&st->jobs[t][i].done, 1);
            }
        }
    }
    wait_pool(st->pool, busy_is, 0);
    for (t = 0; t < STRESS_SUBMITTERS; t++) {
        for (i = 0; i < STRESS_TASKS; i++) {
            assert_int_equal(atomic_load(&st->jobs[t][i].runs),
                             st->cancelled[t][i] ? 0 : 1);
        }
    }
    pf__pool_stats(st->pool, &s);
    assert_int_equal(s.cancelled, cancelled);
    assert_int_equal(s.started + s.cancelled,
                     STRESS_SUBMITTERS * STRESS_TASKS);
    assert_true(s.peak_threads <= 3);
    assert_int_equal(s.queued, 0);
    pf__pool_free(st->pool);
    free(st);
}

/* ---- timed calls and health checks on the default pool ----------------- */

static _Atomic int g_quick_calls;
static pthread_t g_quick_thread;

static int
quick(const pf_deadline_t *d, pf_token_t *tok, void *arg)
{
    (void)d;
    (void)tok;
    (void)arg;
    g_quick_thread = pthread_self();
    atomic_fetch_add(&g_quick_calls, 1);
    return 0;
}

static void
test_pool_timed_calls_reuse_one_thread(void **state)
{
    pf__pool_t *p = pf__pool_default();
    pf__pool_stats_t before;
    pf__pool_stats_t after;
    pthread_t first = pthread_self();
    int i;

    (void)state;
    assert_non_null(p);
    wait_pool(p, busy_is, 0);
    pf__pool_stats(p, &before);
    for (i = 0; i < 1000; i++) {
        assert_pf_ok(pf_timeout_call(60.0, quick, NULL));
        assert_false(pthread_equal(g_quick_thread, pthread_self()));
        if (i == 0) {
            first = g_quick_thread;
        }
        assert_true(pthread_equal(first, g_quick_thread));
        /* Back to idle before the next call, so the claim is exact. */
        wait_pool(p, busy_is, 0);
    }
    pf__pool_stats(p, &after);
    assert_int_equal(atomic_load(&g_quick_calls), 1000);
    assert_true(after.created - before.created <= 1);
    assert_int_equal(after.started - before.started, 1000);
}

static _Atomic int g_check_runs;
static pthread_t g_check_thread;

static int
quick_check(pf_health_result_t *res, void *arg)
{
    (void)res;
    (void)arg;
    g_check_thread = pthread_self();
    atomic_fetch_add(&g_check_runs, 1);
    return 0;
}

static void
test_pool_health_runs_reuse_one_thread(void **state)
{
    pf__pool_t *p = pf__pool_default();
    pf__pool_stats_t before;
    pf__pool_stats_t after;
    pf_health_checker_t *hc;
    pthread_t first = pthread_self();
    int i;

    (void)state;
    assert_pf_ok(pf_health_checker_new(NULL, &hc));
    assert_pf_ok(pf_health_add_check(hc, "db", quick_check, NULL));
    wait_pool(p, busy_is, 0);
    pf__pool_stats(p, &before);
    for (i = 0; i < 300; i++) {
        pf_health_report_t *r;

        assert_pf_ok(pf_health_check_all(hc, &r));
        assert_true(pf_health_report_is_healthy(r));
        pf_health_report_free(r);
        if (i == 0) {
            first = g_check_thread;
        }
        assert_true(pthread_equal(first, g_check_thread));
        wait_pool(p, busy_is, 0);
    }
    pf__pool_stats(p, &after);
    assert_int_equal(atomic_load(&g_check_runs), 300);
    assert_true(after.created - before.created <= 1);
    assert_int_equal(after.started - before.started, 300);
    pf_health_checker_free(hc);
}

static gate_t g_hang_gate;

static int
hang(const pf_deadline_t *d, pf_token_t *tok, void *arg)
{
    (void)d;
    (void)tok;
    (void)arg;
    gate_pass(&g_hang_gate);
    return 0;
}

/* A timed call made while the default pool is full. */
typedef struct late_call {
    pf_clock_t *clock;
    _Atomic int fn_ran;
    _Atomic int hook_calls;
    int hook_result;
    pthread_t hook_thread;
    int rc;
} late_call_t;

static int
late_fn(const pf_deadline_t *d, pf_token_t *tok, void *arg)
{
    late_call_t *lc = arg;

    (void)d;
    (void)tok;
    atomic_fetch_add(&lc->fn_ran, 1);
    return 0;
}

static void
late_hook(int result, void *arg)
{
    late_call_t *lc = arg;

    lc->hook_result = result;
    lc->hook_thread = pthread_self();
    atomic_fetch_add(&lc->hook_calls, 1);
}

static void *
late_caller(void *arg)
{
    late_call_t *lc = arg;
    pf_timeout_opts_t o;

    pf_timeout_opts_init(&o);
    o.clock = lc->clock;
    o.on_complete = late_hook;
    o.on_complete_arg = lc;
    lc->rc = pf_timeout_call_ex(5.0, late_fn, lc, &o);
    return NULL;
}

typedef struct late_check {
    pf_health_checker_t *hc;
    pf_health_report_t *report;
} late_check_t;

static _Atomic int g_late_check_runs;

static int
late_check_fn(pf_health_result_t *res, void *arg)
{
    (void)res;
    (void)arg;
    atomic_fetch_add(&g_late_check_runs, 1);
    return 0;
}

static void *
late_checker(void *arg)
{
    late_check_t *lk = arg;

    assert_pf_ok(pf_health_check_all(lk->hc, &lk->report));
    return NULL;
}

/* At the cap (256 timed calls whose work hangs), a timed call waits for a
 * thread within its own deadline, and when none frees in time it returns
 * PF_ETIMEDOUT with fn never called and the hook run once on the calling
 * thread; a health check run likewise times out without running. Once
 * the hung work returns, both work again. */
static void
test_pool_at_the_cap_calls_and_checks_time_out_unstarted(void **state)
{
    pf_clock_t *clock = *state;
    pf__pool_t *p = pf__pool_default();
    pf__pool_stats_t before;
    pf__pool_stats_t s;
    pf_health_config_t hcfg;
    pf_health_check_opts_t copts;
    const pf_health_entry_t *e;
    late_call_t lc = {0};
    late_check_t lk = {0};
    pthread_t tid;

    gate_init(&g_hang_gate);
    wait_pool(p, busy_is, 0);
    /* Until every pool thread is held: a call whose helper was still
     * queued at its 1 ms deadline (a slow thread start) leaves none. */
    for (;;) {
        pf__pool_stats(p, &s);
        if (s.busy == PF__POOL_DEFAULT_MAX_THREADS) {
            break;
        }
        assert_pf_err(pf_timeout_call(0.001, hang, NULL), PF_ETIMEDOUT);
    }
    assert_int_equal(s.threads, PF__POOL_DEFAULT_MAX_THREADS);
    pf__pool_stats(p, &before);

    lc.clock = clock;
    assert_int_equal(pthread_create(&tid, NULL, late_caller, &lc), 0);
    wait_pool(p, queued_is, 1);
    pf_test_wait_for_waiters(clock, 1);
    pf_clock_manual_advance(clock, 5 * NS_PER_SEC);
    assert_int_equal(pthread_join(tid, NULL), 0);
    assert_pf_err(lc.rc, PF_ETIMEDOUT);
    assert_int_equal(atomic_load(&lc.fn_ran), 0);
    assert_int_equal(atomic_load(&lc.hook_calls), 1);
    assert_pf_err(lc.hook_result, PF_ETIMEDOUT);
    assert_true(pthread_equal(lc.hook_thread, tid));

    pf_health_config_init(&hcfg);
    hcfg.clock = clock;
    assert_pf_ok(pf_health_checker_new(&hcfg, &lk.hc));
    pf_health_check_opts_init(&copts);
    copts.timeout = 1.0;
    assert_pf_ok(pf_health_add_check_ex(lk.hc, "db", late_check_fn, NULL,
                                        &copts));
    assert_int_equal(pthread_create(&tid, NULL, late_checker, &lk), 0);
    wait_pool(p, queued_is, 1);
    pf_test_wait_for_waiters(clock, 1);
    pf_clock_manual_advance(clock, 1 * NS_PER_SEC);
    assert_int_equal(pthread_join(tid, NULL), 0);
    e = pf_health_report_find(lk.report, "db");
    assert_non_null(e);
    assert_int_equal(e->status, PF_UNHEALTHY);
    assert_true(e->timed_out);
    assert_int_equal(atomic_load(&g_late_check_runs), 0);
    pf_health_report_free(lk.report);

    pf__pool_stats(p, &s);
    assert_int_equal(s.cancelled - before.cancelled, 2);
    assert_int_equal(s.queued, 0);
    assert_true(s.threads <= PF__POOL_DEFAULT_MAX_THREADS);

    gate_open(&g_hang_gate);
    wait_pool(p, busy_is, 0);
    assert_pf_ok(pf_health_check_all(lk.hc, &lk.report));
    assert_true(pf_health_report_is_healthy(lk.report));
    assert_int_equal(atomic_load(&g_late_check_runs), 1);
    pf_health_report_free(lk.report);
    pf_health_checker_free(lk.hc);
    assert_pf_ok(pf_timeout_call(60.0, quick, NULL));
    gate_destroy(&g_hang_gate);
}

/* A fork() child has none of the parent's pool threads; its timed calls
 * start threads of its own. */
static void
test_pool_timed_call_works_in_a_forked_child(void **state)
{
    pid_t pid;
    int status = 0;

    (void)state;
#ifdef PF_TEST_FORK_UNSAFE
    skip(); /* see PF_TEST_FORK_UNSAFE in test.h */
#endif
    assert_pf_ok(pf_timeout_call(60.0, quick, NULL)); /* an idle thread */
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        _exit(pf_timeout_call(60.0, quick, NULL) == 0 ? 0 : 1);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pool_rejects_bad_input),
        cmocka_unit_test(test_pool_new_fails_cleanly_without_memory),
        cmocka_unit_test(test_pool_reuses_an_idle_thread),
        cmocka_unit_test(test_pool_grows_when_busy_then_queues_at_the_cap),
        cmocka_unit_test(test_pool_hung_task_does_not_starve_later_ones),
        CLOCK_TEST(test_pool_idle_threads_end_after_idle_time),
        cmocka_unit_test(test_pool_free_ends_idle_threads),
        cmocka_unit_test(test_pool_free_from_its_own_task),
        cmocka_unit_test(test_pool_stress_each_task_runs_or_is_cancelled_once),
        cmocka_unit_test(test_pool_timed_calls_reuse_one_thread),
        cmocka_unit_test(test_pool_health_runs_reuse_one_thread),
        CLOCK_TEST(test_pool_at_the_cap_calls_and_checks_time_out_unstarted),
        cmocka_unit_test(test_pool_timed_call_works_in_a_forked_child),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
