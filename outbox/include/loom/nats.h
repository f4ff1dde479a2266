/*
 * The NATS JetStream transport: "nats://" URLs (loom/transport.h) served
 * by a NATS server 2.9 or later with JetStream enabled, through libnats.
 * Built when CMake's LOOM_WITH_NATS is ON (the default).
 *
 * The URL: "nats://host:port[,host:port...][?options]". Every host is a
 * server of one cluster (libnats picks and fails over among them);
 * "user:password@" before a host is passed on to libnats. "nats://"
 * alone means 127.0.0.1:4222. Options:
 *   stream=NAME            the JetStream stream; LOOM. Created when
 *                          missing (file storage, subjects "<prefix>.>",
 *                          dedup_window_ms); an existing one is used as
 *                          it is and must capture "<prefix>.>"
 *   prefix=WORDS           subject prefix: topic "orders.created" is the
 *                          subject "<prefix>.orders.created"; loom
 *   dedup_window_ms=N      the new stream's duplicate window (messages
 *                          with a Nats-Msg-Id seen within it are stored
 *                          once); 120000
 *   ack_wait_ms=N          a delivered message not acknowledged or
 *                          failed within this is delivered again; 30000
 *   publish_timeout_ms=N   a publish not acknowledged by JetStream
 *                          within this fails (LOOM_ECONN); 10000
 *   connect_timeout_ms=N   connecting, and each JetStream set-up request
 *                          (stream, consumers); 5000
 *   reconnect_wait_ms=N    between reconnection attempts; 500
 *   max_reconnect=N        attempts after a lost connection before the
 *                          transport gives up; -1 (forever, the default)
 *   max_pending=N          publishes awaiting JetStream's
 *                          acknowledgement; more wait in the transport;
 *                          4096
 *   backoff_ms=N           first redelivery delay of a failed message;
 *                          1000 (then doubling)
 *   backoff_max_ms=N       the longest redelivery delay; 60000
 *   fetch_wait_ms=N        how long one pull request waits on the
 *                          server for messages; 5000
 *
 * Mapping (see docs/messaging.md, "NATS JetStream"):
 *  - Topics are subjects under the prefix. Topic names are words of
 *    ASCII letters, digits, '_' and '-' separated by dots, as for
 *    topics://. Patterns: "*" is one word, as in NATS; "#" may only be
 *    the last word: "orders.#" consumes "orders" and "orders.>" (two
 *    JetStream consumers); "#" elsewhere is refused (LOOM_EINVAL), since
 *    NATS has no multi-word wildcard but a trailing ">". A pattern with
 *    a wildcard never delivers a dead-letter topic ("<topic>.dlq").
 *  - The message id is the Nats-Msg-Id header (canonical UUID text), so
 *    JetStream stores a message published again within the stream's
 *    duplicate window once. Headers are NATS headers: names of printable
 *    ASCII without ':' or ','; names starting "Nats-" or "Loom-" are the
 *    transport's own and refused. A value NATS would alter (empty, with
 *    leading or trailing blanks or control characters) is sent escaped
 *    and restored on delivery (header Loom-Encoded lists them). NATS
 *    headers have no order: they are delivered sorted by name (repeated
 *    names in their order).
 *  - NATS has no keys: the key travels in the header Loom-Key. It has no
 *    partitions either: publish takes LOOM_PARTITION_ANY or 0, delivery
 *    reports partition 0 and the stream sequence as the offset.
 *  - No delayed delivery (NATS 2.9 has none): a deliver_at in the future
 *    is refused with LOOM_EINVAL.
 *  - A message larger than the server's max_payload (headers included)
 *    is refused with LOOM_ETOOBIG.
 *  - Each (group, pattern) is one durable pull consumer named after the
 *    group and the subject filter. Members of a group share it;
 *    independent groups each get every message. A failed message is
 *    negatively acknowledged with a delay (backoff_ms * 2^(n-1), at most
 *    backoff_max_ms) and, after max_deliveries, published to
 *    "<prefix>.<topic>.dlq" with the headers x-error, x-group,
 *    x-deliveries, x-topic, x-partition and x-offset, then terminated.
 *
 * Threads: libnats runs its own threads, and the transport one to
 * publish and acknowledge and one per pattern of each consumer to fetch;
 * every callback of loom/transport.h still runs on the loop thread.
 * libnats reconnects by itself (forever, by default); a publish whose
 * acknowledgement does not come back in publish_timeout_ms fails with
 * LOOM_ECONN and may be published again (its id deduplicates it).
 *
 * Do not call loom_transport_close() from a handler or publish callback
 * of the same transport.
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
