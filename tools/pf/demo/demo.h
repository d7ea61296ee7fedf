/* The demo's harness and scenes (tools/pf/demo/), shared by its files. */
#ifndef PF_TOOLS_DEMO_H
#define PF_TOOLS_DEMO_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "puffinflow/puffinflow.h"

#include "pf.h"

/* ---- pf demo ---------------------------------------------------------------
 *
 * The demo (demo.c) runs scenes, one file each (demo_<scene>.c), on a
 * harness (demo_core.c): one manual clock for all simulated time, an
 * executor on that clock, a registry holding every pattern object the demo
 * makes, and the output. A scene is `int demo_scene_<name>(demo_t *d)`:
 * it sets up a small agent workflow against a simulated dependency,
 * drives the clock step by step, lets the patterns' listeners print one
 * line per event, checks that what it narrated happened, prints a summary
 * and frees what it made (pattern objects stay in the registry for the
 * last scene). It returns 0, or a PF_E* code: PF_ESTATE when something it
 * narrates was not observed (the harness has said what on stderr). */

#if defined(__GNUC__)
#define DEMO_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define DEMO_PRINTF(f, a)
#endif

typedef struct demo demo_t; /* opaque, in demo_core.c */

int demo_scene_breaker(demo_t *d);
int demo_scene_bulkhead(demo_t *d);
int demo_scene_retry(demo_t *d);
int demo_scene_timeout(demo_t *d);
int demo_scene_health(demo_t *d);
int demo_scene_degrade(demo_t *d);
int demo_scene_leak(demo_t *d);
int demo_scene_metrics(demo_t *d);
int demo_scene_http(demo_t *d);

/* Codes the simulated dependencies fail with: a user's own non-zero
 * results (positive, so never mistaken for a PF_E* code). */
enum {
    DEMO_ECONNRESET = 104,
    DEMO_ECONNREFUSED = 111,
    DEMO_EUNAVAILABLE = 503
};

/* What the harness counts. The listeners it installs count their events;
 * a scene counts its own progress with DEMO_MARK_* and demo_bump. Counts
 * restart at zero with each scene. */
typedef enum demo_counter {
    DEMO_RETRIES = 0,      /* agent RETRY events */
    DEMO_REJECTIONS,       /* agent REJECTED events */
    DEMO_TIMEOUTS,         /* agent TIMEOUT events */
    DEMO_FALLBACKS,        /* agent FALLBACK events */
    DEMO_DEAD_LETTERS,     /* agent DEAD_LETTER events */
    DEMO_RUNS_DONE,        /* agent RUN_DONE events */
    DEMO_OPENED,           /* breaker changes to open */
    DEMO_HALF_OPENED,      /* breaker changes to half-open */
    DEMO_CLOSED,           /* breaker changes to closed */
    DEMO_BULKHEAD_FULL,    /* bulkhead REJECTED_FULL events */
    DEMO_BULKHEAD_TIMEOUT, /* bulkhead REJECTED_TIMEOUT events */
    DEMO_PARKED,           /* demo_sleep calls that started waiting */
    DEMO_MARK_A,           /* scene-defined progress marks */
    DEMO_MARK_B,
    DEMO_MARK_C,
    DEMO_COUNTERS
} demo_counter_t;

/* Make the harness: a manual clock, an executor of `workers` threads on
 * it, an empty registry. Returns 0 or a PF_E* code. */
int demo_new(unsigned workers, demo_t **out);

/* Free what the harness holds: the registry and its objects, the
 * executor, the clock and every demo_alloc block. No run may be going
 * on. NULL is a no-op. */
void demo_free(demo_t *d);

pf_clock_t *demo_clock(demo_t *d);
pf_executor_t *demo_executor(demo_t *d);
pf_registry_t *demo_registry(demo_t *d);

/* Start a scene: print its header and restart the scene time (0 s is
 * now) and the counters. */
void demo_begin(demo_t *d, const char *name, const char *title);

/* Scene time: seconds since demo_begin on the manual clock. */
double demo_now(demo_t *d);

/* Move the manual clock to scene time t (never backward). */
void demo_advance_to(demo_t *d, double t);

/* One line for an event, stamped with the scene time:
 * "[  12.000 s] breaker payments-api:      closed -> open (...)". who is
 * the object or state the event is about. Thread-safe. */
void demo_say(demo_t *d, const char *who, const char *fmt, ...)
    DEMO_PRINTF(3, 4);

/* A line of narration without a time stamp (setup, summaries). */
void demo_note(demo_t *d, const char *fmt, ...) DEMO_PRINTF(2, 3);

/* An empty line. */
void demo_blank(demo_t *d);

/* Check that something the scene narrates happened; if not, report
 * "scene <name>: expected ..." on stderr and remember the failure. */
void demo_expect(demo_t *d, bool ok, const char *fmt, ...) DEMO_PRINTF(3, 4);

/* What the scene should return: 0 when every check and wait of the scene
 * so far was satisfied, else PF_ESTATE. */
int demo_verdict(demo_t *d);

/* Counters: read, add one (waking demo_await), and wait until a counter
 * has reached n. */
unsigned demo_count(demo_t *d, demo_counter_t c);
void demo_bump(demo_t *d, demo_counter_t c);
int demo_await_count(demo_t *d, demo_counter_t c, unsigned n, const char *what);

/* Wait (in real time, up to a few seconds) until pred(arg) is true.
 * Returns 0, or PF_ESTATE after reporting that `what` was not observed;
 * once a check or wait of the scene has failed, returns PF_ESTATE at once,
 * so a script may go on to its end and return demo_verdict. pred is
 * polled, and retried whenever a counter moves. */
typedef bool (*demo_pred_fn)(void *arg);
int demo_await(demo_t *d, demo_pred_fn pred, void *arg, const char *what);

/* The delay of the scene's i-th retry event (0 = the first), in seconds;
 * NaN when there was none. */
double demo_retry_delay(demo_t *d, unsigned i);

/* Threads waiting on the manual clock, not counting the executor's timer
 * thread (which waits on it while a timer is armed). */
size_t demo_parked(demo_t *d);

/* Wait until demo_parked is exactly n. */
int demo_await_parked(demo_t *d, size_t n, const char *what);

/* Memory that lives until demo_free, zeroed; NULL when out of memory. For
 * what pattern objects kept in the registry point to (listener, check and
 * sampler arguments). */
void *demo_alloc(demo_t *d, size_t size);

/* Simulated work: wait `seconds` of simulated time on tok (a state's
 * pf_ctx_token, a timeout scope's token). Counts DEMO_PARKED once the
 * deadline is taken, so a scene may move the clock after awaiting it.
 * Returns 0 when the time has passed, or the token's PF_ECANCELED /
 * PF_ETIMEDOUT when it ended first; PF_ENOMEM for a NULL tok. */
int demo_sleep(demo_t *d, pf_token_t *tok, double seconds);

/* A readable name for a result: pf_strerror for PF_E* codes, the text of
 * the DEMO_E* codes, "error N" otherwise. A constant or per-thread
 * string. */
const char *demo_strerror(int code);

/* ---- pattern objects with the demo's listeners, kept in the registry --- */

/* Create the breaker cfg describes (its clock and listener are set here)
 * in the demo's registry. The listener prints each transition with its
 * reason and counts it. Returns 0 or a PF_E* code. */
int demo_breaker(demo_t *d, pf_breaker_config_t *cfg, pf_breaker_t **out);

/* The same for a bulkhead: the listener prints rejections. */
int demo_bulkhead(demo_t *d, pf_bulkhead_config_t *cfg, pf_bulkhead_t **out);

/* An agent on the demo's executor whose listener prints retries (with
 * their delay), rejections, timeouts, fallbacks and dead letters, under
 * each state's name. ld may be NULL. Returns 0 or a PF_E* code. */
int demo_agent(demo_t *d, const char *name, pf_exec_mode_t mode,
               pf_leak_detector_t *ld, pf_agent_t **out);

/* ---- runs ---------------------------------------------------------------- */

/* Start a run of a (ctx may be NULL; timeout 0 = none) on the executor. */
int demo_start(demo_t *d, pf_agent_t *a, pf_ctx_t *ctx, double timeout,
               pf_run_t **out);

/* Run a (ctx may be NULL) when its only waits are retry delays: start
 * it, and each time a retry is planned move the clock to the moment it is
 * due, until the run has ended; then as demo_finish. Returns 0, or
 * PF_ESTATE (it did not end) or the error starting it. */
int demo_run_driven(demo_t *d, pf_agent_t *a, pf_ctx_t *ctx,
                    pf_run_result_t *res);

/* Wait for run to end (cancelling it if it does not), fill *res (may be
 * NULL; release with pf_run_result_free) and free the handle. Returns 0
 * or PF_ESTATE when it had to be cancelled. */
int demo_finish(demo_t *d, pf_run_t *run, pf_run_result_t *res);

/* ---- a simulated dependency ---------------------------------------------- */

/* A dependency that answers at once: calls made in scene time
 * [down_from, down_until) fail with `error`, and so do the next `glitches`
 * calls (a transient error, with DEMO_ECONNRESET); the others succeed. */
typedef struct demo_dep {
    const char *name;
    double down_from;
    double down_until;
    int error;
    atomic_uint glitches;
    atomic_uint calls;
    atomic_uint failures;
} demo_dep_t;

/* Call dep: print "call N ok" or "call N failed: <error>" and return 0 or
 * dep->error. Thread-safe. */
int demo_dep_call(demo_t *d, demo_dep_t *dep);

#endif /* PF_TOOLS_DEMO_H */
