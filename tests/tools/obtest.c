/*
 * Helpers of the loomctl outbox and relay tests (obtest.h).
 */
#include "obtest.h"

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

#include "pgtest.h"

/* ------------------------------------------------------------------ */
/* Helpers                                                             */

long long
sqlf_ll(const char *fmt, ...)
{
    char sql[4096];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    return loomt_sql_ll(sql);
}

void
sleep_ms(long ms)
{
    nanosleep(&(struct timespec){ms / 1000, (ms % 1000) * 1000000L}, NULL);
}

long long
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Puts n messages for `topic` into outbox `outbox`, as loom_outbox_add()
 * would, and remembers their ids in public.sent. */
void
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
long long
arrived(const char *topic)
{
    return sqlf_ll("SELECT count(*) FROM public.sent s WHERE EXISTS ("
                   "SELECT 1 FROM loom.topic_messages m JOIN loom.topics t "
                   "ON t.id = m.topic_id WHERE t.name = '%s' AND m.id = s.id)",
                   topic);
}

void
wait_arrived(const char *topic, long long want)
{
    long long deadline = now_ms() + WAIT_MS, got;

    while ((got = arrived(topic)) != want && now_ms() < deadline)
        sleep_ms(100);
    if (got != want)
        fail_msg("%lld of %lld messages reached topic %s", got, want, topic);
}

void
assert_has(const char *text, const char *needle)
{
    if (strstr(text, needle) == NULL)
        fail_msg("\"%s\" is not in:\n%s", needle, text);
}

/* The first line of `out` containing `needle`, with every run of spaces
 * made one space, so a table row compares as its cells in order. */
void
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

void
assert_row(const char *out, const char *needle, const char *want)
{
    char line[1024];

    row(out, needle, line, sizeof line);
    if (strcmp(line, want) != 0)
        fail_msg("row \"%s\", expected \"%s\", in:\n%s", line, want, out);
}

/* The row with `needle` starts with `prefix` and ends with `suffix`
 * (what lies between, an age, changes from run to run). */
void
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
void
status_json(char *line, size_t cap)
{
    run r = lc("outbox status default --json");

    assert_int_equal(r.rc, 0);
    only_json_line(r.out, line, cap);
    run_free(&r);
}

/* The active relay's name in the status (empty: none). */
void
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

void
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

static child children[MAX_CHILDREN];

char *
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
child *
child_spawn(const char *args)
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

/* Waits until the child's stdout (or stderr: `err`) has `needle`. */
static void
child_wait(const child *ch, int err, const char *needle)
{
    long long deadline = now_ms() + WAIT_MS;

    for (;;) {
        char *text = read_file(err ? ch->err : ch->out);
        int found = strstr(text, needle) != NULL;

        if (found || now_ms() > deadline) {
            if (!found) {
                char *other = read_file(err ? ch->out : ch->err);
                fail_msg("\"%s\" is not in the relay's %s:\n%s\n%s:\n%s",
                         needle, err ? "stderr" : "output", text,
                         err ? "output" : "stderr", other);
            }
            free(text);
            return;
        }
        free(text);
        sleep_ms(50);
    }
}

void
child_wait_out(const child *ch, const char *needle)
{
    child_wait(ch, 0, needle);
}

void
child_wait_err(const child *ch, const char *needle)
{
    child_wait(ch, 1, needle);
}

/* Sends `sig` and returns the exit status (128 + signal when killed). */
int
child_stop(child *ch, int sig)
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

void
obt_db_open(const char *label)
{
    loomt_db_create(label);
    setenv("LOOM_DATABASE_URL", loomt_dsn(), 1);
    loom_store_close(loomt_store_open()); /* migrates */
    loomt_sql_exec("CREATE TABLE public.sent (id uuid PRIMARY KEY)");
}

int
obt_group_teardown(void **state)
{
    (void) state;
    loomt_db_drop();
    return 0;
}

int
obt_setup(void **state)
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
int
obt_teardown(void **state)
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

void
create_topic(const char *name)
{
    sqlf_ll("SELECT loom.topic_create('%s', 3, NULL, NULL, NULL, NULL)", name);
}

/* Polls the default outbox's status until member `key` is `want`
 * ("true", "false", a number as text). */
void
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
