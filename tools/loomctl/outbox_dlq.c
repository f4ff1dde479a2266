/*
 * loomctl outbox dlq [OUTBOX] | outbox redrive [OUTBOX] [--id UUID ...]:
 * the messages a relay could never publish. A transport that refuses a
 * message for good (too large, a topic it does not have) or a row the
 * relay cannot decode makes the relay move it to
 * loom.outbox_dead_letters with the reason, so it does not block the
 * messages behind it.
 *
 * redrive calls loom.outbox_redrive(), which puts dead letters back into
 * the outbox as new messages with their original ids: the active relay
 * publishes them after everything already waiting. Fix the cause first
 * (create the topic, raise the transport's limit): a message refused
 * again is dead-lettered again.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fmt.h"
#include "json.h"
#include "loom/alloc.h"
#include "loom/uuid.h"
#include "outbox.h"
#include "parked.h"
#include "pgwire.h"
#include "stats.h"
#include "table.h"
#include "topics.h"

/* A table's error shows this much of its first line; --json has all. */
#define OD_ERROR_MAX 60
/* A key shown as hex is cut after this many bytes; --json has all. */
#define OD_KEY_HEX_MAX 16

/* The most --id options of one redrive. */
#define OD_MAX_IDS 1000

static const char od_list_sql[] =
    "SELECT outbox, position, message_id::text, topic, encode(key, 'hex'), "
    "type, octet_length(payload), error, "
    "to_char(failed_at AT TIME ZONE 'UTC'" CTL_SQL_ISO ", "
    "round(extract(epoch FROM now() - failed_at)::numeric, 3), tx::text, "
    "to_char(created_at AT TIME ZONE 'UTC'" CTL_SQL_ISO ", "
    "to_char(deliver_at AT TIME ZONE 'UTC'" CTL_SQL_ISO " "
    "FROM loom.outbox_dead_letters d "
    "WHERE ($1::text IS NULL OR outbox = $1::text) "
    /* d.tx: a bare tx is the output column tx::text (text order). */
    "ORDER BY outbox, d.tx, position LIMIT $2::bigint";

/* The columns of od_list_sql. */
enum {
    OD_OUTBOX,
    OD_POSITION,
    OD_ID,
    OD_TOPIC,
    OD_KEY,
    OD_TYPE,
    OD_SIZE,
    OD_ERROR,
    OD_FAILED_AT,
    OD_AGE,
    OD_TX,
    OD_CREATED_AT,
    OD_DELIVER_AT
};

static const ctl_col od_cols[] = {
    {"OUTBOX", "outbox", CTL_COL_TEXT, 0},
    {"POSITION", "position", CTL_COL_NUM, 0},
    {"MESSAGE ID", "message_id", CTL_COL_TEXT, CTL_COL_KEEP},
    {"TOPIC", "topic", CTL_COL_TEXT, 0},
    {"KEY", "key", CTL_COL_TEXT, CTL_COL_OPTIONAL},
    {"TYPE", "type", CTL_COL_TEXT, CTL_COL_OPTIONAL},
    {"SIZE", "size", CTL_COL_NUM, 0},
    {"FAILED", "failed", CTL_COL_TEXT, CTL_COL_KEEP},
    {"ERROR", "error", CTL_COL_TEXT, CTL_COL_CUT_FIRST},
};

#define OD_NCOLS (sizeof od_cols / sizeof od_cols[0])

/* Dead letters whose id is not among the given ones ($2), in OUTBOX ($1,
 * NULL: any): a redrive naming them would do nothing for them. */
static const char od_missing_sql[] =
    "SELECT u::text FROM unnest($2::uuid[]) u WHERE NOT EXISTS ("
    "SELECT 1 FROM loom.outbox_dead_letters d WHERE d.message_id = u "
    "AND ($1::text IS NULL OR d.outbox = $1::text))";

/* Re-drives per outbox, and says whether a relay will publish them. */
static const char od_redrive_sql[] =
    "SELECT o.outbox, loom.outbox_redrive(o.outbox, $2::uuid[]), "
    "EXISTS (SELECT 1 FROM loom.outbox_relays r "
    "JOIN pg_stat_activity a ON a.pid = r.leader_pid "
    "WHERE r.outbox = o.outbox) "
    "FROM (SELECT DISTINCT outbox FROM loom.outbox_dead_letters "
    "WHERE ($1::text IS NULL OR outbox = $1::text) "
    "AND ($2::uuid[] IS NULL OR message_id = ANY ($2::uuid[]))) o "
    "ORDER BY o.outbox";

enum { OD_OPT_LIMIT = 1, OD_OPT_ID };

static const ctl_opt od_list_opts[] = {
    {"--limit", 1, OD_OPT_LIMIT},
    {NULL, 0, 0},
};

static const ctl_opt od_redrive_opts[] = {
    {"--id", 1, OD_OPT_ID},
    {NULL, 0, 0},
};

/* ------------------------------------------------------------------ */
/* Keys                                                                */

static int
od_hexval(char ch)
{
    return ch >= 'a' ? ch - 'a' + 10 : ch - '0';
}

/*
 * A key from its hex text: into `text` as itself when it is UTF-8
 * without control characters (most keys are ids), else NULL there.
 * Returns 0, or -1 when out of memory.
 */
static int
od_key_text(const char *hex, loom__buf *text)
{
    size_t n = strlen(hex) / 2;

    loom__buf_reset(text);
    for (size_t i = 0; i < n; i++)
        loom__buf_putc(text, (char) (od_hexval(hex[2 * i]) << 4 |
                                     od_hexval(hex[2 * i + 1])));
    if (text->failed)
        return -1;
    if (n == 0 || !loom__utf8_valid(text->data, n))
        return 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char) text->data[i];
        if (ch < 0x20 || ch == 0x7f)
            return 1;
    }
    return 0;
}

/* The KEY cell: the text, or "0x" and hex (cut), or empty. */
static void
od_key_cell(ctl_table *t, loom__buf *text, const PGresult *r, int i)
{
    const char *hex = PQgetvalue(r, i, OD_KEY);
    size_t n = strlen(hex);
    int k;

    if (PQgetisnull(r, i, OD_KEY)) {
        ctl_table_cell(t, "");
        return;
    }
    k = od_key_text(hex, text);
    if (k == 0)
        ctl_table_celln(t, text->data, text->len);
    else if (k < 0)
        ctl_table_cell(t, "?");
    else if (n > 2 * OD_KEY_HEX_MAX)
        ctl_table_cellf(t, "0x%.*s\xe2\x80\xa6", 2 * OD_KEY_HEX_MAX, hex);
    else
        ctl_table_cellf(t, "0x%s", hex);
}

/* ------------------------------------------------------------------ */
/* dlq                                                                 */

static int
od_list_parse(ctl *c, int argc, char **argv, const char **name, int64_t *limit)
{
    const char *val;
    ctl_args a;
    int opt, rc = CTL_OK;

    *name = NULL;
    *limit = 100;
    ctl_args_init(&a, argc, argv);
    while (rc == CTL_OK &&
           (opt = ctl_args_next(c, &a, od_list_opts, &val)) != CTL_ARG_END) {
        if (opt == CTL_ARG_BAD)
            return CTL_USAGE;
        if (opt == OD_OPT_LIMIT)
            rc = ctl_parse_i64(c, "--limit", val, 1, 100000, limit);
        else if (*name != NULL)
            rc = ctl_usage_error(c, "unexpected argument \"%s\"", val);
        else
            *name = val;
    }
    if (rc == CTL_OK && *name != NULL)
        rc = ctl_outbox_check_name(c, "OUTBOX", *name);
    return rc;
}

static int
od_table(const PGresult *r)
{
    ctl_table *t = ctl_table_new(od_cols, OD_NCOLS, 0, stdout);
    loom__buf err = LOOM__BUF_INIT, key = LOOM__BUF_INIT;
    int rc = CTL_OK;

    if (t == NULL) {
        ctl_fail("printing dead letters: out of memory");
        return CTL_ERR;
    }
    for (int i = 0; i < PQntuples(r); i++) {
        char age[32];
        for (int j = OD_OUTBOX; j <= OD_TOPIC; j++)
            ctl_table_cell(t, PQgetvalue(r, i, j));
        od_key_cell(t, &key, r, i);
        ctl_table_cell(t, PQgetvalue(r, i, OD_TYPE));
        ctl_table_cell(t, PQgetvalue(r, i, OD_SIZE));
        ctl_fmt_secs(strtod(PQgetvalue(r, i, OD_AGE), NULL), age);
        ctl_table_cellf(t, "%s ago", age);
        ctl_topics_first_line(&err, PQgetvalue(r, i, OD_ERROR), OD_ERROR_MAX);
        ctl_table_cell(t, err.failed ? "?" : loom__buf_str(&err));
    }
    if (ctl_table_flush(t) != 0) {
        ctl_fail("printing dead letters: out of memory or a write error");
        rc = CTL_ERR;
    }
    ctl_table_free(t);
    loom__buf_free(&err);
    loom__buf_free(&key);
    return rc;
}

static void
od_row_json(loom__buf *b, loom__buf *key, const PGresult *r, int i)
{
    int has_key = !PQgetisnull(r, i, OD_KEY);
    int text = has_key && od_key_text(PQgetvalue(r, i, OD_KEY), key) == 0;

    loom__buf_putc(b, '{');
    ctl_json_kstr(b, "outbox", PQgetvalue(r, i, OD_OUTBOX));
    ctl_json_kraw(b, "tx", PQgetvalue(r, i, OD_TX));
    ctl_json_kraw(b, "position", PQgetvalue(r, i, OD_POSITION));
    ctl_json_kstr(b, "message_id", PQgetvalue(r, i, OD_ID));
    ctl_json_kstr(b, "topic", PQgetvalue(r, i, OD_TOPIC));
    /* The key as text when it is printable, and always as hex. */
    ctl_json_key(b, "key");
    if (text)
        ctl_json_str(b, key->data, key->len);
    else
        loom__buf_puts(b, "null");
    ctl_json_kstr(b, "key_hex", has_key ? PQgetvalue(r, i, OD_KEY) : NULL);
    ctl_json_kstr(b, "type",
                  PQgetisnull(r, i, OD_TYPE) ? NULL
                                             : PQgetvalue(r, i, OD_TYPE));
    ctl_json_kraw(b, "size", PQgetvalue(r, i, OD_SIZE));
    ctl_json_kstr(b, "created_at", PQgetvalue(r, i, OD_CREATED_AT));
    ctl_json_kstr(b, "deliver_at",
                  PQgetisnull(r, i, OD_DELIVER_AT)
                      ? NULL
                      : PQgetvalue(r, i, OD_DELIVER_AT));
    ctl_json_kstr(b, "failed_at", PQgetvalue(r, i, OD_FAILED_AT));
    ctl_json_kraw(b, "age_seconds", PQgetvalue(r, i, OD_AGE));
    ctl_json_kstr(b, "error", PQgetvalue(r, i, OD_ERROR));
    loom__buf_putc(b, '}');
}

static int
od_print(const ctl *c, const PGresult *r, const char *name, int64_t limit)
{
    loom__buf b = LOOM__BUF_INIT, key = LOOM__BUF_INIT;
    int rc = CTL_OK;

    if (c->json) {
        for (int i = 0; i < PQntuples(r) && rc == CTL_OK; i++) {
            loom__buf_reset(&b);
            od_row_json(&b, &key, r, i);
            rc = ctl_outbox_json_out(&b, "dead letters");
        }
    } else if (PQntuples(r) == 0) {
        if (name != NULL)
            printf("(no dead letters in outbox %s)\n", name);
        else
            printf("(no dead letters in any outbox)\n");
    } else {
        rc = od_table(r);
        if (PQntuples(r) == limit)
            printf("(the first %d are shown; --limit N shows more)\n",
                   PQntuples(r));
        printf("`loomctl outbox redrive%s%s` puts them back into the outbox "
               "once the cause is fixed\n",
               name != NULL ? " " : "", name != NULL ? name : "");
    }
    loom__buf_free(&b);
    loom__buf_free(&key);
    return rc;
}

int
ctl_outbox_dlq(ctl *c, int argc, char **argv)
{
    const char *name, *params[2];
    char lim[24];
    int64_t limit;
    PGconn *pg;
    PGresult *r = NULL;
    int rc = od_list_parse(c, argc, argv, &name, &limit);

    if (rc != CTL_OK)
        return rc;
    pg = ctl_pg_open(c);
    if (pg == NULL)
        return CTL_ERR;
    snprintf(lim, sizeof lim, "%" PRId64, limit);
    params[0] = name;
    params[1] = lim;
    if (name != NULL && ctl_outbox_exists(c, pg, name) <= 0)
        rc = CTL_ERR;
    else if ((r = ctl_pg_exec(pg, "listing dead letters", od_list_sql, 2,
                              params)) == NULL)
        rc = CTL_ERR;
    else
        rc = od_print(c, r, name, limit);
    PQclear(r);
    PQfinish(pg);
    return rc;
}

/* ------------------------------------------------------------------ */
/* redrive                                                             */

/* OUTBOX and the --id options, as a uuid[] literal in *ids (NULL when
 * none: every dead letter). */
static int
od_redrive_parse(ctl *c, int argc, char **argv, const char **name,
                 loom__buf *ids, size_t *n_ids)
{
    const char *val;
    loom_uuid u;
    ctl_args a;
    int opt;

    *name = NULL;
    *n_ids = 0;
    ctl_args_init(&a, argc, argv);
    while ((opt = ctl_args_next(c, &a, od_redrive_opts, &val)) != CTL_ARG_END) {
        if (opt == CTL_ARG_BAD)
            return CTL_USAGE;
        if (opt == CTL_ARG_POS && *name != NULL)
            return ctl_usage_error(c, "unexpected argument \"%s\"", val);
        if (opt == CTL_ARG_POS) {
            *name = val;
            continue;
        }
        if (loom_uuid_parse(&u, val) != LOOM_OK)
            return ctl_usage_error(c,
                                   "--id: \"%s\" is not a message id (a UUID "
                                   "such as `loomctl outbox dlq` shows)",
                                   val);
        if (*n_ids == OD_MAX_IDS)
            return ctl_usage_error(c, "at most %d --id options", OD_MAX_IDS);
        loom__buf_puts(ids, *n_ids == 0 ? "{" : ",");
        loom__buf_puts(ids, val);
        (*n_ids)++;
    }
    if (*n_ids > 0)
        loom__buf_putc(ids, '}');
    return *name != NULL ? ctl_outbox_check_name(c, "OUTBOX", *name) : CTL_OK;
}

/* Fails, doing nothing, when an --id names no dead letter (of OUTBOX). */
static int
od_check_ids(const ctl *c, PGconn *pg, const char *const *params)
{
    PGresult *r = ctl_pg_exec(pg, "looking up the dead letters", od_missing_sql,
                              2, params);
    const char *name = params[0];
    char more[64] = "";
    int n;

    if (r == NULL)
        return CTL_ERR;
    n = PQntuples(r);
    if (n > 1)
        snprintf(more, sizeof more, " (nor do %d other ids given)", n - 1);
    if (n > 0)
        ctl_fail("%s %s: no dead letter%s%s has message id %s%s; nothing "
                 "was re-driven (`loomctl outbox dlq%s%s` lists them)",
                 c->cmd, c->sub, name != NULL ? " of outbox " : "",
                 name != NULL ? name : "", PQgetvalue(r, 0, 0), more,
                 name != NULL ? " " : "", name != NULL ? name : "");
    PQclear(r);
    return n > 0 ? CTL_ERR : CTL_OK;
}

static int
od_redrive_json(const PGresult *r)
{
    loom__buf b = LOOM__BUF_INIT;
    int64_t total = 0;
    int rc;

    for (int i = 0; i < PQntuples(r); i++)
        total += ctl_stats_i64(r, i, 1);
    loom__buf_putc(&b, '{');
    ctl_json_ki64(&b, "redriven", total);
    ctl_json_key(&b, "outboxes");
    loom__buf_putc(&b, '[');
    for (int i = 0; i < PQntuples(r); i++) {
        loom__buf_puts(&b, i > 0 ? ",{" : "{");
        ctl_json_kstr(&b, "outbox", PQgetvalue(r, i, 0));
        ctl_json_kraw(&b, "redriven", PQgetvalue(r, i, 1));
        ctl_json_kraw(&b, "relay_active",
                      PQgetvalue(r, i, 2)[0] == 't' ? "true" : "false");
        loom__buf_putc(&b, '}');
    }
    loom__buf_puts(&b, "]}");
    rc = ctl_outbox_json_out(&b, "the result");
    loom__buf_free(&b);
    return rc;
}

static void
od_redrive_text(const PGresult *r, const char *name)
{
    if (PQntuples(r) == 0) {
        printf("re-drove 0 dead letters: none %s\n",
               name != NULL ? "was waiting in that outbox"
                            : "was waiting in any outbox");
        return;
    }
    for (int i = 0; i < PQntuples(r); i++) {
        const char *ob = PQgetvalue(r, i, 0);
        int64_t n = ctl_stats_i64(r, i, 1);

        printf("re-drove %" PRId64 " dead letter%s of outbox %s: back in the "
               "outbox as new messages with their ids; ",
               n, n == 1 ? "" : "s", ob);
        if (PQgetvalue(r, i, 2)[0] == 't')
            printf("the active relay publishes them\n");
        else
            printf("no relay is active: start one with `loomctl relay "
                   "--outbox %s`\n",
                   ob);
    }
}

int
ctl_outbox_redrive(ctl *c, int argc, char **argv)
{
    loom__buf ids = LOOM__BUF_INIT;
    const char *name, *params[2];
    PGconn *pg = NULL;
    PGresult *r = NULL;
    size_t n_ids;
    int rc = od_redrive_parse(c, argc, argv, &name, &ids, &n_ids);

    if (rc == CTL_OK && ids.failed) {
        ctl_fail("outbox redrive: out of memory");
        rc = CTL_ERR;
    }
    if (rc == CTL_OK && (pg = ctl_pg_open(c)) == NULL)
        rc = CTL_ERR;
    params[0] = name;
    params[1] = n_ids > 0 ? loom__buf_str(&ids) : NULL;
    if (rc == CTL_OK && name != NULL && ctl_outbox_exists(c, pg, name) <= 0)
        rc = CTL_ERR;
    if (rc == CTL_OK && n_ids > 0)
        rc = od_check_ids(c, pg, params);
    if (rc == CTL_OK && (r = ctl_pg_exec(pg, "re-driving dead letters",
                                         od_redrive_sql, 2, params)) == NULL)
        rc = CTL_ERR;
    if (rc == CTL_OK && c->json)
        rc = od_redrive_json(r);
    else if (rc == CTL_OK)
        od_redrive_text(r, name);
    PQclear(r);
    PQfinish(pg);
    loom__buf_free(&ids);
    return rc;
}
