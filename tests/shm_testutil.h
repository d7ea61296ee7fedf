/* Shared helpers of the tests of state shared between processes: a
 * temporary folder for the segments, a manual clock, a shared config
 * naming one object in that folder, and waiting for a forked child. */
#ifndef PF_TESTS_SHM_TESTUTIL_H
#define PF_TESTS_SHM_TESTUTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "puffinflow/clock.h"
#include "puffinflow/shared.h"

#include "test.h"

static char g_dir[64];
static pf_shared_config_t g_sc;
static pf_clock_t *g_clock;

/* Make the folder (/tmp/pf_shared_XXXXXX), the manual clock (at start_ns)
 * and g_sc naming `name` in the folder. Returns 0, or -1 (cmocka's group
 * setup fails). */
static inline int
shm_fixture_setup(const char *name, int64_t start_ns)
{
    strcpy(g_dir, "/tmp/pf_shared_XXXXXX");
    if (mkdtemp(g_dir) == NULL || pf_clock_manual_new(&g_clock) != 0) {
        return -1;
    }
    if (start_ns != 0) {
        pf_clock_manual_set(g_clock, start_ns);
    }
    pf_shared_config_init(&g_sc);
    g_sc.name = name;
    g_sc.dir = g_dir;
    return 0;
}

/* Free the clock and remove the folder with every segment in it. */
static inline int
shm_fixture_teardown(void)
{
    char cmd[128];

    pf_clock_free(g_clock);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* The exit status of the forked child pid, which must exit normally. */
static inline int
wait_child(pid_t pid)
{
    int status = 0;

    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

#endif /* PF_TESTS_SHM_TESTUTIL_H */
