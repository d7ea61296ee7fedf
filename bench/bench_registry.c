/* Costs of the registry and of metrics export: a lookup by name (find,
 * and get on an existing name), with 1 and 2 threads, and the time to
 * snapshot and render a registry of 10 and 100 breakers plus 10 bulkheads
 * as Prometheus text and as JSON (what one scrape of /metrics or /status
 * costs the process, without HTTP). */
#include <stdio.h>

#include "puffinflow/puffinflow.h"
#include "puffinflow/registry.h"

#include "harness.h"

typedef struct fixture {
    pf_registry_t *r;
    const char *name;
} fixture_t;

static void
bench_find(void *arg, uint64_t ops)
{
    fixture_t *f = arg;
    pf_breaker_t *b;

    for (uint64_t i = 0; i < ops; i++) {
        PF_BENCH_KEEP(pf_registry_find_breaker(f->r, f->name, &b));
    }
}

static void
bench_get_existing(void *arg, uint64_t ops)
{
    fixture_t *f = arg;
    pf_breaker_t *b;

    for (uint64_t i = 0; i < ops; i++) {
        PF_BENCH_KEEP(pf_registry_get_breaker(f->r, f->name, NULL, &b));
    }
}

static void
bench_find_threads(void *arg, unsigned thread, uint64_t ops)
{
    (void)thread;
    bench_find(arg, ops);
}

static void
bench_export(pf_registry_t *r, pf_metrics_format_t fmt, uint64_t ops)
{
    for (uint64_t i = 0; i < ops; i++) {
        char *text;

        if (pf_registry_export(r, fmt, &text, NULL) == 0) {
            pf_free(text);
        }
    }
}

static void
bench_export_prom(void *arg, uint64_t ops)
{
    bench_export(arg, PF_METRICS_PROMETHEUS, ops);
}

static void
bench_export_json(void *arg, uint64_t ops)
{
    bench_export(arg, PF_METRICS_JSON, ops);
}

/* A registry of n breakers (a third of them open) and 10 bulkheads, no
 * process block (its /proc reads are measured separately). */
static pf_registry_t *
make_registry(unsigned n, bool process)
{
    pf_registry_config_t cfg;
    pf_registry_t *r;
    char name[32];
    unsigned i;

    pf_registry_config_init(&cfg);
    cfg.process_metrics = process;
    if (pf_registry_new(&cfg, &r) != 0) {
        return NULL;
    }
    for (i = 0; i < n; i++) {
        pf_breaker_t *b;

        snprintf(name, sizeof(name), "dependency-%03u", i);
        if (pf_registry_get_breaker(r, name, NULL, &b) == 0 && i % 3 == 0) {
            pf_breaker_force_open(b);
        }
    }
    for (i = 0; i < 10; i++) {
        pf_bulkhead_t *bh;

        snprintf(name, sizeof(name), "pool-%u", i);
        pf_registry_get_bulkhead(r, name, NULL, &bh);
    }
    return r;
}

int
main(void)
{
    fixture_t f;
    pf_registry_t *r10;
    pf_registry_t *r100;
    pf_registry_t *rproc;
    char *text;
    size_t len;

    pf_bench_header("registry and metrics export");
    r100 = make_registry(100, false);
    r10 = make_registry(10, false);
    rproc = make_registry(10, true);
    if (r10 == NULL || r100 == NULL || rproc == NULL) {
        fprintf(stderr, "setup failed\n");
        return 1;
    }
    f.r = r100;
    f.name = "dependency-050";
    pf_bench_run("find breaker by name (100 breakers)", bench_find, &f, 1000000,
                 7);
    pf_bench_run("get existing breaker (100 breakers)", bench_get_existing, &f,
                 1000000, 7);
    pf_bench_run_threads("find breaker, 2 threads", bench_find_threads, &f, 2,
                         500000, 7);
    pf_bench_run("export Prometheus, 10 breakers + 10 bulkheads",
                 bench_export_prom, r10, 2000, 7);
    pf_bench_run("export Prometheus, 100 breakers + 10 bulkheads",
                 bench_export_prom, r100, 300, 7);
    pf_bench_run("export JSON, 100 breakers + 10 bulkheads", bench_export_json,
                 r100, 300, 7);
    pf_bench_run("export Prometheus with /proc process block, 10 + 10",
                 bench_export_prom, rproc, 500, 7);
    if (pf_registry_export(r100, PF_METRICS_PROMETHEUS, &text, &len) == 0) {
        pf_bench_print("Prometheus text size, 100 breakers + 10 bulkheads",
                       (double)len, "bytes");
        pf_free(text);
    }
    pf_registry_free(r10);
    pf_registry_free(r100);
    pf_registry_free(rproc);
    return 0;
}
