/*
 * loomctl projection list|status|rebuild end to end. Projections,
 * checkpoints and parked events are written with SQL as runners write
 * them; a runner or a rebuild "connects" by opening a session with its
 * application_name, which is all loomctl looks at. The built loomctl
 * binary runs against this executable's own database.
 *
 * The fixture: events order-1@0, order-1@1, order-2@0 and three
 * projections:
 *   orders   schema loomctl_orders, generation 2, checkpoint at the first
 *            event (2 events behind), 2 parked events, 1 parked by a
 *            rebuild;
 *   cache    in memory, no checkpoint yet (3 events behind);
 *   history  schema history, checkpoint at the last event, a rebuild
 *            stopped at 450 of 1000 events.
 *
 * The rebuilds run the projections of loomctl_projections.c
 * (LOOMCTL_PLUGIN_PATH).
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

#include "lctest.h"
#include "pgtest.h"

/* ------------------------------------------------------------------ */
/* Fixture                                                             */

static const char fixture_sql[] =
    "INSERT INTO loom.projections (name, schema_name, checkpoint, "
    "generation, created_at) VALUES "
    "('orders', 'loomctl_orders', 'projection:orders', 2, "
    "'2024-05-01T12:00:00Z'), "
    "('cache', NULL, 'projection:cache', 1, now());"
    "INSERT INTO loom.projections (name, schema_name, checkpoint, "
    "rebuild_started_at, rebuild_total, rebuild_done, rebuild_updated_at) "
    "VALUES ('history', 'history', 'projection:history', "
    "now() - interval '1 hour', 1000, 450, now() - interval '2 minutes');"
    "INSERT INTO loom.checkpoints (name, tx, position) "
    "SELECT 'projection:orders', tx, position FROM loom.events "
    "ORDER BY tx, position LIMIT 1;"
    "INSERT INTO loom.checkpoints (name, tx, position) "
    "SELECT 'projection:history', tx, position FROM loom.events "
    "ORDER BY tx DESC, position DESC LIMIT 1;"
    "INSERT INTO loom.parked (subscription, event_id, stream, version, tx, "
    "position, type, error, attempts, parked_at) "
    "SELECT 'projection:orders', event_id, stream, version, tx, position, "
    "type, 'boom', 5, now() - interval '1 minute' FROM loom.events "
    "WHERE version = 0;"
    "INSERT INTO loom.parked (subscription, event_id, stream, version, tx, "
    "position, type, error, attempts) "
    "SELECT 'projection:orders:rebuild', event_id, stream, version, tx, "
    "position, type, 'rebuild boom', 5 FROM loom.events "
    "WHERE stream = 'order-2';";

static int
group_setup(void **state)
{
    static const char *const streams[] = {"order-1", "order-1", "order-2"};
    loom_event_data ev;
    loom_store *s;

    (void) state;
    loomt_db_create("loomctl_projection");
    setenv("LOOM_DATABASE_URL", loomt_dsn(), 1);
    s = loomt_store_open();
    for (int i = 0; i < 3; i++) {
        memset(&ev, 0, sizeof ev);
        append_one(s, streams[i], "shop.OrderPlaced", "\x08\x01", 2, &ev);
    }
    loom_store_close(s);
    loomt_sql_exec(fixture_sql);
    return 0;
}

static int
group_teardown(void **state)
{
    (void) state;
    loomt_db_drop();
    return 0;
}

/* A session to `conninfo` as application `app`, as a runner or a
 * rebuild connects. */
static PGconn *
connect_to(const char *conninfo, const char *app)
{
    const char *keys[] = {"dbname", "application_name", NULL};
    const char *vals[] = {conninfo, app, NULL};
    PGconn *pg = PQconnectdbParams(keys, vals, 1);

    if (PQstatus(pg) != CONNECTION_OK)
        fail_msg("connect: %s", PQerrorMessage(pg));
    return pg;
}

static PGconn *
connect_as(const char *app)
{
    return connect_to(loomt_dsn(), app);
}

/* Waits (10 s at most) until no runner or rebuild is connected to the
 * test database: a backend shows in pg_stat_activity until it has
 * exited, a moment after its client closed the connection. */
static void
wait_disconnected(void)
{
    for (int i = 0; i < 200; i++) {
        if (loomt_sql_ll("SELECT count(*) FROM pg_stat_activity "
                         "WHERE datname = current_database() "
                         "AND application_name LIKE 'eventloom-%'") == 0)
            return;
        nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
    }
    fail_msg("a runner or rebuild session is still connected after 10 s");
}

/* The JSON line of projection `name` in `projection list --json`. */
static void
list_entry(const char *name, char *line, size_t cap)
{
    char s[256];
    run r = lc("projection list --json");

    assert_int_equal(r.rc, 0);
    assert_int_equal(count_lines(r.out), 3);
    assert_json_lines(r.out);
    for (size_t i = 0; i < 3; i++) {
        line_at(r.out, i, line, cap);
        get_str(line, "name", s, sizeof s);
        if (strcmp(s, name) == 0) {
            run_free(&r);
            return;
        }
    }
    fail_msg("no %s in: %s", name, r.out);
}

static void
assert_member(const char *obj, const char *key, const char *want)
{
    char got[1024];

    get_raw(obj, key, got, sizeof got);
    if (strcmp(got, want) != 0)
        fail_msg("%s: got %s, want %s in %s", key, got, want, obj);
}

/* ------------------------------------------------------------------ */
/* list                                                                */

static void
test_projection_list_table_has_a_row_per_projection(void **state)
{
    char line[1024];
    run r;

    (void) state;
    r = lc("projection list");
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.err, "");
    assert_int_equal(count_lines(r.out), 4);
    line_at(r.out, 0, line, sizeof line);
    assert_non_null(strstr(line, "NAME"));
    assert_non_null(strstr(line, "LAG SEC"));
    assert_non_null(strstr(line, "STATE"));
    /* By name: cache, history, orders. */
    line_at(r.out, 1, line, sizeof line);
    assert_non_null(strstr(line, "cache"));
    assert_non_null(strstr(line, "memory"));
    assert_non_null(strstr(line, "stopped"));
    line_at(r.out, 2, line, sizeof line);
    assert_non_null(strstr(line, "history"));
    assert_non_null(strstr(line, "stopped, rebuilding 45% (stopped)"));
    line_at(r.out, 3, line, sizeof line);
    assert_non_null(strstr(line, "orders"));
    assert_non_null(strstr(line, "loomctl_orders"));
    run_free(&r);
}

static void
test_projection_list_json_reports_lag_parked_and_model(void **state)
{
    char line[4096];

    (void) state;
    list_entry("orders", line, sizeof line);
    assert_member(line, "model", "\"loomctl_orders\"");
    assert_member(line, "generation", "2");
    assert_member(line, "checkpoint", "\"projection:orders\"");
    assert_member(line, "checkpoint_position", "1");
    /* Two events after the checkpoint in commit order. */
    assert_member(line, "lag_events", "2");
    assert_member(line, "lag_events_capped", "false");
    assert_true(get_i64(line, "lag_seconds") >= 0);
    /* Its own parked events, not the rebuild's. */
    assert_member(line, "parked", "2");
    assert_member(line, "state", "\"stopped\"");
    assert_member(line, "rebuilding", "false");

    /* No checkpoint yet: every event is lag. */
    list_entry("cache", line, sizeof line);
    assert_member(line, "model", "\"memory\"");
    assert_member(line, "schema", "null");
    assert_member(line, "checkpoint_position", "null");
    assert_member(line, "lag_events", "3");
    assert_member(line, "parked", "0");

    /* Caught up: no lag in events or seconds. */
    list_entry("history", line, sizeof line);
    assert_member(line, "lag_events", "0");
    assert_member(line, "lag_seconds", "0");
    assert_member(line, "rebuilding", "true");
    assert_member(line, "rebuild_connected", "false");
    assert_member(line, "rebuild_percent", "45");
    assert_member(line, "rebuild_done", "450");
    assert_member(line, "rebuild_total", "1000");
    assert_member(line, "state", "\"stopped, rebuilding 45% (stopped)\"");
}

static void
test_projection_list_shows_connected_runner_and_rebuild(void **state)
{
    PGconn *runner = connect_as("eventloom-projection:orders");
    PGconn *rebuild = connect_as("eventloom-rebuild:history");
    /* Neither another projection's runner nor a runner of a projection
     * with the same name in another database counts. */
    PGconn *other = connect_as("eventloom-projection:ordersx");
    PGconn *elsewhere =
        connect_to(getenv("LOOM_TEST_PG_DSN"), "eventloom-projection:cache");
    char line[4096], pids[64];

    (void) state;
    list_entry("orders", line, sizeof line);
    assert_member(line, "state", "\"running\"");
    assert_member(line, "running", "true");
    snprintf(pids, sizeof pids, "[%d]", PQbackendPID(runner));
    assert_member(line, "runner_pids", pids);
    list_entry("history", line, sizeof line);
    assert_member(line, "state", "\"stopped, rebuilding 45%\"");
    assert_member(line, "rebuild_connected", "true");
    list_entry("cache", line, sizeof line);
    assert_member(line, "state", "\"stopped\"");

    PQfinish(runner);
    PQfinish(rebuild);
    PQfinish(other);
    PQfinish(elsewhere);
    wait_disconnected();
    list_entry("orders", line, sizeof line);
    assert_member(line, "state", "\"stopped\"");
}

/* ------------------------------------------------------------------ */
/* status                                                              */

static void
test_projection_status_shows_checkpoint_lag_and_parked(void **state)
{
    run r;

    (void) state;
    r = lc("projection status orders");
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.err, "");
    assert_non_null(strstr(r.out, "name                 orders\n"));
    assert_non_null(strstr(r.out, "model                schema "
                                  "loomctl_orders"));
    assert_non_null(strstr(r.out, "generation           2 (never rebuilt)"));
    assert_non_null(strstr(r.out, "created              "
                                  "2024-05-01T12:00:00.000Z\n"));
    assert_non_null(strstr(r.out, "state                stopped\n"));
    assert_non_null(strstr(r.out, "checkpoint           projection:orders at "
                                  "position 1 (tx "));
    assert_non_null(strstr(r.out, "checkpoint updated   "));
    assert_non_null(strstr(r.out, "lag events           2\n"));
    assert_non_null(strstr(r.out, "parked               2\n"));
    assert_non_null(strstr(r.out, "rebuild              none in progress\n"));
    assert_non_null(strstr(r.out, "horizon              "));
    /* The newest parked events, the rebuild's included. */
    assert_non_null(strstr(r.out, "newest parked events:\nSUBSCRIPTION"));
    assert_non_null(strstr(r.out, "projection:orders:rebuild"));
    assert_non_null(strstr(r.out, "rebuild boom"));
    run_free(&r);

    r = lc("projection status history");
    assert_int_equal(r.rc, 0);
    assert_non_null(strstr(r.out, "rebuild              stopped at 450/1,000 "
                                  "events (45%); run `loomctl projection "
                                  "rebuild history --plugin LIB.so` to "
                                  "resume\n"));
    assert_non_null(strstr(r.out, "rebuild updated      "));
    assert_non_null(strstr(r.out, "(2m")); /* updated 2 minutes ago */
    assert_non_null(strstr(r.out, "newest parked events:\n(none)\n"));
    run_free(&r);
}

static void
test_projection_status_json_is_one_object(void **state)
{
    char line[16384], parked[8192], s[256];
    run r;

    (void) state;
    r = lc("projection status orders --json");
    assert_int_equal(r.rc, 0);
    only_json_line(r.out, line, sizeof line);
    assert_member(line, "name", "\"orders\"");
    assert_member(line, "lag_events", "2");
    assert_member(line, "parked", "2");
    assert_member(line, "rebuild_parked", "1");
    assert_member(line, "created_at", "\"2024-05-01T12:00:00.000Z\"");
    assert_member(line, "rebuilt_at", "null");
    get_raw(line, "horizon_blocker", s, sizeof s); /* present, maybe null */
    get_raw(line, "recent_parked", parked, sizeof parked);
    assert_int_equal(parked[0], '[');
    /* Newest first: the rebuild parked its event last. */
    assert_non_null(strstr(parked, "\"subscription\":\"projection:orders:"
                                   "rebuild\""));
    get_str(parked + 1, "error", s, sizeof s); /* the first object */
    assert_string_equal(s, "rebuild boom");
    run_free(&r);
}

static void
test_projection_status_shows_at_most_5_parked_events(void **state)
{
    char line[16384], parked[16384];
    const char *p;
    int n = 0;
    run r;

    (void) state;
    loomt_sql_exec("INSERT INTO loom.parked (subscription, event_id, stream, "
                   "version, tx, position, type, error, attempts) "
                   "SELECT 'projection:cache', gen_random_uuid(), 'order-1', "
                   "0, '1', g, 'shop.OrderPlaced', 'boom ' || g, 5 "
                   "FROM generate_series(1, 7) g");
    r = lc("projection status cache --json");
    assert_int_equal(r.rc, 0);
    only_json_line(r.out, line, sizeof line);
    assert_member(line, "parked", "7");
    get_raw(line, "recent_parked", parked, sizeof parked);
    for (p = parked; (p = strstr(p, "\"event_id\"")) != NULL; p++)
        n++;
    assert_int_equal(n, 5);
    run_free(&r);
    loomt_sql_exec("DELETE FROM loom.parked "
                   "WHERE subscription = 'projection:cache'");
}

static void
test_projection_status_names_what_holds_readers_back(void **state)
{
    PGconn *holder = connect_as("loomctl-test-holder");
    char line[16384], blocker[1024];
    PGresult *res;
    loom_event_data ev;
    loom_store *s;
    run r;

    (void) state;
    /* A transaction with an id, then an event committed after it: the
     * event waits behind it. */
    res = PQexec(holder, "BEGIN; SELECT pg_current_xact_id()");
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    PQclear(res);
    s = loomt_store_open();
    memset(&ev, 0, sizeof ev);
    append_one(s, "late-1", "shop.Late", "\x08\x01", 2, &ev);
    loom_store_close(s);

    r = lc("projection status orders");
    assert_int_equal(r.rc, 0);
    assert_non_null(strstr(r.out, "events wait behind "));
    run_free(&r);
    r = lc("projection status orders --json");
    only_json_line(r.out, line, sizeof line);
    get_raw(line, "horizon_blocker", blocker, sizeof blocker);
    assert_true(get_i64(blocker, "waiting") >= 1);
    /* Ours, unless an older transaction elsewhere in the cluster is
     * open (tests in parallel): either way someone is named. */
    get_raw(blocker, "application", line, sizeof line);
    assert_true(strlen(line) >= 2);
    run_free(&r);
    PQclear(PQexec(holder, "ROLLBACK"));
    PQfinish(holder);
}

static void
test_projection_status_of_unknown_name_exits_1(void **state)
{
    run r;

    (void) state;
    r = lc("projection status nosuch");
    assert_int_equal(r.rc, 1);
    assert_string_equal(r.out, "");
    assert_string_equal(r.err, "loomctl: no projection \"nosuch\"; `loomctl "
                               "projection list` shows the registered ones\n");
    run_free(&r);
}

/* ------------------------------------------------------------------ */
/* rebuild: arguments and the plugin                                   */

static void
test_projection_rebuild_plugin_problems_exit_1(void **state)
{
    run r;

    (void) state;
    r = lc("projection rebuild orders --plugin /nonexistent/lib.so");
    assert_int_equal(r.rc, 1);
    assert_non_null(strstr(r.err, "loomctl: --plugin /nonexistent/lib.so: "
                                  "cannot load it: "));
    run_free(&r);

    /* A shared object without loom_projections(). */
    r = lc("projection rebuild orders --plugin %s", LOOMCTL_TYPES_PATH);
    assert_int_equal(r.rc, 1);
    assert_non_null(strstr(r.err, "does not export loom_projections()"));
    run_free(&r);

    /* The names the plugin has are listed. */
    r = lc("projection rebuild nosuch --plugin %s", LOOMCTL_PLUGIN_PATH);
    assert_int_equal(r.rc, 1);
    assert_non_null(strstr(r.err, "has no projection \"nosuch\"; it has: "
                                  "orders, cache\n"));
    run_free(&r);

    r = lc("projection rebuild cache --plugin %s", LOOMCTL_PLUGIN_PATH);
    assert_int_equal(r.rc, 1);
    assert_non_null(strstr(r.err, "projection \"cache\" keeps its read model "
                                  "in memory"));
    run_free(&r);
}

/* The orders the rebuilt read model counted for `stream`. */
static long long
placed(const char *stream)
{
    char sql[256];

    snprintf(sql, sizeof sql,
             "SELECT placed FROM loomctl_orders.orders WHERE stream = '%s'",
             stream);
    return loomt_sql_ll(sql);
}

static void
test_projection_rebuild_replays_every_event_and_swaps(void **state)
{
    char line[1024], s[64];
    run r;

    (void) state;
    /* The fixture's events must be readable first: another test's open
     * transaction may hold them back, and the rebuild would be caught up
     * without them. Once readable, they stay so. */
    r = lc_wait_lines(3, "tail --from start --json");
    run_free(&r);
    r = lc("projection rebuild orders --plugin %s --json", LOOMCTL_PLUGIN_PATH);
    if (r.rc != 0)
        fail_msg("exit %d: %s", r.rc, r.err);
    only_json_line(r.out, line, sizeof line);
    assert_member(line, "projection", "\"orders\"");
    assert_member(line, "events", "3");
    assert_member(line, "generation", "3");
    /* Progress on stderr, plain lines: it is not a terminal. */
    assert_non_null(strstr(r.err, "rebuild orders: 3/3 events (100%), "));
    assert_null(strchr(r.err, '\r'));
    run_free(&r);
    wait_disconnected();
    /* The new model is live, complete, and caught up. */
    assert_int_equal(placed("order-1"), 2);
    assert_int_equal(placed("order-2"), 1);
    list_entry("orders", line, sizeof line);
    assert_member(line, "generation", "3");
    assert_member(line, "lag_events", "0");
    assert_member(line, "rebuilding", "false");
    get_raw(line, "checkpoint_position", s, sizeof s);
    assert_string_equal(s, "3");
}

static void
test_projection_rebuild_stops_on_sigint_and_resumes(void **state)
{
    char line[4096];
    loom_event_data ev;
    loom_store *st;
    run r;

    (void) state;
    /* Six events; the fourth interrupts the rebuild that handles it. */
    st = loomt_store_open();
    memset(&ev, 0, sizeof ev);
    append_one(st, "ctl-1", "loomctl.Interrupt", "\x08\x01", 2, &ev);
    for (int i = 0; i < 2; i++) {
        memset(&ev, 0, sizeof ev);
        append_one(st, "order-3", "shop.OrderPlaced", "\x08\x01", 2, &ev);
    }
    loom_store_close(st);
    /* Readable by then: another test's open transaction may hold new
     * events back, and the rebuild would end before them. */
    r = lc_wait_lines(6, "tail --from start --json");
    run_free(&r);

    r = lc("projection rebuild orders --plugin %s --batch 1 --restart",
           LOOMCTL_PLUGIN_PATH);
    assert_int_equal(r.rc, 130);
    assert_string_equal(r.out, "");
    assert_non_null(strstr(r.err, "stopping after the batch in flight"));
    assert_non_null(strstr(r.err, "rebuild of orders stopped at 4 events; "
                                  "run the same command again to resume "
                                  "(or --restart)\n"));
    run_free(&r);
    wait_disconnected();
    /* Stopped, resumable: the live model is untouched. */
    list_entry("orders", line, sizeof line);
    assert_member(line, "state", "\"stopped, rebuilding 66% (stopped)\"");
    assert_member(line, "rebuild_done", "4");
    assert_member(line, "generation", "3");

    /* The same command again goes on from the fifth event. */
    r = lc("projection rebuild orders --plugin %s --batch 1",
           LOOMCTL_PLUGIN_PATH);
    if (r.rc != 0)
        fail_msg("exit %d: %s", r.rc, r.err);
    assert_non_null(strstr(r.out, "rebuilt orders: 6 events in "));
    assert_non_null(strstr(r.out, "; generation 4 is live\n"));
    run_free(&r);
    wait_disconnected();
    /* Resumed, not started over (the fourth event would have stopped it
     * again), and every event counted once. */
    assert_int_equal(placed("order-1"), 2);
    assert_int_equal(placed("order-3"), 2);
    list_entry("orders", line, sizeof line);
    assert_member(line, "rebuilding", "false");
    assert_member(line, "lag_events", "0");
}

static void
test_projection_bad_arguments_exit_2(void **state)
{
    static const char *const bad[] = {
        "projection",
        "projection nosuch",
        "projection list extra",
        "projection list --plugin x.so",
        "projection status",
        "projection status a b",
        "projection status orders --restart",
        "projection rebuild",
        "projection rebuild orders",
        "projection rebuild --plugin x.so",
        "projection rebuild orders history --plugin x.so",
        "projection rebuild orders --plugin ''",
        "projection rebuild orders --plugin x.so --batch 0",
        "projection rebuild orders --plugin x.so --batch 1000001",
        "projection rebuild orders --plugin x.so --restart=1",
    };
    run r;

    (void) state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        r = lc("%s", bad[i]);
        if (r.rc != 2 ||
            strstr(r.err, "usage: loomctl projection list") == NULL)
            fail_msg("loomctl %s: exit %d, stderr: %s", bad[i], r.rc, r.err);
        assert_string_equal(r.out, "");
        run_free(&r);
    }
    r = lc("projection rebuild orders");
    assert_non_null(strstr(r.err, "loomctl: projection rebuild: --plugin "
                                  "LIB.so is required"));
    run_free(&r);
}

/* ------------------------------------------------------------------ */
/* Last: a million more events                                         */

static void
test_projection_list_caps_the_lag_count(void **state)
{
    char line[4096];
    run r;

    (void) state;
    /*
     * 1,000,001 more rows in loom.events, cheaply: in an unlogged child
     * table without indexes, which queries on loom.events read as well.
     * Appending them, or inserting them into loom.events itself, takes
     * 15 s or more, and one transaction that long would hold back
     * commit-order readers in every database of the cluster (the tests
     * running in parallel). The lag count is the same query either way.
     */
    loomt_sql_exec("CREATE UNLOGGED TABLE loom.events_bulk () "
                   "INHERITS (loom.events);"
                   "INSERT INTO loom.events_bulk (position, stream, category, "
                   "version, event_id, type, schema_version, data) "
                   "SELECT 100000000 + g, 'bulk-1', 'bulk', g, "
                   "'00000000-0000-0000-0000-000000000000', 'bulk.Row', 1, '' "
                   "FROM generate_series(0, 1000000) g");
    list_entry("cache", line, sizeof line);
    assert_member(line, "lag_events", "1000000");
    assert_member(line, "lag_events_capped", "true");
    r = lc("projection list");
    assert_int_equal(r.rc, 0);
    assert_non_null(strstr(r.out, ">1000000"));
    run_free(&r);
    r = lc("projection status cache");
    assert_non_null(strstr(r.out, "lag events           >1000000\n"));
    run_free(&r);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_projection_list_table_has_a_row_per_projection),
        cmocka_unit_test(
            test_projection_list_json_reports_lag_parked_and_model),
        cmocka_unit_test(
            test_projection_list_shows_connected_runner_and_rebuild),
        cmocka_unit_test(
            test_projection_status_shows_checkpoint_lag_and_parked),
        cmocka_unit_test(test_projection_status_json_is_one_object),
        cmocka_unit_test(test_projection_status_shows_at_most_5_parked_events),
        cmocka_unit_test(test_projection_status_of_unknown_name_exits_1),
        cmocka_unit_test(test_projection_rebuild_plugin_problems_exit_1),
        cmocka_unit_test(test_projection_bad_arguments_exit_2),
        /* These change "orders" and append events, which the figures
         * above do not expect. */
        cmocka_unit_test(test_projection_rebuild_replays_every_event_and_swaps),
        cmocka_unit_test(test_projection_rebuild_stops_on_sigint_and_resumes),
        cmocka_unit_test(test_projection_status_names_what_holds_readers_back),
        cmocka_unit_test(test_projection_list_caps_the_lag_count),
    };

    return cmocka_run_group_tests_name("tools.loomctl.projection", tests,
                                       group_setup, group_teardown);
}
