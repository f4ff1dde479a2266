/*
 * Events recorded in the last minute, without scanning loom.events:
 * recorded_at has no index, but it is the writing transaction's start
 * time, and transaction ids grow with time too. So the recent events sit
 * at the end of the commit-order index (tx, position). A binary search
 * over tx, one index probe per step (at most 64), finds the first
 * transaction whose first event is recent, and the count then reads only
 * that tail of the index.
 *
 * The search assumes recorded_at grows with tx. A transaction that
 * started before the minute but wrote late breaks that only near the
 * boundary, where it can make the count a little low.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stats.h"

/* "ORDER BY e.tx", qualified: a bare "tx" would name the output column
 * tx::text and sort as text ("999" after "1010"). */
static const char rate_bounds_sql[] =
    "SELECT (now() - interval '1 minute')::text, "
    "(SELECT e.tx::text FROM loom.events e ORDER BY e.tx, position LIMIT 1), "
    "(SELECT e.tx::text FROM loom.events e ORDER BY e.tx DESC, position DESC "
    "LIMIT 1), "
    "(SELECT recorded_at > now() - interval '1 minute' FROM loom.events "
    "ORDER BY tx DESC, position DESC LIMIT 1)";

/* Whether the first event at or after transaction $1 is recent. */
static const char rate_probe_sql[] =
    "SELECT recorded_at > $2::timestamptz FROM loom.events "
    "WHERE tx >= $1::xid8 ORDER BY tx, position LIMIT 1";

static const char rate_count_sql[] =
    "SELECT count(*) FROM loom.events "
    "WHERE tx >= $1::xid8 AND recorded_at > $2::timestamptz";

static int
rate_u64(const char *s, uint64_t *v)
{
    char *end;

    errno = 0;
    *v = strtoull(s, &end, 10);
    return errno == 0 && end != s && *end == '\0' ? 0 : -1;
}

/* 1 recent, 0 not, -1 error (reported). */
static int
rate_probe(PGconn *pg, uint64_t tx, const char *cutoff)
{
    char num[24];
    const char *params[2] = {num, cutoff};
    PGresult *r;
    int recent;

    snprintf(num, sizeof num, "%" PRIu64, tx);
    r = ctl_pg_exec(pg, "measuring the event rate", rate_probe_sql, 2, params);
    if (r == NULL)
        return -1;
    recent = PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    PQclear(r);
    return recent;
}

/* The smallest tx in [lo, hi] whose first event is recent, given that
 * the one at hi is. */
static int
rate_search(PGconn *pg, uint64_t lo, uint64_t hi, const char *cutoff,
            uint64_t *first)
{
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        int recent = rate_probe(pg, mid, cutoff);
        if (recent < 0)
            return CTL_ERR;
        if (recent)
            hi = mid;
        else
            lo = mid + 1;
    }
    *first = lo;
    return CTL_OK;
}

static int
rate_count(PGconn *pg, uint64_t first, const char *cutoff, int64_t *n)
{
    char num[24];
    const char *params[2] = {num, cutoff};
    PGresult *r;

    snprintf(num, sizeof num, "%" PRIu64, first);
    r = ctl_pg_exec(pg, "counting recent events", rate_count_sql, 2, params);
    if (r == NULL)
        return CTL_ERR;
    *n = ctl_stats_i64(r, 0, 0);
    PQclear(r);
    return CTL_OK;
}

int
ctl_stats_last_minute(PGconn *pg, int64_t *n)
{
    PGresult *r =
        ctl_pg_exec(pg, "measuring the event rate", rate_bounds_sql, 0, NULL);
    uint64_t lo, hi, first;
    char cutoff[64];
    int rc = CTL_OK;

    *n = 0;
    if (r == NULL)
        return CTL_ERR;
    /* No events, or the newest is older than a minute: nothing to count. */
    if (PQgetisnull(r, 0, 1) || strcmp(PQgetvalue(r, 0, 3), "t") != 0) {
        PQclear(r);
        return CTL_OK;
    }
    snprintf(cutoff, sizeof cutoff, "%s", PQgetvalue(r, 0, 0));
    if (rate_u64(PQgetvalue(r, 0, 1), &lo) != 0 ||
        rate_u64(PQgetvalue(r, 0, 2), &hi) != 0 || lo > hi) {
        ctl_fail("measuring the event rate: unexpected transaction ids");
        rc = CTL_ERR;
    }
    PQclear(r);
    if (rc == CTL_OK)
        rc = rate_search(pg, lo, hi, cutoff, &first);
    if (rc == CTL_OK)
        rc = rate_count(pg, first, cutoff, n);
    return rc;
}
