/* The executor's set of pending waits (pf_executor_wait_fd / _timer /
 * _until), kept so that pf_executor_free can end them. Embedded in the
 * executor; used by executor.c (create, shut down) and waits.c. */
#ifndef PF_SRC_WAITS_H
#define PF_SRC_WAITS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct pf_wait;

/* Every field is under lock. */
typedef struct pf__waitset {
    pthread_mutex_t lock;
    struct pf_wait *live; /* pending waits, newest first */
    uint64_t pending;     /* how many are on live */
    unsigned finishing;   /* claimed waits whose finish is under way */
    pthread_cond_t drained; /* finishing fell to 0 while closing */
    bool closing;         /* the executor is being freed: start no wait */
} pf__waitset_t;

/* Returns 0 or PF_ESYSTEM. */
int pf__waitset_init(pf__waitset_t *ws);

/* Refuse new waits (PF_ESTATE) and end every pending one with
 * PF_ECANCELED: their completions are queued on the executor, to run
 * before it stops. */
void pf__waitset_close(pf__waitset_t *ws);

/* Pending waits now. */
uint64_t pf__waitset_pending(pf__waitset_t *ws);

/* Free what ws holds; no wait may be pending. */
void pf__waitset_destroy(pf__waitset_t *ws);

#endif /* PF_SRC_WAITS_H */
