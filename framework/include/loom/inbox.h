/*
 * The inbox: what makes a consumer idempotent.
 *
 * Transports deliver at least once, so a consumer sees some messages
 * twice (a relay republishing its batch in flight, a redelivery after a
 * crash). An idempotent consumer records each message id in the SAME
 * transaction as the message's effects; a message whose id is already
 * recorded for that consumer is acknowledged and skipped. At-least-once
 * delivery plus this check makes the effects exactly-once.
 *
 * loom_inbox_mark() is the primitive, for handlers that run their own
 * loom_tx; loom/inbox_consumer.h runs a whole consumer this way.
 */
#ifndef LOOM_INBOX_H
#define LOOM_INBOX_H

#include "loom/error.h"
#include "loom/export.h"
#include "loom/tx.h"
#include "loom/uuid.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Longest consumer name, in bytes. */
#define LOOM_INBOX_MAX_CONSUMER 255

/*
 * Queues, in `tx`, the record that `consumer` processed message `id`.
 * Queue it FIRST: if the id is already recorded, the statement fails and
 * nothing of tx commits; the runner of tx then reports LOOM_EALREADY, which
 * means "already processed: acknowledge it and move on".
 *
 * Errors (nothing queued): LOOM_EINVAL (NULL arguments, an empty or
 * non-UTF-8 consumer, a nil id), LOOM_ETOOBIG (consumer name over
 * LOOM_INBOX_MAX_CONSUMER), LOOM_ENOMEM.
 */
LOOM_API loom_err loom_inbox_mark(loom_tx *tx, const char *consumer,
                                  const loom_uuid *id);

#ifdef __cplusplus
}
#endif

#endif /* LOOM_INBOX_H */
