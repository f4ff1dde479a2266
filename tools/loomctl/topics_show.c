/*
 * loomctl topics list | describe NAME: what topics there are, how much
 * each stores and how it is set up; for one topic, its partitions and
 * the consumer groups reading it. Dead-letter topics ("<topic>.dlq")
 * are topics too and are listed with the others.
 *
 * Message counts are next_offset - start_offset per partition (offsets
 * are dense), and stored bytes come from the running byte count (see
 * CTL_TOPICS_STORED_BYTES): neither scans the messages.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "fmt.h"
#include "json.h"
#include "stats.h"
#include "table.h"
#include "topics.h"

static const char ts_list_sql[] =
    "SELECT t.name, t.partitions, "
    "sum(tp.next_offset - tp.start_offset)::bigint, "
    "sum(" CTL_TOPICS_STORED_BYTES ")::bigint, "
    "coalesce(t.retention_ms, 0), coalesce(t.retention_bytes, 0), "
    "t.dedup_window_ms, t.max_deliveries "
    "FROM loom.topics t JOIN loom.topic_partitions tp ON tp.topic_id = "
    "t.id " CTL_TOPICS_FIRST_JOIN "GROUP BY t.name ORDER BY t.name";

static const char ts_partitions_sql[] =
    "SELECT tp.partition, tp.start_offset, tp.next_offset, "
    "tp.next_offset - tp.start_offset, " CTL_TOPICS_STORED_BYTES " "
    "FROM loom.topics t JOIN loom.topic_partitions tp ON tp.topic_id = "
    "t.id " CTL_TOPICS_FIRST_JOIN "WHERE t.name = $1 ORDER BY tp.partition";

/* Groups with committed offsets on the topic: partitions, total lag,
 * members holding its partitions, messages waiting for redelivery. */
static const char ts_groups_sql[] =
    "SELECT l.group_name, count(*), sum(l.lag)::bigint, "
    "count(DISTINCT l.member), sum(l.retrying)::bigint "
    "FROM loom.topic_lag l WHERE l.topic = $1 "
    "GROUP BY l.group_name ORDER BY l.group_name";

/* The dead letters recorded for the topic, and those not re-driven. */
static const char ts_dead_sql[] =
    "SELECT count(*), count(*) FILTER (WHERE d.redriven_at IS NULL) "
    "FROM loom.topic_dead_letters d JOIN loom.topics t ON t.id = d.topic_id "
    "WHERE t.name = $1";

/* The columns of ts_list_sql. */
enum {
    TL_NAME,
    TL_PARTS,
    TL_MSGS,
    TL_BYTES,
    TL_RMS,
    TL_RBYTES,
    TL_DEDUP,
    TL_MAX
};

static const ctl_col ts_list_cols[] = {
    {"TOPIC", "topic", CTL_COL_TEXT, 0},
    {"PARTITIONS", "partitions", CTL_COL_NUM, 0},
    {"MESSAGES", "messages", CTL_COL_NUM, 0},
    {"BYTES", "bytes", CTL_COL_NUM, 0},
    {"RETENTION", "retention", CTL_COL_TEXT, CTL_COL_KEEP},
    {"DEDUP WINDOW", "dedup_window", CTL_COL_TEXT, CTL_COL_KEEP},
    {"MAX DELIVERIES", "max_deliveries", CTL_COL_NUM, 0},
};

static const ctl_col ts_part_cols[] = {
    {"PARTITION", "partition", CTL_COL_NUM, 0},
    {"START OFFSET", "start_offset", CTL_COL_NUM, 0},
    {"END OFFSET", "end_offset", CTL_COL_NUM, 0},
    {"MESSAGES", "messages", CTL_COL_NUM, 0},
    {"BYTES", "bytes", CTL_COL_NUM, 0},
};

static const ctl_col ts_group_cols[] = {
    {"GROUP", "group", CTL_COL_TEXT, 0},
    {"PARTITIONS", "partitions", CTL_COL_NUM, 0},
    {"LAG", "lag", CTL_COL_NUM, 0},
    {"MEMBERS", "members", CTL_COL_NUM, 0},
    {"RETRYING", "retrying", CTL_COL_NUM, 0},
};

#define TS_N(cols) (sizeof cols / sizeof cols[0])

/* No arguments but the global options. */
static int
ts_no_args(ctl *c, int argc, char **argv)
{
    const char *val;
    ctl_args a;
    int opt;

    ctl_args_init(&a, argc, argv);
    while ((opt = ctl_args_next(c, &a, NULL, &val)) != CTL_ARG_END) {
        if (opt == CTL_ARG_BAD)
            return CTL_USAGE;
        return ctl_usage_error(c, "unexpected argument \"%s\"", val);
    }
    return CTL_OK;
}

/* Prints a result cell by cell into a table (or JSON lines). */
static int
ts_table(const ctl_col *cols, size_t ncols, int json, const PGresult *r,
         const char *what)
{
    ctl_table *t = ctl_table_new(cols, ncols, json, stdout);
    int rc = CTL_OK;

    if (t == NULL) {
        ctl_fail("printing %s: out of memory", what);
        return CTL_ERR;
    }
    for (int i = 0; i < PQntuples(r); i++) {
        for (size_t j = 0; j < ncols; j++)
            ctl_table_cell(t, PQgetvalue(r, i, (int) j));
    }
    if (ctl_table_flush(t) != 0) {
        ctl_fail("printing %s: out of memory or a write error", what);
        rc = CTL_ERR;
    }
    ctl_table_free(t);
    return rc;
}

/* ------------------------------------------------------------------ */
/* list                                                                */

static void
ts_list_json(loom__buf *b, const PGresult *r, int i)
{
    int64_t rms = ctl_stats_i64(r, i, TL_RMS);
    int64_t rbytes = ctl_stats_i64(r, i, TL_RBYTES);

    loom__buf_putc(b, '{');
    ctl_json_kstr(b, "topic", PQgetvalue(r, i, TL_NAME));
    ctl_json_kraw(b, "partitions", PQgetvalue(r, i, TL_PARTS));
    ctl_json_kraw(b, "messages", PQgetvalue(r, i, TL_MSGS));
    ctl_json_kraw(b, "bytes", PQgetvalue(r, i, TL_BYTES));
    ctl_json_kraw(b, "retention_ms", rms > 0 ? PQgetvalue(r, i, TL_RMS) : NULL);
    ctl_json_kraw(b, "retention_bytes",
                  rbytes > 0 ? PQgetvalue(r, i, TL_RBYTES) : NULL);
    ctl_json_kraw(b, "dedup_window_ms", PQgetvalue(r, i, TL_DEDUP));
    ctl_json_kraw(b, "max_deliveries", PQgetvalue(r, i, TL_MAX));
    loom__buf_putc(b, '}');
}

static int
ts_list_table(const PGresult *r)
{
    ctl_table *t = ctl_table_new(ts_list_cols, TS_N(ts_list_cols), 0, stdout);
    int rc = CTL_OK;

    if (t == NULL) {
        ctl_fail("printing topics: out of memory");
        return CTL_ERR;
    }
    for (int i = 0; i < PQntuples(r); i++) {
        char ret[80], dedup[32] = "off";
        int64_t window = ctl_stats_i64(r, i, TL_DEDUP);

        ctl_topics_fmt_retention(ctl_stats_i64(r, i, TL_RMS),
                                 ctl_stats_i64(r, i, TL_RBYTES), ret,
                                 sizeof ret);
        if (window > 0)
            ctl_topics_fmt_ms(window, dedup);
        ctl_table_cell(t, PQgetvalue(r, i, TL_NAME));
        ctl_table_cell(t, PQgetvalue(r, i, TL_PARTS));
        ctl_table_cell(t, PQgetvalue(r, i, TL_MSGS));
        ctl_table_cell(t, PQgetvalue(r, i, TL_BYTES));
        ctl_table_cell(t, ret);
        ctl_table_cell(t, dedup);
        ctl_table_cell(t, PQgetvalue(r, i, TL_MAX));
    }
    if (ctl_table_flush(t) != 0) {
        ctl_fail("printing topics: out of memory or a write error");
        rc = CTL_ERR;
    }
    ctl_table_free(t);
    return rc;
}

int
ctl_topics_list(ctl *c, int argc, char **argv)
{
    loom__buf b = LOOM__BUF_INIT;
    PGconn *pg;
    PGresult *r;
    int rc = ts_no_args(c, argc, argv);

    if (rc != CTL_OK)
        return rc;
    pg = ctl_pg_open(c);
    if (pg == NULL)
        return CTL_ERR;
    r = ctl_pg_exec(pg, "listing topics", ts_list_sql, 0, NULL);
    if (r == NULL) {
        rc = CTL_ERR;
    } else if (c->json) {
        for (int i = 0; i < PQntuples(r) && rc == CTL_OK; i++) {
            loom__buf_reset(&b);
            ts_list_json(&b, r, i);
            rc = ctl_topics_json_out(&b, "topics");
        }
    } else if (PQntuples(r) == 0) {
        printf("(no topics; create one with `loomctl topics create NAME "
               "--partitions N`)\n");
    } else {
        rc = ts_list_table(r);
    }
    loom__buf_free(&b);
    PQclear(r);
    PQfinish(pg);
    return rc;
}

/* ------------------------------------------------------------------ */
/* describe                                                            */

/* What describe reads besides the settings, freed together. */
typedef struct ts_data {
    PGresult *parts, *groups, *dead;
} ts_data;

static int
ts_read(PGconn *pg, const char *name, ts_data *d)
{
    const char *params[1] = {name};

    d->parts =
        ctl_pg_exec(pg, "reading the partitions", ts_partitions_sql, 1, params);
    if (d->parts != NULL)
        d->groups = ctl_pg_exec(pg, "reading the consumer groups",
                                ts_groups_sql, 1, params);
    if (d->groups != NULL)
        d->dead =
            ctl_pg_exec(pg, "counting dead letters", ts_dead_sql, 1, params);
    return d->dead != NULL ? CTL_OK : CTL_ERR;
}

static void
ts_print_settings(const loom_topic_info *info, const PGresult *dead)
{
    const loom_topic_config *cfg = &info->cfg;
    time_t secs = (time_t) (info->created_at / 1000000);
    char a[32], b[32], when[32];
    struct tm tm;

    ctl_topics_kv("topic", "%s", info->name);
    ctl_topics_kv("partitions", "%d", (int) cfg->partitions);
    ctl_fmt_count(info->messages, a);
    ctl_topics_kv("messages", "%s", a);
    ctl_stats_bytes(info->bytes, a);
    ctl_topics_kv("bytes", "%" PRId64 " (%s)", info->bytes, a);
    ctl_topics_fmt_ms(cfg->retention_ms, a);
    if (cfg->retention_ms > 0)
        ctl_topics_kv("retention age", "%s (%" PRId64 " ms)", a,
                      cfg->retention_ms);
    else
        ctl_topics_kv("retention age", "none (kept forever)");
    ctl_stats_bytes(cfg->retention_bytes, b);
    if (cfg->retention_bytes > 0)
        ctl_topics_kv("retention size", "%s per partition (%" PRId64 " bytes)",
                      b, cfg->retention_bytes);
    else
        ctl_topics_kv("retention size", "none");
    ctl_topics_fmt_ms(cfg->dedup_window_ms, a);
    if (cfg->dedup_window_ms > 0)
        ctl_topics_kv("dedup window", "%s (%" PRId64 " ms)", a,
                      cfg->dedup_window_ms);
    else
        ctl_topics_kv("dedup window", "off");
    ctl_topics_kv("max deliveries", "%d", (int) cfg->max_deliveries);
    gmtime_r(&secs, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    ctl_topics_kv("created", "%s.%03dZ", when,
                  (int) (info->created_at % 1000000 / 1000));
    if (ctl_stats_i64(dead, 0, 0) > 0)
        ctl_topics_kv("dead letters",
                      "%s in %s%s, %s not re-driven (`loomctl topics dlq "
                      "%s`)",
                      PQgetvalue(dead, 0, 0), info->name, LOOM_DLQ_SUFFIX,
                      PQgetvalue(dead, 0, 1), info->name);
}

static int
ts_print_describe(const loom_topic_info *info, const ts_data *d)
{
    int rc;

    ts_print_settings(info, d->dead);
    printf("\n");
    rc = ts_table(ts_part_cols, TS_N(ts_part_cols), 0, d->parts,
                  "the partitions");
    printf("\n");
    if (rc != CTL_OK)
        return rc;
    if (PQntuples(d->groups) == 0) {
        printf("(no consumer group has read it yet)\n");
        return CTL_OK;
    }
    return ts_table(ts_group_cols, TS_N(ts_group_cols), 0, d->groups,
                    "the consumer groups");
}

/* Appends a result's rows as a JSON array of objects under `key`. */
static void
ts_rows_json(loom__buf *b, const char *key, const ctl_col *cols, size_t n,
             const PGresult *r)
{
    ctl_json_key(b, key);
    loom__buf_putc(b, '[');
    for (int i = 0; i < PQntuples(r); i++) {
        loom__buf_puts(b, i > 0 ? ",{" : "{");
        for (size_t j = 0; j < n; j++) {
            if (cols[j].kind == CTL_COL_NUM)
                ctl_json_kraw(b, cols[j].key, PQgetvalue(r, i, (int) j));
            else
                ctl_json_kstr(b, cols[j].key, PQgetvalue(r, i, (int) j));
        }
        loom__buf_putc(b, '}');
    }
    loom__buf_putc(b, ']');
}

static int
ts_describe_json(const loom_topic_info *info, const ts_data *d)
{
    const loom_topic_config *cfg = &info->cfg;
    loom__buf b = LOOM__BUF_INIT;
    char num[32];
    int rc;

    loom__buf_putc(&b, '{');
    ctl_json_kstr(&b, "topic", info->name);
    ctl_json_ki64(&b, "partitions", cfg->partitions);
    ctl_json_ki64(&b, "messages", info->messages);
    ctl_json_ki64(&b, "bytes", info->bytes);
    snprintf(num, sizeof num, "%" PRId64, cfg->retention_ms);
    ctl_json_kraw(&b, "retention_ms", cfg->retention_ms > 0 ? num : NULL);
    snprintf(num, sizeof num, "%" PRId64, cfg->retention_bytes);
    ctl_json_kraw(&b, "retention_bytes", cfg->retention_bytes > 0 ? num : NULL);
    ctl_json_ki64(&b, "dedup_window_ms", cfg->dedup_window_ms);
    ctl_json_ki64(&b, "max_deliveries", cfg->max_deliveries);
    ctl_json_ki64(&b, "created_at_us", info->created_at);
    ctl_json_kraw(&b, "dead_letters", PQgetvalue(d->dead, 0, 0));
    ctl_json_kraw(&b, "dead_letters_pending", PQgetvalue(d->dead, 0, 1));
    ts_rows_json(&b, "by_partition", ts_part_cols, TS_N(ts_part_cols),
                 d->parts);
    ts_rows_json(&b, "groups", ts_group_cols, TS_N(ts_group_cols), d->groups);
    loom__buf_putc(&b, '}');
    rc = ctl_topics_json_out(&b, "the topic");
    loom__buf_free(&b);
    return rc;
}

static int
ts_describe_parse(ctl *c, int argc, char **argv, const char **name)
{
    const char *val;
    ctl_args a;
    int opt;

    *name = NULL;
    ctl_args_init(&a, argc, argv);
    while ((opt = ctl_args_next(c, &a, NULL, &val)) != CTL_ARG_END) {
        if (opt == CTL_ARG_BAD)
            return CTL_USAGE;
        if (*name != NULL)
            return ctl_usage_error(c, "unexpected argument \"%s\"", val);
        *name = val;
    }
    if (*name == NULL)
        return ctl_usage_error(c, "give the topic's NAME (`loomctl topics "
                                  "list` shows them)");
    return CTL_OK;
}

int
ctl_topics_describe(ctl *c, int argc, char **argv)
{
    ts_data d = {NULL, NULL, NULL};
    loom_topic_info info;
    const char *name;
    loom_store *s;
    PGconn *pg = NULL;
    loom_err err;
    int rc = ts_describe_parse(c, argc, argv, &name);

    if (rc != CTL_OK)
        return rc;
    s = ctl_store_open(c, LOOM_MIGRATE_CHECK);
    if (s == NULL)
        return CTL_ERR;
    /* The settings and sizes as the library reports them; the rest from
     * the catalog. */
    err = loom_topic_describe(s, name, &info);
    if (err != LOOM_OK)
        rc = ctl_topics_api_fail(c, s, err);
    if (rc == CTL_OK && (pg = ctl_pg_open(c)) == NULL)
        rc = CTL_ERR;
    if (rc == CTL_OK)
        rc = ts_read(pg, name, &d);
    if (rc == CTL_OK)
        rc = c->json ? ts_describe_json(&info, &d)
                     : ts_print_describe(&info, &d);
    PQclear(d.parts);
    PQclear(d.groups);
    PQclear(d.dead);
    PQfinish(pg);
    loom_store_close(s);
    return rc;
}
