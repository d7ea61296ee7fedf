/* The Redis store's bulkheads: admissions on the places leased to this
 * process, and the lease requests (count, expiry, fencing token,
 * sequence) that follow demand. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "puffinflow/error.h"
#include "puffinflow/sync.h"
#include "redis_impl.h"

/* The lease ran out here (no renewal came in time): admit nothing on it.
 * Under mu. */
void
pf__redis_expire_lease(pf_redis_t *r, obj_t *o, int64_t now)
{
    if (atomic_load_explicit(&o->lease_ok, memory_order_relaxed) &&
        now >= o->lease_until_ns) {
        atomic_store_explicit(&o->lease_ok, false, memory_order_relaxed);
        atomic_store_explicit(&o->pool, 0, memory_order_relaxed);
        pf__redis_count(r, M_LEASES_EXPIRED, 1);
    }
}

/* Note that n places were wanted at once (the next request asks for the
 * most noted since the last). Lock-free. */
static void
note_peak(obj_t *o, int64_t n)
{
    int64_t p = atomic_load_explicit(&o->peak, memory_order_relaxed);

    while (n > p && !atomic_compare_exchange_weak_explicit(
                        &o->peak, &p, n, memory_order_relaxed,
                        memory_order_relaxed)) {
    }
}

/* An admission: a place of the lease, or the policy without one while
 * Redis cannot answer. Every admitted call counts in in_use, whatever
 * decided it, so the lease asked for covers what runs. Lock-free. */
static int
hook_bh_take(void *arg, unsigned n)
{
    obj_t *o = arg;
    pf_redis_t *r = o->r;
    int64_t u;

    (void)n;
    if (r == NULL) {
        return PF_SYNC_LOCAL;
    }
    u = atomic_load_explicit(&o->in_use, memory_order_relaxed);
    while (atomic_load_explicit(&o->lease_ok, memory_order_acquire) &&
           u < atomic_load_explicit(&o->pool, memory_order_acquire)) {
        if (atomic_compare_exchange_weak_explicit(&o->in_use, &u, u + 1,
                                                  memory_order_acq_rel,
                                                  memory_order_relaxed)) {
            if (atomic_load_explicit(&o->pool, memory_order_relaxed) - (u + 1) <
                (int64_t)o->headroom) {
                note_peak(o, u + 1);
                pf__redis_want_more(o);
            }
            return PF_SYNC_GRANT;
        }
    }
    if (atomic_load_explicit(&r->up, memory_order_relaxed)) {
        note_peak(o, u + 1); /* the lease should have held one more */
        pf__redis_want_more(o);
        return PF_SYNC_REFUSE;
    }
    if (r->bh_policy == PF_REDIS_CLOSED) {
        pf__redis_count(r, M_CLOSED, 1);
        return PF_SYNC_REFUSE;
    }
    pf__redis_count(r, M_LOCAL, 1);
    atomic_fetch_add_explicit(&o->in_use, 1, memory_order_relaxed);
    return PF_SYNC_LOCAL;
}

/* A call admitted by hook_bh_take left. */
static void
hook_bh_give(void *arg, unsigned n)
{
    obj_t *o = arg;
    int64_t u = atomic_load_explicit(&o->in_use, memory_order_relaxed);

    (void)n;
    while (u > 0 && !atomic_compare_exchange_weak_explicit(
                        &o->in_use, &u, u - 1, memory_order_acq_rel,
                        memory_order_relaxed)) {
    }
}

/* The script's answer: the places granted (at most the limit), the
 * fencing token, the sequence and whether the lease was new. */
bool
pf__redis_bulkhead_reply_ok(const redisReply *rep, unsigned limit)
{
    const range_t b[] = {
        {0, limit}, {1, INT64_MAX}, {0, INT64_MAX}, {0, 1}};

    return pf__redis_ints_reply(rep, 4, b);
}

static void
on_bulkhead_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    redisReply *rep = reply;
    obj_t *o = pf__redis_script_reply(ac, reply, privdata);
    pf_redis_t *r;
    uint64_t tk;
    int64_t g;

    if (o == NULL || !pf__redis_script_ok(
                         ac, o, pf__redis_bulkhead_reply_ok(rep, o->limit))) {
        return;
    }
    r = o->r;
    g = rep->element[0]->integer;
    tk = (uint64_t)rep->element[1]->integer;
    if (o->token != 0 && tk != o->token &&
        atomic_load_explicit(&o->pool, memory_order_relaxed) > 0) {
        pf__redis_count(r, M_LEASES_LOST, 1);
    }
    o->token = tk;
    atomic_store_explicit(&o->pool, g, memory_order_release);
    /* Good here until a little before Redis lets it go: Redis counts from
     * when it ran the script, no earlier than we sent it. */
    o->lease_until_ns = o->sent_ns + r->lease_ns - 2 * r->sync_ns;
    atomic_store_explicit(&o->lease_ok, true, memory_order_release);
    if (g < atomic_load_explicit(&o->in_use, memory_order_relaxed) +
                (int64_t)o->headroom &&
        g < (int64_t)o->limit) {
        /* Others hold the rest: ask again soon, not at once. */
        o->retry_ns = pf__redis_now(r) + r->sync_ns / 10;
        atomic_store_explicit(&o->want, true, memory_order_relaxed);
    }
}

/* The reply to a release sent as a bulkhead goes: only counted. */
static void
on_release_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    conn_t *c = ac->ev.data;

    (void)privdata;
    if (reply != NULL) {
        pf__redis_count(c->r, M_REPLIES, 1);
    }
}

/* Ask for count places for o (0 gives them back). privdata is o, unless
 * fn is on_release_reply (o is going). */
static bool
send_lease(pf_redis_t *r, obj_t *o, int64_t count, redisCallbackFn *fn)
{
    char want[24];
    char limit[16];
    char ttl[24];
    char token[24];
    char seq[24];
    const char *argv[11];

    snprintf(want, sizeof(want), "%lld", (long long)count);
    snprintf(limit, sizeof(limit), "%u", o->limit);
    snprintf(ttl, sizeof(ttl), "%lld", (long long)(r->lease_ns / NS_PER_MS));
    snprintf(token, sizeof(token), "%" PRIu64, o->token);
    snprintf(seq, sizeof(seq), "%" PRIu64, ++o->seq);
    argv[0] = "EVALSHA";
    argv[1] = r->sha[SCRIPT_BULKHEAD];
    argv[2] = "2";
    argv[3] = o->key;
    argv[4] = o->fence_key;
    argv[5] = o->holder;
    argv[6] = want;
    argv[7] = limit;
    argv[8] = ttl;
    argv[9] = token;
    argv[10] = seq;
    if (redisAsyncCommandArgv(r->cmd->ac, fn,
                              fn == on_release_reply ? NULL : o, 11, argv,
                              NULL) != REDIS_OK) {
        return false;
    }
    pf__redis_count(r, M_COMMANDS, 1);
    return true;
}

/* The bulkhead goes: give its places back now, when connected (no reply
 * awaited). Under mu. */
void
pf__redis_bulkhead_release(pf_redis_t *r, obj_t *o)
{
    if (o->token != 0 && r->cmd != NULL && r->cmd->phase == CONN_READY) {
        (void)send_lease(r, o, 0, on_release_reply);
    }
}

void
pf__redis_pump_bulkhead(pf_redis_t *r, obj_t *o, int64_t now, int64_t *due)
{
    int64_t in_use = atomic_load_explicit(&o->in_use, memory_order_relaxed);
    int64_t held = atomic_load_explicit(&o->pool, memory_order_relaxed);
    int64_t need;
    bool want = atomic_load_explicit(&o->want, memory_order_acquire);

    if (o->inflight) {
        return;
    }
    /* What runs now, or the most wanted at once since the last request
     * (a lease follows demand up at once, and down within an interval),
     * plus headroom. */
    need = atomic_load_explicit(&o->peak, memory_order_relaxed);
    need = (need > in_use ? need : in_use) + (int64_t)o->headroom;
    if (need > (int64_t)o->limit) {
        need = o->limit;
    }
    if (want && now < o->retry_ns) {
        if (o->retry_ns < *due) {
            *due = o->retry_ns;
        }
        want = false;
    }
    /* Renew a lease every sync interval, and ask at once when short. */
    if (!want && !(now >= o->next_sync_ns && (held > 0 || in_use > 0))) {
        if (held > 0 || in_use > 0) {
            *due = o->next_sync_ns < *due ? o->next_sync_ns : *due;
        }
        return;
    }
    atomic_store_explicit(&o->want, false, memory_order_release);
    atomic_store_explicit(&o->peak, 0, memory_order_relaxed);
    o->sent_ns = now;
    if (!send_lease(r, o, need, on_bulkhead_reply)) {
        atomic_store_explicit(&o->want, true, memory_order_relaxed);
        return;
    }
    o->inflight = true;
    o->retry_ns = 0;
    o->next_sync_ns = now + r->sync_ns;
    if (r->cmd->outstanding++ == 0) {
        r->cmd->progress_ns = now;
    }
}

int
pf_redis_bulkhead_new(pf_redis_t *r, const pf_bulkhead_config_t *cfg,
                      pf_bulkhead_t **out)
{
    pf_bulkhead_config_t c;
    pf_sync_t sync;
    pf_bulkhead_t *bh;
    obj_t *o;
    int rc;

    if (cfg == NULL || out == NULL) {
        return PF_EINVAL;
    }
    rc = pf__redis_obj_begin(r, OBJ_BULKHEAD, cfg->name,
                             cfg->shared != NULL || cfg->sync != NULL, &sync,
                             &o);
    if (rc != 0) {
        return rc;
    }
    o->fence_key = malloc(strlen(o->key) + sizeof(":fence"));
    if (o->fence_key == NULL) {
        pf__redis_obj_free(o);
        return PF_ENOMEM;
    }
    sprintf(o->fence_key, "%s:fence", o->key);
    sync.take = hook_bh_take;
    sync.give = hook_bh_give;
    c = *cfg;
    c.sync = &sync;
    rc = pf_bulkhead_new(&c, &bh);
    if (rc != 0) {
        pf__redis_obj_free(o);
        return rc;
    }
    o->limit = cfg->max_concurrent_calls;
    /* A tenth of the limit (at least 1) spare: a burst of admissions
     * rarely finds the lease used up, and idle processes hold little. */
    o->headroom = (o->limit + 9) / 10;
    atomic_init(&o->pool, 0);
    atomic_init(&o->in_use, 0);
    atomic_init(&o->peak, 0);
    atomic_init(&o->lease_ok, false);
    atomic_init(&o->want, true);
    pthread_mutex_lock(&r->mu);
    snprintf(o->holder, sizeof(o->holder), "%s.%u", r->id, ++r->next_holder);
    pf__redis_obj_publish(r, o);
    *out = bh;
    return 0;
}
