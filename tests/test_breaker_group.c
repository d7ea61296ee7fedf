/* Keyed groups of circuit breakers: one breaker per key made from one
 * config on first use, bounded in number, least-recently-used eviction of
 * closed breakers nobody holds, removal, iteration, bad input, allocation
 * failures and many threads at once. */
#include <math.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "puffinflow/breaker.h"
#include "rng.h"
#include "test.h"

static void
config(pf_breaker_group_config_t *cfg, pf_breaker_config_t *bc,
       pf_clock_t *clock, size_t max)
{
    pf_breaker_group_config_init(cfg);
    cfg->name = "hosts";
    cfg->max_breakers = max;
    pf_breaker_config_init(bc);
    bc->clock = clock;
    bc->failure_threshold = 1;
    bc->recovery_timeout = 10.0;
    bc->success_threshold = 1;
    cfg->breaker = bc;
}

static pf_breaker_group_t *
make(const pf_breaker_group_config_t *cfg)
{
    pf_breaker_group_t *g = NULL;

    assert_pf_ok(pf_breaker_group_new(cfg, &g));
    return g;
}

/* A group of at most max breakers made from config() alone. */
static pf_breaker_group_t *
make_group(pf_clock_t *clock, size_t max)
{
    pf_breaker_config_t breaker_cfg;
    pf_breaker_group_config_t cfg;

    config(&cfg, &breaker_cfg, clock, max);
    return make(&cfg);
}

/* Use key once (get then put), so it becomes the most recently used. */
static pf_breaker_t *
touch(pf_breaker_group_t *g, const char *key)
{
    pf_breaker_t *b;

    assert_pf_ok(pf_breaker_group_get(g, key, &b));
    pf_breaker_group_put(g, b);
    return b;
}

/* One failing call on key through the group's permit face. */
static void
fail_on(pf_breaker_group_t *g, const char *key)
{
    pf_permit_t p;

    assert_pf_ok(pf_breaker_group_acquire(g, key, &p));
    pf_breaker_group_record(g, &p, -1);
}

static bool
present(pf_breaker_group_t *g, const char *key)
{
    pf_breaker_t *b;
    int rc = pf_breaker_group_find(g, key, &b);

    if (rc == 0) {
        pf_breaker_group_put(g, b);
        return true;
    }
    assert_pf_err(rc, PF_ENOTFOUND);
    return false;
}

static pf_breaker_group_metrics_t
metrics(pf_breaker_group_t *g)
{
    pf_breaker_group_metrics_t m;

    memset(&m, 0xab, sizeof(m));
    pf_breaker_group_metrics(g, &m);
    return m;
}

static void
test_breaker_group_config_init_sets_defaults(void **state)
{
    pf_breaker_group_config_t cfg;

    (void)state;
    memset(&cfg, 0x5a, sizeof(cfg));
    pf_breaker_group_config_init(&cfg);
    assert_string_equal(cfg.name, "default");
    assert_int_equal(cfg.max_breakers, 1024);
    assert_null(cfg.breaker); /* breaker defaults */
    pf_breaker_group_config_init(NULL);
}

static void
test_breaker_group_new_rejects_bad_input_with_einval(void **state)
{
    pf_breaker_config_t breaker_cfg;
    pf_breaker_group_config_t cfg;
    pf_breaker_group_t *g = NULL;

    pf_test_alloc_install();
    config(&cfg, &breaker_cfg, *state, 4);
    assert_pf_err(pf_breaker_group_new(NULL, &g), PF_EINVAL);
    assert_pf_err(pf_breaker_group_new(&cfg, NULL), PF_EINVAL);
    cfg.name = NULL;
    assert_pf_err(pf_breaker_group_new(&cfg, &g), PF_EINVAL);
    cfg.name = "";
    assert_pf_err(pf_breaker_group_new(&cfg, &g), PF_EINVAL);
    config(&cfg, &breaker_cfg, *state, 0);
    assert_pf_err(pf_breaker_group_new(&cfg, &g), PF_EINVAL);
    config(&cfg, &breaker_cfg, *state, 4);
    breaker_cfg.failure_threshold = 0;
    assert_pf_err(pf_breaker_group_new(&cfg, &g), PF_EINVAL);
    config(&cfg, &breaker_cfg, *state, 4);
    breaker_cfg.recovery_timeout = NAN;
    assert_pf_err(pf_breaker_group_new(&cfg, &g), PF_EINVAL);
    config(&cfg, &breaker_cfg, *state, 4);
    breaker_cfg.failure_rate_threshold = 0.0;
    assert_pf_err(pf_breaker_group_new(&cfg, &g), PF_EINVAL);
    assert_null(g);
    assert_int_equal(pf_test_alloc_live(), 0);
    pf_test_alloc_uninstall();
}

static void
test_breaker_group_null_arguments_are_rejected(void **state)
{
    pf_breaker_group_t *g;
    pf_breaker_t *b;
    pf_permit_t p;

    g = make_group(*state, 4);
    assert_pf_err(pf_breaker_group_get(NULL, "a", &b), PF_EINVAL);
    assert_pf_err(pf_breaker_group_get(g, NULL, &b), PF_EINVAL);
    assert_pf_err(pf_breaker_group_get(g, "a", NULL), PF_EINVAL);
    assert_pf_err(pf_breaker_group_find(g, NULL, &b), PF_EINVAL);
    assert_pf_err(pf_breaker_group_acquire(g, NULL, &p), PF_EINVAL);
    assert_pf_err(pf_breaker_group_acquire(g, "a", NULL), PF_EINVAL);
    assert_pf_err(pf_breaker_group_call(g, "a", NULL, NULL), PF_EINVAL);
    assert_pf_err(pf_breaker_group_remove(g, NULL), PF_EINVAL);
    assert_pf_err(pf_breaker_group_foreach(g, NULL, NULL), PF_EINVAL);
    pf_breaker_group_record(g, NULL, 0);
    pf_breaker_group_put(g, NULL);
    pf_breaker_group_put(NULL, NULL);
    pf_breaker_group_metrics(NULL, NULL);
    assert_int_equal(pf_breaker_group_size(NULL), 0);
    assert_null(pf_breaker_group_name(NULL));
    assert_int_equal(pf_breaker_group_size(g), 0); /* nothing was made */
    pf_breaker_group_free(g);
    pf_breaker_group_free(NULL);
}

static void
test_breaker_group_get_creates_one_breaker_per_key(void **state)
{
    pf_breaker_group_t *g;
    pf_breaker_t *a1;
    pf_breaker_t *a2;
    pf_breaker_t *b;

    g = make_group(*state, 4);
    assert_string_equal(pf_breaker_group_name(g), "hosts");
    assert_pf_ok(pf_breaker_group_get(g, "a.example", &a1));
    assert_pf_ok(pf_breaker_group_get(g, "a.example", &a2));
    assert_pf_ok(pf_breaker_group_get(g, "b.example", &b));
    assert_ptr_equal(a1, a2);
    assert_ptr_not_equal(a1, b);
    assert_string_equal(pf_breaker_name(a1), "hosts/a.example");
    assert_int_equal(pf_breaker_group_size(g), 2);
    assert_int_equal(metrics(g).created, 2);
    pf_breaker_group_put(g, a1);
    pf_breaker_group_put(g, a2);
    pf_breaker_group_put(g, b);
    pf_breaker_group_free(g);
}

static void
test_breaker_group_find_creates_nothing(void **state)
{
    pf_breaker_group_t *g;
    pf_breaker_t *b;

    g = make_group(*state, 4);
    assert_pf_err(pf_breaker_group_find(g, "nobody", &b), PF_ENOTFOUND);
    assert_int_equal(pf_breaker_group_size(g), 0);
    touch(g, "somebody");
    assert_true(present(g, "somebody"));
    pf_breaker_group_free(g);
}

static void
test_breaker_group_breakers_follow_the_shared_config_each_alone(void **state)
{
    pf_breaker_group_t *g;
    pf_permit_t p;

    g = make_group(*state, 4);
    fail_on(g, "down.example"); /* failure_threshold 1 */
    assert_int_equal(pf_breaker_state(touch(g, "down.example")),
                     PF_BREAKER_OPEN);
    assert_pf_err(pf_breaker_group_acquire(g, "down.example", &p), PF_EOPEN);
    assert_int_equal(p.priv_epoch, 0);
    assert_pf_ok(pf_breaker_group_acquire(g, "up.example", &p));
    pf_breaker_group_record(g, &p, 0);
    assert_int_equal(pf_breaker_state(touch(g, "up.example")),
                     PF_BREAKER_CLOSED);
    pf_breaker_group_free(g);
}

static void
test_breaker_group_evicts_least_recently_used_closed_breaker(void **state)
{
    pf_breaker_group_t *g;
    pf_breaker_group_metrics_t m;

    g = make_group(*state, 2);
    touch(g, "a");
    touch(g, "b");
    touch(g, "a"); /* b is now the least recently used */
    touch(g, "c");
    assert_true(present(g, "a"));
    assert_false(present(g, "b"));
    assert_true(present(g, "c"));
    m = metrics(g);
    assert_int_equal(m.size, 2);
    assert_int_equal(m.max_breakers, 2);
    assert_int_equal(m.created, 3);
    assert_int_equal(m.evicted, 1);
    pf_breaker_group_free(g);
}

static void
test_breaker_group_never_evicts_open_breakers(void **state)
{
    pf_breaker_group_t *g;
    pf_breaker_t *b;

    g = make_group(*state, 2);
    fail_on(g, "a");
    fail_on(g, "b");
    assert_pf_err(pf_breaker_group_get(g, "c", &b), PF_EFULL);
    assert_int_equal(metrics(g).rejected_full, 1);
    assert_int_equal(pf_breaker_group_size(g), 2);
    pf_breaker_force_close(touch(g, "b"));
    touch(g, "c"); /* b is closed now: it goes */
    assert_true(present(g, "a"));
    assert_false(present(g, "b"));
    pf_breaker_group_free(g);
}

static void
test_breaker_group_never_evicts_held_breakers(void **state)
{
    pf_breaker_group_t *g;
    pf_breaker_t *a;
    pf_breaker_t *c;

    g = make_group(*state, 2);
    assert_pf_ok(pf_breaker_group_get(g, "a", &a)); /* held */
    touch(g, "b");
    assert_pf_ok(pf_breaker_group_get(g, "c", &c)); /* b goes, not a */
    assert_false(present(g, "b"));
    assert_pf_err(pf_breaker_group_get(g, "d", &c), PF_EFULL);
    pf_breaker_group_put(g, a);
    pf_breaker_group_put(g, c);
    touch(g, "d"); /* a is the least recently used now */
    assert_false(present(g, "a"));
    pf_breaker_group_free(g);
}

static void
test_breaker_group_permit_holds_its_breaker_until_recorded(void **state)
{
    pf_breaker_group_t *g;
    pf_breaker_t *b;
    pf_permit_t p;

    g = make_group(*state, 1);
    assert_pf_ok(pf_breaker_group_acquire(g, "a", &p));
    assert_pf_err(pf_breaker_group_get(g, "b", &b), PF_EFULL);
    pf_breaker_group_record(g, &p, 0);
    pf_breaker_group_record(g, &p, 0); /* twice: nothing more */
    touch(g, "b");
    assert_false(present(g, "a"));
    /* pf_breaker_release gives the hold back too. */
    assert_pf_ok(pf_breaker_group_acquire(g, "b", &p));
    pf_breaker_release((pf_breaker_t *)p.priv_breaker, &p);
    touch(g, "c");
    assert_false(present(g, "b"));
    /* So does plain pf_breaker_record on the permit's breaker. */
    assert_pf_ok(pf_breaker_group_acquire(g, "c", &p));
    pf_breaker_record((pf_breaker_t *)p.priv_breaker, &p, 0);
    touch(g, "d");
    assert_false(present(g, "c"));
    pf_breaker_group_free(g);
}

static void
test_breaker_group_rejected_acquire_holds_nothing(void **state)
{
    pf_breaker_group_t *g;
    pf_permit_t p;
    long live;

    pf_test_alloc_install();
    g = make_group(*state, 4);
    live = pf_test_alloc_live();
    fail_on(g, "a");
    assert_pf_err(pf_breaker_group_acquire(g, "a", &p), PF_EOPEN);
    pf_breaker_group_record(g, &p, 0); /* empty: nothing */
    assert_pf_ok(pf_breaker_group_remove(g, "a"));
    assert_int_equal(pf_test_alloc_live(), live); /* freed at once */
    pf_breaker_group_free(g);
    pf_test_alloc_uninstall();
}

static int
ok_call(void *arg)
{
    (*(int *)arg)++;
    return 0;
}

static int
failing_call(void *arg)
{
    (*(int *)arg)++;
    return 5;
}

static int
use_cache(void *arg, int reason)
{
    (void)arg;
    return reason == PF_EOPEN ? 100 : 200;
}

static void
test_breaker_group_call_runs_fn_with_the_shared_fallback(void **state)
{
    pf_breaker_config_t breaker_cfg;
    pf_breaker_group_config_t cfg;
    pf_breaker_group_t *g;
    int calls = 0;

    config(&cfg, &breaker_cfg, *state, 4);
    breaker_cfg.fallback = use_cache;
    g = make(&cfg);
    assert_int_equal(pf_breaker_group_call(g, "a", ok_call, &calls), 0);
    assert_int_equal(pf_breaker_group_call(g, "a", failing_call, &calls),
                     200);
    assert_int_equal(pf_breaker_group_call(g, "a", ok_call, &calls), 100);
    assert_int_equal(calls, 2); /* the rejected one never ran */
    assert_int_equal(pf_breaker_group_call(g, "b", ok_call, &calls), 0);
    pf_breaker_group_free(g);
}

static void
test_breaker_group_remove_frees_now_or_when_let_go(void **state)
{
    pf_breaker_group_t *g;
    pf_breaker_t *held;
    pf_breaker_t *fresh;
    long live;

    pf_test_alloc_install();
    g = make_group(*state, 4);
    assert_pf_err(pf_breaker_group_remove(g, "nobody"), PF_ENOTFOUND);
    live = pf_test_alloc_live();
    assert_pf_ok(pf_breaker_group_get(g, "a", &held));
    assert_pf_ok(pf_breaker_group_remove(g, "a"));
    assert_int_equal(pf_breaker_group_size(g), 0);
    assert_false(present(g, "a"));
    /* Still usable by its holder. */
    assert_int_equal(pf_breaker_state(held), PF_BREAKER_CLOSED);
    assert_string_equal(pf_breaker_name(held), "hosts/a");
    /* A new breaker for the key is another one. */
    assert_pf_ok(pf_breaker_group_get(g, "a", &fresh));
    assert_ptr_not_equal(fresh, held);
    pf_breaker_group_put(g, fresh);
    assert_pf_ok(pf_breaker_group_remove(g, "a"));
    assert_true(pf_test_alloc_live() > live); /* held is alive */
    pf_breaker_group_put(g, held);
    assert_int_equal(pf_test_alloc_live(), live); /* both gone */
    /* A removed breaker still held when the group goes is freed too. */
    assert_pf_ok(pf_breaker_group_get(g, "b", &held));
    assert_pf_ok(pf_breaker_group_remove(g, "b"));
    pf_breaker_group_free(g);
    assert_int_equal(pf_test_alloc_live(), 0);
    pf_test_alloc_uninstall();
}

typedef struct visit {
    pf_breaker_group_t *g;
    char keys[8][16];
    int n;
    int stop_at;
} visit_t;

static int
visitor(const char *key, pf_breaker_t *b, void *arg)
{
    visit_t *v = arg;
    char name[64];

    snprintf(name, sizeof(name), "hosts/%s", key);
    assert_string_equal(pf_breaker_name(b), name);
    snprintf(v->keys[v->n], sizeof(v->keys[0]), "%s", key);
    v->n++;
    touch(v->g, "x"); /* the group may be used from the visit */
    return v->n == v->stop_at ? 42 : 0;
}

static void
test_breaker_group_foreach_visits_in_lru_order_and_can_stop(void **state)
{
    pf_breaker_group_t *g;
    visit_t v;

    g = make_group(*state, 8);
    memset(&v, 0, sizeof(v));
    v.g = g;
    assert_int_equal(pf_breaker_group_foreach(g, visitor, &v), 0);
    assert_int_equal(v.n, 0);
    touch(g, "c");
    touch(g, "a");
    touch(g, "b");
    assert_int_equal(pf_breaker_group_foreach(g, visitor, &v), 0);
    assert_int_equal(v.n, 3);
    assert_string_equal(v.keys[0], "c");
    assert_string_equal(v.keys[1], "a");
    assert_string_equal(v.keys[2], "b");
    memset(&v, 0, sizeof(v));
    v.g = g;
    v.stop_at = 2;
    assert_int_equal(pf_breaker_group_foreach(g, visitor, &v), 42);
    assert_int_equal(v.n, 2);
    pf_breaker_group_free(g);
}

static void
test_breaker_group_grows_its_table_for_many_keys(void **state)
{
    pf_breaker_group_t *g;
    char key[32];

    g = make_group(*state, 5000);
    for (int i = 0; i < 3000; i++) {
        snprintf(key, sizeof(key), "host-%d", i);
        touch(g, key);
    }
    assert_int_equal(pf_breaker_group_size(g), 3000);
    for (int i = 0; i < 3000; i += 7) {
        snprintf(key, sizeof(key), "host-%d", i);
        assert_true(present(g, key));
    }
    assert_false(present(g, "host-3000"));
    pf_breaker_group_free(g);
}

static int
count_visit(const char *key, pf_breaker_t *b, void *arg)
{
    (void)key;
    (void)b;
    (*(int *)arg)++;
    return 0;
}

static void
sweep_scenario(void *arg)
{
    pf_breaker_config_t breaker_cfg;
    pf_breaker_group_config_t cfg;
    pf_breaker_group_t *g = NULL;
    pf_breaker_t *b;
    pf_permit_t p;
    char key[16];
    int n = 0;
    int rc;

    config(&cfg, &breaker_cfg, arg, 3);
    rc = pf_breaker_group_new(&cfg, &g);
    if (rc == PF_ENOMEM) {
        return;
    }
    assert_pf_ok(rc);
    for (int i = 0; i < 20; i++) { /* creates and evicts */
        snprintf(key, sizeof(key), "k%d", i);
        rc = pf_breaker_group_get(g, key, &b);
        if (rc == 0) {
            pf_breaker_group_put(g, b);
        } else {
            assert_pf_err(rc, PF_ENOMEM);
        }
    }
    rc = pf_breaker_group_acquire(g, "k19", &p);
    if (rc == 0) {
        pf_breaker_group_record(g, &p, -1);
    } else {
        assert_pf_err(rc, PF_ENOMEM);
    }
    rc = pf_breaker_group_foreach(g, count_visit, &n);
    if (rc != 0) {
        assert_pf_err(rc, PF_ENOMEM);
    }
    assert_true(pf_breaker_group_size(g) <= 3);
    pf_breaker_group_remove(g, "k18");
    pf_breaker_group_free(g);
}

static void
test_breaker_group_allocation_failure_leaks_nothing(void **state)
{
    assert_true(pf_test_alloc_sweep(sweep_scenario, *state) > 10);
}

/* ---- threads ---------------------------------------------------------- */

#define GROUP_THREADS 8
#define GROUP_OPS 6000
#define GROUP_KEYS 24
#define GROUP_MAX 8

typedef struct gshared {
    pf_breaker_group_t *g;
    pf_clock_t *clock;
    atomic_ulong removed;
    atomic_ulong too_big;
} gshared_t;

static int
random_result(void *arg)
{
    uint64_t *rng = arg;

    return pf__rng_below(rng, 4) == 0 ? -1 : 0;
}

static void
group_worker(void *arg, unsigned i)
{
    gshared_t *s = arg;
    uint64_t rng = 77 + i;
    char key[16];

    for (int k = 0; k < GROUP_OPS; k++) {
        uint64_t dice = pf__rng_below(&rng, 100);
        pf_breaker_t *b;
        pf_permit_t p;

        snprintf(key, sizeof(key), "k%u",
                 (unsigned)pf__rng_below(&rng, GROUP_KEYS));
        if (dice < 40) {
            int rc = pf_breaker_group_call(s->g, key, random_result, &rng);

            /* PF_ETIMEDOUT: other threads moved the manual clock past the
             * breaker's 30 s call timeout while this call ran (rare, on a
             * loaded machine). */
            assert_true(rc == 0 || rc == -1 || rc == PF_EOPEN ||
                        rc == PF_EFULL || rc == PF_ETIMEDOUT);
        } else if (dice < 70) {
            if (pf_breaker_group_acquire(s->g, key, &p) == 0) {
                sched_yield();
                pf_breaker_group_record(s->g, &p, random_result(&rng));
            }
        } else if (dice < 85) {
            if (pf_breaker_group_get(s->g, key, &b) == 0) {
                pf_breaker_state(b);
                pf_breaker_group_put(s->g, b);
            }
        } else if (dice < 90) {
            if (pf_breaker_group_remove(s->g, key) == 0) {
                atomic_fetch_add(&s->removed, 1);
            }
        } else if (dice < 93) {
            int n = 0;

            assert_pf_ok(pf_breaker_group_foreach(s->g, count_visit, &n));
            if (n > GROUP_MAX) {
                atomic_fetch_add(&s->too_big, 1);
            }
        } else if (dice < 96) {
            pf_clock_manual_advance(s->clock, 3 * NS_PER_SEC);
        } else if (pf_breaker_group_size(s->g) > GROUP_MAX) {
            atomic_fetch_add(&s->too_big, 1);
        }
    }
}

static void
test_breaker_group_stays_bounded_and_consistent_under_threads(void **state)
{
    pf_breaker_config_t breaker_cfg;
    pf_breaker_group_config_t cfg;
    gshared_t s;
    pf_breaker_group_metrics_t m;

    memset(&s, 0, sizeof(s));
    config(&cfg, &breaker_cfg, *state, GROUP_MAX);
    breaker_cfg.failure_threshold = 2;
    s.g = make(&cfg);
    s.clock = *state;
    pf_test_run_threads(GROUP_THREADS, group_worker, &s);
    m = metrics(s.g);
    assert_int_equal(atomic_load(&s.too_big), 0);
    assert_true(m.size <= GROUP_MAX);
    assert_int_equal(m.size, pf_breaker_group_size(s.g));
    assert_int_equal(m.created - m.evicted - atomic_load(&s.removed), m.size);
    assert_true(m.evicted > 0);
    pf_breaker_group_free(s.g);
}

#define T(name) CLOCK_TEST(name)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_breaker_group_config_init_sets_defaults),
        T(test_breaker_group_new_rejects_bad_input_with_einval),
        T(test_breaker_group_null_arguments_are_rejected),
        T(test_breaker_group_get_creates_one_breaker_per_key),
        T(test_breaker_group_find_creates_nothing),
        T(test_breaker_group_breakers_follow_the_shared_config_each_alone),
        T(test_breaker_group_evicts_least_recently_used_closed_breaker),
        T(test_breaker_group_never_evicts_open_breakers),
        T(test_breaker_group_never_evicts_held_breakers),
        T(test_breaker_group_permit_holds_its_breaker_until_recorded),
        T(test_breaker_group_rejected_acquire_holds_nothing),
        T(test_breaker_group_call_runs_fn_with_the_shared_fallback),
        T(test_breaker_group_remove_frees_now_or_when_let_go),
        T(test_breaker_group_foreach_visits_in_lru_order_and_can_stop),
        T(test_breaker_group_grows_its_table_for_many_keys),
        T(test_breaker_group_allocation_failure_leaks_nothing),
        T(test_breaker_group_stays_bounded_and_consistent_under_threads),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
