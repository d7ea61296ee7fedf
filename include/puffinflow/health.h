/* puffinflow — health checker.
 *
 * A health checker holds named checks. Each check is a function that says
 * how one dependency is doing: healthy, degraded (working, impaired) or
 * unhealthy, with a short message. pf_health_check_all runs the checks at
 * once, each on a thread of its own (from the library's worker pool, shared
 * with timed calls: threads are reused from run to run, up to 256 at once;
 * see docs/threading.md), and aggregates their results into a report:
 *
 *   - the overall status is the worst status of the critical checks; a
 *     non-critical check that fails makes it degraded at most;
 *   - a check still running at its timeout is reported unhealthy ("timed
 *     out after N s") and the report does not wait for it; the check's
 *     thread finishes on its own later, and until it does that check is not
 *     started again (it keeps reporting the timeout), so a hung dependency
 *     never piles up threads. A run that cannot get a pool thread before
 *     its timeout (all 256 busy with hung work) is reported as timed out
 *     and the check does not run;
 *   - callers that ask at the same time share one run of each check (single
 *     flight), and with cache_ttl a result is reused for that long, so
 *     probes never hammer a dependency;
 *   - a check may need several consecutive failures before it reports
 *     unhealthy (flap damping).
 *
 * Tags put checks in groups ("liveness", "readiness") run on their own.
 * The report renders as the JSON health endpoints serve. A listener hears
 * every status change, of a check and of the overall status, and
 * pf_health_watch blocks until a status differs from one the caller knows
 * (as gRPC's health Watch does).
 *
 * Built-in checks cover what users always end up writing: memory use
 * (cgroup-aware), file descriptor use, a TCP connect, a circuit breaker's
 * state and a command's exit status. */
#ifndef PUFFINFLOW_HEALTH_H
#define PUFFINFLOW_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "puffinflow/clock.h"
#include "puffinflow/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- types ------------------------------------------------------------ */

/* Ordered by severity: a larger value is worse. */
typedef enum pf_health_status {
    PF_HEALTHY = 0,
    PF_DEGRADED = 1,
    PF_UNHEALTHY = 2
} pf_health_status_t;

typedef struct pf_health_checker pf_health_checker_t; /* opaque */
typedef struct pf_health_report pf_health_report_t;   /* opaque */

/* Longest message a check can give, NUL included; longer ones are cut. */
#define PF_HEALTH_MESSAGE_MAX 256

/* What a check fills in. The library owns it and presets status to
 * PF_HEALTHY and message to "" before each run; timeout says how long this
 * run may take (seconds, INFINITY for none), for checks that bound their
 * own waits. */
typedef struct pf_health_result {
    pf_health_status_t status;
    char message[PF_HEALTH_MESSAGE_MAX];
    double timeout; /* read-only */
} pf_health_result_t;

/* A check: fill res and return 0; or return any non-zero value to report
 * the check unhealthy (the message, if the check left it empty, becomes
 * "check failed (returned N)"). Runs on a thread of the library's with no
 * lock held; it may call the checker, except to free it. It keeps running
 * past its timeout if it hangs, so arg must stay valid until it returns,
 * even after the checker is freed. */
typedef int (*pf_health_fn)(pf_health_result_t *res, void *arg);

/* A status change, for the listener. check is the check's name, or NULL
 * when the overall status changed. A check that has not run yet counts as
 * healthy, so its first result raises an event only when it is not
 * healthy. Pointers are valid during the callback only. */
typedef struct pf_health_event {
    const char *checker;       /* the checker's name */
    const char *check;         /* NULL: the overall status */
    pf_health_status_t from;
    pf_health_status_t to;
    const char *message;       /* the check's message; "" for overall */
    int64_t time_ns;           /* on the checker's clock */
} pf_health_event_t;

/* Called once per status change, in the order the changes happened, with
 * no lock held, on the thread that settled the result (a caller of a run,
 * or a check's own thread). A check's event comes when its result does;
 * the overall status's once the report is complete. One event is
 * delivered at a time, and every event a call caused has been delivered
 * when the call returns (unless it was made from the listener itself). It
 * may call the checker (run checks, add or remove them), but not free
 * it. */
typedef void (*pf_health_listener_fn)(const pf_health_event_t *ev,
                                      void *arg);

/* ---- config ----------------------------------------------------------- */

typedef struct pf_health_config {
    const char *name;        /* copied by _new; default "health" */
    double cache_ttl;        /* seconds a check's result is reused before
                                it runs again; >= 0; 0 = always run;
                                default 0 */
    pf_health_listener_fn listener; /* NULL = none; default NULL */
    void *listener_arg;
    const pf_clock_t *clock; /* NULL = system monotonic clock; times every
                                timeout, the cache and watch */
} pf_health_config_t;

/* Options of one check. */
typedef struct pf_health_check_opts {
    double timeout;          /* seconds; 0 or INFINITY = none;
                                default 5 */
    bool critical;           /* false: a failure makes the overall status
                                degraded at most; default true */
    const char *const *tags; /* groups the check belongs to, e.g.
                                "readiness"; copied; default none */
    size_t tags_len;
    unsigned failures_before_unhealthy; /* consecutive unhealthy results
                                before the check reports unhealthy (until
                                then it keeps its previous status); >= 1;
                                default 1 */
} pf_health_check_opts_t;

/* Fill cfg with the defaults listed above. Never fails. */
PF_API void pf_health_config_init(pf_health_config_t *cfg);

/* Fill opts with the defaults listed above. Never fails. */
PF_API void pf_health_check_opts_init(pf_health_check_opts_t *opts);

/* ---- create, free ----------------------------------------------------- */

/* Create a health checker with no checks; cfg NULL = defaults. Returns 0
 * and stores it in *out, PF_EINVAL for a bad field or NULL out, or
 * PF_ENOMEM / PF_ESYSTEM; on error nothing is created and *out is
 * untouched. cfg is not kept. Thread-safe. */
PF_API int pf_health_checker_new(const pf_health_config_t *cfg,
                                 pf_health_checker_t **out);

/* Destroy hc; NULL is a no-op. No other call on hc may be running or
 * follow, and it must not be called from a check or the listener. Does not
 * wait for checks still running past their timeout: they finish on their
 * own threads, their results are dropped, and the last one to finish frees
 * what is left (their arg must stay valid until then). The listener is
 * never called after this returns. */
PF_API void pf_health_checker_free(pf_health_checker_t *hc);

/* ---- checks ----------------------------------------------------------- */

/* Add a check called name (copied) with default options. Returns 0,
 * PF_EINVAL for a NULL or empty name, a NULL fn, a name already in use,
 * or NULL hc, or PF_ENOMEM. Thread-safe. */
PF_API int pf_health_add_check(pf_health_checker_t *hc, const char *name,
                               pf_health_fn fn, void *arg);

/* The same with options (NULL = defaults). Also PF_EINVAL for a zero,
 * negative or NaN timeout, failures_before_unhealthy 0, tags_len > 0 with
 * NULL tags, or a NULL or empty tag. Nothing is added on error.
 * Thread-safe. */
PF_API int pf_health_add_check_ex(pf_health_checker_t *hc, const char *name,
                                  pf_health_fn fn, void *arg,
                                  const pf_health_check_opts_t *opts);

/* Remove the check called name. A run of it in progress goes on; callers
 * waiting for it still get its result, but it no longer counts in the
 * overall status. Returns 0, PF_ENOTFOUND, or PF_EINVAL (NULL argument).
 * Thread-safe; never waits for the check. */
PF_API int pf_health_remove_check(pf_health_checker_t *hc, const char *name);

/* How many checks hc has (0 for NULL). Thread-safe. */
PF_API size_t pf_health_check_count(pf_health_checker_t *hc);

/* ---- running ---------------------------------------------------------- */

/* Run every check at once and store a new report in *out (free it with
 * pf_health_report_free). Checks whose cached result is still fresh are
 * not run; a check another caller is running right now is not started
 * again: this call waits for that run. Returns 0, PF_EINVAL (NULL
 * argument) or PF_ENOMEM; on error *out is untouched. A check that cannot
 * be started (no thread) is reported unhealthy, not as an error.
 * Calls each check on a pool thread, with no lock held; the listener
 * may run on the calling thread. Thread-safe. Blocks up to the longest
 * timeout of the checks it waits for. */
PF_API int pf_health_check_all(pf_health_checker_t *hc,
                               pf_health_report_t **out);

/* The same for the checks tagged tag only (a report with no checks, and
 * overall healthy, when none has it). PF_EINVAL for a NULL or empty tag. */
PF_API int pf_health_check_tagged(pf_health_checker_t *hc, const char *tag,
                                  pf_health_report_t **out);

/* The same for the one check called name: PF_ENOTFOUND when there is
 * none. */
PF_API int pf_health_check_one(pf_health_checker_t *hc, const char *name,
                               pf_health_report_t **out);

/* A report of every check's latest result, running nothing: for metrics
 * and status pages. A check that has never run shows runs == 0, status
 * healthy and message "not checked yet", and does not count in the overall
 * status. Returns 0, PF_EINVAL or PF_ENOMEM. Thread-safe. Never blocks on
 * a check. */
PF_API int pf_health_snapshot(pf_health_checker_t *hc,
                              pf_health_report_t **out);

/* The overall status of hc's latest results: the aggregate of every
 * check's latest result (however it was run: alone, by tag or all
 * together; checks not run yet do not count; no results at all is
 * healthy), recomputed each time a report is complete and when a check is
 * removed. One atomic load. Thread-safe. Never blocks. */
PF_API pf_health_status_t pf_health_checker_status(pf_health_checker_t *hc);

/* Block until the status differs from current, then store it in *out and
 * return 0. check NULL watches the overall status, else the check called
 * name. Returns PF_ETIMEDOUT (with the status, unchanged, in *out) when
 * timeout seconds pass first (0 = just compare; INFINITY = no limit),
 * PF_ENOTFOUND for an unknown check or one removed while watched, or
 * PF_EINVAL (NULL hc or out, bad status, negative or NaN timeout). The
 * status changes only when checks run, so something must run them.
 * Thread-safe. Blocks up to timeout on the checker's clock. */
PF_API int pf_health_watch(pf_health_checker_t *hc, const char *check,
                           pf_health_status_t current, double timeout,
                           pf_health_status_t *out);

/* ---- reports ---------------------------------------------------------- */

/* One check in a report. Strings live as long as the report. */
typedef struct pf_health_entry {
    const char *name;
    pf_health_status_t status;    /* after flap damping */
    const char *message;
    bool critical;
    bool cached;                  /* reused, not run, for this report */
    bool timed_out;               /* this result is a timeout */
    double duration;              /* seconds from the run's start to its
                                     result (to the timeout when it timed
                                     out) */
    int64_t time_ns;              /* wall-clock ns since the epoch when the
                                     result came in; 0 if never */
    unsigned consecutive_failures;
    uint64_t runs;                /* results the check has had in all */
    uint64_t failures;            /* of which unhealthy (before damping) */
    uint64_t timeouts;            /* of which timeouts */
} pf_health_entry_t;

/* The report's overall status (see the top of this file). */
PF_API pf_health_status_t pf_health_report_status(
    const pf_health_report_t *r);

/* True unless the overall status is PF_UNHEALTHY: a degraded service is
 * still serving. False for NULL. */
PF_API bool pf_health_report_is_healthy(const pf_health_report_t *r);

/* Number of checks in r (0 for NULL), and the i-th of them, in the order
 * they were added (NULL past the end). */
PF_API size_t pf_health_report_count(const pf_health_report_t *r);
PF_API const pf_health_entry_t *pf_health_report_entry(
    const pf_health_report_t *r, size_t i);

/* The entry of the check called name, or NULL. */
PF_API const pf_health_entry_t *pf_health_report_find(
    const pf_health_report_t *r, const char *name);

/* The failed checks: those whose status is PF_UNHEALTHY (critical or
 * not), in report order. count, then the i-th name (NULL past the end). */
PF_API size_t pf_health_report_failed_count(const pf_health_report_t *r);
PF_API const char *pf_health_report_failed(const pf_health_report_t *r,
                                           size_t i);

/* When the report was made (wall-clock ns since the epoch), and how long
 * making it took (seconds on the checker's clock). */
PF_API int64_t pf_health_report_time_ns(const pf_health_report_t *r);
PF_API double pf_health_report_duration(const pf_health_report_t *r);

/* The report as JSON:
 *   {"status":"degraded","healthy":true,"checker":"api",
 *    "time":"2024-05-01T12:00:00.000Z","duration_ms":12.5,
 *    "checks":{"db":{"status":"healthy","message":"ok","critical":true,
 *                    "duration_ms":3.1,"time":"...","cached":false,
 *                    "timed_out":false,"consecutive_failures":0},...},
 *    "failed_checks":[]}
 * into buf of size len (NUL-terminated), as snprintf would: *needed (if
 * not NULL) gets the size the text needs, NUL included, on success and on
 * PF_ERANGE. With len 0 the call only measures (buf may be NULL): it
 * returns 0 and sets *needed. Returns 0, PF_EINVAL (NULL r, or NULL buf
 * with len > 0), PF_ENOMEM, or PF_ERANGE when it does not fit in len > 0
 * bytes. Names are written as docs/metrics.md says (bytes that are not
 * UTF-8 as \xHH), messages with such bytes replaced by U+FFFD; numbers
 * always with '.'. Thread-safe on a report no one frees. */
PF_API int pf_health_report_json(const pf_health_report_t *r, char *buf,
                                 size_t len, size_t *needed);

/* The same JSON in a newly allocated string, stored in *out; free it with
 * pf_free. Returns 0, PF_EINVAL or PF_ENOMEM. */
PF_API int pf_health_report_json_alloc(const pf_health_report_t *r,
                                       char **out);

/* Free a report; NULL is a no-op. */
PF_API void pf_health_report_free(pf_health_report_t *r);

/* ---- introspection ---------------------------------------------------- */

/* "healthy", "degraded", "unhealthy", or "unknown" for any other value. */
PF_API const char *pf_health_status_name(pf_health_status_t s);

/* The checker's name (its own copy, valid while it lives). */
PF_API const char *pf_health_checker_name(const pf_health_checker_t *hc);

typedef struct pf_health_metrics {
    pf_health_status_t status; /* pf_health_checker_status */
    size_t checks;             /* checks registered */
    uint64_t reports;          /* check_all / tagged / one calls */
    uint64_t runs;             /* check runs started */
    uint64_t cache_hits;       /* results reused from the cache */
    uint64_t shared;           /* times a caller waited for a run another
                                  caller had started */
    uint64_t failures;         /* unhealthy results (before damping) */
    uint64_t timeouts;         /* results that were timeouts */
    uint64_t events;           /* listener events delivered */
    uint64_t events_dropped;   /* events lost to allocation failure */
    size_t running;            /* runs not over yet (running on a pool
                                  thread, or waiting for one), hung ones
                                  included */
    size_t hung;               /* of which past their timeout */
} pf_health_metrics_t;

/* Fill *out with hc's counters. Per-check figures (status, duration,
 * counts) come from pf_health_snapshot. Thread-safe. Never blocks on a
 * check. */
PF_API void pf_health_metrics(pf_health_checker_t *hc,
                              pf_health_metrics_t *out);

/* Set res's status and message (printf format, cut to fit at a UTF-8
 * character boundary). Numbers are formatted in the "C" locale ("2.5"
 * whatever the process locale). A helper for checks. */
PF_API void pf_health_result_set(pf_health_result_t *res,
                                 pf_health_status_t status, const char *fmt,
                                 ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* ---- built-in checks -------------------------------------------------- */

/* Memory use in percent: with measure_process false, the memory in use by
 * this process's cgroup against its memory.max (nearest limit up the
 * tree), or, with no cgroup limit, the machine's (MemTotal - MemAvailable)
 * against MemTotal, as psutil's virtual_memory().percent; with
 * measure_process true, this process's resident set against the memory it
 * may use (its cgroup's limit, else MemTotal). Above degraded_percent the
 * check is degraded, above unhealthy_percent unhealthy. */
typedef struct pf_health_memory_opts {
    double degraded_percent;   /* (0, 100]; default 80 */
    double unhealthy_percent;  /* [degraded_percent, 100]; default 90 */
    bool measure_process;      /* default false */
    const char *proc_root;     /* copied; NULL = "/proc" (for tests) */
    const char *cgroup_root;   /* copied; NULL = "/sys/fs/cgroup" */
} pf_health_memory_opts_t;

PF_API void pf_health_memory_opts_init(pf_health_memory_opts_t *m);

/* Add a memory check called name; m NULL = defaults, opts NULL = default
 * check options. Returns as pf_health_add_check_ex, and PF_EINVAL for
 * thresholds out of range. Thread-safe. */
PF_API int pf_health_add_memory_check(pf_health_checker_t *hc,
                                      const char *name,
                                      const pf_health_memory_opts_t *m,
                                      const pf_health_check_opts_t *opts);

/* File descriptors this process has open, in percent of its soft
 * RLIMIT_NOFILE ("Max open files"); an unlimited limit is healthy. */
typedef struct pf_health_fd_opts {
    double degraded_percent;   /* (0, 100]; default 80 */
    double unhealthy_percent;  /* [degraded_percent, 100]; default 90 */
    const char *proc_root;     /* copied; NULL = "/proc" */
} pf_health_fd_opts_t;

PF_API void pf_health_fd_opts_init(pf_health_fd_opts_t *f);

/* Add a file descriptor check; as pf_health_add_memory_check. */
PF_API int pf_health_add_fd_check(pf_health_checker_t *hc, const char *name,
                                  const pf_health_fd_opts_t *f,
                                  const pf_health_check_opts_t *opts);

/* Healthy when a TCP connection to host:port opens within
 * connect_timeout (then it is closed at once); unhealthy otherwise, with
 * the reason (name not resolved, refused, timed out). host is a name or a
 * numeric IPv4/IPv6 address; every address it resolves to is tried, all
 * within the one timeout. The connect is timed by the system clock (it is
 * real network I/O). */
typedef struct pf_health_tcp_opts {
    const char *host;          /* copied; required */
    unsigned port;             /* 1..65535; required */
    double connect_timeout;    /* seconds; >= 0; 0 = the check's own
                                  timeout; default 0 */
} pf_health_tcp_opts_t;

PF_API void pf_health_tcp_opts_init(pf_health_tcp_opts_t *t);

/* Add a TCP connect check. PF_EINVAL for a NULL t, a NULL or empty host, a
 * port out of range or a bad timeout; otherwise as
 * pf_health_add_check_ex. */
PF_API int pf_health_add_tcp_check(pf_health_checker_t *hc, const char *name,
                                   const pf_health_tcp_opts_t *t,
                                   const pf_health_check_opts_t *opts);

/* The state of circuit breaker b: closed is healthy, half-open degraded,
 * open unhealthy. b is not owned: it must outlive the check (remove the
 * check, or free the checker, before freeing b). PF_EINVAL for NULL b;
 * otherwise as pf_health_add_check_ex. */
struct pf_breaker;
PF_API int pf_health_add_breaker_check(pf_health_checker_t *hc,
                                       const char *name, struct pf_breaker *b,
                                       const pf_health_check_opts_t *opts);

/* Run a command and judge its exit status: 0 is healthy, degraded_exit
 * (when >= 1) is degraded, any other status, a signal, or running past
 * timeout is unhealthy. argv[0] is searched in PATH; stdin, stdout and
 * stderr are /dev/null. The command is timed by the system clock.
 *
 * The command runs in a process group of its own (so a terminal's Ctrl-C
 * does not reach it). At its timeout the whole group gets SIGTERM, then,
 * kill_grace seconds later (sooner once the group is empty), SIGKILL; the
 * check returns after that and after reaping the command, so nothing it
 * started, grandchildren that ignore SIGTERM included, runs on. A command
 * that exits leaving processes in its group has them ended the same way.
 * Killed grandchildren are reaped by whoever inherits them (init, or a
 * subreaper); a process that moved to another group or session
 * (setsid, setpgid) escapes. */
typedef struct pf_health_command_opts {
    const char *const *argv;   /* NULL-terminated; copied; required */
    double timeout;            /* seconds before it is killed; >= 0;
                                  0 = the check's own timeout; default 0 */
    int degraded_exit;         /* exit status meaning degraded (1 for
                                  Nagios-style plugins); -1 = none;
                                  default -1 */
    double kill_grace;         /* seconds from SIGTERM to SIGKILL; >= 0 and
                                  finite; 0 = SIGKILL at once; default 0.5 */
} pf_health_command_opts_t;

PF_API void pf_health_command_opts_init(pf_health_command_opts_t *c);

/* Add a command check. PF_EINVAL for a NULL c, a NULL argv or argv[0], an
 * empty argv[0], a negative or NaN timeout, a negative, NaN or infinite
 * kill_grace, or degraded_exit not -1 and not in 1..255;
 * otherwise as pf_health_add_check_ex. */
PF_API int pf_health_add_command_check(pf_health_checker_t *hc,
                                       const char *name,
                                       const pf_health_command_opts_t *c,
                                       const pf_health_check_opts_t *opts);

#ifdef __cplusplus
}
#endif

#endif /* PUFFINFLOW_HEALTH_H */
