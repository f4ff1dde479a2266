/*
 * Every fact loomctl shows about projections, from one query: the
 * registration (loom.projections), the checkpoint (loom.checkpoints), the
 * lag behind the newest events, the parked events, and who is connected.
 *
 * Lag is measured in commit order, the order the runner reads in: the
 * events after the checkpoint's (tx, position). Counting them walks the
 * commit-order index, so the count stops at CTL_PROJ_LAG_CAP + 1 rows
 * to stay cheap behind a projection that is far behind or never ran.
 *
 * Whether a runner or a rebuild is connected comes from pg_stat_activity:
 * runners connect as "eventloom-projection:<name>" and rebuilds as
 * "eventloom-rebuild:<name>". PostgreSQL shows every session's database
 * and application_name to every user, so this needs no privilege.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "parked.h"
#include "proj.h"
#include "stats.h"

/* The checkpoint; a projection that never committed starts before the
 * first event. */
#define PJ_AFTER "(coalesce(c.tx, '0'::xid8), coalesce(c.position, 0))"

/* The pids of the sessions connected to this database as the
 * projection's runner, and as its rebuild. */
#define PJ_PIDS                                                                \
    "(SELECT string_agg(a.pid::text, ',' ORDER BY a.pid) "                     \
    "FROM pg_stat_activity a WHERE a.datname = current_database() "            \
    "AND a.application_name = "
#define PJ_RUNNERS  PJ_PIDS "'eventloom-projection:' || p.name)"
#define PJ_REBUILDS PJ_PIDS "'eventloom-rebuild:' || p.name)"

/* $2 is the lag cap plus one: counting stops there. */
static const char pj_sql[] =
    "SELECT p.name, p.schema_name, p.generation, p.checkpoint, "
    "c.tx::text, c.position, "
    "to_char(c.updated_at AT TIME ZONE 'UTC'" CTL_SQL_ISO ", "
    "extract(epoch FROM now() - c.updated_at)::bigint, "
    "(SELECT count(*) FROM (SELECT 1 FROM loom.events e "
    "WHERE (e.tx, e.position) > " PJ_AFTER " LIMIT $2::bigint) l), "
    "coalesce((SELECT extract(epoch FROM now() - e.recorded_at)::bigint "
    "FROM loom.events e WHERE (e.tx, e.position) > " PJ_AFTER " "
    "ORDER BY e.tx, e.position LIMIT 1), 0), "
    "(SELECT count(*) FROM loom.parked k "
    "WHERE k.subscription = p.checkpoint), "
    "(SELECT count(*) FROM loom.parked k "
    "WHERE k.subscription = p.checkpoint || ':rebuild'), " PJ_RUNNERS
    ", " PJ_REBUILDS ", "
    "to_char(p.rebuild_started_at AT TIME ZONE 'UTC'" CTL_SQL_ISO ", "
    "p.rebuild_done, p.rebuild_total, "
    "to_char(p.rebuild_updated_at AT TIME ZONE 'UTC'" CTL_SQL_ISO ", "
    "extract(epoch FROM now() - p.rebuild_updated_at)::bigint, "
    "to_char(p.created_at AT TIME ZONE 'UTC'" CTL_SQL_ISO ", "
    "to_char(p.rebuilt_at AT TIME ZONE 'UTC'" CTL_SQL_ISO " "
    "FROM loom.projections p "
    "LEFT JOIN loom.checkpoints c ON c.name = p.checkpoint "
    "WHERE ($1::text IS NULL OR p.name = $1::text) ORDER BY p.name";

PGresult *
ctl_proj_query(PGconn *pg, const char *name)
{
    char cap[24];
    const char *params[2] = {name, cap};
    PGresult *r;

    snprintf(cap, sizeof cap, "%d", CTL_PROJ_LAG_CAP + 1);
    r = ctl_pg_exec(pg, "reading projections", pj_sql, 2, params);
    if (r != NULL && PQnfields(r) != PJ_NCOLS) {
        ctl_fail("reading projections: expected %d columns, got %d", PJ_NCOLS,
                 PQnfields(r));
        PQclear(r);
        return NULL;
    }
    return r;
}

int
ctl_proj_rebuilding(const PGresult *r, int i)
{
    return !PQgetisnull(r, i, PJ_RB_STARTED_AT) ||
           !PQgetisnull(r, i, PJ_REBUILD_PIDS);
}

int
ctl_proj_percent(const PGresult *r, int i)
{
    int64_t done = ctl_stats_i64(r, i, PJ_RB_DONE);
    int64_t total = ctl_stats_i64(r, i, PJ_RB_TOTAL);

    if (PQgetisnull(r, i, PJ_RB_TOTAL) || total <= 0)
        return -1;
    /* The total was counted at the start; writers append meanwhile. */
    if (done >= total)
        return 100;
    return done <= 0 ? 0 : (int) (done * 100 / total);
}

void
ctl_proj_state(const PGresult *r, int i, char *out, size_t len)
{
    int pct = ctl_proj_percent(r, i);
    char pct_s[16] = "";

    if (pct >= 0)
        snprintf(pct_s, sizeof pct_s, " %d%%", pct);
    snprintf(out, len, "%s%s%s%s",
             PQgetisnull(r, i, PJ_RUNNER_PIDS) ? "stopped" : "running",
             ctl_proj_rebuilding(r, i) ? ", rebuilding" : "",
             ctl_proj_rebuilding(r, i) ? pct_s : "",
             ctl_proj_rebuilding(r, i) && PQgetisnull(r, i, PJ_REBUILD_PIDS)
                 ? " (stopped)"
                 : "");
}

void
ctl_proj_lag(const PGresult *r, int i, char out[32])
{
    int64_t lag = ctl_stats_i64(r, i, PJ_LAG_EVENTS);

    if (lag > CTL_PROJ_LAG_CAP)
        snprintf(out, 32, ">%d", CTL_PROJ_LAG_CAP);
    else
        snprintf(out, 32, "%lld", (long long) lag);
}

/* A text cell as a JSON string, NULL as null. */
static void
pj_kstr(loom__buf *b, const char *key, const PGresult *r, int i, int col)
{
    ctl_json_kstr(b, key,
                  PQgetisnull(r, i, col) ? NULL : PQgetvalue(r, i, col));
}

/* A number cell as a JSON number, NULL as null. */
static void
pj_knum(loom__buf *b, const char *key, const PGresult *r, int i, int col)
{
    ctl_json_kraw(b, key,
                  PQgetisnull(r, i, col) ? NULL : PQgetvalue(r, i, col));
}

/* "12,34" as [12,34]; NULL as []. */
static void
pj_kpids(loom__buf *b, const char *key, const PGresult *r, int i, int col)
{
    ctl_json_key(b, key);
    loom__buf_printf(b, "[%s]",
                     PQgetisnull(r, i, col) ? "" : PQgetvalue(r, i, col));
}

void
ctl_proj_json(loom__buf *b, const PGresult *r, int i)
{
    int64_t lag = ctl_stats_i64(r, i, PJ_LAG_EVENTS);
    int rebuilding = ctl_proj_rebuilding(r, i), pct = ctl_proj_percent(r, i);
    char state[96];

    ctl_proj_state(r, i, state, sizeof state);
    pj_kstr(b, "name", r, i, PJ_NAME);
    ctl_json_kstr(b, "model",
                  PQgetisnull(r, i, PJ_SCHEMA) ? "memory"
                                               : PQgetvalue(r, i, PJ_SCHEMA));
    pj_kstr(b, "schema", r, i, PJ_SCHEMA);
    pj_knum(b, "generation", r, i, PJ_GENERATION);
    pj_kstr(b, "checkpoint", r, i, PJ_CHECKPOINT);
    pj_knum(b, "checkpoint_tx", r, i, PJ_CP_TX);
    pj_knum(b, "checkpoint_position", r, i, PJ_CP_POSITION);
    pj_kstr(b, "checkpoint_updated_at", r, i, PJ_CP_UPDATED_AT);
    ctl_json_ki64(b, "lag_events",
                  lag > CTL_PROJ_LAG_CAP ? CTL_PROJ_LAG_CAP : lag);
    ctl_json_kraw(b, "lag_events_capped",
                  lag > CTL_PROJ_LAG_CAP ? "true" : "false");
    pj_knum(b, "lag_seconds", r, i, PJ_LAG_SECONDS);
    pj_knum(b, "parked", r, i, PJ_PARKED);
    ctl_json_kstr(b, "state", state);
    ctl_json_kraw(b, "running",
                  PQgetisnull(r, i, PJ_RUNNER_PIDS) ? "false" : "true");
    pj_kpids(b, "runner_pids", r, i, PJ_RUNNER_PIDS);
    ctl_json_kraw(b, "rebuilding", rebuilding ? "true" : "false");
    ctl_json_kraw(b, "rebuild_connected",
                  PQgetisnull(r, i, PJ_REBUILD_PIDS) ? "false" : "true");
    ctl_json_key(b, "rebuild_percent");
    if (rebuilding && pct >= 0)
        loom__buf_printf(b, "%d", pct);
    else
        loom__buf_puts(b, "null");
    pj_kstr(b, "rebuild_started_at", r, i, PJ_RB_STARTED_AT);
    pj_knum(b, "rebuild_done", r, i, PJ_RB_DONE);
    pj_knum(b, "rebuild_total", r, i, PJ_RB_TOTAL);
    pj_kstr(b, "rebuild_updated_at", r, i, PJ_RB_UPDATED_AT);
}
