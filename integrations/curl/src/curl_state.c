/* An HTTP transfer as an asynchronous state (pf_ctx_curl): the attempt is
 * made pending, the transfer started on the client, and its done
 * completes the attempt with the classified outcome.
 *
 * The runtime's abort may come before the starter has the transfer's
 * handle: it raises abort_req, and the starter, having published the
 * handle, looks at abort_req (both seq_cst: one of the two sees the
 * other) and aborts the transfer itself. Two references: the starter's
 * and the transfer's done; the last one frees the completion (which
 * waits for an abort under way), then the transfer's handle. */
#include <stdatomic.h>
#include <stdlib.h>

#include "puffinflow/curl.h"
#include "puffinflow/error.h"

typedef struct curl_state {
    pf_completion_t *c;
    _Atomic(pf_curl_xfer_t *) x;
    atomic_bool abort_req;
    atomic_int refs;
} curl_state_t;

static void
state_unref(curl_state_t *st)
{
    if (atomic_fetch_sub_explicit(&st->refs, 1, memory_order_acq_rel) != 1) {
        return;
    }
    pf_completion_free(st->c);
    pf_curl_xfer_free(atomic_load_explicit(&st->x, memory_order_relaxed));
    free(st);
}

static void
state_abort(void *arg)
{
    curl_state_t *st = arg;

    atomic_store_explicit(&st->abort_req, true, memory_order_seq_cst);
    pf_curl_abort(atomic_load_explicit(&st->x, memory_order_seq_cst));
}

static void
state_done(const pf_curl_result_t *r, void *arg)
{
    curl_state_t *st = arg;
    int result = 0;

    if (r->failure) {
        result = r->result != 0 ? r->result : (int)r->http_status;
    } else if (r->result != 0) {
        result = r->result; /* PF_ECANCELED: the client was freed */
    }
    /* Refused when the attempt was ended first: nothing to do then. The
     * Retry-After of a 429 or 503 (the statuses it is defined for) is the
     * delay before the retry. */
    (void)pf_completion_complete_after(
        st->c, result,
        r->result == 0 && (r->http_status == 429 || r->http_status == 503)
            ? r->retry_after
            : -1.0);
    state_unref(st);
}

int
pf_ctx_curl(pf_ctx_t *ctx, pf_curl_client_t *client, CURL *easy)
{
    curl_state_t *st;
    pf_curl_xfer_t *x = NULL;
    int rc;

    if (ctx == NULL || client == NULL || easy == NULL) {
        return PF_EINVAL;
    }
    st = malloc(sizeof(*st));
    if (st == NULL) {
        return PF_ENOMEM;
    }
    atomic_init(&st->x, NULL);
    atomic_init(&st->abort_req, false);
    atomic_init(&st->refs, 2);
    rc = pf_ctx_pending(ctx, state_abort, st, &st->c);
    if (rc != 0) {
        free(st);
        return rc;
    }
    rc = pf_curl_start(client, easy, NULL, state_done, st, &x);
    if (rc != 0) {
        /* Nothing started: the attempt fails with the error. */
        (void)pf_completion_complete(st->c, rc);
        pf_completion_free(st->c);
        free(st);
        return PF_PENDING;
    }
    atomic_store_explicit(&st->x, x, memory_order_seq_cst);
    if (atomic_load_explicit(&st->abort_req, memory_order_seq_cst)) {
        pf_curl_abort(x); /* the abort came before the handle */
    }
    state_unref(st);
    return PF_PENDING;
}
