/*
 * The NATS transport's names and message encoding (codec.c), without a
 * server: topic and pattern checks, subject filters, durable consumer
 * names (readable, distinct, bounded), header name rules, the wire size
 * compared with max_payload, and a message built and decoded again with
 * keys and header values that need escaping. The nats_*_test executables
 * prove the same against a real server.
 */
#include <setjmp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "loom/alloc.h"
#include "nats_int.h"

static void
test_nats_codec_topics_and_patterns(void **state)
{
    char *f[2], err[256];
    size_t n;

    (void) state;
    assert_true(loom__nt_topic_ok("orders.created-1_x"));
    assert_false(loom__nt_topic_ok("orders..created"));
    assert_false(loom__nt_topic_ok(".orders"));
    assert_false(loom__nt_topic_ok("orders.*"));
    assert_false(loom__nt_topic_ok("orders.>"));
    assert_false(loom__nt_topic_ok("ord ers"));
    assert_false(loom__nt_topic_ok(""));

    assert_int_equal(loom__nt_filters("loom", "a.*.b", f, &n, err, sizeof err),
                     LOOM_OK);
    assert_int_equal(n, 1);
    assert_string_equal(f[0], "loom.a.*.b");
    loom_free(f[0]);
    assert_int_equal(loom__nt_filters("p.q", "a.b.#", f, &n, err, sizeof err),
                     LOOM_OK);
    assert_int_equal(n, 2);
    assert_string_equal(f[0], "p.q.a.b");
    assert_string_equal(f[1], "p.q.a.b.>");
    loom_free(f[0]);
    loom_free(f[1]);
    assert_int_equal(loom__nt_filters("loom", "#", f, &n, err, sizeof err),
                     LOOM_OK);
    assert_int_equal(n, 1);
    assert_string_equal(f[0], "loom.>");
    loom_free(f[0]);
    assert_int_equal(loom__nt_filters("loom", "*", f, &n, err, sizeof err),
                     LOOM_OK);
    assert_string_equal(f[0], "loom.*");
    loom_free(f[0]);

    assert_int_equal(loom__nt_filters("loom", "a.#.b", f, &n, err, sizeof err),
                     LOOM_EINVAL);
    assert_int_equal(n, 0);
    assert_non_null(strstr(err, "last word"));
    assert_int_equal(loom__nt_filters("loom", "a.#x", f, &n, err, sizeof err),
                     LOOM_EINVAL);
    assert_non_null(strstr(err, "bad topic pattern"));
    assert_int_equal(loom__nt_filters("loom", "#.#", f, &n, err, sizeof err),
                     LOOM_EINVAL);
}

static void
test_nats_codec_durable_names_are_readable_distinct_and_bounded(void **state)
{
    char *a, *b, long_group[300];

    (void) state;
    a = loom__nt_durable("billing", "loom.orders.>");
    assert_string_equal(a, "billing__loom_2Eorders_2E_3E");
    loom_free(a);
    /* Where the join falls cannot be confused. */
    a = loom__nt_durable("a.", "b");
    b = loom__nt_durable("a", ".b");
    assert_string_not_equal(a, b);
    loom_free(a);
    loom_free(b);
    a = loom__nt_durable("a_", "b");
    b = loom__nt_durable("a", "_b");
    assert_string_not_equal(a, b);
    loom_free(a);
    loom_free(b);
    /* Long names are cut with a hash of the whole. */
    memset(long_group, 'g', sizeof long_group - 1);
    long_group[sizeof long_group - 1] = '\0';
    a = loom__nt_durable(long_group, "loom.x");
    b = loom__nt_durable(long_group, "loom.y");
    assert_true(strlen(a) <= 200);
    assert_true(strlen(b) <= 200);
    assert_string_not_equal(a, b);
    assert_null(strpbrk(a, ".*> "));
    loom_free(a);
    loom_free(b);
}

static void
test_nats_codec_header_names(void **state)
{
    (void) state;
    assert_true(loom__nt_header_key_ok("trace"));
    assert_true(loom__nt_header_key_ok("X-Request_ID.2"));
    assert_false(loom__nt_header_key_ok(""));
    assert_false(loom__nt_header_key_ok("a:b"));
    assert_false(loom__nt_header_key_ok("a,b"));
    assert_false(loom__nt_header_key_ok("a b"));
    assert_false(loom__nt_header_key_ok("caf\xc3\xa9"));
    assert_false(loom__nt_header_key_ok("Nats-Msg-Id"));
    assert_false(loom__nt_header_key_ok("nats-anything"));
    assert_false(loom__nt_header_key_ok("LOOM-KEY"));
    assert_false(loom__nt_header_key_ok("loom-encoded"));
    /* The saga headers (loom/saga.h) travel over NATS. */
    assert_true(loom__nt_header_key_ok("loom-saga-id"));
}

static void
test_nats_codec_wire_size_counts_headers_as_the_server_does(void **state)
{
    loom_message m;
    loom_header h[2] = {{"a", "1"}, {"e", ""}};

    (void) state;
    memset(&m, 0, sizeof m);
    m.topic = "t";
    m.payload = "12345";
    m.payload_len = 5;
    /* "NATS/1.0\r\n" "Nats-Msg-Id: <36>\r\n" "\r\n" + payload */
    assert_int_equal(loom__nt_wire_size(&m, 36, NULL, 0), 10 + 51 + 2 + 5);
    m.key = "k";
    m.key_len = 1; /* "Loom-Key: k\r\n" */
    assert_int_equal(loom__nt_wire_size(&m, 36, NULL, 0), 68 + 13);
    m.headers = h;
    m.n_headers = 2;
    /* "a: 1\r\n", "e: =\r\n" (escaped), "Loom-Encoded: e\r\n" */
    assert_int_equal(loom__nt_wire_size(&m, 36, NULL, 0), 81 + 6 + 6 + 17);
}

static void
test_nats_codec_message_round_trip(void **state)
{
    static const unsigned char key[4] = {0, '%', '\n', 0xfe};
    loom_header h[5] = {{"z", "last"},
                        {"dup", " one "},
                        {"dup", "two"},
                        {"empty", ""},
                        {"plain", "=x%y"}};
    loom_header extra[1] = {{"x-error", "line1\nline2"}};
    loom_message m;
    nt_entry e;
    loom_uuid id;
    char text[LOOM_UUID_STRLEN];
    const char *v = NULL;

    (void) state;
    memset(&m, 0, sizeof m);
    m.topic = "orders.eu";
    m.key = key;
    m.key_len = sizeof key;
    m.headers = h;
    m.n_headers = 5;
    m.payload = "body";
    m.payload_len = 4;
    assert_int_equal(loom_uuid_generate(&id), LOOM_OK);
    loom_uuid_format(&id, text);
    memset(&e, 0, sizeof e);
    assert_int_equal(
        loom__nt_msg_build(&e.nm, "pre.orders.eu.dlq", text, &m, extra, 1),
        LOOM_OK);
    assert_int_equal(natsMsgHeader_Get(e.nm, "Loom-Encoded", &v), NATS_OK);
    assert_non_null(strstr(v, "Loom-Key"));
    assert_non_null(strstr(v, "dup"));
    assert_non_null(strstr(v, "x-error"));
    assert_null(strstr(v, "plain"));
    assert_int_equal(loom__nt_entry_decode(&e, "pre"), LOOM_OK);
    assert_string_equal(e.msg.topic, "orders.eu.dlq");
    assert_int_equal(e.msg.key_len, sizeof key);
    assert_memory_equal(e.msg.key, key, sizeof key);
    assert_memory_equal(e.msg.id.bytes, id.bytes, 16);
    assert_int_equal(e.msg.payload_len, 4);
    assert_memory_equal(e.msg.payload, "body", 4);
    /* Sorted by name, repeated names in order, values restored. */
    assert_int_equal(e.msg.n_headers, 6);
    assert_string_equal(e.msg.headers[0].key, "dup");
    assert_string_equal(e.msg.headers[0].value, " one ");
    assert_string_equal(e.msg.headers[1].value, "two");
    assert_string_equal(e.msg.headers[2].key, "empty");
    assert_string_equal(e.msg.headers[2].value, "");
    assert_string_equal(e.msg.headers[3].key, "plain");
    assert_string_equal(e.msg.headers[3].value, "=x%y");
    assert_string_equal(e.msg.headers[4].key, "x-error");
    assert_string_equal(e.msg.headers[4].value, "line1\nline2");
    assert_string_equal(e.msg.headers[5].key, "z");
    loom_free(e.mem);
    natsMsg_Destroy(e.nm);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nats_codec_topics_and_patterns),
        cmocka_unit_test(
            test_nats_codec_durable_names_are_readable_distinct_and_bounded),
        cmocka_unit_test(test_nats_codec_header_names),
        cmocka_unit_test(
            test_nats_codec_wire_size_counts_headers_as_the_server_does),
        cmocka_unit_test(test_nats_codec_message_round_trip),
    };
    int failed;

    /* natsMsg needs the library open (a transport opens it by
     * connecting). */
    if (nats_Open(-1) != NATS_OK)
        return 1;
    failed =
        cmocka_run_group_tests_name("outbox.nats_codec", tests, NULL, NULL);
    return nats_CloseAndWait(10000) == NATS_OK ? failed : 1;
}
