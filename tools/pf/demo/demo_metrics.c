/* pf demo, scene "metrics": everything the demo made, as Prometheus sees
 * it.
 *
 * Every breaker, bulkhead, health checker, degradation manager and leak
 * detector the scenes made lives in the demo's registry. One call renders
 * their metrics as Prometheus text; the scene prints a few families of it
 * (the help line and every sample) and checks that each object of the
 * registry is in the text. Run alone, the registry is empty: the text has
 * only puffinflow_info.
 *
 * Simulated time runs on through the later scenes, so a breaker left open
 * by an earlier scene may have passed its open period: it then reads
 * half-open here, though no scene showed it leave open (a breaker reports
 * half-open once the period has passed; the transition, and its listener
 * line, come with the next call, and none came). The scene says so for
 * each such breaker, and checks the text shows it. */
#include <stdio.h>
#include <string.h>

#include "demo.h"

/* The families shown, one per kind of object. */
static const char *const shown[] = {
    "puffinflow_breaker_state",           "puffinflow_breaker_opened_total",
    "puffinflow_bulkhead_rejected_total", "puffinflow_health_overall_status",
    "puffinflow_degradation_mode",        "puffinflow_leak_detected_total",
};

/* True when line (up to its end) belongs to family: "# HELP family ..."
 * or a sample "family{...} v" / "family v". */
static bool
in_family(const char *line, size_t len, const char *family)
{
    size_t n = strlen(family);

    if (len > 7 && strncmp(line, "# HELP ", 7) == 0) {
        line += 7;
        len -= 7;
    } else if (line[0] == '#') {
        return false;
    }
    return len > n && strncmp(line, family, n) == 0 &&
           (line[n] == '{' || line[n] == ' ');
}

/* Print the lines of text that belong to family; return how many. */
static unsigned
print_family(demo_t *d, const char *text, const char *family)
{
    unsigned printed = 0;

    for (const char *p = text; *p != '\0';) {
        const char *end = strchr(p, '\n');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);

        if (in_family(p, len, family)) {
            demo_note(d, "  %.*s", (int)len, p);
            printed++;
        }
        p += len + (end != NULL ? 1 : 0);
    }
    return printed;
}

typedef struct export_check {
    demo_t *demo;
    const char *text;
    unsigned objects;
} export_check_t;

/* Each object of the registry shows up under its name. */
static int
check_object(pf_registry_kind_t kind, const char *name, void *object, void *arg)
{
    export_check_t *c = arg;
    char label[160];

    (void)object;
    snprintf(label, sizeof(label), "%s=\"%s\"",
             kind == PF_REGISTRY_HEALTH ? "checker" : "name", name);
    demo_expect(c->demo, strstr(c->text, label) != NULL,
                "the %s %s in the metrics", pf_registry_kind_name(kind), name);
    c->objects++;
    return 0;
}

/* Explain a breaker that reads half-open (see the top of the file). */
static int
explain_half_open(pf_registry_kind_t kind, const char *name, void *object,
                  void *arg)
{
    export_check_t *c = arg;
    pf_breaker_metrics_t m;
    char sample[192];

    (void)kind;
    pf_breaker_metrics(object, &m);
    if (m.state != PF_BREAKER_HALF_OPEN) {
        return 0;
    }
    demo_note(c->demo,
              "Breaker %s reads 2 (half-open) below: it opened in an earlier "
              "scene, and its %g s",
              name, (double)m.recovery_timeout_ns / 1e9);
    demo_note(c->demo, "open period has passed since, as time ran on through "
                       "the later scenes. Its next call would");
    demo_note(c->demo, "be a trial; none came, so no listener line announced "
                       "the change.");
    snprintf(sample, sizeof(sample), "puffinflow_breaker_state{name=\"%s\"} 2",
             name);
    demo_expect(c->demo, strstr(c->text, sample) != NULL,
                "breaker %s half-open in the metrics", name);
    return 0;
}

static void
count_lines(const char *text, unsigned *lines, unsigned *families)
{
    *lines = 0;
    *families = 0;
    for (const char *p = text; *p != '\0'; p++) {
        if (p == text || p[-1] == '\n') {
            (*lines)++;
            if (strncmp(p, "# TYPE ", 7) == 0) {
                (*families)++;
            }
        }
    }
}

int
demo_scene_metrics(demo_t *d)
{
    pf_registry_t *reg = demo_registry(d);
    export_check_t check = {d, NULL, 0};
    unsigned lines;
    unsigned families;
    unsigned printed = 0;
    char *text;
    size_t len;
    int rc = pf_registry_export(reg, PF_METRICS_PROMETHEUS, &text, &len);

    if (rc != 0) {
        return rc;
    }
    check.text = text;
    count_lines(text, &lines, &families);
    demo_note(d, "pf_registry_export(registry, PF_METRICS_PROMETHEUS) renders "
                 "the objects the scenes");
    demo_note(d,
              "left in the demo's registry (objects: %zu; lines: %u; metric "
              "families: %u). An excerpt:",
              pf_registry_count(reg, PF_REGISTRY_ANY), lines, families);
    demo_blank(d);
    pf_registry_foreach(reg, PF_REGISTRY_BREAKER, explain_half_open, &check);
    if (pf_registry_count(reg, PF_REGISTRY_ANY) == 0) {
        demo_note(d, "  (the registry is empty: run the whole demo to fill "
                     "it)");
        printed += print_family(d, text, "puffinflow_info");
    }
    for (size_t i = 0; i < sizeof(shown) / sizeof(shown[0]); i++) {
        printed += print_family(d, text, shown[i]);
    }
    demo_blank(d);
    demo_note(d, "The same snapshot renders as JSON (PF_METRICS_JSON); "
                 "docs/metrics.md lists every metric.");
    demo_expect(d, strstr(text, "puffinflow_info{version=") != NULL,
                "puffinflow_info in the metrics");
    demo_expect(d, printed > 0, "an excerpt to print");
    pf_registry_foreach(reg, PF_REGISTRY_ANY, check_object, &check);
    pf_free(text);
    return demo_verdict(d);
}
