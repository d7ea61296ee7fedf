/* puffinflow — deadlines and cancellation tokens.
 *
 * A deadline is an absolute time on a clock, kept in caller memory. A
 * cancellation token is a shared flag that work checks and waits watch: when
 * it is cancelled, every wait given the token returns PF_ECANCELED at once,
 * and callbacks registered on it run. Tokens form trees: cancelling a parent
 * cancels its children, and a child's deadline is never later than its
 * parent's. */
#ifndef PUFFINFLOW_DEADLINE_H
#define PUFFINFLOW_DEADLINE_H

#include <stdbool.h>
#include <stdint.h>

#include "puffinflow/clock.h"
#include "puffinflow/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- deadlines -------------------------------------------------------- */

/* An absolute time on a clock. Caller-owned; copy it freely. The clock must
 * outlive the deadline's use. */
typedef struct pf_deadline {
    const pf_clock_t *priv_clock; /* NULL = system monotonic clock */
    int64_t priv_at_ns;           /* PF_DEADLINE_NEVER_NS = no deadline */
} pf_deadline_t;

/* priv_at_ns of a deadline that never expires. */
#define PF_DEADLINE_NEVER_NS INT64_MAX

/* A deadline `seconds` from now on clock c (NULL = system). Infinity gives
 * no deadline; zero, negative or NaN seconds give a deadline that has
 * already passed (fail safe). Never blocks. Thread-safe. */
PF_API pf_deadline_t pf_deadline_in(const pf_clock_t *c, double seconds);

/* The same, with nanoseconds. */
PF_API pf_deadline_t pf_deadline_in_ns(const pf_clock_t *c, int64_t ns);

/* A deadline at absolute time at_ns of clock c. */
PF_API pf_deadline_t pf_deadline_at_ns(const pf_clock_t *c, int64_t at_ns);

/* A deadline that never expires (on the system clock). */
PF_API pf_deadline_t pf_deadline_none(void);

/* True when d never expires. NULL counts as no deadline. */
PF_API bool pf_deadline_is_none(const pf_deadline_t *d);

/* Seconds left before d, >= 0; INFINITY for no deadline (or NULL). Reads
 * the clock once. Thread-safe. */
PF_API double pf_deadline_remaining(const pf_deadline_t *d);

/* Nanoseconds left before d, >= 0; INT64_MAX for no deadline (or NULL). */
PF_API int64_t pf_deadline_remaining_ns(const pf_deadline_t *d);

/* True once d's clock has reached d (a deadline is expired at its exact
 * instant). False for no deadline or NULL. Thread-safe. */
PF_API bool pf_deadline_expired(const pf_deadline_t *d);

/* The same check with a coarse clock read (CLOCK_MONOTONIC_COARSE, about
 * 5 ns against about 25 ns for pf_deadline_expired here): it never reports
 * expiry early, since the coarse clock never runs ahead of the precise one,
 * but may report it up to one kernel tick (typically 4 ms) late. For work
 * polling a deadline counted in seconds in a tight loop. Exact on a manual
 * clock. Thread-safe. */
PF_API bool pf_deadline_expired_coarse(const pf_deadline_t *d);

/* The earlier of a and b (NULL counts as no deadline). Deadlines on two
 * different clocks are compared by time remaining, read once from each. */
PF_API pf_deadline_t pf_deadline_earlier(const pf_deadline_t *a,
                                         const pf_deadline_t *b);

/* ---- cancellation tokens ---------------------------------------------- */

typedef struct pf_token pf_token_t; /* opaque */

/* A callback run when a token is cancelled. */
typedef void (*pf_token_fn)(void *arg);

/* A registration of a callback on a token: caller memory that must stay put
 * until the callback has run or been unregistered. Fields are private. */
typedef struct pf_token_reg {
    struct pf_token_reg *priv_next;
    struct pf_token_reg *priv_prev;
    pf_token_fn priv_fn;
    void *priv_arg;
    pf_token_t *priv_token;
    int priv_linked;
} pf_token_reg_t;

/* Create a token, not cancelled. parent (may be NULL): cancelling it cancels
 * the new token too, and a parent already cancelled gives a token born
 * cancelled. deadline (may be NULL = none) bounds every wait given the token;
 * the token's effective deadline is the earlier of its own and its parent's.
 * Reaching the deadline does not cancel the token: waits given it end with
 * PF_ETIMEDOUT, and work polls pf_token_deadline.
 * The token keeps its parent alive: a parent may be freed before its
 * children. Returns 0 and stores the token in *out, PF_EINVAL (out NULL) or
 * PF_ENOMEM / PF_ESYSTEM; on error *out is untouched. Thread-safe. */
PF_API int pf_token_new(pf_token_t *parent, const pf_deadline_t *deadline,
                        pf_token_t **out);

/* Release the caller's reference; NULL is a no-op. No wait on t, no
 * registration on t and no pf_token_cancel(t) may be pending, and a
 * callback of t must not drop t's last reference. Children keep working. */
PF_API void pf_token_free(pf_token_t *t);

/* Cancel t and all its descendants: waits given them return PF_ECANCELED,
 * and every registered callback runs once, on the calling thread, with no
 * lock held. Cancelling twice is a no-op. NULL is a no-op. Thread-safe. */
PF_API void pf_token_cancel(pf_token_t *t);

/* True once t (or an ancestor) has been cancelled. One atomic load: cheap
 * enough to poll in a loop. False for NULL. Thread-safe. */
PF_API bool pf_token_is_cancelled(const pf_token_t *t);

/* The token's effective deadline (none for NULL). Thread-safe. */
PF_API pf_deadline_t pf_token_deadline(const pf_token_t *t);

/* Block until t is cancelled (PF_ECANCELED), or the earlier of d and the
 * token's deadline passes (PF_ETIMEDOUT). d may be NULL (no deadline of its
 * own). PF_EINVAL if t is NULL. Blocks up to the deadline. Thread-safe. */
PF_API int pf_token_wait(pf_token_t *t, const pf_deadline_t *d);

/* Register fn(arg) to run when t is cancelled. Returns 0, PF_ECANCELED if t
 * is already cancelled (fn is not called and reg is not registered), or
 * PF_EINVAL for a NULL argument. reg is caller memory, untouched by the
 * library after the callback ran or pf_token_unregister returned.
 * Thread-safe. */
PF_API int pf_token_on_cancel(pf_token_t *t, pf_token_reg_t *reg,
                              pf_token_fn fn, void *arg);

/* Remove a registration. If its callback is running on another thread right
 * now, waits until it has returned, so afterwards fn certainly does not run
 * and reg may be reused. Safe to call from within the callback itself, and
 * on a registration that already ran or was never made (no-op), as long as
 * the token it was made on has not been freed. Thread-safe. */
PF_API void pf_token_unregister(pf_token_reg_t *reg);

#ifdef __cplusplus
}
#endif

#endif /* PUFFINFLOW_DEADLINE_H */
