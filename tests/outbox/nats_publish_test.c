/*
 * Publishing on NATS JetStream, against a real nats-server: what a
 * consumer gets back (topic, key, headers, payload, id, attempt, offset,
 * timestamp), including header values and keys NATS would alter; order
 * within a subject; JetStream deduplication by message id; what is
 * refused before anything is sent (oversized messages, delayed delivery,
 * partitions, reserved header names) while later publishes still go.
 *
 * TPT_FILTER=<glob> runs only the matching tests; TPT_LOG=1 prints every
 * log line of the library.
 */
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "ntest.h"

/* ---- 1. round trip ------------------------------------------------------- */

static void
test_nats_publish_round_trip_keeps_every_field(void **state)
{
    tpt_env e;
    tpt_rec r = {0};
    loom_message m[3];
    loom_header h[3] = {{"trace", "t-1"}, {"tenant", "acme"}, {"a", "1"}};
    loom_uuid id;
    const tpt_rmsg *d;
    char idtext[LOOM_UUID_STRLEN], want[LOOM_UUID_STRLEN];

    (void) state;
    ntt_open(&e, "");
    ntt_rec_open(&e, "rt-g", "rt.orders", 0, 0, &r);
    assert_int_equal(loom_uuid_generate(&id), LOOM_OK);
    tpt_msg_init(&m[0], "rt.orders", "cust-7", "first");
    m[0].headers = h;
    m[0].n_headers = 3;
    m[0].id = id;
    tpt_msg_init(&m[1], "rt.orders", NULL, "second"); /* no key, new id */
    tpt_msg_init(&m[2], "rt.orders", "cust-8", "");   /* empty payload */
    m[2].partition = 0;
    assert_int_equal(tpt_publish_wait(&e, m, 3), LOOM_OK);
    tpt_rec_wait(&e, &r, 3);
    ntt_quiet(&e, 200);
    assert_int_equal(r.n, 3);

    d = ntt_nth(&r, "first", 0);
    assert_string_equal(d->topic, "rt.orders");
    assert_string_equal(d->key, "cust-7");
    /* NATS headers are a map: delivered sorted by name. */
    assert_string_equal(d->headers, "a=1;tenant=acme;trace=t-1;");
    assert_memory_equal(d->id.bytes, id.bytes, 16);
    assert_int_equal(d->attempt, 1);
    assert_int_equal(d->partition, 0);
    assert_true(d->offset >= 1);

    d = ntt_nth(&r, "second", 0);
    assert_string_equal(d->key, "");
    assert_string_equal(d->headers, "");
    assert_false(loom_uuid_is_nil(&d->id)); /* generated */
    loom_uuid_format(&d->id, idtext);
    loom_uuid_format(&id, want);
    assert_string_not_equal(idtext, want);
    assert_true(d->offset > ntt_nth(&r, "first", 0)->offset);

    d = ntt_nth(&r, "", 0);
    assert_string_equal(d->key, "cust-8");
    tpt_close(&e);
    tpt_rec_free(&r);
}

/* What a handler sees, with exact lengths (tpt_rec prints strings). */
typedef struct raw_seen {
    int n;
    size_t key_len;
    unsigned char key[16];
    int has_key;
    char values[8][64];
    char names[8][32];
    size_t n_headers;
    size_t payload_len;
    unsigned char payload[8];
    int64_t timestamp;
} raw_seen;

static void
raw_handle(loom_consumer *c, const loom_message *const *msgs, size_t n,
           void *arg)
{
    raw_seen *s = arg;

    for (size_t i = 0; i < n; i++) {
        const loom_message *m = msgs[i];
        s->n++;
        s->has_key = m->key != NULL;
        s->key_len = m->key_len;
        if (m->key != NULL && m->key_len <= sizeof s->key)
            memcpy(s->key, m->key, m->key_len);
        s->n_headers = m->n_headers;
        for (size_t h = 0; h < m->n_headers && h < 8; h++) {
            snprintf(s->names[h], sizeof s->names[h], "%s", m->headers[h].key);
            snprintf(s->values[h], sizeof s->values[h], "%s",
                     m->headers[h].value);
        }
        s->timestamp = m->timestamp;
        s->payload_len = m->payload_len;
        if (m->payload != NULL && m->payload_len <= sizeof s->payload)
            memcpy(s->payload, m->payload, m->payload_len);
        loom_consumer_ack(c, m);
    }
}

static int
raw_done(void *arg)
{
    return ((raw_seen *) arg)->n > 0;
}

static raw_seen
raw_round_trip(tpt_env *e, const char *topic, const loom_message *m)
{
    loom_consumer_config cfg = LOOM_CONSUMER_CONFIG_INIT;
    const char *topics[1] = {topic};
    loom_consumer *c;
    raw_seen s;

    memset(&s, 0, sizeof s);
    cfg.group = "raw";
    cfg.topics = topics;
    cfg.n_topics = 1;
    assert_int_equal(loom_consumer_open(e->t, &cfg, raw_handle, &s, &c),
                     LOOM_OK);
    assert_int_equal(tpt_publish_wait(e, m, 1), LOOM_OK);
    assert_true(tpt_run(e, raw_done, &s, TPT_WAIT_MS));
    loom_consumer_close(c);
    return s;
}

static void
test_nats_publish_values_nats_would_alter_come_back_unchanged(void **state)
{
    static const unsigned char key[5] = {0, 0xff, '\r', '\n', ' '};
    static const unsigned char payload[4] = {0, 1, 2, 0};
    loom_header h[5] = {{"empty", ""},
                        {"blank", "  padded  "},
                        {"lines", "a\r\nb\tc"},
                        {"pct", "=100%"},
                        {"blank", "plain"}};
    loom_message m;
    int64_t before = tpt_realtime_us();
    raw_seen s;
    tpt_env e;

    (void) state;
    ntt_open(&e, "");
    memset(&m, 0, sizeof m);
    m.topic = "alter.binary";
    m.partition = LOOM_PARTITION_ANY;
    m.key = key;
    m.key_len = sizeof key;
    m.payload = payload;
    m.payload_len = sizeof payload;
    m.headers = h;
    m.n_headers = 5;
    s = raw_round_trip(&e, "alter.binary", &m);
    assert_int_equal(s.key_len, sizeof key);
    assert_memory_equal(s.key, key, sizeof key);
    assert_int_equal(s.payload_len, sizeof payload);
    assert_memory_equal(s.payload, payload, sizeof payload);
    /* The server stamps it, in µs since 1970 (same machine's clock). */
    assert_true(s.timestamp >= before - 1000000);
    assert_true(s.timestamp <= tpt_realtime_us() + 1000000);
    assert_int_equal(s.n_headers, 5);
    /* Sorted by name; the two "blank" values in their order. */
    assert_string_equal(s.names[0], "blank");
    assert_string_equal(s.values[0], "  padded  ");
    assert_string_equal(s.names[1], "blank");
    assert_string_equal(s.values[1], "plain");
    assert_string_equal(s.names[2], "empty");
    assert_string_equal(s.values[2], "");
    assert_string_equal(s.names[3], "lines");
    assert_string_equal(s.values[3], "a\r\nb\tc");
    assert_string_equal(s.names[4], "pct");
    assert_string_equal(s.values[4], "=100%");

    /* An empty key is a key; no key is none. */
    tpt_msg_init(&m, "alter.emptykey", NULL, "x");
    m.key = "";
    m.key_len = 0;
    s = raw_round_trip(&e, "alter.emptykey", &m);
    assert_true(s.has_key);
    assert_int_equal(s.key_len, 0);
    tpt_msg_init(&m, "alter.nokey", NULL, "x");
    s = raw_round_trip(&e, "alter.nokey", &m);
    assert_false(s.has_key);
    tpt_close(&e);
}

/* ---- 2. order and deduplication ------------------------------------------ */

static void
test_nats_publish_order_within_a_subject_holds(void **state)
{
    tpt_env e;
    tpt_rec r = {0};
    char want[32];

    (void) state;
    ntt_open(&e, "max_pending=64");
    /* Many calls in flight at once, through a window smaller than them. */
    for (int i = 0; i < 10; i++)
        tpt_publish_seq(&e, "order.log", i * 100, 100, 0);
    ntt_rec_open(&e, "order-g", "order.log", 0, 0, &r);
    tpt_rec_wait(&e, &r, 1000);
    ntt_quiet(&e, 200);
    assert_int_equal(r.n, 1000);
    for (size_t i = 0; i < r.n; i++) {
        snprintf(want, sizeof want, "%zu", i);
        assert_string_equal(r.m[i].payload, want);
        if (i > 0)
            assert_true(r.m[i].offset > r.m[i - 1].offset);
    }
    tpt_close(&e);
    tpt_rec_free(&r);
}

/* Loop callbacks only record; the test checks after the run. */
typedef struct calls {
    int left;
    int failed;
    size_t acked;
} calls;

static void
many_calls(loom_err rc, size_t n, void *arg)
{
    calls *c = arg;

    c->failed += rc != LOOM_OK;
    c->acked += n;
    c->left--;
}

static int
none_left(void *arg)
{
    return ((calls *) arg)->left == 0;
}

static void
test_nats_publish_many_calls_in_flight_all_call_back(void **state)
{
    tpt_env e;
    calls c = {0, 0, 0};
    char payload[32];
    loom_message m;

    (void) state;
    ntt_open(&e, "");
    /* One message per call, no waiting between: they overlap. */
    for (int i = 0; i < 3000; i++) {
        snprintf(payload, sizeof payload, "%d", i);
        tpt_msg_init(&m, "many.calls", NULL, payload);
        assert_int_equal(loom_transport_publish(e.t, &m, 1, many_calls, &c),
                         LOOM_OK);
        c.left++;
    }
    assert_true(tpt_run(&e, none_left, &c, 60000));
    assert_int_equal(c.failed, 0);
    assert_int_equal(c.acked, 3000);
    tpt_close(&e);
}

static void
test_nats_publish_same_id_twice_is_delivered_once(void **state)
{
    tpt_env e;
    tpt_rec r = {0};
    loom_message m[2];
    loom_uuid id;

    (void) state;
    ntt_open(&e, "");
    assert_int_equal(loom_uuid_generate(&id), LOOM_OK);
    tpt_msg_init(&m[0], "dedup.t", "k", "once");
    m[0].id = id;
    assert_int_equal(tpt_publish_wait(&e, m, 1), LOOM_OK);
    /* Again, alone and then within a call with another message. */
    assert_int_equal(tpt_publish_wait(&e, m, 1), LOOM_OK);
    tpt_msg_init(&m[1], "dedup.t", "k", "other");
    assert_int_equal(tpt_publish_wait(&e, m, 2), LOOM_OK);
    ntt_rec_open(&e, "dedup-g", "dedup.t", 0, 0, &r);
    tpt_rec_wait(&e, &r, 2);
    ntt_quiet(&e, 500);
    assert_int_equal(r.n, 2);
    assert_int_equal(tpt_rec_count(&r, "once"), 1);
    assert_int_equal(tpt_rec_count(&r, "other"), 1);
    assert_memory_equal(ntt_nth(&r, "once", 0)->id.bytes, id.bytes, 16);
    tpt_close(&e);
    tpt_rec_free(&r);
}

/* ---- 3. refused messages ------------------------------------------------- */

static void
test_nats_publish_oversized_is_refused_and_later_ones_go(void **state)
{
    tpt_env e;
    tpt_rec r = {0};
    loom_message m[2];
    size_t big = 2u * 1024 * 1024; /* the server's max_payload is 1 MiB */
    char *payload = malloc(big);
    tpt_pcall p = {0, LOOM_OK, 0};

    (void) state;
    assert_non_null(payload);
    memset(payload, 'x', big);
    ntt_open(&e, "");
    ntt_rec_open(&e, "big-g", "big.t", 0, 0, &r);
    tpt_msg_init(&m[0], "big.t", NULL, "before");
    m[1] = m[0];
    m[1].payload = payload;
    m[1].payload_len = big;
    /* The whole call is refused: nothing of it is sent. */
    assert_int_equal(loom_transport_publish(e.t, m, 2, tpt_pcall_record, &p),
                     LOOM_ETOOBIG);
    assert_non_null(strstr(loom_nats_errmsg(e.t), "max_payload"));
    assert_non_null(strstr(loom_nats_errmsg(e.t), "message 1"));
    /* Just below the limit with headers counted goes; just above not. */
    /* Exactly at the limit goes, one byte more does not: the headers
     * are "NATS/1.0\r\n", "Nats-Msg-Id: <36>\r\n" and "\r\n", 63 bytes. */
    m[1].payload_len = 1024 * 1024 - 63;
    assert_int_equal(tpt_publish_wait(&e, &m[1], 1), LOOM_OK);
    m[1].payload_len++;
    assert_int_equal(loom_transport_publish(e.t, &m[1], 1, NULL, NULL),
                     LOOM_ETOOBIG);
    tpt_msg_init(&m[0], "big.t", NULL, "after");
    assert_int_equal(tpt_publish_wait(&e, m, 1), LOOM_OK);
    tpt_rec_wait(&e, &r, 2);
    ntt_quiet(&e, 200);
    assert_int_equal(r.n, 2); /* the one at the limit and "after" */
    assert_int_equal(tpt_rec_count(&r, "after"), 1);
    assert_int_equal(p.done, 0); /* a refused call never calls back */
    free(payload);
    tpt_close(&e);
    tpt_rec_free(&r);
}

static void
test_nats_publish_refuses_what_nats_cannot_carry(void **state)
{
    tpt_env e;
    loom_message m;
    loom_header nats_hdr[1] = {{"Nats-Msg-Id", "x"}};
    loom_header loom_hdr[1] = {{"loom-key", "x"}};
    loom_header colon[1] = {{"a:b", "x"}};
    loom_header space[1] = {{"a b", "x"}};

    (void) state;
    ntt_open(&e, "");
    tpt_msg_init(&m, "refuse.t", NULL, "x");
    m.deliver_at = tpt_realtime_us() + 60000000;
    assert_int_equal(loom_transport_publish(e.t, &m, 1, NULL, NULL),
                     LOOM_EINVAL);
    assert_non_null(strstr(loom_nats_errmsg(e.t), "delayed delivery"));
    m.deliver_at = tpt_realtime_us() - 1000; /* due: goes at once */
    assert_int_equal(tpt_publish_wait(&e, &m, 1), LOOM_OK);
    m.deliver_at = 0;

    m.partition = 3;
    assert_int_equal(loom_transport_publish(e.t, &m, 1, NULL, NULL),
                     LOOM_EINVAL);
    assert_non_null(strstr(loom_nats_errmsg(e.t), "no partitions"));
    m.partition = LOOM_PARTITION_ANY;

    m.n_headers = 1;
    m.headers = nats_hdr;
    assert_int_equal(loom_transport_publish(e.t, &m, 1, NULL, NULL),
                     LOOM_EINVAL);
    assert_non_null(strstr(loom_nats_errmsg(e.t), "reserved"));
    m.headers = loom_hdr;
    assert_int_equal(loom_transport_publish(e.t, &m, 1, NULL, NULL),
                     LOOM_EINVAL);
    m.headers = colon;
    assert_int_equal(loom_transport_publish(e.t, &m, 1, NULL, NULL),
                     LOOM_EINVAL);
    m.headers = space;
    assert_int_equal(loom_transport_publish(e.t, &m, 1, NULL, NULL),
                     LOOM_EINVAL);
    m.n_headers = 0;
    m.headers = NULL;

    m.topic = "bad..topic";
    assert_int_equal(loom_transport_publish(e.t, &m, 1, NULL, NULL),
                     LOOM_EINVAL);
    assert_non_null(strstr(loom_nats_errmsg(e.t), "bad topic"));
    m.topic = "orders.*";
    assert_int_equal(loom_transport_publish(e.t, &m, 1, NULL, NULL),
                     LOOM_EINVAL);
    m.topic = "orders.>";
    assert_int_equal(loom_transport_publish(e.t, &m, 1, NULL, NULL),
                     LOOM_EINVAL);
    tpt_close(&e);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nats_publish_round_trip_keeps_every_field),
        cmocka_unit_test(
            test_nats_publish_values_nats_would_alter_come_back_unchanged),
        cmocka_unit_test(test_nats_publish_order_within_a_subject_holds),
        cmocka_unit_test(test_nats_publish_many_calls_in_flight_all_call_back),
        cmocka_unit_test(test_nats_publish_same_id_twice_is_delivered_once),
        cmocka_unit_test(
            test_nats_publish_oversized_is_refused_and_later_ones_go),
        cmocka_unit_test(test_nats_publish_refuses_what_nats_cannot_carry),
    };
    tpt_debug_from_env();
    return cmocka_run_group_tests_name("outbox.nats_publish", tests,
                                       ntt_group_setup, ntt_group_teardown);
}
