/* The executor's internal face, used by the scheduler: intrusive work
 * items ("tasks") in priority queues, task groups that let a thread
 * waiting for a run execute that run's own queued tasks, and timers. No
 * function here allocates except the timer heap's growth. */
#ifndef PF_SRC_EXECUTOR_IMPL_H
#define PF_SRC_EXECUTOR_IMPL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "puffinflow/deadline.h"
#include "puffinflow/executor.h"

#include "timerheap.h"

#define PF__EXEC_PRIOS 4

struct pf__task;
struct pf__group;

typedef void (*pf__task_fn)(struct pf__task *t);

/* A unit of work: caller memory (a state slot of a run) linked into the
 * executor's queue. Set fn, prio and group, then push it. While queued it
 * belongs to the executor; a task is in at most one queue at a time. All
 * link fields are under the executor's lock. */
typedef struct pf__task {
    struct pf__task *next;
    struct pf__task *prev;
    struct pf__task *gnext; /* in its group's list */
    struct pf__task *gprev;
    struct pf__group *group; /* may be NULL */
    pf__task_fn fn;
    unsigned prio; /* 0 (low) .. PF__EXEC_PRIOS - 1 */
    bool queued;
} pf__task_t;

/* The tasks of one run, so that a thread waiting for the run can take and
 * execute them itself. Every field is under the executor's lock. */
typedef struct pf__group {
    pf__task_t *head;
    pf__task_t *tail;
    pthread_cond_t cv; /* a task of the group arrived, or it finished */
    unsigned waiting;  /* threads asleep on cv: helpers and watchers */
    unsigned helpers;  /* of those, the ones that take the group's tasks */
    bool finished;
} pf__group_t;

/* Initialise g (its condition variable). Returns 0 or PF_ESYSTEM. */
int pf__group_init(pf__group_t *g);

/* Destroy g, which must have no queued task and no helper. */
void pf__group_destroy(pf__group_t *g);

/* Make g reusable (not finished). No task may be queued, none waiting. */
void pf__group_reset(pf__group_t *g);

/* Queue t; wake a helper of its group if one is waiting (a watcher with a
 * deadline does not count), else an idle worker if any. Thread-safe; never blocks beyond the executor's lock. */
void pf__exec_push(pf_executor_t *ex, pf__task_t *t);

/* Queue n tasks with one lock acquisition. */
void pf__exec_push_many(pf_executor_t *ex, pf__task_t *const *tasks, size_t n);

/* Mark g finished, wake its helpers and, in the same locked step, drop one
 * count of *refs: a helper returns only once the count has been dropped,
 * so a thread that waited for the group never races the finisher's last
 * reference. Returns true when *refs fell to 0. Thread-safe. */
bool pf__exec_group_finish(pf_executor_t *ex, pf__group_t *g,
                           _Atomic int *refs);

/* Wait until g is finished (returns 0) or deadline d passes (PF_ETIMEDOUT;
 * NULL or none = no deadline). Without a deadline the calling thread runs
 * the tasks of g as they arrive, highest priority first, with no lock
 * held. With one it never runs a task (a task may take any time, and the
 * wait must end by d): it only watches, and the group's tasks are left to
 * the workers and to other helpers. */
int pf__exec_help(pf_executor_t *ex, pf__group_t *g, const pf_deadline_t *d);

/* Arm idle timer t to fire at at_ns on the executor's clock (at once if
 * that has passed). Its callback runs on the reactor's loop (the reactor
 * thread, or pf_executor_drive when embedded) with no lock held. Returns
 * 0, or PF_ENOMEM (t stays idle). Thread-safe. */
int pf__exec_timer_arm(pf_executor_t *ex, pf__timer_t *t, int64_t at_ns);

/* Disarm t. Returns true when it was armed and now will not fire; false
 * when it was not armed, or has fired: then, unless called on the
 * reactor's loop (from a timer callback), its callback has returned by
 * the time this returns. Thread-safe. */
bool pf__exec_timer_cancel(pf_executor_t *ex, pf__timer_t *t);

/* True when the calling thread is one of ex's workers. */
bool pf__exec_on_worker(const pf_executor_t *ex);

struct pf__reactor;
struct pf__waitset;

/* ex's reactor (reactor.h) and its set of pending waits (waits.h). */
struct pf__reactor *pf__exec_reactor(pf_executor_t *ex);
struct pf__waitset *pf__exec_waitset(pf_executor_t *ex);

#endif /* PF_SRC_EXECUTOR_IMPL_H */
