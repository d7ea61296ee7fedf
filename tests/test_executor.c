/* The executor: workers run each task once, highest priority first; timers
 * fire on the executor's clock (manual here) and can be withdrawn; a
 * waiting thread runs its group's tasks; the default executor is one. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "puffinflow/executor.h"

#include "executor_impl.h"
#include "test.h"

static pf_executor_t *
make(const pf_clock_t *clock, unsigned workers)
{
    pf_executor_config_t cfg;
    pf_executor_t *ex = NULL;

    pf_executor_config_init(&cfg);
    cfg.clock = clock;
    cfg.workers = workers;
    assert_pf_ok(pf_executor_new(&cfg, &ex));
    return ex;
}

/* ---- config ------------------------------------------------------------ */

static void
test_executor_config_has_documented_defaults(void **state)
{
    pf_executor_config_t cfg;

    (void)state;
    pf_executor_config_init(&cfg);
    assert_string_equal(cfg.name, "executor");
    assert_int_equal(cfg.workers, 0);
    assert_null(cfg.clock);
    pf_executor_config_init(NULL); /* no-op */
}

static void
test_executor_new_rejects_bad_config(void **state)
{
    pf_executor_config_t cfg;
    pf_executor_t *ex = (pf_executor_t *)&cfg;

    (void)state;
    pf_executor_config_init(&cfg);
    assert_pf_err(pf_executor_new(NULL, &ex), PF_EINVAL);
    assert_pf_err(pf_executor_new(&cfg, NULL), PF_EINVAL);
    cfg.name = NULL;
    assert_pf_err(pf_executor_new(&cfg, &ex), PF_EINVAL);
    pf_executor_config_init(&cfg);
    cfg.workers = 1025;
    assert_pf_err(pf_executor_new(&cfg, &ex), PF_EINVAL);
    assert_ptr_equal(ex, (pf_executor_t *)&cfg); /* untouched */
}

static void
test_executor_defaults_to_one_worker_per_core(void **state)
{
    pf_executor_t *ex = make(NULL, 0);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);

    (void)state;
    assert_int_equal(pf_executor_workers(ex), cores < 1 ? 1 : cores);
    assert_string_equal(pf_executor_name(ex), "executor");
    assert_ptr_equal(pf_executor_clock(ex), pf_clock_system());
    pf_executor_free(ex);
    pf_executor_free(NULL);
}

/* ---- tasks --------------------------------------------------------------- */

typedef struct counted {
    pf__task_t task;
    atomic_int *runs;
    atomic_int *total;
    bool on_worker;
    pf_executor_t *ex;
} counted_t;

static void
count_task(pf__task_t *t)
{
    counted_t *c = (counted_t *)t;

    c->on_worker = pf__exec_on_worker(c->ex);
    atomic_fetch_add(c->runs, 1);
    atomic_fetch_add(c->total, 1);
}

/* Queues tasks[0..n) counting into runs[i] and *total; task i gets priority
 * i % prio_cycle (1: all the lowest). */
static void
push_counted(pf_executor_t *ex, counted_t *tasks, atomic_int *runs, int n,
             atomic_int *total, unsigned prio_cycle)
{
    int i;

    for (i = 0; i < n; i++) {
        atomic_init(&runs[i], 0);
        tasks[i] = (counted_t){.runs = &runs[i], .total = total, .ex = ex};
        tasks[i].task.fn = count_task;
        tasks[i].task.prio = (unsigned)i % prio_cycle;
        pf__exec_push(ex, &tasks[i].task);
    }
}

static void
test_executor_runs_each_task_once_on_a_worker(void **state)
{
    enum { N = 2000 };
    pf_executor_t *ex = make(NULL, 2);
    static counted_t tasks[N];
    static atomic_int runs[N];
    atomic_int total = 0;
    int i;

    (void)state;
    push_counted(ex, tasks, runs, N, &total, 4);
    pf_test_wait_for_flag(&total, N);
    for (i = 0; i < N; i++) {
        assert_int_equal(atomic_load(&runs[i]), 1);
        assert_true(tasks[i].on_worker);
    }
    assert_false(pf__exec_on_worker(ex)); /* this thread is not one */
    pf_executor_free(ex);
}

typedef struct blocker {
    pf__task_t task;
    atomic_int started;
    atomic_int release;
} blocker_t;

static void
block_task(pf__task_t *t)
{
    blocker_t *b = (blocker_t *)t;

    atomic_store(&b->started, 1);
    while (atomic_load(&b->release) == 0) {
        sched_yield();
    }
}

typedef struct ordered {
    pf__task_t task;
    int id;
    int *log;
    atomic_int *n;
    atomic_int *written;
} ordered_t;

static void
log_task(pf__task_t *t)
{
    ordered_t *o = (ordered_t *)t;

    o->log[atomic_fetch_add(o->n, 1)] = o->id;
    atomic_fetch_add(o->written, 1); /* publishes the entry */
}

static void
test_executor_runs_higher_priority_first_when_queued_together(void **state)
{
    pf_executor_t *ex = make(NULL, 1);
    blocker_t b = {0};
    ordered_t o[8];
    int log[8];
    atomic_int n = 0;
    atomic_int written = 0;
    /* Queued low first, critical last: run critical, high, normal, low,
     * first come first served within a priority. */
    const unsigned prio[8] = {0, 1, 2, 3, 0, 1, 2, 3};
    const int want[8] = {3, 7, 2, 6, 1, 5, 0, 4};
    int i;

    (void)state;
    b.task.fn = block_task;
    pf__exec_push(ex, &b.task); /* occupies the only worker */
    pf_test_wait_for_flag(&b.started, 1);
    for (i = 0; i < 8; i++) {
        o[i] = (ordered_t){.id = i, .log = log, .n = &n, .written = &written};
        o[i].task.fn = log_task;
        o[i].task.prio = prio[i];
        pf__exec_push(ex, &o[i].task);
    }
    atomic_store(&b.release, 1);
    pf_test_wait_for_flag(&written, 8);
    for (i = 0; i < 8; i++) {
        assert_int_equal(log[i], want[i]);
    }
    pf_executor_free(ex);
}

static void
test_executor_free_runs_the_queued_tasks_first(void **state)
{
    enum { N = 500 };
    pf_executor_t *ex = make(NULL, 1);
    static counted_t tasks[N];
    static atomic_int runs[N];
    atomic_int total = 0;

    (void)state;
    push_counted(ex, tasks, runs, N, &total, 1);
    pf_executor_free(ex);
    assert_int_equal(atomic_load(&total), N);
}

/* ---- timers ------------------------------------------------------------- */

typedef struct fired {
    pf__timer_t timer;
    atomic_int count;
    atomic_int in_cb;
    atomic_int release;
    atomic_int done;
    bool block;
} fired_t;

static void
fire(pf__timer_t *t)
{
    fired_t *f = (fired_t *)t;

    atomic_store(&f->in_cb, 1);
    while (f->block && atomic_load(&f->release) == 0) {
        sched_yield();
    }
    atomic_fetch_add(&f->count, 1);
    atomic_store(&f->done, 1);
}

static void
test_executor_timer_fires_only_when_the_clock_reaches_it(void **state)
{
    pf_clock_t *clock = *state;
    pf_executor_t *ex = make(clock, 1);
    fired_t f = {0};

    pf__timer_init(&f.timer, fire);
    assert_int_equal(pf_clock_manual_waiters(clock), 0); /* idle: no wait */
    assert_pf_ok(pf__exec_timer_arm(ex, &f.timer, 5 * NS_PER_SEC));
    pf_test_wait_for_waiters(clock, 1);
    pf_clock_manual_advance(clock, 4 * NS_PER_SEC);
    pf_test_wait_for_waiters(clock, 1);
    assert_int_equal(atomic_load(&f.count), 0);
    pf_clock_manual_advance(clock, 1 * NS_PER_SEC);
    pf_test_wait_for_flag(&f.count, 1);
    assert_false(pf__exec_timer_cancel(ex, &f.timer)); /* it fired */
    pf_executor_free(ex);
    assert_int_equal(atomic_load(&f.count), 1);
}

static void
test_executor_timers_fire_in_due_order(void **state)
{
    pf_clock_t *clock = *state;
    pf_executor_t *ex = make(clock, 1);
    fired_t f[3];
    int i;

    memset(f, 0, sizeof(f));
    for (i = 0; i < 3; i++) {
        pf__timer_init(&f[i].timer, fire);
    }
    assert_pf_ok(pf__exec_timer_arm(ex, &f[0].timer, 3 * NS_PER_SEC));
    assert_pf_ok(pf__exec_timer_arm(ex, &f[1].timer, 1 * NS_PER_SEC));
    assert_pf_ok(pf__exec_timer_arm(ex, &f[2].timer, 2 * NS_PER_SEC));
    pf_test_wait_for_waiters(clock, 1);
    pf_clock_manual_advance(clock, 1 * NS_PER_SEC);
    pf_test_wait_for_flag(&f[1].count, 1);
    pf_test_wait_for_waiters(clock, 1);
    assert_int_equal(atomic_load(&f[2].count) + atomic_load(&f[0].count), 0);
    pf_clock_manual_advance(clock, 1 * NS_PER_SEC);
    pf_test_wait_for_flag(&f[2].count, 1);
    pf_test_wait_for_waiters(clock, 1);
    assert_int_equal(atomic_load(&f[0].count), 0);
    pf_clock_manual_advance(clock, 1 * NS_PER_SEC);
    pf_test_wait_for_flag(&f[0].count, 1);
    pf_executor_free(ex);
}

static void
test_executor_next_timer_reports_the_earliest_armed_timer(void **state)
{
    pf_clock_t *clock = *state;
    pf_executor_t *ex = make(clock, 1);
    fired_t f[2];

    memset(f, 0, sizeof(f));
    pf__timer_init(&f[0].timer, fire);
    pf__timer_init(&f[1].timer, fire);
    assert_true(pf_executor_next_timer_ns(NULL) == PF_DEADLINE_NEVER_NS);
    assert_true(pf_executor_next_timer_ns(ex) == PF_DEADLINE_NEVER_NS);
    assert_pf_ok(pf__exec_timer_arm(ex, &f[0].timer, 7 * NS_PER_SEC));
    assert_true(pf_executor_next_timer_ns(ex) == 7 * NS_PER_SEC);
    assert_pf_ok(pf__exec_timer_arm(ex, &f[1].timer, 3 * NS_PER_SEC));
    assert_true(pf_executor_next_timer_ns(ex) == 3 * NS_PER_SEC);
    pf_test_wait_for_waiters(clock, 1);
    pf_clock_manual_advance(clock, 4 * NS_PER_SEC); /* past the earliest */
    pf_test_wait_for_flag(&f[1].count, 1);
    assert_true(pf_executor_next_timer_ns(ex) == 7 * NS_PER_SEC);
    assert_true(pf__exec_timer_cancel(ex, &f[0].timer));
    assert_true(pf_executor_next_timer_ns(ex) == PF_DEADLINE_NEVER_NS);
    assert_int_equal(atomic_load(&f[0].count), 0);
    pf_executor_free(ex);
}

static void
test_executor_timer_cancel_withdraws_an_armed_timer(void **state)
{
    pf_clock_t *clock = *state;
    pf_executor_t *ex = make(clock, 1);
    pf_executor_metrics_t m;
    fired_t f = {0};

    pf__timer_init(&f.timer, fire);
    assert_pf_ok(pf__exec_timer_arm(ex, &f.timer, 5 * NS_PER_SEC));
    pf_test_wait_for_waiters(clock, 1);
    assert_true(pf__exec_timer_cancel(ex, &f.timer));
    assert_false(pf__exec_timer_cancel(ex, &f.timer));
    /* The timer thread stops waiting on the clock once nothing is armed. */
    while (pf_clock_manual_waiters(clock) != 0) {
        sched_yield();
    }
    pf_clock_manual_advance(clock, 10 * NS_PER_SEC);
    pf_executor_metrics(ex, &m);
    assert_int_equal(m.timers_armed, 0);
    assert_int_equal(m.timers_fired, 0);
    pf_executor_free(ex);
    assert_int_equal(atomic_load(&f.count), 0);
}

typedef struct canceller {
    pf_executor_t *ex;
    fired_t *f;
    int done_at_return;
} canceller_t;

static void *
cancel_thread(void *arg)
{
    canceller_t *c = arg;

    assert_false(pf__exec_timer_cancel(c->ex, &c->f->timer));
    c->done_at_return = atomic_load(&c->f->done);
    return NULL;
}

static void
test_executor_timer_cancel_waits_for_a_running_callback(void **state)
{
    pf_clock_t *clock = *state;
    pf_executor_t *ex = make(clock, 1);
    fired_t f = {0};
    canceller_t c = {ex, &f, 0};
    pthread_t tid;

    f.block = true;
    pf__timer_init(&f.timer, fire);
    assert_pf_ok(pf__exec_timer_arm(ex, &f.timer, 1));
    pf_clock_manual_advance(clock, 1);
    pf_test_wait_for_flag(&f.in_cb, 1);
    assert_int_equal(pthread_create(&tid, NULL, cancel_thread, &c), 0);
    atomic_store(&f.release, 1);
    pthread_join(tid, NULL);
    assert_int_equal(c.done_at_return, 1);
    pf_executor_free(ex);
}

static void
test_executor_timer_due_already_fires_at_once(void **state)
{
    pf_clock_t *clock = *state;
    pf_executor_t *ex = make(clock, 1);
    fired_t f = {0};

    pf_clock_manual_advance(clock, 10 * NS_PER_SEC);
    pf__timer_init(&f.timer, fire);
    assert_pf_ok(pf__exec_timer_arm(ex, &f.timer, 3 * NS_PER_SEC));
    pf_test_wait_for_flag(&f.count, 1);
    pf_executor_free(ex);
}

/* ---- groups and helping -------------------------------------------------- */

typedef struct grouped {
    pf__task_t task;
    pf_executor_t *ex;
    pf__group_t *g;
    atomic_int *n;
    int finish_at;
    pthread_t ran_on;
} grouped_t;

static void
group_task(pf__task_t *t)
{
    grouped_t *gt = (grouped_t *)t;

    gt->ran_on = pthread_self();
    if (atomic_fetch_add(gt->n, 1) + 1 == gt->finish_at) {
        _Atomic int refs = 2;

        assert_false(pf__exec_group_finish(gt->ex, gt->g, &refs));
        assert_true(pf__exec_group_finish(gt->ex, gt->g, &refs));
    }
}

static void
test_executor_help_runs_the_groups_tasks_on_the_waiting_thread(void **state)
{
    enum { N = 50 };
    pf_executor_t *ex = make(NULL, 1);
    blocker_t b = {0};
    pf__group_t g;
    grouped_t tasks[N];
    pf_executor_metrics_t m;
    atomic_int n = 0;
    int i;

    (void)state;
    assert_pf_ok(pf__group_init(&g));
    b.task.fn = block_task;
    pf__exec_push(ex, &b.task); /* the worker is busy: only we can help */
    pf_test_wait_for_flag(&b.started, 1);
    for (i = 0; i < N; i++) {
        tasks[i] = (grouped_t){.ex = ex, .g = &g, .n = &n, .finish_at = N};
        tasks[i].task.fn = group_task;
        tasks[i].task.group = &g;
        pf__exec_push(ex, &tasks[i].task);
    }
    assert_pf_ok(pf__exec_help(ex, &g, NULL));
    assert_int_equal(atomic_load(&n), N);
    for (i = 0; i < N; i++) {
        assert_true(pthread_equal(tasks[i].ran_on, pthread_self()));
    }
    pf_executor_metrics(ex, &m);
    assert_int_equal(m.tasks_helped, N);
    assert_int_equal(m.queued, 0);
    atomic_store(&b.release, 1);
    pf_executor_free(ex);
    pf__group_destroy(&g);
}

typedef struct helper {
    pf_executor_t *ex;
    pf__group_t *g;
    pf_deadline_t d;
    atomic_int rc;
    atomic_int returned;
} helper_t;

static void *
help_thread(void *arg)
{
    helper_t *h = arg;

    atomic_store(&h->rc, pf__exec_help(h->ex, h->g, &h->d));
    atomic_store(&h->returned, 1);
    return NULL;
}

static void
test_executor_help_returns_etimedout_at_its_deadline(void **state)
{
    pf_clock_t *clock = *state;
    pf_executor_t *ex = make(clock, 1);
    pf__group_t g;
    helper_t h = {0};
    pthread_t tid;

    assert_pf_ok(pf__group_init(&g));
    h.ex = ex;
    h.g = &g;
    h.d = pf_deadline_in(clock, 5.0);
    assert_int_equal(pthread_create(&tid, NULL, help_thread, &h), 0);
    pf_test_wait_for_waiters(clock, 1);
    pf_clock_manual_advance(clock, 4 * NS_PER_SEC);
    pf_test_wait_for_waiters(clock, 1);
    assert_int_equal(atomic_load(&h.returned), 0);
    pf_clock_manual_advance(clock, 1 * NS_PER_SEC);
    pthread_join(tid, NULL);
    assert_int_equal(atomic_load(&h.rc), PF_ETIMEDOUT);
    pf_executor_free(ex);
    pf__group_destroy(&g);
}

/* ---- the default executor ------------------------------------------------ */

static pf_executor_t *g_seen[8];

static void
get_default(void *arg, unsigned i)
{
    (void)arg;
    assert_pf_ok(pf_executor_default(&g_seen[i]));
}

static void
test_executor_default_is_one_executor_for_all_threads(void **state)
{
    pf_executor_t *ex;
    int i;

    (void)state;
    pf_test_run_threads(8, get_default, NULL);
    for (i = 1; i < 8; i++) {
        assert_ptr_equal(g_seen[i], g_seen[0]);
    }
    pf_executor_free(g_seen[0]); /* a no-op for the default */
    assert_pf_ok(pf_executor_default(&ex));
    assert_ptr_equal(ex, g_seen[0]);
    assert_string_equal(pf_executor_name(ex), "default");
    assert_pf_err(pf_executor_default(NULL), PF_EINVAL);
}

/* ---- allocation failure -------------------------------------------------- */

static void
new_free(void *arg)
{
    pf_executor_config_t cfg;
    pf_executor_t *ex = NULL;
    fired_t f = {0};
    int rc;

    (void)arg;
    pf_executor_config_init(&cfg);
    cfg.workers = 1;
    rc = pf_executor_new(&cfg, &ex);
    if (rc != 0) {
        assert_int_equal(rc, PF_ENOMEM);
        return;
    }
    pf__timer_init(&f.timer, fire);
    rc = pf__exec_timer_arm(ex, &f.timer, PF_DEADLINE_NEVER_NS - 1);
    if (rc == 0) {
        assert_true(pf__exec_timer_cancel(ex, &f.timer));
    } else {
        assert_int_equal(rc, PF_ENOMEM);
    }
    pf_executor_free(ex);
}

static void
test_executor_new_and_timers_survive_allocation_failure(void **state)
{
    (void)state;
    assert_true(pf_test_alloc_sweep(new_free, NULL) >= 4);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_executor_config_has_documented_defaults),
        cmocka_unit_test(test_executor_new_rejects_bad_config),
        cmocka_unit_test(test_executor_defaults_to_one_worker_per_core),
        cmocka_unit_test(test_executor_runs_each_task_once_on_a_worker),
        cmocka_unit_test(
            test_executor_runs_higher_priority_first_when_queued_together),
        cmocka_unit_test(test_executor_free_runs_the_queued_tasks_first),
        cmocka_unit_test_setup_teardown(
            test_executor_timer_fires_only_when_the_clock_reaches_it,
            pf_test_clock_setup, pf_test_clock_teardown),
        cmocka_unit_test_setup_teardown(test_executor_timers_fire_in_due_order,
                                        pf_test_clock_setup,
                                        pf_test_clock_teardown),
        cmocka_unit_test_setup_teardown(
            test_executor_next_timer_reports_the_earliest_armed_timer,
            pf_test_clock_setup, pf_test_clock_teardown),
        cmocka_unit_test_setup_teardown(
            test_executor_timer_cancel_withdraws_an_armed_timer,
            pf_test_clock_setup, pf_test_clock_teardown),
        cmocka_unit_test_setup_teardown(
            test_executor_timer_cancel_waits_for_a_running_callback,
            pf_test_clock_setup, pf_test_clock_teardown),
        cmocka_unit_test_setup_teardown(
            test_executor_timer_due_already_fires_at_once, pf_test_clock_setup,
            pf_test_clock_teardown),
        cmocka_unit_test(
            test_executor_help_runs_the_groups_tasks_on_the_waiting_thread),
        cmocka_unit_test_setup_teardown(
            test_executor_help_returns_etimedout_at_its_deadline,
            pf_test_clock_setup, pf_test_clock_teardown),
        cmocka_unit_test(test_executor_default_is_one_executor_for_all_threads),
        cmocka_unit_test(
            test_executor_new_and_timers_survive_allocation_failure),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
