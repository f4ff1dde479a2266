/* A strict, small JSON reader for tests (see jsonlite.h). */
#include "jsonlite.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define JL_MAX_DEPTH 64

static const char *jl_value(const char *p, int depth);

static const char *
jl_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

static int
jl_hex4(const char *p, unsigned *v)
{
    *v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        *v <<= 4;
        if (c >= '0' && c <= '9')
            *v |= (unsigned) (c - '0');
        else if (c >= 'a' && c <= 'f')
            *v |= (unsigned) (c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            *v |= (unsigned) (c - 'A' + 10);
        else
            return 0;
    }
    return 1;
}

/* Length of a well-formed UTF-8 sequence at p, else 0. */
static size_t
jl_utf8(const unsigned char *p)
{
    size_t need = p[0] < 0x80                    ? 1
                  : p[0] >= 0xc2 && p[0] <= 0xdf ? 2
                  : p[0] >= 0xe0 && p[0] <= 0xef ? 3
                  : p[0] >= 0xf0 && p[0] <= 0xf4 ? 4
                                                 : 0;
    unsigned char lo = p[0] == 0xe0 ? 0xa0 : p[0] == 0xf0 ? 0x90 : 0x80;
    unsigned char hi = p[0] == 0xed ? 0x9f : p[0] == 0xf4 ? 0x8f : 0xbf;

    if (need > 1 && (p[1] < lo || p[1] > hi))
        return 0;
    for (size_t i = 2; i < need; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    }
    return need;
}

static size_t
jl_put_cp(char *out, unsigned cp)
{
    if (cp < 0x80) {
        out[0] = (char) cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char) (0xc0 | cp >> 6);
        out[1] = (char) (0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char) (0xe0 | cp >> 12);
        out[1] = (char) (0x80 | (cp >> 6 & 0x3f));
        out[2] = (char) (0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char) (0xf0 | cp >> 18);
    out[1] = (char) (0x80 | (cp >> 12 & 0x3f));
    out[2] = (char) (0x80 | (cp >> 6 & 0x3f));
    out[3] = (char) (0x80 | (cp & 0x3f));
    return 4;
}

/* Parses a string at p (the opening quote); decodes into out when not
 * NULL. Returns the position after the closing quote, or NULL. */
static const char *
jl_str(const char *p, char *out, size_t cap, size_t *len)
{
    size_t n = 0;
    char tmp[4];

    if (*p++ != '"')
        return NULL;
    while (*p != '"') {
        size_t k = 1;
        const char *src = p;
        unsigned cp, lo;
        if ((unsigned char) *p < 0x20)
            return NULL; /* raw control characters are not allowed */
        if (*p == '\\') {
            p++;
            switch (*p) {
            case '"':
            case '\\':
            case '/':
                tmp[0] = *p;
                break;
            case 'b':
                tmp[0] = '\b';
                break;
            case 'f':
                tmp[0] = '\f';
                break;
            case 'n':
                tmp[0] = '\n';
                break;
            case 'r':
                tmp[0] = '\r';
                break;
            case 't':
                tmp[0] = '\t';
                break;
            case 'u':
                if (!jl_hex4(p + 1, &cp))
                    return NULL;
                p += 4;
                if (cp >= 0xdc00 && cp <= 0xdfff)
                    return NULL; /* a lone low surrogate */
                if (cp >= 0xd800 && cp <= 0xdbff) {
                    if (p[1] != '\\' || p[2] != 'u' || !jl_hex4(p + 3, &lo) ||
                        lo < 0xdc00 || lo > 0xdfff)
                        return NULL;
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                    p += 6;
                }
                k = jl_put_cp(tmp, cp);
                break;
            default:
                return NULL;
            }
            src = tmp;
            p++;
        } else {
            k = jl_utf8((const unsigned char *) p);
            if (k == 0)
                return NULL;
            p += k;
        }
        if (out != NULL && n + k < cap)
            memcpy(out + n, src, k);
        n += k;
    }
    if (out != NULL)
        out[n < cap ? n : cap - 1] = '\0';
    if (len != NULL)
        *len = n;
    return p + 1;
}

static const char *
jl_number(const char *p)
{
    if (*p == '-')
        p++;
    if (*p == '0')
        p++;
    else if (*p >= '1' && *p <= '9')
        while (*p >= '0' && *p <= '9')
            p++;
    else
        return NULL;
    if (*p == '.') {
        if (*++p < '0' || *p > '9')
            return NULL;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (*p < '0' || *p > '9')
            return NULL;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    return p;
}

/* An object or array body after its opening bracket. */
static const char *
jl_container(const char *p, char close, int depth)
{
    p = jl_ws(p);
    if (*p == close)
        return p + 1;
    for (;;) {
        if (close == '}') {
            p = jl_str(p, NULL, 0, NULL);
            if (p == NULL || *(p = jl_ws(p)) != ':')
                return NULL;
            p++;
        }
        p = jl_value(p, depth + 1);
        if (p == NULL)
            return NULL;
        p = jl_ws(p);
        if (*p == close)
            return p + 1;
        if (*p++ != ',')
            return NULL;
        p = jl_ws(p);
    }
}

static const char *
jl_value(const char *p, int depth)
{
    p = jl_ws(p);
    if (depth > JL_MAX_DEPTH)
        return NULL;
    switch (*p) {
    case '{':
        return jl_container(p + 1, '}', depth);
    case '[':
        return jl_container(p + 1, ']', depth);
    case '"':
        return jl_str(p, NULL, 0, NULL);
    case 't':
        return strncmp(p, "true", 4) == 0 ? p + 4 : NULL;
    case 'f':
        return strncmp(p, "false", 5) == 0 ? p + 5 : NULL;
    case 'n':
        return strncmp(p, "null", 4) == 0 ? p + 4 : NULL;
    default:
        return jl_number(p);
    }
}

int
jl_valid(const char *s)
{
    const char *end = jl_value(s, 0);

    return end != NULL && *jl_ws(end) == '\0';
}

int
jl_member(const char *obj, const char *key, const char **val, const char **end)
{
    char name[256];
    const char *p = jl_ws(obj);

    if (*p++ != '{')
        return 0;
    p = jl_ws(p);
    while (*p == '"') {
        const char *v, *e;
        p = jl_str(p, name, sizeof name, NULL);
        if (p == NULL || *(p = jl_ws(p)) != ':')
            return 0;
        v = jl_ws(p + 1);
        e = jl_value(v, 1);
        if (e == NULL)
            return 0;
        if (strcmp(name, key) == 0) {
            *val = v;
            if (end != NULL)
                *end = e;
            return 1;
        }
        p = jl_ws(e);
        if (*p == ',')
            p = jl_ws(p + 1);
    }
    return 0;
}

int
jl_string(const char *val, char *out, size_t cap, size_t *len)
{
    return jl_str(jl_ws(val), out, cap, len) != NULL;
}

int
jl_is_null(const char *val)
{
    return strncmp(jl_ws(val), "null", 4) == 0;
}

int
jl_i64(const char *val, int64_t *out)
{
    char *end;
    long long v;

    errno = 0;
    v = strtoll(val, &end, 10);
    if (end == val || errno != 0 || *end == '.' || *end == 'e' || *end == 'E')
        return 0;
    *out = v;
    return 1;
}
