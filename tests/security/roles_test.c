/*
 * The least-privilege roles of schema 10 (0010_roles.sql), against
 * PostgreSQL, with login users of the test's own:
 *   - a member of loom_writer appends and reads through the API, and every
 *     hand-written way to change or remove an event fails with a
 *     permission error (SQLSTATE 42501), leaving the events byte-exact;
 *   - the whole normal flow runs as that writer: units of work with outbox
 *     messages, the relay publishing them to topics, an idempotent inbox
 *     consumer, and a three-step saga (orchestrator, participant) to
 *     completion;
 *   - a member of loom_reader reads all, by stream and by category, but
 *     cannot append or write anything;
 *   - a pending migration refuses a user outside loom_admin with a clear
 *     message and runs for a (non-superuser) member of loom_admin, as
 *     loom_admin.
 *
 * The test support (estest, tptest, sagatest) connects with loomt_dsn();
 * as_login() points that one string, and LOOM_DATABASE_URL, at another
 * login, so that every helper and the framework itself run as it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>
#include <uv.h>

#include "e2etest.h"
#include "loom/loom.h"
#include "sagatest.h"

#define UNITS   20
#define WAIT_MS 20000

static char owner_dsn[4096];
static char writer_dsn[4200], reader_dsn[4200], admin_dsn[4200];
static char writer[64], reader[64], admin[64];

/* loomt_dsn() returns pgtest.c's static (writable) buffer of 4096 bytes;
 * the helpers read it on every connection. */
static void
as_login(const char *dsn)
{
    assert_true(strlen(dsn) < 4096);
    strcpy((char *) loomt_dsn(), dsn);
    setenv("LOOM_DATABASE_URL", dsn, 1);
}

static void
drop_logins(void)
{
    char sql[512];

    snprintf(sql, sizeof sql,
             "DROP ROLE IF EXISTS %s; DROP ROLE IF EXISTS %s; "
             "DROP ROLE IF EXISTS %s",
             writer, reader, admin);
    loomt_sql_exec(sql);
}

static int
group_setup(void **state)
{
    char sql[1024];
    long pid = (long) getpid();

    st_group_setup(state); /* database, migrations, saga topics */
    snprintf(owner_dsn, sizeof owner_dsn, "%s", loomt_dsn());
    tpt_topic_create("e2e.orders", 2, -1, -1, 0, -1);
    /* The owner's login is "loom", so its "$user" schema is schema loom:
     * put the services' tables where every login finds them. */
    loomt_sql_exec("ALTER TABLE loom.st_effects SET SCHEMA public; "
                   "SET search_path = public; " E2E_EFFECTS_SQL);
    snprintf(writer, sizeof writer, "loomt_writer_%ld", pid);
    snprintf(reader, sizeof reader, "loomt_reader_%ld", pid);
    snprintf(admin, sizeof admin, "loomt_admin_%ld", pid);
    drop_logins();
    snprintf(sql, sizeof sql,
             "CREATE ROLE %s LOGIN IN ROLE loom_writer; "
             "CREATE ROLE %s LOGIN IN ROLE loom_reader; "
             "CREATE ROLE %s LOGIN IN ROLE loom_admin; "
             /* The services' own tables (not Eventloom's). */
             "GRANT SELECT, INSERT ON st_effects, e2e_effects TO loom_writer; "
             "GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO loom_writer",
             writer, reader, admin);
    loomt_sql_exec(sql);
    snprintf(writer_dsn, sizeof writer_dsn, "%s user='%s'", owner_dsn, writer);
    snprintf(reader_dsn, sizeof reader_dsn, "%s user='%s'", owner_dsn, reader);
    snprintf(admin_dsn, sizeof admin_dsn, "%s user='%s'", owner_dsn, admin);
    return 0;
}

static int
group_teardown(void **state)
{
    as_login(owner_dsn);
    /* The database first: it holds the sessions and the memberships'
     * uses; the login roles are the cluster's. */
    st_group_teardown(state);
    if (writer[0] != '\0') {
        PGconn *c;
        char dsn[4200], sql[512];

        /* loomt_sql_exec() needs the dropped database: use "postgres". */
        snprintf(dsn, sizeof dsn, "%s dbname='postgres'", owner_dsn);
        c = PQconnectdb(dsn);
        snprintf(sql, sizeof sql,
                 "DROP ROLE IF EXISTS %s; DROP ROLE IF EXISTS %s; "
                 "DROP ROLE IF EXISTS %s",
                 writer, reader, admin);
        PQclear(PQexec(c, sql));
        PQfinish(c);
    }
    return 0;
}

static loom_store *
open_as(const char *dsn, loom_migrate_mode mode)
{
    loom_store_config cfg = LOOM_STORE_CONFIG_INIT;
    loom_store *s = NULL;
    char err[512];
    loom_err rc;

    cfg.conninfo = dsn;
    cfg.migrate = mode;
    rc = loom_store_open(&s, &cfg, err, sizeof err);
    if (rc != LOOM_OK)
        fail_msg("loom_store_open: %s: %s", loom_err_name(rc), err);
    return s;
}

static void
append_one(loom_store *s, const char *stream, const char *payload)
{
    loom_header h[2] = {{"tenant", "t-1"}, {"note", "written by the writer"}};
    loom_event_data ev;
    loom_err rc;

    memset(&ev, 0, sizeof ev);
    ev.type = "sec.Deposited";
    ev.data = payload;
    ev.data_len = strlen(payload);
    ev.headers = h;
    ev.n_headers = 2;
    rc = loom_store_append(s, stream, LOOM_EXPECT_ANY, &ev, 1, NULL);
    if (rc != LOOM_OK)
        fail_msg("append to %s: %s: %s", stream, loom_err_name(rc),
                 loom_store_errmsg(s));
}

/* A digest of every event row, to prove that nothing changed. */
static const char events_digest_sql[] =
    "SELECT md5(coalesce(string_agg(e::text, '|' ORDER BY position), '')) "
    "FROM loom.events e";

static void
digest(const char *dsn, char out[33])
{
    PGconn *c = est_connect(dsn);
    PGresult *r = est_query(c, events_digest_sql);

    snprintf(out, 33, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    PQfinish(c);
}

static void
the_writer_appends_and_reads_through_the_api(void **state)
{
    loom_store *s = open_as(writer_dsn, LOOM_MIGRATE_CHECK);
    loom_events *page = NULL;
    const loom_event *ev;
    PGconn *c;
    PGresult *r;

    (void) state;
    append_one(s, "acct-1", "100");
    append_one(s, "acct-1", "250");
    assert_int_equal(
        loom_store_read_stream(s, "acct-1", 0, LOOM_FORWARD, 10, &page),
        LOOM_OK);
    assert_int_equal(loom_events_count(page), 2);
    ev = loom_events_at(page, 1);
    assert_int_equal(ev->version, 1);
    assert_memory_equal(ev->data, "250", 3);
    assert_int_equal(ev->n_headers, 2);
    assert_string_equal(ev->headers[1].value, "written by the writer");
    loom_events_free(page);
    loom_store_close(s);

    /* It really is the writer, without any other role. */
    c = est_connect(writer_dsn);
    r = est_query(c, "SELECT current_user, pg_has_role('loom_writer', "
                     "'MEMBER'), pg_has_role('loom_admin', 'MEMBER'), "
                     "(SELECT rolsuper FROM pg_roles WHERE rolname = "
                     "current_user)");
    assert_string_equal(PQgetvalue(r, 0, 0), writer);
    assert_string_equal(PQgetvalue(r, 0, 1), "t");
    assert_string_equal(PQgetvalue(r, 0, 2), "f");
    assert_string_equal(PQgetvalue(r, 0, 3), "f");
    PQclear(r);
    PQfinish(c);
}

static void
the_writer_cannot_rewrite_or_delete_an_event_by_hand(void **state)
{
    /* Every statement a writer could try, each refused by a privilege
     * check (42501) before the append-only trigger is even reached. */
    static const char *const attempts[] = {
        "UPDATE loom.events SET data = '\\x00'::bytea",
        "UPDATE loom.events SET type = 'x' WHERE version = 0",
        "DELETE FROM loom.events",
        "DELETE FROM loom.events WHERE stream = 'acct-1'",
        "TRUNCATE loom.events",
        "TRUNCATE loom.events CASCADE",
        "ALTER TABLE loom.events DISABLE TRIGGER ALL",
        "ALTER TABLE loom.events DISABLE TRIGGER events_append_only",
        "DROP TRIGGER events_append_only ON loom.events",
        "ALTER TABLE loom.events OWNER TO CURRENT_USER",
        "DROP TABLE loom.events",
        "CREATE TRIGGER sneak BEFORE INSERT ON loom.events FOR EACH ROW "
        "EXECUTE FUNCTION loom.refuse_change()",
        "CREATE RULE sneak AS ON INSERT TO loom.events DO INSTEAD NOTHING",
        "SET session_replication_role = replica",
        "CREATE FUNCTION loom.sneak() RETURNS void LANGUAGE sql AS "
        "'DELETE FROM loom.events'",
        "CREATE OR REPLACE FUNCTION loom.refuse_change() RETURNS trigger "
        "LANGUAGE plpgsql AS 'BEGIN RETURN OLD; END'",
        "ALTER FUNCTION loom.refuse_change() OWNER TO CURRENT_USER",
        "DELETE FROM loom.schema_migrations",
        "UPDATE loom.saga_log SET kind = 'x'",
        "DELETE FROM loom.streams",
        "GRANT loom_admin TO CURRENT_USER",
        "SET ROLE loom_admin",
    };
    char before[33], after[33];
    PGconn *c;

    (void) state;
    digest(owner_dsn, before);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.events WHERE stream "
                            "= 'acct-1'"),
                     2);
    c = est_connect(writer_dsn);
    for (size_t i = 0; i < sizeof attempts / sizeof attempts[0]; i++)
        est_exec_fails(c, attempts[i], "42501");
    /* A GRANT by a user without the grant option grants nothing (with a
     * warning, not an error): the UPDATE after it still fails. */
    est_exec(c, "GRANT UPDATE, DELETE, TRUNCATE ON loom.events TO "
                "CURRENT_USER");
    est_exec_fails(c, "UPDATE loom.events SET data = '\\x00'::bytea", "42501");
    /* In a transaction, after a savepoint: nothing changes either. */
    est_exec(c, "BEGIN");
    est_exec(c, "SAVEPOINT a");
    est_exec_fails(c, "DELETE FROM loom.events", "42501");
    est_exec(c, "ROLLBACK TO a");
    est_exec(c, "COMMIT");
    PQfinish(c);
    digest(owner_dsn, after);
    assert_string_equal(before, after);
}

static void
the_reader_reads_but_cannot_append(void **state)
{
    loom_store *w = open_as(writer_dsn, LOOM_MIGRATE_CHECK);
    loom_store *s = open_as(reader_dsn, LOOM_MIGRATE_CHECK);
    loom_position start = {0, 0};
    loom_events *page = NULL;
    loom_event_data ev;
    char before[33], after[33];
    PGconn *c;

    (void) state;
    append_one(w, "audit-7", "seen by the reader");
    loom_store_close(w);
    /* Reads in commit order stop at the oldest transaction still running
     * anywhere on the server (the event store's horizon), and other tests
     * share it: look again until that one ends. */
    for (int64_t until = est_now_ms() + 10000;;) {
        assert_int_equal(loom_store_read_all(s, start, 100, &page), LOOM_OK);
        if (loom_events_count(page) >= 3 || est_now_ms() > until)
            break;
        loom_events_free(page);
        page = NULL;
        uv_sleep(20);
    }
    assert_true(loom_events_count(page) >= 3);
    loom_events_free(page);
    assert_int_equal(
        loom_store_read_category(s, "audit", start, NULL, 100, &page), LOOM_OK);
    assert_int_equal(loom_events_count(page), 1);
    assert_memory_equal(loom_events_at(page, 0)->data, "seen by the reader",
                        18);
    loom_events_free(page);

    digest(owner_dsn, before);
    memset(&ev, 0, sizeof ev);
    ev.type = "sec.Forged";
    ev.data = "x";
    ev.data_len = 1;
    assert_int_equal(
        loom_store_append(s, "audit-7", LOOM_EXPECT_ANY, &ev, 1, NULL),
        LOOM_EDB);
    assert_string_equal(loom_store_sqlstate(s), "42501");
    assert_non_null(strstr(loom_store_errmsg(s), "permission denied"));
    loom_store_close(s);

    c = est_connect(reader_dsn);
    est_exec_fails(c,
                   "INSERT INTO loom.events (stream, category, version, "
                   "event_id, type, schema_version, data) VALUES ('a-1', "
                   "'a', 0, gen_random_uuid(), 't', 0, '')",
                   "42501");
    est_exec_fails(c, "UPDATE loom.streams SET version = 0", "42501");
    est_exec_fails(c,
                   "SELECT loom.checkpoint_advance('x', '0', 0, -1, '1', 1, "
                   "-1)",
                   "42501");
    est_exec_fails(c, "DELETE FROM loom.events", "42501");
    PQfinish(c);
    digest(owner_dsn, after);
    assert_string_equal(before, after);
}

static int
effects_done(void *arg)
{
    (void) arg;
    return est_ll("SELECT count(*) FROM e2e_effects") >= UNITS;
}

static void
the_writer_runs_outbox_relay_topics_and_inbox(void **state)
{
    loom_relay_config rcfg = LOOM_RELAY_CONFIG_INIT;
    loom_inbox_consumer *ic;
    loom_relay *relay = NULL;
    loom_store *s;
    loom_tx *tx = NULL;
    tpt_env e;
    char err[512] = "";

    (void) state;
    as_login(writer_dsn);
    s = est_store_open(NULL);
    assert_int_equal(loom_tx_new(&tx), LOOM_OK);
    for (int i = 0; i < UNITS; i++) {
        char stream[32];
        loom_err rc;

        snprintf(stream, sizeof stream, "order-%d", i % 4);
        rc = e2e_order_unit(s, tx, stream, i / 4 - 1, 0);
        if (rc != LOOM_OK)
            fail_msg("unit %d: %s: %s", i, loom_err_name(rc),
                     loom_store_errmsg(s));
    }
    loom_tx_free(tx);
    loom_store_close(s);

    tpt_open(&e, "");
    rcfg.transport = e.t;
    rcfg.poll_ms = 100;
    if (loom_relay_start(e.rt, &rcfg, &relay, err, sizeof err) != LOOM_OK)
        fail_msg("loom_relay_start as the writer: %s", err);
    ic = e2e_consumer(&e, "e2e.orders");
    assert_int_equal(tpt_run(&e, effects_done, NULL, WAIT_MS), 1);
    loom_inbox_consumer_close(ic);
    loom_relay_close(relay);
    tpt_close(&e);
    as_login(owner_dsn);

    /* Each message applied once, with its inbox mark. */
    assert_int_equal(est_ll("SELECT count(DISTINCT message_id) FROM "
                            "e2e_effects"),
                     UNITS);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.inbox"), UNITS);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.topic_messages m JOIN "
                            "loom.topics t ON t.id = m.topic_id WHERE t.name "
                            "= 'e2e.orders'"),
                     UNITS);
}

static void
the_writer_runs_a_saga_to_completion(void **state)
{
    loom_orchestrator *o;
    loom_store *s;
    st_env *v;
    char buf[512];

    (void) state;
    as_login(writer_dsn);
    v = st_open();
    o = st_orch_open(v, NULL);
    s = open_as(writer_dsn, LOOM_MIGRATE_CHECK);
    assert_int_equal(st_start(s, &st_three, "sec-1", NULL), 1);
    st_wait_state("sec-1", "COMPLETED", WAIT_MS);
    assert_string_equal(st_effects(buf, sizeof buf, "sec-1", "ok"),
                        "Reserve,Charge,Ship");
    loom_store_close(s);
    st_orch_close(v, o);
    st_close(v);
    as_login(owner_dsn);
}

static void
a_migration_needs_loom_admin_and_runs_as_it(void **state)
{
    loom_store_config cfg = LOOM_STORE_CONFIG_INIT;
    loom_store *s = NULL;
    char err[512];

    (void) state;
    as_login(owner_dsn);
    /* Make schema 10 pending again, as an upgrade would find it. */
    loomt_sql_exec("DELETE FROM loom.schema_migrations WHERE version = 10; "
                   "DROP FUNCTION loom.grant_roles()");
    cfg.conninfo = writer_dsn;
    cfg.migrate = LOOM_MIGRATE_AUTO;
    assert_int_equal(loom_store_open(&s, &cfg, err, sizeof err), LOOM_EDB);
    assert_null(s);
    assert_non_null(strstr(err, "0010_roles needs role loom_admin"));
    assert_non_null(strstr(err, writer));
    assert_int_equal(
        est_ll("SELECT count(*) FROM loom.schema_migrations WHERE version = "
               "10"),
        0);

    /* A member of loom_admin, no superuser, no CREATEROLE. */
    s = open_as(admin_dsn, LOOM_MIGRATE_AUTO);
    loom_store_close(s);
    assert_int_equal(
        est_ll("SELECT count(*) FROM loom.schema_migrations WHERE version = "
               "10"),
        1);
    assert_int_equal(est_ll("SELECT count(*) FROM pg_proc WHERE proname = "
                            "'grant_roles' AND proowner = "
                            "'loom_admin'::regrole"),
                     1);
    /* Nothing in schema loom belongs to anyone else. */
    assert_int_equal(est_ll("SELECT count(*) FROM pg_class WHERE "
                            "relnamespace = 'loom'::regnamespace AND "
                            "relowner <> 'loom_admin'::regrole"),
                     0);
    /* And the writer is still what it was. */
    s = open_as(writer_dsn, LOOM_MIGRATE_AUTO);
    append_one(s, "acct-2", "after the migration");
    loom_store_close(s);
    {
        PGconn *c = est_connect(writer_dsn);
        est_exec_fails(c, "DELETE FROM loom.events", "42501");
        PQfinish(c);
    }
}

/* Runs loomctl with `args` (trusted shell words); returns its exit
 * status and its output (both streams) in out. */
static int
loomctl(char *out, size_t len, const char *args)
{
    char cmd[8192];
    FILE *p;
    size_t n;
    int status;

    snprintf(cmd, sizeof cmd, "%s --db \"$LOOMT_OWNER_DSN\" %s 2>&1",
             LOOMCTL_PATH, args);
    setenv("LOOMT_OWNER_DSN", owner_dsn, 1);
    p = popen(cmd, "r");
    assert_non_null(p);
    n = fread(out, 1, len - 1, p);
    out[n] = '\0';
    status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void
a_store_role_narrows_a_login_across_reconnections(void **state)
{
    loom_store_config cfg = LOOM_STORE_CONFIG_INIT;
    loom_store *s = NULL;
    loom_event_data ev;
    char err[512], out[4096];
    loom_err rc;

    (void) state;
    as_login(owner_dsn);
    memset(&ev, 0, sizeof ev);
    ev.type = "sec.Try";
    ev.data = "x";
    ev.data_len = 1;
    /* The owner (a superuser) narrowed to loom_reader: reads, no append. */
    cfg.conninfo = owner_dsn;
    cfg.application_name = "loomt-role";
    cfg.role = "loom_reader";
    rc = loom_store_open(&s, &cfg, err, sizeof err);
    if (rc != LOOM_OK)
        fail_msg("open with role loom_reader: %s", err);
    assert_int_equal(
        loom_store_append(s, "role-1", LOOM_EXPECT_ANY, &ev, 1, NULL),
        LOOM_EDB);
    assert_string_equal(loom_store_sqlstate(s), "42501");
    /* Still the reader after the server dropped the session. */
    assert_int_equal(est_ll("SELECT count(pg_terminate_backend(pid)) FROM "
                            "pg_stat_activity WHERE application_name = "
                            "'loomt-role'"),
                     1);
    memset(&ev.id, 0, sizeof ev.id);
    rc = loom_store_append(s, "role-1", LOOM_EXPECT_ANY, &ev, 1, NULL);
    if (rc == LOOM_ECONN) /* the loss is seen first; this call reconnects */
        rc = loom_store_append(s, "role-1", LOOM_EXPECT_ANY, &ev, 1, NULL);
    assert_int_equal(rc, LOOM_EDB);
    assert_string_equal(loom_store_sqlstate(s), "42501");
    loom_store_close(s);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.streams WHERE stream "
                            "= 'role-1'"),
                     0);

    /* A login outside the role cannot take it. */
    cfg.conninfo = reader_dsn;
    cfg.role = "loom_writer";
    assert_int_equal(loom_store_open(&s, &cfg, err, sizeof err), LOOM_ECONN);
    assert_non_null(strstr(err, "permission denied to set role"));
    /* Nor can a role name smuggle SQL or options in. */
    cfg.role = "loom_writer -c search_path=x";
    assert_int_equal(loom_store_open(&s, &cfg, err, sizeof err), LOOM_EINVAL);

    /* loomctl --role: the same for the operator. */
    assert_int_equal(loomctl(out, sizeof out, "--role loom_reader stats"), 0);
    assert_int_not_equal(
        loomctl(out, sizeof out,
                "--role loom_reader topics create sec.t --partitions 1"),
        0);
    assert_non_null(strstr(out, "permission denied"));
    assert_int_equal(est_ll("SELECT count(*) FROM loom.topics WHERE name = "
                            "'sec.t'"),
                     0);
    assert_int_equal(loomctl(out, sizeof out, "--role loom_admin migrate"), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_writer_appends_and_reads_through_the_api),
        cmocka_unit_test(the_writer_cannot_rewrite_or_delete_an_event_by_hand),
        cmocka_unit_test(the_reader_reads_but_cannot_append),
        cmocka_unit_test(the_writer_runs_outbox_relay_topics_and_inbox),
        cmocka_unit_test(the_writer_runs_a_saga_to_completion),
        cmocka_unit_test(a_store_role_narrows_a_login_across_reconnections),
        cmocka_unit_test(a_migration_needs_loom_admin_and_runs_as_it),
    };

    return cmocka_run_group_tests_name("security.roles", tests, group_setup,
                                       group_teardown);
}
