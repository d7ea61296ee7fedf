/* The Redis store's rate limiters: decisions on the pool of permits lent
 * by the GCRA script, and the borrowing that refills it. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "puffinflow/error.h"
#include "puffinflow/sync.h"
#include "redis_impl.h"

/* The decision: one permit from the lent pool, or the policy while down.
 * Lock-free. */
static int
hook_take(void *arg, unsigned n)
{
    obj_t *o = arg;
    pf_redis_t *r = o->r;
    int64_t p;

    if (r == NULL) {
        return PF_SYNC_LOCAL;
    }
    p = atomic_load_explicit(&o->pool, memory_order_relaxed);
    while (p >= (int64_t)n) {
        if (atomic_compare_exchange_weak_explicit(&o->pool, &p, p - n,
                                                  memory_order_relaxed,
                                                  memory_order_relaxed)) {
            if (p - (int64_t)n < (int64_t)o->batch) {
                pf__redis_want_more(o);
            }
            return PF_SYNC_GRANT;
        }
    }
    if (!atomic_load_explicit(&r->up, memory_order_relaxed)) {
        if (r->rl_policy == PF_REDIS_CLOSED) {
            pf__redis_count(r, M_CLOSED, 1);
            return PF_SYNC_REFUSE;
        }
        pf__redis_count(r, M_LOCAL, 1);
        return PF_SYNC_LOCAL;
    }
    pf__redis_want_more(o);
    return PF_SYNC_REFUSE;
}

/* Permits given back go back into the pool (lent already). */
static void
hook_give(void *arg, unsigned n)
{
    obj_t *o = arg;

    atomic_fetch_add_explicit(&o->pool, (int64_t)n, memory_order_relaxed);
}

/* The script's answer: the permits lent (at most the two batches asked
 * for) and, when none, the microseconds to wait (at most an hour). */
bool
pf__redis_ratelimit_reply_ok(const redisReply *rep, unsigned batch)
{
    const range_t b[] = {{0, 2 * (long long)batch}, {0, 3600LL * 1000000}};

    return pf__redis_ints_reply(rep, 2, b);
}

static void
on_ratelimit_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    redisReply *rep = reply;
    obj_t *o = pf__redis_script_reply(ac, reply, privdata);
    pf_redis_t *r;

    if (o == NULL || !pf__redis_script_ok(
                         ac, o, pf__redis_ratelimit_reply_ok(rep, o->batch))) {
        return;
    }
    r = o->r;
    if (rep->element[0]->integer > 0) {
        atomic_fetch_add_explicit(&o->pool, rep->element[0]->integer,
                                  memory_order_relaxed);
        pf__redis_count(r, M_BORROWED, (uint64_t)rep->element[0]->integer);
    }
    if (rep->element[1]->integer > 0) {
        o->retry_ns = pf__redis_now(r) + rep->element[1]->integer * 1000;
    }
    if (atomic_load_explicit(&o->pool, memory_order_relaxed) <
        (int64_t)o->batch) {
        atomic_store_explicit(&o->want, true, memory_order_relaxed);
    }
}

void
pf__redis_pump_ratelimit(pf_redis_t *r, obj_t *o, int64_t now, int64_t *due)
{
    char rate[40];
    char burst[16];
    char want[24];
    const char *argv[7];
    int64_t pool;
    int64_t ask;

    if (o->inflight || !atomic_load_explicit(&o->want, memory_order_acquire)) {
        return;
    }
    if (now < o->retry_ns) {
        if (o->retry_ns < *due) {
            *due = o->retry_ns;
        }
        return;
    }
    pool = atomic_load_explicit(&o->pool, memory_order_relaxed);
    ask = 2 * (int64_t)o->batch - pool;
    if (ask <= 0) {
        atomic_store_explicit(&o->want, false, memory_order_relaxed);
        return;
    }
    atomic_store_explicit(&o->want, false, memory_order_release);
    snprintf(rate, sizeof(rate), "%.17g", o->rate);
    snprintf(burst, sizeof(burst), "%u", o->burst);
    snprintf(want, sizeof(want), "%lld", (long long)ask);
    argv[0] = "EVALSHA";
    argv[1] = r->sha[SCRIPT_RATELIMIT];
    argv[2] = "1";
    argv[3] = o->key;
    argv[4] = rate;
    argv[5] = burst;
    argv[6] = want;
    if (redisAsyncCommandArgv(r->cmd->ac, on_ratelimit_reply, o, 7, argv,
                              NULL) != REDIS_OK) {
        atomic_store_explicit(&o->want, true, memory_order_relaxed);
        return;
    }
    o->inflight = true;
    o->retry_ns = 0;
    if (r->cmd->outstanding++ == 0) {
        r->cmd->progress_ns = now;
    }
    pf__redis_count(r, M_COMMANDS, 1);
}

int
pf_redis_ratelimit_new(pf_redis_t *r, const pf_ratelimit_config_t *cfg,
                       pf_ratelimit_t **out)
{
    pf_ratelimit_config_t c;
    pf_sync_t sync;
    pf_ratelimit_t *rl;
    obj_t *o;
    int rc;

    if (cfg == NULL || out == NULL) {
        return PF_EINVAL;
    }
    rc = pf__redis_obj_begin(r, OBJ_RATELIMIT, cfg->name,
                             cfg->shared != NULL || cfg->sync != NULL, &sync,
                             &o);
    if (rc != 0) {
        return rc;
    }
    sync.take = hook_take;
    sync.give = hook_give;
    c = *cfg;
    c.sync = &sync;
    rc = pf_ratelimit_new(&c, &rl);
    if (rc != 0) {
        pf__redis_obj_free(o);
        return rc;
    }
    o->rate = cfg->rate;
    o->burst = cfg->burst;
    /* A batch of 1/200 s of the rate (at least 1, at most the burst): it
     * lasts several round trips at full demand, and what sits unused in
     * every process's pool stays a small part of the rate. */
    o->batch = (unsigned)ceil(cfg->rate / 200.0);
    if (o->batch < 1) {
        o->batch = 1;
    }
    if (o->batch > cfg->burst) {
        o->batch = cfg->burst;
    }
    atomic_init(&o->pool, 0);
    atomic_init(&o->want, true);
    pthread_mutex_lock(&r->mu);
    pf__redis_obj_publish(r, o);
    *out = rl;
    return 0;
}
