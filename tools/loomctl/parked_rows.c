/*
 * Printing parked events (see parked.h). An error can be long (a
 * handler's message with PostgreSQL's DETAIL and HINT lines), so the
 * table shows its first line, at most PR_ERROR_MAX bytes of it, and ends
 * a cut one with "…"; on a terminal the table shortens it further to fit.
 * --json always carries the whole text.
 */
#include "parked.h"

#include <stdio.h>
#include <string.h>

#include "fmt.h"
#include "json.h"
#include "loomctl.h"
#include "pgwire.h"
#include "stats.h"
#include "table.h"

#define PR_ERROR_MAX 60

/* The columns of CTL_PARKED_SELECT. */
enum {
    PR_SUB,
    PR_ID,
    PR_POS,
    PR_TX,
    PR_STREAM,
    PR_VERSION,
    PR_TYPE,
    PR_ATTEMPTS,
    PR_PARKED_AT,
    PR_AGE,
    PR_REPLAY_AT,
    PR_ERROR
};

static const ctl_col pr_cols[] = {
    {"SUBSCRIPTION", "subscription", CTL_COL_TEXT, 0},
    {"POSITION", "position", CTL_COL_NUM, 0},
    {"EVENT ID", "event_id", CTL_COL_TEXT, CTL_COL_KEEP},
    {"EVENT", "event", CTL_COL_TEXT, 0},
    {"TYPE", "type", CTL_COL_TEXT, 0},
    {"ATTEMPTS", "attempts", CTL_COL_NUM, 0},
    {"PARKED", "parked", CTL_COL_TEXT, CTL_COL_KEEP},
    {"REPLAY", "replay", CTL_COL_TEXT, CTL_COL_OPTIONAL},
    {"ERROR", "error", CTL_COL_TEXT, CTL_COL_CUT_FIRST},
};

#define PR_NCOLS (sizeof pr_cols / sizeof pr_cols[0])

/* The error's first line, at most PR_ERROR_MAX bytes, cut on a UTF-8
 * character boundary, with "…" when anything was left out. */
static void
pr_error_cell(ctl_table *t, const char *err)
{
    const unsigned char *s = (const unsigned char *) err;
    size_t len = strcspn(err, "\r\n"), n = 0;
    char buf[PR_ERROR_MAX + 8];

    while (n < len) {
        size_t k = loom__utf8_seq(s + n, len - n);
        if (k == 0)
            k = 1; /* shown as U+FFFD by the table */
        if (n + k > PR_ERROR_MAX)
            break;
        n += k;
    }
    if (n == strlen(err)) {
        ctl_table_cell(t, err);
        return;
    }
    memcpy(buf, err, n);
    memcpy(buf + n, "\xe2\x80\xa6", 4); /* U+2026 and the NUL */
    ctl_table_cell(t, buf);
}

int
ctl_parked_table(const PGresult *r)
{
    ctl_table *t = ctl_table_new(pr_cols, PR_NCOLS, 0, stdout);
    int rc = CTL_OK;

    if (t == NULL) {
        ctl_fail("printing parked events: out of memory");
        return CTL_ERR;
    }
    for (int i = 0; i < PQntuples(r); i++) {
        char age[32];
        ctl_fmt_age(ctl_stats_i64(r, i, PR_AGE), age);
        ctl_table_cell(t, PQgetvalue(r, i, PR_SUB));
        ctl_table_cell(t, PQgetvalue(r, i, PR_POS));
        ctl_table_cell(t, PQgetvalue(r, i, PR_ID));
        /* Stream names are data: '%' in one is not a format. */
        ctl_table_cellf(t, "%s@%s", PQgetvalue(r, i, PR_STREAM),
                        PQgetvalue(r, i, PR_VERSION));
        ctl_table_cell(t, PQgetvalue(r, i, PR_TYPE));
        ctl_table_cell(t, PQgetvalue(r, i, PR_ATTEMPTS));
        ctl_table_cellf(t, "%s ago", age);
        ctl_table_cell(t, PQgetisnull(r, i, PR_REPLAY_AT) ? "" : "requested");
        pr_error_cell(t, PQgetvalue(r, i, PR_ERROR));
    }
    if (ctl_table_flush(t) != 0) {
        ctl_fail("printing parked events: out of memory or a write error");
        rc = CTL_ERR;
    }
    ctl_table_free(t);
    return rc;
}

void
ctl_parked_json(loom__buf *b, const PGresult *r, int row)
{
    const char *replay_at = PQgetisnull(r, row, PR_REPLAY_AT)
                                ? NULL
                                : PQgetvalue(r, row, PR_REPLAY_AT);

    loom__buf_putc(b, '{');
    ctl_json_kstr(b, "subscription", PQgetvalue(r, row, PR_SUB));
    ctl_json_kstr(b, "event_id", PQgetvalue(r, row, PR_ID));
    ctl_json_kraw(b, "position", PQgetvalue(r, row, PR_POS));
    ctl_json_kraw(b, "tx", PQgetvalue(r, row, PR_TX));
    ctl_json_kstr(b, "stream", PQgetvalue(r, row, PR_STREAM));
    ctl_json_kraw(b, "version", PQgetvalue(r, row, PR_VERSION));
    ctl_json_kstr(b, "type", PQgetvalue(r, row, PR_TYPE));
    ctl_json_kraw(b, "attempts", PQgetvalue(r, row, PR_ATTEMPTS));
    ctl_json_kstr(b, "parked_at", PQgetvalue(r, row, PR_PARKED_AT));
    ctl_json_kraw(b, "parked_age_seconds", PQgetvalue(r, row, PR_AGE));
    ctl_json_kraw(b, "replay_requested", replay_at != NULL ? "true" : "false");
    ctl_json_kstr(b, "replay_requested_at", replay_at);
    ctl_json_kstr(b, "error", PQgetvalue(r, row, PR_ERROR));
    loom__buf_putc(b, '}');
}
