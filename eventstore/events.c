/*
 * A page of read events. The page keeps the PGresult it was read from and
 * points into it, so payloads are never copied: a read costs what libpq's
 * own parsing costs. Only decoded metadata (NUL-terminated strings and the
 * header array) lives in a small arena beside it.
 */
#include <string.h>

#include "loom/alloc.h"
#include "pgwire.h"
#include "store_int.h"

/* Column order of every events query (see read.c). */
enum {
    EV_POSITION,
    EV_TX,
    EV_STREAM,
    EV_VERSION,
    EV_ID,
    EV_TYPE,
    EV_SCHEMA_VERSION,
    EV_DATA,
    EV_METADATA,
    EV_RECORDED_AT,
    EV_NCOLS
};

typedef struct events_chunk {
    struct events_chunk *next;
    size_t used, cap;
    /* Aligned storage follows. */
    max_align_t data[];
} events_chunk;

struct loom_events {
    PGresult *result; /* owned; every string and payload points into it */
    size_t n;
    loom_event *ev; /* n events */
    loom_position next;
    events_chunk *arena; /* decoded metadata */
};

size_t
loom_events_count(const loom_events *page)
{
    return page != NULL ? page->n : 0;
}

const loom_event *
loom_events_at(const loom_events *page, size_t i)
{
    if (page == NULL || i >= page->n)
        return NULL;
    return &page->ev[i];
}

loom_position
loom_events_next(const loom_events *page)
{
    loom_position none = {0, 0};

    return page != NULL ? page->next : none;
}

void
loom_events_free(loom_events *page)
{
    if (page == NULL)
        return;
    while (page->arena != NULL) {
        events_chunk *c = page->arena;
        page->arena = c->next;
        loom_free(c);
    }
    PQclear(page->result);
    loom_free(page->ev);
    loom_free(page);
}

/* Allocates `size` bytes, aligned, that live as long as the page. */
static void *
events_alloc(loom_events *page, size_t size)
{
    const size_t align = sizeof(max_align_t);
    events_chunk *c = page->arena;
    void *p;

    size = (size + align - 1) / align * align;
    if (c == NULL || c->cap - c->used < size) {
        size_t cap = size > 4096 ? size : 4096;
        c = loom_malloc(sizeof *c + cap);
        if (c == NULL)
            return NULL;
        c->cap = cap;
        c->used = 0;
        c->next = page->arena;
        page->arena = c;
    }
    p = (char *) c->data + c->used;
    c->used += size;
    return p;
}

/* events_alloc() for upcasters, which do not know the page type. */
static void *
events_arena(void *page, size_t size)
{
    return events_alloc(page, size);
}

/* ------------------------------------------------------------------ */
/* Metadata decoding (protobuf wire format, see metadata.c)            */

typedef struct events_reader {
    const uint8_t *p, *end;
} events_reader;

static int
events_varint(events_reader *r, uint64_t *v)
{
    uint64_t x = 0;

    for (int shift = 0; shift < 64; shift += 7) {
        uint8_t b;
        if (r->p >= r->end)
            return 0;
        b = *r->p++;
        x |= (uint64_t) (b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = x;
            return 1;
        }
    }
    return 0;
}

/* Reads one length-delimited field: its number and bytes. */
static int
events_field(events_reader *r, uint32_t *field, const uint8_t **p, size_t *len)
{
    uint64_t key, n;

    if (!events_varint(r, &key) || (key & 7) != 2 || key >> 3 == 0 ||
        !events_varint(r, &n) || n > (uint64_t) (r->end - r->p))
        return 0;
    *field = (uint32_t) (key >> 3);
    *p = r->p;
    *len = (size_t) n;
    r->p += n;
    return 1;
}

static char *
events_strdup(loom_events *page, const uint8_t *p, size_t len)
{
    char *s = events_alloc(page, len + 1);

    if (s != NULL) {
        memcpy(s, p, len);
        s[len] = '\0';
    }
    return s;
}

static loom_err
events_header(loom_events *page, const uint8_t *p, size_t len, loom_header *h)
{
    events_reader r = {p, p + len};
    const uint8_t *fp;
    size_t flen;
    uint32_t field;

    h->key = h->value = "";
    while (r.p < r.end) {
        if (!events_field(&r, &field, &fp, &flen))
            return LOOM_EDECODE;
        if (field == 1 && (h->key = events_strdup(page, fp, flen)) == NULL)
            return LOOM_ENOMEM;
        if (field == 2 && (h->value = events_strdup(page, fp, flen)) == NULL)
            return LOOM_ENOMEM;
    }
    return LOOM_OK;
}

static size_t
events_count_headers(const uint8_t *p, size_t len)
{
    events_reader r = {p, p + len};
    const uint8_t *fp;
    size_t flen, n = 0;
    uint32_t field;

    while (r.p < r.end && events_field(&r, &field, &fp, &flen))
        n += field == 3;
    return n;
}

static loom_err
events_metadata(loom_events *page, const uint8_t *p, size_t len, loom_event *ev)
{
    events_reader r = {p, p + len};
    size_t nh = events_count_headers(p, len);
    loom_header *hs = NULL;
    const uint8_t *fp;
    size_t flen;
    uint32_t field;
    loom_err rc = LOOM_OK;

    if (nh > 0 && (hs = events_alloc(page, nh * sizeof *hs)) == NULL)
        return LOOM_ENOMEM;
    ev->headers = hs;
    while (rc == LOOM_OK && r.p < r.end) {
        if (!events_field(&r, &field, &fp, &flen))
            return LOOM_EDECODE;
        if (field == 1)
            ev->correlation_id = events_strdup(page, fp, flen);
        else if (field == 2)
            ev->causation_id = events_strdup(page, fp, flen);
        else if (field == 3)
            rc = events_header(page, fp, flen, &hs[ev->n_headers++]);
        if ((field == 1 && ev->correlation_id == NULL) ||
            (field == 2 && ev->causation_id == NULL))
            rc = LOOM_ENOMEM;
    }
    return rc;
}

/* ------------------------------------------------------------------ */
/* Building a page                                                     */

static loom_err
events_row(loom_events *page, const PGresult *r, int row, loom_event *ev)
{
    int64_t at;
    loom_err rc;

    memset(ev, 0, sizeof *ev);
    if (!loom__pg_get_i64(r, row, EV_POSITION, &ev->position) ||
        !loom__pg_get_u64(r, row, EV_TX, &ev->tx) ||
        !loom__pg_get_i64(r, row, EV_VERSION, &ev->version) ||
        !loom__pg_get_i32(r, row, EV_SCHEMA_VERSION, &ev->schema_version) ||
        !loom__pg_get_i64(r, row, EV_RECORDED_AT, &at) ||
        PQgetlength(r, row, EV_ID) != 16)
        return LOOM_ESCHEMA;
    memcpy(ev->id.bytes, PQgetvalue(r, row, EV_ID), 16);
    ev->recorded_at = loom__pg_time_to_unix(at);
    ev->stream = PQgetvalue(r, row, EV_STREAM);
    ev->type = PQgetvalue(r, row, EV_TYPE);
    ev->data = (const uint8_t *) PQgetvalue(r, row, EV_DATA);
    ev->data_len = (size_t) PQgetlength(r, row, EV_DATA);
    if (PQgetisnull(r, row, EV_METADATA))
        return LOOM_OK;
    rc =
        events_metadata(page, (const uint8_t *) PQgetvalue(r, row, EV_METADATA),
                        (size_t) PQgetlength(r, row, EV_METADATA), ev);
    if (rc == LOOM_EDECODE) {
        /* Metadata written by something else than Eventloom: show it as
         * absent rather than block every reader behind this event. */
        ev->correlation_id = ev->causation_id = NULL;
        ev->headers = NULL;
        ev->n_headers = 0;
        rc = LOOM_OK;
    }
    return rc;
}

loom_err
loom__events_from_result(loom_store *s, PGresult *r, loom_position after,
                         loom_events **out)
{
    loom_events *page;
    loom_err rc = LOOM_OK;
    int n = PQntuples(r);

    *out = NULL;
    if (PQnfields(r) != EV_NCOLS) {
        PQclear(r);
        return loom__store_fail(s, LOOM_ESCHEMA,
                                "unexpected columns reading "
                                "loom.events");
    }
    page = loom_malloc(sizeof *page);
    if (page == NULL) {
        PQclear(r);
        return loom__store_fail(s, LOOM_ENOMEM, "out of memory reading events");
    }
    memset(page, 0, sizeof *page);
    page->result = r;
    page->next = after;
    if (n > 0 &&
        (page->ev = loom_malloc((size_t) n * sizeof *page->ev)) == NULL)
        rc = LOOM_ENOMEM;
    for (int i = 0; rc == LOOM_OK && i < n; i++) {
        rc = events_row(page, r, i, &page->ev[i]);
        page->n = (size_t) i + 1;
        if (rc == LOOM_OK && s->upcasters != NULL) {
            /* The upcaster's failure message names the event: keep it. */
            rc = loom__upcast_event(s, &page->ev[i], events_arena, page);
            if (rc != LOOM_OK) {
                loom_events_free(page);
                return rc;
            }
        }
    }
    if (rc != LOOM_OK) {
        int64_t pos = -1;
        loom__pg_get_i64(r, (int) page->n - 1, EV_POSITION, &pos);
        loom__store_fail(s, rc, "reading events: %s at position %lld",
                         rc == LOOM_ENOMEM ? "out of memory"
                                           : "undecodable metadata or columns",
                         (long long) pos);
        loom_events_free(page);
        return rc;
    }
    if (page->n > 0) {
        page->next.tx = page->ev[page->n - 1].tx;
        page->next.position = page->ev[page->n - 1].position;
    }
    *out = page;
    return LOOM_OK;
}
