/* Metrics snapshots of a registry, and the export entry points.
 *
 * A snapshot pins the entries of one kind at a time, reads each object's
 * metrics through the module's own getter with no registry lock held,
 * then unpins. Names are copied and made valid UTF-8 here, once, so both
 * renderers (metrics_prom.c, metrics_json.c) can trust them. The process
 * block is a fresh read of /proc/self (procfs.h). */
#include <stddef.h>
#include <string.h>

#include "puffinflow/breaker.h"
#include "puffinflow/bulkhead.h"
#include "puffinflow/clock.h"
#include "puffinflow/degrade.h"
#include "puffinflow/error.h"
#include "puffinflow/health.h"
#include "puffinflow/leak.h"
#include "puffinflow/ratelimit.h"

#include "mem.h"
#include "procfs.h"
#include "registry_impl.h"

/* ---- UTF-8 ------------------------------------------------------------ */

/* Length of the valid UTF-8 sequence at p (1..4), or 0 when the bytes
 * there do not start one: overlong forms, surrogates and code points past
 * U+10FFFF are invalid (RFC 3629). */
static size_t
utf8_seq_len(const unsigned char *p)
{
    unsigned char c = p[0];

    if (c < 0x80) {
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        return (p[1] & 0xc0) == 0x80 ? 2 : 0;
    }
    if (c >= 0xe0 && c <= 0xef) {
        unsigned char lo = c == 0xe0 ? 0xa0 : 0x80;
        unsigned char hi = c == 0xed ? 0x9f : 0xbf;

        if (p[1] < lo || p[1] > hi || (p[2] & 0xc0) != 0x80) {
            return 0;
        }
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        unsigned char lo = c == 0xf0 ? 0x90 : 0x80;
        unsigned char hi = c == 0xf4 ? 0x8f : 0xbf;

        if (p[1] < lo || p[1] > hi || (p[2] & 0xc0) != 0x80 ||
            (p[3] & 0xc0) != 0x80) {
            return 0;
        }
        return 4;
    }
    return 0;
}

char *
pf__utf8_dup(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t len = strlen(s);
    char *out;
    size_t o = 0;

    /* At worst every byte becomes the 3-byte U+FFFD. The checks above
     * stop at the NUL (it is never a continuation byte), so they never
     * read past the string. */
    out = pf__malloc(len * 3 + 1);
    if (out == NULL) {
        return NULL;
    }
    while (*p != '\0') {
        size_t n = utf8_seq_len(p);

        if (n == 0) {
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            p++;
        } else {
            memcpy(out + o, p, n);
            o += n;
            p += n;
        }
    }
    out[o] = '\0';
    return out;
}

/* ---- collecting ------------------------------------------------------- */

static void
read_process(pf_process_metrics_t *pm)
{
    pf__proc_status_t st;
    int64_t v;

    pm->open_fds = -1;
    pm->max_fds = -1;
    pm->resident_bytes = -1;
    pm->virtual_bytes = -1;
    pm->threads = -1;
    if (pf__proc_count_fds(PF__PROC_ROOT, 0, &v) == 0) {
        pm->open_fds = v;
    }
    if (pf__proc_fd_limit(PF__PROC_ROOT, 0, &v) == 0) {
        pm->max_fds = v;
    }
    if (pf__proc_read_status(PF__PROC_ROOT, 0, &st) == 0) {
        pm->resident_bytes = st.rss_bytes;
        pm->virtual_bytes = st.vm_bytes;
        pm->threads = st.threads;
    }
}

/* ---- kinds that are a name and a metrics struct ------------------------ */

/* Items of such kinds start with const char *name; their metrics struct
 * sits at metrics_offset. read fills it from the object. */
typedef struct simple_kind {
    pf_registry_kind_t kind;
    size_t item_size;
    size_t metrics_offset;
    void (*read)(void *object, void *metrics);
} simple_kind_t;

static void
read_breaker(void *object, void *metrics)
{
    pf_breaker_metrics(object, metrics);
}

static void
read_bulkhead(void *object, void *metrics)
{
    pf_bulkhead_metrics(object, metrics);
}

static void
read_ratelimit(void *object, void *metrics)
{
    pf_ratelimit_metrics(object, metrics);
}

static const simple_kind_t k_breaker = {
    PF_REGISTRY_BREAKER, sizeof(pf_registry_breaker_t),
    offsetof(pf_registry_breaker_t, metrics), read_breaker};
static void
read_leak(void *object, void *metrics)
{
    pf_leak_detector_metrics(object, metrics);
}

static const simple_kind_t k_leak = {
    PF_REGISTRY_LEAK, sizeof(pf_registry_leak_detector_t),
    offsetof(pf_registry_leak_detector_t, metrics), read_leak};
static const simple_kind_t k_bulkhead = {
    PF_REGISTRY_BULKHEAD, sizeof(pf_registry_bulkhead_t),
    offsetof(pf_registry_bulkhead_t, metrics), read_bulkhead};
static const simple_kind_t k_ratelimit = {
    PF_REGISTRY_RATELIMIT, sizeof(pf_registry_ratelimit_t),
    offsetof(pf_registry_ratelimit_t, metrics), read_ratelimit};

/* Fill *items (a new array) and *len with every object of the kind. On
 * PF_ENOMEM the items made so far stay in *items / *len for the caller
 * to free. */
static int
collect_simple(pf_registry_t *r, const simple_kind_t *k, void **items,
               size_t *len)
{
    pf__reg_entry_t **pinned;
    char *a;
    size_t n;
    size_t i;
    int rc;

    rc = pf__registry_pin_all(r, k->kind, &pinned, &n);
    if (rc != 0 || n == 0) {
        return rc;
    }
    a = pf__calloc(n, k->item_size);
    *items = a;
    rc = a == NULL ? PF_ENOMEM : 0;
    for (i = 0; i < n && rc == 0; i++) {
        char *item = a + i * k->item_size;
        char *name = pf__utf8_dup(pinned[i]->name);

        if (name == NULL) {
            rc = PF_ENOMEM;
            break;
        }
        memcpy(item, &name, sizeof(name));
        k->read(pinned[i]->object, item + k->metrics_offset);
        (*len)++;
    }
    pf__registry_unpin_all(r, pinned, n);
    return rc;
}

static void
free_simple(const simple_kind_t *k, void *items, size_t len)
{
    char *a = items;
    size_t i;

    for (i = 0; i < len; i++) {
        char *name;

        memcpy(&name, a + i * k->item_size, sizeof(name));
        pf__free(name);
    }
    pf__free(items);
}

/* ---- breaker groups --------------------------------------------------- */

static void
group_item_clear(pf_registry_breaker_group_t *g)
{
    size_t i;

    for (i = 0; i < g->breakers_len; i++) {
        pf__free((char *)g->breakers[i].name);
    }
    pf__free(g->breakers);
    pf__free((char *)g->name);
}

typedef struct group_visit {
    pf_registry_breaker_group_t *g;
    size_t cap;
    int rc;
} group_visit_t;

/* Append one of the group's breakers (the group keeps it alive during the
 * visit). Stops the walk on allocation failure. */
static int
group_visit(const char *key, pf_breaker_t *b, void *arg)
{
    group_visit_t *v = arg;
    pf_registry_breaker_t *item;
    char *name;

    (void)key;
    if (pf__grow((void **)&v->g->breakers, &v->cap, v->g->breakers_len + 1,
                 sizeof(*v->g->breakers)) != 0) {
        v->rc = PF_ENOMEM;
        return 1;
    }
    name = pf__utf8_dup(pf_breaker_name(b));
    if (name == NULL) {
        v->rc = PF_ENOMEM;
        return 1;
    }
    item = &v->g->breakers[v->g->breakers_len++];
    item->name = name;
    pf_breaker_metrics(b, &item->metrics);
    return 0;
}

static int
collect_groups(pf_registry_t *r, pf_registry_snapshot_t *s)
{
    pf__reg_entry_t **pinned;
    size_t n;
    size_t i;
    int rc;

    rc = pf__registry_pin_all(r, PF_REGISTRY_BREAKER_GROUP, &pinned, &n);
    if (rc != 0 || n == 0) {
        return rc;
    }
    s->breaker_groups = pf__calloc(n, sizeof(*s->breaker_groups));
    rc = s->breaker_groups == NULL ? PF_ENOMEM : 0;
    for (i = 0; i < n && rc == 0; i++) {
        pf_registry_breaker_group_t *g = &s->breaker_groups[i];
        group_visit_t v = {g, 0, 0};

        s->breaker_groups_len++;
        g->name = pf__utf8_dup(pinned[i]->name);
        if (g->name == NULL) {
            rc = PF_ENOMEM;
            break;
        }
        pf_breaker_group_metrics(pinned[i]->object, &g->metrics);
        rc = pf_breaker_group_foreach(pinned[i]->object, group_visit, &v);
        if (v.rc != 0) {
            rc = v.rc;
        }
    }
    pf__registry_unpin_all(r, pinned, n);
    return rc;
}

/* ---- health checkers -------------------------------------------------- */

static void
health_item_clear(pf_registry_health_t *h)
{
    size_t i;

    for (i = 0; i < h->checks_len; i++) {
        pf__free((char *)h->checks[i].name);
        pf__free((char *)h->checks[i].message);
    }
    pf__free(h->checks);
    pf__free((char *)h->name);
}

/* Copy the checks of a health snapshot report (nothing runs). */
static int
health_checks(pf_health_checker_t *hc, pf_registry_health_t *h)
{
    pf_health_report_t *rep;
    size_t n;
    size_t i;
    int rc;

    rc = pf_health_snapshot(hc, &rep);
    if (rc != 0) {
        return rc;
    }
    n = pf_health_report_count(rep);
    if (n > 0) {
        h->checks = pf__calloc(n, sizeof(*h->checks));
        if (h->checks == NULL) {
            pf_health_report_free(rep);
            return PF_ENOMEM;
        }
    }
    for (i = 0; i < n; i++) {
        const pf_health_entry_t *e = pf_health_report_entry(rep, i);
        pf_registry_health_check_t *c = &h->checks[i];

        c->name = pf__utf8_dup(e->name);
        c->message = pf__utf8_dup(e->message);
        h->checks_len++;
        if (c->name == NULL || c->message == NULL) {
            pf_health_report_free(rep);
            return PF_ENOMEM;
        }
        c->status = e->status;
        c->critical = e->critical;
        c->timed_out = e->timed_out;
        c->duration = e->duration;
        c->time_ns = e->time_ns;
        c->consecutive_failures = e->consecutive_failures;
        c->runs = e->runs;
        c->failures = e->failures;
        c->timeouts = e->timeouts;
    }
    pf_health_report_free(rep);
    return 0;
}

static int
collect_health(pf_registry_t *r, pf_registry_snapshot_t *s)
{
    pf__reg_entry_t **pinned;
    size_t n;
    size_t i;
    int rc;

    rc = pf__registry_pin_all(r, PF_REGISTRY_HEALTH, &pinned, &n);
    if (rc != 0 || n == 0) {
        return rc;
    }
    s->health = pf__calloc(n, sizeof(*s->health));
    rc = s->health == NULL ? PF_ENOMEM : 0;
    for (i = 0; i < n && rc == 0; i++) {
        pf_registry_health_t *h = &s->health[i];

        s->health_len++;
        h->name = pf__utf8_dup(pinned[i]->name);
        if (h->name == NULL) {
            rc = PF_ENOMEM;
            break;
        }
        pf_health_metrics(pinned[i]->object, &h->metrics);
        rc = health_checks(pinned[i]->object, h);
    }
    pf__registry_unpin_all(r, pinned, n);
    return rc;
}

/* ---- degradation managers --------------------------------------------- */

static void
degradation_item_clear(pf_registry_degradation_t *g)
{
    size_t i;

    for (i = 0; i < g->modes_len; i++) {
        pf__free((char *)g->modes[i]);
    }
    pf__free(g->modes);
    pf__free((char *)g->name);
}

/* Copy a manager's mode names (immutable after it was made). */
static int
degradation_modes(pf_degradation_t *d, pf_registry_degradation_t *g)
{
    size_t n = pf_degradation_mode_count(d);
    size_t i;

    if (n == 0) {
        return 0;
    }
    g->modes = pf__calloc(n, sizeof(*g->modes));
    if (g->modes == NULL) {
        return PF_ENOMEM;
    }
    for (i = 0; i < n; i++) {
        g->modes[i] = pf__utf8_dup(pf_degradation_mode_name_at(d, i));
        if (g->modes[i] == NULL) {
            return PF_ENOMEM;
        }
        g->modes_len++;
    }
    return 0;
}

static int
collect_degradations(pf_registry_t *r, pf_registry_snapshot_t *s)
{
    pf__reg_entry_t **pinned;
    size_t n;
    size_t i;
    int rc;

    rc = pf__registry_pin_all(r, PF_REGISTRY_DEGRADE, &pinned, &n);
    if (rc != 0 || n == 0) {
        return rc;
    }
    s->degradations = pf__calloc(n, sizeof(*s->degradations));
    rc = s->degradations == NULL ? PF_ENOMEM : 0;
    for (i = 0; i < n && rc == 0; i++) {
        pf_registry_degradation_t *g = &s->degradations[i];

        s->degradations_len++;
        g->name = pf__utf8_dup(pinned[i]->name);
        if (g->name == NULL) {
            rc = PF_ENOMEM;
            break;
        }
        pf_degradation_metrics(pinned[i]->object, &g->metrics);
        rc = degradation_modes(pinned[i]->object, g);
    }
    pf__registry_unpin_all(r, pinned, n);
    return rc;
}

/* ---- the snapshot ----------------------------------------------------- */

int
pf_registry_snapshot(pf_registry_t *r, pf_registry_snapshot_t **out)
{
    pf_registry_snapshot_t *s;
    void *items = NULL;
    size_t len = 0;
    int rc;

    if (r == NULL || out == NULL) {
        return PF_EINVAL;
    }
    s = pf__calloc(1, sizeof(*s));
    if (s == NULL) {
        return PF_ENOMEM;
    }
    s->wall_time_ns = pf_wall_time_ns();
    s->has_process = r->process_metrics;
    if (s->has_process) {
        read_process(&s->process);
    }
    rc = collect_simple(r, &k_breaker, &items, &len);
    s->breakers = items;
    s->breakers_len = len;
    if (rc == 0) {
        rc = collect_groups(r, s);
    }
    if (rc == 0) {
        items = NULL;
        len = 0;
        rc = collect_simple(r, &k_bulkhead, &items, &len);
        s->bulkheads = items;
        s->bulkheads_len = len;
    }
    if (rc == 0) {
        items = NULL;
        len = 0;
        rc = collect_simple(r, &k_ratelimit, &items, &len);
        s->ratelimits = items;
        s->ratelimits_len = len;
    }
    if (rc == 0) {
        rc = collect_health(r, s);
    }
    if (rc == 0) {
        items = NULL;
        len = 0;
        rc = collect_simple(r, &k_leak, &items, &len);
        s->leak_detectors = items;
        s->leak_detectors_len = len;
    }
    if (rc == 0) {
        rc = collect_degradations(r, s);
    }
    if (rc != 0) {
        pf_registry_snapshot_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void
pf_registry_snapshot_free(pf_registry_snapshot_t *s)
{
    size_t i;

    if (s == NULL) {
        return;
    }
    free_simple(&k_breaker, s->breakers, s->breakers_len);
    for (i = 0; i < s->breaker_groups_len; i++) {
        group_item_clear(&s->breaker_groups[i]);
    }
    pf__free(s->breaker_groups);
    free_simple(&k_bulkhead, s->bulkheads, s->bulkheads_len);
    free_simple(&k_ratelimit, s->ratelimits, s->ratelimits_len);
    for (i = 0; i < s->health_len; i++) {
        health_item_clear(&s->health[i]);
    }
    pf__free(s->health);
    free_simple(&k_leak, s->leak_detectors, s->leak_detectors_len);
    for (i = 0; i < s->degradations_len; i++) {
        degradation_item_clear(&s->degradations[i]);
    }
    pf__free(s->degradations);
    pf__free(s);
}

/* ---- exporting -------------------------------------------------------- */

static int
render(const pf_registry_snapshot_t *s, pf_metrics_format_t fmt, pf__sb_t *sb)
{
    switch (fmt) {
    case PF_METRICS_PROMETHEUS:
        pf__metrics_prometheus(s, sb);
        return 0;
    case PF_METRICS_JSON:
        pf__metrics_json(s, sb);
        return 0;
    }
    return PF_EINVAL;
}

static bool
format_ok(pf_metrics_format_t fmt)
{
    return fmt == PF_METRICS_PROMETHEUS || fmt == PF_METRICS_JSON;
}

int
pf_registry_snapshot_export(const pf_registry_snapshot_t *s,
                            pf_metrics_format_t fmt, char **out, size_t *len)
{
    pf__sb_t sb = PF__SB_INIT;
    size_t n;
    int rc;

    if (s == NULL || out == NULL || !format_ok(fmt)) {
        return PF_EINVAL;
    }
    render(s, fmt, &sb);
    n = sb.len;
    rc = pf__sb_finish(&sb, out);
    if (rc == 0 && len != NULL) {
        *len = n;
    }
    return rc;
}

int
pf_registry_export(pf_registry_t *r, pf_metrics_format_t fmt, char **out,
                   size_t *len)
{
    pf_registry_snapshot_t *s;
    int rc;

    if (r == NULL || out == NULL || !format_ok(fmt)) {
        return PF_EINVAL;
    }
    rc = pf_registry_snapshot(r, &s);
    if (rc != 0) {
        return rc;
    }
    rc = pf_registry_snapshot_export(s, fmt, out, len);
    pf_registry_snapshot_free(s);
    return rc;
}

int
pf_registry_export_to(pf_registry_t *r, pf_metrics_format_t fmt, char *buf,
                      size_t size, size_t *needed)
{
    pf_registry_snapshot_t *s;
    pf__sb_t sb = PF__SB_INIT;
    int rc;

    if (r == NULL || buf == NULL || size == 0 || !format_ok(fmt)) {
        return PF_EINVAL;
    }
    rc = pf_registry_snapshot(r, &s);
    if (rc != 0) {
        return rc;
    }
    render(s, fmt, &sb);
    pf_registry_snapshot_free(s);
    return pf__sb_copy_out(&sb, buf, size, needed);
}
