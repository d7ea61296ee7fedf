/* The reference's LeakAwareAgent as a plain C program.
 *
 * A detector configured as in the reference (check every 60 s, alert over
 * 80 % memory, 1000 file handles or 100 connections) monitors this
 * process while a task uses resources the right way: it opens a data file
 * and a "database" connection (a TCP connection to a listener on
 * 127.0.0.1) and closes both, with the task's resources tracked from start
 * to end. Nothing is reported. Then a leaky task, injected on purpose,
 * keeps two files open per run and never releases its allocation: the
 * detector reports the fd growth long before the 1000-handle threshold,
 * and the allocation once it has been held for more than leak_threshold
 * (300 s).
 *
 * Time runs on a manual clock so the example takes no real minutes; a real
 * agent leaves cfg.clock NULL. Exits 0 only if the good task raised no
 * alert and the injected leak raised both. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "puffinflow/clock.h"
#include "puffinflow/error.h"
#include "puffinflow/leak.h"

#define AGENT "LeakAwareAgent"

static atomic_int g_alerts[PF_LEAK_ALERT_KINDS];
static char g_data_path[] = "/tmp/pf_leak_example_XXXXXX";
static int g_db_listener = -1;
static struct sockaddr_in g_db_addr;

/* The listener: print each alert and count it by kind. */
static void
on_alert(const pf_leak_alert_t *alert, void *arg)
{
    (void)arg;
    if (alert->cleared) {
        printf("  [cleared] %s\n", alert->message);
        return;
    }
    printf("  [ALERT %s] %s\n", pf_leak_alert_kind_name(alert->kind),
           alert->message);
    fflush(stdout);
    atomic_fetch_add(&g_alerts[alert->kind], 1);
}

/* A "database connection": connect to our listener, accept, close both
 * ends (the async-with of the reference). */
static int
database_query(void)
{
    int conn = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int peer;

    if (conn < 0) {
        return -1;
    }
    if (connect(conn, (struct sockaddr *)&g_db_addr, sizeof(g_db_addr)) !=
        0) {
        close(conn);
        return -1;
    }
    peer = accept(g_db_listener, NULL, NULL);
    if (peer >= 0) {
        close(peer);
    }
    close(conn);
    return peer >= 0 ? 0 : -1;
}

/* The reference's resource_using_task: file and connection, both closed. */
static int
resource_using_task(pf_leak_detector_t *d)
{
    pf_leak_resources_t res = {1.0, 100.0, 1.0, 1.0, 0.0};
    char buf[64];
    int fd;
    int rc;

    rc = pf_leak_detector_track_allocation(d, AGENT, "resource_using_task",
                                           &res);
    if (rc != 0) {
        return rc;
    }
    fd = open(g_data_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    rc = read(fd, buf, sizeof(buf)) < 0 ? -1 : 0;
    close(fd);
    if (rc == 0) {
        rc = database_query();
    }
    pf_leak_detector_track_release(d, AGENT, "resource_using_task");
    return rc;
}

/* The injected leak: two files opened and kept, the allocation never
 * released. */
static int
leaky_task(pf_leak_detector_t *d, int *kept, int *nkept)
{
    pf_leak_resources_t res = {1.0, 256.0, 1.0, 0.0, 0.0};
    int i;

    /* Tracked once, on the first run, like a state that never ends. */
    if (*nkept == 0 &&
        pf_leak_detector_track_allocation(d, AGENT, "leaky_task", &res) !=
            0) {
        return -1;
    }
    for (i = 0; i < 2; i++) {
        kept[*nkept] = open(g_data_path, O_RDONLY | O_CLOEXEC);
        if (kept[*nkept] < 0) {
            return -1;
        }
        (*nkept)++;
    }
    return 0;
}

/* Move the clock one check_interval on and wait until the monitoring
 * thread has taken that sample and parked again. */
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
setup(void)
{
    socklen_t len = sizeof(g_db_addr);
    int fd = mkstemp(g_data_path);

    if (fd < 0 || write(fd, "some data\n", 10) != 10) {
        return -1;
    }
    close(fd);
    g_db_listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    memset(&g_db_addr, 0, sizeof(g_db_addr));
    g_db_addr.sin_family = AF_INET;
    g_db_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (g_db_listener < 0 ||
        bind(g_db_listener, (struct sockaddr *)&g_db_addr,
             sizeof(g_db_addr)) != 0 ||
        listen(g_db_listener, 16) != 0 ||
        getsockname(g_db_listener, (struct sockaddr *)&g_db_addr, &len) !=
            0) {
        return -1;
    }
    return 0;
}

int
main(void)
{
    pf_clock_t *clock;
    pf_leak_config_t cfg;
    pf_leak_detector_t *d;
    pf_leak_report_t rep;
    pf_leak_metrics_t m;
    int kept[64];
    int nkept = 0;
    int good_alerts = 0;
    int minute;
    int i;
    int rc;
    bool ok;

    if (setup() != 0 || pf_clock_manual_new(&clock) != 0) {
        perror("setup");
        return 1;
    }
    pf_leak_config_init(&cfg);
    cfg.name = AGENT;
    cfg.check_interval = 60;          /* check every 60 seconds */
    cfg.memory_threshold = 0.8;       /* alert if memory usage > 80% */
    cfg.file_handle_threshold = 1000; /* alert if file handles > 1000 */
    cfg.connection_threshold = 100;   /* alert if connections > 100 */
    cfg.on_alert = on_alert;
    cfg.clock = clock;
    rc = pf_leak_detector_new(&cfg, &d);
    if (rc != 0) {
        fprintf(stderr, "pf_leak_detector_new: %s\n", pf_strerror(rc));
        return 1;
    }
    rc = pf_leak_detector_start_monitoring(d);
    if (rc != 0) {
        fprintf(stderr, "start_monitoring: %s\n", pf_strerror(rc));
        return 1;
    }
    next_minute(clock, d);

    printf("20 minutes of resource_using_task, 10 runs a minute, "
           "everything closed:\n");
    for (minute = 0; minute < 20; minute++) {
        for (i = 0; i < 10; i++) {
            if (resource_using_task(d) != 0) {
                perror("resource_using_task");
                return 1;
            }
        }
        next_minute(clock, d);
    }
    for (i = 0; i < PF_LEAK_ALERT_KINDS; i++) {
        good_alerts += atomic_load(&g_alerts[i]);
    }
    pf_leak_detector_metrics(d, &m);
    printf("  %d alerts; %llu samples, %lld open fds, %lld connections, "
           "fd slope %+.1f/min, %llu allocations tracked, %llu held now\n",
           good_alerts, (unsigned long long)m.samples,
           (long long)m.last_sample.open_fds,
           (long long)m.last_sample.connections, m.fd_slope,
           (unsigned long long)m.allocations,
           (unsigned long long)m.total_allocations);

    printf("12 minutes of leaky_task (injected leak: 2 files a minute kept "
           "open, allocation never released):\n");
    for (minute = 0; minute < 12; minute++) {
        if (leaky_task(d, kept, &nkept) != 0) {
            perror("leaky_task");
            return 1;
        }
        next_minute(clock, d);
    }

    /* The reference's cleanup(): stop monitoring. */
    rc = pf_leak_detector_stop_monitoring(d);
    if (rc != 0) {
        fprintf(stderr, "stop_monitoring: %s\n", pf_strerror(rc));
        return 1;
    }
    rc = pf_leak_detector_check(d, &rep);
    if (rc != 0) {
        fprintf(stderr, "check: %s\n", pf_strerror(rc));
        return 1;
    }
    printf("after stop, a last check: %zu leak(s)\n", rep.leaks_len);
    for (size_t k = 0; k < rep.leaks_len; k++) {
        printf("  %s/%s holds %.0f MB, %.1f cpu for %.0f s (threshold "
               "%.0f s)\n",
               rep.leaks[k].agent, rep.leaks[k].state,
               rep.leaks[k].resources.memory_mb,
               rep.leaks[k].resources.cpu_units, rep.leaks[k].held_seconds,
               rep.leaks[k].threshold_seconds);
    }
    ok = good_alerts == 0 &&
         atomic_load(&g_alerts[PF_LEAK_ALERT_FD_TREND]) == 1 &&
         atomic_load(&g_alerts[PF_LEAK_ALERT_ALLOCATION]) == 1 &&
         atomic_load(&g_alerts[PF_LEAK_ALERT_FILE_HANDLES]) == 0 &&
         rep.leaks_len == 1 && strcmp(rep.leaks[0].state, "leaky_task") == 0;
    pf_leak_report_clear(&rep);

    for (i = 0; i < nkept; i++) {
        close(kept[i]);
    }
    pf_leak_detector_track_release(d, AGENT, "leaky_task");
    pf_leak_detector_free(d);
    pf_clock_free(clock);
    close(g_db_listener);
    unlink(g_data_path);
    printf("%s\n", ok ? "ok: clean work raised nothing, the injected leak "
                        "was reported"
                      : "FAILED: alerts were not as expected");
    return ok ? 0 : 1;
}
