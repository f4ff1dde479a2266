/*
 * loomctl topics dlq TOPIC [list] | dlq TOPIC redrive: the messages
 * consumer groups gave up on. A group dead-letters a message after the
 * topic's max deliveries: a copy goes to "<topic>.dlq" and a row to
 * loom.topic_dead_letters, which is what these commands read.
 *
 * redrive (loom_topic_redrive()) hands each dead letter back to its
 * group as a redelivery due now, counting deliveries from zero, as SQS's
 * redrive does. It needs the original message: one that retention has
 * removed since can never be re-driven, and is reported apart.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "fmt.h"
#include "json.h"
#include "parked.h"
#include "stats.h"
#include "table.h"
#include "topics.h"

/* A table's error shows this much of its first line; --json has all. */
#define TD_ERROR_MAX 60

/* The rows of the dead letters a filter selects: $1 topic, $2 group
 * (NULL: all), and for redrive $3/$4 the dlq partition and offset. */
#define TD_FROM                                                                \
    "FROM loom.topic_dead_letters d "                                          \
    "JOIN loom.topics t ON t.id = d.topic_id "                                 \
    "JOIN loom.topic_partitions tp ON tp.topic_id = d.topic_id "               \
    "AND tp.partition = d.partition "                                          \
    "WHERE t.name = $1::text "                                                 \
    "AND ($2::text IS NULL OR d.group_name = $2::text) "

static const char td_list_sql[] =
    "SELECT d.dlq_partition, d.dlq_offset, d.group_name, d.partition, "
    "d.\"offset\", d.deliveries, "
    "extract(epoch FROM now() - d.dead_at)::bigint, "
    "CASE WHEN d.redriven_at IS NOT NULL THEN 'yes' "
    "WHEN d.\"offset\" < tp.start_offset THEN 'no (removed)' ELSE 'no' END, "
    "coalesce(d.error, ''), "
    "to_char(d.dead_at AT TIME ZONE 'UTC'" CTL_SQL_ISO ", "
    "to_char(d.redriven_at AT TIME ZONE 'UTC'" CTL_SQL_ISO ", "
    "d.\"offset\" >= tp.start_offset " TD_FROM
    "ORDER BY d.dlq_partition, d.dlq_offset LIMIT $3::bigint";

/* Those a redrive with the same filter leaves: not re-driven, and their
 * original is below the partition's first stored offset. */
static const char td_gone_sql[] =
    "SELECT count(*) " TD_FROM "AND d.redriven_at IS NULL "
    "AND ($4::bigint IS NULL OR (d.dlq_partition = $3::integer "
    "AND d.dlq_offset = $4::bigint)) "
    "AND d.\"offset\" < tp.start_offset";

/* The columns of td_list_sql. */
enum {
    TD_DLQ_PART,
    TD_DLQ_OFF,
    TD_GROUP,
    TD_PART,
    TD_OFF,
    TD_DELIVERIES,
    TD_AGE,
    TD_REDRIVEN,
    TD_ERROR,
    TD_DEAD_AT,
    TD_REDRIVEN_AT,
    TD_STORED
};

static const ctl_col td_cols[] = {
    {"DLQ PARTITION", "dlq_partition", CTL_COL_NUM, 0},
    {"DLQ OFFSET", "dlq_offset", CTL_COL_NUM, 0},
    {"GROUP", "group", CTL_COL_TEXT, 0},
    {"PARTITION", "partition", CTL_COL_NUM, 0},
    {"OFFSET", "offset", CTL_COL_NUM, 0},
    {"DELIVERIES", "deliveries", CTL_COL_NUM, 0},
    {"AGE", "age", CTL_COL_TEXT, CTL_COL_KEEP},
    {"REDRIVEN", "redriven", CTL_COL_TEXT, CTL_COL_KEEP},
    {"ERROR", "error", CTL_COL_TEXT, CTL_COL_CUT_FIRST},
};

#define TD_NCOLS (sizeof td_cols / sizeof td_cols[0])

enum { TD_LIST, TD_REDRIVE };
enum { TD_OPT_GROUP = 1, TD_OPT_LIMIT, TD_OPT_PARTITION, TD_OPT_OFFSET };

static const ctl_opt td_opts[] = {
    {"--group", 1, TD_OPT_GROUP},
    {"--limit", 1, TD_OPT_LIMIT},
    {"--partition", 1, TD_OPT_PARTITION},
    {"--offset", 1, TD_OPT_OFFSET},
    {NULL, 0, 0},
};

typedef struct td_args {
    const char *topic, *group;
    int action;                /* TD_LIST or TD_REDRIVE */
    int64_t limit;             /* list */
    int64_t partition, offset; /* redrive; -1: not given */
    const char *limit_opt;     /* the options given, to refuse the */
    const char *target_opt;    /* ones of the other action */
} td_args;

/* ------------------------------------------------------------------ */
/* Arguments                                                           */

static int
td_action(ctl *c, td_args *t, const char *val)
{
    if (t->topic == NULL) {
        t->topic = val;
        return CTL_OK;
    }
    if (t->action != -1)
        return ctl_usage_error(c, "unexpected argument \"%s\"", val);
    if (strcmp(val, "list") == 0)
        t->action = TD_LIST;
    else if (strcmp(val, "redrive") == 0)
        t->action = TD_REDRIVE;
    else
        return ctl_usage_error(c,
                               "unknown action \"%s\" after the topic "
                               "(expected list or redrive)",
                               val);
    return CTL_OK;
}

static int
td_option(ctl *c, td_args *t, int opt, const char *val)
{
    switch (opt) {
    case TD_OPT_GROUP:
        t->group = val;
        return ctl_topics_check_text(c, "--group", val);
    case TD_OPT_LIMIT:
        t->limit_opt = "--limit";
        return ctl_parse_i64(c, "--limit", val, 1, 100000, &t->limit);
    case TD_OPT_PARTITION:
        t->target_opt = "--partition";
        return ctl_parse_i64(c, "--partition", val, 0, LOOM_MAX_PARTITIONS - 1,
                             &t->partition);
    default:
        t->target_opt = "--offset";
        return ctl_parse_i64(c, "--offset", val, 0, INT64_MAX, &t->offset);
    }
}

static int
td_parse(ctl *c, int argc, char **argv, td_args *t)
{
    const char *val;
    ctl_args a;
    int opt, rc = CTL_OK;

    memset(t, 0, sizeof *t);
    t->action = -1;
    t->limit = 100;
    t->partition = t->offset = -1;
    ctl_args_init(&a, argc, argv);
    while (rc == CTL_OK &&
           (opt = ctl_args_next(c, &a, td_opts, &val)) != CTL_ARG_END) {
        if (opt == CTL_ARG_BAD)
            return CTL_USAGE;
        rc = opt == CTL_ARG_POS ? td_action(c, t, val)
                                : td_option(c, t, opt, val);
    }
    if (rc != CTL_OK)
        return rc;
    if (t->topic == NULL)
        return ctl_usage_error(c, "give the TOPIC whose dead letters to "
                                  "show (the source topic, not its .dlq)");
    if (t->action == -1)
        t->action = TD_LIST;
    if (t->action == TD_LIST && t->target_opt != NULL)
        return ctl_usage_error(c, "%s is for `dlq TOPIC redrive`",
                               t->target_opt);
    if (t->action == TD_REDRIVE && t->limit_opt != NULL)
        return ctl_usage_error(c, "--limit is for `dlq TOPIC list`");
    if ((t->partition < 0) != (t->offset < 0))
        return ctl_usage_error(c, "give both --partition and --offset (of "
                                  "the dead letter in the .dlq topic, as "
                                  "`dlq TOPIC list` shows them), or neither");
    return ctl_topics_check_text(c, "TOPIC", t->topic);
}

/* ------------------------------------------------------------------ */
/* list                                                                */

static void
td_row_json(loom__buf *b, const PGresult *r, int i)
{
    int redriven = !PQgetisnull(r, i, TD_REDRIVEN_AT);

    loom__buf_putc(b, '{');
    ctl_json_kraw(b, "dlq_partition", PQgetvalue(r, i, TD_DLQ_PART));
    ctl_json_kraw(b, "dlq_offset", PQgetvalue(r, i, TD_DLQ_OFF));
    ctl_json_kstr(b, "group", PQgetvalue(r, i, TD_GROUP));
    ctl_json_kraw(b, "partition", PQgetvalue(r, i, TD_PART));
    ctl_json_kraw(b, "offset", PQgetvalue(r, i, TD_OFF));
    ctl_json_kraw(b, "deliveries", PQgetvalue(r, i, TD_DELIVERIES));
    ctl_json_kstr(b, "dead_at", PQgetvalue(r, i, TD_DEAD_AT));
    ctl_json_kraw(b, "age_seconds", PQgetvalue(r, i, TD_AGE));
    ctl_json_kraw(b, "redriven", redriven ? "true" : "false");
    ctl_json_kstr(b, "redriven_at",
                  redriven ? PQgetvalue(r, i, TD_REDRIVEN_AT) : NULL);
    ctl_json_kraw(b, "original_stored",
                  PQgetvalue(r, i, TD_STORED)[0] == 't' ? "true" : "false");
    ctl_json_kstr(b, "error", PQgetvalue(r, i, TD_ERROR));
    loom__buf_putc(b, '}');
}

static int
td_table(const PGresult *r)
{
    ctl_table *t = ctl_table_new(td_cols, TD_NCOLS, 0, stdout);
    loom__buf err = LOOM__BUF_INIT;
    int rc = CTL_OK;

    if (t == NULL) {
        ctl_fail("printing dead letters: out of memory");
        return CTL_ERR;
    }
    for (int i = 0; i < PQntuples(r); i++) {
        char age[32];
        for (int j = TD_DLQ_PART; j <= TD_DELIVERIES; j++)
            ctl_table_cell(t, PQgetvalue(r, i, j));
        ctl_fmt_age(ctl_stats_i64(r, i, TD_AGE), age);
        ctl_table_cellf(t, "%s ago", age);
        ctl_table_cell(t, PQgetvalue(r, i, TD_REDRIVEN));
        ctl_topics_first_line(&err, PQgetvalue(r, i, TD_ERROR), TD_ERROR_MAX);
        ctl_table_cell(t, err.failed ? "?" : loom__buf_str(&err));
    }
    if (ctl_table_flush(t) != 0) {
        ctl_fail("printing dead letters: out of memory or a write error");
        rc = CTL_ERR;
    }
    ctl_table_free(t);
    loom__buf_free(&err);
    return rc;
}

/* What follows the table: why some cannot be re-driven, and whether the
 * limit cut the list. */
static void
td_notes(const td_args *t, const PGresult *r)
{
    int gone = 0;

    for (int i = 0; i < PQntuples(r); i++)
        gone += strcmp(PQgetvalue(r, i, TD_REDRIVEN), "no (removed)") == 0;
    if (gone > 0)
        printf("\n%d dead letter%s can no longer be re-driven: retention "
               "removed the original message%s (the cop%s in %s%s stay%s)\n",
               gone, gone == 1 ? "" : "s", gone == 1 ? "" : "s",
               gone == 1 ? "y" : "ies", t->topic, LOOM_DLQ_SUFFIX,
               gone == 1 ? "s" : "");
    if (PQntuples(r) == t->limit)
        printf("(the first %d are shown; --limit N shows more)\n",
               PQntuples(r));
}

static void
td_empty(const td_args *t)
{
    size_t n = strlen(t->topic), k = strlen(LOOM_DLQ_SUFFIX);
    loom__buf shown = LOOM__BUF_INIT;

    if (t->group != NULL)
        printf("(no dead letters of %s from group \"%s\")\n", t->topic,
               ctl_topics_shown(&shown, t->group));
    else
        printf("(no dead letters of %s)\n", t->topic);
    if (n > k && strcmp(t->topic + n - k, LOOM_DLQ_SUFFIX) == 0)
        printf("(give the source topic, %.*s, to see its dead letters)\n",
               (int) (n - k), t->topic);
    loom__buf_free(&shown);
}

static int
td_list(const ctl *c, PGconn *pg, const td_args *t)
{
    const char *params[3] = {t->topic, t->group, NULL};
    loom__buf b = LOOM__BUF_INIT;
    char limit[24];
    PGresult *r;
    int rc = CTL_OK;

    snprintf(limit, sizeof limit, "%" PRId64, t->limit);
    params[2] = limit;
    r = ctl_pg_exec(pg, "listing dead letters", td_list_sql, 3, params);
    if (r == NULL)
        return CTL_ERR;
    if (c->json) {
        for (int i = 0; i < PQntuples(r) && rc == CTL_OK; i++) {
            loom__buf_reset(&b);
            td_row_json(&b, r, i);
            rc = ctl_topics_json_out(&b, "dead letters");
        }
    } else if (PQntuples(r) == 0) {
        td_empty(t);
    } else {
        rc = td_table(r);
        td_notes(t, r);
    }
    loom__buf_free(&b);
    PQclear(r);
    return rc;
}

/* ------------------------------------------------------------------ */
/* redrive                                                             */

/* Counts, after a redrive, the dead letters it had to leave. */
static int
td_count_gone(PGconn *pg, const td_args *t, int64_t *gone)
{
    char part[24], off[24];
    const char *params[4] = {t->topic, t->group, NULL, NULL};
    PGresult *r;

    if (t->offset >= 0) {
        snprintf(part, sizeof part, "%" PRId64, t->partition);
        snprintf(off, sizeof off, "%" PRId64, t->offset);
        params[2] = part;
        params[3] = off;
    }
    r = ctl_pg_exec(pg, "counting dead letters left", td_gone_sql, 4, params);
    if (r == NULL)
        return CTL_ERR;
    *gone = ctl_stats_i64(r, 0, 0);
    PQclear(r);
    return CTL_OK;
}

static int
td_redrive_report(const ctl *c, const td_args *t, int n, int64_t gone)
{
    loom__buf b = LOOM__BUF_INIT;
    int rc;

    if (c->json) {
        loom__buf_putc(&b, '{');
        ctl_json_kstr(&b, "topic", t->topic);
        ctl_json_kstr(&b, "group", t->group);
        ctl_json_ki64(&b, "redriven", n);
        ctl_json_ki64(&b, "not_redrivable", gone);
        loom__buf_putc(&b, '}');
        rc = ctl_topics_json_out(&b, "the result");
        loom__buf_free(&b);
        return rc;
    }
    printf("re-drove %d dead letter%s of %s: %s\n", n, n == 1 ? "" : "s",
           t->topic,
           n == 0 ? "none was waiting"
                  : "each goes back to its group as a redelivery due now, "
                    "deliveries counted from 0");
    if (gone > 0)
        printf("%" PRId64 " dead letter%s could not be re-driven: retention "
               "removed the original message%s (the cop%s stay%s in %s%s)\n",
               gone, gone == 1 ? "" : "s", gone == 1 ? "" : "s",
               gone == 1 ? "y" : "ies", gone == 1 ? "s" : "", t->topic,
               LOOM_DLQ_SUFFIX);
    return CTL_OK;
}

static int
td_redrive(const ctl *c, PGconn *pg, const td_args *t)
{
    loom_store *s = ctl_store_open(c, LOOM_MIGRATE_CHECK);
    int64_t gone = 0;
    loom_err err;
    int n = 0, rc;

    if (s == NULL)
        return CTL_ERR;
    err = loom_topic_redrive(s, t->topic, t->group, (int32_t) t->partition,
                             t->offset, &n);
    rc = err == LOOM_OK ? CTL_OK : ctl_topics_api_fail(c, s, err);
    loom_store_close(s);
    if (rc == CTL_OK)
        rc = td_count_gone(pg, t, &gone);
    if (rc != CTL_OK)
        return rc;
    /* Naming one dead letter that is not there is a mistake worth an
     * exit status, as `parked replay` does. */
    if (t->offset >= 0 && n == 0 && gone == 0) {
        ctl_fail("topics dlq: %s has no dead letter at %s%s partition "
                 "%" PRId64 " offset %" PRId64 " waiting to be re-driven%s; "
                 "`loomctl topics dlq %s` lists them",
                 t->topic, t->topic, LOOM_DLQ_SUFFIX, t->partition, t->offset,
                 t->group != NULL ? " for that group" : "", t->topic);
        return CTL_ERR;
    }
    return td_redrive_report(c, t, n, gone);
}

int
ctl_topics_dlq(ctl *c, int argc, char **argv)
{
    PGconn *pg;
    td_args t;
    int found, rc = td_parse(c, argc, argv, &t);

    if (rc != CTL_OK)
        return rc;
    pg = ctl_pg_open(c);
    if (pg == NULL)
        return CTL_ERR;
    found = ctl_topics_exists(c, pg, t.topic);
    if (found <= 0)
        rc = CTL_ERR;
    else if (t.action == TD_LIST)
        rc = td_list(c, pg, &t);
    else
        rc = td_redrive(c, pg, &t);
    PQfinish(pg);
    return rc;
}
