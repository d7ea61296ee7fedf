/* Leases held by processes, for state shared between processes (shm.h):
 * a bulkhead slot or a half-open trial is a 64-bit word in the mapping
 * that names its holder, and is reclaimed once that holder is gone.
 *
 * A holder is a process named by pid and start time (field 22 of
 * /proc/PID/stat, clock ticks since boot), so a pid reused by a new
 * process is not mistaken for the holder. The word packs both:
 * pid << 42 | (start time + 1) & (2^42 - 1); 0 means free. pid_max is at
 * most 2^22, and 2^42 ticks at 100 Hz are 44 years of uptime. */
#ifndef PF_SRC_LEASE_H
#define PF_SRC_LEASE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PF__LEASE_FREE UINT64_C(0)

/* This process's holder word; computed once per process (a fork() child
 * computes its own). 0 when /proc cannot be read: the caller then cannot
 * hold leases (PF_ESYSTEM). Thread-safe. */
uint64_t pf__lease_self(void);

/* The holder word of process pid read under proc_root ("/proc"); 0 when
 * there is no such process or its stat cannot be parsed. */
uint64_t pf__lease_holder_of(const char *proc_root, int pid);

/* The pid a holder word names. */
int pf__lease_pid(uint64_t holder);

/* True when the holder a lease names still runs: the same pid with the
 * same start time. A free word is not alive. Reads /proc: a few µs. */
bool pf__lease_alive(uint64_t holder);

/* Parse the start time (field 22) out of the text of a /proc/PID/stat,
 * len bytes (not NUL-terminated). Returns 0 and stores it, or PF_EFORMAT.
 * Pure; any bytes are safe. */
int pf__lease_parse_stat(const char *text, size_t len, uint64_t *start);

#endif /* PF_SRC_LEASE_H */
