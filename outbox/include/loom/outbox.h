/*
 * The transactional outbox and its relay.
 *
 * A handler that changes state and must tell other services about it
 * writes the messages into the outbox IN THE SAME TRANSACTION as the
 * change (loom_outbox_add() on its loom_tx). They leave the database
 * exactly when that transaction commits, never without it, never before
 * it: no "dual write" (DESIGN.md principle 1).
 *
 * A relay publishes them: it reads each outbox in commit order (the xid8
 * rule of the event store), publishes batches through a loom_transport,
 * waits for the transport's acknowledgement, then records its progress.
 * Delivery is at least once: a relay that dies between publishing and
 * recording republishes that one batch, and the message id (kept from
 * loom_outbox_add to the consumer) lets the transport (NATS JetStream's
 * Nats-Msg-Id, a topic's deduplication window) or the consumer's inbox
 * (loom/inbox.h) drop the duplicate. Messages with the same key keep
 * their order from the outbox to the transport.
 *
 * Several relays may run for one outbox, in one process or many: one
 * leads (it holds the outbox's advisory lock on its own connection), the
 * others stand by and take over within standby_ms after the leader dies.
 */
#ifndef LOOM_OUTBOX_H
#define LOOM_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

#include "loom/error.h"
#include "loom/eventstore.h"
#include "loom/export.h"
#include "loom/runtime.h"
#include "loom/transport.h"
#include "loom/tx.h"
#include "loom/uuid.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The outbox used when none is named. */
#define LOOM_OUTBOX_DEFAULT "default"

/* Longest outbox name, in bytes (letters, digits, '_', '-', '.'). */
#define LOOM_OUTBOX_MAX_NAME 63

/* Limits of one message: larger ones are refused by loom_outbox_add(). */
#define LOOM_OUTBOX_MAX_TOPIC   ((size_t) 249)
#define LOOM_OUTBOX_MAX_KEY     ((size_t) 4096)
#define LOOM_OUTBOX_MAX_PAYLOAD ((size_t) 1 << 20)
#define LOOM_OUTBOX_MAX_HEADERS ((size_t) 64 << 10) /* encoded */

/* A message to send. Pointers are borrowed for the call (copied into the
 * transaction). */
typedef struct loom_outbox_message {
    const char *topic; /* required: the transport's topic / subject */
    /* NULL or key_len 0: no key (no order across messages). */
    const void *key;
    size_t key_len;
    /* Optional (NULL or ""): the payload's type name, at most
     * LOOM_MAX_TYPE_NAME bytes; the relay sends it as header "x-type". */
    const char *type;
    const loom_header *headers;
    size_t n_headers;
    const void *payload; /* may be NULL when payload_len is 0 */
    size_t payload_len;
    /* In/out: a nil id is replaced by a fresh UUIDv7, written back, so
     * the caller can log it or retry with the same one. */
    loom_uuid id;
    int64_t deliver_at; /* not before (µs since 1970); 0: at once */
} loom_outbox_message;

/*
 * Queues `n` messages for `outbox` (NULL: LOOM_OUTBOX_DEFAULT) in `tx`, as
 * one statement. They commit, or not, with everything else in tx.
 *
 * Errors (nothing queued): LOOM_EINVAL (tx or msgs NULL, n 0, a bad outbox
 * name, a message without a topic, a topic, type or header that is not
 * UTF-8, NULL pointers with non-zero lengths, a header with an empty key
 * or NULL value, a negative deliver_at, two messages with the same
 * non-nil id: the later would be dropped as its duplicate), LOOM_ETOOBIG
 * (a field over its
 * LOOM_OUTBOX_MAX_* or LOOM_MAX_TYPE_NAME, or the messages together over
 * LOOM_TX_MAX_BYTES), LOOM_ENOMEM, LOOM_EIO (no random source for an
 * id). loom_tx_errmsg() names the message and the limit.
 */
LOOM_API loom_err loom_outbox_add(loom_tx *tx, const char *outbox,
                                  loom_outbox_message *msgs, size_t n);

/* ------------------------------------------------------------------ */
/* The relay                                                           */

typedef struct loom_relay loom_relay;

/* Start from LOOM_RELAY_CONFIG_INIT; strings are copied. */
typedef struct loom_relay_config {
    /* PostgreSQL connection string; NULL: $LOOM_DATABASE_URL. */
    const char *conninfo;
    /* The outbox to relay; NULL: LOOM_OUTBOX_DEFAULT. */
    const char *outbox;
    /* Where messages go; borrowed, must outlive the relay. */
    loom_transport *transport;
    /* Shown as the active relay in `loomctl outbox status`; NULL:
     * "<hostname> pid <pid>". */
    const char *name;
    size_t batch;            /* most messages per publish; 0: 500 */
    unsigned poll_ms;        /* read without a wake-up this often; 0: 1000 */
    unsigned standby_ms;     /* a standby tries to lead this often; 0: 1000 */
    unsigned backoff_ms;     /* first retry after a failed publish; 0: 100 */
    unsigned backoff_max_ms; /* cap of the doubling backoff; 0: 30000 */
    unsigned cleanup_ms;     /* delete published rows this often; 0: 1000 */
    /* Optional: called on the loop once the transport acknowledged
     * messages, before the progress is recorded (so after a crash they
     * may be published, and reported, again). msgs[i].timestamp is when
     * the message was written to the outbox (µs since 1970): now minus
     * it is the relay's lag. The messages are borrowed for the call. */
    void (*published)(void *arg, const loom_message *msgs, size_t n);
    void *published_arg;
    /* When the transport is the built-in topics of the outbox's own
     * database (and neither a custom partitioner nor `published` is set),
     * the relay publishes inside the database: one statement moves a
     * batch to its topics and the cursor past it, in one transaction
     * (schema 13; docs/messaging.md). 1: always go through the
     * transport instead. */
    int through_transport;
} loom_relay_config;

#define LOOM_RELAY_CONFIG_INIT                                                 \
    {                                                                          \
        NULL, NULL, NULL, NULL, 0, 0, 0, 0, 0, 0, NULL, NULL, 0                \
    }

/*
 * Starts a relay on `rt` (its loop runs it): it connects (blocking, once),
 * then leads or stands by. On success *out owns the relay; close it with
 * loom_relay_close() before the transport and the runtime.
 *
 * Errors: LOOM_EINVAL (rt, cfg, cfg->transport or out NULL, a bad outbox
 * name, batch over 10,000), LOOM_ECONN, LOOM_ESCHEMA (run `loomctl
 * migrate`), LOOM_ENOMEM; err (may be NULL) says why.
 */
LOOM_API loom_err loom_relay_start(loom_runtime *rt,
                                   const loom_relay_config *cfg,
                                   loom_relay **out, char *err, size_t errlen);

/* Stops the relay: a publish in flight is abandoned (its messages are
 * published again by the next leader: at least once), leadership is
 * given up, and the connection closed. NULL is a no-op. Loop thread. */
LOOM_API void loom_relay_close(loom_relay *r);

/* What a relay has done, for tests and metrics. */
typedef struct loom_relay_stats {
    int leading;           /* 1 while this relay is the active one */
    uint64_t published;    /* messages published */
    uint64_t batches;      /* batches published */
    uint64_t failures;     /* publishes that failed and were retried */
    uint64_t dead_letters; /* messages refused for good (see below) */
    uint64_t takeovers;    /* times this relay became the leader */
    uint64_t cleaned;      /* published rows deleted */
    uint64_t wakeups;      /* sleeps ended by a NOTIFY (not the poll) */
    /* Empty reads that found committed messages held back by an older
     * transaction still running, and so looked again within 1-64 ms
     * instead of sleeping until a wake-up or the poll. */
    uint64_t held_back;
    /* Of `published` and `batches`: those published inside the database
     * (see through_transport), not through the transport. */
    uint64_t in_database;
    uint64_t batches_in_database;
} loom_relay_stats;

/* Copies r's counters. Errors: LOOM_EINVAL (NULL). */
LOOM_API loom_err loom_relay_stats_get(const loom_relay *r,
                                       loom_relay_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* LOOM_OUTBOX_H */
