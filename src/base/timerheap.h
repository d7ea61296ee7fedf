/* A binary min-heap of timers ordered by due time, for the executor's timer
 * thread. Timers are caller memory (embedded in the objects they wake: a
 * run's state slot, a run's deadline); each remembers its index in the
 * heap, so cancelling one is O(log n) with no search. The heap itself is
 * not thread-safe: the executor guards it with its timer lock. */
#ifndef PF_SRC_TIMERHEAP_H
#define PF_SRC_TIMERHEAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pf__timer;

/* What a timer does when due. It runs on the timer thread with no lock
 * held; it must be short and must not block (it queues work). */
typedef void (*pf__timer_fn)(struct pf__timer *t);

/* One timer. fn is set by the owner; the rest belongs to the heap. */
typedef struct pf__timer {
    pf__timer_fn fn;
    int64_t at_ns; /* due time on the executor's clock */
    uint64_t seq;  /* arming order: equal due times fire first-armed first */
    size_t index;  /* position in the heap, or PF__TIMER_IDLE */
} pf__timer_t;

#define PF__TIMER_IDLE SIZE_MAX

typedef struct pf__timerheap {
    pf__timer_t **items;
    size_t len;
    size_t cap;
    uint64_t next_seq;
} pf__timerheap_t;

/* An empty heap; allocates nothing. */
void pf__timerheap_init(pf__timerheap_t *h);

/* Free the heap's array. Timers still in it are simply forgotten. */
void pf__timerheap_destroy(pf__timerheap_t *h);

/* Initialise a timer (idle) with its callback. */
void pf__timer_init(pf__timer_t *t, pf__timer_fn fn);

/* True while t is in a heap. */
static inline bool
pf__timer_armed(const pf__timer_t *t)
{
    return t->index != PF__TIMER_IDLE;
}

/* Insert idle timer t due at at_ns. Returns 0, or PF_ENOMEM when the heap
 * cannot grow (t stays idle). */
int pf__timerheap_push(pf__timerheap_t *h, pf__timer_t *t, int64_t at_ns);

/* Remove t if it is in h. Returns true if it was. */
bool pf__timerheap_remove(pf__timerheap_t *h, pf__timer_t *t);

/* The earliest timer, or NULL when h is empty. */
static inline pf__timer_t *
pf__timerheap_peek(const pf__timerheap_t *h)
{
    return h->len == 0 ? NULL : h->items[0];
}

/* Remove and return the earliest timer, or NULL when h is empty. */
pf__timer_t *pf__timerheap_pop(pf__timerheap_t *h);

/* Number of timers in h. */
static inline size_t
pf__timerheap_len(const pf__timerheap_t *h)
{
    return h->len;
}

#endif /* PF_SRC_TIMERHEAP_H */
