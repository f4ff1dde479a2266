/*
 * The built-in transport: partitioned topic streams stored in PostgreSQL
 * (schema: framework/migrations/0005_topics.sql), opened as a transport
 * with a "topics://" URL (loom/transport.h) and administered here and by
 * `loomctl topics`.
 *
 * Semantics, as users know them from Kafka, RabbitMQ and SQS:
 *  - A topic has N partitions, each an ordered log with dense offsets;
 *    order within a partition is commit order, and a consumer never skips
 *    a message that commits late.
 *  - A message with a key goes to partition (murmur2(key) & 0x7fffffff) %
 *    N, as in Kafka; without a key, one partition per published batch,
 *    the next for the next batch; a custom partitioner can choose.
 *  - Consumer groups share the partitions (range or round-robin
 *    assignment, rebalanced when members join, leave or miss their session
 *    timeout); a member that lost a partition cannot commit on it.
 *  - Offsets are committed per group and partition after each batch, or
 *    with the handler's own statements in one transaction (exactly-once
 *    effects: loom_topics_consumer_open_tx()).
 *  - A failed message comes back after an exponential backoff and, after
 *    the topic's max deliveries, goes to "<topic>.dlq" with headers naming
 *    the error, group and delivery count. A redelivery counts when it is
 *    handed out: one a consumer took and never settled (it died) counts
 *    too, and past max deliveries goes to "<topic>.dlq" unhandled. A topic
 *    whose name leaves no room for ".dlq" (over 245 bytes) redelivers
 *    after the longest backoff instead.
 *  - Delayed messages, deduplication by message id within a window,
 *    retention by age and size, patterns ("orders.*.eu", "orders.#").
 *
 * The URL: "topics://" followed by what would follow "postgresql://" in a
 * libpq connection URI ("topics://user@host:5432/db"), plus options of the
 * transport's own in the query string, removed before connecting:
 *   acks=0|1|all   producer durability (see LOOM_TOPICS_ACKS_*); all
 *   linger_ms=N    wait up to N ms to fill a publish batch; 0
 *   batch=N        most messages per publish transaction; 1000
 *   retention_ms=N how often this process runs a retention step; 10000
 *                  (0: never)
 *   session_timeout_ms=N
 *                  consumers opened through the transport (saga
 *                  participants, inbox consumers) leave their group this
 *                  long after their last heartbeat, so a killed process's
 *                  partitions move to the living after it; 10000
 *                  (100..3600000; a consumer's own config wins)
 * "topics://" alone connects with LOOM_DATABASE_URL when it is set, else
 * with libpq's defaults (PGHOST, PGDATABASE, ...).
 */
#ifndef LOOM_TOPICS_H
#define LOOM_TOPICS_H

#include <stddef.h>
#include <stdint.h>

#include "loom/error.h"
#include "loom/eventstore.h"
#include "loom/export.h"
#include "loom/partitioner.h"
#include "loom/transport.h"
#include "loom/tx.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The longest topic name, in bytes (as Kafka). Names are words of
 * letters, digits, '_' and '-', separated by single dots. A topic created
 * by name is at most 245 bytes unless it ends in LOOM_DLQ_SUFFIX, so its
 * dead-letter topic fits. */
#define LOOM_MAX_TOPIC_NAME 249

/* The longest consumer group name, in bytes. */
#define LOOM_MAX_GROUP_NAME 249

/* The largest message (key, headers and payload), in bytes. */
#define LOOM_MAX_MESSAGE_BYTES (16u * 1024u * 1024u)

/* The suffix of a topic's dead-letter topic. */
#define LOOM_DLQ_SUFFIX ".dlq"

/* Headers a dead letter carries besides the original's: a failed
 * message's after max_deliveries, a rejected one's (loom_consumer_reject)
 * at once, its x-deliveries then the deliveries so far (usually 1). */
#define LOOM_HEADER_ERROR      "x-error"
#define LOOM_HEADER_GROUP      "x-group"
#define LOOM_HEADER_DELIVERIES "x-deliveries"
#define LOOM_HEADER_TOPIC      "x-topic"
#define LOOM_HEADER_PARTITION  "x-partition"
#define LOOM_HEADER_OFFSET     "x-offset"

/*
 * Producer acknowledgement levels, mapped onto PostgreSQL durability
 * (synchronous_commit of the producer's connection); a publish callback
 * runs when the transaction's commit returns:
 *  0   synchronous_commit = off: the commit does not wait for its WAL to
 *      reach disk; a server crash may lose the last few hundred
 *      milliseconds of acknowledged messages (never part of one, and
 *      never the order).
 *  1   synchronous_commit = local: on disk on the primary.
 *  all synchronous_commit = on: on disk on the primary and on the
 *      synchronous standbys when synchronous_standby_names names any
 *      (otherwise the same as 1). The default.
 */
typedef enum loom_topics_acks {
    LOOM_TOPICS_ACKS_NONE = 0,
    LOOM_TOPICS_ACKS_LOCAL = 1,
    LOOM_TOPICS_ACKS_ALL = 2
} loom_topics_acks;

/* A topic's settings. Start from LOOM_TOPIC_CONFIG_INIT: -1 means "the
 * default" to loom_topic_create() and "unchanged" to loom_topic_alter(). */
typedef struct loom_topic_config {
    int32_t partitions;      /* create: 1..LOOM_MAX_PARTITIONS (required);
                                alter: more than now (keys then move) */
    int64_t retention_ms;    /* age after which messages go; 0: forever;
                                at most 3155760000000 (100 years) */
    int64_t retention_bytes; /* per partition; 0: no limit */
    int64_t dedup_window_ms; /* 0: no deduplication; default 300000; at
                                most 100 years, as retention_ms */
    int32_t max_deliveries;  /* before dead-lettering, 1..1000; default 5 */
} loom_topic_config;

#define LOOM_TOPIC_CONFIG_INIT                                                 \
    {                                                                          \
        -1, -1, -1, -1, -1                                                     \
    }

/*
 * Creates topic `name`. Blocking, on the store's connection.
 * Errors: LOOM_EINVAL (NULL arguments, a bad name or setting; errmsg says
 * which), LOOM_EDUPLICATE (it exists), LOOM_ECONN, LOOM_EDB, LOOM_ESCHEMA
 * (run `loomctl migrate`).
 */
LOOM_API loom_err loom_topic_create(loom_store *s, const char *name,
                                    const loom_topic_config *cfg);

/*
 * Changes topic `name`: fields left at -1 keep their value; partitions
 * may only grow. Producers and consumer groups pick the change up on
 * their own. Errors as loom_topic_create(), and LOOM_ENOTFOUND.
 */
LOOM_API loom_err loom_topic_alter(loom_store *s, const char *name,
                                   const loom_topic_config *cfg);

/* What loom_topic_describe() reports. */
typedef struct loom_topic_info {
    char name[LOOM_MAX_TOPIC_NAME + 1];
    loom_topic_config cfg; /* retention 0: none */
    int64_t messages;      /* stored now, all partitions */
    int64_t bytes;         /* stored now (key, headers, payload) */
    int64_t created_at;    /* µs since 1970 */
} loom_topic_info;

/* Reads topic `name`'s settings and size into *out. Errors: LOOM_EINVAL,
 * LOOM_ENOTFOUND, LOOM_ECONN, LOOM_EDB, LOOM_ESCHEMA. */
LOOM_API loom_err loom_topic_describe(loom_store *s, const char *name,
                                      loom_topic_info *out);

/* Where a consumer group starts reading a partition it has no committed
 * offset for, or where loom_topic_reset() moves it. */
typedef enum loom_start {
    LOOM_START_EARLIEST = 0, /* the first message still stored */
    LOOM_START_LATEST,       /* only messages published from now on */
    LOOM_START_TIME,         /* the first published at or after a time */
    LOOM_START_OFFSET        /* an offset (clamped into what is stored) */
} loom_start;

typedef struct loom_topic_position {
    loom_start start;
    int64_t time;   /* LOOM_START_TIME: µs since 1970 */
    int64_t offset; /* LOOM_START_OFFSET */
} loom_topic_position;

/*
 * Moves group `group`'s committed offsets on `topic` (every partition, or
 * only `partition` when >= 0) to `pos`, to replay or to skip, as
 * kafka-consumer-groups --reset-offsets. Pending redeliveries on those
 * partitions are dropped; running members of the group drop what they
 * hold and go on from the new offsets. *n (may be NULL) is the number of
 * partitions moved. Errors: LOOM_EINVAL, LOOM_ENOTFOUND (no such topic),
 * LOOM_ECONN, LOOM_EDB, LOOM_ESCHEMA.
 */
LOOM_API loom_err loom_topic_reset(loom_store *s, const char *group,
                                   const char *topic, int32_t partition,
                                   const loom_topic_position *pos, int *n);

/*
 * Re-drives dead letters of `topic`: those of `group` (NULL: every group)
 * not re-driven yet, or only the one at dlq_partition/dlq_offset of the
 * dead-letter topic (both -1: all). Each is delivered again to its
 * group, counting deliveries from zero. *n (may be NULL) is how many.
 * Errors: LOOM_EINVAL, LOOM_ENOTFOUND, LOOM_ECONN, LOOM_EDB.
 */
LOOM_API loom_err loom_topic_redrive(loom_store *s, const char *topic,
                                     const char *group, int32_t dlq_partition,
                                     int64_t dlq_offset, int *n);

/*
 * Applies retention once, to completion: moves every partition's first
 * offset past what its topic keeps, then deletes the messages below in
 * short transactions of at most 10,000 rows each (no long locks).
 * *removed (may be NULL) counts the messages deleted. An open topics transport
 * does this by itself every retention_ms. Errors: LOOM_EINVAL, LOOM_ECONN,
 * LOOM_EDB.
 */
LOOM_API loom_err loom_topics_retention(loom_store *s, int64_t *removed);

/*
 * Registers the "topics" scheme with loom_transport_register(); opening a
 * "topics://" URL does this by itself. Returns LOOM_OK when it is
 * registered (also when it already was, or another transport holds the
 * scheme), LOOM_ENOMEM when LOOM_MAX_TRANSPORTS are registered already.
 * Thread-safe.
 */
LOOM_API loom_err loom_topics_register(void);

/*
 * Replaces the partitioner of a topics transport for keyed and keyless
 * messages published without an explicit partition (NULL restores
 * Kafka's). Called with the topic's partition count as this process last
 * read it. Errors: LOOM_EINVAL (t NULL or not a topics transport).
 */
LOOM_API loom_err loom_topics_set_partitioner(loom_transport *t,
                                              loom_partitioner_fn fn,
                                              void *arg);

/* What a topics consumer adds to loom_consumer_config. Start from
 * LOOM_TOPICS_CONSUMER_INIT. */
typedef struct loom_topics_consumer_config {
    loom_topic_position start; /* without a committed offset; earliest */
    /* Commit before handling (at-most-once: a crash loses the batch in
     * hand, a failure drops the message) instead of after (at-least-once,
     * the default). */
    int at_most_once;
    /* Offsets commit after each fully acknowledged batch (0), or only in
     * loom_topics_commit() (1). */
    int manual_commit;
    const char *assignor;        /* "range" (default) or "roundrobin" */
    unsigned session_timeout_ms; /* expelled after; 0: 10000 */
    unsigned heartbeat_ms;       /* 0, or not below session_timeout_ms: a third
                                    of session_timeout_ms */
    unsigned backoff_ms;         /* first redelivery delay; 0: 1000 */
    unsigned backoff_max_ms;     /* 0: 60000 */
    unsigned visibility_ms;      /* a redelivery in hand; 0: 30000 */
    unsigned poll_ms;            /* idle re-check period; 0: 1000 */
} loom_topics_consumer_config;

#define LOOM_TOPICS_CONSUMER_INIT                                              \
    {                                                                          \
        {LOOM_START_EARLIEST, 0, 0}, 0, 0, NULL, 0, 0, 0, 0, 0, 0              \
    }

/*
 * The transactional handler: queues the batch's effects on `tx`
 * (loom/tx.h) and returns LOOM_OK; they commit in one transaction with the
 * group's offsets, so each message's effects happen exactly once. An error
 * (or a failing statement) rolls everything back; the batch is then
 * delivered one message at a time, and a message that fails alone is
 * redelivered after a backoff and dead-lettered after max deliveries;
 * one for which the handler returns LOOM_EDECODE (it can never be
 * handled) is dead-lettered at once instead (loom_consumer_reject).
 */
typedef loom_err (*loom_topics_tx_fn)(loom_tx *tx,
                                      const loom_message *const *msgs, size_t n,
                                      void *arg);

/*
 * loom_consumer_open() with topics options (`topts` NULL: defaults) and
 * either a handler that acknowledges messages (`fn`) or a transactional
 * one (`tx_fn`), exactly one of the two. Connects and joins the group
 * before returning (blocking). Errors: LOOM_EINVAL (t not a topics
 * transport, bad options), LOOM_ECONN, LOOM_ESCHEMA, LOOM_ENOMEM.
 */
LOOM_API loom_err loom_topics_consumer_open(
    loom_transport *t, const loom_consumer_config *cfg,
    const loom_topics_consumer_config *topts, loom_consume_fn fn,
    loom_topics_tx_fn tx_fn, void *arg, loom_consumer **out);

/* manual_commit: commits the offsets of everything acknowledged so far
 * (asynchronously, on the loop). Errors: LOOM_EINVAL (not a topics
 * consumer). */
LOOM_API loom_err loom_topics_commit(loom_consumer *c);

/* What a topics consumer holds now, for tests and monitoring. */
typedef struct loom_topics_consumer_stats {
    int64_t generation;   /* the group's, as last seen */
    size_t partitions;    /* assigned to this member */
    size_t in_flight;     /* delivered, not yet acknowledged */
    uint64_t delivered;   /* messages handed to the handler */
    uint64_t redelivered; /* of which redeliveries */
    uint64_t dead;        /* dead-lettered */
    uint64_t fenced;      /* commits refused: the partition moved */
    uint64_t rebalances;  /* assignments read */
    /* Reads of fresh messages sent. A consumer that drains its
     * partitions arms its wake-up and reads once more, then sleeps until
     * a publish wakes it (or poll_ms passes): two reads per wake-up. */
    uint64_t fetches;
} loom_topics_consumer_stats;

/* Errors: LOOM_EINVAL (NULL, not a topics consumer). */
LOOM_API loom_err loom_topics_consumer_stats_get(
    const loom_consumer *c, loom_topics_consumer_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* LOOM_TOPICS_H */
