/*
 * loomctl --role on the commands whose connections the library opens
 * from a connection string alone: `relay` (the runtime, the relay and
 * the topics transport) and `projection rebuild`. They once connected
 * with the login's full rights whatever --role said, so that a
 * loom_reader could publish an outbox and swap a read model. Also: a
 * refused privilege (SQLSTATE 42501) says what each role may do.
 *
 * The test's login may act as every role (a superuser, or a member of
 * each), so only --role limits it. Rights of loom_writer are narrowed or
 * widened in this executable's database only (GRANT and REVOKE on its
 * objects), never the cluster's roles.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "obtest.h"
#include "pgtest.h"

/* What every refused privilege ends with (main.c, ctl_fail_sql()). */
#define ROLES_HINT "loom_reader may only read; writes"

static int
group_setup(void **state)
{
    static const char *const streams[] = {"order-1", "order-1", "order-2"};
    loom_event_data ev;
    loom_store *s;

    (void) state;
    obt_db_open("loomctl_role");
    /* SET ROLE needs membership; a superuser has it already. */
    loomt_sql_exec("DO $$ BEGIN IF NOT pg_has_role(current_user, "
                   "'loom_writer', 'MEMBER') OR NOT pg_has_role(current_user, "
                   "'loom_reader', 'MEMBER') THEN GRANT loom_writer, "
                   "loom_reader TO CURRENT_USER; END IF; END $$");
    s = loomt_store_open();
    for (int i = 0; i < 3; i++) {
        memset(&ev, 0, sizeof ev);
        append_one(s, streams[i], "shop.OrderPlaced", "\x08\x01", 2, &ev);
    }
    loom_store_close(s);
    return 0;
}

/* ------------------------------------------------------------------ */
/* permission errors                                                   */

static void
test_role_permission_error_names_the_roles(void **state)
{
    run r;

    (void) state;
    r = lc("--role loom_reader topics create zz --partitions 1");
    assert_int_equal(r.rc, 1);
    assert_has(r.err, "loomctl: topics create: permission denied for table "
                      "topics (the role in use lacks that right: " ROLES_HINT);
    assert_has(r.err, "migrations loom_admin");
    run_free(&r);
    assert_int_equal(sqlf_ll("SELECT count(*) FROM loom.topics"), 0);
    r = lc("--role loom_writer topics create zz --partitions 1");
    assert_int_equal(r.rc, 0);
    run_free(&r);
}

/* ------------------------------------------------------------------ */
/* relay                                                               */

static void
test_role_reader_relay_is_refused_and_publishes_nothing(void **state)
{
    run r;

    (void) state;
    create_topic("orders");
    add_messages("default", "orders", 5);
    r = lc("--role loom_reader relay --report-ms 0");
    assert_int_equal(r.rc, 1);
    assert_has(r.err, "loomctl: relay: role \"loom_reader\" may not publish "
                      "outbox default");
    assert_has(r.err, ROLES_HINT);
    assert_string_equal(r.out, "");
    run_free(&r);
    assert_int_equal(arrived("orders"), 0);
    assert_int_equal(sqlf_ll("SELECT count(*) FROM loom.outbox_relays"), 0);
    assert_int_equal(sqlf_ll("SELECT count(*) FROM loom.outbox"), 5);
}

/* The relay's own connections work as the role: with the writer's rights
 * on the topics taken away in this database, the login (a superuser)
 * would still publish; the role may not. */
static void
test_role_writer_relay_publishes_with_the_roles_rights(void **state)
{
    static const char revoke[] =
        "REVOKE INSERT, UPDATE ON loom.topic_messages, loom.topic_partitions "
        "FROM loom_writer";
    static const char grant[] =
        "GRANT INSERT, UPDATE ON loom.topic_messages, loom.topic_partitions "
        "TO loom_writer";
    const char *const how[] = {"", "--transport 'topics://?acks=1'"};
    child *ch;

    (void) state;
    create_topic("orders");
    add_messages("default", "orders", 5);
    loomt_sql_exec(revoke);
    for (size_t i = 0; i < 2; i++) {
        char args[256];
        snprintf(args, sizeof args, "--role loom_writer relay %s", how[i]);
        ch = child_spawn(args);
        child_wait_out(ch, "active: this relay publishes outbox default now");
        /* Its first publish is refused (a slow build takes a while to
         * try). */
        child_wait_err(ch, "permission denied for table topic_");
        assert_int_equal(child_stop(ch, SIGTERM), 0);
        assert_int_equal(arrived("orders"), 0);
    }
    loomt_sql_exec(grant);
    ch = child_spawn("--role loom_writer relay");
    wait_arrived("orders", 5);
    assert_int_equal(child_stop(ch, SIGTERM), 0);
}

/* ------------------------------------------------------------------ */
/* projection rebuild                                                  */

static long long
schemas(void)
{
    return sqlf_ll("SELECT count(*) FROM pg_namespace "
                   "WHERE nspname LIKE 'loomctl\\_orders%%'");
}

static void
test_role_reader_rebuild_is_refused_and_changes_nothing(void **state)
{
    run r;

    (void) state;
    r = lc("--role loom_reader projection rebuild orders --plugin %s",
           LOOMCTL_PLUGIN_PATH);
    assert_int_equal(r.rc, 1);
    assert_has(r.err, "loomctl: projection rebuild: role \"loom_reader\" may "
                      "not rebuild \"orders\": it needs CREATE on database");
    assert_has(r.err, ROLES_HINT);
    assert_string_equal(r.out, "");
    run_free(&r);
    assert_int_equal(schemas(), 0);
    assert_int_equal(sqlf_ll("SELECT count(*) FROM loom.projections"), 0);
}

/* The writer rebuilds once the database lets it create schemas, and the
 * schema it makes is its own: the rebuild's connections work as the
 * role, not as the login. */
static void
test_role_writer_rebuild_works_as_the_role(void **state)
{
    run r;

    (void) state;
    r = lc("--role loom_writer projection rebuild orders --plugin %s",
           LOOMCTL_PLUGIN_PATH);
    assert_int_equal(r.rc, 1);
    assert_has(r.err, "role \"loom_writer\" may not rebuild \"orders\"");
    run_free(&r);
    assert_int_equal(schemas(), 0);

    loomt_sql_exec("DO $$ BEGIN EXECUTE format('GRANT CREATE ON DATABASE "
                   "%I TO loom_writer', current_database()); END $$");
    r = lc_wait_lines(3, "tail --from start --json");
    run_free(&r);
    for (int round = 1; round <= 2; round++) {
        r = lc("--role loom_writer projection rebuild orders --plugin %s",
               LOOMCTL_PLUGIN_PATH);
        if (r.rc != 0)
            fail_msg("round %d: exit %d: %s", round, r.rc, r.err);
        assert_has(r.out, "rebuilt orders: 3 events");
        run_free(&r);
        assert_int_equal(sqlf_ll("SELECT count(*) FROM pg_namespace WHERE "
                                 "nspname = 'loomctl_orders' AND "
                                 "nspowner = 'loom_writer'::regrole"),
                         1);
        assert_int_equal(sqlf_ll("SELECT placed FROM loomctl_orders.orders "
                                 "WHERE stream = 'order-1'"),
                         2);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_role_permission_error_names_the_roles, obt_setup,
            obt_teardown),
        cmocka_unit_test_setup_teardown(
            test_role_reader_relay_is_refused_and_publishes_nothing, obt_setup,
            obt_teardown),
        cmocka_unit_test_setup_teardown(
            test_role_writer_relay_publishes_with_the_roles_rights, obt_setup,
            obt_teardown),
        cmocka_unit_test(
            test_role_reader_rebuild_is_refused_and_changes_nothing),
        cmocka_unit_test(test_role_writer_rebuild_works_as_the_role),
    };

    return cmocka_run_group_tests_name("tools.loomctl.role", tests, group_setup,
                                       obt_group_teardown);
}
