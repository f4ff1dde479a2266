/* A growable byte buffer with sticky allocation failure (see buf.h). */
#include "buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "loom/alloc.h"

void
loom__buf_free(loom__buf *b)
{
    loom_free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->failed = 0;
}

void
loom__buf_reset(loom__buf *b)
{
    b->len = 0;
    b->failed = 0;
    if (b->data != NULL)
        b->data[0] = '\0';
}

int
loom__buf_reserve(loom__buf *b, size_t extra)
{
    size_t need, cap;
    char *p;

    if (b->failed)
        return -1;
    /* Keep one byte for the terminating NUL. */
    if (extra > SIZE_MAX / 2 - b->len) {
        b->failed = 1;
        return -1;
    }
    need = b->len + extra + 1;
    if (need <= b->cap)
        return 0;
    cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    p = loom_realloc(b->data, cap);
    if (p == NULL) {
        b->failed = 1;
        return -1;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

void
loom__buf_put(loom__buf *b, const void *p, size_t n)
{
    if (loom__buf_reserve(b, n) != 0)
        return;
    if (n > 0)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void
loom__buf_puts(loom__buf *b, const char *s)
{
    loom__buf_put(b, s, strlen(s));
}

void
loom__buf_putc(loom__buf *b, char c)
{
    loom__buf_put(b, &c, 1);
}

void
loom__buf_printf(loom__buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || loom__buf_reserve(b, (size_t) n) != 0) {
        b->failed = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t) n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t) n;
}

void
loom__buf_put_be32(loom__buf *b, uint32_t v)
{
    unsigned char p[4] = {(unsigned char) (v >> 24), (unsigned char) (v >> 16),
                          (unsigned char) (v >> 8), (unsigned char) v};
    loom__buf_put(b, p, 4);
}

void
loom__buf_put_be64(loom__buf *b, uint64_t v)
{
    loom__buf_put_be32(b, (uint32_t) (v >> 32));
    loom__buf_put_be32(b, (uint32_t) v);
}

void
loom__buf_patch_be32(loom__buf *b, size_t at, uint32_t v)
{
    unsigned char *p;

    if (b->failed || at + 4 > b->len)
        return;
    p = (unsigned char *) b->data + at;
    p[0] = (unsigned char) (v >> 24);
    p[1] = (unsigned char) (v >> 16);
    p[2] = (unsigned char) (v >> 8);
    p[3] = (unsigned char) v;
}

char *
loom__buf_take(loom__buf *b)
{
    char *p;

    if (b->failed) {
        loom__buf_free(b);
        return NULL;
    }
    if (loom__buf_reserve(b, 0) != 0) {
        loom__buf_free(b);
        return NULL;
    }
    p = b->data;
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

const char *
loom__buf_str(const loom__buf *b)
{
    return b->data != NULL && !b->failed ? b->data : "";
}
