/* Ordered delivery of an object's events to its listener with no lock
 * held. The object pushes events into its queue while it holds its own
 * mutex; then any thread that pushed drains: one thread at a time pops an
 * event, drops the mutex, calls the listener, and takes the mutex again,
 * until the queue is empty. So events reach the listener one at a time, in
 * the order they were pushed, never under the object's lock, and a thread
 * whose events another thread is already delivering does not wait. Used by
 * the health checker and the degradation manager. */
#ifndef PF_SRC_EVQ_H
#define PF_SRC_EVQ_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A queue of fixed-size event records. Every field is under the owner's
 * mutex. */
typedef struct pf__evq {
    unsigned char *buf;     /* ring of cap records of esz bytes */
    unsigned char *scratch; /* the record being delivered */
    size_t esz;
    size_t cap;
    size_t head;
    size_t len;
    bool draining;          /* a thread is delivering */
    pthread_t drainer;      /* which, while draining */
    uint64_t delivered;
    uint64_t dropped;       /* lost to allocation failure */
} pf__evq_t;

/* An empty queue of records of esz bytes. Allocates nothing. */
void pf__evq_init(pf__evq_t *q, size_t esz);

/* Append a copy of ev. Returns false, counting it in dropped, when the
 * queue cannot grow. Caller holds the owner's mutex. */
bool pf__evq_push(pf__evq_t *q, const void *ev);

/* Called with *mu held; returns with it held. Unless another thread is
 * draining already (then it returns at once: that thread delivers these
 * events too), delivers every queued event: deliver(ev, ctx) runs with mu
 * released, then release(ev, ctx) (may be NULL) with mu held, to drop what
 * the record holds. Stops early once *stop is true (read under mu). When it
 * stops draining it broadcasts idle, so a destroy can wait for
 * !q->draining. */
void pf__evq_drain(pf__evq_t *q, pthread_mutex_t *mu, pthread_cond_t *idle,
                   const bool *stop, void (*deliver)(void *ev, void *ctx),
                   void (*release)(void *ev, void *ctx), void *ctx);

/* Called with *mu held; returns with it held. Like pf__evq_drain, but
 * when another thread is delivering, first waits (on idle) until it has
 * finished, so every event queued before the call has been delivered when
 * it returns; except when the calling thread is itself the one delivering
 * (a listener that called back into its object): then it returns at once
 * and the outer delivery goes on after the listener returns. */
void pf__evq_drain_all(pf__evq_t *q, pthread_mutex_t *mu, pthread_cond_t *idle,
                       const bool *stop, void (*deliver)(void *ev, void *ctx),
                       void (*release)(void *ev, void *ctx), void *ctx);

/* Drop every queued event, calling release(ev, ctx) (may be NULL) on
 * each, and free the queue's memory. Caller holds the owner's mutex, or is
 * its last user; no drain may be in progress. The queue is empty and
 * usable after. */
void pf__evq_clear(pf__evq_t *q, void (*release)(void *ev, void *ctx),
                   void *ctx);

#endif /* PF_SRC_EVQ_H */
