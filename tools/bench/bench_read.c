/*
 * read_all: every event in commit order, in keyset pages, with
 * loom_store_read_all() against a plain libpq loop running the same query
 * (same WHERE, ORDER BY, LIMIT, binary results) over the raw table.
 *
 * Both tables are loaded with the identical rows first (appends of 100
 * events, the append cases' writers), then vacuumed, so neither side pays
 * for setting hint bits. Eventloom decodes each row into a loom_event,
 * metadata included; the raw loop decodes every column into the same
 * struct (leaving the metadata bytes undecoded), and both sides fold the
 * fields into a checksum that must agree, which proves they read the same
 * rows.
 */
#include <stdio.h>
#include <string.h>

#include "bench.h"
#include "loom/eventstore.h"
#include "pgwire.h"

#define READ_LOAD_BATCH 100

static const char read_raw_sql[] = BENCH_READ_SQL("loom_bench.events");

/* What one read of the whole table saw. */
typedef struct read_total {
    size_t events;
    uint64_t sum;  /* of fields equal in both tables: compared */
    uint64_t sink; /* of fields that differ (ids, positions): not */
} read_total;

/* Uses every field, so neither side can skip decoding one. */
static void
read_touch(const loom_event *e, size_t metadata_len, read_total *t)
{
    t->events++;
    t->sum += (uint64_t) e->version + (uint64_t) e->schema_version +
              e->data_len + (unsigned char) e->stream[0] +
              (unsigned char) e->type[0];
    if (e->data_len > 0)
        t->sum += e->data[0] + e->data[e->data_len - 1];
    t->sink ^= (uint64_t) e->position ^ e->tx ^ (uint64_t) e->recorded_at ^
               e->id.bytes[15] ^ metadata_len ^ e->n_headers ^
               (e->correlation_id ? (unsigned char) e->correlation_id[0] : 0);
}

/* ------------------------------------------------------------------ */
/* Loading                                                             */

static int
read_load_side(bench_env *env, int raw, size_t events, size_t *loaded)
{
    bench_write_spec spec = {.env = env,
                             .raw = raw,
                             .form = BENCH_RAW_UNNEST,
                             .batch = READ_LOAD_BATCH,
                             .threads = 1,
                             .max_events = events,
                             .run = 0, /* the append cases start at run 1 */
                             .label =
                                 raw ? "read_all: loading loom_bench.events"
                                     : "read_all: loading loom.events"};
    bench_write_result res;
    int rc = bench_write(&spec, &res);

    if (rc == 0)
        printf("  read_all: loaded %zu events into %s in %.1f s (%.0f "
               "events/s, %d per transaction)\n",
               res.events, raw ? "loom_bench.events" : "loom.events",
               res.seconds, (double) res.events / res.seconds, READ_LOAD_BATCH);
    *loaded = res.events;
    bench_samples_free(&res.latency);
    return rc;
}

static int
read_load(bench_env *env, size_t events, size_t *loaded)
{
    size_t n[2];

    for (int raw = 0; raw < 2; raw++)
        if (read_load_side(env, raw, events, &n[raw]) != 0 ||
            atomic_load(&bench_stopped))
            return -1;
    if (n[0] != n[1]) {
        fprintf(stderr, "%s: read_all: loaded %zu and %zu events\n",
                BENCH_PROGRAM, n[0], n[1]);
        return -1;
    }
    *loaded = n[0];
    bench_progress("read_all: vacuuming both tables");
    if (bench_db_exec(env->scratch, "VACUUM (ANALYZE) loom.events") != 0 ||
        bench_db_exec(env->scratch, "VACUUM (ANALYZE) loom.streams") != 0 ||
        bench_db_exec(env->scratch, "VACUUM (ANALYZE) loom_bench.events"))
        return -1;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Eventloom's read                                                    */

static int
read_loom_pages(loom_store *s, size_t page, read_total *t)
{
    loom_position at = {0, 0};
    size_t n;

    do {
        loom_events *p = NULL;
        loom_err rc = loom_store_read_all(s, at, page, &p);
        if (rc != LOOM_OK) {
            fprintf(stderr, "%s: loom_store_read_all: %s: %s\n", BENCH_PROGRAM,
                    loom_err_name(rc), loom_store_errmsg(s));
            return -1;
        }
        n = loom_events_count(p);
        for (size_t i = 0; i < n; i++)
            read_touch(loom_events_at(p, i), 0, t);
        at = loom_events_next(p);
        loom_events_free(p);
    } while (n > 0 && !atomic_load(&bench_stopped));
    return 0;
}

static int
read_loom(const bench_env *env, size_t page, read_total *t, double *secs)
{
    loom_store_config cfg = LOOM_STORE_CONFIG_INIT;
    loom_store *s = NULL;
    char err[512];
    int64_t t0;
    int rc;

    cfg.conninfo = env->conninfo;
    cfg.application_name = "loom-bench";
    cfg.max_read = page;
    if (loom_store_open(&s, &cfg, err, sizeof err) != LOOM_OK) {
        fprintf(stderr, "%s: loom_store_open: %s\n", BENCH_PROGRAM, err);
        return -1;
    }
    t0 = bench_now_ns();
    rc = read_loom_pages(s, page, t);
    *secs = (double) (bench_now_ns() - t0) / 1e9;
    loom_store_close(s);
    return rc;
}

/* ------------------------------------------------------------------ */
/* The raw read                                                        */

/* Decodes a row as events.c does, minus the metadata protobuf. */
size_t
bench_read_row(const PGresult *r, int i, loom_event *e)
{
    memset(e, 0, sizeof *e);
    e->position = (int64_t) loom__pg_be64(PQgetvalue(r, i, 0));
    e->tx = loom__pg_be64(PQgetvalue(r, i, 1));
    e->stream = PQgetvalue(r, i, 2);
    e->version = (int64_t) loom__pg_be64(PQgetvalue(r, i, 3));
    memcpy(e->id.bytes, PQgetvalue(r, i, 4), 16);
    e->type = PQgetvalue(r, i, 5);
    e->schema_version = (int32_t) loom__pg_be32(PQgetvalue(r, i, 6));
    e->data = (const uint8_t *) PQgetvalue(r, i, 7);
    e->data_len = (size_t) PQgetlength(r, i, 7);
    e->recorded_at =
        (int64_t) loom__pg_be64(PQgetvalue(r, i, 9)) + LOOM__PG_EPOCH_US;
    return PQgetisnull(r, i, 8) ? 0 : (size_t) PQgetlength(r, i, 8);
}

int
bench_read_send(PGconn *c, const char *sql, loom_position at, size_t page)
{
    static const Oid types[3] = {LOOM__OID_XID8, LOOM__OID_INT8,
                                 LOOM__OID_INT8};
    static const int lengths[3] = {8, 8, 8}, formats[3] = {1, 1, 1};
    char buf[24];
    const char *values[3] = {buf, buf + 8, buf + 16};
    uint64_t v[3] = {at.tx, (uint64_t) at.position, (uint64_t) page};

    for (int i = 0; i < 3; i++)
        for (int b = 0; b < 8; b++)
            buf[8 * i + b] = (char) (v[i] >> (56 - 8 * b));
    return PQsendQueryParams(c, sql, 3, types, values, lengths, formats, 1);
}

/* One page: rows into `t`, the cursor moved to the last row. */
static int
read_raw_page(PGconn *c, size_t page, loom_position *at, read_total *t)
{
    PGresult *r = NULL, *next;
    loom_event e;
    int n, sent = bench_read_send(c, read_raw_sql, *at, page);

    /* PQexecParams, in its parts: the same messages and wait. */
    while (sent && (next = PQgetResult(c)) != NULL) {
        PQclear(r);
        r = next;
    }
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQnfields(r) != 10) {
        fprintf(stderr, "%s: raw read: %s", BENCH_PROGRAM,
                r ? PQresultErrorMessage(r) : PQerrorMessage(c));
        PQclear(r);
        return -1;
    }
    n = PQntuples(r);
    for (int i = 0; i < n; i++)
        read_touch(&e, bench_read_row(r, i, &e), t);
    if (n > 0) {
        at->tx = e.tx;
        at->position = e.position;
    }
    PQclear(r);
    return n;
}

static int
read_raw(const bench_env *env, size_t page, read_total *t, double *secs)
{
    PGconn *c = bench_db_connect(env->conninfo, "loom-bench-raw");
    loom_position at = {0, 0};
    int64_t t0;
    int n;

    if (c == NULL)
        return -1;
    t0 = bench_now_ns();
    do
        n = read_raw_page(c, page, &at, t);
    while (n > 0 && !atomic_load(&bench_stopped));
    *secs = (double) (bench_now_ns() - t0) / 1e9;
    PQfinish(c);
    return n < 0 ? -1 : 0;
}

/* ------------------------------------------------------------------ */
/* The case                                                            */

/* One run of one side; checks it saw exactly the loaded rows. */
static int
read_run(bench_env *env, const bench_opts *o, int raw, size_t loaded,
         uint64_t *sum, double *rate)
{
    read_total t = {0, 0, 0};
    double secs = 0;
    int rc;

    bench_db_checkpoint(env);
    rc = raw ? read_raw(env, o->page, &t, &secs)
             : read_loom(env, o->page, &t, &secs);
    if (rc != 0 || atomic_load(&bench_stopped))
        return -1;
    if (t.events != loaded || (*sum != 0 && t.sum != *sum)) {
        fprintf(stderr,
                "%s: read_all: %s read %zu events (checksum "
                "%llx), expected %zu (%llx)\n",
                BENCH_PROGRAM, raw ? "raw" : "loom", t.events,
                (unsigned long long) t.sum, loaded, (unsigned long long) *sum);
        return -1;
    }
    *sum = t.sum;
    *rate = (double) t.events / secs;
    printf("  read_all %s: %.0f events/s (%zu events in %.2f s)\n",
           raw ? "raw " : "loom", *rate, t.events, secs);
    return 0;
}

int
bench_read_all(bench_env *env, const bench_opts *o)
{
    double rate[2][16], med[2];
    uint64_t sum = 0;
    size_t loaded;

    if (o->rounds < 1 || o->rounds > 16)
        return -1;
    printf("read_all: %zu events in commit order, pages of %zu, binary "
           "results\n",
           o->events, o->page);
    if (read_load(env, o->events, &loaded) != 0)
        return -1;
    for (int r = 0; r < o->rounds; r++)
        for (int i = 0; i < 2; i++) {
            int raw = (r % 2 == 0) ? i : 1 - i;
            bench_progress("read_all: round %d/%d, %s", r + 1, o->rounds,
                           raw ? "raw" : "loom");
            if (read_run(env, o, raw, loaded, &sum, &rate[raw][r]) != 0)
                return -1;
        }
    for (int raw = 0; raw < 2; raw++) {
        med[raw] = bench_median(rate[raw], o->rounds);
        printf("  read_all %s: median %.0f events/s of %d runs\n",
               raw ? "raw " : "loom", med[raw], o->rounds);
    }
    bench_report("read_all", med[0], med[1]);
    return 0;
}
