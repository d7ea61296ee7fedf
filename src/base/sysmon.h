/* System-health sampling shared by the built-in health checks and the
 * degradation manager: memory in use (cgroup-aware) and CPU usage from
 * /proc/stat deltas, or from the cgroup's own usage when a cpu.max quota
 * binds. Built on the procfs.h readers; every function takes the roots it
 * reads under, so tests run it on fixture files. Thread-safe (no shared
 * state) except the CPU sampler, whose caller serialises use of one
 * sampler. */
#ifndef PF_SRC_SYSMON_H
#define PF_SRC_SYSMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "procfs.h"

/* This process's cgroup v2: the hierarchy's root under cgroup_root (the
 * root itself, or its "unified" folder on a hybrid system) into root, and
 * the process's path in it ("/..." from /proc/self/cgroup) into path.
 * PF_ENOTFOUND when the process has no cgroup v2; other procfs errors as
 * they come. */
int pf__sysmon_cgroup(const char *proc_root, const char *cgroup_root,
                      char *root, size_t root_len, char *path,
                      size_t path_len);

/* Memory in use, in percent (0..100): when a memory.max below MemTotal is
 * set on this process's cgroup or an ancestor, the highest
 * memory.current / memory.max among those levels; otherwise the
 * machine's (MemTotal - MemAvailable) / MemTotal. used and limit (may be
 * NULL) get the bytes behind the figure. 0 or a procfs error. */
int pf__sysmon_memory_percent(const char *proc_root, const char *cgroup_root,
                              double *pct, int64_t *used, int64_t *limit);

/* This process's resident set in percent of the memory it may use
 * (pf__memory_limit). */
int pf__sysmon_process_memory_percent(const char *proc_root,
                                      const char *cgroup_root, double *pct,
                                      int64_t *rss, int64_t *limit);

/* The CPUs this process may use by its cgroup's cpu.max: the smallest
 * quota / period on the way up its tree, in CPUs (1.5 = one and a half).
 * 0 and *cpus = -1 when no quota is set (or there is no cgroup v2). */
int pf__sysmon_cpu_quota(const char *proc_root, const char *cgroup_root,
                         double *cpus);

/* The state of a CPU sampler: the previous reading. Zero it to start. */
typedef struct pf__cpu_sampler {
    bool have_prev;
    bool prev_cgroup;          /* the previous reading was a cgroup's */
    uint64_t prev_usage_us;    /* cgroup: cpu.stat usage_usec */
    pf__cpu_times_t prev_times; /* machine: /proc/stat */
    int64_t prev_ns;           /* the caller's clock at that reading */
    double last_pct;           /* NaN until a figure exists */
} pf__cpu_sampler_t;

/* A fresh sampler (no reading yet). */
void pf__cpu_sampler_init(pf__cpu_sampler_t *s);

/* Take a reading at now_ns (the caller's clock) and store in *pct the CPU
 * usage in percent (0..100) since the previous one: with a cpu.max quota,
 * the cgroup's usage_usec delta against quota CPUs over the elapsed time;
 * without one, the machine's busy share of /proc/stat's delta. NaN for the
 * first reading, or the previous figure when no time has passed. Returns 0
 * or a procfs error (the sampler then keeps its previous reading). */
int pf__cpu_sample(pf__cpu_sampler_t *s, const char *proc_root,
                   const char *cgroup_root, int64_t now_ns, double *pct);

#endif /* PF_SRC_SYSMON_H */
