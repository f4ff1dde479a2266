/*
 * loomctl relay end to end: `loomctl relay` runs as child processes that
 * publish messages put into loom.outbox with plain SQL to topics of this
 * executable's own database, and `loomctl outbox status` must show what
 * happens: the active relay, a standby taking over from a killed one, a
 * clean stop, a killed relay shown gone, a failing transport, a message
 * refused for good and re-driven.
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
/* relay                                                               */

static void
test_relay_publishes_and_stops_cleanly(void **state)
{
    char line[4096], relay[2048], raw[256];
    child *ch;
    char *out;
    run r;

    (void) state;
    create_topic("orders");
    add_messages("default", "orders", 50);
    ch = child_spawn("relay --name relay-one --report-ms 200");
    child_wait_out(ch, "active: this relay publishes outbox default now\n");
    wait_arrived("orders", 50);
    /* The cursor moves after the publish: wait for it. */
    for (long long deadline = now_ms() + WAIT_MS;; sleep_ms(100)) {
        status_json(line, sizeof line);
        if (get_i64(line, "pending") == 0 || now_ms() > deadline)
            break;
    }
    assert_int_equal(get_i64(line, "pending"), 0);
    assert_int_equal(get_i64(line, "published"), 50);
    get_raw(line, "relay", relay, sizeof relay);
    get_str(relay, "name", raw, sizeof raw);
    assert_string_equal(raw, "relay-one");
    get_str(relay, "transport", raw, sizeof raw);
    assert_string_equal(raw, "topics");
    assert_true(get_i64(relay, "backend_pid") > 0);
    get_str(relay, "since", raw, sizeof raw);
    assert_int_equal(strlen(raw), 24); /* 2024-05-01T08:17:25.341Z */
    get_str(relay, "heartbeat_at", raw, sizeof raw);
    assert_int_equal(strlen(raw), 24);

    r = lc("outbox status");
    assert_int_equal(r.rc, 0);
    assert_row(r.out, "OUTBOX",
               "OUTBOX PENDING OLDEST PUBLISHED MSG/S DEAD "
               "RELAY PID SINCE TRANSPORT HEARTBEAT");
    row(r.out, "default ", line, sizeof line);
    assert_true(strncmp(line, "default 0 - 50 ", 15) == 0);
    assert_has(line, " 0 relay-one ");
    assert_has(line, " ago topics ");
    assert_true(strstr(r.out, "no active relay") == NULL);
    run_free(&r);

    child_wait_out(ch, "active: published 50 (");
    assert_int_equal(child_stop(ch, SIGTERM), 0);
    out = read_file(ch->out);
    assert_has(out, "relay \"relay-one\" for outbox default: publishing "
                    "through topics (database ");
    assert_has(out, "stopping on SIGTERM: finishing the batch in hand");
    assert_has(out, "stopped: published 50 messages, 0 failed publishes, 0 "
                    "dead letters\n");
    free(out);

    /* It stepped down: no relay, and none gone either. */
    status_json(line, sizeof line);
    get_raw(line, "relay", raw, sizeof raw);
    assert_string_equal(raw, "null");
    get_raw(line, "last_relay", raw, sizeof raw);
    assert_string_equal(raw, "null");
    r = lc("outbox status");
    assert_row(r.out, "default ", "default 0 - 50 - 0 none");
    run_free(&r);
}

static void
test_relay_standby_takes_over_from_a_killed_one(void **state)
{
    child *a, *b;
    long long killed;
    char line[4096], raw[256];
    run r;

    (void) state;
    create_topic("orders");
    add_messages("default", "orders", 100);
    a = child_spawn("relay --name relay-a --report-ms 0");
    child_wait_out(a, "active: this relay publishes outbox default now\n");
    b = child_spawn("relay --name relay-b --batch 7 --report-ms 0");
    child_wait_out(b,
                   "standing by: another relay is active for outbox default");
    wait_status_relay("relay-a");
    wait_arrived("orders", 100);

    /* More messages, then the active relay dies without a word. */
    add_messages("default", "orders", 100);
    assert_int_equal(child_stop(a, SIGKILL), 128 + SIGKILL);
    killed = now_ms();
    child_wait_out(b, "active: this relay publishes outbox default now\n");
    /* A standby tries every second; allow for a slow machine. */
    assert_true(now_ms() - killed < 10000);
    wait_status_relay("relay-b");
    wait_arrived("orders", 200);

    r = lc("outbox status");
    assert_int_equal(r.rc, 0);
    assert_has(r.out, " relay-b ");
    run_free(&r);
    assert_int_equal(child_stop(b, SIGTERM), 0);
    status_json(line, sizeof line);
    get_raw(line, "relay", raw, sizeof raw);
    assert_string_equal(raw, "null");
    assert_int_equal(get_i64(line, "pending"), 0);
    /* Both published: 200 in all, a batch republished at most. */
    assert_true(get_i64(line, "published") >= 200);
}

static void
test_relay_killed_shows_gone(void **state)
{
    long long deadline;
    char line[4096], raw[256];
    child *ch;
    run r;

    (void) state;
    ch = child_spawn("relay --name relay-x --report-ms 0");
    child_wait_out(ch, "active: this relay publishes outbox default now\n");
    assert_int_equal(child_stop(ch, SIGKILL), 128 + SIGKILL);
    /* Its backend ends when PostgreSQL sees the socket close. */
    deadline = now_ms() + WAIT_MS;
    for (;;) {
        r = lc("outbox status");
        assert_int_equal(r.rc, 0);
        if (strstr(r.out, "none (last: relay-x, gone)") != NULL ||
            now_ms() > deadline)
            break;
        run_free(&r);
        sleep_ms(100);
    }
    assert_row(r.out, "default ",
               "default 0 - 0 - 0 none (last: relay-x, "
               "gone)");
    run_free(&r);
    status_json(line, sizeof line);
    get_raw(line, "relay", raw, sizeof raw);
    assert_string_equal(raw, "null");
    get_str(line, "last_relay", raw, sizeof raw);
    assert_string_equal(raw, "relay-x");
}

static void
test_relay_json_events(void **state)
{
    char line[4096], raw[64];
    child *ch;
    char *out;
    size_t n;

    (void) state;
    ch = child_spawn("--json relay --outbox jsonbox --report-ms 100");
    child_wait_out(ch, "\"event\":\"active\"");
    child_wait_out(ch, "\"leading\":true"); /* a report since */
    assert_int_equal(child_stop(ch, SIGINT), 0);
    out = read_file(ch->out);
    assert_json_lines(out);
    n = count_lines(out);
    assert_true(n >= 5);
    line_at(out, 0, line, sizeof line);
    get_str(line, "event", raw, sizeof raw);
    assert_string_equal(raw, "started");
    get_str(line, "outbox", raw, sizeof raw);
    assert_string_equal(raw, "jsonbox");
    assert_int_equal(get_i64(line, "batch"), 500);
    assert_int_equal(get_i64(line, "report_ms"), 100);
    assert_has(out, "\"event\":\"active\"");
    assert_has(out, "\"event\":\"report\",\"outbox\":\"jsonbox\"");
    line_at(out, n - 2, line, sizeof line);
    get_str(line, "event", raw, sizeof raw);
    assert_string_equal(raw, "stopping");
    get_str(line, "signal", raw, sizeof raw);
    assert_string_equal(raw, "SIGINT");
    line_at(out, n - 1, line, sizeof line);
    get_str(line, "event", raw, sizeof raw);
    assert_string_equal(raw, "stopped");
    assert_int_equal(get_i64(line, "published"), 0);
    assert_int_equal(get_i64(line, "takeovers"), 1);
    free(out);
}

static void
test_relay_failing_transport(void **state)
{
    char line[4096], raw[256];
    child *ch;
    run r;

    (void) state;
    create_topic("orders");
    add_messages("default", "orders", 3);
    /* The topic refuses every message, as a broken broker would. */
    loomt_sql_exec("ALTER TABLE loom.topic_messages ADD CONSTRAINT "
                   "test_refuse CHECK (octet_length(payload) < 0) NOT VALID");
    ch = child_spawn("relay --name relay-f --report-ms 200");
    child_wait_out(ch, "active: this relay publishes outbox default now\n");
    /* Heartbeats report the failure while it lasts (a second one used to
     * clear it). */
    wait_status_member("failing", "true", line, sizeof line);
    sleep_ms(2500);
    status_json(line, sizeof line);
    get_raw(line, "failing", raw, sizeof raw);
    assert_string_equal(raw, "true");
    get_str(line, "last_error", raw, sizeof raw);
    assert_string_equal(raw, "publishing through topics:// failed: LOOM_EDB");
    get_str(line, "failing_since", raw, sizeof raw);
    assert_int_equal(strlen(raw), 24);
    assert_int_equal(get_i64(line, "pending"), 3);
    r = lc("outbox status");
    assert_row(r.out, "OUTBOX",
               "OUTBOX PENDING OLDEST PUBLISHED MSG/S DEAD "
               "RELAY PID SINCE TRANSPORT HEARTBEAT FAILING "
               "SINCE LAST ERROR");
    assert_row_like(r.out, "default ", "default 3 ",
                    " ago publishing through topics:// failed: LOOM_EDB");
    assert_has(r.out, "outbox default: publishing fails: publishing through "
                      "topics:// failed: LOOM_EDB\n");
    run_free(&r);
    child_wait_out(ch, " failed publishes, 0 dead letters\n");

    /* Fixed: the messages go out and the failure clears. */
    loomt_sql_exec("ALTER TABLE loom.topic_messages DROP CONSTRAINT "
                   "test_refuse");
    wait_arrived("orders", 3);
    wait_status_member("failing", "false", line, sizeof line);
    assert_int_equal(get_i64(line, "pending"), 0);
    assert_int_equal(child_stop(ch, SIGTERM), 0);
}

static void
test_relay_stop_while_a_publish_fails(void **state)
{
    char line[4096], raw[256];
    child *ch;

    (void) state;
    create_topic("orders");
    add_messages("default", "orders", 1);
    /* A publish that fails after 2 s: the stop comes while it is out. */
    loomt_sql_exec("CREATE FUNCTION public.slow_refusal() RETURNS trigger "
                   "LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(2); "
                   "RAISE EXCEPTION 'refused slowly'; END $$; "
                   "CREATE TRIGGER slow_refusal BEFORE INSERT ON "
                   "loom.topic_messages FOR EACH ROW EXECUTE FUNCTION "
                   "public.slow_refusal()");
    ch = child_spawn("relay --name relay-s --report-ms 0");
    child_wait_out(ch, "active: this relay publishes outbox default now\n");
    sleep_ms(300);
    assert_int_equal(child_stop(ch, SIGTERM), 0);
    loomt_sql_exec("DROP TRIGGER slow_refusal ON loom.topic_messages; "
                   "DROP FUNCTION public.slow_refusal()");
    /* It stepped down: no relay, none gone either. */
    status_json(line, sizeof line);
    get_raw(line, "relay", raw, sizeof raw);
    assert_string_equal(raw, "null");
    get_raw(line, "last_relay", raw, sizeof raw);
    assert_string_equal(raw, "null");
    assert_int_equal(get_i64(line, "pending"), 1);
}

static void
test_relay_dead_letters_and_redrive(void **state)
{
    char line[4096], raw[256];
    child *ch;
    run r;

    (void) state;
    create_topic("orders");
    add_messages("default", "orders", 2);
    add_messages("default", "missing.topic", 1);
    add_messages("default", "orders", 2);
    ch = child_spawn("relay --name relay-d --report-ms 0");
    wait_arrived("orders", 4);
    /* The one the transport refused for good waits in the dead letters,
     * and did not hold up those behind it. */
    wait_status_member("dead_letters", "1", line, sizeof line);
    r = lc("outbox dlq --json");
    assert_int_equal(r.rc, 0);
    only_json_line(r.out, line, sizeof line);
    get_str(line, "topic", raw, sizeof raw);
    assert_string_equal(raw, "missing.topic");
    get_str(line, "key", raw, sizeof raw);
    assert_string_equal(raw, "key-1");
    get_str(line, "error", raw, sizeof raw);
    assert_string_equal(raw, "the transport refused it: not found");
    run_free(&r);

    create_topic("missing.topic");
    r = lc("outbox redrive default");
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, "re-drove 1 dead letter of outbox default: "
                               "back in the outbox as new messages with their "
                               "ids; the active relay publishes them\n");
    run_free(&r);
    wait_arrived("missing.topic", 1);
    wait_status_member("pending", "0", line, sizeof line);
    assert_int_equal(get_i64(line, "dead_letters"), 0);
    assert_int_equal(child_stop(ch, SIGTERM), 0);
}

static int
group_setup(void **state)
{
    (void) state;
    obt_db_open("loomctl_relay");
    return 0;
}

int
main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, obt_setup, obt_teardown)
    const struct CMUnitTest tests[] = {
        T(test_relay_publishes_and_stops_cleanly),
        T(test_relay_standby_takes_over_from_a_killed_one),
        T(test_relay_killed_shows_gone),
        T(test_relay_json_events),
        T(test_relay_failing_transport),
        T(test_relay_stop_while_a_publish_fails),
        T(test_relay_dead_letters_and_redrive),
    };
#undef T

    return cmocka_run_group_tests_name("tools.loomctl.relay", tests,
                                       group_setup, obt_group_teardown);
}
