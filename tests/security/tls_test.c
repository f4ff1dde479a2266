/*
 * TLS to PostgreSQL with sslmode=verify-full, against a server with
 * ssl = on and a certificate for "localhost" signed by a throwaway test CA
 * (scripts/pg.sh makes them in <cluster>/tls; LOOM_TEST_PG_TLS_DIR names
 * another directory holding ca.crt and other-ca.crt, else the test finds
 * the directory of the server's ssl_cert_file):
 *   - a store connected with verify-full and the test CA works, and the
 *     server reports its session as encrypted (pg_stat_ssl);
 *   - verify-full refuses a server whose certificate does not name the
 *     host connected to, and a server certificate from an unknown CA,
 *     with LOOM_ECONN and libpq's reason in the message.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "pgtest.h"

static char tls_dir[1024];
static char port[32], user[128], dbname[128];

static void
find_tls_dir(void)
{
    const char *env = getenv("LOOM_TEST_PG_TLS_DIR");
    PGconn *c;
    PGresult *r;
    char *slash;

    if (env != NULL && env[0] != '\0') {
        snprintf(tls_dir, sizeof tls_dir, "%s", env);
        return;
    }
    c = PQconnectdb(loomt_dsn());
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("connect: %s", PQerrorMessage(c));
    r = PQexec(c, "SELECT current_setting('ssl'), "
                  "current_setting('ssl_cert_file')");
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("reading the server's TLS settings: %s",
                 PQresultErrorMessage(r));
    if (strcmp(PQgetvalue(r, 0, 0), "on") != 0)
        fail_msg("the test server has ssl = off: start it with scripts/pg.sh "
                 "(which turns TLS on) or set LOOM_TEST_PG_TLS_DIR for a "
                 "server of your own");
    snprintf(tls_dir, sizeof tls_dir, "%s", PQgetvalue(r, 0, 1));
    slash = strrchr(tls_dir, '/');
    if (slash == NULL)
        fail_msg("ssl_cert_file %s has no directory: set "
                 "LOOM_TEST_PG_TLS_DIR",
                 tls_dir);
    *slash = '\0';
    PQclear(r);
    PQfinish(c);
    if (access(tls_dir, R_OK) != 0)
        fail_msg("cannot read the server's TLS directory %s: set "
                 "LOOM_TEST_PG_TLS_DIR",
                 tls_dir);
}

static int
group_setup(void **state)
{
    char *err = NULL;
    PQconninfoOption *opts;

    (void) state;
    loomt_db_create("tls");
    find_tls_dir();
    opts = PQconninfoParse(loomt_dsn(), &err);
    assert_non_null(opts);
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
        if (o->val == NULL)
            continue;
        if (strcmp(o->keyword, "port") == 0)
            snprintf(port, sizeof port, "%s", o->val);
        else if (strcmp(o->keyword, "user") == 0)
            snprintf(user, sizeof user, "%s", o->val);
        else if (strcmp(o->keyword, "dbname") == 0)
            snprintf(dbname, sizeof dbname, "%s", o->val);
    }
    PQconninfoFree(opts);
    if (port[0] == '\0')
        snprintf(port, sizeof port, "5432");
    return 0;
}

static int
group_teardown(void **state)
{
    (void) state;
    loomt_db_drop();
    return 0;
}

/* A verify-full connection string to `host` trusting `ca`. */
static const char *
tls_dsn(const char *host, const char *ca, const char *appname)
{
    static char dsn[2048];

    snprintf(dsn, sizeof dsn,
             "host=%s port=%s user='%s' dbname='%s' sslmode=verify-full "
             "sslrootcert='%s/%s' application_name='%s'",
             host, port, user, dbname, tls_dir, ca, appname);
    return dsn;
}

static loom_err
open_store(const char *dsn, loom_store **out, char *err, size_t errlen)
{
    loom_store_config cfg = LOOM_STORE_CONFIG_INIT;

    cfg.conninfo = dsn;
    cfg.migrate = LOOM_MIGRATE_AUTO;
    return loom_store_open(out, &cfg, err, errlen);
}

static void
verify_full_with_the_test_ca_connects_encrypted(void **state)
{
    loom_store *s = NULL;
    loom_events *page = NULL;
    loom_event_data ev;
    char err[512];
    loom_err rc;

    (void) state;
    rc = open_store(tls_dsn("localhost", "ca.crt", "loomt-tls-store"), &s, err,
                    sizeof err);
    if (rc != LOOM_OK)
        fail_msg("open over TLS: %s: %s", loom_err_name(rc), err);
    memset(&ev, 0, sizeof ev);
    ev.type = "sec.OverTls";
    ev.data = "sealed";
    ev.data_len = 6;
    assert_int_equal(
        loom_store_append(s, "tls-1", LOOM_EXPECT_NO_STREAM, &ev, 1, NULL),
        LOOM_OK);
    assert_int_equal(
        loom_store_read_stream(s, "tls-1", 0, LOOM_FORWARD, 10, &page),
        LOOM_OK);
    assert_int_equal(loom_events_count(page), 1);
    assert_memory_equal(loom_events_at(page, 0)->data, "sealed", 6);
    loom_events_free(page);
    /* The server's view of the store's own session: encrypted. */
    assert_int_equal(loomt_sql_ll("SELECT count(*) FROM pg_stat_ssl s JOIN "
                                  "pg_stat_activity a USING (pid) WHERE "
                                  "a.application_name = 'loomt-tls-store' "
                                  "AND s.ssl AND s.version LIKE 'TLS%'"),
                     1);
    assert_int_equal(loomt_sql_ll("SELECT count(*) FROM pg_stat_ssl s JOIN "
                                  "pg_stat_activity a USING (pid) WHERE "
                                  "a.application_name = 'loomt-tls-store' "
                                  "AND NOT s.ssl"),
                     0);
    loom_store_close(s);
}

static void
verify_full_refuses_a_certificate_for_another_host_name(void **state)
{
    loom_store *s = NULL;
    char err[1024];

    (void) state;
    /* The certificate names "localhost" only; 127.0.0.1 is the same
     * server, but not the name it proves. */
    assert_int_equal(open_store(tls_dsn("127.0.0.1", "ca.crt", "loomt-tls"), &s,
                                err, sizeof err),
                     LOOM_ECONN);
    assert_null(s);
    if (strstr(err, "does not match host name \"127.0.0.1\"") == NULL)
        fail_msg("unexpected error: %s", err);
}

static void
verify_full_refuses_a_server_certificate_from_an_unknown_ca(void **state)
{
    loom_store *s = NULL;
    char err[1024];

    (void) state;
    assert_int_equal(
        open_store(tls_dsn("localhost", "other-ca.crt", "loomt-tls"), &s, err,
                   sizeof err),
        LOOM_ECONN);
    assert_null(s);
    if (strstr(err, "certificate verify failed") == NULL)
        fail_msg("unexpected error: %s", err);
    /* And no session of ours got through without TLS. */
    assert_int_equal(loomt_sql_ll("SELECT count(*) FROM pg_stat_activity "
                                  "WHERE application_name = 'loomt-tls'"),
                     0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(verify_full_with_the_test_ca_connects_encrypted),
        cmocka_unit_test(
            verify_full_refuses_a_certificate_for_another_host_name),
        cmocka_unit_test(
            verify_full_refuses_a_server_certificate_from_an_unknown_ca),
    };

    return cmocka_run_group_tests_name("security.tls", tests, group_setup,
                                       group_teardown);
}
