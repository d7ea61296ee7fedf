/* The leak detector's allocation table: which (agent, state) pairs hold
 * resources, since when, and for which instances (holders) of the pair.
 * Built for the runtime's per-state calls: sharded by hash, one short
 * mutex per shard, and no allocation once a pair has been seen with as
 * many holders at once (a released pair keeps its entry and its holder
 * places for the next allocation; pf__track_purge drops entries of pairs
 * long gone).
 *
 * Entries are freed only by pf__track_purge and pf__track_destroy; the
 * detector calls those, and every scan, under its check lock, so the
 * agent/state pointers a scan hands out stay valid until that lock is
 * released. */
#ifndef PF_SRC_LEAK_TRACK_H
#define PF_SRC_LEAK_TRACK_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "puffinflow/leak.h"

#define PF__TRACK_SHARDS 16

struct pf__track_ent;

/* One shard: a whole number of cache lines (two with glibc on x86-64: the
 * lock and the chains' head in the first, the counters in the second), in
 * an array aligned to a line by pf__track_init, so two shards never share
 * a line: threads working in different shards do not slow each other. */
typedef struct pf__track_shard {
    _Alignas(64) pthread_mutex_t lock;
    struct pf__track_ent **buckets; /* chains; nbuckets a power of two */
    size_t nbuckets;
    size_t entries;  /* pairs, held and released */
    size_t busy;     /* pairs with at least one holder */
    size_t live;     /* holders: allocations held */
    uint64_t allocs; /* also the allocation ids */
    uint64_t releases;
} pf__track_shard_t;

typedef struct pf__track {
    pf__track_shard_t *shards; /* PF__TRACK_SHARDS, line-aligned in raw */
    void *raw;
} pf__track_t;

/* 0, PF_ENOMEM or PF_ESYSTEM; nothing kept on error. */
int pf__track_init(pf__track_t *t);
void pf__track_destroy(pf__track_t *t);

/* Instance holds res under (agent, state) from now_ns, replacing what the
 * same instance held there. 0, PF_ENOMEM (a new pair's entry, or a place
 * for one more holder at once) */
int pf__track_alloc(pf__track_t *t, const char *agent, const char *state,
                    uint64_t instance, const pf_leak_resources_t *res,
                    int64_t now_ns);
/* 0 or PF_ENOTFOUND (instance holds nothing under the pair) */
int pf__track_release(pf__track_t *t, const char *agent, const char *state,
                      uint64_t instance);

/* A held allocation older than the threshold, as a scan reports it. */
typedef struct pf__track_hit {
    const char *agent; /* valid under the detector's check lock */
    const char *state;
    uint64_t instance;
    pf_leak_resources_t res;
    int64_t allocated_ns;
    bool is_new;               /* not reported before */
    struct pf__track_ent *ent; /* for pf__track_mark_reported */
    uint64_t id;
    uint32_t holder; /* index of the holder in ent */
    unsigned shard;
} pf__track_hit_t;

/* Append every held allocation with now_ns - allocated_ns > threshold_ns
 * to *hits (growing it: *len, *cap). 0 or PF_ENOMEM. */
int pf__track_scan(pf__track_t *t, int64_t now_ns, int64_t threshold_ns,
                   pf__track_hit_t **hits, size_t *len, size_t *cap);

/* Mark the allocations of hits reported, unless they have been replaced or
 * released since the scan. */
void pf__track_mark_reported(pf__track_t *t, const pf__track_hit_t *hits,
                             size_t n);

typedef struct pf__track_stats {
    uint64_t live;
    uint64_t allocs;
    uint64_t releases;
    uint64_t over;     /* held longer than the threshold */
    int64_t oldest_ns; /* allocated_ns of the oldest held; INT64_MAX
                          when none */
} pf__track_stats_t;

void pf__track_stats(pf__track_t *t, int64_t now_ns, int64_t threshold_ns,
                     pf__track_stats_t *out);

/* Free the entries of released pairs (no holder left) in shards where
 * they outnumber the held ones (plus some slack), so a stream of one-off
 * pair names cannot grow the table without bound. */
void pf__track_purge(pf__track_t *t);

#endif /* PF_SRC_LEAK_TRACK_H */
