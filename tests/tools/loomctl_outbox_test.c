/*
 * loomctl outbox end to end: status with messages put into loom.outbox
 * with plain SQL (as loom_outbox_add() would) and no relay, dlq and
 * redrive on rows put into loom.outbox_dead_letters directly, and the
 * usage and connection errors of `outbox` and `relay`. The relays
 * themselves run in loomctl_relay_test.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "obtest.h"
#include "pgtest.h"

/* ------------------------------------------------------------------ */
/* status                                                              */

static void
test_outbox_status_empty(void **state)
{
    run r;

    (void) state;
    r = lc("outbox status");
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.err, "");
    assert_string_equal(r.out, "(no outboxes yet: a service makes one with "
                               "its first loom_outbox_add(), and `loomctl "
                               "relay` publishes it)\n");
    run_free(&r);
    r = lc("outbox status --json");
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, "");
    run_free(&r);
    r = lc("outbox status orders");
    assert_int_equal(r.rc, 1);
    assert_has(r.err, "outbox status: outbox \"orders\" has no messages and "
                      "no relay has run for it");
    run_free(&r);
}

static void
test_outbox_status_pending_without_relay(void **state)
{
    char line[4096], raw[64];
    run r;

    (void) state;
    add_messages("default", "orders", 3);
    add_messages("billing", "invoices", 1);
    r = lc("outbox status");
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.err, "");
    /* No relay anywhere: no relay columns. */
    assert_row(r.out, "OUTBOX",
               "OUTBOX PENDING OLDEST PUBLISHED MSG/S DEAD "
               "RELAY");
    assert_row_like(r.out, "billing ", "billing 1 ", " s 0 - 0 none");
    assert_row_like(r.out, "default ", "default 3 ", " s 0 - 0 none");
    assert_has(r.out, "outbox default: 3 messages waiting and no active "
                      "relay: start one with `loomctl relay --outbox "
                      "default`\n");
    assert_has(r.out, "outbox billing: 1 message waiting");
    run_free(&r);

    r = lc("outbox status --json");
    assert_int_equal(r.rc, 0);
    assert_int_equal(count_lines(r.out), 2);
    assert_json_lines(r.out);
    line_at(r.out, 1, line, sizeof line);
    get_str(line, "outbox", raw, sizeof raw);
    assert_string_equal(raw, "default");
    assert_int_equal(get_i64(line, "pending"), 3);
    assert_int_equal(get_i64(line, "published"), 0);
    assert_int_equal(get_i64(line, "dead_letters"), 0);
    get_raw(line, "oldest_pending_seconds", raw, sizeof raw);
    assert_true(strtod(raw, NULL) >= 0 && strtod(raw, NULL) < 600);
    get_raw(line, "relay", raw, sizeof raw);
    assert_string_equal(raw, "null");
    get_raw(line, "last_relay", raw, sizeof raw);
    assert_string_equal(raw, "null");
    get_raw(line, "failing", raw, sizeof raw);
    assert_string_equal(raw, "false");
    get_raw(line, "rate", raw, sizeof raw);
    assert_string_equal(raw, "0");
    run_free(&r);

    r = lc("outbox status billing --json");
    assert_int_equal(r.rc, 0);
    only_json_line(r.out, line, sizeof line);
    assert_int_equal(get_i64(line, "pending"), 1);
    run_free(&r);
}

/* ------------------------------------------------------------------ */
/* dlq and redrive                                                     */

#define DEAD_1 "0190f5c2-8a41-7cc3-9d52-1b7e0f3a4c11"
#define DEAD_2 "0190f5c2-8a41-7cc3-9d52-1b7e0f3a4c22"
#define DEAD_3 "0190f5c2-8a41-7cc3-9d52-1b7e0f3a4c33"

static void
bury(const char *outbox, int position, const char *key_sql, const char *id,
     const char *error)
{
    char sql[1024];

    snprintf(sql, sizeof sql,
             "INSERT INTO loom.outbox_dead_letters (outbox, tx, position, "
             "topic, key, type, payload, message_id, created_at, error, "
             "failed_at) VALUES ('%s', '7', %d, 'orders', %s, 'shop.Order', "
             "'\\x01020304', '%s', now() - interval '1 hour', %s, "
             "now() - interval '3 minutes')",
             outbox, position, key_sql, id, error);
    loomt_sql_exec(sql);
}

static void
test_outbox_dlq_and_redrive(void **state)
{
    char line[4096], raw[256];
    run r;

    (void) state;
    bury("default", 11, "convert_to('order-42', 'UTF8')", DEAD_1,
         "'the transport refused it: too large'");
    bury("default", 12, "'\\x00ff10'", DEAD_2, "E'first line\\nsecond line'");
    bury("other", 13, "NULL", DEAD_3, "'refused'");

    r = lc("outbox dlq default");
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.err, "");
    assert_row(r.out, "OUTBOX",
               "OUTBOX POSITION MESSAGE ID TOPIC KEY TYPE "
               "SIZE FAILED ERROR");
    assert_row(r.out, DEAD_1,
               "default 11 " DEAD_1 " orders order-42 shop.Order 4 3 min ago "
               "the transport refused it: too large");
    assert_row(r.out, DEAD_2,
               "default 12 " DEAD_2 " orders 0x00ff10 shop.Order 4 3 min ago "
               "first line\xe2\x80\xa6");
    assert_true(strstr(r.out, DEAD_3) == NULL);
    assert_has(r.out, "`loomctl outbox redrive default` puts them back");
    run_free(&r);

    r = lc("outbox dlq --limit 2");
    assert_int_equal(r.rc, 0);
    assert_has(r.out, DEAD_1);
    assert_true(strstr(r.out, DEAD_3) == NULL);
    assert_has(r.out, "(the first 2 are shown; --limit N shows more)");
    run_free(&r);

    r = lc("outbox dlq --json");
    assert_int_equal(r.rc, 0);
    assert_int_equal(count_lines(r.out), 3);
    assert_json_lines(r.out);
    line_at(r.out, 0, line, sizeof line);
    get_str(line, "key", raw, sizeof raw);
    assert_string_equal(raw, "order-42");
    get_str(line, "key_hex", raw, sizeof raw);
    assert_string_equal(raw, "6f726465722d3432");
    assert_int_equal(get_i64(line, "position"), 11);
    assert_int_equal(get_i64(line, "tx"), 7);
    assert_int_equal(get_i64(line, "size"), 4);
    get_str(line, "message_id", raw, sizeof raw);
    assert_string_equal(raw, DEAD_1);
    get_str(line, "type", raw, sizeof raw);
    assert_string_equal(raw, "shop.Order");
    get_str(line, "failed_at", raw, sizeof raw);
    assert_int_equal(strlen(raw), 24);
    line_at(r.out, 1, line, sizeof line);
    get_raw(line, "key", raw, sizeof raw);
    assert_string_equal(raw, "null");
    get_str(line, "key_hex", raw, sizeof raw);
    assert_string_equal(raw, "00ff10");
    get_str(line, "error", raw, sizeof raw);
    assert_string_equal(raw, "first line\nsecond line");
    line_at(r.out, 2, line, sizeof line);
    get_raw(line, "key_hex", raw, sizeof raw);
    assert_string_equal(raw, "null");
    run_free(&r);

    /* Status counts them and says what to do. */
    /* An outbox with dead letters only is listed too. */
    r = lc("outbox status other");
    assert_int_equal(r.rc, 0);
    assert_has(r.out, "outbox other: 1 dead letter");
    run_free(&r);
    add_messages("default", "orders", 1);
    r = lc("outbox status default");
    assert_row_like(r.out, "default ", "default 1 ", " s 0 - 2 none");
    assert_has(r.out, "outbox default: 2 dead letters: `loomctl outbox dlq "
                      "default` lists them, `loomctl outbox redrive default` "
                      "sends them again");
    run_free(&r);

    /* An id that is no dead letter (of that outbox): nothing happens. */
    r = lc("outbox redrive default --id " DEAD_1 " --id " DEAD_3);
    assert_int_equal(r.rc, 1);
    assert_has(r.err, "outbox redrive: no dead letter of outbox default has "
                      "message id " DEAD_3 "; nothing was re-driven");
    run_free(&r);
    assert_int_equal(sqlf_ll("SELECT count(*) FROM loom.outbox_dead_letters"),
                     3);

    r = lc("outbox redrive default --id " DEAD_2);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, "re-drove 1 dead letter of outbox default: "
                               "back in the outbox as new messages with their "
                               "ids; no relay is active: start one with "
                               "`loomctl relay --outbox default`\n");
    run_free(&r);
    assert_int_equal(sqlf_ll("SELECT count(*) FROM loom.outbox WHERE "
                             "message_id = '" DEAD_2 "' AND key = "
                             "'\\x00ff10' AND type = 'shop.Order'"),
                     1);

    r = lc("outbox redrive --json");
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out,
                        "{\"redriven\":2,\"outboxes\":[{\"outbox\":\"default\","
                        "\"redriven\":1,\"relay_active\":false},{\"outbox\":"
                        "\"other\",\"redriven\":1,\"relay_active\":false}]}\n");
    run_free(&r);
    assert_int_equal(sqlf_ll("SELECT count(*) FROM loom.outbox_dead_letters"),
                     0);
    assert_int_equal(sqlf_ll("SELECT count(*) FROM loom.outbox"), 4);

    r = lc("outbox redrive");
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, "re-drove 0 dead letters: none was waiting in "
                               "any outbox\n");
    run_free(&r);
    r = lc("outbox dlq default");
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, "(no dead letters in outbox default)\n");
    run_free(&r);
    r = lc("outbox dlq nope");
    assert_int_equal(r.rc, 1);
    assert_has(r.err, "outbox dlq: outbox \"nope\" has no messages, dead "
                      "letters or relay");
    run_free(&r);
}

/* ------------------------------------------------------------------ */
/* Errors                                                              */

static void
assert_usage(const char *args, const char *message)
{
    run r = lc("%s", args);

    if (r.rc != 2)
        fail_msg("loomctl %s: exit %d, expected 2; stderr:\n%s", args, r.rc,
                 r.err);
    assert_has(r.err, message);
    assert_has(r.err, "usage: loomctl ");
    assert_string_equal(r.out, "");
    run_free(&r);
}

static void
test_outbox_bad_arguments(void **state)
{
    (void) state;
    assert_usage("outbox", "give a subcommand: status, dlq or redrive");
    assert_usage("outbox frob", "unknown subcommand \"frob\"");
    assert_usage("outbox status --limit 5", "unknown option \"--limit\"");
    assert_usage("outbox status a b", "unexpected argument \"b\"");
    assert_usage("outbox status 'bad name'",
                 "OUTBOX: an outbox name is 1 to 63 letters, digits");
    assert_usage("outbox dlq --limit 0", "--limit: expected a whole number "
                                         "from 1 to 100000, got \"0\"");
    assert_usage("outbox dlq --id " DEAD_1, "unknown option \"--id\"");
    assert_usage("outbox redrive --id nope", "--id: \"nope\" is not a "
                                             "message id");
    assert_usage("outbox redrive --limit 3", "unknown option \"--limit\"");
    assert_usage("relay --bogus", "relay: unknown option \"--bogus\"");
    assert_usage("relay --batch 0", "--batch: expected a whole number from 1 "
                                    "to 10000, got \"0\"");
    assert_usage("relay --batch 10001", "--batch: expected a whole number");
    assert_usage("relay --batch 99999999999999999999999",
                 "--batch: expected a whole number");
    assert_usage("relay --batch", "--batch needs a value");
    assert_usage("relay --report-ms -1", "--report-ms: expected a whole "
                                         "number from 0 to 86400000");
    assert_usage("relay --outbox 'a b'",
                 "--outbox: an outbox name is 1 to 63 letters");
    assert_usage("relay --outbox ''", "--outbox: an outbox name is 1 to 63");
    assert_usage("relay --name ''", "--name: expected 1 to 200 bytes");
    assert_usage("relay --transport nourl", "--transport: \"nourl\" is not a "
                                            "transport URL");
    assert_usage("relay default", "unexpected argument \"default\"");
}

static void
test_relay_errors(void **state)
{
    char db[4200], dbname[64];
    run r;

    (void) state;
    r = lc("relay --transport nosuch://x --report-ms 0");
    assert_int_equal(r.rc, 2);
    assert_has(r.err, "relay: --transport nosuch://x: no transport for "
                      "scheme \"nosuch\" (registered: topics");
    run_free(&r);
    r = lc("relay --transport 'topics://?acks=7'");
    assert_int_equal(r.rc, 2);
    assert_has(r.err, "topics URL: bad option \"acks=7\"");
    run_free(&r);
    /* A password is never shown. */
    r = lc("relay --transport 'topics://u:secret@/nodb?host=/nonexistent'");
    assert_int_equal(r.rc, 1);
    assert_has(r.err, "relay: opening the transport topics://u:***@/nodb");
    assert_true(strstr(r.err, "secret") == NULL);
    run_free(&r);

    r = lc("relay --db 'host=/nonexistent port=1 dbname=x'");
    assert_int_equal(r.rc, 1);
    assert_has(r.err, "loomctl: opening the event store at host=/nonexistent "
                      "port=1 dbname=x: ");
    assert_string_equal(r.out, "");
    run_free(&r);

    /* A database without the schema. */
    snprintf(dbname, sizeof dbname, "loomt_outbox_empty_%ld", (long) getpid());
    {
        char sql[128];
        snprintf(sql, sizeof sql, "CREATE DATABASE %s", dbname);
        loomt_sql_exec(sql);
    }
    snprintf(db, sizeof db, "%s dbname=%s", loomt_dsn(), dbname);
    r = lc("relay --db %s", sq(db));
    assert_int_equal(r.rc, 1);
    assert_has(r.err, "run `loomctl migrate`");
    run_free(&r);
    r = lc("outbox status --db %s", sq(db));
    assert_int_equal(r.rc, 1);
    assert_has(r.err, "the Eventloom schema is missing or old: run `loomctl "
                      "migrate`");
    run_free(&r);
    {
        char sql[128];
        snprintf(sql, sizeof sql, "DROP DATABASE %s", dbname);
        loomt_sql_exec(sql);
    }
}

static void
test_outbox_help(void **state)
{
    run r;

    (void) state;
    r = lc("relay --help");
    assert_int_equal(r.rc, 0);
    assert_has(r.out, "usage: loomctl relay [--outbox NAME] [--transport URL] "
                      "[--batch N] [--name NAME] [--report-ms N]\n");
    assert_has(r.out, "--batch N         most messages per publish (default "
                      "500");
    assert_has(r.out, "--report-ms N     a status line every N ms (default "
                      "10000");
    run_free(&r);
    r = lc("help outbox");
    assert_int_equal(r.rc, 0);
    assert_has(r.out, "usage: loomctl outbox status [OUTBOX]\n");
    run_free(&r);
    r = lc("--help");
    assert_has(r.out, "  outbox     ");
    assert_has(r.out, "  relay      ");
    run_free(&r);
}

static int
group_setup(void **state)
{
    (void) state;
    obt_db_open("loomctl_outbox");
    return 0;
}

int
main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, obt_setup, obt_teardown)
    const struct CMUnitTest tests[] = {
        T(test_outbox_status_empty),
        T(test_outbox_status_pending_without_relay),
        T(test_outbox_dlq_and_redrive),
        T(test_outbox_bad_arguments),
        T(test_relay_errors),
        T(test_outbox_help),
    };
#undef T

    return cmocka_run_group_tests_name("tools.loomctl.outbox", tests,
                                       group_setup, obt_group_teardown);
}
