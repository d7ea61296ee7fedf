/* Benchmark harness: see harness.h. Rounds are timed with CLOCK_MONOTONIC;
 * the median of the rounds is the figure to quote. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#ifndef PF_BENCH_COMPILER
#define PF_BENCH_COMPILER "unknown"
#endif
#ifndef PF_BENCH_FLAGS
#define PF_BENCH_FLAGS ""
#endif

int64_t
pf_bench_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t
pf_bench_thread_cpu_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void
cpu_model(char *buf, size_t len)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];

    snprintf(buf, len, "unknown");
    if (f == NULL) {
        return;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "model name", 10) == 0) {
            char *colon = strchr(line, ':');

            if (colon != NULL) {
                snprintf(buf, len, "%s", colon + 2);
                buf[strcspn(buf, "\n")] = '\0';
            }
            break;
        }
    }
    fclose(f);
}

void
pf_bench_header(const char *title)
{
    char cpu[256];
    char date[64];
    time_t now = time(NULL);

    cpu_model(cpu, sizeof(cpu));
    strftime(date, sizeof(date), "%Y-%m-%d %H:%M UTC", gmtime(&now));
    printf("# %s\n", title);
    printf("# cpu: %s, %ld cores online\n", cpu, sysconf(_SC_NPROCESSORS_ONLN));
    printf("# compiler: %s, flags:%s\n", PF_BENCH_COMPILER, PF_BENCH_FLAGS);
    printf("# date: %s; figures: min / median / max over rounds\n", date);
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;

    return (x > y) - (x < y);
}

double
pf_bench_median(double *v, unsigned n)
{
    qsort(v, n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static pf_bench_result_t
figures(double *per_op, unsigned rounds)
{
    pf_bench_result_t r;

    r.median_ns = pf_bench_median(per_op, rounds);
    r.min_ns = per_op[0];
    r.max_ns = per_op[rounds - 1];
    return r;
}

static pf_bench_result_t
summarise(const char *name, double *per_op, unsigned rounds)
{
    pf_bench_result_t r = figures(per_op, rounds);

    printf("%-52s %10.2f / %10.2f / %10.2f ns/op\n", name, r.min_ns,
           r.median_ns, r.max_ns);
    fflush(stdout);
    return r;
}

pf_bench_result_t
pf_bench_measure(pf_bench_fn fn, void *arg, uint64_t ops, unsigned rounds,
                 pf_bench_result_t *cpu)
{
    double wall_op[64];
    double cpu_op[64];
    unsigned i;

    if (rounds == 0 || rounds > 64) {
        rounds = 7;
    }
    fn(arg, ops); /* warm-up */
    for (i = 0; i < rounds; i++) {
        int64_t t0 = pf_bench_now_ns();
        int64_t c0 = pf_bench_thread_cpu_ns();

        fn(arg, ops);
        cpu_op[i] = (double)(pf_bench_thread_cpu_ns() - c0) / (double)ops;
        wall_op[i] = (double)(pf_bench_now_ns() - t0) / (double)ops;
    }
    if (cpu != NULL) {
        *cpu = figures(cpu_op, rounds);
    }
    return figures(wall_op, rounds);
}

pf_bench_result_t
pf_bench_run(const char *name, pf_bench_fn fn, void *arg, uint64_t ops,
             unsigned rounds)
{
    double per_op[64];
    unsigned i;

    if (rounds == 0 || rounds > 64) {
        rounds = 7;
    }
    fn(arg, ops); /* warm-up */
    for (i = 0; i < rounds; i++) {
        int64_t t0 = pf_bench_now_ns();

        fn(arg, ops);
        per_op[i] = (double)(pf_bench_now_ns() - t0) / (double)ops;
    }
    return summarise(name, per_op, rounds);
}

typedef struct worker {
    pthread_t tid;
    pf_bench_thread_fn fn;
    void *arg;
    unsigned index;
    uint64_t ops;
    unsigned rounds;
    pthread_barrier_t *start;
    pthread_barrier_t *end;
} worker_t;

static void *
worker_main(void *p)
{
    worker_t *w = p;
    unsigned r;

    for (r = 0; r <= w->rounds; r++) { /* round 0 is the warm-up */
        pthread_barrier_wait(w->start);
        w->fn(w->arg, w->index, w->ops);
        pthread_barrier_wait(w->end);
    }
    return NULL;
}

pf_bench_result_t
pf_bench_run_threads(const char *name, pf_bench_thread_fn fn, void *arg,
                     unsigned threads, uint64_t ops, unsigned rounds)
{
    pthread_barrier_t start;
    pthread_barrier_t end;
    worker_t *w = calloc(threads, sizeof(*w));
    double per_op[64];
    unsigned i;
    unsigned r;

    if (rounds == 0 || rounds > 64) {
        rounds = 7;
    }
    if (w == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    pthread_barrier_init(&start, NULL, threads + 1);
    pthread_barrier_init(&end, NULL, threads + 1);
    for (i = 0; i < threads; i++) {
        w[i] = (worker_t){0, fn, arg, i, ops, rounds, &start, &end};
        pthread_create(&w[i].tid, NULL, worker_main, &w[i]);
    }
    for (r = 0; r <= rounds; r++) {
        int64_t t0;

        pthread_barrier_wait(&start);
        t0 = pf_bench_now_ns();
        pthread_barrier_wait(&end);
        if (r > 0) {
            per_op[r - 1] = (double)(pf_bench_now_ns() - t0) / (double)ops;
        }
    }
    for (i = 0; i < threads; i++) {
        pthread_join(w[i].tid, NULL);
    }
    pthread_barrier_destroy(&start);
    pthread_barrier_destroy(&end);
    free(w);
    return summarise(name, per_op, rounds);
}

void
pf_bench_print(const char *name, double value, const char *unit)
{
    printf("%-52s %10.2f %s\n", name, value, unit);
    fflush(stdout);
}
