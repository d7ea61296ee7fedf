/* A growable string buffer, and JSON writing on top of it: used by every
 * module that renders text (health reports, metrics export, the HTTP
 * endpoint). Allocation failure is sticky: after one, every append is a
 * no-op and pf__sb_finish reports PF_ENOMEM, so writers need not check each
 * call. */
#ifndef PF_SRC_STRBUF_H
#define PF_SRC_STRBUF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct pf__sb {
    char *buf;      /* NUL-terminated when not NULL */
    size_t len;
    size_t cap;
    bool failed;    /* an allocation failed: the text is incomplete */
} pf__sb_t;

#define PF__SB_INIT {NULL, 0, 0, false}

void pf__sb_append(pf__sb_t *sb, const char *s);
void pf__sb_append_n(pf__sb_t *sb, const char *s, size_t n);
void pf__sb_appendf(pf__sb_t *sb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void pf__sb_vappendf(pf__sb_t *sb, const char *fmt, va_list ap);

/* Hand the text over: 0 and *out = the string (free with pf__free / the
 * public pf_free), or PF_ENOMEM (the buffer is released). An empty buffer
 * gives "". */
int pf__sb_finish(pf__sb_t *sb, char **out);

/* Copy the text into a caller's buffer of size len (NUL-terminated) and
 * release the buffer. 0, PF_ENOMEM, or PF_ERANGE when it does not fit (then
 * *needed, if not NULL, is the size that would fit, NUL included). */
int pf__sb_copy_out(pf__sb_t *sb, char *buf, size_t len, size_t *needed);

/* Release the buffer without handing it over. */
void pf__sb_release(pf__sb_t *sb);

/* ---- JSON ------------------------------------------------------------- */

/* Append s as a JSON string literal, quotes included, escaping quotes,
 * backslashes and control characters (invalid UTF-8 bytes are copied). NULL
 * gives null. */
void pf__sb_json_str(pf__sb_t *sb, const char *s);

/* Append a number; NaN and infinities (not JSON) become null. */
void pf__sb_json_num(pf__sb_t *sb, double v);
void pf__sb_json_int(pf__sb_t *sb, int64_t v);
void pf__sb_json_bool(pf__sb_t *sb, bool v);

/* Append ,"key": (the comma only when first is false, then first is set
 * false): the usual way to write an object member. */
void pf__sb_json_key(pf__sb_t *sb, bool *first, const char *key);

/* Object members: ,"key":value (see pf__sb_json_key), in one call. */
void pf__sb_json_member_int(pf__sb_t *sb, bool *first, const char *key,
                            int64_t v);
void pf__sb_json_member_num(pf__sb_t *sb, bool *first, const char *key,
                            double v); /* NaN and infinities: null */
void pf__sb_json_member_str(pf__sb_t *sb, bool *first, const char *key,
                            const char *v); /* NULL: null */
void pf__sb_json_member_bool(pf__sb_t *sb, bool *first, const char *key,
                             bool v);

/* ---- Prometheus ------------------------------------------------------- */

/* Append s escaped as a Prometheus label value (backslash, double quote and
 * newline escaped), without the quotes. */
void pf__sb_prom_label(pf__sb_t *sb, const char *s);

#endif /* PF_SRC_STRBUF_H */
