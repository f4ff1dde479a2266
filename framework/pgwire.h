/*
 * PostgreSQL binary format helpers: parameters are sent and results are
 * received in binary, so payloads travel as raw bytes (no hex escaping)
 * and numbers need no text parsing.
 */
#ifndef LOOM_PGWIRE_H
#define LOOM_PGWIRE_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "buf.h"
#include "utf8.h"

/* Type oids from pg_type.h (stable across PostgreSQL versions). */
#define LOOM__OID_BOOL   16
#define LOOM__OID_BYTEA  17
#define LOOM__OID_INT8   20
#define LOOM__OID_INT4   23
#define LOOM__OID_TEXT   25
#define LOOM__OID_UUID   2950
#define LOOM__OID_XID8   5069
#define LOOM__OID_TSTZ   1184
#define LOOM__OID_AINT4  1007
#define LOOM__OID_AINT8  1016
#define LOOM__OID_ATEXT  1009
#define LOOM__OID_ABYTEA 1001
#define LOOM__OID_AUUID  2951
#define LOOM__OID_ATSTZ  1185

/* Microseconds from the Unix epoch to PostgreSQL's (2000-01-01). */
#define LOOM__PG_EPOCH_US INT64_C(946684800000000)

/* A binary timestamptz (microseconds since 2000-01-01) as microseconds
 * since 1970. 'infinity' (INT64_MAX) and the few values above
 * INT64_MAX - LOOM__PG_EPOCH_US, which cannot be shifted, come out as
 * INT64_MAX; the bytes come from the database, so they must not
 * overflow (found by tests/fuzz/event_metadata.c). */
int64_t loom__pg_time_to_unix(int64_t pg_us);

/* The reverse, for times from callers or operators: those below
 * INT64_MIN + LOOM__PG_EPOCH_US come out as INT64_MIN (PostgreSQL's
 * -infinity) instead of wrapping around. */
int64_t loom__pg_time_from_unix(int64_t unix_us);

/* One-dimensional binary array: begin with the element count, then add
 * exactly that many elements (NULL data with len (size_t)-1 for NULL). */
void loom__pg_array_begin(loom__buf *b, uint32_t elem_oid, uint32_t n);
void loom__pg_array_add(loom__buf *b, const void *data, size_t len);
#define LOOM__PG_NULL ((size_t) -1)

uint64_t loom__pg_be64(const char *p);
/* Writes `v` as 8 big-endian bytes at p (a binary int8 or xid8). */
void loom__pg_put_be64(char *p, uint64_t v);
/* Writes `v` as 4 big-endian bytes at p (a binary int4). */
void loom__pg_put_be32(char *p, uint32_t v);
uint32_t loom__pg_be32(const char *p);

/* Binary-format field accessors; the caller has checked the column type.
 * Each returns 0 when the value is NULL or not the expected size. */
int loom__pg_get_i64(const PGresult *r, int row, int col, int64_t *v);
int loom__pg_get_u64(const PGresult *r, int row, int col, uint64_t *v);
int loom__pg_get_i32(const PGresult *r, int row, int col, int32_t *v);
int loom__pg_get_bool(const PGresult *r, int row, int col, int *v);

/* SQLSTATE of a failed result, or "" (borrowed from `r`). */
const char *loom__pg_sqlstate(const PGresult *r);

#endif /* LOOM_PGWIRE_H */
