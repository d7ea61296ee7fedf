/* Costs of retries and deadlines: a backoff draw, pf_retry_call around a
 * call that succeeds at once (against calling it directly), a retry
 * decision, the retry budget, deadline checks, timeout scopes and timed
 * calls. */
#include <stdio.h>

#include "puffinflow/deadline.h"
#include "puffinflow/retry.h"
#include "puffinflow/timeout.h"

#include "harness.h"

static int
succeed(void *arg)
{
    (void)arg;
    return 0;
}

/* A pointer the compiler cannot see through, for the direct-call
 * baseline: the library also calls fn through a pointer. */
static pf_call_fn volatile g_fn = succeed;

typedef struct draw_arg {
    pf_backoff_t b;
    uint64_t rng;
} draw_arg_t;

static void
bench_backoff(void *arg, uint64_t ops)
{
    draw_arg_t *d = arg;

    for (uint64_t i = 0; i < ops; i++) {
        PF_BENCH_KEEP(pf_exponential_backoff(&d->b, (unsigned)(i & 7),
                                             &d->rng));
    }
}

static void
bench_direct_call(void *arg, uint64_t ops)
{
    for (uint64_t i = 0; i < ops; i++) {
        PF_BENCH_KEEP(g_fn(arg));
    }
}

static void
bench_retry_call(void *arg, uint64_t ops)
{
    const pf_retry_policy_t *p = arg;

    for (uint64_t i = 0; i < ops; i++) {
        PF_BENCH_KEEP(pf_retry_call(p, g_fn, NULL));
    }
}

static void
bench_retry_decision(void *arg, uint64_t ops)
{
    const pf_retry_policy_t *p = arg;
    pf_retry_state_t st;
    int64_t delay = 0;

    for (uint64_t i = 0; i < ops; i++) {
        pf_retry_start(p, &st, 0);
        PF_BENCH_KEEP(pf_retry_next(p, &st, -1, 0, &delay));
    }
    PF_BENCH_KEEP(delay);
}

static void
bench_deposit(void *arg, uint64_t ops)
{
    for (uint64_t i = 0; i < ops; i++) {
        pf_retry_budget_deposit(arg);
    }
}

static void
bench_deposit_threads(void *arg, unsigned thread, uint64_t ops)
{
    (void)thread;
    bench_deposit(arg, ops);
}

static void
bench_withdraw(void *arg, uint64_t ops)
{
    for (uint64_t i = 0; i < ops; i++) {
        PF_BENCH_KEEP(pf_retry_budget_try_withdraw(arg));
    }
}

static void
bench_expired(void *arg, uint64_t ops)
{
    const pf_deadline_t *d = arg;

    for (uint64_t i = 0; i < ops; i++) {
        PF_BENCH_KEEP(pf_deadline_expired(d));
    }
}

static void
bench_expired_coarse(void *arg, uint64_t ops)
{
    const pf_deadline_t *d = arg;

    for (uint64_t i = 0; i < ops; i++) {
        PF_BENCH_KEEP(pf_deadline_expired_coarse(d));
    }
}

static void
bench_scope(void *arg, uint64_t ops)
{
    pf_timeout_manager_t *tm = arg;

    for (uint64_t i = 0; i < ops; i++) {
        pf_timeout_scope_t s;

        if (pf_timeout_enter(tm, &s, 30.0) == 0) {
            PF_BENCH_KEEP(pf_timeout_check(tm));
            pf_timeout_leave(tm, &s);
        }
    }
}

static int
quick(const pf_deadline_t *d, pf_token_t *tok, void *arg)
{
    (void)d;
    (void)tok;
    (void)arg;
    return 0;
}

static void
bench_timeout_call(void *arg, uint64_t ops)
{
    (void)arg;
    for (uint64_t i = 0; i < ops; i++) {
        PF_BENCH_KEEP(pf_timeout_call(1.0, quick, NULL));
    }
}

int
main(void)
{
    draw_arg_t draw;
    pf_retry_policy_t p;
    pf_retry_policy_t pb;
    pf_retry_budget_config_t bc;
    pf_retry_budget_t *budget;
    pf_retry_budget_t *starved;
    pf_timeout_config_t tc;
    pf_timeout_manager_t *tm;
    pf_clock_t *manual;
    pf_deadline_t d = pf_deadline_in(NULL, 3600.0);
    pf_deadline_t dm;

    if (pf_clock_manual_new(&manual) != 0) {
        return 1;
    }
    dm = pf_deadline_in(manual, 3600.0);
    pf_retry_budget_config_init(&bc);
    if (pf_retry_budget_new(&bc, &budget) != 0) {
        return 1;
    }
    bc.min_retries_per_sec = 0.0;
    bc.ratio = 0.0;
    if (pf_retry_budget_new(&bc, &starved) != 0) {
        return 1;
    }
    pf_timeout_config_init(&tc);
    if (pf_timeout_manager_new(&tc, &tm) != 0) {
        return 1;
    }
    pf_bench_header("retries and deadlines");

    pf_backoff_init(&draw.b);
    draw.rng = 1;
    pf_bench_run("backoff: draw, equal jitter (default)", bench_backoff,
                 &draw, 10000000, 9);
    draw.b.jitter = PF_JITTER_NONE;
    pf_bench_run("backoff: draw, no jitter", bench_backoff, &draw, 10000000,
                 9);
    draw.b.jitter = PF_JITTER_FULL;
    pf_bench_run("backoff: draw, full jitter", bench_backoff, &draw,
                 10000000, 9);
    draw.b.jitter = PF_JITTER_DECORRELATED;
    pf_bench_run("backoff: draw, decorrelated jitter", bench_backoff, &draw,
                 10000000, 9);
    draw.b.jitter = PF_JITTER_EQUAL;
    draw.b.multiplier = 1.5;
    pf_bench_run("backoff: draw, equal jitter, multiplier 1.5 (pow)",
                 bench_backoff, &draw, 10000000, 9);

    pf_retry_policy_init(&p);
    pf_bench_run("call: direct, through a pointer (baseline)",
                 bench_direct_call, NULL, 20000000, 9);
    pf_bench_run("retry_call: first attempt succeeds", bench_retry_call, &p,
                 20000000, 9);
    pb = p;
    pb.budget = budget;
    pf_bench_run("retry_call: first attempt succeeds, with a budget",
                 bench_retry_call, &pb, 10000000, 9);
    pb = p;
    pb.deadline = d;
    pf_bench_run("retry_call: first attempt succeeds, with a deadline",
                 bench_retry_call, &pb, 10000000, 9);
    pb = p;
    pb.seed = 9;
    pf_bench_run("retry decision: start + next after a failure",
                 bench_retry_decision, &pb, 5000000, 9);

    pf_bench_run("budget: deposit", bench_deposit, budget, 10000000, 9);
    pf_bench_run_threads("budget: deposit, 2 threads", bench_deposit_threads,
                         budget, 2, 5000000, 9);
    pf_bench_run("budget: try_withdraw (refused)", bench_withdraw, starved,
                 5000000, 9);

    pf_bench_run("deadline: expired? (system clock, precise)", bench_expired,
                 &d, 10000000, 9);
    pf_bench_run("deadline: expired_coarse? (system clock)",
                 bench_expired_coarse, &d, 10000000, 9);
    pf_bench_run("deadline: expired? (manual clock)", bench_expired, &dm,
                 10000000, 9);
    pf_bench_run("timeout scope: enter + check + leave", bench_scope, tm,
                 1000000, 9);
    pf_bench_run("timeout_call: in time (pool thread)",
                 bench_timeout_call, NULL, 2000, 5);

    pf_timeout_manager_free(tm);
    pf_retry_budget_free(starved);
    pf_retry_budget_free(budget);
    pf_clock_free(manual);
    return 0;
}
