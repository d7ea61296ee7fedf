/* A bulkhead shared by processes through a shared-memory segment
 * (bulkhead.h, config field shared; docs/shared.md). Real processes made
 * with fork(): the limit holds across all of them (a stress test counts
 * who is inside in memory shared by the processes), the slots of a process
 * killed with SIGKILL come back, a full shared bulkhead refuses at once
 * rather than queue, and processes must agree on the limit. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "puffinflow/bulkhead.h"
#include "puffinflow/clock.h"
#include "puffinflow/shared.h"

#include "shm_testutil.h"
#include "test.h"

#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif

static int
setup(void **state)
{
    (void)state;
    return shm_fixture_setup("db", 0);
}

static int
teardown(void **state)
{
    (void)state;
    return shm_fixture_teardown();
}

static pf_bulkhead_t *
open_bulkhead(unsigned limit)
{
    pf_bulkhead_config_t cfg;
    pf_bulkhead_t *bh = NULL;

    pf_bulkhead_config_init(&cfg);
    cfg.name = "db";
    cfg.max_concurrent_calls = limit;
    cfg.clock = g_clock;
    cfg.shared = &g_sc;
    assert_pf_ok(pf_bulkhead_new(&cfg, &bh));
    return bh;
}

/* ---- tests ------------------------------------------------------------ */

/* Slots taken in one process count in the other; a full shared bulkhead
 * refuses at once on every face (it never queues); a leave anywhere frees
 * a slot for everyone. */
static void
test_shared_bulkhead_limit_holds_across_processes(void **state)
{
    pf_bulkhead_t *bh = open_bulkhead(2);
    pf_bulkhead_metrics_t m;
    int to_child[2];
    int to_parent[2];
    unsigned n;
    char c;
    pid_t pid;

    (void)state;
    assert_int_equal(pipe(to_child), 0);
    assert_int_equal(pipe(to_parent), 0);
    assert_pf_ok(pf_bulkhead_try_enter(bh));
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        pf_bulkhead_t *mine = open_bulkhead(2);
        int rc = pf_bulkhead_try_enter(mine);

        if (rc != 0 || pf_bulkhead_try_enter(mine) != PF_EFULL ||
            pf_bulkhead_enter(mine) != PF_EFULL) {
            _exit(1);
        }
        if (write(to_parent[1], "in", 2) != 2 ||
            read(to_child[0], &c, 1) != 1) {
            _exit(2);
        }
        pf_bulkhead_leave(mine);
        if (write(to_parent[1], "o", 1) != 1) {
            _exit(3);
        }
        pf_bulkhead_free(mine);
        _exit(0);
    }
    assert_int_equal(read(to_parent[0], &c, 1), 1);
    assert_int_equal(read(to_parent[0], &c, 1), 1);
    assert_pf_ok(pf_bulkhead_shared_in_use(bh, &n));
    assert_int_equal(n, 2); /* one here, one in the child */
    pf_bulkhead_metrics(bh, &m);
    assert_int_equal(m.in_use, 1); /* this process's only */
    assert_pf_err(pf_bulkhead_try_enter(bh), PF_EFULL);
    assert_pf_err(pf_bulkhead_enter(bh), PF_EFULL); /* no queue */
    assert_int_equal(write(to_child[1], "x", 1), 1);
    assert_int_equal(read(to_parent[0], &c, 1), 1);
    assert_pf_ok(pf_bulkhead_shared_in_use(bh, &n));
    assert_int_equal(n, 1); /* the child left */
    assert_pf_ok(pf_bulkhead_try_enter(bh));
    assert_int_equal(wait_child(pid), 0);
    pf_bulkhead_leave(bh);
    pf_bulkhead_leave(bh);
    pf_bulkhead_free(bh);
    close(to_child[0]);
    close(to_child[1]);
    close(to_parent[0]);
    close(to_parent[1]);
}

/* A child takes every slot and is killed holding them: while it lives the
 * parent is refused; once it is gone the parent's next call (a
 * millisecond on, when holders may be checked again) gets them all back. */
static void
test_shared_bulkhead_slots_of_a_killed_process_come_back(void **state)
{
    pf_bulkhead_t *bh = open_bulkhead(3);
    int ready[2];
    unsigned n;
    char c;
    pid_t pid;
    int status = 0;

    (void)state;
    assert_int_equal(pipe(ready), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        pf_bulkhead_t *mine = open_bulkhead(3);

        for (int i = 0; i < 3; i++) {
            if (pf_bulkhead_try_enter(mine) != 0) {
                _exit(1);
            }
        }
        if (write(ready[1], "r", 1) != 1) {
            _exit(2);
        }
        for (;;) {
            pause();
        }
    }
    assert_int_equal(read(ready[0], &c, 1), 1);
    assert_pf_ok(pf_bulkhead_shared_in_use(bh, &n));
    assert_int_equal(n, 3);
    assert_pf_err(pf_bulkhead_try_enter(bh), PF_EFULL);
    assert_int_equal(kill(pid, SIGKILL), 0);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    /* its lease words are still set, but a dead holder is not counted */
    assert_pf_ok(pf_bulkhead_shared_in_use(bh, &n));
    assert_int_equal(n, 0);
    assert_pf_err(pf_bulkhead_try_enter(bh), PF_EFULL); /* checked < 1 ms ago */
    pf_clock_manual_advance(g_clock, NS_PER_MS);
    for (int i = 0; i < 3; i++) {
        assert_pf_ok(pf_bulkhead_try_enter(bh));
    }
    assert_pf_err(pf_bulkhead_try_enter(bh), PF_EFULL);
    for (int i = 0; i < 3; i++) {
        pf_bulkhead_leave(bh);
    }
    pf_bulkhead_free(bh);
    close(ready[0]);
    close(ready[1]);
}

static void
test_shared_bulkhead_refuses_bad_configs(void **state)
{
    pf_bulkhead_config_t cfg;
    pf_bulkhead_t *bh = open_bulkhead(4);
    pf_bulkhead_t *other = NULL;
    pf_shared_config_t bad = g_sc;
    unsigned n;

    (void)state;
    pf_bulkhead_config_init(&cfg);
    cfg.name = "db";
    cfg.max_concurrent_calls = 5;
    cfg.shared = &g_sc;
    assert_pf_err(pf_bulkhead_new(&cfg, &other), PF_EEXIST);
    cfg.max_concurrent_calls = 5000;
    assert_pf_err(pf_bulkhead_new(&cfg, &other), PF_EINVAL);
    cfg.max_concurrent_calls = 4;
    bad.name = "../x";
    cfg.shared = &bad;
    assert_pf_err(pf_bulkhead_new(&cfg, &other), PF_EINVAL);
    assert_null(other);
    /* the count across processes: NULL arguments, a bulkhead not shared */
    n = 7;
    assert_pf_err(pf_bulkhead_shared_in_use(NULL, &n), PF_EINVAL);
    assert_pf_err(pf_bulkhead_shared_in_use(bh, NULL), PF_EINVAL);
    cfg.shared = NULL;
    assert_pf_ok(pf_bulkhead_new(&cfg, &other));
    assert_pf_err(pf_bulkhead_shared_in_use(other, &n), PF_EINVAL);
    assert_int_equal(n, 7); /* untouched */
    pf_bulkhead_free(other);
    assert_pf_ok(pf_bulkhead_shared_in_use(bh, &n));
    assert_int_equal(n, 0);
    pf_bulkhead_free(bh);
}

#define PROCS 4
#define THREADS 2
#define ROUNDS 20000
#define LIMIT 3

typedef struct board {
    atomic_int inside;
    atomic_int peak;
    atomic_long admitted;
} board_t;

static board_t *g_board; /* MAP_SHARED | MAP_ANONYMOUS, seen by children */

static void *
hammer(void *arg)
{
    pf_bulkhead_t *bh = arg;

    for (int i = 0; i < ROUNDS; i++) {
        int n;
        int p;

        if (pf_bulkhead_try_enter(bh) != 0) {
            continue;
        }
        n = atomic_fetch_add(&g_board->inside, 1) + 1;
        p = atomic_load(&g_board->peak);
        while (n > p && !atomic_compare_exchange_weak(&g_board->peak, &p, n)) {
        }
        atomic_fetch_add(&g_board->admitted, 1);
        atomic_fetch_sub(&g_board->inside, 1);
        pf_bulkhead_leave(bh);
    }
    return NULL;
}

/* PROCS processes of THREADS threads each enter and leave as fast as they
 * can: the number inside, counted in memory all of them share, never
 * exceeds the limit, and at the end every lease is free. */
static void
test_shared_bulkhead_stress_never_exceeds_the_limit(void **state)
{
    pid_t pids[PROCS];
    pf_bulkhead_t *bh;

    (void)state;
#ifdef UNDER_TSAN
    skip(); /* TSan does not support threads started after fork() */
#endif
    g_board = mmap(NULL, sizeof(*g_board), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(g_board != MAP_FAILED);
    memset(g_board, 0, sizeof(*g_board));
    for (int i = 0; i < PROCS; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            pf_bulkhead_t *mine = open_bulkhead(LIMIT);
            pthread_t th[THREADS];

            for (int t = 0; t < THREADS; t++) {
                if (pthread_create(&th[t], NULL, hammer, mine) != 0) {
                    _exit(1);
                }
            }
            for (int t = 0; t < THREADS; t++) {
                pthread_join(th[t], NULL);
            }
            pf_bulkhead_free(mine);
            _exit(0);
        }
    }
    for (int i = 0; i < PROCS; i++) {
        assert_int_equal(wait_child(pids[i]), 0);
    }
    assert_true(atomic_load(&g_board->peak) <= LIMIT);
    assert_true(atomic_load(&g_board->peak) >= 1);
    assert_true(atomic_load(&g_board->admitted) > 0);
    assert_int_equal(atomic_load(&g_board->inside), 0);
    bh = open_bulkhead(LIMIT);
    for (int i = 0; i < LIMIT; i++) {
        assert_pf_ok(pf_bulkhead_try_enter(bh)); /* nothing leaked */
    }
    for (int i = 0; i < LIMIT; i++) {
        pf_bulkhead_leave(bh);
    }
    pf_bulkhead_free(bh);
    munmap(g_board, sizeof(*g_board));
}

/* Threads of one process, two bulkhead objects on the same segment: the
 * same invariant, and what the thread sanitizer checks. */
static void
test_shared_bulkhead_threads_never_exceed_the_limit(void **state)
{
    static board_t board;
    pf_bulkhead_t *bh[2];
    pthread_t th[4];

    (void)state;
    memset(&board, 0, sizeof(board));
    g_board = &board;
    bh[0] = open_bulkhead(LIMIT);
    bh[1] = open_bulkhead(LIMIT);
    for (int t = 0; t < 4; t++) {
        assert_int_equal(pthread_create(&th[t], NULL, hammer, bh[t % 2]), 0);
    }
    for (int t = 0; t < 4; t++) {
        pthread_join(th[t], NULL);
    }
    assert_true(atomic_load(&board.peak) <= LIMIT);
    assert_true(atomic_load(&board.admitted) > 0);
    assert_int_equal(atomic_load(&board.inside), 0);
    for (int i = 0; i < LIMIT; i++) {
        assert_pf_ok(pf_bulkhead_try_enter(bh[i % 2])); /* nothing leaked */
    }
    for (int i = 0; i < LIMIT; i++) {
        pf_bulkhead_leave(bh[i % 2]);
    }
    pf_bulkhead_free(bh[0]);
    pf_bulkhead_free(bh[1]);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_shared_bulkhead_limit_holds_across_processes, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_shared_bulkhead_slots_of_a_killed_process_come_back, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_shared_bulkhead_refuses_bad_configs, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_shared_bulkhead_stress_never_exceeds_the_limit, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_shared_bulkhead_threads_never_exceed_the_limit, setup,
            teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
