/*
 * loomctl saga show ID: one saga, what it is doing now, and everything
 * that happened to it (loom.saga_log) as a timeline.
 *
 * Times in the timeline are relative to the saga's start. A reply, a
 * failure or a timeout also shows how long its command took: from the
 * latest entry before it that sent a command (one with a message id) for
 * the same step name and attempt, which is how the orchestrator logs a
 * command and what answers it. Message ids are shortened to their last
 * group of 12 hex digits in the table; --json has them whole.
 *
 * The saga data is protobuf bytes. With --types, it is decoded by the
 * type its definition recorded (loom.saga_definitions.data_type), or by
 * field number when that type is unknown; without, only its size shows.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fmt.h"
#include "json.h"
#include "loom/alloc.h"
#include "parked.h"
#include "sagactl.h"
#include "table.h"
#include "termtext.h"
#include "topics.h"

static const char sh_saga_sql[] =
    "SELECT i.id, i.type, i.def_version, i.state, i.step, " CTL_SAGA_STEP_NAME
    ", i.attempt, i.waiting, i.command_id::text, "
    "to_char(i.sent_at AT TIME ZONE 'UTC'" CTL_SQL_ISO ", "
    "to_char(i.deadline AT TIME ZONE 'UTC'" CTL_SQL_ISO ", "
    "round(extract(epoch FROM i.deadline - now())::numeric, 3), "
    "i.claimed_by, i.outbox, i.version, i.pending_op, i.pending_by, "
    "i.last_error, "
    "to_char(i.started_at AT TIME ZONE 'UTC'" CTL_SQL_ISO ", "
    "to_char(i.updated_at AT TIME ZONE 'UTC'" CTL_SQL_ISO ", "
    "to_char(i.ended_at AT TIME ZONE 'UTC'" CTL_SQL_ISO ", "
    "round(extract(epoch FROM coalesce(i.ended_at, now()) - i.started_at)"
    "::numeric, 3), d.data_type, octet_length(i.data), i.data, "
    /* The step's latest log entry names what runs now: the forward step,
     * or its compensation. */
    "(SELECT l.step_name FROM loom.saga_log l WHERE l.saga_id = i.id "
    "AND l.step = i.step AND l.step_name IS NOT NULL "
    "ORDER BY l.id DESC LIMIT 1), d.name IS NOT NULL "
    "FROM loom.saga_instances i " CTL_SAGA_DEF_JOIN "WHERE i.id = $1";

/* The columns of sh_saga_sql. */
enum {
    SS_ID,
    SS_TYPE,
    SS_VERSION,
    SS_STATE,
    SS_STEP,
    SS_STEP_NAME,
    SS_ATTEMPT,
    SS_WAITING,
    SS_COMMAND,
    SS_SENT,
    SS_DEADLINE,
    SS_DEADLINE_IN,
    SS_CLAIMED,
    SS_OUTBOX,
    SS_TRANSITIONS,
    SS_PENDING_OP,
    SS_PENDING_BY,
    SS_ERROR,
    SS_STARTED,
    SS_UPDATED,
    SS_ENDED,
    SS_DURATION,
    SS_DATA_TYPE,
    SS_DATA_LEN,
    SS_DATA,
    SS_RUNNING_NAME,
    SS_HAS_DEF
};

static const char sh_log_sql[] =
    "SELECT round(extract(epoch FROM l.at - i.started_at)::numeric, 3), "
    "to_char(l.at AT TIME ZONE 'UTC'" CTL_SQL_ISO ", l.step, l.step_name, "
    "l.attempt, l.kind, l.message_id::text, l.detail, "
    "CASE WHEN l.kind IN ('reply', 'failure', 'timeout', 'late_reply') THEN "
    "round(extract(epoch FROM l.at - (SELECT c.at FROM loom.saga_log c "
    "WHERE c.saga_id = l.saga_id AND c.id < l.id "
    "AND c.message_id IS NOT NULL "
    "AND c.kind NOT IN ('reply', 'failure', 'timeout', 'late_reply') "
    "AND c.step_name IS NOT DISTINCT FROM l.step_name "
    "AND c.attempt IS NOT DISTINCT FROM l.attempt "
    "ORDER BY c.id DESC LIMIT 1))::numeric, 3) END "
    "FROM loom.saga_log l JOIN loom.saga_instances i ON i.id = l.saga_id "
    "WHERE l.saga_id = $1 ORDER BY l.id";

/* The columns of sh_log_sql. */
enum {
    LG_OFFSET,
    LG_AT,
    LG_STEP,
    LG_STEP_NAME,
    LG_ATTEMPT,
    LG_KIND,
    LG_MESSAGE,
    LG_DETAIL,
    LG_TOOK
};

static const ctl_col sh_log_cols[] = {
    {"TIME", "time", CTL_COL_TEXT, CTL_COL_KEEP},
    {"STEP", "step", CTL_COL_TEXT, 0},
    {"ATTEMPT", "attempt", CTL_COL_NUM, 0},
    {"KIND", "kind", CTL_COL_TEXT, CTL_COL_KEEP},
    {"DURATION", "duration", CTL_COL_TEXT, CTL_COL_OPTIONAL | CTL_COL_KEEP},
    {"MESSAGE", "message_id", CTL_COL_TEXT, CTL_COL_OPTIONAL | CTL_COL_KEEP},
    {"DETAIL", "detail", CTL_COL_TEXT, CTL_COL_OPTIONAL | CTL_COL_CUT_FIRST},
};

#define SH_NLOG (sizeof sh_log_cols / sizeof sh_log_cols[0])

/* What show read, freed together. */
typedef struct sh_data {
    PGresult *saga, *log;
    unsigned char *data; /* the saga data's bytes (PQunescapeBytea) */
    size_t data_len;
    char *json; /* data decoded (loom_free), or NULL */
} sh_data;

static const char *
sh_val(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

/* ------------------------------------------------------------------ */
/* Reading                                                             */

/* The saga data, decoded when --types was given: by its recorded type,
 * else by field number. Undecodable bytes leave d->json NULL. */
static int
sh_decode(ctl *c, sh_data *d)
{
    const char *type = sh_val(d->saga, 0, SS_DATA_TYPE);
    loom_err rc;

    d->data = PQunescapeBytea(
        (const unsigned char *) PQgetvalue(d->saga, 0, SS_DATA), &d->data_len);
    if (d->data == NULL) {
        ctl_fail("saga show: reading the saga data: out of memory");
        return CTL_ERR;
    }
    if (c->ntypes == 0)
        return CTL_OK;
    if (ctl_registry(c) != CTL_OK)
        return CTL_ERR;
    rc = loom_registry_to_json(c->reg, type, d->data, d->data_len, &d->json);
    if (rc != LOOM_OK && rc != LOOM_EDECODE) {
        ctl_fail("saga show: decoding the saga data: %s", loom_strerror(rc));
        return CTL_ERR;
    }
    return CTL_OK;
}

static int
sh_read(ctl *c, PGconn *pg, const char *id, sh_data *d)
{
    const char *params[1] = {id};

    d->saga = ctl_pg_exec(pg, "reading the saga", sh_saga_sql, 1, params);
    if (d->saga == NULL)
        return CTL_ERR;
    if (PQntuples(d->saga) == 0)
        return ctl_saga_not_found(c, id);
    d->log = ctl_pg_exec(pg, "reading the saga's log", sh_log_sql, 1, params);
    if (d->log == NULL)
        return CTL_ERR;
    return sh_decode(c, d);
}

static void
sh_free(sh_data *d)
{
    PQclear(d->saga);
    PQclear(d->log);
    PQfreemem(d->data);
    loom_free(d->json);
}

/* ------------------------------------------------------------------ */
/* The header                                                          */

/* Prints "key  value" with the value (of any length) made safe for a
 * terminal. */
static void
sh_kv(const char *key, const char *value)
{
    loom__buf shown = LOOM__BUF_INIT;

    ctl_term_put(&shown, value, strlen(value));
    printf("%-11s %s\n", key, shown.failed ? "?" : shown.data);
    loom__buf_free(&shown);
}

/* A line whose value is formatted into `b` first (loom__buf has no
 * vprintf form, hence a macro). */
#define SH_KVF(b, key, ...)                                                    \
    do {                                                                       \
        loom__buf_reset(b);                                                    \
        loom__buf_printf(b, __VA_ARGS__);                                      \
        sh_kv(key, (b)->failed ? "?" : loom__buf_str(b));                      \
    } while (0)

/* "1 ReserveInventory", and what runs in it when that is another rpc
 * (its compensation), with the attempt. */
static void
sh_step_line(loom__buf *b, const PGresult *r)
{
    loom__buf name = LOOM__BUF_INIT;
    const char *running = sh_val(r, 0, SS_RUNNING_NAME);
    const char *state = PQgetvalue(r, 0, SS_STATE);
    int compensating = strcmp(state, "COMPENSATING") == 0 ||
                       strcmp(state, "COMPENSATION_FAILED") == 0;

    /* "1 ChargePayment", or "1" when no definition names it. */
    loom__buf_puts(&name, PQgetvalue(r, 0, SS_STEP));
    if (!PQgetisnull(r, 0, SS_STEP_NAME))
        loom__buf_printf(&name, " %s", PQgetvalue(r, 0, SS_STEP_NAME));
    if (compensating && running != NULL &&
        (PQgetisnull(r, 0, SS_STEP_NAME) ||
         strcmp(running, PQgetvalue(r, 0, SS_STEP_NAME)) != 0))
        SH_KVF(b, "step", "%s, compensated by %s (attempt %s)",
               loom__buf_str(&name), running, PQgetvalue(r, 0, SS_ATTEMPT));
    else if (compensating)
        SH_KVF(b, "step", "%s, being compensated (attempt %s)",
               loom__buf_str(&name), PQgetvalue(r, 0, SS_ATTEMPT));
    else
        SH_KVF(b, "step", "%s (attempt %s)", loom__buf_str(&name),
               PQgetvalue(r, 0, SS_ATTEMPT));
    loom__buf_free(&name);
}

/* What the saga waits for, and until when. */
static void
sh_waiting_line(loom__buf *b, const PGresult *r)
{
    const char *waiting = sh_val(r, 0, SS_WAITING);
    const char *cmd = sh_val(r, 0, SS_COMMAND);
    double in = strtod(PQgetvalue(r, 0, SS_DEADLINE_IN), NULL);
    char when[48], d[32];

    if (waiting == NULL)
        return;
    ctl_fmt_secs(in < 0 ? -in : in, d);
    if (PQgetisnull(r, 0, SS_DEADLINE))
        snprintf(when, sizeof when, "no deadline");
    else if (in >= 0)
        snprintf(when, sizeof when, "in %s", d);
    else
        snprintf(when, sizeof when, "due %s ago", d);
    if (strcmp(waiting, "reply") == 0)
        SH_KVF(b, "waiting", "for the reply to command %s, until %s (%s)",
               cmd != NULL ? cmd : "?", PQgetvalue(r, 0, SS_DEADLINE), when);
    else
        SH_KVF(b, "waiting", "to retry, at %s (%s)",
               PQgetvalue(r, 0, SS_DEADLINE), when);
}

static void
sh_data_line(ctl *c, loom__buf *b, const sh_data *d)
{
    const char *type = sh_val(d->saga, 0, SS_DATA_TYPE);

    if (d->json != NULL && type != NULL &&
        loom_registry_find(c->reg, type) != NULL)
        sh_kv("data", d->json);
    else if (d->json != NULL)
        SH_KVF(b, "data", "%s (by field number: %s)", d->json,
               type != NULL ? "its type is not in --types"
                            : "its definition records no data type");
    else if (c->ntypes > 0)
        SH_KVF(b, "data", "%zu byte%s, not decodable as %s", d->data_len,
               d->data_len == 1 ? "" : "s", type != NULL ? type : "protobuf");
    else
        SH_KVF(b, "data", "%zu byte%s%s%s (give --types LIB.so to decode)",
               d->data_len, d->data_len == 1 ? "" : "s",
               type != NULL ? " of " : "", type != NULL ? type : "");
}

static void
sh_header(ctl *c, const sh_data *d)
{
    const PGresult *r = d->saga;
    loom__buf b = LOOM__BUF_INIT;
    char took[32];

    ctl_saga_fmt_took(strtod(PQgetvalue(r, 0, SS_DURATION), NULL), took);
    sh_kv("saga", PQgetvalue(r, 0, SS_ID));
    SH_KVF(&b, "type", "%s, version %s%s", PQgetvalue(r, 0, SS_TYPE),
           PQgetvalue(r, 0, SS_VERSION),
           PQgetvalue(r, 0, SS_HAS_DEF)[0] == 't'
               ? ""
               : " (no orchestrator registered this definition)");
    sh_kv("state", PQgetvalue(r, 0, SS_STATE));
    sh_step_line(&b, r);
    sh_waiting_line(&b, r);
    SH_KVF(&b, "started", "%s", PQgetvalue(r, 0, SS_STARTED));
    if (PQgetisnull(r, 0, SS_ENDED))
        SH_KVF(&b, "running", "%s so far, last change %s", took,
               PQgetvalue(r, 0, SS_UPDATED));
    else
        SH_KVF(&b, "ended", "%s (took %s)", PQgetvalue(r, 0, SS_ENDED), took);
    SH_KVF(&b, "changes", "%s transitions; commands go through outbox %s",
           PQgetvalue(r, 0, SS_TRANSITIONS), PQgetvalue(r, 0, SS_OUTBOX));
    if (!PQgetisnull(r, 0, SS_ERROR))
        sh_kv("last error", PQgetvalue(r, 0, SS_ERROR));
    if (!PQgetisnull(r, 0, SS_PENDING_OP))
        SH_KVF(&b, "pending",
               "%s requested by %s, not applied yet (a "
               "running orchestrator applies it)",
               PQgetvalue(r, 0, SS_PENDING_OP),
               PQgetisnull(r, 0, SS_PENDING_BY)
                   ? "?"
                   : PQgetvalue(r, 0, SS_PENDING_BY));
    sh_data_line(c, &b, d);
    loom__buf_free(&b);
}

/* ------------------------------------------------------------------ */
/* The timeline                                                        */

/* "+0.120 s", "+2 min": the time since the saga started. */
static void
sh_offset(double secs, char out[48])
{
    char d[32];

    if (secs < 60) {
        snprintf(out, 48, "+%.3f s", secs < 0 ? 0 : secs);
        return;
    }
    ctl_fmt_secs(secs, d);
    snprintf(out, 48, "+%s", d);
}

static void
sh_log_row(ctl_table *t, const PGresult *r, int i)
{
    const char *msg;
    char cell[48];

    sh_offset(strtod(PQgetvalue(r, i, LG_OFFSET), NULL), cell);
    ctl_table_cell(t, cell);
    /* Rows without a step name are about the saga (started, completed,
     * compensated, aborted): a bare step number would only mislead. */
    if (!PQgetisnull(r, i, LG_STEP_NAME))
        ctl_table_cell(t, PQgetvalue(r, i, LG_STEP_NAME));
    else
        ctl_table_cell(t, "");
    ctl_table_cell(t, PQgetvalue(r, i, LG_ATTEMPT));
    ctl_table_cell(t, PQgetvalue(r, i, LG_KIND));
    if (PQgetisnull(r, i, LG_TOOK))
        cell[0] = '\0';
    else
        ctl_saga_fmt_took(strtod(PQgetvalue(r, i, LG_TOOK), NULL), cell);
    ctl_table_cell(t, cell);
    /* The last group: version 7 ids of one saga share their first
     * digits (a timestamp), so the end is what tells them apart. */
    msg = PQgetvalue(r, i, LG_MESSAGE);
    ctl_table_cell(t, strlen(msg) == 36 ? msg + 24 : msg);
    ctl_table_cell(t, PQgetvalue(r, i, LG_DETAIL));
}

static int
sh_timeline(const PGresult *r)
{
    ctl_table *t;
    int rc = CTL_OK;

    printf("\n");
    if (PQntuples(r) == 0) {
        printf("(nothing logged)\n");
        return CTL_OK;
    }
    t = ctl_table_new(sh_log_cols, SH_NLOG, 0, stdout);
    if (t == NULL) {
        ctl_fail("printing the saga's log: out of memory");
        return CTL_ERR;
    }
    for (int i = 0; i < PQntuples(r); i++)
        sh_log_row(t, r, i);
    if (ctl_table_flush(t) != 0) {
        ctl_fail("printing the saga's log: out of memory or a write error");
        rc = CTL_ERR;
    }
    ctl_table_free(t);
    return rc;
}

/* ------------------------------------------------------------------ */
/* JSON                                                                */

static void
sh_kstr(loom__buf *b, const char *key, const PGresult *r, int row, int col)
{
    ctl_json_kstr(b, key, sh_val(r, row, col));
}

static void
sh_kraw(loom__buf *b, const char *key, const PGresult *r, int row, int col)
{
    ctl_json_kraw(b, key, sh_val(r, row, col));
}

static void
sh_log_json(loom__buf *b, const PGresult *r)
{
    ctl_json_key(b, "log");
    loom__buf_putc(b, '[');
    for (int i = 0; i < PQntuples(r); i++) {
        loom__buf_puts(b, i > 0 ? ",{" : "{");
        ctl_json_kstr(b, "at", PQgetvalue(r, i, LG_AT));
        ctl_json_kraw(b, "offset_seconds", PQgetvalue(r, i, LG_OFFSET));
        sh_kraw(b, "step", r, i, LG_STEP);
        sh_kstr(b, "step_name", r, i, LG_STEP_NAME);
        sh_kraw(b, "attempt", r, i, LG_ATTEMPT);
        ctl_json_kstr(b, "kind", PQgetvalue(r, i, LG_KIND));
        sh_kraw(b, "duration_seconds", r, i, LG_TOOK);
        sh_kstr(b, "message_id", r, i, LG_MESSAGE);
        sh_kstr(b, "detail", r, i, LG_DETAIL);
        loom__buf_putc(b, '}');
    }
    loom__buf_putc(b, ']');
}

static int
sh_json(const sh_data *d)
{
    const PGresult *r = d->saga;
    loom__buf b = LOOM__BUF_INIT;
    int rc;

    loom__buf_putc(&b, '{');
    sh_kstr(&b, "id", r, 0, SS_ID);
    sh_kstr(&b, "type", r, 0, SS_TYPE);
    sh_kraw(&b, "version", r, 0, SS_VERSION);
    sh_kstr(&b, "state", r, 0, SS_STATE);
    sh_kraw(&b, "step", r, 0, SS_STEP);
    sh_kstr(&b, "step_name", r, 0, SS_STEP_NAME);
    sh_kstr(&b, "running", r, 0, SS_RUNNING_NAME);
    sh_kraw(&b, "attempt", r, 0, SS_ATTEMPT);
    sh_kstr(&b, "waiting", r, 0, SS_WAITING);
    sh_kstr(&b, "command_id", r, 0, SS_COMMAND);
    sh_kstr(&b, "sent_at", r, 0, SS_SENT);
    sh_kstr(&b, "deadline", r, 0, SS_DEADLINE);
    sh_kstr(&b, "claimed_by", r, 0, SS_CLAIMED);
    sh_kstr(&b, "outbox", r, 0, SS_OUTBOX);
    sh_kraw(&b, "transitions", r, 0, SS_TRANSITIONS);
    sh_kstr(&b, "pending_op", r, 0, SS_PENDING_OP);
    sh_kstr(&b, "pending_by", r, 0, SS_PENDING_BY);
    sh_kstr(&b, "last_error", r, 0, SS_ERROR);
    sh_kstr(&b, "started_at", r, 0, SS_STARTED);
    sh_kstr(&b, "updated_at", r, 0, SS_UPDATED);
    sh_kstr(&b, "ended_at", r, 0, SS_ENDED);
    sh_kraw(&b, "duration_seconds", r, 0, SS_DURATION);
    sh_kstr(&b, "data_type", r, 0, SS_DATA_TYPE);
    sh_kraw(&b, "data_bytes", r, 0, SS_DATA_LEN);
    ctl_json_kraw(&b, "data", d->json);
    if (d->json == NULL) {
        ctl_json_key(&b, "data_base64");
        loom__json_base64(&b, d->data, d->data_len);
    }
    sh_log_json(&b, d->log);
    loom__buf_putc(&b, '}');
    rc = ctl_topics_json_out(&b, "the saga");
    loom__buf_free(&b);
    return rc;
}

/* ------------------------------------------------------------------ */

int
ctl_saga_show(ctl *c, int argc, char **argv)
{
    const char *val, *id = NULL;
    sh_data d;
    PGconn *pg;
    ctl_args a;
    int opt, rc;

    ctl_args_init(&a, argc, argv);
    while ((opt = ctl_args_next(c, &a, NULL, &val)) != CTL_ARG_END) {
        if (opt == CTL_ARG_BAD)
            return CTL_USAGE;
        if (id != NULL)
            return ctl_usage_error(c, "unexpected argument \"%s\"", val);
        id = val;
    }
    if (id == NULL)
        return ctl_usage_error(c, "give the saga's ID (`loomctl saga list` "
                                  "shows them)");
    if ((rc = ctl_saga_check_id(c, id)) != CTL_OK)
        return rc;
    if ((pg = ctl_pg_open(c)) == NULL)
        return CTL_ERR;
    memset(&d, 0, sizeof d);
    rc = sh_read(c, pg, id, &d);
    if (rc == CTL_OK && c->json) {
        rc = sh_json(&d);
    } else if (rc == CTL_OK) {
        sh_header(c, &d);
        rc = sh_timeline(d.log);
    }
    sh_free(&d);
    PQfinish(pg);
    return rc;
}
