/* Serve health probes and metrics for a small service.
 *
 * The service has a circuit breaker in front of its payments dependency
 * and a bulkhead around its database calls, all in the default registry.
 * A health checker "app" reports readiness from the breaker (an open
 * breaker makes the service not ready) and liveness from a trivial check.
 * The endpoint serves /healthz, /readyz, /metrics and /status.
 *
 *   example_http_server [port]      serve until SIGINT or SIGTERM
 *   example_http_server --self-test scrape itself and check what it
 *                                   promises: 200 while the breaker is
 *                                   closed, 503 once it opens, metrics
 *                                   showing the open state; exit 0 only
 *                                   then
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "puffinflow/breaker.h"
#include "puffinflow/bulkhead.h"
#include "puffinflow/error.h"
#include "puffinflow/health.h"
#include "puffinflow/http.h"
#include "puffinflow/registry.h"

static int
alive(pf_health_result_t *res, void *arg)
{
    (void)arg;
    pf_health_result_set(res, PF_HEALTHY, "serving");
    return 0;
}

/* Set up the service's objects in the default registry. */
static int
setup(pf_breaker_t **payments)
{
    static const char *const readiness[] = {"readiness"};
    static const char *const liveness[] = {"liveness"};
    pf_registry_t *reg = pf_registry_default();
    pf_breaker_config_t bcfg;
    pf_bulkhead_t *db;
    pf_health_checker_t *app;
    pf_health_check_opts_t opts;
    int rc;

    pf_breaker_config_init(&bcfg);
    bcfg.failure_threshold = 3;
    bcfg.recovery_timeout = 30.0;
    rc = pf_registry_get_breaker(reg, "payments", &bcfg, payments);
    if (rc == 0) {
        rc = pf_registry_get_bulkhead(reg, "database", NULL, &db);
    }
    if (rc == 0) {
        rc = pf_registry_get_health_checker(reg, "app", NULL, &app);
    }
    if (rc == 0) {
        pf_health_check_opts_init(&opts);
        opts.tags = readiness;
        opts.tags_len = 1;
        rc = pf_health_add_breaker_check(app, "payments", *payments, &opts);
    }
    if (rc == 0) {
        pf_health_check_opts_init(&opts);
        opts.tags = liveness;
        opts.tags_len = 1;
        rc = pf_health_add_check_ex(app, "process", alive, NULL, &opts);
    }
    return rc;
}

/* GET path from 127.0.0.1:port; returns the status code (0 on failure)
 * and the start of the response in buf. */
static int
get(unsigned port, const char *path, char *buf, size_t len)
{
    struct sockaddr_in a;
    char req[256];
    size_t got = 0;
    ssize_t n;
    int status = 0;
    int fd;

    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        return 0;
    }
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    snprintf(req, sizeof(req),
             "GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
             path);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        send(fd, req, strlen(req), 0) == (ssize_t)strlen(req)) {
        while (got + 1 < len &&
               (n = recv(fd, buf + got, len - 1 - got, 0)) > 0) {
            got += (size_t)n;
        }
        buf[got] = '\0';
        if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1) {
            status = 0;
        }
    }
    close(fd);
    return status;
}

static int
self_test(pf_http_server_t *srv, pf_breaker_t *payments)
{
    static char buf[1 << 16];
    unsigned port = pf_http_server_port(srv);
    int ok = 1;

    ok &= get(port, "/healthz", buf, sizeof(buf)) == 200;
    ok &= get(port, "/readyz", buf, sizeof(buf)) == 200;
    ok &= get(port, "/metrics", buf, sizeof(buf)) == 200;
    ok &=
        strstr(buf, "puffinflow_breaker_state{name=\"payments\"} 0\n") != NULL;
    pf_breaker_force_open(payments); /* the dependency is down */
    ok &= get(port, "/readyz", buf, sizeof(buf)) == 503;
    ok &= get(port, "/healthz", buf, sizeof(buf)) == 200; /* still alive */
    ok &= get(port, "/metrics", buf, sizeof(buf)) == 200;
    ok &=
        strstr(buf, "puffinflow_breaker_state{name=\"payments\"} 1\n") != NULL;
    ok &= get(port, "/status", buf, sizeof(buf)) == 200;
    ok &= get(port, "/nowhere", buf, sizeof(buf)) == 404;
    printf("self-test %s\n", ok ? "passed" : "FAILED");
    return ok ? 0 : 1;
}

int
main(int argc, char **argv)
{
    bool test = argc > 1 && strcmp(argv[1], "--self-test") == 0;
    pf_http_config_t cfg;
    pf_http_server_t *srv;
    pf_breaker_t *payments;
    sigset_t stop;
    int rc;
    int sig;

    rc = setup(&payments);
    if (rc != 0) {
        fprintf(stderr, "setup: %s\n", pf_strerror(rc));
        return 1;
    }
    pf_http_config_init(&cfg);
    if (argc > 1 && !test) {
        cfg.port = (unsigned)strtoul(argv[1], NULL, 10);
    }
    /* Block the stop signals before the server's threads start, so they
     * inherit the mask and sigwait below gets them. */
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    rc = pf_http_server_start(&cfg, &srv);
    if (rc != 0) {
        fprintf(stderr, "start: %s\n", pf_strerror(rc));
        return 1;
    }
    printf("listening on http://%s:%u/ (/healthz /readyz /metrics /status)\n",
           cfg.address, pf_http_server_port(srv));
    fflush(stdout);
    if (test) {
        rc = self_test(srv, payments);
    } else {
        sigwait(&stop, &sig);
    }
    pf_http_server_stop(srv);
    pf_registry_clear(pf_registry_default());
    return rc;
}
