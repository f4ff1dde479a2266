/*
 * loomctl saga: what its subcommands share. Private to cmd_saga.c
 * (dispatch, list, diagram), saga_show.c (one saga and its timeline) and
 * saga_request.c (retry, skip, abort).
 *
 * Listings are catalog queries on loom.saga_instances, loom.saga_log and
 * loom.saga_definitions (framework/migrations/0007_saga.sql) over a plain
 * libpq connection. Requests go through loom_saga_request() on an event
 * store handle, so loomctl checks and does exactly what a program would;
 * a running orchestrator applies them.
 */
#ifndef LOOMCTL_SAGACTL_H
#define LOOMCTL_SAGACTL_H

#include <stddef.h>

#include <libpq-fe.h>

#include "buf.h"
#include "loom/saga.h"
#include "loomctl.h"

/* A step's name as SQL, from the definition the instance started with
 * (forward steps come first in its `steps` array), NULL when unknown
 * (a negative index would count from the end of a jsonb array).
 * Needs `i` (loom.saga_instances) and `d` (loom.saga_definitions, LEFT
 * JOINed by CTL_SAGA_DEF_JOIN). */
#define CTL_SAGA_STEP_NAME                                                     \
    "(CASE WHEN i.step >= 0 THEN d.steps -> i.step ->> 'name' END)"
#define CTL_SAGA_DEF_JOIN                                                      \
    "LEFT JOIN loom.saga_definitions d ON d.name = i.type "                    \
    "AND d.version = i.def_version "

/* Checks a saga id given on the command line: non-empty UTF-8 of at most
 * LOOM_SAGA_MAX_ID bytes without control characters, as loom/saga.h
 * defines ids. A usage error otherwise. */
int ctl_saga_check_id(const ctl *c, const char *id);

/* Reports that saga `id` does not exist (exit 1). */
int ctl_saga_not_found(const ctl *c, const char *id);

/* The step cell: "ReserveInventory" when the definition names it, else
 * "#1" (the index), into `b` (reset); valid until its next use. */
const char *ctl_saga_step(loom__buf *b, const PGresult *r, int row,
                          int step_col, int name_col);

/* `secs` as a duration with milliseconds below a second ("120 ms"), else
 * as ctl_fmt_secs() ("1.2 s", "3 min"). */
void ctl_saga_fmt_took(double secs, char out[32]);

/* The subcommands; argv still holds "saga" and the subcommand, which
 * ctl_args_next() skips. Each returns an exit code. */
int ctl_saga_list(ctl *c, int argc, char **argv);
int ctl_saga_show(ctl *c, int argc, char **argv);
int ctl_saga_request(ctl *c, int argc, char **argv, loom_saga_op op);
int ctl_saga_diagram(ctl *c, int argc, char **argv);

#endif /* LOOMCTL_SAGACTL_H */
