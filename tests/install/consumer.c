/* An outside program: uses the installed headers and library only. */
#include <stdio.h>
#include <string.h>

#include <puffinflow/puffinflow.h>

int
main(void)
{
    pf_clock_t *clock;

    if (strcmp(pf_version(), PF_VERSION_STRING) != 0) {
        fprintf(stderr, "header %s, library %s\n", PF_VERSION_STRING,
                pf_version());
        return 1;
    }
    if (pf_clock_manual_new(&clock) != 0) {
        return 1;
    }
    pf_clock_manual_advance(clock, 5);
    if (pf_clock_now_ns(clock) != 5) {
        return 1;
    }
    pf_clock_free(clock);
    printf("puffinflow %s: %s\n", pf_version(), pf_strerror(PF_EOPEN));
    return 0;
}
