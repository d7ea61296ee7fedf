/* pf demo: a narrated tour of the library, printed as it happens.
 *
 * Each scene (demo_<scene>.c) sets up a small agent workflow against a
 * simulated dependency and prints one time-stamped line per event, from
 * the patterns' own listeners, then a short summary of the objects'
 * metrics. Simulated time runs on one manual clock (demo_core.c), so the
 * output is the same on every run and the tour takes well under a second.
 *
 *   pf demo                   every scene, in order
 *   pf demo --scene NAME ...  only those (repeatable)
 *   pf demo --list            the scenes
 *
 * `--quick` is accepted for older scripts; the demo is always quick. Every
 * scene checks its outcome: that what it narrates did happen (the breaker
 * did open, the leak was found, ...). The exit status is 0 only when every
 * check passed, so the test running it means something. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "demo.h"

/* Worker threads of the demo's executor: enough for every state a scene
 * keeps waiting on the clock at once, plus one. */
#define DEMO_WORKERS 8

typedef struct scene {
    const char *name;
    const char *title;
    int (*run)(demo_t *d);
} scene_t;

static const scene_t scenes[] = {
    {"breaker",
     "circuit breaker: closed -> open -> half-open -> closed, a fallback "
     "while open",
     demo_scene_breaker},
    {"bulkhead", "bulkheads: cpu work and io work isolated from each other",
     demo_scene_bulkhead},
    {"retry", "retries with exponential backoff, stopped by an open breaker",
     demo_scene_retry},
    {"timeout", "timeouts and deadlines", demo_scene_timeout},
    {"health", "health checks gating work", demo_scene_health},
    {"degrade", "graceful degradation: system health picks the mode",
     demo_scene_degrade},
    {"leak", "leak detection: allocation tracking and an fd growth trend",
     demo_scene_leak},
    {"metrics", "metrics: the registry's Prometheus text", demo_scene_metrics},
    {"http", "1,000 agents calling a local HTTP server at once on 2 threads",
     demo_scene_http},
};

#define NSCENES (sizeof(scenes) / sizeof(scenes[0]))

static int
demo_usage(FILE *out)
{
    fprintf(out, "usage: pf demo [--scene NAME]... [--list] [--quick]\n"
                 "  --scene NAME   run only this scene (repeatable; see "
                 "--list)\n  --list         list the scenes\n"
                 "  --quick        accepted for compatibility: the demo is "
                 "always quick\n");
    return out == stdout ? 0 : 2;
}

static int
scene_index(const char *name)
{
    for (size_t i = 0; i < NSCENES; i++) {
        if (strcmp(scenes[i].name, name) == 0) {
            return (int)i;
        }
    }
    return -1;
}

/* Parse argv into the scenes to run (all when none is named). Returns -1
 * to go on, or the exit status. */
static int
parse_args(int argc, char **argv, bool *selected)
{
    bool any = false;
    int k;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            continue;
        }
        if (strcmp(argv[i], "--list") == 0) {
            for (size_t j = 0; j < NSCENES; j++) {
                printf("%-10s %s\n", scenes[j].name, scenes[j].title);
            }
            return 0;
        }
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            return demo_usage(stdout);
        }
        if (strcmp(argv[i], "--scene") == 0) {
            if (i + 1 == argc) {
                fprintf(stderr, "pf demo: --scene needs a NAME (see pf demo "
                                "--list)\n");
                return 2;
            }
            k = scene_index(argv[++i]);
            if (k < 0) {
                fprintf(stderr, "pf demo: no scene '%s' (see pf demo --list)\n",
                        argv[i]);
                return 2;
            }
            selected[k] = true;
            any = true;
            continue;
        }
        fprintf(stderr, "pf demo: unknown option '%s'\n", argv[i]);
        return demo_usage(stderr);
    }
    if (!any) {
        for (size_t j = 0; j < NSCENES; j++) {
            selected[j] = true;
        }
    }
    return -1;
}

int
pf_tool_demo(int argc, char **argv)
{
    bool selected[NSCENES] = {false};
    char title[160];
    size_t ran = 0;
    size_t failed = 0;
    demo_t *d;
    int rc = parse_args(argc, argv, selected);

    if (rc >= 0) {
        return rc;
    }
    rc = demo_new(DEMO_WORKERS, &d);
    if (rc != 0) {
        fprintf(stderr, "pf demo: %s\n", pf_strerror(rc));
        return 1;
    }
    printf("puffinflow %s: a tour of the reliability patterns.\n"
           "Time is simulated on a manual clock: [  12.000 s] is seconds "
           "into the scene.\n",
           pf_version());
    for (size_t k = 0; k < NSCENES; k++) {
        if (!selected[k]) {
            continue;
        }
        snprintf(title, sizeof(title), "%zu/%zu %s", k + 1, NSCENES,
                 scenes[k].title);
        demo_begin(d, scenes[k].name, title);
        rc = scenes[k].run(d);
        ran++;
        if (rc != 0) {
            failed++;
            /* PF_ESTATE: the scene has said what it missed. */
            fprintf(stderr, "pf demo: scene %s failed%s%s\n", scenes[k].name,
                    rc == PF_ESTATE ? "" : ": ",
                    rc == PF_ESTATE ? "" : pf_strerror(rc));
        }
    }
    demo_free(d);
    if (failed != 0) {
        fprintf(stderr,
                "pf demo: %zu of %zu scenes failed their checks: something "
                "they narrated did not happen (see above)\n",
                failed, ran);
        return 1;
    }
    printf("\ndemo finished: %zu scene%s; every scene checked its outcome "
           "(the breaker opened, the leak was found, ...) and all checks "
           "passed\n",
           ran, ran == 1 ? "" : "s");
    return 0;
}
