/* Sliding windows for the circuit breaker.
 *
 * Both windows are built so that, in the steady state, a writer (a breaker
 * stripe: threads take stripes round-robin) writes only cache lines of its
 * own: two threads recording successes on one breaker do not slow each
 * other down.
 *
 * A count window is a ring of `size` one-byte outcomes, cut into chunks
 * of up to 64 consecutive slots, each chunk on a cache line of its own. A
 * writer fills the slots of the chunk it claimed one after another (its
 * place is a cursor in its cell) and claims the next chunk in ring order,
 * with one fetch_add, when they run out. Filling a slot swaps the outcome
 * in with one exchange and moves the failure and slow totals by the
 * difference between the outcome written and the one replaced (nothing
 * when a success replaces a success), and the count of filled slots when
 * the slot was empty. Once the ring is full, a success therefore touches
 * only its writer's cell and chunk. A single writer fills the slots in
 * ring order, so the window holds exactly its last `size` calls; writers
 * racing on one window hold, as nearly as an order exists, the last
 * `size` of all. Every outcome is swapped in once and out once, so the
 * totals equal the ring's contents once the adds finish; between a swap
 * and the totals' move a lapping writer can leave a total one below the
 * truth for an instant, so readers clamp at 0.
 *
 * A time window has one bucket per second, `size` of them in a ring. A
 * writer counts its adds to the newest second in its own cell. The first
 * thread to see a new second takes the lock and *rotates*: it folds every
 * cell into the newest second's bucket, empties the buckets of the seconds
 * the window passes, and recomputes the *base*, the sums of the size - 1
 * seconds before the new one. The totals are base plus every cell. Base,
 * cells and the newest second change together inside a seqlock, so a
 * reader never counts an add twice or misses one that had finished; an
 * add racing a rotation lands in the next second, or in its bucket after
 * the base was summed (then the next rotation, which sums the buckets
 * again, takes it in: errors never accumulate).
 *
 * Reading a time window's totals reads every cell, so an add reports them
 * only when the rates may have crossed a threshold (see window.h). The
 * lock serialises rotations and clears only. Memory orders: the counters
 * guard nothing but themselves, and every decision taken from them is
 * checked again under the breaker's lock, so relaxed order suffices except
 * where noted. */
#include <stddef.h>

#include "puffinflow/clock.h"
#include "puffinflow/error.h"

#include "mem.h"
#include "rng.h"
#include "window.h"

enum { OUT_PRESENT = 1, OUT_FAIL = 2, OUT_SLOW = 4 };

/* x % d without a division (Lemire, Kaser and Kurz, "Faster remainder by
 * direct computation", 2019): exact for 32-bit x, given M = 2^64 / d + 1
 * (which wraps to 0 for d = 1, giving x % 1 = 0). */
static inline uint32_t
fastmod(uint32_t x, uint64_t m, uint32_t d)
{
    uint64_t low = m * x;

    return (uint32_t)(((pf__u128)low * d) >> 64);
}

static inline uint32_t
window_mod(const pf__window_t *w, uint32_t x)
{
    return fastmod(x, w->fastmod, w->size);
}

static inline int64_t
clamp0(int64_t v)
{
    return v < 0 ? 0 : v;
}

static void *
alloc_aligned64(size_t bytes, void **raw)
{
    *raw = pf__calloc(1, bytes + 63);
    if (*raw == NULL) {
        return NULL;
    }
    return (void *)(((uintptr_t)*raw + 63) & ~(uintptr_t)63);
}

/* Chunks: one per writer, at most 64 slots (a cache line of one-byte
 * outcomes). Writers going at one pace then claim back the chunk they
 * filled last time, still in their cache. */
static void
plan_chunks(pf__window_t *w, uint32_t size)
{
    uint32_t c = size / w->writers;

    w->chunk = c < 1 ? 1 : c > 64 ? 64 : c;
    w->nchunks = (size + w->chunk - 1) / w->chunk;
    w->chunk_fastmod = UINT64_MAX / w->nchunks + 1;
}

int
pf__window_init(pf__window_t *w, int kind, uint32_t size, int64_t now_ns,
                unsigned writers, uint32_t minimum)
{
    w->kind = kind;
    w->size = size;
    w->minimum = minimum;
    w->fastmod = UINT64_MAX / size + 1;
    w->writers = 1;
    while (w->writers < writers && w->writers < 1024) {
        w->writers <<= 1;
    }
    atomic_init(&w->chunk_seq, 0);
    atomic_init(&w->gen, 0);
    atomic_init(&w->filled, 0);
    atomic_init(&w->failures, 0);
    atomic_init(&w->slow, 0);
    atomic_init(&w->seq, 0);
    atomic_init(&w->head_sec, now_ns / PF_NS_PER_SEC);
    atomic_init(&w->enough_seq, UINT64_MAX); /* odd: seq never equals it */
    atomic_init(&w->base_calls, 0);
    atomic_init(&w->base_failures, 0);
    atomic_init(&w->base_slow, 0);
    w->ring = NULL;
    w->ring_raw = NULL;
    w->buckets = NULL;
    w->cells = alloc_aligned64(w->writers * sizeof(*w->cells), &w->cells_raw);
    if (w->cells == NULL) {
        return PF_ENOMEM;
    }
    if (kind == PF__WINDOW_COUNT) {
        plan_chunks(w, size);
        w->ring = alloc_aligned64((size_t)w->nchunks * 64, &w->ring_raw);
        if (w->ring == NULL) {
            pf__free(w->cells_raw);
            return PF_ENOMEM;
        }
    } else {
        w->buckets = pf__calloc(size, sizeof(*w->buckets));
        if (w->buckets == NULL) {
            pf__free(w->cells_raw);
            return PF_ENOMEM;
        }
    }
    if (pthread_mutex_init(&w->lock, NULL) != 0) {
        pf__free(w->cells_raw);
        pf__free(w->ring_raw);
        pf__free(w->buckets);
        return PF_ESYSTEM;
    }
    return 0;
}

void
pf__window_destroy(pf__window_t *w)
{
    pthread_mutex_destroy(&w->lock);
    pf__free(w->cells_raw);
    pf__free(w->ring_raw);
    pf__free(w->buckets);
}

/* ---- count window ----------------------------------------------------- */

/* A cursor: bit 63 valid, bits 40-55 the clear generation it belongs to,
 * bits 8-39 its chunk, bits 0-7 the next slot's offset in the chunk. */
#define CUR_VALID (UINT64_C(1) << 63)
#define CUR_GEN(c) (((c) >> 40) & 0xFFFF)
#define CUR_CHUNK(c) ((uint32_t)((c) >> 8))
#define CUR_OFF(c) ((uint32_t)((c)&0xFF))

static inline uint32_t
chunk_len(const pf__window_t *w, uint32_t k)
{
    return k + 1 == w->nchunks ? w->size - k * w->chunk : w->chunk;
}

static inline _Atomic uint8_t *
slot_at(const pf__window_t *w, uint32_t k, uint32_t off)
{
    return &w->ring[(size_t)k * 64 + off];
}

/* The next slot for a writer: the next in its chunk, or the first of a
 * newly claimed chunk. A CAS on the cursor, which only threads sharing
 * the writer's cell touch; if one of them moved it meanwhile, the new
 * chunk serves this add alone and its other slots wait for the next lap. */
static _Atomic uint8_t *
claim_slot(pf__window_t *w, _Atomic uint64_t *cursor)
{
    uint64_t g = atomic_load_explicit(&w->gen, memory_order_relaxed) & 0xFFFF;
    uint64_t c = atomic_load_explicit(cursor, memory_order_relaxed);
    uint32_t k;

    while ((c & CUR_VALID) != 0 && CUR_GEN(c) == g &&
           CUR_OFF(c) < chunk_len(w, CUR_CHUNK(c))) {
        if (atomic_compare_exchange_weak_explicit(cursor, &c, c + 1,
                                                  memory_order_relaxed,
                                                  memory_order_relaxed)) {
            return slot_at(w, CUR_CHUNK(c), CUR_OFF(c));
        }
    }
    k = fastmod((uint32_t)atomic_fetch_add_explicit(&w->chunk_seq, 1,
                                                    memory_order_relaxed),
                w->chunk_fastmod, w->nchunks);
    atomic_compare_exchange_strong_explicit(
        cursor, &c, CUR_VALID | (g << 40) | ((uint64_t)k << 8) | 1,
        memory_order_relaxed, memory_order_relaxed);
    return slot_at(w, k, 0);
}

/* total += delta; the new value. No write for delta 0. */
static inline int64_t
move(_Atomic int64_t *total, int delta)
{
    if (delta != 0) {
        return atomic_fetch_add_explicit(total, delta, memory_order_relaxed) +
               delta;
    }
    return atomic_load_explicit(total, memory_order_relaxed);
}

/* Once the ring is full, a success replaces an outcome: the failure rate
 * and slow rate cannot rise and the count stays, so nothing can cross a
 * threshold and nothing shared is read. */
static bool
count_add(pf__window_t *w, unsigned writer, bool failure, bool slow,
          pf__window_totals_t *out)
{
    uint8_t o = (uint8_t)(OUT_PRESENT | (failure ? OUT_FAIL : 0) |
                          (slow ? OUT_SLOW : 0));
    uint8_t old = atomic_exchange_explicit(
        claim_slot(w, &w->cells[writer & (w->writers - 1)].cursor), o,
        memory_order_relaxed);
    int df = ((o & OUT_FAIL) != 0) - ((old & OUT_FAIL) != 0);
    int ds = ((o & OUT_SLOW) != 0) - ((old & OUT_SLOW) != 0);

    if (old != 0 && !failure && !slow) {
        if (df != 0) {
            move(&w->failures, df);
        }
        if (ds != 0) {
            move(&w->slow, ds);
        }
        return false;
    }
    out->calls = (uint64_t)clamp0(move(&w->filled, old == 0));
    out->failures = (uint64_t)clamp0(move(&w->failures, df));
    out->slow = (uint64_t)clamp0(move(&w->slow, ds));
    return true;
}

static void
count_totals(pf__window_t *w, pf__window_totals_t *out)
{
    out->calls = (uint64_t)clamp0(
        atomic_load_explicit(&w->filled, memory_order_relaxed));
    out->failures = (uint64_t)clamp0(
        atomic_load_explicit(&w->failures, memory_order_relaxed));
    out->slow =
        (uint64_t)clamp0(atomic_load_explicit(&w->slow, memory_order_relaxed));
}

/* Under lock. A new generation abandons every cursor, so each writer's
 * next add claims a chunk from the start of the ring. */
static void
count_clear(pf__window_t *w)
{
    atomic_store_explicit(&w->gen,
                          atomic_load_explicit(&w->gen, memory_order_relaxed) +
                              1,
                          memory_order_relaxed);
    atomic_store_explicit(&w->chunk_seq, 0, memory_order_relaxed);
    for (uint32_t k = 0; k < w->nchunks; k++) {
        for (uint32_t off = 0; off < chunk_len(w, k); off++) {
            uint8_t old = atomic_exchange_explicit(slot_at(w, k, off), 0,
                                                   memory_order_relaxed);

            if (old != 0) {
                move(&w->filled, -1);
                move(&w->failures, -((old & OUT_FAIL) != 0));
                move(&w->slow, -((old & OUT_SLOW) != 0));
            }
        }
    }
}

uint8_t
pf__window_slot(const pf__window_t *w, uint32_t i)
{
    return atomic_load_explicit(slot_at(w, i / w->chunk, i % w->chunk),
                                memory_order_relaxed);
}

/* ---- time window ------------------------------------------------------ */

/* The time window's shared sums form a seqlock: a write section makes seq
 * odd, stores with release order (each store carries the odd seq with it),
 * and makes seq even again with a release store. A reader loads seq with
 * acquire, the data with acquire (so the second load of seq cannot move
 * before them), then seq again: if a data load saw a store of a section,
 * the second load sees that section's odd seq or later, and it reads
 * again. No fences, which TSan cannot follow. Cells are changed by adds
 * outside any section (an add is a count, not a move); a rotation moves a
 * cell's counts to a bucket with exchanges inside a section. */
static void
store_rel(_Atomic uint64_t *a, uint64_t v)
{
    atomic_store_explicit(a, v, memory_order_release);
}

static uint64_t
load_acq(_Atomic uint64_t *a)
{
    return atomic_load_explicit(a, memory_order_acquire);
}

static uint64_t
take(_Atomic uint64_t *a)
{
    return atomic_exchange_explicit(a, 0, memory_order_acq_rel);
}

static void
write_begin(pf__window_t *w)
{
    atomic_store_explicit(
        &w->seq, atomic_load_explicit(&w->seq, memory_order_relaxed) + 1,
        memory_order_relaxed);
}

static void
write_end(pf__window_t *w)
{
    atomic_store_explicit(
        &w->seq, atomic_load_explicit(&w->seq, memory_order_relaxed) + 1,
        memory_order_release);
}

static void
zero_bucket(pf__window_bucket_t *b)
{
    store_rel(&b->calls, 0);
    store_rel(&b->failures, 0);
    store_rel(&b->slow, 0);
}

/* Move every cell's counts into bucket b. Under lock, in a section. */
static void
fold_cells(pf__window_t *w, pf__window_bucket_t *b)
{
    for (unsigned i = 0; i < w->writers; i++) {
        pf__window_cell_t *c = &w->cells[i];
        uint64_t n = take(&c->calls);
        uint64_t f = take(&c->failures);
        uint64_t s = take(&c->slow);

        if (b != NULL) {
            atomic_fetch_add_explicit(&b->calls, n, memory_order_release);
            atomic_fetch_add_explicit(&b->failures, f, memory_order_release);
            atomic_fetch_add_explicit(&b->slow, s, memory_order_release);
        }
    }
}

/* Recompute the base sums: the buckets of the size - 1 seconds before
 * head. Under lock, in a section. */
static void
rebase(pf__window_t *w, int64_t head)
{
    uint64_t c = 0;
    uint64_t f = 0;
    uint64_t s = 0;
    uint32_t hi = window_mod(w, (uint32_t)head);

    /* Step back from head's bucket by index, not by second: seconds
     * before 0 (a manual clock's first seconds) have no remainder. */
    for (uint32_t d = 1; d < w->size; d++) {
        pf__window_bucket_t *b =
            &w->buckets[hi >= d ? hi - d : hi + w->size - d];

        c += atomic_load_explicit(&b->calls, memory_order_relaxed);
        f += atomic_load_explicit(&b->failures, memory_order_relaxed);
        s += atomic_load_explicit(&b->slow, memory_order_relaxed);
    }
    store_rel(&w->base_calls, c);
    store_rel(&w->base_failures, f);
    store_rel(&w->base_slow, s);
}

/* Make sec the newest second. */
static void
time_rotate(pf__window_t *w, int64_t sec)
{
    pthread_mutex_lock(&w->lock);
    {
        int64_t h = atomic_load_explicit(&w->head_sec, memory_order_relaxed);

        if (sec > h) {
            int64_t n = sec - h < (int64_t)w->size ? sec - h : w->size;

            write_begin(w);
            /* The cells held second h; if h is leaving, so do they. */
            fold_cells(w, sec - h < (int64_t)w->size
                              ? &w->buckets[window_mod(w, (uint32_t)h)]
                              : NULL);
            for (int64_t i = 1; i <= n; i++) {
                zero_bucket(&w->buckets[window_mod(w, (uint32_t)(h + i))]);
            }
            rebase(w, sec);
            atomic_store_explicit(&w->head_sec, sec, memory_order_release);
            write_end(w);
        }
    }
    pthread_mutex_unlock(&w->lock);
}

/* The totals: base, the newest second's bucket (adds that came late for a
 * rotation) and every cell, read consistently (a reader that overlapped a
 * rotation reads again; one that finds a rotation running waits for it on
 * the lock, which is held for microseconds). Returns the (even) seq they
 * are consistent with. */
static uint64_t
time_read(pf__window_t *w, pf__window_totals_t *out)
{
    for (;;) {
        uint64_t s1 = atomic_load_explicit(&w->seq, memory_order_acquire);
        pf__window_bucket_t *b;
        int64_t h;

        if ((s1 & 1) != 0) {
            pthread_mutex_lock(&w->lock);
            pthread_mutex_unlock(&w->lock);
            continue;
        }
        h = atomic_load_explicit(&w->head_sec, memory_order_acquire);
        b = &w->buckets[window_mod(w, (uint32_t)h)];
        out->calls = load_acq(&w->base_calls) + load_acq(&b->calls);
        out->failures = load_acq(&w->base_failures) + load_acq(&b->failures);
        out->slow = load_acq(&w->base_slow) + load_acq(&b->slow);
        for (unsigned i = 0; i < w->writers; i++) {
            pf__window_cell_t *c = &w->cells[i];

            out->calls += load_acq(&c->calls);
            out->failures += load_acq(&c->failures);
            out->slow += load_acq(&c->slow);
        }
        if (atomic_load_explicit(&w->seq, memory_order_relaxed) == s1) {
            return s1;
        }
    }
}

/* The common path: the writer's own cell, and reads of lines written about
 * once a second. */
static bool
time_add(pf__window_t *w, unsigned writer, int64_t now_ns, bool failure,
         bool slow, pf__window_totals_t *out)
{
    int64_t sec = now_ns / PF_NS_PER_SEC;
    int64_t h = atomic_load_explicit(&w->head_sec, memory_order_acquire);
    bool check = failure || slow;

    if (sec > h) {
        time_rotate(w, sec);
        h = atomic_load_explicit(&w->head_sec, memory_order_acquire);
    }
    if (sec >= h) {
        pf__window_cell_t *c = &w->cells[writer & (w->writers - 1)];

        atomic_fetch_add_explicit(&c->calls, 1, memory_order_relaxed);
        if (failure) {
            atomic_fetch_add_explicit(&c->failures, 1, memory_order_relaxed);
        }
        if (slow) {
            atomic_fetch_add_explicit(&c->slow, 1, memory_order_relaxed);
        }
    } else if (h - sec < (int64_t)w->size) {
        /* Read before a rotation: into its own second's bucket. */
        pf__window_bucket_t *b = &w->buckets[window_mod(w, (uint32_t)sec)];

        atomic_fetch_add_explicit(&b->calls, 1, memory_order_relaxed);
        if (failure) {
            atomic_fetch_add_explicit(&b->failures, 1, memory_order_relaxed);
        }
        if (slow) {
            atomic_fetch_add_explicit(&b->slow, 1, memory_order_relaxed);
        }
    } /* else too old: dropped */
    /* A success looks at the rates unless a read since the last rotation
     * or clear (both move seq) found minimum calls or more: from then on
     * until seq moves, calls only grow and a success only dilutes the
     * rates, so it cannot make a trip due. Until then, the success that
     * brings the window to minimum calls may (at a rate the earlier calls
     * set); after a rotation, seconds leaving may raise the rates. */
    if (!check && atomic_load_explicit(&w->enough_seq, memory_order_relaxed) !=
                      atomic_load_explicit(&w->seq, memory_order_relaxed)) {
        check = true;
    }
    if (check) {
        uint64_t s = time_read(w, out);

        /* A stale seq stored late never matches the current one, so it
         * only costs a read. Stored once per seq, not at every failure:
         * the line is read by every add. */
        if (out->calls >= w->minimum &&
            atomic_load_explicit(&w->enough_seq, memory_order_relaxed) != s) {
            atomic_store_explicit(&w->enough_seq, s, memory_order_relaxed);
        }
    }
    return check;
}

static void
time_clear(pf__window_t *w, int64_t now_ns)
{
    int64_t sec = now_ns / PF_NS_PER_SEC;

    pthread_mutex_lock(&w->lock);
    write_begin(w);
    fold_cells(w, NULL);
    for (uint32_t i = 0; i < w->size; i++) {
        zero_bucket(&w->buckets[i]);
    }
    store_rel(&w->base_calls, 0);
    store_rel(&w->base_failures, 0);
    store_rel(&w->base_slow, 0);
    if (sec > atomic_load_explicit(&w->head_sec, memory_order_relaxed)) {
        atomic_store_explicit(&w->head_sec, sec, memory_order_release);
    }
    write_end(w);
    pthread_mutex_unlock(&w->lock);
}

/* ---- the interface ---------------------------------------------------- */

/* Totals read while adds race may show more failures than calls for an
 * instant; a rate above 100 % would be nonsense. */
static void
clamp_totals(pf__window_totals_t *t)
{
    if (t->failures > t->calls) {
        t->failures = t->calls;
    }
    if (t->slow > t->calls) {
        t->slow = t->calls;
    }
}

bool
pf__window_add(pf__window_t *w, unsigned writer, int64_t now_ns,
               bool failure, bool slow, pf__window_totals_t *out)
{
    bool check;

    if (w->kind == PF__WINDOW_COUNT) {
        check = count_add(w, writer, failure, slow, out);
    } else {
        check = time_add(w, writer, now_ns, failure, slow, out);
    }
    if (check) {
        clamp_totals(out);
    }
    return check;
}

void
pf__window_totals(pf__window_t *w, int64_t now_ns, pf__window_totals_t *out)
{
    if (w->kind == PF__WINDOW_COUNT) {
        count_totals(w, out);
    } else {
        int64_t sec = now_ns / PF_NS_PER_SEC;

        if (sec > atomic_load_explicit(&w->head_sec, memory_order_acquire)) {
            time_rotate(w, sec);
        }
        time_read(w, out);
    }
    clamp_totals(out);
}

void
pf__window_clear(pf__window_t *w, int64_t now_ns)
{
    if (w->kind == PF__WINDOW_COUNT) {
        pthread_mutex_lock(&w->lock);
        count_clear(w);
        pthread_mutex_unlock(&w->lock);
    } else {
        time_clear(w, now_ns);
    }
}
