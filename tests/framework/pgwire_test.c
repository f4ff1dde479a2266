/*
 * PostgreSQL binary wire helpers (framework/pgwire.h): big-endian words,
 * and timestamps moved between PostgreSQL's epoch (2000) and Unix's,
 * which saturate at the int64 ends (PostgreSQL's +-infinity) instead of
 * wrapping around: the database and operators may hand in any value.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "pgwire.h"

static void
be64_round_trips(void **state)
{
    char b[8];

    (void) state;
    loom__pg_put_be64(b, UINT64_C(0x0102030405060708));
    assert_int_equal((unsigned char) b[0], 1);
    assert_int_equal((unsigned char) b[7], 8);
    assert_true(loom__pg_be64(b) == UINT64_C(0x0102030405060708));
}

static void
times_convert_between_the_epochs(void **state)
{
    (void) state;
    assert_true(loom__pg_time_to_unix(0) == LOOM__PG_EPOCH_US);
    assert_true(loom__pg_time_from_unix(LOOM__PG_EPOCH_US) == 0);
    assert_true(loom__pg_time_from_unix(0) == -LOOM__PG_EPOCH_US);
    assert_true(loom__pg_time_to_unix(loom__pg_time_from_unix(123456789)) ==
                123456789);
}

static void
times_saturate_at_infinity(void **state)
{
    (void) state;
    /* 'infinity' and '-infinity' as PostgreSQL sends them */
    assert_true(loom__pg_time_to_unix(INT64_MAX) == INT64_MAX);
    assert_true(loom__pg_time_to_unix(INT64_MAX - LOOM__PG_EPOCH_US + 1) ==
                INT64_MAX);
    assert_true(loom__pg_time_to_unix(INT64_MIN) ==
                INT64_MIN + LOOM__PG_EPOCH_US);
    /* an operator's time far in the past */
    assert_true(loom__pg_time_from_unix(INT64_MIN) == INT64_MIN);
    assert_true(loom__pg_time_from_unix(INT64_MIN + LOOM__PG_EPOCH_US - 1) ==
                INT64_MIN);
    assert_true(loom__pg_time_from_unix(INT64_MAX) ==
                INT64_MAX - LOOM__PG_EPOCH_US);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(be64_round_trips),
        cmocka_unit_test(times_convert_between_the_epochs),
        cmocka_unit_test(times_saturate_at_infinity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
