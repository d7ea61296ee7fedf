/* Sampling a process for the leak detector: pf_leak_sample_process reads
 * /proc/<pid> (status, fd, limits, net tables) and the cgroup v2 memory
 * limit through the layer-0 readers of procfs.c, and turns them into the
 * public pf_leak_sample_t. */
#include <string.h>
#include <sys/resource.h>

#include "puffinflow/error.h"
#include "puffinflow/leak.h"

#include "procfs.h"
#include "timeutil.h"

/* ---- names --------------------------------------------------------------- */

const char *
pf_leak_tcp_state_name(int state)
{
    return pf__tcp_state_name(state);
}

/* RLIMIT_NOFILE's soft limit: our own from getrlimit, which is a
 * fraction of the cost of /proc/self/limits; another process's from
 * /proc/<pid>/limits. -1 for unlimited. */
static int
fd_limit(int pid, int64_t *out)
{
    struct rlimit rl;

    if (pid != 0) {
        return pf__proc_fd_limit(PF__PROC_ROOT, pid, out);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        return PF_ESYSTEM;
    }
    *out = rl.rlim_cur == RLIM_INFINITY ? -1 : (int64_t)rl.rlim_cur;
    return 0;
}

/* ---- sampling ------------------------------------------------------------ */

int
pf_leak_sample_process(int pid, pf_leak_sample_t *out)
{
    pf_leak_sample_t s;
    pf__proc_status_t st;
    pf__sock_counts_t sc;
    int64_t limit;
    int rc;
    int i;

    if (out == NULL || pid < 0) {
        return PF_EINVAL;
    }
    memset(&s, 0, sizeof(s));
    s.pid = pid;
    rc = pf__proc_read_status(PF__PROC_ROOT, pid, &st);
    if (rc == 0) {
        rc = pf__proc_count_fds_sockets(PF__PROC_ROOT, pid, &s.open_fds, &sc);
        if (rc == PF_ESYSTEM && pid != 0) {
            /* Another user's (or a more privileged) process: its fd
             * folder can be listed but its links not read. Count the
             * descriptors; what kind they are stays unknown (-1). */
            rc = pf__proc_count_fds(PF__PROC_ROOT, pid, &s.open_fds);
            memset(&sc, 0, sizeof(sc));
            sc.total = -1;
        }
    }
    if (rc == 0) {
        rc = fd_limit(pid, &s.fd_limit);
    }
    if (rc != 0) {
        return rc;
    }
    /* An unreadable cgroup only leaves the limit unknown: the memory
     * alert is then off, the rest of the sample stands. */
    if (pf__memory_limit_of(PF__PROC_ROOT, PF__CGROUP_ROOT, pid, &limit) != 0) {
        limit = 0;
    }
    s.rss_bytes = st.rss_bytes;
    s.threads = st.threads;
    s.memory_limit_bytes = limit;
    s.memory_fraction = limit > 0 ? (double)s.rss_bytes / (double)limit : 0.0;
    if (sc.total < 0) {
        s.sockets = s.tcp = s.udp = s.unix_sockets = s.other_sockets = -1;
        s.connections = -1;
        for (i = 0; i < PF_LEAK_TCP_STATES; i++) {
            s.tcp_by_state[i] = -1;
        }
        *out = s;
        return 0;
    }
    s.sockets = sc.total;
    s.tcp = sc.tcp;
    s.udp = sc.udp;
    s.unix_sockets = sc.unix_;
    s.other_sockets = sc.other;
    for (i = 0; i < PF_LEAK_TCP_STATES; i++) {
        s.tcp_by_state[i] = sc.tcp_by_state[i];
    }
    s.connections = pf__add_sat(s.tcp, s.udp); /* both >= 0 here */
    *out = s;
    return 0;
}
