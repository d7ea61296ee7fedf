/* Cost of host-local shared state (docs/shared.md): the closed path of a
 * breaker whose state lives in a shared-memory segment beside the same
 * breaker in process memory (target: within 2x), the rejection while
 * open, and the same closed path while a second process runs it on the
 * same segment at once.
 *
 * Default breaker config (its 30 s call timeout is measured, with a coarse
 * clock read), one thread; the segment lives in a private folder under
 * /tmp that the program removes.
 *
 * Also the rate limiter's decision, in-process and shared: granted (rate
 * 1e9/s, burst 1e7: the bucket never runs dry, so every call is a clock
 * read and a CAS) and refused (rate 1/s, burst 1, emptied first: a clock
 * read and a load); and the retry budget's deposit (lock-free) and
 * withdrawal (under the budget's mutex, and shared, the segment's too). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "puffinflow/breaker.h"
#include "puffinflow/bulkhead.h"
#include "puffinflow/ratelimit.h"
#include "puffinflow/retry.h"
#include "puffinflow/shared.h"

#include "harness.h"

static void
permit_face(void *arg, uint64_t ops)
{
    pf_breaker_t *b = arg;

    for (uint64_t i = 0; i < ops; i++) {
        pf_permit_t p;

        if (pf_breaker_acquire(b, &p) == 0) {
            pf_breaker_record(b, &p, 0);
        }
    }
}

static void
rejected(void *arg, uint64_t ops)
{
    pf_breaker_t *b = arg;

    for (uint64_t i = 0; i < ops; i++) {
        pf_permit_t p;

        PF_BENCH_KEEP(pf_breaker_acquire(b, &p));
    }
}

static void
bulkhead_face(void *arg, uint64_t ops)
{
    pf_bulkhead_t *bh = arg;

    for (uint64_t i = 0; i < ops; i++) {
        if (pf_bulkhead_try_enter(bh) == 0) {
            pf_bulkhead_leave(bh);
        }
    }
}

static void
limiter_face(void *arg, uint64_t ops)
{
    pf_ratelimit_t *rl = arg;

    for (uint64_t i = 0; i < ops; i++) {
        PF_BENCH_KEEP(pf_ratelimit_try_acquire(rl, 1));
    }
}

static void
deposit_face(void *arg, uint64_t ops)
{
    pf_retry_budget_t *b = arg;

    for (uint64_t i = 0; i < ops; i++) {
        pf_retry_budget_deposit(b);
    }
}

static void
withdraw_face(void *arg, uint64_t ops)
{
    pf_retry_budget_t *b = arg;

    for (uint64_t i = 0; i < ops; i++) {
        PF_BENCH_KEEP(pf_retry_budget_try_withdraw(b));
    }
}

static pf_ratelimit_t *
make_limiter(const pf_shared_config_t *sc, const char *name, double rate,
             unsigned burst)
{
    pf_ratelimit_config_t cfg;
    pf_ratelimit_t *rl = NULL;

    pf_ratelimit_config_init(&cfg);
    cfg.name = name;
    cfg.rate = rate;
    cfg.burst = burst;
    cfg.shared = sc;
    if (pf_ratelimit_new(&cfg, &rl) != 0) {
        fprintf(stderr, "bench_shared: cannot make limiter %s\n", name);
        exit(1);
    }
    return rl;
}

static pf_retry_budget_t *
make_budget(const pf_shared_config_t *sc, const char *name)
{
    pf_retry_budget_config_t cfg;
    pf_retry_budget_t *b = NULL;

    pf_retry_budget_config_init(&cfg);
    cfg.name = name;
    cfg.shared = sc;
    if (pf_retry_budget_new(&cfg, &b) != 0) {
        fprintf(stderr, "bench_shared: cannot make budget %s\n", name);
        exit(1);
    }
    return b;
}

/* Rate limiter and retry budget rows, in-process beside shared. */
static void
limiter_and_budget(pf_shared_config_t *sc)
{
    pf_ratelimit_t *lrl = make_limiter(NULL, "local-rl", 1e9, 10000000);
    pf_ratelimit_t *srl;
    pf_retry_budget_t *lb = make_budget(NULL, "local-budget");
    pf_retry_budget_t *sb;

    sc->name = "bench-rl";
    srl = make_limiter(sc, "shared-rl", 1e9, 10000000);
    pf_bench_run("rate limiter granted, in-process: try_acquire",
                 limiter_face, lrl, 2000000, 9);
    pf_bench_run("rate limiter granted, shared: try_acquire", limiter_face,
                 srl, 2000000, 9);
    pf_ratelimit_free(lrl);
    pf_ratelimit_free(srl);
    lrl = make_limiter(NULL, "local-rl-dry", 1.0, 1);
    sc->name = "bench-rl-dry";
    srl = make_limiter(sc, "shared-rl-dry", 1.0, 1);
    (void)pf_ratelimit_try_acquire(lrl, 1);
    (void)pf_ratelimit_try_acquire(srl, 1);
    pf_bench_run("rate limiter refused, in-process: try_acquire",
                 limiter_face, lrl, 2000000, 9);
    pf_bench_run("rate limiter refused, shared: try_acquire", limiter_face,
                 srl, 2000000, 9);
    pf_ratelimit_free(lrl);
    pf_ratelimit_free(srl);
    sc->name = "bench-budget";
    sb = make_budget(sc, "shared-budget");
    pf_bench_run("retry budget, in-process: deposit", deposit_face, lb,
                 2000000, 9);
    pf_bench_run("retry budget, shared: deposit", deposit_face, sb, 2000000,
                 9);
    pf_bench_run("retry budget, in-process: try_withdraw", withdraw_face, lb,
                 2000000, 9);
    pf_bench_run("retry budget, shared: try_withdraw", withdraw_face, sb,
                 2000000, 9);
    pf_retry_budget_free(lb);
    pf_retry_budget_free(sb);
}

static pf_bulkhead_t *
make_bulkhead(const pf_shared_config_t *sc, const char *name)
{
    pf_bulkhead_config_t cfg;
    pf_bulkhead_t *bh = NULL;

    pf_bulkhead_config_init(&cfg);
    cfg.name = name;
    cfg.shared = sc;
    if (pf_bulkhead_new(&cfg, &bh) != 0) {
        fprintf(stderr, "bench_shared: cannot make bulkhead %s\n", name);
        exit(1);
    }
    return bh;
}

static pf_breaker_t *
make(const pf_shared_config_t *sc, const char *name)
{
    pf_breaker_config_t cfg;
    pf_breaker_t *b = NULL;

    pf_breaker_config_init(&cfg);
    cfg.name = name;
    cfg.shared = sc;
    if (pf_breaker_new(&cfg, &b) != 0) {
        fprintf(stderr, "bench_shared: cannot make breaker %s\n", name);
        exit(1);
    }
    return b;
}

int
main(void)
{
    char dir[] = "/tmp/pf_bench_shared_XXXXXX";
    pf_shared_config_t sc;
    pf_breaker_t *local;
    pf_breaker_t *shared;
    pf_breaker_t *lopen;
    pf_breaker_t *sopen;
    pid_t pid;
    char cmd[128];

    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    pf_bench_header("host-local shared state: breaker closed path");
    pf_shared_config_init(&sc);
    sc.dir = dir;
    sc.name = "bench";
    local = make(NULL, "local");
    shared = make(&sc, "shared");
    pf_bench_run("breaker closed, in-process: acquire + record",
                 permit_face, local, 2000000, 9);
    pf_bench_run("breaker closed, shared: acquire + record", permit_face,
                 shared, 2000000, 9);
    sc.name = "bench-open";
    lopen = make(NULL, "local-open");
    sopen = make(&sc, "shared-open");
    pf_breaker_force_open(lopen);
    pf_breaker_force_open(sopen);
    pf_bench_run("breaker open, in-process: rejected", rejected, lopen,
                 2000000, 9);
    pf_bench_run("breaker open, shared: rejected", rejected, sopen, 2000000,
                 9);
    {
        pf_bulkhead_t *lbh = make_bulkhead(NULL, "local-bh");
        pf_bulkhead_t *sbh;

        sc.name = "bench-bh";
        sbh = make_bulkhead(&sc, "shared-bh");
        pf_bench_run("bulkhead (limit 10), in-process: try_enter + leave",
                     bulkhead_face, lbh, 2000000, 9);
        pf_bench_run("bulkhead (limit 10), shared: try_enter + leave",
                     bulkhead_face, sbh, 2000000, 9);
        pf_bulkhead_free(lbh);
        pf_bulkhead_free(sbh);
    }
    limiter_and_budget(&sc);
    /* A second process on the same segment, calling without pause. */
    pid = fork();
    if (pid == 0) {
        for (;;) {
            permit_face(shared, 1000000);
        }
    }
    pf_bench_run("breaker closed, shared, 2nd process busy on it", permit_face,
                 shared, 2000000, 9);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    pf_breaker_free(local);
    pf_breaker_free(shared);
    pf_breaker_free(lopen);
    pf_breaker_free(sopen);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : 1;
}
