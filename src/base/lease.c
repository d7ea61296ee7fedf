/* Process-held leases (lease.h). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "puffinflow/error.h"

#include "lease.h"

#define PID_SHIFT 42
#define START_MASK ((UINT64_C(1) << PID_SHIFT) - 1)

int
pf__lease_parse_stat(const char *text, size_t len, uint64_t *start)
{
    size_t i;
    size_t close_paren = len;
    unsigned field;
    uint64_t v = 0;
    bool digits = false;

    if (text == NULL || start == NULL) {
        return PF_EFORMAT;
    }
    /* The command name (field 2) is in parentheses and may hold spaces
     * and parentheses itself: fields resume after the last ')'. */
    for (i = len; i > 0; i--) {
        if (text[i - 1] == ')') {
            close_paren = i - 1;
            break;
        }
    }
    if (close_paren == len) {
        return PF_EFORMAT;
    }
    i = close_paren + 1;
    field = 2; /* the field just ended */
    while (i < len && field < 22) {
        if (text[i] == ' ') {
            field++;
            while (i + 1 < len && text[i + 1] == ' ') {
                i++;
            }
        }
        i++;
    }
    if (field != 22) {
        return PF_EFORMAT;
    }
    for (; i < len && text[i] >= '0' && text[i] <= '9'; i++) {
        if (v > (UINT64_MAX - 9) / 10) {
            return PF_EFORMAT;
        }
        v = v * 10 + (uint64_t)(text[i] - '0');
        digits = true;
    }
    if (!digits || (i < len && text[i] != ' ' && text[i] != '\n')) {
        return PF_EFORMAT;
    }
    *start = v;
    return 0;
}

uint64_t
pf__lease_holder_of(const char *proc_root, int pid)
{
    char path[256];
    char buf[1024];
    uint64_t start;
    ssize_t n;
    int fd;

    if (pid <= 0 || (uint64_t)pid >= (UINT64_C(1) << (64 - PID_SHIFT))) {
        return 0;
    }
    snprintf(path, sizeof(path), "%s/%d/stat", proc_root, pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return 0;
    }
    do {
        n = read(fd, buf, sizeof(buf));
    } while (n < 0 && errno == EINTR);
    close(fd);
    if (n <= 0 || pf__lease_parse_stat(buf, (size_t)n, &start) != 0) {
        return 0;
    }
    return ((uint64_t)pid << PID_SHIFT) | ((start + 1) & START_MASK);
}

int
pf__lease_pid(uint64_t holder)
{
    return (int)(holder >> PID_SHIFT);
}

bool
pf__lease_alive(uint64_t holder)
{
    return holder != PF__LEASE_FREE &&
           pf__lease_holder_of("/proc", pf__lease_pid(holder)) == holder;
}

/* This process's word, reset in a fork() child. Relaxed: any thread that
 * computes it stores the same value. */
static _Atomic uint64_t g_self;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void
fork_child(void)
{
    atomic_store_explicit(&g_self, 0, memory_order_relaxed);
}

static void
fork_register(void)
{
    (void)pthread_atfork(NULL, NULL, fork_child);
}

uint64_t
pf__lease_self(void)
{
    uint64_t v;

    pthread_once(&g_once, fork_register);
    v = atomic_load_explicit(&g_self, memory_order_relaxed);
    if (v == 0) {
        v = pf__lease_holder_of("/proc", (int)getpid());
        atomic_store_explicit(&g_self, v, memory_order_relaxed);
    }
    return v;
}
