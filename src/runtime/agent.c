/* Agents: the definition of states and its validation.
 *
 * pf_agent_add_state copies everything a state needs (names, arrays, the
 * retry policy) and makes the state's own breaker, bulkhead and rate
 * limiter, so a bad option fails there, naming the state. Names are found
 * through a small open-addressing hash table (state index + 1 per slot).
 *
 * pf_agent_validate resolves names to indices and freezes the agent: the
 * dependencies of each state (distinct), its declared goto targets and
 * fallback state, the reverse edges (dependents, stored for all states in
 * one array), a topological order (Kahn's algorithm; a state left over is
 * on a cycle) and the entry states of a run. After that the definition is
 * read-only and runs read it without locks (the frozen flag is published
 * with release order, read with acquire). */
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "puffinflow/agent.h"
#include "puffinflow/error.h"

#include "agent_impl.h"
#include "mem.h"
#include "timeutil.h"

/* ---- defaults and profiles ----------------------------------------------- */

void
pf_agent_config_init(pf_agent_config_t *cfg)
{
    if (cfg == NULL) {
        return;
    }
    memset(cfg, 0, sizeof(*cfg));
    cfg->name = "agent";
    cfg->executor = NULL;
    cfg->mode = PF_EXEC_PARALLEL;
    cfg->run_timeout = 0.0;
    cfg->timings = true;
}

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

/* ---- names --------------------------------------------------------------- */

static uint32_t
hash_name(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */

    for (; *s != '\0'; s++) {
        h = (h ^ (unsigned char)*s) * 16777619u;
    }
    return h;
}

uint32_t
pf__agent_find(const pf_agent_t *a, const char *name)
{
    uint32_t h;
    size_t mask;
    size_t i;

    if (a->hcap == 0) {
        return PF__NONE;
    }
    h = hash_name(name);
    mask = a->hcap - 1;
    for (i = h & mask; a->htab[i] != 0; i = (i + 1) & mask) {
        const pf__state_t *s = &a->states[a->htab[i] - 1];

        if (s->hash == h && strcmp(s->name, name) == 0) {
            return a->htab[i] - 1;
        }
    }
    return PF__NONE;
}

/* Make the table hold n names at most half full. */
static int
htab_reserve(pf_agent_t *a, size_t n)
{
    size_t cap = a->hcap == 0 ? 16 : a->hcap;
    uint32_t *t;
    size_t i;

    if (n * 2 <= a->hcap) {
        return 0;
    }
    while (n * 2 > cap) {
        cap *= 2;
    }
    t = pf__calloc(cap, sizeof(*t));
    if (t == NULL) {
        return PF_ENOMEM;
    }
    for (i = 0; i < a->nstates; i++) {
        size_t j = a->states[i].hash & (cap - 1);

        while (t[j] != 0) {
            j = (j + 1) & (cap - 1);
        }
        t[j] = (uint32_t)i + 1;
    }
    pf__free(a->htab);
    a->htab = t;
    a->hcap = cap;
    return 0;
}

static void
set_error(pf_agent_t *a, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(a->errbuf, sizeof(a->errbuf), fmt, ap);
    va_end(ap);
}

/* ---- agent lifetime ------------------------------------------------------ */

int
pf_agent_new_with(const pf_agent_config_t *cfg, pf_agent_t **out)
{
    pf_agent_t *a;
    int64_t ns;

    if (cfg == NULL || out == NULL || cfg->name == NULL ||
        cfg->name[0] == '\0' ||
        (cfg->mode != PF_EXEC_PARALLEL && cfg->mode != PF_EXEC_SEQUENTIAL) ||
        pf__secs_to_ns(cfg->run_timeout, &ns) != 0) {
        return PF_EINVAL;
    }
    a = pf__calloc(1, sizeof(*a));
    if (a == NULL) {
        return PF_ENOMEM;
    }
    a->name = pf__strdup(cfg->name);
    if (a->name == NULL) {
        pf__free(a);
        return PF_ENOMEM;
    }
    if (pthread_mutex_init(&a->lock, NULL) != 0) {
        pf__free(a->name);
        pf__free(a);
        return PF_ESYSTEM;
    }
    a->cfg = *cfg;
    a->cfg.name = a->name;
    a->clock = pf_executor_clock(cfg->executor); /* system when NULL */
    atomic_init(&a->frozen, false);
    atomic_init(&a->closing, false);
    atomic_init(&a->refs, 1);
    *out = a;
    return 0;
}

int
pf_agent_new(const char *name, pf_agent_t **out)
{
    pf_agent_config_t cfg;

    pf_agent_config_init(&cfg);
    cfg.name = name;
    return pf_agent_new_with(&cfg, out);
}

static void
free_names(char **names, uint32_t n)
{
    uint32_t i;

    if (names == NULL) {
        return;
    }
    for (i = 0; i < n; i++) {
        pf__free(names[i]);
    }
    pf__free(names);
}

static void
state_destroy(pf__state_t *s)
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
    free_names(s->dep_names, s->ndep_names);
    free_names(s->next_names, s->nnext_names);
    pf__free(s->deps);
    pf__free(s->next);
    pf__free(s->retry_on);
    pf__free(s->backoff);
    pf__free(s->fallback_state_name);
    pf__free(s->name);
}

/* Free what validate built. */
static void
unfreeze(pf_agent_t *a)
{
    size_t i;

    for (i = 0; i < a->nstates; i++) {
        pf__free(a->states[i].deps);
        pf__free(a->states[i].next);
        a->states[i].deps = NULL;
        a->states[i].next = NULL;
        a->states[i].ndeps = 0;
        a->states[i].nnext = 0;
        a->states[i].dependents = NULL;
        a->states[i].ndependents = 0;
    }
    pf__free(a->dependents);
    pf__free(a->topo);
    pf__free(a->entries);
    a->dependents = NULL;
    a->topo = NULL;
    a->entries = NULL;
    a->nentries = 0;
}

/* The last reference is gone: free the definition. */
static void
agent_destroy(pf_agent_t *a)
{
    size_t i;

    unfreeze(a);
    for (i = 0; i < a->nstates; i++) {
        state_destroy(&a->states[i]);
    }
    pf__free(a->states);
    pf__free(a->htab);
    pthread_mutex_destroy(&a->lock);
    pf__free(a->name);
    pf__free(a);
}

void
pf__agent_unref(pf_agent_t *a)
{
    /* acq_rel: the last owner sees what the others wrote. */
    if (atomic_fetch_sub_explicit(&a->refs, 1, memory_order_acq_rel) == 1) {
        agent_destroy(a);
    }
}

void
pf__agent_drain_cache(pf_agent_t *a)
{
    size_t i;

    for (i = 0; i < PF__RUN_CACHE; i++) {
        pf__run_t *r =
            atomic_exchange_explicit(&a->cache[i], NULL, memory_order_acquire);

        if (r != NULL) {
            pf__run_destroy(r);
        }
    }
}

void
pf_agent_free(pf_agent_t *a)
{
    if (a == NULL) {
        return;
    }
    /* seq_cst, paired with run_release: a run object put in the cache
     * after the drain below sees the flag and takes itself out again. */
    atomic_store_explicit(&a->closing, true, memory_order_seq_cst);
    pf__agent_drain_cache(a);
    pf__agent_unref(a);
}

/* ---- adding states ------------------------------------------------------- */

/* Copy a list of n state names; each must be a non-empty string, and (when
 * self is not NULL) not self. */
static int
copy_names(pf_agent_t *a, const char *state, const char *what,
           const char *const *names, size_t n, bool allow_self, char ***out)
{
    char **copy;
    size_t i;

    *out = NULL;
    if (n == 0) {
        return 0;
    }
    if (names == NULL || n > UINT32_MAX / 2) {
        set_error(a, "state '%s': %s list is NULL", state, what);
        return PF_EINVAL;
    }
    for (i = 0; i < n; i++) {
        if (names[i] == NULL || names[i][0] == '\0') {
            set_error(a, "state '%s': %s entry %zu is empty", state, what, i);
            return PF_EINVAL;
        }
        if (!allow_self && strcmp(names[i], state) == 0) {
            set_error(a, "state '%s' names itself in %s", state, what);
            return PF_EINVAL;
        }
    }
    copy = pf__calloc(n, sizeof(*copy));
    if (copy == NULL) {
        return PF_ENOMEM;
    }
    for (i = 0; i < n; i++) {
        copy[i] = pf__strdup(names[i]);
        if (copy[i] == NULL) {
            free_names(copy, (uint32_t)n);
            return PF_ENOMEM;
        }
    }
    *out = copy;
    return 0;
}

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
            set_error(a, "state '%s': bad breaker config", s->name);
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
            set_error(a, "state '%s': bad bulkhead config", s->name);
            return rc;
        }
        s->bulkhead_owned = true;
    }
    if (o->ratelimit == NULL && o->ratelimit_name == NULL &&
        o->own_ratelimit) {
        pf_ratelimit_config_t c;

        own_ratelimit_config(o, &c);
        c.name = own_name(a, s->name, c.name, buf, sizeof(buf));
        if (c.clock == NULL) {
            c.clock = a->clock;
        }
        rc = pf_ratelimit_new(&c, &s->ratelimit);
        if (rc != 0) {
            set_error(a, "state '%s': bad rate limit config", s->name);
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
           pf_registry_kind_t kind, const char *name, void **out,
           bool *created)
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

        rc = pf_registry_get_bulkhead(reg, name,
                                      shared_bulkhead_cfg(a, o, &c), &bh);
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
    static const char *const what[3] = {"breaker", "bulkhead",
                                        "rate limiter"};
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
        set_error(a, "state '%s': empty shared object name", s->name);
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
            set_error(a, "state '%s': no %s '%s' in the registry", s->name,
                      what[k], names[k]);
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

/* Copy the retry policy: the state's own fields, or the given policy;
 * and its backoff, on the heap so that it stays put when the state array
 * grows. */
static int
copy_retry(pf_agent_t *a, pf__state_t *s, const pf_state_opts_t *o)
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
        set_error(a, "state '%s': bad retry policy or backoff", s->name);
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

/* Check the plain fields of opts, filling s. */
static int
check_opts(pf_agent_t *a, pf__state_t *s, const pf_state_opts_t *o)
{
    const pf_leak_resources_t *resources;
    int64_t ns;

    if ((unsigned)o->priority >= PF_PRIORITY_COUNT) {
        set_error(a, "state '%s': unknown priority", s->name);
        return PF_EINVAL;
    }
    if (pf__secs_to_ns(o->timeout, &ns) != 0) {
        set_error(a, "state '%s': bad timeout", s->name);
        return PF_EINVAL;
    }
    resources = o->resources != NULL ? o->resources : &g_default_resources;
    if (!resources_ok(resources)) {
        set_error(a, "state '%s': bad resource amounts", s->name);
        return PF_EINVAL;
    }
    if (o->fallback_state != NULL &&
        (o->fallback_state[0] == '\0' ||
         strcmp(o->fallback_state, s->name) == 0)) {
        set_error(a, "state '%s': bad fallback state", s->name);
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
pf_agent_add_state(pf_agent_t *a, const char *name, pf_state_fn fn, void *arg,
                   const pf_state_opts_t *opts)
{
    pf_state_opts_t defaults;
    pf__state_t s;
    int rc;

    if (a == NULL) {
        return PF_EINVAL;
    }
    a->errbuf[0] = '\0';
    if (name == NULL || name[0] == '\0' || fn == NULL) {
        set_error(a, "a state needs a name and a function");
        return PF_EINVAL;
    }
    if (atomic_load_explicit(&a->frozen, memory_order_acquire)) {
        set_error(a, "state '%s' added after the agent was validated", name);
        return PF_ESTATE;
    }
    if (pf__agent_find(a, name) != PF__NONE) {
        set_error(a, "duplicate state name '%s'", name);
        return PF_EINVAL;
    }
    if (a->nstates >= UINT32_MAX / 4) {
        return PF_ENOMEM;
    }
    if (opts == NULL) {
        pf_state_opts_init(&defaults);
        opts = &defaults;
    }
    memset(&s, 0, sizeof(s));
    s.fn = fn;
    s.arg = arg;
    s.name = pf__strdup(name);
    if (s.name == NULL) {
        return PF_ENOMEM;
    }
    s.hash = hash_name(name);
    rc = check_opts(a, &s, opts);
    if (rc == 0) {
        rc = copy_names(a, name, "depends_on", opts->depends_on,
                        opts->depends_on_len, false, &s.dep_names);
        s.ndep_names = s.dep_names == NULL ? 0 : (uint32_t)opts->depends_on_len;
    }
    if (rc == 0) {
        rc = copy_names(a, name, "next", opts->next, opts->next_len, true,
                        &s.next_names);
        s.nnext_names = s.next_names == NULL ? 0 : (uint32_t)opts->next_len;
    }
    if (rc == 0 && opts->fallback_state != NULL) {
        s.fallback_state_name = pf__strdup(opts->fallback_state);
        rc = s.fallback_state_name == NULL ? PF_ENOMEM : 0;
    }
    if (rc == 0) {
        rc = copy_retry(a, &s, opts);
    }
    if (rc == 0) {
        rc = pf__grow((void **)&a->states, &a->cap, a->nstates + 1,
                      sizeof(*a->states));
    }
    if (rc == 0) {
        rc = htab_reserve(a, a->nstates + 1);
    }
    if (rc == 0) {
        rc = make_patterns(a, &s, opts); /* last: the rest cannot fail */
    }
    if (rc != 0) {
        state_destroy(&s);
        return rc;
    }
    /* The state's own fallback or fallback state wins over its breaker's:
     * then the breaker's is never run. */
    if (s.fallback == NULL && s.fallback_state_name == NULL) {
        s.breaker_fallback = pf_breaker_fallback(s.breaker);
    }
    a->states[a->nstates] = s;
    {
        size_t j = s.hash & (a->hcap - 1);

        while (a->htab[j] != 0) {
            j = (j + 1) & (a->hcap - 1);
        }
        a->htab[j] = (uint32_t)a->nstates + 1;
    }
    a->nstates++;
    return 0;
}

/* ---- validation ---------------------------------------------------------- */

/* Resolve names into a fresh array of distinct indices. */
static int
resolve(pf_agent_t *a, const pf__state_t *s, char **names, uint32_t n,
        const char *what, uint32_t **out, uint32_t *nout)
{
    uint32_t *idx;
    uint32_t k = 0;
    uint32_t i;

    *out = NULL;
    *nout = 0;
    if (n == 0) {
        return 0;
    }
    idx = pf__calloc(n, sizeof(*idx));
    if (idx == NULL) {
        return PF_ENOMEM;
    }
    for (i = 0; i < n; i++) {
        uint32_t t = pf__agent_find(a, names[i]);
        uint32_t j;

        if (t == PF__NONE) {
            set_error(a, "state '%s' %s unknown state '%s'", s->name, what,
                      names[i]);
            pf__free(idx);
            return PF_EINVAL;
        }
        for (j = 0; j < k && idx[j] != t; j++) {
        }
        if (j == k) {
            idx[k++] = t;
        }
    }
    *out = idx;
    *nout = k;
    return 0;
}

/* Dependents (reverse edges) in one CSR array, and a topological order. */
static int
build_graph(pf_agent_t *a)
{
    size_t n = a->nstates;
    size_t edges = 0;
    uint32_t *indeg;
    uint32_t *fill;
    size_t head = 0;
    size_t tail = 0;
    size_t i;

    for (i = 0; i < n; i++) {
        edges += a->states[i].ndeps;
    }
    a->dependents = pf__calloc(edges, sizeof(uint32_t));
    a->topo = pf__calloc(n, sizeof(uint32_t));
    indeg = pf__calloc(n, sizeof(uint32_t));
    fill = pf__calloc(n, sizeof(uint32_t));
    if (a->dependents == NULL || a->topo == NULL || indeg == NULL ||
        fill == NULL) {
        pf__free(indeg);
        pf__free(fill);
        return PF_ENOMEM;
    }
    for (i = 0; i < n; i++) {
        uint32_t j;

        for (j = 0; j < a->states[i].ndeps; j++) {
            a->states[a->states[i].deps[j]].ndependents++;
        }
        indeg[i] = a->states[i].ndeps;
    }
    edges = 0;
    for (i = 0; i < n; i++) {
        a->states[i].dependents = a->dependents + edges;
        edges += a->states[i].ndependents;
    }
    for (i = 0; i < n; i++) {
        uint32_t j;

        for (j = 0; j < a->states[i].ndeps; j++) {
            uint32_t d = a->states[i].deps[j];

            a->states[d].dependents[fill[d]++] = (uint32_t)i;
        }
        if (indeg[i] == 0) {
            a->topo[tail++] = (uint32_t)i;
        }
    }
    while (head < tail) {
        const pf__state_t *s = &a->states[a->topo[head++]];
        uint32_t j;

        for (j = 0; j < s->ndependents; j++) {
            if (--indeg[s->dependents[j]] == 0) {
                a->topo[tail++] = s->dependents[j];
            }
        }
    }
    pf__free(fill);
    if (tail < n) {
        for (i = 0; i < n && indeg[i] == 0; i++) {
        }
        set_error(a, "dependency cycle through state '%s'", a->states[i].name);
        pf__free(indeg);
        return PF_EINVAL;
    }
    pf__free(indeg);
    return 0;
}

static int
pick_entries(pf_agent_t *a)
{
    size_t i;

    a->entries = pf__calloc(a->nstates, sizeof(uint32_t));
    if (a->entries == NULL) {
        return PF_ENOMEM;
    }
    for (i = 0; i < a->nstates; i++) {
        const pf__state_t *s = &a->states[i];
        bool entry = a->cfg.mode == PF_EXEC_PARALLEL ? s->ndeps == 0
                                                     : i == 0 || s->entry;

        if (entry && s->ndeps != 0) {
            set_error(a, "entry state '%s' has dependencies", s->name);
            return PF_EINVAL;
        }
        if (entry) {
            a->entries[a->nentries++] = (uint32_t)i;
        }
    }
    return 0;
}

static int
compile(pf_agent_t *a)
{
    size_t i;
    int rc;

    for (i = 0; i < a->nstates; i++) {
        pf__state_t *s = &a->states[i];

        rc = resolve(a, s, s->dep_names, s->ndep_names, "depends on", &s->deps,
                     &s->ndeps);
        if (rc == 0) {
            rc = resolve(a, s, s->next_names, s->nnext_names, "may go to",
                         &s->next, &s->nnext);
        }
        if (rc == 0 && s->fallback_state_name != NULL) {
            s->fallback_state = pf__agent_find(a, s->fallback_state_name);
            if (s->fallback_state == PF__NONE) {
                set_error(a, "state '%s' falls back to unknown state '%s'",
                          s->name, s->fallback_state_name);
                rc = PF_EINVAL;
            } else if (a->states[s->fallback_state].ndep_names != 0) {
                set_error(a, "fallback state '%s' of '%s' has dependencies",
                          s->fallback_state_name, s->name);
                rc = PF_EINVAL;
            }
        }
        if (rc != 0) {
            return rc;
        }
    }
    rc = build_graph(a);
    if (rc == 0) {
        rc = pick_entries(a);
    }
    return rc;
}

int
pf_agent_validate(pf_agent_t *a)
{
    pf_executor_t *ex;
    int rc = 0;

    if (a == NULL) {
        return PF_EINVAL;
    }
    if (atomic_load_explicit(&a->frozen, memory_order_acquire)) {
        return 0;
    }
    pthread_mutex_lock(&a->lock);
    if (atomic_load_explicit(&a->frozen, memory_order_relaxed)) {
        pthread_mutex_unlock(&a->lock);
        return 0;
    }
    a->errbuf[0] = '\0';
    ex = a->cfg.executor;
    if (ex == NULL) {
        rc = pf_executor_default(&ex);
        if (rc != 0) {
            set_error(a, "no default executor: %s", pf_strerror(rc));
        }
    }
    if (rc == 0) {
        rc = compile(a);
        if (rc != 0) {
            unfreeze(a); /* so a fixed definition can be validated again */
        }
    }
    if (rc == 0) {
        a->ex = ex;
        a->clock = pf_executor_clock(ex);
        a->run_bytes = sizeof(pf__run_t) + a->nstates * sizeof(pf__slot_t);
        atomic_store_explicit(&a->frozen, true, memory_order_release);
    }
    pthread_mutex_unlock(&a->lock);
    return rc;
}

const char *
pf_agent_last_error(const pf_agent_t *a)
{
    return a == NULL ? "" : a->errbuf;
}

/* ---- introspection ------------------------------------------------------- */

const char *
pf_agent_name(const pf_agent_t *a)
{
    return a == NULL ? NULL : a->name;
}

size_t
pf_agent_state_count(const pf_agent_t *a)
{
    return a == NULL ? 0 : a->nstates;
}

int
pf_agent_state_index(const pf_agent_t *a, const char *name)
{
    uint32_t i;

    if (a == NULL || name == NULL) {
        return PF_EINVAL;
    }
    i = pf__agent_find(a, name);
    return i == PF__NONE ? PF_ENOTFOUND : (int)i;
}

const char *
pf_agent_state_name(const pf_agent_t *a, size_t i)
{
    return a == NULL || i >= a->nstates ? NULL : a->states[i].name;
}

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

void
pf_agent_metrics(pf_agent_t *a, pf_agent_metrics_t *out)
{
    uint64_t started;
    uint64_t finished;

    if (a == NULL || out == NULL) {
        return;
    }
    memset(out, 0, sizeof(*out));
    out->states = a->nstates;
    /* Relaxed: independent counters, a snapshot may be a run apart. Read
     * finished first so active never goes below zero. */
    finished = atomic_load_explicit(&a->runs_finished, memory_order_relaxed);
    started = atomic_load_explicit(&a->runs_started, memory_order_relaxed);
    out->runs_started = started;
    out->runs_finished = finished;
    out->runs_active = started >= finished ? started - finished : 0;
    out->runs_failed =
        atomic_load_explicit(&a->runs_failed, memory_order_relaxed);
    out->states_completed =
        atomic_load_explicit(&a->states_completed, memory_order_relaxed);
    out->states_failed =
        atomic_load_explicit(&a->states_failed, memory_order_relaxed);
    out->retries = atomic_load_explicit(&a->retries, memory_order_relaxed);
    out->rejections =
        atomic_load_explicit(&a->rejections, memory_order_relaxed);
    out->timeouts = atomic_load_explicit(&a->timeouts, memory_order_relaxed);
    out->fallbacks = atomic_load_explicit(&a->fallbacks, memory_order_relaxed);
    out->dead_letters =
        atomic_load_explicit(&a->dead_letters, memory_order_relaxed);
}
