/*
 * loomctl stats: how big the store is, how busy, and what holds readers
 * back. Every figure comes from an index or the small streams table, so
 * stats stays cheap on a store of any size:
 *   - events, streams and categories are summed from loom.streams (a
 *     stream's version + 1 is its event count), not counted in
 *     loom.events;
 *   - events per second uses the commit-order index (see stats_rate.c);
 *   - the horizon and its holders come from pg_stat_activity and
 *     pg_prepared_xacts (see stats_horizon.c).
 * With --json everything is one JSON object on one line.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "json.h"
#include "loomctl.h"
#include "stats.h"
#include "table.h"

static const char st_totals_sql[] =
    "SELECT count(*), coalesce(sum(version + 1), 0), "
    "count(DISTINCT category), "
    "(SELECT coalesce(max(version), 0) FROM loom.schema_migrations) "
    "FROM loom.streams";

static const char st_categories_sql[] =
    "SELECT category, count(*), sum(version + 1) AS events "
    "FROM loom.streams GROUP BY category "
    "ORDER BY events DESC, category LIMIT 10";

static const char st_sizes_sql[] =
    "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
    "WHERE c.relnamespace = 'loom'::regnamespace "
    "AND c.relkind IN ('r', 'p', 'm') ORDER BY 2 DESC, 1";

static const ctl_col st_category_cols[] = {
    {"CATEGORY", "category", CTL_COL_TEXT, 0},
    {"STREAMS", "streams", CTL_COL_NUM, 0},
    {"EVENTS", "events", CTL_COL_NUM, 0},
};

static const ctl_col st_size_cols[] = {
    {"TABLE", "table", CTL_COL_TEXT, 0},
    {"SIZE", "size", CTL_COL_TEXT, 0},
    {"BYTES", "bytes", CTL_COL_NUM, 0},
};

int64_t
ctl_stats_i64(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col)
               ? 0
               : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

void
ctl_stats_bytes(int64_t n, char out[32])
{
    static const char *const units[] = {"B", "kB", "MB", "GB", "TB", "PB"};
    double v = (double) n;
    int u = 0;

    /* 1024-based units, spelled as pg_size_pretty() spells them. */
    while (v >= 1024 && u < 5) {
        v /= 1024;
        u++;
    }
    snprintf(out, 32, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
}

/* Prints a table section, or appends its rows to the JSON object as an
 * array of objects under `key`. */
static int
st_list(const ctl *c, loom__buf *json, const char *title, const char *key,
        const ctl_col *cols, size_t ncols, const PGresult *r, int bytes_col)
{
    ctl_table *t = ctl_table_new(cols, ncols, 0, stdout);
    int rc = CTL_OK;

    if (t == NULL)
        return CTL_ERR;
    if (c->json) {
        ctl_json_key(json, key);
        loom__buf_putc(json, '[');
    } else {
        printf("\n%s\n", title);
    }
    for (int i = 0; i < PQntuples(r); i++) {
        char size[32];
        if (c->json) {
            loom__buf_puts(json, i > 0 ? ",{" : "{");
            ctl_json_kstr(json, cols[0].key, PQgetvalue(r, i, 0));
            ctl_json_ki64(json, cols[bytes_col ? 2 : 1].key,
                          ctl_stats_i64(r, i, 1));
            if (!bytes_col)
                ctl_json_ki64(json, "events", ctl_stats_i64(r, i, 2));
            loom__buf_putc(json, '}');
            continue;
        }
        ctl_table_cell(t, PQgetvalue(r, i, 0));
        if (bytes_col) {
            ctl_stats_bytes(ctl_stats_i64(r, i, 1), size);
            ctl_table_cell(t, size);
            ctl_table_cell(t, PQgetvalue(r, i, 1));
        } else {
            ctl_table_cell(t, PQgetvalue(r, i, 1));
            ctl_table_cell(t, PQgetvalue(r, i, 2));
        }
    }
    if (c->json)
        loom__buf_putc(json, ']');
    else if (PQntuples(r) == 0)
        printf("(none)\n");
    else if (ctl_table_flush(t) != 0)
        rc = CTL_ERR;
    ctl_table_free(t);
    return rc;
}

static int
st_totals(PGconn *pg, const ctl *c, loom__buf *json)
{
    PGresult *r = ctl_pg_exec(pg, "counting streams", st_totals_sql, 0, NULL);

    if (r == NULL)
        return CTL_ERR;
    if (c->json) {
        ctl_json_ki64(json, "schema_version", ctl_stats_i64(r, 0, 3));
        ctl_json_ki64(json, "events", ctl_stats_i64(r, 0, 1));
        ctl_json_ki64(json, "streams", ctl_stats_i64(r, 0, 0));
        ctl_json_ki64(json, "categories", ctl_stats_i64(r, 0, 2));
    } else {
        printf("%-22s %s\n", "database", PQdb(pg));
        printf("%-22s %s\n", "schema version", PQgetvalue(r, 0, 3));
        printf("%-22s %s\n", "events", PQgetvalue(r, 0, 1));
        printf("%-22s %s\n", "streams", PQgetvalue(r, 0, 0));
        printf("%-22s %s\n", "categories", PQgetvalue(r, 0, 2));
    }
    PQclear(r);
    return CTL_OK;
}

/* Sizes: the total on the overview, then one row per table. */
static int
st_sizes(PGconn *pg, const ctl *c, loom__buf *json, const PGresult **keep)
{
    PGresult *r =
        ctl_pg_exec(pg, "measuring the loom tables", st_sizes_sql, 0, NULL);
    int64_t total = 0;
    char size[32];

    *keep = r;
    if (r == NULL)
        return CTL_ERR;
    for (int i = 0; i < PQntuples(r); i++)
        total += ctl_stats_i64(r, i, 1);
    ctl_stats_bytes(total, size);
    if (c->json)
        ctl_json_ki64(json, "size_bytes", total);
    else
        printf("%-22s %s (%" PRId64 " bytes, with indexes and TOAST)\n",
               "size of loom tables", size, total);
    return CTL_OK;
}

static int
st_rate(PGconn *pg, const ctl *c, loom__buf *json)
{
    int64_t n = 0;

    if (ctl_stats_last_minute(pg, &n) != CTL_OK)
        return CTL_ERR;
    if (c->json) {
        ctl_json_ki64(json, "events_last_minute", n);
        ctl_json_key(json, "events_per_second");
        loom__buf_printf(json, "%.2f", (double) n / 60.0);
    } else {
        printf("%-22s %.2f (%" PRId64 " in the last minute)\n",
               "events per second", (double) n / 60.0, n);
    }
    return CTL_OK;
}

static int
st_run(PGconn *pg, const ctl *c, loom__buf *json)
{
    const PGresult *sizes = NULL;
    PGresult *cats = NULL;
    int rc;

    rc = st_totals(pg, c, json);
    if (rc == CTL_OK)
        rc = st_sizes(pg, c, json, &sizes);
    if (rc == CTL_OK)
        rc = st_rate(pg, c, json);
    if (rc == CTL_OK &&
        (cats = ctl_pg_exec(pg, "ranking categories", st_categories_sql, 0,
                            NULL)) == NULL)
        rc = CTL_ERR;
    if (rc == CTL_OK)
        rc = st_list(c, json, "top categories by events:", "top_categories",
                     st_category_cols, 3, cats, 0);
    if (rc == CTL_OK)
        rc = st_list(c, json, "loom tables by size:", "tables", st_size_cols, 3,
                     sizes, 1);
    if (rc == CTL_OK)
        rc = ctl_stats_horizon(pg, c, json);
    PQclear(cats);
    PQclear((PGresult *) sizes);
    return rc;
}

int
ctl_cmd_stats(ctl *c, int argc, char **argv)
{
    loom__buf json = LOOM__BUF_INIT;
    const char *val;
    PGconn *pg;
    ctl_args a;
    int r, rc;

    ctl_args_init(&a, argc, argv);
    while ((r = ctl_args_next(c, &a, NULL, &val)) != CTL_ARG_END) {
        if (r == CTL_ARG_BAD)
            return CTL_USAGE;
        return ctl_usage_error(c, "unexpected argument \"%s\"", val);
    }
    pg = ctl_pg_open(c);
    if (pg == NULL)
        return CTL_ERR;
    loom__buf_putc(&json, '{');
    rc = st_run(pg, c, &json);
    loom__buf_puts(&json, "}\n");
    if (rc == CTL_OK && c->json && json.failed) {
        ctl_fail("formatting statistics: out of memory");
        rc = CTL_ERR;
    } else if (rc == CTL_OK && c->json) {
        fputs(json.data, stdout);
    }
    loom__buf_free(&json);
    PQfinish(pg);
    return rc;
}
