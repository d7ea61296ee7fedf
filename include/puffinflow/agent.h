/* puffinflow — agents: named states, their options, and runs.
 *
 * An agent is a set of named states, each a function
 * `int fn(pf_ctx_t *ctx, void *arg)` returning 0 for success and any
 * non-zero value for failure, with options: dependencies, a priority,
 * retries with backoff, a timeout, a circuit breaker, a bulkhead, a rate
 * limit, a fallback, and the resources it holds (reported to a leak
 * detector). A run executes the agent once:
 *
 *   - Which states start: in parallel mode (the default) every state with
 *     no dependencies; in sequential mode only the first state added (and
 *     any added with `entry`).
 *   - What runs next: a state names its successors with pf_ctx_goto (zero,
 *     one or several: several run in parallel), and a state with
 *     depends_on runs once every one of its dependencies has completed. A
 *     state runs at most once per run (retries aside): a goto to a state
 *     already started does nothing, and a goto does not make a state with
 *     dependencies start early.
 *   - Before each attempt the state's rate limit, bulkhead and breaker
 *     (each its own, shared by pointer, or shared by name through a
 *     registry) are
 *     asked, in that order. A rate-limit or bulkhead wait is a timer or a
 *     queue entry, never a sleeping thread. A breaker that rejects the
 *     attempt (PF_EOPEN) ends the state at once, with no retry: its
 *     fallback function stands in for it, or its fallback state is started,
 *     or (when the state has neither) the breaker's own configured
 *     fallback answers for it, or it fails.
 *   - Each attempt's result goes to its breaker as pf_breaker_call gives
 *     it: an attempt the breaker counts as a timeout (slower than the
 *     breaker's timeout) fails with PF_ETIMEDOUT whatever it returned, and
 *     the breaker's own fallback, if it has one and the state has none,
 *     answers a counted failure or timeout (see pf_state_opts_t.breaker).
 *   - A failed attempt (non-zero result, or past its timeout: PF_ETIMEDOUT)
 *     is retried per the state's retry policy after a backoff delay (a
 *     timer). A state that fails for good becomes a dead letter (state,
 *     agent, error, attempts, whether it timed out, when) and the run goes
 *     on with whatever does not depend on it.
 *   - The run ends when nothing is ready, waiting or running. It can be
 *     cancelled and can have an overall deadline; states not started by
 *     then are cancelled.
 *
 * Threads: pf_agent_run runs the states on the calling thread and hands
 * work to the executor's workers only when there is parallel work; when a
 * state completes and exactly one state is next, the same thread runs it
 * at once, so a sequential chain costs no thread hand-off. Many runs of
 * one agent, or of many agents, may go on at once from any threads. */
#ifndef PUFFINFLOW_AGENT_H
#define PUFFINFLOW_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "puffinflow/breaker.h"
#include "puffinflow/bulkhead.h"
#include "puffinflow/context.h"
#include "puffinflow/deadline.h"
#include "puffinflow/executor.h"
#include "puffinflow/error.h"
#include "puffinflow/export.h"
#include "puffinflow/leak.h"
#include "puffinflow/ratelimit.h"
#include "puffinflow/registry.h"
#include "puffinflow/retry.h"
#include "puffinflow/types.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pf_agent pf_agent_t; /* opaque */
typedef struct pf_run pf_run_t;     /* opaque: one run in progress */

/* A state. Returns 0 for success, anything else for failure (handed back
 * unchanged in results and dead letters). ctx is valid during the call. */
typedef int (*pf_state_fn)(pf_ctx_t *ctx, void *arg);

/* Stands in for a state whose breaker rejected it (reason PF_EOPEN), or,
 * with fallback_on_failure, that failed for good (reason: its last
 * error). Runs in the state's place with its ctx; returning 0 completes the
 * state (its dependents run and its gotos count). */
typedef int (*pf_state_fallback_fn)(pf_ctx_t *ctx, void *arg, int reason);

/* Which states a run starts with. */
typedef enum pf_exec_mode {
    PF_EXEC_PARALLEL = 0,  /* every state without dependencies */
    PF_EXEC_SEQUENTIAL = 1 /* the first state added, and those with entry */
} pf_exec_mode_t;

/* The original's state profiles: shortcuts that fill several options. */
typedef enum pf_state_profile {
    PF_PROFILE_MINIMAL = 0,
    PF_PROFILE_STANDARD = 1,
    PF_PROFILE_CPU_INTENSIVE = 2,
    PF_PROFILE_MEMORY_INTENSIVE = 3,
    PF_PROFILE_IO_INTENSIVE = 4,
    PF_PROFILE_NETWORK_INTENSIVE = 5,
    PF_PROFILE_QUICK = 6,
    PF_PROFILE_BATCH = 7,
    PF_PROFILE_CRITICAL = 8
} pf_state_profile_t;

#define PF_PROFILE_COUNT 9

/* ---- state options -------------------------------------------------------
 *
 * Caller memory filled by pf_state_opts_init, then edited. Copied by
 * pf_agent_add_state (strings, arrays and the configs pointed to as well:
 * they need only live through that call); the objects pointed to (shared
 * breaker, bulkhead, limiter, retry budget) are not owned and must outlive
 * the agent. Pattern configs are pointed to, never embedded, so a config
 * that grows never moves a field of this struct. Fields are appended,
 * never reordered. */
typedef struct pf_state_opts {
    /* Names of the states that must complete before this one runs (they
     * may be added later). Default none. */
    const char *const *depends_on;
    size_t depends_on_len;
    /* Sequential mode: start the run with this state too. Default false. */
    bool entry;
    /* The states pf_ctx_goto may name from this one, checked when the
     * agent is validated; a goto elsewhere fails with PF_EINVAL. Default
     * none = any state. */
    const char *const *next;
    size_t next_len;
    /* Ready states of higher priority are dispatched first (entry states
     * too: a run starts them highest first, in the order added among
     * equals); also the priority of its bulkhead queue entry. Default
     * PF_PRIORITY_NORMAL. */
    pf_priority_t priority;

    /* Retries after the first attempt (so at most max_retries + 1
     * attempts). Default 3. */
    unsigned max_retries;
    /* The delay before each retry, copied by pf_agent_add_state. Default
     * NULL: pf_backoff_init's, 1 s doubling to 60 s, equal jitter (the
     * original's). */
    const pf_backoff_t *backoff;
    /* The whole policy, when more is needed (which results are retried, a
     * retry budget, a listener, max_elapsed, a seed): when set, its
     * max_retries and backoff are used instead of the two fields above,
     * its clock, deadline and token are ignored (the run's are used), and
     * its retry_on list is copied. Default NULL: every non-zero result is
     * retried except PF_EOPEN, PF_ECANCELED and PF_EDEADLINE. */
    const pf_retry_policy_t *retry;
    /* Record a dead letter when the state fails for good. Default true. */
    bool dead_letter;

    /* Seconds one attempt may take, 0 = none (default). The attempt's
     * ctx carries the deadline and a token cancelled at it; an attempt
     * that returns at or after it failed with PF_ETIMEDOUT. The state's
     * code is never interrupted: it should watch the token. */
    double timeout;

    /* A breaker shared with other states or code (not owned); or
     * own_breaker: the state gets its own, made by pf_agent_add_state from
     * *breaker_config (NULL = pf_breaker_config_init's defaults; a name
     * left "default" becomes "<agent>/<state>", a NULL clock the
     * executor's; the config is not kept). breaker wins when both are
     * set. Default none.
     *
     * The breaker is used as pf_breaker_call uses it, whichever way it is
     * attached (own, pointer, or name): its timeout applies to each
     * attempt, from acquire to record on the breaker's clock, and an
     * attempt it counts as a timeout fails with PF_ETIMEDOUT (timed_out
     * set, retried per the retry policy) even if it returned 0. Its
     * config's fallback (pf_breaker_fallback), when the state has no
     * `fallback` and no `fallback_state` of its own (those win: the
     * breaker's is then never run), is called fallback(arg, reason) with
     * the state's own arg: when the breaker rejects the state (reason
     * PF_EOPEN; no attempt, no retry) and after an attempt the breaker
     * counted as a failure (reason: its result) or a timeout (reason
     * PF_ETIMEDOUT); never for a success, an ignored (not expected) error
     * or a failed pf_ctx_goto. Its result stands for the attempt's: 0
     * completes the state (fell_back set, error = the reason; its
     * dependents run, and the gotos the answered attempt made count),
     * anything else is the attempt's error, retried per the retry policy
     * (after a rejection: the state fails with it). */
    pf_breaker_t *breaker;
    bool own_breaker;
    const pf_breaker_config_t *breaker_config;

    /* A bulkhead, shared or own, likewise. A full bulkhead queues the
     * state (no thread waits) up to its max_wait_duration; when there is
     * no room, or the wait runs out, the attempt fails with PF_EFULL,
     * which is retried as any failure. Default none. */
    pf_bulkhead_t *bulkhead;
    bool own_bulkhead;
    const pf_bulkhead_config_t *bulkhead_config; /* NULL = defaults */

    /* A rate limiter, shared or own, likewise: each attempt takes one
     * permit, waiting for it on a timer. Default none. */
    pf_ratelimit_t *ratelimit;
    bool own_ratelimit;
    const pf_ratelimit_config_t *ratelimit_config; /* NULL = defaults */

    /* Runs in the state's place when its breaker rejects it (see
     * pf_state_fallback_fn). Set (or fallback_state set), it takes
     * precedence over the breaker config's fallback, which then never runs.
     * Default NULL. */
    pf_state_fallback_fn fallback;
    void *fallback_arg;
    /* Or: the state to start instead when its breaker rejects it; the
     * rejected state then ends as PF_STATE_FELL_BACK (no dead letter) and
     * its dependents do not run. Default NULL. */
    const char *fallback_state;
    /* Also use the fallback when the state fails for good (retries
     * exhausted or a result not retried); then no dead letter is
     * recorded. Default false. */
    bool fallback_on_failure;

    /* What the state holds while it runs, reported to the agent's leak
     * detector (pf_leak_detector_track_allocation_ex before each attempt,
     * track_release_ex after, with the run's number as the instance: runs
     * 1, 2, ... of the agent, so concurrent runs of a state are tracked
     * apart and a leak names its run). Copied by pf_agent_add_state.
     * Default NULL: the original's, 1 cpu unit, 100 MB, io 1, network 1,
     * gpu 0. */
    const pf_leak_resources_t *resources;
    /* Report to the leak detector at all. Default true. */
    bool leak_detection;

    /* Share a pattern object by name through a registry (registry.h):
     * the breaker, bulkhead or rate limiter called so in `registry` (NULL
     * = pf_registry_default()), created there when absent (from the
     * matching *_config when own_* is set, else from the registry's
     * defaults) and owned by the registry, which must keep it while the
     * agent lives. A pointer above wins over a name; a name wins over
     * own_*. If pf_agent_add_state fails, the objects it created in the
     * registry are removed again (those it found there stay). Default
     * NULL: not shared by name. */
    pf_registry_t *registry;
    const char *breaker_name;
    const char *bulkhead_name;
    const char *ratelimit_name;
} pf_state_opts_t;

/* Fill opts with the defaults above. Never fails; NULL is a no-op. */
PF_API void pf_state_opts_init(pf_state_opts_t *opts);

/* Apply a profile to opts, as the original's profiles do (their values are
 * in docs/agent.md): resources, priority, timeout, max_retries, an own
 * breaker and bulkhead where the profile has them (with the profile's
 * settings; a profile breaker has no call timeout of its own: the state's
 * timeout fails slow attempts, and the breaker records that), a rate
 * limit (quick: 100 per second) and leak_detection. The config and
 * resources pointers it sets point to constant, library-owned profile
 * values: to change one, copy it, edit the copy and point opts at it.
 * Other fields are left as they are, so apply the profile first and edit
 * after. Returns 0, or PF_EINVAL for NULL or an unknown profile. Never
 * blocks. Thread-safe. */
PF_API int pf_state_opts_profile(pf_state_opts_t *opts,
                                 pf_state_profile_t profile);

/* The same by the original's name: "minimal", "standard", "cpu_intensive",
 * "memory_intensive", "io_intensive", "network_intensive", "quick",
 * "batch", "critical". PF_EINVAL for another name. */
PF_API int pf_state_opts_profile_named(pf_state_opts_t *opts, const char *name);

/* The profile's name; "unknown" for another value. A constant string. */
PF_API const char *pf_state_profile_name(pf_state_profile_t profile);

/* ---- agent events -------------------------------------------------------- */

typedef enum pf_agent_event_kind {
    /* An attempt failed and will be retried after `delay` seconds. */
    PF_AGENT_EVENT_RETRY = 0,
    /* The breaker (PF_EOPEN), bulkhead (PF_EFULL) or rate limit
     * (PF_ERATELIMIT) refused an attempt. */
    PF_AGENT_EVENT_REJECTED = 1,
    /* An attempt returned past its deadline, or took longer than its
     * breaker's timeout. */
    PF_AGENT_EVENT_TIMEOUT = 2,
    /* A fallback took over (error: why). */
    PF_AGENT_EVENT_FALLBACK = 3,
    /* The state failed for good and became a dead letter. */
    PF_AGENT_EVENT_DEAD_LETTER = 4,
    /* A run ended; error is what pf_agent_run returns for it. */
    PF_AGENT_EVENT_RUN_DONE = 5
} pf_agent_event_kind_t;

/* What the listener is told; valid only during the call. */
typedef struct pf_agent_event {
    pf_agent_event_kind_t kind;
    const char *agent;
    const char *state; /* NULL for RUN_DONE */
    int error;         /* the attempt's error, or the run's */
    unsigned attempt;  /* the attempt concerned (1 = first) */
    double delay;      /* RETRY: seconds until the next attempt;
                          REJECTED by the rate limit: seconds until its
                          permit (the attempt then goes ahead) */
    /* Appended fields (the struct only grows at its end): */
    uint64_t run;  /* which run of the agent: 1, 2, ... in the order runs
                      started (the instance its leak tracking is keyed
                      by), so concurrent runs can be told apart */
    pf_ctx_t *ctx; /* the context given to that run (pf_agent_run's or
                      pf_agent_start's ctx); NULL when it was given none */
} pf_agent_event_t;

/* Called on the thread where the event happened (a worker, the timer
 * thread, or the caller of pf_agent_run), with no lock held. Keep it
 * short: it delays the run (though not a retry or rate-limit wait: its
 * due time, `delay` after the event, is fixed before the call). */
typedef void (*pf_agent_listener_fn)(const pf_agent_event_t *ev, void *arg);

/* ---- agents ------------------------------------------------------------- */

typedef struct pf_agent_config {
    const char *name;        /* copied; default "agent" */
    pf_executor_t *executor; /* where parallel work, retries and timers
                                run; NULL = pf_executor_default(),
                                obtained at the first run (default) */
    pf_exec_mode_t mode;     /* default PF_EXEC_PARALLEL */
    double run_timeout;      /* seconds a run may take, 0 = no limit
                                (default); a run's own timeout wins */
    bool timings;            /* record when each state started and ended
                                (one clock read per step); default true */
    pf_leak_detector_t *leak_detector; /* allocation tracking of the
                                  states' resources; NULL = none (default) */
    pf_agent_listener_fn listener;     /* NULL = none (default) */
    void *listener_arg;
} pf_agent_config_t;

/* Fill cfg with the defaults above. Never fails; NULL is a no-op. */
PF_API void pf_agent_config_init(pf_agent_config_t *cfg);

/* Create an agent named name with the default config. Returns 0 and
 * stores it in *out, PF_EINVAL for NULL arguments or an empty name, or
 * PF_ENOMEM / PF_ESYSTEM; on error *out is untouched. Thread-safe. */
PF_API int pf_agent_new(const char *name, pf_agent_t **out);

/* Create an agent from cfg (not kept; the executor, leak detector and
 * listener must outlive the agent). Errors as pf_agent_new, PF_EINVAL for
 * a bad field. Thread-safe. */
PF_API int pf_agent_new_ex(const pf_agent_config_t *cfg, pf_agent_t **out);

/* Destroy a, with the breakers, bulkheads and limiters it made for its
 * states; NULL is a no-op. No run of a may be in progress (wait for or
 * cancel them first; handles of finished runs may still be freed after)
 * and no other call on a may be running or follow. */
PF_API void pf_agent_free(pf_agent_t *a);

/* Add a state. name and opts (NULL = defaults) are copied; fn(ctx, arg)
 * runs it. Returns 0; PF_EINVAL for a NULL or empty name, NULL fn, a
 * duplicate name, a bad option (a NaN or negative timeout, a bad backoff
 * or policy, a depends_on or next entry NULL or naming the state itself,
 * an unknown priority, a bad pattern config); PF_ESTATE once the agent
 * has been validated (by pf_agent_validate or a first run); PF_ENOMEM or
 * PF_ESYSTEM. On error nothing is added or made (what it created in a
 * registry is removed again). Not thread-safe: add every state before
 * running. */
PF_API int pf_agent_add_state(pf_agent_t *a, const char *name, pf_state_fn fn,
                              void *arg, const pf_state_opts_t *opts);

/* Check the definition and freeze it: every dependency, next target and
 * fallback state must exist, dependencies must not form a cycle, and in
 * sequential mode the first state must not have dependencies. Returns 0 or
 * PF_EINVAL (pf_agent_last_error says which state and why), PF_ENOMEM, or
 * an error obtaining the default executor. Called by the first run; once
 * it succeeded, states can no longer be added. Thread-safe. */
PF_API int pf_agent_validate(pf_agent_t *a);

/* Why the last pf_agent_add_state or pf_agent_validate failed, naming the
 * state, e.g. "state 'b' depends on unknown state 'x'"; "" when it did
 * not. Owned by a; valid until the next add_state or validate.
 * Thread-safe against runs. */
PF_API const char *pf_agent_last_error(const pf_agent_t *a);

/* The agent's name, owned by a. */
PF_API const char *pf_agent_name(const pf_agent_t *a);

/* Number of states. */
PF_API size_t pf_agent_state_count(const pf_agent_t *a);

/* The index of the state called name (states are numbered 0.. in the
 * order added), or PF_ENOTFOUND / PF_EINVAL. */
PF_API int pf_agent_state_index(const pf_agent_t *a, const char *name);

/* The name of state i, or NULL when out of range. Owned by a. */
PF_API const char *pf_agent_state_name(const pf_agent_t *a, size_t i);

/* The breaker, bulkhead or rate limiter state `name` uses (its own or the
 * shared one), or NULL when it has none or there is no such state. For
 * inspection and control (pf_breaker_force_open, metrics). */
PF_API pf_breaker_t *pf_agent_state_breaker(const pf_agent_t *a,
                                            const char *name);
PF_API pf_bulkhead_t *pf_agent_state_bulkhead(const pf_agent_t *a,
                                              const char *name);
PF_API pf_ratelimit_t *pf_agent_state_ratelimit(const pf_agent_t *a,
                                                const char *name);

typedef struct pf_agent_metrics {
    size_t states;
    uint64_t runs_started;
    uint64_t runs_finished;
    uint64_t runs_failed; /* finished with a non-zero result */
    uint64_t runs_active; /* started and not finished */
    uint64_t states_completed;
    uint64_t states_failed; /* failed for good (incl. fell back) */
    uint64_t retries;
    uint64_t rejections; /* attempts refused by breaker, bulkhead or
                            rate limit */
    uint64_t timeouts;   /* attempts past their deadline or their
                            breaker's timeout */
    uint64_t fallbacks;
    uint64_t dead_letters;
} pf_agent_metrics_t;

/* Fill *out with counts since creation (added when each run ends). NULL
 * arguments: no-op. Thread-safe. */
PF_API void pf_agent_metrics(pf_agent_t *a, pf_agent_metrics_t *out);

/* ---- runs ---------------------------------------------------------------- */

/* Told when an asynchronous run has ended, on the thread that ended it,
 * with no lock held. It may call pf_run_wait (which returns at once) and
 * pf_run_free on run. */
typedef void (*pf_run_done_fn)(pf_run_t *run, void *arg);

typedef struct pf_run_opts {
    pf_token_t *token;      /* cancelling it cancels the run; NULL = none */
    double timeout;         /* seconds the run may take; 0 = the agent's
                               run_timeout (default) */
    pf_run_done_fn on_done; /* pf_agent_start only; NULL = none */
    void *on_done_arg;
} pf_run_opts_t;

/* Fill opts with the defaults above. Never fails; NULL is a no-op. */
PF_API void pf_run_opts_init(pf_run_opts_t *opts);

/* How one state ended. */
typedef enum pf_state_outcome {
    PF_STATE_NOT_RUN = 0,   /* never started: not reached */
    PF_STATE_COMPLETED = 1, /* succeeded (maybe through its fallback fn) */
    PF_STATE_FAILED = 2,    /* failed for good */
    PF_STATE_FELL_BACK = 3, /* rejected or failed; its fallback state was
                               started instead */
    PF_STATE_CANCELLED = 4, /* ready or waiting when the run was cancelled
                               or its deadline passed, or never started
                               because a dependency was cancelled (error:
                               PF_ECANCELED or PF_ETIMEDOUT) */
    PF_STATE_SKIPPED = 5    /* never started: a dependency failed, fell
                               back or was skipped */
} pf_state_outcome_t;

/* "not_run", "completed", "failed", "fell_back", "cancelled", "skipped";
 * "unknown" otherwise. */
PF_API const char *pf_state_outcome_name(pf_state_outcome_t o);

/* The result of a run: the summary fields, and the details behind
 * priv_run, read with the functions below until pf_run_result_free.
 * Caller memory. */
typedef struct pf_run_result {
    int status;       /* what pf_agent_run returned */
    size_t completed; /* states completed */
    size_t failed;    /* states failed for good (not fell back) */
    size_t fell_back;
    size_t cancelled;
    size_t skipped;
    size_t not_run;
    size_t dead_letters;
    int64_t start_ns; /* executor clock; 0 when timings are off */
    int64_t end_ns;
    double duration; /* seconds; 0 when timings are off */
    void *priv_run;
} pf_run_result_t;

/* One state's part in a run. name points into the agent. */
typedef struct pf_state_result {
    const char *name;
    pf_state_outcome_t outcome;
    int error;         /* why it failed or fell back; 0 when it completed
                          by itself; the fallback's reason when a fallback
                          completed it */
    unsigned attempts; /* calls of its function (0 when never started) */
    bool timed_out;    /* its last attempt ran past its deadline or its
                          breaker's timeout */
    bool fell_back;    /* completed (or ended) through a fallback: its
                          own, its fallback state, or its breaker's */
    bool dead_letter;
    uint64_t order;   /* 1, 2, ...: the order in which states ended in
                         this run; 0 for states that never started */
    int64_t start_ns; /* first attempt started; executor clock; 0 when
                         timings are off or it never started */
    int64_t end_ns;   /* last attempt ended */
    double duration;  /* seconds from start_ns to end_ns */
} pf_state_result_t;

/* A state that failed for good. Strings point into the agent. */
typedef struct pf_dead_letter {
    const char *state;
    const char *agent;
    int error; /* its last result */
    unsigned attempts;
    bool timed_out;       /* its last attempt ran past its deadline or
                             its breaker's timeout */
    int64_t failed_at_ns; /* wall-clock time (pf_wall_time_ns) */
} pf_dead_letter_t;

/* Run a once on the calling thread (with workers for parallel branches),
 * with ctx's variables (ctx NULL = a fresh empty context, discarded
 * after). Validates the agent first if needed. Returns, once the run has
 * ended: 0 when no state failed; PF_ECANCELED or PF_ETIMEDOUT when the
 * run was cancelled or ran out of time; otherwise the error of the first
 * state that failed for good (a user code or a PF_E* code). Before
 * running anything: PF_EINVAL (NULL a, or a definition error, see
 * pf_agent_validate), PF_ENOMEM, PF_ESYSTEM. out (may be NULL) receives
 * the result, to be released with pf_run_result_free (on an error before
 * running it is zeroed). Entry states start in priority order (highest
 * first; in the order added among equals). Calls states, fallbacks and
 * the listener on this thread and on executor threads, with no lock held.
 * Blocks until the run ends: with a run timeout, that is at its deadline,
 * or, when states are running then, once they return (their code is not
 * interrupted: they see their token cancelled). Thread-safe: many runs at
 * once are fine. */
PF_API int pf_agent_run(pf_agent_t *a, pf_ctx_t *ctx, pf_run_result_t *out);

/* pf_agent_run with options (NULL = defaults; on_done is ignored). */
PF_API int pf_agent_run_ex(pf_agent_t *a, pf_ctx_t *ctx,
                             const pf_run_opts_t *opts, pf_run_result_t *out);

/* Start a run on the executor and return at once with a handle in *out.
 * ctx (may be NULL) must outlive the run. Returns 0, or the errors of
 * pf_agent_run before running. Never blocks. Thread-safe. */
PF_API int pf_agent_start(pf_agent_t *a, pf_ctx_t *ctx,
                          const pf_run_opts_t *opts, pf_run_t **out);

/* Wait for run to end, until deadline d (NULL or none = no deadline).
 * Without a deadline this thread runs the run's ready states meanwhile.
 * With one it never runs a state (a state may take any time): it only
 * waits, and returns by d whatever the states and the workers are doing.
 * Returns the run's status (as pf_agent_run), or PF_ETIMEDOUT when d
 * passed first (the run goes on), PF_EINVAL for NULL run. out (may be
 * NULL) receives the result, to be released with pf_run_result_free.
 * Blocks up to d. Thread-safe. */
PF_API int pf_run_wait(pf_run_t *run, const pf_deadline_t *d,
                       pf_run_result_t *out);

/* True once run has ended. Never blocks. Thread-safe. */
PF_API bool pf_run_done(const pf_run_t *run);

/* Cancel run: states not started yet (ready, or waiting for dependencies
 * that then do not complete), and those waiting for a retry, a bulkhead or
 * a rate limit, end as cancelled; running states see their token
 * cancelled and pf_ctx_is_cancelled true, and their successors are
 * cancelled. The run's deadline does the same (error PF_ETIMEDOUT). Ended or NULL runs: no-op. Never blocks (beyond short locks).
 * Thread-safe. */
PF_API void pf_run_cancel(pf_run_t *run);

/* Release the handle. A run still going on continues and cleans up after
 * itself when it ends (its ctx must outlive it). NULL is a no-op. */
PF_API void pf_run_free(pf_run_t *run);

/* Release what a result holds and zero it; NULL or a zeroed result is a
 * no-op. */
PF_API void pf_run_result_free(pf_run_result_t *r);

/* State i's result (i in the agent's order), or PF_ERANGE / PF_EINVAL. */
PF_API int pf_run_result_state(const pf_run_result_t *r, size_t i,
                               pf_state_result_t *out);

/* The result of the state called name, or PF_ENOTFOUND / PF_EINVAL. */
PF_API int pf_run_result_find(const pf_run_result_t *r, const char *name,
                              pf_state_result_t *out);

/* The i-th dead letter of the run, in the order they happened (i below
 * r->dead_letters), or PF_ERANGE / PF_EINVAL. */
PF_API int pf_run_result_dead_letter(const pf_run_result_t *r, size_t i,
                                     pf_dead_letter_t *out);

#ifdef __cplusplus
}
#endif

#endif /* PUFFINFLOW_AGENT_H */
