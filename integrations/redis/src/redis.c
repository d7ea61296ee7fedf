/* The Redis store: its configuration, its objects' common life, the
 * background pump that keeps them in step, and the checks every reply
 * passes before it is trusted. Each kind of object has its file:
 * redis_breaker.c, redis_ratelimit.c, redis_bulkhead.c, redis_budget.c;
 * the connections are redis_conn.c's.
 *
 * Threads. Pattern calls run on the caller's threads and touch only the
 * object's atomics (a limiter's pool) or its pending-change mutex (a
 * breaker's hook, under the breaker's lock). Everything else runs on the
 * executor's workers under the store's mutex: fd completions (redis_conn.c),
 * the timer, and the wake task a pattern call queues when it wants the
 * network now (a change to send, a pool running low). Lock order: the
 * store's mutex, then a breaker's lock (pf_breaker_sync_apply), then the
 * object's pending mutex; the hook takes only the last. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "puffinflow/error.h"
#include "puffinflow/sync.h"
#include "redis_impl.h"

#define MAX_PREFIX 64

static void arm_tick(pf_redis_t *r, int64_t due);

int64_t
pf__redis_now(const pf_redis_t *r)
{
    return pf_clock_now_ns(r->clock);
}

void
pf__redis_event(pf_redis_t *r, pf_redis_event_t ev, const char *detail)
{
    if (r->listener != NULL) {
        r->listener(ev, detail != NULL ? detail : "", r->listener_arg);
    }
}

/* ---- configuration ------------------------------------------------------- */

void
pf_redis_config_init(pf_redis_config_t *cfg)
{
    if (cfg == NULL) {
        return;
    }
    memset(cfg, 0, sizeof(*cfg));
    cfg->host = "127.0.0.1";
    cfg->port = 6379;
    cfg->prefix = "puffinflow";
    cfg->sync_interval = 0.1;
    cfg->connect_timeout = 1.0;
    cfg->command_timeout = 0.5;
    cfg->ratelimit_policy = PF_REDIS_LOCAL;
    cfg->bulkhead_policy = PF_REDIS_LOCAL;
    cfg->lease_ttl = 5.0;
}

static bool
prefix_ok(const char *p)
{
    size_t n = p != NULL ? strlen(p) : 0;

    if (n == 0 || n > MAX_PREFIX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];

        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              (ch >= '0' && ch <= '9') || strchr("._-:{}", ch) != NULL)) {
            return false;
        }
    }
    return true;
}

/* 1..MAX_NAME printable characters, no '|' (the message separator), no
 * space. */
bool
pf__redis_name_ok(const char *p)
{
    size_t n = p != NULL ? strlen(p) : 0;

    if (n == 0 || n > MAX_NAME) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)p[i];

        if (ch <= ' ' || ch >= 127 || ch == '|') {
            return false;
        }
    }
    return true;
}

static bool
secs_to_ns(double s, double max, int64_t *out)
{
    if (!(s > 0.0 && s <= max)) { /* NaN fails */
        return false;
    }
    *out = (int64_t)(s * 1e9);
    if (*out < 1) {
        *out = 1;
    }
    return true;
}

static bool
policy_ok(pf_redis_policy_t p)
{
    return p == PF_REDIS_LOCAL || p == PF_REDIS_CLOSED;
}

static int
check_config(const pf_redis_config_t *cfg, int64_t *sync_ns, int64_t *conn_ns,
             int64_t *cmd_ns, int64_t *lease_ns)
{
    if (cfg->executor == NULL || !prefix_ok(cfg->prefix) ||
        (cfg->unix_socket == NULL &&
         (cfg->host == NULL || cfg->host[0] == '\0' || cfg->port < 1 ||
          cfg->port > 65535)) ||
        (cfg->unix_socket != NULL && cfg->unix_socket[0] != '/') ||
        (cfg->user != NULL && cfg->password == NULL) || cfg->db < 0 ||
        cfg->db > 10000 ||
        !policy_ok(cfg->ratelimit_policy) || !policy_ok(cfg->bulkhead_policy) ||
        !secs_to_ns(cfg->sync_interval, 60.0, sync_ns) ||
        !secs_to_ns(cfg->connect_timeout, 3600.0, conn_ns) ||
        !secs_to_ns(cfg->command_timeout, 3600.0, cmd_ns) ||
        !secs_to_ns(cfg->lease_ttl, 86400.0, lease_ns) ||
        *lease_ns <= 2 * *sync_ns) {
        return PF_EINVAL;
    }
    if (cfg->tls) {
        return PF_ENOTSUP; /* hiredis < 1.0 has no TLS (see redis.h) */
    }
    return 0;
}

static char *
dup_or_null(const char *s, bool *failed)
{
    char *d;

    if (s == NULL) {
        return NULL;
    }
    d = strdup(s);
    if (d == NULL) {
        *failed = true;
    }
    return d;
}

static void
free_store(pf_redis_t *r)
{
    free(r->host);
    free(r->unix_socket);
    free(r->user);
    free(r->password);
    free(r->prefix);
    free(r->channel);
    free(r);
}

int
pf_redis_new(const pf_redis_config_t *cfg, pf_redis_t **out)
{
    pf_redis_t *r;
    int64_t sync_ns;
    int64_t conn_ns;
    int64_t cmd_ns;
    int64_t lease_ns;
    bool failed = false;
    int rc;
    struct timespec ts;

    if (cfg == NULL || out == NULL) {
        return PF_EINVAL;
    }
    rc = check_config(cfg, &sync_ns, &conn_ns, &cmd_ns, &lease_ns);
    if (rc != 0) {
        return rc;
    }
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        return PF_ENOMEM;
    }
    r->ex = cfg->executor;
    r->clock = pf_executor_clock(cfg->executor);
    r->host = dup_or_null(cfg->host, &failed);
    r->port = cfg->port;
    r->unix_socket = dup_or_null(cfg->unix_socket, &failed);
    r->user = dup_or_null(cfg->user, &failed);
    r->password = dup_or_null(cfg->password, &failed);
    r->db = cfg->db;
    r->prefix = dup_or_null(cfg->prefix, &failed);
    r->channel = malloc(strlen(cfg->prefix) + sizeof(":events"));
    if (failed || r->channel == NULL) {
        free_store(r);
        return PF_ENOMEM;
    }
    sprintf(r->channel, "%s:events", cfg->prefix);
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(r->id, sizeof(r->id), "%x.%lx", (unsigned)getpid(),
             (unsigned long)(ts.tv_nsec ^ (long)(uintptr_t)r));
    r->sync_ns = sync_ns;
    r->connect_ns = conn_ns;
    r->command_ns = cmd_ns;
    r->rl_policy = cfg->ratelimit_policy;
    r->bh_policy = cfg->bulkhead_policy;
    r->lease_ns = lease_ns;
    r->listener = cfg->listener;
    r->listener_arg = cfg->listener_arg;
    if (pthread_mutex_init(&r->mu, NULL) != 0) {
        free_store(r);
        return PF_ESYSTEM;
    }
    {
        pthread_condattr_t ca;
        int crc = pthread_condattr_init(&ca);

        if (crc == 0) {
            (void)pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
            crc = pthread_cond_init(&r->idle, &ca);
            pthread_condattr_destroy(&ca);
        }
        if (crc != 0) {
            pthread_mutex_destroy(&r->mu);
            free_store(r);
            return PF_ESYSTEM;
        }
    }
    pthread_mutex_lock(&r->mu);
    pf__redis_pump(r); /* connects, arms the timer */
    rc = r->tick == NULL ? PF_ESTATE : 0;
    pthread_mutex_unlock(&r->mu);
    if (rc != 0) {
        pf_redis_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

void
pf_redis_free(pf_redis_t *r)
{
    conn_t *c;

    if (r == NULL) {
        return;
    }
    pthread_mutex_lock(&r->mu);
    r->draining = true; /* the pump does nothing more */
    if (r->tick != NULL) {
        pf_wait_abort(r->tick->w);
        r->tick = NULL;
    }
    c = r->subc;
    r->subc = NULL;
    if (c != NULL) {
        pf__redis_conn_drop(c);
    }
    /* Let commands already queued (a bulkhead's places given back) reach
     * Redis: hiredis closes once their replies are in; give it up to
     * command_timeout. */
    if (r->cmd != NULL && r->cmd->ac != NULL && r->cmd->phase == CONN_READY) {
        struct timespec ts;

        redisAsyncDisconnect(r->cmd->ac);
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += (time_t)(r->command_ns / 1000000000);
        ts.tv_nsec += (long)(r->command_ns % 1000000000);
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        while (r->cmd != NULL &&
               pthread_cond_timedwait(&r->idle, &r->mu, &ts) == 0) {
        }
    }
    r->closing = true;
    c = r->cmd;
    r->cmd = NULL;
    if (c != NULL) {
        pf__redis_conn_drop(c);
    }
    while (atomic_load_explicit(&r->pending, memory_order_acquire) > 0) {
        pthread_cond_wait(&r->idle, &r->mu);
    }
    while (r->objs != NULL) { /* left by a caller that broke the rule */
        obj_t *o = r->objs;

        r->objs = o->next;
        o->r = NULL;
    }
    pthread_mutex_unlock(&r->mu);
    pthread_cond_destroy(&r->idle);
    pthread_mutex_destroy(&r->mu);
    free_store(r);
}

void
pf_redis_metrics(pf_redis_t *r, pf_redis_metrics_t *out)
{
    uint64_t f[M_COUNT];

    if (r == NULL || out == NULL) {
        return;
    }
    for (int i = 0; i < M_COUNT; i++) {
        f[i] = atomic_load_explicit(&r->m[i], memory_order_relaxed);
    }
    out->up = atomic_load_explicit(&r->up, memory_order_relaxed);
    out->connects = f[M_CONNECTS];
    out->disconnects = f[M_DISCONNECTS];
    out->connect_failures = f[M_CONNECT_FAILURES];
    out->timeouts = f[M_TIMEOUTS];
    out->bad_replies = f[M_BAD_REPLIES];
    out->commands = f[M_COMMANDS];
    out->replies = f[M_REPLIES];
    out->transitions_sent = f[M_SENT];
    out->transitions_lost = f[M_LOST];
    out->remote_applied = f[M_APPLIED];
    out->pushes = f[M_PUSHES];
    out->reseeds = f[M_RESEEDS];
    out->permits_borrowed = f[M_BORROWED];
    out->local_decisions = f[M_LOCAL];
    out->closed_refusals = f[M_CLOSED];
    out->leases_lost = f[M_LEASES_LOST];
    out->leases_expired = f[M_LEASES_EXPIRED];
}

/* ---- objects ------------------------------------------------------------- */

void
pf__redis_obj_free(obj_t *o)
{
    if (o->kind == OBJ_BREAKER) {
        pthread_mutex_destroy(&o->pmu);
    }
    free(o->name);
    free(o->key);
    free(o->fence_key);
    free(o);
}

int
pf__redis_obj_new(pf_redis_t *r, obj_kind_t kind, const char *name, obj_t **out)
{
    static const char *const tags[] = {"breaker", "ratelimit", "bulkhead",
                                       "retry_budget"};
    const char *tag = tags[kind];
    obj_t *o = calloc(1, sizeof(*o));

    if (o == NULL) {
        return PF_ENOMEM;
    }
    o->r = r;
    o->kind = kind;
    o->name = strdup(name);
    o->key = malloc(strlen(r->prefix) + strlen(tag) + strlen(name) + 3);
    if (o->name == NULL || o->key == NULL) {
        free(o->name);
        free(o->key);
        free(o);
        return PF_ENOMEM;
    }
    sprintf(o->key, "%s:%s:%s", r->prefix, tag, name);
    if (kind == OBJ_BREAKER && pthread_mutex_init(&o->pmu, NULL) != 0) {
        free(o->name);
        free(o->key);
        free(o);
        return PF_ESYSTEM;
    }
    *out = o;
    return 0;
}

/* The start of every kind's _new: cfg checked (taken: it names a shared
 * state or a sync hook already, which the store's objects cannot have),
 * the record made, and the sync hook's common part set (detach, arg). */
int
pf__redis_obj_begin(pf_redis_t *r, obj_kind_t kind, const char *name,
                    bool taken, pf_sync_t *sync, obj_t **out)
{
    int rc;

    if (r == NULL || taken || !pf__redis_name_ok(name)) {
        return PF_EINVAL;
    }
    rc = pf__redis_obj_new(r, kind, name, out);
    if (rc != 0) {
        return rc;
    }
    memset(sync, 0, sizeof(*sync));
    sync->detach = pf__redis_detach;
    sync->arg = *out;
    return 0;
}

/* The end of every kind's _new, under mu: list o, have the pump see it,
 * and release mu. */
void
pf__redis_obj_publish(pf_redis_t *r, obj_t *o)
{
    o->next = r->objs;
    r->objs = o;
    r->need_pump = true;
    pthread_mutex_unlock(&r->mu);
    pf__redis_wake(r);
}

static void
wake_task(void *arg)
{
    pf_redis_t *r = arg;

    pthread_mutex_lock(&r->mu);
    atomic_store_explicit(&r->wake_queued, false, memory_order_release);
    if (!r->closing) {
        pf__redis_pump(r);
    }
    pf__redis_unpend(r);
    pthread_mutex_unlock(&r->mu);
}

/* Ask the pump to run soon, from a pattern call's thread (possibly under
 * a breaker's lock: so it never takes the store's mutex): at most one
 * wake task queued at a time. */
void
pf__redis_wake(pf_redis_t *r)
{
    if (atomic_exchange_explicit(&r->wake_queued, true, memory_order_acq_rel)) {
        return;
    }
    atomic_fetch_add_explicit(&r->pending, 1, memory_order_relaxed);
    if (pf_executor_submit(r->ex, wake_task, r) != 0) {
        /* The timer's next pump does the work instead. */
        atomic_fetch_sub_explicit(&r->pending, 1, memory_order_relaxed);
        atomic_store_explicit(&r->wake_queued, false, memory_order_release);
    }
}

/* The sync hook's detach: the pattern object is going. */
void
pf__redis_detach(void *arg)
{
    obj_t *o = arg;
    pf_redis_t *r = o->r;
    obj_t **pp;

    if (r == NULL) {
        pf__redis_obj_free(o);
        return;
    }
    pthread_mutex_lock(&r->mu);
    for (pp = &r->objs; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == o) {
            *pp = o->next;
            break;
        }
    }
    o->b = NULL;
    o->budget = NULL;
    if (o->kind == OBJ_BULKHEAD) {
        pf__redis_bulkhead_release(r, o); /* its places, back now */
    }
    if (o->inflight) {
        o->zombie = true; /* freed by its reply's callback */
    } else {
        pf__redis_obj_free(o);
    }
    pthread_mutex_unlock(&r->mu);
}

/* A limiter's pool or a bulkhead's lease runs low: ask the pump to get
 * more, once until it has. Lock-free. */
void
pf__redis_want_more(obj_t *o)
{
    if (!atomic_exchange_explicit(&o->want, true, memory_order_acq_rel)) {
        pf__redis_wake(o->r);
    }
}

/* An integer reply within [lo, hi]. */
bool
pf__redis_int_reply(const redisReply *e, long long lo, long long hi)
{
    return e != NULL && e->type == REDIS_REPLY_INTEGER && e->integer >= lo &&
           e->integer <= hi;
}

/* A reply that cannot be trusted: count it, tell, and drop the
 * connection (a fresh one starts over). */
void
pf__redis_bad_reply(pf_redis_t *r, redisAsyncContext *ac, const char *what)
{
    pf__redis_count(r, M_BAD_REPLIES, 1);
    pf__redis_event(r, PF_REDIS_BAD_REPLY, what);
    redisAsyncFree(ac); /* deferred by hiredis past this callback */
}

/* An error reply: NOSCRIPT (a SCRIPT FLUSH) or a server error. Start
 * over on a new connection, which loads the scripts again. */
void
pf__redis_error_reply(pf_redis_t *r, redisAsyncContext *ac, const redisReply *rep)
{
    pf__redis_event(r, PF_REDIS_DOWN, rep->str);
    redisAsyncFree(ac);
}

/* A script's reply: an array of exactly n integers, the i-th within
 * b[i]. Pure: it only reads rep. */
bool
pf__redis_ints_reply(const redisReply *rep, size_t n, const range_t *b)
{
    if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements != n) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!pf__redis_int_reply(rep->element[i], b[i].lo, b[i].hi)) {
            return false;
        }
    }
    return true;
}

/* The start of every script's reply: the object it answers, or NULL when
 * nothing more is to be done here (the object is gone, the connection is
 * being freed, or the reply was an error: handled, a breaker's change
 * sent again later). */
obj_t *
pf__redis_script_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    redisReply *rep = reply;
    obj_t *o = pf__redis_reply_obj(ac, reply, privdata);

    if (o == NULL) {
        return NULL;
    }
    o->r->need_pump = true;
    if (rep->type == REDIS_REPLY_ERROR) {
        pf__redis_breaker_requeue(o);
        pf__redis_error_reply(o->r, ac, rep);
        return NULL;
    }
    return o;
}

/* After the check of a script's reply for o: true when it passed (ok);
 * otherwise the malformed reply is handled (a breaker's change sent again
 * later, the connection dropped) and false. */
bool
pf__redis_script_ok(redisAsyncContext *ac, obj_t *o, bool ok)
{
    if (!ok) {
        pf__redis_breaker_requeue(o);
        pf__redis_bad_reply(o->r, ac, o->name);
    }
    return ok;
}

/* The end of a command: progress on the connection; NULL when the object
 * is gone (then freed here) or the reply is NULL (the connection is being
 * freed). */
obj_t *
pf__redis_reply_obj(redisAsyncContext *ac, void *reply, obj_t *o)
{
    conn_t *c = ac->ev.data;

    c->outstanding--;
    c->progress_ns = pf__redis_now(c->r);
    o->inflight = false;
    if (o->zombie) {
        pf__redis_obj_free(o);
        return NULL;
    }
    if (reply != NULL) {
        pf__redis_count(c->r, M_REPLIES, 1);
    }
    if (reply == NULL) {
        /* Compare again, or borrow again, once reconnected. */
        pf__redis_breaker_requeue(o);
        o->next_sync_ns = 0;
        atomic_store_explicit(&o->want, true, memory_order_relaxed);
        return NULL;
    }
    return o;
}

/* ---- the pump ------------------------------------------------------------ */

void
pf__redis_conn_gone(pf_redis_t *r, conn_t *c)
{
    bool was_ready = c->phase == CONN_READY;

    if (r->cmd == c) {
        r->cmd = NULL;
    }
    if (r->subc == c) {
        r->subc = NULL;
    }
    if (!c->sub) {
        if (was_ready) {
            pf__redis_count(r, M_DISCONNECTS, 1);
        } else {
            pf__redis_count(r, M_CONNECT_FAILURES, 1);
        }
        if (atomic_exchange_explicit(&r->up, false, memory_order_relaxed)) {
            pf__redis_event(r, PF_REDIS_DOWN, "connection lost");
        }
    }
    r->need_pump = true;
    if (r->draining) {
        pthread_cond_broadcast(&r->idle);
    }
}

/* Drop a connection that took too long. */
static void
time_out(pf_redis_t *r, conn_t *c, const char *what)
{
    if (r->cmd == c) {
        r->cmd = NULL;
    } else {
        r->subc = NULL;
    }
    pf__redis_count(r, M_TIMEOUTS, 1);
    pf__redis_event(r, PF_REDIS_TIMEOUT, what);
    if (!c->sub &&
        atomic_exchange_explicit(&r->up, false, memory_order_relaxed)) {
        pf__redis_event(r, PF_REDIS_DOWN, what);
    }
    pf__redis_conn_drop(c);
}

static bool
overdue(const pf_redis_t *r, const conn_t *c, int64_t now)
{
    if (c->broken) {
        return true;
    }
    if (c->phase == CONN_CONNECTING) {
        return now - c->started_ns > r->connect_ns;
    }
    return c->outstanding > 0 && now - c->progress_ns > r->command_ns;
}

static void
tick_done(int result, void *arg)
{
    tick_t *t = arg;
    pf_redis_t *r = t->r;

    (void)result;
    pthread_mutex_lock(&r->mu);
    pf_wait_free(t->w);
    if (r->tick == t) {
        r->tick = NULL;
    }
    free(t);
    if (!r->closing) {
        pf__redis_pump(r);
    }
    pf__redis_unpend(r);
    pthread_mutex_unlock(&r->mu);
}

/* Make sure a timer fires by due: keep an earlier one, replace a later. */
static void
arm_tick(pf_redis_t *r, int64_t due)
{
    tick_t *t;
    pf_deadline_t dl;

    if (r->tick != NULL) {
        if (r->tick->due_ns <= due) {
            return;
        }
        pf_wait_abort(r->tick->w); /* its callback just frees it */
        r->tick = NULL;
    }
    t = calloc(1, sizeof(*t));
    if (t == NULL) {
        return;
    }
    t->r = r;
    t->due_ns = due;
    dl = pf_deadline_at_ns(r->clock, due);
    if (pf_executor_wait_until(r->ex, &dl, tick_done, t, &t->w) != 0) {
        free(t);
        return;
    }
    atomic_fetch_add_explicit(&r->pending, 1, memory_order_relaxed);
    r->tick = t;
}

void
pf__redis_pump(pf_redis_t *r)
{
    int64_t now = pf__redis_now(r);
    int64_t due = now + r->sync_ns;

    /* Leases run out here whether or not Redis answers. */
    for (obj_t *o = r->objs; o != NULL; o = o->next) {
        if (o->kind == OBJ_BULKHEAD) {
            pf__redis_expire_lease(r, o, now);
        }
    }

    r->need_pump = false;
    if (r->draining) {
        return;
    }
    if (r->cmd != NULL && overdue(r, r->cmd, now)) {
        time_out(r, r->cmd, "command");
    }
    if (r->subc != NULL && overdue(r, r->subc, now)) {
        time_out(r, r->subc, "subscription");
    }
    if (r->cmd == NULL && r->subc != NULL) {
        conn_t *c = r->subc; /* both come back together */

        r->subc = NULL;
        pf__redis_conn_drop(c);
    }
    if (r->cmd == NULL && now >= r->next_connect_ns) {
        r->next_connect_ns = now + r->sync_ns;
        r->cmd = pf__redis_conn_open(r, false);
    }
    if (r->cmd != NULL && r->cmd->phase == CONN_READY && r->subc == NULL) {
        r->subc = pf__redis_conn_open(r, true);
    }
    if (r->cmd != NULL && r->cmd->phase == CONN_READY) {
        if (!atomic_exchange_explicit(&r->up, true, memory_order_relaxed)) {
            pf__redis_count(r, M_CONNECTS, 1);
            pf__redis_event(r, PF_REDIS_UP, r->unix_socket != NULL
                                                ? r->unix_socket
                                                : r->host);
            for (obj_t *o = r->objs; o != NULL; o = o->next) {
                o->next_sync_ns = 0; /* compare (and re-seed) now */
                o->retry_ns = 0;
            }
        }
        for (obj_t *o = r->objs; o != NULL && r->cmd != NULL; o = o->next) {
            if (o->kind == OBJ_BREAKER) {
                pf__redis_pump_breaker(r, o, now);
                if (!o->inflight && o->next_sync_ns < due) {
                    due = o->next_sync_ns;
                }
            } else if (o->kind == OBJ_RATELIMIT) {
                pf__redis_pump_ratelimit(r, o, now, &due);
            } else if (o->kind == OBJ_BULKHEAD) {
                pf__redis_pump_bulkhead(r, o, now, &due);
            } else {
                pf__redis_pump_budget(r, o, now, &due);
            }
        }
    }
    if (due <= now) {
        due = now + 1;
    }
    arm_tick(r, due);
}
