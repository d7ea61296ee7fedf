/* A retry budget shared by processes through a shared-memory segment
 * (retry.h, config field shared; docs/shared.md). Real processes made with
 * fork(): calls counted in one process raise the allowance of all; 4
 * processes asking for retries at once get exactly the allowance between
 * them (a retry storm is bounded across processes); the window slides for
 * everyone; threads of one process share it too; processes must agree on
 * the configuration. */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "puffinflow/clock.h"
#include "puffinflow/ratelimit.h"
#include "puffinflow/retry.h"
#include "puffinflow/shared.h"

#include "shm_testutil.h"
#include "test.h"

#define SEC INT64_C(1000000000)

static int
setup(void **state)
{
    (void)state;
    return shm_fixture_setup("retries", 1000 * SEC);
}

static int
teardown(void **state)
{
    (void)state;
    return shm_fixture_teardown();
}

/* ratio 0.5, a reserve of 2/s over a 10 s window: 20 retries whatever the
 * calls, plus one per two calls. */
static void
config(pf_retry_budget_config_t *cfg)
{
    pf_retry_budget_config_init(cfg);
    cfg->name = "retries";
    cfg->ratio = 0.5;
    cfg->min_retries_per_sec = 2.0;
    cfg->window = 10.0;
    cfg->clock = g_clock;
    cfg->shared = &g_sc;
}

static pf_retry_budget_t *
open_budget(void)
{
    pf_retry_budget_config_t cfg;
    pf_retry_budget_t *b = NULL;

    config(&cfg);
    assert_pf_ok(pf_retry_budget_new(&cfg, &b));
    return b;
}

/* ---- tests ------------------------------------------------------------ */

#define PROCS 4
#define ASKS 200

/* The parent counts 80 calls: the allowance is 20 + 40 = 60 retries for
 * every process together. PROCS processes (their copies of the manual
 * clock all read the same time) then ask for ASKS retries each, at once
 * (they start together on a pipe): exactly 60 are granted in all, and the
 * parent, which asked for none, sees the window full. */
static void
test_shared_budget_bounds_a_retry_storm_across_processes(void **state)
{
    pf_retry_budget_t *b = open_budget();
    pf_retry_budget_metrics_t m;
    _Atomic uint64_t *granted;
    pid_t pids[PROCS];
    int go[2];
    uint64_t total = 0;

    (void)state;
    granted = mmap(NULL, PROCS * sizeof(*granted), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(granted != MAP_FAILED);
    assert_int_equal(pipe(go), 0);
    for (int i = 0; i < 80; i++) {
        pf_retry_budget_deposit(b);
    }
    for (int i = 0; i < PROCS; i++) {
        atomic_init(&granted[i], 0);
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            pf_retry_budget_t *mine = open_budget();
            char c;

            close(go[1]);
            if (read(go[0], &c, 1) != 0) { /* the parent closes it */
                _exit(1);
            }
            for (int k = 0; k < ASKS; k++) {
                int rc = pf_retry_budget_try_withdraw(mine);

                if (rc == 0) {
                    atomic_fetch_add(&granted[i], 1);
                } else if (rc != PF_EBUDGET) {
                    _exit(2);
                }
            }
            pf_retry_budget_free(mine);
            _exit(0);
        }
    }
    close(go[0]);
    close(go[1]); /* all start */
    for (int i = 0; i < PROCS; i++) {
        assert_int_equal(wait_child(pids[i]), 0);
        total += atomic_load(&granted[i]);
    }
    assert_int_equal(total, 60);
    pf_retry_budget_metrics(b, &m);
    assert_int_equal(m.window_calls, 80);
    assert_int_equal(m.window_retries, 60);
    assert_int_equal(m.available, 0);
    assert_int_equal(m.calls, 80);  /* this process's */
    assert_int_equal(m.retries, 0); /* this process's */
    assert_pf_err(pf_retry_budget_try_withdraw(b), PF_EBUDGET);
    pf_retry_budget_metrics(b, &m);
    assert_int_equal(m.refused, 1);
    pf_retry_budget_free(b);
    munmap(granted, PROCS * sizeof(*granted));
}

/* Calls a child counts raise the parent's allowance; the window slides
 * for both: a window later the old counts are gone everywhere; the counts
 * outlive every budget object until the segment is removed. */
static void
test_shared_budget_window_is_one_for_all(void **state)
{
    pf_retry_budget_t *b = open_budget();
    pf_retry_budget_metrics_t m;
    pid_t pid;

    (void)state;
    for (int i = 0; i < 20; i++) {
        assert_pf_ok(pf_retry_budget_try_withdraw(b)); /* the reserve */
    }
    assert_pf_err(pf_retry_budget_try_withdraw(b), PF_EBUDGET);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        pf_retry_budget_t *mine = open_budget();

        if (pf_retry_budget_try_withdraw(mine) != PF_EBUDGET) {
            _exit(1);
        }
        for (int i = 0; i < 4; i++) {
            pf_retry_budget_deposit(mine);
        }
        pf_retry_budget_free(mine);
        _exit(0);
    }
    assert_int_equal(wait_child(pid), 0);
    assert_pf_ok(pf_retry_budget_try_withdraw(b)); /* 4 calls: 2 more */
    assert_pf_ok(pf_retry_budget_try_withdraw(b));
    assert_pf_err(pf_retry_budget_try_withdraw(b), PF_EBUDGET);
    pf_retry_budget_free(b);
    b = open_budget(); /* the counts survived */
    pf_retry_budget_metrics(b, &m);
    assert_int_equal(m.window_calls, 4);
    assert_int_equal(m.window_retries, 22);
    assert_pf_err(pf_retry_budget_try_withdraw(b), PF_EBUDGET);
    pf_clock_manual_advance(g_clock, 10 * SEC); /* a window on */
    pf_retry_budget_metrics(b, &m);
    assert_int_equal(m.window_calls, 0);
    assert_int_equal(m.window_retries, 0);
    assert_int_equal(m.available, 20);
    pf_retry_budget_free(b);
    assert_pf_ok(pf_shared_remove(&g_sc));
}

/* Processes sharing a name must agree on ratio, reserve and window; a bad
 * name or mode is PF_EINVAL; another object's segment, a damaged or a
 * truncated file is PF_EFORMAT; nothing is created on error. */
static void
test_shared_budget_refuses_bad_configs_and_files(void **state)
{
    pf_retry_budget_config_t cfg;
    pf_retry_budget_t *b = open_budget();
    pf_retry_budget_t *c = NULL;
    pf_shared_config_t bad;
    char path[256];
    int fd;

    (void)state;
    config(&cfg);
    cfg.ratio = 0.25;
    assert_pf_err(pf_retry_budget_new(&cfg, &c), PF_EEXIST);
    config(&cfg);
    cfg.min_retries_per_sec = 3.0;
    assert_pf_err(pf_retry_budget_new(&cfg, &c), PF_EEXIST);
    config(&cfg);
    cfg.window = 20.0;
    assert_pf_err(pf_retry_budget_new(&cfg, &c), PF_EEXIST);
    bad = g_sc;
    bad.name = "no/slash";
    config(&cfg);
    cfg.shared = &bad;
    assert_pf_err(pf_retry_budget_new(&cfg, &c), PF_EINVAL);
    bad = g_sc;
    bad.name = NULL;
    assert_pf_err(pf_retry_budget_new(&cfg, &c), PF_EINVAL);
    bad = g_sc;
    bad.mode = 0700;
    assert_pf_err(pf_retry_budget_new(&cfg, &c), PF_EINVAL);
    assert_null(c);
    {
        pf_ratelimit_config_t rc;
        pf_ratelimit_t *rl = NULL;

        pf_ratelimit_config_init(&rc);
        rc.shared = &g_sc; /* the budget's segment */
        assert_pf_err(pf_ratelimit_new(&rc, &rl), PF_EFORMAT);
        assert_null(rl);
    }
    pf_retry_budget_free(b);
    snprintf(path, sizeof(path), "%s/puffinflow-retries.shm", g_dir);
    fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, "\x07", 1, 9), 1); /* the version */
    close(fd);
    config(&cfg);
    assert_pf_err(pf_retry_budget_new(&cfg, &c), PF_EFORMAT);
    assert_int_equal(truncate(path, 100), 0);
    assert_pf_err(pf_retry_budget_new(&cfg, &c), PF_EFORMAT);
    assert_null(c);
}

#define THREADS 4

typedef struct worker {
    pf_retry_budget_t *b;
    unsigned granted;
} worker_t;

static void *
storm(void *arg)
{
    worker_t *w = arg;

    for (int i = 0; i < 500; i++) {
        pf_retry_budget_deposit(w->b);
        if (pf_retry_budget_try_withdraw(w->b) == 0) {
            w->granted++;
        }
    }
    return NULL;
}

/* Threads on two budget objects of one process sharing one name, each
 * counting a call then asking for a retry, the clock standing still: in
 * all, exactly the allowance of the 2,000 calls (20 + 1,000) (also a run
 * for the thread sanitizer). */
static void
test_shared_budget_threads_share_it_too(void **state)
{
    pf_retry_budget_t *a = open_budget();
    pf_retry_budget_t *b = open_budget();
    pf_retry_budget_metrics_t m;
    pthread_t th[THREADS];
    worker_t w[THREADS];
    unsigned total = 0;

    (void)state;
    for (int i = 0; i < THREADS; i++) {
        w[i].b = i % 2 == 0 ? a : b;
        w[i].granted = 0;
        assert_int_equal(pthread_create(&th[i], NULL, storm, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        total += w[i].granted;
    }
    /* Never more than the final allowance (1,020); and not fewer: after
     * the last refusal every ask was granted, and each ask followed its
     * own deposit, so the retries caught up with the allowance. */
    pf_retry_budget_metrics(a, &m);
    assert_int_equal(m.window_calls, 2000);
    assert_int_equal(m.window_retries, total);
    assert_int_equal(total, 1020);
    pf_retry_budget_free(a);
    pf_retry_budget_free(b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_shared_budget_bounds_a_retry_storm_across_processes, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_shared_budget_window_is_one_for_all, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_shared_budget_refuses_bad_configs_and_files, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_shared_budget_threads_share_it_too, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
