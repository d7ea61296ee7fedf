/* The registry container: per kind, a sorted array of heap-allocated
 * entries (name, object, ownership) under one mutex.
 *
 * Sorted arrays give lookups by binary search, a stable export order, and
 * a foreach that survives changes made by its own callback: after each
 * visit it resumes at the first name after the one it visited, whatever
 * was added or removed meanwhile.
 *
 * Lifetime. Exports and foreach read objects without the lock, so they
 * pin the entries they read (a count under the lock). Removing a pinned
 * entry unlinks it at once; its owned object is freed by whoever drops the
 * last pin. An object that leaves the registry without being freed by it
 * (borrowed, or handed over through remove's out) may be freed by its
 * owner as soon as remove returns, so remove waits until the pins of other
 * threads are gone; pins taken by foreach visits of the calling thread do
 * not count, since their callback is the caller. Objects are always freed
 * with the lock released: a module's _free may join a thread whose
 * listener calls back into the registry. */
#include <pthread.h>
#include <sched.h>
#include <string.h>

#include "puffinflow/error.h"

#include "mem.h"
#include "registry_impl.h"
#include "wait.h"

/* The default registry: static storage, so getting it cannot fail. Only
 * the condition variable needs a run-time init (it waits on
 * CLOCK_MONOTONIC), done once under pthread_once. */
static pf_registry_t g_default = {
    .is_default = true,
    .process_metrics = true,
    .lock = PTHREAD_MUTEX_INITIALIZER,
};
static pthread_once_t g_default_once = PTHREAD_ONCE_INIT;

static void
default_init(void)
{
    g_default.cond_ok = pf__cond_init(&g_default.unpinned) == 0;
}

pf_registry_t *
pf_registry_default(void)
{
    pthread_once(&g_default_once, default_init);
    return &g_default;
}

void
pf_registry_config_init(pf_registry_config_t *cfg)
{
    if (cfg == NULL) {
        return;
    }
    memset(cfg, 0, sizeof(*cfg));
    cfg->process_metrics = true;
}

int
pf_registry_new(const pf_registry_config_t *cfg, pf_registry_t **out)
{
    pf_registry_config_t def;
    pf_registry_t *r;

    if (out == NULL) {
        return PF_EINVAL;
    }
    if (cfg == NULL) {
        pf_registry_config_init(&def);
        cfg = &def;
    }
    r = pf__calloc(1, sizeof(*r));
    if (r == NULL) {
        return PF_ENOMEM;
    }
    r->process_metrics = cfg->process_metrics;
    if (pthread_mutex_init(&r->lock, NULL) != 0) {
        pf__free(r);
        return PF_ESYSTEM;
    }
    if (pf__cond_init(&r->unpinned) != 0) {
        pthread_mutex_destroy(&r->lock);
        pf__free(r);
        return PF_ESYSTEM;
    }
    r->cond_ok = true;
    *out = r;
    return 0;
}

const char *
pf_registry_kind_name(pf_registry_kind_t kind)
{
    if ((int)kind < 0 || (int)kind >= PF_REGISTRY_KINDS) {
        return "unknown";
    }
    return pf__reg_kinds[kind]->label;
}

static bool
kind_ok(pf_registry_kind_t kind)
{
    return (int)kind >= 0 && (int)kind < PF_REGISTRY_KINDS;
}

static bool
name_ok(const char *name)
{
    return name != NULL && name[0] != '\0';
}

/* ---- entries ---------------------------------------------------------- */

/* Index of the first entry of kind whose name is >= name (<= when after
 * is false), or > name when after is true; *found when an entry is equal
 * (only meaningful with after false). Under lock. */
static size_t
search(const pf_registry_t *r, int kind, const char *name, bool after,
       bool *found)
{
    size_t lo = 0;
    size_t hi = r->len[kind];

    if (found != NULL) {
        *found = false;
    }
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(r->entries[kind][mid]->name, name);

        if (c < 0 || (after && c == 0)) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (found != NULL && !after && lo < r->len[kind] &&
        strcmp(r->entries[kind][lo]->name, name) == 0) {
        *found = true;
    }
    return lo;
}

static void
entry_destroy(pf__reg_entry_t *e)
{
    if (e->owned) {
        pf__reg_kinds[e->kind]->destroy(e->object);
    }
    pf__free(e->name);
    pf__free(e);
}

static pf__reg_entry_t *
entry_new(pf_registry_kind_t kind, const char *name)
{
    pf__reg_entry_t *e = pf__calloc(1, sizeof(*e));

    if (e == NULL) {
        return NULL;
    }
    e->name = pf__strdup(name);
    if (e->name == NULL) {
        pf__free(e);
        return NULL;
    }
    e->kind = kind;
    return e;
}

/* Make room for one more entry of kind. Under lock. */
static int
reserve_one(pf_registry_t *r, int kind)
{
    return pf__grow((void **)&r->entries[kind], &r->cap[kind], r->len[kind] + 1,
                    sizeof(pf__reg_entry_t *));
}

static void
insert_at(pf_registry_t *r, int kind, size_t idx, pf__reg_entry_t *e)
{
    pf__reg_entry_t **a = r->entries[kind];

    memmove(a + idx + 1, a + idx, (r->len[kind] - idx) * sizeof(*a));
    a[idx] = e;
    r->len[kind]++;
}

static void
unlink_at(pf_registry_t *r, int kind, size_t idx)
{
    pf__reg_entry_t **a = r->entries[kind];

    memmove(a + idx, a + idx + 1, (r->len[kind] - idx - 1) * sizeof(*a));
    r->len[kind]--;
}

/* Sleep until an entry's pins may have changed. Under lock. The fallback
 * for a condition variable that failed to initialise (it cannot on
 * Linux, but the default registry has no way to report it) polls. */
static void
wait_unpinned(pf_registry_t *r)
{
    if (r->cond_ok) {
        pf__wait_until(&r->unpinned, &r->lock, NULL, PF_DEADLINE_NEVER_NS,
                       NULL);
        return;
    }
    pthread_mutex_unlock(&r->lock);
    sched_yield();
    pthread_mutex_lock(&r->lock);
}

/* Pins of e held by foreach visits of the calling thread. Under lock. */
static unsigned
own_pins(const pf_registry_t *r, const pf__reg_entry_t *e)
{
    unsigned n = 0;
    const pf__reg_visit_t *v;

    for (v = r->visits; v != NULL; v = v->next) {
        if (v->entry == e && pthread_equal(v->thread, pthread_self())) {
            n++;
        }
    }
    return n;
}

/* Drop one pin of e. Returns true when the caller must now destroy e (it
 * was removed and this was the last pin). Under lock. */
static bool
unpin_locked(pf_registry_t *r, pf__reg_entry_t *e)
{
    e->pins--;
    if (!e->removed) {
        return false;
    }
    if (r->cond_ok) {
        pthread_cond_broadcast(&r->unpinned);
    }
    return e->pins == 0;
}

/* Unlink the entry at idx and settle who frees what. With hand_over, the
 * object goes to the caller. Returns the entry if the caller must destroy
 * it now (after unlocking), else NULL (a pin holder will). May wait, with
 * the lock released meanwhile. Under lock. */
static pf__reg_entry_t *
remove_at(pf_registry_t *r, int kind, size_t idx, bool hand_over)
{
    pf__reg_entry_t *e = r->entries[kind][idx];

    unlink_at(r, kind, idx);
    e->removed = true;
    if (hand_over) {
        e->owned = false;
    }
    if (!e->owned) {
        /* Our own pin keeps e alive while we wait. */
        e->pins++;
        while (e->pins > own_pins(r, e) + 1) {
            wait_unpinned(r);
        }
        e->pins--;
    }
    return e->pins == 0 ? e : NULL;
}

/* ---- add, get, find, remove ------------------------------------------- */

int
pf__registry_add(pf_registry_t *r, pf_registry_kind_t kind, const char *name,
                 void *object, bool owned)
{
    pf__reg_entry_t *e;
    size_t idx;
    bool found;
    int rc;

    if (r == NULL || !kind_ok(kind) || !name_ok(name) || object == NULL) {
        return PF_EINVAL;
    }
    e = entry_new(kind, name);
    if (e == NULL) {
        return PF_ENOMEM;
    }
    e->object = object;
    e->owned = owned;
    pthread_mutex_lock(&r->lock);
    idx = search(r, kind, name, false, &found);
    if (found) {
        rc = PF_EEXIST;
    } else {
        rc = reserve_one(r, kind);
    }
    if (rc == 0) {
        insert_at(r, kind, idx, e);
    }
    pthread_mutex_unlock(&r->lock);
    if (rc != 0) {
        e->owned = false; /* a failed add leaves the object with the caller */
        entry_destroy(e);
    }
    return rc;
}

int
pf__registry_get(pf_registry_t *r, pf_registry_kind_t kind, const char *name,
                 const void *cfg, void **out)
{
    const pf__kind_desc_t *desc;
    pf__reg_entry_t *e = NULL;
    void *object = NULL;
    size_t idx;
    bool found;
    int rc;

    if (r == NULL || !kind_ok(kind) || !name_ok(name) || out == NULL) {
        return PF_EINVAL;
    }
    desc = pf__reg_kinds[kind];
    pthread_mutex_lock(&r->lock);
    idx = search(r, kind, name, false, &found);
    if (found) {
        *out = r->entries[kind][idx]->object;
        pthread_mutex_unlock(&r->lock);
        return 0;
    }
    /* Creating under the lock is what makes get-or-create create exactly
     * one object; the hook is library code (a _new), never user code. */
    e = entry_new(kind, name);
    rc = e == NULL ? PF_ENOMEM : reserve_one(r, kind);
    if (rc == 0) {
        rc = desc->create(cfg != NULL ? cfg : r->defaults[kind], name, &object);
    }
    if (rc == 0) {
        e->object = object;
        e->owned = true;
        insert_at(r, kind, idx, e);
        *out = object;
        e = NULL;
    }
    pthread_mutex_unlock(&r->lock);
    if (e != NULL) {
        entry_destroy(e); /* not owned yet: frees the entry only */
    }
    return rc;
}

int
pf__registry_set_defaults(pf_registry_t *r, pf_registry_kind_t kind,
                          const void *cfg)
{
    const pf__kind_desc_t *desc;
    void *copy = NULL;
    void *old;
    void *probe = NULL;
    int rc;

    if (r == NULL || !kind_ok(kind)) {
        return PF_EINVAL;
    }
    desc = pf__reg_kinds[kind];
    if (cfg != NULL) {
        /* Validate now rather than at the first get: a throwaway object
         * made by the module's own _new checks every field. */
        rc = desc->create(cfg, "defaults", &probe);
        if (rc != 0) {
            return rc;
        }
        desc->destroy(probe);
        copy = pf__malloc(desc->config_size);
        if (copy == NULL) {
            return PF_ENOMEM;
        }
        memcpy(copy, cfg, desc->config_size);
    }
    pthread_mutex_lock(&r->lock);
    old = r->defaults[kind];
    r->defaults[kind] = copy;
    pthread_mutex_unlock(&r->lock);
    pf__free(old);
    return 0;
}

int
pf_registry_find(pf_registry_t *r, pf_registry_kind_t kind, const char *name,
                 void **out)
{
    size_t idx;
    bool found;

    if (r == NULL || !kind_ok(kind) || !name_ok(name) || out == NULL) {
        return PF_EINVAL;
    }
    pthread_mutex_lock(&r->lock);
    idx = search(r, kind, name, false, &found);
    if (found) {
        *out = r->entries[kind][idx]->object;
    }
    pthread_mutex_unlock(&r->lock);
    return found ? 0 : PF_ENOTFOUND;
}

int
pf_registry_remove(pf_registry_t *r, pf_registry_kind_t kind, const char *name,
                   void **out)
{
    pf__reg_entry_t *dead;
    void *object;
    size_t idx;
    bool found;

    if (r == NULL || !kind_ok(kind) || !name_ok(name)) {
        return PF_EINVAL;
    }
    pthread_mutex_lock(&r->lock);
    idx = search(r, kind, name, false, &found);
    if (!found) {
        pthread_mutex_unlock(&r->lock);
        return PF_ENOTFOUND;
    }
    object = r->entries[kind][idx]->object;
    dead = remove_at(r, kind, idx, out != NULL);
    pthread_mutex_unlock(&r->lock);
    if (dead != NULL) {
        entry_destroy(dead);
    }
    if (out != NULL) {
        *out = object;
    }
    return 0;
}

size_t
pf_registry_count(pf_registry_t *r, pf_registry_kind_t kind)
{
    size_t n = 0;
    int k;

    if (r == NULL || (kind != PF_REGISTRY_ANY && !kind_ok(kind))) {
        return 0;
    }
    pthread_mutex_lock(&r->lock);
    for (k = 0; k < PF_REGISTRY_KINDS; k++) {
        if (kind == PF_REGISTRY_ANY || (int)kind == k) {
            n += r->len[k];
        }
    }
    pthread_mutex_unlock(&r->lock);
    return n;
}

void
pf_registry_clear(pf_registry_t *r)
{
    int k;

    if (r == NULL) {
        return;
    }
    for (k = 0; k < PF_REGISTRY_KINDS; k++) {
        for (;;) {
            pf__reg_entry_t *dead;

            /* One entry per lock hold, taken from the end (no memmove),
             * so the objects are freed with the lock released. */
            pthread_mutex_lock(&r->lock);
            if (r->len[k] == 0) {
                pthread_mutex_unlock(&r->lock);
                break;
            }
            dead = remove_at(r, k, r->len[k] - 1, false);
            pthread_mutex_unlock(&r->lock);
            if (dead != NULL) {
                entry_destroy(dead);
            }
        }
    }
}

void
pf_registry_free(pf_registry_t *r)
{
    int k;

    if (r == NULL || r->is_default) {
        return;
    }
    pf_registry_clear(r);
    for (k = 0; k < PF_REGISTRY_KINDS; k++) {
        pf__free(r->entries[k]);
        pf__free(r->defaults[k]);
    }
    pthread_cond_destroy(&r->unpinned);
    pthread_mutex_destroy(&r->lock);
    pf__free(r);
}

/* ---- iteration and pinning -------------------------------------------- */

/* End the visit of prev (if any): unlink *v and unpin prev. Unless stop,
 * start the next visit: pin the first entry after prev's name and link *v
 * for it. Returns that entry or NULL; *dead is prev when the caller must
 * destroy it. */
static pf__reg_entry_t *
visit_step(pf_registry_t *r, int kind, pf__reg_entry_t *prev,
           pf__reg_visit_t *v, bool stop, pf__reg_entry_t **dead)
{
    pf__reg_entry_t *next = NULL;
    pf__reg_visit_t **pp;
    size_t idx = 0;

    *dead = NULL;
    pthread_mutex_lock(&r->lock);
    if (prev != NULL) {
        for (pp = &r->visits; *pp != NULL; pp = &(*pp)->next) {
            if (*pp == v) {
                *pp = v->next;
                break;
            }
        }
        /* The resume point comes from prev's name, so it is found before
         * the unpin that may let prev die. */
        idx = search(r, kind, prev->name, true, NULL);
        if (unpin_locked(r, prev)) {
            *dead = prev;
        }
    }
    if (!stop && idx < r->len[kind]) {
        next = r->entries[kind][idx];
        next->pins++;
        v->entry = next;
        v->thread = pthread_self();
        v->next = r->visits;
        r->visits = v;
    }
    pthread_mutex_unlock(&r->lock);
    return next;
}

int
pf_registry_foreach(pf_registry_t *r, pf_registry_kind_t kind,
                    pf_registry_visit_fn fn, void *arg)
{
    int k;

    if (r == NULL || fn == NULL ||
        (kind != PF_REGISTRY_ANY && !kind_ok(kind))) {
        return PF_EINVAL;
    }
    for (k = 0; k < PF_REGISTRY_KINDS; k++) {
        pf__reg_entry_t *e = NULL;
        pf__reg_entry_t *dead;
        pf__reg_visit_t v;
        int rc = 0;

        if (kind != PF_REGISTRY_ANY && (int)kind != k) {
            continue;
        }
        do {
            e = visit_step(r, k, e, &v, rc != 0, &dead);
            if (dead != NULL) {
                entry_destroy(dead);
            }
            if (e != NULL) {
                rc = fn((pf_registry_kind_t)k, e->name, e->object, arg);
            }
        } while (e != NULL);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

int
pf__registry_pin_all(pf_registry_t *r, pf_registry_kind_t kind,
                     pf__reg_entry_t ***out, size_t *n)
{
    pf__reg_entry_t **a = NULL;
    size_t i;

    pthread_mutex_lock(&r->lock);
    *n = r->len[kind];
    if (*n > 0) {
        a = pf__malloc(*n * sizeof(*a));
        if (a == NULL) {
            pthread_mutex_unlock(&r->lock);
            return PF_ENOMEM;
        }
        for (i = 0; i < *n; i++) {
            a[i] = r->entries[kind][i];
            a[i]->pins++;
        }
    }
    pthread_mutex_unlock(&r->lock);
    *out = a;
    return 0;
}

void
pf__registry_unpin_all(pf_registry_t *r, pf__reg_entry_t **entries, size_t n)
{
    size_t ndead = 0;
    size_t i;

    if (n == 0) {
        pf__free(entries);
        return;
    }
    pthread_mutex_lock(&r->lock);
    for (i = 0; i < n; i++) {
        if (unpin_locked(r, entries[i])) {
            entries[ndead++] = entries[i];
        }
    }
    pthread_mutex_unlock(&r->lock);
    for (i = 0; i < ndead; i++) {
        entry_destroy(entries[i]);
    }
    pf__free(entries);
}
