/*
 * Schema migrations: applied once, in order, even by concurrent
 * migrators; refused when an applied migration was altered; the events
 * table refuses to change history whoever asks. Tests that need an empty
 * schema get a database of their own.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "estest.h"

struct fx {
    char dsn[4096]; /* an empty database of this test's own */
    char tag[32];
};

static int
setup(void **state)
{
    static int seq;
    struct fx *f = calloc(1, sizeof *f);

    assert_non_null(f);
    snprintf(f->tag, sizeof f->tag, "migrate_%d", seq++);
    est_db_create_extra(f->tag, f->dsn, sizeof f->dsn);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fx *f = *state;

    est_db_drop_extra(f->tag);
    free(f);
    return 0;
}

/* A store on the test's own database that does not touch the schema. */
static loom_store *
open_skip(const struct fx *f)
{
    loom_store_config cfg = LOOM_STORE_CONFIG_INIT;

    cfg.conninfo = f->dsn;
    cfg.migrate = LOOM_MIGRATE_SKIP;
    return est_store_open(&cfg);
}

/* One value from the test's own database. */
static long long
own_ll(const struct fx *f, const char *sql)
{
    PGconn *c = est_connect(f->dsn);
    PGresult *r = est_query(c, sql);
    long long v = PQntuples(r) > 0 && !PQgetisnull(r, 0, 0)
                      ? strtoll(PQgetvalue(r, 0, 0), NULL, 10)
                      : 0;

    PQclear(r);
    PQfinish(c);
    return v;
}

typedef struct progress {
    int calls;
    int last_version;
    int bad; /* calls out of order or without a name */
} progress;

static void
on_progress(int version, const char *name, int done, void *arg)
{
    progress *p = arg;

    /* Before and after each migration, ascending. */
    if (name == NULL || name[0] == '\0' || done != (p->calls % 2 == 1) ||
        (done == 0 && version <= p->last_version) ||
        (done == 1 && version != p->last_version))
        p->bad++;
    p->last_version = version;
    p->calls++;
}

static void
test_migrate_applies_once(void **state)
{
    struct fx *f = *state;
    loom_store *s = open_skip(f);
    progress p = {0, 0, 0};
    int applied = -1, latest = -1, n = -1;

    assert_int_equal(loom_store_schema_version(s, &applied, &latest), LOOM_OK);
    assert_int_equal(applied, 0);
    assert_true(latest >= 1);
    assert_int_equal(loom_store_migrate(s, on_progress, &p, &n), LOOM_OK);
    assert_true(n >= 1);
    assert_int_equal(p.calls, 2 * n);
    assert_int_equal(p.bad, 0);
    assert_int_equal(p.last_version, latest);
    assert_int_equal(own_ll(f, "SELECT count(*) FROM loom.schema_migrations"),
                     n);
    assert_int_equal(loom_store_schema_version(s, &applied, &latest), LOOM_OK);
    assert_int_equal(applied, latest);
    /* Again: nothing to do, no progress calls. */
    p.calls = 0;
    assert_int_equal(loom_store_migrate(s, on_progress, &p, &n), LOOM_OK);
    assert_int_equal(n, 0);
    assert_int_equal(p.calls, 0);
    /* NULL callback and count are fine. */
    assert_int_equal(loom_store_migrate(s, NULL, NULL, NULL), LOOM_OK);
    assert_int_equal(loom_store_schema_version(s, NULL, NULL), LOOM_OK);
    loom_store_close(s);
}

static void
test_migrate_check_mode_needs_migration(void **state)
{
    struct fx *f = *state;
    loom_store_config cfg = LOOM_STORE_CONFIG_INIT;
    loom_store *s = NULL, *m;
    char err[512];

    cfg.conninfo = f->dsn;
    cfg.migrate = LOOM_MIGRATE_CHECK;
    assert_int_equal(loom_store_open(&s, &cfg, err, sizeof err), LOOM_ESCHEMA);
    assert_null(s);
    assert_non_null(strstr(err, "loomctl migrate"));
    m = open_skip(f);
    assert_int_equal(loom_store_migrate(m, NULL, NULL, NULL), LOOM_OK);
    loom_store_close(m);
    assert_int_equal(loom_store_open(&s, &cfg, err, sizeof err), LOOM_OK);
    loom_store_close(s);
}

static void
test_migrate_check_mode_refuses_newer_schema(void **state)
{
    struct fx *f = *state;
    loom_store_config cfg = LOOM_STORE_CONFIG_INIT;
    loom_store *s = NULL, *m = open_skip(f);
    PGconn *c;
    char err[512];

    assert_int_equal(loom_store_migrate(m, NULL, NULL, NULL), LOOM_OK);
    loom_store_close(m);
    /* A later library applied a migration this one does not know. */
    c = est_connect(f->dsn);
    est_exec(c, "INSERT INTO loom.schema_migrations (version, name, checksum) "
                "VALUES (9999, '9999_from_the_future', '0')");
    PQfinish(c);
    cfg.conninfo = f->dsn;
    cfg.migrate = LOOM_MIGRATE_CHECK;
    err[0] = '\0';
    /* Documented for loom_store_open(): "LOOM_ESCHEMA (schema ... newer:
     * upgrade the library)". */
    if (loom_store_open(&s, &cfg, err, sizeof err) != LOOM_ESCHEMA) {
        loom_store_close(s);
        fail_msg("opening a database whose schema (9999) is newer than the "
                 "library's succeeded; want LOOM_ESCHEMA");
    }
    assert_null(s);
    assert_non_null(strstr(err, "upgrade"));
}

static void
test_migrate_events_are_append_only(void **state)
{
    struct fx *f = *state;
    loom_store *s = loomt_store_open();
    PGconn *c = est_connect(NULL);
    loom_event_data ev;

    (void) f;
    est_event(&ev, "T", "x", 1);
    assert_int_equal(
        loom_store_append(s, "ao-1", LOOM_EXPECT_ANY, &ev, 1, NULL), LOOM_OK);
    est_exec_fails(c, "UPDATE loom.events SET type = 'changed'", "LM003");
    est_exec_fails(c,
                   "UPDATE loom.events SET data = '\\x00' WHERE stream = "
                   "'ao-1'",
                   "LM003");
    est_exec_fails(c, "DELETE FROM loom.events", "LM003");
    est_exec_fails(c, "DELETE FROM loom.events WHERE stream = 'ao-1'", "LM003");
    est_exec_fails(c, "TRUNCATE loom.events", "LM003");
    est_exec_fails(c, "TRUNCATE loom.events CASCADE", "LM003");
    /* Inside a transaction the refusal aborts it; nothing changes. */
    est_exec(c, "BEGIN");
    est_exec_fails(c, "DELETE FROM loom.events", "LM003");
    est_exec(c, "ROLLBACK");
    assert_int_equal(est_count_stream("ao-1"), 1);
    assert_int_equal(
        est_ll("SELECT count(*) FROM loom.events WHERE stream = 'ao-1' AND "
               "type = 'T' AND data = '\\x78'"),
        1);
    PQfinish(c);
    loom_store_close(s);
}

enum { MIGRATORS = 4 };

typedef struct migrator {
    pthread_t thread;
    loom_store *s;
    const char *dsn; /* for open_auto */
    pthread_barrier_t *start;
    int applied;
    loom_err rc;
    char err[256];
} migrator;

static void *
migrate_main(void *arg)
{
    migrator *m = arg;

    pthread_barrier_wait(m->start);
    m->rc = loom_store_migrate(m->s, NULL, NULL, &m->applied);
    if (m->rc != LOOM_OK)
        snprintf(m->err, sizeof m->err, "%s", loom_store_errmsg(m->s));
    return NULL;
}

/* Opens with LOOM_MIGRATE_AUTO: migration inside loom_store_open(). */
static void *
open_auto_main(void *arg)
{
    migrator *m = arg;
    loom_store_config cfg = LOOM_STORE_CONFIG_INIT;

    cfg.conninfo = m->dsn;
    cfg.migrate = LOOM_MIGRATE_AUTO;
    pthread_barrier_wait(m->start);
    m->rc = loom_store_open(&m->s, &cfg, m->err, sizeof m->err);
    return NULL;
}

static void
run_migrators(struct fx *f, void *(*fn)(void *), migrator *m)
{
    pthread_barrier_t start;

    assert_int_equal(pthread_barrier_init(&start, NULL, MIGRATORS), 0);
    for (int i = 0; i < MIGRATORS; i++) {
        m[i].start = &start;
        m[i].dsn = f->dsn;
        assert_int_equal(pthread_create(&m[i].thread, NULL, fn, &m[i]), 0);
    }
    for (int i = 0; i < MIGRATORS; i++)
        pthread_join(m[i].thread, NULL);
    pthread_barrier_destroy(&start);
    for (int i = 0; i < MIGRATORS; i++)
        if (m[i].rc != LOOM_OK)
            fail_msg("migrator %d: %s: %s", i, loom_err_name(m[i].rc),
                     m[i].err);
}

static void
test_migrate_concurrent_migrators(void **state)
{
    struct fx *f = *state;
    migrator m[MIGRATORS];
    int total = 0, latest = 0;

    memset(m, 0, sizeof m);
    for (int i = 0; i < MIGRATORS; i++)
        m[i].s = open_skip(f);
    run_migrators(f, migrate_main, m);
    for (int i = 0; i < MIGRATORS; i++)
        total += m[i].applied;
    assert_int_equal(loom_store_schema_version(m[0].s, NULL, &latest), LOOM_OK);
    /* Each migration applied by exactly one of them. */
    assert_int_equal(own_ll(f, "SELECT count(*) FROM loom.schema_migrations"),
                     total);
    assert_int_equal(own_ll(f, "SELECT max(version) FROM "
                               "loom.schema_migrations"),
                     latest);
    assert_true(total >= 1);
    for (int i = 0; i < MIGRATORS; i++)
        loom_store_close(m[i].s);
}

static void
test_migrate_concurrent_auto_opens(void **state)
{
    struct fx *f = *state;
    migrator m[MIGRATORS];
    loom_event_data ev;
    int latest = 0;

    memset(m, 0, sizeof m);
    run_migrators(f, open_auto_main, m);
    assert_int_equal(loom_store_schema_version(m[0].s, NULL, &latest), LOOM_OK);
    assert_int_equal(own_ll(f, "SELECT count(*) FROM loom.schema_migrations"),
                     own_ll(f, "SELECT count(DISTINCT version) FROM "
                               "loom.schema_migrations"));
    assert_int_equal(own_ll(f, "SELECT max(version) FROM "
                               "loom.schema_migrations"),
                     latest);
    /* Every handle works on the result. */
    for (int i = 0; i < MIGRATORS; i++) {
        est_event(&ev, "T", "x", 1);
        assert_int_equal(
            loom_store_append(m[i].s, "auto-1", LOOM_EXPECT_ANY, &ev, 1, NULL),
            LOOM_OK);
        loom_store_close(m[i].s);
    }
}

static void
test_migrate_tampered_checksum_is_refused(void **state)
{
    struct fx *f = *state;
    loom_store *s = open_skip(f);
    loom_store_config cfg = LOOM_STORE_CONFIG_INIT;
    loom_store *auto_s = NULL;
    PGconn *c;
    int n = -1;
    char err[512];

    assert_int_equal(loom_store_migrate(s, NULL, NULL, NULL), LOOM_OK);
    c = est_connect(f->dsn);
    est_exec(c, "UPDATE loom.schema_migrations SET checksum = 'x'");
    PQfinish(c);
    assert_int_equal(loom_store_migrate(s, NULL, NULL, &n), LOOM_ESCHEMA);
    assert_int_equal(n, 0);
    assert_non_null(strstr(loom_store_errmsg(s), "checksum"));
    /* The handle is still usable, and the lock was released: another
     * migrator does not hang on it but is refused too. */
    assert_int_equal(loom_store_schema_version(s, NULL, NULL), LOOM_OK);
    cfg.conninfo = f->dsn;
    cfg.migrate = LOOM_MIGRATE_AUTO;
    assert_int_equal(loom_store_open(&auto_s, &cfg, err, sizeof err),
                     LOOM_ESCHEMA);
    assert_null(auto_s);
    assert_non_null(strstr(err, "checksum"));
    loom_store_close(s);
}

static void
test_migrate_failure_rolls_back_and_unlocks(void **state)
{
    struct fx *f = *state;
    loom_store *s = open_skip(f), *other = open_skip(f);
    progress p = {0, 0, 0};
    PGconn *c = est_connect(f->dsn);
    int n = -1;

    /* Something in the way of the first migration. */
    est_exec(c, "CREATE SCHEMA loom; CREATE TABLE loom.streams (x int)");
    assert_int_equal(loom_store_migrate(s, on_progress, &p, &n), LOOM_EDB);
    assert_int_equal(n, 0);
    assert_int_equal(p.calls, 1); /* started, never finished */
    assert_non_null(strstr(loom_store_errmsg(s), "streams"));
    /* Rolled back as a whole: nothing of it, nothing recorded. */
    assert_int_equal(own_ll(f, "SELECT count(*) FROM loom.schema_migrations"),
                     0);
    assert_int_equal(own_ll(f, "SELECT count(*) FROM pg_tables WHERE "
                               "schemaname = 'loom' AND tablename = "
                               "'events'"),
                     0);
    /* The advisory lock was released: another migrator gets through to
     * the same error instead of waiting forever. */
    assert_int_equal(loom_store_migrate(other, NULL, NULL, &n), LOOM_EDB);
    /* Out of the way, it applies. */
    est_exec(c, "DROP TABLE loom.streams");
    assert_int_equal(loom_store_migrate(s, NULL, NULL, &n), LOOM_OK);
    assert_true(n >= 1);
    PQfinish(c);
    loom_store_close(s);
    loom_store_close(other);
}

int
main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_migrate_applies_once),
        T(test_migrate_check_mode_needs_migration),
        T(test_migrate_check_mode_refuses_newer_schema),
        T(test_migrate_events_are_append_only),
        T(test_migrate_concurrent_migrators),
        T(test_migrate_concurrent_auto_opens),
        T(test_migrate_tampered_checksum_is_refused),
        T(test_migrate_failure_rolls_back_and_unlocks),
    };
#undef T

    return cmocka_run_group_tests_name("eventstore.migrate", tests,
                                       est_group_setup, est_group_teardown);
}
