/*
 * Aggregates: a consistency boundary whose state is the fold of its
 * stream's events. Eventloom loads one (latest snapshot + newer events),
 * lets a command handler decide new events from the state, and appends
 * them with the loaded version as the expected version, so two commands
 * racing on one aggregate cannot both succeed on stale state: the loser
 * reloads and decides again.
 */
#ifndef LOOM_AGGREGATE_H
#define LOOM_AGGREGATE_H

#include <stddef.h>
#include <stdint.h>

#include "loom/error.h"
#include "loom/eventstore.h"
#include "loom/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * An aggregate type. The state is a flat C struct of `state_size` bytes
 * (no pointers): it is stored byte for byte in snapshots. Static data,
 * borrowed by every call that takes it.
 */
typedef struct loom_aggregate_type {
    /* The category of its streams: instance "42" of "order" lives in
     * stream "order-42". Non-empty, without '-'. */
    const char *name;
    /* 1 to the store's max_payload bytes (a snapshot holds the state). */
    size_t state_size;
    /* The layout version of the state struct: bump it whenever the struct
     * or apply() changes meaning, and snapshots taken before are ignored. */
    int32_t state_version;
    /* Sets up a fresh state (NULL: all bytes zero). */
    void (*init)(void *state);
    /* Folds one event into the state. Must be deterministic. A non-OK
     * return stops the load with that error (LOOM_EHANDLER, say). */
    loom_err (*apply)(void *state, const loom_event *ev);
    /* Take a snapshot each time the version crosses a multiple of this
     * (0: never). */
    uint32_t snapshot_every;
} loom_aggregate_type;

/*
 * Loads aggregate `id` of type `t` into `state` (caller's buffer of
 * t->state_size bytes): the latest snapshot with t->state_version, then
 * every newer event in pages. *version (may be NULL) receives the version
 * of the last event applied, -1 for an aggregate with no events (state is
 * then as init() left it). Blocking.
 * Errors: LOOM_EINVAL (NULL argument, empty id, bad type: a NULL or empty
 * name or one with '-', apply NULL, state_size 0 or over the store's
 * max_payload, state_version negative; loom_store_errmsg() names it),
 * the errors of loom_store_read_stream(), or what apply() returned.
 */
LOOM_API loom_err loom_aggregate_load(loom_store *s,
                                      const loom_aggregate_type *t,
                                      const char *id, void *state,
                                      int64_t *version);

/* Where a command handler puts the events it decides on. */
typedef struct loom_decision loom_decision;

/*
 * Adds an event to the decision. Everything `ev` points to is copied, so
 * the caller may free its buffers on return; ev->id may be nil (one is
 * generated). Errors: LOOM_EINVAL (d or ev NULL, ev->type NULL),
 * LOOM_ENOMEM.
 */
LOOM_API loom_err loom_decision_emit(loom_decision *d,
                                     const loom_event_data *ev);

/*
 * A command handler: decides events from the current `state` at
 * `version` (-1 for a new aggregate) and adds them to `out`. Returning
 * non-OK rejects the command: nothing is appended and
 * loom_aggregate_execute() returns that code. Adding no event is a valid
 * decision (nothing to do). It may run several times for one command
 * (after version conflicts), each time on fresher state, so it must not
 * have side effects beyond `out` and `arg`.
 */
typedef loom_err (*loom_decide_fn)(const void *state, int64_t version,
                                   loom_decision *out, void *arg);

typedef struct loom_execute_options {
    /* Load-decide-append attempts before giving up with LOOM_ECONFLICT.
     * 0 gives the default, 10. */
    unsigned max_attempts;
} loom_execute_options;

typedef struct loom_execute_result {
    int64_t version;   /* the aggregate's version afterwards */
    size_t n_events;   /* events appended (0 when the decision was empty) */
    unsigned attempts; /* 1 unless conflicts forced retries */
} loom_execute_result;

/*
 * Runs one command against aggregate `id`: load, decide(state, version,
 * out, arg), append the decided events expecting the loaded version; on
 * LOOM_ECONFLICT start again, up to opt->max_attempts times. Takes a
 * snapshot when the new version crosses a multiple of t->snapshot_every
 * (a failed snapshot write is not an error: the events are committed).
 * `opt` and `res` may be NULL. Blocking.
 * Errors: LOOM_EINVAL, LOOM_ECONFLICT (attempts exhausted), the errors of
 * loom_aggregate_load() and loom_store_append(), or decide's own code.
 */
LOOM_API loom_err loom_aggregate_execute(loom_store *s,
                                         const loom_aggregate_type *t,
                                         const char *id, loom_decide_fn decide,
                                         void *arg,
                                         const loom_execute_options *opt,
                                         loom_execute_result *res);

#ifdef __cplusplus
}
#endif

#endif /* LOOM_AGGREGATE_H */
