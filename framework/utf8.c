/*
 * UTF-8 well-formedness (utf8.h). Apart from pgwire.c so that
 * protoc-gen-loom, which does not link libpq, checks text by the same
 * rule as the library.
 */
#include "utf8.h"

size_t
loom__utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char lo = 0x80, hi = 0xbf;
    size_t need, i;

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
        lo = 0xa0; /* no overlong 3-byte forms */
    else if (s[0] == 0xed)
        hi = 0x9f; /* no surrogates */
    else if (s[0] == 0xf0)
        lo = 0x90; /* no overlong 4-byte forms */
    else if (s[0] == 0xf4)
        hi = 0x8f; /* nothing past U+10FFFF */
    if (n < need || s[1] < lo || s[1] > hi)
        return 0;
    for (i = 2; i < need; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    }
    return need;
}

int
loom__utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *) s;
    size_t i = 0, k;

    while (i < len) {
        k = loom__utf8_seq(p + i, len - i);
        if (k == 0 || p[i] == 0)
            return 0;
        i += k;
    }
    return 1;
}
