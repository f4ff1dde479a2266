/*
 * How PostgreSQL plans the orchestrator's statements on tables that have
 * grown and were never analyzed (a new deployment, or a burst between two
 * autovacuum runs). Each keeps one plan per session (schema 19), made
 * here while the tables are small. A plan is read from auto_explain:
 * which index each table is read through and how many rows were read and
 * thrown away, not how long it took, so the outcome does not depend on
 * the machine.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "orch_int.h"
#include "sagatest.h"

#define PT_ROWS  20000 /* inbox entries and saga instances already there */
#define PT_BATCH 100   /* replies in the batch loaded */

/* `{a,b,...}`: the first PT_BATCH values of column 1 of `sql`. */
static char *
pt_array(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    size_t len = 3, at = 1;
    char *out;

    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    for (int i = 0; i < PQntuples(r); i++)
        len += strlen(PQgetvalue(r, i, 0)) + 1;
    out = malloc(len);
    assert_non_null(out);
    out[0] = '{';
    for (int i = 0; i < PQntuples(r); i++)
        at += (size_t) sprintf(out + at, "%s%s", i ? "," : "",
                               PQgetvalue(r, i, 0));
    strcpy(out + at, "}");
    PQclear(r);
    return out;
}

/* Appends each notice (auto_explain's plans) to the buffer in `arg`. */
static void
pt_collect(void *arg, const char *message)
{
    loom__buf *b = arg;

    loom__buf_puts(b, message);
}

/* From here on, every plan `c` runs, nested ones included, goes to `b`
 * as auto_explain reports it (with what each node read). */
static void
pt_capture_plans(PGconn *c, loom__buf *b)
{
    est_exec(c, "LOAD 'auto_explain'");
    est_exec(c, "SET auto_explain.log_min_duration = 0");
    est_exec(c, "SET auto_explain.log_nested_statements = on");
    est_exec(c, "SET auto_explain.log_analyze = on");
    est_exec(c, "SET auto_explain.log_level = notice");
    PQsetNoticeProcessor(c, pt_collect, b);
}

/* Runs the orchestrator's load with `values` on `c`; returns how many
 * replies (kind 0) it found in the inbox and stores the sagas in *sagas. */
static int
pt_load(PGconn *c, const char *const values[3], int *sagas)
{
    const loom__stmt *st = &loom__orch_load_stmt;
    PGresult *r =
        PQexecParams(c, st->sql, st->n, st->types, values, NULL, NULL, 0);
    int replies = 0;

    *sagas = 0;
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    for (int i = 0; i < PQntuples(r); i++) {
        if (strcmp(PQgetvalue(r, i, 0), "0") == 0)
            replies++;
        else
            (*sagas)++;
    }
    PQclear(r);
    return replies;
}

/* The orchestrator loads a batch of 100 replies (half of them already in
 * the inbox) and their 100 sagas through loom.saga_load() (schema 19),
 * whose one plan is made while both tables are empty and used once they
 * hold 20,000 rows, statistics never gathered. Each reply and saga must
 * be one key lookup, by the plan made on the empty tables too: asked as
 * `message_id = ANY ($2)`, PostgreSQL planned a scan of inbox_received
 * over every entry of the consumer (more rows read the longer a service
 * ran). */
static void
the_load_looks_each_reply_and_saga_up_by_key_on_tables_never_analyzed(
    void **state)
{
    PGconn *c = est_connect(NULL);
    loom__buf notices = LOOM__BUF_INIT;
    const char *values[3];
    const char *plans;
    int sagas;

    (void) state;
    est_exec(c, "TRUNCATE loom.inbox, loom.saga_instances");
    est_exec(c, "ALTER TABLE loom.inbox SET (autovacuum_enabled = off)");
    est_exec(c, "ALTER TABLE loom.saga_instances "
                "SET (autovacuum_enabled = off)");
    values[0] = "plans.orch";
    values[1] = "{00000000-0000-7000-8000-000000000001}";
    values[2] = "{plans-1}";
    for (int k = 0; k < 6; k++)
        assert_int_equal(pt_load(c, values, &sagas), 0);
    est_exec(c, "INSERT INTO loom.inbox (consumer, message_id) "
                "SELECT 'plans.orch', gen_random_uuid() "
                "FROM generate_series(1, 20000)");
    est_exec(c, "INSERT INTO loom.saga_instances (id, type, def_version, "
                "state, step, attempt, outbox, data, version) "
                "SELECT 'plans-' || i, 'plans.Saga', 1, 'RUNNING', 0, 1, "
                "'default', '\\x00', 1 FROM generate_series(1, 20000) i");
    assert_int_equal(est_ll("SELECT count(*) FROM pg_stat_user_tables WHERE "
                            "relname IN ('inbox', 'saga_instances') "
                            "AND schemaname = 'loom' "
                            "AND coalesce(last_analyze, last_autoanalyze) "
                            "IS NOT NULL"),
                     0);
    values[1] = pt_array(c, "(SELECT message_id::text FROM loom.inbox "
                            "ORDER BY message_id LIMIT 50) UNION ALL "
                            "SELECT gen_random_uuid()::text "
                            "FROM generate_series(1, 50)");
    values[2] = pt_array(c, "SELECT 'plans-' || (i * 199) "
                            "FROM generate_series(1, 100) i");

    /* What it returns: the 50 replies the inbox has, the 100 sagas; how:
     * through the primary keys, no row read to be thrown away. */
    pt_capture_plans(c, &notices);
    assert_int_equal(pt_load(c, values, &sagas), PT_BATCH / 2);
    assert_int_equal(sagas, PT_BATCH);
    PQsetNoticeProcessor(c, NULL, NULL);
    assert_false(notices.failed);
    plans = loom__buf_str(&notices);
    if (strstr(plans, "inbox_received") || strstr(plans, "Seq Scan") ||
        strstr(plans, "Rows Removed by Filter") ||
        !strstr(plans, "inbox_pkey") || !strstr(plans, "saga_instances_pkey")) {
        fprintf(stderr, "%s\n", plans); /* fail_msg() cuts it short */
        fail_msg("the load reads more than its keys (plans above)");
    }
    loom__buf_free(&notices);
    free((char *) values[1]);
    free((char *) values[2]);
    PQfinish(c);
}

/* loom.saga_apply() for sagas apply-<i>, i in 1..50, moving each from
 * version `from` to `from + 1` (or expecting `from + 1` for the first,
 * which it is not at: the batch must then fail with LM023). */
static void
pt_apply(PGconn *c, int from, int stale)
{
    char sql[2048];

    snprintf(sql, sizeof sql,
             "SELECT loom.saga_apply('plans.orch', ARRAY(SELECT "
             "gen_random_uuid() FROM generate_series(1, 50)), ARRAY(SELECT "
             "'apply-' || i FROM generate_series(1, 50) i), "
             "ARRAY(SELECT %d + (i = 1 AND %d = 1)::int FROM "
             "generate_series(1, 50) i)::bigint[], array_fill(%d::bigint, "
             "ARRAY[50]), array_fill(true, ARRAY[50]), array_fill('RUNNING'"
             "::text, ARRAY[50]), array_fill(1, ARRAY[50]), array_fill(1, "
             "ARRAY[50]), array_fill('reply'::text, ARRAY[50]), "
             "ARRAY(SELECT gen_random_uuid() FROM generate_series(1, 50)), "
             "array_fill(true, ARRAY[50]), array_fill(60000::bigint, "
             "ARRAY[50]), array_fill(NULL::bytea, ARRAY[50]), "
             "array_fill(NULL::text, ARRAY[50]), array_fill(false, "
             "ARRAY[50]), ARRAY['apply-1'], ARRAY['reply'], ARRAY[0], "
             "ARRAY['Step'], ARRAY[1], ARRAY[gen_random_uuid()], "
             "ARRAY[NULL::text])",
             from, stale, from + 1);
    if (stale)
        est_exec_fails(c, sql, "LM023");
    else
        est_exec(c, sql);
}

/* The orchestrator's batch write (loom.saga_apply(), schema 19) keeps one
 * generic plan, so that plan must find each saga of the batch by its
 * primary key whatever the table's size: no sequential scan, no hash or
 * merge join of the batch with the table (schema 11 saw one take 4.0 ms
 * a batch once the table had grown). The plan is made on a table of 50
 * sagas and read, from auto_explain, when the table holds 20,050. A
 * batch with a saga that moved on fails whole with LM023. */
static void
the_batch_write_finds_each_saga_by_key_on_tables_never_analyzed(void **state)
{
    PGconn *c = est_connect(NULL);
    loom__buf notices = LOOM__BUF_INIT;
    const char *plans;

    (void) state;
    est_exec(c, "ALTER TABLE loom.saga_instances "
                "SET (autovacuum_enabled = off)");
    /* The plan is made while the table holds the batch's 50 sagas only;
     * then the table grows, with no analyze to make PostgreSQL plan
     * again. */
    est_exec(c, "TRUNCATE loom.saga_instances");
    est_exec(c, "INSERT INTO loom.saga_instances (id, type, def_version, "
                "state, step, attempt, outbox, data, version) "
                "SELECT 'apply-' || i, 'plans.Saga', 1, 'RUNNING', 0, 1, "
                "'default', '\\x00', 1 FROM generate_series(1, 50) i");
    for (int k = 1; k <= 6; k++)
        pt_apply(c, k, 0);
    est_exec(c, "INSERT INTO loom.saga_instances (id, type, def_version, "
                "state, step, attempt, outbox, data, version) "
                "SELECT 'apply-' || i, 'plans.Saga', 1, 'RUNNING', 0, 1, "
                "'default', '\\x00', 1 FROM generate_series(51, 20050) i");
    pt_capture_plans(c, &notices);
    pt_apply(c, 7, 0);
    assert_false(notices.failed);
    plans = loom__buf_str(&notices);
    if (strstr(plans, "Update on saga_instances") == NULL ||
        strstr(plans, "saga_instances_pkey") == NULL ||
        strstr(plans, "Seq Scan on saga_instances") != NULL ||
        strstr(plans, "Hash Join") != NULL ||
        strstr(plans, "Merge Join") != NULL) {
        fprintf(stderr, "%s\n", plans); /* fail_msg() cuts it short */
        fail_msg("the batch write does not find sagas by key (plans above)");
    }
    PQsetNoticeProcessor(c, NULL, NULL);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.saga_instances WHERE "
                            "version = 8"),
                     50);
    pt_apply(c, 8, 1);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.saga_instances WHERE "
                            "version = 8"),
                     50);
    loom__buf_free(&notices);
    PQfinish(c);
}

#define T(f) cmocka_unit_test_setup_teardown(f, est_setup, est_teardown)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        T(the_load_looks_each_reply_and_saga_up_by_key_on_tables_never_analyzed),
        T(the_batch_write_finds_each_saga_by_key_on_tables_never_analyzed),
    };

    return cmocka_run_group_tests(tests, est_group_setup, est_group_teardown);
}
