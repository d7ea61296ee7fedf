/* The HTTP endpoint, tested against the real server on loopback: libcurl
 * for well-formed requests, raw sockets for malformed and oversized ones.
 * Probes follow health changes; /metrics passes the strict exposition
 * format check (and the Prometheus project's own parser) also while breakers
 * change state under concurrent scrapes; bad requests get 4xx and the
 * server keeps serving; stopping with scrapes in flight leaks nothing. */
#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "puffinflow/breaker.h"
#include "puffinflow/health.h"
#include "puffinflow/http.h"
#include "puffinflow/registry.h"
#include "json_check.h"
#include "prom_check.h"
#include "test.h"

/* ---- a client --------------------------------------------------------- */

typedef struct resp {
    long status;
    char *body; /* NUL-terminated */
    size_t len;
    char content_type[256];
    char allow[256];
} resp_t;

static size_t
on_body(char *data, size_t size, size_t n, void *arg)
{
    resp_t *r = arg;
    char *p = realloc(r->body, r->len + size * n + 1);

    if (p == NULL) {
        return 0;
    }
    memcpy(p + r->len, data, size * n);
    r->len += size * n;
    p[r->len] = '\0';
    r->body = p;
    return size * n;
}

static size_t
on_header(char *data, size_t size, size_t n, void *arg)
{
    resp_t *r = arg;
    size_t len = size * n;
    char line[256];

    if (len >= sizeof(line)) {
        return len;
    }
    memcpy(line, data, len);
    line[len] = '\0';
    line[strcspn(line, "\r\n")] = '\0';
    if (strncasecmp(line, "Content-Type: ", 14) == 0) {
        snprintf(r->content_type, sizeof(r->content_type), "%s", line + 14);
    } else if (strncasecmp(line, "Allow: ", 7) == 0) {
        snprintf(r->allow, sizeof(r->allow), "%s", line + 7);
    }
    return len;
}

static void
resp_free(resp_t *r)
{
    free(r->body);
    memset(r, 0, sizeof(*r));
}

/* One request with handle h (reused by the caller for keep-alive, or NULL
 * for a fresh one). Returns curl's result; *r holds the answer. */
static CURLcode
request_with(CURL *h, const char *host, unsigned port, const char *method,
             const char *path, resp_t *r)
{
    bool own = h == NULL;
    char url[256];
    CURLcode rc;

    memset(r, 0, sizeof(*r));
    if (own) {
        h = curl_easy_init();
        assert_non_null(h);
    }
    snprintf(url, sizeof(url), "http://%s:%u%s", host, port, path);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 60L); /* a hung test's net */
    curl_easy_setopt(h, CURLOPT_NOBODY, strcmp(method, "HEAD") == 0 ? 1L : 0L);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST,
                     strcmp(method, "HEAD") == 0 ? NULL : method);
    rc = curl_easy_perform(h);
    if (rc == CURLE_OK) {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
    }
    if (own) {
        curl_easy_cleanup(h);
    }
    if (r->body == NULL) {
        r->body = calloc(1, 1);
    }
    return rc;
}

/* GET-like request on 127.0.0.1 that must get an answer. */
static long
request(unsigned port, const char *method, const char *path, resp_t *r)
{
    CURLcode rc = request_with(NULL, "127.0.0.1", port, method, path, r);

    if (rc != CURLE_OK) {
        fail_msg("%s %s: %s", method, path, curl_easy_strerror(rc));
    }
    return r->status;
}

static long
get_status(unsigned port, const char *path)
{
    resp_t r;
    long status = request(port, "GET", path, &r);

    resp_free(&r);
    return status;
}

/* Send raw bytes on a new connection to 127.0.0.1:port and read the
 * answer's status line and headers (not waiting for the connection to
 * close: some answers keep it open). Returns the status code, or 0 when
 * the server closed the connection without an answer. */
static int
raw_request(unsigned port, const char *data, size_t len)
{
    struct sockaddr_in a;
    struct timeval tv = {30, 0}; /* a hung test's net, not a timing */
    char buf[4096];
    size_t got = 0;
    ssize_t n;
    int status = 0;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    /* The server may answer and close before it has read everything (a
     * 431 or 413): a failed send is then expected. */
    (void)send(fd, data, len, MSG_NOSIGNAL);
    buf[0] = '\0';
    while (got < sizeof(buf) - 1 && strstr(buf, "\r\n\r\n") == NULL &&
           (n = recv(fd, buf + got, sizeof(buf) - 1 - got, 0)) > 0) {
        got += (size_t)n;
        buf[got] = '\0';
    }
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1) {
        status = 0;
    }
    close(fd);
    return status;
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
start(pf_registry_t *r)
{
    pf_http_config_t cfg;
    pf_http_server_t *s;

    pf_http_config_init(&cfg);
    cfg.registry = r;
    assert_pf_ok(pf_http_server_start(&cfg, &s));
    assert_true(pf_http_server_port(s) > 0);
    return s;
}

/* A check whose status the test sets. */
static int
settable_check(pf_health_result_t *res, void *arg)
{
    pf_health_result_set(res,
                         (pf_health_status_t)atomic_load((atomic_int *)arg),
                         "set by the test");
    return 0;
}

static void
add_tagged(pf_health_checker_t *hc, const char *name, const char *tag,
           atomic_int *status)
{
    const char *tags[1] = {tag};
    pf_health_check_opts_t opts;

    pf_health_check_opts_init(&opts);
    opts.tags = tags;
    opts.tags_len = 1;
    assert_pf_ok(
        pf_health_add_check_ex(hc, name, settable_check, status, &opts));
}

/* ---- config ------------------------------------------------------------ */

static void
test_http_config_init_sets_the_documented_defaults(void **state)
{
    pf_http_config_t cfg;

    (void)state;
    memset(&cfg, 0xff, sizeof(cfg));
    pf_http_config_init(&cfg);
    assert_string_equal(cfg.address, "127.0.0.1");
    assert_int_equal(cfg.port, 0);
    assert_null(cfg.registry);
    assert_string_equal(cfg.liveness_tag, "liveness");
    assert_string_equal(cfg.readiness_tag, "readiness");
    assert_int_equal(cfg.threads, 2);
    assert_int_equal(cfg.max_connections, 64);
    assert_true(cfg.connection_timeout == 10.0);
    assert_int_equal(cfg.max_header_bytes, 16384);
    assert_int_equal(cfg.max_body_bytes, 0);
    assert_int_equal(cfg.max_connections_per_client, 16);
    assert_true(cfg.request_timeout == 10.0);
    pf_http_config_init(NULL);
}

static void
test_http_start_rejects_bad_config(void **state)
{
    pf_http_config_t cfg;
    pf_http_server_t *s = (pf_http_server_t *)&cfg;

    (void)state;
    pf_http_config_init(&cfg);
    assert_pf_err(pf_http_server_start(NULL, &s), PF_EINVAL);
    assert_pf_err(pf_http_server_start(&cfg, NULL), PF_EINVAL);
#define BAD(field, value)                                                      \
    do {                                                                       \
        pf_http_config_init(&cfg);                                             \
        cfg.field = value;                                                     \
        assert_pf_err(pf_http_server_start(&cfg, &s), PF_EINVAL);              \
    } while (0)
    BAD(address, NULL);
    BAD(address, "localhost"); /* numeric addresses only */
    BAD(address, "256.0.0.1");
    BAD(address, "");
    BAD(port, 65536);
    BAD(liveness_tag, "");
    BAD(readiness_tag, NULL);
    BAD(threads, 0);
    BAD(threads, 65);
    BAD(max_connections, 0);
    BAD(connection_timeout, 0.0);
    BAD(connection_timeout, -1.0);
    BAD(connection_timeout, NAN);
    BAD(max_header_bytes, 100);
    BAD(max_header_bytes, 2 * 1048576);
    BAD(max_connections_per_client, 0);
    BAD(request_timeout, 0.0);
    BAD(request_timeout, -0.5);
    BAD(request_timeout, NAN);
#undef BAD
    assert_ptr_equal(s, (pf_http_server_t *)&cfg); /* untouched */
    pf_http_server_stop(NULL);
    assert_int_equal(pf_http_server_port(NULL), 0);
}

static void
test_http_port_in_use_is_esystem(void **state)
{
    pf_registry_t *r = quiet_registry();
    pf_http_server_t *a = start(r);
    pf_http_server_t *b = NULL;
    pf_http_config_t cfg;

    (void)state;
    pf_http_config_init(&cfg);
    cfg.registry = r;
    cfg.port = pf_http_server_port(a);
    assert_pf_err(pf_http_server_start(&cfg, &b), PF_ESYSTEM);
    assert_null(b);
    assert_int_equal(get_status(pf_http_server_port(a), "/healthz"), 200);
    pf_http_server_stop(a);
    pf_registry_free(r);
}

static void
test_http_serves_on_ipv6_loopback(void **state)
{
    pf_registry_t *r = quiet_registry();
    pf_http_config_t cfg;
    pf_http_server_t *s;
    resp_t resp;

    (void)state;
    pf_http_config_init(&cfg);
    cfg.registry = r;
    cfg.address = "::1";
    if (pf_http_server_start(&cfg, &s) != 0) {
        pf_registry_free(r);
        skip(); /* no IPv6 on this host */
    }
    assert_int_equal(request_with(NULL, "[::1]", pf_http_server_port(s), "GET",
                                  "/healthz", &resp),
                     CURLE_OK);
    assert_int_equal(resp.status, 200);
    resp_free(&resp);
    pf_http_server_stop(s);
    pf_registry_free(r);
}

/* ---- probes -------------------------------------------------------------- */

static void
test_http_probes_are_200_with_no_health_checkers(void **state)
{
    pf_registry_t *r = quiet_registry();
    pf_http_server_t *s = start(r);
    unsigned port = pf_http_server_port(s);
    resp_t resp;

    (void)state;
    assert_int_equal(request(port, "GET", "/healthz", &resp), 200);
    assert_true(json_valid(resp.body));
    assert_string_equal(resp.content_type, "application/json");
    assert_non_null(strstr(resp.body, "\"status\":\"healthy\""));
    resp_free(&resp);
    assert_int_equal(get_status(port, "/readyz"), 200);
    pf_http_server_stop(s);
    pf_registry_free(r);
}

/* The shape http.h and docs/http.md promise: "checkers" is an array of
 * the reports (each naming its checker), "status" sums them up. */
static void
test_http_probe_body_is_an_array_of_checker_reports(void **state)
{
    pf_registry_t *r = quiet_registry();
    pf_http_server_t *s = start(r);
    unsigned port = pf_http_server_port(s);
    pf_health_checker_t *hc;
    atomic_int sa = PF_HEALTHY;
    atomic_int sb = PF_DEGRADED;
    resp_t resp;
    const char *tail = "],\"status\":\"healthy\"}\n";

    (void)state;
    assert_int_equal(request(port, "GET", "/readyz", &resp), 200);
    assert_string_equal(resp.body,
                        "{\"checkers\":[],\"status\":\"healthy\"}\n");
    resp_free(&resp);
    assert_pf_ok(pf_registry_get_health_checker(r, "a", NULL, &hc));
    add_tagged(hc, "x", "readiness", &sa);
    assert_pf_ok(pf_registry_get_health_checker(r, "b", NULL, &hc));
    add_tagged(hc, "y", "readiness", &sb);
    assert_int_equal(request(port, "GET", "/readyz", &resp), 200);
    assert_true(json_valid(resp.body));
    assert_true(strncmp(resp.body, "{\"checkers\":[{", 14) == 0);
    assert_non_null(strstr(resp.body, "\"checker\":\"a\""));
    assert_non_null(strstr(resp.body, "\"checker\":\"b\""));
    assert_true(resp.len > strlen(tail));
    assert_string_equal(resp.body + resp.len - strlen(tail), tail);
    resp_free(&resp);
    pf_http_server_stop(s);
    pf_registry_free(r);
}

static void
test_http_readiness_follows_health_changes(void **state)
{
    pf_registry_t *r = quiet_registry();
    pf_http_server_t *s = start(r);
    unsigned port = pf_http_server_port(s);
    pf_health_checker_t *hc;
    atomic_int ready = PF_HEALTHY;
    atomic_int live = PF_HEALTHY;
    resp_t resp;

    (void)state;
    assert_pf_ok(pf_registry_get_health_checker(r, "app", NULL, &hc));
    add_tagged(hc, "database", "readiness", &ready);
    add_tagged(hc, "deadlock", "liveness", &live);

    assert_int_equal(get_status(port, "/readyz"), 200);
    atomic_store(&ready, PF_UNHEALTHY);
    assert_int_equal(request(port, "GET", "/readyz", &resp), 503);
    assert_true(json_valid(resp.body));
    assert_non_null(strstr(resp.body, "\"status\":\"unhealthy\""));
    assert_non_null(strstr(resp.body, "\"database\""));
    assert_null(strstr(resp.body, "\"deadlock\"")); /* another tag */
    resp_free(&resp);
    /* Liveness is its own group: still alive. */
    assert_int_equal(get_status(port, "/healthz"), 200);
    /* Degraded still serves: 200, as Kubernetes expects. */
    atomic_store(&ready, PF_DEGRADED);
    assert_int_equal(get_status(port, "/readyz"), 200);
    atomic_store(&ready, PF_HEALTHY);
    assert_int_equal(get_status(port, "/readyz"), 200);
    atomic_store(&live, PF_UNHEALTHY);
    assert_int_equal(get_status(port, "/healthz"), 503);
    assert_int_equal(get_status(port, "/readyz"), 200);
    atomic_store(&live, PF_HEALTHY);
    assert_int_equal(get_status(port, "/healthz"), 200);
    pf_http_server_stop(s);
    pf_registry_free(r);
}

static void
test_http_readiness_combines_every_checker(void **state)
{
    pf_registry_t *r = quiet_registry();
    pf_http_server_t *s = start(r);
    unsigned port = pf_http_server_port(s);
    pf_health_checker_t *a;
    pf_health_checker_t *b;
    atomic_int sa = PF_HEALTHY;
    atomic_int sb = PF_HEALTHY;
    pf_breaker_t *payments;

    (void)state;
    assert_pf_ok(pf_registry_get_health_checker(r, "a", NULL, &a));
    assert_pf_ok(pf_registry_get_health_checker(r, "b", NULL, &b));
    add_tagged(a, "x", "readiness", &sa);
    add_tagged(b, "y", "readiness", &sb);
    assert_int_equal(get_status(port, "/readyz"), 200);
    atomic_store(&sb, PF_UNHEALTHY);
    assert_int_equal(get_status(port, "/readyz"), 503);
    atomic_store(&sb, PF_HEALTHY);
    /* The built-in breaker check: an open breaker is not ready. */
    assert_pf_ok(pf_registry_get_breaker(r, "payments", NULL, &payments));
    {
        const char *tags[1] = {"readiness"};
        pf_health_check_opts_t opts;

        pf_health_check_opts_init(&opts);
        opts.tags = tags;
        opts.tags_len = 1;
        assert_pf_ok(
            pf_health_add_breaker_check(a, "payments", payments, &opts));
    }
    assert_int_equal(get_status(port, "/readyz"), 200);
    pf_breaker_force_open(payments);
    assert_int_equal(get_status(port, "/readyz"), 503);
    pf_breaker_force_close(payments);
    assert_int_equal(get_status(port, "/readyz"), 200);
    pf_http_server_stop(s);
    pf_registry_free(r); /* checkers first: they hold the breaker */
}

/* ---- metrics and status -------------------------------------------------- */

static void
test_http_metrics_page_passes_the_format_checks(void **state)
{
    pf_registry_t *r;
    pf_http_server_t *s;
    pf_breaker_t *b;
    pf_health_checker_t *hc;
    atomic_int st = PF_DEGRADED;
    resp_t resp;
    prom_doc_t doc;
    int rc;

    (void)state;
    assert_pf_ok(pf_registry_new(NULL, &r)); /* with the process block */
    s = start(r);
    assert_pf_ok(pf_registry_get_breaker(r, "db \"main\"\\\n", NULL, &b));
    pf_breaker_force_open(b);
    assert_pf_ok(pf_registry_get_health_checker(r, "app", NULL, &hc));
    add_tagged(hc, "cache", "readiness", &st);
    assert_int_equal(get_status(pf_http_server_port(s), "/readyz"), 200);

    assert_int_equal(request(pf_http_server_port(s), "GET", "/metrics", &resp),
                     200);
    assert_string_equal(resp.content_type,
                        "text/plain; version=0.0.4; charset=utf-8");
    if (!prom_check(resp.body, &doc)) {
        fail_msg("bad exposition: %s\n%s", doc.error, resp.body);
    }
    assert_non_null(
        prom_find(&doc, "puffinflow_breaker_state",
                  (const char *const[]){"name", "db \"main\"\\\n", NULL}));
    assert_true(prom_find(&doc, "puffinflow_health_status",
                          (const char *const[]){"check", "cache", NULL})
                    ->value == 1);
    assert_non_null(prom_find(&doc, "puffinflow_process_open_fds", NULL));
    prom_doc_free(&doc);
    /* And by the Prometheus project's own parser, when it is there (a
     * PF_BUILD_TESTS=ON build requires it). */
    rc = prom_parse_external(resp.body);
    if (rc != PROM_PARSE_SKIPPED) {
        assert_int_equal(rc, 0);
    }
    resp_free(&resp);

    assert_int_equal(request(pf_http_server_port(s), "GET", "/status", &resp),
                     200);
    assert_string_equal(resp.content_type, "application/json");
    assert_true(json_valid(resp.body));
    assert_non_null(strstr(resp.body, "\"state\":\"open\""));
    resp_free(&resp);
    pf_http_server_stop(s);
    pf_registry_free(r);
}

static void
test_http_head_answers_without_a_body(void **state)
{
    pf_registry_t *r = quiet_registry();
    pf_http_server_t *s = start(r);
    resp_t resp;

    (void)state;
    assert_int_equal(request(pf_http_server_port(s), "HEAD", "/metrics", &resp),
                     200);
    assert_int_equal(resp.len, 0);
    assert_string_equal(resp.content_type,
                        "text/plain; version=0.0.4; charset=utf-8");
    resp_free(&resp);
    pf_http_server_stop(s);
    pf_registry_free(r);
}

/* ---- bad requests -------------------------------------------------------- */

static void
test_http_unknown_path_is_404_and_wrong_method_405(void **state)
{
    static const char *const methods[] = {"POST", "PUT", "DELETE", "PATCH",
                                          "OPTIONS"};
    pf_registry_t *r = quiet_registry();
    pf_http_server_t *s = start(r);
    unsigned port = pf_http_server_port(s);
    resp_t resp;
    size_t i;

    (void)state;
    assert_int_equal(get_status(port, "/"), 404);
    assert_int_equal(get_status(port, "/nope"), 404);
    assert_int_equal(get_status(port, "/metrics/"), 404);
    assert_int_equal(get_status(port, "/METRICS"), 404);
    assert_int_equal(get_status(port, "/healthz?verbose=1"), 200);
    for (i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        assert_int_equal(request(port, methods[i], "/metrics", &resp), 405);
        assert_string_equal(resp.allow, "GET, HEAD");
        resp_free(&resp);
    }
    assert_int_equal(get_status(port, "/metrics"), 200);
    pf_http_server_stop(s);
    pf_registry_free(r);
}

#define RAW(port, lit) raw_request(port, lit, sizeof(lit) - 1)

static void
test_http_malformed_requests_get_400_and_the_server_keeps_serving(void **state)
{
    char junk[260];
    pf_registry_t *r = quiet_registry();
    pf_http_server_t *s = start(r);
    unsigned port = pf_http_server_port(s);
    int status;
    int i;

    (void)state;
    /* HTTP/1.1 without Host. */
    assert_int_equal(RAW(port, "GET /metrics HTTP/1.1\r\n\r\n"), 400);
    /* A header line without a colon, a space before the colon, folding. */
    assert_int_equal(
        RAW(port, "GET /metrics HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n"),
        400);
    assert_int_equal(RAW(port, "GET /metrics HTTP/1.1\r\nHost : x\r\n\r\n"),
                     400);
    assert_int_equal(
        RAW(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n"), 400);
    /* A request line missing its version. */
    assert_int_equal(RAW(port, "GET /metrics\r\nHost: x\r\n\r\n"), 400);
    /* Bad Content-Length, bad chunk size. */
    assert_int_equal(RAW(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n"
                               "Content-Length: abc\r\n\r\n"),
                     400);
    assert_int_equal(RAW(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n"
                               "Content-Length: -1\r\n\r\n"),
                     400);
    assert_int_equal(RAW(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n"
                               "Transfer-Encoding: chunked\r\n\r\n"
                               "zz\r\nhello\r\n0\r\n\r\n"),
                     400);
    /* Binary junk: every byte value, then an empty line. */
    for (i = 0; i < 256; i++) {
        junk[i] = (char)i;
    }
    memcpy(junk + 256, "\r\n\r\n", 4);
    assert_int_equal(raw_request(port, junk, sizeof(junk)), 400);
    /* A request line libmicrohttpd 0.9.75 cannot split into three parts:
     * it closes the connection without an answer (never a 2xx). */
    status = RAW(port, "GARBAGE\r\n\r\n");
    assert_true(status == 0 || status == 400);
    status = RAW(port, "GET /a b HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_true(status == 0 || status == 400);
    /* An unknown HTTP version is not malformed: 505. */
    assert_int_equal(RAW(port, "GET /metrics HTTP/9.9\r\nHost: x\r\n\r\n"),
                     505);
    /* After all that, it still serves. */
    assert_int_equal(get_status(port, "/metrics"), 200);
    assert_int_equal(RAW(port, "GET /healthz HTTP/1.0\r\n\r\n"), 200);
    pf_http_server_stop(s);
    pf_registry_free(r);
}

static void
test_http_oversized_requests_get_413_431_414(void **state)
{
    pf_registry_t *r = quiet_registry();
    pf_http_server_t *s = start(r);
    unsigned port = pf_http_server_port(s);
    size_t big = 64 * 1024;
    char *req = malloc(big + 256);
    int n;

    (void)state;
    assert_non_null(req);
    /* A declared body: refused before it is read. */
    assert_int_equal(RAW(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n"
                               "Content-Length: 10\r\n\r\n0123456789"),
                     413);
    /* A chunked body: counted as it comes, refused at its end. */
    assert_int_equal(RAW(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n"
                               "Transfer-Encoding: chunked\r\n\r\n"
                               "5\r\nhello\r\n0\r\n\r\n"),
                     413);
    /* Headers past max_header_bytes. */
    n = snprintf(req, 256, "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(req + n, 'a', big);
    memcpy(req + n + big, "\r\n\r\n", 4);
    assert_int_equal(raw_request(port, req, (size_t)n + big + 4), 431);
    /* A request line past it. */
    n = snprintf(req, 256, "GET /");
    memset(req + n, 'a', big);
    n += (int)big;
    n += snprintf(req + n, 256, " HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(raw_request(port, req, (size_t)n), 414);
    free(req);
    assert_int_equal(get_status(port, "/metrics"), 200);
    pf_http_server_stop(s);
    pf_registry_free(r);
}

static void
test_http_allows_a_body_up_to_max_body_bytes(void **state)
{
    pf_registry_t *r = quiet_registry();
    pf_http_config_t cfg;
    pf_http_server_t *s;
    unsigned port;

    (void)state;
    pf_http_config_init(&cfg);
    cfg.registry = r;
    cfg.max_body_bytes = 5;
    assert_pf_ok(pf_http_server_start(&cfg, &s));
    port = pf_http_server_port(s);
    assert_int_equal(RAW(port, "GET /healthz HTTP/1.1\r\nHost: x\r\n"
                               "Connection: close\r\n"
                               "Content-Length: 5\r\n\r\nhello"),
                     200);
    assert_int_equal(RAW(port, "GET /healthz HTTP/1.1\r\nHost: x\r\n"
                               "Content-Length: 6\r\n\r\nhello!"),
                     413);
    pf_http_server_stop(s);
    pf_registry_free(r);
}

/* ---- concurrency --------------------------------------------------------- */

typedef struct scrape {
    unsigned port;
    pf_registry_t *r;
    atomic_int done; /* the flippers may stop */
    atomic_int scrapers_left;
    atomic_int scrapes; /* good scrapes so far */
    atomic_int bad;     /* scrapes that failed a check */
    int rounds;
} scrape_t;

static void
scrape_or_flip(void *arg, unsigned i)
{
    scrape_t *sc = arg;
    int k;

    if (i < 4) {
        CURL *h = curl_easy_init();

        for (k = 0; k < sc->rounds; k++) {
            resp_t resp;
            prom_doc_t doc;
            size_t j;

            if (request_with(h, "127.0.0.1", sc->port, "GET", "/metrics",
                             &resp) != CURLE_OK ||
                resp.status != 200 || !prom_check(resp.body, &doc)) {
                atomic_fetch_add(&sc->bad, 1);
                resp_free(&resp);
                continue;
            }
            /* Every breaker's state is one of the three, and exactly one
             * of its in_state samples is 1. */
            for (j = 0; j < doc.nsamples; j++) {
                const prom_sample_t *p = &doc.samples[j];

                if (strcmp(p->name, "puffinflow_breaker_state") == 0 &&
                    p->value != 0 && p->value != 1 && p->value != 2) {
                    atomic_fetch_add(&sc->bad, 1);
                }
            }
            prom_doc_free(&doc);
            resp_free(&resp);
            atomic_fetch_add(&sc->scrapes, 1);
        }
        curl_easy_cleanup(h);
        atomic_fetch_sub(&sc->scrapers_left, 1);
        return;
    }
    /* Flippers: change breaker states and add and remove breakers while
     * the scrapes run. */
    for (k = 0; atomic_load(&sc->scrapers_left) > 0; k++) {
        char name[16];
        pf_breaker_t *b;
        pf_permit_t p = PF_PERMIT_INIT;

        snprintf(name, sizeof(name), "b%u-%d", i, k % 5);
        assert_pf_ok(pf_registry_get_breaker(sc->r, name, NULL, &b));
        switch (k % 4) {
        case 0:
            pf_breaker_force_open(b);
            break;
        case 1:
            pf_breaker_force_close(b);
            break;
        case 2:
            if (pf_breaker_acquire(b, &p) == 0) {
                pf_breaker_record(b, &p, k % 3 == 0 ? -1 : 0);
            }
            break;
        default:
            assert_pf_ok(
                pf_registry_remove(sc->r, PF_REGISTRY_BREAKER, name, NULL));
            break;
        }
    }
}

static void
test_http_concurrent_scrapes_while_breakers_change_state(void **state)
{
    scrape_t sc;
    pf_http_server_t *s;

    (void)state;
    memset(&sc, 0, sizeof(sc));
    sc.r = quiet_registry();
    sc.rounds = 40;
    atomic_store(&sc.scrapers_left, 4);
    s = start(sc.r);
    sc.port = pf_http_server_port(s);
    pf_test_run_threads(6, scrape_or_flip, &sc);
    assert_int_equal(atomic_load(&sc.bad), 0);
    assert_int_equal(atomic_load(&sc.scrapes), 4 * sc.rounds);
    pf_http_server_stop(s);
    pf_registry_free(sc.r);
}

/* Scrapers hammer the server until told to stop; the main thread stops
 * the server under them. Scrapes after the stop fail (connection refused
 * or reset), which is expected; nothing may leak (LeakSanitizer in the
 * ASan build; the library's own allocations are counted here too). */
static void
hammer(void *arg, unsigned i)
{
    scrape_t *sc = arg;
    static const char *const paths[] = {"/metrics", "/status", "/readyz"};
    CURL *h = curl_easy_init();
    unsigned k = 0;

    while (!atomic_load(&sc->done)) {
        resp_t resp;

        if (request_with(h, "127.0.0.1", sc->port, "GET", paths[(i + k) % 3],
                         &resp) == CURLE_OK &&
            resp.status == 200) {
            atomic_fetch_add(&sc->scrapes, 1);
        }
        resp_free(&resp);
        k++;
    }
    curl_easy_cleanup(h);
}

typedef struct stopper {
    scrape_t *sc;
    pf_http_server_t *s;
} stopper_t;

static void *
stop_thread(void *arg)
{
    stopper_t *st = arg;

    pf_test_wait_for_flag(&st->sc->scrapes, 30);
    pf_http_server_stop(st->s);
    atomic_store(&st->sc->done, 1);
    return NULL;
}

static void
test_http_stop_with_scrapes_in_flight_leaks_nothing(void **state)
{
    scrape_t sc;
    stopper_t st;
    pthread_t t;
    pf_health_checker_t *hc;
    atomic_int ok = PF_HEALTHY;
    long live;

    (void)state;
    memset(&sc, 0, sizeof(sc));
    pf_test_alloc_install();
    live = pf_test_alloc_live();
    sc.r = quiet_registry();
    assert_pf_ok(pf_registry_get_health_checker(sc.r, "app", NULL, &hc));
    add_tagged(hc, "c", "readiness", &ok);
    st.sc = &sc;
    st.s = start(sc.r);
    sc.port = pf_http_server_port(st.s);
    assert_int_equal(pthread_create(&t, NULL, stop_thread, &st), 0);
    pf_test_run_threads(4, hammer, &sc);
    pthread_join(t, NULL);
    assert_true(atomic_load(&sc.scrapes) >= 30);
    pf_registry_free(sc.r);
    assert_int_equal(pf_test_alloc_live(), live);
    pf_test_alloc_uninstall();
}

static void
test_http_start_stop_many_times_leaks_nothing(void **state)
{
    pf_registry_t *r = quiet_registry();
    int i;

    (void)state;
    for (i = 0; i < 50; i++) {
        pf_http_server_t *s = start(r);

        if (i % 10 == 0) {
            assert_int_equal(get_status(pf_http_server_port(s), "/healthz"),
                             200);
        }
        pf_http_server_stop(s);
    }
    pf_registry_free(r);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_config_init_sets_the_documented_defaults),
        cmocka_unit_test(test_http_start_rejects_bad_config),
        cmocka_unit_test(test_http_port_in_use_is_esystem),
        cmocka_unit_test(test_http_serves_on_ipv6_loopback),
        cmocka_unit_test(test_http_probes_are_200_with_no_health_checkers),
        cmocka_unit_test(test_http_probe_body_is_an_array_of_checker_reports),
        cmocka_unit_test(test_http_readiness_follows_health_changes),
        cmocka_unit_test(test_http_readiness_combines_every_checker),
        cmocka_unit_test(test_http_metrics_page_passes_the_format_checks),
        cmocka_unit_test(test_http_head_answers_without_a_body),
        cmocka_unit_test(test_http_unknown_path_is_404_and_wrong_method_405),
        cmocka_unit_test(
            test_http_malformed_requests_get_400_and_the_server_keeps_serving),
        cmocka_unit_test(test_http_oversized_requests_get_413_431_414),
        cmocka_unit_test(test_http_allows_a_body_up_to_max_body_bytes),
        cmocka_unit_test(
            test_http_concurrent_scrapes_while_breakers_change_state),
        cmocka_unit_test(test_http_stop_with_scrapes_in_flight_leaks_nothing),
        cmocka_unit_test(test_http_start_stop_many_times_leaks_nothing),
    };
    int rc;

    curl_global_init(CURL_GLOBAL_DEFAULT);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
