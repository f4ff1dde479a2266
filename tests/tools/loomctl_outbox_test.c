/*
 * loomctl outbox and loomctl relay end to end: messages are put into
 * loom.outbox with plain SQL (as loom_outbox_add() would), `loomctl
 * relay` runs as child processes that publish them to a topic of this
 * executable's own database, and `loomctl outbox status` must show what
 * happens: the pending messages, the active relay, a standby taking over
 * from a killed one, a clean stop. Dead letters are rows put into
 * loom.outbox_dead_letters directly.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "lctest.h"
#include "pgtest.h"

/* How long a relay may take to do something, in ms. Generous: the
 * sanitizer build on a busy machine is slow. */
#define WAIT_MS 30000

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

static void
sleep_ms(long ms)
{
    nanosleep(&(struct timespec){ms / 1000, (ms % 1000) * 1000000L}, NULL);
}

static long long
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Puts n messages for `topic` into outbox `outbox`, as loom_outbox_add()
 * would, and remembers their ids in public.sent. */
static void
add_messages(const char *outbox, const char *topic, int n)
{
    char sql[1024];

    snprintf(sql, sizeof sql,
             "WITH ins AS (INSERT INTO loom.outbox (outbox, topic, key, "
             "payload, message_id) SELECT '%s', '%s', "
             "convert_to('key-' || i, 'UTF8'), "
             "convert_to('payload ' || i, 'UTF8'), gen_random_uuid() "
             "FROM generate_series(1, %d) i RETURNING message_id) "
             "INSERT INTO public.sent SELECT message_id FROM ins",
             outbox, topic, n);
    loomt_sql_exec(sql);
}

/* The messages of public.sent that reached topic `topic` (each counted
 * once, however often it was published). */
static long long
arrived(const char *topic)
{
    return sqlf_ll("SELECT count(*) FROM public.sent s WHERE EXISTS ("
                   "SELECT 1 FROM loom.topic_messages m JOIN loom.topics t "
                   "ON t.id = m.topic_id WHERE t.name = '%s' AND m.id = s.id)",
                   topic);
}

static void
wait_arrived(const char *topic, long long want)
{
    long long deadline = now_ms() + WAIT_MS, got;

    while ((got = arrived(topic)) != want && now_ms() < deadline)
        sleep_ms(100);
    if (got != want)
        fail_msg("%lld of %lld messages reached topic %s", got, want, topic);
}

static void
assert_has(const char *text, const char *needle)
{
    if (strstr(text, needle) == NULL)
        fail_msg("\"%s\" is not in:\n%s", needle, text);
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

/* The row with `needle` starts with `prefix` and ends with `suffix`
 * (what lies between, an age, changes from run to run). */
static void
assert_row_like(const char *out, const char *needle, const char *prefix,
                const char *suffix)
{
    char line[1024];
    size_t n, k = strlen(suffix);

    row(out, needle, line, sizeof line);
    n = strlen(line);
    if (strncmp(line, prefix, strlen(prefix)) != 0 || n < k ||
        strcmp(line + n - k, suffix) != 0)
        fail_msg("row \"%s\", expected \"%s...%s\", in:\n%s", line, prefix,
                 suffix, out);
}

/* `outbox status --json` for the default outbox: its one line. */
static void
status_json(char *line, size_t cap)
{
    run r = lc("outbox status default --json");

    assert_int_equal(r.rc, 0);
    only_json_line(r.out, line, cap);
    run_free(&r);
}

/* The active relay's name in the status (empty: none). */
static void
status_relay(char *name, size_t cap)
{
    char line[4096], relay[2048];

    status_json(line, sizeof line);
    get_raw(line, "relay", relay, sizeof relay);
    if (strcmp(relay, "null") == 0)
        name[0] = '\0';
    else
        get_str(relay, "name", name, cap);
}

static void
wait_status_relay(const char *want)
{
    long long deadline = now_ms() + WAIT_MS;
    char name[256];

    for (;;) {
        status_relay(name, sizeof name);
        if (strcmp(name, want) == 0)
            return;
        if (now_ms() > deadline)
            fail_msg("status shows relay \"%s\", expected \"%s\"", name, want);
        sleep_ms(100);
    }
}

/* ------------------------------------------------------------------ */
/* Relays as child processes                                           */

#define MAX_CHILDREN 8

typedef struct child {
    pid_t pid; /* 0 once reaped */
    char out[64], err[64];
} child;

static child children[MAX_CHILDREN];

static char *
read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    size_t len = 0, cap = 4096, n;
    char *buf = malloc(cap);

    assert_non_null(buf);
    buf[0] = '\0';
    if (f == NULL)
        return buf;
    while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len < 2) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
    }
    buf[len] = '\0';
    fclose(f);
    return buf;
}

/* Starts `loomctl <args>` (its stdout and stderr go to files). */
static child *
spawn(const char *args)
{
    char cmd[4096];
    child *ch;
    int fd, i = 0;

    while (i < MAX_CHILDREN && children[i].pid != 0)
        i++;
    if (i == MAX_CHILDREN)
        fail_msg("more than %d relays at once", MAX_CHILDREN);
    ch = &children[i];
    snprintf(ch->out, sizeof ch->out, "/tmp/loomctl_relay_XXXXXX");
    fd = mkstemp(ch->out);
    assert_true(fd >= 0);
    close(fd);
    snprintf(ch->err, sizeof ch->err, "/tmp/loomctl_relay_XXXXXX");
    fd = mkstemp(ch->err);
    assert_true(fd >= 0);
    close(fd);
    /* exec: the shell becomes loomctl, so signals reach it. */
    snprintf(cmd, sizeof cmd, "exec %s %s >%s 2>%s", LOOMCTL_PATH, args,
             ch->out, ch->err);
    ch->pid = fork();
    assert_true(ch->pid >= 0);
    if (ch->pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *) NULL);
        _exit(127);
    }
    return ch;
}

/* Waits until the child's stdout has `needle`. */
static void
wait_out(const child *ch, const char *needle)
{
    long long deadline = now_ms() + WAIT_MS;

    for (;;) {
        char *out = read_file(ch->out);
        int found = strstr(out, needle) != NULL;

        if (found || now_ms() > deadline) {
            if (!found) {
                char *err = read_file(ch->err);
                fail_msg("\"%s\" is not in the relay's output:\n%s\n"
                         "stderr:\n%s",
                         needle, out, err);
            }
            free(out);
            return;
        }
        free(out);
        sleep_ms(50);
    }
}

/* Sends `sig` and returns the exit status (128 + signal when killed). */
static int
stop(child *ch, int sig)
{
    long long deadline = now_ms() + WAIT_MS;
    int status = 0;
    pid_t got;

    kill(ch->pid, sig);
    while ((got = waitpid(ch->pid, &status, WNOHANG)) == 0 &&
           now_ms() < deadline)
        sleep_ms(20);
    if (got == 0) {
        kill(ch->pid, SIGKILL);
        waitpid(ch->pid, &status, 0);
        ch->pid = 0;
        fail_msg("the relay did not stop within %d ms", WAIT_MS);
    }
    ch->pid = 0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void
forget(child *ch)
{
    unlink(ch->out);
    unlink(ch->err);
}

/* ------------------------------------------------------------------ */
/* Fixture                                                             */

static int
group_setup(void **state)
{
    (void) state;
    loomt_db_create("loomctl_outbox");
    setenv("LOOM_DATABASE_URL", loomt_dsn(), 1);
    loom_store_close(loomt_store_open()); /* migrates */
    loomt_sql_exec("CREATE TABLE public.sent (id uuid PRIMARY KEY)");
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
    loomt_sql_exec("TRUNCATE loom.outbox, loom.outbox_relays, "
                   "loom.outbox_dead_letters, loom.topics, "
                   "loom.topic_partitions, loom.topic_messages, "
                   "loom.topic_groups, loom.topic_members, "
                   "loom.topic_assignments, loom.topic_offsets, "
                   "loom.topic_retries, loom.topic_dead_letters, public.sent");
    return 0;
}

/* A test that failed midway leaves no relay running, and the topics
 * accept messages again. */
static int
teardown(void **state)
{
    (void) state;
    loomt_sql_exec("ALTER TABLE loom.topic_messages DROP CONSTRAINT IF "
                   "EXISTS test_refuse; DROP TRIGGER IF EXISTS slow_refusal "
                   "ON loom.topic_messages; DROP FUNCTION IF EXISTS "
                   "public.slow_refusal()");
    for (int i = 0; i < MAX_CHILDREN; i++) {
        if (children[i].pid != 0) {
            kill(children[i].pid, SIGKILL);
            waitpid(children[i].pid, NULL, 0);
            children[i].pid = 0;
        }
        forget(&children[i]);
    }
    return 0;
}

static void
create_topic(const char *name)
{
    sqlf_ll("SELECT loom.topic_create('%s', 3, NULL, NULL, NULL, NULL)", name);
}

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
    ch = spawn("relay --name relay-one --report-ms 200");
    wait_out(ch, "active: this relay publishes outbox default now\n");
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

    wait_out(ch, "active: published 50 (");
    assert_int_equal(stop(ch, SIGTERM), 0);
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
    a = spawn("relay --name relay-a --report-ms 0");
    wait_out(a, "active: this relay publishes outbox default now\n");
    b = spawn("relay --name relay-b --batch 7 --report-ms 0");
    wait_out(b, "standing by: another relay is active for outbox default");
    wait_status_relay("relay-a");
    wait_arrived("orders", 100);

    /* More messages, then the active relay dies without a word. */
    add_messages("default", "orders", 100);
    assert_int_equal(stop(a, SIGKILL), 128 + SIGKILL);
    killed = now_ms();
    wait_out(b, "active: this relay publishes outbox default now\n");
    /* A standby tries every second; allow for a slow machine. */
    assert_true(now_ms() - killed < 10000);
    wait_status_relay("relay-b");
    wait_arrived("orders", 200);

    r = lc("outbox status");
    assert_int_equal(r.rc, 0);
    assert_has(r.out, " relay-b ");
    run_free(&r);
    assert_int_equal(stop(b, SIGTERM), 0);
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
    ch = spawn("relay --name relay-x --report-ms 0");
    wait_out(ch, "active: this relay publishes outbox default now\n");
    assert_int_equal(stop(ch, SIGKILL), 128 + SIGKILL);
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
    ch = spawn("--json relay --outbox jsonbox --report-ms 100");
    wait_out(ch, "\"event\":\"active\"");
    wait_out(ch, "\"leading\":true"); /* a report since */
    assert_int_equal(stop(ch, SIGINT), 0);
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

/* Polls the default outbox's status until member `key` is `want`
 * ("true", "false", a number as text). */
static void
wait_status_member(const char *key, const char *want, char *line, size_t cap)
{
    long long deadline = now_ms() + WAIT_MS;
    char raw[256];

    for (;;) {
        status_json(line, cap);
        get_raw(line, key, raw, sizeof raw);
        if (strcmp(raw, want) == 0)
            return;
        if (now_ms() > deadline)
            fail_msg("status has %s %s, expected %s: %s", key, raw, want, line);
        sleep_ms(100);
    }
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
    ch = spawn("relay --name relay-f --report-ms 200");
    wait_out(ch, "active: this relay publishes outbox default now\n");
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
    wait_out(ch, " failed publishes, 0 dead letters\n");

    /* Fixed: the messages go out and the failure clears. */
    loomt_sql_exec("ALTER TABLE loom.topic_messages DROP CONSTRAINT "
                   "test_refuse");
    wait_arrived("orders", 3);
    wait_status_member("failing", "false", line, sizeof line);
    assert_int_equal(get_i64(line, "pending"), 0);
    assert_int_equal(stop(ch, SIGTERM), 0);
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
    ch = spawn("relay --name relay-s --report-ms 0");
    wait_out(ch, "active: this relay publishes outbox default now\n");
    sleep_ms(300);
    assert_int_equal(stop(ch, SIGTERM), 0);
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
    ch = spawn("relay --name relay-d --report-ms 0");
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
    assert_int_equal(stop(ch, SIGTERM), 0);
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
    r = lc("outbox status other");
    assert_int_equal(r.rc, 1); /* dead letters only: no outbox row yet */
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

int
main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_outbox_status_empty),
        T(test_outbox_status_pending_without_relay),
        T(test_relay_publishes_and_stops_cleanly),
        T(test_relay_standby_takes_over_from_a_killed_one),
        T(test_relay_killed_shows_gone),
        T(test_relay_json_events),
        T(test_relay_failing_transport),
        T(test_relay_stop_while_a_publish_fails),
        T(test_relay_dead_letters_and_redrive),
        T(test_outbox_dlq_and_redrive),
        T(test_outbox_bad_arguments),
        T(test_relay_errors),
        T(test_outbox_help),
    };
#undef T

    return cmocka_run_group_tests_name("tools.loomctl.outbox", tests,
                                       group_setup, group_teardown);
}
