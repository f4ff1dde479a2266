/*
 * Live subscriptions: a handler called with the events of all streams, of
 * a category (optionally one member's share of a consumer group) or of one
 * stream, first catching up from a stored checkpoint, then following new
 * events as they commit.
 *
 * Guarantees
 *   - Order: events arrive in commit order (stream order for
 *     LOOM_SUB_STREAM), never skipping one: reads use the xid8 horizon of
 *     loom_store_read_all() (see loom/eventstore.h).
 *   - Checkpoints (table loom.checkpoints, one row per subscription name)
 *     move by compare-and-set after each batch the handler accepted. When
 *     someone else moved the row meanwhile (a second process under the
 *     same name, a projection rebuild, an operator), the batch is rolled
 *     back and the subscription reloads the checkpoint.
 *   - Exactly-once effects (loom_subscribe_tx()): the handler queues its
 *     SQL on a loom_tx (loom/tx.h); the statements and the checkpoint
 *     commit in one transaction, so an effect is never applied twice nor
 *     lost, whatever crashes or connections drop.
 *   - At-least-once (loom_subscribe()): the checkpoint is saved after the
 *     handler returns, so a batch handled just before a crash or a lost
 *     connection is delivered again. A transaction that carries no
 *     effects of the handler (the checkpoint alone, or a parked event)
 *     commits without waiting for its WAL flush: a server crash can undo
 *     it, which only means delivering again.
 *   - Failures: a batch the handler refuses (or whose transaction fails)
 *     is delivered again after a backoff. After max_attempts deliveries
 *     the subscription delivers the batch's events one at a time to find
 *     the one that fails, and after max_attempts deliveries of that event
 *     it parks it (table loom.parked, with the error) and goes on.
 *     `loomctl parked list|replay|drop` shows, retries or forgets parked
 *     events; a replay request reaches the running subscription through
 *     channel "loom_parked" and is delivered once more.
 *   - Live: once caught up, the subscription arms the wake-up of channel
 *     "loom_events" (docs/concepts.md, "Waking readers"), reads once more
 *     and sleeps until the runtime's listener wakes it: on a NOTIFY, after
 *     the LISTEN connection reconnects, and every poll_ms of the runtime.
 *   - Stalls: while caught up, the subscription checks every
 *     horizon_warn_ms whether committed events wait behind a transaction
 *     open longer than that, and logs a WARN naming its process id (also
 *     shown by `loomctl stats`).
 *
 * Threads
 *   Everything runs on the runtime's loop thread. loom_subscribe() opens
 *   the subscription's own PostgreSQL connection with a blocking connect
 *   (call it before loom_runtime_run() or accept the pause); every later
 *   query, and reconnecting after a lost connection, is non-blocking,
 *   except that the first use of each of the store's own prepared
 *   statements on a connection prepares it with one blocking round trip.
 */
#ifndef LOOM_SUBSCRIPTION_H
#define LOOM_SUBSCRIPTION_H

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

typedef struct loom_subscription loom_subscription;

/* What a subscription reads. */
typedef enum loom_sub_source {
    LOOM_SUB_ALL = 0,  /* every event, in commit order */
    LOOM_SUB_CATEGORY, /* one category (and group share), commit order */
    LOOM_SUB_STREAM    /* one stream, in version order */
} loom_sub_source;

/* The longest subscription (checkpoint) name, in bytes. */
#define LOOM_MAX_SUBSCRIPTION_NAME 63

/* Default number of events per read. */
#define LOOM_DEFAULT_SUB_BATCH ((size_t) 500)

/* Default deliveries of a failing batch (then of a failing event) before
 * the subscription isolates (parks) it. */
#define LOOM_DEFAULT_SUB_ATTEMPTS 5u

/* max_attempts that never parks: a failing event blocks the subscription
 * and is retried with backoff forever. */
#define LOOM_SUB_NEVER_PARK 0xffffffffu

/* Default period of the stall check, in milliseconds. */
#define LOOM_DEFAULT_HORIZON_WARN_MS 10000u

/* Subscription options. Start from LOOM_SUBSCRIPTION_CONFIG_INIT. Every
 * string and array is copied by loom_subscribe(). */
typedef struct loom_subscription_config {
    /* Checkpoint name, 1 to 63 bytes of UTF-8: two subscriptions with the
     * same name share (and fight over) one checkpoint. */
    const char *name;
    loom_sub_source source;
    /* LOOM_SUB_CATEGORY: the category (no '-'). */
    const char *category;
    /* LOOM_SUB_CATEGORY only: this subscription's share of a consumer
     * group (see loom_store_read_category()); size 0: the whole category.
     * Give each member its own name. */
    loom_group group;
    /* LOOM_SUB_STREAM: the stream. */
    const char *stream;
    /* Deliver only events of these types (filtered in the client: the
     * other events are still read, and advance the checkpoint). n_types
     * 0: every type. */
    const char *const *types;
    size_t n_types;
    /* Events per read, and so at most per handler call. 0: 500. At most
     * LOOM_DEFAULT_MAX_READ. */
    size_t batch;
    /* 1: start from the beginning, overwriting the stored checkpoint. */
    int from_start;
    /* libpq connection string or URL; NULL: $LOOM_DATABASE_URL. */
    const char *conninfo;
    /* Deliveries of a failing batch, then of the failing event, before
     * it is parked. 0: LOOM_DEFAULT_SUB_ATTEMPTS; LOOM_SUB_NEVER_PARK:
     * retry forever. */
    unsigned max_attempts;
    /* Stall check period and the transaction age it reports, in ms. 0:
     * LOOM_DEFAULT_HORIZON_WARN_MS. */
    unsigned horizon_warn_ms;
} loom_subscription_config;

#define LOOM_SUBSCRIPTION_CONFIG_INIT                                          \
    {                                                                          \
        NULL, LOOM_SUB_ALL, NULL, {0, 0}, NULL, NULL, 0, 0, 0, NULL, 0, 0      \
    }

/*
 * The handler: called on the loop thread with the `n` (>= 1) events of one
 * batch that pass the type filter, in commit order (stream order for
 * LOOM_SUB_STREAM). The events and the array are borrowed until it
 * returns. LOOM_OK: the checkpoint advances past the batch. Any error: the
 * batch is delivered again after a backoff (logged as a WARN), and
 * eventually parked (see "Failures" above). The handler may call
 * loom_runtime_stop() and loom_subscription_close() (the subscription is
 * then freed after the handler returns).
 */
typedef loom_err (*loom_sub_fn)(const loom_event *const *events, size_t n,
                                void *arg);

/*
 * The transactional handler: as loom_sub_fn, and it queues its effects on
 * `tx` (borrowed for the call), which commits with the checkpoint when it
 * returns LOOM_OK. It may be called with the same events again only if
 * that transaction did not commit. An error, or a queued statement that
 * fails, rolls everything back.
 */
typedef loom_err (*loom_sub_tx_fn)(loom_tx *tx, const loom_event *const *events,
                                   size_t n, void *arg);

/*
 * Starts a subscription on `rt`: opens its connection (blocking), then,
 * on the loop, loads its checkpoint (or starts from the beginning), reads
 * and delivers batches until caught up, and follows live. Retry delays
 * after a lost connection or a handler error use the runtime's
 * reconnect_min_ms and reconnect_max_ms (capped exponential backoff with
 * full jitter). `arg` is borrowed until the subscription is freed.
 *
 * When the runtime stops, the subscription finishes the batch in hand (a
 * read in flight is received, delivered and checkpointed) and reports
 * done. A batch waiting for a retry is not delivered again: the next run
 * delivers it.
 *
 * On success *out is the subscription, to be freed with
 * loom_subscription_close() before loom_runtime_close(). On failure *out
 * is NULL (when out is not NULL).
 *
 * Errors: LOOM_EINVAL (rt, cfg, fn or out NULL; name empty or over 63
 * bytes; unknown source; missing or invalid category or stream; a group
 * with member >= size; types NULL with n_types > 0, or a NULL or empty
 * type; batch over LOOM_DEFAULT_MAX_READ), LOOM_EBUSY (the runtime is
 * stopping), LOOM_ENOMEM, and the errors of loom_store_open() (LOOM_ECONN,
 * LOOM_ESCHEMA, LOOM_EDB), which are also logged with their explanation.
 * Loop thread only.
 */
LOOM_API loom_err loom_subscribe(loom_runtime *rt,
                                 const loom_subscription_config *cfg,
                                 loom_sub_fn fn, void *arg,
                                 loom_subscription **out);

/*
 * As loom_subscribe(), with a transactional handler: exactly-once effects
 * for whatever the handler writes through its loom_tx. Same errors.
 */
LOOM_API loom_err loom_subscribe_tx(loom_runtime *rt,
                                    const loom_subscription_config *cfg,
                                    loom_sub_tx_fn fn, void *arg,
                                    loom_subscription **out);

/*
 * Stops the subscription gracefully (like a runtime stop: the batch in
 * hand is finished and checkpointed, so the handler may still be called
 * once, for a read already in flight) and frees it when that is done.
 * Called when the runtime never ran, it abandons any step in flight.
 * Call it on the loop thread (from any callback, its own handler
 * included) or after loom_runtime_run() has returned, and always before
 * loom_runtime_close(). NULL is a no-op.
 */
LOOM_API void loom_subscription_close(loom_subscription *s);

/* What a subscription has done since it started, for tests and
 * monitoring. */
typedef struct loom_subscription_stats {
    /* Reads of new events sent. A subscription that reads a short page
     * (fewer events than its batch) has caught up: it arms its wake-up
     * and reads once more (delivering what that read finds), then sleeps
     * until an append wakes it (or poll_ms passes), so a live
     * subscription reads twice per wake-up. */
    uint64_t reads;
    uint64_t batches; /* pages (or replayed parked events) committed */
    uint64_t events;  /* events the handler accepted (after the filter) */
    uint64_t wakeups; /* calls of its listener: NOTIFY, reconnect, poll */
    uint64_t parked;  /* events parked after max_attempts */
} loom_subscription_stats;

/*
 * Copies s's counters to *out. Loop thread only (or after
 * loom_runtime_run() has returned).
 *
 * Errors: LOOM_EINVAL (s or out NULL).
 */
LOOM_API loom_err loom_subscription_stats_get(const loom_subscription *s,
                                              loom_subscription_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* LOOM_SUBSCRIPTION_H */
