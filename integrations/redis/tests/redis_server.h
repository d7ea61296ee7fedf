/* A real redis-server on loopback for the Redis store's tests and bench:
 * started in a temporary folder (no persistence) on a free port, stopped,
 * restarted empty on the same port, frozen (SIGSTOP) and thawed; and the
 * helper processes the tests fork and exec. Plain C, no test framework:
 * functions return 0 or -1. */
#ifndef PF_REDIS_SERVER_H
#define PF_REDIS_SERVER_H

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

typedef struct rs_server {
    char dir[64];
    char bin[128]; /* <dir>/redis-server, a link to the real binary */
    int port;
    pid_t pid;
    const char *extra[6]; /* more server arguments, NULL-terminated */
} rs_server_t;

static inline int64_t
rs_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline void
rs_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* A loopback port nothing listens on now. */
static inline int
rs_free_port(void)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int port = -1;

    if (fd < 0) {
        return -1;
    }
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0) {
        port = ntohs(a.sin_port);
    }
    close(fd);
    return port;
}

/* A synchronous connection for checks (1 s timeouts), or NULL. */
static inline redisContext *
rs_connect(const rs_server_t *s)
{
    struct timeval tv = {1, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", s->port, tv);

    if (c == NULL || c->err != 0) {
        if (c != NULL) {
            redisFree(c);
        }
        return NULL;
    }
    redisSetTimeout(c, tv);
    return c;
}

/* True when the server answers PING (or, with a password set, asks for
 * it: it is up). */
static inline int
rs_ping(const rs_server_t *s)
{
    redisContext *c = rs_connect(s);
    redisReply *rep;
    int ok;

    if (c == NULL) {
        return 0;
    }
    rep = redisCommand(c, "PING");
    ok = rep != NULL && ((rep->type == REDIS_REPLY_STATUS &&
                          strcmp(rep->str, "PONG") == 0) ||
                         (rep->type == REDIS_REPLY_ERROR &&
                          strncmp(rep->str, "NOAUTH", 6) == 0));
    if (rep != NULL) {
        freeReplyObject(rep);
    }
    redisFree(c);
    return ok;
}

/* Start the server (s->port and s->dir set) and wait up to 10 s for it to
 * answer. */
static inline int
rs_launch(rs_server_t *s)
{
    char port[16];
    int64_t until;

    snprintf(port, sizeof(port), "%d", s->port);
    s->pid = fork();
    if (s->pid < 0) {
        return -1;
    }
    if (s->pid == 0) {
        int null = open("/dev/null", O_WRONLY);

        /* Never outlive the test (a failed or killed test leaves no
         * server behind holding its output pipe). */
        prctl(PR_SET_PDEATHSIG, SIGKILL);

        if (null >= 0) {
            dup2(null, 1);
        }
        const char *argv[32] = {"redis-server", "--port", port, "--bind",
                                "127.0.0.1", "--save", "", "--appendonly",
                                "no", "--dir", s->dir, "--loglevel",
                                "warning"};
        int n = 13;

        for (int i = 0; i < 6 && s->extra[i] != NULL; i++) {
            argv[n++] = s->extra[i];
        }
        argv[n] = NULL;
        execv(s->bin, (char *const *)argv);
        _exit(127);
    }
    until = rs_now_ns() + INT64_C(10000000000);
    while (rs_now_ns() < until) {
        int status;

        if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
            fprintf(stderr, "redis-server exited at start (%d)\n", status);
            s->pid = 0;
            return -1;
        }
        if (rs_ping(s)) {
            return 0;
        }
        rs_sleep_ms(10);
    }
    return -1;
}

/* Make the folder, link the binary ($PF_REDIS_SERVER, else the default
 * given) under the name redis-server, pick a port, start (with s->extra,
 * set before, as more arguments). */
static inline int
rs_start(rs_server_t *s, const char *default_bin)
{
    const char *bin = getenv("PF_REDIS_SERVER");
    const char *extra[6];

    if (bin == NULL || bin[0] == '\0') {
        bin = default_bin;
    }
    memcpy(extra, s->extra, sizeof(extra));
    memset(s, 0, sizeof(*s));
    memcpy(s->extra, extra, sizeof(extra));
    strcpy(s->dir, "/tmp/pf_redis_XXXXXX");
    if (bin == NULL || access(bin, X_OK) != 0) {
        fprintf(stderr, "no redis-server binary (%s): install redis-tools\n",
                bin != NULL ? bin : "unset");
        return -1;
    }
    if (mkdtemp(s->dir) == NULL) {
        return -1;
    }
    snprintf(s->bin, sizeof(s->bin), "%s/redis-server", s->dir);
    if (symlink(bin, s->bin) != 0) {
        return -1;
    }
    s->port = rs_free_port();
    return s->port > 0 ? rs_launch(s) : -1;
}

/* SIGKILL the server and reap it. */
static inline void
rs_kill(rs_server_t *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
        s->pid = 0;
    }
}

/* Kill it and start it again, empty, on the same port. */
static inline int
rs_restart(rs_server_t *s)
{
    rs_kill(s);
    return rs_launch(s);
}

/* Stop the server for good and remove its folder. */
static inline void
rs_stop(rs_server_t *s)
{
    char cmd[160];

    if (s->pid > 0) {
        kill(s->pid, SIGCONT);
    }
    rs_kill(s);
    if (s->dir[0] != '\0' && strncmp(s->dir, "/tmp/pf_redis_", 14) == 0) {
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", s->dir);
        if (system(cmd) != 0) {
            fprintf(stderr, "could not remove %s\n", s->dir);
        }
    }
}

/* An integer field of a hash (HGET), or def when missing. */
static inline long long
rs_hget_int(const rs_server_t *s, const char *key, const char *field,
            long long def)
{
    redisContext *c = rs_connect(s);
    redisReply *rep;
    long long v = def;

    if (c == NULL) {
        return def;
    }
    rep = redisCommand(c, "HGET %s %s", key, field);
    if (rep != NULL && rep->type == REDIS_REPLY_STRING) {
        v = strtoll(rep->str, NULL, 10);
    }
    if (rep != NULL) {
        freeReplyObject(rep);
    }
    redisFree(c);
    return v;
}

/* ---- helper processes: fork + exec, lines on a pipe ------------------ */

typedef struct rs_child {
    pid_t pid;
    FILE *out; /* its stdout */
    FILE *in;  /* its stdin */
} rs_child_t;

/* Run argv (argv[0] the program) with pipes on stdin and stdout. */
static inline int
rs_spawn(rs_child_t *ch, char *const argv[])
{
    int to[2];
    int from[2];

    if (pipe(to) != 0 || pipe(from) != 0) {
        return -1;
    }
    fflush(NULL);
    ch->pid = fork();
    if (ch->pid < 0) {
        return -1;
    }
    if (ch->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(to[0], 0);
        dup2(from[1], 1);
        close(to[0]);
        close(to[1]);
        close(from[0]);
        close(from[1]);
        execv(argv[0], argv);
        _exit(127);
    }
    close(to[0]);
    close(from[1]);
    ch->out = fdopen(from[0], "r");
    ch->in = fdopen(to[1], "w");
    return ch->out != NULL && ch->in != NULL ? 0 : -1;
}

/* The child's next line (without the newline) into buf; -1 at EOF. The
 * helpers bound every wait of theirs, so this never blocks for ever. */
static inline int
rs_line(rs_child_t *ch, char *buf, size_t len)
{
    size_t n;

    if (fgets(buf, (int)len, ch->out) == NULL) {
        return -1;
    }
    n = strlen(buf);
    if (n > 0 && buf[n - 1] == '\n') {
        buf[n - 1] = '\0';
    }
    return 0;
}

static inline void
rs_say(rs_child_t *ch, const char *line)
{
    fprintf(ch->in, "%s\n", line);
    fflush(ch->in);
}

/* Reap the child; its exit status, or -1 when it did not exit normally. */
static inline int
rs_reap(rs_child_t *ch)
{
    int status = 0;

    if (ch->out != NULL) {
        fclose(ch->out);
    }
    if (ch->in != NULL) {
        fclose(ch->in);
    }
    if (waitpid(ch->pid, &status, 0) != ch->pid || !WIFEXITED(status)) {
        return -1;
    }
    return WEXITSTATUS(status);
}

#endif /* PF_REDIS_SERVER_H */
