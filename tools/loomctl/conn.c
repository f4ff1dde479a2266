/*
 * Connections: the event store (reads, migrations) and a plain libpq
 * connection for the catalog queries the store's API does not cover
 * (stream listings, statistics, cursor look-ups). Both use the same
 * connection string. Errors name the database, never its password.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "loom/alloc.h"
#include "loomctl.h"
#include "redact.h"

const char *
ctl_conninfo(const ctl *c)
{
    const char *env;

    if (c->db != NULL)
        return c->db;
    env = getenv("LOOM_DATABASE_URL");
    return env != NULL && env[0] != '\0' ? env : NULL;
}

/* libpq expands a dbname that looks like a connection string (a URL, or
 * with '='); anything else is just the database's name. */
int
ctl_conninfo_is_string(const char *conninfo)
{
    return strchr(conninfo, '=') != NULL ||
           strncmp(conninfo, "postgresql://", 13) == 0 ||
           strncmp(conninfo, "postgres://", 11) == 0;
}

/* Appends " key=value" to out, within len. */
static void
conn_append(char *out, size_t len, const char *key, const char *val)
{
    size_t used = strlen(out);

    if (used < len)
        snprintf(out + used, len - used, "%s%s=%s", used ? " " : "", key, val);
}

/*
 * libpq parses both forms (URL and key=value), so the description shows
 * the settings that pick the server, whatever form was given. A string
 * libpq cannot parse is not shown at all: it might hold a password in a
 * place the parser did not recognise.
 */
void
ctl_conninfo_describe(const char *conninfo, char *out, size_t len)
{
    static const char *const keys[] = {"host", "hostaddr", "port",
                                       "user", "dbname",   NULL};
    PQconninfoOption *opts;
    char *err = NULL;
    int password = 0;

    out[0] = '\0';
    if (conninfo == NULL) {
        snprintf(out, len, "libpq defaults (PGHOST, PGDATABASE, ...)");
        return;
    }
    if (!ctl_conninfo_is_string(conninfo)) {
        snprintf(out, len, "dbname=%s", conninfo);
        return;
    }
    opts = PQconninfoParse(conninfo, &err);
    if (opts == NULL) {
        snprintf(out, len, "(unparsable connection string)");
        PQfreemem(err);
        return;
    }
    for (const char *const *k = keys; *k != NULL; k++) {
        for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
            if (strcmp(o->keyword, *k) == 0 && o->val != NULL &&
                o->val[0] != '\0')
                conn_append(out, len, *k, o->val);
        }
    }
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++)
        password |= strcmp(o->keyword, "password") == 0 && o->val != NULL;
    if (password)
        conn_append(out, len, "password", "***");
    if (out[0] == '\0')
        snprintf(out, len, "libpq defaults (PGHOST, PGDATABASE, ...)");
    PQconninfoFree(opts);
}

/* Checks the connection string before connecting, for a clear message:
 * libpq's own parse errors otherwise arrive as connection failures. */
static int
conn_check(const char *conninfo)
{
    PQconninfoOption *opts;
    char *err = NULL;

    if (conninfo == NULL || !ctl_conninfo_is_string(conninfo))
        return CTL_OK;
    opts = PQconninfoParse(conninfo, &err);
    if (opts == NULL) {
        loom__buf why = LOOM__BUF_INIT;
        /* libpq quotes the piece it stumbled on: maybe the password. */
        loom__redact_message(err != NULL ? err : "out of memory", conninfo,
                             &why);
        while (why.len > 0 && why.data[why.len - 1] == '\n')
            why.data[--why.len] = '\0';
        ctl_fail("the connection string (--db or LOOM_DATABASE_URL) is "
                 "invalid: %s; give a URL such as "
                 "postgresql://user@host/dbname or key=value settings",
                 loom__buf_str(&why));
        loom__buf_free(&why);
        PQfreemem(err);
        return CTL_ERR;
    }
    PQconninfoFree(opts);
    return CTL_OK;
}

/* ------------------------------------------------------------------ */
/* --role for connections the library opens from a connection string   */

void
ctl_role_option(loom__buf *b, const char *role)
{
    /* The server splits `options` at white space and takes the character
     * after a backslash as it is (pg_split_opts()). */
    loom__buf_puts(b, "-c role=");
    for (; *role != '\0'; role++) {
        if (*role == ' ' || *role == '\t' || *role == '\n' || *role == '\r' ||
            *role == '\f' || *role == '\v' || *role == '\\')
            loom__buf_putc(b, '\\');
        loom__buf_putc(b, *role);
    }
}

/* Appends " key='value'": libpq reads a quoted value up to the closing
 * quote, a backslash keeping the next character, so any value survives. */
static void
conn_put_setting(loom__buf *b, const char *key, const char *val)
{
    loom__buf_printf(b, "%s%s='", b->len > 0 ? " " : "", key);
    for (; *val != '\0'; val++) {
        if (*val == '\'' || *val == '\\')
            loom__buf_putc(b, '\\');
        loom__buf_putc(b, *val);
    }
    loom__buf_putc(b, '\'');
}

/* The settings libpq reads from `conninfo`: a bare database name is
 * dbname=NAME; NULL and "" are none (libpq's environment and defaults). */
static PQconninfoOption *
conn_parse(const char *conninfo)
{
    PQconninfoOption *opts;

    if (conninfo == NULL || ctl_conninfo_is_string(conninfo))
        return PQconninfoParse(conninfo != NULL ? conninfo : "", NULL);
    opts = PQconninfoParse("", NULL);
    for (PQconninfoOption *o = opts; o != NULL && o->keyword != NULL; o++) {
        if (strcmp(o->keyword, "dbname") == 0) {
            /* libpq frees each value with free() in PQconninfoFree(). */
            o->val = strdup(conninfo);
            if (o->val == NULL) {
                PQconninfoFree(opts);
                return NULL;
            }
        }
    }
    return opts;
}

int
ctl_conninfo_with_role(const char *conninfo, const char *role, char **out)
{
    loom__buf b = LOOM__BUF_INIT, options = LOOM__BUF_INIT;
    PQconninfoOption *opts;
    const char *env = getenv("PGOPTIONS");

    *out = NULL;
    if (role == NULL) {
        if (conninfo == NULL)
            return CTL_OK;
        loom__buf_puts(&b, conninfo);
        if ((*out = loom__buf_take(&b)) == NULL)
            goto nomem;
        return CTL_OK;
    }
    if (conn_check(conninfo) != CTL_OK)
        return CTL_ERR;
    opts = conn_parse(conninfo);
    if (opts == NULL)
        goto nomem;
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
        if (o->val == NULL || o->val[0] == '\0')
            continue;
        if (strcmp(o->keyword, "options") == 0)
            loom__buf_printf(&options, "%s ", o->val);
        else
            conn_put_setting(&b, o->keyword, o->val);
    }
    PQconninfoFree(opts);
    /* Given options replace $PGOPTIONS: keep what it asked for. */
    if (options.len == 0 && env != NULL && env[0] != '\0')
        loom__buf_printf(&options, "%s ", env);
    ctl_role_option(&options, role);
    conn_put_setting(&b, "options", loom__buf_str(&options));
    if (options.failed)
        b.failed = 1;
    loom__buf_free(&options);
    if ((*out = loom__buf_take(&b)) == NULL)
        goto nomem;
    return CTL_OK;
nomem:
    loom__buf_free(&b);
    ctl_fail("building the connection string for --role %s: out of memory",
             role != NULL ? role : "");
    return CTL_ERR;
}

loom_store *
ctl_store_open(const ctl *c, loom_migrate_mode mode)
{
    loom_store_config cfg = LOOM_STORE_CONFIG_INIT;
    loom_store *s = NULL;
    char err[1024], where[512];
    loom_err rc;

    cfg.conninfo = ctl_conninfo(c);
    cfg.application_name = "loomctl";
    cfg.migrate = mode;
    cfg.role = c->role;
    /* Read whatever a writer with a higher limit stored. */
    cfg.max_stream_name = LOOM_MAX_STREAM_NAME_LIMIT;
    if (conn_check(cfg.conninfo) != CTL_OK)
        return NULL;
    rc = loom_store_open(&s, &cfg, err, sizeof err);
    if (rc != LOOM_OK) {
        ctl_conninfo_describe(cfg.conninfo, where, sizeof where);
        ctl_fail("opening the event store at %s: %s", where,
                 err[0] != '\0' ? err : loom_strerror(rc));
        return NULL;
    }
    return s;
}

/* --role on a plain connection: one session, no reconnection, so SET
 * ROLE is enough (the store sends it at connection start instead). */
static int
conn_set_role(PGconn *pg, const char *role)
{
    char *id = PQescapeIdentifier(pg, role, strlen(role));
    char sql[200];
    PGresult *r;
    int rc = CTL_OK;

    if (id == NULL || strlen(id) > sizeof sql - 16) {
        ctl_fail("--role %s: not a valid role name", role);
        PQfreemem(id);
        return CTL_ERR;
    }
    snprintf(sql, sizeof sql, "SET ROLE %s", id);
    PQfreemem(id);
    r = PQexec(pg, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        ctl_fail("--role %s: %s", role,
                 PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY)
                     ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY)
                     : PQerrorMessage(pg));
        rc = CTL_ERR;
    }
    PQclear(r);
    return rc;
}

PGconn *
ctl_pg_open(const ctl *c)
{
    const char *keys[] = {"dbname", "fallback_application_name",
                          "client_encoding", NULL};
    const char *vals[] = {NULL, "loomctl", "UTF8", NULL};
    const char *conninfo = ctl_conninfo(c);
    char where[512];
    PGconn *pg;

    if (conn_check(conninfo) != CTL_OK)
        return NULL;
    /* dbname is expanded as a connection string; "" means defaults. */
    vals[0] = conninfo != NULL ? conninfo : "";
    pg = PQconnectdbParams(keys, vals, 1);
    if (pg == NULL) {
        ctl_fail("connecting to PostgreSQL: out of memory");
        return NULL;
    }
    if (PQstatus(pg) != CONNECTION_OK) {
        ctl_conninfo_describe(conninfo, where, sizeof where);
        loom__buf why = LOOM__BUF_INIT;
        loom__redact_message(PQerrorMessage(pg), conninfo, &why);
        ctl_fail("cannot connect to PostgreSQL at %s: %s (check --db or "
                 "LOOM_DATABASE_URL)",
                 where, loom__buf_str(&why));
        loom__buf_free(&why);
        PQfinish(pg);
        return NULL;
    }
    if (c->role != NULL && conn_set_role(pg, c->role) != CTL_OK) {
        PQfinish(pg);
        return NULL;
    }
    return pg;
}

PGresult *
ctl_pg_exec(PGconn *pg, const char *what, const char *sql, int nparams,
            const char *const *params)
{
    PGresult *r = PQexecParams(pg, sql, nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    const char *state, *msg;

    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
        return r;
    state = r != NULL ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    msg = r != NULL ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (msg == NULL)
        msg = PQerrorMessage(pg);
    /* Undefined table, schema or function: the schema is not there. */
    if (state != NULL &&
        (strcmp(state, "42P01") == 0 || strcmp(state, "3F000") == 0 ||
         strcmp(state, "42883") == 0))
        ctl_fail("%s in database \"%s\": %s (the Eventloom schema is missing "
                 "or old: run `loomctl migrate`)",
                 what, PQdb(pg), msg);
    else
        ctl_fail_sql(state, "%s in database \"%s\": %s", what, PQdb(pg), msg);
    PQclear(r);
    return NULL;
}

int
ctl_registry(ctl *c)
{
    loom_err rc;

    if (c->reg == NULL && (rc = loom_registry_new(&c->reg)) != LOOM_OK) {
        ctl_fail("creating the type registry: %s", loom_strerror(rc));
        return CTL_ERR;
    }
    for (size_t i = 0; i < c->ntypes; i++) {
        char path[4096];
        /* dlopen() searches the library path for a bare name; the user
         * means a file, so "types.so" is "./types.so". */
        snprintf(path, sizeof path, "%s%s",
                 strchr(c->types[i], '/') != NULL ? "" : "./", c->types[i]);
        rc = loom_registry_load(c->reg, path);
        if (rc == LOOM_OK)
            continue;
        if (rc == LOOM_ENOTFOUND) {
            /* The registry does not say why; dlopen() or dlsym() does. */
            const char *why = dlerror();
            ctl_fail("--types %s: cannot load it or it lacks %s(): %s",
                     c->types[i], LOOM_REGISTER_TYPES_SYMBOL,
                     why != NULL ? why : "no details");
        } else {
            ctl_fail("--types %s: %s() failed: %s", c->types[i],
                     LOOM_REGISTER_TYPES_SYMBOL, loom_strerror(rc));
        }
        return CTL_ERR;
    }
    return CTL_OK;
}
