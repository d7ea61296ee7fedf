/* Fuzz numeric config fields and clock jumps: the circuit breaker,
 * bulkhead, rate limiter, retry policy and backoff, retry budget and leak
 * detector.
 *
 * The first byte picks the component; its config fields are then filled
 * from the input (doubles that are often NaN, infinite, negative, zero or
 * huge; unsigneds that are often 0, 1 or the largest). _new (or
 * _validate) must either refuse with PF_EINVAL or give an object that
 * works: the rest of the input then drives it on a manual clock moved by
 * fuzzed amounts, huge jumps included, with fuzzed call results, and the
 * component's invariants are checked after every step (a bulkhead never
 * admits past its limit, rates are percentages, delays are not negative,
 * the metrics count what was done). Any memory error, undefined behaviour
 * (a float-to-int conversion out of range, a signed overflow) or leak is a
 * crash. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "puffinflow/breaker.h"
#include "puffinflow/bulkhead.h"
#include "puffinflow/clock.h"
#include "puffinflow/error.h"
#include "puffinflow/leak.h"
#include "puffinflow/ratelimit.h"
#include "puffinflow/retry.h"

#include "fuzz_util.h"

#define MAX_STEPS 96

/* A clock jump: small, ordinary or huge (up to the clock's end). */
static void
jump(pf_clock_t *clock, fz_t *f)
{
    uint8_t shift = fz_u8(f) % 63;

    pf_clock_manual_advance(clock, (int64_t)(fz_u64(f) >> (shift + 1)));
}

/* A call's result: success, a failure, or one of the library's codes. */
static int
fz_result(fz_t *f)
{
    static const int results[] = {0, -1, 1, PF_ETIMEDOUT, PF_EOPEN,
                                  PF_ECANCELED, 0, 0};

    return results[fz_u8(f) % 8];
}

static bool
is_percent(double v)
{
    return v >= 0.0 && v <= 100.0;
}

/* ---- circuit breaker --------------------------------------------------- */

static void
check_breaker(pf_breaker_t *b, const pf_breaker_config_t *cfg)
{
    pf_breaker_metrics_t m;
    unsigned trials = cfg->half_open_max_calls != 0 ? cfg->half_open_max_calls
                                                    : cfg->success_threshold;

    pf_breaker_metrics(b, &m);
    FUZZ_CHECK(m.state == PF_BREAKER_CLOSED || m.state == PF_BREAKER_OPEN ||
                   m.state == PF_BREAKER_HALF_OPEN,
               "state %d", (int)m.state);
    FUZZ_CHECK(is_percent(m.failure_rate) && is_percent(m.slow_call_rate),
               "rates %g %g", m.failure_rate, m.slow_call_rate);
    FUZZ_CHECK(m.calls == m.successes + m.failures + m.ignored + m.rejected,
               "calls %llu != %llu + %llu + %llu + %llu",
               (unsigned long long)m.calls, (unsigned long long)m.successes,
               (unsigned long long)m.failures, (unsigned long long)m.ignored,
               (unsigned long long)m.rejected);
    FUZZ_CHECK(m.half_open_in_flight <= trials, "in flight %u of %u",
               m.half_open_in_flight, trials);
    FUZZ_CHECK(m.window_failures <= m.window_calls &&
                   m.window_slow_calls <= m.window_calls,
               "window %llu %llu %llu", (unsigned long long)m.window_calls,
               (unsigned long long)m.window_failures,
               (unsigned long long)m.window_slow_calls);
    FUZZ_CHECK(m.recovery_timeout_ns >= 0, "recovery %lld",
               (long long)m.recovery_timeout_ns);
    FUZZ_CHECK(m.state != PF_BREAKER_OPEN || m.retry_at_ns >= 0 ||
                   m.forced_open,
               "open with retry_at %lld", (long long)m.retry_at_ns);
}

static void
fuzz_breaker(fz_t *f, pf_clock_t *clock)
{
    pf_breaker_config_t cfg;
    pf_permit_t permits[4];
    pf_breaker_t *b;
    int steps = 0;
    int rc;
    int i;

    pf_breaker_config_init(&cfg);
    cfg.clock = clock;
    cfg.failure_threshold = fz_unsigned(f);
    cfg.recovery_timeout = fz_double(f);
    cfg.success_threshold = fz_unsigned(f);
    cfg.half_open_max_calls = fz_unsigned(f);
    cfg.max_wait_in_half_open = fz_double(f);
    cfg.recovery_multiplier = fz_double(f);
    cfg.max_recovery_timeout = fz_double(f);
    cfg.shadow = fz_bool(f);
    cfg.timeout = fz_double(f);
    cfg.window = (pf_breaker_window_t)(fz_u8(f) % 4);
    cfg.window_size = fz_unsigned(f);
    cfg.minimum_calls = fz_unsigned(f);
    cfg.failure_rate_threshold = fz_double(f);
    cfg.slow_call_duration = fz_double(f);
    cfg.slow_call_rate_threshold = fz_double(f);
    cfg.recovery_jitter = fz_double(f);
    cfg.jitter_seed = fz_u64(f);
    if (cfg.window == PF_BREAKER_WINDOW_COUNT && cfg.window_size > 100000) {
        return; /* legal, but the memory would slow the fuzzer down */
    }
    rc = pf_breaker_new(&cfg, &b);
    FUZZ_CHECK(rc == 0 || rc == PF_EINVAL, "breaker_new %d", rc);
    if (rc != 0) {
        return;
    }
    for (i = 0; i < 4; i++) {
        memset(&permits[i], 0, sizeof(permits[i]));
    }
    while (f->n > 0 && steps++ < MAX_STEPS) {
        uint8_t op = fz_u8(f);
        pf_permit_t *p = &permits[(op >> 4) % 4];

        switch (op % 8) {
        case 0:
        case 1:
            jump(clock, f);
            break;
        case 2:
        case 3:
            rc = pf_breaker_acquire(b, p);
            FUZZ_CHECK(rc == 0 || rc == PF_EOPEN, "acquire %d", rc);
            FUZZ_CHECK(!cfg.shadow || rc == 0, "shadow breaker rejected");
            break;
        case 4:
        case 5:
            pf_breaker_record(b, p, fz_result(f));
            break;
        case 6:
            pf_breaker_tick(b);
            break;
        default:
            switch (fz_u8(f) % 4) {
            case 0:
                pf_breaker_force_open(b);
                break;
            case 1:
                pf_breaker_force_close(b);
                break;
            case 2:
                pf_breaker_reset(b);
                break;
            default:
                pf_breaker_release(b, p);
                break;
            }
            break;
        }
        check_breaker(b, &cfg);
    }
    for (i = 0; i < 4; i++) {
        pf_breaker_record(b, &permits[i], 0);
    }
    check_breaker(b, &cfg);
    pf_breaker_free(b);
}

/* ---- bulkhead ------------------------------------------------------------ */

typedef struct bh_state {
    pf_bulkhead_t *bh;
    unsigned inside;   /* slots we hold */
    unsigned queued;   /* tickets waiting */
    uint64_t admitted; /* every grant, however made */
    pf_bulkhead_ticket_t tickets[4];
    bool waiting[4];
} bh_state_t;

static void
check_admitted(bh_state_t *s)
{
    pf_bulkhead_metrics_t m;

    pf_bulkhead_metrics(s->bh, &m);
    /* Just let in: there was a free slot under the limit. */
    FUZZ_CHECK(m.in_use <= m.max_concurrent, "admitted: in use %u of %u",
               m.in_use, m.max_concurrent);
}

static void
granted(pf_bulkhead_ticket_t *t, void *arg)
{
    bh_state_t *s = arg;
    size_t i = (size_t)(t - s->tickets);

    FUZZ_CHECK(i < 4 && s->waiting[i], "grant of a ticket not waiting");
    s->waiting[i] = false;
    s->queued--;
    s->inside++;
    s->admitted++;
    check_admitted(s);
}

static void
check_bulkhead(bh_state_t *s)
{
    pf_bulkhead_metrics_t m;

    pf_bulkhead_metrics(s->bh, &m);
    FUZZ_CHECK(m.in_use == s->inside, "in use %u, we hold %u", m.in_use,
               s->inside);
    FUZZ_CHECK(m.waiting == s->queued, "waiting %u, we queued %u", m.waiting,
               s->queued);
    FUZZ_CHECK(m.accepted == s->admitted, "accepted %llu, admitted %llu",
               (unsigned long long)m.accepted,
               (unsigned long long)s->admitted);
    FUZZ_CHECK(m.available ==
                   (m.in_use < m.max_concurrent ? m.max_concurrent - m.in_use
                                                : 0),
               "available %u, in use %u of %u", m.available, m.in_use,
               m.max_concurrent);
    FUZZ_CHECK(m.peak_in_use >= m.in_use, "peak %u < %u", m.peak_in_use,
               m.in_use);
    FUZZ_CHECK(m.max_concurrent >= 1 &&
                   m.max_concurrent <= PF_BULKHEAD_MAX_LIMIT,
               "limit %u", m.max_concurrent);
    FUZZ_CHECK(!m.adaptive || (m.max_concurrent >= m.adaptive_floor &&
                               m.max_concurrent <= m.adaptive_ceiling),
               "adaptive limit %u outside [%u, %u]", m.max_concurrent,
               m.adaptive_floor, m.adaptive_ceiling);
}

static void
fuzz_bulkhead(fz_t *f, pf_clock_t *clock)
{
    pf_bulkhead_config_t cfg;
    bh_state_t s;
    int steps = 0;
    int rc;
    int i;

    memset(&s, 0, sizeof(s));
    pf_bulkhead_config_init(&cfg);
    cfg.clock = clock;
    cfg.max_concurrent_calls = fz_unsigned(f);
    cfg.max_wait_duration = fz_double(f);
    cfg.max_queue_size = fz_unsigned(f);
    cfg.adaptive = fz_bool(f);
    cfg.adaptive_floor = fz_unsigned(f);
    cfg.adaptive_ceiling = fz_unsigned(f);
    cfg.adaptive_latency = fz_double(f);
    cfg.adaptive_backoff = fz_double(f);
    rc = pf_bulkhead_new(&cfg, &s.bh);
    FUZZ_CHECK(rc == 0 || rc == PF_EINVAL, "bulkhead_new %d", rc);
    if (rc != 0) {
        return;
    }
    while (f->n > 0 && steps++ < MAX_STEPS) {
        uint8_t op = fz_u8(f);
        size_t t = (op >> 4) % 4;
        bool entered = false;

        switch (op % 8) {
        case 0:
            jump(clock, f);
            break;
        case 1:
        case 2:
            rc = pf_bulkhead_try_enter(s.bh);
            FUZZ_CHECK(rc == 0 || rc == PF_EFULL, "try_enter %d", rc);
            if (rc == 0) {
                s.inside++;
                s.admitted++;
                check_admitted(&s);
            }
            break;
        case 3:
            if (s.inside > 0) {
                s.inside--; /* before: a waiting ticket gets it at once */
                pf_bulkhead_record(s.bh, fz_result(f),
                                   (int64_t)(fz_u64(f) >> 2));
                pf_bulkhead_leave(s.bh);
            }
            break;
        case 4:
            if (!s.waiting[t]) {
                s.waiting[t] = true; /* the grant may come before return */
                s.queued++;
                rc = pf_bulkhead_enqueue(s.bh, &s.tickets[t], PF_PRIORITY_NORMAL,
                                         granted, &s, &entered);
                FUZZ_CHECK(rc == 0 || rc == PF_EFULL, "enqueue %d", rc);
                if (rc != 0 || entered) {
                    s.waiting[t] = false;
                    s.queued--;
                }
                if (rc == 0 && entered) {
                    s.inside++;
                    s.admitted++;
                    check_admitted(&s);
                }
            }
            break;
        case 5:
            if (s.waiting[t]) {
                FUZZ_CHECK(pf_bulkhead_cancel(s.bh, &s.tickets[t],
                                              fz_bool(f) ? PF_EFULL
                                                         : PF_ECANCELED),
                           "cancel of a waiting ticket failed");
                s.waiting[t] = false;
                s.queued--;
            }
            break;
        case 6:
            rc = pf_bulkhead_set_max_concurrent(s.bh, fz_unsigned(f));
            FUZZ_CHECK(rc == 0 || rc == PF_EINVAL, "set_max %d", rc);
            break;
        default:
            if (s.inside == 0) {
                pf_bulkhead_leave(s.bh); /* detected and ignored */
            }
            break;
        }
        check_bulkhead(&s);
    }
    for (i = 0; i < 4; i++) {
        if (s.waiting[i]) {
            FUZZ_CHECK(pf_bulkhead_cancel(s.bh, &s.tickets[i], PF_ECANCELED),
                       "final cancel");
            s.waiting[i] = false;
            s.queued--;
        }
    }
    while (s.inside > 0) {
        s.inside--;
        pf_bulkhead_leave(s.bh);
    }
    check_bulkhead(&s);
    pf_bulkhead_free(s.bh);
}

/* ---- rate limiter -------------------------------------------------------- */

static void
fuzz_ratelimit(fz_t *f, pf_clock_t *clock)
{
    pf_ratelimit_config_t cfg;
    pf_ratelimit_metrics_t m;
    pf_ratelimit_t *rl;
    uint64_t acquired = 0;
    int steps = 0;
    int rc;

    pf_ratelimit_config_init(&cfg);
    cfg.clock = clock;
    cfg.rate = fz_double(f);
    cfg.burst = fz_unsigned(f);
    rc = pf_ratelimit_new(&cfg, &rl);
    FUZZ_CHECK(rc == 0 || rc == PF_EINVAL, "ratelimit_new %d", rc);
    if (rc != 0) {
        return;
    }
    while (f->n > 0 && steps++ < MAX_STEPS) {
        uint8_t op = fz_u8(f);
        unsigned n = fz_unsigned(f);
        int64_t wait = -1;
        int64_t until;

        switch (op % 5) {
        case 0:
            jump(clock, f);
            break;
        case 1:
            rc = pf_ratelimit_try_acquire(rl, n);
            FUZZ_CHECK(rc == 0 || rc == PF_ERATELIMIT || rc == PF_EINVAL,
                       "try_acquire %d", rc);
            FUZZ_CHECK(rc != PF_EINVAL || n == 0 || n > cfg.burst,
                       "try_acquire(%u) refused as invalid", n);
            acquired += rc == 0 ? n : 0;
            break;
        case 2:
            until = pf_ratelimit_time_until_ns(rl, n);
            FUZZ_CHECK(until >= 0, "time_until %lld", (long long)until);
            if (until != INT64_MAX && n > 0 &&
                until < INT64_MAX - 1 - pf_clock_now_ns(clock)) {
                /* The promise: that long from now, n are there (if the
                 * clock, which saturates, can get there). */
                pf_clock_manual_advance(clock, until);
                rc = pf_ratelimit_try_acquire(rl, n);
                FUZZ_CHECK(rc == 0,
                           "%u permits not there %lld ns after "
                           "time_until said so: %d (rate %.17g, burst %u)",
                           n, (long long)until, rc, cfg.rate, cfg.burst);
                acquired += n;
            }
            break;
        case 3:
            rc = pf_ratelimit_reserve(rl, n, fz_double(f), &wait);
            FUZZ_CHECK(rc == 0 || rc == PF_ERATELIMIT || rc == PF_EINVAL,
                       "reserve %d", rc);
            FUZZ_CHECK(rc != 0 || wait >= 0, "reserve wait %lld",
                       (long long)wait);
            acquired += rc == 0 ? n : 0;
            break;
        default:
            pf_ratelimit_refund(rl, n);
            break;
        }
        pf_ratelimit_metrics(rl, &m);
        FUZZ_CHECK(m.available <= m.burst, "available %u of %u", m.available,
                   m.burst);
        FUZZ_CHECK(m.acquired == acquired, "acquired %llu, took %llu",
                   (unsigned long long)m.acquired,
                   (unsigned long long)acquired);
    }
    pf_ratelimit_free(rl);
}

/* ---- retry policy, backoff and budget ------------------------------------ */

static void
fuzz_backoff(fz_t *f, const pf_backoff_t *b)
{
    uint64_t rng = fz_u64(f);
    unsigned attempt = fz_unsigned(f);
    double d1 = pf_exponential_backoff(b, attempt, &rng);
    double d2 = pf_exponential_backoff(b, attempt, NULL);
    double d3 = pf_backoff_next(b, attempt, fz_double(f), &rng);

    FUZZ_CHECK(d1 >= 0.0 && d1 <= b->max_delay && d2 >= 0.0 &&
                   d2 <= b->max_delay && d3 >= 0.0 && d3 <= b->max_delay,
               "delays %g %g %g, max %g (initial %g x %g, jitter %d, "
               "attempt %u)",
               d1, d2, d3, b->max_delay, b->initial_delay, b->multiplier,
               (int)b->jitter, attempt);
    FUZZ_CHECK(d1 <= d2, "a draw %g above the largest %g", d1, d2);
}

/* now + step, held below 2^62. */
static int64_t
clamp_time(int64_t now, int64_t step)
{
    const int64_t end = INT64_C(1) << 62;

    return step >= end - now ? end : now + step;
}

static void
fuzz_retry(fz_t *f, pf_clock_t *clock)
{
    pf_retry_policy_t p;
    pf_backoff_t b;
    pf_retry_state_t st;
    pf_retry_result_t res;
    int64_t now = 0;
    int64_t delay;
    int rc;

    pf_retry_policy_init(&p);
    p.clock = clock;
    p.max_retries = fz_unsigned(f) % 1000;
    pf_backoff_init(&b);
    b.initial_delay = fz_double(f);
    b.multiplier = fz_double(f);
    b.max_delay = fz_double(f);
    b.jitter = (pf_jitter_t)(fz_u8(f) % 5);
    p.backoff = &b;
    p.max_elapsed = fz_double(f);
    p.seed = fz_u64(f);
    rc = pf_backoff_validate(&b);
    FUZZ_CHECK(rc == 0 || rc == PF_EINVAL, "backoff_validate %d", rc);
    if (rc == 0) {
        fuzz_backoff(f, &b);
    }
    rc = pf_retry_policy_validate(&p);
    FUZZ_CHECK(rc == 0 || rc == PF_EINVAL, "policy_validate %d", rc);
    if (rc != 0) {
        return;
    }
    rc = pf_retry_start(&p, &st, now);
    FUZZ_CHECK(rc == 0, "retry_start %d", rc);
    for (;;) {
        int result = fz_result(f);

        /* Time moves by what the attempt took, then by the delay; both
         * stay far from overflowing the clock. */
        now = clamp_time(now, (int64_t)(fz_u64(f) >> (fz_u8(f) % 62 + 2)));
        delay = -1;
        if (!pf_retry_next(&p, &st, result, now, &delay)) {
            break;
        }
        FUZZ_CHECK(delay >= 0, "delay %lld", (long long)delay);
        now = clamp_time(now, delay);
    }
    pf_retry_state_result(&st, &res);
    FUZZ_CHECK(res.attempts >= 1 && res.attempts <= p.max_retries + 1,
               "attempts %u of %u retries", res.attempts, p.max_retries);
    FUZZ_CHECK(res.stop != PF_RETRY_STOP_NONE && res.delayed >= 0.0,
               "stop %d, delayed %g", (int)res.stop, res.delayed);
}

static void
fuzz_budget(fz_t *f, pf_clock_t *clock)
{
    pf_retry_budget_config_t cfg;
    pf_retry_budget_metrics_t m;
    pf_retry_budget_t *b;
    int steps = 0;
    int rc;

    pf_retry_budget_config_init(&cfg);
    cfg.clock = clock;
    cfg.ratio = fz_double(f);
    cfg.min_retries_per_sec = fz_double(f);
    cfg.window = fz_double(f);
    rc = pf_retry_budget_new(&cfg, &b);
    FUZZ_CHECK(rc == 0 || rc == PF_EINVAL, "budget_new %d", rc);
    if (rc != 0) {
        return;
    }
    while (f->n > 0 && steps++ < MAX_STEPS) {
        switch (fz_u8(f) % 3) {
        case 0:
            jump(clock, f);
            break;
        case 1:
            pf_retry_budget_deposit(b);
            break;
        default:
            rc = pf_retry_budget_try_withdraw(b);
            FUZZ_CHECK(rc == 0 || rc == PF_EBUDGET, "withdraw %d", rc);
            break;
        }
        pf_retry_budget_metrics(b, &m);
        FUZZ_CHECK(m.window_calls <= m.calls && m.window_retries <= m.retries,
                   "window %llu/%llu, total %llu/%llu",
                   (unsigned long long)m.window_calls,
                   (unsigned long long)m.window_retries,
                   (unsigned long long)m.calls,
                   (unsigned long long)m.retries);
    }
    pf_retry_budget_free(b);
}

/* ---- leak detector ------------------------------------------------------- */

static int
fuzzed_sample(int pid, pf_leak_sample_t *out, void *arg)
{
    fz_t *f = arg;

    (void)pid;
    if (fz_u8(f) == 0xff) {
        return PF_ENOTFOUND;
    }
    out->rss_bytes = (int64_t)(fz_u64(f) >> 1);
    out->memory_limit_bytes = (int64_t)(fz_u64(f) >> 1);
    out->threads = (int64_t)(fz_u64(f) >> 1);
    out->open_fds = (int64_t)(fz_u64(f) >> 1);
    out->fd_limit = (int64_t)(fz_u64(f) >> 1);
    /* Up to INT64_MAX each: tcp + udp must saturate, not overflow. */
    out->tcp = (int64_t)(fz_u64(f) >> 1);
    out->udp = (int64_t)(fz_u64(f) >> 1);
    return 0;
}

static void
fuzz_leak(fz_t *f, pf_clock_t *clock)
{
    static const char *const names[] = {"a", "b", "c"};
    pf_leak_config_t cfg;
    pf_leak_detector_t *d;
    pf_leak_metrics_t m;
    pf_leak_report_t rep;
    pf_leak_resources_t res;
    int steps = 0;
    int rc;

    pf_leak_config_init(&cfg);
    cfg.clock = clock;
    cfg.check_interval = fz_double(f);
    cfg.memory_threshold = fz_double(f);
    cfg.file_handle_threshold = fz_unsigned(f);
    cfg.connection_threshold = fz_unsigned(f);
    cfg.leak_threshold = fz_double(f);
    cfg.hysteresis = fz_double(f);
    cfg.trend_window = fz_unsigned(f);
    cfg.trend_memory_slope = fz_double(f);
    cfg.trend_fd_slope = fz_double(f);
    cfg.leak_history = fz_unsigned(f);
    cfg.pid = (int)fz_u32(f);
    cfg.sample = fuzzed_sample;
    cfg.sample_arg = f;
    rc = pf_leak_detector_new(&cfg, &d);
    FUZZ_CHECK(rc == 0 || rc == PF_EINVAL, "leak_new %d", rc);
    if (rc != 0) {
        return;
    }
    while (f->n > 0 && steps++ < MAX_STEPS) {
        uint8_t op = fz_u8(f);

        switch (op % 4) {
        case 0:
            jump(clock, f);
            break;
        case 1:
            res.cpu_units = fz_double(f);
            res.memory_mb = fz_double(f);
            res.io_weight = fz_double(f);
            res.network_weight = fz_double(f);
            res.gpu_units = fz_double(f);
            rc = pf_leak_detector_track_allocation_ex(
                d, names[(op >> 4) % 3], names[(op >> 6) % 3], op >> 7,
                &res);
            FUZZ_CHECK(rc == 0 || rc == PF_EINVAL, "track %d", rc);
            break;
        case 2:
            rc = pf_leak_detector_track_release_ex(
                d, names[(op >> 4) % 3], names[(op >> 6) % 3], op >> 7);
            FUZZ_CHECK(rc == 0 || rc == PF_ENOTFOUND, "release %d", rc);
            break;
        default:
            rc = pf_leak_detector_check(d, &rep);
            FUZZ_CHECK(rc == 0, "check %d", rc);
            FUZZ_CHECK(rep.leaks_len <= 18, "%zu leaks of at most 18",
                       rep.leaks_len);
            FUZZ_CHECK(isnan(rep.memory_slope) || isfinite(rep.memory_slope),
                       "slope %g", rep.memory_slope);
            pf_leak_report_free(&rep);
            break;
        }
        pf_leak_detector_metrics(d, &m);
        FUZZ_CHECK(m.history_len <= cfg.leak_history &&
                       m.current_leaks <= m.total_allocations,
                   "history %zu of %u, leaks %llu of %llu", m.history_len,
                   cfg.leak_history, (unsigned long long)m.current_leaks,
                   (unsigned long long)m.total_allocations);
    }
    pf_leak_detector_free(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_t f = {data, size};
    pf_clock_t *clock;

    if (size > 4096) {
        return -1;
    }
    FUZZ_CHECK(pf_clock_manual_new(&clock) == 0, "clock");
    switch (fz_u8(&f) % 6) {
    case 0:
        fuzz_breaker(&f, clock);
        break;
    case 1:
        fuzz_bulkhead(&f, clock);
        break;
    case 2:
        fuzz_ratelimit(&f, clock);
        break;
    case 3:
        fuzz_retry(&f, clock);
        break;
    case 4:
        fuzz_budget(&f, clock);
        break;
    default:
        fuzz_leak(&f, clock);
        break;
    }
    pf_clock_free(clock);
    return 0;
}
