/*
 * Private: hooks of the inbox consumer (loom/inbox_consumer.h) for
 * handlers that write for a whole transaction at once, as saga
 * participants do (their appends and replies: one statement each per
 * delivered batch, not one per message).
 *
 * Before the handlers of a transaction run, `begin` is called: whatever
 * was collected for an earlier attempt that was never sent must be
 * dropped. After the last handler of a transaction succeeded, `end`
 * queues what was collected into `tx`; an error fails the transaction as
 * a handler's would (`why` says why). A transaction is a delivered batch,
 * or one message when the consumer isolates them.
 */
#ifndef LOOM_INBOX_CONSUMER_INT_H
#define LOOM_INBOX_CONSUMER_INT_H

#include <stddef.h>

#include "loom/inbox_consumer.h"

typedef void (*loom__inbox_begin_fn)(void *arg);
typedef loom_err (*loom__inbox_end_fn)(loom_tx *tx, char *why, size_t whylen,
                                       void *arg);

/* Sets both hooks (NULL: none); call right after
 * loom_inbox_consumer_open(), before the loop delivers anything. */
void loom__inbox_consumer_hooks(loom_inbox_consumer *ic,
                                loom__inbox_begin_fn begin,
                                loom__inbox_end_fn end, void *arg);

#endif /* LOOM_INBOX_CONSUMER_INT_H */
