/* The health checker's internals shared by health.c (checker, runs,
 * reports), health_json.c (the report as JSON) and health_checks.c (the
 * built-in checks). */
#ifndef PF_SRC_HEALTH_IMPL_H
#define PF_SRC_HEALTH_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "puffinflow/health.h"

/* One check of a report: the public view, and the message it points to. */
typedef struct pf__health_item {
    pf_health_entry_t pub;
    bool counted;   /* counts in the overall status (has a result) */
    char msg[PF_HEALTH_MESSAGE_MAX];
} pf__health_item_t;

/* A report is one allocation: this header, the items, the failed names
 * and the strings they point to. Immutable once made. */
struct pf_health_report {
    const char *checker;
    pf_health_status_t status;
    int64_t time_ns;        /* wall clock */
    int64_t duration_ns;    /* on the checker's clock */
    size_t n;
    pf__health_item_t *items;
    size_t nfailed;
    const char **failed;
};

/* Add a check whose arg the checker owns: arg_free(arg) runs when the
 * check is gone (removed, or the checker freed, and no run of it left).
 * On error nothing is kept and arg stays the caller's. */
int pf__health_add_owned(pf_health_checker_t *hc, const char *name,
                         pf_health_fn fn, void *arg,
                         void (*arg_free)(void *arg),
                         const pf_health_check_opts_t *opts);

/* For tests: call fn(arg) once hc's memory is finally released (after
 * pf_health_checker_free and the last check thread). Set it before
 * freeing hc. */
void pf__health_on_destroy(pf_health_checker_t *hc, void (*fn)(void *arg),
                           void *arg);

/* Write wall-clock time ns (since the epoch) as an ISO 8601 UTC string
 * with milliseconds, "2024-05-01T12:00:00.000Z", into buf (>= 32 bytes). */
void pf__health_iso_time(int64_t ns, char *buf, size_t len);

#endif /* PF_SRC_HEALTH_IMPL_H */
