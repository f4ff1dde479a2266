/* Applying the embedded schema migrations (see migrate_int.h). */
#include "migrate_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log_int.h"
#include "pgwire.h"

/* The advisory lock key: "loommigr" read as a 64-bit integer. */
#define MIGRATE_LOCK_KEY "7813586394288842610"

/* Only when the table is missing: CREATE SCHEMA checks the right to
 * create schemas in the database even with IF NOT EXISTS, and a member of
 * loom_admin who migrates an existing schema need not have it. */
static const char migrate_bootstrap_sql[] =
    "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c"
    " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname = 'loom' AND c.relname = 'schema_migrations') THEN"
    " CREATE SCHEMA IF NOT EXISTS loom;"
    " CREATE TABLE IF NOT EXISTS loom.schema_migrations ("
    " version integer PRIMARY KEY,"
    " name text NOT NULL,"
    " checksum text NOT NULL,"
    " applied_at timestamptz NOT NULL DEFAULT now());"
    " END IF; END $$";

/* Who runs the migrations once schema 10 gave the schema to loom_admin
 * (0010_roles.sql): that role, so that what they create belongs to it and
 * gets its default privileges. One row when loom_admin owns the schema:
 * is the current user a member? */
static const char migrate_admin_sql[] =
    "SELECT pg_catalog.pg_has_role(current_user, r.oid, 'MEMBER')::int::text,"
    " current_user FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_roles r"
    " ON r.rolname = 'loom_admin' AND r.oid = n.nspowner"
    " WHERE n.nspname = 'loom'";

enum { MIGRATE_AS_SELF, MIGRATE_AS_ADMIN, MIGRATE_NOT_ADMIN };

int
loom__schema_latest(void)
{
    return loom__n_migrations == 0
               ? 0
               : loom__migrations[loom__n_migrations - 1].version;
}

/* FNV-1a, 64 bits, as 16 hex digits: detects a migration edited after it
 * shipped (not an adversary: the database is trusted). */
static void
migrate_checksum(const char *sql, char out[17])
{
    uint64_t h = UINT64_C(0xcbf29ce484222325);

    for (const unsigned char *p = (const unsigned char *) sql; *p; p++) {
        h ^= *p;
        h *= UINT64_C(0x100000001b3);
    }
    snprintf(out, 17, "%016llx", (unsigned long long) h);
}

static loom_err
migrate_fail(PGconn *c, PGresult *r, loom__buf *err, const char *what)
{
    loom__buf_reset(err);
    loom__buf_printf(err, "%s: %s", what,
                     r ? PQresultErrorMessage(r) : PQerrorMessage(c));
    while (err->len > 0 && err->data[err->len - 1] == '\n')
        err->data[--err->len] = '\0';
    return PQstatus(c) == CONNECTION_OK ? LOOM_EDB : LOOM_ECONN;
}

/* Runs `sql` (may hold several statements) and expects success. */
static loom_err
migrate_exec(PGconn *c, const char *sql, loom__buf *err, const char *what)
{
    PGresult *r = PQexec(c, sql);
    loom_err rc = LOOM_OK;
    ExecStatusType st = PQresultStatus(r);

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        rc = migrate_fail(c, r, err, what);
    PQclear(r);
    return rc;
}

loom_err
loom__schema_version(PGconn *c, int *version, loom__buf *err)
{
    PGresult *r;
    loom_err rc = LOOM_OK;

    *version = 0;
    r = PQexec(c, "SELECT coalesce(max(version), 0)::text FROM "
                  "loom.schema_migrations");
    if (PQresultStatus(r) == PGRES_TUPLES_OK)
        *version = atoi(PQgetvalue(r, 0, 0));
    else if (strcmp(loom__pg_sqlstate(r), "42P01") != 0 &&
             strcmp(loom__pg_sqlstate(r), "3F000") != 0)
        rc = migrate_fail(c, r, err, "reading loom.schema_migrations");
    PQclear(r);
    return rc;
}

/* Compares the checksum recorded for `m` with the embedded text. Returns
 * 1 when applied, 0 when not applied yet, -1 on error. */
static int
migrate_applied(PGconn *c, const loom__migration *m, loom__buf *err,
                loom_err *rc)
{
    char want[17], num[16];
    const char *params[1] = {num};
    PGresult *r;
    int applied = 0;

    snprintf(num, sizeof num, "%d", m->version);
    migrate_checksum(m->sql, want);
    r = PQexecParams(c,
                     "SELECT checksum FROM loom.schema_migrations "
                     "WHERE version = $1::integer",
                     1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        *rc = migrate_fail(c, r, err, "reading loom.schema_migrations");
        applied = -1;
    } else if (PQntuples(r) == 1) {
        applied = 1;
        if (strcmp(PQgetvalue(r, 0, 0), want) != 0) {
            loom__buf_reset(err);
            loom__buf_printf(err,
                             "migration %s was applied from different text "
                             "than this library embeds (checksum %s, "
                             "expected %s): restore the original file",
                             m->name, PQgetvalue(r, 0, 0), want);
            *rc = LOOM_ESCHEMA;
            applied = -1;
        }
    }
    PQclear(r);
    return applied;
}

/* Sets *as to one of MIGRATE_AS_*; *user gets the user's name for the
 * error of MIGRATE_NOT_ADMIN. */
static loom_err
migrate_who(PGconn *c, int *as, char *user, size_t len, loom__buf *err)
{
    PGresult *r = PQexec(c, migrate_admin_sql);
    loom_err rc = LOOM_OK;

    *as = MIGRATE_AS_SELF;
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        rc = migrate_fail(c, r, err, "looking up the owner of schema loom");
    else if (PQntuples(r) == 1) {
        *as = strcmp(PQgetvalue(r, 0, 0), "1") == 0 ? MIGRATE_AS_ADMIN
                                                    : MIGRATE_NOT_ADMIN;
        snprintf(user, len, "%s", PQgetvalue(r, 0, 1));
    }
    PQclear(r);
    return rc;
}

/* Applies `m` and records it, in one transaction. */
static loom_err
migrate_apply(PGconn *c, const loom__migration *m, int as, loom__buf *err)
{
    char sum[17], num[16];
    const char *params[3] = {num, m->name, sum};
    PGresult *r;
    loom_err rc;

    snprintf(num, sizeof num, "%d", m->version);
    migrate_checksum(m->sql, sum);
    rc = migrate_exec(c, "BEGIN", err, "starting a migration");
    if (rc == LOOM_OK && as == MIGRATE_AS_ADMIN)
        rc = migrate_exec(c, "SET LOCAL ROLE loom_admin", err,
                          "becoming loom_admin");
    if (rc == LOOM_OK)
        rc = migrate_exec(c, m->sql, err, m->name);
    if (rc == LOOM_OK) {
        r = PQexecParams(c,
                         "INSERT INTO loom.schema_migrations "
                         "(version, name, checksum) VALUES ($1, $2, $3)",
                         3, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            rc = migrate_fail(c, r, err, "recording a migration");
        PQclear(r);
    }
    if (rc == LOOM_OK)
        return migrate_exec(c, "COMMIT", err, m->name);
    PQclear(PQexec(c, "ROLLBACK"));
    return rc;
}

/* A migration's WARNINGs are for the operator (0010_roles.sql explains
 * so when it cannot create the roles): log them. NOTICEs stay quiet. */
static void
migrate_on_notice(void *arg, const PGresult *r)
{
    const char *sev = PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED);
    const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    const char *hint = PQresultErrorField(r, PG_DIAG_MESSAGE_HINT);

    (void) arg;
    if (sev == NULL || strcmp(sev, "WARNING") != 0 || msg == NULL)
        return;
    loom__log(LOOM_LOG_WARN, "migration: %s%s%s", msg, hint ? ". " : "",
              hint ? hint : "");
}

loom_err
loom__migrate(PGconn *c, loom__migrate_cb cb, void *arg, int *applied,
              loom__buf *err)
{
    loom_err rc;
    int n = 0, as = MIGRATE_AS_SELF;
    char user[128] = "";

    PQnoticeReceiver before;

    rc = migrate_exec(c, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")", err,
                      "taking the migration lock");
    if (rc != LOOM_OK)
        return rc;
    before = PQsetNoticeReceiver(c, migrate_on_notice, NULL);
    rc = migrate_exec(c, migrate_bootstrap_sql, err,
                      "creating loom.schema_migrations");
    if (rc == LOOM_OK)
        rc = migrate_who(c, &as, user, sizeof user, err);
    for (size_t i = 0; rc == LOOM_OK && i < loom__n_migrations; i++) {
        const loom__migration *m = &loom__migrations[i];
        int done = migrate_applied(c, m, err, &rc);
        if (done != 0)
            continue;
        if (as == MIGRATE_NOT_ADMIN) {
            loom__buf_reset(err);
            loom__buf_printf(err,
                             "migration %s needs role loom_admin, which owns "
                             "schema loom, and user \"%s\" is not a member: "
                             "migrate as a member of loom_admin (GRANT "
                             "loom_admin TO \"%s\")",
                             m->name, user, user);
            rc = LOOM_EDB;
            break;
        }
        if (cb != NULL)
            cb(m, 0, arg);
        rc = migrate_apply(c, m, as, err);
        if (rc == LOOM_OK) {
            n++;
            if (cb != NULL)
                cb(m, 1, arg);
        }
        /* 0010_roles hands the schema to loom_admin: the migrations after
         * it, in the same run, must be made by loom_admin too, or what
         * they create belongs to this user and a later grant_roles() run
         * by a member of loom_admin may not take it over. */
        if (rc == LOOM_OK && as == MIGRATE_AS_SELF)
            rc = migrate_who(c, &as, user, sizeof user, err);
    }
    /* Unlock even after a failure; a broken connection drops it anyway. */
    PQclear(PQexec(c, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")"));
    /* libpq's own receiver ignores its argument (it calls the processor). */
    PQsetNoticeReceiver(c, before, NULL);
    if (applied != NULL)
        *applied = n;
    return rc;
}
