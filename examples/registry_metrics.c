/* Registries and metrics export.
 *
 * A service keeps its fault-tolerance objects in the default registry:
 * a circuit breaker per dependency, got or created by name from a shared
 * default config (the reference's circuit registry), a bulkhead, and a
 * health checker. After a burst of failures the payments breaker opens;
 * the program then prints the whole registry as Prometheus text and as
 * JSON, and checks what it promises: the payments breaker shows state 1
 * (open) with its calls by outcome, the inventory breaker state 0, and
 * both formats are produced. Exit 0 only then. */
#include <stdio.h>
#include <string.h>

#include "puffinflow/alloc.h"
#include "puffinflow/breaker.h"
#include "puffinflow/bulkhead.h"
#include "puffinflow/error.h"
#include "puffinflow/health.h"
#include "puffinflow/registry.h"

static int
flaky_payment(void *arg)
{
    (void)arg;
    return -1; /* the payments service is down */
}

static int
inventory_lookup(void *arg)
{
    (void)arg;
    return 0;
}

static int
database_ping(pf_health_result_t *res, void *arg)
{
    (void)arg;
    pf_health_result_set(res, PF_HEALTHY, "database connection is active");
    return 0;
}

int
main(void)
{
    pf_registry_t *reg = pf_registry_default();
    pf_breaker_config_t defaults;
    pf_breaker_t *payments;
    pf_breaker_t *inventory;
    pf_breaker_t *again;
    pf_bulkhead_t *db;
    pf_health_checker_t *health;
    pf_health_report_t *report;
    char *prom = NULL;
    char *json = NULL;
    int ok = 1;
    int i;

    /* Every breaker the registry creates from now on opens after 3
     * failures and stays open 30 s. */
    pf_breaker_config_init(&defaults);
    defaults.failure_threshold = 3;
    defaults.recovery_timeout = 30.0;
    if (pf_registry_set_breaker_defaults(reg, &defaults) != 0 ||
        pf_registry_get_breaker(reg, "payments", NULL, &payments) != 0 ||
        pf_registry_get_breaker(reg, "inventory", NULL, &inventory) != 0 ||
        pf_registry_get_bulkhead(reg, "database", NULL, &db) != 0 ||
        pf_registry_get_health_checker(reg, "app", NULL, &health) != 0 ||
        pf_health_add_check(health, "database", database_ping, NULL) != 0) {
        fprintf(stderr, "setup failed\n");
        return 1;
    }
    /* Get-or-create by name hands back the same breaker. */
    ok &= pf_registry_get_breaker(reg, "payments", NULL, &again) == 0 &&
          again == payments;

    for (i = 0; i < 5; i++) {
        pf_breaker_call(payments, flaky_payment, NULL); /* 3 fail, 2 rejected */
        pf_breaker_call(inventory, inventory_lookup, NULL);
    }
    if (pf_health_check_all(health, &report) == 0) {
        pf_health_report_free(report);
    }

    if (pf_registry_export(reg, PF_METRICS_PROMETHEUS, &prom, NULL) != 0 ||
        pf_registry_export(reg, PF_METRICS_JSON, &json, NULL) != 0) {
        fprintf(stderr, "export failed\n");
        return 1;
    }
    fputs(prom, stdout);
    printf("\n%s\n", json);

    ok &=
        strstr(prom, "puffinflow_breaker_state{name=\"payments\"} 1\n") != NULL;
    ok &= strstr(prom, "puffinflow_breaker_state{name=\"inventory\"} 0\n") !=
          NULL;
    ok &= strstr(prom, "puffinflow_breaker_calls_total{name=\"payments\","
                       "outcome=\"failure\"} 3\n") != NULL;
    ok &= strstr(prom, "puffinflow_breaker_calls_total{name=\"payments\","
                       "outcome=\"rejected\"} 2\n") != NULL;
    ok &= strstr(prom, "puffinflow_health_status{checker=\"app\","
                       "check=\"database\"} 0\n") != NULL;
    ok &= strstr(json, "\"name\":\"payments\",\"state\":\"open\"") != NULL;
    pf_free(prom);
    pf_free(json);

    /* The default registry owns what it created: clearing it frees them. */
    pf_registry_clear(reg);
    printf("%s\n", ok ? "registry example: as promised" : "FAILED");
    return ok ? 0 : 1;
}
