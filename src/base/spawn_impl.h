/* Layer-0 child processes: start a command as the leader of a process
 * group of its own, and end the whole group (SIGTERM, then SIGKILL after a
 * grace period). Shared by the command health check (which waits by
 * blocking, on the system clock) and the runtime's subprocess provider
 * (which waits on a pidfd in the executor's reactor).
 *
 * A group of its own means everything the command starts can be signalled
 * together: killing the child alone would orphan its children (a shell's
 * sleep, say). The group id stays reserved while any member, the unreaped
 * leader included, exists; once the leader is reaped, callers signal the
 * group only right after pf__spawn_group_alive says it still has members,
 * so a stranger could be reached only if the id were freed and reused (pids
 * wrap around pid_max first) in between.
 *
 * (Named spawn_impl.h, not spawn.h: the layer folders are on the include
 * path, and <spawn.h> must still find the C library's.)
 *
 * Errors are errno values (0 = success), for the callers to map. All
 * functions are thread-safe (no shared state). */
#ifndef PF_SRC_SPAWN_IMPL_H
#define PF_SRC_SPAWN_IMPL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* Start argv[0] (searched in PATH when it has no '/') with argv and this
 * process's environment, as the leader of a new process group (its pgid
 * is its pid), with an empty signal mask and SIGPIPE at its default. With
 * null_stdio its stdin, stdout and stderr are /dev/null; otherwise it
 * inherits ours. Returns 0 and the pid in *pid, or an errno (ENOENT: no
 * such command; EACCES: not executable); then no process exists. */
int pf__spawn(char *const argv[], bool null_stdio, pid_t *pid);

/* A pidfd for pid (Linux 5.3+), close-on-exec: readable once pid has
 * exited. Returns it, or -1 with errno set (ENOSYS on older kernels). */
int pf__pidfd_open(pid_t pid);

/* Whether process group pgid still has a member (a zombie counts; EPERM
 * means a member we may not signal exists). */
bool pf__spawn_group_alive(pid_t pgid);

/* Whether process group pgid still has a member that can run: as
 * pf__spawn_group_alive, but a zombie does not count (an orphan that has
 * exited stays a zombie, a member, until init reaps it, which may take
 * seconds). Scans /proc when the group is not empty; without /proc, as
 * pf__spawn_group_alive. */
bool pf__spawn_group_running(pid_t pgid);

/* Reap pid without blocking: 1 and its status in *status when it had
 * exited, 0 when it still runs, or -errno. Retries EINTR. */
int pf__spawn_reap(pid_t pid, int *status);

/* Block until pid exits or deadline_ns (CLOCK_MONOTONIC; INT64_MAX =
 * never) passes: 0 with the reaped status in *status, ETIMEDOUT, or an
 * errno. Waits on a pidfd where the kernel has them, else polls waitpid
 * with growing naps. */
int pf__spawn_wait(pid_t pid, int64_t deadline_ns, int *status);

/* Blocking end of group pgid whose leader is pid: SIGTERM to the group, up
 * to grace_ns (0 = SIGKILL at once) for it to empty, then SIGKILL to
 * whatever is left, and reap the leader unless `reaped` says that was done
 * (its status goes to *status). A grandchild that ignores SIGTERM cannot
 * outlive this; once SIGKILL is sent it never runs again, though it may
 * linger as a zombie until its new parent reaps it. */
void pf__spawn_end_group(pid_t pgid, pid_t pid, bool reaped, int64_t grace_ns,
                         int *status);

#endif /* PF_SRC_SPAWN_IMPL_H */
