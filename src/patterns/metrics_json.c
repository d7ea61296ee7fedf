/* A registry snapshot as one JSON object (shape in docs/metrics.md),
 * written from the kinds' metric tables (metrics_desc.h):
 * {"puffinflow_version": ..., "time": ..., "process": {...},
 *  "breakers": [...], "breaker_groups": [...], "bulkheads": [...], ...}
 * Each object is {"name": ..., then one member per row with a JSON name,
 * then its children's array if its kind has any}. Names were made valid
 * UTF-8 by the snapshot, so the text is valid JSON (RFC 8259); unknown
 * values are written as null. */
#include <string.h>

#include "puffinflow/version.h"

#include "registry_impl.h"

static void
value(pf__sb_t *sb, pf__metric_value_t v)
{
    switch (v.kind) {
    case PF__V_UNKNOWN:
        pf__sb_append(sb, "null");
        return;
    case PF__V_INT:
        pf__sb_json_int(sb, v.i);
        return;
    case PF__V_NUM:
        pf__sb_json_num(sb, v.d);
        return;
    case PF__V_BOOL:
        pf__sb_json_bool(sb, v.i != 0);
        return;
    case PF__V_STR:
        pf__sb_json_str(sb, v.s);
        return;
    }
}

/* {"label": value, ...}, one member per label value. */
static void
split(pf__sb_t *sb, const pf__metric_split_t *sp, const void *m)
{
    bool first = true;
    size_t i;

    pf__sb_append(sb, "{");
    for (i = 0; i < sp->count(m); i++) {
        pf__sb_json_key(sb, &first, sp->label(m, i));
        value(sb, sp->value(m, i));
    }
    pf__sb_append(sb, "}");
}

/* The members of table t for the struct m. */
static void
members(pf__sb_t *sb, bool *first, const pf__metric_table_t *t, const char *m)
{
    size_t i;

    for (i = 0; i < t->len; i++) {
        const pf__metric_desc_t *r = &t->rows[i];
        bool present = r->when == NULL || r->when(m);
        pf__metric_value_t v;

        if (r->json == NULL || (r->json_when && !present)) {
            continue;
        }
        pf__sb_json_key(sb, first, r->json);
        if (r->store == PF__OBJECT) {
            bool f = true;

            if (!present) {
                pf__sb_append(sb, "null");
                continue;
            }
            pf__sb_append(sb, "{");
            members(sb, &f, r->sub, m + r->offset);
            pf__sb_append(sb, "}");
        } else if (r->json_fn != NULL) {
            r->json_fn(sb, m);
        } else if (r->split != NULL) {
            split(sb, r->split, m);
        } else {
            v = pf__metric_get(r, m);
            if (r->name != NULL && v.kind == PF__V_INT) {
                pf__sb_json_str(sb, r->name(m, v.i));
            } else {
                value(sb, v);
            }
        }
    }
}

static void array(pf__sb_t *sb, const pf__kind_desc_t *k, const char *items,
                  size_t len);

/* One object: its name, its metrics, its children. */
static void
object(pf__sb_t *sb, const pf__kind_desc_t *k, const char *item)
{
    const pf__kind_children_t *ch = k->children;
    const char *name;
    bool first = true;

    memcpy(&name, item, sizeof(name));
    pf__sb_append(sb, "{");
    pf__sb_json_member_str(sb, &first, "name", name);
    members(sb, &first, &k->metrics, item + k->metrics_offset);
    if (ch != NULL) {
        const char *children;
        size_t n;

        memcpy(&children, item + ch->items, sizeof(children));
        memcpy(&n, item + ch->len, sizeof(n));
        pf__sb_json_key(sb, &first, ch->json);
        array(sb, ch->kind, children, n);
    }
    pf__sb_append(sb, "}");
}

static void
array(pf__sb_t *sb, const pf__kind_desc_t *k, const char *items, size_t len)
{
    size_t i;

    pf__sb_append(sb, "[");
    for (i = 0; i < len; i++) {
        if (i > 0) {
            pf__sb_append(sb, ",");
        }
        object(sb, k, items + i * k->item_size);
    }
    pf__sb_append(sb, "]");
}

void
pf__metrics_json(const pf_registry_snapshot_t *s, pf__sb_t *sb)
{
    bool first = true;
    size_t i;

    pf__sb_append(sb, "{");
    pf__sb_json_member_str(sb, &first, "puffinflow_version", PF_VERSION_STRING);
    pf__sb_json_member_num(sb, &first, "time", (double)s->wall_time_ns / 1e9);
    if (s->has_process) {
        bool f = true;

        pf__sb_json_key(sb, &first, "process");
        pf__sb_append(sb, "{");
        members(sb, &f, &pf__process_metrics, (const char *)&s->process);
        pf__sb_append(sb, "}");
    }
    for (i = 0; i < pf__kinds_len; i++) {
        const pf__kind_desc_t *k = pf__kinds[i];
        const char *items;
        size_t len;

        if (k->kind == PF_REGISTRY_ANY) {
            continue; /* only inside another kind's items */
        }
        items = pf__kind_items(k, s, &len);
        pf__sb_json_key(sb, &first, k->json);
        array(sb, k, items, len);
    }
    pf__sb_append(sb, "}");
}
