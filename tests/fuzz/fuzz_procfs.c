/* Fuzz the /proc and cgroup v2 readers (src/procfs.c).
 *
 * The readers take the roots they read under, so the harness writes a
 * small fake /proc and cgroup tree from the input and runs every reader on
 * it. The input is a list of sections, each a header line naming a file
 * and the file's bytes up to the next header:
 *
 *     == status              proc/self/status
 *     == limits | cgroup     proc/self/limits, proc/self/cgroup
 *     == net/tcp (tcp6, udp, udp6, unix)   proc/self/net/...
 *     == meminfo | stat      proc/meminfo, proc/stat
 *     == fd                  one "NAME TARGET" per line: a symlink
 *                            proc/self/fd/NAME -> TARGET
 *     == controllers         cgroup/cgroup.controllers
 *     == cg a/b/memory.max   cgroup/a/b/memory.max (any file under cgroup/)
 *
 * Checked: no memory error, no undefined behaviour, no leak, every return
 * code one the header documents, and values that make sense on success
 * (sizes not negative, a memory limit no larger than MemTotal, a busy
 * fraction within [0, 1]). The seeds in corpus/procfs/ are the fixture
 * trees of tests/fixtures written in this form. */
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "puffinflow/error.h"

#include "fuzz_util.h"
#include "procfs.h"

static char root[PATH_MAX];     /* a private folder, made once */
static char proc_root[PATH_MAX];
static char cg_root[PATH_MAX];

static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void
rm_tree(const char *path)
{
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* mkdir -p of the folders leading to path (not path itself). */
static void
make_parents(const char *path)
{
    char buf[PATH_MAX];
    char *p;

    snprintf(buf, sizeof(buf), "%s", path);
    for (p = buf + strlen(root) + 1; *p != '\0'; p++) {
        if (*p == '/') {
            *p = '\0';
            mkdir(buf, 0700);
            *p = '/';
        }
    }
}

static void
write_file(const char *path, const char *data, size_t len)
{
    FILE *f;

    make_parents(path);
    f = fopen(path, "wb");
    if (f == NULL) {
        return;
    }
    fwrite(data, 1, len, f);
    fclose(f);
}

/* A name a section may put under cgroup/: relative, no "." or ".."
 * component, so nothing is written outside the tree. */
static bool
safe_relpath(const char *p)
{
    const char *c = p;

    if (*p == '\0' || *p == '/') {
        return false;
    }
    while (*c != '\0') {
        size_t n = strcspn(c, "/");

        if (n == 0 || (n == 1 && c[0] == '.') ||
            (n == 2 && c[0] == '.' && c[1] == '.')) {
            return false;
        }
        c += n;
        if (*c == '/') {
            c++;
        }
    }
    return true;
}

/* "NAME TARGET" lines into symlinks under proc/self/fd. */
static void
write_fds(const char *data, size_t len)
{
    char dir[PATH_MAX];
    char line[512];
    size_t i = 0;

    snprintf(dir, sizeof(dir), "%s/self/fd/x", proc_root);
    make_parents(dir);
    while (i < len) {
        size_t n = 0;
        char *sp;
        char path[PATH_MAX];

        while (i < len && data[i] != '\n' && n < sizeof(line) - 1) {
            line[n++] = data[i++];
        }
        while (i < len && data[i] != '\n') {
            i++;
        }
        i++;
        line[n] = '\0';
        sp = strchr(line, ' ');
        if (sp == NULL || sp == line) {
            continue;
        }
        *sp = '\0';
        if (strchr(line, '/') != NULL || strcmp(line, ".") == 0 ||
            strcmp(line, "..") == 0) {
            continue;
        }
        snprintf(path, sizeof(path), "%s/self/fd/%s", proc_root, line);
        (void)symlink(sp + 1, path);
    }
}

static void
write_section(const char *name, const char *data, size_t len)
{
    static const char *const proc_self[] = {
        "status", "limits", "cgroup", "net/tcp", "net/tcp6",
        "net/udp", "net/udp6", "net/unix"};
    char path[PATH_MAX];
    size_t i;

    for (i = 0; i < sizeof(proc_self) / sizeof(proc_self[0]); i++) {
        if (strcmp(name, proc_self[i]) == 0) {
            snprintf(path, sizeof(path), "%s/self/%s", proc_root, name);
            write_file(path, data, len);
            return;
        }
    }
    if (strcmp(name, "meminfo") == 0 || strcmp(name, "stat") == 0) {
        snprintf(path, sizeof(path), "%s/%s", proc_root, name);
        write_file(path, data, len);
    } else if (strcmp(name, "fd") == 0) {
        write_fds(data, len);
    } else if (strcmp(name, "controllers") == 0) {
        snprintf(path, sizeof(path), "%s/cgroup.controllers", cg_root);
        write_file(path, data, len);
    } else if (strncmp(name, "cg ", 3) == 0 && safe_relpath(name + 3) &&
               strlen(name) < 200) {
        snprintf(path, sizeof(path), "%s/%s", cg_root, name + 3);
        write_file(path, data, len);
    }
}

/* Split the input into "== name\n" sections and write each. */
static void
write_tree(const char *data, size_t size)
{
    const char *end = data + size;
    const char *p = data;

    while (p < end) {
        const char *nl;
        const char *body;
        const char *next;
        char name[256];
        size_t n;

        if (end - p < 3 || memcmp(p, "== ", 3) != 0) {
            /* Bytes before the first header belong to no file. */
            next = memchr(p, '\n', (size_t)(end - p));
            p = next == NULL ? end : next + 1;
            continue;
        }
        nl = memchr(p, '\n', (size_t)(end - p));
        body = nl == NULL ? end : nl + 1;
        n = (size_t)((nl == NULL ? end : nl) - (p + 3));
        if (n >= sizeof(name)) {
            n = sizeof(name) - 1;
        }
        memcpy(name, p + 3, n);
        name[n] = '\0';
        if (memchr(name, '\0', n) != NULL) {
            name[0] = '\0'; /* a NUL in a name: no such file */
        }
        /* The body runs to the next line starting with "== ". */
        next = body;
        while (next < end) {
            const char *q = memchr(next, '\n', (size_t)(end - next));

            if (q == NULL) {
                next = end;
                break;
            }
            if (end - (q + 1) >= 3 && memcmp(q + 1, "== ", 3) == 0) {
                next = q + 1;
                break;
            }
            next = q + 1;
        }
        write_section(name, body, (size_t)(next - body));
        p = next;
    }
}

static bool
rc_is(int rc, int a, int b, int c, int d)
{
    return rc == 0 || rc == a || rc == b || rc == c || rc == d;
}

static void
check_readers(void)
{
    pf__proc_status_t st;
    pf__sock_counts_t sc;
    pf__cpu_times_t cpu;
    pf__cpu_times_t zero;
    int64_t a;
    int64_t b;
    int64_t total = -1;
    uint64_t u;
    char cg[PATH_MAX];
    char uroot[PATH_MAX];
    int rc;
    int i;

    rc = pf__proc_read_status(proc_root, 0, &st);
    FUZZ_CHECK(rc_is(rc, PF_EFORMAT, PF_ENOTFOUND, PF_ESYSTEM, PF_ERANGE),
               "status rc %d", rc);
    if (rc == 0) {
        FUZZ_CHECK(st.rss_bytes >= 0 && st.vm_bytes >= 0 && st.threads >= 0,
                   "status %lld %lld %lld", (long long)st.rss_bytes,
                   (long long)st.vm_bytes, (long long)st.threads);
    }
    rc = pf__proc_fd_limit(proc_root, 0, &a);
    FUZZ_CHECK(rc_is(rc, PF_EFORMAT, PF_ENOTFOUND, PF_ESYSTEM, PF_ERANGE),
               "limits rc %d", rc);
    FUZZ_CHECK(rc != 0 || a >= -1, "fd limit %lld", (long long)a);

    rc = pf__proc_count_fds(proc_root, 0, &a);
    FUZZ_CHECK(rc_is(rc, PF_EFORMAT, PF_ENOTFOUND, PF_ESYSTEM, PF_ERANGE),
               "fds rc %d", rc);
    FUZZ_CHECK(rc != 0 || a >= 0, "fds %lld", (long long)a);
    rc = pf__proc_count_fds_sockets(proc_root, 0, &b, &sc);
    FUZZ_CHECK(rc_is(rc, PF_EFORMAT, PF_ENOTFOUND, PF_ESYSTEM, PF_ENOMEM),
               "sockets rc %d", rc);
    if (rc == 0) {
        FUZZ_CHECK(sc.total >= 0 && sc.tcp >= 0 && sc.udp >= 0 &&
                       sc.unix_ >= 0 && sc.other >= 0 && sc.total <= b,
                   "sockets total %lld tcp %lld udp %lld unix %lld other "
                   "%lld of %lld fds",
                   (long long)sc.total, (long long)sc.tcp, (long long)sc.udp,
                   (long long)sc.unix_, (long long)sc.other, (long long)b);
        a = 0;
        for (i = 0; i < PF__TCP_STATES; i++) {
            FUZZ_CHECK(sc.tcp_by_state[i] >= 0, "tcp state %d", i);
            a += sc.tcp_by_state[i];
        }
        FUZZ_CHECK(a <= sc.tcp, "tcp by state %lld > tcp %lld",
                   (long long)a, (long long)sc.tcp);
    }

    rc = pf__proc_meminfo(proc_root, &total, &a);
    FUZZ_CHECK(rc_is(rc, PF_EFORMAT, PF_ENOTFOUND, PF_ESYSTEM, PF_ERANGE),
               "meminfo rc %d", rc);
    FUZZ_CHECK(rc != 0 || (total >= 0 && a >= 0), "meminfo %lld %lld",
               (long long)total, (long long)a);

    rc = pf__proc_read_cpu(proc_root, &cpu);
    FUZZ_CHECK(rc_is(rc, PF_EFORMAT, PF_ENOTFOUND, PF_ESYSTEM, PF_ERANGE),
               "stat rc %d", rc);
    if (rc == 0) {
        double f1;
        double f2;

        memset(&zero, 0, sizeof(zero));
        f1 = pf__cpu_busy_fraction(&zero, &cpu);
        f2 = pf__cpu_busy_fraction(&cpu, &zero);
        FUZZ_CHECK(f1 >= 0.0 && f1 <= 1.0 && f2 >= 0.0 && f2 <= 1.0,
                   "busy fraction %g %g", f1, f2);
    }

    rc = pf__cgroup_path(proc_root, 0, cg, sizeof(cg));
    FUZZ_CHECK(rc_is(rc, PF_EFORMAT, PF_ENOTFOUND, PF_ESYSTEM, PF_ERANGE),
               "cgroup rc %d", rc);
    if (rc == 0) {
        FUZZ_CHECK(cg[0] == '/', "cgroup path %s", cg);
        rc = pf__cgroup_unified_root(cg_root, uroot, sizeof(uroot));
        FUZZ_CHECK(rc == 0, "unified root rc %d", rc);
        /* A path that climbs out of the tree ("/../..") would read the
         * host's files: only paths that stay inside are followed. */
        if (strstr(cg, "/..") == NULL && strlen(cg) < 1024) {
            rc = pf__cgroup_memory(uroot, cg, &a, &b);
            FUZZ_CHECK(rc != 0 || (a >= -1 && b >= 0), "memory %lld %lld",
                       (long long)a, (long long)b);
            rc = pf__cgroup_cpu_max(uroot, cg, &a, &b);
            FUZZ_CHECK(rc != 0 || (a >= -1 && b > 0), "cpu.max %lld %lld",
                       (long long)a, (long long)b);
            rc = pf__cgroup_cpu_usage(uroot, cg, &u);
            FUZZ_CHECK(rc_is(rc, PF_EFORMAT, PF_ENOTFOUND, PF_ESYSTEM,
                             PF_ERANGE),
                       "cpu.stat rc %d", rc);
            rc = pf__memory_limit(proc_root, cg_root, &a);
            FUZZ_CHECK(rc_is(rc, PF_EFORMAT, PF_ENOTFOUND, PF_ESYSTEM,
                             PF_ERANGE),
                       "memory limit rc %d", rc);
            FUZZ_CHECK(rc != 0 || (a >= 0 && a <= total),
                       "memory limit %lld, MemTotal %lld", (long long)a,
                       (long long)total);
        }
        while (pf__cgroup_parent(cg)) {
            FUZZ_CHECK(cg[0] == '/', "parent %s", cg);
        }
        FUZZ_CHECK(strcmp(cg, "/") == 0, "last parent %s", cg);
    }
}

static void
remove_root(void)
{
    rm_tree(root);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *tmp = getenv("TMPDIR");

    (void)argc;
    (void)argv;
    if (access("/dev/shm", W_OK) == 0) {
        tmp = "/dev/shm"; /* memory: cheaper than a disk per input */
    } else if (tmp == NULL) {
        tmp = "/tmp";
    }
    snprintf(root, sizeof(root), "%s/pf-fuzz-procfs-XXXXXX", tmp);
    if (mkdtemp(root) == NULL) {
        perror("mkdtemp");
        abort();
    }
    snprintf(proc_root, sizeof(proc_root), "%s/proc", root);
    snprintf(cg_root, sizeof(cg_root), "%s/cgroup", root);
    atexit(remove_root);
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char dir[PATH_MAX];

    if (size > 64 * 1024) {
        return -1; /* far beyond any file the readers expect */
    }
    snprintf(dir, sizeof(dir), "%s/proc/x", root);
    make_parents(dir);
    snprintf(dir, sizeof(dir), "%s/cgroup/x", root);
    make_parents(dir);
    write_tree((const char *)data, size);
    check_readers();
    rm_tree(proc_root);
    rm_tree(cg_root);
    return 0;
}
