/*
 * Transports: how messages travel between services. A transport is a
 * small versioned table of operations registered under a URL scheme
 * ("topics://" for the built-in partitioned topic streams, "nats://" for
 * NATS JetStream), in the style of nng's transports: the code above it
 * (the outbox relay, sagas, consumers) opens a URL and never knows which
 * one it got.
 *
 * Everything is asynchronous on a loom_runtime's loop: publish returns at
 * once and calls back when the transport has the messages (its
 * acknowledgement level); a consumer's handler is called on the loop with
 * batches and acknowledges or fails each message, then or later
 * (RabbitMQ-style manual acks). Delivery is at-least-once; the message id
 * lets consumers drop duplicates (see the inbox). A message that can never
 * be handled (over a size limit, undecodable) is rejected rather than
 * failed: it is dead-lettered at once instead of being retried
 * max_deliveries times (RabbitMQ's basic.reject without requeue,
 * JetStream's +TERM after a dead letter).
 *
 * Writing a transport: fill a loom_transport_ops with
 * LOOM_TRANSPORT_OPS_VERSION and every operation (reject may be NULL),
 * and call
 * loom_transport_register() before opening URLs of its scheme.
 */
#ifndef LOOM_TRANSPORT_H
#define LOOM_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include "loom/error.h"
#include "loom/eventstore.h"
#include "loom/export.h"
#include "loom/runtime.h"
#include "loom/uuid.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The version of loom_transport_ops this library speaks: 2 added reject.
 * loom_transport_register() still takes version 1 tables (compiled
 * before reject existed: the member is then never read). */
#define LOOM_TRANSPORT_OPS_VERSION 2u
#define LOOM_TRANSPORT_OPS_V1      1u

/* The longest scheme ("topics"), in bytes: lower-case letters, digits,
 * '+', '-' and '.', starting with a letter. */
#define LOOM_MAX_SCHEME 31

/* The most transports registered at once. */
#define LOOM_MAX_TRANSPORTS 16

/* publish: let the transport's partitioner choose (see loom/partitioner.h). */
#define LOOM_PARTITION_ANY (-1)

/*
 * A message. On publish the caller owns every pointer (the transport
 * copies what it keeps before publish returns); on delivery the transport
 * owns them until the message is acknowledged or failed.
 */
typedef struct loom_message {
    const char *topic;
    const void *key; /* NULL: no key */
    size_t key_len;
    const loom_header *headers;
    size_t n_headers;
    const void *payload;
    size_t payload_len;
    /* The message id, for deduplication; publish: all zero asks the
     * transport to generate a UUIDv7. */
    loom_uuid id;
    /* publish: LOOM_PARTITION_ANY or a partition; delivery: its
     * partition. */
    int32_t partition;
    int64_t offset;     /* delivery: the offset in its partition */
    int64_t timestamp;  /* delivery: when it was published, µs since 1970 */
    int64_t deliver_at; /* publish: not before this (µs since 1970); 0: now */
    uint32_t attempt;   /* delivery: 1 for the first delivery */
} loom_message;

/* Called on the loop when a publish is done: LOOM_OK when the transport
 * has all `n` messages, else why none or only some were taken (a
 * transport documents which). A transport calls it exactly once for every
 * publish it accepted, never during the publish call, and at the latest
 * when it closes (then with an error): callers free their state in it.
 * Errors a retry cannot fix say so: LOOM_EINVAL or LOOM_ETOOBIG (the
 * message), LOOM_ENOTFOUND (its topic); any other error is worth a retry
 * (the outbox relay retries those with backoff and sets the others
 * aside). */
typedef void (*loom_publish_cb)(loom_err rc, size_t n, void *arg);

/* What a consumer reads. Start from LOOM_CONSUMER_CONFIG_INIT; strings
 * and arrays are copied. */
typedef struct loom_consumer_config {
    /* The consumer group: members of one group share the messages,
     * independent groups each get all of them. */
    const char *group;
    /* Topic names or patterns in RabbitMQ topic-exchange syntax
     * ("orders.*.eu", "orders.#"), as far as the transport supports them. */
    const char *const *topics;
    size_t n_topics;
    size_t batch;         /* most messages per handler call; 0: the
                             transport's default (topics 500) */
    size_t max_in_flight; /* unacknowledged messages before fetching
                             pauses; 0: 1000 */
    /* Deliveries of a failing message before it is dead-lettered; 0: the
     * transport's default (topics: the topic's max_deliveries, itself 5
     * unless set; nats: 5). */
    unsigned max_deliveries;
} loom_consumer_config;

#define LOOM_CONSUMER_CONFIG_INIT                                              \
    {                                                                          \
        NULL, NULL, 0, 0, 0, 0                                                 \
    }

typedef struct loom_transport loom_transport;
typedef struct loom_consumer loom_consumer;

/*
 * The handler: called on the loop with `n` >= 1 messages, borrowed until
 * each is acknowledged (loom_consumer_ack), failed (loom_consumer_fail) or
 * rejected (loom_consumer_reject), which may happen during the call or
 * later, on the loop.
 */
typedef void (*loom_consume_fn)(loom_consumer *c,
                                const loom_message *const *msgs, size_t n,
                                void *arg);

/* The operations of a transport. `state` is what open() returned;
 * `cstate` what subscribe() returned. Every operation is called on the
 * runtime's loop thread. */
typedef struct loom_transport_ops {
    uint32_t version;   /* LOOM_TRANSPORT_OPS_VERSION */
    const char *scheme; /* "topics": serves "topics://..." URLs */
    /* Opens the URL (the whole of it); the error text goes to err. */
    loom_err (*open)(loom_runtime *rt, const char *url, void **state, char *err,
                     size_t errlen);
    /* Stops everything of `state` and frees it (consumers included). */
    void (*close)(void *state);
    /* Copies what it keeps of msgs (already checked by
     * loom_transport_publish()) and returns; cb(rc, n, arg) then follows
     * exactly once, never from inside this call (see loom_publish_cb).
     * An error return means nothing was taken and cb is never called. */
    loom_err (*publish)(void *state, const loom_message *msgs, size_t n,
                        loom_publish_cb cb, void *arg);
    /* Starts consuming cfg's topics for cfg's group (cfg is borrowed for
     * the call: copy what is kept) and hands batches to
     * loom_consumer_deliver(c, ...) on the loop, never from inside this
     * call. `c` is the framework's handle for the consumer. */
    loom_err (*subscribe)(void *state, const loom_consumer_config *cfg,
                          loom_consumer *c, void **cstate);
    /* The message (one this consumer delivered and that is not yet
     * settled) is done: not delivered to this group again. */
    loom_err (*ack)(void *cstate, const loom_message *m);
    /* The message is delivered again later, or dead-lettered; `error`
     * (never NULL, borrowed for the call) is the reason to keep. */
    loom_err (*fail)(void *cstate, const loom_message *m, const char *error);
    /* Stops the consumer and frees cstate; messages not yet settled are
     * delivered again to the group. No loom_consumer_deliver() for it
     * after this returns. */
    void (*unsubscribe)(void *cstate);
    /* Version 2, optional. The message can never be handled: dead-letter
     * it now (with `error`, never NULL, borrowed for the call, as the
     * reason) and never deliver it to this group again, whatever its
     * delivery count. When the dead letter cannot be written the
     * transport may deliver it again later, as after fail. NULL: the
     * framework calls fail instead, so such a transport dead-letters the
     * message only after max_deliveries. */
    loom_err (*reject)(void *cstate, const loom_message *m, const char *error);
} loom_transport_ops;

/*
 * Registers a transport. `ops` is borrowed for the life of the process.
 * Errors: LOOM_EINVAL (ops NULL, a version other than 1 or 2, a bad
 * scheme, or a required operation missing: all but reject), LOOM_EDUPLICATE
 * (the scheme is taken), LOOM_ENOMEM (LOOM_MAX_TRANSPORTS already registered).
 * Thread-safe.
 */
LOOM_API loom_err loom_transport_register(const loom_transport_ops *ops);

/*
 * Opens `url` ("<scheme>://...") with the transport registered for its
 * scheme, on `rt`. On failure the reason is in err (when not NULL).
 * Errors: LOOM_EINVAL (NULL arguments, no "://"), LOOM_ENOTFOUND (no
 * transport for the scheme; err lists the registered ones), LOOM_ENOMEM,
 * and the transport's own. Free with loom_transport_close() before
 * loom_runtime_close(). Loop thread only.
 */
LOOM_API loom_err loom_transport_open(loom_runtime *rt, const char *url,
                                      loom_transport **out, char *err,
                                      size_t errlen);

/* Closes every consumer opened on the transport, then the transport (a
 * publish still unanswered gets its callback with an error) and frees it.
 * Close what uses it (relays, inbox consumers, orchestrators,
 * participants) first. NULL is a no-op. Loop thread only. */
LOOM_API void loom_transport_close(loom_transport *t);

/* The scheme of the transport ("topics"), borrowed from its ops (valid for
 * the life of the process); "" for NULL. */
LOOM_API const char *loom_transport_scheme(const loom_transport *t);

/*
 * Publishes `n` messages (borrowed for the call: the transport copies
 * them); `cb` (optional) is called on the loop once the transport has
 * them, exactly once, never from inside this call. Loop thread only. Errors
 * (nothing published, cb not called): LOOM_EINVAL (t or msgs NULL, n 0, a
 * message without a topic, with payload NULL and payload_len > 0, key NULL with
 * key_len > 0, or headers NULL with n_headers > 0), and the transport's own.
 */
LOOM_API loom_err loom_transport_publish(loom_transport *t,
                                         const loom_message *msgs, size_t n,
                                         loom_publish_cb cb, void *arg);

/*
 * Starts a consumer: `fn` is called on the loop with batches of messages
 * of cfg's topics for cfg's group (cfg is copied). On success *out owns
 * it: free with loom_consumer_close(), or by closing the transport.
 * Transports may connect or join the group here, blocking (topics does).
 * Loop thread only. Errors: LOOM_EINVAL (NULL arguments, no group or
 * topics, an empty topic), LOOM_ENOMEM, and the transport's own.
 */
LOOM_API loom_err loom_consumer_open(loom_transport *t,
                                     const loom_consumer_config *cfg,
                                     loom_consume_fn fn, void *arg,
                                     loom_consumer **out);

/* Acknowledges a delivered message: it is not delivered to this group
 * again, and `m` is no longer valid. Loop thread. Errors: LOOM_EINVAL
 * (NULL), and the transport's own. */
LOOM_API loom_err loom_consumer_ack(loom_consumer *c, const loom_message *m);

/* Fails a delivered message with a reason (NULL: "failed"; copied): it is
 * delivered again after a backoff, or dead-lettered after max_deliveries.
 * For a failure that may pass (a database down, a conflict, a timeout);
 * see loom_consumer_reject() for one that cannot. `m` is no longer valid
 * afterwards. Loop thread. Errors as ack. */
LOOM_API loom_err loom_consumer_fail(loom_consumer *c, const loom_message *m,
                                     const char *error);

/* Rejects a delivered message that can never be handled (over a size
 * limit, undecodable, without an id): it is dead-lettered now with the
 * reason (NULL: "rejected"; copied), not retried, and the consumer goes
 * on with the messages after it. The dead letter carries what a failed
 * message's does (topics: the LOOM_HEADER_* headers of loom/topics.h,
 * x-deliveries being the deliveries so far, usually 1). On a transport
 * whose ops have no reject (version 1, or NULL) this is
 * loom_consumer_fail(): the message is dead-lettered after
 * max_deliveries. `m` is no longer valid afterwards. Loop thread. Errors
 * as ack. */
LOOM_API loom_err loom_consumer_reject(loom_consumer *c, const loom_message *m,
                                       const char *error);

/* Stops the consumer and frees it; unacknowledged messages are delivered
 * again (to this group), and messages it delivered are no longer valid.
 * NULL is a no-op. Loop thread only. */
LOOM_API void loom_consumer_close(loom_consumer *c);

/*
 * RabbitMQ topic-exchange matching: `topic` and `pattern` are words
 * separated by '.'; in the pattern "*" stands for exactly one word and "#"
 * for zero or more ("orders.*.eu" matches "orders.created.eu";
 * "orders.#" matches "orders" and "orders.a.b"). Returns 1 or 0 (0 for
 * NULL arguments). A consumer's subscription adds one rule this function
 * leaves out: a pattern with a wildcard never delivers a dead-letter
 * topic ("<topic>.dlq"), which is read by naming it.
 */
LOOM_API int loom_topic_matches(const char *pattern, const char *topic);

/*
 * Whether `name` is a topic name every transport takes: 1 to 249 bytes
 * (LOOM_MAX_TOPIC_NAME) of words of ASCII letters, digits, '_' and '-',
 * separated by single dots. With `patterns` 1 a word may also be "*" or
 * "#" (a subscription's pattern). Returns 1 or 0 (0 for NULL).
 */
LOOM_API int loom_topic_name_valid(const char *name, int patterns);

/* For transports: hands a batch to the consumer's handler, on the loop
 * thread. The messages must stay valid until each is acked, failed or
 * rejected. Does nothing for NULL arguments or n 0. */
LOOM_API void loom_consumer_deliver(loom_consumer *c,
                                    const loom_message *const *msgs, size_t n);

#ifdef __cplusplus
}
#endif

#endif /* LOOM_TRANSPORT_H */
