/* What breaker.c offers breaker_group.c beyond the public header: a hook
 * through which a breaker tells its group that a permit the group handed
 * out has been recorded or released, so the group can drop its hold on the
 * breaker. */
#ifndef PF_SRC_BREAKER_IMPL_H
#define PF_SRC_BREAKER_IMPL_H

#include "puffinflow/breaker.h"

/* Called with ctx once per group permit, as the last thing its record or
 * release does with the breaker (which the call may free). */
typedef void (*pf__breaker_unref_fn)(void *ctx);

/* Set b's hook. Only before b is shared with another thread. */
void pf__breaker_set_unref(pf_breaker_t *b, pf__breaker_unref_fn fn,
                           void *ctx);

/* The ctx given to pf__breaker_set_unref (NULL if never set). */
void *pf__breaker_unref_ctx(const pf_breaker_t *b);

/* Mark a permit just filled by pf_breaker_acquire as holding a group
 * reference: recording or releasing it calls b's unref hook. */
void pf__permit_mark_group(pf_permit_t *permit);

/* Check cfg as pf_breaker_new does, except its name. 0 or PF_EINVAL. */
int pf__breaker_config_check(const pf_breaker_config_t *cfg);

#endif /* PF_SRC_BREAKER_IMPL_H */
