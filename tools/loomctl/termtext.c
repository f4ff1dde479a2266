/* Terminal-safe text (see termtext.h). */
#include "termtext.h"

#include <stdint.h>

#include "pgwire.h"

/* The code point of the well-formed sequence of `k` bytes at `s`. */
static uint32_t
term_cp(const unsigned char *s, size_t k)
{
    static const unsigned char lead_mask[5] = {0, 0x7f, 0x1f, 0x0f, 0x07};
    uint32_t cp = s[0] & lead_mask[k];

    for (size_t i = 1; i < k; i++)
        cp = cp << 6 | (s[i] & 0x3f);
    return cp;
}

/* Columns taken by code point `cp`: 2 for the East Asian Wide and
 * Fullwidth blocks (CJK, Hangul, fullwidth forms, most emoji), else 1.
 * A table instead of wcwidth(), which depends on the locale. */
static size_t
term_cp_width(uint32_t cp)
{
    static const uint32_t wide[][2] = {
        {0x1100, 0x115f},   {0x2e80, 0x303e},   {0x3041, 0x33ff},
        {0x3400, 0x4dbf},   {0x4e00, 0x9fff},   {0xa000, 0xa4cf},
        {0xac00, 0xd7a3},   {0xf900, 0xfaff},   {0xfe30, 0xfe4f},
        {0xff00, 0xff60},   {0xffe0, 0xffe6},   {0x1f300, 0x1f64f},
        {0x1f900, 0x1f9ff}, {0x20000, 0x3fffd},
    };

    for (size_t i = 0; i < sizeof wide / sizeof wide[0]; i++) {
        if (cp >= wide[i][0] && cp <= wide[i][1])
            return 2;
    }
    return 1;
}

size_t
ctl_term_put(loom__buf *b, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *) str;
    size_t i = 0, k, width = 0;

    while (i < n) {
        k = loom__utf8_seq(s + i, n - i);
        if (k == 0) {
            loom__buf_puts(b, "\xef\xbf\xbd"); /* U+FFFD */
            k = 1;
            width++;
        } else if (s[i] == '\n' || s[i] == '\t' || s[i] == '\r') {
            loom__buf_puts(b, s[i] == '\n'   ? "\\n"
                              : s[i] == '\t' ? "\\t"
                                             : "\\r");
            width += 2;
        } else if (s[i] < 0x20 || s[i] == 0x7f) {
            loom__buf_printf(b, "\\x%02x", s[i]);
            width += 4;
        } else if (k == 2 && s[i] == 0xc2 && s[i + 1] < 0xa0) {
            /* C1 controls (U+0080..U+009F) act on many terminals too. */
            loom__buf_printf(b, "\\u%04x", s[i + 1]);
            width += 6;
        } else {
            loom__buf_put(b, s + i, k);
            width += term_cp_width(term_cp(s + i, k));
        }
        i += k;
    }
    return width;
}

size_t
ctl_term_cut(loom__buf *b, const char *p, size_t len, size_t width)
{
    const unsigned char *s = (const unsigned char *) p;
    size_t i = 0, cols = 0;

    /* The text is already shown form: valid UTF-8, no controls. */
    while (i < len) {
        size_t k = loom__utf8_seq(s + i, len - i);
        size_t w = k ? term_cp_width(term_cp(s + i, k)) : 1;
        if (cols + w + 1 > width)
            break;
        i += k ? k : 1;
        cols += w;
    }
    loom__buf_put(b, p, i);
    loom__buf_puts(b, "\xe2\x80\xa6"); /* U+2026 */
    return cols + 1;
}
