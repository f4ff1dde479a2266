/*
 * Private: outbox messages collected over several calls and queued as ONE
 * loom_outbox_add() (one loom.outbox_add() statement). Saga participants
 * collect the replies of every command of a delivered batch here and queue
 * them after the last handler: one statement for the batch instead of one
 * per reply, whose fixed cost outweighed the row it wrote.
 *
 * Each message is checked when added, with loom_outbox_add()'s checks
 * (its error goes to the transaction's message), and copied: the caller's
 * pointers are borrowed for the call only. The size of the encoded
 * headers and of the whole statement are checked when queued.
 */
#ifndef LOOM_OUTBOX_BATCH_H
#define LOOM_OUTBOX_BATCH_H

#include <stddef.h>

#include "buf.h"
#include "loom/outbox.h"
#include "loom/tx.h"

typedef struct loom__outbox_item loom__outbox_item;

typedef struct loom__outbox_batch {
    loom__buf data;           /* every field's bytes, strings NUL-ended */
    loom__outbox_item *items; /* owned */
    size_t n, cap;
} loom__outbox_batch;

void loom__outbox_batch_init(loom__outbox_batch *b);
/* Drops what was collected; keeps the memory for reuse. */
void loom__outbox_batch_reset(loom__outbox_batch *b);
void loom__outbox_batch_free(loom__outbox_batch *b);

/* Checks and copies `m` (a nil id is given one when queued). Errors, with
 * the reason in loom_tx_errmsg(tx): as loom_outbox_add()'s. */
loom_err loom__outbox_batch_add(loom__outbox_batch *b, loom_tx *tx,
                                const loom_outbox_message *m);

/* Queues everything collected into `tx` for `outbox` as one
 * loom_outbox_add(), then resets `b`. Nothing collected: LOOM_OK, nothing
 * queued. Errors: as loom_outbox_add()'s. */
loom_err loom__outbox_batch_queue(loom__outbox_batch *b, loom_tx *tx,
                                  const char *outbox);

#endif /* LOOM_OUTBOX_BATCH_H */
