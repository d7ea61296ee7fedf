/* Context variables: a small hash table of typed values under one mutex.
 *
 * Values are copied in and out under the lock, so no caller ever holds a
 * pointer into the table. Memory a set needs is allocated before anything
 * is changed, so PF_ENOMEM leaves the old value in place; a string or
 * bytes value that fits the old buffer reuses it, so a run that sets the
 * same variables on every pass allocates nothing after the first. Pointer
 * destructors run after the lock is dropped: a destructor may use the
 * context.
 *
 * The per-state view (pf_ctx_goto, pf_ctx_attempt, pf_ctx_deadline,
 * pf_ctx_token, ...) is a pf_ctx_t inside a run's slot: its questions are
 * answered from the slot, the run and the agent's definition, read by the
 * thread running the state. A goto is recorded in the view (a few inline,
 * the rest on the heap, kept across runs) and acted on by the scheduler
 * once the attempt has succeeded. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "puffinflow/agent.h"
#include "puffinflow/context.h"
#include "puffinflow/error.h"

#include "agent_impl.h"
#include "context_impl.h"
#include "mem.h"
#include "run_impl.h"
#include "schedule_impl.h"
#include "token_impl.h"

/* A context made by pf_ctx_new: the context and its own store. */
typedef struct root {
    pf_ctx_t ctx;
    pf__ctx_store_t store;
} root_t;

/* ---- the table ---------------------------------------------------------- */

static uint32_t
hash_key(const char *key)
{
    uint32_t h = 2166136261u; /* FNV-1a */

    for (; *key != '\0'; key++) {
        h = (h ^ (unsigned char)*key) * 16777619u;
    }
    return h;
}

/* The index of key, or of the empty slot where it would go; cap > 0. */
static size_t
probe(const pf__ctx_store_t *s, const char *key, uint32_t h)
{
    size_t mask = s->cap - 1;
    size_t i = h & mask;

    while (s->table[i].key != NULL) {
        if (s->table[i].hash == h && strcmp(s->table[i].key, key) == 0) {
            break;
        }
        i = (i + 1) & mask;
    }
    return i;
}

static pf__ctx_entry_t *
find(const pf__ctx_store_t *s, const char *key)
{
    size_t i;

    if (s->cap == 0) {
        return NULL;
    }
    i = probe(s, key, hash_key(key));
    return s->table[i].key == NULL ? NULL : &s->table[i];
}

/* Make room for one more entry (at most half full). */
static int
reserve(pf__ctx_store_t *s)
{
    pf__ctx_entry_t *old = s->table;
    size_t old_cap = s->cap;
    size_t cap;
    size_t i;

    if ((s->count + 1) * 2 <= s->cap) {
        return 0;
    }
    cap = s->cap == 0 ? 8 : s->cap * 2;
    s->table = pf__calloc(cap, sizeof(*s->table));
    if (s->table == NULL) {
        s->table = old;
        return PF_ENOMEM;
    }
    s->cap = cap;
    for (i = 0; i < old_cap; i++) {
        if (old[i].key != NULL) {
            s->table[probe(s, old[i].key, old[i].hash)] = old[i];
        }
    }
    pf__free(old);
    return 0;
}

/* Remove the entry at i, shifting later entries of its probe run back so
 * lookups never meet a hole. The entry's memory is the caller's. */
static void
remove_at(pf__ctx_store_t *s, size_t i)
{
    size_t mask = s->cap - 1;
    size_t j = i;

    s->table[i].key = NULL;
    s->count--;
    for (;;) {
        size_t k;

        j = (j + 1) & mask;
        if (s->table[j].key == NULL) {
            return;
        }
        k = s->table[j].hash & mask;
        /* Move j into the hole at i unless its home k lies cyclically in
         * (i, j]: then it is already as close to home as it can be. */
        if ((i <= j) ? (i < k && k <= j) : (i < k || k <= j)) {
            continue;
        }
        s->table[i] = s->table[j];
        s->table[j].key = NULL;
        i = j;
    }
}

/* What a replaced or removed value leaves to free once unlocked. */
typedef struct leftovers {
    char *key;
    char *buf;
    void *ptr;
    pf_ctx_dtor_fn dtor;
} leftovers_t;

static void
collect_value(const pf__ctx_entry_t *e, leftovers_t *l)
{
    if (e->type == PF_VALUE_STRING || e->type == PF_VALUE_BYTES) {
        l->buf = e->v.buf.data;
    } else if (e->type == PF_VALUE_PTR && e->v.ptr.dtor != NULL) {
        l->ptr = e->v.ptr.p;
        l->dtor = e->v.ptr.dtor;
    }
}

static void
release(leftovers_t *l)
{
    pf__free(l->key);
    pf__free(l->buf);
    if (l->dtor != NULL) {
        l->dtor(l->ptr);
    }
}

int
pf__ctx_store_init(pf__ctx_store_t *s)
{
    s->table = NULL;
    s->cap = 0;
    s->count = 0;
    return pthread_mutex_init(&s->lock, NULL) == 0 ? 0 : PF_ESYSTEM;
}

/* Free every entry of a table detached from its store. */
static void
free_table(pf__ctx_entry_t *table, size_t cap)
{
    size_t i;

    for (i = 0; i < cap; i++) {
        leftovers_t l = {0};

        if (table[i].key == NULL) {
            continue;
        }
        l.key = table[i].key;
        collect_value(&table[i], &l);
        release(&l);
    }
    pf__free(table);
}

void
pf__ctx_store_destroy(pf__ctx_store_t *s)
{
    free_table(s->table, s->cap);
    s->table = NULL;
    s->cap = 0;
    s->count = 0;
    pthread_mutex_destroy(&s->lock);
}

/* ---- create, free ------------------------------------------------------- */

int
pf_ctx_new(pf_ctx_t **out)
{
    root_t *r;
    int rc;

    if (out == NULL) {
        return PF_EINVAL;
    }
    r = pf__calloc(1, sizeof(*r));
    if (r == NULL) {
        return PF_ENOMEM;
    }
    rc = pf__ctx_store_init(&r->store);
    if (rc != 0) {
        pf__free(r);
        return rc;
    }
    r->ctx.store = &r->store;
    r->ctx.run = NULL;
    r->ctx.deadline_ns = PF_DEADLINE_NEVER_NS;
    *out = &r->ctx;
    return 0;
}

void
pf_ctx_free(pf_ctx_t *ctx)
{
    root_t *r;

    if (ctx == NULL || ctx->run != NULL) {
        return;
    }
    r = (root_t *)ctx; /* ctx is the first member of its root */
    pf__ctx_store_destroy(&r->store);
    pf__free(r);
}

void
pf_ctx_clear(pf_ctx_t *ctx)
{
    pf__ctx_store_t *s;
    pf__ctx_entry_t *table;
    size_t cap;

    if (ctx == NULL) {
        return;
    }
    s = ctx->store;
    pthread_mutex_lock(&s->lock);
    table = s->table;
    cap = s->cap;
    s->table = NULL;
    s->cap = 0;
    s->count = 0;
    pthread_mutex_unlock(&s->lock);
    free_table(table, cap);
}

/* ---- setters ------------------------------------------------------------ */

static bool
bad_key(const pf_ctx_t *ctx, const char *key)
{
    return ctx == NULL || key == NULL || key[0] == '\0';
}

/* The entry for key, created (typeless) if missing. Called with the lock
 * held. On PF_ENOMEM nothing changed. */
static int
entry_for(pf__ctx_store_t *s, const char *key, pf__ctx_entry_t **out)
{
    uint32_t h = hash_key(key);
    size_t i;
    char *copy;

    if (s->cap != 0) {
        i = probe(s, key, h);
        if (s->table[i].key != NULL) {
            *out = &s->table[i];
            return 0;
        }
    }
    copy = pf__strdup(key);
    if (copy == NULL) {
        return PF_ENOMEM;
    }
    if (reserve(s) != 0) {
        pf__free(copy);
        return PF_ENOMEM;
    }
    i = probe(s, key, h);
    memset(&s->table[i], 0, sizeof(s->table[i]));
    s->table[i].key = copy;
    s->table[i].hash = h;
    s->table[i].type = PF_VALUE_NONE;
    s->count++;
    *out = &s->table[i];
    return 0;
}

/* Set a scalar or pointer value (no allocation beyond the entry). */
static int
set_plain(pf_ctx_t *ctx, const char *key, uint8_t type, int64_t i, double d,
          void *p, pf_ctx_dtor_fn dtor)
{
    pf__ctx_store_t *s = ctx->store;
    pf__ctx_entry_t *e;
    leftovers_t l = {0};
    int rc;

    pthread_mutex_lock(&s->lock);
    rc = entry_for(s, key, &e);
    if (rc == 0) {
        collect_value(e, &l);
        e->type = type;
        if (type == PF_VALUE_INT) {
            e->v.i = i;
        } else if (type == PF_VALUE_DOUBLE) {
            e->v.d = d;
        } else {
            e->v.ptr.p = p;
            e->v.ptr.dtor = dtor;
        }
    }
    pthread_mutex_unlock(&s->lock);
    release(&l);
    return rc;
}

int
pf_ctx_set_int(pf_ctx_t *ctx, const char *key, int64_t value)
{
    if (bad_key(ctx, key)) {
        return PF_EINVAL;
    }
    return set_plain(ctx, key, PF_VALUE_INT, value, 0.0, NULL, NULL);
}

int
pf_ctx_set_double(pf_ctx_t *ctx, const char *key, double value)
{
    if (bad_key(ctx, key)) {
        return PF_EINVAL;
    }
    return set_plain(ctx, key, PF_VALUE_DOUBLE, 0, value, NULL, NULL);
}

int
pf_ctx_set_ptr(pf_ctx_t *ctx, const char *key, void *ptr, pf_ctx_dtor_fn dtor)
{
    int rc;

    if (bad_key(ctx, key)) {
        rc = PF_EINVAL;
    } else {
        rc = set_plain(ctx, key, PF_VALUE_PTR, 0, 0.0, ptr, dtor);
    }
    if (rc != 0 && dtor != NULL) {
        dtor(ptr); /* the context took ownership, even of a failed set */
    }
    return rc;
}

static int
set_buf(pf_ctx_t *ctx, const char *key, uint8_t type, const void *data,
        size_t len)
{
    pf__ctx_store_t *s = ctx->store;
    pf__ctx_entry_t *e;
    leftovers_t l = {0};
    char *fresh = NULL;
    int rc;

    if (len == SIZE_MAX) {
        return PF_ENOMEM;
    }
    pthread_mutex_lock(&s->lock);
    rc = entry_for(s, key, &e);
    if (rc != 0) {
        goto out;
    }
    if ((e->type == PF_VALUE_STRING || e->type == PF_VALUE_BYTES) &&
        e->v.buf.cap >= len + 1) {
        /* Reuse the buffer: no allocation on a repeated set. */
        memcpy(e->v.buf.data, data == NULL ? "" : data, len);
        e->v.buf.data[len] = '\0';
        e->v.buf.len = len;
        e->type = type;
        goto out;
    }
    fresh = pf__malloc(len + 1);
    if (fresh == NULL) {
        if (e->type == PF_VALUE_NONE) {
            /* A new entry must not stay behind typeless. */
            l.key = e->key;
            remove_at(s, (size_t)(e - s->table));
        }
        rc = PF_ENOMEM;
        goto out;
    }
    if (len > 0) {
        memcpy(fresh, data, len);
    }
    fresh[len] = '\0';
    collect_value(e, &l);
    e->type = type;
    e->v.buf.data = fresh;
    e->v.buf.len = len;
    e->v.buf.cap = len + 1;
out:
    pthread_mutex_unlock(&s->lock);
    release(&l);
    return rc;
}

int
pf_ctx_set_string(pf_ctx_t *ctx, const char *key, const char *value)
{
    if (bad_key(ctx, key) || value == NULL) {
        return PF_EINVAL;
    }
    return set_buf(ctx, key, PF_VALUE_STRING, value, strlen(value));
}

int
pf_ctx_set_bytes(pf_ctx_t *ctx, const char *key, const void *data, size_t len)
{
    if (bad_key(ctx, key) || (data == NULL && len > 0)) {
        return PF_EINVAL;
    }
    return set_buf(ctx, key, PF_VALUE_BYTES, data, len);
}

/* ---- getters ------------------------------------------------------------ */

/* Lock and find key with type `type` (PF_VALUE_NONE = any). On 0 the lock
 * is held and *out set; otherwise it is released. */
static int
lookup(const pf_ctx_t *ctx, const char *key, uint8_t type,
       pf__ctx_entry_t **out)
{
    pf__ctx_store_t *s;
    pf__ctx_entry_t *e;

    if (bad_key(ctx, key)) {
        return PF_EINVAL;
    }
    s = ctx->store;
    pthread_mutex_lock(&s->lock);
    e = find(s, key);
    if (e == NULL) {
        pthread_mutex_unlock(&s->lock);
        return PF_ENOTFOUND;
    }
    if (type != PF_VALUE_NONE && e->type != type) {
        pthread_mutex_unlock(&s->lock);
        return PF_EINVAL;
    }
    *out = e;
    return 0;
}

static void
unlock(const pf_ctx_t *ctx)
{
    pthread_mutex_unlock(&ctx->store->lock);
}

int
pf_ctx_get_int(const pf_ctx_t *ctx, const char *key, int64_t *out)
{
    pf__ctx_entry_t *e;
    int rc;

    if (out == NULL) {
        return PF_EINVAL;
    }
    rc = lookup(ctx, key, PF_VALUE_INT, &e);
    if (rc == 0) {
        *out = e->v.i;
        unlock(ctx);
    }
    return rc;
}

int
pf_ctx_get_double(const pf_ctx_t *ctx, const char *key, double *out)
{
    pf__ctx_entry_t *e;
    int rc;

    if (out == NULL) {
        return PF_EINVAL;
    }
    rc = lookup(ctx, key, PF_VALUE_DOUBLE, &e);
    if (rc == 0) {
        *out = e->v.d;
        unlock(ctx);
    }
    return rc;
}

/* Copy a buffer value; with_nul adds the terminating NUL to what must fit. */
static int
copy_buf(const pf_ctx_t *ctx, const char *key, bool strings_only, void *buf,
         size_t cap, size_t *len, bool with_nul)
{
    pf__ctx_entry_t *e;
    size_t need;
    int rc;

    if (buf == NULL && cap > 0) {
        return PF_EINVAL;
    }
    rc = lookup(ctx, key, PF_VALUE_NONE, &e);
    if (rc != 0) {
        return rc;
    }
    if (e->type != PF_VALUE_STRING &&
        (strings_only || e->type != PF_VALUE_BYTES)) {
        unlock(ctx);
        return PF_EINVAL;
    }
    need = e->v.buf.len + (with_nul ? 1 : 0);
    if (len != NULL) {
        *len = e->v.buf.len;
    }
    if (cap < need) {
        unlock(ctx);
        return PF_ERANGE;
    }
    if (need > 0) {
        memcpy(buf, e->v.buf.data, need);
    }
    unlock(ctx);
    return 0;
}

int
pf_ctx_get_string(const pf_ctx_t *ctx, const char *key, char *buf, size_t cap,
                  size_t *len)
{
    return copy_buf(ctx, key, true, buf, cap, len, true);
}

int
pf_ctx_get_bytes(const pf_ctx_t *ctx, const char *key, void *buf, size_t cap,
                 size_t *len)
{
    return copy_buf(ctx, key, false, buf, cap, len, false);
}

int
pf_ctx_dup_string(const pf_ctx_t *ctx, const char *key, char **out)
{
    pf__ctx_entry_t *e;
    char *copy;
    int rc;

    if (out == NULL) {
        return PF_EINVAL;
    }
    rc = lookup(ctx, key, PF_VALUE_STRING, &e);
    if (rc != 0) {
        return rc;
    }
    copy = pf__malloc(e->v.buf.len + 1);
    if (copy != NULL) {
        memcpy(copy, e->v.buf.data, e->v.buf.len + 1);
    }
    unlock(ctx);
    if (copy == NULL) {
        return PF_ENOMEM;
    }
    *out = copy;
    return 0;
}

int
pf_ctx_get_ptr(const pf_ctx_t *ctx, const char *key, void **out)
{
    pf__ctx_entry_t *e;
    int rc;

    if (out == NULL) {
        return PF_EINVAL;
    }
    rc = lookup(ctx, key, PF_VALUE_PTR, &e);
    if (rc == 0) {
        *out = e->v.ptr.p;
        unlock(ctx);
    }
    return rc;
}

int
pf_ctx_take_ptr(pf_ctx_t *ctx, const char *key, void **out)
{
    pf__ctx_entry_t *e;
    char *k;
    int rc;

    if (out == NULL) {
        return PF_EINVAL;
    }
    rc = lookup(ctx, key, PF_VALUE_PTR, &e);
    if (rc != 0) {
        return rc;
    }
    *out = e->v.ptr.p;
    k = e->key;
    remove_at(ctx->store, (size_t)(e - ctx->store->table));
    unlock(ctx);
    pf__free(k);
    return 0;
}

pf_value_type_t
pf_ctx_type(const pf_ctx_t *ctx, const char *key)
{
    pf__ctx_entry_t *e;
    pf_value_type_t t;

    if (lookup(ctx, key, PF_VALUE_NONE, &e) != 0) {
        return PF_VALUE_NONE;
    }
    t = (pf_value_type_t)e->type;
    unlock(ctx);
    return t;
}

bool
pf_ctx_has(const pf_ctx_t *ctx, const char *key)
{
    return pf_ctx_type(ctx, key) != PF_VALUE_NONE;
}

int
pf_ctx_remove(pf_ctx_t *ctx, const char *key)
{
    pf__ctx_entry_t *e;
    leftovers_t l = {0};
    int rc;

    rc = lookup(ctx, key, PF_VALUE_NONE, &e);
    if (rc != 0) {
        return rc;
    }
    l.key = e->key;
    collect_value(e, &l);
    remove_at(ctx->store, (size_t)(e - ctx->store->table));
    unlock(ctx);
    release(&l);
    return 0;
}

size_t
pf_ctx_count(const pf_ctx_t *ctx)
{
    size_t n;

    if (ctx == NULL) {
        return 0;
    }
    pthread_mutex_lock(&ctx->store->lock);
    n = ctx->store->count;
    pthread_mutex_unlock(&ctx->store->lock);
    return n;
}

/* ---- outputs ------------------------------------------------------------ */

int
pf_ctx_mark_output(pf_ctx_t *ctx, const char *key)
{
    pf__ctx_entry_t *e;
    int rc;

    rc = lookup(ctx, key, PF_VALUE_NONE, &e);
    if (rc == 0) {
        e->output = true;
        unlock(ctx);
    }
    return rc;
}

bool
pf_ctx_is_output(const pf_ctx_t *ctx, const char *key)
{
    pf__ctx_entry_t *e;
    bool output;

    if (lookup(ctx, key, PF_VALUE_NONE, &e) != 0) {
        return false;
    }
    output = e->output;
    unlock(ctx);
    return output;
}

static int
compare_keys(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int
pf_ctx_keys(const pf_ctx_t *ctx, pf_ctx_keys_filter_t filter, char ***out,
            size_t *n)
{
    pf__ctx_store_t *s;
    size_t bytes;
    size_t count = 0;
    size_t i;
    char **keys;
    char *p;

    if (ctx == NULL || out == NULL || n == NULL ||
        (filter != PF_CTX_KEYS_ALL && filter != PF_CTX_KEYS_OUTPUTS)) {
        return PF_EINVAL;
    }
    s = ctx->store;
    pthread_mutex_lock(&s->lock);
    bytes = 0;
    for (i = 0; i < s->cap; i++) {
        pf__ctx_entry_t *e = &s->table[i];

        if (e->key != NULL && (filter == PF_CTX_KEYS_ALL || e->output)) {
            bytes += strlen(e->key) + 1;
            count++;
        }
    }
    keys = pf__malloc((count + 1) * sizeof(char *) + bytes);
    if (keys == NULL) {
        pthread_mutex_unlock(&s->lock);
        return PF_ENOMEM;
    }
    p = (char *)(keys + count + 1);
    count = 0;
    for (i = 0; i < s->cap; i++) {
        pf__ctx_entry_t *e = &s->table[i];

        if (e->key != NULL && (filter == PF_CTX_KEYS_ALL || e->output)) {
            size_t len = strlen(e->key) + 1;

            memcpy(p, e->key, len);
            keys[count++] = p;
            p += len;
        }
    }
    pthread_mutex_unlock(&s->lock);
    keys[count] = NULL;
    qsort(keys, count, sizeof(char *), compare_keys);
    *out = keys;
    *n = count;
    return 0;
}

/* ---- the per-state view of the context ----------------------------------- */

int
pf_ctx_goto(pf_ctx_t *ctx, const char *state)
{
    const pf__state_t *d;
    uint32_t t;
    uint32_t j;

    if (ctx == NULL || state == NULL) {
        return PF_EINVAL;
    }
    if (ctx->run == NULL) {
        return PF_ESTATE;
    }
    t = pf__agent_find(ctx->run->agent, state);
    if (t == PF__NONE) {
        if (ctx->goto_error == 0) {
            ctx->goto_error = PF_ENOTFOUND;
        }
        return PF_ENOTFOUND;
    }
    d = &ctx->run->agent->states[ctx->state];
    if (d->nnext != 0) {
        for (j = 0; j < d->nnext && d->next[j] != t; j++) {
        }
        if (j == d->nnext) {
            if (ctx->goto_error == 0) {
                ctx->goto_error = PF_EINVAL;
            }
            return PF_EINVAL;
        }
    }
    for (j = 0; j < ctx->ngotos; j++) {
        uint32_t g = j < PF__CTX_INLINE_GOTOS
                         ? ctx->inline_gotos[j]
                         : ctx->more[j - PF__CTX_INLINE_GOTOS];

        if (g == t) {
            return 0;
        }
    }
    if (ctx->ngotos < PF__CTX_INLINE_GOTOS) {
        ctx->inline_gotos[ctx->ngotos++] = t;
        return 0;
    }
    j = ctx->ngotos - PF__CTX_INLINE_GOTOS;
    if (j >= ctx->more_cap) {
        size_t cap = ctx->more_cap;

        if (pf__grow((void **)&ctx->more, &cap, (size_t)j + 1,
                     sizeof(uint32_t)) != 0) {
            return PF_ENOMEM;
        }
        ctx->more_cap = (uint32_t)cap;
    }
    ctx->more[j] = t;
    ctx->ngotos++;
    return 0;
}

const char *
pf_ctx_state_name(const pf_ctx_t *ctx)
{
    if (ctx == NULL || ctx->run == NULL) {
        return NULL;
    }
    return ctx->run->agent->states[ctx->state].name;
}

const char *
pf_ctx_agent_name(const pf_ctx_t *ctx)
{
    if (ctx == NULL || ctx->run == NULL) {
        return NULL;
    }
    return ctx->run->agent->name;
}

unsigned
pf_ctx_attempt(const pf_ctx_t *ctx)
{
    return ctx == NULL || ctx->run == NULL ? 0 : ctx->attempt;
}

pf_deadline_t
pf_ctx_deadline(const pf_ctx_t *ctx)
{
    if (ctx == NULL || ctx->run == NULL ||
        ctx->deadline_ns == PF_DEADLINE_NEVER_NS) {
        return pf_deadline_none();
    }
    return pf_deadline_at_ns(ctx->run->clock, ctx->deadline_ns);
}

/* The run's token, made on first use. It counts as cancelled from the
 * run's deadline on, before the deadline timer has cancelled the run.
 * run.c's run_cancel reads r->token under the same lock, and frees it
 * when the run object is released. */
static pf_token_t *
run_token(pf__run_t *r)
{
    pf_token_t *tok;

    pthread_mutex_lock(&r->lock);
    if (r->token == NULL) {
        pf_deadline_t d = r->deadline_ns == PF_DEADLINE_NEVER_NS
                              ? pf_deadline_none()
                              : pf_deadline_at_ns(r->clock, r->deadline_ns);

        if (pf__token_new_expiring(r->parent_token, &d, &r->token) != 0) {
            r->token = NULL;
        }
    }
    tok = r->token;
    pthread_mutex_unlock(&r->lock);
    /* Made after a cancellation that found no token: cancel it here (see
     * run_cancel, which reads the token under the same lock). */
    if (tok != NULL &&
        atomic_load_explicit(&r->cancel_reason, memory_order_seq_cst) != 0) {
        pf_token_cancel(tok);
    }
    return tok;
}

pf_token_t *
pf_ctx_token(pf_ctx_t *ctx)
{
    pf__run_t *r;
    pf_token_t *rt;
    pf_token_t *tok;
    pf_deadline_t d;

    if (ctx == NULL || ctx->run == NULL) {
        return NULL;
    }
    if (ctx->token != NULL) {
        return ctx->token;
    }
    r = ctx->run;
    rt = run_token(r);
    if (rt == NULL || ctx->deadline_ns == r->deadline_ns) {
        ctx->token = rt; /* no deadline of its own: the run's token */
        return rt;
    }
    /* Cancelled from the deadline on, even before (or without) the timer
     * below: asked for late, it is returned cancelled. */
    d = pf_deadline_at_ns(r->clock, ctx->deadline_ns);
    if (pf__token_new_expiring(rt, &d, &tok) != 0) {
        return NULL;
    }
    ctx->token = tok;
    pf__sched_watch_token(r, &r->slots[ctx->state], tok, ctx->deadline_ns);
    return tok;
}

bool
pf_ctx_is_cancelled(const pf_ctx_t *ctx)
{
    if (ctx == NULL || ctx->run == NULL) {
        return false;
    }
    if (atomic_load_explicit(&ctx->run->cancel_reason, memory_order_acquire) !=
        0) {
        return true;
    }
    if (ctx->token != NULL && pf_token_is_cancelled(ctx->token)) {
        return true;
    }
    return ctx->deadline_ns != PF_DEADLINE_NEVER_NS &&
           pf__run_now(ctx->run) >= ctx->deadline_ns;
}
