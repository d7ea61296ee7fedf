/* Circuit breaker costs: a protected no-op call while CLOSED through the
 * permit face (acquire + record) and through pf_breaker_call, on 1 and 2
 * threads sharing one breaker, in consecutive mode and with count and time
 * windows; a rejected call while OPEN; a call through a keyed group.
 * Breakers use the default config (timeout 30 s: durations measured, on
 * the coarse clock) on the system clock. */
#include <stdio.h>
#include <stdlib.h>

#include "puffinflow/breaker.h"
#include "puffinflow/error.h"

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

int
main(void)
{
    pf_breaker_group_config_t gcfg;
    pf_breaker_group_t *g;

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
