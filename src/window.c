/* Sliding windows for the circuit breaker.
 *
 * A count window is a ring of `size` one-byte outcomes. An add takes the
 * next position with one fetch_add, swaps its outcome into that slot with
 * one exchange, and moves the failure and slow totals by the difference
 * between the outcome it wrote and the one it replaced (nothing at all when
 * a success replaces a success, the common case). The number of calls in
 * the window is min(positions handed out, size). Every outcome is swapped
 * in once and out once, so however adds interleave the totals equal the
 * ring's contents once they finish; between the swap and the total's move a
 * lapping add (only possible when more threads than slots race) can leave
 * a total one below the truth for an instant, so readers clamp at 0.
 *
 * A time window has one bucket per second, `size` of them in a ring. An
 * add bumps its second's bucket: one read-modify-write on the common path.
 * The totals are the newest second's bucket plus a *base*: the sums of the
 * size - 1 seconds before it, which the first thread to see a new second
 * recomputes from the buckets under the lock (emptying the buckets of the
 * seconds that left the window first). Base and newest second change
 * together inside a seqlock, so a reader never counts a second twice or
 * misses one; an add racing a rotation may miss the new base until the
 * next rotation, which recomputes it, so errors never accumulate.
 *
 * No lock is taken on the common path; the lock serialises rotations and
 * clears only. Memory orders: the counters guard nothing but themselves,
 * and every decision taken from them is checked again under the breaker's
 * lock, so relaxed order suffices except where noted. */
#include <stddef.h>

#include "puffinflow/clock.h"
#include "puffinflow/error.h"

#include "mem.h"
#include "rng.h"
#include "window.h"

enum { OUT_PRESENT = 1, OUT_FAIL = 2, OUT_SLOW = 4 };

/* x % d for d = w->size without a division (Lemire, Kaser and Kurz,
 * "Faster remainder by direct computation", 2019): exact for 32-bit x. */
static inline uint32_t
window_mod(const pf__window_t *w, uint32_t x)
{
    uint64_t low = w->fastmod * x;

    return (uint32_t)(((pf__u128)low * w->size) >> 64);
}

int
pf__window_init(pf__window_t *w, int kind, uint32_t size, int64_t now_ns)
{
    w->kind = kind;
    w->size = size;
    w->fastmod = UINT64_MAX / size + 1; /* wraps to 0 for size 1: x % 1 */
    atomic_init(&w->pos, 0);
    atomic_init(&w->failures, 0);
    atomic_init(&w->slow, 0);
    atomic_init(&w->seq, 0);
    atomic_init(&w->base_calls, 0);
    atomic_init(&w->base_failures, 0);
    atomic_init(&w->base_slow, 0);
    atomic_init(&w->head_sec, now_ns / PF_NS_PER_SEC);
    w->ring = NULL;
    w->buckets = NULL;
    if (kind == PF__WINDOW_COUNT) {
        w->ring = pf__calloc(size, sizeof(*w->ring));
        if (w->ring == NULL) {
            return PF_ENOMEM;
        }
        for (uint32_t i = 0; i < size; i++) {
            atomic_init(&w->ring[i], 0);
        }
    } else {
        w->buckets = pf__calloc(size, sizeof(*w->buckets));
        if (w->buckets == NULL) {
            return PF_ENOMEM;
        }
        for (uint32_t i = 0; i < size; i++) {
            atomic_init(&w->buckets[i].calls, 0);
            atomic_init(&w->buckets[i].failures, 0);
            atomic_init(&w->buckets[i].slow, 0);
        }
    }
    if (pthread_mutex_init(&w->lock, NULL) != 0) {
        pf__free(w->ring);
        pf__free(w->buckets);
        return PF_ESYSTEM;
    }
    return 0;
}

void
pf__window_destroy(pf__window_t *w)
{
    pthread_mutex_destroy(&w->lock);
    pf__free(w->ring);
    pf__free(w->buckets);
}

/* ---- count window ----------------------------------------------------- */

static inline int64_t
clamp0(int64_t v)
{
    return v < 0 ? 0 : v;
}

static void
count_add(pf__window_t *w, bool failure, bool slow, pf__window_totals_t *out)
{
    uint64_t p = atomic_fetch_add_explicit(&w->pos, 1, memory_order_relaxed);
    uint8_t o = (uint8_t)(OUT_PRESENT | (failure ? OUT_FAIL : 0) |
                          (slow ? OUT_SLOW : 0));
    uint8_t old = atomic_exchange_explicit(
        &w->ring[window_mod(w, (uint32_t)p)], o, memory_order_relaxed);
    int df = ((o & OUT_FAIL) != 0) - ((old & OUT_FAIL) != 0);
    int ds = ((o & OUT_SLOW) != 0) - ((old & OUT_SLOW) != 0);
    int64_t f;
    int64_t s;

    if (df != 0) {
        f = atomic_fetch_add_explicit(&w->failures, df, memory_order_relaxed) +
            df;
    } else {
        f = atomic_load_explicit(&w->failures, memory_order_relaxed);
    }
    if (ds != 0) {
        s = atomic_fetch_add_explicit(&w->slow, ds, memory_order_relaxed) + ds;
    } else {
        s = atomic_load_explicit(&w->slow, memory_order_relaxed);
    }
    out->calls = p + 1 < w->size ? p + 1 : w->size;
    out->failures = (uint64_t)clamp0(f);
    out->slow = (uint64_t)clamp0(s);
}

static void
count_totals(pf__window_t *w, pf__window_totals_t *out)
{
    uint64_t p = atomic_load_explicit(&w->pos, memory_order_relaxed);

    out->calls = p < w->size ? p : w->size;
    out->failures = (uint64_t)clamp0(
        atomic_load_explicit(&w->failures, memory_order_relaxed));
    out->slow =
        (uint64_t)clamp0(atomic_load_explicit(&w->slow, memory_order_relaxed));
}

static void
count_clear(pf__window_t *w)
{
    atomic_store_explicit(&w->pos, 0, memory_order_relaxed);
    for (uint32_t i = 0; i < w->size; i++) {
        uint8_t old =
            atomic_exchange_explicit(&w->ring[i], 0, memory_order_relaxed);

        if ((old & OUT_FAIL) != 0) {
            atomic_fetch_sub_explicit(&w->failures, 1, memory_order_relaxed);
        }
        if ((old & OUT_SLOW) != 0) {
            atomic_fetch_sub_explicit(&w->slow, 1, memory_order_relaxed);
        }
    }
}

/* ---- time window ------------------------------------------------------ */

/* The time window's shared sums form a seqlock: a write section makes seq
 * odd, stores with release order (each store carries the odd seq with it),
 * and makes seq even again with a release store. A reader loads seq with
 * acquire, the data with acquire (so the second load of seq cannot move
 * before them), then seq again: if a data load saw a store of a section,
 * the second load sees that section's odd seq or later, and it reads
 * again. No fences, which TSan cannot follow. */
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

static void
zero_bucket(pf__window_bucket_t *b)
{
    store_rel(&b->calls, 0);
    store_rel(&b->failures, 0);
    store_rel(&b->slow, 0);
}

/* Recompute the base sums: the buckets of the size - 1 seconds before
 * head. Under lock, inside a write section. */
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

/* Make sec the newest second: empty the buckets of the seconds it passes
 * (they left the window, or are new) and recompute the base from the
 * buckets, so a late add that missed one rotation's sums is in the next. */
static void
time_rotate(pf__window_t *w, int64_t sec)
{
    pthread_mutex_lock(&w->lock);
    {
        int64_t h = atomic_load_explicit(&w->head_sec, memory_order_relaxed);

        if (sec > h) {
            int64_t n = sec - h < (int64_t)w->size ? sec - h : w->size;

            write_begin(w);
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

/* The totals: base plus the newest second's bucket, read consistently (a
 * reader that overlapped a rotation reads again; one that finds a rotation
 * running waits for it on the lock, which is held for microseconds). */
static void
time_read(pf__window_t *w, pf__window_totals_t *out)
{
    for (;;) {
        uint64_t s1 = atomic_load_explicit(&w->seq, memory_order_acquire);
        int64_t h;
        pf__window_bucket_t *b;

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
        if (atomic_load_explicit(&w->seq, memory_order_relaxed) == s1) {
            return;
        }
    }
}

/* One read-modify-write on the common path: the bucket of the add's
 * second. The acquire load of head_sec pairs with write_end: an add that
 * sees the new second sees its bucket emptied. */
static void
time_add(pf__window_t *w, int64_t now_ns, bool failure, bool slow,
         pf__window_totals_t *out)
{
    int64_t sec = now_ns / PF_NS_PER_SEC;
    int64_t h = atomic_load_explicit(&w->head_sec, memory_order_acquire);

    if (sec > h) {
        time_rotate(w, sec);
        h = sec;
    }
    if (h - sec < (int64_t)w->size) {
        pf__window_bucket_t *b = &w->buckets[window_mod(w, (uint32_t)sec)];

        atomic_fetch_add_explicit(&b->calls, 1, memory_order_relaxed);
        if (failure) {
            atomic_fetch_add_explicit(&b->failures, 1, memory_order_relaxed);
        }
        if (slow) {
            atomic_fetch_add_explicit(&b->slow, 1, memory_order_relaxed);
        }
    }
    /* else: read before a rotation passed a whole window on: too old. */
    time_read(w, out);
}

static void
time_clear(pf__window_t *w, int64_t now_ns)
{
    int64_t sec = now_ns / PF_NS_PER_SEC;

    pthread_mutex_lock(&w->lock);
    write_begin(w);
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

void
pf__window_add(pf__window_t *w, int64_t now_ns, bool failure, bool slow,
               pf__window_totals_t *out)
{
    if (w->kind == PF__WINDOW_COUNT) {
        count_add(w, failure, slow, out);
    } else {
        time_add(w, now_ns, failure, slow, out);
    }
    clamp_totals(out);
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
