/* Shared by every test program: cmocka (with the headers it needs first),
 * assertion helpers that print pf_strerror, a manual-clock fixture, a
 * counting allocator for the allocation-failure sweep, and thread helpers. */
#ifndef PF_TESTS_TEST_H
#define PF_TESTS_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "puffinflow/alloc.h"
#include "puffinflow/clock.h"
#include "puffinflow/error.h"

#define NS_PER_SEC PF_NS_PER_SEC
#define NS_PER_MS PF_NS_PER_MS

/* Assert expr returns 0; on failure print the code and its meaning. */
#define assert_pf_ok(expr)                                                     \
    do {                                                                       \
        int rc_ = (expr);                                                      \
        if (rc_ != 0) {                                                        \
            fail_msg("%s returned %d (%s)", #expr, rc_, pf_strerror(rc_));     \
        }                                                                      \
    } while (0)

/* Assert expr returns exactly code. */
#define assert_pf_err(expr, code)                                              \
    do {                                                                       \
        int rc_ = (expr);                                                      \
        int want_ = (code);                                                    \
        if (rc_ != want_) {                                                    \
            fail_msg("%s returned %d (%s), expected %d (%s)", #expr, rc_,      \
                     pf_strerror(rc_), want_, pf_strerror(want_));             \
        }                                                                      \
    } while (0)

/* cmocka setup/teardown: *state is a fresh manual clock (pf_clock_t *). */
int pf_test_clock_setup(void **state);
int pf_test_clock_teardown(void **state);

/* A cmocka test entry whose *state is a fresh manual clock. Test files
 * with long lists may alias it: #define T(name) CLOCK_TEST(name). */
#define CLOCK_TEST(f)                                                          \
    cmocka_unit_test_setup_teardown(f, pf_test_clock_setup,                    \
                                    pf_test_clock_teardown)

/* A user's own failure codes, as a call would return them (positive, so
 * never a PF_E* code): one the tests' breakers count as a failure, one
 * they are configured to ignore. */
/* PF_TEST_FORK_UNSAFE: the sanitizer runtime cannot survive a fork() taken
 * while other threads of the process may be inside it. TSan does not
 * support threads started after fork(); gcc 12's ASan does not lock its
 * allocator across fork(), so a child forked while another thread frees
 * memory can hang inside ASan (seen: a grandchild stuck in the allocator's
 * lock). Tests that fork a process with live library threads skip under
 * both; the plain build runs them (glibc's malloc is fork-safe). */
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define PF_TEST_FORK_UNSAFE 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define PF_TEST_FORK_UNSAFE 1
#endif
#endif

#define CONN_ERR 111
#define VALUE_ERR 22

/* ---- counting allocator ---------------------------------------------- */

/* Install the counting allocator (pf_set_allocator). Idempotent. */
void pf_test_alloc_install(void);
/* Put libc's allocator back. */
void pf_test_alloc_uninstall(void);
/* Allocations made through the library and not yet freed. */
long pf_test_alloc_live(void);
/* Allocations made since install. */
long pf_test_alloc_count(void);
/* Make the k-th allocation from now fail (k >= 1), and only that one;
 * 0 disables failing. */
void pf_test_alloc_fail_at(long k);
/* True if an allocation was made to fail since the last fail_at. */
bool pf_test_alloc_failed(void);

/* The allocation-failure sweep every module runs. Calls scenario(arg) with
 * the 1st allocation failing, then the 2nd, and so on, until a run makes no
 * failing allocation (that last run is the success path). After each run it
 * asserts that no allocation is left live: the scenario must free all it
 * made, and each call it makes must return PF_ENOMEM (or succeed) and leave
 * every object usable; the scenario asserts that. Installs the counting
 * allocator and uninstalls it after. Returns how many runs it made. */
long pf_test_alloc_sweep(void (*scenario)(void *arg), void *arg);

/* ---- threads ---------------------------------------------------------- */

/* Run fn(arg, i) on n threads at once (started together) and join them. */
void pf_test_run_threads(unsigned n, void (*fn)(void *arg, unsigned i),
                         void *arg);

/* Spin (yielding) until manual clock c has at least n waiters. Fails the
 * test if that takes more than 30 s of real time: a safety net for a hung
 * test, never a timing assertion. */
void pf_test_wait_for_waiters(const pf_clock_t *c, size_t n);

/* Spin (yielding) until *flag (an atomic int) reaches at least value, with
 * the same 30 s safety net. */
void pf_test_wait_for_flag(const void *atomic_int_flag, int value);

#endif /* PF_TESTS_TEST_H */
