/* The scheduler's face (schedule.c), used by run.c to start, drive and
 * cancel a run's slots and by context.c for a running state's token.
 * The highest of the runtime's private headers: it builds on run_impl.h,
 * which builds on slot_impl.h and agent_impl.h. */
#ifndef PF_SRC_SCHEDULE_IMPL_H
#define PF_SRC_SCHEDULE_IMPL_H

#include <stdbool.h>
#include <stdint.h>

#include "executor_impl.h"
#include "run_impl.h"

/* Set up slot i of a new run object r once: its task (task_fn runs it
 * when the executor takes it from the queue), its timer and its context
 * view. */
void pf__sched_init_slot(pf__run_t *r, uint32_t i, pf__task_fn task_fn);

/* Reset every slot of r for a new run on store r->store: the agent's
 * entry states activated, every other state not. Before r is published
 * to other threads. */
void pf__sched_reset(pf__run_t *r);

/* Drive the activation of state i on the calling thread, and the chain of
 * successors this thread claims after it, until one waits (a timer, a
 * bulkhead ticket) or the chain ends; successors it does not run itself
 * are queued on the executor. Returns true when the run's last activation
 * has ended: the caller must then finish the run. */
bool pf__sched_drive(pf__run_t *r, uint32_t i);

/* r has been cancelled: if slot s waits and its timer or ticket can still
 * be withdrawn, withdraw it and queue s (which then ends as cancelled);
 * otherwise its resumer is already on the way. Thread-safe. */
void pf__sched_cancel_parked(pf__run_t *r, pf__slot_t *s);

/* tok is the attempt's own token of the state running in slot s, to be
 * cancelled at at_ns on r's clock (its own deadline, not the run's): at
 * once when that has passed, else by the slot's timer. The attempt's end
 * withdraws the timer and frees tok. Called on the thread running the
 * state. */
void pf__sched_watch_token(pf__run_t *r, pf__slot_t *s, pf_token_t *tok,
                           int64_t at_ns);

/* The attempt running in slot s makes its work pending on record c
 * (pf_ctx_pending, on the thread running the state): from now on a
 * completion or an abort of c may resume s, even before the state's
 * function returns. */
void pf__sched_pend(pf__run_t *r, pf__slot_t *s, struct pf_completion *c);

/* The work of c completed (the claim is won): hand slot `state` of r back
 * to a thread. Called once per pending attempt by pf_completion_complete. */
void pf__sched_completed(pf__run_t *r, uint32_t state);

/* Withdraw the pending work made by pf__sched_pend during the current
 * call of the state's function, which has not started (a provider failed
 * to start it): abort it unless an abort came first, wait for the hand-
 * over, and drop the runtime's reference. On the state's thread. */
void pf__sched_unpend(pf__run_t *r, pf__slot_t *s);

#endif /* PF_SRC_SCHEDULE_IMPL_H */
