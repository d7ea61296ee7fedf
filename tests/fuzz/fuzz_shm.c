/* Fuzz the checks that stand between a shared-memory segment file and the
 * processes that map it (src/base/shm.c), and the /proc/PID/stat parser of
 * the lease holders (src/base/lease.c).
 *
 * The first input byte picks how the file is made from the rest:
 *
 *     0  the rest is the whole file, as is;
 *     1  a valid segment's bytes (a breaker-kind segment of 16 body bytes)
 *        patched by the rest, read as (offset, value) byte pairs, then
 *        resealed (checksum recomputed) when the pair count is odd, and
 *        cut to a length taken from the last two bytes when they are not
 *        zero; so the fuzzer gets past the checksum to the field checks.
 *
 * The file is written into a private folder and opened with pf__shm_open.
 * Checked: no memory error or undefined behaviour, the return code is 0,
 * PF_EFORMAT or PF_EEXIST, and on success the whole body can be read and
 * written through the mapping (no SIGBUS: the size was checked). The rest
 * of the input is also parsed as a /proc/PID/stat line: 0 or PF_EFORMAT. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "puffinflow/error.h"

#include "fuzz_util.h"
#include "lease.h"
#include "shm.h"

#define BODY 16u

static char dir[64];
static unsigned char valid[PF__SHM_BODY_OFFSET + BODY];

static pf__shm_spec_t
spec(void)
{
    static const uint32_t params[2] = {3, 9};
    pf__shm_spec_t s;

    memset(&s, 0, sizeof(s));
    s.dir = dir;
    s.name = "fuzz";
    s.kind = PF__SHM_KIND_BREAKER;
    s.body_size = BODY;
    s.params = params;
    s.params_len = sizeof(params);
    return s;
}

static void
init_once(void)
{
    pf__shm_spec_t s;
    pf__shm_t m = {0};

    if (dir[0] != '\0') {
        return;
    }
    strcpy(dir, "/tmp/pf_fuzz_shm_XXXXXX");
    FUZZ_CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    s = spec();
    FUZZ_CHECK(pf__shm_open(&s, &m) == 0, "a valid segment");
    memcpy(valid, m.map, sizeof(valid));
    pf__shm_close(&m);
    FUZZ_CHECK(pf__shm_remove(dir, "fuzz") == 0, "remove");
}

static void
write_file(const unsigned char *bytes, size_t n)
{
    char path[128];
    int fd;

    FUZZ_CHECK(pf__shm_path(dir, "fuzz", path, sizeof(path)) == 0, "path");
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    FUZZ_CHECK(fd >= 0, "open %s", path);
    FUZZ_CHECK(n == 0 || write(fd, bytes, n) == (ssize_t)n, "write");
    close(fd);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pf__shm_spec_t s;
    pf__shm_t m = {0};
    uint64_t start;
    int rc;

    init_once();
    if (size == 0) {
        return 0;
    }
    rc = pf__lease_parse_stat((const char *)data + 1, size - 1, &start);
    FUZZ_CHECK(rc == 0 || rc == PF_EFORMAT, "parse_stat rc %d", rc);
    if (data[0] == 1) {
        unsigned char file[sizeof(valid)];
        size_t pairs = (size - 1) / 2;
        size_t len = sizeof(file);
        size_t i;

        memcpy(file, valid, sizeof(file));
        for (i = 0; i < pairs; i++) {
            file[data[1 + 2 * i] % sizeof(file)] = data[2 + 2 * i];
        }
        if (pairs % 2 == 1) {
            pf__shm_seal(file);
        }
        if (size >= 3 && (data[size - 1] | data[size - 2]) != 0) {
            len = ((size_t)data[size - 2] << 8 | data[size - 1]) %
                  (sizeof(file) + 1);
        }
        write_file(file, len);
    } else {
        write_file(data + 1, size - 1);
    }
    s = spec();
    rc = pf__shm_open(&s, &m);
    FUZZ_CHECK(rc == 0 || rc == PF_EFORMAT || rc == PF_EEXIST,
               "shm_open rc %d", rc);
    if (rc == 0) {
        volatile unsigned char *b = m.body;
        unsigned sum = 0;
        size_t i;

        FUZZ_CHECK(!m.created, "the file was there");
        FUZZ_CHECK(m.map_size == PF__SHM_BODY_OFFSET + BODY, "size %zu",
                   m.map_size);
        for (i = 0; i < BODY; i++) {
            sum += b[i];
            b[i] = (unsigned char)sum;
        }
        pf__shm_close(&m);
    }
    pf__shm_remove(dir, "fuzz");
    return 0;
}
