/* System-health sampling (sysmon.h). Memory and CPU limits may be set on
 * any ancestor of a process's cgroup, so both walk from the process's own
 * cgroup up to the root: the nearest memory.max to exhaustion is the one
 * that matters, and the smallest cpu.max quota is the CPU the process can
 * get. Every file is read through the procfs.h readers. */
#include <limits.h>
#include <math.h>
#include <string.h>

#include "puffinflow/error.h"

#include "sysmon.h"

#define PATH_LEN 4096

int
pf__sysmon_cgroup(const char *proc_root, const char *cgroup_root,
                  char *root, size_t root_len, char *path, size_t path_len)
{
    int rc = pf__cgroup_path(proc_root, 0, path, path_len);

    if (rc != 0) {
        return rc;
    }
    return pf__cgroup_unified_root(cgroup_root, root, root_len);
}

/* The highest current/max ratio among the levels with a memory.max below
 * total. *found false when no level has one. */
static int
cgroup_memory_ratio(const char *root, char *cg, int64_t total, bool *found,
                    double *ratio, int64_t *used, int64_t *limit)
{
    *found = false;
    do {
        int64_t max;
        int64_t cur;
        int rc = pf__cgroup_memory(root, cg, &max, &cur);

        if (rc == PF_ENOTFOUND) {
            continue; /* the root, or no memory controller here */
        }
        if (rc != 0) {
            return rc;
        }
        if (max > 0 && max < total) {
            double r = (double)cur / (double)max;

            if (!*found || r > *ratio) {
                *ratio = r;
                *used = cur;
                *limit = max;
            }
            *found = true;
        }
    } while (pf__cgroup_parent(cg));
    return 0;
}

static double
clamp_pct(double v)
{
    if (isnan(v) || v < 0.0) {
        return 0.0;
    }
    return v > 100.0 ? 100.0 : v;
}

int
pf__sysmon_memory_percent(const char *proc_root, const char *cgroup_root,
                          double *pct, int64_t *used, int64_t *limit)
{
    char root[PATH_LEN];
    char cg[PATH_LEN];
    int64_t total;
    int64_t avail;
    int64_t u = 0;
    int64_t l = 0;
    double ratio = 0.0;
    bool found = false;
    int rc;

    rc = pf__proc_meminfo(proc_root, &total, &avail);
    if (rc != 0) {
        return rc;
    }
    if (total <= 0) {
        return PF_EFORMAT;
    }
    rc = pf__sysmon_cgroup(proc_root, cgroup_root, root, sizeof(root), cg,
                           sizeof(cg));
    if (rc == 0) {
        rc = cgroup_memory_ratio(root, cg, total, &found, &ratio, &u, &l);
    }
    if (rc != 0 && rc != PF_ENOTFOUND) {
        return rc;
    }
    if (!found) {
        u = total - avail;
        l = total;
        ratio = (double)u / (double)total;
    }
    *pct = clamp_pct(ratio * 100.0);
    if (used != NULL) {
        *used = u;
    }
    if (limit != NULL) {
        *limit = l;
    }
    return 0;
}

int
pf__sysmon_process_memory_percent(const char *proc_root,
                                  const char *cgroup_root, double *pct,
                                  int64_t *rss, int64_t *limit)
{
    pf__proc_status_t st;
    int64_t lim;
    int rc;

    rc = pf__proc_read_status(proc_root, 0, &st);
    if (rc == 0) {
        rc = pf__memory_limit(proc_root, cgroup_root, &lim);
    }
    if (rc != 0) {
        return rc;
    }
    if (lim <= 0) {
        return PF_EFORMAT;
    }
    *pct = clamp_pct((double)st.rss_bytes * 100.0 / (double)lim);
    if (rss != NULL) {
        *rss = st.rss_bytes;
    }
    if (limit != NULL) {
        *limit = lim;
    }
    return 0;
}

/* The smallest quota on the way up from cg under root; -1 for none. */
static int
quota_from(const char *root, char *cg, double *cpus)
{
    *cpus = -1.0;
    do {
        int64_t quota;
        int64_t period;
        int rc = pf__cgroup_cpu_max(root, cg, &quota, &period);

        if (rc == PF_ENOTFOUND) {
            continue;
        }
        if (rc != 0) {
            return rc;
        }
        if (quota > 0 && period > 0) {
            double c = (double)quota / (double)period;

            if (*cpus < 0.0 || c < *cpus) {
                *cpus = c;
            }
        }
    } while (pf__cgroup_parent(cg));
    return 0;
}

/* This process's cgroup v2 (into root and cg, as pf__sysmon_cgroup) and
 * the smallest quota on the way up from it (quota_from). 0 and *cpus = -1
 * when the process has no cgroup v2. */
static int
cgroup_quota(const char *proc_root, const char *cgroup_root,
             char root[PATH_LEN], char cg[PATH_LEN], double *cpus)
{
    char walk[PATH_LEN];
    int rc;

    *cpus = -1.0;
    rc =
        pf__sysmon_cgroup(proc_root, cgroup_root, root, PATH_LEN, cg, PATH_LEN);
    if (rc == PF_ENOTFOUND) {
        return 0;
    }
    if (rc != 0) {
        return rc;
    }
    memcpy(walk, cg, sizeof(walk)); /* quota_from cuts what it walks */
    return quota_from(root, walk, cpus);
}

int
pf__sysmon_cpu_quota(const char *proc_root, const char *cgroup_root,
                     double *cpus)
{
    char root[PATH_LEN];
    char cg[PATH_LEN];

    return cgroup_quota(proc_root, cgroup_root, root, cg, cpus);
}

void
pf__cpu_sampler_init(pf__cpu_sampler_t *s)
{
    memset(s, 0, sizeof(*s));
    s->last_pct = NAN;
}

/* A reading of the cgroup's usage when a quota binds: *use_cgroup false
 * (and nothing read) when there is no quota. */
static int
read_cgroup_cpu(const char *proc_root, const char *cgroup_root,
                bool *use_cgroup, double *cpus, uint64_t *usage_us)
{
    char root[PATH_LEN];
    char cg[PATH_LEN];
    int rc;

    *use_cgroup = false;
    rc = cgroup_quota(proc_root, cgroup_root, root, cg, cpus);
    if (rc != 0 || *cpus <= 0.0) {
        return rc;
    }
    rc = pf__cgroup_cpu_usage(root, cg, usage_us);
    if (rc != 0) {
        return rc;
    }
    *use_cgroup = true;
    return 0;
}

int
pf__cpu_sample(pf__cpu_sampler_t *s, const char *proc_root,
               const char *cgroup_root, int64_t now_ns, double *pct)
{
    pf__cpu_times_t times = {0};
    uint64_t usage = 0;
    double cpus = -1.0;
    bool use_cgroup;
    int rc;

    rc = read_cgroup_cpu(proc_root, cgroup_root, &use_cgroup, &cpus, &usage);
    if (rc != 0) {
        return rc;
    }
    if (!use_cgroup) {
        rc = pf__proc_read_cpu(proc_root, &times);
        if (rc != 0) {
            return rc;
        }
    }
    if (s->have_prev && s->prev_cgroup == use_cgroup && now_ns > s->prev_ns) {
        if (use_cgroup) {
            double used_ns = usage >= s->prev_usage_us
                                 ? (double)(usage - s->prev_usage_us) * 1e3
                                 : 0.0;
            double avail_ns = (double)(now_ns - s->prev_ns) * cpus;

            s->last_pct = clamp_pct(used_ns * 100.0 / avail_ns);
        } else {
            s->last_pct =
                clamp_pct(pf__cpu_busy_fraction(&s->prev_times, &times) *
                          100.0);
        }
    } else if (s->have_prev && s->prev_cgroup != use_cgroup) {
        s->last_pct = NAN; /* the quota came or went: a new baseline */
    }
    if (!s->have_prev || s->prev_cgroup != use_cgroup || now_ns > s->prev_ns) {
        s->have_prev = true;
        s->prev_cgroup = use_cgroup;
        s->prev_usage_us = usage;
        if (!use_cgroup) {
            s->prev_times = times;
        }
        s->prev_ns = now_ns;
    }
    *pct = s->last_pct;
    return 0;
}
