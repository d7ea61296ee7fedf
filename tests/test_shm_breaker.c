/* A circuit breaker shared by processes through a shared-memory segment
 * (breaker.h, config field shared; docs/shared.md). Real processes made
 * with fork(): a trip in one is seen by the others at their next call, the
 * state outlives every process and can be reset, a process killed with
 * SIGKILL while holding a half-open trial does not keep it, and processes
 * hammering one breaker never take more trials than allowed. Time moves
 * on manual clocks: each process advances its own copy of the parent's
 * clock, so all agree on the times stored in the segment. */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "puffinflow/breaker.h"
#include "puffinflow/clock.h"
#include "puffinflow/shared.h"

#include "shm_testutil.h"
#include "test.h"

static int
setup(void **state)
{
    (void)state;
    return shm_fixture_setup("payments", 1000 * NS_PER_SEC);
}

static int
teardown(void **state)
{
    (void)state;
    return shm_fixture_teardown();
}

static void
config(pf_breaker_config_t *cfg)
{
    pf_breaker_config_init(cfg);
    cfg->name = "payments";
    cfg->failure_threshold = 3;
    cfg->recovery_timeout = 10.0;
    cfg->success_threshold = 1;
    cfg->half_open_max_calls = 1;
    cfg->timeout = 0.0;
    cfg->clock = g_clock;
    cfg->shared = &g_sc;
}

static pf_breaker_t *
open_breaker(void)
{
    pf_breaker_config_t cfg;
    pf_breaker_t *b = NULL;

    config(&cfg);
    assert_pf_ok(pf_breaker_new(&cfg, &b));
    return b;
}

static void
fail_once(pf_breaker_t *b)
{
    pf_permit_t p = PF_PERMIT_INIT;

    assert_pf_ok(pf_breaker_acquire(b, &p));
    pf_breaker_record(b, &p, -1);
}

/* ---- tests ------------------------------------------------------------ */

/* A child opens the name and trips it; the parent's breaker, opened
 * before the fork, and a second child's, opened after, reject at once. */
static void
test_shared_breaker_trip_in_one_process_is_seen_by_all(void **state)
{
    pf_breaker_t *b = open_breaker();
    pf_permit_t p = PF_PERMIT_INIT;
    pid_t pid;

    (void)state;
    assert_pf_ok(pf_breaker_acquire(b, &p));
    pf_breaker_record(b, &p, 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        pf_breaker_config_t cfg;
        pf_breaker_t *c = NULL;
        int i;

        config(&cfg);
        if (pf_breaker_new(&cfg, &c) != 0) {
            _exit(1);
        }
        for (i = 0; i < 3; i++) {
            pf_permit_t q = PF_PERMIT_INIT;

            if (pf_breaker_acquire(c, &q) != 0) {
                _exit(2);
            }
            pf_breaker_record(c, &q, -1);
        }
        _exit(pf_breaker_state(c) == PF_BREAKER_OPEN ? 0 : 3);
    }
    assert_int_equal(wait_child(pid), 0);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_OPEN);
    assert_pf_err(pf_breaker_acquire(b, &p), PF_EOPEN);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        pf_breaker_config_t cfg;
        pf_breaker_t *c = NULL;
        pf_permit_t q = PF_PERMIT_INIT;

        config(&cfg);
        if (pf_breaker_new(&cfg, &c) != 0) {
            _exit(1);
        }
        _exit(pf_breaker_acquire(c, &q) == PF_EOPEN ? 0 : 2);
    }
    assert_int_equal(wait_child(pid), 0);
    pf_breaker_free(b);
}

/* Failures counted in different processes add up: consecutive counting
 * is one count in the segment. */
static void
test_shared_breaker_counts_failures_of_every_process(void **state)
{
    pf_breaker_t *b = open_breaker();
    pid_t pid;
    int i;

    (void)state;
    fail_once(b);
    for (i = 0; i < 2; i++) {
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            pf_breaker_t *c = open_breaker();

            fail_once(c);
            pf_breaker_free(c);
            _exit(0);
        }
        assert_int_equal(wait_child(pid), 0);
    }
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_OPEN);
    pf_breaker_free(b);
}

/* Every process gone: the next one to open the name finds it OPEN (a
 * restarted service does not storm the dependency); pf_breaker_reset
 * closes it for all; pf_shared_remove forgets it. */
static void
test_shared_breaker_state_survives_and_can_be_reset(void **state)
{
    pf_breaker_t *b = open_breaker();
    pf_breaker_t *c;

    (void)state;
    for (int i = 0; i < 3; i++) {
        fail_once(b);
    }
    pf_breaker_free(b);
    b = open_breaker();
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_OPEN);
    c = open_breaker();
    pf_breaker_reset(c);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_CLOSED);
    pf_breaker_force_open(c);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_OPEN);
    pf_breaker_free(b);
    pf_breaker_free(c);
    assert_pf_ok(pf_shared_remove(&g_sc));
    assert_pf_err(pf_shared_remove(&g_sc), PF_ENOTFOUND);
    b = open_breaker();
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_CLOSED);
    pf_breaker_free(b);
}

/* A child takes the one half-open trial and is killed holding it. While
 * it lives, the parent is refused; once it is gone, the parent's next call
 * takes the trial back, and its success closes the breaker. */
static void
test_shared_breaker_trial_of_a_killed_process_comes_back(void **state)
{
    pf_breaker_t *b = open_breaker();
    pf_permit_t p = PF_PERMIT_INIT;
    pf_breaker_metrics_t m;
    int ready[2];
    char c;
    pid_t pid;

    (void)state;
    for (int i = 0; i < 3; i++) {
        fail_once(b);
    }
    assert_int_equal(pipe(ready), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        pf_permit_t q = PF_PERMIT_INIT;

        pf_clock_manual_advance(g_clock, 10 * NS_PER_SEC);
        if (pf_breaker_acquire(b, &q) != 0 || !pf_permit_is_trial(&q)) {
            _exit(1);
        }
        if (write(ready[1], "t", 1) != 1) {
            _exit(2);
        }
        for (;;) {
            pause(); /* holding the trial until killed */
        }
    }
    assert_int_equal(read(ready[0], &c, 1), 1);
    pf_clock_manual_advance(g_clock, 10 * NS_PER_SEC);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_HALF_OPEN);
    assert_pf_err(pf_breaker_acquire(b, &p), PF_EOPEN); /* holder alive */
    assert_int_equal(kill(pid, SIGKILL), 0);
    {
        int status = 0;

        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status));
    }
    pf_clock_manual_advance(g_clock, NS_PER_MS); /* next holder check */
    assert_pf_ok(pf_breaker_acquire(b, &p));
    assert_true(pf_permit_is_trial(&p));
    pf_breaker_record(b, &p, 0);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_CLOSED);
    pf_breaker_metrics(b, &m);
    assert_int_equal(m.reclaimed, 1);
    assert_int_equal(m.half_open_in_flight, 0);
    close(ready[0]);
    close(ready[1]);
    pf_breaker_free(b);
}

/* Processes sharing a name must agree on its configuration; window modes
 * are not shared; a damaged file is refused, never trusted. */
static void
test_shared_breaker_refuses_bad_configs_and_files(void **state)
{
    pf_breaker_config_t cfg;
    pf_breaker_t *b = open_breaker();
    pf_breaker_t *c = NULL;
    pf_shared_config_t bad;
    char path[256];
    int fd;

    (void)state;
    config(&cfg);
    cfg.failure_threshold = 4;
    assert_pf_err(pf_breaker_new(&cfg, &c), PF_EEXIST);
    config(&cfg);
    cfg.window = PF_BREAKER_WINDOW_COUNT;
    assert_pf_err(pf_breaker_new(&cfg, &c), PF_EINVAL);
    config(&cfg);
    cfg.half_open_max_calls = 2000;
    assert_pf_err(pf_breaker_new(&cfg, &c), PF_EINVAL);
    bad = g_sc;
    bad.name = "no/slash";
    config(&cfg);
    cfg.shared = &bad;
    assert_pf_err(pf_breaker_new(&cfg, &c), PF_EINVAL);
    bad = g_sc;
    bad.name = NULL;
    assert_pf_err(pf_breaker_new(&cfg, &c), PF_EINVAL);
    bad = g_sc;
    bad.mode = 0755;
    assert_pf_err(pf_breaker_new(&cfg, &c), PF_EINVAL);
    assert_null(c);
    {
        pf_breaker_group_config_t gc;
        pf_breaker_group_t *g = NULL;

        pf_breaker_group_config_init(&gc);
        config(&cfg);
        gc.breaker = &cfg;
        assert_pf_err(pf_breaker_group_new(&gc, &g), PF_EINVAL);
        assert_null(g);
    }
    pf_breaker_free(b);
    snprintf(path, sizeof(path), "%s/puffinflow-payments.shm", g_dir);
    fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, "X", 1, 3), 1); /* the magic */
    close(fd);
    config(&cfg);
    assert_pf_err(pf_breaker_new(&cfg, &c), PF_EFORMAT);
    assert_int_equal(truncate(path, 64), 0);
    assert_pf_err(pf_breaker_new(&cfg, &c), PF_EFORMAT);
    assert_null(c);
}

#define PROCS 4
#define CALLS 20000

/* PROCS processes hammer one breaker with a mix of results on the system clock and
 * a short recovery: it keeps moving through all three states. Checked in
 * each process after every acquire: trials in flight never exceed the
 * limit; at the end no trial is left taken. */
static void
test_shared_breaker_stress_never_exceeds_its_trials(void **state)
{
    pf_breaker_config_t cfg;
    pid_t pids[PROCS];
    int i;

    (void)state;
    pf_breaker_config_init(&cfg);
    cfg.name = "stress";
    cfg.failure_threshold = 2;
    cfg.recovery_timeout = 0.0001;
    cfg.success_threshold = 2;
    cfg.half_open_max_calls = 2;
    cfg.timeout = 0.0;
    cfg.shared = &g_sc;
    g_sc.name = "stress";
    for (i = 0; i < PROCS; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            pf_breaker_t *b = NULL;
            unsigned seed = (unsigned)getpid();
            int bad = 0;

            if (pf_breaker_new(&cfg, &b) != 0) {
                _exit(1);
            }
            for (int n = 0; n < CALLS; n++) {
                pf_permit_t p = PF_PERMIT_INIT;
                pf_breaker_metrics_t m;

                if (pf_breaker_acquire(b, &p) != 0) {
                    continue;
                }
                if ((n & 63) == 0) {
                    pf_breaker_metrics(b, &m);
                    bad |= m.half_open_in_flight > 2;
                }
                pf_breaker_record(b, &p, rand_r(&seed) % 3 == 0 ? -1 : 0);
            }
            pf_breaker_free(b);
            _exit(bad ? 2 : 0);
        }
    }
    for (i = 0; i < PROCS; i++) {
        assert_int_equal(wait_child(pids[i]), 0);
    }
    {
        pf_breaker_t *b = NULL;
        pf_breaker_metrics_t m;

        assert_pf_ok(pf_breaker_new(&cfg, &b));
        pf_breaker_metrics(b, &m);
        assert_int_equal(m.half_open_in_flight, 0);
        assert_true(m.transitions > 0);
        pf_breaker_free(b);
    }
    g_sc.name = "payments";
}

#define THREADS 4

static void *
hammer(void *arg)
{
    pf_breaker_t *b = arg;
    unsigned seed = (unsigned)(uintptr_t)&seed;
    long bad = 0;

    for (int n = 0; n < CALLS / 4; n++) {
        pf_permit_t p = PF_PERMIT_INIT;
        pf_breaker_metrics_t m;

        if (pf_breaker_acquire(b, &p) != 0) {
            continue;
        }
        if ((n & 63) == 0) {
            pf_breaker_metrics(b, &m);
            bad |= m.half_open_in_flight > 2;
        }
        pf_breaker_record(b, &p, rand_r(&seed) % 3 == 0 ? -1 : 0);
    }
    return (void *)bad;
}

/* Threads of one process on one shared breaker (each through a breaker
 * object of its own on the same segment, and two on the same object):
 * the same invariants, and what the thread sanitizer checks. */
static void
test_shared_breaker_threads_share_it_too(void **state)
{
    pf_breaker_config_t cfg;
    pf_breaker_t *b[THREADS];
    pthread_t th[THREADS];
    pf_breaker_metrics_t m;
    int i;

    (void)state;
    pf_breaker_config_init(&cfg);
    cfg.name = "threads";
    cfg.failure_threshold = 2;
    cfg.recovery_timeout = 0.0001;
    cfg.success_threshold = 2;
    cfg.half_open_max_calls = 2;
    cfg.timeout = 0.0;
    cfg.shared = &g_sc;
    for (i = 0; i < THREADS - 1; i++) {
        assert_pf_ok(pf_breaker_new(&cfg, &b[i]));
    }
    b[THREADS - 1] = b[0];
    for (i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_create(&th[i], NULL, hammer, b[i]), 0);
    }
    for (i = 0; i < THREADS; i++) {
        void *bad = NULL;

        pthread_join(th[i], &bad);
        assert_null(bad);
    }
    pf_breaker_metrics(b[0], &m);
    assert_int_equal(m.half_open_in_flight, 0);
    for (i = 0; i < THREADS - 1; i++) {
        pf_breaker_free(b[i]);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_shared_breaker_trip_in_one_process_is_seen_by_all, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_shared_breaker_counts_failures_of_every_process, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_shared_breaker_state_survives_and_can_be_reset, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_shared_breaker_trial_of_a_killed_process_comes_back, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_shared_breaker_refuses_bad_configs_and_files, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_shared_breaker_stress_never_exceeds_its_trials, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_shared_breaker_threads_share_it_too, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
