/*
 * Upcasters: event schema evolution on read. An event is stored once, in
 * the shape its writer knew; when that shape changes, register a function
 * that turns the old shape (type, schema version) into the next one, and
 * every read through the store (stream, all, category: so aggregate loads,
 * subscriptions and projection rebuilds) hands handlers the current shape.
 * History itself is never rewritten.
 */
#ifndef LOOM_UPCAST_H
#define LOOM_UPCAST_H

#include <stddef.h>
#include <stdint.h>

#include "loom/error.h"
#include "loom/eventstore.h"
#include "loom/export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct loom_upcasters loom_upcasters;

/* What an upcaster produces. */
typedef struct loom_upcast {
    /* The new type name, or NULL to keep the event's (borrowed; must stay
     * valid as long as the upcasters: a string literal, usually). */
    const char *type;
    /* The new payload, allocated with loom_malloc(): Eventloom takes
     * ownership whether the upcaster succeeds or fails. NULL with
     * data_len 0 is an empty payload. */
    void *data;
    size_t data_len;
} loom_upcast;

/*
 * Turns `ev` (its type and schema version are those the upcaster was
 * registered for) into the next shape, in *out (zeroed on entry). Return
 * LOOM_OK, or an error that fails the read with a message naming the
 * event. Called on the reading thread, once per event per read; must be
 * deterministic.
 */
typedef loom_err (*loom_upcast_fn)(const loom_event *ev, loom_upcast *out,
                                   void *arg);

/* Creates an empty set. On success *out owns it (free with
 * loom_upcasters_free()); on failure *out is NULL. Errors: LOOM_EINVAL,
 * LOOM_ENOMEM. */
LOOM_API loom_err loom_upcasters_new(loom_upcasters **out);

/* Frees `u`. Free it only after every store using it is closed or has
 * another set. NULL is a no-op. */
LOOM_API void loom_upcasters_free(loom_upcasters *u);

/*
 * Registers `fn` for events of `type` at schema version `from`, producing
 * version `to` (> from). Chains run in order: 1 -> 2, then 2 -> 3, and a
 * step may rename the type, after which steps registered for the new name
 * apply. `type` is copied; `arg` is passed back unchanged.
 * Errors: LOOM_EINVAL (NULL or empty type, type not UTF-8, fn NULL,
 * from < 0, to <= from), LOOM_ETOOBIG (type longer than
 * LOOM_MAX_TYPE_NAME bytes: appends refuse such types too),
 * LOOM_EDUPLICATE (a step for this type and version exists), LOOM_ENOMEM.
 */
LOOM_API loom_err loom_upcasters_add(loom_upcasters *u, const char *type,
                                     int32_t from, int32_t to,
                                     loom_upcast_fn fn, void *arg);

/*
 * Makes every later read on `s` apply `u` (borrowed: it must outlive its
 * use by `s`); NULL turns upcasting off. An upcast event carries the new
 * type, payload and schema version; everything else (id, stream, version,
 * position, metadata) is unchanged.
 * Errors: LOOM_EINVAL (s NULL), LOOM_EBUSY (an operation is in flight).
 */
LOOM_API loom_err loom_store_set_upcasters(loom_store *s,
                                           const loom_upcasters *u);

#ifdef __cplusplus
}
#endif

#endif /* LOOM_UPCAST_H */
