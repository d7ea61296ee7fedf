/* A state's options and the patterns attached to it.
 *
 * pf_state_opts_init and the profiles fill a pf_state_opts_t; the
 * functions of attach_impl.h turn one into the parts of a state's
 * definition that are not its place in the graph: the plain fields, a
 * copy of the retry policy and its backoff, and the pattern objects.
 *
 * A state's breaker, bulkhead and rate limiter are each attached one of
 * three ways, the first that applies: by pointer (shared, the caller's),
 * by name through a registry (shared: found there, or made from the
 * state's config when own_* is set, else from the registry's defaults),
 * or own (made from the state's config, named "<agent>/<state>" unless
 * the config names it, on the agent's clock unless the config gives one,
 * and freed with the agent). Own objects are made before shared ones, so
 * a bad own config fails before any registry is touched; a failure after
 * that takes out of the registry what this call put there. */
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "puffinflow/agent.h"
#include "puffinflow/error.h"

#include "agent_impl.h"
#include "attach_impl.h"
#include "mem.h"
#include "timeutil.h"

/* ---- defaults and profiles ----------------------------------------------- */

void
pf_state_opts_init(pf_state_opts_t *opts)
{
    if (opts == NULL) {
        return;
    }
    memset(opts, 0, sizeof(*opts));
    opts->priority = PF_PRIORITY_NORMAL;
    opts->max_retries = 3;
    opts->retry = NULL;
    opts->dead_letter = true;
    opts->timeout = 0.0;
    opts->leak_detection = true;
}

/* One profile of the original (decorators/flexible.py, PROFILES). */
typedef struct profile {
    const char *name;
    double cpu;
    double memory;
    double io;
    double network;
    pf_priority_t priority;
    double timeout; /* 0 = none */
    unsigned max_retries;
    bool breaker;
    unsigned failure_threshold; /* 0 = the breaker's default */
    double recovery_timeout;    /* 0 = the breaker's default */
    unsigned bulkhead;          /* max concurrent; 0 = no bulkhead */
    double rate_limit;          /* per second; 0 = none */
    bool leak;
} profile_t;

static const profile_t g_profiles[PF_PROFILE_COUNT] = {
    {"minimal", 0.1, 50, 1, 1, PF_PRIORITY_NORMAL, 0, 1, false, 0, 0, 0, 0,
     false},
    {"standard", 1, 100, 1, 1, PF_PRIORITY_NORMAL, 0, 3, false, 0, 0, 0, 0,
     true},
    {"cpu_intensive", 4, 1024, 1, 1, PF_PRIORITY_HIGH, 300, 3, true, 0, 0, 2, 0,
     true},
    {"memory_intensive", 2, 4096, 1, 1, PF_PRIORITY_HIGH, 600, 3, true, 0, 0, 3,
     0, true},
    {"io_intensive", 1, 256, 10, 1, PF_PRIORITY_NORMAL, 120, 5, true, 3, 30, 5,
     0, true},
    {"network_intensive", 1, 512, 1, 10, PF_PRIORITY_NORMAL, 60, 5, true, 2, 20,
     10, 0, true},
    {"quick", 0.5, 50, 1, 1, PF_PRIORITY_NORMAL, 30, 2, false, 0, 0, 20, 100,
     false},
    {"batch", 2, 1024, 1, 1, PF_PRIORITY_LOW, 1800, 3, true, 0, 0, 3, 0, true},
    {"critical", 2, 512, 1, 1, PF_PRIORITY_CRITICAL, 0, 3, false, 0, 0, 1, 0,
     true},
};

/* The original's ResourceRequirements defaults. */
static const pf_leak_resources_t g_default_resources = {
    .cpu_units = 1.0,
    .memory_mb = 100.0,
    .io_weight = 1.0,
    .network_weight = 1.0,
    .gpu_units = 0.0,
};

/* What a profile points opts at: library-owned, filled once, then only
 * read. */
typedef struct profile_cfg {
    pf_leak_resources_t resources;
    pf_breaker_config_t breaker;
    pf_bulkhead_config_t bulkhead;
    pf_ratelimit_config_t ratelimit;
} profile_cfg_t;

static profile_cfg_t g_profile_cfgs[PF_PROFILE_COUNT];
static pthread_once_t g_profile_once = PTHREAD_ONCE_INIT;

static void
profile_cfgs_fill(void)
{
    unsigned i;

    for (i = 0; i < PF_PROFILE_COUNT; i++) {
        const profile_t *p = &g_profiles[i];
        profile_cfg_t *c = &g_profile_cfgs[i];

        c->resources.cpu_units = p->cpu;
        c->resources.memory_mb = p->memory;
        c->resources.io_weight = p->io;
        c->resources.network_weight = p->network;
        c->resources.gpu_units = 0.0;
        pf_breaker_config_init(&c->breaker);
        if (p->failure_threshold != 0) {
            c->breaker.failure_threshold = p->failure_threshold;
        }
        if (p->recovery_timeout != 0) {
            c->breaker.recovery_timeout = p->recovery_timeout;
        }
        /* The state's own timeout already fails a slow attempt, and that
         * failure is recorded in the breaker: no second clock on the
         * call. */
        c->breaker.timeout = 0.0;
        pf_bulkhead_config_init(&c->bulkhead);
        if (p->bulkhead != 0) {
            c->bulkhead.max_concurrent_calls = p->bulkhead;
        }
        pf_ratelimit_config_init(&c->ratelimit);
        if (p->rate_limit != 0) {
            c->ratelimit.rate = p->rate_limit;
            c->ratelimit.burst = (unsigned)p->rate_limit;
        }
    }
}

const char *
pf_state_profile_name(pf_state_profile_t profile)
{
    if ((unsigned)profile >= PF_PROFILE_COUNT) {
        return "unknown";
    }
    return g_profiles[profile].name;
}

int
pf_state_opts_profile(pf_state_opts_t *opts, pf_state_profile_t profile)
{
    const profile_t *p;
    const profile_cfg_t *c;

    if (opts == NULL || (unsigned)profile >= PF_PROFILE_COUNT) {
        return PF_EINVAL;
    }
    pthread_once(&g_profile_once, profile_cfgs_fill);
    p = &g_profiles[profile];
    c = &g_profile_cfgs[profile];
    opts->resources = &c->resources;
    opts->priority = p->priority;
    opts->timeout = p->timeout;
    opts->max_retries = p->max_retries;
    opts->own_breaker = p->breaker;
    opts->breaker_config = &c->breaker;
    opts->own_bulkhead = p->bulkhead != 0;
    opts->bulkhead_config = &c->bulkhead;
    opts->own_ratelimit = p->rate_limit != 0;
    opts->ratelimit_config = &c->ratelimit;
    opts->leak_detection = p->leak;
    return 0;
}

int
pf_state_opts_profile_named(pf_state_opts_t *opts, const char *name)
{
    unsigned i;

    if (opts == NULL || name == NULL) {
        return PF_EINVAL;
    }
    for (i = 0; i < PF_PROFILE_COUNT; i++) {
        if (strcmp(g_profiles[i].name, name) == 0) {
            return pf_state_opts_profile(opts, (pf_state_profile_t)i);
        }
    }
    return PF_EINVAL;
}

/* ---- per-state options --------------------------------------------------- */

static bool
resources_ok(const pf_leak_resources_t *r)
{
    const double v[5] = {r->cpu_units, r->memory_mb, r->io_weight,
                         r->network_weight, r->gpu_units};
    int i;

    for (i = 0; i < 5; i++) {
        if (!(v[i] >= 0.0) || !isfinite(v[i])) {
            return false;
        }
    }
    return true;
}

/* The name of an own pattern object: the config's, unless it was left at
 * the default, then "<agent>/<state>". */
static char *
own_name(const pf_agent_t *a, const char *state, const char *cfg_name,
         char *buf, size_t cap)
{
    if (cfg_name != NULL && cfg_name[0] != '\0' &&
        strcmp(cfg_name, "default") != 0) {
        return (char *)cfg_name;
    }
    snprintf(buf, cap, "%s/%s", a->name, state);
    return buf;
}

/* The config an own object is made from: the state's, or the defaults. */
static void
own_breaker_config(const pf_state_opts_t *o, pf_breaker_config_t *c)
{
    if (o->breaker_config != NULL) {
        *c = *o->breaker_config;
    } else {
        pf_breaker_config_init(c);
    }
}

static void
own_bulkhead_config(const pf_state_opts_t *o, pf_bulkhead_config_t *c)
{
    if (o->bulkhead_config != NULL) {
        *c = *o->bulkhead_config;
    } else {
        pf_bulkhead_config_init(c);
    }
}

static void
own_ratelimit_config(const pf_state_opts_t *o, pf_ratelimit_config_t *c)
{
    if (o->ratelimit_config != NULL) {
        *c = *o->ratelimit_config;
    } else {
        pf_ratelimit_config_init(c);
    }
}

/* The config an object shared by name is made from when the registry
 * has none yet: the state's own (with the agent's clock when it has none)
 * when own_* is set, else NULL for the registry's defaults. */
static const pf_breaker_config_t *
shared_breaker_cfg(const pf_agent_t *a, const pf_state_opts_t *o,
                   pf_breaker_config_t *c)
{
    if (!o->own_breaker) {
        return NULL;
    }
    own_breaker_config(o, c);
    c->clock = c->clock != NULL ? c->clock : a->clock;
    return c;
}

static const pf_bulkhead_config_t *
shared_bulkhead_cfg(const pf_agent_t *a, const pf_state_opts_t *o,
                    pf_bulkhead_config_t *c)
{
    if (!o->own_bulkhead) {
        return NULL;
    }
    own_bulkhead_config(o, c);
    c->clock = c->clock != NULL ? c->clock : a->clock;
    return c;
}

static const pf_ratelimit_config_t *
shared_ratelimit_cfg(const pf_agent_t *a, const pf_state_opts_t *o,
                     pf_ratelimit_config_t *c)
{
    if (!o->own_ratelimit) {
        return NULL;
    }
    own_ratelimit_config(o, c);
    c->clock = c->clock != NULL ? c->clock : a->clock;
    return c;
}

/* The state's own pattern objects (those not shared by pointer or name).
 * On error the ones made are freed with the state. */
static int
make_own(pf_agent_t *a, pf__state_t *s, const pf_state_opts_t *o)
{
    char buf[256];
    int rc;

    if (o->breaker == NULL && o->breaker_name == NULL && o->own_breaker) {
        pf_breaker_config_t c;

        own_breaker_config(o, &c);
        c.name = own_name(a, s->name, c.name, buf, sizeof(buf));
        if (c.clock == NULL) {
            c.clock = a->clock;
        }
        rc = pf_breaker_new(&c, &s->breaker);
        if (rc != 0) {
            pf__agent_error(a, "state '%s': bad breaker config", s->name);
            return rc;
        }
        s->breaker_owned = true;
    }
    if (o->bulkhead == NULL && o->bulkhead_name == NULL && o->own_bulkhead) {
        pf_bulkhead_config_t c;

        own_bulkhead_config(o, &c);
        c.name = own_name(a, s->name, c.name, buf, sizeof(buf));
        if (c.clock == NULL) {
            c.clock = a->clock;
        }
        rc = pf_bulkhead_new(&c, &s->bulkhead);
        if (rc != 0) {
            pf__agent_error(a, "state '%s': bad bulkhead config", s->name);
            return rc;
        }
        s->bulkhead_owned = true;
    }
    if (o->ratelimit == NULL && o->ratelimit_name == NULL && o->own_ratelimit) {
        pf_ratelimit_config_t c;

        own_ratelimit_config(o, &c);
        c.name = own_name(a, s->name, c.name, buf, sizeof(buf));
        if (c.clock == NULL) {
            c.clock = a->clock;
        }
        rc = pf_ratelimit_new(&c, &s->ratelimit);
        if (rc != 0) {
            pf__agent_error(a, "state '%s': bad rate limit config", s->name);
            return rc;
        }
        s->ratelimit_owned = true;
    }
    return 0;
}

/* Get-or-create the object of kind called name in reg. *created: this
 * call made it (it was not there when looked for), so a failed add_state
 * takes it out again. */
static int
shared_get(pf_agent_t *a, const pf_state_opts_t *o, pf_registry_t *reg,
           pf_registry_kind_t kind, const char *name, void **out, bool *created)
{
    int rc = pf_registry_find(reg, kind, name, out);

    *created = false;
    if (rc != PF_ENOTFOUND) {
        return rc;
    }
    switch (kind) {
    case PF_REGISTRY_BREAKER: {
        pf_breaker_config_t c;
        pf_breaker_t *b = NULL;

        rc = pf_registry_get_breaker(reg, name, shared_breaker_cfg(a, o, &c),
                                     &b);
        *out = b;
        break;
    }
    case PF_REGISTRY_BULKHEAD: {
        pf_bulkhead_config_t c;
        pf_bulkhead_t *bh = NULL;

        rc = pf_registry_get_bulkhead(reg, name, shared_bulkhead_cfg(a, o, &c),
                                      &bh);
        *out = bh;
        break;
    }
    default: {
        pf_ratelimit_config_t c;
        pf_ratelimit_t *rl = NULL;

        rc = pf_registry_get_ratelimit(reg, name,
                                       shared_ratelimit_cfg(a, o, &c), &rl);
        *out = rl;
        break;
    }
    }
    *created = rc == 0;
    return rc;
}

/* Take out of reg the object of kind called name, if it is still obj
 * (this add_state made it and is failing). The registry owned it, so it
 * is freed. Definitions are made before the agent runs, so nobody has
 * used the object; a name another thread creates at the very same moment
 * may still be taken for ours: serialise definitions that share a name. */
static void
shared_undo(pf_registry_t *reg, pf_registry_kind_t kind, const char *name,
            void *obj)
{
    void *now = NULL;

    if (pf_registry_find(reg, kind, name, &now) == 0 && now == obj) {
        pf_registry_remove(reg, kind, name, NULL);
    }
}

/* Make or find the state's pattern objects as opts asks: a pointer wins
 * over a name, a name over own_*. Own objects first, shared ones last, so
 * an own config that is bad fails before the registry is touched; if a
 * shared one fails, those this call created in the registry are removed,
 * and the registry is left as it was. */
static int
make_patterns(pf_agent_t *a, pf__state_t *s, const pf_state_opts_t *o)
{
    static const char *const what[3] = {"breaker", "bulkhead", "rate limiter"};
    static const pf_registry_kind_t kinds[3] = {
        PF_REGISTRY_BREAKER, PF_REGISTRY_BULKHEAD, PF_REGISTRY_RATELIMIT};
    const char *names[3];
    void *objs[3] = {NULL, NULL, NULL};
    bool created[3] = {false, false, false};
    pf_registry_t *reg = o->registry;
    int rc = 0;
    int k;

    names[0] = o->breaker != NULL ? NULL : o->breaker_name;
    names[1] = o->bulkhead != NULL ? NULL : o->bulkhead_name;
    names[2] = o->ratelimit != NULL ? NULL : o->ratelimit_name;
    if ((o->breaker_name != NULL && o->breaker_name[0] == '\0') ||
        (o->bulkhead_name != NULL && o->bulkhead_name[0] == '\0') ||
        (o->ratelimit_name != NULL && o->ratelimit_name[0] == '\0')) {
        pf__agent_error(a, "state '%s': empty shared object name", s->name);
        return PF_EINVAL;
    }
    s->breaker = o->breaker;
    s->bulkhead = o->bulkhead;
    s->ratelimit = o->ratelimit;
    rc = make_own(a, s, o);
    if (rc != 0) {
        return rc;
    }
    if (reg == NULL &&
        (names[0] != NULL || names[1] != NULL || names[2] != NULL)) {
        reg = pf_registry_default();
    }
    for (k = 0; k < 3 && rc == 0; k++) {
        if (names[k] == NULL) {
            continue;
        }
        rc = shared_get(a, o, reg, kinds[k], names[k], &objs[k], &created[k]);
        if (rc != 0) {
            pf__agent_error(a, "state '%s': no %s '%s' in the registry",
                            s->name, what[k], names[k]);
        }
    }
    if (rc != 0) {
        for (k = 0; k < 3; k++) {
            if (created[k]) {
                shared_undo(reg, kinds[k], names[k], objs[k]);
            }
        }
        return rc;
    }
    if (names[0] != NULL) {
        s->breaker = objs[0];
    }
    if (names[1] != NULL) {
        s->bulkhead = objs[1];
    }
    if (names[2] != NULL) {
        s->ratelimit = objs[2];
    }
    return 0;
}

int
pf__state_copy_retry(pf_agent_t *a, pf__state_t *s, const pf_state_opts_t *o)
{
    const pf_backoff_t *backoff;

    if (o->retry == NULL) {
        pf_retry_policy_init(&s->retry);
        s->retry.max_retries = o->max_retries;
        backoff = o->backoff;
    } else {
        s->retry = *o->retry;
        backoff = o->retry->backoff;
        s->retry.retry_on = NULL;
        if (o->retry->retry_on_len > 0 && o->retry->retry_on != NULL) {
            s->retry_on = pf__calloc(o->retry->retry_on_len, sizeof(int));
            if (s->retry_on == NULL) {
                return PF_ENOMEM;
            }
            memcpy(s->retry_on, o->retry->retry_on,
                   o->retry->retry_on_len * sizeof(int));
            s->retry.retry_on = s->retry_on;
        } else if (o->retry->retry_on_len > 0) {
            s->retry.retry_on = o->retry->retry_on; /* NULL: invalid */
        }
    }
    s->backoff = pf__malloc(sizeof(*s->backoff));
    if (s->backoff == NULL) {
        return PF_ENOMEM;
    }
    if (backoff != NULL) {
        *s->backoff = *backoff;
    } else {
        pf_backoff_init(s->backoff);
    }
    s->retry.backoff = s->backoff;
    /* The run has its own deadline and cancellation, and the executor's
     * clock measures delays. */
    s->retry.deadline = pf_deadline_none();
    s->retry.token = NULL;
    s->retry.clock = a->clock;
    if (pf_retry_policy_validate(&s->retry) != 0) {
        pf__agent_error(a, "state '%s': bad retry policy or backoff", s->name);
        return PF_EINVAL;
    }
    s->retry_eager = s->retry.budget != NULL || s->retry.max_elapsed > 0.0;
    /* A backoff with no jitter, or whose delays are all 0, draws nothing:
     * a fixed seed then spares pf_retry_start a fresh seed per failure
     * (which reads the clock and the process id). */
    if (s->retry.seed == 0 && (s->backoff->jitter == PF_JITTER_NONE ||
                               s->backoff->max_delay == 0.0)) {
        s->retry.seed = 1;
    }
    return 0;
}

int
pf__state_read_opts(pf_agent_t *a, pf__state_t *s, const pf_state_opts_t *o)
{
    const pf_leak_resources_t *resources;
    int64_t ns;

    if ((unsigned)o->priority >= PF_PRIORITY_COUNT) {
        pf__agent_error(a, "state '%s': unknown priority", s->name);
        return PF_EINVAL;
    }
    if (pf__secs_to_ns(o->timeout, &ns) != 0) {
        pf__agent_error(a, "state '%s': bad timeout", s->name);
        return PF_EINVAL;
    }
    resources = o->resources != NULL ? o->resources : &g_default_resources;
    if (!resources_ok(resources)) {
        pf__agent_error(a, "state '%s': bad resource amounts", s->name);
        return PF_EINVAL;
    }
    if (o->fallback_state != NULL &&
        (o->fallback_state[0] == '\0' ||
         strcmp(o->fallback_state, s->name) == 0)) {
        pf__agent_error(a, "state '%s': bad fallback state", s->name);
        return PF_EINVAL;
    }
    s->prio = (unsigned)o->priority;
    s->timeout_ns = ns == INT64_MAX ? 0 : ns; /* infinite = none */
    s->entry = o->entry;
    s->dead_letter = o->dead_letter;
    s->fallback = o->fallback;
    s->fallback_arg = o->fallback_arg;
    s->fallback_on_failure = o->fallback_on_failure;
    s->fallback_state = PF__NONE;
    s->resources = *resources;
    s->leak = o->leak_detection;
    return 0;
}

int
pf__state_attach(pf_agent_t *a, pf__state_t *s, const pf_state_opts_t *o)
{
    int rc = make_patterns(a, s, o);

    if (rc != 0) {
        return rc;
    }
    /* The state's own fallback or fallback state wins over its breaker's:
     * then the breaker's is never run. */
    if (s->fallback == NULL && s->fallback_state_name == NULL) {
        s->breaker_fallback = pf_breaker_fallback(s->breaker);
    }
    return 0;
}

void
pf__state_detach(pf__state_t *s)
{
    if (s->breaker_owned) {
        pf_breaker_free(s->breaker);
    }
    if (s->bulkhead_owned) {
        pf_bulkhead_free(s->bulkhead);
    }
    if (s->ratelimit_owned) {
        pf_ratelimit_free(s->ratelimit);
    }
    pf__free(s->retry_on);
    pf__free(s->backoff);
}

/* ---- introspection ------------------------------------------------------- */

static const pf__state_t *
state_named(const pf_agent_t *a, const char *name)
{
    uint32_t i;

    if (a == NULL || name == NULL) {
        return NULL;
    }
    i = pf__agent_find(a, name);
    return i == PF__NONE ? NULL : &a->states[i];
}

pf_breaker_t *
pf_agent_state_breaker(const pf_agent_t *a, const char *name)
{
    const pf__state_t *s = state_named(a, name);

    return s == NULL ? NULL : s->breaker;
}

pf_bulkhead_t *
pf_agent_state_bulkhead(const pf_agent_t *a, const char *name)
{
    const pf__state_t *s = state_named(a, name);

    return s == NULL ? NULL : s->bulkhead;
}

pf_ratelimit_t *
pf_agent_state_ratelimit(const pf_agent_t *a, const char *name)
{
    const pf__state_t *s = state_named(a, name);

    return s == NULL ? NULL : s->ratelimit;
}
