/* The event queue of evq.h: a ring buffer of records that doubles when
 * full, and a drain loop guarded by a draining flag so that exactly one
 * thread delivers at a time. */
#include <string.h>

#include "evq.h"
#include "mem.h"

void
pf__evq_init(pf__evq_t *q, size_t esz)
{
    memset(q, 0, sizeof(*q));
    q->esz = esz;
}

/* Make room for one more record, linearising the ring into a new buffer
 * twice as large. */
static bool
grow(pf__evq_t *q)
{
    size_t ncap = q->cap == 0 ? 8 : q->cap * 2;
    unsigned char *nbuf;
    size_t i;

    if (q->scratch == NULL) {
        q->scratch = pf__malloc(q->esz);
        if (q->scratch == NULL) {
            return false;
        }
    }
    nbuf = pf__calloc(ncap, q->esz);
    if (nbuf == NULL) {
        return false;
    }
    for (i = 0; i < q->len; i++) {
        size_t at = (q->head + i) % q->cap;

        memcpy(nbuf + i * q->esz, q->buf + at * q->esz, q->esz);
    }
    pf__free(q->buf);
    q->buf = nbuf;
    q->cap = ncap;
    q->head = 0;
    return true;
}

bool
pf__evq_push(pf__evq_t *q, const void *ev)
{
    size_t at;

    if (q->len == q->cap && !grow(q)) {
        q->dropped++;
        return false;
    }
    at = (q->head + q->len) % q->cap;
    memcpy(q->buf + at * q->esz, ev, q->esz);
    q->len++;
    return true;
}

void
pf__evq_drain(pf__evq_t *q, pthread_mutex_t *mu, pthread_cond_t *idle,
              const bool *stop, void (*deliver)(void *ev, void *ctx),
              void (*release)(void *ev, void *ctx), void *ctx)
{
    if (q->draining) {
        return;
    }
    q->draining = true;
    q->drainer = pthread_self();
    while (q->len > 0 && !*stop) {
        /* Pop into scratch: pushes made while we deliver may reallocate
         * the ring, but scratch stays put (it is only ever used here, by
         * the one draining thread). */
        memcpy(q->scratch, q->buf + q->head * q->esz, q->esz);
        q->head = (q->head + 1) % q->cap;
        q->len--;
        q->delivered++;
        pthread_mutex_unlock(mu);
        deliver(q->scratch, ctx);
        pthread_mutex_lock(mu);
        if (release != NULL) {
            release(q->scratch, ctx);
        }
    }
    q->draining = false;
    pthread_cond_broadcast(idle);
}

void
pf__evq_drain_all(pf__evq_t *q, pthread_mutex_t *mu, pthread_cond_t *idle,
                  const bool *stop, void (*deliver)(void *ev, void *ctx),
                  void (*release)(void *ev, void *ctx), void *ctx)
{
    while (q->draining && !*stop) {
        if (pthread_equal(q->drainer, pthread_self())) {
            return;
        }
        pthread_cond_wait(idle, mu);
    }
    pf__evq_drain(q, mu, idle, stop, deliver, release, ctx);
}

void
pf__evq_clear(pf__evq_t *q, void (*release)(void *ev, void *ctx), void *ctx)
{
    while (q->len > 0) {
        if (release != NULL) {
            release(q->buf + q->head * q->esz, ctx);
        }
        q->head = (q->head + 1) % q->cap;
        q->len--;
    }
    pf__free(q->buf);
    pf__free(q->scratch);
    q->buf = NULL;
    q->scratch = NULL;
    q->cap = 0;
    q->head = 0;
}
