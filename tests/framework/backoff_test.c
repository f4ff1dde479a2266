/*
 * Capped exponential backoff with full jitter: every delay lies in
 * [0, min(max, min * 2^attempt)], the ceiling doubles then stays at the
 * cap, a reset starts again from min, and delays are spread out.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "runtime_int.h"

static void
test_backoff_delays_within_ceiling(void **state)
{
    loom__backoff b;

    (void) state;
    loom__backoff_init(&b, 100, 10000);
    for (int i = 0; i < 2000; i++) {
        uint64_t ceiling = loom__backoff_ceiling(&b);
        uint64_t d = loom__backoff_next(&b);
        assert_true(d <= ceiling);
        assert_true(ceiling <= 10000);
        if (i % 20 == 19)
            loom__backoff_reset(&b);
    }
}

static void
test_backoff_ceiling_doubles(void **state)
{
    loom__backoff b;
    uint64_t want = 100;

    (void) state;
    loom__backoff_init(&b, 100, 1000000);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(loom__backoff_ceiling(&b), want);
        loom__backoff_next(&b);
        want *= 2;
    }
}

static void
test_backoff_ceiling_capped(void **state)
{
    loom__backoff b;

    (void) state;
    loom__backoff_init(&b, 100, 10000);
    for (int i = 0; i < 200; i++)
        loom__backoff_next(&b);
    assert_int_equal(loom__backoff_ceiling(&b), 10000);
    /* A huge minimum never overflows past the cap. */
    loom__backoff_init(&b, UINT64_MAX / 3, UINT64_MAX / 2);
    for (int i = 0; i < 70; i++) {
        assert_true(loom__backoff_ceiling(&b) <= UINT64_MAX / 2);
        assert_true(loom__backoff_next(&b) <= UINT64_MAX / 2);
    }
    /* max below min is raised to min. */
    loom__backoff_init(&b, 500, 10);
    assert_int_equal(loom__backoff_ceiling(&b), 500);
}

static void
test_backoff_reset_starts_over(void **state)
{
    loom__backoff b;

    (void) state;
    loom__backoff_init(&b, 100, 10000);
    for (int i = 0; i < 5; i++)
        loom__backoff_next(&b);
    assert_int_equal(loom__backoff_ceiling(&b), 3200);
    loom__backoff_reset(&b);
    assert_int_equal(loom__backoff_ceiling(&b), 100);
    assert_true(loom__backoff_next(&b) <= 100);
    assert_int_equal(loom__backoff_ceiling(&b), 200);
}

static void
test_backoff_zero_min_is_zero(void **state)
{
    loom__backoff b;

    (void) state;
    loom__backoff_init(&b, 0, 0);
    for (int i = 0; i < 10; i++)
        assert_int_equal(loom__backoff_next(&b), 0);
}

static void
test_backoff_jitter_is_spread(void **state)
{
    enum { N = 4000 };
    static uint64_t seen[N];
    loom__backoff b;
    uint64_t sum = 0, lo = UINT64_MAX, hi = 0;
    int distinct = 0;

    (void) state;
    loom__backoff_init(&b, 1000, 1000);
    for (int i = 0; i < N; i++) {
        uint64_t d = loom__backoff_next(&b);
        int dup = 0;
        for (int j = 0; j < distinct && !dup; j++)
            dup = seen[j] == d;
        if (!dup)
            seen[distinct++] = d;
        sum += d;
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
    }
    /* Uniform on [0, 1000]: mean ~500, nearly every value seen. */
    assert_true(sum / N > 450 && sum / N < 550);
    assert_true(distinct > 900);
    assert_true(lo < 20 && hi > 980);
}

static void
test_backoff_seed_is_deterministic_and_varies(void **state)
{
    loom__backoff a, b, c;
    int same = 1, differ = 0;

    (void) state;
    loom__backoff_init(&a, 1, 1u << 30);
    loom__backoff_init(&b, 1, 1u << 30);
    loom__backoff_init(&c, 1, 1u << 30);
    loom__backoff_seed(&a, 42);
    loom__backoff_seed(&b, 42);
    for (int i = 0; i < 40; i++) {
        uint64_t x = loom__backoff_next(&a);
        same &= x == loom__backoff_next(&b);
        differ |= x != loom__backoff_next(&c); /* c has a random seed */
    }
    assert_true(same);
    assert_true(differ);
    loom__backoff_seed(&a, 0); /* replaced: xorshift must not stick at 0 */
    loom__backoff_reset(&a);
    for (int i = 0; i < 30; i++)
        loom__backoff_next(&a);
    assert_true(a.rng != 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff_delays_within_ceiling),
        cmocka_unit_test(test_backoff_ceiling_doubles),
        cmocka_unit_test(test_backoff_ceiling_capped),
        cmocka_unit_test(test_backoff_reset_starts_over),
        cmocka_unit_test(test_backoff_zero_min_is_zero),
        cmocka_unit_test(test_backoff_jitter_is_spread),
        cmocka_unit_test(test_backoff_seed_is_deterministic_and_varies),
    };

    return cmocka_run_group_tests_name("framework.backoff", tests, NULL, NULL);
}
