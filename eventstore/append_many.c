/*
 * Appends to several streams in one statement (append_many.h). Each
 * append's elements are encoded as it is added, into one buffer per
 * parameter; queueing prefixes each with its array header.
 */
#include <limits.h>
#include <string.h>

#include "append_many.h"
#include "pgwire.h"
#include "store_int.h"
#include "tx_int.h"

#define APPEND_MANY_SQL                                                        \
    "SELECT loom.append_many($1, $2, $3, $4, $5, $6, $7, $8)"

/* The eight parameters, in order, with their element types. */
#define AM_PARAMS 8

static loom__buf *
am_param(loom__append_many *am, int i)
{
    loom__buf *const p[AM_PARAMS] = {&am->streams, &am->expected, &am->counts,
                                     &am->ids,     &am->types,    &am->svs,
                                     &am->data,    &am->metadata};
    return p[i];
}

static const uint32_t am_elem_oid[AM_PARAMS] = {
    LOOM__OID_TEXT, LOOM__OID_INT8, LOOM__OID_INT4,  LOOM__OID_UUID,
    LOOM__OID_TEXT, LOOM__OID_INT4, LOOM__OID_BYTEA, LOOM__OID_BYTEA};

static const uint32_t am_array_oid[AM_PARAMS] = {
    LOOM__OID_ATEXT, LOOM__OID_AINT8, LOOM__OID_AINT4,  LOOM__OID_AUUID,
    LOOM__OID_ATEXT, LOOM__OID_AINT4, LOOM__OID_ABYTEA, LOOM__OID_ABYTEA};

void
loom__append_many_init(loom__append_many *am)
{
    memset(am, 0, sizeof *am);
}

void
loom__append_many_reset(loom__append_many *am)
{
    for (int i = 0; i < AM_PARAMS; i++)
        loom__buf_reset(am_param(am, i));
    am->n_appends = 0;
    am->n_events = 0;
}

void
loom__append_many_free(loom__append_many *am)
{
    for (int i = 0; i < AM_PARAMS; i++)
        loom__buf_free(am_param(am, i));
    loom__append_many_init(am);
}

/* Puts an int element (length word, then the value). */
static void
am_put_int4(loom__buf *b, uint32_t v)
{
    loom__buf_put_be32(b, 4);
    loom__buf_put_be32(b, v);
}

static loom_err
am_fail(loom__buf *err, loom_err rc, const char *what)
{
    loom__buf_reset(err);
    loom__buf_puts(err, what);
    return rc;
}

/* Encodes one event's elements; the metadata is checked against the
 * default limit as loom_tx_append() does. */
static loom_err
am_put_event(loom__append_many *am, const loom_event_data *e, loom__buf *err)
{
    loom__pg_array_add(&am->ids, e->id.bytes, 16);
    loom__pg_array_add(&am->types, e->type, strlen(e->type));
    am_put_int4(&am->svs, (uint32_t) e->schema_version);
    loom__pg_array_add(&am->data, e->data_len ? e->data : "", e->data_len);
    if (!loom__metadata_present(e)) {
        loom__pg_array_add(&am->metadata, NULL, LOOM__PG_NULL);
        return LOOM_OK;
    }
    size_t slot = am->metadata.len;
    loom__buf_put_be32(&am->metadata, 0);
    loom__metadata_encode(&am->metadata, e);
    size_t len = am->metadata.len - slot - 4;
    if (!am->metadata.failed && len > LOOM_DEFAULT_MAX_METADATA)
        return am_fail(err, LOOM_ETOOBIG,
                       "an event's metadata is over the limit "
                       "(LOOM_DEFAULT_MAX_METADATA)");
    loom__buf_patch_be32(&am->metadata, slot, (uint32_t) len);
    return LOOM_OK;
}

/* Cuts every buffer back to the lengths in `mark`. */
static void
am_truncate(loom__append_many *am, const size_t mark[AM_PARAMS])
{
    for (int i = 0; i < AM_PARAMS; i++) {
        loom__buf *b = am_param(am, i);
        b->len = mark[i];
        b->failed = 0;
    }
}

loom_err
loom__append_many_add(loom__append_many *am, const char *stream,
                      int64_t expected, loom_event_data *events, size_t n,
                      loom__buf *err)
{
    size_t mark[AM_PARAMS];
    loom_err rc;

    rc = loom__append_check_default(stream, expected, events, n, err);
    if (rc != LOOM_OK)
        return rc;
    if (am->n_events > (uint32_t) INT_MAX - n)
        return am_fail(err, LOOM_ETOOBIG,
                       "too many events for one unit of work");
    for (size_t i = 0; i < n; i++)
        if (loom_uuid_is_nil(&events[i].id) &&
            loom_uuid_generate(&events[i].id) != LOOM_OK)
            return am_fail(err, LOOM_EIO, "the system's random source failed");
    for (int i = 0; i < AM_PARAMS; i++)
        mark[i] = am_param(am, i)->len;
    loom__pg_array_add(&am->streams, stream, strlen(stream));
    loom__buf_put_be32(&am->expected, 8);
    loom__buf_put_be64(&am->expected, (uint64_t) expected);
    am_put_int4(&am->counts, (uint32_t) n);
    for (size_t i = 0; i < n; i++) {
        rc = am_put_event(am, &events[i], err);
        if (rc != LOOM_OK) {
            am_truncate(am, mark);
            return rc;
        }
    }
    for (int i = 0; i < AM_PARAMS; i++) {
        if (am_param(am, i)->failed) {
            am_truncate(am, mark);
            return am_fail(err, LOOM_ENOMEM, "out of memory adding an append");
        }
    }
    am->n_appends++;
    am->n_events += (uint32_t) n;
    return LOOM_OK;
}

loom_err
loom__append_many_queue(loom__append_many *am, loom_tx *tx)
{
    loom__buf b = LOOM__BUF_INIT;
    size_t offs[AM_PARAMS];
    const char *values[AM_PARAMS];
    int lengths[AM_PARAMS];
    uint32_t types[AM_PARAMS];
    loom_err rc = LOOM_OK;

    if (am->n_appends == 0)
        return LOOM_OK;
    for (int i = 0; i < AM_PARAMS; i++) {
        const loom__buf *p = am_param(am, i);
        offs[i] = b.len;
        loom__pg_array_begin(&b, am_elem_oid[i],
                             i < 3 ? am->n_appends : am->n_events);
        loom__buf_put(&b, p->data, p->len);
        types[i] = am_array_oid[i];
    }
    if (b.failed) {
        rc = loom__tx_fail(tx, LOOM_ENOMEM, "out of memory queueing appends");
    } else {
        for (int i = 0; i < AM_PARAMS; i++) {
            size_t end = i + 1 < AM_PARAMS ? offs[i + 1] : b.len;
            if (end - offs[i] > INT_MAX) {
                rc = loom__tx_fail(tx, LOOM_ETOOBIG,
                                   "the appends of one unit of work take "
                                   "more than 2 GiB: commit them in parts");
                break;
            }
            values[i] = b.data + offs[i];
            lengths[i] = (int) (end - offs[i]);
        }
    }
    if (rc == LOOM_OK)
        rc = loom_tx_exec_binary(tx, APPEND_MANY_SQL, AM_PARAMS, types, values,
                                 lengths);
    loom__buf_free(&b);
    if (rc == LOOM_OK)
        loom__append_many_reset(am);
    return rc;
}
