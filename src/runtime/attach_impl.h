/* A state's options and pattern attachments (attach.c), as agent.c's
 * pf_agent_add_state uses them: the plain per-state fields, the copy of
 * the retry policy, and the breaker, bulkhead and rate limiter a state
 * owns or shares. Each function fills part of a pf__state_t under
 * construction and, on error, says why through pf__agent_error; what it
 * made is freed by pf__state_detach. */
#ifndef PF_SRC_ATTACH_IMPL_H
#define PF_SRC_ATTACH_IMPL_H

#include "puffinflow/agent.h"

#include "agent_impl.h"

/* Check the plain fields of o (priority, timeout, resources, fallback
 * state name) and fill s with them. Returns 0 or PF_EINVAL. Allocates
 * nothing. */
int pf__state_read_opts(pf_agent_t *a, pf__state_t *s,
                        const pf_state_opts_t *o);

/* Copy the retry policy: the state's own fields, or o->retry; and its
 * backoff, on the heap so that it stays put when the state array grows.
 * Returns 0, PF_EINVAL or PF_ENOMEM. */
int pf__state_copy_retry(pf_agent_t *a, pf__state_t *s,
                         const pf_state_opts_t *o);

/* Make or find the state's breaker, bulkhead and rate limiter as o asks
 * (a pointer wins over a registry name, a name over own_*), and pick the
 * breaker fallback the runtime runs. Returns 0, PF_EINVAL or PF_ENOMEM;
 * on error nothing of it is left in a registry. Called last by
 * pf_agent_add_state: what follows it cannot fail. */
int pf__state_attach(pf_agent_t *a, pf__state_t *s, const pf_state_opts_t *o);

/* Free what the three calls above made: owned pattern objects and the
 * retry copies. Shared objects are left alone. */
void pf__state_detach(pf__state_t *s);

#endif /* PF_SRC_ATTACH_IMPL_H */
