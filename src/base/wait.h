/* The one timed wait of the library: every blocking wait (bulkhead queues,
 * rate-limit and retry delays, timers, token waits) goes through it, so each
 * can run on the system clock or on a manual clock, and each honours a
 * cancellation token. */
#ifndef PF_SRC_WAIT_H
#define PF_SRC_WAIT_H

#include <pthread.h>
#include <stdint.h>

#include "puffinflow/clock.h"
#include "puffinflow/deadline.h"

#include "clock_impl.h" /* pf__cond_init */

/* Wait on cv, with mu held by the caller, until
 *   - cv is signalled (or a spurious wake-up): returns 0;
 *   - clock (NULL = system) reaches deadline_ns (PF_DEADLINE_NEVER_NS =
 *     never), or tok's own deadline passes: returns PF_ETIMEDOUT;
 *   - tok (may be NULL) is cancelled: returns PF_ECANCELED.
 * Returns at once, without waiting, when one of the last two already holds.
 * Like any condition wait, it releases mu while it sleeps and holds it again
 * on return; the caller re-checks its own predicate, which may have become
 * true even when the result is PF_ETIMEDOUT or PF_ECANCELED.
 * cv must come from pf__cond_init. On a manual clock or with a token, mu is
 * also released briefly after waking, so the waker can finish cleanly. */
int pf__wait_until(pthread_cond_t *cv, pthread_mutex_t *mu,
                   const pf_clock_t *clock, int64_t deadline_ns,
                   pf_token_t *tok);

/* The token's effective deadline as a time on clock (NULL = system),
 * converted through the time remaining when the token uses another clock.
 * PF_DEADLINE_NEVER_NS for no token or no deadline. */
int64_t pf__token_deadline_on(const pf_token_t *tok, const pf_clock_t *clock);

#endif /* PF_SRC_WAIT_H */
