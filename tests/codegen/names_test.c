/*
 * C names of protobuf names as protoc-c 1.4.1 makes them (the generated
 * code calls protoc-c's functions by these names), topic names, and C
 * string literals.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gen.h"
#include "names.h"

static int
setup(void **state)
{
    *state = gen_pool_new();
    return 0;
}

static int
teardown(void **state)
{
    gen_pool_free(*state);
    return 0;
}

static void
test_names_camel_to_lower_follows_protoc_c(void **state)
{
    gen_pool *p = *state;
    assert_string_equal(gen_camel_to_lower(p, "ReserveInventory"),
                        "reserve_inventory");
    assert_string_equal(gen_camel_to_lower(p, "reserveInventory"),
                        "reserve_inventory");
    /* A run of capitals stays together; digits and '_' are kept. */
    assert_string_equal(gen_camel_to_lower(p, "SKUListChanged"),
                        "skulist_changed");
    assert_string_equal(gen_camel_to_lower(p, "HTTPCall"), "httpcall");
    assert_string_equal(gen_camel_to_lower(p, "OrderV2Placed"),
                        "order_v2_placed");
    assert_string_equal(gen_camel_to_lower(p, "Reserve_stock"),
                        "reserve_stock");
    assert_string_equal(gen_camel_to_lower(p, "Reserve_Stock"),
                        "reserve__stock");
    assert_string_equal(gen_camel_to_lower(p, ""), "");
}

static void
test_names_full_names_follow_protoc_c(void **state)
{
    gen_pool *p = *state;
    assert_string_equal(gen_full_to_lower(p, "shop.CreateOrder", "shop", NULL),
                        "shop__create_order");
    assert_string_equal(gen_full_to_c(p, "shop.OrderData", "shop", NULL),
                        "Shop__OrderData");
    assert_string_equal(
        gen_full_to_c(p, "my_shop.v1.Outer.Inner", "my_shop.v1", NULL),
        "MyShop__V1__Outer__Inner");
    assert_string_equal(
        gen_full_to_lower(p, "my_shop.v1.Outer.Inner", "my_shop.v1", NULL),
        "my_shop__v1__outer__inner");
    /* No package. */
    assert_string_equal(gen_full_to_c(p, "Thing", "", NULL), "Thing");
    /* (pb_c_file).c_package replaces the package prefix. */
    assert_string_equal(gen_full_to_lower(p, "shop.catalog.SKUListChanged",
                                          "shop.catalog", "store"),
                        "store__skulist_changed");
    assert_string_equal(
        gen_full_to_c(p, "shop.catalog.Price", "shop.catalog", "store.v2"),
        "Store__V2__Price");
    assert_string_equal(gen_full_to_c(p, "Thing", "", "store"), "Store__Thing");
    /* The package itself (the prefix of participant names). */
    assert_string_equal(
        gen_full_to_lower(p, "shop.catalog", "shop.catalog", NULL),
        "shop__catalog");
    assert_string_equal(gen_full_to_lower(p, "", "", NULL), "");
}

static void
test_names_topics(void **state)
{
    gen_pool *p = *state;
    assert_string_equal(gen_topic_to_c(p, "payments.charges-v2"),
                        "payments_charges_v2");
    assert_true(gen_topic_ok("inventory"));
    assert_true(gen_topic_ok("shop.CreateOrder.replies"));
    assert_true(gen_topic_ok("a-b_c.d9"));
    assert_false(gen_topic_ok(""));
    assert_false(gen_topic_ok(".a"));
    assert_false(gen_topic_ok("a."));
    assert_false(gen_topic_ok("a..b"));
    assert_false(gen_topic_ok("a b"));
    assert_false(gen_topic_ok("a/b"));
    assert_false(gen_topic_ok("caf\xc3\xa9"));
    char long_topic[GEN_MAX_TOPIC + 2];
    memset(long_topic, 'a', sizeof long_topic - 1);
    long_topic[GEN_MAX_TOPIC] = '\0';
    assert_true(gen_topic_ok(long_topic));
    long_topic[GEN_MAX_TOPIC] = 'a';
    long_topic[GEN_MAX_TOPIC + 1] = '\0';
    assert_false(gen_topic_ok(long_topic));
}

static void
test_names_identifiers_and_text(void **state)
{
    gen_pool *p = *state;
    assert_string_equal(gen_file_ident(p, "shop/order_saga.proto"),
                        "shop_2forder_5fsaga_2eproto");
    assert_true(gen_c_ident_ok("shop__x"));
    assert_true(gen_c_ident_ok("_x9"));
    assert_false(gen_c_ident_ok("3pl__participant"));
    assert_false(gen_c_ident_ok("a-b"));
    assert_false(gen_c_ident_ok(""));
    assert_true(gen_text_ok("OUT_OF_STOCK", 255));
    assert_false(gen_text_ok("", 255));
    assert_false(gen_text_ok("a\tb", 255));
    assert_false(gen_text_ok("abc", 2));
}

static void
test_names_c_string_literals_escape_everything_risky(void **state)
{
    (void) state;
    gen_buf b = GEN_BUF_INIT;
    /* "?" "?/" is split so that this file has no trigraph itself. */
    gen_buf_c_string(&b, "a\"b\\c?"
                         "?/\n\t\x7f\xc3\xa9"
                         "1");
    assert_string_equal(gen_buf_str(&b),
                        "\"a\\\"b\\\\c\\?\\?/\\n\\011\\177\\303\\2511\"");
    gen_buf_free(&b);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_names_camel_to_lower_follows_protoc_c),
        T(test_names_full_names_follow_protoc_c),
        T(test_names_topics),
        T(test_names_identifiers_and_text),
        T(test_names_c_string_literals_escape_everything_risky),
    };
    return cmocka_run_group_tests_name("codegen.names", tests, NULL, NULL);
}
