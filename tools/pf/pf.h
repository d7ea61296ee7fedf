/* Commands of the pf tool, one file each (the demo: a folder, demo/). Each
 * gets argv from its own name on and returns the process exit status. */
#ifndef PF_TOOLS_PF_H
#define PF_TOOLS_PF_H

#include <stdbool.h>
#include <stddef.h>

#include "puffinflow/puffinflow.h"

int pf_tool_demo(int argc, char **argv);
int pf_tool_watch(int argc, char **argv);
int pf_tool_run(int argc, char **argv);
int pf_tool_state(int argc, char **argv); /* pf breaker|bulkhead|limiter */
int pf_tool_health(int argc, char **argv);
/* Write the settings of pf run's shared kind NAME (text: "key value"
 * lines) to DIR/pf-KIND.NAME.conf, for pf breaker|bulkhead show and reset.
 * 0 or -1. */
int pf_tool_state_save(const char *dir, const char *kind, const char *name,
                       const char *text);
/* Open pf run's shared breaker, bulkhead or rate limiter NAME in DIR
 * (segment KIND.NAME) with the settings given, on the tool's clock: the
 * pattern's _new result (PF_EEXIST: it exists with other settings). */
int pf_tool_open_breaker(const char *dir, const char *name,
                         unsigned failure_threshold,
                         unsigned success_threshold, double recovery_timeout,
                         pf_breaker_t **out);
int pf_tool_open_bulkhead(const char *dir, const char *name,
                          unsigned max_concurrent, pf_bulkhead_t **out);
int pf_tool_open_limiter(const char *dir, const char *name, double per_second,
                         unsigned burst, pf_ratelimit_t **out);

/* Exit statuses of pf run, documented in docs/pf.md. */
enum {
    PF_TOOL_EXIT_USAGE = 2,     /* bad command line */
    PF_TOOL_EXIT_OPEN = 120,    /* the breaker is open: not run */
    PF_TOOL_EXIT_FULL = 121,    /* the bulkhead is full: not run */
    PF_TOOL_EXIT_RATE = 122,    /* no rate-limit token in time: not run */
    PF_TOOL_EXIT_TIMEOUT = 124, /* --timeout or --deadline ended it */
    PF_TOOL_EXIT_FAILURE = 125, /* pf itself failed */
    PF_TOOL_EXIT_NOEXEC = 126,  /* found but cannot be executed */
    PF_TOOL_EXIT_NOTFOUND = 127 /* not found */
};

/* A breaker's, bulkhead's or limiter's segment is "<kind>.<NAME>" (the
 * library allows 64 characters; "bulkhead." takes 9). */
#define PF_TOOL_NAME_MAX 55

/* Option values (args.c): false after printing what was wrong, naming the
 * command, the option and the value. */
/* The pure parser: NULL and *out set, or why s is not a duration. */
const char *pf_tool_duration(const char *s, double *out);
bool pf_tool_parse_duration(const char *cmd, const char *opt, const char *s,
                            double *out);
bool pf_tool_parse_count(const char *cmd, const char *opt, const char *s,
                         long lo, long hi, long *out);
bool pf_tool_parse_codes(const char *cmd, const char *opt, const char *s,
                         bool codes[256]);
bool pf_tool_parse_name(const char *cmd, const char *opt, const char *s);
/* The folder of shared state: arg (made absolute), else the library's
 * default ($XDG_RUNTIME_DIR when absolute, else /dev/shm). */
bool pf_tool_state_dir(const char *cmd, const char *arg, char *buf,
                       size_t len);

/* The tools' clock (tclock.c): the system clock, or the test clock of
 * PF_TEST_CLOCK in pf_test_hooks (the tests' build). init: false after
 * printing why the test clock cannot be read. pf_tool_clock: NULL = system. pass:
 * let seconds go by on the test clock (no-op on the system clock). */
bool pf_tool_clock_init(void);
void pf_tool_clock_fini(void);
const pf_clock_t *pf_tool_clock(void);
bool pf_tool_clock_is_test(void);
int64_t pf_tool_now_ns(void);
void pf_tool_clock_pass(double seconds);

/* A positive number (a rate): false after printing the message. */
bool pf_tool_parse_number(const char *cmd, const char *opt, const char *s,
                          double lo, double hi, double *out);

#endif /* PF_TOOLS_PF_H */
