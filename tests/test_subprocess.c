/* Child processes on the reactor, with real processes: exit statuses, a
 * manual-clock deadline that kills the child, a group that ignores SIGTERM
 * killed (grandchildren too) after the grace period, leftovers of a
 * command that exited (done as soon as they obey SIGTERM, not after the
 * grace period), abort, the executor's shutdown, a command that does
 * not exist, bad input, allocation failures, and 200 children on 2
 * workers each completed and reaped exactly once. */
#include <errno.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "puffinflow/agent.h"
#include "puffinflow/deadline.h"
#include "puffinflow/executor.h"
#include "puffinflow/subprocess.h"

#include "spawn_impl.h"
#include "proc_testutil.h"
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

/* What one command's done saw. */
typedef struct outcome {
    atomic_int calls;
    pf_subprocess_result_t r;
} outcome_t;

static void
record(const pf_subprocess_result_t *r, void *arg)
{
    outcome_t *o = arg;

    o->r = *r;
    atomic_fetch_add(&o->calls, 1); /* seq_cst: publishes o->r */
}

static void
never(const pf_subprocess_result_t *r, void *arg)
{
    (void)r;
    (void)arg;
    fail_msg("done called for a spawn that failed");
}

/* Whether /proc has pid at all (a zombie counts). */
static bool
process_exists(pid_t pid)
{
    char path[64];

    snprintf(path, sizeof(path), "/proc/%d", (int)pid);
    return access(path, F_OK) == 0;
}

/* A scratch file a command writes process ids to. */
typedef struct pid_log {
    char dir[64];
    char file[96];
} pid_log_t;

static void
pid_log_make(pid_log_t *l)
{
    snprintf(l->dir, sizeof(l->dir), "/tmp/pf_sub_XXXXXX");
    assert_non_null(mkdtemp(l->dir));
    snprintf(l->file, sizeof(l->file), "%s/pids", l->dir);
}

/* Wait (30 s safety net, never a timing assertion) until l's file holds
 * n pids, and read them. */
static void
pid_log_wait(const pid_log_t *l, pid_t *pids, size_t n)
{
    int tries;

    for (tries = 0; tries < 3000; tries++) {
        struct timespec nap = {0, 10000000};
        FILE *f = fopen(l->file, "r");
        size_t got = 0;
        int pid;

        if (f != NULL) {
            while (got < n && fscanf(f, "%d", &pid) == 1) {
                pids[got++] = (pid_t)pid;
            }
            fclose(f);
            if (got == n) {
                return;
            }
        }
        nanosleep(&nap, NULL);
    }
    fail_msg("the command never wrote its pids");
}

static void
pid_log_remove(const pid_log_t *l)
{
    unlink(l->file);
    rmdir(l->dir);
}

/* Wait until pid no longer runs (SIGKILL needs a moment of CPU), with the
 * 30 s safety net; kill it if it still runs, so a failing test leaves
 * nothing behind. */
static bool
gone(pid_t pid)
{
    int tries;

    for (tries = 0; tries < 3000 && process_runs(pid); tries++) {
        struct timespec nap = {0, 10000000};

        nanosleep(&nap, NULL);
    }
    if (process_runs(pid)) {
        kill(pid, SIGKILL);
        return false;
    }
    return true;
}

/* No child of this process is left unreaped. */
static void
assert_no_children(void)
{
    int status;

    assert_int_equal(waitpid(-1, &status, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
}

/* Spin until the executor has a timer due at `at` (the grace timer). */
static void
wait_for_timer_at(pf_executor_t *ex, int64_t at)
{
    int tries;

    for (tries = 0; tries < 3000000; tries++) {
        if (pf_executor_next_timer_ns(ex) == at) {
            return;
        }
        sched_yield();
    }
    fail_msg("no timer armed at %lld", (long long)at);
}

/* Make a pid log, start sh -c SCRIPT on ex with $1 = the log's file
 * (SCRIPT appends process ids to it), and wait until it holds n pids. */
static void
spawn_logged(pf_executor_t *ex, pid_log_t *log, const char *script,
             const pf_subprocess_opts_t *opts, const pf_deadline_t *d,
             outcome_t *o, pid_t *pids, size_t n)
{
    const char *argv[] = {"sh", "-c", script, "sh", log->file, NULL};

    pid_log_make(log);
    assert_pf_ok(pf_executor_spawn(ex, argv, opts, d, record, o, NULL));
    pid_log_wait(log, pids, n);
}

/* Free ex, remove the pid log and check that no child is left. */
static void
finish_logged(pf_executor_t *ex, const pid_log_t *log)
{
    pf_executor_free(ex);
    pid_log_remove(log);
    assert_no_children();
}

static void
test_subprocess_reports_exit_status(void **state)
{
    const char *ok[] = {"true", NULL};
    const char *three[] = {"sh", "-c", "exit 3", NULL};
    pf_executor_t *ex = make(*state, 2);
    outcome_t a = {0};
    outcome_t b = {0};
    pf_subprocess_t *p;

    assert_pf_ok(pf_executor_spawn(ex, ok, NULL, NULL, record, &a, &p));
    assert_true(pf_subprocess_pid(p) > 0);
    assert_pf_ok(pf_executor_spawn(ex, three, NULL, NULL, record, &b, NULL));
    pf_test_wait_for_flag(&a.calls, 1);
    pf_test_wait_for_flag(&b.calls, 1);
    assert_int_equal(a.r.result, 0);
    assert_int_equal(a.r.exit_code, 0);
    assert_int_equal(a.r.term_signal, 0);
    assert_int_equal(a.r.pid, pf_subprocess_pid(p));
    assert_true(pf_subprocess_ended(p));
    assert_false(process_exists(a.r.pid)); /* reaped */
    assert_int_equal(b.r.result, 0);
    assert_int_equal(b.r.exit_code, 3);
    pf_subprocess_free(p);
    pf_executor_free(ex);
    assert_int_equal(atomic_load(&a.calls), 1);
    assert_int_equal(atomic_load(&b.calls), 1);
    assert_no_children();
}

static void
test_subprocess_manual_deadline_kills_child(void **state)
{
    pf_clock_t *clock = *state;
    const char *argv[] = {"sleep", "1000", NULL};
    pf_executor_t *ex = make(clock, 2);
    pf_deadline_t d = pf_deadline_in(clock, 1.0);
    outcome_t o = {0};
    pf_subprocess_t *p;
    pid_t pid;

    assert_pf_ok(pf_executor_spawn(ex, argv, NULL, &d, record, &o, &p));
    pid = (pid_t)pf_subprocess_pid(p);
    pf_clock_manual_advance(clock, NS_PER_SEC - 1);
    assert_true(process_runs(pid));
    assert_int_equal(atomic_load(&o.calls), 0);
    pf_clock_manual_advance(clock, 1); /* the deadline: SIGTERM */
    pf_test_wait_for_flag(&o.calls, 1);
    assert_int_equal(o.r.result, PF_ETIMEDOUT);
    assert_int_equal(o.r.exit_code, -1);
    assert_int_equal(o.r.term_signal, SIGTERM);
    assert_false(process_exists(pid));
    pf_subprocess_free(p);
    pf_executor_free(ex);
    assert_no_children();
}

static void
test_subprocess_ignoring_sigterm_killed_after_grace_with_grandchildren(
    void **state)
{
    pf_clock_t *clock = *state;
    pid_log_t log;
    pf_subprocess_opts_t opts;
    pf_executor_t *ex = make(clock, 2);
    pf_deadline_t d = pf_deadline_in(clock, 1.0);
    outcome_t o = {0};
    pid_t pids[2];
    int64_t t0 = pf_clock_now_ns(clock);

    pf_subprocess_opts_init(&opts);
    opts.kill_grace = 2.0;
    /* The shell and its sleep both ignore SIGTERM (an ignored signal stays
     * ignored across exec). */
    spawn_logged(ex, &log,
                 "trap '' TERM; sleep 1000 & echo $! >> \"$1\"; "
                 "echo $$ >> \"$1\"; wait",
                 &opts, &d, &o, pids, 2);
    pf_clock_manual_advance(clock, NS_PER_SEC); /* SIGTERM, ignored */
    wait_for_timer_at(ex, t0 + 3 * NS_PER_SEC); /* the grace timer */
    assert_true(process_runs(pids[0]));
    assert_true(process_runs(pids[1]));
    assert_int_equal(atomic_load(&o.calls), 0);
    pf_clock_manual_advance(clock, 2 * NS_PER_SEC); /* SIGKILL */
    pf_test_wait_for_flag(&o.calls, 1);
    assert_int_equal(o.r.result, PF_ETIMEDOUT);
    assert_int_equal(o.r.term_signal, SIGKILL);
    assert_int_equal(o.r.pid, pids[1]);
    assert_true(gone(pids[0])); /* the grandchild */
    assert_false(process_exists(pids[1]));
    finish_logged(ex, &log);
}

static void
test_subprocess_leftovers_are_ended_when_it_exits(void **state)
{
    pf_clock_t *clock = *state;
    pid_log_t log;
    pf_executor_t *ex = make(clock, 2);
    outcome_t o = {0};
    pid_t pid;

    spawn_logged(ex, &log, "trap '' TERM; sleep 1000 & echo $! >> \"$1\"",
                 NULL, NULL, &o, &pid, 1);
    /* The shell exits at once; its sleep (ignoring SIGTERM) is left, so
     * the grace timer (default 5 s) is armed before done. */
    pf_test_wait_for_waiters(clock, 1);
    assert_int_equal(atomic_load(&o.calls), 0);
    assert_true(process_runs(pid));
    pf_clock_manual_advance(clock, 5 * NS_PER_SEC);
    pf_test_wait_for_flag(&o.calls, 1);
    assert_int_equal(o.r.result, 0);
    assert_int_equal(o.r.exit_code, 0);
    assert_true(gone(pid));
    finish_logged(ex, &log);
}

/* A command that forks a grandchild (which obeys SIGTERM) and exits: the
 * grandchild gets SIGTERM at once, and done comes when it is gone, with
 * the manual clock never moved (the 5 s grace timer never fires). */
static void
test_subprocess_leftover_gone_on_sigterm_does_not_delay_done(void **state)
{
    pf_clock_t *clock = *state;
    pid_log_t log;
    pf_executor_t *ex = make(clock, 2);
    int64_t t0 = pf_clock_now_ns(clock);
    outcome_t o = {0};
    pid_t pid;

    spawn_logged(ex, &log, "sleep 1000 & echo $! >> \"$1\"; exit 4", NULL,
                 NULL, &o, &pid, 1);
    pf_test_wait_for_flag(&o.calls, 1);
    assert_int_equal(pf_clock_now_ns(clock), t0); /* no grace waited */
    assert_int_equal(o.r.result, 0);
    assert_int_equal(o.r.exit_code, 4);
    assert_false(process_runs(pid)); /* the grandchild: SIGTERM ended it */
    finish_logged(ex, &log);
}

/* The same after a deadline: the leader obeys SIGTERM, its grandchild
 * too; done comes without the grace timer. */
static void
test_subprocess_deadline_with_grandchild_does_not_wait_grace(void **state)
{
    pf_clock_t *clock = *state;
    pid_log_t log;
    pf_executor_t *ex = make(clock, 2);
    pf_deadline_t d = pf_deadline_in(clock, 1.0);
    outcome_t o = {0};
    pid_t pids[2];

    spawn_logged(ex, &log,
                 "sleep 1000 & echo $! >> \"$1\"; echo $$ >> \"$1\"; wait",
                 NULL, &d, &o, pids, 2);
    pf_clock_manual_advance(clock, NS_PER_SEC); /* SIGTERM to the group */
    pf_test_wait_for_flag(&o.calls, 1); /* the clock stays at 1 s */
    assert_int_equal(o.r.result, PF_ETIMEDOUT);
    assert_int_equal(o.r.term_signal, SIGTERM);
    assert_int_equal(o.r.pid, pids[1]);
    assert_false(process_runs(pids[0]));
    finish_logged(ex, &log);
}

static void
test_subprocess_abort_ends_it_with_ecanceled(void **state)
{
    const char *argv[] = {"sleep", "1000", NULL};
    pf_subprocess_opts_t opts;
    pf_executor_t *ex = make(*state, 2);
    outcome_t o = {0};
    pf_subprocess_t *p;

    pf_subprocess_opts_init(&opts);
    opts.kill_grace = 0; /* SIGKILL at once */
    assert_pf_ok(pf_executor_spawn(ex, argv, &opts, NULL, record, &o, &p));
    pf_subprocess_abort(p);
    pf_subprocess_abort(p); /* a no-op */
    pf_test_wait_for_flag(&o.calls, 1);
    pf_subprocess_abort(p); /* a no-op after the end */
    assert_int_equal(o.r.result, PF_ECANCELED);
    assert_int_equal(o.r.term_signal, SIGKILL);
    pf_subprocess_free(p);
    pf_executor_free(ex);
    assert_int_equal(atomic_load(&o.calls), 1);
    assert_no_children();
}

static void
test_subprocess_executor_free_kills_it(void **state)
{
    const char *argv[] = {"sleep", "1000", NULL};
    pf_executor_t *ex = make(*state, 1);
    outcome_t o = {0};
    pf_subprocess_t *p;
    pid_t pid;

    assert_pf_ok(pf_executor_spawn(ex, argv, NULL, NULL, record, &o, &p));
    pid = (pid_t)pf_subprocess_pid(p);
    pf_executor_free(ex);
    assert_int_equal(atomic_load(&o.calls), 1);
    assert_int_equal(o.r.result, PF_ECANCELED);
    assert_int_equal(o.r.term_signal, SIGKILL);
    assert_false(process_exists(pid));
    pf_subprocess_abort(p); /* the handle outlives the executor */
    pf_subprocess_free(p);
    assert_no_children();
}

static void
test_subprocess_missing_command_is_enotfound(void **state)
{
    const char *missing[] = {"/nonexistent/pf-no-such-command", NULL};
    const char *in_path[] = {"pf-no-such-command-in-path", NULL};
    pf_executor_t *ex = make(*state, 1);
    pf_subprocess_t *p = (pf_subprocess_t *)&p;

    assert_pf_err(pf_executor_spawn(ex, missing, NULL, NULL, never, NULL, &p),
                  PF_ENOTFOUND);
    assert_pf_err(pf_executor_spawn(ex, in_path, NULL, NULL, never, NULL, &p),
                  PF_ENOTFOUND);
    assert_ptr_equal(p, (pf_subprocess_t *)&p); /* untouched */
    pf_executor_free(ex);
    assert_no_children();
}

static void
test_subprocess_rejects_bad_input(void **state)
{
    const char *ok[] = {"true", NULL};
    const char *empty[] = {"", NULL};
    const char *none[] = {NULL};
    pf_subprocess_opts_t opts;
    pf_executor_t *ex = make(*state, 1);

    assert_pf_err(pf_executor_spawn(NULL, ok, NULL, NULL, never, NULL, NULL),
                  PF_EINVAL);
    assert_pf_err(pf_executor_spawn(ex, NULL, NULL, NULL, never, NULL, NULL),
                  PF_EINVAL);
    assert_pf_err(pf_executor_spawn(ex, none, NULL, NULL, never, NULL, NULL),
                  PF_EINVAL);
    assert_pf_err(pf_executor_spawn(ex, empty, NULL, NULL, never, NULL, NULL),
                  PF_EINVAL);
    assert_pf_err(pf_executor_spawn(ex, ok, NULL, NULL, NULL, NULL, NULL),
                  PF_EINVAL);
    pf_subprocess_opts_init(&opts);
    opts.kill_grace = -1.0;
    assert_pf_err(pf_executor_spawn(ex, ok, &opts, NULL, never, NULL, NULL),
                  PF_EINVAL);
    opts.kill_grace = NAN;
    assert_pf_err(pf_executor_spawn(ex, ok, &opts, NULL, never, NULL, NULL),
                  PF_EINVAL);
    opts.kill_grace = INFINITY;
    assert_pf_err(pf_executor_spawn(ex, ok, &opts, NULL, never, NULL, NULL),
                  PF_EINVAL);
    pf_subprocess_opts_init(NULL);
    pf_subprocess_abort(NULL);
    pf_subprocess_free(NULL);
    assert_int_equal(pf_subprocess_pid(NULL), -1);
    assert_false(pf_subprocess_ended(NULL));
    pf_executor_free(ex);
    assert_no_children();
}

typedef struct sweep {
    pf_executor_t *ex;
    pf_clock_t *clock;
} sweep_t;

/* Spin until the library's live allocations are back to live0 (30 s
 * safety net): a record is freed by the last wait callback to finish,
 * which may run just after the call or done returned. */
static void
wait_for_live(long live0)
{
    int64_t tries;

    for (tries = 0; tries < 30000000 && pf_test_alloc_live() != live0;
         tries++) {
        sched_yield();
    }
}

static void
spawn_scenario(void *arg)
{
    sweep_t *s = arg;
    const char *argv[] = {"true", NULL};
    pf_deadline_t d = pf_deadline_in(s->clock, 100.0);
    outcome_t o = {0};
    pf_subprocess_t *p = NULL;
    long live0 = pf_test_alloc_live();
    int rc = pf_executor_spawn(s->ex, argv, NULL, &d, record, &o, &p);

    if (rc == PF_ENOMEM) {
        assert_no_children();
        wait_for_live(live0);
        return;
    }
    assert_pf_ok(rc);
    pf_test_wait_for_flag(&o.calls, 1);
    assert_int_equal(o.r.exit_code, 0);
    pf_subprocess_free(p);
    wait_for_live(live0);
}

static void
test_subprocess_allocation_failures_leave_nothing(void **state)
{
    sweep_t s;

    s.clock = *state;
    s.ex = make(s.clock, 1);
    /* Grow the executor's timer heap once, first; with the counting
     * allocator already in place, so that it is never swapped while a
     * worker frees. */
    pf_test_alloc_install();
    spawn_scenario(&s);
    assert_true(pf_test_alloc_sweep(spawn_scenario, &s) > 3);
    pf_executor_free(s.ex);
    assert_no_children();
}

#define MANY 200

typedef struct many {
    outcome_t o[MANY];
} many_t;

static void
test_subprocess_200_children_on_2_workers_each_reaped_once(void **state)
{
    static many_t m;
    char codes[MANY][8];
    pf_executor_t *ex = make(*state, 2);
    int i;

    memset(&m, 0, sizeof(m));
    for (i = 0; i < MANY; i++) {
        char script[32];
        const char *argv[] = {"sh", "-c", script, NULL};

        snprintf(codes[i], sizeof(codes[i]), "%d", i % 256);
        snprintf(script, sizeof(script), "exit %s", codes[i]);
        assert_pf_ok(
            pf_executor_spawn(ex, argv, NULL, NULL, record, &m.o[i], NULL));
    }
    for (i = 0; i < MANY; i++) {
        pf_test_wait_for_flag(&m.o[i].calls, 1);
    }
    pf_executor_free(ex);
    for (i = 0; i < MANY; i++) {
        assert_int_equal(atomic_load(&m.o[i].calls), 1);
        assert_int_equal(m.o[i].r.result, 0);
        assert_int_equal(m.o[i].r.exit_code, i % 256);
        assert_false(process_exists(m.o[i].r.pid));
    }
    assert_no_children();
}

/* pf__spawn_group_running: a group whose leader is reaped but whose
 * member (an orphaned sleep) runs is running; once that member is killed
 * it is not, even while the member lingers as a zombie that init has not
 * reaped yet (the group is still "alive" then: kill(-pgid, 0) reaches
 * zombies). */
static void
test_subprocess_group_running_ignores_zombies(void **state)
{
    pid_log_t log;
    char script[160];
    const char *argv[] = {"sh", "-c", script, NULL};
    int tries;
    int status;
    pid_t leader;
    pid_t pid;

    (void)state;
    pid_log_make(&log);
    snprintf(script, sizeof(script), "sleep 1000 & echo $! >> %s; exit 0",
             log.file);
    assert_int_equal(pf__spawn((char *const *)argv, true, &leader), 0);
    pid_log_wait(&log, &pid, 1);
    assert_int_equal(waitpid(leader, &status, 0), leader);
    assert_true(pf__spawn_group_alive(leader));
    assert_true(pf__spawn_group_running(leader));
    kill(pid, SIGKILL);
    assert_true(gone(pid)); /* a zombie, or reaped by init already */
    if (process_exists(pid)) {
        /* Caught as a zombie: still a member, but not a running one. */
        assert_false(pf__spawn_group_running(leader));
    }
    for (tries = 0; tries < 3000 && pf__spawn_group_running(leader);
         tries++) {
        struct timespec nap = {0, 10000000};

        nanosleep(&nap, NULL);
    }
    assert_false(pf__spawn_group_running(leader));
    assert_false(pf__spawn_group_running(999999999)); /* no such group */
    pid_log_remove(&log);
    assert_no_children();
}

/* ---- as an asynchronous state ------------------------------------------ */

static int
run_argv(pf_ctx_t *ctx, void *arg)
{
    return pf_ctx_spawn(ctx, (const char *const *)arg, NULL);
}

static pf_agent_t *
spawn_agent(pf_executor_t *ex, const char *const *argv, double timeout)
{
    pf_agent_config_t cfg;
    pf_state_opts_t o;
    pf_agent_t *a = NULL;

    pf_agent_config_init(&cfg);
    cfg.executor = ex;
    assert_pf_ok(pf_agent_new_ex(&cfg, &a));
    pf_state_opts_init(&o);
    o.max_retries = 0;
    o.timeout = timeout;
    assert_pf_ok(pf_agent_add_state(a, "cmd", run_argv, (void *)argv, &o));
    return a;
}

static int
state_error(pf_agent_t *a, int *status)
{
    pf_run_result_t res;
    pf_state_result_t sr;

    *status = pf_agent_run(a, NULL, &res);
    assert_pf_ok(pf_run_result_find(&res, "cmd", &sr));
    pf_run_result_free(&res);
    return sr.error;
}

static void
test_subprocess_state_completes_with_exit_status(void **state)
{
    const char *ok[] = {"true", NULL};
    const char *three[] = {"sh", "-c", "exit 3", NULL};
    const char *killed[] = {"sh", "-c", "kill -9 $$", NULL};
    const char *missing[] = {"/nonexistent/pf-no-such-command", NULL};
    pf_executor_t *ex = make(*state, 2);
    pf_agent_t *a;
    int status;

    a = spawn_agent(ex, ok, 0);
    assert_int_equal(state_error(a, &status), 0);
    assert_pf_ok(status);
    pf_agent_free(a);
    a = spawn_agent(ex, three, 0);
    assert_int_equal(state_error(a, &status), 3);
    assert_int_not_equal(status, 0);
    pf_agent_free(a);
    a = spawn_agent(ex, killed, 0);
    assert_int_equal(state_error(a, &status), 128 + SIGKILL);
    pf_agent_free(a);
    a = spawn_agent(ex, missing, 0);
    assert_int_equal(state_error(a, &status), PF_ENOTFOUND);
    pf_agent_free(a);
    pf_executor_free(ex);
    assert_no_children();
}

static void
test_subprocess_state_timeout_kills_the_command(void **state)
{
    pf_clock_t *clock = *state;
    pid_log_t log;
    char script[160];
    const char *argv[] = {"sh", "-c", script, NULL};
    pf_executor_t *ex = make(clock, 2);
    pf_agent_t *a;
    pf_run_t *run = NULL;
    pf_run_result_t res;
    pf_state_result_t sr;
    pid_t pid;

    pid_log_make(&log);
    snprintf(script, sizeof(script), "echo $$ >> %s; exec sleep 1000",
             log.file);
    a = spawn_agent(ex, argv, 1.0);
    assert_pf_ok(pf_agent_start(a, NULL, NULL, &run));
    pid_log_wait(&log, &pid, 1);
    pf_clock_manual_advance(clock, NS_PER_SEC - 1);
    assert_false(pf_run_done(run));
    pf_clock_manual_advance(clock, 1); /* the state's timeout */
    assert_int_equal(pf_run_wait(run, NULL, &res), PF_ETIMEDOUT);
    assert_pf_ok(pf_run_result_find(&res, "cmd", &sr));
    assert_int_equal(sr.error, PF_ETIMEDOUT);
    assert_true(sr.timed_out);
    assert_true(gone(pid)); /* SIGTERM ended it */
    pf_run_result_free(&res);
    pf_run_free(run);
    pf_agent_free(a);
    finish_logged(ex, &log); /* the record ends before the free returns */
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        CLOCK_TEST(test_subprocess_reports_exit_status),
        CLOCK_TEST(test_subprocess_manual_deadline_kills_child),
        CLOCK_TEST(
            test_subprocess_ignoring_sigterm_killed_after_grace_with_grandchildren),
        CLOCK_TEST(test_subprocess_leftovers_are_ended_when_it_exits),
        CLOCK_TEST(
            test_subprocess_leftover_gone_on_sigterm_does_not_delay_done),
        CLOCK_TEST(
            test_subprocess_deadline_with_grandchild_does_not_wait_grace),
        CLOCK_TEST(test_subprocess_abort_ends_it_with_ecanceled),
        CLOCK_TEST(test_subprocess_executor_free_kills_it),
        CLOCK_TEST(test_subprocess_missing_command_is_enotfound),
        CLOCK_TEST(test_subprocess_rejects_bad_input),
        CLOCK_TEST(test_subprocess_allocation_failures_leave_nothing),
        CLOCK_TEST(test_subprocess_200_children_on_2_workers_each_reaped_once),
        CLOCK_TEST(test_subprocess_group_running_ignores_zombies),
        CLOCK_TEST(test_subprocess_state_completes_with_exit_status),
        CLOCK_TEST(test_subprocess_state_timeout_kills_the_command),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
