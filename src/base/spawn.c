/* Child processes in a process group of their own (see spawn_impl.h). The
 * blocking waits here (pf__spawn_wait, pf__spawn_end_group) are for
 * callers that own a thread anyway, such as a health check; the runtime's
 * subprocess provider uses only pf__spawn, pf__pidfd_open, kill and
 * pf__spawn_reap, and waits in its reactor. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "spawn_impl.h"
#include "timeutil.h"

extern char **environ;

static int64_t
mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
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
    left = (left + 999999) / 1000000;
    return left > 1000000000 ? 1000000000 : (int)left;
}

static int
set_stdio_null(posix_spawn_file_actions_t *fa)
{
    int rc = posix_spawn_file_actions_addopen(fa, 0, "/dev/null", O_RDONLY, 0);

    if (rc == 0) {
        rc = posix_spawn_file_actions_addopen(fa, 1, "/dev/null", O_WRONLY, 0);
    }
    if (rc == 0) {
        rc = posix_spawn_file_actions_adddup2(fa, 1, 2);
    }
    return rc;
}

int
pf__spawn(char *const argv[], bool null_stdio, pid_t *pid)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none;
    sigset_t dfl;
    int rc;

    rc = posix_spawn_file_actions_init(&fa);
    if (rc != 0) {
        return rc;
    }
    rc = posix_spawnattr_init(&attr);
    if (rc != 0) {
        posix_spawn_file_actions_destroy(&fa);
        return rc;
    }
    sigemptyset(&none);
    sigemptyset(&dfl);
    sigaddset(&dfl, SIGPIPE);
    if (null_stdio) {
        rc = set_stdio_null(&fa);
    }
    if (rc == 0) {
        rc = posix_spawnattr_setsigmask(&attr, &none);
    }
    if (rc == 0) {
        rc = posix_spawnattr_setsigdefault(&attr, &dfl);
    }
    if (rc == 0) {
        rc = posix_spawnattr_setpgroup(&attr, 0); /* a group of its own */
    }
    if (rc == 0) {
        rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK |
                                                 POSIX_SPAWN_SETSIGDEF |
                                                 POSIX_SPAWN_SETPGROUP);
    }
    if (rc == 0) {
        rc = posix_spawnp(pid, argv[0], &fa, &attr, argv, environ);
    }
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    return rc;
}

int
pf__pidfd_open(pid_t pid)
{
#ifdef SYS_pidfd_open
    /* A pidfd is close-on-exec from birth (the kernel sets O_CLOEXEC). */
    return (int)syscall(SYS_pidfd_open, pid, 0);
#else
    (void)pid;
    errno = ENOSYS;
    return -1;
#endif
}

bool
pf__spawn_group_alive(pid_t pgid)
{
    return kill(-pgid, 0) == 0 || errno == EPERM;
}

/* Whether the process /proc names `name` is in group pgid and can run.
 * False for a name that is not a pid, or a process gone meanwhile. */
static bool
proc_runs_in_group(const char *name, pid_t pgid)
{
    char path[64];
    char buf[512];
    const char *paren;
    char state;
    long pgrp;
    ssize_t n;
    int fd;

    if (name[0] < '1' || name[0] > '9') {
        return false;
    }
    snprintf(path, sizeof(path), "/proc/%s/stat", name);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return false;
    }
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) {
        return false;
    }
    buf[n] = '\0';
    /* "pid (comm) state ppid pgrp ...": comm may hold anything, ')' too. */
    paren = strrchr(buf, ')');
    if (paren == NULL ||
        sscanf(paren + 1, " %c %*d %ld", &state, &pgrp) != 2) {
        return false;
    }
    return pgrp == (long)pgid && state != 'Z' && state != 'X';
}

bool
pf__spawn_group_running(pid_t pgid)
{
    struct dirent *e;
    bool running = false;
    DIR *d;

    if (!pf__spawn_group_alive(pgid)) {
        return false;
    }
    d = opendir("/proc");
    if (d == NULL) {
        return true;
    }
    while (!running && (e = readdir(d)) != NULL) {
        running = proc_runs_in_group(e->d_name, pgid);
    }
    closedir(d);
    return running;
}

int
pf__spawn_reap(pid_t pid, int *status)
{
    pid_t w;

    do {
        w = waitpid(pid, status, WNOHANG);
    } while (w < 0 && errno == EINTR);
    if (w < 0) {
        return -errno;
    }
    return w == pid ? 1 : 0;
}

int
pf__spawn_wait(pid_t pid, int64_t deadline_ns, int *status)
{
    long nap_ns = 1000000;
    int pidfd = pf__pidfd_open(pid);

    if (pidfd >= 0) {
        struct pollfd pfd = {pidfd, POLLIN, 0};
        int n;

        do {
            n = poll(&pfd, 1, poll_ms(deadline_ns));
        } while (n < 0 && errno == EINTR);
        close(pidfd);
        if (n == 0) {
            return ETIMEDOUT;
        }
    }
    for (;;) {
        struct timespec nap;
        int r = pf__spawn_reap(pid, status);

        if (r == 1) {
            return 0;
        }
        if (r < 0) {
            return -r;
        }
        if (mono_ns() >= deadline_ns) {
            return ETIMEDOUT;
        }
        nap.tv_sec = 0;
        nap.tv_nsec = nap_ns;
        nanosleep(&nap, NULL);
        if (nap_ns < 50000000) {
            nap_ns *= 2;
        }
    }
}

/* Nap until group pgid has no member that can run, or deadline passes. */
static void
wait_group_gone(pid_t pgid, int64_t deadline)
{
    long nap_ns = 1000000;

    while (pf__spawn_group_running(pgid) && mono_ns() < deadline) {
        struct timespec nap = {0, nap_ns};

        nanosleep(&nap, NULL);
        if (nap_ns < 50000000) {
            nap_ns *= 2;
        }
    }
}

void
pf__spawn_end_group(pid_t pgid, pid_t pid, bool reaped, int64_t grace_ns,
                    int *status)
{
    if (grace_ns > 0) {
        int64_t deadline = pf__add_sat(mono_ns(), grace_ns);

        kill(-pgid, SIGTERM);
        if (!reaped) {
            reaped = pf__spawn_wait(pid, deadline, status) == 0;
        }
        if (reaped) {
            wait_group_gone(pgid, deadline);
        }
    }
    if (!reaped || pf__spawn_group_alive(pgid)) {
        kill(-pgid, SIGKILL);
    }
    if (!reaped) {
        while (waitpid(pid, status, 0) < 0 && errno == EINTR) {
        }
    }
}
