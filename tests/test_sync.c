/* The sync hook (sync.h) through which a store outside the process keeps
 * a breaker or a rate limiter in step: what the hook is told, what
 * pf_breaker_sync_apply does, and how a limiter's decisions follow the
 * hook's answers. Manual clock throughout. */
#include <stdint.h>
#include <string.h>

#include "puffinflow/breaker.h"
#include "puffinflow/bulkhead.h"
#include "puffinflow/ratelimit.h"
#include "puffinflow/retry.h"
#include "puffinflow/shared.h"
#include "puffinflow/sync.h"
#include "test.h"

typedef struct seen {
    int changes;
    int from;
    int to;
    int64_t open_ns;
    int detached;
    int listened;
    int answer; /* what take answers */
    unsigned taken;
    unsigned given;
} seen_t;

static void
on_changed(void *arg, pf_breaker_t *b, int from, int to, int64_t open_ns)
{
    seen_t *s = arg;

    (void)b;
    s->changes++;
    s->from = from;
    s->to = to;
    s->open_ns = open_ns;
}

static void
on_detach(void *arg)
{
    ((seen_t *)arg)->detached++;
}

static void
on_listen(pf_breaker_t *b, pf_breaker_state_t from, pf_breaker_state_t to,
          void *arg)
{
    (void)b;
    (void)from;
    (void)to;
    ((seen_t *)arg)->listened++;
}

static int
on_take(void *arg, unsigned n)
{
    seen_t *s = arg;

    if (s->answer == PF_SYNC_GRANT) {
        s->taken += n;
    }
    return s->answer;
}

static void
on_give(void *arg, unsigned n)
{
    ((seen_t *)arg)->given += n;
}

/* A synced object (cfg.sync set) refuses a shared state as well:
 * new_fn(&cfg, out) is PF_EINVAL with one, and 0 without (*out made). */
#define NEW_REFUSES_SHARED(new_fn, cfg, out)                                   \
    do {                                                                       \
        pf_shared_config_t sc_;                                                \
                                                                               \
        pf_shared_config_init(&sc_);                                           \
        sc_.name = "sync-test";                                                \
        (cfg).shared = &sc_;                                                   \
        assert_int_equal(new_fn(&(cfg), (out)), PF_EINVAL);                    \
        (cfg).shared = NULL;                                                   \
        assert_int_equal(new_fn(&(cfg), (out)), 0);                            \
    } while (0)

/* The hooks a test starts from: detach alone, counted in s (zeroed). */
static void
hooks_init(pf_sync_t *sync, seen_t *s)
{
    memset(s, 0, sizeof(*s));
    memset(sync, 0, sizeof(*sync));
    sync->detach = on_detach;
    sync->arg = s;
}

static void
trip(pf_breaker_t *b, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        pf_permit_t p = PF_PERMIT_INIT;

        assert_int_equal(pf_breaker_acquire(b, &p), 0);
        pf_breaker_record(b, &p, -1);
    }
}

static void
test_sync_breaker_hook_and_apply(void **state)
{
    pf_clock_t *clock;
    pf_breaker_config_t cfg;
    pf_breaker_t *b;
    pf_sync_t sync;
    seen_t s;
    pf_breaker_metrics_t m;
    pf_permit_t p = PF_PERMIT_INIT;

    (void)state;
    hooks_init(&sync, &s);
    sync.breaker_changed = on_changed;
    assert_int_equal(pf_clock_manual_new(&clock), 0);
    pf_breaker_config_init(&cfg);
    cfg.clock = clock;
    cfg.failure_threshold = 2;
    cfg.recovery_timeout = 10.0;
    cfg.success_threshold = 1;
    cfg.listener = on_listen;
    cfg.listener_arg = &s;
    cfg.sync = &sync;
    assert_int_equal(pf_breaker_new(&cfg, &b), 0);
    memset(&sync, 0, sizeof(sync)); /* copied by _new */

    /* A change made here is told, with its open period. */
    trip(b, 2);
    assert_int_equal(s.changes, 1);
    assert_int_equal(s.from, PF_BREAKER_CLOSED);
    assert_int_equal(s.to, PF_BREAKER_OPEN);
    assert_int_equal(s.open_ns, INT64_C(10000000000));
    assert_int_equal(s.listened, 1);

    /* A change applied from the store is not told back, but listened. */
    assert_int_equal(pf_breaker_sync_apply(b, PF_BREAKER_CLOSED, 0), 0);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_CLOSED);
    assert_int_equal(s.changes, 1);
    assert_int_equal(s.listened, 2);
    assert_int_equal(pf_breaker_sync_apply(b, PF_BREAKER_OPEN,
                                           INT64_C(3000000000)), 0);
    assert_int_equal(pf_breaker_acquire(b, &p), PF_EOPEN);
    pf_breaker_metrics(b, &m);
    assert_int_equal(m.retry_at_ns - m.now_ns, INT64_C(3000000000));
    assert_int_equal(m.times_opened, 2);
    /* Already open: only the end moves; no event. */
    assert_int_equal(pf_breaker_sync_apply(b, PF_BREAKER_OPEN,
                                           INT64_C(5000000000)), 0);
    pf_breaker_metrics(b, &m);
    assert_int_equal(m.retry_at_ns - m.now_ns, INT64_C(5000000000));
    assert_int_equal(s.listened, 3);
    assert_int_equal(s.changes, 0 + 1);

    /* Time makes it half-open here: told (the store shares it). */
    pf_clock_manual_advance(clock, INT64_C(5000000000));
    assert_int_equal(pf_breaker_acquire(b, &p), 0);
    assert_int_equal(s.changes, 2);
    assert_int_equal(s.to, PF_BREAKER_HALF_OPEN);
    assert_int_equal(s.open_ns, 0);
    pf_breaker_record(b, &p, 0);
    assert_int_equal(s.changes, 3);
    assert_int_equal(s.to, PF_BREAKER_CLOSED);

    /* Held open: told as INT64_MAX; applied as INT64_MAX holds it. */
    pf_breaker_force_open(b);
    assert_int_equal(s.changes, 4);
    assert_int_equal(s.open_ns, INT64_MAX);
    assert_int_equal(pf_breaker_sync_apply(b, PF_BREAKER_HALF_OPEN, 0), 0);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_HALF_OPEN);
    assert_int_equal(pf_breaker_sync_apply(b, PF_BREAKER_OPEN, INT64_MAX), 0);
    pf_clock_manual_advance(clock, INT64_C(1000000000000));
    assert_int_equal(pf_breaker_acquire(b, &p), PF_EOPEN);
    pf_breaker_metrics(b, &m);
    assert_true(m.forced_open);
    assert_int_equal(s.changes, 4);

    /* Bad input. */
    assert_int_equal(pf_breaker_sync_apply(NULL, PF_BREAKER_OPEN, 0),
                     PF_EINVAL);
    assert_int_equal(pf_breaker_sync_apply(b, (pf_breaker_state_t)3, 0),
                     PF_EINVAL);
    assert_int_equal(pf_breaker_sync_apply(b, PF_BREAKER_OPEN, -1), PF_EINVAL);

    assert_int_equal(s.detached, 0);
    pf_breaker_free(b);
    assert_int_equal(s.detached, 1);
    pf_clock_free(clock);
}

static void
test_sync_breaker_bad_config(void **state)
{
    pf_breaker_config_t cfg;
    pf_breaker_group_config_t gc;
    pf_breaker_group_t *g = NULL;
    pf_breaker_t *b = NULL;
    pf_shared_config_t sc;
    pf_sync_t sync;

    (void)state;
    memset(&sync, 0, sizeof(sync));
    pf_shared_config_init(&sc);
    sc.name = "sync-test";
    pf_breaker_config_init(&cfg);
    cfg.sync = &sync;
    cfg.shared = &sc;
    assert_int_equal(pf_breaker_new(&cfg, &b), PF_EINVAL);
    assert_null(b);
    cfg.shared = NULL;
    pf_breaker_group_config_init(&gc);
    gc.breaker = &cfg;
    assert_int_equal(pf_breaker_group_new(&gc, &g), PF_EINVAL);
    assert_null(g);
    /* A hook with no functions is allowed (nothing is told). */
    assert_int_equal(pf_breaker_new(&cfg, &b), 0);
    trip(b, 5);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_OPEN);
    pf_breaker_free(b);
}

static void
test_sync_ratelimit_follows_take(void **state)
{
    pf_clock_t *clock;
    pf_ratelimit_config_t cfg;
    pf_ratelimit_t *rl;
    pf_ratelimit_metrics_t m;
    pf_sync_t sync;
    seen_t s;
    int64_t wait_ns = -1;

    (void)state;
    hooks_init(&sync, &s);
    sync.take = on_take;
    sync.give = on_give;
    assert_int_equal(pf_clock_manual_new(&clock), 0);
    pf_ratelimit_config_init(&cfg);
    cfg.clock = clock;
    cfg.rate = 1.0;
    cfg.burst = 2;
    cfg.sync = &sync;
    NEW_REFUSES_SHARED(pf_ratelimit_new, cfg, &rl);

    /* GRANT: the store decides; the local bucket is not touched. */
    s.answer = PF_SYNC_GRANT;
    for (int i = 0; i < 10; i++) {
        assert_int_equal(pf_ratelimit_try_acquire(rl, 1), 0);
    }
    assert_int_equal(s.taken, 10);
    pf_ratelimit_metrics(rl, &m);
    assert_int_equal(m.available, 2);
    assert_int_equal(m.acquired, 10);

    /* REFUSE: refused at once, also by the waiting forms. */
    s.answer = PF_SYNC_REFUSE;
    assert_int_equal(pf_ratelimit_try_acquire(rl, 1), PF_ERATELIMIT);
    assert_int_equal(pf_ratelimit_acquire(rl, 1, 60.0), PF_ERATELIMIT);
    assert_int_equal(pf_ratelimit_reserve(rl, 1, 60.0, &wait_ns),
                     PF_ERATELIMIT);
    pf_ratelimit_metrics(rl, &m);
    assert_int_equal(m.rejected, 3);

    /* LOCAL: the local bucket alone (burst 2), never waiting. */
    s.answer = PF_SYNC_LOCAL;
    assert_int_equal(pf_ratelimit_try_acquire(rl, 1), 0);
    assert_int_equal(pf_ratelimit_try_acquire(rl, 1), 0);
    assert_int_equal(pf_ratelimit_try_acquire(rl, 1), PF_ERATELIMIT);
    assert_int_equal(pf_ratelimit_acquire(rl, 1, 60.0), PF_ERATELIMIT);
    pf_clock_manual_advance(clock, INT64_C(1000000000));
    assert_int_equal(pf_ratelimit_try_acquire(rl, 1), 0);

    /* Refunds go to the store too. */
    pf_ratelimit_refund(rl, 3);
    assert_int_equal(s.given, 3);

    pf_ratelimit_free(rl);
    assert_int_equal(s.detached, 1);
    pf_clock_free(clock);
}

static void
test_sync_bulkhead_follows_take(void **state)
{
    pf_bulkhead_config_t cfg;
    pf_bulkhead_t *bh;
    pf_bulkhead_metrics_t m;
    pf_sync_t sync;
    seen_t s;

    (void)state;
    hooks_init(&sync, &s);
    sync.take = on_take;
    sync.give = on_give;
    pf_bulkhead_config_init(&cfg);
    cfg.max_concurrent_calls = 2;
    cfg.max_wait_duration = 60.0; /* not used: a synced bulkhead never
                                     queues */
    cfg.sync = &sync;
    NEW_REFUSES_SHARED(pf_bulkhead_new, cfg, &bh);

    /* REFUSE: refused at once, the local slot given back. */
    s.answer = PF_SYNC_REFUSE;
    assert_int_equal(pf_bulkhead_try_enter(bh), PF_EFULL);
    assert_int_equal(pf_bulkhead_enter(bh), PF_EFULL);
    pf_bulkhead_metrics(bh, &m);
    assert_int_equal(m.in_use, 0);

    /* GRANT, then LOCAL: admitted; the local limit still holds (the hook
     * is not asked when no local slot is free). */
    s.answer = PF_SYNC_GRANT;
    assert_int_equal(pf_bulkhead_try_enter(bh), 0);
    s.answer = PF_SYNC_LOCAL;
    assert_int_equal(pf_bulkhead_enter(bh), 0);
    s.answer = PF_SYNC_GRANT;
    assert_int_equal(pf_bulkhead_try_enter(bh), PF_EFULL);
    assert_int_equal(s.taken, 1);
    /* Every leave of an admitted call is told. */
    pf_bulkhead_leave(bh);
    pf_bulkhead_leave(bh);
    assert_int_equal(s.given, 2);
    pf_bulkhead_leave(bh); /* a leave without an enter: not told */
    assert_int_equal(s.given, 2);
    pf_bulkhead_metrics(bh, &m);
    assert_int_equal(m.in_use, 0);

    pf_bulkhead_free(bh);
    assert_int_equal(s.detached, 1);
}

static void
others_ten(void *arg, uint64_t *calls, uint64_t *retries)
{
    (void)arg;
    *calls = 100;
    *retries = 10;
}

/* A synced budget adds the others' window to its own: with 10 retries
 * spent elsewhere, a reserve of 10 is gone here too. */
static void
test_sync_budget_counts_others(void **state)
{
    pf_clock_t *clock;
    pf_retry_budget_config_t cfg;
    pf_retry_budget_t *b;
    pf_retry_budget_metrics_t m;
    pf_sync_t sync;
    seen_t s;

    (void)state;
    hooks_init(&sync, &s);
    sync.budget_others = others_ten;
    assert_int_equal(pf_clock_manual_new(&clock), 0);
    pf_retry_budget_config_init(&cfg);
    cfg.clock = clock;
    cfg.ratio = 0.0;
    cfg.min_retries_per_sec = 1.0;
    cfg.window = 10.0; /* a reserve of 10 retries */
    cfg.sync = &sync;
    NEW_REFUSES_SHARED(pf_retry_budget_new, cfg, &b);
    pf_retry_budget_deposit(b);
    assert_int_equal(pf_retry_budget_try_withdraw(b), PF_EBUDGET);
    pf_retry_budget_metrics(b, &m);
    assert_int_equal(m.window_calls, 101);
    assert_int_equal(m.window_retries, 10);
    assert_int_equal(m.available, 0);
    assert_int_equal(m.refused, 1);
    /* With a ratio, the others' calls earn retries here too. */
    pf_retry_budget_free(b);
    assert_int_equal(s.detached, 1);
    cfg.ratio = 0.1; /* 101 calls: 10 more */
    assert_int_equal(pf_retry_budget_new(&cfg, &b), 0);
    pf_retry_budget_deposit(b);
    assert_int_equal(pf_retry_budget_try_withdraw(b), 0);
    pf_retry_budget_free(b);
    pf_clock_free(clock);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sync_breaker_hook_and_apply),
        cmocka_unit_test(test_sync_breaker_bad_config),
        cmocka_unit_test(test_sync_ratelimit_follows_take),
        cmocka_unit_test(test_sync_bulkhead_follows_take),
        cmocka_unit_test(test_sync_budget_counts_others),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
