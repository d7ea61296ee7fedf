/* The Redis store: its objects, the background pump that keeps them in
 * step, and the replies it trusts only after checking them.
 *
 * Threads. Pattern calls run on the caller's threads and touch only the
 * object's atomics (a limiter's pool) or its pending-change mutex (a
 * breaker's hook, under the breaker's lock). Everything else runs on the
 * executor's workers under the store's mutex: fd completions (redis_conn.c),
 * the timer, and the wake task a pattern call queues when it wants the
 * network now (a change to send, a pool running low). Lock order: the
 * store's mutex, then a breaker's lock (pf_breaker_sync_apply), then the
 * object's pending mutex; the hook takes only the last. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "puffinflow/error.h"
#include "puffinflow/sync.h"
#include "redis_impl.h"

#define MAX_NAME 200
#define MAX_PREFIX 64
#define NS_PER_MS INT64_C(1000000)

static void arm_tick(pf_redis_t *r, int64_t due);
static bool send_lease(pf_redis_t *r, obj_t *o, int64_t count,
                       redisCallbackFn *fn);
static void on_release_reply(redisAsyncContext *ac, void *reply,
                             void *privdata);

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
static bool
name_ok(const char *p)
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

static void
obj_free(obj_t *o)
{
    if (o->kind == OBJ_BREAKER) {
        pthread_mutex_destroy(&o->pmu);
    }
    free(o->name);
    free(o->key);
    free(o->fence_key);
    free(o);
}

static int
obj_new(pf_redis_t *r, obj_kind_t kind, const char *name, obj_t **out)
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
static void
wake(pf_redis_t *r)
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
static void
hook_detach(void *arg)
{
    obj_t *o = arg;
    pf_redis_t *r = o->r;
    obj_t **pp;

    if (r == NULL) {
        obj_free(o);
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
    if (o->kind == OBJ_BULKHEAD && o->token != 0 && r->cmd != NULL &&
        r->cmd->phase == CONN_READY) {
        /* Give the places back now (the object goes: no reply awaited). */
        (void)send_lease(r, o, 0, on_release_reply);
    }
    if (o->inflight) {
        o->zombie = true; /* freed by its reply's callback */
    } else {
        obj_free(o);
    }
    pthread_mutex_unlock(&r->mu);
}

/* ---- breakers ------------------------------------------------------------ */

/* Under the breaker's lock: note the change for the pump. */
static void
hook_breaker_changed(void *arg, pf_breaker_t *b, int from, int to,
                     int64_t open_ns)
{
    obj_t *o = arg;

    (void)b;
    (void)from;
    pthread_mutex_lock(&o->pmu);
    o->pend = true;
    o->pend_state = to;
    o->pend_open_ns = open_ns;
    pthread_mutex_unlock(&o->pmu);
    wake(o->r);
}

int
pf_redis_breaker_new(pf_redis_t *r, const pf_breaker_config_t *cfg,
                     pf_breaker_t **out)
{
    pf_breaker_config_t c;
    pf_sync_t sync;
    obj_t *o;
    int rc;

    if (r == NULL || cfg == NULL || out == NULL || cfg->shared != NULL ||
        cfg->sync != NULL || !name_ok(cfg->name)) {
        return PF_EINVAL;
    }
    rc = obj_new(r, OBJ_BREAKER, cfg->name, &o);
    if (rc != 0) {
        return rc;
    }
    memset(&sync, 0, sizeof(sync));
    sync.breaker_changed = hook_breaker_changed;
    sync.detach = hook_detach;
    sync.arg = o;
    c = *cfg;
    c.sync = &sync;
    pthread_mutex_lock(&r->mu); /* no remote change before it is listed */
    rc = pf_breaker_new(&c, &o->b);
    if (rc != 0) {
        pthread_mutex_unlock(&r->mu);
        obj_free(o);
        return rc;
    }
    o->next = r->objs;
    r->objs = o;
    o->next_sync_ns = 0; /* learn the stored state at once */
    *out = o->b;
    r->need_pump = true;
    pthread_mutex_unlock(&r->mu);
    wake(r);
    return 0;
}

static obj_t *
find_breaker(pf_redis_t *r, const char *name, size_t len)
{
    for (obj_t *o = r->objs; o != NULL; o = o->next) {
        if (o->kind == OBJ_BREAKER && strlen(o->name) == len &&
            memcmp(o->name, name, len) == 0) {
            return o;
        }
    }
    return NULL;
}

/* Take the stored state (generation g) when it is newer than ours: any
 * local change not yet sent was made on an older state and is dropped. */
static void
apply_remote(obj_t *o, uint64_t g, long long state, long long left_ms)
{
    int64_t open_ns;

    if (g <= o->gen || o->b == NULL) {
        if (g > o->gen) {
            o->gen = g;
        }
        return;
    }
    o->gen = g;
    open_ns = left_ms < 0 ? INT64_MAX
              : left_ms > INT64_MAX / NS_PER_MS ? INT64_MAX - 1
                                                : (int64_t)left_ms * NS_PER_MS;
    pthread_mutex_lock(&o->pmu);
    o->pend = false;
    pthread_mutex_unlock(&o->pmu);
    (void)pf_breaker_sync_apply(o->b, (pf_breaker_state_t)state, open_ns);
    pf__redis_count(o->r, M_APPLIED, 1);
}

static bool
int_reply(const redisReply *e, long long lo, long long hi)
{
    return e != NULL && e->type == REDIS_REPLY_INTEGER && e->integer >= lo &&
           e->integer <= hi;
}

/* A reply that cannot be trusted: count it, tell, and drop the
 * connection (a fresh one starts over). */
static void
bad_reply(pf_redis_t *r, redisAsyncContext *ac, const char *what)
{
    pf__redis_count(r, M_BAD_REPLIES, 1);
    pf__redis_event(r, PF_REDIS_BAD_REPLY, what);
    redisAsyncFree(ac); /* deferred by hiredis past this callback */
}

/* An error reply: NOSCRIPT (a SCRIPT FLUSH) or a server error. Start
 * over on a new connection, which loads the scripts again. */
static void
error_reply(pf_redis_t *r, redisAsyncContext *ac, const redisReply *rep)
{
    pf__redis_event(r, PF_REDIS_DOWN, rep->str);
    redisAsyncFree(ac);
}

static void breaker_view(obj_t *o, int *state, int64_t *open_ns);

/* A change sent whose answer never came (the connection went, or the
 * reply was an error or malformed): send the local view as a change
 * again, unless a newer change is waiting already. */
static void
requeue_change(obj_t *o)
{
    int state;
    int64_t open_ns;

    if (o->kind != OBJ_BREAKER || !o->sent_change || o->b == NULL) {
        return;
    }
    breaker_view(o, &state, &open_ns);
    pthread_mutex_lock(&o->pmu);
    if (!o->pend) {
        o->pend = true;
        o->pend_state = state;
        o->pend_open_ns = open_ns;
    }
    pthread_mutex_unlock(&o->pmu);
}

/* The end of a command: progress on the connection; NULL when the object
 * is gone (then freed here) or the reply is NULL (the connection is being
 * freed). */
static obj_t *
reply_obj(redisAsyncContext *ac, void *reply, obj_t *o)
{
    conn_t *c = ac->ev.data;

    c->outstanding--;
    c->progress_ns = pf__redis_now(c->r);
    o->inflight = false;
    if (o->zombie) {
        obj_free(o);
        return NULL;
    }
    if (reply != NULL) {
        pf__redis_count(c->r, M_REPLIES, 1);
    }
    if (reply == NULL) {
        /* Compare again, or borrow again, once reconnected. */
        requeue_change(o);
        o->next_sync_ns = 0;
        atomic_store_explicit(&o->want, true, memory_order_relaxed);
        return NULL;
    }
    return o;
}

static void
on_breaker_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    redisReply *rep = reply;
    obj_t *o = reply_obj(ac, reply, privdata);
    pf_redis_t *r;

    if (o == NULL) {
        return;
    }
    r = o->r;
    r->need_pump = true;
    if (rep->type == REDIS_REPLY_ERROR) {
        requeue_change(o);
        error_reply(r, ac, rep);
        return;
    }
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 5 ||
        !int_reply(rep->element[0], 0, 1) ||
        !int_reply(rep->element[1], 0, INT64_MAX) ||
        !int_reply(rep->element[2], 0, 2) ||
        !int_reply(rep->element[3], -1, INT64_MAX) ||
        !int_reply(rep->element[4], 0, 1)) {
        requeue_change(o);
        bad_reply(r, ac, o->name);
        return;
    }
    if (rep->element[0]->integer == 1) {
        if (rep->element[4]->integer == 1) {
            pf__redis_count(r, M_RESEEDS, 1);
            pf__redis_event(r, PF_REDIS_RESEEDED, o->name);
        }
        o->gen = (uint64_t)rep->element[1]->integer;
        return;
    }
    if (o->sent_change) {
        pf__redis_count(r, M_LOST, 1);
    }
    apply_remote(o, (uint64_t)rep->element[1]->integer,
                 rep->element[2]->integer, rep->element[3]->integer);
}

/* Send a change or a comparison for breaker o. */
static void
send_breaker(pf_redis_t *r, obj_t *o, bool change, int state, int64_t open_ns)
{
    char gen[24];
    char st[4];
    char om[24];
    long long ms = open_ns == INT64_MAX ? -1 : (long long)(open_ns / NS_PER_MS);
    const char *argv[12];
    int rc;

    if (state == PF_BREAKER_OPEN && open_ns != INT64_MAX && ms == 0 &&
        open_ns > 0) {
        ms = 1;
    }
    snprintf(gen, sizeof(gen), "%" PRIu64, o->gen);
    snprintf(st, sizeof(st), "%d", state);
    snprintf(om, sizeof(om), "%lld", state == PF_BREAKER_OPEN ? ms : 0LL);
    argv[0] = "EVALSHA";
    argv[1] = r->sha[SCRIPT_BREAKER];
    argv[2] = "1";
    argv[3] = o->key;
    argv[4] = change ? "t" : "s";
    argv[5] = gen;
    argv[6] = st;
    argv[7] = om;
    argv[8] = r->channel;
    argv[9] = o->name;
    argv[10] = r->id;
    rc = redisAsyncCommandArgv(r->cmd->ac, on_breaker_reply, o, 11, argv,
                               NULL);
    if (rc != REDIS_OK) {
        return;
    }
    o->inflight = true;
    o->sent_change = change;
    if (r->cmd->outstanding++ == 0) {
        r->cmd->progress_ns = pf__redis_now(r);
    }
    pf__redis_count(r, M_COMMANDS, 1);
    if (change) {
        pf__redis_count(r, M_SENT, 1);
    }
}

/* The local view, for a comparison: the state and the open time left. */
static void
breaker_view(obj_t *o, int *state, int64_t *open_ns)
{
    pf_breaker_metrics_t m;

    pf_breaker_metrics(o->b, &m);
    *state = (int)m.state;
    *open_ns = 0;
    if (m.state == PF_BREAKER_OPEN) {
        *open_ns = m.forced_open ? INT64_MAX
                   : m.retry_at_ns > m.now_ns ? m.retry_at_ns - m.now_ns
                                              : 1;
    }
}

static void
pump_breaker(pf_redis_t *r, obj_t *o, int64_t now)
{
    bool pend;
    int state;
    int64_t open_ns;

    if (o->inflight || o->b == NULL) {
        return;
    }
    pthread_mutex_lock(&o->pmu);
    pend = o->pend;
    state = o->pend_state;
    open_ns = o->pend_open_ns;
    o->pend = false;
    pthread_mutex_unlock(&o->pmu);
    if (pend) {
        send_breaker(r, o, true, state, open_ns);
        o->next_sync_ns = now + r->sync_ns;
        return;
    }
    if (now >= o->next_sync_ns) {
        breaker_view(o, &state, &open_ns);
        send_breaker(r, o, false, state, open_ns);
        o->next_sync_ns = now + r->sync_ns;
    }
}

/* A published change: "B|name|gen|state|open ms|origin". Ours, unknown
 * names and older generations are ignored; anything malformed is
 * counted. */
void pf__redis_on_message(pf_redis_t *r, const redisReply *rep);

void
pf__redis_on_message(pf_redis_t *r, const redisReply *rep)
{
    char buf[MAX_NAME + 128];
    char *f[6];
    int n = 0;
    char *p;
    char *end;
    unsigned long long gen;
    long long state;
    long long left;
    obj_t *o;

    if (rep->len <= 0 || (size_t)rep->len >= sizeof(buf) || rep->str == NULL) {
        goto bad;
    }
    memcpy(buf, rep->str, (size_t)rep->len);
    buf[rep->len] = '\0';
    if (strlen(buf) != (size_t)rep->len) {
        goto bad; /* an embedded NUL */
    }
    p = buf;
    while (n < 6) {
        f[n++] = p;
        p = strchr(p, '|');
        if (p == NULL) {
            break;
        }
        *p++ = '\0';
    }
    if (n != 6 || p != NULL || strcmp(f[0], "B") != 0) {
        goto bad;
    }
    errno = 0;
    gen = strtoull(f[2], &end, 10);
    if (errno != 0 || *end != '\0' || f[2][0] == '\0' || f[2][0] == '-' ||
        gen > INT64_MAX) {
        goto bad;
    }
    state = strtoll(f[3], &end, 10);
    if (*end != '\0' || f[3][0] == '\0' || state < 0 || state > 2) {
        goto bad;
    }
    errno = 0;
    left = strtoll(f[4], &end, 10);
    if (errno != 0 || *end != '\0' || f[4][0] == '\0' || left < -1) {
        goto bad;
    }
    pf__redis_count(r, M_PUSHES, 1);
    if (strcmp(f[5], r->id) == 0) {
        return;
    }
    o = find_breaker(r, f[1], strlen(f[1]));
    if (o != NULL) {
        apply_remote(o, gen, state, left);
    }
    return;
bad:
    pf__redis_count(r, M_BAD_REPLIES, 1);
    pf__redis_event(r, PF_REDIS_BAD_REPLY, "published message");
}

/* ---- rate limiters -------------------------------------------------------- */

static void
want_more(obj_t *o)
{
    if (!atomic_exchange_explicit(&o->want, true, memory_order_acq_rel)) {
        wake(o->r);
    }
}

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
                want_more(o);
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
    want_more(o);
    return PF_SYNC_REFUSE;
}

/* Permits given back go back into the pool (lent already). */
static void
hook_give(void *arg, unsigned n)
{
    obj_t *o = arg;

    atomic_fetch_add_explicit(&o->pool, (int64_t)n, memory_order_relaxed);
}

static void
on_ratelimit_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    redisReply *rep = reply;
    obj_t *o = reply_obj(ac, reply, privdata);
    pf_redis_t *r;

    if (o == NULL) {
        return;
    }
    r = o->r;
    r->need_pump = true;
    if (rep->type == REDIS_REPLY_ERROR) {
        error_reply(r, ac, rep);
        return;
    }
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
        !int_reply(rep->element[0], 0, 2 * (long long)o->batch) ||
        !int_reply(rep->element[1], 0, 3600LL * 1000000)) {
        bad_reply(r, ac, o->name);
        return;
    }
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

static void
pump_ratelimit(pf_redis_t *r, obj_t *o, int64_t now, int64_t *due)
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

    if (r == NULL || cfg == NULL || out == NULL || cfg->shared != NULL ||
        cfg->sync != NULL || !name_ok(cfg->name)) {
        return PF_EINVAL;
    }
    rc = obj_new(r, OBJ_RATELIMIT, cfg->name, &o);
    if (rc != 0) {
        return rc;
    }
    memset(&sync, 0, sizeof(sync));
    sync.take = hook_take;
    sync.give = hook_give;
    sync.detach = hook_detach;
    sync.arg = o;
    c = *cfg;
    c.sync = &sync;
    rc = pf_ratelimit_new(&c, &rl);
    if (rc != 0) {
        obj_free(o);
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
    o->next = r->objs;
    r->objs = o;
    r->need_pump = true;
    pthread_mutex_unlock(&r->mu);
    wake(r);
    *out = rl;
    return 0;
}

/* ---- bulkheads ------------------------------------------------------------ */

/* The lease ran out here (no renewal came in time): admit nothing on it.
 * Under mu. */
static void
expire_lease(pf_redis_t *r, obj_t *o, int64_t now)
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
                want_more(o);
            }
            return PF_SYNC_GRANT;
        }
    }
    if (atomic_load_explicit(&r->up, memory_order_relaxed)) {
        note_peak(o, u + 1); /* the lease should have held one more */
        want_more(o);
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

static void
on_bulkhead_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    redisReply *rep = reply;
    obj_t *o = reply_obj(ac, reply, privdata);
    pf_redis_t *r;
    uint64_t tk;
    int64_t g;

    if (o == NULL) {
        return;
    }
    r = o->r;
    r->need_pump = true;
    if (rep->type == REDIS_REPLY_ERROR) {
        error_reply(r, ac, rep);
        return;
    }
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 4 ||
        !int_reply(rep->element[0], 0, o->limit) ||
        !int_reply(rep->element[1], 1, INT64_MAX) ||
        !int_reply(rep->element[2], 0, INT64_MAX) ||
        !int_reply(rep->element[3], 0, 1)) {
        bad_reply(r, ac, o->name);
        return;
    }
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

static void
pump_bulkhead(pf_redis_t *r, obj_t *o, int64_t now, int64_t *due)
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

    if (r == NULL || cfg == NULL || out == NULL || cfg->shared != NULL ||
        cfg->sync != NULL || !name_ok(cfg->name)) {
        return PF_EINVAL;
    }
    rc = obj_new(r, OBJ_BULKHEAD, cfg->name, &o);
    if (rc != 0) {
        return rc;
    }
    o->fence_key = malloc(strlen(o->key) + sizeof(":fence"));
    if (o->fence_key == NULL) {
        obj_free(o);
        return PF_ENOMEM;
    }
    sprintf(o->fence_key, "%s:fence", o->key);
    memset(&sync, 0, sizeof(sync));
    sync.take = hook_bh_take;
    sync.give = hook_bh_give;
    sync.detach = hook_detach;
    sync.arg = o;
    c = *cfg;
    c.sync = &sync;
    rc = pf_bulkhead_new(&c, &bh);
    if (rc != 0) {
        obj_free(o);
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
    o->next = r->objs;
    r->objs = o;
    r->need_pump = true;
    pthread_mutex_unlock(&r->mu);
    wake(r);
    *out = bh;
    return 0;
}

/* ---- retry budgets --------------------------------------------------------- */

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

static void
on_budget_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    redisReply *rep = reply;
    obj_t *o = reply_obj(ac, reply, privdata);
    pf_redis_t *r;

    if (o == NULL) {
        return;
    }
    r = o->r;
    r->need_pump = true;
    if (rep->type == REDIS_REPLY_ERROR) {
        error_reply(r, ac, rep);
        return;
    }
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
        !int_reply(rep->element[0], 0, INT64_MAX) ||
        !int_reply(rep->element[1], 0, INT64_MAX)) {
        bad_reply(r, ac, o->name);
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
static void
pump_budget(pf_redis_t *r, obj_t *o, int64_t now, int64_t *due)
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

    if (r == NULL || cfg == NULL || out == NULL || cfg->shared != NULL ||
        cfg->sync != NULL || !name_ok(cfg->name)) {
        return PF_EINVAL;
    }
    rc = obj_new(r, OBJ_BUDGET, cfg->name, &o);
    if (rc != 0) {
        return rc;
    }
    memset(&sync, 0, sizeof(sync));
    sync.budget_others = hook_budget_others;
    sync.detach = hook_detach;
    sync.arg = o;
    c = *cfg;
    c.sync = &sync;
    atomic_init(&o->others_calls, 0);
    atomic_init(&o->others_retries, 0);
    pthread_mutex_lock(&r->mu); /* the pump may read o->budget from now */
    rc = pf_retry_budget_new(&c, &o->budget);
    if (rc != 0) {
        pthread_mutex_unlock(&r->mu);
        obj_free(o);
        return rc;
    }
    /* A report lasts a window (counts older are out of every window)
     * plus two intervals (a late renewal does not drop it early). */
    o->report_ns = (int64_t)(cfg->window * 1e9) + 2 * r->sync_ns;
    snprintf(o->holder, sizeof(o->holder), "%s.%u", r->id, ++r->next_holder);
    o->next = r->objs;
    r->objs = o;
    r->need_pump = true;
    *out = o->budget;
    pthread_mutex_unlock(&r->mu);
    wake(r);
    return 0;
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
            expire_lease(r, o, now);
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
                pump_breaker(r, o, now);
                if (!o->inflight && o->next_sync_ns < due) {
                    due = o->next_sync_ns;
                }
            } else if (o->kind == OBJ_RATELIMIT) {
                pump_ratelimit(r, o, now, &due);
            } else if (o->kind == OBJ_BULKHEAD) {
                pump_bulkhead(r, o, now, &due);
            } else {
                pump_budget(r, o, now, &due);
            }
        }
    }
    if (due <= now) {
        due = now + 1;
    }
    arm_tick(r, due);
}
