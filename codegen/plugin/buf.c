/*
 * Growable text buffers, C string literals, and the list of definition
 * errors.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen.h"

/* Makes room for `n` more bytes and the NUL. */
static void
buf_reserve(gen_buf *b, size_t n)
{
    if (n > SIZE_MAX / 2 - b->len) {
        gen_xmalloc(SIZE_MAX); /* reports out of memory and exits */
    }
    size_t need = b->len + n + 1;
    if (need <= b->cap) {
        return;
    }
    size_t cap = b->cap > 0 ? b->cap : 64;
    while (cap < need) {
        cap *= 2;
    }
    b->s = gen_xrealloc(b->s, cap);
    b->cap = cap;
}

void
gen_buf_put(gen_buf *b, const void *data, size_t n)
{
    buf_reserve(b, n);
    if (n > 0) {
        memcpy(b->s + b->len, data, n);
    }
    b->len += n;
    b->s[b->len] = '\0';
}

void
gen_buf_puts(gen_buf *b, const char *s)
{
    gen_buf_put(b, s, strlen(s));
}

void
gen_buf_putc(gen_buf *b, char c)
{
    gen_buf_put(b, &c, 1);
}

void
gen_buf_vprintf(gen_buf *b, const char *fmt, va_list ap)
{
    va_list copy;
    va_copy(copy, ap);
    int n = vsnprintf(NULL, 0, fmt, copy);
    va_end(copy);
    if (n < 0) {
        return; /* only an invalid format can do this */
    }
    buf_reserve(b, (size_t) n);
    vsnprintf(b->s + b->len, (size_t) n + 1, fmt, ap);
    b->len += (size_t) n;
}

void
gen_buf_printf(gen_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    gen_buf_vprintf(b, fmt, ap);
    va_end(ap);
}

const char *
gen_buf_str(const gen_buf *b)
{
    return b->s != NULL ? b->s : "";
}

char *
gen_buf_take(gen_buf *b)
{
    if (b->s == NULL) {
        buf_reserve(b, 0);
        b->s[0] = '\0';
    }
    char *s = b->s;
    b->s = NULL;
    b->len = b->cap = 0;
    return s;
}

void
gen_buf_free(gen_buf *b)
{
    free(b->s);
    b->s = NULL;
    b->len = b->cap = 0;
}

void
gen_buf_c_string(gen_buf *b, const char *s)
{
    gen_buf_putc(b, '"');
    for (const unsigned char *p = (const unsigned char *) s; *p; p++) {
        switch (*p) {
        case '"':
            gen_buf_puts(b, "\\\"");
            break;
        case '\\':
            gen_buf_puts(b, "\\\\");
            break;
        case '?':
            gen_buf_puts(b, "\\?");
            break;
        case '\n':
            gen_buf_puts(b, "\\n");
            break;
        default:
            if (*p < 0x20 || *p >= 0x7f) {
                /* Three digits always: a digit that follows cannot join
                 * the escape. */
                gen_buf_printf(b, "\\%03o", (unsigned) *p);
            } else {
                gen_buf_putc(b, (char) *p);
            }
        }
    }
    gen_buf_putc(b, '"');
}

void
gen_buf_args(gen_buf *b, const char *indent, const char *head,
             const char *const *items, size_t n, const char *tail)
{
    gen_buf_printf(b, "%s%s(\n", indent, head);
    for (size_t i = 0; i < n; i++) {
        gen_buf_printf(b, "%s    %s%s", indent, items[i],
                       i + 1 < n ? ",\n" : "");
    }
    gen_buf_printf(b, ")%s\n", tail);
}

void
gen_error(gen_errors *e, const char *fmt, ...)
{
    e->n++;
    if (e->n > GEN_MAX_ERRORS) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    gen_buf_vprintf(&e->text, fmt, ap);
    va_end(ap);
    gen_buf_putc(&e->text, '\n');
}
