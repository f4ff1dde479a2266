/*
 * UUIDs: version 7 layout (RFC 9562), the time prefix, text round trips,
 * strict parsing, nil detection and uniqueness, also across threads.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "loom/uuid.h"

/* A fixed UUID and its canonical text, for format and parse. */
static const loom_uuid uuid_known = {{0x01, 0x89, 0xf7, 0xe4, 0x3b, 0x2a, 0x7c,
                                      0x3d, 0x8e, 0x4f, 0x01, 0x23, 0x45, 0x67,
                                      0x89, 0xab}};
static const char uuid_known_text[] = "0189f7e4-3b2a-7c3d-8e4f-0123456789ab";

static uint64_t
uuid_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t) ts.tv_sec * 1000u + (uint64_t) ts.tv_nsec / 1000000u;
}

/* The 48-bit big-endian millisecond prefix of a v7 UUID. */
static uint64_t
uuid_ms(const loom_uuid *u)
{
    uint64_t ms = 0;

    for (int i = 0; i < 6; i++)
        ms = ms << 8 | u->bytes[i];
    return ms;
}

static int
uuid_cmp(const void *a, const void *b)
{
    return memcmp(a, b, sizeof(loom_uuid));
}

/* Sorts `n` UUIDs and fails on the first pair of equal ones. */
static void
uuid_assert_unique(loom_uuid *u, size_t n)
{
    qsort(u, n, sizeof *u, uuid_cmp);
    for (size_t i = 1; i < n; i++)
        if (memcmp(&u[i - 1], &u[i], sizeof *u) == 0)
            fail_msg("duplicate UUID at sorted index %zu of %zu", i, n);
}

/* Parses `text` from an exact-size heap copy, so a parser that reads past
 * the terminating NUL is caught by AddressSanitizer. */
static loom_err
uuid_parse_copy(loom_uuid *u, const char *text)
{
    size_t n = strlen(text) + 1;
    char *copy = malloc(n);
    loom_err rc;

    assert_non_null(copy);
    memcpy(copy, text, n);
    rc = loom_uuid_parse(u, copy);
    free(copy);
    return rc;
}

static void
test_uuid_v7_layout(void **state)
{
    (void) state;
    for (int i = 0; i < 1000; i++) {
        loom_uuid u;
        memset(&u, 0, sizeof u);
        assert_int_equal(loom_uuid_generate(&u), LOOM_OK);
        assert_int_equal(u.bytes[6] >> 4, 7);      /* version */
        assert_int_equal(u.bytes[8] & 0xc0, 0x80); /* variant 10xx */
        assert_false(loom_uuid_is_nil(&u));
    }
}

static void
test_uuid_generate_null_is_einval(void **state)
{
    (void) state;
    assert_int_equal(loom_uuid_generate(NULL), LOOM_EINVAL);
}

static void
test_uuid_time_prefix_is_now(void **state)
{
    loom_uuid u;
    uint64_t before, after;

    (void) state;
    before = uuid_now_ms();
    assert_int_equal(loom_uuid_generate(&u), LOOM_OK);
    after = uuid_now_ms();
    assert_true(uuid_ms(&u) >= before);
    assert_true(uuid_ms(&u) <= after);
}

static void
test_uuid_time_prefix_is_monotonic(void **state)
{
    enum { N = 20000 };
    loom_uuid prev, cur;
    struct timespec pause = {0, 3 * 1000 * 1000};

    (void) state;
    assert_int_equal(loom_uuid_generate(&prev), LOOM_OK);
    for (int i = 0; i < N; i++) {
        assert_int_equal(loom_uuid_generate(&cur), LOOM_OK);
        /* Milliseconds never go back (barring a clock step). */
        assert_true(uuid_ms(&cur) >= uuid_ms(&prev));
        prev = cur;
    }
    /* Across a millisecond boundary the ids sort by creation time. */
    nanosleep(&pause, NULL);
    assert_int_equal(loom_uuid_generate(&cur), LOOM_OK);
    assert_true(uuid_ms(&cur) > uuid_ms(&prev));
    assert_true(memcmp(&cur, &prev, sizeof cur) > 0);
}

static void
test_uuid_format_known_value(void **state)
{
    char text[LOOM_UUID_STRLEN];

    (void) state;
    memset(text, 'x', sizeof text);
    loom_uuid_format(&uuid_known, text);
    assert_string_equal(text, uuid_known_text);
    assert_int_equal(strlen(text), LOOM_UUID_STRLEN - 1);
}

static void
test_uuid_format_parse_round_trip(void **state)
{
    (void) state;
    for (int i = 0; i < 1000; i++) {
        loom_uuid u, back;
        char text[LOOM_UUID_STRLEN];
        assert_int_equal(loom_uuid_generate(&u), LOOM_OK);
        loom_uuid_format(&u, text);
        assert_int_equal(strlen(text), 36);
        for (int k = 0; k < 36; k++) {
            if (k == 8 || k == 13 || k == 18 || k == 23)
                assert_int_equal(text[k], '-');
            else
                assert_non_null(strchr("0123456789abcdef", text[k]));
        }
        memset(&back, 0, sizeof back);
        assert_int_equal(uuid_parse_copy(&back, text), LOOM_OK);
        assert_memory_equal(&u, &back, sizeof u);
    }
}

static void
test_uuid_parse_accepts_either_case(void **state)
{
    loom_uuid u;

    (void) state;
    assert_int_equal(uuid_parse_copy(&u, uuid_known_text), LOOM_OK);
    assert_memory_equal(&u, &uuid_known, sizeof u);
    memset(&u, 0, sizeof u);
    assert_int_equal(
        uuid_parse_copy(&u, "0189F7E4-3B2A-7C3D-8E4F-0123456789AB"), LOOM_OK);
    assert_memory_equal(&u, &uuid_known, sizeof u);
    memset(&u, 0, sizeof u);
    assert_int_equal(
        uuid_parse_copy(&u, "0189f7E4-3b2A-7c3D-8E4f-0123456789aB"), LOOM_OK);
    assert_memory_equal(&u, &uuid_known, sizeof u);
}

static void
test_uuid_parse_rejects_bad_input(void **state)
{
    static const char *const bad[] = {
        "",
        "0",
        "0189f7e4-3b2a-7c3d-8e4f-0123456789a",        /* 35: too short */
        "0189f7e4-3b2a-7c3d-8e4f-0123456789abc",      /* 37: trailing junk */
        "0189f7e4-3b2a-7c3d-8e4f-0123456789ab ",      /* trailing space */
        "0189f7e4-3b2a-7c3d-8e4f-0123456789ab\n",     /* trailing newline */
        " 0189f7e4-3b2a-7c3d-8e4f-0123456789ab",      /* leading space */
        "0189f7e43b2a7c3d8e4f0123456789ab",           /* no hyphens */
        "0189f7e43b2a-7c3d-8e4f-0123456789ab",        /* one missing */
        "0189f7e4-3b2a7c3d-8e4f-0123456789ab00",      /* hyphen replaced */
        "0189f7e-43b2a-7c3d-8e4f-0123456789ab",       /* hyphen moved */
        "0189f7e4_3b2a_7c3d_8e4f_0123456789ab",       /* wrong separator */
        "{0189f7e4-3b2a-7c3d-8e4f-0123456789ab}",     /* braces */
        "g189f7e4-3b2a-7c3d-8e4f-0123456789ab",       /* bad hex, first */
        "0189f7e4-3b2a-7c3d-8e4f-0123456789aG",       /* bad hex, last */
        "0189f7e4-3b2a-7c3d-8e4f-01234567 9ab",       /* space inside */
        "0189f7e4-3b2a-7c3d-8e4f--123456789ab",       /* hyphen as a digit */
        "0189f7e4-+b2a-7c3d-8e4f-0123456789ab",       /* sign as a digit */
        "0189f7e4-3b2a-7c3d-8e4f-0123456789\xc3\xa9", /* non-ASCII */
        "urn:uuid:0189f7e4-3b2a-7c3d-8e4f-0123456789ab",
    };

    (void) state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        loom_uuid u;
        loom_uuid sentinel;
        memset(&u, 0xaa, sizeof u);
        memset(&sentinel, 0xaa, sizeof sentinel);
        if (uuid_parse_copy(&u, bad[i]) != LOOM_EINVAL)
            fail_msg("loom_uuid_parse accepted \"%s\"", bad[i]);
        /* A refused parse leaves the output alone. */
        assert_memory_equal(&u, &sentinel, sizeof u);
    }
}

static void
test_uuid_parse_null_is_einval(void **state)
{
    loom_uuid u;

    (void) state;
    assert_int_equal(loom_uuid_parse(NULL, uuid_known_text), LOOM_EINVAL);
    assert_int_equal(loom_uuid_parse(&u, NULL), LOOM_EINVAL);
}

static void
test_uuid_nil_detection(void **state)
{
    loom_uuid u;

    (void) state;
    memset(&u, 0, sizeof u);
    assert_true(loom_uuid_is_nil(&u));
    assert_int_equal(
        uuid_parse_copy(&u, "00000000-0000-0000-0000-000000000000"), LOOM_OK);
    assert_true(loom_uuid_is_nil(&u));
    /* One set bit anywhere makes it not nil. */
    for (int i = 0; i < 16; i++) {
        memset(&u, 0, sizeof u);
        u.bytes[i] = 0x01;
        assert_false(loom_uuid_is_nil(&u));
        u.bytes[i] = 0x80;
        assert_false(loom_uuid_is_nil(&u));
    }
    assert_false(loom_uuid_is_nil(&uuid_known));
}

static void
test_uuid_many_are_unique(void **state)
{
    enum { N = 200000 };
    loom_uuid *u = malloc(N * sizeof *u);

    (void) state;
    assert_non_null(u);
    for (size_t i = 0; i < N; i++)
        assert_int_equal(loom_uuid_generate(&u[i]), LOOM_OK);
    uuid_assert_unique(u, N);
    free(u);
}

enum { UUID_THREADS = 4, UUID_PER_THREAD = 50000 };

typedef struct uuid_worker {
    pthread_t thread;
    loom_uuid *out;
    int failures;
} uuid_worker;

static void *
uuid_worker_main(void *arg)
{
    uuid_worker *w = arg;

    for (size_t i = 0; i < UUID_PER_THREAD; i++)
        if (loom_uuid_generate(&w->out[i]) != LOOM_OK)
            w->failures++;
    return NULL;
}

static void
test_uuid_threads_generate_unique(void **state)
{
    uuid_worker w[UUID_THREADS];
    loom_uuid *all = malloc(UUID_THREADS * UUID_PER_THREAD * sizeof *all);

    (void) state;
    assert_non_null(all);
    /* Threads generate in the same milliseconds, so only the random bits
     * keep them apart: a shared, unsynchronised generator state would
     * show up as duplicates here. */
    for (int t = 0; t < UUID_THREADS; t++) {
        w[t].out = all + (size_t) t * UUID_PER_THREAD;
        w[t].failures = 0;
        assert_int_equal(
            pthread_create(&w[t].thread, NULL, uuid_worker_main, &w[t]), 0);
    }
    for (int t = 0; t < UUID_THREADS; t++) {
        pthread_join(w[t].thread, NULL);
        assert_int_equal(w[t].failures, 0);
    }
    uuid_assert_unique(all, UUID_THREADS * UUID_PER_THREAD);
    free(all);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uuid_v7_layout),
        cmocka_unit_test(test_uuid_generate_null_is_einval),
        cmocka_unit_test(test_uuid_time_prefix_is_now),
        cmocka_unit_test(test_uuid_time_prefix_is_monotonic),
        cmocka_unit_test(test_uuid_format_known_value),
        cmocka_unit_test(test_uuid_format_parse_round_trip),
        cmocka_unit_test(test_uuid_parse_accepts_either_case),
        cmocka_unit_test(test_uuid_parse_rejects_bad_input),
        cmocka_unit_test(test_uuid_parse_null_is_einval),
        cmocka_unit_test(test_uuid_nil_detection),
        cmocka_unit_test(test_uuid_many_are_unique),
        cmocka_unit_test(test_uuid_threads_generate_unique),
    };

    return cmocka_run_group_tests_name("framework.uuid", tests, NULL, NULL);
}
