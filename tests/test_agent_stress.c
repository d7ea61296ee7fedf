/* Agents under load: 10,000 runs in flight at once on one executor, and
 * blocking runs from several threads on one agent, lose no state and run
 * none twice; every path survives allocation failure. */
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "puffinflow/agent.h"

#include "agent_testutil.h"
#include "test.h"

enum { STATES = 5 };

/* One counter per run and state; a state's arg says which state it is,
 * and the run's row is found through its context. */
typedef struct board {
    atomic_int (*calls)[STATES];
    atomic_int done;
} board_t;

typedef struct cell {
    board_t *board;
    int state;
    const char *go[3];
} cell_t;

static int
count_in_row(pf_ctx_t *ctx, void *arg)
{
    cell_t *c = arg;
    int64_t row = -1;
    int i;

    assert_pf_ok(pf_ctx_get_int(ctx, "row", &row));
    atomic_fetch_add(&c->board->calls[row][c->state], 1);
    for (i = 0; i < 3 && c->go[i] != NULL; i++) {
        int rc = pf_ctx_goto(ctx, c->go[i]);

        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

/* a -> goto b, c (parallel); d depends on b and c; e after d. */
static pf_agent_t *
diamond(pf_executor_t *ex, cell_t cells[STATES], board_t *board)
{
    static const char *names[STATES] = {"a", "b", "c", "d", "e"};
    const char *deps[] = {"b", "c"};
    pf_agent_t *a = agent_on(ex, PF_EXEC_SEQUENTIAL);
    pf_state_opts_t o;
    int i;

    memset(cells, 0, sizeof(cell_t) * STATES);
    for (i = 0; i < STATES; i++) {
        cells[i].board = board;
        cells[i].state = i;
    }
    cells[0].go[0] = "b";
    cells[0].go[1] = "c";
    cells[3].go[0] = "e";
    for (i = 0; i < STATES; i++) {
        pf_state_opts_init(&o);
        if (i == 3) {
            o.depends_on = deps;
            o.depends_on_len = 2;
        }
        assert_pf_ok(
            pf_agent_add_state(a, names[i], count_in_row, &cells[i], &o));
    }
    return a;
}

static void
on_done(pf_run_t *run, void *arg)
{
    board_t *b = arg;

    assert_true(pf_run_done(run));
    atomic_fetch_add(&b->done, 1);
}

static void
test_agent_ten_thousand_concurrent_runs_lose_and_repeat_nothing(void **state)
{
    enum { RUNS = 10000 };
    pf_executor_t *ex = executor_on(NULL, 2);
    board_t board;
    cell_t cells[STATES];
    pf_agent_t *a;
    pf_run_t **runs = calloc(RUNS, sizeof(*runs));
    pf_ctx_t **ctxs = calloc(RUNS, sizeof(*ctxs));
    pf_run_opts_t ro;
    pf_agent_metrics_t m;
    int i;
    int j;

    (void)state;
    assert_non_null(runs);
    assert_non_null(ctxs);
    board.calls = calloc(RUNS, sizeof(*board.calls));
    assert_non_null(board.calls);
    atomic_init(&board.done, 0);
    a = diamond(ex, cells, &board);
    pf_run_opts_init(&ro);
    ro.on_done = on_done;
    ro.on_done_arg = &board;
    for (i = 0; i < RUNS; i++) {
        assert_pf_ok(pf_ctx_new(&ctxs[i]));
        assert_pf_ok(pf_ctx_set_int(ctxs[i], "row", i));
        assert_pf_ok(pf_agent_start(a, ctxs[i], &ro, &runs[i]));
    }
    /* Half are waited for (the waiter helps), half just finish. */
    for (i = 0; i < RUNS; i += 2) {
        assert_pf_ok(pf_run_wait(runs[i], NULL, NULL));
    }
    pf_test_wait_for_flag(&board.done, RUNS);
    for (i = 0; i < RUNS; i++) {
        pf_run_result_t res;

        assert_true(pf_run_done(runs[i]));
        assert_pf_ok(pf_run_wait(runs[i], NULL, &res));
        assert_int_equal(res.completed, STATES);
        pf_run_result_free(&res);
        for (j = 0; j < STATES; j++) {
            assert_int_equal(atomic_load(&board.calls[i][j]), 1);
        }
        pf_run_free(runs[i]);
        pf_ctx_free(ctxs[i]);
    }
    pf_agent_metrics(a, &m);
    assert_int_equal(m.runs_started, RUNS);
    assert_int_equal(m.runs_finished, RUNS);
    assert_int_equal(m.states_completed, (uint64_t)RUNS * STATES);
    pf_agent_free(a);
    pf_executor_free(ex);
    free(board.calls);
    free(ctxs);
    free(runs);
}

typedef struct shared {
    pf_agent_t *agent;
    board_t *board;
} shared_t;

static void
run_rows(void *arg, unsigned t)
{
    shared_t *sh = arg;
    int i;

    for (i = 0; i < 500; i++) {
        pf_ctx_t *ctx = NULL;

        assert_pf_ok(pf_ctx_new(&ctx));
        assert_pf_ok(pf_ctx_set_int(ctx, "row", (int64_t)t * 500 + i));
        assert_pf_ok(pf_agent_run(sh->agent, ctx, NULL));
        pf_ctx_free(ctx);
    }
}

static void
test_agent_blocking_runs_from_many_threads_share_one_agent(void **state)
{
    enum { THREADS = 4, ROWS = THREADS * 500 };
    pf_executor_t *ex = executor_on(NULL, 2);
    board_t board;
    cell_t cells[STATES];
    shared_t sh;
    int i;
    int j;

    (void)state;
    board.calls = calloc(ROWS, sizeof(*board.calls));
    assert_non_null(board.calls);
    sh.agent = diamond(ex, cells, &board);
    sh.board = &board;
    pf_test_run_threads(THREADS, run_rows, &sh);
    for (i = 0; i < ROWS; i++) {
        for (j = 0; j < STATES; j++) {
            assert_int_equal(atomic_load(&board.calls[i][j]), 1);
        }
    }
    pf_agent_free(sh.agent);
    pf_executor_free(ex);
    free(board.calls);
}

/* Runs cancelled at random moments still end, each state once at most. */
static void
test_agent_runs_cancelled_midway_end_cleanly(void **state)
{
    enum { RUNS = 2000 };
    pf_executor_t *ex = executor_on(NULL, 2);
    board_t board;
    cell_t cells[STATES];
    pf_agent_t *a;
    pf_run_t **runs = calloc(RUNS, sizeof(*runs));
    pf_ctx_t **ctxs = calloc(RUNS, sizeof(*ctxs));
    int i;
    int j;

    (void)state;
    board.calls = calloc(RUNS, sizeof(*board.calls));
    assert_non_null(board.calls);
    assert_non_null(runs);
    assert_non_null(ctxs);
    a = diamond(ex, cells, &board);
    for (i = 0; i < RUNS; i++) {
        assert_pf_ok(pf_ctx_new(&ctxs[i]));
        assert_pf_ok(pf_ctx_set_int(ctxs[i], "row", i));
        assert_pf_ok(pf_agent_start(a, ctxs[i], NULL, &runs[i]));
        if (i % 3 == 0) {
            pf_run_cancel(runs[i]);
        }
    }
    for (i = 0; i < RUNS; i++) {
        pf_run_result_t res;
        int rc = pf_run_wait(runs[i], NULL, &res);

        assert_true(rc == 0 || rc == PF_ECANCELED);
        assert_int_equal(
            res.completed + res.cancelled + res.skipped + res.not_run, STATES);
        for (j = 0; j < STATES; j++) {
            pf_state_result_t sr;

            assert_pf_ok(pf_run_result_state(&res, (size_t)j, &sr));
            assert_int_equal(atomic_load(&board.calls[i][j]),
                             sr.outcome == PF_STATE_COMPLETED ? 1 : 0);
        }
        pf_run_result_free(&res);
        pf_run_free(runs[i]);
        pf_ctx_free(ctxs[i]);
    }
    pf_agent_free(a);
    pf_executor_free(ex);
    free(board.calls);
    free(ctxs);
    free(runs);
}

/* ---- allocation failure -------------------------------------------------- */

static int
count_call_noop(pf_ctx_t *ctx, void *arg)
{
    (void)ctx;
    (void)arg;
    return 0;
}

static int
wide(pf_ctx_t *ctx, void *arg)
{
    int rc;
    int i;

    (void)arg;
    if (pf_ctx_attempt(ctx) == 1) {
        return -1; /* one retry, at once */
    }
    rc = pf_ctx_set_string(ctx, "k", "value");
    for (i = 1; rc == 0 && i <= 6; i++) { /* past the inline gotos */
        char name[4] = {'s', (char)('0' + i), '\0', '\0'};

        rc = pf_ctx_goto(ctx, name);
    }
    return rc;
}

static void
sweep(void *arg)
{
    pf_executor_t *ex = arg;
    const char *deps[] = {"s1", "s2", "s3", "s4", "s5", "s6"};
    pf_agent_config_t cfg;
    pf_agent_t *a = NULL;
    pf_state_opts_t o;
    pf_run_result_t res;
    pf_run_t *run = NULL;
    int rc;
    int i;

    pf_agent_config_init(&cfg);
    cfg.executor = ex;
    cfg.mode = PF_EXEC_SEQUENTIAL;
    rc = pf_agent_new_ex(&cfg, &a);
    if (rc != 0) {
        assert_int_equal(rc, PF_ENOMEM);
        return;
    }
    quick_retries(&o, 2);
    o.own_breaker = true;
    o.own_bulkhead = true;
    rc = pf_agent_add_state(a, "s0", wide, NULL, &o);
    for (i = 1; rc == 0 && i <= 6; i++) {
        char name[4] = {'s', (char)('0' + i), '\0', '\0'};

        rc = pf_agent_add_state(a, name, count_call_noop, NULL, NULL);
    }
    if (rc == 0) {
        pf_state_opts_init(&o);
        o.depends_on = deps;
        o.depends_on_len = 6;
        rc = pf_agent_add_state(a, "join", count_call_noop, NULL, &o);
    }
    if (rc == 0) {
        rc = pf_agent_run(a, NULL, &res);
        if (rc == 0) {
            assert_int_equal(res.completed, 8);
        }
        pf_run_result_free(&res);
        rc = pf_agent_start(a, NULL, NULL, &run);
        if (rc == 0) {
            pf_run_wait(run, NULL, NULL);
            pf_run_free(run);
        }
    }
    if (rc != 0) {
        assert_true(rc == PF_ENOMEM || rc == -1);
    }
    pf_agent_free(a);
}

static void
test_agent_survives_allocation_failure_everywhere(void **state)
{
    pf_executor_t *ex = executor_on(NULL, 1);

    (void)state;
    assert_true(pf_test_alloc_sweep(sweep, ex) > 20);
    pf_executor_free(ex);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            test_agent_ten_thousand_concurrent_runs_lose_and_repeat_nothing),
        cmocka_unit_test(
            test_agent_blocking_runs_from_many_threads_share_one_agent),
        cmocka_unit_test(test_agent_runs_cancelled_midway_end_cleanly),
        cmocka_unit_test(test_agent_survives_allocation_failure_everywhere),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
