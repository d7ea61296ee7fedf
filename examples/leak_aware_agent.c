/* The reference's LeakAwareAgent (REFERENCE.md, "Resource Leak Detection"):
 *
 *   class LeakAwareAgent(Agent):
 *       def __init__(self):
 *           self.leak_detector = ResourceLeakDetector(
 *               check_interval=60,          # Check every 60 seconds
 *               memory_threshold=0.8,       # Alert if memory usage > 80%
 *               file_handle_threshold=1000, # Alert if file handles > 1000
 *               connection_threshold=100    # Alert if connections > 100
 *           )
 *           self.leak_detector.start_monitoring()
 *
 *       @state
 *       async def resource_using_task(self, ctx: Context) -> None:
 *           async with aiofiles.open('data.txt', 'r') as file:
 *               data = await file.read()
 *           async with database.connection() as conn:
 *               result = await conn.execute(query)
 *           ctx.result = result
 *
 *       async def cleanup(self):
 *           await self.leak_detector.stop_monitoring()
 *
 * In C the detector is given to the agent (its config's leak_detector): the
 * runtime reports what each state holds while it runs (its `resources`
 * option: by default 1 cpu unit and 100 MB) with track_allocation before
 * each attempt and track_release after, so a state that never ends shows
 * up as a leak once it has held its resources longer than leak_threshold
 * (300 s). The monitoring thread samples the process every minute.
 *
 * The task opens a data file and a "database" connection (a TCP connection
 * to a listener on 127.0.0.1) and closes both. Twenty minutes of it raise
 * no alert. Then two faults are injected: the task stops closing its data
 * file (the detector sees the open file count grow, long before the 1000
 * threshold), and then a database call hangs (the detector reports the
 * state's resources held for more than 300 s).
 *
 * Time runs on a manual clock (the detector's and the executor's), so the
 * example takes no real minutes; a real agent leaves the clocks NULL.
 * Exits 0 only if the clean work raised no alert and each injected leak was
 * reported. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "puffinflow/agent.h"

#define AGENT "LeakAwareAgent"
#define MAX_LEAKED 64

/* ---- the simulated world --------------------------------------------------
 */

typedef struct world {
    char data_path[32];
    int db_listener;
    struct sockaddr_in db_addr;
    /* Fault 1: the task forgets to close its data file. */
    bool forget_close;
    int leaked[MAX_LEAKED];
    int nleaked;
    /* Fault 2: a database call hangs until the program lets it go. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool db_hangs;
    atomic_bool hanging;
} world_t;

static atomic_int g_alerts[PF_LEAK_ALERT_KINDS];

/* `async with database.connection() as conn: await conn.execute(query)`:
 * connect to our listener, accept, (maybe hang), close both ends. */
static int
database_query(world_t *w, int64_t *result)
{
    int conn = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int peer = -1;

    if (conn >= 0 && connect(conn, (struct sockaddr *)&w->db_addr,
                             sizeof(w->db_addr)) == 0) {
        peer = accept(w->db_listener, NULL, NULL);
    }
    pthread_mutex_lock(&w->mu);
    if (w->db_hangs) {
        atomic_store(&w->hanging, true);
        while (w->db_hangs) {
            pthread_cond_wait(&w->cv, &w->mu);
        }
    }
    pthread_mutex_unlock(&w->mu);
    if (peer >= 0) {
        close(peer);
    }
    if (conn >= 0) {
        close(conn);
    }
    *result = 7; /* rows */
    return peer >= 0 ? 0 : -1;
}

/* @state resource_using_task */
static int
resource_using_task(pf_ctx_t *ctx, void *arg)
{
    world_t *w = arg;
    char data[64];
    int64_t result = 0;
    int fd = open(w->data_path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        return -1;
    }
    if (read(fd, data, sizeof(data)) < 0) {
        close(fd);
        return -1;
    }
    if (w->forget_close && w->nleaked < MAX_LEAKED) {
        w->leaked[w->nleaked++] = fd; /* the injected bug */
    } else {
        close(fd);
    }
    if (database_query(w, &result) != 0) {
        return -1;
    }
    return pf_ctx_set_int(ctx, "result", result);
}

/* The listener: print each alert and count it by kind. */
static void
on_alert(const pf_leak_alert_t *alert, void *arg)
{
    (void)arg;
    if (alert->cleared) {
        printf("   [cleared] %s\n", alert->message);
        return;
    }
    printf("   [ALERT %s] %s\n", pf_leak_alert_kind_name(alert->kind),
           alert->message);
    atomic_fetch_add(&g_alerts[alert->kind], 1);
}

static int
world_init(world_t *w)
{
    socklen_t len = sizeof(w->db_addr);
    int fd;

    memset(w, 0, sizeof(*w));
    strcpy(w->data_path, "/tmp/pf_leak_example_XXXXXX");
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    atomic_init(&w->hanging, false);
    fd = mkstemp(w->data_path);
    if (fd < 0 || write(fd, "some data\n", 10) != 10) {
        return -1;
    }
    close(fd);
    w->db_listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    w->db_addr.sin_family = AF_INET;
    w->db_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (w->db_listener < 0 ||
        bind(w->db_listener, (struct sockaddr *)&w->db_addr,
             sizeof(w->db_addr)) != 0 ||
        listen(w->db_listener, 16) != 0 ||
        getsockname(w->db_listener, (struct sockaddr *)&w->db_addr, &len) !=
            0) {
        return -1;
    }
    return 0;
}

/* ---- simulated time ---------------------------------------------------------
 */

/* Move the clock one check_interval on and wait until the monitoring
 * thread has taken that sample and waits for the next one. */
static void
next_minute(pf_clock_t *clock, pf_leak_detector_t *d)
{
    pf_leak_metrics_t m;
    uint64_t before;

    pf_leak_detector_metrics(d, &m);
    before = m.samples + m.sample_errors;
    pf_clock_manual_advance(clock, 60 * PF_NS_PER_SEC);
    do {
        sched_yield();
        pf_leak_detector_metrics(d, &m);
    } while (m.samples + m.sample_errors == before ||
             pf_clock_manual_waiters(clock) == 0);
}

static int
total_alerts(void)
{
    int n = 0;

    for (int i = 0; i < PF_LEAK_ALERT_KINDS; i++) {
        n += atomic_load(&g_alerts[i]);
    }
    return n;
}

/* One request: a run of the agent. */
static int
request(pf_agent_t *agent)
{
    pf_ctx_t *ctx;
    int64_t result = 0;
    int rc = pf_ctx_new(&ctx);

    if (rc != 0) {
        return rc;
    }
    rc = pf_agent_run(agent, ctx, NULL);
    pf_ctx_get_int(ctx, "result", &result);
    pf_ctx_free(ctx);
    return rc != 0 ? rc : result == 7 ? 0 : -1;
}

static int failures;

static void
check(int ok, const char *what)
{
    printf("%s %s\n", ok ? "ok  " : "FAIL", what);
    if (!ok) {
        failures++;
    }
}

int
main(void)
{
    world_t w;
    pf_clock_t *clock;
    pf_leak_config_t cfg;
    pf_leak_detector_t *leak_detector;
    pf_executor_config_t ecfg;
    pf_executor_t *ex = NULL;
    pf_agent_config_t acfg;
    pf_agent_t *agent = NULL;
    pf_leak_report_t rep;
    pf_leak_metrics_t m;
    pf_ctx_t *ctx;
    pf_run_t *run;
    int minute;
    int bad = 0;

    if (world_init(&w) != 0 || pf_clock_manual_new(&clock) != 0) {
        perror("setup");
        return 1;
    }
    pf_leak_config_init(&cfg);
    cfg.name = AGENT;
    cfg.check_interval = 60;          /* check every 60 seconds */
    cfg.memory_threshold = 0.8;       /* alert if memory usage > 80% */
    cfg.file_handle_threshold = 1000; /* alert if file handles > 1000 */
    cfg.connection_threshold = 100;   /* alert if connections > 100 */
    cfg.listener = on_alert;
    cfg.clock = clock;
    pf_executor_config_init(&ecfg);
    ecfg.clock = clock;
    ecfg.workers = 1;
    pf_agent_config_init(&acfg);
    acfg.name = AGENT;
    if (pf_leak_detector_new(&cfg, &leak_detector) != 0 ||
        pf_executor_new(&ecfg, &ex) != 0) {
        fprintf(stderr, "setup failed\n");
        return 1;
    }
    acfg.executor = ex;
    acfg.leak_detector = leak_detector; /* the states' resources */
    if (pf_agent_new_ex(&acfg, &agent) != 0 ||
        pf_agent_add_state(agent, "resource_using_task", resource_using_task,
                           &w, NULL) != 0) {
        fprintf(stderr, "setup failed\n");
        return 1;
    }
    check(pf_leak_detector_start_monitoring(leak_detector) == 0,
          "monitoring started");
    next_minute(clock, leak_detector);

    printf("1. 20 minutes of resource_using_task, 10 requests a minute\n");
    for (minute = 0; minute < 20; minute++) {
        for (int i = 0; i < 10; i++) {
            bad += request(agent) != 0;
        }
        next_minute(clock, leak_detector);
    }
    pf_leak_detector_metrics(leak_detector, &m);
    printf("   %llu samples, %lld open fds, %lld connections, %llu "
           "allocations tracked, %llu held now\n",
           (unsigned long long)m.samples, (long long)m.last_sample.open_fds,
           (long long)m.last_sample.connections,
           (unsigned long long)m.allocations,
           (unsigned long long)m.total_allocations);
    check(bad == 0 && m.allocations == 200 && m.total_allocations == 0,
          "every request ran and gave its resources back");
    check(total_alerts() == 0, "clean work raised no alert");

    printf("2. a bug: the task stops closing its data file (2 requests a "
           "minute, 12 minutes)\n");
    w.forget_close = true;
    for (minute = 0; minute < 12; minute++) {
        bad += request(agent) != 0;
        bad += request(agent) != 0;
        next_minute(clock, leak_detector);
    }
    w.forget_close = false;
    check(bad == 0 && atomic_load(&g_alerts[PF_LEAK_ALERT_FD_TREND]) == 1,
          "the growing file count was reported");
    check(atomic_load(&g_alerts[PF_LEAK_ALERT_FILE_HANDLES]) == 0,
          "... long before the 1000-handle threshold");

    printf("3. a database call hangs (6 minutes)\n");
    pthread_mutex_lock(&w.mu);
    w.db_hangs = true;
    pthread_mutex_unlock(&w.mu);
    if (pf_ctx_new(&ctx) != 0 || pf_agent_start(agent, ctx, NULL, &run) != 0) {
        return 1;
    }
    while (!atomic_load(&w.hanging)) {
        sched_yield();
    }
    for (minute = 0; minute < 6; minute++) {
        next_minute(clock, leak_detector);
    }
    check(atomic_load(&g_alerts[PF_LEAK_ALERT_ALLOCATION]) == 1,
          "the hung state's resources were reported after 300 s");

    /* The reference's cleanup(): stop monitoring. */
    check(pf_leak_detector_stop_monitoring(leak_detector) == 0,
          "monitoring stopped");
    check(pf_leak_detector_check(leak_detector, &rep) == 0, "a last check");
    for (size_t k = 0; k < rep.leaks_len; k++) {
        printf("   leak: %s/%s holds %.0f MB, %.1f cpu for %.0f s "
               "(threshold %.0f s)\n",
               rep.leaks[k].agent, rep.leaks[k].state,
               rep.leaks[k].resources.memory_mb,
               rep.leaks[k].resources.cpu_units, rep.leaks[k].held_seconds,
               rep.leaks[k].threshold_seconds);
    }
    check(rep.leaks_len == 1 && strcmp(rep.leaks[0].agent, AGENT) == 0 &&
              strcmp(rep.leaks[0].state, "resource_using_task") == 0,
          "it names the agent and the state");
    pf_leak_report_free(&rep);

    printf("4. the database call returns\n");
    pthread_mutex_lock(&w.mu);
    w.db_hangs = false;
    pthread_cond_broadcast(&w.cv);
    pthread_mutex_unlock(&w.mu);
    check(pf_run_wait(run, NULL, NULL) == 0, "the hung request completes");
    pf_run_free(run);
    pf_ctx_free(ctx);
    pf_leak_detector_metrics(leak_detector, &m);
    check(m.total_allocations == 0 && m.current_leaks == 0,
          "its resources are given back: nothing is held any more");

    pf_agent_free(agent);
    pf_executor_free(ex);
    pf_leak_detector_free(leak_detector);
    pf_clock_free(clock);
    for (int i = 0; i < w.nleaked; i++) {
        close(w.leaked[i]);
    }
    close(w.db_listener);
    unlink(w.data_path);
    if (failures != 0) {
        printf("%d check(s) failed\n", failures);
        return 1;
    }
    printf("all checks passed\n");
    return 0;
}
