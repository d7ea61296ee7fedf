/* Model-based check of the circuit breaker: thousands of random sequences
 * of acquires, results, releases, clock advances, ticks, force_open,
 * force_close and reset, each on a randomly configured breaker (every
 * counting mode, timeouts, slow calls, expected errors, shadow mode,
 * growing and jittered open periods, stuck-trial reclaiming), checked step
 * by step against a small reference model written here from the
 * documented rules: the state, every metric, each acquire's answer, each
 * result's outcome and the listener's events must agree after every step.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "puffinflow/breaker.h"
#include "rng.h"
#include "test.h"

#define NEVER INT64_MAX
#define OTHER_ERR 22
#define MAX_PERMITS 6
#define MAX_SLOTS 3
#define MAX_RING 5
#define MAX_STEPS 150
#define MAX_EVENTS 256
#define SEQUENCES 4000

enum { K_CLOSED, K_TRIAL, K_SHADOW };

typedef struct mslot {
    uint64_t ticket; /* 0 = free */
    uint64_t epoch;
    int64_t start;
} mslot_t;

typedef struct mpermit {
    bool live;
    pf_permit_t real;
    int kind;
    uint64_t epoch;
    int64_t start;
    unsigned slot;
    uint64_t ticket;
} mpermit_t;

typedef struct tw_entry {
    int64_t sec;
    bool fail;
    bool slow;
} tw_entry_t;

typedef struct model {
    /* configuration, in nanoseconds */
    pf_breaker_window_t window;
    unsigned failure_threshold;
    unsigned success_threshold;
    unsigned half_open_max;
    unsigned size;
    unsigned minimum;
    int64_t recovery;
    int64_t max_recovery;
    int64_t max_wait;
    int64_t timeout;
    int64_t slow;
    double mult;
    double jitter;
    double rate;
    double srate;
    bool shadow;
    bool listed;
    uint64_t rng;
    /* state */
    int64_t now;
    pf_breaker_state_t state;
    bool forced;
    uint64_t epoch;
    unsigned count;
    int64_t open_until;
    int64_t cur_recovery;
    unsigned half_succ;
    mslot_t slots[MAX_SLOTS];
    unsigned trials;
    uint64_t tickets;
    uint8_t ring[MAX_RING]; /* 0 empty, 1 ok, 2 fail; | 4 slow */
    uint64_t pos;
    tw_entry_t tw[MAX_STEPS + 1];
    int ntw;
    /* metrics */
    uint64_t successes, failures, ignored, rejected, timeouts, slow_calls;
    uint64_t shadow_rejected, reclaimed, transitions, opened;
    int64_t last_failure;
    int64_t last_transition;
    int nevents;
    pf_breaker_state_t ev_from[MAX_EVENTS];
    pf_breaker_state_t ev_to[MAX_EVENTS];
} model_t;

typedef struct real_events {
    int n;
    pf_breaker_state_t from[MAX_EVENTS];
    pf_breaker_state_t to[MAX_EVENTS];
} real_events_t;

/* How often the sequences reached the interesting corners, so that the
 * test can insist the random walk really went there. */
static struct coverage {
    long opened_by_count;
    long opened_by_window[3];
    long closed_from_half_open;
    long reopened_from_half_open;
    long reclaimed;
    long stale_results;
    long stale_trials;
    long shadow_passes;
    long timeouts;
    long slow_calls;
    long ignored;
    long jittered_opens;
} cov;

/* ---- the reference model ---------------------------------------------- */

static int64_t
add_sat(int64_t a, int64_t b)
{
    return a > NEVER - b ? NEVER : a + b;
}

static void
m_publish(model_t *m, pf_breaker_state_t to, bool forced)
{
    pf_breaker_state_t from = m->state;

    m->epoch++;
    m->count = 0;
    m->state = to;
    m->forced = forced;
    if (from != to) {
        m->transitions++;
        m->last_transition = m->now;
        assert_true(m->nevents < MAX_EVENTS);
        m->ev_from[m->nevents] = from;
        m->ev_to[m->nevents] = to;
        m->nevents++;
    }
}

/* The open period: base after CLOSED, times the multiplier (capped, never
 * below base) after HALF_OPEN, then plus a random part up to jitter. */
static int64_t
m_period(model_t *m, bool grow)
{
    int64_t cur = m->recovery;

    if (grow) {
        double next = (double)m->cur_recovery * m->mult;

        cur = next >= (double)m->max_recovery ? m->max_recovery
                                              : (int64_t)next;
        if (cur < m->recovery) {
            cur = m->recovery;
        }
    }
    m->cur_recovery = cur;
    if (m->jitter > 0.0 && cur != NEVER) {
        double extra = (double)cur * m->jitter * pf__rng_double(&m->rng);

        cov.jittered_opens++;
        cur = extra >= (double)(NEVER - cur) ? NEVER : cur + (int64_t)extra;
    }
    return cur;
}

static void
m_to_open(model_t *m, bool grow, bool forced)
{
    m->open_until = forced ? NEVER : add_sat(m->now, m_period(m, grow));
    if (m->state != PF_BREAKER_OPEN) {
        m->opened++;
    }
    m_publish(m, PF_BREAKER_OPEN, forced);
}

static void
m_to_half_open(model_t *m)
{
    m->half_succ = 0;
    m_publish(m, PF_BREAKER_HALF_OPEN, false);
}

static void
m_to_closed(model_t *m)
{
    m->half_succ = 0;
    m->cur_recovery = m->recovery;
    memset(m->ring, 0, sizeof(m->ring));
    m->pos = 0;
    m->ntw = 0;
    m->open_until = NEVER;
    m_publish(m, PF_BREAKER_CLOSED, false);
}

static pf_breaker_state_t
m_effective(const model_t *m)
{
    if (m->state == PF_BREAKER_OPEN && m->now >= m->open_until) {
        return PF_BREAKER_HALF_OPEN;
    }
    return m->state;
}

static void
m_reclaim(model_t *m)
{
    for (unsigned i = 0; i < m->half_open_max; i++) {
        mslot_t *s = &m->slots[i];

        if (s->ticket == 0 || m->now - s->start <= m->max_wait) {
            continue;
        }
        s->ticket = 0;
        m->trials--;
        m->reclaimed++;
        cov.reclaimed++;
        m->failures++;
        m->last_failure = m->now;
        if (m->state == PF_BREAKER_HALF_OPEN && m->epoch == s->epoch) {
            m_to_open(m, true, false);
        }
    }
}

/* The window's totals now (time window: the last `size` seconds). */
static void
m_totals(const model_t *m, uint64_t *calls, uint64_t *fails, uint64_t *slow)
{
    *calls = *fails = *slow = 0;
    if (m->window == PF_BREAKER_WINDOW_COUNT) {
        *calls = m->pos < m->size ? m->pos : m->size;
        for (unsigned i = 0; i < m->size; i++) {
            *fails += (m->ring[i] & 2) != 0;
            *slow += (m->ring[i] & 4) != 0;
        }
    } else if (m->window == PF_BREAKER_WINDOW_TIME) {
        int64_t sec = m->now / NS_PER_SEC;

        for (int i = 0; i < m->ntw; i++) {
            if (m->tw[i].sec > sec - (int64_t)m->size) {
                (*calls)++;
                *fails += m->tw[i].fail;
                *slow += m->tw[i].slow;
            }
        }
    }
}

static bool
m_window_add(model_t *m, bool fail, bool slow)
{
    uint64_t calls;
    uint64_t fails;
    uint64_t slows;
    unsigned minimum = m->minimum;

    if (m->window == PF_BREAKER_WINDOW_COUNT) {
        m->ring[m->pos % m->size] =
            (uint8_t)((fail ? 2 : 1) | (slow ? 4 : 0));
        m->pos++;
        if (minimum > m->size) {
            minimum = m->size;
        }
    } else {
        /* A time window behaves, like a count window, as if it looked at
         * its rates at every call. */
        m->tw[m->ntw++] = (tw_entry_t){m->now / NS_PER_SEC, fail, slow};
    }
    m_totals(m, &calls, &fails, &slows);
    if (calls < minimum) {
        return false;
    }
    return (double)fails * 100.0 >= m->rate * (double)calls ||
           (m->slow != NEVER &&
            (double)slows * 100.0 >= m->srate * (double)calls);
}

/* Returns the expected rc of pf_breaker_acquire and fills *p. */
static int
m_acquire(model_t *m, mpermit_t *p)
{
    for (;;) {
        if (m->state == PF_BREAKER_CLOSED) {
            *p = (mpermit_t){true, PF_PERMIT_INIT, K_CLOSED, m->epoch,
                             m->now, 0, 0};
            return 0;
        }
        if (m->state == PF_BREAKER_OPEN) {
            if (m->now < m->open_until) {
                break;
            }
            m_to_half_open(m);
            continue;
        }
        m_reclaim(m);
        if (m->state != PF_BREAKER_HALF_OPEN) {
            continue;
        }
        if (m->trials < m->half_open_max) {
            unsigned i = 0;

            while (m->slots[i].ticket != 0) {
                i++;
            }
            m->slots[i] = (mslot_t){++m->tickets, m->epoch, m->now};
            m->trials++;
            *p = (mpermit_t){true, PF_PERMIT_INIT, K_TRIAL, m->epoch,
                             m->now, i, m->slots[i].ticket};
            return 0;
        }
        break;
    }
    if (m->shadow) {
        cov.shadow_passes++;
        m->shadow_rejected++;
        *p = (mpermit_t){true, PF_PERMIT_INIT, K_SHADOW, m->epoch, m->now, 0,
                         0};
        return 0;
    }
    m->rejected++;
    p->live = false;
    return PF_EOPEN;
}

static void
m_count(model_t *m, pf_breaker_outcome_t out, bool slow)
{
    switch (out) {
    case PF_BREAKER_OUTCOME_SUCCESS:
        m->successes++;
        break;
    case PF_BREAKER_OUTCOME_TIMEOUT:
        cov.timeouts++;
        m->timeouts++;
        m->failures++;
        m->last_failure = m->now;
        break;
    case PF_BREAKER_OUTCOME_FAILURE:
        m->failures++;
        m->last_failure = m->now;
        break;
    default:
        cov.ignored++;
        m->ignored++;
        return;
    }
    cov.slow_calls += slow;
    m->slow_calls += slow;
}

static pf_breaker_outcome_t
m_record(model_t *m, mpermit_t *p, int result)
{
    int64_t elapsed = m->now - p->start;
    pf_breaker_outcome_t out;
    bool slow;
    bool failing;

    p->live = false;
    if (m->timeout != NEVER && elapsed > m->timeout) {
        out = PF_BREAKER_OUTCOME_TIMEOUT;
    } else if (result == 0) {
        out = PF_BREAKER_OUTCOME_SUCCESS;
    } else if (!m->listed || result == CONN_ERR) {
        out = PF_BREAKER_OUTCOME_FAILURE;
    } else {
        out = PF_BREAKER_OUTCOME_IGNORED;
    }
    failing = out == PF_BREAKER_OUTCOME_FAILURE ||
              out == PF_BREAKER_OUTCOME_TIMEOUT;
    slow = m->slow != NEVER && elapsed > m->slow &&
           out != PF_BREAKER_OUTCOME_IGNORED;
    if (p->kind == K_TRIAL) {
        mslot_t *s = &m->slots[p->slot];

        if (s->ticket != p->ticket) {
            return PF_BREAKER_OUTCOME_TIMEOUT; /* reclaimed before */
        }
        s->ticket = 0;
        m->trials--;
        m_count(m, out, slow);
        if (m->state == PF_BREAKER_HALF_OPEN && m->epoch == p->epoch) {
            if (out == PF_BREAKER_OUTCOME_SUCCESS &&
                ++m->half_succ >= m->success_threshold) {
                cov.closed_from_half_open++;
                m_to_closed(m);
            } else if (failing) {
                cov.reopened_from_half_open++;
                m_to_open(m, true, false);
            }
        } else {
            cov.stale_trials++;
        }
        return out;
    }
    m_count(m, out, slow);
    if (p->kind != K_CLOSED || out == PF_BREAKER_OUTCOME_IGNORED) {
        return out;
    }
    if (p->epoch != m->epoch) {
        cov.stale_results++;
        return out;
    }
    if (m->window == PF_BREAKER_WINDOW_CONSECUTIVE) {
        if (!failing) {
            m->count = 0;
        } else if (++m->count >= m->failure_threshold) {
            cov.opened_by_count++;
            m_to_open(m, false, false);
        }
    } else if (m_window_add(m, failing, slow)) {
        cov.opened_by_window[m->window]++;
        m_to_open(m, false, false);
    }
    return out;
}

static void
m_release(model_t *m, mpermit_t *p)
{
    p->live = false;
    if (p->kind == K_TRIAL && m->slots[p->slot].ticket == p->ticket) {
        m->slots[p->slot].ticket = 0;
        m->trials--;
    }
}

static void
m_tick(model_t *m)
{
    if (m->state == PF_BREAKER_OPEN && m->now >= m->open_until) {
        m_to_half_open(m);
    }
    m_reclaim(m);
}

/* ---- random configuration --------------------------------------------- */

static const int listed_errors[] = {CONN_ERR};

static int64_t
half_secs(uint64_t *rng, uint64_t lo, uint64_t hi)
{
    return (int64_t)(lo + pf__rng_below(rng, hi - lo + 1)) * NS_PER_SEC / 2;
}

static void
random_config(uint64_t *rng, pf_breaker_config_t *cfg, model_t *m,
              pf_clock_t *clock)
{
    static const double rates[] = {20.0, 50.0, 66.6, 100.0};
    static const pf_breaker_window_t windows[] = {
        PF_BREAKER_WINDOW_CONSECUTIVE, PF_BREAKER_WINDOW_CONSECUTIVE,
        PF_BREAKER_WINDOW_COUNT, PF_BREAKER_WINDOW_TIME};

    memset(m, 0, sizeof(*m));
    pf_breaker_config_init(cfg);
    cfg->clock = clock;
    cfg->name = "model";
    cfg->failure_threshold = 1 + (unsigned)pf__rng_below(rng, 4);
    cfg->success_threshold = 1 + (unsigned)pf__rng_below(rng, 3);
    cfg->half_open_max_calls = (unsigned)pf__rng_below(rng, MAX_SLOTS + 1);
    m->recovery = pf__rng_below(rng, 10) == 0 ? 0 : half_secs(rng, 1, 8);
    cfg->recovery_timeout = (double)m->recovery / 1e9;
    switch (pf__rng_below(rng, 5)) {
    case 0:
    case 1:
        cfg->max_wait_in_half_open = 0.0;
        m->max_wait = m->recovery;
        break;
    case 2:
        cfg->max_wait_in_half_open = INFINITY;
        m->max_wait = NEVER;
        break;
    default:
        m->max_wait = half_secs(rng, 1, 10);
        cfg->max_wait_in_half_open = (double)m->max_wait / 1e9;
    }
    cfg->recovery_multiplier = 1.0 + (double)pf__rng_below(rng, 3) * 0.5;
    m->max_recovery = half_secs(rng, 4, 40);
    cfg->max_recovery_timeout = (double)m->max_recovery / 1e9;
    if (m->max_recovery < m->recovery) {
        m->max_recovery = m->recovery;
    }
    if (pf__rng_below(rng, 4) == 0) {
        cfg->recovery_jitter = 0.25 * (double)(1 + pf__rng_below(rng, 4));
        cfg->jitter_seed = 1 + pf__rng_below(rng, 1000000);
    }
    if (pf__rng_below(rng, 5) < 2) {
        cfg->timeout = 0.0;
        m->timeout = NEVER;
    } else {
        m->timeout = half_secs(rng, 2, 8);
        cfg->timeout = (double)m->timeout / 1e9;
    }
    cfg->shadow = pf__rng_below(rng, 7) == 0;
    cfg->window = windows[pf__rng_below(rng, 4)];
    cfg->window_size = 1 + (unsigned)pf__rng_below(rng, MAX_RING);
    cfg->minimum_calls = 1 + (unsigned)pf__rng_below(rng, 6);
    cfg->failure_rate_threshold = rates[pf__rng_below(rng, 4)];
    if (pf__rng_below(rng, 2) == 0) {
        cfg->slow_call_duration = INFINITY;
        m->slow = NEVER;
    } else {
        m->slow = half_secs(rng, 1, 6);
        cfg->slow_call_duration = (double)m->slow / 1e9;
    }
    cfg->slow_call_rate_threshold = pf__rng_below(rng, 2) ? 50.0 : 100.0;
    m->listed = pf__rng_below(rng, 2) == 0;
    if (m->listed) {
        cfg->expected_errors = listed_errors;
        cfg->expected_errors_len = 1;
    }

    m->window = cfg->window;
    m->failure_threshold = cfg->failure_threshold;
    m->success_threshold = cfg->success_threshold;
    m->half_open_max = cfg->half_open_max_calls != 0
                           ? cfg->half_open_max_calls
                           : cfg->success_threshold;
    m->size = cfg->window_size;
    m->minimum = cfg->minimum_calls;
    m->mult = cfg->recovery_multiplier;
    m->jitter = cfg->recovery_jitter;
    m->rng = cfg->jitter_seed;
    m->rate = cfg->failure_rate_threshold;
    m->srate = cfg->slow_call_rate_threshold;
    m->shadow = cfg->shadow;
    if (m->window == PF_BREAKER_WINDOW_CONSECUTIVE) {
        m->slow = NEVER; /* slow calls count in window modes only */
    }
    m->now = pf_clock_now_ns(clock);
    m->state = PF_BREAKER_CLOSED;
    m->open_until = NEVER;
    m->cur_recovery = m->recovery;
    m->last_failure = -1;
    m->last_transition = -1;
}

/* ---- the comparison --------------------------------------------------- */

static void
on_change(pf_breaker_t *b, pf_breaker_state_t from, pf_breaker_state_t to,
          void *arg)
{
    real_events_t *e = arg;

    (void)b;
    assert_true(e->n < MAX_EVENTS);
    e->from[e->n] = from;
    e->to[e->n] = to;
    e->n++;
}

#define CHECK(what, got, want)                                                 \
    do {                                                                       \
        long long g_ = (long long)(got);                                       \
        long long w_ = (long long)(want);                                      \
        if (g_ != w_) {                                                        \
            fail_msg("sequence %d step %d (%s): %s is %lld, model says %lld",  \
                     seq, step, op, what, g_, w_);                             \
        }                                                                      \
    } while (0)

static void
compare(pf_breaker_t *b, const model_t *m, const real_events_t *ev, int seq,
        int step, const char *op)
{
    pf_breaker_metrics_t r;
    uint64_t calls;
    uint64_t fails;
    uint64_t slow;

    pf_breaker_metrics(b, &r);
    CHECK("state", pf_breaker_state(b), m_effective(m));
    CHECK("metrics.state", r.state, m_effective(m));
    CHECK("successes", r.successes, m->successes);
    CHECK("failures", r.failures, m->failures);
    CHECK("ignored", r.ignored, m->ignored);
    CHECK("rejected", r.rejected, m->rejected);
    CHECK("calls", r.calls,
          m->successes + m->failures + m->ignored + m->rejected);
    CHECK("timeouts", r.timeouts, m->timeouts);
    CHECK("slow_calls", r.slow_calls, m->slow_calls);
    CHECK("shadow_rejected", r.shadow_rejected, m->shadow_rejected);
    CHECK("reclaimed", r.reclaimed, m->reclaimed);
    CHECK("transitions", r.transitions, m->transitions);
    CHECK("times_opened", r.times_opened, m->opened);
    CHECK("half_open_in_flight", r.half_open_in_flight, m->trials);
    CHECK("half_open_successes", r.half_open_successes, m->half_succ);
    CHECK("consecutive_failures", r.consecutive_failures,
          m->state == PF_BREAKER_CLOSED ? m->count : 0);
    CHECK("last_failure_ns", r.last_failure_ns, m->last_failure);
    CHECK("last_transition_ns", r.last_transition_ns, m->last_transition);
    CHECK("forced_open", r.forced_open, m->forced);
    CHECK("recovery_timeout_ns", r.recovery_timeout_ns, m->cur_recovery);
    CHECK("retry_at_ns", r.retry_at_ns,
          m->state == PF_BREAKER_OPEN ? m->open_until : -1);
    m_totals(m, &calls, &fails, &slow);
    CHECK("window_calls", r.window_calls, calls);
    CHECK("window_failures", r.window_failures, fails);
    CHECK("window_slow_calls", r.window_slow_calls, slow);
    CHECK("events", ev->n, m->nevents);
    for (int i = 0; i < m->nevents; i++) {
        CHECK("event from", ev->from[i], m->ev_from[i]);
        CHECK("event to", ev->to[i], m->ev_to[i]);
    }
}

static void
run_sequence(pf_clock_t *clock, uint64_t seed, int seq)
{
    uint64_t rng = seed;
    pf_breaker_config_t cfg;
    pf_breaker_t *b = NULL;
    model_t *m = calloc(1, sizeof(*m));
    real_events_t *ev = calloc(1, sizeof(*ev));
    mpermit_t permits[MAX_PERMITS];

    assert_non_null(m);
    assert_non_null(ev);
    memset(permits, 0, sizeof(permits));
    random_config(&rng, &cfg, m, clock);
    cfg.listener = on_change;
    cfg.listener_arg = ev;
    assert_pf_ok(pf_breaker_new(&cfg, &b));
    for (int step = 0; step < MAX_STEPS; step++) {
        uint64_t dice = pf__rng_below(&rng, 100);
        mpermit_t *p = &permits[pf__rng_below(&rng, MAX_PERMITS)];
        const char *op;

        if (dice < 30) {
            op = "acquire";
            if (!p->live) {
                mpermit_t want;
                int rc = pf_breaker_acquire(b, &p->real);

                CHECK("acquire", rc, m_acquire(m, &want));
                if (rc == 0) {
                    pf_permit_t real = p->real;

                    *p = want;
                    p->real = real;
                    CHECK("is_trial", pf_permit_is_trial(&p->real),
                          want.kind == K_TRIAL);
                }
            }
        } else if (dice < 62) {
            static const int results[] = {0, 0, 0, CONN_ERR, CONN_ERR,
                                          OTHER_ERR};
            int r = results[pf__rng_below(&rng, 6)];

            op = "record";
            if (p->live) {
                pf_breaker_outcome_t want = m_record(m, p, r);

                CHECK("outcome", pf_breaker_record_outcome(b, &p->real, r),
                      want);
            } else {
                /* Empty, recorded or released: nothing happens. */
                CHECK("outcome of a dead permit",
                      pf_breaker_record_outcome(b, &p->real, r),
                      PF_BREAKER_OUTCOME_NONE);
            }
        } else if (dice < 82) {
            int64_t ns = (int64_t)pf__rng_below(&rng, 8) * NS_PER_SEC / 2;

            op = "advance";
            if (pf__rng_below(&rng, 20) == 0) {
                ns = (int64_t)pf__rng_below(&rng, 60) * NS_PER_SEC + 1;
            }
            pf_clock_manual_advance(clock, ns);
            m->now += ns;
        } else if (dice < 88) {
            op = "tick";
            pf_breaker_tick(b);
            m_tick(m);
        } else if (dice < 92) {
            op = "release";
            if (p->live) {
                m_release(m, p);
                pf_breaker_release(b, &p->real);
            }
        } else if (dice < 94) {
            op = "force_open";
            pf_breaker_force_open(b);
            if (!m->forced) {
                m_to_open(m, false, true);
            }
        } else if (dice < 96) {
            op = "force_close";
            pf_breaker_force_close(b);
            if (m->state != PF_BREAKER_CLOSED) {
                m_to_closed(m);
            }
        } else if (dice < 98) {
            op = "reset";
            pf_breaker_reset(b);
            m_to_closed(m);
        } else {
            op = "state";
        }
        compare(b, m, ev, seq, step, op);
    }
    pf_breaker_free(b);
    free(ev);
    free(m);
}

static void
test_breaker_matches_reference_model_on_random_sequences(void **state)
{
    pf_clock_t *clock = *state;

    memset(&cov, 0, sizeof(cov));
    for (int seq = 0; seq < SEQUENCES; seq++) {
        run_sequence(clock, 0x5eed0000u + (uint64_t)seq, seq);
    }
    /* The walk reached every corner, many times. */
    assert_true(cov.opened_by_count > 100);
    assert_true(cov.opened_by_window[PF_BREAKER_WINDOW_COUNT] > 100);
    assert_true(cov.opened_by_window[PF_BREAKER_WINDOW_TIME] > 100);
    assert_true(cov.closed_from_half_open > 100);
    assert_true(cov.reopened_from_half_open > 100);
    assert_true(cov.reclaimed > 100);
    assert_true(cov.stale_results > 100);
    assert_true(cov.stale_trials > 100);
    assert_true(cov.shadow_passes > 100);
    assert_true(cov.timeouts > 100);
    assert_true(cov.slow_calls > 100);
    assert_true(cov.ignored > 100);
    assert_true(cov.jittered_opens > 100);
}

/* The model itself must be able to tell a wrong breaker: a model with one
 * rule changed disagrees with the real breaker somewhere. */
static void
test_breaker_model_notices_a_changed_rule(void **state)
{
    pf_clock_t *clock = *state;
    pf_breaker_config_t cfg;
    pf_breaker_t *b;
    pf_permit_t p;
    model_t *m = calloc(1, sizeof(*m));
    mpermit_t mp;
    uint64_t rng = 1;

    assert_non_null(m);
    random_config(&rng, &cfg, m, clock);
    cfg.window = PF_BREAKER_WINDOW_CONSECUTIVE;
    cfg.failure_threshold = 2;
    cfg.shadow = false;
    cfg.expected_errors = NULL;
    cfg.expected_errors_len = 0;
    m->window = cfg.window;
    m->failure_threshold = 1; /* the changed rule */
    m->shadow = false;
    m->listed = false;
    assert_pf_ok(pf_breaker_new(&cfg, &b));
    assert_pf_ok(pf_breaker_acquire(b, &p));
    m_acquire(m, &mp);
    pf_breaker_record(b, &p, -1);
    m_record(m, &mp, -1);
    assert_int_not_equal(pf_breaker_state(b), m_effective(m));
    pf_breaker_free(b);
    free(m);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_breaker_matches_reference_model_on_random_sequences,
            pf_test_clock_setup, pf_test_clock_teardown),
        cmocka_unit_test_setup_teardown(
            test_breaker_model_notices_a_changed_rule, pf_test_clock_setup,
            pf_test_clock_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
