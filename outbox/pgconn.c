/*
 * loom__pgconn: one PostgreSQL connection (a loom_store handle) driven from
 * the loop, shared by the topics transport and the outbox relay: a request is
 * sent through the store's non-blocking path, uv_poll watches the socket, and
 * loom_store_poll() says when the result is in. One request at a time; callers
 * queue their own.
 *
 * A broken connection is re-established without blocking the loop: the
 * request that saw the break fails with LOOM_ECONN, and so does every
 * request while PQresetStart/PQresetPoll run under the same uv_poll; the
 * callers retry on their own timers (a consumer's backoff, the next
 * heartbeat, the producer's retry timer).
 */
#include <stdio.h>
#include <string.h>

#include "log_int.h"
#include "loom/alloc.h"
#include "pgconn.h"

struct pgconn_poll {
    uv_poll_t h;
    loom__pgconn *c; /* NULL once closing */
    /* Copied from the connection: the handle may outlive it. */
    void (*released)(void *);
    void *owner;
};

static void conn_drive(loom__pgconn *c);

static loom_err conn_watch(loom__pgconn *c, int want);
static void conn_unwatch(loom__pgconn *c);
static void conn_unwatch_if_gone(loom__pgconn *c);

/* Moves a reconnection on; done when it succeeded or failed. */
static void
conn_reconnect_step(loom__pgconn *c)
{
    int want = 0;
    loom_err rc = loom__store_reconnect_poll(c->store, &want);

    if (rc == LOOM_EAGAIN && conn_watch(c, want) == LOOM_OK)
        return;
    c->reconnecting = 0;
    if (c->poll != NULL)
        uv_poll_stop(&c->poll->h);
    conn_unwatch_if_gone(c);
    if (rc == LOOM_OK)
        loom__log(LOOM_LOG_INFO, "%s: reconnected to PostgreSQL", c->what);
    else
        loom__log(LOOM_LOG_WARN, "%s: %s", c->what,
                  loom_store_errmsg(c->store));
}

/* Starts re-establishing a broken connection, or moves the one under
 * way on: LOOM_OK once connected, else LOOM_ECONN (the caller's request
 * waits for its next try). Every try also polls the reconnection itself,
 * so it progresses on the callers' timers even if a socket event were
 * missed. */
static loom_err
conn_reconnect(loom__pgconn *c)
{
    if (!c->reconnecting) {
        /* The new socket may get the old one's number, which epoll then
         * no longer watches while libuv believes it does: a new handle
         * for the new socket, always. */
        conn_unwatch(c);
        if (loom__store_reconnect_start(c->store) != LOOM_OK)
            return LOOM_ECONN;
        c->reconnecting = 1;
    }
    conn_reconnect_step(c);
    if (!c->reconnecting && PQstatus(c->store->conn) == CONNECTION_OK)
        return LOOM_OK;
    return loom__store_fail(c->store, LOOM_ECONN,
                            "reconnecting to PostgreSQL; the request is "
                            "retried");
}

static void
conn_on_poll(uv_poll_t *h, int status, int events)
{
    pgconn_poll *p = h->data;

    (void) status; /* an error shows in loom_store_poll() */
    (void) events;
    if (p->c == NULL)
        return;
    if (p->c->reconnecting)
        conn_reconnect_step(p->c);
    else
        conn_drive(p->c);
}

static void
conn_poll_closed(uv_handle_t *h)
{
    pgconn_poll *p = h->data;
    void (*released)(void *) = p->released;
    void *owner = p->owner;

    loom_free(p);
    if (released != NULL)
        released(owner);
}

static void
conn_unwatch(loom__pgconn *c)
{
    if (c->poll == NULL)
        return;
    uv_poll_stop(&c->poll->h);
    c->poll->c = NULL;
    uv_close((uv_handle_t *) &c->poll->h, conn_poll_closed);
    c->poll = NULL;
}

/* Closes the handle now if libpq has closed (or replaced) the socket it
 * watches. It must happen before control returns to the loop: closing a
 * uv_poll removes its fd *number* from epoll, and once another connection
 * of this process (a subscription, another component's) has been given
 * the same number and registered it, a late close would silently remove
 * that registration too, leaving the other connection waiting forever
 * for a result. libpq closes the socket itself when it finds the
 * connection lost, so every call that may find it is followed by this. */
static void
conn_unwatch_if_gone(loom__pgconn *c)
{
    if (c->poll != NULL &&
        (c->store == NULL || PQstatus(c->store->conn) != CONNECTION_OK ||
         PQsocket(c->store->conn) != c->poll_fd))
        conn_unwatch(c);
}

/* Watches the socket for `want` (LOOM_POLL_*); a new socket after a
 * reconnect gets a new handle. */
static loom_err
conn_watch(loom__pgconn *c, int want)
{
    int fd = loom_store_socket(c->store);
    int ev = (want & LOOM_POLL_READ ? UV_READABLE : 0) |
             (want & LOOM_POLL_WRITE ? UV_WRITABLE : 0);

    if (fd < 0)
        return LOOM_ECONN;
    if (c->poll != NULL && c->poll_fd != fd)
        conn_unwatch(c);
    if (c->poll == NULL) {
        pgconn_poll *p = loom_malloc(sizeof *p);
        if (p == NULL)
            return LOOM_ENOMEM;
        p->c = c;
        p->released = c->released;
        p->owner = c->owner;
        if (uv_poll_init(loom_runtime_loop(c->rt), &p->h, fd) != 0) {
            loom_free(p);
            return LOOM_EIO;
        }
        p->h.data = p;
        if (c->opened != NULL)
            c->opened(c->owner);
        c->poll = p;
        c->poll_fd = fd;
    }
    return uv_poll_start(&c->poll->h, ev, conn_on_poll) == 0 ? LOOM_OK
                                                             : LOOM_EIO;
}

static void
conn_finish(loom__pgconn *c)
{
    PGresult *r = NULL;
    loom_err rc;
    loom__pgconn_done_fn done = c->done;
    void *arg = c->arg;

    if (c->is_tx)
        rc = loom__store_take_tx(c->store);
    else
        rc = loom__store_take(c->store, LOOM__OP_QUERY, &r);
    c->busy = 0;
    c->done = NULL;
    if (c->poll != NULL)
        uv_poll_stop(&c->poll->h);
    conn_unwatch_if_gone(c);
    done(arg, rc, r);
}

static void
conn_drive(loom__pgconn *c)
{
    int want = 0;
    loom_err rc;

    if (!c->busy)
        return;
    rc = loom_store_poll(c->store, &want);
    if (rc == LOOM_EAGAIN) {
        /* Cannot watch the socket (out of memory): wait here instead. */
        if (conn_watch(c, want) != LOOM_OK) {
            loom__store_wait(c->store);
            conn_finish(c);
        }
        return;
    }
    conn_finish(c);
}

loom_err
loom__pgconn_open(loom__pgconn *c, const loom__pgconn_config *cfg, char *err,
                  size_t errlen)
{
    loom_store_config scfg = LOOM_STORE_CONFIG_INIT;
    loom_err rc;

    memset(c, 0, sizeof *c);
    c->rt = cfg->rt;
    c->what = cfg->what;
    c->opened = cfg->opened;
    c->released = cfg->released;
    c->owner = cfg->owner;
    scfg.conninfo = cfg->conninfo;
    scfg.application_name = cfg->application_name;
    rc = loom_store_open(&c->store, &scfg, err, errlen);
    if (rc != LOOM_OK)
        c->store = NULL;
    return rc;
}

/* Starts watching after a send; the callback comes from the loop. */
static loom_err
conn_sent(loom__pgconn *c, loom_err rc, int is_tx, loom__pgconn_done_fn done,
          void *arg)
{
    if (rc != LOOM_OK) {
        conn_unwatch_if_gone(c); /* a failed send may have dropped it */
        return rc;
    }
    c->busy = 1;
    c->is_tx = is_tx;
    c->done = done;
    c->arg = arg;
    rc = conn_watch(c, LOOM_POLL_READ | LOOM_POLL_WRITE);
    if (rc != LOOM_OK) {
        /* Nothing will call back: wait for the result here instead. */
        loom__store_wait(c->store);
        c->busy = 0;
        if (is_tx)
            loom__store_take_tx(c->store);
        else {
            PGresult *r = NULL;
            loom__store_take(c->store, LOOM__OP_QUERY, &r);
            PQclear(r);
        }
        conn_unwatch_if_gone(c);
        return loom__store_fail(c->store, rc, "cannot watch the connection");
    }
    return LOOM_OK;
}

loom_err
loom__pgconn_query(loom__pgconn *c, const loom__stmt *st,
                   const char *const *values, const int *lengths,
                   loom__pgconn_done_fn done, void *arg)
{
    loom_err rc;

    if (c->store == NULL || c->busy)
        return LOOM_EBUSY;
    if ((c->reconnecting || PQstatus(c->store->conn) != CONNECTION_OK) &&
        (rc = conn_reconnect(c)) != LOOM_OK)
        return rc;
    rc = loom__store_begin(c->store);
    if (rc == LOOM_OK)
        rc = loom__store_send(c->store, LOOM__OP_QUERY, st, values, lengths);
    return conn_sent(c, rc, 0, done, arg);
}

loom_err
loom__pgconn_tx(loom__pgconn *c, const loom_tx *tx, loom__pgconn_done_fn done,
                void *arg)
{
    loom_err rc;

    if (c->store == NULL || c->busy)
        return LOOM_EBUSY;
    if ((c->reconnecting || PQstatus(c->store->conn) != CONNECTION_OK) &&
        (rc = conn_reconnect(c)) != LOOM_OK)
        return rc;
    rc = loom__store_begin(c->store);
    if (rc == LOOM_OK)
        rc = loom__store_send_tx(c->store, tx);
    return conn_sent(c, rc, 1, done, arg);
}

loom_err
loom__pgconn_query_now(loom__pgconn *c, const loom__stmt *st,
                       const char *const *values, const int *lengths,
                       PGresult **out)
{
    loom_err rc;

    *out = NULL;
    if (c->store == NULL || c->busy || c->reconnecting)
        return LOOM_EBUSY;
    if (PQstatus(c->store->conn) != CONNECTION_OK)
        conn_unwatch(c); /* the reconnect below gets a new socket */
    rc = loom__store_begin(c->store);
    if (rc == LOOM_OK)
        rc = loom__store_query(c->store, st, values, lengths, out);
    conn_unwatch_if_gone(c);
    return rc;
}

void
loom__pgconn_close(loom__pgconn *c)
{
    conn_unwatch(c);
    c->busy = 0;
    c->reconnecting = 0;
    c->done = NULL;
    loom_store_close(c->store);
    c->store = NULL;
}

const char *
loom__pgconn_errmsg(const loom__pgconn *c)
{
    return c->store != NULL ? loom_store_errmsg(c->store) : "not connected";
}
