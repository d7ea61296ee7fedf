/* Registries: ownership, get-or-create, lookup, removal, iteration, the
 * default registry, and their behaviour under concurrency and allocation
 * failure. The kinds are exercised through health checkers (the objects
 * of every kind go through the same container); test_metrics*.c cover
 * what each kind exports. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "puffinflow/breaker.h"
#include "puffinflow/bulkhead.h"
#include "puffinflow/degrade.h"
#include "puffinflow/health.h"
#include "puffinflow/leak.h"
#include "puffinflow/ratelimit.h"
#include "puffinflow/registry.h"
#include "registry_impl.h"
#include "test.h"

static pf_health_checker_t *
new_checker(const char *name)
{
    pf_health_config_t cfg;
    pf_health_checker_t *hc = NULL;

    pf_health_config_init(&cfg);
    cfg.name = name;
    assert_pf_ok(pf_health_checker_new(&cfg, &hc));
    return hc;
}

/* ---- create, free, default ------------------------------------------- */

static void
test_registry_new_rejects_null_out(void **state)
{
    (void)state;
    assert_pf_err(pf_registry_new(NULL, NULL), PF_EINVAL);
}

static void
test_registry_config_init_enables_process_metrics(void **state)
{
    pf_registry_config_t cfg;

    (void)state;
    memset(&cfg, 0xff, sizeof(cfg));
    pf_registry_config_init(&cfg);
    assert_true(cfg.process_metrics);
    pf_registry_config_init(NULL); /* a no-op, not a crash */
}

static void
test_registry_free_null_is_noop(void **state)
{
    (void)state;
    pf_registry_free(NULL);
    pf_registry_clear(NULL);
}

static atomic_uintptr_t g_default_seen;
static atomic_int g_default_mismatch;

static void
default_thread(void *arg, unsigned i)
{
    uintptr_t mine = (uintptr_t)pf_registry_default();
    uintptr_t expected = 0;

    (void)arg;
    (void)i;
    if (!atomic_compare_exchange_strong(&g_default_seen, &expected, mine) &&
        expected != mine) {
        atomic_fetch_add(&g_default_mismatch, 1);
    }
}

static void
test_registry_default_is_one_registry_for_all_threads(void **state)
{
    (void)state;
    pf_test_run_threads(8, default_thread, NULL);
    assert_int_equal(atomic_load(&g_default_mismatch), 0);
    assert_ptr_equal((void *)atomic_load(&g_default_seen),
                     pf_registry_default());
}

static void
test_registry_default_survives_free_and_clear_empties_it(void **state)
{
    pf_registry_t *def = pf_registry_default();
    pf_health_checker_t *hc;
    pf_health_checker_t *again;

    (void)state;
    assert_pf_ok(
        pf_registry_get_health_checker(def, "default-test", NULL, &hc));
    pf_registry_free(def); /* the default registry: a no-op */
    assert_pf_ok(pf_registry_find_health_checker(def, "default-test", &again));
    assert_ptr_equal(again, hc);
    pf_registry_clear(def);
    assert_int_equal(pf_registry_count(def, PF_REGISTRY_ANY), 0);
    assert_pf_err(pf_registry_find_health_checker(def, "default-test", &again),
                  PF_ENOTFOUND);
}

/* ---- get-or-create ---------------------------------------------------- */

static void
test_registry_get_creates_once_and_returns_the_same_object(void **state)
{
    pf_registry_t *r;
    pf_health_checker_t *a;
    pf_health_checker_t *b;

    (void)state;
    assert_pf_ok(pf_registry_new(NULL, &r));
    assert_pf_ok(pf_registry_get_health_checker(r, "api", NULL, &a));
    assert_pf_ok(pf_registry_get_health_checker(r, "api", NULL, &b));
    assert_ptr_equal(a, b);
    assert_string_equal(pf_health_checker_name(a), "api");
    assert_int_equal(pf_registry_count(r, PF_REGISTRY_HEALTH), 1);
    assert_int_equal(pf_registry_count(r, PF_REGISTRY_BREAKER), 0);
    assert_int_equal(pf_registry_count(r, PF_REGISTRY_ANY), 1);
    pf_registry_free(r); /* frees the checker it made (ASan checks) */
}

static void
test_registry_get_names_the_object_after_the_key_not_the_config(void **state)
{
    pf_registry_t *r;
    pf_health_config_t cfg;
    pf_health_checker_t *hc;

    (void)state;
    assert_pf_ok(pf_registry_new(NULL, &r));
    pf_health_config_init(&cfg);
    cfg.name = "something-else";
    assert_pf_ok(pf_registry_get_health_checker(r, "db", &cfg, &hc));
    assert_string_equal(pf_health_checker_name(hc), "db");
    pf_registry_free(r);
}

static void
test_registry_get_with_bad_config_creates_nothing(void **state)
{
    pf_registry_t *r;
    pf_health_config_t cfg;
    pf_health_checker_t *hc = (pf_health_checker_t *)&cfg;

    (void)state;
    assert_pf_ok(pf_registry_new(NULL, &r));
    pf_health_config_init(&cfg);
    cfg.cache_ttl = -1.0;
    assert_pf_err(pf_registry_get_health_checker(r, "db", &cfg, &hc),
                  PF_EINVAL);
    assert_ptr_equal(hc, (pf_health_checker_t *)&cfg); /* untouched */
    assert_int_equal(pf_registry_count(r, PF_REGISTRY_ANY), 0);
    pf_registry_free(r);
}

static void
test_registry_get_ignores_config_when_the_object_exists(void **state)
{
    pf_registry_t *r;
    pf_health_config_t bad;
    pf_health_checker_t *a;
    pf_health_checker_t *b;

    (void)state;
    assert_pf_ok(pf_registry_new(NULL, &r));
    assert_pf_ok(pf_registry_get_health_checker(r, "db", NULL, &a));
    pf_health_config_init(&bad);
    bad.cache_ttl = -1.0;
    assert_pf_ok(pf_registry_get_health_checker(r, "db", &bad, &b));
    assert_ptr_equal(a, b);
    pf_registry_free(r);
}

static atomic_int g_listener_calls;

static void
count_listener(const pf_health_event_t *ev, void *arg)
{
    (void)ev;
    (void)arg;
    atomic_fetch_add(&g_listener_calls, 1);
}

static int
failing_check(pf_health_result_t *res, void *arg)
{
    (void)arg;
    pf_health_result_set(res, PF_UNHEALTHY, "down");
    return 0;
}

static void
test_registry_default_config_applies_to_later_gets(void **state)
{
    pf_registry_t *r;
    pf_health_config_t cfg;
    pf_health_checker_t *hc;
    pf_health_report_t *rep;

    (void)state;
    assert_pf_ok(pf_registry_new(NULL, &r));
    pf_health_config_init(&cfg);
    cfg.cache_ttl = -1.0;
    assert_pf_err(pf_registry_set_health_checker_defaults(r, &cfg), PF_EINVAL);
    cfg.cache_ttl = 0.0;
    cfg.listener = count_listener;
    assert_pf_ok(pf_registry_set_health_checker_defaults(r, &cfg));
    cfg.listener = NULL; /* the registry kept its own copy */
    atomic_store(&g_listener_calls, 0);
    assert_pf_ok(pf_registry_get_health_checker(r, "svc", NULL, &hc));
    assert_pf_ok(pf_health_add_check(hc, "dep", failing_check, NULL));
    assert_pf_ok(pf_health_check_all(hc, &rep));
    pf_health_report_free(rep);
    /* The listener of the defaults heard the check and overall changes. */
    assert_true(atomic_load(&g_listener_calls) >= 1);
    /* Back to the module's defaults: no listener on new objects. */
    assert_pf_ok(pf_registry_set_health_checker_defaults(r, NULL));
    atomic_store(&g_listener_calls, 0);
    assert_pf_ok(pf_registry_get_health_checker(r, "svc2", NULL, &hc));
    assert_pf_ok(pf_health_add_check(hc, "dep", failing_check, NULL));
    assert_pf_ok(pf_health_check_all(hc, &rep));
    pf_health_report_free(rep);
    assert_int_equal(atomic_load(&g_listener_calls), 0);
    pf_registry_free(r);
}

static void
test_registry_find_on_a_bad_kind_is_einval(void **state)
{
    pf_registry_t *r;
    void *obj;

    (void)state;
    assert_pf_ok(pf_registry_new(NULL, &r));
    assert_pf_err(
        pf_registry_find(r, (pf_registry_kind_t)PF_REGISTRY_KINDS, "x", &obj),
        PF_EINVAL);
    assert_pf_err(pf_registry_find(r, PF_REGISTRY_ANY, "x", &obj), PF_EINVAL);
    pf_registry_free(r);
}

/* ---- add, find, remove ------------------------------------------------ */

static void
test_registry_add_rejects_bad_arguments(void **state)
{
    pf_registry_t *r;
    pf_health_checker_t *hc = new_checker("x");

    (void)state;
    assert_pf_ok(pf_registry_new(NULL, &r));
    assert_pf_err(pf_registry_add_health_checker(NULL, hc, PF_REGISTRY_OWN),
                  PF_EINVAL);
    assert_pf_err(pf_registry_add_health_checker(r, NULL, PF_REGISTRY_OWN),
                  PF_EINVAL);
    assert_pf_err(
        pf_registry_add_health_checker(r, hc, (pf_registry_ownership_t)7),
        PF_EINVAL);
    /* Modules refuse empty names themselves; the container does too. */
    assert_pf_err(pf__registry_add(r, PF_REGISTRY_HEALTH, "", hc, false),
                  PF_EINVAL);
    assert_pf_err(pf__registry_add(r, PF_REGISTRY_HEALTH, NULL, hc, false),
                  PF_EINVAL);
    assert_int_equal(pf_registry_count(r, PF_REGISTRY_ANY), 0);
    pf_registry_free(r);
    pf_health_checker_free(hc);
}

static void
test_registry_add_duplicate_name_is_eexist_and_keeps_the_first(void **state)
{
    pf_registry_t *r;
    pf_health_checker_t *a = new_checker("db");
    pf_health_checker_t *b = new_checker("db");
    pf_health_checker_t *found;

    (void)state;
    assert_pf_ok(pf_registry_new(NULL, &r));
    assert_pf_ok(pf_registry_add_health_checker(r, a, PF_REGISTRY_OWN));
    assert_pf_err(pf_registry_add_health_checker(r, b, PF_REGISTRY_OWN),
                  PF_EEXIST);
    assert_pf_ok(pf_registry_find_health_checker(r, "db", &found));
    assert_ptr_equal(found, a);
    pf_registry_free(r);
    pf_health_checker_free(b); /* a failed add left b with us */
}

static void
test_registry_borrowed_object_outlives_the_registry(void **state)
{
    pf_registry_t *r;
    pf_health_checker_t *hc = new_checker("mine");

    (void)state;
    assert_pf_ok(pf_registry_new(NULL, &r));
    assert_pf_ok(pf_registry_add_health_checker(r, hc, PF_REGISTRY_BORROW));
    pf_registry_free(r);
    /* Still alive and usable (ASan would flag a use after free). */
    assert_pf_ok(pf_health_add_check(hc, "c", failing_check, NULL));
    assert_int_equal(pf_health_check_count(hc), 1);
    pf_health_checker_free(hc);
}

static void
test_registry_owned_object_is_freed_by_the_registry(void **state)
{
    pf_registry_t *r;
    pf_health_checker_t *hc;
    long live;

    (void)state;
    pf_test_alloc_install();
    live = pf_test_alloc_live();
    assert_pf_ok(pf_registry_new(NULL, &r));
    hc = new_checker("theirs");
    assert_pf_ok(pf_registry_add_health_checker(r, hc, PF_REGISTRY_OWN));
    assert_true(pf_test_alloc_live() > live);
    pf_registry_free(r);
    assert_int_equal(pf_test_alloc_live(), live);
    pf_test_alloc_uninstall();
}

static void
test_registry_find_reports_missing_and_bad_arguments(void **state)
{
    pf_registry_t *r;
    pf_health_checker_t *hc;
    void *obj;

    (void)state;
    assert_pf_ok(pf_registry_new(NULL, &r));
    assert_pf_err(pf_registry_find_health_checker(r, "nope", &hc),
                  PF_ENOTFOUND);
    assert_pf_err(pf_registry_find_health_checker(r, "", &hc), PF_EINVAL);
    assert_pf_err(pf_registry_find_health_checker(r, NULL, &hc), PF_EINVAL);
    assert_pf_err(pf_registry_find_health_checker(r, "x", NULL), PF_EINVAL);
    assert_pf_err(pf_registry_find(NULL, PF_REGISTRY_HEALTH, "x", &obj),
                  PF_EINVAL);
    assert_pf_err(pf_registry_remove(r, PF_REGISTRY_HEALTH, "nope", NULL),
                  PF_ENOTFOUND);
    assert_pf_err(pf_registry_remove(r, PF_REGISTRY_HEALTH, "", NULL),
                  PF_EINVAL);
    assert_pf_err(pf_registry_remove(r, (pf_registry_kind_t)42, "x", NULL),
                  PF_EINVAL);
    assert_pf_err(pf_registry_get_health_checker(r, "", NULL, &hc), PF_EINVAL);
    assert_pf_err(pf_registry_get_health_checker(r, "x", NULL, NULL),
                  PF_EINVAL);
    assert_int_equal(pf_registry_count(NULL, PF_REGISTRY_ANY), 0);
    assert_int_equal(pf_registry_count(r, (pf_registry_kind_t)42), 0);
    pf_registry_free(r);
}

static void
test_registry_same_name_in_two_kinds_is_two_objects(void **state)
{
    pf_registry_t *r;
    pf_health_checker_t *hc;
    pf_leak_detector_t *leak;
    void *obj;

    (void)state;
    assert_pf_ok(pf_registry_new(NULL, &r));
    assert_pf_ok(pf_registry_get_health_checker(r, "payments", NULL, &hc));
    assert_pf_ok(pf_registry_get_leak_detector(r, "payments", NULL, &leak));
    assert_pf_ok(pf_registry_find(r, PF_REGISTRY_LEAK, "payments", &obj));
    assert_ptr_equal(obj, leak);
    assert_pf_ok(pf_registry_find(r, PF_REGISTRY_HEALTH, "payments", &obj));
    assert_ptr_equal(obj, hc);
    assert_int_equal(pf_registry_count(r, PF_REGISTRY_ANY), 2);
    pf_registry_free(r);
}

/* Each kind's typed face: get creates under the registry's name, find
 * finds it, a second object of the same name is refused, a bad default
 * config is refused, and free frees them all (ASan). */
static void
test_registry_every_kind_has_a_typed_face(void **state)
{
    pf_registry_t *r;
    pf_breaker_t *b, *b2;
    pf_breaker_config_t bc;
    pf_breaker_group_t *g, *g2;
    pf_breaker_group_config_t gc;
    pf_bulkhead_t *bh, *bh2;
    pf_bulkhead_config_t bhc;
    pf_ratelimit_t *rl, *rl2;
    pf_ratelimit_config_t rlc;
    pf_leak_detector_t *ld, *ld2;
    pf_leak_config_t ldc;
    pf_degrade_t *dg, *dg2;
    pf_degrade_config_t dgc;
    int k;

    (void)state;
    assert_pf_ok(pf_registry_new(NULL, &r));

    assert_pf_ok(pf_registry_get_breaker(r, "x", NULL, &b));
    assert_string_equal(pf_breaker_name(b), "x");
    assert_pf_ok(pf_registry_find_breaker(r, "x", &b2));
    assert_ptr_equal(b, b2);
    pf_breaker_config_init(&bc);
    bc.name = "x";
    assert_pf_ok(pf_breaker_new(&bc, &b2));
    assert_pf_err(pf_registry_add_breaker(r, b2, PF_REGISTRY_OWN), PF_EEXIST);
    pf_breaker_free(b2);
    bc.failure_threshold = 0;
    assert_pf_err(pf_registry_set_breaker_defaults(r, &bc), PF_EINVAL);

    assert_pf_ok(pf_registry_get_breaker_group(r, "x", NULL, &g));
    assert_string_equal(pf_breaker_group_name(g), "x");
    assert_pf_ok(pf_registry_find_breaker_group(r, "x", &g2));
    assert_ptr_equal(g, g2);
    pf_breaker_group_config_init(&gc);
    gc.max_breakers = 0;
    assert_pf_err(pf_registry_set_breaker_group_defaults(r, &gc), PF_EINVAL);

    assert_pf_ok(pf_registry_get_bulkhead(r, "x", NULL, &bh));
    assert_string_equal(pf_bulkhead_name(bh), "x");
    assert_pf_ok(pf_registry_find_bulkhead(r, "x", &bh2));
    assert_ptr_equal(bh, bh2);
    pf_bulkhead_config_init(&bhc);
    bhc.max_concurrent_calls = 0;
    assert_pf_err(pf_registry_set_bulkhead_defaults(r, &bhc), PF_EINVAL);

    assert_pf_ok(pf_registry_get_ratelimit(r, "x", NULL, &rl));
    assert_string_equal(pf_ratelimit_name(rl), "x");
    assert_pf_ok(pf_registry_find_ratelimit(r, "x", &rl2));
    assert_ptr_equal(rl, rl2);
    pf_ratelimit_config_init(&rlc);
    rlc.rate = -1.0;
    assert_pf_err(pf_registry_set_ratelimit_defaults(r, &rlc), PF_EINVAL);

    assert_pf_ok(pf_registry_get_leak_detector(r, "x", NULL, &ld));
    assert_string_equal(pf_leak_detector_name(ld), "x");
    assert_pf_ok(pf_registry_find_leak_detector(r, "x", &ld2));
    assert_ptr_equal(ld, ld2);
    pf_leak_config_init(&ldc);
    ldc.check_interval = 0.0;
    assert_pf_err(pf_registry_set_leak_detector_defaults(r, &ldc), PF_EINVAL);

    assert_pf_ok(pf_registry_get_degrade(r, "x", NULL, &dg));
    assert_string_equal(pf_degrade_name(dg), "x");
    assert_pf_ok(pf_registry_find_degrade(r, "x", &dg2));
    assert_ptr_equal(dg, dg2);
    pf_degrade_config_init(&dgc);
    dgc.sample_interval = 0.0;
    assert_pf_err(pf_registry_set_degrade_defaults(r, &dgc), PF_EINVAL);

    for (k = 0; k < PF_REGISTRY_KINDS; k++) {
        if (k != PF_REGISTRY_HEALTH) {
            assert_int_equal(pf_registry_count(r, (pf_registry_kind_t)k), 1);
        }
        assert_string_not_equal(pf_registry_kind_name((pf_registry_kind_t)k),
                                "unknown");
    }
    assert_string_equal(pf_registry_kind_name(PF_REGISTRY_ANY), "unknown");
    assert_string_equal(pf_registry_kind_name(PF_REGISTRY_BREAKER_GROUP),
                        "breaker_group");
    assert_int_equal(pf_registry_count(r, PF_REGISTRY_ANY),
                     PF_REGISTRY_KINDS - 1);
    pf_registry_free(r);
}

static void
test_registry_remove_with_out_hands_the_object_over(void **state)
{
    pf_registry_t *r;
    pf_health_checker_t *hc;
    void *obj = NULL;

    (void)state;
    assert_pf_ok(pf_registry_new(NULL, &r));
    assert_pf_ok(pf_registry_get_health_checker(r, "db", NULL, &hc));
    assert_pf_ok(pf_registry_remove(r, PF_REGISTRY_HEALTH, "db", &obj));
    assert_ptr_equal(obj, hc);
    assert_int_equal(pf_registry_count(r, PF_REGISTRY_ANY), 0);
    pf_registry_free(r);
    /* Ours now: still alive after the registry is gone. */
    assert_string_equal(pf_health_checker_name(hc), "db");
    pf_health_checker_free(hc);
}

static void
test_registry_remove_owned_frees_and_name_can_be_reused(void **state)
{
    pf_registry_t *r;
    pf_health_checker_t *a;
    pf_health_checker_t *b;
    long live;

    (void)state;
    assert_pf_ok(pf_registry_new(NULL, &r));
    /* A first get grows the registry's table, which stays. */
    assert_pf_ok(pf_registry_get_health_checker(r, "db", NULL, &a));
    assert_pf_ok(pf_registry_remove(r, PF_REGISTRY_HEALTH, "db", NULL));
    pf_test_alloc_install();
    live = pf_test_alloc_live();
    assert_pf_ok(pf_registry_get_health_checker(r, "db", NULL, &a));
    assert_pf_ok(pf_registry_remove(r, PF_REGISTRY_HEALTH, "db", NULL));
    assert_int_equal(pf_test_alloc_live(), live);
    pf_test_alloc_uninstall();
    assert_pf_ok(pf_registry_get_health_checker(r, "db", NULL, &b));
    assert_int_equal(pf_registry_count(r, PF_REGISTRY_HEALTH), 1);
    pf_registry_free(r);
}

/* ---- foreach ---------------------------------------------------------- */

typedef struct seen {
    char names[16][16];
    int n;
    int stop_at; /* return 7 at this visit (1-based), 0 = never */
    pf_registry_t *r;
    const char *remove; /* remove this name at the first visit */
} seen_t;

static int
record_visit(pf_registry_kind_t kind, const char *name, void *object, void *arg)
{
    seen_t *s = arg;

    assert_int_equal(kind, PF_REGISTRY_HEALTH);
    assert_string_equal(pf_health_checker_name(object), name);
    snprintf(s->names[s->n], sizeof(s->names[0]), "%s", name);
    s->n++;
    if (s->remove != NULL && s->n == 1) {
        assert_pf_ok(
            pf_registry_remove(s->r, PF_REGISTRY_HEALTH, s->remove, NULL));
    }
    return s->n == s->stop_at ? 7 : 0;
}

static void
test_registry_foreach_visits_in_name_order(void **state)
{
    static const char *const names[] = {"m", "b", "z", "a", "k"};
    pf_registry_t *r;
    pf_health_checker_t *hc;
    seen_t s;
    size_t i;

    (void)state;
    assert_pf_ok(pf_registry_new(NULL, &r));
    for (i = 0; i < 5; i++) {
        assert_pf_ok(pf_registry_get_health_checker(r, names[i], NULL, &hc));
    }
    memset(&s, 0, sizeof(s));
    assert_pf_ok(pf_registry_foreach(r, PF_REGISTRY_HEALTH, record_visit, &s));
    assert_int_equal(s.n, 5);
    assert_string_equal(s.names[0], "a");
    assert_string_equal(s.names[1], "b");
    assert_string_equal(s.names[2], "k");
    assert_string_equal(s.names[3], "m");
    assert_string_equal(s.names[4], "z");
    memset(&s, 0, sizeof(s));
    assert_pf_ok(pf_registry_foreach(r, PF_REGISTRY_ANY, record_visit, &s));
    assert_int_equal(s.n, 5);
    memset(&s, 0, sizeof(s));
    assert_pf_ok(pf_registry_foreach(r, PF_REGISTRY_BREAKER, record_visit, &s));
    assert_int_equal(s.n, 0);
    pf_registry_free(r);
}

static void
test_registry_foreach_stops_at_a_non_zero_result(void **state)
{
    pf_registry_t *r;
    pf_health_checker_t *hc;
    seen_t s;

    (void)state;
    assert_pf_ok(pf_registry_new(NULL, &r));
    assert_pf_ok(pf_registry_get_health_checker(r, "a", NULL, &hc));
    assert_pf_ok(pf_registry_get_health_checker(r, "b", NULL, &hc));
    assert_pf_ok(pf_registry_get_health_checker(r, "c", NULL, &hc));
    memset(&s, 0, sizeof(s));
    s.stop_at = 2;
    assert_int_equal(
        pf_registry_foreach(r, PF_REGISTRY_HEALTH, record_visit, &s), 7);
    assert_int_equal(s.n, 2);
    assert_pf_err(pf_registry_foreach(r, PF_REGISTRY_HEALTH, NULL, &s),
                  PF_EINVAL);
    assert_pf_err(
        pf_registry_foreach(NULL, PF_REGISTRY_HEALTH, record_visit, &s),
        PF_EINVAL);
    pf_registry_free(r);
}

static void
test_registry_foreach_callback_may_remove_the_visited_object(void **state)
{
    pf_registry_t *r;
    pf_health_checker_t *hc;
    pf_health_checker_t *mine = new_checker("b");
    seen_t s;

    (void)state;
    assert_pf_ok(pf_registry_new(NULL, &r));
    assert_pf_ok(pf_registry_get_health_checker(r, "a", NULL, &hc));
    assert_pf_ok(pf_registry_add_health_checker(r, mine, PF_REGISTRY_BORROW));
    assert_pf_ok(pf_registry_get_health_checker(r, "c", NULL, &hc));
    /* Removing the owned one being visited: freed after the visit. */
    memset(&s, 0, sizeof(s));
    s.r = r;
    s.remove = "a";
    assert_pf_ok(pf_registry_foreach(r, PF_REGISTRY_HEALTH, record_visit, &s));
    assert_int_equal(s.n, 3); /* the walk went on after it */
    assert_int_equal(pf_registry_count(r, PF_REGISTRY_HEALTH), 2);
    /* Removing a borrowed one being visited does not wait for itself. */
    memset(&s, 0, sizeof(s));
    s.r = r;
    s.remove = "b";
    assert_pf_ok(pf_registry_foreach(r, PF_REGISTRY_HEALTH, record_visit, &s));
    assert_int_equal(s.n, 2);
    /* Removing one not reached yet: it is not visited. */
    assert_pf_ok(pf_registry_get_health_checker(r, "d", NULL, &hc));
    memset(&s, 0, sizeof(s));
    s.r = r;
    s.remove = "d";
    assert_pf_ok(pf_registry_foreach(r, PF_REGISTRY_HEALTH, record_visit, &s));
    assert_int_equal(s.n, 1);
    assert_string_equal(s.names[0], "c");
    pf_registry_free(r);
    pf_health_checker_free(mine);
}

/* A foreach on one thread holds object "x" while another thread removes
 * it: an owned one is unlinked at once and freed after the visit; a
 * borrowed one makes remove wait until the visit is over. */
typedef struct hold {
    pf_registry_t *r;
    atomic_int inside;   /* the visit has started */
    atomic_int removing; /* the other thread is about to remove */
    atomic_int removed;  /* its remove returned */
    atomic_int release;  /* the visit may end */
    atomic_int removed_during_visit;
    pf_health_checker_t *object;
} hold_t;

static int
hold_visit(pf_registry_kind_t kind, const char *name, void *object, void *arg)
{
    hold_t *h = arg;
    int i;

    (void)kind;
    (void)name;
    atomic_store(&h->inside, 1);
    pf_test_wait_for_flag(&h->release, 1);
    /* Give a remove that should be waiting plenty of chances to run. */
    for (i = 0; i < 1000; i++) {
        sched_yield();
    }
    atomic_store(&h->removed_during_visit, atomic_load(&h->removed));
    /* The object is still alive in either case. */
    assert_string_equal(pf_health_checker_name(object), "x");
    return 0;
}

static void *
hold_thread(void *arg)
{
    hold_t *h = arg;

    assert_pf_ok(pf_registry_foreach(h->r, PF_REGISTRY_HEALTH, hold_visit, h));
    return NULL;
}

static void
test_registry_remove_of_owned_object_does_not_wait_for_a_visit(void **state)
{
    hold_t h;
    pthread_t t;
    pf_health_checker_t *hc;

    (void)state;
    memset(&h, 0, sizeof(h));
    assert_pf_ok(pf_registry_new(NULL, &h.r));
    assert_pf_ok(pf_registry_get_health_checker(h.r, "x", NULL, &hc));
    assert_int_equal(pthread_create(&t, NULL, hold_thread, &h), 0);
    pf_test_wait_for_flag(&h.inside, 1);
    assert_pf_ok(pf_registry_remove(h.r, PF_REGISTRY_HEALTH, "x", NULL));
    atomic_store(&h.removed, 1);
    assert_int_equal(pf_registry_count(h.r, PF_REGISTRY_HEALTH), 0);
    atomic_store(&h.release, 1);
    pthread_join(t, NULL);
    assert_int_equal(atomic_load(&h.removed_during_visit), 1);
    pf_registry_free(h.r); /* the visit freed it; ASan checks no leak */
}

static void *
remove_thread(void *arg)
{
    hold_t *h = arg;
    void *obj;

    atomic_store(&h->removing, 1);
    assert_pf_ok(pf_registry_remove(h->r, PF_REGISTRY_HEALTH, "x", &obj));
    atomic_store(&h->removed, 1);
    return NULL;
}

static void
test_registry_remove_handing_over_waits_for_a_visit(void **state)
{
    hold_t h;
    pthread_t t;
    pthread_t t2;

    (void)state;
    memset(&h, 0, sizeof(h));
    assert_pf_ok(pf_registry_new(NULL, &h.r));
    h.object = new_checker("x");
    assert_pf_ok(
        pf_registry_add_health_checker(h.r, h.object, PF_REGISTRY_BORROW));
    assert_int_equal(pthread_create(&t, NULL, hold_thread, &h), 0);
    pf_test_wait_for_flag(&h.inside, 1);
    assert_int_equal(pthread_create(&t2, NULL, remove_thread, &h), 0);
    pf_test_wait_for_flag(&h.removing, 1);
    atomic_store(&h.release, 1);
    pthread_join(t, NULL);
    pthread_join(t2, NULL);
    /* The remove could not return before the visit was over. */
    assert_int_equal(atomic_load(&h.removed_during_visit), 0);
    assert_int_equal(atomic_load(&h.removed), 1);
    pf_health_checker_free(h.object); /* safe: remove has returned */
    pf_registry_free(h.r);
}

/* ---- concurrency ------------------------------------------------------ */

#define RACE_THREADS 16

typedef struct race {
    pf_registry_t *r;
    pf_health_checker_t *got[RACE_THREADS];
} race_t;

static void
race_get(void *arg, unsigned i)
{
    race_t *race = arg;

    assert_pf_ok(
        pf_registry_get_health_checker(race->r, "shared", NULL, &race->got[i]));
}

static void
test_registry_concurrent_get_or_create_makes_exactly_one(void **state)
{
    race_t race;
    int round;
    unsigned i;

    (void)state;
    for (round = 0; round < 20; round++) {
        memset(&race, 0, sizeof(race));
        assert_pf_ok(pf_registry_new(NULL, &race.r));
        pf_test_run_threads(RACE_THREADS, race_get, &race);
        assert_int_equal(pf_registry_count(race.r, PF_REGISTRY_HEALTH), 1);
        for (i = 1; i < RACE_THREADS; i++) {
            assert_ptr_equal(race.got[i], race.got[0]);
        }
        pf_registry_free(race.r); /* one object to free: ASan sees leaks */
    }
}

/* Threads add, get, find, remove, walk and export over a small set of
 * names at once. Invariants: every call returns one of its documented
 * codes, nothing is used after free (ASan/TSan), and at the end the count
 * equals the names that are still found. */
typedef struct churn {
    pf_registry_t *r;
    atomic_int visits;
} churn_t;

static int
churn_visit(pf_registry_kind_t kind, const char *name, void *object, void *arg)
{
    churn_t *c = arg;

    (void)kind;
    assert_string_equal(pf_health_checker_name(object), name);
    atomic_fetch_add(&c->visits, 1);
    return 0;
}

static void
churn_thread(void *arg, unsigned t)
{
    churn_t *c = arg;
    uint64_t x = 0x9e3779b97f4a7c15ull * (t + 1);
    int i;

    for (i = 0; i < 300; i++) {
        char name[8];
        pf_health_checker_t *hc;
        void *obj;
        char *text;
        int rc;

        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        snprintf(name, sizeof(name), "n%u", (unsigned)(x % 6));
        switch ((x >> 8) % 6) {
        case 0:
            assert_pf_ok(pf_registry_get_health_checker(c->r, name, NULL, &hc));
            break;
        case 1:
            rc = pf_registry_find_health_checker(c->r, name, &hc);
            assert_true(rc == 0 || rc == PF_ENOTFOUND);
            break;
        case 2:
            rc = pf_registry_remove(c->r, PF_REGISTRY_HEALTH, name, NULL);
            assert_true(rc == 0 || rc == PF_ENOTFOUND);
            break;
        case 3:
            rc = pf_registry_remove(c->r, PF_REGISTRY_HEALTH, name, &obj);
            assert_true(rc == 0 || rc == PF_ENOTFOUND);
            if (rc == 0) {
                /* Ours now: add it back as owned, or free it if the name
                 * was taken meanwhile. */
                if (pf_registry_add_health_checker(c->r, obj,
                                                   PF_REGISTRY_OWN) != 0) {
                    pf_health_checker_free(obj);
                }
            }
            break;
        case 4:
            assert_pf_ok(
                pf_registry_foreach(c->r, PF_REGISTRY_ANY, churn_visit, c));
            break;
        default:
            assert_pf_ok(pf_registry_export(
                c->r,
                (x >> 20) % 2 == 0 ? PF_METRICS_PROMETHEUS : PF_METRICS_JSON,
                &text, NULL));
            pf_free(text);
            break;
        }
    }
}

static int
count_visit(pf_registry_kind_t kind, const char *name, void *object, void *arg)
{
    (void)kind;
    (void)name;
    (void)object;
    (*(size_t *)arg)++;
    return 0;
}

static void
test_registry_survives_concurrent_churn(void **state)
{
    pf_registry_config_t cfg;
    churn_t c;
    size_t walked = 0;
    size_t found = 0;
    int i;

    (void)state;
    memset(&c, 0, sizeof(c));
    pf_registry_config_init(&cfg);
    cfg.process_metrics = false; /* keep /proc reads out of the race */
    assert_pf_ok(pf_registry_new(&cfg, &c.r));
    pf_test_run_threads(8, churn_thread, &c);
    assert_pf_ok(
        pf_registry_foreach(c.r, PF_REGISTRY_ANY, count_visit, &walked));
    for (i = 0; i < 6; i++) {
        char name[8];
        pf_health_checker_t *hc;

        snprintf(name, sizeof(name), "n%d", i);
        found += pf_registry_find_health_checker(c.r, name, &hc) == 0;
    }
    assert_int_equal(walked, found);
    assert_int_equal(pf_registry_count(c.r, PF_REGISTRY_ANY), found);
    pf_registry_free(c.r);
}

/* ---- allocation failures ---------------------------------------------- */

static int
ok_check(pf_health_result_t *res, void *arg)
{
    (void)res;
    (void)arg;
    return 0;
}

static void
alloc_scenario(void *arg)
{
    pf_registry_t *r = NULL;
    pf_health_checker_t *hc = NULL;
    pf_health_checker_t *mine = NULL;
    pf_health_config_t cfg;
    seen_t s;
    void *obj;
    int rc;

    (void)arg;
    rc = pf_registry_new(NULL, &r);
    if (rc != 0) {
        assert_int_equal(rc, PF_ENOMEM);
        return;
    }
    pf_health_config_init(&cfg);
    rc = pf_registry_set_health_checker_defaults(r, &cfg);
    assert_true(rc == 0 || rc == PF_ENOMEM);
    rc = pf_registry_get_health_checker(r, "a", NULL, &hc);
    assert_true(rc == 0 || rc == PF_ENOMEM);
    if (rc == 0) {
        rc = pf_health_add_check(hc, "c", ok_check, NULL);
        assert_true(rc == 0 || rc == PF_ENOMEM);
    }
    rc = pf_health_checker_new(NULL, &mine);
    if (rc == 0) {
        rc = pf_registry_add_health_checker(r, mine, PF_REGISTRY_OWN);
        assert_true(rc == 0 || rc == PF_ENOMEM);
        if (rc != 0) {
            pf_health_checker_free(mine);
        }
    }
    memset(&s, 0, sizeof(s));
    assert_pf_ok(pf_registry_foreach(r, PF_REGISTRY_ANY, record_visit, &s));
    rc = pf_registry_remove(r, PF_REGISTRY_HEALTH, "health", &obj);
    if (rc == 0) {
        pf_health_checker_free(obj);
    } else {
        assert_int_equal(rc, PF_ENOTFOUND);
    }
    pf_registry_clear(r);
    pf_registry_free(r);
}

static void
test_registry_allocation_failures_leak_nothing(void **state)
{
    (void)state;
    assert_true(pf_test_alloc_sweep(alloc_scenario, NULL) > 5);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registry_new_rejects_null_out),
        cmocka_unit_test(test_registry_config_init_enables_process_metrics),
        cmocka_unit_test(test_registry_free_null_is_noop),
        cmocka_unit_test(test_registry_default_is_one_registry_for_all_threads),
        cmocka_unit_test(
            test_registry_default_survives_free_and_clear_empties_it),
        cmocka_unit_test(
            test_registry_get_creates_once_and_returns_the_same_object),
        cmocka_unit_test(
            test_registry_get_names_the_object_after_the_key_not_the_config),
        cmocka_unit_test(test_registry_get_with_bad_config_creates_nothing),
        cmocka_unit_test(
            test_registry_get_ignores_config_when_the_object_exists),
        cmocka_unit_test(test_registry_default_config_applies_to_later_gets),
        cmocka_unit_test(test_registry_find_on_a_bad_kind_is_einval),
        cmocka_unit_test(test_registry_add_rejects_bad_arguments),
        cmocka_unit_test(
            test_registry_add_duplicate_name_is_eexist_and_keeps_the_first),
        cmocka_unit_test(test_registry_borrowed_object_outlives_the_registry),
        cmocka_unit_test(test_registry_owned_object_is_freed_by_the_registry),
        cmocka_unit_test(test_registry_find_reports_missing_and_bad_arguments),
        cmocka_unit_test(test_registry_same_name_in_two_kinds_is_two_objects),
        cmocka_unit_test(test_registry_every_kind_has_a_typed_face),
        cmocka_unit_test(test_registry_remove_with_out_hands_the_object_over),
        cmocka_unit_test(
            test_registry_remove_owned_frees_and_name_can_be_reused),
        cmocka_unit_test(test_registry_foreach_visits_in_name_order),
        cmocka_unit_test(test_registry_foreach_stops_at_a_non_zero_result),
        cmocka_unit_test(
            test_registry_foreach_callback_may_remove_the_visited_object),
        cmocka_unit_test(
            test_registry_remove_of_owned_object_does_not_wait_for_a_visit),
        cmocka_unit_test(test_registry_remove_handing_over_waits_for_a_visit),
        cmocka_unit_test(
            test_registry_concurrent_get_or_create_makes_exactly_one),
        cmocka_unit_test(test_registry_survives_concurrent_churn),
        cmocka_unit_test(test_registry_allocation_failures_leak_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
