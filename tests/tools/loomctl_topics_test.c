/*
 * loomctl topics end to end: the built loomctl binary creates, alters,
 * lists and describes topics in this executable's own database; messages,
 * group members, committed offsets and dead letters are made with the
 * schema's SQL functions (loom.topic_publish, loom.group_join,
 * loom.topic_commit, loom.topic_dead_letter), as a running transport
 * would; the test checks the figures loomctl prints and what it changed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lctest.h"
#include "pgtest.h"

/* The member every test joins its groups with. */
#define MEMBER "0190f5c2-8a41-7cc3-9d52-1b7e0f3a4c11"

/* ------------------------------------------------------------------ */
/* Helpers                                                             */

static long long sqlf_ll(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

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

/* Publishes n messages of `size` payload bytes to one partition. */
static void
publish(const char *topic, int partition, int n, int size)
{
    assert_int_equal(
        sqlf_ll("SELECT count(*) FROM loom.topic_publish('%s', "
                "array_fill(%d, ARRAY[%d]), NULL, NULL, "
                "ARRAY(SELECT gen_random_uuid() FROM generate_series(1, %d)), "
                "NULL, NULL, array_fill(convert_to(repeat('x', %d), 'UTF8'), "
                "ARRAY[%d]), NULL)",
                topic, partition, n, n, size, n),
        n);
}

static long long
topic_id(const char *name)
{
    return sqlf_ll("SELECT id FROM loom.topics WHERE name = '%s'", name);
}

/* Joins MEMBER to `group` reading `topic`; returns the generation. */
static long long
join(const char *group, const char *topic)
{
    long long gen = sqlf_ll("SELECT loom.group_join('%s', '" MEMBER "', "
                            "'test', ARRAY['%s'], 'range', 60000)",
                            group, topic);

    sqlf_ll("SELECT count(*) FROM loom.group_assignment('%s', '" MEMBER "', "
            "'earliest', NULL, NULL)",
            group);
    return gen;
}

static void
commit(const char *group, long long gen, const char *topic, int partition,
       long long offset)
{
    sqlf_ll("SELECT 1 FROM loom.topic_commit('%s', '" MEMBER "', %lld, %lld, "
            "%d, %lld)",
            group, gen, topic_id(topic), partition, offset);
}

static void
dead_letter(const char *group, long long gen, const char *topic, int partition,
            long long offset, const char *error)
{
    sqlf_ll("SELECT loom.topic_dead_letter('%s', '" MEMBER "', %lld, %lld, "
            "%d, %lld, 5, '%s', NULL)",
            group, gen, topic_id(topic), partition, offset, error);
}

static long long
committed(const char *group, const char *topic, int partition)
{
    return sqlf_ll("SELECT \"offset\" FROM loom.topic_offsets WHERE "
                   "group_name = '%s' AND topic_id = %lld AND partition = %d",
                   group, topic_id(topic), partition);
}

/* The first line of `out` containing `needle`, with every run of spaces
 * made one space, so a table row compares as its cells in order. */
static void
row(const char *out, const char *needle, char *line, size_t cap)
{
    const char *at = strstr(out, needle), *start, *end;
    size_t n = 0;

    if (at == NULL)
        fail_msg("no line with \"%s\" in:\n%s", needle, out);
    for (start = at; start > out && start[-1] != '\n'; start--)
        ;
    end = strchr(at, '\n');
    assert_non_null(end);
    for (const char *p = start; p < end && n + 1 < cap; p++) {
        if (*p == ' ' && (n == 0 || line[n - 1] == ' '))
            continue;
        line[n++] = *p;
    }
    while (n > 0 && line[n - 1] == ' ')
        n--;
    line[n] = '\0';
}

static void
assert_row(const char *out, const char *needle, const char *want)
{
    char line[1024];

    row(out, needle, line, sizeof line);
    if (strcmp(line, want) != 0)
        fail_msg("row \"%s\", expected \"%s\", in:\n%s", line, want, out);
}

static void
assert_has(const char *text, const char *needle)
{
    if (strstr(text, needle) == NULL)
        fail_msg("\"%s\" is not in:\n%s", needle, text);
}

/* ------------------------------------------------------------------ */
/* Fixture                                                             */

static int
group_setup(void **state)
{
    (void) state;
    loomt_db_create("loomctl_topics");
    setenv("LOOM_DATABASE_URL", loomt_dsn(), 1);
    loom_store_close(loomt_store_open()); /* migrates */
    return 0;
}

static int
group_teardown(void **state)
{
    (void) state;
    loomt_db_drop();
    return 0;
}

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
/* create, list, describe                                              */

static void
test_topics_create_list_describe(void **state)
{
    char line[4096], raw[64];
    run r;

    (void) state;
    r = lc("topics list");
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, "(no topics; create one with `loomctl topics "
                               "create NAME --partitions N`)\n");
    run_free(&r);

    r = lc("topics create orders --partitions 3 --retention-ms 604800000 "
           "--retention-bytes 1048576 --max-deliveries 3");
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.err, "");
    assert_string_equal(r.out, "created topic orders: 3 partitions, "
                               "retention 7d, 1.0 MB, dedup window 5m, max "
                               "deliveries 3\n");
    run_free(&r);
    r = lc("topics create payments.eu --partitions 1 --dedup-window-ms 0");
    assert_int_equal(r.rc, 0);
    run_free(&r);
    publish("orders", 0, 3, 10);
    publish("orders", 2, 2, 100);

    r = lc("topics list");
    assert_int_equal(r.rc, 0);
    assert_int_equal(count_lines(r.out), 3);
    assert_row(r.out, "TOPIC",
               "TOPIC PARTITIONS MESSAGES BYTES RETENTION DEDUP WINDOW MAX "
               "DELIVERIES");
    assert_row(r.out, "orders", "orders 3 5 230 7d, 1.0 MB 5m 3");
    assert_row(r.out, "payments.eu", "payments.eu 1 0 0 forever off 5");
    run_free(&r);

    r = lc("topics describe orders");
    assert_int_equal(r.rc, 0);
    assert_row(r.out, "partitions ", "partitions 3");
    assert_row(r.out, "messages ", "messages 5");
    assert_row(r.out, "bytes ", "bytes 230 (230 B)");
    assert_row(r.out, "retention age", "retention age 7d (604800000 ms)");
    assert_row(r.out, "retention size",
               "retention size 1.0 MB per partition (1048576 bytes)");
    assert_row(r.out, "dedup window", "dedup window 5m (300000 ms)");
    assert_row(r.out, "max deliveries", "max deliveries 3");
    assert_row(r.out, "START OFFSET",
               "PARTITION START OFFSET END OFFSET MESSAGES BYTES");
    assert_row(r.out, "        0  ", "0 0 3 3 30");
    assert_row(r.out, "        2  ", "2 0 2 2 200");
    assert_has(r.out, "(no consumer group has read it yet)");
    run_free(&r);

    r = lc("topics describe orders --json");
    assert_int_equal(r.rc, 0);
    only_json_line(r.out, line, sizeof line);
    assert_int_equal(get_i64(line, "partitions"), 3);
    assert_int_equal(get_i64(line, "messages"), 5);
    assert_int_equal(get_i64(line, "bytes"), 230);
    assert_int_equal(get_i64(line, "retention_ms"), 604800000);
    assert_int_equal(get_i64(line, "retention_bytes"), 1048576);
    assert_int_equal(get_i64(line, "max_deliveries"), 3);
    run_free(&r);

    r = lc("topics list --json");
    assert_int_equal(r.rc, 0);
    assert_int_equal(count_lines(r.out), 2);
    assert_json_lines(r.out);
    line_at(r.out, 1, line, sizeof line);
    get_raw(line, "retention_ms", raw, sizeof raw);
    assert_string_equal(raw, "null");
    assert_int_equal(get_i64(line, "dedup_window_ms"), 0);
    run_free(&r);
}

static void
test_topics_create_errors(void **state)
{
    run r;

    (void) state;
    r = lc("topics create orders --partitions 2");
    assert_int_equal(r.rc, 0);
    run_free(&r);
    /* Refused by the database: a runtime error. */
    r = lc("topics create orders --partitions 4");
    assert_int_equal(r.rc, 1);
    assert_has(r.err, "topics create: topic \"orders\" already exists");
    run_free(&r);
    /* Caught before anything is sent: usage errors. */
    r = lc("topics create orders..x --partitions 2");
    assert_int_equal(r.rc, 2);
    assert_has(r.err, "topic name \"orders..x\" has an empty word");
    run_free(&r);
    r = lc("topics create 'a b' --partitions 2");
    assert_int_equal(r.rc, 2);
    assert_has(r.err, "has ' ' at byte 1");
    run_free(&r);
    r = lc("topics create x --partitions 0");
    assert_int_equal(r.rc, 2);
    assert_has(r.err, "--partitions: expected a whole number from 1 to 4096");
    run_free(&r);
    r = lc("topics create x --partitions 5000");
    assert_int_equal(r.rc, 2);
    run_free(&r);
    r = lc("topics create x");
    assert_int_equal(r.rc, 2);
    assert_has(r.err, "give the number of partitions");
    run_free(&r);
    r = lc("topics create x --partitions 1 --retention-ms 3155760000001");
    assert_int_equal(r.rc, 2);
    run_free(&r);
    r = lc("topics");
    assert_int_equal(r.rc, 2);
    assert_has(r.err, "give a subcommand");
    run_free(&r);
    r = lc("topics bogus");
    assert_int_equal(r.rc, 2);
    run_free(&r);
    assert_int_equal(sqlf_ll("SELECT count(*) FROM loom.topics"), 1);
}

static void
test_topics_alter(void **state)
{
    char line[4096];
    run r;

    (void) state;
    r = lc("topics create orders --partitions 3 --retention-ms 604800000");
    assert_int_equal(r.rc, 0);
    run_free(&r);

    r = lc("topics alter orders --partitions 5 --retention-ms 0 "
           "--retention-bytes 2048");
    assert_int_equal(r.rc, 0);
    assert_has(r.out, "altered topic orders: partitions 3 -> 5, retention by "
                      "age 7d -> forever, retention by size none -> "
                      "2.0 kB\n");
    assert_has(r.out, "note: keyed messages published from now on may go to "
                      "other partitions");
    run_free(&r);
    assert_int_equal(sqlf_ll("SELECT count(*) FROM loom.topic_partitions"), 5);

    r = lc("topics alter orders --max-deliveries 9 --json");
    assert_int_equal(r.rc, 0);
    only_json_line(r.out, line, sizeof line);
    assert_int_equal(get_i64(line, "partitions"), 5);
    assert_int_equal(get_i64(line, "max_deliveries"), 9);
    assert_int_equal(get_i64(line, "retention_bytes"), 2048);
    run_free(&r);

    r = lc("topics alter orders --max-deliveries 9");
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, "topic orders is unchanged: it already had "
                               "these settings\n");
    run_free(&r);

    r = lc("topics alter orders --partitions 2");
    assert_int_equal(r.rc, 1);
    assert_has(r.err, "topic \"orders\" has 5 partitions; cannot change to 2");
    run_free(&r);
    r = lc("topics alter nope --partitions 2");
    assert_int_equal(r.rc, 1);
    assert_has(r.err, "topic \"nope\" does not exist (create it: loomctl "
                      "topics create nope --partitions N)");
    run_free(&r);
    r = lc("topics describe nope");
    assert_int_equal(r.rc, 1);
    assert_has(r.err, "loomctl topics create nope --partitions N");
    run_free(&r);
    r = lc("topics alter orders");
    assert_int_equal(r.rc, 2);
    assert_has(r.err, "give at least one setting to change");
    run_free(&r);
    assert_int_equal(sqlf_ll("SELECT partitions FROM loom.topics"), 5);
}

/* ------------------------------------------------------------------ */
/* lag and reset                                                       */

static void
test_topics_lag(void **state)
{
    char line[4096];
    long long gen;
    run r;

    (void) state;
    r = lc("topics lag");
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out,
                        "(no consumer group has committed offsets yet)\n");
    run_free(&r);

    r = lc("topics create orders --partitions 2");
    run_free(&r);
    publish("orders", 0, 10, 1);
    publish("orders", 1, 4, 1);
    gen = join("billing", "orders");
    commit("billing", gen, "orders", 0, 7);
    commit("billing", gen, "orders", 1, 4);
    sqlf_ll("WITH i AS (INSERT INTO loom.topic_retries VALUES ('billing', "
            "%lld, 0, 5, 1, now(), 'x') RETURNING 1) SELECT count(*) FROM i",
            topic_id("orders"));

    r = lc("topics lag");
    assert_int_equal(r.rc, 0);
    assert_row(r.out, "GROUP",
               "GROUP TOPIC PARTITION END OFFSET COMMITTED LAG MEMBER "
               "RETRYING");
    assert_row(r.out, "billing  orders          0",
               "billing orders 0 10 7 3 0190f5c2 1");
    assert_row(r.out, "billing  orders          1",
               "billing orders 1 4 4 0 0190f5c2 0");
    assert_row(r.out, "total:",
               "total: lag 3 on 2 partitions of 1 group; 1 message waiting "
               "for redelivery");
    run_free(&r);

    r = lc("topics lag billing --json");
    assert_int_equal(r.rc, 0);
    assert_int_equal(count_lines(r.out), 2);
    line_at(r.out, 0, line, sizeof line);
    assert_int_equal(get_i64(line, "end_offset"), 10);
    assert_int_equal(get_i64(line, "committed"), 7);
    assert_int_equal(get_i64(line, "lag"), 3);
    assert_int_equal(get_i64(line, "retrying"), 1);
    assert_has(line, "\"member\":\"" MEMBER "\"");
    run_free(&r);

    /* The group appears in describe with its total lag. */
    r = lc("topics describe orders");
    assert_int_equal(r.rc, 0);
    assert_row(r.out, "billing", "billing 2 3 1 1");
    run_free(&r);

    r = lc("topics lag nobody");
    assert_int_equal(r.rc, 1);
    assert_has(r.err, "no consumer group \"nobody\"");
    run_free(&r);
    loomt_sql_exec("INSERT INTO loom.topic_groups (name) VALUES ('idle')");
    r = lc("topics lag idle");
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, "(group \"idle\" has no committed offsets "
                               "yet)\n");
    run_free(&r);
}

static void
test_topics_reset(void **state)
{
    long long gen;
    run r;

    (void) state;
    r = lc("topics create orders --partitions 2");
    run_free(&r);
    publish("orders", 0, 10, 1);
    publish("orders", 1, 4, 1);
    gen = join("billing", "orders");
    commit("billing", gen, "orders", 0, 7);

    r = lc("topics reset billing orders --to earliest");
    assert_int_equal(r.rc, 0);
    assert_has(r.out, "reset group \"billing\" on topic orders to earliest: "
                      "2 partitions moved\n");
    assert_row(r.out, "        0  ", "0 0 10 10");
    assert_row(r.out, "        1  ", "1 0 4 4");
    run_free(&r);
    assert_int_equal(committed("billing", "orders", 0), 0);

    r = lc("topics reset billing orders --to offset:6 --partition 0");
    assert_int_equal(r.rc, 0);
    assert_has(r.out, "to offset 6: 1 partition moved");
    assert_row(r.out, "        0  ", "0 6 10 4");
    run_free(&r);
    assert_int_equal(committed("billing", "orders", 0), 6);
    assert_int_equal(committed("billing", "orders", 1), 0);

    r = lc("topics reset billing orders --to latest --partition 1");
    assert_int_equal(r.rc, 0);
    run_free(&r);
    assert_int_equal(committed("billing", "orders", 1), 4);

    /* By time: the first four are an hour old. */
    loomt_sql_exec("UPDATE loom.topic_messages SET published_at = "
                   "now() - interval '1 hour' WHERE partition = 0 AND "
                   "\"offset\" < 4");
    r = lc("topics reset billing orders --to time:%lld --partition 0",
           sqlf_ll("SELECT (extract(epoch FROM now()) * 1000)::bigint") -
               600000);
    assert_int_equal(r.rc, 0);
    run_free(&r);
    assert_int_equal(committed("billing", "orders", 0), 4);
    r = lc("topics reset billing orders --to time:2000-01-01T00:00:00Z");
    assert_int_equal(r.rc, 0);
    run_free(&r);
    assert_int_equal(committed("billing", "orders", 0), 0);
    assert_int_equal(committed("billing", "orders", 1), 0);

    /* A new group gets offsets to start from. */
    r = lc("topics reset fresh orders --to latest");
    assert_int_equal(r.rc, 0);
    assert_has(r.out, "the group is new");
    run_free(&r);
    assert_int_equal(committed("fresh", "orders", 0), 10);

    r = lc("topics reset billing orders --to soon");
    assert_int_equal(r.rc, 2);
    assert_has(r.err, "expected earliest, latest, offset:N or time:T");
    run_free(&r);
    r = lc("topics reset billing orders --to time:not-a-time");
    assert_int_equal(r.rc, 2);
    assert_has(r.err, "not a time");
    run_free(&r);
    r = lc("topics reset billing orders");
    assert_int_equal(r.rc, 2);
    run_free(&r);
    r = lc("topics reset billing nope --to latest");
    assert_int_equal(r.rc, 1);
    assert_has(r.err, "topic \"nope\" does not exist");
    run_free(&r);
    r = lc("topics reset billing orders --to latest --partition 7");
    assert_int_equal(r.rc, 1);
    assert_has(r.err, "has no partition 7");
    run_free(&r);
    assert_int_equal(committed("billing", "orders", 0), 0);
}

/* ------------------------------------------------------------------ */
/* dead letters and retention                                          */

static void
test_topics_dlq_list_and_redrive(void **state)
{
    char line[4096], s[256];
    long long gen;
    run r;

    (void) state;
    r = lc("topics create orders --partitions 1 --retention-ms 60000");
    run_free(&r);
    publish("orders", 0, 4, 1);
    gen = join("billing", "orders");
    dead_letter("billing", gen, "orders", 0, 0,
                "smtp: connection refused by mail.example.com after 30 "
                "seconds of waiting' || E'\\n' || 'DETAIL: more");
    dead_letter("billing", gen, "orders", 0, 2, "bad payload");
    dead_letter("billing", gen, "orders", 0, 3, "bad payload");

    r = lc("topics dlq orders");
    assert_int_equal(r.rc, 0);
    assert_int_equal(count_lines(r.out), 4);
    assert_row(r.out, "DLQ",
               "DLQ PARTITION DLQ OFFSET GROUP PARTITION OFFSET DELIVERIES "
               "AGE REDRIVEN ERROR");
    row(r.out, "smtp", line, sizeof line);
    assert_has(line, "0 0 billing 0 0 5 ");
    assert_has(line, " no smtp: connection refused");
    assert_has(line, "\xe2\x80\xa6"); /* cut at 60 bytes */
    assert_null(strstr(r.out, "DETAIL"));
    run_free(&r);

    r = lc("topics dlq orders list --json");
    assert_int_equal(r.rc, 0);
    assert_int_equal(count_lines(r.out), 3);
    line_at(r.out, 0, line, sizeof line);
    get_str(line, "error", s, sizeof s);
    assert_non_null(strstr(s, "\nDETAIL: more"));
    assert_int_equal(get_i64(line, "deliveries"), 5);
    run_free(&r);

    /* One by its place in orders.dlq. */
    r = lc("topics dlq orders redrive --partition 0 --offset 1");
    assert_int_equal(r.rc, 0);
    assert_has(r.out, "re-drove 1 dead letter of orders");
    run_free(&r);
    assert_int_equal(sqlf_ll("SELECT count(*) FROM loom.topic_retries WHERE "
                             "\"offset\" = 2 AND deliveries = 0"),
                     1);

    /* Retention removes offset 0's original: it cannot be re-driven. */
    loomt_sql_exec("UPDATE loom.topic_messages SET published_at = now() - "
                   "interval '1 hour' WHERE \"offset\" < 1 AND topic_id = "
                   "(SELECT id FROM loom.topics WHERE name = 'orders')");
    r = lc("topics retention");
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, "retention removed 1 message past their "
                               "topic's retention\n");
    run_free(&r);
    r = lc("topics dlq orders");
    assert_int_equal(r.rc, 0);
    row(r.out, "smtp", line, sizeof line);
    assert_has(line, " no (removed) ");
    assert_has(r.out, "1 dead letter can no longer be re-driven: retention "
                      "removed the original message");
    run_free(&r);
    r = lc("topics dlq orders --json");
    line_at(r.out, 0, line, sizeof line);
    get_raw(line, "original_stored", s, sizeof s);
    assert_string_equal(s, "false");
    line_at(r.out, 1, line, sizeof line);
    assert_int_equal(get_i64(line, "dlq_offset"), 1);
    get_raw(line, "redriven", s, sizeof s);
    assert_string_equal(s, "true");
    run_free(&r);

    r = lc("topics dlq orders redrive");
    assert_int_equal(r.rc, 0);
    assert_has(r.out, "re-drove 1 dead letter of orders");
    assert_has(r.out, "1 dead letter could not be re-driven: retention "
                      "removed the original message");
    run_free(&r);
    r = lc("topics dlq orders redrive --json");
    assert_int_equal(r.rc, 0);
    only_json_line(r.out, line, sizeof line);
    assert_int_equal(get_i64(line, "redriven"), 0);
    assert_int_equal(get_i64(line, "not_redrivable"), 1);
    run_free(&r);
    assert_int_equal(sqlf_ll("SELECT count(*) FROM loom.topic_retries"), 2);

    r = lc("topics dlq orders redrive --partition 0 --offset 9");
    assert_int_equal(r.rc, 1);
    assert_has(r.err, "no dead letter at orders.dlq partition 0 offset 9");
    run_free(&r);
    r = lc("topics dlq orders redrive --partition 0");
    assert_int_equal(r.rc, 2);
    run_free(&r);
    r = lc("topics dlq orders --group nobody");
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, "(no dead letters of orders from group "
                               "\"nobody\")\n");
    run_free(&r);
    r = lc("topics dlq nope");
    assert_int_equal(r.rc, 1);
    assert_has(r.err, "topics dlq: topic \"nope\" does not exist (create it: "
                      "loomctl topics create nope --partitions N)");
    run_free(&r);
}

static void
test_topics_retention(void **state)
{
    run r;

    (void) state;
    r = lc("topics create aged --partitions 1 --retention-ms 60000");
    run_free(&r);
    r = lc("topics create sized --partitions 1 --retention-bytes 25");
    run_free(&r);
    publish("aged", 0, 5, 10);
    publish("sized", 0, 5, 10);
    loomt_sql_exec("UPDATE loom.topic_messages SET published_at = now() - "
                   "interval '2 minutes' WHERE \"offset\" < 3");

    r = lc("topics retention --json");
    assert_int_equal(r.rc, 0);
    /* Age: offsets 0-2 of aged; size: 0-1 of sized (30 bytes stay). */
    assert_string_equal(r.out, "{\"removed\":5}\n");
    run_free(&r);

    r = lc("topics list");
    assert_int_equal(r.rc, 0);
    assert_row(r.out, "aged", "aged 1 2 20 1m 5m 5");
    assert_row(r.out, "sized", "sized 1 3 30 25 B 5m 5");
    run_free(&r);
    r = lc("topics describe sized");
    assert_row(r.out, "        0  ", "0 2 5 3 30");
    run_free(&r);

    r = lc("topics retention");
    assert_int_equal(r.rc, 0);
    assert_has(r.out, "retention removed 0 messages");
    run_free(&r);
    r = lc("topics retention now");
    assert_int_equal(r.rc, 2);
    run_free(&r);
}

int
main(void)
{
#define T(f) cmocka_unit_test_setup(f, setup)
    const struct CMUnitTest tests[] = {
        T(test_topics_create_list_describe),
        T(test_topics_create_errors),
        T(test_topics_alter),
        T(test_topics_lag),
        T(test_topics_reset),
        T(test_topics_dlq_list_and_redrive),
        T(test_topics_retention),
    };
#undef T

    return cmocka_run_group_tests_name("tools.loomctl.topics", tests,
                                       group_setup, group_teardown);
}
