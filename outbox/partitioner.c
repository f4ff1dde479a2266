/*
 * Kafka-compatible key partitioning (loom/partitioner.h). murmur2 is
 * MurmurHash2 by Austin Appleby with the seed and the little-endian
 * reading of 4-byte blocks that Kafka's Java client uses; all arithmetic
 * is on uint32_t, where Java's int wraps the same way.
 */
#include "loom/partitioner.h"

#define MURMUR2_SEED 0x9747b28cu
#define MURMUR2_M    0x5bd1e995u
#define MURMUR2_R    24

int32_t
loom_murmur2(const void *key, size_t len)
{
    const unsigned char *p = key;
    uint32_t h = MURMUR2_SEED ^ (uint32_t) len;
    size_t blocks = len / 4;

    for (size_t i = 0; i < blocks; i++, p += 4) {
        uint32_t k = (uint32_t) p[0] | (uint32_t) p[1] << 8 |
                     (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
        k *= MURMUR2_M;
        k ^= k >> MURMUR2_R;
        k *= MURMUR2_M;
        h *= MURMUR2_M;
        h ^= k;
    }
    switch (len % 4) { /* the tail, highest byte first, as Java does */
    case 3:
        h ^= (uint32_t) p[2] << 16;
        /* fall through */
    case 2:
        h ^= (uint32_t) p[1] << 8;
        /* fall through */
    case 1:
        h ^= (uint32_t) p[0];
        h *= MURMUR2_M;
        break;
    default:
        break;
    }
    h ^= h >> 13;
    h *= MURMUR2_M;
    h ^= h >> 15;
    return (int32_t) h;
}

loom_err
loom_partition_for_key(const void *key, size_t len, int32_t n, int32_t *out)
{
    if (out == NULL || n < 1 || n > LOOM_MAX_PARTITIONS ||
        (key == NULL && len > 0))
        return LOOM_EINVAL;
    *out = (int32_t) (((uint32_t) loom_murmur2(key, len) & 0x7fffffffu) %
                      (uint32_t) n);
    return LOOM_OK;
}
