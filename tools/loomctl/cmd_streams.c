/*
 * loomctl streams [--category C] [--limit N] [--after NAME]: the stream
 * catalog (loom.streams), by name, one keyset page at a time. Stream
 * names are data: they only ever travel as query parameters.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "loomctl.h"
#include "pgwire.h"
#include "table.h"

enum { STR_CATEGORY = 1, STR_LIMIT, STR_AFTER };

static const ctl_opt str_opts[] = {
    {"--category", 1, STR_CATEGORY},
    {"--limit", 1, STR_LIMIT},
    {"--after", 1, STR_AFTER},
    {NULL, 0, 0},
};

static const ctl_col str_cols[] = {
    {"STREAM", "stream", CTL_COL_TEXT, 0},
    {"CATEGORY", "category", CTL_COL_TEXT, 0},
    {"VERSION", "version", CTL_COL_NUM, 0},
    {"EVENTS", "events", CTL_COL_NUM, 0},
    {"CREATED", "created_at", CTL_COL_TEXT, CTL_COL_KEEP},
};

/*
 * A NULL parameter switches its condition off; PQexecParams plans the
 * unnamed statement with the actual values, so "$1 IS NULL" folds away
 * and the (category, stream) index or the primary key serves the rest.
 * Versions start at 0 and have no gaps, so a stream holds version + 1
 * events.
 */
static const char str_sql[] = "SELECT stream, category, version, version + 1, "
                              "to_char(created_at AT TIME ZONE 'UTC', "
                              "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') "
                              "FROM loom.streams "
                              "WHERE ($1::text IS NULL OR category = $1::text) "
                              "AND ($2::text IS NULL OR stream > $2::text) "
                              "ORDER BY stream LIMIT $3::bigint";

typedef struct str_args {
    const char *category;
    const char *after;
    int64_t limit;
} str_args;

static int
str_parse(ctl *c, int argc, char **argv, str_args *sa)
{
    const char *val;
    ctl_args a;
    int r, rc = CTL_OK;

    sa->category = sa->after = NULL;
    sa->limit = 50;
    ctl_args_init(&a, argc, argv);
    while (rc == CTL_OK &&
           (r = ctl_args_next(c, &a, str_opts, &val)) != CTL_ARG_END) {
        if (r == CTL_ARG_BAD)
            return CTL_USAGE;
        if (r == CTL_ARG_POS)
            return ctl_usage_error(c, "unexpected argument \"%s\"", val);
        if (r == STR_CATEGORY) {
            sa->category = val;
            rc = ctl_check_category(c, "--category", val);
        } else if (r == STR_LIMIT) {
            rc = ctl_parse_i64(c, "--limit", val, 1, 100000, &sa->limit);
        } else if (r == STR_AFTER) {
            sa->after = val;
            if (!loom__utf8_valid(val, strlen(val)))
                rc = ctl_usage_error(c, "--after: not valid UTF-8");
        }
    }
    return rc;
}

static int
str_print(const ctl *c, const PGresult *r)
{
    ctl_table *t = ctl_table_new(str_cols, 5, c->json, stdout);
    int rows = PQntuples(r), rc = CTL_OK;

    if (t == NULL) {
        ctl_fail("out of memory");
        return CTL_ERR;
    }
    for (int i = 0; i < rows; i++) {
        for (int j = 0; j < 5; j++)
            ctl_table_celln(t, PQgetvalue(r, i, j),
                            (size_t) PQgetlength(r, i, j));
    }
    if (ctl_table_flush(t) != 0) {
        ctl_fail("printing streams: out of memory or a write error");
        rc = CTL_ERR;
    }
    if (rc == CTL_OK && rows == 0 && !c->json)
        printf("(no streams)\n");
    ctl_table_free(t);
    return rc;
}

int
ctl_cmd_streams(ctl *c, int argc, char **argv)
{
    char limit[24];
    const char *params[3];
    str_args sa;
    PGconn *pg;
    PGresult *r;
    int rc;

    rc = str_parse(c, argc, argv, &sa);
    if (rc != CTL_OK)
        return rc;
    pg = ctl_pg_open(c);
    if (pg == NULL)
        return CTL_ERR;
    snprintf(limit, sizeof limit, "%" PRId64, sa.limit);
    params[0] = sa.category;
    params[1] = sa.after;
    params[2] = limit;
    r = ctl_pg_exec(pg, "listing streams", str_sql, 3, params);
    rc = r != NULL ? str_print(c, r) : CTL_ERR;
    PQclear(r);
    PQfinish(pg);
    return rc;
}
