/* Readers of /proc and cgroup v2 files (see procfs.h).
 *
 * Files are read with open/read into a buffer on the stack and split into
 * lines in place: no stdio, so nothing allocates behind the library's
 * allocator and a sample costs a handful of system calls. A line longer
 * than the buffer (a huge Groups: line, say) is cut and flagged, and the
 * parsers ignore such lines: no key we read comes close to that length.
 * Directories (/proc/<pid>/fd) are listed with getdents64 into a stack
 * buffer, for the same reasons.
 *
 * Every parser checks what it reads: a missing key, a number with no
 * digits, an overflow, a line with too few fields is PF_EFORMAT, never a
 * guess. Outputs are written only once everything has parsed. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "puffinflow/error.h"

#include "mem.h"
#include "procfs.h"

/* The f_type statfs reports for a real procfs mount. */
#define PROC_FS_MAGIC 0x9fa0

#define PATH_LEN 4096
#define READ_BUF 4096

/* ---- paths and errors ---------------------------------------------------- */

/* errno of a failed open or read, as a PF_E* code. ESRCH: the process
 * exited while we read its directory. */
static int
errno_code(int e)
{
    if (e == ENOENT || e == ESRCH || e == ENOTDIR) {
        return PF_ENOTFOUND;
    }
    return PF_ESYSTEM;
}

/* "<root>/<pid or self>/<file>" into buf. */
static int
pid_path(char *buf, size_t len, const char *root, int pid, const char *file)
{
    int n;

    if (root == NULL || pid < 0) {
        return PF_EINVAL;
    }
    if (pid == 0) {
        n = snprintf(buf, len, "%s/self/%s", root, file);
    } else {
        n = snprintf(buf, len, "%s/%d/%s", root, pid, file);
    }
    return n < 0 || (size_t)n >= len ? PF_ERANGE : 0;
}

/* "<root><cgroup path>/<file>" into buf; the cgroup path starts with '/'. */
static int
cgroup_file(char *buf, size_t len, const char *root, const char *path,
            const char *file)
{
    int n;

    if (root == NULL || path == NULL || path[0] != '/') {
        return PF_EINVAL;
    }
    if (path[1] == '\0') {
        n = snprintf(buf, len, "%s/%s", root, file);
    } else {
        n = snprintf(buf, len, "%s%s/%s", root, path, file);
    }
    return n < 0 || (size_t)n >= len ? PF_ERANGE : 0;
}

/* ---- a line reader on a stack buffer ------------------------------------- */

typedef struct reader {
    int fd;
    size_t start; /* unread bytes are buf[start, end) */
    size_t end;
    bool eof;
    char buf[READ_BUF];
} reader_t;

static int
reader_open(reader_t *r, const char *path)
{
    r->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (r->fd < 0) {
        return errno_code(errno);
    }
    r->start = 0;
    r->end = 0;
    r->eof = false;
    return 0;
}

/* Open "<root>/<file>". */
static int
reader_open_in(reader_t *r, const char *root, const char *file)
{
    char path[PATH_LEN];
    int n = snprintf(path, sizeof(path), "%s/%s", root, file);

    if (n < 0 || (size_t)n >= sizeof(path)) {
        return PF_ERANGE;
    }
    return reader_open(r, path);
}

/* Open "<root>/<pid or self>/<file>" (see pid_path). */
static int
reader_open_pid(reader_t *r, const char *root, int pid, const char *file)
{
    char path[PATH_LEN];
    int rc = pid_path(path, sizeof(path), root, pid, file);

    return rc != 0 ? rc : reader_open(r, path);
}

static void
reader_close(reader_t *r)
{
    close(r->fd);
}

/* Read more bytes after the unread ones, moving those to the front.
 * Returns 0 or PF_ESYSTEM / PF_ENOTFOUND. */
static int
reader_fill(reader_t *r)
{
    ssize_t n;

    if (r->start > 0) {
        memmove(r->buf, r->buf + r->start, r->end - r->start);
        r->end -= r->start;
        r->start = 0;
    }
    do {
        /* One byte stays free for the NUL ending the last line. */
        n = read(r->fd, r->buf + r->end, sizeof(r->buf) - 1 - r->end);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        return errno_code(errno);
    }
    if (n == 0) {
        r->eof = true;
    }
    r->end += (size_t)n;
    return 0;
}

/* The next line, NUL-terminated in place, without its newline. Returns 1
 * and sets *line (and *cut when the line was longer than the buffer and has
 * been cut), 0 at the end of the file, or a PF_E* code. A last line with no
 * newline counts as a line. */
static int
reader_line(reader_t *r, char **line, bool *cut)
{
    char *nl;
    int rc;

    *cut = false;
    for (;;) {
        nl = memchr(r->buf + r->start, '\n', r->end - r->start);
        if (nl != NULL) {
            break;
        }
        if (r->eof) {
            if (r->start == r->end) {
                return 0;
            }
            nl = r->buf + r->end; /* the last line, unterminated */
            break;
        }
        if (r->start == 0 && r->end == sizeof(r->buf) - 1) {
            /* The line fills the buffer: drop bytes up to its newline. */
            *cut = true;
            r->end = 0;
            continue;
        }
        rc = reader_fill(r);
        if (rc != 0) {
            return rc;
        }
    }
    *nl = '\0';
    /* Of a cut line only its tail is left, which is no line of its own:
     * hand out an empty string (the NUL just written). */
    *line = *cut ? nl : r->buf + r->start;
    r->start = (size_t)(nl - r->buf) + (nl < r->buf + r->end ? 1 : 0);
    return 1;
}

/* Read a small file whole (at most READ_BUF - 1 bytes) into buf as one
 * NUL-terminated string. A longer file is PF_EFORMAT: none we read whole is
 * longer than a line or two. */
static int
read_small(const char *path, char *buf, size_t len)
{
    size_t got = 0;
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        return errno_code(errno);
    }
    for (;;) {
        do {
            n = read(fd, buf + got, len - 1 - got);
        } while (n < 0 && errno == EINTR);
        if (n < 0) {
            int rc = errno_code(errno);

            close(fd);
            return rc;
        }
        if (n == 0) {
            break;
        }
        got += (size_t)n;
        if (got == len - 1) {
            close(fd);
            return PF_EFORMAT;
        }
    }
    close(fd);
    buf[got] = '\0';
    return 0;
}

/* ---- number parsing ------------------------------------------------------ */

static bool
is_space(char c)
{
    return c == ' ' || c == '\t';
}

static const char *
skip_space(const char *p)
{
    while (is_space(*p)) {
        p++;
    }
    return p;
}

static int
digit_value(char c, int base)
{
    int v;

    if (c >= '0' && c <= '9') {
        v = c - '0';
    } else if (c >= 'a' && c <= 'f') {
        v = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
        v = c - 'A' + 10;
    } else {
        return -1;
    }
    return v < base ? v : -1;
}

/* Parse an unsigned number in base 10 or 16 at *p (after blanks), moving
 * *p past it. False when there is no digit or it overflows. */
static bool
parse_u64(const char **p, int base, uint64_t *out)
{
    const char *s = skip_space(*p);
    uint64_t v = 0;
    int d = digit_value(*s, base);

    if (d < 0) {
        return false;
    }
    while (d >= 0) {
        if (v > (UINT64_MAX - (uint64_t)d) / (uint64_t)base) {
            return false;
        }
        v = v * (uint64_t)base + (uint64_t)d;
        s++;
        d = digit_value(*s, base);
    }
    *p = s;
    *out = v;
    return true;
}

/* A whole token that is a decimal number fitting int64_t. */
static bool
parse_i64_token(const char *tok, int64_t *out)
{
    const char *p = tok;
    uint64_t v;

    if (!parse_u64(&p, 10, &v) || *skip_space(p) != '\0' ||
        v > (uint64_t)INT64_MAX) {
        return false;
    }
    *out = (int64_t)v;
    return true;
}

/* The value of a "Key:   123 kB" line as bytes. False unless the number is
 * followed by " kB" and nothing else, and fits. */
static bool
parse_kb(const char *p, int64_t *bytes)
{
    uint64_t kb;

    if (!parse_u64(&p, 10, &kb)) {
        return false;
    }
    p = skip_space(p);
    if (strcmp(p, "kB") != 0 || kb > (uint64_t)(INT64_MAX / 1024)) {
        return false;
    }
    *bytes = (int64_t)kb * 1024;
    return true;
}

/* If line starts with key (which ends in ':'), the text after it. */
static const char *
after_key(const char *line, const char *key)
{
    size_t n = strlen(key);

    return strncmp(line, key, n) == 0 ? line + n : NULL;
}

/* Hand the text after key on the first whole line of path that starts with
 * key to parse (which may cut it up in place) and return what parse
 * returns: 0, or PF_EFORMAT. PF_EFORMAT too when no line has the key; the
 * reader's errors as they come. */
static int
parse_keyed_line(const char *path, const char *key,
                 int (*parse)(char *text, void *out), void *out)
{
    reader_t r;
    char *line;
    bool cut;
    int parsed = PF_EFORMAT;
    int rc;

    rc = reader_open(&r, path);
    if (rc != 0) {
        return rc;
    }
    while ((rc = reader_line(&r, &line, &cut)) == 1) {
        const char *v = after_key(line, key);

        if (cut || v == NULL) {
            continue;
        }
        parsed = parse((char *)v, out); /* v points into line, ours */
        break;
    }
    reader_close(&r);
    return rc < 0 ? rc : parsed;
}

/* ---- /proc/<pid>/status -------------------------------------------------- */

int
pf__proc_read_status(const char *proc_root, int pid, pf__proc_status_t *out)
{
    reader_t r;
    char *line;
    const char *v;
    bool cut;
    bool have_rss = false;
    bool have_vm = false;
    bool have_threads = false;
    pf__proc_status_t st = {0, 0, 0};
    int rc;

    if (out == NULL) {
        return PF_EINVAL;
    }
    rc = reader_open_pid(&r, proc_root, pid, "status");
    if (rc != 0) {
        return rc;
    }
    while ((rc = reader_line(&r, &line, &cut)) == 1) {
        uint64_t n;

        if (cut) {
            continue;
        }
        if ((v = after_key(line, "VmRSS:")) != NULL) {
            if (!parse_kb(v, &st.rss_bytes)) {
                rc = PF_EFORMAT;
                break;
            }
            have_rss = true;
        } else if ((v = after_key(line, "VmSize:")) != NULL) {
            if (!parse_kb(v, &st.vm_bytes)) {
                rc = PF_EFORMAT;
                break;
            }
            have_vm = true;
        } else if ((v = after_key(line, "Threads:")) != NULL) {
            if (!parse_u64(&v, 10, &n) || *skip_space(v) != '\0' ||
                n > (uint64_t)INT64_MAX) {
                rc = PF_EFORMAT;
                break;
            }
            st.threads = (int64_t)n;
            have_threads = true;
        }
    }
    reader_close(&r);
    if (rc < 0) {
        return rc;
    }
    /* Threads is always there. A process with no memory map (a kernel
     * thread, a zombie) has neither Vm line; one without the other means
     * the file was cut. */
    if (!have_threads || have_rss != have_vm) {
        return PF_EFORMAT;
    }
    *out = st;
    return 0;
}

/* ---- /proc/<pid>/fd ------------------------------------------------------ */

/* The fixed head of a linux_dirent64 record, as getdents64 writes it. */
#define DIRENT_RECLEN_AT 16
#define DIRENT_NAME_AT 19

/* own: the table listed is this process's own, on a real procfs, so name
 * is one of our descriptors and may be examined directly. */
typedef int (*fd_visit_fn)(int dirfd, const char *name, bool own, void *arg);

static bool
is_decimal(const char *s)
{
    if (*s == '\0') {
        return false;
    }
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9') {
            return false;
        }
    }
    return true;
}

/* Call visit(dirfd, name, own, arg) for each entry of /proc/<pid>/fd, skipping
 * "." and "..", and, when listing our own table on a real procfs, the
 * descriptor this listing itself holds open. A name that is not a
 * descriptor number is PF_EFORMAT. Stops at the first non-zero visit. */
static int
list_fds(const char *proc_root, int pid, fd_visit_fn visit, void *arg)
{
    _Alignas(8) char buf[8192];
    char path[PATH_LEN];
    char self_name[16];
    struct statfs sfs;
    bool skip_self = false;
    int dirfd;
    int rc;

    rc = pid_path(path, sizeof(path), proc_root, pid, "fd");
    if (rc != 0) {
        return rc;
    }
    dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0) {
        return errno_code(errno);
    }
    if ((pid == 0 || pid == (int)getpid()) && fstatfs(dirfd, &sfs) == 0 &&
        sfs.f_type == PROC_FS_MAGIC) {
        skip_self = true;
        snprintf(self_name, sizeof(self_name), "%d", dirfd);
    }
    rc = 0;
    while (rc == 0) {
        long n = syscall(SYS_getdents64, dirfd, buf, sizeof(buf));
        long off = 0;

        if (n < 0) {
            rc = errno == EINTR ? 0 : errno_code(errno);
            if (rc == 0) {
                continue;
            }
            break;
        }
        if (n == 0) {
            break;
        }
        while (off < n && rc == 0) {
            unsigned short reclen;
            const char *name = buf + off + DIRENT_NAME_AT;

            memcpy(&reclen, buf + off + DIRENT_RECLEN_AT, sizeof(reclen));
            if (reclen == 0) {
                rc = PF_ESYSTEM;
                break;
            }
            off += reclen;
            if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
                continue;
            }
            if (!is_decimal(name)) {
                rc = PF_EFORMAT;
                break;
            }
            if (skip_self && strcmp(name, self_name) == 0) {
                continue;
            }
            rc = visit(dirfd, name, skip_self, arg);
        }
    }
    close(dirfd);
    return rc;
}

static int
count_visit(int dirfd, const char *name, bool own, void *arg)
{
    (void)dirfd;
    (void)name;
    (void)own;
    (*(int64_t *)arg)++;
    return 0;
}

int
pf__proc_count_fds(const char *proc_root, int pid, int64_t *out)
{
    int64_t n = 0;
    int rc;

    if (out == NULL) {
        return PF_EINVAL;
    }
    rc = list_fds(proc_root, pid, count_visit, &n);
    if (rc != 0) {
        return rc;
    }
    *out = n;
    return 0;
}

/* ---- /proc/<pid>/limits -------------------------------------------------- */

/* "<soft>   <hard>   files" after "Max open files": the soft limit, -1
 * for unlimited. */
static int
parse_soft_limit(char *text, void *out)
{
    char *save = NULL;
    char *soft = strtok_r(text, " \t", &save);

    if (soft == NULL) {
        return PF_EFORMAT;
    }
    if (strcmp(soft, "unlimited") == 0) {
        *(int64_t *)out = -1;
        return 0;
    }
    return parse_i64_token(soft, out) ? 0 : PF_EFORMAT;
}

int
pf__proc_fd_limit(const char *proc_root, int pid, int64_t *out)
{
    char path[PATH_LEN];
    int64_t limit = 0;
    int rc;

    if (out == NULL) {
        return PF_EINVAL;
    }
    rc = pid_path(path, sizeof(path), proc_root, pid, "limits");
    if (rc == 0) {
        rc = parse_keyed_line(path, "Max open files", parse_soft_limit, &limit);
    }
    if (rc != 0) {
        return rc;
    }
    *out = limit;
    return 0;
}

/* ---- sockets ------------------------------------------------------------- */

typedef struct sock_ent {
    uint64_t ino;
    bool matched; /* found in a net table already */
} sock_ent_t;

typedef struct sock_table {
    sock_ent_t *ents;
    size_t len;
    size_t cap;
    size_t matched;
    int64_t fds;              /* every entry listed */
    bool want;                /* sockets wanted, not only the count */
    pf__sock_counts_t direct; /* our own sockets, classified directly */
} sock_table_t;

/* Count one of our own descriptors into c if it is a socket, asking the
 * socket itself for its family, protocol and TCP state. This costs a few
 * system calls and no /proc/net table: reading /proc/net/tcp walks the
 * kernel's whole connection hash, milliseconds on a large machine. It also
 * classifies sockets no table lists (unbound ones). A descriptor closed or
 * reused since the listing is counted as what it is now, or not at all. */
static void
classify_own(int fd, pf__sock_counts_t *c)
{
    struct stat st;
    struct tcp_info ti;
    socklen_t len = sizeof(int);
    int domain;
    int proto;

    if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) {
        return;
    }
    c->total++;
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0) {
        c->other++;
        return;
    }
    if (domain == AF_UNIX) {
        c->unix_++;
        return;
    }
    len = sizeof(int);
    if ((domain != AF_INET && domain != AF_INET6) ||
        getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &len) != 0) {
        c->other++;
        return;
    }
    if (proto == IPPROTO_TCP) {
        c->tcp++;
        len = sizeof(ti);
        if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 &&
            ti.tcpi_state < PF__TCP_STATES) {
            c->tcp_by_state[ti.tcpi_state]++;
        }
    } else if (proto == IPPROTO_UDP || proto == IPPROTO_UDPLITE) {
        c->udp++;
    } else {
        c->other++;
    }
}

/* The socket inode behind entry name of another process's fd folder, or 0
 * when it is no socket. */
static int
sock_inode(int dirfd, const char *name, uint64_t *ino)
{
    static const char prefix[] = "socket:[";
    char link[64];
    const char *p;
    ssize_t n;

    *ino = 0;
    n = readlinkat(dirfd, name, link, sizeof(link) - 1);
    if (n < 0) {
        /* Closed since the listing: no longer open, so not counted. */
        return errno == ENOENT ? 0 : errno_code(errno);
    }
    link[n] = '\0';
    if (strncmp(link, prefix, sizeof(prefix) - 1) != 0) {
        return 0;
    }
    p = link + sizeof(prefix) - 1;
    if (!parse_u64(&p, 10, ino) || strcmp(p, "]") != 0) {
        return PF_EFORMAT;
    }
    return 0;
}

static int
sock_visit(int dirfd, const char *name, bool own, void *arg)
{
    sock_table_t *t = arg;
    uint64_t ino;
    int rc;

    t->fds++;
    if (!t->want) {
        return 0;
    }
    if (own) {
        classify_own(atoi(name), &t->direct);
        return 0;
    }
    rc = sock_inode(dirfd, name, &ino);
    if (rc != 0 || ino == 0) {
        return rc;
    }
    rc = pf__grow((void **)&t->ents, &t->cap, t->len + 1, sizeof(*t->ents));
    if (rc != 0) {
        return rc;
    }
    t->ents[t->len].ino = ino;
    t->ents[t->len].matched = false;
    t->len++;
    return 0;
}

static int
sock_cmp(const void *a, const void *b)
{
    uint64_t x = ((const sock_ent_t *)a)->ino;
    uint64_t y = ((const sock_ent_t *)b)->ino;

    return x < y ? -1 : x > y;
}

/* Mark every not yet matched descriptor of socket ino; returns how many. */
static int64_t
sock_match(sock_table_t *t, uint64_t ino)
{
    size_t lo = 0;
    size_t hi = t->len;
    int64_t n = 0;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (t->ents[mid].ino < ino) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    for (; lo < t->len && t->ents[lo].ino == ino; lo++) {
        if (!t->ents[lo].matched) {
            t->ents[lo].matched = true;
            t->matched++;
            n++;
        }
    }
    return n;
}

enum net_kind { NET_TCP, NET_UDP, NET_UNIX };

/* Match the sockets of one /proc/<pid>/net table against t, counting them
 * into out. A missing table (no IPv6, say) matches nothing. */
static int
scan_net(const char *proc_root, int pid, const char *file, enum net_kind kind,
         sock_table_t *t, pf__sock_counts_t *out)
{
    reader_t r;
    char *line;
    bool cut;
    bool header = true;
    int rc;

    rc = reader_open_pid(&r, proc_root, pid, file);
    if (rc == PF_ENOTFOUND) {
        return 0;
    }
    if (rc != 0) {
        return rc;
    }
    while (t->matched < t->len && (rc = reader_line(&r, &line, &cut)) == 1) {
        char *save = NULL;
        char *tok[10];
        size_t want = kind == NET_UNIX ? 7 : 10;
        size_t i;
        int64_t ino;
        const char *st;
        uint64_t state = 0;
        int64_t n;

        if (header) {
            /* "  sl  local_address ..." or "Num       RefCount ..." */
            header = false;
            continue;
        }
        if (cut) {
            rc = PF_EFORMAT;
            break;
        }
        for (i = 0; i < want; i++) {
            tok[i] = strtok_r(i == 0 ? line : NULL, " \t", &save);
            if (tok[i] == NULL) {
                break;
            }
        }
        if (i < want || tok[0][strlen(tok[0]) - 1] != ':') {
            rc = PF_EFORMAT;
            break;
        }
        /* tcp/udp: sl local rem st queues timer retr uid timeout inode.
         * unix:    Num RefCount Protocol Flags Type St Inode [Path]. */
        if (!parse_i64_token(tok[kind == NET_UNIX ? 6 : 9], &ino)) {
            rc = PF_EFORMAT;
            break;
        }
        st = tok[3];
        if (kind == NET_TCP &&
            (!parse_u64(&st, 16, &state) || *st != '\0' || state > 0xff)) {
            rc = PF_EFORMAT;
            break;
        }
        n = sock_match(t, (uint64_t)ino);
        if (n == 0) {
            continue;
        }
        if (kind == NET_TCP) {
            out->tcp += n;
            if (state < PF__TCP_STATES) {
                out->tcp_by_state[state] += n;
            }
        } else if (kind == NET_UDP) {
            out->udp += n;
        } else {
            out->unix_ += n;
        }
    }
    reader_close(&r);
    if (rc < 0) {
        return rc;
    }
    if (header && t->matched < t->len) {
        return PF_EFORMAT; /* an empty table: not even its header line */
    }
    return 0;
}

int
pf__proc_count_sockets(const char *proc_root, int pid, pf__sock_counts_t *out)
{
    if (out == NULL) {
        return PF_EINVAL;
    }
    return pf__proc_count_fds_sockets(proc_root, pid, NULL, out);
}

int
pf__proc_count_fds_sockets(const char *proc_root, int pid, int64_t *fds,
                           pf__sock_counts_t *out)
{
    static const struct {
        const char *file;
        enum net_kind kind;
    } tables[] = {
        /* Cheapest first: the TCP tables cost the most to read. */
        {"net/unix", NET_UNIX}, {"net/udp", NET_UDP},  {"net/udp6", NET_UDP},
        {"net/tcp", NET_TCP},   {"net/tcp6", NET_TCP},
    };
    sock_table_t t;
    pf__sock_counts_t c;
    size_t i;
    int rc;

    if (fds == NULL && out == NULL) {
        return PF_EINVAL;
    }
    memset(&c, 0, sizeof(c));
    memset(&t, 0, sizeof(t));
    t.want = out != NULL;
    rc = list_fds(proc_root, pid, sock_visit, &t);
    if (rc == 0 && t.len > 0) {
        qsort(t.ents, t.len, sizeof(*t.ents), sock_cmp);
        for (i = 0; i < sizeof(tables) / sizeof(tables[0]) && rc == 0; i++) {
            if (t.matched == t.len) {
                break; /* every socket found: skip the other tables */
            }
            rc = scan_net(proc_root, pid, tables[i].file, tables[i].kind, &t,
                          &c);
        }
    }
    pf__free(t.ents);
    if (rc != 0) {
        return rc;
    }
    c.total = (int64_t)t.len + t.direct.total;
    c.tcp += t.direct.tcp;
    c.udp += t.direct.udp;
    c.unix_ += t.direct.unix_;
    for (i = 0; i < PF__TCP_STATES; i++) {
        c.tcp_by_state[i] += t.direct.tcp_by_state[i];
    }
    c.other = c.total - c.tcp - c.udp - c.unix_;
    if (fds != NULL) {
        *fds = t.fds;
    }
    if (out != NULL) {
        *out = c;
    }
    return 0;
}

const char *
pf__tcp_state_name(int state)
{
    static const char *const names[PF__TCP_STATES] = {
        "UNKNOWN",   "ESTABLISHED", "SYN_SENT",     "SYN_RECV",   "FIN_WAIT1",
        "FIN_WAIT2", "TIME_WAIT",   "CLOSE",        "CLOSE_WAIT", "LAST_ACK",
        "LISTEN",    "CLOSING",     "NEW_SYN_RECV",
    };

    if (state < 0 || state >= PF__TCP_STATES) {
        return "UNKNOWN";
    }
    return names[state];
}

/* ---- /proc/meminfo and /proc/stat ---------------------------------------- */

int
pf__proc_meminfo(const char *proc_root, int64_t *total_bytes,
                 int64_t *available_bytes)
{
    reader_t r;
    char *line;
    const char *v;
    bool cut;
    int64_t total = -1;
    int64_t avail = -1;
    int64_t free_ = -1;
    int64_t buffers = -1;
    int64_t cached = -1;
    int64_t *dst;
    int rc;

    if (proc_root == NULL || (total_bytes == NULL && available_bytes == NULL)) {
        return PF_EINVAL;
    }
    rc = reader_open_in(&r, proc_root, "meminfo");
    if (rc != 0) {
        return rc;
    }
    while ((rc = reader_line(&r, &line, &cut)) == 1) {
        dst = NULL;
        if (cut) {
            continue;
        }
        if ((v = after_key(line, "MemTotal:")) != NULL) {
            dst = &total;
        } else if ((v = after_key(line, "MemAvailable:")) != NULL) {
            dst = &avail;
        } else if ((v = after_key(line, "MemFree:")) != NULL) {
            dst = &free_;
        } else if ((v = after_key(line, "Buffers:")) != NULL) {
            dst = &buffers;
        } else if ((v = after_key(line, "Cached:")) != NULL) {
            dst = &cached;
        }
        if (dst != NULL && !parse_kb(v, dst)) {
            rc = PF_EFORMAT;
            break;
        }
    }
    reader_close(&r);
    if (rc < 0) {
        return rc;
    }
    /* Kernels before 3.14 have no MemAvailable: estimate it the way tools
     * did then, from the free and reclaimable page cache. */
    if (avail < 0 && free_ >= 0 && buffers >= 0 && cached >= 0) {
        avail = free_ + buffers + cached;
    }
    if (total < 0 || avail < 0) {
        return PF_EFORMAT;
    }
    if (total_bytes != NULL) {
        *total_bytes = total;
    }
    if (available_bytes != NULL) {
        *available_bytes = avail;
    }
    return 0;
}

int
pf__proc_read_cpu(const char *proc_root, pf__cpu_times_t *out)
{
    reader_t r;
    char *line = NULL;
    bool cut;
    uint64_t v[8] = {0};
    const char *p;
    size_t i;
    int rc;

    if (proc_root == NULL || out == NULL) {
        return PF_EINVAL;
    }
    rc = reader_open_in(&r, proc_root, "stat");
    if (rc != 0) {
        return rc;
    }
    rc = reader_line(&r, &line, &cut);
    if (rc == 1) {
        rc = 0;
        /* "cpu  user nice system idle [iowait irq softirq steal ...]":
         * the first four are always there, the rest came with later
         * kernels and read as 0 when absent. */
        p = after_key(line, "cpu ");
        if (cut || p == NULL) {
            rc = PF_EFORMAT;
        }
        for (i = 0; rc == 0 && i < 8; i++) {
            if (!parse_u64(&p, 10, &v[i])) {
                if (i < 4 || *skip_space(p) != '\0') {
                    rc = PF_EFORMAT;
                }
                break;
            }
        }
    } else if (rc == 0) {
        rc = PF_EFORMAT; /* empty */
    }
    reader_close(&r);
    if (rc != 0) {
        return rc;
    }
    out->user = v[0];
    out->nice = v[1];
    out->system = v[2];
    out->idle = v[3];
    out->iowait = v[4];
    out->irq = v[5];
    out->softirq = v[6];
    out->steal = v[7];
    return 0;
}

static uint64_t
cpu_total(const pf__cpu_times_t *t)
{
    return t->user + t->nice + t->system + t->idle + t->iowait + t->irq +
           t->softirq + t->steal;
}

double
pf__cpu_busy_fraction(const pf__cpu_times_t *before,
                      const pf__cpu_times_t *after)
{
    uint64_t t0;
    uint64_t t1;
    uint64_t i0;
    uint64_t i1;
    double busy;

    if (before == NULL || after == NULL) {
        return 0.0;
    }
    t0 = cpu_total(before);
    t1 = cpu_total(after);
    i0 = before->idle + before->iowait;
    i1 = after->idle + after->iowait;
    /* Counters only grow; readings in the wrong order (or from another
     * boot) give 0 rather than nonsense. */
    if (t1 <= t0 || i1 < i0) {
        return 0.0;
    }
    busy = 1.0 - (double)(i1 - i0) / (double)(t1 - t0);
    if (busy < 0.0) {
        return 0.0;
    }
    return busy > 1.0 ? 1.0 : busy;
}

/* ---- cgroup v2 ----------------------------------------------------------- */

int
pf__cgroup_path(const char *proc_root, int pid, char *buf, size_t len)
{
    reader_t r;
    char *line;
    bool cut;
    bool found = false;
    int rc;

    if (buf == NULL || len == 0) {
        return PF_EINVAL;
    }
    rc = reader_open_pid(&r, proc_root, pid, "cgroup");
    if (rc != 0) {
        return rc;
    }
    while ((rc = reader_line(&r, &line, &cut)) == 1) {
        /* "hierarchy-id:controllers:path"; v2 is "0::path". A path may
         * itself hold ':' characters, so only the first two split. */
        char *c1 = strchr(line, ':');
        char *c2 = c1 == NULL ? NULL : strchr(c1 + 1, ':');
        size_t n;

        if (cut) {
            continue;
        }
        if (c2 == NULL) {
            rc = PF_EFORMAT;
            break;
        }
        if (strncmp(line, "0::", 3) != 0) {
            continue;
        }
        if (c2[1] != '/') {
            rc = PF_EFORMAT;
            break;
        }
        n = strlen(c2 + 1);
        if (n >= len) {
            rc = PF_ERANGE;
            break;
        }
        memcpy(buf, c2 + 1, n + 1);
        found = true;
        break;
    }
    reader_close(&r);
    if (rc < 0) {
        return rc;
    }
    return found ? 0 : PF_ENOTFOUND;
}

/* A file holding one value: a number, or "max" (stored as -1). */
static int
read_max_or_number(const char *path, int64_t *out)
{
    char buf[128];
    char *nl;
    int rc = read_small(path, buf, sizeof(buf));

    if (rc != 0) {
        return rc;
    }
    nl = strchr(buf, '\n');
    if (nl != NULL) {
        *nl = '\0';
    }
    if (strcmp(buf, "max") == 0) {
        *out = -1;
        return 0;
    }
    return parse_i64_token(buf, out) ? 0 : PF_EFORMAT;
}

int
pf__cgroup_memory(const char *cgroup_root, const char *path, int64_t *max_bytes,
                  int64_t *current_bytes)
{
    char file[PATH_LEN];
    int64_t max = 0;
    int64_t cur = 0;
    int rc;

    if (max_bytes == NULL && current_bytes == NULL) {
        return PF_EINVAL;
    }
    if (max_bytes != NULL) {
        rc = cgroup_file(file, sizeof(file), cgroup_root, path, "memory.max");
        if (rc == 0) {
            rc = read_max_or_number(file, &max);
        }
        if (rc != 0) {
            return rc;
        }
    }
    if (current_bytes != NULL) {
        rc = cgroup_file(file, sizeof(file), cgroup_root, path,
                         "memory.current");
        if (rc == 0) {
            rc = read_max_or_number(file, &cur);
        }
        if (rc == 0 && cur < 0) {
            rc = PF_EFORMAT; /* "max" means nothing for a usage */
        }
        if (rc != 0) {
            return rc;
        }
    }
    if (max_bytes != NULL) {
        *max_bytes = max;
    }
    if (current_bytes != NULL) {
        *current_bytes = cur;
    }
    return 0;
}

int
pf__cgroup_cpu_max(const char *cgroup_root, const char *path, int64_t *quota_us,
                   int64_t *period_us)
{
    char file[PATH_LEN];
    char buf[128];
    char *save = NULL;
    char *q;
    char *per;
    int64_t quota;
    int64_t period;
    int rc;

    if (quota_us == NULL || period_us == NULL) {
        return PF_EINVAL;
    }
    rc = cgroup_file(file, sizeof(file), cgroup_root, path, "cpu.max");
    if (rc == 0) {
        rc = read_small(file, buf, sizeof(buf));
    }
    if (rc != 0) {
        return rc;
    }
    /* "$MAX $PERIOD", MAX a number or "max". */
    q = strtok_r(buf, " \t\n", &save);
    per = strtok_r(NULL, " \t\n", &save);
    if (q == NULL || per == NULL || strtok_r(NULL, " \t\n", &save) != NULL) {
        return PF_EFORMAT;
    }
    if (strcmp(q, "max") == 0) {
        quota = -1;
    } else if (!parse_i64_token(q, &quota)) {
        return PF_EFORMAT;
    }
    if (!parse_i64_token(per, &period) || period == 0) {
        return PF_EFORMAT;
    }
    *quota_us = quota;
    *period_us = period;
    return 0;
}

/* The number after "usage_usec " in cpu.stat. */
static int
parse_usage(char *text, void *out)
{
    const char *v = text;

    if (!parse_u64(&v, 10, out) || *skip_space(v) != '\0') {
        return PF_EFORMAT;
    }
    return 0;
}

int
pf__cgroup_cpu_usage(const char *cgroup_root, const char *path,
                     uint64_t *usage_us)
{
    char file[PATH_LEN];
    uint64_t usage = 0;
    int rc;

    if (usage_us == NULL) {
        return PF_EINVAL;
    }
    rc = cgroup_file(file, sizeof(file), cgroup_root, path, "cpu.stat");
    if (rc == 0) {
        rc = parse_keyed_line(file, "usage_usec ", parse_usage, &usage);
    }
    if (rc != 0) {
        return rc;
    }
    *usage_us = usage;
    return 0;
}

int
pf__cgroup_unified_root(const char *cgroup_root, char *buf, size_t len)
{
    char probe[PATH_LEN];
    int n;

    n = snprintf(probe, sizeof(probe), "%s/cgroup.controllers", cgroup_root);
    if (n < 0 || (size_t)n >= sizeof(probe)) {
        return PF_ERANGE;
    }
    if (access(probe, F_OK) == 0) {
        n = snprintf(buf, len, "%s", cgroup_root);
    } else {
        n = snprintf(buf, len, "%s/unified", cgroup_root);
    }
    return n < 0 || (size_t)n >= len ? PF_ERANGE : 0;
}

bool
pf__cgroup_parent(char *path)
{
    char *slash;

    if (strcmp(path, "/") == 0) {
        return false;
    }
    slash = strrchr(path, '/');
    if (slash == path) {
        slash[1] = '\0';
    } else {
        *slash = '\0';
    }
    return true;
}

int
pf__memory_limit(const char *proc_root, const char *cgroup_root,
                 int64_t *limit_bytes)
{
    return pf__memory_limit_of(proc_root, cgroup_root, 0, limit_bytes);
}

int
pf__memory_limit_of(const char *proc_root, const char *cgroup_root, int pid,
                    int64_t *limit_bytes)
{
    char cg[PATH_LEN];
    char root[PATH_LEN];
    int64_t total;
    int64_t limit;
    int rc;

    if (proc_root == NULL || cgroup_root == NULL || limit_bytes == NULL ||
        pid < 0) {
        return PF_EINVAL;
    }
    rc = pf__proc_meminfo(proc_root, &total, NULL);
    if (rc != 0) {
        return rc;
    }
    limit = total;
    rc = pf__cgroup_path(proc_root, pid, cg, sizeof(cg));
    if (rc == PF_ENOTFOUND) {
        *limit_bytes = limit; /* no cgroup v2: the machine's memory */
        return 0;
    }
    if (rc == 0) {
        rc = pf__cgroup_unified_root(cgroup_root, root, sizeof(root));
    }
    if (rc != 0) {
        return rc;
    }
    /* A limit set on any ancestor binds too: take the smallest on the way
     * up to the root. A level with no memory.max file (the root, or a
     * cgroup without the memory controller) sets no limit. */
    do {
        int64_t max;

        rc = pf__cgroup_memory(root, cg, &max, NULL);
        if (rc == 0 && max >= 0 && max < limit) {
            limit = max;
        } else if (rc != 0 && rc != PF_ENOTFOUND) {
            return rc;
        }
    } while (pf__cgroup_parent(cg));
    *limit_bytes = limit;
    return 0;
}
