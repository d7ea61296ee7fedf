/* puffinflow — graceful degradation.
 *
 * A degradation manager picks one of a few user-named modes of operation,
 * ordered from normal to most degraded (for example "full", "reduced",
 * "minimal", "offline"), from the health of the system:
 *
 *   - a sampler measures CPU usage (from /proc/stat deltas, or, when the
 *     process's cgroup has a cpu.max quota, from the cgroup's own usage
 *     against that quota), memory usage (against the nearest cgroup
 *     memory.max, else the machine's memory), and whether external
 *     services are available (no registered circuit breaker open and no
 *     registered health checker unhealthy);
 *   - rules map those signals, and gauges the program sets, to modes:
 *     "cpu > 90 -> simple", "memory > 85 -> batch", "external_down ->
 *     offline". When several rules fire, the most degraded mode asked for
 *     wins (so the order of the modes is the order of precedence);
 *   - hysteresis keeps a rule firing until its signal is back past the
 *     threshold by a margin, and a minimum dwell time keeps a mode for a
 *     while before it changes, so the mode does not flap;
 *   - a manual override pins a mode until cleared.
 *
 * Reading the current mode is one atomic load, for hot paths. A listener
 * hears every mode change. Sampling happens when the program asks
 * (pf_degrade_update) or on a background thread
 * (pf_degrade_start); tests inject signals through a source callback
 * or pf_degrade_evaluate, and read /proc and cgroup files from fixture
 * roots. */
#ifndef PUFFINFLOW_DEGRADE_H
#define PUFFINFLOW_DEGRADE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "puffinflow/clock.h"
#include "puffinflow/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- types ------------------------------------------------------------ */

typedef struct pf_degrade pf_degrade_t; /* opaque */

/* The signals rules look at: the reference's system_health. */
typedef struct pf_system_health {
    double cpu_usage;      /* percent, 0..100; NaN = unknown */
    double memory_usage;   /* percent, 0..100; NaN = unknown */
    bool external_services_available;
    int64_t time_ns;       /* when sampled, on the manager's clock */
} pf_system_health_t;

/* A source of CPU and memory figures replacing the /proc sampler (for
 * tests, or a program with its own). Fill cpu_usage and memory_usage (NaN
 * for unknown) and, if it knows, external_services_available (preset
 * true; the registered breakers and checkers are then consulted too).
 * Return 0, or non-zero to fail the sample (the update returns that value
 * and changes nothing). Called with no lock held. */
typedef int (*pf_degrade_source_fn)(pf_system_health_t *out, void *arg);

/* What a rule looks at. */
typedef enum pf_degrade_signal {
    PF_DEGRADE_SIGNAL_CPU = 0,           /* cpu_usage, percent */
    PF_DEGRADE_SIGNAL_MEMORY = 1,        /* memory_usage, percent */
    PF_DEGRADE_SIGNAL_EXTERNAL_DOWN = 2, /* fires while external services
                                            are not available */
    PF_DEGRADE_SIGNAL_GAUGE = 3          /* a gauge the program sets */
} pf_degrade_signal_t;

/* How a rule compares its signal with its threshold. */
typedef enum pf_degrade_op {
    PF_DEGRADE_ABOVE = 0,     /* value >  threshold */
    PF_DEGRADE_AT_LEAST = 1,  /* value >= threshold */
    PF_DEGRADE_BELOW = 2,     /* value <  threshold */
    PF_DEGRADE_AT_MOST = 3    /* value <= threshold */
} pf_degrade_op_t;

/* A rule: while it fires, the manager wants at least `mode`. An unknown
 * value (NaN, a gauge never set) never fires. */
typedef struct pf_degrade_rule {
    pf_degrade_signal_t signal; /* default CPU */
    const char *gauge;          /* SIGNAL_GAUGE: the gauge's name; copied */
    pf_degrade_op_t op;         /* default ABOVE; EXTERNAL_DOWN ignores it */
    double threshold;           /* CPU, memory: 0..100; gauge: finite;
                                   EXTERNAL_DOWN: ignored; default 0 */
    double hysteresis;          /* >= 0: once firing, the rule stops only
                                   when the value is back past threshold
                                   by more than this (cpu > 90 with 10
                                   fires above 90 and stops at 80 or
                                   below); default 0 */
    const char *mode;           /* the mode it asks for; one of the
                                   manager's modes; required */
} pf_degrade_rule_t;

/* A mode change, for the listener. Pointers are valid during the call. */
typedef struct pf_degrade_event {
    const char *manager;        /* the manager's name */
    unsigned from;              /* mode indexes */
    unsigned to;
    const char *from_name;
    const char *to_name;
    const char *reason;         /* the deciding rule ("cpu > 90"), "no rule
                                   fires", "override" or
                                   "override cleared" */
    pf_system_health_t health;  /* the signals behind the decision */
    int64_t time_ns;            /* on the manager's clock */
} pf_degrade_event_t;

/* Called once per mode change, in order, one at a time, with no lock
 * held, on the thread that made the change. It may read the mode and set
 * gauges, but must not free the manager or stop its sampler. */
typedef void (*pf_degrade_listener_fn)(const pf_degrade_event_t *ev,
                                       void *arg);

/* ---- config ----------------------------------------------------------- */

typedef struct pf_degrade_config {
    const char *name;           /* copied; default "degradation" */
    const char *const *modes;   /* names, normal first, most degraded last;
                                   copied; unique, non-empty; NULL = "full",
                                   "reduced", "minimal", "offline" */
    size_t modes_len;           /* 0 with modes NULL */
    const pf_degrade_rule_t *rules; /* copied; default none */
    size_t rules_len;
    double min_dwell;           /* seconds a mode is kept before the rules
                                   may move to a less degraded one; >= 0;
                                   default 30 */
    double min_dwell_degrade;   /* the same before a more degraded one;
                                   >= 0; default 0 (degrade at once) */
    double sample_interval;     /* seconds between the background
                                   sampler's updates; > 0; default 5 */
    const char *proc_root;      /* copied; NULL = "/proc" (for tests) */
    const char *cgroup_root;    /* copied; NULL = "/sys/fs/cgroup" */
    pf_degrade_source_fn source; /* NULL = sample /proc and cgroup files */
    void *source_arg;
    pf_degrade_listener_fn listener; /* NULL = none */
    void *listener_arg;
    const pf_clock_t *clock;    /* NULL = system monotonic clock; times
                                   dwell, the sampler and CPU deltas */
} pf_degrade_config_t;

/* Fill cfg with the defaults listed above. Never fails. */
PF_API void pf_degrade_config_init(pf_degrade_config_t *cfg);

/* Fill r with the defaults listed above. Never fails. */
PF_API void pf_degrade_rule_init(pf_degrade_rule_t *r);

/* ---- create, free ----------------------------------------------------- */

/* Create a manager in the first (normal) mode; cfg NULL = defaults. Takes
 * a first CPU reading, so the next sample has a delta. Returns 0 and
 * stores it in *out; PF_EINVAL for a bad field (including a rule that
 * names an unknown mode or has a threshold out of range) or NULL out;
 * PF_ENOMEM / PF_ESYSTEM. On error nothing is created and *out is
 * untouched. cfg is not kept. Thread-safe. */
PF_API int pf_degrade_new(const pf_degrade_config_t *cfg,
                              pf_degrade_t **out);

/* Destroy d, stopping its sampler first; NULL is a no-op. No other call
 * on d may be running or follow; not from its listener or source. */
PF_API void pf_degrade_free(pf_degrade_t *d);

/* ---- rules and inputs ------------------------------------------------- */

/* Add a rule (copied). Returns 0, PF_EINVAL (NULL d or r, unknown mode,
 * bad signal or op, threshold out of range, negative or NaN hysteresis, a
 * gauge rule without a gauge name), or PF_ENOMEM. It counts from the next
 * evaluation. Thread-safe. */
PF_API int pf_degrade_add_rule(pf_degrade_t *d,
                                   const pf_degrade_rule_t *r);

/* Add a rule written as text:
 *     cpu > 90 -> simple
 *     memory >= 85 hysteresis 5 -> batch
 *     external_down -> offline        ("external services down" also)
 *     queue_depth > 1000 -> reduced   (any other name is a gauge)
 * Operators: > >= < <=. Returns as pf_degrade_add_rule, PF_EINVAL
 * also for text that does not parse. Thread-safe. */
PF_API int pf_degrade_add_rule_str(pf_degrade_t *d, const char *rule);

/* Set gauge `name` (created on first use) to value, for rules on it. It
 * counts from the next evaluation. Returns 0, PF_EINVAL (NULL or empty
 * name, NaN value) or PF_ENOMEM. Thread-safe. */
PF_API int pf_degrade_set_gauge(pf_degrade_t *d, const char *name,
                                    double value);

/* Count external services unavailable while breaker b is open. b is
 * borrowed: it must outlive d. Returns 0, PF_EINVAL or PF_ENOMEM.
 * Thread-safe. */
struct pf_breaker;
PF_API int pf_degrade_add_breaker(pf_degrade_t *d,
                                      struct pf_breaker *b);

/* Count external services unavailable while checker hc's overall status
 * (pf_health_checker_status) is unhealthy. hc is borrowed: it must outlive
 * d. Returns 0, PF_EINVAL or PF_ENOMEM. Thread-safe. */
struct pf_health_checker;
PF_API int pf_degrade_add_health_checker(pf_degrade_t *d,
                                             struct pf_health_checker *hc);

/* ---- sampling and deciding -------------------------------------------- */

/* Sample the system's health into *out without changing the mode (the
 * reference's check_system_health). A figure that cannot be read is NaN
 * and counted in the metrics' sample_errors. Returns 0, PF_EINVAL, or the
 * source's non-zero result. Calls the source with no lock held.
 * Thread-safe. */
PF_API int pf_degrade_check_system_health(pf_degrade_t *d,
                                              pf_system_health_t *out);

/* Sample, then evaluate the rules and change the mode if they say so (and
 * the dwell time allows). out (may be NULL) gets the sample. Returns as
 * pf_degrade_check_system_health. The listener may run on the calling
 * thread. Thread-safe. */
PF_API int pf_degrade_update(pf_degrade_t *d,
                                 pf_system_health_t *out);

/* Evaluate the rules on the signals in *h (time_ns is ignored: now is read
 * from the manager's clock), as an update would after sampling them.
 * Returns 0 or PF_EINVAL. Thread-safe. */
PF_API int pf_degrade_evaluate(pf_degrade_t *d,
                                   const pf_system_health_t *h);

/* Start a background thread that updates every sample_interval (the first
 * update at once). Returns 0, PF_ESTATE if it runs already, PF_EINVAL or
 * PF_ESYSTEM. Thread-safe. */
PF_API int pf_degrade_start(pf_degrade_t *d);

/* Stop the background thread and wait for it to finish its update.
 * Returns 0, or PF_ESTATE if it was not running, or when called from the
 * sampler's own thread (its listener or source). Thread-safe. */
PF_API int pf_degrade_stop(pf_degrade_t *d);

/* ---- the mode --------------------------------------------------------- */

/* The current mode's index (0 = normal). One relaxed atomic load: lock-
 * free, never blocks; for hot paths. 0 for NULL. Thread-safe. */
PF_API unsigned pf_degrade_mode(const pf_degrade_t *d);

/* The current mode's name. Lock-free. NULL for NULL. Thread-safe. */
PF_API const char *pf_degrade_mode_name(const pf_degrade_t *d);

/* The number of modes, the name of mode i (NULL past the end), and the
 * index of the mode called name (0, PF_ENOTFOUND or PF_EINVAL): resolve a
 * name once, then compare indexes on the hot path. Names are immutable.
 * Thread-safe. */
PF_API size_t pf_degrade_mode_count(const pf_degrade_t *d);
PF_API const char *pf_degrade_mode_name_at(const pf_degrade_t *d,
                                               size_t i);
PF_API int pf_degrade_mode_index(const pf_degrade_t *d,
                                     const char *name, unsigned *out);

/* Pin the mode called name until pf_degrade_clear_override, whatever
 * the rules say (and regardless of dwell). Returns 0, PF_EINVAL (NULL
 * argument or unknown mode). The listener may run on the calling thread.
 * Thread-safe. */
PF_API int pf_degrade_override(pf_degrade_t *d, const char *mode);

/* Clear the override: the mode the rules ask for now applies at once.
 * Returns 0, PF_ESTATE when there is no override, or PF_EINVAL. */
PF_API int pf_degrade_clear_override(pf_degrade_t *d);

/* ---- introspection ---------------------------------------------------- */

/* The manager's name (its own copy). NULL for NULL. */
PF_API const char *pf_degrade_name(const pf_degrade_t *d);

typedef struct pf_degrade_metrics {
    unsigned mode;              /* current */
    unsigned target;            /* what the rules asked for last */
    bool overridden;
    bool sampling;              /* the background thread runs */
    double time_in_mode;        /* seconds since the last change */
    uint64_t updates;           /* evaluations */
    uint64_t transitions;       /* mode changes */
    uint64_t sample_errors;     /* figures that could not be read */
    uint64_t events_dropped;    /* listener events lost to allocation
                                   failure */
    size_t rules;
    pf_system_health_t last;    /* the last signals evaluated */
} pf_degrade_metrics_t;

/* Fill *out. Thread-safe. */
PF_API void pf_degrade_metrics(pf_degrade_t *d,
                                   pf_degrade_metrics_t *out);

#ifdef __cplusplus
}
#endif

#endif /* PUFFINFLOW_DEGRADE_H */
