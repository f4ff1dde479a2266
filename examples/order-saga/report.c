/*
 * The demo's tables: section headings, a saga's timeline (from
 * loom.saga_log, as `loomctl saga show` prints it, shorter), the read
 * model, and its rebuild by replay compared with the live one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "demo.h"
#include "summary.h"

int64_t
demo_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
demo_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long) (ms % 1000) * 1000000};

    nanosleep(&ts, NULL);
}

PGresult *
demo_query(PGconn *pg, const char *sql, int n, const char *const *params)
{
    PGresult *r = PQexecParams(pg, sql, n, NULL, params, NULL, NULL, 0);

    if (PQresultStatus(r) != PGRES_TUPLES_OK &&
        PQresultStatus(r) != PGRES_COMMAND_OK) {
        fprintf(stderr, "loom-order-saga: %s", PQerrorMessage(pg));
        PQclear(r);
        return NULL;
    }
    return r;
}

void
demo_heading(const char *title)
{
    printf("\n== %s\n\n", title);
    fflush(stdout);
}

int
demo_wait_saga(PGconn *pg, const char *id, char *state, size_t len, int ms)
{
    const char *p[1] = {id};
    int64_t end = demo_now_ms() + ms;

    for (;;) {
        PGresult *r = demo_query(
            pg, "SELECT state FROM loom.saga_instances WHERE id = $1", 1, p);
        int final = 0;
        if (r != NULL && PQntuples(r) == 1) {
            snprintf(state, len, "%s", PQgetvalue(r, 0, 0));
            final = strcmp(state, "RUNNING") != 0 &&
                    strcmp(state, "COMPENSATING") != 0;
        }
        PQclear(r);
        if (final)
            return 0;
        if (demo_now_ms() > end)
            return -1;
        demo_sleep_ms(20);
    }
}

/* A reply, failure or timeout shows how long after its command it came,
 * as in loomctl saga show. */
static const char timeline_sql[] =
    "SELECT round(extract(epoch FROM l.at - i.started_at) * 1000)::bigint, "
    "coalesce(l.step_name, ''), coalesce(l.attempt, 0), l.kind, "
    "CASE WHEN l.kind IN ('reply', 'failure', 'timeout') THEN "
    "round(extract(epoch FROM l.at - (SELECT c.at FROM loom.saga_log c "
    "WHERE c.saga_id = l.saga_id AND c.id < l.id AND c.kind = 'command' "
    "AND c.step_name IS NOT DISTINCT FROM l.step_name "
    "AND c.attempt IS NOT DISTINCT FROM l.attempt "
    "ORDER BY c.id DESC LIMIT 1)) * 1000)::bigint END, "
    "coalesce(l.detail, ''), i.state "
    "FROM loom.saga_log l JOIN loom.saga_instances i ON i.id = l.saga_id "
    "WHERE l.saga_id = $1 ORDER BY l.id";

void
demo_timeline(PGconn *pg, const char *id)
{
    const char *p[1] = {id};
    PGresult *r = demo_query(pg, timeline_sql, 1, p);

    if (r == NULL || PQntuples(r) == 0) {
        PQclear(r);
        return;
    }
    printf("  saga %s: %s\n", id, PQgetvalue(r, 0, 6));
    printf("    %9s  %-17s %-7s %-12s %8s  %s\n", "TIME", "STEP", "ATTEMPT",
           "KIND", "TOOK", "DETAIL");
    for (int i = 0; i < PQntuples(r); i++) {
        char took[32] = "", at[32];
        if (!PQgetisnull(r, i, 4))
            snprintf(took, sizeof took, "%s ms", PQgetvalue(r, i, 4));
        snprintf(at, sizeof at, "+%s ms", PQgetvalue(r, i, 0));
        printf("    %9s  %-17s %7s %-12s %8s  %.60s\n", at, PQgetvalue(r, i, 1),
               strcmp(PQgetvalue(r, i, 2), "0") ? PQgetvalue(r, i, 2) : "",
               PQgetvalue(r, i, 3), took, PQgetvalue(r, i, 5));
    }
    PQclear(r);
    fflush(stdout);
}

/* Orders of the run whose read-model row is not final yet, or missing. */
static long long
unsettled(demo_run *r)
{
    char like[64];
    const char *p[1] = {like};
    PGresult *res;
    long long n = -1;

    snprintf(like, sizeof like, "%s-%%", r->o->tag);
    res = demo_query(r->pg,
                     "SELECT count(*) FROM loom.saga_instances i LEFT JOIN "
                     "order_saga.order_summary s ON s.order_id = i.id "
                     "WHERE i.id LIKE $1 AND (s.order_id IS NULL OR "
                     "s.status = 'placed')",
                     1, p);
    if (res != NULL)
        n = atoll(PQgetvalue(res, 0, 0));
    PQclear(res);
    return n;
}

int
demo_read_model(demo_run *r)
{
    char like[64];
    const char *p[1] = {like};
    int64_t end = demo_now_ms() + 30000;
    PGresult *res;

    demo_heading("The read model: " OS_SUMMARY_TABLE " (projection "
                 "ordersaga_summary)");
    while (unsettled(r) != 0 && demo_now_ms() < end)
        demo_sleep_ms(50);
    snprintf(like, sizeof like, "%s-%%", r->o->tag);
    res = demo_query(r->pg,
                     "SELECT s.order_id, s.customer, s.items, "
                     "to_char(s.total_cents / 100.0, 'FM999990.00'), "
                     "s.status, s.saga, i.state FROM " OS_SUMMARY_TABLE " s "
                     "JOIN loom.saga_instances i ON i.id = s.order_id "
                     "WHERE s.order_id LIKE $1 ORDER BY s.order_id",
                     1, p);
    if (res == NULL)
        return -1;
    printf("  %-9s %-5s %-16s %7s %-10s %-12s %s\n", "ORDER", "WHO", "ITEMS",
           "TOTAL", "STATUS", "SAGA STATE", "WHAT THE SERVICES DID");
    for (int i = 0; i < PQntuples(res); i++) {
        /* The burst's rows look alike: the first and last few. */
        if (PQntuples(res) > 14 && i == 9)
            printf("  ... %d more ...\n", PQntuples(res) - 13);
        if (PQntuples(res) > 14 && i >= 9 && i < PQntuples(res) - 4)
            continue;
        printf("  %-9s %-5s %-16s %7s %-10s %-12s %s\n", PQgetvalue(res, i, 0),
               PQgetvalue(res, i, 1), PQgetvalue(res, i, 2),
               PQgetvalue(res, i, 3), PQgetvalue(res, i, 4),
               PQgetvalue(res, i, 6), PQgetvalue(res, i, 5));
    }
    PQclear(res);
    return 0;
}

/* A digest of the whole read model, and its row count. */
static int
digest(demo_run *r, char *out, size_t len, long long *rows)
{
    PGresult *res = demo_query(
        r->pg,
        "SELECT count(*), coalesce(md5(string_agg(s::text, '|' ORDER BY "
        "order_id)), '-') FROM " OS_SUMMARY_TABLE " s",
        0, NULL);

    if (res == NULL)
        return -1;
    *rows = atoll(PQgetvalue(res, 0, 0));
    snprintf(out, len, "%s", PQgetvalue(res, 0, 1));
    PQclear(res);
    return 0;
}

int
demo_replay(demo_run *r)
{
    loom_rebuild_options opt = LOOM_REBUILD_OPTIONS_INIT;
    char before[64], after[64], err[512] = "";
    long long n0, n1;
    int64_t t0;
    loom_err rc;

    demo_heading("Rebuilding the read model by replaying every event");
    if (digest(r, before, sizeof before, &n0) != 0)
        return -1;
    t0 = demo_now_ms();
    rc = loom_projection_rebuild(os_summary_def(), &opt, err, sizeof err);
    if (rc != LOOM_OK) {
        printf("  rebuild failed: %s: %s\n", loom_err_name(rc), err);
        r->failures++;
        return -1;
    }
    if (digest(r, after, sizeof after, &n1) != 0)
        return -1;
    printf("  live model:    %lld rows, md5 %s\n", n0, before);
    printf("  rebuilt model: %lld rows, md5 %s  (%lld ms, swapped in)\n", n1,
           after, (long long) (demo_now_ms() - t0));
    if (n0 != n1 || strcmp(before, after) != 0) {
        printf("  they differ!\n");
        r->failures++;
        return -1;
    }
    printf("  identical: the read model is a pure function of the events\n");
    return 0;
}
