/* The allocation table (see leak_track.h).
 *
 * A pair's key is agent '\0' state '\0', stored in its entry. Its 64-bit
 * FNV-1a hash picks the shard (top bits) and the bucket (low bits), so the
 * two choices are independent. Each shard is a chained hash table under its
 * own mutex: track_allocation and track_release take one shard lock each,
 * hash a few dozen bytes and compare one key, with no allocation once the
 * pair exists, since a release only marks the entry released. Buckets
 * double when the entries reach their number; if that allocation fails the
 * chains just grow longer.
 *
 * A pair can be held by several instances at once (concurrent runs of one
 * state): its entry has one holder place inline, which is all a pair held
 * by one instance at a time ever uses, and an array of further places,
 * grown (under the shard lock) only when more instances hold the pair at
 * once than ever before, and kept for reuse. Finding an instance's place
 * looks at the inline one first, then walks the array: the cost grows with
 * the holders of that one pair at the time, not with the table.
 *
 * Each allocation gets an id (the shard's allocation count) so that a scan
 * that released the lock can later tell whether the allocation it saw is
 * still the one held. */
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "puffinflow/error.h"

#include "leak_track.h"
#include "mem.h"

#define INITIAL_BUCKETS 16
/* Released entries a shard may keep beyond its held ones before purging. */
#define PURGE_SLACK 64

/* One instance's hold on a pair, or a free place (live false). */
typedef struct holder {
    uint64_t instance;
    uint64_t id; /* the allocation's id, 0 before the first */
    int64_t allocated_ns;
    pf_leak_resources_t res;
    bool live;
    bool reported;
} holder_t;

typedef struct pf__track_ent {
    struct pf__track_ent *next;
    uint64_t hash;
    holder_t first;  /* holder place 0 */
    holder_t *more;  /* places 1 .. nmore */
    uint32_t nmore;
    uint32_t nlive;  /* live holders */
    size_t agent_len;
    size_t key_len; /* agent_len + 1 + state length + 1 */
    char key[];
} track_ent_t;

/* Holder place i of e (0 = the inline one); i <= e->nmore. */
static holder_t *
holder_at(track_ent_t *e, uint32_t i)
{
    return i == 0 ? &e->first : &e->more[i - 1];
}

static uint64_t
fnv_step(uint64_t h, const char *s, size_t *len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = 0;

    while (p[n] != '\0') {
        h = (h ^ p[n]) * UINT64_C(0x100000001b3);
        n++;
    }
    *len = n;
    /* The terminator joins the hash, so ("ab", "c") and ("a", "bc")
     * differ. */
    return h * UINT64_C(0x100000001b3);
}

static uint64_t
pair_hash(const char *agent, const char *state, size_t *alen, size_t *slen)
{
    uint64_t h = UINT64_C(0xcbf29ce484222325);

    h = fnv_step(h, agent, alen);
    h = fnv_step(h, state, slen);
    /* FNV's low bits mix poorly; fold the high half in for the buckets. */
    return h ^ (h >> 29);
}

static pf__track_shard_t *
shard_of(pf__track_t *t, uint64_t h)
{
    return &t->shards[h >> 60];
}

static track_ent_t *
find(pf__track_shard_t *sh, uint64_t h, const char *agent, size_t alen,
     const char *state, size_t slen)
{
    track_ent_t *e = sh->buckets[h & (sh->nbuckets - 1)];

    for (; e != NULL; e = e->next) {
        if (e->hash == h && e->agent_len == alen &&
            e->key_len == alen + slen + 2 && memcmp(e->key, agent, alen) == 0 &&
            memcmp(e->key + alen + 1, state, slen) == 0) {
            return e;
        }
    }
    return NULL;
}

int
pf__track_init(pf__track_t *t)
{
    unsigned i;

    memset(t, 0, sizeof(*t));
    t->raw = pf__calloc(1, sizeof(*t->shards) * PF__TRACK_SHARDS + 63);
    if (t->raw == NULL) {
        return PF_ENOMEM;
    }
    t->shards = (pf__track_shard_t *)(((uintptr_t)t->raw + 63) &
                                      ~(uintptr_t)63);
    for (i = 0; i < PF__TRACK_SHARDS; i++) {
        pf__track_shard_t *sh = &t->shards[i];

        sh->buckets = pf__calloc(INITIAL_BUCKETS, sizeof(*sh->buckets));
        if (sh->buckets == NULL || pthread_mutex_init(&sh->lock, NULL) != 0) {
            int rc = sh->buckets == NULL ? PF_ENOMEM : PF_ESYSTEM;

            pf__free(sh->buckets);
            while (i-- > 0) {
                pthread_mutex_destroy(&t->shards[i].lock);
                pf__free(t->shards[i].buckets);
            }
            pf__free(t->raw);
            return rc;
        }
        sh->nbuckets = INITIAL_BUCKETS;
    }
    return 0;
}

static void
free_chains(pf__track_shard_t *sh)
{
    size_t b;

    for (b = 0; b < sh->nbuckets; b++) {
        track_ent_t *e = sh->buckets[b];

        while (e != NULL) {
            track_ent_t *next = e->next;

            pf__free(e->more);
            pf__free(e);
            e = next;
        }
    }
}

void
pf__track_destroy(pf__track_t *t)
{
    unsigned i;

    for (i = 0; i < PF__TRACK_SHARDS; i++) {
        free_chains(&t->shards[i]);
        pf__free(t->shards[i].buckets);
        pthread_mutex_destroy(&t->shards[i].lock);
    }
    pf__free(t->raw);
}

/* Double the buckets of sh; on allocation failure keep the old ones. */
static void
grow_buckets(pf__track_shard_t *sh)
{
    size_t n = sh->nbuckets * 2;
    track_ent_t **nb = pf__calloc(n, sizeof(*nb));
    size_t b;

    if (nb == NULL) {
        return;
    }
    for (b = 0; b < sh->nbuckets; b++) {
        track_ent_t *e = sh->buckets[b];

        while (e != NULL) {
            track_ent_t *next = e->next;
            size_t k = e->hash & (n - 1);

            e->next = nb[k];
            nb[k] = e;
            e = next;
        }
    }
    pf__free(sh->buckets);
    sh->buckets = nb;
    sh->nbuckets = n;
}

static void
hold(track_ent_t *e, holder_t *h, pf__track_shard_t *sh, uint64_t instance,
     const pf_leak_resources_t *res, int64_t now_ns)
{
    static const pf_leak_resources_t none = {0, 0, 0, 0, 0};

    if (!h->live) {
        h->live = true;
        if (e->nlive++ == 0) {
            sh->busy++;
        }
        sh->live++;
    }
    h->instance = instance;
    h->id = ++sh->allocs;
    h->allocated_ns = now_ns;
    h->res = res != NULL ? *res : none;
    h->reported = false;
}

/* The place instance holds in e, or a free one (the first found), or NULL
 * when every place is taken by another instance. */
static holder_t *
find_place(track_ent_t *e, uint64_t instance)
{
    holder_t *free_place = NULL;
    uint32_t seen = 0; /* live holders looked at */
    uint32_t i;

    /* The common case, one holder at a time, ends here. */
    if (e->nlive == 0 || (e->first.live && e->first.instance == instance)) {
        return &e->first;
    }
    if (e->first.live) {
        seen++;
    } else {
        free_place = &e->first;
    }
    for (i = 0; i < e->nmore; i++) {
        holder_t *h = &e->more[i];

        if (!h->live) {
            if (free_place == NULL) {
                free_place = h;
            }
            if (seen == e->nlive) {
                break; /* no live holder left to match */
            }
            continue;
        }
        if (h->instance == instance) {
            return h;
        }
        seen++;
    }
    return free_place;
}

/* Hold the pair of e for instance. 0, or PF_ENOMEM when a new place was
 * needed and could not be made (nothing changes). Under sh->lock. */
static int
hold_instance(track_ent_t *e, pf__track_shard_t *sh, uint64_t instance,
              const pf_leak_resources_t *res, int64_t now_ns)
{
    holder_t *h = find_place(e, instance);

    if (h == NULL) {
        /* More holders at once than ever before: double the places. */
        size_t cap = e->nmore;
        size_t need = (size_t)e->nmore + 1;

        if (e->nmore >= UINT32_MAX / 2 ||
            pf__grow((void **)&e->more, &cap, need, sizeof(*e->more)) != 0) {
            return PF_ENOMEM;
        }
        memset(&e->more[e->nmore], 0,
               (cap - e->nmore) * sizeof(*e->more));
        h = &e->more[e->nmore];
        e->nmore = (uint32_t)cap;
    }
    hold(e, h, sh, instance, res, now_ns);
    return 0;
}

int
pf__track_alloc(pf__track_t *t, const char *agent, const char *state,
                uint64_t instance, const pf_leak_resources_t *res,
                int64_t now_ns)
{
    size_t alen;
    size_t slen;
    uint64_t h = pair_hash(agent, state, &alen, &slen);
    pf__track_shard_t *sh = shard_of(t, h);
    track_ent_t *e;
    int rc;

    pthread_mutex_lock(&sh->lock);
    e = find(sh, h, agent, alen, state, slen);
    if (e != NULL) {
        rc = hold_instance(e, sh, instance, res, now_ns);
        pthread_mutex_unlock(&sh->lock);
        return rc;
    }
    pthread_mutex_unlock(&sh->lock);

    /* A new pair: build its entry outside the lock, then insert it unless
     * another thread inserted the same pair meanwhile. */
    e = pf__malloc(sizeof(*e) + alen + slen + 2);
    if (e == NULL) {
        return PF_ENOMEM;
    }
    memset(e, 0, sizeof(*e));
    e->hash = h;
    e->agent_len = alen;
    e->key_len = alen + slen + 2;
    memcpy(e->key, agent, alen + 1);
    memcpy(e->key + alen + 1, state, slen + 1);

    pthread_mutex_lock(&sh->lock);
    {
        track_ent_t *other = find(sh, h, agent, alen, state, slen);

        if (other != NULL) {
            rc = hold_instance(other, sh, instance, res, now_ns);
            pthread_mutex_unlock(&sh->lock);
            pf__free(e);
            return rc;
        }
    }
    if (sh->entries >= sh->nbuckets) {
        grow_buckets(sh);
    }
    e->next = sh->buckets[h & (sh->nbuckets - 1)];
    sh->buckets[h & (sh->nbuckets - 1)] = e;
    sh->entries++;
    hold(e, &e->first, sh, instance, res, now_ns);
    pthread_mutex_unlock(&sh->lock);
    return 0;
}

int
pf__track_release(pf__track_t *t, const char *agent, const char *state,
                  uint64_t instance)
{
    size_t alen;
    size_t slen;
    uint64_t h = pair_hash(agent, state, &alen, &slen);
    pf__track_shard_t *sh = shard_of(t, h);
    track_ent_t *e;
    holder_t *hd = NULL;
    int rc = PF_ENOTFOUND;

    pthread_mutex_lock(&sh->lock);
    e = find(sh, h, agent, alen, state, slen);
    if (e != NULL && e->nlive > 0) {
        hd = find_place(e, instance);
    }
    if (hd != NULL && hd->live && hd->instance == instance) {
        hd->live = false;
        if (--e->nlive == 0) {
            sh->busy--;
        }
        sh->live--;
        sh->releases++;
        rc = 0;
    }
    pthread_mutex_unlock(&sh->lock);
    return rc;
}

int
pf__track_scan(pf__track_t *t, int64_t now_ns, int64_t threshold_ns,
               pf__track_hit_t **hits, size_t *len, size_t *cap)
{
    unsigned i;
    int rc = 0;

    for (i = 0; i < PF__TRACK_SHARDS && rc == 0; i++) {
        pf__track_shard_t *sh = &t->shards[i];
        size_t b;

        pthread_mutex_lock(&sh->lock);
        for (b = 0; b < sh->nbuckets && rc == 0; b++) {
            track_ent_t *e;

            for (e = sh->buckets[b]; e != NULL && rc == 0; e = e->next) {
                uint32_t k;

                for (k = 0; k <= e->nmore && e->nlive > 0; k++) {
                    holder_t *h = holder_at(e, k);
                    pf__track_hit_t *hit;

                    /* Strictly longer than the threshold, as the
                     * original. */
                    if (!h->live || now_ns - h->allocated_ns <= threshold_ns) {
                        continue;
                    }
                    rc = pf__grow((void **)hits, cap, *len + 1,
                                  sizeof(**hits));
                    if (rc != 0) {
                        break;
                    }
                    hit = &(*hits)[(*len)++];
                    hit->agent = e->key;
                    hit->state = e->key + e->agent_len + 1;
                    hit->instance = h->instance;
                    hit->res = h->res;
                    hit->allocated_ns = h->allocated_ns;
                    hit->is_new = !h->reported;
                    hit->ent = e;
                    hit->id = h->id;
                    hit->holder = k;
                    hit->shard = i;
                }
            }
        }
        pthread_mutex_unlock(&sh->lock);
    }
    return rc;
}

void
pf__track_mark_reported(pf__track_t *t, const pf__track_hit_t *hits, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        pf__track_shard_t *sh = &t->shards[hits[i].shard];

        track_ent_t *e = hits[i].ent;

        pthread_mutex_lock(&sh->lock);
        /* Places are never removed while the entry lives, so the index
         * still names the same place; the id says whether the allocation
         * there is still the one scanned. */
        if (hits[i].holder <= e->nmore) {
            holder_t *h = holder_at(e, hits[i].holder);

            if (h->live && h->id == hits[i].id) {
                h->reported = true;
            }
        }
        pthread_mutex_unlock(&sh->lock);
    }
}

void
pf__track_stats(pf__track_t *t, int64_t now_ns, int64_t threshold_ns,
                pf__track_stats_t *out)
{
    unsigned i;

    memset(out, 0, sizeof(*out));
    out->oldest_ns = INT64_MAX;
    for (i = 0; i < PF__TRACK_SHARDS; i++) {
        pf__track_shard_t *sh = &t->shards[i];
        size_t b;

        pthread_mutex_lock(&sh->lock);
        out->live += sh->live;
        out->allocs += sh->allocs;
        out->releases += sh->releases;
        for (b = 0; b < sh->nbuckets && sh->live > 0; b++) {
            track_ent_t *e;

            for (e = sh->buckets[b]; e != NULL; e = e->next) {
                uint32_t k;

                for (k = 0; k <= e->nmore && e->nlive > 0; k++) {
                    const holder_t *h = holder_at(e, k);

                    if (!h->live) {
                        continue;
                    }
                    if (now_ns - h->allocated_ns > threshold_ns) {
                        out->over++;
                    }
                    if (h->allocated_ns < out->oldest_ns) {
                        out->oldest_ns = h->allocated_ns;
                    }
                }
            }
        }
        pthread_mutex_unlock(&sh->lock);
    }
}

void
pf__track_purge(pf__track_t *t)
{
    unsigned i;

    for (i = 0; i < PF__TRACK_SHARDS; i++) {
        pf__track_shard_t *sh = &t->shards[i];
        size_t b;

        pthread_mutex_lock(&sh->lock);
        if (sh->entries - sh->busy <= sh->busy + PURGE_SLACK) {
            pthread_mutex_unlock(&sh->lock);
            continue;
        }
        for (b = 0; b < sh->nbuckets; b++) {
            track_ent_t **pp = &sh->buckets[b];

            while (*pp != NULL) {
                track_ent_t *e = *pp;

                if (e->nlive > 0) {
                    pp = &e->next;
                    continue;
                }
                *pp = e->next;
                sh->entries--;
                pf__free(e->more);
                pf__free(e);
            }
        }
        pthread_mutex_unlock(&sh->lock);
    }
}
