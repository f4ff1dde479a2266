/*
 * Projections (loom/projection.h): checking a definition, registering it,
 * and the live runner, a transactional subscription to all events whose
 * transactions write the model's schema (search_path) and advance
 * "projection:<name>". The rebuild is in rebuild.c.
 */
#include <stdio.h>
#include <string.h>

#include "log_int.h"
#include "loom/alloc.h"
#include "loom/subscription.h"
#include "pgwire.h"
#include "projection_int.h"
#include "sub_int.h"

struct loom_projection {
    loom_subscription *sub;
};

/* [a-z0-9_]{1,max}; `ident`: not starting with a digit. */
static int
proj_word_ok(const char *p, size_t max, int ident)
{
    size_t n;

    if (p == NULL || (n = strlen(p)) == 0 || n > max)
        return 0;
    if (ident && p[0] >= '0' && p[0] <= '9')
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= '0' && p[i] <= '9') ||
              p[i] == '_'))
            return 0;
    return 1;
}

/* Whether `t` can be an event's type name (eventstore/append.c's rule):
 * one that cannot would never match an event. */
static int
proj_type_ok(const char *t)
{
    size_t n;

    if (t == NULL || t[0] == '\0')
        return 0;
    n = strnlen(t, LOOM_MAX_TYPE_NAME + 1);
    return n <= LOOM_MAX_TYPE_NAME && loom__utf8_valid(t, n);
}

/* Whether d names one event type twice (a handful of types: quadratic is
 * fine). */
static int
proj_types_repeat(const loom_projection_def *d)
{
    size_t n = d->batch ? d->n_types : d->n_handlers;

    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            if (strcmp(d->batch ? d->types[i] : d->handlers[i].type,
                       d->batch ? d->types[j] : d->handlers[j].type) == 0)
                return 1;
    return 0;
}

loom_err
loom__proj_check(const loom_projection_def *d, const char **why)
{
    *why = NULL;
    if (d == NULL)
        *why = "no projection definition (NULL)";
    else if (!proj_word_ok(d->name, LOOM_MAX_PROJECTION_NAME, 0))
        *why = "the projection name must be 1 to 40 bytes of [a-z0-9_]";
    else if (d->schema != NULL &&
             (!proj_word_ok(d->schema, LOOM_MAX_PROJECTION_SCHEMA, 1) ||
              strncmp(d->schema, "pg_", 3) == 0 ||
              strcmp(d->schema, "public") == 0 ||
              strcmp(d->schema, "loom") == 0 ||
              strcmp(d->schema, "information_schema") == 0))
        *why = "the schema must be 1 to 54 bytes of [a-z0-9_], not starting "
               "with a digit, and not pg_*, public, loom or "
               "information_schema (a rebuild replaces the whole schema)";
    else if ((d->n_handlers > 0) == (d->batch != NULL))
        *why = "give either handlers or a batch handler, not both";
    else if (d->n_handlers > 0 && d->handlers == NULL)
        *why = "n_handlers is set but handlers is NULL";
    else if (d->batch != NULL && (d->n_types == 0 || d->types == NULL))
        *why = "a batch handler needs its event types";
    else if (d->schema != NULL && d->setup == NULL)
        *why = "a PostgreSQL read model needs setup() to create its tables";
    else if (d->schema == NULL && d->reset == NULL)
        *why = "an in-memory read model needs reset() to empty it";
    if (*why == NULL && d != NULL) {
        for (size_t i = 0; i < d->n_handlers; i++)
            if (!proj_type_ok(d->handlers[i].type) || d->handlers[i].fn == NULL)
                *why = "every handler needs a type (1 to 255 bytes of UTF-8, "
                       "as event types are) and a function";
        for (size_t i = 0; d->batch != NULL && i < d->n_types; i++)
            if (!proj_type_ok(d->types[i]))
                *why = "every type must be 1 to 255 bytes of UTF-8, as event "
                       "types are";
        if (*why == NULL && proj_types_repeat(d))
            *why = "a type is listed twice: each event type has one handler "
                   "(the second would never run)";
    }
    return *why == NULL ? LOOM_OK : LOOM_EINVAL;
}

void
loom__proj_names_init(loom__proj_names *n, const loom_projection_def *d)
{
    snprintf(n->checkpoint, sizeof n->checkpoint, "projection:%s", d->name);
    snprintf(n->rebuild_cp, sizeof n->rebuild_cp, "projection:%s:rebuild",
             d->name);
    snprintf(n->rebuild_schema, sizeof n->rebuild_schema, "%s__rebuild",
             d->schema ? d->schema : "");
    snprintf(n->appname, sizeof n->appname, "eventloom-projection:%s", d->name);
    snprintf(n->rebuild_app, sizeof n->rebuild_app, "eventloom-rebuild:%s",
             d->name);
}

const char **
loom__proj_types(const loom_projection_def *d, size_t *n)
{
    size_t count = d->batch ? d->n_types : d->n_handlers;
    const char **t = loom_malloc((count ? count : 1) * sizeof *t);

    *n = 0;
    if (t == NULL)
        return NULL;
    for (size_t i = 0; i < count; i++)
        t[i] = d->batch ? d->types[i] : d->handlers[i].type;
    *n = count;
    return t;
}

loom_err
loom__proj_dispatch(const loom_projection_def *d, loom_tx *tx,
                    const loom_event *const *events, size_t n)
{
    if (d->batch != NULL)
        return d->batch(tx, events, n, d->arg);
    for (size_t i = 0; i < n; i++) {
        for (size_t h = 0; h < d->n_handlers; h++) {
            if (strcmp(d->handlers[h].type, events[i]->type) == 0) {
                loom_err rc = d->handlers[h].fn(tx, events[i], d->arg);
                if (rc != LOOM_OK)
                    return rc;
                break;
            }
        }
    }
    return LOOM_OK;
}

loom_err
loom__proj_search_path(loom_tx *tx, const char *schema)
{
    char quoted[LOOM_MAX_PROJECTION_SCHEMA + 16];
    const char *v[1] = {quoted};

    /* Checked names need no quoting; quotes keep them literal anyway. */
    snprintf(quoted, sizeof quoted, "\"%s\"", schema);
    return loom_tx_exec(tx, "SELECT set_config('search_path', $1, true)", 1, v);
}

static const loom__stmt proj_lookup_stmt = {
    LOOM__STMT_PROJ_LOOKUP,
    "loom_proj_lookup",
    "SELECT coalesce(p.schema_name, ''), p.schema_name IS NULL, "
    "EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = p.schema_name) "
    "FROM loom.projections p WHERE p.name = $1",
    1,
    {LOOM__OID_TEXT}};

static const loom__stmt proj_owner_stmt = {
    LOOM__STMT_PROJ_OWNER,
    "loom_proj_owner",
    "SELECT coalesce((SELECT p.name FROM loom.projections p "
    "WHERE p.schema_name = $1 ORDER BY p.name LIMIT 1), '')",
    1,
    {LOOM__OID_TEXT}};

/* CREATE SCHEMA kept finding d's schema there while no row of d's name
 * held it: not a race between d's runners (the winner's row commits with
 * its schema, and the next look finds it) but a schema that is someone
 * else's. Says whose. */
static loom_err
proj_schema_taken(loom_store *s, const loom_projection_def *d)
{
    const char *v[1] = {d->schema};
    int len[1] = {(int) strlen(d->schema)};
    PGresult *r = NULL;
    char owner[LOOM_MAX_PROJECTION_NAME + 1] = "";
    loom_err rc = loom__store_begin(s);

    if (rc == LOOM_OK)
        rc = loom__store_query(s, &proj_owner_stmt, v, len, &r);
    if (rc != LOOM_OK)
        return rc;
    if (PQntuples(r) == 1)
        snprintf(owner, sizeof owner, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    if (owner[0] != '\0')
        return loom__store_fail(s, LOOM_ECONFLICT,
                                "projection \"%s\": schema \"%s\" is the "
                                "model of projection \"%s\": give \"%s\" "
                                "a schema of its own",
                                d->name, d->schema, owner, d->name);
    return loom__store_fail(s, LOOM_ECONFLICT,
                            "projection \"%s\": schema \"%s\" already "
                            "exists and is no projection's model: give the "
                            "projection another schema, or drop that one if "
                            "it is a leftover",
                            d->name, d->schema);
}

/* Creates the schema, runs setup() in it, and starts the checkpoint from
 * the beginning: the model is empty. One transaction. */
static loom_err
proj_create(loom_store *s, const loom_projection_def *d,
            const loom__proj_names *names, int registered)
{
    loom_tx tx;
    loom_err rc;
    char ddl[LOOM_MAX_PROJECTION_SCHEMA + 32];
    const char *reg[3] = {d->name, d->schema, names->checkpoint};

    loom__tx_init(&tx);
    snprintf(ddl, sizeof ddl, "CREATE SCHEMA \"%s\"", d->schema);
    rc = loom_tx_exec(&tx,
                      registered
                          ? "UPDATE loom.projections SET schema_name = $2 "
                            "WHERE name = $1 AND checkpoint = $3"
                          : "INSERT INTO loom.projections (name, "
                            "schema_name, checkpoint) VALUES ($1, $2, $3)",
                      3, reg);
    if (rc == LOOM_OK)
        rc = loom_tx_exec(&tx, ddl, 0, NULL);
    if (rc == LOOM_OK)
        rc = loom__proj_search_path(&tx, d->schema);
    if (rc == LOOM_OK)
        rc = d->setup(&tx, d->arg);
    if (rc == LOOM_OK)
        rc = loom_tx_exec(
            &tx,
            "INSERT INTO loom.checkpoints (name, tx, position, version) "
            "VALUES ($1, '0', 0, -1) ON CONFLICT (name) DO UPDATE SET "
            "tx = '0', position = 0, version = -1, updated_at = now()",
            1, (const char *const[]){names->checkpoint});
    if (rc == LOOM_OK)
        rc = loom__store_run_tx(s, &tx);
    else
        loom__store_fail(s, rc,
                         "projection \"%s\": setup() returned %s; nothing "
                         "was created",
                         d->name, loom_err_name(rc));
    loom__tx_free(&tx);
    return rc;
}

loom_err
loom__proj_register(loom_store *s, const loom_projection_def *d,
                    const loom__proj_names *names)
{
    int taken = 0; /* the last try found the schema there, and no row */

    for (int attempt = 0; attempt < 3; attempt++) {
        const char *v[1] = {d->name};
        int len[1] = {(int) strlen(d->name)};
        PGresult *r = NULL;
        loom_err rc = loom__store_begin(s);
        int found, memory = 0, exists = 0;
        const char *schema = "";

        if (rc == LOOM_OK)
            rc = loom__store_query(s, &proj_lookup_stmt, v, len, &r);
        if (rc != LOOM_OK)
            return rc;
        found = PQntuples(r) == 1;
        if (found) {
            schema = PQgetvalue(r, 0, 0);
            memory = PQgetvalue(r, 0, 1)[0] != 0;
            exists = PQgetvalue(r, 0, 2)[0] != 0;
        }
        if (found && (memory != (d->schema == NULL) ||
                      (d->schema != NULL && strcmp(schema, d->schema) != 0))) {
            rc = loom__store_fail(
                s, LOOM_ECONFLICT,
                "projection \"%s\" is registered with %s%s%s, not %s%s%s: "
                "give it another name, or delete its row from "
                "loom.projections",
                d->name, memory ? "an in-memory model" : "schema \"",
                memory ? "" : schema, memory ? "" : "\"",
                d->schema ? "schema \"" : "an in-memory model",
                d->schema ? d->schema : "", d->schema ? "\"" : "");
            PQclear(r);
            return rc;
        }
        PQclear(r);
        if (d->schema == NULL) {
            loom_tx tx;
            const char *reg[2] = {d->name, names->checkpoint};
            if (found)
                return LOOM_OK;
            loom__tx_init(&tx);
            rc = loom_tx_exec(&tx,
                              "INSERT INTO loom.projections (name, "
                              "checkpoint) VALUES ($1, $2) ON CONFLICT "
                              "(name) DO NOTHING",
                              2, reg);
            if (rc == LOOM_OK)
                rc = loom__store_run_tx(s, &tx);
            loom__tx_free(&tx);
            return rc;
        }
        if (found && exists)
            return LOOM_OK;
        rc = proj_create(s, d, names, found);
        /* Lost a race with another runner creating it: look again. */
        if (rc != LOOM_EDB || (strcmp(loom_store_sqlstate(s), "23505") != 0 &&
                               strcmp(loom_store_sqlstate(s), "42P06") != 0))
            return rc;
        taken = !found && strcmp(loom_store_sqlstate(s), "42P06") == 0;
    }
    if (taken)
        return proj_schema_taken(s, d);
    return loom__store_fail(s, LOOM_ECONFLICT,
                            "projection \"%s\": its schema keeps being "
                            "created and dropped by someone else",
                            d->name);
}

/* The handlers get the definition, not the runner: a read in flight when
 * the runner is closed is still delivered (graceful stop) after the
 * runner's memory is gone, and the definition outlives both. */
static loom_err
proj_on_tx(loom_tx *tx, const loom_event *const *events, size_t n, void *arg)
{
    return loom__proj_dispatch(arg, tx, events, n);
}

static loom_err
proj_on_events(const loom_event *const *events, size_t n, void *arg)
{
    return loom__proj_dispatch(arg, NULL, events, n);
}

/* Opens a short-lived store to register the projection (blocking). */
static loom_err
proj_prepare(const loom_projection_def *def, const loom_projection_options *opt,
             const loom__proj_names *names)
{
    loom_store_config sc = LOOM_STORE_CONFIG_INIT;
    loom_store *s = NULL;
    char err[512];
    loom_err rc;

    sc.conninfo = opt->conninfo;
    sc.application_name = names->appname;
    rc = loom_store_open(&s, &sc, err, sizeof err);
    if (rc == LOOM_OK) {
        rc = loom__proj_register(s, def, names);
        if (rc != LOOM_OK)
            snprintf(err, sizeof err, "%s", loom_store_errmsg(s));
    }
    if (rc != LOOM_OK)
        loom__log(LOOM_LOG_ERROR, "projection \"%s\" cannot start: %s",
                  def->name, err);
    loom_store_close(s);
    return rc;
}

loom_err
loom_projection_start(loom_runtime *rt, const loom_projection_def *def,
                      const loom_projection_options *opt, loom_projection **out)
{
    static const loom_projection_options defaults =
        LOOM_PROJECTION_OPTIONS_INIT;
    loom_subscription_config cfg = LOOM_SUBSCRIPTION_CONFIG_INIT;
    loom__sub_extra extra = {NULL, NULL, 0};
    loom__proj_names names;
    loom_projection *p;
    const char *why;
    const char **types;
    size_t n_types;
    loom_err rc;

    if (out != NULL)
        *out = NULL;
    if (rt == NULL || out == NULL)
        return LOOM_EINVAL;
    if (loom__proj_check(def, &why) != LOOM_OK) {
        loom__log(LOOM_LOG_ERROR, "projection \"%s\": %s",
                  def && def->name ? def->name : "?", why);
        return LOOM_EINVAL;
    }
    if (opt == NULL)
        opt = &defaults;
    if (opt->batch > LOOM_DEFAULT_MAX_READ)
        return LOOM_EINVAL;
    if (rt->stopping)
        return LOOM_EBUSY;
    loom__proj_names_init(&names, def);
    rc = proj_prepare(def, opt, &names);
    if (rc != LOOM_OK)
        return rc;
    p = loom_malloc(sizeof *p);
    types = loom__proj_types(def, &n_types);
    if (p == NULL || types == NULL) {
        loom_free(p);
        loom_free(types);
        return LOOM_ENOMEM;
    }
    p->sub = NULL;
    cfg.name = names.checkpoint;
    cfg.source = LOOM_SUB_ALL;
    cfg.types = types;
    cfg.n_types = n_types;
    cfg.batch = opt->batch;
    cfg.conninfo = opt->conninfo;
    cfg.max_attempts = opt->max_attempts;
    cfg.horizon_warn_ms = opt->horizon_warn_ms;
    extra.appname = names.appname;
    extra.search_path = def->schema;
    if (def->schema == NULL) {
        extra.volatile_cursor = 1;
        def->reset(def->arg);
        rc = loom__subscribe(rt, &cfg, proj_on_events, NULL, (void *) def,
                             &extra, &p->sub);
    } else {
        char quoted[LOOM_MAX_PROJECTION_SCHEMA + 3];
        snprintf(quoted, sizeof quoted, "\"%s\"", def->schema);
        extra.search_path = quoted;
        rc = loom__subscribe(rt, &cfg, NULL, proj_on_tx, (void *) def, &extra,
                             &p->sub);
    }
    loom_free(types);
    if (rc != LOOM_OK) {
        loom_free(p);
        return rc;
    }
    *out = p;
    return LOOM_OK;
}

void
loom_projection_close(loom_projection *p)
{
    if (p == NULL)
        return;
    loom_subscription_close(p->sub);
    loom_free(p);
}
