/*
 * Appending events: argument checks, then ONE prepared statement,
 * loom.append(), with the whole batch as binary arrays. One round trip per
 * append, one WAL flush per commit, whatever the number of events (see
 * DESIGN.md, "What this machine taught us about speed").
 *
 * Idempotency costs nothing on the hot path: only an append that failed
 * with a version conflict or a reused event id asks the database, in a
 * second statement, whether it was the retry of an append that committed.
 *
 * loom_tx_append() queues the same statement in a unit of work, checked
 * and built by the same code against the default limits; its errors go
 * to the tx's message instead of the store's.
 */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "append_many.h"
#include "loom/alloc.h"
#include "pgwire.h"
#include "store_int.h"
#include "tx_int.h"

/* The statement of both forms: a store's append, and loom_tx_append(),
 * which queues it with the same seven binary parameters in a unit of
 * work. */
#define LOOM__SQL_APPEND                                                       \
    "SELECT first_version, last_version, first_position, last_position, "      \
    "replayed FROM loom.append($1, $2, $3, $4, $5, $6, $7)"
#define LOOM__APPEND_TYPES                                                     \
    {                                                                          \
        LOOM__OID_TEXT, LOOM__OID_INT8, LOOM__OID_AUUID, LOOM__OID_ATEXT,      \
            LOOM__OID_AINT4, LOOM__OID_ABYTEA, LOOM__OID_ABYTEA                \
    }

static const loom__stmt append_stmt = {LOOM__STMT_APPEND, "loom_append",
                                       LOOM__SQL_APPEND, 7, LOOM__APPEND_TYPES};

static const loom__stmt replay_stmt = {
    LOOM__STMT_REPLAY,
    "loom_append_replay",
    "SELECT first_version, last_version, first_position, last_position, "
    "replayed FROM loom.append_replay($1, $2)",
    2,
    {LOOM__OID_TEXT, LOOM__OID_AUUID}};

static const loom__stmt version_stmt = {
    LOOM__STMT_VERSION,
    "loom_stream_version",
    "SELECT version FROM loom.streams WHERE stream = $1",
    1,
    {LOOM__OID_TEXT}};

/* The limits an append is checked against: a store's configuration, or
 * the defaults for a unit of work (which has no store until it commits). */
typedef struct append_limits {
    size_t max_payload;
    size_t max_metadata;
    size_t max_append;
    size_t max_stream_name;
} append_limits;

static const append_limits append_defaults = {
    LOOM_DEFAULT_MAX_PAYLOAD, LOOM_DEFAULT_MAX_METADATA,
    LOOM_DEFAULT_MAX_APPEND, LOOM_DEFAULT_MAX_STREAM_NAME};

static append_limits
append_store_limits(const loom_store *s)
{
    append_limits l = {s->cfg.max_payload, s->cfg.max_metadata,
                       s->cfg.max_append, s->cfg.max_stream_name};

    return l;
}

/* Writes the message (printf-style) into `err`, replacing what it held,
 * and returns `rc`. The store passes its errmsg buffer, a unit of work
 * its own. */
static loom_err append_fail(loom__buf *err, loom_err rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static loom_err
append_fail(loom__buf *err, loom_err rc, const char *fmt, ...)
{
    va_list ap;
    int n;

    loom__buf_reset(err);
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n >= 0 && loom__buf_reserve(err, (size_t) n) == 0) {
        va_start(ap, fmt);
        vsnprintf(err->data, (size_t) n + 1, fmt, ap);
        va_end(ap);
        err->len = (size_t) n;
    }
    return rc;
}

static loom_err
append_check_event(const append_limits *lim, size_t i, const loom_event_data *e,
                   loom__buf *err)
{
    size_t tlen;

    if (e->type == NULL || e->type[0] == '\0')
        return append_fail(err, LOOM_EINVAL, "event %zu has no type name", i);
    tlen = strnlen(e->type, LOOM_MAX_TYPE_NAME + 1);
    if (tlen > LOOM_MAX_TYPE_NAME)
        return append_fail(err, LOOM_ETOOBIG,
                           "event %zu: type name longer than %zu bytes", i,
                           LOOM_MAX_TYPE_NAME);
    if (!loom__utf8_valid(e->type, tlen))
        return append_fail(err, LOOM_EINVAL,
                           "event %zu: type name is not valid UTF-8", i);
    if (e->schema_version < 0)
        return append_fail(err, LOOM_EINVAL,
                           "event %zu (%s): schema_version %d is negative", i,
                           e->type, (int) e->schema_version);
    if (e->data == NULL && e->data_len > 0)
        return append_fail(err, LOOM_EINVAL,
                           "event %zu (%s): data is NULL but data_len is %zu",
                           i, e->type, e->data_len);
    if (e->data_len > lim->max_payload)
        return append_fail(err, LOOM_ETOOBIG,
                           "event %zu (%s): payload of %zu bytes is over the "
                           "limit of %zu (max_payload)",
                           i, e->type, e->data_len, lim->max_payload);
    if (e->headers == NULL && e->n_headers > 0)
        return append_fail(err, LOOM_EINVAL,
                           "event %zu (%s): headers is NULL but n_headers is "
                           "%zu",
                           i, e->type, e->n_headers);
    for (size_t h = 0; h < e->n_headers; h++)
        if (e->headers[h].key == NULL || e->headers[h].key[0] == '\0' ||
            e->headers[h].value == NULL)
            return append_fail(err, LOOM_EINVAL,
                               "event %zu (%s): header %zu has an empty key "
                               "or a NULL value",
                               i, e->type, h);
    return LOOM_OK;
}

/* Every check of an append that needs no database. */
static loom_err
append_check(const append_limits *lim, const char *stream, int64_t expected,
             const loom_event_data *events, size_t n, loom__buf *err)
{
    loom_err rc = loom__check_stream(stream, lim->max_stream_name, err);

    if (rc != LOOM_OK)
        return rc;
    if (expected < 0 && expected != LOOM_EXPECT_ANY &&
        expected != LOOM_EXPECT_NO_STREAM && expected != LOOM_EXPECT_EXISTS)
        return append_fail(err, LOOM_EINVAL,
                           "expected version %lld is not a version nor "
                           "LOOM_EXPECT_ANY/NO_STREAM/EXISTS",
                           (long long) expected);
    if (events == NULL || n == 0)
        return append_fail(err, LOOM_EINVAL, "append to \"%s\" has no events",
                           stream);
    if (n > lim->max_append)
        return append_fail(err, LOOM_ETOOBIG,
                           "append of %zu events to \"%s\" is over the limit "
                           "of %zu (max_append): split it",
                           n, stream, lim->max_append);
    for (size_t i = 0; i < n; i++) {
        rc = append_check_event(lim, i, &events[i], err);
        if (rc != LOOM_OK)
            return rc;
    }
    return LOOM_OK;
}

/* Appends the metadata array, encoding each event's metadata straight
 * into the parameter buffer and checking its size. */
static loom_err
append_put_metadata(const append_limits *lim, loom__buf *b,
                    const loom_event_data *events, size_t n, loom__buf *err)
{
    loom__pg_array_begin(b, LOOM__OID_BYTEA, (uint32_t) n);
    for (size_t i = 0; i < n; i++) {
        size_t slot = b->len, len;
        if (!loom__metadata_present(&events[i])) {
            loom__pg_array_add(b, NULL, LOOM__PG_NULL);
            continue;
        }
        loom__buf_put_be32(b, 0);
        loom__metadata_encode(b, &events[i]);
        len = b->len - slot - 4;
        if (!b->failed && len > lim->max_metadata)
            return append_fail(err, LOOM_ETOOBIG,
                               "event %zu (%s): metadata of %zu bytes is "
                               "over the limit of %zu (max_metadata)",
                               i, events[i].type, len, lim->max_metadata);
        loom__buf_patch_be32(b, slot, (uint32_t) len);
    }
    return LOOM_OK;
}

/* Builds the seven parameters of loom.append() into `b` (reset first);
 * offsets[] and lengths[] locate each one (the buffer may move while it
 * grows). */
static loom_err
append_build(const append_limits *lim, loom__buf *b, const char *stream,
             int64_t expected, const loom_event_data *ev, size_t n,
             size_t offsets[7], int lengths[7], loom__buf *err)
{
    loom_err rc;

    loom__buf_reset(b);
    offsets[0] = b->len;
    loom__buf_puts(b, stream);
    offsets[1] = b->len;
    loom__buf_put_be64(b, (uint64_t) expected);
    offsets[2] = b->len;
    loom__pg_array_begin(b, LOOM__OID_UUID, (uint32_t) n);
    for (size_t i = 0; i < n; i++)
        loom__pg_array_add(b, ev[i].id.bytes, 16);
    offsets[3] = b->len;
    loom__pg_array_begin(b, LOOM__OID_TEXT, (uint32_t) n);
    for (size_t i = 0; i < n; i++)
        loom__pg_array_add(b, ev[i].type, strlen(ev[i].type));
    offsets[4] = b->len;
    loom__pg_array_begin(b, LOOM__OID_INT4, (uint32_t) n);
    for (size_t i = 0; i < n; i++) {
        loom__buf_put_be32(b, 4);
        loom__buf_put_be32(b, (uint32_t) ev[i].schema_version);
    }
    offsets[5] = b->len;
    loom__pg_array_begin(b, LOOM__OID_BYTEA, (uint32_t) n);
    for (size_t i = 0; i < n; i++)
        loom__pg_array_add(b, ev[i].data_len ? ev[i].data : "", ev[i].data_len);
    offsets[6] = b->len;
    rc = append_put_metadata(lim, b, ev, n, err);
    if (rc != LOOM_OK)
        return rc;
    if (b->failed)
        return append_fail(err, LOOM_ENOMEM,
                           "out of memory building an "
                           "append");
    /* libpq takes a parameter's length as an int. */
    if (b->len - offsets[5] > INT_MAX)
        return append_fail(err, LOOM_ETOOBIG,
                           "append of %zu events to \"%s\" takes %zu bytes: "
                           "split it",
                           n, stream, b->len);
    for (int i = 0; i < 7; i++)
        lengths[i] = (int) ((i < 6 ? offsets[i + 1] : b->len) - offsets[i]);
    return LOOM_OK;
}

loom_err
loom__append_check_default(const char *stream, int64_t expected,
                           const loom_event_data *events, size_t n,
                           loom__buf *err)
{
    return append_check(&append_defaults, stream, expected, events, n, err);
}

static loom_err
append_assign_ids(loom_event_data *events, size_t n, loom__buf *err)
{
    for (size_t i = 0; i < n; i++)
        if (loom_uuid_is_nil(&events[i].id) &&
            loom_uuid_generate(&events[i].id) != LOOM_OK)
            return append_fail(err, LOOM_EIO,
                               "the system's random source failed");
    return LOOM_OK;
}

loom_err
loom_store_append_send(loom_store *s, const char *stream, int64_t expected,
                       loom_event_data *events, size_t n)
{
    append_limits lim;
    size_t offsets[7];
    int lengths[7];
    const char *values[7];
    loom_err rc;

    if (s == NULL)
        return LOOM_EINVAL;
    lim = append_store_limits(s);
    rc = loom__store_begin(s);
    if (rc == LOOM_OK)
        rc = append_check(&lim, stream, expected, events, n, &s->err);
    if (rc == LOOM_OK)
        rc = append_assign_ids(events, n, &s->err);
    if (rc == LOOM_OK)
        rc = append_build(&lim, &s->params, stream, expected, events, n,
                          offsets, lengths, &s->err);
    if (rc != LOOM_OK)
        return rc;
    for (int i = 0; i < 7; i++)
        values[i] = s->params.data + offsets[i];
    /* Kept for the replay check, which reuses the stream and the ids. */
    s->append_stream_len = lengths[0];
    s->append_ids = offsets[2];
    s->append_ids_len = lengths[2];
    return loom__store_send(s, LOOM__OP_APPEND, &append_stmt, values, lengths);
}

loom_err
loom_tx_append(loom_tx *tx, const char *stream, int64_t expected,
               loom_event_data *events, size_t n)
{
    static const uint32_t types[7] = LOOM__APPEND_TYPES;
    loom__buf b = LOOM__BUF_INIT;
    size_t offsets[7];
    int lengths[7];
    const char *values[7];
    loom_err rc;

    if (tx == NULL)
        return LOOM_EINVAL;
    rc = append_check(&append_defaults, stream, expected, events, n, &tx->err);
    if (rc == LOOM_OK)
        rc = append_assign_ids(events, n, &tx->err);
    if (rc == LOOM_OK)
        rc = append_build(&append_defaults, &b, stream, expected, events, n,
                          offsets, lengths, &tx->err);
    if (rc == LOOM_OK) {
        for (int i = 0; i < 7; i++)
            values[i] = b.data + offsets[i];
        rc = loom_tx_exec_binary(tx, LOOM__SQL_APPEND, 7, types, values,
                                 lengths);
    }
    loom__buf_free(&b);
    return rc;
}

/* A failure that a retry of a committed append would also produce. */
static int
append_maybe_replay(const PGresult *r)
{
    const char *state = loom__pg_sqlstate(r);
    const char *cons = PQresultErrorField(r, PG_DIAG_CONSTRAINT_NAME);

    return strcmp(state, "LM001") == 0 ||
           (strcmp(state, "23505") == 0 && cons != NULL &&
            strcmp(cons, "events_event_id") == 0);
}

int
loom__append_followup(loom_store *s)
{
    const char *values[2];
    int lengths[2];

    if (s->append_failure != NULL || s->result == NULL ||
        PQresultStatus(s->result) != PGRES_FATAL_ERROR ||
        !append_maybe_replay(s->result))
        return 0;
    s->append_failure = s->result;
    s->result = NULL;
    values[0] = s->params.data;
    lengths[0] = s->append_stream_len;
    values[1] = s->params.data + s->append_ids;
    lengths[1] = s->append_ids_len;
    if (loom__store_send(s, LOOM__OP_APPEND, &replay_stmt, values, lengths) !=
        LOOM_OK) {
        /* Report the append's own failure rather than the check's. */
        s->result = s->append_failure;
        s->append_failure = NULL;
        return 0;
    }
    return 1;
}

/* A conflict's DETAIL holds the actual version (see loom.append_conflict). */
static int64_t
append_actual_version(const PGresult *r)
{
    const char *detail = PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL);
    long long v;

    if (strcmp(loom__pg_sqlstate(r), "LM001") != 0 || detail == NULL ||
        sscanf(detail, "%lld", &v) != 1)
        return -1;
    return (int64_t) v;
}

/* After a replay check: a retry succeeds with the original result; else
 * the append's own failure stands (or the check's LM002). */
static void
append_settle(loom_store *s, loom_append_result *tmp)
{
    PGresult *r = s->result;
    int replayed = 0;

    tmp->actual_version = append_actual_version(s->append_failure);
    if (r != NULL && PQresultStatus(r) == PGRES_TUPLES_OK &&
        PQntuples(r) == 1 && loom__pg_get_bool(r, 0, 4, &replayed) &&
        replayed) {
        PQclear(s->append_failure);
    } else if (r != NULL && PQresultStatus(r) == PGRES_FATAL_ERROR &&
               strcmp(loom__pg_sqlstate(r), "LM002") == 0) {
        PQclear(s->append_failure);
    } else {
        PQclear(r);
        s->result = s->append_failure;
    }
    s->append_failure = NULL;
}

loom_err
loom_store_append_recv(loom_store *s, loom_append_result *res)
{
    loom_append_result tmp = {0, 0, 0, 0, 0, -1};
    PGresult *r = NULL;
    loom_err rc;

    if (s == NULL)
        return LOOM_EINVAL;
    loom__store_enter(s);
    if (s->op == LOOM__OP_APPEND && !s->ready)
        return LOOM_EAGAIN;
    if (s->op == LOOM__OP_APPEND && s->append_failure != NULL)
        append_settle(s, &tmp);
    else if (s->op == LOOM__OP_APPEND && s->result != NULL)
        tmp.actual_version = append_actual_version(s->result);
    rc = loom__store_take(s, LOOM__OP_APPEND, &r);
    if (rc == LOOM_OK) {
        if (PQntuples(r) != 1 || PQnfields(r) != 5 ||
            !loom__pg_get_i64(r, 0, 0, &tmp.first_version) ||
            !loom__pg_get_i64(r, 0, 1, &tmp.last_version) ||
            !loom__pg_get_i64(r, 0, 2, &tmp.first_position) ||
            !loom__pg_get_i64(r, 0, 3, &tmp.last_position) ||
            !loom__pg_get_bool(r, 0, 4, &tmp.replayed))
            rc = loom__store_fail(s, LOOM_ESCHEMA,
                                  "loom.append() returned an unexpected "
                                  "row: run `loomctl migrate`");
        tmp.actual_version = tmp.last_version;
    }
    PQclear(r);
    if (res != NULL)
        *res = tmp;
    return rc;
}

loom_err
loom_store_append(loom_store *s, const char *stream, int64_t expected,
                  loom_event_data *events, size_t n, loom_append_result *res)
{
    loom_err rc = loom_store_append_send(s, stream, expected, events, n);

    if (rc == LOOM_OK)
        rc = loom__store_wait(s);
    if (rc == LOOM_OK)
        return loom_store_append_recv(s, res);
    if (res != NULL)
        memset(res, 0, sizeof *res);
    return rc;
}

loom_err
loom_store_stream_version(loom_store *s, const char *stream, int64_t *version)
{
    const char *values[1];
    int lengths[1];
    PGresult *r = NULL;
    loom_err rc;

    if (version != NULL)
        *version = -1;
    if (s == NULL)
        return LOOM_EINVAL;
    loom__store_enter(s);
    if (version == NULL)
        return loom__store_null(s, "loom_store_stream_version", "version");
    rc = loom__store_begin(s);
    if (rc == LOOM_OK)
        rc = loom__store_check_stream(s, stream, LOOM_MAX_STREAM_NAME_LIMIT);
    if (rc != LOOM_OK)
        return rc;
    values[0] = stream;
    lengths[0] = (int) strlen(stream);
    rc = loom__store_query(s, &version_stmt, values, lengths, &r);
    if (rc == LOOM_OK && PQntuples(r) == 1)
        loom__pg_get_i64(r, 0, 0, version);
    PQclear(r);
    return rc;
}
