/* A process of its own sharing a Redis-backed breaker or limiter with the
 * test (or bench) that execs it. It talks in lines on stdout/stdin:
 *
 *   redis_helper watch PORT PREFIX NAME
 *       prints "ready" once connected, then "open NS" when its breaker
 *       goes OPEN (NS: CLOCK_MONOTONIC when its listener heard it), then
 *       waits for any line on stdin and exits 0.
 *   redis_helper check PORT PREFIX NAME
 *       prints the state its fresh breaker has once it compared with
 *       Redis ("open", "closed", "half_open") and exits 0.
 *   redis_helper follow PORT PREFIX NAME
 *       prints "ready", then "<state> NS" for each change of its breaker
 *       (from its listener), until stdin closes; exits 0 (the bench).
 *   redis_helper bulk PORT PREFIX NAME LIMIT SECONDS FILE
 *       prints "ready", waits for "go", then for SECONDS enters its
 *       bulkhead as often as it can, each time counting itself in the
 *       shared counter in FILE (mapped by every helper) and noting the
 *       most ever inside at once there; prints "admitted N refused M".
 *   redis_helper hold PORT PREFIX NAME LIMIT N TTL
 *       with leases of TTL seconds, enters N places, prints "held", and
 *       keeps them until killed (or 60 s).
 *   redis_helper limit PORT PREFIX NAME RATE BURST SECONDS [PACE_US]
 *       prints "ready", waits for "go", calls try_acquire as fast as it
 *       can (or sleeping PACE_US microseconds between calls) for SECONDS,
 *       prints "granted N calls M" and exits 0.
 *
 * Every wait has a ceiling of 20 s: past it the helper prints "timeout"
 * and exits 3, so the parent never waits for ever. */
#include <fcntl.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "puffinflow/redis.h"
#include "redis_testutil.h"

#define CEILING_NS INT64_C(20000000000)

static _Atomic int64_t g_open_ns;
static bool g_follow;

static void
on_change(pf_breaker_t *b, pf_breaker_state_t from, pf_breaker_state_t to,
          void *arg)
{
    int64_t expected = 0;

    (void)b;
    (void)from;
    (void)arg;
    if (g_follow) {
        printf("%s %lld\n", pf_breaker_state_name(to), (long long)rs_now_ns());
        fflush(stdout);
        return;
    }
    if (to == PF_BREAKER_OPEN) {
        atomic_compare_exchange_strong(&g_open_ns, &expected, rs_now_ns());
    }
}

static int
fail(const char *what)
{
    printf("timeout %s\n", what);
    fflush(stdout);
    return 3;
}

/* Wait until the store is up (ceiling). */
static int
wait_up(pf_redis_t *r)
{
    return rt_wait_store(r, true, CEILING_NS, NULL) ? 0 : -1;
}

static void
breaker_config(pf_breaker_config_t *bc, const char *name)
{
    rt_trip_config(bc, name);
    bc->listener = on_change;
}

static int
watch(pf_redis_t *r, const char *name)
{
    pf_breaker_config_t bc;
    pf_breaker_t *b;
    int64_t until;
    char line[64];

    breaker_config(&bc, name);
    if (pf_redis_breaker_new(r, &bc, &b) != 0 || wait_up(r) != 0) {
        return fail("up");
    }
    rs_sleep_ms(50); /* let the first comparison and subscription land */
    printf("ready\n");
    fflush(stdout);
    until = rs_now_ns() + CEILING_NS;
    while (atomic_load(&g_open_ns) == 0) {
        if (rs_now_ns() > until) {
            pf_breaker_free(b);
            return fail("open");
        }
        rs_sleep_ms(0);
    }
    printf("open %lld\n", (long long)atomic_load(&g_open_ns));
    fflush(stdout);
    if (fgets(line, sizeof(line), stdin) == NULL) {
        line[0] = '\0';
    }
    pf_breaker_free(b);
    return 0;
}

static int
follow(pf_redis_t *r, const char *name)
{
    pf_breaker_config_t bc;
    pf_breaker_t *b;
    char line[64];

    breaker_config(&bc, name);
    g_follow = true;
    if (pf_redis_breaker_new(r, &bc, &b) != 0 || wait_up(r) != 0) {
        return fail("up");
    }
    rs_sleep_ms(50);
    printf("ready\n");
    fflush(stdout);
    while (fgets(line, sizeof(line), stdin) != NULL) {
    }
    pf_breaker_free(b);
    return 0;
}

static int
check(pf_redis_t *r, const char *name)
{
    pf_breaker_config_t bc;
    pf_breaker_t *b;
    pf_redis_metrics_t m;
    int64_t until = rs_now_ns() + CEILING_NS;

    breaker_config(&bc, name);
    if (pf_redis_breaker_new(r, &bc, &b) != 0 || wait_up(r) != 0) {
        return fail("up");
    }
    /* The first comparison's reply ends with commands == replies: wait
     * for a command beyond setup to have been answered. */
    for (;;) {
        pf_redis_metrics(r, &m);
        if (m.remote_applied > 0 || pf_breaker_state(b) != PF_BREAKER_CLOSED) {
            break;
        }
        if (rs_now_ns() > until) {
            break; /* stays closed: say so */
        }
        rs_sleep_ms(5);
    }
    printf("%s\n", pf_breaker_state_name(pf_breaker_state(b)));
    fflush(stdout);
    pf_breaker_free(b);
    return 0;
}

static int
limit(pf_redis_t *r, const char *name, double rate, unsigned burst,
      double seconds, long pace_us)
{
    pf_ratelimit_config_t rc;
    pf_ratelimit_t *rl;
    char line[64];
    unsigned long long granted = 0;
    unsigned long long calls = 0;
    int64_t end;

    pf_ratelimit_config_init(&rc);
    rc.name = name;
    rc.rate = rate;
    rc.burst = burst;
    if (pf_redis_ratelimit_new(r, &rc, &rl) != 0 || wait_up(r) != 0) {
        return fail("up");
    }
    printf("ready\n");
    fflush(stdout);
    if (fgets(line, sizeof(line), stdin) == NULL) {
        pf_ratelimit_free(rl);
        return fail("go");
    }
    end = rs_now_ns() + (int64_t)(seconds * 1e9);
    while (rs_now_ns() < end) {
        calls++;
        if (pf_ratelimit_try_acquire(rl, 1) == 0) {
            granted++;
        }
        if (pace_us > 0) {
            struct timespec ts = {0, pace_us * 1000};

            nanosleep(&ts, NULL);
        }
    }
    printf("granted %llu calls %llu\n", granted, calls);
    fflush(stdout);
    pf_ratelimit_free(rl);
    return 0;
}

/* The counter the bulk helpers share through a file mapping. */
typedef struct inside {
    _Atomic int now;
    _Atomic int most;
} inside_t;

static int
bulk(pf_redis_t *r, const char *name, unsigned limit, double seconds,
     const char *file)
{
    pf_bulkhead_config_t bc;
    pf_bulkhead_t *bh;
    char line[64];
    unsigned long long admitted = 0;
    unsigned long long refused = 0;
    int64_t end;
    int fd = open(file, O_RDWR);
    inside_t *in;

    if (fd < 0) {
        return 2;
    }
    in = mmap(NULL, sizeof(*in), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (in == MAP_FAILED) {
        return 2;
    }
    pf_bulkhead_config_init(&bc);
    bc.name = name;
    bc.max_concurrent_calls = limit;
    if (pf_redis_bulkhead_new(r, &bc, &bh) != 0 || wait_up(r) != 0) {
        return fail("up");
    }
    printf("ready\n");
    fflush(stdout);
    if (fgets(line, sizeof(line), stdin) == NULL) {
        pf_bulkhead_free(bh);
        return fail("go");
    }
    end = rs_now_ns() + (int64_t)(seconds * 1e9);
    while (rs_now_ns() < end) {
        if (pf_bulkhead_try_enter(bh) != 0) {
            refused++;
            rs_sleep_ms(0);
            continue;
        }
        int n = atomic_fetch_add(&in->now, 1) + 1;
        int most = atomic_load(&in->most);

        while (n > most && !atomic_compare_exchange_weak(&in->most, &most, n)) {
        }
        admitted++;
        int64_t busy = rs_now_ns() + 200000; /* 0.2 ms inside */
        while (rs_now_ns() < busy) {
        }
        atomic_fetch_sub(&in->now, 1);
        pf_bulkhead_leave(bh);
    }
    printf("admitted %llu refused %llu\n", admitted, refused);
    fflush(stdout);
    pf_bulkhead_free(bh);
    munmap(in, sizeof(*in));
    return 0;
}

static int
hold(pf_redis_t *r, const char *name, unsigned limit, unsigned n)
{
    pf_bulkhead_config_t bc;
    pf_bulkhead_t *bh;
    int64_t until = rs_now_ns() + CEILING_NS;

    pf_bulkhead_config_init(&bc);
    bc.name = name;
    bc.max_concurrent_calls = limit;
    if (pf_redis_bulkhead_new(r, &bc, &bh) != 0 || wait_up(r) != 0) {
        return fail("up");
    }
    for (unsigned i = 0; i < n;) {
        if (pf_bulkhead_try_enter(bh) == 0) {
            i++;
        } else if (rs_now_ns() > until) {
            return fail("enter");
        } else {
            rs_sleep_ms(1);
        }
    }
    printf("held\n");
    fflush(stdout);
    rs_sleep_ms(60000);
    return 0;
}

int
main(int argc, char **argv)
{
    pf_executor_config_t ec;
    pf_executor_t *ex;
    pf_redis_config_t cfg;
    pf_redis_t *r;
    int rc;

    if (argc < 5) {
        fprintf(stderr, "usage: see the top of redis_helper.c\n");
        return 2;
    }
    pf_executor_config_init(&ec);
    ec.workers = 1;
    if (pf_executor_new(&ec, &ex) != 0) {
        return 2;
    }
    pf_redis_config_init(&cfg);
    cfg.executor = ex;
    cfg.port = atoi(argv[2]);
    cfg.prefix = argv[3];
    if (strcmp(argv[1], "hold") == 0 && argc == 8) {
        cfg.lease_ttl = atof(argv[7]);
    }
    if (pf_redis_new(&cfg, &r) != 0) {
        return 2;
    }
    if (strcmp(argv[1], "watch") == 0) {
        rc = watch(r, argv[4]);
    } else if (strcmp(argv[1], "follow") == 0) {
        rc = follow(r, argv[4]);
    } else if (strcmp(argv[1], "check") == 0) {
        rc = check(r, argv[4]);
    } else if (strcmp(argv[1], "bulk") == 0 && argc == 8) {
        rc = bulk(r, argv[4], (unsigned)atoi(argv[5]), atof(argv[6]), argv[7]);
    } else if (strcmp(argv[1], "hold") == 0 && argc == 8) {
        rc = hold(r, argv[4], (unsigned)atoi(argv[5]), (unsigned)atoi(argv[6]));
    } else if (strcmp(argv[1], "limit") == 0 && (argc == 8 || argc == 9)) {
        rc = limit(r, argv[4], atof(argv[5]), (unsigned)atoi(argv[6]),
                   atof(argv[7]), argc == 9 ? atol(argv[8]) : 0);
    } else {
        rc = 2;
    }
    pf_redis_free(r);
    pf_executor_free(ex);
    return rc;
}
