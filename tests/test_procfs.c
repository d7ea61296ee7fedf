/* The /proc and cgroup v2 readers: exact values from fixture files under
 * tests/fixtures/ (found through PF_FIXTURES), a PF_E* error and untouched
 * outputs for malformed, truncated, missing and unreadable files, and sane
 * values from this process's real /proc, checked against what the test
 * itself opens. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "procfs.h"
#include "test.h"

#define KB INT64_C(1024)
#define MB (KB * 1024)
#define SENTINEL INT64_C(-777)

/* "<PF_FIXTURES>/<rel>", written into buf. */
static char *
fx(char *buf, size_t len, const char *rel)
{
    const char *root = getenv("PF_FIXTURES");

    if (root == NULL) {
        fail_msg("PF_FIXTURES is not set (CTest sets it)");
    }
    snprintf(buf, len, "%s/%s", root, rel);
    return buf;
}

#define FX(rel) fx((char[4096]){0}, 4096, (rel))

/* ---- /proc/<pid>/status -------------------------------------------------- */

static void
test_procfs_status_reads_rss_size_and_threads(void **state)
{
    pf__proc_status_t st;

    (void)state;
    assert_pf_ok(pf__proc_read_status(FX("proc/basic"), 0, &st));
    assert_int_equal(st.rss_bytes, 51200 * KB);
    assert_int_equal(st.vm_bytes, 204800 * KB);
    assert_int_equal(st.threads, 7);
    assert_pf_ok(pf__proc_read_status(FX("proc/basic"), 4242, &st));
    assert_int_equal(st.rss_bytes, 2048 * KB);
    assert_int_equal(st.threads, 2);
}

static void
test_procfs_status_of_kernel_thread_has_no_memory(void **state)
{
    pf__proc_status_t st;

    (void)state;
    assert_pf_ok(pf__proc_read_status(FX("proc/old"), 0, &st));
    assert_int_equal(st.rss_bytes, 0);
    assert_int_equal(st.vm_bytes, 0);
    assert_int_equal(st.threads, 1);
}

static void
test_procfs_status_skips_line_longer_than_buffer(void **state)
{
    pf__proc_status_t st;

    (void)state;
    assert_pf_ok(pf__proc_read_status(FX("proc/longline"), 0, &st));
    assert_int_equal(st.rss_bytes, 51200 * KB);
    assert_int_equal(st.threads, 7);
}

static void
test_procfs_status_malformed_is_eformat_and_leaves_out(void **state)
{
    static const int pids[] = {101, 102, 103, 104, 105, 106, 107};
    pf__proc_status_t st = {SENTINEL, SENTINEL, SENTINEL};
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(pids) / sizeof(pids[0]); i++) {
        int rc = pf__proc_read_status(FX("proc/bad"), pids[i], &st);

        if (rc != PF_EFORMAT) {
            fail_msg("pid %d: got %d (%s)", pids[i], rc, pf_strerror(rc));
        }
    }
    assert_int_equal(st.rss_bytes, SENTINEL);
    assert_int_equal(st.vm_bytes, SENTINEL);
    assert_int_equal(st.threads, SENTINEL);
}

static void
test_procfs_missing_file_is_enotfound_unreadable_is_esystem(void **state)
{
    pf__proc_status_t st;
    int64_t n;

    (void)state;
    assert_pf_err(pf__proc_read_status(FX("proc/basic"), 999, &st),
                  PF_ENOTFOUND);
    assert_pf_err(pf__proc_read_status(FX("proc/nowhere"), 0, &st),
                  PF_ENOTFOUND);
    assert_pf_err(pf__proc_count_fds(FX("proc/basic"), 999, &n), PF_ENOTFOUND);
    assert_pf_err(pf__proc_read_status(FX("proc/bad"), 150, &st), PF_ESYSTEM);
}

static void
test_procfs_bad_arguments_are_einval(void **state)
{
    pf__proc_status_t st;
    pf__sock_counts_t sc;
    pf__cpu_times_t ct;
    int64_t n;
    int64_t m;
    uint64_t u;
    char buf[16];
    char longroot[5000];

    (void)state;
    assert_pf_err(pf__proc_read_status(FX("proc/basic"), 0, NULL), PF_EINVAL);
    assert_pf_err(pf__proc_read_status(NULL, 0, &st), PF_EINVAL);
    assert_pf_err(pf__proc_read_status(FX("proc/basic"), -1, &st), PF_EINVAL);
    assert_pf_err(pf__proc_count_fds(FX("proc/basic"), 0, NULL), PF_EINVAL);
    assert_pf_err(pf__proc_count_fds(NULL, 0, &n), PF_EINVAL);
    assert_pf_err(pf__proc_fd_limit(FX("proc/basic"), 0, NULL), PF_EINVAL);
    assert_pf_err(pf__proc_count_sockets(FX("proc/basic"), 0, NULL), PF_EINVAL);
    assert_pf_err(pf__proc_count_sockets(FX("proc/basic"), -5, &sc), PF_EINVAL);
    assert_pf_err(pf__proc_meminfo(NULL, &n, &m), PF_EINVAL);
    assert_pf_err(pf__proc_meminfo(FX("proc/basic"), NULL, NULL), PF_EINVAL);
    assert_pf_err(pf__proc_read_cpu(NULL, &ct), PF_EINVAL);
    assert_pf_err(pf__proc_read_cpu(FX("proc/basic"), NULL), PF_EINVAL);
    assert_pf_err(pf__cgroup_path(FX("proc/basic"), 0, NULL, 8), PF_EINVAL);
    assert_pf_err(pf__cgroup_path(FX("proc/basic"), 0, buf, 0), PF_EINVAL);
    assert_pf_err(pf__cgroup_memory(FX("cgroup/v2"), "/a", NULL, NULL),
                  PF_EINVAL);
    assert_pf_err(pf__cgroup_memory(FX("cgroup/v2"), "a", &n, NULL), PF_EINVAL);
    assert_pf_err(pf__cgroup_memory(NULL, "/a", &n, NULL), PF_EINVAL);
    assert_pf_err(pf__cgroup_cpu_max(FX("cgroup/v2"), "/a", &n, NULL),
                  PF_EINVAL);
    assert_pf_err(pf__cgroup_cpu_usage(FX("cgroup/v2"), "/a/b", NULL),
                  PF_EINVAL);
    assert_pf_err(pf__cgroup_cpu_usage(FX("cgroup/v2"), NULL, &u), PF_EINVAL);
    assert_pf_err(pf__memory_limit(FX("proc/basic"), NULL, &n), PF_EINVAL);
    assert_pf_err(pf__memory_limit(FX("proc/basic"), FX("cgroup/v2"), NULL),
                  PF_EINVAL);
    memset(longroot, 'x', sizeof(longroot) - 1);
    longroot[0] = '/';
    longroot[sizeof(longroot) - 1] = '\0';
    assert_pf_err(pf__proc_read_status(longroot, 0, &st), PF_ERANGE);
    assert_pf_err(pf__proc_meminfo(longroot, &n, NULL), PF_ERANGE);
}

/* ---- descriptors and limits ---------------------------------------------- */

static void
test_procfs_count_fds_counts_every_entry(void **state)
{
    int64_t n = SENTINEL;

    (void)state;
    assert_pf_ok(pf__proc_count_fds(FX("proc/basic"), 0, &n));
    assert_int_equal(n, 12);
    assert_pf_ok(pf__proc_count_fds(FX("proc/basic"), 4242, &n));
    assert_int_equal(n, 2);
    n = SENTINEL;
    assert_pf_err(pf__proc_count_fds(FX("proc/bad"), 121, &n), PF_EFORMAT);
    assert_int_equal(n, SENTINEL);
}

static void
test_procfs_fd_limit_reads_soft_limit_or_unlimited(void **state)
{
    static const int pids[] = {111, 112, 113};
    int64_t n = SENTINEL;
    size_t i;

    (void)state;
    assert_pf_ok(pf__proc_fd_limit(FX("proc/basic"), 0, &n));
    assert_int_equal(n, 1024);
    assert_pf_ok(pf__proc_fd_limit(FX("proc/old"), 0, &n));
    assert_int_equal(n, -1);
    n = SENTINEL;
    for (i = 0; i < sizeof(pids) / sizeof(pids[0]); i++) {
        assert_pf_err(pf__proc_fd_limit(FX("proc/bad"), pids[i], &n),
                      PF_EFORMAT);
    }
    assert_int_equal(n, SENTINEL);
}

/* ---- sockets ------------------------------------------------------------- */

static void
test_procfs_sockets_counted_by_kind_and_tcp_state(void **state)
{
    pf__sock_counts_t c;

    (void)state;
    assert_pf_ok(pf__proc_count_sockets(FX("proc/basic"), 0, &c));
    assert_int_equal(c.total, 8);
    assert_int_equal(c.tcp, 3);   /* 1001, 1002 in tcp, 1003 in tcp6 */
    assert_int_equal(c.udp, 2);   /* 1004 in udp, 1007 in udp6 */
    assert_int_equal(c.unix_, 2); /* 1005, open twice */
    assert_int_equal(c.other, 1); /* 1006, in no table */
    assert_int_equal(c.tcp_by_state[1], 2);  /* ESTABLISHED */
    assert_int_equal(c.tcp_by_state[10], 1); /* LISTEN */
    assert_int_equal(c.tcp_by_state[6], 0);  /* not ours */
}

static void
test_procfs_fds_and_sockets_in_one_listing(void **state)
{
    pf__sock_counts_t c;
    int64_t fds = SENTINEL;
    int64_t alone;

    (void)state;
    assert_pf_ok(pf__proc_count_fds_sockets(FX("proc/basic"), 0, &fds, &c));
    assert_int_equal(fds, 12);
    assert_int_equal(c.total, 8);
    assert_int_equal(c.tcp_by_state[1], 2);
    assert_pf_ok(pf__proc_count_fds_sockets(FX("proc/basic"), 0, &fds, NULL));
    assert_int_equal(fds, 12);
    assert_pf_err(pf__proc_count_fds_sockets(FX("proc/basic"), 0, NULL, NULL),
                  PF_EINVAL);
    /* Our own table (descriptors examined with fstat) agrees with the
     * plain count. */
    assert_pf_ok(pf__proc_count_fds(PF__PROC_ROOT, 0, &alone));
    assert_pf_ok(pf__proc_count_fds_sockets(PF__PROC_ROOT, 0, &fds, &c));
    assert_int_equal(fds, alone);
}

static void
test_procfs_sockets_without_tables_count_as_other(void **state)
{
    pf__sock_counts_t c;

    (void)state;
    assert_pf_ok(pf__proc_count_sockets(FX("proc/old"), 0, &c));
    assert_int_equal(c.total, 1);
    assert_int_equal(c.other, 1);
    assert_int_equal(c.tcp + c.udp + c.unix_, 0);
    /* No socket at all: the tables are not even read. */
    assert_pf_ok(pf__proc_count_sockets(FX("proc/basic"), 4242, &c));
    assert_int_equal(c.total, 0);
}

static void
test_procfs_sockets_malformed_tables_are_eformat(void **state)
{
    static const int pids[] = {122, 131, 132, 133, 134, 135};
    pf__sock_counts_t c;
    size_t i;

    (void)state;
    memset(&c, 0x5a, sizeof(c));
    for (i = 0; i < sizeof(pids) / sizeof(pids[0]); i++) {
        int rc = pf__proc_count_sockets(FX("proc/bad"), pids[i], &c);

        if (rc != PF_EFORMAT) {
            fail_msg("pid %d: got %d (%s)", pids[i], rc, pf_strerror(rc));
        }
    }
    assert_int_equal(c.total, INT64_C(0x5a5a5a5a5a5a5a5a));
}

static void
test_procfs_tcp_state_names(void **state)
{
    (void)state;
    assert_string_equal(pf__tcp_state_name(1), "ESTABLISHED");
    assert_string_equal(pf__tcp_state_name(6), "TIME_WAIT");
    assert_string_equal(pf__tcp_state_name(10), "LISTEN");
    assert_string_equal(pf__tcp_state_name(12), "NEW_SYN_RECV");
    assert_string_equal(pf__tcp_state_name(0), "UNKNOWN");
    assert_string_equal(pf__tcp_state_name(13), "UNKNOWN");
    assert_string_equal(pf__tcp_state_name(-1), "UNKNOWN");
}

static void
sockets_scenario(void *arg)
{
    pf__sock_counts_t c;
    int rc = pf__proc_count_sockets(arg, 0, &c);

    if (rc == 0) {
        assert_int_equal(c.total, 8);
    } else {
        assert_int_equal(rc, PF_ENOMEM);
    }
}

static void
test_procfs_sockets_allocation_failures_leak_nothing(void **state)
{
    (void)state;
    assert_true(pf_test_alloc_sweep(sockets_scenario, FX("proc/basic")) > 1);
}

/* ---- meminfo and stat ---------------------------------------------------- */

static void
test_procfs_meminfo_reads_total_and_available(void **state)
{
    int64_t total = SENTINEL;
    int64_t avail = SENTINEL;

    (void)state;
    assert_pf_ok(pf__proc_meminfo(FX("proc/basic"), &total, &avail));
    assert_int_equal(total, 8388608 * KB);
    assert_int_equal(avail, 4194304 * KB);
    avail = SENTINEL;
    assert_pf_ok(pf__proc_meminfo(FX("proc/basic"), &total, NULL));
    assert_int_equal(avail, SENTINEL);
    /* Before MemAvailable existed: free + buffers + cached. */
    assert_pf_ok(pf__proc_meminfo(FX("proc/old"), &total, &avail));
    assert_int_equal(total, 1048576 * KB);
    assert_int_equal(avail, (131072 + 65536 + 262144) * KB);
}

static void
test_procfs_meminfo_and_stat_malformed_are_eformat(void **state)
{
    static const char *const roots[] = {"proc/bad", "proc/cut", "proc/empty"};
    int64_t total = SENTINEL;
    pf__cpu_times_t ct = {1, 1, 1, 1, 1, 1, 1, 1};
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(roots) / sizeof(roots[0]); i++) {
        assert_pf_err(pf__proc_meminfo(FX(roots[i]), &total, NULL), PF_EFORMAT);
        assert_pf_err(pf__proc_read_cpu(FX(roots[i]), &ct), PF_EFORMAT);
    }
    assert_int_equal(total, SENTINEL);
    assert_int_equal(ct.user, 1);
    assert_pf_err(pf__proc_read_cpu(FX("proc/nowhere"), &ct), PF_ENOTFOUND);
}

static void
test_procfs_cpu_times_read_all_fields_or_the_first_four(void **state)
{
    pf__cpu_times_t ct;

    (void)state;
    assert_pf_ok(pf__proc_read_cpu(FX("proc/basic"), &ct));
    assert_int_equal(ct.user, 1000);
    assert_int_equal(ct.nice, 10);
    assert_int_equal(ct.system, 500);
    assert_int_equal(ct.idle, 8000);
    assert_int_equal(ct.iowait, 200);
    assert_int_equal(ct.irq, 5);
    assert_int_equal(ct.softirq, 15);
    assert_int_equal(ct.steal, 20);
    assert_pf_ok(pf__proc_read_cpu(FX("proc/old"), &ct));
    assert_int_equal(ct.user, 100);
    assert_int_equal(ct.idle, 850);
    assert_int_equal(ct.iowait, 0);
    assert_int_equal(ct.steal, 0);
}

static void
test_procfs_cpu_busy_fraction_between_readings(void **state)
{
    pf__cpu_times_t a = {100, 0, 100, 700, 100, 0, 0, 0};
    pf__cpu_times_t b = {250, 0, 150, 950, 150, 0, 0, 0};

    (void)state;
    /* 500 ticks passed, 300 of them idle or waiting: 40 % busy. */
    assert_float_equal(pf__cpu_busy_fraction(&a, &b), 0.4, 1e-12);
    assert_float_equal(pf__cpu_busy_fraction(&a, &a), 0.0, 0.0);
    assert_float_equal(pf__cpu_busy_fraction(&b, &a), 0.0, 0.0);
    assert_float_equal(pf__cpu_busy_fraction(NULL, &a), 0.0, 0.0);
}

/* ---- cgroup v2 ----------------------------------------------------------- */

static void
test_procfs_cgroup_path_reads_v2_entry(void **state)
{
    char buf[64] = "untouched";
    char small[4] = "abc";
    static const int bad[] = {141, 142, 143};
    size_t i;

    (void)state;
    assert_pf_ok(pf__cgroup_path(FX("proc/basic"), 0, buf, sizeof(buf)));
    assert_string_equal(buf, "/a/b");
    assert_pf_err(pf__cgroup_path(FX("proc/basic"), 0, small, sizeof(small)),
                  PF_ERANGE);
    assert_string_equal(small, "abc");
    assert_pf_err(pf__cgroup_path(FX("proc/old"), 0, buf, sizeof(buf)),
                  PF_ENOTFOUND);
    assert_pf_err(pf__cgroup_path(FX("proc/bad"), 144, buf, sizeof(buf)),
                  PF_ENOTFOUND);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_pf_err(pf__cgroup_path(FX("proc/bad"), bad[i], buf, sizeof(buf)),
                      PF_EFORMAT);
    }
    assert_string_equal(buf, "/a/b");
}

static void
test_procfs_cgroup_memory_reads_max_and_current(void **state)
{
    int64_t max = SENTINEL;
    int64_t cur = SENTINEL;

    (void)state;
    assert_pf_ok(pf__cgroup_memory(FX("cgroup/v2"), "/a", &max, &cur));
    assert_int_equal(max, 1024 * MB);
    assert_int_equal(cur, 100 * MB);
    assert_pf_ok(pf__cgroup_memory(FX("cgroup/v2"), "/a/b", &max, &cur));
    assert_int_equal(max, -1);
    assert_int_equal(cur, 50 * MB);
    max = SENTINEL;
    assert_pf_ok(pf__cgroup_memory(FX("cgroup/v2"), "/a/b", NULL, &cur));
    assert_int_equal(max, SENTINEL);
    assert_pf_err(pf__cgroup_memory(FX("cgroup/v2"), "/", &max, NULL),
                  PF_ENOTFOUND);
    cur = SENTINEL;
    assert_pf_err(pf__cgroup_memory(FX("cgroup/bad"), "/x", &max, NULL),
                  PF_EFORMAT);
    assert_pf_err(pf__cgroup_memory(FX("cgroup/bad"), "/y", &max, &cur),
                  PF_EFORMAT); /* memory.current "max" */
    assert_pf_err(pf__cgroup_memory(FX("cgroup/bad"), "/w", &max, NULL),
                  PF_EFORMAT); /* empty */
    assert_int_equal(max, SENTINEL);
    assert_int_equal(cur, SENTINEL);
}

static void
test_procfs_cgroup_cpu_max_and_usage(void **state)
{
    int64_t quota = SENTINEL;
    int64_t period = SENTINEL;
    uint64_t usage = 7;

    (void)state;
    assert_pf_ok(pf__cgroup_cpu_max(FX("cgroup/v2"), "/a/b", &quota, &period));
    assert_int_equal(quota, 50000);
    assert_int_equal(period, 100000);
    assert_pf_ok(pf__cgroup_cpu_max(FX("cgroup/v2"), "/a", &quota, &period));
    assert_int_equal(quota, -1);
    assert_int_equal(period, 100000);
    assert_pf_ok(pf__cgroup_cpu_usage(FX("cgroup/v2"), "/a/b", &usage));
    assert_int_equal(usage, 123456789);
    quota = SENTINEL;
    usage = 7;
    assert_pf_err(pf__cgroup_cpu_max(FX("cgroup/bad"), "/y", &quota, &period),
                  PF_EFORMAT);
    assert_pf_err(pf__cgroup_cpu_max(FX("cgroup/bad"), "/z", &quota, &period),
                  PF_EFORMAT);
    assert_pf_err(pf__cgroup_cpu_max(FX("cgroup/v2"), "/c", &quota, &period),
                  PF_ENOTFOUND);
    assert_pf_err(pf__cgroup_cpu_usage(FX("cgroup/bad"), "/z", &usage),
                  PF_EFORMAT);
    assert_pf_err(pf__cgroup_cpu_usage(FX("cgroup/bad"), "/w", &usage),
                  PF_EFORMAT);
    assert_int_equal(quota, SENTINEL);
    assert_int_equal(usage, 7);
}

static void
test_procfs_cgroup_unified_root_and_parent_walk_the_v2_tree(void **state)
{
    char want[4096];
    char root[4096];
    char path[16] = "/a/b";
    char small[8] = "unset";

    (void)state;
    /* cgroup.controllers at the root: v2 is the root itself. */
    assert_pf_ok(pf__cgroup_unified_root(FX("cgroup/v2"), root, sizeof(root)));
    assert_string_equal(root, FX("cgroup/v2"));
    /* v1 controllers at the root (hybrid): v2 is its unified/ folder. */
    assert_pf_ok(
        pf__cgroup_unified_root(FX("cgroup/hybrid"), root, sizeof(root)));
    snprintf(want, sizeof(want), "%s/unified", FX("cgroup/hybrid"));
    assert_string_equal(root, want);
    assert_pf_err(
        pf__cgroup_unified_root(FX("cgroup/v2"), small, sizeof(small)),
        PF_ERANGE);
    /* Up to the root, one level at a time, then no further. */
    assert_true(pf__cgroup_parent(path));
    assert_string_equal(path, "/a");
    assert_true(pf__cgroup_parent(path));
    assert_string_equal(path, "/");
    assert_false(pf__cgroup_parent(path));
    assert_string_equal(path, "/");
}

static void
test_procfs_memory_limit_takes_smallest_of_cgroups_and_memtotal(void **state)
{
    int64_t lim = SENTINEL;

    (void)state;
    /* /a/b has no limit, its parent /a has 1 GiB: the parent binds. */
    assert_pf_ok(pf__memory_limit(FX("proc/basic"), FX("cgroup/v2"), &lim));
    assert_int_equal(lim, 1024 * MB);
    assert_pf_ok(pf__memory_limit(FX("proc/nolimit"), FX("cgroup/v2"), &lim));
    assert_int_equal(lim, 8388608 * KB);
    assert_pf_ok(pf__memory_limit(FX("proc/bigger"), FX("cgroup/v2"), &lim));
    assert_int_equal(lim, 8388608 * KB);
    /* v1 controllers at the root, v2 under unified/. */
    assert_pf_ok(pf__memory_limit(FX("proc/basic"), FX("cgroup/hybrid"), &lim));
    assert_int_equal(lim, 256 * MB);
    /* No v2 entry at all: MemTotal. */
    assert_pf_ok(pf__memory_limit(FX("proc/old"), FX("cgroup/v2"), &lim));
    assert_int_equal(lim, 1048576 * KB);
    lim = SENTINEL;
    assert_pf_err(pf__memory_limit(FX("proc/badcg"), FX("cgroup/bad"), &lim),
                  PF_EFORMAT);
    assert_pf_err(pf__memory_limit(FX("proc/bad"), FX("cgroup/v2"), &lim),
                  PF_EFORMAT);
    assert_int_equal(lim, SENTINEL);
}

/* ---- this process -------------------------------------------------------- */

static void
test_procfs_real_process_counts_what_it_opens(void **state)
{
    pf__proc_status_t st;
    pf__sock_counts_t c0;
    pf__sock_counts_t c1;
    struct rlimit rl;
    int64_t before;
    int64_t after;
    int64_t lim;
    int fds[10];
    int sv[2];
    int i;

    (void)state;
    assert_pf_ok(pf__proc_read_status(PF__PROC_ROOT, 0, &st));
    assert_true(st.rss_bytes > 0);
    assert_true(st.vm_bytes >= st.rss_bytes);
    assert_true(st.threads >= 1);
    assert_pf_ok(pf__proc_read_status(PF__PROC_ROOT, (int)getpid(), &st));

    assert_pf_ok(pf__proc_count_fds(PF__PROC_ROOT, 0, &before));
    for (i = 0; i < 10; i++) {
        fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
        assert_true(fds[i] >= 0);
    }
    assert_pf_ok(pf__proc_count_fds(PF__PROC_ROOT, 0, &after));
    assert_int_equal(after, before + 10);
    assert_pf_ok(pf__proc_count_fds(PF__PROC_ROOT, (int)getpid(), &after));
    assert_int_equal(after, before + 10);
    for (i = 0; i < 10; i++) {
        close(fds[i]);
    }

    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    assert_pf_ok(pf__proc_fd_limit(PF__PROC_ROOT, 0, &lim));
    if (rl.rlim_cur == RLIM_INFINITY) {
        assert_int_equal(lim, -1);
    } else {
        assert_int_equal(lim, (int64_t)rl.rlim_cur);
    }

    assert_pf_ok(pf__proc_count_sockets(PF__PROC_ROOT, 0, &c0));
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_pf_ok(pf__proc_count_sockets(PF__PROC_ROOT, 0, &c1));
    assert_int_equal(c1.total, c0.total + 2);
    assert_int_equal(c1.unix_, c0.unix_ + 2);
    close(sv[0]);
    close(sv[1]);
}

static void
test_procfs_real_system_files_parse(void **state)
{
    pf__cpu_times_t ct;
    int64_t total;
    int64_t avail;
    int64_t lim;
    char path[4096];
    int rc;

    (void)state;
    assert_pf_ok(pf__proc_meminfo(PF__PROC_ROOT, &total, &avail));
    assert_true(total > 0);
    assert_true(avail >= 0 && avail <= total);
    assert_pf_ok(pf__proc_read_cpu(PF__PROC_ROOT, &ct));
    assert_true(ct.user + ct.system + ct.idle > 0);
    assert_pf_ok(pf__memory_limit(PF__PROC_ROOT, PF__CGROUP_ROOT, &lim));
    assert_true(lim > 0 && lim <= total);
    rc = pf__cgroup_path(PF__PROC_ROOT, 0, path, sizeof(path));
    assert_true(rc == 0 || rc == PF_ENOTFOUND);
    if (rc == 0) {
        assert_true(path[0] == '/');
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_procfs_status_reads_rss_size_and_threads),
        cmocka_unit_test(test_procfs_status_of_kernel_thread_has_no_memory),
        cmocka_unit_test(test_procfs_status_skips_line_longer_than_buffer),
        cmocka_unit_test(
            test_procfs_status_malformed_is_eformat_and_leaves_out),
        cmocka_unit_test(
            test_procfs_missing_file_is_enotfound_unreadable_is_esystem),
        cmocka_unit_test(test_procfs_bad_arguments_are_einval),
        cmocka_unit_test(test_procfs_count_fds_counts_every_entry),
        cmocka_unit_test(test_procfs_fd_limit_reads_soft_limit_or_unlimited),
        cmocka_unit_test(test_procfs_sockets_counted_by_kind_and_tcp_state),
        cmocka_unit_test(test_procfs_fds_and_sockets_in_one_listing),
        cmocka_unit_test(test_procfs_sockets_without_tables_count_as_other),
        cmocka_unit_test(test_procfs_sockets_malformed_tables_are_eformat),
        cmocka_unit_test(test_procfs_tcp_state_names),
        cmocka_unit_test(test_procfs_sockets_allocation_failures_leak_nothing),
        cmocka_unit_test(test_procfs_meminfo_reads_total_and_available),
        cmocka_unit_test(test_procfs_meminfo_and_stat_malformed_are_eformat),
        cmocka_unit_test(
            test_procfs_cpu_times_read_all_fields_or_the_first_four),
        cmocka_unit_test(test_procfs_cpu_busy_fraction_between_readings),
        cmocka_unit_test(test_procfs_cgroup_path_reads_v2_entry),
        cmocka_unit_test(test_procfs_cgroup_memory_reads_max_and_current),
        cmocka_unit_test(test_procfs_cgroup_cpu_max_and_usage),
        cmocka_unit_test(
            test_procfs_memory_limit_takes_smallest_of_cgroups_and_memtotal),
        cmocka_unit_test(
            test_procfs_cgroup_unified_root_and_parent_walk_the_v2_tree),
        cmocka_unit_test(test_procfs_real_process_counts_what_it_opens),
        cmocka_unit_test(test_procfs_real_system_files_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
