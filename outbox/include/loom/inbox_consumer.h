/*
 * An idempotent consumer on any transport: every message is handled in
 * its own PostgreSQL transaction that first records the message id in the
 * consumer's inbox (loom/inbox.h), then runs what the handler queued
 * (events with loom_tx_append(), outbox messages with loom_outbox_add(),
 * any SQL with loom_tx_exec()). The message is acknowledged only after
 * that transaction commits; a message already recorded is acknowledged
 * and nothing queued for it commits again. So a redelivered message
 * changes nothing twice, whatever crashed where. (The handler may still
 * be called for a message that turns out to be recorded: its statements
 * are then discarded. Keep it free of effects outside its tx.)
 *
 * Messages are handled in delivery order. Those of one batch are
 * committed together when the handler accepts them all (one round trip);
 * when that transaction fails, each message is retried alone so one bad
 * message fails only itself: it goes back to the transport
 * (loom_consumer_fail, with the handler's reason or the server's), which
 * redelivers it and, after max_deliveries, dead-letters it. A message the
 * handler refuses is failed only once PostgreSQL has confirmed that it is
 * not recorded (a processed message is acknowledged as a duplicate).
 *
 * A message that can never be handled is rejected instead
 * (loom_consumer_reject): dead-lettered at once, on its first delivery,
 * so it does not hold up the messages behind it (on topics, those of its
 * partition) for max_deliveries backoffs. That is
 *  - a message over a limit, checked on receipt before any SQL: a payload
 *    over max_payload (default LOOM_OUTBOX_MAX_PAYLOAD), a key over
 *    LOOM_OUTBOX_MAX_KEY, headers over LOOM_OUTBOX_MAX_HEADERS encoded
 *    (the limits of what an outbox sends), or a message without an id
 *    (it cannot be made idempotent);
 *  - a message the handler refuses with LOOM_EDECODE (it does not decode,
 *    or is not what this consumer takes), once PostgreSQL has confirmed
 *    it is not already processed, as for any refusal.
 * A rejected message leaves nothing in the inbox (none of its effects
 * commit, nor its mark): it is in the dead letters, from where it can be
 * re-driven (loom_topics_redrive) once the consumer can handle it. On a
 * transport without reject (see loom_transport_ops) it is failed instead.
 *
 * A handler that returns LOOM_ECONN or LOOM_ENOMEM (a database it reads
 * is away, memory ran out) does not fail its message either: the same
 * message is handled again after a backoff (up to 10 s), as when the
 * consumer's own connection breaks, and never nears its dead letter for
 * an outage.
 *
 * A version conflict is not the message's fault: a transaction that
 * fails with LOOM_ECONFLICT (an append's expected version did not hold
 * because another transaction moved the stream first, say a command on
 * the same aggregate earlier in the batch, or another process) is
 * handled again. A batch is then retried one message at a time, as for
 * any failure; a message alone is handled again at once (the handler is
 * called again and can load fresher state), up to max_conflicts times,
 * before it is failed like any other. Those re-runs are not deliveries:
 * they never bring a valid message nearer its dead letter.
 *
 * When the connection breaks, the transaction's outcome is unknown: the
 * same messages are tried again after a backoff (the inbox marks tell
 * what had committed), and nothing is acknowledged before its
 * transaction committed.
 *
 * Entries older than the window are deleted in the background (between
 * batches, at most 10,000 per statement, again at once while there are
 * more): a message redelivered after its entry expired is handled again,
 * so keep the window longer than the transport's redelivery horizon.
 */
#ifndef LOOM_INBOX_CONSUMER_H
#define LOOM_INBOX_CONSUMER_H

#include <stddef.h>
#include <stdint.h>

#include "loom/error.h"
#include "loom/export.h"
#include "loom/transport.h"
#include "loom/tx.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct loom_inbox_consumer loom_inbox_consumer;

/*
 * Queues m's effects in tx (statements only: see loom/tx.h). Return
 * LOOM_OK to commit them with the inbox mark; LOOM_EDECODE rejects the
 * message (it can never be handled: dead-lettered at once, see above);
 * any other code fails it (redelivered, dead-lettered after
 * max_deliveries). Either way nothing of it commits, and `why` (may be
 * left empty) says why in the transport's dead letter. `m` is borrowed
 * for the call.
 */
typedef loom_err (*loom_inbox_fn)(const loom_message *m, loom_tx *tx, char *why,
                                  size_t whylen, void *arg);

/* How a message was settled (loom_inbox_consumer_config.settled). */
typedef enum loom_inbox_outcome {
    LOOM_INBOX_COMMITTED = 1, /* its effects committed; acknowledged */
    LOOM_INBOX_DUPLICATE = 2, /* already processed; acknowledged */
    LOOM_INBOX_FAILED = 3,    /* failed back to the transport */
    LOOM_INBOX_REJECTED = 4   /* can never be handled: dead-lettered now */
} loom_inbox_outcome;

/* Told how message `m` (borrowed for the call) was settled; `arg` is the
 * handler's. */
typedef void (*loom_inbox_settled_fn)(const loom_message *m,
                                      loom_inbox_outcome outcome, void *arg);

/* Start from LOOM_INBOX_CONSUMER_CONFIG_INIT; strings are copied. */
typedef struct loom_inbox_consumer_config {
    /* PostgreSQL for the inbox and the effects; NULL: $LOOM_DATABASE_URL. */
    const char *conninfo;
    /* The inbox's name for this consumer; NULL: the group's name. */
    const char *consumer;
    /* Keep inbox entries this long; 0: 7 days; at most 100 years. */
    uint64_t window_ms;
    /* Look for expired entries this often (the first time within a
     * second of opening); 0: 60 s. */
    unsigned expire_every_ms;
    /* Re-runs of a message whose transaction, alone, failed with a
     * version conflict (see above), before it is failed; 0: 10, at most
     * 1000. */
    unsigned max_conflicts;
    /* Optional: called on the loop for each message as it is
     * acknowledged, failed or rejected, just before (so a handler that
     * keeps a note per message, say what its reply was, learns which
     * committed). It must not close the consumer. */
    loom_inbox_settled_fn settled;
    /* The largest payload handled, in bytes; a larger message is
     * rejected on receipt. 0: LOOM_OUTBOX_MAX_PAYLOAD (1 MiB). */
    size_t max_payload;
} loom_inbox_consumer_config;

#define LOOM_INBOX_CONSUMER_CONFIG_INIT                                        \
    {                                                                          \
        NULL, NULL, 0, 0, 0, NULL, 0                                           \
    }

/*
 * Opens a consumer of `cfg` on `t` whose messages go through `fn` as
 * above, on the loop of t's runtime. Connects to PostgreSQL (blocking,
 * once; the schema must be migrated). On success *out owns it: close with
 * loom_inbox_consumer_close() before the transport (which would close the
 * consumer under it).
 *
 * icfg may be NULL: LOOM_INBOX_CONSUMER_CONFIG_INIT's defaults.
 *
 * Errors: LOOM_EINVAL (t, cfg, fn or out NULL, a bad config, an empty
 * consumer name or one over LOOM_INBOX_MAX_CONSUMER, max_conflicts over
 * 1000), LOOM_ECONN, LOOM_ESCHEMA, LOOM_ENOMEM, and the transport's own;
 * err (may be NULL) says why.
 */
LOOM_API loom_err loom_inbox_consumer_open(
    loom_transport *t, const loom_consumer_config *cfg,
    const loom_inbox_consumer_config *icfg, loom_inbox_fn fn, void *arg,
    loom_inbox_consumer **out, char *err, size_t errlen);

/* Stops consuming: the transaction in flight, if any, is abandoned (it
 * may still commit: its messages then come back as duplicates); messages
 * not yet acknowledged are delivered again later. NULL is a no-op. Loop
 * thread, not from inside the handler.
 *
 * A graceful loom_runtime_stop() instead finishes the transaction in
 * flight and settles its messages before the consumer stops; close it
 * after loom_runtime_run() returns. */
LOOM_API void loom_inbox_consumer_close(loom_inbox_consumer *ic);

/* What the consumer did. */
typedef struct loom_inbox_consumer_stats {
    uint64_t handled;    /* messages whose effects committed */
    uint64_t duplicates; /* messages skipped: already in the inbox */
    uint64_t failed;     /* messages failed back to the transport */
    uint64_t expired;    /* inbox entries deleted by the window */
    /* Transactions lost to a version conflict, each followed by handling
     * its messages again (a batch one by one, a message alone at once). */
    uint64_t conflicts;
    uint64_t rejected; /* messages rejected: dead-lettered at once */
} loom_inbox_consumer_stats;

/* Copies ic's counters. Errors: LOOM_EINVAL (NULL). */
LOOM_API loom_err loom_inbox_consumer_stats_get(const loom_inbox_consumer *ic,
                                                loom_inbox_consumer_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* LOOM_INBOX_CONSUMER_H */
