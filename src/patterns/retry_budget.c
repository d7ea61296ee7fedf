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
 * mutex orders the withdrawals. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "puffinflow/error.h"
#include "puffinflow/retry.h"

#include "clock_impl.h"
#include "mem.h"
#include "timeutil.h"

#define SLOTS 10u

/* name, clock, slot_ns, ratio, reserve, listener: immutable after _new.
 * Rings and totals: atomics. lock serialises withdrawals. */
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
    _Atomic uint64_t calls_ring[SLOTS];
    _Atomic uint64_t retries_ring[SLOTS];
    _Atomic uint64_t calls;
    _Atomic uint64_t retries;
    _Atomic uint64_t refused;
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
}

/* Comparisons written so that NaN fails each of them. */
static bool
config_valid(const pf_retry_budget_config_t *cfg)
{
    return cfg->name != NULL && cfg->ratio >= 0.0 && cfg->ratio <= 1000.0 &&
           cfg->min_retries_per_sec >= 0.0 &&
           isfinite(cfg->min_retries_per_sec) && cfg->window >= 0.01 &&
           cfg->window <= 86400.0;
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
    for (unsigned i = 0; i < SLOTS; i++) {
        atomic_init(&b->calls_ring[i], 0);
        atomic_init(&b->retries_ring[i], 0);
    }
    atomic_init(&b->calls, 0);
    atomic_init(&b->retries, 0);
    atomic_init(&b->refused, 0);
    *out = b;
    return 0;
}

void
pf_retry_budget_free(pf_retry_budget_t *b)
{
    if (b == NULL) {
        return;
    }
    pthread_mutex_destroy(&b->lock);
    pf__free(b->name);
    pf__free(b);
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
    slot_add(b->calls_ring, epoch_now(b));
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
    pthread_mutex_lock(&b->lock);
    e = epoch_now(b);
    calls = ring_sum(b->calls_ring, e);
    retries = ring_sum(b->retries_ring, e);
    if (retries < allowance(b, calls)) {
        slot_add(b->retries_ring, e);
        atomic_fetch_add_explicit(&b->retries, 1, memory_order_relaxed);
        pthread_mutex_unlock(&b->lock);
        return 0;
    }
    atomic_fetch_add_explicit(&b->refused, 1, memory_order_relaxed);
    pthread_mutex_unlock(&b->lock);
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
    out->window_calls = ring_sum(b->calls_ring, e);
    out->window_retries = ring_sum(b->retries_ring, e);
    allowed = allowance(b, out->window_calls);
    out->available =
        allowed > out->window_retries ? allowed - out->window_retries : 0;
    out->ratio = b->ratio;
    out->min_retries_per_sec = b->min_per_sec;
    out->window = b->window_s;
}
