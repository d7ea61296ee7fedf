/* A named shared-memory segment backed by a file: the host-local store of
 * the patterns' shared state (docs/shared.md).
 *
 * A segment is one file, <dir>/puffinflow-<name>.shm, mapped MAP_SHARED by
 * every process that opens the name. It starts with a fixed header (magic,
 * layout version, object kind, sizes, the object's fixed parameters and a
 * checksum of all that); the object's body follows at PF__SHM_BODY_OFFSET.
 *
 * Creation is atomic: the creator builds the whole file under a temporary
 * name and link()s it to the final name, which fails with EEXIST when
 * another creator got there first; the loser then opens the winner's file.
 * So a file under the final name is always complete, and two creators end
 * with one segment.
 *
 * Opening checks, on a copy of the header read with pread (never through
 * the mapping, so a bad file cannot crash the reader): a regular file (no
 * symlink), owned by this user, at least a header long, with the magic,
 * this layout version or older, the kind, sizes and parameters asked for,
 * a file size equal to the header's, and a matching checksum. Bad content
 * is PF_EFORMAT; another owner is PF_ESYSTEM with errno EACCES; a segment
 * of this kind with other parameters is PF_EEXIST.
 *
 * A file truncated *while mapped* by a foreign hand would fault readers
 * (SIGBUS): the store trusts the users who can write its folder, which is
 * why the file is 0600 and checked for its owner. */
#ifndef PF_SRC_SHM_H
#define PF_SRC_SHM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PF__SHM_LAYOUT_VERSION 1u
#define PF__SHM_HEADER_SIZE 128u  /* the fixed part, checksum included */
#define PF__SHM_BODY_OFFSET 128u  /* bodies start cache-line aligned */
#define PF__SHM_PARAMS_MAX 64u    /* bytes of an object's fixed parameters */
#define PF__SHM_NAME_MAX 64u      /* a name: [A-Za-z0-9._-], not '.' first */
#define PF__SHM_BODY_MAX (1u << 20)

/* Object kinds: the first word after the version, so a breaker's segment
 * is never opened as a bulkhead. Append only. */
enum {
    PF__SHM_KIND_BREAKER = 1,
    PF__SHM_KIND_BULKHEAD = 2,
    PF__SHM_KIND_RATELIMIT = 3,
    PF__SHM_KIND_RETRY_BUDGET = 4,
};

/* What to open. dir NULL = the default folder ($XDG_RUNTIME_DIR when set
 * and absolute, else /dev/shm). mode 0 = 0600; otherwise only read and
 * write bits (mode & ~0666 == 0). params (params_len <= PF__SHM_PARAMS_MAX
 * bytes, zero-padded) are the object's fixed configuration: a later open
 * with others is PF_EEXIST. init, when not NULL, fills a new body (zeroed
 * before) in the creator, before any other process can see it. */
typedef struct pf__shm_spec {
    const char *dir;
    const char *name;
    unsigned mode;
    uint32_t kind;
    uint32_t body_size; /* 1 .. PF__SHM_BODY_MAX */
    const void *params;
    size_t params_len;
    void (*init)(void *body, void *arg);
    void *arg;
} pf__shm_spec_t;

/* An open segment: the whole mapping, and its body. */
typedef struct pf__shm {
    void *map;
    size_t map_size;
    void *body;
    bool created; /* this open made the file */
} pf__shm_t;

/* Open the segment spec names, creating it when it does not exist.
 * Returns 0 and fills *out, or PF_EINVAL (bad spec: name, mode, sizes),
 * PF_EFORMAT (corrupt, truncated, foreign or newer file), PF_EEXIST (same
 * kind, other parameters or size), PF_ESYSTEM (a system call failed, also
 * a file owned by another user: errno EACCES), PF_ENOMEM. On error
 * nothing is left open. Thread-safe. */
int pf__shm_open(const pf__shm_spec_t *spec, pf__shm_t *out);

/* Unmap shm; the file stays. NULL map is a no-op. */
void pf__shm_close(pf__shm_t *shm);

/* Remove the file of name in dir (NULL = default). Processes that have it
 * open keep their mapping; the next open creates a fresh segment. Returns
 * 0, PF_ENOTFOUND, PF_EINVAL (bad name) or PF_ESYSTEM. */
int pf__shm_remove(const char *dir, const char *name);

/* Write the segment's path into buf (size bytes). Returns 0, PF_EINVAL
 * (bad name or dir) or PF_ERANGE (buf too small). */
int pf__shm_path(const char *dir, const char *name, char *buf, size_t size);

/* Check a segment file's first len bytes (file_size is the file's size)
 * against spec's kind, body size and parameters. Pure: touches nothing
 * else; any bytes are safe. Returns 0, PF_EFORMAT or PF_EEXIST as
 * pf__shm_open does. */
int pf__shm_check(const void *file, size_t len, uint64_t file_size,
                  const pf__shm_spec_t *spec);

/* Write the checksum of a PF__SHM_HEADER_SIZE-byte header at hdr, as a
 * creator does (tests and the fuzz harness build headers with it). */
void pf__shm_seal(void *hdr);

#endif /* PF_SRC_SHM_H */
