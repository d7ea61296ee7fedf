/* The typed face of the registry: for each kind of object, the hooks the
 * container needs (free, create from a config) and the public functions
 * that take and return the kind's own type. A kind whose module is not in
 * the library keeps NULL hooks: it stays empty and get-or-create on it
 * returns PF_EINVAL. */
#include <stddef.h>

#include "registry_impl.h"

const pf__reg_kind_ops_t pf__reg_kinds[PF_REGISTRY_KINDS] = {
    [PF_REGISTRY_BREAKER] = {"breaker", NULL, NULL, 0},
    [PF_REGISTRY_BULKHEAD] = {"bulkhead", NULL, NULL, 0},
    [PF_REGISTRY_RATELIMIT] = {"ratelimit", NULL, NULL, 0},
    [PF_REGISTRY_HEALTH] = {"health", NULL, NULL, 0},
    [PF_REGISTRY_LEAK] = {"leak", NULL, NULL, 0},
    [PF_REGISTRY_DEGRADE] = {"degrade", NULL, NULL, 0},
};
