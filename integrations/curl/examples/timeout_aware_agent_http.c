/* The reference's TimeoutAwareAgent on real I/O: a state calls a slow
 * local HTTP endpoint (libmicrohttpd, started here; it answers one byte
 * every 10 ms, for ever) through pf_ctx_curl with a 0.3 s timeout. The
 * timeout aborts the transfer: the state fails with PF_ETIMEDOUT at once,
 * and the server sees the client close the connection (the transfer is
 * removed, not left running). A second state with a 2 s timeout calls a
 * fast endpoint and completes. (examples/timeout_aware_agent.c is the
 * manual-clock version.)
 *
 * Prints what happened; exits 0 only if exactly that happened. */
#include <stdio.h>

#include "puffinflow/agent.h"

#include "example_server.h"

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *conn, const char *url,
           const char *method, const char *version, const char *data,
           size_t *size, void **ctx)
{
    static int seen;

    (void)cls;
    (void)method;
    (void)version;
    (void)data;
    (void)size;
    if (*ctx == NULL) {
        *ctx = &seen;
        return MHD_YES;
    }
    if (strcmp(url, "/slow") == 0) {
        return ex_reply_forever(conn);
    }
    return ex_reply(conn, 200, "ok", NULL);
}

/* Run a one-state agent calling url with this timeout: the state's result
 * in *sr, the run's wall time returned. */
static double
timed_run(pf_executor_t *ex, pf_curl_client_t *client, const char *url,
          double timeout, pf_state_result_t *sr)
{
    pf_agent_config_t acfg;
    pf_state_opts_t o;
    pf_agent_t *a = NULL;
    pf_run_result_t res;
    ex_call_t call = {client, ex_easy(url)};
    double t0;
    double took;

    memset(sr, 0, sizeof(*sr));
    sr->error = -1;
    pf_agent_config_init(&acfg);
    acfg.name = "TimeoutAwareAgent";
    acfg.executor = ex;
    pf_state_opts_init(&o);
    o.max_retries = 0;
    o.timeout = timeout;
    if (call.easy == NULL || pf_agent_new_ex(&acfg, &a) != 0 ||
        pf_agent_add_state(a, "fetch", ex_fetch, &call, &o) != 0) {
        return -1.0;
    }
    t0 = ex_now();
    (void)pf_agent_run(a, NULL, &res);
    took = ex_now() - t0;
    (void)pf_run_result_find(&res, "fetch", sr);
    pf_run_result_free(&res);
    pf_agent_free(a);
    curl_easy_cleanup(call.easy);
    return took;
}

int
main(void)
{
    struct MHD_Daemon *d;
    pf_executor_config_t ecfg;
    pf_executor_t *ex = NULL;
    pf_curl_config_t ccfg;
    pf_curl_client_t *client = NULL;
    pf_state_result_t slow;
    pf_state_result_t fast;
    char url[64];
    unsigned port;
    double slow_took;
    double fast_took;
    int closed;
    int ok;

    d = ex_server_start(on_request, &port);
    pf_executor_config_init(&ecfg);
    ecfg.workers = 2;
    if (d == NULL || pf_executor_new(&ecfg, &ex) != 0) {
        return 1;
    }
    pf_curl_config_init(&ccfg);
    ccfg.executor = ex;
    if (pf_curl_client_new(&ccfg, &client) != 0) {
        return 1;
    }
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/slow", port);
    slow_took = timed_run(ex, client, url, 0.3, &slow);
    /* The server notices the closed connection on its next write. */
    closed = ex_wait_for(&g_client_closed, 1, 10.0) == 0;
    printf("/slow with a 0.3 s timeout: %s (timed_out %s) after %.2f s; "
           "the server saw the client close the connection: %s\n",
           pf_strerror(slow.error), slow.timed_out ? "yes" : "no", slow_took,
           closed ? "yes" : "no");
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/fast", port);
    fast_took = timed_run(ex, client, url, 2.0, &fast);
    printf("/fast with a 2 s timeout: %s after %.3f s\n",
           fast.error == 0 ? "completed" : pf_strerror(fast.error), fast_took);
    ok = slow.outcome == PF_STATE_FAILED && slow.error == PF_ETIMEDOUT &&
         slow.timed_out && closed && fast.outcome == PF_STATE_COMPLETED &&
         fast.error == 0;
    pf_curl_client_free(client);
    pf_executor_free(ex);
    MHD_stop_daemon(d);
    printf("%s\n", ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
}
