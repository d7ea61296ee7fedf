/* puffinflow — registries of named objects, metrics snapshots, and their
 * export as Prometheus text (exposition format 0.0.4) and JSON.
 *
 * A registry holds the library's objects by kind and name: circuit
 * breakers, keyed breaker groups, bulkheads, rate limiters, health
 * checkers, leak detectors and degradation managers. Names are unique within a
 * kind (a breaker and a bulkhead may both be called "payments"). A program may
 * make its own registries or use the default one, made on first use.
 *
 * Ownership. An object the registry creates (get-or-create) is owned by
 * the registry: it is freed when removed, when the registry is cleared or
 * freed. An object the caller adds is owned by the registry if added with
 * PF_REGISTRY_OWN, or stays the caller's with PF_REGISTRY_BORROW (the
 * caller frees it, but only after removing it or freeing the registry).
 * Pointers the registry hands out stay valid until the object is removed
 * or the registry cleared or freed; the caller never frees them.
 *
 * Concurrency. Every function is thread-safe, and none holds the
 * registry's lock while user code runs (callbacks, health checks). An
 * export or a foreach visit in progress keeps the objects it reads alive:
 * removing an owned object then defers its free until they are done, and
 * removing a borrowed or handed-over object waits for them, so once a
 * remove returns the registry never touches the object again. */
#ifndef PUFFINFLOW_REGISTRY_H
#define PUFFINFLOW_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "puffinflow/breaker.h"
#include "puffinflow/bulkhead.h"
#include "puffinflow/degrade.h"
#include "puffinflow/export.h"
#include "puffinflow/health.h"
#include "puffinflow/leak.h"
#include "puffinflow/ratelimit.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- types ------------------------------------------------------------ */

typedef struct pf_registry pf_registry_t; /* opaque */

/* The kinds of object a registry holds. Values are stable. */
typedef enum pf_registry_kind {
    PF_REGISTRY_BREAKER = 0,
    PF_REGISTRY_BULKHEAD = 1,
    PF_REGISTRY_RATELIMIT = 2,
    PF_REGISTRY_HEALTH = 3,        /* health checkers */
    PF_REGISTRY_LEAK = 4,          /* leak detectors */
    PF_REGISTRY_DEGRADE = 5,       /* degradation managers */
    PF_REGISTRY_BREAKER_GROUP = 6, /* keyed groups of breakers */
    PF_REGISTRY_ANY = -1           /* every kind, where a function says so */
} pf_registry_kind_t;

#define PF_REGISTRY_KINDS 7

/* Who frees an object added to a registry. */
typedef enum pf_registry_ownership {
    PF_REGISTRY_BORROW = 0, /* the caller frees it, after removing it */
    PF_REGISTRY_OWN = 1     /* the registry frees it */
} pf_registry_ownership_t;

/* Called for each object by pf_registry_foreach, with no lock held. object
 * is a pf_breaker_t *, pf_bulkhead_t *, ... as kind says; name is the
 * registry's copy. Return 0 to go on, anything else to stop: foreach then
 * returns that value. */
typedef int (*pf_registry_visit_fn)(pf_registry_kind_t kind, const char *name,
                                    void *object, void *arg);

typedef struct pf_registry_config {
    bool process_metrics; /* exports include this process's fds, memory
                             and threads (read from /proc); default true */
} pf_registry_config_t;

/* ---- create, free, default ------------------------------------------- */

/* Fill cfg with the defaults above. Never fails. */
PF_API void pf_registry_config_init(pf_registry_config_t *cfg);

/* Create an empty registry; cfg NULL = defaults. Returns 0 and stores it
 * in *out, PF_EINVAL if out is NULL, PF_ENOMEM or PF_ESYSTEM; on error
 * nothing is created and *out is untouched. cfg is not kept. Thread-safe. */
PF_API int pf_registry_new(const pf_registry_config_t *cfg,
                           pf_registry_t **out);

/* Destroy r, freeing every object it owns; borrowed objects are left to
 * their owners. NULL and the default registry are no-ops (the default one
 * lives as long as the process; empty it with pf_registry_clear). No other
 * call on r may be running or follow. */
PF_API void pf_registry_free(pf_registry_t *r);

/* The default registry, created empty with default config on first use.
 * Never NULL, never fails. Thread-safe: concurrent first calls get the
 * same registry. */
PF_API pf_registry_t *pf_registry_default(void);

/* ---- lookup, removal, iteration -------------------------------------- */

/* The object of kind called name, in *out. Returns 0, PF_ENOTFOUND, or
 * PF_EINVAL for a NULL argument, an empty name or a bad kind (not ANY).
 * The registry keeps ownership. Thread-safe. Never blocks on user code. */
PF_API int pf_registry_find(pf_registry_t *r, pf_registry_kind_t kind,
                            const char *name, void **out);

/* Remove the object of kind called name. With out NULL, an owned object is
 * freed (at once, or as soon as an export or foreach still reading it is
 * done) and a borrowed one is just dropped. With out not NULL, the object
 * is handed over in *out: the caller owns it from now on, whoever owned it
 * before. Returns 0, PF_ENOTFOUND, or PF_EINVAL (as find).
 * Blocks while an export or foreach visit on another thread is reading a
 * borrowed or handed-over object (so the caller may free it on return);
 * removing the object a foreach callback is visiting, from that callback,
 * is allowed and does not wait. Thread-safe. */
PF_API int pf_registry_remove(pf_registry_t *r, pf_registry_kind_t kind,
                              const char *name, void **out);

/* How many objects of kind (or of every kind, for PF_REGISTRY_ANY) r
 * holds; 0 for NULL or a bad kind. Takes the registry's lock briefly.
 * Thread-safe. */
PF_API size_t pf_registry_count(pf_registry_t *r, pf_registry_kind_t kind);

/* Call fn(kind, name, object, arg) for every object of kind (or every
 * object, kinds in enum order, for PF_REGISTRY_ANY), in byte order of
 * name within a kind. Calls fn on the calling thread with no lock held;
 * fn may add, find and remove objects, including the one it visits.
 * Objects added during the walk after the current name are visited,
 * objects removed before they are reached are not. Returns 0, fn's first
 * non-zero result, or PF_EINVAL for NULL r or fn or a bad kind. */
PF_API int pf_registry_foreach(pf_registry_t *r, pf_registry_kind_t kind,
                               pf_registry_visit_fn fn, void *arg);

/* Remove every object, freeing the owned ones (deferred as remove does);
 * borrowed ones are dropped, and this waits as remove does for exports in
 * progress on other threads. NULL is a no-op. Thread-safe. */
PF_API void pf_registry_clear(pf_registry_t *r);

/* "breaker", "bulkhead", "ratelimit", "health", "leak", "degrade",
 * "breaker_group", or "unknown". A constant string. */
PF_API const char *pf_registry_kind_name(pf_registry_kind_t kind);

/* ---- typed faces, one per kind ---------------------------------------- *
 *
 * For each kind: add an existing object (its name is the object's own,
 * from its name getter), get-or-create by name, find by name, and set the
 * config get-or-create uses when given none.
 *
 *   add:  returns 0, PF_EEXIST when the kind already has that name
 *         (nothing changes; the object stays the caller's), PF_EINVAL
 *         (NULL r or object, an empty name, a bad ownership) or
 *         PF_ENOMEM. Adding one object to two registries with
 *         PF_REGISTRY_OWN, or twice, is a caller's bug.
 *   get:  the object called name, created when absent from cfg (NULL =
 *         the registry's default config for the kind, see set_defaults)
 *         with cfg's name replaced by name. The created object belongs to
 *         the registry. When the object exists, cfg is ignored. However
 *         many threads ask at once, one object is created. Returns 0,
 *         PF_EINVAL (NULL r, name or out, an empty name, or a bad field
 *         of the config: the module's own validation), PF_ENOMEM or
 *         PF_ESYSTEM; on error nothing is created. The module's _new runs
 *         under the registry's lock (it runs no user code).
 *   find: as pf_registry_find, typed.
 *   set_defaults: store a copy of cfg (NULL = back to the module's own
 *         defaults, its _config_init) for get with a NULL cfg. The copy is
 *         shallow: what cfg points to (clock, listener arg, arrays) must
 *         outlive the registry; its name is not used. cfg is checked by
 *         creating and freeing a throwaway object: PF_EINVAL for a bad
 *         field, or PF_ENOMEM. Affects later gets only.
 * All are thread-safe. */

PF_API int pf_registry_add_breaker(pf_registry_t *r, pf_breaker_t *b,
                                   pf_registry_ownership_t own);
PF_API int pf_registry_get_breaker(pf_registry_t *r, const char *name,
                                   const pf_breaker_config_t *cfg,
                                   pf_breaker_t **out);
PF_API int pf_registry_find_breaker(pf_registry_t *r, const char *name,
                                    pf_breaker_t **out);
PF_API int pf_registry_set_breaker_defaults(pf_registry_t *r,
                                            const pf_breaker_config_t *cfg);

/* Keyed groups: a group's breakers are exported with the breakers, each
 * under its own name ("<group>/<key>") and a group label. */
PF_API int pf_registry_add_breaker_group(pf_registry_t *r,
                                         pf_breaker_group_t *g,
                                         pf_registry_ownership_t own);
PF_API int pf_registry_get_breaker_group(pf_registry_t *r, const char *name,
                                         const pf_breaker_group_config_t *cfg,
                                         pf_breaker_group_t **out);
PF_API int pf_registry_find_breaker_group(pf_registry_t *r, const char *name,
                                          pf_breaker_group_t **out);
PF_API int
pf_registry_set_breaker_group_defaults(pf_registry_t *r,
                                       const pf_breaker_group_config_t *cfg);

PF_API int pf_registry_add_bulkhead(pf_registry_t *r, pf_bulkhead_t *bh,
                                    pf_registry_ownership_t own);
PF_API int pf_registry_get_bulkhead(pf_registry_t *r, const char *name,
                                    const pf_bulkhead_config_t *cfg,
                                    pf_bulkhead_t **out);
PF_API int pf_registry_find_bulkhead(pf_registry_t *r, const char *name,
                                     pf_bulkhead_t **out);
PF_API int pf_registry_set_bulkhead_defaults(pf_registry_t *r,
                                             const pf_bulkhead_config_t *cfg);

PF_API int pf_registry_add_ratelimit(pf_registry_t *r, pf_ratelimit_t *rl,
                                     pf_registry_ownership_t own);
PF_API int pf_registry_get_ratelimit(pf_registry_t *r, const char *name,
                                     const pf_ratelimit_config_t *cfg,
                                     pf_ratelimit_t **out);
PF_API int pf_registry_find_ratelimit(pf_registry_t *r, const char *name,
                                      pf_ratelimit_t **out);
PF_API int pf_registry_set_ratelimit_defaults(pf_registry_t *r,
                                              const pf_ratelimit_config_t *cfg);

PF_API int pf_registry_add_health_checker(pf_registry_t *r,
                                          pf_health_checker_t *hc,
                                          pf_registry_ownership_t own);
PF_API int pf_registry_get_health_checker(pf_registry_t *r, const char *name,
                                          const pf_health_config_t *cfg,
                                          pf_health_checker_t **out);
PF_API int pf_registry_find_health_checker(pf_registry_t *r, const char *name,
                                           pf_health_checker_t **out);
PF_API int
pf_registry_set_health_checker_defaults(pf_registry_t *r,
                                        const pf_health_config_t *cfg);

PF_API int pf_registry_add_leak_detector(pf_registry_t *r,
                                         pf_leak_detector_t *d,
                                         pf_registry_ownership_t own);
PF_API int pf_registry_get_leak_detector(pf_registry_t *r, const char *name,
                                         const pf_leak_config_t *cfg,
                                         pf_leak_detector_t **out);
PF_API int pf_registry_find_leak_detector(pf_registry_t *r, const char *name,
                                          pf_leak_detector_t **out);
PF_API int pf_registry_set_leak_detector_defaults(pf_registry_t *r,
                                                  const pf_leak_config_t *cfg);

PF_API int pf_registry_add_degrade(pf_registry_t *r, pf_degrade_t *d,
                                       pf_registry_ownership_t own);
PF_API int pf_registry_get_degrade(pf_registry_t *r, const char *name,
                                       const pf_degrade_config_t *cfg,
                                       pf_degrade_t **out);
PF_API int pf_registry_find_degrade(pf_registry_t *r, const char *name,
                                        pf_degrade_t **out);
PF_API int
pf_registry_set_degrade_defaults(pf_registry_t *r,
                                     const pf_degrade_config_t *cfg);

/* ---- metrics snapshot and export ------------------------------------- */

/* This process, read from /proc when the snapshot is taken. A field that
 * could not be read is -1 and left out of the exports. */
typedef struct pf_process_metrics {
    int64_t open_fds;       /* entries of /proc/self/fd */
    int64_t max_fds;        /* soft RLIMIT_NOFILE; -1 also for unlimited */
    int64_t resident_bytes; /* VmRSS */
    int64_t virtual_bytes;  /* VmSize */
    int64_t threads;
} pf_process_metrics_t;

/* One object's metrics in a snapshot. */
typedef struct pf_registry_breaker {
    const char *name;
    pf_breaker_metrics_t metrics;
} pf_registry_breaker_t;

/* A keyed group and its breakers (in the group's least- to most-recently
 * used order), each named "<group>/<key>". */
typedef struct pf_registry_breaker_group {
    const char *name;
    pf_breaker_group_metrics_t metrics;
    pf_registry_breaker_t *breakers;
    size_t breakers_len;
} pf_registry_breaker_group_t;

typedef struct pf_registry_bulkhead {
    const char *name;
    pf_bulkhead_metrics_t metrics;
} pf_registry_bulkhead_t;

typedef struct pf_registry_ratelimit {
    const char *name;
    pf_ratelimit_metrics_t metrics;
} pf_registry_ratelimit_t;

typedef struct pf_registry_leak_detector {
    const char *name;
    pf_leak_metrics_t metrics;
} pf_registry_leak_detector_t;

/* A degradation manager, with the names of its modes (normal first). */
typedef struct pf_registry_degrade {
    const char *name;
    pf_degrade_metrics_t metrics;
    const char **modes;
    size_t modes_len;
} pf_registry_degrade_t;

/* One check of a health checker, as its latest result left it (from
 * pf_health_snapshot: nothing is run to take a snapshot). */
typedef struct pf_registry_health_check {
    const char *name;
    pf_health_status_t status;
    const char *message;
    bool critical;
    bool timed_out;
    double duration; /* seconds the last run took */
    int64_t time_ns; /* wall-clock ns of the last result; 0 =
                        never run */
    unsigned consecutive_failures;
    uint64_t runs;
    uint64_t failures;
    uint64_t timeouts;
} pf_registry_health_check_t;

typedef struct pf_registry_health {
    const char *name;
    pf_health_metrics_t metrics;
    pf_registry_health_check_t *checks; /* in the order they were added */
    size_t checks_len;
} pf_registry_health_t;

/* The metrics of every object of a registry at one moment, plus the
 * process's. Each object's metrics are read at a slightly different
 * instant (one after the other, no global lock). Names are copies made
 * valid UTF-8 without ever merging two: a byte that is not valid UTF-8
 * becomes the text \xHH, and a backslash that would read as an escape is
 * doubled (docs/metrics.md, "Names that are not UTF-8"). Check messages
 * are copies with such bytes replaced by U+FFFD. Both export formats stay
 * valid. Arrays are sorted by the names as given (bytes); a NULL array has
 * length 0. The whole snapshot is freed by pf_registry_snapshot_free. */
typedef struct pf_registry_snapshot {
    int64_t wall_time_ns; /* when it was taken (Unix epoch) */
    bool has_process;     /* the registry's process_metrics */
    pf_process_metrics_t process;
    pf_registry_breaker_t *breakers;
    size_t breakers_len;
    pf_registry_breaker_group_t *breaker_groups;
    size_t breaker_groups_len;
    pf_registry_bulkhead_t *bulkheads;
    size_t bulkheads_len;
    pf_registry_ratelimit_t *ratelimits;
    size_t ratelimits_len;
    pf_registry_health_t *health; /* health checkers */
    size_t health_len;
    pf_registry_leak_detector_t *leak_detectors;
    size_t leak_detectors_len;
    pf_registry_degrade_t *degradations;
    size_t degradations_len;
} pf_registry_snapshot_t;

/* Export formats. */
typedef enum pf_metrics_format {
    PF_METRICS_PROMETHEUS = 0, /* text exposition format 0.0.4 */
    PF_METRICS_JSON = 1        /* one JSON object; see docs/metrics.md */
} pf_metrics_format_t;

/* The Content-Type of each format, for HTTP responses. */
#define PF_METRICS_PROMETHEUS_CONTENT_TYPE                                     \
    "text/plain; version=0.0.4; charset=utf-8"
#define PF_METRICS_JSON_CONTENT_TYPE "application/json"

/* Take a snapshot of r's objects (and of this process when r's config
 * asks for it) into a new *out. Returns 0, PF_EINVAL for NULL arguments,
 * or PF_ENOMEM (nothing is returned). A failed /proc read is not an
 * error: those fields are -1. Calls only the modules' metrics getters,
 * never user callbacks. Thread-safe; concurrent removals wait for it
 * (see the top of this file). */
PF_API int pf_registry_snapshot(pf_registry_t *r, pf_registry_snapshot_t **out);

/* Free a snapshot; NULL is a no-op. */
PF_API void pf_registry_snapshot_free(pf_registry_snapshot_t *s);

/* Render s in format fmt into a new NUL-terminated string *out (free it
 * with pf_free); *len, if len is not NULL, gets its length. Returns 0,
 * PF_EINVAL (NULL s or out, unknown fmt) or PF_ENOMEM (*out untouched).
 * Thread-safe (s is only read). */
PF_API int pf_registry_snapshot_export(const pf_registry_snapshot_t *s,
                                       pf_metrics_format_t fmt, char **out,
                                       size_t *len);

/* Snapshot r and render it: pf_registry_snapshot then
 * pf_registry_snapshot_export. Same results. Thread-safe. */
PF_API int pf_registry_export(pf_registry_t *r, pf_metrics_format_t fmt,
                              char **out, size_t *len);

/* The same into the caller's buffer buf of size bytes (NUL-terminated),
 * as snprintf would: *needed (if needed is not NULL) gets the size the
 * text needs, NUL included, on success and on PF_ERANGE. With size 0 the
 * call only measures (buf may be NULL): it returns 0 and sets *needed.
 * Returns 0, PF_EINVAL (NULL r, NULL buf with size > 0, unknown fmt),
 * PF_ENOMEM, or PF_ERANGE when the text does not fit (buf then holds
 * nothing useful). Two calls can need different sizes: the metrics move
 * in between. Thread-safe. */
PF_API int pf_registry_export_to(pf_registry_t *r, pf_metrics_format_t fmt,
                                 char *buf, size_t size, size_t *needed);

#ifdef __cplusplus
}
#endif

#endif /* PUFFINFLOW_REGISTRY_H */
