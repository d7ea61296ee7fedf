/* Fuzz the HTTP request path of the puffinflow-http endpoint
 * (integrations/http), through its public API only.
 *
 * Once per process (LLVMFuzzerInitialize) a server is started on loopback
 * over a registry holding a breaker and a health checker with a liveness
 * check. Each input is sent as the raw bytes of one connection, whose
 * writing side is then shut; whatever comes back is read until the server
 * closes. Then a plain GET /healthz on a new connection must be answered
 * with a status line: the server goes on serving whatever it was sent.
 * Checked besides: an answer to the fuzzed request, if any, starts with a
 * status line; no memory error or undefined behaviour in our code. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "puffinflow/breaker.h"
#include "puffinflow/error.h"
#include "puffinflow/health.h"
#include "puffinflow/http.h"
#include "puffinflow/registry.h"

#include "fuzz_util.h"

/* Seconds a reply may take before the server counts as stuck. */
#define REPLY_TIMEOUT 10

static pf_registry_t *registry;
static pf_http_server_t *server;
static unsigned port;

static int
ok_check(pf_health_result_t *res, void *arg)
{
    (void)arg;
    snprintf(res->message, sizeof(res->message), "fine");
    return 0;
}

static int
connect_server(void)
{
    struct sockaddr_in sa;
    struct timeval tv = {REPLY_TIMEOUT, 0};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    FUZZ_CHECK(fd >= 0, "socket: %s", strerror(errno));
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    FUZZ_CHECK(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0,
               "connect: %s", strerror(errno));
    return fd;
}

static void
set_timeout(int fd, long ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

/* Send len bytes (as far as the server takes them), shut the writing
 * side, and read the reply into buf (its first cap - 1 bytes,
 * NUL-terminated) until the server closes or, with keep_alive, until the
 * reply has paused for a moment: a server may keep a connection open
 * after answering, although its client has shut its side. Returns the
 * bytes kept; *stuck when nothing came within first_ms. */
static size_t
exchange(const uint8_t *data, size_t len, char *buf, size_t cap,
         long first_ms, bool keep_alive, bool *stuck)
{
    int fd = connect_server();
    size_t off = 0;
    size_t kept = 0;
    bool got = false;

    *stuck = false;
    while (off < len) {
        ssize_t n = send(fd, data + off, len - off, MSG_NOSIGNAL);

        if (n <= 0) {
            break; /* the server closed early: it may, on a bad request */
        }
        off += (size_t)n;
    }
    shutdown(fd, SHUT_WR);
    set_timeout(fd, first_ms);
    for (;;) {
        char tmp[4096];
        ssize_t n = recv(fd, tmp, sizeof(tmp), 0);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            *stuck = !got;
            break;
        }
        if (n <= 0) {
            break;
        }
        if (!got && keep_alive) {
            set_timeout(fd, 100);
        }
        got = true;
        if (kept < cap - 1) {
            size_t take = (size_t)n < cap - 1 - kept ? (size_t)n
                                                     : cap - 1 - kept;

            memcpy(buf + kept, tmp, take);
            kept += take;
        }
    }
    buf[kept] = '\0';
    close(fd);
    return kept;
}

static bool
status_line(const char *s)
{
    return strncmp(s, "HTTP/1.", 7) == 0 && (s[7] == '0' || s[7] == '1') &&
           s[8] == ' ' && s[9] >= '1' && s[9] <= '5' && s[10] >= '0' &&
           s[10] <= '9' && s[11] >= '0' && s[11] <= '9';
}

static void
stop_server(void)
{
    pf_http_server_stop(server);
    pf_registry_free(registry);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static const char *const tags[] = {"liveness", "readiness"};
    pf_registry_config_t rcfg;
    pf_http_config_t cfg;
    pf_health_check_opts_t opts;
    pf_health_checker_t *hc;
    pf_breaker_t *b;

    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    pf_registry_config_init(&rcfg);
    rcfg.process_metrics = false;
    FUZZ_CHECK(pf_registry_new(&rcfg, &registry) == 0, "registry");
    FUZZ_CHECK(pf_registry_get_breaker(registry, "db", NULL, &b) == 0,
               "breaker");
    FUZZ_CHECK(pf_registry_get_health_checker(registry, "api", NULL, &hc) == 0,
               "checker");
    pf_health_check_opts_init(&opts);
    opts.tags = tags;
    opts.tags_len = 2;
    FUZZ_CHECK(pf_health_add_check_ex(hc, "ping", ok_check, NULL, &opts) == 0,
               "check");
    pf_http_config_init(&cfg);
    cfg.registry = registry;
    FUZZ_CHECK(pf_http_server_start(&cfg, &server) == 0, "server start");
    port = pf_http_server_port(server);
    atexit(stop_server);
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char probe[] = "GET /healthz HTTP/1.1\r\n"
                                "Host: localhost\r\nConnection: close\r\n\r\n";
    char reply[256];
    bool stuck;

    if (size > 64 * 1024) {
        return -1;
    }
    if (exchange(data, size, reply, sizeof(reply), 500, true, &stuck) > 0) {
        FUZZ_CHECK(status_line(reply), "reply without a status line:\n%s",
                   reply);
    }
    /* An incomplete request gets no answer, and the server may hold the
     * connection until its idle timeout although the client has shut its
     * side: the input gets half a second, and only the probe must not be
     * stuck. */
    (void)stuck;
    exchange((const uint8_t *)probe, sizeof(probe) - 1, reply, sizeof(reply),
             REPLY_TIMEOUT * 1000, false, &stuck);
    FUZZ_CHECK(!stuck && strncmp(reply, "HTTP/1.1 200 ", 13) == 0,
               "the server did not answer /healthz after the input "
               "(stuck %d):\n%s",
               stuck, reply);
    return 0;
}
