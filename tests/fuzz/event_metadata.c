/*
 * Reading events (eventstore/events.c): loom__events_from_result() on a
 * row of loom.events whose metadata, and optionally numeric columns, are
 * arbitrary bytes. The PGresult is built with libpq's own constructors
 * (PQmakeEmptyPGresult, PQsetvalue), so the code under test reads it
 * exactly as it reads a server's; no database is involved.
 *
 * Input: a flags byte; with bit 0 set and enough bytes, the next 36 give
 * position, tx, version (8 each, big-endian), schema_version (4) and
 * recorded_at (8); the rest is the metadata column (NULL with bit 1).
 *
 * Properties: a page of one event comes back (undecodable metadata reads
 * as absent); its metadata, encoded again with loom__metadata_encode()
 * and read back, gives the same correlation id, causation id and
 * headers; and the outbox's header decoder (outbox/headers.c), which
 * reads the same message, finds the same headers.
 */
#include <string.h>

#include <libpq-fe.h>

#include "buf.h"
#include "fuzz.h"
#include "headers.h"
#include "loom/alloc.h"
#include "store_int.h"

enum { COLS = 10, FIXED = 36 };

/* A one-row result with the columns of eventstore/read.c's queries:
 * position, tx, stream, version, event_id, type, schema_version, data,
 * metadata, recorded_at; binary format. */
static PGresult *
em_result(const uint8_t *f, const uint8_t *meta, size_t meta_len, int null)
{
    static const uint8_t id[16] = {1, 2, 3, 4};
    PGresAttDesc attrs[COLS];
    PGresult *r = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    const void *val[COLS] = {f,   f + 8,  "order-1",  f + 16, id,
                             "t", f + 24, "\x08\x01", meta,   f + 28};
    int len[COLS] = {8, 8, 7, 8, 16, 1, 4, 2, (int) meta_len, 8};

    if (r == NULL)
        abort();
    memset(attrs, 0, sizeof attrs);
    for (int i = 0; i < COLS; i++) {
        attrs[i].name = (char *) "c";
        attrs[i].format = 1;
        attrs[i].typlen = -1;
    }
    if (null)
        len[8] = -1; /* PQsetvalue: a NULL */
    if (!PQsetResultAttrs(r, COLS, attrs))
        abort();
    for (int i = 0; i < COLS; i++)
        if (!PQsetvalue(r, 0, i, (char *) val[i], len[i]))
            abort();
    return r;
}

/* Reads the one-row result into a page with a bare store handle (only
 * its error buffer and upcasters are used: none here). */
static loom_events *
em_read(loom_store *s, PGresult *r)
{
    loom_position after = {0, 0};
    loom_events *page = NULL;
    loom_err rc = loom__events_from_result(s, r, after, &page);

    FUZZ_CHECK(rc == LOOM_OK && page != NULL);
    FUZZ_CHECK(loom_events_count(page) == 1);
    return page;
}

static int
em_same(const char *a, const char *b)
{
    return (a == NULL && b == NULL) ||
           (a != NULL && b != NULL && strcmp(a, b) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t fixed[FIXED] = {0};
    loom_store s;
    loom_events *page, *again;
    const loom_event *ev, *ev2;
    loom_event_data ed;
    loom__buf b = LOOM__BUF_INIT;
    loom_header *h = NULL;
    size_t n = 0;
    void *arena = NULL;
    int null;

    if (size == 0)
        return 0;
    null = (data[0] & 2) != 0;
    if ((data[0] & 1) && size > FIXED) {
        memcpy(fixed, data + 1, FIXED);
        data += FIXED;
        size -= FIXED;
    }
    data++;
    size--;
    memset(&s, 0, sizeof s);
    page = em_read(&s, em_result(fixed, data, size, null));
    ev = loom_events_at(page, 0);
    FUZZ_CHECK(ev->n_headers == 0 || ev->headers != NULL);

    /* Encoded again and read back: the same metadata. */
    memset(&ed, 0, sizeof ed);
    ed.correlation_id = ev->correlation_id;
    ed.causation_id = ev->causation_id;
    ed.headers = ev->headers;
    ed.n_headers = ev->n_headers;
    loom__metadata_encode(&b, &ed);
    FUZZ_CHECK(!b.failed);
    again = em_read(&s, em_result(fixed, (const uint8_t *) b.data, b.len, 0));
    ev2 = loom_events_at(again, 0);
    FUZZ_CHECK(em_same(ev->correlation_id, ev2->correlation_id));
    FUZZ_CHECK(em_same(ev->causation_id, ev2->causation_id));
    FUZZ_CHECK(ev->n_headers == ev2->n_headers);
    for (size_t i = 0; i < ev->n_headers; i++) {
        FUZZ_CHECK(strcmp(ev->headers[i].key, ev2->headers[i].key) == 0);
        FUZZ_CHECK(strcmp(ev->headers[i].value, ev2->headers[i].value) == 0);
    }

    /* The outbox reads the same message: when the store found headers,
     * so does it. */
    if (ev->n_headers > 0) {
        FUZZ_CHECK(loom__headers_decode(data, size, &h, &n, &arena) == 0);
        FUZZ_CHECK(n == ev->n_headers);
        for (size_t i = 0; i < n; i++) {
            FUZZ_CHECK(strcmp(h[i].key, ev->headers[i].key) == 0);
            FUZZ_CHECK(strcmp(h[i].value, ev->headers[i].value) == 0);
        }
        loom_free(arena);
    }
    loom__buf_free(&b);
    loom_events_free(again);
    loom_events_free(page);
    loom__buf_free(&s.err);
    return 0;
}
