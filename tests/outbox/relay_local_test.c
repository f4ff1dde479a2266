/*
 * The relay publishing inside the database (schema 13,
 * loom.outbox_publish_local): when its transport is the built-in topics of
 * the outbox's own database, it must publish exactly what the transport
 * would have (partitions, headers, order), in one transaction with its
 * cursor, and leave to the transport what only the transport's path
 * handles.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "headers.h"
#include "loom/outbox.h"
#include "loom/partitioner.h"
#include "tptest.h"

#define LT_N 120 /* messages per outbox in the comparison */

static loom_relay_config
lt_config(loom_transport *t, const char *outbox)
{
    loom_relay_config cfg = tpt_relay_config(t);

    cfg.outbox = outbox;
    cfg.batch = 50; /* several batches */
    return cfg;
}

/* Writes LT_N messages for `topic` to `outbox` with loom_outbox_add():
 * message i has payload "<i>", key "key-<i % 7>" (none for every fifth),
 * type "lt.Type<i % 3>" (none for every fourth) and, for odd i, a header
 * "h" = "<i>". */
static void
lt_write(const char *outbox, const char *topic)
{
    loom_store_config scfg = LOOM_STORE_CONFIG_INIT;
    loom_store *s = est_store_open(&scfg);
    loom_tx *tx = NULL;
    loom_outbox_message m[LT_N];
    char payload[LT_N][16], key[LT_N][16], type[LT_N][16], value[LT_N][16];
    loom_header h[LT_N];

    assert_int_equal(loom_tx_new(&tx), LOOM_OK);
    memset(m, 0, sizeof m);
    for (int i = 0; i < LT_N; i++) {
        snprintf(payload[i], sizeof payload[i], "%d", i);
        snprintf(key[i], sizeof key[i], "key-%d", i % 7);
        snprintf(type[i], sizeof type[i], "lt.Type%d", i % 3);
        snprintf(value[i], sizeof value[i], "%d", i);
        h[i].key = "h";
        h[i].value = value[i];
        m[i].topic = topic;
        m[i].payload = payload[i];
        m[i].payload_len = strlen(payload[i]);
        if (i % 5 != 0) {
            m[i].key = key[i];
            m[i].key_len = strlen(key[i]);
        }
        if (i % 4 != 0)
            m[i].type = type[i];
        if (i % 2 == 1) {
            m[i].headers = &h[i];
            m[i].n_headers = 1;
        }
    }
    assert_int_equal(loom_outbox_add(tx, outbox, m, LT_N), LOOM_OK);
    assert_int_equal(loom_store_commit(s, tx), LOOM_OK);
    loom_tx_free(tx);
    loom_store_close(s);
}

static long long
lt_count(const char *topic)
{
    return est_ll("SELECT count(*) FROM loom.topic_messages m JOIN "
                  "loom.topics t ON t.id = m.topic_id WHERE t.name = '%s'",
                  topic);
}

/* loom.murmur2() in SQL is loom_murmur2() in C, so a key goes to the same
 * partition whichever path publishes it: keys of every length from 0 to
 * 40 bytes, with bytes above 0x7f (signed in Java's reading). */
static void
murmur2_in_sql_is_the_producers_murmur2(void **state)
{
    unsigned char key[40];
    char hex[81], sql[256];

    (void) state;
    for (size_t len = 0; len <= sizeof key; len++) {
        for (size_t i = 0; i < len; i++)
            key[i] = (unsigned char) (i * 37 + len * 11 + 0x80 * (i % 2));
        for (size_t i = 0; i < len; i++)
            snprintf(hex + 2 * i, 3, "%02x", key[i]);
        hex[2 * len] = '\0';
        snprintf(sql, sizeof sql, "SELECT loom.murmur2('\\x%s'::bytea)", hex);
        assert_int_equal(est_ll("%s", sql), loom_murmur2(key, len));
    }
    assert_int_equal(est_ll("SELECT loom.murmur2(convert_to('order-42', "
                            "'UTF8'))"),
                     loom_murmur2("order-42", 8));
}

/* Hex of n bytes into out (2n + 1 bytes). */
static void
lt_hex(char *out, const void *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", ((const unsigned char *) p)[i]);
    out[2 * n] = '\0';
}

/* The header list the relay builds in SQL for a message (its headers
 * with "x-type" appended; schema 14 inlines it) is byte for byte what the
 * C encoder makes of the same list: types of every length up to 300
 * bytes (the entry's length takes two bytes from 118 on), ASCII and
 * two-byte UTF-8, with and without a header of their own. */
static void
headers_in_sql_are_the_c_encoding_with_the_type_appended(void **state)
{
    loom_header h[2] = {{"trace", "abc"}, {"x-type", NULL}};
    char type[320], type_hex[641], own_hex[64], want_hex[1400], sql[2400];

    (void) state;
    for (int utf8 = 0; utf8 <= 1; utf8++)
        for (size_t len = utf8 ? 2 : 1; len <= 300; len += utf8 ? 2 : 1)
            for (int own = 0; own <= 1; own++) {
                loom__buf want = {0}, mine = {0};

                for (size_t i = 0; i < len; i++)
                    type[i] = utf8 ? (i % 2 ? '\xa9' : '\xc3') : 't';
                type[len] = '\0';
                h[1].value = type;
                loom__headers_encode(&want, own ? h : h + 1, own ? 2 : 1);
                loom__headers_encode(&mine, h, 1);
                lt_hex(type_hex, type, len);
                lt_hex(own_hex, mine.data, mine.len);
                lt_hex(want_hex, want.data, want.len);
                snprintf(sql, sizeof sql,
                         "SELECT count(*) FROM (SELECT loom.outbox_headers("
                         "%s%s%s, convert_from('\\x%s'::bytea, 'UTF8')) "
                         "AS h) x WHERE h = '\\x%s'::bytea",
                         own ? "'\\x" : "", own ? own_hex : "NULL",
                         own ? "'::bytea" : "", type_hex, want_hex);
                if (est_ll("%s", sql) != 1)
                    fail_msg("type of %zu bytes (%s), %s own header: the "
                             "SQL header list differs from the encoder's",
                             len, utf8 ? "UTF-8" : "ASCII",
                             own ? "with" : "without");
                loom__buf_free(&want);
                loom__buf_free(&mine);
            }
    /* No type: the headers as they are, none as NULL. */
    assert_int_equal(est_ll("SELECT count(*) WHERE loom.outbox_headers("
                            "NULL, NULL) IS NULL AND loom.outbox_headers("
                            "'\\x'::bytea, NULL) IS NULL AND "
                            "loom.outbox_headers('\\x1a00'::bytea, NULL) = "
                            "'\\x1a00'::bytea"),
                     1);
}

static int
lt_both_done(void *arg)
{
    loom_relay **r = arg;
    loom_relay_stats a, b;

    loom_relay_stats_get(r[0], &a);
    loom_relay_stats_get(r[1], &b);
    return a.published + a.dead_letters >= LT_N &&
           b.published + b.dead_letters >= LT_N;
}

/* The same messages, relayed once inside the database and once through
 * the transport, land on the same partitions in the same order with the
 * same headers (the type as "x-type"), and only the first relay's count
 * as published inside the database. */
static void
a_relay_publishes_inside_its_database_what_the_transport_would(void **state)
{
    tpt_env e;
    loom_relay_config in_db, through;
    loom_relay *r[2];
    loom_relay_stats st;

    (void) state;
    tpt_topic_create("lt.in_db", 4, -1, -1, 0, -1);
    tpt_topic_create("lt.through", 4, -1, -1, 0, -1);
    lt_write("lt_in_db", "lt.in_db");
    lt_write("lt_through", "lt.through");
    tpt_open(&e, "");
    in_db = lt_config(e.t, "lt_in_db");
    through = lt_config(e.t, "lt_through");
    through.through_transport = 1;
    r[0] = tpt_relay_start(&e, &in_db);
    r[1] = tpt_relay_start(&e, &through);
    assert_true(tpt_run(&e, lt_both_done, r, 20000));

    assert_int_equal(loom_relay_stats_get(r[0], &st), LOOM_OK);
    assert_int_equal(st.published, LT_N);
    assert_int_equal(st.in_database, LT_N);
    assert_true(st.batches_in_database >= LT_N / 50);
    assert_int_equal(st.dead_letters, 0);
    assert_int_equal(loom_relay_stats_get(r[1], &st), LOOM_OK);
    assert_int_equal(st.published, LT_N);
    assert_int_equal(st.in_database, 0);
    assert_int_equal(lt_count("lt.in_db"), LT_N);
    assert_int_equal(lt_count("lt.through"), LT_N);

    /* Message by message (matched by payload): key and headers agree, and
     * so does the partition of keyed ones (keyless ones share a partition
     * per batch, chosen afresh by each path). */
    assert_int_equal(
        est_ll("WITH m AS (SELECT t.name, m.partition, m.\"offset\", m.key, "
               "m.headers, convert_from(m.payload, 'UTF8')::int AS i "
               "FROM loom.topic_messages m JOIN loom.topics t ON t.id = "
               "m.topic_id WHERE t.name IN ('lt.in_db', 'lt.through')) "
               "SELECT count(*) FROM m a JOIN m b ON a.i = b.i "
               "WHERE a.name = 'lt.in_db' AND b.name = 'lt.through' "
               "AND a.key IS NOT DISTINCT FROM b.key "
               "AND a.headers IS NOT DISTINCT FROM b.headers "
               "AND (a.key IS NULL OR a.partition = b.partition)"),
        LT_N);
    /* And that partition is the one loom_partition_for_key() names. */
    for (int k = 0; k < 7; k++) {
        char key[16];
        int32_t p;
        snprintf(key, sizeof key, "key-%d", k);
        assert_int_equal(loom_partition_for_key(key, strlen(key), 4, &p),
                         LOOM_OK);
        assert_int_equal(est_ll("SELECT count(DISTINCT m.partition) FROM "
                                "loom.topic_messages m JOIN loom.topics t ON "
                                "t.id = m.topic_id WHERE t.name = 'lt.in_db' "
                                "AND m.key = convert_to('%s', 'UTF8') AND "
                                "m.partition = %d",
                                key, (int) p),
                         1);
    }
    /* Each key's messages in outbox order. */
    assert_int_equal(
        est_ll(
            "SELECT count(*) FROM (SELECT convert_from(payload, 'UTF8')"
            "::int - lag(convert_from(payload, 'UTF8')::int) OVER (PARTITION "
            "BY key ORDER BY \"offset\") AS d FROM loom.topic_messages m "
            "JOIN loom.topics t ON t.id = m.topic_id WHERE t.name = "
            "'lt.in_db' AND key IS NOT NULL) s WHERE d <= 0"),
        0);
    /* The type became the last header, after the message's own. */
    assert_int_equal(
        est_ll("SELECT count(*) FROM loom.topic_messages m JOIN loom.topics t "
               "ON t.id = m.topic_id WHERE t.name = 'lt.in_db' AND "
               "position(convert_to('x-type', 'UTF8') in m.headers) > 0"),
        LT_N - LT_N / 4);
    assert_int_equal(est_ll("SELECT published FROM loom.outbox_relays WHERE "
                            "outbox = 'lt_in_db'"),
                     LT_N);
    loom_relay_close(r[0]);
    loom_relay_close(r[1]);
    tpt_close(&e);
}

static int
lt_twice_published(void *arg)
{
    loom_relay_stats st;

    loom_relay_stats_get(arg, &st);
    return st.published + st.dead_letters >= 2 * LT_N;
}

/* loom_outbox_add() stores each key's murmur2 beside it (schema 18) and a
 * relay publishing inside the database uses it; a row without one (an
 * INSERT of its own) has it computed by the relay. Either way a key's
 * messages land on the partition loom_partition_for_key() names. */
static void
keys_hashed_by_the_writer_or_by_the_relay_land_alike(void **state)
{
    tpt_env e;
    loom_relay_config cfg;
    loom_relay *r;
    loom_relay_stats st;

    (void) state;
    tpt_topic_create("lt.hash", 4, -1, -1, 0, -1);
    lt_write("lt_hash", "lt.hash");
    assert_int_equal(est_ll("SELECT count(*) FROM loom.outbox WHERE outbox = "
                            "'lt_hash' AND key_hash = loom.murmur2(key)"),
                     LT_N - LT_N / 5);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.outbox WHERE outbox = "
                            "'lt_hash' AND key IS NULL AND key_hash IS NULL"),
                     LT_N / 5);
    assert_int_equal(
        est_ll("WITH ins AS (INSERT INTO loom.outbox (outbox, topic, key, "
               "payload, message_id) SELECT 'lt_hash', 'lt.hash', "
               "convert_to('key-' || (i %% 7), 'UTF8'), convert_to(i::text, "
               "'UTF8'), gen_random_uuid() FROM generate_series(%d, %d) AS i "
               "RETURNING 1) SELECT count(*) FROM ins",
               LT_N, 2 * LT_N - 1),
        LT_N);
    tpt_open(&e, "");
    cfg = lt_config(e.t, "lt_hash");
    r = tpt_relay_start(&e, &cfg);
    assert_true(tpt_run(&e, lt_twice_published, r, 20000));
    assert_int_equal(loom_relay_stats_get(r, &st), LOOM_OK);
    assert_int_equal(st.in_database, 2 * LT_N);
    for (int k = 0; k < 7; k++) {
        char key[16];
        int32_t p;
        snprintf(key, sizeof key, "key-%d", k);
        assert_int_equal(loom_partition_for_key(key, strlen(key), 4, &p),
                         LOOM_OK);
        /* Every message of the key, of both kinds, and only there. */
        assert_int_equal(
            est_ll("SELECT count(*) FILTER (WHERE m.partition = %d) - "
                   "count(*) FROM loom.topic_messages m JOIN loom.topics t "
                   "ON t.id = m.topic_id WHERE t.name = 'lt.hash' AND "
                   "m.key = convert_to('%s', 'UTF8')",
                   (int) p, key),
            0);
        assert_true(est_ll("SELECT count(*) FROM loom.topic_messages m JOIN "
                           "loom.topics t ON t.id = m.topic_id WHERE t.name = "
                           "'lt.hash' AND m.key = convert_to('%s', 'UTF8') "
                           "AND convert_from(m.payload, 'UTF8')::int >= %d",
                           key, LT_N) > 0);
    }
    loom_relay_close(r);
    tpt_close(&e);
}

/* For tpt_run(): the relay has handled `n` messages. */
typedef struct lt_wait {
    loom_relay *r;
    uint64_t n;
} lt_wait;

static int
lt_handled(void *arg)
{
    lt_wait *w = arg;
    loom_relay_stats st;

    loom_relay_stats_get(w->r, &st);
    return st.published + st.dead_letters >= w->n;
}

/* For tpt_run(): the relay has published `n` messages. */
static int
lt_published(void *arg)
{
    lt_wait *w = arg;
    loom_relay_stats st;

    loom_relay_stats_get(w->r, &st);
    return st.published >= w->n;
}

/* Adds a message with id ...a<n> and key "k" for each of the two topics
 * of the test below to outbox lt_dedup. */
static void
lt_dedup_write(int n)
{
    assert_int_equal(
        est_ll("WITH ins AS (INSERT INTO loom.outbox (outbox, topic, key, "
               "payload, message_id) SELECT 'lt_dedup', t, '\\x6b', "
               "convert_to('%d', 'UTF8'), "
               "'00000000-0000-7000-8000-0000000000a%d' FROM unnest(ARRAY["
               "'lt.dedup', 'lt.nodedup']) AS t RETURNING 1) "
               "SELECT count(*) FROM ins",
               n, n),
        2);
}

/* Published inside the database, as through the producer, a message id
 * already in the topic within its deduplication window is not stored
 * again, whether the copies share a batch or not; a topic without a
 * window stores every copy. Offsets stay dense either way. */
static void
a_message_id_in_the_window_is_stored_once_inside_the_database(void **state)
{
    tpt_env e;
    loom_relay_config cfg;
    lt_wait w;
    loom_relay_stats st;

    (void) state;
    tpt_topic_create("lt.dedup", 2, -1, -1, -1, -1); /* the default window */
    tpt_topic_create("lt.nodedup", 2, -1, -1, 0, -1);
    lt_dedup_write(1);
    lt_dedup_write(2);
    lt_dedup_write(1); /* the same batch */
    tpt_open(&e, "");
    cfg = lt_config(e.t, "lt_dedup");
    w.r = tpt_relay_start(&e, &cfg);
    w.n = 6;
    assert_true(tpt_run(&e, lt_handled, &w, 20000));
    lt_dedup_write(1); /* a later batch */
    w.n = 8;
    assert_true(tpt_run(&e, lt_handled, &w, 20000));
    assert_int_equal(loom_relay_stats_get(w.r, &st), LOOM_OK);
    assert_int_equal(st.in_database, 8);
    assert_int_equal(lt_count("lt.dedup"), 2);
    assert_int_equal(lt_count("lt.nodedup"), 4);
    assert_int_equal(
        est_ll("SELECT count(*) FROM (SELECT m.topic_id, m.partition FROM "
               "loom.topic_messages m JOIN loom.topics t ON t.id = "
               "m.topic_id WHERE t.name IN ('lt.dedup', 'lt.nodedup') "
               "GROUP BY 1, 2 HAVING max(m.\"offset\") + 1 <> count(*) "
               "OR min(m.\"offset\") <> 0) s"),
        0);
    loom_relay_close(w.r);
    tpt_close(&e);
}

static int
lt_settled(void *arg)
{
    loom_relay_stats st;

    loom_relay_stats_get(arg, &st);
    return st.published >= 4 && st.dead_letters >= 1;
}

static int
lt_first_settled(void *arg)
{
    loom_relay_stats st;

    loom_relay_stats_get(arg, &st);
    return st.published >= 2 && st.dead_letters >= 1;
}

/* A batch with a message only the transport's path can handle (its topic
 * does not exist) is declined whole, goes through the transport, which
 * dead-letters that one, and the next batch is published inside the
 * database again. */
static void
a_batch_the_database_declines_goes_through_the_transport(void **state)
{
    tpt_env e;
    PGconn *c = est_connect(NULL);
    loom_relay_config cfg;
    loom_relay *r;
    loom_relay_stats st;
    const char *ins = "INSERT INTO loom.outbox (outbox, topic, key, payload, "
                      "message_id) VALUES ('lt_decl', '%s', "
                      "convert_to('k', 'UTF8'), convert_to('%s', 'UTF8'), "
                      "gen_random_uuid())";
    char sql[512];

    (void) state;
    tpt_topic_create("lt.decl", 2, -1, -1, 0, -1);
    est_exec(c, "BEGIN");
    snprintf(sql, sizeof sql, ins, "lt.decl", "1");
    est_exec(c, sql);
    snprintf(sql, sizeof sql, ins, "lt.nowhere", "2");
    est_exec(c, sql);
    snprintf(sql, sizeof sql, ins, "lt.decl", "3");
    est_exec(c, sql);
    est_exec(c, "COMMIT");
    tpt_open(&e, "");
    cfg = lt_config(e.t, "lt_decl");
    r = tpt_relay_start(&e, &cfg);
    /* The first batch settled (through the transport) before the next
     * messages are written, so they make a batch of their own. */
    assert_true(tpt_run(&e, lt_first_settled, r, 20000));
    snprintf(sql, sizeof sql, ins, "lt.decl", "4");
    est_exec(c, sql);
    snprintf(sql, sizeof sql, ins, "lt.decl", "5");
    est_exec(c, sql);
    assert_true(tpt_run(&e, lt_settled, r, 20000));
    assert_int_equal(loom_relay_stats_get(r, &st), LOOM_OK);
    assert_int_equal(st.published, 4);
    assert_true(st.batches_in_database >= 1);
    assert_int_equal(st.dead_letters, 1);
    assert_int_equal(st.in_database, 2); /* "4" and "5" */
    assert_int_equal(est_ll("SELECT count(*) FROM loom.outbox_dead_letters "
                            "WHERE outbox = 'lt_decl' AND topic = "
                            "'lt.nowhere'"),
                     1);
    assert_int_equal(
        est_ll("SELECT (string_agg(convert_from(payload, 'UTF8'), ',' ORDER "
               "BY \"offset\") = '1,3,4,5')::int FROM loom.topic_messages m "
               "JOIN loom.topics t ON t.id = m.topic_id WHERE t.name = "
               "'lt.decl'"),
        1);
    loom_relay_close(r);
    tpt_close(&e);
    PQfinish(c);
}

/* The statement publishes and moves the cursor in one transaction, and
 * only on the leading relay's connection: called from anywhere else it
 * fails with LM016 and publishes nothing, whether or not anything waits
 * (here the message may be held back by other tests' transactions). */
static void
only_the_leading_relay_publishes_inside_the_database(void **state)
{
    PGconn *c = est_connect(NULL);

    (void) state;
    tpt_topic_create("lt.lead", 1, -1, -1, 0, -1);
    est_exec(c, "INSERT INTO loom.outbox_relays (outbox) VALUES ('lt_lead')");
    est_exec(c, "INSERT INTO loom.outbox (outbox, topic, payload, message_id) "
                "VALUES ('lt_lead', 'lt.lead', '\\x01', gen_random_uuid())");
    est_exec_fails(c,
                   "SELECT * FROM loom.outbox_publish_local('lt_lead', '0', "
                   "0, 10, 0, 'on', 0)",
                   "LM016");
    assert_int_equal(lt_count("lt.lead"), 0);
    assert_int_equal(est_ll("SELECT published FROM loom.outbox_relays WHERE "
                            "outbox = 'lt_lead'"),
                     0);
    PQfinish(c);
}

static int
lt_one_published(void *arg)
{
    loom_relay_stats st;

    loom_relay_stats_get(arg, &st);
    return st.published >= 1;
}

/* A transport whose topics live in another database (here one of the same
 * server, with a topic of the same name in both) is published through:
 * the message lands in its database, not the relay's. */
static void
a_relay_whose_topics_are_in_another_database_publishes_through_them(
    void **state)
{
    loom_store_config scfg = LOOM_STORE_CONFIG_INIT;
    PQconninfoOption *opts = PQconninfoParse(loomt_dsn(), NULL);
    const char *host = "", *port = "", *user = "";
    char dsn[512], url[512], name[128] = "";
    loom_store *s;
    PGconn *far;
    tpt_env e;
    loom_relay_config cfg;
    loom_relay *r;
    loom_relay_stats st;

    (void) state;
    est_db_create_extra("lt_far", dsn, sizeof dsn);
    scfg.conninfo = dsn;
    scfg.migrate = LOOM_MIGRATE_AUTO;
    s = est_store_open(&scfg);
    loom_store_close(s);
    far = est_connect(dsn);
    est_exec(far, "SELECT loom.topic_create('lt.far', 1, NULL, NULL, NULL, "
                  "NULL)");
    snprintf(name, sizeof name, "%s", PQdb(far));
    tpt_topic_create("lt.far", 1, -1, -1, 0, -1);
    for (PQconninfoOption *o = opts; o != NULL && o->keyword != NULL; o++) {
        if (o->val == NULL)
            continue;
        if (strcmp(o->keyword, "host") == 0)
            host = o->val;
        else if (strcmp(o->keyword, "port") == 0)
            port = o->val;
        else if (strcmp(o->keyword, "user") == 0)
            user = o->val;
    }
    snprintf(url, sizeof url, "/%s?host=%s&port=%s&user=%s", name, host, port,
             user);
    PQconninfoFree(opts);

    tpt_sqlf("INSERT INTO loom.outbox (outbox, topic, payload, message_id) "
             "VALUES ('lt_far', 'lt.far', '\\x01', gen_random_uuid())");
    tpt_open(&e, url);
    cfg = lt_config(e.t, "lt_far");
    cfg.conninfo = loomt_dsn();
    r = tpt_relay_start(&e, &cfg);
    assert_true(tpt_run(&e, lt_one_published, r, 20000));
    assert_int_equal(loom_relay_stats_get(r, &st), LOOM_OK);
    assert_int_equal(st.in_database, 0);
    assert_int_equal(lt_count("lt.far"), 0);
    loom_relay_close(r);
    tpt_close(&e);
    {
        PGresult *res = est_query(far, "SELECT count(*) FROM "
                                       "loom.topic_messages");
        assert_string_equal(PQgetvalue(res, 0, 0), "1");
        PQclear(res);
    }
    PQfinish(far);
    est_db_drop_extra("lt_far");
}

/* An in-database publish that keeps failing (here the function raises) is
 * not retried for ever beside the transport: after a few failures in a
 * row the relay keeps to the transport, and nothing is lost meanwhile. */
static void
a_relay_whose_in_database_publish_keeps_failing_keeps_to_the_transport(
    void **state)
{
    PGconn *c = est_connect(NULL);
    PGresult *def;
    char *saved;
    tpt_env e;
    loom_relay_config cfg;
    loom_relay_stats st;
    lt_wait w = {NULL, 0};

    (void) state;
    tpt_topic_create("lt.broken", 1, -1, -1, 0, -1);
    def = est_query(c, "SELECT pg_get_functiondef('loom.outbox_publish_local("
                       "text, xid8, bigint, integer, integer, text, double "
                       "precision)'::regprocedure)");
    saved = strdup(PQgetvalue(def, 0, 0));
    PQclear(def);
    est_exec(
        c, "CREATE OR REPLACE FUNCTION loom.outbox_publish_local("
           "p_outbox text, p_tx xid8, p_position bigint, p_limit "
           "integer, p_sticky integer, p_sync text, p_rate double "
           "precision) RETURNS TABLE (published integer, tx xid8, \"position\" "
           "bigint) LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION "
           "'broken on purpose' USING ERRCODE = 'XX001'; END $$");
    tpt_open(&e, "");
    cfg = lt_config(e.t, "lt_broken");
    w.r = tpt_relay_start(&e, &cfg);
    /* One message at a time, each its own batch: 8 tries. */
    for (int i = 0; i < 8; i++) {
        tpt_sqlf("INSERT INTO loom.outbox (outbox, topic, payload, "
                 "message_id) VALUES ('lt_broken', 'lt.broken', "
                 "convert_to('%d', 'UTF8'), gen_random_uuid())",
                 i);
        w.n = (uint64_t) i + 1;
        assert_true(tpt_run(&e, lt_published, &w, 20000));
    }
    /* Mended: the relay keeps to the transport all the same. */
    est_exec(c, saved);
    tpt_sqlf("INSERT INTO loom.outbox (outbox, topic, payload, message_id) "
             "VALUES ('lt_broken', 'lt.broken', '\\x39', "
             "gen_random_uuid())");
    w.n = 9;
    assert_true(tpt_run(&e, lt_published, &w, 20000));
    assert_int_equal(loom_relay_stats_get(w.r, &st), LOOM_OK);
    assert_int_equal(st.published, 9);
    assert_int_equal(st.in_database, 0);
    assert_int_equal(lt_count("lt.broken"), 9);
    loom_relay_close(w.r);
    tpt_close(&e);
    free(saved);
    PQfinish(c);
}

#define T(f) cmocka_unit_test_setup_teardown(f, est_setup, est_teardown)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        T(murmur2_in_sql_is_the_producers_murmur2),
        T(keys_hashed_by_the_writer_or_by_the_relay_land_alike),
        T(a_message_id_in_the_window_is_stored_once_inside_the_database),
        T(headers_in_sql_are_the_c_encoding_with_the_type_appended),
        T(a_relay_publishes_inside_its_database_what_the_transport_would),
        T(a_batch_the_database_declines_goes_through_the_transport),
        T(only_the_leading_relay_publishes_inside_the_database),
        T(a_relay_whose_topics_are_in_another_database_publishes_through_them),
        T(a_relay_whose_in_database_publish_keeps_failing_keeps_to_the_transport),
    };

    tpt_debug_from_env();
    return cmocka_run_group_tests(tests, est_group_setup, est_group_teardown);
}
