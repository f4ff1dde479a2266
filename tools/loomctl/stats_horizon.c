/*
 * What holds readers back. Reads in commit order return only events
 * whose transaction id is below pg_snapshot_xmin(pg_current_snapshot()),
 * the oldest transaction still running anywhere in the cluster. Events
 * committed after it started wait until it ends. This shows that
 * horizon, how many committed events wait behind it, and who holds it:
 * the session with the oldest transaction id (or a forgotten prepared
 * transaction). The oldest snapshot (backend_xmin) is shown as well; it
 * does not delay readers but does hold back VACUUM.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fmt.h"
#include "json.h"
#include "stats.h"
#include "table.h"

/* "ORDER BY e.tx", qualified: a bare "tx" would name the output column
 * tx::text and sort as text ("999" after "1010"). */
static const char hz_sql[] =
    "SELECT pg_snapshot_xmin(pg_current_snapshot())::text, "
    "(SELECT e.tx::text FROM loom.events e ORDER BY e.tx DESC, position DESC "
    "LIMIT 1), "
    "(SELECT count(*) FROM loom.events "
    "WHERE tx >= pg_snapshot_xmin(pg_current_snapshot()))";

/* One row per kind of holder, oldest first within each kind. */
#define HZ_SESSION_COLS                                                        \
    "pid::text, coalesce(datname, ''), coalesce(usename::text, ''), "          \
    "coalesce(application_name, ''), coalesce(state, ''), "                    \
    "coalesce(extract(epoch FROM now() - xact_start)::bigint::text, ''), "     \
    "coalesce(backend_xid::text, ''), coalesce(backend_xmin::text, '') "       \
    "FROM pg_stat_activity WHERE pid <> pg_backend_pid() "

static const char hz_holders_sql[] =
    "(SELECT 'oldest_xid', " HZ_SESSION_COLS
    "AND backend_xid IS NOT NULL ORDER BY age(backend_xid) DESC LIMIT 1) "
    "UNION ALL "
    "(SELECT 'prepared_xact', '', database::text, owner::text, "
    "'prepared: ' || gid, 'prepared', "
    "extract(epoch FROM now() - prepared)::bigint::text, "
    "transaction::text, '' FROM pg_prepared_xacts "
    "ORDER BY age(transaction) DESC LIMIT 1) "
    "UNION ALL "
    "(SELECT 'oldest_snapshot', " HZ_SESSION_COLS
    "AND backend_xmin IS NOT NULL ORDER BY age(backend_xmin) DESC LIMIT 1)";

enum {
    HZ_HOLDS,
    HZ_PID,
    HZ_DB,
    HZ_USER,
    HZ_APP,
    HZ_STATE,
    HZ_AGE,
    HZ_XID,
    HZ_XMIN,
    HZ_NCOLS
};

static const ctl_col hz_cols[HZ_NCOLS] = {
    {"HOLDS BACK", "holds", CTL_COL_TEXT, 0},
    {"PID", "pid", CTL_COL_NUM, 0},
    {"DATABASE", "database", CTL_COL_TEXT, 0},
    {"USER", "user", CTL_COL_TEXT, 0},
    {"APPLICATION", "application_name", CTL_COL_TEXT, 0},
    {"STATE", "state", CTL_COL_TEXT, 0},
    {"XACT AGE", "xact_age_seconds", CTL_COL_TEXT, 0},
    {"XID", "backend_xid", CTL_COL_NUM, 0},
    {"XMIN", "backend_xmin", CTL_COL_NUM, 0},
};

static const char *
hz_label(const char *holds)
{
    if (strcmp(holds, "oldest_xid") == 0)
        return "readers (oldest transaction)";
    if (strcmp(holds, "prepared_xact") == 0)
        return "readers (prepared transaction)";
    return "vacuum only (oldest snapshot)";
}

static void
hz_age(const char *secs, char out[32])
{
    if (secs[0] == '\0')
        snprintf(out, 32, "?");
    else
        ctl_fmt_age(strtoll(secs, NULL, 10), out);
}

static void
hz_holders_json(loom__buf *json, const PGresult *r)
{
    ctl_json_key(json, "holders");
    loom__buf_putc(json, '[');
    for (int i = 0; i < PQntuples(r); i++) {
        loom__buf_puts(json, i > 0 ? ",{" : "{");
        for (int j = 0; j < HZ_NCOLS; j++) {
            const char *v = PQgetvalue(r, i, j);
            if (hz_cols[j].kind == CTL_COL_NUM || j == HZ_AGE)
                ctl_json_kraw(json, hz_cols[j].key, v[0] ? v : NULL);
            else
                ctl_json_kstr(json, hz_cols[j].key, v);
        }
        loom__buf_putc(json, '}');
    }
    loom__buf_putc(json, ']');
}

static int
hz_holders_table(const PGresult *r)
{
    ctl_table *t = ctl_table_new(hz_cols, HZ_NCOLS, 0, stdout);
    int rc = CTL_OK;

    if (t == NULL)
        return CTL_ERR;
    for (int i = 0; i < PQntuples(r); i++) {
        char age[32];
        hz_age(PQgetvalue(r, i, HZ_AGE), age);
        for (int j = 0; j < HZ_NCOLS; j++) {
            const char *v = PQgetvalue(r, i, j);
            ctl_table_cell(t, j == HZ_HOLDS ? hz_label(v)
                              : j == HZ_AGE ? age
                                            : v);
        }
    }
    if (PQntuples(r) == 0)
        printf("no open transaction or snapshot holds anything back\n");
    else if (ctl_table_flush(t) != 0)
        rc = CTL_ERR;
    ctl_table_free(t);
    return rc;
}

static void
hz_summary(const ctl *c, loom__buf *json, const PGresult *r)
{
    const char *xmin = PQgetvalue(r, 0, 0), *newest = PQgetvalue(r, 0, 1);
    int64_t held = ctl_stats_i64(r, 0, 2);

    if (c->json) {
        ctl_json_key(json, "horizon");
        loom__buf_putc(json, '{');
        ctl_json_kraw(json, "snapshot_xmin", xmin);
        ctl_json_kraw(json, "newest_event_tx",
                      PQgetisnull(r, 0, 1) ? NULL : newest);
        ctl_json_ki64(json, "events_held_back", held);
        return; /* the holders follow, then the closing brace */
    }
    printf("\nreaders in commit order see events below the snapshot "
           "xmin:\n");
    printf("%-22s %s\n", "snapshot xmin", xmin);
    printf("%-22s %s\n", "newest event tx",
           PQgetisnull(r, 0, 1) ? "(no events)" : newest);
    printf("%-22s %" PRId64 "%s\n", "events held back", held,
           held > 0 ? " (committed, not readable until the oldest "
                      "transaction ends)"
                    : "");
    printf("\nwhat holds readers back:\n");
}

int
ctl_stats_horizon(PGconn *pg, const ctl *c, loom__buf *json)
{
    PGresult *h, *r;
    int rc = CTL_OK;

    h = ctl_pg_exec(pg, "reading the snapshot horizon", hz_sql, 0, NULL);
    if (h == NULL)
        return CTL_ERR;
    r = ctl_pg_exec(pg, "finding the oldest transactions", hz_holders_sql, 0,
                    NULL);
    if (r == NULL) {
        PQclear(h);
        return CTL_ERR;
    }
    hz_summary(c, json, h);
    if (c->json) {
        hz_holders_json(json, r);
        loom__buf_putc(json, '}');
    } else {
        rc = hz_holders_table(r);
    }
    PQclear(r);
    PQclear(h);
    return rc;
}
