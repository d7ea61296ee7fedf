/* The HTTP endpoint under slow and abusive clients, on real loopback
 * sockets (127.0.0.x are all loopback, so each address is a distinct
 * client): clients that trickle a request one byte at a time or leave it
 * half sent must not starve the probes, a connection the server has no
 * room for is closed at once rather than left in the listen backlog, each
 * client is held to its own share, and a request that takes longer than
 * request_timeout is cut off even while bytes keep coming.
 *
 * These tests run on the real clock, as a socket server must. Every wait
 * is bounded: the bounds are generous safety nets (seconds where the
 * server answers in milliseconds), and only "answered / closed within the
 * bound" is asserted, never how fast. */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "puffinflow/health.h"
#include "puffinflow/http.h"
#include "puffinflow/registry.h"
#include "test.h"

/* How long a probe may take to be answered under attack. The server
 * answers in milliseconds; before the fixes it did not answer for 10 s
 * (the idle timeout) or at all (trickling clients). */
#define ANSWER_WITHIN 3.0

/* ---- sockets ----------------------------------------------------------- */

static double
now_s(void)
{
    return pf_clock_now(NULL);
}

/* A connection from source address src (127.0.0.x) to 127.0.0.1:port.
 * Returns the socket, or -1 when the connect fails. */
static int
connect_from(const char *src, unsigned port)
{
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    assert_int_equal(inet_pton(AF_INET, src, &a.sin_addr), 1);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    a.sin_port = htons((uint16_t)port);
    assert_int_equal(inet_pton(AF_INET, "127.0.0.1", &a.sin_addr), 1);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static bool
send_str(int fd, const char *s)
{
    size_t len = strlen(s);

    return send(fd, s, len, MSG_NOSIGNAL | MSG_DONTWAIT) == (ssize_t)len;
}

/* What came back on a connection within a bound. */
typedef enum outcome {
    GOT_NOTHING, /* still open, nothing received by the bound */
    GOT_CLOSED,  /* closed (EOF or reset) without an answer */
    GOT_ANSWER   /* a status line and headers */
} outcome_t;

/* Wait up to limit seconds for an answer (status line and headers) or for
 * the server to close fd. *status gets the HTTP status of an answer. */
static outcome_t
await(int fd, double limit, int *status)
{
    double end = now_s() + limit;
    char buf[4096];
    size_t got = 0;

    buf[0] = '\0';
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        double left = end - now_s();
        ssize_t n;

        if (strstr(buf, "\r\n\r\n") != NULL) {
            if (status != NULL && sscanf(buf, "HTTP/1.%*d %d", status) != 1) {
                *status = 0;
            }
            return GOT_ANSWER;
        }
        if (left <= 0 || poll(&p, 1, (int)(left * 1000) + 1) == 0) {
            return GOT_NOTHING;
        }
        n = recv(fd, buf + got, sizeof(buf) - 1 - got, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            continue;
        }
        if (n <= 0) {
            return GOT_CLOSED; /* EOF, or reset */
        }
        got += (size_t)n;
        buf[got] = '\0';
        if (got == sizeof(buf) - 1) {
            fail_msg("an answer larger than the test's buffer");
        }
    }
}

/* GET path from src on a fresh connection: the status, which must come
 * within ANSWER_WITHIN seconds. */
static int
probe_from(const char *src, unsigned port, const char *path)
{
    char req[256];
    int fd = connect_from(src, port);
    int status = 0;
    outcome_t o;

    assert_true(fd >= 0);
    snprintf(req, sizeof(req),
             "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
    assert_true(send_str(fd, req));
    o = await(fd, ANSWER_WITHIN, &status);
    close(fd);
    if (o != GOT_ANSWER) {
        fail_msg("GET %s from %s: %s within %.0f s", path, src,
                 o == GOT_CLOSED ? "closed without an answer" : "no answer",
                 ANSWER_WITHIN);
    }
    return status;
}

/* ---- an attack --------------------------------------------------------- */

#define N_TRICKLE 80 /* one byte every TRICKLE_MS, from 127.0.0.2 */
#define N_IDLE 80    /* half a request, then nothing, from .3 to .6 */
#define TRICKLE_MS 100

static const char request_start[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n";

typedef struct slow {
    int fd;
    char src[16];
} slow_t;

/* Slow clients that never finish a request, and reconnect when the server
 * drops them, as a determined attacker would. */
typedef struct attack {
    unsigned port;
    slow_t trickle[N_TRICKLE];
    slow_t idle[N_IDLE];
    atomic_int stop;
    atomic_int rounds;
    pthread_t thread;
} attack_t;

static void
slow_connect(slow_t *c, unsigned port)
{
    c->fd = connect_from(c->src, port);
    if (c->fd >= 0 && !send_str(c->fd, request_start)) {
        close(c->fd);
        c->fd = -1;
    }
}

/* True if the server has closed c (EOF or reset seen, or a send fails). */
static bool
slow_dropped(const slow_t *c)
{
    struct pollfd p = {c->fd, POLLIN, 0};
    char b;

    if (c->fd < 0) {
        return true;
    }
    if (poll(&p, 1, 0) == 0) {
        return false;
    }
    return recv(c->fd, &b, 1, MSG_DONTWAIT) <= 0;
}

static void
slow_keep(slow_t *c, unsigned port, bool trickle)
{
    if (slow_dropped(c) || (trickle && !send_str(c->fd, "X"))) {
        if (c->fd >= 0) {
            close(c->fd);
        }
        slow_connect(c, port);
    }
}

static void *
attack_run(void *arg)
{
    attack_t *a = arg;
    size_t i;

    while (!atomic_load(&a->stop)) {
        for (i = 0; i < N_TRICKLE; i++) {
            slow_keep(&a->trickle[i], a->port, true);
        }
        for (i = 0; i < N_IDLE; i++) {
            slow_keep(&a->idle[i], a->port, false);
        }
        atomic_fetch_add(&a->rounds, 1);
        poll(NULL, 0, TRICKLE_MS); /* the attacker's pace */
    }
    return NULL;
}

static void
attack_start(attack_t *a, unsigned port)
{
    size_t i;

    memset(a, 0, sizeof(*a));
    a->port = port;
    for (i = 0; i < N_TRICKLE; i++) {
        snprintf(a->trickle[i].src, sizeof(a->trickle[i].src), "127.0.0.2");
        slow_connect(&a->trickle[i], port);
    }
    for (i = 0; i < N_IDLE; i++) {
        snprintf(a->idle[i].src, sizeof(a->idle[i].src), "127.0.0.%u",
                 3 + (unsigned)(i % 4));
        slow_connect(&a->idle[i], port);
    }
    assert_int_equal(pthread_create(&a->thread, NULL, attack_run, a), 0);
    /* A few rounds in, every slot the server has is taken. */
    pf_test_wait_for_flag(&a->rounds, 3);
}

static void
attack_stop(attack_t *a)
{
    size_t i;

    atomic_store(&a->stop, 1);
    pthread_join(a->thread, NULL);
    for (i = 0; i < N_TRICKLE; i++) {
        if (a->trickle[i].fd >= 0) {
            close(a->trickle[i].fd);
        }
    }
    for (i = 0; i < N_IDLE; i++) {
        if (a->idle[i].fd >= 0) {
            close(a->idle[i].fd);
        }
    }
}

/* ---- fixtures ----------------------------------------------------------- */

static pf_registry_t *
quiet_registry(void)
{
    pf_registry_config_t cfg;
    pf_registry_t *r;

    pf_registry_config_init(&cfg);
    cfg.process_metrics = false;
    assert_pf_ok(pf_registry_new(&cfg, &r));
    return r;
}

static pf_http_server_t *
start_with(pf_http_config_t *cfg)
{
    pf_http_server_t *s;

    assert_pf_ok(pf_http_server_start(cfg, &s));
    assert_true(pf_http_server_port(s) > 0);
    return s;
}

/* A liveness check that blocks until the test opens the gate. */
typedef struct gate {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool open;
    atomic_int entered;
} gate_t;

static int
gated_check(pf_health_result_t *res, void *arg)
{
    gate_t *g = arg;

    (void)res;
    atomic_fetch_add(&g->entered, 1);
    pthread_mutex_lock(&g->lock);
    while (!g->open) {
        pthread_cond_wait(&g->cond, &g->lock);
    }
    pthread_mutex_unlock(&g->lock);
    return 0;
}

static void
gate_open(gate_t *g)
{
    pthread_mutex_lock(&g->lock);
    g->open = true;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

/* ---- tests -------------------------------------------------------------- */

static void
test_http_probes_answer_while_slow_clients_hold_every_slot(void **state)
{
    pf_registry_t *r = quiet_registry();
    pf_http_config_t cfg;
    pf_http_server_t *s;
    attack_t *a = calloc(1, sizeof(*a));
    int i;

    (void)state;
    assert_non_null(a);
    pf_http_config_init(&cfg); /* the defaults: 64 connections */
    cfg.registry = r;
    s = start_with(&cfg);
    attack_start(a, pf_http_server_port(s));
    for (i = 0; i < 3; i++) {
        assert_int_equal(
            probe_from("127.0.0.1", pf_http_server_port(s), "/healthz"), 200);
        assert_int_equal(
            probe_from("127.0.0.1", pf_http_server_port(s), "/readyz"), 200);
    }
    /* Even from the address the trickling clients use: it competes only
     * with them for its own share. */
    assert_int_equal(
        probe_from("127.0.0.2", pf_http_server_port(s), "/healthz"), 200);
    attack_stop(a);
    free(a);
    pf_http_server_stop(s);
    pf_registry_free(r);
}

static void
test_http_connection_beyond_the_limit_is_closed_when_all_are_busy(void **state)
{
    pf_registry_t *r = quiet_registry();
    pf_health_checker_t *hc;
    pf_health_check_opts_t opts;
    const char *tags[1] = {"liveness"};
    pf_http_config_t cfg;
    pf_http_server_t *s;
    gate_t g;
    int busy[2];
    int extra;
    int status;

    (void)state;
    memset(&g, 0, sizeof(g));
    pthread_mutex_init(&g.lock, NULL);
    pthread_cond_init(&g.cond, NULL);
    assert_pf_ok(pf_registry_get_health_checker(r, "app", NULL, &hc));
    pf_health_check_opts_init(&opts);
    opts.tags = tags;
    opts.tags_len = 1;
    opts.timeout = 60; /* the gate, not the timeout, ends it */
    assert_pf_ok(pf_health_add_check_ex(hc, "gated", gated_check, &g, &opts));
    pf_http_config_init(&cfg);
    cfg.registry = r;
    cfg.threads = 1;
    cfg.max_connections = 2;
    s = start_with(&cfg);

    /* The one worker is held by a probe waiting for its check; a second
     * probe waits for the worker. Both are being answered: neither may be
     * dropped for a newcomer. */
    busy[0] = connect_from("127.0.0.1", pf_http_server_port(s));
    assert_true(send_str(busy[0], "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
    pf_test_wait_for_flag(&g.entered, 1);
    busy[1] = connect_from("127.0.0.1", pf_http_server_port(s));
    assert_true(send_str(busy[1], "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));

    /* A third connection is closed at once, not left in the backlog. */
    extra = connect_from("127.0.0.1", pf_http_server_port(s));
    assert_true(extra >= 0);
    assert_true(send_str(extra, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert_int_equal(await(extra, ANSWER_WITHIN, NULL), GOT_CLOSED);
    close(extra);

    gate_open(&g);
    assert_int_equal(await(busy[0], ANSWER_WITHIN, &status), GOT_ANSWER);
    assert_int_equal(status, 200);
    assert_int_equal(await(busy[1], ANSWER_WITHIN, &status), GOT_ANSWER);
    assert_int_equal(status, 200);
    close(busy[0]);
    close(busy[1]);
    pf_http_server_stop(s);
    pf_registry_free(r);
    pthread_cond_destroy(&g.cond);
    pthread_mutex_destroy(&g.lock);
}

static void
test_http_newcomer_replaces_the_oldest_waiting_connection_when_full(
    void **state)
{
    pf_registry_t *r = quiet_registry();
    pf_http_config_t cfg;
    pf_http_server_t *s;
    slow_t old[2];
    int i;

    (void)state;
    pf_http_config_init(&cfg);
    cfg.registry = r;
    cfg.max_connections = 2;
    s = start_with(&cfg);
    for (i = 0; i < 2; i++) {
        snprintf(old[i].src, sizeof(old[i].src), "127.0.0.%d", 2 + i);
        slow_connect(&old[i], pf_http_server_port(s));
        assert_true(old[i].fd >= 0);
    }
    /* Let the server take both half-sent requests in. */
    assert_int_equal(await(old[1].fd, 0.2, NULL), GOT_NOTHING);

    /* Both slots hold half-sent requests: a third client is served, and
     * the connection that waited longest is the one closed for it. */
    assert_int_equal(
        probe_from("127.0.0.4", pf_http_server_port(s), "/healthz"), 200);
    assert_int_equal(await(old[0].fd, ANSWER_WITHIN, NULL), GOT_CLOSED);
    assert_int_equal(await(old[1].fd, 0.1, NULL), GOT_NOTHING);
    close(old[0].fd);
    close(old[1].fd);
    pf_http_server_stop(s);
    pf_registry_free(r);
}

static void
test_http_client_at_its_limit_displaces_only_its_own_connections(void **state)
{
    pf_registry_t *r = quiet_registry();
    pf_http_config_t cfg;
    pf_http_server_t *s;
    slow_t other;
    slow_t mine[3];
    int status;
    int i;

    (void)state;
    pf_http_config_init(&cfg);
    cfg.registry = r;
    cfg.max_connections = 8;
    cfg.max_connections_per_client = 2;
    s = start_with(&cfg);
    /* Another client's half-sent request is the oldest of all. */
    snprintf(other.src, sizeof(other.src), "127.0.0.3");
    slow_connect(&other, pf_http_server_port(s));
    assert_true(other.fd >= 0);
    for (i = 0; i < 3; i++) {
        if (i == 2) {
            /* Let the server take the three half-sent requests in. */
            assert_int_equal(await(mine[1].fd, 0.2, NULL), GOT_NOTHING);
        }
        snprintf(mine[i].src, sizeof(mine[i].src), "127.0.0.2");
        slow_connect(&mine[i], pf_http_server_port(s));
        assert_true(mine[i].fd >= 0);
    }
    /* The third from 127.0.0.2 took the place of its own oldest, not of
     * the other client's, and is served. */
    assert_int_equal(await(mine[0].fd, ANSWER_WITHIN, NULL), GOT_CLOSED);
    assert_true(send_str(mine[2].fd, "\r\n"));
    assert_int_equal(await(mine[2].fd, ANSWER_WITHIN, &status), GOT_ANSWER);
    assert_int_equal(status, 200);
    assert_int_equal(await(other.fd, 0.1, NULL), GOT_NOTHING);
    assert_int_equal(await(mine[1].fd, 0.1, NULL), GOT_NOTHING);
    close(other.fd);
    for (i = 0; i < 3; i++) {
        close(mine[i].fd);
    }
    pf_http_server_stop(s);
    pf_registry_free(r);
}

static void
test_http_trickling_request_is_cut_off_at_request_timeout(void **state)
{
    pf_registry_t *r = quiet_registry();
    pf_http_config_t cfg;
    pf_http_server_t *s;
    slow_t c;
    double started;
    double took;
    bool closed = false;

    (void)state;
    pf_http_config_init(&cfg);
    cfg.registry = r;
    cfg.connection_timeout = 10; /* idle timeout: a trickle resets it */
    cfg.request_timeout = 0.3;
    s = start_with(&cfg);
    snprintf(c.src, sizeof(c.src), "127.0.0.2");
    started = now_s();
    slow_connect(&c, pf_http_server_port(s));
    assert_true(c.fd >= 0);
    /* A byte every 20 ms, never idle, never done: cut off at the deadline
     * (the bound is a safety net, ten times the deadline). */
    while (!closed && now_s() - started < 3.0) {
        closed = !send_str(c.fd, "X") || await(c.fd, 0.02, NULL) == GOT_CLOSED;
    }
    took = now_s() - started;
    assert_true(closed);
    assert_true(took >= 0.3); /* not before it */
    close(c.fd);
    /* The server serves on. */
    assert_int_equal(
        probe_from("127.0.0.1", pf_http_server_port(s), "/healthz"), 200);
    pf_http_server_stop(s);
    pf_registry_free(r);
}

static void
test_http_kept_alive_connection_gets_a_fresh_deadline_per_request(void **state)
{
    pf_registry_t *r = quiet_registry();
    pf_http_config_t cfg;
    pf_http_server_t *s;
    int fd;
    int status;
    int i;

    (void)state;
    pf_http_config_init(&cfg);
    cfg.registry = r;
    cfg.request_timeout = 1.0;
    s = start_with(&cfg);
    fd = connect_from("127.0.0.1", pf_http_server_port(s));
    assert_true(fd >= 0);
    /* Three requests 0.4 s apart on one connection: 1.2 s in all, past
     * the deadline, but each within it of the previous answer. */
    for (i = 0; i < 3; i++) {
        if (i > 0) {
            assert_int_equal(await(fd, 0.4, NULL), GOT_NOTHING);
        }
        assert_true(send_str(fd, "HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert_int_equal(await(fd, ANSWER_WITHIN, &status), GOT_ANSWER);
        assert_int_equal(status, 200);
    }
    /* Then idle: closed one deadline after the last answer. */
    assert_int_equal(await(fd, ANSWER_WITHIN, NULL), GOT_CLOSED);
    close(fd);
    pf_http_server_stop(s);
    pf_registry_free(r);
}

static void
test_http_request_timeout_may_be_infinite(void **state)
{
    pf_registry_t *r = quiet_registry();
    pf_http_config_t cfg;
    pf_http_server_t *s;

    (void)state;
    pf_http_config_init(&cfg);
    cfg.registry = r;
    cfg.request_timeout = INFINITY; /* no deadline; the idle timeout stays */
    s = start_with(&cfg);
    assert_int_equal(
        probe_from("127.0.0.1", pf_http_server_port(s), "/healthz"), 200);
    pf_http_server_stop(s);
    pf_registry_free(r);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            test_http_probes_answer_while_slow_clients_hold_every_slot),
        cmocka_unit_test(
            test_http_connection_beyond_the_limit_is_closed_when_all_are_busy),
        cmocka_unit_test(
            test_http_newcomer_replaces_the_oldest_waiting_connection_when_full),
        cmocka_unit_test(
            test_http_client_at_its_limit_displaces_only_its_own_connections),
        cmocka_unit_test(
            test_http_trickling_request_is_cut_off_at_request_timeout),
        cmocka_unit_test(
            test_http_kept_alive_connection_gets_a_fresh_deadline_per_request),
        cmocka_unit_test(test_http_request_timeout_may_be_infinite),
    };
    struct rlimit rl;

    /* Each attacking connection is two descriptors in this process (the
     * client's and the server's end). */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 1024 &&
        rl.rlim_max >= 1024) {
        rl.rlim_cur = 1024;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
