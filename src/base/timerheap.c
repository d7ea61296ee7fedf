/* The timer heap: an array-backed binary min-heap keyed by (at_ns, seq).
 * The sequence number makes the order total, so timers due at the same
 * instant fire in the order they were armed (a manual-clock test that arms
 * two retries for the same time sees them in a predictable order). Each
 * timer stores its index, updated on every move, so remove() sifts from
 * the timer's own place instead of searching. The array grows by doubling
 * and never shrinks: after warm-up, arming a timer allocates nothing. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "puffinflow/error.h"

#include "mem.h"
#include "timerheap.h"

void
pf__timerheap_init(pf__timerheap_t *h)
{
    h->items = NULL;
    h->len = 0;
    h->cap = 0;
    h->next_seq = 0;
}

void
pf__timerheap_destroy(pf__timerheap_t *h)
{
    size_t i;

    for (i = 0; i < h->len; i++) {
        h->items[i]->index = PF__TIMER_IDLE;
    }
    pf__free(h->items);
    pf__timerheap_init(h);
}

void
pf__timer_init(pf__timer_t *t, pf__timer_fn fn)
{
    t->fn = fn;
    t->at_ns = 0;
    t->seq = 0;
    t->index = PF__TIMER_IDLE;
}

static bool
before(const pf__timer_t *a, const pf__timer_t *b)
{
    return a->at_ns < b->at_ns || (a->at_ns == b->at_ns && a->seq < b->seq);
}

static void
place(pf__timerheap_t *h, size_t i, pf__timer_t *t)
{
    h->items[i] = t;
    t->index = i;
}

static void
sift_up(pf__timerheap_t *h, size_t i)
{
    pf__timer_t *t = h->items[i];

    while (i > 0) {
        size_t parent = (i - 1) / 2;

        if (!before(t, h->items[parent])) {
            break;
        }
        place(h, i, h->items[parent]);
        i = parent;
    }
    place(h, i, t);
}

static void
sift_down(pf__timerheap_t *h, size_t i)
{
    pf__timer_t *t = h->items[i];

    for (;;) {
        size_t child = 2 * i + 1;

        if (child >= h->len) {
            break;
        }
        if (child + 1 < h->len &&
            before(h->items[child + 1], h->items[child])) {
            child++;
        }
        if (!before(h->items[child], t)) {
            break;
        }
        place(h, i, h->items[child]);
        i = child;
    }
    place(h, i, t);
}

int
pf__timerheap_push(pf__timerheap_t *h, pf__timer_t *t, int64_t at_ns)
{
    if (pf__grow((void **)&h->items, &h->cap, h->len + 1, sizeof(*h->items)) !=
        0) {
        return PF_ENOMEM;
    }
    t->at_ns = at_ns;
    t->seq = h->next_seq++;
    place(h, h->len, t);
    h->len++;
    sift_up(h, h->len - 1);
    return 0;
}

bool
pf__timerheap_remove(pf__timerheap_t *h, pf__timer_t *t)
{
    size_t i = t->index;
    pf__timer_t *last;

    if (i == PF__TIMER_IDLE || i >= h->len || h->items[i] != t) {
        return false;
    }
    t->index = PF__TIMER_IDLE;
    h->len--;
    if (i == h->len) {
        return true;
    }
    /* Move the last timer into the hole; it may belong above or below. */
    last = h->items[h->len];
    place(h, i, last);
    if (i > 0 && before(last, h->items[(i - 1) / 2])) {
        sift_up(h, i);
    } else {
        sift_down(h, i);
    }
    return true;
}

pf__timer_t *
pf__timerheap_pop(pf__timerheap_t *h)
{
    pf__timer_t *t = pf__timerheap_peek(h);

    if (t != NULL) {
        pf__timerheap_remove(h, t);
    }
    return t;
}
