/* A strict checker of Prometheus text exposition format 0.0.4, for the
 * metrics tests (tests/test_metrics*.c and the HTTP endpoint's tests).
 * Header-only: each test program includes it once.
 *
 * Stricter than Prometheus itself, on purpose: it accepts exactly what our
 * writer means to produce, so any drift fails a test. It checks
 *  - every line ends with "\n", no empty lines, no comments other than
 *    "# HELP name text" and "# TYPE name type";
 *  - metric and label names match [a-zA-Z_:][a-zA-Z0-9_:]* and
 *    [a-zA-Z_][a-zA-Z0-9_]* (no reserved "__" label), every metric name
 *    starts with "puffinflow_";
 *  - HELP text escapes only \\ and \n; label values only \\, \" and \n;
 *    both are valid UTF-8;
 *  - every family has exactly one HELP and one TYPE (counter or gauge),
 *    both before its samples, and its samples are contiguous and carry the
 *    family's own name; counters end in _total and are >= 0;
 *  - no two samples of a family have the same label set, no sample
 *    repeats a label name;
 *  - values are NaN, +Inf, -Inf or a decimal float; no timestamps.
 * The parsed samples can then be queried with prom_find().
 *
 * prom_parse_external() runs the same text through the Prometheus
 * project's own parser (tests/prom_parse.py, python3-prometheus-client),
 * so the format is also checked by a reader we did not write. */
#ifndef PF_TESTS_PROM_CHECK_H
#define PF_TESTS_PROM_CHECK_H

#include <ctype.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define PROM_MAX_LABELS 8

typedef struct prom_sample {
    char *name;
    size_t nlabels;
    char *keys[PROM_MAX_LABELS];
    char *values[PROM_MAX_LABELS]; /* unescaped */
    double value;
} prom_sample_t;

typedef struct prom_family {
    char *name;
    char *type;
    char *help; /* unescaped */
    bool has_help;
    bool has_samples;
    bool closed; /* another family's samples came after this one's */
} prom_family_t;

typedef struct prom_doc {
    prom_sample_t *samples;
    size_t nsamples;
    prom_family_t *families;
    size_t nfamilies;
    char error[256]; /* why the check failed */
} prom_doc_t;

static inline void
prom_doc_free(prom_doc_t *d)
{
    size_t i, j;

    for (i = 0; i < d->nsamples; i++) {
        free(d->samples[i].name);
        for (j = 0; j < d->samples[i].nlabels; j++) {
            free(d->samples[i].keys[j]);
            free(d->samples[i].values[j]);
        }
    }
    for (i = 0; i < d->nfamilies; i++) {
        free(d->families[i].name);
        free(d->families[i].type);
        free(d->families[i].help);
    }
    free(d->samples);
    free(d->families);
    memset(d, 0, sizeof(*d));
}

static inline bool
prom_fail(prom_doc_t *d, size_t line, const char *why)
{
    snprintf(d->error, sizeof(d->error), "line %zu: %s", line, why);
    return false;
}

/* Valid UTF-8 of n bytes (RFC 3629: no overlongs, no surrogates). */
static inline bool
prom_utf8_ok(const unsigned char *p, size_t n)
{
    size_t i = 0;

    while (i < n) {
        unsigned c = p[i];
        size_t len;
        unsigned lo = 0x80, hi = 0xbf, k;

        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            len = 2;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            lo = c == 0xe0 ? 0xa0 : 0x80;
            hi = c == 0xed ? 0x9f : 0xbf;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            lo = c == 0xf0 ? 0x90 : 0x80;
            hi = c == 0xf4 ? 0x8f : 0xbf;
        } else {
            return false;
        }
        if (i + len > n || p[i + 1] < lo || p[i + 1] > hi) {
            return false;
        }
        for (k = 2; k < len; k++) {
            if ((p[i + k] & 0xc0) != 0x80) {
                return false;
            }
        }
        i += len;
    }
    return true;
}

static inline char *
prom_strndup(const char *s, size_t n)
{
    char *c = malloc(n + 1);

    if (c != NULL) {
        memcpy(c, s, n);
        c[n] = '\0';
    }
    return c;
}

/* Length of a metric name at s (0 if none). */
static inline size_t
prom_metric_name(const char *s)
{
    size_t n = 0;

    if (!(isalpha((unsigned char)s[0]) || s[0] == '_' || s[0] == ':')) {
        return 0;
    }
    while (isalnum((unsigned char)s[n]) || s[n] == '_' || s[n] == ':') {
        n++;
    }
    return n;
}

static inline size_t
prom_label_name(const char *s)
{
    size_t n = 0;

    if (!(isalpha((unsigned char)s[0]) || s[0] == '_')) {
        return 0;
    }
    while (isalnum((unsigned char)s[n]) || s[n] == '_') {
        n++;
    }
    return n;
}

/* A value: NaN, +Inf, -Inf, or [+-]digits[.digits][e[+-]digits]. */
static inline bool
prom_value(const char *s, size_t n, double *out)
{
    char buf[64];
    size_t i = 0;
    bool digits = false;

    if (n == 0 || n >= sizeof(buf)) {
        return false;
    }
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (strcmp(buf, "NaN") == 0) {
        *out = NAN;
        return true;
    }
    if (strcmp(buf, "+Inf") == 0 || strcmp(buf, "-Inf") == 0) {
        *out = buf[0] == '+' ? INFINITY : -INFINITY;
        return true;
    }
    if (buf[i] == '+' || buf[i] == '-') {
        i++;
    }
    while (isdigit((unsigned char)buf[i])) {
        i++;
        digits = true;
    }
    if (buf[i] == '.') {
        i++;
        while (isdigit((unsigned char)buf[i])) {
            i++;
            digits = true;
        }
    }
    if (!digits) {
        return false;
    }
    if (buf[i] == 'e' || buf[i] == 'E') {
        i++;
        if (buf[i] == '+' || buf[i] == '-') {
            i++;
        }
        if (!isdigit((unsigned char)buf[i])) {
            return false;
        }
        while (isdigit((unsigned char)buf[i])) {
            i++;
        }
    }
    if (buf[i] != '\0') {
        return false;
    }
    *out = strtod(buf, NULL);
    return true;
}

static inline prom_family_t *
prom_family_get(prom_doc_t *d, const char *name, size_t n, bool create)
{
    size_t i;
    prom_family_t *f;

    for (i = 0; i < d->nfamilies; i++) {
        if (strlen(d->families[i].name) == n &&
            memcmp(d->families[i].name, name, n) == 0) {
            return &d->families[i];
        }
    }
    if (!create) {
        return NULL;
    }
    d->families =
        realloc(d->families, (d->nfamilies + 1) * sizeof(*d->families));
    f = &d->families[d->nfamilies++];
    memset(f, 0, sizeof(*f));
    f->name = prom_strndup(name, n);
    return f;
}

/* Unescape a HELP text (escapes: \\ and \n). */
static inline bool
prom_help(const char *s, size_t n, char **out)
{
    char *o = malloc(n + 1);
    size_t i, k = 0;

    for (i = 0; i < n; i++) {
        if (s[i] == '\\') {
            if (i + 1 >= n || (s[i + 1] != '\\' && s[i + 1] != 'n')) {
                free(o);
                return false;
            }
            o[k++] = s[i + 1] == 'n' ? '\n' : '\\';
            i++;
        } else {
            o[k++] = s[i];
        }
    }
    o[k] = '\0';
    *out = o;
    return true;
}

static inline bool
prom_comment(prom_doc_t *d, size_t ln, const char *s, size_t n)
{
    bool help;
    size_t nl;
    const char *name;
    prom_family_t *f;

    if (n >= 7 && memcmp(s, "# HELP ", 7) == 0) {
        help = true;
    } else if (n >= 7 && memcmp(s, "# TYPE ", 7) == 0) {
        help = false;
    } else {
        return prom_fail(d, ln, "comment other than HELP or TYPE");
    }
    name = s + 7;
    nl = prom_metric_name(name);
    if (nl == 0 || 7 + nl >= n || name[nl] != ' ') {
        return prom_fail(d, ln, "bad metric name in HELP/TYPE");
    }
    if (strncmp(name, "puffinflow_", 11) != 0) {
        return prom_fail(d, ln, "metric name without the puffinflow_ prefix");
    }
    f = prom_family_get(d, name, nl, true);
    if (f->has_samples) {
        return prom_fail(d, ln, "HELP/TYPE after the family's samples");
    }
    s = name + nl + 1;
    n -= 7 + nl + 1;
    if (help) {
        if (f->has_help) {
            return prom_fail(d, ln, "second HELP for a family");
        }
        if (!prom_help(s, n, &f->help) ||
            !prom_utf8_ok((const unsigned char *)s, n)) {
            return prom_fail(d, ln, "bad escape or UTF-8 in HELP");
        }
        f->has_help = true;
        return true;
    }
    if (f->type != NULL) {
        return prom_fail(d, ln, "second TYPE for a family");
    }
    f->type = prom_strndup(s, n);
    if (strcmp(f->type, "counter") != 0 && strcmp(f->type, "gauge") != 0) {
        return prom_fail(d, ln, "TYPE not counter or gauge");
    }
    if (strcmp(f->type, "counter") == 0 &&
        (nl < 6 || strncmp(name + nl - 6, "_total", 6) != 0)) {
        return prom_fail(d, ln, "counter name does not end in _total");
    }
    return true;
}

/* Parse one label value starting after its opening quote; *end is set
 * past the closing quote. */
static inline bool
prom_label_value(const char *s, const char *lim, const char **end, char **out)
{
    char *o = malloc((size_t)(lim - s) + 1);
    size_t k = 0;

    while (s < lim && *s != '"') {
        if (*s == '\\') {
            if (s + 1 >= lim || (s[1] != '\\' && s[1] != '"' && s[1] != 'n')) {
                free(o);
                return false;
            }
            o[k++] = s[1] == 'n' ? '\n' : s[1];
            s += 2;
        } else {
            o[k++] = *s++;
        }
    }
    if (s >= lim) {
        free(o);
        return false;
    }
    o[k] = '\0';
    if (!prom_utf8_ok((const unsigned char *)o, k)) {
        free(o);
        return false;
    }
    *end = s + 1;
    *out = o;
    return true;
}

static inline bool
prom_same_labels(const prom_sample_t *a, const prom_sample_t *b)
{
    size_t i, j;

    if (a->nlabels != b->nlabels) {
        return false;
    }
    for (i = 0; i < a->nlabels; i++) {
        bool hit = false;

        for (j = 0; j < b->nlabels; j++) {
            if (strcmp(a->keys[i], b->keys[j]) == 0 &&
                strcmp(a->values[i], b->values[j]) == 0) {
                hit = true;
            }
        }
        if (!hit) {
            return false;
        }
    }
    return true;
}

/* *current is the index of the family whose samples came last
 * (SIZE_MAX for none): an index, as the family array moves when it
 * grows. */
static inline bool
prom_sample_line(prom_doc_t *d, size_t ln, const char *s, size_t n,
                 size_t *current)
{
    const char *lim = s + n;
    const char *p;
    size_t nl = prom_metric_name(s);
    prom_sample_t smp;
    prom_family_t *f;
    size_t i;

    memset(&smp, 0, sizeof(smp));
    if (nl == 0) {
        return prom_fail(d, ln, "bad metric name");
    }
    f = prom_family_get(d, s, nl, false);
    if (f == NULL || f->type == NULL || !f->has_help) {
        return prom_fail(d, ln, "sample without HELP and TYPE before it");
    }
    if (f->closed) {
        return prom_fail(d, ln, "family's samples are not contiguous");
    }
    if (*current != SIZE_MAX && *current != (size_t)(f - d->families)) {
        d->families[*current].closed = true;
    }
    *current = (size_t)(f - d->families);
    f->has_samples = true;
    smp.name = prom_strndup(s, nl);
    p = s + nl;
    if (p < lim && *p == '{') {
        p++;
        while (p < lim && *p != '}') {
            size_t ll = prom_label_name(p);
            char *v;

            if (ll == 0 || (ll >= 2 && p[0] == '_' && p[1] == '_')) {
                goto bad_label;
            }
            if (p + ll + 1 >= lim || p[ll] != '=' || p[ll + 1] != '"') {
                goto bad_label;
            }
            if (smp.nlabels == PROM_MAX_LABELS) {
                goto bad_label;
            }
            smp.keys[smp.nlabels] = prom_strndup(p, ll);
            if (!prom_label_value(p + ll + 2, lim, &p, &v)) {
                smp.nlabels++;
                goto bad_label;
            }
            smp.values[smp.nlabels++] = v;
            for (i = 0; i + 1 < smp.nlabels; i++) {
                if (strcmp(smp.keys[i], smp.keys[smp.nlabels - 1]) == 0) {
                    goto bad_label;
                }
            }
            if (p < lim && *p == ',') {
                p++;
            } else if (p < lim && *p != '}') {
                goto bad_label;
            }
        }
        if (p >= lim) {
            goto bad_label;
        }
        p++;
    }
    if (p >= lim || *p != ' ') {
        goto bad_value;
    }
    p++;
    if (memchr(p, ' ', (size_t)(lim - p)) != NULL) {
        goto bad_value; /* a timestamp, or stray spaces */
    }
    if (!prom_value(p, (size_t)(lim - p), &smp.value)) {
        goto bad_value;
    }
    if (strcmp(f->type, "counter") == 0 &&
        (isnan(smp.value) || smp.value < 0)) {
        prom_fail(d, ln, "negative or NaN counter");
        goto out;
    }
    for (i = 0; i < d->nsamples; i++) {
        if (strcmp(d->samples[i].name, smp.name) == 0 &&
            prom_same_labels(&d->samples[i], &smp)) {
            prom_fail(d, ln, "duplicate label set");
            goto out;
        }
    }
    d->samples = realloc(d->samples, (d->nsamples + 1) * sizeof(smp));
    d->samples[d->nsamples++] = smp;
    return true;
bad_label:
    prom_fail(d, ln, "bad label");
    goto out;
bad_value:
    prom_fail(d, ln, "bad value");
out:
    free(smp.name);
    for (i = 0; i < smp.nlabels; i++) {
        free(smp.keys[i]);
        free(smp.values[i]);
    }
    return false;
}

/* Check text; fill *d (free it with prom_doc_free even on failure).
 * Returns true when the text passes, else false with d->error set. */
static inline bool
prom_check(const char *text, prom_doc_t *d)
{
    size_t current = SIZE_MAX;
    const char *s = text;
    size_t ln = 0;
    size_t i;

    memset(d, 0, sizeof(*d));
    while (*s != '\0') {
        const char *eol = strchr(s, '\n');
        size_t n;
        bool ok;

        ln++;
        if (eol == NULL) {
            return prom_fail(d, ln, "last line not terminated by \\n");
        }
        n = (size_t)(eol - s);
        if (n == 0) {
            return prom_fail(d, ln, "empty line");
        }
        if (s[0] == '#') {
            ok = prom_comment(d, ln, s, n);
        } else {
            ok = prom_sample_line(d, ln, s, n, &current);
        }
        if (!ok) {
            return false;
        }
        s = eol + 1;
    }
    for (i = 0; i < d->nfamilies; i++) {
        if (!d->families[i].has_samples) {
            return prom_fail(d, ln, "a family with no samples");
        }
    }
    return true;
}

/* The sample of metric name whose labels include every (key, value) pair
 * of the NULL-terminated list kv (key, value, key, value, ..., NULL), or
 * NULL. The first match wins. */
static const prom_sample_t *
prom_find(const prom_doc_t *d, const char *name, const char *const *kv)
{
    size_t i, j, k;

    for (i = 0; i < d->nsamples; i++) {
        const prom_sample_t *smp = &d->samples[i];
        bool all = true;

        if (strcmp(smp->name, name) != 0) {
            continue;
        }
        for (k = 0; kv != NULL && kv[k] != NULL; k += 2) {
            bool hit = false;

            for (j = 0; j < smp->nlabels; j++) {
                if (strcmp(smp->keys[j], kv[k]) == 0 &&
                    strcmp(smp->values[j], kv[k + 1]) == 0) {
                    hit = true;
                }
            }
            all = all && hit;
        }
        if (all) {
            return smp;
        }
    }
    return NULL;
}

/* How many samples metric name has. */
static inline size_t
prom_count(const prom_doc_t *d, const char *name)
{
    size_t i, n = 0;

    for (i = 0; i < d->nsamples; i++) {
        n += strcmp(d->samples[i].name, name) == 0;
    }
    return n;
}

/* ---- the Prometheus project's own parser ------------------------------ */

/* prom_parse_external's answer when the parser is not there to ask. */
#define PROM_PARSE_SKIPPED 77

/* Run text through the command in the environment variable PF_PROM_PARSE
 * (tests/prom_parse.py under /usr/bin/python3; CTest sets it for every
 * test program). Returns 0 when the parser accepts the text;
 * PROM_PARSE_SKIPPED when PF_PROM_PARSE is unset (the program runs outside
 * CTest) or the parser's module is missing and not required; anything else
 * when the text is rejected, or the module is missing and required
 * (PF_PROM_PARSE_REQUIRED=1, set by a PF_BUILD_TESTS=ON configure such as
 * scripts/test.sh's). The parser's reasons go to stderr. */
static inline int
prom_parse_external(const char *text)
{
    const char *parser = getenv("PF_PROM_PARSE");
    char path[] = "/tmp/pf_prom_XXXXXX";
    char cmd[4096];
    size_t len = strlen(text);
    int fd;
    int status;

    if (parser == NULL || parser[0] == '\0') {
        return PROM_PARSE_SKIPPED;
    }
    fd = mkstemp(path);
    if (fd < 0) {
        return -1;
    }
    if (write(fd, text, len) != (ssize_t)len) {
        close(fd);
        unlink(path);
        return -1;
    }
    close(fd);
    snprintf(cmd, sizeof(cmd), "%s < '%s'", parser, path);
    status = system(cmd);
    unlink(path);
    if (status == -1 || !WIFEXITED(status)) {
        return -1;
    }
    return WEXITSTATUS(status);
}

#endif /* PF_TESTS_PROM_CHECK_H */
