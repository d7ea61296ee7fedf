/* The HTTP endpoint's connection table: one record per open connection,
 * kept by the server's listener thread (admission, deadlines) and
 * libmicrohttpd's workers (the phase of each connection, its close).
 *
 * Room. The server never leaves a connection in the listen backlog: the
 * listener accepts at once and decides. Under max_active (and the client
 * under max_per_client) the connection is admitted. Over it, the record
 * that has waited longest for its request (an idle keep-alive connection,
 * or a request still trickling in) is shut down to make room, as nginx
 * closes idle keep-alive connections when it runs out of them; when every
 * connection is being answered, the newcomer is closed at once, so the
 * client sees a refusal, not a hang. A client at its own limit only ever
 * displaces its own connections, so one address cannot push out the
 * others. Slow clients therefore cannot keep a probe out: a probe sends
 * its request at once, which a worker reads within milliseconds, while
 * the slow connections ahead of it are the first to go.
 *
 * libmicrohttpd has a per-IP limit of its own
 * (MHD_OPTION_PER_IP_CONNECTION_LIMIT), but it can only refuse: choosing
 * whom to displace needs the counts here, before the socket reaches it.
 * It also forgets a connection only after reporting it closed, so a
 * second count there would refuse a client the table had just made room
 * for. The table keeps the only count.
 *
 * Deadlines. libmicrohttpd's connection timeout is an idle timeout: a
 * client sending a byte now and then resets it forever. Here each request
 * has timeout_ns from its start (the accept, or the end of the previous
 * answer) until it is in, and the answer the same again from when it is
 * queued; the listener sweeps and shuts down what is late.
 *
 * Sockets. The table shuts a socket down (never closes it: libmicrohttpd
 * owns it, sees the end of stream, and closes the connection itself) only
 * while holding the lock and only for a record libmicrohttpd has started
 * and not yet reported closed; libmicrohttpd reports the close
 * (pf__http_conns_closed, which takes the lock) before it closes the
 * socket, so the descriptor cannot have been reused by then. PENDING
 * records are never shut down: libmicrohttpd may drop one (out of memory)
 * without a report; such a record is recognised and forgotten when the
 * listener accepts a new socket with the same descriptor number, which
 * proves the old one closed.
 *
 * Scans are linear: the table holds at most a few times max_connections
 * records and is walked once per accept and per sweep. */
#include "http_conns.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

struct pf__http_conn {
    pf__http_conn_t *prev;
    pf__http_conn_t *next;
    int fd;
    pf__http_client_t client;
    pf__http_phase_t phase;
    int64_t since_ns; /* WAITING, SENDING: when the deadline started */
};

void
pf__http_client_of(const struct sockaddr *sa, socklen_t len,
                   pf__http_client_t *out)
{
    memset(out, 0, sizeof(*out));
    out->family = AF_UNSPEC;
    if (sa == NULL) {
        return;
    }
    if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

        out->family = AF_INET;
        memcpy(out->addr, &in->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6 &&
               len >= sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

        /* An IPv4 client on a dual-stack socket is the same client as on
         * an IPv4 one. */
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
            out->family = AF_INET;
            memcpy(out->addr, &in6->sin6_addr.s6_addr[12], 4);
        } else {
            out->family = AF_INET6;
            memcpy(out->addr, &in6->sin6_addr, 16);
        }
    }
}

static bool
same_client(const pf__http_client_t *a, const pf__http_client_t *b)
{
    return a->family == b->family &&
           memcmp(a->addr, b->addr, sizeof(a->addr)) == 0;
}

int
pf__http_conns_init(pf__http_conns_t *t, unsigned max_active,
                    unsigned max_per_client, int64_t timeout_ns)
{
    memset(t, 0, sizeof(*t));
    t->max_active = max_active;
    t->max_per_client = max_per_client;
    /* Shut-down connections linger until their worker sees the end of
     * stream (at once, unless it is busy with a health check): let as many
     * linger as are active, and no more, so sockets stay bounded. */
    t->max_total = max_active > UINT32_MAX / 2 ? UINT32_MAX : 2 * max_active;
    t->timeout_ns = timeout_ns;
    return pthread_mutex_init(&t->lock, NULL);
}

static void
unlink_conn(pf__http_conns_t *t, pf__http_conn_t *c)
{
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        t->head = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    } else {
        t->tail = c->prev;
    }
    if (c->phase != PF__HTTP_CLOSING) {
        t->active--;
    }
    t->total--;
}

void
pf__http_conns_destroy(pf__http_conns_t *t)
{
    pf__http_conn_t *c = t->head;

    while (c != NULL) {
        pf__http_conn_t *next = c->next;

        free(c);
        c = next;
    }
    t->head = NULL;
    t->tail = NULL;
    pthread_mutex_destroy(&t->lock);
}

/* Shut c's socket down; libmicrohttpd sees the end of stream and closes
 * the connection. Under lock, for a started record only (see above). */
static void
shut(pf__http_conns_t *t, pf__http_conn_t *c)
{
    shutdown(c->fd, SHUT_RDWR);
    c->phase = PF__HTTP_CLOSING;
    t->active--;
}

/* The WAITING record that has waited longest, of client (NULL: any). */
static pf__http_conn_t *
longest_waiting(const pf__http_conns_t *t, const pf__http_client_t *client)
{
    pf__http_conn_t *best = NULL;
    pf__http_conn_t *c;

    for (c = t->head; c != NULL; c = c->next) {
        if (c->phase == PF__HTTP_WAITING &&
            (client == NULL || same_client(&c->client, client)) &&
            (best == NULL || c->since_ns < best->since_ns)) {
            best = c;
        }
    }
    return best;
}

static unsigned
active_of(const pf__http_conns_t *t, const pf__http_client_t *client)
{
    unsigned n = 0;
    pf__http_conn_t *c;

    for (c = t->head; c != NULL; c = c->next) {
        if (c->phase != PF__HTTP_CLOSING && same_client(&c->client, client)) {
            n++;
        }
    }
    return n;
}

/* Forget a PENDING record for descriptor fd: a new socket has that number,
 * so the old one is closed and libmicrohttpd dropped it unreported. */
static void
forget_dropped(pf__http_conns_t *t, int fd)
{
    pf__http_conn_t *c;

    for (c = t->head; c != NULL; c = c->next) {
        if (c->fd == fd && c->phase == PF__HTTP_PENDING) {
            unlink_conn(t, c);
            free(c);
            return;
        }
    }
}

pf__http_conn_t *
pf__http_conns_admit(pf__http_conns_t *t, int fd,
                     const pf__http_client_t *client, int64_t now)
{
    pf__http_conn_t *c = calloc(1, sizeof(*c));
    pf__http_conn_t *victim = NULL;
    bool room = true;

    if (c == NULL) {
        return NULL;
    }
    c->fd = fd;
    c->client = *client;
    c->phase = PF__HTTP_PENDING;
    c->since_ns = now;
    pthread_mutex_lock(&t->lock);
    forget_dropped(t, fd);
    if (t->total >= t->max_total) {
        room = false;
    } else if (active_of(t, client) >= t->max_per_client) {
        victim = longest_waiting(t, client);
        room = victim != NULL;
    } else if (t->active >= t->max_active) {
        victim = longest_waiting(t, NULL);
        room = victim != NULL;
    }
    if (room) {
        if (victim != NULL) {
            shut(t, victim);
        }
        c->prev = t->tail;
        if (t->tail != NULL) {
            t->tail->next = c;
        } else {
            t->head = c;
        }
        t->tail = c;
        t->active++;
        t->total++;
    }
    pthread_mutex_unlock(&t->lock);
    if (!room) {
        free(c);
        return NULL;
    }
    return c;
}

void
pf__http_conns_refused(pf__http_conns_t *t, pf__http_conn_t *c)
{
    pf__http_conns_closed(t, c);
}

pf__http_conn_t *
pf__http_conns_started(pf__http_conns_t *t, int fd)
{
    pf__http_conn_t *c;

    pthread_mutex_lock(&t->lock);
    for (c = t->tail; c != NULL; c = c->prev) {
        if (c->fd == fd && c->phase == PF__HTTP_PENDING) {
            c->phase = PF__HTTP_WAITING; /* since: still the accept */
            break;
        }
    }
    pthread_mutex_unlock(&t->lock);
    return c;
}

void
pf__http_conns_closed(pf__http_conns_t *t, pf__http_conn_t *c)
{
    if (c == NULL) {
        return;
    }
    pthread_mutex_lock(&t->lock);
    unlink_conn(t, c);
    pthread_mutex_unlock(&t->lock);
    free(c);
}

void
pf__http_conns_set_phase(pf__http_conns_t *t, pf__http_conn_t *c,
                         pf__http_phase_t phase, int64_t now)
{
    if (c == NULL) {
        return;
    }
    pthread_mutex_lock(&t->lock);
    if (c->phase != PF__HTTP_CLOSING) {
        c->phase = phase;
        c->since_ns = now;
    }
    pthread_mutex_unlock(&t->lock);
}

/* t->timeout_ns after at, saturating: INT64_MAX is never. */
static int64_t
after(const pf__http_conns_t *t, int64_t at)
{
    return at > INT64_MAX - t->timeout_ns ? INT64_MAX : at + t->timeout_ns;
}

int64_t
pf__http_conns_sweep(pf__http_conns_t *t, int64_t now)
{
    int64_t next = INT64_MAX;
    pf__http_conn_t *c;

    pthread_mutex_lock(&t->lock);
    for (c = t->head; c != NULL; c = c->next) {
        int64_t due = after(t, c->since_ns);

        switch (c->phase) {
        case PF__HTTP_WAITING:
        case PF__HTTP_SENDING:
            if (due != INT64_MAX && now >= due) {
                shut(t, c);
                continue;
            }
            break;
        case PF__HTTP_PENDING:
        case PF__HTTP_HANDLING:
            /* No deadline yet, but one starts when a worker moves it on,
             * no earlier than now: look again when it could first be due
             * (for PENDING, exactly its deadline, which runs from the
             * accept), so the listener never sleeps past it. */
            if (due <= now) {
                due = after(t, now);
            }
            break;
        case PF__HTTP_CLOSING:
            continue;
        }
        if (due < next) {
            next = due;
        }
    }
    pthread_mutex_unlock(&t->lock);
    return next;
}
