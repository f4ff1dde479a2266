/*
 * Private to outbox/: message headers as protobuf bytes, in the shape of
 * event metadata (framework/proto/loom/metadata.proto, field 3). The
 * topics transport stores them so; the outbox stores them so, and the
 * relay decodes them to publish.
 */
#ifndef LOOM_HEADERS_H
#define LOOM_HEADERS_H

#include <stddef.h>

#include "buf.h"
#include "loom/eventstore.h"

/* Appends the protobuf encoding of `n` headers to b. */
void loom__headers_encode(loom__buf *b, const loom_header *h, size_t n);

/* Decodes `len` bytes into an array of headers whose strings live in
 * `arena` (NUL-terminated); *out is NULL when there are none. Returns 0,
 * or -1 when the bytes are not a header list. The pointers stay valid
 * until the arena is freed (it never moves: headers are decoded into a
 * buffer sized in a first pass). */
int loom__headers_decode(const void *data, size_t len, loom_header **out,
                         size_t *n, void **arena);

#endif /* LOOM_HEADERS_H */
