/* The context's layout, shared by context.c (variables) and the scheduler
 * (the per-state view: goto, attempt, deadline, token). */
#ifndef PF_SRC_CONTEXT_IMPL_H
#define PF_SRC_CONTEXT_IMPL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "puffinflow/context.h"
#include "puffinflow/deadline.h"

/* One variable. key NULL = empty table slot. */
typedef struct pf__ctx_entry {
    char *key;
    uint32_t hash;
    uint8_t type; /* pf_value_type_t */
    bool output;
    union {
        int64_t i;
        double d;
        struct {
            char *data; /* len bytes and a NUL */
            size_t len;
            size_t cap;
        } buf;
        struct {
            void *p;
            pf_ctx_dtor_fn dtor;
        } ptr;
    } v;
} pf__ctx_entry_t;

/* The variables: an open-addressing hash table (linear probing,
 * backward-shift deletion, at most half full), all under lock. */
typedef struct pf__ctx_store {
    pthread_mutex_t lock;
    pf__ctx_entry_t *table;
    size_t cap; /* 0 or a power of two */
    size_t count;
} pf__ctx_store_t;

/* Initialise an empty store. Returns 0 or PF_ESYSTEM. */
int pf__ctx_store_init(pf__ctx_store_t *s);

/* Free every variable (destructors run) and the store's memory. */
void pf__ctx_store_destroy(pf__ctx_store_t *s);

struct pf_run;

#define PF__CTX_INLINE_GOTOS 4

/* A context. One made by pf_ctx_new has run NULL and store pointing to
 * its own store. The per-state view lives in a run's state slot: store is
 * the run's, run and state say which state it describes, and the rest is
 * reset before each attempt and read by the scheduler after it. Only the
 * thread running the state touches the per-state fields. */
struct pf_ctx {
    pf__ctx_store_t *store;
    struct pf_run *run;
    uint32_t state;
    unsigned attempt;
    int64_t deadline_ns; /* PF_DEADLINE_NEVER_NS = none */
    pf_token_t *token;   /* made by pf_ctx_token */
    uint32_t ngotos;
    uint32_t more_cap; /* capacity of more */
    uint32_t inline_gotos[PF__CTX_INLINE_GOTOS];
    uint32_t *more; /* gotos past the inline ones */
    int goto_error; /* first failed pf_ctx_goto */
    bool may_pend;  /* inside an attempt's call: pf_ctx_pending allowed */
    double retry_after; /* the delay this attempt asked for before its
                           retry (pf_ctx_retry_after, or its completion);
                           < 0 = none */
};

#endif /* PF_SRC_CONTEXT_IMPL_H */
