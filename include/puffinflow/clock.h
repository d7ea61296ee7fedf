/* puffinflow — clocks.
 *
 * Everything in puffinflow that measures time reads it from a pf_clock_t given
 * in the object's config (NULL = the system monotonic clock). Tests give a
 * manual clock instead and move time by hand: every wait the library does
 * (bulkhead queues, rate-limit and retry delays, timers, token waits) wakes
 * when a manual clock is advanced past its deadline, so time logic is tested
 * with no sleeps. Times are int64_t nanoseconds since an arbitrary origin;
 * a manual clock starts at 0. */
#ifndef PUFFINFLOW_CLOCK_H
#define PUFFINFLOW_CLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "puffinflow/export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pf_clock pf_clock_t; /* opaque */

#define PF_NS_PER_SEC INT64_C(1000000000)
#define PF_NS_PER_MS INT64_C(1000000)
#define PF_NS_PER_US INT64_C(1000)

/* The system monotonic clock (CLOCK_MONOTONIC). A static object: never free
 * it (pf_clock_free ignores it). Thread-safe. */
PF_API const pf_clock_t *pf_clock_system(void);

/* Create a manual clock reading 0 ns. Returns 0 and stores it in *out,
 * PF_EINVAL if out is NULL, or PF_ENOMEM / PF_ESYSTEM; on error *out is
 * untouched. Thread-safe. */
PF_API int pf_clock_manual_new(pf_clock_t **out);

/* Move a manual clock forward by ns nanoseconds and wake every wait on it
 * whose deadline has now passed. ns <= 0, NULL, or the system clock: no-op.
 * The time saturates at INT64_MAX - 1. Thread-safe; it may be called from
 * any thread, including while other threads wait on the clock. */
PF_API void pf_clock_manual_advance(pf_clock_t *c, int64_t ns);

/* Move a manual clock forward to at_ns (never backward: an earlier at_ns is a
 * no-op). Thread-safe. */
PF_API void pf_clock_manual_set(pf_clock_t *c, int64_t at_ns);

/* How many threads are blocked right now in a wait on manual clock c (0 for
 * any other clock). For tests that must know a thread is parked before they
 * move time or release it: no sleeps needed. Thread-safe. */
PF_API size_t pf_clock_manual_waiters(const pf_clock_t *c);

/* Destroy a manual clock; NULL and the system clock are no-ops. No object
 * using the clock may outlive it, and nothing may be waiting on it. */
PF_API void pf_clock_free(pf_clock_t *c);

/* The clock's time in nanoseconds; NULL = the system monotonic clock.
 * Never blocks. Thread-safe. */
PF_API int64_t pf_clock_now_ns(const pf_clock_t *c);

/* The same as pf_clock_now_ns, in seconds. */
PF_API double pf_clock_now(const pf_clock_t *c);

/* True for a clock made by pf_clock_manual_new. */
PF_API bool pf_clock_is_manual(const pf_clock_t *c);

/* Block the calling thread for seconds on clock c (NULL = system): on a
 * manual clock, until the clock has been advanced by that much. Returns 0, or
 * PF_EINVAL for NaN or negative seconds. Blocks up to `seconds`. */
PF_API int pf_clock_sleep(const pf_clock_t *c, double seconds);

/* Wall-clock time (CLOCK_REALTIME) in nanoseconds since the Unix epoch, for
 * timestamps shown to people; never used to measure durations. */
PF_API int64_t pf_wall_time_ns(void);

#ifdef __cplusplus
}
#endif

#endif /* PUFFINFLOW_CLOCK_H */
