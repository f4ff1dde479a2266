/*
 * loomctl projection list|status|rebuild. This file dispatches and lists;
 * the facts come from proj_facts.c, status is proj_status.c and rebuild
 * proj_rebuild.c.
 */
#include <stdio.h>

#include "json.h"
#include "proj.h"
#include "stats.h"
#include "table.h"

enum { PJ_LIST, PJ_STATUS, PJ_REBUILD };
enum { PJ_OPT_PLUGIN = 1, PJ_OPT_RESTART, PJ_OPT_BATCH };

static const char *const pj_subs[] = {"list", "status", "rebuild", NULL};

/* Every subcommand's options, to find the subcommand among them. */
static const ctl_opt pj_any_opts[] = {
    {"--plugin", 1, PJ_OPT_PLUGIN},
    {"--restart", 0, PJ_OPT_RESTART},
    {"--batch", 1, PJ_OPT_BATCH},
    {NULL, 0, 0},
};

static const ctl_col pj_cols[] = {
    {"NAME", "name", CTL_COL_TEXT, 0},
    {"MODEL", "model", CTL_COL_TEXT, 0},
    {"GEN", "generation", CTL_COL_NUM, 0},
    {"POSITION", "checkpoint_position", CTL_COL_NUM, 0},
    {"LAG", "lag_events", CTL_COL_NUM, 0},
    {"LAG SEC", "lag_seconds", CTL_COL_NUM, 0},
    {"PARKED", "parked", CTL_COL_NUM, 0},
    {"STATE", "state", CTL_COL_TEXT, CTL_COL_KEEP},
};

#define PJ_NTABLE (sizeof pj_cols / sizeof pj_cols[0])

static int
pj_list_table(const PGresult *r)
{
    ctl_table *t = ctl_table_new(pj_cols, PJ_NTABLE, 0, stdout);
    int rc = CTL_OK;

    if (t == NULL) {
        ctl_fail("printing projections: out of memory");
        return CTL_ERR;
    }
    for (int i = 0; i < PQntuples(r); i++) {
        char lag[32], state[96];
        ctl_proj_lag(r, i, lag);
        ctl_proj_state(r, i, state, sizeof state);
        ctl_table_cell(t, PQgetvalue(r, i, PJ_NAME));
        ctl_table_cell(t, PQgetisnull(r, i, PJ_SCHEMA)
                              ? "memory"
                              : PQgetvalue(r, i, PJ_SCHEMA));
        ctl_table_cell(t, PQgetvalue(r, i, PJ_GENERATION));
        ctl_table_cell(t, PQgetisnull(r, i, PJ_CP_POSITION)
                              ? "-"
                              : PQgetvalue(r, i, PJ_CP_POSITION));
        ctl_table_cell(t, lag);
        ctl_table_cell(t, PQgetvalue(r, i, PJ_LAG_SECONDS));
        ctl_table_cell(t, PQgetvalue(r, i, PJ_PARKED));
        ctl_table_cell(t, state);
    }
    if (ctl_table_flush(t) != 0) {
        ctl_fail("printing projections: out of memory or a write error");
        rc = CTL_ERR;
    }
    ctl_table_free(t);
    return rc;
}

static int
pj_list_json(const PGresult *r)
{
    loom__buf line = LOOM__BUF_INIT;
    int rc = CTL_OK;

    for (int i = 0; i < PQntuples(r) && rc == CTL_OK; i++) {
        loom__buf_reset(&line);
        loom__buf_putc(&line, '{');
        ctl_proj_json(&line, r, i);
        loom__buf_puts(&line, "}\n");
        if (line.failed) {
            ctl_fail("printing projections: out of memory");
            rc = CTL_ERR;
        } else {
            fwrite(line.data, 1, line.len, stdout);
        }
    }
    loom__buf_free(&line);
    return rc;
}

static int
pj_list(ctl *c, int argc, char **argv)
{
    const char *val;
    PGconn *pg;
    PGresult *r;
    ctl_args a;
    int opt, rc = CTL_OK;

    ctl_args_init(&a, argc, argv);
    while ((opt = ctl_args_next(c, &a, NULL, &val)) != CTL_ARG_END) {
        if (opt == CTL_ARG_BAD)
            return CTL_USAGE;
        return ctl_usage_error(c, "unexpected argument \"%s\"", val);
    }
    pg = ctl_pg_open(c);
    if (pg == NULL)
        return CTL_ERR;
    r = ctl_proj_query(pg, NULL);
    if (r == NULL)
        rc = CTL_ERR;
    else if (c->json)
        rc = pj_list_json(r);
    else if (PQntuples(r) > 0)
        rc = pj_list_table(r);
    else
        printf("(no projections registered; a projection registers when "
               "its runner or a rebuild first starts)\n");
    PQclear(r);
    PQfinish(pg);
    return rc;
}

int
ctl_cmd_projection(ctl *c, int argc, char **argv)
{
    int which, rc = ctl_args_sub(c, argc, argv, pj_any_opts, pj_subs, &which);

    if (rc != CTL_OK)
        return rc;
    switch (which) {
    case PJ_LIST:
        return pj_list(c, argc, argv);
    case PJ_STATUS:
        return ctl_proj_status(c, argc, argv);
    default:
        return ctl_proj_rebuild(c, argc, argv);
    }
}
