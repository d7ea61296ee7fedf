/* Agents: definitions and their validation, routing (goto, depends_on,
 * modes, priority), results, retries, dead letters, fallbacks, breaker and
 * bulkhead integration, profiles, leak tracking, listener and metrics.
 * Time-driven behaviour (backoff timers, timeouts, deadlines, cancellation)
 * is in test_agent_time.c; concurrency stress in test_agent_stress.c. */
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>

#include "puffinflow/agent.h"
#include "puffinflow/leak.h"
#include "puffinflow/registry.h"

#include "agent_testutil.h"
#include "executor_impl.h"
#include "test.h"

static pf_executor_t *g_ex; /* 2 workers, system clock */

static int
setup_group(void **state)
{
    (void)state;
    g_ex = executor_on(NULL, 2);
    return 0;
}

static int
teardown_group(void **state)
{
    (void)state;
    pf_executor_free(g_ex);
    return 0;
}

static int
noop(pf_ctx_t *ctx, void *arg)
{
    (void)ctx;
    (void)arg;
    return 0;
}

/* ---- definitions --------------------------------------------------------- */

static void
test_agent_config_and_opts_have_documented_defaults(void **state)
{
    pf_agent_config_t cfg;
    pf_state_opts_t o;
    pf_run_opts_t r;

    (void)state;
    pf_agent_config_init(&cfg);
    assert_string_equal(cfg.name, "agent");
    assert_null(cfg.executor);
    assert_int_equal(cfg.mode, PF_EXEC_PARALLEL);
    assert_true(cfg.run_timeout == 0.0);
    assert_true(cfg.timings);
    pf_state_opts_init(&o);
    assert_int_equal(o.max_retries, 3);
    assert_int_equal(o.priority, PF_PRIORITY_NORMAL);
    assert_true(o.timeout == 0.0);
    assert_true(o.dead_letter);
    assert_null(o.backoff); /* pf_backoff_init's defaults */
    assert_false(o.own_breaker || o.own_bulkhead || o.own_ratelimit);
    assert_null(o.breaker_config);
    assert_null(o.bulkhead_config);
    assert_null(o.ratelimit_config);
    assert_null(o.resources); /* the original's defaults */
    assert_true(o.leak_detection);
    pf_run_opts_init(&r);
    assert_null(r.token);
    assert_true(r.timeout == 0.0);
    pf_agent_config_init(NULL);
    pf_state_opts_init(NULL);
    pf_run_opts_init(NULL);
}

static void
test_agent_new_rejects_bad_arguments(void **state)
{
    pf_agent_config_t cfg;
    pf_agent_t *a = NULL;

    (void)state;
    assert_pf_err(pf_agent_new(NULL, &a), PF_EINVAL);
    assert_pf_err(pf_agent_new("", &a), PF_EINVAL);
    assert_pf_err(pf_agent_new("x", NULL), PF_EINVAL);
    pf_agent_config_init(&cfg);
    cfg.mode = (pf_exec_mode_t)9;
    assert_pf_err(pf_agent_new_ex(&cfg, &a), PF_EINVAL);
    pf_agent_config_init(&cfg);
    cfg.run_timeout = -1.0;
    assert_pf_err(pf_agent_new_ex(&cfg, &a), PF_EINVAL);
    cfg.run_timeout = NAN;
    assert_pf_err(pf_agent_new_ex(&cfg, &a), PF_EINVAL);
    assert_pf_err(pf_agent_new_ex(NULL, &a), PF_EINVAL);
    assert_null(a);
    assert_pf_ok(pf_agent_new("named", &a));
    assert_string_equal(pf_agent_name(a), "named");
    pf_agent_free(a);
    pf_agent_free(NULL);
}

static void
test_agent_add_state_rejects_bad_definitions(void **state)
{
    pf_backoff_t backoff;
    pf_bulkhead_config_t bulkhead_cfg;
    pf_breaker_config_t breaker_cfg;
    pf_leak_resources_t bad_resources = {.cpu_units = 1.0,
                                         .memory_mb = 100.0};
    pf_agent_t *a = agent_on(g_ex, PF_EXEC_PARALLEL);
    const char *self[] = {"t"};
    const char *on_s[] = {"s"};
    const char *holes[] = {"a", NULL};
    pf_state_opts_t o;

    (void)state;
    assert_pf_ok(pf_agent_add_state(a, "s", noop, NULL, NULL));
    assert_pf_err(pf_agent_add_state(a, "s", noop, NULL, NULL), PF_EINVAL);
    assert_non_null(strstr(pf_agent_last_error(a), "duplicate"));
    assert_pf_err(pf_agent_add_state(a, NULL, noop, NULL, NULL), PF_EINVAL);
    assert_pf_err(pf_agent_add_state(a, "", noop, NULL, NULL), PF_EINVAL);
    assert_pf_err(pf_agent_add_state(a, "t", NULL, NULL, NULL), PF_EINVAL);
    assert_pf_err(pf_agent_add_state(NULL, "t", noop, NULL, NULL), PF_EINVAL);
    pf_state_opts_init(&o);
    o.timeout = -1.0;
    assert_pf_err(pf_agent_add_state(a, "t", noop, NULL, &o), PF_EINVAL);
    o.timeout = NAN;
    assert_pf_err(pf_agent_add_state(a, "t", noop, NULL, &o), PF_EINVAL);
    pf_state_opts_init(&o);
    o.priority = (pf_priority_t)17;
    assert_pf_err(pf_agent_add_state(a, "t", noop, NULL, &o), PF_EINVAL);
    pf_state_opts_init(&o);
    o.depends_on_len = 1; /* depends_on NULL */
    assert_pf_err(pf_agent_add_state(a, "t", noop, NULL, &o), PF_EINVAL);
    o.depends_on = holes;
    o.depends_on_len = 2;
    assert_pf_err(pf_agent_add_state(a, "t", noop, NULL, &o), PF_EINVAL);
    pf_state_opts_init(&o);
    o.depends_on = self;
    o.depends_on_len = 1;
    assert_pf_err(pf_agent_add_state(a, "t", noop, NULL, &o), PF_EINVAL);
    assert_non_null(strstr(pf_agent_last_error(a), "itself"));
    o.depends_on = on_s;
    assert_pf_ok(pf_agent_add_state(a, "t", noop, NULL, &o));
    pf_state_opts_init(&o);
    pf_backoff_init(&backoff);
    backoff.multiplier = 0.5;
    o.backoff = &backoff;
    assert_pf_err(pf_agent_add_state(a, "u", noop, NULL, &o), PF_EINVAL);
    assert_non_null(strstr(pf_agent_last_error(a), "'u'"));
    pf_state_opts_init(&o);
    o.own_breaker = true;
    pf_breaker_config_init(&breaker_cfg);
    breaker_cfg.failure_threshold = 0;
    o.breaker_config = &breaker_cfg;
    assert_pf_err(pf_agent_add_state(a, "u", noop, NULL, &o), PF_EINVAL);
    pf_state_opts_init(&o);
    o.own_bulkhead = true;
    pf_bulkhead_config_init(&bulkhead_cfg);
    bulkhead_cfg.max_concurrent_calls = 0;
    o.bulkhead_config = &bulkhead_cfg;
    assert_pf_err(pf_agent_add_state(a, "u", noop, NULL, &o), PF_EINVAL);
    pf_state_opts_init(&o);
    bad_resources.memory_mb = -1.0;
    o.resources = &bad_resources;
    assert_pf_err(pf_agent_add_state(a, "u", noop, NULL, &o), PF_EINVAL);
    pf_state_opts_init(&o);
    o.fallback_state = "u";
    assert_pf_err(pf_agent_add_state(a, "u", noop, NULL, &o), PF_EINVAL);
    assert_int_equal(pf_agent_state_count(a), 2); /* nothing half-added */
    assert_int_equal(pf_agent_state_index(a, "t"), 1);
    assert_pf_err(pf_agent_state_index(a, "u"), PF_ENOTFOUND);
    assert_string_equal(pf_agent_state_name(a, 0), "s");
    assert_null(pf_agent_state_name(a, 2));
    pf_agent_free(a);
}

static atomic_int g_calls;

static int
count_call(pf_ctx_t *ctx, void *arg)
{
    (void)ctx;
    (void)arg;
    atomic_fetch_add(&g_calls, 1);
    return 0;
}

static void
test_agent_unknown_dependency_fails_before_anything_runs(void **state)
{
    pf_agent_t *a = agent_on(g_ex, PF_EXEC_PARALLEL);
    const char *deps[] = {"missing"};
    pf_run_result_t res;
    pf_state_opts_t o;

    (void)state;
    atomic_store(&g_calls, 0);
    pf_state_opts_init(&o);
    o.depends_on = deps;
    o.depends_on_len = 1;
    assert_pf_ok(pf_agent_add_state(a, "first", count_call, NULL, NULL));
    assert_pf_ok(pf_agent_add_state(a, "second", count_call, NULL, &o));
    assert_pf_err(pf_agent_run(a, NULL, &res), PF_EINVAL);
    assert_null(res.priv_run);
    assert_int_equal(atomic_load(&g_calls), 0);
    assert_non_null(strstr(pf_agent_last_error(a), "'second'"));
    assert_non_null(strstr(pf_agent_last_error(a), "'missing'"));
    /* The definition can be completed and validated again. */
    assert_pf_ok(pf_agent_add_state(a, "missing", count_call, NULL, NULL));
    assert_pf_ok(pf_agent_validate(a));
    assert_string_equal(pf_agent_last_error(a), "");
    assert_pf_ok(pf_agent_run(a, NULL, NULL));
    assert_int_equal(atomic_load(&g_calls), 3);
    assert_pf_err(pf_agent_add_state(a, "late", noop, NULL, NULL), PF_ESTATE);
    pf_agent_free(a);
}

static void
test_agent_dependency_cycle_is_rejected(void **state)
{
    pf_agent_t *a = agent_on(g_ex, PF_EXEC_PARALLEL);
    const char *da[] = {"c"};
    const char *db[] = {"a"};
    const char *dc[] = {"b"};
    pf_state_opts_t o;

    (void)state;
    assert_pf_ok(pf_agent_add_state(a, "root", noop, NULL, NULL));
    pf_state_opts_init(&o);
    o.depends_on_len = 1;
    o.depends_on = da;
    assert_pf_ok(pf_agent_add_state(a, "a", noop, NULL, &o));
    o.depends_on = db;
    assert_pf_ok(pf_agent_add_state(a, "b", noop, NULL, &o));
    o.depends_on = dc;
    assert_pf_ok(pf_agent_add_state(a, "c", noop, NULL, &o));
    assert_pf_err(pf_agent_validate(a), PF_EINVAL);
    assert_non_null(strstr(pf_agent_last_error(a), "cycle"));
    assert_pf_err(pf_agent_run(a, NULL, NULL), PF_EINVAL);
    pf_agent_free(a);
}

static void
test_agent_unknown_next_or_fallback_state_is_rejected(void **state)
{
    pf_agent_t *a = agent_on(g_ex, PF_EXEC_PARALLEL);
    pf_agent_t *b = agent_on(g_ex, PF_EXEC_PARALLEL);
    const char *next[] = {"nowhere"};
    const char *deps[] = {"s"};
    pf_state_opts_t o;

    (void)state;
    pf_state_opts_init(&o);
    o.next = next;
    o.next_len = 1;
    assert_pf_ok(pf_agent_add_state(a, "s", noop, NULL, &o));
    assert_pf_err(pf_agent_validate(a), PF_EINVAL);
    assert_non_null(strstr(pf_agent_last_error(a), "'nowhere'"));
    pf_state_opts_init(&o);
    o.fallback_state = "plan_b";
    assert_pf_ok(pf_agent_add_state(b, "s", noop, NULL, &o));
    assert_pf_err(pf_agent_validate(b), PF_EINVAL);
    assert_non_null(strstr(pf_agent_last_error(b), "'plan_b'"));
    pf_state_opts_init(&o);
    o.depends_on = deps;
    o.depends_on_len = 1;
    assert_pf_ok(pf_agent_add_state(b, "plan_b", noop, NULL, &o));
    assert_pf_err(pf_agent_validate(b), PF_EINVAL); /* plan_b waits on s */
    assert_non_null(strstr(pf_agent_last_error(b), "dependencies"));
    pf_agent_free(a);
    pf_agent_free(b);
}

static void
test_agent_sequential_entry_with_dependencies_is_rejected(void **state)
{
    pf_agent_t *a = agent_on(g_ex, PF_EXEC_SEQUENTIAL);
    const char *deps[] = {"b"};
    pf_state_opts_t o;

    (void)state;
    pf_state_opts_init(&o);
    o.depends_on = deps;
    o.depends_on_len = 1;
    assert_pf_ok(pf_agent_add_state(a, "a", noop, NULL, &o));
    assert_pf_ok(pf_agent_add_state(a, "b", noop, NULL, NULL));
    assert_pf_err(pf_agent_validate(a), PF_EINVAL);
    assert_non_null(strstr(pf_agent_last_error(a), "'a'"));
    pf_agent_free(a);
}

static void
test_agent_with_no_states_completes_at_once(void **state)
{
    pf_agent_t *a = agent_on(g_ex, PF_EXEC_PARALLEL);
    pf_run_result_t res;
    pf_run_t *run = NULL;

    (void)state;
    assert_pf_ok(pf_agent_run(a, NULL, &res));
    assert_int_equal(res.completed, 0);
    pf_run_result_free(&res);
    assert_pf_ok(pf_agent_start(a, NULL, NULL, &run));
    assert_pf_ok(pf_run_wait(run, NULL, NULL));
    assert_true(pf_run_done(run));
    pf_run_free(run);
    pf_agent_free(a);
}

/* ---- routing ------------------------------------------------------------- */

static void
test_agent_sequential_chain_follows_gotos_on_the_calling_thread(void **state)
{
    pf_agent_t *a = agent_on(g_ex, PF_EXEC_SEQUENTIAL);
    spec_t s[4];
    pf_run_result_t res;
    const char *names[4] = {"fetch", "parse", "store", "unused"};
    int i;

    (void)state;
    memset(s, 0, sizeof(s));
    s[0].go[0] = "parse";
    s[1].go[0] = "store";
    for (i = 0; i < 4; i++) {
        assert_pf_ok(pf_agent_add_state(a, names[i], spec_fn, &s[i], NULL));
    }
    assert_pf_ok(pf_agent_run(a, NULL, &res));
    assert_int_equal(res.completed, 3);
    assert_int_equal(res.not_run, 1);
    for (i = 0; i < 3; i++) {
        pf_state_result_t sr = state_result(&res, names[i]);

        assert_int_equal(atomic_load(&s[i].calls), 1);
        assert_int_equal(sr.outcome, PF_STATE_COMPLETED);
        assert_int_equal(sr.order, (uint64_t)i + 1);
        assert_int_equal(sr.attempts, 1);
        /* One state after another on this thread: no hand-off. */
        assert_true(pthread_equal(s[i].thread, pthread_self()));
        assert_string_equal(s[i].seen_state, names[i]);
        assert_string_equal(s[i].seen_agent, "test");
        assert_int_equal(s[i].last_attempt, 1);
    }
    assert_int_equal(atomic_load(&s[3].calls), 0);
    assert_int_equal(state_result(&res, "unused").outcome, PF_STATE_NOT_RUN);
    pf_run_result_free(&res);
    pf_run_result_free(&res); /* zeroed: no-op */
    pf_agent_free(a);
}

static void
test_agent_parallel_mode_starts_every_state_without_dependencies(void **state)
{
    pf_agent_t *a = agent_on(g_ex, PF_EXEC_PARALLEL);
    const char *deps[] = {"x", "y", "z"};
    spec_t s[4];
    pf_state_opts_t o;
    pf_run_result_t res;
    pf_state_result_t join;
    int i;

    (void)state;
    memset(s, 0, sizeof(s));
    assert_pf_ok(pf_agent_add_state(a, "x", spec_fn, &s[0], NULL));
    assert_pf_ok(pf_agent_add_state(a, "y", spec_fn, &s[1], NULL));
    assert_pf_ok(pf_agent_add_state(a, "z", spec_fn, &s[2], NULL));
    pf_state_opts_init(&o);
    o.depends_on = deps;
    o.depends_on_len = 3;
    assert_pf_ok(pf_agent_add_state(a, "join", spec_fn, &s[3], &o));
    for (int run = 0; run < 200; run++) {
        assert_pf_ok(pf_agent_run(a, NULL, &res));
        assert_int_equal(res.completed, 4);
        join = state_result(&res, "join");
        for (i = 0; i < 3; i++) {
            /* The join ends after each of its dependencies. */
            assert_true(state_result(&res, deps[i]).order < join.order);
        }
        assert_int_equal(join.order, 4);
        pf_run_result_free(&res);
    }
    for (i = 0; i < 4; i++) {
        assert_int_equal(atomic_load(&s[i].calls), 200);
    }
    pf_agent_free(a);
}

static void
test_agent_goto_fans_out_and_depends_on_joins(void **state)
{
    pf_agent_t *a = agent_on(g_ex, PF_EXEC_SEQUENTIAL);
    const char *deps[] = {"b", "c", "d"};
    spec_t s[5];
    pf_state_opts_t o;
    pf_run_result_t res;
    int run;
    int i;

    (void)state;
    memset(s, 0, sizeof(s));
    s[0].go[0] = "b";
    s[0].go[1] = "c";
    s[0].go[2] = "d";
    s[0].go[3] = "c"; /* twice: once */
    assert_pf_ok(pf_agent_add_state(a, "a", spec_fn, &s[0], NULL));
    assert_pf_ok(pf_agent_add_state(a, "b", spec_fn, &s[1], NULL));
    assert_pf_ok(pf_agent_add_state(a, "c", spec_fn, &s[2], NULL));
    assert_pf_ok(pf_agent_add_state(a, "d", spec_fn, &s[3], NULL));
    pf_state_opts_init(&o);
    o.depends_on = deps;
    o.depends_on_len = 3;
    assert_pf_ok(pf_agent_add_state(a, "e", spec_fn, &s[4], &o));
    for (run = 0; run < 300; run++) {
        pf_state_result_t e;

        assert_pf_ok(pf_agent_run(a, NULL, &res));
        assert_int_equal(res.completed, 5);
        e = state_result(&res, "e");
        assert_int_equal(e.order, 5);
        assert_int_equal(state_result(&res, "a").order, 1);
        pf_run_result_free(&res);
    }
    for (i = 0; i < 5; i++) {
        assert_int_equal(atomic_load(&s[i].calls), 300);
    }
    pf_agent_free(a);
}

static void
test_agent_state_runs_at_most_once_however_often_it_is_named(void **state)
{
    pf_agent_t *a = agent_on(g_ex, PF_EXEC_SEQUENTIAL);
    spec_t s[2];
    pf_run_result_t res;

    (void)state;
    memset(s, 0, sizeof(s));
    s[0].go[0] = "a"; /* itself */
    s[0].go[1] = "b";
    s[1].go[0] = "a"; /* back: a loop that does not loop */
    assert_pf_ok(pf_agent_add_state(a, "a", spec_fn, &s[0], NULL));
    assert_pf_ok(pf_agent_add_state(a, "b", spec_fn, &s[1], NULL));
    assert_pf_ok(pf_agent_run(a, NULL, &res));
    assert_int_equal(atomic_load(&s[0].calls), 1);
    assert_int_equal(atomic_load(&s[1].calls), 1);
    pf_run_result_free(&res);
    pf_agent_free(a);
}

static void
test_agent_goto_does_not_start_a_state_before_its_dependencies(void **state)
{
    pf_agent_t *a = agent_on(g_ex, PF_EXEC_SEQUENTIAL);
    const char *deps[] = {"b"};
    spec_t s[3];
    pf_state_opts_t o;
    pf_run_result_t res;

    (void)state;
    memset(s, 0, sizeof(s));
    s[0].go[0] = "c"; /* c depends on b, which nothing starts */
    assert_pf_ok(pf_agent_add_state(a, "a", spec_fn, &s[0], NULL));
    assert_pf_ok(pf_agent_add_state(a, "b", spec_fn, &s[1], NULL));
    pf_state_opts_init(&o);
    o.depends_on = deps;
    o.depends_on_len = 1;
    assert_pf_ok(pf_agent_add_state(a, "c", spec_fn, &s[2], &o));
    assert_pf_ok(pf_agent_run(a, NULL, &res));
    assert_int_equal(atomic_load(&s[2].calls), 0);
    assert_int_equal(state_result(&res, "c").outcome, PF_STATE_NOT_RUN);
    pf_run_result_free(&res);
    pf_agent_free(a);
}

static void
test_agent_goto_to_unknown_state_fails_the_state_without_retry(void **state)
{
    pf_agent_t *a = agent_on(g_ex, PF_EXEC_SEQUENTIAL);
    spec_t s = {0};
    pf_state_opts_t o;
    pf_run_result_t res;
    pf_state_result_t sr;

    (void)state;
    s.go[0] = "no_such_state";
    quick_retries(&o, 3);
    assert_pf_ok(pf_agent_add_state(a, "a", spec_fn, &s, &o));
    assert_pf_err(pf_agent_run(a, NULL, &res), PF_ENOTFOUND);
    sr = state_result(&res, "a");
    assert_int_equal(sr.outcome, PF_STATE_FAILED);
    assert_int_equal(sr.error, PF_ENOTFOUND);
    assert_int_equal(sr.attempts, 1);
    assert_int_equal(atomic_load(&s.calls), 1);
    pf_run_result_free(&res);
    pf_agent_free(a);
}

static int
goto_ignoring_errors(pf_ctx_t *ctx, void *arg)
{
    int *rc = arg;

    *rc = pf_ctx_goto(ctx, "c");
    return 0; /* the routing error still fails the attempt */
}

static void
test_agent_goto_outside_declared_next_states_is_einval(void **state)
{
    pf_agent_t *a = agent_on(g_ex, PF_EXEC_SEQUENTIAL);
    const char *next[] = {"b"};
    pf_state_opts_t o;
    pf_run_result_t res;
    int rc = 0;

    (void)state;
    pf_state_opts_init(&o);
    o.next = next;
    o.next_len = 1;
    assert_pf_ok(pf_agent_add_state(a, "a", goto_ignoring_errors, &rc, &o));
    assert_pf_ok(pf_agent_add_state(a, "b", noop, NULL, NULL));
    assert_pf_ok(pf_agent_add_state(a, "c", noop, NULL, NULL));
    assert_pf_err(pf_agent_run(a, NULL, &res), PF_EINVAL);
    assert_int_equal(rc, PF_EINVAL);
    assert_int_equal(state_result(&res, "a").outcome, PF_STATE_FAILED);
    assert_int_equal(state_result(&res, "c").outcome, PF_STATE_NOT_RUN);
    pf_run_result_free(&res);
    pf_agent_free(a);
}

static void
test_agent_goto_outside_a_state_is_estate(void **state)
{
    pf_ctx_t *ctx = NULL;

    (void)state;
    assert_pf_ok(pf_ctx_new(&ctx));
    assert_pf_err(pf_ctx_goto(ctx, "a"), PF_ESTATE);
    assert_pf_err(pf_ctx_goto(NULL, "a"), PF_EINVAL);
    assert_pf_err(pf_ctx_goto(ctx, NULL), PF_EINVAL);
    pf_ctx_free(ctx);
}

static int
many_gotos(pf_ctx_t *ctx, void *arg)
{
    int i;

    (void)arg;
    for (i = 1; i <= 9; i++) {
        char name[8];
        int rc;

        snprintf(name, sizeof(name), "n%d", i);
        rc = pf_ctx_goto(ctx, name);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

static void
test_agent_goto_to_many_states_runs_them_all_once(void **state)
{
    pf_agent_t *a = agent_on(g_ex, PF_EXEC_SEQUENTIAL);
    spec_t s[10];
    pf_run_result_t res;
    int i;

    (void)state;
    memset(s, 0, sizeof(s));
    assert_pf_ok(pf_agent_add_state(a, "n0", many_gotos, NULL, NULL));
    for (i = 1; i <= 9; i++) {
        char name[8];

        snprintf(name, sizeof(name), "n%d", i);
        assert_pf_ok(pf_agent_add_state(a, name, spec_fn, &s[i], NULL));
    }
    for (int run = 0; run < 50; run++) {
        assert_pf_ok(pf_agent_run(a, NULL, &res));
        assert_int_equal(res.completed, 10);
        pf_run_result_free(&res);
    }
    for (i = 1; i <= 9; i++) {
        assert_int_equal(atomic_load(&s[i].calls), 50);
    }
    pf_agent_free(a);
}

typedef struct blocker {
    pf__task_t task;
    atomic_int started;
    atomic_int release;
} blocker_t;

static void
block_task(pf__task_t *t)
{
    blocker_t *b = (blocker_t *)t;

    atomic_store(&b->started, 1);
    while (atomic_load(&b->release) == 0) {
        sched_yield();
    }
}

static int g_order[4];
static atomic_int g_norder;

static int
log_prio(pf_ctx_t *ctx, void *arg)
{
    (void)ctx;
    g_order[atomic_fetch_add(&g_norder, 1)] = (int)(intptr_t)arg;
    return 0;
}

static void
test_agent_ready_states_run_highest_priority_first(void **state)
{
    pf_executor_t *ex = executor_on(NULL, 1);
    pf_agent_t *a = agent_on(ex, PF_EXEC_SEQUENTIAL);
    spec_t s = {0};
    blocker_t b = {0};
    pf_state_opts_t o;
    const char *names[4] = {"low", "normal", "high", "critical"};
    int i;

    (void)state;
    s.go[0] = "low";
    s.go[1] = "normal";
    s.go[2] = "high";
    s.go[3] = "critical";
    assert_pf_ok(pf_agent_add_state(a, "fan", spec_fn, &s, NULL));
    for (i = 0; i < 4; i++) {
        pf_state_opts_init(&o);
        o.priority = (pf_priority_t)i;
        assert_pf_ok(
            pf_agent_add_state(a, names[i], log_prio, (void *)(intptr_t)i, &o));
    }
    /* The only worker is kept busy: this thread runs everything, and picks
     * the highest priority each time. */
    b.task.fn = block_task;
    pf__exec_push(ex, &b.task);
    pf_test_wait_for_flag(&b.started, 1);
    atomic_store(&g_norder, 0);
    assert_pf_ok(pf_agent_run(a, NULL, NULL));
    assert_int_equal(atomic_load(&g_norder), 4);
    for (i = 0; i < 4; i++) {
        assert_int_equal(g_order[i], 3 - i);
    }
    atomic_store(&b.release, 1);
    pf_agent_free(a);
    pf_executor_free(ex);
}

static void
test_agent_run_starts_entry_states_in_priority_order(void **state)
{
    pf_executor_t *ex = executor_on(NULL, 1);
    pf_agent_t *a = agent_on(ex, PF_EXEC_PARALLEL);
    blocker_t b = {0};
    pf_state_opts_t o;
    /* Added lowest first; two of equal priority keep the order added. */
    const char *names[4] = {"low", "normal", "critical", "normal2"};
    const int prios[4] = {PF_PRIORITY_LOW, PF_PRIORITY_NORMAL,
                          PF_PRIORITY_CRITICAL, PF_PRIORITY_NORMAL};
    const int expected[4] = {2, 1, 3, 0};
    int i;

    (void)state;
    for (i = 0; i < 4; i++) {
        pf_state_opts_init(&o);
        o.priority = (pf_priority_t)prios[i];
        assert_pf_ok(
            pf_agent_add_state(a, names[i], log_prio, (void *)(intptr_t)i, &o));
    }
    /* The only worker is kept busy: this thread starts every entry. */
    b.task.fn = block_task;
    pf__exec_push(ex, &b.task);
    pf_test_wait_for_flag(&b.started, 1);
    atomic_store(&g_norder, 0);
    assert_pf_ok(pf_agent_run(a, NULL, NULL));
    assert_int_equal(atomic_load(&g_norder), 4);
    for (i = 0; i < 4; i++) {
        assert_int_equal(g_order[i], expected[i]);
    }
    atomic_store(&b.release, 1);
    pf_agent_free(a);
    pf_executor_free(ex);
}

typedef struct done_waiter {
    atomic_int called;
    int wait_rc;
    int completed;
} done_waiter_t;

/* The run's own on_done waits for it and reads its result. */
static void
wait_in_on_done(pf_run_t *run, void *arg)
{
    done_waiter_t *w = arg;
    pf_run_result_t res;

    w->wait_rc = pf_run_wait(run, NULL, &res);
    w->completed = (int)res.completed;
    pf_run_result_free(&res);
    pf_run_free(run);
    atomic_store(&w->called, 1);
}

static void
test_agent_on_done_may_wait_for_its_run(void **state)
{
    pf_executor_t *ex = executor_on(NULL, 1);
    pf_agent_t *a = agent_on(ex, PF_EXEC_SEQUENTIAL);
    spec_t s = {0};
    done_waiter_t w = {0};
    pf_run_opts_t ro;
    pf_run_t *run = NULL;

    (void)state;
    assert_pf_ok(pf_agent_add_state(a, "s", spec_fn, &s, NULL));
    pf_run_opts_init(&ro);
    ro.on_done = wait_in_on_done;
    ro.on_done_arg = &w;
    assert_pf_ok(pf_agent_start(a, NULL, &ro, &run));
    pf_test_wait_for_flag(&w.called, 1); /* returned at once */
    assert_pf_ok(w.wait_rc);
    assert_int_equal(w.completed, 1);
    pf_agent_free(a);
    pf_executor_free(ex);
}

/* ---- context and results ------------------------------------------------- */

static int
producer(pf_ctx_t *ctx, void *arg)
{
    (void)arg;
    assert_pf_ok(pf_ctx_set_string(ctx, "payload", "data"));
    assert_pf_ok(pf_ctx_mark_output(ctx, "payload"));
    return pf_ctx_goto(ctx, "consumer");
}

static int
consumer(pf_ctx_t *ctx, void *arg)
{
    char buf[16];
    int64_t runs = 0;

    (void)arg;
    assert_pf_ok(pf_ctx_get_string(ctx, "payload", buf, sizeof(buf), NULL));
    assert_string_equal(buf, "data");
    pf_ctx_get_int(ctx, "runs", &runs);
    return pf_ctx_set_int(ctx, "runs", runs + 1);
}

static void
test_agent_states_share_the_runs_context(void **state)
{
    pf_agent_t *a = agent_on(g_ex, PF_EXEC_SEQUENTIAL);
    pf_ctx_t *ctx = NULL;
    int64_t runs = 0;

    (void)state;
    assert_pf_ok(pf_agent_add_state(a, "producer", producer, NULL, NULL));
    assert_pf_ok(pf_agent_add_state(a, "consumer", consumer, NULL, NULL));
    assert_pf_ok(pf_ctx_new(&ctx));
    assert_pf_ok(pf_agent_run(a, ctx, NULL));
    assert_pf_ok(pf_agent_run(a, ctx, NULL));
    assert_pf_ok(pf_ctx_get_int(ctx, "runs", &runs));
    assert_int_equal(runs, 2); /* the caller's context lives on */
    assert_true(pf_ctx_is_output(ctx, "payload"));
    /* Without a context each run has a fresh one. */
    assert_pf_ok(pf_agent_run(a, NULL, NULL));
    assert_pf_ok(pf_agent_run(a, NULL, NULL));
    pf_ctx_free(ctx);
    pf_agent_free(a);
}

static void
test_agent_run_result_accessors_check_their_arguments(void **state)
{
    pf_agent_t *a = agent_on(g_ex, PF_EXEC_SEQUENTIAL);
    pf_run_result_t res;
    pf_run_result_t empty = {0};
    pf_state_result_t sr;
    pf_dead_letter_t dl;

    (void)state;
    assert_pf_ok(pf_agent_add_state(a, "only", noop, NULL, NULL));
    assert_pf_ok(pf_agent_run(a, NULL, &res));
    assert_pf_ok(pf_run_result_state(&res, 0, &sr));
    assert_string_equal(sr.name, "only");
    assert_pf_err(pf_run_result_state(&res, 1, &sr), PF_ERANGE);
    assert_pf_err(pf_run_result_find(&res, "other", &sr), PF_ENOTFOUND);
    assert_pf_err(pf_run_result_find(&res, NULL, &sr), PF_EINVAL);
    assert_pf_err(pf_run_result_state(&empty, 0, &sr), PF_EINVAL);
    assert_pf_err(pf_run_result_dead_letter(&res, 0, &dl), PF_ERANGE);
    assert_pf_err(pf_run_result_dead_letter(NULL, 0, &dl), PF_EINVAL);
    assert_string_equal(pf_state_outcome_name(PF_STATE_SKIPPED), "skipped");
    assert_string_equal(pf_state_outcome_name((pf_state_outcome_t)42),
                        "unknown");
    pf_run_result_free(&res);
    pf_run_result_free(NULL);
    pf_agent_free(a);
}

/* ---- failures ------------------------------------------------------------ */

static void
test_agent_failing_state_becomes_a_dead_letter_and_others_go_on(void **state)
{
    pf_agent_t *a = agent_on(g_ex, PF_EXEC_PARALLEL);
    const char *deps[] = {"flaky"};
    spec_t flaky = {0};
    spec_t after = {0};
    spec_t other = {0};
    pf_state_opts_t o;
    pf_run_result_t res;
    pf_state_result_t sr;
    pf_dead_letter_t dl;

    (void)state;
    flaky.fail_first = 100;
    flaky.code = -7;
    quick_retries(&o, 3);
    assert_pf_ok(pf_agent_add_state(a, "flaky", spec_fn, &flaky, &o));
    pf_state_opts_init(&o);
    o.depends_on = deps;
    o.depends_on_len = 1;
    assert_pf_ok(pf_agent_add_state(a, "after", spec_fn, &after, &o));
    assert_pf_ok(pf_agent_add_state(a, "other", spec_fn, &other, NULL));
    assert_int_equal(pf_agent_run(a, NULL, &res), -7);
    assert_int_equal(res.status, -7);
    assert_int_equal(atomic_load(&flaky.calls), 4); /* 1 + 3 retries */
    assert_int_equal(atomic_load(&after.calls), 0);
    assert_int_equal(atomic_load(&other.calls), 1);
    assert_int_equal(res.failed, 1);
    assert_int_equal(res.skipped, 1);
    assert_int_equal(res.completed, 1);
    assert_int_equal(res.dead_letters, 1);
    sr = state_result(&res, "flaky");
    assert_int_equal(sr.outcome, PF_STATE_FAILED);
    assert_int_equal(sr.error, -7);
    assert_int_equal(sr.attempts, 4);
    assert_true(sr.dead_letter);
    assert_int_equal(state_result(&res, "after").outcome, PF_STATE_SKIPPED);
    assert_pf_ok(pf_run_result_dead_letter(&res, 0, &dl));
    assert_string_equal(dl.state, "flaky");
    assert_string_equal(dl.agent, "test");
    assert_int_equal(dl.error, -7);
    assert_int_equal(dl.attempts, 4);
    assert_false(dl.timed_out);
    assert_true(dl.failed_at_ns > 0);
    pf_run_result_free(&res);
    pf_agent_free(a);
}

static void
test_agent_dead_letter_off_fails_without_a_dead_letter(void **state)
{
    pf_agent_t *a = agent_on(g_ex, PF_EXEC_PARALLEL);
    spec_t s = {0};
    pf_state_opts_t o;
    pf_run_result_t res;

    (void)state;
    s.fail_first = 10;
    s.code = 3;
    quick_retries(&o, 0);
    o.dead_letter = false;
    assert_pf_ok(pf_agent_add_state(a, "s", spec_fn, &s, &o));
    assert_int_equal(pf_agent_run(a, NULL, &res), 3);
    assert_int_equal(res.failed, 1);
    assert_int_equal(res.dead_letters, 0);
    assert_false(state_result(&res, "s").dead_letter);
    pf_run_result_free(&res);
    pf_agent_free(a);
}

static void
test_agent_state_that_recovers_on_a_retry_completes(void **state)
{
    pf_agent_t *a = agent_on(g_ex, PF_EXEC_SEQUENTIAL);
    spec_t s = {0};
    pf_state_opts_t o;
    pf_run_result_t res;
    pf_agent_metrics_t m;
    pf_state_result_t sr;

    (void)state;
    s.fail_first = 2;
    s.code = -1;
    quick_retries(&o, 3);
    assert_pf_ok(pf_agent_add_state(a, "s", spec_fn, &s, &o));
    assert_pf_ok(pf_agent_run(a, NULL, &res));
    sr = state_result(&res, "s");
    assert_int_equal(sr.outcome, PF_STATE_COMPLETED);
    assert_int_equal(sr.attempts, 3);
    assert_int_equal(sr.error, 0);
    assert_int_equal(s.last_attempt, 3);
    pf_run_result_free(&res);
    pf_agent_metrics(a, &m);
    assert_int_equal(m.retries, 2);
    assert_int_equal(m.runs_finished, 1);
    assert_int_equal(m.runs_failed, 0);
    assert_int_equal(m.states_completed, 1);
    pf_agent_free(a);
}

static void
test_agent_retry_policy_retries_only_listed_results(void **state)
{
    pf_backoff_t backoff;
    pf_agent_t *a = agent_on(g_ex, PF_EXEC_SEQUENTIAL);
    const int transient[] = {-11};
    pf_retry_policy_t p;
    spec_t s = {0};
    pf_state_opts_t o;

    (void)state;
    pf_retry_policy_init(&p);
    p.max_retries = 5;
    pf_backoff_init(&backoff);
    backoff.initial_delay = 0.0;
    backoff.max_delay = 0.0;
    p.backoff = &backoff;
    p.retry_on = transient;
    p.retry_on_len = 1;
    pf_state_opts_init(&o);
    o.retry = &p;
    s.fail_first = 100;
    s.code = -12; /* not transient */
    assert_pf_ok(pf_agent_add_state(a, "s", spec_fn, &s, &o));
    assert_int_equal(pf_agent_run(a, NULL, NULL), -12);
    assert_int_equal(atomic_load(&s.calls), 1);
    s.code = -11;
    atomic_store(&s.calls, 0);
    assert_int_equal(pf_agent_run(a, NULL, NULL), -11);
    assert_int_equal(atomic_load(&s.calls), 6);
    pf_agent_free(a);
}

/* ---- breaker ------------------------------------------------------------- */

static int
cached(pf_ctx_t *ctx, void *arg, int reason)
{
    atomic_int *n = arg;

    atomic_fetch_add(n, 1);
    assert_int_equal(reason, PF_EOPEN);
    return pf_ctx_set_string(ctx, "response", "cached");
}

static void
test_agent_open_breaker_rejects_without_calling_or_retrying(void **state)
{
    pf_agent_t *a = agent_on(g_ex, PF_EXEC_SEQUENTIAL);
    spec_t s = {0};
    pf_state_opts_t o;
    pf_run_result_t res;
    pf_state_result_t sr;

    (void)state;
    quick_retries(&o, 3);
    o.own_breaker = true;
    assert_pf_ok(pf_agent_add_state(a, "call_api", spec_fn, &s, &o));
    assert_string_equal(pf_breaker_name(pf_agent_state_breaker(a, "call_api")),
                        "test/call_api");
    pf_breaker_force_open(pf_agent_state_breaker(a, "call_api"));
    assert_pf_err(pf_agent_run(a, NULL, &res), PF_EOPEN);
    sr = state_result(&res, "call_api");
    assert_int_equal(sr.outcome, PF_STATE_FAILED);
    assert_int_equal(sr.error, PF_EOPEN);
    assert_int_equal(sr.attempts, 0);
    assert_true(sr.dead_letter);
    assert_int_equal(atomic_load(&s.calls), 0);
    pf_run_result_free(&res);
    pf_agent_free(a);
}

static void
test_agent_fallback_fn_stands_in_while_the_breaker_is_open(void **state)
{
    pf_agent_t *a = agent_on(g_ex, PF_EXEC_SEQUENTIAL);
    const char *deps[] = {"call_api"};
    spec_t api = {0};
    spec_t render = {0};
    atomic_int fallbacks = 0;
    pf_state_opts_t o;
    pf_run_result_t res;
    pf_state_result_t sr;
    pf_ctx_t *ctx = NULL;
    char buf[16];

    (void)state;
    quick_retries(&o, 3);
    o.own_breaker = true;
    o.fallback = cached;
    o.fallback_arg = &fallbacks;
    assert_pf_ok(pf_agent_add_state(a, "call_api", spec_fn, &api, &o));
    pf_state_opts_init(&o);
    o.depends_on = deps;
    o.depends_on_len = 1;
    assert_pf_ok(pf_agent_add_state(a, "render", spec_fn, &render, &o));
    pf_breaker_force_open(pf_agent_state_breaker(a, "call_api"));
    assert_pf_ok(pf_ctx_new(&ctx));
    assert_pf_ok(pf_agent_run(a, ctx, &res));
    sr = state_result(&res, "call_api");
    assert_int_equal(sr.outcome, PF_STATE_COMPLETED);
    assert_true(sr.fell_back);
    assert_int_equal(sr.error, PF_EOPEN);
    assert_int_equal(atomic_load(&api.calls), 0);
    assert_int_equal(atomic_load(&fallbacks), 1);
    assert_int_equal(atomic_load(&render.calls), 1); /* dependents go on */
    assert_pf_ok(pf_ctx_get_string(ctx, "response", buf, sizeof(buf), NULL));
    assert_string_equal(buf, "cached");
    pf_run_result_free(&res);
    /* Closed again: the state itself runs. */
    pf_breaker_force_close(pf_agent_state_breaker(a, "call_api"));
    assert_pf_ok(pf_agent_run(a, ctx, NULL));
    assert_int_equal(atomic_load(&api.calls), 1);
    assert_int_equal(atomic_load(&fallbacks), 1);
    pf_ctx_free(ctx);
    pf_agent_free(a);
}

static void
test_agent_fallback_state_is_started_when_the_breaker_rejects(void **state)
{
    pf_agent_t *a = agent_on(g_ex, PF_EXEC_SEQUENTIAL);
    const char *deps[] = {"primary"};
    spec_t primary = {0};
    spec_t backup = {0};
    spec_t after = {0};
    pf_state_opts_t o;
    pf_run_result_t res;

    (void)state;
    pf_state_opts_init(&o);
    o.own_breaker = true;
    o.fallback_state = "backup";
    assert_pf_ok(pf_agent_add_state(a, "primary", spec_fn, &primary, &o));
    assert_pf_ok(pf_agent_add_state(a, "backup", spec_fn, &backup, NULL));
    pf_state_opts_init(&o);
    o.depends_on = deps;
    o.depends_on_len = 1;
    assert_pf_ok(pf_agent_add_state(a, "after", spec_fn, &after, &o));
    pf_breaker_force_open(pf_agent_state_breaker(a, "primary"));
    assert_pf_ok(pf_agent_run(a, NULL, &res)); /* handled: not a failure */
    assert_int_equal(state_result(&res, "primary").outcome, PF_STATE_FELL_BACK);
    assert_int_equal(state_result(&res, "backup").outcome, PF_STATE_COMPLETED);
    assert_int_equal(state_result(&res, "after").outcome, PF_STATE_SKIPPED);
    assert_int_equal(res.fell_back, 1);
    assert_int_equal(res.dead_letters, 0);
    assert_int_equal(atomic_load(&backup.calls), 1);
    assert_int_equal(atomic_load(&after.calls), 0);
    pf_run_result_free(&res);
    pf_agent_free(a);
}

static void
test_agent_retries_stop_when_the_breaker_opens(void **state)
{
    pf_breaker_config_t breaker_cfg;
    pf_agent_t *a = agent_on(g_ex, PF_EXEC_SEQUENTIAL);
    spec_t s = {0};
    pf_state_opts_t o;
    pf_run_result_t res;
    pf_state_result_t sr;

    (void)state;
    s.fail_first = 100;
    s.code = -5;
    quick_retries(&o, 10);
    o.own_breaker = true;
    pf_breaker_config_init(&breaker_cfg);
    breaker_cfg.failure_threshold = 3;
    o.breaker_config = &breaker_cfg;
    assert_pf_ok(pf_agent_add_state(a, "unreliable", spec_fn, &s, &o));
    assert_pf_err(pf_agent_run(a, NULL, &res), PF_EOPEN);
    sr = state_result(&res, "unreliable");
    assert_int_equal(sr.attempts, 3); /* the third failure opened it */
    assert_int_equal(sr.error, PF_EOPEN);
    assert_int_equal(atomic_load(&s.calls), 3);
    assert_int_equal(pf_breaker_state(pf_agent_state_breaker(a, "unreliable")),
                     PF_BREAKER_OPEN);
    pf_run_result_free(&res);
    pf_agent_free(a);
}

static int
fallback_any(pf_ctx_t *ctx, void *arg, int reason)
{
    int *seen = arg;

    (void)ctx;
    *seen = reason;
    return 0;
}

static void
test_agent_fallback_on_failure_completes_after_retries_run_out(void **state)
{
    pf_agent_t *a = agent_on(g_ex, PF_EXEC_SEQUENTIAL);
    spec_t s = {0};
    pf_state_opts_t o;
    pf_run_result_t res;
    pf_state_result_t sr;
    int seen = 0;

    (void)state;
    s.fail_first = 100;
    s.code = -3;
    quick_retries(&o, 2);
    o.fallback = fallback_any;
    o.fallback_arg = &seen;
    o.fallback_on_failure = true;
    assert_pf_ok(pf_agent_add_state(a, "s", spec_fn, &s, &o));
    assert_pf_ok(pf_agent_run(a, NULL, &res));
    sr = state_result(&res, "s");
    assert_int_equal(sr.outcome, PF_STATE_COMPLETED);
    assert_true(sr.fell_back);
    assert_int_equal(sr.attempts, 3);
    assert_int_equal(seen, -3);
    assert_int_equal(res.dead_letters, 0);
    pf_run_result_free(&res);
    pf_agent_free(a);
}

/* ---- the breaker's own fallback ------------------------------------------ */

/* A state and its breaker's fallback share the state's arg, as
 * pf_breaker_call's call and fallback share theirs. */
typedef struct guarded {
    atomic_int calls;
    int code;       /* what the state returns */
    atomic_int fallbacks;
    int reason;     /* the fallback's last reason */
    int answer;     /* what the fallback returns */
    const char *go; /* a state to go to on success, or NULL */
} guarded_t;

static int
guarded_fn(pf_ctx_t *ctx, void *arg)
{
    guarded_t *g = arg;

    atomic_fetch_add(&g->calls, 1);
    if (g->go != NULL) {
        pf_ctx_goto(ctx, g->go);
    }
    return g->code;
}

static int
guarded_fallback(void *arg, int reason)
{
    guarded_t *g = arg;

    atomic_fetch_add(&g->fallbacks, 1);
    g->reason = reason;
    return g->answer;
}

static void
guarded_breaker_config(pf_breaker_config_t *cfg)
{
    static const int expected[] = {CONN_ERR};

    pf_breaker_config_init(cfg);
    cfg->failure_threshold = 100;
    cfg->expected_errors = expected;
    cfg->expected_errors_len = 1;
    cfg->fallback = guarded_fallback;
}

/* Run a's state "s" (arg g) with its breaker forced open: the breaker's
 * fallback answers with the state's arg and PF_EOPEN. */
static void
check_rejection_answered(pf_agent_t *a, guarded_t *g)
{
    pf_run_result_t res;
    pf_state_result_t sr;
    pf_agent_metrics_t m;

    pf_breaker_force_open(pf_agent_state_breaker(a, "s"));
    assert_pf_ok(pf_agent_run(a, NULL, &res));
    sr = state_result(&res, "s");
    assert_int_equal(sr.outcome, PF_STATE_COMPLETED);
    assert_true(sr.fell_back);
    assert_int_equal(sr.error, PF_EOPEN);
    assert_int_equal(sr.attempts, 0);
    assert_int_equal(atomic_load(&g->calls), 0);
    assert_int_equal(atomic_load(&g->fallbacks), 1);
    assert_int_equal(g->reason, PF_EOPEN);
    assert_int_equal(state_result(&res, "after").outcome, PF_STATE_COMPLETED);
    pf_run_result_free(&res);
    pf_agent_metrics(a, &m);
    assert_int_equal(m.fallbacks, 1);
    assert_int_equal(m.rejections, 1);
    pf_breaker_force_close(pf_agent_state_breaker(a, "s"));
}

static void
add_after(pf_agent_t *a)
{
    const char *deps[] = {"s"};
    pf_state_opts_t o;

    pf_state_opts_init(&o);
    o.depends_on = deps;
    o.depends_on_len = 1;
    assert_pf_ok(pf_agent_add_state(a, "after", noop, NULL, &o));
}

static void
test_agent_breaker_fallback_answers_when_its_breaker_rejects(void **state)
{
    pf_registry_t *reg = NULL;
    pf_breaker_t *shared = NULL;
    pf_breaker_config_t bc;
    pf_state_opts_t o;
    pf_agent_t *a;
    guarded_t g;

    (void)state;
    /* Its own breaker, from the config the options point to. */
    memset(&g, 0, sizeof(g));
    a = agent_on(g_ex, PF_EXEC_PARALLEL);
    quick_retries(&o, 3);
    o.own_breaker = true;
    guarded_breaker_config(&bc);
    o.breaker_config = &bc;
    assert_pf_ok(pf_agent_add_state(a, "s", guarded_fn, &g, &o));
    add_after(a);
    check_rejection_answered(a, &g);
    pf_agent_free(a);

    /* A breaker shared by pointer. */
    memset(&g, 0, sizeof(g));
    guarded_breaker_config(&bc);
    bc.name = "shared";
    assert_pf_ok(pf_breaker_new(&bc, &shared));
    a = agent_on(g_ex, PF_EXEC_PARALLEL);
    quick_retries(&o, 3);
    o.breaker = shared;
    assert_pf_ok(pf_agent_add_state(a, "s", guarded_fn, &g, &o));
    add_after(a);
    check_rejection_answered(a, &g);
    pf_agent_free(a);
    pf_breaker_free(shared);

    /* A breaker by name, made in the registry from the state's config. */
    memset(&g, 0, sizeof(g));
    assert_pf_ok(pf_registry_new(NULL, &reg));
    a = agent_on(g_ex, PF_EXEC_PARALLEL);
    quick_retries(&o, 3);
    o.registry = reg;
    o.breaker_name = "by-name";
    o.own_breaker = true;
    guarded_breaker_config(&bc);
    o.breaker_config = &bc;
    assert_pf_ok(pf_agent_add_state(a, "s", guarded_fn, &g, &o));
    add_after(a);
    check_rejection_answered(a, &g);
    pf_agent_free(a);
    pf_registry_free(reg);
}

static void
test_agent_breaker_fallback_answers_a_counted_failure_not_an_ignored_one(
    void **state)
{
    pf_breaker_config_t bc;
    pf_agent_t *a = agent_on(g_ex, PF_EXEC_SEQUENTIAL);
    guarded_t g;
    spec_t next = {0};
    pf_state_opts_t o;
    pf_run_result_t res;
    pf_state_result_t sr;
    pf_breaker_metrics_t bm;

    (void)state;
    memset(&g, 0, sizeof(g));
    g.code = CONN_ERR;
    g.go = "next";
    quick_retries(&o, 2);
    o.own_breaker = true;
    guarded_breaker_config(&bc);
    o.breaker_config = &bc;
    assert_pf_ok(pf_agent_add_state(a, "s", guarded_fn, &g, &o));
    assert_pf_ok(pf_agent_add_state(a, "next", spec_fn, &next, NULL));
    /* A counted failure: the fallback answers at once, no retry. */
    assert_pf_ok(pf_agent_run(a, NULL, &res));
    sr = state_result(&res, "s");
    assert_int_equal(sr.outcome, PF_STATE_COMPLETED);
    assert_true(sr.fell_back);
    assert_int_equal(sr.error, CONN_ERR);
    assert_int_equal(sr.attempts, 1);
    assert_int_equal(atomic_load(&g.fallbacks), 1);
    assert_int_equal(g.reason, CONN_ERR);
    /* The answered attempt's goto stands. */
    assert_int_equal(state_result(&res, "next").outcome, PF_STATE_COMPLETED);
    pf_run_result_free(&res);
    /* An ignored error never reaches it: retried, then a dead letter. */
    g.code = VALUE_ERR;
    assert_pf_err(pf_agent_run(a, NULL, &res), VALUE_ERR);
    sr = state_result(&res, "s");
    assert_int_equal(sr.outcome, PF_STATE_FAILED);
    assert_false(sr.fell_back);
    assert_int_equal(sr.attempts, 3);
    assert_true(sr.dead_letter);
    assert_int_equal(atomic_load(&g.fallbacks), 1);
    pf_run_result_free(&res);
    /* Nor does a success. */
    g.code = 0;
    assert_pf_ok(pf_agent_run(a, NULL, &res));
    sr = state_result(&res, "s");
    assert_false(sr.fell_back);
    assert_int_equal(sr.error, 0);
    assert_int_equal(atomic_load(&g.fallbacks), 1);
    pf_run_result_free(&res);
    pf_breaker_metrics(pf_agent_state_breaker(a, "s"), &bm);
    assert_int_equal(bm.failures, 1);
    assert_int_equal(bm.ignored, 3);
    assert_int_equal(bm.successes, 1);
    pf_agent_free(a);
}

static void
test_agent_breaker_fallback_that_fails_is_the_attempts_result(void **state)
{
    pf_breaker_config_t bc;
    pf_agent_t *a = agent_on(g_ex, PF_EXEC_SEQUENTIAL);
    guarded_t g;
    pf_state_opts_t o;
    pf_run_result_t res;
    pf_state_result_t sr;
    pf_dead_letter_t dl;

    (void)state;
    memset(&g, 0, sizeof(g));
    g.code = CONN_ERR;
    g.answer = -9; /* no cached data either */
    quick_retries(&o, 1);
    o.own_breaker = true;
    guarded_breaker_config(&bc);
    o.breaker_config = &bc;
    assert_pf_ok(pf_agent_add_state(a, "s", guarded_fn, &g, &o));
    assert_pf_err(pf_agent_run(a, NULL, &res), -9);
    sr = state_result(&res, "s");
    assert_int_equal(sr.outcome, PF_STATE_FAILED);
    assert_true(sr.fell_back);
    assert_int_equal(sr.error, -9);
    assert_int_equal(sr.attempts, 2); /* -9 was retried as any failure */
    assert_int_equal(atomic_load(&g.fallbacks), 2);
    assert_pf_ok(pf_run_result_dead_letter(&res, 0, &dl));
    assert_int_equal(dl.error, -9);
    pf_run_result_free(&res);
    pf_agent_free(a);
}

static void
test_agent_states_own_fallback_wins_over_its_breakers(void **state)
{
    pf_breaker_config_t bc;
    pf_agent_t *a = agent_on(g_ex, PF_EXEC_SEQUENTIAL);
    guarded_t g;
    pf_state_opts_t o;
    pf_run_result_t res;
    pf_state_result_t sr;
    int seen = 0;

    (void)state;
    memset(&g, 0, sizeof(g));
    quick_retries(&o, 1);
    o.own_breaker = true;
    guarded_breaker_config(&bc);
    o.breaker_config = &bc;
    o.fallback = fallback_any;
    o.fallback_arg = &seen;
    assert_pf_ok(pf_agent_add_state(a, "s", guarded_fn, &g, &o));
    /* Rejected: the state's fallback, not the breaker's. */
    pf_breaker_force_open(pf_agent_state_breaker(a, "s"));
    assert_pf_ok(pf_agent_run(a, NULL, &res));
    sr = state_result(&res, "s");
    assert_true(sr.fell_back);
    assert_int_equal(seen, PF_EOPEN);
    assert_int_equal(atomic_load(&g.fallbacks), 0);
    pf_run_result_free(&res);
    /* A counted failure: the breaker's fallback does not run either; the
     * state's options decide (no fallback_on_failure: it fails). */
    pf_breaker_force_close(pf_agent_state_breaker(a, "s"));
    g.code = CONN_ERR;
    seen = 0;
    assert_pf_err(pf_agent_run(a, NULL, &res), CONN_ERR);
    sr = state_result(&res, "s");
    assert_int_equal(sr.outcome, PF_STATE_FAILED);
    assert_int_equal(sr.attempts, 2);
    assert_int_equal(seen, 0);
    assert_int_equal(atomic_load(&g.fallbacks), 0);
    pf_run_result_free(&res);
    pf_agent_free(a);
}

/* ---- bulkhead ------------------------------------------------------------ */

static void
test_agent_full_bulkhead_queues_the_state_without_a_thread(void **state)
{
    pf_agent_t *a = agent_on(g_ex, PF_EXEC_PARALLEL);
    pf_bulkhead_config_t bc;
    pf_bulkhead_t *bh = NULL;
    pf_bulkhead_metrics_t bm;
    holder_t h = {0};
    spec_t s = {0};
    pf_state_opts_t o;
    pf_run_t *r1 = NULL;
    pf_run_t *r2 = NULL;
    pf_agent_t *b = agent_on(g_ex, PF_EXEC_PARALLEL);

    (void)state;
    pf_bulkhead_config_init(&bc);
    bc.max_concurrent_calls = 1;
    bc.max_wait_duration = INFINITY;
    assert_pf_ok(pf_bulkhead_new(&bc, &bh));
    pf_state_opts_init(&o);
    o.bulkhead = bh; /* shared by two agents */
    assert_pf_ok(pf_agent_add_state(a, "holder", hold, &h, &o));
    assert_pf_ok(pf_agent_add_state(b, "waiter", spec_fn, &s, &o));
    assert_pf_ok(pf_agent_start(a, NULL, NULL, &r1));
    pf_test_wait_for_flag(&h.inside, 1);
    assert_pf_ok(pf_agent_start(b, NULL, NULL, &r2));
    for (;;) {
        pf_bulkhead_metrics(bh, &bm);
        if (bm.waiting == 1) {
            break;
        }
        sched_yield();
    }
    assert_int_equal(atomic_load(&s.calls), 0);
    assert_false(pf_run_done(r2));
    atomic_store(&h.release, 1);
    assert_pf_ok(pf_run_wait(r1, NULL, NULL));
    assert_pf_ok(pf_run_wait(r2, NULL, NULL));
    assert_int_equal(atomic_load(&s.calls), 1);
    pf_bulkhead_metrics(bh, &bm);
    assert_int_equal(bm.in_use, 0);
    assert_int_equal(bm.peak_in_use, 1);
    pf_run_free(r1);
    pf_run_free(r2);
    pf_agent_free(a);
    pf_agent_free(b);
    pf_bulkhead_free(bh);
}

static void
test_agent_bulkhead_with_no_room_fails_with_efull(void **state)
{
    pf_agent_t *a = agent_on(g_ex, PF_EXEC_PARALLEL);
    pf_agent_t *b = agent_on(g_ex, PF_EXEC_PARALLEL);
    pf_bulkhead_config_t bc;
    pf_bulkhead_t *bh = NULL;
    holder_t h = {0};
    spec_t s = {0};
    pf_state_opts_t o;
    pf_run_t *r1 = NULL;
    pf_run_result_t res;

    (void)state;
    pf_bulkhead_config_init(&bc);
    bc.max_concurrent_calls = 1;
    bc.max_queue_size = 0; /* nobody waits */
    assert_pf_ok(pf_bulkhead_new(&bc, &bh));
    quick_retries(&o, 2);
    o.bulkhead = bh;
    assert_pf_ok(pf_agent_add_state(a, "holder", hold, &h, &o));
    assert_pf_ok(pf_agent_add_state(b, "refused", spec_fn, &s, &o));
    assert_pf_ok(pf_agent_start(a, NULL, NULL, &r1));
    pf_test_wait_for_flag(&h.inside, 1);
    assert_pf_err(pf_agent_run(b, NULL, &res), PF_EFULL);
    assert_int_equal(atomic_load(&s.calls), 0);
    assert_int_equal(state_result(&res, "refused").error, PF_EFULL);
    pf_run_result_free(&res);
    atomic_store(&h.release, 1);
    assert_pf_ok(pf_run_wait(r1, NULL, NULL));
    pf_run_free(r1);
    pf_agent_free(a);
    pf_agent_free(b);
    pf_bulkhead_free(bh);
}

/* ---- sharing through a registry ------------------------------------------ */

static void
test_agent_states_share_a_breaker_by_name_through_a_registry(void **state)
{
    pf_bulkhead_config_t bulkhead_cfg;
    pf_registry_t *reg = NULL;
    pf_agent_t *a = agent_on(g_ex, PF_EXEC_SEQUENTIAL);
    pf_agent_t *b = agent_on(g_ex, PF_EXEC_SEQUENTIAL);
    pf_breaker_t *found = NULL;
    pf_state_opts_t o;
    spec_t sa = {0};
    spec_t sb = {0};

    (void)state;
    assert_pf_ok(pf_registry_new(NULL, &reg));
    pf_state_opts_init(&o);
    o.registry = reg;
    o.breaker_name = "payments";
    o.bulkhead_name = "payments";
    o.own_bulkhead = true; /* made from this config when absent */
    pf_bulkhead_config_init(&bulkhead_cfg);
    bulkhead_cfg.max_concurrent_calls = 7;
    o.bulkhead_config = &bulkhead_cfg;
    assert_pf_ok(pf_agent_add_state(a, "charge", spec_fn, &sa, &o));
    assert_pf_ok(pf_agent_add_state(b, "refund", spec_fn, &sb, &o));
    o.breaker_name = "";
    assert_pf_err(pf_agent_add_state(b, "bad", spec_fn, &sb, &o), PF_EINVAL);
    assert_pf_ok(pf_registry_find_breaker(reg, "payments", &found));
    assert_ptr_equal(pf_agent_state_breaker(a, "charge"), found);
    assert_ptr_equal(pf_agent_state_breaker(b, "refund"), found);
    assert_ptr_equal(pf_agent_state_bulkhead(a, "charge"),
                     pf_agent_state_bulkhead(b, "refund"));
    pf_breaker_force_open(found); /* opens it for both */
    assert_pf_err(pf_agent_run(a, NULL, NULL), PF_EOPEN);
    assert_pf_err(pf_agent_run(b, NULL, NULL), PF_EOPEN);
    pf_breaker_force_close(found);
    assert_pf_ok(pf_agent_run(a, NULL, NULL));
    assert_int_equal(atomic_load(&sa.calls), 1);
    pf_agent_free(a);
    pf_agent_free(b);
    pf_registry_free(reg); /* the registry owns what it made */
}

static void
test_agent_failed_add_state_removes_what_it_made_in_the_registry(void **state)
{
    pf_ratelimit_config_t ratelimit_cfg;
    pf_registry_t *reg = NULL;
    pf_agent_t *a = agent_on(g_ex, PF_EXEC_SEQUENTIAL);
    pf_breaker_t *kept = NULL;
    pf_breaker_t *found = NULL;
    pf_state_opts_t o;

    (void)state;
    assert_pf_ok(pf_registry_new(NULL, &reg));
    assert_pf_ok(pf_registry_get_breaker(reg, "kept", NULL, &kept));
    pf_state_opts_init(&o);
    o.registry = reg;
    o.breaker_name = "made-here";
    o.bulkhead_name = "made-here-too";
    o.ratelimit_name = "bad";
    o.own_ratelimit = true;
    pf_ratelimit_config_init(&ratelimit_cfg);
    ratelimit_cfg.rate = -1.0; /* the last one fails */
    o.ratelimit_config = &ratelimit_cfg;
    assert_pf_err(pf_agent_add_state(a, "s", noop, NULL, &o), PF_EINVAL);
    assert_pf_err(pf_registry_find_breaker(reg, "made-here", &found),
                  PF_ENOTFOUND);
    assert_int_equal(pf_registry_count(reg, PF_REGISTRY_ANY), 1);
    /* What was there before stays. */
    o.breaker_name = "kept";
    assert_pf_err(pf_agent_add_state(a, "s", noop, NULL, &o), PF_EINVAL);
    assert_pf_ok(pf_registry_find_breaker(reg, "kept", &found));
    assert_ptr_equal(found, kept);
    assert_int_equal(pf_registry_count(reg, PF_REGISTRY_ANY), 1);
    assert_int_equal(pf_agent_state_count(a), 0);
    /* Fixed, the same call makes them. */
    pf_ratelimit_config_init(&ratelimit_cfg);
    ratelimit_cfg.rate = 10.0;
    o.ratelimit_config = &ratelimit_cfg;
    assert_pf_ok(pf_agent_add_state(a, "s", noop, NULL, &o));
    assert_int_equal(pf_registry_count(reg, PF_REGISTRY_ANY), 3);
    pf_agent_free(a);
    pf_registry_free(reg);
}

static void
registry_alloc_scenario(void *arg)
{
    pf_registry_t *reg = NULL;
    pf_agent_t *a = NULL;
    pf_state_opts_t o;
    int rc;

    (void)arg;
    if (pf_registry_new(NULL, &reg) != 0) {
        return;
    }
    if (pf_agent_new("sweep", &a) != 0) {
        pf_registry_free(reg);
        return;
    }
    pf_state_opts_init(&o);
    o.registry = reg;
    o.breaker_name = "b";
    o.bulkhead_name = "bh";
    o.ratelimit_name = "rl";
    rc = pf_agent_add_state(a, "s", noop, NULL, &o);
    if (rc == 0) {
        assert_int_equal(pf_registry_count(reg, PF_REGISTRY_ANY), 3);
    } else {
        assert_int_equal(rc, PF_ENOMEM);
        assert_int_equal(pf_registry_count(reg, PF_REGISTRY_ANY), 0);
        assert_int_equal(pf_agent_state_count(a), 0);
    }
    pf_agent_free(a);
    pf_registry_free(reg);
}

static void
test_agent_add_state_out_of_memory_leaves_the_registry_as_it_was(void **state)
{
    (void)state;
    assert_true(pf_test_alloc_sweep(registry_alloc_scenario, NULL) > 5);
}

/* ---- profiles ------------------------------------------------------------ */

static void
test_agent_profiles_fill_options_as_the_original(void **state)
{
    pf_agent_t *a = agent_on(g_ex, PF_EXEC_PARALLEL);
    pf_bulkhead_metrics_t bm;
    pf_ratelimit_metrics_t rm;
    pf_state_opts_t o;

    (void)state;
    pf_state_opts_init(&o);
    assert_pf_ok(pf_state_opts_profile(&o, PF_PROFILE_CPU_INTENSIVE));
    assert_true(o.resources->cpu_units == 4.0);
    assert_true(o.resources->memory_mb == 1024.0);
    assert_int_equal(o.priority, PF_PRIORITY_HIGH);
    assert_true(o.timeout == 300.0);
    assert_int_equal(o.max_retries, 3);
    assert_true(o.own_breaker && o.own_bulkhead && !o.own_ratelimit);
    assert_int_equal(o.bulkhead_config->max_concurrent_calls, 2);
    assert_pf_ok(pf_agent_add_state(a, "crunch", noop, NULL, &o));
    pf_bulkhead_metrics(pf_agent_state_bulkhead(a, "crunch"), &bm);
    assert_int_equal(bm.max_concurrent, 2);
    assert_non_null(pf_agent_state_breaker(a, "crunch"));

    pf_state_opts_init(&o);
    assert_pf_ok(pf_state_opts_profile_named(&o, "network_intensive"));
    assert_int_equal(o.breaker_config->failure_threshold, 2);
    assert_true(o.breaker_config->recovery_timeout == 20.0);
    assert_int_equal(o.max_retries, 5);
    assert_true(o.resources->network_weight == 10.0);

    pf_state_opts_init(&o);
    assert_pf_ok(pf_state_opts_profile(&o, PF_PROFILE_QUICK));
    assert_true(o.own_ratelimit && !o.own_breaker);
    assert_false(o.leak_detection);
    assert_pf_ok(pf_agent_add_state(a, "quick", noop, NULL, &o));
    pf_ratelimit_metrics(pf_agent_state_ratelimit(a, "quick"), &rm);
    assert_true(rm.rate == 100.0);

    pf_state_opts_init(&o);
    assert_pf_ok(pf_state_opts_profile(&o, PF_PROFILE_CRITICAL));
    assert_int_equal(o.priority, PF_PRIORITY_CRITICAL);
    assert_int_equal(o.bulkhead_config->max_concurrent_calls, 1);
    assert_false(o.own_breaker);
    pf_state_opts_init(&o);
    assert_pf_ok(pf_state_opts_profile(&o, PF_PROFILE_BATCH));
    assert_int_equal(o.priority, PF_PRIORITY_LOW);
    assert_true(o.timeout == 1800.0);
    pf_state_opts_init(&o);
    assert_pf_ok(pf_state_opts_profile(&o, PF_PROFILE_MINIMAL));
    assert_int_equal(o.max_retries, 1);
    assert_true(o.resources->cpu_units == 0.1);

    assert_pf_err(pf_state_opts_profile(&o, (pf_state_profile_t)99), PF_EINVAL);
    assert_pf_err(pf_state_opts_profile_named(&o, "gpu_accelerated"),
                  PF_EINVAL);
    assert_pf_err(pf_state_opts_profile(NULL, PF_PROFILE_QUICK), PF_EINVAL);
    assert_string_equal(pf_state_profile_name(PF_PROFILE_IO_INTENSIVE),
                        "io_intensive");
    assert_string_equal(pf_state_profile_name((pf_state_profile_t)99),
                        "unknown");
    assert_pf_ok(pf_agent_run(a, NULL, NULL));
    pf_agent_free(a);
}

/* ---- leak tracking ------------------------------------------------------- */

static int
fake_sample(int pid, pf_leak_sample_t *out, void *arg)
{
    (void)pid;
    (void)out;
    (void)arg;
    return 0;
}

typedef struct leak_probe {
    pf_leak_detector_t *d;
    uint64_t held_inside;
} leak_probe_t;

static int
probe_leaks(pf_ctx_t *ctx, void *arg)
{
    leak_probe_t *p = arg;
    pf_leak_metrics_t m;

    (void)ctx;
    pf_leak_detector_metrics(p->d, &m);
    p->held_inside = m.total_allocations;
    return 0;
}

static void
test_agent_reports_state_resources_to_the_leak_detector(void **state)
{
    pf_leak_config_t lc;
    pf_leak_detector_t *d = NULL;
    pf_agent_config_t cfg;
    pf_agent_t *a = NULL;
    pf_leak_metrics_t m;
    pf_state_opts_t o;
    leak_probe_t probe = {0};

    (void)state;
    pf_leak_config_init(&lc);
    lc.sample = fake_sample;
    assert_pf_ok(pf_leak_detector_new(&lc, &d));
    probe.d = d;
    pf_agent_config_init(&cfg);
    cfg.name = "leaky";
    cfg.executor = g_ex;
    cfg.leak_detector = d;
    assert_pf_ok(pf_agent_new_ex(&cfg, &a));
    pf_state_opts_init(&o);
    assert_pf_ok(pf_agent_add_state(a, "uses", probe_leaks, &probe, &o));
    o.leak_detection = false;
    assert_pf_ok(pf_agent_add_state(a, "quiet", noop, NULL, &o));
    assert_pf_ok(pf_agent_run(a, NULL, NULL));
    assert_int_equal(probe.held_inside, 1);
    pf_leak_detector_metrics(d, &m);
    assert_int_equal(m.allocations, 1); /* "quiet" reported nothing */
    assert_int_equal(m.releases, 1);
    assert_int_equal(m.total_allocations, 0);
    pf_agent_free(a);
    pf_leak_detector_free(d);
}

/* The first call holds until released; the others return at once. */
typedef struct hold_first {
    atomic_int calls;
    atomic_int inside;
    atomic_int release;
} hold_first_t;

static int
hold_first_fn(pf_ctx_t *ctx, void *arg)
{
    hold_first_t *h = arg;

    (void)ctx;
    if (atomic_fetch_add(&h->calls, 1) == 0) {
        atomic_store(&h->inside, 1);
        pf_test_wait_for_flag(&h->release, 1);
    }
    return 0;
}

static void
test_agent_leak_tracking_keeps_each_runs_allocation(void **state)
{
    pf_clock_t *lclock = NULL;
    pf_leak_config_t lc;
    pf_leak_detector_t *d = NULL;
    pf_agent_config_t cfg;
    pf_agent_t *a = NULL;
    pf_leak_metrics_t m;
    pf_leak_report_t rep;
    pf_state_opts_t o;
    pf_run_t *hung = NULL;
    hold_first_t h = {0};

    (void)state;
    assert_pf_ok(pf_clock_manual_new(&lclock));
    pf_leak_config_init(&lc);
    lc.sample = fake_sample;
    lc.clock = lclock;
    assert_pf_ok(pf_leak_detector_new(&lc, &d));
    pf_agent_config_init(&cfg);
    cfg.name = "leaky";
    cfg.executor = g_ex;
    cfg.leak_detector = d;
    assert_pf_ok(pf_agent_new_ex(&cfg, &a));
    pf_state_opts_init(&o);
    assert_pf_ok(pf_agent_add_state(a, "query", hold_first_fn, &h, &o));
    /* Run 1 hangs in the state; run 2 of the same state ends meanwhile. */
    assert_pf_ok(pf_agent_start(a, NULL, NULL, &hung));
    pf_test_wait_for_flag(&h.inside, 1);
    assert_pf_ok(pf_agent_run(a, NULL, NULL));
    pf_leak_detector_metrics(d, &m);
    assert_int_equal(m.allocations, 2);
    assert_int_equal(m.releases, 1);
    assert_int_equal(m.total_allocations, 1); /* run 1's is still held */
    pf_clock_manual_advance(lclock, 301 * NS_PER_SEC);
    assert_pf_ok(pf_leak_detector_check(d, &rep));
    assert_int_equal(rep.leaks_len, 1);
    assert_string_equal(rep.leaks[0].agent, "leaky");
    assert_string_equal(rep.leaks[0].state, "query");
    assert_int_equal(rep.leaks[0].instance, 1); /* the first run */
    pf_leak_report_free(&rep);
    atomic_store(&h.release, 1);
    assert_pf_ok(pf_run_wait(hung, NULL, NULL));
    pf_run_free(hung);
    pf_leak_detector_metrics(d, &m);
    assert_int_equal(m.releases, 2);
    assert_int_equal(m.total_allocations, 0);
    pf_agent_free(a);
    pf_leak_detector_free(d);
    pf_clock_free(lclock);
}

/* ---- listener and metrics ------------------------------------------------ */

typedef struct heard {
    int kinds[32];
    int n;
    pthread_mutex_t lock;
} heard_t;

static void
listen(const pf_agent_event_t *ev, void *arg)
{
    heard_t *h = arg;

    pthread_mutex_lock(&h->lock);
    if (h->n < 32) {
        h->kinds[h->n++] = ev->kind;
    }
    pthread_mutex_unlock(&h->lock);
    assert_string_equal(ev->agent, "heard");
}

static void
test_agent_listener_hears_retries_dead_letters_and_the_end(void **state)
{
    pf_agent_config_t cfg;
    pf_agent_t *a = NULL;
    heard_t h = {.n = 0, .lock = PTHREAD_MUTEX_INITIALIZER};
    spec_t s = {0};
    pf_state_opts_t o;
    pf_agent_metrics_t m;

    (void)state;
    pf_agent_config_init(&cfg);
    cfg.name = "heard";
    cfg.executor = g_ex;
    cfg.listener = listen;
    cfg.listener_arg = &h;
    assert_pf_ok(pf_agent_new_ex(&cfg, &a));
    s.fail_first = 100;
    s.code = -2;
    quick_retries(&o, 2);
    assert_pf_ok(pf_agent_add_state(a, "s", spec_fn, &s, &o));
    assert_int_equal(pf_agent_run(a, NULL, NULL), -2);
    assert_int_equal(h.n, 4);
    assert_int_equal(h.kinds[0], PF_AGENT_EVENT_RETRY);
    assert_int_equal(h.kinds[1], PF_AGENT_EVENT_RETRY);
    assert_int_equal(h.kinds[2], PF_AGENT_EVENT_DEAD_LETTER);
    assert_int_equal(h.kinds[3], PF_AGENT_EVENT_RUN_DONE);
    pf_agent_metrics(a, &m);
    assert_int_equal(m.states, 1);
    assert_int_equal(m.runs_started, 1);
    assert_int_equal(m.runs_finished, 1);
    assert_int_equal(m.runs_failed, 1);
    assert_int_equal(m.runs_active, 0);
    assert_int_equal(m.retries, 2);
    assert_int_equal(m.dead_letters, 1);
    assert_int_equal(m.states_failed, 1);
    pf_agent_metrics(NULL, &m);
    pf_agent_free(a);
}

/* Events of runs held at once: each says which run (and context) it is. */
typedef struct tagged {
    struct {
        int kind;
        uint64_t run;
        pf_ctx_t *ctx;
        int64_t who; /* the "who" variable of ctx, 0 = no ctx */
    } ev[16];
    int n;
    pthread_mutex_t lock;
    atomic_int inside;
    atomic_int release;
} tagged_t;

static void
listen_tagged(const pf_agent_event_t *ev, void *arg)
{
    tagged_t *t = arg;
    int64_t who = 0;

    if (ev->ctx != NULL) {
        assert_pf_ok(pf_ctx_get_int(ev->ctx, "who", &who));
    }
    pthread_mutex_lock(&t->lock);
    if (t->n < 16) {
        t->ev[t->n].kind = ev->kind;
        t->ev[t->n].run = ev->run;
        t->ev[t->n].ctx = ev->ctx;
        t->ev[t->n].who = who;
        t->n++;
    }
    pthread_mutex_unlock(&t->lock);
}

/* The first attempt waits until both runs are inside, then fails. */
static int
fail_once_together(pf_ctx_t *ctx, void *arg)
{
    tagged_t *t = arg;

    if (pf_ctx_attempt(ctx) > 1) {
        return 0;
    }
    atomic_fetch_add(&t->inside, 1);
    pf_test_wait_for_flag(&t->release, 1);
    return -1;
}

static void
test_agent_events_name_their_run_and_context_when_runs_overlap(void **state)
{
    pf_agent_config_t cfg;
    pf_agent_t *a = NULL;
    tagged_t t = {.n = 0, .lock = PTHREAD_MUTEX_INITIALIZER};
    pf_state_opts_t o;
    pf_ctx_t *c[2] = {NULL, NULL};
    pf_run_t *run[2] = {NULL, NULL};
    int retries[3] = {0, 0, 0};
    int dones[3] = {0, 0, 0};
    int i;

    (void)state;
    pf_agent_config_init(&cfg);
    cfg.name = "tagged";
    cfg.executor = g_ex;
    cfg.listener = listen_tagged;
    cfg.listener_arg = &t;
    assert_pf_ok(pf_agent_new_ex(&cfg, &a));
    quick_retries(&o, 1);
    assert_pf_ok(pf_agent_add_state(a, "s", fail_once_together, &t, &o));
    for (i = 0; i < 2; i++) {
        assert_pf_ok(pf_ctx_new(&c[i]));
        assert_pf_ok(pf_ctx_set_int(c[i], "who", i + 1));
        assert_pf_ok(pf_agent_start(a, c[i], NULL, &run[i]));
    }
    pf_test_wait_for_flag(&t.inside, 2); /* both runs in their state */
    atomic_store(&t.release, 1);
    for (i = 0; i < 2; i++) {
        assert_pf_ok(pf_run_wait(run[i], NULL, NULL));
        pf_run_free(run[i]);
    }
    /* Run 1 is the one started with c[0], run 2 with c[1]: every event
     * carries its own run's number and context. */
    assert_int_equal(t.n, 4);
    for (i = 0; i < t.n; i++) {
        assert_true(t.ev[i].run == 1 || t.ev[i].run == 2);
        assert_ptr_equal(t.ev[i].ctx, c[t.ev[i].run - 1]);
        assert_int_equal(t.ev[i].who, (int64_t)t.ev[i].run);
        if (t.ev[i].kind == PF_AGENT_EVENT_RETRY) {
            retries[t.ev[i].run]++;
        } else {
            assert_int_equal(t.ev[i].kind, PF_AGENT_EVENT_RUN_DONE);
            dones[t.ev[i].run]++;
        }
    }
    assert_int_equal(retries[1], 1);
    assert_int_equal(retries[2], 1);
    assert_int_equal(dones[1], 1);
    assert_int_equal(dones[2], 1);
    /* A run given no context: the next number, and no ctx. */
    atomic_store(&t.release, 1);
    t.n = 0;
    assert_pf_ok(pf_agent_run(a, NULL, NULL));
    assert_int_equal(t.n, 2);
    for (i = 0; i < t.n; i++) {
        assert_true(t.ev[i].run == 3);
        assert_null(t.ev[i].ctx);
    }
    pf_agent_free(a);
    pf_ctx_free(c[0]);
    pf_ctx_free(c[1]);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_agent_config_and_opts_have_documented_defaults),
        cmocka_unit_test(test_agent_new_rejects_bad_arguments),
        cmocka_unit_test(test_agent_add_state_rejects_bad_definitions),
        cmocka_unit_test(
            test_agent_unknown_dependency_fails_before_anything_runs),
        cmocka_unit_test(test_agent_dependency_cycle_is_rejected),
        cmocka_unit_test(test_agent_unknown_next_or_fallback_state_is_rejected),
        cmocka_unit_test(
            test_agent_sequential_entry_with_dependencies_is_rejected),
        cmocka_unit_test(test_agent_with_no_states_completes_at_once),
        cmocka_unit_test(
            test_agent_sequential_chain_follows_gotos_on_the_calling_thread),
        cmocka_unit_test(
            test_agent_parallel_mode_starts_every_state_without_dependencies),
        cmocka_unit_test(test_agent_goto_fans_out_and_depends_on_joins),
        cmocka_unit_test(
            test_agent_state_runs_at_most_once_however_often_it_is_named),
        cmocka_unit_test(
            test_agent_goto_does_not_start_a_state_before_its_dependencies),
        cmocka_unit_test(
            test_agent_goto_to_unknown_state_fails_the_state_without_retry),
        cmocka_unit_test(
            test_agent_goto_outside_declared_next_states_is_einval),
        cmocka_unit_test(test_agent_goto_outside_a_state_is_estate),
        cmocka_unit_test(test_agent_goto_to_many_states_runs_them_all_once),
        cmocka_unit_test(test_agent_ready_states_run_highest_priority_first),
        cmocka_unit_test(test_agent_run_starts_entry_states_in_priority_order),
        cmocka_unit_test(test_agent_on_done_may_wait_for_its_run),
        cmocka_unit_test(test_agent_states_share_the_runs_context),
        cmocka_unit_test(test_agent_run_result_accessors_check_their_arguments),
        cmocka_unit_test(
            test_agent_failing_state_becomes_a_dead_letter_and_others_go_on),
        cmocka_unit_test(
            test_agent_dead_letter_off_fails_without_a_dead_letter),
        cmocka_unit_test(test_agent_state_that_recovers_on_a_retry_completes),
        cmocka_unit_test(test_agent_retry_policy_retries_only_listed_results),
        cmocka_unit_test(
            test_agent_open_breaker_rejects_without_calling_or_retrying),
        cmocka_unit_test(
            test_agent_fallback_fn_stands_in_while_the_breaker_is_open),
        cmocka_unit_test(
            test_agent_fallback_state_is_started_when_the_breaker_rejects),
        cmocka_unit_test(test_agent_retries_stop_when_the_breaker_opens),
        cmocka_unit_test(
            test_agent_fallback_on_failure_completes_after_retries_run_out),
        cmocka_unit_test(
            test_agent_breaker_fallback_answers_when_its_breaker_rejects),
        cmocka_unit_test(
            test_agent_breaker_fallback_answers_a_counted_failure_not_an_ignored_one),
        cmocka_unit_test(
            test_agent_breaker_fallback_that_fails_is_the_attempts_result),
        cmocka_unit_test(test_agent_states_own_fallback_wins_over_its_breakers),
        cmocka_unit_test(
            test_agent_full_bulkhead_queues_the_state_without_a_thread),
        cmocka_unit_test(test_agent_bulkhead_with_no_room_fails_with_efull),
        cmocka_unit_test(
            test_agent_states_share_a_breaker_by_name_through_a_registry),
        cmocka_unit_test(
            test_agent_failed_add_state_removes_what_it_made_in_the_registry),
        cmocka_unit_test(
            test_agent_add_state_out_of_memory_leaves_the_registry_as_it_was),
        cmocka_unit_test(test_agent_profiles_fill_options_as_the_original),
        cmocka_unit_test(
            test_agent_reports_state_resources_to_the_leak_detector),
        cmocka_unit_test(test_agent_leak_tracking_keeps_each_runs_allocation),
        cmocka_unit_test(
            test_agent_listener_hears_retries_dead_letters_and_the_end),
        cmocka_unit_test(
            test_agent_events_name_their_run_and_context_when_runs_overlap),
    };

    return cmocka_run_group_tests(tests, setup_group, teardown_group);
}
