/*
 * loomctl projection: what `list` and `status` share (one query gives
 * every fact about a projection), and the rebuild's progress display.
 * Private to cmd_projection.c, proj_*.c and rebuild_progress.c.
 */
#ifndef LOOMCTL_PROJ_H
#define LOOMCTL_PROJ_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "buf.h"
#include "loom/projection.h"
#include "loomctl.h"

/* Lag is counted up to this many events; more shows as ">1000000". */
#define CTL_PROJ_LAG_CAP 1000000

/* The columns of ctl_proj_query()'s result. */
enum {
    PJ_NAME,
    PJ_SCHEMA, /* NULL: an in-memory model */
    PJ_GENERATION,
    PJ_CHECKPOINT, /* the checkpoint's name */
    PJ_CP_TX,      /* NULL: no checkpoint yet */
    PJ_CP_POSITION,
    PJ_CP_UPDATED_AT,
    PJ_CP_AGE,     /* seconds since the checkpoint moved */
    PJ_LAG_EVENTS, /* at most CTL_PROJ_LAG_CAP + 1 */
    PJ_LAG_SECONDS,
    PJ_PARKED,
    PJ_REBUILD_PARKED, /* parked under the rebuild's checkpoint */
    PJ_RUNNER_PIDS,    /* "12,34": live runners connected; NULL: none */
    PJ_REBUILD_PIDS,   /* the same for rebuilds */
    PJ_RB_STARTED_AT,  /* NULL: no rebuild in progress */
    PJ_RB_DONE,
    PJ_RB_TOTAL,
    PJ_RB_UPDATED_AT,
    PJ_RB_AGE,
    PJ_CREATED_AT,
    PJ_REBUILT_AT,
    PJ_NCOLS
};

/* Every projection (name NULL) or one, ordered by name. NULL after
 * printing why. The caller PQclears the result. */
PGresult *ctl_proj_query(PGconn *pg, const char *name);

/* Whether row `i` has a rebuild in progress (started, or connected). */
int ctl_proj_rebuilding(const PGresult *r, int i);

/* The rebuild's percentage, 0 to 100; -1 when its total is unknown. */
int ctl_proj_percent(const PGresult *r, int i);

/* "running", "stopped", then ", rebuilding 45%" and " (stopped)" when
 * no rebuild is connected. */
void ctl_proj_state(const PGresult *r, int i, char *out, size_t len);

/* The lag in events: "12" or ">1000000". */
void ctl_proj_lag(const PGresult *r, int i, char out[32]);

/* Appends row `i`'s members (not the braces) to a JSON object. */
void ctl_proj_json(loom__buf *b, const PGresult *r, int i);

/* `projection status NAME` and `projection rebuild NAME ...`; argv still
 * holds the subcommand, which ctl_args_next() skips. */
int ctl_proj_status(ctl *c, int argc, char **argv);
int ctl_proj_rebuild(ctl *c, int argc, char **argv);

/* ------------------------------------------------------------------ */
/* The rebuild's progress (rebuild_progress.c)                         */

typedef struct ctl_progress {
    const char *name; /* the projection */
    int tty;          /* stderr is a terminal: a bar redrawn */
    int drawn;        /* a bar is on the screen (a newline ends it) */
    int reported;     /* a report has arrived */
    double last_line; /* when the last plain line was printed */
    int64_t done;     /* the last report's figures */
    double rate;
} ctl_progress;

/* Starts reporting on stderr, as a bar on a terminal, else as a line
 * every CTL_PROGRESS_LINE_S seconds. */
#define CTL_PROGRESS_LINE_S 5.0
void ctl_progress_init(ctl_progress *p, const char *name);

/* Seconds on a monotonic clock. */
double ctl_progress_now(void);

/* A loom_rebuild_progress_fn; `arg` is the ctl_progress. */
void ctl_progress_report(const loom_rebuild_progress *rp, void *arg);

/* Ends the bar's line, if one is drawn, before other output. */
void ctl_progress_end(ctl_progress *p);

/* The bar or the line for `rp`, without a newline, into `out`. */
void ctl_progress_bar(const loom_rebuild_progress *rp, char *out, size_t len);
void ctl_progress_line(const char *name, const loom_rebuild_progress *rp,
                       char *out, size_t len);

#endif /* LOOMCTL_PROJ_H */
