/* pf health FILE [--json] [--tag TAG]: run the checks a config file lists
 * (healthconf.h: tcp, command, http) with the library's health checker,
 * all at once, print the report, and exit 0, 1 or 2 for healthy,
 * degraded or unhealthy (docs/pf.md). http checks need libcurl
 * (PF_TOOL_HTTP, set by CMake when it finds it). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "puffinflow/clock.h"
#include "puffinflow/error.h"
#include "puffinflow/health.h"
#include "puffinflow/puffinflow.h"

#include "healthconf.h"
#include "pf.h"

#ifdef PF_TOOL_HTTP
#include <curl/curl.h>
#endif

#define CMD "health"

static int
health_usage(FILE *out)
{
    fprintf(out,
            "usage: pf health FILE [--json] [--tag TAG]\n"
            "  FILE       the checks, one a line (man pf, docs/pf.md):\n"
            "               tcp NAME [KEY=VALUE]... HOST:PORT\n"
            "               command NAME [KEY=VALUE]... [--] CMD [ARGS...]\n"
            "               http NAME [KEY=VALUE]... URL   (pf built with "
            "libcurl)\n"
            "             keys: timeout=D (default 5s), critical=yes|no, "
            "tags=a,b,\n"
            "                   degraded-exit=N (command)\n"
            "  --json     the report as JSON\n"
            "  --tag TAG  run only the checks tagged TAG\n"
            "exit: 0 healthy, 1 degraded, 2 unhealthy, or a usage or config "
            "error\n"
            "      (said on stderr)\n");
    return out == stdout ? 0 : PF_TOOL_EXIT_USAGE;
}

/* An http check's own state: its URL (a copy). Freed once every check
 * run is over (wait_runs). */
typedef struct http_arg {
    char *url;
} http_arg_t;

#ifdef PF_TOOL_HTTP
static size_t
discard(char *p, size_t size, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return size * n;
}

/* Healthy for a 2xx or 3xx answer (redirects are not followed), else
 * unhealthy with the status or curl's reason. */
static int
http_check(pf_health_result_t *res, void *arg)
{
    http_arg_t *h = arg;
    CURL *easy;
    char why[CURL_ERROR_SIZE];
    long ms = res->timeout > 0 && res->timeout < 86400
                  ? (long)(res->timeout * 1000.0)
                  : 86400000L;
    long status = 0;
    CURLcode cc;

    easy = curl_easy_init();
    if (easy == NULL) {
        pf_health_result_set(res, PF_UNHEALTHY, "curl: cannot start");
        return 0;
    }
    why[0] = '\0';
    curl_easy_setopt(easy, CURLOPT_URL, h->url);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, ms < 1 ? 1L : ms);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, why);
    curl_easy_setopt(easy, CURLOPT_USERAGENT, "pf-health");
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS,
                     (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    cc = curl_easy_perform(easy);
    if (cc != CURLE_OK) {
        pf_health_result_set(res, PF_UNHEALTHY, "%s",
                             why[0] != '\0' ? why : curl_easy_strerror(cc));
    } else {
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
        if (status >= 200 && status < 400) {
            pf_health_result_set(res, PF_HEALTHY, "HTTP %ld", status);
        } else {
            pf_health_result_set(res, PF_UNHEALTHY, "HTTP %ld", status);
        }
    }
    curl_easy_cleanup(easy);
    return 0;
}
#endif

/* Read the file, at most PF_HC_MAX_BYTES + 1 bytes (one more says it is
 * too large). NULL after printing why. */
static char *
slurp(const char *path, size_t *len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    char *buf;
    size_t n = 0;

    if (f == NULL) {
        fprintf(stderr, "pf health: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    buf = malloc(PF_HC_MAX_BYTES + 1);
    if (buf != NULL) {
        n = fread(buf, 1, PF_HC_MAX_BYTES + 1, f);
        if (ferror(f)) {
            fprintf(stderr, "pf health: %s: %s\n", path, strerror(errno));
            free(buf);
            buf = NULL;
        }
    } else {
        fprintf(stderr, "pf health: out of memory\n");
    }
    if (f != stdin) {
        fclose(f);
    }
    *len = n;
    return buf;
}

static void
print_report(const pf_health_report_t *r, const pf_hc_t *conf)
{
    size_t n = pf_health_report_count(r);
    size_t i;
    size_t w = 4;

    for (i = 0; i < n; i++) {
        size_t l = strlen(pf_health_report_entry(r, i)->name);

        w = l > w ? l : w;
    }
    printf("%s: %zu check%s in %.3f s\n",
           pf_health_status_name(pf_health_report_status(r)), n,
           n == 1 ? "" : "s", pf_health_report_duration(r));
    for (i = 0; i < n; i++) {
        const pf_health_entry_t *e = pf_health_report_entry(r, i);
        const char *kind = "";
        size_t k;

        for (k = 0; k < conf->n; k++) {
            if (strcmp(conf->checks[k].name, e->name) == 0) {
                kind = pf_hc_kind_name(conf->checks[k].kind);
            }
        }
        printf("  %-*s  %-7s  %-9s  %8.1f ms  %s%s\n", (int)w, e->name, kind,
               pf_health_status_name(e->status), e->duration * 1000.0,
               e->message, e->critical ? "" : " (not critical)");
    }
}

static int
add_checks(pf_health_checker_t *hc, const char *file, const pf_hc_t *conf,
           http_arg_t *http)
{
    size_t k;

    for (k = 0; k < conf->n; k++) {
        const pf_hc_check_t *c = &conf->checks[k];
        pf_health_check_opts_t opts;
        int rc = 0;

        pf_health_check_opts_init(&opts);
        opts.timeout = c->timeout;
        opts.critical = c->critical;
        opts.tags = (const char *const *)c->tags;
        opts.tags_len = c->ntags;
        if (c->kind == PF_HC_TCP) {
            pf_health_tcp_opts_t t;

            pf_health_tcp_opts_init(&t);
            t.host = c->host;
            t.port = c->port;
            rc = pf_health_add_tcp_check(hc, c->name, &t, &opts);
        } else if (c->kind == PF_HC_COMMAND) {
            pf_health_command_opts_t cm;

            pf_health_command_opts_init(&cm);
            cm.argv = (const char *const *)c->argv;
            cm.degraded_exit = c->degraded_exit;
            rc = pf_health_add_command_check(hc, c->name, &cm, &opts);
        } else {
#ifdef PF_TOOL_HTTP
            http[k].url = strdup(c->url);
            rc = http[k].url == NULL
                     ? PF_ENOMEM
                     : pf_health_add_check_ex(hc, c->name, http_check,
                                              &http[k], &opts);
#else
            (void)http;
            fprintf(stderr, "pf health: %s:%d: http checks need libcurl, "
                            "and this pf was built without it (install "
                            "libcurl's development files, e.g. "
                            "libcurl4-openssl-dev, and build again)\n",
                    file, c->line);
            return PF_TOOL_EXIT_USAGE;
#endif
        }
        if (rc != 0) {
            fprintf(stderr, "pf health: %s:%d: check %s: %s\n", file,
                    c->line, c->name, pf_strerror(rc));
            return PF_TOOL_EXIT_USAGE;
        }
    }
    return 0;
}

/* Wait for every check run to be over. The report comes at a check's
 * timeout, while the check goes on: a command check then ends its
 * command's process group (SIGTERM, then SIGKILL after its grace) and
 * reaps it, an http check ends at curl's timeout (the same). pf exits
 * only after that, so nothing a check started is left running, and the
 * checks' state can be freed. */
static void
wait_runs(pf_health_checker_t *hc)
{
    pf_health_metrics_t m;

    for (;;) {
        pf_health_metrics(hc, &m);
        if (m.running == 0) {
            return;
        }
        pf_clock_sleep(NULL, 0.002);
    }
}

int
pf_tool_health(int argc, char **argv)
{
    const char *file = NULL;
    const char *tag = NULL;
    bool json = false;
    char *text;
    size_t len;
    char err[512];
    pf_hc_t conf;
    pf_health_config_t cfg;
    pf_health_checker_t *hc = NULL;
    pf_health_report_t *r = NULL;
    http_arg_t *http = NULL;
    bool has_http = false;
    int status;
    int rc;
    int i;
    size_t k;

    for (i = 1; i < argc; i++) {
        const char *a = argv[i];

        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            return health_usage(stdout);
        } else if (strcmp(a, "--json") == 0) {
            json = true;
        } else if (strcmp(a, "--tag") == 0 || strncmp(a, "--tag=", 6) == 0) {
            if (a[5] == '=') {
                tag = a + 6;
            } else if (i + 1 < argc) {
                tag = argv[++i];
            } else {
                fprintf(stderr, "pf health: --tag: needs a value\n");
                return PF_TOOL_EXIT_USAGE;
            }
            if (tag[0] == '\0') {
                fprintf(stderr, "pf health: --tag: bad value '' (a tag "
                                "used in the file)\n");
                return PF_TOOL_EXIT_USAGE;
            }
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "pf health: unknown option '%s' (pf health "
                            "--help)\n", a);
            return PF_TOOL_EXIT_USAGE;
        } else if (file == NULL) {
            file = a;
        } else {
            fprintf(stderr, "pf health: unexpected '%s' (one FILE)\n", a);
            return PF_TOOL_EXIT_USAGE;
        }
    }
    if (file == NULL) {
        fprintf(stderr, "pf health: no FILE (pf health FILE)\n");
        return health_usage(stderr);
    }
    text = slurp(file, &len);
    if (text == NULL) {
        return PF_TOOL_EXIT_USAGE;
    }
    rc = pf_hc_parse(text, len, &conf, err, sizeof err);
    free(text);
    if (rc != 0) {
        fprintf(stderr, "pf health: %s:%s\n", file, err);
        return PF_TOOL_EXIT_USAGE;
    }
    if (tag != NULL) {
        bool found = false;

        for (k = 0; k < conf.n && !found; k++) {
            size_t t;

            for (t = 0; t < conf.checks[k].ntags; t++) {
                found = found || strcmp(conf.checks[k].tags[t], tag) == 0;
            }
        }
        if (!found) {
            fprintf(stderr, "pf health: --tag: bad value '%s' (no check in "
                            "%s has it)\n", tag, file);
            pf_hc_free(&conf);
            return PF_TOOL_EXIT_USAGE;
        }
    }
    for (k = 0; k < conf.n; k++) {
        has_http = has_http || conf.checks[k].kind == PF_HC_HTTP;
    }
#ifdef PF_TOOL_HTTP
    if (has_http && curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "pf health: cannot start libcurl\n");
        pf_hc_free(&conf);
        return PF_TOOL_EXIT_FAILURE;
    }
#endif
    http = calloc(conf.n, sizeof http[0]);
    pf_health_config_init(&cfg);
    cfg.name = "pf-health";
    rc = http == NULL ? PF_ENOMEM : pf_health_checker_new(&cfg, &hc);
    if (rc != 0) {
        fprintf(stderr, "pf health: %s\n", pf_strerror(rc));
        status = PF_TOOL_EXIT_FAILURE;
        goto out;
    }
    status = add_checks(hc, file, &conf, http);
    if (status != 0) {
        goto out;
    }
    rc = tag != NULL ? pf_health_check_tagged(hc, tag, &r)
                     : pf_health_check_all(hc, &r);
    if (rc != 0) {
        fprintf(stderr, "pf health: %s\n", pf_strerror(rc));
        status = PF_TOOL_EXIT_FAILURE;
        goto out;
    }
    if (json) {
        char *s = NULL;

        rc = pf_health_report_json_alloc(r, &s);
        if (rc != 0) {
            fprintf(stderr, "pf health: %s\n", pf_strerror(rc));
            status = PF_TOOL_EXIT_FAILURE;
            goto out;
        }
        printf("%s\n", s);
        pf_free(s);
    } else {
        print_report(r, &conf);
    }
    switch (pf_health_report_status(r)) {
    case PF_HEALTHY:
        status = 0;
        break;
    case PF_DEGRADED:
        status = 1;
        break;
    default:
        status = 2;
        break;
    }
out:
    pf_health_report_free(r);
    if (hc != NULL) {
        wait_runs(hc);
    }
    pf_health_checker_free(hc);
    for (k = 0; http != NULL && k < conf.n; k++) {
        free(http[k].url);
    }
    free(http);
#ifdef PF_TOOL_HTTP
    if (has_http) {
        curl_global_cleanup();
    }
#endif
    pf_hc_free(&conf);
    return status;
}
