/* The event queue of src/base/evq.c: order, delivery with the owner's
 * mutex released, growth, the two overflow policies (drop the new event,
 * or drop the oldest), room reserved up front, and a listener that calls
 * back into its object. */
#include <pthread.h>
#include <string.h>

#include "evq.h"
#include "test.h"

typedef struct owner {
    pthread_mutex_t mu;
    pthread_cond_t idle;
    pf__evq_t q;
    int seen[64];
    int nseen;
    int released[64];
    int nreleased;
    bool locked_in_deliver; /* deliver ever ran with mu held */
    int reenter_at;         /* deliver of this value pushes 100 + drains */
} owner_t;

static void
owner_init(owner_t *o)
{
    memset(o, 0, sizeof(*o));
    pthread_mutex_init(&o->mu, NULL);
    pthread_cond_init(&o->idle, NULL);
    pf__evq_init(&o->q, sizeof(int));
    o->reenter_at = -1;
}

static void
release(void *ev, void *ctx)
{
    owner_t *o = ctx;

    o->released[o->nreleased++] = *(int *)ev;
}

static void deliver(void *ev, void *ctx);

static void
drain_all(owner_t *o)
{
    pf__evq_drain_all(&o->q, &o->mu, &o->idle, NULL, deliver, release, o);
}

static void
deliver(void *ev, void *ctx)
{
    owner_t *o = ctx;
    int v = *(int *)ev;

    if (pthread_mutex_trylock(&o->mu) == 0) {
        pthread_mutex_unlock(&o->mu);
    } else {
        o->locked_in_deliver = true;
    }
    o->seen[o->nseen++] = v;
    if (v == o->reenter_at) {
        int more = 100;

        /* A listener calling back into its object: its event is told
         * after this one, by the outer drain, not nested here. */
        pthread_mutex_lock(&o->mu);
        assert_true(pf__evq_push(&o->q, &more));
        drain_all(o);
        pthread_mutex_unlock(&o->mu);
        assert_int_equal(o->seen[o->nseen - 1], v);
    }
}

static void
owner_destroy(owner_t *o)
{
    pf__evq_clear(&o->q, release, o);
    pthread_cond_destroy(&o->idle);
    pthread_mutex_destroy(&o->mu);
}

static void
test_evq_delivers_in_push_order_with_the_lock_released(void **state)
{
    owner_t o;
    int i;

    (void)state;
    owner_init(&o);
    pthread_mutex_lock(&o.mu);
    for (i = 0; i < 40; i++) { /* grows 8 -> 16 -> 32 -> 64 */
        assert_true(pf__evq_push(&o.q, &i));
    }
    /* No idle condition and no stop flag: an owner nobody waits on. */
    pf__evq_drain(&o.q, &o.mu, NULL, NULL, deliver, release, &o);
    pthread_mutex_unlock(&o.mu);
    assert_int_equal(o.nseen, 40);
    for (i = 0; i < 40; i++) {
        assert_int_equal(o.seen[i], i);
        assert_int_equal(o.released[i], i);
    }
    assert_false(o.locked_in_deliver);
    assert_int_equal(o.q.delivered, 40);
    assert_int_equal(o.q.dropped, 0);
    owner_destroy(&o);
}

static void
test_evq_listener_calling_back_is_told_after_the_current_event(void **state)
{
    owner_t o;
    int i;

    (void)state;
    owner_init(&o);
    o.reenter_at = 1;
    pthread_mutex_lock(&o.mu);
    for (i = 0; i < 3; i++) {
        assert_true(pf__evq_push(&o.q, &i));
    }
    drain_all(&o);
    pthread_mutex_unlock(&o.mu);
    assert_int_equal(o.nseen, 4);
    assert_int_equal(o.seen[0], 0);
    assert_int_equal(o.seen[1], 1);
    assert_int_equal(o.seen[2], 2);
    assert_int_equal(o.seen[3], 100);
    owner_destroy(&o);
}

static void
test_evq_push_drops_the_new_event_when_growth_fails(void **state)
{
    owner_t o;
    int v = 7;

    (void)state;
    pf_test_alloc_install();
    owner_init(&o);
    pf_test_alloc_fail_at(1);
    assert_false(pf__evq_push(&o.q, &v));
    pf_test_alloc_fail_at(0);
    assert_int_equal(o.q.dropped, 1);
    assert_int_equal(o.q.len, 0);
    assert_true(pf__evq_push(&o.q, &v)); /* usable after */
    owner_destroy(&o);
    assert_int_equal(pf_test_alloc_live(), 0);
    pf_test_alloc_uninstall();
}

static void
test_evq_push_evict_drops_the_oldest_when_growth_fails(void **state)
{
    owner_t o;
    int i;

    (void)state;
    pf_test_alloc_install();
    owner_init(&o);
    assert_true(pf__evq_reserve(&o.q, 4));
    pthread_mutex_lock(&o.mu);
    for (i = 1; i <= 4; i++) {
        assert_true(pf__evq_push_evict(&o.q, &i, release, &o));
    }
    pf_test_alloc_fail_at(1);
    i = 5;
    assert_true(pf__evq_push_evict(&o.q, &i, release, &o));
    assert_true(pf_test_alloc_failed());
    pf_test_alloc_fail_at(0);
    assert_int_equal(o.q.dropped, 1);
    assert_int_equal(o.nreleased, 1);
    assert_int_equal(o.released[0], 1); /* the oldest went */
    o.nreleased = 0;
    pf__evq_drain(&o.q, &o.mu, &o.idle, NULL, deliver, release, &o);
    pthread_mutex_unlock(&o.mu);
    assert_int_equal(o.nseen, 4);
    for (i = 0; i < 4; i++) {
        assert_int_equal(o.seen[i], i + 2);
    }
    owner_destroy(&o);
    assert_int_equal(pf_test_alloc_live(), 0);
    pf_test_alloc_uninstall();
}

static void
test_evq_push_evict_drops_the_event_when_empty_and_cannot_grow(void **state)
{
    owner_t o;
    int v = 1;

    (void)state;
    pf_test_alloc_install();
    owner_init(&o);
    pf_test_alloc_fail_at(1);
    assert_false(pf__evq_push_evict(&o.q, &v, release, &o));
    pf_test_alloc_fail_at(0);
    assert_int_equal(o.q.dropped, 1);
    assert_int_equal(o.nreleased, 0);
    owner_destroy(&o);
    assert_int_equal(pf_test_alloc_live(), 0);
    pf_test_alloc_uninstall();
}

static void
test_evq_reserved_room_needs_no_memory(void **state)
{
    owner_t o;
    int i;

    (void)state;
    pf_test_alloc_install();
    owner_init(&o);
    pf_test_alloc_fail_at(1);
    assert_false(pf__evq_reserve(&o.q, 8)); /* out of memory: usable */
    assert_true(pf__evq_reserve(&o.q, 8));
    pf_test_alloc_fail_at(1);
    pthread_mutex_lock(&o.mu);
    for (i = 0; i < 8; i++) {
        assert_true(pf__evq_push(&o.q, &i));
    }
    pf__evq_drain(&o.q, &o.mu, &o.idle, NULL, deliver, release, &o);
    pthread_mutex_unlock(&o.mu);
    assert_false(pf_test_alloc_failed()); /* no allocation was tried */
    pf_test_alloc_fail_at(0);
    assert_int_equal(o.nseen, 8);
    assert_int_equal(o.q.dropped, 0);
    owner_destroy(&o);
    assert_int_equal(pf_test_alloc_live(), 0);
    pf_test_alloc_uninstall();
}

static void
test_evq_drain_stops_early_when_told_and_clear_releases_the_rest(void **state)
{
    owner_t o;
    bool stop = true;
    int i;

    (void)state;
    owner_init(&o);
    pthread_mutex_lock(&o.mu);
    for (i = 0; i < 3; i++) {
        assert_true(pf__evq_push(&o.q, &i));
    }
    pf__evq_drain(&o.q, &o.mu, &o.idle, &stop, deliver, release, &o);
    pf__evq_wait_idle(&o.q, &o.mu, &o.idle); /* nobody delivers */
    pthread_mutex_unlock(&o.mu);
    assert_int_equal(o.nseen, 0);
    pf__evq_clear(&o.q, release, &o);
    assert_int_equal(o.nreleased, 3);
    owner_destroy(&o);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            test_evq_delivers_in_push_order_with_the_lock_released),
        cmocka_unit_test(
            test_evq_listener_calling_back_is_told_after_the_current_event),
        cmocka_unit_test(test_evq_push_drops_the_new_event_when_growth_fails),
        cmocka_unit_test(
            test_evq_push_evict_drops_the_oldest_when_growth_fails),
        cmocka_unit_test(
            test_evq_push_evict_drops_the_event_when_empty_and_cannot_grow),
        cmocka_unit_test(test_evq_reserved_room_needs_no_memory),
        cmocka_unit_test(
            test_evq_drain_stops_early_when_told_and_clear_releases_the_rest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
