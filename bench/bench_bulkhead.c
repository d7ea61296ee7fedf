/* Bulkhead costs: the lock-free permit face uncontended (target <= 25 ns
 * for try_enter + leave and for pf_bulkhead_call), the same with two
 * threads, the queued (ticket) hand-off, and the throughput and fairness
 * of 4 threads sharing a bulkhead of 2 with waiting. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "puffinflow/puffinflow.h"
#include "puffinflow/bulkhead.h"

#include "harness.h"

static pf_bulkhead_t *
make(unsigned limit, bool adaptive)
{
    pf_bulkhead_config_t cfg;
    pf_bulkhead_t *bh;

    pf_bulkhead_config_init(&cfg);
    cfg.name = "bench";
    cfg.max_concurrent_calls = limit;
    cfg.max_wait_duration = 60.0;
    cfg.adaptive = adaptive;
    if (adaptive) {
        cfg.adaptive_latency = 1.0;
    }
    if (pf_bulkhead_new(&cfg, &bh) != 0) {
        fprintf(stderr, "pf_bulkhead_new failed\n");
        exit(1);
    }
    return bh;
}

static void
bench_try_enter_leave(void *arg, uint64_t ops)
{
    pf_bulkhead_t *bh = arg;

    for (uint64_t i = 0; i < ops; i++) {
        PF_BENCH_KEEP(pf_bulkhead_try_enter(bh));
        pf_bulkhead_leave(bh);
    }
}

static void
bench_enter_leave(void *arg, uint64_t ops)
{
    pf_bulkhead_t *bh = arg;

    for (uint64_t i = 0; i < ops; i++) {
        PF_BENCH_KEEP(pf_bulkhead_enter(bh));
        pf_bulkhead_leave(bh);
    }
}

static int
empty_call(void *arg)
{
    (void)arg;
    return 0;
}

static void
bench_call(void *arg, uint64_t ops)
{
    pf_bulkhead_t *bh = arg;

    for (uint64_t i = 0; i < ops; i++) {
        PF_BENCH_KEEP(pf_bulkhead_call(bh, empty_call, NULL));
    }
}

/* Reference for reading the figures on a noisy machine: try_enter +
 * leave is three of these (enter, the accepted count, leave). */
static void
bench_cas(void *arg, uint64_t ops)
{
    _Atomic uint64_t *w = arg;

    for (uint64_t i = 0; i < ops; i++) {
        uint64_t v = atomic_load_explicit(w, memory_order_relaxed);

        atomic_compare_exchange_weak_explicit(
            w, &v, v + 1, memory_order_relaxed, memory_order_relaxed);
    }
}

static void
bench_try_enter_leave_threads(void *arg, unsigned thread, uint64_t ops)
{
    (void)thread;
    bench_try_enter_leave(arg, ops);
}

/* ---- the ticket hand-off ------------------------------------------------ */

typedef struct handoff {
    pf_bulkhead_t *bh;
    pf_bulkhead_ticket_t t;
    uint64_t granted;
} handoff_t;

static void
on_grant(pf_bulkhead_ticket_t *t, void *arg)
{
    handoff_t *h = arg;

    (void)t;
    h->granted++;
}

/* The slot is always held; each round queues a ticket and leaves, which
 * hands the slot to the ticket: enqueue (lock, queue) + leave (lock,
 * grant, callback). */
static void
bench_ticket_handoff(void *arg, uint64_t ops)
{
    handoff_t *h = arg;
    bool entered;

    for (uint64_t i = 0; i < ops; i++) {
        pf_bulkhead_enqueue(h->bh, &h->t, PF_PRIORITY_NORMAL, on_grant, h,
                            &entered);
        pf_bulkhead_leave(h->bh);
    }
}

/* ---- 4 threads through a bulkhead of 2 ---------------------------------- */

#define SHARE_THREADS 4
#define SHARE_LIMIT 2
#define SHARE_ROUND_NS (300 * PF_NS_PER_MS)
#define SHARE_ROUNDS 5

typedef struct share {
    pf_bulkhead_t *bh;
    atomic_bool stop;
    atomic_int ready;
    uint64_t calls[SHARE_THREADS];
    uint64_t failed[SHARE_THREADS];
} share_t;

typedef struct share_arg {
    share_t *s;
    unsigned i;
} share_arg_t;

/* About a microsecond of work inside, so callers overlap and queue. */
static int
work_inside(void *arg)
{
    volatile uint64_t x = (uintptr_t)arg;

    for (int i = 0; i < 300; i++) {
        x = x * 6364136223846793005u + 1442695040888963407u;
    }
    return 0;
}

static void *
share_main(void *p)
{
    share_arg_t *a = p;
    share_t *s = a->s;

    atomic_fetch_add(&s->ready, 1);
    while (atomic_load(&s->ready) < SHARE_THREADS) {
    }
    while (!atomic_load_explicit(&s->stop, memory_order_relaxed)) {
        if (pf_bulkhead_call(s->bh, work_inside, s) == 0) {
            s->calls[a->i]++;
        } else {
            s->failed[a->i]++;
        }
    }
    return NULL;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;

    return (x > y) - (x < y);
}

static void
bench_share(void)
{
    double rate[SHARE_ROUNDS];
    double jain[SHARE_ROUNDS];
    double minmax[SHARE_ROUNDS];
    uint64_t failed = 0;

    for (int r = 0; r < SHARE_ROUNDS; r++) {
        share_t s = {0};
        share_arg_t args[SHARE_THREADS];
        pthread_t tids[SHARE_THREADS];
        int64_t t0;
        int64_t t1;
        double total = 0;
        double sq = 0;
        double lo = INFINITY;
        double hi = 0;

        s.bh = make(SHARE_LIMIT, false);
        for (unsigned i = 0; i < SHARE_THREADS; i++) {
            args[i] = (share_arg_t){&s, i};
            pthread_create(&tids[i], NULL, share_main, &args[i]);
        }
        while (atomic_load(&s.ready) < SHARE_THREADS) {
        }
        t0 = pf_bench_now_ns();
        while (pf_bench_now_ns() - t0 < SHARE_ROUND_NS) {
            struct timespec ts = {0, 10 * 1000 * 1000};

            nanosleep(&ts, NULL);
        }
        atomic_store(&s.stop, true);
        for (unsigned i = 0; i < SHARE_THREADS; i++) {
            pthread_join(tids[i], NULL);
        }
        t1 = pf_bench_now_ns();
        for (unsigned i = 0; i < SHARE_THREADS; i++) {
            double c = (double)s.calls[i];

            total += c;
            sq += c * c;
            lo = c < lo ? c : lo;
            hi = c > hi ? c : hi;
            failed += s.failed[i];
        }
        rate[r] = total / ((double)(t1 - t0) / 1e9);
        /* Jain's fairness index: 1 = perfectly even, 1/n = one thread
         * got everything. */
        jain[r] = total * total / (SHARE_THREADS * sq);
        minmax[r] = hi > 0 ? lo / hi : 0;
        pf_bulkhead_free(s.bh);
    }
    qsort(rate, SHARE_ROUNDS, sizeof(double), cmp_double);
    qsort(jain, SHARE_ROUNDS, sizeof(double), cmp_double);
    qsort(minmax, SHARE_ROUNDS, sizeof(double), cmp_double);
    pf_bench_print("bulkhead: 4 threads through 2 slots, calls/s (median)",
                   rate[SHARE_ROUNDS / 2], "calls/s");
    pf_bench_print("bulkhead: 4 threads through 2 slots, Jain fairness",
                   jain[SHARE_ROUNDS / 2], "(1 = even)");
    pf_bench_print("bulkhead: 4 threads through 2 slots, least/most served",
                   minmax[SHARE_ROUNDS / 2], "ratio");
    pf_bench_print("bulkhead: 4 threads through 2 slots, rejected calls",
                   (double)failed, "calls");
}

int
main(void)
{
    pf_bulkhead_t *bh = make(10, false);
    pf_bulkhead_t *adaptive = make(10, true);
    pf_bulkhead_t *wide = make(1000, false);
    handoff_t h = {0};
    _Atomic uint64_t word = 0;

    h.bh = make(1, false);
    pf_bench_header("bulkhead");
    pf_bench_run("reference: one uncontended CAS", bench_cas, &word, 10000000,
                 9);
    pf_bench_run("bulkhead: try_enter + leave (uncontended)",
                 bench_try_enter_leave, bh, 5000000, 9);
    pf_bench_run("bulkhead: call, empty fn (uncontended)", bench_call, bh,
                 5000000, 9);
    pf_bench_run("bulkhead: enter + leave (uncontended)", bench_enter_leave, bh,
                 5000000, 9);
    pf_bench_run("bulkhead: call, adaptive (+2 clock reads, lock)", bench_call,
                 adaptive, 1000000, 9);
    pf_bench_run_threads("bulkhead: try_enter + leave, 2 threads, room",
                         bench_try_enter_leave_threads, wide, 2, 2000000, 9);
    pf_bulkhead_try_enter(h.bh);
    pf_bench_run("bulkhead: ticket hand-off (enqueue + leave + grant)",
                 bench_ticket_handoff, &h, 1000000, 9);
    pf_bulkhead_leave(h.bh);
    bench_share();
    pf_bulkhead_free(h.bh);
    pf_bulkhead_free(wide);
    pf_bulkhead_free(adaptive);
    pf_bulkhead_free(bh);
    return 0;
}
