/* A registry snapshot as Prometheus text, exposition format 0.0.4,
 * written from the kinds' metric tables (metrics_desc.h).
 *
 * Every metric family is written as one group: "# HELP", "# TYPE", then
 * one sample per object (and per label value), since the format requires
 * a family's samples to be contiguous; so the text is written family by
 * family, each walking every object of its kind (a kind's items, then
 * the same kind inside other kinds' items: a group's breakers after the
 * standalone ones). A family with no samples is left out. Names are fixed
 * strings of ours (see docs/metrics.md, the list is part of the API);
 * label values are escaped with pf__sb_prom_label (backslash, double
 * quote, line feed) after the snapshot made them valid UTF-8. No
 * timestamps: the scraper stamps the samples. */
#include <math.h>
#include <string.h>

#include "puffinflow/version.h"

#include "registry_impl.h"

typedef struct label {
    const char *key;
    const char *value;
} label_t;

/* Append v in decimal. The renderer writes thousands of numbers per
 * scrape; formatting them by hand instead of through printf halves its
 * cost. */
static void
put_int(pf__sb_t *sb, int64_t v)
{
    char buf[24];
    char *p = buf + sizeof(buf);
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;

    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0) {
        *--p = '-';
    }
    pf__sb_append_n(sb, p, (size_t)(buf + sizeof(buf) - p));
}

/* HELP texts are constants of ours with no backslash or line feed, so they
 * need no escaping. */
static void
family(pf__sb_t *sb, const char *prefix, const char *name, const char *type,
       const char *help)
{
    pf__sb_append(sb, "# HELP ");
    pf__sb_append(sb, prefix);
    pf__sb_append(sb, name);
    pf__sb_append(sb, " ");
    pf__sb_append(sb, help);
    pf__sb_append(sb, "\n# TYPE ");
    pf__sb_append(sb, prefix);
    pf__sb_append(sb, name);
    pf__sb_append(sb, " ");
    pf__sb_append(sb, type);
    pf__sb_append(sb, "\n");
}

static void
labels(pf__sb_t *sb, const label_t *l, size_t n)
{
    size_t i;

    if (n == 0) {
        return;
    }
    for (i = 0; i < n; i++) {
        pf__sb_append(sb, i == 0 ? "{" : ",");
        pf__sb_append(sb, l[i].key);
        pf__sb_append(sb, "=\"");
        pf__sb_prom_label(sb, l[i].value);
        pf__sb_append(sb, "\"");
    }
    pf__sb_append(sb, "}");
}

/* A float value as Prometheus reads it: NaN, +Inf, -Inf, integers without
 * an exponent, others by pf__fmt_double (shortest exact form, '.' as the
 * decimal point whatever the process locale). */
static void
value(pf__sb_t *sb, double v)
{
    char buf[PF__NUM_BUF];

    if (isnan(v)) {
        pf__sb_append(sb, "NaN");
    } else if (isinf(v)) {
        pf__sb_append(sb, v > 0 ? "+Inf" : "-Inf");
    } else if (v == floor(v) && fabs(v) < 1e15) {
        put_int(sb, (int64_t)v);
    } else {
        pf__fmt_double(buf, v);
        pf__sb_append(sb, buf);
    }
}

/* A family written lazily: HELP and TYPE go out before its first sample,
 * so a family no object has a value for is left out entirely. */
typedef struct lazy_family {
    const char *prefix;
    const char *name;
    const char *type;
    const char *help;
    bool started;
} lazy_family_t;

/* One sample; an unknown value (a time that never happened, a figure not
 * known yet) is left out. Integers are written exactly, whatever their
 * size (a double would round past 2^53). */
static void
sample(pf__sb_t *sb, lazy_family_t *f, const label_t *l, size_t n,
       pf__metric_value_t v)
{
    if (v.kind == PF__V_UNKNOWN || v.kind == PF__V_STR) {
        return;
    }
    if (!f->started) {
        family(sb, f->prefix, f->name, f->type, f->help);
        f->started = true;
    }
    pf__sb_append(sb, f->prefix);
    pf__sb_append(sb, f->name);
    labels(sb, l, n);
    pf__sb_append(sb, " ");
    if (v.kind == PF__V_NUM) {
        value(sb, v.d);
    } else {
        put_int(sb, v.i);
    }
    pf__sb_append(sb, "\n");
}

/* The rows [first, end) of a table that make one family, and the object
 * row they sit in (NULL for the kind's own table). */
typedef struct family_rows {
    lazy_family_t f;
    const pf__metric_desc_t *rows;
    size_t first;
    size_t end;
    const pf__metric_desc_t *via;
} family_rows_t;

/* The samples of one object: m is its metrics struct, l[0..n) the labels
 * naming it, with room for one more. */
static void
object_samples(pf__sb_t *sb, family_rows_t *fr, const char *m, label_t *l,
               size_t n)
{
    size_t i, j;

    if (fr->via != NULL) {
        if (fr->via->when != NULL && !fr->via->when(m)) {
            return;
        }
        m += fr->via->offset;
    }
    for (i = fr->first; i < fr->end; i++) {
        const pf__metric_desc_t *r = &fr->rows[i];
        const pf__metric_split_t *sp = r->split;

        if (r->prom == NULL || (r->when != NULL && !r->when(m))) {
            continue;
        }
        if (sp != NULL) {
            for (j = 0; j < sp->count(m); j++) {
                l[n] = (label_t){sp->key, sp->label(m, j)};
                sample(sb, &fr->f, l, n + 1, sp->value(m, j));
            }
        } else if (r->label_key != NULL) {
            l[n] = (label_t){r->label_key, r->label_value};
            sample(sb, &fr->f, l, n + 1, pf__metric_get(r, m));
        } else {
            sample(sb, &fr->f, l, n, pf__metric_get(r, m));
        }
    }
}

static const char *
item_name(const char *item)
{
    const char *name;

    memcpy(&name, item, sizeof(name));
    return name;
}

/* One family over every object of kind k: its own items, then its items
 * inside the items of other kinds, with the parent's name as a label. */
static void
family_samples(const pf_registry_snapshot_t *s, pf__sb_t *sb,
               const pf__kind_desc_t *k, family_rows_t *fr)
{
    const char *items;
    size_t len, i, j, p;

    items = pf__kind_items(k, s, &len);
    for (i = 0; i < len; i++) {
        const char *item = items + i * k->item_size;
        label_t l[3] = {{k->name_label, item_name(item)}};

        object_samples(sb, fr, item + k->metrics_offset, l, 1);
    }
    for (p = 0; p < pf__kinds_len; p++) {
        const pf__kind_children_t *ch = pf__kinds[p]->children;

        if (ch == NULL || ch->kind != k) {
            continue;
        }
        items = pf__kind_items(pf__kinds[p], s, &len);
        for (i = 0; i < len; i++) {
            const char *parent = items + i * pf__kinds[p]->item_size;
            const char *children;
            size_t n;

            memcpy(&children, parent + ch->items, sizeof(children));
            memcpy(&n, parent + ch->len, sizeof(n));
            for (j = 0; j < n; j++) {
                const char *child = children + j * k->item_size;
                label_t own = {k->name_label, item_name(child)};
                label_t up = {ch->parent_label, item_name(parent)};
                label_t l[3] = {own, up};

                if (ch->parent_label_first) {
                    l[0] = up;
                    l[1] = own;
                }
                object_samples(sb, fr, child + k->metrics_offset, l, 2);
            }
        }
    }
}

static const char *
type_name(pf__metric_type_t type)
{
    return type == PF__COUNTER ? "counter" : "gauge";
}

/* Where the family starting at row i ends: rows with the same family
 * name, and JSON-only rows between them, are one family. */
static size_t
family_end(const pf__metric_table_t *t, size_t i)
{
    size_t end = i + 1;

    while (end < t->len && t->rows[end].store != PF__OBJECT &&
           (t->rows[end].prom == NULL ||
            strcmp(t->rows[end].prom, t->rows[i].prom) == 0)) {
        end++;
    }
    return end;
}

/* Every family of table t of kind k; via is the object row t describes
 * (its rows are families of the kind too), NULL for the kind's own. */
static void
prom_table(const pf_registry_snapshot_t *s, pf__sb_t *sb,
           const pf__kind_desc_t *k, const pf__metric_table_t *t,
           const pf__metric_desc_t *via)
{
    size_t i = 0;

    while (i < t->len) {
        const pf__metric_desc_t *r = &t->rows[i];
        family_rows_t fr;

        if (r->store == PF__OBJECT) {
            prom_table(s, sb, k, r->sub, r);
            i++;
            continue;
        }
        if (r->prom == NULL) {
            i++;
            continue;
        }
        fr.f = (lazy_family_t){k->prom_prefix, r->prom, type_name(r->type),
                               r->help, false};
        fr.rows = t->rows;
        fr.first = i;
        fr.end = family_end(t, i);
        fr.via = via;
        family_samples(s, sb, k, &fr);
        i = fr.end;
    }
}

/* The process block: one unlabelled sample per family, each left out
 * when unknown. */
static void
prom_process(const pf_registry_snapshot_t *s, pf__sb_t *sb)
{
    const pf__metric_table_t *t = &pf__process_metrics;
    size_t i;

    if (!s->has_process) {
        return;
    }
    for (i = 0; i < t->len; i++) {
        const pf__metric_desc_t *r = &t->rows[i];
        family_rows_t fr = {{"puffinflow_process_", r->prom, type_name(r->type),
                             r->help, false},
                            t->rows,
                            i,
                            i + 1,
                            NULL};
        label_t none[1];

        object_samples(sb, &fr, (const char *)&s->process, none, 0);
    }
}

void
pf__metrics_prometheus(const pf_registry_snapshot_t *s, pf__sb_t *sb)
{
    label_t version = {"version", PF_VERSION_STRING};
    pf__metric_value_t one = {PF__V_INT, 1, 0, NULL};
    lazy_family_t info = {
        "puffinflow_", "info", "gauge",
        "Always 1; the version label is the puffinflow library's.", false};
    size_t i;

    sample(sb, &info, &version, 1, one);
    prom_process(s, sb);
    for (i = 0; i < pf__kinds_len; i++) {
        prom_table(s, sb, pf__kinds[i], &pf__kinds[i]->metrics, NULL);
    }
}
