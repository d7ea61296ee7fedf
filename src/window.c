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
 * A time window has one bucket per second, `size` of them in a ring, and
 * running totals. An add bumps the totals first, then its second's bucket.
 * When time reaches a new second the first thread to notice takes the lock
 * and drains the buckets of the seconds that left the window (exchange to
 * 0, subtract from the totals), then publishes the new newest second. Since
 * a bucket's counts always reached the totals first, draining never takes a
 * total below zero, and the totals equal the sum of the buckets whenever no
 * add is half done.
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
    atomic_init(&w->calls, 0);
    atomic_init(&w->tfailures, 0);
    atomic_init(&w->tslow, 0);
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

/* Empty bucket b into nothing, taking its counts off the totals. Acquire
 * pairs with the adds' release on the bucket: the totals' share of every
 * count taken here was added before, so the subtraction never wraps. */
static void
drain_bucket(pf__window_t *w, pf__window_bucket_t *b)
{
    uint64_t c = atomic_exchange_explicit(&b->calls, 0, memory_order_acquire);
    uint64_t f =
        atomic_exchange_explicit(&b->failures, 0, memory_order_acquire);
    uint64_t s = atomic_exchange_explicit(&b->slow, 0, memory_order_acquire);

    if (c != 0) {
        atomic_fetch_sub_explicit(&w->calls, c, memory_order_relaxed);
    }
    if (f != 0) {
        atomic_fetch_sub_explicit(&w->tfailures, f, memory_order_relaxed);
    }
    if (s != 0) {
        atomic_fetch_sub_explicit(&w->tslow, s, memory_order_relaxed);
    }
}

/* Make sec the newest second, draining the seconds that left the window.
 * The release store of head_sec pairs with the adds' acquire load: an add
 * that sees the new second sees its bucket already drained. */
static void
time_rotate(pf__window_t *w, int64_t sec)
{
    pthread_mutex_lock(&w->lock);
    {
        int64_t h = atomic_load_explicit(&w->head_sec, memory_order_relaxed);

        if (sec > h) {
            int64_t n = sec - h < (int64_t)w->size ? sec - h : w->size;

            for (int64_t i = 1; i <= n; i++) {
                drain_bucket(w,
                             &w->buckets[window_mod(w, (uint32_t)(h + i))]);
            }
            atomic_store_explicit(&w->head_sec, sec, memory_order_release);
        }
    }
    pthread_mutex_unlock(&w->lock);
}

static void
time_read(pf__window_t *w, pf__window_totals_t *out)
{
    out->calls = atomic_load_explicit(&w->calls, memory_order_relaxed);
    out->failures = atomic_load_explicit(&w->tfailures, memory_order_relaxed);
    out->slow = atomic_load_explicit(&w->tslow, memory_order_relaxed);
}

static void
time_add(pf__window_t *w, int64_t now_ns, bool failure, bool slow,
         pf__window_totals_t *out)
{
    int64_t sec = now_ns / PF_NS_PER_SEC;
    int64_t h = atomic_load_explicit(&w->head_sec, memory_order_acquire);
    pf__window_bucket_t *b;

    if (sec > h) {
        time_rotate(w, sec);
    } else if (h - sec >= (int64_t)w->size) {
        /* Read before a rotation passed a whole window on: too old. */
        time_read(w, out);
        return;
    }
    b = &w->buckets[window_mod(w, (uint32_t)sec)];
    /* Totals first, bucket second (release): see drain_bucket. */
    out->calls = atomic_fetch_add_explicit(&w->calls, 1, memory_order_relaxed) +
                 1;
    if (failure) {
        out->failures = atomic_fetch_add_explicit(&w->tfailures, 1,
                                                  memory_order_relaxed) +
                        1;
        atomic_fetch_add_explicit(&b->failures, 1, memory_order_release);
    } else {
        out->failures =
            atomic_load_explicit(&w->tfailures, memory_order_relaxed);
    }
    if (slow) {
        out->slow =
            atomic_fetch_add_explicit(&w->tslow, 1, memory_order_relaxed) + 1;
        atomic_fetch_add_explicit(&b->slow, 1, memory_order_release);
    } else {
        out->slow = atomic_load_explicit(&w->tslow, memory_order_relaxed);
    }
    atomic_fetch_add_explicit(&b->calls, 1, memory_order_release);
}

static void
time_clear(pf__window_t *w, int64_t now_ns)
{
    int64_t sec = now_ns / PF_NS_PER_SEC;

    pthread_mutex_lock(&w->lock);
    for (uint32_t i = 0; i < w->size; i++) {
        drain_bucket(w, &w->buckets[i]);
    }
    if (sec > atomic_load_explicit(&w->head_sec, memory_order_relaxed)) {
        atomic_store_explicit(&w->head_sec, sec, memory_order_release);
    }
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
