/* pf — the puffinflow command-line tool.
 *
 *   pf demo [--scene NAME]... [--list]
 *                       a narrated tour of the patterns at work
 *   pf watch PID        sample a process (leak detector), one line a sample
 *   pf run [options] -- CMD [ARGS...]
 *                       run a command with retries, timeouts, a shared
 *                       breaker and a shared bulkhead
 *   pf breaker|bulkhead list|show|reset [NAME]
 *                       inspect and reset the shared state of pf run
 *   pf version          print the library version
 */
#include <stdio.h>
#include <string.h>

#include "puffinflow/puffinflow.h"

#include "pf.h"

static int
usage(FILE *out)
{
    fprintf(out, "usage: pf <command> [options]\n"
                 "  demo [--scene NAME]... [--list]\n"
                 "                   a narrated tour of the patterns at work\n"
                 "  watch PID [--interval s] [--count n]\n"
                 "                   sample a process: memory, fds, sockets, "
                 "trends\n"
                 "  run [options] -- CMD [ARGS...]\n"
                 "                   run a command with retries, timeouts, "
                 "a breaker and a\n"
                 "                   bulkhead shared across invocations\n"
                 "  breaker|bulkhead list|show|reset [NAME]\n"
                 "                   the shared state kept for pf run\n"
                 "  version          print the library version\n"
                 "pf <command> --help says more.\n");
    return out == stdout ? 0 : 2;
}

int
main(int argc, char **argv)
{
    if (argc < 2) {
        return usage(stderr);
    }
    if (strcmp(argv[1], "demo") == 0) {
        return pf_tool_demo(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "watch") == 0) {
        return pf_tool_watch(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "breaker") == 0 || strcmp(argv[1], "bulkhead") == 0) {
        return pf_tool_state(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "run") == 0) {
        return pf_tool_run(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0 ||
        strcmp(argv[1], "-V") == 0) {
        printf("puffinflow %s\n", pf_version());
        return 0;
    }
    if (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "-h") == 0) {
        return usage(stdout);
    }
    fprintf(stderr, "pf: unknown command '%s'\n", argv[1]);
    return usage(stderr);
}
