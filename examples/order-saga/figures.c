/*
 * The closing figures: the burst's throughput and latency, measured from
 * the saga instances themselves (started_at: the start's transaction;
 * ended_at: the transition that ended it), so the same numbers come out
 * whatever the mode or transport; and what the participants counted.
 */
#include <stdio.h>
#include <stdlib.h>

#include "demo.h"

static const char burst_sql[] =
    "SELECT count(*), "
    "round((count(*) / greatest(extract(epoch FROM max(ended_at) - "
    "min(started_at)), 0.001))::numeric, 1), "
    "round((percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM "
    "ended_at - started_at)) * 1000)::numeric, 1), "
    "round((percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM "
    "ended_at - started_at)) * 1000)::numeric, 1), "
    "round((extract(epoch FROM max(ended_at) - min(started_at)) * 1000)"
    "::numeric) "
    "FROM loom.saga_instances WHERE id BETWEEN $1 AND $2 AND ended_at IS "
    "NOT NULL";

void
demo_figures(demo_run *r, const os_counts *c)
{
    char lo[64], hi[64];
    const char *p[2] = {lo, hi};
    PGresult *res;

    demo_heading("Figures");
    snprintf(lo, sizeof lo, "%s-%03lld", r->o->tag, (long long) r->burst_first);
    snprintf(hi, sizeof hi, "%s-%03lld", r->o->tag,
             (long long) (r->burst_first + r->burst_n - 1));
    res = r->burst_n > 0 ? demo_query(r->pg, burst_sql, 2, p) : NULL;
    if (res != NULL && PQntuples(res) == 1) {
        printf("  burst: %s sagas ended in %s ms: %s sagas/s; latency from "
               "start to end\n  p50 %s ms, p99 %s ms\n",
               PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 4),
               PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 2),
               PQgetvalue(res, 0, 3));
    }
    PQclear(res);
    printf("  participants: %llu commands handled (%llu answered with a "
           "failure), %llu duplicates dropped\n",
           (unsigned long long) c->handled, (unsigned long long) c->failures,
           (unsigned long long) c->duplicates);
    printf("  version conflicts: %llu times a participant's transaction "
           "lost to a concurrent\n  one on the same aggregate, and ran its "
           "commands again on fresh state\n",
           (unsigned long long) c->conflicts);
}
