/*
 * loomctl outbox and loomctl relay: what they share. Private to
 * cmd_outbox.c (dispatch, status), outbox_dlq.c (dead letters, redrive),
 * cmd_relay.c (options, set-up) and relay_run.c (the running relay).
 *
 * The outbox (loom/outbox.h) holds the messages handlers wrote in their
 * transactions; a relay publishes them through a transport. status, dlq
 * and redrive are catalog queries and calls of the schema's functions
 * (loom.outbox_status, loom.outbox_redrive) on a plain libpq
 * connection; relay runs the library's relay on a loom_runtime.
 */
#ifndef LOOMCTL_OUTBOX_H
#define LOOMCTL_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "loom/outbox.h"
#include "loomctl.h"

/* Checks an outbox name given on the command line (for `what`, "OUTBOX"
 * or "--outbox"): 1 to LOOM_OUTBOX_MAX_NAME letters, digits, '_', '-' or
 * '.', as loom_outbox_add() and the relay accept them. A usage error
 * otherwise. */
int ctl_outbox_check_name(const ctl *c, const char *what, const char *s);

/* Looks up outbox `name` on `pg`: 1 when it has messages, dead letters or
 * a relay row, 0 after printing that it has none of them, -1 after a
 * failed query. */
int ctl_outbox_exists(const ctl *c, PGconn *pg, const char *name);

/* Writes the JSON line in `b` (plus a newline) to stdout, or reports an
 * allocation failure; returns CTL_OK or CTL_ERR. */
int ctl_outbox_json_out(loom__buf *b, const char *what);

/* The subcommands of `outbox`; argv still holds "outbox" and the
 * subcommand, which ctl_args_next() skips. */
int ctl_outbox_status(ctl *c, int argc, char **argv);
int ctl_outbox_dlq(ctl *c, int argc, char **argv);
int ctl_outbox_redrive(ctl *c, int argc, char **argv);

/* ------------------------------------------------------------------ */
/* loomctl relay                                                       */

/* Defaults and limits of the relay's options. */
#define CTL_RELAY_BATCH      500
#define CTL_RELAY_MAX_BATCH  10000 /* the library's limit */
#define CTL_RELAY_REPORT_MS  10000
#define CTL_RELAY_MAX_REPORT INT64_C(86400000) /* a day */
#define CTL_RELAY_MAX_NAME   200

/* What `loomctl relay` was asked to do. */
typedef struct ctl_relay_opts {
    const char *outbox;    /* never NULL */
    const char *transport; /* the URL; never NULL */
    int transport_given;   /* --transport; else topics on --db's database */
    const char *name;      /* NULL: "<host> pid <pid>", as the library's */
    size_t batch;
    uint64_t report_ms;   /* 0: no status lines */
    const char *shown;    /* the transport as printed (no password) */
    const char *conninfo; /* --db (with --role), or NULL */
} ctl_relay_opts;

/* Runs the relay until SIGINT or SIGTERM (relay_run.c): opens the
 * runtime, the transport and the relay, prints what happens, and stops
 * cleanly. Returns the exit code. */
int ctl_relay_run(const ctl *c, const ctl_relay_opts *o);

#endif /* LOOMCTL_OUTBOX_H */
