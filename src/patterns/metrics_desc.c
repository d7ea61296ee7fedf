/* Reading a value as a metric table row describes it (metrics_desc.h):
 * the one place where a stored field becomes an exported value, so both
 * renderers agree on what is unknown and how each type is converted. */
#include <math.h>
#include <string.h>

#include "metrics_desc.h"

static pf__metric_value_t
v_int(int64_t i)
{
    pf__metric_value_t v = {PF__V_INT, i, 0, NULL};

    return v;
}

static pf__metric_value_t
v_num(double d)
{
    pf__metric_value_t v = {PF__V_NUM, 0, d, NULL};

    if (isnan(d)) {
        v.kind = PF__V_UNKNOWN;
    }
    return v;
}

/* Fields are copied out with memcpy: the offset comes from a table, and
 * this keeps the reads free of alignment and aliasing assumptions. */
pf__metric_value_t
pf__metric_get(const pf__metric_desc_t *d, const void *m)
{
    const char *p = (const char *)m + d->offset;
    pf__metric_value_t v = {PF__V_UNKNOWN, 0, 0, NULL};
    uint64_t u64;
    unsigned u;
    size_t z;
    int e;
    int64_t i64;
    double x;
    bool b;

    switch (d->store) {
    case PF__U64:
        memcpy(&u64, p, sizeof(u64));
        return v_int((int64_t)u64);
    case PF__UINT:
        memcpy(&u, p, sizeof(u));
        return v_int((int64_t)u);
    case PF__SIZE:
        memcpy(&z, p, sizeof(z));
        return v_int((int64_t)z);
    case PF__INT:
        memcpy(&e, p, sizeof(e));
        return v_int(e);
    case PF__I64_OPT:
        memcpy(&i64, p, sizeof(i64));
        return i64 < 0 ? v : v_int(i64);
    case PF__NS:
        memcpy(&i64, p, sizeof(i64));
        return v_num((double)i64 / 1e9);
    case PF__DOUBLE:
        memcpy(&x, p, sizeof(x));
        return v_num(x);
    case PF__DOUBLE_RAW:
        memcpy(&v.d, p, sizeof(v.d));
        v.kind = PF__V_NUM;
        return v;
    case PF__BOOL:
        memcpy(&b, p, sizeof(b));
        v.kind = PF__V_BOOL;
        v.i = b ? 1 : 0;
        return v;
    case PF__STR:
        memcpy(&v.s, p, sizeof(v.s));
        v.kind = PF__V_STR;
        return v;
    case PF__DERIVED:
        return d->get(m);
    case PF__OBJECT:
        break;
    }
    return v;
}

const char *
pf__kind_items(const pf__kind_desc_t *k, const pf_registry_snapshot_t *s,
               size_t *len)
{
    const char *items;

    *len = 0;
    if (k->kind == PF_REGISTRY_ANY) {
        return NULL; /* only a child kind: not in the snapshot itself */
    }
    memcpy(&items, (const char *)s + k->snap_items, sizeof(items));
    memcpy(len, (const char *)s + k->snap_len, sizeof(*len));
    return items;
}
