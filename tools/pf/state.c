/* pf breaker|bulkhead|limiter list|show|reset [NAME] [--state-dir DIR]:
 * the shared breakers, bulkheads and rate limiters kept for pf run
 * (docs/pf.md).
 *
 * A segment's settings are in its header, in a layout private to the
 * library, and a shared object opens only with the same settings. So pf
 * run writes them next to the segment, in pf-<kind>.NAME.conf, each time
 * it has opened one; show and reset read them back and open the object
 * through the public API. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "puffinflow/breaker.h"
#include "puffinflow/bulkhead.h"
#include "puffinflow/error.h"
#include "puffinflow/ratelimit.h"
#include "puffinflow/shared.h"

#include "pf.h"

static int
state_usage(const char *kind, FILE *out)
{
    fprintf(out,
            "usage: pf %s list [--state-dir DIR]\n"
            "       pf %s show NAME [--state-dir DIR]\n"
            "       pf %s reset NAME [--forget] [--state-dir DIR]\n"
            "  list    the %ss kept for pf run in the state folder\n"
            "  show    its settings and state\n"
            "  reset   %s\n"
            "  --forget  remove its files (%s)\n",
            kind, kind, kind, kind,
            strcmp(kind, "breaker") == 0
                ? "close it for every process (its files stay)"
                : strcmp(kind, "limiter") == 0
                      ? "remove its files: the next pf run starts with a "
                        "full bucket"
                      : "remove its files: the next pf run starts afresh",
            strcmp(kind, "breaker") == 0 ? "the next pf run starts afresh"
                                         : "the same as reset");
    return out == stdout ? 0 : PF_TOOL_EXIT_USAGE;
}

/* The settings file of kind NAME: "key value" lines. */
static void
conf_path(char *buf, size_t len, const char *dir, const char *kind,
          const char *name)
{
    int n = snprintf(buf, len, "%s/pf-%s.%s.conf", dir, kind, name);

    if (n < 0 || (size_t)n >= len) {
        buf[0] = '\0'; /* opens nothing */
    }
}

int
pf_tool_state_save(const char *dir, const char *kind, const char *name,
                   const char *text)
{
    char path[PATH_MAX + 128];
    char tmp[PATH_MAX + 160];
    FILE *f;
    int ok;
    int n;

    conf_path(path, sizeof path, dir, kind, name);
    n = snprintf(tmp, sizeof tmp, "%s.%ld", path, (long)getpid());
    if (path[0] == '\0' || n < 0 || (size_t)n >= sizeof tmp) {
        return -1;
    }
    f = fopen(tmp, "w");
    if (f == NULL) {
        return -1;
    }
    ok = fputs(text, f) >= 0;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* Read key's number from the settings file; false when missing. */
static bool
conf_get(const char *path, const char *key, double *out)
{
    FILE *f = fopen(path, "r");
    char line[128];
    size_t n = strlen(key);
    bool found = false;

    if (f == NULL) {
        return false;
    }
    while (fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, key, n) == 0 && line[n] == ' ') {
            char *end;

            *out = strtod(line + n + 1, &end);
            found = end != line + n + 1;
        }
    }
    fclose(f);
    return found;
}

/* The segment of kind NAME, for the shared config of its object. */
static void
shared_init(pf_shared_config_t *sc, char *seg, size_t len, const char *dir,
            const char *kind, const char *name)
{
    snprintf(seg, len, "%s.%s", kind, name);
    pf_shared_config_init(sc);
    sc->name = seg;
    sc->dir = dir;
}

int
pf_tool_open_breaker(const char *dir, const char *name,
                     unsigned failure_threshold, unsigned success_threshold,
                     double recovery_timeout, pf_breaker_t **out)
{
    pf_shared_config_t sc;
    pf_breaker_config_t cfg;
    char seg[80];

    shared_init(&sc, seg, sizeof seg, dir, "breaker", name);
    pf_breaker_config_init(&cfg);
    cfg.name = name;
    cfg.failure_threshold = failure_threshold;
    cfg.success_threshold = success_threshold;
    cfg.recovery_timeout = recovery_timeout;
    cfg.max_recovery_timeout = recovery_timeout;
    cfg.timeout = 0; /* pf run's --timeout ends slow attempts; they count */
    cfg.clock = pf_tool_clock();
    cfg.shared = &sc;
    return pf_breaker_new(&cfg, out);
}

int
pf_tool_open_bulkhead(const char *dir, const char *name,
                      unsigned max_concurrent, pf_bulkhead_t **out)
{
    pf_shared_config_t sc;
    pf_bulkhead_config_t cfg;
    char seg[80];

    shared_init(&sc, seg, sizeof seg, dir, "bulkhead", name);
    pf_bulkhead_config_init(&cfg);
    cfg.name = name;
    cfg.max_concurrent_calls = max_concurrent;
    cfg.max_queue_size = 0;
    cfg.shared = &sc;
    return pf_bulkhead_new(&cfg, out);
}

int
pf_tool_open_limiter(const char *dir, const char *name, double per_second,
                     unsigned burst, pf_ratelimit_t **out)
{
    pf_shared_config_t sc;
    pf_ratelimit_config_t cfg;
    char seg[80];

    shared_init(&sc, seg, sizeof seg, dir, "limiter", name);
    pf_ratelimit_config_init(&cfg);
    cfg.name = name;
    cfg.rate = per_second;
    cfg.burst = burst;
    cfg.clock = pf_tool_clock();
    cfg.shared = &sc;
    return pf_ratelimit_new(&cfg, out);
}

/* Open breaker NAME with the settings its settings file gives. */
static int
open_breaker(const char *dir, const char *name, pf_breaker_t **out)
{
    char path[PATH_MAX + 128];
    double ft;
    double st;
    double rt;

    conf_path(path, sizeof path, dir, "breaker", name);
    if (!conf_get(path, "failure_threshold", &ft) ||
        !conf_get(path, "success_threshold", &st) ||
        !conf_get(path, "recovery_timeout", &rt)) {
        return PF_ENOTFOUND;
    }
    return pf_tool_open_breaker(dir, name, (unsigned)ft, (unsigned)st, rt,
                                out);
}

static void print_in_use(const char *dir, const char *name,
                         const char *fmt);

static void
list(const char *dir, const char *kind)
{
    char prefix[32];
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t n;

    snprintf(prefix, sizeof prefix, "puffinflow-%s.", kind);
    n = strlen(prefix);
    if (d == NULL) {
        return;
    }
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);

        if (strncmp(e->d_name, prefix, n) == 0 && len > n + 4 &&
            strcmp(e->d_name + len - 4, ".shm") == 0) {
            printf("%.*s", (int)(len - n - 4), e->d_name + n);
            if (strcmp(kind, "bulkhead") == 0) {
                char name[128];

                snprintf(name, sizeof name, "%.*s", (int)(len - n - 4),
                         e->d_name + n);
                print_in_use(dir, name, "  %u of %.0f in use");
            }
            putchar('\n');
        }
    }
    closedir(d);
}

/* Remove the segment and settings file of kind NAME and say so; 1 (told
 * why) when there was no segment or it could not be removed. */
static int
remove_files(const char *dir, const char *kind, const char *name)
{
    pf_shared_config_t sc;
    char seg[80];
    char path[PATH_MAX + 128];
    int rc;

    shared_init(&sc, seg, sizeof seg, dir, kind, name);
    rc = pf_shared_remove(&sc);
    conf_path(path, sizeof path, dir, kind, name);
    unlink(path);
    if (rc == PF_ENOTFOUND) {
        fprintf(stderr, "pf %s: no %s '%s' in %s\n", kind, kind, name, dir);
        return 1;
    }
    if (rc != 0) {
        fprintf(stderr, "pf %s: cannot remove '%s': %s\n", kind, name,
                pf_strerror(rc));
        return 1;
    }
    printf("%s %s: removed\n", kind, name);
    return 0;
}

static bool
exists(const char *dir, const char *kind, const char *name)
{
    char path[PATH_MAX + 128];

    int n = snprintf(path, sizeof path, "%s/puffinflow-%s.%s.shm", dir, kind,
                     name);

    return n > 0 && (size_t)n < sizeof path && access(path, F_OK) == 0;
}

/* exists(), telling when not. */
static bool
found(const char *dir, const char *kind, const char *name)
{
    if (!exists(dir, kind, name)) {
        fprintf(stderr, "pf %s: no %s '%s' in %s\n", kind, kind, name, dir);
        return false;
    }
    return true;
}

static int
breaker_cmd(const char *verb, const char *dir, const char *name, bool forget)
{
    pf_breaker_t *b;
    pf_breaker_metrics_t m;
    char path[PATH_MAX + 128];
    double v;
    int rc;

    if (forget) {
        return remove_files(dir, "breaker", name);
    }
    rc = open_breaker(dir, name, &b);
    if (rc != 0) {
        if (found(dir, "breaker", name)) {
            fprintf(stderr, "pf breaker: %s: cannot open it (%s): its "
                            "settings file is missing or out of date; "
                            "pf breaker reset %s --forget removes it\n",
                    name, rc == PF_ENOTFOUND ? "no settings"
                                             : pf_strerror(rc), name);
        }
        return 1;
    }
    if (strcmp(verb, "reset") == 0) {
        pf_breaker_reset(b);
        printf("breaker %s: closed\n", name);
        pf_breaker_free(b);
        return 0;
    }
    pf_breaker_metrics(b, &m);
    conf_path(path, sizeof path, dir, "breaker", name);
    printf("breaker %s\n  state              %s\n", name,
           pf_breaker_state_name(pf_breaker_state(b)));
    if (conf_get(path, "failure_threshold", &v)) {
        printf("  failure threshold  %.0f\n", v);
    }
    if (conf_get(path, "success_threshold", &v)) {
        printf("  success threshold  %.0f\n", v);
    }
    if (conf_get(path, "recovery_timeout", &v)) {
        printf("  recovery timeout   %g s\n", v);
    }
    printf("  file               %s/puffinflow-breaker.%s.shm\n", dir, name);
    pf_breaker_free(b);
    return 0;
}

/* Open bulkhead NAME with the limit its settings file gives (*limit),
 * to read its slots in use across processes. */
static int
open_bulkhead(const char *dir, const char *name, pf_bulkhead_t **out,
              double *limit)
{
    char path[PATH_MAX + 128];

    conf_path(path, sizeof path, dir, "bulkhead", name);
    if (!conf_get(path, "max_concurrent", limit) ||
        !(*limit >= 1 && *limit <= PF_BULKHEAD_MAX_LIMIT)) {
        return PF_ENOTFOUND;
    }
    return pf_tool_open_bulkhead(dir, name, (unsigned)*limit, out);
}

/* Print with fmt the slots of bulkhead NAME held by live processes (%u)
 * and its limit (%.0f); nothing when it cannot be opened. */
static void
print_in_use(const char *dir, const char *name, const char *fmt)
{
    pf_bulkhead_t *bh;
    double limit;
    unsigned n;

    if (open_bulkhead(dir, name, &bh, &limit) != 0) {
        return;
    }
    if (pf_bulkhead_shared_in_use(bh, &n) == 0) {
        printf(fmt, n, limit);
    }
    pf_bulkhead_free(bh);
}

static int
bulkhead_cmd(const char *verb, const char *dir, const char *name)
{
    char path[PATH_MAX + 128];
    double v;

    if (!found(dir, "bulkhead", name)) {
        return 1;
    }
    if (strcmp(verb, "reset") == 0) {
        return remove_files(dir, "bulkhead", name);
    }
    conf_path(path, sizeof path, dir, "bulkhead", name);
    printf("bulkhead %s\n", name);
    if (conf_get(path, "max_concurrent", &v)) {
        printf("  max concurrent     %.0f\n", v);
    }
    print_in_use(dir, name, "  in use             %u of %.0f\n");
    printf("  file               %s/puffinflow-bulkhead.%s.shm\n", dir, name);
    return 0;
}

static int
limiter_cmd(const char *verb, const char *dir, const char *name)
{
    char path[PATH_MAX + 128];
    double rate;
    double burst;
    pf_ratelimit_t *rl;
    pf_ratelimit_metrics_t m;
    int rc;

    if (!found(dir, "limiter", name)) {
        return 1;
    }
    if (strcmp(verb, "reset") == 0) {
        return remove_files(dir, "limiter", name);
    }
    conf_path(path, sizeof path, dir, "limiter", name);
    if (!conf_get(path, "per_second", &rate) ||
        !conf_get(path, "burst", &burst) || !(burst >= 1 && burst < 4e9)) {
        fprintf(stderr, "pf limiter: %s: cannot open it (no settings): "
                        "pf limiter reset %s removes it\n", name, name);
        return 1;
    }
    rc = pf_tool_open_limiter(dir, name, rate, (unsigned)burst, &rl);
    if (rc != 0) {
        fprintf(stderr, "pf limiter: %s: cannot open it (%s): pf limiter "
                        "reset %s removes it\n", name, pf_strerror(rc),
                name);
        return 1;
    }
    pf_ratelimit_metrics(rl, &m);
    printf("limiter %s\n", name);
    printf("  per second         %g\n", rate);
    printf("  burst              %.0f\n", burst);
    printf("  tokens now         %u\n", m.available);
    printf("  next token in      %.3f s\n", pf_ratelimit_time_until(rl, 1));
    printf("  file               %s/puffinflow-limiter.%s.shm\n", dir, name);
    pf_ratelimit_free(rl);
    return 0;
}

int
pf_tool_state(int argc, char **argv)
{
    const char *kind = argv[0];
    const char *verb = NULL;
    const char *name = NULL;
    const char *dir_arg = NULL;
    bool forget = false;
    char dir[PATH_MAX];
    char cmd[16];
    int i;

    snprintf(cmd, sizeof cmd, "%s", kind);
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            return state_usage(kind, stdout);
        } else if (strcmp(argv[i], "--state-dir") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "pf %s: --state-dir: needs a value\n", kind);
                return PF_TOOL_EXIT_USAGE;
            }
            dir_arg = argv[++i];
        } else if (strncmp(argv[i], "--state-dir=", 12) == 0) {
            dir_arg = argv[i] + 12;
        } else if (strcmp(argv[i], "--forget") == 0) {
            forget = true;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "pf %s: unknown option '%s'\n", kind, argv[i]);
            return state_usage(kind, stderr);
        } else if (verb == NULL) {
            verb = argv[i];
        } else if (name == NULL) {
            name = argv[i];
        } else {
            fprintf(stderr, "pf %s: unexpected '%s'\n", kind, argv[i]);
            return state_usage(kind, stderr);
        }
    }
    if (verb == NULL) {
        fprintf(stderr, "pf %s: list, show or reset?\n", kind);
        return state_usage(kind, stderr);
    }
    if (strcmp(verb, "list") != 0 && strcmp(verb, "show") != 0 &&
        strcmp(verb, "reset") != 0) {
        fprintf(stderr, "pf %s: unknown action '%s' (list, show or reset)\n",
                kind, verb);
        return PF_TOOL_EXIT_USAGE;
    }
    if (strcmp(verb, "list") == 0 ? name != NULL : name == NULL) {
        fprintf(stderr, "pf %s %s: %s\n", kind, verb,
                name != NULL ? "takes no NAME" : "needs a NAME");
        return PF_TOOL_EXIT_USAGE;
    }
    if (forget && strcmp(verb, "reset") != 0) {
        fprintf(stderr, "pf %s: --forget goes with reset\n", kind);
        return PF_TOOL_EXIT_USAGE;
    }
    if (name != NULL && !pf_tool_parse_name(cmd, "NAME", name)) {
        return PF_TOOL_EXIT_USAGE;
    }
    if (!pf_tool_state_dir(cmd, dir_arg, dir, sizeof dir)) {
        return PF_TOOL_EXIT_USAGE;
    }
    if (strcmp(verb, "list") == 0) {
        list(dir, kind);
        return 0;
    }
    if (strcmp(kind, "breaker") == 0) {
        return breaker_cmd(verb, dir, name, forget);
    }
    return strcmp(kind, "bulkhead") == 0 ? bulkhead_cmd(verb, dir, name)
                                         : limiter_cmd(verb, dir, name);
}
