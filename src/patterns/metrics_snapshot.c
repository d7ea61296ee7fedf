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

/* ---- kinds ------------------------------------------------------------ */

/* How the objects of one kind are copied. Items start with const char
 * *name; their metrics struct sits at metrics_offset and read fills it
 * from the object. Kinds whose items hold more (a group's breakers, a
 * checker's checks, a manager's modes) have fill, which copies that and
 * may fail with PF_ENOMEM leaving what it made in the item, and clear,
 * which frees what fill made; the other kinds have NULL for both. */
typedef struct snap_kind {
    pf_registry_kind_t kind;
    size_t item_size;
    size_t metrics_offset;
    void (*read)(void *object, void *metrics);
    int (*fill)(void *object, void *item);
    void (*clear)(void *item);
} snap_kind_t;

static void
read_breaker(void *object, void *metrics)
{
    pf_breaker_metrics(object, metrics);
}

static const snap_kind_t k_breaker = {PF_REGISTRY_BREAKER,
                                      sizeof(pf_registry_breaker_t),
                                      offsetof(pf_registry_breaker_t, metrics),
                                      read_breaker,
                                      NULL,
                                      NULL};

static void
read_bulkhead(void *object, void *metrics)
{
    pf_bulkhead_metrics(object, metrics);
}

static const snap_kind_t k_bulkhead = {
    PF_REGISTRY_BULKHEAD,
    sizeof(pf_registry_bulkhead_t),
    offsetof(pf_registry_bulkhead_t, metrics),
    read_bulkhead,
    NULL,
    NULL};

static void
read_ratelimit(void *object, void *metrics)
{
    pf_ratelimit_metrics(object, metrics);
}

static const snap_kind_t k_ratelimit = {
    PF_REGISTRY_RATELIMIT,
    sizeof(pf_registry_ratelimit_t),
    offsetof(pf_registry_ratelimit_t, metrics),
    read_ratelimit,
    NULL,
    NULL};

static void
read_leak(void *object, void *metrics)
{
    pf_leak_detector_metrics(object, metrics);
}

static const snap_kind_t k_leak = {
    PF_REGISTRY_LEAK,
    sizeof(pf_registry_leak_detector_t),
    offsetof(pf_registry_leak_detector_t, metrics),
    read_leak,
    NULL,
    NULL};

/* ---- breaker groups --------------------------------------------------- */

static void
read_group(void *object, void *metrics)
{
    pf_breaker_group_metrics(object, metrics);
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
fill_group(void *object, void *item)
{
    group_visit_t v = {item, 0, 0};
    int rc = pf_breaker_group_foreach(object, group_visit, &v);

    return v.rc != 0 ? v.rc : rc;
}

static void
clear_group(void *item)
{
    pf_registry_breaker_group_t *g = item;
    size_t i;

    for (i = 0; i < g->breakers_len; i++) {
        pf__free((char *)g->breakers[i].name);
    }
    pf__free(g->breakers);
}

static const snap_kind_t k_group = {
    PF_REGISTRY_BREAKER_GROUP,
    sizeof(pf_registry_breaker_group_t),
    offsetof(pf_registry_breaker_group_t, metrics),
    read_group,
    fill_group,
    clear_group};

/* ---- health checkers -------------------------------------------------- */

static void
read_health(void *object, void *metrics)
{
    pf_health_metrics(object, metrics);
}

/* Copy the checks of a health snapshot report (nothing runs). */
static int
fill_health(void *object, void *item)
{
    pf_registry_health_t *h = item;
    pf_health_report_t *rep;
    size_t n;
    size_t i;
    int rc;

    rc = pf_health_snapshot(object, &rep);
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

static void
clear_health(void *item)
{
    pf_registry_health_t *h = item;
    size_t i;

    for (i = 0; i < h->checks_len; i++) {
        pf__free((char *)h->checks[i].name);
        pf__free((char *)h->checks[i].message);
    }
    pf__free(h->checks);
}

static const snap_kind_t k_health = {PF_REGISTRY_HEALTH,
                                     sizeof(pf_registry_health_t),
                                     offsetof(pf_registry_health_t, metrics),
                                     read_health,
                                     fill_health,
                                     clear_health};

/* ---- degradation managers --------------------------------------------- */

static void
read_degradation(void *object, void *metrics)
{
    pf_degradation_metrics(object, metrics);
}

/* Copy a manager's mode names (immutable after it was made). */
static int
fill_degradation(void *object, void *item)
{
    pf_registry_degradation_t *g = item;
    size_t n = pf_degradation_mode_count(object);
    size_t i;

    if (n == 0) {
        return 0;
    }
    g->modes = pf__calloc(n, sizeof(*g->modes));
    if (g->modes == NULL) {
        return PF_ENOMEM;
    }
    for (i = 0; i < n; i++) {
        g->modes[i] = pf__utf8_dup(pf_degradation_mode_name_at(object, i));
        if (g->modes[i] == NULL) {
            return PF_ENOMEM;
        }
        g->modes_len++;
    }
    return 0;
}

static void
clear_degradation(void *item)
{
    pf_registry_degradation_t *g = item;
    size_t i;

    for (i = 0; i < g->modes_len; i++) {
        pf__free((char *)g->modes[i]);
    }
    pf__free(g->modes);
}

static const snap_kind_t k_degradation = {
    PF_REGISTRY_DEGRADE,
    sizeof(pf_registry_degradation_t),
    offsetof(pf_registry_degradation_t, metrics),
    read_degradation,
    fill_degradation,
    clear_degradation};

/* ---- collecting and freeing a kind ------------------------------------ */

/* Copy every object of kind k into a new array and return it (NULL when
 * there is none), its length in *len. Nothing is done when *rc is already
 * an error. On error *rc is set, and the array holds the items made so far
 * (an item counts in *len once it has its name) for release to free. */
static void *
collect(pf_registry_t *r, const snap_kind_t *k, size_t *len, int *rc)
{
    pf__reg_entry_t **pinned;
    char *a;
    size_t n;
    size_t i;

    if (*rc != 0) {
        return NULL;
    }
    *rc = pf__registry_pin_all(r, k->kind, &pinned, &n);
    if (*rc != 0 || n == 0) {
        return NULL;
    }
    a = pf__calloc(n, k->item_size);
    *rc = a == NULL ? PF_ENOMEM : 0;
    for (i = 0; i < n && *rc == 0; i++) {
        char *item = a + i * k->item_size;
        char *name = pf__utf8_dup(pinned[i]->name);

        if (name == NULL) {
            *rc = PF_ENOMEM;
            break;
        }
        memcpy(item, &name, sizeof(name));
        (*len)++;
        k->read(pinned[i]->object, item + k->metrics_offset);
        if (k->fill != NULL) {
            *rc = k->fill(pinned[i]->object, item);
        }
    }
    pf__registry_unpin_all(r, pinned, n);
    return a;
}

/* Free len items of kind k and the array holding them. */
static void
release(const snap_kind_t *k, void *items, size_t len)
{
    char *a = items;
    size_t i;

    for (i = 0; i < len; i++) {
        char *item = a + i * k->item_size;
        char *name;

        if (k->clear != NULL) {
            k->clear(item);
        }
        memcpy(&name, item, sizeof(name));
        pf__free(name);
    }
    pf__free(items);
}

/* ---- the snapshot ----------------------------------------------------- */

int
pf_registry_snapshot(pf_registry_t *r, pf_registry_snapshot_t **out)
{
    pf_registry_snapshot_t *s;
    int rc = 0;

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
    s->breakers = collect(r, &k_breaker, &s->breakers_len, &rc);
    s->breaker_groups = collect(r, &k_group, &s->breaker_groups_len, &rc);
    s->bulkheads = collect(r, &k_bulkhead, &s->bulkheads_len, &rc);
    s->ratelimits = collect(r, &k_ratelimit, &s->ratelimits_len, &rc);
    s->health = collect(r, &k_health, &s->health_len, &rc);
    s->leak_detectors = collect(r, &k_leak, &s->leak_detectors_len, &rc);
    s->degradations = collect(r, &k_degradation, &s->degradations_len, &rc);
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
    if (s == NULL) {
        return;
    }
    release(&k_breaker, s->breakers, s->breakers_len);
    release(&k_group, s->breaker_groups, s->breaker_groups_len);
    release(&k_bulkhead, s->bulkheads, s->bulkheads_len);
    release(&k_ratelimit, s->ratelimits, s->ratelimits_len);
    release(&k_health, s->health, s->health_len);
    release(&k_leak, s->leak_detectors, s->leak_detectors_len);
    release(&k_degradation, s->degradations, s->degradations_len);
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
