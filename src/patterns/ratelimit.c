/* Rate limiter: a token bucket kept as one atomic word (the generic cell
 * rate algorithm).
 *
 * Instead of a permit count that a refill must keep topping up, the state
 * is one time, tat: the moment at which the bucket will be full again. The
 * bucket's debt at time now is tat - now (none when tat is past): each
 * permit taken adds `cost` to it, time pays it back at one unit per unit,
 * and a request for n permits fits when debt + n * cost <= window (the
 * debt of an empty bucket, burst * cost). Taking permits is one CAS on tat;
 * refusing them is one load. Nothing else is written, so nothing needs a
 * lock, and the refill is exact because it is only ever computed, never
 * accumulated.
 *
 * Time units. Clock time is integer nanoseconds, but a permit interval
 * (1e9 / rate ns) often is not: at 3 permits per second it is 333333333.3
 * ns. So the word counts time in units of 1/q ns, with q (1..64) the
 * smallest that makes the interval a whole number of units (q = 3 at rate
 * 3: cost = 1e9 units); rates whose interval has no such q round the cost
 * up at q = 64 (never more permits than the rate). Times are measured from
 * the limiter's creation and kept modulo 2^64: only differences between tat
 * and now are used, read as signed numbers, which are exact as long as the
 * limiter is not left untouched for 2^63 units (at q = 64, four years).
 * A difference beyond DEBT_MAX is read as "long ago": a full bucket. For
 * longer silences, last_write_ns keeps the clock time of a recent write
 * (refreshed at most every few seconds, so the hot path only reads it):
 * once no write happened for longer than any debt can last, the bucket is
 * full whatever tat says.
 *
 * Waiting. A blocking acquire or a reserve takes its permits at once even
 * when they are not yet due: the debt may then exceed window, by at most
 * the wait the caller allows. The permits are due when the debt has fallen
 * back to window; the caller sleeps (or sets a timer) until then. Later
 * callers see the larger debt and queue behind, so waiters are served in
 * the order they asked, with no thundering herd.
 *
 * Clock reads. A decision reads the clock once. The precise monotonic clock
 * costs about 25 ns here, more than the whole budget of try_acquire, while
 * the coarse one costs 3-6 ns but lags by up to its resolution (4 ms
 * here). A lagging clock only delays refills; it never hands out more than
 * burst + rate * (elapsed time + resolution). It loses no rate as long as
 * the permits released in one coarse tick fit in the bucket beside the one
 * being taken, so each limiter picks, once, at creation: the coarse clock
 * when 2 * rate * resolution <= burst - 1, the precise clock otherwise
 * (high rates, small bursts). A manual clock is exact either way.
 *
 * Shared (config field shared): tat and last_write_ns live in a
 * shared-memory segment (shm.h, kind RATELIMIT) that every process opening
 * the name maps, and the limiter points at them instead of at its own. A
 * decision is then the same loads and one CAS on a word in the mapping, so
 * the bucket's promise holds for all the processes together. Units count
 * from the clock's zero (epoch 0) rather than from this limiter's
 * creation, so every process reads tat alike; the rate and burst are the
 * segment's parameters, and other values are PF_EEXIST. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "puffinflow/error.h"
#include "puffinflow/ratelimit.h"
#include "puffinflow/shared.h"
#include "puffinflow/sync.h"

#include "clock_impl.h"
#include "mem.h"
#include "shm.h"
#include "timeutil.h"
#include "wait.h"

#define MAX_Q 64
#define WINDOW_MAX (UINT64_C(1) << 61)
#define DEBT_MAX (UINT64_C(1) << 62)
#define TOUCH_NS (INT64_C(1) << 32) /* about 4.3 s */

/* tat, last_write_ns and the counters are atomics (the counters relaxed:
 * each only counts). Everything else is immutable after pf_ratelimit_new. */
typedef struct bucket {
    _Atomic uint64_t tat;
    _Atomic int64_t last_write_ns; /* clock time of a recent write to tat,
                                      at most TOUCH_NS old at the write */
} bucket_t;

/* A shared limiter's segment body: the bucket on a cache line of its own. */
typedef struct shared_body {
    _Alignas(64) bucket_t bucket;
} shared_body_t;

/* The fixed parameters of a shared limiter, in the segment's header: a
 * process with others gets PF_EEXIST. */
typedef struct shared_params {
    double rate;
    uint32_t burst;
    uint32_t layout; /* of shared_body_t: 1 */
    uint64_t q;
    uint64_t cost;
} shared_params_t;

struct pf_ratelimit {
    bucket_t *b; /* &own, or the shared segment's */
    _Atomic uint64_t acquired;
    _Atomic uint64_t rejected;
    _Atomic uint64_t waited;
    _Atomic uint64_t refunded;

    uint64_t q;       /* time units per nanosecond */
    uint64_t cost;    /* units per permit */
    uint64_t window;  /* burst * cost: the debt of an empty bucket */
    int64_t epoch;    /* clock time (ns) of unit 0 */
    int64_t stale_ns; /* no write for longer: all debt is paid */
    bool coarse;      /* decisions read the coarse clock */
    const pf_clock_t *clock;
    double rate;
    unsigned burst;
    char *name;
    pf_ratelimit_listener_fn listener;
    void *listener_arg;
    bucket_t own;
    pf__shm_t shm; /* shared: the segment (map NULL otherwise) */
    pf_sync_t sync; /* the store's hook (copied; all NULL = none) */
};

/* The clock read of every decision (see the top of the file). */
static inline int64_t
read_now(const pf_ratelimit_t *rl)
{
    return rl->coarse ? pf__clock_now_coarse_ns(rl->clock)
                      : pf_clock_now_ns(rl->clock);
}

void
pf_ratelimit_config_init(pf_ratelimit_config_t *cfg)
{
    if (cfg == NULL) {
        return;
    }
    cfg->name = "default";
    cfg->rate = 10.0;
    cfg->burst = 10;
    cfg->clock = NULL;
    cfg->listener = NULL;
    cfg->listener_arg = NULL;
    cfg->shared = NULL;
    cfg->sync = NULL;
}

/* The smallest q (units per ns) that makes the permit interval a whole
 * number of units, and that number; q = MAX_Q rounded up when none does.
 * Returns PF_EINVAL when the interval cannot be counted at all. */
static int
rate_units(double rate, uint64_t *q, uint64_t *cost)
{
    double interval = 1e9 / rate; /* ns per permit, >= 1 */
    uint64_t k;

    if (interval * MAX_Q >= (double)WINDOW_MAX) {
        if (interval >= (double)WINDOW_MAX) {
            return PF_EINVAL;
        }
        *q = 1; /* a huge interval: whole nanoseconds are fine enough */
        *cost = (uint64_t)ceil(interval);
        return 0;
    }
    for (k = 1; k <= MAX_Q; k++) {
        double x = interval * (double)k;
        double r = round(x);

        /* Relative tolerance for the rounding of 1e9 / rate itself: at
         * rate 3, interval * 3 may come out as 999999999.99999994. */
        if (r >= 1.0 && fabs(x - r) <= x * 1e-12) {
            *q = k;
            *cost = (uint64_t)r;
            return 0;
        }
    }
    *q = MAX_Q;
    *cost = (uint64_t)ceil(interval * MAX_Q);
    return 0;
}

/* The coarse clock is good enough when one tick's refill fits in the
 * bucket beside the permit being taken (see the top of the file). */
static bool
coarse_is_enough(const pf_clock_t *clock, double rate, unsigned burst)
{
    struct timespec res;
    double res_s;

    if (pf_clock_is_manual(clock)) {
        return false; /* exact either way; report it as precise */
    }
    if (clock_getres(CLOCK_MONOTONIC_COARSE, &res) != 0) {
        return false;
    }
    res_s = (double)res.tv_sec + (double)res.tv_nsec / 1e9;
    return 2.0 * rate * res_s <= (double)burst - 1.0;
}

/* Fill a new segment's body: a full bucket (tat 0 is long past on units
 * counted from the clock's zero). Runs in the creator before any other
 * process can see the segment. */
static void
shared_init(void *body, void *arg)
{
    shared_body_t *sb = body;
    const int64_t *now = arg;

    atomic_init(&sb->bucket.tat, 0);
    atomic_init(&sb->bucket.last_write_ns, *now);
}

/* Open (or create) the segment of a shared limiter and point rl's bucket
 * at it. Errors as pf__shm_open. */
static int
open_shared(pf_ratelimit_t *rl, const pf_shared_config_t *sc)
{
    shared_params_t params;
    pf__shm_spec_t spec;
    shared_body_t *sb;
    int64_t now = read_now(rl);
    int64_t w;
    int rc;

    memset(&params, 0, sizeof(params));
    params.rate = rl->rate;
    params.burst = rl->burst;
    params.layout = 1;
    params.q = rl->q;
    params.cost = rl->cost;
    memset(&spec, 0, sizeof(spec));
    spec.dir = sc->dir;
    spec.name = sc->name;
    spec.mode = sc->mode;
    spec.kind = PF__SHM_KIND_RATELIMIT;
    spec.body_size = (uint32_t)sizeof(shared_body_t);
    spec.params = &params;
    spec.params_len = sizeof(params);
    spec.init = shared_init;
    spec.arg = &now;
    rc = pf__shm_open(&spec, &rl->shm);
    if (rc != 0) {
        return rc;
    }
    sb = rl->shm.body;
    rl->b = &sb->bucket;
    /* A last write far in the clock's future means the clock started
     * again (a reboot, with the segment in a folder that kept it): the
     * stored times mean nothing now, so start from a full bucket. */
    w = atomic_load_explicit(&rl->b->last_write_ns, memory_order_relaxed);
    if (w - now > TOUCH_NS) {
        atomic_store_explicit(&rl->b->last_write_ns, now,
                              memory_order_relaxed);
        atomic_store_explicit(&rl->b->tat, (uint64_t)now * rl->q,
                              memory_order_release);
    }
    return 0;
}

int
pf_ratelimit_new(const pf_ratelimit_config_t *cfg, pf_ratelimit_t **out)
{
    pf_ratelimit_t *rl;
    uint64_t q;
    uint64_t cost;

    if (cfg == NULL || out == NULL || cfg->name == NULL || cfg->burst == 0) {
        return PF_EINVAL;
    }
    /* Written so that NaN fails too; infinity is above the maximum. */
    if (!(cfg->rate > 0.0 && cfg->rate <= PF_RATELIMIT_MAX_RATE)) {
        return PF_EINVAL;
    }
    if (rate_units(cfg->rate, &q, &cost) != 0 ||
        cost > WINDOW_MAX / cfg->burst) {
        return PF_EINVAL;
    }
    if (cfg->shared != NULL && cfg->sync != NULL) {
        return PF_EINVAL;
    }
    if (cfg->shared != NULL) {
        char path[8];

        /* A name the store accepts (a short buffer only tests it). */
        if (pf__shm_path(cfg->shared->dir, cfg->shared->name, path,
                         sizeof(path)) == PF_EINVAL ||
            (cfg->shared->mode & ~0666u) != 0) {
            return PF_EINVAL;
        }
    }
    rl = pf__calloc(1, sizeof(*rl));
    if (rl == NULL) {
        return PF_ENOMEM;
    }
    rl->name = pf__strdup(cfg->name);
    if (rl->name == NULL) {
        pf__free(rl);
        return PF_ENOMEM;
    }
    rl->clock = pf__clock_norm(cfg->clock);
    rl->q = q;
    rl->cost = cost;
    rl->window = cost * cfg->burst;
    rl->rate = cfg->rate;
    rl->burst = cfg->burst;
    rl->listener = cfg->listener;
    rl->listener_arg = cfg->listener_arg;
    if (cfg->sync != NULL) {
        rl->sync = *cfg->sync;
    }
    rl->coarse = coarse_is_enough(rl->clock, cfg->rate, cfg->burst);
    /* Unit 0 is now and tat = 0: no debt, the bucket starts full. Read
     * with the clock decisions will use: the coarse clock lags the precise
     * one, and an epoch ahead of later reads would start the bucket in
     * debt. */
    rl->epoch = read_now(rl);
    rl->b = &rl->own;
    atomic_init(&rl->own.tat, 0);
    atomic_init(&rl->own.last_write_ns, rl->epoch);
    /* No debt outlives DEBT_MAX units after the write that made it, and
     * last_write_ns lags the last write by less than TOUCH_NS. */
    rl->stale_ns = (int64_t)(DEBT_MAX / q) + 2 * TOUCH_NS;
    if (cfg->shared != NULL) {
        int rc;

        rl->epoch = 0; /* every process counts units alike */
        rc = open_shared(rl, cfg->shared);
        if (rc != 0) {
            pf__free(rl->name);
            pf__free(rl);
            return rc;
        }
    }
    *out = rl;
    return 0;
}

void
pf_ratelimit_free(pf_ratelimit_t *rl)
{
    if (rl == NULL) {
        return;
    }
    if (rl->sync.detach != NULL) {
        rl->sync.detach(rl->sync.arg);
    }
    pf__shm_close(&rl->shm);
    pf__free(rl->name);
    pf__free(rl);
}

const char *
pf_ratelimit_name(const pf_ratelimit_t *rl)
{
    return rl == NULL ? NULL : rl->name;
}

/* ---- the bucket ---------------------------------------------------------- */

/* Clock time as units since the epoch, modulo 2^64 (unsigned arithmetic:
 * wrapping is defined and differences stay right). */
static inline uint64_t
to_units(const pf_ratelimit_t *rl, int64_t now)
{
    return ((uint64_t)now - (uint64_t)rl->epoch) * rl->q;
}

/* The debt at time now (nu in units) given tat t. 0 for a full bucket: t in
 * the past, or so far from nu that it can only be a past time seen modulo
 * 2^64, or nothing written for so long (see last_write_ns) that any debt
 * has been paid back. last_write_ns is read after t: with t loaded by
 * acquire, a fresh t always comes with its fresh write time. */
static inline uint64_t
debt_now(const pf_ratelimit_t *rl, uint64_t t, uint64_t nu, int64_t now)
{
    int64_t d = (int64_t)(t - nu);
    int64_t w = atomic_load_explicit(&rl->b->last_write_ns, memory_order_relaxed);

    if (d <= 0 || (uint64_t)d > DEBT_MAX || now - w > rl->stale_ns) {
        return 0;
    }
    return (uint64_t)d;
}

/* Before writing tat: note the time, at most every TOUCH_NS. Stored before
 * the CAS that publishes the new tat (release), so whoever sees that tat
 * sees this time. A thread whose CAS then fails has stored a time while
 * someone else's CAS succeeded, which wrote a fresh tat: still true. */
static inline void
touch(pf_ratelimit_t *rl, int64_t now)
{
    int64_t w = atomic_load_explicit(&rl->b->last_write_ns, memory_order_relaxed);

    if (now - w > TOUCH_NS) {
        atomic_store_explicit(&rl->b->last_write_ns, now, memory_order_relaxed);
    }
}

/* Take n permits at time now if the debt after taking them exceeds window
 * by at most allow units. Stores in *over by how much it does (0 = the
 * permits are there now; otherwise how long until they are due), or on
 * refusal by how much it would have. The CAS makes each decision on the
 * latest tat; acquire/release only carry last_write_ns along with it. */
static inline bool
take(pf_ratelimit_t *rl, unsigned n, int64_t now, uint64_t allow,
     uint64_t *over)
{
    uint64_t nu;
    uint64_t t;
    uint64_t need = (uint64_t)n * rl->cost;

    if (rl->sync.take != NULL) {
        /* A store's share decides (never waiting) unless it cannot. */
        int r = rl->sync.take(rl->sync.arg, n);

        if (r != PF_SYNC_LOCAL) {
            *over = r == PF_SYNC_GRANT ? 0 : need;
            return r == PF_SYNC_GRANT;
        }
        allow = 0;
    }
    nu = to_units(rl, now);
    t = atomic_load_explicit(&rl->b->tat, memory_order_acquire);
    for (;;) {
        uint64_t debt = debt_now(rl, t, nu, now) + need;

        if (debt > rl->window + allow) {
            *over = debt - rl->window;
            return false;
        }
        touch(rl, now);
        if (atomic_compare_exchange_weak_explicit(&rl->b->tat, &t, nu + debt,
                                                  memory_order_release,
                                                  memory_order_acquire)) {
            *over = debt > rl->window ? debt - rl->window : 0;
            return true;
        }
    }
}

/* Units to whole nanoseconds, rounding up: the permits are due at the
 * first nanosecond at or after their exact time. */
static inline int64_t
units_to_ns(const pf_ratelimit_t *rl, uint64_t u)
{
    return (int64_t)((u + rl->q - 1) / rl->q);
}

/* The debt a wait of ns may add beyond window, capped so that tat stays
 * within DEBT_MAX of now. */
static uint64_t
allow_units(const pf_ratelimit_t *rl, int64_t ns)
{
    uint64_t cap = DEBT_MAX - rl->window;

    if (ns <= 0) {
        return 0;
    }
    if ((uint64_t)ns >= cap / rl->q) {
        return cap;
    }
    return (uint64_t)ns * rl->q;
}

static bool
n_ok(const pf_ratelimit_t *rl, unsigned n)
{
    return n >= 1 && n <= rl->burst;
}

static void
reject(pf_ratelimit_t *rl, unsigned n, uint64_t over)
{
    atomic_fetch_add_explicit(&rl->rejected, 1, memory_order_relaxed);
    if (rl->listener != NULL) {
        pf_ratelimit_event_t ev;

        ev.kind = PF_RATELIMIT_REJECTED;
        ev.name = rl->name;
        ev.requested = n;
        ev.wait_ns = units_to_ns(rl, over);
        rl->listener(&ev, rl->listener_arg);
    }
}

int
pf_ratelimit_try_acquire(pf_ratelimit_t *rl, unsigned n)
{
    uint64_t over;

    if (rl == NULL || !n_ok(rl, n)) {
        return PF_EINVAL;
    }
    if (take(rl, n, read_now(rl), 0, &over)) {
        atomic_fetch_add_explicit(&rl->acquired, n, memory_order_relaxed);
        return 0;
    }
    reject(rl, n, over);
    return PF_ERATELIMIT;
}

void
pf_ratelimit_refund(pf_ratelimit_t *rl, unsigned n)
{
    int64_t now;
    uint64_t nu;
    uint64_t t;
    uint64_t give;

    if (rl == NULL || n == 0) {
        return;
    }
    if (rl->sync.give != NULL) {
        rl->sync.give(rl->sync.arg, n);
    }
    now = read_now(rl);
    nu = to_units(rl, now);
    give = n > DEBT_MAX / rl->cost ? DEBT_MAX : (uint64_t)n * rl->cost;
    t = atomic_load_explicit(&rl->b->tat, memory_order_acquire);
    for (;;) {
        uint64_t debt = debt_now(rl, t, nu, now);

        debt = debt > give ? debt - give : 0;
        touch(rl, now);
        if (atomic_compare_exchange_weak_explicit(&rl->b->tat, &t, nu + debt,
                                                  memory_order_release,
                                                  memory_order_acquire)) {
            break;
        }
    }
    atomic_fetch_add_explicit(&rl->refunded, n, memory_order_relaxed);
}

int64_t
pf_ratelimit_time_until_ns(pf_ratelimit_t *rl, unsigned n)
{
    int64_t now;
    uint64_t debt;

    if (rl == NULL || !n_ok(rl, n)) {
        return INT64_MAX;
    }
    now = read_now(rl);
    debt = debt_now(rl, atomic_load_explicit(&rl->b->tat, memory_order_acquire),
                    to_units(rl, now), now) +
           (uint64_t)n * rl->cost;
    return debt <= rl->window ? 0 : units_to_ns(rl, debt - rl->window);
}

double
pf_ratelimit_time_until(pf_ratelimit_t *rl, unsigned n)
{
    return pf__ns_to_secs(pf_ratelimit_time_until_ns(rl, n));
}

int
pf_ratelimit_reserve(pf_ratelimit_t *rl, unsigned n, double max_wait,
                     int64_t *wait_ns)
{
    int64_t max_ns;
    uint64_t over;

    if (rl == NULL || wait_ns == NULL || !n_ok(rl, n) ||
        pf__secs_to_ns(max_wait, &max_ns) != 0) {
        return PF_EINVAL;
    }
    if (!take(rl, n, read_now(rl), allow_units(rl, max_ns), &over)) {
        reject(rl, n, over);
        return PF_ERATELIMIT;
    }
    atomic_fetch_add_explicit(&rl->acquired, n, memory_order_relaxed);
    if (over > 0) {
        atomic_fetch_add_explicit(&rl->waited, 1, memory_order_relaxed);
    }
    *wait_ns = units_to_ns(rl, over);
    return 0;
}

/* ---- blocking acquire -----------------------------------------------------
 */

/* Sleep until the reserved permits are due at `due`. Returns 0, or
 * PF_ECANCELED / PF_ETIMEDOUT (the token's own deadline, which can only
 * come first through rounding between clocks) after giving them back. */
static int
sleep_until_due(pf_ratelimit_t *rl, unsigned n, int64_t due, pf_token_t *tok)
{
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv;
    int rc;

    rc = pf__cond_init(&cv);
    if (rc != 0) {
        pf_ratelimit_refund(rl, n);
        return rc;
    }
    pthread_mutex_lock(&mu);
    for (;;) {
        int wr = pf__wait_until(&cv, &mu, rl->clock, due, tok);

        if (wr == PF_ECANCELED) {
            rc = PF_ECANCELED;
            break;
        }
        if (pf_clock_now_ns(rl->clock) >= due) {
            rc = 0;
            break;
        }
        if (wr == PF_ETIMEDOUT) {
            rc = PF_ETIMEDOUT;
            break;
        }
    }
    pthread_mutex_unlock(&mu);
    pthread_cond_destroy(&cv);
    pthread_mutex_destroy(&mu);
    if (rc != 0) {
        pf_ratelimit_refund(rl, n);
    }
    return rc;
}

int
pf_ratelimit_acquire_until(pf_ratelimit_t *rl, unsigned n, double timeout,
                           const pf_deadline_t *deadline, pf_token_t *tok)
{
    int64_t timeout_ns;
    int64_t now;
    int64_t caller_dl;
    int64_t tok_dl;
    int64_t caller_room;
    uint64_t over;

    if (rl == NULL || !n_ok(rl, n) ||
        pf__secs_to_ns(timeout, &timeout_ns) != 0) {
        return PF_EINVAL;
    }
    if (pf_token_is_cancelled(tok)) {
        return PF_ECANCELED;
    }
    now = read_now(rl);
    caller_dl = pf__deadline_on(deadline, rl->clock, now);
    tok_dl = pf__token_deadline_on(tok, rl->clock);
    if (tok_dl < caller_dl) {
        caller_dl = tok_dl;
    }
    caller_room =
        caller_dl == PF_DEADLINE_NEVER_NS ? INT64_MAX : caller_dl - now;
    if (!take(rl, n, now,
              allow_units(rl,
                          timeout_ns < caller_room ? timeout_ns : caller_room),
              &over)) {
        if (caller_room < timeout_ns) {
            return PF_ETIMEDOUT;
        }
        reject(rl, n, over);
        return PF_ERATELIMIT;
    }
    atomic_fetch_add_explicit(&rl->acquired, n, memory_order_relaxed);
    if (over == 0) {
        return 0;
    }
    atomic_fetch_add_explicit(&rl->waited, 1, memory_order_relaxed);
    return sleep_until_due(rl, n, now + units_to_ns(rl, over), tok);
}

int
pf_ratelimit_acquire(pf_ratelimit_t *rl, unsigned n, double timeout)
{
    return pf_ratelimit_acquire_until(rl, n, timeout, NULL, NULL);
}

/* ---- metrics ----------------------------------------------------------------
 */

void
pf_ratelimit_metrics(pf_ratelimit_t *rl, pf_ratelimit_metrics_t *out)
{
    int64_t now;
    uint64_t debt;

    if (rl == NULL || out == NULL) {
        return;
    }
    now = read_now(rl);
    debt = debt_now(rl, atomic_load_explicit(&rl->b->tat, memory_order_acquire),
                    to_units(rl, now), now);
    out->rate = rl->rate;
    out->burst = rl->burst;
    out->available =
        debt >= rl->window ? 0 : (unsigned)((rl->window - debt) / rl->cost);
    out->acquired = atomic_load_explicit(&rl->acquired, memory_order_relaxed);
    out->rejected = atomic_load_explicit(&rl->rejected, memory_order_relaxed);
    out->waited = atomic_load_explicit(&rl->waited, memory_order_relaxed);
    out->refunded = atomic_load_explicit(&rl->refunded, memory_order_relaxed);
    out->precise_clock = !rl->coarse;
}
