/*
 * loomctl topics lag [GROUP] | reset GROUP TOPIC --to ...: where consumer
 * groups are, and moving them.
 *
 * lag reads the loom.topic_lag view: per group and partition the end
 * offset (the next offset to be published), the committed offset (the
 * next the group will read) and the lag between them, counted from the
 * first stored offset when retention removed what the group had not
 * read. reset goes through loom_topic_reset(), which also fences the
 * group's running members so that they re-read their offsets.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "fmt.h"
#include "json.h"
#include "stats.h"
#include "table.h"
#include "topics.h"

static const char tg_lag_sql[] =
    "SELECT group_name, topic, partition, end_offset, committed, lag, "
    "coalesce(left(member::text, 8), '-'), retrying, member::text "
    "FROM loom.topic_lag WHERE ($1::text IS NULL OR group_name = $1::text) "
    "AND ($2::text IS NULL OR topic = $2::text) "
    "AND ($3::integer IS NULL OR partition = $3::integer) "
    "ORDER BY group_name, topic, partition";

static const char tg_group_sql[] =
    "SELECT 1 FROM loom.topic_groups WHERE name = $1";

/* A time as µs since 1970; a time without a zone is UTC. */
static const char tg_time_sql[] =
    "SELECT (extract(epoch FROM $1::timestamptz) * 1000000)::bigint";

/* The columns of tg_lag_sql. */
enum {
    TG_GROUP,
    TG_TOPIC,
    TG_PART,
    TG_END,
    TG_COMMITTED,
    TG_LAG,
    TG_MEMBER_SHORT,
    TG_RETRYING,
    TG_MEMBER
};

static const ctl_col tg_lag_cols[] = {
    {"GROUP", "group", CTL_COL_TEXT, 0},
    {"TOPIC", "topic", CTL_COL_TEXT, 0},
    {"PARTITION", "partition", CTL_COL_NUM, 0},
    {"END OFFSET", "end_offset", CTL_COL_NUM, 0},
    {"COMMITTED", "committed", CTL_COL_NUM, 0},
    {"LAG", "lag", CTL_COL_NUM, 0},
    {"MEMBER", "member", CTL_COL_TEXT, 0},
    {"RETRYING", "retrying", CTL_COL_NUM, 0},
};

static const ctl_col tg_reset_cols[] = {
    {"PARTITION", "partition", CTL_COL_NUM, 0},
    {"COMMITTED", "committed", CTL_COL_NUM, 0},
    {"END OFFSET", "end_offset", CTL_COL_NUM, 0},
    {"LAG", "lag", CTL_COL_NUM, 0},
};

#define TG_N(cols) (sizeof cols / sizeof cols[0])

/* Runs tg_lag_sql for a group, topic and partition (each NULL for any). */
static PGresult *
tg_lag_query(PGconn *pg, const char *group, const char *topic,
             const char *partition)
{
    const char *params[3] = {group, topic, partition};

    return ctl_pg_exec(pg, "reading consumer group offsets", tg_lag_sql, 3,
                       params);
}

/* 1 when group `name` exists, 0 when not, -1 after a failed query. */
static int
tg_group_exists(PGconn *pg, const char *name)
{
    const char *params[1] = {name};
    PGresult *r = ctl_pg_exec(pg, "looking up the consumer group", tg_group_sql,
                              1, params);
    int found = r != NULL ? PQntuples(r) > 0 : -1;

    PQclear(r);
    return found;
}

/* ------------------------------------------------------------------ */
/* lag                                                                 */

static void
tg_lag_json(loom__buf *b, const PGresult *r, int i)
{
    loom__buf_putc(b, '{');
    ctl_json_kstr(b, "group", PQgetvalue(r, i, TG_GROUP));
    ctl_json_kstr(b, "topic", PQgetvalue(r, i, TG_TOPIC));
    ctl_json_kraw(b, "partition", PQgetvalue(r, i, TG_PART));
    ctl_json_kraw(b, "end_offset", PQgetvalue(r, i, TG_END));
    ctl_json_kraw(b, "committed", PQgetvalue(r, i, TG_COMMITTED));
    ctl_json_kraw(b, "lag", PQgetvalue(r, i, TG_LAG));
    ctl_json_kstr(b, "member",
                  PQgetisnull(r, i, TG_MEMBER) ? NULL
                                               : PQgetvalue(r, i, TG_MEMBER));
    ctl_json_kraw(b, "retrying", PQgetvalue(r, i, TG_RETRYING));
    loom__buf_putc(b, '}');
}

/* The table, then one line of totals. */
static int
tg_lag_print(const PGresult *r)
{
    ctl_table *t = ctl_table_new(tg_lag_cols, TG_N(tg_lag_cols), 0, stdout);
    int64_t lag = 0, retrying = 0, groups = 0;
    char lag_s[32], retry_s[32];
    int rc = CTL_OK;

    if (t == NULL) {
        ctl_fail("printing the lag: out of memory");
        return CTL_ERR;
    }
    for (int i = 0; i < PQntuples(r); i++) {
        for (size_t j = 0; j < TG_N(tg_lag_cols); j++)
            ctl_table_cell(t, PQgetvalue(r, i, (int) j));
        lag += ctl_stats_i64(r, i, TG_LAG);
        retrying += ctl_stats_i64(r, i, TG_RETRYING);
        groups += i == 0 || strcmp(PQgetvalue(r, i, TG_GROUP),
                                   PQgetvalue(r, i - 1, TG_GROUP)) != 0;
    }
    if (ctl_table_flush(t) != 0) {
        ctl_fail("printing the lag: out of memory or a write error");
        rc = CTL_ERR;
    }
    ctl_table_free(t);
    ctl_fmt_count(lag, lag_s);
    ctl_fmt_count(retrying, retry_s);
    printf("total: lag %s on %d partition%s of %" PRId64 " group%s; %s "
           "message%s waiting for redelivery\n",
           lag_s, PQntuples(r), PQntuples(r) == 1 ? "" : "s", groups,
           groups == 1 ? "" : "s", retry_s, retrying == 1 ? "" : "s");
    return rc;
}

/* No rows: say why, or fail for a group that does not exist. */
static int
tg_lag_empty(PGconn *pg, const char *group)
{
    loom__buf shown = LOOM__BUF_INIT;
    int exists;

    if (group == NULL) {
        printf("(no consumer group has committed offsets yet)\n");
        return CTL_OK;
    }
    exists = tg_group_exists(pg, group);
    if (exists < 0)
        return CTL_ERR;
    if (exists == 0) {
        ctl_fail("topics lag: no consumer group \"%s\"; `loomctl topics "
                 "lag` shows every group",
                 group);
        return CTL_ERR;
    }
    printf("(group \"%s\" has no committed offsets yet)\n",
           ctl_topics_shown(&shown, group));
    loom__buf_free(&shown);
    return CTL_OK;
}

int
ctl_topics_lag(ctl *c, int argc, char **argv)
{
    loom__buf b = LOOM__BUF_INIT;
    const char *val, *group = NULL;
    PGconn *pg;
    PGresult *r;
    ctl_args a;
    int opt, rc = CTL_OK;

    ctl_args_init(&a, argc, argv);
    while ((opt = ctl_args_next(c, &a, NULL, &val)) != CTL_ARG_END) {
        if (opt == CTL_ARG_BAD)
            return CTL_USAGE;
        if (group != NULL)
            return ctl_usage_error(c, "unexpected argument \"%s\"", val);
        group = val;
    }
    if (group != NULL && ctl_topics_check_text(c, "GROUP", group) != CTL_OK)
        return CTL_USAGE;
    pg = ctl_pg_open(c);
    if (pg == NULL)
        return CTL_ERR;
    r = tg_lag_query(pg, group, NULL, NULL);
    if (r == NULL) {
        rc = CTL_ERR;
    } else if (PQntuples(r) == 0 && !c->json) {
        rc = tg_lag_empty(pg, group);
    } else if (c->json) {
        for (int i = 0; i < PQntuples(r) && rc == CTL_OK; i++) {
            loom__buf_reset(&b);
            tg_lag_json(&b, r, i);
            rc = ctl_topics_json_out(&b, "the lag");
        }
    } else {
        rc = tg_lag_print(r);
    }
    loom__buf_free(&b);
    PQclear(r);
    PQfinish(pg);
    return rc;
}

/* ------------------------------------------------------------------ */
/* reset                                                               */

enum { TG_OPT_TO = 1, TG_OPT_PARTITION };

static const ctl_opt tg_reset_opts[] = {
    {"--to", 1, TG_OPT_TO},
    {"--partition", 1, TG_OPT_PARTITION},
    {NULL, 0, 0},
};

typedef struct tg_reset_args {
    const char *group, *topic, *to;
    int64_t partition; /* -1: all */
    loom_topic_position pos;
} tg_reset_args;

/* A time for --to time:T: milliseconds since 1970, or ISO 8601 read by
 * PostgreSQL (with the session in UTC, so a time without a zone is UTC). */
static int
tg_parse_time(const ctl *c, PGconn *pg, const char *t, int64_t *us)
{
    const char *params[1] = {t}, *state;
    PGresult *r;
    int64_t ms;

    if (t[0] >= '0' && t[0] <= '9' && strspn(t, "0123456789") == strlen(t)) {
        if (ctl_parse_i64(c, "--to time", t, 0, INT64_MAX / 1000, &ms))
            return CTL_USAGE;
        *us = ms * 1000;
        return CTL_OK;
    }
    PQclear(PQexec(pg, "SET TIME ZONE 'UTC'"));
    r = PQexecParams(pg, tg_time_sql, 1, NULL, params, NULL, NULL, 0);
    state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    /* Class 22 (data exception): PostgreSQL could not read the time, a
     * usage error; anything else is a failure of the database. */
    if (state != NULL && strncmp(state, "22", 2) != 0) {
        ctl_fail("%s %s: reading the time: %s", c->cmd, c->sub,
                 PQresultErrorMessage(r));
        PQclear(r);
        return CTL_ERR;
    }
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQgetisnull(r, 0, 0)) {
        PQclear(r);
        return ctl_usage_error(c,
                               "--to time:%s: not a time; give ISO 8601 "
                               "(2024-05-01T10:00:00Z; UTC without a zone) "
                               "or milliseconds since 1970",
                               t);
    }
    *us = ctl_stats_i64(r, 0, 0);
    PQclear(r);
    return CTL_OK;
}

/* --to earliest|latest|offset:N|time:T into a->pos (time needs `pg`). */
static int
tg_parse_to(const ctl *c, PGconn *pg, tg_reset_args *a)
{
    const char *to = a->to;

    memset(&a->pos, 0, sizeof a->pos);
    if (strcmp(to, "earliest") == 0) {
        a->pos.start = LOOM_START_EARLIEST;
    } else if (strcmp(to, "latest") == 0) {
        a->pos.start = LOOM_START_LATEST;
    } else if (strncmp(to, "offset:", 7) == 0) {
        a->pos.start = LOOM_START_OFFSET;
        return ctl_parse_i64(c, "--to offset", to + 7, 0, INT64_MAX,
                             &a->pos.offset);
    } else if (strncmp(to, "time:", 5) == 0) {
        a->pos.start = LOOM_START_TIME;
        return tg_parse_time(c, pg, to + 5, &a->pos.time);
    } else {
        return ctl_usage_error(c,
                               "--to %s: expected earliest, latest, "
                               "offset:N or time:T (ISO 8601 or ms since "
                               "1970)",
                               to);
    }
    return CTL_OK;
}

static int
tg_reset_parse(ctl *c, int argc, char **argv, tg_reset_args *r)
{
    const char *val;
    ctl_args a;
    int opt, rc = CTL_OK;

    memset(r, 0, sizeof *r);
    r->partition = -1;
    ctl_args_init(&a, argc, argv);
    while (rc == CTL_OK &&
           (opt = ctl_args_next(c, &a, tg_reset_opts, &val)) != CTL_ARG_END) {
        if (opt == CTL_ARG_BAD)
            return CTL_USAGE;
        if (opt == TG_OPT_TO)
            r->to = val;
        else if (opt == TG_OPT_PARTITION)
            rc = ctl_parse_i64(c, "--partition", val, 0,
                               LOOM_MAX_PARTITIONS - 1, &r->partition);
        else if (r->group == NULL)
            r->group = val;
        else if (r->topic == NULL)
            r->topic = val;
        else
            return ctl_usage_error(c, "unexpected argument \"%s\"", val);
    }
    if (rc != CTL_OK)
        return rc;
    if (r->topic == NULL)
        return ctl_usage_error(c, "give the GROUP, then the TOPIC");
    if (r->to == NULL)
        return ctl_usage_error(c, "give where to: --to earliest, latest, "
                                  "offset:N or time:T");
    return ctl_topics_check_text(c, "GROUP", r->group);
}

/* "earliest", "offset 42", "2024-05-01T10:00:00Z (1714557600000 ms)". */
static void
tg_describe_to(const tg_reset_args *a, char *out, size_t len)
{
    switch (a->pos.start) {
    case LOOM_START_OFFSET:
        snprintf(out, len, "offset %" PRId64, a->pos.offset);
        break;
    case LOOM_START_TIME:
        snprintf(out, len, "the first message published at or after %s",
                 a->to + 5);
        break;
    default:
        snprintf(out, len, "%s", a->to);
    }
}

static int
tg_reset_json(const tg_reset_args *a, const PGresult *r, int moved, int existed)
{
    loom__buf b = LOOM__BUF_INIT;
    int rc;

    loom__buf_putc(&b, '{');
    ctl_json_kstr(&b, "group", a->group);
    ctl_json_kstr(&b, "topic", a->topic);
    ctl_json_ki64(&b, "moved", moved);
    ctl_json_kraw(&b, "new_group", existed ? "false" : "true");
    ctl_json_key(&b, "offsets");
    loom__buf_putc(&b, '[');
    for (int i = 0; i < PQntuples(r); i++) {
        if (i > 0)
            loom__buf_putc(&b, ',');
        tg_lag_json(&b, r, i);
    }
    loom__buf_puts(&b, "]}");
    rc = ctl_topics_json_out(&b, "the result");
    loom__buf_free(&b);
    return rc;
}

/* The group's offsets on the topic after the reset: some of the lag
 * query's columns. */
static int
tg_reset_table(const PGresult *r)
{
    static const int cols[] = {TG_PART, TG_COMMITTED, TG_END, TG_LAG};
    ctl_table *t = ctl_table_new(tg_reset_cols, TG_N(tg_reset_cols), 0, stdout);
    int rc = CTL_OK;

    if (t == NULL) {
        ctl_fail("printing the offsets: out of memory");
        return CTL_ERR;
    }
    for (int i = 0; i < PQntuples(r); i++) {
        for (size_t j = 0; j < TG_N(cols); j++)
            ctl_table_cell(t, PQgetvalue(r, i, cols[j]));
    }
    if (ctl_table_flush(t) != 0) {
        ctl_fail("printing the offsets: out of memory or a write error");
        rc = CTL_ERR;
    }
    ctl_table_free(t);
    return rc;
}

static int
tg_reset_print(const ctl *c, PGconn *pg, const tg_reset_args *a, int moved,
               int existed)
{
    loom__buf shown = LOOM__BUF_INIT;
    char partition[24], to[160];
    PGresult *r;
    int rc;

    snprintf(partition, sizeof partition, "%" PRId64, a->partition);
    r = tg_lag_query(pg, a->group, a->topic,
                     a->partition >= 0 ? partition : NULL);
    if (r == NULL)
        return CTL_ERR;
    if (c->json) {
        rc = tg_reset_json(a, r, moved, existed);
        PQclear(r);
        return rc;
    }
    tg_describe_to(a, to, sizeof to);
    printf("reset group \"%s\" on topic %s to %s: %d partition%s moved\n",
           ctl_topics_shown(&shown, a->group), a->topic, to, moved,
           moved == 1 ? "" : "s");
    loom__buf_free(&shown);
    printf("%s\n\n", existed
                         ? "running members drop what they hold and go on from "
                           "these offsets"
                         : "the group is new: its members start from these "
                           "offsets when they join");
    rc = tg_reset_table(r);
    PQclear(r);
    return rc;
}

int
ctl_topics_reset(ctl *c, int argc, char **argv)
{
    tg_reset_args a;
    loom_store *s = NULL;
    PGconn *pg;
    loom_err err;
    int moved = 0, existed, rc = tg_reset_parse(c, argc, argv, &a);

    if (rc != CTL_OK)
        return rc;
    pg = ctl_pg_open(c);
    if (pg == NULL)
        return CTL_ERR;
    rc = tg_parse_to(c, pg, &a);
    existed = rc == CTL_OK ? tg_group_exists(pg, a.group) : 0;
    if (existed < 0)
        rc = CTL_ERR;
    if (rc == CTL_OK && (s = ctl_store_open(c, LOOM_MIGRATE_CHECK)) == NULL)
        rc = CTL_ERR;
    if (rc == CTL_OK) {
        err = loom_topic_reset(s, a.group, a.topic, (int32_t) a.partition,
                               &a.pos, &moved);
        rc = err == LOOM_OK ? CTL_OK : ctl_topics_api_fail(c, s, err);
    }
    if (rc == CTL_OK)
        rc = tg_reset_print(c, pg, &a, moved, existed);
    loom_store_close(s);
    PQfinish(pg);
    return rc;
}
