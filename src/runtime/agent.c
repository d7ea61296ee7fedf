/* Agents: the definition of states and its validation.
 *
 * pf_agent_add_state copies everything a state needs (names, arrays) and
 * has attach.c read its options, copy its retry policy and make or find
 * its breaker, bulkhead and rate limiter, so a bad option fails there,
 * naming the state. Names are found through a small open-addressing hash
 * table (state index + 1 per slot).
 *
 * pf_agent_validate resolves names to indices and freezes the agent: the
 * dependencies of each state (distinct), its declared goto targets and
 * fallback state, the reverse edges (dependents, stored for all states in
 * one array), a topological order (Kahn's algorithm; a state left over is
 * on a cycle) and the entry states of a run. After that the definition is
 * read-only and runs read it without locks (the frozen flag is published
 * with release order, read with acquire).
 *
 * An agent knows nothing of runs: run.c keeps its cache of run objects in
 * the agent and its run counters, and pf_agent_free, which must empty
 * that cache, is there too. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "puffinflow/agent.h"
#include "puffinflow/error.h"

#include "agent_impl.h"
#include "attach_impl.h"
#include "mem.h"
#include "timeutil.h"

/* ---- defaults ------------------------------------------------------------ */

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

/* ---- agent lifetime ------------------------------------------------------ */

int
pf_agent_new_ex(const pf_agent_config_t *cfg, pf_agent_t **out)
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
    return pf_agent_new_ex(&cfg, out);
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
    pf__state_detach(s);
    free_names(s->dep_names, s->ndep_names);
    free_names(s->next_names, s->nnext_names);
    pf__free(s->deps);
    pf__free(s->next);
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
        pf__agent_error(a, "state '%s': %s list is NULL", state, what);
        return PF_EINVAL;
    }
    for (i = 0; i < n; i++) {
        if (names[i] == NULL || names[i][0] == '\0') {
            pf__agent_error(a, "state '%s': %s entry %zu is empty", state, what,
                            i);
            return PF_EINVAL;
        }
        if (!allow_self && strcmp(names[i], state) == 0) {
            pf__agent_error(a, "state '%s' names itself in %s", state, what);
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
        pf__agent_error(a, "a state needs a name and a function");
        return PF_EINVAL;
    }
    if (atomic_load_explicit(&a->frozen, memory_order_acquire)) {
        pf__agent_error(a, "state '%s' added after the agent was validated",
                        name);
        return PF_ESTATE;
    }
    if (pf__agent_find(a, name) != PF__NONE) {
        pf__agent_error(a, "duplicate state name '%s'", name);
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
    rc = pf__state_read_opts(a, &s, opts);
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
        rc = pf__state_copy_retry(a, &s, opts);
    }
    if (rc == 0) {
        rc = pf__grow((void **)&a->states, &a->cap, a->nstates + 1,
                      sizeof(*a->states));
    }
    if (rc == 0) {
        rc = htab_reserve(a, a->nstates + 1);
    }
    if (rc == 0) {
        rc = pf__state_attach(a, &s, opts); /* last: the rest cannot fail */
    }
    if (rc != 0) {
        state_destroy(&s);
        return rc;
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
            pf__agent_error(a, "state '%s' %s unknown state '%s'", s->name,
                            what, names[i]);
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
        pf__agent_error(a, "dependency cycle through state '%s'",
                        a->states[i].name);
        pf__free(indeg);
        return PF_EINVAL;
    }
    pf__free(indeg);
    return 0;
}

/* The states a run starts with, highest priority first (in the order
 * added among equals: an insertion sort, stable), so a blocking run drives
 * the most urgent one itself and queues the rest in that order. */
static int
pick_entries(pf_agent_t *a)
{
    size_t i;
    size_t k;

    a->entries = pf__calloc(a->nstates, sizeof(uint32_t));
    if (a->entries == NULL) {
        return PF_ENOMEM;
    }
    for (i = 0; i < a->nstates; i++) {
        const pf__state_t *s = &a->states[i];
        bool entry = a->cfg.mode == PF_EXEC_PARALLEL ? s->ndeps == 0
                                                     : i == 0 || s->entry;

        if (entry && s->ndeps != 0) {
            pf__agent_error(a, "entry state '%s' has dependencies", s->name);
            return PF_EINVAL;
        }
        if (!entry) {
            continue;
        }
        for (k = a->nentries;
             k > 0 && a->states[a->entries[k - 1]].prio < s->prio; k--) {
            a->entries[k] = a->entries[k - 1];
        }
        a->entries[k] = (uint32_t)i;
        a->nentries++;
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
                pf__agent_error(a,
                                "state '%s' falls back to unknown state '%s'",
                                s->name, s->fallback_state_name);
                rc = PF_EINVAL;
            } else if (a->states[s->fallback_state].ndep_names != 0) {
                pf__agent_error(a,
                                "fallback state '%s' of '%s' has dependencies",
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
            pf__agent_error(a, "no default executor: %s", pf_strerror(rc));
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
