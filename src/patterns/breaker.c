/* Circuit breaker.
 *
 * The state lives in one 64-bit atomic word: the consecutive failure count
 * (24 bits), the state (2 bits), a forced-open bit, and a generation that
 * every state change (and reset) increments. The top 40 bits, everything
 * but the count, form the state's *epoch*: a permit stores the epoch it was
 * taken in, and its result only counts toward the state while the epoch is
 * the same, so a permit from before a change cannot corrupt the state after
 * it. Only the count changes without the lock, by compare-and-swap against
 * the whole word, so a failure counted for an old epoch is impossible.
 *
 * The closed path takes no lock: acquire loads the word and (when the
 * breaker measures durations) reads the clock; record classifies the
 * result, bumps one counter in this thread's *stripe* (a cache line of
 * counters per CPU, so threads do not fight over one line), and then either
 * nothing more (a success with no failures counted), a CAS of the count
 * (consecutive mode), or an add to the sliding window (window.c). Reaching
 * the threshold takes the lock, checks the epoch again, and opens. The
 * commonest record, a closed success in consecutive mode, has a path of
 * its own that saves no registers; and the permit is read field by field
 * (see pf_breaker_record_outcome). Most of what is left of a closed call
 * is its two coarse clock reads, which measuring the timeout needs.
 *
 * A rejection while OPEN takes no lock either: it compares the clock with
 * open_until_ns. Once that time has passed the first caller takes the lock
 * and makes the breaker HALF_OPEN. Half-open trials take the lock: each
 * holds a numbered place (a slot with a ticket) until its result is
 * recorded, or until max_wait_in_half_open passes and a later call
 * reclaims it as a failure. Slots outlive state changes, so trials still
 * running from an earlier half-open period count against the next one's
 * limit: the limit is on calls really in flight.
 *
 * Durations counted in seconds are measured with the coarse clock (3 ns a
 * read, a few ms of resolution); a breaker with any duration below one
 * second reads the precise clock instead. One breaker uses one of the two
 * for everything, so its readings never disagree.
 *
 * Listeners are told of changes after the lock is dropped, in order, one at
 * a time, through the event queue of evq.c: a change appends an event under
 * the lock (the queue grows if the listener falls behind; room for the
 * first FIRST_EVENTS is taken by _new), and the thread that finds no one
 * delivering drains it, dropping the lock around each call.
 *
 * Lock order: b->lock, then the window's lock (a clear under b->lock). */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "puffinflow/breaker.h"
#include "puffinflow/error.h"
#include "puffinflow/shared.h"
#include "puffinflow/sync.h"

#include "breaker_impl.h"
#include "clock_impl.h"
#include "evq.h"
#include "lease.h"
#include "mem.h"
#include "rng.h"
#include "shm.h"
#include "timeutil.h"
#include "window.h"

/* ---- the state word --------------------------------------------------- */

#define COUNT_MASK ((UINT64_C(1) << 24) - 1)
#define STATE_SHIFT 24
#define FORCED_BIT (UINT64_C(1) << 26)
#define GEN_SHIFT 27
#define GEN_MASK ((UINT64_C(1) << 37) - 1)

#define EPOCH(w) ((w) >> STATE_SHIFT)
#define STATE_OF(w) ((pf_breaker_state_t)(((w) >> STATE_SHIFT) & 3))

enum { PERMIT_TRIAL = 1, PERMIT_SHADOW = 2, PERMIT_GROUP = 4 };

#define NO_SLOT UINT32_MAX
#define FIRST_EVENTS 8
#define MAX_HALF_OPEN_CALLS 1000000u
#define MAX_STRIPES 32u
#define MAX_SHARED_TRIALS 1024u
#define NEVER INT64_MAX /* a duration that never elapses */

/* Keep the slow paths out of the fast ones (a slow path inlined into
 * acquire costs every closed call its register saves), and the counters'
 * update in. */
#if defined(__GNUC__)
#define SLOW_PATH __attribute__((noinline, cold))
#define ALWAYS_INLINE __attribute__((always_inline)) inline
#else
#define SLOW_PATH
#define ALWAYS_INLINE inline
#endif

/* ---- stripes: per-CPU counters ----------------------------------------- */

/* Counts only ever read summed, so a thread may use any stripe; threads
 * take stripes round-robin so that two running threads rarely share one.
 * 128 bytes a stripe, the counters in the first 64: two stripes' counters
 * never share the pair of lines that adjacent-line prefetchers fetch. */
typedef struct stripe {
    _Alignas(64) _Atomic uint64_t successes;
    _Atomic uint64_t failures;
    _Atomic uint64_t ignored;
    _Atomic uint64_t rejected;
    _Atomic uint64_t timeouts;
    _Atomic uint64_t slow;
    _Atomic uint64_t shadow_rejected;
    char pad[128 - 7 * sizeof(uint64_t)];
} stripe_t;

/* 1 + this thread's stripe number, 0 until first use. The counter that
 * hands numbers out is the file's only global: it decides nothing but
 * which cache line a thread's counts land in. */
#if defined(__GNUC__)
__attribute__((tls_model("initial-exec")))
#endif
static _Thread_local unsigned t_stripe;
static atomic_uint g_next_stripe;

/* Stripes per breaker: the online CPUs rounded up to a power of two, at
 * most MAX_STRIPES. Computed once; racing first calls compute the same. */
static unsigned
stripe_count(void)
{
    static atomic_uint cached;
    unsigned n = atomic_load_explicit(&cached, memory_order_relaxed);

    if (n == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);

        n = 1;
        while ((long)n < cpus && n < MAX_STRIPES) {
            n <<= 1;
        }
        atomic_store_explicit(&cached, n, memory_order_relaxed);
    }
    return n;
}

/* ---- the breaker ------------------------------------------------------ */

typedef struct trial_slot {
    uint64_t ticket; /* 0 = free */
    uint64_t epoch;  /* the half-open epoch it was taken in */
    int64_t start_ns;
    uint64_t holder; /* shared: the lease word of the process (lease.h) */
} trial_slot_t;

/* The state every call reads: in the breaker, or in a shared segment. The
 * count in word changes lock-free (CAS); the rest only under lock. */
typedef struct core {
    _Atomic uint64_t word;
    _Atomic int64_t open_until_ns;   /* OPEN: trials from then on */
    _Atomic unsigned trials;         /* trial slots taken */
    _Atomic int64_t next_reclaim_ns; /* no trial is overdue until after it */
} core_t;

/* The state only changes of state touch, under lock (and, shared, the
 * segment's mutex too): in the breaker, or in the shared segment. */
typedef struct locked {
    int64_t cur_recovery_ns; /* the open period before jitter */
    int64_t last_transition_ns;
    unsigned half_successes;
    unsigned slot_hint;
    uint64_t ticket_seq;
    uint64_t reclaimed;
    uint64_t transitions;
    uint64_t times_opened;
} locked_t;

/* A shared breaker's segment body (shm.h, kind BREAKER): the core on a
 * line of its own, the robust process-shared mutex that serialises state
 * changes between processes, the locked state, then half_open_max trial
 * slots. */
typedef struct shared_body {
    _Alignas(64) core_t core;
    _Alignas(64) pthread_mutex_t mu;
    locked_t ls;
    _Alignas(64) trial_slot_t slots[];
} shared_body_t;

/* The fixed parameters of a shared breaker, stored in the segment's header:
 * processes that disagree on them cannot share it (PF_EEXIST). */
typedef struct shared_params {
    uint32_t failure_threshold;
    uint32_t success_threshold;
    uint32_t half_open_max;
    uint32_t layout; /* of shared_body_t: 1 */
    int64_t recovery_ns;
    int64_t max_recovery_ns;
    int64_t max_wait_ns;
    double multiplier;
} shared_params_t;

typedef struct event {
    uint8_t from;
    uint8_t to;
} event_t;

/* Who guards what: the first cache line is atomics read by every call and
 * written only under lock (except the count in word, CAS'd lock-free).
 * The immutable block is set by _new (and the unref hook by a group before
 * it shares the breaker). last_failure_ns is an atomic on its own line,
 * written by failing calls. Everything after lock is under lock. The
 * stripes follow the struct in the same allocation. */
struct pf_breaker {
    _Alignas(64) core_t *core; /* &own, or the shared segment's */
    core_t own;

    char *name;
    const pf_clock_t *clock;
    bool coarse;  /* read pf__clock_now_coarse_ns, not pf_clock_now_ns */
    bool system;  /* clock is the system clock (NULL or pf_clock_system()) */
    bool stamp;   /* acquire notes the start time (durations count) */
    bool shadow;
    pf_breaker_window_t window;
    unsigned failure_threshold;
    unsigned success_threshold;
    unsigned half_open_max;
    unsigned minimum_calls;
    int64_t recovery_ns;
    int64_t max_recovery_ns;
    int64_t max_wait_ns;
    int64_t timeout_ns; /* NEVER = no timeout */
    int64_t slow_ns;    /* NEVER = slow calls not tracked */
    double multiplier;
    double jitter;
    double failure_rate;
    double slow_rate;
    int *expected;
    size_t expected_len;
    pf_breaker_failure_fn is_failure;
    void *is_failure_arg;
    pf_fallback_fn fallback;
    pf_breaker_listener_fn listener;
    void *listener_arg;
    stripe_t *stripes;
    unsigned stripe_mask;
    void *raw; /* the allocation b lives in */
    pf__breaker_unref_fn unref;
    void *unref_ctx;

    _Alignas(64) _Atomic int64_t last_failure_ns;

    pthread_mutex_t lock;
    locked_t *ls; /* &own_ls, or the shared segment's */
    locked_t own_ls;
    uint64_t rng;
    trial_slot_t *slots; /* allocated, or the shared segment's */
    pf__shm_t shm;       /* shared: the segment (map NULL otherwise) */
    pthread_mutex_t *shm_mu; /* shared: the segment's mutex, else NULL */
    _Atomic int64_t next_liveness_ns; /* shared: next check of holders */
    pf__evq_t evq; /* changes not yet told (event_t records) */
    pf_sync_t sync;    /* the store's hook (copied; all NULL = none) */
    bool applying;     /* under lock: a change from pf_breaker_sync_apply */

    pf__window_t win; /* window modes only */
};

/* The coarse read of the system clock is pf__clock_now_coarse_ns's, made
 * here inline: the closed path reads it twice a call, and the wrapper's
 * call and return cost a fifth of each read. */
static ALWAYS_INLINE int64_t
now_ns(const pf_breaker_t *b)
{
    if (b->coarse && b->system) {
        return pf__clock_read_system(CLOCK_MONOTONIC_COARSE);
    }
    return b->coarse ? pf__clock_now_coarse_ns(b->clock)
                     : pf_clock_now_ns(b->clock);
}

/* This thread's stripe number (also its writer number in a window). */
static inline unsigned
stripe_index(const pf_breaker_t *b)
{
    unsigned s = t_stripe;

    if (s == 0) {
        s = atomic_fetch_add_explicit(&g_next_stripe, 1,
                                      memory_order_relaxed) +
            1;
        t_stripe = s;
    }
    return (s - 1) & b->stripe_mask;
}

static inline stripe_t *
my_stripe(const pf_breaker_t *b)
{
    return &b->stripes[stripe_index(b)];
}

/* Statistics: relaxed, since the counts order nothing. */
static inline void
bump(_Atomic uint64_t *counter)
{
    atomic_fetch_add_explicit(counter, 1, memory_order_relaxed);
}

/* ---- configuration ---------------------------------------------------- */

void
pf_breaker_config_init(pf_breaker_config_t *cfg)
{
    if (cfg == NULL) {
        return;
    }
    memset(cfg, 0, sizeof(*cfg));
    cfg->name = "default";
    cfg->failure_threshold = 5;
    cfg->recovery_timeout = 60.0;
    cfg->success_threshold = 3;
    cfg->half_open_max_calls = 0;
    cfg->max_wait_in_half_open = 0.0;
    cfg->recovery_multiplier = 1.0;
    cfg->max_recovery_timeout = 600.0;
    cfg->shadow = false;
    cfg->timeout = 30.0;
    cfg->window = PF_BREAKER_WINDOW_CONSECUTIVE;
    cfg->window_size = 100;
    cfg->minimum_calls = 20;
    cfg->failure_rate_threshold = 50.0;
    cfg->slow_call_duration = 60.0;
    cfg->slow_call_rate_threshold = 100.0;
    cfg->recovery_jitter = 0.0;
    cfg->jitter_seed = 0;
}

static bool
bad_rate(double r)
{
    return isnan(r) || r <= 0.0 || r > 100.0;
}

static bool
bad_secs(double s)
{
    int64_t ns;

    return pf__secs_to_ns(s, &ns) != 0;
}

int
pf__breaker_config_check(const pf_breaker_config_t *cfg)
{
    if (cfg == NULL) {
        return PF_EINVAL;
    }
    if (cfg->failure_threshold == 0 || cfg->failure_threshold > COUNT_MASK ||
        cfg->success_threshold == 0 ||
        cfg->half_open_max_calls > MAX_HALF_OPEN_CALLS) {
        return PF_EINVAL;
    }
    if (bad_secs(cfg->recovery_timeout) ||
        bad_secs(cfg->max_wait_in_half_open) ||
        bad_secs(cfg->max_recovery_timeout) || bad_secs(cfg->timeout) ||
        bad_secs(cfg->slow_call_duration)) {
        return PF_EINVAL;
    }
    /* !(x >= 1) also catches NaN. */
    if (!(cfg->recovery_multiplier >= 1.0) ||
        isinf(cfg->recovery_multiplier)) {
        return PF_EINVAL;
    }
    if (!(cfg->recovery_jitter >= 0.0 && cfg->recovery_jitter <= 1.0)) {
        return PF_EINVAL;
    }
    if (cfg->expected_errors_len > 0) {
        if (cfg->expected_errors == NULL) {
            return PF_EINVAL;
        }
        for (size_t i = 0; i < cfg->expected_errors_len; i++) {
            if (cfg->expected_errors[i] == 0) {
                return PF_EINVAL;
            }
        }
    }
    if (bad_rate(cfg->failure_rate_threshold) ||
        bad_rate(cfg->slow_call_rate_threshold)) {
        return PF_EINVAL;
    }
    if (cfg->shared != NULL && cfg->sync != NULL) {
        return PF_EINVAL;
    }
    if (cfg->shared != NULL) {
        unsigned trials = cfg->half_open_max_calls != 0
                              ? cfg->half_open_max_calls
                              : cfg->success_threshold;
        char path[8];

        /* Shared: consecutive counting only, a bounded segment, a name
         * the store accepts (a short buffer only tests the name). */
        if (cfg->window != PF_BREAKER_WINDOW_CONSECUTIVE ||
            trials > MAX_SHARED_TRIALS ||
            pf__shm_path(cfg->shared->dir, cfg->shared->name, path,
                         sizeof(path)) == PF_EINVAL ||
            (cfg->shared->mode & ~0666u) != 0) {
            return PF_EINVAL;
        }
    }
    switch (cfg->window) {
    case PF_BREAKER_WINDOW_CONSECUTIVE:
        return 0;
    case PF_BREAKER_WINDOW_COUNT:
        if (cfg->window_size > PF__WINDOW_MAX_CALLS) {
            return PF_EINVAL;
        }
        break;
    case PF_BREAKER_WINDOW_TIME:
        if (cfg->window_size > PF__WINDOW_MAX_SECONDS) {
            return PF_EINVAL;
        }
        break;
    default:
        return PF_EINVAL;
    }
    if (cfg->window_size == 0 || cfg->minimum_calls == 0) {
        return PF_EINVAL;
    }
    return 0;
}

/* Durations from the config, checked already. */
static void
set_durations(pf_breaker_t *b, const pf_breaker_config_t *cfg)
{
    int64_t shortest;

    pf__secs_to_ns(cfg->recovery_timeout, &b->recovery_ns);
    pf__secs_to_ns(cfg->max_recovery_timeout, &b->max_recovery_ns);
    if (b->max_recovery_ns < b->recovery_ns) {
        b->max_recovery_ns = b->recovery_ns;
    }
    pf__secs_to_ns(cfg->max_wait_in_half_open, &b->max_wait_ns);
    if (b->max_wait_ns == 0) {
        b->max_wait_ns = b->recovery_ns;
    }
    pf__secs_to_ns(cfg->timeout, &b->timeout_ns);
    if (b->timeout_ns == 0) {
        b->timeout_ns = NEVER;
    }
    pf__secs_to_ns(cfg->slow_call_duration, &b->slow_ns);
    if (b->window == PF_BREAKER_WINDOW_CONSECUTIVE) {
        b->slow_ns = NEVER;
    }
    b->stamp = b->timeout_ns != NEVER || b->slow_ns != NEVER;
    shortest = b->recovery_ns < b->max_wait_ns ? b->recovery_ns
                                               : b->max_wait_ns;
    if (b->timeout_ns < shortest) {
        shortest = b->timeout_ns;
    }
    if (b->slow_ns < shortest) {
        shortest = b->slow_ns;
    }
    b->coarse = shortest >= PF_NS_PER_SEC;
    b->ls->cur_recovery_ns = b->recovery_ns;
}

static void
set_options(pf_breaker_t *b, const pf_breaker_config_t *cfg)
{
    b->clock = cfg->clock;
    b->system = !pf_clock_is_manual(cfg->clock);
    b->shadow = cfg->shadow;
    b->window = cfg->window;
    b->failure_threshold = cfg->failure_threshold;
    b->success_threshold = cfg->success_threshold;
    b->half_open_max = cfg->half_open_max_calls != 0
                           ? cfg->half_open_max_calls
                           : cfg->success_threshold;
    if (b->half_open_max > MAX_HALF_OPEN_CALLS) {
        b->half_open_max = MAX_HALF_OPEN_CALLS;
    }
    b->minimum_calls = cfg->minimum_calls;
    if (cfg->window == PF_BREAKER_WINDOW_COUNT &&
        b->minimum_calls > cfg->window_size) {
        b->minimum_calls = cfg->window_size;
    }
    b->multiplier = cfg->recovery_multiplier;
    b->jitter = cfg->recovery_jitter;
    b->failure_rate = cfg->failure_rate_threshold;
    b->slow_rate = cfg->slow_call_rate_threshold;
    b->is_failure = cfg->is_failure;
    b->is_failure_arg = cfg->is_failure_arg;
    b->fallback = cfg->fallback;
    b->listener = cfg->listener;
    b->listener_arg = cfg->listener_arg;
    if (cfg->sync != NULL) {
        b->sync = *cfg->sync;
    }
    b->rng = cfg->jitter_seed != 0 ? cfg->jitter_seed : pf__rng_seed();
    set_durations(b, cfg);
}

/* Allocate b (with its stripes, in one 64-byte-aligned block), its name,
 * expected errors, trial slots and window, and set every field from cfg,
 * checked already. */
static int
alloc_breaker(const pf_breaker_config_t *cfg, pf_breaker_t **out)
{
    unsigned n = stripe_count();
    void *raw = pf__calloc(1, sizeof(pf_breaker_t) + n * sizeof(stripe_t) +
                                  63);
    pf_breaker_t *b;

    if (raw == NULL) {
        return PF_ENOMEM;
    }
    b = (pf_breaker_t *)(((uintptr_t)raw + 63) & ~(uintptr_t)63);
    b->raw = raw;
    b->core = &b->own;
    b->ls = &b->own_ls;
    b->stripes = (stripe_t *)(void *)((char *)b + sizeof(pf_breaker_t));
    b->stripe_mask = n - 1;
    set_options(b, cfg);
    b->name = pf__strdup(cfg->name);
    if (b->name == NULL) {
        goto fail;
    }
    if (cfg->expected_errors_len > 0) {
        b->expected =
            pf__calloc(cfg->expected_errors_len, sizeof(*b->expected));
        if (b->expected == NULL) {
            goto fail;
        }
        memcpy(b->expected, cfg->expected_errors,
               cfg->expected_errors_len * sizeof(*b->expected));
        b->expected_len = cfg->expected_errors_len;
    }
    if (cfg->shared == NULL) {
        b->slots = pf__calloc(b->half_open_max, sizeof(*b->slots));
        if (b->slots == NULL) {
            goto fail;
        }
    }
    pf__evq_init(&b->evq, sizeof(event_t));
    if (b->listener != NULL && !pf__evq_reserve(&b->evq, FIRST_EVENTS)) {
        pf__evq_clear(&b->evq, NULL, NULL);
        goto fail;
    }
    *out = b;
    return 0;
fail:
    pf__free(b->slots);
    pf__free(b->expected);
    pf__free(b->name);
    pf__free(raw);
    return PF_ENOMEM;
}

static void
free_parts(pf_breaker_t *b)
{
    pf__evq_clear(&b->evq, NULL, NULL);
    if (b->shm.map != NULL) {
        pf__shm_close(&b->shm);
    } else {
        pf__free(b->slots);
    }
    pf__free(b->expected);
    pf__free(b->name);
    pf__free(b->raw);
}

/* ---- shared state ------------------------------------------------------ */

static void
shared_params(const pf_breaker_t *b, shared_params_t *p)
{
    memset(p, 0, sizeof(*p));
    p->failure_threshold = b->failure_threshold;
    p->success_threshold = b->success_threshold;
    p->half_open_max = b->half_open_max;
    p->layout = 1;
    p->recovery_ns = b->recovery_ns;
    p->max_recovery_ns = b->max_recovery_ns;
    p->max_wait_ns = b->max_wait_ns;
    p->multiplier = b->multiplier;
}

/* Fill a new segment's body: CLOSED at generation 1, the mutex robust and
 * process-shared. Runs in the creating process before any other can see
 * the segment. */
static void
shared_init(void *body, void *arg)
{
    shared_body_t *sb = body;
    const pf_breaker_t *b = arg;
    pthread_mutexattr_t attr;

    atomic_init(&sb->core.word, UINT64_C(1) << GEN_SHIFT);
    atomic_init(&sb->core.open_until_ns, NEVER);
    atomic_init(&sb->core.trials, 0);
    atomic_init(&sb->core.next_reclaim_ns, NEVER);
    sb->ls.cur_recovery_ns = b->recovery_ns;
    sb->ls.last_transition_ns = -1;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&sb->mu, &attr);
    pthread_mutexattr_destroy(&attr);
}

/* Open (or create) the segment of a shared breaker and point b's state at
 * it. Errors as pf__shm_open. */
static int
open_shared(pf_breaker_t *b, const pf_shared_config_t *sc)
{
    shared_params_t params;
    pf__shm_spec_t spec;
    shared_body_t *sb;
    int rc;

    shared_params(b, &params);
    memset(&spec, 0, sizeof(spec));
    spec.dir = sc->dir;
    spec.name = sc->name;
    spec.mode = sc->mode;
    spec.kind = PF__SHM_KIND_BREAKER;
    spec.body_size = (uint32_t)(sizeof(shared_body_t) +
                                b->half_open_max * sizeof(trial_slot_t));
    spec.params = &params;
    spec.params_len = sizeof(params);
    spec.init = shared_init;
    spec.arg = b;
    rc = pf__shm_open(&spec, &b->shm);
    if (rc != 0) {
        return rc;
    }
    sb = b->shm.body;
    b->core = &sb->core;
    b->ls = &sb->ls;
    b->slots = sb->slots;
    b->shm_mu = &sb->mu;
    return 0;
}

/* Free the trial slots whose holder process is gone (a shared breaker's
 * trials are leases: lease.h). A freed trial is not counted as a failure:
 * its process died, which says nothing about the dependency. Checked at
 * most once per millisecond, when every slot is taken. Under lock. */
static void
reclaim_dead(pf_breaker_t *b, int64_t now)
{
    atomic_store_explicit(&b->next_liveness_ns,
                          pf__add_sat(now, PF_NS_PER_MS),
                          memory_order_relaxed);
    for (unsigned i = 0; i < b->half_open_max; i++) {
        trial_slot_t *s = &b->slots[i];

        if (s->ticket == 0 || s->holder == PF__LEASE_FREE ||
            pf__lease_alive(s->holder)) {
            continue;
        }
        s->ticket = 0;
        s->holder = PF__LEASE_FREE;
        atomic_fetch_sub_explicit(&b->core->trials, 1, memory_order_relaxed);
        b->ls->reclaimed++;
    }
}

/* A shared breaker with every trial slot taken may hold slots of dead
 * processes, which only a check under the lock finds. */
static bool
liveness_due(const pf_breaker_t *b, int64_t now)
{
    return b->shm_mu != NULL &&
           now >= atomic_load_explicit(&b->next_liveness_ns,
                                       memory_order_relaxed);
}

int
pf_breaker_new(const pf_breaker_config_t *cfg, pf_breaker_t **out)
{
    pf_breaker_t *b;
    int64_t now;
    int rc;

    if (cfg == NULL || out == NULL || cfg->name == NULL ||
        cfg->name[0] == '\0') {
        return PF_EINVAL;
    }
    rc = pf__breaker_config_check(cfg);
    if (rc != 0) {
        return rc;
    }
    rc = alloc_breaker(cfg, &b);
    if (rc != 0) {
        return rc;
    }
    now = now_ns(b);
    if (b->window != PF_BREAKER_WINDOW_CONSECUTIVE) {
        rc = pf__window_init(&b->win,
                             b->window == PF_BREAKER_WINDOW_COUNT
                                 ? PF__WINDOW_COUNT
                                 : PF__WINDOW_TIME,
                             cfg->window_size, now, b->stripe_mask + 1,
                             b->minimum_calls);
        if (rc != 0) {
            free_parts(b);
            return rc;
        }
    }
    if (pthread_mutex_init(&b->lock, NULL) != 0) {
        if (b->window != PF_BREAKER_WINDOW_CONSECUTIVE) {
            pf__window_destroy(&b->win);
        }
        free_parts(b);
        return PF_ESYSTEM;
    }
    atomic_init(&b->last_failure_ns, -1);
    atomic_init(&b->next_liveness_ns, 0);
    if (cfg->shared != NULL) {
        rc = open_shared(b, cfg->shared);
        if (rc != 0) {
            pthread_mutex_destroy(&b->lock);
            free_parts(b);
            return rc;
        }
        *out = b;
        return 0;
    }
    /* Generation 1, CLOSED, count 0: the epoch is never 0, which marks an
     * empty permit. */
    atomic_init(&b->core->word, UINT64_C(1) << GEN_SHIFT);
    atomic_init(&b->core->open_until_ns, NEVER);
    atomic_init(&b->core->trials, 0);
    atomic_init(&b->core->next_reclaim_ns, NEVER);
    atomic_init(&b->last_failure_ns, -1);
    b->ls->last_transition_ns = -1;
    *out = b;
    return 0;
}

void
pf_breaker_free(pf_breaker_t *b)
{
    if (b == NULL) {
        return;
    }
    if (b->sync.detach != NULL) {
        b->sync.detach(b->sync.arg);
    }
    pthread_mutex_destroy(&b->lock);
    if (b->window != PF_BREAKER_WINDOW_CONSECUTIVE) {
        pf__window_destroy(&b->win);
    }
    free_parts(b);
}

void
pf__breaker_set_unref(pf_breaker_t *b, pf__breaker_unref_fn fn, void *ctx)
{
    b->unref = fn;
    b->unref_ctx = ctx;
}

void *
pf__breaker_unref_ctx(const pf_breaker_t *b)
{
    return b->unref_ctx;
}

void
pf__permit_mark_group(pf_permit_t *permit)
{
    permit->priv_flags |= PERMIT_GROUP;
}

/* ---- the lock ---------------------------------------------------------- */

/* b->lock, and for a shared breaker the segment's mutex after it (lock
 * order: b->lock, then the segment's). The segment's mutex is robust: when
 * its holder died holding it, the next locker gets it with EOWNERDEAD and
 * marks it consistent. The state it guards is left as the dead process
 * left it; every change publishes the word last, so the worst left behind
 * is a count (a trial slot, a success in half-open) off by one, which the
 * next change of state resets. */
static void
lock(pf_breaker_t *b)
{
    pthread_mutex_lock(&b->lock);
    if (b->shm_mu != NULL && pthread_mutex_lock(b->shm_mu) == EOWNERDEAD) {
        pthread_mutex_consistent(b->shm_mu);
    }
}

static void
unlock(pf_breaker_t *b)
{
    if (b->shm_mu != NULL) {
        pthread_mutex_unlock(b->shm_mu);
    }
    pthread_mutex_unlock(&b->lock);
}

/* ---- state changes (under lock) --------------------------------------- */

/* Queue the event for the listener. The queue grows while a slow listener
 * falls behind; only if that allocation fails is the oldest change
 * dropped (and counted). Under lock. */
static void
queue_event(pf_breaker_t *b, pf_breaker_state_t from, pf_breaker_state_t to)
{
    event_t e;

    if (b->listener == NULL || from == to) {
        return;
    }
    e.from = (uint8_t)from;
    e.to = (uint8_t)to;
    (void)pf__evq_push_evict(&b->evq, &e, NULL, NULL);
}

static void
deliver_event(void *ev, void *ctx)
{
    const event_t *e = ev;
    pf_breaker_t *b = ctx;

    b->listener(b, (pf_breaker_state_t)e->from, (pf_breaker_state_t)e->to,
                b->listener_arg);
}

/* Release b->lock, first telling the listener of queued changes unless
 * another thread is doing so already (it will tell ours too, in order).
 * Nothing waits for a delivery to end (_free may not race any call), so
 * there is no idle condition and no stop flag. */
static void
unlock_and_notify(pf_breaker_t *b)
{
    if (b->shm_mu != NULL) {
        pthread_mutex_unlock(b->shm_mu);
    }
    pf__evq_drain(&b->evq, &b->lock, NULL, NULL, deliver_event, NULL, b);
    pthread_mutex_unlock(&b->lock);
}

/* Publish a new state with the next generation (count 0). Fields readers
 * use with the new word (open_until_ns) are stored before it: the release
 * store pairs with the acquire loads of word on the lock-free paths. */
static void
publish(pf_breaker_t *b, uint64_t w, pf_breaker_state_t to, bool forced,
        int64_t now)
{
    uint64_t gen = ((w >> GEN_SHIFT) + 1) & GEN_MASK;
    uint64_t nw;

    if (gen == 0) {
        gen = 1; /* keep every epoch non-zero */
    }
    nw = (gen << GEN_SHIFT) | (forced ? FORCED_BIT : 0) |
         ((uint64_t)to << STATE_SHIFT);
    atomic_store_explicit(&b->core->word, nw, memory_order_release);
    if (STATE_OF(w) != to) {
        b->ls->transitions++;
        b->ls->last_transition_ns = now;
        queue_event(b, STATE_OF(w), to);
        if (b->sync.breaker_changed != NULL && !b->applying) {
            int64_t until = atomic_load_explicit(&b->core->open_until_ns,
                                                 memory_order_relaxed);

            b->sync.breaker_changed(
                b->sync.arg, b, (int)STATE_OF(w), (int)to,
                to != PF_BREAKER_OPEN ? 0
                : forced || until == NEVER ? INT64_MAX
                                           : until - now);
        }
    }
}

/* The open period for the next opening: the base one after CLOSED, the
 * previous one times the multiplier (capped) after HALF_OPEN; then
 * lengthened by a random part of up to jitter of itself. */
static int64_t
open_period(pf_breaker_t *b, bool grow)
{
    int64_t cur = b->recovery_ns;

    if (grow) {
        double next = (double)b->ls->cur_recovery_ns * b->multiplier;

        cur = next >= (double)b->max_recovery_ns ? b->max_recovery_ns
                                                 : (int64_t)next;
        if (cur < b->recovery_ns) {
            cur = b->recovery_ns;
        }
    }
    b->ls->cur_recovery_ns = cur;
    if (b->jitter > 0.0 && cur != NEVER) {
        double extra = (double)cur * b->jitter * pf__rng_double(&b->rng);

        cur = extra >= (double)(NEVER - cur) ? NEVER : cur + (int64_t)extra;
    }
    return cur;
}

static void
to_open(pf_breaker_t *b, uint64_t w, int64_t now, bool grow, bool forced)
{
    int64_t until = forced ? NEVER : pf__add_sat(now, open_period(b, grow));

    atomic_store_explicit(&b->core->open_until_ns, until, memory_order_relaxed);
    if (STATE_OF(w) != PF_BREAKER_OPEN) {
        b->ls->times_opened++;
    }
    publish(b, w, PF_BREAKER_OPEN, forced, now);
}

static void
to_half_open(pf_breaker_t *b, uint64_t w, int64_t now)
{
    b->ls->half_successes = 0;
    publish(b, w, PF_BREAKER_HALF_OPEN, false, now);
}

static void
to_closed(pf_breaker_t *b, uint64_t w, int64_t now)
{
    b->ls->half_successes = 0;
    b->ls->cur_recovery_ns = b->recovery_ns;
    if (b->window != PF_BREAKER_WINDOW_CONSECUTIVE) {
        pf__window_clear(&b->win, now);
    }
    atomic_store_explicit(&b->core->open_until_ns, NEVER, memory_order_relaxed);
    publish(b, w, PF_BREAKER_CLOSED, false, now);
}

static void
note_failure(pf_breaker_t *b, int64_t now)
{
    atomic_store_explicit(&b->last_failure_ns, now, memory_order_relaxed);
}

/* Count as failures the trials not recorded within max_wait_ns, freeing
 * their slots; one from the current half-open period reopens the breaker.
 * Under lock. */
static void
reclaim_overdue(pf_breaker_t *b, int64_t now)
{
    int64_t next = NEVER;

    if (atomic_load_explicit(&b->core->trials, memory_order_relaxed) == 0 ||
        now <= atomic_load_explicit(&b->core->next_reclaim_ns,
                                    memory_order_relaxed)) {
        return;
    }
    for (unsigned i = 0; i < b->half_open_max; i++) {
        trial_slot_t *s = &b->slots[i];
        uint64_t w;

        if (s->ticket == 0) {
            continue;
        }
        if (now - s->start_ns <= b->max_wait_ns) {
            int64_t due = pf__add_sat(s->start_ns, b->max_wait_ns);

            next = due < next ? due : next;
            continue;
        }
        s->ticket = 0;
        atomic_fetch_sub_explicit(&b->core->trials, 1, memory_order_relaxed);
        b->ls->reclaimed++;
        bump(&my_stripe(b)->failures);
        note_failure(b, now);
        w = atomic_load_explicit(&b->core->word, memory_order_relaxed);
        if (STATE_OF(w) == PF_BREAKER_HALF_OPEN && EPOCH(w) == s->epoch) {
            to_open(b, w, now, true, false);
        }
    }
    atomic_store_explicit(&b->core->next_reclaim_ns, next, memory_order_relaxed);
}

/* Open from CLOSED if the state is still the epoch whose count or window
 * reached the threshold (another thread may have opened it already). now
 * is the record's clock reading, or -1 when it read none. */
static SLOW_PATH void
open_from_closed(pf_breaker_t *b, uint64_t epoch, int64_t now)
{
    uint64_t w;

    if (now < 0) {
        now = now_ns(b);
    }
    lock(b);
    w = atomic_load_explicit(&b->core->word, memory_order_relaxed);
    if (EPOCH(w) == epoch) {
        to_open(b, w, now, false, false);
    }
    unlock_and_notify(b);
}

/* ---- the permit face -------------------------------------------------- */

static void
fill(pf_permit_t *p, const pf_breaker_t *b, uint64_t epoch, int64_t start,
     unsigned flags)
{
    p->priv_breaker = b;
    p->priv_epoch = epoch;
    p->priv_ticket = 0;
    p->priv_start_ns = start;
    p->priv_slot = NO_SLOT;
    p->priv_flags = flags;
}

static void
empty(pf_permit_t *p)
{
    p->priv_epoch = 0;
    p->priv_ticket = 0;
    p->priv_flags = 0;
}

/* A call the breaker would refuse: refused, or let through in shadow mode
 * with a permit whose result counts only in the metrics. */
static int
refuse(pf_breaker_t *b, pf_permit_t *p, uint64_t w, int64_t now)
{
    if (b->shadow) {
        bump(&my_stripe(b)->shadow_rejected);
        fill(p, b, EPOCH(w), now, PERMIT_SHADOW);
        return 0;
    }
    bump(&my_stripe(b)->rejected);
    empty(p);
    return PF_EOPEN;
}

/* Take a free trial slot. Under lock, with trials < half_open_max. */
static void
claim_trial(pf_breaker_t *b, pf_permit_t *p, uint64_t w, int64_t now)
{
    unsigned i = b->ls->slot_hint;
    trial_slot_t *s;

    while (b->slots[i].ticket != 0) {
        i = i + 1 == b->half_open_max ? 0 : i + 1;
    }
    b->ls->slot_hint = i + 1 == b->half_open_max ? 0 : i + 1;
    s = &b->slots[i];
    s->ticket = ++b->ls->ticket_seq;
    s->epoch = EPOCH(w);
    s->start_ns = now;
    s->holder = b->shm_mu != NULL ? pf__lease_self() : PF__LEASE_FREE;
    atomic_fetch_add_explicit(&b->core->trials, 1, memory_order_relaxed);
    if (pf__add_sat(now, b->max_wait_ns) <
        atomic_load_explicit(&b->core->next_reclaim_ns, memory_order_relaxed)) {
        atomic_store_explicit(&b->core->next_reclaim_ns,
                              pf__add_sat(now, b->max_wait_ns),
                              memory_order_relaxed);
    }
    fill(p, b, EPOCH(w), now, PERMIT_TRIAL);
    p->priv_ticket = s->ticket;
    p->priv_slot = i;
}

/* Acquire when the word is not CLOSED: reject without a lock while OPEN
 * before recovery, or while HALF_OPEN with every trial slot taken and none
 * overdue; otherwise decide under the lock. */
static SLOW_PATH int
acquire_slow(pf_breaker_t *b, pf_permit_t *p, uint64_t w)
{
    int64_t now = now_ns(b);
    int rc;

    if (STATE_OF(w) == PF_BREAKER_OPEN &&
        now < atomic_load_explicit(&b->core->open_until_ns, memory_order_relaxed)) {
        return refuse(b, p, w, now);
    }
    if (STATE_OF(w) == PF_BREAKER_HALF_OPEN &&
        atomic_load_explicit(&b->core->trials, memory_order_relaxed) >=
            b->half_open_max &&
        now <= atomic_load_explicit(&b->core->next_reclaim_ns,
                                    memory_order_relaxed) &&
        !liveness_due(b, now)) {
        return refuse(b, p, w, now);
    }
    lock(b);
    for (;;) {
        w = atomic_load_explicit(&b->core->word, memory_order_relaxed);
        if (STATE_OF(w) == PF_BREAKER_CLOSED) {
            fill(p, b, EPOCH(w), b->stamp ? now : 0, 0);
            rc = 0;
            break;
        }
        if (STATE_OF(w) == PF_BREAKER_OPEN) {
            if (now < atomic_load_explicit(&b->core->open_until_ns,
                                           memory_order_relaxed)) {
                rc = refuse(b, p, w, now);
                break;
            }
            to_half_open(b, w, now);
            continue;
        }
        if (atomic_load_explicit(&b->core->trials, memory_order_relaxed) >=
                b->half_open_max &&
            liveness_due(b, now)) {
            reclaim_dead(b, now);
        }
        reclaim_overdue(b, now);
        if (atomic_load_explicit(&b->core->word, memory_order_relaxed) != w) {
            continue; /* a reclaimed trial reopened it */
        }
        if (atomic_load_explicit(&b->core->trials, memory_order_relaxed) <
            b->half_open_max) {
            claim_trial(b, p, w, now);
            rc = 0;
        } else {
            rc = refuse(b, p, w, now);
        }
        break;
    }
    unlock_and_notify(b);
    return rc;
}

int
pf_breaker_acquire(pf_breaker_t *b, pf_permit_t *permit)
{
    uint64_t w;

    if (permit == NULL) {
        return PF_EINVAL;
    }
    if (b == NULL) {
        empty(permit);
        return PF_EINVAL;
    }
    /* Acquire pairs with publish()'s release: a state other than CLOSED
     * comes with its open_until_ns. The closed path needs nothing more. */
    w = atomic_load_explicit(&b->core->word, memory_order_acquire);
    if (STATE_OF(w) == PF_BREAKER_CLOSED) {
        fill(permit, b, EPOCH(w), b->stamp ? now_ns(b) : 0, 0);
        return 0;
    }
    return acquire_slow(b, permit, w);
}

bool
pf_permit_is_trial(const pf_permit_t *permit)
{
    return permit != NULL && permit->priv_epoch != 0 &&
           (permit->priv_flags & PERMIT_TRIAL) != 0;
}

static bool
counts_as_failure(const pf_breaker_t *b, int result)
{
    if (b->expected_len == 0 && b->is_failure == NULL) {
        return true;
    }
    for (size_t i = 0; i < b->expected_len; i++) {
        if (b->expected[i] == result) {
            return true;
        }
    }
    return b->is_failure != NULL && b->is_failure(result, b->is_failure_arg);
}

static ALWAYS_INLINE void
count_outcome(pf_breaker_t *b, pf_breaker_outcome_t out, bool slow)
{
    stripe_t *s = my_stripe(b);

    switch (out) {
    case PF_BREAKER_OUTCOME_SUCCESS:
        bump(&s->successes);
        break;
    case PF_BREAKER_OUTCOME_TIMEOUT:
        bump(&s->timeouts);
        bump(&s->failures);
        break;
    case PF_BREAKER_OUTCOME_FAILURE:
        bump(&s->failures);
        break;
    case PF_BREAKER_OUTCOME_IGNORED:
        bump(&s->ignored);
        return;
    case PF_BREAKER_OUTCOME_NONE:
        return;
    }
    if (slow) {
        bump(&s->slow);
    }
}

static bool
is_failure_outcome(pf_breaker_outcome_t out)
{
    return out == PF_BREAKER_OUTCOME_FAILURE ||
           out == PF_BREAKER_OUTCOME_TIMEOUT;
}

/* Consecutive mode: a success clears the count, a failure adds one; both
 * by CAS against the whole word, so neither lands in another epoch. */
static void
apply_consecutive(pf_breaker_t *b, uint64_t epoch, bool failed, int64_t now)
{
    uint64_t w = atomic_load_explicit(&b->core->word, memory_order_relaxed);

    if (!failed) {
        /* The common case, count already 0, writes nothing. */
        while (EPOCH(w) == epoch && (w & COUNT_MASK) != 0) {
            if (atomic_compare_exchange_weak_explicit(
                    &b->core->word, &w, w & ~COUNT_MASK, memory_order_relaxed,
                    memory_order_relaxed)) {
                break;
            }
        }
        return;
    }
    for (;;) {
        uint64_t n;

        if (EPOCH(w) != epoch) {
            return;
        }
        n = w & COUNT_MASK;
        if (n < COUNT_MASK) {
            n++;
        }
        /* Relaxed: a CAS continues the release sequence of the publish
         * that set the epoch, so acquirers still see its fields. */
        if (atomic_compare_exchange_weak_explicit(
                &b->core->word, &w, (w & ~COUNT_MASK) | n, memory_order_relaxed,
                memory_order_relaxed)) {
            if (n >= b->failure_threshold) {
                open_from_closed(b, epoch, now);
            }
            return;
        }
    }
}

static bool
window_trips(const pf_breaker_t *b, const pf__window_totals_t *t)
{
    double calls = (double)t->calls;

    if (t->calls < b->minimum_calls) {
        return false;
    }
    if ((double)t->failures * 100.0 >= b->failure_rate * calls) {
        return true;
    }
    return b->slow_ns != NEVER &&
           (double)t->slow * 100.0 >= b->slow_rate * calls;
}

static void
apply_window(pf_breaker_t *b, uint64_t epoch, bool failed, bool slow,
             int64_t now)
{
    uint64_t w = atomic_load_explicit(&b->core->word, memory_order_relaxed);
    pf__window_totals_t t;

    if (EPOCH(w) != epoch) {
        return;
    }
    /* The window says when the rates may have crossed a threshold. */
    if (pf__window_add(&b->win, stripe_index(b), now, failed, slow, &t) &&
        window_trips(b, &t)) {
        open_from_closed(b, epoch, now);
    }
}

/* How a result counts, given the call's duration (meaningful only when
 * the breaker has a timeout: durations are then measured). */
static inline pf_breaker_outcome_t
classify(const pf_breaker_t *b, int result, int64_t took)
{
    if (b->timeout_ns != NEVER && took > b->timeout_ns) {
        return PF_BREAKER_OUTCOME_TIMEOUT;
    }
    if (result == 0) {
        return PF_BREAKER_OUTCOME_SUCCESS;
    }
    return counts_as_failure(b, result) ? PF_BREAKER_OUTCOME_FAILURE
                                        : PF_BREAKER_OUTCOME_IGNORED;
}

/* A trial's result: free its slot (unless reclaimed meanwhile, then it
 * was counted already and reports TIMEOUT), count it, and move the state
 * if the trial belongs to the current half-open period. */
static SLOW_PATH pf_breaker_outcome_t
record_trial(pf_breaker_t *b, uint32_t slot, uint64_t ticket, uint64_t epoch,
             pf_breaker_outcome_t out, bool slow, int64_t now)
{
    trial_slot_t *s = &b->slots[slot];
    uint64_t w;

    lock(b);
    if (s->ticket != ticket) {
        unlock(b);
        return PF_BREAKER_OUTCOME_TIMEOUT;
    }
    s->ticket = 0;
    atomic_fetch_sub_explicit(&b->core->trials, 1, memory_order_relaxed);
    count_outcome(b, out, slow);
    if (is_failure_outcome(out)) {
        note_failure(b, now);
    }
    w = atomic_load_explicit(&b->core->word, memory_order_relaxed);
    if (STATE_OF(w) == PF_BREAKER_HALF_OPEN && EPOCH(w) == epoch) {
        if (out == PF_BREAKER_OUTCOME_SUCCESS) {
            if (++b->ls->half_successes >= b->success_threshold) {
                to_closed(b, w, now);
            }
        } else if (is_failure_outcome(out)) {
            to_open(b, w, now, true, false);
        }
    }
    unlock_and_notify(b);
    return out;
}

/* Everything but a closed success in consecutive mode (see below), given
 * the clock reading the caller took (have_now) or none. */
static SLOW_PATH pf_breaker_outcome_t
record_general(pf_breaker_t *b, pf_permit_t *permit, int result, int64_t now,
               bool have_now)
{
    pf_breaker_outcome_t out;
    uint64_t epoch = permit->priv_epoch;
    int64_t start = permit->priv_start_ns;
    uint32_t flags = permit->priv_flags;
    bool slow = false;

    if ((flags & PERMIT_TRIAL) != 0) {
        uint32_t slot = permit->priv_slot;
        uint64_t ticket = permit->priv_ticket;

        empty(permit);
        if (slot >= b->half_open_max) {
            return PF_BREAKER_OUTCOME_NONE; /* not one of ours */
        }
        if (!have_now) {
            now = now_ns(b);
        }
        out = classify(b, result, now - start);
        slow = b->slow_ns != NEVER && now - start > b->slow_ns &&
               out != PF_BREAKER_OUTCOME_IGNORED;
        out = record_trial(b, slot, ticket, epoch, out, slow, now);
    } else {
        empty(permit);
        if (!have_now && (b->stamp || b->window == PF_BREAKER_WINDOW_TIME)) {
            now = now_ns(b);
            have_now = true;
        }
        out = classify(b, result, now - start);
        slow = b->slow_ns != NEVER && now - start > b->slow_ns &&
               out != PF_BREAKER_OUTCOME_IGNORED;
        count_outcome(b, out, slow);
        if (is_failure_outcome(out)) {
            if (!have_now) {
                now = now_ns(b);
                have_now = true;
            }
            note_failure(b, now);
        }
        if ((flags & PERMIT_SHADOW) == 0 &&
            out != PF_BREAKER_OUTCOME_IGNORED) {
            int64_t at = have_now ? now : -1;

            if (b->window == PF_BREAKER_WINDOW_CONSECUTIVE) {
                apply_consecutive(b, epoch, is_failure_outcome(out), at);
            } else {
                apply_window(b, epoch, is_failure_outcome(out), slow, at);
            }
        }
    }
    if ((flags & PERMIT_GROUP) != 0) {
        b->unref(b->unref_ctx); /* last: it may free b */
    }
    return out;
}

/* The permit is read field by field, never as a whole: acquire has just
 * written it with 8-byte stores, and a wider load spanning two of them
 * (what a struct copy compiles to) cannot be forwarded from the store
 * buffer and stalls until they reach the cache; on the closed path that
 * stall was a fifth of the call. The commonest record, a success of a
 * closed-state permit in consecutive mode within its timeout, is done
 * here with nothing to save (usually one clock read and one increment of
 * this thread's stripe); everything else, and a success that timed out,
 * goes to record_general with the clock reading taken. */
pf_breaker_outcome_t
pf_breaker_record_outcome(pf_breaker_t *b, pf_permit_t *permit, int result)
{
    uint64_t epoch;
    uint32_t flags;
    int64_t now = 0;

    if (b == NULL || permit == NULL || permit->priv_epoch == 0 ||
        permit->priv_breaker != b) {
        return PF_BREAKER_OUTCOME_NONE;
    }
    flags = permit->priv_flags;
    if (result != 0 || b->window != PF_BREAKER_WINDOW_CONSECUTIVE ||
        (flags & PERMIT_TRIAL) != 0) {
        return record_general(b, permit, result, 0, false);
    }
    /* Shadow and group permits are counted like any other closed one;
     * consecutive mode tracks no slow calls. */
    epoch = permit->priv_epoch;
    if (b->stamp) {
        now = now_ns(b);
        if (b->timeout_ns != NEVER &&
            now - permit->priv_start_ns > b->timeout_ns) {
            return record_general(b, permit, result, now, true);
        }
    }
    empty(permit);
    bump(&my_stripe(b)->successes);
    if ((flags & PERMIT_SHADOW) == 0) {
        apply_consecutive(b, epoch, false, b->stamp ? now : -1);
    }
    if ((flags & PERMIT_GROUP) != 0) {
        b->unref(b->unref_ctx); /* last: it may free b */
    }
    return PF_BREAKER_OUTCOME_SUCCESS;
}

void
pf_breaker_record(pf_breaker_t *b, pf_permit_t *permit, int result)
{
    (void)pf_breaker_record_outcome(b, permit, result);
}

void
pf_breaker_release(pf_breaker_t *b, pf_permit_t *permit)
{
    uint32_t flags;
    uint32_t slot;
    uint64_t ticket;

    if (b == NULL || permit == NULL || permit->priv_epoch == 0 ||
        permit->priv_breaker != b) {
        return;
    }
    flags = permit->priv_flags;
    slot = permit->priv_slot;
    ticket = permit->priv_ticket;
    empty(permit);
    if ((flags & PERMIT_TRIAL) != 0 && slot < b->half_open_max) {
        trial_slot_t *s = &b->slots[slot];

        lock(b);
        if (s->ticket == ticket) {
            s->ticket = 0;
            atomic_fetch_sub_explicit(&b->core->trials, 1, memory_order_relaxed);
        }
        unlock(b);
    }
    if ((flags & PERMIT_GROUP) != 0) {
        b->unref(b->unref_ctx);
    }
}

/* ---- the blocking face ------------------------------------------------ */

int
pf_breaker_call(pf_breaker_t *b, pf_call_fn fn, void *arg)
{
    pf_permit_t p = PF_PERMIT_INIT;
    int rc;

    if (b == NULL || fn == NULL) {
        return PF_EINVAL;
    }
    rc = pf_breaker_acquire(b, &p);
    if (rc != 0) {
        return b->fallback != NULL ? b->fallback(arg, rc) : rc;
    }
    rc = fn(arg);
    switch (pf_breaker_record_outcome(b, &p, rc)) {
    case PF_BREAKER_OUTCOME_TIMEOUT:
        return b->fallback != NULL ? b->fallback(arg, PF_ETIMEDOUT)
                                   : PF_ETIMEDOUT;
    case PF_BREAKER_OUTCOME_FAILURE:
        return b->fallback != NULL ? b->fallback(arg, rc) : rc;
    case PF_BREAKER_OUTCOME_SUCCESS:
    case PF_BREAKER_OUTCOME_IGNORED:
    case PF_BREAKER_OUTCOME_NONE:
        break;
    }
    return rc;
}

/* ---- control and introspection ---------------------------------------- */

/* The state as callers see it: OPEN turns HALF_OPEN once recovery is due,
 * before any call makes the change. */
static pf_breaker_state_t
effective_state(const pf_breaker_t *b, uint64_t w, int64_t now)
{
    if (STATE_OF(w) == PF_BREAKER_OPEN &&
        now >= atomic_load_explicit(&b->core->open_until_ns, memory_order_relaxed)) {
        return PF_BREAKER_HALF_OPEN;
    }
    return STATE_OF(w);
}

pf_breaker_state_t
pf_breaker_state(pf_breaker_t *b)
{
    uint64_t w;

    if (b == NULL) {
        return PF_BREAKER_CLOSED;
    }
    w = atomic_load_explicit(&b->core->word, memory_order_acquire);
    if (STATE_OF(w) != PF_BREAKER_OPEN) {
        return STATE_OF(w);
    }
    return effective_state(b, w, now_ns(b));
}

const char *
pf_breaker_state_name(pf_breaker_state_t s)
{
    switch (s) {
    case PF_BREAKER_CLOSED:
        return "closed";
    case PF_BREAKER_OPEN:
        return "open";
    case PF_BREAKER_HALF_OPEN:
        return "half_open";
    }
    return "unknown";
}

const char *
pf_breaker_name(const pf_breaker_t *b)
{
    return b == NULL ? NULL : b->name;
}

pf_fallback_fn
pf_breaker_fallback(const pf_breaker_t *b)
{
    return b == NULL ? NULL : b->fallback;
}

void
pf_breaker_force_open(pf_breaker_t *b)
{
    uint64_t w;

    if (b == NULL) {
        return;
    }
    lock(b);
    w = atomic_load_explicit(&b->core->word, memory_order_relaxed);
    if ((w & FORCED_BIT) == 0) {
        to_open(b, w, now_ns(b), false, true);
    }
    unlock_and_notify(b);
}

void
pf_breaker_force_close(pf_breaker_t *b)
{
    uint64_t w;

    if (b == NULL) {
        return;
    }
    lock(b);
    w = atomic_load_explicit(&b->core->word, memory_order_relaxed);
    if (STATE_OF(w) != PF_BREAKER_CLOSED) {
        to_closed(b, w, now_ns(b));
    }
    unlock_and_notify(b);
}

void
pf_breaker_reset(pf_breaker_t *b)
{
    if (b == NULL) {
        return;
    }
    lock(b);
    to_closed(b, atomic_load_explicit(&b->core->word, memory_order_relaxed),
              now_ns(b));
    unlock_and_notify(b);
}

int
pf_breaker_sync_apply(pf_breaker_t *b, pf_breaker_state_t to, int64_t open_ns)
{
    uint64_t w;
    int64_t now;

    if (b == NULL || open_ns < 0 ||
        (to != PF_BREAKER_CLOSED && to != PF_BREAKER_OPEN &&
         to != PF_BREAKER_HALF_OPEN)) {
        return PF_EINVAL;
    }
    lock(b);
    b->applying = true;
    now = now_ns(b);
    w = atomic_load_explicit(&b->core->word, memory_order_relaxed);
    switch (to) {
    case PF_BREAKER_OPEN:
        if (open_ns == INT64_MAX) {
            to_open(b, w, now, false, true);
        } else {
            if (STATE_OF(w) != PF_BREAKER_OPEN) {
                b->ls->times_opened++;
            }
            atomic_store_explicit(&b->core->open_until_ns,
                                  pf__add_sat(now, open_ns),
                                  memory_order_relaxed);
            if (STATE_OF(w) != PF_BREAKER_OPEN || (w & FORCED_BIT) != 0) {
                publish(b, w, PF_BREAKER_OPEN, false, now);
            }
        }
        break;
    case PF_BREAKER_HALF_OPEN:
        if (STATE_OF(w) != PF_BREAKER_HALF_OPEN) {
            to_half_open(b, w, now);
        }
        break;
    case PF_BREAKER_CLOSED:
        if (STATE_OF(w) != PF_BREAKER_CLOSED) {
            to_closed(b, w, now);
        }
        break;
    }
    b->applying = false;
    unlock_and_notify(b);
    return 0;
}

void
pf_breaker_tick(pf_breaker_t *b)
{
    uint64_t w;
    int64_t now;

    if (b == NULL) {
        return;
    }
    now = now_ns(b);
    w = atomic_load_explicit(&b->core->word, memory_order_acquire);
    if (effective_state(b, w, now) == STATE_OF(w) &&
        (atomic_load_explicit(&b->core->trials, memory_order_relaxed) == 0 ||
         now <= atomic_load_explicit(&b->core->next_reclaim_ns,
                                     memory_order_relaxed))) {
        return; /* nothing due: no lock */
    }
    lock(b);
    w = atomic_load_explicit(&b->core->word, memory_order_relaxed);
    if (STATE_OF(w) == PF_BREAKER_OPEN &&
        now >= atomic_load_explicit(&b->core->open_until_ns, memory_order_relaxed)) {
        to_half_open(b, w, now);
    }
    reclaim_overdue(b, now);
    unlock_and_notify(b);
}

static double
percent(uint64_t part, uint64_t whole)
{
    return whole == 0 ? 0.0 : (double)part * 100.0 / (double)whole;
}

static void
sum_stripes(const pf_breaker_t *b, pf_breaker_metrics_t *m)
{
    for (unsigned i = 0; i <= b->stripe_mask; i++) {
        stripe_t *s = &b->stripes[i];

        m->successes += atomic_load_explicit(&s->successes,
                                             memory_order_relaxed);
        m->failures += atomic_load_explicit(&s->failures,
                                            memory_order_relaxed);
        m->ignored += atomic_load_explicit(&s->ignored, memory_order_relaxed);
        m->rejected += atomic_load_explicit(&s->rejected,
                                            memory_order_relaxed);
        m->timeouts += atomic_load_explicit(&s->timeouts,
                                            memory_order_relaxed);
        m->slow_calls += atomic_load_explicit(&s->slow, memory_order_relaxed);
        m->shadow_rejected +=
            atomic_load_explicit(&s->shadow_rejected, memory_order_relaxed);
    }
    m->calls = m->successes + m->failures + m->ignored + m->rejected;
}

void
pf_breaker_metrics(pf_breaker_t *b, pf_breaker_metrics_t *out)
{
    pf_breaker_metrics_t m;
    uint64_t w;

    if (b == NULL || out == NULL) {
        return;
    }
    memset(&m, 0, sizeof(m));
    m.now_ns = now_ns(b);
    lock(b);
    w = atomic_load_explicit(&b->core->word, memory_order_relaxed);
    sum_stripes(b, &m);
    m.state = effective_state(b, w, m.now_ns);
    m.forced_open = (w & FORCED_BIT) != 0;
    m.shadow = b->shadow;
    m.last_failure_ns =
        atomic_load_explicit(&b->last_failure_ns, memory_order_relaxed);
    m.last_transition_ns = b->ls->last_transition_ns;
    m.reclaimed = b->ls->reclaimed;
    m.events_dropped = b->evq.dropped;
    m.transitions = b->ls->transitions;
    m.times_opened = b->ls->times_opened;
    if (STATE_OF(w) == PF_BREAKER_CLOSED) {
        m.consecutive_failures = (unsigned)(w & COUNT_MASK);
    }
    m.half_open_in_flight =
        atomic_load_explicit(&b->core->trials, memory_order_relaxed);
    m.half_open_successes = b->ls->half_successes;
    m.recovery_timeout_ns = b->ls->cur_recovery_ns;
    m.retry_at_ns =
        STATE_OF(w) == PF_BREAKER_OPEN
            ? atomic_load_explicit(&b->core->open_until_ns, memory_order_relaxed)
            : -1;
    if (b->window != PF_BREAKER_WINDOW_CONSECUTIVE) {
        pf__window_totals_t t;

        pf__window_totals(&b->win, m.now_ns, &t);
        m.window_calls = t.calls;
        m.window_failures = t.failures;
        m.window_slow_calls = t.slow;
        m.failure_rate = percent(t.failures, t.calls);
        m.slow_call_rate = percent(t.slow, t.calls);
    } else {
        m.failure_rate = percent(m.failures, m.successes + m.failures);
    }
    unlock(b);
    *out = m;
}
