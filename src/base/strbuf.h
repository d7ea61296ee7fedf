/* A growable string buffer, and JSON writing on top of it: used by every
 * module that renders text (health reports, metrics export, the HTTP
 * endpoint). Allocation failure is sticky: after one, every append is a
 * no-op and pf__sb_finish reports PF_ENOMEM, so writers need not check each
 * call.
 *
 * Also the one place where numbers become text and text becomes numbers:
 * everything here uses the "C" locale whatever the process's locale is
 * (a program that called setlocale(LC_ALL, "") under de_DE must still get
 * "2.5", never "2,5"). No other file calls printf-family functions on
 * floating-point values or strtod. */
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

/* ---- locale-free numbers ---------------------------------------------- */

/* snprintf / vsnprintf in the "C" locale (the calling thread's locale is
 * switched for the call and put back). Same results as the libc ones. */
int pf__snprintf_c(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int pf__vsnprintf_c(char *buf, size_t len, const char *fmt, va_list ap);

/* strtod in the "C" locale: only '.' is a decimal point. */
double pf__strtod_c(const char *s, char **end);

/* Room for any pf__fmt_double result, NUL included. */
#define PF__NUM_BUF 32

/* Write finite v into buf as the shortest of %.15g and %.17g that reads
 * back exactly ("0.1", not "0.10000000000000001"), in the "C" locale.
 * NaN and infinities are the caller's business (the formats differ). */
void pf__fmt_double(char buf[PF__NUM_BUF], double v);

/* ---- the buffer ------------------------------------------------------- */

void pf__sb_append(pf__sb_t *sb, const char *s);
void pf__sb_append_n(pf__sb_t *sb, const char *s, size_t n);
void pf__sb_appendf(pf__sb_t *sb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void pf__sb_vappendf(pf__sb_t *sb, const char *fmt, va_list ap);
/* (Both format in the "C" locale.) */

/* Hand the text over: 0 and *out = the string (free with pf__free / the
 * public pf_free), or PF_ENOMEM (the buffer is released). An empty buffer
 * gives "". */
int pf__sb_finish(pf__sb_t *sb, char **out);

/* Copy the text into a caller's buffer of size len (NUL-terminated) and
 * release the buffer, as snprintf would: *needed (if not NULL) gets the
 * size the text needs, NUL included, whenever the text is complete. 0
 * when it was copied, or when len is 0 (buf may then be NULL: the call
 * only measures); PF_ERANGE when it does not fit in len > 0 bytes;
 * PF_ENOMEM. */
int pf__sb_copy_out(pf__sb_t *sb, char *buf, size_t len, size_t *needed);

/* Release the buffer without handing it over. */
void pf__sb_release(pf__sb_t *sb);

/* ---- UTF-8 ------------------------------------------------------------ *
 *
 * Every string written out goes through one of two clean-ups (strbuf.c
 * explains both): text, where each byte that is not valid UTF-8 becomes
 * U+FFFD, and names, where it becomes \xHH, injectively. Both give valid
 * UTF-8. */

/* Append s as text / as a name, cleaned, with no other escaping. */
void pf__sb_utf8(pf__sb_t *sb, const char *s);
void pf__sb_name(pf__sb_t *sb, const char *s);

/* The same into a new string (free with pf__free); NULL on allocation
 * failure. */
char *pf__utf8_dup(const char *s);
char *pf__name_dup(const char *s);

/* Where to end s, cut to n bytes (s has at least n), so that no UTF-8
 * sequence is left incomplete at the end: n, or less by up to 3. */
size_t pf__utf8_cut(const char *s, size_t n);

/* ---- JSON ------------------------------------------------------------- */

/* Append s as a JSON string literal, quotes included, escaping quotes,
 * backslashes and control characters; cleaned as text (invalid UTF-8 bytes
 * become U+FFFD), so the result is always valid JSON. NULL gives null. */
void pf__sb_json_str(pf__sb_t *sb, const char *s);

/* The same for a name: cleaned as a name (invalid bytes become \xHH, two
 * names stay two names). */
void pf__sb_json_name(pf__sb_t *sb, const char *s);

/* Append a number (pf__fmt_double); NaN and infinities (not JSON) become
 * null. */
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
 * newline escaped), without the quotes; cleaned as text. Names are cleaned
 * as names before (the registry snapshot does it), so they pass as they
 * are. */
void pf__sb_prom_label(pf__sb_t *sb, const char *s);

#endif /* PF_SRC_STRBUF_H */
