/* The rule of text.h, in one place. */
#include <string.h>

#include "pgwire.h"
#include "text.h"

const char *
loom__saga_text_problem(const char *s, size_t max)
{
    size_t n;

    if (s == NULL)
        return "is NULL";
    n = strnlen(s, max + 1);
    if (n == 0)
        return "is empty";
    if (n > max)
        return "is too long";
    if (!loom__utf8_valid(s, n))
        return "is not valid UTF-8";
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char) s[i];
        if (ch < 0x20 || ch == 0x7f)
            return "contains a control character";
    }
    return NULL;
}
