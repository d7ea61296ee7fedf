/* The Redis store's breakers: the sync hook's side (a change noted under
 * the breaker's lock), the changes and comparisons sent to the breaker
 * script, the stored state taken when newer, and the published changes
 * of other processes. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "puffinflow/error.h"
#include "puffinflow/sync.h"
#include "redis_impl.h"

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
    pf__redis_wake(o->r);
}

int
pf_redis_breaker_new(pf_redis_t *r, const pf_breaker_config_t *cfg,
                     pf_breaker_t **out)
{
    pf_breaker_config_t c;
    pf_sync_t sync;
    obj_t *o;
    int rc;

    if (cfg == NULL || out == NULL) {
        return PF_EINVAL;
    }
    rc = pf__redis_obj_begin(r, OBJ_BREAKER, cfg->name,
                             cfg->shared != NULL || cfg->sync != NULL, &sync,
                             &o);
    if (rc != 0) {
        return rc;
    }
    sync.breaker_changed = hook_breaker_changed;
    c = *cfg;
    c.sync = &sync;
    pthread_mutex_lock(&r->mu); /* no remote change before it is listed */
    rc = pf_breaker_new(&c, &o->b);
    if (rc != 0) {
        pthread_mutex_unlock(&r->mu);
        pf__redis_obj_free(o);
        return rc;
    }
    o->next_sync_ns = 0; /* learn the stored state at once */
    *out = o->b;
    pf__redis_obj_publish(r, o);
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

static void breaker_view(obj_t *o, int *state, int64_t *open_ns);

/* A change sent whose answer never came (the connection went, or the
 * reply was an error or malformed): send the local view as a change
 * again, unless a newer change is waiting already. */
void
pf__redis_breaker_requeue(obj_t *o)
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

/* The script's answer: whether ours was taken, the generation, the
 * stored state, its open time left (-1: forced) and whether it reseeded. */
bool
pf__redis_breaker_reply_ok(const redisReply *rep)
{
    static const range_t b[] = {
        {0, 1}, {0, INT64_MAX}, {0, 2}, {-1, INT64_MAX}, {0, 1}};

    return pf__redis_ints_reply(rep, 5, b);
}

static void
on_breaker_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    redisReply *rep = reply;
    obj_t *o = pf__redis_script_reply(ac, reply, privdata);
    pf_redis_t *r;

    if (o == NULL ||
        !pf__redis_script_ok(ac, o, pf__redis_breaker_reply_ok(rep))) {
        return;
    }
    r = o->r;
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

void
pf__redis_pump_breaker(pf_redis_t *r, obj_t *o, int64_t now)
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

/* A published change: "B|name|gen|state|open ms|origin", read into m
 * (its strings point into m->buf); false when malformed. Pure. */
bool
pf__redis_parse_message(const redisReply *rep, message_t *m)
{
    char *f[6];
    int n = 0;
    char *p;
    char *end;

    if (rep->len <= 0 || (size_t)rep->len >= sizeof(m->buf) ||
        rep->str == NULL) {
        return false;
    }
    memcpy(m->buf, rep->str, (size_t)rep->len);
    m->buf[rep->len] = '\0';
    if (strlen(m->buf) != (size_t)rep->len) {
        return false; /* an embedded NUL */
    }
    p = m->buf;
    while (n < 6) {
        f[n++] = p;
        p = strchr(p, '|');
        if (p == NULL) {
            break;
        }
        *p++ = '\0';
    }
    if (n != 6 || p != NULL || strcmp(f[0], "B") != 0) {
        return false;
    }
    errno = 0;
    m->gen = strtoull(f[2], &end, 10);
    if (errno != 0 || *end != '\0' || f[2][0] == '\0' || f[2][0] == '-' ||
        m->gen > INT64_MAX) {
        return false;
    }
    m->state = strtoll(f[3], &end, 10);
    if (*end != '\0' || f[3][0] == '\0' || m->state < 0 || m->state > 2) {
        return false;
    }
    errno = 0;
    m->left = strtoll(f[4], &end, 10);
    if (errno != 0 || *end != '\0' || f[4][0] == '\0' || m->left < -1) {
        return false;
    }
    m->name = f[1];
    m->origin = f[5];
    return true;
}

/* A published change. Ours, unknown names and older generations are
 * ignored; anything malformed is counted. */
void
pf__redis_on_message(pf_redis_t *r, const redisReply *rep)
{
    message_t m;
    obj_t *o;

    if (!pf__redis_parse_message(rep, &m)) {
        pf__redis_count(r, M_BAD_REPLIES, 1);
        pf__redis_event(r, PF_REDIS_BAD_REPLY, "published message");
        return;
    }
    pf__redis_count(r, M_PUSHES, 1);
    if (strcmp(m.origin, r->id) == 0) {
        return;
    }
    o = find_breaker(r, m.name, strlen(m.name));
    if (o != NULL) {
        apply_remote(o, m.gen, m.state, m.left);
    }
}
