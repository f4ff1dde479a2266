/*
 * The parts of `loomctl stats` that need more than one query: the event
 * rate and the reader horizon. Private to cmd_stats.c and its helpers,
 * except ctl_stats_i64(), which the parked and projection commands use
 * as well.
 */
#ifndef LOOMCTL_STATS_H
#define LOOMCTL_STATS_H

#include <stdint.h>

#include <libpq-fe.h>

#include "buf.h"
#include "loomctl.h"

/* The integer in a result cell; 0 for NULL. */
int64_t ctl_stats_i64(const PGresult *r, int row, int col);

/* `n` bytes as "12.3 MB" (1024-based, like pg_size_pretty()). */
void ctl_stats_bytes(int64_t n, char out[32]);

/* Counts the events recorded in the last minute into *n. */
int ctl_stats_last_minute(PGconn *pg, int64_t *n);

/* Prints (or adds to the JSON object) the snapshot horizon that readers
 * in commit order wait for, and the sessions holding it. */
int ctl_stats_horizon(PGconn *pg, const ctl *c, loom__buf *json);

#endif /* LOOMCTL_STATS_H */
