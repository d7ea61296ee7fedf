/* pf demo, scene "breaker": the reference's ResilientAgent.
 *
 * Agent "checkout" has one state, "charge", that calls payments-api
 * through the breaker payments-api: 5 consecutive failures open it, 6 s
 * later it lets trial calls through, 2 good trials close it. While it is
 * open the state's fallback serves a cached response instead. A request
 * (one run) comes every 2 s; payments-api is down from 4 s to 21 s, so the
 * breaker opens at 12 s, fails its first trial at 18 s (back to open) and
 * closes after two good trials at 24 s and 26 s. The runs are synchronous
 * (pf_agent_run on this thread): no timer is involved. */
#include "demo.h"

#define REQUESTS 15
#define DOWN_FROM 4.0
#define DOWN_UNTIL 21.0

typedef struct breaker_scene {
    demo_t *demo;
    demo_dep_t payments;
} breaker_scene_t;

static int
charge(pf_ctx_t *ctx, void *arg)
{
    breaker_scene_t *s = arg;
    int rc = demo_dep_call(s->demo, &s->payments);

    if (rc != 0) {
        return rc;
    }
    return pf_ctx_set_string(ctx, "receipt", "live");
}

/* Stands in for charge while the breaker is open (reason PF_EOPEN). */
static int
charge_from_cache(pf_ctx_t *ctx, void *arg, int reason)
{
    (void)arg;
    (void)reason;
    return pf_ctx_set_string(ctx, "receipt", "cached");
}

static int
make_agent(breaker_scene_t *s, pf_agent_t **out)
{
    pf_breaker_config_t bcfg;
    pf_state_opts_t o;
    pf_breaker_t *b;
    int rc;

    pf_breaker_config_init(&bcfg);
    bcfg.name = "payments-api";
    bcfg.failure_threshold = 5;
    bcfg.recovery_timeout = 6.0;
    bcfg.success_threshold = 2;
    rc = demo_breaker(s->demo, &bcfg, &b);
    if (rc != 0) {
        return rc;
    }
    rc = demo_agent(s->demo, "checkout", PF_EXEC_SEQUENTIAL, NULL, out);
    if (rc != 0) {
        return rc;
    }
    pf_state_opts_init(&o);
    o.breaker = b;
    o.fallback = charge_from_cache;
    o.max_retries = 0;     /* retries are the retry scene's */
    o.dead_letter = false; /* a failed charge is the customer's error */
    rc = pf_agent_add_state(*out, "charge", charge, s, &o);
    if (rc != 0) {
        pf_agent_free(*out);
    }
    return rc;
}

/* One request every 2 s, with the dependency's outage announced. */
static int
play(breaker_scene_t *s, pf_agent_t *a)
{
    demo_t *d = s->demo;

    for (int i = 0; i < REQUESTS; i++) {
        double t = 2.0 * i;
        int rc;

        if (t >= DOWN_FROM && t - 2.0 < DOWN_FROM) {
            demo_advance_to(d, DOWN_FROM);
            demo_say(d, s->payments.name, "goes down: calls now fail (%s)",
                     demo_strerror(s->payments.error));
        }
        if (t >= DOWN_UNTIL && t - 2.0 < DOWN_UNTIL) {
            demo_advance_to(d, DOWN_UNTIL);
            demo_say(d, s->payments.name, "is back up");
        }
        demo_advance_to(d, t);
        rc = pf_agent_run(a, NULL, NULL);
        if (rc != 0 && rc != s->payments.error) {
            return rc;
        }
    }
    return 0;
}

static void
check_and_summarise(breaker_scene_t *s, pf_agent_t *a)
{
    demo_t *d = s->demo;
    pf_breaker_t *b = pf_agent_state_breaker(a, "charge");
    pf_breaker_metrics_t m;
    pf_agent_metrics_t am;

    pf_breaker_metrics(b, &m);
    pf_agent_metrics(a, &am);
    demo_blank(d);
    demo_note(d,
              "breaker payments-api: %llu calls: %llu succeeded, %llu "
              "failed, %llu rejected while open; opened %llu times, now %s",
              (unsigned long long)m.calls, (unsigned long long)m.successes,
              (unsigned long long)m.failures, (unsigned long long)m.rejected,
              (unsigned long long)m.times_opened,
              pf_breaker_state_name(m.state));
    demo_note(d,
              "agent checkout: %llu requests: %llu answered live, %llu "
              "from the cache, %llu failed before the breaker opened",
              (unsigned long long)am.runs_finished,
              (unsigned long long)m.successes, (unsigned long long)am.fallbacks,
              (unsigned long long)am.runs_failed);
    demo_expect(d, demo_count(d, DEMO_OPENED) == 2,
                "the breaker to open twice (it opened %u times)",
                demo_count(d, DEMO_OPENED));
    demo_expect(d, demo_count(d, DEMO_HALF_OPENED) == 2,
                "two half-open periods");
    demo_expect(d,
                demo_count(d, DEMO_CLOSED) == 1 && m.state == PF_BREAKER_CLOSED,
                "the breaker to close again after two good trials");
    demo_expect(d, demo_count(d, DEMO_FALLBACKS) == 4 && m.rejected == 4,
                "4 requests answered by the fallback while open");
}

int
demo_scene_breaker(demo_t *d)
{
    breaker_scene_t *s = demo_alloc(d, sizeof(*s));
    pf_agent_t *a;
    int rc;

    if (s == NULL) {
        return PF_ENOMEM;
    }
    s->demo = d;
    s->payments.name = "payments-api";
    s->payments.down_from = DOWN_FROM;
    s->payments.down_until = DOWN_UNTIL;
    s->payments.error = DEMO_ECONNREFUSED;
    rc = make_agent(s, &a);
    if (rc != 0) {
        return rc;
    }
    demo_note(d, "Agent checkout's state charge calls payments-api through "
                 "breaker payments-api:");
    demo_note(d, "5 failures in a row open it, after 6 s it lets a trial "
                 "call through, 2 good");
    demo_note(d, "trials close it. While it is open, a fallback answers from "
                 "the cache.");
    demo_note(d, "One request every 2 s; payments-api is down from 4 s to "
                 "21 s.");
    demo_blank(d);
    rc = play(s, a);
    if (rc == 0) {
        check_and_summarise(s, a);
        rc = demo_verdict(d);
    }
    pf_agent_free(a);
    return rc;
}
