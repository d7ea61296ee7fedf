/* The reactor's waits on the real clock, 2 workers:
 *   - N timer waits of 100 ms started at once (N = 1,000 / 10,000 /
 *     100,000): wall time of the batch, memory per pending wait (RSS
 *     growth / N, read after all are armed), threads in the process;
 *   - how late an fd wait's deadline (0.5-2 ms ahead) ends it: median and
 *     p99 of (completion seen by done - deadline);
 *   - the cost of one timer wait, start + complete (a 0 s timer, N in
 *     flight at once so the workers stay busy).
 * Figures are printed only; nothing here is asserted. */
#include <dirent.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "puffinflow/deadline.h"
#include "puffinflow/executor.h"

#include "harness.h"

static pf_executor_t *
make(unsigned workers)
{
    pf_executor_config_t cfg;
    pf_executor_t *ex = NULL;

    pf_executor_config_init(&cfg);
    cfg.workers = workers;
    if (pf_executor_new(&cfg, &ex) != 0) {
        fprintf(stderr, "pf_executor_new failed\n");
        exit(1);
    }
    return ex;
}

/* Resident set size, in bytes, from /proc/self/statm. */
static long
rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0;
    long resident = 0;

    if (f == NULL) {
        return 0;
    }
    if (fscanf(f, "%ld %ld", &size, &resident) != 2) {
        resident = 0;
    }
    fclose(f);
    return resident * sysconf(_SC_PAGESIZE);
}

static int
thread_count(void)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    int n = 0;

    if (d == NULL) {
        return 0;
    }
    while ((e = readdir(d)) != NULL) {
        n += e->d_name[0] != '.';
    }
    closedir(d);
    return n;
}

/* ---- N timer waits of 100 ms ------------------------------------------- */

static atomic_long g_done;

static void
count_done(int result, void *arg)
{
    (void)result;
    (void)arg;
    atomic_fetch_add_explicit(&g_done, 1, memory_order_relaxed);
}

static void
batch(pf_executor_t *ex, long n)
{
    char name[96];
    long rss0;
    long rss1;
    int64_t t0;
    int64_t t1;
    long i;

    atomic_store(&g_done, 0);
    rss0 = rss_bytes();
    t0 = pf_bench_now_ns();
    for (i = 0; i < n; i++) {
        if (pf_executor_wait_timer(ex, 0.1, count_done, NULL, NULL) != 0) {
            fprintf(stderr, "wait_timer failed\n");
            exit(1);
        }
    }
    rss1 = rss_bytes();
    while (atomic_load(&g_done) < n) {
        usleep(200);
    }
    t1 = pf_bench_now_ns();
    snprintf(name, sizeof(name), "%ld timer waits of 100 ms: batch wall time",
             n);
    pf_bench_print(name, (double)(t1 - t0) / 1e6, "ms");
    snprintf(name, sizeof(name), "%ld timer waits: memory per pending wait", n);
    pf_bench_print(name, (double)(rss1 - rss0) / (double)n, "B");
    snprintf(name, sizeof(name), "%ld timer waits: threads in the process", n);
    pf_bench_print(name, thread_count(), "threads");
}

/* ---- deadline lateness ------------------------------------------------- */

typedef struct late {
    int64_t deadline_ns;
    int64_t seen_ns;
    atomic_int done;
} late_t;

static void
late_done(int result, void *arg)
{
    late_t *l = arg;

    (void)result;
    l->seen_ns = pf_bench_now_ns();
    atomic_store(&l->done, 1);
}

static int
cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a;
    int64_t y = *(const int64_t *)b;

    return (x > y) - (x < y);
}

static void
lateness(pf_executor_t *ex)
{
    enum { ROUNDS = 400 };
    int64_t *lat = calloc(ROUNDS, sizeof(*lat));
    int fds[2];
    int i;

    if (lat == NULL || pipe(fds) != 0) {
        exit(1);
    }
    for (i = 0; i < ROUNDS; i++) {
        late_t l = {0};
        pf_deadline_t d =
            pf_deadline_in_ns(NULL, 500000 + (int64_t)(i % 4) * 500000);

        l.deadline_ns = d.priv_at_ns;
        if (pf_executor_wait_fd(ex, fds[0], PF_WAIT_READABLE, &d, late_done,
                                &l, NULL) != 0) {
            exit(1);
        }
        while (atomic_load(&l.done) == 0) {
            usleep(100);
        }
        lat[i] = l.seen_ns - l.deadline_ns;
    }
    qsort(lat, ROUNDS, sizeof(*lat), cmp_i64);
    pf_bench_print("fd wait deadline: lateness at done, median",
                   (double)lat[ROUNDS / 2] / 1e3, "us");
    pf_bench_print("fd wait deadline: lateness at done, p99",
                   (double)lat[ROUNDS * 99 / 100] / 1e3, "us");
    close(fds[0]);
    close(fds[1]);
    free(lat);
}

/* ---- cost per wait ----------------------------------------------------- */

static void
start_complete(void *arg, uint64_t ops)
{
    pf_executor_t *ex = arg;
    uint64_t i;

    atomic_store(&g_done, 0);
    for (i = 0; i < ops; i++) {
        pf_executor_wait_timer(ex, 0.0, count_done, NULL, NULL);
    }
    while ((uint64_t)atomic_load(&g_done) < ops) {
    }
}

int
main(void)
{
    pf_executor_t *ex;

    pf_bench_header("reactor: timer and fd waits (2 workers, real clock)");
    ex = make(2);
    batch(ex, 1000);
    batch(ex, 10000);
    batch(ex, 100000);
    lateness(ex);
    pf_bench_run("timer wait (0 s), start + complete", start_complete, ex,
                 20000, 7);
    pf_executor_free(ex);
    return 0;
}
