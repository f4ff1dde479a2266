/* Binary parameter and result encoding for libpq (see pgwire.h). */
#include "pgwire.h"

#include <string.h>

void
loom__pg_array_begin(loom__buf *b, uint32_t elem_oid, uint32_t n)
{
    loom__buf_put_be32(b, 1);        /* dimensions */
    loom__buf_put_be32(b, 0);        /* flags; the server ignores it */
    loom__buf_put_be32(b, elem_oid); /* element type */
    loom__buf_put_be32(b, n);        /* length of the dimension */
    loom__buf_put_be32(b, 1);        /* lower bound */
}

void
loom__pg_array_add(loom__buf *b, const void *data, size_t len)
{
    if (data == NULL && len == LOOM__PG_NULL) {
        loom__buf_put_be32(b, UINT32_MAX); /* -1: NULL */
        return;
    }
    loom__buf_put_be32(b, (uint32_t) len);
    loom__buf_put(b, data, len);
}

uint32_t
loom__pg_be32(const char *p)
{
    const unsigned char *u = (const unsigned char *) p;

    return (uint32_t) u[0] << 24 | (uint32_t) u[1] << 16 |
           (uint32_t) u[2] << 8 | (uint32_t) u[3];
}

uint64_t
loom__pg_be64(const char *p)
{
    return (uint64_t) loom__pg_be32(p) << 32 | loom__pg_be32(p + 4);
}

int
loom__pg_get_u64(const PGresult *r, int row, int col, uint64_t *v)
{
    if (PQgetisnull(r, row, col) || PQgetlength(r, row, col) != 8)
        return 0;
    *v = loom__pg_be64(PQgetvalue(r, row, col));
    return 1;
}

int
loom__pg_get_i64(const PGresult *r, int row, int col, int64_t *v)
{
    uint64_t u;

    if (!loom__pg_get_u64(r, row, col, &u))
        return 0;
    memcpy(v, &u, sizeof *v); /* two's complement, without UB */
    return 1;
}

int
loom__pg_get_i32(const PGresult *r, int row, int col, int32_t *v)
{
    uint32_t u;

    if (PQgetisnull(r, row, col) || PQgetlength(r, row, col) != 4)
        return 0;
    u = loom__pg_be32(PQgetvalue(r, row, col));
    memcpy(v, &u, sizeof *v);
    return 1;
}

int
loom__pg_get_bool(const PGresult *r, int row, int col, int *v)
{
    if (PQgetisnull(r, row, col) || PQgetlength(r, row, col) != 1)
        return 0;
    *v = PQgetvalue(r, row, col)[0] != 0;
    return 1;
}

const char *
loom__pg_sqlstate(const PGresult *r)
{
    const char *s = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;

    return s ? s : "";
}

/* Length of the UTF-8 sequence starting with byte c, or 0 if invalid. */
static size_t
pgwire_utf8_seqlen(unsigned char c)
{
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        return 2;
    if (c >= 0xe0 && c <= 0xef)
        return 3;
    if (c >= 0xf0 && c <= 0xf4)
        return 4;
    return 0;
}

int
loom__utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *) s;
    size_t i = 0;

    while (i < len) {
        size_t n = pgwire_utf8_seqlen(p[i]);
        if (n == 0 || n > len - i || p[i] == 0)
            return 0;
        for (size_t k = 1; k < n; k++)
            if ((p[i + k] & 0xc0) != 0x80)
                return 0;
        /* Overlong 3/4-byte forms, surrogates and values past U+10FFFF. */
        if ((p[i] == 0xe0 && p[i + 1] < 0xa0) ||
            (p[i] == 0xed && p[i + 1] > 0x9f) ||
            (p[i] == 0xf0 && p[i + 1] < 0x90) ||
            (p[i] == 0xf4 && p[i + 1] > 0x8f))
            return 0;
        i += n;
    }
    return 1;
}
