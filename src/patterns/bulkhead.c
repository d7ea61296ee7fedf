/* Bulkhead.
 *
 * The whole admission state lives in one 64-bit atomic word: the number of
 * callers inside (in_use), the limit, and a WAITERS bit set while the queue
 * is not empty. One compare-and-swap on that word decides an admission
 * against the limit in force at that very instant, so a concurrent resize
 * can never let a caller in above the limit it sees.
 *
 * While WAITERS is clear, try_enter and leave are a single CAS each and
 * take no lock. While it is set, neither fast path may change the word:
 * try_enter refuses, and leave takes the lock and hands its slot to the
 * first waiter without releasing it (in_use stays put), so the slot passes
 * from the leaver to the waiter with nobody able to slip in between: no
 * barging. (With the invariant below there is never a free slot while the
 * bit is set; try_enter checks the bit anyway, which costs nothing.) The bit is
 * set and cleared only under the lock, together with the queue, so under the
 * lock "WAITERS set" means exactly "queue not empty".
 *
 * Invariant, under the lock: if the queue is not empty, in_use >= limit
 * (nobody waits while a slot is free). Every path that frees a slot or
 * raises the limit while WAITERS is set grants waiters until it holds.
 *
 * The queue is one FIFO list per priority. Each entry is a ticket: either a
 * caller's pf_bulkhead_ticket_t (a grant runs its callback) or one on a
 * blocked thread's stack (a grant signals its condition variable). Grants
 * are decided under the lock, but callbacks run after it is released, in a
 * per-thread list: a callback that leaves (and so grants the next ticket)
 * only appends to that list, so chains of grants never nest on the stack.
 *
 * Shared (config field shared): the limit across processes is a table of
 * max_concurrent_calls lease words in a shared-memory segment (shm.h,
 * lease.h), each free (0) or naming the process that holds it. An
 * admission takes a local slot as above and then a lease (one CAS on a
 * free word); a leave gives back one of the process's leases (they are
 * interchangeable) and then the local slot. A shared bulkhead never
 * queues, so no waiter is ever granted a local slot without a lease. When
 * no word is free, the holders are checked (at most once a millisecond a
 * process, on the bulkhead's clock) and the words of processes that are
 * gone are freed.
 *
 * Synced (config field sync): the same, with the store's hook in place of
 * the lease table: after the local slot, the hook's take (a refusal gives
 * the slot back), and before a leave gives its slot back, the hook's
 * give. A synced bulkhead never queues either.
 *
 * Lock order: the bulkhead's lock is the only lock held by this file; the
 * clock's and a token's are taken inside pf__wait_until, which releases
 * ours first when it needs to. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "puffinflow/bulkhead.h"
#include "puffinflow/error.h"
#include "puffinflow/shared.h"
#include "puffinflow/sync.h"

#include "adaptive.h"
#include "clock_impl.h"
#include "lease.h"
#include "mem.h"
#include "shm.h"
#include "timeutil.h"
#include "wait.h"

/* ---- the state word ----------------------------------------------------- */

#define FIELD_BITS 31
#define FIELD_MASK ((UINT64_C(1) << FIELD_BITS) - 1)
#define LIMIT_SHIFT FIELD_BITS
#define WAITERS_BIT (UINT64_C(1) << 62)

static inline unsigned
st_in_use(uint64_t s)
{
    return (unsigned)(s & FIELD_MASK);
}

static inline unsigned
st_limit(uint64_t s)
{
    return (unsigned)((s >> LIMIT_SHIFT) & FIELD_MASK);
}

static inline bool
st_waiters(uint64_t s)
{
    return (s & WAITERS_BIT) != 0;
}

static inline uint64_t
st_with_limit(uint64_t s, unsigned limit)
{
    return (s & ~(FIELD_MASK << LIMIT_SHIFT)) |
           ((uint64_t)limit << LIMIT_SHIFT);
}

#define MAX_SHARED_SLOTS 4096u

/* ---- the object --------------------------------------------------------- */

enum { T_IDLE = 0, T_QUEUED = 0x5155, T_GRANTED = 0x4752 };

/* state and the counters after it are atomics, read and written without
 * the lock (the counters with relaxed order: each only counts). The fields
 * from name to aimd's bounds are immutable after pf_bulkhead_new. The queue
 * and the AIMD controller's running values are under lock; waiting mirrors
 * queue_len for lock-free metrics. */
struct pf_bulkhead {
    _Atomic uint64_t state;
    _Atomic uint64_t accepted;
    _Atomic unsigned peak;
    _Atomic unsigned waiting;
    _Atomic uint64_t rejected_full;
    _Atomic uint64_t rejected_timeout;
    _Atomic uint64_t cancelled;
    _Atomic uint64_t misuse;

    char *name;
    const pf_clock_t *clock;
    int64_t max_wait_ns; /* INT64_MAX = no limit */
    unsigned max_queue;
    bool can_wait; /* max_wait_ns > 0 && max_queue > 0 */
    bool adaptive;
    pf_bulkhead_listener_fn listener;
    void *listener_arg;

    /* Shared only: the segment, its table of leases (nslots words), this
     * process's lease word, and the next time holders may be checked. */
    pf__shm_t shm;
    _Atomic uint64_t *slots;
    unsigned nslots;
    uint64_t self;
    _Atomic int64_t next_liveness_ns;

    /* Synced (config field sync): the store's hook, copied; all NULL =
     * none. */
    pf_sync_t sync;

    pthread_mutex_t lock;
    pf_bulkhead_ticket_t *head[PF_PRIORITY_COUNT];
    pf_bulkhead_ticket_t *tail[PF_PRIORITY_COUNT];
    unsigned queue_len;
    pf__aimd_t aimd;
};

void
pf_bulkhead_config_init(pf_bulkhead_config_t *cfg)
{
    if (cfg == NULL) {
        return;
    }
    cfg->name = "default";
    cfg->max_concurrent_calls = 10;
    cfg->max_wait_duration = 30.0;
    cfg->max_queue_size = 100;
    cfg->clock = NULL;
    cfg->listener = NULL;
    cfg->listener_arg = NULL;
    cfg->adaptive = false;
    cfg->adaptive_floor = 1;
    cfg->adaptive_ceiling = 0;
    cfg->adaptive_latency = 0.0;
    cfg->adaptive_backoff = 0.9;
    cfg->shared = NULL;
    cfg->sync = NULL;
}

/* Check every field; on success store the converted durations. */
static int
validate(const pf_bulkhead_config_t *cfg, int64_t *max_wait_ns,
         int64_t *latency_ns, unsigned *ceiling)
{
    unsigned n = cfg->max_concurrent_calls;

    if (cfg->name == NULL || n == 0 || n > PF_BULKHEAD_MAX_LIMIT ||
        (cfg->shared != NULL && cfg->sync != NULL)) {
        return PF_EINVAL;
    }
    if (cfg->shared != NULL) {
        char path[8];

        /* a short buffer: only the name and folder are tested */
        if (n > MAX_SHARED_SLOTS ||
            pf__shm_path(cfg->shared->dir, cfg->shared->name, path,
                         sizeof(path)) == PF_EINVAL ||
            (cfg->shared->mode & ~0666u) != 0) {
            return PF_EINVAL;
        }
    }
    if (pf__secs_to_ns(cfg->max_wait_duration, max_wait_ns) != 0 ||
        pf__secs_to_ns(cfg->adaptive_latency, latency_ns) != 0) {
        return PF_EINVAL;
    }
    /* One rule for durations: 0 is "off", here no limit on the wait (as
     * INFINITY). "Never wait" is max_queue_size 0. */
    if (cfg->max_wait_duration == 0.0) {
        *max_wait_ns = INT64_MAX;
    }
    /* Written so that NaN fails too. */
    if (!(cfg->adaptive_backoff > 0.0 && cfg->adaptive_backoff < 1.0)) {
        return PF_EINVAL;
    }
    *ceiling = cfg->adaptive_ceiling == 0 ? n : cfg->adaptive_ceiling;
    if (cfg->adaptive_floor == 0 || *ceiling > PF_BULKHEAD_MAX_LIMIT ||
        cfg->adaptive_floor > n || n > *ceiling) {
        return PF_EINVAL;
    }
    return 0;
}

/* ---- shared leases ------------------------------------------------------ */

/* Open (or create: a new body is all zero, every lease free) the segment
 * of a shared bulkhead. */
static int
open_shared(pf_bulkhead_t *bh, const pf_shared_config_t *sc, unsigned limit)
{
    uint32_t params[2] = {limit, 1 /* layout of the body */};
    pf__shm_spec_t spec;
    int rc;

    bh->self = pf__lease_self();
    if (bh->self == PF__LEASE_FREE) {
        return PF_ESYSTEM; /* no /proc: a lease could not name us */
    }
    memset(&spec, 0, sizeof(spec));
    spec.dir = sc->dir;
    spec.name = sc->name;
    spec.mode = sc->mode;
    spec.kind = PF__SHM_KIND_BULKHEAD;
    spec.body_size = (uint32_t)(limit * sizeof(uint64_t));
    spec.params = params;
    spec.params_len = sizeof(params);
    rc = pf__shm_open(&spec, &bh->shm);
    if (rc != 0) {
        return rc;
    }
    bh->slots = bh->shm.body;
    bh->nslots = limit;
    atomic_init(&bh->next_liveness_ns, 0);
    return 0;
}

/* Free the leases of processes that are gone. */
static void
reclaim_dead(pf_bulkhead_t *bh)
{
    for (unsigned i = 0; i < bh->nslots; i++) {
        uint64_t h = atomic_load_explicit(&bh->slots[i], memory_order_relaxed);

        if (h != PF__LEASE_FREE && h != bh->self && !pf__lease_alive(h)) {
            atomic_compare_exchange_strong_explicit(
                &bh->slots[i], &h, PF__LEASE_FREE, memory_order_relaxed,
                memory_order_relaxed);
        }
    }
}

int
pf_bulkhead_shared_in_use(pf_bulkhead_t *bh, unsigned *out)
{
    unsigned n = 0;

    if (bh == NULL || out == NULL || bh->slots == NULL) {
        return PF_EINVAL;
    }
    for (unsigned i = 0; i < bh->nslots; i++) {
        uint64_t h = atomic_load_explicit(&bh->slots[i], memory_order_relaxed);

        if (h != PF__LEASE_FREE && (h == bh->self || pf__lease_alive(h))) {
            n++;
        }
    }
    *out = n;
    return 0;
}

/* The lease word this thread took last: takes start their search there,
 * so that threads do not all fight over the first words, and gives start
 * there, where one of ours most likely is. Initial-exec: the general TLS
 * model costs a call per access. */
#if defined(__GNUC__)
__attribute__((tls_model("initial-exec")))
#endif
static _Thread_local unsigned t_hint;

static bool
take_free_lease(pf_bulkhead_t *bh)
{
    unsigned hint = t_hint;
    unsigned n = bh->nslots;
    unsigned start = hint % n;

    for (unsigned k = 0; k < n; k++) {
        unsigned i = start + k < n ? start + k : start + k - n;
        uint64_t h = PF__LEASE_FREE;

        if (atomic_load_explicit(&bh->slots[i], memory_order_relaxed) ==
                PF__LEASE_FREE &&
            atomic_compare_exchange_strong_explicit(
                &bh->slots[i], &h, bh->self, memory_order_acquire,
                memory_order_relaxed)) {
            t_hint = i;
            return true;
        }
    }
    return false;
}

/* Take a lease; when none is free and the check is due, free the leases
 * of dead processes and try once more. */
static bool
take_lease(pf_bulkhead_t *bh)
{
    int64_t now;

    if (take_free_lease(bh)) {
        return true;
    }
    now = pf_clock_now_ns(bh->clock);
    if (now < atomic_load_explicit(&bh->next_liveness_ns,
                                   memory_order_relaxed)) {
        return false;
    }
    atomic_store_explicit(&bh->next_liveness_ns,
                          pf__add_sat(now, PF_NS_PER_MS),
                          memory_order_relaxed);
    reclaim_dead(bh);
    return take_free_lease(bh);
}

/* Give back one of this process's leases (any: they are alike). */
static void
give_lease(pf_bulkhead_t *bh)
{
    unsigned n = bh->nslots;
    unsigned start = t_hint % n;

    for (unsigned k = 0; k < n; k++) {
        unsigned i = start + k < n ? start + k : start + k - n;
        uint64_t h = bh->self;

        if (atomic_load_explicit(&bh->slots[i], memory_order_relaxed) ==
                bh->self &&
            atomic_compare_exchange_strong_explicit(
                &bh->slots[i], &h, PF__LEASE_FREE, memory_order_release,
                memory_order_relaxed)) {
            return;
        }
    }
}

int
pf_bulkhead_new(const pf_bulkhead_config_t *cfg, pf_bulkhead_t **out)
{
    pf_bulkhead_t *bh;
    int64_t max_wait_ns;
    int64_t latency_ns;
    unsigned ceiling;
    int rc;

    if (cfg == NULL || out == NULL) {
        return PF_EINVAL;
    }
    rc = validate(cfg, &max_wait_ns, &latency_ns, &ceiling);
    if (rc != 0) {
        return rc;
    }
    bh = pf__calloc(1, sizeof(*bh));
    if (bh == NULL) {
        return PF_ENOMEM;
    }
    bh->name = pf__strdup(cfg->name);
    if (bh->name == NULL) {
        pf__free(bh);
        return PF_ENOMEM;
    }
    if (pthread_mutex_init(&bh->lock, NULL) != 0) {
        pf__free(bh->name);
        pf__free(bh);
        return PF_ESYSTEM;
    }
    atomic_init(&bh->state, st_with_limit(0, cfg->max_concurrent_calls));
    bh->clock = pf__clock_norm(cfg->clock);
    bh->max_wait_ns = max_wait_ns;
    bh->max_queue = cfg->max_queue_size;
    bh->can_wait = max_wait_ns > 0 && cfg->max_queue_size > 0;
    bh->adaptive = cfg->adaptive;
    bh->listener = cfg->listener;
    bh->listener_arg = cfg->listener_arg;
    pf__aimd_init(&bh->aimd, cfg->adaptive_floor, ceiling,
                  cfg->adaptive_backoff, latency_ns);
    if (cfg->shared != NULL) {
        rc = open_shared(bh, cfg->shared, cfg->max_concurrent_calls);
        if (rc != 0) {
            pthread_mutex_destroy(&bh->lock);
            pf__free(bh->name);
            pf__free(bh);
            return rc;
        }
        bh->can_wait = false;
    }
    if (cfg->sync != NULL) {
        bh->sync = *cfg->sync;
        bh->can_wait = false;
    }
    *out = bh;
    return 0;
}

void
pf_bulkhead_free(pf_bulkhead_t *bh)
{
    if (bh == NULL) {
        return;
    }
    if (bh->sync.detach != NULL) {
        bh->sync.detach(bh->sync.arg);
    }
    pthread_mutex_destroy(&bh->lock);
    pf__shm_close(&bh->shm);
    pf__free(bh->name);
    pf__free(bh);
}

const char *
pf_bulkhead_name(const pf_bulkhead_t *bh)
{
    return bh == NULL ? NULL : bh->name;
}

/* ---- events ------------------------------------------------------------- */

static void
event_fill(pf_bulkhead_t *bh, pf_bulkhead_event_t *ev,
           pf_bulkhead_event_kind_t kind)
{
    uint64_t s = atomic_load_explicit(&bh->state, memory_order_relaxed);

    ev->kind = kind;
    ev->name = bh->name;
    ev->max_concurrent = st_limit(s);
    ev->old_max_concurrent = st_limit(s);
    ev->in_use = st_in_use(s);
    ev->waiting = atomic_load_explicit(&bh->waiting, memory_order_relaxed);
    ev->wait_ns = 0;
}

/* Tell the listener; never called with the lock held. */
static void
event_fire(pf_bulkhead_t *bh, const pf_bulkhead_event_t *ev)
{
    if (bh->listener != NULL) {
        bh->listener(ev, bh->listener_arg);
    }
}

static void
reject_full(pf_bulkhead_t *bh)
{
    atomic_fetch_add_explicit(&bh->rejected_full, 1, memory_order_relaxed);
    if (bh->listener != NULL) {
        pf_bulkhead_event_t ev;

        event_fill(bh, &ev, PF_BULKHEAD_REJECTED_FULL);
        event_fire(bh, &ev);
    }
}

/* Report that waiter t, queued at t->priv_queued_ns, was handed a slot.
 * Only on the waiting path, and only with a listener: the clock is read
 * for nothing otherwise. No lock held. */
static void
granted_fire(pf_bulkhead_t *bh, const pf_bulkhead_ticket_t *t)
{
    if (bh->listener != NULL) {
        pf_bulkhead_event_t ev;
        int64_t waited = pf_clock_now_ns(bh->clock) - t->priv_queued_ns;

        event_fill(bh, &ev, PF_BULKHEAD_GRANTED);
        ev.wait_ns = waited > 0 ? waited : 0;
        event_fire(bh, &ev);
    }
}

/* ---- grants ------------------------------------------------------------- */

typedef struct grant_list {
    pf_bulkhead_ticket_t *head;
    pf_bulkhead_ticket_t *tail;
} grant_list_t;

/* Grant callbacks waiting to run on this thread, and whether this thread
 * is already running them (further down its stack). Per thread and empty
 * between calls: it carries no state from one call to the next. */
static _Thread_local grant_list_t tl_grants;
static _Thread_local bool tl_granting;

/* Run the grant callbacks of g (collected under the lock, now released).
 * A callback that leaves appends its grants to this thread's list, which
 * the outermost call drains: no recursion however long the chain. A
 * ticket's next pointer is read before its callback runs, since from then
 * on the ticket is its owner's again. */
static void
grants_run(grant_list_t *g)
{
    if (g->head == NULL) {
        return;
    }
    if (tl_grants.tail != NULL) {
        tl_grants.tail->priv_next = g->head;
    } else {
        tl_grants.head = g->head;
    }
    tl_grants.tail = g->tail;
    if (tl_granting) {
        return;
    }
    tl_granting = true;
    while (tl_grants.head != NULL) {
        pf_bulkhead_ticket_t *t = tl_grants.head;
        pf_bulkhead_grant_fn fn = t->priv_fn;
        void *arg = t->priv_arg;

        tl_grants.head = t->priv_next;
        if (tl_grants.head == NULL) {
            tl_grants.tail = NULL;
        }
        /* The ticket is untouched by its owner until fn runs, and its
         * slot keeps the bulkhead alive until it is left. */
        granted_fire((pf_bulkhead_t *)t->priv_owner, t);
        fn(t, arg);
    }
    tl_granting = false;
}

/* Raise the recorded peak to n if it is higher. Relaxed: the peak is a
 * statistic that orders nothing. */
static inline void
peak_note(pf_bulkhead_t *bh, unsigned n)
{
    unsigned p = atomic_load_explicit(&bh->peak, memory_order_relaxed);

    while (n > p &&
           !atomic_compare_exchange_weak_explicit(
               &bh->peak, &p, n, memory_order_relaxed, memory_order_relaxed)) {
    }
}

/* ---- the queue (all under lock) ----------------------------------------- */

static void
queue_push(pf_bulkhead_t *bh, pf_bulkhead_ticket_t *t, int prio)
{
    t->priv_next = NULL;
    t->priv_prev = bh->tail[prio];
    if (bh->tail[prio] != NULL) {
        bh->tail[prio]->priv_next = t;
    } else {
        bh->head[prio] = t;
    }
    bh->tail[prio] = t;
    t->priv_prio = prio;
    t->priv_owner = bh;
    t->priv_state = T_QUEUED;
    bh->queue_len++;
    atomic_store_explicit(&bh->waiting, bh->queue_len, memory_order_relaxed);
}

/* Unlink t; clear WAITERS when the queue empties. Relaxed is enough for the
 * bit: it only sends threads to the lock, and they read the queue under
 * it. */
static void
queue_remove(pf_bulkhead_t *bh, pf_bulkhead_ticket_t *t)
{
    int prio = t->priv_prio;

    if (t->priv_prev != NULL) {
        t->priv_prev->priv_next = t->priv_next;
    } else {
        bh->head[prio] = t->priv_next;
    }
    if (t->priv_next != NULL) {
        t->priv_next->priv_prev = t->priv_prev;
    } else {
        bh->tail[prio] = t->priv_prev;
    }
    t->priv_next = NULL;
    t->priv_prev = NULL;
    t->priv_state = T_IDLE;
    bh->queue_len--;
    atomic_store_explicit(&bh->waiting, bh->queue_len, memory_order_relaxed);
    if (bh->queue_len == 0) {
        atomic_fetch_and_explicit(&bh->state, ~WAITERS_BIT,
                                  memory_order_relaxed);
    }
}

/* The next ticket to serve: the oldest of the highest priority. */
static pf_bulkhead_ticket_t *
queue_first(pf_bulkhead_t *bh)
{
    int p;

    for (p = PF_PRIORITY_COUNT - 1; p >= 0; p--) {
        if (bh->head[p] != NULL) {
            return bh->head[p];
        }
    }
    return NULL;
}

/* Hand a slot (already counted in in_use) to the first waiter: wake its
 * thread, or put its callback on g to run after the lock is released. The
 * signal is sent under the lock: the waiter's condition variable lives on
 * its stack and is gone once the waiter has seen T_GRANTED and left. */
static void
grant_first(pf_bulkhead_t *bh, grant_list_t *g)
{
    pf_bulkhead_ticket_t *t = queue_first(bh);

    queue_remove(bh, t);
    t->priv_state = T_GRANTED;
    atomic_fetch_add_explicit(&bh->accepted, 1, memory_order_relaxed);
    if (t->priv_cv != NULL) {
        pthread_cond_signal(t->priv_cv);
        return;
    }
    t->priv_next = NULL;
    if (g->tail != NULL) {
        g->tail->priv_next = t;
    } else {
        g->head = t;
    }
    g->tail = t;
}

/* Restore the invariant after the limit grew: grant waiters while a slot
 * is free. With WAITERS set no fast path changes the word, so the CAS only
 * fails spuriously; the loop rereads and goes on. */
static void
grant_free_slots(pf_bulkhead_t *bh, grant_list_t *g)
{
    uint64_t s = atomic_load_explicit(&bh->state, memory_order_relaxed);

    while (st_waiters(s) && st_in_use(s) < st_limit(s)) {
        if (atomic_compare_exchange_weak_explicit(&bh->state, &s, s + 1,
                                                  memory_order_acq_rel,
                                                  memory_order_relaxed)) {
            peak_note(bh, st_in_use(s) + 1);
            grant_first(bh, g);
            s = atomic_load_explicit(&bh->state, memory_order_relaxed);
        }
    }
}

/* ---- entering ----------------------------------------------------------- */

/* The lock-free admission: take a slot if one is free and nobody waits.
 * Acquire on success pairs with leave's release, as a semaphore does: what
 * the previous holder did inside is visible to the next one. */
static inline bool
fast_enter(pf_bulkhead_t *bh)
{
    uint64_t s = atomic_load_explicit(&bh->state, memory_order_relaxed);

    for (;;) {
        if (st_waiters(s) || st_in_use(s) >= st_limit(s)) {
            return false;
        }
        if (atomic_compare_exchange_weak_explicit(&bh->state, &s, s + 1,
                                                  memory_order_acquire,
                                                  memory_order_relaxed)) {
            if ((bh->slots != NULL && !take_lease(bh)) ||
                (bh->sync.take != NULL &&
                 bh->sync.take(bh->sync.arg, 1) == PF_SYNC_REFUSE)) {
                /* No waiter can exist (a shared or synced bulkhead never
                 * queues): the local slot is simply given back. */
                atomic_fetch_sub_explicit(&bh->state, 1,
                                          memory_order_release);
                return false;
            }
            atomic_fetch_add_explicit(&bh->accepted, 1, memory_order_relaxed);
            peak_note(bh, st_in_use(s) + 1);
            return true;
        }
    }
}

int
pf_bulkhead_try_enter(pf_bulkhead_t *bh)
{
    if (bh == NULL) {
        return PF_EINVAL;
    }
    if (fast_enter(bh)) {
        return 0;
    }
    reject_full(bh);
    return PF_EFULL;
}

enum { Q_ENTERED, Q_QUEUED, Q_FULL };

/* Under lock: take a free slot, or queue t, or report no room. The WAITERS
 * bit is set by a CAS that also checks for a free slot, so a leave racing
 * on the fast path either is seen here (and its slot taken) or fails its
 * own CAS and comes to the lock to hand its slot over. */
static int
enqueue_locked(pf_bulkhead_t *bh, pf_bulkhead_ticket_t *t, int prio)
{
    uint64_t s = atomic_load_explicit(&bh->state, memory_order_relaxed);

    for (;;) {
        if (!st_waiters(s) && st_in_use(s) < st_limit(s)) {
            if (atomic_compare_exchange_weak_explicit(&bh->state, &s, s + 1,
                                                      memory_order_acquire,
                                                      memory_order_relaxed)) {
                atomic_fetch_add_explicit(&bh->accepted, 1,
                                          memory_order_relaxed);
                peak_note(bh, st_in_use(s) + 1);
                return Q_ENTERED;
            }
            continue;
        }
        if (bh->queue_len >= bh->max_queue) {
            return Q_FULL;
        }
        if (st_waiters(s) || atomic_compare_exchange_weak_explicit(
                                 &bh->state, &s, s | WAITERS_BIT,
                                 memory_order_relaxed, memory_order_relaxed)) {
            break;
        }
    }
    queue_push(bh, t, prio);
    return Q_QUEUED;
}

static bool
prio_ok(pf_priority_t prio)
{
    return (int)prio >= 0 && (int)prio < PF_PRIORITY_COUNT;
}

/* Ends a wait that was not granted: out of the queue, counted, and the
 * event to report (if any) filled in. Under lock. */
static bool
wait_abandon(pf_bulkhead_t *bh, pf_bulkhead_ticket_t *t, int rc,
             pf_bulkhead_event_t *ev)
{
    queue_remove(bh, t);
    if (rc == PF_EFULL) {
        atomic_fetch_add_explicit(&bh->rejected_timeout, 1,
                                  memory_order_relaxed);
        event_fill(bh, ev, PF_BULKHEAD_REJECTED_TIMEOUT);
        return true;
    }
    atomic_fetch_add_explicit(&bh->cancelled, 1, memory_order_relaxed);
    return false;
}

/* The blocking wait, entered with no free slot seen. bh_dl is when the
 * bulkhead's own wait limit runs out, caller_dl the caller's; both on
 * bh->clock. */
static int
enter_wait(pf_bulkhead_t *bh, int prio, int64_t now, int64_t bh_dl,
           int64_t caller_dl, pf_token_t *tok)
{
    pf_bulkhead_ticket_t w = {0};
    pthread_cond_t cv;
    pf_bulkhead_event_t ev;
    bool fire = false;
    bool waited = false;
    int64_t dl = bh_dl < caller_dl ? bh_dl : caller_dl;
    int rc;

    rc = pf__cond_init(&cv);
    if (rc != 0) {
        return rc;
    }
    w.priv_cv = &cv;
    w.priv_queued_ns = now;
    pthread_mutex_lock(&bh->lock);
    switch (enqueue_locked(bh, &w, prio)) {
    case Q_ENTERED:
        rc = 0;
        break;
    case Q_FULL:
        rc = PF_EFULL;
        break;
    default:
        rc = 0;
        waited = true;
        if (bh->listener != NULL) {
            /* QUEUED is told with the lock released; a grant meanwhile
             * is seen below through priv_state, set under the lock. */
            event_fill(bh, &ev, PF_BULKHEAD_QUEUED);
            pthread_mutex_unlock(&bh->lock);
            event_fire(bh, &ev);
            pthread_mutex_lock(&bh->lock);
        }
        while (w.priv_state == T_QUEUED) {
            int wr = pf__wait_until(&cv, &bh->lock, bh->clock, dl, tok);

            if (w.priv_state != T_QUEUED) {
                break; /* granted, even if the time ran out meanwhile */
            }
            if (wr == PF_ECANCELED) {
                rc = PF_ECANCELED;
            } else if (wr == PF_ETIMEDOUT) {
                rc = bh_dl <= caller_dl ? PF_EFULL : PF_ETIMEDOUT;
            } else {
                continue;
            }
            fire = wait_abandon(bh, &w, rc, &ev);
            break;
        }
        break;
    }
    pthread_mutex_unlock(&bh->lock);
    pthread_cond_destroy(&cv);
    if (fire) {
        event_fire(bh, &ev);
    } else if (rc == PF_EFULL) {
        reject_full(bh);
    } else if (rc == 0 && waited) {
        granted_fire(bh, &w);
    }
    return rc;
}

int
pf_bulkhead_enter_until(pf_bulkhead_t *bh, pf_priority_t prio,
                        const pf_deadline_t *deadline, pf_token_t *tok)
{
    int64_t now;
    int64_t caller_dl;
    int64_t tok_dl;

    if (bh == NULL || !prio_ok(prio)) {
        return PF_EINVAL;
    }
    if (fast_enter(bh)) {
        return 0;
    }
    if (!bh->can_wait) {
        reject_full(bh);
        return PF_EFULL;
    }
    if (pf_token_is_cancelled(tok)) {
        atomic_fetch_add_explicit(&bh->cancelled, 1, memory_order_relaxed);
        return PF_ECANCELED;
    }
    now = pf_clock_now_ns(bh->clock);
    caller_dl = pf__deadline_on(deadline, bh->clock, now);
    tok_dl = pf__token_deadline_on(tok, bh->clock);
    if (tok_dl < caller_dl) {
        caller_dl = tok_dl;
    }
    if (now >= caller_dl) {
        atomic_fetch_add_explicit(&bh->cancelled, 1, memory_order_relaxed);
        return PF_ETIMEDOUT;
    }
    return enter_wait(bh, prio, now, pf__add_sat(now, bh->max_wait_ns),
                      caller_dl, tok);
}

int
pf_bulkhead_enter(pf_bulkhead_t *bh)
{
    return pf_bulkhead_enter_until(bh, PF_PRIORITY_NORMAL, NULL, NULL);
}

/* ---- leaving ------------------------------------------------------------ */

/* Kept out of line so that the lock-free leave stays a leaf function that
 * saves no registers. */
#if defined(__GNUC__)
#define PF_NOINLINE __attribute__((noinline))
#else
#define PF_NOINLINE
#endif

static PF_NOINLINE void
leave_slow(pf_bulkhead_t *bh)
{
    grant_list_t g = {NULL, NULL};
    pf_bulkhead_event_t ev;
    bool misuse = false;
    uint64_t s;

    pthread_mutex_lock(&bh->lock);
    s = atomic_load_explicit(&bh->state, memory_order_relaxed);
    for (;;) {
        if (st_in_use(s) == 0) {
            misuse = true;
            atomic_fetch_add_explicit(&bh->misuse, 1, memory_order_relaxed);
            event_fill(bh, &ev, PF_BULKHEAD_LEAVE_WITHOUT_ENTER);
            break;
        }
        /* Our slot is one of in_use: if, without it, in_use would be below
         * the limit, it goes to the first waiter as it is. Above a shrunk
         * limit it is dropped instead. */
        if (st_waiters(s) && st_in_use(s) <= st_limit(s)) {
            grant_first(bh, &g);
            break;
        }
        if (atomic_compare_exchange_weak_explicit(&bh->state, &s, s - 1,
                                                  memory_order_release,
                                                  memory_order_relaxed)) {
            break;
        }
    }
    pthread_mutex_unlock(&bh->lock);
    grants_run(&g);
    if (misuse) {
        event_fire(bh, &ev);
    }
}

/* The lock-free release while nobody waits. Release pairs with the next
 * holder's acquire. */
static inline bool
fast_leave(pf_bulkhead_t *bh)
{
    uint64_t s = atomic_load_explicit(&bh->state, memory_order_relaxed);

    while (!st_waiters(s) && st_in_use(s) > 0) {
        if (atomic_compare_exchange_weak_explicit(&bh->state, &s, s - 1,
                                                  memory_order_release,
                                                  memory_order_relaxed)) {
            return true;
        }
    }
    return false;
}

void
pf_bulkhead_leave(pf_bulkhead_t *bh)
{
    if (bh == NULL) {
        return;
    }
    if ((bh->slots != NULL || bh->sync.give != NULL) &&
        st_in_use(atomic_load_explicit(&bh->state, memory_order_relaxed)) >
            0) {
        if (bh->slots != NULL) {
            give_lease(bh);
        }
        if (bh->sync.give != NULL) {
            bh->sync.give(bh->sync.arg, 1);
        }
    }
    if (!fast_leave(bh)) {
        leave_slow(bh);
    }
}

/* ---- call --------------------------------------------------------------- */

static void record_at(pf_bulkhead_t *bh, int result, int64_t latency_ns,
                      int64_t now);

int
pf_bulkhead_call(pf_bulkhead_t *bh, pf_call_fn fn, void *arg)
{
    int64_t t0;
    int64_t t1;
    int rc;

    if (bh == NULL || fn == NULL) {
        return PF_EINVAL;
    }
    if (!fast_enter(bh)) {
        rc = pf_bulkhead_enter(bh);
        if (rc != 0) {
            return rc;
        }
    }
    if (!bh->adaptive) {
        rc = fn(arg);
        pf_bulkhead_leave(bh);
        return rc;
    }
    t0 = pf_clock_now_ns(bh->clock);
    rc = fn(arg);
    t1 = pf_clock_now_ns(bh->clock);
    record_at(bh, rc, t1 - t0, t1);
    pf_bulkhead_leave(bh);
    return rc;
}

/* ---- tickets ------------------------------------------------------------ */

int
pf_bulkhead_enqueue(pf_bulkhead_t *bh, pf_bulkhead_ticket_t *t,
                    pf_priority_t prio, pf_bulkhead_grant_fn fn, void *arg,
                    bool *entered)
{
    int64_t now;
    int r;

    if (bh == NULL || t == NULL || fn == NULL || entered == NULL ||
        !prio_ok(prio)) {
        return PF_EINVAL;
    }
    if (fast_enter(bh)) {
        *entered = true;
        return 0;
    }
    if (!bh->can_wait) {
        reject_full(bh);
        return PF_EFULL;
    }
    now = pf_clock_now_ns(bh->clock);
    pthread_mutex_lock(&bh->lock);
    if (t->priv_state == T_QUEUED && t->priv_owner == bh) {
        pthread_mutex_unlock(&bh->lock);
        return PF_EINVAL; /* still in our queue: refilling it would
                             corrupt the list */
    }
    t->priv_fn = fn;
    t->priv_arg = arg;
    t->priv_cv = NULL;
    t->priv_clock = bh->clock;
    t->priv_expires_ns = pf__add_sat(now, bh->max_wait_ns);
    t->priv_queued_ns = now;
    r = enqueue_locked(bh, t, (int)prio);
    if (r == Q_QUEUED && bh->listener != NULL) {
        pf_bulkhead_event_t ev;

        event_fill(bh, &ev, PF_BULKHEAD_QUEUED);
        pthread_mutex_unlock(&bh->lock);
        event_fire(bh, &ev);
        *entered = false;
        return 0;
    }
    pthread_mutex_unlock(&bh->lock);
    if (r == Q_FULL) {
        reject_full(bh);
        return PF_EFULL;
    }
    *entered = r == Q_ENTERED;
    return 0;
}

bool
pf_bulkhead_cancel(pf_bulkhead_t *bh, pf_bulkhead_ticket_t *t, int reason)
{
    pf_bulkhead_event_t ev;
    bool fire;

    if (bh == NULL || t == NULL) {
        return false;
    }
    pthread_mutex_lock(&bh->lock);
    if (t->priv_state != T_QUEUED || t->priv_owner != bh ||
        t->priv_cv != NULL) {
        pthread_mutex_unlock(&bh->lock);
        return false;
    }
    fire =
        wait_abandon(bh, t, reason == PF_EFULL ? PF_EFULL : PF_ECANCELED, &ev);
    pthread_mutex_unlock(&bh->lock);
    if (fire) {
        event_fire(bh, &ev);
    }
    return true;
}

pf_deadline_t
pf_bulkhead_ticket_deadline(const pf_bulkhead_ticket_t *t)
{
    if (t == NULL || t->priv_expires_ns == INT64_MAX) {
        return pf_deadline_none();
    }
    return pf_deadline_at_ns(t->priv_clock, t->priv_expires_ns);
}

/* ---- limits ------------------------------------------------------------- */

/* Under lock: set the limit and grant what it frees. Release, so that a
 * caller admitted under the new limit (its acquire CAS reads this value)
 * also sees what the resizer did before resizing. */
static void
limit_set_locked(pf_bulkhead_t *bh, unsigned n, grant_list_t *g)
{
    uint64_t s = atomic_load_explicit(&bh->state, memory_order_relaxed);

    while (!atomic_compare_exchange_weak_explicit(
        &bh->state, &s, st_with_limit(s, n), memory_order_release,
        memory_order_relaxed)) {
    }
    grant_free_slots(bh, g);
}

/* Move the limit from old to n (nothing when they are equal), collecting
 * the grants it makes in g and the LIMIT_CHANGED event to fire in ev once
 * the lock is released. Called with the lock held. */
static void
limit_move_locked(pf_bulkhead_t *bh, unsigned old, unsigned n,
                  grant_list_t *g, pf_bulkhead_event_t *ev)
{
    if (old == n) {
        return;
    }
    limit_set_locked(bh, n, g);
    event_fill(bh, ev, PF_BULKHEAD_LIMIT_CHANGED);
    ev->max_concurrent = n;
    ev->old_max_concurrent = old;
}

/* Set the limit to n and report the change; the lock is not held. */
static void
limit_change(pf_bulkhead_t *bh, unsigned n)
{
    grant_list_t g = {NULL, NULL};
    pf_bulkhead_event_t ev;
    unsigned old;

    pthread_mutex_lock(&bh->lock);
    old = st_limit(atomic_load_explicit(&bh->state, memory_order_relaxed));
    limit_move_locked(bh, old, n, &g, &ev);
    pthread_mutex_unlock(&bh->lock);
    grants_run(&g);
    if (old != n) {
        event_fire(bh, &ev);
    }
}

int
pf_bulkhead_set_max_concurrent(pf_bulkhead_t *bh, unsigned n)
{
    if (bh == NULL || n == 0 || n > PF_BULKHEAD_MAX_LIMIT) {
        return PF_EINVAL;
    }
    if (bh->adaptive && (n < bh->aimd.floor || n > bh->aimd.ceiling)) {
        return PF_EINVAL;
    }
    limit_change(bh, n);
    return 0;
}

/* Feed one call's outcome, which ended at now, to the AIMD controller and
 * apply the limit it gives. */
static void
record_at(pf_bulkhead_t *bh, int result, int64_t latency_ns, int64_t now)
{
    grant_list_t g = {NULL, NULL};
    pf_bulkhead_event_t ev;
    uint64_t s;
    unsigned old;
    unsigned n;

    pthread_mutex_lock(&bh->lock);
    s = atomic_load_explicit(&bh->state, memory_order_relaxed);
    old = st_limit(s);
    n = pf__aimd_update(&bh->aimd, old, st_in_use(s), result, latency_ns, now);
    limit_move_locked(bh, old, n, &g, &ev);
    pthread_mutex_unlock(&bh->lock);
    grants_run(&g);
    if (n != old) {
        event_fire(bh, &ev);
    }
}

void
pf_bulkhead_record(pf_bulkhead_t *bh, int result, int64_t latency_ns)
{
    if (bh == NULL || !bh->adaptive) {
        return;
    }
    record_at(bh, result, latency_ns, pf_clock_now_ns(bh->clock));
}

/* ---- metrics ------------------------------------------------------------ */

void
pf_bulkhead_metrics(pf_bulkhead_t *bh, pf_bulkhead_metrics_t *out)
{
    uint64_t s;

    if (bh == NULL || out == NULL) {
        return;
    }
    s = atomic_load_explicit(&bh->state, memory_order_relaxed);
    out->max_concurrent = st_limit(s);
    out->in_use = st_in_use(s);
    out->available = out->in_use < out->max_concurrent
                         ? out->max_concurrent - out->in_use
                         : 0;
    out->waiting = atomic_load_explicit(&bh->waiting, memory_order_relaxed);
    out->max_queue_size = bh->max_queue;
    out->accepted = atomic_load_explicit(&bh->accepted, memory_order_relaxed);
    out->rejected_full =
        atomic_load_explicit(&bh->rejected_full, memory_order_relaxed);
    out->rejected_timeout =
        atomic_load_explicit(&bh->rejected_timeout, memory_order_relaxed);
    out->peak_in_use = atomic_load_explicit(&bh->peak, memory_order_relaxed);
    out->cancelled = atomic_load_explicit(&bh->cancelled, memory_order_relaxed);
    out->leave_without_enter =
        atomic_load_explicit(&bh->misuse, memory_order_relaxed);
    out->adaptive = bh->adaptive;
    out->adaptive_floor = bh->adaptive ? bh->aimd.floor : 0;
    out->adaptive_ceiling = bh->adaptive ? bh->aimd.ceiling : 0;
}
