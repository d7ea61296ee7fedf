/* Fuzz the config file of pf health (tools/pf/healthconf.c): the input is
 * the file. The parser must either give checks that are whole (a name of
 * 1..64 safe characters, a positive timeout, the fields of their kind set:
 * a host and a port in range, an http(s) URL, a NULL-terminated argv with
 * a non-empty command) or refuse with a message that starts with a line
 * number within the file (or a space, for the whole file) and leave
 * nothing behind. Names are unique. Any memory error, undefined behaviour
 * or leak is a crash. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "healthconf.h"

#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pf_hc_t hc;
    char err[512];
    size_t lines = 1;
    size_t i;
    size_t k;
    int rc;

    for (i = 0; i < size; i++) {
        lines += data[i] == '\n';
    }
    rc = pf_hc_parse((const char *)data, size, &hc, err, sizeof err);
    if (rc != 0) {
        long line;

        FUZZ_CHECK(hc.n == 0 && hc.checks == NULL, "refused, yet %zu checks",
                   hc.n);
        FUZZ_CHECK(err[0] != '\0', "refused without a message");
        line = err[0] == ' ' ? 0 : strtol(err, NULL, 10);
        FUZZ_CHECK(err[0] == ' ' || (line >= 1 && (size_t)line <= lines),
                   "message '%s': not a line of the %zu", err, lines);
        pf_hc_free(&hc);
        return 0;
    }
    FUZZ_CHECK(hc.n >= 1 && hc.n <= PF_HC_MAX_CHECKS, "%zu checks", hc.n);
    for (k = 0; k < hc.n; k++) {
        const pf_hc_check_t *c = &hc.checks[k];
        size_t j;

        FUZZ_CHECK(c->name != NULL && strlen(c->name) >= 1 &&
                       strlen(c->name) <= PF_HC_MAX_NAME,
                   "check %zu: a bad name", k);
        FUZZ_CHECK(strspn(c->name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKL"
                                   "MNOPQRSTUVWXYZ0123456789._-") ==
                       strlen(c->name),
                   "name '%s'", c->name);
        FUZZ_CHECK(c->timeout > 0 && c->timeout <= 1e9, "timeout %g",
                   c->timeout);
        FUZZ_CHECK(c->line >= 1 && (size_t)c->line <= lines, "line %d",
                   c->line);
        FUZZ_CHECK(c->ntags <= PF_HC_MAX_TAGS, "%zu tags", c->ntags);
        for (j = 0; j < c->ntags; j++) {
            FUZZ_CHECK(c->tags[j] != NULL && c->tags[j][0] != '\0',
                       "an empty tag");
        }
        for (j = 0; j < k; j++) {
            FUZZ_CHECK(strcmp(hc.checks[j].name, c->name) != 0,
                       "name '%s' twice", c->name);
        }
        switch (c->kind) {
        case PF_HC_TCP:
            FUZZ_CHECK(c->host != NULL && c->host[0] != '\0' &&
                           c->port >= 1 && c->port <= 65535,
                       "tcp %s: host or port", c->name);
            break;
        case PF_HC_HTTP:
            FUZZ_CHECK(c->url != NULL && (strncmp(c->url, "http://", 7) == 0 ||
                                          strncmp(c->url, "https://", 8) == 0),
                       "http %s: url", c->name);
            break;
        case PF_HC_COMMAND:
            FUZZ_CHECK(c->argv != NULL && c->argc >= 1 &&
                           c->argc <= PF_HC_MAX_ARGS &&
                           c->argv[c->argc] == NULL && c->argv[0][0] != '\0',
                       "command %s: argv", c->name);
            FUZZ_CHECK(c->degraded_exit == -1 ||
                           (c->degraded_exit >= 1 && c->degraded_exit <= 255),
                       "degraded-exit %d", c->degraded_exit);
            break;
        default:
            FUZZ_CHECK(0, "kind %d", (int)c->kind);
        }
    }
    pf_hc_free(&hc);
    FUZZ_CHECK(hc.n == 0 && hc.checks == NULL, "not emptied");
    return 0;
}
