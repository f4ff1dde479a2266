/*
 * Projections: read models fed by events, rebuildable at any time by
 * replaying every event.
 *
 * A projection is a name, the event types it handles with a C handler
 * each (or one batch handler and a type list), and its read model:
 *
 *   - In PostgreSQL (def.schema set; the main case). The model's tables
 *     live in a schema of their own. setup() creates them, unqualified, in
 *     an empty schema; handlers write them, unqualified, through the
 *     loom_tx they are given (the runner points search_path at the right
 *     schema), and those writes commit with the projection's checkpoint:
 *     exactly-once. Readers query "<schema>.<table>".
 *
 *   - In memory (def.schema NULL). Handlers get tx NULL and update the
 *     caller's structures through `arg`; reset() empties them. Such a
 *     model is rebuilt from the first event on every start.
 *
 * Rebuild (blue/green): loom_projection_rebuild() (and `loomctl
 * projection rebuild NAME --plugin lib.so`) creates the schema
 * "<schema>__rebuild", runs setup() there and replays every event into it
 * under its own checkpoint, in large pipelined batches while the live
 * runner keeps serving the old model. Once it has caught up it swaps the
 * schemas and checkpoints in one transaction (loom.projection_swap), so
 * readers see the old model or the new one, never half of one. A live
 * runner notices the swap through its checkpoint's compare-and-set and
 * goes on with the new model. A rebuild that is stopped (the stop flag,
 * SIGINT, a crash) keeps its schema and checkpoint and resumes where it
 * stopped the next time it runs, unless asked to restart.
 *
 * State is in table loom.projections (registered on the first start or
 * rebuild); `loomctl projection list|status NAME` shows it with lag and
 * parked events.
 */
#ifndef LOOM_PROJECTION_H
#define LOOM_PROJECTION_H

#include <stddef.h>
#include <stdint.h>

#include "loom/error.h"
#include "loom/eventstore.h"
#include "loom/export.h"
#include "loom/runtime.h"
#include "loom/tx.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The longest projection name: the checkpoint is "projection:<name>" and
 * the rebuild's "projection:<name>:rebuild", within 63 bytes. */
#define LOOM_MAX_PROJECTION_NAME 40

/* The longest read-model schema name: "<schema>__rebuild" must fit in
 * PostgreSQL's 63-byte identifiers. */
#define LOOM_MAX_PROJECTION_SCHEMA 54

/* Handles one event. tx is NULL for an in-memory model. */
typedef loom_err (*loom_projection_fn)(loom_tx *tx, const loom_event *ev,
                                       void *arg);

/* Handles a batch of events, in commit order. */
typedef loom_err (*loom_projection_batch_fn)(loom_tx *tx,
                                             const loom_event *const *events,
                                             size_t n, void *arg);

typedef struct loom_projection_handler {
    const char *type;
    loom_projection_fn fn;
} loom_projection_handler;

/* What a projection is. Typically a static constant; everything is
 * borrowed for as long as a runner or rebuild uses it. */
typedef struct loom_projection_def {
    /* 1 to 40 bytes of [a-z0-9_]. */
    const char *name;
    /* The read model's schema, 1 to 54 bytes of [a-z0-9_] not starting
     * with a digit nor "pg_"; NULL: an in-memory model. */
    const char *schema;
    /* Either per-type handlers ... (each type, like an event's, 1 to 255
     * bytes of UTF-8, and listed once: here or in `types`) */
    const loom_projection_handler *handlers;
    size_t n_handlers;
    /* ... or one batch handler for the events of `types`. */
    loom_projection_batch_fn batch;
    const char *const *types;
    size_t n_types;
    /* PostgreSQL model: queues the CREATE statements (unqualified names)
     * for an empty schema. Required when schema is set. */
    loom_err (*setup)(loom_tx *tx, void *arg);
    /* In-memory model: empties it before a replay. Required when schema
     * is NULL. */
    void (*reset)(void *arg);
    /* Passed to every function above. */
    void *arg;
} loom_projection_def;

/* Running options. Start from LOOM_PROJECTION_OPTIONS_INIT. */
typedef struct loom_projection_options {
    /* libpq connection string or URL; NULL: $LOOM_DATABASE_URL. */
    const char *conninfo;
    /* Events per read: 0 gives 500 for a live runner and 5,000 for a
     * rebuild. */
    size_t batch;
    /* As in loom_subscription_config. */
    unsigned max_attempts;
    unsigned horizon_warn_ms;
} loom_projection_options;

#define LOOM_PROJECTION_OPTIONS_INIT                                           \
    {                                                                          \
        NULL, 0, 0, 0                                                          \
    }

typedef struct loom_projection loom_projection;

/*
 * Starts the projection's live runner on `rt` (a transactional
 * subscription to all events under checkpoint "projection:<name>"). On its
 * first start in a database it registers the projection and creates its
 * schema with setup(), in one transaction (blocking, like the connect).
 * An in-memory model is reset() and replayed from the first event.
 * *out is freed with loom_projection_close() before loom_runtime_close().
 *
 * Errors: LOOM_EINVAL (NULL arguments; a bad name or schema; no handlers
 * or both kinds; a NULL or empty type; setup or reset missing), LOOM_EBUSY
 * (the runtime is stopping), LOOM_ECONFLICT (the name is registered with
 * another schema), the errors of setup() (nothing is created), and those
 * of loom_subscribe(). Loop thread only.
 */
LOOM_API loom_err loom_projection_start(loom_runtime *rt,
                                        const loom_projection_def *def,
                                        const loom_projection_options *opt,
                                        loom_projection **out);

/* Stops the runner gracefully and frees it (as loom_subscription_close()).
 * NULL is a no-op. */
LOOM_API void loom_projection_close(loom_projection *p);

/* Progress of a rebuild, reported about every progress_ms and at the end. */
typedef struct loom_rebuild_progress {
    int64_t done;  /* events replayed so far (all types) */
    int64_t total; /* events to replay, counted at the start (grows as
                      writers append) */
    double rate;   /* events per second since this run started */
    double eta_s;  /* seconds left at that rate; -1 when unknown */
    int finished;  /* 1 in the last report */
} loom_rebuild_progress;

typedef void (*loom_rebuild_progress_fn)(const loom_rebuild_progress *p,
                                         void *arg);

typedef struct loom_rebuild_options {
    const char *conninfo; /* NULL: $LOOM_DATABASE_URL */
    size_t batch;         /* 0: 5,000 */
    unsigned max_attempts;
    /* 1: drop a stopped rebuild's work and start again from the first
     * event. */
    int restart;
    /* Polled between batches: non-zero stops the rebuild (resumable). */
    const volatile int *stop;
    loom_rebuild_progress_fn progress; /* optional */
    void *progress_arg;
    unsigned progress_ms; /* 0: 500 */
} loom_rebuild_options;

#define LOOM_REBUILD_OPTIONS_INIT                                              \
    {                                                                          \
        NULL, 0, 0, 0, NULL, NULL, NULL, 0                                     \
    }

/*
 * Rebuilds `def`'s PostgreSQL read model by replay (blue/green, see
 * above), blocking the calling thread; it needs no runtime. Returns once
 * the new model is swapped in.
 *
 * Errors: LOOM_EINVAL (bad def or an in-memory model: it is rebuilt on
 * every start), LOOM_EAGAIN (stopped through opt->stop; run again to
 * resume), LOOM_EHANDLER (a handler failed on an event max_attempts
 * times; it is parked under "projection:<name>:rebuild" and the rebuild
 * goes on, so this is only returned when parking itself fails), and the
 * store's errors (LOOM_ECONN, LOOM_EDB, LOOM_ESCHEMA, LOOM_ENOMEM). The
 * reason is in errbuf (when not NULL). A failed rebuild leaves the live
 * model untouched and resumes when run again.
 */
LOOM_API loom_err loom_projection_rebuild(const loom_projection_def *def,
                                          const loom_rebuild_options *opt,
                                          char *errbuf, size_t errlen);

/*
 * Plugins: a shared object that exports
 *     const loom_projection_def *const *loom_projections(size_t *n);
 * (LOOM_PROJECTIONS_SYMBOL) lets `loomctl projection rebuild NAME
 * --plugin lib.so` run the projection's own handlers.
 */
#define LOOM_PROJECTIONS_SYMBOL "loom_projections"
typedef const loom_projection_def *const *(*loom_projections_fn)(size_t *n);

#ifdef __cplusplus
}
#endif

#endif /* LOOM_PROJECTION_H */
