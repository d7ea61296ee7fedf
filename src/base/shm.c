/* Named shared-memory segments backed by files (shm.h). The header is
 * checked on a copy read with pread before anything is mapped, and
 * creation publishes a complete file with link(), so no reader ever sees a
 * half-built segment. */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "puffinflow/error.h"
#include "puffinflow/shared.h"

#include "shm.h"

static const unsigned char magic[8] = {'P', 'F', 'S', 'H', 'M', 0, 0x1a, '\n'};

/* The fixed part as it lies in the file (native byte order: the store is
 * host-local). The checksum covers bytes [0, offsetof(checksum)). */
typedef struct header {
    unsigned char magic[8];
    uint32_t version;
    uint32_t kind;
    uint32_t header_size;
    uint32_t body_size;
    uint64_t file_size;
    unsigned char params[PF__SHM_PARAMS_MAX];
    uint64_t reserved[2]; /* zero in version 1 */
    uint64_t checksum;
    uint64_t pad;
} header_t;

_Static_assert(sizeof(header_t) == PF__SHM_HEADER_SIZE, "header layout");
_Static_assert(PF__SHM_BODY_OFFSET >= PF__SHM_HEADER_SIZE, "body offset");

/* FNV-1a, 64 bits: enough to tell a damaged header from a good one. */
static uint64_t
checksum_of(const header_t *h)
{
    const unsigned char *p = (const unsigned char *)h;
    size_t n = offsetof(header_t, checksum);
    uint64_t x = UINT64_C(0xcbf29ce484222325);
    size_t i;

    for (i = 0; i < n; i++) {
        x ^= p[i];
        x *= UINT64_C(0x100000001b3);
    }
    return x;
}

void
pf__shm_seal(void *hdr)
{
    header_t h;

    memcpy(&h, hdr, sizeof(h));
    h.checksum = checksum_of(&h);
    memcpy(hdr, &h, sizeof(h));
}

static bool
name_ok(const char *name)
{
    size_t i;

    if (name == NULL || name[0] == '\0' || name[0] == '.') {
        return false;
    }
    for (i = 0; name[i] != '\0'; i++) {
        char c = name[i];

        if (i >= PF__SHM_NAME_MAX ||
            !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-')) {
            return false;
        }
    }
    return true;
}

static const char *
default_dir(void)
{
    const char *d = getenv("XDG_RUNTIME_DIR");

    return d != NULL && d[0] == '/' ? d : "/dev/shm";
}

int
pf__shm_path(const char *dir, const char *name, char *buf, size_t size)
{
    int n;

    if (!name_ok(name) || buf == NULL) {
        return PF_EINVAL;
    }
    if (dir == NULL) {
        dir = default_dir();
    }
    if (dir[0] != '/') {
        return PF_EINVAL;
    }
    n = snprintf(buf, size, "%s/puffinflow-%s.shm", dir, name);
    return n < 0 || (size_t)n >= size ? PF_ERANGE : 0;
}

static void
fill_header(header_t *h, const pf__shm_spec_t *spec)
{
    memset(h, 0, sizeof(*h));
    memcpy(h->magic, magic, sizeof(magic));
    h->version = PF__SHM_LAYOUT_VERSION;
    h->kind = spec->kind;
    h->header_size = PF__SHM_HEADER_SIZE;
    h->body_size = spec->body_size;
    h->file_size = (uint64_t)PF__SHM_BODY_OFFSET + spec->body_size;
    if (spec->params_len > 0) {
        memcpy(h->params, spec->params, spec->params_len);
    }
    h->checksum = checksum_of(h);
}

static bool
spec_ok(const pf__shm_spec_t *spec)
{
    return spec != NULL && name_ok(spec->name) &&
           (spec->dir == NULL || spec->dir[0] == '/') &&
           (spec->mode & ~0666u) == 0 && spec->kind != 0 &&
           spec->body_size >= 1 && spec->body_size <= PF__SHM_BODY_MAX &&
           spec->params_len <= PF__SHM_PARAMS_MAX &&
           (spec->params != NULL || spec->params_len == 0);
}

int
pf__shm_check(const void *file, size_t len, uint64_t file_size,
              const pf__shm_spec_t *spec)
{
    header_t h;
    header_t want;

    if (file == NULL || spec == NULL || len < sizeof(h) ||
        file_size < sizeof(h)) {
        return PF_EFORMAT; /* truncated */
    }
    memcpy(&h, file, sizeof(h));
    if (memcmp(h.magic, magic, sizeof(magic)) != 0) {
        return PF_EFORMAT; /* not a segment */
    }
    if (h.version != PF__SHM_LAYOUT_VERSION) {
        return PF_EFORMAT; /* newer (or unknown) layout */
    }
    if (h.checksum != checksum_of(&h)) {
        return PF_EFORMAT; /* damaged header */
    }
    if (h.header_size != PF__SHM_HEADER_SIZE || h.reserved[0] != 0 ||
        h.reserved[1] != 0 || h.body_size == 0 ||
        h.body_size > PF__SHM_BODY_MAX ||
        h.file_size != (uint64_t)PF__SHM_BODY_OFFSET + h.body_size ||
        h.file_size != file_size) {
        return PF_EFORMAT; /* inconsistent or truncated */
    }
    if (h.kind != spec->kind) {
        return PF_EFORMAT; /* another kind of object */
    }
    if (!spec_ok(spec)) {
        return PF_EINVAL;
    }
    fill_header(&want, spec);
    if (h.body_size != want.body_size ||
        memcmp(h.params, want.params, sizeof(h.params)) != 0) {
        return PF_EEXIST; /* same kind, other configuration */
    }
    return 0;
}

static int
sys_error(void)
{
    return errno == ENOMEM ? PF_ENOMEM : PF_ESYSTEM;
}

/* Map an existing, open segment file after checking it. Closes fd. */
static int
open_existing(int fd, const pf__shm_spec_t *spec, pf__shm_t *out)
{
    struct stat st;
    header_t h;
    ssize_t n;
    void *map;
    int rc;

    if (fstat(fd, &st) != 0) {
        rc = sys_error();
        goto done;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = PF_EFORMAT;
        goto done;
    }
    if (st.st_uid != geteuid()) {
        errno = EACCES;
        rc = PF_ESYSTEM;
        goto done;
    }
    do {
        n = pread(fd, &h, sizeof(h), 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        rc = sys_error();
        goto done;
    }
    rc = pf__shm_check(&h, (size_t)n, (uint64_t)st.st_size, spec);
    if (rc != 0) {
        goto done;
    }
    map = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED,
               fd, 0);
    if (map == MAP_FAILED) {
        rc = sys_error();
        goto done;
    }
    out->map = map;
    out->map_size = (size_t)st.st_size;
    out->body = (char *)map + PF__SHM_BODY_OFFSET;
    out->created = false;
done:
    close(fd);
    return rc;
}

/* Build a complete segment under a temporary name and publish it as path.
 * Returns 0 (created, *out filled), PF_EEXIST when another creator
 * published first (nothing left behind), or an error. */
static int
create_new(const char *path, const pf__shm_spec_t *spec, pf__shm_t *out)
{
    static atomic_uint counter;
    char tmp[4096 + 64];
    size_t size = (size_t)PF__SHM_BODY_OFFSET + spec->body_size;
    header_t h;
    void *map;
    int fd;
    int rc;

    if (snprintf(tmp, sizeof(tmp), "%s.%ld.%u.tmp", path, (long)getpid(),
                 atomic_fetch_add(&counter, 1)) >= (int)sizeof(tmp)) {
        return PF_ERANGE;
    }
    fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        return sys_error();
    }
    /* The exact mode asked for, whatever the umask. */
    if (fchmod(fd, spec->mode == 0 ? 0600 : spec->mode) != 0 ||
        ftruncate(fd, (off_t)size) != 0) {
        rc = sys_error();
        goto fail_file;
    }
    map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        rc = sys_error();
        goto fail_file;
    }
    fill_header(&h, spec);
    memcpy(map, &h, sizeof(h));
    if (spec->init != NULL) {
        spec->init((char *)map + PF__SHM_BODY_OFFSET, spec->arg);
    }
    if (link(tmp, path) != 0) {
        rc = errno == EEXIST ? PF_EEXIST : sys_error();
        munmap(map, size);
        goto fail_file;
    }
    unlink(tmp);
    close(fd);
    out->map = map;
    out->map_size = size;
    out->body = (char *)map + PF__SHM_BODY_OFFSET;
    out->created = true;
    return 0;
fail_file:
    unlink(tmp);
    close(fd);
    return rc;
}

int
pf__shm_open(const pf__shm_spec_t *spec, pf__shm_t *out)
{
    char path[4096];
    int attempt;
    int rc;

    if (!spec_ok(spec) || out == NULL) {
        return PF_EINVAL;
    }
    rc = pf__shm_path(spec->dir, spec->name, path, sizeof(path));
    if (rc != 0) {
        return rc;
    }
    /* Open, else create; a creator that lost the race opens the winner's
     * file. A file removed between two steps costs another round. */
    for (attempt = 0; attempt < 8; attempt++) {
        int fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);

        if (fd >= 0) {
            return open_existing(fd, spec, out);
        }
        if (errno == ELOOP) {
            return PF_EFORMAT; /* a symlink where the file should be */
        }
        if (errno != ENOENT) {
            return sys_error();
        }
        rc = create_new(path, spec, out);
        if (rc != PF_EEXIST) {
            return rc;
        }
    }
    return PF_ESYSTEM;
}

void
pf__shm_close(pf__shm_t *shm)
{
    if (shm == NULL || shm->map == NULL) {
        return;
    }
    munmap(shm->map, shm->map_size);
    shm->map = NULL;
    shm->body = NULL;
}

int
pf__shm_remove(const char *dir, const char *name)
{
    char path[4096];
    int rc = pf__shm_path(dir, name, path, sizeof(path));

    if (rc != 0) {
        return rc;
    }
    if (unlink(path) != 0) {
        return errno == ENOENT ? PF_ENOTFOUND : PF_ESYSTEM;
    }
    return 0;
}

/* ---- the public face (shared.h) --------------------------------------- */

void
pf_shared_config_init(pf_shared_config_t *cfg)
{
    if (cfg == NULL) {
        return;
    }
    memset(cfg, 0, sizeof(*cfg));
    cfg->name = NULL;
    cfg->dir = NULL;
    cfg->mode = 0;
}

int
pf_shared_remove(const pf_shared_config_t *cfg)
{
    if (cfg == NULL) {
        return PF_EINVAL;
    }
    return pf__shm_remove(cfg->dir, cfg->name);
}
