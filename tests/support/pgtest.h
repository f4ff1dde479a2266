/*
 * Test support for PostgreSQL tests: each test executable gets a fresh
 * database of its own (created from the server named by LOOM_TEST_PG_DSN,
 * dropped at the end), so executables can run in parallel and start from
 * an empty schema. A missing LOOM_TEST_PG_DSN fails the test: PostgreSQL
 * tests never skip (run them with `make test`).
 */
#ifndef LOOM_PGTEST_H
#define LOOM_PGTEST_H

#include <stddef.h>

#include "loom/loom.h"

/* Creates database loomt_<label>_<pid> and returns its connection string
 * (static storage, valid until loomt_db_drop()). Fails the test on error. */
const char *loomt_db_create(const char *label);

/* Drops the database made by loomt_db_create(). */
void loomt_db_drop(void);

/* Opens a store on the test database with migrations applied. */
loom_store *loomt_store_open(void);

/* Runs SQL on the test database through a fresh libpq connection and
 * returns the first column of the first row as a number (0 if none). */
long long loomt_sql_ll(const char *sql);

/* Runs SQL (several statements allowed), failing the test on error. */
void loomt_sql_exec(const char *sql);

/* Builds a connection string for the test database with `extra`
 * key=value settings appended (static storage, overwritten by each call). */
const char *loomt_dsn(void);

#endif /* LOOM_PGTEST_H */
