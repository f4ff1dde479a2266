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

void
loom__pg_put_be64(char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (char) (v >> (56 - 8 * i));
}

void
loom__pg_put_be32(char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (char) (v >> (24 - 8 * i));
}

int64_t
loom__pg_time_to_unix(int64_t pg_us)
{
    return pg_us > INT64_MAX - LOOM__PG_EPOCH_US ? INT64_MAX
                                                 : pg_us + LOOM__PG_EPOCH_US;
}

int64_t
loom__pg_time_from_unix(int64_t unix_us)
{
    return unix_us < INT64_MIN + LOOM__PG_EPOCH_US
               ? INT64_MIN
               : unix_us - LOOM__PG_EPOCH_US;
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
