/*
 * Writing to the outbox (loom/outbox.h): loom_outbox_add() checks every
 * message, then queues ONE statement, loom.outbox_add(), with the batch
 * as nine binary parameters (the outbox name, one array per column and
 * the keys' hashes), in the caller's unit of work. One statement whatever
 * the number of messages: a row per message costs a round trip's worth of
 * server CPU (DESIGN.md, "What this machine taught us about speed").
 *
 * Absent values travel as SQL NULL: no key (or an empty one), no type, no
 * headers, deliver_at 0. Headers are encoded as event metadata is (the
 * loom.Metadata protobuf), which the relay decodes to publish.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "headers.h"
#include "loom/alloc.h"
#include "loom/outbox.h"
#include "loom/partitioner.h"
#include "outbox_int.h"
#include "pgwire.h"
#include "tx_int.h"

#define OUTBOX_SQL_ADD                                                         \
    "SELECT loom.outbox_add($1, $2, $3, $4, $5, $6, $7, $8, $9)"

/* A text field that must be UTF-8 of at most `limit` bytes (NULL passes:
 * the caller decides whether it may be absent). */
static loom_err
outbox_check_text(loom_tx *tx, size_t i, const char *what, const char *s,
                  size_t limit, const char *limit_name)
{
    size_t len;

    if (s == NULL)
        return LOOM_OK;
    len = strnlen(s, limit + 1);
    if (len > limit)
        return loom__tx_fail(tx, LOOM_ETOOBIG,
                             "outbox message %zu: %s longer than %zu bytes "
                             "(%s)",
                             i, what, limit, limit_name);
    if (!loom__utf8_valid(s, len))
        return loom__tx_fail(tx, LOOM_EINVAL,
                             "outbox message %zu: %s is not valid UTF-8", i,
                             what);
    return LOOM_OK;
}

static loom_err
outbox_check_headers(loom_tx *tx, size_t i, const loom_outbox_message *m)
{
    if (m->headers == NULL && m->n_headers > 0)
        return loom__tx_fail(tx, LOOM_EINVAL,
                             "outbox message %zu (topic \"%s\"): headers is "
                             "NULL but n_headers is %zu",
                             i, m->topic, m->n_headers);
    for (size_t h = 0; h < m->n_headers; h++) {
        const loom_header *hd = &m->headers[h];
        if (hd->key == NULL || hd->key[0] == '\0' || hd->value == NULL)
            return loom__tx_fail(tx, LOOM_EINVAL,
                                 "outbox message %zu (topic \"%s\"): header "
                                 "%zu has an empty key or a NULL value",
                                 i, m->topic, h);
        if (!loom__utf8_valid(hd->key, strlen(hd->key)) ||
            !loom__utf8_valid(hd->value, strlen(hd->value)))
            return loom__tx_fail(tx, LOOM_EINVAL,
                                 "outbox message %zu (topic \"%s\"): header "
                                 "%zu is not valid UTF-8",
                                 i, m->topic, h);
    }
    return LOOM_OK;
}

/* Everything about one message that needs no encoding (outbox_int.h). */
loom_err
loom__outbox_check_msg(loom_tx *tx, size_t i, const loom_outbox_message *m)
{
    loom_err rc;

    if (m->topic == NULL || m->topic[0] == '\0')
        return loom__tx_fail(tx, LOOM_EINVAL, "outbox message %zu has no topic",
                             i);
    rc = outbox_check_text(tx, i, "topic", m->topic, LOOM_OUTBOX_MAX_TOPIC,
                           "LOOM_OUTBOX_MAX_TOPIC");
    if (rc == LOOM_OK)
        rc = outbox_check_text(tx, i, "type name", m->type, LOOM_MAX_TYPE_NAME,
                               "LOOM_MAX_TYPE_NAME");
    if (rc != LOOM_OK)
        return rc;
    if (m->key == NULL && m->key_len > 0)
        return loom__tx_fail(tx, LOOM_EINVAL,
                             "outbox message %zu (topic \"%s\"): key is NULL "
                             "but key_len is %zu",
                             i, m->topic, m->key_len);
    if (m->key_len > LOOM_OUTBOX_MAX_KEY)
        return loom__tx_fail(tx, LOOM_ETOOBIG,
                             "outbox message %zu (topic \"%s\"): key of %zu "
                             "bytes is over the limit of %zu "
                             "(LOOM_OUTBOX_MAX_KEY)",
                             i, m->topic, m->key_len, LOOM_OUTBOX_MAX_KEY);
    if (m->payload == NULL && m->payload_len > 0)
        return loom__tx_fail(tx, LOOM_EINVAL,
                             "outbox message %zu (topic \"%s\"): payload is "
                             "NULL but payload_len is %zu",
                             i, m->topic, m->payload_len);
    if (m->payload_len > LOOM_OUTBOX_MAX_PAYLOAD)
        return loom__tx_fail(tx, LOOM_ETOOBIG,
                             "outbox message %zu (topic \"%s\"): payload of "
                             "%zu bytes is over the limit of %zu "
                             "(LOOM_OUTBOX_MAX_PAYLOAD)",
                             i, m->topic, m->payload_len,
                             LOOM_OUTBOX_MAX_PAYLOAD);
    if (m->deliver_at < 0)
        return loom__tx_fail(tx, LOOM_EINVAL,
                             "outbox message %zu (topic \"%s\"): deliver_at "
                             "%lld is before 1970 (0: at once)",
                             i, m->topic, (long long) m->deliver_at);
    return outbox_check_headers(tx, i, m);
}

/* Appends the headers array, encoding each message's headers straight
 * into the parameter buffer and checking its size. */
static loom_err
outbox_put_headers(loom_tx *tx, loom__buf *b, const loom_outbox_message *m,
                   size_t n)
{
    loom__pg_array_begin(b, LOOM__OID_BYTEA, (uint32_t) n);
    for (size_t i = 0; i < n; i++) {
        size_t slot = b->len, len;
        if (m[i].n_headers == 0) {
            loom__pg_array_add(b, NULL, LOOM__PG_NULL);
            continue;
        }
        loom__buf_put_be32(b, 0);
        loom__headers_encode(b, m[i].headers, m[i].n_headers);
        len = b->len - slot - 4;
        if (!b->failed && len > LOOM_OUTBOX_MAX_HEADERS)
            return loom__tx_fail(tx, LOOM_ETOOBIG,
                                 "outbox message %zu (topic \"%s\"): headers "
                                 "of %zu bytes encoded are over the limit of "
                                 "%zu (LOOM_OUTBOX_MAX_HEADERS)",
                                 i, m[i].topic, len, LOOM_OUTBOX_MAX_HEADERS);
        loom__buf_patch_be32(b, slot, (uint32_t) len);
    }
    return LOOM_OK;
}

/* Appends the arrays that need no checks while encoding: $2 topics, $3
 * keys, $4 types (offs[1..3] set). */
static void
outbox_put_names(loom__buf *b, const loom_outbox_message *m, size_t n,
                 size_t offs[9])
{
    offs[1] = b->len;
    loom__pg_array_begin(b, LOOM__OID_TEXT, (uint32_t) n);
    for (size_t i = 0; i < n; i++)
        loom__pg_array_add(b, m[i].topic, strlen(m[i].topic));
    offs[2] = b->len;
    loom__pg_array_begin(b, LOOM__OID_BYTEA, (uint32_t) n);
    for (size_t i = 0; i < n; i++) {
        if (m[i].key_len == 0) /* no key, or an empty one: NULL */
            loom__pg_array_add(b, NULL, LOOM__PG_NULL);
        else
            loom__pg_array_add(b, m[i].key, m[i].key_len);
    }
    offs[3] = b->len;
    loom__pg_array_begin(b, LOOM__OID_TEXT, (uint32_t) n);
    for (size_t i = 0; i < n; i++) {
        if (m[i].type == NULL || m[i].type[0] == '\0')
            loom__pg_array_add(b, NULL, LOOM__PG_NULL);
        else
            loom__pg_array_add(b, m[i].type, strlen(m[i].type));
    }
}

/* Where the i-th id is in the $7 array at `at`: after the array's
 * header (5 words) and i elements of a length word and 16 bytes. */
#define OUTBOX_ID_AT(at, i) ((at) + 20 + (i) *20 + 4)

/* Appends $6 payloads, $7 ids, $8 deliver_at and $9 key hashes
 * (offs[5..8] set). A nil id gets a fresh one here, written back to the
 * message only once the statement is queued. Errors: LOOM_EIO. */
static loom_err
outbox_put_rest(loom__buf *b, const loom_outbox_message *m, size_t n,
                size_t offs[9])
{
    offs[5] = b->len;
    loom__pg_array_begin(b, LOOM__OID_BYTEA, (uint32_t) n);
    for (size_t i = 0; i < n; i++)
        loom__pg_array_add(b, m[i].payload_len ? m[i].payload : "",
                           m[i].payload_len);
    offs[6] = b->len;
    loom__pg_array_begin(b, LOOM__OID_UUID, (uint32_t) n);
    for (size_t i = 0; i < n; i++) {
        loom_uuid id = m[i].id;
        if (loom_uuid_is_nil(&id) && loom_uuid_generate(&id) != LOOM_OK)
            return LOOM_EIO;
        loom__pg_array_add(b, id.bytes, 16);
    }
    offs[7] = b->len;
    loom__pg_array_begin(b, LOOM__OID_TSTZ, (uint32_t) n);
    for (size_t i = 0; i < n; i++) {
        char at[8];
        if (m[i].deliver_at == 0) {
            loom__pg_array_add(b, NULL, LOOM__PG_NULL);
            continue;
        }
        /* timestamptz in binary: microseconds since 2000-01-01 UTC. */
        loom__pg_put_be64(at, (uint64_t) (m[i].deliver_at - LOOM__PG_EPOCH_US));
        loom__pg_array_add(b, at, 8);
    }
    /* Each key's murmur2, which a relay publishing inside the database
     * would otherwise compute in PL/pgSQL (schema 18). */
    offs[8] = b->len;
    loom__pg_array_begin(b, LOOM__OID_INT4, (uint32_t) n);
    for (size_t i = 0; i < n; i++) {
        char h[4];
        if (m[i].key_len == 0) {
            loom__pg_array_add(b, NULL, LOOM__PG_NULL);
            continue;
        }
        loom__pg_put_be32(h, (uint32_t) loom_murmur2(m[i].key, m[i].key_len));
        loom__pg_array_add(b, h, 4);
    }
    return LOOM_OK;
}

/* Builds the nine parameters into b; offs[] and lens[] locate them. */
static loom_err
outbox_build(loom_tx *tx, loom__buf *b, const char *outbox,
             const loom_outbox_message *m, size_t n, size_t offs[9],
             int lens[9])
{
    loom_err rc;

    offs[0] = 0;
    loom__buf_puts(b, outbox);
    outbox_put_names(b, m, n, offs);
    offs[4] = b->len;
    rc = outbox_put_headers(tx, b, m, n);
    if (rc != LOOM_OK)
        return rc;
    if (outbox_put_rest(b, m, n, offs) != LOOM_OK)
        return loom__tx_fail(tx, LOOM_EIO, "the system's random source failed");
    if (b->failed)
        return loom__tx_fail(tx, LOOM_ENOMEM,
                             "out of memory building %zu outbox messages", n);
    if (b->len > LOOM_TX_MAX_BYTES)
        return loom__tx_fail(tx, LOOM_ETOOBIG,
                             "%zu outbox messages take %zu bytes, over the "
                             "unit of work's limit of %zu "
                             "(LOOM_TX_MAX_BYTES): split them",
                             n, b->len, LOOM_TX_MAX_BYTES);
    for (int i = 0; i < 9; i++)
        lens[i] = (int) ((i < 8 ? offs[i + 1] : b->len) - offs[i]);
    return LOOM_OK;
}

static int
outbox_by_id(const void *a, const void *b)
{
    const loom_outbox_message *x = *(const loom_outbox_message *const *) a;
    const loom_outbox_message *y = *(const loom_outbox_message *const *) b;

    return memcmp(x->id.bytes, y->id.bytes, sizeof x->id.bytes);
}

/* Two messages of one call with the same id (not nil: nil ids are made
 * fresh): the topic's deduplication or the consumer's inbox would keep
 * only the first, and the second would be lost without a word. Sorted,
 * so a batch of thousands costs n log n. */
static loom_err
outbox_check_ids(loom_tx *tx, const loom_outbox_message *msgs, size_t n)
{
    const loom_outbox_message **v;
    size_t k = 0;
    loom_err rc = LOOM_OK;

    if (n < 2)
        return LOOM_OK;
    if ((v = loom_malloc(n * sizeof *v)) == NULL)
        return loom__tx_fail(tx, LOOM_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        if (!loom_uuid_is_nil(&msgs[i].id))
            v[k++] = &msgs[i];
    qsort(v, k, sizeof *v, outbox_by_id);
    for (size_t i = 1; i < k && rc == LOOM_OK; i++) {
        size_t a = (size_t) (v[i - 1] - msgs), b = (size_t) (v[i] - msgs);
        if (outbox_by_id(&v[i - 1], &v[i]) == 0)
            rc = loom__tx_fail(tx, LOOM_EINVAL,
                               "outbox messages %zu and %zu have the same id: "
                               "the later would be dropped as a duplicate of "
                               "the earlier (leave ids nil for fresh ones)",
                               a < b ? a : b, a < b ? b : a);
    }
    loom_free(v);
    return rc;
}

static loom_err
outbox_check(loom_tx *tx, const char *outbox, const loom_outbox_message *msgs,
             size_t n)
{
    size_t len = strnlen(outbox, LOOM_OUTBOX_MAX_NAME + 1);

    if (!loom__outbox_name_ok(outbox))
        return loom__tx_fail(tx, LOOM_EINVAL,
                             "outbox name \"%.*s\" is not 1 to %d letters, "
                             "digits, '_', '-' or '.'",
                             (int) len, outbox, LOOM_OUTBOX_MAX_NAME);
    if (msgs == NULL || n == 0)
        return loom__tx_fail(tx, LOOM_EINVAL, "no messages for outbox \"%s\"",
                             outbox);
    if (n > UINT32_MAX / 2)
        return loom__tx_fail(tx, LOOM_ETOOBIG,
                             "%zu outbox messages in one call: split them", n);
    for (size_t i = 0; i < n; i++) {
        loom_err rc = loom__outbox_check_msg(tx, i, &msgs[i]);
        if (rc != LOOM_OK)
            return rc;
    }
    return outbox_check_ids(tx, msgs, n);
}

loom_err
loom_outbox_add(loom_tx *tx, const char *outbox, loom_outbox_message *msgs,
                size_t n)
{
    static const uint32_t types[9] = {
        LOOM__OID_TEXT,  LOOM__OID_ATEXT,  LOOM__OID_ABYTEA,
        LOOM__OID_ATEXT, LOOM__OID_ABYTEA, LOOM__OID_ABYTEA,
        LOOM__OID_AUUID, LOOM__OID_ATSTZ,  LOOM__OID_AINT4};
    loom__buf b = LOOM__BUF_INIT;
    const char *values[9];
    size_t offs[9];
    int lens[9];
    loom_err rc;

    if (tx == NULL)
        return LOOM_EINVAL;
    if (outbox == NULL)
        outbox = LOOM_OUTBOX_DEFAULT;
    rc = outbox_check(tx, outbox, msgs, n);
    if (rc == LOOM_OK)
        rc = outbox_build(tx, &b, outbox, msgs, n, offs, lens);
    if (rc == LOOM_OK) {
        for (int i = 0; i < 9; i++)
            values[i] = b.data + offs[i];
        rc = loom_tx_exec_binary(tx, OUTBOX_SQL_ADD, 9, types, values, lens);
    }
    /* Queued: the generated ids go back to the caller. */
    for (size_t i = 0; rc == LOOM_OK && i < n; i++)
        memcpy(msgs[i].id.bytes, b.data + OUTBOX_ID_AT(offs[6], i), 16);
    loom__buf_free(&b);
    return rc;
}
