/*
 * loomctl parked list|replay|drop end to end: rows are put into
 * loom.parked with SQL (as a subscription parks them), the built loomctl
 * binary runs against this executable's own database, and the test
 * checks its output and what it changed in the table.
 */
#include <poll.h>
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

/* The first line is longer than the table shows; the second is never in
 * the table. */
#define LONG_ERROR                                                             \
    "handler failed: duplicate key value violates unique constraint "          \
    "\"orders_pkey\" on table orders"
#define ERROR_DETAIL "DETAIL: Key (id)=(42) already exists."

/* The ids of order-1@0, order-1@1 and order-2@0. */
static char ev_id[3][LOOM_UUID_STRLEN];

/* ------------------------------------------------------------------ */
/* Fixture                                                             */

/* Parks event `i` under `sub` as a subscription does, `attempts` after
 * `minutes` minutes. */
static void
park(const char *sub, int i, int attempts, int minutes)
{
    char sql[1024];

    snprintf(sql, sizeof sql,
             "INSERT INTO loom.parked (subscription, event_id, stream, "
             "version, tx, position, type, error, attempts, parked_at) "
             "SELECT '%s', event_id, stream, version, tx, position, type, "
             "'%s' || E'\\n' || '%s', %d, now() - interval '%d minutes' "
             "FROM loom.events WHERE event_id = '%s'",
             sub, LONG_ERROR, ERROR_DETAIL, attempts, minutes, ev_id[i]);
    loomt_sql_exec(sql);
}

/* The same rows before every test: sub-a has events 0 and 1 parked,
 * sub-b event 2. */
static int
park_setup(void **state)
{
    (void) state;
    loomt_sql_exec("DELETE FROM loom.parked");
    park("sub-a", 0, 5, 3);
    park("sub-a", 1, 7, 2);
    park("sub-b", 2, 5, 1);
    return 0;
}

static long long
parked_count(const char *where)
{
    char sql[512];

    snprintf(sql, sizeof sql, "SELECT count(*) FROM loom.parked WHERE %s",
             where);
    return loomt_sql_ll(sql);
}

static int
group_setup(void **state)
{
    static const char *const streams[] = {"order-1", "order-1", "order-2"};
    loom_event_data ev;
    loom_store *s;

    (void) state;
    loomt_db_create("loomctl_parked");
    setenv("LOOM_DATABASE_URL", loomt_dsn(), 1);
    s = loomt_store_open();
    for (int i = 0; i < 3; i++) {
        memset(&ev, 0, sizeof ev);
        append_one(s, streams[i], i == 1 ? "shop.ItemAdded" : "shop.Placed",
                   "\x08\x01", 2, &ev);
        loom_uuid_format(&ev.id, ev_id[i]);
    }
    loom_store_close(s);
    return 0;
}

static int
group_teardown(void **state)
{
    (void) state;
    loomt_db_drop();
    return 0;
}

/* ------------------------------------------------------------------ */
/* list                                                                */

static void
test_parked_list_table_shows_events_with_a_short_error(void **state)
{
    char line[4096];
    run r;

    (void) state;
    r = lc("parked list");
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.err, "");
    assert_int_equal(count_lines(r.out), 4); /* header and 3 events */
    line_at(r.out, 0, line, sizeof line);
    assert_non_null(strstr(line, "SUBSCRIPTION"));
    assert_non_null(strstr(line, "EVENT ID"));
    assert_non_null(strstr(line, "ERROR"));
    /* No replay requested yet: the optional column is hidden. */
    assert_null(strstr(line, "REPLAY"));
    /* By subscription, then position. */
    line_at(r.out, 1, line, sizeof line);
    assert_non_null(strstr(line, "sub-a"));
    assert_non_null(strstr(line, ev_id[0]));
    assert_non_null(strstr(line, "order-1@0"));
    assert_non_null(strstr(line, "shop.Placed"));
    assert_non_null(strstr(line, "  3m")); /* parked 3 minutes ago */
    /* The error: cut within its first line, marked with an ellipsis. */
    assert_non_null(strstr(line, "handler failed: duplicate key"));
    assert_non_null(strstr(line, "\xe2\x80\xa6"));
    assert_null(strstr(line, "on table orders"));
    assert_null(strstr(r.out, "DETAIL"));
    line_at(r.out, 2, line, sizeof line);
    assert_non_null(strstr(line, "order-1@1"));
    assert_non_null(strstr(line, "shop.ItemAdded"));
    line_at(r.out, 3, line, sizeof line);
    assert_non_null(strstr(line, "sub-b"));
    run_free(&r);
}

static void
test_parked_list_json_has_every_field_and_the_whole_error(void **state)
{
    char line[4096], s[1024];
    run r;

    (void) state;
    r = lc("parked list --json");
    assert_int_equal(r.rc, 0);
    assert_int_equal(count_lines(r.out), 3);
    assert_json_lines(r.out);
    line_at(r.out, 1, line, sizeof line);
    get_str(line, "subscription", s, sizeof s);
    assert_string_equal(s, "sub-a");
    get_str(line, "event_id", s, sizeof s);
    assert_string_equal(s, ev_id[1]);
    get_str(line, "stream", s, sizeof s);
    assert_string_equal(s, "order-1");
    assert_int_equal(get_i64(line, "version"), 1);
    assert_int_equal(get_i64(line, "position"), 2);
    assert_true(get_i64(line, "tx") > 0);
    assert_int_equal(get_i64(line, "attempts"), 7);
    assert_true(get_i64(line, "parked_age_seconds") >= 120);
    get_raw(line, "replay_requested", s, sizeof s);
    assert_string_equal(s, "false");
    get_str(line, "error", s, sizeof s);
    assert_string_equal(s, LONG_ERROR "\n" ERROR_DETAIL);
    get_str(line, "parked_at", s, sizeof s);
    assert_int_equal(strlen(s), 24);
    run_free(&r);
}

static void
test_parked_list_filters_by_subscription_and_limit(void **state)
{
    char line[4096], s[256];
    run r;

    (void) state;
    r = lc("parked list sub-b --json");
    assert_int_equal(r.rc, 0);
    only_json_line(r.out, line, sizeof line);
    get_str(line, "event_id", s, sizeof s);
    assert_string_equal(s, ev_id[2]);
    run_free(&r);

    /* Options before the subcommand work too. */
    r = lc("parked --limit 1 list --json");
    assert_int_equal(r.rc, 0);
    only_json_line(r.out, line, sizeof line);
    get_str(line, "event_id", s, sizeof s);
    assert_string_equal(s, ev_id[0]);
    run_free(&r);

    r = lc("parked list nobody");
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, "(no parked events of \"nobody\")\n");
    run_free(&r);
    r = lc("parked list nobody --json");
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, "");
    run_free(&r);
}

/* ------------------------------------------------------------------ */
/* replay                                                              */

/* Waits up to 10 s for a NOTIFY on `pg`; returns its payload (freed by
 * the caller) or NULL. */
static char *
wait_notify(PGconn *pg)
{
    time_t deadline = time(NULL) + 10;

    while (time(NULL) < deadline) {
        struct pollfd p = {PQsocket(pg), POLLIN, 0};
        PGnotify *n;
        assert_int_equal(PQconsumeInput(pg), 1);
        if ((n = PQnotifies(pg)) != NULL) {
            char *payload = strdup(n->extra);
            PQfreemem(n);
            return payload;
        }
        poll(&p, 1, 200);
    }
    return NULL;
}

static void
test_parked_replay_marks_one_event_and_wakes_the_subscription(void **state)
{
    PGconn *listener = PQconnectdb(loomt_dsn());
    char line[4096], s[64], *payload;
    run r;

    (void) state;
    assert_int_equal(PQstatus(listener), CONNECTION_OK);
    PQclear(PQexec(listener, "LISTEN loom_parked"));
    r = lc("parked replay sub-a %s", ev_id[1]);
    assert_int_equal(r.rc, 0);
    assert_non_null(strstr(r.out, "marked 1 parked event of \"sub-a\" for "
                                  "replay; the running subscription "
                                  "retries it"));
    run_free(&r);
    /* Exactly that row is marked, and the subscription's channel woke. */
    assert_int_equal(parked_count("replay_requested_at IS NOT NULL"), 1);
    {
        char where[256];
        snprintf(where, sizeof where,
                 "replay_requested_at IS NOT NULL AND event_id = '%s'",
                 ev_id[1]);
        assert_int_equal(parked_count(where), 1);
    }
    payload = wait_notify(listener);
    assert_non_null(payload);
    assert_string_equal(payload, "sub-a");
    free(payload);
    PQfinish(listener);

    /* list shows the request. */
    r = lc("parked list sub-a");
    assert_int_equal(r.rc, 0);
    assert_non_null(strstr(r.out, "REPLAY"));
    line_at(r.out, 2, line, sizeof line);
    assert_non_null(strstr(line, "requested"));
    line_at(r.out, 1, line, sizeof line);
    assert_null(strstr(line, "requested"));
    run_free(&r);
    r = lc("parked list sub-a --json");
    line_at(r.out, 1, line, sizeof line);
    get_raw(line, "replay_requested", s, sizeof s);
    assert_string_equal(s, "true");
    run_free(&r);
}

static void
test_parked_replay_all_marks_only_that_subscription(void **state)
{
    char line[512], s[64];
    run r;

    (void) state;
    r = lc("--json parked replay sub-a --all");
    assert_int_equal(r.rc, 0);
    only_json_line(r.out, line, sizeof line);
    assert_int_equal(get_i64(line, "marked"), 2);
    get_str(line, "subscription", s, sizeof s);
    assert_string_equal(s, "sub-a");
    get_raw(line, "event_id", s, sizeof s);
    assert_string_equal(s, "null");
    run_free(&r);
    assert_int_equal(parked_count("replay_requested_at IS NOT NULL AND "
                                  "subscription = 'sub-a'"),
                     2);
    assert_int_equal(parked_count("replay_requested_at IS NOT NULL AND "
                                  "subscription = 'sub-b'"),
                     0);
}

static void
test_parked_replay_of_nothing_exits_1_naming_the_subscription(void **state)
{
    run r;

    (void) state;
    r = lc("parked replay nobody --all");
    assert_int_equal(r.rc, 1);
    assert_string_equal(r.out, "");
    assert_string_equal(r.err,
                        "loomctl: parked replay: subscription \"nobody\" has "
                        "no parked events; `loomctl parked list` shows which "
                        "subscriptions have some\n");
    run_free(&r);

    /* An event parked under another subscription is not this one's. */
    r = lc("parked replay sub-b %s", ev_id[0]);
    assert_int_equal(r.rc, 1);
    assert_non_null(strstr(r.err, "subscription \"sub-b\" has no parked "
                                  "event "));
    assert_non_null(strstr(r.err, ev_id[0]));
    run_free(&r);
    assert_int_equal(parked_count("replay_requested_at IS NOT NULL"), 0);
}

/* ------------------------------------------------------------------ */
/* drop                                                                */

static void
test_parked_drop_deletes_one_event_or_all(void **state)
{
    char line[512];
    run r;

    (void) state;
    r = lc("parked drop sub-a %s", ev_id[0]);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, "dropped 1 parked event of \"sub-a\"\n");
    run_free(&r);
    assert_int_equal(parked_count("subscription = 'sub-a'"), 1);
    assert_int_equal(parked_count("subscription = 'sub-b'"), 1);

    r = lc("parked drop sub-a --all --json");
    assert_int_equal(r.rc, 0);
    only_json_line(r.out, line, sizeof line);
    assert_int_equal(get_i64(line, "dropped"), 1);
    run_free(&r);
    assert_int_equal(parked_count("subscription = 'sub-a'"), 0);
    assert_int_equal(parked_count("subscription = 'sub-b'"), 1);

    /* Nothing left to drop is not an error, but it is said. */
    r = lc("parked drop sub-a --all");
    assert_int_equal(r.rc, 0);
    assert_non_null(strstr(r.out, "dropped 0 parked events of \"sub-a\" "
                                  "(none matched;"));
    run_free(&r);
}

static void
test_parked_names_are_printed_safely(void **state)
{
    run r;

    (void) state;
    /* An escape sequence in a name reaches the terminal escaped. */
    r = lc("parked drop %s --all", sq("evil\x1b[2J"));
    assert_int_equal(r.rc, 0);
    assert_null(strchr(r.out, '\x1b'));
    assert_non_null(strstr(r.out, "evil\\x1b[2J"));
    run_free(&r);
}

/* ------------------------------------------------------------------ */
/* Usage                                                               */

static void
test_parked_bad_arguments_exit_2(void **state)
{
    static const char *const bad[] = {
        "parked",
        "parked nosuch",
        "parked list a b",
        "parked list --limit 0",
        "parked list --limit x",
        "parked list --all",
        "parked list ''",
        "parked replay",
        "parked replay sub-a",
        "parked replay sub-a not-a-uuid --json",
        "parked replay sub-a --all 0190f5c2-8a41-7cc3-9d52-1b7e0f3a4c11",
        "parked replay sub-a --limit 3 --all",
        "parked replay sub-a --all=yes",
        "parked drop",
        "parked drop sub-a",
        "parked drop sub-a a b",
        "parked drop '' --all",
    };
    run r;

    (void) state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        r = lc("%s", bad[i]);
        if (r.rc != 2 || strstr(r.err, "usage: loomctl parked list") == NULL)
            fail_msg("loomctl %s: exit %d, stderr: %s", bad[i], r.rc, r.err);
        assert_string_equal(r.out, "");
        run_free(&r);
    }
    /* Nothing was touched by any of them. */
    assert_int_equal(parked_count("true"), 3);
    assert_int_equal(parked_count("replay_requested_at IS NOT NULL"), 0);

    r = lc("parked replay sub-a");
    assert_non_null(strstr(r.err, "loomctl: parked replay: give an EVENT_ID"));
    run_free(&r);
    r = lc("help parked");
    assert_int_equal(r.rc, 0);
    assert_non_null(strstr(r.out, "usage: loomctl parked list"));
    assert_non_null(strstr(r.out, "       loomctl parked replay SUBSCRIPTION "
                                  "(EVENT_ID | --all)"));
    assert_non_null(strstr(r.out, "       loomctl parked drop"));
    run_free(&r);
}

int
main(void)
{
#define T(f) cmocka_unit_test_setup(f, park_setup)
    const struct CMUnitTest tests[] = {
        T(test_parked_list_table_shows_events_with_a_short_error),
        T(test_parked_list_json_has_every_field_and_the_whole_error),
        T(test_parked_list_filters_by_subscription_and_limit),
        T(test_parked_replay_marks_one_event_and_wakes_the_subscription),
        T(test_parked_replay_all_marks_only_that_subscription),
        T(test_parked_replay_of_nothing_exits_1_naming_the_subscription),
        T(test_parked_drop_deletes_one_event_or_all),
        T(test_parked_names_are_printed_safely),
        T(test_parked_bad_arguments_exit_2),
    };
#undef T

    return cmocka_run_group_tests_name("tools.loomctl.parked", tests,
                                       group_setup, group_teardown);
}
