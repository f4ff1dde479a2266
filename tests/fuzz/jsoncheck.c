/*
 * The JSON checker of jsoncheck.h: a recursive descent over the grammar
 * of RFC 8259, returning the position after each value or NULL.
 */
#include "jsoncheck.h"

#include <string.h>

typedef struct jc {
    const unsigned char *end;
} jc;

static const unsigned char *jc_value(const jc *j, const unsigned char *p,
                                     int depth);

static const unsigned char *
jc_ws(const jc *j, const unsigned char *p)
{
    while (p < j->end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

static int
jc_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
           (c >= 'A' && c <= 'F');
}

/* One UTF-8 sequence at p (well-formed: no overlongs, surrogates or
 * code points past U+10FFFF); its length, or 0. */
static size_t
jc_utf8(const jc *j, const unsigned char *p)
{
    size_t left = (size_t) (j->end - p), n;
    unsigned c = p[0], lo = 0x80, hi = 0xbf;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2;
    else if (c >= 0xe0 && c <= 0xef)
        n = 3;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4;
    else
        return 0;
    if (left < n)
        return 0;
    if (c == 0xe0)
        lo = 0xa0;
    else if (c == 0xed)
        hi = 0x9f;
    else if (c == 0xf0)
        lo = 0x90;
    else if (c == 0xf4)
        hi = 0x8f;
    if (p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xbf)
            return 0;
    return n;
}

static const unsigned char *
jc_string(const jc *j, const unsigned char *p)
{
    p++; /* the opening quote */
    while (p < j->end && *p != '"') {
        if (*p < 0x20)
            return NULL;
        if (*p == '\\') {
            if (++p >= j->end)
                return NULL;
            if (*p == 'u') {
                if (j->end - p < 5)
                    return NULL;
                for (int i = 1; i <= 4; i++)
                    if (!jc_hex(p[i]))
                        return NULL;
                p += 5;
            } else if (strchr("\"\\/bfnrt", *p) != NULL && *p != '\0') {
                p++;
            } else {
                return NULL;
            }
            continue;
        }
        size_t n = jc_utf8(j, p);
        if (n == 0)
            return NULL;
        p += n;
    }
    return p < j->end ? p + 1 : NULL;
}

static const unsigned char *
jc_digits(const jc *j, const unsigned char *p)
{
    const unsigned char *start = p;

    while (p < j->end && *p >= '0' && *p <= '9')
        p++;
    return p > start ? p : NULL;
}

static const unsigned char *
jc_number(const jc *j, const unsigned char *p)
{
    if (p < j->end && *p == '-')
        p++;
    if (p < j->end && *p == '0')
        p++;
    else if ((p = jc_digits(j, p)) == NULL)
        return NULL;
    if (p < j->end && *p == '.' && (p = jc_digits(j, p + 1)) == NULL)
        return NULL;
    if (p < j->end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < j->end && (*p == '+' || *p == '-'))
            p++;
        p = jc_digits(j, p);
    }
    return p;
}

static const unsigned char *
jc_word(const jc *j, const unsigned char *p, const char *w)
{
    size_t n = strlen(w);

    if ((size_t) (j->end - p) < n || memcmp(p, w, n) != 0)
        return NULL;
    return p + n;
}

/* An object ('}') or an array (']') after its opening bracket. */
static const unsigned char *
jc_container(const jc *j, const unsigned char *p, unsigned char close,
             int depth)
{
    p = jc_ws(j, p);
    if (p < j->end && *p == close)
        return p + 1;
    for (;;) {
        if (close == '}') {
            if (p >= j->end || *p != '"' || (p = jc_string(j, p)) == NULL)
                return NULL;
            p = jc_ws(j, p);
            if (p >= j->end || *p != ':')
                return NULL;
            p++;
        }
        if ((p = jc_value(j, p, depth + 1)) == NULL)
            return NULL;
        if (p < j->end && *p == close)
            return p + 1;
        if (p >= j->end || *p != ',')
            return NULL;
        p = jc_ws(j, p + 1);
    }
}

static const unsigned char *
jc_value(const jc *j, const unsigned char *p, int depth)
{
    if (depth > FUZZ_JSON_MAX_DEPTH)
        return NULL;
    p = jc_ws(j, p);
    if (p >= j->end)
        return NULL;
    switch (*p) {
    case '{':
        p = jc_container(j, p + 1, '}', depth);
        break;
    case '[':
        p = jc_container(j, p + 1, ']', depth);
        break;
    case '"':
        p = jc_string(j, p);
        break;
    case 't':
        p = jc_word(j, p, "true");
        break;
    case 'f':
        p = jc_word(j, p, "false");
        break;
    case 'n':
        p = jc_word(j, p, "null");
        break;
    default:
        p = jc_number(j, p);
        break;
    }
    return p != NULL ? jc_ws(j, p) : NULL;
}

int
fuzz_json_valid(const char *s, size_t n)
{
    jc j = {(const unsigned char *) s + n};
    const unsigned char *p = jc_value(&j, (const unsigned char *) s, 0);

    return p == j.end;
}
