/* A rate limiter shared by processes through a shared-memory segment
 * (ratelimit.h, config field shared; docs/shared.md). Real processes made
 * with fork(): permits taken in one are gone for the others; the total
 * granted by 4 processes hammering one bucket on the system clock stays
 * within the bucket's promise; limiters in one process (threads) share it
 * too; a clock that started again (a reboot) starts a full bucket; and
 * processes must agree on the rate and burst. */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "puffinflow/bulkhead.h"
#include "puffinflow/clock.h"
#include "puffinflow/ratelimit.h"
#include "puffinflow/shared.h"

#include "shm_testutil.h"
#include "test.h"

#define SEC INT64_C(1000000000)

static int
setup(void **state)
{
    (void)state;
    return shm_fixture_setup("api", 1000 * SEC);
}

static int
teardown(void **state)
{
    (void)state;
    return shm_fixture_teardown();
}

static void
config(pf_ratelimit_config_t *cfg, double rate, unsigned burst,
       const pf_clock_t *clock)
{
    pf_ratelimit_config_init(cfg);
    cfg->name = "api";
    cfg->rate = rate;
    cfg->burst = burst;
    cfg->clock = clock;
    cfg->shared = &g_sc;
}

static pf_ratelimit_t *
open_limiter(double rate, unsigned burst, const pf_clock_t *clock)
{
    pf_ratelimit_config_t cfg;
    pf_ratelimit_t *rl = NULL;

    config(&cfg, rate, burst, clock);
    assert_pf_ok(pf_ratelimit_new(&cfg, &rl));
    return rl;
}

static int64_t
mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * SEC + ts.tv_nsec;
}

/* ---- tests ------------------------------------------------------------ */

/* The parent takes 3 of 5 permits; a child (its copy of the manual clock
 * reads the same time) finds 2 left, and takes them; the parent then
 * finds none, until the clock pays one back. */
static void
test_shared_limiter_permits_taken_in_one_process_are_gone_for_all(
    void **state)
{
    pf_ratelimit_t *rl = open_limiter(10.0, 5, g_clock);
    pf_ratelimit_metrics_t m;
    pid_t pid;

    (void)state;
    assert_pf_ok(pf_ratelimit_try_acquire(rl, 3));
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        pf_ratelimit_t *mine = open_limiter(10.0, 5, g_clock);

        if (pf_ratelimit_try_acquire(mine, 3) != PF_ERATELIMIT ||
            pf_ratelimit_time_until_ns(mine, 3) != SEC / 10) {
            _exit(1);
        }
        if (pf_ratelimit_try_acquire(mine, 2) != 0 ||
            pf_ratelimit_try_acquire(mine, 1) != PF_ERATELIMIT) {
            _exit(2);
        }
        pf_ratelimit_free(mine);
        _exit(0);
    }
    assert_int_equal(wait_child(pid), 0);
    assert_pf_err(pf_ratelimit_try_acquire(rl, 1), PF_ERATELIMIT);
    assert_int_equal(pf_ratelimit_time_until_ns(rl, 1), SEC / 10);
    pf_ratelimit_metrics(rl, &m);
    assert_int_equal(m.available, 0);
    assert_int_equal(m.acquired, 3); /* this process's count */
    assert_int_equal(m.rejected, 1);
    pf_clock_manual_advance(g_clock, SEC / 10);
    assert_pf_ok(pf_ratelimit_try_acquire(rl, 1));
    assert_pf_err(pf_ratelimit_try_acquire(rl, 1), PF_ERATELIMIT);
    pf_ratelimit_free(rl);
}

/* Two limiters of one process on one name are one bucket; reservations
 * queue across them; the bucket outlives every limiter (the debt is still
 * there when the name is opened again) until the segment is removed. */
static void
test_shared_limiter_state_survives_and_can_be_removed(void **state)
{
    pf_ratelimit_t *a = open_limiter(100.0, 2, g_clock);
    pf_ratelimit_t *b = open_limiter(100.0, 2, g_clock);
    int64_t wait_ns = -1;

    (void)state;
    assert_pf_ok(pf_ratelimit_try_acquire(a, 2));
    assert_pf_err(pf_ratelimit_try_acquire(b, 1), PF_ERATELIMIT);
    assert_pf_ok(pf_ratelimit_reserve(b, 1, 1.0, &wait_ns));
    assert_int_equal(wait_ns, SEC / 100);
    assert_pf_ok(pf_ratelimit_reserve(a, 1, 1.0, &wait_ns));
    assert_int_equal(wait_ns, 2 * SEC / 100); /* queued behind b's */
    pf_ratelimit_refund(a, 1);
    pf_ratelimit_free(a);
    pf_ratelimit_free(b);
    a = open_limiter(100.0, 2, g_clock);
    assert_int_equal(pf_ratelimit_time_until_ns(a, 1), 2 * SEC / 100);
    pf_clock_manual_advance(g_clock, 2 * SEC / 100);
    assert_pf_ok(pf_ratelimit_try_acquire(a, 1));
    pf_ratelimit_free(a);
    assert_pf_ok(pf_shared_remove(&g_sc));
    a = open_limiter(100.0, 2, g_clock);
    assert_pf_ok(pf_ratelimit_try_acquire(a, 2)); /* a fresh, full bucket */
    pf_ratelimit_free(a);
}

/* A segment whose last write is far in the clock's future (the clock
 * started again: a reboot, with the file kept in a folder on disk) is
 * opened as a full bucket instead of a debt that would last the old
 * uptime. */
static void
test_shared_limiter_clock_started_again_gives_a_full_bucket(void **state)
{
    pf_ratelimit_t *rl = open_limiter(1.0, 3, g_clock);
    pf_clock_t *after; /* the clock after the reboot: it starts low */

    (void)state;
    assert_pf_ok(pf_ratelimit_try_acquire(rl, 3));
    pf_ratelimit_free(rl);
    assert_pf_ok(pf_clock_manual_new(&after));
    pf_clock_manual_set(after, 5 * SEC);
    rl = open_limiter(1.0, 3, after);
    assert_int_equal(pf_ratelimit_time_until_ns(rl, 3), 0);
    assert_pf_ok(pf_ratelimit_try_acquire(rl, 3));
    assert_pf_err(pf_ratelimit_try_acquire(rl, 1), PF_ERATELIMIT);
    pf_ratelimit_free(rl);
    pf_clock_free(after);
}

/* Processes sharing a name must agree on rate and burst; a bad name or
 * mode is PF_EINVAL; another object's segment, a damaged or a truncated
 * file is PF_EFORMAT; nothing is created on error. */
static void
test_shared_limiter_refuses_bad_configs_and_files(void **state)
{
    pf_ratelimit_config_t cfg;
    pf_ratelimit_t *rl = open_limiter(10.0, 5, g_clock);
    pf_ratelimit_t *c = NULL;
    pf_shared_config_t bad;
    char path[256];
    int fd;

    (void)state;
    config(&cfg, 20.0, 5, g_clock);
    assert_pf_err(pf_ratelimit_new(&cfg, &c), PF_EEXIST);
    config(&cfg, 10.0, 6, g_clock);
    assert_pf_err(pf_ratelimit_new(&cfg, &c), PF_EEXIST);
    bad = g_sc;
    bad.name = "no/slash";
    config(&cfg, 10.0, 5, g_clock);
    cfg.shared = &bad;
    assert_pf_err(pf_ratelimit_new(&cfg, &c), PF_EINVAL);
    bad = g_sc;
    bad.name = NULL;
    assert_pf_err(pf_ratelimit_new(&cfg, &c), PF_EINVAL);
    bad = g_sc;
    bad.mode = 0755;
    assert_pf_err(pf_ratelimit_new(&cfg, &c), PF_EINVAL);
    config(&cfg, 0.0, 5, g_clock); /* the usual checks come first */
    assert_pf_err(pf_ratelimit_new(&cfg, &c), PF_EINVAL);
    assert_null(c);
    {
        pf_bulkhead_config_t bc;
        pf_bulkhead_t *bh = NULL;

        pf_bulkhead_config_init(&bc);
        bc.shared = &g_sc; /* the limiter's segment */
        assert_pf_err(pf_bulkhead_new(&bc, &bh), PF_EFORMAT);
        assert_null(bh);
    }
    pf_ratelimit_free(rl);
    snprintf(path, sizeof(path), "%s/puffinflow-api.shm", g_dir);
    fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, "X", 1, 3), 1); /* the magic */
    close(fd);
    config(&cfg, 10.0, 5, g_clock);
    assert_pf_err(pf_ratelimit_new(&cfg, &c), PF_EFORMAT);
    assert_int_equal(truncate(path, 64), 0);
    assert_pf_err(pf_ratelimit_new(&cfg, &c), PF_EFORMAT);
    assert_null(c);
}

#define PROCS 4
#define RATE 1000.0
#define BURST 10u
#define RUN_NS (SEC / 2)

/* PROCS processes take single permits from one bucket on the system clock
 * as fast as they can for half a second. The total is within the bucket's
 * promise over the whole time the bucket existed: burst + rate x elapsed
 * (plus rate x the coarse clock's resolution, which a limiter reading the
 * coarse clock may add: docs/ratelimit.md). The lower bound is loose on
 * purpose (a fifth of the rate): it only shows the processes were
 * granted permits all along, on a machine that may be busy. */
static void
test_shared_limiter_total_rate_holds_across_processes(void **state)
{
    _Atomic uint64_t *counts;
    pf_ratelimit_t *rl;
    struct timespec res;
    int64_t t0;
    int64_t t1;
    int64_t end;
    pid_t pids[PROCS];
    uint64_t total = 0;
    double bound;

    (void)state;
    counts = mmap(NULL, PROCS * sizeof(*counts), PROT_READ | PROT_WRITE,
                  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(counts != MAP_FAILED);
    t0 = mono_ns();
    rl = open_limiter(RATE, BURST, NULL); /* creates the full bucket */
    end = t0 + RUN_NS;
    for (int i = 0; i < PROCS; i++) {
        atomic_init(&counts[i], 0);
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            pf_ratelimit_t *mine = open_limiter(RATE, BURST, NULL);

            while (mono_ns() < end) {
                if (pf_ratelimit_try_acquire(mine, 1) == 0) {
                    atomic_fetch_add(&counts[i], 1);
                }
            }
            pf_ratelimit_free(mine);
            _exit(0);
        }
    }
    for (int i = 0; i < PROCS; i++) {
        assert_int_equal(wait_child(pids[i]), 0);
        total += atomic_load(&counts[i]);
    }
    t1 = mono_ns();
    assert_int_equal(clock_getres(CLOCK_MONOTONIC_COARSE, &res), 0);
    bound = (double)BURST + RATE * ((double)(t1 - t0) / 1e9) +
            RATE * ((double)res.tv_nsec / 1e9) + 1.0;
    printf("total %llu permits in %.3f s (bound %.1f)\n",
           (unsigned long long)total, (double)(t1 - t0) / 1e9, bound);
    assert_true((double)total <= bound);
    assert_true(total >= (uint64_t)(RATE * 0.5 / 5));
    pf_ratelimit_free(rl);
    munmap(counts, PROCS * sizeof(*counts));
}

#define THREADS 4

typedef struct worker {
    pf_ratelimit_t *rl;
    unsigned granted;
} worker_t;

static void *
take_all(void *arg)
{
    worker_t *w = arg;

    for (int i = 0; i < 2000; i++) {
        if (pf_ratelimit_try_acquire(w->rl, 1) == 0) {
            w->granted++;
        }
    }
    return NULL;
}

/* Threads on limiters of one process sharing one name (two objects, one
 * bucket), the manual clock standing still: exactly burst permits in all
 * (also a run for the thread sanitizer). */
static void
test_shared_limiter_threads_share_it_too(void **state)
{
    pf_ratelimit_t *a = open_limiter(5.0, 50, g_clock);
    pf_ratelimit_t *b = open_limiter(5.0, 50, g_clock);
    pthread_t th[THREADS];
    worker_t w[THREADS];
    unsigned total = 0;

    (void)state;
    for (int i = 0; i < THREADS; i++) {
        w[i].rl = i % 2 == 0 ? a : b;
        w[i].granted = 0;
        assert_int_equal(pthread_create(&th[i], NULL, take_all, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        total += w[i].granted;
    }
    assert_int_equal(total, 50);
    pf_ratelimit_free(a);
    pf_ratelimit_free(b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_shared_limiter_permits_taken_in_one_process_are_gone_for_all,
            setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_shared_limiter_state_survives_and_can_be_removed, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_shared_limiter_clock_started_again_gives_a_full_bucket,
            setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_shared_limiter_refuses_bad_configs_and_files, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_shared_limiter_total_rate_holds_across_processes, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_shared_limiter_threads_share_it_too, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
