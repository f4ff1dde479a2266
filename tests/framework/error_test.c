/*
 * loom_strerror() and loom_err_name(). The expected names and messages are
 * generated from LOOM_ERR_MAP itself, so the test follows the list as it
 * grows and checks what every entry must satisfy, not a copy of it.
 */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "loom/error.h"

typedef struct err_entry {
    int value;
    const char *name;
    const char *msg;
} err_entry;

static const err_entry err_all[] = {
#define ERR_ENTRY(name, value, msg) {value, #name, msg},
    LOOM_ERR_MAP(ERR_ENTRY)
#undef ERR_ENTRY
};

#define ERR_COUNT (sizeof err_all / sizeof err_all[0])

/* The largest value in the list, so "unknown" values can be made past it. */
static int
err_max_value(void)
{
    int max = 0;

    for (size_t i = 0; i < ERR_COUNT; i++)
        if (err_all[i].value > max)
            max = err_all[i].value;
    return max;
}

static void
test_error_ok_is_zero(void **state)
{
    (void) state;
    assert_int_equal(LOOM_OK, 0);
    assert_string_equal(loom_err_name(LOOM_OK), "LOOM_OK");
    /* `if (rc)` must mean "failed": every other code is positive. */
    for (size_t i = 0; i < ERR_COUNT; i++)
        if (strcmp(err_all[i].name, "LOOM_OK") != 0)
            assert_true(err_all[i].value > 0);
}

static void
test_error_names_match_the_map(void **state)
{
    (void) state;
    for (size_t i = 0; i < ERR_COUNT; i++) {
        const char *name = loom_err_name((loom_err) err_all[i].value);
        assert_non_null(name);
        assert_string_equal(name, err_all[i].name);
        assert_int_equal(strncmp(name, "LOOM_", 5), 0);
    }
}

static void
test_error_names_and_values_are_distinct(void **state)
{
    (void) state;
    for (size_t i = 0; i < ERR_COUNT; i++)
        for (size_t j = i + 1; j < ERR_COUNT; j++) {
            assert_int_not_equal(err_all[i].value, err_all[j].value);
            assert_string_not_equal(loom_err_name((loom_err) err_all[i].value),
                                    loom_err_name((loom_err) err_all[j].value));
        }
}

static void
test_error_messages_are_non_empty_and_distinct(void **state)
{
    (void) state;
    for (size_t i = 0; i < ERR_COUNT; i++) {
        const char *msg = loom_strerror((loom_err) err_all[i].value);
        assert_non_null(msg);
        assert_true(msg[0] != '\0');
        assert_string_equal(msg, err_all[i].msg);
        /* A known code must never fall through to the fallback text. */
        assert_string_not_equal(msg, "unknown error");
        for (size_t j = i + 1; j < ERR_COUNT; j++)
            assert_string_not_equal(msg,
                                    loom_strerror((loom_err) err_all[j].value));
    }
}

static void
test_error_strings_are_literals(void **state)
{
    const char *first[ERR_COUNT];

    (void) state;
    /* Literals, not a static buffer: later calls must not change the text
     * earlier calls returned, and the same code gives the same pointer. */
    for (size_t i = 0; i < ERR_COUNT; i++)
        first[i] = loom_strerror((loom_err) err_all[i].value);
    for (size_t i = 0; i < ERR_COUNT; i++) {
        assert_string_equal(first[i], err_all[i].msg);
        assert_ptr_equal(first[i], loom_strerror((loom_err) err_all[i].value));
        assert_ptr_equal(loom_err_name((loom_err) err_all[i].value),
                         loom_err_name((loom_err) err_all[i].value));
    }
}

static void
test_error_unknown_values(void **state)
{
    const int unknown[] = {
        err_max_value() + 1, err_max_value() + 100, 1000, INT_MAX, -1, INT_MIN};

    (void) state;
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        /* Skip a value that happens to be in the list (only the large
         * ones could collide if the list grows a lot). */
        int listed = 0;
        for (size_t j = 0; j < ERR_COUNT; j++)
            listed |= err_all[j].value == unknown[i];
        if (listed)
            continue;
        assert_string_equal(loom_strerror((loom_err) unknown[i]),
                            "unknown error");
        assert_string_equal(loom_err_name((loom_err) unknown[i]),
                            "LOOM_UNKNOWN");
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_ok_is_zero),
        cmocka_unit_test(test_error_names_match_the_map),
        cmocka_unit_test(test_error_names_and_values_are_distinct),
        cmocka_unit_test(test_error_messages_are_non_empty_and_distinct),
        cmocka_unit_test(test_error_strings_are_literals),
        cmocka_unit_test(test_error_unknown_values),
    };

    return cmocka_run_group_tests_name("framework.error", tests, NULL, NULL);
}
