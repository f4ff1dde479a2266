/*
 * loomctl outbox: the transactional outbox (loom/outbox.h). This file
 * dispatches to the subcommands and holds `status`; the dead letters
 * (`dlq`, `redrive`) are in outbox_dlq.c.
 *
 * status reads the view loom.outbox_status: per outbox the messages not
 * yet published (behind no relay's cursor), the oldest one's age, what
 * the relays published, the dead letters, and the active relay as it
 * recorded itself in loom.outbox_relays. A relay row whose backend is no
 * longer in pg_stat_activity (the process died without stepping down) is
 * shown as gone, never as active.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fmt.h"
#include "json.h"
#include "outbox.h"
#include "parked.h"
#include "stats.h"
#include "table.h"
#include "topics.h"

enum { OB_STATUS, OB_DLQ, OB_REDRIVE };
enum { OB_OPT_LIMIT = 1, OB_OPT_ID };

static const char *const ob_subs[] = {"status", "dlq", "redrive", NULL};

/* Every subcommand's options with their values, to find the subcommand
 * among them ("outbox --limit 5 dlq" works too). */
static const ctl_opt ob_any_opts[] = {
    {"--limit", 1, OB_OPT_LIMIT},
    {"--id", 1, OB_OPT_ID},
    {NULL, 0, 0},
};

/* Durations are seconds with three decimals, rounded by the server
 * (numeric text is always valid JSON); times are ISO 8601 in UTC. */
static const char ob_status_sql[] =
    "SELECT outbox, pending, "
    "round(extract(epoch FROM oldest_age)::numeric, 3), published, "
    "round(rate::numeric, 1), dead_letters, leader, leader_pid, "
    "to_char(leader_since AT TIME ZONE 'UTC'" CTL_SQL_ISO ", "
    "round(extract(epoch FROM now() - leader_since)::numeric, 3), "
    "transport, "
    "to_char(heartbeat_at AT TIME ZONE 'UTC'" CTL_SQL_ISO ", "
    "round(extract(epoch FROM now() - heartbeat_at)::numeric, 3), "
    "to_char(failing_since AT TIME ZONE 'UTC'" CTL_SQL_ISO ", "
    "round(extract(epoch FROM now() - failing_since)::numeric, 3), "
    "last_error, leader_alive "
    "FROM loom.outbox_status WHERE ($1::text IS NULL OR outbox = $1::text) "
    "ORDER BY outbox";

/* The columns of ob_status_sql. */
enum {
    OS_OUTBOX,
    OS_PENDING,
    OS_OLDEST,
    OS_PUBLISHED,
    OS_RATE,
    OS_DEAD,
    OS_LEADER,
    OS_PID,
    OS_SINCE,
    OS_SINCE_AGE,
    OS_TRANSPORT,
    OS_BEAT,
    OS_BEAT_AGE,
    OS_FAILING,
    OS_FAILING_AGE,
    OS_ERROR,
    OS_ALIVE
};

static const ctl_col ob_status_cols[] = {
    {"OUTBOX", "outbox", CTL_COL_TEXT, 0},
    {"PENDING", "pending", CTL_COL_NUM, 0},
    {"OLDEST", "oldest", CTL_COL_TEXT, CTL_COL_KEEP},
    {"PUBLISHED", "published", CTL_COL_NUM, 0},
    {"MSG/S", "rate", CTL_COL_NUM, 0},
    {"DEAD", "dead_letters", CTL_COL_NUM, 0},
    {"RELAY", "relay", CTL_COL_TEXT, 0},
    {"PID", "backend_pid", CTL_COL_NUM, CTL_COL_OPTIONAL},
    {"SINCE", "since", CTL_COL_TEXT, CTL_COL_OPTIONAL | CTL_COL_KEEP},
    {"TRANSPORT", "transport", CTL_COL_TEXT, CTL_COL_OPTIONAL},
    {"HEARTBEAT", "heartbeat", CTL_COL_TEXT, CTL_COL_OPTIONAL | CTL_COL_KEEP},
    {"FAILING SINCE", "failing_since", CTL_COL_TEXT,
     CTL_COL_OPTIONAL | CTL_COL_KEEP},
    {"LAST ERROR", "last_error", CTL_COL_TEXT,
     CTL_COL_OPTIONAL | CTL_COL_CUT_FIRST},
};

#define OB_NCOLS (sizeof ob_status_cols / sizeof ob_status_cols[0])

/* A table's error shows this much of its first line; --json has all. */
#define OB_ERROR_MAX 60

/* ------------------------------------------------------------------ */
/* Shared                                                              */

int
ctl_outbox_check_name(const ctl *c, const char *what, const char *s)
{
    size_t n = strlen(s);

    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' || ch == '.'))
            n = 0; /* reported below */
    }
    if (n == 0 || n > LOOM_OUTBOX_MAX_NAME)
        return ctl_usage_error(c,
                               "%s: an outbox name is 1 to %d letters, "
                               "digits, '_', '-' or '.'",
                               what, LOOM_OUTBOX_MAX_NAME);
    return CTL_OK;
}

int
ctl_outbox_exists(const ctl *c, PGconn *pg, const char *name)
{
    const char *params[1] = {name};
    PGresult *r = ctl_pg_exec(
        pg, "looking up the outbox",
        "SELECT EXISTS (SELECT 1 FROM loom.outbox_relays WHERE outbox = $1) "
        "OR EXISTS (SELECT 1 FROM loom.outbox WHERE outbox = $1) "
        "OR EXISTS (SELECT 1 FROM loom.outbox_dead_letters WHERE outbox = $1)",
        1, params);
    int found;

    if (r == NULL)
        return -1;
    found = PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    if (!found)
        ctl_fail("%s %s: outbox \"%s\" has no messages, dead letters or "
                 "relay (`loomctl outbox status` lists the outboxes there are)",
                 c->cmd, c->sub, name);
    return found;
}

int
ctl_outbox_json_out(loom__buf *b, const char *what)
{
    return ctl_topics_json_out(b, what);
}

/* OUTBOX, at most once, and no options. */
static int
ob_one_name(ctl *c, int argc, char **argv, const char **name)
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
    return *name != NULL ? ctl_outbox_check_name(c, "OUTBOX", *name) : CTL_OK;
}

/* ------------------------------------------------------------------ */
/* status                                                              */

static int
ob_alive(const PGresult *r, int i)
{
    return PQgetvalue(r, i, OS_ALIVE)[0] == 't';
}

static int
ob_failing(const PGresult *r, int i)
{
    return !PQgetisnull(r, i, OS_FAILING);
}

/* "12 min ago" from a column of seconds. */
static void
ob_ago(const PGresult *r, int i, int col, char *out, size_t len)
{
    char d[32];

    ctl_fmt_secs(strtod(PQgetvalue(r, i, col), NULL), d);
    snprintf(out, len, "%s ago", d);
}

/* The RELAY cell: the active relay's name, or none. */
static void
ob_relay_cell(ctl_table *t, const PGresult *r, int i)
{
    if (ob_alive(r, i))
        ctl_table_cell(t, PQgetvalue(r, i, OS_LEADER));
    else if (!PQgetisnull(r, i, OS_LEADER))
        ctl_table_cellf(t, "none (last: %s, gone)",
                        PQgetvalue(r, i, OS_LEADER));
    else
        ctl_table_cell(t, "none");
}

static void
ob_status_row(ctl_table *t, loom__buf *err, const PGresult *r, int i)
{
    int alive = ob_alive(r, i);
    char cell[64];

    ctl_table_cell(t, PQgetvalue(r, i, OS_OUTBOX));
    ctl_table_cell(t, PQgetvalue(r, i, OS_PENDING));
    if (PQgetisnull(r, i, OS_OLDEST))
        snprintf(cell, sizeof cell, "-");
    else
        ctl_fmt_secs(strtod(PQgetvalue(r, i, OS_OLDEST), NULL), cell);
    ctl_table_cell(t, cell);
    ctl_table_cell(t, PQgetvalue(r, i, OS_PUBLISHED));
    ctl_table_cell(t, alive ? PQgetvalue(r, i, OS_RATE) : "-");
    ctl_table_cell(t, PQgetvalue(r, i, OS_DEAD));
    ob_relay_cell(t, r, i);
    ctl_table_cell(t, alive ? PQgetvalue(r, i, OS_PID) : "");
    ob_ago(r, i, OS_SINCE_AGE, cell, sizeof cell);
    ctl_table_cell(t, alive ? cell : "");
    ctl_table_cell(t, alive ? PQgetvalue(r, i, OS_TRANSPORT) : "");
    ob_ago(r, i, OS_BEAT_AGE, cell, sizeof cell);
    ctl_table_cell(t, alive && !PQgetisnull(r, i, OS_BEAT) ? cell : "");
    ob_ago(r, i, OS_FAILING_AGE, cell, sizeof cell);
    ctl_table_cell(t, ob_failing(r, i) ? cell : "");
    ctl_topics_first_line(err, PQgetvalue(r, i, OS_ERROR), OB_ERROR_MAX);
    ctl_table_cell(t, !ob_failing(r, i) ? ""
                      : err->failed     ? "?"
                                        : loom__buf_str(err));
}

/* What to do about an outbox that needs something: no relay while
 * messages wait, dead letters. */
static void
ob_status_notes(const PGresult *r)
{
    loom__buf shown = LOOM__BUF_INIT;
    int first = 1;

    for (int i = 0; i < PQntuples(r); i++) {
        const char *name = PQgetvalue(r, i, OS_OUTBOX);
        int64_t pending = ctl_stats_i64(r, i, OS_PENDING);
        int64_t dead = ctl_stats_i64(r, i, OS_DEAD);

        if (pending > 0 && !ob_alive(r, i)) {
            printf("%soutbox %s: %" PRId64 " message%s waiting and no active "
                   "relay: start one with `loomctl relay --outbox %s`\n",
                   first ? "\n" : "", name, pending, pending == 1 ? "" : "s",
                   name);
            first = 0;
        }
        if (ob_failing(r, i)) {
            printf("%soutbox %s: %s: %s\n", first ? "\n" : "", name,
                   ob_alive(r, i) ? "publishing fails"
                                  : "its last relay was failing",
                   ctl_topics_shown(&shown, PQgetvalue(r, i, OS_ERROR)));
            first = 0;
        }
        if (dead > 0) {
            printf("%soutbox %s: %" PRId64 " dead letter%s: `loomctl outbox "
                   "dlq %s` lists them, `loomctl outbox redrive %s` sends "
                   "them again\n",
                   first ? "\n" : "", name, dead, dead == 1 ? "" : "s", name,
                   name);
            first = 0;
        }
    }
    loom__buf_free(&shown);
}

static int
ob_status_table(const PGresult *r)
{
    ctl_table *t = ctl_table_new(ob_status_cols, OB_NCOLS, 0, stdout);
    loom__buf err = LOOM__BUF_INIT;
    int rc = CTL_OK;

    if (t == NULL) {
        ctl_fail("printing the outboxes: out of memory");
        return CTL_ERR;
    }
    for (int i = 0; i < PQntuples(r); i++)
        ob_status_row(t, &err, r, i);
    if (ctl_table_flush(t) != 0) {
        ctl_fail("printing the outboxes: out of memory or a write error");
        rc = CTL_ERR;
    }
    ctl_table_free(t);
    loom__buf_free(&err);
    if (rc == CTL_OK)
        ob_status_notes(r);
    return rc;
}

/* A column's text, or null when the cell is NULL (or !cond). */
static void
ob_kstr(loom__buf *b, const char *key, const PGresult *r, int i, int col,
        int cond)
{
    ctl_json_kstr(
        b, key, cond && !PQgetisnull(r, i, col) ? PQgetvalue(r, i, col) : NULL);
}

static void
ob_kraw(loom__buf *b, const char *key, const PGresult *r, int i, int col,
        int cond)
{
    ctl_json_kraw(
        b, key, cond && !PQgetisnull(r, i, col) ? PQgetvalue(r, i, col) : NULL);
}

static void
ob_status_json(loom__buf *b, const PGresult *r, int i)
{
    int alive = ob_alive(r, i);

    loom__buf_putc(b, '{');
    ctl_json_kstr(b, "outbox", PQgetvalue(r, i, OS_OUTBOX));
    ctl_json_kraw(b, "pending", PQgetvalue(r, i, OS_PENDING));
    ob_kraw(b, "oldest_pending_seconds", r, i, OS_OLDEST, 1);
    ctl_json_kraw(b, "published", PQgetvalue(r, i, OS_PUBLISHED));
    ctl_json_kraw(b, "rate", alive ? PQgetvalue(r, i, OS_RATE) : "0");
    ctl_json_kraw(b, "dead_letters", PQgetvalue(r, i, OS_DEAD));
    ctl_json_key(b, "relay");
    if (alive) {
        loom__buf_putc(b, '{');
        ob_kstr(b, "name", r, i, OS_LEADER, 1);
        ob_kraw(b, "backend_pid", r, i, OS_PID, 1);
        ob_kstr(b, "since", r, i, OS_SINCE, 1);
        ob_kstr(b, "transport", r, i, OS_TRANSPORT, 1);
        ob_kstr(b, "heartbeat_at", r, i, OS_BEAT, 1);
        ob_kraw(b, "heartbeat_age_seconds", r, i, OS_BEAT_AGE, 1);
        loom__buf_putc(b, '}');
    } else {
        loom__buf_puts(b, "null");
    }
    /* The relay recorded as active whose session is gone. */
    ob_kstr(b, "last_relay", r, i, OS_LEADER, !alive);
    ctl_json_kraw(b, "failing", ob_failing(r, i) ? "true" : "false");
    ob_kstr(b, "failing_since", r, i, OS_FAILING, 1);
    ob_kstr(b, "last_error", r, i, OS_ERROR, 1);
    loom__buf_putc(b, '}');
}

int
ctl_outbox_status(ctl *c, int argc, char **argv)
{
    loom__buf b = LOOM__BUF_INIT;
    const char *name, *params[1];
    PGconn *pg;
    PGresult *r;
    int rc = ob_one_name(c, argc, argv, &name);

    if (rc != CTL_OK)
        return rc;
    pg = ctl_pg_open(c);
    if (pg == NULL)
        return CTL_ERR;
    params[0] = name;
    r = ctl_pg_exec(pg, "reading the outboxes", ob_status_sql, 1, params);
    if (r == NULL) {
        rc = CTL_ERR;
    } else if (PQntuples(r) == 0 && name != NULL) {
        ctl_fail("outbox status: outbox \"%s\" has no messages and no relay "
                 "has run for it (`loomctl outbox status` lists the outboxes "
                 "there are)",
                 name);
        rc = CTL_ERR;
    } else if (c->json) {
        for (int i = 0; i < PQntuples(r) && rc == CTL_OK; i++) {
            loom__buf_reset(&b);
            ob_status_json(&b, r, i);
            rc = ctl_outbox_json_out(&b, "the outboxes");
        }
    } else if (PQntuples(r) == 0) {
        printf("(no outboxes yet: a service makes one with its first "
               "loom_outbox_add(), and `loomctl relay` publishes it)\n");
    } else {
        rc = ob_status_table(r);
    }
    loom__buf_free(&b);
    PQclear(r);
    PQfinish(pg);
    return rc;
}

/* ------------------------------------------------------------------ */

int
ctl_cmd_outbox(ctl *c, int argc, char **argv)
{
    static int (*const run[])(ctl *, int, char **) = {
        ctl_outbox_status,
        ctl_outbox_dlq,
        ctl_outbox_redrive,
    };
    int which, rc = ctl_args_sub(c, argc, argv, ob_any_opts, ob_subs, &which);

    if (rc != CTL_OK)
        return rc;
    return run[which](c, argc, argv);
}
