/* What the Redis store's test, its helper processes and its bench share:
 * whether a store is up, waiting for it to be up (or down), the breaker
 * every trip uses, and running a helper process. Plain C, no test
 * framework. */
#ifndef PF_REDIS_TESTUTIL_H
#define PF_REDIS_TESTUTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "puffinflow/redis.h"
#include "redis_server.h"

static inline bool
rt_store_up(pf_redis_t *r)
{
    pf_redis_metrics_t m;

    pf_redis_metrics(r, &m);
    return m.up;
}

/* Poll every millisecond until r is up (want true) or down: true then;
 * false once ceiling_ns passed. *waited_ns (may be NULL): how long. */
static inline bool
rt_wait_store(pf_redis_t *r, bool want, int64_t ceiling_ns,
              int64_t *waited_ns)
{
    int64_t t0 = rs_now_ns();
    bool ok;

    while (!(ok = rt_store_up(r) == want) && rs_now_ns() - t0 < ceiling_ns) {
        rs_sleep_ms(1);
    }
    if (waited_ns != NULL) {
        *waited_ns = rs_now_ns() - t0;
    }
    return ok;
}

/* A breaker that opens on 3 failures and stays open 10 minutes. */
static inline void
rt_trip_config(pf_breaker_config_t *bc, const char *name)
{
    pf_breaker_config_init(bc);
    bc->name = name;
    bc->failure_threshold = 3;
    bc->recovery_timeout = 600.0;
}

/* Run the helper program (redis_helper) in mode on the server at port,
 * with its arguments (the last ones may be NULL: not given). rs_spawn's
 * result. */
static inline int
rt_spawn_helper(rs_child_t *ch, const char *helper, int port,
                const char *mode, const char *prefix, const char *name,
                const char *a, const char *b, const char *c, const char *d)
{
    char port_s[16];
    char *argv[10];

    snprintf(port_s, sizeof(port_s), "%d", port);
    argv[0] = (char *)helper;
    argv[1] = (char *)mode;
    argv[2] = port_s;
    argv[3] = (char *)prefix;
    argv[4] = (char *)name;
    argv[5] = (char *)a;
    argv[6] = (char *)b;
    argv[7] = (char *)c;
    argv[8] = (char *)d;
    argv[9] = NULL;
    return rs_spawn(ch, argv);
}

#endif
