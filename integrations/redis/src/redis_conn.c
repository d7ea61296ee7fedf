/* hiredis's asynchronous API driven from the executor's reactor.
 *
 * hiredis asks for read and write interest through its ev hooks
 * (addRead/delRead/addWrite/delWrite/cleanup); each direction here is a
 * one-shot pf_executor_wait_fd, re-armed after each readiness while
 * hiredis still wants it. A wait's completion runs on a worker: it takes
 * the store's mutex, lets hiredis read or write, then runs what the
 * replies asked for (pf__redis_pump). Every hiredis call happens under
 * the store's mutex, so one context is never used by two threads.
 *
 * Lifetime. A conn record is referenced by each armed wait and by its
 * hiredis context while that lives (cleanup drops it). It is freed when
 * the last reference goes, so a completion that arrives after hiredis
 * freed the context still finds the record.
 *
 * Setup. Connecting queues AUTH (when configured), SELECT (db not 0) and
 * either SCRIPT LOAD of each script (the command connection) or
 * SUBSCRIBE (the subscribed one); hiredis sends them once the socket
 * connects. The connection is READY when every setup reply came back
 * well-formed; any other reply drops it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis_impl.h"
#include "redis_scripts.h"

static void arm(side_t *s);

static void
maybe_free(conn_t *c)
{
    if (c->refs == 0) {
        free(c);
    }
}

static void
side_done(int result, void *arg)
{
    side_t *s = arg;
    conn_t *c = s->c;
    pf_redis_t *r = c->r;

    pthread_mutex_lock(&r->mu);
    pf_wait_free(s->w);
    s->w = NULL;
    if (result == 0 && c->ac != NULL && s->want && !r->closing) {
        if (s->ev == PF_WAIT_READABLE) {
            redisAsyncHandleRead(c->ac);
            if (c->ac != NULL && pf__redis_reader_over(c->ac->c.reader)) {
                pf__redis_count(r, M_BAD_REPLIES, 1);
                pf__redis_event(r, PF_REDIS_BAD_REPLY,
                                "a reply larger than 1 MiB");
                pf__redis_conn_drop(c);
            }
        } else {
            redisAsyncHandleWrite(c->ac);
        }
    }
    if (c->ac != NULL && s->want && s->w == NULL && !r->closing) {
        arm(s);
    }
    if (r->need_pump && !r->closing) {
        pf__redis_pump(r);
    }
    c->refs--;
    maybe_free(c);
    pf__redis_unpend(r);
    pthread_mutex_unlock(&r->mu);
}

/* Watch one direction. A failure to watch (out of memory, the executor
 * going away) drops the connection at the next pump. */
static void
arm(side_t *s)
{
    conn_t *c = s->c;
    pf_redis_t *r = c->r;

    if (s->w != NULL || c->ac == NULL || c->ac->c.fd < 0) {
        return;
    }
    if (pf_executor_wait_fd(r->ex, c->ac->c.fd, s->ev, NULL, side_done, s,
                            &s->w) != 0) {
        s->w = NULL;
        c->broken = true; /* the pump drops it */
        r->need_pump = true;
        return;
    }
    c->refs++;
    atomic_fetch_add_explicit(&r->pending, 1, memory_order_relaxed);
}

static void
ev_add_read(void *p)
{
    conn_t *c = p;

    c->rd.want = true;
    arm(&c->rd);
}

static void
ev_del_read(void *p)
{
    ((conn_t *)p)->rd.want = false;
}

static void
ev_add_write(void *p)
{
    conn_t *c = p;

    c->wr.want = true;
    arm(&c->wr);
}

static void
ev_del_write(void *p)
{
    ((conn_t *)p)->wr.want = false;
}

/* hiredis is freeing the context (an error, the server closed, or our
 * drop): withdraw the waits and tell the store. */
static void
ev_cleanup(void *p)
{
    conn_t *c = p;
    pf_redis_t *r = c->r;

    c->ac = NULL;
    c->rd.want = false;
    c->wr.want = false;
    if (c->rd.w != NULL) {
        pf_wait_abort(c->rd.w);
    }
    if (c->wr.w != NULL) {
        pf_wait_abort(c->wr.w);
    }
    pf__redis_conn_gone(r, c);
    c->refs--;
    maybe_free(c);
}

/* ---- reply limits -------------------------------------------------------- */

static redisReplyObjectFunctions capped_fns;
static void *(*default_create_array)(const redisReadTask *, int);
static pthread_once_t capped_once = PTHREAD_ONCE_INIT;

static void *
capped_create_array(const redisReadTask *task, int elements)
{
    if (elements < 0 || elements > PF__REDIS_MAX_ELEMENTS) {
        return NULL; /* the reader fails: hiredis drops the connection */
    }
    return default_create_array(task, elements);
}

static void
capped_init(void)
{
    redisReader *rd = redisReaderCreate();

    if (rd != NULL) {
        capped_fns = *rd->fn;
        default_create_array = capped_fns.createArray;
        capped_fns.createArray = capped_create_array;
        redisReaderFree(rd);
    }
}

void
pf__redis_reader_limits(redisReader *rd)
{
    pthread_once(&capped_once, capped_init);
    if (rd != NULL && default_create_array != NULL) {
        rd->fn = &capped_fns;
    }
}

bool
pf__redis_reader_over(const redisReader *rd)
{
    return rd != NULL && rd->len > rd->pos &&
           rd->len - rd->pos > PF__REDIS_MAX_BUFFERED;
}

/* ---- setup -------------------------------------------------------------- */

static bool
is_ok_status(const redisReply *rep)
{
    return rep != NULL && rep->type == REDIS_REPLY_STATUS &&
           rep->len == 2 && rep->str != NULL && memcmp(rep->str, "OK", 2) == 0;
}

bool
pf__redis_setup_reply_ok(const redisReply *rep, bool script)
{
    bool good;

    if (!script) {
        return is_ok_status(rep);
    }
    good = rep != NULL && rep->type == REDIS_REPLY_STRING && rep->len == 40 &&
           rep->str != NULL;
    for (int i = 0; good && i < 40; i++) {
        char ch = rep->str[i];

        good = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f');
    }
    return good;
}

/* A setup step answered: all well, one step closer to READY; otherwise
 * drop the connection. privdata: the step (-1 AUTH or SELECT, else the
 * script's index). */
static void
on_setup(redisAsyncContext *ac, void *reply, void *privdata)
{
    conn_t *c = ac->ev.data;
    pf_redis_t *r = c->r;
    redisReply *rep = reply;
    intptr_t step = (intptr_t)privdata;
    bool good;

    c->outstanding--;
    c->progress_ns = pf__redis_now(r);
    if (rep == NULL || c->ac == NULL) {
        return; /* being freed */
    }
    pf__redis_count(r, M_REPLIES, 1);
    good = pf__redis_setup_reply_ok(rep, step >= 0);
    if (good && step >= 0) {
        memcpy(r->sha[step], rep->str, 40);
        r->sha[step][40] = '\0';
    }
    if (!good) {
        if (rep->type == REDIS_REPLY_ERROR) {
            pf__redis_event(r, PF_REDIS_DOWN, rep->str);
        } else {
            pf__redis_count(r, M_BAD_REPLIES, 1);
            pf__redis_event(r, PF_REDIS_BAD_REPLY, "setup");
        }
        redisAsyncFree(ac); /* deferred by hiredis until we return */
        return;
    }
    if (--c->setup_left == 0) {
        c->phase = CONN_READY;
        r->need_pump = true;
    }
}

sub_reply_t
pf__redis_sub_reply(const redisReply *rep)
{
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 3 &&
        rep->element[0]->type == REDIS_REPLY_STRING &&
        rep->element[0]->len == 9 &&
        memcmp(rep->element[0]->str, "subscribe", 9) == 0) {
        return SUB_CONFIRMED;
    }
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 3 &&
        rep->element[0]->type == REDIS_REPLY_STRING &&
        rep->element[0]->len == 7 &&
        memcmp(rep->element[0]->str, "message", 7) == 0 &&
        rep->element[2]->type == REDIS_REPLY_STRING) {
        return SUB_MESSAGE;
    }
    return SUB_BAD;
}

/* The subscribed connection's replies: the subscription's confirmation,
 * then messages (redis_breaker.c reads them). */
static void
on_sub(redisAsyncContext *ac, void *reply, void *privdata)
{
    conn_t *c = ac->ev.data;
    pf_redis_t *r = c->r;
    redisReply *rep = reply;
    sub_reply_t kind;

    (void)privdata;
    if (rep == NULL || c->ac == NULL) {
        return;
    }
    kind = pf__redis_sub_reply(rep);
    if (kind == SUB_CONFIRMED) {
        c->outstanding = 0;
        c->progress_ns = pf__redis_now(r);
        pf__redis_count(r, M_REPLIES, 1);
        if (c->phase == CONN_CONNECTING && --c->setup_left == 0) {
            c->phase = CONN_READY;
        }
        return;
    }
    if (kind == SUB_MESSAGE) {
        pf__redis_on_message(r, rep->element[2]);
        return;
    }
    pf__redis_count(r, M_BAD_REPLIES, 1);
    pf__redis_event(r, PF_REDIS_BAD_REPLY, "subscription");
    redisAsyncFree(ac);
}

static int
send_setup(conn_t *c)
{
    pf_redis_t *r = c->r;
    redisAsyncContext *ac = c->ac;
    int rc = REDIS_OK;

    if (r->password != NULL && r->user != NULL) {
        rc |= redisAsyncCommand(ac, on_setup, (void *)(intptr_t)-1,
                                "AUTH %s %s", r->user, r->password);
        c->setup_left++;
    } else if (r->password != NULL) {
        rc |= redisAsyncCommand(ac, on_setup, (void *)(intptr_t)-1,
                                "AUTH %s", r->password);
        c->setup_left++;
    }
    if (r->db != 0) {
        rc |= redisAsyncCommand(ac, on_setup, (void *)(intptr_t)-1,
                                "SELECT %d", r->db);
        c->setup_left++;
    }
    if (c->sub) {
        rc |= redisAsyncCommand(ac, on_sub, NULL, "SUBSCRIBE %s", r->channel);
        c->setup_left++;
        c->outstanding += c->setup_left;
    } else {
        for (intptr_t i = 0; i < SCRIPT_COUNT; i++) {
            rc |= redisAsyncCommand(ac, on_setup, (void *)i, "SCRIPT LOAD %s",
                                    pf__redis_scripts[i]);
            c->setup_left++;
        }
        c->outstanding += c->setup_left;
    }
    pf__redis_count(r, M_COMMANDS, (uint64_t)c->setup_left);
    return rc == REDIS_OK ? 0 : -1;
}

conn_t *
pf__redis_conn_open(pf_redis_t *r, bool sub)
{
    conn_t *c = calloc(1, sizeof(*c));
    redisAsyncContext *ac;

    if (c == NULL) {
        pf__redis_count(r, M_CONNECT_FAILURES, 1);
        return NULL;
    }
    ac = r->unix_socket != NULL ? redisAsyncConnectUnix(r->unix_socket)
                                : redisAsyncConnect(r->host, r->port);
    if (ac == NULL || ac->err != 0) {
        if (ac != NULL) {
            pf__redis_event(r, PF_REDIS_DOWN, ac->errstr);
            redisAsyncFree(ac);
        }
        free(c);
        pf__redis_count(r, M_CONNECT_FAILURES, 1);
        return NULL;
    }
    pf__redis_reader_limits(ac->c.reader);
    c->r = r;
    c->ac = ac;
    c->sub = sub;
    c->phase = CONN_CONNECTING;
    c->refs = 1;
    c->rd.c = c;
    c->rd.ev = PF_WAIT_READABLE;
    c->wr.c = c;
    c->wr.ev = PF_WAIT_WRITABLE;
    c->started_ns = pf__redis_now(r);
    c->progress_ns = c->started_ns;
    ac->ev.data = c;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    /* The connect is under way: hiredis wants to know when the socket is
     * writable (it did not call addWrite: no hooks were set then). */
    ev_add_write(c);
    if (send_setup(c) != 0) {
        pf__redis_conn_drop(c);
        pf__redis_count(r, M_CONNECT_FAILURES, 1);
        return NULL;
    }
    return c;
}

void
pf__redis_conn_drop(conn_t *c)
{
    if (c->ac != NULL) {
        redisAsyncFree(c->ac); /* calls ev_cleanup, which may free c */
    }
}
