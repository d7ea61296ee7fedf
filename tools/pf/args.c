/* Option values of the pf commands: durations with units, exit-code
 * lists, counts, and the shared-state folder. Each parser returns false
 * after printing "pf <cmd>: OPTION: bad value 'VALUE' (why)" to stderr,
 * so every usage error names the option and the value. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pf.h"

static bool
bad(const char *cmd, const char *opt, const char *val, const char *why)
{
    fprintf(stderr, "pf %s: %s: bad value '%s' (%s)\n", cmd, opt, val, why);
    return false;
}

/* strtod skips spaces and takes "inf", "nan", "+1": values start with a
 * digit or a '.' here. */
static bool
leads_number(const char *s)
{
    return (s[0] >= '0' && s[0] <= '9') || s[0] == '.';
}

const char *
pf_tool_duration(const char *s, double *out)
{
    static const struct {
        const char *unit;
        double scale;
    } units[] = {{"", 1.0},     {"s", 1.0},     {"ms", 1e-3},
                 {"us", 1e-6},  {"m", 60.0},    {"h", 3600.0}};
    char *end;
    double v;
    size_t k;

    errno = 0;
    v = strtod(s, &end);
    if (!leads_number(s) || end == s || errno != 0 || !isfinite(v) ||
        v < 0.0 || strncmp(s, "0x", 2) == 0 || strncmp(s, "0X", 2) == 0) {
        return "a duration: 500ms, 2s, 1.5m, 1h";
    }
    for (k = 0; k < sizeof units / sizeof units[0]; k++) {
        if (strcmp(end, units[k].unit) == 0) {
            v *= units[k].scale;
            if (!isfinite(v) || v > 1e9) {
                return "too long";
            }
            *out = v;
            return NULL;
        }
    }
    return "unknown unit; use ms, s, m or h";
}

bool
pf_tool_parse_duration(const char *cmd, const char *opt, const char *s,
                       double *out)
{
    const char *why = pf_tool_duration(s, out);

    return why == NULL ? true : bad(cmd, opt, s, why);
}

bool
pf_tool_parse_count(const char *cmd, const char *opt, const char *s,
                    long lo, long hi, long *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || errno != 0 || v < lo || v > hi) {
        char why[96];

        snprintf(why, sizeof why, "a whole number from %ld to %ld", lo, hi);
        return bad(cmd, opt, s, why);
    }
    *out = v;
    return true;
}

bool
pf_tool_parse_number(const char *cmd, const char *opt, const char *s,
                     double lo, double hi, double *out)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (!leads_number(s) || end == s || *end != '\0' || errno != 0 ||
        !isfinite(v) || v < lo ||
        v > hi || strncmp(s, "0x", 2) == 0 || strncmp(s, "0X", 2) == 0) {
        char why[96];

        snprintf(why, sizeof why, "a number from %g to %g", lo, hi);
        return bad(cmd, opt, s, why);
    }
    *out = v;
    return true;
}

bool
pf_tool_parse_codes(const char *cmd, const char *opt, const char *s,
                    bool codes[256])
{
    const char *p = s;

    memset(codes, 0, 256 * sizeof codes[0]);
    for (;;) {
        char *end;
        long a;
        long b;

        errno = 0;
        a = strtol(p, &end, 10);
        if (end == p || errno != 0 || a < 0 || a > 255) {
            return bad(cmd, opt, s, "exit codes 0..255: 1,3,5-9");
        }
        b = a;
        p = end;
        if (*p == '-') {
            p++;
            b = strtol(p, &end, 10);
            if (end == p || errno != 0 || b < a || b > 255) {
                return bad(cmd, opt, s, "exit codes 0..255: 1,3,5-9");
            }
            p = end;
        }
        for (; a <= b; a++) {
            codes[a] = true;
        }
        if (*p == '\0') {
            return true;
        }
        if (*p != ',') {
            return bad(cmd, opt, s, "exit codes 0..255: 1,3,5-9");
        }
        p++;
    }
}

bool
pf_tool_parse_name(const char *cmd, const char *opt, const char *s)
{
    size_t n = strlen(s);
    size_t i;

    if (n == 0 || n > PF_TOOL_NAME_MAX || s[0] == '.') {
        return bad(cmd, opt, s, "1..55 characters of A-Z a-z 0-9 . _ -, "
                                "not '.' first");
    }
    for (i = 0; i < n; i++) {
        char c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-')) {
            return bad(cmd, opt, s, "1..55 characters of A-Z a-z 0-9 . _ -, "
                                    "not '.' first");
        }
    }
    return true;
}

bool
pf_tool_state_dir(const char *cmd, const char *arg, char *buf, size_t len)
{
    const char *dir = arg;
    int n;

    if (dir == NULL) {
        dir = getenv("XDG_RUNTIME_DIR");
        if (dir == NULL || dir[0] != '/') {
            dir = "/dev/shm";
        }
    }
    if (dir[0] == '\0') {
        return bad(cmd, "--state-dir", dir, "empty");
    }
    if (dir[0] == '/') {
        n = snprintf(buf, len, "%s", dir);
    } else {
        char cwd[PATH_MAX];

        if (getcwd(cwd, sizeof cwd) == NULL) {
            return bad(cmd, "--state-dir", dir, strerror(errno));
        }
        n = snprintf(buf, len, "%s/%s", cwd, dir);
    }
    if (n < 0 || (size_t)n >= len) {
        return bad(cmd, "--state-dir", dir, "path too long");
    }
    return true;
}
