/* A private database per test executable (see pgtest.h). */
#include "pgtest.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>

static char pgt_dbname[64];
static char pgt_dsn[4096];

/* The server's connection string with dbname replaced: every option of
 * LOOM_TEST_PG_DSN (URL or key=value) is kept, quoted key='value'. */
static void
pgt_build_dsn(const char *base, const char *dbname, char *out, size_t len)
{
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(base, &err);
    size_t used = 0;

    if (opts == NULL)
        fail_msg("LOOM_TEST_PG_DSN is not a valid connection string: %s",
                 err ? err : "?");
    out[0] = '\0';
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
        const char *v = strcmp(o->keyword, "dbname") == 0 ? dbname : o->val;
        if (v == NULL)
            continue;
        used += (size_t) snprintf(out + used, len - used, "%s%s='",
                                  used ? " " : "", o->keyword);
        for (const char *p = v; *p && used + 3 < len; p++) {
            if (*p == '\'' || *p == '\\')
                out[used++] = '\\';
            out[used++] = *p;
        }
        used += (size_t) snprintf(out + used, len - used, "'");
    }
    PQconninfoFree(opts);
}

static const char *
pgt_base(void)
{
    const char *base = getenv("LOOM_TEST_PG_DSN");

    if (base == NULL || base[0] == '\0')
        fail_msg("LOOM_TEST_PG_DSN is not set: PostgreSQL tests need a "
                 "server; run them with `make test`, which starts one");
    return base;
}

static void
pgt_quiet(void *arg, const char *message)
{
    (void) arg;
    (void) message;
}

static void
pgt_admin(const char *sql)
{
    char dsn[4096];
    PGconn *c;
    PGresult *r;

    pgt_build_dsn(pgt_base(), "postgres", dsn, sizeof dsn);
    c = PQconnectdb(dsn);
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("cannot connect to the test server: %s", PQerrorMessage(c));
    PQsetNoticeProcessor(c, pgt_quiet, NULL); /* "does not exist, skipping" */
    r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        fail_msg("%s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
    PQfinish(c);
}

const char *
loomt_db_create(const char *label)
{
    char sql[256];

    snprintf(pgt_dbname, sizeof pgt_dbname, "loomt_%s_%ld", label,
             (long) getpid());
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)",
             pgt_dbname);
    pgt_admin(sql);
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", pgt_dbname);
    pgt_admin(sql);
    pgt_build_dsn(pgt_base(), pgt_dbname, pgt_dsn, sizeof pgt_dsn);
    return pgt_dsn;
}

void
loomt_db_drop(void)
{
    char sql[256];

    if (pgt_dbname[0] == '\0')
        return;
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)",
             pgt_dbname);
    pgt_admin(sql);
    pgt_dbname[0] = '\0';
}

const char *
loomt_dsn(void)
{
    if (pgt_dbname[0] == '\0')
        fail_msg("loomt_db_create() was not called");
    return pgt_dsn;
}

loom_store *
loomt_store_open(void)
{
    loom_store_config cfg = LOOM_STORE_CONFIG_INIT;
    loom_store *s = NULL;
    char err[512];
    loom_err rc;

    cfg.conninfo = loomt_dsn();
    cfg.migrate = LOOM_MIGRATE_AUTO;
    rc = loom_store_open(&s, &cfg, err, sizeof err);
    if (rc != LOOM_OK)
        fail_msg("loom_store_open: %s: %s", loom_err_name(rc), err);
    return s;
}

static PGresult *
pgt_exec(const char *sql, PGconn **conn)
{
    PGconn *c = PQconnectdb(loomt_dsn());
    PGresult *r;

    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("connect: %s", PQerrorMessage(c));
    r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK &&
        PQresultStatus(r) != PGRES_COMMAND_OK)
        fail_msg("%s: %s", sql, PQresultErrorMessage(r));
    *conn = c;
    return r;
}

long long
loomt_sql_ll(const char *sql)
{
    PGconn *c;
    PGresult *r = pgt_exec(sql, &c);
    long long v = 0;

    if (PQntuples(r) > 0 && !PQgetisnull(r, 0, 0))
        v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    PQfinish(c);
    return v;
}

void
loomt_sql_exec(const char *sql)
{
    PGconn *c;

    PQclear(pgt_exec(sql, &c));
    PQfinish(c);
}
