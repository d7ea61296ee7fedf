/* The one periodic thread of the library: a ticker runs a callback at once
 * and then every interval on an object's clock, until stopped. The
 * degradation manager's background sampler and the leak detector's
 * monitoring thread are tickers.
 *
 * Its wait goes through pf__wait_until (wait.h), so on a manual clock the
 * thread parks on the clock (pf_clock_manual_waiters counts it) and ticks
 * when the clock is advanced to the due time; a stop wakes it at once.
 *
 * fork(): every initialised ticker is on one list, and atfork handlers
 * hold each ticker's mutex across the fork. The child has no ticker
 * threads, so its copy of every ticker is stopped (IDLE) with a fresh
 * condition variable: pf__ticker_running says false, pf__ticker_stop
 * returns PF_ESTATE (nothing to join), pf__ticker_start starts a thread of
 * the child's own, pf__ticker_destroy releases it. Ticks never run in the
 * child until it starts the ticker again. */
#ifndef PF_SRC_TICKER_H
#define PF_SRC_TICKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "puffinflow/clock.h"

/* One tick. Runs on the ticker's thread with none of the ticker's locks
 * held. */
typedef void (*pf__tick_fn)(void *arg);

/* clock, interval_ns, fn and arg are immutable after init. state is
 * written under mu and read lock-free by pf__ticker_running; thread is
 * under mu and valid while state is not IDLE. */
typedef struct pf__ticker {
    const pf_clock_t *clock;
    int64_t interval_ns;
    pf__tick_fn fn;
    void *arg;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* wakes the thread's wait when it is stopped */
    _Atomic int state; /* IDLE -> RUNNING -> STOPPING -> IDLE */
    pthread_t thread;
    struct pf__ticker *prev, *next; /* on the fork list, under its lock */
} pf__ticker_t;

/* Prepare t, stopped, to call fn(arg) every interval_ns (> 0; INT64_MAX =
 * only the first tick) on clock (NULL = system). Returns 0, PF_EINVAL
 * (NULL t or fn, interval_ns <= 0) or PF_ESYSTEM; on error nothing needs
 * destroying. Starts no thread. */
int pf__ticker_init(pf__ticker_t *t, const pf_clock_t *clock,
                    int64_t interval_ns, pf__tick_fn fn, void *arg);

/* Start the thread: it ticks at once, then each tick is due interval_ns
 * after the previous one was due (a fixed rate: the time a tick takes
 * does not push the next one back). When a tick ends at or after the time
 * the next was due (it ran late because the clock jumped, or it overran),
 * the ticks missed are not made up in a burst: the next is due
 * interval_ns after that moment. Returns 0,
 * PF_ESTATE if the thread runs or is being stopped, or PF_ESYSTEM if no
 * thread could be created. Thread-safe. */
int pf__ticker_start(pf__ticker_t *t);

/* Stop the thread and join it: a thread waiting for its next tick wakes at
 * once (the clock need not move); a tick in progress is finished first.
 * Returns 0 once the thread has ended, or PF_ESTATE when it was not
 * running, another stop is under way, or the caller is the ticker's own
 * thread (the tick callback, or anything it calls: a join there could
 * never end). Safe from any other thread, provided the caller holds
 * nothing the tick callback may wait for. Blocks until the thread has
 * ended. Thread-safe. */
int pf__ticker_stop(pf__ticker_t *t);

/* True while the thread runs and no stop has begun. A lock-free snapshot.
 * Thread-safe. */
bool pf__ticker_running(const pf__ticker_t *t);

/* Stop t if it runs (as pf__ticker_stop) and release what init made. Not
 * from the tick callback; no other call on t may be running or follow. */
void pf__ticker_destroy(pf__ticker_t *t);

#endif /* PF_SRC_TICKER_H */
