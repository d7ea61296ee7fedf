/* fork(): a child has none of its parent's threads. The runtime re-creates
 * what it needs there (the default executor, the worker pool) and stops
 * what it cannot keep (tickers), and the parent carries on unchanged.
 * Each test forks a real child that reports through its exit status. */
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "puffinflow/agent.h"
#include "puffinflow/retry.h"
#include "puffinflow/executor.h"

#include "agent_testutil.h"
#include "test.h"
#include "ticker.h"

/* ---- helpers ---------------------------------------------------------- */

/* Run an agent on the default executor whose one state fails its first
 * attempt and is retried after a 1 ms backoff timer. Returns 0 when the
 * run completed after exactly two attempts. */
static int
run_retrying_agent(void)
{
    static const pf_backoff_t one_ms = {.initial_delay = 0.001,
                                        .multiplier = 1.0,
                                        .max_delay = 0.001,
                                        .jitter = PF_JITTER_NONE};
    spec_t s = {0};
    pf_state_opts_t o;
    pf_agent_t *a = NULL;
    pf_run_result_t res;
    int rc;

    s.fail_first = 1;
    s.code = -1;
    pf_state_opts_init(&o);
    o.max_retries = 3;
    o.backoff = &one_ms;
    if (pf_agent_new("forked", &a) != 0) {
        return 1;
    }
    rc = pf_agent_add_state(a, "s", spec_fn, &s, &o);
    if (rc == 0) {
        rc = pf_agent_run(a, NULL, &res);
        if (rc == 0) {
            pf_run_result_free(&res);
        }
    }
    pf_agent_free(a);
    if (rc != 0) {
        return 2;
    }
    return atomic_load(&s.calls) == 2 ? 0 : 3;
}

static int
wait_child(pid_t pid)
{
    int status = 0;

    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static atomic_int g_ticks;

static void
count_tick(void *arg)
{
    (void)arg;
    atomic_fetch_add(&g_ticks, 1);
}

/* ---- tests ------------------------------------------------------------ */

/* The parent has a default executor with its reactor and workers running;
 * the child's run needs a backoff timer, so it hangs unless the child gets
 * an executor of its own. The parent's keeps working afterwards. */
static void
test_fork_child_runs_an_agent_with_a_retry_timer(void **state)
{
    pid_t pid;

    (void)state;
#ifdef PF_TEST_FORK_UNSAFE
    skip(); /* see PF_TEST_FORK_UNSAFE in test.h */
#endif
    assert_int_equal(run_retrying_agent(), 0); /* the parent's executor */
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        _exit(run_retrying_agent());
    }
    assert_int_equal(wait_child(pid), 0);
    assert_int_equal(run_retrying_agent(), 0);
}

/* A child may fork again: each generation makes its own executor. */
static void
test_fork_grandchild_runs_an_agent_too(void **state)
{
    pid_t pid;

    (void)state;
#ifdef PF_TEST_FORK_UNSAFE
    skip(); /* see PF_TEST_FORK_UNSAFE in test.h */
#endif
    assert_int_equal(run_retrying_agent(), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        pid_t inner;
        int status = 0;

        if (run_retrying_agent() != 0) {
            _exit(10);
        }
        inner = fork();
        if (inner < 0) {
            _exit(11);
        }
        if (inner == 0) {
            _exit(run_retrying_agent());
        }
        if (waitpid(inner, &status, 0) != inner || !WIFEXITED(status)) {
            _exit(12);
        }
        _exit(WEXITSTATUS(status));
    }
    assert_int_equal(wait_child(pid), 0);
}

/* An executor the parent made is released, not joined, by a child's
 * pf_executor_free (its threads are not in the child). */
static void
test_fork_child_frees_a_parent_executor(void **state)
{
    pf_executor_t *ex = executor_on(NULL, 2);
    pid_t pid;

    (void)state;
#ifdef PF_TEST_FORK_UNSAFE
    pf_executor_free(ex);
    skip(); /* see PF_TEST_FORK_UNSAFE in test.h */
#endif
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        pf_executor_free(ex); /* returns at once: nothing to join */
        _exit(0);
    }
    assert_int_equal(wait_child(pid), 0);
    pf_executor_free(ex); /* the parent's, threads and all */
}

/* A ticker running in the parent is stopped in the child; the child can
 * start it again on a thread of its own, stop and destroy it. */
static void
test_fork_ticker_is_stopped_in_the_child_and_restarts(void **state)
{
    pf__ticker_t t;
    pid_t pid;

    (void)state;
#ifdef PF_TEST_FORK_UNSAFE
    skip(); /* see PF_TEST_FORK_UNSAFE in test.h */
#endif
    atomic_store(&g_ticks, 0);
    /* INT64_MAX: the first tick, then it waits for the stop alone. */
    assert_pf_ok(pf__ticker_init(&t, NULL, INT64_MAX, count_tick, NULL));
    assert_pf_ok(pf__ticker_start(&t));
    while (atomic_load(&g_ticks) == 0) {
        sched_yield();
    }
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (pf__ticker_running(&t)) {
            _exit(1);
        }
        if (pf__ticker_stop(&t) != PF_ESTATE) {
            _exit(2);
        }
        atomic_store(&g_ticks, 0);
        if (pf__ticker_start(&t) != 0) {
            _exit(3);
        }
        while (atomic_load(&g_ticks) == 0) {
            sched_yield();
        }
        if (pf__ticker_stop(&t) != 0) {
            _exit(4);
        }
        pf__ticker_destroy(&t);
        _exit(0);
    }
    assert_int_equal(wait_child(pid), 0);
    assert_true(pf__ticker_running(&t)); /* the parent's still runs */
    assert_pf_ok(pf__ticker_stop(&t));
    pf__ticker_destroy(&t);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fork_child_runs_an_agent_with_a_retry_timer),
        cmocka_unit_test(test_fork_grandchild_runs_an_agent_too),
        cmocka_unit_test(test_fork_child_frees_a_parent_executor),
        cmocka_unit_test(test_fork_ticker_is_stopped_in_the_child_and_restarts),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
