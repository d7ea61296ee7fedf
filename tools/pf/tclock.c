/* The clock of pf run, pf health and the state commands: the system
 * monotonic clock, or, in pf_test_hooks, the tests' build of pf (defines
 * PF_TOOL_TEST_HOOKS; made only when PF_BUILD_TESTS is on, never
 * installed), a manual clock kept in the file named by PF_TEST_CLOCK.
 *
 * The test clock file holds "pf-test-clock NS": the marker, so that a
 * variable set by accident to some file stops pf (exit 125) rather than
 * moving its clock, and the time in nanoseconds. pf reads
 * it at start; every wait of pf run on that clock (a retry delay, a wait
 * for a rate-limit token) moves the time forward at once instead of
 * sleeping, writes it back to the file (under flock, so concurrent pf runs
 * share one time) and appends the wait, in seconds, to FILE.sleeps. A test
 * moves time between invocations by writing the file. Attempts' timeouts,
 * the command's kill grace and bulkhead waits stay on the system clock:
 * they wait for real processes. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "puffinflow/clock.h"

#include "pf.h"

static pf_clock_t *g_manual;
static const char *g_file;

#ifdef PF_TOOL_TEST_HOOKS
#define MARK "pf-test-clock "

/* Read the time from fd (at its start): false when it is not
 * "pf-test-clock NS". */
static bool
read_time(int fd, int64_t *out)
{
    char buf[64];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    char *end;
    char *p = buf + strlen(MARK);
    long long v;

    if (n <= 0) {
        return false;
    }
    buf[n] = '\0';
    if (strncmp(buf, MARK, strlen(MARK)) != 0 || *p < '0' || *p > '9') {
        return false;
    }
    errno = 0;
    v = strtoll(p, &end, 10);
    if (end == p || errno != 0 || v < 0 ||
        (*end != '\0' && *end != '\n')) {
        return false;
    }
    *out = (int64_t)v;
    return true;
}
#endif

bool
pf_tool_clock_init(void)
{
#ifdef PF_TOOL_TEST_HOOKS
    const char *file = getenv("PF_TEST_CLOCK");
    int64_t t;
    int fd;
    bool ok;

    if (file == NULL || file[0] == '\0') {
        return true;
    }
    fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "pf: PF_TEST_CLOCK: cannot open '%s': %s\n", file,
                strerror(errno));
        return false;
    }
    flock(fd, LOCK_SH);
    ok = read_time(fd, &t);
    flock(fd, LOCK_UN);
    close(fd);
    if (!ok) {
        fprintf(stderr, "pf: PF_TEST_CLOCK (for the tests of pf only): "
                        "'%s' does not hold 'pf-test-clock NS'\n", file);
        return false;
    }
    if (pf_clock_manual_new(&g_manual) != 0) {
        fprintf(stderr, "pf: PF_TEST_CLOCK: no memory\n");
        return false;
    }
    pf_clock_manual_set(g_manual, t);
    g_file = file;
#endif
    return true;
}

void
pf_tool_clock_fini(void)
{
    pf_clock_free(g_manual);
    g_manual = NULL;
    g_file = NULL;
}

const pf_clock_t *
pf_tool_clock(void)
{
    return g_manual;
}

bool
pf_tool_clock_is_test(void)
{
    return g_manual != NULL;
}

int64_t
pf_tool_now_ns(void)
{
    return pf_clock_now_ns(g_manual);
}

void
pf_tool_clock_pass(double seconds)
{
#ifdef PF_TOOL_TEST_HOOKS
    char path[4096];
    int64_t t;
    int64_t mine;
    int fd;
    FILE *log;

    if (g_manual == NULL || !(seconds > 0)) {
        return;
    }
    fd = open(g_file, O_RDWR | O_CLOEXEC);
    mine = pf_clock_now_ns(g_manual);
    if (fd >= 0) {
        char buf[48];
        int n;

        flock(fd, LOCK_EX);
        if (read_time(fd, &t) && t > mine) {
            mine = t;
        }
        mine += (int64_t)(seconds * 1e9 + 0.5);
        n = snprintf(buf, sizeof buf, MARK "%" PRId64 "\n", mine);
        if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t)n, 0) != n) {
            fprintf(stderr, "pf: PF_TEST_CLOCK: cannot write '%s'\n",
                    g_file);
        }
        snprintf(path, sizeof path, "%s.sleeps", g_file);
        log = fopen(path, "a");
        if (log != NULL) {
            fprintf(log, "%.6f\n", seconds);
            fclose(log);
        }
        flock(fd, LOCK_UN);
        close(fd);
    } else {
        mine += (int64_t)(seconds * 1e9 + 0.5);
    }
    pf_clock_manual_set(g_manual, mine);
#else
    (void)seconds;
#endif
}
