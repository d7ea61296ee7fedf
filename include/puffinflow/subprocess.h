/* puffinflow — child processes on the executor's reactor.
 *
 * pf_executor_spawn runs a command as the leader of a process group of its
 * own and watches its pidfd (Linux 5.3+) in the executor's reactor: no
 * thread waits for it. It completes exactly once, by calling done on a
 * worker with the exit status. A deadline or pf_subprocess_abort ends the
 * whole group: SIGTERM, then SIGKILL after kill_grace (a timer on the
 * executor's clock). Every child is reaped; nothing in its group is left
 * running when done is called.
 *
 * The command health check (health.h) runs its commands with the same
 * spawn and kill code, blocking on its own thread. */
#ifndef PUFFINFLOW_SUBPROCESS_H
#define PUFFINFLOW_SUBPROCESS_H

#include <stdbool.h>

#include "puffinflow/context.h"
#include "puffinflow/deadline.h"
#include "puffinflow/executor.h"
#include "puffinflow/export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pf_subprocess pf_subprocess_t; /* opaque */

typedef struct pf_subprocess_opts {
    double kill_grace;  /* seconds from SIGTERM to SIGKILL when the
                           command is ended, on the executor's clock; 0 =
                           SIGKILL at once; finite; default 5 */
    bool inherit_stdio; /* true: the command shares our stdin, stdout and
                           stderr; default false: all three /dev/null */
} pf_subprocess_opts_t;

/* Fill o with the defaults above. NULL is a no-op. */
PF_API void pf_subprocess_opts_init(pf_subprocess_opts_t *o);

/* How a command ended, passed to done. */
typedef struct pf_subprocess_result {
    int result;      /* 0 = it ended by itself; PF_ETIMEDOUT = the
                        deadline ended it; PF_ECANCELED =
                        pf_subprocess_abort, or the executor was freed */
    int exit_code;   /* 0..255 when it exited, else -1 */
    int term_signal; /* the signal that ended it (SIGTERM, SIGKILL, ...),
                        else 0 */
    int pid;         /* its process id (and process group id) */
} pf_subprocess_result_t;

/* Called once, on a worker of the executor (embedded: inside
 * pf_executor_drive), with no lock held, after the command is reaped and
 * its group emptied or killed. r is valid during the call only. It may
 * start new work, and free the handle. */
typedef void (*pf_subprocess_fn)(const pf_subprocess_result_t *r, void *arg);

/* Run argv[0] (searched in PATH when it has no '/') with argv (NULL
 * terminated; not kept) and this process's environment, in a new process
 * group, and complete through done when it ends. opts NULL = defaults.
 * deadline NULL or pf_deadline_none = none (any clock; one already past
 * ends the command at once, through SIGTERM). When the command exits but
 * left members in its group, those get SIGTERM at once, then SIGKILL
 * after kill_grace if any is left; done (result 0: the command ended by
 * itself) comes as soon as no member of the group can run (looked at
 * every 1 ms, doubling to 50 ms, in real time; a member that exited and
 * waits for init to reap it does not count) or SIGKILL was sent.
 *
 * With out non-NULL, *out receives a handle, stored before done can run;
 * the record lives until both the owner (pf_subprocess_free) and the
 * executor are done with it. Returns 0; PF_EINVAL for a NULL ex, done,
 * argv or argv[0], an empty argv[0], or a negative, NaN or infinite
 * kill_grace; PF_ENOTFOUND when argv[0] does not exist (or is not
 * executable: EACCES); PF_ENOMEM; PF_ESTATE while ex is being freed;
 * PF_ESYSTEM when the process or its pidfd cannot be made (errno says
 * why; ENOSYS: a kernel before 5.3). On error done is never called, *out
 * is untouched and no process is left running. Never blocks beyond
 * posix_spawn. Thread-safe.
 *
 * When ex is freed first, the command's group gets SIGKILL and done runs
 * with PF_ECANCELED (unless it had ended). */
PF_API int pf_executor_spawn(pf_executor_t *ex, const char *const *argv,
                             const pf_subprocess_opts_t *opts,
                             const pf_deadline_t *deadline,
                             pf_subprocess_fn done, void *arg,
                             pf_subprocess_t **out);

/* End p's command now, as its deadline would (SIGTERM to the group, then
 * SIGKILL after kill_grace); done then runs with PF_ECANCELED. A no-op
 * once the command has ended or is being ended. NULL is a no-op; must not
 * follow pf_subprocess_free(p). Thread-safe, done included; never blocks
 * beyond p's short lock. */
PF_API void pf_subprocess_abort(pf_subprocess_t *p);

/* The command's process id, or -1 for NULL. Thread-safe. */
PF_API int pf_subprocess_pid(const pf_subprocess_t *p);

/* True once done has been called or is about to be. NULL: false.
 * Thread-safe. */
PF_API bool pf_subprocess_ended(pf_subprocess_t *p);

/* Give up the owner's hold on p. It does not abort p: a running command
 * still completes through done. NULL is a no-op; at most once; p must not
 * be used after. Thread-safe; may be called from done. */
PF_API void pf_subprocess_free(pf_subprocess_t *p);

/* ---- as an asynchronous state ------------------------------------------ */

/* Run argv as the current attempt of ctx's state, without a thread: makes
 * the attempt pending (pf_ctx_pending) on pf_executor_spawn on the run's
 * executor and returns PF_PENDING, which the state returns. The attempt
 * completes with 0 when the command exits with status 0, its exit status
 * (1..255) when it exits with another, or 128 + the signal when a signal
 * ended it (the shell's convention): so retries, breakers and dead letters
 * see a failing command as a failure. The attempt's timeout, the run's
 * deadline or a cancellation ends the command's group as
 * pf_subprocess_abort does (SIGTERM, SIGKILL after opts->kill_grace) and
 * the attempt at once. Use: `return pf_ctx_spawn(ctx, argv, NULL);`.
 *
 * Returns PF_PENDING, or (nothing started, nothing left running) the
 * errors of pf_executor_spawn (PF_ENOTFOUND for a command that does not
 * exist), PF_EINVAL for a ctx that is not a running state's, or PF_ESTATE
 * (pf_ctx_pending's). Call it from the state's own thread. */
PF_API int pf_ctx_spawn(pf_ctx_t *ctx, const char *const *argv,
                        const pf_subprocess_opts_t *opts);

#ifdef __cplusplus
}
#endif

#endif /* PUFFINFLOW_SUBPROCESS_H */
