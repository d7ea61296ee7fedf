/* Tokens the runtime makes for itself (private to the library). */
#ifndef PF_SRC_TOKEN_IMPL_H
#define PF_SRC_TOKEN_IMPL_H

#include "puffinflow/deadline.h"

/* pf_token_new for the runtime's own tokens (a state's, a run's): the
 * token also counts as cancelled once its effective deadline passes, before
 * the timer that raises its flag has fired (or if none was armed), and so
 * do the tokens made below it. pf_token_is_cancelled then reads the clock;
 * waits given it end with PF_ECANCELED there, and pf_token_on_cancel
 * refuses new callbacks. */
int pf__token_new_expiring(pf_token_t *parent, const pf_deadline_t *deadline,
                           pf_token_t **out);


#endif /* PF_SRC_TOKEN_IMPL_H */
