/*
 * A growable byte buffer, used to build SQL parameters, binary arrays and
 * JSON text. Allocation failure is sticky: after one, every append is a
 * no-op and loom__buf_failed() reports it, so builders check once at the
 * end instead of after each call.
 */
#ifndef LOOM_BUF_H
#define LOOM_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct loom__buf {
    char *data; /* NUL-terminated when len < cap; owned */
    size_t len;
    size_t cap;
    int failed; /* an allocation failed; contents are incomplete */
} loom__buf;

#define LOOM__BUF_INIT                                                         \
    {                                                                          \
        NULL, 0, 0, 0                                                          \
    }

void loom__buf_free(loom__buf *b);
void loom__buf_reset(loom__buf *b);
int loom__buf_reserve(loom__buf *b, size_t extra);
void loom__buf_put(loom__buf *b, const void *p, size_t n);
void loom__buf_puts(loom__buf *b, const char *s);
void loom__buf_putc(loom__buf *b, char c);
void loom__buf_printf(loom__buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void loom__buf_put_be32(loom__buf *b, uint32_t v);
void loom__buf_put_be64(loom__buf *b, uint64_t v);
/* Overwrites 4 bytes at `at` (a length slot reserved earlier). */
void loom__buf_patch_be32(loom__buf *b, size_t at, uint32_t v);
/* Hands the contents (NUL-terminated) to the caller, who frees them with
 * loom_free(); NULL after a failure. The buffer is left empty. */
char *loom__buf_take(loom__buf *b);
/* The contents as a C string, borrowed from `b` until its next change:
 * "" when nothing was appended or after a failure. */
const char *loom__buf_str(const loom__buf *b);

#endif /* LOOM_BUF_H */
