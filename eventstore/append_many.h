/*
 * Private: appends to several streams as ONE statement of a unit of work
 * (loom.append_many(), schema 12). A consumer that handles a batch of
 * messages in one transaction collects each message's appends here and
 * queues them once, after the last handler: one function call instead of
 * one per stream, whose fixed cost outweighed the rows it wrote.
 *
 * The statement has the semantics of the loom_tx_append() calls it
 * replaces, made in the order they were added, at the point where it is
 * queued (not where each was added). The checks and limits are
 * loom_tx_append()'s, applied when an append is added.
 */
#ifndef LOOM_APPEND_MANY_H
#define LOOM_APPEND_MANY_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "loom/eventstore.h"
#include "loom/tx.h"

/* The parameters of loom.append_many(), elements only: the array headers
 * are written when the statement is queued, once the counts are known. */
typedef struct loom__append_many {
    loom__buf streams, expected, counts;       /* per append */
    loom__buf ids, types, svs, data, metadata; /* per event */
    uint32_t n_appends, n_events;
} loom__append_many;

/* An empty set (no allocation until the first append). */
void loom__append_many_init(loom__append_many *am);

/* Empties it, keeping its memory for the next batch. */
void loom__append_many_reset(loom__append_many *am);

void loom__append_many_free(loom__append_many *am);

/* Checks an append as loom_tx_append() does and adds it; events with a
 * nil id get a fresh one, written back. Errors (the reason in `err`,
 * which is replaced): LOOM_EINVAL, LOOM_ETOOBIG, LOOM_ENOMEM, LOOM_EIO
 * (no random source). Nothing is added on error. */
loom_err loom__append_many_add(loom__append_many *am, const char *stream,
                               int64_t expected, loom_event_data *events,
                               size_t n, loom__buf *err);

/* Queues the one statement in `tx` (nothing when no append was added)
 * and resets `am`. Errors as loom_tx_exec_binary(). */
loom_err loom__append_many_queue(loom__append_many *am, loom_tx *tx);

/* append.c: loom_tx_append()'s checks (the default limits). */
loom_err loom__append_check_default(const char *stream, int64_t expected,
                                    const loom_event_data *events, size_t n,
                                    loom__buf *err);

#endif /* LOOM_APPEND_MANY_H */
