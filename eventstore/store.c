/*
 * The store handle: connecting, reconnecting, errors, and the single
 * send/poll/receive path that both the blocking and the non-blocking API
 * take.
 */
#include "store_int.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc_int.h"
#include "loom/alloc.h"
#include "migrate_int.h"
#include "pgwire.h"
#include "redact.h"

loom_err
loom__store_fail(loom_store *s, loom_err rc, const char *fmt, ...)
{
    va_list ap;
    int n;

    loom__buf_reset(&s->err);
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n >= 0 && loom__buf_reserve(&s->err, (size_t) n) == 0) {
        va_start(ap, fmt);
        vsnprintf(s->err.data, (size_t) n + 1, fmt, ap);
        va_end(ap);
        s->err.len = (size_t) n;
    }
    return rc;
}

/* Strips libpq's trailing newlines so messages compose into one line. */
static void
store_chomp(loom__buf *b)
{
    while (b->len > 0 &&
           (b->data[b->len - 1] == '\n' || b->data[b->len - 1] == ' '))
        b->data[--b->len] = '\0';
}

/* "<what>: <libpq's message>", the message without the connection
 * string's password (libpq quotes pieces of a string it cannot parse). */
static loom_err
store_fail_conn(loom_store *s, const char *what)
{
    loom__buf_reset(&s->err);
    loom__buf_puts(&s->err, what);
    loom__buf_puts(&s->err, ": ");
    loom__redact_message(PQerrorMessage(s->conn), s->conninfo, &s->err);
    store_chomp(&s->err);
    return LOOM_ECONN;
}

/* One size limit of the config: its field, value (after defaults) and the
 * largest value allowed. */
typedef struct store_limit {
    const char *field;
    size_t value, max;
} store_limit;

/* Applies the defaults to the limits, then checks each, naming the first
 * field out of range and its valid range in s->err. */
static loom_err
store_resolve_limits(loom_store *s)
{
    loom_store_config *c = &s->cfg;
    store_limit lims[5];

    if (c->max_payload == 0)
        c->max_payload = LOOM_DEFAULT_MAX_PAYLOAD;
    if (c->max_metadata == 0)
        c->max_metadata = LOOM_DEFAULT_MAX_METADATA;
    if (c->max_append == 0)
        c->max_append = LOOM_DEFAULT_MAX_APPEND;
    if (c->max_stream_name == 0)
        c->max_stream_name = LOOM_DEFAULT_MAX_STREAM_NAME;
    if (c->max_read == 0)
        c->max_read = LOOM_DEFAULT_MAX_READ;
    /* PostgreSQL caps a bytea at 1 GB and a message at 1 GB; stay well
     * inside so that one append of limits still fits. */
    lims[0] =
        (store_limit){"max_payload", c->max_payload, LOOM_MAX_PAYLOAD_LIMIT};
    lims[1] =
        (store_limit){"max_metadata", c->max_metadata, LOOM_MAX_METADATA_LIMIT};
    lims[2] = (store_limit){"max_append", c->max_append, LOOM_MAX_APPEND_LIMIT};
    lims[3] = (store_limit){"max_stream_name", c->max_stream_name,
                            LOOM_MAX_STREAM_NAME_LIMIT};
    lims[4] = (store_limit){"max_read", c->max_read, LOOM_MAX_READ_LIMIT};
    for (size_t i = 0; i < sizeof lims / sizeof lims[0]; i++)
        if (lims[i].value > lims[i].max)
            return loom__store_fail(s, LOOM_EINVAL,
                                    "the store config's %s is %zu: it must "
                                    "be 1 to %zu (0 gives the default)",
                                    lims[i].field, lims[i].value, lims[i].max);
    /* Compared as an int: a negative value cast to the enum is no mode. */
    if ((int) c->migrate < (int) LOOM_MIGRATE_CHECK ||
        (int) c->migrate > (int) LOOM_MIGRATE_SKIP)
        return loom__store_fail(s, LOOM_EINVAL,
                                "the store config's migrate is %d: it must "
                                "be LOOM_MIGRATE_CHECK (0), LOOM_MIGRATE_AUTO "
                                "(1) or LOOM_MIGRATE_SKIP (2)",
                                (int) c->migrate);
    return LOOM_OK;
}

/* Server notices (NOTICE, WARNING) are not errors; keep them off the
 * caller's stderr. */
static void
store_ignore_notice(void *arg, const char *message)
{
    (void) arg;
    (void) message;
}

/* A role name that needs no quoting in a libpq options string nor in
 * SQL: [A-Za-z0-9_], 1 to 63 bytes. */
static int
store_role_ok(const char *role)
{
    size_t n = strspn(role, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTU"
                            "VWXYZ0123456789_");

    return n > 0 && n < 64 && role[n] == '\0';
}

/* The libpq "options" that make the session run as s->cfg.role: the
 * conninfo's own options, then `-c role=<role>` (the later keyword wins,
 * so the conninfo's options must be repeated). A conninfo libpq cannot
 * parse is left for the connection to report. */
static loom_err
store_role_options(loom_store *s)
{
    loom__buf b = LOOM__BUF_INIT;
    PQconninfoOption *opts;

    if (s->cfg.role == NULL)
        return LOOM_OK;
    opts = PQconninfoParse(s->conninfo ? s->conninfo : "", NULL);
    for (PQconninfoOption *o = opts; o != NULL && o->keyword != NULL; o++)
        if (strcmp(o->keyword, "options") == 0 && o->val != NULL &&
            o->val[0] != '\0')
            loom__buf_printf(&b, "%s ", o->val);
    PQconninfoFree(opts);
    /* libpq reads $PGOPTIONS only when no options are given. */
    if (b.len == 0 && getenv("PGOPTIONS") != NULL)
        loom__buf_printf(&b, "%s ", getenv("PGOPTIONS"));
    loom__buf_printf(&b, "-c role=%s", s->cfg.role);
    s->options = loom__buf_take(&b);
    s->cfg.role = NULL; /* borrowed from the caller; kept in s->options */
    return s->options != NULL ? LOOM_OK : LOOM_ENOMEM;
}

/* Connects (blocking) and switches the connection to non-blocking mode. */
static loom_err
store_connect(loom_store *s)
{
    const char *keys[] = {"dbname", "fallback_application_name",
                          "client_encoding", "options", NULL};
    const char *vals[] = {s->conninfo ? s->conninfo : "", s->appname, "UTF8",
                          s->options, NULL};

    s->conn = PQconnectdbParams(keys, vals, 1);
    if (s->conn == NULL)
        return loom__store_fail(s, LOOM_ENOMEM, "out of memory connecting");
    if (PQstatus(s->conn) != CONNECTION_OK) {
        store_fail_conn(s, "cannot connect to PostgreSQL");
        loom__buf_puts(&s->err, " (set LOOM_DATABASE_URL or the store's "
                                "conninfo)");
        return LOOM_ECONN;
    }
    PQsetNoticeProcessor(s->conn, store_ignore_notice, NULL);
    if (PQsetnonblocking(s->conn, 1) != 0)
        return loom__store_fail(s, LOOM_ECONN, "%s", PQerrorMessage(s->conn));
    return LOOM_OK;
}

static loom_err
store_check_schema(loom_store *s)
{
    int have = 0, want = loom__schema_latest();
    loom_err rc;

    if (s->cfg.migrate == LOOM_MIGRATE_SKIP)
        return LOOM_OK;
    if (s->cfg.migrate == LOOM_MIGRATE_AUTO)
        return loom_store_migrate(s, NULL, NULL, NULL);
    rc = loom_store_schema_version(s, &have, NULL);
    if (rc != LOOM_OK)
        return rc;
    if (have < want)
        return loom__store_fail(s, LOOM_ESCHEMA,
                                "database schema is at version %d, this "
                                "library needs %d: run `loomctl migrate`",
                                have, want);
    if (have > want)
        return loom__store_fail(s, LOOM_ESCHEMA,
                                "database schema is at version %d, newer "
                                "than this library's %d: upgrade the library",
                                have, want);
    return LOOM_OK;
}

static void
store_errcopy(const loom_store *s, char *errbuf, size_t errlen)
{
    if (errbuf != NULL && errlen > 0)
        snprintf(errbuf, errlen, "%s", loom_store_errmsg(s));
}

loom_err
loom_store_open(loom_store **out, const loom_store_config *cfg, char *errbuf,
                size_t errlen)
{
    static const loom_store_config defaults = LOOM_STORE_CONFIG_INIT;
    loom_store *s;
    loom_err rc;

    if (errbuf != NULL && errlen > 0)
        errbuf[0] = '\0';
    if (out == NULL)
        return LOOM_EINVAL;
    *out = NULL;
    s = loom_malloc(sizeof *s);
    if (s == NULL)
        return LOOM_ENOMEM;
    memset(s, 0, sizeof *s);
    s->tx_failed = -1;
    s->cfg = cfg ? *cfg : defaults;
    rc = store_resolve_limits(s);
    if (rc != LOOM_OK)
        goto fail;
    if (s->cfg.role != NULL && !store_role_ok(s->cfg.role)) {
        rc = loom__store_fail(s, LOOM_EINVAL,
                              "the store's role must be 1 to 63 bytes of "
                              "[A-Za-z0-9_], such as \"loom_writer\"");
        goto fail;
    }
    if (s->cfg.conninfo == NULL)
        s->cfg.conninfo = getenv("LOOM_DATABASE_URL");
    s->conninfo = loom__strdup(s->cfg.conninfo);
    s->appname = loom__strdup(s->cfg.application_name ? s->cfg.application_name
                                                      : "eventloom");
    /* A lost copy must not fall back to libpq's defaults: another server. */
    if ((s->cfg.conninfo != NULL && s->conninfo == NULL) ||
        s->appname == NULL) {
        rc = loom__store_fail(s, LOOM_ENOMEM, "out of memory opening a store");
        goto fail;
    }
    s->cfg.conninfo = s->conninfo;
    s->cfg.application_name = s->appname;
    rc = store_role_options(s);
    if (rc != LOOM_OK) {
        loom__store_fail(s, rc, "out of memory opening a store");
        goto fail;
    }
    rc = store_connect(s);
    if (rc == LOOM_OK)
        rc = store_check_schema(s);
    if (rc == LOOM_OK) {
        *out = s;
        return LOOM_OK;
    }
fail:
    store_errcopy(s, errbuf, errlen);
    loom_store_close(s);
    return rc;
}

void
loom_store_close(loom_store *s)
{
    if (s == NULL)
        return;
    PQclear(s->result);
    PQclear(s->append_failure);
    loom__store_txcache_clear(s, 1);
    loom__buf_free(&s->tx_map);
    PQfinish(s->conn);
    loom__buf_free(&s->err);
    loom__buf_free(&s->params);
    loom_free(s->conninfo);
    loom_free(s->appname);
    loom_free(s->options);
    loom_free(s);
}

const char *
loom_store_errmsg(const loom_store *s)
{
    if (s == NULL)
        return "no store handle (NULL)";
    return s->err.data != NULL ? s->err.data : "";
}

const char *
loom_store_sqlstate(const loom_store *s)
{
    return s != NULL ? s->sqlstate : "";
}

int
loom_store_socket(const loom_store *s)
{
    if (s == NULL || s->conn == NULL)
        return -1;
    return PQsocket(s->conn);
}

void
loom__store_enter(loom_store *s)
{
    loom__buf_reset(&s->err);
    s->sqlstate[0] = '\0';
}

loom_err
loom__store_null(loom_store *s, const char *fn, const char *arg)
{
    return loom__store_fail(s, LOOM_EINVAL, "%s: %s is NULL", fn, arg);
}

loom_err
loom__store_begin(loom_store *s)
{
    loom__store_enter(s);
    if (s->op != LOOM__OP_NONE)
        return loom__store_fail(s, LOOM_EBUSY,
                                "an operation is already in progress on "
                                "this store handle: receive it first");
    if (PQstatus(s->conn) == CONNECTION_OK)
        return LOOM_OK;
    /* The connection broke during an earlier call: reconnect once. The new
     * session has no prepared statements. */
    s->prepared = 0;
    loom__store_txcache_clear(s, 0);
    PQreset(s->conn);
    if (PQstatus(s->conn) != CONNECTION_OK) {
        return store_fail_conn(s, "reconnecting to PostgreSQL failed");
    }
    if (PQsetnonblocking(s->conn, 1) != 0)
        return loom__store_fail(s, LOOM_ECONN, "%s", PQerrorMessage(s->conn));
    return LOOM_OK;
}

loom_err
loom__store_reconnect_start(loom_store *s)
{
    loom__buf_reset(&s->err);
    s->sqlstate[0] = '\0';
    s->prepared = 0;
    loom__store_txcache_clear(s, 0);
    if (!PQresetStart(s->conn)) {
        return store_fail_conn(s, "reconnecting to PostgreSQL failed");
    }
    return LOOM_OK;
}

loom_err
loom__store_reconnect_poll(loom_store *s, int *want)
{
    *want = 0;
    switch (PQresetPoll(s->conn)) {
    case PGRES_POLLING_READING:
        *want = LOOM_POLL_READ;
        return LOOM_EAGAIN;
    case PGRES_POLLING_WRITING:
        *want = LOOM_POLL_WRITE;
        return LOOM_EAGAIN;
    case PGRES_POLLING_OK:
        if (PQsetnonblocking(s->conn, 1) != 0)
            return loom__store_fail(s, LOOM_ECONN, "%s",
                                    PQerrorMessage(s->conn));
        return LOOM_OK;
    default:
        return store_fail_conn(s, "reconnecting to PostgreSQL failed");
    }
}

int
loom__sqlstate_transient(const char *sqlstate)
{
    static const char *const classes[] = {"08", "40", "53", "57", "58"};

    /* A message the server refused (see loom__store_result_error): it
     * fails the same way each time it is sent. When it ended the session
     * the code is LOOM_ECONN, which callers retry anyway. */
    if (strcmp(sqlstate, "08P01") == 0)
        return 0;
    for (size_t i = 0; i < sizeof classes / sizeof classes[0]; i++)
        if (strncmp(sqlstate, classes[i], 2) == 0)
            return 1;
    return 0;
}

#define store_result_error loom__store_result_error

/* Prepares `st` on the connection unless it already is. Blocking: libpq
 * runs PQprepare() synchronously even in non-blocking mode. */
static loom_err
store_prepare(loom_store *s, const loom__stmt *st)
{
    PGresult *r;
    loom_err rc = LOOM_OK;

    if (st->name == NULL || (s->prepared & (UINT64_C(1) << st->id)))
        return LOOM_OK;
    r = PQprepare(s->conn, st->name, st->sql, st->n, st->types);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        rc = store_result_error(s, r);
    else
        s->prepared |= UINT64_C(1) << st->id;
    PQclear(r);
    return rc;
}

loom_err
loom__store_send(loom_store *s, loom__store_op op, const loom__stmt *st,
                 const char *const *values, const int *lengths)
{
    static const int formats[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    int flushed;
    loom_err rc = store_prepare(s, st);

    if (rc != LOOM_OK)
        return rc;
    if (!(st->name != NULL
              ? PQsendQueryPrepared(s->conn, st->name, st->n, values, lengths,
                                    formats, 1)
              : PQsendQueryParams(s->conn, st->sql, st->n, st->types, values,
                                  lengths, formats, 1))) {
        loom__store_fail(s, LOOM_ECONN, "sending to PostgreSQL failed: %s",
                         PQerrorMessage(s->conn));
        store_chomp(&s->err);
        return LOOM_ECONN;
    }
    flushed = PQflush(s->conn);
    if (flushed < 0)
        return loom__store_fail(s, LOOM_ECONN, "%s", PQerrorMessage(s->conn));
    s->op = op;
    s->flushing = flushed == 1;
    s->ready = 0;
    return LOOM_OK;
}

/* Collects results until libpq has no more for this statement; keeps the
 * first (an error, or the rows) and drops the rest. */
static void
store_collect(loom_store *s)
{
    PGresult *r;

    while (!PQisBusy(s->conn) && (r = PQgetResult(s->conn)) != NULL) {
        /* In autocommit the rows arrive before the commit runs: a commit
         * that fails (serialization, deferred constraint, disk full) is a
         * later result, and it must win over the rows. */
        if (s->result == NULL ||
            (PQresultStatus(r) == PGRES_FATAL_ERROR &&
             PQresultStatus(s->result) != PGRES_FATAL_ERROR)) {
            PQclear(s->result);
            s->result = r;
        } else {
            PQclear(r);
        }
    }
}

loom_err
loom_store_poll(loom_store *s, int *wait)
{
    if (wait != NULL)
        *wait = 0;
    if (s == NULL)
        return LOOM_EINVAL;
    loom__store_enter(s);
    if (s->op == LOOM__OP_NONE)
        return loom__store_fail(s, LOOM_EINVAL,
                                "loom_store_poll: no operation is in "
                                "progress on this store handle: start one "
                                "with a loom_store_*_send() first");
    if (s->ready)
        return LOOM_OK;
    if (s->flushing) {
        int f = PQflush(s->conn);
        if (f < 0)
            goto broken;
        s->flushing = f == 1;
    }
    if (!PQconsumeInput(s->conn))
        goto broken;
    if (s->op == LOOM__OP_TX) {
        loom__store_collect_tx(s);
        if (!s->tx_synced || s->flushing) {
            if (wait != NULL)
                *wait = LOOM_POLL_READ | (s->flushing ? LOOM_POLL_WRITE : 0);
            return LOOM_EAGAIN;
        }
        s->ready = 1;
        return LOOM_OK;
    }
    store_collect(s);
    if (!PQisBusy(s->conn) && !s->flushing && s->op == LOOM__OP_APPEND &&
        loom__append_followup(s))
        store_collect(s);
    if (PQisBusy(s->conn) || s->flushing) {
        if (wait != NULL)
            *wait = LOOM_POLL_READ | (s->flushing ? LOOM_POLL_WRITE : 0);
        return LOOM_EAGAIN;
    }
    s->ready = 1;
    return LOOM_OK;
broken:
    /* The result may still hold the server's reason (e.g. 57P01). */
    if (s->op == LOOM__OP_TX)
        loom__store_collect_tx(s);
    else
        store_collect(s);
    s->ready = 1;
    return LOOM_ECONN;
}

loom_err
loom__store_wait(loom_store *s)
{
    for (;;) {
        int want = 0;
        loom_err rc = loom_store_poll(s, &want);
        struct pollfd p;

        if (rc != LOOM_EAGAIN)
            return rc == LOOM_ECONN ? LOOM_OK : rc; /* take() reports it */
        p.fd = PQsocket(s->conn);
        p.events = (short) ((want & LOOM_POLL_READ ? POLLIN : 0) |
                            (want & LOOM_POLL_WRITE ? POLLOUT : 0));
        p.revents = 0;
        if (poll(&p, 1, -1) < 0 && errno != EINTR)
            return loom__store_fail(s, LOOM_EIO, "poll: %s", strerror(errno));
    }
}

/* Whether the server ended the session with this error (FATAL or
 * PANIC), whether or not libpq has seen the socket close yet. */
static int
store_fatal(const PGresult *r)
{
    const char *sev =
        r ? PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED) : NULL;

    return sev != NULL &&
           (strcmp(sev, "FATAL") == 0 || strcmp(sev, "PANIC") == 0);
}

/* Maps a failed result to an error code, message and SQLSTATE. 08P01
 * (protocol_violation) at ERROR is the server refusing one message, a
 * bound value in a binary format it cannot read, say, on a connection
 * that goes on: the statement's failure (LOOM_EDB), not a lost
 * connection, or a handler's bad parameter would be retried forever as
 * an outage instead of counting towards parking. */
loom_err
loom__store_result_error(loom_store *s, const PGresult *r)
{
    const char *state = loom__pg_sqlstate(r);
    const char *hint = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_HINT) : NULL;
    const char *cons =
        r ? PQresultErrorField(r, PG_DIAG_CONSTRAINT_NAME) : NULL;
    loom_err rc = LOOM_EDB;

    snprintf(s->sqlstate, sizeof s->sqlstate, "%s", state);
    if (PQstatus(s->conn) != CONNECTION_OK || store_fatal(r) ||
        (strncmp(state, "08", 2) == 0 && strcmp(state, "08P01") != 0) ||
        strncmp(state, "57P0", 4) == 0)
        rc = LOOM_ECONN;
    else if (strcmp(state, "LM001") == 0 || strcmp(state, "LM004") == 0 ||
             strcmp(state, "LM012") == 0 || strcmp(state, "LM016") == 0 ||
             strcmp(state, "LM023") == 0)
        rc = LOOM_ECONFLICT;
    else if (strcmp(state, "LM010") == 0 || strcmp(state, "LM013") == 0 ||
             strcmp(state, "LM020") == 0)
        rc = LOOM_ENOTFOUND;
    else if (strcmp(state, "LM011") == 0 || strcmp(state, "LM021") == 0)
        rc = LOOM_EINVAL;
    else if (strcmp(state, "LM022") == 0)
        rc = LOOM_EBUSY;
    else if (strcmp(state, "LM014") == 0)
        rc = LOOM_EDUPLICATE;
    else if (strcmp(state, "LM015") == 0)
        rc = LOOM_EALREADY;
    else if (strcmp(state, "LM002") == 0 ||
             (strcmp(state, "23505") == 0 && cons != NULL &&
              strcmp(cons, "events_event_id") == 0))
        rc = LOOM_EDUPLICATE;
    else if (strcmp(state, "42883") == 0 || strcmp(state, "42P01") == 0 ||
             strcmp(state, "3F000") == 0)
        rc = LOOM_ESCHEMA;
    loom__store_fail(s, rc, "%s",
                     r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY)
                             ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY)
                             : PQresultErrorMessage(r)
                       : PQerrorMessage(s->conn));
    store_chomp(&s->err);
    if (rc == LOOM_ESCHEMA)
        loom__buf_puts(&s->err, " (the Eventloom schema is missing or old: "
                                "run `loomctl migrate`)");
    else if (rc == LOOM_ECONN && s->op == LOOM__OP_APPEND)
        loom__buf_puts(&s->err, " (connection lost; the next call "
                                "reconnects, and the append's outcome is "
                                "unknown: retry it with the same event ids)");
    else if (rc == LOOM_ECONN)
        loom__buf_puts(&s->err, " (connection lost; the next call "
                                "reconnects)");
    else if (rc == LOOM_EDUPLICATE && strcmp(state, "23505") == 0)
        loom__buf_printf(&s->err, ": %s (give each new event a new id)",
                         PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL)
                             ? PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL)
                             : "");
    else if (hint != NULL)
        loom__buf_printf(&s->err, " (%s)", hint);
    return rc;
}

loom_err
loom__store_take(loom_store *s, loom__store_op op, PGresult **out)
{
    PGresult *r;
    ExecStatusType st;
    loom_err rc = LOOM_OK;

    *out = NULL;
    if (s->op != op)
        return loom__store_fail(s, LOOM_EINVAL,
                                "no such operation in progress on this "
                                "store handle");
    if (!s->ready)
        return LOOM_EAGAIN;
    r = s->result;
    s->result = NULL;
    s->ready = 0;
    st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        rc = store_result_error(s, r); /* reads s->op for the message */
        s->op = LOOM__OP_NONE;
        PQclear(r);
        return rc;
    }
    s->op = LOOM__OP_NONE;
    *out = r;
    return LOOM_OK;
}

loom_err
loom__store_query(loom_store *s, const loom__stmt *st,
                  const char *const *values, const int *lengths, PGresult **out)
{
    loom_err rc = loom__store_send(s, LOOM__OP_QUERY, st, values, lengths);

    *out = NULL;
    if (rc == LOOM_OK)
        rc = loom__store_wait(s);
    if (rc == LOOM_OK)
        rc = loom__store_take(s, LOOM__OP_QUERY, out);
    return rc;
}

loom_err
loom__check_stream(const char *stream, size_t limit, loom__buf *err)
{
    size_t n;

    if (stream == NULL || stream[0] == '\0') {
        loom__buf_reset(err);
        loom__buf_puts(err, "stream name is empty: give a name such as "
                            "\"order-42\"");
        return LOOM_EINVAL;
    }
    n = strnlen(stream, limit + 1);
    if (n > limit) {
        loom__buf_reset(err);
        loom__buf_printf(err,
                         "stream name is longer than the limit of %zu bytes "
                         "(max_stream_name)",
                         limit);
        return LOOM_ETOOBIG;
    }
    if (!loom__utf8_valid(stream, n)) {
        loom__buf_reset(err);
        loom__buf_puts(err, "stream name is not valid UTF-8");
        return LOOM_EINVAL;
    }
    return LOOM_OK;
}

loom_err
loom__store_check_stream(loom_store *s, const char *stream, size_t limit)
{
    return loom__check_stream(stream, limit, &s->err);
}

/* ------------------------------------------------------------------ */
/* Schema                                                              */

static void
store_migrate_cb(const loom__migration *m, int done, void *arg)
{
    void **pair = arg;
    loom_migrate_fn fn = (loom_migrate_fn) (uintptr_t) pair[0];

    if (fn != NULL)
        fn(m->version, m->name, done, pair[1]);
}

/* The migration runner uses the blocking libpq calls: leave non-blocking
 * mode for its duration. */
static loom_err
store_blocking_begin(loom_store *s)
{
    loom_err rc = loom__store_begin(s);

    if (rc == LOOM_OK && PQsetnonblocking(s->conn, 0) != 0)
        rc = loom__store_fail(s, LOOM_ECONN, "%s", PQerrorMessage(s->conn));
    return rc;
}

static loom_err
store_blocking_end(loom_store *s, loom_err rc)
{
    if (PQstatus(s->conn) == CONNECTION_OK && PQsetnonblocking(s->conn, 1))
        return loom__store_fail(s, LOOM_ECONN, "%s", PQerrorMessage(s->conn));
    return rc;
}

loom_err
loom_store_migrate(loom_store *s, loom_migrate_fn fn, void *arg, int *applied)
{
    void *pair[2] = {(void *) (uintptr_t) fn, arg};
    loom_err rc;

    if (applied != NULL)
        *applied = 0;
    if (s == NULL)
        return LOOM_EINVAL;
    rc = store_blocking_begin(s);
    if (rc != LOOM_OK)
        return rc;
    rc = loom__migrate(s->conn, store_migrate_cb, pair, applied, &s->err);
    return store_blocking_end(s, rc);
}

loom_err
loom_store_schema_version(loom_store *s, int *applied, int *latest)
{
    int have = 0;
    loom_err rc;

    if (latest != NULL)
        *latest = loom__schema_latest();
    if (applied != NULL)
        *applied = 0;
    if (s == NULL)
        return LOOM_EINVAL;
    rc = store_blocking_begin(s);
    if (rc != LOOM_OK)
        return rc;
    rc = loom__schema_version(s->conn, &have, &s->err);
    if (applied != NULL)
        *applied = have;
    return store_blocking_end(s, rc);
}
