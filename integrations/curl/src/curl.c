/* HTTP transfers on the reactor through libcurl's multi socket interface.
 *
 * One client = one CURLM, guarded by the client's one lock: libcurl's
 * multi handle is not thread-safe. Every call into libcurl is made under
 * the lock, and libcurl's socket and timer callbacks, which run inside
 * those calls, assume it is held (they never take it).
 *
 * Batching: the client has an epoll set of its own (epfd) holding
 * libcurl's sockets and its timer (a timerfd), level-triggered and
 * persistent: CURLMOPT_SOCKETFUNCTION changes a registration only when
 * libcurl changes what it wants (ADD, MOD or DEL), never per event. The
 * executor's reactor watches the one epfd with a one-shot fd wait, the
 * `arm`. When it fires, a worker drains the set: it takes everything ready
 * (epoll_wait with no timeout), calls curl_multi_socket_action for each
 * ready socket in one go, runs libcurl's timer if due, collects the
 * finished transfers, re-arms, and calls their done callbacks with the
 * lock released. One hand-off to a worker per batch of events, not per
 * event, and only one worker drains at a time (the arm is re-armed at the
 * drain's end), so the workers never fight over the lock for it.
 *
 * Stale events are harmless: a socket that libcurl closed within a batch
 * left the set with its file, and a number reused meanwhile only earns
 * libcurl one spurious call for a socket it knows (it reads EAGAIN).
 *
 * Timer: CURLMOPT_TIMERFUNCTION only records when libcurl's timer is due
 * (timer_at, CLOCK_MONOTONIC); the timerfd is set (timerfd_settime) only
 * when that moves earlier than what it is set to, and a drain runs the
 * timer whenever it is due, whatever woke it. libcurl's timeouts are real
 * time, so they stay real on an executor with a manual clock; the
 * transfers' own deadlines are waits on the executor (any clock).
 *
 * Transfers: (QUEUED ->) STARTED -> DONE under the client's lock. At most
 * max_transfers are STARTED (in libcurl); the others wait QUEUED, in start
 * order, and each transfer that ends admits the next. Whichever comes
 * first of libcurl's CURLMSG_DONE, the deadline, an abort or the client's
 * free ends a transfer: it removes the easy handle (which closes an
 * unfinished transfer's connection), takes the transfer out of the
 * deadline heap and calls done once, outside the lock.
 *
 * Deadlines: a min-heap per client on the executor's clock, behind one
 * executor wait (any clock) for the earliest, re-armed only when a new
 * deadline comes before it and withdrawn when the heap empties; a wait
 * that fires early finds nothing due and waits for the top again.
 *
 * Memory: a transfer holds a reference per party: the owner (when out was
 * given) and the client until done has returned. The client holds one for
 * its owner, one per live transfer, one while the arm is armed and one
 * while a deadline wait is; the last one frees it. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "puffinflow/curl.h"
#include "puffinflow/error.h"

/* QUEUED: waiting for a place among the client's max_transfers (not in
 * libcurl yet); STARTED: in libcurl's multi handle. */
typedef enum { XFER_QUEUED, XFER_STARTED, XFER_DONE } xfer_phase_t;

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
    int64_t dl_at; /* its deadline on the executor's clock, or NEVER */
    size_t dl_idx; /* its place in c's deadline heap, when dl_at is set */
    pf_curl_xfer_t *prev; /* in c->xfers */
    pf_curl_xfer_t *next;
    pf_curl_xfer_t *qprev; /* in c's queue, while QUEUED */
    pf_curl_xfer_t *qnext;
};

#define NEVER INT64_MAX

/* Events one epoll_wait of a drain takes; a drain takes up to
 * DRAIN_ROUNDS of them. */
#define DRAIN_EVENTS 256
#define DRAIN_ROUNDS 4

/* A socket's registration as libcurl's socket pointer (curl_multi_assign):
 * its epoll events, with a bit so that it is never NULL. */
#define SOCK_REGISTERED 0x80000000u

/* The one executor wait for the client's earliest deadline. */
typedef struct dl_wait {
    pf_curl_client_t *c;
    pf_wait_t *w;
    int64_t at;
} dl_wait_t;

/* Immutable after _new: ex, clock, multi (until _free), epfd, tfd. refs is
 * atomic. All else is under lock. */
struct pf_curl_client {
    pthread_mutex_t lock;
    pf_executor_t *ex;
    const pf_clock_t *clock; /* the executor's */
    CURLM *multi;
    int epfd; /* libcurl's sockets and tfd, level-triggered */
    int tfd;  /* libcurl's timer */
    atomic_int refs;
    bool closing;
    bool draining;
    unsigned pending;      /* queued or started */
    long max_transfers;    /* in libcurl at once; 0 = no limit */
    long in_flight;        /* STARTED */
    pf_curl_xfer_t *qhead; /* QUEUED, oldest first */
    pf_curl_xfer_t *qtail;
    pf_curl_xfer_t *xfers; /* queued or started, not DONE */
    pf_wait_t *arm;        /* the reactor's wait on epfd, when armed */
    int64_t timer_at;      /* libcurl's timer is due (CLOCK_MONOTONIC) */
    int64_t tfd_at;        /* tfd is set to fire then; NEVER: disarmed or
                              fired */
    pf_curl_xfer_t **dl;   /* transfers with a deadline, a min-heap on
                              dl_at */
    size_t ndl;
    size_t dl_cap;
    dl_wait_t *dlw; /* the wait for the earliest, when one is armed */
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
    cfg->max_transfers = PF_CURL_MAX_TRANSFERS_DEFAULT;
}

static int64_t
mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
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
        if (c->epfd >= 0) {
            close(c->epfd);
        }
        free(c->dl);
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

/* ---- the arm: the reactor's one wait on epfd -------------------------- */

static void on_drain(int result, void *arg);

/* Arm the wait on epfd unless it is armed, a drain runs (it re-arms at its
 * end) or c is closing. Under c->lock. On failure (no memory) nothing
 * watches the sockets until the next pf_curl_start or deadline tries
 * again; the transfers' deadlines still end them. */
static void
arm(pf_curl_client_t *c)
{
    if (c->arm != NULL || c->draining || c->closing) {
        return;
    }
    client_ref(c);
    if (pf_executor_wait_fd(c->ex, c->epfd, PF_WAIT_READABLE, NULL, on_drain,
                            c, &c->arm) != 0) {
        c->arm = NULL;
        atomic_fetch_sub_explicit(&c->refs, 1, memory_order_relaxed);
    }
}

/* Set tfd for timer_at if that is earlier than it is set for. Under
 * c->lock. */
static void
timer_sync(pf_curl_client_t *c)
{
    struct itimerspec its;

    if (c->timer_at == NEVER || c->timer_at >= c->tfd_at) {
        return;
    }
    memset(&its, 0, sizeof(its));
    its.it_value.tv_sec = (time_t)(c->timer_at / 1000000000);
    its.it_value.tv_nsec = (long)(c->timer_at % 1000000000);
    if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0) {
        its.it_value.tv_nsec = 1; /* all zero would disarm it */
    }
    if (timerfd_settime(c->tfd, TFD_TIMER_ABSTIME, &its, NULL) == 0) {
        c->tfd_at = c->timer_at;
    }
}

/* ---- deadlines: a heap, and one executor wait for its top ------------ */

static void
dl_place(pf_curl_client_t *c, size_t i, pf_curl_xfer_t *x)
{
    c->dl[i] = x;
    x->dl_idx = i;
}

static void
dl_sift_up(pf_curl_client_t *c, size_t i)
{
    pf_curl_xfer_t *x = c->dl[i];

    while (i > 0) {
        size_t up = (i - 1) / 2;

        if (c->dl[up]->dl_at <= x->dl_at) {
            break;
        }
        dl_place(c, i, c->dl[up]);
        i = up;
    }
    dl_place(c, i, x);
}

static void
dl_sift_down(pf_curl_client_t *c, size_t i)
{
    pf_curl_xfer_t *x = c->dl[i];

    for (;;) {
        size_t l = 2 * i + 1;
        size_t m;

        if (l >= c->ndl) {
            break;
        }
        m = l + 1 < c->ndl && c->dl[l + 1]->dl_at < c->dl[l]->dl_at ? l + 1
                                                                    : l;
        if (x->dl_at <= c->dl[m]->dl_at) {
            break;
        }
        dl_place(c, i, c->dl[m]);
        i = m;
    }
    dl_place(c, i, x);
}

/* Under c->lock. PF_ENOMEM when the heap cannot grow. */
static int
dl_push(pf_curl_client_t *c, pf_curl_xfer_t *x)
{
    if (c->ndl == c->dl_cap) {
        size_t cap = c->dl_cap < 64 ? 64 : c->dl_cap * 2;
        pf_curl_xfer_t **p = realloc(c->dl, cap * sizeof(*p));

        if (p == NULL) {
            return PF_ENOMEM;
        }
        c->dl = p;
        c->dl_cap = cap;
    }
    c->dl[c->ndl] = x;
    x->dl_idx = c->ndl++;
    dl_sift_up(c, x->dl_idx);
    return 0;
}

static void dl_disarm(pf_curl_client_t *c);

/* Take x out of the heap. Under c->lock. The wait for the top stays
 * (early is harmless: it finds nothing due and waits again) unless the
 * heap is empty. */
static void
dl_remove(pf_curl_client_t *c, pf_curl_xfer_t *x)
{
    size_t i = x->dl_idx;
    pf_curl_xfer_t *last;

    if (x->dl_at == NEVER) {
        return;
    }
    x->dl_at = NEVER;
    last = c->dl[--c->ndl];
    if (last != x) {
        dl_place(c, i, last);
        dl_sift_down(c, i);
        dl_sift_up(c, last->dl_idx);
    }
    if (c->ndl == 0) {
        dl_disarm(c);
    }
}

/* Abort the wait for the top, if any. Under c->lock. Its callback frees
 * its record. */
static void
dl_disarm(pf_curl_client_t *c)
{
    if (c->dlw != NULL) {
        pf_wait_abort(c->dlw->w);
        c->dlw = NULL;
    }
}

static void on_deadline(int result, void *arg);

/* Make sure a wait is armed no later than the heap's top. Under c->lock.
 * 0, or pf_executor_wait_until's error (nothing armed then). */
static int
dl_arm(pf_curl_client_t *c)
{
    pf_deadline_t d;
    dl_wait_t *dw;
    int64_t top;
    int rc;

    if (c->ndl == 0) {
        dl_disarm(c);
        return 0;
    }
    top = c->dl[0]->dl_at;
    if (c->dlw != NULL && c->dlw->at <= top) {
        return 0;
    }
    dl_disarm(c);
    dw = malloc(sizeof(*dw));
    if (dw == NULL) {
        return PF_ENOMEM;
    }
    dw->c = c;
    dw->at = top;
    d = pf_deadline_at_ns(c->clock, top);
    client_ref(c);
    rc = pf_executor_wait_until(c->ex, &d, on_deadline, dw, &dw->w);
    if (rc != 0) {
        free(dw);
        atomic_fetch_sub_explicit(&c->refs, 1, memory_order_relaxed);
        return rc;
    }
    c->dlw = dw;
    return 0;
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

/* Give easy back as it came, but for our option. */
static void
easy_release(CURL *easy)
{
    curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
}

static void
queue_unlink(pf_curl_client_t *c, pf_curl_xfer_t *x)
{
    if (x->qprev != NULL) {
        x->qprev->qnext = x->qnext;
    } else {
        c->qhead = x->qnext;
    }
    if (x->qnext != NULL) {
        x->qnext->qprev = x->qprev;
    } else {
        c->qtail = x->qprev;
    }
}

static int add_code(CURLMcode mrc);
static void xfer_end(pf_curl_client_t *c, pf_curl_xfer_t *x, int result,
                     CURLcode code, done_list_t *dl);

/* Hand x, QUEUED or new, to libcurl. Under c->lock. 0, or add_code's
 * error (x untouched then). */
static int
hand_over(pf_curl_client_t *c, pf_curl_xfer_t *x)
{
    int rc = add_code(curl_multi_add_handle(c->multi, x->easy));

    if (rc != 0) {
        return rc;
    }
    /* Only once it is ours: a handle in another transfer keeps its own. */
    curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x);
    c->in_flight++;
    return 0;
}

/* Hand queued transfers to libcurl while there is room. Under c->lock. A
 * handle libcurl refuses (in a transfer elsewhere by now) ends with the
 * error through dl. */
static void
admit(pf_curl_client_t *c, done_list_t *dl)
{
    while (c->qhead != NULL && !c->closing &&
           (c->max_transfers == 0 || c->in_flight < c->max_transfers)) {
        pf_curl_xfer_t *x = c->qhead;
        int rc;

        queue_unlink(c, x);
        x->phase = XFER_STARTED; /* for xfer_end, if refused */
        rc = hand_over(c, x);
        if (rc != 0) {
            x->phase = XFER_DONE;
            x->result = rc;
            x->code = CURLE_FAILED_INIT;
            xfer_unlink_started(c, x);
            dl_remove(c, x);
            x->next = dl->head;
            dl->head = x;
        }
    }
}

/* Take x out of the client with its outcome: remove its easy handle
 * (closing an unfinished transfer's connection), unlink it, withdraw its
 * deadline, queue it on dl, and admit a queued transfer into the place
 * it leaves. Under c->lock, x QUEUED or STARTED. */
static void
xfer_end(pf_curl_client_t *c, pf_curl_xfer_t *x, int result, CURLcode code,
         done_list_t *dl)
{
    if (x->phase == XFER_STARTED) {
        curl_multi_remove_handle(c->multi, x->easy);
        easy_release(x->easy);
        c->in_flight--;
    } else {
        queue_unlink(c, x);
    }
    x->phase = XFER_DONE;
    x->result = result;
    x->code = code;
    xfer_unlink_started(c, x);
    dl_remove(c, x);
    x->next = dl->head; /* the link now threads the done queue */
    dl->head = x;
    admit(c, dl);
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
    unsigned had = (unsigned)(uintptr_t)sockp;
    struct epoll_event ev;
    unsigned want = 0;

    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (had != 0) {
            /* An error only means libcurl closed it already: gone from
             * the set with its file. */
            epoll_ctl(c->epfd, EPOLL_CTL_DEL, fd, NULL);
            curl_multi_assign(c->multi, fd, NULL);
        }
        return 0;
    }
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT) {
        want |= EPOLLIN;
    }
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT) {
        want |= EPOLLOUT;
    }
    want |= SOCK_REGISTERED;
    if (want == had) {
        return 0;
    }
    memset(&ev, 0, sizeof(ev));
    ev.events = want & ~SOCK_REGISTERED;
    ev.data.fd = fd;
    if (epoll_ctl(c->epfd, had != 0 ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd,
                  &ev) != 0) {
        /* ADD of a number whose old file lingers (EEXIST) or MOD of one
         * that left with its file (ENOENT): the other one. */
        if (epoll_ctl(c->epfd,
                      errno == EEXIST ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd,
                      &ev) != 0) {
            return -1; /* libcurl fails the transfers on this socket */
        }
    }
    curl_multi_assign(c->multi, fd, (void *)(uintptr_t)want);
    return 0;
}

static int
on_timer(CURLM *multi, long timeout_ms, void *cp)
{
    pf_curl_client_t *c = cp;

    (void)multi;
    if (timeout_ms < 0) {
        c->timer_at = NEVER; /* tfd may fire for nothing: harmless */
        return 0;
    }
    c->timer_at = mono_ns() + (int64_t)timeout_ms * 1000000;
    if (!c->draining) {
        timer_sync(c); /* a drain does it at its end */
    }
    return 0;
}

/* ---- the drain -------------------------------------------------------- */

/* Run libcurl's timer while it is due. Under c->lock. */
static void
run_timer(pf_curl_client_t *c)
{
    int rounds;

    for (rounds = 0; rounds < 8 && c->timer_at != NEVER &&
                     c->timer_at <= mono_ns();
         rounds++) {
        int running;

        c->timer_at = NEVER;
        curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    }
}

/* The arm fired: epfd has something ready. */
static void
on_drain(int result, void *arg)
{
    pf_curl_client_t *c = arg;
    struct epoll_event evs[DRAIN_EVENTS];
    done_list_t dl = {NULL};
    int round;

    pthread_mutex_lock(&c->lock);
    pf_wait_free(c->arm);
    c->arm = NULL;
    if (result != 0 || c->closing) {
        goto out; /* ex or c is being freed: nothing more to do */
    }
    c->draining = true;
    for (round = 0; round < DRAIN_ROUNDS; round++) {
        int n = epoll_wait(c->epfd, evs, DRAIN_EVENTS, 0);
        int i;

        for (i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            int mask = 0;
            int running;

            if (fd == c->tfd) {
                uint64_t ticks;
                ssize_t got = read(c->tfd, &ticks, sizeof(ticks));

                (void)got; /* EAGAIN: re-set since it was reported */
                c->tfd_at = NEVER;
                continue; /* run_timer looks at timer_at */
            }
            mask |= (evs[i].events & EPOLLIN) ? CURL_CSELECT_IN : 0;
            mask |= (evs[i].events & EPOLLOUT) ? CURL_CSELECT_OUT : 0;
            mask |= (evs[i].events & (EPOLLERR | EPOLLHUP)) ? CURL_CSELECT_ERR
                                                            : 0;
            curl_multi_socket_action(c->multi, fd, mask, &running);
        }
        run_timer(c);
        /* Finished transfers make room for queued ones, whose start is
         * libcurl's timer at once: run it in this drain. */
        collect(c, &dl);
        if (n < DRAIN_EVENTS &&
            (c->timer_at == NEVER || c->timer_at > mono_ns())) {
            break;
        }
    }
    c->draining = false;
    timer_sync(c);
    arm(c);
out:
    pthread_mutex_unlock(&c->lock);
    run_done(&dl);
    client_unref(c);
}

/* The wait for the heap's top ended: end every transfer whose deadline
 * has passed, and wait for the next. */
static void
on_deadline(int result, void *arg)
{
    dl_wait_t *dw = arg;
    pf_curl_client_t *c = dw->c;
    done_list_t dl = {NULL};

    pthread_mutex_lock(&c->lock);
    pf_wait_free(dw->w);
    if (c->dlw == dw) {
        c->dlw = NULL;
    }
    if (result == 0 && !c->closing) {
        int64_t now = pf_clock_now_ns(c->clock);

        while (c->ndl > 0 && c->dl[0]->dl_at <= now) {
            xfer_end(c, c->dl[0], PF_ETIMEDOUT, CURLE_ABORTED_BY_CALLBACK,
                     &dl);
        }
        /* On failure (no memory) the next start or deadline tries again;
         * libcurl still ends the transfers by its own timeouts. */
        (void)dl_arm(c);
        arm(c);
    }
    pthread_mutex_unlock(&c->lock);
    free(dw);
    run_done(&dl);
    client_unref(c);
}

/* ---- the client ------------------------------------------------------- */

static int
client_setup(pf_curl_client_t *c, const pf_curl_config_t *cfg)
{
    struct epoll_event ev;
    bool ok;

    c->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (c->epfd < 0) {
        return errno == ENOMEM ? PF_ENOMEM : PF_ESYSTEM;
    }
    c->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (c->tfd < 0) {
        return PF_ESYSTEM;
    }
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN;
    ev.data.fd = c->tfd;
    if (epoll_ctl(c->epfd, EPOLL_CTL_ADD, c->tfd, &ev) != 0) {
        return errno == ENOMEM ? PF_ENOMEM : PF_ESYSTEM;
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
        cfg->max_host_connections < 0 || cfg->max_transfers < 0) {
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
    c->epfd = -1;
    c->timer_at = NEVER;
    c->tfd_at = NEVER;
    c->ex = cfg->executor;
    c->max_transfers = cfg->max_transfers;
    rc = c->ex == NULL ? pf_executor_default(&c->ex) : 0;
    if (rc == 0) {
        c->clock = pf_executor_clock(c->ex);
    }
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
        pthread_mutex_lock(&c->lock);
        arm(c);
        if (c->arm == NULL) {
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
    /* Its callback (PF_ECANCELED, or a drain that finds c closing) drops
     * its reference; epfd stays open until the last one goes. */
    pf_wait_abort(c->arm);
    dl_disarm(c);
    /* Closes the cached connections; their sockets leave epfd. */
    curl_multi_cleanup(c->multi);
    c->multi = NULL;
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

/* d as a time on c's executor clock: exact on the same clock, else now
 * plus the time d has left. */
static int64_t
deadline_on(const pf_curl_client_t *c, const pf_deadline_t *d)
{
    const pf_clock_t *dc =
        d->priv_clock != NULL ? d->priv_clock : pf_clock_system();
    int64_t left;
    int64_t now;

    if (dc == c->clock) {
        return d->priv_at_ns;
    }
    left = pf_deadline_remaining_ns(d);
    now = pf_clock_now_ns(c->clock);
    return left >= NEVER - now ? NEVER - 1 : now + left;
}

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
    int rc = 0;

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
    x->dl_at = NEVER;
    atomic_init(&x->refs, out != NULL ? 2 : 1); /* the client's, owner's */
    pthread_mutex_lock(&c->lock);
    if (c->closing) {
        rc = PF_ESTATE;
    } else if (c->max_transfers == 0 || c->in_flight < c->max_transfers) {
        rc = hand_over(c, x);
        x->phase = XFER_STARTED;
    } else {
        char *priv = NULL;

        /* It waits for a place: only a handle in one of this client's
         * transfers is known busy now (its CURLOPT_PRIVATE is ours);
         * libcurl refuses any other busy one at admission. */
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
        rc = priv != NULL ? PF_ESTATE : 0;
        x->phase = XFER_QUEUED;
    }
    if (rc == 0 && !pf_deadline_is_none(deadline)) {
        x->dl_at = deadline_on(c, deadline);
        rc = dl_push(c, x);
        if (rc != 0) {
            x->dl_at = NEVER;
        } else if ((rc = dl_arm(c)) != 0) {
            dl_remove(c, x);
        }
        if (rc != 0 && x->phase == XFER_STARTED) {
            curl_multi_remove_handle(c->multi, easy);
            easy_release(easy);
            c->in_flight--;
        }
    }
    if (rc != 0) {
        pthread_mutex_unlock(&c->lock);
        free(x);
        return rc;
    }
    client_ref(c);
    x->next = c->xfers;
    if (c->xfers != NULL) {
        c->xfers->prev = x;
    }
    c->xfers = x;
    c->pending++;
    if (x->phase == XFER_QUEUED) {
        x->qprev = c->qtail;
        if (c->qtail != NULL) {
            c->qtail->qnext = x;
        } else {
            c->qhead = x;
        }
        c->qtail = x;
    }
    arm(c); /* if an earlier arm failed */
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
    if (x->phase != XFER_DONE) {
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
