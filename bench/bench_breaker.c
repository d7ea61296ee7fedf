/* Circuit breaker costs: a protected no-op call while CLOSED through the
 * permit face (acquire + record) and through pf_breaker_call, on 1 and 2
 * threads sharing one breaker, in consecutive mode and with count and time
 * windows; a rejected call while OPEN; a call through a keyed group.
 * Breakers use the default config (timeout 30 s: durations measured, on
 * the coarse clock) on the system clock.
 *
 * `bench_breaker --neighbour [reps]` measures instead how the closed path
 * holds up when its CPU is shared: pinned to CPU 0, alternately alone and
 * with a busy neighbour pinned to the same CPU (`sh -c 'while :; do :;
 * done'`, started here and killed after), it prints the median ns of a
 * closed acquire + record, a pf_breaker_call, a mutex lock/unlock pair and
 * a coarse clock read in each condition, over `reps` repetitions (default
 * 5). ns are the thread's CPU time per operation (time spent waiting for
 * the CPU is not the call's cost; wall time is printed too). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* sched_setaffinity, prctl */
#endif
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "puffinflow/breaker.h"
#include "puffinflow/error.h"

#include "bench_refs.h"
#include "harness.h"

#define OPS 2000000
#define ROUNDS 9

static int
noop(void *arg)
{
    (void)arg;
    return 0;
}

static void
permit_face(void *arg, uint64_t ops)
{
    pf_breaker_t *b = arg;

    for (uint64_t i = 0; i < ops; i++) {
        pf_permit_t p;

        if (pf_breaker_acquire(b, &p) == 0) {
            pf_breaker_record(b, &p, 0);
        }
    }
}

static void
permit_face_mt(void *arg, unsigned thread, uint64_t ops)
{
    (void)thread;
    permit_face(arg, ops);
}

static void
call_face(void *arg, uint64_t ops)
{
    pf_breaker_t *b = arg;

    for (uint64_t i = 0; i < ops; i++) {
        PF_BENCH_KEEP(pf_breaker_call(b, noop, NULL));
    }
}

static void
call_face_mt(void *arg, unsigned thread, uint64_t ops)
{
    (void)thread;
    call_face(arg, ops);
}

static void
rejected(void *arg, uint64_t ops)
{
    pf_breaker_t *b = arg;

    for (uint64_t i = 0; i < ops; i++) {
        pf_permit_t p;

        PF_BENCH_KEEP(pf_breaker_acquire(b, &p));
    }
}

static void
rejected_mt(void *arg, unsigned thread, uint64_t ops)
{
    (void)thread;
    rejected(arg, ops);
}

static void
group_call(void *arg, uint64_t ops)
{
    pf_breaker_group_t *g = arg;
    static const char *keys[4] = {"a.example", "b.example", "c.example",
                                  "d.example"};

    for (uint64_t i = 0; i < ops; i++) {
        PF_BENCH_KEEP(pf_breaker_group_call(g, keys[i & 3], noop, NULL));
    }
}

static pf_breaker_t *
make(pf_breaker_window_t window, const char *name)
{
    pf_breaker_config_t cfg;
    pf_breaker_t *b;

    pf_breaker_config_init(&cfg);
    cfg.name = name;
    cfg.window = window;
    if (pf_breaker_new(&cfg, &b) != 0) {
        fprintf(stderr, "pf_breaker_new failed\n");
        exit(1);
    }
    return b;
}

static void
run_mode(pf_breaker_window_t window, const char *label)
{
    pf_breaker_t *b = make(window, label);
    char name[128];

    snprintf(name, sizeof(name), "%s: permit face, 1 thread", label);
    pf_bench_run(name, permit_face, b, OPS, ROUNDS);
    snprintf(name, sizeof(name), "%s: permit face, 2 threads", label);
    pf_bench_run_threads(name, permit_face_mt, b, 2, OPS, ROUNDS);
    snprintf(name, sizeof(name), "%s: pf_breaker_call, 1 thread", label);
    pf_bench_run(name, call_face, b, OPS, ROUNDS);
    snprintf(name, sizeof(name), "%s: pf_breaker_call, 2 threads", label);
    pf_bench_run_threads(name, call_face_mt, b, 2, OPS, ROUNDS);
    pf_breaker_force_open(b);
    snprintf(name, sizeof(name), "%s: rejected while open, 1 thread", label);
    pf_bench_run(name, rejected, b, OPS, ROUNDS);
    snprintf(name, sizeof(name), "%s: rejected while open, 2 threads",
             label);
    pf_bench_run_threads(name, rejected_mt, b, 2, OPS, ROUNDS);
    pf_breaker_free(b);
}

/* ---- --neighbour: a shared CPU ---------------------------------------- */

#define NB_OPS 1000000
#define NB_ROUNDS 7
#define NB_MAX_REPS 64

static pthread_mutex_t g_mutex = PTHREAD_MUTEX_INITIALIZER;

static void
mutex_pair(void *arg, uint64_t ops)
{
    (void)arg;
    for (uint64_t i = 0; i < ops; i++) {
        pthread_mutex_lock(&g_mutex);
        pthread_mutex_unlock(&g_mutex);
    }
}

static int
pin_to_cpu0(void)
{
    cpu_set_t set;

    CPU_ZERO(&set);
    CPU_SET(0, &set);
    return sched_setaffinity(0, sizeof(set), &set);
}

/* A busy shell loop pinned to CPU 0, killed with us if we die first. */
static pid_t
start_neighbour(void)
{
    pid_t pid = fork();

    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        pin_to_cpu0();
        execl("/bin/sh", "sh", "-c", "while :; do :; done", (char *)NULL);
        _exit(127);
    }
    if (pid > 0) {
        usleep(50000); /* let it start spinning */
    }
    return pid;
}

static void
stop_neighbour(pid_t pid)
{
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

typedef struct nb_figure {
    const char *name;
    pf_bench_fn fn;
    void *arg;
    double cpu[2][NB_MAX_REPS]; /* [quiet, busy][rep]: median of rounds */
    double wall[2][NB_MAX_REPS];
} nb_figure_t;

static int
run_neighbour(unsigned reps)
{
    pf_breaker_t *b = make(PF_BREAKER_WINDOW_CONSECUTIVE, "neighbour");
    nb_figure_t figs[] = {
        {"breaker closed: acquire + record", permit_face, b, {{0}}, {{0}}},
        {"breaker closed: pf_breaker_call", call_face, b, {{0}}, {{0}}},
        {"mutex lock + unlock pair", mutex_pair, NULL, {{0}}, {{0}}},
        {"coarse clock read", bench_clock_coarse, NULL, {{0}}, {{0}}},
    };
    size_t nfig = sizeof(figs) / sizeof(figs[0]);

    if (reps == 0 || reps > NB_MAX_REPS) {
        reps = 5;
    }
    if (pin_to_cpu0() != 0) {
        perror("sched_setaffinity");
        return 1;
    }
    pf_bench_header("circuit breaker closed path on a shared CPU: "
                    "ns per operation, pinned to CPU 0");
    printf("# %u repetitions, alternating quiet and busy; each figure is "
           "the median over repetitions of the median of %d rounds of %d "
           "ops\n",
           reps, NB_ROUNDS, NB_OPS);
    for (unsigned r = 0; r < reps; r++) {
        for (unsigned k = 0; k < 2; k++) {
            unsigned busy = (r + k) & 1; /* alternate which goes first */
            pid_t pid = busy ? start_neighbour() : 0;

            if (pid < 0) {
                perror("fork");
                return 1;
            }
            for (size_t i = 0; i < nfig; i++) {
                pf_bench_result_t cpu;
                pf_bench_result_t wall = pf_bench_measure(
                    figs[i].fn, figs[i].arg, NB_OPS, NB_ROUNDS, &cpu);

                figs[i].cpu[busy][r] = cpu.median_ns;
                figs[i].wall[busy][r] = wall.median_ns;
            }
            if (busy) {
                stop_neighbour(pid);
            }
        }
    }
    printf("%-36s %9s %9s %7s   %9s %9s\n", "cpu ns per op", "quiet",
           "busy", "ratio", "wall:quiet", "wall:busy");
    for (size_t i = 0; i < nfig; i++) {
        double q = pf_bench_median(figs[i].cpu[0], reps);
        double n = pf_bench_median(figs[i].cpu[1], reps);

        printf("%-36s %9.2f %9.2f %7.2f   %9.2f %9.2f\n", figs[i].name, q,
               n, n / q, pf_bench_median(figs[i].wall[0], reps),
               pf_bench_median(figs[i].wall[1], reps));
    }
    fflush(stdout);
    pf_breaker_free(b);
    return 0;
}

int
main(int argc, char **argv)
{
    pf_breaker_group_config_t gcfg;
    pf_breaker_group_t *g;

    if (argc >= 2 && strcmp(argv[1], "--neighbour") == 0) {
        return run_neighbour(argc >= 3 ? (unsigned)atoi(argv[2]) : 5);
    }

    pf_bench_header("circuit breaker: ns per protected no-op call");
    run_mode(PF_BREAKER_WINDOW_CONSECUTIVE, "consecutive");
    run_mode(PF_BREAKER_WINDOW_COUNT, "count window (100 calls)");
    run_mode(PF_BREAKER_WINDOW_TIME, "time window (100 s)");

    pf_breaker_group_config_init(&gcfg);
    gcfg.name = "hosts";
    if (pf_breaker_group_new(&gcfg, &g) != 0) {
        return 1;
    }
    pf_bench_run("group: pf_breaker_group_call over 4 keys, 1 thread",
                 group_call, g, OPS / 4, ROUNDS);
    pf_breaker_group_free(g);
    return 0;
}
