/* A small pool of worker threads for work that must not run on the caller's
 * thread but may never return: a timed call's fn (timeout_call.c) and a
 * health check's run (health.c). Threads are reused across tasks: a task
 * goes to an idle thread when there is one; when every thread is busy the
 * pool starts one more, up to max_threads; at that cap the task waits in a
 * FIFO queue until a thread is free, and its owner may take it back with
 * pf__pool_cancel_starved (its own deadline passed) so it never runs. A
 * thread that has had nothing to do for idle_ns on the pool's clock ends,
 * so a pool that is not used holds no threads.
 *
 * A task that never returns keeps its thread for good; the pool grows past
 * it, so later tasks are not starved until max_threads such tasks hang at
 * once. Then new tasks queue, and their owners give up at their own
 * deadlines.
 *
 * The default pool (pf__pool_default) is process-wide, made on first use
 * and never freed: its idle threads end after 10 s, so a process that
 * stopped making timed calls and running checks holds none. */
#ifndef PF_SRC_POOL_H
#define PF_SRC_POOL_H

#include <stdbool.h>
#include <stdint.h>

#include "puffinflow/clock.h"

typedef struct pf__pool pf__pool_t; /* opaque */

/* Runs on a pool thread with none of the pool's locks held. */
typedef void (*pf__pool_fn)(void *arg);

/* One task: caller memory (usually inside the record of the work), from
 * pf__pool_submit until fn starts or pf__pool_cancel took it back. The pool
 * never touches it once fn has started, so fn may free it. Fields are
 * private to pool.c. */
typedef struct pf__pool_task {
    pf__pool_fn fn;
    void *arg;
    struct pf__pool_task *prev; /* queue links, under the pool's lock */
    struct pf__pool_task *next;
    bool queued;
} pf__pool_task_t;

typedef struct pf__pool_config {
    unsigned max_threads;    /* >= 1; default 256 */
    int64_t idle_ns;         /* > 0: an idle thread ends after this long;
                                INT64_MAX = never; default 10 s */
    const pf_clock_t *clock; /* for idle_ns; NULL = system monotonic */
} pf__pool_config_t;

#define PF__POOL_DEFAULT_MAX_THREADS 256u
#define PF__POOL_DEFAULT_IDLE_NS (10 * (int64_t)1000000000)

typedef struct pf__pool_stats {
    unsigned threads;      /* alive now */
    unsigned busy;         /* ... of them running a task */
    unsigned idle;         /* ... of them waiting for one */
    unsigned queued;       /* tasks waiting for a thread (at the cap) */
    unsigned peak_threads; /* the most alive at once */
    uint64_t created;      /* threads ever started */
    uint64_t ended;        /* threads that have ended (idle or closing) */
    uint64_t started;      /* tasks handed to a thread */
    uint64_t cancelled;    /* tasks taken back from the queue */
} pf__pool_stats_t;

/* Fill cfg with the defaults above. */
void pf__pool_config_init(pf__pool_config_t *cfg);

/* Make a pool with no threads yet (cfg NULL: defaults). Returns 0 and
 * stores it in *out, PF_EINVAL (NULL out, max_threads 0, idle_ns <= 0), or
 * PF_ENOMEM / PF_ESYSTEM; on error nothing is made. */
int pf__pool_new(const pf__pool_config_t *cfg, pf__pool_t **out);

/* Close p: idle threads end at once and free() waits for them; a thread
 * running a task ends when the task returns, and the last one frees the
 * memory (so a hung task keeps only its thread and the pool's few bytes).
 * No task may be queued or submitted any more. NULL is a no-op. May be
 * called from a task of p. */
void pf__pool_free(pf__pool_t *p);

/* The process-wide pool (defaults above, system clock), made on first use
 * under pthread_once; NULL only if its condition variable could not be
 * made. Never freed. Thread-safe. */
pf__pool_t *pf__pool_default(void);

/* Run fn(arg) on a thread of p: an idle one, else a new one while p has
 * fewer than max_threads, else the first to become free (t waits in the
 * queue). Returns 0 (fn will run unless cancelled), PF_EINVAL (NULL p, t or
 * fn), or PF_ESYSTEM when no thread could be started and p has none to
 * run it later (t is not queued). Never blocks on other tasks.
 * Thread-safe. */
int pf__pool_submit(pf__pool_t *p, pf__pool_task_t *t, pf__pool_fn fn,
                    void *arg);

/* Take t back if it is still queued: returns true and fn will never run
 * (t is the caller's again); false when fn has started (or was never
 * submitted). Thread-safe. */
bool pf__pool_cancel(pf__pool_t *p, pf__pool_task_t *t);

/* pf__pool_cancel, but only while p is at max_threads: t then waits for a
 * busy thread to become free, and may wait for good if they hang. Below
 * the cap a thread is already on its way to every queued task (started or
 * woken for it), so t is left to run: an owner whose deadline passes while
 * a thread is merely starting still sees its work run, as it would on a
 * thread of its own. Thread-safe. */
bool pf__pool_cancel_starved(pf__pool_t *p, pf__pool_task_t *t);

/* Fill *out with a snapshot of p. Thread-safe. */
void pf__pool_stats(pf__pool_t *p, pf__pool_stats_t *out);

#endif /* PF_SRC_POOL_H */
