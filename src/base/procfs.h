/* Layer-0 readers of /proc and cgroup v2 files, shared by the leak detector,
 * the health checks and the degradation sampler.
 *
 * Every reader takes the root it reads under ("/proc", "/sys/fs/cgroup"),
 * so tests run them on fixture files under tests/fixtures/. A missing file
 * is PF_ENOTFOUND, an unreadable one PF_ESYSTEM, malformed or truncated
 * content PF_EFORMAT; on error *out is untouched. pid 0 means this process
 * ("self"). None allocates unless it says so. Thread-safe (no shared
 * state). */
#ifndef PF_SRC_PROCFS_H
#define PF_SRC_PROCFS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PF__PROC_ROOT "/proc"
#define PF__CGROUP_ROOT "/sys/fs/cgroup"

/* From /proc/<pid>/status. */
typedef struct pf__proc_status {
    int64_t rss_bytes;     /* VmRSS */
    int64_t vm_bytes;      /* VmSize */
    int64_t threads;       /* Threads */
} pf__proc_status_t;

int pf__proc_read_status(const char *proc_root, int pid,
                         pf__proc_status_t *out);

/* Entries of /proc/<pid>/fd (open file descriptors). For this process on
 * a real procfs, the descriptor the listing itself holds is not counted. A
 * name that is not a number is PF_EFORMAT. */
int pf__proc_count_fds(const char *proc_root, int pid, int64_t *out);

/* The soft "Max open files" of /proc/<pid>/limits; -1 for unlimited. */
int pf__proc_fd_limit(const char *proc_root, int pid, int64_t *out);

/* TCP connection states as the kernel numbers them in /proc/net/tcp
 * (index 1 = ESTABLISHED ... 11 = CLOSING; 12 = NEW_SYN_RECV). */
#define PF__TCP_STATES 13

/* Sockets open in a process, by kind: the socket:[inode] links of
 * /proc/<pid>/fd matched against /proc/<pid>/net/{tcp,tcp6,udp,udp6,unix}.
 * Sockets of other kinds (netlink, raw, ...) count in other. */
typedef struct pf__sock_counts {
    int64_t total;
    int64_t tcp;
    int64_t udp;
    int64_t unix_;
    int64_t other;
    int64_t tcp_by_state[PF__TCP_STATES];
} pf__sock_counts_t;

/* May allocate (a table of the process's socket inodes); PF_ENOMEM. */
int pf__proc_count_sockets(const char *proc_root, int pid,
                           pf__sock_counts_t *out);

/* Both of the above from one listing of /proc/<pid>/fd, which costs about
 * half of the two calls (either pointer may be NULL, not both). For another
 * process a socket the kernel lists in no table (an unbound UDP or TCP
 * socket, netlink, raw, packet) counts in other. This process's own
 * sockets (pid 0 or getpid() on a real procfs) are asked directly
 * (SO_DOMAIN, SO_PROTOCOL, TCP_INFO) instead: no /proc/net table is read,
 * and unbound sockets count by their kind (an unbound TCP socket is
 * CLOSE). */
int pf__proc_count_fds_sockets(const char *proc_root, int pid, int64_t *fds,
                               pf__sock_counts_t *out);

/* The name of a TCP state index ("ESTABLISHED", ...), "UNKNOWN" otherwise. */
const char *pf__tcp_state_name(int state);

/* MemTotal and MemAvailable of /proc/meminfo, in bytes (either pointer
 * may be NULL, not both). Kernels older than 3.14 have no MemAvailable: it
 * is then MemFree + Buffers + Cached. */
int pf__proc_meminfo(const char *proc_root, int64_t *total_bytes,
                     int64_t *available_bytes);

/* The aggregate "cpu" line of /proc/stat, in clock ticks. */
typedef struct pf__cpu_times {
    uint64_t user, nice, system, idle, iowait, irq, softirq, steal;
} pf__cpu_times_t;

int pf__proc_read_cpu(const char *proc_root, pf__cpu_times_t *out);

/* Busy fraction (0..1) between two /proc/stat readings; 0 when no time
 * passed. */
double pf__cpu_busy_fraction(const pf__cpu_times_t *before,
                             const pf__cpu_times_t *after);

/* The cgroup v2 path of a process: the "0::/path" line of
 * /proc/<pid>/cgroup, copied into buf ("/" for the root). PF_ERANGE when
 * it does not fit; PF_ENOTFOUND when there is no v2 entry. */
int pf__cgroup_path(const char *proc_root, int pid, char *buf, size_t len);

/* The cgroup v2 hierarchy under cgroup_root, written into buf: the root
 * itself when it holds cgroup.controllers, else (a "hybrid" system that
 * mounts v1 controllers there) its unified/ folder. PF_ERANGE when a path
 * does not fit. */
int pf__cgroup_unified_root(const char *cgroup_root, char *buf, size_t len);

/* Cut a cgroup path to its parent in place ("/a/b" -> "/a", "/a" -> "/").
 * False, and path unchanged, at "/". */
bool pf__cgroup_parent(char *path);

/* memory.max (-1 for "max") and memory.current of a cgroup, in bytes
 * (either pointer may be NULL, not both). path starts with '/'. */
int pf__cgroup_memory(const char *cgroup_root, const char *path,
                      int64_t *max_bytes, int64_t *current_bytes);

/* cpu.max of a cgroup: quota (-1 for "max") and period, in microseconds. */
int pf__cgroup_cpu_max(const char *cgroup_root, const char *path,
                       int64_t *quota_us, int64_t *period_us);

/* usage_usec of a cgroup's cpu.stat. */
int pf__cgroup_cpu_usage(const char *cgroup_root, const char *path,
                         uint64_t *usage_us);

/* The memory this process may use, in bytes: its cgroup's memory.max when
 * one is set, else MemTotal. Reads under the given roots. Precisely: the
 * smallest of MemTotal and every memory.max set on the cgroup or one of its
 * ancestors (a parent's limit binds its children). On a "hybrid" host that
 * mounts v1 controllers at cgroup_root, the v2 tree is cgroup_root/unified;
 * with no v2 entry in /proc/self/cgroup it is MemTotal. */
int pf__memory_limit(const char *proc_root, const char *cgroup_root,
                     int64_t *limit_bytes);

/* The same for process pid (0 = this one): its own cgroup's limits. */
int pf__memory_limit_of(const char *proc_root, const char *cgroup_root,
                        int pid, int64_t *limit_bytes);

#endif /* PF_SRC_PROCFS_H */
