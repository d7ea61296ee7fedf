/* Ordered delivery of an object's events to its listener with no lock
 * held: the one event queue of the library, used by every object whose
 * events are decided under its own mutex (the breaker, the health checker,
 * the degradation manager, the leak detector). The object pushes events
 * into its queue while it holds its own mutex; then any thread that pushed
 * drains: one thread at a time pops an event, drops the mutex, calls the
 * listener, and takes the mutex again, until the queue is empty. So events
 * reach the listener one at a time, in the order they were pushed, never
 * under the object's lock, and a thread whose events another thread is
 * already delivering does not wait (pf__evq_drain) or waits for them
 * (pf__evq_drain_all), as the object documents.
 *
 * Events that belong to one caller's own call and are told on that
 * caller's thread (a bulkhead or rate-limit rejection, a retry budget's
 * refusal) need no queue: those objects call their listener directly,
 * after releasing any lock. */
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
    bool draining;     /* a thread is delivering */
    pthread_t drainer; /* which, while draining */
    uint64_t delivered;
    uint64_t dropped; /* lost to allocation failure */
} pf__evq_t;

/* Release what a record holds (a reference, a copied string). Called with
 * the owner's mutex held. */
typedef void (*pf__evq_release_fn)(void *ev, void *ctx);

/* Tell the listener of one record. Called with the owner's mutex
 * released. */
typedef void (*pf__evq_deliver_fn)(void *ev, void *ctx);

/* An empty queue of records of esz bytes. Allocates nothing. */
void pf__evq_init(pf__evq_t *q, size_t esz);

/* Allocate room for n records now, so the first n pushes (while the
 * listener keeps up) need no memory. Returns false when out of memory
 * (the queue stays usable and empty). Call before any push. */
bool pf__evq_reserve(pf__evq_t *q, size_t n);

/* Append a copy of ev. Returns false, counting it in dropped, when the
 * queue cannot grow. Caller holds the owner's mutex. */
bool pf__evq_push(pf__evq_t *q, const void *ev);

/* Append a copy of ev; when the queue cannot grow, the oldest queued
 * record is dropped instead to make room (release(old, ctx) is called on
 * it, release may be NULL) and counted in dropped. Returns false, counting
 * ev in dropped, only when the queue holds nothing to drop. Caller holds
 * the owner's mutex. */
bool pf__evq_push_evict(pf__evq_t *q, const void *ev,
                        pf__evq_release_fn release, void *ctx);

/* Called with *mu held; returns with it held. Unless another thread is
 * draining already (then it returns at once: that thread delivers these
 * events too), delivers every queued event: deliver(ev, ctx) runs with mu
 * released, then release(ev, ctx) (may be NULL) with mu held, to drop what
 * the record holds. Stops early once *stop is true (read under mu; stop
 * may be NULL: never). When it stops draining it broadcasts idle (may be
 * NULL when nobody ever waits), so a destroy can wait for it
 * (pf__evq_wait_idle). Returns at once when the queue is empty. */
void pf__evq_drain(pf__evq_t *q, pthread_mutex_t *mu, pthread_cond_t *idle,
                   const bool *stop, pf__evq_deliver_fn deliver,
                   pf__evq_release_fn release, void *ctx);

/* Called with *mu held; returns with it held. Like pf__evq_drain, but
 * when another thread is delivering, first waits (on idle, not NULL) until
 * it has finished, so every event queued before the call has been
 * delivered when it returns; except when the calling thread is itself the
 * one delivering (a listener that called back into its object): then it
 * returns at once and the outer delivery goes on after the listener
 * returns. */
void pf__evq_drain_all(pf__evq_t *q, pthread_mutex_t *mu, pthread_cond_t *idle,
                       const bool *stop, pf__evq_deliver_fn deliver,
                       pf__evq_release_fn release, void *ctx);

/* Called with *mu held; returns with it held. Wait (on idle) until no
 * thread is delivering. A destroy sets the owner's stop flag, then calls
 * this: a delivery in progress ends after its current event. Must not be
 * called from the listener. */
void pf__evq_wait_idle(pf__evq_t *q, pthread_mutex_t *mu, pthread_cond_t *idle);

/* Drop every queued event, calling release(ev, ctx) (may be NULL) on
 * each, and free the queue's memory. Caller holds the owner's mutex, or is
 * its last user; no drain may be in progress. The queue is empty and
 * usable after. */
void pf__evq_clear(pf__evq_t *q, pf__evq_release_fn release, void *ctx);

#endif /* PF_SRC_EVQ_H */
