/*
 * Private to a topics consumer's data path: what its three files share.
 *
 *   consume.c         the loop, sleeping and wake-ups, the entries'
 *                     bookkeeping, acknowledgements, the life cycle
 *   consume_fetch.c   fetching fresh messages and redeliveries, turning
 *                     the rows into batches, delivering them
 *   consume_commit.c  committing (offsets, redeliveries, dead letters)
 *                     and the transactional handler
 *
 * What the rest of the transport calls is in topics_int.h.
 */
#ifndef LOOM_TOPICS_CONSUME_INT_H
#define LOOM_TOPICS_CONSUME_INT_H

#include <stdint.h>

#include "topics_int.h"

/* consume.c */

/* The wall clock in µs since 1970 (deliver_at, redelivery times). */
int64_t loom__tp_now_us(void);
/* Frees batch b, its entries and its rows, wherever it is still named. */
void loom__tp_batch_free(tp_consumer *c, tp_batch *b);
/* The entry needs nothing more from us (its batch may go). */
void loom__tp_entry_done(tp_consumer *c, tp_entry *e);
/* The handler has given the entry back: state TP_E_ACKED or TP_E_FAILED. */
void loom__tp_entry_resolved(tp_consumer *c, tp_entry *e, int state);
/* Unlinks the done entries at the head of the partition's list. */
void loom__tp_part_pop_done(tp_consumer *c, tp_part *p);
/* The loop: takes the next step when idle (commit, fetch, arm, sleep). */
void loom__tp_c_next(tp_consumer *c);
/* A step failed: logs `what` (unless NULL), then backs off. */
void loom__tp_c_fail(tp_consumer *c, const char *what);

/* consume_fetch.c */

/* Sends a fetch of fresh messages (retries 0) or of due redeliveries. */
void loom__tp_c_send_fetch(tp_consumer *c, int retries);
/* At most once: delivers the batch whose offsets have just committed. */
void loom__tp_c_after_commit(tp_consumer *c);

/* consume_commit.c */

/* Builds and sends the commit (keep_tx: after the transactional handler's
 * statements in c->tx); 0 when there was nothing to send. */
int loom__tp_c_commit(tp_consumer *c, int keep_tx);
/* How many deliveries a message of p gets before its dead letter. */
uint32_t loom__tp_c_max_deliveries(const tp_consumer *c, const tp_part *p);
/* Closing: commits what was acknowledged, blocking. */
void loom__tp_c_flush(tp_consumer *c);
/* Runs the transactional handler on the batch in hand, then commits. */
void loom__tp_c_tx_run(tp_consumer *c);

#endif /* LOOM_TOPICS_CONSUME_INT_H */
