/* String buffer and the JSON / Prometheus escaping built on it. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "puffinflow/error.h"

#include "mem.h"
#include "strbuf.h"

static bool
reserve(pf__sb_t *sb, size_t extra)
{
    size_t need;

    if (sb->failed) {
        return false;
    }
    need = sb->len + extra + 1;
    if (need <= sb->cap) {
        return true;
    }
    if (pf__grow((void **)&sb->buf, &sb->cap, need < 64 ? 64 : need, 1) !=
        0) {
        sb->failed = true;
        return false;
    }
    return true;
}

void
pf__sb_append_n(pf__sb_t *sb, const char *s, size_t n)
{
    if (!reserve(sb, n)) {
        return;
    }
    memcpy(sb->buf + sb->len, s, n);
    sb->len += n;
    sb->buf[sb->len] = '\0';
}

void
pf__sb_append(pf__sb_t *sb, const char *s)
{
    pf__sb_append_n(sb, s, strlen(s));
}

void
pf__sb_vappendf(pf__sb_t *sb, const char *fmt, va_list ap)
{
    va_list again;
    int n;

    va_copy(again, ap);
    n = vsnprintf(NULL, 0, fmt, ap);
    if (n >= 0 && reserve(sb, (size_t)n)) {
        vsnprintf(sb->buf + sb->len, (size_t)n + 1, fmt, again);
        sb->len += (size_t)n;
    }
    va_end(again);
}

void
pf__sb_appendf(pf__sb_t *sb, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    pf__sb_vappendf(sb, fmt, ap);
    va_end(ap);
}

void
pf__sb_release(pf__sb_t *sb)
{
    pf__free(sb->buf);
    sb->buf = NULL;
    sb->len = 0;
    sb->cap = 0;
}

int
pf__sb_finish(pf__sb_t *sb, char **out)
{
    if (!reserve(sb, 0)) {
        pf__sb_release(sb);
        return PF_ENOMEM;
    }
    sb->buf[sb->len] = '\0';
    *out = sb->buf;
    sb->buf = NULL;
    sb->len = 0;
    sb->cap = 0;
    return 0;
}

int
pf__sb_copy_out(pf__sb_t *sb, char *buf, size_t len, size_t *needed)
{
    int rc = 0;

    if (sb->failed) {
        rc = PF_ENOMEM;
    } else if (sb->len + 1 > len) {
        if (needed != NULL) {
            *needed = sb->len + 1;
        }
        rc = PF_ERANGE;
    } else {
        if (sb->len > 0) {
            memcpy(buf, sb->buf, sb->len);
        }
        buf[sb->len] = '\0';
    }
    pf__sb_release(sb);
    return rc;
}

void
pf__sb_json_str(pf__sb_t *sb, const char *s)
{
    const char *run;

    if (s == NULL) {
        pf__sb_append(sb, "null");
        return;
    }
    pf__sb_append_n(sb, "\"", 1);
    /* Copy unescaped runs whole; escape one byte at a time. */
    for (run = s; *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;
        const char *esc = NULL;
        char hex[8];

        switch (ch) {
        case '"':
            esc = "\\\"";
            break;
        case '\\':
            esc = "\\\\";
            break;
        case '\n':
            esc = "\\n";
            break;
        case '\r':
            esc = "\\r";
            break;
        case '\t':
            esc = "\\t";
            break;
        default:
            if (ch < 0x20) {
                snprintf(hex, sizeof(hex), "\\u%04x", ch);
                esc = hex;
            }
        }
        if (esc != NULL) {
            pf__sb_append_n(sb, run, (size_t)(s - run));
            pf__sb_append(sb, esc);
            run = s + 1;
        }
    }
    pf__sb_append_n(sb, run, (size_t)(s - run));
    pf__sb_append_n(sb, "\"", 1);
}

void
pf__sb_json_num(pf__sb_t *sb, double v)
{
    if (isnan(v) || isinf(v)) {
        pf__sb_append(sb, "null");
        return;
    }
    pf__sb_appendf(sb, "%.17g", v);
}

void
pf__sb_json_int(pf__sb_t *sb, int64_t v)
{
    pf__sb_appendf(sb, "%lld", (long long)v);
}

void
pf__sb_json_bool(pf__sb_t *sb, bool v)
{
    pf__sb_append(sb, v ? "true" : "false");
}

void
pf__sb_json_key(pf__sb_t *sb, bool *first, const char *key)
{
    if (!*first) {
        pf__sb_append_n(sb, ",", 1);
    }
    *first = false;
    pf__sb_json_str(sb, key);
    pf__sb_append_n(sb, ":", 1);
}

void
pf__sb_json_member_int(pf__sb_t *sb, bool *first, const char *key, int64_t v)
{
    pf__sb_json_key(sb, first, key);
    pf__sb_json_int(sb, v);
}

void
pf__sb_json_member_num(pf__sb_t *sb, bool *first, const char *key, double v)
{
    pf__sb_json_key(sb, first, key);
    pf__sb_json_num(sb, v);
}

void
pf__sb_json_member_str(pf__sb_t *sb, bool *first, const char *key,
                       const char *v)
{
    pf__sb_json_key(sb, first, key);
    pf__sb_json_str(sb, v);
}

void
pf__sb_json_member_bool(pf__sb_t *sb, bool *first, const char *key, bool v)
{
    pf__sb_json_key(sb, first, key);
    pf__sb_json_bool(sb, v);
}

void
pf__sb_prom_label(pf__sb_t *sb, const char *s)
{
    const char *run = s;

    for (; *s != '\0'; s++) {
        const char *esc = NULL;

        if (*s == '\\') {
            esc = "\\\\";
        } else if (*s == '"') {
            esc = "\\\"";
        } else if (*s == '\n') {
            esc = "\\n";
        }
        if (esc != NULL) {
            pf__sb_append_n(sb, run, (size_t)(s - run));
            pf__sb_append(sb, esc);
            run = s + 1;
        }
    }
    pf__sb_append_n(sb, run, (size_t)(s - run));
}
