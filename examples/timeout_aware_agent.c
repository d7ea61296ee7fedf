/* The reference's TimeoutAwareAgent: an operation bounded by a 30 s
 * timeout scope that falls back to a partial result when it overruns, and
 * processing that respects a deadline handed down with the work (refusing
 * with PF_EDEADLINE, the reference's DeadlineExceededError, once it has
 * passed, and choosing quick processing when less than 10 s remain).
 *
 * The work is simulated on a manual clock: each unit of work moves it by
 * one second, and the work polls its scope between units. A last part runs
 * a hung call under pf_timeout_call_ex on the real clock (20 ms): the
 * caller gets PF_ETIMEDOUT, the call finishes later on its helper thread,
 * and its completion hook frees the request. Exits 0 only if every promise
 * held. */
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "puffinflow/clock.h"
#include "puffinflow/deadline.h"
#include "puffinflow/error.h"

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "timeout_aware_agent: %s:%d: %s failed\n",         \
                    __FILE__, __LINE__, #cond);                                \
            return 1;                                                          \
        }                                                                      \
    } while (0)

typedef struct ctx {
    const char *result;
    bool timeout_occurred;
    pf_deadline_t deadline; /* ctx.get('deadline'); none = not set */
    int units_done;
} ctx_t;

typedef struct agent {
    pf_timeout_manager_t *timeout_manager;
    pf_clock_t *clock; /* the simulated time the work takes */
} agent_t;

/* Work of `units` seconds, one second at a time, stopping when its scope
 * says so. */
static int
long_running_operation(agent_t *a, ctx_t *ctx, int units)
{
    for (int i = 0; i < units; i++) {
        int rc = pf_timeout_check(a->timeout_manager);

        if (rc != 0) {
            return rc;
        }
        pf_clock_manual_advance(a->clock, PF_NS_PER_SEC);
        ctx->units_done++;
    }
    return 0;
}

/* @state time_bounded_operation */
static int
time_bounded_operation(agent_t *a, ctx_t *ctx, int units)
{
    pf_timeout_scope_t scope;
    int rc;
    int left;

    rc = pf_timeout_enter(a->timeout_manager, &scope, 30.0); /* 30 s max */
    if (rc != 0) {
        return rc;
    }
    rc = long_running_operation(a, ctx, units);
    left = pf_timeout_leave(a->timeout_manager, &scope);
    if (rc == PF_ETIMEDOUT || left == PF_ETIMEDOUT) {
        ctx->result = "partial"; /* get_partial_result() */
        ctx->timeout_occurred = true;
        return 0;
    }
    if (rc == 0) {
        ctx->result = "complete";
    }
    return rc;
}

/* @state deadline_aware_processing */
static int
deadline_aware_processing(agent_t *a, ctx_t *ctx)
{
    pf_timeout_scope_t scope;
    double remaining;
    int rc;

    if (pf_deadline_is_none(&ctx->deadline)) {
        ctx->result = "full";
        return 0;
    }
    rc = pf_timeout_enter_deadline(a->timeout_manager, &scope, &ctx->deadline);
    if (rc != 0) {
        return rc; /* PF_EDEADLINE: "Processing deadline exceeded" */
    }
    remaining = pf_timeout_remaining(a->timeout_manager);
    if (remaining < 10.0) {
        ctx->result = "quick"; /* quick_processing(ctx.input_data) */
        rc = long_running_operation(a, ctx, 2);
    } else {
        ctx->result = "full"; /* full_processing(ctx.input_data) */
        rc = long_running_operation(a, ctx, 20);
    }
    if (rc == 0) {
        rc = pf_timeout_leave(a->timeout_manager, &scope);
    } else {
        pf_timeout_leave(a->timeout_manager, &scope);
    }
    return rc;
}

/* ---- a hung call under pf_timeout_call_ex (real clock) ------------------ */

static atomic_int g_released;

typedef struct request {
    char body[64];
    int answered;
} request_t;

/* A dependency call that hangs until its token is cancelled, and then takes
 * a while more to give up: it returns long after its caller stopped
 * waiting. */
static int
hung_call(const pf_deadline_t *d, pf_token_t *tok, void *arg)
{
    request_t *req = arg;
    pf_deadline_t much_later = pf_deadline_in(NULL, 0.05);

    (void)d;
    pf_token_wait(tok, NULL); /* cancelled (or timed out) at 20 ms */
    while (!pf_deadline_expired(&much_later)) {
        sched_yield();
    }
    req->answered = 1; /* still its memory: the hook has not run yet */
    return -1;
}

static void
release_request(int result, void *arg)
{
    request_t *req = arg;

    printf("hung call finished later with %d; request '%s' released\n",
           result, req->body);
    free(req);
    atomic_store(&g_released, 1);
}

static int
timed_call_demo(void)
{
    pf_timeout_opts_t o;
    request_t *req = malloc(sizeof(*req));
    int rc;

    CHECK(req != NULL);
    snprintf(req->body, sizeof(req->body), "GET /inventory");
    req->answered = 0;
    pf_timeout_opts_init(&o);
    o.on_complete = release_request; /* owns req from here on */
    o.on_complete_arg = req;
    rc = pf_timeout_call_ex(0.02, hung_call, req, &o);
    printf("timed call: %s\n", pf_strerror(rc));
    CHECK(rc == PF_ETIMEDOUT);
    while (atomic_load(&g_released) == 0) {
        sched_yield(); /* the example ends only after the hook ran */
    }
    return 0;
}

int
main(void)
{
    pf_timeout_config_t cfg;
    pf_timeout_metrics_t m;
    agent_t a;
    ctx_t ctx;

    CHECK(pf_clock_manual_new(&a.clock) == 0);
    pf_timeout_config_init(&cfg);
    cfg.name = "timeout-aware-agent";
    cfg.clock = a.clock;
    CHECK(pf_timeout_manager_new(&cfg, &a.timeout_manager) == 0);

    /* 1. 10 s of work under a 30 s limit: complete. */
    memset(&ctx, 0, sizeof(ctx));
    CHECK(time_bounded_operation(&a, &ctx, 10) == 0);
    printf("short work: %s, timeout_occurred=%d\n", ctx.result,
           ctx.timeout_occurred);
    CHECK(strcmp(ctx.result, "complete") == 0 && !ctx.timeout_occurred);

    /* 2. 45 s of work under a 30 s limit: stopped at 30 s, partial. */
    memset(&ctx, 0, sizeof(ctx));
    CHECK(time_bounded_operation(&a, &ctx, 45) == 0);
    printf("long work: %s after %d s, timeout_occurred=%d\n", ctx.result,
           ctx.units_done, ctx.timeout_occurred);
    CHECK(strcmp(ctx.result, "partial") == 0 && ctx.timeout_occurred);
    CHECK(ctx.units_done == 30);

    /* 3. A deadline that already passed: DeadlineExceededError. */
    memset(&ctx, 0, sizeof(ctx));
    ctx.deadline = pf_deadline_in(a.clock, 0.0);
    CHECK(deadline_aware_processing(&a, &ctx) == PF_EDEADLINE);
    CHECK(ctx.units_done == 0);
    printf("past deadline: %s\n", pf_strerror(PF_EDEADLINE));

    /* 4. 5 s left: quick processing. 5. 60 s left: full processing. */
    memset(&ctx, 0, sizeof(ctx));
    ctx.deadline = pf_deadline_in(a.clock, 5.0);
    CHECK(deadline_aware_processing(&a, &ctx) == 0);
    CHECK(strcmp(ctx.result, "quick") == 0);
    memset(&ctx, 0, sizeof(ctx));
    ctx.deadline = pf_deadline_in(a.clock, 60.0);
    CHECK(deadline_aware_processing(&a, &ctx) == 0);
    CHECK(strcmp(ctx.result, "full") == 0);
    printf("5 s left: quick; 60 s left: full\n");

    pf_timeout_manager_metrics(a.timeout_manager, &m);
    CHECK(m.entered == 4 && m.timed_out == 1 && m.deadline_exceeded == 1);
    CHECK(m.active == 0);
    pf_timeout_manager_free(a.timeout_manager);
    pf_clock_free(a.clock);

    if (timed_call_demo() != 0) {
        return 1;
    }
    printf("timeout_aware_agent: ok\n");
    return 0;
}
