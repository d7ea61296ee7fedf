/* pf watch PID|self [--interval D] [--count N] [--json]
 * pf watch [--interval D] [--count N] [--json] -- CMD [ARGS...]
 *
 * Sample a process with the leak detector and print one line per sample
 * (memory, threads, descriptors against their limit, sockets by kind, TCP
 * connections by state, growth trends once the window is full), plus any
 * alert the detector raises (thresholds, steady growth); with --json, one
 * JSON object a line instead. PID "self" watches pf itself. With -- CMD,
 * pf starts the command (same stdin, stdout, stderr) and watches it;
 * pf's status is then the command's. Stops after N samples (a command is
 * then waited for, unsampled), or when the process exits. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "puffinflow/clock.h"
#include "puffinflow/error.h"
#include "puffinflow/leak.h"

#include "pf.h"

extern char **environ;

#define CMD "watch"

static int
watch_usage(FILE *out)
{
    fprintf(out,
            "usage: pf watch PID|self [--interval D] [--count N] [--json]\n"
            "       pf watch [--interval D] [--count N] [--json] -- CMD "
            "[ARGS...]\n"
            "  PID          the process to sample; self = pf itself\n"
            "  -- CMD       start CMD and sample it; pf exits with its "
            "status\n"
            "  --interval D time between samples: 500ms, 2s, 1m (default "
            "1s, at least 1ms)\n"
            "  --count N    stop sampling after N samples (default: until "
            "the process exits)\n"
            "  --json       one JSON object a line: samples, alerts, the "
            "exit\n");
    return out == stdout ? 0 : PF_TOOL_EXIT_USAGE;
}

static bool g_json;

/* s as a JSON string, escaped. */
static void
json_str(const char *s)
{
    putchar('"');
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;

        if (c == '"' || c == '\\') {
            printf("\\%c", c);
        } else if (c < 0x20) {
            printf("\\u%04x", c);
        } else {
            putchar(c);
        }
    }
    putchar('"');
}

static void
print_alert(const pf_leak_alert_t *alert, void *arg)
{
    (void)arg;
    if (g_json) {
        printf("{\"alert\":");
        json_str(pf_leak_alert_kind_name(alert->kind));
        printf(",\"cleared\":%s,\"message\":",
               alert->cleared ? "true" : "false");
        json_str(alert->message);
        printf("}\n");
        return;
    }
    printf("  %s %s: %s\n", alert->cleared ? "cleared" : "ALERT",
           pf_leak_alert_kind_name(alert->kind), alert->message);
}

static void
print_json(const pf_leak_report_t *r, double t, const char *pid)
{
    const pf_leak_sample_t *s = &r->sample;
    bool first = true;
    int k;

    printf("{\"t\":%.3f,\"pid\":%s,\"rss_bytes\":%lld,"
           "\"memory_limit_bytes\":%lld,\"memory_fraction\":%.4f,"
           "\"threads\":%lld,\"open_fds\":%lld,\"fd_limit\":%lld,",
           t, pid, (long long)s->rss_bytes, (long long)s->memory_limit_bytes,
           s->memory_fraction, (long long)s->threads,
           (long long)s->open_fds, (long long)s->fd_limit);
    if (s->sockets < 0) {
        printf("\"sockets\":null,");
    } else {
        printf("\"sockets\":%lld,\"tcp\":%lld,\"udp\":%lld,\"unix\":%lld,"
               "\"other_sockets\":%lld,",
               (long long)s->sockets, (long long)s->tcp, (long long)s->udp,
               (long long)s->unix_sockets, (long long)s->other_sockets);
    }
    printf("\"tcp_states\":{");
    for (k = 1; k < PF_LEAK_TCP_STATES; k++) {
        if (s->tcp_by_state[k] > 0) {
            printf("%s\"%s\":%lld", first ? "" : ",",
                   pf_leak_tcp_state_name(k), (long long)s->tcp_by_state[k]);
            first = false;
        }
    }
    printf("}");
    if (isnan(r->fd_slope)) {
        printf(",\"fd_slope_per_min\":null,\"rss_slope_mb_per_min\":null}\n");
    } else {
        printf(",\"fd_slope_per_min\":%.3f,\"rss_slope_mb_per_min\":%.4f}\n",
               r->fd_slope, r->memory_slope);
    }
}

static void
print_sample(const pf_leak_report_t *r, double t, const char *pid)
{
    const pf_leak_sample_t *s = &r->sample;
    int k;

    if (g_json) {
        print_json(r, t, pid);
        fflush(stdout);
        return;
    }
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
    if (s[0] < '0' || s[0] > '9') {
        return false;
    }
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v <= 0 || v > INT_MAX) {
        return false;
    }
    *pid = (int)v;
    return true;
}

/* The status of a command child that has exited (reaped): its exit code
 * or 128 + its signal. -1 while it runs. */
static int
child_status(pid_t child, bool block)
{
    int st;
    pid_t r;

    do {
        r = waitpid(child, &st, block ? 0 : WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r != child) {
        return -1;
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Sleep up to seconds, ending early when the command child exits (its
 * status in *status). */
static void
nap(double seconds, pid_t child, int *status)
{
    int64_t end = pf_clock_now_ns(NULL) + (int64_t)(seconds * 1e9);

    for (;;) {
        int64_t left = end - pf_clock_now_ns(NULL);

        if (child > 0) {
            *status = child_status(child, false);
            if (*status >= 0) {
                return;
            }
        }
        if (left <= 0) {
            return;
        }
        pf_clock_sleep(NULL, left > 20000000 ? 0.02 : (double)left / 1e9);
    }
}

static void
say_exit(const char *pid, int status)
{
    if (g_json) {
        if (status >= 0) {
            printf("{\"exited\":%s,\"status\":%d}\n", pid, status);
        } else {
            printf("{\"exited\":%s}\n", pid);
        }
    } else {
        if (status >= 0) {
            printf("process %s exited (status %d)\n", pid, status);
        } else {
            printf("process %s exited\n", pid);
        }
    }
    fflush(stdout);
}

static int
start(char **argv, pid_t *child)
{
    int rc = posix_spawnp(child, argv[0], NULL, NULL, argv, environ);

    if (rc != 0) {
        fprintf(stderr, "pf watch: %s: %s\n", argv[0], strerror(rc));
        return rc == ENOENT ? PF_TOOL_EXIT_NOTFOUND : PF_TOOL_EXIT_NOEXEC;
    }
    return 0;
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
    char **cmd = NULL;
    char pid_buf[24];
    pid_t child = 0;
    int status = -1;
    int64_t t0;
    long n;
    int rc;
    int i;

    g_json = false;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = NULL;
        const char *eq = strchr(a, '=');
        char name[32];

        if (strcmp(a, "--") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "pf watch: no command after '--'\n");
                return PF_TOOL_EXIT_USAGE;
            }
            cmd = argv + i + 1;
            break;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            return watch_usage(stdout);
        }
        if (strcmp(a, "--json") == 0) {
            g_json = true;
            continue;
        }
        if (strncmp(a, "--", 2) == 0) {
            size_t len = eq != NULL ? (size_t)(eq - a) : strlen(a);

            snprintf(name, sizeof name, "%.*s", (int)len, a);
            if (eq != NULL) {
                v = eq + 1;
            } else if (i + 1 < argc) {
                v = argv[i + 1];
            }
            if (strcmp(name, "--interval") != 0 &&
                strcmp(name, "--count") != 0) {
                fprintf(stderr, "pf watch: unknown option '%s' (pf watch "
                                "--help)\n", a);
                return PF_TOOL_EXIT_USAGE;
            }
            if (v == NULL) {
                fprintf(stderr, "pf watch: %s: needs a value\n", name);
                return PF_TOOL_EXIT_USAGE;
            }
            if (eq == NULL) {
                i++;
            }
            if (strcmp(name, "--interval") == 0) {
                if (!pf_tool_parse_duration(CMD, name, v, &interval)) {
                    return PF_TOOL_EXIT_USAGE;
                }
                if (interval < 0.001) {
                    fprintf(stderr, "pf watch: --interval: bad value '%s' "
                                    "(at least 1ms)\n", v);
                    return PF_TOOL_EXIT_USAGE;
                }
            } else if (!pf_tool_parse_count(CMD, name, v, 1, LONG_MAX,
                                            &count)) {
                return PF_TOOL_EXIT_USAGE;
            }
            continue;
        }
        if (pid_arg != NULL) {
            fprintf(stderr, "pf watch: unexpected '%s' (one PID; a command "
                            "goes after '--')\n", a);
            return PF_TOOL_EXIT_USAGE;
        }
        if (!parse_pid(a, &pid)) {
            fprintf(stderr, "pf watch: PID: bad value '%s' (a process id "
                            "from 1 to %d, or self)\n", a, INT_MAX);
            return PF_TOOL_EXIT_USAGE;
        }
        pid_arg = a;
    }
    if (cmd != NULL && pid_arg != NULL) {
        fprintf(stderr, "pf watch: a PID (%s) or a command, not both\n",
                pid_arg);
        return PF_TOOL_EXIT_USAGE;
    }
    if (cmd == NULL && pid_arg == NULL) {
        fprintf(stderr, "pf watch: what to watch? a PID, self, or -- CMD\n");
        return watch_usage(stderr);
    }
    if (cmd != NULL) {
        rc = start(cmd, &child);
        if (rc != 0) {
            return rc;
        }
        pid = (int)child;
    }
    /* the number, for JSON and for a command's pid */
    snprintf(pid_buf, sizeof pid_buf, "%d", pid == 0 ? (int)getpid() : pid);
    if (cmd != NULL) {
        pid_arg = pid_buf;
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
        if (child > 0) {
            status = child_status(child, true);
        }
        return child > 0 ? status : 1;
    }
    if (!g_json) {
        printf("watching pid %s every %.3g s\n", pid_arg, interval);
    }
    t0 = pf_clock_now_ns(NULL);
    rc = 0;
    for (n = 0; count < 0 || n < count; n++) {
        pf_leak_report_t r;

        if (n > 0) {
            nap(interval, child, &status);
        } else if (child > 0) {
            status = child_status(child, false);
        }
        if (status >= 0) {
            say_exit(g_json ? pid_buf : pid_arg, status);
            break;
        }
        rc = pf_leak_detector_check(d, &r);
        if (rc != 0) {
            fprintf(stderr, "pf watch: %s\n", pf_strerror(rc));
            break;
        }
        if (r.sample_error == PF_ENOTFOUND) {
            pf_leak_report_free(&r);
            if (child > 0) {
                status = child_status(child, true);
            }
            say_exit(g_json ? pid_buf : pid_arg, status);
            break;
        }
        if (r.sample_error != 0) {
            fprintf(stderr, "pf watch: cannot sample %s: %s\n", pid_arg,
                    pf_strerror(r.sample_error));
            rc = r.sample_error;
            pf_leak_report_free(&r);
            break;
        }
        print_sample(&r, (double)(pf_clock_now_ns(NULL) - t0) / 1e9,
                     pid_buf);
        pf_leak_report_free(&r);
    }
    pf_leak_detector_free(d);
    if (child > 0) {
        if (status < 0) {
            status = child_status(child, true);
        }
        return status;
    }
    return rc == 0 ? 0 : 1;
}
