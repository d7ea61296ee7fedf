/* The HTTP endpoint's connection table (private): who may connect, who
 * makes room, and when a slow request is cut off. See http_conns.c. */
#ifndef PF_HTTP_CONNS_H
#define PF_HTTP_CONNS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

/* The life of one connection, one phase at a time:
 *
 *   PENDING -> WAITING -> HANDLING -> SENDING -> WAITING -> ... (keep-alive)
 *   WAITING or SENDING -> CLOSING (made room, or past its deadline)
 *
 * and out of the table from any phase when libmicrohttpd closes it (or
 * from PENDING when it could not take it). PENDING: accepted, handed to
 * libmicrohttpd, not yet taken up by a worker. WAITING: reading a request
 * (or idle between requests). HANDLING: the request is in and being
 * answered (a health check may run). SENDING: the answer is queued. Only
 * WAITING connections are closed to make room; WAITING and SENDING ones
 * are held to the request deadline. */
typedef enum pf__http_phase {
    PF__HTTP_PENDING,
    PF__HTTP_WAITING,
    PF__HTTP_HANDLING,
    PF__HTTP_SENDING,
    PF__HTTP_CLOSING
} pf__http_phase_t;

typedef struct pf__http_conn pf__http_conn_t;

/* A client is its IP address (the port is not part of it). */
typedef struct pf__http_client {
    int family; /* AF_INET, AF_INET6, or AF_UNSPEC (not an IP socket) */
    unsigned char addr[16];
} pf__http_client_t;

typedef struct pf__http_conns {
    pthread_mutex_t lock;
    /* Immutable after init. */
    unsigned max_active;     /* PENDING, WAITING, HANDLING, SENDING */
    unsigned max_per_client; /* the same, per client */
    unsigned max_total;      /* all phases, CLOSING too: bounds sockets */
    int64_t timeout_ns;      /* the request deadline */
    /* Under lock. */
    pf__http_conn_t *head; /* oldest first (by accept) */
    pf__http_conn_t *tail;
    unsigned active;
    unsigned total;
} pf__http_conns_t;

/* The client an address belongs to. */
void pf__http_client_of(const struct sockaddr *sa, socklen_t len,
                        pf__http_client_t *out);

/* Returns 0 or an errno value (from pthread_mutex_init). */
int pf__http_conns_init(pf__http_conns_t *t, unsigned max_active,
                        unsigned max_per_client, int64_t timeout_ns);

/* Free every record left (PENDING ones libmicrohttpd dropped without
 * telling) and the lock. Call once nothing else uses t. */
void pf__http_conns_destroy(pf__http_conns_t *t);

/* Admit socket fd, just accepted from client, at now: returns its PENDING
 * record, or NULL when there is no room (or no memory): the caller then
 * closes fd. To make room it may close (shut down) the connection that
 * has waited longest for its request: the client's own when the client is
 * at max_per_client, anyone's when the server is at max_active. */
pf__http_conn_t *pf__http_conns_admit(pf__http_conns_t *t, int fd,
                                      const pf__http_client_t *client,
                                      int64_t now);

/* libmicrohttpd refused the socket of c (and closed it): forget c. */
void pf__http_conns_refused(pf__http_conns_t *t, pf__http_conn_t *c);

/* A worker took up socket fd: its PENDING record, now WAITING, or NULL
 * if none (never expected). */
pf__http_conn_t *pf__http_conns_started(pf__http_conns_t *t, int fd);

/* The connection of c is closed: forget c (NULL: no-op). Must be called
 * before its socket is closed. */
void pf__http_conns_closed(pf__http_conns_t *t, pf__http_conn_t *c);

/* c (NULL: no-op) moves to phase at now; a CLOSING one stays CLOSING. */
void pf__http_conns_set_phase(pf__http_conns_t *t, pf__http_conn_t *c,
                              pf__http_phase_t phase, int64_t now);

/* Close (shut down) every connection past its request deadline at now.
 * Returns the time of the next deadline, INT64_MAX if none. */
int64_t pf__http_conns_sweep(pf__http_conns_t *t, int64_t now);

#endif /* PF_HTTP_CONNS_H */
