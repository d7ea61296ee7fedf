/* Fuzz the degradation rule language (pf_degrade_add_rule_str in
 * src/degrade.c) and the decisions made from the rules it accepts.
 *
 * The input is rule text, then optionally a NUL byte and bytes that drive
 * the manager. Each line of the text is added as a rule, and so is the
 * whole text at once; then, on a manual clock moved by fuzzed amounts, the
 * manager sets gauges and evaluates fuzzed signals (NaN and infinities
 * included), with overrides now and then.
 *
 * Checked: a rule is accepted (0) or refused (PF_EINVAL, PF_ENOMEM), never
 * anything else; the mode is always one of the manager's; the metrics
 * agree with what was done; no memory error, undefined behaviour or leak.
 * The seeds in corpus/degrade_rule/ are the forms in degrade.h and
 * tests/test_degrade.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "puffinflow/clock.h"
#include "puffinflow/degrade.h"
#include "puffinflow/error.h"

#include "fuzz_util.h"

static const char *const gauge_names[] = {"queue_depth", "queue", "q.len",
                                          "a-b", "x"};

static int
no_source(pf_system_health_t *out, void *arg)
{
    (void)arg;
    out->cpu_usage = NAN;
    out->memory_usage = NAN;
    return 0;
}

static void
listener(const pf_degrade_event_t *ev, void *arg)
{
    size_t n = *(size_t *)arg;

    FUZZ_CHECK(ev->from < n && ev->to < n && ev->from != ev->to,
               "event %u -> %u of %zu modes", ev->from, ev->to, n);
    FUZZ_CHECK(ev->reason != NULL && ev->from_name != NULL &&
                   ev->to_name != NULL,
               "event without reason or names");
}

static void
add_rule(pf_degrade_t *d, const char *text, size_t *accepted)
{
    int rc = pf_degrade_add_rule_str(d, text);

    FUZZ_CHECK(rc == 0 || rc == PF_EINVAL || rc == PF_ENOMEM,
               "add_rule_str(\"%s\") returned %d", text, rc);
    if (rc == 0) {
        (*accepted)++;
    }
}

/* Add each line of text[0, len) as a rule, then the whole text. */
static size_t
add_rules(pf_degrade_t *d, const char *text, size_t len)
{
    char *copy = malloc(len + 1);
    size_t accepted = 0;
    char *line;
    char *nl;

    FUZZ_CHECK(copy != NULL, "out of memory");
    memcpy(copy, text, len);
    copy[len] = '\0';
    add_rule(d, copy, &accepted);
    for (line = copy; line != NULL; line = nl == NULL ? NULL : nl + 1) {
        nl = strchr(line, '\n');
        if (nl != NULL) {
            *nl = '\0';
        }
        add_rule(d, line, &accepted);
    }
    free(copy);
    return accepted;
}

static void
drive(pf_degrade_t *d, pf_clock_t *clock, fz_t *f, size_t nmodes)
{
    pf_degrade_metrics_t m;
    uint64_t evaluations = 0;
    int steps = 0;
    int rc;

    while (f->n > 0 && steps++ < 64) {
        pf_system_health_t h;
        uint8_t op = fz_u8(f);
        unsigned mode;

        switch (op % 5) {
        case 0:
            pf_clock_manual_advance(clock, (int64_t)(fz_u64(f) >> 1));
            break;
        case 1:
            rc = pf_degrade_set_gauge(
                d, gauge_names[fz_u8(f) % 5], fz_double(f));
            FUZZ_CHECK(rc == 0 || rc == PF_EINVAL, "set_gauge %d", rc);
            break;
        case 2:
            rc = pf_degrade_override(d, pf_degrade_mode_name_at(
                                                d, fz_u8(f) % nmodes));
            FUZZ_CHECK(rc == 0, "override %d", rc);
            break;
        case 3:
            rc = pf_degrade_clear_override(d);
            FUZZ_CHECK(rc == 0 || rc == PF_ESTATE, "clear_override %d", rc);
            break;
        default:
            memset(&h, 0, sizeof(h));
            h.cpu_usage = fz_double(f);
            h.memory_usage = fz_double(f);
            h.external_services_available = fz_bool(f);
            rc = pf_degrade_evaluate(d, &h);
            FUZZ_CHECK(rc == 0, "evaluate %d", rc);
            evaluations++;
            break;
        }
        mode = pf_degrade_mode(d);
        FUZZ_CHECK(mode < nmodes, "mode %u of %zu", mode, nmodes);
        FUZZ_CHECK(strcmp(pf_degrade_mode_name(d),
                          pf_degrade_mode_name_at(d, mode)) == 0,
                   "mode name");
    }
    pf_degrade_metrics(d, &m);
    FUZZ_CHECK(m.updates == evaluations, "updates %llu, evaluations %llu",
               (unsigned long long)m.updates,
               (unsigned long long)evaluations);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, '\0', size);
    size_t text_len = nul == NULL ? size : (size_t)(nul - data);
    pf_degrade_config_t cfg;
    pf_degrade_t *d = NULL;
    pf_clock_t *clock = NULL;
    size_t nmodes = 4;
    fz_t f;
    int rc;

    if (size > 4096) {
        return -1;
    }
    FUZZ_CHECK(pf_clock_manual_new(&clock) == 0, "clock");
    pf_degrade_config_init(&cfg);
    cfg.clock = clock;
    cfg.source = no_source;
    cfg.listener = listener;
    cfg.listener_arg = &nmodes;
    cfg.min_dwell = 1.0;
    rc = pf_degrade_new(&cfg, &d);
    FUZZ_CHECK(rc == 0, "degradation_new %d", rc);
    FUZZ_CHECK(pf_degrade_mode_count(d) == nmodes, "modes");

    add_rules(d, (const char *)data, text_len);
    f.p = nul == NULL ? data + size : nul + 1;
    f.n = nul == NULL ? 0 : size - text_len - 1;
    drive(d, clock, &f, nmodes);

    pf_degrade_free(d);
    pf_clock_free(clock);
    return 0;
}
