/*
 * loomctl saga: sagas and their orchestration (loom/saga.h). This file
 * dispatches to the subcommands and holds `list` and `diagram`; `show`
 * is in saga_show.c, the operator's requests (retry, skip, abort) in
 * saga_request.c.
 *
 * list prints the newest sagas first with what each is doing, then how
 * many sagas there are in each state. Those in COMPENSATION_FAILED have
 * stopped for good until an operator decides: the notes under the table
 * say so and how to look at them.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fmt.h"
#include "json.h"
#include "parked.h"
#include "pgwire.h"
#include "sagactl.h"
#include "stats.h"
#include "table.h"
#include "termtext.h"
#include "topics.h"

enum { SG_LIST, SG_SHOW, SG_RETRY, SG_SKIP, SG_ABORT, SG_DIAGRAM };
enum {
    SG_OPT_STATE = 1,
    SG_OPT_TYPE,
    SG_OPT_LIMIT,
    SG_OPT_VERSION,
    SG_OPT_BY,
    SG_OPT_WAIT
};

static const char *const sg_subs[] = {"list",  "show",    "retry", "skip",
                                      "abort", "diagram", NULL};

/* Every subcommand's options with their values, to find the subcommand
 * among them ("saga --state RUNNING list" works too). */
static const ctl_opt sg_any_opts[] = {
    {"--state", 1, SG_OPT_STATE},
    {"--type", 1, SG_OPT_TYPE},
    {"--limit", 1, SG_OPT_LIMIT},
    {"--version", 1, SG_OPT_VERSION},
    {"--by", 1, SG_OPT_BY},
    {"--wait", 1, SG_OPT_WAIT},
    {NULL, 0, 0},
};
static const ctl_opt sg_list_opts[] = {
    {"--state", 1, SG_OPT_STATE},
    {"--type", 1, SG_OPT_TYPE},
    {"--limit", 1, SG_OPT_LIMIT},
    {NULL, 0, 0},
};
static const ctl_opt sg_diagram_opts[] = {
    {"--version", 1, SG_OPT_VERSION},
    {NULL, 0, 0},
};

/* A table's last error shows this much of its first line; --json and
 * `saga show` have all of it. */
#define SG_ERROR_MAX 60

/* The states in the order of the life of a saga, for the counts. */
static const char *const sg_states[] = {
    "RUNNING",     "COMPENSATING",        "COMPLETED",
    "COMPENSATED", "COMPENSATION_FAILED", "ABORTED",
};
#define SG_NSTATES (sizeof sg_states / sizeof sg_states[0])
#define SG_FAILED  4 /* COMPENSATION_FAILED in sg_states */

static const char sg_list_sql[] =
    "SELECT i.id, i.type, i.def_version, i.state, i.step, " CTL_SAGA_STEP_NAME
    ", i.attempt, i.waiting, "
    "to_char(i.started_at AT TIME ZONE 'UTC'" CTL_SQL_ISO ", "
    "to_char(i.updated_at AT TIME ZONE 'UTC'" CTL_SQL_ISO ", "
    "to_char(i.ended_at AT TIME ZONE 'UTC'" CTL_SQL_ISO ", "
    "round(extract(epoch FROM coalesce(i.ended_at, now()) - i.started_at)"
    "::numeric, 3), i.pending_op, i.pending_by, i.last_error "
    "FROM loom.saga_instances i " CTL_SAGA_DEF_JOIN
    "WHERE ($1::text IS NULL OR i.state = $1::text) "
    "AND ($2::text IS NULL OR i.type = $2::text) "
    "ORDER BY i.started_at DESC, i.id DESC LIMIT $3::bigint";

/* The columns of sg_list_sql. */
enum {
    SL_ID,
    SL_TYPE,
    SL_VERSION,
    SL_STATE,
    SL_STEP,
    SL_STEP_NAME,
    SL_ATTEMPT,
    SL_WAITING,
    SL_STARTED,
    SL_UPDATED,
    SL_ENDED,
    SL_DURATION,
    SL_PENDING_OP,
    SL_PENDING_BY,
    SL_ERROR
};

/* Sagas per state, of the --type given (all states: --state narrows the
 * table, and the counts show what it leaves out). */
static const char sg_counts_sql[] =
    "SELECT state, count(*) FROM loom.saga_instances "
    "WHERE ($1::text IS NULL OR type = $1::text) GROUP BY state";

static const ctl_col sg_list_cols[] = {
    {"ID", "id", CTL_COL_TEXT, 0},
    {"TYPE", "type", CTL_COL_TEXT, 0},
    {"STATE", "state", CTL_COL_TEXT, CTL_COL_KEEP},
    {"STEP", "step", CTL_COL_TEXT, 0},
    {"ATTEMPT", "attempt", CTL_COL_NUM, 0},
    {"STARTED", "started_at", CTL_COL_TEXT, CTL_COL_KEEP},
    {"DURATION", "duration", CTL_COL_TEXT, CTL_COL_KEEP},
    {"PENDING", "pending", CTL_COL_TEXT, CTL_COL_OPTIONAL},
    {"LAST ERROR", "last_error", CTL_COL_TEXT,
     CTL_COL_OPTIONAL | CTL_COL_CUT_FIRST},
};

#define SG_NCOLS (sizeof sg_list_cols / sizeof sg_list_cols[0])

/* ------------------------------------------------------------------ */
/* Shared                                                              */

int
ctl_saga_check_id(const ctl *c, const char *id)
{
    size_t n = strlen(id);
    int ok = n > 0 && n <= LOOM_SAGA_MAX_ID && loom__utf8_valid(id, n);

    for (size_t i = 0; ok && i < n; i++)
        ok = (unsigned char) id[i] >= 0x20 && id[i] != 0x7f;
    if (!ok)
        return ctl_usage_error(c,
                               "ID: a saga id is 1 to %d bytes of UTF-8 "
                               "without control characters",
                               LOOM_SAGA_MAX_ID);
    return CTL_OK;
}

int
ctl_saga_not_found(const ctl *c, const char *id)
{
    loom__buf shown = LOOM__BUF_INIT;

    ctl_fail("saga %s: saga \"%s\" does not exist (`loomctl saga list` "
             "lists the sagas there are)",
             c->sub, ctl_topics_shown(&shown, id));
    loom__buf_free(&shown);
    return CTL_ERR;
}

const char *
ctl_saga_step(loom__buf *b, const PGresult *r, int row, int step_col,
              int name_col)
{
    loom__buf_reset(b);
    if (!PQgetisnull(r, row, name_col))
        loom__buf_puts(b, PQgetvalue(r, row, name_col));
    else
        loom__buf_printf(b, "#%s", PQgetvalue(r, row, step_col));
    return b->failed ? "?" : b->data;
}

void
ctl_saga_fmt_took(double secs, char out[32])
{
    if (secs >= 0 && secs < 1)
        snprintf(out, 32, "%d ms", (int) (secs * 1000 + 0.5));
    else
        ctl_fmt_secs(secs, out);
}

/* NULL for a NULL cell. */
static const char *
sg_val(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

/* ------------------------------------------------------------------ */
/* list                                                                */

typedef struct sg_list_args {
    const char *state; /* upper case, or NULL */
    const char *type;
    int64_t limit;
    char state_buf[32];
} sg_list_args;

/* --state: a state's name in any case. */
static int
sg_parse_state(const ctl *c, const char *val, sg_list_args *a)
{
    size_t n = strlen(val);

    for (size_t i = 0; i < n && i + 1 < sizeof a->state_buf; i++) {
        char ch = val[i];
        a->state_buf[i] = ch >= 'a' && ch <= 'z' ? (char) (ch - 32) : ch;
        a->state_buf[i + 1] = '\0';
    }
    if (n == 0 || n >= sizeof a->state_buf ||
        loom_saga_state_parse(a->state_buf) == 0)
        return ctl_usage_error(c,
                               "--state: no state \"%s\" (expected RUNNING, "
                               "COMPENSATING, COMPLETED, COMPENSATED, "
                               "COMPENSATION_FAILED or ABORTED)",
                               val);
    a->state = a->state_buf;
    return CTL_OK;
}

static int
sg_list_parse(ctl *c, int argc, char **argv, sg_list_args *la)
{
    const char *val;
    ctl_args a;
    int opt, rc = CTL_OK;

    memset(la, 0, sizeof *la);
    la->limit = 100;
    ctl_args_init(&a, argc, argv);
    while (rc == CTL_OK &&
           (opt = ctl_args_next(c, &a, sg_list_opts, &val)) != CTL_ARG_END) {
        if (opt == CTL_ARG_BAD)
            return CTL_USAGE;
        if (opt == SG_OPT_STATE)
            rc = sg_parse_state(c, val, la);
        else if (opt == SG_OPT_TYPE)
            rc = ctl_topics_check_text(c, "--type", la->type = val);
        else if (opt == SG_OPT_LIMIT)
            rc = ctl_parse_i64(c, "--limit", val, 1, 100000, &la->limit);
        else
            return ctl_usage_error(c, "unexpected argument \"%s\"", val);
    }
    return rc;
}

/* The DURATION cell: how long a finished saga took, or how long an
 * unfinished one has been going. */
static void
sg_duration(const PGresult *r, int i, char *out, size_t len)
{
    char d[32];

    ctl_saga_fmt_took(strtod(PQgetvalue(r, i, SL_DURATION), NULL), d);
    snprintf(out, len, "%s%s", d, PQgetisnull(r, i, SL_ENDED) ? " so far" : "");
}

static int
sg_undoing(const char *state)
{
    return strcmp(state, "COMPENSATING") == 0 ||
           strcmp(state, "COMPENSATION_FAILED") == 0;
}

static void
sg_list_row(ctl_table *t, loom__buf *scratch, const PGresult *r, int i)
{
    char cell[64];

    ctl_table_cell(t, PQgetvalue(r, i, SL_ID));
    ctl_table_cellf(t, "%s@%s", PQgetvalue(r, i, SL_TYPE),
                    PQgetvalue(r, i, SL_VERSION));
    ctl_table_cell(t, PQgetvalue(r, i, SL_STATE));
    /* A compensating saga's step is the forward step being undone. */
    ctl_table_cellf(t, "%s%s",
                    sg_undoing(PQgetvalue(r, i, SL_STATE)) ? "undo " : "",
                    ctl_saga_step(scratch, r, i, SL_STEP, SL_STEP_NAME));
    ctl_table_cell(t, PQgetvalue(r, i, SL_ATTEMPT));
    ctl_table_cell(t, PQgetvalue(r, i, SL_STARTED));
    sg_duration(r, i, cell, sizeof cell);
    ctl_table_cell(t, cell);
    if (PQgetisnull(r, i, SL_PENDING_OP))
        ctl_table_cell(t, "");
    else
        ctl_table_cellf(t, "%s by %s", PQgetvalue(r, i, SL_PENDING_OP),
                        PQgetisnull(r, i, SL_PENDING_BY)
                            ? "?"
                            : PQgetvalue(r, i, SL_PENDING_BY));
    ctl_topics_first_line(scratch, PQgetvalue(r, i, SL_ERROR), SG_ERROR_MAX);
    ctl_table_cell(t, scratch->failed ? "?" : loom__buf_str(scratch));
}

static void
sg_list_json(loom__buf *b, const PGresult *r, int i)
{
    loom__buf_putc(b, '{');
    ctl_json_kstr(b, "id", PQgetvalue(r, i, SL_ID));
    ctl_json_kstr(b, "type", PQgetvalue(r, i, SL_TYPE));
    ctl_json_kraw(b, "version", PQgetvalue(r, i, SL_VERSION));
    ctl_json_kstr(b, "state", PQgetvalue(r, i, SL_STATE));
    ctl_json_kraw(b, "step", PQgetvalue(r, i, SL_STEP));
    ctl_json_kstr(b, "step_name", sg_val(r, i, SL_STEP_NAME));
    ctl_json_kraw(b, "attempt", PQgetvalue(r, i, SL_ATTEMPT));
    ctl_json_kstr(b, "waiting", sg_val(r, i, SL_WAITING));
    ctl_json_kstr(b, "started_at", PQgetvalue(r, i, SL_STARTED));
    ctl_json_kstr(b, "updated_at", PQgetvalue(r, i, SL_UPDATED));
    ctl_json_kstr(b, "ended_at", sg_val(r, i, SL_ENDED));
    ctl_json_kraw(b, "duration_seconds", PQgetvalue(r, i, SL_DURATION));
    ctl_json_kstr(b, "pending_op", sg_val(r, i, SL_PENDING_OP));
    ctl_json_kstr(b, "pending_by", sg_val(r, i, SL_PENDING_BY));
    ctl_json_kstr(b, "last_error", sg_val(r, i, SL_ERROR));
    loom__buf_putc(b, '}');
}

/* "4 sagas: 1 RUNNING, 2 COMPLETED, 1 COMPENSATION_FAILED", and what to
 * do about the ones that wait for an operator. */
static void
sg_list_counts(const PGresult *counts, const sg_list_args *la, int shown)
{
    int64_t n[SG_NSTATES] = {0}, total = 0, matched;
    int first = 1;

    for (int i = 0; i < PQntuples(counts); i++) {
        for (size_t k = 0; k < SG_NSTATES; k++) {
            if (strcmp(PQgetvalue(counts, i, 0), sg_states[k]) == 0)
                n[k] = ctl_stats_i64(counts, i, 1);
        }
        total += ctl_stats_i64(counts, i, 1);
    }
    printf("\n%" PRId64 " saga%s%s:", total, total == 1 ? "" : "s",
           la->type != NULL ? " of this type" : " in all");
    for (size_t k = 0; k < SG_NSTATES; k++) {
        if (n[k] > 0) {
            printf("%s %" PRId64 " %s", first ? "" : ",", n[k], sg_states[k]);
            first = 0;
        }
    }
    printf("\n");
    matched = total;
    for (size_t k = 0; la->state != NULL && k < SG_NSTATES; k++) {
        if (strcmp(la->state, sg_states[k]) == 0)
            matched = n[k];
    }
    if (matched > shown)
        printf("(showing the newest %d of %" PRId64 "; --limit N shows "
               "more)\n",
               shown, matched);
    if (n[SG_FAILED] > 0)
        printf("%" PRId64 " saga%s stopped in COMPENSATION_FAILED and wait%s "
               "for an operator: `loomctl saga list --state "
               "COMPENSATION_FAILED` lists them, `loomctl saga show ID` "
               "tells why, then `loomctl saga retry|skip|abort ID`\n",
               n[SG_FAILED], n[SG_FAILED] == 1 ? "" : "s",
               n[SG_FAILED] == 1 ? "s" : "");
}

static int
sg_list_print(const ctl *c, const PGresult *r, const PGresult *counts,
              const sg_list_args *la)
{
    loom__buf b = LOOM__BUF_INIT;
    ctl_table *t;
    int rc = CTL_OK;

    if (c->json) {
        for (int i = 0; i < PQntuples(r) && rc == CTL_OK; i++) {
            loom__buf_reset(&b);
            sg_list_json(&b, r, i);
            rc = ctl_topics_json_out(&b, "the sagas");
        }
        loom__buf_free(&b);
        return rc;
    }
    if (PQntuples(r) == 0) {
        printf(la->state == NULL && la->type == NULL
                   ? "(no sagas yet: a service starts one with "
                     "loom_saga_start())\n"
                   : "(no sagas match)\n");
        if (PQntuples(counts) > 0)
            sg_list_counts(counts, la, 0);
        return CTL_OK;
    }
    t = ctl_table_new(sg_list_cols, SG_NCOLS, 0, stdout);
    if (t == NULL) {
        ctl_fail("printing the sagas: out of memory");
        return CTL_ERR;
    }
    for (int i = 0; i < PQntuples(r); i++)
        sg_list_row(t, &b, r, i);
    if (ctl_table_flush(t) != 0) {
        ctl_fail("printing the sagas: out of memory or a write error");
        rc = CTL_ERR;
    }
    ctl_table_free(t);
    loom__buf_free(&b);
    if (rc == CTL_OK)
        sg_list_counts(counts, la, PQntuples(r));
    return rc;
}

int
ctl_saga_list(ctl *c, int argc, char **argv)
{
    PGresult *r = NULL, *counts = NULL;
    const char *params[3];
    char limit_s[24];
    sg_list_args la;
    PGconn *pg;
    int rc = sg_list_parse(c, argc, argv, &la);

    if (rc != CTL_OK)
        return rc;
    if ((pg = ctl_pg_open(c)) == NULL)
        return CTL_ERR;
    snprintf(limit_s, sizeof limit_s, "%" PRId64, la.limit);
    params[0] = la.state;
    params[1] = la.type;
    params[2] = limit_s;
    r = ctl_pg_exec(pg, "listing sagas", sg_list_sql, 3, params);
    if (r != NULL && !c->json)
        counts =
            ctl_pg_exec(pg, "counting sagas", sg_counts_sql, 1, params + 1);
    if (r == NULL || (!c->json && counts == NULL))
        rc = CTL_ERR;
    else
        rc = sg_list_print(c, r, counts, &la);
    PQclear(r);
    PQclear(counts);
    PQfinish(pg);
    return rc;
}

/* ------------------------------------------------------------------ */
/* diagram                                                             */

static const char sg_diagram_sql[] =
    "SELECT version, diagram FROM loom.saga_definitions WHERE name = $1 "
    "AND ($2::integer IS NULL OR version = $2::integer) "
    "ORDER BY version DESC LIMIT 1";

static const char sg_known_sql[] =
    "SELECT name, string_agg(version::text, ', ' ORDER BY version) "
    "FROM loom.saga_definitions GROUP BY name ORDER BY name";

/* The types orchestrators registered, for the error about an unknown
 * one: "shop.CreateOrder (versions 1, 2), shop.Refund (version 1)". */
static int
sg_known_types(PGconn *pg, loom__buf *out)
{
    PGresult *r = ctl_pg_exec(pg, "listing saga types", sg_known_sql, 0, NULL);

    if (r == NULL)
        return CTL_ERR;
    for (int i = 0; i < PQntuples(r); i++)
        loom__buf_printf(out, "%s%s (version%s %s)", i > 0 ? ", " : "",
                         PQgetvalue(r, i, 0),
                         strchr(PQgetvalue(r, i, 1), ',') != NULL ? "s" : "",
                         PQgetvalue(r, i, 1));
    PQclear(r);
    return CTL_OK;
}

/* The versions of `type` registered ("1, 2"), or NULL for none. */
static PGresult *
sg_versions(PGconn *pg, const char *type)
{
    const char *params[1] = {type};

    return ctl_pg_exec(pg, "listing the type's versions",
                       "SELECT string_agg(version::text, ', ' ORDER BY "
                       "version) FROM loom.saga_definitions WHERE name = $1",
                       1, params);
}

static int
sg_diagram_missing(PGconn *pg, const char *type, const char *version)
{
    loom__buf known = LOOM__BUF_INIT, shown = LOOM__BUF_INIT;
    PGresult *versions = version != NULL ? sg_versions(pg, type) : NULL;

    if ((version != NULL && versions == NULL) ||
        sg_known_types(pg, &known) != CTL_OK) {
        PQclear(versions);
        loom__buf_free(&known);
        return CTL_ERR;
    }
    ctl_topics_shown(&shown, type);
    if (versions != NULL && !PQgetisnull(versions, 0, 0))
        ctl_fail("saga diagram: saga type \"%s\" has no version %s (its "
                 "versions: %s)",
                 loom__buf_str(&shown), version, PQgetvalue(versions, 0, 0));
    else if (known.len == 0)
        ctl_fail("saga diagram: no saga type \"%s\": no definitions are "
                 "registered yet (an orchestrator records the types it "
                 "runs when it starts)",
                 loom__buf_str(&shown));
    else
        ctl_fail("saga diagram: no saga type \"%s\"; known types: %s",
                 loom__buf_str(&shown), loom__buf_str(&known));
    PQclear(versions);
    loom__buf_free(&known);
    loom__buf_free(&shown);
    return CTL_ERR;
}

/* Writes the diagram as it is stored, line by line, each line made safe
 * for a terminal (see termtext.h) with its line breaks kept. */
static void
sg_diagram_print(const char *text)
{
    loom__buf line = LOOM__BUF_INIT;

    while (*text != '\0') {
        size_t n = strcspn(text, "\n");
        loom__buf_reset(&line);
        ctl_term_put(&line, text, n);
        printf("%s\n", line.failed ? "?" : loom__buf_str(&line));
        text += n + (text[n] == '\n');
    }
    loom__buf_free(&line);
}

int
ctl_saga_diagram(ctl *c, int argc, char **argv)
{
    const char *val, *type = NULL, *version = NULL, *params[2];
    loom__buf b = LOOM__BUF_INIT;
    int64_t v;
    PGresult *r;
    PGconn *pg;
    ctl_args a;
    int opt, rc = CTL_OK;

    ctl_args_init(&a, argc, argv);
    while (rc == CTL_OK &&
           (opt = ctl_args_next(c, &a, sg_diagram_opts, &val)) != CTL_ARG_END) {
        if (opt == CTL_ARG_BAD)
            return CTL_USAGE;
        if (opt == SG_OPT_VERSION)
            rc = ctl_parse_i64(c, "--version", version = val, 1, INT32_MAX, &v);
        else if (type != NULL)
            return ctl_usage_error(c, "unexpected argument \"%s\"", val);
        else
            rc = ctl_topics_check_text(c, "TYPE", type = val);
    }
    if (rc != CTL_OK)
        return rc;
    if (type == NULL)
        return ctl_usage_error(c, "give the saga TYPE (\"shop.CreateOrder\"; "
                                  "`loomctl saga list` shows types)");
    if ((pg = ctl_pg_open(c)) == NULL)
        return CTL_ERR;
    params[0] = type;
    params[1] = version;
    r = ctl_pg_exec(pg, "reading the saga definition", sg_diagram_sql, 2,
                    params);
    if (r == NULL) {
        rc = CTL_ERR;
    } else if (PQntuples(r) == 0) {
        rc = sg_diagram_missing(pg, type, version);
    } else if (PQgetisnull(r, 0, 1) && !c->json) {
        ctl_fail("saga diagram: %s version %s was registered without a "
                 "diagram (protoc-gen-loom generates one)",
                 type, PQgetvalue(r, 0, 0));
        rc = CTL_ERR;
    } else if (c->json) {
        loom__buf_putc(&b, '{');
        ctl_json_kstr(&b, "type", type);
        ctl_json_kraw(&b, "version", PQgetvalue(r, 0, 0));
        ctl_json_kstr(&b, "diagram", sg_val(r, 0, 1));
        loom__buf_putc(&b, '}');
        rc = ctl_topics_json_out(&b, "the diagram");
    } else {
        sg_diagram_print(PQgetvalue(r, 0, 1));
    }
    loom__buf_free(&b);
    PQclear(r);
    PQfinish(pg);
    return rc;
}

/* ------------------------------------------------------------------ */

int
ctl_cmd_saga(ctl *c, int argc, char **argv)
{
    int which, rc = ctl_args_sub(c, argc, argv, sg_any_opts, sg_subs, &which);

    if (rc != CTL_OK)
        return rc;
    switch (which) {
    case SG_LIST:
        return ctl_saga_list(c, argc, argv);
    case SG_SHOW:
        return ctl_saga_show(c, argc, argv);
    case SG_RETRY:
        return ctl_saga_request(c, argc, argv, LOOM_SAGA_OP_RETRY);
    case SG_SKIP:
        return ctl_saga_request(c, argc, argv, LOOM_SAGA_OP_SKIP);
    case SG_ABORT:
        return ctl_saga_request(c, argc, argv, LOOM_SAGA_OP_ABORT);
    default:
        return ctl_saga_diagram(c, argc, argv);
    }
}
