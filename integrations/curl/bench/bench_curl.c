/* N concurrent GETs through the libcurl client on the reactor, to a local
 * server answering after 100 ms (issue #14; beside the anchors of
 * "Concurrent HTTP calls"). The server is libmicrohttpd in a child
 * process (one epoll thread; each request is suspended and resumed 100 ms
 * later by a timer thread), so the client's CPU is measured alone. For N
 * = 100, 1,000 and 10,000: wall time of the batch (easy handles made,
 * started, all completed), client CPU per call (user + system of this
 * process), and calls that did not end in 200; every call has a 2 s
 * deadline. Each round uses a fresh client (cold connections). Then the
 * floor: the same N GETs over raw non-blocking sockets on one thread
 * (epoll; connect, write the request, read the answer, close), no libcurl
 * and no executor: what the kernel's loopback TCP work alone costs the
 * client per call (skipped with BENCH_NO_FLOOR set). Prints only.
 * Usage: bench_curl [N...] */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "puffinflow/curl.h"
#include "puffinflow/executor.h"

#include "bench_server.h"

/* ---- the client ---------------------------------------------------------- */

typedef bare_figures_t figures_t;

/* ---- the floor: raw sockets, one thread ------------------------------ */

typedef struct raw {
    int fd;
    size_t got;
    bool sent;
    char buf[512];
} raw_t;

/* Whether buf holds a whole answer: headers, then Content-Length bytes. */
static bool
raw_complete(const raw_t *r)
{
    const char *end;
    const char *cl;

    if (r->got == sizeof(r->buf)) {
        return true; /* not ours to parse further */
    }
    end = strstr(r->buf, "\r\n\r\n");
    if (end == NULL) {
        return false;
    }
    cl = strstr(r->buf, "Content-Length: ");
    if (cl == NULL) {
        cl = strstr(r->buf, "content-length: ");
    }
    return cl == NULL ||
           r->got >= (size_t)(end + 4 - r->buf) + (size_t)atol(cl + 16);
}

static figures_t
raw_batch(unsigned port, int n)
{
    static const char req[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                              "Accept: */*\r\n\r\n";
    raw_t *rs = calloc((size_t)n, sizeof(*rs));
    struct epoll_event evs[256];
    struct sockaddr_in sa;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    int left = n;
    figures_t f = {0};
    int64_t t0;
    int64_t c0;
    int i;

    if (rs == NULL || ep < 0) {
        abort();
    }
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    t0 = now_ns();
    c0 = cpu_ns();
    for (i = 0; i < n; i++) {
        struct epoll_event ev;

        rs[i].fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        if (rs[i].fd < 0 ||
            (connect(rs[i].fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 &&
             errno != EINPROGRESS)) {
            abort();
        }
        ev.events = EPOLLOUT;
        ev.data.ptr = &rs[i];
        epoll_ctl(ep, EPOLL_CTL_ADD, rs[i].fd, &ev);
    }
    while (left > 0) {
        int k = epoll_wait(ep, evs, 256, 2000);

        if (k <= 0) {
            f.errors += left; /* stuck: give up */
            break;
        }
        for (i = 0; i < k; i++) {
            raw_t *r = evs[i].data.ptr;
            struct epoll_event ev;
            ssize_t got;

            if (!r->sent) {
                if (write(r->fd, req, sizeof(req) - 1) !=
                    (ssize_t)sizeof(req) - 1) {
                    f.errors++;
                }
                r->sent = true;
                ev.events = EPOLLIN;
                ev.data.ptr = r;
                epoll_ctl(ep, EPOLL_CTL_MOD, r->fd, &ev);
                continue;
            }
            got = read(r->fd, r->buf + r->got, sizeof(r->buf) - 1 - r->got);
            if (got > 0) {
                r->got += (size_t)got;
                r->buf[r->got] = '\0';
            }
            if (got == 0 || (got < 0 && errno != EAGAIN) || raw_complete(r)) {
                if (strncmp(r->buf, "HTTP/1.1 200", 12) != 0) {
                    f.errors++;
                }
                close(r->fd); /* leaves the epoll set */
                left--;
            }
        }
    }
    f.wall_s = (double)(now_ns() - t0) / 1e9;
    f.cpu_us_per_call = (double)(cpu_ns() - c0) / 1e3 / n;
    close(ep);
    free(rs);
    return f;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;

    return x < y ? -1 : x > y;
}

/* The head of a table of print_row rows. */
static void
print_head(void)
{
    printf("%-8s %-28s %-28s %s\n", "N", "wall s (min/median/max)",
           "CPU us/call (median)", "errors (total of 3)");
}

/* Print the row of N from its 3 rounds: wall min/median/max, median CPU
 * per call, errors in all. */
static void
print_row(int n, const figures_t f[3])
{
    double wall[3];
    double cpu[3];
    int errors = 0;
    int r;

    for (r = 0; r < 3; r++) {
        wall[r] = f[r].wall_s;
        cpu[r] = f[r].cpu_us_per_call;
        errors += f[r].errors;
    }
    qsort(wall, 3, sizeof(double), cmp_double);
    qsort(cpu, 3, sizeof(double), cmp_double);
    printf("%-8d %.3f / %.3f / %.3f        %-28.1f %d\n", n, wall[0],
           wall[1], wall[2], cpu[1], errors);
    fflush(stdout);
}

int
main(int argc, char **argv)
{
    static const int def_n[] = {100, 1000, 10000};
    int to_server[2];
    int from_server[2];
    pf_executor_config_t ecfg;
    pf_executor_t *ex;
    char url[64];
    unsigned port;
    pid_t pid;
    int k;
    int count = argc > 1 ? argc - 1 : 3;

    signal(SIGPIPE, SIG_IGN);
    if (pipe(to_server) != 0 || pipe(from_server) != 0) {
        return 1;
    }
    pid = fork();
    if (pid == 0) {
        close(to_server[1]);
        close(from_server[0]);
        server_main(from_server[1], to_server[0]);
    }
    close(to_server[0]);
    close(from_server[1]);
    if (read(from_server[0], &port, sizeof(port)) != sizeof(port)) {
        return 1;
    }
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/", port);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    pf_executor_config_init(&ecfg);
    ecfg.workers = 2;
    if (pf_executor_new(&ecfg, &ex) != 0) {
        return 1;
    }
    printf("# N concurrent GETs, server answers after 100 ms "
           "(libmicrohttpd, 1 epoll thread, separate process); client: "
           "executor with 2 workers, libcurl %s, client max_transfers %ld; "
           "2 s deadline per call; 3 rounds, fresh client each\n",
           curl_version_info(CURLVERSION_NOW)->version,
           bench_max_transfers());
    print_head();
    for (k = 0; k < count; k++) {
        int n = argc > 1 ? atoi(argv[k + 1]) : def_n[k];
        figures_t f[3];
        int r;

        for (r = 0; r < 3; r++) {
            f[r] = bench_bare_batch(ex, url, n);
        }
        print_row(n, f);
    }
    if (getenv("BENCH_NO_FLOOR") != NULL) {
        count = 0; /* the client's figures alone (perf stat) */
    }
    if (count > 0) {
        printf("\n# the floor: the same GETs over raw non-blocking sockets "
               "on one thread (epoll; connect, write, read, close), no "
               "libcurl, no executor; 3 rounds\n");
        print_head();
    }
    for (k = 0; k < count; k++) {
        int n = argc > 1 ? atoi(argv[k + 1]) : def_n[k];
        figures_t f[3];
        int r;

        for (r = 0; r < 3; r++) {
            f[r] = raw_batch(port, n);
        }
        print_row(n, f);
    }
    pf_executor_free(ex);
    close(to_server[1]);
    waitpid(pid, NULL, 0);
    curl_global_cleanup();
    return 0;
}
