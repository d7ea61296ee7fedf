/* What the files of puffinflow-redis share: the store, its objects and
 * its two connections. Everything here is guarded by the store's mutex
 * (mu) unless its comment says otherwise. */
#ifndef PF_REDIS_IMPL_H
#define PF_REDIS_IMPL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "puffinflow/redis.h"
#include "puffinflow/sync.h"

enum {
    SCRIPT_BREAKER,
    SCRIPT_RATELIMIT,
    SCRIPT_BULKHEAD,
    SCRIPT_BUDGET,
    SCRIPT_COUNT
};

/* A connection's life: CONNECTING (setup commands out) -> READY; any ->
 * gone (the conn record lives on until its waits have ended). */
typedef enum conn_phase { CONN_CONNECTING, CONN_READY } conn_phase_t;

struct conn;

/* One direction of a connection's socket: a one-shot fd wait on the
 * executor, re-armed while hiredis wants that direction. */
typedef struct side {
    struct conn *c;
    pf_wait_t *w;  /* the armed wait, or NULL */
    bool want;     /* hiredis asked for it (addRead/addWrite) */
    unsigned ev;   /* PF_WAIT_READABLE or PF_WAIT_WRITABLE */
} side_t;

typedef struct conn {
    pf_redis_t *r;
    redisAsyncContext *ac; /* NULL once hiredis freed it */
    bool sub;              /* the subscribed connection */
    conn_phase_t phase;
    side_t rd;
    side_t wr;
    int refs;          /* armed waits, + 1 while ac lives */
    int setup_left;    /* setup replies still to come */
    int outstanding;   /* commands without a reply yet */
    int64_t started_ns;   /* when connecting began */
    int64_t progress_ns;  /* last reply, or when outstanding left 0 */
    bool broken;          /* an fd wait could not be armed: drop it */
} conn_t;

typedef enum obj_kind {
    OBJ_BREAKER,
    OBJ_RATELIMIT,
    OBJ_BULKHEAD,
    OBJ_BUDGET
} obj_kind_t;

/* One object kept in step through the store. */
typedef struct obj {
    struct obj *next;
    pf_redis_t *r;
    obj_kind_t kind;
    char *name;
    char *key;
    bool inflight;  /* a script call for it is out */
    bool sent_change; /* ... and it is a breaker change (not a compare) */
    bool zombie;    /* its object was freed while inflight: free at reply */

    /* breakers */
    pf_breaker_t *b;
    uint64_t gen;          /* the generation last agreed with Redis */
    int64_t next_sync_ns;  /* when to compare with Redis next */
    pthread_mutex_t pmu;   /* guards the pending change (the hook's side:
                              taken under the breaker's lock, never with
                              a call into the breaker) */
    bool pend;
    int pend_state;
    int64_t pend_open_ns;

    /* rate limiters */
    double rate;
    unsigned burst;
    unsigned batch;          /* permits asked for at a time */
    _Atomic int64_t pool;    /* permits lent and not yet used */
    _Atomic bool want;       /* the pool ran low: borrow */
    int64_t retry_ns;        /* Redis had none: not before then */

    /* bulkheads (pool: the places leased; want and retry_ns as above) */
    unsigned limit;          /* max_concurrent_calls, for all processes */
    unsigned headroom;       /* places asked for beyond those in use */
    char holder[48];         /* this object's field in the lease hash */
    char *fence_key;
    _Atomic int64_t in_use;  /* admitted calls not yet left */
    _Atomic int64_t peak;    /* most places wanted at once lately */
    _Atomic bool lease_ok;   /* the lease is valid (not expired here) */
    uint64_t token;          /* fencing token of the lease, 0 = none */
    uint64_t seq;            /* requests sent */
    int64_t lease_until_ns;  /* here, the lease is good until then */
    int64_t sent_ns;         /* when the request out was sent */

    /* retry budgets (holder as above) */
    pf_retry_budget_t *budget;
    int64_t report_ns;       /* how long a report of ours lasts in Redis */
    _Atomic uint64_t others_calls;   /* the others' window, last learned */
    _Atomic uint64_t others_retries;
} obj_t;

/* A one-shot timer of the store; the current one is r->tick. */
typedef struct tick {
    pf_redis_t *r;
    pf_wait_t *w;
    int64_t due_ns;
} tick_t;

/* Indices of r->m, in pf_redis_metrics_t's order after `up`. */
enum {
    M_CONNECTS, M_DISCONNECTS, M_CONNECT_FAILURES, M_TIMEOUTS, M_BAD_REPLIES,
    M_COMMANDS, M_SENT, M_LOST, M_APPLIED, M_PUSHES, M_RESEEDS, M_BORROWED,
    M_LOCAL, M_CLOSED, M_LEASES_LOST, M_LEASES_EXPIRED, M_REPLIES, M_COUNT
};

struct pf_redis {
    pthread_mutex_t mu;
    pthread_cond_t idle;   /* pending reached 0 while closing */
    pf_executor_t *ex;
    const pf_clock_t *clock;
    char *host;
    int port;
    char *unix_socket;
    char *user;
    char *password;
    int db;
    char *prefix;
    char *channel;
    char id[24];           /* this store's origin tag in published changes */
    int64_t sync_ns;
    int64_t connect_ns;
    int64_t command_ns;
    pf_redis_policy_t rl_policy;
    pf_redis_policy_t bh_policy;
    int64_t lease_ns;
    unsigned next_holder;  /* numbers this store's bulkhead holders */
    pf_redis_listener_fn listener;
    void *listener_arg;

    conn_t *cmd;           /* NULL = none */
    conn_t *subc;          /* NULL = none */
    char sha[SCRIPT_COUNT][41];
    int64_t next_connect_ns;
    obj_t *objs;
    tick_t *tick;          /* the armed timer, or NULL */
    _Atomic int pending;   /* waits and tasks that will still call back */
    bool draining;         /* pf_redis_free: no new work */
    bool closing;          /* ... and no more I/O handled */
    bool need_pump;
    _Atomic bool up;       /* read lock-free by the limiter's take */
    _Atomic bool wake_queued;

    /* metrics: counters written under mu, read with relaxed loads */
    _Atomic uint64_t m[M_COUNT];
};


static inline void
pf__redis_count(pf_redis_t *r, int which, uint64_t n)
{
    atomic_fetch_add_explicit(&r->m[which], n, memory_order_relaxed);
}

#define MAX_NAME 200 /* an object's name, in bytes */
#define NS_PER_MS INT64_C(1000000)

/* ---- shared by the files of puffinflow-redis (all under mu unless said) */

/* redis.c: an object's name is 1..MAX_NAME printable bytes, no '|' or
 * space. */
bool pf__redis_name_ok(const char *p);

/* redis.c: a new object record of kind for name (its key made from the
 * prefix), not yet listed; 0, PF_ENOMEM or PF_ESYSTEM. Not under mu. */
int pf__redis_obj_new(pf_redis_t *r, obj_kind_t kind, const char *name,
                      obj_t **out);
void pf__redis_obj_free(obj_t *o);

/* redis.c: the start and the end of every kind's _new. obj_begin: PF_EINVAL
 * (r NULL, taken, a bad name) or obj_new's result; on 0, *sync zeroed
 * but for detach and arg (the record). Not under mu. obj_publish: under
 * mu, lists o, asks for a pump, and releases mu. */
int pf__redis_obj_begin(pf_redis_t *r, obj_kind_t kind, const char *name,
                        bool taken, pf_sync_t *sync, obj_t **out);
void pf__redis_obj_publish(pf_redis_t *r, obj_t *o);

/* redis.c: ask for a pump soon (a wake task); lock-free, never takes mu. */
void pf__redis_wake(pf_redis_t *r);

/* redis.c: o's pool or lease runs low: wake the pump once. Lock-free. */
void pf__redis_want_more(obj_t *o);

/* redis.c: every sync hook's detach (the object is being freed). Takes
 * mu. */
void pf__redis_detach(void *arg);

/* redis.c: reply checks. int_reply: an integer in [lo, hi]. bad_reply:
 * count, tell, drop the connection. error_reply: an error reply (server
 * error, NOSCRIPT): tell, drop (a new connection loads the scripts).
 * reply_obj: a script's reply for o arrived: o, or NULL when o was freed
 * meanwhile (then freed here) or the reply is NULL (connection gone). */
bool pf__redis_int_reply(const redisReply *e, long long lo, long long hi);
void pf__redis_bad_reply(pf_redis_t *r, redisAsyncContext *ac,
                         const char *what);
void pf__redis_error_reply(pf_redis_t *r, redisAsyncContext *ac,
                           const redisReply *rep);
obj_t *pf__redis_reply_obj(redisAsyncContext *ac, void *reply, obj_t *o);

/* redis.c: every script's reply. ints_reply: an array of exactly n
 * integers, the i-th in b[i] (pure). script_reply: reply_obj, then an
 * error reply handled (NULL). script_ok: ok, or the malformed reply
 * handled (false). */
typedef struct range {
    long long lo;
    long long hi;
} range_t;
bool pf__redis_ints_reply(const redisReply *rep, size_t n, const range_t *b);
obj_t *pf__redis_script_reply(redisAsyncContext *ac, void *reply,
                              void *privdata);
bool pf__redis_script_ok(redisAsyncContext *ac, obj_t *o, bool ok);

/* Each kind's check of its script's reply (pure; batch, limit: the
 * object's). */
bool pf__redis_breaker_reply_ok(const redisReply *rep);
bool pf__redis_ratelimit_reply_ok(const redisReply *rep, unsigned batch);
bool pf__redis_bulkhead_reply_ok(const redisReply *rep, unsigned limit);
bool pf__redis_budget_reply_ok(const redisReply *rep);

/* Each kind's file: send what is due for o (due: when the pump must run
 * again at the latest, lowered as needed). */
void pf__redis_pump_breaker(pf_redis_t *r, obj_t *o, int64_t now);
void pf__redis_pump_ratelimit(pf_redis_t *r, obj_t *o, int64_t now,
                              int64_t *due);
void pf__redis_pump_bulkhead(pf_redis_t *r, obj_t *o, int64_t now,
                             int64_t *due);
void pf__redis_pump_budget(pf_redis_t *r, obj_t *o, int64_t now,
                           int64_t *due);

/* redis_breaker.c: a change sent got no answer: send the view again. */
void pf__redis_breaker_requeue(obj_t *o);

/* redis_breaker.c: a message on the store's channel (subscribed
 * connection). parse_message: its pure part, the message read (false:
 * malformed). */
void pf__redis_on_message(pf_redis_t *r, const redisReply *rep);
typedef struct message {
    char buf[MAX_NAME + 128];
    const char *name;   /* the breaker's */
    const char *origin; /* the publishing store's id */
    unsigned long long gen;
    long long state;
    long long left;     /* open ms left, -1: forced open */
} message_t;
bool pf__redis_parse_message(const redisReply *rep, message_t *m);

/* redis_conn.c: the pure checks of the connections' replies. setup: an OK
 * status (AUTH, SELECT), or for a script a 40-digit lowercase hex SHA1.
 * sub: what the subscribed connection got (SUB_MESSAGE: element[2] is
 * the message, a string). */
bool pf__redis_setup_reply_ok(const redisReply *rep, bool script);

/* Replies come from a server we do not trust to be Redis. hiredis 0.14
 * allocates an array's element table as soon as it reads the count and
 * keeps buffering a bulk string until all of its claimed length is in:
 * pf__redis_reader_limits makes rd refuse an array of more than
 * PF__REDIS_MAX_ELEMENTS elements (the reader fails, the connection is
 * dropped), and pf__redis_reader_over says when rd holds more than
 * PF__REDIS_MAX_BUFFERED unread bytes (the caller drops the connection).
 * Every reply the store expects is a few elements and a few bytes. */
#define PF__REDIS_MAX_ELEMENTS 1024
#define PF__REDIS_MAX_BUFFERED ((size_t)1 << 20)
void pf__redis_reader_limits(redisReader *rd);
bool pf__redis_reader_over(const redisReader *rd);
typedef enum sub_reply { SUB_CONFIRMED, SUB_MESSAGE, SUB_BAD } sub_reply_t;
sub_reply_t pf__redis_sub_reply(const redisReply *rep);

/* redis_bulkhead.c: a lease ran out here; the bulkhead goes (places back
 * now). */
void pf__redis_expire_lease(pf_redis_t *r, obj_t *o, int64_t now);
void pf__redis_bulkhead_release(pf_redis_t *r, obj_t *o);

/* redis_conn.c: start a connection (cmd or sub) and attach it to the
 * executor. Returns it, or NULL (counted as a connect failure). */
conn_t *pf__redis_conn_open(pf_redis_t *r, bool sub);

/* Drop a connection: hiredis frees it, pending callbacks get NULL
 * replies. The caller has already cleared its pointer to c. */
void pf__redis_conn_drop(conn_t *c);

/* redis.c: do what is due (connect, time out, sync, borrow). Under mu. */
void pf__redis_pump(pf_redis_t *r);

/* redis.c: note the connection is gone (down), told by the adapter when
 * hiredis frees a context. Under mu. */
void pf__redis_conn_gone(pf_redis_t *r, conn_t *c);

/* redis.c: tell the listener. Under mu. */
void pf__redis_event(pf_redis_t *r, pf_redis_event_t ev, const char *detail);

/* One pending callback fewer; wakes pf_redis_free at the last. Under mu. */
static inline void
pf__redis_unpend(pf_redis_t *r)
{
    if (atomic_fetch_sub_explicit(&r->pending, 1, memory_order_acq_rel) == 1 &&
        r->closing) {
        pthread_cond_broadcast(&r->idle);
    }
}

/* The clock timers run on. */
int64_t pf__redis_now(const pf_redis_t *r);

#endif /* PF_REDIS_IMPL_H */
