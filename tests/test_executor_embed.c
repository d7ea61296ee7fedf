/* The embedded executor: no threads of its own; a host loop watches
 * pf_executor_fd and calls pf_executor_drive. Driven by hand here, and by
 * a real libuv loop (uv_poll on the fd, uv_timer for the timeout) when
 * libuv was found at configure time (PF_HAVE_LIBUV). */
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "puffinflow/deadline.h"
#include "puffinflow/executor.h"

#include "test.h"

#ifdef PF_HAVE_LIBUV
#include <uv.h>
#endif

static pf_executor_t *
make_embedded(const pf_clock_t *clock)
{
    pf_executor_config_t cfg;
    pf_executor_t *ex = NULL;

    pf_executor_config_init(&cfg);
    cfg.clock = clock;
    cfg.embedded = true;
    assert_pf_ok(pf_executor_new(&cfg, &ex));
    return ex;
}

/* True when fd is readable now. */
static bool
readable(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};

    return poll(&p, 1, 0) == 1 && (p.revents & POLLIN) != 0;
}

typedef struct outcome {
    int calls;
    int result;
    pthread_t thread;
} outcome_t;

static void
record(int result, void *arg)
{
    outcome_t *o = arg;

    o->calls++;
    o->result = result;
    o->thread = pthread_self();
}

/* Threads of this process now. */
static int
thread_count(void)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    int n = 0;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        n += e->d_name[0] != '.';
    }
    closedir(d);
    return n;
}

/* ---- the face ----------------------------------------------------------- */

static void
test_embed_config_defaults_to_threaded(void **state)
{
    pf_executor_config_t cfg;

    (void)state;
    pf_executor_config_init(&cfg);
    assert_false(cfg.embedded);
}

static void
test_embed_executor_has_no_workers_and_rejects_a_worker_count(void **state)
{
    pf_executor_config_t cfg;
    pf_executor_t *ex = NULL;

    pf_executor_config_init(&cfg);
    cfg.embedded = true;
    cfg.workers = 2;
    assert_pf_err(pf_executor_new(&cfg, &ex), PF_EINVAL);
    assert_null(ex);
    ex = make_embedded(*state);
    assert_int_equal(pf_executor_workers(ex), 0);
    assert_true(pf_executor_fd(ex) >= 0);
    assert_int_equal(pf_executor_timeout_ms(ex), -1); /* nothing to do */
    assert_int_equal(pf_executor_drive(ex), 0);
    pf_executor_free(ex);
}

static void
test_embed_face_rejects_null_and_threaded_executors(void **state)
{
    pf_executor_config_t cfg;
    pf_executor_t *ex = NULL;

    pf_executor_config_init(&cfg);
    cfg.clock = *state;
    cfg.workers = 1;
    assert_pf_ok(pf_executor_new(&cfg, &ex));
    assert_pf_err(pf_executor_fd(NULL), PF_EINVAL);
    assert_pf_err(pf_executor_drive(NULL), PF_EINVAL);
    assert_pf_err(pf_executor_timeout_ms(NULL), PF_EINVAL);
    assert_pf_err(pf_executor_fd(ex), PF_ESTATE);
    assert_pf_err(pf_executor_drive(ex), PF_ESTATE);
    assert_pf_err(pf_executor_timeout_ms(ex), PF_ESTATE);
    pf_executor_free(ex);
}

/* ---- driven by hand, manual clock --------------------------------------- */

static void
test_embed_timer_completes_in_drive_after_the_clock_advances(void **state)
{
    pf_clock_t *clock = *state;
    pf_executor_t *ex = make_embedded(clock);
    int fd = pf_executor_fd(ex);
    outcome_t o = {0};

    assert_pf_ok(pf_executor_wait_timer(ex, 2.0, record, &o, NULL));
    assert_true(readable(fd)); /* a new earliest timer: drive again */
    pf_executor_drive(ex);
    assert_int_equal(o.calls, 0);
    assert_false(readable(fd));
    assert_int_equal(pf_executor_timeout_ms(ex), -1); /* the clock wakes */
    assert_int_equal(pf_clock_manual_waiters(clock), 1);
    pf_clock_manual_advance(clock, 1 * NS_PER_SEC);
    assert_false(readable(fd));
    pf_clock_manual_advance(clock, 1 * NS_PER_SEC);
    assert_true(readable(fd)); /* the advance woke the host's fd */
    assert_int_equal(pf_executor_timeout_ms(ex), 0);
    assert_true(pf_executor_drive(ex) >= 2); /* the timer and done */
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.result, 0);
    assert_true(pthread_equal(o.thread, pthread_self()));
    assert_int_equal(pf_clock_manual_waiters(clock), 0); /* none armed */
    pf_executor_free(ex);
}

static void
test_embed_fd_wait_completes_in_drive_when_the_pipe_is_written(void **state)
{
    pf_clock_t *clock = *state;
    pf_executor_t *ex = make_embedded(clock);
    pf_deadline_t d = pf_deadline_in(clock, 5.0);
    outcome_t o = {0};
    outcome_t late = {0};
    int fds[2];

    assert_int_equal(pipe2(fds, O_CLOEXEC | O_NONBLOCK), 0);
    assert_pf_ok(pf_executor_wait_fd(ex, fds[0], PF_WAIT_READABLE, &d, record,
                                     &o, NULL));
    assert_pf_ok(pf_executor_wait_fd(ex, fds[1], PF_WAIT_READABLE, &d, record,
                                     &late, NULL)); /* never readable */
    pf_executor_drive(ex);
    assert_int_equal(o.calls, 0);
    assert_int_equal(write(fds[1], "x", 1), 1);
    assert_true(readable(pf_executor_fd(ex)));
    pf_executor_drive(ex);
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.result, 0);
    pf_clock_manual_advance(clock, 5 * NS_PER_SEC);
    assert_true(readable(pf_executor_fd(ex)));
    pf_executor_drive(ex);
    assert_int_equal(late.calls, 1);
    assert_int_equal(late.result, PF_ETIMEDOUT);
    pf_executor_free(ex);
    close(fds[0]);
    close(fds[1]);
}

static void
bump(void *arg)
{
    (*(int *)arg)++;
}

static void *
submit_from_thread(void *arg)
{
    static int runs;
    pf_executor_t *ex = arg;

    assert_pf_ok(pf_executor_submit(ex, bump, &runs));
    return &runs;
}

static void
test_embed_work_queued_from_another_thread_wakes_the_host(void **state)
{
    pf_executor_t *ex = make_embedded(*state);
    pthread_t t;
    void *runs;

    pf_executor_drive(ex);
    assert_false(readable(pf_executor_fd(ex)));
    assert_int_equal(pthread_create(&t, NULL, submit_from_thread, ex), 0);
    pthread_join(t, &runs);
    assert_true(readable(pf_executor_fd(ex)));
    assert_int_equal(pf_executor_timeout_ms(ex), 0);
    assert_int_equal(*(int *)runs, 0); /* nothing runs until the drive */
    assert_int_equal(pf_executor_drive(ex), 1);
    assert_int_equal(*(int *)runs, 1);
    pf_executor_free(ex);
}

typedef struct nested {
    pf_executor_t *ex;
    int rc;
} nested_t;

static void
drive_inside(void *arg)
{
    nested_t *n = arg;

    n->rc = pf_executor_drive(n->ex);
}

static void
test_embed_drive_from_inside_a_drive_is_refused(void **state)
{
    nested_t n = {make_embedded(*state), 0};

    assert_pf_ok(pf_executor_submit(n.ex, drive_inside, &n));
    assert_int_equal(pf_executor_drive(n.ex), 1);
    assert_int_equal(n.rc, PF_ESTATE);
    pf_executor_free(n.ex);
}

static void
test_embed_free_runs_pending_completions_on_the_caller(void **state)
{
    pf_executor_t *ex = make_embedded(*state);
    outcome_t o = {0};
    int runs = 0;

    assert_pf_ok(pf_executor_wait_timer(ex, 9.0, record, &o, NULL));
    assert_pf_ok(pf_executor_submit(ex, bump, &runs));
    pf_executor_free(ex);
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.result, PF_ECANCELED);
    assert_int_equal(runs, 1);
}

/* ---- driven by a real libuv loop ---------------------------------------- */

#ifdef PF_HAVE_LIBUV

/* The host: a uv_poll on the executor's fd and a uv_timer for its
 * timeout; both call drive, then re-arm the timer from timeout_ms. */
typedef struct host {
    uv_loop_t loop;
    uv_poll_t poll;
    uv_timer_t timer;
    pf_executor_t *ex;
    int expected; /* completions to see before the loop ends */
    int seen;
    int drives;
} host_t;

static void host_drive(host_t *h);

static void
on_poll(uv_poll_t *p, int status, int events)
{
    (void)status;
    (void)events;
    host_drive(p->data);
}

static void
on_timer(uv_timer_t *t)
{
    host_drive(t->data);
}

static void
host_drive(host_t *h)
{
    int ms;

    assert_true(pf_executor_drive(h->ex) >= 0);
    h->drives++;
    if (h->seen == h->expected) {
        uv_poll_stop(&h->poll);
        uv_timer_stop(&h->timer);
        return;
    }
    ms = pf_executor_timeout_ms(h->ex);
    if (ms < 0) {
        uv_timer_stop(&h->timer);
    } else {
        uv_timer_start(&h->timer, on_timer, (uint64_t)ms, 0);
    }
}

static void
host_start(host_t *h, pf_executor_t *ex, int expected)
{
    memset(h, 0, sizeof(*h));
    h->ex = ex;
    h->expected = expected;
    assert_int_equal(uv_loop_init(&h->loop), 0);
    assert_int_equal(uv_poll_init(&h->loop, &h->poll, pf_executor_fd(ex)), 0);
    assert_int_equal(uv_timer_init(&h->loop, &h->timer), 0);
    h->poll.data = h;
    h->timer.data = h;
    assert_int_equal(uv_poll_start(&h->poll, UV_READABLE, on_poll), 0);
    host_drive(h); /* first look: arms the timer if one is due */
}

static void
host_finish(host_t *h)
{
    uv_close((uv_handle_t *)&h->poll, NULL);
    uv_close((uv_handle_t *)&h->timer, NULL);
    uv_run(&h->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&h->loop), 0);
}

typedef struct uv_wait {
    host_t *h;
    int result;
    int calls;
    pthread_t thread;
} uv_wait_t;

static void
uv_done(int result, void *arg)
{
    uv_wait_t *w = arg;

    w->calls++;
    w->result = result;
    w->thread = pthread_self();
    w->h->seen++;
}

/* A libuv timer that writes to the pipe the fd wait watches. */
typedef struct writer {
    uv_timer_t timer;
    int fd;
} writer_t;

static void
write_byte(uv_timer_t *t)
{
    writer_t *wr = t->data;

    assert_int_equal(write(wr->fd, "x", 1), 1);
}

static void
test_embed_libuv_loop_drives_fd_waits_and_timers_with_no_threads(
    void **state)
{
    int threads_before = thread_count();
    pf_executor_t *ex = make_embedded(NULL); /* the real clock */
    pf_deadline_t short_deadline = pf_deadline_in(NULL, 0.02);
    uv_wait_t w[4];
    writer_t wr;
    host_t h;
    int fds[2];
    int quiet[2];
    int i;

    (void)state;
    assert_int_equal(pf_executor_workers(ex), 0);
    assert_int_equal(thread_count(), threads_before); /* none started */
    assert_int_equal(pipe2(fds, O_CLOEXEC | O_NONBLOCK), 0);
    assert_int_equal(pipe2(quiet, O_CLOEXEC | O_NONBLOCK), 0);
    memset(w, 0, sizeof(w));
    host_start(&h, ex, 4);
    for (i = 0; i < 4; i++) {
        w[i].h = &h;
        w[i].result = 1;
    }
    assert_pf_ok(pf_executor_wait_timer(ex, 0.01, uv_done, &w[0], NULL));
    assert_pf_ok(pf_executor_wait_timer(ex, 0.03, uv_done, &w[1], NULL));
    assert_pf_ok(pf_executor_wait_fd(ex, fds[0], PF_WAIT_READABLE, NULL,
                                     uv_done, &w[2], NULL));
    assert_pf_ok(pf_executor_wait_fd(ex, quiet[0], PF_WAIT_READABLE,
                                     &short_deadline, uv_done, &w[3], NULL));
    wr.fd = fds[1];
    assert_int_equal(uv_timer_init(&h.loop, &wr.timer), 0);
    wr.timer.data = &wr;
    assert_int_equal(uv_timer_start(&wr.timer, write_byte, 5, 0), 0);
    uv_run(&h.loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&wr.timer, NULL);
    host_finish(&h);
    assert_int_equal(h.seen, 4);
    for (i = 0; i < 4; i++) {
        assert_int_equal(w[i].calls, 1);
        assert_true(pthread_equal(w[i].thread, pthread_self()));
    }
    assert_int_equal(w[0].result, 0);
    assert_int_equal(w[1].result, 0);
    assert_int_equal(w[2].result, 0);
    assert_int_equal(w[3].result, PF_ETIMEDOUT);
    pf_executor_free(ex);
    close(fds[0]);
    close(fds[1]);
    close(quiet[0]);
    close(quiet[1]);
}

/* A libuv timer that advances the manual clock once the wait is armed. */
typedef struct advancer {
    uv_timer_t timer;
    pf_clock_t *clock;
} advancer_t;

static void
advance_clock(uv_timer_t *t)
{
    advancer_t *a = t->data;

    pf_clock_manual_advance(a->clock, 10 * NS_PER_SEC);
}

static void
test_embed_libuv_loop_wakes_when_the_manual_clock_advances(void **state)
{
    pf_clock_t *clock = *state;
    pf_executor_t *ex = make_embedded(clock);
    advancer_t adv;
    uv_wait_t w;
    host_t h;

    memset(&w, 0, sizeof(w));
    host_start(&h, ex, 1);
    w.h = &h;
    assert_pf_ok(pf_executor_wait_timer(ex, 10.0, uv_done, &w, NULL));
    adv.clock = clock;
    assert_int_equal(uv_timer_init(&h.loop, &adv.timer), 0);
    adv.timer.data = &adv;
    assert_int_equal(uv_timer_start(&adv.timer, advance_clock, 1, 0), 0);
    uv_run(&h.loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&adv.timer, NULL);
    host_finish(&h);
    assert_int_equal(w.calls, 1);
    assert_int_equal(w.result, 0);
    pf_executor_free(ex);
}

#endif /* PF_HAVE_LIBUV */

int
main(void)
{
    const struct CMUnitTest tests[] = {
#define T(name)                                                                \
    cmocka_unit_test_setup_teardown(name, pf_test_clock_setup,                 \
                                    pf_test_clock_teardown)
        T(test_embed_config_defaults_to_threaded),
        T(test_embed_executor_has_no_workers_and_rejects_a_worker_count),
        T(test_embed_face_rejects_null_and_threaded_executors),
        T(test_embed_timer_completes_in_drive_after_the_clock_advances),
        T(test_embed_fd_wait_completes_in_drive_when_the_pipe_is_written),
        T(test_embed_work_queued_from_another_thread_wakes_the_host),
        T(test_embed_drive_from_inside_a_drive_is_refused),
        T(test_embed_free_runs_pending_completions_on_the_caller),
#ifdef PF_HAVE_LIBUV
        T(test_embed_libuv_loop_drives_fd_waits_and_timers_with_no_threads),
        T(test_embed_libuv_loop_wakes_when_the_manual_clock_advances),
#endif
#undef T
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
