/* The reference's MonitoredAgent: a health checker with three checks, run
 * before each piece of processing, which is refused while the service is
 * unhealthy.
 *
 *   self.health_checker = HealthChecker()
 *   self.health_checker.add_check("database", self.check_database)
 *   self.health_checker.add_check("external_api", self.check_external_api)
 *   self.health_checker.add_check("memory_usage", self.check_memory)
 *   ...
 *   health_status = await self.health_checker.check_all()
 *   if not health_status.is_healthy():
 *       raise HealthCheckFailedError(
 *           f"Health checks failed: {health_status.failed_checks}")
 *   ctx.result = await process_data()
 *
 * Here the database is a real TCP listener on 127.0.0.1 that the program
 * opens and closes, checked by the built-in TCP connect check; the external
 * API is a simulated HTTP status (200 healthy, anything else degraded, no
 * answer unhealthy); memory usage is a simulated percentage judged as the
 * reference judges psutil's figure (> 90 unhealthy, > 80 degraded).
 *
 * The program walks through the situations the reference handles and
 * exits 0 only if each gave what it promises: processing runs while all is
 * well and while something is merely degraded; it is refused, naming the
 * failed check, when the database is down or memory is exhausted; the
 * listener hears each status change; the JSON report parses the way a
 * /status endpoint would serve it; and a hung dependency is reported as a
 * timeout without holding up the report. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "puffinflow/alloc.h"
#include "puffinflow/error.h"
#include "puffinflow/health.h"

static bool g_ok = true;

static void
check(bool cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "FAILED: %s\n", what);
        g_ok = false;
    }
}

/* ---- simulated dependencies ------------------------------------------- */

/* The database: a listening socket on 127.0.0.1. */
typedef struct database {
    int fd;
    unsigned port;
} database_t;

static void
database_start(database_t *db)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    int one = 1;

    db->fd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(db->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((unsigned short)db->port); /* 0 the first time */
    if (db->fd < 0 || bind(db->fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        listen(db->fd, 16) != 0 ||
        getsockname(db->fd, (struct sockaddr *)&a, &len) != 0) {
        check(false, "the simulated database could not listen");
        return;
    }
    db->port = ntohs(a.sin_port);
}

static void
database_stop(database_t *db)
{
    close(db->fd);
    db->fd = -1;
}

/* The external API: its last HTTP status, 0 for no answer, and a gate a
 * call can hang on. */
typedef struct external_api {
    atomic_int status;
    atomic_bool hang;
    pthread_mutex_t mu;
    pthread_cond_t cv;
} external_api_t;

static int
check_external_api(pf_health_result_t *res, void *arg)
{
    external_api_t *api = arg;
    int status;

    pthread_mutex_lock(&api->mu);
    while (atomic_load(&api->hang)) {
        pthread_cond_wait(&api->cv, &api->mu);
    }
    pthread_mutex_unlock(&api->mu);
    status = atomic_load(&api->status);
    if (status == 0) {
        pf_health_result_set(res, PF_UNHEALTHY,
                             "API check failed: no answer");
    } else {
        pf_health_result_set(res, status == 200 ? PF_HEALTHY : PF_DEGRADED,
                             "API status: %d", status);
    }
    return 0;
}

/* The machine's memory, as a percentage the program sets. */
static atomic_int g_memory_percent;

static int
check_memory(pf_health_result_t *res, void *arg)
{
    int pct = atomic_load(&g_memory_percent);
    pf_health_status_t status = PF_HEALTHY;

    (void)arg;
    if (pct > 90) {
        status = PF_UNHEALTHY;
    } else if (pct > 80) {
        status = PF_DEGRADED;
    }
    pf_health_result_set(res, status, "Memory usage: %d%%", pct);
    return 0;
}

/* ---- the agent -------------------------------------------------------- */

typedef struct agent {
    pf_health_checker_t *health_checker;
    database_t db;
    external_api_t api;
    atomic_int changes;   /* status changes the listener heard */
    long result;          /* ctx.result */
    char error[256];      /* the HealthCheckFailedError's message */
} agent_t;

static void
on_health_change(const pf_health_event_t *ev, void *arg)
{
    agent_t *a = arg;

    atomic_fetch_add(&a->changes, 1);
    printf("  [health] %s: %s -> %s%s%s\n",
           ev->check != NULL ? ev->check : "overall",
           pf_health_status_name(ev->from), pf_health_status_name(ev->to),
           ev->message[0] != '\0' ? " - " : "", ev->message);
}

static int
agent_init(agent_t *a)
{
    pf_health_config_t cfg;
    pf_health_tcp_opts_t tcp;
    pf_health_check_opts_t api_opts;
    int rc;

    memset(a, 0, sizeof(*a));
    atomic_init(&a->api.status, 200);
    atomic_init(&a->api.hang, false);
    pthread_mutex_init(&a->api.mu, NULL);
    pthread_cond_init(&a->api.cv, NULL);
    atomic_store(&g_memory_percent, 40);
    database_start(&a->db);

    pf_health_config_init(&cfg);
    cfg.name = "monitored_agent";
    cfg.on_change = on_health_change;
    cfg.on_change_arg = a;
    rc = pf_health_checker_new(&cfg, &a->health_checker);
    if (rc != 0) {
        return rc;
    }
    /* The database: the built-in TCP connect check. */
    pf_health_tcp_opts_init(&tcp);
    tcp.host = "127.0.0.1";
    tcp.port = a->db.port;
    rc = pf_health_add_tcp_check(a->health_checker, "database", &tcp, NULL);
    if (rc == 0) {
        /* The API gets half a second: a hung call is a timeout. */
        pf_health_check_opts_init(&api_opts);
        api_opts.timeout = 0.5;
        rc = pf_health_add_check_ex(a->health_checker, "external_api",
                                    check_external_api, &a->api, &api_opts);
    }
    if (rc == 0) {
        rc = pf_health_add_check(a->health_checker, "memory_usage",
                                 check_memory, NULL);
    }
    return rc;
}

/* monitored_processing: 0 with a->result set, or PF_EUNHEALTHY with the
 * failed checks in a->error. */
static int
monitored_processing(agent_t *a)
{
    pf_health_report_t *health_status;
    size_t i;
    int rc;

    rc = pf_health_check_all(a->health_checker, &health_status);
    if (rc != 0) {
        return rc;
    }
    if (!pf_health_report_is_healthy(health_status)) {
        int n = snprintf(a->error, sizeof(a->error),
                         "Health checks failed: [");

        for (i = 0; i < pf_health_report_failed_count(health_status); i++) {
            n += snprintf(a->error + n, sizeof(a->error) - (size_t)n,
                          "%s'%s'", i > 0 ? ", " : "",
                          pf_health_report_failed(health_status, i));
        }
        snprintf(a->error + n, sizeof(a->error) - (size_t)n, "]");
        pf_health_report_free(health_status);
        return PF_EUNHEALTHY;
    }
    pf_health_report_free(health_status);
    a->result = 42; /* process_data() */
    a->error[0] = '\0';
    return 0;
}

static void
agent_free(agent_t *a)
{
    pf_health_checker_free(a->health_checker);
    if (a->db.fd >= 0) {
        database_stop(&a->db);
    }
    pthread_cond_destroy(&a->api.cv);
    pthread_mutex_destroy(&a->api.mu);
}

/* ---- the walk-through ------------------------------------------------- */

static pf_health_status_t
last_status(agent_t *a, const char *check)
{
    pf_health_report_t *r;
    pf_health_status_t s = PF_UNHEALTHY;

    if (pf_health_snapshot(a->health_checker, &r) == 0) {
        const pf_health_entry_t *e = pf_health_report_find(r, check);

        if (e != NULL) {
            s = e->status;
        }
        pf_health_report_free(r);
    }
    return s;
}

static void
step(agent_t *a, const char *what, int want_rc, const char *want_error)
{
    int rc;

    a->result = 0;
    printf("%s\n", what);
    rc = monitored_processing(a);
    if (rc == 0) {
        printf("  processed: result %ld (overall %s)\n", a->result,
               pf_health_status_name(
                   pf_health_checker_status(a->health_checker)));
    } else {
        printf("  refused: %s\n", a->error);
    }
    check(rc == want_rc, what);
    check(rc != 0 || a->result == 42, "processing produced its result");
    if (want_error != NULL) {
        check(strcmp(a->error, want_error) == 0, want_error);
    }
}

static void
status_page(agent_t *a)
{
    pf_health_report_t *r;
    char *json = NULL;

    if (pf_health_check_all(a->health_checker, &r) != 0) {
        check(false, "check_all for the status page");
        return;
    }
    check(pf_health_report_json_alloc(r, &json) == 0, "JSON report");
    if (json != NULL) {
        printf("GET /status\n  %s\n", json);
        check(strncmp(json, "{\"status\":\"degraded\",\"healthy\":true", 35) ==
                  0,
              "the JSON report leads with the overall status");
        check(strstr(json, "\"external_api\":{\"status\":\"degraded\"") !=
                  NULL,
              "the JSON report has each check");
        pf_free(json);
    }
    pf_health_report_free(r);
}

int
main(void)
{
    agent_t a;
    pf_health_report_t *r;
    const pf_health_entry_t *e;

    if (agent_init(&a) != 0) {
        fprintf(stderr, "FAILED: could not set up the agent\n");
        return 1;
    }

    step(&a, "1. everything is up", 0, NULL);
    check(pf_health_checker_status(a.health_checker) == PF_HEALTHY,
          "all healthy");

    atomic_store(&a.api.status, 503);
    step(&a, "2. the API answers 503: degraded, still processing", 0, NULL);
    check(last_status(&a, "external_api") == PF_DEGRADED, "API degraded");
    status_page(&a);

    atomic_store(&a.api.status, 200);
    atomic_store(&g_memory_percent, 85);
    step(&a, "3. memory at 85%: degraded, still processing", 0, NULL);
    atomic_store(&g_memory_percent, 95);
    step(&a, "4. memory at 95%: unhealthy, processing refused", PF_EUNHEALTHY,
         "Health checks failed: ['memory_usage']");
    atomic_store(&g_memory_percent, 40);

    database_stop(&a.db);
    step(&a, "5. the database goes down: refused", PF_EUNHEALTHY,
         "Health checks failed: ['database']");
    check(last_status(&a, "database") == PF_UNHEALTHY, "database unhealthy");
    database_start(&a.db); /* the same port again */
    step(&a, "6. the database is back", 0, NULL);

    /* 7. The API hangs: the report comes at its 0.5 s timeout, and the
     * hung call is not started again while it hangs. */
    printf("7. the API hangs\n");
    atomic_store(&a.api.hang, true);
    if (pf_health_check_all(a.health_checker, &r) == 0) {
        e = pf_health_report_find(r, "external_api");
        printf("  external_api: %s - %s\n", pf_health_status_name(e->status),
               e->message);
        check(e->timed_out && e->status == PF_UNHEALTHY,
              "a hung check is reported as a timeout");
        check(strcmp(e->message, "timed out after 0.5 s") == 0,
              "the timeout message");
        check(!pf_health_report_is_healthy(r), "a critical timeout is unhealthy");
        pf_health_report_free(r);
    }
    pthread_mutex_lock(&a.api.mu);
    atomic_store(&a.api.hang, false);
    pthread_cond_broadcast(&a.api.cv);
    pthread_mutex_unlock(&a.api.mu);
    /* The released call finishes on its own thread; the API it uses must
     * outlive it, so wait for it before tearing the API down. */
    for (;;) {
        pf_health_metrics_t m;

        pf_health_metrics(a.health_checker, &m);
        if (m.running == 0) {
            break;
        }
        usleep(1000);
    }

    /* One event per check whose status changed, and one per report that
     * changed the overall status: 2 at steps 2 to 7. */
    check(atomic_load(&a.changes) == 12, "the listener heard every change");
    printf("%d status changes heard\n", atomic_load(&a.changes));
    agent_free(&a);
    if (!g_ok) {
        return 1;
    }
    printf("monitored_agent: OK\n");
    return 0;
}
