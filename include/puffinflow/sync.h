/* puffinflow — the hook through which a store outside the process keeps a
 * breaker, a rate limiter, a bulkhead or a retry budget in step with other
 * processes.
 *
 * A pattern whose config points to a pf_sync_t still decides every call
 * locally; the hook's owner (integrations/redis: puffinflow/redis.h) is
 * told of what the object does and feeds back what other processes did.
 * Most programs never fill one in themselves: the store's constructors do
 * (pf_redis_breaker_new, pf_redis_ratelimit_new, pf_redis_bulkhead_new,
 * pf_redis_retry_budget_new).
 * The hook's functions run on the calling thread of the pattern's own
 * call and must never block: note, wake a background thread, return.
 * docs/shared.md, "Redis". */
#ifndef PUFFINFLOW_SYNC_H
#define PUFFINFLOW_SYNC_H

#include <stdint.h>

#include "puffinflow/export.h"

#ifdef __cplusplus
extern "C" {
#endif

struct pf_breaker;

/* What a sync take answers (pf_sync_t.take). */
enum {
    PF_SYNC_GRANT = 1,  /* the store's share allows it: take it */
    PF_SYNC_REFUSE = 0, /* the store's share does not: refuse */
    PF_SYNC_LOCAL = -1  /* the store cannot say (down): decide locally */
};

/* Every function may be NULL (not used). The struct is read by the
 * pattern's _new and copied; arg is passed back to every function. */
typedef struct pf_sync {
    /* Breakers: told of every change of state this process makes (not of
     * one applied with pf_breaker_sync_apply), with the open period in ns
     * when to is OPEN (INT64_MAX = held open), under the breaker's lock:
     * it must not call into the breaker. */
    void (*breaker_changed)(void *arg, struct pf_breaker *b, int from,
                            int to, int64_t open_ns);
    /* Rate limiters: asked before each decision for n permits; answers
     * PF_SYNC_GRANT, PF_SYNC_REFUSE or PF_SYNC_LOCAL (then the local
     * bucket decides alone). Bulkheads: asked for one place after a local
     * slot was taken; PF_SYNC_REFUSE gives the slot back (PF_EFULL), the
     * other answers admit. Lock-free on the caller's side. */
    int (*take)(void *arg, unsigned n);
    /* Rate limiters: n permits granted by take are given back
     * (pf_ratelimit_refund). Bulkheads: one admitted call leaves (told
     * for every leave of an admitted call, whatever take answered). */
    void (*give)(void *arg, unsigned n);
    /* Told once, from the pattern's _free, before the object goes: after
     * it returns, the owner must not touch the object. */
    void (*detach)(void *arg);
    void *arg;
    /* Retry budgets: the other processes' calls and retries in their
     * windows, added to this process's own before each withdrawal and in
     * the metrics (0 and 0 when the store knows none). Lock-free on the
     * caller's side; may be called under the budget's lock. */
    void (*budget_others)(void *arg, uint64_t *calls, uint64_t *retries);
} pf_sync_t;

#ifdef __cplusplus
}
#endif

#endif /* PUFFINFLOW_SYNC_H */
