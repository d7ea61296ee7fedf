/* Keyed groups of circuit breakers: one breaker per key (per downstream
 * host, say), made from one config the first time a key is used.
 *
 * A hash table (chained, doubling as it fills) finds a key's entry; every
 * entry is also on a list in least-recently-used order, and a use moves it
 * to the most-recent end. Each entry counts its holders: a get or find
 * until the matching put, and each permit from pf_breaker_group_acquire
 * until it is recorded or released (the breaker calls back through its
 * unref hook). When the group is full, a new key takes the place of the
 * least recently used entry whose breaker is CLOSED and that nobody holds;
 * open and half-open breakers are never dropped, since forgetting them
 * would send traffic straight back to a failing host. A removed entry
 * leaves the table and the list at once and is freed when its last holder
 * lets go; until then it waits on a limbo list so that _free finds it.
 *
 * One mutex guards the table, the lists and the counts. No user code runs
 * under it: breakers are created under it (allocation only), and foreach
 * copies the entries, holding each, before it calls the visitor. Lock
 * order: the group's lock, then a breaker's (pf_breaker_state takes none).
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "puffinflow/breaker.h"
#include "puffinflow/error.h"

#include "breaker_impl.h"
#include "mem.h"

typedef struct entry {
    struct entry *chain; /* next in the hash bucket */
    struct entry *prev;  /* LRU list (or limbo list once removed) */
    struct entry *next;
    pf_breaker_group_t *group;
    pf_breaker_t *breaker;
    char *key;
    uint64_t hash;
    unsigned refs;
    bool removed;
} entry_t;

typedef struct list {
    entry_t *head; /* least recently used */
    entry_t *tail; /* most recently used */
} list_t;

/* name, template, expected and max are immutable after _new; the rest is
 * under lock. */
struct pf_breaker_group {
    char *name;
    pf_breaker_config_t tmpl; /* expected_errors points at expected */
    int *expected;
    size_t max;
    pthread_mutex_t lock;
    entry_t **table;
    size_t nbuckets; /* a power of two */
    size_t size;
    list_t lru;
    list_t limbo;
    uint64_t created;
    uint64_t evicted;
    uint64_t rejected_full;
};

#define FIRST_BUCKETS 16

void
pf_breaker_group_config_init(pf_breaker_group_config_t *cfg)
{
    if (cfg == NULL) {
        return;
    }
    memset(cfg, 0, sizeof(*cfg));
    cfg->name = "default";
    cfg->breaker = NULL;
    cfg->max_breakers = 1024;
}

int
pf_breaker_group_new(const pf_breaker_group_config_t *cfg,
                     pf_breaker_group_t **out)
{
    pf_breaker_config_t defaults;
    const pf_breaker_config_t *bc;
    pf_breaker_group_t *g;
    size_t n;
    int rc;

    if (cfg == NULL || out == NULL || cfg->name == NULL ||
        cfg->name[0] == '\0' || cfg->max_breakers == 0) {
        return PF_EINVAL;
    }
    bc = cfg->breaker;
    if (bc == NULL) {
        pf_breaker_config_init(&defaults);
        bc = &defaults;
    }
    rc = pf__breaker_config_check(bc);
    if (rc != 0) {
        return rc;
    }
    if (bc->shared != NULL || bc->sync != NULL) {
        return PF_EINVAL; /* every key would share one segment or entry */
    }
    g = pf__calloc(1, sizeof(*g));
    if (g == NULL) {
        return PF_ENOMEM;
    }
    rc = PF_ENOMEM;
    g->name = pf__strdup(cfg->name);
    g->table = pf__calloc(FIRST_BUCKETS, sizeof(*g->table));
    if (g->name == NULL || g->table == NULL) {
        goto fail;
    }
    g->nbuckets = FIRST_BUCKETS;
    g->tmpl = *bc;
    n = bc->expected_errors_len;
    if (n > 0) {
        g->expected = pf__calloc(n, sizeof(*g->expected));
        if (g->expected == NULL) {
            goto fail;
        }
        memcpy(g->expected, bc->expected_errors,
               n * sizeof(*g->expected));
        g->tmpl.expected_errors = g->expected;
    }
    g->tmpl.name = NULL; /* each breaker gets "<group>/<key>" */
    g->max = cfg->max_breakers;
    if (pthread_mutex_init(&g->lock, NULL) != 0) {
        rc = PF_ESYSTEM;
        goto fail;
    }
    *out = g;
    return 0;
fail:
    pf__free(g->expected);
    pf__free(g->table);
    pf__free(g->name);
    pf__free(g);
    return rc;
}

static void
entry_destroy(entry_t *e)
{
    pf_breaker_free(e->breaker);
    pf__free(e->key);
    pf__free(e);
}

void
pf_breaker_group_free(pf_breaker_group_t *g)
{
    entry_t *e;
    entry_t *next;

    if (g == NULL) {
        return;
    }
    for (e = g->lru.head; e != NULL; e = next) {
        next = e->next;
        entry_destroy(e);
    }
    for (e = g->limbo.head; e != NULL; e = next) {
        next = e->next;
        entry_destroy(e);
    }
    pthread_mutex_destroy(&g->lock);
    pf__free(g->table);
    pf__free(g->expected);
    pf__free(g->name);
    pf__free(g);
}

/* ---- table and lists (under lock) ------------------------------------- */

/* FNV-1a, 64 bits. */
static uint64_t
hash_key(const char *key)
{
    uint64_t h = UINT64_C(0xcbf29ce484222325);

    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        h = (h ^ *p) * UINT64_C(0x100000001b3);
    }
    return h;
}

static entry_t *
lookup(const pf_breaker_group_t *g, const char *key, uint64_t h)
{
    entry_t *e = g->table[h & (g->nbuckets - 1)];

    while (e != NULL && (e->hash != h || strcmp(e->key, key) != 0)) {
        e = e->chain;
    }
    return e;
}

static void
list_unlink(list_t *l, entry_t *e)
{
    if (e->prev != NULL) {
        e->prev->next = e->next;
    } else {
        l->head = e->next;
    }
    if (e->next != NULL) {
        e->next->prev = e->prev;
    } else {
        l->tail = e->prev;
    }
    e->prev = NULL;
    e->next = NULL;
}

static void
list_append(list_t *l, entry_t *e)
{
    e->prev = l->tail;
    e->next = NULL;
    if (l->tail != NULL) {
        l->tail->next = e;
    } else {
        l->head = e;
    }
    l->tail = e;
}

static void
table_unlink(pf_breaker_group_t *g, entry_t *e)
{
    entry_t **pp = &g->table[e->hash & (g->nbuckets - 1)];

    while (*pp != e) {
        pp = &(*pp)->chain;
    }
    *pp = e->chain;
    e->chain = NULL;
}

/* Double the buckets when the table is three-quarters full. Failing to
 * allocate only leaves chains longer. */
static void
maybe_grow(pf_breaker_group_t *g)
{
    size_t n = g->nbuckets * 2;
    entry_t **t;

    if ((g->size + 1) * 4 <= g->nbuckets * 3) {
        return;
    }
    t = pf__calloc(n, sizeof(*t));
    if (t == NULL) {
        return;
    }
    for (size_t i = 0; i < g->nbuckets; i++) {
        entry_t *e = g->table[i];

        while (e != NULL) {
            entry_t *next = e->chain;

            e->chain = t[e->hash & (n - 1)];
            t[e->hash & (n - 1)] = e;
            e = next;
        }
    }
    pf__free(g->table);
    g->table = t;
    g->nbuckets = n;
}

/* The least recently used entry that may be dropped: nobody holds it and
 * its breaker is CLOSED. NULL if none. */
static entry_t *
find_victim(const pf_breaker_group_t *g)
{
    for (entry_t *e = g->lru.head; e != NULL; e = e->next) {
        if (e->refs == 0 && pf_breaker_state(e->breaker) == PF_BREAKER_CLOSED) {
            return e;
        }
    }
    return NULL;
}

/* ---- holders ---------------------------------------------------------- */

/* One holder lets go; a removed entry is freed with its last holder. */
static void
entry_unref(void *ctx)
{
    entry_t *e = ctx;
    pf_breaker_group_t *g = e->group;
    bool destroy;

    pthread_mutex_lock(&g->lock);
    e->refs--;
    destroy = e->removed && e->refs == 0;
    if (destroy) {
        list_unlink(&g->limbo, e);
    }
    pthread_mutex_unlock(&g->lock);
    if (destroy) {
        entry_destroy(e);
    }
}

/* A new entry for key, its breaker made from the template. Not linked. */
static int
entry_create(pf_breaker_group_t *g, const char *key, uint64_t h,
             entry_t **out)
{
    size_t nlen = strlen(g->name);
    size_t klen = strlen(key);
    pf_breaker_config_t cfg = g->tmpl;
    entry_t *e = pf__calloc(1, sizeof(*e));
    char *name = pf__malloc(nlen + klen + 2);
    int rc = PF_ENOMEM;

    if (e == NULL || name == NULL) {
        goto fail;
    }
    memcpy(name, g->name, nlen);
    name[nlen] = '/';
    memcpy(name + nlen + 1, key, klen + 1);
    e->key = pf__strdup(key);
    if (e->key == NULL) {
        goto fail;
    }
    cfg.name = name;
    rc = pf_breaker_new(&cfg, &e->breaker);
    if (rc != 0) {
        goto fail;
    }
    pf__free(name);
    pf__breaker_set_unref(e->breaker, entry_unref, e);
    e->group = g;
    e->hash = h;
    *out = e;
    return 0;
fail:
    if (e != NULL) {
        pf__free(e->key);
    }
    pf__free(e);
    pf__free(name);
    return rc;
}

/* Find or make key's entry and hold it. Under lock; *victim gets an entry
 * dropped for room, to destroy after unlocking. */
static int
get_locked(pf_breaker_group_t *g, const char *key, bool create,
           entry_t **out, entry_t **victim)
{
    uint64_t h = hash_key(key);
    entry_t *e = lookup(g, key, h);
    entry_t *v = NULL;
    int rc;

    if (e == NULL) {
        if (!create) {
            return PF_ENOTFOUND;
        }
        if (g->size >= g->max) {
            v = find_victim(g);
            if (v == NULL) {
                g->rejected_full++;
                return PF_EFULL;
            }
        }
        rc = entry_create(g, key, h, &e);
        if (rc != 0) {
            return rc;
        }
        if (v != NULL) {
            table_unlink(g, v);
            list_unlink(&g->lru, v);
            g->size--;
            g->evicted++;
            *victim = v;
        } else {
            maybe_grow(g);
        }
        e->chain = g->table[h & (g->nbuckets - 1)];
        g->table[h & (g->nbuckets - 1)] = e;
        g->size++;
        g->created++;
    } else {
        list_unlink(&g->lru, e);
    }
    list_append(&g->lru, e);
    e->refs++;
    *out = e;
    return 0;
}

static int
get_entry(pf_breaker_group_t *g, const char *key, bool create, entry_t **out)
{
    entry_t *victim = NULL;
    int rc;

    if (g == NULL || key == NULL || out == NULL) {
        return PF_EINVAL;
    }
    pthread_mutex_lock(&g->lock);
    rc = get_locked(g, key, create, out, &victim);
    pthread_mutex_unlock(&g->lock);
    if (victim != NULL) {
        entry_destroy(victim);
    }
    return rc;
}

/* ---- the interface ---------------------------------------------------- */

int
pf_breaker_group_get(pf_breaker_group_t *g, const char *key,
                     pf_breaker_t **out)
{
    entry_t *e;
    int rc;

    if (out == NULL) {
        return PF_EINVAL;
    }
    rc = get_entry(g, key, true, &e);
    if (rc == 0) {
        *out = e->breaker;
    }
    return rc;
}

int
pf_breaker_group_find(pf_breaker_group_t *g, const char *key,
                      pf_breaker_t **out)
{
    entry_t *e;
    int rc;

    if (out == NULL) {
        return PF_EINVAL;
    }
    rc = get_entry(g, key, false, &e);
    if (rc == 0) {
        *out = e->breaker;
    }
    return rc;
}

void
pf_breaker_group_put(pf_breaker_group_t *g, pf_breaker_t *b)
{
    entry_t *e;

    if (g == NULL || b == NULL) {
        return;
    }
    e = pf__breaker_unref_ctx(b);
    if (e != NULL && e->group == g) {
        entry_unref(e);
    }
}

int
pf_breaker_group_acquire(pf_breaker_group_t *g, const char *key,
                         pf_permit_t *permit)
{
    entry_t *e;
    int rc;

    if (permit == NULL) {
        return PF_EINVAL;
    }
    permit->priv_epoch = 0;
    permit->priv_flags = 0;
    rc = get_entry(g, key, true, &e);
    if (rc != 0) {
        return rc;
    }
    rc = pf_breaker_acquire(e->breaker, permit);
    if (rc != 0) {
        entry_unref(e);
        return rc;
    }
    pf__permit_mark_group(permit); /* the permit holds the entry now */
    return 0;
}

void
pf_breaker_group_record(pf_breaker_group_t *g, pf_permit_t *permit,
                        int result)
{
    (void)g;
    if (permit == NULL || permit->priv_epoch == 0) {
        return;
    }
    pf_breaker_record((pf_breaker_t *)(uintptr_t)permit->priv_breaker, permit,
                      result);
}

int
pf_breaker_group_call(pf_breaker_group_t *g, const char *key, pf_call_fn fn,
                      void *arg)
{
    entry_t *e;
    int rc;

    if (fn == NULL) {
        return PF_EINVAL;
    }
    rc = get_entry(g, key, true, &e);
    if (rc != 0) {
        return rc;
    }
    rc = pf_breaker_call(e->breaker, fn, arg);
    entry_unref(e);
    return rc;
}

int
pf_breaker_group_remove(pf_breaker_group_t *g, const char *key)
{
    entry_t *e;
    bool destroy;

    if (g == NULL || key == NULL) {
        return PF_EINVAL;
    }
    pthread_mutex_lock(&g->lock);
    e = lookup(g, key, hash_key(key));
    if (e == NULL) {
        pthread_mutex_unlock(&g->lock);
        return PF_ENOTFOUND;
    }
    table_unlink(g, e);
    list_unlink(&g->lru, e);
    g->size--;
    destroy = e->refs == 0;
    if (!destroy) {
        e->removed = true;
        list_append(&g->limbo, e);
    }
    pthread_mutex_unlock(&g->lock);
    if (destroy) {
        entry_destroy(e);
    }
    return 0;
}

size_t
pf_breaker_group_size(pf_breaker_group_t *g)
{
    size_t n;

    if (g == NULL) {
        return 0;
    }
    pthread_mutex_lock(&g->lock);
    n = g->size;
    pthread_mutex_unlock(&g->lock);
    return n;
}

const char *
pf_breaker_group_name(const pf_breaker_group_t *g)
{
    return g == NULL ? NULL : g->name;
}

int
pf_breaker_group_foreach(pf_breaker_group_t *g, pf_breaker_group_fn fn,
                         void *arg)
{
    entry_t **held;
    size_t n = 0;
    int rc = 0;

    if (g == NULL || fn == NULL) {
        return PF_EINVAL;
    }
    pthread_mutex_lock(&g->lock);
    held = pf__calloc(g->size > 0 ? g->size : 1, sizeof(*held));
    if (held == NULL) {
        pthread_mutex_unlock(&g->lock);
        return PF_ENOMEM;
    }
    for (entry_t *e = g->lru.head; e != NULL; e = e->next) {
        e->refs++;
        held[n++] = e;
    }
    pthread_mutex_unlock(&g->lock);
    for (size_t i = 0; i < n; i++) {
        if (rc == 0) {
            rc = fn(held[i]->key, held[i]->breaker, arg);
        }
        entry_unref(held[i]);
    }
    pf__free(held);
    return rc;
}

void
pf_breaker_group_metrics(pf_breaker_group_t *g,
                         pf_breaker_group_metrics_t *out)
{
    if (g == NULL || out == NULL) {
        return;
    }
    pthread_mutex_lock(&g->lock);
    out->size = g->size;
    out->max_breakers = g->max;
    out->created = g->created;
    out->evicted = g->evicted;
    out->rejected_full = g->rejected_full;
    pthread_mutex_unlock(&g->lock);
}
