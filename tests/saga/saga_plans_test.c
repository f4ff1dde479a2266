/*
 * How PostgreSQL plans the orchestrator's statements on tables that have
 * grown and were never analyzed (a new deployment, or a burst between two
 * autovacuum runs). A plan is read from EXPLAIN ANALYZE: which index each
 * table is read through and how many rows were read and thrown away, not
 * how long it took, so the outcome does not depend on the machine.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

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

/* The orchestrator loads a batch of 100 replies (half of them already in
 * the inbox) and their 100 sagas, with 20,000 entries and sagas before
 * them, statistics never gathered. It used to ask `message_id = ANY ($2)`,
 * which PostgreSQL then planned as a scan of inbox_received over every
 * entry of the consumer (more rows read the longer a service ran); each
 * reply and saga must be one key lookup. */
static void
the_load_looks_each_reply_and_saga_up_by_key_on_tables_never_analyzed(
    void **state)
{
    PGconn *c = est_connect(NULL);
    const loom__stmt *st = &loom__orch_load_stmt;
    const char *values[3];
    char explain[4096];
    PGresult *r;
    const char *plan;
    int replies = 0, sagas = 0;

    (void) state;
    est_exec(c, "ALTER TABLE loom.inbox SET (autovacuum_enabled = off)");
    est_exec(c, "ALTER TABLE loom.saga_instances "
                "SET (autovacuum_enabled = off)");
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

    values[0] = "plans.orch";
    values[1] = pt_array(c, "(SELECT message_id::text FROM loom.inbox "
                            "ORDER BY message_id LIMIT 50) UNION ALL "
                            "SELECT gen_random_uuid()::text "
                            "FROM generate_series(1, 50)");
    values[2] = pt_array(c, "SELECT 'plans-' || (i * 199) "
                            "FROM generate_series(1, 100) i");

    /* What it returns: the 50 replies the inbox has, the 100 sagas. */
    r = PQexecParams(c, st->sql, st->n, st->types, values, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    for (int i = 0; i < PQntuples(r); i++) {
        if (strcmp(PQgetvalue(r, i, 0), "0") == 0)
            replies++;
        else
            sagas++;
    }
    PQclear(r);
    assert_int_equal(replies, PT_BATCH / 2);
    assert_int_equal(sagas, PT_BATCH);

    /* How: through the primary keys, no row read to be thrown away. */
    snprintf(explain, sizeof explain, "EXPLAIN (ANALYZE, FORMAT JSON) %s",
             st->sql);
    r = PQexecParams(c, explain, st->n, st->types, values, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    plan = PQgetvalue(r, 0, 0);
    if (strstr(plan, "inbox_received") || strstr(plan, "Seq Scan") ||
        strstr(plan, "Rows Removed by Filter") ||
        !strstr(plan, "\"inbox_pkey\"") ||
        !strstr(plan, "\"saga_instances_pkey\""))
        fail_msg("the load reads more than its keys:\n%s", plan);
    PQclear(r);
    free((char *) values[1]);
    free((char *) values[2]);
    PQfinish(c);
}

#define T(f) cmocka_unit_test_setup_teardown(f, est_setup, est_teardown)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        T(the_load_looks_each_reply_and_saga_up_by_key_on_tables_never_analyzed),
    };

    return cmocka_run_group_tests(tests, est_group_setup, est_group_teardown);
}
