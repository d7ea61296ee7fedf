/* Helpers shared by the test programs (see test.h). */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "test.h"

int
pf_test_clock_setup(void **state)
{
    pf_clock_t *c = NULL;

    if (pf_clock_manual_new(&c) != 0) {
        return -1;
    }
    *state = c;
    return 0;
}

int
pf_test_clock_teardown(void **state)
{
    pf_clock_free(*state);
    return 0;
}

/* ---- counting allocator ---------------------------------------------- */

static atomic_long g_live;
static atomic_long g_count;
static atomic_long g_fail_countdown; /* 0 = never fail */
static atomic_bool g_failed;

/* True if this allocation is the one chosen to fail. */
static bool
should_fail(void)
{
    long n = atomic_load(&g_fail_countdown);

    atomic_fetch_add(&g_count, 1);
    while (n > 0) {
        if (atomic_compare_exchange_weak(&g_fail_countdown, &n, n - 1)) {
            if (n == 1) {
                atomic_store(&g_failed, true);
                return true;
            }
            return false;
        }
    }
    return false;
}

static void *
counting_malloc(size_t size)
{
    void *p;

    if (should_fail()) {
        return NULL;
    }
    p = malloc(size);
    if (p != NULL) {
        atomic_fetch_add(&g_live, 1);
    }
    return p;
}

static void *
counting_calloc(size_t n, size_t size)
{
    void *p;

    if (should_fail()) {
        return NULL;
    }
    p = calloc(n, size);
    if (p != NULL) {
        atomic_fetch_add(&g_live, 1);
    }
    return p;
}

static void *
counting_realloc(void *old, size_t size)
{
    void *p;

    if (should_fail()) {
        return NULL;
    }
    p = realloc(old, size);
    if (p != NULL && old == NULL) {
        atomic_fetch_add(&g_live, 1);
    }
    return p;
}

static void
counting_free(void *p)
{
    if (p != NULL) {
        atomic_fetch_sub(&g_live, 1);
        free(p);
    }
}

void
pf_test_alloc_install(void)
{
    pf_set_allocator(counting_malloc, counting_realloc, counting_calloc,
                     counting_free);
}

void
pf_test_alloc_uninstall(void)
{
    pf_set_allocator(NULL, NULL, NULL, NULL);
}

long
pf_test_alloc_live(void)
{
    return atomic_load(&g_live);
}

long
pf_test_alloc_count(void)
{
    return atomic_load(&g_count);
}

void
pf_test_alloc_fail_at(long k)
{
    atomic_store(&g_failed, false);
    atomic_store(&g_fail_countdown, k < 0 ? 0 : k);
}

bool
pf_test_alloc_failed(void)
{
    return atomic_load(&g_failed);
}

long
pf_test_alloc_sweep(void (*scenario)(void *arg), void *arg)
{
    long k;

    pf_test_alloc_install();
    for (k = 1; k < 1000000; k++) {
        long live0 = pf_test_alloc_live();
        bool failed;

        pf_test_alloc_fail_at(k);
        scenario(arg);
        failed = pf_test_alloc_failed();
        pf_test_alloc_fail_at(0);
        if (pf_test_alloc_live() != live0) {
            fail_msg("allocation sweep: %ld allocation(s) leaked when "
                     "allocation %ld failed",
                     pf_test_alloc_live() - live0, k);
        }
        if (!failed) {
            break;
        }
    }
    pf_test_alloc_uninstall();
    return k;
}

/* ---- threads ---------------------------------------------------------- */

typedef struct thread_arg {
    void (*fn)(void *arg, unsigned i);
    void *arg;
    unsigned i;
    atomic_uint *ready;
    unsigned n;
} thread_arg_t;

static void *
thread_main(void *p)
{
    thread_arg_t *ta = p;

    /* Start together: every thread waits until all have been created. */
    atomic_fetch_add(ta->ready, 1);
    while (atomic_load(ta->ready) < ta->n) {
        sched_yield();
    }
    ta->fn(ta->arg, ta->i);
    return NULL;
}

void
pf_test_run_threads(unsigned n, void (*fn)(void *arg, unsigned i), void *arg)
{
    pthread_t *tids = calloc(n, sizeof(*tids));
    thread_arg_t *args = calloc(n, sizeof(*args));
    atomic_uint ready = 0;
    unsigned i;

    assert_non_null(tids);
    assert_non_null(args);
    for (i = 0; i < n; i++) {
        args[i] = (thread_arg_t){fn, arg, i, &ready, n};
        assert_int_equal(pthread_create(&tids[i], NULL, thread_main, &args[i]),
                         0);
    }
    for (i = 0; i < n; i++) {
        pthread_join(tids[i], NULL);
    }
    free(args);
    free(tids);
}

static int64_t
real_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS_PER_SEC + ts.tv_nsec;
}

void
pf_test_wait_for_waiters(const pf_clock_t *c, size_t n)
{
    int64_t give_up = real_now_ns() + 30 * NS_PER_SEC;

    while (pf_clock_manual_waiters(c) < n) {
        if (real_now_ns() > give_up) {
            fail_msg("gave up waiting for %zu waiter(s) on the manual clock",
                     n);
        }
        sched_yield();
    }
}

void
pf_test_wait_for_flag(const void *atomic_int_flag, int value)
{
    const atomic_int *flag = atomic_int_flag;
    int64_t give_up = real_now_ns() + 30 * NS_PER_SEC;

    while (atomic_load(flag) < value) {
        if (real_now_ns() > give_up) {
            fail_msg("gave up waiting for a flag to reach %d", value);
        }
        sched_yield();
    }
}
