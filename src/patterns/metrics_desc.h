/* How each kind of registry object is described once, as data: the hooks
 * the registry needs (create, free), the snapshot needs (read the metrics,
 * copy what else an item holds) and a table of its metrics, which the
 * snapshot's two renderers (metrics_prom.c, metrics_json.c) walk and the
 * tests check docs/metrics.md against. The descriptors themselves are in
 * registry_kinds.c; adding a metric is adding a row there, adding a kind
 * is adding a descriptor there (plus its enum value, typed functions and
 * snapshot array in registry.h).
 *
 * A table describes one struct (a kind's pf_<kind>_metrics_t, or a struct
 * inside it). Each row is one value of it: its JSON member, its Prometheus
 * family, or both, in JSON member order. Prometheus writes families in
 * row order too: consecutive rows naming the same family (JSON-only rows
 * may sit between them) are one family, each row adding its own samples
 * (calls_total{outcome="success"}, {outcome="failure"}, ...), written
 * object by object. Where the two formats order or compute a value
 * differently, the value has a JSON-only and a Prometheus-only row (a
 * breaker's failures, a bulkhead's peak_in_use, a leak sample's threads).
 * Only one level of PF__OBJECT nesting is supported. */
#ifndef PF_SRC_METRICS_DESC_H
#define PF_SRC_METRICS_DESC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "puffinflow/registry.h"

#include "strbuf.h"

typedef enum pf__metric_type {
    PF__GAUGE,
    PF__COUNTER /* its Prometheus name ends in _total */
} pf__metric_type_t;

/* How a row's value is stored at its offset. */
typedef enum pf__metric_store {
    PF__U64,        /* uint64_t */
    PF__UINT,       /* unsigned */
    PF__SIZE,       /* size_t */
    PF__INT,        /* int, or an enum */
    PF__I64_OPT,    /* int64_t; negative = unknown */
    PF__NS,         /* int64_t nanoseconds, exported as seconds */
    PF__DOUBLE,     /* NaN = unknown */
    PF__DOUBLE_RAW, /* double; Prometheus writes a NaN as NaN */
    PF__BOOL,       /* bool: JSON true/false, Prometheus 1/0 */
    PF__STR,        /* const char * (JSON only) */
    PF__OBJECT,     /* a struct described by .sub: a JSON object (null when
                       .when says it is absent); in Prometheus its rows are
                       families of the kind, without samples when absent */
    PF__DERIVED     /* computed by .get from the whole struct */
} pf__metric_store_t;

/* A value read from a row. UNKNOWN: Prometheus leaves the sample out,
 * JSON writes null. A NUM that is NaN is unknown too. */
typedef struct pf__metric_value {
    enum { PF__V_UNKNOWN, PF__V_INT, PF__V_NUM, PF__V_BOOL, PF__V_STR } kind;
    int64_t i;     /* INT, BOOL (0 or 1) */
    double d;      /* NUM */
    const char *s; /* STR */
} pf__metric_value_t;

/* A value with one sample per label value (Prometheus), written in JSON
 * as an object with one member per label value. */
typedef struct pf__metric_split {
    const char *key; /* the Prometheus label */
    size_t (*count)(const void *m);
    const char *(*label)(const void *m, size_t i);
    pf__metric_value_t (*value)(const void *m, size_t i);
} pf__metric_split_t;

typedef struct pf__metric_table pf__metric_table_t;

/* One row. Hooks get the struct the table describes (m). */
typedef struct pf__metric_desc {
    const char *json; /* member name; NULL = not in JSON */
    const char *prom; /* family name after the kind's prefix; NULL = not
                         in Prometheus */
    pf__metric_type_t type;
    pf__metric_store_t store;
    size_t offset;    /* of the value in m (unused for DERIVED) */
    const char *unit; /* "seconds", "bytes", "percent", ...; NULL = a
                         count or a code; the family name carries it */
    const char *help; /* the family's HELP; NULL on the later rows of a
                         family */
    /* Optional. */
    const char *label_key;   /* a fixed label of this row's samples, */
    const char *label_value; /* as in calls_total{outcome="success"} */
    const pf__metric_split_t *split;
    pf__metric_value_t (*get)(const void *m); /* PF__DERIVED */
    /* JSON writes the name of the integer value instead (NULL -> null). */
    const char *(*name)(const void *m, int64_t v);
    /* JSON writes the value with this instead (a list, say). */
    void (*json_fn)(pf__sb_t *sb, const void *m);
    /* False: no Prometheus sample; with json_when, no JSON member either;
     * for a PF__OBJECT, absent (null). */
    bool (*when)(const void *m);
    bool json_when;
    const pf__metric_table_t *sub; /* PF__OBJECT */
} pf__metric_desc_t;

struct pf__metric_table {
    const pf__metric_desc_t *rows;
    size_t len;
};

#define PF__TABLE(rows)                                                        \
    {                                                                          \
        (rows), sizeof(rows) / sizeof((rows)[0])                               \
    }

struct pf__kind_desc;

/* Items of another kind inside each item (a group's breakers, a checker's
 * checks): a JSON array member after the item's own members, and in
 * Prometheus samples of the child kind's families carrying the parent's
 * name as one more label. */
typedef struct pf__kind_children {
    const struct pf__kind_desc *kind;
    const char *json; /* the array's member name */
    size_t items;     /* offsetof the array pointer in the parent item */
    size_t len;       /* offsetof its size_t length */
    const char *parent_label;
    bool parent_label_first; /* {checker=..,check=..}, not {name=..,group=..} */
} pf__kind_children_t;

/* Everything the registry, the snapshot and the exports know of a kind.
 * Snapshot items are structs that start with const char *name and hold
 * the kind's metrics struct at metrics_offset. */
typedef struct pf__kind_desc {
    /* Registry: kind is PF_REGISTRY_ANY for a kind that exists only inside
     * another's items (health checks), which has no hooks. */
    pf_registry_kind_t kind;
    const char *label;  /* pf_registry_kind_name */
    size_t config_size; /* sizeof the module's config */
    /* Create an object called name from cfg (NULL = the module's defaults,
     * else a pointer to the module's config struct, whose name field is
     * replaced by name). Runs under the registry's lock: library code
     * only, never a user callback. */
    int (*create)(const void *cfg, const char *name, void **out);
    void (*destroy)(void *object); /* the module's _free */

    /* Snapshot: the array and its length in pf_registry_snapshot_t. */
    size_t snap_items;
    size_t snap_len;
    size_t item_size;
    size_t metrics_offset;
    void (*read)(void *object, void *metrics); /* the module's getter */
    /* Copy what else an item holds (may fail with PF_ENOMEM, leaving what
     * it made in the item) and free it; NULL when there is nothing. */
    int (*fill)(void *object, void *item);
    void (*clear)(void *item);

    /* Exports. */
    const char *json;        /* the snapshot member ("breakers"); NULL for
                                a kind that is only a child */
    const char *prom_prefix; /* "puffinflow_breaker_" */
    const char *name_label;  /* the label carrying the item's name */
    pf__metric_table_t metrics;
    const pf__kind_children_t *children;
} pf__kind_desc_t;

/* Every kind in export order (breakers, their groups, bulkheads, rate
 * limiters, health checkers, their checks, leak detectors, degradation
 * managers), and the registry kinds by pf_registry_kind_t. */
extern const pf__kind_desc_t *const pf__kinds[];
extern const size_t pf__kinds_len;
extern const pf__kind_desc_t *const pf__reg_kinds[PF_REGISTRY_KINDS];

/* The process block: a table of pf_process_metrics_t, exported without
 * labels as "puffinflow_process_*" and as the JSON object "process". */
extern const pf__metric_table_t pf__process_metrics;

/* The value of row d in the struct m describes. */
pf__metric_value_t pf__metric_get(const pf__metric_desc_t *d, const void *m);

/* The items of kind k in s (NULL when there are none) and their number. */
const char *pf__kind_items(const pf__kind_desc_t *k,
                           const pf_registry_snapshot_t *s, size_t *len);

#endif /* PF_SRC_METRICS_DESC_H */
