/*
 * The scratch database. loom.events refuses TRUNCATE and DELETE by
 * design, so every benchmark runs in a database of its own,
 * loom_bench_<pid>, created on the --db server, migrated by
 * loom_store_open(LOOM_MIGRATE_AUTO), and dropped WITH (FORCE) at the end,
 * also after an error or Ctrl-C.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "buf.h"
#include "loom/alloc.h"
#include "loom/eventstore.h"

/* The bare table of the raw baseline: loom.events' columns, defaults and
 * indexes, without the library's streams table, functions and triggers. */
static const char db_raw_schema_sql[] =
    "CREATE SCHEMA loom_bench;"
    "CREATE TABLE loom_bench.events ("
    " position bigint GENERATED ALWAYS AS IDENTITY,"
    " tx xid8 NOT NULL DEFAULT pg_current_xact_id(),"
    " stream text NOT NULL,"
    " category text NOT NULL,"
    " version bigint NOT NULL,"
    " event_id uuid NOT NULL,"
    " type text NOT NULL,"
    " schema_version integer NOT NULL,"
    " data bytea NOT NULL,"
    " metadata bytea,"
    " recorded_at timestamptz NOT NULL DEFAULT now(),"
    " PRIMARY KEY (stream, version),"
    " UNIQUE (event_id));"
    "CREATE INDEX ON loom_bench.events (tx, position);"
    "CREATE INDEX ON loom_bench.events (category, tx, position);";

static const char db_settings_sql[] =
    "SELECT current_setting('server_version'), current_setting('fsync'), "
    "current_setting('synchronous_commit'), "
    "current_setting('wal_sync_method'), "
    "current_setting('full_page_writes'), "
    "current_setting('shared_buffers'), current_setting('commit_delay')";

static int db_checkpoint_ok = 1;

PGconn *
bench_db_connect(const char *conninfo, const char *appname)
{
    /* The keywords loom_store_open() passes, so both sides of a case
     * connect the same way. */
    const char *keys[] = {"dbname", "fallback_application_name",
                          "client_encoding", NULL};
    const char *vals[] = {conninfo ? conninfo : "", appname, "UTF8", NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);

    if (c == NULL || PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "%s: cannot connect to PostgreSQL: %s", BENCH_PROGRAM,
                c ? PQerrorMessage(c) : "out of memory\n");
        PQfinish(c);
        return NULL;
    }
    return c;
}

int
bench_db_exec(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK ||
             PQresultStatus(r) == PGRES_TUPLES_OK;

    if (!ok)
        fprintf(stderr, "%s: %.60s...: %s", BENCH_PROGRAM, sql,
                PQerrorMessage(c));
    PQclear(r);
    return ok ? 0 : -1;
}

/* Appends key='value' with libpq's quoting rules. */
static void
db_put_param(loom__buf *b, const char *key, const char *val)
{
    loom__buf_printf(b, "%s='", key);
    for (const char *p = val; *p != '\0'; p++) {
        if (*p == '\'' || *p == '\\')
            loom__buf_putc(b, '\\');
        loom__buf_putc(b, *p);
    }
    loom__buf_puts(b, "' ");
}

/* The --db connection string (URL or key=value) pointing at `dbname`
 * instead, every other setting (host, port, options, sslmode) kept. */
static char *
db_conninfo_with(const char *dsn, const char *dbname)
{
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(dsn ? dsn : "", &err);
    loom__buf b = LOOM__BUF_INIT;

    if (opts == NULL) {
        fprintf(stderr, "%s: bad connection string: %s", BENCH_PROGRAM,
                err ? err : "out of memory\n");
        PQfreemem(err);
        return NULL;
    }
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++)
        if (o->val != NULL && strcmp(o->keyword, "dbname") != 0)
            db_put_param(&b, o->keyword, o->val);
    db_put_param(&b, "dbname", dbname);
    PQconninfoFree(opts);
    return loom__buf_take(&b);
}

static int
db_create(bench_env *env)
{
    char sql[128];

    snprintf(sql, sizeof sql, "CREATE DATABASE %s", env->dbname);
    bench_progress("creating scratch database %s", env->dbname);
    if (bench_db_exec(env->admin, sql) != 0)
        return -1;
    env->created = 1;
    return 0;
}

static int
db_migrate(const bench_env *env)
{
    loom_store_config cfg = LOOM_STORE_CONFIG_INIT;
    loom_store *s = NULL;
    char err[512];
    loom_err rc;

    cfg.conninfo = env->conninfo;
    cfg.application_name = "loom-bench";
    cfg.migrate = LOOM_MIGRATE_AUTO;
    rc = loom_store_open(&s, &cfg, err, sizeof err);
    if (rc != LOOM_OK) {
        fprintf(stderr, "%s: migrating the scratch database: %s: %s\n",
                BENCH_PROGRAM, loom_err_name(rc), err);
        return -1;
    }
    loom_store_close(s);
    return 0;
}

/* Prints what is measured. Figures from a server that may lose a
 * committed transaction are not commit costs: say so loudly. */
static int
db_settings(bench_env *env)
{
    PGresult *r = PQexec(env->scratch, db_settings_sql);
    const char *fsync, *sync;

    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        fprintf(stderr, "%s: reading the server settings: %s", BENCH_PROGRAM,
                PQerrorMessage(env->scratch));
        PQclear(r);
        return -1;
    }
    fsync = PQgetvalue(r, 0, 1);
    sync = PQgetvalue(r, 0, 2);
    env->durable = strcmp(fsync, "on") == 0 && strcmp(sync, "off") != 0;
    printf("server: PostgreSQL %s, host %s, port %s, scratch database %s\n",
           PQgetvalue(r, 0, 0), PQhost(env->scratch), PQport(env->scratch),
           env->dbname);
    printf("settings: fsync=%s synchronous_commit=%s wal_sync_method=%s "
           "full_page_writes=%s shared_buffers=%s commit_delay=%s\n",
           fsync, sync, PQgetvalue(r, 0, 3), PQgetvalue(r, 0, 4),
           PQgetvalue(r, 0, 5), PQgetvalue(r, 0, 6));
    printf("client: nproc=%ld\n", sysconf(_SC_NPROCESSORS_ONLN));
    PQclear(r);
    if (!env->durable)
        bench_progress("WARNING: fsync or synchronous_commit is off: these "
                       "figures are NOT durable commits and say nothing "
                       "about production throughput");
    printf("durable: %s\n", env->durable ? "yes"
                                         : "NO (fsync or "
                                           "synchronous_commit off)");
    fflush(stdout);
    return 0;
}

int
bench_db_setup(bench_env *env, const char *dsn)
{
    env->admin = bench_db_connect(dsn, "loom-bench");
    if (env->admin == NULL)
        return -1;
    snprintf(env->dbname, sizeof env->dbname, "loom_bench_%ld",
             (long) getpid());
    env->conninfo = db_conninfo_with(dsn, env->dbname);
    return env->conninfo != NULL ? 0 : -1;
}

/* Drops the scratch database if it exists; 0 or -1 (printed). */
static int
db_drop(bench_env *env)
{
    char sql[128];

    PQfinish(env->scratch);
    env->scratch = NULL;
    if (!env->created)
        return 0;
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)",
             env->dbname);
    bench_progress("dropping scratch database %s", env->dbname);
    env->created = 0;
    return bench_db_exec(env->admin, sql);
}

int
bench_db_fresh(bench_env *env)
{
    if (db_drop(env) != 0 || db_create(env) != 0 || db_migrate(env) != 0)
        return -1;
    env->scratch = bench_db_connect(env->conninfo, "loom-bench");
    if (env->scratch == NULL ||
        bench_db_exec(env->scratch, db_raw_schema_sql) != 0)
        return -1;
    if (env->shown)
        return 0;
    env->shown = 1;
    return db_settings(env);
}

void
bench_db_teardown(bench_env *env)
{
    if (env->admin != NULL)
        db_drop(env);
    PQfinish(env->scratch);
    env->scratch = NULL;
    PQfinish(env->admin);
    env->admin = NULL;
    loom_free(env->conninfo); /* from loom__buf_take() */
    env->conninfo = NULL;
}

void
bench_db_checkpoint(bench_env *env)
{
    PGresult *r;

    if (!db_checkpoint_ok)
        return;
    r = PQexec(env->scratch, "CHECKPOINT");
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        bench_progress("CHECKPOINT refused (%s); runs may include "
                       "checkpoint work",
                       PQresultErrorField(r, PG_DIAG_SQLSTATE));
        db_checkpoint_ok = 0;
    }
    PQclear(r);
}
