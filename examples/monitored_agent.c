/* The reference's MonitoredAgent (REFERENCE.md, "Health Checks and
 * Monitoring"): a health checker with three checks, run before each piece
 * of processing, which is refused while the service is unhealthy.
 *
 *   class MonitoredAgent(Agent):
 *       def __init__(self):
 *           self.health_checker = HealthChecker()
 *           self.health_checker.add_check("database", self.check_database)
 *           self.health_checker.add_check("external_api",
 *                                         self.check_external_api)
 *           self.health_checker.add_check("memory_usage", self.check_memory)
 *
 *       @state
 *       async def monitored_processing(self, ctx: Context) -> None:
 *           health_status = await self.health_checker.check_all()
 *           if not health_status.is_healthy():
 *               raise HealthCheckFailedError(
 *                   f"Health checks failed: {health_status.failed_checks}")
 *           ctx.result = await process_data()
 *
 * In C the state fails with PF_EUNHEALTHY (HealthCheckFailedError), the
 * message naming the failed checks in ctx.error; it is not retried, so the
 * run returns PF_EUNHEALTHY and records a dead letter. Each request is one
 * run of the agent.
 *
 * Here the database is a real TCP listener on 127.0.0.1 that the program
 * opens and closes, checked by the built-in TCP connect check; the external
 * API is a simulated HTTP status (200 healthy, anything else degraded, no
 * answer unhealthy); memory usage is a simulated percentage judged as the
 * reference judges psutil's figure (> 90 unhealthy, > 80 degraded). The
 * checker runs on a manual clock, so the API check's 0.5 s timeout passes
 * when the program says so.
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
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "puffinflow/agent.h"
#include "puffinflow/alloc.h"
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
        pf_health_result_set(res, PF_UNHEALTHY, "API check failed: no answer");
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

typedef struct monitored_agent {
    pf_agent_t *agent;
    pf_health_checker_t *health_checker;
    database_t db;
    external_api_t api;
    atomic_int changes; /* status changes the listener heard */
} monitored_agent_t;

static int64_t
process_data(void)
{
    return 42;
}

/* @state monitored_processing: ctx.result, or PF_EUNHEALTHY with the
 * failed checks in ctx.error. */
static int
monitored_processing(pf_ctx_t *ctx, void *arg)
{
    monitored_agent_t *a = arg;
    pf_health_report_t *health_status;
    char error[256];
    int n;
    int rc;

    rc = pf_health_check_all(a->health_checker, &health_status);
    if (rc != 0) {
        return rc;
    }
    if (pf_health_report_is_healthy(health_status)) {
        pf_health_report_free(health_status);
        return pf_ctx_set_int(ctx, "result", process_data());
    }
    /* raise HealthCheckFailedError(f"Health checks failed: {...}") */
    n = snprintf(error, sizeof(error), "Health checks failed: [");
    for (size_t i = 0; i < pf_health_report_failed_count(health_status); i++) {
        n += snprintf(error + n, sizeof(error) - (size_t)n, "%s'%s'",
                      i > 0 ? ", " : "",
                      pf_health_report_failed(health_status, i));
    }
    snprintf(error + n, sizeof(error) - (size_t)n, "]");
    pf_health_report_free(health_status);
    rc = pf_ctx_set_string(ctx, "error", error);
    return rc != 0 ? rc : PF_EUNHEALTHY;
}

static void
on_health_change(const pf_health_event_t *ev, void *arg)
{
    monitored_agent_t *a = arg;

    atomic_fetch_add(&a->changes, 1);
    printf("  [health] %s: %s -> %s%s%s\n",
           ev->check != NULL ? ev->check : "overall",
           pf_health_status_name(ev->from), pf_health_status_name(ev->to),
           ev->message[0] != '\0' ? " - " : "", ev->message);
}

static void
on_agent_event(const pf_agent_event_t *ev, void *arg)
{
    (void)arg;
    if (ev->kind == PF_AGENT_EVENT_DEAD_LETTER) {
        printf("  [agent] %s failed: %s (dead letter)\n", ev->state,
               pf_error_name(ev->error));
    }
}

static int
monitored_agent_init(monitored_agent_t *a, pf_executor_t *ex,
                     const pf_clock_t *clock)
{
    pf_health_config_t cfg;
    pf_health_tcp_opts_t tcp;
    pf_health_check_opts_t api_opts;
    pf_agent_config_t acfg;
    pf_state_opts_t o;
    int rc;

    memset(a, 0, sizeof(*a));
    atomic_init(&a->api.status, 200);
    atomic_init(&a->api.hang, false);
    pthread_mutex_init(&a->api.mu, NULL);
    pthread_cond_init(&a->api.cv, NULL);
    atomic_store(&g_memory_percent, 40);
    database_start(&a->db);

    pf_health_config_init(&cfg);
    cfg.name = "MonitoredAgent";
    cfg.listener = on_health_change;
    cfg.listener_arg = a;
    cfg.clock = clock;
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
    if (rc != 0) {
        return rc;
    }

    pf_agent_config_init(&acfg);
    acfg.name = "MonitoredAgent";
    acfg.executor = ex;
    acfg.listener = on_agent_event;
    rc = pf_agent_new_ex(&acfg, &a->agent);
    if (rc != 0) {
        return rc;
    }
    pf_state_opts_init(&o);
    o.max_retries = 0; /* an unhealthy service is refused, not retried */
    return pf_agent_add_state(a->agent, "monitored_processing",
                              monitored_processing, a, &o);
}

static void
monitored_agent_free(monitored_agent_t *a)
{
    pf_agent_free(a->agent);
    pf_health_checker_free(a->health_checker);
    if (a->db.fd >= 0) {
        database_stop(&a->db);
    }
    pthread_cond_destroy(&a->api.cv);
    pthread_mutex_destroy(&a->api.mu);
}

/* ---- the walk-through ------------------------------------------------- */

static pf_health_status_t
last_status(monitored_agent_t *a, const char *check)
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

/* What a request ended with. */
typedef struct outcome {
    int rc;
    int64_t result;  /* ctx.result */
    char error[256]; /* ctx.error */
} outcome_t;

/* The end of a run: its result and ctx's. */
static void
finish(monitored_agent_t *a, int rc, pf_ctx_t *ctx, outcome_t *o)
{
    memset(o, 0, sizeof(*o));
    o->rc = rc;
    pf_ctx_get_int(ctx, "result", &o->result);
    pf_ctx_get_string(ctx, "error", o->error, sizeof(o->error), NULL);
    pf_ctx_free(ctx);
    if (rc == 0) {
        printf(
            "  processed: result %lld (overall %s)\n", (long long)o->result,
            pf_health_status_name(pf_health_checker_status(a->health_checker)));
    } else {
        printf("  refused: %s: %s\n", pf_error_name(rc), o->error);
    }
}

/* One request: a run of the agent, checked against what is wanted. */
static void
step(monitored_agent_t *a, const char *what, int want_rc,
     const char *want_error)
{
    pf_ctx_t *ctx;
    outcome_t o;

    printf("%s\n", what);
    if (pf_ctx_new(&ctx) != 0) {
        check(false, "pf_ctx_new");
        return;
    }
    finish(a, pf_agent_run(a->agent, ctx, NULL), ctx, &o);
    check(o.rc == want_rc, what);
    check(o.rc != 0 || o.result == 42, "processing produced its result");
    if (want_error != NULL) {
        check(strcmp(o.error, want_error) == 0, want_error);
    }
}

static void
status_page(monitored_agent_t *a)
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
        check(strstr(json, "\"external_api\":{\"status\":\"degraded\"") != NULL,
              "the JSON report has each check");
        pf_free(json);
    }
    pf_health_report_free(r);
}

/* Wait until the checks still running are the hung one alone, and the
 * state waits for it on the clock. */
static void
wait_for_hung_check(monitored_agent_t *a, const pf_clock_t *clock)
{
    pf_health_metrics_t m;

    for (;;) {
        pf_health_metrics(a->health_checker, &m);
        if (m.running == 1 && pf_clock_manual_waiters(clock) > 0) {
            return;
        }
        sched_yield();
    }
}

int
main(void)
{
    pf_clock_t *clock;
    pf_executor_config_t ecfg;
    pf_executor_t *ex = NULL;
    monitored_agent_t a;
    pf_ctx_t *ctx;
    pf_run_t *run;
    pf_health_report_t *r;
    pf_health_metrics_t m;
    outcome_t o;

    if (pf_clock_manual_new(&clock) != 0) {
        return 1;
    }
    pf_executor_config_init(&ecfg);
    ecfg.clock = clock;
    ecfg.workers = 1;
    if (pf_executor_new(&ecfg, &ex) != 0 ||
        monitored_agent_init(&a, ex, clock) != 0) {
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

    /* 7. The API hangs: the run is started on the executor, and once the
     * other checks are done the API's 0.5 s pass on the manual clock. The
     * report comes at the timeout, and the hung call is not started again
     * while it hangs. */
    printf("7. the API hangs\n");
    atomic_store(&a.api.hang, true);
    if (pf_ctx_new(&ctx) != 0 ||
        pf_agent_start(a.agent, ctx, NULL, &run) != 0) {
        check(false, "start a run");
        return 1;
    }
    wait_for_hung_check(&a, clock);
    pf_clock_manual_advance(clock, PF_NS_PER_SEC / 2);
    finish(&a, pf_run_wait(run, NULL, NULL), ctx, &o);
    pf_run_free(run);
    check(o.rc == PF_EUNHEALTHY &&
              strcmp(o.error, "Health checks failed: ['external_api']") == 0,
          "a critical check that hangs makes the service unhealthy");
    if (pf_health_snapshot(a.health_checker, &r) == 0) {
        const pf_health_entry_t *e = pf_health_report_find(r, "external_api");

        printf("  external_api: %s - %s\n", pf_health_status_name(e->status),
               e->message);
        check(e->timed_out && strcmp(e->message, "timed out after 0.5 s") == 0,
              "the hung check is reported as a timeout");
        pf_health_report_free(r);
    }
    pthread_mutex_lock(&a.api.mu);
    atomic_store(&a.api.hang, false);
    pthread_cond_broadcast(&a.api.cv);
    pthread_mutex_unlock(&a.api.mu);
    /* The released call finishes on its own thread; the API it uses must
     * outlive it, so wait for it before tearing the API down. */
    do {
        sched_yield();
        pf_health_metrics(a.health_checker, &m);
    } while (m.running != 0);

    /* One event per check whose status changed, and one per report that
     * changed the overall status: 2 at steps 2 to 7. */
    check(atomic_load(&a.changes) == 12, "the listener heard every change");
    printf("%d status changes heard\n", atomic_load(&a.changes));
    monitored_agent_free(&a);
    pf_executor_free(ex);
    pf_clock_free(clock);
    if (!g_ok) {
        return 1;
    }
    printf("monitored_agent: OK\n");
    return 0;
}
