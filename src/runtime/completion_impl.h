/* The record of a pending attempt (pending.c), as the scheduler uses it:
 * made by pf_ctx_pending, claimed exactly once by a completion or an
 * abort, freed when both the runtime and the provider have let go. */
#ifndef PF_SRC_COMPLETION_IMPL_H
#define PF_SRC_COMPLETION_IMPL_H

#include <stdbool.h>

#include "puffinflow/context.h"

/* Abort c with reason (PF_ETIMEDOUT or PF_ECANCELED) unless a completion
 * or another abort claimed it first: on success c's abort function has
 * been called and has returned, and the caller must resume the slot (or,
 * on the state's own thread, go on). Returns false when it lost the claim.
 * Thread-safe; no lock held. */
bool pf__completion_abort(pf_completion_t *c, int reason);

/* How c ended: its completion's result, or the reason it was aborted.
 * Only after it has been claimed and its claimer has resumed the slot. */
int pf__completion_result(const pf_completion_t *c);

/* Drop the runtime's reference to c. */
void pf__completion_unref(pf_completion_t *c);

/* The delay before a retry the completion asked for (seconds), or < 0 for
 * none (or when it was not completed). Read after pf__completion_result,
 * by the thread that took the record back. */
double pf__completion_retry_after(const pf_completion_t *c);

#endif /* PF_SRC_COMPLETION_IMPL_H */
