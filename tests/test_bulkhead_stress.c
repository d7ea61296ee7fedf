/* Bulkhead under load: 16 threads hammer a bulkhead of 4 through every
 * face (try_enter, enter, enter_until with a deadline or token, call,
 * tickets that race their cancel against the grant), while the test counts
 * how many are inside at once. Invariants checked: never more inside than
 * the limit, also while another thread resizes it; every attempt ends in
 * exactly one known outcome; the bulkhead's counters agree with the
 * threads' own tallies; nothing is left inside or waiting.
 *
 * Runs on the system clock with millisecond waits so that waits really
 * time out; the amount of work is bounded by an iteration count and, as a
 * safety net for slow sanitizer builds, by a few seconds of real time. No
 * assertion depends on timing. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "puffinflow/bulkhead.h"
#include "test.h"

#define THREADS 16
#define ITERATIONS 1500
#define LIMIT 4
#define BUDGET_NS (4 * NS_PER_SEC)

enum { R_OK, R_FULL, R_TIMEDOUT, R_CANCELED, R_OTHER, R_COUNT };

typedef struct stress {
    pf_bulkhead_t *bh;
    atomic_int inside;
    atomic_int max_inside;
    atomic_long outcome[R_COUNT];
    atomic_long attempts;
    atomic_int workers_done;
    int64_t give_up_ns;
    /* The limit every caller inside must respect right now, plus 16 times
     * a generation that changes with every store (the resizer lowers it
     * only once in_use has drained to the new limit). */
    atomic_long phase;
    atomic_long phase_violations;
    atomic_long phase_samples;
    pf_token_t *cancelled_tok;
} stress_t;

static int64_t
real_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS_PER_SEC + ts.tv_nsec;
}

static void
phase_set(stress_t *s, int limit)
{
    long p = atomic_load(&s->phase);

    atomic_store(&s->phase, (p / 16 + 1) * 16 + limit);
}

/* What a caller does inside: count itself, note the most seen, check the
 * count against the limit in force, stay a moment, leave the count. The
 * limit is read before the count and again after it: if it did not change
 * meanwhile, the count was read while that limit was in force. */
static void
inside_work(stress_t *s)
{
    int n = atomic_fetch_add(&s->inside, 1) + 1;
    int m = atomic_load(&s->max_inside);
    long phase;

    while (n > m && !atomic_compare_exchange_weak(&s->max_inside, &m, n)) {
    }
    phase = atomic_load(&s->phase);
    if (atomic_load(&s->inside) > phase % 16 &&
        atomic_load(&s->phase) == phase) {
        atomic_fetch_add(&s->phase_violations, 1);
    }
    /* Yield while inside, so that on a small machine other threads run
     * and find the slots taken: without it each thread's whole loop can
     * fit in one time slice and nobody ever meets anybody. */
    sched_yield();
    sched_yield();
    atomic_fetch_sub(&s->inside, 1);
}

static int
call_body(void *arg)
{
    inside_work(arg);
    return 0;
}

static void
tally(stress_t *s, int rc)
{
    int k;

    switch (rc) {
    case 0:
        k = R_OK;
        break;
    case PF_EFULL:
        k = R_FULL;
        break;
    case PF_ETIMEDOUT:
        k = R_TIMEDOUT;
        break;
    case PF_ECANCELED:
        k = R_CANCELED;
        break;
    default:
        k = R_OTHER;
        break;
    }
    atomic_fetch_add(&s->outcome[k], 1);
}

typedef struct grant_flag {
    atomic_int granted;
} grant_flag_t;

static void
on_grant(pf_bulkhead_ticket_t *t, void *arg)
{
    grant_flag_t *g = arg;

    (void)t;
    atomic_store_explicit(&g->granted, 1, memory_order_release);
}

/* A ticket: wait a little by polling, then cancel; if the cancel loses the
 * race the grant is certain, so wait for it and use the slot. */
static int
ticket_attempt(stress_t *s, unsigned i)
{
    pf_bulkhead_ticket_t t = {0};
    grant_flag_t g;
    bool entered;
    int rc;

    atomic_init(&g.granted, 0);
    rc = pf_bulkhead_enqueue(s->bh, &t, (pf_priority_t)(i % 4), on_grant, &g,
                             &entered);
    if (rc != 0) {
        return rc;
    }
    if (!entered) {
        for (int spin = 0; spin < 20; spin++) {
            if (atomic_load_explicit(&g.granted, memory_order_acquire)) {
                break;
            }
            sched_yield();
        }
        if (!atomic_load_explicit(&g.granted, memory_order_acquire) &&
            pf_bulkhead_cancel(s->bh, &t, PF_EFULL)) {
            return PF_EFULL;
        }
        while (!atomic_load_explicit(&g.granted, memory_order_acquire)) {
            sched_yield();
        }
    }
    inside_work(s);
    pf_bulkhead_leave(s->bh);
    return 0;
}

static int
attempt(stress_t *s, unsigned thread, unsigned i)
{
    pf_deadline_t d;
    int rc;

    switch ((thread + i) % 6) {
    case 0:
        rc = pf_bulkhead_try_enter(s->bh);
        break;
    case 1:
        rc = pf_bulkhead_enter(s->bh);
        break;
    case 2:
        d = pf_deadline_in(NULL, 0.0002);
        rc = pf_bulkhead_enter_until(s->bh, (pf_priority_t)(i % 4), &d, NULL);
        break;
    case 3:
        rc = pf_bulkhead_enter_until(s->bh, PF_PRIORITY_HIGH, NULL,
                                     i % 16 == 0 ? s->cancelled_tok : NULL);
        break;
    case 4:
        return pf_bulkhead_call(s->bh, call_body, s);
    default:
        return ticket_attempt(s, i);
    }
    if (rc == 0) {
        inside_work(s);
        pf_bulkhead_leave(s->bh);
    }
    return rc;
}

static void
worker(void *arg, unsigned thread)
{
    stress_t *s = arg;

    for (unsigned i = 0; i < ITERATIONS; i++) {
        if (real_ns() > s->give_up_ns) {
            break;
        }
        atomic_fetch_add(&s->attempts, 1);
        tally(s, attempt(s, thread, i));
    }
    atomic_fetch_add(&s->workers_done, 1);
}

static void
stress_init(stress_t *s, unsigned max_queue)
{
    pf_bulkhead_config_t cfg;

    memset(s, 0, sizeof(*s));
    pf_bulkhead_config_init(&cfg);
    cfg.name = "stress";
    cfg.max_concurrent_calls = LIMIT;
    cfg.max_wait_duration = 0.001;
    cfg.max_queue_size = max_queue;
    assert_pf_ok(pf_bulkhead_new(&cfg, &s->bh));
    assert_pf_ok(pf_token_new(NULL, NULL, &s->cancelled_tok));
    phase_set(s, LIMIT);
    pf_token_cancel(s->cancelled_tok);
    s->give_up_ns = real_ns() + BUDGET_NS;
}

/* Every attempt got exactly one known answer, and the bulkhead counted the
 * same: entries in accepted; PF_EFULL in rejected_full + rejected_timeout;
 * the caller's deadline and token in cancelled. Nobody is left inside. */
static void
stress_check(stress_t *s)
{
    pf_bulkhead_metrics_t m;
    long sum = 0;

    for (int k = 0; k < R_COUNT; k++) {
        sum += atomic_load(&s->outcome[k]);
    }
    print_message(
        "attempts %ld: entered %ld, full %ld, timed out %ld, "
        "cancelled %ld; most inside at once %d\n",
        atomic_load(&s->attempts), atomic_load(&s->outcome[R_OK]),
        atomic_load(&s->outcome[R_FULL]), atomic_load(&s->outcome[R_TIMEDOUT]),
        atomic_load(&s->outcome[R_CANCELED]), atomic_load(&s->max_inside));
    assert_int_equal(atomic_load(&s->outcome[R_OTHER]), 0);
    assert_int_equal(sum, atomic_load(&s->attempts));
    assert_true(atomic_load(&s->outcome[R_OK]) > 0);
    pf_bulkhead_metrics(s->bh, &m);
    assert_int_equal(m.in_use, 0);
    assert_int_equal(m.waiting, 0);
    assert_int_equal(m.accepted, atomic_load(&s->outcome[R_OK]));
    assert_int_equal(m.rejected_full + m.rejected_timeout,
                     atomic_load(&s->outcome[R_FULL]));
    assert_int_equal(m.cancelled, atomic_load(&s->outcome[R_TIMEDOUT]) +
                                      atomic_load(&s->outcome[R_CANCELED]));
    assert_int_equal(m.leave_without_enter, 0);
    assert_true(m.peak_in_use <= LIMIT);
    assert_int_equal(atomic_load(&s->inside), 0);
    pf_token_free(s->cancelled_tok);
    pf_bulkhead_free(s->bh);
}

static void
test_bulkhead_stress_never_admits_above_the_limit_and_loses_no_caller(
    void **state)
{
    stress_t s;

    (void)state;
    stress_init(&s, 8);
    pf_test_run_threads(THREADS, worker, &s);
    assert_true(atomic_load(&s.max_inside) <= LIMIT);
    assert_true(atomic_load(&s.max_inside) >= 1);
    assert_int_equal(atomic_load(&s.phase_violations), 0);
    stress_check(&s);
}

/* The resizer runs beside the workers, cycling through limits until they
 * are all done. After setting limit L it waits until in_use has drained
 * to L, and from then until its next change samples the callers inside:
 * there may never be more than L. */
static const unsigned k_limits[] = {2, 4, 1, 3, 4, 2, 1, 4};

static void
resizer(stress_t *s)
{
    while (atomic_load(&s->workers_done) < THREADS) {
        for (size_t p = 0; p < sizeof(k_limits) / sizeof(k_limits[0]); p++) {
            unsigned limit = k_limits[p];
            pf_bulkhead_metrics_t m;

            phase_set(s, LIMIT);
            assert_pf_ok(pf_bulkhead_set_max_concurrent(s->bh, limit));
            do {
                pf_bulkhead_metrics(s->bh, &m);
                if (real_ns() > s->give_up_ns) {
                    goto out;
                }
                sched_yield();
            } while (m.in_use > limit);
            phase_set(s, (int)limit);
            for (int i = 0; i < 300; i++) {
                if (atomic_load(&s->inside) > (int)limit) {
                    atomic_fetch_add(&s->phase_violations, 1);
                }
                atomic_fetch_add(&s->phase_samples, 1);
                if (i % 50 == 0) {
                    sched_yield();
                }
            }
        }
    }
out:
    /* End on the largest limit so that no worker is left waiting long. */
    phase_set(s, LIMIT);
    assert_pf_ok(pf_bulkhead_set_max_concurrent(s->bh, LIMIT));
}

static void
worker_or_resizer(void *arg, unsigned thread)
{
    if (thread == THREADS) {
        resizer(arg);
    } else {
        worker(arg, thread);
    }
}

static void
test_bulkhead_stress_live_resizes_never_let_anyone_in_above_the_limit(
    void **state)
{
    stress_t s;

    (void)state;
    stress_init(&s, 64);
    pf_test_run_threads(THREADS + 1, worker_or_resizer, &s);
    assert_int_equal(atomic_load(&s.phase_violations), 0);
    assert_true(atomic_load(&s.phase_samples) > 0);
    /* The largest limit ever set was 4. */
    assert_true(atomic_load(&s.max_inside) <= LIMIT);
    stress_check(&s);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            test_bulkhead_stress_never_admits_above_the_limit_and_loses_no_caller),
        cmocka_unit_test(
            test_bulkhead_stress_live_resizes_never_let_anyone_in_above_the_limit),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
