/*
 * Private to the event store: what the live projection runner
 * (projection.c) and the rebuild (rebuild.c) share: checking a
 * definition, naming its checkpoints and schemas, dispatching events to
 * its handlers, and registering it in loom.projections.
 */
#ifndef LOOM_PROJECTION_INT_H
#define LOOM_PROJECTION_INT_H

#include "loom/projection.h"
#include "store_int.h"

/* Default events per read for a rebuild. */
#define LOOM__REBUILD_BATCH ((size_t) 5000)

/* Names derived from a definition (all NUL-terminated). */
typedef struct loom__proj_names {
    char checkpoint[LOOM_MAX_PROJECTION_NAME + 12];       /* projection:N */
    char rebuild_cp[LOOM_MAX_PROJECTION_NAME + 20];       /* ...:rebuild */
    char rebuild_schema[LOOM_MAX_PROJECTION_SCHEMA + 10]; /* S__rebuild */
    char appname[LOOM_MAX_PROJECTION_NAME + 24];          /* live runner */
    char rebuild_app[LOOM_MAX_PROJECTION_NAME + 24];      /* a rebuild */
} loom__proj_names;

/* Checks `def` (LOOM_EINVAL with *why set, or LOOM_OK). */
loom_err loom__proj_check(const loom_projection_def *def, const char **why);

void loom__proj_names_init(loom__proj_names *n, const loom_projection_def *d);

/* The event types `def` handles: a copy of its types, or its handlers'.
 * The array is from loom_malloc() (free it; the strings are borrowed);
 * NULL with *n 0 on LOOM_ENOMEM. */
const char **loom__proj_types(const loom_projection_def *def, size_t *n);

/* Hands `events` (already filtered by type) to the handlers of `def`,
 * in order; stops at the first error and returns it. */
loom_err loom__proj_dispatch(const loom_projection_def *def, loom_tx *tx,
                             const loom_event *const *events, size_t n);

/*
 * Blocking, on `s`: makes sure `def` is registered and, for a PostgreSQL
 * model, that its schema exists; when the schema is missing it is
 * created, set up by setup() and its checkpoint reset to the start, in
 * one transaction. LOOM_ECONFLICT when the name is registered with
 * another schema (errmsg says which).
 */
loom_err loom__proj_register(loom_store *s, const loom_projection_def *def,
                             const loom__proj_names *names);

/* Queues "set search_path" for the transaction. */
loom_err loom__proj_search_path(loom_tx *tx, const char *schema);

#endif /* LOOM_PROJECTION_INT_H */
