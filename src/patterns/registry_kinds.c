/* The typed face of the registry: for each kind of object, the hooks the
 * container needs (free, create from a config) and the public functions
 * that take and return the kind's own type. Each create hook copies the
 * config it is given (or the module's defaults), puts the registry's name
 * in it, and calls the module's _new. (The container accepts a kind with
 * NULL hooks, which then stays empty and refuses get-or-create with
 * PF_EINVAL; every kind has its hooks today.) */
#include <stddef.h>

#include "puffinflow/breaker.h"
#include "puffinflow/bulkhead.h"
#include "puffinflow/degrade.h"
#include "puffinflow/error.h"
#include "puffinflow/health.h"
#include "puffinflow/leak.h"
#include "puffinflow/ratelimit.h"

#include "registry_impl.h"

static bool
own_ok(pf_registry_ownership_t own)
{
    return own == PF_REGISTRY_BORROW || own == PF_REGISTRY_OWN;
}

/* ---- breakers ---------------------------------------------------------- */

static void
breaker_destroy(void *object)
{
    pf_breaker_free(object);
}

static int
breaker_create(const void *cfg, const char *name, void **out)
{
    pf_breaker_config_t c;
    pf_breaker_t *b;
    int rc;

    if (cfg != NULL) {
        c = *(const pf_breaker_config_t *)cfg;
    } else {
        pf_breaker_config_init(&c);
    }
    c.name = name;
    rc = pf_breaker_new(&c, &b);
    if (rc == 0) {
        *out = b;
    }
    return rc;
}

int
pf_registry_add_breaker(pf_registry_t *r, pf_breaker_t *b,
                        pf_registry_ownership_t own)
{
    if (b == NULL || !own_ok(own)) {
        return PF_EINVAL;
    }
    return pf__registry_add(r, PF_REGISTRY_BREAKER, pf_breaker_name(b), b,
                            own == PF_REGISTRY_OWN);
}

int
pf_registry_get_breaker(pf_registry_t *r, const char *name,
                        const pf_breaker_config_t *cfg, pf_breaker_t **out)
{
    void *object;
    int rc;

    if (out == NULL) {
        return PF_EINVAL;
    }
    rc = pf__registry_get(r, PF_REGISTRY_BREAKER, name, cfg, &object);
    if (rc == 0) {
        *out = object;
    }
    return rc;
}

int
pf_registry_find_breaker(pf_registry_t *r, const char *name, pf_breaker_t **out)
{
    void *object;
    int rc;

    if (out == NULL) {
        return PF_EINVAL;
    }
    rc = pf_registry_find(r, PF_REGISTRY_BREAKER, name, &object);
    if (rc == 0) {
        *out = object;
    }
    return rc;
}

int
pf_registry_set_breaker_defaults(pf_registry_t *r,
                                 const pf_breaker_config_t *cfg)
{
    return pf__registry_set_defaults(r, PF_REGISTRY_BREAKER, cfg);
}

/* ---- breaker_groups
 * ---------------------------------------------------------- */

static void
breaker_group_destroy(void *object)
{
    pf_breaker_group_free(object);
}

static int
breaker_group_create(const void *cfg, const char *name, void **out)
{
    pf_breaker_group_config_t c;
    pf_breaker_group_t *g;
    int rc;

    if (cfg != NULL) {
        c = *(const pf_breaker_group_config_t *)cfg;
    } else {
        pf_breaker_group_config_init(&c);
    }
    c.name = name;
    rc = pf_breaker_group_new(&c, &g);
    if (rc == 0) {
        *out = g;
    }
    return rc;
}

int
pf_registry_add_breaker_group(pf_registry_t *r, pf_breaker_group_t *g,
                              pf_registry_ownership_t own)
{
    if (g == NULL || !own_ok(own)) {
        return PF_EINVAL;
    }
    return pf__registry_add(r, PF_REGISTRY_BREAKER_GROUP,
                            pf_breaker_group_name(g), g,
                            own == PF_REGISTRY_OWN);
}

int
pf_registry_get_breaker_group(pf_registry_t *r, const char *name,
                              const pf_breaker_group_config_t *cfg,
                              pf_breaker_group_t **out)
{
    void *object;
    int rc;

    if (out == NULL) {
        return PF_EINVAL;
    }
    rc = pf__registry_get(r, PF_REGISTRY_BREAKER_GROUP, name, cfg, &object);
    if (rc == 0) {
        *out = object;
    }
    return rc;
}

int
pf_registry_find_breaker_group(pf_registry_t *r, const char *name,
                               pf_breaker_group_t **out)
{
    void *object;
    int rc;

    if (out == NULL) {
        return PF_EINVAL;
    }
    rc = pf_registry_find(r, PF_REGISTRY_BREAKER_GROUP, name, &object);
    if (rc == 0) {
        *out = object;
    }
    return rc;
}

int
pf_registry_set_breaker_group_defaults(pf_registry_t *r,
                                       const pf_breaker_group_config_t *cfg)
{
    return pf__registry_set_defaults(r, PF_REGISTRY_BREAKER_GROUP, cfg);
}

/* ---- bulkheads ---------------------------------------------------------- */

static void
bulkhead_destroy(void *object)
{
    pf_bulkhead_free(object);
}

static int
bulkhead_create(const void *cfg, const char *name, void **out)
{
    pf_bulkhead_config_t c;
    pf_bulkhead_t *bh;
    int rc;

    if (cfg != NULL) {
        c = *(const pf_bulkhead_config_t *)cfg;
    } else {
        pf_bulkhead_config_init(&c);
    }
    c.name = name;
    rc = pf_bulkhead_new(&c, &bh);
    if (rc == 0) {
        *out = bh;
    }
    return rc;
}

int
pf_registry_add_bulkhead(pf_registry_t *r, pf_bulkhead_t *bh,
                         pf_registry_ownership_t own)
{
    if (bh == NULL || !own_ok(own)) {
        return PF_EINVAL;
    }
    return pf__registry_add(r, PF_REGISTRY_BULKHEAD, pf_bulkhead_name(bh), bh,
                            own == PF_REGISTRY_OWN);
}

int
pf_registry_get_bulkhead(pf_registry_t *r, const char *name,
                         const pf_bulkhead_config_t *cfg, pf_bulkhead_t **out)
{
    void *object;
    int rc;

    if (out == NULL) {
        return PF_EINVAL;
    }
    rc = pf__registry_get(r, PF_REGISTRY_BULKHEAD, name, cfg, &object);
    if (rc == 0) {
        *out = object;
    }
    return rc;
}

int
pf_registry_find_bulkhead(pf_registry_t *r, const char *name,
                          pf_bulkhead_t **out)
{
    void *object;
    int rc;

    if (out == NULL) {
        return PF_EINVAL;
    }
    rc = pf_registry_find(r, PF_REGISTRY_BULKHEAD, name, &object);
    if (rc == 0) {
        *out = object;
    }
    return rc;
}

int
pf_registry_set_bulkhead_defaults(pf_registry_t *r,
                                  const pf_bulkhead_config_t *cfg)
{
    return pf__registry_set_defaults(r, PF_REGISTRY_BULKHEAD, cfg);
}

/* ---- ratelimits ---------------------------------------------------------- */

static void
ratelimit_destroy(void *object)
{
    pf_ratelimit_free(object);
}

static int
ratelimit_create(const void *cfg, const char *name, void **out)
{
    pf_ratelimit_config_t c;
    pf_ratelimit_t *rl;
    int rc;

    if (cfg != NULL) {
        c = *(const pf_ratelimit_config_t *)cfg;
    } else {
        pf_ratelimit_config_init(&c);
    }
    c.name = name;
    rc = pf_ratelimit_new(&c, &rl);
    if (rc == 0) {
        *out = rl;
    }
    return rc;
}

int
pf_registry_add_ratelimit(pf_registry_t *r, pf_ratelimit_t *rl,
                          pf_registry_ownership_t own)
{
    if (rl == NULL || !own_ok(own)) {
        return PF_EINVAL;
    }
    return pf__registry_add(r, PF_REGISTRY_RATELIMIT, pf_ratelimit_name(rl), rl,
                            own == PF_REGISTRY_OWN);
}

int
pf_registry_get_ratelimit(pf_registry_t *r, const char *name,
                          const pf_ratelimit_config_t *cfg,
                          pf_ratelimit_t **out)
{
    void *object;
    int rc;

    if (out == NULL) {
        return PF_EINVAL;
    }
    rc = pf__registry_get(r, PF_REGISTRY_RATELIMIT, name, cfg, &object);
    if (rc == 0) {
        *out = object;
    }
    return rc;
}

int
pf_registry_find_ratelimit(pf_registry_t *r, const char *name,
                           pf_ratelimit_t **out)
{
    void *object;
    int rc;

    if (out == NULL) {
        return PF_EINVAL;
    }
    rc = pf_registry_find(r, PF_REGISTRY_RATELIMIT, name, &object);
    if (rc == 0) {
        *out = object;
    }
    return rc;
}

int
pf_registry_set_ratelimit_defaults(pf_registry_t *r,
                                   const pf_ratelimit_config_t *cfg)
{
    return pf__registry_set_defaults(r, PF_REGISTRY_RATELIMIT, cfg);
}

/* ---- health checkers -------------------------------------------------- */

static void
health_destroy(void *object)
{
    pf_health_checker_free(object);
}

static int
health_create(const void *cfg, const char *name, void **out)
{
    pf_health_config_t c;
    pf_health_checker_t *hc;
    int rc;

    if (cfg != NULL) {
        c = *(const pf_health_config_t *)cfg;
    } else {
        pf_health_config_init(&c);
    }
    c.name = name;
    rc = pf_health_checker_new(&c, &hc);
    if (rc == 0) {
        *out = hc;
    }
    return rc;
}

int
pf_registry_add_health_checker(pf_registry_t *r, pf_health_checker_t *hc,
                               pf_registry_ownership_t own)
{
    if (hc == NULL || !own_ok(own)) {
        return PF_EINVAL;
    }
    return pf__registry_add(r, PF_REGISTRY_HEALTH, pf_health_checker_name(hc),
                            hc, own == PF_REGISTRY_OWN);
}

int
pf_registry_get_health_checker(pf_registry_t *r, const char *name,
                               const pf_health_config_t *cfg,
                               pf_health_checker_t **out)
{
    void *object;
    int rc;

    if (out == NULL) {
        return PF_EINVAL;
    }
    rc = pf__registry_get(r, PF_REGISTRY_HEALTH, name, cfg, &object);
    if (rc == 0) {
        *out = object;
    }
    return rc;
}

int
pf_registry_find_health_checker(pf_registry_t *r, const char *name,
                                pf_health_checker_t **out)
{
    void *object;
    int rc;

    if (out == NULL) {
        return PF_EINVAL;
    }
    rc = pf_registry_find(r, PF_REGISTRY_HEALTH, name, &object);
    if (rc == 0) {
        *out = object;
    }
    return rc;
}

int
pf_registry_set_health_checker_defaults(pf_registry_t *r,
                                        const pf_health_config_t *cfg)
{
    return pf__registry_set_defaults(r, PF_REGISTRY_HEALTH, cfg);
}

/* ---- leak_detectors
 * ---------------------------------------------------------- */

static void
leak_detector_destroy(void *object)
{
    pf_leak_detector_free(object);
}

static int
leak_detector_create(const void *cfg, const char *name, void **out)
{
    pf_leak_config_t c;
    pf_leak_detector_t *d;
    int rc;

    if (cfg != NULL) {
        c = *(const pf_leak_config_t *)cfg;
    } else {
        pf_leak_config_init(&c);
    }
    c.name = name;
    rc = pf_leak_detector_new(&c, &d);
    if (rc == 0) {
        *out = d;
    }
    return rc;
}

int
pf_registry_add_leak_detector(pf_registry_t *r, pf_leak_detector_t *d,
                              pf_registry_ownership_t own)
{
    if (d == NULL || !own_ok(own)) {
        return PF_EINVAL;
    }
    return pf__registry_add(r, PF_REGISTRY_LEAK, pf_leak_detector_name(d), d,
                            own == PF_REGISTRY_OWN);
}

int
pf_registry_get_leak_detector(pf_registry_t *r, const char *name,
                              const pf_leak_config_t *cfg,
                              pf_leak_detector_t **out)
{
    void *object;
    int rc;

    if (out == NULL) {
        return PF_EINVAL;
    }
    rc = pf__registry_get(r, PF_REGISTRY_LEAK, name, cfg, &object);
    if (rc == 0) {
        *out = object;
    }
    return rc;
}

int
pf_registry_find_leak_detector(pf_registry_t *r, const char *name,
                               pf_leak_detector_t **out)
{
    void *object;
    int rc;

    if (out == NULL) {
        return PF_EINVAL;
    }
    rc = pf_registry_find(r, PF_REGISTRY_LEAK, name, &object);
    if (rc == 0) {
        *out = object;
    }
    return rc;
}

int
pf_registry_set_leak_detector_defaults(pf_registry_t *r,
                                       const pf_leak_config_t *cfg)
{
    return pf__registry_set_defaults(r, PF_REGISTRY_LEAK, cfg);
}

/* ---- degradations ----------------------------------------------------------
 */

static void
degradation_destroy(void *object)
{
    pf_degradation_free(object);
}

static int
degradation_create(const void *cfg, const char *name, void **out)
{
    pf_degradation_config_t c;
    pf_degradation_t *d;
    int rc;

    if (cfg != NULL) {
        c = *(const pf_degradation_config_t *)cfg;
    } else {
        pf_degradation_config_init(&c);
    }
    c.name = name;
    rc = pf_degradation_new(&c, &d);
    if (rc == 0) {
        *out = d;
    }
    return rc;
}

int
pf_registry_add_degradation(pf_registry_t *r, pf_degradation_t *d,
                            pf_registry_ownership_t own)
{
    if (d == NULL || !own_ok(own)) {
        return PF_EINVAL;
    }
    return pf__registry_add(r, PF_REGISTRY_DEGRADE, pf_degradation_name(d), d,
                            own == PF_REGISTRY_OWN);
}

int
pf_registry_get_degradation(pf_registry_t *r, const char *name,
                            const pf_degradation_config_t *cfg,
                            pf_degradation_t **out)
{
    void *object;
    int rc;

    if (out == NULL) {
        return PF_EINVAL;
    }
    rc = pf__registry_get(r, PF_REGISTRY_DEGRADE, name, cfg, &object);
    if (rc == 0) {
        *out = object;
    }
    return rc;
}

int
pf_registry_find_degradation(pf_registry_t *r, const char *name,
                             pf_degradation_t **out)
{
    void *object;
    int rc;

    if (out == NULL) {
        return PF_EINVAL;
    }
    rc = pf_registry_find(r, PF_REGISTRY_DEGRADE, name, &object);
    if (rc == 0) {
        *out = object;
    }
    return rc;
}

int
pf_registry_set_degradation_defaults(pf_registry_t *r,
                                     const pf_degradation_config_t *cfg)
{
    return pf__registry_set_defaults(r, PF_REGISTRY_DEGRADE, cfg);
}

/* ---- the table -------------------------------------------------------- */

const pf__reg_kind_ops_t pf__reg_kinds[PF_REGISTRY_KINDS] = {
    [PF_REGISTRY_BREAKER] = {"breaker", breaker_destroy, breaker_create,
                             sizeof(pf_breaker_config_t)},
    [PF_REGISTRY_BULKHEAD] = {"bulkhead", bulkhead_destroy, bulkhead_create,
                              sizeof(pf_bulkhead_config_t)},
    [PF_REGISTRY_RATELIMIT] = {"ratelimit", ratelimit_destroy, ratelimit_create,
                               sizeof(pf_ratelimit_config_t)},
    [PF_REGISTRY_HEALTH] = {"health", health_destroy, health_create,
                            sizeof(pf_health_config_t)},
    [PF_REGISTRY_LEAK] = {"leak", leak_detector_destroy, leak_detector_create,
                          sizeof(pf_leak_config_t)},
    [PF_REGISTRY_DEGRADE] = {"degrade", degradation_destroy, degradation_create,
                             sizeof(pf_degradation_config_t)},
    [PF_REGISTRY_BREAKER_GROUP] = {"breaker_group", breaker_group_destroy,
                                   breaker_group_create,
                                   sizeof(pf_breaker_group_config_t)},
};
