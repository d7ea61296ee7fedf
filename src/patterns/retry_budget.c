/* Retry budgets.
 *
 * Calls and retries are counted in two rings of SLOTS slots, each slot
 * covering window / SLOTS of time: the slot for time t is
 * (t / slot_ns) % SLOTS, and the window is the current slot and the
 * SLOTS - 1 before it. A slot is one 64-bit atomic word: the slot's epoch
 * (t / slot_ns, low 32 bits) above, its count below. Bumping a count whose
 * epoch is stale restarts it at 1 for the new epoch in the same
 * compare-and-swap, so rotating a slot needs no lock and loses no count.
 *
 * A deposit (one per call, on the caller's hot path) is a coarse clock read
 * and two atomic updates. A withdrawal (one per retry, after a failure and
 * before a sleep) sums both rings and bumps the retry ring under the
 * budget's one mutex: withdrawals are serialised, so concurrent retries
 * never exceed the allowance, while deposits stay lock-free (a deposit
 * racing a withdrawal is simply counted or not yet counted).
 *
 * Every count guards nothing but itself, so relaxed atomics suffice; the
 * mutex orders the withdrawals.
 *
 * Shared (config field shared): both rings live in a shared-memory segment
 * (shm.h, kind RETRY_BUDGET) that every process opening the name maps, and
 * withdrawals are serialised across processes by a robust process-shared
 * mutex in the segment, taken after the budget's own (when its holder
 * dies, the next locker gets it with EOWNERDEAD and marks it consistent:
 * the rings are single words, so nothing is left half-written). Slot
 * epochs are clock time / slot_ns, the same in every process on the
 * system clock. Deposits stay lock-free atomics in the mapping. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "puffinflow/error.h"
#include "puffinflow/retry.h"
#include "puffinflow/shared.h"
#include "puffinflow/sync.h"

#include "clock_impl.h"
#include "mem.h"
#include "shm.h"
#include "timeutil.h"

#define SLOTS 10u

typedef struct rings {
    _Atomic uint64_t calls[SLOTS];
    _Atomic uint64_t retries[SLOTS];
} rings_t;

/* A shared budget's segment body: the mutex that serialises withdrawals
 * of every process, then the rings on cache lines of their own. */
typedef struct shared_body {
    pthread_mutex_t mu;
    _Alignas(64) rings_t rings;
} shared_body_t;

/* The fixed parameters of a shared budget, in the segment's header: a
 * process with others gets PF_EEXIST. */
typedef struct shared_params {
    double ratio;
    double min_per_sec;
    int64_t slot_ns;
    uint32_t slots;
    uint32_t layout; /* of shared_body_t: 1 */
} shared_params_t;

/* name, clock, slot_ns, ratio, reserve, listener, r, shm_mu: immutable
 * after _new. Rings and totals: atomics. lock serialises withdrawals (and
 * shm_mu, shared, those of every process). */
struct pf_retry_budget {
    char *name;
    const pf_clock_t *clock;
    int64_t slot_ns;
    double ratio;
    double min_per_sec;
    double window_s;
    double reserve; /* min_per_sec * window_s retries */
    pf_retry_budget_listener_fn listener;
    void *listener_arg;
    rings_t *r; /* &own, or the shared segment's */
    pthread_mutex_t *shm_mu; /* shared: the segment's mutex, else NULL */
    rings_t own;
    pf__shm_t shm; /* shared: the segment (map NULL otherwise) */
    _Atomic uint64_t calls;
    _Atomic uint64_t retries;
    _Atomic uint64_t refused;
    pf_sync_t sync; /* the store's hook (copied; all NULL = none) */
    pthread_mutex_t lock;
};

void
pf_retry_budget_config_init(pf_retry_budget_config_t *cfg)
{
    if (cfg == NULL) {
        return;
    }
    cfg->name = "default";
    cfg->ratio = 0.2;
    cfg->min_retries_per_sec = 10.0;
    cfg->window = 10.0;
    cfg->listener = NULL;
    cfg->listener_arg = NULL;
    cfg->clock = NULL;
    cfg->shared = NULL;
    cfg->sync = NULL;
}

/* Comparisons written so that NaN fails each of them. */
static bool
config_valid(const pf_retry_budget_config_t *cfg)
{
    char path[8];

    if (cfg->shared != NULL && cfg->sync != NULL) {
        return false;
    }
    if (cfg->shared != NULL &&
        (pf__shm_path(cfg->shared->dir, cfg->shared->name, path,
                      sizeof(path)) == PF_EINVAL ||
         (cfg->shared->mode & ~0666u) != 0)) {
        return false; /* a name the store refuses (the buffer is short on
                         purpose: only the name is tested) */
    }
    return cfg->name != NULL && cfg->ratio >= 0.0 && cfg->ratio <= 1000.0 &&
           cfg->min_retries_per_sec >= 0.0 &&
           isfinite(cfg->min_retries_per_sec) && cfg->window >= 0.01 &&
           cfg->window <= 86400.0;
}

/* Fill a new segment's body: empty rings, the mutex robust and
 * process-shared. Runs in the creator before any other process can see
 * the segment. */
static void
shared_init(void *body, void *arg)
{
    shared_body_t *sb = body;
    pthread_mutexattr_t attr;

    (void)arg;
    for (unsigned i = 0; i < SLOTS; i++) {
        atomic_init(&sb->rings.calls[i], 0);
        atomic_init(&sb->rings.retries[i], 0);
    }
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&sb->mu, &attr);
    pthread_mutexattr_destroy(&attr);
}

/* Open (or create) the segment of a shared budget and point b's rings at
 * it. Errors as pf__shm_open. */
static int
open_shared(pf_retry_budget_t *b, const pf_shared_config_t *sc)
{
    shared_params_t params;
    pf__shm_spec_t spec;
    shared_body_t *sb;
    int rc;

    memset(&params, 0, sizeof(params));
    params.ratio = b->ratio;
    params.min_per_sec = b->min_per_sec;
    params.slot_ns = b->slot_ns;
    params.slots = SLOTS;
    params.layout = 1;
    memset(&spec, 0, sizeof(spec));
    spec.dir = sc->dir;
    spec.name = sc->name;
    spec.mode = sc->mode;
    spec.kind = PF__SHM_KIND_RETRY_BUDGET;
    spec.body_size = (uint32_t)sizeof(shared_body_t);
    spec.params = &params;
    spec.params_len = sizeof(params);
    spec.init = shared_init;
    rc = pf__shm_open(&spec, &b->shm);
    if (rc != 0) {
        return rc;
    }
    sb = b->shm.body;
    b->r = &sb->rings;
    b->shm_mu = &sb->mu;
    return 0;
}

int
pf_retry_budget_new(const pf_retry_budget_config_t *cfg,
                    pf_retry_budget_t **out)
{
    pf_retry_budget_t *b;
    int64_t window_ns = 0;

    if (cfg == NULL || out == NULL || !config_valid(cfg)) {
        return PF_EINVAL;
    }
    pf__secs_to_ns(cfg->window, &window_ns);
    b = pf__calloc(1, sizeof(*b));
    if (b == NULL) {
        return PF_ENOMEM;
    }
    b->name = pf__strdup(cfg->name);
    if (b->name == NULL) {
        pf__free(b);
        return PF_ENOMEM;
    }
    if (pthread_mutex_init(&b->lock, NULL) != 0) {
        pf__free(b->name);
        pf__free(b);
        return PF_ESYSTEM;
    }
    b->clock = pf__clock_norm(cfg->clock);
    b->slot_ns = window_ns / SLOTS > 0 ? window_ns / SLOTS : 1;
    b->ratio = cfg->ratio;
    b->min_per_sec = cfg->min_retries_per_sec;
    b->window_s = cfg->window;
    b->reserve = cfg->min_retries_per_sec * cfg->window;
    b->listener = cfg->listener;
    b->listener_arg = cfg->listener_arg;
    if (cfg->sync != NULL) {
        b->sync = *cfg->sync;
    }
    for (unsigned i = 0; i < SLOTS; i++) {
        atomic_init(&b->own.calls[i], 0);
        atomic_init(&b->own.retries[i], 0);
    }
    b->r = &b->own;
    b->shm_mu = NULL;
    atomic_init(&b->calls, 0);
    atomic_init(&b->retries, 0);
    atomic_init(&b->refused, 0);
    if (cfg->shared != NULL) {
        int rc = open_shared(b, cfg->shared);

        if (rc != 0) {
            pthread_mutex_destroy(&b->lock);
            pf__free(b->name);
            pf__free(b);
            return rc;
        }
    }
    *out = b;
    return 0;
}

void
pf_retry_budget_free(pf_retry_budget_t *b)
{
    if (b == NULL) {
        return;
    }
    if (b->sync.detach != NULL) {
        b->sync.detach(b->sync.arg);
    }
    pf__shm_close(&b->shm);
    pthread_mutex_destroy(&b->lock);
    pf__free(b->name);
    pf__free(b);
}

/* b->lock, and for a shared budget the segment's mutex after it. A robust
 * mutex whose holder died comes back with EOWNERDEAD: every count is one
 * word, so the state is whole; mark it consistent and go on. */
static void
lock(pf_retry_budget_t *b)
{
    pthread_mutex_lock(&b->lock);
    if (b->shm_mu != NULL && pthread_mutex_lock(b->shm_mu) == EOWNERDEAD) {
        pthread_mutex_consistent(b->shm_mu);
    }
}

static void
unlock(pf_retry_budget_t *b)
{
    if (b->shm_mu != NULL) {
        pthread_mutex_unlock(b->shm_mu);
    }
    pthread_mutex_unlock(&b->lock);
}

const char *
pf_retry_budget_name(const pf_retry_budget_t *b)
{
    return b == NULL ? NULL : b->name;
}

/* The current epoch. A coarse read suffices: slots are a tenth of a window
 * counted in seconds, and a count landing one slot late changes nothing
 * that matters. */
static uint32_t
epoch_now(const pf_retry_budget_t *b)
{
    int64_t now = pf__clock_now_coarse_ns(b->clock);

    return (uint32_t)((uint64_t)(now < 0 ? 0 : now) / (uint64_t)b->slot_ns);
}

/* Add one to the slot of epoch e. A slot holding an older epoch restarts
 * at 1; one already holding a newer epoch (a thread with a later clock
 * read got there first) takes the count as is. A full count saturates. */
static void
slot_add(_Atomic uint64_t *ring, uint32_t e)
{
    _Atomic uint64_t *slot = &ring[e % SLOTS];
    uint64_t v = atomic_load_explicit(slot, memory_order_relaxed);
    uint64_t nv;

    do {
        uint32_t se = (uint32_t)(v >> 32);

        if (se == e || (int32_t)(se - e) > 0) {
            if ((uint32_t)v == UINT32_MAX) {
                return;
            }
            nv = v + 1;
        } else {
            nv = ((uint64_t)e << 32) | 1u;
        }
    } while (!atomic_compare_exchange_weak_explicit(
        slot, &v, nv, memory_order_relaxed, memory_order_relaxed));
}

/* The counts of the window ending at epoch e. */
static uint64_t
ring_sum(_Atomic uint64_t *ring, uint32_t e)
{
    uint64_t sum = 0;

    for (unsigned i = 0; i < SLOTS; i++) {
        uint64_t v = atomic_load_explicit(&ring[i], memory_order_relaxed);
        uint32_t age = e - (uint32_t)(v >> 32);

        if (age < SLOTS || (int32_t)age < 0) { /* in the window, or newer */
            sum += (uint32_t)v;
        }
    }
    return sum;
}

void
pf_retry_budget_deposit(pf_retry_budget_t *b)
{
    if (b == NULL) {
        return;
    }
    slot_add(b->r->calls, epoch_now(b));
    atomic_fetch_add_explicit(&b->calls, 1, memory_order_relaxed);
}

/* Retries allowed now in a window holding calls calls: floor(ratio * calls
 * + reserve), with a nudge so that 0.2 * 100 gives 20, not 19. */
static uint64_t
allowance(const pf_retry_budget_t *b, uint64_t calls)
{
    double a = b->ratio * (double)calls + b->reserve + 1e-9;

    return a >= 1.8e19 ? UINT64_MAX : (uint64_t)floor(a);
}

/* Synced: add the other processes' window counts (sync.h). */
static void
add_others(const pf_retry_budget_t *b, uint64_t *calls, uint64_t *retries)
{
    uint64_t c = 0;
    uint64_t r = 0;

    if (b->sync.budget_others == NULL) {
        return;
    }
    b->sync.budget_others(b->sync.arg, &c, &r);
    *calls += c;
    *retries += r;
}

int
pf_retry_budget_try_withdraw(pf_retry_budget_t *b)
{
    pf_retry_budget_event_t ev;
    uint32_t e;
    uint64_t calls;
    uint64_t retries;

    if (b == NULL) {
        return PF_EINVAL;
    }
    lock(b);
    e = epoch_now(b);
    calls = ring_sum(b->r->calls, e);
    retries = ring_sum(b->r->retries, e);
    add_others(b, &calls, &retries);
    if (retries < allowance(b, calls)) {
        slot_add(b->r->retries, e);
        atomic_fetch_add_explicit(&b->retries, 1, memory_order_relaxed);
        unlock(b);
        return 0;
    }
    atomic_fetch_add_explicit(&b->refused, 1, memory_order_relaxed);
    unlock(b);
    if (b->listener != NULL) {
        ev.budget_name = b->name;
        ev.window_calls = calls;
        ev.window_retries = retries;
        b->listener(&ev, b->listener_arg);
    }
    return PF_EBUDGET;
}

void
pf_retry_budget_metrics(pf_retry_budget_t *b, pf_retry_budget_metrics_t *out)
{
    uint32_t e;
    uint64_t allowed;

    if (b == NULL || out == NULL) {
        return;
    }
    memset(out, 0, sizeof(*out));
    e = epoch_now(b);
    out->calls = atomic_load_explicit(&b->calls, memory_order_relaxed);
    out->retries = atomic_load_explicit(&b->retries, memory_order_relaxed);
    out->refused = atomic_load_explicit(&b->refused, memory_order_relaxed);
    out->window_calls = ring_sum(b->r->calls, e);
    out->window_retries = ring_sum(b->r->retries, e);
    add_others(b, &out->window_calls, &out->window_retries);
    allowed = allowance(b, out->window_calls);
    out->available =
        allowed > out->window_retries ? allowed - out->window_retries : 0;
    out->ratio = b->ratio;
    out->min_retries_per_sec = b->min_per_sec;
    out->window = b->window_s;
}
