/* String buffer and the JSON / Prometheus escaping built on it, and the
 * locale-free number conversions every writer and parser uses.
 *
 * Locale. printf and strtod follow LC_NUMERIC of the calling thread's
 * locale (the global one unless the thread chose its own). Each conversion
 * here switches the calling thread to a "C" locale object with uselocale
 * and back: the switch only swaps a thread-local pointer, so it costs a
 * few nanoseconds beside the conversion itself, touches no shared state,
 * and leaves every other thread alone (setlocale would not). The object is
 * made once, under pthread_once, and never freed. */
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "puffinflow/error.h"

#include "mem.h"
#include "strbuf.h"

/* ---- locale-free numbers ---------------------------------------------- */

static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;
static locale_t c_locale = (locale_t)0;

static void
c_locale_make(void)
{
    /* glibc and musl hand out their built-in C locale here without
     * allocating, so this does not fail in practice; if it ever did,
     * c_locale stays 0 and conversions use the thread's locale. */
    c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
}

/* Switch the calling thread to the C locale; returns what to restore. */
static locale_t
enter_c(void)
{
    pthread_once(&c_locale_once, c_locale_make);
    return c_locale == (locale_t)0 ? (locale_t)0 : uselocale(c_locale);
}

static void
leave_c(locale_t old)
{
    if (old != (locale_t)0) {
        uselocale(old);
    }
}

int
pf__vsnprintf_c(char *buf, size_t len, const char *fmt, va_list ap)
{
    locale_t old = enter_c();
    int n = vsnprintf(buf, len, fmt, ap);

    leave_c(old);
    return n;
}

int
pf__snprintf_c(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = pf__vsnprintf_c(buf, len, fmt, ap);
    va_end(ap);
    return n;
}

double
pf__strtod_c(const char *s, char **end)
{
    locale_t old = enter_c();
    double v = strtod(s, end);

    leave_c(old);
    return v;
}

void
pf__fmt_double(char buf[PF__NUM_BUF], double v)
{
    locale_t old = enter_c();

    snprintf(buf, PF__NUM_BUF, "%.15g", v);
    if (strtod(buf, NULL) != v) {
        snprintf(buf, PF__NUM_BUF, "%.17g", v);
    }
    leave_c(old);
}

/* ---- the buffer ------------------------------------------------------- */

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
    n = pf__vsnprintf_c(NULL, 0, fmt, ap);
    if (n >= 0 && reserve(sb, (size_t)n)) {
        pf__vsnprintf_c(sb->buf + sb->len, (size_t)n + 1, fmt, again);
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
    } else if (needed != NULL) {
        *needed = sb->len + 1;
    }
    if (rc != 0 || len == 0) {
        /* Failed, or only measuring. */
    } else if (sb->len + 1 > len) {
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
pf__sb_json_num(pf__sb_t *sb, double v)
{
    char buf[PF__NUM_BUF];

    if (isnan(v) || isinf(v)) {
        pf__sb_append(sb, "null");
        return;
    }
    pf__fmt_double(buf, v);
    pf__sb_append(sb, buf);
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

/* ---- UTF-8 and escaping ------------------------------------------------ *
 *
 * One walk (put_text) writes every string that leaves the library: it
 * copies valid UTF-8 in runs, escapes what the output format needs, and
 * deals with bytes that are not valid UTF-8 in one of two ways:
 *
 *  - text (messages): each such byte becomes U+FFFD;
 *  - names: each such byte becomes the four characters \xHH (two upper
 *    case hex digits), and a backslash of the name is doubled when what
 *    follows it would otherwise read as an escape (another backslash, an
 *    'x', or a byte written as \xHH). Read back, "\\" is a backslash,
 *    "\xHH" the byte 0xHH and any other backslash itself, so two names
 *    never give the same text ("db\xff" and "db\xfe" stay apart), while
 *    the usual names, valid UTF-8 without "\\" or "\x", come out
 *    unchanged. docs/metrics.md documents the scheme. */

/* Length of the valid UTF-8 sequence at p (1..4), or 0 when the bytes
 * there do not start one: overlong forms, surrogates and code points past
 * U+10FFFF are invalid (RFC 3629). The checks stop at a NUL (never a
 * continuation byte), so they never read past the string. */
static size_t
utf8_seq_len(const unsigned char *p)
{
    unsigned char c = p[0];

    if (c < 0x80) {
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        return (p[1] & 0xc0) == 0x80 ? 2 : 0;
    }
    if (c >= 0xe0 && c <= 0xef) {
        unsigned char lo = c == 0xe0 ? 0xa0 : 0x80;
        unsigned char hi = c == 0xed ? 0x9f : 0xbf;

        if (p[1] < lo || p[1] > hi || (p[2] & 0xc0) != 0x80) {
            return 0;
        }
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        unsigned char lo = c == 0xf0 ? 0x90 : 0x80;
        unsigned char hi = c == 0xf4 ? 0x8f : 0xbf;

        if (p[1] < lo || p[1] > hi || (p[2] & 0xc0) != 0x80 ||
            (p[3] & 0xc0) != 0x80) {
            return 0;
        }
        return 4;
    }
    return 0;
}

size_t
pf__utf8_cut(const char *s, size_t n)
{
    size_t i = n;
    size_t cont = 0;
    unsigned char lead;
    size_t need;

    while (i > 0 && cont < 3 && ((unsigned char)s[i - 1] & 0xC0) == 0x80) {
        i--;
        cont++;
    }
    if (i == 0) {
        return n;
    }
    lead = (unsigned char)s[i - 1];
    if (lead < 0xC0) {
        return n; /* ASCII, or stray continuation bytes: leave them */
    }
    need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
    return cont + 1 < need ? i - 1 : n;
}

typedef enum text_esc {
    ESC_NONE, /* raw text: only the UTF-8 clean-up */
    ESC_JSON, /* inside a JSON string literal */
    ESC_PROM  /* inside a Prometheus label value */
} text_esc_t;

/* The escape for ASCII byte c in format esc, or NULL when c stands as it
 * is; tmp (8 bytes) holds a \u00XX form. */
static const char *
ascii_escape(unsigned char c, text_esc_t esc, char *tmp)
{
    if (esc == ESC_NONE) {
        return NULL;
    }
    switch (c) {
    case '"':
        return "\\\"";
    case '\\':
        return "\\\\";
    case '\n':
        return "\\n";
    case '\r':
        return esc == ESC_JSON ? "\\r" : NULL;
    case '\t':
        return esc == ESC_JSON ? "\\t" : NULL;
    default:
        break;
    }
    if (esc == ESC_JSON && c < 0x20) {
        static const char hex[] = "0123456789abcdef";

        memcpy(tmp, "\\u00", 4);
        tmp[4] = hex[c >> 4];
        tmp[5] = hex[c & 0xf];
        tmp[6] = '\0';
        return tmp;
    }
    return NULL;
}

/* Does a backslash of a name need doubling before next (see above)? */
static bool
name_backslash_doubled(const unsigned char *next)
{
    return next[0] == '\\' || next[0] == 'x' ||
           (next[0] != '\0' && utf8_seq_len(next) == 0);
}

/* The replacement of one invalid byte c, in format esc, into tmp (8). */
static const char *
invalid_byte(unsigned char c, text_esc_t esc, bool name, char *tmp)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;

    if (!name) {
        return "\xef\xbf\xbd"; /* U+FFFD */
    }
    tmp[o++] = '\\';
    if (esc != ESC_NONE) {
        tmp[o++] = '\\'; /* the backslash of \xHH, escaped */
    }
    tmp[o++] = 'x';
    tmp[o++] = hex[c >> 4];
    tmp[o++] = hex[c & 0xf];
    tmp[o] = '\0';
    return tmp;
}

static void
put_text(pf__sb_t *sb, const char *str, text_esc_t esc, bool name)
{
    const unsigned char *s = (const unsigned char *)str;
    const unsigned char *run = s;

    while (*s != '\0') {
        size_t n = utf8_seq_len(s);
        const char *rep = NULL;
        char tmp[8];

        if (n == 0) {
            n = 1;
            rep = invalid_byte(*s, esc, name, tmp);
        } else if (n == 1) {
            rep = ascii_escape(*s, esc, tmp);
            if (name && *s == '\\' && name_backslash_doubled(s + 1)) {
                rep = esc == ESC_NONE ? "\\\\" : "\\\\\\\\";
            }
        }
        if (rep != NULL) {
            pf__sb_append_n(sb, (const char *)run, (size_t)(s - run));
            pf__sb_append(sb, rep);
            run = s + n;
        }
        s += n;
    }
    pf__sb_append_n(sb, (const char *)run, (size_t)(s - run));
}

void
pf__sb_utf8(pf__sb_t *sb, const char *s)
{
    put_text(sb, s, ESC_NONE, false);
}

void
pf__sb_name(pf__sb_t *sb, const char *s)
{
    put_text(sb, s, ESC_NONE, true);
}

static char *
dup_with(const char *s, bool name)
{
    pf__sb_t sb = PF__SB_INIT;
    char *out;

    put_text(&sb, s, ESC_NONE, name);
    return pf__sb_finish(&sb, &out) == 0 ? out : NULL;
}

char *
pf__utf8_dup(const char *s)
{
    return dup_with(s, false);
}

char *
pf__name_dup(const char *s)
{
    return dup_with(s, true);
}

void
pf__sb_json_str(pf__sb_t *sb, const char *s)
{
    if (s == NULL) {
        pf__sb_append(sb, "null");
        return;
    }
    pf__sb_append_n(sb, "\"", 1);
    put_text(sb, s, ESC_JSON, false);
    pf__sb_append_n(sb, "\"", 1);
}

void
pf__sb_json_name(pf__sb_t *sb, const char *s)
{
    if (s == NULL) {
        pf__sb_append(sb, "null");
        return;
    }
    pf__sb_append_n(sb, "\"", 1);
    put_text(sb, s, ESC_JSON, true);
    pf__sb_append_n(sb, "\"", 1);
}

void
pf__sb_prom_label(pf__sb_t *sb, const char *s)
{
    put_text(sb, s, ESC_PROM, false);
}
