/* The config file of pf health: see healthconf.h for the format. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "healthconf.h"
#include "pf.h"

/* The words of one line, each a NUL-terminated string in a buffer of
 * the line's size (unquoting only shortens). */
typedef struct words {
    char buf[PF_HC_MAX_LINE + 1];
    char *w[PF_HC_MAX_ARGS + 16];
    size_t n;
} words_t;

static int
fail(char *err, size_t errlen, int line, const char *fmt, ...)
{
    va_list ap;
    int n = line > 0 ? snprintf(err, errlen, "%d: ", line)
                     : snprintf(err, errlen, " ");

    if (n > 0 && (size_t)n < errlen) {
        va_start(ap, fmt);
        vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* Split line (len bytes, no newline) into words. */
static int
split(const char *line, size_t len, words_t *w, int lineno, char *err,
      size_t errlen)
{
    size_t i = 0;
    char *out = w->buf;

    w->n = 0;
    for (;;) {
        while (i < len && (line[i] == ' ' || line[i] == '\t' ||
                           line[i] == '\r')) {
            i++;
        }
        if (i >= len || line[i] == '#') {
            return 0;
        }
        if (w->n == sizeof w->w / sizeof w->w[0]) {
            return fail(err, errlen, lineno, "too many words (at most %zu)",
                        sizeof w->w / sizeof w->w[0]);
        }
        w->w[w->n++] = out;
        if (line[i] == '"') {
            size_t start = i;

            for (i++;; i++) {
                if (i >= len) {
                    return fail(err, errlen, lineno,
                                "a quote opened at column %zu is not "
                                "closed", start + 1);
                }
                if (line[i] == '"') {
                    i++;
                    break;
                }
                if (line[i] == '\\') {
                    if (i + 1 >= len ||
                        (line[i + 1] != '"' && line[i + 1] != '\\')) {
                        return fail(err, errlen, lineno,
                                    "column %zu: only \\\" and \\\\ are "
                                    "escapes", i + 1);
                    }
                    i++;
                }
                *out++ = line[i];
            }
            if (i < len && line[i] != ' ' && line[i] != '\t' &&
                line[i] != '\r') {
                return fail(err, errlen, lineno,
                            "column %zu: a space must follow a closing "
                            "quote", i + 1);
            }
        } else {
            while (i < len && line[i] != ' ' && line[i] != '\t' &&
                   line[i] != '\r') {
                if (line[i] == '"') {
                    return fail(err, errlen, lineno,
                                "column %zu: a quote inside a word", i + 1);
                }
                *out++ = line[i++];
            }
        }
        *out++ = '\0';
    }
}

static bool
printable(const char *s)
{
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s < 0x20 || *s == 0x7f) {
            return false;
        }
    }
    return true;
}

static bool
good_name(const char *s)
{
    size_t n = strlen(s);
    size_t i;

    if (n == 0 || n > PF_HC_MAX_NAME) {
        return false;
    }
    for (i = 0; i < n; i++) {
        char c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-')) {
            return false;
        }
    }
    return true;
}

static void
free_check(pf_hc_check_t *c)
{
    size_t k;

    free(c->name);
    for (k = 0; k < c->ntags; k++) {
        free(c->tags[k]);
    }
    free(c->tags);
    free(c->host);
    free(c->url);
    if (c->argv != NULL) {
        for (k = 0; k < c->argc; k++) {
            free(c->argv[k]);
        }
        free(c->argv);
    }
    memset(c, 0, sizeof *c);
}

#define NOMEM() fail(err, errlen, line, "out of memory")

/* tags=a,b,c */
static int
parse_tags(pf_hc_check_t *c, const char *v, int line, char *err,
           size_t errlen)
{
    const char *p = v;

    if (c->ntags > 0) {
        return fail(err, errlen, line, "tags given twice");
    }
    c->tags = calloc(PF_HC_MAX_TAGS, sizeof c->tags[0]);
    if (c->tags == NULL) {
        return NOMEM();
    }
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t n = comma != NULL ? (size_t)(comma - p) : strlen(p);
        char tag[PF_HC_MAX_NAME + 1];

        if (n == 0 || n > PF_HC_MAX_NAME) {
            return fail(err, errlen, line, "tags: bad value '%s' (names of "
                        "1..%d characters, comma-separated)", v,
                        PF_HC_MAX_NAME);
        }
        memcpy(tag, p, n);
        tag[n] = '\0';
        if (!good_name(tag)) {
            return fail(err, errlen, line, "tags: bad value '%s' (A-Z a-z "
                        "0-9 . _ - only)", v);
        }
        if (c->ntags == PF_HC_MAX_TAGS) {
            return fail(err, errlen, line, "tags: at most %d",
                        PF_HC_MAX_TAGS);
        }
        c->tags[c->ntags] = strdup(tag);
        if (c->tags[c->ntags] == NULL) {
            return NOMEM();
        }
        c->ntags++;
        if (comma == NULL) {
            return 0;
        }
        p = comma + 1;
    }
}

/* host:port or [v6]:port */
static int
parse_hostport(pf_hc_check_t *c, const char *v, int line, char *err,
               size_t errlen)
{
    const char *colon;
    const char *host = v;
    size_t hlen;
    char *end;
    long port;

    if (v[0] == '[') {
        const char *close = strchr(v, ']');

        if (close == NULL || close[1] != ':') {
            return fail(err, errlen, line, "tcp: bad target '%s' "
                        "(HOST:PORT, [IPV6]:PORT)", v);
        }
        host = v + 1;
        hlen = (size_t)(close - host);
        colon = close + 1;
    } else {
        colon = strrchr(v, ':');
        if (colon == NULL || memchr(v, ':', (size_t)(colon - v)) != NULL) {
            return fail(err, errlen, line, "tcp: bad target '%s' "
                        "(HOST:PORT, [IPV6]:PORT)", v);
        }
        hlen = (size_t)(colon - v);
    }
    if (hlen == 0 || hlen > 253) {
        return fail(err, errlen, line, "tcp: bad target '%s' (the host is "
                    "empty or too long)", v);
    }
    errno = 0;
    port = strtol(colon + 1, &end, 10);
    if (colon[1] < '0' || colon[1] > '9' || *end != '\0' || errno != 0 ||
        port < 1 || port > 65535) {
        return fail(err, errlen, line, "tcp: bad target '%s' (the port must "
                    "be 1..65535)", v);
    }
    c->host = malloc(hlen + 1);
    if (c->host == NULL) {
        return NOMEM();
    }
    memcpy(c->host, host, hlen);
    c->host[hlen] = '\0';
    c->port = (unsigned)port;
    return 0;
}

static int
parse_option(pf_hc_check_t *c, const char *word, int line, char *err,
             size_t errlen)
{
    const char *eq = strchr(word, '=');
    size_t klen = (size_t)(eq - word);
    const char *v = eq + 1;

    if (klen == 7 && strncmp(word, "timeout", 7) == 0) {
        const char *why = pf_tool_duration(v, &c->timeout);

        if (why != NULL) {
            return fail(err, errlen, line, "timeout: bad value '%s' (%s)", v,
                        why);
        }
        if (c->timeout <= 0) {
            return fail(err, errlen, line, "timeout: bad value '%s' (more "
                        "than 0)", v);
        }
        return 0;
    }
    if (klen == 8 && strncmp(word, "critical", 8) == 0) {
        if (strcmp(v, "yes") == 0 || strcmp(v, "true") == 0) {
            c->critical = true;
        } else if (strcmp(v, "no") == 0 || strcmp(v, "false") == 0) {
            c->critical = false;
        } else {
            return fail(err, errlen, line, "critical: bad value '%s' (yes or "
                        "no)", v);
        }
        return 0;
    }
    if (klen == 4 && strncmp(word, "tags", 4) == 0) {
        return parse_tags(c, v, line, err, errlen);
    }
    if (klen == 13 && strncmp(word, "degraded-exit", 13) == 0) {
        char *end;
        long n;

        errno = 0;
        n = strtol(v, &end, 10);
        if (c->kind != PF_HC_COMMAND) {
            return fail(err, errlen, line, "degraded-exit: only for command "
                        "checks");
        }
        if (v[0] < '0' || v[0] > '9' || *end != '\0' || errno != 0 ||
            n < 1 || n > 255) {
            return fail(err, errlen, line, "degraded-exit: bad value '%s' "
                        "(an exit status 1..255)", v);
        }
        c->degraded_exit = (int)n;
        return 0;
    }
    return fail(err, errlen, line, "unknown option '%.*s' (timeout, "
                "critical, tags, degraded-exit)", (int)(klen > 64 ? 64 : klen),
                word);
}

/* One check line, split into w. */
static int
parse_check(words_t *w, pf_hc_check_t *c, int line, char *err, size_t errlen)
{
    const char *kind = w->w[0];
    size_t i;

    memset(c, 0, sizeof *c);
    c->line = line;
    c->timeout = 5.0;
    c->critical = true;
    c->degraded_exit = -1;
    if (strcmp(kind, "tcp") == 0) {
        c->kind = PF_HC_TCP;
    } else if (strcmp(kind, "command") == 0) {
        c->kind = PF_HC_COMMAND;
    } else if (strcmp(kind, "http") == 0) {
        c->kind = PF_HC_HTTP;
    } else {
        return fail(err, errlen, line, "unknown check kind '%.64s' (tcp, "
                    "command or http)", printable(kind) ? kind : "?");
    }
    if (w->n < 2) {
        return fail(err, errlen, line, "%s: needs a NAME and a target", kind);
    }
    if (!good_name(w->w[1])) {
        return fail(err, errlen, line, "bad check name '%.64s' (1..%d "
                    "characters of A-Z a-z 0-9 . _ -)",
                    printable(w->w[1]) ? w->w[1] : "?", PF_HC_MAX_NAME);
    }
    c->name = strdup(w->w[1]);
    if (c->name == NULL) {
        return NOMEM();
    }
    for (i = 2; i < w->n; i++) {
        if (strcmp(w->w[i], "--") == 0) {
            i++;
            break;
        }
        if (strchr(w->w[i], '=') == NULL || w->w[i][0] == '=' ||
            w->w[i][0] == '/' || w->w[i][0] == '.' ||
            (c->kind == PF_HC_HTTP && strchr(w->w[i], ':') != NULL)) {
            break;
        }
        if (parse_option(c, w->w[i], line, err, errlen) != 0) {
            return -1;
        }
    }
    if (i >= w->n) {
        return fail(err, errlen, line, "%s %s: no target (%s)", kind, c->name,
                    c->kind == PF_HC_TCP    ? "HOST:PORT"
                    : c->kind == PF_HC_HTTP ? "a URL"
                                            : "the command and its "
                                              "arguments");
    }
    if (c->kind == PF_HC_COMMAND) {
        size_t k;

        c->argc = w->n - i;
        if (c->argc > PF_HC_MAX_ARGS) {
            return fail(err, errlen, line, "command: at most %d arguments",
                        PF_HC_MAX_ARGS);
        }
        if (w->w[i][0] == '\0') {
            return fail(err, errlen, line, "command: the command is an "
                        "empty string");
        }
        c->argv = calloc(c->argc + 1, sizeof c->argv[0]);
        if (c->argv == NULL) {
            c->argc = 0;
            return NOMEM();
        }
        for (k = 0; k < c->argc; k++) {
            c->argv[k] = strdup(w->w[i + k]);
            if (c->argv[k] == NULL) {
                c->argc = k;
                return NOMEM();
            }
        }
        return 0;
    }
    if (w->n - i > 1) {
        return fail(err, errlen, line, "%s %s: one target, then nothing "
                    "(options go before it)", kind, c->name);
    }
    if (c->kind == PF_HC_TCP) {
        return parse_hostport(c, w->w[i], line, err, errlen);
    }
    if ((strncmp(w->w[i], "http://", 7) != 0 &&
         strncmp(w->w[i], "https://", 8) != 0) ||
        !printable(w->w[i]) || strlen(w->w[i]) < 9) {
        return fail(err, errlen, line, "http: bad URL '%.200s' (http:// or "
                    "https://, no control characters)",
                    printable(w->w[i]) ? w->w[i] : "?");
    }
    c->url = strdup(w->w[i]);
    return c->url == NULL ? NOMEM() : 0;
}

int
pf_hc_parse(const char *text, size_t len, pf_hc_t *out, char *err,
            size_t errlen)
{
    words_t *w;
    size_t pos = 0;
    int line = 0;
    int rc = 0;

    memset(out, 0, sizeof *out);
    if (errlen > 0) {
        err[0] = '\0';
    }
    if (len > PF_HC_MAX_BYTES) {
        return fail(err, errlen, 0, "the file is larger than %d bytes",
                    PF_HC_MAX_BYTES);
    }
    w = malloc(sizeof *w);
    if (w == NULL) {
        return fail(err, errlen, 0, "out of memory");
    }
    while (pos < len) {
        const char *start = text + pos;
        const char *nl = memchr(start, '\n', len - pos);
        size_t n = nl != NULL ? (size_t)(nl - start) : len - pos;
        pf_hc_check_t *c;
        size_t k;

        line++;
        pos += n + (nl != NULL ? 1 : 0);
        if (memchr(start, '\0', n) != NULL) {
            rc = fail(err, errlen, line, "a NUL byte");
            break;
        }
        if (n > PF_HC_MAX_LINE) {
            rc = fail(err, errlen, line, "longer than %d bytes",
                      PF_HC_MAX_LINE);
            break;
        }
        rc = split(start, n, w, line, err, errlen);
        if (rc != 0) {
            break;
        }
        if (w->n == 0) {
            continue;
        }
        if (out->n == PF_HC_MAX_CHECKS) {
            rc = fail(err, errlen, line, "more than %d checks",
                      PF_HC_MAX_CHECKS);
            break;
        }
        if (out->n == 0) {
            out->checks = calloc(PF_HC_MAX_CHECKS, sizeof out->checks[0]);
            if (out->checks == NULL) {
                rc = fail(err, errlen, line, "out of memory");
                break;
            }
        }
        c = &out->checks[out->n];
        rc = parse_check(w, c, line, err, errlen);
        if (rc != 0) {
            free_check(c);
            break;
        }
        for (k = 0; k < out->n; k++) {
            if (strcmp(out->checks[k].name, c->name) == 0) {
                rc = fail(err, errlen, line, "check '%s' is already on line "
                          "%d", c->name, out->checks[k].line);
                break;
            }
        }
        if (rc != 0) {
            free_check(c);
            break;
        }
        out->n++;
    }
    free(w);
    if (rc == 0 && out->n == 0) {
        rc = fail(err, errlen, 0, "no checks (one a line: tcp, command "
                  "or http)");
    }
    if (rc != 0) {
        pf_hc_free(out);
    }
    return rc;
}

void
pf_hc_free(pf_hc_t *hc)
{
    size_t k;

    for (k = 0; k < hc->n; k++) {
        free_check(&hc->checks[k]);
    }
    free(hc->checks);
    hc->checks = NULL;
    hc->n = 0;
}

const char *
pf_hc_kind_name(pf_hc_kind_t kind)
{
    return kind == PF_HC_TCP ? "tcp" : kind == PF_HC_HTTP ? "http" : "command";
}
