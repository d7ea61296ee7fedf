/* The built-in health checks: memory use, file descriptor use, a TCP
 * connect and a command's exit status (the breaker check is in
 * health_breaker.c). Each add function validates its options, copies them
 * (strings included) into one block the checker owns, and adds a check
 * whose arg is that block. The checks run on the checker's threads like
 * any other; the TCP connect and the command are real I/O, timed by the
 * system clock.
 *
 * A command runs through base/spawn.c, the same code the runtime's
 * subprocesses use: as the leader of a process group of its own, so that
 * everything it starts can be ended together. When it times out, the
 * group gets SIGTERM, then SIGKILL after kill_grace; when it exits and
 * left something behind in the group, the rest gets the same. */
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "puffinflow/error.h"
#include "puffinflow/health.h"

#include "health_impl.h"
#include "mem.h"
#include "procfs.h"
#include "spawn_impl.h"
#include "strbuf.h"
#include "sysmon.h"
#include "timeutil.h"

/* ---- option blocks ---------------------------------------------------- */

/* Copy s into the string area at *at, advancing it; returns the copy. */
static char *
put_string(char **at, const char *s)
{
    size_t n = strlen(s) + 1;
    char *copy = *at;

    memcpy(copy, s, n);
    *at += n;
    return copy;
}

/* Add check fn with its option block a (one pf__malloc), which the
 * checker then owns and frees with the check; on error a is freed here. */
static int
add_block(pf_health_checker_t *hc, const char *name, pf_health_fn fn, void *a,
          const pf_health_check_opts_t *opts)
{
    int rc = pf__health_add_owned(hc, name, fn, a, pf__free, opts);

    if (rc != 0) {
        pf__free(a);
    }
    return rc;
}

static bool
percent_pair_ok(double degraded, double unhealthy)
{
    return !isnan(degraded) && !isnan(unhealthy) && degraded > 0.0 &&
           degraded <= 100.0 && unhealthy >= degraded && unhealthy <= 100.0;
}

/* "1.5 GiB" etc. for messages. */
static void
human_bytes(int64_t b, char *buf, size_t len)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)b;
    size_t u = 0;

    while (v >= 1024.0 && u + 1 < sizeof(units) / sizeof(units[0])) {
        v /= 1024.0;
        u++;
    }
    pf__snprintf_c(buf, len, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
}

static pf_health_status_t
judge_percent(double pct, double degraded, double unhealthy)
{
    if (pct > unhealthy) {
        return PF_UNHEALTHY;
    }
    return pct > degraded ? PF_DEGRADED : PF_HEALTHY;
}

/* ---- memory ----------------------------------------------------------- */

typedef struct memory_arg {
    double degraded;
    double unhealthy;
    bool process;
    const char *proc_root;
    const char *cgroup_root;
} memory_arg_t;

void
pf_health_memory_opts_init(pf_health_memory_opts_t *m)
{
    if (m == NULL) {
        return;
    }
    memset(m, 0, sizeof(*m));
    m->degraded_percent = 80.0;
    m->unhealthy_percent = 90.0;
}

static int
memory_check(pf_health_result_t *res, void *arg)
{
    const memory_arg_t *m = arg;
    char used_s[32];
    char limit_s[32];
    int64_t used;
    int64_t limit;
    double pct;
    int rc;

    if (m->process) {
        rc = pf__sysmon_process_memory_percent(m->proc_root, m->cgroup_root,
                                               &pct, &used, &limit);
    } else {
        rc = pf__sysmon_memory_percent(m->proc_root, m->cgroup_root, &pct,
                                       &used, &limit);
    }
    if (rc != 0) {
        pf_health_result_set(res, PF_UNHEALTHY,
                             "cannot read memory usage: %s",
                             pf_strerror(rc));
        return 0;
    }
    human_bytes(used, used_s, sizeof(used_s));
    human_bytes(limit, limit_s, sizeof(limit_s));
    pf_health_result_set(res, judge_percent(pct, m->degraded, m->unhealthy),
                         "Memory usage: %.1f%% (%s of %s%s)", pct, used_s,
                         limit_s, m->process ? ", this process" : "");
    return 0;
}

int
pf_health_add_memory_check(pf_health_checker_t *hc, const char *name,
                           const pf_health_memory_opts_t *m,
                           const pf_health_check_opts_t *opts)
{
    pf_health_memory_opts_t def;
    const char *proc;
    const char *cg;
    memory_arg_t *a;
    char *s;

    if (m == NULL) {
        pf_health_memory_opts_init(&def);
        m = &def;
    }
    if (!percent_pair_ok(m->degraded_percent, m->unhealthy_percent)) {
        return PF_EINVAL;
    }
    proc = m->proc_root != NULL ? m->proc_root : PF__PROC_ROOT;
    cg = m->cgroup_root != NULL ? m->cgroup_root : PF__CGROUP_ROOT;
    a = pf__malloc(sizeof(*a) + strlen(proc) + strlen(cg) + 2);
    if (a == NULL) {
        return PF_ENOMEM;
    }
    s = (char *)(a + 1);
    a->degraded = m->degraded_percent;
    a->unhealthy = m->unhealthy_percent;
    a->process = m->measure_process;
    a->proc_root = put_string(&s, proc);
    a->cgroup_root = put_string(&s, cg);
    return add_block(hc, name, memory_check, a, opts);
}

/* ---- file descriptors ------------------------------------------------- */

typedef struct fd_arg {
    double degraded;
    double unhealthy;
    const char *proc_root;
} fd_arg_t;

void
pf_health_fd_opts_init(pf_health_fd_opts_t *f)
{
    if (f == NULL) {
        return;
    }
    memset(f, 0, sizeof(*f));
    f->degraded_percent = 80.0;
    f->unhealthy_percent = 90.0;
}

static int
fd_check(pf_health_result_t *res, void *arg)
{
    const fd_arg_t *f = arg;
    int64_t open_fds;
    int64_t limit;
    double pct;
    int rc;

    rc = pf__proc_count_fds(f->proc_root, 0, &open_fds);
    if (rc == 0) {
        rc = pf__proc_fd_limit(f->proc_root, 0, &limit);
    }
    if (rc != 0) {
        pf_health_result_set(res, PF_UNHEALTHY,
                             "cannot read file descriptor use: %s",
                             pf_strerror(rc));
        return 0;
    }
    if (limit <= 0) {
        pf_health_result_set(res, PF_HEALTHY,
                             "%lld file descriptors open (no limit)",
                             (long long)open_fds);
        return 0;
    }
    pct = (double)open_fds * 100.0 / (double)limit;
    pf_health_result_set(res, judge_percent(pct, f->degraded, f->unhealthy),
                         "%lld of %lld file descriptors open (%.1f%%)",
                         (long long)open_fds, (long long)limit, pct);
    return 0;
}

int
pf_health_add_fd_check(pf_health_checker_t *hc, const char *name,
                       const pf_health_fd_opts_t *f,
                       const pf_health_check_opts_t *opts)
{
    pf_health_fd_opts_t def;
    const char *proc;
    fd_arg_t *a;
    char *s;

    if (f == NULL) {
        pf_health_fd_opts_init(&def);
        f = &def;
    }
    if (!percent_pair_ok(f->degraded_percent, f->unhealthy_percent)) {
        return PF_EINVAL;
    }
    proc = f->proc_root != NULL ? f->proc_root : PF__PROC_ROOT;
    a = pf__malloc(sizeof(*a) + strlen(proc) + 1);
    if (a == NULL) {
        return PF_ENOMEM;
    }
    s = (char *)(a + 1);
    a->degraded = f->degraded_percent;
    a->unhealthy = f->unhealthy_percent;
    a->proc_root = put_string(&s, proc);
    return add_block(hc, name, fd_check, a, opts);
}

/* ---- TCP connect ------------------------------------------------------ */

typedef struct tcp_arg {
    const char *host;
    char port[8];
    int64_t timeout_ns; /* 0 = the check's own */
} tcp_arg_t;

void
pf_health_tcp_opts_init(pf_health_tcp_opts_t *t)
{
    if (t == NULL) {
        return;
    }
    memset(t, 0, sizeof(*t));
}

static int64_t
mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * PF_NS_PER_SEC + ts.tv_nsec;
}

/* Milliseconds left before deadline for poll, rounded up; -1 = none. */
static int
poll_ms(int64_t deadline)
{
    int64_t left;

    if (deadline == INT64_MAX) {
        return -1;
    }
    left = deadline - mono_ns();
    if (left <= 0) {
        return 0;
    }
    left = (left + PF_NS_PER_MS - 1) / PF_NS_PER_MS;
    return left > 1000000000 ? 1000000000 : (int)left;
}

/* Try one address. 0 when connected; else an errno (ETIMEDOUT when the
 * deadline passed). */
static int
try_connect(const struct addrinfo *ai, int64_t deadline)
{
    struct pollfd pfd;
    socklen_t len = sizeof(int);
    int err = 0;
    int fd;
    int n;

    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                ai->ai_protocol);
    if (fd < 0) {
        return errno;
    }
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
        close(fd);
        return 0;
    }
    if (errno != EINPROGRESS) {
        err = errno;
        close(fd);
        return err;
    }
    pfd.fd = fd;
    pfd.events = POLLOUT;
    do {
        n = poll(&pfd, 1, poll_ms(deadline));
    } while (n < 0 && errno == EINTR);
    if (n == 0) {
        err = ETIMEDOUT;
    } else if (n < 0) {
        err = errno;
    } else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
        err = errno;
    }
    close(fd);
    return err;
}

static int
tcp_check(pf_health_result_t *res, void *arg)
{
    const tcp_arg_t *t = arg;
    struct addrinfo hints;
    struct addrinfo *list = NULL;
    const struct addrinfo *ai;
    int64_t start = mono_ns();
    int64_t timeout = t->timeout_ns;
    int64_t deadline;
    int err = 0;
    int rc;

    if (timeout == 0 && pf__secs_to_ns(res->timeout, &timeout) != 0) {
        timeout = INT64_MAX;
    }
    deadline = pf__add_sat(start, timeout);
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    rc = getaddrinfo(t->host, t->port, &hints, &list);
    if (rc != 0) {
        pf_health_result_set(res, PF_UNHEALTHY, "cannot resolve %s: %s",
                             t->host, gai_strerror(rc));
        return 0;
    }
    for (ai = list; ai != NULL; ai = ai->ai_next) {
        err = try_connect(ai, deadline);
        if (err == 0 || err == ETIMEDOUT) {
            break;
        }
    }
    freeaddrinfo(list);
    if (err == 0) {
        pf_health_result_set(res, PF_HEALTHY, "connected to %s:%s in %.1f ms",
                             t->host, t->port,
                             (double)(mono_ns() - start) / 1e6);
    } else if (err == ETIMEDOUT) {
        pf_health_result_set(res, PF_UNHEALTHY,
                             "connect to %s:%s timed out after %g s", t->host,
                             t->port, pf__ns_to_secs(timeout));
    } else {
        pf_health_result_set(res, PF_UNHEALTHY, "connect to %s:%s: %s",
                             t->host, t->port, strerror(err));
    }
    return 0;
}

int
pf_health_add_tcp_check(pf_health_checker_t *hc, const char *name,
                        const pf_health_tcp_opts_t *t,
                        const pf_health_check_opts_t *opts)
{
    tcp_arg_t *a;
    int64_t timeout;
    char *s;
    int rc;

    if (t == NULL || t->host == NULL || t->host[0] == '\0' || t->port < 1 ||
        t->port > 65535) {
        return PF_EINVAL;
    }
    rc = pf__secs_to_ns(t->connect_timeout, &timeout);
    if (rc != 0) {
        return rc;
    }
    a = pf__malloc(sizeof(*a) + strlen(t->host) + 1);
    if (a == NULL) {
        return PF_ENOMEM;
    }
    s = (char *)(a + 1);
    a->host = put_string(&s, t->host);
    snprintf(a->port, sizeof(a->port), "%u", t->port);
    a->timeout_ns = timeout;
    return add_block(hc, name, tcp_check, a, opts);
}

/* ---- command ---------------------------------------------------------- */

typedef struct command_arg {
    char **argv;
    int64_t timeout_ns; /* 0 = the check's own */
    int64_t grace_ns;   /* SIGTERM to SIGKILL; 0 = SIGKILL at once */
    int degraded_exit;
} command_arg_t;

void
pf_health_command_opts_init(pf_health_command_opts_t *c)
{
    if (c == NULL) {
        return;
    }
    memset(c, 0, sizeof(*c));
    c->degraded_exit = -1;
    c->kill_grace = 0.5;
}

static int
command_check(pf_health_result_t *res, void *arg)
{
    const command_arg_t *c = arg;
    int64_t timeout = c->timeout_ns;
    int status = 0;
    pid_t pid;
    int rc;

    if (timeout == 0 && pf__secs_to_ns(res->timeout, &timeout) != 0) {
        timeout = INT64_MAX;
    }
    rc = pf__spawn(c->argv, true, &pid);
    if (rc != 0) {
        pf_health_result_set(res, PF_UNHEALTHY, "could not run %s: %s",
                             c->argv[0], strerror(rc));
        return 0;
    }
    rc = pf__spawn_wait(pid, pf__add_sat(mono_ns(), timeout), &status);
    if (rc == ETIMEDOUT) {
        pf__spawn_end_group(pid, pid, false, c->grace_ns, &status);
    } else if (rc == 0 && pf__spawn_group_alive(pid)) {
        /* It exited but left processes behind in its group. */
        pf__spawn_end_group(pid, pid, true, c->grace_ns, &status);
    }
    if (rc == ETIMEDOUT) {
        pf_health_result_set(res, PF_UNHEALTHY,
                             "%s timed out after %g s (killed)", c->argv[0],
                             pf__ns_to_secs(timeout));
    } else if (rc != 0) {
        pf_health_result_set(res, PF_UNHEALTHY, "could not wait for %s: %s",
                             c->argv[0], strerror(rc));
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        pf_health_result_set(res, PF_HEALTHY, "%s: exit status 0",
                             c->argv[0]);
    } else if (WIFEXITED(status)) {
        pf_health_result_set(res,
                             WEXITSTATUS(status) == c->degraded_exit
                                 ? PF_DEGRADED
                                 : PF_UNHEALTHY,
                             "%s: exit status %d", c->argv[0],
                             WEXITSTATUS(status));
    } else {
        pf_health_result_set(res, PF_UNHEALTHY, "%s: killed by signal %d",
                             c->argv[0],
                             WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    }
    return 0;
}

int
pf_health_add_command_check(pf_health_checker_t *hc, const char *name,
                            const pf_health_command_opts_t *c,
                            const pf_health_check_opts_t *opts)
{
    command_arg_t *a;
    size_t n = 0;
    size_t size;
    size_t i;
    int64_t timeout;
    int64_t grace;
    char *s;
    int rc;

    if (c == NULL || c->argv == NULL || c->argv[0] == NULL ||
        c->argv[0][0] == '\0' ||
        (c->degraded_exit != -1 &&
         (c->degraded_exit < 1 || c->degraded_exit > 255))) {
        return PF_EINVAL;
    }
    rc = pf__secs_to_ns(c->timeout, &timeout);
    if (rc == 0 && isinf(c->kill_grace)) {
        rc = PF_EINVAL; /* a group that ignores SIGTERM would never end */
    }
    if (rc == 0) {
        rc = pf__secs_to_ns(c->kill_grace, &grace);
    }
    if (rc != 0) {
        return rc;
    }
    size = sizeof(*a);
    while (c->argv[n] != NULL) {
        size += strlen(c->argv[n]) + 1;
        n++;
    }
    size = (size + sizeof(char *) - 1) / sizeof(char *) * sizeof(char *);
    a = pf__malloc(size + (n + 1) * sizeof(char *));
    if (a == NULL) {
        return PF_ENOMEM;
    }
    a->argv = (char **)((char *)a + size);
    s = (char *)(a + 1);
    for (i = 0; i < n; i++) {
        a->argv[i] = put_string(&s, c->argv[i]);
    }
    a->argv[n] = NULL;
    a->timeout_ns = timeout;
    a->grace_ns = grace;
    a->degraded_exit = c->degraded_exit;
    return add_block(hc, name, command_check, a, opts);
}
