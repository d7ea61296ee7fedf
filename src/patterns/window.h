/* The circuit breaker's sliding windows: the outcomes of the last N calls
 * (a count window) or of the calls of the last N seconds (a time window),
 * kept so that adding an outcome is O(1) and, in the steady state, writes
 * no cache line another thread writes. Used by breaker.c; see window.c
 * for how. */
#ifndef PF_SRC_WINDOW_H
#define PF_SRC_WINDOW_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

enum { PF__WINDOW_COUNT = 1, PF__WINDOW_TIME = 2 };

/* The largest window_size accepted: calls for a count window, seconds for
 * a time window (one day: a bucket per second). */
#define PF__WINDOW_MAX_CALLS 1000000u
#define PF__WINDOW_MAX_SECONDS 86400u

/* What a window holds now. */
typedef struct pf__window_totals {
    uint64_t calls;
    uint64_t failures;
    uint64_t slow;
} pf__window_totals_t;

/* One second of a time window. */
typedef struct pf__window_bucket {
    _Atomic uint64_t calls;
    _Atomic uint64_t failures;
    _Atomic uint64_t slow;
} pf__window_bucket_t;

/* A writer's own cache lines (128 bytes, so that no two writers' cells
 * share the pair of lines adjacent-line prefetchers fetch together). A
 * count window keeps the writer's place in the ring; a time window the
 * writer's adds to the newest second. */
typedef struct pf__window_cell {
    _Alignas(64) _Atomic uint64_t cursor;
    _Atomic uint64_t calls;
    _Atomic uint64_t failures;
    _Atomic uint64_t slow;
    char pad[128 - 4 * sizeof(uint64_t)];
} pf__window_cell_t;

/* kind, size, writers, the chunk layout and the arrays' addresses are
 * immutable after init (gen changes only at clears). The counters are atomics (see window.c for the
 * orders); gen, head_sec, seq and the base sums are written only under
 * lock, which serialises rotations and clears. */
typedef struct pf__window {
    int kind;
    uint32_t size;         /* calls or seconds, >= 1 */
    uint32_t minimum;      /* minimum_calls: below it no rate counts */
    uint64_t fastmod;      /* Lemire's constant for x % size */
    unsigned writers;      /* cells, a power of two */
    /* Count window clears so far: read by every add, written by a clear
     * (under lock), so it lives here with the read-only fields. */
    _Atomic uint64_t gen;
    pf__window_cell_t *cells;
    void *cells_raw;
    /* Count window: the ring is cut into nchunks chunks of chunk slots
     * (the last one maybe shorter), each on a cache line of its own. */
    uint32_t chunk;
    uint32_t nchunks;
    uint64_t chunk_fastmod; /* for x % nchunks */
    _Atomic uint8_t *ring;  /* nchunks lines of 64 bytes */
    void *ring_raw;
    pf__window_bucket_t *buckets; /* time: one per second */
    /* Count window counters: written when a chunk is claimed, while the
     * ring fills, and when an outcome replaces a different one. */
    _Alignas(64) _Atomic uint64_t chunk_seq; /* chunks handed out */
    _Atomic int64_t filled;                  /* slots holding an outcome */
    _Atomic int64_t failures;                /* failures in the ring */
    _Atomic int64_t slow;                    /* slow calls in the ring */
    /* Time window, read by every add, written about once a second. */
    _Alignas(64) _Atomic uint64_t seq;   /* odd while a rotation runs */
    _Atomic int64_t head_sec;            /* the newest second */
    /* seq when a read last found minimum_calls or more (never odd but
     * for the initial value): until seq moves, a success cannot make a
     * trip due, so it reads nothing. */
    _Atomic uint64_t enough_seq;
    _Atomic uint64_t base_calls;         /* the seconds before head_sec */
    _Atomic uint64_t base_failures;
    _Atomic uint64_t base_slow;
    pthread_mutex_t lock;
} pf__window_t;

/* Set up w as a kind window of size calls or seconds (1 .. the maxima
 * above), empty, its newest second that of now_ns, for `writers` writers
 * (rounded up to a power of two; writer numbers are taken modulo it).
 * minimum is the breaker's minimum_calls (>= 1): the calls below which no
 * rate counts, so adds below it must report their totals. Returns 0,
 * PF_ENOMEM or PF_ESYSTEM; on error nothing is left to free. */
int pf__window_init(pf__window_t *w, int kind, uint32_t size, int64_t now_ns,
                    unsigned writers, uint32_t minimum);

/* Free what init allocated. */
void pf__window_destroy(pf__window_t *w);

/* Add, as writer `writer`, one outcome seen at now_ns. Returns whether
 * the rates may have reached a threshold, and then the totals just after
 * the add in *out: for a failure or a slow call, for any add while a count
 * window is still filling (the only way a success can raise a count
 * window's numbers), and, in a time window, for any add until a read
 * finds `minimum` calls or more, and again after every move to a new
 * second and every clear (seconds leaving can raise the rates and lower
 * the calls). A single writer thus sees a trip at the very add that makes
 * it due, in both kinds, as if the rates were checked at every add.
 * Otherwise *out is not filled (reading a time window's totals reads
 * every writer's cell). Lock-free unless a time window must move to a new
 * second. Thread-safe. */
bool pf__window_add(pf__window_t *w, unsigned writer, int64_t now_ns,
                    bool failure, bool slow, pf__window_totals_t *out);

/* The totals at now_ns (a time window first drops the seconds that have
 * left it). Thread-safe. */
void pf__window_totals(pf__window_t *w, int64_t now_ns,
                       pf__window_totals_t *out);

/* Empty the window; a time window's newest second becomes now_ns's if
 * later. Adds racing with the clear may land on either side of it.
 * Thread-safe. */
void pf__window_clear(pf__window_t *w, int64_t now_ns);

/* The outcome in slot i of a count window (for tests): 0 empty, else bit
 * 1 set, | 2 failure, | 4 slow. */
uint8_t pf__window_slot(const pf__window_t *w, uint32_t i);

#endif /* PF_SRC_WINDOW_H */
