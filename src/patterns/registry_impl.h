/* The registry's internals, shared by registry.c (the container),
 * registry_kinds.c (each kind's descriptor and typed face, see
 * metrics_desc.h), metrics_snapshot.c, metrics_prom.c and metrics_json.c
 * (the exports). */
#ifndef PF_SRC_REGISTRY_IMPL_H
#define PF_SRC_REGISTRY_IMPL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "puffinflow/registry.h"

#include "metrics_desc.h"
#include "strbuf.h"

/* One object in a registry. Heap-allocated, so a pinned entry keeps its
 * address while the arrays around it change. All fields but the immutable
 * kind, name and object are under the registry's lock. */
typedef struct pf__reg_entry {
    pf_registry_kind_t kind;
    char *name;
    void *object;
    bool owned;    /* the registry frees object when the entry dies */
    bool removed;  /* unlinked; freed when pins falls to 0 */
    unsigned pins; /* exports and foreach visits reading it now */
} pf__reg_entry_t;

/* A foreach visit in progress: lives on the visiting thread's stack,
 * linked into the registry while its callback runs, so a remove called
 * from that callback knows which pin is its own caller's. */
typedef struct pf__reg_visit {
    struct pf__reg_visit *next;
    pthread_t thread;
    pf__reg_entry_t *entry;
} pf__reg_visit_t;

/* Lock order: the registry's lock is taken alone; it is never held while
 * a module's function that could call back into a registry runs, except
 * the kinds' create hooks and the metrics getters, which do not. */
struct pf_registry {
    bool is_default;      /* immutable */
    bool process_metrics; /* immutable after _new */
    bool cond_ok;         /* unpinned is usable (see registry.c) */
    pthread_mutex_t lock;
    pthread_cond_t unpinned; /* an entry's pins fell */
    /* Under lock: per kind, entries sorted by name (strcmp order). */
    pf__reg_entry_t **entries[PF_REGISTRY_KINDS];
    size_t len[PF_REGISTRY_KINDS];
    size_t cap[PF_REGISTRY_KINDS];
    /* Under lock: the default config of each kind for get-or-create
     * (config_size bytes, or NULL for the module's defaults). */
    void *defaults[PF_REGISTRY_KINDS];
    pf__reg_visit_t *visits; /* under lock */
};

/* Add object under name (copied). PF_EEXIST when the name is taken in
 * that kind (nothing changes), PF_EINVAL, PF_ENOMEM. */
int pf__registry_add(pf_registry_t *r, pf_registry_kind_t kind,
                     const char *name, void *object, bool owned);

/* Get-or-create: the object called name, created with the kind's create
 * hook from cfg (or the registry's default config for the kind when cfg
 * is NULL) when absent. Exactly one object is created however many
 * threads ask at once. */
int pf__registry_get(pf_registry_t *r, pf_registry_kind_t kind,
                     const char *name, const void *cfg, void **out);

/* Store a copy of cfg (config_size bytes) as the kind's default config,
 * after checking that the create hook accepts it. */
int pf__registry_set_defaults(pf_registry_t *r, pf_registry_kind_t kind,
                              const void *cfg);

/* Pin every entry of kind and return them in a new array (*out, *n;
 * *out may be NULL when *n is 0), sorted by name. 0 or PF_ENOMEM. */
int pf__registry_pin_all(pf_registry_t *r, pf_registry_kind_t kind,
                         pf__reg_entry_t ***out, size_t *n);

/* Unpin what pin_all returned and free the array; objects removed
 * meanwhile are freed now if they were the registry's. */
void pf__registry_unpin_all(pf_registry_t *r, pf__reg_entry_t **entries,
                            size_t n);

/* ---- exports (metrics_*.c) --------------------------------------------- */

/* Append s rendered as Prometheus text / as JSON. Allocation failures
 * are sticky in sb (see strbuf.h). */
void pf__metrics_prometheus(const pf_registry_snapshot_t *s, pf__sb_t *sb);
void pf__metrics_json(const pf_registry_snapshot_t *s, pf__sb_t *sb);

#endif /* PF_SRC_REGISTRY_IMPL_H */
