/* The built-in health checks: memory and file descriptor use on fixture
 * files (tests/fixtures/degrade), a TCP connect against listeners this
 * test opens on 127.0.0.1, a circuit breaker's state, and a command's exit
 * status. */
#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "puffinflow/breaker.h"
#include "puffinflow/health.h"
#include "proc_testutil.h"
#include "test.h"

/* ---- helpers ---------------------------------------------------------- */

static char g_proc[4096];
static char g_cgroup[4096];

/* Point g_proc / g_cgroup at fixture set `set` (host, limited, ...). */
static void
fixture(const char *set)
{
    const char *root = getenv("PF_FIXTURES");

    if (root == NULL) {
        fail_msg("PF_FIXTURES is not set (run through ctest)");
    }
    snprintf(g_proc, sizeof(g_proc), "%s/degrade/%s/proc", root, set);
    snprintf(g_cgroup, sizeof(g_cgroup), "%s/degrade/%s/cgroup", root, set);
}

static pf_health_checker_t *
new_checker(pf_clock_t *clock)
{
    pf_health_config_t cfg;
    pf_health_checker_t *hc = NULL;

    pf_health_config_init(&cfg);
    cfg.clock = clock;
    assert_pf_ok(pf_health_checker_new(&cfg, &hc));
    return hc;
}

/* Run hc's one check called name; its status, and its message in msg. */
static pf_health_status_t
run_one(pf_health_checker_t *hc, const char *name, char *msg, size_t len)
{
    pf_health_report_t *r;
    const pf_health_entry_t *e;
    pf_health_status_t s;

    assert_pf_ok(pf_health_check_one(hc, name, &r));
    e = pf_health_report_entry(r, 0);
    s = e->status;
    snprintf(msg, len, "%s", e->message);
    pf_health_report_free(r);
    return s;
}

static pf_health_status_t
memory_status(pf_clock_t *clock, const char *set, bool process,
              double degraded, double unhealthy, char *msg, size_t len)
{
    pf_health_checker_t *hc = new_checker(clock);
    pf_health_memory_opts_t m;
    pf_health_status_t s;

    fixture(set);
    pf_health_memory_opts_init(&m);
    m.proc_root = g_proc;
    m.cgroup_root = g_cgroup;
    m.measure_process = process;
    m.degraded_percent = degraded;
    m.unhealthy_percent = unhealthy;
    assert_pf_ok(pf_health_add_memory_check(hc, "memory_usage", &m, NULL));
    s = run_one(hc, "memory_usage", msg, len);
    pf_health_checker_free(hc);
    return s;
}

/* ---- memory ----------------------------------------------------------- */

static void
test_health_memory_opts_init_sets_documented_defaults(void **state)
{
    pf_health_memory_opts_t m;
    pf_health_fd_opts_t f;
    pf_health_tcp_opts_t t;
    pf_health_command_opts_t c;

    (void)state;
    pf_health_memory_opts_init(&m);
    assert_true(m.degraded_percent == 80.0);
    assert_true(m.unhealthy_percent == 90.0);
    assert_false(m.measure_process);
    assert_null(m.proc_root);
    assert_null(m.cgroup_root);
    pf_health_fd_opts_init(&f);
    assert_true(f.degraded_percent == 80.0);
    assert_true(f.unhealthy_percent == 90.0);
    pf_health_tcp_opts_init(&t);
    assert_null(t.host);
    assert_true(t.connect_timeout == 0.0);
    pf_health_command_opts_init(&c);
    assert_null(c.argv);
    assert_true(c.timeout == 0.0);
    assert_int_equal(c.degraded_exit, -1);
    assert_true(c.kill_grace == 0.5);
}

static void
test_health_memory_without_cgroup_uses_the_machine_figure(void **state)
{
    char msg[PF_HEALTH_MESSAGE_MAX];

    /* MemTotal 8 GiB, MemAvailable 2 GiB: 75 % in use. */
    assert_int_equal(memory_status(*state, "host", false, 80, 90, msg,
                                   sizeof(msg)),
                     PF_HEALTHY);
    assert_string_equal(msg, "Memory usage: 75.0% (6.0 GiB of 8.0 GiB)");
    assert_int_equal(memory_status(*state, "host", false, 70, 90, msg,
                                   sizeof(msg)),
                     PF_DEGRADED);
    assert_int_equal(memory_status(*state, "host", false, 60, 70, msg,
                                   sizeof(msg)),
                     PF_UNHEALTHY);
    /* Exactly at a threshold is not above it. */
    assert_int_equal(memory_status(*state, "host", false, 75, 90, msg,
                                   sizeof(msg)),
                     PF_HEALTHY);
}

static void
test_health_memory_uses_the_nearest_cgroup_limit(void **state)
{
    char msg[PF_HEALTH_MESSAGE_MAX];

    /* The machine is 93.75 % used, but the process's cgroup (1 GiB, 85 %
     * used) and its parent (4 GiB, 50 %) bind: the fuller one counts. */
    assert_int_equal(memory_status(*state, "limited", false, 80, 90, msg,
                                   sizeof(msg)),
                     PF_DEGRADED);
    assert_string_equal(msg, "Memory usage: 85.0% (870.4 MiB of 1.0 GiB)");
    /* A v2 hierarchy under unified/ (hybrid mounts): 256 of 512 MiB. */
    assert_int_equal(memory_status(*state, "hybrid", false, 80, 90, msg,
                                   sizeof(msg)),
                     PF_HEALTHY);
    assert_string_equal(msg, "Memory usage: 50.0% (256.0 MiB of 512.0 MiB)");
    /* memory.max "max": no limit, the machine's figure. */
    assert_int_equal(memory_status(*state, "unlimited", false, 80, 90, msg,
                                   sizeof(msg)),
                     PF_HEALTHY);
    assert_string_equal(msg, "Memory usage: 75.0% (6.0 GiB of 8.0 GiB)");
}

static void
test_health_memory_of_the_process_is_its_rss_against_its_limit(void **state)
{
    char msg[PF_HEALTH_MESSAGE_MAX];

    assert_int_equal(memory_status(*state, "limited", true, 20, 90, msg,
                                   sizeof(msg)),
                     PF_DEGRADED);
    assert_string_equal(
        msg, "Memory usage: 25.0% (256.0 MiB of 1.0 GiB, this process)");
    assert_int_equal(memory_status(*state, "host", true, 80, 90, msg,
                                   sizeof(msg)),
                     PF_HEALTHY);
    assert_string_equal(
        msg, "Memory usage: 6.2% (512.0 MiB of 8.0 GiB, this process)");
}

static void
test_health_memory_unreadable_files_are_unhealthy(void **state)
{
    char msg[PF_HEALTH_MESSAGE_MAX];

    assert_int_equal(memory_status(*state, "bad", false, 80, 90, msg,
                                   sizeof(msg)),
                     PF_UNHEALTHY);
    assert_string_equal(msg, "cannot read memory usage: malformed input");
    assert_int_equal(memory_status(*state, "missing", false, 80, 90, msg,
                                   sizeof(msg)),
                     PF_UNHEALTHY);
    assert_non_null(strstr(msg, "cannot read memory usage"));
}

static void
test_health_memory_on_this_machine_gives_a_figure(void **state)
{
    pf_health_checker_t *hc = new_checker(*state);
    char msg[PF_HEALTH_MESSAGE_MAX];

    assert_pf_ok(pf_health_add_memory_check(hc, "mem", NULL, NULL));
    run_one(hc, "mem", msg, sizeof(msg));
    assert_true(strncmp(msg, "Memory usage: ", 14) == 0);
    pf_health_checker_free(hc);
}

static void
test_health_memory_rejects_thresholds_out_of_range(void **state)
{
    pf_health_checker_t *hc = new_checker(*state);
    pf_health_memory_opts_t m;
    pf_health_fd_opts_t f;
    static const double bad[][2] = {
        {0, 90}, {-5, 90}, {80, 101}, {101, 101}, {90, 80}, {NAN, 90},
        {80, NAN},
    };
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        pf_health_memory_opts_init(&m);
        m.degraded_percent = bad[i][0];
        m.unhealthy_percent = bad[i][1];
        assert_pf_err(pf_health_add_memory_check(hc, "m", &m, NULL),
                      PF_EINVAL);
        pf_health_fd_opts_init(&f);
        f.degraded_percent = bad[i][0];
        f.unhealthy_percent = bad[i][1];
        assert_pf_err(pf_health_add_fd_check(hc, "f", &f, NULL), PF_EINVAL);
    }
    assert_pf_err(pf_health_add_memory_check(hc, NULL, NULL, NULL),
                  PF_EINVAL);
    assert_pf_ok(pf_health_add_memory_check(hc, "m", NULL, NULL));
    assert_pf_err(pf_health_add_memory_check(hc, "m", NULL, NULL),
                  PF_EINVAL); /* the name is taken */
    assert_int_equal(pf_health_check_count(hc), 1);
    pf_health_checker_free(hc);
}

/* ---- file descriptors ------------------------------------------------- */

static void
test_health_fd_use_is_judged_against_the_soft_limit(void **state)
{
    pf_health_checker_t *hc = new_checker(*state);
    pf_health_fd_opts_t f;
    char msg[PF_HEALTH_MESSAGE_MAX];

    fixture("host"); /* 17 descriptors, "Max open files" 20 */
    pf_health_fd_opts_init(&f);
    f.proc_root = g_proc;
    assert_pf_ok(pf_health_add_fd_check(hc, "fds", &f, NULL));
    assert_int_equal(run_one(hc, "fds", msg, sizeof(msg)), PF_DEGRADED);
    assert_string_equal(msg, "17 of 20 file descriptors open (85.0%)");
    pf_health_checker_free(hc);

    hc = new_checker(*state);
    f.degraded_percent = 50;
    f.unhealthy_percent = 80;
    assert_pf_ok(pf_health_add_fd_check(hc, "fds", &f, NULL));
    assert_int_equal(run_one(hc, "fds", msg, sizeof(msg)), PF_UNHEALTHY);
    pf_health_checker_free(hc);

    hc = new_checker(*state);
    assert_pf_ok(pf_health_add_fd_check(hc, "real", NULL, NULL));
    run_one(hc, "real", msg, sizeof(msg));
    assert_non_null(strstr(msg, "file descriptors open"));
    pf_health_checker_free(hc);
}

/* ---- TCP -------------------------------------------------------------- */

/* A listening socket on 127.0.0.1 with a port the kernel picked. */
static int
listen_local(unsigned *port)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 8), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static void
test_health_tcp_connect_is_healthy_when_something_listens(void **state)
{
    pf_health_checker_t *hc = new_checker(*state);
    pf_health_tcp_opts_t t;
    char msg[PF_HEALTH_MESSAGE_MAX];
    char want[64];
    unsigned port;
    int fd = listen_local(&port);

    pf_health_tcp_opts_init(&t);
    t.host = "127.0.0.1";
    t.port = port;
    t.connect_timeout = 10.0;
    assert_pf_ok(pf_health_add_tcp_check(hc, "listener", &t, NULL));
    assert_int_equal(run_one(hc, "listener", msg, sizeof(msg)), PF_HEALTHY);
    snprintf(want, sizeof(want), "connected to 127.0.0.1:%u in ", port);
    assert_true(strncmp(msg, want, strlen(want)) == 0);
    close(fd);
    pf_health_checker_free(hc);
}

static void
test_health_tcp_connect_is_unhealthy_when_refused(void **state)
{
    pf_health_checker_t *hc = new_checker(*state);
    pf_health_tcp_opts_t t;
    char msg[PF_HEALTH_MESSAGE_MAX];
    unsigned port;
    int fd = listen_local(&port);

    close(fd); /* nothing listens on that port any more */
    pf_health_tcp_opts_init(&t);
    t.host = "127.0.0.1";
    t.port = port;
    assert_pf_ok(pf_health_add_tcp_check(hc, "closed", &t, NULL));
    assert_int_equal(run_one(hc, "closed", msg, sizeof(msg)), PF_UNHEALTHY);
    assert_non_null(strstr(msg, "Connection refused"));
    pf_health_checker_free(hc);
}

static void
test_health_tcp_check_rejects_bad_options(void **state)
{
    pf_health_checker_t *hc = new_checker(*state);
    pf_health_tcp_opts_t t;

    assert_pf_err(pf_health_add_tcp_check(hc, "t", NULL, NULL), PF_EINVAL);
    pf_health_tcp_opts_init(&t);
    t.port = 80;
    assert_pf_err(pf_health_add_tcp_check(hc, "t", &t, NULL), PF_EINVAL);
    t.host = "";
    assert_pf_err(pf_health_add_tcp_check(hc, "t", &t, NULL), PF_EINVAL);
    t.host = "127.0.0.1";
    t.port = 0;
    assert_pf_err(pf_health_add_tcp_check(hc, "t", &t, NULL), PF_EINVAL);
    t.port = 65536;
    assert_pf_err(pf_health_add_tcp_check(hc, "t", &t, NULL), PF_EINVAL);
    t.port = 80;
    t.connect_timeout = -1.0;
    assert_pf_err(pf_health_add_tcp_check(hc, "t", &t, NULL), PF_EINVAL);
    t.connect_timeout = NAN;
    assert_pf_err(pf_health_add_tcp_check(hc, "t", &t, NULL), PF_EINVAL);
    assert_int_equal(pf_health_check_count(hc), 0);
    pf_health_checker_free(hc);
}

/* ---- breaker ---------------------------------------------------------- */

static void
test_health_breaker_check_follows_the_breaker_state(void **state)
{
    pf_clock_t *clock = *state;
    pf_health_checker_t *hc = new_checker(clock);
    pf_breaker_config_t cfg;
    pf_breaker_t *b;
    pf_permit_t p;
    char msg[PF_HEALTH_MESSAGE_MAX];

    pf_breaker_config_init(&cfg);
    cfg.name = "payments";
    cfg.failure_threshold = 1;
    cfg.recovery_timeout = 30.0;
    cfg.clock = clock;
    assert_pf_ok(pf_breaker_new(&cfg, &b));
    assert_pf_ok(pf_health_add_breaker_check(hc, "payments_api", b, NULL));
    assert_int_equal(run_one(hc, "payments_api", msg, sizeof(msg)),
                     PF_HEALTHY);
    assert_string_equal(msg, "circuit breaker payments is closed");

    assert_pf_ok(pf_breaker_acquire(b, &p));
    pf_breaker_record(b, &p, -1); /* one failure opens it */
    assert_int_equal(run_one(hc, "payments_api", msg, sizeof(msg)),
                     PF_UNHEALTHY);
    assert_string_equal(msg, "circuit breaker payments is open");

    pf_clock_manual_advance(clock, 30 * NS_PER_SEC);
    assert_pf_ok(pf_breaker_acquire(b, &p)); /* a half-open trial */
    assert_int_equal(run_one(hc, "payments_api", msg, sizeof(msg)),
                     PF_DEGRADED);
    pf_breaker_record(b, &p, 0);

    assert_pf_err(pf_health_add_breaker_check(hc, "none", NULL, NULL),
                  PF_EINVAL);
    pf_health_checker_free(hc);
    pf_breaker_free(b);
}

/* ---- command ---------------------------------------------------------- */

static pf_health_status_t
command_status(pf_clock_t *clock, const char *const *argv, double timeout,
               int degraded_exit, char *msg, size_t len)
{
    pf_health_checker_t *hc = new_checker(clock);
    pf_health_command_opts_t c;
    pf_health_status_t s;

    pf_health_command_opts_init(&c);
    c.argv = argv;
    c.timeout = timeout;
    c.degraded_exit = degraded_exit;
    assert_pf_ok(pf_health_add_command_check(hc, "cmd", &c, NULL));
    s = run_one(hc, "cmd", msg, len);
    pf_health_checker_free(hc);
    return s;
}

static void
test_health_command_exit_status_decides(void **state)
{
    static const char *const ok[] = {"true", NULL};
    static const char *const fails[] = {"false", NULL};
    static const char *const three[] = {"sh", "-c", "exit 3", NULL};
    static const char *const noisy[] = {"sh", "-c", "echo out; echo err >&2",
                                        NULL};
    char msg[PF_HEALTH_MESSAGE_MAX];

    assert_int_equal(command_status(*state, ok, 0, -1, msg, sizeof(msg)),
                     PF_HEALTHY);
    assert_string_equal(msg, "true: exit status 0");
    assert_int_equal(command_status(*state, fails, 0, -1, msg, sizeof(msg)),
                     PF_UNHEALTHY);
    assert_string_equal(msg, "false: exit status 1");
    assert_int_equal(command_status(*state, fails, 0, 1, msg, sizeof(msg)),
                     PF_DEGRADED);
    assert_int_equal(command_status(*state, three, 0, 1, msg, sizeof(msg)),
                     PF_UNHEALTHY);
    assert_string_equal(msg, "sh: exit status 3");
    assert_int_equal(command_status(*state, noisy, 0, -1, msg, sizeof(msg)),
                     PF_HEALTHY);
}

static void
test_health_command_is_killed_at_its_timeout(void **state)
{
    static const char *const sleeps[] = {"sleep", "30", NULL};
    char msg[PF_HEALTH_MESSAGE_MAX];

    /* The command runs for real, so its timeout is real time; the test
     * asserts what happens at the timeout, not how long it took. */
    assert_int_equal(command_status(*state, sleeps, 0.05, -1, msg,
                                    sizeof(msg)),
                     PF_UNHEALTHY);
    assert_string_equal(msg, "sleep timed out after 0.05 s (killed)");
}

/* A scratch directory whose file "pids" a command appends the process
 * ids it starts to, so the test can look for them afterwards. */
typedef struct pid_log {
    char dir[64];
    char file[96];
} pid_log_t;

static void
pid_log_make(pid_log_t *l)
{
    snprintf(l->dir, sizeof(l->dir), "/tmp/pf_health_XXXXXX");
    assert_non_null(mkdtemp(l->dir));
    snprintf(l->file, sizeof(l->file), "%s/pids", l->dir);
}

/* Read up to max pids from l's file; how many there were. */
static size_t
pid_log_read(const pid_log_t *l, pid_t *pids, size_t max)
{
    FILE *f = fopen(l->file, "r");
    size_t n = 0;
    int pid;

    assert_non_null(f);
    while (n < max && fscanf(f, "%d", &pid) == 1) {
        pids[n++] = (pid_t)pid;
    }
    fclose(f);
    return n;
}

static void
pid_log_remove(const pid_log_t *l)
{
    unlink(l->file);
    rmdir(l->dir);
}

/* How many of pids still run. A process that was sent SIGKILL needs a
 * moment of CPU to exit, so this waits (up to 10 s of real time) for them
 * to go; a process that was never killed stays. Those still running are
 * then killed, so a failing test leaves nothing behind either. */
static size_t
count_running(const pid_t *pids, size_t n)
{
    size_t running = n;
    size_t i;
    int tries;

    for (tries = 0; tries < 1000 && running > 0; tries++) {
        struct timespec nap = {0, 10000000};

        running = 0;
        for (i = 0; i < n; i++) {
            running += process_runs(pids[i]) ? 1 : 0;
        }
        if (running > 0) {
            nanosleep(&nap, NULL);
        }
    }
    for (i = 0; i < n; i++) {
        if (process_runs(pids[i])) {
            kill(pids[i], SIGKILL);
        }
    }
    return running;
}

static pf_health_status_t
command_status_grace(pf_clock_t *clock, const char *const *argv, double timeout,
                     double grace, char *msg, size_t len)
{
    pf_health_checker_t *hc = new_checker(clock);
    pf_health_command_opts_t c;
    pf_health_status_t s;

    pf_health_command_opts_init(&c);
    c.argv = argv;
    c.timeout = timeout;
    c.kill_grace = grace;
    assert_pf_ok(pf_health_add_command_check(hc, "cmd", &c, NULL));
    s = run_one(hc, "cmd", msg, len);
    pf_health_checker_free(hc);
    return s;
}

static void
test_health_command_timeout_ends_its_whole_process_group(void **state)
{
    char msg[PF_HEALTH_MESSAGE_MAX];
    char script[512];
    const char *argv[] = {"sh", "-c", script, NULL};
    pid_log_t log;
    pid_t pids[4];
    size_t n;

    /* The shell and both sleeps ignore SIGTERM, so only SIGKILL sent to
     * the whole group ends them. 0.5 s leaves the shell ample time to
     * start both sleeps before the timeout. */
    pid_log_make(&log);
    snprintf(script, sizeof(script),
             "trap '' TERM; sleep 100 & echo $! >> %s; "
             "sleep 100 & echo $! >> %s; wait",
             log.file, log.file);
    assert_int_equal(
        command_status_grace(*state, argv, 0.5, 0.05, msg, sizeof(msg)),
        PF_UNHEALTHY);
    assert_string_equal(msg, "sh timed out after 0.5 s (killed)");
    n = pid_log_read(&log, pids, 4);
    pid_log_remove(&log);
    assert_int_equal(n, 2);
    assert_int_equal(count_running(pids, n), 0);
}

static void
test_health_command_leftovers_are_ended_when_it_exits(void **state)
{
    char msg[PF_HEALTH_MESSAGE_MAX];
    char script[512];
    const char *argv[] = {"sh", "-c", script, NULL};
    pid_log_t log;
    pid_t pids[4];
    size_t n;

    pid_log_make(&log);
    snprintf(script, sizeof(script),
             "trap '' TERM; sleep 100 & echo $! >> %s; exit 0", log.file);
    assert_int_equal(
        command_status_grace(*state, argv, 10.0, 0.05, msg, sizeof(msg)),
        PF_HEALTHY);
    assert_string_equal(msg, "sh: exit status 0");
    n = pid_log_read(&log, pids, 4);
    pid_log_remove(&log);
    assert_int_equal(n, 1);
    assert_int_equal(count_running(pids, n), 0);
}

static void
test_health_command_that_cannot_run_is_unhealthy(void **state)
{
    static const char *const missing[] = {"pf-no-such-program-here", NULL};
    static const char *const killed[] = {"sh", "-c", "kill -9 $$", NULL};
    char msg[PF_HEALTH_MESSAGE_MAX];

    assert_int_equal(command_status(*state, missing, 0, -1, msg, sizeof(msg)),
                     PF_UNHEALTHY);
    assert_non_null(strstr(msg, "pf-no-such-program-here"));
    assert_int_equal(command_status(*state, killed, 0, -1, msg, sizeof(msg)),
                     PF_UNHEALTHY);
    assert_string_equal(msg, "sh: killed by signal 9");
}

static void
test_health_command_check_rejects_bad_options(void **state)
{
    pf_health_checker_t *hc = new_checker(*state);
    pf_health_command_opts_t c;
    static const char *const empty[] = {"", NULL};
    static const char *const none[] = {NULL};
    static const char *const ok[] = {"true", NULL};

    assert_pf_err(pf_health_add_command_check(hc, "c", NULL, NULL),
                  PF_EINVAL);
    pf_health_command_opts_init(&c);
    assert_pf_err(pf_health_add_command_check(hc, "c", &c, NULL), PF_EINVAL);
    c.argv = none;
    assert_pf_err(pf_health_add_command_check(hc, "c", &c, NULL), PF_EINVAL);
    c.argv = empty;
    assert_pf_err(pf_health_add_command_check(hc, "c", &c, NULL), PF_EINVAL);
    c.argv = ok;
    c.timeout = -1;
    assert_pf_err(pf_health_add_command_check(hc, "c", &c, NULL), PF_EINVAL);
    c.timeout = 0;
    c.kill_grace = -1;
    assert_pf_err(pf_health_add_command_check(hc, "c", &c, NULL), PF_EINVAL);
    c.kill_grace = NAN;
    assert_pf_err(pf_health_add_command_check(hc, "c", &c, NULL), PF_EINVAL);
    c.kill_grace = INFINITY;
    assert_pf_err(pf_health_add_command_check(hc, "c", &c, NULL), PF_EINVAL);
    c.kill_grace = 0;
    c.degraded_exit = 0;
    assert_pf_err(pf_health_add_command_check(hc, "c", &c, NULL), PF_EINVAL);
    c.degraded_exit = 256;
    assert_pf_err(pf_health_add_command_check(hc, "c", &c, NULL), PF_EINVAL);
    c.degraded_exit = 2;
    assert_pf_ok(pf_health_add_command_check(hc, "c", &c, NULL));
    pf_health_checker_free(hc);
}

/* ---- allocation failure ----------------------------------------------- */

static void
sweep_scenario(void *arg)
{
    pf_health_checker_t *hc;
    pf_health_command_opts_t c;
    pf_health_tcp_opts_t t;
    pf_health_memory_opts_t m;
    static const char *const argv[] = {"true", NULL};
    int rc;

    rc = pf_health_checker_new(NULL, &hc);
    if (rc != 0) {
        assert_pf_err(rc, PF_ENOMEM);
        return;
    }
    (void)arg;
    fixture("host");
    pf_health_memory_opts_init(&m);
    m.proc_root = g_proc;
    m.cgroup_root = g_cgroup;
    rc = pf_health_add_memory_check(hc, "mem", &m, NULL);
    assert_true(rc == 0 || rc == PF_ENOMEM);
    rc = pf_health_add_fd_check(hc, "fd", NULL, NULL);
    assert_true(rc == 0 || rc == PF_ENOMEM);
    pf_health_tcp_opts_init(&t);
    t.host = "127.0.0.1";
    t.port = 9;
    rc = pf_health_add_tcp_check(hc, "tcp", &t, NULL);
    assert_true(rc == 0 || rc == PF_ENOMEM);
    pf_health_command_opts_init(&c);
    c.argv = argv;
    rc = pf_health_add_command_check(hc, "cmd", &c, NULL);
    assert_true(rc == 0 || rc == PF_ENOMEM);
    pf_health_checker_free(hc); /* nothing ran: nothing left behind */
}

static void
test_health_builtin_checks_survive_allocation_failure(void **state)
{
    (void)state;
    assert_true(pf_test_alloc_sweep(sweep_scenario, NULL) > 4);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
#define T(name) CLOCK_TEST(name)
        T(test_health_memory_opts_init_sets_documented_defaults),
        T(test_health_memory_without_cgroup_uses_the_machine_figure),
        T(test_health_memory_uses_the_nearest_cgroup_limit),
        T(test_health_memory_of_the_process_is_its_rss_against_its_limit),
        T(test_health_memory_unreadable_files_are_unhealthy),
        T(test_health_memory_on_this_machine_gives_a_figure),
        T(test_health_memory_rejects_thresholds_out_of_range),
        T(test_health_fd_use_is_judged_against_the_soft_limit),
        T(test_health_tcp_connect_is_healthy_when_something_listens),
        T(test_health_tcp_connect_is_unhealthy_when_refused),
        T(test_health_tcp_check_rejects_bad_options),
        T(test_health_breaker_check_follows_the_breaker_state),
        T(test_health_command_exit_status_decides),
        T(test_health_command_is_killed_at_its_timeout),
        T(test_health_command_timeout_ends_its_whole_process_group),
        T(test_health_command_leftovers_are_ended_when_it_exits),
        T(test_health_command_that_cannot_run_is_unhealthy),
        T(test_health_command_check_rejects_bad_options),
        T(test_health_builtin_checks_survive_allocation_failure),
#undef T
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
