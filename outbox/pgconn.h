/*
 * Private to outbox/: one PostgreSQL connection (a loom_store handle)
 * driven from a libuv loop without blocking it. The topics transport
 * (transports/topics/) and the outbox relay (relay.c) use it.
 *
 * One request at a time (a prepared statement or a loom_tx); callers
 * queue their own. A broken connection is re-established without
 * blocking: the request that saw the break fails with LOOM_ECONN, so does
 * every request while the reconnection runs, and the callers retry on
 * their own timers. Anything tied to the session (an advisory lock) is
 * gone after a reconnection: PQbackendPID() of the store's connection
 * tells the sessions apart.
 */
#ifndef LOOM_PGCONN_H
#define LOOM_PGCONN_H

#include <libpq-fe.h>
#include <uv.h>

#include "loom/runtime.h"
#include "store_int.h"

/* Called on the loop when a request finishes: `r` (a query's rows, owned
 * by the callee, which PQclears it) is NULL for a loom_tx or on failure;
 * the store's errmsg and sqlstate tell why. */
typedef void (*loom__pgconn_done_fn)(void *arg, loom_err rc, PGresult *r);

typedef struct pgconn_poll pgconn_poll;

typedef struct loom__pgconn_config {
    loom_runtime *rt;
    const char *conninfo;         /* borrowed for the call */
    const char *application_name; /* borrowed for the call */
    const char *what;             /* log prefix ("topics"); kept: static */
    /* Optional: a libuv handle of the connection was opened / finished
     * closing, so owners that free themselves only once every handle is
     * closed can count them. */
    void (*opened)(void *owner);
    void (*released)(void *owner);
    void *owner;
} loom__pgconn_config;

typedef struct loom__pgconn {
    loom_runtime *rt;
    loom_store *store;
    pgconn_poll *poll;
    int poll_fd;
    int busy;         /* a request in flight */
    int is_tx;        /* it is a loom_tx */
    int reconnecting; /* PQresetStart/PQresetPoll in progress */
    const char *what;
    void (*opened)(void *owner);
    void (*released)(void *owner);
    void *owner;
    loom__pgconn_done_fn done;
    void *arg;
} loom__pgconn;

/* Connects (blocking). Errors: LOOM_ECONN, LOOM_ESCHEMA, LOOM_ENOMEM;
 * err says why. */
loom_err loom__pgconn_open(loom__pgconn *c, const loom__pgconn_config *cfg,
                           char *err, size_t errlen);
/* Sends one prepared statement; `done` is called later, on the loop
 * (never during this call). Errors (done not called): LOOM_EBUSY,
 * LOOM_ECONN (the connection is broken: reconnecting, without blocking;
 * retry later), and the send's own. */
loom_err loom__pgconn_query(loom__pgconn *c, const loom__stmt *st,
                            const char *const *values, const int *lengths,
                            loom__pgconn_done_fn done, void *arg);
/* Sends `tx` as one transaction; `done` gets r NULL. */
loom_err loom__pgconn_tx(loom__pgconn *c, const loom_tx *tx,
                         loom__pgconn_done_fn done, void *arg);
/* Blocking form of loom__pgconn_query for set-up and close steps
 * (reconnects blocking when broken); *out owned by the caller. */
loom_err loom__pgconn_query_now(loom__pgconn *c, const loom__stmt *st,
                                const char *const *values, const int *lengths,
                                PGresult **out);
/* Stops watching and closes the connection; a request in flight is
 * abandoned (its callback is never called). */
void loom__pgconn_close(loom__pgconn *c);
const char *loom__pgconn_errmsg(const loom__pgconn *c);

#endif /* LOOM_PGCONN_H */
