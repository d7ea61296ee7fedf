/* pf — the puffinflow command-line tool.
 *
 *   pf demo [--scene NAME]... [--list]
 *                       a narrated tour of the patterns at work
 *   pf run [options] -- CMD [ARGS...]
 *                       run a command with retries, timeouts, and a
 *                       breaker, bulkhead and rate limit shared by every
 *                       pf run of the host
 *   pf health FILE      run the checks a config file lists
 *   pf watch PID | -- CMD
 *                       sample a process (leak detector), one line a sample
 *   pf breaker|bulkhead|limiter list|show|reset [NAME]
 *                       inspect and reset the shared state of pf run
 *   pf version          print the library version
 *
 * docs/pf.md and the man page (docs/pf.1) describe them. */
#include <stdio.h>
#include <string.h>

#include "puffinflow/puffinflow.h"

#include "pf.h"

static int
usage(FILE *out)
{
    fprintf(out,
            "usage: pf <command> [options]\n"
            "  demo [--scene NAME]... [--list]\n"
            "                   a narrated tour of the patterns at work\n"
            "  run [options] -- CMD [ARGS...]\n"
            "                   run a command with retries, timeouts, and a "
            "breaker,\n"
            "                   bulkhead and rate limit shared across "
            "invocations\n"
            "  health FILE [--json]\n"
            "                   run the checks FILE lists (tcp, command, "
            "http)\n"
            "  watch PID|self [options], watch [options] -- CMD [ARGS...]\n"
            "                   sample a process: memory, fds, sockets, "
            "trends\n"
            "  breaker|bulkhead|limiter list|show|reset [NAME]\n"
            "                   the shared state kept for pf run\n"
            "  version          print the library version (also -V, "
            "--version)\n"
            "pf <command> --help says more; so does man pf.\n");
    return out == stdout ? 0 : PF_TOOL_EXIT_USAGE;
}

static int
dispatch(int argc, char **argv)
{
    const char *c = argv[1];

    if (strcmp(c, "demo") == 0) {
        return pf_tool_demo(argc - 1, argv + 1);
    }
    if (strcmp(c, "watch") == 0) {
        return pf_tool_watch(argc - 1, argv + 1);
    }
    if (strcmp(c, "breaker") == 0 || strcmp(c, "bulkhead") == 0 ||
        strcmp(c, "limiter") == 0) {
        return pf_tool_state(argc - 1, argv + 1);
    }
    if (strcmp(c, "run") == 0) {
        return pf_tool_run(argc - 1, argv + 1);
    }
    if (strcmp(c, "health") == 0) {
        return pf_tool_health(argc - 1, argv + 1);
    }
    if (strcmp(c, "version") == 0 || strcmp(c, "--version") == 0 ||
        strcmp(c, "-V") == 0) {
        if (argc > 2 && (strcmp(argv[2], "-h") == 0 ||
                         strcmp(argv[2], "--help") == 0)) {
            printf("usage: pf version | pf --version | pf -V\n");
            return 0;
        }
        if (argc > 2) {
            fprintf(stderr, "pf version: unexpected '%s'\n", argv[2]);
            return PF_TOOL_EXIT_USAGE;
        }
        printf("puffinflow %s\n", pf_version());
        return 0;
    }
    if (strcmp(c, "help") == 0 || strcmp(c, "--help") == 0 ||
        strcmp(c, "-h") == 0) {
        return usage(stdout);
    }
    fprintf(stderr, "pf: unknown command '%s'\n", c);
    return usage(stderr);
}

int
main(int argc, char **argv)
{
    int rc;

    if (argc < 2) {
        return usage(stderr);
    }
    if (!pf_tool_clock_init()) {
        return PF_TOOL_EXIT_FAILURE;
    }
    rc = dispatch(argc, argv);
    pf_tool_clock_fini();
    return rc;
}
