/* Bulkhead: admission, the fair queue (FIFO, priorities, no barging), the
 * three faces sharing it, waits on the manual clock, the caller's deadline
 * and token, live resize, events, metrics, bad input and allocation
 * failure. The adaptive limit is in test_bulkhead_adaptive.c, the
 * many-thread stress in test_bulkhead_stress.c. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "puffinflow/bulkhead.h"
#include "test.h"

/* A bulkhead on the test's manual clock. */
static pf_bulkhead_t *
make(pf_clock_t *c, unsigned limit, double max_wait, unsigned queue)
{
    pf_bulkhead_config_t cfg;
    pf_bulkhead_t *bh = NULL;

    pf_bulkhead_config_init(&cfg);
    cfg.name = "test";
    cfg.max_concurrent_calls = limit;
    cfg.max_wait_duration = max_wait;
    cfg.max_queue_size = queue;
    cfg.clock = c;
    assert_pf_ok(pf_bulkhead_new(&cfg, &bh));
    return bh;
}

static pf_bulkhead_metrics_t
metrics(pf_bulkhead_t *bh)
{
    pf_bulkhead_metrics_t m;

    memset(&m, 0xff, sizeof(m));
    pf_bulkhead_metrics(bh, &m);
    return m;
}

/* ---- a thread that enters (and records when it got in) ---------------- */

typedef struct order_log {
    atomic_int next;
    int ids[64];
} order_log_t;

typedef struct waiter {
    pf_bulkhead_t *bh;
    pf_priority_t prio;
    const pf_deadline_t *deadline;
    pf_token_t *tok;
    bool leave_after; /* leave at once after entering */
    order_log_t *log;
    int id;
    int rc;
    atomic_int done;
    pthread_t tid;
} waiter_t;

static void
log_add(order_log_t *log, int id)
{
    int i = atomic_fetch_add(&log->next, 1);

    if (i < 64) {
        log->ids[i] = id;
    }
}

static void *
waiter_main(void *p)
{
    waiter_t *w = p;

    w->rc = pf_bulkhead_enter_until(w->bh, w->prio, w->deadline, w->tok);
    if (w->rc == 0 && w->log != NULL) {
        log_add(w->log, w->id);
    }
    if (w->rc == 0 && w->leave_after) {
        pf_bulkhead_leave(w->bh);
    }
    atomic_store(&w->done, 1);
    return NULL;
}

static void
waiter_start(waiter_t *w, pf_bulkhead_t *bh)
{
    w->bh = bh;
    atomic_init(&w->done, 0);
    assert_int_equal(pthread_create(&w->tid, NULL, waiter_main, w), 0);
}

static int
waiter_join(waiter_t *w)
{
    pthread_join(w->tid, NULL);
    return w->rc;
}

/* ---- config ------------------------------------------------------------ */

static void
test_bulkhead_config_init_sets_documented_defaults(void **state)
{
    pf_bulkhead_config_t cfg;

    (void)state;
    memset(&cfg, 0xab, sizeof(cfg));
    pf_bulkhead_config_init(&cfg);
    assert_string_equal(cfg.name, "default");
    assert_int_equal(cfg.max_concurrent_calls, 10);
    assert_true(cfg.max_wait_duration == 30.0);
    assert_int_equal(cfg.max_queue_size, 100);
    assert_null(cfg.clock);
    assert_null(cfg.listener);
    assert_false(cfg.adaptive);
    assert_int_equal(cfg.adaptive_floor, 1);
    assert_int_equal(cfg.adaptive_ceiling, 0);
    assert_true(cfg.adaptive_latency == 0.0);
    assert_true(cfg.adaptive_backoff == 0.9);
    pf_bulkhead_config_init(NULL);
}

static void
expect_einval(pf_bulkhead_config_t *cfg)
{
    pf_bulkhead_t *sentinel = (pf_bulkhead_t *)(uintptr_t)0x1;
    pf_bulkhead_t *bh = sentinel;

    assert_pf_err(pf_bulkhead_new(cfg, &bh), PF_EINVAL);
    assert_ptr_equal(bh, sentinel);
}

static void
test_bulkhead_new_rejects_bad_config_and_creates_nothing(void **state)
{
    pf_bulkhead_config_t cfg;
    pf_bulkhead_t *bh = NULL;
    long live0;

    (void)state;
    pf_test_alloc_install();
    live0 = pf_test_alloc_live();
    pf_bulkhead_config_init(&cfg);
    assert_pf_err(pf_bulkhead_new(NULL, &bh), PF_EINVAL);
    assert_pf_err(pf_bulkhead_new(&cfg, NULL), PF_EINVAL);

    cfg.name = NULL;
    expect_einval(&cfg);
    pf_bulkhead_config_init(&cfg);
    cfg.max_concurrent_calls = 0;
    expect_einval(&cfg);
    cfg.max_concurrent_calls = PF_BULKHEAD_MAX_LIMIT + 1;
    expect_einval(&cfg);
    pf_bulkhead_config_init(&cfg);
    cfg.max_wait_duration = -1.0;
    expect_einval(&cfg);
    cfg.max_wait_duration = NAN;
    expect_einval(&cfg);
    pf_bulkhead_config_init(&cfg);
    cfg.adaptive_latency = -0.5;
    expect_einval(&cfg);
    cfg.adaptive_latency = NAN;
    expect_einval(&cfg);
    pf_bulkhead_config_init(&cfg);
    cfg.adaptive_backoff = 0.0;
    expect_einval(&cfg);
    cfg.adaptive_backoff = 1.0;
    expect_einval(&cfg);
    cfg.adaptive_backoff = NAN;
    expect_einval(&cfg);
    pf_bulkhead_config_init(&cfg);
    cfg.adaptive = true;
    cfg.adaptive_floor = 0;
    expect_einval(&cfg);
    cfg.adaptive_floor = 11; /* above max_concurrent_calls (10) */
    expect_einval(&cfg);
    cfg.adaptive_floor = 1;
    cfg.adaptive_ceiling = 9; /* below max_concurrent_calls */
    expect_einval(&cfg);
    cfg.adaptive_ceiling = PF_BULKHEAD_MAX_LIMIT + 1;
    expect_einval(&cfg);
    assert_int_equal(pf_test_alloc_live(), live0);
    pf_test_alloc_uninstall();

    /* The edges are accepted: infinite wait, no queue, the largest limit. */
    pf_bulkhead_config_init(&cfg);
    cfg.max_wait_duration = INFINITY;
    cfg.max_queue_size = 0;
    cfg.max_concurrent_calls = PF_BULKHEAD_MAX_LIMIT;
    assert_pf_ok(pf_bulkhead_new(&cfg, &bh));
    pf_bulkhead_free(bh);
    pf_bulkhead_free(NULL);
}

static void
test_bulkhead_name_is_a_copy(void **state)
{
    pf_bulkhead_config_t cfg;
    pf_bulkhead_t *bh;
    char name[16] = "payments";

    (void)state;
    pf_bulkhead_config_init(&cfg);
    cfg.name = name;
    assert_pf_ok(pf_bulkhead_new(&cfg, &bh));
    name[0] = 'X';
    assert_string_equal(pf_bulkhead_name(bh), "payments");
    assert_null(pf_bulkhead_name(NULL));
    pf_bulkhead_free(bh);
}

/* ---- the permit face ------------------------------------------------- */

static void
test_bulkhead_try_enter_admits_up_to_the_limit_then_is_full(void **state)
{
    pf_bulkhead_t *bh = make(*state, 3, 1.0, 10);
    pf_bulkhead_metrics_t m;

    assert_pf_ok(pf_bulkhead_try_enter(bh));
    assert_pf_ok(pf_bulkhead_try_enter(bh));
    assert_pf_ok(pf_bulkhead_try_enter(bh));
    assert_pf_err(pf_bulkhead_try_enter(bh), PF_EFULL);
    m = metrics(bh);
    assert_int_equal(m.in_use, 3);
    assert_int_equal(m.available, 0);
    assert_int_equal(m.accepted, 3);
    assert_int_equal(m.rejected_full, 1);
    pf_bulkhead_leave(bh);
    m = metrics(bh);
    assert_int_equal(m.in_use, 2);
    assert_int_equal(m.available, 1);
    assert_pf_ok(pf_bulkhead_try_enter(bh));
    assert_pf_err(pf_bulkhead_try_enter(NULL), PF_EINVAL);
    for (int i = 0; i < 3; i++) {
        pf_bulkhead_leave(bh);
    }
    assert_int_equal(metrics(bh).in_use, 0);
    pf_bulkhead_free(bh);
}

typedef struct events {
    int count[8];
    pf_bulkhead_event_t last;
    pf_bulkhead_t *bh; /* to prove the lock is free in the callback */
} events_t;

static void
on_event(const pf_bulkhead_event_t *ev, void *arg)
{
    events_t *e = arg;
    pf_bulkhead_ticket_t never = {0};

    e->count[ev->kind]++;
    e->last = *ev;
    /* pf_bulkhead_cancel takes the bulkhead's lock: this would deadlock if
     * the listener ran under it. */
    assert_false(pf_bulkhead_cancel(e->bh, &never, 0));
}

static pf_bulkhead_t *
make_listened(pf_clock_t *c, unsigned limit, double max_wait, unsigned queue,
              events_t *e)
{
    pf_bulkhead_config_t cfg;
    pf_bulkhead_t *bh;

    memset(e, 0, sizeof(*e));
    pf_bulkhead_config_init(&cfg);
    cfg.name = "listened";
    cfg.max_concurrent_calls = limit;
    cfg.max_wait_duration = max_wait;
    cfg.max_queue_size = queue;
    cfg.clock = c;
    cfg.listener = on_event;
    cfg.listener_arg = e;
    assert_pf_ok(pf_bulkhead_new(&cfg, &bh));
    e->bh = bh;
    return bh;
}

static void
test_bulkhead_leave_without_enter_is_ignored_when_nobody_is_inside(void **state)
{
    events_t e;
    pf_bulkhead_t *bh = make_listened(*state, 2, 1.0, 10, &e);
    pf_bulkhead_metrics_t m;

    pf_bulkhead_leave(bh);
    pf_bulkhead_leave(bh);
    m = metrics(bh);
    assert_int_equal(m.in_use, 0); /* no underflow */
    assert_int_equal(m.leave_without_enter, 2);
    assert_int_equal(e.count[PF_BULKHEAD_LEAVE_WITHOUT_ENTER], 2);
    assert_string_equal(e.last.name, "listened");
    /* The limit still holds exactly. */
    assert_pf_ok(pf_bulkhead_try_enter(bh));
    assert_pf_ok(pf_bulkhead_try_enter(bh));
    assert_pf_err(pf_bulkhead_try_enter(bh), PF_EFULL);
    pf_bulkhead_leave(bh);
    pf_bulkhead_leave(bh);
    pf_bulkhead_leave(bh);
    assert_int_equal(metrics(bh).leave_without_enter, 3);
    pf_bulkhead_leave(NULL);
    pf_bulkhead_free(bh);
}

static int
return_arg(void *arg)
{
    return *(int *)arg;
}

static int
check_inside(void *arg)
{
    pf_bulkhead_t *bh = arg;

    return metrics(bh).in_use == 1 ? 0 : -1;
}

static void
test_bulkhead_call_returns_the_result_unchanged_and_leaves(void **state)
{
    pf_bulkhead_t *bh = make(*state, 1, 1.0, 10);
    int v = 0;

    assert_pf_ok(pf_bulkhead_call(bh, check_inside, bh));
    v = -1;
    assert_int_equal(pf_bulkhead_call(bh, return_arg, &v), -1);
    v = 42;
    assert_int_equal(pf_bulkhead_call(bh, return_arg, &v), 42);
    assert_int_equal(metrics(bh).in_use, 0);
    assert_int_equal(metrics(bh).accepted, 3);
    assert_pf_err(pf_bulkhead_call(NULL, return_arg, &v), PF_EINVAL);
    assert_pf_err(pf_bulkhead_call(bh, NULL, &v), PF_EINVAL);
    pf_bulkhead_free(bh);
}

static int g_calls;

static int
count_call(void *arg)
{
    (void)arg;
    g_calls++;
    return 0;
}

static void
test_bulkhead_call_rejects_without_calling_when_full(void **state)
{
    events_t e;
    pf_bulkhead_t *bh = make_listened(*state, 1, 1.0, 0, &e);

    g_calls = 0;
    assert_pf_ok(pf_bulkhead_try_enter(bh));
    assert_pf_err(pf_bulkhead_call(bh, count_call, NULL), PF_EFULL);
    assert_int_equal(g_calls, 0);
    assert_int_equal(e.count[PF_BULKHEAD_REJECTED_FULL], 1);
    assert_int_equal(e.last.in_use, 1);
    assert_int_equal(e.last.max_concurrent, 1);
    pf_bulkhead_leave(bh);
    pf_bulkhead_free(bh);
}

static void
test_bulkhead_enter_rejects_at_once_when_nobody_may_wait(void **state)
{
    pf_bulkhead_t *no_queue = make(*state, 1, 10.0, 0);

    assert_pf_ok(pf_bulkhead_enter(no_queue));
    assert_pf_err(pf_bulkhead_enter(no_queue), PF_EFULL);
    assert_int_equal(metrics(no_queue).rejected_full, 1);
    assert_int_equal(pf_clock_manual_waiters(*state), 0);
    assert_pf_err(pf_bulkhead_enter(NULL), PF_EINVAL);
    pf_bulkhead_leave(no_queue);
    pf_bulkhead_free(no_queue);
}

static void
on_grant_count(pf_bulkhead_ticket_t *t, void *arg)
{
    int *n = arg;

    (void)t;
    (*n)++;
}

/* One rule for durations: 0 is "off", so a max_wait_duration of 0 is no
 * limit at all (as INFINITY); max_queue_size 0 is what says "never wait". */
static void
test_bulkhead_zero_max_wait_means_no_limit(void **state)
{
    pf_bulkhead_t *bh = make(*state, 1, 0.0, 10);
    pf_bulkhead_ticket_t t = {0};
    pf_deadline_t d;
    bool entered = true;
    int granted = 0;

    assert_pf_ok(pf_bulkhead_try_enter(bh));
    assert_pf_ok(pf_bulkhead_enqueue(bh, &t, PF_PRIORITY_NORMAL,
                                     on_grant_count, &granted, &entered));
    assert_false(entered);
    d = pf_bulkhead_ticket_deadline(&t);
    assert_true(pf_deadline_is_none(&d));
    pf_clock_manual_advance(*state, 1000000 * NS_PER_SEC);
    assert_int_equal(metrics(bh).waiting, 1); /* still waiting */
    assert_int_equal(metrics(bh).rejected_timeout, 0);
    pf_bulkhead_leave(bh); /* the slot passes to the waiter */
    assert_int_equal(granted, 1);
    pf_bulkhead_leave(bh);
    pf_bulkhead_free(bh);
}

/* ---- waiting ---------------------------------------------------------- */

static void
test_bulkhead_enter_waits_and_gets_the_freed_slot(void **state)
{
    pf_clock_t *c = *state;
    pf_bulkhead_t *bh = make(c, 1, 30.0, 10);
    waiter_t w = {0};
    pf_bulkhead_metrics_t m;

    assert_pf_ok(pf_bulkhead_enter(bh));
    waiter_start(&w, bh);
    pf_test_wait_for_waiters(c, 1);
    m = metrics(bh);
    assert_int_equal(m.waiting, 1);
    assert_int_equal(m.in_use, 1);
    pf_bulkhead_leave(bh);
    assert_pf_ok(waiter_join(&w));
    m = metrics(bh);
    assert_int_equal(m.in_use, 1); /* the waiter holds the slot now */
    assert_int_equal(m.waiting, 0);
    assert_int_equal(m.accepted, 2);
    pf_bulkhead_leave(bh);
    assert_int_equal(metrics(bh).in_use, 0);
    pf_bulkhead_free(bh);
}

static void
test_bulkhead_enter_times_out_when_the_clock_passes_max_wait(void **state)
{
    pf_clock_t *c = *state;
    events_t e;
    pf_bulkhead_t *bh = make_listened(c, 1, 2.0, 10, &e);
    waiter_t w = {0};
    pf_bulkhead_metrics_t m;

    assert_pf_ok(pf_bulkhead_enter(bh));
    waiter_start(&w, bh);
    pf_test_wait_for_waiters(c, 1);
    pf_clock_manual_advance(c, 2 * NS_PER_SEC - 1);
    assert_int_equal(atomic_load(&w.done), 0); /* 1 ns short: still waits */
    pf_clock_manual_advance(c, 1);
    assert_pf_err(waiter_join(&w), PF_EFULL);
    m = metrics(bh);
    assert_int_equal(m.rejected_timeout, 1);
    assert_int_equal(m.rejected_full, 0);
    assert_int_equal(m.waiting, 0);
    assert_int_equal(m.in_use, 1);
    assert_int_equal(e.count[PF_BULKHEAD_REJECTED_TIMEOUT], 1);
    /* The queue is empty again: the fast path works. */
    pf_bulkhead_leave(bh);
    assert_pf_ok(pf_bulkhead_try_enter(bh));
    pf_bulkhead_leave(bh);
    pf_bulkhead_free(bh);
}

static void
test_bulkhead_enter_rejects_at_once_when_the_queue_is_full(void **state)
{
    pf_clock_t *c = *state;
    events_t e;
    pf_bulkhead_t *bh = make_listened(c, 1, 30.0, 1, &e);
    waiter_t w = {0};

    assert_pf_ok(pf_bulkhead_enter(bh));
    waiter_start(&w, bh);
    pf_test_wait_for_waiters(c, 1);
    assert_pf_err(pf_bulkhead_enter(bh), PF_EFULL); /* no room to wait */
    assert_int_equal(e.count[PF_BULKHEAD_REJECTED_FULL], 1);
    assert_int_equal(e.last.waiting, 1);
    assert_int_equal(metrics(bh).rejected_full, 1);
    pf_bulkhead_leave(bh);
    assert_pf_ok(waiter_join(&w));
    pf_bulkhead_leave(bh);
    pf_bulkhead_free(bh);
}

static void
test_bulkhead_waiters_are_served_first_come_first_served(void **state)
{
    pf_clock_t *c = *state;
    pf_bulkhead_t *bh = make(c, 1, 30.0, 64);
    order_log_t log;
    waiter_t w[8];
    int i;

    memset(w, 0, sizeof(w));
    atomic_init(&log.next, 0);
    assert_pf_ok(pf_bulkhead_enter(bh));
    /* Start them one at a time, each parked before the next starts, so
     * the order they queued in is known. */
    for (i = 0; i < 8; i++) {
        w[i].id = i;
        w[i].prio = PF_PRIORITY_NORMAL;
        w[i].log = &log;
        w[i].leave_after = true;
        waiter_start(&w[i], bh);
        pf_test_wait_for_waiters(c, (size_t)i + 1);
    }
    assert_int_equal(metrics(bh).waiting, 8);
    pf_bulkhead_leave(bh); /* each hands the slot on as it leaves */
    for (i = 0; i < 8; i++) {
        assert_pf_ok(waiter_join(&w[i]));
    }
    assert_int_equal(atomic_load(&log.next), 8);
    for (i = 0; i < 8; i++) {
        assert_int_equal(log.ids[i], i);
    }
    assert_int_equal(metrics(bh).in_use, 0);
    pf_bulkhead_free(bh);
}

static void
test_bulkhead_freed_slot_goes_to_the_waiter_not_a_newcomer(void **state)
{
    pf_clock_t *c = *state;
    pf_bulkhead_t *bh = make(c, 1, 30.0, 10);
    waiter_t w = {0};

    assert_pf_ok(pf_bulkhead_enter(bh));
    waiter_start(&w, bh);
    pf_test_wait_for_waiters(c, 1);
    pf_bulkhead_leave(bh);
    /* The slot was handed over inside leave, before the waiter even woke:
     * a newcomer finds it taken. */
    assert_pf_err(pf_bulkhead_try_enter(bh), PF_EFULL);
    assert_pf_ok(waiter_join(&w));
    assert_int_equal(metrics(bh).in_use, 1);
    pf_bulkhead_leave(bh);
    assert_pf_ok(pf_bulkhead_try_enter(bh));
    pf_bulkhead_leave(bh);
    pf_bulkhead_free(bh);
}

/* ---- tickets ------------------------------------------------------------ */

typedef struct grant_rec {
    pf_bulkhead_t *bh;
    order_log_t *log;
    int id;
    bool leave; /* leave from inside the callback */
    int calls;
} grant_rec_t;

static void
on_grant(pf_bulkhead_ticket_t *t, void *arg)
{
    grant_rec_t *g = arg;

    (void)t;
    g->calls++;
    log_add(g->log, g->id);
    if (g->leave) {
        pf_bulkhead_leave(g->bh);
    }
}

/* Every event in order, for the waiting-path events. Written by whichever
 * thread reports; read by the test only after that thread is parked on
 * the manual clock or joined (both order the writes before the read). */
typedef struct event_seq {
    int n;
    pf_bulkhead_event_kind_t kind[8];
    int64_t wait_ns[8];
    unsigned waiting[8];
} event_seq_t;

static void
seq_record(const pf_bulkhead_event_t *ev, void *arg)
{
    event_seq_t *q = arg;

    if (q->n < 8) {
        q->kind[q->n] = ev->kind;
        q->wait_ns[q->n] = ev->wait_ns;
        q->waiting[q->n] = ev->waiting;
    }
    q->n++;
}

static pf_bulkhead_t *
make_sequenced(pf_clock_t *c, event_seq_t *q)
{
    pf_bulkhead_config_t cfg;
    pf_bulkhead_t *bh;

    memset(q, 0, sizeof(*q));
    pf_bulkhead_config_init(&cfg);
    cfg.name = "sequenced";
    cfg.max_concurrent_calls = 1;
    cfg.max_wait_duration = 30.0;
    cfg.max_queue_size = 4;
    cfg.clock = c;
    cfg.listener = seq_record;
    cfg.listener_arg = q;
    assert_pf_ok(pf_bulkhead_new(&cfg, &bh));
    return bh;
}

static void
test_bulkhead_events_report_nothing_when_entering_at_once(void **state)
{
    event_seq_t q;
    pf_bulkhead_t *bh = make_sequenced(*state, &q);
    pf_bulkhead_ticket_t t = {0};
    order_log_t log = {0};
    grant_rec_t g = {0};
    bool entered = false;
    int v = 0;

    assert_pf_ok(pf_bulkhead_try_enter(bh));
    pf_bulkhead_leave(bh);
    assert_pf_ok(pf_bulkhead_enter(bh));
    pf_bulkhead_leave(bh);
    assert_pf_ok(pf_bulkhead_call(bh, return_arg, &v));
    g = (grant_rec_t){bh, &log, 1, false, 0};
    assert_pf_ok(pf_bulkhead_enqueue(bh, &t, PF_PRIORITY_NORMAL, on_grant,
                                     &g, &entered));
    assert_true(entered);
    assert_int_equal(g.calls, 0);
    pf_bulkhead_leave(bh);
    assert_int_equal(q.n, 0);
    pf_bulkhead_free(bh);
}

static void
test_bulkhead_events_report_queued_then_granted_with_the_wait(void **state)
{
    pf_clock_t *c = *state;
    event_seq_t q;
    pf_bulkhead_t *bh = make_sequenced(c, &q);
    waiter_t w = {0};

    assert_pf_ok(pf_bulkhead_try_enter(bh));
    pf_clock_manual_advance(c, 1 * NS_PER_SEC);
    waiter_start(&w, bh);
    pf_test_wait_for_waiters(c, 1);
    assert_int_equal(q.n, 1);
    assert_int_equal(q.kind[0], PF_BULKHEAD_QUEUED);
    assert_int_equal(q.waiting[0], 1);
    pf_clock_manual_advance(c, 3 * NS_PER_SEC); /* still inside max_wait */
    pf_test_wait_for_waiters(c, 1);
    assert_int_equal(q.n, 1);
    pf_bulkhead_leave(bh);
    assert_pf_ok(waiter_join(&w));
    assert_int_equal(q.n, 2);
    assert_int_equal(q.kind[1], PF_BULKHEAD_GRANTED);
    assert_true(q.wait_ns[1] == 3 * NS_PER_SEC);
    assert_int_equal(q.waiting[1], 0);
    pf_bulkhead_leave(bh);
    pf_bulkhead_free(bh);
}

static void
test_bulkhead_events_report_a_tickets_queue_and_grant(void **state)
{
    pf_clock_t *c = *state;
    event_seq_t q;
    pf_bulkhead_t *bh = make_sequenced(c, &q);
    pf_bulkhead_ticket_t t = {0};
    order_log_t log = {0};
    grant_rec_t g;
    bool entered = true;

    assert_pf_ok(pf_bulkhead_try_enter(bh));
    g = (grant_rec_t){bh, &log, 7, false, 0};
    assert_pf_ok(pf_bulkhead_enqueue(bh, &t, PF_PRIORITY_NORMAL, on_grant,
                                     &g, &entered));
    assert_false(entered);
    assert_int_equal(q.n, 1);
    assert_int_equal(q.kind[0], PF_BULKHEAD_QUEUED);
    assert_int_equal(q.waiting[0], 1);
    pf_clock_manual_advance(c, 5 * NS_PER_SEC / 2);
    assert_int_equal(q.n, 1);
    pf_bulkhead_leave(bh); /* hands the slot to the ticket */
    assert_int_equal(g.calls, 1);
    assert_int_equal(q.n, 2);
    assert_int_equal(q.kind[1], PF_BULKHEAD_GRANTED);
    assert_true(q.wait_ns[1] == 5 * NS_PER_SEC / 2);
    pf_bulkhead_leave(bh);
    /* A rejected or cancelled ticket was never granted: no GRANTED. */
    assert_pf_ok(pf_bulkhead_try_enter(bh));
    assert_pf_ok(pf_bulkhead_enqueue(bh, &t, PF_PRIORITY_NORMAL, on_grant,
                                     &g, &entered));
    assert_true(pf_bulkhead_cancel(bh, &t, PF_ECANCELED));
    pf_bulkhead_leave(bh);
    assert_int_equal(q.n, 3);
    assert_int_equal(q.kind[2], PF_BULKHEAD_QUEUED);
    assert_int_equal(g.calls, 1);
    pf_bulkhead_free(bh);
}

static void
test_bulkhead_priority_serves_higher_first_then_fifo(void **state)
{
    pf_bulkhead_t *bh = make(*state, 1, 30.0, 10);
    static const pf_priority_t prio[6] = {
        PF_PRIORITY_LOW,  PF_PRIORITY_NORMAL, PF_PRIORITY_CRITICAL,
        PF_PRIORITY_HIGH, PF_PRIORITY_NORMAL, PF_PRIORITY_CRITICAL};
    static const int expect[6] = {2, 5, 3, 1, 4, 0};
    pf_bulkhead_ticket_t t[6];
    grant_rec_t g[6];
    order_log_t log;
    bool entered;
    int i;

    memset(t, 0, sizeof(t));
    atomic_init(&log.next, 0);
    assert_pf_ok(pf_bulkhead_try_enter(bh));
    for (i = 0; i < 6; i++) {
        g[i] = (grant_rec_t){bh, &log, i, true, 0};
        assert_pf_ok(
            pf_bulkhead_enqueue(bh, &t[i], prio[i], on_grant, &g[i], &entered));
        assert_false(entered);
    }
    assert_int_equal(metrics(bh).waiting, 6);
    pf_bulkhead_leave(bh);
    assert_int_equal(atomic_load(&log.next), 6);
    for (i = 0; i < 6; i++) {
        assert_int_equal(log.ids[i], expect[i]);
        assert_int_equal(g[i].calls, 1);
    }
    assert_int_equal(metrics(bh).in_use, 0);
    pf_bulkhead_free(bh);
}

static void
test_bulkhead_tickets_and_threads_share_one_queue(void **state)
{
    pf_clock_t *c = *state;
    pf_bulkhead_t *bh = make(c, 1, 30.0, 10);
    order_log_t log;
    waiter_t w1 = {0};
    waiter_t w2 = {0};
    pf_bulkhead_ticket_t t = {0};
    grant_rec_t g;
    bool entered;

    atomic_init(&log.next, 0);
    g = (grant_rec_t){bh, &log, 100, false, 0};
    assert_pf_ok(pf_bulkhead_enter(bh));
    w1.id = 1;
    w1.prio = PF_PRIORITY_NORMAL;
    w1.log = &log;
    w1.leave_after = true;
    waiter_start(&w1, bh);
    pf_test_wait_for_waiters(c, 1);
    assert_pf_ok(pf_bulkhead_enqueue(bh, &t, PF_PRIORITY_NORMAL, on_grant, &g,
                                     &entered));
    assert_false(entered);
    w2.id = 2;
    w2.prio = PF_PRIORITY_NORMAL;
    w2.log = &log;
    w2.leave_after = false;
    waiter_start(&w2, bh);
    pf_test_wait_for_waiters(c, 2);

    pf_bulkhead_leave(bh); /* to w1, who leaves: to the ticket */
    assert_pf_ok(waiter_join(&w1));
    assert_int_equal(g.calls, 1);
    assert_int_equal(atomic_load(&w2.done), 0);
    pf_bulkhead_leave(bh); /* the ticket's slot: to w2 */
    assert_pf_ok(waiter_join(&w2));
    assert_int_equal(atomic_load(&log.next), 3);
    assert_int_equal(log.ids[0], 1);
    assert_int_equal(log.ids[1], 100);
    assert_int_equal(log.ids[2], 2);
    pf_bulkhead_leave(bh);
    assert_int_equal(metrics(bh).in_use, 0);
    pf_bulkhead_free(bh);
}

static void
test_bulkhead_enqueue_enters_at_once_when_a_slot_is_free(void **state)
{
    pf_bulkhead_t *bh = make(*state, 1, 30.0, 10);
    pf_bulkhead_ticket_t t = {0};
    grant_rec_t g = {0};
    order_log_t log;
    bool entered = false;

    atomic_init(&log.next, 0);
    g.log = &log;
    assert_pf_ok(
        pf_bulkhead_enqueue(bh, &t, PF_PRIORITY_LOW, on_grant, &g, &entered));
    assert_true(entered);
    assert_int_equal(g.calls, 0);
    assert_int_equal(metrics(bh).in_use, 1);
    assert_false(pf_bulkhead_cancel(bh, &t, 0)); /* never queued */
    pf_bulkhead_leave(bh);
    assert_int_equal(g.calls, 0);
    pf_bulkhead_free(bh);
}

static void
test_bulkhead_cancel_removes_a_queued_ticket_for_good(void **state)
{
    events_t e;
    pf_bulkhead_t *bh = make_listened(*state, 1, 30.0, 10, &e);
    pf_bulkhead_ticket_t t1 = {0};
    pf_bulkhead_ticket_t t2 = {0};
    pf_bulkhead_ticket_t t3 = {0};
    grant_rec_t g1;
    grant_rec_t g2;
    grant_rec_t g3;
    order_log_t log;
    pf_bulkhead_metrics_t m;
    bool entered;

    atomic_init(&log.next, 0);
    g1 = (grant_rec_t){bh, &log, 1, false, 0};
    g2 = (grant_rec_t){bh, &log, 2, false, 0};
    g3 = (grant_rec_t){bh, &log, 3, false, 0};
    assert_pf_ok(pf_bulkhead_try_enter(bh));
    assert_pf_ok(pf_bulkhead_enqueue(bh, &t1, PF_PRIORITY_NORMAL, on_grant, &g1,
                                     &entered));
    assert_pf_ok(pf_bulkhead_enqueue(bh, &t2, PF_PRIORITY_NORMAL, on_grant, &g2,
                                     &entered));
    assert_pf_ok(pf_bulkhead_enqueue(bh, &t3, PF_PRIORITY_NORMAL, on_grant, &g3,
                                     &entered));
    assert_true(pf_bulkhead_cancel(bh, &t1, PF_EFULL)); /* wait ran out */
    assert_true(pf_bulkhead_cancel(bh, &t2, PF_ECANCELED));
    assert_false(pf_bulkhead_cancel(bh, &t2, PF_ECANCELED)); /* not twice */
    m = metrics(bh);
    assert_int_equal(m.rejected_timeout, 1);
    assert_int_equal(m.cancelled, 1);
    assert_int_equal(m.waiting, 1);
    assert_int_equal(e.count[PF_BULKHEAD_REJECTED_TIMEOUT], 1);

    pf_bulkhead_leave(bh);
    assert_int_equal(g1.calls, 0);
    assert_int_equal(g2.calls, 0);
    assert_int_equal(g3.calls, 1);
    assert_false(pf_bulkhead_cancel(bh, &t3, 0)); /* already granted */
    assert_false(pf_bulkhead_cancel(NULL, &t3, 0));
    assert_false(pf_bulkhead_cancel(bh, NULL, 0));
    pf_bulkhead_leave(bh);
    assert_int_equal(metrics(bh).in_use, 0);
    /* Cancelling the last one empties the queue: the fast path is back. */
    assert_pf_ok(pf_bulkhead_try_enter(bh));
    assert_pf_ok(pf_bulkhead_enqueue(bh, &t1, PF_PRIORITY_NORMAL, on_grant, &g1,
                                     &entered));
    assert_true(pf_bulkhead_cancel(bh, &t1, 0));
    pf_bulkhead_leave(bh);
    assert_pf_ok(pf_bulkhead_try_enter(bh));
    pf_bulkhead_leave(bh);
    pf_bulkhead_free(bh);
}

static void
test_bulkhead_enqueue_rejects_bad_input_and_a_full_queue(void **state)
{
    events_t e;
    pf_bulkhead_t *bh = make_listened(*state, 1, 30.0, 1, &e);
    pf_bulkhead_t *no_wait = make(*state, 1, 10.0, 0);
    pf_bulkhead_ticket_t t = {0};
    pf_bulkhead_ticket_t t2 = {0};
    grant_rec_t g = {0};
    order_log_t log;
    bool entered;

    atomic_init(&log.next, 0);
    g.log = &log;
    assert_pf_err(pf_bulkhead_enqueue(NULL, &t, PF_PRIORITY_NORMAL, on_grant,
                                      &g, &entered),
                  PF_EINVAL);
    assert_pf_err(pf_bulkhead_enqueue(bh, NULL, PF_PRIORITY_NORMAL, on_grant,
                                      &g, &entered),
                  PF_EINVAL);
    assert_pf_err(
        pf_bulkhead_enqueue(bh, &t, PF_PRIORITY_NORMAL, NULL, &g, &entered),
        PF_EINVAL);
    assert_pf_err(
        pf_bulkhead_enqueue(bh, &t, PF_PRIORITY_NORMAL, on_grant, &g, NULL),
        PF_EINVAL);
    assert_pf_err(
        pf_bulkhead_enqueue(bh, &t, (pf_priority_t)7, on_grant, &g, &entered),
        PF_EINVAL);
    assert_pf_err(
        pf_bulkhead_enqueue(bh, &t, (pf_priority_t)-1, on_grant, &g, &entered),
        PF_EINVAL);
    assert_int_equal(metrics(bh).accepted, 0); /* nothing was taken */

    assert_pf_ok(pf_bulkhead_try_enter(bh));
    assert_pf_ok(pf_bulkhead_enqueue(bh, &t, PF_PRIORITY_NORMAL, on_grant, &g,
                                     &entered));
    /* The same ticket again while it waits: refused, queue intact. */
    assert_pf_err(
        pf_bulkhead_enqueue(bh, &t, PF_PRIORITY_NORMAL, on_grant, &g, &entered),
        PF_EINVAL);
    assert_pf_err(pf_bulkhead_enqueue(bh, &t2, PF_PRIORITY_CRITICAL, on_grant,
                                      &g, &entered),
                  PF_EFULL);
    assert_int_equal(e.count[PF_BULKHEAD_REJECTED_FULL], 1);
    assert_int_equal(metrics(bh).waiting, 1);

    assert_pf_ok(pf_bulkhead_try_enter(no_wait));
    assert_pf_err(pf_bulkhead_enqueue(no_wait, &t2, PF_PRIORITY_NORMAL,
                                      on_grant, &g, &entered),
                  PF_EFULL);
    pf_bulkhead_leave(no_wait);

    pf_bulkhead_leave(bh);
    assert_int_equal(g.calls, 1);
    pf_bulkhead_leave(bh);
    pf_bulkhead_free(bh);
    pf_bulkhead_free(no_wait);
}

static void
test_bulkhead_ticket_deadline_is_max_wait_after_it_queued(void **state)
{
    pf_clock_t *c = *state;
    pf_bulkhead_t *bh = make(c, 1, 2.5, 10);
    pf_bulkhead_t *forever = make(c, 1, INFINITY, 10);
    pf_bulkhead_ticket_t t = {0};
    pf_bulkhead_ticket_t t2 = {0};
    grant_rec_t g = {0};
    order_log_t log;
    pf_deadline_t d;
    bool entered;

    atomic_init(&log.next, 0);
    g.log = &log;
    pf_clock_manual_advance(c, 5 * NS_PER_SEC);
    assert_pf_ok(pf_bulkhead_try_enter(bh));
    assert_pf_ok(pf_bulkhead_enqueue(bh, &t, PF_PRIORITY_NORMAL, on_grant, &g,
                                     &entered));
    d = pf_bulkhead_ticket_deadline(&t);
    assert_ptr_equal(d.priv_clock, c);
    assert_int_equal(d.priv_at_ns, 7 * NS_PER_SEC + NS_PER_SEC / 2);
    assert_true(pf_deadline_remaining(&d) == 2.5);

    assert_pf_ok(pf_bulkhead_try_enter(forever));
    assert_pf_ok(pf_bulkhead_enqueue(forever, &t2, PF_PRIORITY_NORMAL, on_grant,
                                     &g, &entered));
    d = pf_bulkhead_ticket_deadline(&t2);
    assert_true(pf_deadline_is_none(&d));
    d = pf_bulkhead_ticket_deadline(NULL);
    assert_true(pf_deadline_is_none(&d));

    assert_true(pf_bulkhead_cancel(bh, &t, PF_EFULL));
    assert_true(pf_bulkhead_cancel(forever, &t2, PF_ECANCELED));
    pf_bulkhead_leave(bh);
    pf_bulkhead_leave(forever);
    pf_bulkhead_free(bh);
    pf_bulkhead_free(forever);
}

/* 200000 grants where each callback leaves at once: nested calls would
 * need far more stack than a thread has, so this proves the chain runs
 * as a loop. */
#define CHAIN 200000

typedef struct chain {
    pf_bulkhead_t *bh;
    long granted;
    long last;
    bool in_order;
} chain_t;

typedef struct chain_ticket {
    pf_bulkhead_ticket_t t;
    long id;
    chain_t *ch;
} chain_ticket_t;

static void
on_chain_grant(pf_bulkhead_ticket_t *t, void *arg)
{
    chain_ticket_t *ct = arg;

    assert_ptr_equal(t, &ct->t);
    if (ct->id != ct->ch->last + 1) {
        ct->ch->in_order = false;
    }
    ct->ch->last = ct->id;
    ct->ch->granted++;
    pf_bulkhead_leave(ct->ch->bh);
}

static void
test_bulkhead_grant_chains_run_as_a_loop_not_recursion(void **state)
{
    pf_bulkhead_t *bh = make(*state, 1, 30.0, CHAIN);
    chain_ticket_t *ts = calloc(CHAIN, sizeof(*ts));
    chain_t ch = {bh, 0, -1, true};
    bool entered;
    long i;

    assert_non_null(ts);
    assert_pf_ok(pf_bulkhead_try_enter(bh));
    for (i = 0; i < CHAIN; i++) {
        ts[i].id = i;
        ts[i].ch = &ch;
        assert_pf_ok(pf_bulkhead_enqueue(bh, &ts[i].t, PF_PRIORITY_NORMAL,
                                         on_chain_grant, &ts[i], &entered));
    }
    pf_bulkhead_leave(bh);
    assert_int_equal(ch.granted, CHAIN);
    assert_true(ch.in_order);
    assert_int_equal(metrics(bh).in_use, 0);
    assert_int_equal(metrics(bh).accepted, CHAIN + 1);
    free(ts);
    pf_bulkhead_free(bh);
}

/* ---- live resize -------------------------------------------------------- */

static void
test_bulkhead_growing_the_limit_admits_waiters_at_once(void **state)
{
    events_t e;
    pf_bulkhead_t *bh = make_listened(*state, 1, 30.0, 10, &e);
    pf_bulkhead_ticket_t t[3];
    grant_rec_t g[3];
    order_log_t log;
    pf_bulkhead_metrics_t m;
    bool entered;
    int i;

    memset(t, 0, sizeof(t));
    atomic_init(&log.next, 0);
    assert_pf_ok(pf_bulkhead_try_enter(bh));
    for (i = 0; i < 3; i++) {
        g[i] = (grant_rec_t){bh, &log, i, false, 0};
        assert_pf_ok(pf_bulkhead_enqueue(bh, &t[i], PF_PRIORITY_NORMAL,
                                         on_grant, &g[i], &entered));
    }
    assert_pf_ok(pf_bulkhead_set_max_concurrent(bh, 3));
    assert_int_equal(g[0].calls, 1); /* granted during the call */
    assert_int_equal(g[1].calls, 1);
    assert_int_equal(g[2].calls, 0);
    m = metrics(bh);
    assert_int_equal(m.max_concurrent, 3);
    assert_int_equal(m.in_use, 3);
    assert_int_equal(m.waiting, 1);
    assert_int_equal(m.peak_in_use, 3);
    assert_int_equal(e.count[PF_BULKHEAD_LIMIT_CHANGED], 1);
    assert_int_equal(e.last.old_max_concurrent, 1);
    assert_int_equal(e.last.max_concurrent, 3);
    assert_pf_ok(pf_bulkhead_set_max_concurrent(bh, 3)); /* no change */
    assert_int_equal(e.count[PF_BULKHEAD_LIMIT_CHANGED], 1);
    for (i = 0; i < 4; i++) {
        pf_bulkhead_leave(bh);
    }
    assert_int_equal(g[2].calls, 1);
    assert_int_equal(metrics(bh).in_use, 0);
    pf_bulkhead_free(bh);
}

static void
test_bulkhead_shrinking_cancels_nothing_and_admits_nobody_above_it(void **state)
{
    pf_bulkhead_t *bh = make(*state, 4, 30.0, 10);
    pf_bulkhead_ticket_t t = {0};
    grant_rec_t g = {0};
    order_log_t log;
    pf_bulkhead_metrics_t m;
    bool entered;
    int i;

    atomic_init(&log.next, 0);
    g.log = &log;
    for (i = 0; i < 4; i++) {
        assert_pf_ok(pf_bulkhead_try_enter(bh));
    }
    assert_pf_ok(pf_bulkhead_set_max_concurrent(bh, 2));
    m = metrics(bh);
    assert_int_equal(m.in_use, 4); /* nobody was thrown out */
    assert_int_equal(m.max_concurrent, 2);
    assert_int_equal(m.available, 0);
    assert_pf_ok(pf_bulkhead_enqueue(bh, &t, PF_PRIORITY_NORMAL, on_grant, &g,
                                     &entered));
    assert_false(entered);
    pf_bulkhead_leave(bh); /* 3 inside */
    pf_bulkhead_leave(bh); /* 2 inside: still not below the limit */
    assert_int_equal(g.calls, 0);
    assert_int_equal(metrics(bh).in_use, 2);
    pf_bulkhead_leave(bh); /* would be 1: the slot goes to the ticket */
    assert_int_equal(g.calls, 1);
    assert_int_equal(metrics(bh).in_use, 2);
    assert_pf_err(pf_bulkhead_try_enter(bh), PF_EFULL);
    pf_bulkhead_leave(bh);
    assert_pf_ok(pf_bulkhead_try_enter(bh));
    assert_pf_err(pf_bulkhead_try_enter(bh), PF_EFULL);
    pf_bulkhead_leave(bh);
    pf_bulkhead_leave(bh);
    assert_int_equal(metrics(bh).in_use, 0);
    pf_bulkhead_free(bh);
}

static void
test_bulkhead_set_max_concurrent_rejects_bad_values(void **state)
{
    pf_bulkhead_t *bh = make(*state, 2, 1.0, 10);

    assert_pf_err(pf_bulkhead_set_max_concurrent(bh, 0), PF_EINVAL);
    assert_pf_err(pf_bulkhead_set_max_concurrent(bh, PF_BULKHEAD_MAX_LIMIT + 1),
                  PF_EINVAL);
    assert_pf_err(pf_bulkhead_set_max_concurrent(NULL, 3), PF_EINVAL);
    assert_int_equal(metrics(bh).max_concurrent, 2);
    assert_pf_ok(pf_bulkhead_set_max_concurrent(bh, PF_BULKHEAD_MAX_LIMIT));
    assert_int_equal(metrics(bh).max_concurrent, PF_BULKHEAD_MAX_LIMIT);
    pf_bulkhead_free(bh);
}

/* ---- the caller's deadline and token ---------------------------------- */

static void
test_bulkhead_enter_until_times_out_when_the_deadline_comes_first(void **state)
{
    pf_clock_t *c = *state;
    events_t e;
    pf_bulkhead_t *bh = make_listened(c, 1, 30.0, 10, &e);
    pf_deadline_t d = pf_deadline_in(c, 5.0);
    waiter_t w = {0};
    pf_bulkhead_metrics_t m;

    assert_pf_ok(pf_bulkhead_enter(bh));
    w.deadline = &d;
    waiter_start(&w, bh);
    pf_test_wait_for_waiters(c, 1);
    pf_clock_manual_advance(c, 5 * NS_PER_SEC);
    assert_pf_err(waiter_join(&w), PF_ETIMEDOUT);
    m = metrics(bh);
    assert_int_equal(m.cancelled, 1);
    assert_int_equal(m.rejected_timeout, 0);
    assert_int_equal(m.waiting, 0);
    assert_int_equal(e.count[PF_BULKHEAD_REJECTED_TIMEOUT], 0);
    pf_bulkhead_leave(bh);
    pf_bulkhead_free(bh);
}

static void
test_bulkhead_enter_until_is_full_when_max_wait_comes_first(void **state)
{
    pf_clock_t *c = *state;
    pf_bulkhead_t *bh = make(c, 1, 2.0, 10);
    pf_deadline_t d = pf_deadline_in(c, 5.0);
    waiter_t w = {0};

    assert_pf_ok(pf_bulkhead_enter(bh));
    w.deadline = &d;
    waiter_start(&w, bh);
    pf_test_wait_for_waiters(c, 1);
    pf_clock_manual_advance(c, 2 * NS_PER_SEC);
    assert_pf_err(waiter_join(&w), PF_EFULL);
    assert_int_equal(metrics(bh).rejected_timeout, 1);
    assert_int_equal(metrics(bh).cancelled, 0);
    pf_bulkhead_leave(bh);
    pf_bulkhead_free(bh);
}

static void
test_bulkhead_enter_until_is_cancelled_by_the_token(void **state)
{
    pf_clock_t *c = *state;
    pf_bulkhead_t *bh = make(c, 1, 30.0, 10);
    pf_token_t *tok;
    waiter_t w = {0};

    assert_pf_ok(pf_token_new(NULL, NULL, &tok));
    assert_pf_ok(pf_bulkhead_enter(bh));
    w.tok = tok;
    waiter_start(&w, bh);
    pf_test_wait_for_waiters(c, 1);
    pf_token_cancel(tok);
    assert_pf_err(waiter_join(&w), PF_ECANCELED);
    assert_int_equal(metrics(bh).cancelled, 1);
    assert_int_equal(metrics(bh).waiting, 0);
    /* With the queue empty again, the slot goes back as usual. */
    pf_bulkhead_leave(bh);
    assert_int_equal(metrics(bh).in_use, 0);
    pf_token_free(tok);
    pf_bulkhead_free(bh);
}

static void
test_bulkhead_enter_until_honours_the_token_deadline(void **state)
{
    pf_clock_t *c = *state;
    pf_bulkhead_t *bh = make(c, 1, 30.0, 10);
    pf_deadline_t d = pf_deadline_in(c, 1.0);
    pf_token_t *tok;
    waiter_t w = {0};

    assert_pf_ok(pf_token_new(NULL, &d, &tok));
    assert_pf_ok(pf_bulkhead_enter(bh));
    w.tok = tok;
    waiter_start(&w, bh);
    pf_test_wait_for_waiters(c, 1);
    pf_clock_manual_advance(c, NS_PER_SEC);
    assert_pf_err(waiter_join(&w), PF_ETIMEDOUT);
    pf_bulkhead_leave(bh);
    pf_token_free(tok);
    pf_bulkhead_free(bh);
}

static void
test_bulkhead_enter_until_fails_at_once_when_already_late_and_full(void **state)
{
    pf_clock_t *c = *state;
    pf_bulkhead_t *bh = make(c, 1, 30.0, 10);
    pf_deadline_t past = pf_deadline_in(c, 0.0);
    pf_token_t *tok;

    assert_pf_ok(pf_token_new(NULL, NULL, &tok));
    pf_token_cancel(tok);
    /* A free slot is taken whatever the caller's limits say. */
    assert_pf_ok(pf_bulkhead_enter_until(bh, PF_PRIORITY_NORMAL, &past, tok));
    assert_pf_err(pf_bulkhead_enter_until(bh, PF_PRIORITY_NORMAL, &past, NULL),
                  PF_ETIMEDOUT);
    assert_pf_err(pf_bulkhead_enter_until(bh, PF_PRIORITY_NORMAL, NULL, tok),
                  PF_ECANCELED);
    assert_int_equal(pf_clock_manual_waiters(c), 0);
    assert_int_equal(metrics(bh).cancelled, 2);
    assert_pf_err(pf_bulkhead_enter_until(bh, (pf_priority_t)4, NULL, NULL),
                  PF_EINVAL);
    assert_pf_err(pf_bulkhead_enter_until(NULL, PF_PRIORITY_NORMAL, NULL, NULL),
                  PF_EINVAL);
    pf_bulkhead_leave(bh);
    pf_token_free(tok);
    pf_bulkhead_free(bh);
}

static void
test_bulkhead_enter_until_accepts_a_deadline_on_another_clock(void **state)
{
    pf_clock_t *c = *state;
    pf_bulkhead_t *bh = make(c, 1, 30.0, 10);
    pf_deadline_t sys_past = pf_deadline_in(NULL, 0.0);
    pf_deadline_t sys_far = pf_deadline_in(NULL, 3600.0);
    waiter_t w = {0};

    assert_pf_ok(pf_bulkhead_enter(bh));
    assert_pf_err(
        pf_bulkhead_enter_until(bh, PF_PRIORITY_NORMAL, &sys_past, NULL),
        PF_ETIMEDOUT);
    /* An hour on the system clock: the 30 s wait on the manual clock ends
     * first. */
    w.deadline = &sys_far;
    waiter_start(&w, bh);
    pf_test_wait_for_waiters(c, 1);
    pf_clock_manual_advance(c, 30 * NS_PER_SEC);
    assert_pf_err(waiter_join(&w), PF_EFULL);
    pf_bulkhead_leave(bh);
    pf_bulkhead_free(bh);
}

/* ---- metrics ------------------------------------------------------------ */

static void
test_bulkhead_metrics_report_every_field(void **state)
{
    pf_bulkhead_t *bh = make(*state, 3, 1.0, 7);
    pf_bulkhead_metrics_t m;

    m = metrics(bh);
    assert_int_equal(m.max_concurrent, 3);
    assert_int_equal(m.in_use, 0);
    assert_int_equal(m.available, 3);
    assert_int_equal(m.waiting, 0);
    assert_int_equal(m.max_queue_size, 7);
    assert_int_equal(m.accepted, 0);
    assert_int_equal(m.rejected_full, 0);
    assert_int_equal(m.rejected_timeout, 0);
    assert_int_equal(m.peak_in_use, 0);
    assert_int_equal(m.cancelled, 0);
    assert_int_equal(m.leave_without_enter, 0);
    assert_false(m.adaptive);
    assert_int_equal(m.adaptive_floor, 0);
    assert_int_equal(m.adaptive_ceiling, 0);
    assert_pf_ok(pf_bulkhead_try_enter(bh));
    assert_pf_ok(pf_bulkhead_try_enter(bh));
    pf_bulkhead_leave(bh);
    assert_pf_ok(pf_bulkhead_try_enter(bh));
    assert_pf_ok(pf_bulkhead_try_enter(bh));
    assert_pf_err(pf_bulkhead_try_enter(bh), PF_EFULL);
    m = metrics(bh);
    assert_int_equal(m.in_use, 3);
    assert_int_equal(m.accepted, 4);
    assert_int_equal(m.rejected_full, 1);
    assert_int_equal(m.peak_in_use, 3);
    for (int i = 0; i < 3; i++) {
        pf_bulkhead_leave(bh);
    }
    m = metrics(bh);
    assert_int_equal(m.in_use, 0);
    assert_int_equal(m.peak_in_use, 3); /* a peak stays */
    pf_bulkhead_metrics(NULL, &m);
    pf_bulkhead_metrics(bh, NULL);
    pf_bulkhead_free(bh);
}

/* ---- allocation failure ------------------------------------------------- */

static void
alloc_scenario(void *arg)
{
    pf_clock_t *c = arg;
    pf_bulkhead_config_t cfg;
    pf_bulkhead_t *bh = NULL;
    pf_bulkhead_ticket_t t = {0};
    grant_rec_t g = {0};
    order_log_t log;
    bool entered;
    int rc;

    atomic_init(&log.next, 0);
    g.log = &log;
    pf_bulkhead_config_init(&cfg);
    cfg.name = "sweep";
    cfg.max_concurrent_calls = 1;
    cfg.clock = c;
    rc = pf_bulkhead_new(&cfg, &bh);
    if (rc != 0) {
        assert_pf_err(rc, PF_ENOMEM);
        assert_null(bh);
        return;
    }
    assert_pf_ok(pf_bulkhead_try_enter(bh));
    assert_pf_ok(
        pf_bulkhead_enqueue(bh, &t, PF_PRIORITY_HIGH, on_grant, &g, &entered));
    assert_pf_ok(pf_bulkhead_set_max_concurrent(bh, 2));
    assert_int_equal(g.calls, 1);
    pf_bulkhead_leave(bh);
    pf_bulkhead_leave(bh);
    assert_pf_ok(pf_bulkhead_call(bh, count_call, NULL));
    pf_bulkhead_free(bh);
}

static void
test_bulkhead_survives_every_allocation_failure(void **state)
{
    assert_true(pf_test_alloc_sweep(alloc_scenario, *state) >= 2);
}

#define T(name) CLOCK_TEST(name)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_bulkhead_config_init_sets_documented_defaults),
        T(test_bulkhead_new_rejects_bad_config_and_creates_nothing),
        T(test_bulkhead_name_is_a_copy),
        T(test_bulkhead_try_enter_admits_up_to_the_limit_then_is_full),
        T(test_bulkhead_leave_without_enter_is_ignored_when_nobody_is_inside),
        T(test_bulkhead_call_returns_the_result_unchanged_and_leaves),
        T(test_bulkhead_call_rejects_without_calling_when_full),
        T(test_bulkhead_enter_rejects_at_once_when_nobody_may_wait),
        T(test_bulkhead_zero_max_wait_means_no_limit),
        T(test_bulkhead_enter_waits_and_gets_the_freed_slot),
        T(test_bulkhead_enter_times_out_when_the_clock_passes_max_wait),
        T(test_bulkhead_enter_rejects_at_once_when_the_queue_is_full),
        T(test_bulkhead_waiters_are_served_first_come_first_served),
        T(test_bulkhead_freed_slot_goes_to_the_waiter_not_a_newcomer),
        T(test_bulkhead_priority_serves_higher_first_then_fifo),
        T(test_bulkhead_tickets_and_threads_share_one_queue),
        T(test_bulkhead_events_report_nothing_when_entering_at_once),
        T(test_bulkhead_events_report_queued_then_granted_with_the_wait),
        T(test_bulkhead_events_report_a_tickets_queue_and_grant),
        T(test_bulkhead_enqueue_enters_at_once_when_a_slot_is_free),
        T(test_bulkhead_cancel_removes_a_queued_ticket_for_good),
        T(test_bulkhead_enqueue_rejects_bad_input_and_a_full_queue),
        T(test_bulkhead_ticket_deadline_is_max_wait_after_it_queued),
        T(test_bulkhead_grant_chains_run_as_a_loop_not_recursion),
        T(test_bulkhead_growing_the_limit_admits_waiters_at_once),
        T(test_bulkhead_shrinking_cancels_nothing_and_admits_nobody_above_it),
        T(test_bulkhead_set_max_concurrent_rejects_bad_values),
        T(test_bulkhead_enter_until_times_out_when_the_deadline_comes_first),
        T(test_bulkhead_enter_until_is_full_when_max_wait_comes_first),
        T(test_bulkhead_enter_until_is_cancelled_by_the_token),
        T(test_bulkhead_enter_until_honours_the_token_deadline),
        T(test_bulkhead_enter_until_fails_at_once_when_already_late_and_full),
        T(test_bulkhead_enter_until_accepts_a_deadline_on_another_clock),
        T(test_bulkhead_metrics_report_every_field),
        T(test_bulkhead_survives_every_allocation_failure),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
