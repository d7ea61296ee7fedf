/* The config file of pf health (docs/pf.md, "pf health"): one check a
 * line,
 *
 *   KIND NAME [KEY=VALUE]... TARGET...
 *
 *   tcp     db    timeout=2s tags=ready       localhost:5432
 *   command disk  critical=no degraded-exit=1 /usr/lib/check_disk -w 10%
 *   http    api   timeout=1s                  http://127.0.0.1:8080/health
 *
 * Words are separated by spaces or tabs; a word in double quotes may hold
 * spaces, \" and \\. '#' starts a comment where a word may start. The
 * file is untrusted input: the parser takes any bytes and either gives
 * the checks or says what is wrong and on which line. It does not touch
 * the health checker (tools/pf/health.c does), so the fuzz harness
 * (tests/fuzz/fuzz_healthconf.c) runs it alone. */
#ifndef PF_TOOLS_HEALTHCONF_H
#define PF_TOOLS_HEALTHCONF_H

#include <stdbool.h>
#include <stddef.h>

/* Limits: a longer line, more checks, longer names are errors. */
#define PF_HC_MAX_LINE 4096
#define PF_HC_MAX_CHECKS 256
#define PF_HC_MAX_NAME 64
#define PF_HC_MAX_TAGS 16
#define PF_HC_MAX_ARGS 128
#define PF_HC_MAX_BYTES (1024 * 1024)

typedef enum pf_hc_kind { PF_HC_TCP, PF_HC_COMMAND, PF_HC_HTTP } pf_hc_kind_t;

typedef struct pf_hc_check {
    pf_hc_kind_t kind;
    int line;            /* where it is in the file, from 1 */
    char *name;
    double timeout;      /* seconds, > 0; default 5 */
    bool critical;       /* default true */
    char **tags;         /* ntags strings */
    size_t ntags;
    int degraded_exit;   /* command: -1 = none, else 1..255 */
    char *host;          /* tcp */
    unsigned port;       /* tcp: 1..65535 */
    char *url;           /* http: http:// or https:// */
    char **argv;         /* command: NULL-terminated, argc words */
    size_t argc;
} pf_hc_check_t;

typedef struct pf_hc {
    pf_hc_check_t *checks;
    size_t n;
} pf_hc_t;

/* Parse len bytes of text (any bytes; no NUL needed) into *out. Returns
 * 0; or -1 with "LINE: what is wrong" in err (of size errlen; " what is
 * wrong" for the whole file: too large, no checks) and *out empty;
 * allocation failure is "out of memory". pf_hc_free(out) is safe either
 * way. */
int pf_hc_parse(const char *text, size_t len, pf_hc_t *out, char *err,
                size_t errlen);

void pf_hc_free(pf_hc_t *hc);

/* "tcp", "command", "http". */
const char *pf_hc_kind_name(pf_hc_kind_t kind);

#endif /* PF_TOOLS_HEALTHCONF_H */
