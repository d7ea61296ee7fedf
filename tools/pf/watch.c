/* pf watch PID [--interval s] [--count n]: sample a process with the leak
 * detector and print one line per sample (memory, threads, descriptors
 * against their limit, sockets by kind, TCP connections by state, growth
 * trends once the window is full), plus any alert the detector raises
 * (thresholds, steady growth). PID "self" watches pf itself. Stops after
 * n samples, or when the process exits. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "puffinflow/clock.h"
#include "puffinflow/error.h"
#include "puffinflow/leak.h"

#include "pf.h"

static int
watch_usage(void)
{
    fprintf(stderr, "usage: pf watch PID|self [--interval s] [--count n]\n"
                    "  --interval s   seconds between samples (default 1)\n"
                    "  --count n      stop after n samples (default: until "
                    "the process exits)\n");
    return 2;
}

static void
print_alert(const pf_leak_alert_t *alert, void *arg)
{
    (void)arg;
    printf("  %s %s: %s\n", alert->cleared ? "cleared" : "ALERT",
           pf_leak_alert_kind_name(alert->kind), alert->message);
}

static void
print_sample(const pf_leak_report_t *r, double t)
{
    const pf_leak_sample_t *s = &r->sample;
    int k;

    printf("[%8.3f s] rss %.1f MB", t, (double)s->rss_bytes / 1048576.0);
    if (s->memory_limit_bytes > 0) {
        printf(" (%.1f%% of %.0f MB)", s->memory_fraction * 100.0,
               (double)s->memory_limit_bytes / 1048576.0);
    }
    printf("  threads %lld  fds %lld", (long long)s->threads,
           (long long)s->open_fds);
    if (s->fd_limit >= 0) {
        printf("/%lld", (long long)s->fd_limit);
    }
    if (s->sockets < 0) {
        printf("  sockets ? (not readable)");
    } else {
        printf("  sockets %lld (tcp %lld, udp %lld, unix %lld, other %lld)",
               (long long)s->sockets, (long long)s->tcp, (long long)s->udp,
               (long long)s->unix_sockets, (long long)s->other_sockets);
    }
    for (k = 1; k < PF_LEAK_TCP_STATES; k++) {
        if (s->tcp_by_state[k] > 0) {
            printf(" %s=%lld", pf_leak_tcp_state_name(k),
                   (long long)s->tcp_by_state[k]);
        }
    }
    if (!isnan(r->fd_slope)) {
        printf("  trend fds %+.1f/min, rss %+.2f MB/min", r->fd_slope,
               r->memory_slope);
    }
    printf("\n");
    fflush(stdout);
}

/* Parse a PID argument: a positive number, or "self" (0). */
static bool
parse_pid(const char *s, int *pid)
{
    char *end;
    long v;

    if (strcmp(s, "self") == 0) {
        *pid = 0;
        return true;
    }
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v <= 0 || v > INT_MAX) {
        return false;
    }
    *pid = (int)v;
    return true;
}

int
pf_tool_watch(int argc, char **argv)
{
    pf_leak_config_t cfg;
    pf_leak_detector_t *d;
    double interval = 1.0;
    long count = -1;
    int pid = -1;
    const char *pid_arg = NULL;
    int64_t t0;
    long n;
    int rc;
    int i;

    for (i = 1; i < argc; i++) {
        char *end;

        if (strcmp(argv[i], "--interval") == 0 && i + 1 < argc) {
            interval = strtod(argv[++i], &end);
            if (*end != '\0' || !isfinite(interval) || interval <= 0.0) {
                return watch_usage();
            }
        } else if (strcmp(argv[i], "--count") == 0 && i + 1 < argc) {
            count = strtol(argv[++i], &end, 10);
            if (*end != '\0' || count < 1) {
                return watch_usage();
            }
        } else if (pid < 0 && parse_pid(argv[i], &pid)) {
            pid_arg = argv[i];
        } else {
            return watch_usage();
        }
    }
    if (pid < 0) {
        return watch_usage();
    }
    pf_leak_config_init(&cfg);
    cfg.name = "pf-watch";
    cfg.pid = pid;
    cfg.check_interval = interval;
    cfg.listener = print_alert;
    rc = pf_leak_detector_new(&cfg, &d);
    if (rc != 0) {
        fprintf(stderr, "pf watch: %s: %s\n", pid_arg,
                rc == PF_ENOTFOUND ? "no such process" : pf_strerror(rc));
        return 1;
    }
    printf("watching pid %s every %.3g s\n", pid_arg, interval);
    t0 = pf_clock_now_ns(NULL);
    rc = 0;
    for (n = 0; count < 0 || n < count; n++) {
        pf_leak_report_t r;

        if (n > 0) {
            pf_clock_sleep(NULL, interval);
        }
        rc = pf_leak_detector_check(d, &r);
        if (rc != 0) {
            fprintf(stderr, "pf watch: %s\n", pf_strerror(rc));
            break;
        }
        if (r.sample_error == PF_ENOTFOUND) {
            printf("process %s exited\n", pid_arg);
            pf_leak_report_free(&r);
            break;
        }
        if (r.sample_error != 0) {
            fprintf(stderr, "pf watch: cannot sample: %s\n",
                    pf_strerror(r.sample_error));
            rc = r.sample_error;
            pf_leak_report_free(&r);
            break;
        }
        print_sample(&r, (double)(pf_clock_now_ns(NULL) - t0) / 1e9);
        pf_leak_report_free(&r);
    }
    pf_leak_detector_free(d);
    return rc == 0 ? 0 : 1;
}
