/* The Redis store against a real redis-server on loopback, started by the
 * test (redis_server.h), with helper processes (redis_helper, fork +
 * exec) sharing its breakers and limiters; and against a fake server
 * only where a real one cannot help: replies that are garbage.
 *
 * Waits for conditions are polls with a generous ceiling (wait_for), never
 * a fixed sleep standing in for an assertion. */
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include "puffinflow/redis.h"
#include "puffinflow/shared.h"
#include "redis_testutil.h"
#include "test.h"

#define CEILING_NS INT64_C(20000000000)

static rs_server_t g_srv;
static rs_server_t g_srv2; /* the password-protected one, while it runs */
static pf_executor_t *g_ex;

static int
setup(void **state)
{
    pf_executor_config_t ec;

    (void)state;
    signal(SIGPIPE, SIG_IGN);
    /* Never a skip: a missing server binary fails the group. */
    if (rs_start(&g_srv, "/usr/bin/redis-check-rdb") != 0) {
        fprintf(stderr, "test_redis: could not start redis-server\n");
        return -1;
    }
    pf_executor_config_init(&ec);
    ec.workers = 2;
    return pf_executor_new(&ec, &g_ex) == 0 ? 0 : -1;
}

static int
teardown(void **state)
{
    (void)state;
    pf_executor_free(g_ex);
    rs_stop(&g_srv);
    rs_stop(&g_srv2); /* left running only by a failed test */
    return 0;
}

/* Poll cond(arg) every millisecond until it holds; false after the
 * ceiling. */
static bool
wait_for(bool (*cond)(void *), void *arg)
{
    int64_t until = rs_now_ns() + CEILING_NS;

    while (!cond(arg)) {
        if (rs_now_ns() > until) {
            return false;
        }
        rs_sleep_ms(1);
    }
    return true;
}

static bool
is_up(void *arg)
{
    return rt_store_up(arg);
}

static bool
is_down(void *arg)
{
    return !is_up(arg);
}

/* PF_REDIS_TRACE=1 prints the stores' events, for debugging. */
static void
trace(pf_redis_event_t ev, const char *detail, void *arg)
{
    static const char *const names[] = {"up", "down", "bad reply", "timeout",
                                        "reseeded"};

    fprintf(stderr, "[%s] %s: %s\n", (const char *)arg, names[ev], detail);
}

static pf_redis_t *
new_store_ttl(const char *prefix, int port, double lease_ttl)
{
    pf_redis_config_t cfg;
    pf_redis_t *r = NULL;

    pf_redis_config_init(&cfg);
    cfg.lease_ttl = lease_ttl;
    if (getenv("PF_REDIS_TRACE") != NULL) {
        cfg.listener = trace;
        cfg.listener_arg = (void *)prefix;
    }
    cfg.executor = g_ex;
    cfg.port = port;
    cfg.prefix = prefix;
    assert_int_equal(pf_redis_new(&cfg, &r), 0);
    return r;
}

static pf_redis_t *
new_store(const char *prefix, int port)
{
    return new_store_ttl(prefix, port, 5.0);
}

static void
trip(pf_breaker_t *b)
{
    for (int i = 0; i < 3; i++) {
        pf_permit_t p = PF_PERMIT_INIT;

        assert_int_equal(pf_breaker_acquire(b, &p), 0);
        pf_breaker_record(b, &p, -1);
    }
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_OPEN);
}

static void
spawn_helper(rs_child_t *ch, const char *mode, const char *prefix,
             const char *name, const char *a, const char *b, const char *c)
{
    const char *helper = getenv("PF_REDIS_HELPER");

    assert_non_null(helper);
    assert_int_equal(rt_spawn_helper(ch, helper, g_srv.port, mode, prefix,
                                     name, a, b, c, NULL),
                     0);
}

/* ---- bad input ------------------------------------------------------------ */

static void
test_redis_bad_input(void **state)
{
    pf_redis_config_t cfg;
    pf_redis_t *r = NULL;
    pf_breaker_config_t bc;
    pf_ratelimit_config_t rc;
    pf_shared_config_t sc;
    pf_breaker_t *b = NULL;
    pf_ratelimit_t *rl = NULL;
    const char *names[] = {"", "a|b", "a b", "tab\t", NULL};

    (void)state;
    pf_redis_config_init(NULL);
    pf_redis_config_init(&cfg);
    assert_int_equal(pf_redis_new(NULL, &r), PF_EINVAL);
    assert_int_equal(pf_redis_new(&cfg, NULL), PF_EINVAL);
    assert_int_equal(pf_redis_new(&cfg, &r), PF_EINVAL); /* no executor */
    cfg.executor = g_ex;
#define BAD(field, value)                                                      \
    do {                                                                       \
        pf_redis_config_t c2 = cfg;                                            \
        c2.field = value;                                                      \
        assert_int_equal(pf_redis_new(&c2, &r), PF_EINVAL);                    \
    } while (0)
    BAD(port, 0);
    BAD(port, 65536);
    BAD(host, NULL);
    BAD(host, "");
    BAD(prefix, NULL);
    BAD(prefix, "");
    BAD(prefix, "has space");
    BAD(unix_socket, "relative.sock");
    BAD(sync_interval, 0.0);
    BAD(sync_interval, -1.0);
    BAD(sync_interval, NAN);
    BAD(sync_interval, 61.0);
    BAD(connect_timeout, 0.0);
    BAD(command_timeout, NAN);
    BAD(db, -1);
    BAD(user, "alice"); /* a user without a password */
    BAD(ratelimit_policy, (pf_redis_policy_t)7);
    BAD(bulkhead_policy, (pf_redis_policy_t)-1);
    BAD(lease_ttl, 0.2); /* not above 2 x sync_interval */
    BAD(lease_ttl, NAN);
#undef BAD
    cfg.tls = true;
    assert_int_equal(pf_redis_new(&cfg, &r), PF_ENOTSUP);
    assert_null(r);
    cfg.tls = false;

    /* A store whose server is not there: objects work locally. */
    cfg.port = rs_free_port();
    assert_int_equal(pf_redis_new(&cfg, &r), 0);
    rt_trip_config(&bc, "x");
    assert_int_equal(pf_redis_breaker_new(NULL, &bc, &b), PF_EINVAL);
    assert_int_equal(pf_redis_breaker_new(r, NULL, &b), PF_EINVAL);
    assert_int_equal(pf_redis_breaker_new(r, &bc, NULL), PF_EINVAL);
    for (int i = 0; names[i] != NULL; i++) {
        bc.name = names[i];
        assert_int_equal(pf_redis_breaker_new(r, &bc, &b), PF_EINVAL);
    }
    bc.name = "x";
    pf_shared_config_init(&sc);
    sc.name = "x";
    bc.shared = &sc;
    assert_int_equal(pf_redis_breaker_new(r, &bc, &b), PF_EINVAL);
    bc.shared = NULL;
    bc.failure_threshold = 0; /* pf_breaker_new's own rules */
    assert_int_equal(pf_redis_breaker_new(r, &bc, &b), PF_EINVAL);
    assert_null(b);

    pf_ratelimit_config_init(&rc);
    rc.name = "y";
    rc.rate = 0.0;
    assert_int_equal(pf_redis_ratelimit_new(r, &rc, &rl), PF_EINVAL);
    rc.rate = 10.0;
    rc.name = "a|b";
    assert_int_equal(pf_redis_ratelimit_new(r, &rc, &rl), PF_EINVAL);
    assert_null(rl);
    {
        pf_bulkhead_config_t hc;
        pf_bulkhead_t *bh = NULL;

        pf_bulkhead_config_init(&hc);
        hc.name = "z";
        hc.max_concurrent_calls = 0;
        assert_int_equal(pf_redis_bulkhead_new(r, &hc, &bh), PF_EINVAL);
        hc.max_concurrent_calls = 1;
        hc.name = "";
        assert_int_equal(pf_redis_bulkhead_new(r, &hc, &bh), PF_EINVAL);
        assert_int_equal(pf_redis_bulkhead_new(NULL, &hc, &bh), PF_EINVAL);
        assert_null(bh);
        /* Down from the start, no lease: the local limit decides
         * (PF_REDIS_LOCAL). */
        hc.name = "z";
        assert_int_equal(pf_redis_bulkhead_new(r, &hc, &bh), 0);
        assert_int_equal(pf_bulkhead_try_enter(bh), 0);
        assert_int_equal(pf_bulkhead_try_enter(bh), PF_EFULL);
        pf_bulkhead_leave(bh);
        pf_bulkhead_free(bh);
    }

    /* Down from the start: the breaker decides locally, the limiter falls
     * back to its local bucket (PF_REDIS_LOCAL). */
    rt_trip_config(&bc, "x");
    assert_int_equal(pf_redis_breaker_new(r, &bc, &b), 0);
    trip(b);
    rc.name = "y";
    rc.burst = 2;
    assert_int_equal(pf_redis_ratelimit_new(r, &rc, &rl), 0);
    assert_int_equal(pf_ratelimit_try_acquire(rl, 1), 0);
    assert_int_equal(pf_ratelimit_try_acquire(rl, 1), 0);
    assert_int_equal(pf_ratelimit_try_acquire(rl, 1), PF_ERATELIMIT);
    pf_breaker_free(b);
    pf_ratelimit_free(rl);
    pf_redis_free(r);
    pf_redis_free(NULL);
    pf_redis_metrics(NULL, NULL);
}

/* ---- breakers across processes -------------------------------------------- */

/* Three processes share one breaker: the test trips it; the two helpers
 * hear of it through the published change, long before any sync. */
static void
test_redis_trip_is_pushed(void **state)
{
    rs_child_t ch[2];
    char line[128];
    pf_redis_t *r;
    pf_breaker_config_t bc;
    pf_breaker_t *b;
    pf_redis_metrics_t m;

    (void)state;
    for (int i = 0; i < 2; i++) {
        spawn_helper(&ch[i], "watch", "t1", "payments", NULL, NULL, NULL);
    }
    r = new_store("t1", g_srv.port);
    rt_trip_config(&bc, "payments");
    assert_int_equal(pf_redis_breaker_new(r, &bc, &b), 0);
    assert_true(wait_for(is_up, r));
    for (int i = 0; i < 2; i++) {
        assert_int_equal(rs_line(&ch[i], line, sizeof(line)), 0);
        assert_string_equal(line, "ready");
    }
    trip(b);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(rs_line(&ch[i], line, sizeof(line)), 0);
        assert_true(strncmp(line, "open ", 5) == 0);
        rs_say(&ch[i], "bye");
        assert_int_equal(rs_reap(&ch[i]), 0);
    }
    pf_redis_metrics(r, &m);
    assert_true(m.transitions_sent >= 1);
    assert_int_equal(m.bad_replies, 0);
    assert_int_equal(rs_hget_int(&g_srv, "t1:breaker:payments", "state", -1),
                     PF_BREAKER_OPEN);
    pf_breaker_free(b);
    pf_redis_free(r);
}

/* A change made on a stale generation loses: two processes' breakers
 * disagree, the one that wrote first wins and the other takes its state. */
static void
test_redis_stale_change_loses(void **state)
{
    pf_redis_t *r1;
    pf_redis_t *r2;
    pf_breaker_config_t bc;
    pf_breaker_t *b1;
    pf_breaker_t *b2;
    pf_redis_metrics_t m;
    int64_t until;

    (void)state;
    r1 = new_store("t2", g_srv.port);
    r2 = new_store("t2", g_srv.port);
    rt_trip_config(&bc, "svc");
    assert_int_equal(pf_redis_breaker_new(r1, &bc, &b1), 0);
    assert_int_equal(pf_redis_breaker_new(r2, &bc, &b2), 0);
    assert_true(wait_for(is_up, r1));
    assert_true(wait_for(is_up, r2));
    trip(b1); /* generation 1: OPEN, pushed to r2 */
    until = rs_now_ns() + CEILING_NS;
    while (pf_breaker_state(b2) != PF_BREAKER_OPEN && rs_now_ns() < until) {
        rs_sleep_ms(1);
    }
    assert_int_equal(pf_breaker_state(b2), PF_BREAKER_OPEN);
    /* b2 closes by hand on what it knows (generation 1): it wins. */
    pf_breaker_force_close(b2);
    until = rs_now_ns() + CEILING_NS;
    while (pf_breaker_state(b1) != PF_BREAKER_CLOSED && rs_now_ns() < until) {
        rs_sleep_ms(1);
    }
    assert_int_equal(pf_breaker_state(b1), PF_BREAKER_CLOSED);
    assert_int_equal(rs_hget_int(&g_srv, "t2:breaker:svc", "gen", -1), 2);
    pf_redis_metrics(r1, &m);
    assert_true(m.remote_applied >= 1);
    pf_breaker_free(b1);
    pf_breaker_free(b2);
    pf_redis_free(r1);
    pf_redis_free(r2);
}

static bool
all_answered(void *arg)
{
    pf_redis_metrics_t m;

    pf_redis_metrics(arg, &m);
    return m.commands == m.replies;
}

static bool
stored_open(void *key)
{
    return rs_hget_int(&g_srv, key, "state", -1) == PF_BREAKER_OPEN;
}

static bool
reseeded(void *arg)
{
    pf_redis_metrics_t m;

    pf_redis_metrics(arg, &m);
    return m.up && m.reseeds > 0;
}

/* redis-server killed and started again empty: the store notices, keeps
 * the open breaker open meanwhile, writes its view back once Redis is up,
 * and a process that starts afterwards finds the breaker open. */
static void
test_redis_restart_reseeds(void **state)
{
    rs_child_t ch;
    char line[64];
    pf_redis_t *r;
    pf_breaker_config_t bc;
    pf_breaker_t *b;
    pf_permit_t p = PF_PERMIT_INIT;

    (void)state;
    r = new_store("t3", g_srv.port);
    rt_trip_config(&bc, "db");
    assert_int_equal(pf_redis_breaker_new(r, &bc, &b), 0);
    assert_true(wait_for(is_up, r));
    trip(b);
    assert_true(wait_for(stored_open, "t3:breaker:db"));
    /* Our change's reply is in too (the store knows generation 1): the
     * view written back after the restart is then a re-seed, not the
     * change sent again. */
    assert_true(wait_for(all_answered, r));
    rs_kill(&g_srv);
    assert_true(wait_for(is_down, r));
    assert_int_equal(pf_breaker_acquire(b, &p), PF_EOPEN); /* still local */
    assert_int_equal(rs_launch(&g_srv), 0);
    assert_int_equal(rs_hget_int(&g_srv, "t3:breaker:db", "state", -1), -1);
    assert_true(wait_for(reseeded, r));
    assert_int_equal(rs_hget_int(&g_srv, "t3:breaker:db", "state", -1),
                     PF_BREAKER_OPEN);
    spawn_helper(&ch, "check", "t3", "db", NULL, NULL, NULL);
    assert_int_equal(rs_line(&ch, line, sizeof(line)), 0);
    assert_string_equal(line, "open");
    assert_int_equal(rs_reap(&ch), 0);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_OPEN);
    pf_breaker_free(b);
    pf_redis_free(r);
}

/* ---- limiters across processes -------------------------------------------- */

/* Three processes draw on one limit of 200/s (burst 10) for 1 s each: the
 * total never exceeds what the bucket can give over the time they ran
 * (plus two batches each: lent before the start, or unused). */
static void
test_redis_limiter_total(void **state)
{
    enum { N = 3 };
    rs_child_t ch[N];
    char line[128];
    unsigned long long total = 0;
    int64_t t0;
    double secs;
    double most;

    (void)state;
    for (int i = 0; i < N; i++) {
        spawn_helper(&ch[i], "limit", "t4", "api", "200", "10", "1");
    }
    for (int i = 0; i < N; i++) {
        assert_int_equal(rs_line(&ch[i], line, sizeof(line)), 0);
        assert_string_equal(line, "ready");
    }
    t0 = rs_now_ns();
    for (int i = 0; i < N; i++) {
        rs_say(&ch[i], "go");
    }
    for (int i = 0; i < N; i++) {
        unsigned long long g = 0;
        unsigned long long calls = 0;

        assert_int_equal(rs_line(&ch[i], line, sizeof(line)), 0);
        assert_int_equal(sscanf(line, "granted %llu calls %llu", &g, &calls),
                         2);
        assert_true(g > 0);
        assert_true(calls > g);
        total += g;
    }
    secs = (double)(rs_now_ns() - t0) / 1e9;
    for (int i = 0; i < N; i++) {
        assert_int_equal(rs_reap(&ch[i]), 0);
    }
    most = 10 + 200.0 * secs + N * 2; /* two batches of 1 per process */
    printf("limiter: %llu granted in %.3f s from %d processes (most %.0f)\n",
           total, secs, N, most);
    assert_true((double)total <= most);
}

/* ---- bulkheads across processes ------------------------------------------- */

static long long
hash_len(const char *key)
{
    redisContext *c = rs_connect(&g_srv);
    redisReply *rep;
    long long n = -1;

    if (c == NULL) {
        return -1;
    }
    rep = redisCommand(c, "HLEN %s", key);
    if (rep != NULL && rep->type == REDIS_REPLY_INTEGER) {
        n = rep->integer;
    }
    if (rep != NULL) {
        freeReplyObject(rep);
    }
    redisFree(c);
    return n;
}

/* Three processes enter one bulkhead of 4 as fast as they can for 1 s,
 * each counting itself in a counter the three map from one file: never
 * more than 4 inside at once. Afterwards no lease is left in Redis. */
static void
test_redis_bulkhead_limit(void **state)
{
    enum { N = 3 };
    rs_child_t ch[N];
    char line[128];
    char file[96];
    int fd;
    int zero[2] = {0, 0};
    int *in;
    unsigned long long total = 0;

    (void)state;
    snprintf(file, sizeof(file), "%s/inside", g_srv.dir);
    fd = open(file, O_RDWR | O_CREAT, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, zero, sizeof(zero)), (ssize_t)sizeof(zero));
    in = mmap(NULL, sizeof(zero), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    assert_true(in != MAP_FAILED);
    for (int i = 0; i < N; i++) {
        spawn_helper(&ch[i], "bulk", "t7", "pool", "4", "1", file);
    }
    for (int i = 0; i < N; i++) {
        assert_int_equal(rs_line(&ch[i], line, sizeof(line)), 0);
        assert_string_equal(line, "ready");
    }
    for (int i = 0; i < N; i++) {
        rs_say(&ch[i], "go");
    }
    for (int i = 0; i < N; i++) {
        unsigned long long a = 0;
        unsigned long long f = 0;

        assert_int_equal(rs_line(&ch[i], line, sizeof(line)), 0);
        assert_int_equal(sscanf(line, "admitted %llu refused %llu", &a, &f),
                         2);
        total += a;
        assert_int_equal(rs_reap(&ch[i]), 0);
    }
    printf("bulkhead: %llu admitted, at most %d inside at once (limit 4)\n",
           total, in[1]);
    assert_true(total > 0);
    assert_true(in[1] >= 1);
    assert_true(in[1] <= 4);
    assert_int_equal(in[0], 0);
    assert_int_equal(hash_len("t7:bulkhead:pool"), 0); /* all given back */
    munmap(in, sizeof(zero));
}

typedef struct enter_all {
    pf_bulkhead_t *bh;
    unsigned n;
} enter_all_t;

/* True when all n places can be entered at once now (then left again). */
static bool
all_places_free(void *arg)
{
    enter_all_t *e = arg;
    unsigned got = 0;

    while (got < e->n && pf_bulkhead_try_enter(e->bh) == 0) {
        got++;
    }
    for (unsigned i = 0; i < got; i++) {
        pf_bulkhead_leave(e->bh);
    }
    return got == e->n;
}

/* A process holding every place is killed: its lease expires (1 s) and
 * the places come back to the others. */
static void
test_redis_bulkhead_dead_holder(void **state)
{
    rs_child_t ch;
    char line[64];
    pf_redis_t *r;
    pf_bulkhead_config_t hc;
    pf_bulkhead_t *bh;
    enter_all_t e;

    (void)state;
    spawn_helper(&ch, "hold", "t8", "pool", "3", "3", "1");
    assert_int_equal(rs_line(&ch, line, sizeof(line)), 0);
    assert_string_equal(line, "held");
    r = new_store_ttl("t8", g_srv.port, 1.0);
    pf_bulkhead_config_init(&hc);
    hc.name = "pool";
    hc.max_concurrent_calls = 3;
    assert_int_equal(pf_redis_bulkhead_new(r, &hc, &bh), 0);
    assert_true(wait_for(is_up, r));
    rs_sleep_ms(50);
    assert_int_equal(pf_bulkhead_try_enter(bh), PF_EFULL); /* all held */
    kill(ch.pid, SIGKILL);
    assert_int_equal(rs_reap(&ch), -1);
    e.bh = bh;
    e.n = 3;
    assert_true(wait_for(all_places_free, &e));
    pf_bulkhead_free(bh);
    pf_redis_free(r);
}

/* ---- a frozen Redis --------------------------------------------------------- */

/* redis-server stopped (SIGSTOP) for a while: calls keep deciding at
 * once, the store times the connection out and says so, the limiter falls
 * back to its local bucket; once thawed, the store reconnects and a trip
 * reaches Redis again. */
static void
test_redis_freeze(void **state)
{
    pf_redis_t *r;
    pf_breaker_config_t bc;
    pf_breaker_t *b;
    pf_ratelimit_config_t rc;
    pf_ratelimit_t *rl;
    pf_bulkhead_config_t hc;
    pf_bulkhead_t *bh;
    enter_all_t e;
    pf_redis_metrics_t m;
    pf_redis_metrics_t m2;
    int64_t until;

    (void)state;
    r = new_store("t5", g_srv.port);
    pf_bulkhead_config_init(&hc);
    hc.name = "frozen";
    hc.max_concurrent_calls = 5;
    assert_int_equal(pf_redis_bulkhead_new(r, &hc, &bh), 0);
    rt_trip_config(&bc, "frozen");
    assert_int_equal(pf_redis_breaker_new(r, &bc, &b), 0);
    pf_ratelimit_config_init(&rc);
    rc.name = "frozen";
    rc.rate = 1000;
    rc.burst = 100;
    assert_int_equal(pf_redis_ratelimit_new(r, &rc, &rl), 0);
    assert_true(wait_for(is_up, r));
    e.bh = bh;
    e.n = 1;
    assert_true(wait_for(all_places_free, &e)); /* a lease is there */
    assert_int_equal(pf_bulkhead_try_enter(bh), 0);
    assert_int_equal(kill(g_srv.pid, SIGSTOP), 0);
    /* Keep calling while frozen: nothing waits for Redis. */
    until = rs_now_ns() + CEILING_NS;
    for (;;) {
        pf_permit_t p = PF_PERMIT_INIT;

        (void)pf_ratelimit_try_acquire(rl, 1);
        assert_int_equal(pf_breaker_acquire(b, &p), 0);
        pf_breaker_record(b, &p, 0);
        pf_redis_metrics(r, &m);
        if (!m.up && m.timeouts > 0 && m.local_decisions > 0) {
            break;
        }
        assert_true(rs_now_ns() < until);
        rs_sleep_ms(1);
    }
    trip(b); /* a change while down: sent once Redis is back */
    pf_bulkhead_leave(bh); /* a place given back while frozen */
    assert_int_equal(kill(g_srv.pid, SIGCONT), 0);
    assert_true(wait_for(is_up, r));
    until = rs_now_ns() + CEILING_NS;
    while (rs_hget_int(&g_srv, "t5:breaker:frozen", "state", -1) !=
               PF_BREAKER_OPEN &&
           rs_now_ns() < until) {
        rs_sleep_ms(5);
    }
    assert_int_equal(rs_hget_int(&g_srv, "t5:breaker:frozen", "state", -1),
                     PF_BREAKER_OPEN);
    /* The limiter borrows from Redis again. */
    pf_redis_metrics(r, &m);
    until = rs_now_ns() + CEILING_NS;
    do {
        (void)pf_ratelimit_try_acquire(rl, 1);
        rs_sleep_ms(1);
        pf_redis_metrics(r, &m2);
    } while (m2.permits_borrowed == m.permits_borrowed &&
             rs_now_ns() < until);
    assert_true(m2.permits_borrowed > m.permits_borrowed);
    /* No place leaked: all five can be held at once again. */
    e.n = 5;
    assert_true(wait_for(all_places_free, &e));
    pf_bulkhead_free(bh);
    pf_breaker_free(b);
    pf_ratelimit_free(rl);
    pf_redis_free(r);
}

/* ---- retry budgets ---------------------------------------------------------- */

typedef struct budget_seen {
    pf_retry_budget_t *b;
    uint64_t retries;
} budget_seen_t;

static bool
budget_learned(void *arg)
{
    budget_seen_t *s = arg;
    pf_retry_budget_metrics_t m;

    pf_retry_budget_metrics(s->b, &m);
    return m.window_retries >= s->retries;
}

/* Two stores (as two processes) share a budget whose reserve is 10
 * retries in 10 s: once one has spent them, the other learns it and
 * refuses too; its own withdrawal never waited on Redis. */
static void
test_redis_retry_budget_shared(void **state)
{
    pf_redis_t *r1;
    pf_redis_t *r2;
    pf_retry_budget_config_t cfg;
    pf_retry_budget_t *b1;
    pf_retry_budget_t *b2;
    pf_retry_budget_t *bad = NULL;
    budget_seen_t seen;

    (void)state;
    r1 = new_store("t9", g_srv.port);
    r2 = new_store("t9", g_srv.port);
    pf_retry_budget_config_init(&cfg);
    cfg.name = "a|b";
    assert_int_equal(pf_redis_retry_budget_new(r1, &cfg, &bad), PF_EINVAL);
    cfg.name = "calls";
    cfg.window = 0.0;
    assert_int_equal(pf_redis_retry_budget_new(r1, &cfg, &bad), PF_EINVAL);
    assert_null(bad);
    cfg.ratio = 0.0;
    cfg.min_retries_per_sec = 1.0;
    cfg.window = 10.0;
    assert_int_equal(pf_redis_retry_budget_new(r1, &cfg, &b1), 0);
    assert_int_equal(pf_redis_retry_budget_new(r2, &cfg, &b2), 0);
    assert_true(wait_for(is_up, r1));
    assert_true(wait_for(is_up, r2));
    for (int i = 0; i < 10; i++) {
        assert_int_equal(pf_retry_budget_try_withdraw(b1), 0);
    }
    assert_int_equal(pf_retry_budget_try_withdraw(b1), PF_EBUDGET);
    seen.b = b2;
    seen.retries = 10;
    assert_true(wait_for(budget_learned, &seen));
    assert_int_equal(pf_retry_budget_try_withdraw(b2), PF_EBUDGET);
    pf_retry_budget_free(b1);
    pf_retry_budget_free(b2);
    pf_redis_free(r1);
    pf_redis_free(r2);
}

/* ---- AUTH and a Unix socket ------------------------------------------------ */

typedef struct auth_seen {
    atomic_int downs;
    char detail[128];
    pf_redis_t *r;
} auth_seen_t;

static void
auth_listener(pf_redis_event_t ev, const char *detail, void *arg)
{
    auth_seen_t *a = arg;

    if (ev == PF_REDIS_DOWN && atomic_fetch_add(&a->downs, 1) == 0) {
        snprintf(a->detail, sizeof(a->detail), "%s", detail);
    }
}

/* Refused twice: told (DOWN with Redis's words), and counted (the
 * connection is counted when hiredis has freed it, just after). */
static bool
auth_refused(void *arg)
{
    auth_seen_t *a = arg;
    pf_redis_metrics_t m;

    pf_redis_metrics(a->r, &m);
    return atomic_load(&a->downs) >= 2 && m.connect_failures >= 2;
}

/* A server with a password (and a Unix socket): the right password, alone
 * or with the user "default" (Redis 6 ACL form), gets in, over TCP and
 * over the socket; a wrong or missing one never does, and says why. */
static void
test_redis_auth_and_unix_socket(void **state)
{
    rs_server_t *s2 = &g_srv2;
    char sock[64];
    pf_redis_config_t cfg;
    pf_redis_t *r;
    pf_redis_metrics_t m;
    const char *good_users[] = {NULL, "default"};

    (void)state;
    snprintf(sock, sizeof(sock), "/tmp/pf_redis_%d.sock", (int)getpid());
    memset(s2, 0, sizeof(*s2));
    s2->extra[0] = "--requirepass";
    s2->extra[1] = "s3cret";
    s2->extra[2] = "--unixsocket";
    s2->extra[3] = sock;
    s2->extra[4] = "--unixsocketperm";
    s2->extra[5] = "700";
    assert_int_equal(rs_start(s2, "/usr/bin/redis-check-rdb"), 0);
    for (int i = 0; i < 2; i++) {
        pf_redis_config_init(&cfg);
        cfg.executor = g_ex;
        cfg.port = s2->port;
        cfg.user = good_users[i];
        cfg.password = "s3cret";
        assert_int_equal(pf_redis_new(&cfg, &r), 0);
        assert_true(wait_for(is_up, r));
        pf_redis_free(r);
    }
    pf_redis_config_init(&cfg);
    cfg.executor = g_ex;
    cfg.unix_socket = sock;
    cfg.password = "s3cret";
    cfg.db = 3;
    assert_int_equal(pf_redis_new(&cfg, &r), 0);
    assert_true(wait_for(is_up, r));
    pf_redis_free(r);
    for (int i = 0; i < 2; i++) {
        auth_seen_t seen;

        memset(&seen, 0, sizeof(seen));
        pf_redis_config_init(&cfg);
        cfg.executor = g_ex;
        cfg.port = s2->port;
        cfg.password = i == 0 ? "wrong" : NULL;
        cfg.listener = auth_listener;
        cfg.listener_arg = &seen;
        assert_int_equal(pf_redis_new(&cfg, &r), 0);
        seen.r = r;
        assert_true(wait_for(auth_refused, &seen));
        pf_redis_metrics(r, &m);
        assert_false(m.up);
        assert_int_equal(m.connects, 0);
        assert_true(m.connect_failures >= 2);
        pf_redis_free(r);
        /* Redis's own words: WRONGPASS, or NOAUTH without a password. */
        assert_non_null(strstr(seen.detail, i == 0 ? "WRONGPASS" : "NOAUTH"));
    }
    rs_stop(s2);
    unlink(sock);
}

/* ---- garbage: a fake server ------------------------------------------------- */

typedef enum fake_mode {
    FAKE_SILENT,     /* reads everything, answers nothing (a hung Redis) */
    FAKE_NOT_RESP,   /* bytes that are not the protocol at all */
    FAKE_WRONG_TYPE, /* an integer to every command */
    FAKE_BAD_SHAPE,  /* script hashes, then arrays of the wrong shape */
    FAKE_HUGE_ARRAY, /* an array claiming 2^31 - 1 elements */
    FAKE_HUGE_BULK   /* a string claiming 1e9 bytes, 2 MiB of it sent */
} fake_mode_t;

typedef struct fake {
    int lfd;
    int port;
    fake_mode_t mode;
    pthread_t th;
    atomic_bool stop;
} fake_t;

/* Commands in a chunk: "*<n>\r\n" at the start of a line. Rough (a
 * command split over two reads may be miscounted), which garbage
 * tolerates. */
static int
count_commands(const char *buf, ssize_t n)
{
    int c = 0;

    for (ssize_t i = 0; i < n; i++) {
        if (buf[i] == '*' && (i == 0 || buf[i - 1] == '\n') && i + 1 < n &&
            buf[i + 1] >= '0' && buf[i + 1] <= '9') {
            c++;
        }
    }
    return c;
}

static void
fake_answer(fake_t *f, int fd, int *served, int cmds)
{
    static const char sha[] =
        "$40\r\n0123456789abcdef0123456789abcdef01234567\r\n";

    for (int i = 0; i < cmds; i++, (*served)++) {
        const char *out;

        switch (f->mode) {
        case FAKE_SILENT:
            return;
        case FAKE_NOT_RESP:
            out = "?? this is not redis\r\n";
            break;
        case FAKE_WRONG_TYPE:
            out = ":42\r\n";
            break;
        case FAKE_HUGE_ARRAY:
            out = "*2147483647\r\n:1\r\n";
            break;
        case FAKE_HUGE_BULK: {
            static char chunk[65536];
            static const char head[] = "$1000000000\r\n";

            memset(chunk, 'x', sizeof(chunk));
            if (send(fd, head, strlen(head), MSG_NOSIGNAL) < 0) {
                return;
            }
            /* The client drops the connection past its 1 MiB limit: a
             * send then fails, which ends this answer. */
            for (int k = 0; k < 32; k++) {
                if (send(fd, chunk, sizeof(chunk), MSG_NOSIGNAL) < 0) {
                    return;
                }
            }
            continue;
        }
        default:
            out = *served < 2 ? sha : "*2\r\n:1\r\n$3\r\nabc\r\n";
            break;
        }
        if (send(fd, out, strlen(out), MSG_NOSIGNAL) < 0) {
            return;
        }
    }
}

static void *
fake_run(void *arg)
{
    fake_t *f = arg;
    int fds[8];
    int served[8];
    int nfd = 0;
    char buf[65536];

    while (!atomic_load(&f->stop)) {
        struct pollfd p[9];

        p[0].fd = f->lfd;
        p[0].events = POLLIN;
        for (int i = 0; i < nfd; i++) {
            p[i + 1].fd = fds[i];
            p[i + 1].events = POLLIN;
        }
        if (poll(p, (nfds_t)nfd + 1, 20) <= 0) {
            continue;
        }
        if ((p[0].revents & POLLIN) != 0) {
            int c = accept(f->lfd, NULL, NULL);

            if (c >= 0 && nfd < 8) {
                served[nfd] = 0;
                fds[nfd++] = c;
            } else if (c >= 0) {
                close(c);
            }
        }
        for (int i = 0; i < nfd; i++) {
            ssize_t n;

            if (p[i + 1].revents == 0) {
                continue;
            }
            n = read(fds[i], buf, sizeof(buf));
            if (n <= 0) {
                close(fds[i]);
                fds[i] = fds[--nfd];
                served[i] = served[nfd];
                break; /* p[] no longer matches */
            }
            fake_answer(f, fds[i], &served[i], count_commands(buf, n));
        }
    }
    for (int i = 0; i < nfd; i++) {
        close(fds[i]);
    }
    return NULL;
}

static void
fake_start(fake_t *f, fake_mode_t mode)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    int one = 1;

    memset(f, 0, sizeof(*f));
    f->mode = mode;
    f->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(f->lfd >= 0);
    setsockopt(f->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(f->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(f->lfd, (struct sockaddr *)&a, &len), 0);
    assert_int_equal(listen(f->lfd, 8), 0);
    f->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&f->th, NULL, fake_run, f), 0);
}

static void
fake_stop(fake_t *f)
{
    atomic_store(&f->stop, true);
    pthread_join(f->th, NULL);
    close(f->lfd);
}

typedef struct garbage_seen {
    pf_redis_t *r;
    fake_mode_t mode;
} garbage_seen_t;

static bool
garbage_noticed(void *arg)
{
    garbage_seen_t *g = arg;
    pf_redis_metrics_t m;

    pf_redis_metrics(g->r, &m);
    if (g->mode == FAKE_NOT_RESP || g->mode == FAKE_HUGE_ARRAY) {
        /* hiredis's parser refuses it (for the array, the store's limit
         * of 1,024 elements, before any allocation of its size): the
         * connection never gets ready, more than once (it keeps
         * trying). */
        return m.connect_failures >= 2 && !m.up;
    }
    return m.bad_replies >= 2;
}

static void
test_redis_garbage_replies(void **state)
{
    fake_mode_t modes[] = {FAKE_NOT_RESP, FAKE_WRONG_TYPE, FAKE_BAD_SHAPE,
                           FAKE_HUGE_ARRAY, FAKE_HUGE_BULK};

    (void)state;
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        fake_t f;
        pf_redis_t *r;
        pf_breaker_config_t bc;
        pf_breaker_t *b;
        pf_ratelimit_config_t rc;
        pf_ratelimit_t *rl;
        pf_bulkhead_config_t hc;
        pf_bulkhead_t *bh;
        garbage_seen_t g;
        pf_breaker_metrics_t bm;

        fake_start(&f, modes[i]);
        r = new_store("t6", f.port);
        rt_trip_config(&bc, "g");
        assert_int_equal(pf_redis_breaker_new(r, &bc, &b), 0);
        pf_ratelimit_config_init(&rc);
        rc.name = "g";
        assert_int_equal(pf_redis_ratelimit_new(r, &rc, &rl), 0);
        pf_bulkhead_config_init(&hc);
        hc.name = "g";
        hc.max_concurrent_calls = 2;
        assert_int_equal(pf_redis_bulkhead_new(r, &hc, &bh), 0);
        g.r = r;
        g.mode = modes[i];
        assert_true(wait_for(garbage_noticed, &g));
        /* The objects still work on their own. */
        trip(b);
        (void)pf_ratelimit_try_acquire(rl, 1);
        if (pf_bulkhead_try_enter(bh) == 0) {
            pf_bulkhead_leave(bh);
        }
        pf_breaker_metrics(b, &bm);
        assert_int_equal(bm.state, PF_BREAKER_OPEN);
        assert_int_equal(bm.failures, 3);
        pf_breaker_free(b);
        pf_ratelimit_free(rl);
        pf_bulkhead_free(bh);
        pf_redis_free(r);
        fake_stop(&f);
    }
}

typedef struct silent_seen {
    pf_redis_t *r;
    uint64_t timeouts;
} silent_seen_t;

static bool
timed_out(void *arg)
{
    silent_seen_t *s = arg;
    pf_redis_metrics_t m;

    pf_redis_metrics(s->r, &m);
    return m.timeouts >= s->timeouts;
}

/* A server that accepts and never answers, on the manual clock: nothing
 * happens while the clock stands still, however long in real time; as it
 * moves past connect_timeout the store gives up on the connection (a
 * timeout, counted), connects again at a tick, and times that one out
 * too. Calls meanwhile decide locally. */
static void
test_redis_silent_server_manual_clock(void **state)
{
    fake_t f;
    pf_clock_t *clock;
    pf_executor_config_t ec;
    pf_executor_t *ex;
    pf_redis_config_t cfg;
    pf_redis_t *r;
    pf_redis_metrics_t m;
    pf_breaker_config_t bc;
    pf_breaker_t *b;
    silent_seen_t seen;
    int64_t until;

    (void)state;
    fake_start(&f, FAKE_SILENT);
    assert_int_equal(pf_clock_manual_new(&clock), 0);
    pf_executor_config_init(&ec);
    ec.workers = 1;
    ec.clock = clock;
    assert_int_equal(pf_executor_new(&ec, &ex), 0);
    pf_redis_config_init(&cfg);
    cfg.executor = ex;
    cfg.port = f.port;
    cfg.connect_timeout = 1.0;
    assert_int_equal(pf_redis_new(&cfg, &r), 0);
    rt_trip_config(&bc, "quiet");
    bc.clock = clock;
    assert_int_equal(pf_redis_breaker_new(r, &bc, &b), 0);
    rs_sleep_ms(20); /* real time passes: the manual clock does not */
    pf_redis_metrics(r, &m);
    assert_int_equal(m.timeouts, 0);
    assert_false(m.up);
    trip(b); /* decided locally, at once */
    /* Move the clock on in steps of half the connect timeout until two
     * connections have timed out (each step lets the store's timer run:
     * a reconnect starts at a tick, its timeout is noticed at a later
     * one). */
    seen.r = r;
    seen.timeouts = 2;
    until = rs_now_ns() + CEILING_NS;
    while (!timed_out(&seen) && rs_now_ns() < until) {
        pf_clock_manual_advance(clock, INT64_C(500000000));
        rs_sleep_ms(5);
    }
    assert_true(timed_out(&seen));
    pf_redis_metrics(r, &m);
    assert_false(m.up);
    assert_int_equal(m.connects, 0);
    assert_int_equal(pf_breaker_state(b), PF_BREAKER_OPEN);
    pf_breaker_free(b);
    pf_redis_free(r);
    pf_executor_free(ex);
    pf_clock_free(clock);
    fake_stop(&f);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_redis_bad_input),
        cmocka_unit_test(test_redis_trip_is_pushed),
        cmocka_unit_test(test_redis_stale_change_loses),
        cmocka_unit_test(test_redis_limiter_total),
        cmocka_unit_test(test_redis_bulkhead_limit),
        cmocka_unit_test(test_redis_bulkhead_dead_holder),
        cmocka_unit_test(test_redis_retry_budget_shared),
        cmocka_unit_test(test_redis_garbage_replies),
        cmocka_unit_test(test_redis_silent_server_manual_clock),
        cmocka_unit_test(test_redis_auth_and_unix_socket),
        cmocka_unit_test(test_redis_freeze),
        cmocka_unit_test(test_redis_restart_reseeds),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
