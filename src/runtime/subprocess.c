/* Child processes on the reactor. pf_executor_spawn starts the command in
 * a process group of its own (base/spawn.c), opens a pidfd for it and
 * waits for the pidfd to become readable with a one-shot fd wait: no
 * thread waits for the child. Three waits may then race to act on the
 * record, each on a worker: the pidfd (the leader exited), the deadline
 * (on any clock) and the grace timer (on the executor's clock, armed when
 * the group was sent SIGTERM); pf_subprocess_abort is a fourth party, on
 * any thread. All of them take the record's one lock, and its phase says
 * what each may still do:
 *
 *   STARTING -> RUNNING -> (TERMINATING ->) DONE;  STARTING -> FAILED
 *
 * RUNNING: the leader runs. The deadline or an abort sends SIGTERM to the
 * group (SIGKILL when kill_grace is 0) and arms the grace timer:
 * TERMINATING. When the leader exits by itself but left members in its
 * group, the same happens with the result still 0.
 * TERMINATING: the grace timer sends SIGKILL to whatever is left. The
 * record is DONE once the leader is reaped and either the group is empty
 * or SIGKILL was sent to it; done is called then, once, with no lock held.
 * Once the leader is reaped with members left, nothing signals the group's
 * end (its members are no children of ours), so a poll looks: a timerfd
 * wait (real time, on any executor clock: the members' exit is a real
 * event, as the pidfd's) every 1 ms, doubling to 50 ms, that completes the
 * record as soon as no member of the group can run (zombies do not count:
 * an orphan that exited is a zombie until init reaps it, which may take
 * seconds); the grace timer still sends SIGKILL to members that outlive
 * it.
 *
 * The leader is reaped only by its pidfd wait, so until then its pid, and
 * with it the group id, cannot be reused: signalling -pid is safe. After
 * the reap the group is signalled only right after a check that it still
 * has members (see base/spawn_impl.h).
 *
 * Memory: one reference per party that may still touch the record: the
 * owner (while out was given and pf_subprocess_free not called) and each
 * registered wait until its callback returns. The last one frees it. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "puffinflow/error.h"
#include "puffinflow/subprocess.h"

#include "context_impl.h"
#include "mem.h"
#include "run_impl.h"
#include "schedule_impl.h"
#include "spawn_impl.h"
#include "timeutil.h"

typedef enum {
    SUB_STARTING,    /* pf_executor_spawn is still setting it up */
    SUB_RUNNING,     /* the leader runs; nobody asked it to stop */
    SUB_TERMINATING, /* SIGTERM sent (or SIGKILL); the grace timer runs */
    SUB_DONE,        /* done has been called or is about to be */
    SUB_FAILED       /* pf_executor_spawn failed; waits only unwind */
} sub_phase_t;

/* ex, pid, pidfd, grace, done and arg are immutable after start; refs is
 * atomic; all else is under lock. */
struct pf_subprocess {
    pthread_mutex_t lock;
    pf_executor_t *ex;
    pid_t pid;
    int pidfd;
    double grace; /* seconds */
    pf_subprocess_fn done;
    void *arg;
    atomic_int refs;

    sub_phase_t phase;
    bool reaped;
    bool killed; /* SIGKILL was sent to the group */
    int status;  /* from waitpid, once reaped */
    int result;  /* 0, PF_ETIMEDOUT or PF_ECANCELED */
    pf_wait_t *exit_wait;
    pf_wait_t *deadline_wait;
    pf_wait_t *grace_wait;
    pf_wait_t *poll_wait; /* the group's poll, while it runs */
    int poll_fd;          /* its timerfd, -1 when none */
    long poll_ns;         /* its next interval */
};

/* The group poll's first and largest interval. */
#define POLL_FIRST_NS 1000000L
#define POLL_MAX_NS 50000000L

void
pf_subprocess_opts_init(pf_subprocess_opts_t *o)
{
    if (o == NULL) {
        return;
    }
    o->kill_grace = 5.0;
    o->inherit_stdio = false;
}

static void
sub_unref(pf_subprocess_t *p)
{
    /* acq_rel: the last holder must see every write the others made under
     * or after the lock before it frees. */
    if (atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) == 1) {
        pthread_mutex_destroy(&p->lock);
        pf__free(p);
    }
}

static void
sub_ref(pf_subprocess_t *p)
{
    atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
}

static void
kill_group(pf_subprocess_t *p)
{
    kill(-p->pid, SIGKILL);
    p->killed = true;
}

/* Mark p DONE and withdraw its timers. Under p->lock. The caller then
 * calls finish() with the lock released. */
static void
sub_complete(pf_subprocess_t *p)
{
    p->phase = SUB_DONE;
    /* Their callbacks still run (PF_ECANCELED), find DONE and only drop
     * their references. */
    pf_wait_abort(p->deadline_wait);
    pf_wait_abort(p->grace_wait);
    pf_wait_abort(p->poll_wait);
}

static void
sub_finish(pf_subprocess_t *p)
{
    pf_subprocess_result_t r;

    r.result = p->result;
    r.exit_code = WIFEXITED(p->status) ? WEXITSTATUS(p->status) : -1;
    r.term_signal = WIFSIGNALED(p->status) ? WTERMSIG(p->status) : 0;
    r.pid = (int)p->pid;
    p->done(&r, p->arg);
}

static void on_grace(int result, void *arg);

/* Ask the group to end: SIGTERM and the grace timer, or SIGKILL at once.
 * Under p->lock, from RUNNING. */
static void
sub_terminate(pf_subprocess_t *p)
{
    p->phase = SUB_TERMINATING;
    if (p->grace > 0.0) {
        kill(-p->pid, SIGTERM);
        sub_ref(p);
        if (pf_executor_wait_timer(p->ex, p->grace, on_grace, p,
                                   &p->grace_wait) == 0) {
            return;
        }
        sub_unref(p); /* cannot be the last: the caller holds one */
    }
    kill_group(p);
}

static void
on_grace(int result, void *arg)
{
    pf_subprocess_t *p = arg;
    bool finish = false;

    (void)result; /* 0, or PF_ECANCELED: completed, or ex being freed */
    pthread_mutex_lock(&p->lock);
    pf_wait_free(p->grace_wait);
    p->grace_wait = NULL;
    if (p->phase == SUB_TERMINATING) {
        if (!p->reaped || pf__spawn_group_alive(p->pid)) {
            kill_group(p);
        }
        if (p->reaped) {
            sub_complete(p);
            finish = true;
        }
        /* Else the pidfd wait fires once SIGKILL has ended the leader. */
    }
    pthread_mutex_unlock(&p->lock);
    if (finish) {
        sub_finish(p);
    }
    sub_unref(p);
}

static void
on_deadline(int result, void *arg)
{
    pf_subprocess_t *p = arg;

    pthread_mutex_lock(&p->lock);
    pf_wait_free(p->deadline_wait);
    p->deadline_wait = NULL;
    if (result == 0 && p->phase == SUB_RUNNING) {
        p->result = PF_ETIMEDOUT;
        sub_terminate(p);
    }
    pthread_mutex_unlock(&p->lock);
    sub_unref(p);
}

/* Reap the leader, blocking if need be: after its pidfd is readable (or
 * SIGKILL was sent) waitpid returns at once. */
static void
reap_leader(pf_subprocess_t *p)
{
    while (waitpid(p->pid, &p->status, 0) < 0 && errno == EINTR) {
    }
    p->reaped = true;
}

static void on_poll(int result, void *arg);

/* Arm the group poll's timerfd for p->poll_ns and wait for it. Under
 * p->lock, TERMINATING with the leader reaped. False when it cannot
 * (then the grace timer alone ends the record). */
static bool
poll_arm(pf_subprocess_t *p)
{
    struct itimerspec its;

    memset(&its, 0, sizeof(its));
    its.it_value.tv_nsec = p->poll_ns;
    if (timerfd_settime(p->poll_fd, 0, &its, NULL) != 0) {
        return false;
    }
    sub_ref(p);
    if (pf_executor_wait_fd(p->ex, p->poll_fd, PF_WAIT_READABLE, NULL,
                            on_poll, p, &p->poll_wait) != 0) {
        p->poll_wait = NULL;
        sub_unref(p); /* cannot be the last: the caller holds one */
        return false;
    }
    if (p->poll_ns < POLL_MAX_NS) {
        p->poll_ns = p->poll_ns * 2 > POLL_MAX_NS ? POLL_MAX_NS
                                                  : p->poll_ns * 2;
    }
    return true;
}

/* Start polling for the group's end. Under p->lock, as poll_arm. */
static void
poll_start(pf_subprocess_t *p)
{
    p->poll_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (p->poll_fd < 0) {
        return;
    }
    p->poll_ns = POLL_FIRST_NS;
    if (!poll_arm(p)) {
        close(p->poll_fd);
        p->poll_fd = -1;
    }
}

static void
on_poll(int result, void *arg)
{
    pf_subprocess_t *p = arg;
    bool finish = false;
    uint64_t ticks;
    ssize_t n;

    pthread_mutex_lock(&p->lock);
    pf_wait_free(p->poll_wait);
    p->poll_wait = NULL;
    n = read(p->poll_fd, &ticks, sizeof(ticks)); /* re-armed below */
    (void)n; /* EAGAIN: aborted before it fired */
    if (result == 0 && p->phase == SUB_TERMINATING) {
        if (!pf__spawn_group_running(p->pid)) {
            sub_complete(p);
            finish = true;
        } else if (poll_arm(p)) {
            goto out; /* keeps the timerfd */
        }
    }
    close(p->poll_fd);
    p->poll_fd = -1;
out:
    pthread_mutex_unlock(&p->lock);
    if (finish) {
        sub_finish(p);
    }
    sub_unref(p);
}

static void
on_exit_ready(int result, void *arg)
{
    pf_subprocess_t *p = arg;
    bool finish = false;

    pthread_mutex_lock(&p->lock);
    pf_wait_free(p->exit_wait);
    p->exit_wait = NULL;
    if (p->phase == SUB_FAILED) {
        goto out; /* pf_executor_spawn reaped it */
    }
    if (result != 0) {
        /* The executor is being freed: nothing will watch the group any
         * more, so end it now. */
        kill_group(p);
        if (p->phase == SUB_RUNNING) {
            p->result = PF_ECANCELED;
        }
    }
    reap_leader(p);
    if (p->phase == SUB_RUNNING && pf__spawn_group_running(p->pid)) {
        sub_terminate(p); /* it left members in its group */
    }
    if (p->phase == SUB_RUNNING || p->killed ||
        !pf__spawn_group_running(p->pid)) {
        sub_complete(p);
        finish = true;
    } else {
        /* TERMINATING with members left: the poll finishes when they are
         * gone, the grace timer when they outlive it. */
        poll_start(p);
    }
out:
    close(p->pidfd);
    pthread_mutex_unlock(&p->lock);
    if (finish) {
        sub_finish(p);
    }
    sub_unref(p);
}

static int
check_args(pf_executor_t *ex, const char *const *argv,
           const pf_subprocess_opts_t *o, pf_subprocess_fn done)
{
    if (ex == NULL || done == NULL || argv == NULL || argv[0] == NULL ||
        argv[0][0] == '\0') {
        return PF_EINVAL;
    }
    if (isnan(o->kill_grace) || o->kill_grace < 0.0 ||
        isinf(o->kill_grace)) {
        return PF_EINVAL; /* a group that ignores SIGTERM would never end */
    }
    return 0;
}

/* Start the child and its pidfd; 0 or a PF_E* code, nothing left. */
static int
start_child(pf_subprocess_t *p, const char *const *argv, bool inherit)
{
    int err = pf__spawn((char *const *)argv, !inherit, &p->pid);

    if (err == ENOENT || err == EACCES || err == ENOTDIR) {
        return PF_ENOTFOUND;
    }
    if (err != 0) {
        errno = err;
        return err == ENOMEM ? PF_ENOMEM : PF_ESYSTEM;
    }
    p->pidfd = pf__pidfd_open(p->pid);
    if (p->pidfd < 0) {
        err = errno;
        kill(-p->pid, SIGKILL);
        reap_leader(p);
        errno = err;
        return PF_ESYSTEM;
    }
    return 0;
}

int
pf_executor_spawn(pf_executor_t *ex, const char *const *argv,
                  const pf_subprocess_opts_t *opts,
                  const pf_deadline_t *deadline, pf_subprocess_fn done,
                  void *arg, pf_subprocess_t **out)
{
    pf_subprocess_opts_t def;
    pf_subprocess_t *p;
    int rc;

    if (opts == NULL) {
        pf_subprocess_opts_init(&def);
        opts = &def;
    }
    rc = check_args(ex, argv, opts, done);
    if (rc != 0) {
        return rc;
    }
    p = pf__calloc(1, sizeof(*p));
    if (p == NULL) {
        return PF_ENOMEM;
    }
    if (pthread_mutex_init(&p->lock, NULL) != 0) {
        pf__free(p);
        return PF_ESYSTEM;
    }
    p->ex = ex;
    p->grace = opts->kill_grace;
    p->done = done;
    p->arg = arg;
    p->phase = SUB_STARTING;
    p->poll_fd = -1;
    atomic_init(&p->refs, 1); /* this call's, then the owner's */
    rc = start_child(p, argv, opts->inherit_stdio);
    if (rc != 0) {
        pthread_mutex_destroy(&p->lock);
        pf__free(p);
        return rc;
    }
    /* The lock keeps the waits' callbacks out until the record is set. */
    pthread_mutex_lock(&p->lock);
    sub_ref(p);
    rc = pf_executor_wait_fd(ex, p->pidfd, PF_WAIT_READABLE, NULL,
                             on_exit_ready, p, &p->exit_wait);
    if (rc != 0) {
        atomic_fetch_sub_explicit(&p->refs, 1, memory_order_relaxed);
        kill_group(p);
        reap_leader(p);
        close(p->pidfd);
        pthread_mutex_unlock(&p->lock);
        pthread_mutex_destroy(&p->lock);
        pf__free(p);
        return rc;
    }
    if (!pf_deadline_is_none(deadline)) {
        sub_ref(p);
        rc = pf_executor_wait_until(ex, deadline, on_deadline, p,
                                    &p->deadline_wait);
        if (rc != 0) {
            atomic_fetch_sub_explicit(&p->refs, 1, memory_order_relaxed);
            p->phase = SUB_FAILED; /* the exit wait unwinds and closes */
            kill_group(p);
            reap_leader(p);
            pf_wait_abort(p->exit_wait);
            pthread_mutex_unlock(&p->lock);
            sub_unref(p);
            return rc;
        }
    }
    p->phase = SUB_RUNNING;
    pthread_mutex_unlock(&p->lock);
    if (out != NULL) {
        *out = p; /* this call's reference becomes the owner's */
    } else {
        sub_unref(p);
    }
    return 0;
}

void
pf_subprocess_abort(pf_subprocess_t *p)
{
    if (p == NULL) {
        return;
    }
    pthread_mutex_lock(&p->lock);
    if (p->phase == SUB_RUNNING) {
        p->result = PF_ECANCELED;
        sub_terminate(p);
    }
    pthread_mutex_unlock(&p->lock);
}

int
pf_subprocess_pid(const pf_subprocess_t *p)
{
    return p == NULL ? -1 : (int)p->pid;
}

bool
pf_subprocess_ended(pf_subprocess_t *p)
{
    bool ended;

    if (p == NULL) {
        return false;
    }
    pthread_mutex_lock(&p->lock);
    ended = p->phase == SUB_DONE;
    pthread_mutex_unlock(&p->lock);
    return ended;
}

void
pf_subprocess_free(pf_subprocess_t *p)
{
    if (p != NULL) {
        sub_unref(p);
    }
}

/* ---- as an asynchronous state ------------------------------------------ */

/* The state provider's record: the completion, the command, and the
 * abort's handshake with the starter (as pending.c's waiters): the
 * runtime's abort may come before the starter has the command's handle,
 * so it raises abort_req, and the starter, having published the handle,
 * looks at abort_req (both seq_cst: one of the two sees the other). Two
 * references: the starter's and the command's done. */
typedef struct spawn_state {
    pf_completion_t *c;
    _Atomic(pf_subprocess_t *) p;
    atomic_bool abort_req;
    atomic_int refs;
} spawn_state_t;

static void
spawn_state_unref(spawn_state_t *st)
{
    if (atomic_fetch_sub_explicit(&st->refs, 1, memory_order_acq_rel) != 1) {
        return;
    }
    /* The completion first: it waits for an abort under way, which may
     * still use the command's handle. */
    pf_completion_free(st->c);
    pf_subprocess_free(atomic_load_explicit(&st->p, memory_order_relaxed));
    pf__free(st);
}

static void
spawn_state_abort(void *arg)
{
    spawn_state_t *st = arg;

    atomic_store_explicit(&st->abort_req, true, memory_order_seq_cst);
    pf_subprocess_abort(atomic_load_explicit(&st->p, memory_order_seq_cst));
}

static void
spawn_state_done(const pf_subprocess_result_t *r, void *arg)
{
    spawn_state_t *st = arg;
    int result = r->result;

    if (result == 0 && r->exit_code > 0) {
        result = r->exit_code;
    } else if (result == 0 && r->term_signal != 0) {
        result = 128 + r->term_signal;
    }
    /* Refused when the attempt was ended first: nothing to do then. */
    (void)pf_completion_complete(st->c, result);
    spawn_state_unref(st);
}

int
pf_ctx_spawn(pf_ctx_t *ctx, const char *const *argv,
             const pf_subprocess_opts_t *opts)
{
    pf__run_t *r;
    spawn_state_t *st;
    pf_subprocess_t *p = NULL;
    int rc;

    if (ctx == NULL || ctx->run == NULL) {
        return PF_EINVAL;
    }
    r = ctx->run;
    st = pf__malloc(sizeof(*st));
    if (st == NULL) {
        return PF_ENOMEM;
    }
    atomic_init(&st->p, NULL);
    atomic_init(&st->abort_req, false);
    atomic_init(&st->refs, 2);
    rc = pf_ctx_pending(ctx, spawn_state_abort, st, &st->c);
    if (rc != 0) {
        pf__free(st);
        return rc;
    }
    rc = pf_executor_spawn(r->ex, argv, opts, NULL, spawn_state_done, st,
                           &p);
    if (rc != 0) {
        /* Nothing started: take the pending back, report the error. */
        pf__sched_unpend(r, &r->slots[ctx->state]);
        pf_completion_free(st->c);
        pf__free(st);
        return rc;
    }
    atomic_store_explicit(&st->p, p, memory_order_seq_cst);
    if (atomic_load_explicit(&st->abort_req, memory_order_seq_cst)) {
        pf_subprocess_abort(p); /* the abort came before the handle */
    }
    spawn_state_unref(st);
    return PF_PENDING;
}
