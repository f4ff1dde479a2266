/*
 * Message headers, stored as protobuf bytes in the same shape as event
 * metadata (framework/proto/loom/metadata.proto): field 3, repeated
 * Header {1 key, 2 value}, written by the store's metadata encoder. Read
 * here by hand: two strings per header do not justify generated code and
 * an allocation per message, and the store's reader decodes into its
 * page's arena.
 */
#include <string.h>

#include "headers.h"
#include "loom/alloc.h"
#include "store_int.h"

void
loom__headers_encode(loom__buf *b, const loom_header *h, size_t n)
{
    /* The event store writes the same message for event metadata; with
     * only headers set, that is all it writes. */
    loom_event_data e;

    memset(&e, 0, sizeof e);
    e.headers = h;
    e.n_headers = n;
    loom__metadata_encode(b, &e);
}

/* Reads a varint at *p (< end); returns 0 when malformed. */
static int
hd_read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    *v = 0;
    for (unsigned shift = 0; *p < end && shift < 64; shift += 7) {
        uint8_t byte = *(*p)++;
        *v |= (uint64_t) (byte & 0x7f) << shift;
        if (!(byte & 0x80))
            return 1;
    }
    return 0;
}

/* Reads one length-delimited field; other wire types are skipped by the
 * caller refusing them (we only ever write length-delimited fields). */
static int
hd_read_field(const uint8_t **p, const uint8_t *end, unsigned *field,
              const uint8_t **data, size_t *len)
{
    uint64_t tag, l;

    if (!hd_read_varint(p, end, &tag) || (tag & 7) != 2 ||
        !hd_read_varint(p, end, &l) || l > (uint64_t) (end - *p))
        return 0;
    *field = (unsigned) (tag >> 3);
    *data = *p;
    *len = (size_t) l;
    *p += l;
    return 1;
}

/* Walks the list: counts headers and their string bytes, or fills `hs`
 * with strings copied to `strs` when they are not NULL. */
static int
hd_walk(const uint8_t *p, const uint8_t *end, size_t *n, size_t *bytes,
        loom_header *hs, char *strs)
{
    *n = 0;
    *bytes = 0;
    while (p < end) {
        const uint8_t *d, *q, *qend;
        const uint8_t *kv[2] = {NULL, NULL};
        size_t kvl[2] = {0, 0}, len;
        unsigned field;

        if (!hd_read_field(&p, end, &field, &d, &len))
            return -1;
        if (field != 3)
            continue;
        for (q = d, qend = d + len; q < qend;) {
            const uint8_t *fd;
            size_t fl;
            unsigned f;
            if (!hd_read_field(&q, qend, &f, &fd, &fl))
                return -1;
            if (f == 1 || f == 2) {
                kv[f - 1] = fd;
                kvl[f - 1] = fl;
            }
        }
        if (hs != NULL) {
            for (int i = 0; i < 2; i++) {
                char *s = strs + *bytes;
                if (kvl[i] > 0)
                    memcpy(s, kv[i], kvl[i]);
                s[kvl[i]] = '\0';
                if (i == 0)
                    hs[*n].key = s;
                else
                    hs[*n].value = s;
                *bytes += kvl[i] + 1;
            }
        } else {
            *bytes += kvl[0] + kvl[1] + 2;
        }
        (*n)++;
    }
    return 0;
}

int
loom__headers_decode(const void *data, size_t len, loom_header **out, size_t *n,
                     void **arena)
{
    const uint8_t *p = data, *end;
    size_t count, bytes, again;
    char *mem;

    *out = NULL;
    *n = 0;
    *arena = NULL;
    /* Before any arithmetic on p: data may be NULL when len is 0, and
     * NULL + 0 is undefined in C (found by tests/fuzz/headers.c). */
    if (len == 0)
        return 0;
    end = p + len;
    if (hd_walk(p, end, &count, &bytes, NULL, NULL) != 0)
        return -1;
    if (count == 0)
        return 0;
    mem = loom_malloc(count * sizeof(loom_header) + bytes);
    if (mem == NULL)
        return -1;
    hd_walk(p, end, &count, &again, (loom_header *) (void *) mem,
            mem + count * sizeof(loom_header));
    *out = (loom_header *) (void *) mem;
    *n = count;
    *arena = mem;
    return 0;
}
