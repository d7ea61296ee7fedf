/* Child processes on the reactor (issue #14): what spawning and reaping a
 * command costs through pf_executor_spawn (pidfd in the reactor, done on a
 * worker) beside a bare posix_spawn + blocking waitpid, one at a time and
 * 200 at once; and how late a kill lands after its deadline (deadline to
 * done, the child reaped), for SIGTERM and for SIGKILL (kill_grace 0);
 * and how long done takes for a command that exits leaving a child in its
 * group that obeys SIGTERM, beside one that leaves none (spawn to done;
 * kill_grace 5 s, which done used to wait out). */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

#include "puffinflow/deadline.h"
#include "puffinflow/executor.h"
#include "puffinflow/subprocess.h"

#include "harness.h"
#include "spawn_impl.h"

static pf_executor_t *g_ex;

typedef struct waiter {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int left;
    int64_t done_ns;
} waiter_t;

static void
on_done(const pf_subprocess_result_t *r, void *arg)
{
    waiter_t *w = arg;

    (void)r;
    pthread_mutex_lock(&w->lock);
    w->done_ns = pf_bench_now_ns();
    w->left--;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

static void
wait_all(waiter_t *w)
{
    pthread_mutex_lock(&w->lock);
    while (w->left > 0) {
        pthread_cond_wait(&w->cond, &w->lock);
    }
    pthread_mutex_unlock(&w->lock);
}

static waiter_t g_w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
                       0, 0};
static const char *const g_true[] = {"/bin/true", NULL};

static void
bench_bare(void *arg, uint64_t ops)
{
    uint64_t i;

    (void)arg;
    for (i = 0; i < ops; i++) {
        pid_t pid;
        int status;

        if (pf__spawn((char *const *)g_true, true, &pid) != 0) {
            abort();
        }
        waitpid(pid, &status, 0);
    }
}

static void
bench_one_at_a_time(void *arg, uint64_t ops)
{
    uint64_t i;

    (void)arg;
    for (i = 0; i < ops; i++) {
        g_w.left = 1;
        if (pf_executor_spawn(g_ex, g_true, NULL, NULL, on_done, &g_w,
                              NULL) != 0) {
            abort();
        }
        wait_all(&g_w);
    }
}

static void
bench_batch(void *arg, uint64_t ops)
{
    uint64_t i;

    (void)arg;
    pthread_mutex_lock(&g_w.lock);
    g_w.left = (int)ops;
    pthread_mutex_unlock(&g_w.lock);
    for (i = 0; i < ops; i++) {
        if (pf_executor_spawn(g_ex, g_true, NULL, NULL, on_done, &g_w,
                              NULL) != 0) {
            abort();
        }
    }
    wait_all(&g_w);
}

/* Deadline to done, microseconds, for `runs` children of `sleep 1000`
 * with the deadline 20 ms after the spawn. */
static void
kill_lateness(const char *name, double grace, int runs)
{
    const char *const argv[] = {"sleep", "1000", NULL};
    pf_subprocess_opts_t opts;
    double *late = calloc((size_t)runs, sizeof(double));
    double worst = 0;
    char label[96];
    int i;

    pf_subprocess_opts_init(&opts);
    opts.kill_grace = grace;
    for (i = 0; i < runs; i++) {
        pf_deadline_t d = pf_deadline_in(NULL, 0.02);

        g_w.left = 1;
        if (pf_executor_spawn(g_ex, argv, &opts, &d, on_done, &g_w, NULL) !=
            0) {
            abort();
        }
        wait_all(&g_w);
        late[i] = (double)(g_w.done_ns - d.priv_at_ns) / 1e3;
        if (late[i] > worst) {
            worst = late[i];
        }
    }
    snprintf(label, sizeof(label), "%s: deadline to done, median", name);
    pf_bench_print(label, pf_bench_median(late, (unsigned)runs), "us");
    snprintf(label, sizeof(label), "%s: deadline to done, max", name);
    pf_bench_print(label, worst, "us");
    free(late);
}

/* Spawn to done, median microseconds of `runs` runs of sh -c script. */
static double
spawn_to_done(const char *script, int runs)
{
    const char *const argv[] = {"sh", "-c", script, NULL};
    double *t = calloc((size_t)runs, sizeof(double));
    double med;
    int i;

    for (i = 0; i < runs; i++) {
        int64_t t0 = pf_bench_now_ns();

        g_w.left = 1;
        if (pf_executor_spawn(g_ex, argv, NULL, NULL, on_done, &g_w, NULL) !=
            0) {
            abort();
        }
        wait_all(&g_w);
        t[i] = (double)(g_w.done_ns - t0) / 1e3;
    }
    med = pf_bench_median(t, (unsigned)runs);
    free(t);
    return med;
}

int
main(void)
{
    pf_executor_config_t cfg;

    pf_bench_header("child processes on the reactor");
    pf_executor_config_init(&cfg);
    cfg.workers = 2;
    if (pf_executor_new(&cfg, &g_ex) != 0) {
        return 1;
    }
    pf_bench_run("bare posix_spawn + waitpid (/bin/true)", bench_bare, NULL,
                 200, 5);
    pf_bench_run("pf_executor_spawn, one at a time (/bin/true)",
                 bench_one_at_a_time, NULL, 200, 5);
    pf_bench_run("pf_executor_spawn, 200 at once, per child", bench_batch,
                 NULL, 200, 5);
    kill_lateness("SIGTERM (sleep exits on it)", 5.0, 50);
    kill_lateness("SIGKILL (kill_grace 0)", 0.0, 50);
    pf_bench_print("sh -c 'exit 0': spawn to done, median",
                   spawn_to_done("exit 0", 30), "us");
    pf_bench_print("sh -c 'sleep 1000 & exit 0' (a leftover that obeys "
                   "SIGTERM): spawn to done, median",
                   spawn_to_done("sleep 1000 & exit 0", 30), "us");
    pf_executor_free(g_ex);
    return 0;
}
