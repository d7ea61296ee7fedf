/* The Redis store's retry budgets: each process's window reported every
 * sync interval, the others' learned and added to its own. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "puffinflow/error.h"
#include "puffinflow/sync.h"
#include "redis_impl.h"

/* The others' window counts, as last learned; none while Redis cannot
 * answer (the budget then counts this process alone). Lock-free. */
static void
hook_budget_others(void *arg, uint64_t *calls, uint64_t *retries)
{
    obj_t *o = arg;

    if (o->r == NULL || !atomic_load_explicit(&o->r->up, memory_order_relaxed)) {
        return;
    }
    *calls = atomic_load_explicit(&o->others_calls, memory_order_relaxed);
    *retries = atomic_load_explicit(&o->others_retries, memory_order_relaxed);
}

/* The script's answer: the others' calls and retries in the window. */
bool
pf__redis_budget_reply_ok(const redisReply *rep)
{
    static const range_t b[] = {{0, INT64_MAX}, {0, INT64_MAX}};

    return pf__redis_ints_reply(rep, 2, b);
}

static void
on_budget_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    redisReply *rep = reply;
    obj_t *o = pf__redis_script_reply(ac, reply, privdata);

    if (o == NULL ||
        !pf__redis_script_ok(ac, o, pf__redis_budget_reply_ok(rep))) {
        return;
    }
    atomic_store_explicit(&o->others_calls,
                          (uint64_t)rep->element[0]->integer,
                          memory_order_relaxed);
    atomic_store_explicit(&o->others_retries,
                          (uint64_t)rep->element[1]->integer,
                          memory_order_relaxed);
}

/* Every sync interval: report this process's window, learn the others'. */
void
pf__redis_pump_budget(pf_redis_t *r, obj_t *o, int64_t now, int64_t *due)
{
    pf_retry_budget_metrics_t m;
    char calls[24];
    char retries[24];
    char ttl[24];
    const char *argv[8];
    uint64_t own_calls;
    uint64_t own_retries;

    if (o->inflight || o->budget == NULL) {
        return;
    }
    if (now < o->next_sync_ns) {
        *due = o->next_sync_ns < *due ? o->next_sync_ns : *due;
        return;
    }
    /* The metrics add the others' counts (those this store gave, stable
     * under mu): take them out again. */
    pf_retry_budget_metrics(o->budget, &m);
    own_calls = m.window_calls -
                atomic_load_explicit(&o->others_calls, memory_order_relaxed);
    own_retries = m.window_retries - atomic_load_explicit(&o->others_retries,
                                                          memory_order_relaxed);
    if (own_calls > m.window_calls) {
        own_calls = 0;
    }
    if (own_retries > m.window_retries) {
        own_retries = 0;
    }
    snprintf(calls, sizeof(calls), "%llu", (unsigned long long)own_calls);
    snprintf(retries, sizeof(retries), "%llu", (unsigned long long)own_retries);
    snprintf(ttl, sizeof(ttl), "%lld", (long long)(o->report_ns / NS_PER_MS));
    argv[0] = "EVALSHA";
    argv[1] = r->sha[SCRIPT_BUDGET];
    argv[2] = "1";
    argv[3] = o->key;
    argv[4] = o->holder;
    argv[5] = calls;
    argv[6] = retries;
    argv[7] = ttl;
    if (redisAsyncCommandArgv(r->cmd->ac, on_budget_reply, o, 8, argv,
                              NULL) != REDIS_OK) {
        return;
    }
    o->inflight = true;
    o->next_sync_ns = now + r->sync_ns;
    if (r->cmd->outstanding++ == 0) {
        r->cmd->progress_ns = now;
    }
    pf__redis_count(r, M_COMMANDS, 1);
}

int
pf_redis_retry_budget_new(pf_redis_t *r, const pf_retry_budget_config_t *cfg,
                          pf_retry_budget_t **out)
{
    pf_retry_budget_config_t c;
    pf_sync_t sync;
    obj_t *o;
    int rc;

    if (cfg == NULL || out == NULL) {
        return PF_EINVAL;
    }
    rc = pf__redis_obj_begin(r, OBJ_BUDGET, cfg->name,
                             cfg->shared != NULL || cfg->sync != NULL, &sync,
                             &o);
    if (rc != 0) {
        return rc;
    }
    sync.budget_others = hook_budget_others;
    c = *cfg;
    c.sync = &sync;
    atomic_init(&o->others_calls, 0);
    atomic_init(&o->others_retries, 0);
    pthread_mutex_lock(&r->mu); /* the pump may read o->budget from now */
    rc = pf_retry_budget_new(&c, &o->budget);
    if (rc != 0) {
        pthread_mutex_unlock(&r->mu);
        pf__redis_obj_free(o);
        return rc;
    }
    /* A report lasts a window (counts older are out of every window)
     * plus two intervals (a late renewal does not drop it early). */
    o->report_ns = (int64_t)(cfg->window * 1e9) + 2 * r->sync_ns;
    snprintf(o->holder, sizeof(o->holder), "%s.%u", r->id, ++r->next_holder);
    *out = o->budget;
    pf__redis_obj_publish(r, o);
    return 0;
}
