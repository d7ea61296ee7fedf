/* HTTP transfers on the reactor through libcurl's multi socket interface.
 *
 * One client = one CURLM, guarded by the client's one lock: libcurl's
 * multi handle is not thread-safe, and the reactor's callbacks run on any
 * worker. Every call into libcurl is made under the lock, and libcurl's
 * socket and timer callbacks, which run inside those calls, assume it is
 * held (they never take it).
 *
 * Sockets: CURLMOPT_SOCKETFUNCTION tells which fds to watch for what. Each
 * watched socket has a `watch` (attached with curl_multi_assign) and at
 * most one armed one-shot fd wait, an `arm`. When the wait fires, its
 * callback calls curl_multi_socket_action for the fd and then re-arms it,
 * unless libcurl removed the socket or changed its interest meanwhile.
 * An arm whose watch was removed or changed is detached (its watch set to
 * NULL) and aborted; its callback then only frees it.
 *
 * Timer: CURLMOPT_TIMERFUNCTION sets a timerfd (CLOCK_MONOTONIC), watched
 * by one arm like a socket. libcurl's timeouts are real time, so they stay
 * real on an executor with a manual clock; the transfers' own deadlines
 * are waits on the executor (any clock).
 *
 * Transfers: STARTED -> DONE under the client's lock, by whichever comes
 * first: libcurl's CURLMSG_DONE, the deadline wait, an abort, or the
 * client's free. The winner removes the easy handle (which closes an
 * unfinished transfer's connection), withdraws the deadline wait and calls
 * done once, outside the lock.
 *
 * Memory: a transfer holds a reference per party: the owner (when out was
 * given), the client until done has returned, and the deadline wait until
 * its callback has returned. The client holds one for its owner, one per
 * live transfer and one per armed wait; the last one frees it. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "puffinflow/curl.h"
#include "puffinflow/error.h"

typedef enum { XFER_STARTED, XFER_DONE } xfer_phase_t;

struct pf_curl_xfer {
    pf_curl_client_t *c;
    CURL *easy;
    pf_curl_done_fn done;
    void *arg;
    atomic_int refs;
    /* under c->lock: */
    xfer_phase_t phase;
    int result;    /* once DONE */
    CURLcode code; /* once DONE */
    pf_wait_t *deadline_wait;
    pf_curl_xfer_t *prev;
    pf_curl_xfer_t *next;
};

typedef struct watch watch_t;

/* One armed fd wait, for a socket's watch or for the timerfd. */
typedef struct arm arm_t;
struct arm {
    pf_curl_client_t *c;
    watch_t *watch; /* NULL: detached, only free it; under c->lock */
    pf_wait_t *w;
    /* Once detached, until its callback runs (under c->lock): */
    curl_socket_t fd;
    bool close_fd; /* libcurl closed fd meanwhile: the callback closes it */
    arm_t *prev;   /* in the client's list of detached arms */
    arm_t *next;
};

struct watch {
    curl_socket_t fd;
    unsigned events; /* PF_WAIT_*, what libcurl wants now */
    arm_t *arm;      /* the armed wait, or NULL while its callback runs */
    bool busy;       /* its callback is in curl_multi_socket_action */
    bool removed;    /* libcurl removed it while busy: free after */
    watch_t *prev;   /* in the client's list of socket watches */
    watch_t *next;
};

/* Immutable after _new: ex, multi, tfd. refs is atomic. All else is
 * under lock. */
struct pf_curl_client {
    pthread_mutex_t lock;
    pf_executor_t *ex;
    CURLM *multi;
    int tfd;
    watch_t timer; /* the timerfd's watch */
    atomic_int refs;
    bool closing;
    unsigned pending;
    pf_curl_xfer_t *xfers; /* started, not DONE */
    watch_t *watches;      /* socket watches libcurl has not removed */
    arm_t *detached;       /* detached arms whose callback has not run */
};

/* Completions gathered under the lock and run after it. */
typedef struct done_list {
    pf_curl_xfer_t *head;
} done_list_t;

static pthread_once_t g_global_once = PTHREAD_ONCE_INIT;
static CURLcode g_global_rc;

static void
global_init(void)
{
    g_global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

void
pf_curl_config_init(pf_curl_config_t *cfg)
{
    if (cfg == NULL) {
        return;
    }
    memset(cfg, 0, sizeof(*cfg));
}

/* ---- references ------------------------------------------------------- */

static void
client_ref(pf_curl_client_t *c)
{
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
}

static void
client_unref(pf_curl_client_t *c)
{
    /* acq_rel: the last holder sees every write made before the others
     * let go, under the lock or not. */
    if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1) {
        pthread_mutex_destroy(&c->lock);
        if (c->tfd >= 0) {
            close(c->tfd);
        }
        free(c);
    }
}

static void
xfer_unref(pf_curl_xfer_t *x)
{
    if (atomic_fetch_sub_explicit(&x->refs, 1, memory_order_acq_rel) == 1) {
        pf_curl_client_t *c = x->c;

        free(x);
        client_unref(c);
    }
}

/* ---- arms: one-shot fd waits ------------------------------------------ */

static void on_arm(int result, void *arg);

/* Arm a wait for watch's fd and events. Under c->lock. On failure the
 * socket is simply not watched: libcurl's timer still drives it (slowly),
 * and a deadline still ends its transfers. */
static void
arm_watch(pf_curl_client_t *c, watch_t *watch)
{
    arm_t *a = malloc(sizeof(*a));

    if (a == NULL) {
        return;
    }
    a->c = c;
    a->watch = watch;
    client_ref(c);
    if (pf_executor_wait_fd(c->ex, watch->fd, watch->events, NULL, on_arm, a,
                            &a->w) != 0) {
        free(a);
        atomic_fetch_sub_explicit(&c->refs, 1, memory_order_relaxed);
        return;
    }
    watch->arm = a;
}

/* Detach and abort watch's armed wait, if any. Under c->lock. The arm
 * stays on c's detached list until its callback runs: its fd must stay
 * open until then (the reactor may be taking it out of its epoll set
 * right now), so a close by libcurl meanwhile is left to that callback
 * (on_close_socket). */
static void
disarm_watch(pf_curl_client_t *c, watch_t *watch)
{
    arm_t *a = watch->arm;

    if (a == NULL) {
        return;
    }
    watch->arm = NULL;
    a->watch = NULL;
    a->fd = watch->fd;
    a->close_fd = false;
    a->prev = NULL;
    a->next = c->detached;
    if (c->detached != NULL) {
        c->detached->prev = a;
    }
    c->detached = a;
    pf_wait_abort(a->w);
}

/* Take detached arm a off c's list; close its fd if libcurl asked to.
 * Under c->lock. */
static void
detached_done(pf_curl_client_t *c, arm_t *a)
{
    if (a->prev != NULL) {
        a->prev->next = a->next;
    } else {
        c->detached = a->next;
    }
    if (a->next != NULL) {
        a->next->prev = a->prev;
    }
    if (a->close_fd) {
        arm_t *o;

        for (o = c->detached; o != NULL; o = o->next) {
            if (o->fd == a->fd) {
                return; /* another is pending on fd: the last closes it */
            }
        }
        close(a->fd);
    }
}

static void
watch_unlink(pf_curl_client_t *c, watch_t *watch)
{
    if (watch->prev != NULL) {
        watch->prev->next = watch->next;
    } else {
        c->watches = watch->next;
    }
    if (watch->next != NULL) {
        watch->next->prev = watch->prev;
    }
    watch->prev = NULL;
    watch->next = NULL;
}

/* ---- completions ------------------------------------------------------ */

static int
result_of(CURLcode code)
{
    switch (code) {
    case CURLE_OK:
        return 0;
    case CURLE_OPERATION_TIMEDOUT:
        return PF_ETIMEDOUT;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return PF_ENOTFOUND;
    default:
        return PF_ESYSTEM;
    }
}

static void
xfer_unlink_started(pf_curl_client_t *c, pf_curl_xfer_t *x)
{
    if (x->prev != NULL) {
        x->prev->next = x->next;
    } else {
        c->xfers = x->next;
    }
    if (x->next != NULL) {
        x->next->prev = x->prev;
    }
    c->pending--;
}

/* Give easy back as it came, but for our options: connections it opened
 * keep our close-socket callback while they live in the client's cache,
 * and a later transfer of easy elsewhere must not call it. */
static void
easy_release(CURL *easy)
{
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, NULL);
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETDATA, NULL);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
}

/* Take x out of the client with its outcome: remove its easy handle
 * (closing an unfinished transfer's connection), unlink it, withdraw its
 * deadline and queue it on dl. Under c->lock, x STARTED. */
static void
xfer_end(pf_curl_client_t *c, pf_curl_xfer_t *x, int result, CURLcode code,
         done_list_t *dl)
{
    x->phase = XFER_DONE;
    x->result = result;
    x->code = code;
    curl_multi_remove_handle(c->multi, x->easy);
    easy_release(x->easy);
    xfer_unlink_started(c, x);
    pf_wait_abort(x->deadline_wait);
    x->next = dl->head; /* the link now threads the done queue */
    dl->head = x;
}

/* Fill r for x. Outside the lock: easy is out of the multi handle, and
 * nobody else touches it until done has it. */
static void
fill_result(const pf_curl_xfer_t *x, pf_curl_result_t *r)
{
    struct curl_header *h = NULL;
    long status = 0;
    double s;

    memset(r, 0, sizeof(*r));
    r->result = x->result;
    r->curl_code = (int)x->code;
    r->easy = x->easy;
    r->retry_after = -1.0;
    if (curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status) ==
        CURLE_OK) {
        r->http_status = status;
    }
    if (r->http_status != 0 &&
        curl_easy_header(x->easy, "Retry-After", 0, CURLH_HEADER, -1, &h) ==
            CURLHE_OK &&
        pf_curl_retry_after_parse(h->value, (int64_t)time(NULL), &s) == 0) {
        r->retry_after = s;
    }
    r->failure = pf_curl_is_failure(r->result, r->http_status);
    r->error = x->code == CURLE_OK ? "" : curl_easy_strerror(x->code);
}

/* Call done for each queued transfer: outside the lock. */
static void
run_done(done_list_t *dl)
{
    pf_curl_xfer_t *x = dl->head;

    while (x != NULL) {
        pf_curl_xfer_t *next = x->next;
        pf_curl_result_t r;

        fill_result(x, &r);
        x->done(&r, x->arg);
        xfer_unref(x);
        x = next;
    }
}

/* Collect libcurl's finished transfers. Under c->lock. */
static void
collect(pf_curl_client_t *c, done_list_t *dl)
{
    CURLMsg *m;
    int left;

    while ((m = curl_multi_info_read(c->multi, &left)) != NULL) {
        pf_curl_xfer_t *x = NULL;

        if (m->msg != CURLMSG_DONE) {
            continue;
        }
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        if (x != NULL && x->phase == XFER_STARTED) {
            CURLcode code = m->data.result;

            xfer_end(c, x, result_of(code), code, dl);
        }
    }
}

/* ---- libcurl's callbacks (under c->lock, inside a libcurl call) ------ */

static int
on_socket(CURL *easy, curl_socket_t fd, int what, void *cp, void *sockp)
{
    pf_curl_client_t *c = cp;
    watch_t *watch = sockp;
    unsigned events = 0;

    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (watch != NULL) {
            disarm_watch(c, watch);
            curl_multi_assign(c->multi, fd, NULL);
            watch_unlink(c, watch);
            if (watch->busy) {
                watch->removed = true; /* its callback frees it */
            } else {
                free(watch);
            }
        }
        return 0;
    }
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT) {
        events |= PF_WAIT_READABLE;
    }
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT) {
        events |= PF_WAIT_WRITABLE;
    }
    if (watch == NULL) {
        watch = calloc(1, sizeof(*watch));
        if (watch == NULL) {
            return -1; /* libcurl fails the transfers on this socket */
        }
        watch->fd = fd;
        curl_multi_assign(c->multi, fd, watch);
        watch->next = c->watches;
        if (c->watches != NULL) {
            c->watches->prev = watch;
        }
        c->watches = watch;
    } else if (watch->events == events && (watch->arm != NULL || watch->busy)) {
        return 0;
    }
    watch->events = events;
    disarm_watch(c, watch);
    if (!watch->busy) {
        arm_watch(c, watch); /* else its callback re-arms it */
    }
    return 0;
}

static int
on_timer(CURLM *multi, long timeout_ms, void *cp)
{
    pf_curl_client_t *c = cp;
    struct itimerspec its;

    (void)multi;
    memset(&its, 0, sizeof(its));
    if (timeout_ms == 0) {
        its.it_value.tv_nsec = 1; /* now: the earliest a timerfd fires */
    } else if (timeout_ms > 0) {
        its.it_value.tv_sec = timeout_ms / 1000;
        its.it_value.tv_nsec = (timeout_ms % 1000) * 1000000L;
    }
    /* timeout_ms -1: all zero, disarmed. */
    return timerfd_settime(c->tfd, 0, &its, NULL) == 0 ? 0 : -1;
}

/* CURLOPT_CLOSESOCKETFUNCTION of every transfer: libcurl closes fd.
 * Under c->lock (libcurl closes sockets only inside the calls the client
 * makes). When detached arms are still pending on fd, the last of their
 * callbacks closes it instead. */
static int
on_close_socket(void *cp, curl_socket_t fd)
{
    pf_curl_client_t *c = cp;
    bool deferred = false;
    arm_t *a;

    for (a = c->detached; a != NULL; a = a->next) {
        if (a->fd == fd) {
            a->close_fd = true;
            deferred = true;
        }
    }
    return deferred ? 0 : close(fd);
}

/* ---- the reactor's callbacks ------------------------------------------ */

static void
on_arm(int result, void *arg)
{
    arm_t *a = arg;
    pf_curl_client_t *c = a->c;
    watch_t *watch;
    done_list_t dl = {NULL};

    pthread_mutex_lock(&c->lock);
    pf_wait_free(a->w);
    watch = a->watch;
    if (watch == NULL) {
        detached_done(c, a);
        goto out;
    }
    watch->arm = NULL;
    if (result != 0 || c->multi == NULL) {
        goto out; /* the executor is being freed: nothing more to do */
    }
    watch->arm = NULL;
    watch->busy = true;
    if (watch == &c->timer) {
        uint64_t ticks;
        int running;

        while (read(c->tfd, &ticks, sizeof(ticks)) < 0 && errno == EINTR) {
        }
        curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    } else {
        int mask = 0;
        int running;

        mask |= (watch->events & PF_WAIT_READABLE) ? CURL_CSELECT_IN : 0;
        mask |= (watch->events & PF_WAIT_WRITABLE) ? CURL_CSELECT_OUT : 0;
        curl_multi_socket_action(c->multi, watch->fd, mask, &running);
    }
    collect(c, &dl);
    watch->busy = false;
    if (watch->removed) {
        free(watch);
    } else if (watch->arm == NULL && !c->closing) {
        arm_watch(c, watch);
    }
out:
    pthread_mutex_unlock(&c->lock);
    free(a);
    run_done(&dl);
    client_unref(c);
}

static void
on_deadline(int result, void *arg)
{
    pf_curl_xfer_t *x = arg;
    pf_curl_client_t *c = x->c;
    done_list_t dl = {NULL};

    pthread_mutex_lock(&c->lock);
    pf_wait_free(x->deadline_wait);
    x->deadline_wait = NULL;
    if (result == 0 && x->phase == XFER_STARTED) {
        xfer_end(c, x, PF_ETIMEDOUT, CURLE_ABORTED_BY_CALLBACK, &dl);
    }
    pthread_mutex_unlock(&c->lock);
    run_done(&dl);
    xfer_unref(x);
}

/* ---- the client ------------------------------------------------------- */

static int
client_setup(pf_curl_client_t *c, const pf_curl_config_t *cfg)
{
    bool ok;

    c->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (c->tfd < 0) {
        return PF_ESYSTEM;
    }
    c->multi = curl_multi_init();
    if (c->multi == NULL) {
        return PF_ESYSTEM;
    }
    ok = curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_socket) ==
             CURLM_OK &&
         curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c) == CURLM_OK &&
         curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_timer) ==
             CURLM_OK &&
         curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c) == CURLM_OK &&
         curl_multi_setopt(c->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS,
                           cfg->max_connections) == CURLM_OK &&
         curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                           cfg->max_host_connections) == CURLM_OK;
    return ok ? 0 : PF_ESYSTEM;
}

int
pf_curl_client_new(const pf_curl_config_t *cfg, pf_curl_client_t **out)
{
    pf_curl_config_t def;
    pf_curl_client_t *c;
    int rc;

    if (cfg == NULL) {
        pf_curl_config_init(&def);
        cfg = &def;
    }
    if (out == NULL || cfg->max_connections < 0 ||
        cfg->max_host_connections < 0) {
        return PF_EINVAL;
    }
    pthread_once(&g_global_once, global_init);
    if (g_global_rc != CURLE_OK) {
        return PF_ESYSTEM;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return PF_ENOMEM;
    }
    c->tfd = -1;
    c->ex = cfg->executor;
    rc = c->ex == NULL ? pf_executor_default(&c->ex) : 0;
    if (rc == 0 && pthread_mutex_init(&c->lock, NULL) != 0) {
        rc = PF_ESYSTEM;
    }
    if (rc != 0) {
        free(c);
        return rc;
    }
    atomic_init(&c->refs, 1); /* the owner's */
    rc = client_setup(c, cfg);
    if (rc == 0) {
        c->timer.fd = c->tfd;
        c->timer.events = PF_WAIT_READABLE;
        pthread_mutex_lock(&c->lock);
        arm_watch(c, &c->timer);
        if (c->timer.arm == NULL) {
            rc = PF_ENOMEM; /* or the executor is being freed */
        }
        pthread_mutex_unlock(&c->lock);
    }
    if (rc != 0) {
        if (c->multi != NULL) {
            curl_multi_cleanup(c->multi);
        }
        client_unref(c);
        return rc;
    }
    *out = c;
    return 0;
}

static void
run_done_task(void *arg)
{
    done_list_t dl = {arg};

    run_done(&dl);
}

void
pf_curl_client_free(pf_curl_client_t *c)
{
    done_list_t dl = {NULL};

    if (c == NULL) {
        return;
    }
    pthread_mutex_lock(&c->lock);
    c->closing = true;
    while (c->xfers != NULL) {
        xfer_end(c, c->xfers, PF_ECANCELED, CURLE_ABORTED_BY_CALLBACK, &dl);
    }
    disarm_watch(c, &c->timer);
    /* Closes the cached connections; libcurl removes their sockets through
     * on_socket. Whatever it did not remove goes after. */
    curl_multi_cleanup(c->multi);
    c->multi = NULL;
    while (c->watches != NULL) {
        watch_t *watch = c->watches;

        disarm_watch(c, watch);
        watch_unlink(c, watch);
        free(watch);
    }
    pthread_mutex_unlock(&c->lock);
    run_done(&dl);
    client_unref(c);
}

unsigned
pf_curl_client_pending(pf_curl_client_t *c)
{
    unsigned n;

    if (c == NULL) {
        return 0;
    }
    pthread_mutex_lock(&c->lock);
    n = c->pending;
    pthread_mutex_unlock(&c->lock);
    return n;
}

/* ---- transfers -------------------------------------------------------- */

static int
add_code(CURLMcode mrc)
{
    switch (mrc) {
    case CURLM_OK:
        return 0;
    case CURLM_ADDED_ALREADY:
        return PF_ESTATE;
    case CURLM_OUT_OF_MEMORY:
        return PF_ENOMEM;
    case CURLM_BAD_EASY_HANDLE:
        return PF_EINVAL;
    default:
        return PF_ESYSTEM;
    }
}

int
pf_curl_start(pf_curl_client_t *c, CURL *easy, const pf_deadline_t *deadline,
              pf_curl_done_fn done, void *arg, pf_curl_xfer_t **out)
{
    pf_curl_xfer_t *x;
    int rc;

    if (c == NULL || easy == NULL || done == NULL) {
        return PF_EINVAL;
    }
    x = calloc(1, sizeof(*x));
    if (x == NULL) {
        return PF_ENOMEM;
    }
    x->c = c;
    x->easy = easy;
    x->done = done;
    x->arg = arg;
    x->phase = XFER_STARTED;
    atomic_init(&x->refs, out != NULL ? 2 : 1); /* the client's, owner's */
    pthread_mutex_lock(&c->lock);
    rc = c->closing ? PF_ESTATE : add_code(curl_multi_add_handle(c->multi,
                                                                 easy));
    if (rc != 0) {
        pthread_mutex_unlock(&c->lock);
        free(x);
        return rc;
    }
    /* Only once it is ours: a handle in another transfer keeps its own. */
    curl_easy_setopt(easy, CURLOPT_PRIVATE, x);
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETDATA, c);
    client_ref(c);
    x->next = c->xfers;
    if (c->xfers != NULL) {
        c->xfers->prev = x;
    }
    c->xfers = x;
    c->pending++;
    if (!pf_deadline_is_none(deadline)) {
        atomic_fetch_add_explicit(&x->refs, 1, memory_order_relaxed);
        rc = pf_executor_wait_until(c->ex, deadline, on_deadline, x,
                                    &x->deadline_wait);
        if (rc != 0) {
            curl_multi_remove_handle(c->multi, easy);
            easy_release(easy);
            xfer_unlink_started(c, x);
            pthread_mutex_unlock(&c->lock);
            free(x);
            client_unref(c);
            return rc;
        }
    }
    pthread_mutex_unlock(&c->lock);
    if (out != NULL) {
        *out = x;
    }
    return 0;
}

void
pf_curl_abort(pf_curl_xfer_t *x)
{
    pf_curl_client_t *c;
    done_list_t dl = {NULL};

    if (x == NULL) {
        return;
    }
    c = x->c;
    pthread_mutex_lock(&c->lock);
    if (x->phase == XFER_STARTED) {
        xfer_end(c, x, PF_ECANCELED, CURLE_ABORTED_BY_CALLBACK, &dl);
    }
    pthread_mutex_unlock(&c->lock);
    if (dl.head != NULL &&
        pf_executor_submit(c->ex, run_done_task, dl.head) != 0) {
        run_done(&dl); /* the executor is going away: run it here */
    }
}

void
pf_curl_xfer_free(pf_curl_xfer_t *x)
{
    if (x != NULL) {
        xfer_unref(x);
    }
}
