/*
 * Topic patterns match as RabbitMQ's topic exchange matches routing keys:
 * "*" is exactly one word, "#" zero or more, words split on '.'.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include <cmocka.h>

#include "loom/transport.h"

typedef struct tm_case {
    const char *pattern;
    const char *topic;
    int want;
} tm_case;

static const tm_case cases[] = {
    {"orders.*.eu", "orders.created.eu", 1},
    {"orders.*.eu", "orders.created.us", 0},
    {"orders.*.eu", "orders.eu", 0},
    {"orders.*.eu", "orders.a.b.eu", 0},
    {"orders.#", "orders", 1},
    {"orders.#", "orders.a", 1},
    {"orders.#", "orders.a.b", 1},
    {"orders.#", "order", 0},
    {"orders.#", "ordersx.a", 0},
    {"#", "", 1},
    {"#", "anything.at.all", 1},
    {"*", "a", 1},
    {"*", "a.b", 0},
    {"#.eu", "eu", 1},
    {"#.eu", "a.eu", 1},
    {"#.eu", "a.b.eu", 1},
    {"#.eu", "a.eu.x", 0},
    {"a.#.z", "a.z", 1},
    {"a.#.z", "a.b.z", 1},
    {"a.#.z", "a.b.c.z", 1},
    {"a.#.z", "a.b.c", 0},
    {"a.b", "a.b", 1},
    {"a.b", "a.bc", 0},
    {"a.b", "a.b.c", 0},
    {"a.b.c", "a.b", 0},
    {"*.*", "a.b", 1},
    {"*.*", "a", 0},
    {"#.#", "a", 1},
    {"#.*", "a.b.c", 1},
    {"#.*", "", 1},
};

static void
test_patterns_match_like_rabbitmq_topic_exchanges(void **state)
{
    (void) state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int got = loom_topic_matches(cases[i].pattern, cases[i].topic);
        if (got != cases[i].want)
            fail_msg("\"%s\" vs \"%s\": got %d, want %d", cases[i].pattern,
                     cases[i].topic, got, cases[i].want);
    }
}

static void
test_null_matches_nothing(void **state)
{
    (void) state;
    assert_int_equal(loom_topic_matches(NULL, "a"), 0);
    assert_int_equal(loom_topic_matches("#", NULL), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_patterns_match_like_rabbitmq_topic_exchanges),
        cmocka_unit_test(test_null_matches_nothing),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
