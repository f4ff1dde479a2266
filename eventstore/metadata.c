/*
 * Encoding event metadata as the protobuf message loom.Metadata
 * (framework/proto/loom/metadata.proto). Three length-delimited fields are
 * simple enough to write directly, and doing so avoids a generated-code
 * allocation per event on the append path. events.c decodes it.
 */
#include <string.h>

#include "store_int.h"

int
loom__metadata_present(const loom_event_data *e)
{
    return e->correlation_id != NULL || e->causation_id != NULL ||
           e->n_headers > 0;
}

static void
metadata_varint(loom__buf *b, uint64_t v)
{
    unsigned char tmp[10];
    size_t n = 0;

    do {
        tmp[n] = (unsigned char) (v & 0x7f);
        v >>= 7;
        if (v)
            tmp[n] |= 0x80;
        n++;
    } while (v);
    loom__buf_put(b, tmp, n);
}

static size_t
metadata_varint_len(uint64_t v)
{
    size_t n = 1;

    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* Field `field` (wire type 2) holding `len` bytes at `p`. */
static void
metadata_bytes(loom__buf *b, unsigned field, const void *p, size_t len)
{
    metadata_varint(b, (uint64_t) field << 3 | 2);
    metadata_varint(b, len);
    loom__buf_put(b, p, len);
}

void
loom__metadata_encode(loom__buf *b, const loom_event_data *e)
{
    if (e->correlation_id != NULL)
        metadata_bytes(b, 1, e->correlation_id, strlen(e->correlation_id));
    if (e->causation_id != NULL)
        metadata_bytes(b, 2, e->causation_id, strlen(e->causation_id));
    for (size_t i = 0; i < e->n_headers; i++) {
        const loom_header *h = &e->headers[i];
        size_t klen = strlen(h->key), vlen = strlen(h->value);
        size_t inner = 1 + metadata_varint_len(klen) + klen + 1 +
                       metadata_varint_len(vlen) + vlen;
        metadata_varint(b, 3 << 3 | 2);
        metadata_varint(b, inner);
        metadata_bytes(b, 1, h->key, klen);
        metadata_bytes(b, 2, h->value, vlen);
    }
}
