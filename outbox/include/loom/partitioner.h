/*
 * Partitioning messages by key, compatible with Apache Kafka: a key maps
 * to the partition number Kafka's default partitioner gives it (murmur2
 * of the key bytes with Kafka's seed, made positive by masking the sign
 * bit, modulo the partition count), so a topic migrated between Kafka and
 * Eventloom keeps each key's messages in the same partition, in order.
 *
 * Messages without a key are spread round-robin, sticky per batch (one
 * partition for a whole published batch, the next one for the next), as
 * Kafka's sticky partitioner does; a custom partitioner can replace both.
 */
#ifndef LOOM_PARTITIONER_H
#define LOOM_PARTITIONER_H

#include <stddef.h>
#include <stdint.h>

#include "loom/error.h"
#include "loom/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The most partitions a topic may have. */
#define LOOM_MAX_PARTITIONS 4096

/*
 * Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2) of `len`
 * bytes at `key`, as the signed 32-bit value Java returns. `key` may be
 * NULL only when len is 0.
 */
LOOM_API int32_t loom_murmur2(const void *key, size_t len);

/*
 * The partition, in [0, n), that Kafka's default partitioner assigns to a
 * message with this key: (murmur2(key) & 0x7fffffff) % n.
 * Errors: LOOM_EINVAL (out NULL, n outside 1..LOOM_MAX_PARTITIONS, or key
 * NULL with len > 0).
 */
LOOM_API loom_err loom_partition_for_key(const void *key, size_t len, int32_t n,
                                         int32_t *out);

/*
 * A custom partitioner: returns the partition in [0, n) for a message of
 * `topic` with this key (key NULL and len 0 when it has none), or a
 * negative value to refuse the message (the publish fails with
 * LOOM_EINVAL). Called on the publishing thread.
 */
typedef int32_t (*loom_partitioner_fn)(const char *topic, const void *key,
                                       size_t len, int32_t n, void *arg);

#ifdef __cplusplus
}
#endif

#endif /* LOOM_PARTITIONER_H */
