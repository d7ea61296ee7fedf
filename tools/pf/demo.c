/* pf demo: a narrated tour of what the library does, printed as it happens.
 * It grows as the patterns land; --quick runs it on a manual clock so it
 * finishes at once (the tests run it that way). */
#include <stdio.h>
#include <string.h>

#include "puffinflow/puffinflow.h"

#include "pf.h"

static void
say(const pf_clock_t *clock, const char *what)
{
    printf("[%8.3f s] %s\n", pf_clock_now(clock), what);
    fflush(stdout);
}

/* Deadlines and cancellation: a token with a deadline bounds a wait. */
static int
demo_deadlines(pf_clock_t *clock)
{
    pf_deadline_t d = pf_deadline_in(clock, 2.0);
    pf_token_t *tok;
    int rc;

    printf("\n== deadlines and cancellation\n");
    rc = pf_token_new(NULL, &d, &tok);
    if (rc != 0) {
        return rc;
    }
    say(clock, "a token whose deadline is 2 s away");
    pf_clock_manual_advance(clock, PF_NS_PER_SEC);
    printf("           remaining: %.1f s, expired: %s\n",
           pf_deadline_remaining(&d), pf_deadline_expired(&d) ? "yes" : "no");
    pf_clock_manual_advance(clock, PF_NS_PER_SEC);
    rc = pf_token_wait(tok, NULL);
    printf("           waiting on the token now returns %s (%s)\n",
           pf_error_name(rc), pf_strerror(rc));
    pf_token_cancel(tok);
    say(clock, "cancelled: every wait given the token returns at once");
    printf("           waiting now returns %s\n",
           pf_error_name(pf_token_wait(tok, NULL)));
    pf_token_free(tok);
    return 0;
}

int
pf_tool_demo(int argc, char **argv)
{
    pf_clock_t *clock;
    int rc;

    (void)argc;
    (void)argv;
    rc = pf_clock_manual_new(&clock);
    if (rc != 0) {
        fprintf(stderr, "pf demo: %s\n", pf_strerror(rc));
        return 1;
    }
    printf("puffinflow %s demo (time runs on a manual clock)\n", pf_version());
    rc = demo_deadlines(clock);
    pf_clock_free(clock);
    if (rc != 0) {
        fprintf(stderr, "pf demo: %s\n", pf_strerror(rc));
        return 1;
    }
    printf("\ndemo finished\n");
    return 0;
}
