/* Named shared-memory segments (src/base/shm.c) and process leases
 * (src/base/lease.c): creation, reopening, the race between creators, the
 * checks that refuse a corrupt, truncated, foreign, newer or another
 * user's file, permissions, and telling a live holder from a dead or
 * reused pid. Each test works in a folder of its own under /tmp. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lease.h"
#include "shm.h"
#include "test.h"

typedef struct body {
    _Atomic uint64_t counter;
    uint64_t seeded;
} body_t;

static char g_dir[64];

static int
setup(void **state)
{
    (void)state;
    strcpy(g_dir, "/tmp/pf_shm_XXXXXX");
    return mkdtemp(g_dir) == NULL ? -1 : 0;
}

static int
teardown(void **state)
{
    char cmd[128];

    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void
seed(void *body, void *arg)
{
    ((body_t *)body)->seeded = (uint64_t)(uintptr_t)arg;
}

static pf__shm_spec_t
spec_of(const char *name)
{
    static const uint32_t params[2] = {5, 7};
    pf__shm_spec_t s;

    memset(&s, 0, sizeof(s));
    s.dir = g_dir;
    s.name = name;
    s.kind = PF__SHM_KIND_BREAKER;
    s.body_size = sizeof(body_t);
    s.params = params;
    s.params_len = sizeof(params);
    s.init = seed;
    s.arg = (void *)(uintptr_t)42;
    return s;
}

static void
path_of(const char *name, char *buf)
{
    assert_pf_ok(pf__shm_path(g_dir, name, buf, 256));
}

/* Read, change and write back the file's bytes at off. */
static void
poke(const char *name, size_t off, const void *bytes, size_t n)
{
    char path[256];
    int fd;

    path_of(name, path);
    fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, bytes, n, (off_t)off), (ssize_t)n);
    close(fd);
}

static int
open_rc(const pf__shm_spec_t *s)
{
    pf__shm_t m = {0};
    int rc = pf__shm_open(s, &m);

    pf__shm_close(&m);
    return rc;
}

/* ---- open and share --------------------------------------------------- */

static void
test_shm_created_once_then_opened_and_shared(void **state)
{
    pf__shm_spec_t s = spec_of("one");
    pf__shm_t a = {0};
    pf__shm_t b = {0};
    char path[256];
    struct stat st;

    (void)state;
    assert_pf_ok(pf__shm_open(&s, &a));
    assert_true(a.created);
    assert_int_equal(((body_t *)a.body)->seeded, 42);
    s.arg = (void *)(uintptr_t)7; /* init runs only in the creator */
    assert_pf_ok(pf__shm_open(&s, &b));
    assert_false(b.created);
    assert_int_equal(((body_t *)b.body)->seeded, 42);
    atomic_fetch_add(&((body_t *)a.body)->counter, 3);
    assert_int_equal(atomic_load(&((body_t *)b.body)->counter), 3);
    path_of("one", path);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(st.st_size, PF__SHM_BODY_OFFSET + sizeof(body_t));
    pf__shm_close(&a);
    pf__shm_close(&b);
    pf__shm_close(&b); /* a second close is a no-op */
}

static void
test_shm_state_survives_every_close_and_remove_resets_it(void **state)
{
    pf__shm_spec_t s = spec_of("keep");
    pf__shm_t m = {0};

    (void)state;
    assert_pf_ok(pf__shm_open(&s, &m));
    atomic_store(&((body_t *)m.body)->counter, 9);
    pf__shm_close(&m);
    assert_pf_ok(pf__shm_open(&s, &m));
    assert_false(m.created);
    assert_int_equal(atomic_load(&((body_t *)m.body)->counter), 9);
    pf__shm_close(&m);
    assert_pf_ok(pf__shm_remove(g_dir, "keep"));
    assert_pf_err(pf__shm_remove(g_dir, "keep"), PF_ENOTFOUND);
    assert_pf_ok(pf__shm_open(&s, &m));
    assert_true(m.created);
    assert_int_equal(atomic_load(&((body_t *)m.body)->counter), 0);
    pf__shm_close(&m);
}

static void
test_shm_mode_is_exact_whatever_the_umask(void **state)
{
    pf__shm_spec_t s = spec_of("mode");
    mode_t old = umask(077);
    char path[256];
    struct stat st;

    (void)state;
    s.mode = 0640;
    assert_pf_ok(open_rc(&s));
    umask(old);
    path_of("mode", path);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0640);
}

static void
test_shm_rejects_bad_specs(void **state)
{
    static const char *bad_names[] = {"", ".hidden", "a/b", "..", "sp ace",
                                      "x\n"};
    pf__shm_spec_t s = spec_of("ok");
    pf__shm_t m = {0};
    char buf[8];
    char longname[PF__SHM_NAME_MAX + 2];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
        s.name = bad_names[i];
        assert_pf_err(pf__shm_open(&s, &m), PF_EINVAL);
    }
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    s.name = longname;
    assert_pf_err(pf__shm_open(&s, &m), PF_EINVAL);
    s = spec_of("ok");
    s.mode = 0700;
    assert_pf_err(pf__shm_open(&s, &m), PF_EINVAL);
    s = spec_of("ok");
    s.body_size = 0;
    assert_pf_err(pf__shm_open(&s, &m), PF_EINVAL);
    s = spec_of("ok");
    s.params_len = PF__SHM_PARAMS_MAX + 1;
    assert_pf_err(pf__shm_open(&s, &m), PF_EINVAL);
    s = spec_of("ok");
    s.dir = "relative";
    assert_pf_err(pf__shm_open(&s, &m), PF_EINVAL);
    assert_pf_err(pf__shm_open(NULL, &m), PF_EINVAL);
    assert_pf_err(pf__shm_open(&s, NULL), PF_EINVAL);
    assert_pf_err(pf__shm_path(g_dir, "ok", buf, sizeof(buf)), PF_ERANGE);
    assert_null(m.map);
}

/* ---- refused files ---------------------------------------------------- */

static void
test_shm_refuses_corrupt_truncated_foreign_and_newer_files(void **state)
{
    pf__shm_spec_t s = spec_of("bad");
    char path[256];
    uint32_t v2 = PF__SHM_LAYOUT_VERSION + 1;
    unsigned char flip = 0xff;
    int fd;

    (void)state;
    path_of("bad", path);
    /* empty */
    fd = open(path, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    close(fd);
    assert_pf_err(open_rc(&s), PF_EFORMAT);
    /* foreign: text */
    fd = open(path, O_WRONLY | O_TRUNC);
    for (int i = 0; i < 64; i++) {
        assert_int_equal(write(fd, "not a segment\n", 14), 14);
    }
    close(fd);
    assert_pf_err(open_rc(&s), PF_EFORMAT);
    /* a damaged header byte (params) */
    unlink(path);
    assert_pf_ok(open_rc(&s));
    poke("bad", 40, &flip, 1);
    assert_pf_err(open_rc(&s), PF_EFORMAT);
    /* a newer layout, with a checksum that matches it */
    unlink(path);
    assert_pf_ok(open_rc(&s));
    {
        unsigned char hdr[PF__SHM_HEADER_SIZE];

        fd = open(path, O_RDONLY);
        assert_int_equal(read(fd, hdr, sizeof(hdr)), (ssize_t)sizeof(hdr));
        close(fd);
        memcpy(hdr + 8, &v2, sizeof(v2));
        pf__shm_seal(hdr);
        poke("bad", 0, hdr, sizeof(hdr));
    }
    assert_pf_err(open_rc(&s), PF_EFORMAT);
    /* truncated: header intact, body cut */
    unlink(path);
    assert_pf_ok(open_rc(&s));
    assert_int_equal(truncate(path, PF__SHM_BODY_OFFSET + 4), 0);
    assert_pf_err(open_rc(&s), PF_EFORMAT);
    /* truncated inside the header */
    assert_int_equal(truncate(path, 20), 0);
    assert_pf_err(open_rc(&s), PF_EFORMAT);
    /* grown */
    unlink(path);
    assert_pf_ok(open_rc(&s));
    assert_int_equal(truncate(path, 4096), 0);
    assert_pf_err(open_rc(&s), PF_EFORMAT);
}

static void
test_shm_refuses_another_kind_and_other_parameters(void **state)
{
    pf__shm_spec_t s = spec_of("cfg");
    pf__shm_spec_t other;
    uint32_t params[2] = {5, 8};

    (void)state;
    assert_pf_ok(open_rc(&s));
    other = s;
    other.kind = PF__SHM_KIND_BULKHEAD;
    assert_pf_err(open_rc(&other), PF_EFORMAT);
    other = s;
    other.params = params;
    assert_pf_err(open_rc(&other), PF_EEXIST);
    other = s;
    other.body_size = sizeof(body_t) + 8;
    assert_pf_err(open_rc(&other), PF_EEXIST);
    assert_pf_ok(open_rc(&s)); /* still fine as it was */
}

static void
test_shm_refuses_a_symlink_and_another_users_file(void **state)
{
    pf__shm_spec_t s = spec_of("own");
    pf__shm_spec_t l = spec_of("link");
    char path[256];
    char lpath[256];

    (void)state;
    assert_pf_ok(open_rc(&s));
    path_of("own", path);
    path_of("link", lpath);
    assert_int_equal(symlink(path, lpath), 0);
    assert_pf_err(open_rc(&l), PF_EFORMAT);
    if (geteuid() != 0) {
        skip(); /* only root can give the file away */
    }
    assert_int_equal(chown(path, 65534, 65534), 0);
    errno = 0;
    assert_pf_err(open_rc(&s), PF_ESYSTEM);
    assert_int_equal(errno, EACCES);
}

/* ---- the creation race ------------------------------------------------ */

#define RACERS 8
#define ROUNDS 50

typedef struct racer {
    pthread_barrier_t *go;
    char name[32];
    int created;
    int failed;
} racer_t;

static void *
race(void *p)
{
    racer_t *r = p;
    pf__shm_spec_t s = spec_of(r->name);
    pf__shm_t m = {0};

    pthread_barrier_wait(r->go);
    if (pf__shm_open(&s, &m) != 0) {
        r->failed = 1;
        return NULL;
    }
    r->created = m.created;
    atomic_fetch_add(&((body_t *)m.body)->counter, 1);
    pf__shm_close(&m);
    return NULL;
}

/* Racers opening one new name at once: exactly one creates it, all end on
 * the same segment (the counter sees every one), nothing else is left in
 * the folder. */
static void
test_shm_creators_racing_end_with_one_segment(void **state)
{
    int round;

    (void)state;
    for (round = 0; round < ROUNDS; round++) {
        pthread_barrier_t go;
        pthread_t th[RACERS];
        racer_t r[RACERS];
        pf__shm_spec_t s;
        pf__shm_t m = {0};
        int created = 0;
        int i;

        pthread_barrier_init(&go, NULL, RACERS);
        for (i = 0; i < RACERS; i++) {
            memset(&r[i], 0, sizeof(r[i]));
            r[i].go = &go;
            snprintf(r[i].name, sizeof(r[i].name), "race%d", round);
            assert_int_equal(pthread_create(&th[i], NULL, race, &r[i]), 0);
        }
        for (i = 0; i < RACERS; i++) {
            pthread_join(th[i], NULL);
            assert_int_equal(r[i].failed, 0);
            created += r[i].created;
        }
        pthread_barrier_destroy(&go);
        assert_int_equal(created, 1);
        s = spec_of(r[0].name);
        assert_pf_ok(pf__shm_open(&s, &m));
        assert_int_equal(atomic_load(&((body_t *)m.body)->counter), RACERS);
        pf__shm_close(&m);
    }
    {
        char cmd[160];

        /* ROUNDS segment files and nothing else (no temporary left). */
        snprintf(cmd, sizeof(cmd),
                 "test \"$(ls -A '%s' | grep -vc '^puffinflow-race')\" = 0",
                 g_dir);
        assert_int_equal(system(cmd), 0);
    }
}

/* ---- leases ----------------------------------------------------------- */

static void
test_lease_parses_the_start_time_of_a_stat_line(void **state)
{
    static const char good[] =
        "123 (a) b) c) S 1 123 123 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 "
        "98765 1000 100\n";
    static const char short_line[] = "123 (x) S 1 2 3\n";
    static const char no_paren[] = "123 x S 1 2 3 4 5 6 7 8 9 10 11 12 13\n";
    uint64_t start = 0;

    (void)state;
    assert_pf_ok(pf__lease_parse_stat(good, sizeof(good) - 1, &start));
    assert_int_equal(start, 98765);
    assert_pf_err(pf__lease_parse_stat(short_line, sizeof(short_line) - 1,
                                       &start),
                  PF_EFORMAT);
    assert_pf_err(pf__lease_parse_stat(no_paren, sizeof(no_paren) - 1,
                                       &start),
                  PF_EFORMAT);
    assert_pf_err(pf__lease_parse_stat(NULL, 0, &start), PF_EFORMAT);
}

static void
test_lease_tells_live_dead_and_reused_holders_apart(void **state)
{
    uint64_t self = pf__lease_self();
    uint64_t child_holder;
    pid_t pid;
    int pipefd[2];
    char c;

    (void)state;
    assert_true(self != PF__LEASE_FREE);
    assert_int_equal(pf__lease_pid(self), getpid());
    assert_true(pf__lease_alive(self));
    assert_false(pf__lease_alive(PF__LEASE_FREE));
    /* the same pid with another start time: a reused pid */
    assert_false(pf__lease_alive(self + 1));
    assert_int_equal(pipe(pipefd), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        uint64_t mine = pf__lease_self();

        /* The child computes its own word, not the parent's. */
        _exit(pf__lease_pid(mine) == getpid() && mine != self &&
                      read(pipefd[0], &c, 1) == 1
                  ? 0
                  : 1);
    }
    child_holder = pf__lease_holder_of("/proc", pid);
    assert_true(pf__lease_alive(child_holder));
    assert_int_equal(write(pipefd[1], "x", 1), 1);
    {
        int status = 0;

        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    assert_false(pf__lease_alive(child_holder)); /* reaped: gone */
    close(pipefd[0]);
    close(pipefd[1]);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_shm_created_once_then_opened_and_shared, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_shm_state_survives_every_close_and_remove_resets_it, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_shm_mode_is_exact_whatever_the_umask, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shm_rejects_bad_specs, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_shm_refuses_corrupt_truncated_foreign_and_newer_files, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_shm_refuses_another_kind_and_other_parameters, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_shm_refuses_a_symlink_and_another_users_file, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_shm_creators_racing_end_with_one_segment, setup, teardown),
        cmocka_unit_test(test_lease_parses_the_start_time_of_a_stat_line),
        cmocka_unit_test(test_lease_tells_live_dead_and_reused_holders_apart),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
