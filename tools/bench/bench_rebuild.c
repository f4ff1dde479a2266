/*
 * rebuild: loom_projection_rebuild() of a projection whose read model is
 * one table with a row per stream, updated once per event, against a
 * plain libpq scan of the same events in commit order.
 *
 * The events (--events) are loaded once, with loom_store_append() of
 * RB_LOAD_BATCH events each, round robin over RB_STREAMS streams (so a
 * model of 10,000 rows; in commit order each stream's events come 100 in
 * a row), and vacuumed. Then each round measures, in alternating order:
 *
 *   loom        loom_projection_rebuild() with a per-event handler that
 *               queues "INSERT ... ON CONFLICT DO UPDATE SET n = n + 1"
 *               with loom_tx_exec(), the straightforward handler;
 *   raw         a libpq loop running the rebuild's keyset query (same
 *               WHERE, ORDER BY and LIMIT, binary results, pages of the
 *               rebuild's batch) that decodes every row and writes
 *               nothing: the baseline;
 *   raw+write   the same scan plus the same upsert per event, pipelined,
 *               one transaction per page: PostgreSQL's own write cost;
 *   loom_batch  loom_projection_rebuild() with a batch handler: one
 *               statement per page, unnest() of the streams and their
 *               increments summed in C.
 *
 * Every run writes a fresh model (a new projection name and schema per
 * run, the scratch database is shared) and checks it: one row per stream,
 * the counts summing to the events.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "buf.h"
#include "loom/projection.h"
#include "pgwire.h"
#include "projection_int.h"

#define RB_STREAMS    10000
#define RB_LOAD_BATCH 100
#define RB_MAX_ROUNDS 15
#define RB_OID_AINT8  1016
#define RB_PROGRESS_S 5.0

enum { RB_LOOM, RB_RAW, RB_RAW_WRITE, RB_LOOM_BATCH, RB_NKINDS };

static const char *const rb_names[RB_NKINDS] = {"loom", "raw", "raw+write",
                                                "loom_batch"};

static const char rb_read_sql[] = BENCH_READ_SQL("loom.events");

static const char rb_counts_ddl[] =
    "CREATE TABLE counts (stream text PRIMARY KEY, n bigint NOT NULL)";

static const char rb_upsert_sql[] =
    "INSERT INTO counts (stream, n) VALUES ($1, 1) "
    "ON CONFLICT (stream) DO UPDATE SET n = counts.n + 1";

static const char rb_upsert_many_sql[] =
    "INSERT INTO counts (stream, n) "
    "SELECT * FROM unnest($1::text[], $2::int8[]) "
    "ON CONFLICT (stream) DO UPDATE SET n = counts.n + EXCLUDED.n";

/* The stop flag loom_projection_rebuild() polls, set from bench_stopped
 * by the progress callback. */
static volatile int rb_stop;

/* ------------------------------------------------------------------ */
/* The projections                                                     */

static loom_err
rb_setup(loom_tx *tx, void *arg)
{
    (void) arg;
    return loom_tx_exec(tx, rb_counts_ddl, 0, NULL);
}

/* The per-event handler, as a user would write it. */
static loom_err
rb_add(loom_tx *tx, const loom_event *ev, void *arg)
{
    const char *v[1] = {ev->stream};

    (void) arg;
    return loom_tx_exec(tx, rb_upsert_sql, 1, v);
}

static const loom_projection_handler rb_handlers[] = {
    {BENCH_EVENT_TYPE, rb_add}};

static const char *const rb_types[] = {BENCH_EVENT_TYPE};

/* The batch handler's memory: an open-addressing table from stream to
 * its increment in this batch, and the two array parameters. */
typedef struct rb_agg {
    const char **key; /* borrowed from the events, for one call */
    int64_t *n;
    size_t *order; /* occupied slots in first-seen order */
    size_t cap, used;
    loom__buf arrays;
} rb_agg;

static uint64_t
rb_hash(const char *s)
{
    uint64_t h = 14695981039346656037ull;

    for (; *s != '\0'; s++) {
        h ^= (unsigned char) *s;
        h *= 1099511628211ull;
    }
    return h;
}

/* Empties the table, sized for `n` distinct keys; 0 or -1. */
static int
rb_agg_reset(rb_agg *a, size_t n)
{
    size_t cap = 16;

    while (cap < 2 * n)
        cap *= 2;
    if (cap > a->cap) {
        free(a->key);
        free(a->n);
        free(a->order);
        a->key = malloc(cap * sizeof *a->key);
        a->n = malloc(cap * sizeof *a->n);
        a->order = malloc(cap * sizeof *a->order);
        a->cap = a->key && a->n && a->order ? cap : 0;
        if (a->cap == 0)
            return -1;
    }
    memset(a->key, 0, a->cap * sizeof *a->key);
    a->used = 0;
    return 0;
}

static void
rb_agg_add(rb_agg *a, const char *stream)
{
    size_t i = (size_t) rb_hash(stream) & (a->cap - 1);

    while (a->key[i] != NULL && strcmp(a->key[i], stream) != 0)
        i = (i + 1) & (a->cap - 1);
    if (a->key[i] == NULL) {
        a->key[i] = stream;
        a->n[i] = 0;
        a->order[a->used++] = i;
    }
    a->n[i]++;
}

static loom_err
rb_add_batch(loom_tx *tx, const loom_event *const *events, size_t n, void *arg)
{
    static const uint32_t types[2] = {LOOM__OID_ATEXT, RB_OID_AINT8};
    rb_agg *a = arg;
    const char *values[2];
    int lengths[2];
    size_t mid;

    if (rb_agg_reset(a, n) != 0)
        return LOOM_ENOMEM;
    for (size_t i = 0; i < n; i++)
        rb_agg_add(a, events[i]->stream);
    loom__buf_reset(&a->arrays);
    loom__pg_array_begin(&a->arrays, LOOM__OID_TEXT, (uint32_t) a->used);
    for (size_t k = 0; k < a->used; k++)
        loom__pg_array_add(&a->arrays, a->key[a->order[k]],
                           strlen(a->key[a->order[k]]));
    mid = a->arrays.len;
    loom__pg_array_begin(&a->arrays, LOOM__OID_INT8, (uint32_t) a->used);
    for (size_t k = 0; k < a->used; k++) {
        char be[8];
        uint64_t v = (uint64_t) a->n[a->order[k]];
        for (int b = 0; b < 8; b++)
            be[b] = (char) (v >> (56 - 8 * b));
        loom__pg_array_add(&a->arrays, be, 8);
    }
    if (a->arrays.failed)
        return LOOM_ENOMEM;
    values[0] = a->arrays.data;
    values[1] = a->arrays.data + mid;
    lengths[0] = (int) mid;
    lengths[1] = (int) (a->arrays.len - mid);
    return loom_tx_exec_binary(tx, rb_upsert_many_sql, 2, types, values,
                               lengths);
}

/* ------------------------------------------------------------------ */
/* Loading and checking                                                */

static int
rb_load(bench_env *env, size_t events, size_t *loaded)
{
    bench_write_spec spec = {.env = env,
                             .raw = 0,
                             .batch = RB_LOAD_BATCH,
                             .threads = 1,
                             .max_events = events,
                             .streams = RB_STREAMS,
                             .run = 0,
                             .label = "rebuild: loading loom.events"};
    bench_write_result res;
    int rc = bench_write(&spec, &res);

    if (rc == 0)
        printf("  rebuild: loaded %zu events into loom.events in %.1f s (%.0f "
               "events/s, %d per append)\n",
               res.events, res.seconds, (double) res.events / res.seconds,
               RB_LOAD_BATCH);
    *loaded = res.events;
    bench_samples_free(&res.latency);
    if (rc != 0 || atomic_load(&bench_stopped))
        return -1;
    bench_progress("rebuild: vacuuming loom.events");
    if (bench_db_exec(env->scratch, "VACUUM (ANALYZE) loom.events") != 0 ||
        bench_db_exec(env->scratch, "VACUUM (ANALYZE) loom.streams") != 0)
        return -1;
    return 0;
}

/* Streams the loader wrote: one per append until each has one. */
static size_t
rb_streams(size_t loaded)
{
    size_t appends = loaded / RB_LOAD_BATCH;

    return appends < RB_STREAMS ? appends : RB_STREAMS;
}

/* The model in `schema` has one row per stream and counts every event;
 * then it is dropped. */
static int
rb_check(bench_env *env, const char *schema, size_t loaded)
{
    char sql[160];
    PGresult *r;
    int ok;

    snprintf(sql, sizeof sql,
             "SELECT count(*), coalesce(sum(n), 0) FROM %s.counts", schema);
    r = PQexec(env->scratch, sql);
    ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
         strtoull(PQgetvalue(r, 0, 0), NULL, 10) == rb_streams(loaded) &&
         strtoull(PQgetvalue(r, 0, 1), NULL, 10) == loaded;
    if (!ok)
        fprintf(stderr,
                "%s: rebuild: model %s is wrong: %s rows, %s events "
                "counted; %zu streams, %zu events loaded %s\n",
                BENCH_PROGRAM, schema,
                PQntuples(r) == 1 ? PQgetvalue(r, 0, 0) : "?",
                PQntuples(r) == 1 ? PQgetvalue(r, 0, 1) : "?",
                rb_streams(loaded), loaded, PQresultErrorMessage(r));
    PQclear(r);
    /* No CASCADE: its NOTICE would clutter the output. */
    snprintf(sql, sizeof sql, "DROP TABLE %s.counts; DROP SCHEMA %s", schema,
             schema);
    return ok && bench_db_exec(env->scratch, sql) == 0 ? 0 : -1;
}

/* ------------------------------------------------------------------ */
/* Eventloom's rebuild                                                 */

typedef struct rb_watch {
    int64_t done;
    double next_report;
} rb_watch;

static void
rb_on_progress(const loom_rebuild_progress *p, void *arg)
{
    rb_watch *w = arg;

    if (atomic_load(&bench_stopped))
        rb_stop = 1;
    w->done = p->done;
    if (!p->finished && (double) bench_now_ns() / 1e9 >= w->next_report) {
        bench_progress("rebuild: %lld of %lld events, %.0f events/s",
                       (long long) p->done, (long long) p->total, p->rate);
        w->next_report = (double) bench_now_ns() / 1e9 + RB_PROGRESS_S;
    }
}

/* A fresh projection `name` (also its schema) of the given kind. */
static void
rb_def(loom_projection_def *def, const char *name, int kind, rb_agg *agg)
{
    memset(def, 0, sizeof *def);
    def->name = name;
    def->schema = name;
    def->setup = rb_setup;
    if (kind == RB_LOOM) {
        def->handlers = rb_handlers;
        def->n_handlers = 1;
    } else {
        def->batch = rb_add_batch;
        def->types = rb_types;
        def->n_types = 1;
        def->arg = agg;
    }
}

static int
rb_loom(bench_env *env, const bench_opts *o, int kind, int round, size_t loaded,
        double *secs)
{
    loom_rebuild_options opt = LOOM_REBUILD_OPTIONS_INIT;
    loom_projection_def def;
    rb_agg agg;
    rb_watch w = {0, (double) bench_now_ns() / 1e9 + RB_PROGRESS_S};
    char name[32], err[512];
    int64_t t0;
    loom_err rc;

    memset(&agg, 0, sizeof agg);
    snprintf(name, sizeof name, "bench_%s_%d",
             kind == RB_LOOM ? "each" : "batch", round);
    rb_def(&def, name, kind, &agg);
    opt.conninfo = env->conninfo;
    opt.batch = o->batch;
    opt.stop = &rb_stop;
    opt.progress = rb_on_progress;
    opt.progress_arg = &w;
    t0 = bench_now_ns();
    rc = loom_projection_rebuild(&def, &opt, err, sizeof err);
    *secs = (double) (bench_now_ns() - t0) / 1e9;
    free(agg.key);
    free(agg.n);
    free(agg.order);
    loom__buf_free(&agg.arrays);
    if (rc == LOOM_EAGAIN && rb_stop)
        return -1; /* interrupted: main says so */
    if (rc != LOOM_OK) {
        fprintf(stderr, "%s: loom_projection_rebuild: %s: %s\n", BENCH_PROGRAM,
                loom_err_name(rc), err);
        return -1;
    }
    if (w.done != (int64_t) loaded) {
        fprintf(stderr, "%s: rebuild: replayed %lld events, loaded %zu\n",
                BENCH_PROGRAM, (long long) w.done, loaded);
        return -1;
    }
    return rb_check(env, name, loaded);
}

/* ------------------------------------------------------------------ */
/* The raw scan, with or without the writes                            */

typedef struct rb_scan {
    PGconn *rd, *wr; /* wr: raw+write only */
    size_t page;
    size_t events;
    uint64_t sum;
} rb_scan;

/* Waits for the page in flight on rd; NULL after printing the error. */
static PGresult *
rb_raw_recv(rb_scan *x)
{
    PGresult *r = NULL, *next;

    while ((next = PQgetResult(x->rd)) != NULL) {
        PQclear(r);
        r = next;
    }
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQnfields(r) != 10) {
        fprintf(stderr, "%s: rebuild raw read: %s", BENCH_PROGRAM,
                r ? PQresultErrorMessage(r) : PQerrorMessage(x->rd));
        PQclear(r);
        return NULL;
    }
    return r;
}

/* Flushes the pipeline on wr and collects its results up to the sync
 * point, waiting on the socket both ways (the non-blocking pattern libpq
 * prescribes for pipelines, so neither side's buffers can deadlock). */
static int
rb_raw_sync(PGconn *c)
{
    int failed = 0;

    for (;;) {
        struct pollfd pfd = {PQsocket(c), POLLIN, 0};
        int more = PQflush(c);

        if (more < 0)
            break;
        while (!PQisBusy(c)) {
            PGresult *r = PQgetResult(c);
            ExecStatusType st;
            if (r == NULL) /* the end of one statement's results */
                continue;
            st = PQresultStatus(r);
            if (st == PGRES_PIPELINE_SYNC) {
                PQclear(r);
                return failed ? -1 : 0;
            }
            if (st != PGRES_COMMAND_OK && !failed) {
                fprintf(stderr, "%s: rebuild raw upsert: %s", BENCH_PROGRAM,
                        PQresultErrorMessage(r));
                failed = 1;
            }
            PQclear(r);
        }
        if (more)
            pfd.events |= POLLOUT;
        if (poll(&pfd, 1, -1) < 0 ||
            ((pfd.revents & POLLIN) && !PQconsumeInput(c)))
            break;
    }
    fprintf(stderr, "%s: rebuild raw write: %s", BENCH_PROGRAM,
            PQerrorMessage(c));
    return -1;
}

/* One transaction: an upsert per event of the page, pipelined. */
static int
rb_raw_write(PGconn *c, const PGresult *r, int n)
{
    for (int i = 0; i < n; i++) {
        const char *v[1] = {PQgetvalue(r, i, 2)};
        if (!PQsendQueryPrepared(c, "rb_upsert", 1, v, NULL, NULL, 1)) {
            fprintf(stderr, "%s: rebuild raw write: %s", BENCH_PROGRAM,
                    PQerrorMessage(c));
            return -1;
        }
    }
    if (!PQpipelineSync(c)) {
        fprintf(stderr, "%s: rebuild raw write: %s", BENCH_PROGRAM,
                PQerrorMessage(c));
        return -1;
    }
    return rb_raw_sync(c);
}

/* Decodes every row of the page, as read_all's raw side does. */
static void
rb_raw_decode(rb_scan *x, const PGresult *r, int n)
{
    loom_event e;

    for (int i = 0; i < n; i++) {
        size_t meta = bench_read_row(r, i, &e);
        x->events++;
        x->sum += (uint64_t) e.version + e.data_len + meta + e.id.bytes[15] +
                  (unsigned char) e.stream[0] + (unsigned char) e.type[0] +
                  (uint64_t) e.recorded_at + (uint64_t) e.schema_version;
    }
}

/* Reads page after page, the next one in flight while this one is
 * decoded (and written), as the rebuild overlaps its two connections. */
static int
rb_raw_scan(rb_scan *x)
{
    loom_position at = {0, 0};
    int sent = bench_read_send(x->rd, rb_read_sql, at, x->page);

    while (sent) {
        PGresult *r = rb_raw_recv(x);
        int n, rc = 0;
        if (r == NULL)
            return -1;
        n = PQntuples(r);
        if (n == 0) {
            PQclear(r);
            return 0;
        }
        at.tx = loom__pg_be64(PQgetvalue(r, n - 1, 1));
        at.position = (int64_t) loom__pg_be64(PQgetvalue(r, n - 1, 0));
        sent = atomic_load(&bench_stopped)
                   ? 0
                   : bench_read_send(x->rd, rb_read_sql, at, x->page);
        rb_raw_decode(x, r, n);
        if (x->wr != NULL)
            rc = rb_raw_write(x->wr, r, n);
        PQclear(r);
        if (rc != 0)
            return -1;
    }
    fprintf(stderr, "%s: rebuild raw read: %s", BENCH_PROGRAM,
            atomic_load(&bench_stopped) ? "interrupted\n"
                                        : PQerrorMessage(x->rd));
    return -1;
}

/* raw+write's model: a table of its own, the upsert prepared, the
 * connection in pipeline mode. Not timed (the rebuild's set-up is, but
 * it is a few statements against seconds of replay). */
static int
rb_raw_open_writer(bench_env *env, rb_scan *x, const char *schema)
{
    char sql[256];
    PGresult *r;
    int ok;

    snprintf(sql, sizeof sql, "CREATE SCHEMA %s; SET search_path = %s; %s",
             schema, schema, rb_counts_ddl);
    x->wr = bench_db_connect(env->conninfo, "loom-bench-raw");
    if (x->wr == NULL || bench_db_exec(x->wr, sql) != 0)
        return -1;
    r = PQprepare(x->wr, "rb_upsert", rb_upsert_sql, 1, NULL);
    ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        fprintf(stderr, "%s: rebuild raw prepare: %s", BENCH_PROGRAM,
                PQresultErrorMessage(r));
    PQclear(r);
    if (!ok || PQsetnonblocking(x->wr, 1) != 0 || !PQenterPipelineMode(x->wr)) {
        fprintf(stderr, "%s: rebuild raw pipeline: %s", BENCH_PROGRAM,
                PQerrorMessage(x->wr));
        return -1;
    }
    return 0;
}

static int
rb_raw(bench_env *env, const bench_opts *o, int kind, int round, size_t loaded,
       double *secs)
{
    rb_scan x = {NULL, NULL, o->batch ? o->batch : LOOM__REBUILD_BATCH, 0, 0};
    char schema[32];
    int64_t t0;
    int rc = -1;

    snprintf(schema, sizeof schema, "bench_rawwrite_%d", round);
    x.rd = bench_db_connect(env->conninfo, "loom-bench-raw");
    if (x.rd == NULL ||
        (kind == RB_RAW_WRITE && rb_raw_open_writer(env, &x, schema) != 0))
        goto out;
    t0 = bench_now_ns();
    rc = rb_raw_scan(&x);
    *secs = (double) (bench_now_ns() - t0) / 1e9;
    if (rc == 0 && x.events != loaded) {
        fprintf(stderr, "%s: rebuild raw: read %zu events, loaded %zu\n",
                BENCH_PROGRAM, x.events, loaded);
        rc = -1;
    }
    if (rc == 0 && kind == RB_RAW_WRITE)
        rc = rb_check(env, schema, loaded);
out:
    PQfinish(x.rd);
    PQfinish(x.wr);
    return rc;
}

/* ------------------------------------------------------------------ */
/* The case                                                            */

static int
rb_run(bench_env *env, const bench_opts *o, int kind, int round, size_t loaded,
       double *rate)
{
    double secs = 0;
    int rc;

    bench_db_checkpoint(env);
    bench_progress("rebuild: round %d/%d, %s", round + 1, o->rounds,
                   rb_names[kind]);
    rc = kind == RB_LOOM || kind == RB_LOOM_BATCH
             ? rb_loom(env, o, kind, round, loaded, &secs)
             : rb_raw(env, o, kind, round, loaded, &secs);
    if (rc != 0 || atomic_load(&bench_stopped))
        return -1;
    *rate = (double) loaded / secs;
    printf("  rebuild %-10s: %.0f events/s (%zu events in %.2f s)\n",
           rb_names[kind], *rate, loaded, secs);
    fflush(stdout);
    return 0;
}

static void
rb_summary(const bench_opts *o, double rate[RB_NKINDS][RB_MAX_ROUNDS])
{
    double med[RB_NKINDS];

    for (int k = 0; k < RB_NKINDS; k++) {
        med[k] = bench_median(rate[k], o->rounds);
        printf("  rebuild %-10s: median %.0f events/s of %d runs\n",
               rb_names[k], med[k], o->rounds);
    }
    printf("  rebuild ratios: loom/raw+write %.3f, loom_batch/raw %.3f, "
           "loom_batch/raw+write %.3f, raw+write/raw %.3f\n",
           med[RB_LOOM] / med[RB_RAW_WRITE], med[RB_LOOM_BATCH] / med[RB_RAW],
           med[RB_LOOM_BATCH] / med[RB_RAW_WRITE],
           med[RB_RAW_WRITE] / med[RB_RAW]);
    bench_report("rebuild", med[RB_LOOM], med[RB_RAW]);
}

int
bench_rebuild(bench_env *env, const bench_opts *o)
{
    double rate[RB_NKINDS][RB_MAX_ROUNDS];
    size_t loaded;

    if (o->rounds < 1 || o->rounds > RB_MAX_ROUNDS)
        return -1;
    rb_stop = 0;
    printf("rebuild: %zu events over %d streams, a model of one row per "
           "stream updated once per event; rebuild batches and raw pages "
           "of %zu\n",
           o->events, RB_STREAMS, o->batch ? o->batch : LOOM__REBUILD_BATCH);
    if (rb_load(env, o->events, &loaded) != 0)
        return -1;
    for (int r = 0; r < o->rounds; r++)
        for (int i = 0; i < RB_NKINDS; i++) {
            int kind = r % 2 == 0 ? i : RB_NKINDS - 1 - i;
            if (rb_run(env, o, kind, r, loaded, &rate[kind][r]) != 0)
                return -1;
        }
    rb_summary(o, rate);
    return 0;
}
