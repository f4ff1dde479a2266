/*
 * loomctl projection status NAME: everything about one projection, as
 * key/value lines (or one JSON object): the facts `projection list` shows,
 * the checkpoint's last move, the rebuild's progress, what holds readers
 * back, and its newest parked events (live and rebuild).
 *
 * The horizon comes from loom.horizon_blocker('0'), the function runners
 * use for their stall warning: it names the oldest open transaction that
 * has written anything, and how many committed events wait behind it.
 * A projection that is caught up but lags in wall time is usually held
 * there, not slow.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "fmt.h"
#include "json.h"
#include "parked.h"
#include "pgwire.h"
#include "proj.h"
#include "stats.h"
#include "termtext.h"

static const char ps_blocker_sql[] =
    "SELECT waiting, pid, application, state, round(xact_age)::bigint, gid "
    "FROM loom.horizon_blocker('0')";

/* The newest 5, live and rebuild: enough to see what fails lately. */
static const char ps_parked_sql[] = CTL_PARKED_SELECT
    "WHERE subscription IN ($1::text, $1::text || ':rebuild') "
    "ORDER BY parked_at DESC, position DESC LIMIT 5";

/* The columns of ps_blocker_sql. */
enum { PS_WAITING, PS_PID, PS_APP, PS_STATE, PS_AGE, PS_GID };

/* Everything status reads, freed together. */
typedef struct ps_data {
    PGresult *facts, *blocker, *parked;
} ps_data;

/* Prints "key  value" with the value made safe for a terminal: it can
 * hold another session's application name or a prepared transaction's
 * id. */
static void ps_kv(const char *key, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
ps_kv(const char *key, const char *fmt, ...)
{
    loom__buf shown = LOOM__BUF_INIT;
    char val[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(val, sizeof val, fmt, ap);
    va_end(ap);
    ctl_term_put(&shown, val, strlen(val));
    printf("%-20s %s\n", key, shown.failed ? "?" : shown.data);
    loom__buf_free(&shown);
}

static const char *
ps_val(const PGresult *r, int col)
{
    return PQgetvalue(r, 0, col);
}

/* ------------------------------------------------------------------ */
/* Key/value lines                                                     */

static void
ps_print_model(const PGresult *f)
{
    ps_kv("name", "%s", ps_val(f, PJ_NAME));
    if (PQgetisnull(f, 0, PJ_SCHEMA))
        ps_kv("model", "memory (replayed from the first event on every "
                       "start)");
    else
        ps_kv("model", "schema %s (a rebuild fills %s__rebuild)",
              ps_val(f, PJ_SCHEMA), ps_val(f, PJ_SCHEMA));
    if (PQgetisnull(f, 0, PJ_REBUILT_AT))
        ps_kv("generation", "%s (never rebuilt)", ps_val(f, PJ_GENERATION));
    else
        ps_kv("generation", "%s (rebuilt %s)", ps_val(f, PJ_GENERATION),
              ps_val(f, PJ_REBUILT_AT));
    ps_kv("created", "%s", ps_val(f, PJ_CREATED_AT));
}

static void
ps_print_progress(const PGresult *f)
{
    char state[96], age[32], lag[32], done[32], total[32], pct[16];

    ctl_proj_state(f, 0, state, sizeof state);
    ps_kv("state", "%s", state);
    if (PQgetisnull(f, 0, PJ_RUNNER_PIDS))
        ps_kv("runner", "not connected");
    else
        ps_kv("runner", "connected (pid %s)", ps_val(f, PJ_RUNNER_PIDS));
    if (PQgetisnull(f, 0, PJ_CP_TX)) {
        ps_kv("checkpoint", "%s: none yet (starts at the first event)",
              ps_val(f, PJ_CHECKPOINT));
    } else {
        ctl_fmt_age(ctl_stats_i64(f, 0, PJ_CP_AGE), age);
        ps_kv("checkpoint", "%s at position %s (tx %s)",
              ps_val(f, PJ_CHECKPOINT), ps_val(f, PJ_CP_POSITION),
              ps_val(f, PJ_CP_TX));
        ps_kv("checkpoint updated", "%s (%s ago)", ps_val(f, PJ_CP_UPDATED_AT),
              age);
    }
    ctl_proj_lag(f, 0, lag);
    ps_kv("lag events", "%s", lag);
    ps_kv("lag seconds", "%s", ps_val(f, PJ_LAG_SECONDS));
    ps_kv("parked", "%s", ps_val(f, PJ_PARKED));
    if (!ctl_proj_rebuilding(f, 0)) {
        ps_kv("rebuild", "none in progress");
        return;
    }
    if (ctl_proj_percent(f, 0) >= 0)
        snprintf(pct, sizeof pct, "%d%%", ctl_proj_percent(f, 0));
    else
        snprintf(pct, sizeof pct, "total unknown");
    ctl_fmt_count(ctl_stats_i64(f, 0, PJ_RB_DONE), done);
    ctl_fmt_count(ctl_stats_i64(f, 0, PJ_RB_TOTAL), total);
    if (PQgetisnull(f, 0, PJ_REBUILD_PIDS))
        ps_kv("rebuild",
              "stopped at %s/%s events (%s); run `loomctl projection "
              "rebuild %s --plugin LIB.so` to resume",
              done, total, pct, ps_val(f, PJ_NAME));
    else
        ps_kv("rebuild", "%s/%s events (%s), connected (pid %s)", done, total,
              pct, ps_val(f, PJ_REBUILD_PIDS));
    ps_kv("rebuild started", "%s", ps_val(f, PJ_RB_STARTED_AT));
    if (!PQgetisnull(f, 0, PJ_RB_UPDATED_AT)) {
        ctl_fmt_age(ctl_stats_i64(f, 0, PJ_RB_AGE), age);
        ps_kv("rebuild updated", "%s (%s ago)", ps_val(f, PJ_RB_UPDATED_AT),
              age);
    }
    ps_kv("rebuild parked", "%s", ps_val(f, PJ_REBUILD_PARKED));
}

static void
ps_print_blocker(const PGresult *b)
{
    char age[32];

    if (PQntuples(b) == 0) {
        ps_kv("horizon", "nothing holds readers back");
        return;
    }
    ctl_fmt_age(ctl_stats_i64(b, 0, PS_AGE), age);
    if (PQgetisnull(b, 0, PS_PID))
        ps_kv("horizon",
              "%s events wait behind prepared transaction \"%s\" (open %s; "
              "COMMIT PREPARED or ROLLBACK PREPARED it)",
              ps_val(b, PS_WAITING), ps_val(b, PS_GID), age);
    else
        ps_kv("horizon",
              "%s events wait behind pid %s (\"%s\", %s, open %s; see "
              "`loomctl stats`)",
              ps_val(b, PS_WAITING), ps_val(b, PS_PID), ps_val(b, PS_APP),
              ps_val(b, PS_STATE), age);
}

static int
ps_print_table(const ps_data *d)
{
    ps_print_model(d->facts);
    ps_print_progress(d->facts);
    ps_print_blocker(d->blocker);
    printf("\nnewest parked events:\n");
    if (PQntuples(d->parked) == 0) {
        printf("(none)\n");
        return CTL_OK;
    }
    return ctl_parked_table(d->parked);
}

/* ------------------------------------------------------------------ */
/* JSON                                                                */

static void
ps_blocker_json(loom__buf *b, const PGresult *r)
{
    ctl_json_key(b, "horizon_blocker");
    if (PQntuples(r) == 0) {
        loom__buf_puts(b, "null");
        return;
    }
    loom__buf_putc(b, '{');
    ctl_json_kraw(b, "waiting", ps_val(r, PS_WAITING));
    ctl_json_kraw(b, "pid",
                  PQgetisnull(r, 0, PS_PID) ? NULL : ps_val(r, PS_PID));
    ctl_json_kstr(b, "application", ps_val(r, PS_APP));
    ctl_json_kstr(b, "state", ps_val(r, PS_STATE));
    ctl_json_kraw(b, "xact_age_seconds", ps_val(r, PS_AGE));
    ctl_json_kstr(b, "gid",
                  PQgetisnull(r, 0, PS_GID) ? NULL : ps_val(r, PS_GID));
    loom__buf_putc(b, '}');
}

static int
ps_print_json(const ps_data *d)
{
    const PGresult *f = d->facts;
    loom__buf b = LOOM__BUF_INIT;
    int rc = CTL_OK;

    loom__buf_putc(&b, '{');
    ctl_proj_json(&b, f, 0);
    ctl_json_kraw(&b, "rebuild_parked", ps_val(f, PJ_REBUILD_PARKED));
    ctl_json_kstr(&b, "created_at", ps_val(f, PJ_CREATED_AT));
    ctl_json_kstr(&b, "rebuilt_at",
                  PQgetisnull(f, 0, PJ_REBUILT_AT) ? NULL
                                                   : ps_val(f, PJ_REBUILT_AT));
    ps_blocker_json(&b, d->blocker);
    ctl_json_key(&b, "recent_parked");
    loom__buf_putc(&b, '[');
    for (int i = 0; i < PQntuples(d->parked); i++) {
        if (i > 0)
            loom__buf_putc(&b, ',');
        ctl_parked_json(&b, d->parked, i);
    }
    loom__buf_puts(&b, "]}\n");
    if (b.failed) {
        ctl_fail("printing the status: out of memory");
        rc = CTL_ERR;
    } else {
        fputs(b.data, stdout);
    }
    loom__buf_free(&b);
    return rc;
}

/* ------------------------------------------------------------------ */

static int
ps_parse(ctl *c, int argc, char **argv, const char **name)
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
        return ctl_usage_error(c, "give the projection's NAME");
    if (!loom__utf8_valid(*name, strlen(*name)))
        return ctl_usage_error(c, "NAME: not valid UTF-8");
    return CTL_OK;
}

static int
ps_read(PGconn *pg, const char *name, ps_data *d)
{
    const char *params[1];

    d->facts = ctl_proj_query(pg, name);
    if (d->facts == NULL)
        return CTL_ERR;
    if (PQntuples(d->facts) == 0) {
        ctl_fail("no projection \"%s\"; `loomctl projection list` shows the "
                 "registered ones",
                 name);
        return CTL_ERR;
    }
    d->blocker = ctl_pg_exec(pg, "finding what holds readers back",
                             ps_blocker_sql, 0, NULL);
    if (d->blocker == NULL)
        return CTL_ERR;
    params[0] = PQgetvalue(d->facts, 0, PJ_CHECKPOINT);
    d->parked =
        ctl_pg_exec(pg, "listing parked events", ps_parked_sql, 1, params);
    return d->parked != NULL ? CTL_OK : CTL_ERR;
}

int
ctl_proj_status(ctl *c, int argc, char **argv)
{
    ps_data d = {NULL, NULL, NULL};
    const char *name;
    PGconn *pg;
    int rc = ps_parse(c, argc, argv, &name);

    if (rc != CTL_OK)
        return rc;
    pg = ctl_pg_open(c);
    if (pg == NULL)
        return CTL_ERR;
    rc = ps_read(pg, name, &d);
    if (rc == CTL_OK)
        rc = c->json ? ps_print_json(&d) : ps_print_table(&d);
    PQclear(d.facts);
    PQclear(d.blocker);
    PQclear(d.parked);
    PQfinish(pg);
    return rc;
}
