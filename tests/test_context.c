/* Context variables: typed set/get, copies in and out, pointer
 * destructors, outputs, key listing, thread safety, allocation failure. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "puffinflow/alloc.h"
#include "puffinflow/context.h"

#include "test.h"

static pf_ctx_t *
make(void)
{
    pf_ctx_t *ctx = NULL;

    assert_pf_ok(pf_ctx_new(&ctx));
    return ctx;
}

static void
test_ctx_int_and_double_round_trip(void **state)
{
    pf_ctx_t *ctx = make();
    int64_t i = 0;
    double d = 0;

    (void)state;
    assert_pf_ok(pf_ctx_set_int(ctx, "n", INT64_MIN));
    assert_pf_ok(pf_ctx_get_int(ctx, "n", &i));
    assert_true(i == INT64_MIN);
    assert_pf_ok(pf_ctx_set_double(ctx, "x", 2.5));
    assert_pf_ok(pf_ctx_get_double(ctx, "x", &d));
    assert_true(d == 2.5);
    assert_pf_ok(pf_ctx_set_int(ctx, "n", 7)); /* replace */
    assert_pf_ok(pf_ctx_get_int(ctx, "n", &i));
    assert_int_equal(i, 7);
    assert_int_equal(pf_ctx_count(ctx), 2);
    assert_int_equal(pf_ctx_type(ctx, "n"), PF_VALUE_INT);
    assert_int_equal(pf_ctx_type(ctx, "x"), PF_VALUE_DOUBLE);
    pf_ctx_free(ctx);
}

static void
test_ctx_get_is_strict_about_type_and_presence(void **state)
{
    pf_ctx_t *ctx = make();
    int64_t i = 42;
    double d = 1.0;
    void *p = NULL;

    (void)state;
    assert_pf_err(pf_ctx_get_int(ctx, "missing", &i), PF_ENOTFOUND);
    assert_int_equal(i, 42); /* untouched */
    assert_pf_ok(pf_ctx_set_int(ctx, "n", 1));
    assert_pf_err(pf_ctx_get_double(ctx, "n", &d), PF_EINVAL);
    assert_pf_err(pf_ctx_get_ptr(ctx, "n", &p), PF_EINVAL);
    assert_pf_err(pf_ctx_get_string(ctx, "n", NULL, 0, NULL), PF_EINVAL);
    assert_true(d == 1.0);
    assert_false(pf_ctx_has(ctx, "missing"));
    assert_int_equal(pf_ctx_type(ctx, "missing"), PF_VALUE_NONE);
    pf_ctx_free(ctx);
}

static void
test_ctx_rejects_null_and_empty_keys(void **state)
{
    pf_ctx_t *ctx = make();
    int64_t i;

    (void)state;
    assert_pf_err(pf_ctx_new(NULL), PF_EINVAL);
    assert_pf_err(pf_ctx_set_int(NULL, "k", 1), PF_EINVAL);
    assert_pf_err(pf_ctx_set_int(ctx, NULL, 1), PF_EINVAL);
    assert_pf_err(pf_ctx_set_int(ctx, "", 1), PF_EINVAL);
    assert_pf_err(pf_ctx_set_string(ctx, "k", NULL), PF_EINVAL);
    assert_pf_err(pf_ctx_set_bytes(ctx, "k", NULL, 3), PF_EINVAL);
    assert_pf_err(pf_ctx_get_int(ctx, "k", NULL), PF_EINVAL);
    assert_pf_err(pf_ctx_get_int(NULL, "k", &i), PF_EINVAL);
    assert_pf_err(pf_ctx_remove(ctx, NULL), PF_EINVAL);
    assert_pf_err(pf_ctx_mark_output(ctx, ""), PF_EINVAL);
    assert_int_equal(pf_ctx_count(NULL), 0);
    assert_int_equal(pf_ctx_count(ctx), 0);
    pf_ctx_clear(NULL);
    pf_ctx_free(NULL);
    pf_ctx_free(ctx);
}

static void
test_ctx_string_is_copied_in_and_out(void **state)
{
    pf_ctx_t *ctx = make();
    char src[16] = "hello";
    char buf[16];
    char small[5];
    size_t len = 0;
    char *dup = NULL;

    (void)state;
    assert_pf_ok(pf_ctx_set_string(ctx, "greeting", src));
    strcpy(src, "XXXXX"); /* the context kept its own copy */
    assert_pf_ok(pf_ctx_get_string(ctx, "greeting", buf, sizeof(buf), &len));
    assert_string_equal(buf, "hello");
    assert_int_equal(len, 5);
    /* Needs 6 bytes with the NUL: nothing copied, length said. */
    memset(small, '#', sizeof(small));
    assert_pf_err(
        pf_ctx_get_string(ctx, "greeting", small, sizeof(small), &len),
        PF_ERANGE);
    assert_int_equal(len, 5);
    assert_int_equal(small[0], '#');
    assert_pf_err(pf_ctx_get_string(ctx, "greeting", NULL, 0, &len), PF_ERANGE);
    assert_pf_ok(pf_ctx_dup_string(ctx, "greeting", &dup));
    assert_string_equal(dup, "hello");
    pf_free(dup);
    /* A shorter value reuses the buffer; a longer one replaces it. */
    assert_pf_ok(pf_ctx_set_string(ctx, "greeting", "hi"));
    assert_pf_ok(pf_ctx_get_string(ctx, "greeting", buf, sizeof(buf), NULL));
    assert_string_equal(buf, "hi");
    assert_pf_ok(pf_ctx_set_string(ctx, "greeting", "good morning"));
    assert_pf_ok(pf_ctx_get_string(ctx, "greeting", buf, sizeof(buf), NULL));
    assert_string_equal(buf, "good morning");
    pf_ctx_free(ctx);
}

static void
test_ctx_bytes_keep_embedded_zeros(void **state)
{
    pf_ctx_t *ctx = make();
    const unsigned char data[6] = {1, 0, 2, 0, 3, 0};
    unsigned char out[8];
    size_t len = 0;

    (void)state;
    assert_pf_ok(pf_ctx_set_bytes(ctx, "blob", data, sizeof(data)));
    assert_int_equal(pf_ctx_type(ctx, "blob"), PF_VALUE_BYTES);
    assert_pf_ok(pf_ctx_get_bytes(ctx, "blob", out, sizeof(out), &len));
    assert_int_equal(len, 6);
    assert_memory_equal(out, data, 6);
    assert_pf_err(pf_ctx_get_bytes(ctx, "blob", out, 5, &len), PF_ERANGE);
    /* Bytes are not a string. */
    assert_pf_err(
        pf_ctx_get_string(ctx, "blob", (char *)out, sizeof(out), NULL),
        PF_EINVAL);
    assert_pf_ok(pf_ctx_set_bytes(ctx, "empty", NULL, 0));
    assert_pf_ok(pf_ctx_get_bytes(ctx, "empty", NULL, 0, &len));
    assert_int_equal(len, 0);
    pf_ctx_free(ctx);
}

static atomic_int g_freed;

static void
count_free(void *p)
{
    atomic_fetch_add(&g_freed, 1);
    free(p);
}

static void
test_ctx_pointer_destructor_runs_on_replace_remove_and_free(void **state)
{
    pf_ctx_t *ctx = make();
    void *p = NULL;
    int plain = 5;

    (void)state;
    atomic_store(&g_freed, 0);
    assert_pf_ok(pf_ctx_set_ptr(ctx, "a", malloc(8), count_free));
    assert_pf_ok(pf_ctx_set_ptr(ctx, "a", malloc(8), count_free));
    assert_int_equal(atomic_load(&g_freed), 1); /* replaced */
    assert_pf_ok(pf_ctx_set_int(ctx, "a", 1));
    assert_int_equal(atomic_load(&g_freed), 2); /* replaced by an int */
    assert_pf_ok(pf_ctx_set_ptr(ctx, "b", malloc(8), count_free));
    assert_pf_ok(pf_ctx_remove(ctx, "b"));
    assert_int_equal(atomic_load(&g_freed), 3);
    assert_pf_err(pf_ctx_remove(ctx, "b"), PF_ENOTFOUND);
    assert_pf_ok(pf_ctx_set_ptr(ctx, "ref", &plain, NULL)); /* a reference */
    assert_pf_ok(pf_ctx_get_ptr(ctx, "ref", &p));
    assert_ptr_equal(p, &plain);
    assert_pf_ok(pf_ctx_set_ptr(ctx, "c", malloc(8), count_free));
    assert_pf_ok(pf_ctx_set_ptr(ctx, "d", malloc(8), count_free));
    pf_ctx_clear(ctx);
    assert_int_equal(atomic_load(&g_freed), 5);
    assert_int_equal(pf_ctx_count(ctx), 0);
    assert_pf_ok(pf_ctx_set_ptr(ctx, "e", malloc(8), count_free));
    pf_ctx_free(ctx);
    assert_int_equal(atomic_load(&g_freed), 6);
}

static void
test_ctx_set_ptr_frees_the_value_when_it_fails(void **state)
{
    (void)state;
    atomic_store(&g_freed, 0);
    assert_pf_err(pf_ctx_set_ptr(NULL, "k", malloc(8), count_free), PF_EINVAL);
    assert_int_equal(atomic_load(&g_freed), 1);
}

static void
test_ctx_take_ptr_hands_ownership_back(void **state)
{
    pf_ctx_t *ctx = make();
    void *mem = malloc(8);
    void *p = NULL;

    (void)state;
    atomic_store(&g_freed, 0);
    assert_pf_ok(pf_ctx_set_ptr(ctx, "k", mem, count_free));
    assert_pf_ok(pf_ctx_take_ptr(ctx, "k", &p));
    assert_ptr_equal(p, mem);
    assert_false(pf_ctx_has(ctx, "k"));
    pf_ctx_free(ctx);
    assert_int_equal(atomic_load(&g_freed), 0);
    free(p);
}

static void
test_ctx_outputs_are_marked_and_listed(void **state)
{
    pf_ctx_t *ctx = make();
    char **keys = NULL;
    size_t n = 0;

    (void)state;
    assert_pf_ok(pf_ctx_set_int(ctx, "zeta", 1));
    assert_pf_ok(pf_ctx_set_string(ctx, "alpha", "a"));
    assert_pf_ok(pf_ctx_set_double(ctx, "mid", 0.5));
    assert_pf_err(pf_ctx_mark_output(ctx, "nope"), PF_ENOTFOUND);
    assert_pf_ok(pf_ctx_mark_output(ctx, "zeta"));
    assert_pf_ok(pf_ctx_mark_output(ctx, "alpha"));
    assert_pf_ok(pf_ctx_set_int(ctx, "zeta", 2)); /* stays an output */
    assert_true(pf_ctx_is_output(ctx, "zeta"));
    assert_false(pf_ctx_is_output(ctx, "mid"));
    assert_pf_ok(pf_ctx_keys(ctx, PF_CTX_KEYS_ALL, &keys, &n));
    assert_int_equal(n, 3);
    assert_string_equal(keys[0], "alpha");
    assert_string_equal(keys[1], "mid");
    assert_string_equal(keys[2], "zeta");
    assert_null(keys[3]);
    pf_free(keys);
    assert_pf_ok(pf_ctx_keys(ctx, PF_CTX_KEYS_OUTPUTS, &keys, &n));
    assert_int_equal(n, 2);
    assert_string_equal(keys[0], "alpha");
    assert_string_equal(keys[1], "zeta");
    pf_free(keys);
    assert_pf_ok(pf_ctx_remove(ctx, "zeta"));
    assert_pf_ok(pf_ctx_set_int(ctx, "zeta", 3)); /* a new variable */
    assert_false(pf_ctx_is_output(ctx, "zeta"));
    assert_pf_err(pf_ctx_keys(ctx, (pf_ctx_keys_filter_t)7, &keys, &n),
                  PF_EINVAL);
    pf_ctx_free(ctx);
}

/* Many keys, removed in an order that exercises the backward shift, are
 * checked against a plain model after every step. */
static void
test_ctx_many_keys_stay_findable_through_removals(void **state)
{
    enum { N = 600 };
    pf_ctx_t *ctx = make();
    static bool present[N];
    char key[32];
    uint64_t rng = 99;
    int step;
    int i;

    (void)state;
    memset(present, 0, sizeof(present));
    for (step = 0; step < 6000; step++) {
        rng = rng * 6364136223846793005u + 1442695040888963407u;
        i = (int)((rng >> 33) % N);
        snprintf(key, sizeof(key), "k%d", i);
        if (present[i] && (rng & 1)) {
            assert_pf_ok(pf_ctx_remove(ctx, key));
            present[i] = false;
        } else {
            assert_pf_ok(pf_ctx_set_int(ctx, key, i));
            present[i] = true;
        }
        if (step % 500 == 0) {
            size_t count = 0;
            int j;

            for (j = 0; j < N; j++) {
                int64_t v = -1;

                snprintf(key, sizeof(key), "k%d", j);
                if (present[j]) {
                    assert_pf_ok(pf_ctx_get_int(ctx, key, &v));
                    assert_int_equal(v, j);
                    count++;
                } else {
                    assert_pf_err(pf_ctx_get_int(ctx, key, &v), PF_ENOTFOUND);
                }
            }
            assert_int_equal(pf_ctx_count(ctx), count);
        }
    }
    pf_ctx_free(ctx);
}

static void
test_ctx_state_view_functions_are_neutral_outside_a_state(void **state)
{
    pf_ctx_t *ctx = make();
    pf_deadline_t d = pf_ctx_deadline(ctx);

    (void)state;
    assert_null(pf_ctx_state_name(ctx));
    assert_null(pf_ctx_agent_name(ctx));
    assert_int_equal(pf_ctx_attempt(ctx), 0);
    assert_true(pf_deadline_is_none(&d));
    assert_null(pf_ctx_token(ctx));
    assert_false(pf_ctx_is_cancelled(ctx));
    assert_null(pf_ctx_state_name(NULL));
    pf_ctx_free(ctx);
}

/* ---- threads ------------------------------------------------------------- */

static void
bump(void *arg, unsigned t)
{
    pf_ctx_t *ctx = arg;
    char key[16];
    int i;

    snprintf(key, sizeof(key), "t%u", t);
    for (i = 1; i <= 2000; i++) {
        int64_t v = 0;
        char buf[32];

        assert_pf_ok(pf_ctx_set_int(ctx, key, i));
        assert_pf_ok(pf_ctx_get_int(ctx, key, &v));
        assert_int_equal(v, i); /* only this thread writes its key */
        snprintf(buf, sizeof(buf), "v%d", i);
        assert_pf_ok(pf_ctx_set_string(ctx, "shared", buf));
        assert_pf_ok(pf_ctx_get_string(ctx, "shared", buf, sizeof(buf), NULL));
        assert_int_equal(buf[0], 'v'); /* some whole value, never torn */
    }
}

static void
test_ctx_concurrent_threads_never_see_torn_values(void **state)
{
    pf_ctx_t *ctx = make();
    int64_t v;
    unsigned t;

    (void)state;
    pf_test_run_threads(4, bump, ctx);
    for (t = 0; t < 4; t++) {
        char key[16];

        snprintf(key, sizeof(key), "t%u", t);
        assert_pf_ok(pf_ctx_get_int(ctx, key, &v));
        assert_int_equal(v, 2000);
    }
    pf_ctx_free(ctx);
}

/* ---- allocation failure -------------------------------------------------- */

static void
scenario(void *arg)
{
    pf_ctx_t *ctx = NULL;
    char **keys = NULL;
    char *dup = NULL;
    size_t n;
    int64_t v;
    int rc;
    int i;

    (void)arg;
    rc = pf_ctx_new(&ctx);
    if (rc != 0) {
        assert_int_equal(rc, PF_ENOMEM);
        return;
    }
    for (i = 0; i < 12; i++) {
        char key[16];

        snprintf(key, sizeof(key), "key%d", i);
        rc = pf_ctx_set_int(ctx, key, i);
        if (rc != 0) {
            assert_int_equal(rc, PF_ENOMEM);
            assert_pf_err(pf_ctx_get_int(ctx, key, &v), PF_ENOTFOUND);
        }
    }
    rc = pf_ctx_set_string(ctx, "s", "text");
    if (rc != 0) {
        assert_int_equal(rc, PF_ENOMEM);
        assert_false(pf_ctx_has(ctx, "s")); /* no typeless leftover */
    } else {
        rc = pf_ctx_set_string(ctx, "s", "a longer text than before");
        if (rc != 0) {
            char buf[8];

            assert_int_equal(rc, PF_ENOMEM);
            assert_pf_ok(pf_ctx_get_string(ctx, "s", buf, sizeof(buf), NULL));
            assert_string_equal(buf, "text"); /* the old value stands */
        }
        rc = pf_ctx_dup_string(ctx, "s", &dup);
        if (rc == 0) {
            pf_free(dup);
        } else {
            assert_int_equal(rc, PF_ENOMEM);
        }
    }
    rc = pf_ctx_set_ptr(ctx, "p", malloc(4), free);
    if (rc != 0) {
        assert_int_equal(rc, PF_ENOMEM);
    }
    rc = pf_ctx_keys(ctx, PF_CTX_KEYS_ALL, &keys, &n);
    if (rc == 0) {
        pf_free(keys);
    } else {
        assert_int_equal(rc, PF_ENOMEM);
    }
    pf_ctx_free(ctx);
}

static void
test_ctx_survives_allocation_failure(void **state)
{
    (void)state;
    assert_true(pf_test_alloc_sweep(scenario, NULL) > 10);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ctx_int_and_double_round_trip),
        cmocka_unit_test(test_ctx_get_is_strict_about_type_and_presence),
        cmocka_unit_test(test_ctx_rejects_null_and_empty_keys),
        cmocka_unit_test(test_ctx_string_is_copied_in_and_out),
        cmocka_unit_test(test_ctx_bytes_keep_embedded_zeros),
        cmocka_unit_test(
            test_ctx_pointer_destructor_runs_on_replace_remove_and_free),
        cmocka_unit_test(test_ctx_set_ptr_frees_the_value_when_it_fails),
        cmocka_unit_test(test_ctx_take_ptr_hands_ownership_back),
        cmocka_unit_test(test_ctx_outputs_are_marked_and_listed),
        cmocka_unit_test(test_ctx_many_keys_stay_findable_through_removals),
        cmocka_unit_test(
            test_ctx_state_view_functions_are_neutral_outside_a_state),
        cmocka_unit_test(test_ctx_concurrent_threads_never_see_torn_values),
        cmocka_unit_test(test_ctx_survives_allocation_failure),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
