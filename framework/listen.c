/*
 * The LISTEN connection: one dedicated PostgreSQL connection per runtime,
 * opened without blocking (PQconnectStartParams + PQconnectPoll under a
 * uv_poll on PQsocket), that LISTENs to every registered channel and
 * dispatches each notification to the listeners of its channel.
 *
 * LISTEN commands are batched: whenever no command is in flight, every
 * listener still PENDING is listed in one "LISTEN a; LISTEN b" query, sent
 * with PQsendQuery and flushed as the socket allows. When its results are
 * all in, those listeners become ACTIVE and are called once with NULL.
 * A lost connection sets every listener back to PENDING, so the batch
 * after a reconnect re-LISTENs everything and wakes everyone (runtime.h,
 * guarantees 1 and 2).
 *
 * Listener callbacks may close listeners or stop the runtime. Listeners
 * closed meanwhile are only marked, and freed by listen_sweep() once no
 * dispatch is running; a dispatch loop re-checks the connection's
 * generation so it never reads a PGconn that a callback finished.
 */
#include "runtime_int.h"

#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "log_int.h"
#include "loom/alloc.h"
#include "pgwire.h"
#include "redact.h"

static void listen_on_poll(uv_poll_t *h, int status, int events);
static void listen_on_retry(uv_timer_t *t);

/* libpq's messages end in "\n" and may span lines: one line for a log. */
static const char *
listen_oneline(const char *msg, char *out, size_t len)
{
    size_t n = 0;

    for (; msg && *msg && n + 1 < len; msg++)
        out[n++] = (*msg == '\n' || *msg == '\t') ? ' ' : *msg;
    while (n > 0 && out[n - 1] == ' ')
        n--;
    out[n] = '\0';
    return n ? out : "no message from libpq";
}

/* A channel name for a log line: printable ASCII kept, every other byte
 * as \xNN, so a name that is not UTF-8 can be named too. */
static const char *
listen_printable(const char *channel, char *out, size_t len)
{
    size_t n = 0;

    for (const unsigned char *p = (const unsigned char *) channel;
         *p && n + 5 < len; p++) {
        if (*p >= 0x20 && *p < 0x7f && *p != '\\')
            out[n++] = (char) *p;
        else
            n += (size_t) snprintf(out + n, len - n, "\\x%02x", *p);
    }
    out[n] = '\0';
    return out;
}

/* Remembers "host:port" of the attempt (never the password) for logs. */
static void
listen_set_server(loom_runtime *rt)
{
    const char *host = PQhost(rt->lsn.conn);
    const char *port = PQport(rt->lsn.conn);

    snprintf(rt->lsn.server, sizeof rt->lsn.server, "%s:%s",
             host && *host ? host : "localhost", port && *port ? port : "5432");
}

static void
listen_quiet(void *arg, const char *message)
{
    char line[512];

    (void) arg;
    loom__log(LOOM_LOG_DEBUG, "LISTEN connection notice: %s",
              listen_oneline(message, line, sizeof line));
}

static void
listen_sweep(loom_runtime *rt)
{
    loom_listener **pp = &rt->listeners;

    if (rt->dispatching)
        return;
    while (*pp) {
        loom_listener *l = *pp;
        if (!l->closed) {
            pp = &l->next;
            continue;
        }
        *pp = l->next;
        loom_free(l->channel);
        loom_free(l);
    }
}

/* Calls fn(payload) on the live listeners of `channel` (every listener
 * when channel is NULL, or those marked ready when only_ready is set). */
static void
listen_dispatch(loom_runtime *rt, const char *channel, const char *payload,
                int only_ready)
{
    rt->dispatching++;
    for (loom_listener *l = rt->listeners; l && !rt->stopping; l = l->next) {
        if (l->closed || (channel && strcmp(l->channel, channel) != 0))
            continue;
        if (only_ready && !l->ready)
            continue;
        l->ready = 0;
        l->fn(l->arg, l->channel, payload);
    }
    rt->dispatching--;
    listen_sweep(rt);
}

static void
listen_poll_closed(uv_handle_t *h)
{
    loom__lsn_poll *p = (loom__lsn_poll *) h;

    loom__runtime_handle_closed(h);
    loom_free(p);
}

/* Closing a uv_poll removes its fd from epoll, so it must happen while
 * the socket is still open: always before PQfinish. */
static void
listen_poll_close(loom_runtime *rt)
{
    if (rt->lsn.poll == NULL)
        return;
    uv_close((uv_handle_t *) &rt->lsn.poll->h, listen_poll_closed);
    rt->lsn.poll = NULL;
    rt->lsn.poll_fd = -1;
    rt->lsn.poll_events = 0;
}

/* Watches PQsocket for `events`, replacing the handle when libpq has
 * moved to another socket (a second host, a retry without SSL). */
static int
listen_watch(loom_runtime *rt, int events)
{
    int fd = PQsocket(rt->lsn.conn);

    if (fd < 0)
        return -1;
    if (rt->lsn.poll && rt->lsn.poll_fd != fd)
        listen_poll_close(rt);
    if (rt->lsn.poll == NULL) {
        loom__lsn_poll *p = loom_malloc(sizeof *p);
        if (p == NULL || uv_poll_init(rt->loop, &p->h, fd) != 0) {
            loom_free(p);
            return -1;
        }
        p->rt = rt;
        p->h.data = rt;
        rt->open_handles++;
        rt->lsn.poll = p;
        rt->lsn.poll_fd = fd;
        rt->lsn.poll_events = 0;
    }
    if (rt->lsn.poll_events == events)
        return 0;
    if (uv_poll_start(&rt->lsn.poll->h, events, listen_on_poll) != 0)
        return -1;
    rt->lsn.poll_events = events;
    return 0;
}

/* Finishes the connection; every listener must LISTEN again. */
static void
listen_drop(loom_runtime *rt)
{
    listen_poll_close(rt);
    if (rt->lsn.conn) {
        PQfinish(rt->lsn.conn);
        rt->lsn.conn = NULL;
        rt->lsn.gen++;
    }
    rt->lsn.in_flight = rt->lsn.flushing = rt->lsn.failed = 0;
    for (loom_listener *l = rt->listeners; l; l = l->next)
        l->state = LOOM__L_PENDING;
}

/* A connection attempt failed or an open connection was lost: log it with
 * the server and the delay, and arm the retry timer. */
static void
listen_fail(loom_runtime *rt, const char *what, const char *why)
{
    char line[512];
    loom__buf safe = LOOM__BUF_INIT;
    uint64_t delay;

    /* Never a piece of the password (libpq quotes what it cannot parse). */
    loom__redact_message(why, rt->conninfo, &safe);
    listen_oneline(loom__buf_str(&safe), line, sizeof line);
    loom__buf_free(&safe);
    listen_drop(rt);
    if (rt->lsn.state == LOOM__LSN_CLOSED)
        return;
    delay = loom__backoff_next(&rt->lsn.backoff);
    loom__log(LOOM_LOG_WARN,
              "%s PostgreSQL at %s for LISTEN: %s; retrying in %llu ms "
              "(attempt %u)",
              what, rt->lsn.server, line, (unsigned long long) delay,
              rt->lsn.backoff.attempt);
    rt->lsn.lost = 1;
    rt->lsn.state = LOOM__LSN_WAITING;
    uv_timer_start(&rt->lsn.retry, listen_on_retry, delay, 0);
}

static void
listen_lost(loom_runtime *rt)
{
    listen_fail(rt, "lost the connection to",
                rt->lsn.conn ? PQerrorMessage(rt->lsn.conn) : "");
}

/* Sends what libpq has buffered; watches for writability until done. */
static int
listen_flush(loom_runtime *rt)
{
    int r = PQflush(rt->lsn.conn);

    if (r < 0)
        return -1;
    rt->lsn.flushing = r == 1;
    return listen_watch(rt, UV_READABLE | (r == 1 ? UV_WRITABLE : 0));
}

/* Sends one LISTEN batch for every PENDING listener, if none is in
 * flight. Duplicate channels are harmless (LISTEN is idempotent). */
static void
listen_send(loom_runtime *rt)
{
    loom__buf sql = LOOM__BUF_INIT;

    if (rt->lsn.state != LOOM__LSN_READY || rt->lsn.in_flight)
        return;
    for (loom_listener *l = rt->listeners; l; l = l->next) {
        char *id;
        if (l->closed || l->state != LOOM__L_PENDING)
            continue;
        id = PQescapeIdentifier(rt->lsn.conn, l->channel, strlen(l->channel));
        if (id == NULL) {
            /* Fail this one alone: the listeners after it must not wait
             * behind a channel that cannot be listened to. */
            char name[4 * LOOM_MAX_CHANNEL + 8], why[256];
            loom__log(
                LOOM_LOG_ERROR,
                "cannot LISTEN to channel \"%s\": %s; its listener "
                "gets only the fallback wake-ups",
                listen_printable(l->channel, name, sizeof name),
                listen_oneline(PQerrorMessage(rt->lsn.conn), why, sizeof why));
            l->state = LOOM__L_FAILED;
            continue;
        }
        loom__buf_printf(&sql, "LISTEN %s;", id);
        PQfreemem(id);
        l->state = LOOM__L_SENT;
    }
    if (sql.len == 0 && !sql.failed) {
        loom__buf_free(&sql);
        return;
    }
    if (sql.failed || !PQsendQuery(rt->lsn.conn, loom__buf_str(&sql)) ||
        listen_flush(rt) != 0) {
        loom__buf_free(&sql);
        listen_lost(rt);
        return;
    }
    loom__log(LOOM_LOG_DEBUG, "LISTEN connection: %s", loom__buf_str(&sql));
    loom__buf_free(&sql);
    rt->lsn.in_flight = 1;
    rt->lsn.failed = 0;
}

/* Reads the results of the batch in flight. Returns -1 when the
 * connection was dropped. */
static int
listen_results(loom_runtime *rt)
{
    PGresult *r;

    while (rt->lsn.in_flight && !PQisBusy(rt->lsn.conn)) {
        r = PQgetResult(rt->lsn.conn);
        if (r == NULL) {
            rt->lsn.in_flight = 0;
            break;
        }
        if (PQresultStatus(r) != PGRES_COMMAND_OK && !rt->lsn.failed) {
            rt->lsn.failed = 1;
            snprintf(rt->lsn.why, sizeof rt->lsn.why, "LISTEN refused: %s",
                     PQresultErrorMessage(r));
        }
        PQclear(r);
    }
    if (rt->lsn.in_flight)
        return 0;
    if (rt->lsn.failed) {
        listen_fail(rt, "lost the connection to", rt->lsn.why);
        return -1;
    }
    for (loom_listener *l = rt->listeners; l; l = l->next) {
        if (l->state == LOOM__L_SENT) {
            l->state = LOOM__L_ACTIVE;
            l->ready = 1;
        }
    }
    listen_dispatch(rt, NULL, NULL, 1);
    listen_send(rt); /* listeners registered meanwhile */
    return 0;
}

static void
listen_notifies(loom_runtime *rt)
{
    unsigned gen = rt->lsn.gen;
    PGnotify *n;

    while (!rt->stopping && rt->lsn.gen == gen &&
           (n = PQnotifies(rt->lsn.conn)) != NULL) {
        listen_dispatch(rt, n->relname, n->extra, 0);
        PQfreemem(n);
    }
}

static void
listen_connected(loom_runtime *rt)
{
    if (PQsetnonblocking(rt->lsn.conn, 1) != 0) {
        listen_lost(rt);
        return;
    }
    PQsetNoticeProcessor(rt->lsn.conn, listen_quiet, NULL);
    rt->lsn.state = LOOM__LSN_READY;
    loom__log(rt->lsn.lost ? LOOM_LOG_INFO : LOOM_LOG_DEBUG,
              "LISTEN connection to PostgreSQL at %s %s", rt->lsn.server,
              rt->lsn.lost ? "restored" : "established");
    rt->lsn.lost = 0;
    loom__backoff_reset(&rt->lsn.backoff);
    if (listen_watch(rt, UV_READABLE) != 0) {
        listen_lost(rt);
        return;
    }
    listen_send(rt);
}

/* One step of PQconnectPoll. The poll handle is stopped first: libpq may
 * close the socket inside PQconnectPoll, and epoll must not still hold it
 * (the next socket may reuse the number). */
static void
listen_connect_step(loom_runtime *rt)
{
    PostgresPollingStatusType st;

    if (rt->lsn.poll) {
        uv_poll_stop(&rt->lsn.poll->h);
        rt->lsn.poll_events = 0;
    }
    st = PQconnectPoll(rt->lsn.conn);
    if (st == PGRES_POLLING_OK) {
        listen_connected(rt);
        return;
    }
    if (st == PGRES_POLLING_FAILED ||
        listen_watch(rt, st == PGRES_POLLING_READING ? UV_READABLE
                                                     : UV_WRITABLE) != 0)
        listen_fail(rt, "cannot connect to", PQerrorMessage(rt->lsn.conn));
}

static void
listen_io(loom_runtime *rt, int events)
{
    if ((events & UV_WRITABLE) && rt->lsn.flushing && listen_flush(rt) != 0) {
        listen_lost(rt);
        return;
    }
    if (!PQconsumeInput(rt->lsn.conn)) {
        listen_lost(rt);
        return;
    }
    if (listen_results(rt) != 0)
        return;
    listen_notifies(rt);
    if (rt->lsn.state == LOOM__LSN_READY && rt->lsn.conn &&
        PQstatus(rt->lsn.conn) == CONNECTION_BAD)
        listen_lost(rt);
}

static void
listen_on_poll(uv_poll_t *h, int status, int events)
{
    loom_runtime *rt = h->data;

    (void) status; /* an error shows up in libpq's next call */
    if (rt->lsn.state == LOOM__LSN_CONNECTING)
        listen_connect_step(rt);
    else if (rt->lsn.state == LOOM__LSN_READY)
        listen_io(rt, status < 0 ? UV_READABLE : events);
}

static void
listen_connect(loom_runtime *rt)
{
    /* UTF8, as the store's connections: the encoding channel names are
     * checked in (loom_runtime_listen()) and escaped and reported in. */
    const char *keys[] = {
        "dbname", "client_encoding",
        rt->appname ? "application_name" : "fallback_application_name", NULL};
    const char *vals[] = {rt->conninfo, "UTF8",
                          rt->appname ? rt->appname : "eventloom-listen", NULL};

    rt->lsn.conn = PQconnectStartParams(keys, vals, 1);
    rt->lsn.state = LOOM__LSN_CONNECTING;
    if (rt->lsn.conn == NULL) {
        snprintf(rt->lsn.server, sizeof rt->lsn.server, "(unknown)");
        listen_fail(rt, "cannot connect to", "out of memory");
        return;
    }
    listen_set_server(rt);
    /* Started: libpq wants to write first (as if POLLING_WRITING). */
    if (PQstatus(rt->lsn.conn) == CONNECTION_BAD ||
        listen_watch(rt, UV_WRITABLE) != 0)
        listen_fail(rt, "cannot connect to", PQerrorMessage(rt->lsn.conn));
}

static int
listen_has_live(const loom_runtime *rt)
{
    for (const loom_listener *l = rt->listeners; l; l = l->next)
        if (!l->closed)
            return 1;
    return 0;
}

static void
listen_on_retry(uv_timer_t *t)
{
    loom_runtime *rt = t->data;

    if (rt->lsn.state != LOOM__LSN_WAITING)
        return;
    rt->lsn.state = LOOM__LSN_IDLE;
    loom__lsn_kick(rt);
}

static void
listen_on_fallback(uv_timer_t *t)
{
    loom_runtime *rt = t->data;

    if (!rt->stopping)
        listen_dispatch(rt, NULL, NULL, 0);
}

loom_err
loom__lsn_start(loom_runtime *rt)
{
    if (uv_timer_init(rt->loop, &rt->lsn.retry) != 0)
        return LOOM_EIO;
    rt->lsn.retry.data = rt;
    rt->open_handles++;
    if (uv_timer_init(rt->loop, &rt->lsn.fallback) != 0) {
        uv_close((uv_handle_t *) &rt->lsn.retry, loom__runtime_handle_closed);
        return LOOM_EIO;
    }
    rt->lsn.fallback.data = rt;
    rt->open_handles++;
    rt->lsn.timers = 1;
    uv_timer_start(&rt->lsn.fallback, listen_on_fallback, rt->cfg.poll_ms,
                   rt->cfg.poll_ms);
    return LOOM_OK;
}

void
loom__lsn_kick(loom_runtime *rt)
{
    if (!rt->started || rt->stopping)
        return;
    if (rt->lsn.state == LOOM__LSN_IDLE && listen_has_live(rt))
        listen_connect(rt);
    else if (rt->lsn.state == LOOM__LSN_READY)
        listen_send(rt);
}

void
loom__lsn_shutdown(loom_runtime *rt)
{
    rt->lsn.state = LOOM__LSN_CLOSED;
    listen_drop(rt);
    if (rt->lsn.timers) {
        rt->lsn.timers = 0;
        uv_close((uv_handle_t *) &rt->lsn.retry, loom__runtime_handle_closed);
        uv_close((uv_handle_t *) &rt->lsn.fallback,
                 loom__runtime_handle_closed);
    }
}

void
loom__lsn_free(loom_runtime *rt)
{
    for (loom_listener *l = rt->listeners; l; l = l->next)
        l->closed = 1;
    rt->dispatching = 0;
    listen_sweep(rt);
}

/* Whether `channel` (len bytes) is a name no LISTEN could take, logged
 * with the name and the fix (a runtime has no error message of its own).
 * Not UTF-8: PQescapeIdentifier() would refuse it on the connection. */
static int
listen_bad_channel(const char *channel, size_t len)
{
    char name[4 * LOOM_MAX_CHANNEL + 8];
    const char *why;

    if (channel == NULL)
        why = "the channel name is NULL";
    else if (len == 0)
        why = "the channel name is empty";
    else if (len > LOOM_MAX_CHANNEL)
        why = "the channel name is longer than 63 bytes (LOOM_MAX_CHANNEL): "
              "PostgreSQL would truncate it";
    else if (!loom__utf8_valid(channel, len))
        why = "the channel name is not valid UTF-8";
    else
        return 0;
    loom__log(LOOM_LOG_WARN, "loom_runtime_listen(\"%s\"): %s",
              channel ? listen_printable(channel, name, sizeof name) : "", why);
    return 1;
}

loom_err
loom_runtime_listen(loom_runtime *rt, const char *channel, loom_wake_fn fn,
                    void *arg, loom_listener **out)
{
    loom_listener *l, **tail;
    size_t len = channel ? strlen(channel) : 0;

    if (out != NULL)
        *out = NULL;
    if (rt == NULL || fn == NULL || out == NULL)
        return LOOM_EINVAL;
    if (listen_bad_channel(channel, len))
        return LOOM_EINVAL;
    if (rt->stopping)
        return LOOM_EBUSY;
    l = loom_malloc(sizeof *l);
    if (l == NULL)
        return LOOM_ENOMEM;
    memset(l, 0, sizeof *l);
    l->channel = loom_malloc(len + 1);
    if (l->channel == NULL) {
        loom_free(l);
        return LOOM_ENOMEM;
    }
    memcpy(l->channel, channel, len + 1);
    l->rt = rt;
    l->fn = fn;
    l->arg = arg;
    l->state = LOOM__L_PENDING;
    /* Appended, so listeners are called in the order they registered. */
    for (tail = &rt->listeners; *tail; tail = &(*tail)->next)
        ;
    *tail = l;
    *out = l;
    loom__lsn_kick(rt);
    return LOOM_OK;
}

void
loom_listener_close(loom_listener *l)
{
    if (l == NULL)
        return;
    l->closed = 1;
    listen_sweep(l->rt);
}
