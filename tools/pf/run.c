/* pf run [options] -- CMD [ARGS...]: run a command with retries, a
 * per-attempt timeout and an overall deadline, a circuit breaker, a
 * bulkhead and a rate limiter shared by every pf run of the host
 * (docs/pf.md).
 *
 * The command runs through pf_executor_spawn on an embedded executor that
 * this thread drives: one poll() on the executor's fd and a self-pipe the
 * signal handler writes to. TERM, INT, HUP and QUIT sent to pf go to the
 * command's process group; no attempt follows one. The command shares
 * pf's stdin, stdout and stderr; its exit status is pf's unless pf had to
 * step in (the codes in pf.h). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "puffinflow/breaker.h"
#include "puffinflow/bulkhead.h"
#include "puffinflow/clock.h"
#include "puffinflow/deadline.h"
#include "puffinflow/error.h"
#include "puffinflow/executor.h"
#include "puffinflow/ratelimit.h"
#include "puffinflow/retry.h"
#include "puffinflow/subprocess.h"

#include "pf.h"

#define CMD "run"

typedef struct run_opts {
    long retries;
    pf_backoff_t backoff;
    bool retry_on[256];   /* exit statuses retried */
    double timeout;       /* per attempt; 0 = none */
    double deadline;      /* whole run; 0 = none */
    double kill_after;
    const char *breaker;
    long failure_threshold;
    long success_threshold;
    double recovery_timeout;
    const char *fallback;
    const char *bulkhead;
    long max_concurrent;
    const char *rate;
    double per_second;
    long burst;
    double max_wait;      /* for a bulkhead slot, and for a token */
    const char *state_dir;
    bool verbose;
    char **argv;          /* the command */
} run_opts_t;

/* One run: the executor, the self-pipe, the command in flight. */
typedef struct runner {
    pf_executor_t *ex;
    int pipe_rd;
    bool done;
    pf_subprocess_result_t res;
    int pid;              /* the command's group while it runs, else 0 */
    int signal;           /* the last signal forwarded, else 0 */
} runner_t;

static int g_sig_wr = -1;

static void
on_signal(int sig)
{
    int saved = errno;
    unsigned char b = (unsigned char)sig;

    if (write(g_sig_wr, &b, 1) < 0) {
        /* the pipe is full: a signal is pending already */
    }
    errno = saved;
}

static const int forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT};

static int
run_usage(FILE *out)
{
    fprintf(out,
        "usage: pf run [options] -- CMD [ARGS...]\n"
        "  --retries N             retry a failed attempt up to N times "
        "(default 0)\n"
        "  --backoff I[:MAX[:MULT]] delay before the first retry, its cap, "
        "its growth\n"
        "                          (default 1s:60s:2)\n"
        "  --jitter KIND           none|full|equal|decorrelated "
        "(default equal)\n"
        "  --retry-on CODES        retry only these exit codes "
        "(1,3,5-9; 124 = timed out)\n"
        "  --no-retry-on CODES     never retry these exit codes\n"
        "  --timeout D             end an attempt after D (500ms, 2s, 1m)\n"
        "  --deadline D            end the whole run after D\n"
        "  --kill-after D          SIGKILL this long after SIGTERM "
        "(default 5s)\n"
        "  --breaker NAME          a circuit breaker shared by every pf run "
        "of the host\n"
        "  --failure-threshold N   consecutive failures that open it "
        "(default 5)\n"
        "  --success-threshold N   trial successes that close it "
        "(default 1)\n"
        "  --recovery-timeout D    open this long before a trial "
        "(default 60s)\n"
        "  --fallback CMD          run CMD (with /bin/sh -c) while the "
        "breaker is open\n"
        "  --bulkhead NAME         a concurrency limit shared by every pf "
        "run of the host\n"
        "  --max-concurrent N      its slots (required with --bulkhead)\n"
        "  --rate NAME             a rate limit shared by every pf run "
        "of the host:\n"
        "                          each attempt takes a token\n"
        "  --per-second R          its rate, tokens a second (required "
        "with --rate; 0.5 ok)\n"
        "  --burst B               most tokens at once (default 1)\n"
        "  --max-wait D            wait up to D for a bulkhead slot and "
        "for a token\n"
        "                          (default 0: refuse at once)\n"
        "  --state-dir DIR         where shared state lives (default "
        "$XDG_RUNTIME_DIR or /dev/shm)\n"
        "  -v, --verbose           say what pf does, on stderr\n"
        "exit: the command's status; 120 breaker open, 121 bulkhead full, "
        "122 rate limited,\n"
        "      124 timed out, 125 pf failed, 126 cannot execute, "
        "127 not found, 2 usage\n"
        "      (man pf, docs/pf.md)\n");
    return out == stdout ? 0 : PF_TOOL_EXIT_USAGE;
}

static bool
parse_backoff(const char *s, pf_backoff_t *b)
{
    char buf[256];
    char *parts[3] = {NULL, NULL, NULL};
    char *p;
    int n = 0;
    char *end;

    if (strlen(s) >= sizeof buf) {
        fprintf(stderr, "pf run: --backoff: bad value '%s' (too long)\n", s);
        return false;
    }
    strcpy(buf, s);
    parts[n++] = buf;
    for (p = buf; *p != '\0'; p++) {
        if (*p == ':') {
            *p = '\0';
            if (n == 3) {
                fprintf(stderr, "pf run: --backoff: bad value '%s' "
                                "(INITIAL[:MAX[:MULT]])\n", s);
                return false;
            }
            parts[n++] = p + 1;
        }
    }
    if (!pf_tool_parse_duration(CMD, "--backoff", parts[0],
                                &b->initial_delay)) {
        return false;
    }
    if (parts[1] != NULL &&
        !pf_tool_parse_duration(CMD, "--backoff", parts[1], &b->max_delay)) {
        return false;
    }
    if (parts[2] != NULL) {
        errno = 0;
        b->multiplier = strtod(parts[2], &end);
        if (end == parts[2] || *end != '\0' || errno != 0 ||
            !isfinite(b->multiplier) || b->multiplier < 1.0) {
            fprintf(stderr, "pf run: --backoff: bad value '%s' (the "
                            "multiplier '%s' must be a number >= 1)\n",
                    s, parts[2]);
            return false;
        }
    }
    if (parts[1] == NULL && b->max_delay < b->initial_delay) {
        b->max_delay = b->initial_delay;
    }
    if (b->max_delay < b->initial_delay) {
        fprintf(stderr, "pf run: --backoff: bad value '%s' (MAX is below "
                        "INITIAL)\n", s);
        return false;
    }
    return true;
}

/* Parse argv; returns -1 when the run may go on, else the exit status. */
static int
parse(int argc, char **argv, run_opts_t *o)
{
    bool no_retry[256];
    bool have_no_retry = false;
    int i;

    memset(o, 0, sizeof *o);
    pf_backoff_init(&o->backoff);
    o->kill_after = 5.0;
    o->failure_threshold = 5;
    o->success_threshold = 1;
    o->recovery_timeout = 60.0;
    for (i = 1; i < 256; i++) {
        o->retry_on[i] = true;
    }
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = NULL;
        char name[64];
        const char *eq;

        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            return run_usage(stdout);
        }
        if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
            o->verbose = true;
            continue;
        }
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "pf run: '%s': the command goes after '--' "
                            "(pf run [options] -- CMD [ARGS...])\n", a);
            return PF_TOOL_EXIT_USAGE;
        }
        /* --opt VALUE or --opt=VALUE */
        eq = strchr(a, '=');
        if (eq != NULL) {
            size_t n = (size_t)(eq - a);

            if (n >= sizeof name) {
                n = sizeof name - 1;
            }
            memcpy(name, a, n);
            name[n] = '\0';
            v = eq + 1;
        } else {
            snprintf(name, sizeof name, "%s", a);
            if (i + 1 < argc) {
                v = argv[i + 1];
            }
        }
#define TAKE()                                                              \
    do {                                                                    \
        if (v == NULL) {                                                    \
            fprintf(stderr, "pf run: %s: needs a value\n", name);           \
            return PF_TOOL_EXIT_USAGE;                                      \
        }                                                                   \
        if (eq == NULL) {                                                   \
            i++;                                                            \
        }                                                                   \
    } while (0)
#define BAD() return PF_TOOL_EXIT_USAGE
        if (strcmp(name, "--retries") == 0) {
            TAKE();
            if (!pf_tool_parse_count(CMD, name, v, 0, 1000000, &o->retries)) {
                BAD();
            }
        } else if (strcmp(name, "--backoff") == 0) {
            TAKE();
            if (!parse_backoff(v, &o->backoff)) {
                BAD();
            }
        } else if (strcmp(name, "--jitter") == 0) {
            TAKE();
            if (strcmp(v, "none") == 0) {
                o->backoff.jitter = PF_JITTER_NONE;
            } else if (strcmp(v, "full") == 0) {
                o->backoff.jitter = PF_JITTER_FULL;
            } else if (strcmp(v, "equal") == 0) {
                o->backoff.jitter = PF_JITTER_EQUAL;
            } else if (strcmp(v, "decorrelated") == 0) {
                o->backoff.jitter = PF_JITTER_DECORRELATED;
            } else {
                fprintf(stderr, "pf run: --jitter: bad value '%s' (none, "
                                "full, equal or decorrelated)\n", v);
                BAD();
            }
        } else if (strcmp(name, "--retry-on") == 0) {
            TAKE();
            if (!pf_tool_parse_codes(CMD, name, v, o->retry_on)) {
                BAD();
            }
        } else if (strcmp(name, "--no-retry-on") == 0) {
            TAKE();
            if (!pf_tool_parse_codes(CMD, name, v, no_retry)) {
                BAD();
            }
            have_no_retry = true;
        } else if (strcmp(name, "--timeout") == 0) {
            TAKE();
            if (!pf_tool_parse_duration(CMD, name, v, &o->timeout)) {
                BAD();
            }
        } else if (strcmp(name, "--deadline") == 0) {
            TAKE();
            if (!pf_tool_parse_duration(CMD, name, v, &o->deadline)) {
                BAD();
            }
        } else if (strcmp(name, "--kill-after") == 0) {
            TAKE();
            if (!pf_tool_parse_duration(CMD, name, v, &o->kill_after)) {
                BAD();
            }
        } else if (strcmp(name, "--breaker") == 0) {
            TAKE();
            if (!pf_tool_parse_name(CMD, name, v)) {
                BAD();
            }
            o->breaker = v;
        } else if (strcmp(name, "--failure-threshold") == 0) {
            TAKE();
            if (!pf_tool_parse_count(CMD, name, v, 1, 16777215,
                                     &o->failure_threshold)) {
                BAD();
            }
        } else if (strcmp(name, "--success-threshold") == 0) {
            TAKE();
            if (!pf_tool_parse_count(CMD, name, v, 1, 1024,
                                     &o->success_threshold)) {
                BAD();
            }
        } else if (strcmp(name, "--recovery-timeout") == 0) {
            TAKE();
            if (!pf_tool_parse_duration(CMD, name, v,
                                        &o->recovery_timeout)) {
                BAD();
            }
        } else if (strcmp(name, "--fallback") == 0) {
            TAKE();
            if (v[0] == '\0') {
                fprintf(stderr, "pf run: --fallback: bad value '' "
                                "(a shell command)\n");
                BAD();
            }
            o->fallback = v;
        } else if (strcmp(name, "--bulkhead") == 0) {
            TAKE();
            if (!pf_tool_parse_name(CMD, name, v)) {
                BAD();
            }
            o->bulkhead = v;
        } else if (strcmp(name, "--max-concurrent") == 0) {
            TAKE();
            if (!pf_tool_parse_count(CMD, name, v, 1, 4096,
                                     &o->max_concurrent)) {
                BAD();
            }
        } else if (strcmp(name, "--rate") == 0) {
            TAKE();
            if (!pf_tool_parse_name(CMD, name, v)) {
                BAD();
            }
            o->rate = v;
        } else if (strcmp(name, "--per-second") == 0) {
            TAKE();
            if (!pf_tool_parse_number(CMD, name, v, 1e-6,
                                      PF_RATELIMIT_MAX_RATE,
                                      &o->per_second)) {
                BAD();
            }
        } else if (strcmp(name, "--burst") == 0) {
            TAKE();
            if (!pf_tool_parse_count(CMD, name, v, 1, 1000000, &o->burst)) {
                BAD();
            }
        } else if (strcmp(name, "--max-wait") == 0) {
            TAKE();
            if (!pf_tool_parse_duration(CMD, name, v, &o->max_wait)) {
                BAD();
            }
        } else if (strcmp(name, "--state-dir") == 0) {
            TAKE();
            o->state_dir = v;
        } else {
            fprintf(stderr, "pf run: unknown option '%s' (pf run --help)\n",
                    a);
            BAD();
        }
#undef TAKE
#undef BAD
    }
    if (i >= argc) {
        fprintf(stderr, "pf run: no command (pf run [options] -- CMD "
                        "[ARGS...])\n");
        return PF_TOOL_EXIT_USAGE;
    }
    if (argv[i][0] == '\0') {
        fprintf(stderr, "pf run: the command is an empty string\n");
        return PF_TOOL_EXIT_USAGE;
    }
    o->argv = argv + i;
    if (have_no_retry) {
        for (i = 0; i < 256; i++) {
            if (no_retry[i]) {
                o->retry_on[i] = false;
            }
        }
    }
    if (o->bulkhead != NULL && o->max_concurrent == 0) {
        fprintf(stderr, "pf run: --bulkhead %s: needs --max-concurrent N\n",
                o->bulkhead);
        return PF_TOOL_EXIT_USAGE;
    }
    if (o->bulkhead == NULL && o->max_concurrent != 0) {
        fprintf(stderr, "pf run: --max-concurrent needs --bulkhead NAME\n");
        return PF_TOOL_EXIT_USAGE;
    }
    if (o->rate != NULL && o->per_second == 0) {
        fprintf(stderr, "pf run: --rate %s: needs --per-second R\n",
                o->rate);
        return PF_TOOL_EXIT_USAGE;
    }
    if (o->rate == NULL && (o->per_second != 0 || o->burst != 0)) {
        fprintf(stderr, "pf run: --per-second and --burst need --rate "
                        "NAME\n");
        return PF_TOOL_EXIT_USAGE;
    }
    if (o->burst == 0) {
        o->burst = 1;
    }
    if (o->bulkhead == NULL && o->rate == NULL && o->max_wait > 0) {
        fprintf(stderr, "pf run: --max-wait needs --bulkhead NAME or --rate "
                        "NAME\n");
        return PF_TOOL_EXIT_USAGE;
    }
    if (o->breaker == NULL && o->fallback != NULL) {
        fprintf(stderr, "pf run: --fallback needs --breaker NAME\n");
        return PF_TOOL_EXIT_USAGE;
    }
    return -1;
}

/* ---- the loop --------------------------------------------------------- */

static void
on_done(const pf_subprocess_result_t *r, void *arg)
{
    runner_t *run = arg;

    run->res = *r;
    run->done = true;
}

/* Times of the run (retry delays, --deadline, the breaker, the rate
 * limit) are on the tools' clock: the system clock, or the test clock
 * (tclock.c). Waits for real processes (attempts, bulkhead slots) are on
 * the system clock. */
static int64_t
now_ns(void)
{
    return pf_tool_now_ns();
}

static int64_t
sys_now_ns(void)
{
    return pf_clock_now_ns(NULL);
}

/* Seconds from now to end_ns on the tools' clock (INFINITY for none). */
static double
left_s(int64_t end_ns)
{
    int64_t left;

    if (end_ns == INT64_MAX) {
        return INFINITY;
    }
    left = end_ns - now_ns();
    return left <= 0 ? 0.0 : (double)left / 1e9;
}

/* Drive the executor and handle signals until the command in flight is
 * done (stop_at_ns ignored), or, with no command in flight, until
 * stop_at_ns (system clock) or a signal. Returns false on a signal with
 * no command. */
static bool
pump(runner_t *run, bool until_done, int64_t stop_at_ns)
{
    for (;;) {
        struct pollfd fds[2];
        int timeout = pf_executor_timeout_ms(run->ex);

        if (until_done && run->done) {
            return true;
        }
        if (!until_done) {
            int64_t left = stop_at_ns - sys_now_ns();
            int ms;

            if (left <= 0) {
                return true;
            }
            ms = left / 1000000 >= INT_MAX ? INT_MAX
                                           : (int)((left + 999999) / 1000000);
            if (timeout < 0 || ms < timeout) {
                timeout = ms;
            }
        }
        fds[0].fd = pf_executor_fd(run->ex);
        fds[0].events = POLLIN;
        fds[1].fd = run->pipe_rd;
        fds[1].events = POLLIN;
        if (poll(fds, 2, timeout) < 0 && errno != EINTR) {
            return true;
        }
        if ((fds[1].revents & POLLIN) != 0) {
            unsigned char b[16];
            ssize_t n = read(run->pipe_rd, b, sizeof b);
            ssize_t k;

            for (k = 0; k < n; k++) {
                run->signal = b[k];
                if (run->pid > 0 && !run->done) {
                    kill(-run->pid, b[k]);
                }
            }
            if (n > 0 && !until_done) {
                return false;
            }
        }
        pf_executor_drive(run->ex);
    }
}

/* Let seconds pass with no command in flight: on the system clock, a
 * wait that a signal ends; on the test clock, at once. False on a
 * signal. */
static bool
idle(runner_t *run, double seconds)
{
    if (pf_tool_clock_is_test()) {
        unsigned char b[16];
        ssize_t n;
        ssize_t k;

        pf_tool_clock_pass(seconds);
        n = read(run->pipe_rd, b, sizeof b);
        for (k = 0; k < n; k++) {
            run->signal = b[k];
        }
        return n <= 0;
    }
    if (seconds > 1e9) {
        seconds = 1e9;
    }
    return pump(run, false, sys_now_ns() + (int64_t)(seconds * 1e9));
}

/* 126 or 127 for a command pf_executor_spawn could not start, as a shell
 * tells them apart. */
static int
not_found_status(const char *cmd)
{
    struct stat st;

    if (strchr(cmd, '/') != NULL) {
        return stat(cmd, &st) == 0 ? PF_TOOL_EXIT_NOEXEC
                                   : PF_TOOL_EXIT_NOTFOUND;
    }
    {
        const char *path = getenv("PATH");
        char buf[PATH_MAX];

        if (path == NULL) {
            path = "/usr/bin:/bin";
        }
        while (*path != '\0') {
            const char *colon = strchr(path, ':');
            size_t len = colon ? (size_t)(colon - path) : strlen(path);
            int n = snprintf(buf, sizeof buf, "%.*s/%s", (int)len,
                             len ? path : ".", cmd);

            if (n > 0 && (size_t)n < sizeof buf && stat(buf, &st) == 0) {
                return PF_TOOL_EXIT_NOEXEC;
            }
            path += len;
            if (*path == ':') {
                path++;
            }
        }
    }
    return PF_TOOL_EXIT_NOTFOUND;
}

/* Run argv once, ended at end_ns (INT64_MAX = never). Returns its status:
 * the exit code, 128 + a signal, 124 when end_ns ended it, 126/127/125
 * when it could not start. */
static int
attempt(runner_t *run, const run_opts_t *o, char *const *argv,
        int64_t end_ns)
{
    pf_subprocess_opts_t so;
    pf_deadline_t d = pf_deadline_none();
    pf_subprocess_t *p = NULL;
    int rc;

    pf_subprocess_opts_init(&so);
    so.inherit_stdio = true;
    so.kill_grace = o->kill_after;
    if (end_ns != INT64_MAX) {
        d = pf_deadline_in(NULL, left_s(end_ns));
    }
    run->done = false;
    run->pid = 0;
    rc = pf_executor_spawn(run->ex, (const char *const *)argv, &so, &d,
                           on_done, run, &p);
    if (rc == PF_ENOTFOUND) {
        rc = not_found_status(argv[0]);
        fprintf(stderr, "pf run: %s: %s\n", argv[0],
                rc == PF_TOOL_EXIT_NOEXEC ? "cannot execute"
                                          : "command not found");
        return rc;
    }
    if (rc != 0) {
        fprintf(stderr, "pf run: cannot start %s: %s (%s)\n", argv[0],
                pf_strerror(rc), strerror(errno));
        return PF_TOOL_EXIT_FAILURE;
    }
    run->pid = pf_subprocess_pid(p);
    if (run->signal != 0) {
        /* a signal came between attempts: pass it on at once */
        kill(-run->pid, run->signal);
    }
    pump(run, true, 0);
    run->pid = 0;
    pf_subprocess_free(p);
    if (run->res.result == PF_ETIMEDOUT) {
        return PF_TOOL_EXIT_TIMEOUT;
    }
    if (run->res.exit_code >= 0) {
        return run->res.exit_code;
    }
    return 128 + run->res.term_signal;
}

static int
run_fallback(runner_t *run, const run_opts_t *o, int64_t end_ns)
{
    char *argv[4];

    argv[0] = (char *)"/bin/sh";
    argv[1] = (char *)"-c";
    argv[2] = (char *)o->fallback;
    argv[3] = NULL;
    if (o->verbose) {
        fprintf(stderr, "pf run: breaker %s is open: running the fallback\n",
                o->breaker);
    }
    return attempt(run, o, argv, end_ns);
}

/* Tell why the shared object of OPT NAME could not be opened in dir. */
static void
say_cannot_open(const char *opt, const char *name, const char *dir, int rc)
{
    fprintf(stderr, "pf run: %s %s: cannot open it in %s: %s%s%s\n", opt,
            name, dir, pf_strerror(rc), rc == PF_ESYSTEM ? ": " : "",
            rc == PF_ESYSTEM ? strerror(errno) : "");
}

static int
open_breaker(const run_opts_t *o, const char *dir, pf_breaker_t **out)
{
    int rc = pf_tool_open_breaker(dir, o->breaker,
                                  (unsigned)o->failure_threshold,
                                  (unsigned)o->success_threshold,
                                  o->recovery_timeout, out);

    if (rc == 0) {
        char text[160];

        snprintf(text, sizeof text,
                 "failure_threshold %ld\nsuccess_threshold %ld\n"
                 "recovery_timeout %.17g\n",
                 o->failure_threshold, o->success_threshold,
                 o->recovery_timeout);
        pf_tool_state_save(dir, "breaker", o->breaker, text);
    } else if (rc == PF_EEXIST) {
        fprintf(stderr, "pf run: --breaker %s: it exists in %s with other "
                        "settings; use the same --failure-threshold, "
                        "--success-threshold and --recovery-timeout, or "
                        "remove %s/puffinflow-breaker.%s.shm\n",
                o->breaker, dir, dir, o->breaker);
    } else {
        say_cannot_open("--breaker", o->breaker, dir, rc);
    }
    return rc;
}

static int
open_bulkhead(const run_opts_t *o, const char *dir, pf_bulkhead_t **out)
{
    int rc = pf_tool_open_bulkhead(dir, o->bulkhead,
                                   (unsigned)o->max_concurrent, out);

    if (rc == 0) {
        char text[64];

        snprintf(text, sizeof text, "max_concurrent %ld\n",
                 o->max_concurrent);
        pf_tool_state_save(dir, "bulkhead", o->bulkhead, text);
    } else if (rc == PF_EEXIST) {
        fprintf(stderr, "pf run: --bulkhead %s: it exists in %s with another "
                        "--max-concurrent; use the same, or remove "
                        "%s/puffinflow-bulkhead.%s.shm\n",
                o->bulkhead, dir, dir, o->bulkhead);
    } else {
        say_cannot_open("--bulkhead", o->bulkhead, dir, rc);
    }
    return rc;
}

static int
open_limiter(const run_opts_t *o, const char *dir, pf_ratelimit_t **out)
{
    int rc = pf_tool_open_limiter(dir, o->rate, o->per_second,
                                  (unsigned)o->burst, out);

    if (rc == 0) {
        char text[96];

        snprintf(text, sizeof text, "per_second %.17g\nburst %ld\n",
                 o->per_second, o->burst);
        pf_tool_state_save(dir, "limiter", o->rate, text);
    } else if (rc == PF_EEXIST) {
        fprintf(stderr, "pf run: --rate %s: it exists in %s with another "
                        "--per-second or --burst; use the same, or remove "
                        "it (pf limiter reset %s)\n",
                o->rate, dir, o->rate);
    } else if (rc == PF_EINVAL) {
        fprintf(stderr, "pf run: --per-second %g with --burst %ld: bad "
                        "values together (the bucket must refill within "
                        "about two years)\n",
                o->per_second, o->burst);
    } else {
        say_cannot_open("--rate", o->rate, dir, rc);
    }
    return rc;
}

/* Take a token of the rate limit for the next attempt, waiting up to
 * --max-wait (and within --deadline). Returns 0, PF_ERATELIMIT (none in
 * time: nothing taken), or PF_ECANCELED on a signal (given back). */
static int
take_token(runner_t *run, const run_opts_t *o, pf_ratelimit_t *rl,
           int64_t end_ns)
{
    double wait = o->max_wait < left_s(end_ns) ? o->max_wait
                                                : left_s(end_ns);
    int64_t wait_ns = 0;

    if (pf_ratelimit_reserve(rl, 1, wait, &wait_ns) != 0) {
        return PF_ERATELIMIT;
    }
    if (wait_ns > 0) {
        if (o->verbose) {
            fprintf(stderr, "pf run: rate %s: waiting %.3f s for a token\n",
                    o->rate, (double)wait_ns / 1e9);
        }
        if (!idle(run, (double)wait_ns / 1e9)) {
            pf_ratelimit_refund(rl, 1);
            return PF_ECANCELED;
        }
    }
    return 0;
}

static void
say_rate_limited(const run_opts_t *o, int64_t end_ns, bool retry)
{
    fprintf(stderr, "pf run: rate %s: no token within %s (%g a second, "
                    "burst %ld): %s\n",
            o->rate,
            end_ns != INT64_MAX && left_s(end_ns) < o->max_wait
                ? "--deadline" : "--max-wait",
            o->per_second, o->burst,
            retry ? "no further attempt" : "not running the command");
}

/* Take a bulkhead slot, trying again every 20..200 ms until max_wait.
 * Returns 0, PF_EFULL, or PF_ECANCELED on a signal. */
static int
enter_bulkhead(runner_t *run, const run_opts_t *o, pf_bulkhead_t *bh,
               int64_t end_ns)
{
    double wait = o->max_wait < left_s(end_ns) ? o->max_wait
                                                : left_s(end_ns);
    int64_t give_up = sys_now_ns() + (int64_t)(wait * 1e9);
    int64_t step = 20000000;

    for (;;) {
        int64_t next;

        if (pf_bulkhead_try_enter(bh) == 0) {
            return 0;
        }
        next = sys_now_ns() + step;
        if (next > give_up) {
            return PF_EFULL;
        }
        if (!pump(run, false, next)) {
            return PF_ECANCELED;
        }
        step = step * 3 / 2 > 200000000 ? 200000000 : step * 3 / 2;
    }
}

static int
run_attempts(runner_t *run, const run_opts_t *o, pf_breaker_t *br,
             pf_ratelimit_t *rl, int64_t end_ns)
{
    uint64_t rng = (uint64_t)sys_now_ns() ^ ((uint64_t)getpid() << 32);
    double prev = NAN;
    int status_prev = 0;
    long n;

    for (n = 0;; n++) {
        pf_permit_t permit = PF_PERMIT_INIT;
        int64_t attempt_end = end_ns;
        int status;
        double delay;

        if (rl != NULL) {
            int rc = take_token(run, o, rl, end_ns);

            if (rc == PF_ECANCELED) {
                return 128 + run->signal;
            }
            if (rc != 0) {
                say_rate_limited(o, end_ns, n > 0);
                return n > 0 ? status_prev : PF_TOOL_EXIT_RATE;
            }
        }
        if (br != NULL && pf_breaker_acquire(br, &permit) == PF_EOPEN) {
            if (rl != NULL) {
                pf_ratelimit_refund(rl, 1); /* not used */
            }
            if (o->fallback != NULL) {
                return run_fallback(run, o, end_ns);
            }
            fprintf(stderr, "pf run: breaker %s is open: not running %s\n",
                    o->breaker, o->argv[0]);
            return PF_TOOL_EXIT_OPEN;
        }
        if (o->timeout > 0) {
            int64_t t = now_ns() + (int64_t)(o->timeout * 1e9);

            if (t < attempt_end) {
                attempt_end = t;
            }
        }
        status = attempt(run, o, o->argv, attempt_end);
        if (br != NULL && run->signal != 0) {
            /* stopped by whoever signalled pf: says nothing of CMD */
            pf_breaker_release(br, &permit);
        } else if (br != NULL) {
            pf_breaker_record(br, &permit, status == 0 ? 0 : 1);
        }
        if (status == PF_TOOL_EXIT_TIMEOUT && run->res.result == PF_ETIMEDOUT) {
            fprintf(stderr, "pf run: %s timed out (%s)\n", o->argv[0],
                    attempt_end == end_ns ? "--deadline" : "--timeout");
            if (attempt_end == end_ns) {
                return status;
            }
        }
        if (status == 0 || run->signal != 0 || n >= o->retries ||
            !o->retry_on[status] || status == PF_TOOL_EXIT_FAILURE) {
            if (status != 0 && n < o->retries && o->verbose &&
                run->signal == 0) {
                fprintf(stderr, "pf run: exit status %d is not retried\n",
                        status);
            }
            return status;
        }
        delay = pf_backoff_next(&o->backoff, (unsigned)n, prev, &rng);
        prev = delay;
        if (end_ns != INT64_MAX &&
            now_ns() + (int64_t)(delay * 1e9) >= end_ns) {
            fprintf(stderr, "pf run: no time left for another attempt "
                            "within --deadline\n");
            return status;
        }
        if (o->verbose) {
            fprintf(stderr, "pf run: attempt %ld failed (status %d); "
                            "retrying in %.3f s\n", n + 1, status, delay);
        }
        if (!idle(run, delay)) {
            return 128 + run->signal;
        }
        status_prev = status;
    }
}

int
pf_tool_run(int argc, char **argv)
{
    run_opts_t o;
    runner_t run;
    pf_executor_config_t ec;
    pf_breaker_t *br = NULL;
    pf_bulkhead_t *bh = NULL;
    pf_ratelimit_t *rl = NULL;
    struct sigaction sa;
    struct sigaction old[sizeof forwarded / sizeof forwarded[0]];
    char dir[PATH_MAX];
    int fds[2];
    int64_t end_ns = INT64_MAX;
    int status;
    size_t k;

    status = parse(argc, argv, &o);
    if (status >= 0) {
        return status;
    }
    if ((o.breaker != NULL || o.bulkhead != NULL || o.rate != NULL) &&
        !pf_tool_state_dir(CMD, o.state_dir, dir, sizeof dir)) {
        return PF_TOOL_EXIT_USAGE;
    }
    if (o.deadline > 0) {
        end_ns = now_ns() + (int64_t)(o.deadline * 1e9);
    }
    memset(&run, 0, sizeof run);
    if (pipe(fds) != 0) {
        fprintf(stderr, "pf run: pipe: %s\n", strerror(errno));
        return PF_TOOL_EXIT_FAILURE;
    }
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    fcntl(fds[1], F_SETFL, O_NONBLOCK);
    fcntl(fds[0], F_SETFD, FD_CLOEXEC);
    fcntl(fds[1], F_SETFD, FD_CLOEXEC);
    run.pipe_rd = fds[0];
    g_sig_wr = fds[1];
    pf_executor_config_init(&ec);
    ec.name = "pf-run";
    ec.embedded = true;
    status = pf_executor_new(&ec, &run.ex);
    if (status != 0) {
        fprintf(stderr, "pf run: cannot make the executor: %s\n",
                pf_strerror(status));
        close(fds[0]);
        close(fds[1]);
        return PF_TOOL_EXIT_FAILURE;
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    for (k = 0; k < sizeof forwarded / sizeof forwarded[0]; k++) {
        sigaction(forwarded[k], &sa, &old[k]);
    }

    status = 0;
    if (o.breaker != NULL && open_breaker(&o, dir, &br) != 0) {
        status = PF_TOOL_EXIT_FAILURE;
    }
    if (status == 0 && o.bulkhead != NULL &&
        open_bulkhead(&o, dir, &bh) != 0) {
        status = PF_TOOL_EXIT_FAILURE;
    }
    if (status == 0 && o.rate != NULL) {
        int rc = open_limiter(&o, dir, &rl);

        status = rc == 0           ? 0
                 : rc == PF_EINVAL ? PF_TOOL_EXIT_USAGE
                                   : PF_TOOL_EXIT_FAILURE;
    }
    if (status == 0 && bh != NULL) {
        int rc = enter_bulkhead(&run, &o, bh, end_ns);

        if (rc == PF_EFULL) {
            fprintf(stderr, "pf run: bulkhead %s is full (%ld running): "
                            "not running %s\n",
                    o.bulkhead, o.max_concurrent, o.argv[0]);
            status = PF_TOOL_EXIT_FULL;
        } else if (rc != 0) {
            status = 128 + run.signal;
        } else {
            status = run_attempts(&run, &o, br, rl, end_ns);
            pf_bulkhead_leave(bh);
        }
    } else if (status == 0) {
        status = run_attempts(&run, &o, br, rl, end_ns);
    }

    pf_executor_free(run.ex);
    pf_bulkhead_free(bh);
    pf_breaker_free(br);
    pf_ratelimit_free(rl);
    for (k = 0; k < sizeof forwarded / sizeof forwarded[0]; k++) {
        sigaction(forwarded[k], &old[k], NULL);
    }
    g_sig_wr = -1;
    close(fds[0]);
    close(fds[1]);
    return status;
}
