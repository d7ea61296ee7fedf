/* puffinflow — resource leak detector.
 *
 * One detector does two things, as the reference's ResourceLeakDetector and
 * LeakAwareAgent do, and a third of its own:
 *
 *   1. Process monitoring. A sample reads a process's resident memory,
 *      open file descriptors and its RLIMIT_NOFILE, sockets by kind (TCP,
 *      UDP, Unix) and TCP connections by state, and its threads, from /proc
 *      (and cgroup v2 for the memory limit). pf_leak_detector_start_monitoring
 *      runs a thread that samples every check_interval; a threshold crossed
 *      raises one alert to the listener, and the alert re-arms
 *      only once the value has fallen back below the threshold by the
 *      hysteresis margin, so a value hovering at the line raises it once.
 *   2. Allocation tracking. The runtime (or you) calls track_allocation
 *      when a state takes resources and track_release when it gives them
 *      back (the _ex pair tells apart several holders of one state, such
 *      as concurrent runs); an allocation held longer than leak_threshold
 *      is a leak, listed with agent, state, instance, resources and time
 *      held, alerted once, and kept in a bounded history.
 *   3. Growth trends. A least-squares slope of resident memory and of the
 *      fd count over a sliding window of samples flags steady growth ("fds
 *      +40/min over 10 min") long before an absolute threshold is reached.
 *
 * The sampler can watch another process (pid), or be replaced by your own
 * function (sample), which is also how tests feed known values.
 *
 * All durations are double seconds and all times are read from the
 * detector's clock (config.clock), so tests drive the monitoring thread
 * with a manual clock. */
#ifndef PUFFINFLOW_LEAK_H
#define PUFFINFLOW_LEAK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "puffinflow/clock.h"
#include "puffinflow/export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pf_leak_detector pf_leak_detector_t; /* opaque */

/* ---- samples ------------------------------------------------------------- */

/* TCP states as Linux numbers them (1 = ESTABLISHED ... 10 = LISTEN,
 * 11 = CLOSING, 12 = NEW_SYN_RECV); index 0 is unused. */
#define PF_LEAK_TCP_STATES 13
#define PF_LEAK_TCP_ESTABLISHED 1
#define PF_LEAK_TCP_TIME_WAIT 6
#define PF_LEAK_TCP_CLOSE_WAIT 8
#define PF_LEAK_TCP_LISTEN 10

/* One reading of a process. The caller's own sockets are asked for their
 * kind and TCP state directly; another process's are looked up in its
 * /proc/net tables, where a socket no table lists (an unbound UDP or TCP
 * socket, netlink, raw, packet) counts in other_sockets. The socket fields
 * (sockets to tcp_by_state, and connections) are -1 when the process's
 * descriptors cannot be examined (another user's process, without the
 * privilege): the count of descriptors is still known. */
typedef struct pf_leak_sample {
    int64_t at_ns;              /* detector clock; 0 from
                                   pf_leak_sample_process */
    int pid;                    /* the process sampled; 0 = the caller's own */
    int64_t rss_bytes;          /* resident memory (VmRSS) */
    int64_t memory_limit_bytes; /* the cgroup v2 memory.max in force, else
                                   MemTotal; 0 when unknown */
    double memory_fraction;     /* rss_bytes / memory_limit_bytes; 0 when
                                   the limit is unknown */
    int64_t threads;
    int64_t open_fds;
    int64_t fd_limit;           /* RLIMIT_NOFILE soft limit; -1 = unlimited */
    int64_t sockets;            /* every socket descriptor */
    int64_t tcp;                /* TCP sockets, IPv4 and IPv6 */
    int64_t udp;                /* UDP sockets, IPv4 and IPv6 */
    int64_t unix_sockets;
    int64_t other_sockets;      /* netlink, raw, packet, ... */
    int64_t connections;        /* tcp + udp, saturating at INT64_MAX:
                                   what connection_threshold counts
                                   (psutil's "connections"); -1 (not
                                   judged) when either is negative */
    int64_t tcp_by_state[PF_LEAK_TCP_STATES];
} pf_leak_sample_t;

/* Sample process pid (0 = the caller's own) from /proc and cgroup v2.
 * Returns 0, PF_EINVAL (NULL out, pid < 0), PF_ENOTFOUND (no such
 * process, or it exited while being read), PF_ESYSTEM (e.g. another user's
 * descriptors are not readable), PF_EFORMAT or PF_ENOMEM; on error *out is
 * untouched. Costs a system call per open descriptor. Thread-safe. */
PF_API int pf_leak_sample_process(int pid, pf_leak_sample_t *out);

/* Your own sampler, used instead of /proc (tests use it to feed known
 * values). Fill the raw fields of *out (it arrives zeroed, pid set);
 * the detector then sets at_ns and derives memory_fraction and
 * connections from rss_bytes / memory_limit_bytes and tcp + udp (any
 * int64_t is accepted: the sum saturates at INT64_MAX). Return 0,
 * or a non-zero code: the sample is then counted as failed and skipped.
 * Called on the monitoring thread or the thread calling check, with no lock
 * held, never twice at once for one detector. */
typedef int (*pf_leak_sample_fn)(int pid, pf_leak_sample_t *out, void *arg);

/* "ESTABLISHED", "LISTEN", ... for a TCP state index; "UNKNOWN" otherwise.
 * A constant string. Thread-safe. */
PF_API const char *pf_leak_tcp_state_name(int state);

/* ---- allocations and leaks ----------------------------------------------- */

/* The resources a state holds: the amounts the original's states declare
 * (cpu units, memory in MB, I/O and network weights, GPU units). Each is
 * >= 0 and finite. */
typedef struct pf_leak_resources {
    double cpu_units;
    double memory_mb;
    double io_weight;
    double network_weight;
    double gpu_units;
} pf_leak_resources_t;

/* An allocation held longer than leak_threshold. agent and state point into
 * one block owned by the list or report holding the leak. */
typedef struct pf_leak {
    const char *agent;
    const char *state;
    pf_leak_resources_t resources;
    int64_t allocated_ns;      /* detector clock, when track_allocation ran */
    double held_seconds;       /* at detection (history) or at check (report) */
    double threshold_seconds;  /* leak_threshold then */
    uint64_t instance;         /* which holder of the pair (the _ex calls'
                                  instance; the agent runtime's run number);
                                  0 for track_allocation */
} pf_leak_t;

/* Leaks of one agent, in a report. agent points into the report. */
typedef struct pf_leak_agent_count {
    const char *agent;
    size_t leaks;
} pf_leak_agent_count_t;

/* ---- alerts -------------------------------------------------------------- */

typedef enum pf_leak_alert_kind {
    PF_LEAK_ALERT_MEMORY = 0,       /* memory_fraction > memory_threshold */
    PF_LEAK_ALERT_FILE_HANDLES = 1, /* open_fds > file_handle_threshold */
    PF_LEAK_ALERT_CONNECTIONS = 2,  /* connections > connection_threshold */
    PF_LEAK_ALERT_MEMORY_TREND = 3, /* resident memory grows steadily */
    PF_LEAK_ALERT_FD_TREND = 4,     /* the fd count grows steadily */
    PF_LEAK_ALERT_ALLOCATION = 5    /* an allocation held too long */
} pf_leak_alert_kind_t;

#define PF_LEAK_ALERT_KINDS 6

/* What the listener hears. Valid only during the call; copy what you keep.
 *
 *   kind          value                      limit
 *   MEMORY        memory_fraction            memory_threshold
 *   FILE_HANDLES  open_fds                   file_handle_threshold
 *   CONNECTIONS   connections                connection_threshold
 *   MEMORY_TREND  MB per minute (the slope)  trend_memory_slope
 *   FD_TREND      fds per minute             trend_fd_slope
 *   ALLOCATION    seconds held               leak_threshold
 *
 * The first five come in pairs: raised (cleared = false) when the value
 * passes the limit, then cleared = true once it has fallen back to
 * limit * (1 - hysteresis) or below; between the two nothing more is said.
 * An ALLOCATION alert comes once per allocation (never cleared) and fills
 * leak. */
typedef struct pf_leak_alert {
    pf_leak_alert_kind_t kind;
    bool cleared;
    double value;
    double limit;
    double window_seconds;          /* trends: the time the window spans */
    int64_t at_ns;                  /* detector clock */
    const pf_leak_sample_t *sample; /* the sample that decided; NULL for
                                       ALLOCATION */
    const pf_leak_t *leak;          /* ALLOCATION only, else NULL */
    const char *message;            /* one line for people, e.g. "fds +40.0/min
                                       over 10.0 min (limit 1.0/min)" */
} pf_leak_alert_t;

/* The alert listener. Called on the monitoring thread or a thread in
 * pf_leak_detector_check, with no lock held, one alert at a time in the
 * order the alerts were raised (a thread already telling alerts tells
 * later ones too). It may call any function of the detector except
 * pf_leak_detector_free; stop_monitoring from it returns PF_ESTATE on the
 * monitoring thread; alerts raised by a check it makes are told after it
 * returns. */
typedef void (*pf_leak_alert_fn)(const pf_leak_alert_t *alert, void *arg);

/* "memory", "file_handles", "connections", "memory_trend", "fd_trend",
 * "allocation"; "unknown" otherwise. Thread-safe. */
PF_API const char *pf_leak_alert_kind_name(pf_leak_alert_kind_t kind);

/* ---- config -------------------------------------------------------------- */

typedef struct pf_leak_config {
    const char *name;              /* copied; default "default" */
    double check_interval;         /* seconds between samples, > 0 (may be
                                      infinite); default 60 */
    double memory_threshold;       /* fraction of the memory limit, in
                                      (0, 1]; default 0.8 */
    unsigned file_handle_threshold; /* open fds, >= 1; default 1000 */
    unsigned connection_threshold; /* TCP + UDP sockets, >= 1; default 100 */
    double leak_threshold;         /* seconds an allocation may be held,
                                      > 0 (may be infinite); default 300 */
    union {                        /* the listener; NULL = none */
        pf_leak_alert_fn listener;
        pf_leak_alert_fn on_alert; /* the same field, by the reference's
                                      name */
    };
    union {
        void *listener_arg;
        void *on_alert_arg;
    };
    const pf_clock_t *clock;       /* NULL = system monotonic clock */
    double hysteresis;             /* re-arm margin, [0, 1); default 0.1 */
    unsigned trend_window;         /* samples in the trend window: 0 = no
                                      trend detection, else 4..4096;
                                      default 10 */
    double trend_memory_slope;     /* MB per minute that counts as growth,
                                      > 0; default 1 */
    double trend_fd_slope;         /* fds per minute, > 0; default 1 */
    unsigned leak_history;         /* detected leaks kept, <= 1000000;
                                      default 100 (the original's) */
    int pid;                       /* process to sample, >= 0; default 0 =
                                      this process */
    pf_leak_sample_fn sample;      /* NULL = read /proc, as
                                      pf_leak_sample_process */
    void *sample_arg;
} pf_leak_config_t;

/* Fill cfg with the defaults listed above. Never fails. */
PF_API void pf_leak_config_init(pf_leak_config_t *cfg);

/* ---- lifecycle ----------------------------------------------------------- */

/* Create a detector (not monitoring yet). Returns 0 and stores it in *out,
 * PF_EINVAL for a NULL pointer or a field out of its range (zero or
 * negative intervals, NaN, a threshold outside its range), PF_ENOTFOUND
 * when pid names no process (checked only with the /proc sampler),
 * PF_ENOMEM or PF_ESYSTEM; on error nothing is created and *out is
 * untouched. cfg is not kept. Thread-safe. */
PF_API int pf_leak_detector_new(const pf_leak_config_t *cfg,
                                pf_leak_detector_t **out);

/* Stop monitoring (if running) and destroy d; NULL is a no-op. No other
 * call on d may be running or follow, and it must not be called from d's
 * own listener. */
PF_API void pf_leak_detector_free(pf_leak_detector_t *d);

/* The name given in the config. Valid while d lives. Thread-safe. */
PF_API const char *pf_leak_detector_name(const pf_leak_detector_t *d);

/* ---- monitoring ---------------------------------------------------------- */

/* Start the monitoring thread: it samples at once, then every
 * check_interval on the detector's clock, and at each sample checks the
 * thresholds, the trends and the tracked allocations, calling the listener for
 * what it finds. Returns 0, PF_EINVAL (NULL d), PF_ESTATE if already
 * monitoring, or PF_ESYSTEM when no thread can be created. Thread-safe. */
PF_API int pf_leak_detector_start_monitoring(pf_leak_detector_t *d);

/* Stop the monitoring thread: wakes it at once (it does not wait out the
 * interval), waits for a sample or listener call in progress to finish, and
 * joins it. Returns 0, PF_EINVAL (NULL d), or PF_ESTATE if not monitoring
 * or when called from d's own listener. Blocks until the thread has
 * ended. Thread-safe. */
PF_API int pf_leak_detector_stop_monitoring(pf_leak_detector_t *d);

/* True while the monitoring thread runs. Thread-safe. */
PF_API bool pf_leak_detector_is_monitoring(const pf_leak_detector_t *d);

/* ---- allocation tracking ------------------------------------------------- */

/* Record that state of agent holds resources (NULL = none named) from now
 * on. A second allocation under the same agent and state replaces the
 * first (its clock restarts), as in the original. Strings are copied the
 * first time a pair is seen; after that no call allocates. Returns 0,
 * PF_EINVAL (NULL d, agent or state; a negative or non-finite amount) or
 * PF_ENOMEM. Never blocks beyond a short internal lock. Thread-safe.
 * The same as pf_leak_detector_track_allocation_ex with instance 0. */
PF_API int pf_leak_detector_track_allocation(
    pf_leak_detector_t *d, const char *agent, const char *state,
    const pf_leak_resources_t *resources);

/* Record that state of agent gave its resources back. Returns 0,
 * PF_EINVAL (NULL d, agent or state) or PF_ENOTFOUND when nothing is held
 * under that pair. Never blocks beyond a short internal lock.
 * Thread-safe. The same as pf_leak_detector_track_release_ex with
 * instance 0. */
PF_API int pf_leak_detector_track_release(pf_leak_detector_t *d,
                                          const char *agent,
                                          const char *state);

/* track_allocation for one of several holders of the same agent and
 * state: each instance (any number; the agent runtime passes the run's
 * number, so concurrent runs of a state are told apart) is an allocation
 * of its own, held, reported as a leak (with its instance) and released
 * on its own; a second allocation under the same agent, state and
 * instance replaces the first. Instance 0 is what the functions without
 * _ex track. A pair held by one instance at a time allocates nothing
 * after its first call; each further instance held at once adds a place
 * the first time the pair has that many holders (kept for reuse).
 * Returns and thread behaviour as pf_leak_detector_track_allocation. */
PF_API int pf_leak_detector_track_allocation_ex(
    pf_leak_detector_t *d, const char *agent, const char *state,
    uint64_t instance, const pf_leak_resources_t *resources);

/* track_release for one instance: the others of the pair stay held.
 * PF_ENOTFOUND when that instance holds nothing under the pair. Returns
 * and thread behaviour as pf_leak_detector_track_release. */
PF_API int pf_leak_detector_track_release_ex(pf_leak_detector_t *d,
                                             const char *agent,
                                             const char *state,
                                             uint64_t instance);

/* ---- checking ------------------------------------------------------------ */

/* What pf_leak_detector_check found. Caller memory; check fills it and
 * pf_leak_report_free releases what it holds. */
typedef struct pf_leak_report {
    pf_leak_sample_t sample;   /* this check's sample (zero if it failed) */
    int sample_error;          /* 0, or why the sample failed (e.g.
                                  PF_ENOTFOUND: the watched process exited) */
    pf_leak_t *leaks;          /* allocations held too long now, oldest first */
    size_t leaks_len;
    pf_leak_agent_count_t *by_agent; /* leaks per agent, by name */
    size_t by_agent_len;
    bool alerting[PF_LEAK_ALERT_KINDS]; /* raised and not yet cleared
                                           (ALLOCATION: leaks_len > 0) */
    double memory_slope;       /* MB per minute over the trend window; NaN
                                  until the window is full or with trends
                                  off */
    double fd_slope;           /* fds per minute, likewise */
} pf_leak_report_t;

/* Check now, on the calling thread: take a sample and check thresholds and
 * trends as a monitoring tick does, list the tracked allocations held
 * longer than leak_threshold (adding new ones to the history), call
 * the listener for what is new, and fill *out. Works whether or not the
 * monitoring thread runs. Returns 0 (a failed sample is not an error of
 * check: see sample_error), PF_EINVAL (NULL pointer) or PF_ENOMEM (then
 * *out is empty and no alert is lost: it comes at the next check).
 * Blocks while a monitoring tick runs; calls the listener with no lock held.
 * Thread-safe. */
PF_API int pf_leak_detector_check(pf_leak_detector_t *d,
                                  pf_leak_report_t *out);

/* Release what a report holds and zero it; NULL is a no-op. */
PF_API void pf_leak_report_free(pf_leak_report_t *r);

/* A copy of the history of detected leaks, oldest first (at most
 * leak_history of them): *out (NULL when empty) and *len. Free it with
 * pf_leak_list_free. Returns 0, PF_EINVAL or PF_ENOMEM. Thread-safe. */
PF_API int pf_leak_detector_history(pf_leak_detector_t *d, pf_leak_t **out,
                                    size_t *len);

/* Forget the history (the original's clear_leak_history). Allocations
 * still held stay leaks, but are not reported as new again. Thread-safe. */
PF_API void pf_leak_detector_clear_history(pf_leak_detector_t *d);

/* Free a list from pf_leak_detector_history; NULL is a no-op. */
PF_API void pf_leak_list_free(pf_leak_t *list, size_t len);

/* ---- metrics ------------------------------------------------------------- */

typedef struct pf_leak_metrics {
    uint64_t total_allocations; /* allocations held now (the original's
                                   total_allocations) */
    uint64_t allocations;       /* track_allocation calls ever */
    uint64_t releases;          /* successful track_release calls ever */
    uint64_t current_leaks;     /* held now for longer than leak_threshold */
    uint64_t total_detected;    /* leaks ever detected (history keeps the
                                   last leak_history of them) */
    size_t history_len;
    double leak_threshold;      /* seconds */
    double oldest_allocation_age; /* seconds; NaN when nothing is held */
    uint64_t samples;           /* samples taken */
    uint64_t sample_errors;     /* samples that failed */
    uint64_t alerts;            /* alerts raised (cleared ones not counted) */
    bool monitoring;
    bool alerting[PF_LEAK_ALERT_KINDS];
    pf_leak_sample_t last_sample; /* zero before the first good sample */
    double memory_slope;        /* as in pf_leak_report_t */
    double fd_slope;
} pf_leak_metrics_t;

/* Fill *out with a snapshot. Leaks per agent are in pf_leak_report_t.
 * Never fails on valid pointers (does nothing on NULL). Takes each
 * internal lock briefly. Thread-safe. */
PF_API void pf_leak_detector_metrics(pf_leak_detector_t *d,
                                     pf_leak_metrics_t *out);

#ifdef __cplusplus
}
#endif

#endif /* PUFFINFLOW_LEAK_H */
