/* The growable text buffer (see sbuf.h). */
#include "sbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "loom/alloc.h"

/* Makes room for `extra` more bytes and the NUL; 0 or -1. */
static int
sbuf_reserve(ctl_buf *b, size_t extra)
{
    size_t cap;
    char *p;

    if (b->failed)
        return -1;
    if (extra < b->cap - b->len)
        return 0;
    if (extra > ((size_t) -1) / 2 - b->len) {
        b->failed = 1;
        return -1;
    }
    cap = b->cap ? b->cap : 256;
    while (cap - b->len <= extra)
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
ctl_buf_put(ctl_buf *b, const void *p, size_t n)
{
    if (sbuf_reserve(b, n) != 0)
        return;
    if (n > 0)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void
ctl_buf_puts(ctl_buf *b, const char *s)
{
    ctl_buf_put(b, s, strlen(s));
}

void
ctl_buf_putc(ctl_buf *b, char c)
{
    ctl_buf_put(b, &c, 1);
}

void
ctl_buf_printf(ctl_buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = 1;
        return;
    }
    if (sbuf_reserve(b, (size_t) n) != 0)
        return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t) n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t) n;
}

void
ctl_buf_reset(ctl_buf *b)
{
    b->len = 0;
    b->failed = 0;
    if (b->data != NULL)
        b->data[0] = '\0';
}

void
ctl_buf_free(ctl_buf *b)
{
    loom_free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->failed = 0;
}

const char *
ctl_buf_str(const ctl_buf *b)
{
    return b->data != NULL && !b->failed ? b->data : "";
}
