/* puffinflow — state shared by the processes of one host.
 *
 * A breaker, bulkhead, rate limiter or retry budget whose config points
 * to a pf_shared_config_t keeps its state in a named shared-memory segment
 * (a file mapped by every process that opens the same name) instead of in
 * the process: one process trips the breaker, all reject; one bulkhead
 * limit, one rate, one retry allowance holds across all processes. The
 * state survives every process exiting and is seen
 * again by the next one to open the name. docs/shared.md says what is
 * shared, what each costs, the file format and the failure modes. */
#ifndef PUFFINFLOW_SHARED_H
#define PUFFINFLOW_SHARED_H

#include "puffinflow/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Where a shared object lives: the file <dir>/puffinflow-<name>.shm. */
typedef struct pf_shared_config {
    /* Segment name, 1..64 characters of A-Z a-z 0-9 . _ - (not '.'
     * first); not copied (used by _new only). Required: NULL is
     * PF_EINVAL. Processes that open one name share one state. */
    const char *name;
    /* Folder, absolute; NULL (default) = $XDG_RUNTIME_DIR when set to an
     * absolute path, else /dev/shm. */
    const char *dir;
    /* File mode when this process creates it: read/write bits only
     * (mode & ~0666 == 0); 0 (default) = 0600. */
    unsigned mode;
} pf_shared_config_t;

/* Fill cfg with the defaults listed above (name NULL). Never fails. */
PF_API void pf_shared_config_init(pf_shared_config_t *cfg);

/* Remove the file of cfg's segment, to start over on purpose (a new
 * configuration, or state to forget). Processes that have it open keep
 * using the old mapping until they free their object; the next object
 * made with the name starts afresh. To put a breaker back to CLOSED
 * for every process without removing anything, use pf_breaker_reset.
 * Returns 0, PF_ENOTFOUND (no such file), PF_EINVAL (bad name or dir) or
 * PF_ESYSTEM. Thread-safe. */
PF_API int pf_shared_remove(const pf_shared_config_t *cfg);

#ifdef __cplusplus
}
#endif

#endif /* PUFFINFLOW_SHARED_H */
