/*
 * Snapshots: the newest aggregate state per stream, tagged with the
 * layout (schema) version of the state so a changed layout ignores old
 * snapshots instead of misreading them.
 */
#include <string.h>

#include "loom/alloc.h"
#include "pgwire.h"
#include "store_int.h"

/* Keeps only the newest: an older snapshot never replaces a newer one.
 * Only of a version the stream has: a snapshot past its end would make
 * every load skip the events up to that version when they come. Returns
 * the stream's version (NULL: no such stream) and whether it was saved
 * or ignored as older. */
static const loom__stmt snapshot_save_stmt = {
    LOOM__STMT_SNAPSHOT_SAVE,
    "loom_snapshot_save",
    "WITH st AS (SELECT version FROM loom.streams WHERE stream = $1), "
    "saved AS (INSERT INTO loom.snapshots AS s (stream, version, "
    "schema_version, data) SELECT $1, $2, $3, $4 FROM st WHERE st.version "
    ">= $2 ON CONFLICT (stream) DO UPDATE "
    "SET version = EXCLUDED.version, schema_version = EXCLUDED.schema_version, "
    "data = EXCLUDED.data, taken_at = now() "
    "WHERE s.version <= EXCLUDED.version "
    "OR s.schema_version <> EXCLUDED.schema_version RETURNING 1) "
    "SELECT (SELECT version FROM st)",
    4,
    {LOOM__OID_TEXT, LOOM__OID_INT8, LOOM__OID_INT4, LOOM__OID_BYTEA}};

static const loom__stmt snapshot_load_stmt = {
    LOOM__STMT_SNAPSHOT_LOAD,
    "loom_snapshot_load",
    "SELECT version, data FROM loom.snapshots "
    "WHERE stream = $1 AND schema_version = $2",
    2,
    {LOOM__OID_TEXT, LOOM__OID_INT4}};

loom_err
loom_store_snapshot_save(loom_store *s, const char *stream, int64_t version,
                         int32_t schema_version, const void *data, size_t len)
{
    const char *values[4];
    int lengths[4];
    char num[12];
    PGresult *r = NULL;
    int64_t have = 0;
    loom_err rc;

    if (s == NULL)
        return LOOM_EINVAL;
    rc = loom__store_begin(s);
    if (rc == LOOM_OK)
        rc = loom__store_check_stream(s, stream, s->cfg.max_stream_name);
    if (rc != LOOM_OK)
        return rc;
    if (version < 0 || schema_version < 0 || (data == NULL && len > 0))
        return loom__store_fail(s, LOOM_EINVAL,
                                "snapshot of \"%s\": negative version or "
                                "NULL data",
                                stream);
    if (len > s->cfg.max_payload)
        return loom__store_fail(s, LOOM_ETOOBIG,
                                "snapshot of \"%s\" (%zu bytes) is over the "
                                "limit of %zu (max_payload)",
                                stream, len, s->cfg.max_payload);
    loom__buf_reset(&s->params);
    loom__buf_put_be64(&s->params, (uint64_t) version);
    loom__buf_put_be32(&s->params, (uint32_t) schema_version);
    if (s->params.failed)
        return loom__store_fail(s, LOOM_ENOMEM, "out of memory");
    memcpy(num, s->params.data, 12);
    values[0] = stream;
    values[1] = num;
    values[2] = num + 8;
    values[3] = len ? data : "";
    lengths[0] = (int) strlen(stream);
    lengths[1] = 8;
    lengths[2] = 4;
    lengths[3] = (int) len;
    rc = loom__store_query(s, &snapshot_save_stmt, values, lengths, &r);
    if (rc == LOOM_OK && (PQntuples(r) != 1 || PQgetisnull(r, 0, 0)))
        rc = loom__store_fail(s, LOOM_EINVAL,
                              "snapshot of \"%s\" at version %lld: no such "
                              "stream; a snapshot is of a version the stream "
                              "has",
                              stream, (long long) version);
    else if (rc == LOOM_OK && loom__pg_get_i64(r, 0, 0, &have) &&
             have < version)
        rc = loom__store_fail(s, LOOM_EINVAL,
                              "snapshot of \"%s\" at version %lld: the "
                              "stream is at version %lld; a snapshot is of a "
                              "version the stream has",
                              stream, (long long) version, (long long) have);
    PQclear(r);
    return rc;
}

loom_err
loom_store_snapshot_load(loom_store *s, const char *stream,
                         int32_t schema_version, void **data, size_t *len,
                         int64_t *version)
{
    const char *values[2];
    int lengths[2];
    char num[4];
    PGresult *r = NULL;
    loom_err rc;

    if (data != NULL)
        *data = NULL;
    if (s == NULL)
        return LOOM_EINVAL;
    loom__store_enter(s);
    if (data == NULL || len == NULL || version == NULL)
        return loom__store_null(s, "loom_store_snapshot_load",
                                data == NULL  ? "data"
                                : len == NULL ? "len"
                                              : "version");
    rc = loom__store_begin(s);
    if (rc == LOOM_OK)
        rc = loom__store_check_stream(s, stream, LOOM_MAX_STREAM_NAME_LIMIT);
    if (rc != LOOM_OK)
        return rc;
    for (int i = 0; i < 4; i++)
        num[i] = (char) ((uint32_t) schema_version >> (24 - 8 * i));
    values[0] = stream;
    values[1] = num;
    lengths[0] = (int) strlen(stream);
    lengths[1] = 4;
    rc = loom__store_query(s, &snapshot_load_stmt, values, lengths, &r);
    if (rc == LOOM_OK && PQntuples(r) == 0)
        rc = loom__store_fail(s, LOOM_ENOTFOUND,
                              "no snapshot of \"%s\" with schema version %d",
                              stream, (int) schema_version);
    if (rc == LOOM_OK && !loom__pg_get_i64(r, 0, 0, version))
        rc = loom__store_fail(s, LOOM_ESCHEMA, "bad loom.snapshots row");
    if (rc == LOOM_OK) {
        *len = (size_t) PQgetlength(r, 0, 1);
        *data = loom_malloc(*len);
        if (*data == NULL)
            rc = loom__store_fail(s, LOOM_ENOMEM, "out of memory");
        else
            memcpy(*data, PQgetvalue(r, 0, 1), *len);
    }
    PQclear(r);
    return rc;
}
