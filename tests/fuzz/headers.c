/*
 * Message headers (outbox/headers.c): loom__headers_decode() on arbitrary
 * bytes, as the relay reads loom.outbox rows and the topics consumer
 * reads topic messages, whoever wrote them.
 *
 * Properties: a decoded list encodes (loom__headers_encode) to bytes that
 * decode to the same list, header for header (compared as C strings:
 * bytes after a NUL inside a value are not representable in a
 * loom_header); a failed decode leaves nothing allocated.
 */
#include <string.h>

#include "buf.h"
#include "fuzz.h"
#include "headers.h"
#include "loom/alloc.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    loom_header *h = NULL, *again = NULL;
    size_t n = 0, n_again = 0;
    void *arena = NULL, *arena_again = NULL;
    loom__buf b = LOOM__BUF_INIT;

    if (loom__headers_decode(data, size, &h, &n, &arena) != 0) {
        FUZZ_CHECK(h == NULL && n == 0 && arena == NULL);
        return 0;
    }
    FUZZ_CHECK((n == 0) == (h == NULL));
    loom__headers_encode(&b, h, n);
    FUZZ_CHECK(!b.failed);
    FUZZ_CHECK(loom__headers_decode(b.data, b.len, &again, &n_again,
                                    &arena_again) == 0);
    FUZZ_CHECK(n_again == n);
    for (size_t i = 0; i < n; i++) {
        FUZZ_CHECK(strcmp(h[i].key, again[i].key) == 0);
        FUZZ_CHECK(strcmp(h[i].value, again[i].value) == 0);
    }
    loom__buf_free(&b);
    loom_free(arena);
    loom_free(arena_again);
    return 0;
}
