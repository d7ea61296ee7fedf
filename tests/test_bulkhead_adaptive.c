/* The adaptive bulkhead limit: the AIMD rule on its own (src/adaptive.h),
 * then as a bulkhead applies it, on the manual clock. */
#include <stdatomic.h>
#include <string.h>

#include "puffinflow/bulkhead.h"
#include "test.h"

#include "adaptive.h"

#define MS NS_PER_MS

/* ---- the rule ----------------------------------------------------------- */

static void
test_bulkhead_aimd_failures_halve_the_limit_down_to_the_floor(void **state)
{
    pf__aimd_t a;
    unsigned limit = 16;

    (void)state;
    pf__aimd_init(&a, 2, 16, 0.5, 0);
    limit = pf__aimd_update(&a, limit, 16, -1, 0, 1 * MS);
    assert_int_equal(limit, 8);
    limit = pf__aimd_update(&a, limit, 8, -1, 0, 2 * MS);
    assert_int_equal(limit, 4);
    limit = pf__aimd_update(&a, limit, 4, -1, 0, 3 * MS);
    assert_int_equal(limit, 2);
    limit = pf__aimd_update(&a, limit, 2, -1, 0, 4 * MS);
    assert_int_equal(limit, 2); /* the floor */
}

static void
test_bulkhead_aimd_decreases_once_per_round_of_calls(void **state)
{
    pf__aimd_t a;
    unsigned limit = 16;

    (void)state;
    pf__aimd_init(&a, 1, 16, 0.5, 0);
    limit = pf__aimd_update(&a, limit, 16, -1, 0, 10 * MS);
    assert_int_equal(limit, 8);
    /* Started at 6 ms, before the decrease at 10 ms: it ran under the old
     * limit and says nothing about the new one. */
    limit = pf__aimd_update(&a, limit, 8, -1, 5 * MS, 11 * MS);
    assert_int_equal(limit, 8);
    /* Started exactly at the decrease: admitted under the new limit. */
    limit = pf__aimd_update(&a, limit, 8, -1, 2 * MS, 12 * MS);
    assert_int_equal(limit, 4);
}

static void
test_bulkhead_aimd_good_calls_add_one_per_limit_while_busy(void **state)
{
    pf__aimd_t a;
    unsigned limit = 4;
    int i;

    (void)state;
    pf__aimd_init(&a, 1, 6, 0.5, 0);
    for (i = 0; i < 3; i++) {
        limit = pf__aimd_update(&a, limit, 2, 0, MS, 100 * MS);
        assert_int_equal(limit, 4);
    }
    limit = pf__aimd_update(&a, limit, 2, 0, MS, 100 * MS);
    assert_int_equal(limit, 5); /* a limit's worth (4) of good calls */
    for (i = 0; i < 5; i++) {
        limit = pf__aimd_update(&a, limit, 5, 0, MS, 100 * MS);
    }
    assert_int_equal(limit, 6);
    for (i = 0; i < 100; i++) {
        limit = pf__aimd_update(&a, limit, 6, 0, MS, 100 * MS);
    }
    assert_int_equal(limit, 6); /* the ceiling */
}

static void
test_bulkhead_aimd_does_not_grow_a_limit_nobody_uses(void **state)
{
    pf__aimd_t a;
    unsigned limit = 4;
    int i;

    (void)state;
    pf__aimd_init(&a, 1, 100, 0.5, 0);
    for (i = 0; i < 100; i++) {
        limit = pf__aimd_update(&a, limit, 1, 0, MS, 100 * MS);
    }
    assert_int_equal(limit, 4); /* 1 of 4 in use proves nothing */
}

static void
test_bulkhead_aimd_slow_calls_count_as_overload(void **state)
{
    pf__aimd_t a;
    unsigned limit = 10;

    (void)state;
    pf__aimd_init(&a, 1, 10, 0.5, 100 * MS);
    limit = pf__aimd_update(&a, limit, 10, 0, 100 * MS, 1000 * MS);
    assert_int_equal(limit, 10); /* exactly the threshold is not slower */
    limit = pf__aimd_update(&a, limit, 10, 0, 100 * MS + 1, 1000 * MS);
    assert_int_equal(limit, 5);
}

static void
test_bulkhead_aimd_always_moves_at_least_one_step_down(void **state)
{
    pf__aimd_t a;

    (void)state;
    pf__aimd_init(&a, 1, 10, 0.9, 0);
    assert_int_equal(pf__aimd_update(&a, 5, 5, -1, 0, 1 * MS), 4);
    assert_int_equal(pf__aimd_update(&a, 2, 2, -1, 0, 2 * MS), 1);
    assert_int_equal(pf__aimd_update(&a, 1, 1, -1, 0, 3 * MS), 1);
}

/* ---- the bulkhead ------------------------------------------------------- */

typedef struct changes {
    int count;
    unsigned last_old;
    unsigned last_new;
} changes_t;

static void
on_event(const pf_bulkhead_event_t *ev, void *arg)
{
    changes_t *ch = arg;

    if (ev->kind == PF_BULKHEAD_LIMIT_CHANGED) {
        ch->count++;
        ch->last_old = ev->old_max_concurrent;
        ch->last_new = ev->max_concurrent;
    }
}

static pf_bulkhead_t *
make_adaptive(pf_clock_t *c, unsigned start, unsigned floor, unsigned ceiling,
              double latency, changes_t *ch)
{
    pf_bulkhead_config_t cfg;
    pf_bulkhead_t *bh;

    memset(ch, 0, sizeof(*ch));
    pf_bulkhead_config_init(&cfg);
    cfg.name = "adaptive";
    cfg.max_concurrent_calls = start;
    cfg.clock = c;
    cfg.adaptive = true;
    cfg.adaptive_floor = floor;
    cfg.adaptive_ceiling = ceiling;
    cfg.adaptive_latency = latency;
    cfg.adaptive_backoff = 0.5;
    cfg.listener = on_event;
    cfg.listener_arg = ch;
    assert_pf_ok(pf_bulkhead_new(&cfg, &bh));
    return bh;
}

static unsigned
limit_of(pf_bulkhead_t *bh)
{
    pf_bulkhead_metrics_t m;

    pf_bulkhead_metrics(bh, &m);
    return m.max_concurrent;
}

typedef struct slow_call {
    pf_clock_t *clock;
    int64_t takes_ns;
    int result;
} slow_call_t;

static int
slow(void *arg)
{
    slow_call_t *s = arg;

    pf_clock_manual_advance(s->clock, s->takes_ns);
    return s->result;
}

static void
test_bulkhead_adaptive_call_shrinks_the_limit_when_calls_slow_down(void **state)
{
    pf_clock_t *c = *state;
    changes_t ch;
    pf_bulkhead_t *bh = make_adaptive(c, 8, 2, 8, 0.5, &ch);
    slow_call_t fast = {c, 100 * MS, 0};
    slow_call_t lagging = {c, 1000 * MS, 0};
    pf_bulkhead_metrics_t m;

    pf_bulkhead_metrics(bh, &m);
    assert_true(m.adaptive);
    assert_int_equal(m.adaptive_floor, 2);
    assert_int_equal(m.adaptive_ceiling, 8);
    assert_pf_ok(pf_bulkhead_call(bh, slow, &fast));
    assert_int_equal(limit_of(bh), 8);
    /* Latency is measured on the bulkhead's clock around the call. */
    assert_pf_ok(pf_bulkhead_call(bh, slow, &lagging));
    assert_int_equal(limit_of(bh), 4);
    assert_int_equal(ch.count, 1);
    assert_int_equal(ch.last_old, 8);
    assert_int_equal(ch.last_new, 4);
    assert_pf_ok(pf_bulkhead_call(bh, slow, &lagging));
    assert_pf_ok(pf_bulkhead_call(bh, slow, &lagging));
    assert_int_equal(limit_of(bh), 2); /* the floor */
    pf_bulkhead_free(bh);
}

static void
test_bulkhead_adaptive_call_counts_failures_as_overload(void **state)
{
    pf_clock_t *c = *state;
    changes_t ch;
    pf_bulkhead_t *bh = make_adaptive(c, 8, 1, 8, 0.0, &ch);
    slow_call_t failing = {c, MS, -7};
    slow_call_t lagging = {c, 3600 * NS_PER_SEC, 0};

    /* Latency ignored (adaptive_latency 0): an hour is fine. */
    assert_pf_ok(pf_bulkhead_call(bh, slow, &lagging));
    assert_int_equal(limit_of(bh), 8);
    assert_int_equal(pf_bulkhead_call(bh, slow, &failing), -7);
    assert_int_equal(limit_of(bh), 4);
    pf_bulkhead_free(bh);
}

static void
test_bulkhead_adaptive_limit_grows_back_to_the_ceiling(void **state)
{
    pf_clock_t *c = *state;
    changes_t ch;
    pf_bulkhead_t *bh = make_adaptive(c, 2, 1, 3, 0.0, &ch);
    int i;

    pf_bulkhead_record(bh, -1, 0);
    assert_int_equal(limit_of(bh), 1);
    /* One caller inside a limit of 1: busy. One good call adds one. */
    assert_pf_ok(pf_bulkhead_try_enter(bh));
    pf_bulkhead_record(bh, 0, MS);
    pf_bulkhead_leave(bh);
    assert_int_equal(limit_of(bh), 2);
    for (i = 0; i < 10; i++) {
        assert_pf_ok(pf_bulkhead_try_enter(bh));
        pf_bulkhead_record(bh, 0, MS);
        pf_bulkhead_leave(bh);
    }
    assert_int_equal(limit_of(bh), 3);
    assert_int_equal(ch.last_new, 3);
    pf_bulkhead_free(bh);
}

static int g_granted;

static void
on_grant(pf_bulkhead_ticket_t *t, void *arg)
{
    (void)t;
    (void)arg;
    g_granted++;
}

static void
test_bulkhead_adaptive_growth_admits_a_waiter(void **state)
{
    pf_clock_t *c = *state;
    changes_t ch;
    pf_bulkhead_t *bh = make_adaptive(c, 1, 1, 2, 0.0, &ch);
    pf_bulkhead_ticket_t t = {0};
    bool entered;

    g_granted = 0;
    assert_pf_ok(pf_bulkhead_try_enter(bh));
    assert_pf_ok(pf_bulkhead_enqueue(bh, &t, PF_PRIORITY_NORMAL, on_grant, NULL,
                                     &entered));
    assert_false(entered);
    pf_bulkhead_record(bh, 0, MS); /* busy limit of 1: grows to 2 */
    assert_int_equal(g_granted, 1);
    pf_bulkhead_leave(bh);
    pf_bulkhead_leave(bh);
    pf_bulkhead_free(bh);
}

static void
test_bulkhead_adaptive_set_max_concurrent_stays_within_bounds(void **state)
{
    pf_clock_t *c = *state;
    changes_t ch;
    pf_bulkhead_t *bh = make_adaptive(c, 4, 2, 6, 0.0, &ch);

    assert_pf_err(pf_bulkhead_set_max_concurrent(bh, 1), PF_EINVAL);
    assert_pf_err(pf_bulkhead_set_max_concurrent(bh, 7), PF_EINVAL);
    assert_int_equal(limit_of(bh), 4);
    assert_pf_ok(pf_bulkhead_set_max_concurrent(bh, 6));
    assert_int_equal(limit_of(bh), 6);
    assert_pf_ok(pf_bulkhead_set_max_concurrent(bh, 2));
    assert_int_equal(limit_of(bh), 2);
    pf_bulkhead_free(bh);
}

static void
test_bulkhead_record_is_a_no_op_when_not_adaptive(void **state)
{
    pf_bulkhead_config_t cfg;
    pf_bulkhead_t *bh;
    int i;

    pf_bulkhead_config_init(&cfg);
    cfg.max_concurrent_calls = 4;
    cfg.clock = *state;
    assert_pf_ok(pf_bulkhead_new(&cfg, &bh));
    for (i = 0; i < 10; i++) {
        pf_bulkhead_record(bh, -1, NS_PER_SEC);
    }
    assert_int_equal(limit_of(bh), 4);
    pf_bulkhead_record(NULL, -1, 0);
    pf_bulkhead_free(bh);
}

int
main(void)
{
#define T(name) CLOCK_TEST(name)
    const struct CMUnitTest tests[] = {
        T(test_bulkhead_aimd_failures_halve_the_limit_down_to_the_floor),
        T(test_bulkhead_aimd_decreases_once_per_round_of_calls),
        T(test_bulkhead_aimd_good_calls_add_one_per_limit_while_busy),
        T(test_bulkhead_aimd_does_not_grow_a_limit_nobody_uses),
        T(test_bulkhead_aimd_slow_calls_count_as_overload),
        T(test_bulkhead_aimd_always_moves_at_least_one_step_down),
        T(test_bulkhead_adaptive_call_shrinks_the_limit_when_calls_slow_down),
        T(test_bulkhead_adaptive_call_counts_failures_as_overload),
        T(test_bulkhead_adaptive_limit_grows_back_to_the_ceiling),
        T(test_bulkhead_adaptive_growth_admits_a_waiter),
        T(test_bulkhead_adaptive_set_max_concurrent_stays_within_bounds),
        T(test_bulkhead_record_is_a_no_op_when_not_adaptive),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
