/* Helpers shared by the event store tests (see estest.h). */
#define _GNU_SOURCE /* program_invocation_short_name */
#include "estest.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

int
est_group_setup(void **state)
{
    const char *name = program_invocation_short_name;
    const char *end = strstr(name, "_test");
    char label[64];

    (void) state;
    snprintf(label, sizeof label, "%.*s",
             (int) (end != NULL ? (size_t) (end - name) : strlen(name)), name);
    loomt_db_create(label);
    return 0;
}

int
est_group_teardown(void **state)
{
    (void) state;
    loomt_db_drop();
    return 0;
}

int
est_setup(void **state)
{
    est_fx *f = calloc(1, sizeof *f);

    assert_non_null(f);
    f->s = loomt_store_open();
    *state = f;
    return 0;
}

int
est_teardown(void **state)
{
    est_fx *f = *state;

    loom_store_close(f->s);
    free(f);
    return 0;
}

PGconn *
est_connect(const char *dsn)
{
    PGconn *c = PQconnectdb(dsn ? dsn : loomt_dsn());

    if (PQstatus(c) != CONNECTION_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", PQerrorMessage(c));
        PQfinish(c);
        fail_msg("connect: %s", msg);
    }
    return c;
}

PGresult *
est_query(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);

    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", PQresultErrorMessage(r));
        PQclear(r);
        fail_msg("%s: %s", sql, msg);
    }
    return r;
}

void
est_exec(PGconn *c, const char *sql)
{
    PQclear(est_query(c, sql));
}

void
est_exec_fails(PGconn *c, const char *sql, const char *state)
{
    PGresult *r = PQexec(c, sql);
    const char *got = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    char copy[8];

    snprintf(copy, sizeof copy, "%s", got ? got : "(none)");
    if (PQresultStatus(r) == PGRES_TUPLES_OK ||
        PQresultStatus(r) == PGRES_COMMAND_OK) {
        PQclear(r);
        fail_msg("%s: succeeded, expected SQLSTATE %s", sql, state);
    }
    PQclear(r);
    if (strcmp(copy, state) != 0)
        fail_msg("%s: SQLSTATE %s, expected %s", sql, copy, state);
}

long long
est_ll(const char *fmt, ...)
{
    char sql[2048];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    assert_true(n > 0 && (size_t) n < sizeof sql);
    return loomt_sql_ll(sql);
}

static long long
est_try_vll(PGconn **c, const char *fmt, va_list ap)
{
    char sql[2048];
    PGresult *r;
    long long v = -1;
    int n = vsnprintf(sql, sizeof sql, fmt, ap);

    if (n <= 0 || (size_t) n >= sizeof sql)
        return -1;
    if (*c == NULL)
        *c = PQconnectdb(loomt_dsn());
    else if (PQstatus(*c) != CONNECTION_OK)
        PQreset(*c);
    if (PQstatus(*c) != CONNECTION_OK)
        return -1;
    r = PQexec(*c, sql);
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0 &&
        !PQgetisnull(r, 0, 0))
        v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return v;
}

long long
est_try_ll(const char *fmt, ...)
{
    PGconn *c = NULL;
    va_list ap;
    long long v;

    va_start(ap, fmt);
    v = est_try_vll(&c, fmt, ap);
    va_end(ap);
    PQfinish(c);
    return v;
}

long long
est_try_ll_on(PGconn **c, const char *fmt, ...)
{
    va_list ap;
    long long v;

    va_start(ap, fmt);
    v = est_try_vll(c, fmt, ap);
    va_end(ap);
    return v;
}

long long
est_count_stream(const char *stream)
{
    return est_ll("SELECT count(*) FROM loom.events WHERE stream = '%s'",
                  stream);
}

loom_store *
est_store_open(const loom_store_config *cfg)
{
    loom_store_config c = LOOM_STORE_CONFIG_INIT;
    loom_store *s = NULL;
    char err[512];
    loom_err rc;

    if (cfg != NULL)
        c = *cfg;
    else
        c.migrate = LOOM_MIGRATE_AUTO;
    if (c.conninfo == NULL)
        c.conninfo = loomt_dsn();
    rc = loom_store_open(&s, &c, err, sizeof err);
    if (rc != LOOM_OK)
        fail_msg("loom_store_open: %s: %s", loom_err_name(rc), err);
    assert_non_null(s);
    return s;
}

void
est_event(loom_event_data *e, const char *type, const void *data, size_t len)
{
    memset(e, 0, sizeof *e);
    e->type = type;
    e->data = data;
    e->data_len = len;
}

static void
est_extra_name(const char *tag, char *name, size_t len)
{
    snprintf(name, len, "loomtx_%s_%ld", tag, (long) getpid());
}

void
est_db_drop_extra(const char *tag)
{
    char name[64], sql[160];

    est_extra_name(tag, name, sizeof name);
    /* Checked first to keep the server's "does not exist" notice off the
     * test output. */
    if (est_ll("SELECT count(*) FROM pg_database WHERE datname = '%s'", name) ==
        0)
        return;
    snprintf(sql, sizeof sql, "DROP DATABASE %s WITH (FORCE)", name);
    loomt_sql_exec(sql);
}

void
est_db_create_extra(const char *tag, char *dsn, size_t len)
{
    char name[64], sql[160];

    est_db_drop_extra(tag); /* left over from a crashed run */
    est_extra_name(tag, name, sizeof name);
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
    loomt_sql_exec(sql);
    /* In a key=value string the last dbname wins. */
    snprintf(dsn, len, "%s dbname='%s'", loomt_dsn(), name);
}

loom_position
est_read_all_end(loom_store *s)
{
    loom_position at = {0, 0};

    for (;;) {
        loom_events *page = NULL;
        size_t n;
        assert_int_equal(loom_store_read_all(s, at, 1000, &page), LOOM_OK);
        n = loom_events_count(page);
        at = loom_events_next(page);
        loom_events_free(page);
        if (n == 0)
            return at;
    }
}

int
est_pos_before(loom_position a, loom_position b)
{
    return a.tx < b.tx || (a.tx == b.tx && a.position < b.position);
}

int64_t
est_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
est_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long) (ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

void
est_seen_copy(est_seen *out, const loom_event *ev)
{
    out->at.tx = ev->tx;
    out->at.position = ev->position;
    out->version = ev->version;
    out->id = ev->id;
    snprintf(out->stream, sizeof out->stream, "%s", ev->stream);
}

size_t
est_collect_all(loom_store *s, loom_position *cursor, size_t page_size,
                const char *prefix, est_seen *out, size_t cap, size_t want,
                int timeout_ms)
{
    int64_t deadline = est_now_ms() + timeout_ms;
    size_t kept = 0, plen = prefix ? strlen(prefix) : 0;

    while (kept < want && est_now_ms() < deadline) {
        loom_events *page = NULL;
        size_t n;
        loom_err rc = loom_store_read_all(s, *cursor, page_size, &page);
        if (rc != LOOM_OK)
            fail_msg("read_all: %s: %s", loom_err_name(rc),
                     loom_store_errmsg(s));
        n = loom_events_count(page);
        for (size_t i = 0; i < n; i++) {
            const loom_event *ev = loom_events_at(page, i);
            loom_position at = {ev->tx, ev->position};
            if (!est_pos_before(*cursor, at)) {
                loom_events_free(page);
                fail_msg("read_all returned (%llu, %lld) at or before its "
                         "cursor (%llu, %lld)",
                         (unsigned long long) at.tx, (long long) at.position,
                         (unsigned long long) cursor->tx,
                         (long long) cursor->position);
            }
            *cursor = at;
            if (prefix != NULL && strncmp(ev->stream, prefix, plen) != 0)
                continue;
            if (kept < cap)
                est_seen_copy(&out[kept], ev);
            kept++;
        }
        if (n > 0) {
            loom_position next = loom_events_next(page);
            assert_int_equal(next.tx, cursor->tx);
            assert_int_equal(next.position, cursor->position);
        }
        loom_events_free(page);
        if (n == 0)
            est_sleep_ms(5);
    }
    return kept;
}
