/*
 * Reads: one stream by version, all events in commit order, one category
 * in commit order with consumer-group hashing. Each is one keyset-paged
 * statement with binary results (see DESIGN.md, "Reading in commit
 * order").
 */
#include <string.h>

#include "pgwire.h"
#include "store_int.h"

#define READ_COLUMNS                                                           \
    "SELECT position, tx, stream, version, event_id, type, schema_version, "   \
    "data, metadata, recorded_at FROM loom.events "

#define OID_T LOOM__OID_TEXT
#define OID_X LOOM__OID_XID8
#define OID_8 LOOM__OID_INT8
#define OID_4 LOOM__OID_INT4

static const loom__stmt read_forward_stmt = {
    LOOM__STMT_READ_FORWARD,
    "loom_read_forward",
    READ_COLUMNS "WHERE stream = $1 AND version >= $2 "
                 "ORDER BY version LIMIT $3",
    3,
    {OID_T, OID_8, OID_8}};

static const loom__stmt read_backward_stmt = {
    LOOM__STMT_READ_BACKWARD,
    "loom_read_backward",
    READ_COLUMNS "WHERE stream = $1 AND version <= $2 "
                 "ORDER BY version DESC LIMIT $3",
    3,
    {OID_T, OID_8, OID_8}};

/* Only rows of transactions below the snapshot's xmin: all of those have
 * ended, so nothing can commit behind the cursor later. */
static const loom__stmt read_all_stmt = {
    LOOM__STMT_READ_ALL,
    "loom_read_all",
    READ_COLUMNS "WHERE (tx, position) > ($1, $2) "
                 "AND tx < pg_snapshot_xmin(pg_current_snapshot()) "
                 "ORDER BY tx, position LIMIT $3",
    3,
    {OID_X, OID_8, OID_8}};

static const loom__stmt read_category_stmt = {
    LOOM__STMT_READ_CATEGORY,
    "loom_read_category",
    READ_COLUMNS "WHERE category = $1 AND (tx, position) > ($2, $3) "
                 "AND tx < pg_snapshot_xmin(pg_current_snapshot()) "
                 "ORDER BY tx, position LIMIT $4",
    4,
    {OID_T, OID_X, OID_8, OID_8}};

static const loom__stmt read_group_stmt = {
    LOOM__STMT_READ_GROUP,
    "loom_read_group",
    READ_COLUMNS "WHERE category = $1 AND (tx, position) > ($2, $3) "
                 "AND tx < pg_snapshot_xmin(pg_current_snapshot()) "
                 "AND loom.group_member(stream, $6) = $5 "
                 "ORDER BY tx, position LIMIT $4",
    6,
    {OID_T, OID_X, OID_8, OID_8, OID_4, OID_4}};

static loom_err
read_check_max(loom_store *s, size_t max)
{
    if (max == 0)
        return loom__store_fail(s, LOOM_EINVAL, "a read of 0 events");
    if (max > s->cfg.max_read)
        return loom__store_fail(s, LOOM_ETOOBIG,
                                "a read of %zu events is over the limit of "
                                "%zu (max_read): read in pages",
                                max, s->cfg.max_read);
    return LOOM_OK;
}

loom_err
loom_store_read_stream_send(loom_store *s, const char *stream, int64_t from,
                            loom_direction dir, size_t max)
{
    const char *values[3];
    int lengths[3];
    loom__buf *b;
    loom_err rc;

    if (s == NULL)
        return LOOM_EINVAL;
    rc = loom__store_begin(s);
    if (rc == LOOM_OK)
        rc = loom__store_check_stream(s, stream, LOOM_MAX_STREAM_NAME_LIMIT);
    if (rc == LOOM_OK)
        rc = read_check_max(s, max);
    if (rc != LOOM_OK)
        return rc;
    if (from < 0 || (dir != LOOM_FORWARD && dir != LOOM_BACKWARD))
        return loom__store_fail(s, LOOM_EINVAL,
                                "reading \"%s\": version %lld or direction "
                                "%d is invalid",
                                stream, (long long) from, (int) dir);
    b = &s->params;
    loom__buf_reset(b);
    loom__buf_put_be64(b, (uint64_t) from);
    loom__buf_put_be64(b, (uint64_t) max);
    if (b->failed)
        return loom__store_fail(s, LOOM_ENOMEM, "out of memory");
    values[0] = stream;
    values[1] = b->data;
    values[2] = b->data + 8;
    lengths[0] = (int) strlen(stream);
    lengths[1] = lengths[2] = 8;
    s->read_after.tx = 0;
    s->read_after.position = 0;
    return loom__store_send(s, LOOM__OP_EVENTS,
                            dir == LOOM_FORWARD ? &read_forward_stmt
                                                : &read_backward_stmt,
                            values, lengths);
}

/* The parameters of a read in commit order, into s->params: the cursor,
 * the page size, and the group (member, size) when there is one. */
static loom_err
read_put_cursor(loom_store *s, loom_position after, size_t max,
                const loom_group *group)
{
    loom__buf *b = &s->params;

    loom__buf_reset(b);
    loom__buf_put_be64(b, after.tx);
    loom__buf_put_be64(b, (uint64_t) after.position);
    loom__buf_put_be64(b, (uint64_t) max);
    if (group != NULL) {
        loom__buf_put_be32(b, group->member);
        loom__buf_put_be32(b, group->size);
    }
    if (b->failed)
        return loom__store_fail(s, LOOM_ENOMEM, "out of memory");
    s->read_after = after;
    return LOOM_OK;
}

loom_err
loom_store_read_all_send(loom_store *s, loom_position after, size_t max)
{
    const char *values[3];
    int lengths[3] = {8, 8, 8};
    loom_err rc;

    if (s == NULL)
        return LOOM_EINVAL;
    rc = loom__store_begin(s);
    if (rc == LOOM_OK)
        rc = read_check_max(s, max);
    if (rc != LOOM_OK)
        return rc;
    rc = read_put_cursor(s, after, max, NULL);
    if (rc != LOOM_OK)
        return rc;
    for (int i = 0; i < 3; i++)
        values[i] = s->params.data + 8 * i;
    return loom__store_send(s, LOOM__OP_EVENTS, &read_all_stmt, values,
                            lengths);
}

static loom_err
read_check_category(loom_store *s, const char *category,
                    const loom_group *group)
{
    loom_err rc =
        loom__store_check_stream(s, category, LOOM_MAX_STREAM_NAME_LIMIT);

    if (rc != LOOM_OK)
        return rc;
    if (strchr(category, '-') != NULL)
        return loom__store_fail(s, LOOM_EINVAL,
                                "category \"%s\" contains '-': a category is "
                                "the part of a stream name before the first "
                                "'-'",
                                category);
    if (group != NULL && (group->size == 0 || group->member >= group->size ||
                          group->size > INT32_MAX))
        return loom__store_fail(s, LOOM_EINVAL,
                                "consumer group member %u of %u is invalid: "
                                "need 0 <= member < size <= %d",
                                group->member, group->size, INT32_MAX);
    return LOOM_OK;
}

loom_err
loom_store_read_category_send(loom_store *s, const char *category,
                              loom_position after, const loom_group *group,
                              size_t max)
{
    const char *values[6];
    int lengths[6] = {0, 8, 8, 8, 4, 4};
    loom__buf *b;
    loom_err rc;

    if (s == NULL)
        return LOOM_EINVAL;
    rc = loom__store_begin(s);
    if (rc == LOOM_OK)
        rc = read_check_category(s, category, group);
    if (rc == LOOM_OK)
        rc = read_check_max(s, max);
    if (rc != LOOM_OK)
        return rc;
    rc = read_put_cursor(s, after, max, group);
    if (rc != LOOM_OK)
        return rc;
    b = &s->params;
    values[0] = category;
    lengths[0] = (int) strlen(category);
    for (int i = 0; i < 3; i++)
        values[i + 1] = b->data + 8 * i;
    values[4] = b->data + 24;
    values[5] = b->data + 28;
    return loom__store_send(s, LOOM__OP_EVENTS,
                            group ? &read_group_stmt : &read_category_stmt,
                            values, lengths);
}

loom_err
loom_store_events_recv(loom_store *s, loom_events **out)
{
    PGresult *r = NULL;
    loom_err rc;

    if (out != NULL)
        *out = NULL;
    if (s == NULL)
        return LOOM_EINVAL;
    loom__store_enter(s);
    if (out == NULL)
        return loom__store_null(s, "loom_store_events_recv", "out");
    rc = loom__store_take(s, LOOM__OP_EVENTS, &r);
    if (rc != LOOM_OK)
        return rc;
    return loom__events_from_result(s, r, s->read_after, out);
}

/* The blocking reads: send, wait, receive. */
static loom_err
read_finish(loom_store *s, loom_err rc, loom_events **out)
{
    if (rc == LOOM_OK)
        rc = loom__store_wait(s);
    if (rc == LOOM_OK)
        return loom_store_events_recv(s, out);
    return rc;
}

loom_err
loom_store_read_stream(loom_store *s, const char *stream, int64_t from,
                       loom_direction dir, size_t max, loom_events **out)
{
    if (out == NULL)
        return s != NULL ? loom__store_null(s, "loom_store_read_stream", "out")
                         : LOOM_EINVAL;
    *out = NULL;
    return read_finish(
        s, loom_store_read_stream_send(s, stream, from, dir, max), out);
}

loom_err
loom_store_read_all(loom_store *s, loom_position after, size_t max,
                    loom_events **out)
{
    if (out == NULL)
        return s != NULL ? loom__store_null(s, "loom_store_read_all", "out")
                         : LOOM_EINVAL;
    *out = NULL;
    return read_finish(s, loom_store_read_all_send(s, after, max), out);
}

loom_err
loom_store_read_category(loom_store *s, const char *category,
                         loom_position after, const loom_group *group,
                         size_t max, loom_events **out)
{
    if (out == NULL)
        return s != NULL
                   ? loom__store_null(s, "loom_store_read_category", "out")
                   : LOOM_EINVAL;
    *out = NULL;
    return read_finish(
        s, loom_store_read_category_send(s, category, after, group, max), out);
}
