/* JSON text output (see json.h). */
#include "json.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* Follows Unicode table 3-7, so a JSON reader never meets a sequence it
 * would refuse. */
size_t
ctl_utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char lo = 0x80, hi = 0xbf;
    size_t need;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        need = 2;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        need = 3;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        need = 4;
    else
        return 0;
    if (s[0] == 0xe0)
        lo = 0xa0;
    else if (s[0] == 0xed)
        hi = 0x9f; /* no surrogates */
    else if (s[0] == 0xf0)
        lo = 0x90;
    else if (s[0] == 0xf4)
        hi = 0x8f; /* nothing past U+10FFFF */
    if (n < need || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < need; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    }
    return need;
}

int
ctl_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *) s;
    size_t i = 0, k;

    while (i < n) {
        k = ctl_utf8_seq(p + i, n - i);
        if (k == 0)
            return 0;
        i += k;
    }
    return 1;
}

/* The escape for ASCII byte `c`, or NULL when it needs none. */
static const char *
json_escape(unsigned char c, char tmp[8])
{
    switch (c) {
    case '"':
        return "\\\"";
    case '\\':
        return "\\\\";
    case '\n':
        return "\\n";
    case '\r':
        return "\\r";
    case '\t':
        return "\\t";
    case '\b':
        return "\\b";
    case '\f':
        return "\\f";
    }
    if (c >= 0x20 && c != 0x7f)
        return NULL;
    /* DEL is legal in JSON but invisible on a terminal: escape it too. */
    snprintf(tmp, 8, "\\u%04x", c);
    return tmp;
}

void
ctl_json_str(ctl_buf *b, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *) str;
    size_t i = 0, start = 0, k;
    const char *esc;
    char tmp[8];

    ctl_buf_putc(b, '"');
    while (i < n) {
        k = 1;
        if (s[i] < 0x80) {
            esc = json_escape(s[i], tmp);
        } else {
            k = ctl_utf8_seq(s + i, n - i);
            esc = k == 0 ? "\\ufffd" : NULL;
            k = k == 0 ? 1 : k;
        }
        if (esc != NULL) {
            /* Copy the run of plain bytes before the escape in one go. */
            ctl_buf_put(b, s + start, i - start);
            ctl_buf_puts(b, esc);
            start = i + k;
        }
        i += k;
    }
    ctl_buf_put(b, s + start, i - start);
    ctl_buf_putc(b, '"');
}

void
ctl_json_base64(ctl_buf *b, const void *data, size_t n)
{
    static const char tab[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *p = data;
    char q[4];

    ctl_buf_putc(b, '"');
    for (size_t i = 0; i < n; i += 3) {
        size_t m = n - i < 3 ? n - i : 3;
        uint32_t v = (uint32_t) p[i] << 16;
        if (m > 1)
            v |= (uint32_t) p[i + 1] << 8;
        if (m > 2)
            v |= p[i + 2];
        q[0] = tab[v >> 18];
        q[1] = tab[(v >> 12) & 63];
        q[2] = m > 1 ? tab[(v >> 6) & 63] : '=';
        q[3] = m > 2 ? tab[v & 63] : '=';
        ctl_buf_put(b, q, 4);
    }
    ctl_buf_putc(b, '"');
}

void
ctl_json_key(ctl_buf *b, const char *key)
{
    char last = b->len > 0 ? b->data[b->len - 1] : '{';

    if (last != '{')
        ctl_buf_putc(b, ',');
    ctl_buf_printf(b, "\"%s\":", key);
}

void
ctl_json_kstr(ctl_buf *b, const char *key, const char *s)
{
    ctl_json_key(b, key);
    if (s == NULL)
        ctl_buf_puts(b, "null");
    else
        ctl_json_str(b, s, strlen(s));
}

void
ctl_json_ki64(ctl_buf *b, const char *key, int64_t v)
{
    ctl_json_key(b, key);
    ctl_buf_printf(b, "%" PRId64, v);
}

void
ctl_json_ku64(ctl_buf *b, const char *key, uint64_t v)
{
    ctl_json_key(b, key);
    ctl_buf_printf(b, "%" PRIu64, v);
}

void
ctl_json_kraw(ctl_buf *b, const char *key, const char *raw)
{
    ctl_json_key(b, key);
    ctl_buf_puts(b, raw != NULL ? raw : "null");
}
