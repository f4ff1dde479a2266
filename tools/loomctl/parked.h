/*
 * Parked events (table loom.parked) as loomctl shows them, shared by
 * `parked list` and `projection status`: the columns to select, a table,
 * and one JSON object per event.
 */
#ifndef LOOMCTL_PARKED_H
#define LOOMCTL_PARKED_H

#include <libpq-fe.h>

#include "buf.h"

/* Ends "to_char(<timestamptz> AT TIME ZONE 'UTC'" so that it reads
 * 2024-05-01T12:00:00.000Z, as loomctl prints every timestamp. */
#define CTL_SQL_ISO ", 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

/* The start of a query whose rows ctl_parked_table() and
 * ctl_parked_json() print; the caller adds WHERE, ORDER BY and LIMIT. */
#define CTL_PARKED_SELECT                                                      \
    "SELECT subscription, event_id::text, position, tx::text, stream, "        \
    "version, type, attempts, "                                                \
    "to_char(parked_at AT TIME ZONE 'UTC'" CTL_SQL_ISO ", "                    \
    "extract(epoch FROM now() - parked_at)::bigint, "                          \
    "to_char(replay_requested_at AT TIME ZONE 'UTC'" CTL_SQL_ISO ", "          \
    "error FROM loom.parked "

/* Prints the rows of a CTL_PARKED_SELECT result as a table on stdout,
 * each error cut to one short line. Returns CTL_OK or CTL_ERR (out of
 * memory, a write error; reported). */
int ctl_parked_table(const PGresult *r);

/* Appends row `row` as one JSON object, the error in full. */
void ctl_parked_json(loom__buf *b, const PGresult *r, int row);

#endif /* LOOMCTL_PARKED_H */
