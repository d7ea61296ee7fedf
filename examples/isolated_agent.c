/* The reference's IsolatedAgent (REFERENCE.md, "Bulkhead Pattern"):
 *
 *   class IsolatedAgent(Agent):
 *       def __init__(self):
 *           self.cpu_bulkhead = Bulkhead(BulkheadConfig(
 *               max_concurrent_calls=4, max_wait_duration=10,
 *               name="cpu_intensive_operations"))
 *           self.io_bulkhead = Bulkhead(BulkheadConfig(
 *               max_concurrent_calls=20, max_wait_duration=5,
 *               name="io_operations"))
 *
 *       @state
 *       async def cpu_intensive_task(self, ctx: Context) -> None:
 *           async with self.cpu_bulkhead:
 *               ctx.cpu_result = await heavy_computation()
 *
 *       @state
 *       async def io_intensive_task(self, ctx: Context) -> None:
 *           async with self.io_bulkhead:
 *               ctx.io_result = await database_operation()
 *
 * In C each state gets its own bulkhead through its options. A state that
 * finds its bulkhead full waits in the bulkhead's queue as a ticket (no
 * thread waits) for up to max_wait_duration. Each request is one run of
 * the agent, which starts both states at once.
 *
 * Like the original's `async def` states, both states are asynchronous:
 * each starts its work and returns PF_PENDING (pf_ctx_pending), holding
 * no thread until the work completes it. So the default 2 workers are
 * enough for both bulkheads to be full at once (4 computations and 20
 * database operations in flight): the bulkheads, not the thread count,
 * decide how much runs, and a flood on one side can never take what the
 * other side needs.
 *
 * The program saturates each side in turn (its work hangs until the
 * program lets it go) and checks that the other side's work still goes
 * through, that neither side ever had more inside than its limit, and that
 * each reached it. The executor runs on a manual clock that never moves, so
 * no queued state's wait limit runs out while the program looks. Exits 0
 * only if everything held. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>

#include "puffinflow/agent.h"

#define WORKERS 2 /* the default */
#define MAX_HELD 64
#define REQUESTS_A 24 /* while the I/O side is saturated */
#define REQUESTS_B 8  /* while the CPU side is saturated */
#define REQUESTS (REQUESTS_A + REQUESTS_B)

/* One side's simulated work: how many are inside it, and a gate the work
 * waits at while the program holds it closed. */
typedef struct work {
    pf_completion_t *c;
    pf_ctx_t *ctx;
    const char *key;
    int64_t value;
} work_t;

typedef struct side {
    atomic_int inside;
    atomic_int max_inside;
    atomic_int done;
    pthread_mutex_t mu;
    bool open;
    work_t held[MAX_HELD]; /* work started while closed, under mu */
    int nheld;
} side_t;

static void
side_init(side_t *s, bool open)
{
    atomic_init(&s->inside, 0);
    atomic_init(&s->max_inside, 0);
    atomic_init(&s->done, 0);
    pthread_mutex_init(&s->mu, NULL);
    s->open = open;
    s->nheld = 0;
}

/* The work is over: give its result to the state and complete it (from
 * whichever thread ends the work). */
static void
work_done(side_t *s, const work_t *w)
{
    pf_ctx_set_int(w->ctx, w->key, w->value);
    atomic_fetch_sub(&s->inside, 1);
    atomic_fetch_add(&s->done, 1);
    pf_completion_complete(w->c, 0);
    pf_completion_free(w->c);
}

static void
side_set_open(side_t *s, bool open)
{
    work_t held[MAX_HELD];
    int n = 0;

    pthread_mutex_lock(&s->mu);
    s->open = open;
    if (open) {
        n = s->nheld;
        for (int i = 0; i < n; i++) {
            held[i] = s->held[i];
        }
        s->nheld = 0;
    }
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < n; i++) {
        work_done(s, &held[i]);
    }
}

/* Start a piece of work for the state of ctx: it ends at once while the
 * side is open, else when the program opens it. Returns PF_PENDING (the
 * state's result), or an error when it could not start. */
static int
side_work(side_t *s, pf_ctx_t *ctx, const char *key, int64_t value)
{
    work_t w = {NULL, ctx, key, value};
    int n = atomic_fetch_add(&s->inside, 1) + 1;
    int m = atomic_load(&s->max_inside);
    int rc;

    while (n > m && !atomic_compare_exchange_weak(&s->max_inside, &m, n)) {
    }
    /* No abort: the program never lets a wait limit or timeout run out. */
    rc = pf_ctx_pending(ctx, NULL, NULL, &w.c);
    if (rc != 0) {
        atomic_fetch_sub(&s->inside, 1);
        return rc;
    }
    pthread_mutex_lock(&s->mu);
    if (!s->open && s->nheld < MAX_HELD) {
        s->held[s->nheld++] = w;
        pthread_mutex_unlock(&s->mu);
        return PF_PENDING;
    }
    pthread_mutex_unlock(&s->mu);
    work_done(s, &w);
    return PF_PENDING;
}

static side_t cpu;
static side_t io;

/* @state cpu_intensive_task: runs inside the CPU bulkhead; the
 * computation (fib(19)) completes it. */
static int
cpu_intensive_task(pf_ctx_t *ctx, void *arg)
{
    (void)arg;
    return side_work(&cpu, ctx, "cpu_result", 4181);
}

/* @state io_intensive_task: runs inside the I/O bulkhead; the database's
 * answer (42 rows) completes it. */
static int
io_intensive_task(pf_ctx_t *ctx, void *arg)
{
    (void)arg;
    return side_work(&io, ctx, "io_result", 42);
}

static void
on_bulkhead_event(const pf_bulkhead_event_t *ev, void *arg)
{
    (void)arg;
    if (ev->kind == PF_BULKHEAD_REJECTED_FULL) {
        printf("   [bulkhead] %s: full (%u inside, %u queued): refused\n",
               ev->name, ev->in_use, ev->waiting);
    }
}

static void
on_agent_event(const pf_agent_event_t *ev, void *arg)
{
    (void)arg;
    if (ev->kind == PF_AGENT_EVENT_REJECTED) {
        printf("   [agent] %s refused: %s\n", ev->state,
               pf_strerror(ev->error));
    }
}

static int
isolated_agent_new(pf_executor_t *ex, pf_agent_t **out)
{
    pf_bulkhead_config_t bulkhead_cfg;
    pf_agent_config_t cfg;
    pf_state_opts_t o;
    int rc;

    pf_agent_config_init(&cfg);
    cfg.name = "IsolatedAgent";
    cfg.executor = ex;
    cfg.listener = on_agent_event;
    rc = pf_agent_new_ex(&cfg, out);
    if (rc != 0) {
        return rc;
    }
    pf_state_opts_init(&o);
    o.own_bulkhead = true;
    pf_bulkhead_config_init(&bulkhead_cfg);
    bulkhead_cfg.name = "cpu_intensive_operations";
    bulkhead_cfg.max_concurrent_calls = 4;
    bulkhead_cfg.max_wait_duration = 10.0;
    bulkhead_cfg.listener = on_bulkhead_event;
    o.bulkhead_config = &bulkhead_cfg;
    rc = pf_agent_add_state(*out, "cpu_intensive_task", cpu_intensive_task,
                            NULL, &o);
    if (rc != 0) {
        return rc;
    }
    pf_state_opts_init(&o);
    o.own_bulkhead = true;
    pf_bulkhead_config_init(&bulkhead_cfg);
    bulkhead_cfg.name = "io_operations";
    bulkhead_cfg.max_concurrent_calls = 20;
    bulkhead_cfg.max_wait_duration = 5.0;
    bulkhead_cfg.listener = on_bulkhead_event;
    o.bulkhead_config = &bulkhead_cfg;
    return pf_agent_add_state(*out, "io_intensive_task", io_intensive_task,
                              NULL, &o);
}

/* ---- the walk-through ---------------------------------------------------- */

static int failures;

static void
check(int ok, const char *what)
{
    printf("%s %s\n", ok ? "ok  " : "FAIL", what);
    if (!ok) {
        failures++;
    }
}

/* Wait (yielding) until bh has in_use inside and waiting queued, and the
 * side has done `done` pieces of work. */
static void
wait_for(pf_bulkhead_t *bh, unsigned in_use, unsigned waiting, side_t *s,
         int done)
{
    pf_bulkhead_metrics_t m;

    for (;;) {
        pf_bulkhead_metrics(bh, &m);
        if (m.in_use == in_use && m.waiting == waiting &&
            atomic_load(&s->done) == done) {
            return;
        }
        sched_yield();
    }
}

static void
show(pf_bulkhead_t *bh)
{
    pf_bulkhead_metrics_t m;

    pf_bulkhead_metrics(bh, &m);
    printf("   %s: %u inside, %u queued\n", pf_bulkhead_name(bh), m.in_use,
           m.waiting);
}

/* Start requests first .. last - 1, each a run with its own ctx. */
static int
start(pf_agent_t *agent, pf_ctx_t **ctx, pf_run_t **run, int first, int last)
{
    for (int i = first; i < last; i++) {
        int rc = pf_ctx_new(&ctx[i]);

        if (rc == 0) {
            rc = pf_agent_start(agent, ctx[i], NULL, &run[i]);
        }
        if (rc != 0) {
            return rc;
        }
    }
    printf("   %d requests started\n", last - first);
    return 0;
}

/* Wait for requests first .. last - 1; returns how many completed with
 * both results. */
static int
finish(pf_ctx_t **ctx, pf_run_t **run, int first, int last)
{
    int ok = 0;

    for (int i = first; i < last; i++) {
        int64_t cpu_result = 0;
        int64_t io_result = 0;
        int rc = pf_run_wait(run[i], NULL, NULL);

        pf_ctx_get_int(ctx[i], "cpu_result", &cpu_result);
        pf_ctx_get_int(ctx[i], "io_result", &io_result);
        if (rc == 0 && cpu_result == 4181 && io_result == 42) {
            ok++;
        }
        pf_run_free(run[i]);
        pf_ctx_free(ctx[i]);
    }
    printf("   %d requests complete\n", ok);
    return ok;
}

int
main(void)
{
    pf_executor_config_t ecfg;
    pf_clock_t *clock;
    pf_executor_t *ex = NULL;
    pf_agent_t *agent = NULL;
    pf_bulkhead_t *cpu_bulkhead;
    pf_bulkhead_t *io_bulkhead;
    pf_ctx_t *ctx[REQUESTS];
    pf_run_t *run[REQUESTS];

    side_init(&cpu, true);
    side_init(&io, false);
    if (pf_clock_manual_new(&clock) != 0) {
        return 1;
    }
    pf_executor_config_init(&ecfg);
    ecfg.clock = clock;
    ecfg.workers = WORKERS;
    if (pf_executor_new(&ecfg, &ex) != 0 ||
        isolated_agent_new(ex, &agent) != 0) {
        fprintf(stderr, "setup failed\n");
        return 1;
    }
    cpu_bulkhead = pf_agent_state_bulkhead(agent, "cpu_intensive_task");
    io_bulkhead = pf_agent_state_bulkhead(agent, "io_intensive_task");

    printf("A. the database hangs: the I/O side saturates\n");
    if (start(agent, ctx, run, 0, REQUESTS_A) != 0) {
        return 1;
    }
    wait_for(io_bulkhead, 20, REQUESTS_A - 20, &cpu, REQUESTS_A);
    show(io_bulkhead);
    printf("   %d computations done meanwhile\n", atomic_load(&cpu.done));
    check(atomic_load(&io.done) == 0, "no I/O task could finish");
    check(atomic_load(&cpu.done) == REQUESTS_A,
          "every CPU task ran while the I/O bulkhead was full");
    check(pf_bulkhead_try_enter(io_bulkhead) == PF_EFULL,
          "a newcomer is refused by the full I/O bulkhead");
    check(pf_bulkhead_try_enter(cpu_bulkhead) == 0,
          "... but finds room in the CPU bulkhead");
    pf_bulkhead_leave(cpu_bulkhead);
    printf("   the database answers again\n");
    side_set_open(&cpu, false);
    side_set_open(&io, true);
    check(finish(ctx, run, 0, REQUESTS_A) == REQUESTS_A,
          "the queued I/O tasks got in: every request completed");

    printf("B. a computation hangs: the CPU side saturates\n");
    if (start(agent, ctx, run, REQUESTS_A, REQUESTS) != 0) {
        return 1;
    }
    wait_for(cpu_bulkhead, 4, REQUESTS_B - 4, &io, REQUESTS);
    show(cpu_bulkhead);
    printf("   %d database operations done meanwhile\n",
           atomic_load(&io.done) - REQUESTS_A);
    check(atomic_load(&cpu.done) == REQUESTS_A, "no new CPU task could finish");
    check(atomic_load(&io.done) == REQUESTS,
          "every I/O task ran while the CPU bulkhead was full");
    check(pf_bulkhead_try_enter(cpu_bulkhead) == PF_EFULL,
          "a newcomer is refused by the full CPU bulkhead");
    check(pf_bulkhead_try_enter(io_bulkhead) == 0,
          "... but finds room in the I/O bulkhead");
    pf_bulkhead_leave(io_bulkhead);
    printf("   the computations finish\n");
    side_set_open(&cpu, true);
    check(finish(ctx, run, REQUESTS_A, REQUESTS) == REQUESTS_B,
          "the queued CPU tasks got in: every request completed");

    check(atomic_load(&cpu.max_inside) == 4, "at most 4 CPU tasks at once");
    check(atomic_load(&io.max_inside) == 20, "at most 20 I/O tasks at once");
    {
        pf_bulkhead_metrics_t c;
        pf_bulkhead_metrics_t i;

        pf_bulkhead_metrics(cpu_bulkhead, &c);
        pf_bulkhead_metrics(io_bulkhead, &i);
        printf("cpu_intensive_operations: accepted %llu, peak %u; "
               "io_operations: accepted %llu, peak %u\n",
               (unsigned long long)c.accepted, c.peak_in_use,
               (unsigned long long)i.accepted, i.peak_in_use);
        check(c.peak_in_use == 4 && i.peak_in_use == 20 &&
                  c.rejected_timeout == 0 && i.rejected_timeout == 0,
              "each bulkhead reached its limit, and no wait ran out");
    }

    pf_agent_free(agent);
    pf_executor_free(ex);
    pf_clock_free(clock);
    if (failures != 0) {
        printf("%d check(s) failed\n", failures);
        return 1;
    }
    printf("all checks passed\n");
    return 0;
}
