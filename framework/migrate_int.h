/*
 * Schema migrations: numbered SQL files under framework/migrations/,
 * embedded into the library at build time (cmake/embed_migrations.cmake)
 * and applied in order, each in its own transaction, under a
 * session-level advisory lock so that concurrent migrators wait for each
 * other instead of racing.
 */
#ifndef LOOM_MIGRATE_INT_H
#define LOOM_MIGRATE_INT_H

#include <stddef.h>

#include <libpq-fe.h>

#include "buf.h"
#include "loom/error.h"

typedef struct loom__migration {
    int version;
    const char *name; /* file name without .sql */
    const char *sql;
} loom__migration;

/* Generated: every migration, ascending by version. */
extern const loom__migration loom__migrations[];
extern const size_t loom__n_migrations;

/* Called before (done = 0) and after (done = 1) applying a migration. */
typedef void (*loom__migrate_cb)(const loom__migration *m, int done, void *arg);

/* The newest version this library knows. */
int loom__schema_latest(void);

/* Reads the applied version (0 when the schema is absent) into *version.
 * Errors go to `err`: LOOM_ECONN, LOOM_EDB. */
loom_err loom__schema_version(PGconn *c, int *version, loom__buf *err);

/* Applies every missing migration; *applied (may be NULL) counts them.
 * Refuses (LOOM_ESCHEMA) when an applied migration's text differs from
 * the embedded one. Blocking; leaves `c` idle and unlocked. */
loom_err loom__migrate(PGconn *c, loom__migrate_cb cb, void *arg, int *applied,
                       loom__buf *err);

#endif /* LOOM_MIGRATE_INT_H */
