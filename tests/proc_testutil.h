/* Tests that check for processes left behind: whether a pid can still run,
 * read from /proc independently of the library's own reading. */
#ifndef PF_TESTS_PROC_TESTUTIL_H
#define PF_TESTS_PROC_TESTUTIL_H

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>

/* Whether pid is a process that can still run: it exists and is not a
 * zombie (an orphan's zombie waits for its reaper, which may never come in
 * a container whose init does not reap). */
static inline bool
process_runs(pid_t pid)
{
    char path[64];
    char buf[512];
    const char *paren;
    size_t n;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    if (f == NULL) {
        return false;
    }
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    paren = strrchr(buf, ')'); /* "pid (comm) S ...": comm may hold ')' */
    return paren != NULL && paren[1] == ' ' && paren[2] != 'Z' &&
           paren[2] != 'X';
}

#endif /* PF_TESTS_PROC_TESTUTIL_H */
