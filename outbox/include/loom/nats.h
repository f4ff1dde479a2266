/*
 * The NATS JetStream transport: "nats://" URLs (loom/transport.h) served
 * by a NATS server 2.9 or later with JetStream enabled, through libnats.
 * Built when CMake's LOOM_WITH_NATS is ON (the default). docs/messaging.md
 * ("NATS JetStream") is the guide; this is the reference.
 *
 * The URL: "nats://host:port[,host:port...][?options]". The hosts are
 * servers of one cluster (libnats picks one and fails over to the
 * others); "user:password@" before a host is passed on to libnats.
 * "nats://" alone means 127.0.0.1:4222. Options (milliseconds unless
 * said otherwise):
 *   stream=NAME            the JetStream stream; LOOM. Created when
 *                          missing (file storage, subjects "<prefix>.>",
 *                          dedup_window_ms); an existing one is used as
 *                          it is and must capture "<prefix>.>"
 *   prefix=WORDS           subject prefix: topic "orders.created" is the
 *                          subject "<prefix>.orders.created"; loom
 *   dedup_window_ms=N      the new stream's duplicate window, 100 .. one
 *                          year; 120000
 *   ack_wait_ms=N          a delivered message neither acknowledged nor
 *                          failed within this is delivered again; 30000
 *   publish_timeout_ms=N   a publish JetStream has not acknowledged within
 *                          this fails with LOOM_ECONN; 10000
 *   connect_timeout_ms=N   connecting, and each JetStream set-up request
 *                          (stream, consumers); 5000
 *   reconnect_wait_ms=N    between reconnection attempts; 500
 *   max_reconnect=N        attempts after a lost connection before the
 *                          transport gives up; -1: forever (the default)
 *   max_pending=N          publishes awaiting JetStream's acknowledgement
 *                          at once (more wait in the transport); 4096
 *   backoff_ms=N           first redelivery delay of a failed message,
 *                          doubling with each delivery; 1000
 *   backoff_max_ms=N       the longest redelivery delay; 60000
 *   fetch_wait_ms=N        how long one pull request waits on the
 *                          server; 5000
 * loom_transport_open() errors: LOOM_EINVAL (a malformed URL, an unknown
 * option or a value out of range, or a stream that does not capture the
 * prefix; err says which, and nothing connected), LOOM_ECONN (no server
 * answered, or JetStream did not), LOOM_EIO (JetStream refused the
 * stream), LOOM_ENOMEM, LOOM_EBUSY (the runtime is stopping).
 *
 * Mapping:
 *  - A topic is the subject "<prefix>.<topic>"; names are words of ASCII
 *    letters, digits, '_' and '-' separated by dots (at most 249 bytes).
 *  - Patterns: "*" is one word; "#" may only be the last word: "orders.#"
 *    consumes "orders" and "orders.>" (two JetStream consumers), "#"
 *    alone everything. "#" elsewhere is refused (LOOM_EINVAL, and
 *    loom_nats_errmsg() says why): NATS has no multi-word wildcard but a
 *    trailing ">". A pattern with a wildcard never delivers a dead-letter
 *    topic ("<topic>.dlq"). Each pattern is its own JetStream consumer:
 *    a message matching two patterns of one consumer comes once per
 *    pattern.
 *  - The message id is the Nats-Msg-Id header (canonical UUID text;
 *    generated when nil), so JetStream stores a message published again
 *    within the duplicate window once. A delivered message whose
 *    Nats-Msg-Id does not start with a UUID (published by another client)
 *    has a nil id.
 *  - Headers are NATS headers. Names: printable ASCII without ':' or ',';
 *    names starting "Nats-", and "Loom-Key" and "Loom-Encoded" (any
 *    case) are the transport's and refused. A value libnats would alter (empty,
 * leading or trailing blanks, control characters) travels escaped and is
 * restored on delivery (LOOM_NATS_HEADER_ENCODED lists those names). NATS
 * headers have no order: they are delivered sorted by name, repeated names in
 *    their order.
 *  - NATS has no keys: the key (any bytes) travels in the header
 *    LOOM_NATS_HEADER_KEY. Nor partitions: publish takes
 *    LOOM_PARTITION_ANY or 0; delivery reports partition 0 and the stream
 *    sequence as the offset, JetStream's time as the timestamp and its
 *    delivery count as the attempt.
 *  - No delayed delivery (NATS 2.9 has none): a deliver_at in the future
 *    is refused (LOOM_EINVAL); one already due is published at once.
 *
 * Publishing: loom_transport_publish() checks and copies the messages
 * and returns; they go out in order from an I/O thread, max_pending
 * awaiting acknowledgement at once. Refused at once, nothing sent and no
 * callback, with the reason in loom_nats_errmsg(): LOOM_EINVAL (a bad
 * topic or header name, a partition, a future deliver_at), LOOM_ETOOBIG
 * (a message larger than the server's max_payload with its headers),
 * LOOM_EBUSY (the runtime is stopping), LOOM_ENOMEM. The callback gets
 * LOOM_OK once JetStream stored every message of the call; otherwise the
 * first failure and how many were stored: LOOM_ECONN (the connection was
 * lost or no acknowledgement came within publish_timeout_ms: the message
 * may or may not be stored, and publishing it again with its id is safe
 * within the duplicate window), LOOM_ETOOBIG or LOOM_EIO (JetStream
 * refused it; logged).
 *
 * Consuming: each (group, pattern) is a durable pull consumer with
 * explicit acknowledgements, named after the group and the subject
 * filter; members of a group share it, independent groups each get every
 * message, a new group starts at the stream's first message.
 * loom_consumer_open() creates them (blocking) and fails with
 * LOOM_EINVAL (a bad pattern or group name longer than 249 bytes),
 * LOOM_ECONN or LOOM_EIO (JetStream did not answer or refused; see
 * loom_nats_errmsg()), LOOM_EBUSY, LOOM_ENOMEM. loom_consumer_fail()
 * negatively acknowledges with a delay of backoff_ms * 2^(n-1) (at most
 * backoff_max_ms) for the n-th delivery; at max_deliveries the message is
 * published to "<prefix>.<topic>.dlq" with the headers x-error, x-group,
 * x-deliveries, x-topic, x-partition and x-offset (loom/topics.h names
 * them) and, once stored, terminated. A message arriving with more than
 * max_deliveries deliveries (never answered within ack_wait_ms) is
 * dead-lettered without the handler (nats-server before 2.10.14 can skip
 * or repeat a delivery count when a redelivery meets an expiring pull
 * request: such a message is dead-lettered a count late, or delivered
 * once more). A topic whose name leaves no room for ".dlq" (over 245
 * bytes) has no dead-letter topic: such a message comes back after
 * backoff_max_ms instead, with a warning. loom_consumer_ack() and
 * loom_consumer_fail() return LOOM_EINVAL for a message that is not one
 * the consumer's handler holds. Closing a consumer gives what it holds
 * back at once.
 *
 * Threads: libnats runs threads of its own; the transport adds one for
 * I/O and one per pattern of each consumer. Every callback of
 * loom/transport.h runs on the loop thread. Publishing, delivery and
 * acknowledgements never wait for the network on the loop; opening the
 * transport or a consumer does (JetStream requests), and closing them or
 * a runtime stop may, briefly. libnats reconnects by itself
 * (max_reconnect). A runtime stop waits for publishes in flight and stops
 * fetching; closing the transport stops its threads and fails what is
 * unanswered (LOOM_ECONN). The transport allocates on its threads too:
 * an allocator installed with loom_set_allocator() must be thread-safe.
 * libnats keeps process-wide state after its last connection is gone; a
 * program that wants it released calls nats_CloseAndWait() after closing
 * every NATS transport (and its own libnats objects).
 *
 * Do not call loom_transport_close() from a handler or a publish
 * callback of the same transport.
 */
#ifndef LOOM_NATS_H
#define LOOM_NATS_H

#include "loom/error.h"
#include "loom/export.h"
#include "loom/transport.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The transport's own NATS headers. */
#define LOOM_NATS_HEADER_ID      "Nats-Msg-Id"
#define LOOM_NATS_HEADER_KEY     "Loom-Key"
#define LOOM_NATS_HEADER_ENCODED "Loom-Encoded"

/*
 * Registers the "nats" scheme with loom_transport_register();
 * loom_transport_open() does this by itself. Returns LOOM_OK when it is
 * registered (also when it already was), LOOM_ENOTFOUND when this
 * library was built without NATS (LOOM_WITH_NATS=OFF). Thread-safe.
 */
LOOM_API loom_err loom_nats_register(void);

/*
 * Why the last call on `t` that failed with LOOM_EINVAL or LOOM_ETOOBIG
 * was refused (a publish or a consumer's patterns), or "" when none was.
 * Borrowed: valid until the next call on `t`. "" for NULL or for another
 * transport. Loop thread only.
 */
LOOM_API const char *loom_nats_errmsg(const loom_transport *t);

#ifdef __cplusplus
}
#endif

#endif /* LOOM_NATS_H */
