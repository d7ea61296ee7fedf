/* puffinflow — breakers, rate limiters, bulkheads and retry budgets
 * shared across hosts through Redis (library puffinflow-redis, built when
 * hiredis is present).
 *
 * A store (pf_redis_t) holds two connections to one Redis server, driven
 * by hiredis's asynchronous API on an executor's reactor: one for
 * commands, one subscribed to the store's channel. Objects made through
 * it are the normal pf_breaker_t, pf_ratelimit_t, pf_bulkhead_t and
 * pf_retry_budget_t (registries, agents and metrics take them as they
 * are); every call on them decides on local state, in nanoseconds, and
 * never waits on the network. The store keeps that local state in step in
 * the background:
 *
 * - Breakers: each change of state this process makes is sent at once to
 *   an atomic server-side script (EVALSHA), which keeps the state with a
 *   generation: a change made on a stale generation loses, and the
 *   process takes the stored state instead. A change that wins is
 *   PUBLISHed, so other processes apply it within milliseconds, not at
 *   their next sync. Every sync interval each breaker compares its
 *   generation with Redis's; a Redis restarted empty is re-seeded from
 *   the processes' views (the highest generation wins: an open breaker
 *   stays open).
 * - Rate limiters: one GCRA bucket in Redis (the rate and burst of the
 *   limiter's config) lends each process permits in small batches ahead
 *   of use; a decision takes one from the local batch (one atomic), and a
 *   batch running low asks for the next in the background. The total over
 *   all processes stays within the rate (plus two batches per process).
 * - Bulkheads: Redis keeps a lease per process (a count of places, an
 *   expiry, a fencing token); the process asks for what it uses plus a
 *   little headroom, and an admission takes a leased place locally.
 *   pf_redis_bulkhead_new says more.
 * - Retry budgets: each process reports its window's calls and retries
 *   every sync interval and adds the others' to its own when deciding.
 *
 * When Redis is down, slow (a command unanswered for command_timeout) or
 * answers something malformed, the store drops the connection, counts it,
 * tells the listener, and reconnects every sync interval; meanwhile each
 * object follows its policy: a breaker keeps deciding on its local state
 * (it never fails closed: a Redis outage must not become an outage of
 * every dependency), a rate limiter falls back to its local bucket alone
 * (PF_REDIS_LOCAL, the default) or refuses every call (PF_REDIS_CLOSED),
 * a bulkhead admits on its lease while that is still good, then does the
 * same by its own policy, and a retry budget counts this process alone.
 * On reconnecting, breakers resynchronise first thing.
 *
 * TLS: hiredis before 1.0 (the one this library builds against has no
 * hiredis_ssl) cannot encrypt; a config asking for TLS is refused with
 * PF_ENOTSUP rather than silently sent in clear. AUTH (a password, or a
 * user and password for Redis 6 ACLs) and SELECT are sent on connecting.
 * docs/shared.md says which store to choose and what each costs. */
#ifndef PUFFINFLOW_REDIS_H
#define PUFFINFLOW_REDIS_H

#include <stdbool.h>
#include <stdint.h>

#include "puffinflow/breaker.h"
#include "puffinflow/bulkhead.h"
#include "puffinflow/executor.h"
#include "puffinflow/export.h"
#include "puffinflow/ratelimit.h"
#include "puffinflow/retry.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pf_redis pf_redis_t; /* opaque */

/* What a rate limiter or a bulkhead does while Redis cannot answer (a
 * bulkhead: once its lease has expired here, or while it has none). */
typedef enum pf_redis_policy {
    PF_REDIS_LOCAL, /* the object alone decides, as if in-process: a
                       limiter's own bucket (its rate and burst), a
                       bulkhead's own max_concurrent_calls. Each process
                       then gets the whole rate or limit */
    PF_REDIS_CLOSED /* refuse every call (PF_ERATELIMIT, PF_EFULL) */
} pf_redis_policy_t;

/* What the store tells its listener. */
typedef enum pf_redis_event {
    PF_REDIS_UP,        /* connected, authenticated, scripts loaded */
    PF_REDIS_DOWN,      /* the connection failed or was dropped */
    PF_REDIS_BAD_REPLY, /* a reply of the wrong type or shape: dropped */
    PF_REDIS_TIMEOUT,   /* a command or connect took too long: dropped */
    PF_REDIS_RESEEDED   /* this process wrote its view into an empty Redis */
} pf_redis_event_t;

/* Told of store events, on an executor worker, with the store's lock
 * held: it must not call pf_redis_* functions. detail is a short English
 * text (hiredis's error, the object's name), valid during the call. */
typedef void (*pf_redis_listener_fn)(pf_redis_event_t ev, const char *detail,
                                     void *arg);

typedef struct pf_redis_config {
    pf_executor_t *executor; /* runs the connections; required (NULL is
                                PF_EINVAL) */
    const char *host;        /* copied; default "127.0.0.1" */
    int port;                /* 1..65535; default 6379 */
    const char *unix_socket; /* copied; a path instead of host and port;
                                NULL (default) = TCP */
    const char *user;        /* copied; AUTH user (Redis 6 ACL); NULL
                                (default) = AUTH with the password alone */
    const char *password;    /* copied; NULL (default) = no AUTH */
    int db;                  /* SELECT'ed when not 0; 0..10000; default 0 */
    /* Keys and the channel start with "<prefix>:"; copied; 1..64
     * characters of A-Z a-z 0-9 . _ - : {}; default "puffinflow". */
    const char *prefix;
    double sync_interval;   /* seconds between reconciliations and
                               reconnects; (0, 60]; default 0.1 */
    double connect_timeout; /* seconds; > 0; default 1 */
    double command_timeout; /* seconds a command may stay unanswered
                               before the connection is dropped; > 0;
                               default 0.5 */
    bool tls;                /* PF_ENOTSUP: see the top of the file */
    pf_redis_policy_t ratelimit_policy; /* default PF_REDIS_LOCAL */
    pf_redis_policy_t bulkhead_policy;  /* default PF_REDIS_LOCAL */
    /* Seconds a bulkhead lease lasts without renewal (renewed every
     * sync_interval): places held by a process that died or lost Redis
     * come back to the others after it. > 2 x sync_interval; default 5. */
    double lease_ttl;
    pf_redis_listener_fn listener;      /* NULL (default) = none */
    void *listener_arg;
} pf_redis_config_t;

typedef struct pf_redis_metrics {
    bool up;                 /* connected and ready now */
    uint64_t connects;       /* connections made ready */
    uint64_t disconnects;    /* ready connections lost or dropped */
    uint64_t connect_failures; /* attempts that never became ready */
    uint64_t timeouts;       /* commands or connects that took too long */
    uint64_t bad_replies;    /* replies of the wrong type or shape */
    uint64_t commands;       /* commands sent */
    uint64_t replies;        /* ... answered (commands - replies are out,
                                or were lost with a connection) */
    uint64_t transitions_sent;  /* breaker changes sent */
    uint64_t transitions_lost;  /* ... refused as stale: stored state taken */
    uint64_t remote_applied; /* changes of other processes applied */
    uint64_t pushes;         /* published changes received */
    uint64_t reseeds;        /* views written into a Redis that lacked them */
    uint64_t permits_borrowed; /* rate-limit permits lent by Redis */
    uint64_t local_decisions;  /* limiter decisions taken while down */
    uint64_t closed_refusals;  /* ... refused by PF_REDIS_CLOSED */
    uint64_t leases_lost;      /* bulkhead leases found gone (new token) */
    uint64_t leases_expired;   /* ... expired here before a renewal */
} pf_redis_metrics_t;

/* Fill cfg with the defaults above. NULL is a no-op. */
PF_API void pf_redis_config_init(pf_redis_config_t *cfg);

/* Create a store and start connecting (in the background: Redis need not
 * be up). Returns 0 and stores it in *out; PF_EINVAL for a NULL argument
 * or a bad field; PF_ENOTSUP for tls; PF_ENOMEM; PF_ESTATE while the
 * executor is being freed. On error nothing is created. cfg is not kept;
 * the executor must outlive the store. Thread-safe. */
PF_API int pf_redis_new(const pf_redis_config_t *cfg, pf_redis_t **out);

/* Close the connections and destroy r; NULL is a no-op. Every object made
 * through r must have been freed first. Must not be called from one of
 * the executor's threads (it waits for the store's pending callbacks to
 * end). */
PF_API void pf_redis_free(pf_redis_t *r);

/* Create a breaker (pf_breaker_new's rules; cfg->shared and cfg->sync
 * must be NULL) kept in step through r under the key
 * "<prefix>:breaker:<name>". Every process sharing it must use the same
 * name; its thresholds and periods are each process's own (the state and
 * the open period's end are shared; half-open trials are per process).
 * The name must be 1..200 printable characters without '|' or spaces.
 * Its listener hears of other processes' changes on one of the
 * executor's workers, with the store's lock held: it may call the
 * breaker (not pf_breaker_free) but no pf_redis_* function.
 * Returns 0, PF_EINVAL, PF_ENOMEM or PF_ESYSTEM. Free it with
 * pf_breaker_free, before r. Thread-safe. */
PF_API int pf_redis_breaker_new(pf_redis_t *r, const pf_breaker_config_t *cfg,
                                pf_breaker_t **out);

/* Create a rate limiter (pf_ratelimit_new's rules; cfg->shared and
 * cfg->sync must be NULL) whose rate and burst hold for every process
 * using the same name through the same Redis, under the key
 * "<prefix>:ratelimit:<name>". Every process must give the same rate and
 * burst. Decisions never wait (see ratelimit.h, field sync). Name rules,
 * returns and freeing as pf_redis_breaker_new. */
PF_API int pf_redis_ratelimit_new(pf_redis_t *r,
                                  const pf_ratelimit_config_t *cfg,
                                  pf_ratelimit_t **out);

/* Create a bulkhead (pf_bulkhead_new's rules; cfg->shared and cfg->sync
 * must be NULL) whose max_concurrent_calls holds for every process using
 * the same name through the same Redis, under the keys
 * "<prefix>:bulkhead:<name>" (the leases) and "...:fence". Every process
 * must give the same limit. The store holds a lease on some of the limit
 * for this process (the places in use plus a little headroom, renewed
 * every sync interval, expiring after lease_ttl), and an admission takes
 * one of those places locally: no call waits on the network. A request
 * for places sets this process's count (it never adds to it), so one
 * that timed out and ran late takes nothing that is not given back; a
 * lease that expired in Redis comes back with a new fencing token and
 * this process then admits nothing beyond what it is granted again. Such
 * a bulkhead never queues (enter refuses at once with PF_EFULL). Freeing
 * it gives its places back at once (when connected). Name rules, returns
 * and freeing as pf_redis_breaker_new. */
PF_API int pf_redis_bulkhead_new(pf_redis_t *r,
                                 const pf_bulkhead_config_t *cfg,
                                 pf_bulkhead_t **out);

/* Create a retry budget (pf_retry_budget_new's rules; cfg->shared and
 * cfg->sync must be NULL) whose allowance counts the calls and retries of
 * every process using the same name through the same Redis, under the
 * key "<prefix>:retry_budget:<name>": every sync interval each process
 * reports its window's counts and learns the others'; a withdrawal adds
 * those (at most a sync interval old) to its own, locally. So a retry
 * storm is bounded across the fleet (min_retries_per_sec is the fleet's
 * reserve, not each process's), give or take what the processes withdraw
 * within one sync interval. While Redis cannot answer, the budget counts
 * this process alone. Every process must give the same ratio, reserve and
 * window. Name rules, returns and freeing as pf_redis_breaker_new. */
PF_API int pf_redis_retry_budget_new(pf_redis_t *r,
                                     const pf_retry_budget_config_t *cfg,
                                     pf_retry_budget_t **out);

/* Fill *out with a snapshot of r. NULL r or out: no-op. Thread-safe. */
PF_API void pf_redis_metrics(pf_redis_t *r, pf_redis_metrics_t *out);

#ifdef __cplusplus
}
#endif

#endif /* PUFFINFLOW_REDIS_H */
