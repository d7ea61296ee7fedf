/* Metrics snapshots of a registry, and the export entry points.
 *
 * A snapshot walks the kinds' descriptors (registry_kinds.c): it pins the
 * entries of one kind at a time, reads each object's metrics through the
 * descriptor's read hook (the module's own getter) with no registry lock
 * held, copies what else an item holds through its fill hook, then
 * unpins. Names are copied and cleaned here, once (pf__name_dup: valid
 * UTF-8, and two names stay two names), messages too (pf__utf8_dup), so
 * both renderers (metrics_prom.c, metrics_json.c) can trust them. The
 * process block is a fresh read of /proc/self (procfs.h). */
#include <stddef.h>
#include <string.h>

#include "puffinflow/clock.h"
#include "puffinflow/error.h"

#include "mem.h"
#include "procfs.h"
#include "registry_impl.h"

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

/* ---- collecting and freeing a kind ------------------------------------ */

/* Copy every object of kind k into a new array, stored with its length
 * in k's member of s. On error the array holds the items made so far (an
 * item counts in the length once it has its name) for release to free. */
static int
collect(pf_registry_t *r, const pf__kind_desc_t *k, pf_registry_snapshot_t *s)
{
    size_t *len = (size_t *)(void *)((char *)s + k->snap_len);
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
    rc = a == NULL ? PF_ENOMEM : 0;
    memcpy((char *)s + k->snap_items, &a, sizeof(a));
    for (i = 0; i < n && rc == 0; i++) {
        char *item = a + i * k->item_size;
        char *name = pf__name_dup(pinned[i]->name);

        if (name == NULL) {
            rc = PF_ENOMEM;
            break;
        }
        memcpy(item, &name, sizeof(name));
        (*len)++;
        k->read(pinned[i]->object, item + k->metrics_offset);
        if (k->fill != NULL) {
            rc = k->fill(pinned[i]->object, item);
        }
    }
    pf__registry_unpin_all(r, pinned, n);
    return rc;
}

/* Free the items of kind k in s and the array holding them. */
static void
release(const pf__kind_desc_t *k, pf_registry_snapshot_t *s)
{
    size_t len;
    char *a = (char *)pf__kind_items(k, s, &len);
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
    pf__free(a);
}

/* ---- the snapshot ----------------------------------------------------- */

int
pf_registry_snapshot(pf_registry_t *r, pf_registry_snapshot_t **out)
{
    pf_registry_snapshot_t *s;
    size_t i;
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
    for (i = 0; i < pf__kinds_len && rc == 0; i++) {
        if (pf__kinds[i]->kind != PF_REGISTRY_ANY) {
            rc = collect(r, pf__kinds[i], s);
        }
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
    for (i = 0; i < pf__kinds_len; i++) {
        if (pf__kinds[i]->kind != PF_REGISTRY_ANY) {
            release(pf__kinds[i], s);
        }
    }
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

    if (r == NULL || (buf == NULL && size > 0) || !format_ok(fmt)) {
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
