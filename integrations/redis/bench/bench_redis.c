/* The Redis store against a real redis-server on loopback that this
 * program starts (redis-tools' binary; its folder under /tmp is removed):
 *
 * 1. closed path: a Redis-backed breaker's acquire + record, limiter's
 *    try_acquire and bulkhead's try_enter + leave beside the same objects
 *    in process memory;
 * 2. a trip seen by another process: this process opens its breaker, a
 *    helper process (redis_helper follow) timestamps the change in its
 *    listener: p50 / p99 over 200 trips (CLOCK_MONOTONIC is one clock
 *    for both processes of a host);
 * 3. a limiter of 1,000/s (burst 10) shared by 4 helper processes for
 *    5 s, calling as fast as they can (4 busy threads on this machine's
 *    2 cores: the store's background work competes for the CPU) and then
 *    pausing 100 us between calls: decisions per second and the total
 *    granted (the bucket allows 10 + 1,000 x elapsed);
 * 4. a bulkhead of 8 shared by 4 processes: admissions per second and
 *    the most inside at once;
 * 5. redis-server killed and restarted, then frozen 3 s (SIGSTOP): the
 *    slowest call made meanwhile, how long the store took to notice, to
 *    come back, and whether the open breaker stayed open.
 *
 * Usage: bench_redis [redis-server binary] (default: the one found when
 * configuring; $PF_REDIS_SERVER overrides). Printed, never asserted. */
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "puffinflow/redis.h"
#include "harness.h"
#include "redis_testutil.h"

#ifndef PF_REDIS_SERVER_DEFAULT
#define PF_REDIS_SERVER_DEFAULT "/usr/bin/redis-check-rdb"
#endif
#ifndef PF_REDIS_HELPER_DEFAULT
#define PF_REDIS_HELPER_DEFAULT "redis_helper"
#endif

static rs_server_t g_srv;
static pf_executor_t *g_ex;

static pf_redis_t *
new_store(const char *prefix)
{
    pf_redis_config_t cfg;
    pf_redis_t *r;

    pf_redis_config_init(&cfg);
    cfg.executor = g_ex;
    cfg.port = g_srv.port;
    cfg.prefix = prefix;
    if (pf_redis_new(&cfg, &r) != 0) {
        fprintf(stderr, "pf_redis_new failed\n");
        exit(1);
    }
    return r;
}

/* Wait (up to 20 s) for the store to be up (want true) or down: how
 * long. */
static int64_t
wait_store(pf_redis_t *r, bool want)
{
    int64_t waited_ns;

    (void)rt_wait_store(r, want, INT64_C(20000000000), &waited_ns);
    return waited_ns;
}

static void
spawn(rs_child_t *ch, const char *mode, const char *prefix, const char *name,
      const char *a, const char *b, const char *c, const char *d)
{
    const char *helper = getenv("PF_REDIS_HELPER");

    if (helper == NULL) {
        helper = PF_REDIS_HELPER_DEFAULT;
    }
    if (rt_spawn_helper(ch, helper, g_srv.port, mode, prefix, name, a, b, c,
                        d) != 0) {
        fprintf(stderr, "cannot run %s\n", helper);
        exit(1);
    }
}

/* ---- 1. closed path ------------------------------------------------------ */

static void
breaker_loop(void *arg, uint64_t ops)
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
bulkhead_loop(void *arg, uint64_t ops)
{
    pf_bulkhead_t *bh = arg;

    for (uint64_t i = 0; i < ops; i++) {
        if (pf_bulkhead_try_enter(bh) == 0) {
            pf_bulkhead_leave(bh);
        }
    }
}

static uint64_t g_calls;
static uint64_t g_granted;

static void
limiter_loop(void *arg, uint64_t ops)
{
    pf_ratelimit_t *rl = arg;
    uint64_t got = 0;

    for (uint64_t i = 0; i < ops; i++) {
        got += pf_ratelimit_try_acquire(rl, 1) == 0;
    }
    g_calls += ops;
    g_granted += got;
}

static void
bench_closed_path(void)
{
    pf_breaker_config_t bc;
    pf_breaker_t *local;
    pf_breaker_t *shared;
    pf_ratelimit_config_t rc;
    pf_ratelimit_t *rlocal;
    pf_ratelimit_t *rshared;
    pf_redis_t *r = new_store("bench1");

    rt_trip_config(&bc, "closed");
    pf_breaker_new(&bc, &local);
    pf_redis_breaker_new(r, &bc, &shared);
    wait_store(r, true);
    pf_bench_run("breaker acquire+record, in-process", breaker_loop, local,
                 1000000, 5);
    pf_bench_run("breaker acquire+record, Redis-backed", breaker_loop, shared,
                 1000000, 5);
    /* Granted: a rate the bucket never runs dry at (the batch lent is
     * then 5e6 permits). */
    pf_ratelimit_config_init(&rc);
    rc.name = "closed";
    rc.rate = 1e9;
    rc.burst = 10000000;
    pf_ratelimit_new(&rc, &rlocal);
    pf_redis_ratelimit_new(r, &rc, &rshared);
    rs_sleep_ms(100);
    pf_bench_run("limiter try_acquire granted, in-process", limiter_loop,
                 rlocal, 1000000, 5);
    g_calls = 0;
    g_granted = 0;
    pf_bench_run("limiter try_acquire, Redis-backed", limiter_loop, rshared,
                 1000000, 5);
    printf("  (Redis-backed: %.1f%% of those calls granted)\n",
           100.0 * (double)g_granted / (double)g_calls);
    {
        pf_bulkhead_config_t hc;
        pf_bulkhead_t *hlocal;
        pf_bulkhead_t *hshared;

        pf_bulkhead_config_init(&hc);
        hc.name = "closed";
        hc.max_concurrent_calls = 10;
        pf_bulkhead_new(&hc, &hlocal);
        pf_redis_bulkhead_new(r, &hc, &hshared);
        while (pf_bulkhead_try_enter(hshared) != 0) { /* the first lease */
            rs_sleep_ms(1);
        }
        pf_bulkhead_leave(hshared);
        pf_bench_run("bulkhead try_enter+leave, in-process", bulkhead_loop,
                     hlocal, 1000000, 5);
        pf_bench_run("bulkhead try_enter+leave, Redis-backed", bulkhead_loop,
                     hshared, 1000000, 5);
        pf_bulkhead_free(hlocal);
        pf_bulkhead_free(hshared);
    }
    pf_breaker_free(local);
    pf_breaker_free(shared);
    pf_ratelimit_free(rlocal);
    pf_ratelimit_free(rshared);
    pf_redis_free(r);
}

/* ---- 2. a trip seen by another process --------------------------------- */

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;

    return x < y ? -1 : x > y;
}

/* Read lines until one starting with want; its timestamp, or -1. */
static long long
wait_line(rs_child_t *ch, const char *want)
{
    char line[128];
    size_t n = strlen(want);

    while (rs_line(ch, line, sizeof(line)) == 0) {
        if (strncmp(line, want, n) == 0 && line[n] == ' ') {
            return atoll(line + n + 1);
        }
        if (strncmp(line, "timeout", 7) == 0) {
            return -1;
        }
    }
    return -1;
}

static void
bench_trip_seen(void)
{
    enum { TRIPS = 200 };
    rs_child_t ch;
    char line[64];
    pf_breaker_config_t bc;
    pf_breaker_t *b;
    pf_redis_t *r = new_store("bench2");
    static double lat[TRIPS];
    int n = 0;

    rt_trip_config(&bc, "trip");
    pf_redis_breaker_new(r, &bc, &b);
    wait_store(r, true);
    spawn(&ch, "follow", "bench2", "trip", NULL, NULL, NULL, NULL);
    if (rs_line(&ch, line, sizeof(line)) != 0 || strcmp(line, "ready") != 0) {
        fprintf(stderr, "helper not ready: %s\n", line);
        exit(1);
    }
    for (int i = 0; i < TRIPS; i++) {
        int64_t t0;
        long long seen;

        rs_sleep_ms(2);
        t0 = rs_now_ns();
        for (int k = 0; k < 3; k++) {
            pf_permit_t p;

            if (pf_breaker_acquire(b, &p) == 0) {
                pf_breaker_record(b, &p, -1);
            }
        }
        seen = wait_line(&ch, "open");
        if (seen < 0) {
            break;
        }
        lat[n++] = (double)(seen - t0) / 1e3;
        pf_breaker_force_close(b);
        if (wait_line(&ch, "closed") < 0) {
            break;
        }
    }
    rs_say(&ch, "bye");
    fclose(ch.in);
    ch.in = NULL;
    rs_reap(&ch);
    qsort(lat, (size_t)n, sizeof(lat[0]), cmp_double);
    if (n > 0) {
        printf("trip seen by another process over %d trips: p50 %.0f us, "
               "p99 %.0f us, max %.0f us\n",
               n, lat[n / 2], lat[(n * 99) / 100], lat[n - 1]);
    }
    pf_breaker_free(b);
    pf_redis_free(r);
}

/* ---- 3. limiter from 4 processes ------------------------------------------ */

/* pace: microseconds each helper sleeps between calls ("0" = none). */
static void
bench_limiter_total(const char *prefix, const char *pace)
{
    enum { N = 4 };
    rs_child_t ch[N];
    char line[128];
    unsigned long long granted = 0;
    unsigned long long calls = 0;
    int64_t t0;
    double secs;

    for (int i = 0; i < N; i++) {
        spawn(&ch[i], "limit", prefix, "api", "1000", "10", "5", pace);
    }
    for (int i = 0; i < N; i++) {
        if (rs_line(&ch[i], line, sizeof(line)) != 0) {
            fprintf(stderr, "limit helper failed\n");
            exit(1);
        }
    }
    t0 = rs_now_ns();
    for (int i = 0; i < N; i++) {
        rs_say(&ch[i], "go");
    }
    for (int i = 0; i < N; i++) {
        unsigned long long g = 0;
        unsigned long long c = 0;

        if (rs_line(&ch[i], line, sizeof(line)) == 0 &&
            sscanf(line, "granted %llu calls %llu", &g, &c) == 2) {
            granted += g;
            calls += c;
        }
    }
    secs = (double)(rs_now_ns() - t0) / 1e9;
    for (int i = 0; i < N; i++) {
        rs_reap(&ch[i]);
    }
    /* At most: the burst, the rate over the run, and two batches (of 5)
     * per process lent before it began. */
    printf("limiter 1000/s burst 10, %d processes %s, 5 s each (%.3f s "
           "wall): %llu granted of at most %.0f (%.2f%% of 5,000), %.2f M "
           "decisions/s in all\n",
           N, strcmp(pace, "0") == 0 ? "spinning" : "pausing 100 us a call",
           secs, granted, 10 + 1000.0 * secs + N * 2 * 5,
           100.0 * (double)granted / 5000.0, (double)calls / 5.0 / 1e6);
}

/* A bulkhead of 2 shared by 4 processes (one caller each) entering as
 * fast as they can for 2 s, each call 0.2 ms inside: the limit binds. The
 * most inside at once is counted in a file all four map. */
static void
bench_bulkhead(void)
{
    enum { N = 4 };
    rs_child_t ch[N];
    char line[128];
    char file[96];
    int zero[2] = {0, 0};
    int *in;
    int fd;
    unsigned long long admitted = 0;
    unsigned long long refused = 0;

    snprintf(file, sizeof(file), "%s/inside", g_srv.dir);
    fd = open(file, O_RDWR | O_CREAT, 0600);
    if (fd < 0 || write(fd, zero, sizeof(zero)) != (ssize_t)sizeof(zero)) {
        exit(1);
    }
    in = mmap(NULL, sizeof(zero), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    for (int i = 0; i < N; i++) {
        spawn(&ch[i], "bulk", "bench5", "pool", "2", "2", file, NULL);
    }
    for (int i = 0; i < N; i++) {
        if (rs_line(&ch[i], line, sizeof(line)) != 0) {
            exit(1);
        }
    }
    for (int i = 0; i < N; i++) {
        rs_say(&ch[i], "go");
    }
    for (int i = 0; i < N; i++) {
        unsigned long long a = 0;
        unsigned long long f = 0;

        if (rs_line(&ch[i], line, sizeof(line)) == 0 &&
            sscanf(line, "admitted %llu refused %llu", &a, &f) == 2) {
            admitted += a;
            refused += f;
        }
        rs_reap(&ch[i]);
    }
    printf("bulkhead of 2, %d processes, 2 s, 0.2 ms calls: %llu admitted "
           "(%.0f/s; 2 places x 5,000/s = 10,000/s at most), %llu refused, "
           "at most %d inside at once\n",
           N, admitted, (double)admitted / 2.0, refused, in[1]);
    munmap(in, sizeof(zero));
}

/* ---- 4. kill / restart and a 3 s freeze ---------------------------------- */

typedef struct caller {
    pf_breaker_t *b;
    pf_ratelimit_t *rl;
    atomic_bool stop;
    _Atomic int64_t slowest_ns;
    _Atomic uint64_t calls;
    _Atomic uint64_t granted;
    _Atomic uint64_t open_rejections;
} caller_t;

/* Calls the breaker (always failing: it stays open) and the limiter in a
 * loop, noting the slowest call. */
static void *
call_loop(void *arg)
{
    caller_t *c = arg;

    while (!atomic_load(&c->stop)) {
        int64_t t0 = rs_now_ns();
        pf_permit_t p;
        int64_t took;

        if (pf_breaker_acquire(c->b, &p) == 0) {
            pf_breaker_record(c->b, &p, -1);
        } else {
            atomic_fetch_add(&c->open_rejections, 1);
        }
        if (pf_ratelimit_try_acquire(c->rl, 1) == 0) {
            atomic_fetch_add(&c->granted, 1);
        }
        took = rs_now_ns() - t0;
        if (took > atomic_load(&c->slowest_ns)) {
            atomic_store(&c->slowest_ns, took);
        }
        atomic_fetch_add(&c->calls, 1);
        rs_sleep_ms(0);
    }
    return NULL;
}

static void
bench_outages(void)
{
    pf_redis_t *r = new_store("bench4");
    pf_breaker_config_t bc;
    pf_ratelimit_config_t rc;
    caller_t c;
    pthread_t th;
    pf_redis_metrics_t m;
    int64_t t0;
    int64_t down_ns;
    int64_t up_ns;

    memset(&c, 0, sizeof(c));
    rt_trip_config(&bc, "outage");
    pf_redis_breaker_new(r, &bc, &c.b);
    pf_ratelimit_config_init(&rc);
    rc.name = "outage";
    rc.rate = 1000;
    rc.burst = 10;
    pf_redis_ratelimit_new(r, &rc, &c.rl);
    wait_store(r, true);
    pthread_create(&th, NULL, call_loop, &c);
    rs_sleep_ms(200); /* the breaker trips and the change reaches Redis */

    /* Kill and restart. */
    atomic_store(&c.slowest_ns, 0);
    t0 = rs_now_ns();
    rs_kill(&g_srv);
    down_ns = wait_store(r, false);
    rs_sleep_ms(1000);
    rs_launch(&g_srv);
    t0 = rs_now_ns();
    up_ns = wait_store(r, true);
    rs_sleep_ms(200);
    pf_redis_metrics(r, &m);
    printf("redis killed: noticed after %.1f ms; restarted: up again after "
           "%.1f ms, reseeded %llu, breaker in Redis %s; slowest call "
           "meanwhile %.1f us\n",
           (double)down_ns / 1e6, (double)up_ns / 1e6,
           (unsigned long long)m.reseeds,
           rs_hget_int(&g_srv, "bench4:breaker:outage", "state", -1) == 1
               ? "open"
               : "NOT open",
           (double)atomic_load(&c.slowest_ns) / 1e3);

    /* Freeze 3 s. */
    atomic_store(&c.slowest_ns, 0);
    uint64_t calls0 = atomic_load(&c.calls);
    uint64_t granted0 = atomic_load(&c.granted);
    t0 = rs_now_ns();
    kill(g_srv.pid, SIGSTOP);
    down_ns = wait_store(r, false);
    while (rs_now_ns() - t0 < INT64_C(3000000000)) {
        rs_sleep_ms(5);
    }
    kill(g_srv.pid, SIGCONT);
    t0 = rs_now_ns();
    up_ns = wait_store(r, true);
    pf_redis_metrics(r, &m);
    printf("redis frozen 3 s: noticed after %.1f ms (command timeout 500 "
           "ms), up %.1f ms after thawing; %llu calls meanwhile, slowest "
           "%.1f us; limiter granted %llu locally (its own 1000/s bucket); "
           "timeouts %llu\n",
           (double)down_ns / 1e6, (double)up_ns / 1e6,
           (unsigned long long)(atomic_load(&c.calls) - calls0),
           (double)atomic_load(&c.slowest_ns) / 1e3,
           (unsigned long long)(atomic_load(&c.granted) - granted0),
           (unsigned long long)m.timeouts);
    atomic_store(&c.stop, true);
    pthread_join(th, NULL);
    pf_breaker_free(c.b);
    pf_ratelimit_free(c.rl);
    pf_redis_free(r);
}

int
main(int argc, char **argv)
{
    pf_executor_config_t ec;

    signal(SIGPIPE, SIG_IGN);
    pf_bench_header("Redis-backed breaker and limiter (integrations/redis)");
    if (rs_start(&g_srv, argc > 1 ? argv[1] : PF_REDIS_SERVER_DEFAULT) != 0) {
        fprintf(stderr, "cannot start redis-server\n");
        return 1;
    }
    pf_executor_config_init(&ec);
    ec.workers = 1;
    pf_executor_new(&ec, &g_ex);
    bench_closed_path();
    bench_trip_seen();
    bench_limiter_total("bench3", "0");
    bench_limiter_total("bench3b", "100");
    bench_bulkhead();
    bench_outages();
    pf_executor_free(g_ex);
    rs_stop(&g_srv);
    return 0;
}
