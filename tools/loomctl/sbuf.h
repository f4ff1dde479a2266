/*
 * A growable text buffer for building output lines. Allocation failure is
 * sticky: after one, appends do nothing and `failed` stays set, so a
 * builder checks once at the end.
 */
#ifndef LOOMCTL_SBUF_H
#define LOOMCTL_SBUF_H

#include <stddef.h>

typedef struct ctl_buf {
    char *data; /* NUL-terminated once anything was appended; owned */
    size_t len;
    size_t cap;
    int failed;
} ctl_buf;

#define CTL_BUF_INIT                                                           \
    {                                                                          \
        NULL, 0, 0, 0                                                          \
    }

void ctl_buf_put(ctl_buf *b, const void *p, size_t n);
void ctl_buf_puts(ctl_buf *b, const char *s);
void ctl_buf_putc(ctl_buf *b, char c);
void ctl_buf_printf(ctl_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Empties `b`, keeping its memory (and forgetting a failure). */
void ctl_buf_reset(ctl_buf *b);

/* Frees the memory; `b` can be used again. */
void ctl_buf_free(ctl_buf *b);

/* The contents as a C string: "" when empty or after a failure. */
const char *ctl_buf_str(const ctl_buf *b);

#endif /* LOOMCTL_SBUF_H */
