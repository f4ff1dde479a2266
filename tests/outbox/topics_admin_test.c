/*
 * Topic administration through the C API (loom/topics.h) against a real
 * PostgreSQL: create, alter and describe topics, reset a group's
 * offsets, re-drive dead letters and apply retention. Messages, members
 * and dead letters are made by calling the schema's SQL functions
 * directly (loom.topic_publish, loom.group_join, loom.topic_dead_letter),
 * as the transport would.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "loom/topics.h"
#include "pgtest.h"

/* 100 years in ms: the longest retention or deduplication window. */
#define MAX_MS INT64_C(3155760000000)

/* The member the tests join groups with. */
#define MEMBER "00000000-0000-0000-0000-0000000000aa"

static loom_store *S;

/* ------------------------------------------------------------------ */
/* Helpers                                                             */

static long long sqlf_ll(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
static void sqlf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static long long
sqlf_ll(const char *fmt, ...)
{
    char sql[4096];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    return loomt_sql_ll(sql);
}

static void
sqlf(const char *fmt, ...)
{
    char sql[4096];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    loomt_sql_exec(sql);
}

/* Publishes n messages of `size` payload bytes (no key, no headers) to
 * one partition, each with a new id. */
static void
publish(const char *topic, int partition, int n, int size)
{
    long long stored =
        sqlf_ll("SELECT count(*) FROM loom.topic_publish('%s', "
                "array_fill(%d, ARRAY[%d]), NULL, NULL, "
                "ARRAY(SELECT gen_random_uuid() FROM generate_series(1, %d)), "
                "NULL, NULL, array_fill(convert_to(repeat('x', %d), 'UTF8'), "
                "ARRAY[%d]), NULL) WHERE \"offset\" >= 0",
                topic, partition, n, n, size, n);
    assert_int_equal(stored, n);
}

/* Publishes one message with id `id` and returns its offset (-1 when
 * deduplication dropped it). */
static long long
publish_id(const char *topic, const char *id)
{
    return sqlf_ll("SELECT \"offset\" FROM loom.topic_publish('%s', "
                   "ARRAY[0], NULL, NULL, ARRAY['%s'::uuid], NULL, NULL, "
                   "ARRAY['\\x01'::bytea], NULL)",
                   topic, id);
}

static void
create(const char *name, int32_t partitions)
{
    loom_topic_config cfg = LOOM_TOPIC_CONFIG_INIT;

    cfg.partitions = partitions;
    assert_int_equal(loom_topic_create(S, name, &cfg), LOOM_OK);
}

static loom_topic_info
describe(const char *name)
{
    loom_topic_info info;
    loom_err rc = loom_topic_describe(S, name, &info);

    if (rc != LOOM_OK)
        fail_msg("describe %s: %s: %s", name, loom_err_name(rc),
                 loom_store_errmsg(S));
    return info;
}

static long long
topic_id(const char *name)
{
    return sqlf_ll("SELECT id FROM loom.topics WHERE name = '%s'", name);
}

static long long
start_offset(const char *topic, int partition)
{
    return sqlf_ll("SELECT start_offset FROM loom.topic_partitions "
                   "WHERE topic_id = %lld AND partition = %d",
                   topic_id(topic), partition);
}

static long long
committed(const char *group, const char *topic, int partition)
{
    return sqlf_ll("SELECT \"offset\" FROM loom.topic_offsets "
                   "WHERE group_name = '%s' AND topic_id = %lld "
                   "AND partition = %d",
                   group, topic_id(topic), partition);
}

/* Joins MEMBER to `group` for `topic` and returns the generation. */
static long long
join(const char *group, const char *topic)
{
    long long gen = sqlf_ll("SELECT loom.group_join('%s', '" MEMBER "', "
                            "'test', ARRAY['%s'], 'range', 60000)",
                            group, topic);

    sqlf("SELECT count(*) FROM loom.group_assignment('%s', '" MEMBER "', "
         "'earliest', NULL, NULL)",
         group);
    return gen;
}

/* Dead-letters a message as the consumer of MEMBER would; returns its
 * offset in the dead-letter topic. */
static long long
dead_letter(const char *group, long long gen, const char *topic, int partition,
            long long offset)
{
    return sqlf_ll("SELECT loom.topic_dead_letter('%s', '" MEMBER "', %lld, "
                   "%lld, %d, %lld, 5, 'handler failed', NULL)",
                   group, gen, topic_id(topic), partition, offset);
}

static void
assert_errmsg_has(const char *needle)
{
    if (strstr(loom_store_errmsg(S), needle) == NULL)
        fail_msg("errmsg \"%s\" lacks \"%s\"", loom_store_errmsg(S), needle);
}

/* ------------------------------------------------------------------ */
/* Fixture                                                             */

static int
group_setup(void **state)
{
    (void) state;
    loomt_db_create("topics_admin");
    S = loomt_store_open();
    return 0;
}

static int
group_teardown(void **state)
{
    (void) state;
    loom_store_close(S);
    loomt_db_drop();
    return 0;
}

/* Every test starts without topics or groups. */
static int
setup(void **state)
{
    (void) state;
    loomt_sql_exec("TRUNCATE loom.topics, loom.topic_partitions, "
                   "loom.topic_messages, "
                   "loom.topic_groups, loom.topic_members, "
                   "loom.topic_assignments, loom.topic_offsets, "
                   "loom.topic_retries, loom.topic_dead_letters");
    return 0;
}

/* ------------------------------------------------------------------ */
/* Create and describe                                                 */

static void
test_topics_create_with_defaults_then_describe(void **state)
{
    int64_t now_us = (int64_t) time(NULL) * 1000000;
    loom_topic_info info;

    (void) state;
    create("orders.created", 3);
    info = describe("orders.created");
    assert_string_equal(info.name, "orders.created");
    assert_int_equal(info.cfg.partitions, 3);
    assert_int_equal(info.cfg.retention_ms, 0);
    assert_int_equal(info.cfg.retention_bytes, 0);
    assert_int_equal(info.cfg.dedup_window_ms, 300000);
    assert_int_equal(info.cfg.max_deliveries, 5);
    assert_int_equal(info.messages, 0);
    assert_int_equal(info.bytes, 0);
    assert_true(info.created_at > now_us - 60 * 1000000LL);
    assert_true(info.created_at < now_us + 60 * 1000000LL);
    assert_int_equal(sqlf_ll("SELECT count(*) FROM loom.topic_partitions"), 3);
}

static void
test_topics_create_with_every_setting(void **state)
{
    loom_topic_config cfg = LOOM_TOPIC_CONFIG_INIT;
    loom_topic_info info;

    (void) state;
    cfg.partitions = 2;
    cfg.retention_ms = 60000;
    cfg.retention_bytes = 1 << 20;
    cfg.dedup_window_ms = 0;
    cfg.max_deliveries = 3;
    assert_int_equal(loom_topic_create(S, "a_b-c.D9", &cfg), LOOM_OK);
    info = describe("a_b-c.D9");
    assert_int_equal(info.cfg.partitions, 2);
    assert_int_equal(info.cfg.retention_ms, 60000);
    assert_int_equal(info.cfg.retention_bytes, 1 << 20);
    assert_int_equal(info.cfg.dedup_window_ms, 0);
    assert_int_equal(info.cfg.max_deliveries, 3);

    /* A retention of 0 is "forever" on create, stored as no limit. */
    cfg.retention_ms = 0;
    cfg.retention_bytes = 0;
    cfg.dedup_window_ms = MAX_MS;
    cfg.max_deliveries = 1000;
    assert_int_equal(loom_topic_create(S, "forever", &cfg), LOOM_OK);
    info = describe("forever");
    assert_int_equal(info.cfg.retention_ms, 0);
    assert_int_equal(info.cfg.retention_bytes, 0);
    assert_int_equal(info.cfg.dedup_window_ms, MAX_MS);
    assert_int_equal(sqlf_ll("SELECT count(*) FROM loom.topics WHERE name = "
                             "'forever' AND retention_ms IS NULL AND "
                             "retention_bytes IS NULL"),
                     1);
}

static void
test_topics_create_refuses_bad_names(void **state)
{
    static const char *const bad[] = {
        "",    "a..b", ".a",       "a.",   "a b", "ordérs",
        "a/b", "a*",   "orders.#", "a\nb", ".",   "a.b..",
    };
    char longest[LOOM_MAX_TOPIC_NAME + 2];
    loom_topic_config cfg = LOOM_TOPIC_CONFIG_INIT;

    (void) state;
    cfg.partitions = 1;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (loom_topic_create(S, bad[i], &cfg) != LOOM_EINVAL)
            fail_msg("topic name \"%s\" was accepted", bad[i]);
        assert_errmsg_has("topic name");
    }
    /* A name that is not printable is not echoed: errmsg gets printed. */
    assert_int_equal(loom_topic_create(S, ".\x1b[2J", &cfg), LOOM_EINVAL);
    assert_errmsg_has("topic name has an empty word at byte 0");
    assert_null(strchr(loom_store_errmsg(S), '\x1b'));
    assert_int_equal(loom_topic_create(S, "ok.\x1b[2J", &cfg), LOOM_EINVAL);
    assert_errmsg_has("topic name has byte 0x1b at byte 3");
    assert_int_equal(loom_topic_create(S, NULL, &cfg), LOOM_EINVAL);
    assert_errmsg_has("NULL");
    memset(longest, 'a', sizeof longest - 1);
    longest[sizeof longest - 1] = '\0'; /* 250 bytes */
    assert_int_equal(loom_topic_create(S, longest, &cfg), LOOM_EINVAL);
    assert_errmsg_has("longer than 249 bytes");
    /* 249 bytes leave no room for the dead-letter topic's ".dlq" ... */
    longest[LOOM_MAX_TOPIC_NAME] = '\0';
    assert_int_equal(loom_topic_create(S, longest, &cfg), LOOM_EINVAL);
    assert_errmsg_has("dead-letter topic");
    /* ... unless it is one; 245 bytes are the most for any other. */
    memcpy(longest + LOOM_MAX_TOPIC_NAME - 4, ".dlq", 4);
    assert_int_equal(loom_topic_create(S, longest, &cfg), LOOM_OK);
    longest[LOOM_MAX_TOPIC_NAME - 4] = '\0';
    assert_int_equal(loom_topic_create(S, longest, &cfg), LOOM_OK);
    assert_int_equal(sqlf_ll("SELECT count(*) FROM loom.topics"), 2);
}

static void
test_topics_create_refuses_bad_partition_counts(void **state)
{
    static const int32_t bad[] = {0, -1, -5, 4097, 5000, INT32_MIN};
    loom_topic_config cfg = LOOM_TOPIC_CONFIG_INIT;

    (void) state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cfg.partitions = bad[i];
        assert_int_equal(loom_topic_create(S, "t", &cfg), LOOM_EINVAL);
        assert_errmsg_has("partitions");
        assert_errmsg_has("1 to 4096");
    }
    assert_int_equal(sqlf_ll("SELECT count(*) FROM loom.topics"), 0);
    cfg.partitions = LOOM_MAX_PARTITIONS;
    assert_int_equal(loom_topic_create(S, "t", &cfg), LOOM_OK);
    assert_int_equal(describe("t").cfg.partitions, 4096);
}

static void
test_topics_create_refuses_settings_out_of_range(void **state)
{
    struct {
        int64_t retention_ms, retention_bytes, dedup;
        int32_t max_deliveries;
        const char *field;
    } bad[] = {
        {-2, -1, -1, -1, "retention_ms"},
        {MAX_MS + 1, -1, -1, -1, "retention_ms"},
        {-1, -2, -1, -1, "retention_bytes"},
        {-1, INT64_MIN, -1, -1, "retention_bytes"},
        {-1, -1, -2, -1, "dedup_window_ms"},
        {-1, -1, MAX_MS + 1, -1, "dedup_window_ms"},
        {-1, -1, -1, 0, "max_deliveries"},
        {-1, -1, -1, 1001, "max_deliveries"},
        {-1, -1, -1, -2, "max_deliveries"},
    };
    loom_topic_config cfg = LOOM_TOPIC_CONFIG_INIT;

    (void) state;
    cfg.partitions = 1;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cfg.retention_ms = bad[i].retention_ms;
        cfg.retention_bytes = bad[i].retention_bytes;
        cfg.dedup_window_ms = bad[i].dedup;
        cfg.max_deliveries = bad[i].max_deliveries;
        assert_int_equal(loom_topic_create(S, "t", &cfg), LOOM_EINVAL);
        assert_errmsg_has(bad[i].field);
        assert_errmsg_has("topic \"t\"");
    }
    assert_int_equal(sqlf_ll("SELECT count(*) FROM loom.topics"), 0);
}

/* The table refuses what the C API refuses: another client cannot store
 * a window that would break every retention step (now() - window out of
 * timestamptz's range). The longest allowed ones work. */
static void
test_topics_windows_stop_at_100_years(void **state)
{
    static const char id[] = "0190f5c2-8a41-7cc3-9d52-1b7e0f3a4c12";
    loom_topic_config cfg = LOOM_TOPIC_CONFIG_INIT;
    PGconn *c = PQconnectdb(loomt_dsn());
    int64_t removed = -1;
    PGresult *r;

    (void) state;
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    r = PQexec(c, "SELECT loom.topic_create('t', 1, 3155760000001, NULL, "
                  "NULL, NULL)");
    assert_int_equal(PQresultStatus(r), PGRES_FATAL_ERROR);
    assert_string_equal(PQresultErrorField(r, PG_DIAG_SQLSTATE), "LM011");
    PQclear(r);
    r = PQexec(c, "SELECT loom.topic_create('t', 1, NULL, NULL, "
                  "9000000000000000, NULL)");
    assert_string_equal(PQresultErrorField(r, PG_DIAG_SQLSTATE), "LM011");
    PQclear(r);
    PQfinish(c);

    cfg.partitions = 1;
    cfg.retention_ms = MAX_MS;
    cfg.dedup_window_ms = MAX_MS;
    assert_int_equal(loom_topic_create(S, "t", &cfg), LOOM_OK);
    assert_int_equal(publish_id("t", id), 0);
    assert_int_equal(publish_id("t", id), -1);
    assert_int_equal(loom_topics_retention(S, &removed), LOOM_OK);
    assert_int_equal(removed, 0);
    assert_int_equal(describe("t").messages, 1);
}

static void
test_topics_create_existing_is_duplicate(void **state)
{
    loom_topic_config cfg = LOOM_TOPIC_CONFIG_INIT;

    (void) state;
    create("orders", 2);
    cfg.partitions = 4;
    assert_int_equal(loom_topic_create(S, "orders", &cfg), LOOM_EDUPLICATE);
    assert_errmsg_has("topic \"orders\" already exists");
    assert_string_equal(loom_store_sqlstate(S), "LM014");
    assert_int_equal(describe("orders").cfg.partitions, 2);
}

static void
test_topics_null_arguments_are_refused(void **state)
{
    loom_topic_config cfg = LOOM_TOPIC_CONFIG_INIT;
    loom_topic_position pos = {LOOM_START_EARLIEST, 0, 0};
    loom_topic_info info;
    int64_t removed = 7;
    int n = 7;

    (void) state;
    create("t", 1);
    cfg.partitions = 1;
    assert_int_equal(loom_topic_create(NULL, "t2", &cfg), LOOM_EINVAL);
    assert_int_equal(loom_topic_create(S, "t2", NULL), LOOM_EINVAL);
    assert_errmsg_has("topic \"t2\": no settings");
    assert_int_equal(loom_topic_alter(NULL, "t", &cfg), LOOM_EINVAL);
    assert_int_equal(loom_topic_alter(S, "t", NULL), LOOM_EINVAL);
    assert_int_equal(loom_topic_alter(S, NULL, &cfg), LOOM_EINVAL);
    assert_int_equal(loom_topic_describe(NULL, "t", &info), LOOM_EINVAL);
    assert_int_equal(loom_topic_describe(S, "t", NULL), LOOM_EINVAL);
    assert_int_equal(loom_topic_describe(S, NULL, &info), LOOM_EINVAL);
    assert_int_equal(loom_topic_reset(NULL, "g", "t", -1, &pos, &n),
                     LOOM_EINVAL);
    assert_int_equal(n, 0);
    assert_int_equal(loom_topic_reset(S, NULL, "t", -1, &pos, NULL),
                     LOOM_EINVAL);
    assert_errmsg_has("consumer group name is NULL");
    assert_int_equal(loom_topic_reset(S, "g", NULL, -1, &pos, NULL),
                     LOOM_EINVAL);
    assert_int_equal(loom_topic_reset(S, "g", "t", -1, NULL, NULL),
                     LOOM_EINVAL);
    assert_errmsg_has("no position");
    n = 7;
    assert_int_equal(loom_topic_redrive(NULL, "t", NULL, -1, -1, &n),
                     LOOM_EINVAL);
    assert_int_equal(n, 0);
    assert_int_equal(loom_topic_redrive(S, NULL, NULL, -1, -1, NULL),
                     LOOM_EINVAL);
    assert_int_equal(loom_topics_retention(NULL, &removed), LOOM_EINVAL);
    assert_int_equal(removed, 0);
    /* Nothing was created or moved by any of them. */
    assert_int_equal(sqlf_ll("SELECT count(*) FROM loom.topics"), 1);
    assert_int_equal(sqlf_ll("SELECT count(*) FROM loom.topic_groups"), 0);
}

/* ------------------------------------------------------------------ */
/* Alter                                                               */

static void
test_topics_alter_changes_only_what_is_set(void **state)
{
    loom_topic_config cfg = LOOM_TOPIC_CONFIG_INIT;
    loom_topic_info info;

    (void) state;
    cfg.partitions = 3;
    cfg.retention_ms = 60000;
    cfg.retention_bytes = 4096;
    assert_int_equal(loom_topic_create(S, "orders", &cfg), LOOM_OK);

    cfg = (loom_topic_config) LOOM_TOPIC_CONFIG_INIT;
    cfg.max_deliveries = 7;
    assert_int_equal(loom_topic_alter(S, "orders", &cfg), LOOM_OK);
    info = describe("orders");
    assert_int_equal(info.cfg.partitions, 3);
    assert_int_equal(info.cfg.retention_ms, 60000);
    assert_int_equal(info.cfg.retention_bytes, 4096);
    assert_int_equal(info.cfg.dedup_window_ms, 300000);
    assert_int_equal(info.cfg.max_deliveries, 7);

    /* Growing adds partitions; a retention of 0 removes the limit. */
    cfg = (loom_topic_config) LOOM_TOPIC_CONFIG_INIT;
    cfg.partitions = 5;
    cfg.retention_ms = 0;
    cfg.dedup_window_ms = 0;
    assert_int_equal(loom_topic_alter(S, "orders", &cfg), LOOM_OK);
    info = describe("orders");
    assert_int_equal(info.cfg.partitions, 5);
    assert_int_equal(info.cfg.retention_ms, 0);
    assert_int_equal(info.cfg.retention_bytes, 4096);
    assert_int_equal(info.cfg.dedup_window_ms, 0);
    assert_int_equal(info.cfg.max_deliveries, 7);
    assert_int_equal(sqlf_ll("SELECT max(partition) + 1 FROM "
                             "loom.topic_partitions"),
                     5);

    /* The same count again is no change, not an error. */
    cfg = (loom_topic_config) LOOM_TOPIC_CONFIG_INIT;
    cfg.partitions = 5;
    cfg.retention_bytes = 0;
    assert_int_equal(loom_topic_alter(S, "orders", &cfg), LOOM_OK);
    info = describe("orders");
    assert_int_equal(info.cfg.partitions, 5);
    assert_int_equal(info.cfg.retention_bytes, 0);
}

static void
test_topics_alter_refuses_shrinking_and_bad_counts(void **state)
{
    static const int32_t bad[] = {0, -2, 4097, 5000};
    loom_topic_config cfg = LOOM_TOPIC_CONFIG_INIT;

    (void) state;
    create("orders", 5);
    cfg.partitions = 3;
    assert_int_equal(loom_topic_alter(S, "orders", &cfg), LOOM_EINVAL);
    assert_errmsg_has("has 5 partitions; cannot change to 3");
    assert_errmsg_has("partitions can only be added");
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cfg.partitions = bad[i];
        assert_int_equal(loom_topic_alter(S, "orders", &cfg), LOOM_EINVAL);
        assert_errmsg_has("partitions");
    }
    cfg.partitions = -1;
    cfg.max_deliveries = 0;
    assert_int_equal(loom_topic_alter(S, "orders", &cfg), LOOM_EINVAL);
    assert_errmsg_has("max_deliveries 0");
    assert_int_equal(describe("orders").cfg.partitions, 5);
    assert_int_equal(describe("orders").cfg.max_deliveries, 5);
}

static void
test_topics_unknown_topic_is_not_found(void **state)
{
    loom_topic_config cfg = LOOM_TOPIC_CONFIG_INIT;
    loom_topic_position pos = {LOOM_START_LATEST, 0, 0};
    loom_topic_info info;

    (void) state;
    cfg.max_deliveries = 2;
    assert_int_equal(loom_topic_alter(S, "nope", &cfg), LOOM_ENOTFOUND);
    assert_errmsg_has("topic \"nope\" does not exist");
    assert_errmsg_has("loomctl topics create nope --partitions N");
    assert_int_equal(loom_topic_describe(S, "nope", &info), LOOM_ENOTFOUND);
    assert_errmsg_has("topic \"nope\" does not exist");
    assert_errmsg_has("loomctl topics create nope --partitions N");
    assert_string_equal(info.name, "");
    assert_int_equal(loom_topic_reset(S, "g", "nope", -1, &pos, NULL),
                     LOOM_ENOTFOUND);
    assert_errmsg_has("loomctl topics create nope --partitions N");
    assert_int_equal(loom_topic_redrive(S, "nope", NULL, -1, -1, NULL),
                     LOOM_ENOTFOUND);
    assert_errmsg_has("topic \"nope\" does not exist");
}

/* ------------------------------------------------------------------ */
/* Sizes and retention                                                 */

static void
test_topics_describe_counts_stored_messages_and_bytes(void **state)
{
    (void) state;
    create("t", 2);
    publish("t", 0, 4, 10);
    publish("t", 1, 3, 100);
    /* A key and headers count as well. */
    sqlf_ll("SELECT count(*) FROM loom.topic_publish('t', ARRAY[1], NULL, "
            "NULL, ARRAY[gen_random_uuid()], ARRAY['\\x6b6579'::bytea], "
            "ARRAY['\\x0102'::bytea], ARRAY['\\x0a0b0c0d'::bytea], NULL)");
    assert_int_equal(describe("t").messages, 8);
    assert_int_equal(describe("t").bytes, 4 * 10 + 3 * 100 + 3 + 2 + 4);

    /* What retention moved past no longer counts, even before the rows
     * are deleted. */
    sqlf("UPDATE loom.topic_partitions SET start_offset = 2 "
         "WHERE partition = 0");
    assert_int_equal(describe("t").messages, 6);
    assert_int_equal(describe("t").bytes, 2 * 10 + 3 * 100 + 9);
    sqlf("UPDATE loom.topic_partitions SET start_offset = next_offset");
    assert_int_equal(describe("t").messages, 0);
    assert_int_equal(describe("t").bytes, 0);
}

static void
test_topics_retention_by_age_removes_the_oldest(void **state)
{
    loom_topic_config cfg = LOOM_TOPIC_CONFIG_INIT;
    int64_t removed = -1;

    (void) state;
    cfg.partitions = 2;
    cfg.retention_ms = 60000;
    assert_int_equal(loom_topic_create(S, "aged", &cfg), LOOM_OK);
    create("kept", 1); /* no retention: never touched */
    publish("aged", 0, 5, 10);
    publish("aged", 1, 2, 10);
    publish("kept", 0, 3, 10);
    sqlf("UPDATE loom.topic_messages SET published_at = now() - "
         "interval '2 minutes' WHERE \"offset\" < 3");

    assert_int_equal(loom_topics_retention(S, &removed), LOOM_OK);
    assert_int_equal(removed, 3 + 2);
    assert_int_equal(start_offset("aged", 0), 3);
    assert_int_equal(start_offset("aged", 1), 2);
    assert_int_equal(start_offset("kept", 0), 0);
    assert_int_equal(describe("aged").messages, 2);
    assert_int_equal(describe("aged").bytes, 20);
    assert_int_equal(describe("kept").messages, 3);
    assert_int_equal(sqlf_ll("SELECT min(\"offset\") FROM "
                             "loom.topic_messages WHERE topic_id = "
                             "(SELECT id FROM loom.topics WHERE name = "
                             "'aged') AND partition = 0"),
                     3);

    /* Nothing more is due: a second run removes nothing. */
    assert_int_equal(loom_topics_retention(S, &removed), LOOM_OK);
    assert_int_equal(removed, 0);
}

static void
test_topics_retention_by_bytes_keeps_the_newest(void **state)
{
    loom_topic_config cfg = LOOM_TOPIC_CONFIG_INIT;
    int64_t removed = -1;

    (void) state;
    cfg.partitions = 1;
    cfg.retention_bytes = 25;
    assert_int_equal(loom_topic_create(S, "sized", &cfg), LOOM_OK);
    publish("sized", 0, 5, 10); /* 50 bytes */

    /* As Kafka: the oldest go while what stays is still at least the
     * limit, so 30 bytes stay (20 would be under 25). */
    assert_int_equal(loom_topics_retention(S, &removed), LOOM_OK);
    assert_int_equal(removed, 2);
    assert_int_equal(start_offset("sized", 0), 2);
    assert_int_equal(describe("sized").messages, 3);
    assert_int_equal(describe("sized").bytes, 30);
    assert_int_equal(sqlf_ll("SELECT sum(octet_length(payload)) FROM "
                             "loom.topic_messages"),
                     30);

    publish("sized", 0, 1, 25);
    assert_int_equal(loom_topics_retention(S, &removed), LOOM_OK);
    assert_int_equal(removed, 3);
    assert_int_equal(start_offset("sized", 0), 5);
    assert_int_equal(describe("sized").bytes, 25);
}

/* Retention deletes in steps of 10,000 rows and loops until a step
 * removes nothing: all 25,000 go in one call. */
static void
test_topics_retention_runs_every_step(void **state)
{
    loom_topic_config cfg = LOOM_TOPIC_CONFIG_INIT;
    int64_t removed = -1;

    (void) state;
    cfg.partitions = 1;
    cfg.retention_ms = 1000;
    cfg.dedup_window_ms = 0;
    assert_int_equal(loom_topic_create(S, "bulk", &cfg), LOOM_OK);
    publish("bulk", 0, 25000, 1);
    sqlf("UPDATE loom.topic_messages SET published_at = now() - "
         "interval '1 hour'");
    assert_int_equal(loom_topics_retention(S, &removed), LOOM_OK);
    assert_int_equal(removed, 25000);
    assert_int_equal(sqlf_ll("SELECT count(*) FROM loom.topic_messages"), 0);
    assert_int_equal(start_offset("bulk", 0), 25000);
}

static void
test_topics_dedup_window_drops_repeats_until_the_copy_is_older(void **state)
{
    static const char id[] = "0190f5c2-8a41-7cc3-9d52-1b7e0f3a4c11";
    loom_topic_config cfg = LOOM_TOPIC_CONFIG_INIT;

    (void) state;
    cfg.partitions = 1;
    cfg.dedup_window_ms = 60000;
    assert_int_equal(loom_topic_create(S, "dedup", &cfg), LOOM_OK);
    assert_int_equal(publish_id("dedup", id), 0);
    assert_int_equal(publish_id("dedup", id), -1);
    assert_int_equal(describe("dedup").messages, 1);

    /* Once the stored copy is older than the window, the same id is
     * stored again. */
    sqlf("UPDATE loom.topic_messages SET published_at = now() - interval "
         "'2 min'");
    assert_int_equal(publish_id("dedup", id), 1);
    assert_int_equal(publish_id("dedup", id), -1);

    /* Without a window every copy is stored. */
    cfg = (loom_topic_config) LOOM_TOPIC_CONFIG_INIT;
    cfg.dedup_window_ms = 0;
    assert_int_equal(loom_topic_alter(S, "dedup", &cfg), LOOM_OK);
    assert_int_equal(publish_id("dedup", id), 2);
    assert_int_equal(publish_id("dedup", id), 3);
}

/* ------------------------------------------------------------------ */
/* Resetting offsets                                                   */

static void
reset_ok(const char *group, const char *topic, int32_t partition,
         loom_start start, int64_t value, int want_n)
{
    loom_topic_position pos = {start, value, value};
    int n = -1;
    loom_err rc = loom_topic_reset(S, group, topic, partition, &pos, &n);

    if (rc != LOOM_OK)
        fail_msg("reset: %s: %s", loom_err_name(rc), loom_store_errmsg(S));
    assert_int_equal(n, want_n);
}

static void
test_topics_reset_moves_a_groups_offsets(void **state)
{
    (void) state;
    create("t", 2);
    publish("t", 0, 3, 1);
    publish("t", 1, 2, 1);

    reset_ok("g", "t", -1, LOOM_START_LATEST, 0, 2);
    assert_int_equal(committed("g", "t", 0), 3);
    assert_int_equal(committed("g", "t", 1), 2);
    reset_ok("g", "t", -1, LOOM_START_EARLIEST, 0, 2);
    assert_int_equal(committed("g", "t", 0), 0);
    assert_int_equal(committed("g", "t", 1), 0);
    reset_ok("g", "t", -1, LOOM_START_OFFSET, 1, 2);
    assert_int_equal(committed("g", "t", 0), 1);
    assert_int_equal(committed("g", "t", 1), 1);
    /* An offset past the end is clamped to it. */
    reset_ok("g", "t", 1, LOOM_START_OFFSET, 10, 1);
    assert_int_equal(committed("g", "t", 0), 1);
    assert_int_equal(committed("g", "t", 1), 2);
    /* Earliest is the first offset retention kept. */
    sqlf("UPDATE loom.topic_partitions SET start_offset = 2 "
         "WHERE partition = 0");
    reset_ok("g", "t", 0, LOOM_START_EARLIEST, 0, 1);
    assert_int_equal(committed("g", "t", 0), 2);
}

static void
test_topics_reset_by_time(void **state)
{
    int64_t now_us = (int64_t) time(NULL) * 1000000;

    (void) state;
    create("t", 1);
    publish("t", 0, 4, 1);
    /* Offsets 0 and 1 are an hour old, 2 and 3 new. */
    sqlf("UPDATE loom.topic_messages SET published_at = now() - "
         "interval '1 hour' WHERE \"offset\" < 2");
    reset_ok("g", "t", -1, LOOM_START_TIME, now_us - 600 * 1000000LL, 1);
    assert_int_equal(committed("g", "t", 0), 2);
    reset_ok("g", "t", -1, LOOM_START_TIME, now_us - 7200 * 1000000LL, 1);
    assert_int_equal(committed("g", "t", 0), 0);
    /* After everything: the end. */
    reset_ok("g", "t", -1, LOOM_START_TIME, now_us + 600 * 1000000LL, 1);
    assert_int_equal(committed("g", "t", 0), 4);
}

static void
test_topics_reset_drops_retries_and_refuses_bad_input(void **state)
{
    loom_topic_position pos = {LOOM_START_EARLIEST, 0, 0};
    char group[LOOM_MAX_GROUP_NAME + 2];

    (void) state;
    create("t", 2);
    publish("t", 0, 3, 1);
    sqlf("INSERT INTO loom.topic_retries VALUES ('g', %lld, 0, 1, 2, now(), "
         "'x'), ('g', %lld, 1, 0, 1, now(), 'y'), ('h', %lld, 0, 1, 1, "
         "now(), 'z')",
         topic_id("t"), topic_id("t"), topic_id("t"));
    reset_ok("g", "t", 0, LOOM_START_LATEST, 0, 1);
    /* Only the group's retries on the partition moved are gone. */
    assert_int_equal(sqlf_ll("SELECT count(*) FROM loom.topic_retries"), 2);
    assert_int_equal(sqlf_ll("SELECT count(*) FROM loom.topic_retries "
                             "WHERE group_name = 'g' AND partition = 0"),
                     0);

    assert_int_equal(loom_topic_reset(S, "g", "t", 7, &pos, NULL), LOOM_EINVAL);
    assert_errmsg_has("has no partition 7");
    assert_int_equal(loom_topic_reset(S, "g", "t", 4096, &pos, NULL),
                     LOOM_EINVAL);
    assert_int_equal(loom_topic_reset(S, "", "t", -1, &pos, NULL), LOOM_EINVAL);
    assert_errmsg_has("consumer group name is empty");
    assert_int_equal(loom_topic_reset(S, "g\xff", "t", -1, &pos, NULL),
                     LOOM_EINVAL);
    assert_errmsg_has("not valid UTF-8");
    memset(group, 'g', sizeof group - 1);
    group[sizeof group - 1] = '\0';
    assert_int_equal(loom_topic_reset(S, group, "t", -1, &pos, NULL),
                     LOOM_EINVAL);
    assert_errmsg_has("longer than 249 bytes");
    assert_int_equal(loom_topic_reset(S, "g", "t..", -1, &pos, NULL),
                     LOOM_EINVAL);
    pos.start = (loom_start) 9;
    assert_int_equal(loom_topic_reset(S, "g", "t", -1, &pos, NULL),
                     LOOM_EINVAL);
    assert_errmsg_has("unknown start 9");
    pos.start = LOOM_START_OFFSET;
    pos.offset = -1;
    assert_int_equal(loom_topic_reset(S, "g", "t", -1, &pos, NULL),
                     LOOM_EINVAL);
    assert_errmsg_has("negative");
    pos.start = LOOM_START_TIME;
    pos.time = INT64_MIN;
    assert_int_equal(loom_topic_reset(S, "g", "t", -1, &pos, NULL),
                     LOOM_EINVAL);
    assert_errmsg_has("4713 BC");
    assert_int_equal(committed("g", "t", 0), 3);
    assert_int_equal(sqlf_ll("SELECT count(*) FROM loom.topic_offsets"), 1);
}

/* The reset fences the group's members: each partition gets a new
 * generation, so a member of the old one cannot commit over the reset. */
static void
test_topics_reset_fences_the_members(void **state)
{
    long long gen;
    PGconn *c;
    PGresult *r;
    char sql[512];

    (void) state;
    create("t", 1);
    publish("t", 0, 5, 1);
    gen = join("g", "t");
    sqlf("SELECT loom.topic_commit('g', '" MEMBER "', %lld, %lld, 0, 4)", gen,
         topic_id("t"));
    reset_ok("g", "t", -1, LOOM_START_EARLIEST, 0, 1);
    assert_int_equal(committed("g", "t", 0), 0);
    assert_true(sqlf_ll("SELECT generation FROM loom.topic_assignments") > gen);

    c = PQconnectdb(loomt_dsn());
    snprintf(sql, sizeof sql,
             "SELECT loom.topic_commit('g', '" MEMBER "', %lld, %lld, 0, 5)",
             gen, topic_id("t"));
    r = PQexec(c, sql);
    assert_int_equal(PQresultStatus(r), PGRES_FATAL_ERROR);
    assert_string_equal(PQresultErrorField(r, PG_DIAG_SQLSTATE), "LM012");
    PQclear(r);
    PQfinish(c);
    assert_int_equal(committed("g", "t", 0), 0);
}

static PGresult *
exec_ok(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);

    if (PQresultStatus(r) != PGRES_TUPLES_OK &&
        PQresultStatus(r) != PGRES_COMMAND_OK)
        fail_msg("%s: %s", sql, PQresultErrorMessage(r));
    return r;
}

/*
 * A reset while a member's commit is in flight on the same partition:
 * the commit holds a share lock on its assignment (group_fence) and then
 * writes the offset. The reset must take the assignment first too, so it
 * waits for the commit instead of deadlocking with it (it used to write
 * the offsets first), and its offsets win.
 */
static void
test_topics_reset_waits_for_a_commit_in_flight(void **state)
{
    PGconn *member = PQconnectdb(loomt_dsn());
    PGconn *admin = PQconnectdb(loomt_dsn());
    time_t deadline = time(NULL) + 30;
    long long gen;
    char sql[512];
    PGresult *r;

    (void) state;
    assert_int_equal(PQstatus(member), CONNECTION_OK);
    assert_int_equal(PQstatus(admin), CONNECTION_OK);
    create("t", 2);
    publish("t", 0, 5, 1);
    gen = join("g", "t");

    PQclear(exec_ok(member, "BEGIN"));
    snprintf(sql, sizeof sql,
             "SELECT loom.group_fence('g', '" MEMBER "', %lld, %lld, 0)", gen,
             topic_id("t"));
    PQclear(exec_ok(member, sql));

    assert_int_equal(PQsendQuery(admin, "SELECT loom.topic_reset('g', 't', "
                                        "NULL, 'latest', NULL, NULL)"),
                     1);
    /* Until the reset waits for the member's lock. */
    while (sqlf_ll("SELECT count(*) FROM pg_stat_activity WHERE pid = %d "
                   "AND wait_event_type = 'Lock'",
                   PQbackendPID(admin)) == 0) {
        assert_true(time(NULL) < deadline);
        nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
    }
    snprintf(sql, sizeof sql,
             "SELECT loom.topic_commit('g', '" MEMBER "', %lld, %lld, 0, 3)",
             gen, topic_id("t"));
    PQclear(exec_ok(member, sql));
    PQclear(exec_ok(member, "COMMIT"));

    r = PQgetResult(admin);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("reset: %s", PQresultErrorMessage(r));
    assert_string_equal(PQgetvalue(r, 0, 0), "2");
    PQclear(r);
    assert_null(PQgetResult(admin));
    PQfinish(admin);
    PQfinish(member);
    assert_int_equal(committed("g", "t", 0), 5); /* latest, not 3 */
}

/* ------------------------------------------------------------------ */
/* Re-driving dead letters                                             */

static long long
retries(const char *where)
{
    return sqlf_ll("SELECT count(*) FROM loom.topic_retries WHERE %s", where);
}

static void
test_topics_redrive_returns_dead_letters_to_their_group(void **state)
{
    long long gen;
    int n = -1;

    (void) state;
    create("orders", 2);
    publish("orders", 1, 3, 4);
    gen = join("billing", "orders");
    assert_int_equal(dead_letter("billing", gen, "orders", 1, 0), 0);
    assert_int_equal(dead_letter("billing", gen, "orders", 1, 2), 1);
    /* The copies are messages of orders.dlq, on the same partition. */
    assert_int_equal(describe("orders.dlq").messages, 2);
    assert_int_equal(describe("orders.dlq").cfg.dedup_window_ms, 0);
    assert_int_equal(retries("true"), 0);

    assert_int_equal(loom_topic_redrive(S, "orders", NULL, -1, -1, &n),
                     LOOM_OK);
    assert_int_equal(n, 2);
    assert_int_equal(retries("group_name = 'billing' AND partition = 1 "
                             "AND \"offset\" IN (0, 2) AND deliveries = 0 "
                             "AND error IS NULL AND visible_at <= now()"),
                     2);
    assert_int_equal(sqlf_ll("SELECT count(*) FROM loom.topic_dead_letters "
                             "WHERE redriven_at IS NOT NULL"),
                     2);
    /* Each dead letter is re-driven once. */
    assert_int_equal(loom_topic_redrive(S, "orders", NULL, -1, -1, &n),
                     LOOM_OK);
    assert_int_equal(n, 0);
}

static void
test_topics_redrive_one_or_one_group(void **state)
{
    long long gen_b, gen_s;
    int n = -1;

    (void) state;
    create("orders", 1);
    publish("orders", 0, 3, 4);
    gen_b = join("billing", "orders");
    gen_s = join("shipping", "orders");
    dead_letter("billing", gen_b, "orders", 0, 0);
    dead_letter("billing", gen_b, "orders", 0, 1);
    dead_letter("shipping", gen_s, "orders", 0, 1);

    /* dlq offset 1 is billing's dead letter of offset 1. */
    assert_int_equal(loom_topic_redrive(S, "orders", NULL, 0, 1, &n), LOOM_OK);
    assert_int_equal(n, 1);
    assert_int_equal(retries("group_name = 'billing' AND \"offset\" = 1"), 1);
    assert_int_equal(retries("true"), 1);
    assert_int_equal(loom_topic_redrive(S, "orders", "nobody", -1, -1, &n),
                     LOOM_OK);
    assert_int_equal(n, 0);
    assert_int_equal(loom_topic_redrive(S, "orders", "shipping", -1, -1, &n),
                     LOOM_OK);
    assert_int_equal(n, 1);
    assert_int_equal(retries("group_name = 'shipping' AND \"offset\" = 1"), 1);
    assert_int_equal(retries("true"), 2);

    /* A partition without an offset (or the reverse) is refused. */
    assert_int_equal(loom_topic_redrive(S, "orders", NULL, 0, -1, &n),
                     LOOM_EINVAL);
    assert_errmsg_has("orders.dlq");
    assert_int_equal(loom_topic_redrive(S, "orders", NULL, -1, 0, &n),
                     LOOM_EINVAL);
    assert_int_equal(loom_topic_redrive(S, "orders", NULL, 0, -2, &n),
                     LOOM_EINVAL);
    assert_int_equal(loom_topic_redrive(S, "orders", "", -1, -1, &n),
                     LOOM_EINVAL);
    assert_int_equal(loom_topic_redrive(S, "orders", NULL, 4096, 0, &n),
                     LOOM_EINVAL);
    assert_int_equal(retries("true"), 2);
}

static void
test_topics_redrive_skips_what_retention_removed(void **state)
{
    loom_topic_config cfg = LOOM_TOPIC_CONFIG_INIT;
    int64_t removed = 0;
    long long gen;
    int n = -1;

    (void) state;
    cfg.partitions = 1;
    cfg.retention_ms = 60000;
    assert_int_equal(loom_topic_create(S, "orders", &cfg), LOOM_OK);
    publish("orders", 0, 3, 4);
    gen = join("billing", "orders");
    dead_letter("billing", gen, "orders", 0, 0);
    dead_letter("billing", gen, "orders", 0, 2);
    sqlf("UPDATE loom.topic_messages SET published_at = now() - "
         "interval '1 hour' WHERE topic_id = %lld AND \"offset\" < 2",
         topic_id("orders"));
    assert_int_equal(loom_topics_retention(S, &removed), LOOM_OK);
    assert_int_equal(removed, 2);

    assert_int_equal(loom_topic_redrive(S, "orders", NULL, -1, -1, &n),
                     LOOM_OK);
    assert_int_equal(n, 1);
    assert_int_equal(retries("\"offset\" = 2"), 1);
    assert_int_equal(retries("true"), 1);
    /* The other stays a dead letter: it can never be re-driven. */
    assert_int_equal(sqlf_ll("SELECT count(*) FROM loom.topic_dead_letters "
                             "WHERE redriven_at IS NULL AND \"offset\" = 0"),
                     1);
}

int
main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, NULL)
    const struct CMUnitTest tests[] = {
        T(test_topics_create_with_defaults_then_describe),
        T(test_topics_create_with_every_setting),
        T(test_topics_create_refuses_bad_names),
        T(test_topics_create_refuses_bad_partition_counts),
        T(test_topics_create_refuses_settings_out_of_range),
        T(test_topics_windows_stop_at_100_years),
        T(test_topics_create_existing_is_duplicate),
        T(test_topics_null_arguments_are_refused),
        T(test_topics_alter_changes_only_what_is_set),
        T(test_topics_alter_refuses_shrinking_and_bad_counts),
        T(test_topics_unknown_topic_is_not_found),
        T(test_topics_describe_counts_stored_messages_and_bytes),
        T(test_topics_retention_by_age_removes_the_oldest),
        T(test_topics_retention_by_bytes_keeps_the_newest),
        T(test_topics_retention_runs_every_step),
        T(test_topics_dedup_window_drops_repeats_until_the_copy_is_older),
        T(test_topics_reset_moves_a_groups_offsets),
        T(test_topics_reset_by_time),
        T(test_topics_reset_drops_retries_and_refuses_bad_input),
        T(test_topics_reset_fences_the_members),
        T(test_topics_reset_waits_for_a_commit_in_flight),
        T(test_topics_redrive_returns_dead_letters_to_their_group),
        T(test_topics_redrive_one_or_one_group),
        T(test_topics_redrive_skips_what_retention_removed),
    };
    return cmocka_run_group_tests_name("outbox.topics_admin", tests,
                                       group_setup, group_teardown);
}
