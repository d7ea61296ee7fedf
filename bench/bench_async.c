/* Asynchronous states: what waiting costs when it holds no thread.
 *
 *   - N agent runs started at once, each one state waiting 100 ms on a
 *     timer (pf_ctx_sleep), 2 workers: wall time of the batch, the
 *     threads of the process, and memory per pending state (resident set
 *     growth with N runs pending, divided by N);
 *   - the overhead of an asynchronous state over a synchronous one
 *     (pf_ctx_pending and a completion inside the state, blocking runs);
 *   - how late an abort lands after its deadline on the real clock: a
 *     state sleeping 10 s with a 10 ms timeout; the attempt's end minus
 *     its deadline (median of 200). */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "puffinflow/agent.h"
#include "puffinflow/executor.h"

#include "harness.h"

static int
sleep_state(pf_ctx_t *ctx, void *arg)
{
    return pf_ctx_sleep(ctx, *(double *)arg);
}

static int
sync_state(pf_ctx_t *ctx, void *arg)
{
    (void)ctx;
    (void)arg;
    return 0;
}

static int
async_state(pf_ctx_t *ctx, void *arg)
{
    pf_completion_t *c;
    int rc = pf_ctx_pending(ctx, NULL, NULL, &c);

    (void)arg;
    if (rc != 0) {
        return rc;
    }
    pf_completion_complete(c, 0);
    pf_completion_free(c);
    return PF_PENDING;
}

static pf_agent_t *
agent_of(pf_executor_t *ex, pf_state_fn fn, void *arg, double timeout)
{
    pf_agent_config_t cfg;
    pf_state_opts_t o;
    pf_agent_t *a = NULL;

    pf_agent_config_init(&cfg);
    cfg.name = "bench";
    cfg.executor = ex;
    cfg.timings = timeout != 0.0;
    pf_state_opts_init(&o);
    o.max_retries = 0;
    o.timeout = timeout;
    o.leak_detection = false;
    if (pf_agent_new_ex(&cfg, &a) != 0 ||
        pf_agent_add_state(a, "s", fn, arg, &o) != 0) {
        fprintf(stderr, "setup failed\n");
        exit(1);
    }
    return a;
}

static long
threads_now(void)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    long n = 0;

    if (d == NULL) {
        return -1;
    }
    while ((e = readdir(d)) != NULL) {
        n += e->d_name[0] != '.';
    }
    closedir(d);
    return n;
}

static long
rss_bytes(void)
{
    long pages = 0;
    long resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");

    if (f == NULL) {
        return 0;
    }
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2) {
        resident = 0;
    }
    fclose(f);
    return resident * sysconf(_SC_PAGESIZE);
}

static void
batch(pf_executor_t *ex, size_t n)
{
    double secs = 0.1;
    pf_agent_t *a = agent_of(ex, sleep_state, &secs, 0.0);
    pf_run_t **runs = calloc(n, sizeof(*runs));
    int64_t t0;
    int64_t t1;
    long threads;
    size_t ok = 0;
    size_t i;
    char name[96];

    t0 = pf_bench_now_ns();
    for (i = 0; i < n; i++) {
        if (pf_agent_start(a, NULL, NULL, &runs[i]) != 0) {
            fprintf(stderr, "start failed\n");
            exit(1);
        }
    }
    threads = threads_now();
    for (i = 0; i < n; i++) {
        ok += pf_run_wait(runs[i], NULL, NULL) == 0;
        pf_run_free(runs[i]);
    }
    t1 = pf_bench_now_ns();
    snprintf(name, sizeof(name),
             "batch N=%zu, one 100 ms wait each (%zu ok, %ld threads)", n, ok,
             threads);
    pf_bench_print(name, (double)(t1 - t0) / 1e9, "s");
    free(runs);
    pf_agent_free(a);
}

static void
memory_per_pending(pf_executor_t *ex, size_t n)
{
    double secs = 3600.0;
    pf_agent_t *a = agent_of(ex, sleep_state, &secs, 0.0);
    pf_run_t **runs = calloc(n, sizeof(*runs));
    pf_executor_metrics_t m;
    long before;
    long after;
    size_t i;

    before = rss_bytes();
    for (i = 0; i < n; i++) {
        pf_agent_start(a, NULL, NULL, &runs[i]);
    }
    do {
        pf_executor_metrics(ex, &m);
    } while (m.waits_pending < n);
    after = rss_bytes();
    pf_bench_print("memory per pending state (100,000 pending)",
                   (double)(after - before) / (double)n, "bytes");
    for (i = 0; i < n; i++) {
        pf_run_cancel(runs[i]);
    }
    for (i = 0; i < n; i++) {
        pf_run_wait(runs[i], NULL, NULL);
        pf_run_free(runs[i]);
    }
    free(runs);
    pf_agent_free(a);
}

static void
bench_runs(void *arg, uint64_t ops)
{
    pf_agent_t *a = arg;
    uint64_t i;

    for (i = 0; i < ops; i++) {
        pf_agent_run(a, NULL, NULL);
    }
}

static int
cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x;
    double b = *(const double *)y;

    return (a > b) - (a < b);
}

static void
abort_lateness(pf_executor_t *ex)
{
    enum { RUNS = 200 };
    double secs = 10.0;
    pf_agent_t *a = agent_of(ex, sleep_state, &secs, 0.010);
    double late[RUNS];
    int i;

    for (i = 0; i < RUNS; i++) {
        pf_run_result_t res;
        pf_state_result_t sr;

        pf_agent_run(a, NULL, &res);
        pf_run_result_find(&res, "s", &sr);
        late[i] = (double)(sr.end_ns - sr.start_ns) - 10e6;
        pf_run_result_free(&res);
    }
    qsort(late, RUNS, sizeof(late[0]), cmp_double);
    pf_bench_print("abort after its deadline: median lateness",
                   late[RUNS / 2] / 1e3, "us");
    pf_bench_print("abort after its deadline: p90 lateness",
                   late[RUNS * 9 / 10] / 1e3, "us");
    pf_bench_print("abort after its deadline: max lateness",
                   late[RUNS - 1] / 1e3, "us");
    pf_agent_free(a);
}

int
main(void)
{
    static const size_t sizes[] = {100, 1000, 10000, 100000};
    pf_executor_config_t cfg;
    pf_executor_t *ex = NULL;
    pf_agent_t *sa;
    pf_agent_t *aa;
    pf_bench_result_t rs;
    pf_bench_result_t ra;
    size_t i;

    pf_bench_header("asynchronous states");
    pf_executor_config_init(&cfg);
    cfg.workers = 2;
    if (pf_executor_new(&cfg, &ex) != 0) {
        return 1;
    }
    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        batch(ex, sizes[i]);
    }
    memory_per_pending(ex, 100000);

    sa = agent_of(ex, sync_state, NULL, 0.0);
    aa = agent_of(ex, async_state, NULL, 0.0);
    rs = pf_bench_run("run: one synchronous state", bench_runs, sa, 200000, 9);
    ra = pf_bench_run("run: one asynchronous state", bench_runs, aa, 200000, 9);
    pf_bench_print("overhead of an asynchronous state",
                   ra.median_ns - rs.median_ns, "ns");
    pf_agent_free(sa);
    pf_agent_free(aa);

    abort_lateness(ex);
    pf_executor_free(ex);
    return 0;
}
