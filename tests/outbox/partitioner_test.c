/*
 * The key partitioner agrees with Apache Kafka's. The expected hashes are
 * the reference values of Kafka's own test of its murmur2
 * (UtilsTest.testMurmur2, signed as Java returns them); the expected
 * partitions are derived from those constants here, by Kafka's formula,
 * not by the code under test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "loom/partitioner.h"

typedef struct vector {
    const char *key;
    int32_t hash;
} vector;

static const vector kafka_vectors[] = {
    {"21", -973932308},
    {"foobar", -790332482},
    {"a-little-bit-long-string", -985981536},
    {"a-little-bit-longer-string", -1486304829},
    {"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
    {"abc", 479470107},
    {"", 275646681},
};

#define N_VECTORS (sizeof kafka_vectors / sizeof kafka_vectors[0])

static void
test_murmur2_matches_kafkas_reference_values(void **state)
{
    (void) state;
    for (size_t i = 0; i < N_VECTORS; i++)
        assert_int_equal(
            loom_murmur2(kafka_vectors[i].key, strlen(kafka_vectors[i].key)),
            kafka_vectors[i].hash);
}

static void
test_partition_is_kafkas_positive_hash_modulo_the_count(void **state)
{
    static const int32_t counts[] = {1, 2, 3, 8, 12, 50, 97, 4096};

    (void) state;
    for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
        for (size_t i = 0; i < N_VECTORS; i++) {
            int32_t got = -1;
            int32_t want =
                (int32_t) (((uint32_t) kafka_vectors[i].hash & 0x7fffffffu) %
                           (uint32_t) counts[c]);
            assert_int_equal(loom_partition_for_key(
                                 kafka_vectors[i].key,
                                 strlen(kafka_vectors[i].key), counts[c], &got),
                             LOOM_OK);
            assert_int_equal(got, want);
        }
    }
    /* A value quoted by other Kafka-compatible clients. */
    {
        int32_t got = -1;
        assert_int_equal(loom_partition_for_key("foobar", 6, 50, &got),
                         LOOM_OK);
        assert_int_equal(got, 16);
    }
}

static void
test_binary_keys_hash_every_byte(void **state)
{
    const unsigned char a[] = {0x00, 0xff, 0x80, 0x7f, 0x01};
    const unsigned char b[] = {0x00, 0xff, 0x80, 0x7f, 0x02};

    (void) state;
    /* A NUL inside the key counts, and the tail byte changes the hash. */
    assert_true(loom_murmur2(a, sizeof a) != loom_murmur2(b, sizeof b));
    assert_true(loom_murmur2(a, 1) != loom_murmur2(a, 2));
}

static void
test_partition_rejects_bad_arguments(void **state)
{
    int32_t out = 7;

    (void) state;
    assert_int_equal(loom_partition_for_key("k", 1, 0, &out), LOOM_EINVAL);
    assert_int_equal(loom_partition_for_key("k", 1, -3, &out), LOOM_EINVAL);
    assert_int_equal(
        loom_partition_for_key("k", 1, LOOM_MAX_PARTITIONS + 1, &out),
        LOOM_EINVAL);
    assert_int_equal(loom_partition_for_key(NULL, 1, 4, &out), LOOM_EINVAL);
    assert_int_equal(loom_partition_for_key("k", 1, 4, NULL), LOOM_EINVAL);
    assert_int_equal(out, 7); /* untouched on error */
    /* An empty key is a key (Kafka hashes it too). */
    assert_int_equal(loom_partition_for_key(NULL, 0, 4, &out), LOOM_OK);
    assert_int_equal(out, (int32_t) ((275646681u & 0x7fffffffu) % 4u));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_murmur2_matches_kafkas_reference_values),
        cmocka_unit_test(
            test_partition_is_kafkas_positive_hash_modulo_the_count),
        cmocka_unit_test(test_binary_keys_hash_every_byte),
        cmocka_unit_test(test_partition_rejects_bad_arguments),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
