/* The reactor's waits: fd waits on real pipes and socketpairs, timers and
 * deadlines on the manual clock, aborts, exactly-once completion when an
 * abort races the completion from several threads, 100,000 pending timer
 * waits, the executor's shutdown ending pending waits, and bad input. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "puffinflow/deadline.h"
#include "puffinflow/executor.h"

#include "test.h"

static pf_executor_t *
make(const pf_clock_t *clock, unsigned workers)
{
    pf_executor_config_t cfg;
    pf_executor_t *ex = NULL;

    pf_executor_config_init(&cfg);
    cfg.clock = clock;
    cfg.workers = workers;
    assert_pf_ok(pf_executor_new(&cfg, &ex));
    return ex;
}

/* What one wait's done saw. */
typedef struct outcome {
    atomic_int calls;
    atomic_int result;
    pf_wait_t *w;
    bool free_in_done; /* done frees its own handle */
} outcome_t;

static void
record(int result, void *arg)
{
    outcome_t *o = arg;

    atomic_store(&o->result, result);
    if (o->free_in_done) {
        pf_wait_free(o->w);
    }
    atomic_fetch_add(&o->calls, 1);
}

static void
make_pipe(int fds[2])
{
    assert_int_equal(pipe2(fds, O_CLOEXEC | O_NONBLOCK), 0);
}

static void
close_pair(int fds[2])
{
    close(fds[0]);
    close(fds[1]);
}

/* ---- fds ---------------------------------------------------------------- */

static void
test_reactor_fd_wait_completes_when_a_pipe_becomes_readable(void **state)
{
    pf_executor_t *ex = make(*state, 1);
    outcome_t o = {0};
    int fds[2];

    make_pipe(fds);
    assert_pf_ok(pf_executor_wait_fd(ex, fds[0], PF_WAIT_READABLE, NULL,
                                     record, &o, &o.w));
    assert_false(pf_wait_ended(o.w)); /* nothing to read: it cannot end */
    assert_int_equal(write(fds[1], "x", 1), 1);
    pf_test_wait_for_flag(&o.calls, 1);
    assert_int_equal(atomic_load(&o.result), 0);
    assert_true(pf_wait_ended(o.w));
    pf_wait_abort(o.w); /* ended: a no-op */
    pf_wait_free(o.w);
    pf_executor_free(ex);
    assert_int_equal(atomic_load(&o.calls), 1);
    close_pair(fds);
}

static void
test_reactor_fd_wait_for_writable_completes_at_once(void **state)
{
    pf_executor_t *ex = make(*state, 1);
    outcome_t o = {0};
    int sv[2];

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_pf_ok(pf_executor_wait_fd(ex, sv[0], PF_WAIT_WRITABLE, NULL,
                                     record, &o, &o.w));
    pf_test_wait_for_flag(&o.calls, 1);
    assert_int_equal(atomic_load(&o.result), 0);
    pf_wait_free(o.w);
    pf_executor_free(ex);
    close_pair(sv);
}

static void
test_reactor_two_waits_on_one_fd_both_complete(void **state)
{
    pf_executor_t *ex = make(*state, 1);
    outcome_t a = {0};
    outcome_t b = {0};
    int sv[2];

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_pf_ok(pf_executor_wait_fd(ex, sv[0], PF_WAIT_READABLE, NULL,
                                     record, &a, &a.w));
    assert_pf_ok(pf_executor_wait_fd(ex, sv[0], PF_WAIT_READABLE, NULL,
                                     record, &b, &b.w));
    assert_int_equal(write(sv[1], "x", 1), 1);
    pf_test_wait_for_flag(&a.calls, 1);
    pf_test_wait_for_flag(&b.calls, 1);
    assert_int_equal(atomic_load(&a.result) + atomic_load(&b.result), 0);
    pf_wait_free(a.w);
    pf_wait_free(b.w);
    pf_executor_free(ex);
    close_pair(sv);
}

/* One wait after another on the same fd (the reactor re-arms its spent
 * registration), then on the same fd number for another file while the
 * first file stays open (the re-arm finds no entry and adds it afresh). */
static void
test_reactor_fd_waits_again_on_one_fd_and_on_its_reused_number(void **state)
{
    pf_executor_t *ex = make(*state, 1);
    outcome_t o[4] = {{0}};
    int p[2];
    int q[2];
    int keep;
    int fd;
    char c;
    int i;

    make_pipe(p);
    fd = p[0];
    for (i = 0; i < 3; i++) {
        assert_pf_ok(pf_executor_wait_fd(ex, fd, PF_WAIT_READABLE, NULL,
                                         record, &o[i], &o[i].w));
        assert_false(pf_wait_ended(o[i].w)); /* nothing to read yet */
        assert_int_equal(write(p[1], "x", 1), 1);
        pf_test_wait_for_flag(&o[i].calls, 1);
        assert_int_equal(atomic_load(&o[i].result), 0);
        assert_int_equal(read(fd, &c, 1), 1);
        pf_wait_free(o[i].w);
    }
    keep = dup(fd); /* the first pipe's file outlives the number */
    assert_true(keep >= 0);
    make_pipe(q);
    assert_int_equal(dup2(q[0], fd), fd);
    close(q[0]);
    assert_pf_ok(pf_executor_wait_fd(ex, fd, PF_WAIT_READABLE, NULL, record,
                                     &o[3], &o[3].w));
    assert_int_equal(write(q[1], "y", 1), 1);
    pf_test_wait_for_flag(&o[3].calls, 1);
    assert_int_equal(atomic_load(&o[3].result), 0);
    pf_wait_free(o[3].w);
    pf_executor_free(ex);
    for (i = 0; i < 4; i++) {
        assert_int_equal(atomic_load(&o[i].calls), 1);
    }
    close(fd);
    close(q[1]);
    close(keep);
    close(p[1]);
}

static void
test_reactor_fd_wait_times_out_when_the_manual_clock_passes_its_deadline(
    void **state)
{
    pf_clock_t *clock = *state;
    pf_executor_t *ex = make(clock, 1);
    pf_deadline_t d = pf_deadline_in(clock, 5.0);
    outcome_t o = {0};
    int fds[2];

    make_pipe(fds);
    assert_pf_ok(pf_executor_wait_fd(ex, fds[0], PF_WAIT_READABLE, &d, record,
                                     &o, &o.w));
    pf_test_wait_for_waiters(clock, 1);
    pf_clock_manual_advance(clock, 4 * NS_PER_SEC);
    pf_test_wait_for_waiters(clock, 1); /* the reactor waits on */
    assert_false(pf_wait_ended(o.w));
    pf_clock_manual_advance(clock, 1 * NS_PER_SEC);
    pf_test_wait_for_flag(&o.calls, 1);
    assert_int_equal(atomic_load(&o.result), PF_ETIMEDOUT);
    /* The fd has left the set: data arriving now completes nothing. */
    assert_int_equal(write(fds[1], "x", 1), 1);
    pf_executor_free(ex);
    assert_int_equal(atomic_load(&o.calls), 1);
    pf_wait_free(o.w);
    close_pair(fds);
}

static void
test_reactor_fd_wait_with_a_passed_deadline_times_out_at_once(void **state)
{
    pf_clock_t *clock = *state;
    pf_executor_t *ex = make(clock, 1);
    pf_deadline_t d = pf_deadline_in(clock, 0.0);
    outcome_t o = {0};
    int fds[2];

    make_pipe(fds);
    assert_pf_ok(pf_executor_wait_fd(ex, fds[0], PF_WAIT_READABLE, &d, record,
                                     &o, NULL));
    pf_test_wait_for_flag(&o.calls, 1);
    assert_int_equal(atomic_load(&o.result), PF_ETIMEDOUT);
    pf_executor_free(ex);
    close_pair(fds);
}

static void
test_reactor_abort_ends_a_pending_fd_wait_with_ecanceled(void **state)
{
    pf_clock_t *clock = *state;
    pf_executor_t *ex = make(clock, 1);
    pf_deadline_t d = pf_deadline_in(clock, 5.0);
    pf_executor_metrics_t m;
    outcome_t o = {0};
    int fds[2];

    make_pipe(fds);
    assert_pf_ok(pf_executor_wait_fd(ex, fds[0], PF_WAIT_READABLE, &d, record,
                                     &o, &o.w));
    pf_executor_metrics(ex, &m);
    assert_int_equal(m.waits_pending, 1);
    assert_int_equal(m.timers_armed, 1);
    pf_wait_abort(o.w);
    pf_test_wait_for_flag(&o.calls, 1);
    assert_int_equal(atomic_load(&o.result), PF_ECANCELED);
    pf_wait_abort(o.w); /* a second abort is a no-op */
    pf_executor_metrics(ex, &m);
    assert_int_equal(m.waits_pending, 0);
    assert_int_equal(m.timers_armed, 0); /* its deadline was withdrawn */
    assert_int_equal(write(fds[1], "x", 1), 1);
    pf_clock_manual_advance(clock, 10 * NS_PER_SEC);
    pf_executor_free(ex);
    assert_int_equal(atomic_load(&o.calls), 1);
    pf_wait_free(o.w);
    close_pair(fds);
}

/* ---- timers ------------------------------------------------------------- */

static void
test_reactor_timer_wait_completes_when_the_clock_reaches_it(void **state)
{
    pf_clock_t *clock = *state;
    pf_executor_t *ex = make(clock, 1);
    outcome_t o = {0};

    assert_pf_ok(pf_executor_wait_timer(ex, 3.0, record, &o, &o.w));
    pf_test_wait_for_waiters(clock, 1);
    pf_clock_manual_advance(clock, 2 * NS_PER_SEC);
    pf_test_wait_for_waiters(clock, 1);
    assert_false(pf_wait_ended(o.w));
    pf_clock_manual_advance(clock, 1 * NS_PER_SEC);
    pf_test_wait_for_flag(&o.calls, 1);
    assert_int_equal(atomic_load(&o.result), 0);
    pf_wait_free(o.w);
    pf_executor_free(ex);
}

static void
test_reactor_wait_until_completes_at_its_deadline(void **state)
{
    pf_clock_t *clock = *state;
    pf_executor_t *ex = make(clock, 1);
    pf_deadline_t d = pf_deadline_in(clock, 7.0);
    outcome_t o = {0};

    assert_pf_ok(pf_executor_wait_until(ex, &d, record, &o, NULL));
    assert_true(pf_executor_next_timer_ns(ex) == 7 * NS_PER_SEC);
    pf_test_wait_for_waiters(clock, 1);
    pf_clock_manual_advance(clock, 7 * NS_PER_SEC);
    pf_test_wait_for_flag(&o.calls, 1);
    assert_int_equal(atomic_load(&o.result), 0);
    pf_executor_free(ex);
}

static void
test_reactor_zero_second_timer_completes_through_done(void **state)
{
    pf_executor_t *ex = make(*state, 1);
    outcome_t o = {0};

    o.free_in_done = true; /* the handle is stored before done can run */
    assert_pf_ok(pf_executor_wait_timer(ex, 0.0, record, &o, &o.w));
    pf_test_wait_for_flag(&o.calls, 1);
    assert_int_equal(atomic_load(&o.result), 0);
    pf_executor_free(ex);
}

static void
test_reactor_infinite_timer_ends_only_by_abort(void **state)
{
    pf_clock_t *clock = *state;
    pf_executor_t *ex = make(clock, 1);
    outcome_t o = {0};

    assert_pf_ok(pf_executor_wait_timer(ex, INFINITY, record, &o, &o.w));
    assert_true(pf_executor_next_timer_ns(ex) == PF_DEADLINE_NEVER_NS);
    pf_clock_manual_advance(clock, 1000 * NS_PER_SEC);
    assert_false(pf_wait_ended(o.w));
    pf_wait_abort(o.w);
    pf_test_wait_for_flag(&o.calls, 1);
    assert_int_equal(atomic_load(&o.result), PF_ECANCELED);
    pf_wait_free(o.w);
    pf_executor_free(ex);
}

static void
test_reactor_timer_waits_complete_in_due_order(void **state)
{
    pf_clock_t *clock = *state;
    pf_executor_t *ex = make(clock, 1);
    outcome_t o[3];
    int i;

    memset(o, 0, sizeof(o));
    assert_pf_ok(pf_executor_wait_timer(ex, 3.0, record, &o[0], NULL));
    assert_pf_ok(pf_executor_wait_timer(ex, 1.0, record, &o[1], NULL));
    assert_pf_ok(pf_executor_wait_timer(ex, 2.0, record, &o[2], NULL));
    for (i = 1; i <= 3; i++) {
        int which = i == 1 ? 1 : i == 2 ? 2 : 0;

        pf_test_wait_for_waiters(clock, 1);
        pf_clock_manual_advance(clock, 1 * NS_PER_SEC);
        pf_test_wait_for_flag(&o[which].calls, 1);
    }
    pf_executor_free(ex);
    for (i = 0; i < 3; i++) {
        assert_int_equal(atomic_load(&o[i].calls), 1);
    }
}

/* ---- shutdown ----------------------------------------------------------- */

static void
test_reactor_free_ends_pending_waits_with_ecanceled(void **state)
{
    pf_clock_t *clock = *state;
    pf_executor_t *ex = make(clock, 2);
    pf_deadline_t d = pf_deadline_in(clock, 5.0);
    outcome_t o[3];
    int fds[2];
    int i;

    memset(o, 0, sizeof(o));
    make_pipe(fds);
    assert_pf_ok(pf_executor_wait_fd(ex, fds[0], PF_WAIT_READABLE, &d, record,
                                     &o[0], &o[0].w));
    assert_pf_ok(pf_executor_wait_timer(ex, 9.0, record, &o[1], &o[1].w));
    assert_pf_ok(pf_executor_wait_timer(ex, INFINITY, record, &o[2], NULL));
    pf_executor_free(ex);
    for (i = 0; i < 3; i++) {
        assert_int_equal(atomic_load(&o[i].calls), 1);
        assert_int_equal(atomic_load(&o[i].result), PF_ECANCELED);
    }
    /* The handles outlive the executor. */
    assert_true(pf_wait_ended(o[0].w));
    pf_wait_abort(o[0].w);
    pf_wait_free(o[0].w);
    pf_wait_free(o[1].w);
    close_pair(fds);
}

typedef struct restarter {
    atomic_int calls;
    atomic_int restart_rc;
    pf_executor_t *ex;
} restarter_t;

static void
restart_in_done(int result, void *arg)
{
    restarter_t *r = arg;

    (void)result;
    atomic_store(&r->restart_rc,
                 pf_executor_wait_timer(r->ex, 1.0, restart_in_done, r, NULL));
    atomic_fetch_add(&r->calls, 1);
}

static void
test_reactor_wait_started_while_the_executor_is_freed_fails(void **state)
{
    pf_executor_t *ex = make(*state, 1);
    restarter_t r = {0};

    r.ex = ex;
    assert_pf_ok(pf_executor_wait_timer(ex, 5.0, restart_in_done, &r, NULL));
    pf_executor_free(ex); /* its done tries to start another */
    assert_int_equal(atomic_load(&r.calls), 1);
    assert_int_equal(atomic_load(&r.restart_rc), PF_ESTATE);
}

/* ---- races -------------------------------------------------------------- */

#define RACE_THREADS 4
#define RACE_ROUNDS 1500

typedef struct race {
    pf_executor_t *ex;
    atomic_int completions;
    atomic_int ready_results;
    atomic_int canceled_results;
    atomic_int bad;
} race_t;

typedef struct race_wait {
    race_t *race;
    atomic_int calls;
    pf_wait_t *w;
    atomic_int go;
} race_wait_t;

static void
race_done(int result, void *arg)
{
    race_wait_t *rw = arg;
    race_t *race = rw->race;

    if (atomic_fetch_add(&rw->calls, 1) != 0) {
        atomic_fetch_add(&race->bad, 1); /* a second completion */
    }
    if (result == 0) {
        atomic_fetch_add(&race->ready_results, 1);
    } else if (result == PF_ECANCELED) {
        atomic_fetch_add(&race->canceled_results, 1);
    } else {
        atomic_fetch_add(&race->bad, 1);
    }
    atomic_fetch_add(&race->completions, 1);
}

/* Each round: a wait that is ready at once (a zero timer, or a writable
 * socket), aborted at the same moment by this thread and by a helper. */
static void *
abort_helper(void *arg)
{
    race_wait_t *rw = arg;

    while (atomic_load(&rw->go) == 0) {
    }
    pf_wait_abort(rw->w);
    return NULL;
}

static void
race_rounds(void *arg, unsigned idx)
{
    race_t *race = arg;
    int sv[2];
    int i;

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    for (i = 0; i < RACE_ROUNDS; i++) {
        race_wait_t *rw = calloc(1, sizeof(*rw));
        pthread_t helper;
        int rc;

        assert_non_null(rw);
        rw->race = race;
        if ((i + (int)idx) % 2 == 0) {
            rc = pf_executor_wait_timer(race->ex, 0.0, race_done, rw, &rw->w);
        } else {
            rc = pf_executor_wait_fd(race->ex, sv[0], PF_WAIT_WRITABLE, NULL,
                                     race_done, rw, &rw->w);
        }
        assert_pf_ok(rc);
        if (i % 8 == 0) {
            assert_int_equal(pthread_create(&helper, NULL, abort_helper, rw),
                             0);
            atomic_store(&rw->go, 1);
            pf_wait_abort(rw->w);
            pthread_join(helper, NULL);
        } else {
            pf_wait_abort(rw->w);
        }
        pf_test_wait_for_flag(&rw->calls, 1);
        pf_wait_free(rw->w);
        free(rw);
    }
    close_pair(sv);
}

static void
test_reactor_abort_racing_completion_completes_each_wait_once(void **state)
{
    race_t race = {0};
    pf_executor_metrics_t m;

    (void)state;
    pf_test_alloc_install();
    race.ex = make(NULL, 2);
    pf_test_run_threads(RACE_THREADS, race_rounds, &race);
    assert_int_equal(atomic_load(&race.bad), 0);
    assert_int_equal(atomic_load(&race.completions),
                     RACE_THREADS * RACE_ROUNDS);
    assert_int_equal(atomic_load(&race.ready_results) +
                         atomic_load(&race.canceled_results),
                     RACE_THREADS * RACE_ROUNDS);
    pf_executor_metrics(race.ex, &m);
    assert_int_equal(m.waits_pending, 0);
    pf_executor_free(race.ex);
    assert_int_equal(pf_test_alloc_live(), 0); /* every record freed */
    pf_test_alloc_uninstall();
}

/* Deadlines racing aborts on the real clock: every wait ends once, with
 * PF_ETIMEDOUT or PF_ECANCELED. */
static void
test_reactor_abort_racing_a_deadline_completes_each_wait_once(void **state)
{
    enum { N = 2000 };
    pf_executor_t *ex = make(NULL, 2);
    outcome_t *o = calloc(N, sizeof(*o));
    int fds[2];
    int i;

    (void)state;
    assert_non_null(o);
    make_pipe(fds);
    for (i = 0; i < N; i++) {
        pf_deadline_t d = pf_deadline_in_ns(NULL, (i % 50) * 1000);

        assert_pf_ok(pf_executor_wait_fd(ex, fds[0], PF_WAIT_READABLE, &d,
                                         record, &o[i], &o[i].w));
        if (i % 3 == 0) {
            pf_wait_abort(o[i].w);
        }
    }
    for (i = 0; i < N; i++) {
        int r;

        pf_test_wait_for_flag(&o[i].calls, 1);
        r = atomic_load(&o[i].result);
        assert_true(r == PF_ETIMEDOUT || r == PF_ECANCELED);
        pf_wait_free(o[i].w);
    }
    pf_executor_free(ex);
    for (i = 0; i < N; i++) {
        assert_int_equal(atomic_load(&o[i].calls), 1);
    }
    free(o);
    close_pair(fds);
}

/* ---- many --------------------------------------------------------------- */

#define MANY 100000
#define MANY_THREADS 4

typedef struct many {
    pf_executor_t *ex;
    atomic_int *calls;
    atomic_int total;
} many_t;

typedef struct many_slot {
    many_t *m;
    unsigned i;
} many_slot_t;

static many_slot_t g_slots[MANY];

static void
many_done(int result, void *arg)
{
    many_slot_t *s = arg;

    if (result == 0) {
        atomic_fetch_add(&s->m->calls[s->i], 1);
    }
    atomic_fetch_add(&s->m->total, 1);
}

static void
many_start(void *arg, unsigned idx)
{
    many_t *m = arg;
    unsigned i;

    for (i = idx; i < MANY; i += MANY_THREADS) {
        g_slots[i].m = m;
        g_slots[i].i = i;
        assert_pf_ok(
            pf_executor_wait_timer(m->ex, 1.0, many_done, &g_slots[i], NULL));
    }
}

static void
test_reactor_100000_pending_timer_waits_complete_exactly_once(void **state)
{
    pf_clock_t *clock = *state;
    many_t m = {0};
    pf_executor_metrics_t met;
    unsigned i;

    m.ex = make(clock, 2);
    m.calls = calloc(MANY, sizeof(*m.calls));
    assert_non_null(m.calls);
    pf_test_run_threads(MANY_THREADS, many_start, &m);
    pf_executor_metrics(m.ex, &met);
    assert_int_equal(met.waits_pending, MANY);
    assert_int_equal(met.timers_armed, MANY);
    assert_int_equal(atomic_load(&m.total), 0);
    pf_test_wait_for_waiters(clock, 1);
    pf_clock_manual_advance(clock, 1 * NS_PER_SEC);
    pf_test_wait_for_flag(&m.total, MANY);
    for (i = 0; i < MANY; i++) {
        assert_int_equal(atomic_load(&m.calls[i]), 1);
    }
    pf_executor_metrics(m.ex, &met);
    assert_int_equal(met.waits_pending, 0);
    pf_executor_free(m.ex);
    assert_int_equal(atomic_load(&m.total), MANY);
    free(m.calls);
}

/* ---- submit ------------------------------------------------------------- */

static void
bump(void *arg)
{
    atomic_fetch_add((atomic_int *)arg, 1);
}

static void
test_reactor_submit_runs_the_function_once_on_a_worker(void **state)
{
    pf_executor_t *ex = make(*state, 2);
    atomic_int n = 0;
    int i;

    for (i = 0; i < 100; i++) {
        assert_pf_ok(pf_executor_submit(ex, bump, &n));
    }
    pf_executor_free(ex); /* queued work runs first */
    assert_int_equal(atomic_load(&n), 100);
}

/* ---- bad input ---------------------------------------------------------- */

static void
never(int result, void *arg)
{
    (void)result;
    (void)arg;
    fail_msg("done called for a wait that failed to start");
}

static void
test_reactor_bad_input_is_einval_and_leaves_nothing(void **state)
{
    pf_executor_t *ex;
    pf_wait_t *sentinel = (pf_wait_t *)(void *)&sentinel;
    pf_wait_t *w = sentinel;
    pf_deadline_t d = pf_deadline_in(*state, 1.0);
    char path[] = "/tmp/pf_reactor_XXXXXX";
    int fds[2];
    int file;

    pf_test_alloc_install();
    ex = make(*state, 1);
    make_pipe(fds);
    file = mkstemp(path);
    assert_true(file >= 0);
    unlink(path);
    assert_pf_err(pf_executor_wait_fd(NULL, fds[0], PF_WAIT_READABLE, &d,
                                      never, NULL, &w),
                  PF_EINVAL);
    assert_pf_err(pf_executor_wait_fd(ex, fds[0], PF_WAIT_READABLE, &d, NULL,
                                      NULL, &w),
                  PF_EINVAL);
    assert_pf_err(
        pf_executor_wait_fd(ex, -1, PF_WAIT_READABLE, &d, never, NULL, &w),
        PF_EINVAL);
    assert_pf_err(pf_executor_wait_fd(ex, fds[0], 0, &d, never, NULL, &w),
                  PF_EINVAL);
    assert_pf_err(pf_executor_wait_fd(ex, fds[0], 0x80, &d, never, NULL, &w),
                  PF_EINVAL);
    assert_pf_err(pf_executor_wait_fd(ex, file, PF_WAIT_READABLE, &d, never,
                                      NULL, &w),
                  PF_EINVAL); /* a regular file cannot be watched */
    close(file);
    assert_pf_err(pf_executor_wait_fd(ex, file, PF_WAIT_READABLE, &d, never,
                                      NULL, &w),
                  PF_EINVAL); /* closed */
    assert_pf_err(pf_executor_wait_timer(NULL, 1.0, never, NULL, &w),
                  PF_EINVAL);
    assert_pf_err(pf_executor_wait_timer(ex, 1.0, NULL, NULL, &w), PF_EINVAL);
    assert_pf_err(pf_executor_wait_timer(ex, -1.0, never, NULL, &w),
                  PF_EINVAL);
    assert_pf_err(pf_executor_wait_timer(ex, NAN, never, NULL, &w),
                  PF_EINVAL);
    assert_pf_err(pf_executor_wait_until(ex, NULL, never, NULL, &w),
                  PF_EINVAL);
    assert_pf_err(pf_executor_wait_until(NULL, &d, never, NULL, &w),
                  PF_EINVAL);
    assert_pf_err(pf_executor_submit(NULL, bump, NULL), PF_EINVAL);
    assert_pf_err(pf_executor_submit(ex, NULL, NULL), PF_EINVAL);
    assert_ptr_equal(w, sentinel); /* untouched */
    pf_wait_abort(NULL);
    pf_wait_free(NULL);
    assert_false(pf_wait_ended(NULL));
    pf_executor_free(ex);
    assert_int_equal(pf_test_alloc_live(), 0);
    pf_test_alloc_uninstall();
    close_pair(fds);
}

/* Allocation failures: the record, the timer heap's growth (after the fd
 * is registered: the start is undone), the executor itself. */
static void
alloc_scenario(void *arg)
{
    pf_clock_t *clock = arg;
    pf_executor_config_t cfg;
    pf_executor_t *ex = NULL;
    pf_deadline_t d = pf_deadline_in(clock, 1.0);
    outcome_t a = {0};
    outcome_t b = {0};
    pf_wait_t *w = NULL;
    int fds[2];
    int rc;

    pf_executor_config_init(&cfg);
    cfg.clock = clock;
    cfg.workers = 1;
    rc = pf_executor_new(&cfg, &ex);
    if (rc != 0) {
        assert_int_equal(rc, PF_ENOMEM);
        return;
    }
    make_pipe(fds);
    rc = pf_executor_wait_fd(ex, fds[0], PF_WAIT_READABLE, &d, record, &a,
                             &w);
    if (rc == 0) {
        pf_wait_abort(w);
        pf_test_wait_for_flag(&a.calls, 1);
        pf_wait_free(w);
    } else {
        assert_int_equal(rc, PF_ENOMEM);
        assert_null(w);
    }
    rc = pf_executor_wait_timer(ex, 0.0, record, &b, NULL);
    if (rc == 0) {
        pf_test_wait_for_flag(&b.calls, 1);
    } else {
        assert_int_equal(rc, PF_ENOMEM);
    }
    pf_executor_free(ex);
    assert_int_equal(atomic_load(&a.calls) + atomic_load(&b.calls),
                     (w != NULL) + (rc == 0));
    close_pair(fds);
}

static void
test_reactor_allocation_failures_leave_nothing(void **state)
{
    assert_true(pf_test_alloc_sweep(alloc_scenario, *state) > 2);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
#define T(name)                                                                \
    cmocka_unit_test_setup_teardown(name, pf_test_clock_setup,                 \
                                    pf_test_clock_teardown)
        T(test_reactor_fd_wait_completes_when_a_pipe_becomes_readable),
        T(test_reactor_fd_wait_for_writable_completes_at_once),
        T(test_reactor_two_waits_on_one_fd_both_complete),
        T(test_reactor_fd_waits_again_on_one_fd_and_on_its_reused_number),
        T(test_reactor_fd_wait_times_out_when_the_manual_clock_passes_its_deadline),
        T(test_reactor_fd_wait_with_a_passed_deadline_times_out_at_once),
        T(test_reactor_abort_ends_a_pending_fd_wait_with_ecanceled),
        T(test_reactor_timer_wait_completes_when_the_clock_reaches_it),
        T(test_reactor_wait_until_completes_at_its_deadline),
        T(test_reactor_zero_second_timer_completes_through_done),
        T(test_reactor_infinite_timer_ends_only_by_abort),
        T(test_reactor_timer_waits_complete_in_due_order),
        T(test_reactor_free_ends_pending_waits_with_ecanceled),
        T(test_reactor_wait_started_while_the_executor_is_freed_fails),
        T(test_reactor_abort_racing_completion_completes_each_wait_once),
        T(test_reactor_abort_racing_a_deadline_completes_each_wait_once),
        T(test_reactor_100000_pending_timer_waits_complete_exactly_once),
        T(test_reactor_submit_runs_the_function_once_on_a_worker),
        T(test_reactor_bad_input_is_einval_and_leaves_nothing),
        T(test_reactor_allocation_failures_leave_nothing),
#undef T
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
