/*
 * loomctl end to end: the test appends events with the library, runs the
 * built loomctl binary (LOOMCTL_PATH) against its own database and checks
 * what comes out: exit codes, messages, tables, and JSON lines parsed back
 * to their exact values. One stream name holds quotes, a semicolon,
 * backslashes, a tab, a control byte and UTF-8, to prove it survives
 * the shell, SQL and JSON escaping intact.
 *
 * Transaction ids are cluster-wide: a transaction open in another test's
 * database holds back commit-order reads here too, so tests that need
 * every event to be readable wait for it (with a deadline).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "jsonlite.h"
#include "lctest.h"
#include "pgtest.h"

/* A name no shell, SQL string or JSON writer gets right by accident. */
static const char weird_stream[] =
    "weird-\"q\";DROP TABLE loom.events;--'\\x\\\\ \xc3\xa9\xe2\x9c\x93"
    "\xe6\x97\xa5\xe6\x9c\xac\t\x01"
    "end";

/* order-1 v0: {customer: "alice", total_cents: 1234} as protobuf. */
static const unsigned char order_placed[] = {0x0a, 0x05, 'a',  'l',  'i',
                                             'c',  'e',  0x10, 0xd2, 0x09};
static const unsigned char not_protobuf[] = {0xff, 0xff};

static int first_migrate_rc;
static time_t appended_at;
static char first_migrate_out[4096];
static loom_uuid weird_id;

/* ------------------------------------------------------------------ */
/* Fixture                                                             */

static void
append_events(void)
{
    static const loom_header order_headers[] = {{"k", "v"}};
    static const loom_header weird_headers[] = {{"he\"y\\", "a\nb\x02"}};
    loom_store *s = loomt_store_open();
    loom_event_data ev;

    memset(&ev, 0, sizeof ev);
    ev.correlation_id = "req-1";
    ev.causation_id = "cmd-1";
    ev.headers = order_headers;
    ev.n_headers = 1;
    append_one(s, "order-1", "shop.OrderPlaced", order_placed,
               sizeof order_placed, &ev);
    memset(&ev, 0, sizeof ev);
    append_one(s, "order-1", "shop.ItemAdded", "\x08\x02", 2, &ev);
    memset(&ev, 0, sizeof ev);
    append_one(s, "order-2", "shop.OrderPlaced", not_protobuf,
               sizeof not_protobuf, &ev);
    memset(&ev, 0, sizeof ev);
    ev.headers = weird_headers;
    ev.n_headers = 1;
    append_one(s, weird_stream, "t.Weird", NULL, 0, &ev);
    weird_id = ev.id;
    memset(&ev, 0, sizeof ev);
    append_one(s, "payment-9", "pay.Done", "\x0a\x02ok", 4, &ev);
    loom_store_close(s);
    appended_at = time(NULL);
}

static int
group_setup(void **state)
{
    run r;

    (void) state;
    loomt_db_create("loomctl");
    /* Every run of loomctl reads the database from the environment. */
    setenv("LOOM_DATABASE_URL", loomt_dsn(), 1);
    /* The first migrate must meet an empty database: run it here, before
     * the library migrates while appending. */
    r = lc("migrate");
    first_migrate_rc = r.rc;
    snprintf(first_migrate_out, sizeof first_migrate_out, "%s%s", r.out, r.err);
    run_free(&r);
    append_events();
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
/* migrate                                                             */

static void
test_loomctl_migrate_is_idempotent(void **state)
{
    char obj[256];
    run r;

    (void) state;
    assert_int_equal(first_migrate_rc, 0);
    assert_non_null(strstr(first_migrate_out, "applying 0001_eventstore ... "
                                              "done ("));
    assert_non_null(strstr(first_migrate_out, "schema is at version "));

    r = lc("migrate");
    assert_int_equal(r.rc, 0);
    assert_non_null(strstr(r.out, "schema is up to date (version "));
    assert_null(strstr(r.out, "applying"));
    run_free(&r);

    r = lc("--json migrate");
    assert_int_equal(r.rc, 0);
    only_json_line(r.out, obj, sizeof obj);
    assert_int_equal(get_i64(obj, "applied"), 0);
    assert_true(get_i64(obj, "version") >= 1);
    run_free(&r);

    r = lc("migrate --status --json");
    assert_int_equal(r.rc, 0);
    line_at(r.out, 0, obj, sizeof obj);
    assert_int_equal(get_i64(obj, "pending"), 0);
    assert_int_equal(get_i64(obj, "version"), get_i64(obj, "latest"));
    run_free(&r);
}

/* ------------------------------------------------------------------ */
/* read                                                                */

static void
test_loomctl_read_json_round_trips_weird_stream(void **state)
{
    char line[8192], s[1024], headers[1024], id[LOOM_UUID_STRLEN];
    const char *v;
    size_t len;
    run r;

    (void) state;
    r = lc("read %s --json", sq(weird_stream));
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.err, "");
    only_json_line(r.out, line, sizeof line);
    /* Decoded, the name is byte for byte the one appended. */
    assert_true(jl_member(line, "stream", &v, NULL));
    assert_true(jl_string(v, s, sizeof s, &len));
    assert_int_equal(len, strlen(weird_stream));
    assert_memory_equal(s, weird_stream, len);
    /* Control characters are escaped, never raw, in the JSON text. */
    assert_non_null(strstr(line, "\\t\\u0001end\""));
    assert_int_equal(get_i64(line, "version"), 0);
    get_str(line, "type", s, sizeof s);
    assert_string_equal(s, "t.Weird");
    loom_uuid_format(&weird_id, id);
    get_str(line, "id", s, sizeof s);
    assert_string_equal(s, id);
    assert_int_equal(get_str(line, "correlation_id", s, sizeof s), 0);
    get_raw(line, "data", s, sizeof s);
    assert_string_equal(s, "{}");
    get_raw(line, "headers", headers, sizeof headers);
    get_str(headers, "he\"y\\", s, sizeof s);
    assert_string_equal(s, "a\nb\x02");
    run_free(&r);
}

static void
test_loomctl_read_decodes_payloads(void **state)
{
    char line[8192], s[1024];
    run r;

    (void) state;
    r = lc("read order-1 --json");
    assert_int_equal(r.rc, 0);
    assert_int_equal(count_lines(r.out), 2);
    assert_json_lines(r.out);
    line_at(r.out, 0, line, sizeof line);
    /* Without --types: field numbers. */
    get_raw(line, "data", s, sizeof s);
    assert_string_equal(s, "{\"1\":\"alice\",\"2\":1234}");
    get_str(line, "correlation_id", s, sizeof s);
    assert_string_equal(s, "req-1");
    get_str(line, "causation_id", s, sizeof s);
    assert_string_equal(s, "cmd-1");
    get_str(line, "recorded_at", s, sizeof s);
    assert_int_equal(strlen(s), 24); /* 2024-05-01T12:00:00.000Z */
    assert_int_equal(s[23], 'Z');
    run_free(&r);

    /* With --types (after the command): field names. */
    r = lc("read order-1 --limit 1 --json --types %s", LOOMCTL_TYPES_PATH);
    assert_int_equal(r.rc, 0);
    line_at(r.out, 0, line, sizeof line);
    get_raw(line, "data", s, sizeof s);
    assert_string_equal(s, "{\"customer\":\"alice\",\"totalCents\":\"1234\"}");
    run_free(&r);

    /* Not protobuf: null data, the bytes in base64. */
    r = lc("--json read order-2");
    assert_int_equal(r.rc, 0);
    line_at(r.out, 0, line, sizeof line);
    assert_true(jl_valid(line));
    get_raw(line, "data", s, sizeof s);
    assert_string_equal(s, "null");
    get_str(line, "data_base64", s, sizeof s);
    assert_string_equal(s, "//8=");
    run_free(&r);

    /* The table: headers, a META column, the undecodable marker. */
    r = lc("read order-1");
    assert_int_equal(r.rc, 0);
    assert_non_null(strstr(r.out, "POSITION"));
    assert_non_null(strstr(r.out, "META"));
    assert_non_null(strstr(r.out, "corr=req-1 cause=cmd-1 k=v"));
    run_free(&r);
    r = lc("read order-2");
    assert_non_null(strstr(r.out, "<2 bytes, undecodable>"));
    run_free(&r);
}

static void
test_loomctl_read_backward_pages_with_next(void **state)
{
    char line[8192];
    run r;

    (void) state;
    r = lc("read order-1 --backward --limit 1 --json");
    assert_int_equal(r.rc, 0);
    only_json_line(r.out, line, sizeof line);
    assert_int_equal(get_i64(line, "version"), 1);
    assert_string_equal(r.err, "next: 0\n");
    run_free(&r);

    r = lc("read order-1 --from 1");
    assert_int_equal(r.rc, 0);
    assert_int_equal(count_lines(r.out), 2); /* header and version 1 */
    run_free(&r);

    /* Forward, the limit reached where the stream ends: nothing follows,
     * so no "next:". One event short of the end: next is the last. */
    r = lc("read order-1 --limit 2");
    assert_int_equal(r.rc, 0);
    assert_int_equal(count_lines(r.out), 3); /* header and versions 0, 1 */
    assert_null(strstr(r.out, "next:"));
    run_free(&r);
    r = lc("read order-1 --limit 1 --json");
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.err, "next: 1\n");
    run_free(&r);
    r = lc("read order-1 --limit 1 --from 1 --json");
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.err, "");
    run_free(&r);
}

/* A read that finds nothing says why: a mistyped name must not look like
 * a stream without events. */
static void
test_loomctl_read_says_when_there_is_nothing(void **state)
{
    run r;

    (void) state;
    r = lc("read no-such-stream");
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, "(no stream \"no-such-stream\"; `loomctl "
                               "streams` lists the streams there are)\n");
    assert_string_equal(r.err, "");
    run_free(&r);
    /* With --json, stdout holds only events. */
    r = lc("read no-such-stream --json");
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, "");
    assert_string_equal(r.err, "(no stream \"no-such-stream\"; `loomctl "
                               "streams` lists the streams there are)\n");
    run_free(&r);

    /* Past the end of a stream that exists: a line, as other listings. */
    r = lc("read order-1 --from 5");
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, "(no events in stream \"order-1\" from "
                               "version 5; its last is version 1)\n");
    assert_string_equal(r.err, "");
    run_free(&r);
    r = lc("read order-1 --from 5 --json");
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, "");
    assert_string_equal(r.err, "");
    run_free(&r);
}

/* ------------------------------------------------------------------ */
/* tail                                                                */

static void
test_loomctl_tail_json_is_in_commit_order(void **state)
{
    static const char *const streams[] = {"order-1", "order-1", "order-2",
                                          weird_stream, "payment-9"};
    char line[8192], s[1024], next[64];
    int64_t tx = 0, pos = 0;
    run r;

    (void) state;
    r = lc_wait_lines(5, "tail --from start --json");
    assert_int_equal(count_lines(r.out), 5);
    for (size_t i = 0; i < 5; i++) {
        int64_t t, p;
        line_at(r.out, i, line, sizeof line);
        assert_true(jl_valid(line));
        t = get_i64(line, "tx");
        p = get_i64(line, "position");
        assert_true(t > tx || (t == tx && p > pos));
        tx = t;
        pos = p;
        get_str(line, "stream", s, sizeof s);
        assert_string_equal(s, streams[i]);
    }
    snprintf(next, sizeof next, "next: %lld:%lld\n", (long long) tx,
             (long long) pos);
    assert_string_equal(r.err, next);
    run_free(&r);

    /* From that cursor nothing is new, and the cursor stays. */
    next[strlen(next) - 1] = '\0';
    r = lc("tail --json --from %s", next + 6);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, "");
    assert_non_null(strstr(r.err, next));
    run_free(&r);

    /* Without --from: the newest N. */
    r = lc_wait_lines(2, "tail --limit 2 --json");
    assert_int_equal(count_lines(r.out), 2);
    line_at(r.out, 1, line, sizeof line);
    get_str(line, "stream", s, sizeof s);
    assert_string_equal(s, "payment-9");
    run_free(&r);

    /* A category, and a bare position (inclusive). */
    r = lc_wait_lines(3, "tail --category order --json --from start");
    assert_int_equal(count_lines(r.out), 3);
    run_free(&r);
    /* The two members of a group share the category's events. */
    {
        run g0 = lc("tail --category order --group 0/2 --json --from start");
        run g1 = lc("tail --category order --group 1/2 --json --from start");
        assert_int_equal(g0.rc, 0);
        assert_int_equal(g1.rc, 0);
        assert_int_equal(count_lines(g0.out) + count_lines(g1.out), 3);
        run_free(&g0);
        run_free(&g1);
    }
    /* The newest N of a group member, found by the catalog query. */
    r = lc("tail --category order --group 0/2 --limit 1 --json");
    assert_int_equal(r.rc, 0);
    assert_true(count_lines(r.out) <= 1);
    run_free(&r);
    r = lc_wait_lines(2, "tail --from 4 --json");
    assert_int_equal(count_lines(r.out), 2);
    line_at(r.out, 0, line, sizeof line);
    assert_int_equal(get_i64(line, "position"), 4);
    run_free(&r);

    /* The table prints the cursor on stdout. */
    r = lc_wait_lines(3, "tail --from start --limit 1");
    assert_non_null(strstr(r.out, "POSITION"));
    assert_non_null(strstr(r.out, "next: "));
    run_free(&r);
}

/* ------------------------------------------------------------------ */
/* streams and stats                                                   */

static void
test_loomctl_streams_lists_streams(void **state)
{
    char line[8192], s[1024];
    run r;

    (void) state;
    r = lc("streams");
    assert_int_equal(r.rc, 0);
    assert_non_null(strstr(r.out, "STREAM"));
    assert_non_null(strstr(r.out, "order-1"));
    assert_non_null(strstr(r.out, "payment-9"));
    /* Shown, but with the tab and the control byte escaped. */
    assert_non_null(strstr(r.out, "\\t\\x01end"));
    assert_null(strchr(r.out, '\x01'));
    run_free(&r);

    r = lc("streams --json --category order");
    assert_int_equal(r.rc, 0);
    assert_int_equal(count_lines(r.out), 2);
    assert_json_lines(r.out);
    line_at(r.out, 0, line, sizeof line);
    get_str(line, "stream", s, sizeof s);
    assert_string_equal(s, "order-1");
    assert_int_equal(get_i64(line, "events"), 2);
    assert_int_equal(get_i64(line, "version"), 1);
    run_free(&r);

    /* Keyset paging. */
    r = lc("streams --json --limit 1 --after order-1");
    only_json_line(r.out, line, sizeof line);
    get_str(line, "stream", s, sizeof s);
    assert_string_equal(s, "order-2");
    run_free(&r);

    r = lc("streams --json --after %s", sq(weird_stream));
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, "");
    run_free(&r);
}

static void
test_loomctl_stats_reports_counts(void **state)
{
    char line[16384], horizon[4096];
    run r;

    (void) state;
    r = lc("stats");
    assert_int_equal(r.rc, 0);
    assert_non_null(strstr(r.out, "events per second"));
    assert_non_null(strstr(r.out, "what holds readers back"));
    run_free(&r);

    r = lc("stats --json");
    assert_int_equal(r.rc, 0);
    only_json_line(r.out, line, sizeof line);
    assert_int_equal(get_i64(line, "events"), 5);
    assert_int_equal(get_i64(line, "streams"), 4);
    assert_int_equal(get_i64(line, "categories"), 3);
    /* Recorded just now, unless this run was very slow. */
    if (time(NULL) - appended_at < 50)
        assert_int_equal(get_i64(line, "events_last_minute"), 5);
    assert_true(get_i64(line, "size_bytes") > 0);
    get_raw(line, "horizon", horizon, sizeof horizon);
    assert_true(get_i64(horizon, "snapshot_xmin") > 0);
    run_free(&r);
}

/* ------------------------------------------------------------------ */
/* Errors                                                              */

static void
test_loomctl_bad_arguments_exit_2(void **state)
{
    static const char *const bad[] = {
        "",
        "nosuchcommand",
        "read",
        "read a b",
        "read x --limit 0",
        "read x --limit 12abc",
        "read x --from -1",
        "read x --from 99999999999999999999",
        "read x --bogus",
        "streams --limit",
        "streams --category has-dash",
        "tail --group 2/2 --category order",
        "tail --group 1/0 --category order",
        "tail --group 0/2",
        "tail --from 1:x",
        "tail --from ' 5'",
        "tail --poll-ms 0 --follow",
        "migrate --status=yes",
        "stats extra",
        "--types '' stats",
    };
    run r;

    (void) state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        r = lc("%s", bad[i]);
        if (r.rc != 2 || strstr(r.err, "usage: loomctl") == NULL)
            fail_msg("loomctl %s: exit %d, stderr: %s", bad[i], r.rc, r.err);
        assert_string_equal(r.out, "");
        run_free(&r);
    }
    r = lc("--help");
    assert_int_equal(r.rc, 0);
    assert_non_null(strstr(r.out, "Commands:"));
    /* The usage line names every global option the list below has. */
    assert_non_null(strstr(r.out, "usage: loomctl [--db URL] [--role ROLE] "
                                  "[--json] [--types PATH.so] COMMAND"));
    run_free(&r);
}

/* help is a command like the others: help on it, and on the others. */
static void
test_loomctl_help_on_help(void **state)
{
    static const char *const ways[] = {"help help", "help --help", "help -h"};
    run r;

    (void) state;
    for (size_t i = 0; i < sizeof ways / sizeof ways[0]; i++) {
        r = lc("%s", ways[i]);
        if (r.rc != 0 ||
            strncmp(r.out, "usage: loomctl help [COMMAND]\n", 30) != 0)
            fail_msg("loomctl %s: exit %d, stdout: %s", ways[i], r.rc, r.out);
        assert_non_null(strstr(r.out, "Global options"));
        run_free(&r);
    }
    r = lc("help read");
    assert_int_equal(r.rc, 0);
    assert_non_null(strstr(r.out, "usage: loomctl read STREAM"));
    run_free(&r);
    r = lc("help nosuch");
    assert_int_equal(r.rc, 2);
    assert_string_equal(r.err, "loomctl: help: no command \"nosuch\"\n"
                               "usage: loomctl help [COMMAND]\n");
    run_free(&r);
}

static void
test_loomctl_bad_db_exits_1(void **state)
{
    static const char *const cmds[] = {"streams", "read x", "migrate"};
    run r;

    (void) state;
    for (size_t i = 0; i < 3; i++) {
        r = lc("--db %s %s", sq("postgresql://bob:s3cret@127.0.0.1:1/nodb"),
               cmds[i]);
        assert_int_equal(r.rc, 1);
        assert_non_null(strstr(r.err, "loomctl: "));
        assert_non_null(strstr(r.err, "127.0.0.1"));
        assert_non_null(strstr(r.err, "password=***"));
        assert_null(strstr(r.err, "s3cret"));
        assert_int_equal(count_lines(r.err), 1);
        run_free(&r);
    }
    /* libpq quotes the bad token of a URL, here inside the password. */
    r = lc("stats --db %s", sq("postgresql://u:sec%zzret@h/db"));
    assert_int_equal(r.rc, 1);
    assert_non_null(strstr(r.err, "invalid"));
    assert_null(strstr(r.err, "zzret"));
    run_free(&r);
    r = lc("stats --db %s", sq("host=/nonexistent dbname=x password=pw"));
    assert_int_equal(r.rc, 1);
    assert_non_null(strstr(r.err, "cannot connect to PostgreSQL"));
    assert_null(strstr(r.err, "=pw"));
    run_free(&r);
}

/* ------------------------------------------------------------------ */
/* tail --follow                                                       */

/* Reads from `fd` into buf (appending) until it holds `lines` lines or
 * 30 s pass. */
static void
read_lines(int fd, char *buf, size_t cap, size_t lines)
{
    time_t deadline = time(NULL) + 30;
    size_t len = strlen(buf);

    while (count_lines(buf) < lines && time(NULL) < deadline) {
        struct pollfd p = {fd, POLLIN, 0};
        ssize_t n;
        if (poll(&p, 1, 200) <= 0)
            continue;
        n = read(fd, buf + len, cap - len - 1);
        if (n <= 0)
            break;
        len += (size_t) n;
        buf[len] = '\0';
    }
}

static void
test_loomctl_tail_follow_stops_on_sigterm(void **state)
{
    char out[16384] = "", err[4096] = "", line[8192], s[256];
    int pipefd[2], errfd[2], status;
    loom_event_data ev;
    loom_store *st;
    pid_t pid;

    (void) state;
    assert_int_equal(pipe(pipefd), 0);
    assert_int_equal(pipe(errfd), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(pipefd[1], 1);
        dup2(errfd[1], 2);
        close(pipefd[0]);
        close(pipefd[1]);
        close(errfd[0]);
        close(errfd[1]);
        execl(LOOMCTL_PATH, "loomctl", "tail", "--follow", "--json",
              "--category", "live", "--poll-ms", "20", (char *) NULL);
        _exit(127);
    }
    close(pipefd[1]);
    close(errfd[1]);
    st = loomt_store_open();
    memset(&ev, 0, sizeof ev);
    append_one(st, "live-1", "live.Ping", "\x08\x01", 2, &ev);
    read_lines(pipefd[0], out, sizeof out, 1);
    memset(&ev, 0, sizeof ev);
    append_one(st, "live-2", "live.Ping", "\x08\x02", 2, &ev);
    read_lines(pipefd[0], out, sizeof out, 2);
    loom_store_close(st);
    assert_int_equal(kill(pid, SIGTERM), 0);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    read_lines(errfd[0], err, sizeof err, 1);
    close(pipefd[0]);
    close(errfd[0]);
    /* It finished its page and printed where to resume. */
    assert_non_null(strstr(err, "next: "));
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(count_lines(out), 2);
    line_at(out, 1, line, sizeof line);
    get_str(line, "stream", s, sizeof s);
    assert_string_equal(s, "live-2");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loomctl_migrate_is_idempotent),
        cmocka_unit_test(test_loomctl_read_json_round_trips_weird_stream),
        cmocka_unit_test(test_loomctl_read_decodes_payloads),
        cmocka_unit_test(test_loomctl_read_backward_pages_with_next),
        cmocka_unit_test(test_loomctl_read_says_when_there_is_nothing),
        cmocka_unit_test(test_loomctl_tail_json_is_in_commit_order),
        cmocka_unit_test(test_loomctl_streams_lists_streams),
        cmocka_unit_test(test_loomctl_stats_reports_counts),
        cmocka_unit_test(test_loomctl_bad_arguments_exit_2),
        cmocka_unit_test(test_loomctl_help_on_help),
        cmocka_unit_test(test_loomctl_bad_db_exits_1),
        /* Last: it appends events the counts above do not expect. */
        cmocka_unit_test(test_loomctl_tail_follow_stops_on_sigterm),
    };

    return cmocka_run_group_tests_name("tools.loomctl", tests, group_setup,
                                       group_teardown);
}
