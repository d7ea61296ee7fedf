/* The benchmark harness shared by bench/ programs: a header describing the
 * machine, then one line per figure with min / median / max nanoseconds per
 * operation over several rounds, after a warm-up round. */
#ifndef PF_BENCH_HARNESS_H
#define PF_BENCH_HARNESS_H

#include <stdint.h>

/* Runs `ops` operations and returns nothing; the harness times it. */
typedef void (*pf_bench_fn)(void *arg, uint64_t ops);

/* A benchmark run in one thread per index: fn(arg, thread, ops). */
typedef void (*pf_bench_thread_fn)(void *arg, unsigned thread, uint64_t ops);

typedef struct pf_bench_result {
    double min_ns;
    double median_ns;
    double max_ns;
} pf_bench_result_t;

/* Print the machine header (cpu model, cores, compiler, flags, date) once
 * per program, with the program's title. */
void pf_bench_header(const char *title);

/* Time fn over `rounds` rounds of `ops` operations (after one warm-up
 * round); print "name  min / median / max ns/op" and return the figures. */
pf_bench_result_t pf_bench_run(const char *name, pf_bench_fn fn, void *arg,
                               uint64_t ops, unsigned rounds);

/* The same with `threads` threads running at once, each doing `ops`
 * operations: ns/op is each round's wall time divided by ops (the cost of
 * one call as each thread sees it while all run). */
pf_bench_result_t pf_bench_run_threads(const char *name, pf_bench_thread_fn fn,
                                       void *arg, unsigned threads,
                                       uint64_t ops, unsigned rounds);

/* Time fn as pf_bench_run does, printing nothing: the wall-clock figures
 * are returned, and those of the calling thread's CPU time
 * (CLOCK_THREAD_CPUTIME_ID: time spent running, not time spent waiting
 * for the CPU) are stored in *cpu unless it is NULL. */
pf_bench_result_t pf_bench_measure(pf_bench_fn fn, void *arg, uint64_t ops,
                                   unsigned rounds, pf_bench_result_t *cpu);

/* The median of n values (n >= 1); sorts v. */
double pf_bench_median(double *v, unsigned n);

/* Print a free-form figure line ("name  value unit") in the same layout. */
void pf_bench_print(const char *name, double value, const char *unit);

/* Monotonic nanoseconds, for programs that time something themselves. */
int64_t pf_bench_now_ns(void);

/* The calling thread's CPU time in nanoseconds. */
int64_t pf_bench_thread_cpu_ns(void);

/* Keep the compiler from optimising a value away. */
#define PF_BENCH_KEEP(x) __asm__ __volatile__("" : : "r"(x) : "memory")

#endif /* PF_BENCH_HARNESS_H */
