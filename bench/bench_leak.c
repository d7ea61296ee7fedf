/* Costs of the leak detector: a full sample of this process (memory, fds,
 * fd limit, sockets by kind and TCP state, threads, cgroup memory limit)
 * with 10 and with 1,000 open descriptors, and the track_allocation +
 * track_release pair the runtime makes for every state it runs (target:
 * <= 200 ns). */
#include <fcntl.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "puffinflow/leak.h"

#include "harness.h"
#include "procfs.h"

static void
bench_sample(void *arg, uint64_t ops)
{
    pf_leak_sample_t s;

    (void)arg;
    for (uint64_t i = 0; i < ops; i++) {
        if (pf_leak_sample_process(0, &s) != 0) {
            fprintf(stderr, "sample failed\n");
            return;
        }
        PF_BENCH_KEEP(s.open_fds);
    }
}

static void
bench_track_pair(void *arg, uint64_t ops)
{
    pf_leak_detector_t *d = arg;

    for (uint64_t i = 0; i < ops; i++) {
        pf_leak_detector_track_allocation(d, "order-agent", "charge_card",
                                          NULL);
        pf_leak_detector_track_release(d, "order-agent", "charge_card");
    }
}

static const char *const g_states[8] = {
    "fetch_order", "validate", "reserve_stock", "charge_card",
    "ship",        "notify",   "audit",         "close_order",
};

static void
bench_track_pair_states(void *arg, uint64_t ops)
{
    pf_leak_detector_t *d = arg;
    pf_leak_resources_t res = {1.0, 100.0, 1.0, 1.0, 0.0};

    for (uint64_t i = 0; i < ops; i++) {
        const char *st = g_states[i & 7];

        pf_leak_detector_track_allocation(d, "order-agent", st, &res);
        pf_leak_detector_track_release(d, "order-agent", st);
    }
}

static void
bench_track_pair_threads(void *arg, unsigned thread, uint64_t ops)
{
    pf_leak_detector_t *d = arg;
    static const char *const agents[4] = {"agent-0", "agent-1", "agent-2",
                                          "agent-3"};
    const char *agent = agents[thread & 3];

    for (uint64_t i = 0; i < ops; i++) {
        const char *st = g_states[i & 7];

        pf_leak_detector_track_allocation(d, agent, st, NULL);
        pf_leak_detector_track_release(d, agent, st);
    }
}

static void
bench_check(void *arg, uint64_t ops)
{
    pf_leak_detector_t *d = arg;
    pf_leak_report_t rep;

    for (uint64_t i = 0; i < ops; i++) {
        pf_leak_detector_check(d, &rep);
        pf_leak_report_free(&rep);
    }
}

static int
no_sample(int pid, pf_leak_sample_t *out, void *arg)
{
    (void)pid;
    (void)arg;
    out->open_fds = 10;
    return 0;
}

/* Open /dev/null until this process has `want` descriptors (sockets: the
 * first `sockets` of them are Unix socket pairs). */
static int
fill_fds(int64_t want, int sockets)
{
    int64_t n;
    int made = 0;
    int sv[2];

    if (pf__proc_count_fds(PF__PROC_ROOT, 0, &n) != 0) {
        return -1;
    }
    while (n < want) {
        if (made + 2 <= sockets && n + 2 <= want) {
            if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) {
                return -1;
            }
            made += 2;
            n += 2;
            continue;
        }
        if (open("/dev/null", O_RDONLY) < 0) {
            return -1;
        }
        n++;
    }
    return 0;
}

int
main(void)
{
    pf_leak_config_t cfg;
    pf_leak_detector_t *d;
    pf_leak_detector_t *dc;
    struct rlimit rl;
    pf_bench_result_t r;
    char name[32];

    pf_bench_header("leak detector: process samples, allocation tracking");
    pf_leak_config_init(&cfg);
    if (pf_leak_detector_new(&cfg, &d) != 0) {
        return 1;
    }
    r = pf_bench_run("track_allocation + track_release (one pair)",
                     bench_track_pair, d, 2000000, 9);
    r = pf_bench_run("track pair, 8 states with resources",
                     bench_track_pair_states, d, 2000000, 9);
    pf_bench_run_threads("track pair, 2 threads, own agents",
                         bench_track_pair_threads, d, 2, 1000000, 9);

    cfg.sample = no_sample;
    if (pf_leak_detector_new(&cfg, &dc) != 0) {
        return 1;
    }
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof(name), "state-%d", i);
        pf_leak_detector_track_allocation(dc, "agent", name, NULL);
    }
    pf_bench_run("check, 1000 allocations held, none leaked", bench_check, dc,
                 2000, 9);

    if (fill_fds(10, 0) != 0) {
        return 1;
    }
    r = pf_bench_run("full sample, 10 open fds", bench_sample, NULL, 2000, 9);
    pf_bench_print("full sample, 10 open fds (median)", r.median_ns / 1000.0,
                   "us");
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < 1100 && rl.rlim_max >= 1100) {
        rl.rlim_cur = 1100;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (fill_fds(1000, 0) != 0) {
        fprintf(stderr, "cannot open 1000 fds\n");
        return 1;
    }
    r = pf_bench_run("full sample, 1000 open fds", bench_sample, NULL, 200, 9);
    pf_bench_print("full sample, 1000 open fds (median)", r.median_ns / 1000.0,
                   "us");
    if (fill_fds(1100, 100) != 0) {
        fprintf(stderr, "cannot open 1100 fds\n");
        return 1;
    }
    r = pf_bench_run("full sample, 1100 fds of which 100 sockets",
                     bench_sample, NULL, 200, 9);
    pf_bench_print("full sample, 1100 fds / 100 sockets (median)",
                   r.median_ns / 1000.0, "us");
    pf_leak_detector_free(dc);
    pf_leak_detector_free(d);
    return 0;
}
