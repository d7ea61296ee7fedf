/* Agent runs calling HTTP (issue #14; beside the anchors of "Concurrent
 * HTTP calls"): each run is one state doing a GET through pf_ctx_curl to a
 * local server answering after 100 ms (libmicrohttpd in a child process,
 * as bench_curl), so the client's CPU is measured alone. Prints only.
 *
 * 1. N = 100 / 1,000 / 10,000 runs at once, each state with a breaker
 *    (the recommended HTTP config below), 3 retries and a 2 s per-attempt
 *    timeout: wall time, client CPU per call, errors (runs whose state did
 *    not complete).
 * 2. A server failing 30 % of calls at random, N = 1,000, retries (3) with
 *    no breaker, with a consecutive-failures breaker (the library's
 *    default, 5 in a row) and with the recommended failure-rate window:
 *    errors. Then a server that is really down (connection refused): how
 *    fast each sheds 1,000 runs, and how many attempts reached the host.
 * 3. The patterns' added cost per call: N = 1,000 bare pf_curl_start
 *    transfers vs agent runs with no pattern vs agent runs with breaker +
 *    bulkhead + retries + timeout; client CPU per call, median of 5.
 *
 * Usage: bench_curl_agents [N...] (the sizes of part 1). BENCH_PARTS
 * (digits, default "123") picks the parts to run. BENCH_ONE=bare|none|all
 * runs one batch of N (the first size) of part 3's kind and prints its
 * errors only: for instruction counts under callgrind, where the
 * difference between two sizes is the cost per call of that kind. With BENCH_DEBUG set, the first failed runs of each batch are described on
 * stderr. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "puffinflow/agent.h"
#include "puffinflow/breaker.h"
#include "puffinflow/bulkhead.h"
#include "puffinflow/curl.h"
#include "puffinflow/executor.h"

#include "bench_server.h"

/* /flaky: 30 % of calls fail (500), at random; anything else 200. */
static unsigned
flaky_answer(const char *url)
{
    static unsigned seed = 12345; /* the server's own: one epoll thread */

    return strcmp(url, "/flaky") == 0 && rand_r(&seed) % 100 < 30 ? 500
                                                                   : 200;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static int
cmp_long(const void *a, const void *b)
{
    long x = *(const long *)a;
    long y = *(const long *)b;

    return x < y ? -1 : x > y;
}

/* The patterns a batch's state has. */
typedef enum {
    PAT_NONE,
    PAT_CONSECUTIVE,
    PAT_RATE,
    PAT_NO_BREAKER,
    PAT_ALL,
    PAT_RATE_BULKHEAD
} patterns_t;

typedef struct figures {
    double wall_s;
    double cpu_us_per_call;
    int errors;     /* runs whose state did not complete */
    int rejected;   /* ... of which ended PF_EOPEN (the breaker shed them) */
    long attempts;  /* calls of the state (attempts that reached curl) */
} figures_t;

static pf_curl_client_t *g_client;

static int
get(pf_ctx_t *ctx, void *arg)
{
    void *easy = NULL;

    (void)arg;
    if (pf_ctx_get_ptr(ctx, "easy", &easy) != 0) {
        return PF_EINVAL;
    }
    return pf_ctx_curl(ctx, g_client, easy);
}

/* The breaker config recommended for HTTP states (docs/curl.md). */
static void
http_breaker(pf_breaker_config_t *bc)
{
    pf_breaker_config_init(bc);
    bc->window = PF_BREAKER_WINDOW_COUNT;
    bc->window_size = 100;
    bc->minimum_calls = 50;
    bc->failure_rate_threshold = 60.0;
    bc->recovery_timeout = 10.0;
}

static pf_agent_t *
make_agent(pf_executor_t *ex, patterns_t p)
{
    static const pf_backoff_t backoff = {0.05, 2.0, 1.0, PF_JITTER_FULL};
    pf_agent_config_t cfg;
    pf_breaker_config_t bc;
    pf_bulkhead_config_t hc;
    pf_state_opts_t o;
    pf_agent_t *a = NULL;

    pf_agent_config_init(&cfg);
    cfg.executor = ex;
    cfg.leak_detector = NULL;
    if (pf_agent_new_ex(&cfg, &a) != 0) {
        abort();
    }
    pf_state_opts_init(&o);
    o.leak_detection = false;
    o.dead_letter = false;
    o.max_retries = 0;
    if (p != PAT_NONE) {
        o.max_retries = 3;
        o.backoff = &backoff;
        o.timeout = 2.0;
    }
    if (p == PAT_CONSECUTIVE) {
        pf_breaker_config_init(&bc); /* 5 failures in a row */
        bc.recovery_timeout = 10.0;
        o.own_breaker = true;
        o.breaker_config = &bc;
    } else if (p == PAT_RATE || p == PAT_ALL || p == PAT_RATE_BULKHEAD) {
        http_breaker(&bc);
        o.own_breaker = true;
        o.breaker_config = &bc;
    }
    if (p == PAT_ALL) {
        pf_bulkhead_config_init(&hc);
        hc.max_concurrent_calls = 20000; /* never full: its cost only */
        hc.max_queue_size = 0;
        o.own_bulkhead = true;
        o.bulkhead_config = &hc;
    }
    if (p == PAT_RATE_BULKHEAD) {
        /* At most 1,000 attempts at once; the rest wait in its queue,
         * where no attempt timeout runs yet. */
        pf_bulkhead_config_init(&hc);
        hc.max_concurrent_calls = 1000;
        hc.max_queue_size = 20000;
        hc.max_wait_duration = 0.0; /* no limit */
        o.own_bulkhead = true;
        o.bulkhead_config = &hc;
    }
    if (pf_agent_add_state(a, "get", get, NULL, &o) != 0) {
        abort();
    }
    return a;
}

typedef struct one {
    CURL *easy;
    pf_ctx_t *ctx;
    pf_run_t *run;
} one_t;

/* n runs of a fresh agent with patterns p at once against url. */
static figures_t
agent_batch(pf_executor_t *ex, const char *url, int n, patterns_t p)
{
    one_t *r = calloc((size_t)n, sizeof(*r));
    pf_agent_t *a = make_agent(ex, p);
    pf_curl_config_t cfg;
    figures_t f = {0};
    int64_t t0;
    int64_t c0;
    int i;

    bench_client_config(&cfg, ex);
    if (r == NULL || pf_curl_client_new(&cfg, &g_client) != 0) {
        abort();
    }
    t0 = now_ns();
    c0 = cpu_ns();
    for (i = 0; i < n; i++) {
        r[i].easy = curl_easy_init();
        curl_easy_setopt(r[i].easy, CURLOPT_URL, url);
        curl_easy_setopt(r[i].easy, CURLOPT_WRITEFUNCTION, discard);
        if (pf_ctx_new(&r[i].ctx) != 0 ||
            pf_ctx_set_ptr(r[i].ctx, "easy", r[i].easy, NULL) != 0 ||
            pf_agent_start(a, r[i].ctx, NULL, &r[i].run) != 0) {
            abort();
        }
    }
    for (i = 0; i < n; i++) {
        pf_run_result_t res;
        pf_state_result_t sr = {0};

        (void)pf_run_wait(r[i].run, NULL, &res);
        if (pf_run_result_find(&res, "get", &sr) != 0 ||
            sr.outcome != PF_STATE_COMPLETED) {
            f.errors++;
            f.rejected += sr.error == PF_EOPEN;
            if (getenv("BENCH_DEBUG") != NULL && f.errors <= 5) {
                fprintf(stderr, "run %d: outcome %d error %d (%s) attempts %u "
                        "timed_out %d\n", i, (int)sr.outcome, sr.error,
                        pf_strerror(sr.error), sr.attempts, (int)sr.timed_out);
            }
        }
        f.attempts += sr.attempts;
        pf_run_result_free(&res);
        pf_run_free(r[i].run);
        pf_ctx_free(r[i].ctx);
    }
    f.wall_s = (double)(now_ns() - t0) / 1e9;
    f.cpu_us_per_call = (double)(cpu_ns() - c0) / 1e3 / n;
    pf_curl_client_free(g_client);
    for (i = 0; i < n; i++) {
        curl_easy_cleanup(r[i].easy);
    }
    pf_agent_free(a);
    free(r);
    return f;
}

/* The bare transfer, as bench_curl: n pf_curl_start at once. */
static figures_t
bare_batch(pf_executor_t *ex, const char *url, int n)
{
    bare_figures_t b = bench_bare_batch(ex, url, n);
    figures_t f = {0};

    f.wall_s = b.wall_s;
    f.cpu_us_per_call = b.cpu_us_per_call;
    f.errors = b.errors;
    f.attempts = n;
    return f;
}

static const char *
pattern_name(patterns_t p)
{
    switch (p) {
    case PAT_NONE:
        return "agent state, no pattern";
    case PAT_CONSECUTIVE:
        return "retries + consecutive breaker (5)";
    case PAT_RATE:
        return "retries + rate-window breaker";
    case PAT_NO_BREAKER:
        return "retries, no breaker";
    case PAT_RATE_BULKHEAD:
        return "breaker + bulkhead of 1,000";
    default:
        return "breaker+bulkhead+retries+timeout";
    }
}

int
main(int argc, char **argv)
{
    static const int def_n[] = {100, 1000, 10000};
    int to_server[2];
    int from_server[2];
    pf_executor_config_t ecfg;
    pf_executor_t *ex;
    char url[64];
    char flaky[64];
    unsigned port;
    pid_t pid;
    int k;
    int count = argc > 1 ? argc - 1 : 3;
    const char *parts = getenv("BENCH_PARTS");

    if (parts == NULL) {
        parts = "123";
    }
    if (getenv("BENCH_ONE") != NULL) {
        parts = "";
    }

    signal(SIGPIPE, SIG_IGN);
    if (pipe(to_server) != 0 || pipe(from_server) != 0) {
        return 1;
    }
    pid = fork();
    if (pid == 0) {
        close(to_server[1]);
        close(from_server[0]);
        g_answer = flaky_answer;
        server_main(from_server[1], to_server[0]);
    }
    close(to_server[0]);
    close(from_server[1]);
    if (read(from_server[0], &port, sizeof(port)) != sizeof(port)) {
        return 1;
    }
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/", port);
    snprintf(flaky, sizeof(flaky), "http://127.0.0.1:%u/flaky", port);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    pf_executor_config_init(&ecfg);
    ecfg.workers = 2;
    if (pf_executor_new(&ecfg, &ex) != 0) {
        return 1;
    }
    if (getenv("BENCH_ONE") != NULL) {
        const char *one = getenv("BENCH_ONE");
        int n = argc > 1 ? atoi(argv[1]) : 100;
        figures_t f = strcmp(one, "bare") == 0
                          ? bare_batch(ex, url, n)
                          : agent_batch(ex, url, n,
                                        strcmp(one, "all") == 0 ? PAT_ALL
                                                                : PAT_NONE);

        printf("%s %d: errors %d, attempts %ld\n", one, n, f.errors,
               f.attempts);
        goto out;
    }
    if (strchr(parts, '1') != NULL) {
        printf("# 1. N agent runs at once, one state each: GET to a server "
               "answering after 100 ms; rate-window breaker, 3 retries, 2 s "
               "per-attempt timeout (no bulkhead), and then also a bulkhead "
               "of 1,000; executor with 2 workers, libcurl %s, client "
               "max_transfers %ld; 3 rounds, fresh agent and client each\n",
               curl_version_info(CURLVERSION_NOW)->version,
               bench_max_transfers());
        printf("%-8s %-30s %-28s %-22s %s\n", "N", "state",
               "wall s (min/median/max)", "CPU us/call (median)",
               "errors (total of 3)");
    }
    for (k = 0; k < count && strchr(parts, '1') != NULL; k++) {
        static const patterns_t ps[] = {PAT_RATE, PAT_RATE_BULKHEAD};
        int n = argc > 1 ? atoi(argv[k + 1]) : def_n[k];
        int q;

        for (q = 0; q < 2; q++) {
            double wall[3];
            double cpu[3];
            int errors = 0;
            int r;

            for (r = 0; r < 3; r++) {
                figures_t f = agent_batch(ex, url, n, ps[q]);

                wall[r] = f.wall_s;
                cpu[r] = f.cpu_us_per_call;
                errors += f.errors;
            }
            qsort(wall, 3, sizeof(double), cmp_double);
            qsort(cpu, 3, sizeof(double), cmp_double);
            printf("%-8d %-30s %.3f / %.3f / %.3f        %-22.1f %d\n", n,
                   q == 0 ? "breaker + retries + timeout" : pattern_name(ps[q]),
                   wall[0], wall[1], wall[2], cpu[1], errors);
            fflush(stdout);
        }
    }

    if (strchr(parts, '2') == NULL) {
        goto part3;
    }
    printf("\n# 2. 1,000 runs at once; 3 retries (50 ms doubling to 1 s, "
           "full jitter), 2 s per-attempt timeout; 3 rounds each\n");
    printf("%-46s %-30s %-16s %s\n", "server / client", "errors % (per round)",
           "shed by breaker", "attempts (median)");
    {
        static const patterns_t ps[] = {PAT_NO_BREAKER, PAT_CONSECUTIVE, PAT_RATE};
        static const char *down = "http://127.0.0.1:1/"; /* refused */
        int s;
        int q;

        for (s = 0; s < 2; s++) {
            for (q = 0; q < 3; q++) {
                char errs[64] = "";
                char name[80];
                long att[3];
                int shed = 0;
                int r;

                for (r = 0; r < 3; r++) {
                    figures_t f =
                        agent_batch(ex, s == 0 ? flaky : down, 1000, ps[q]);
                    size_t len = strlen(errs);

                    snprintf(errs + len, sizeof(errs) - len, "%s%.1f",
                             r ? " / " : "", f.errors / 10.0);
                    att[r] = f.attempts;
                    shed += f.rejected;
                    if (s == 1 && r == 2) {
                        snprintf(errs + strlen(errs),
                                 sizeof(errs) - strlen(errs), " (%.3f s)",
                                 f.wall_s);
                    }
                }
                qsort(att, 3, sizeof(long), cmp_long);
                snprintf(name, sizeof(name), "%s: %s",
                         s == 0 ? "30 % fail" : "down", pattern_name(ps[q]));
                printf("%-46s %-30s %-16d %ld\n", name, errs, shed / 3,
                       att[1]);
                fflush(stdout);
            }
        }
    }
part3:
    if (strchr(parts, '3') == NULL) {
        goto out;
    }
    printf("\n# 3. The patterns' cost per call: 1,000 calls at once to the "
           "100 ms server, client CPU us/call (median of 5 rounds)\n");
    {
        static const patterns_t ps[] = {PAT_NONE, PAT_ALL};
        double base[5];
        double cpu[10];
        double bare;
        int q;
        int r;

        /* Interleaved, so that the machine's load falls on all three. */
        for (r = 0; r < 5; r++) {
            base[r] = bare_batch(ex, url, 1000).cpu_us_per_call;
            for (q = 0; q < 2; q++) {
                cpu[q * 5 + r] =
                    agent_batch(ex, url, 1000, ps[q]).cpu_us_per_call;
            }
        }
        qsort(base, 5, sizeof(double), cmp_double);
        bare = base[2];
        printf("%-36s %.1f\n", "bare pf_curl_start transfer", bare);
        for (q = 0; q < 2; q++) {
            qsort(cpu + q * 5, 5, sizeof(double), cmp_double);
            printf("%-36s %.1f (%+.1f, %+.0f %%)\n", pattern_name(ps[q]),
                   cpu[q * 5 + 2], cpu[q * 5 + 2] - bare,
                   (cpu[q * 5 + 2] - bare) / bare * 100.0);
        }
    }
out:
    pf_executor_free(ex);
    close(to_server[1]);
    waitpid(pid, NULL, 0);
    curl_global_cleanup();
    return 0;
}
