/*
 * live: commit-to-handler latency of a subscription under a steady load.
 *
 * A writer thread appends single events at --rate events/s on an absolute
 * schedule (event k is due at start + k / rate, whatever the previous
 * appends cost), and records when each append call returned successfully:
 * the commit is acknowledged. The main thread reads them live and records
 * when it sees each one. The latency of an event is the difference of
 * the two (CLOCK_MONOTONIC, one process); every event carries its
 * sequence number and run in its payload.
 *
 *   loom  loom_store_append() of one event; the reader is loom_subscribe()
 *         (source ALL, default batch, at-least-once) on a loom_runtime in
 *         the main thread: the library's wake-up (arm, NOTIFY, LISTEN
 *         connection), read and checkpoint commit per batch.
 *   raw   one INSERT into loom_bench.events and a pg_notify() in the same
 *         statement (so the same transaction), autocommit; the reader
 *         LISTENs on its own connection and, on each notification, runs
 *         the read_all keyset query (same horizon) until a page is empty.
 *         No checkpoint.
 *
 * Each run starts with LV_WARMUP_S seconds of the same load that is not
 * counted; the --seconds are split over the rounds, loom and raw
 * alternating, and the percentiles are over all measured events of a side.
 */
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <uv.h>

#include "bench.h"
#include "buf.h"
#include "loom/runtime.h"
#include "loom/subscription.h"
#include "pgwire.h"
#include "store_int.h"

#define LV_WARMUP_S       1.0
#define LV_DRAIN_NS       INT64_C(10000000000) /* wait for stragglers */
#define LV_APPENDS_STREAM 10
#define LV_MAX_ROUNDS     15
#define LV_CHANNEL        "loom_bench_live"

static const char lv_read_sql[] = BENCH_READ_SQL("loom_bench.events");

static const char lv_insert_sql[] =
    "WITH ins AS (INSERT INTO loom_bench.events (stream, category, version, "
    "event_id, type, schema_version, data, metadata) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING 1) "
    "SELECT pg_notify('" LV_CHANNEL "', '') FROM ins";

static const loom_header lv_headers[1] = {{"tenant", "acme-industries"}};

/* One run of one side. ack[] is written by the writer thread, seen[] by
 * the main thread; both are read after the writer is joined. */
typedef struct lv_run {
    bench_env *env;
    int raw;
    unsigned run;
    size_t n_warm, n_total; /* events: warm-up, and all */
    int64_t period_ns;
    int64_t *ack, *seen; /* per sequence number; 0: not yet */
    int64_t *took;       /* per sequence number: the append call */
    size_t n_seen;       /* main thread */
    size_t batches;      /* reads (loom: handler calls) with new events */
    int64_t lag_ns;      /* the latest a measured append started */
    atomic_int writer_done, failed, stop;
    int started;             /* the writer thread exists */
    atomic_llong writer_end; /* bench_now_ns() when the writer stopped */
    loom_runtime *rt;        /* loom side */
    uv_timer_t check;        /* loom side: stop conditions */
    pthread_t writer;
} lv_run;

/* What a run measured. */
typedef struct lv_result {
    bench_samples lat;  /* commit-to-handler, measured events */
    bench_samples took; /* the append calls, measured events */
    size_t events, early;
    double rate, lag_ms;
    double per_batch; /* events per batch, warm-up included */
} lv_result;

/* ------------------------------------------------------------------ */
/* Events                                                              */

/* A payload of BENCH_PAYLOAD_BYTES: the sequence number and run, then
 * fixed pseudo-random bytes. */
static void
lv_payload(unsigned char *p, size_t seq, unsigned run)
{
    uint32_t x = 2463534242u;

    for (size_t i = 0; i < BENCH_PAYLOAD_BYTES; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (unsigned char) x;
    }
    for (int b = 0; b < 8; b++)
        p[b] = (unsigned char) ((uint64_t) seq >> (56 - 8 * b));
    for (int b = 0; b < 4; b++)
        p[8 + b] = (unsigned char) (run >> (24 - 8 * b));
}

/* The event's sequence number in this run, or -1 (another run's). */
static long long
lv_seq(const lv_run *r, const uint8_t *data, size_t len)
{
    uint64_t seq = 0;
    unsigned run = 0;

    if (len < 12)
        return -1;
    for (int b = 0; b < 8; b++)
        seq = seq << 8 | data[b];
    for (int b = 8; b < 12; b++)
        run = run << 8 | data[b];
    return run == r->run && seq < r->n_total ? (long long) seq : -1;
}

/* Records when this run's event was first seen; 1 when it is new. */
static int
lv_saw(lv_run *r, const uint8_t *data, size_t len, int64_t now)
{
    long long seq = lv_seq(r, data, len);

    if (seq < 0 || r->seen[seq] != 0)
        return 0;
    r->seen[seq] = now;
    r->n_seen++;
    return 1;
}

/* ------------------------------------------------------------------ */
/* The writer thread                                                   */

typedef struct lv_writer {
    lv_run *r;
    loom_store *store; /* loom */
    PGconn *conn;      /* raw */
    loom__buf meta;    /* raw: the encoded metadata */
    char corr[LOOM_UUID_STRLEN];
    char stream[64];
    unsigned char payload[BENCH_PAYLOAD_BYTES];
} lv_writer;

static void
lv_writer_fail(lv_writer *w, const char *what, const char *why)
{
    fprintf(stderr, "%s: live %s writer: %s: %s\n", BENCH_PROGRAM,
            w->r->raw ? "raw" : "loom", what, why);
    atomic_store(&w->r->failed, 1);
}

static int
lv_writer_open(lv_writer *w)
{
    loom_store_config cfg = LOOM_STORE_CONFIG_INIT;
    char err[512];
    loom_uuid u;

    if (loom_uuid_generate(&u) != LOOM_OK) {
        lv_writer_fail(w, "loom_uuid_generate", "no random source");
        return -1;
    }
    loom_uuid_format(&u, w->corr);
    if (w->r->raw) {
        loom_event_data e = {
            .correlation_id = w->corr, .headers = lv_headers, .n_headers = 1};
        loom__metadata_encode(&w->meta, &e);
        w->conn = bench_db_connect(w->r->env->conninfo, "loom-bench-raw");
        if (w->conn == NULL || w->meta.failed) {
            lv_writer_fail(w, "connecting", "see above");
            return -1;
        }
        return 0;
    }
    cfg.conninfo = w->r->env->conninfo;
    cfg.application_name = "loom-bench";
    if (loom_store_open(&w->store, &cfg, err, sizeof err) != LOOM_OK) {
        lv_writer_fail(w, "loom_store_open", err);
        return -1;
    }
    return 0;
}

static int
lv_append_loom(lv_writer *w, size_t k)
{
    loom_event_data ev = {.type = BENCH_EVENT_TYPE,
                          .schema_version = 1,
                          .data = w->payload,
                          .data_len = sizeof w->payload,
                          .correlation_id = w->corr,
                          .headers = lv_headers,
                          .n_headers = 1};
    loom_err rc =
        loom_store_append(w->store, w->stream,
                          (int64_t) (k % LV_APPENDS_STREAM) - 1, &ev, 1, NULL);

    if (rc != LOOM_OK)
        lv_writer_fail(w, loom_err_name(rc), loom_store_errmsg(w->store));
    return rc == LOOM_OK ? 0 : -1;
}

static int
lv_append_raw(lv_writer *w, size_t k)
{
    static const Oid types[8] = {
        LOOM__OID_TEXT, LOOM__OID_TEXT, LOOM__OID_INT8,  LOOM__OID_UUID,
        LOOM__OID_TEXT, LOOM__OID_INT4, LOOM__OID_BYTEA, LOOM__OID_BYTEA};
    static const int formats[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    static const char sv[4] = {0, 0, 0, 1};
    char version[8];
    const char *values[8];
    int lengths[8];
    loom_uuid u;
    PGresult *res;
    int ok;

    if (loom_uuid_generate(&u) != LOOM_OK) {
        lv_writer_fail(w, "loom_uuid_generate", "no random source");
        return -1;
    }
    for (int b = 0; b < 8; b++)
        version[b] =
            (char) ((uint64_t) (k % LV_APPENDS_STREAM) >> (56 - 8 * b));
    values[0] = values[1] = w->stream;
    lengths[0] = (int) strlen(w->stream);
    lengths[1] = (int) strcspn(w->stream, "-");
    values[2] = version;
    lengths[2] = 8;
    values[3] = (const char *) u.bytes;
    lengths[3] = 16;
    values[4] = BENCH_EVENT_TYPE;
    lengths[4] = (int) strlen(BENCH_EVENT_TYPE);
    values[5] = sv;
    lengths[5] = 4;
    values[6] = (const char *) w->payload;
    lengths[6] = (int) sizeof w->payload;
    values[7] = w->meta.data;
    lengths[7] = (int) w->meta.len;
    res = PQexecParams(w->conn, lv_insert_sql, 8, types, values, lengths,
                       formats, 1);
    ok = PQresultStatus(res) == PGRES_TUPLES_OK;
    if (!ok)
        lv_writer_fail(w, "INSERT", PQresultErrorMessage(res));
    PQclear(res);
    return ok ? 0 : -1;
}

static void
lv_sleep_until(int64_t due)
{
    struct timespec ts = {(time_t) (due / 1000000000),
                          (long) (due % 1000000000)};

    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0)
        ;
}

/* Appends event k at start + k * period until all are written. */
static void
lv_write_all(lv_writer *w)
{
    lv_run *r = w->r;
    int64_t start = bench_now_ns();

    for (size_t k = 0; k < r->n_total; k++) {
        int64_t due = start + (int64_t) k * r->period_ns, t;
        if (atomic_load(&bench_stopped) || atomic_load(&r->stop))
            return;
        lv_sleep_until(due);
        snprintf(w->stream, sizeof w->stream, "live-%u.%zu", r->run,
                 k / LV_APPENDS_STREAM);
        lv_payload(w->payload, k, r->run);
        t = bench_now_ns();
        if (k >= r->n_warm && t - due > r->lag_ns)
            r->lag_ns = t - due;
        if ((r->raw ? lv_append_raw(w, k) : lv_append_loom(w, k)) != 0)
            return;
        r->ack[k] = bench_now_ns();
        r->took[k] = r->ack[k] - t;
    }
}

static void *
lv_writer_main(void *arg)
{
    lv_writer w;

    memset(&w, 0, sizeof w);
    w.r = arg;
    if (lv_writer_open(&w) == 0)
        lv_write_all(&w);
    loom_store_close(w.store);
    PQfinish(w.conn);
    loom__buf_free(&w.meta);
    atomic_store(&w.r->writer_end, (long long) bench_now_ns());
    atomic_store(&w.r->writer_done, 1);
    return NULL;
}

static int
lv_writer_start(lv_run *r)
{
    if (pthread_create(&r->writer, NULL, lv_writer_main, r) != 0) {
        fprintf(stderr, "%s: cannot start a thread\n", BENCH_PROGRAM);
        return -1;
    }
    r->started = 1;
    return 0;
}

/* 1 when the reader should give up: interrupted, the writer failed, or
 * events are still missing long after the writer finished. */
static int
lv_give_up(lv_run *r)
{
    return atomic_load(&bench_stopped) || atomic_load(&r->failed) ||
           (atomic_load(&r->writer_done) &&
            bench_now_ns() - atomic_load(&r->writer_end) > LV_DRAIN_NS);
}

/* ------------------------------------------------------------------ */
/* Eventloom's reader: a subscription on a runtime                     */

static loom_err
lv_on_events(const loom_event *const *events, size_t n, void *arg)
{
    lv_run *r = arg;
    int64_t now = bench_now_ns();
    int fresh = 0;

    for (size_t i = 0; i < n; i++)
        fresh |= lv_saw(r, events[i]->data, events[i]->data_len, now);
    r->batches += (size_t) fresh;
    if (r->n_seen == r->n_total)
        loom_runtime_stop(r->rt);
    return LOOM_OK;
}

static void
lv_on_check(uv_timer_t *t)
{
    lv_run *r = t->data;

    if (lv_give_up(r))
        loom_runtime_stop(r->rt);
}

static int
lv_read_loom(lv_run *r)
{
    loom_runtime_config rc = LOOM_RUNTIME_CONFIG_INIT;
    loom_subscription_config sc = LOOM_SUBSCRIPTION_CONFIG_INIT;
    loom_subscription *sub = NULL;
    char name[32];
    loom_err err;
    int ok = 0;

    rc.conninfo = r->env->conninfo;
    rc.application_name = "loom-bench-listen";
    snprintf(name, sizeof name, "bench_live_%u", r->run);
    sc.name = name;
    sc.source = LOOM_SUB_ALL;
    sc.conninfo = r->env->conninfo;
    if ((err = loom_runtime_open(&r->rt, &rc)) != LOOM_OK ||
        (err = loom_subscribe(r->rt, &sc, lv_on_events, r, &sub)) != LOOM_OK) {
        fprintf(stderr, "%s: live: starting the subscription: %s\n",
                BENCH_PROGRAM, loom_err_name(err));
        loom_runtime_close(r->rt);
        return -1;
    }
    uv_timer_init(loom_runtime_loop(r->rt), &r->check);
    r->check.data = r;
    uv_timer_start(&r->check, lv_on_check, 50, 50);
    if (lv_writer_start(r) == 0) {
        err = loom_runtime_run(r->rt);
        ok = 1;
        if (err != LOOM_OK)
            fprintf(stderr, "%s: live: loom_runtime_run: %s\n", BENCH_PROGRAM,
                    loom_err_name(err));
    }
    uv_close((uv_handle_t *) &r->check, NULL);
    uv_run(loom_runtime_loop(r->rt), UV_RUN_NOWAIT);
    loom_subscription_close(sub);
    loom_runtime_close(r->rt);
    return ok && err == LOOM_OK ? 0 : -1;
}

/* ------------------------------------------------------------------ */
/* The raw reader: LISTEN, and read on each notification               */

/* Reads pages from *at until one is empty, recording what it sees. */
static int
lv_raw_read(lv_run *r, PGconn *c, loom_position *at)
{
    for (;;) {
        PGresult *res = NULL, *next;
        int64_t now;
        int n,
            sent = bench_read_send(c, lv_read_sql, *at, LOOM_DEFAULT_SUB_BATCH);

        while (sent && (next = PQgetResult(c)) != NULL) {
            PQclear(res);
            res = next;
        }
        now = bench_now_ns();
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            fprintf(stderr, "%s: live raw read: %s", BENCH_PROGRAM,
                    res ? PQresultErrorMessage(res) : PQerrorMessage(c));
            PQclear(res);
            return -1;
        }
        n = PQntuples(res);
        for (int i = 0, fresh = 0; i < n; i++) {
            loom_event e;
            bench_read_row(res, i, &e);
            if (lv_saw(r, e.data, e.data_len, now) && !fresh++)
                r->batches++;
            at->tx = e.tx;
            at->position = e.position;
        }
        PQclear(res);
        if (n == 0)
            return 0;
    }
}

/* Waits up to `ms` for notifications; 1 when at least one came (all are
 * consumed), 0 on timeout, -1 when the connection failed. */
static int
lv_raw_wait(PGconn *c, int ms)
{
    struct pollfd pfd = {PQsocket(c), POLLIN, 0};
    int got = 0;
    PGnotify *n;

    if (!PQconsumeInput(c))
        return -1;
    while ((n = PQnotifies(c)) != NULL) {
        got = 1;
        PQfreemem(n);
    }
    if (got)
        return 1;
    if (poll(&pfd, 1, ms) < 0 || !PQconsumeInput(c))
        return -1;
    while ((n = PQnotifies(c)) != NULL) {
        got = 1;
        PQfreemem(n);
    }
    return got;
}

static int
lv_read_raw(lv_run *r)
{
    PGconn *c = bench_db_connect(r->env->conninfo, "loom-bench-raw-listen");
    loom_position at = {0, 0};
    int rc = -1, w = 1;

    /* Listening, and past the earlier runs' events, before the writer
     * starts. */
    if (c == NULL || bench_db_exec(c, "LISTEN " LV_CHANNEL) != 0 ||
        lv_raw_read(r, c, &at) != 0 || lv_writer_start(r) != 0) {
        PQfinish(c);
        return -1;
    }
    while (r->n_seen < r->n_total && !lv_give_up(r)) {
        w = lv_raw_wait(c, 50);
        if (w < 0 || (w == 1 && lv_raw_read(r, c, &at) != 0))
            break;
    }
    if (w >= 0 && r->n_seen == r->n_total)
        rc = 0;
    else if (w < 0)
        fprintf(stderr, "%s: live raw listen: %s", BENCH_PROGRAM,
                PQerrorMessage(c));
    PQfinish(c);
    return rc;
}

/* ------------------------------------------------------------------ */
/* The case                                                            */

static void
lv_free(lv_run *r)
{
    free(r->ack);
    free(r->seen);
    free(r->took);
}

/* Collects the measured events' latencies into `res`. */
static int
lv_collect(lv_run *r, lv_result *res)
{
    size_t first = r->n_warm, last = r->n_total - 1;

    memset(res, 0, sizeof *res);
    for (size_t k = first; k <= last; k++) {
        int64_t d = r->seen[k] - r->ack[k];
        if (r->seen[k] == 0 || r->ack[k] == 0) {
            fprintf(stderr, "%s: live: event %zu was never %s\n", BENCH_PROGRAM,
                    k, r->ack[k] ? "seen" : "acknowledged");
            return -1;
        }
        if (d < 0) /* visible before the writer heard of its commit */
            res->early++;
        if (bench_samples_push(&res->lat, d < 0 ? 0 : d) != 0 ||
            bench_samples_push(&res->took, r->took[k]) != 0)
            return -1;
    }
    res->events = last - first + 1;
    res->lag_ms = (double) r->lag_ns / 1e6;
    res->per_batch = (double) r->n_total / (double) r->batches;
    res->rate = first > 0 && r->ack[last] > r->ack[first - 1]
                    ? (double) res->events * 1e9 /
                          (double) (r->ack[last] - r->ack[first - 1])
                    : 0;
    return 0;
}

static void
lv_print(const char *what, int raw, lv_result *res)
{
    printf("  live %s %s: %zu events at %.1f events/s: p50 %.3f ms, p90 "
           "%.3f ms, p99 %.3f ms, max %.3f ms; append p50 %.3f ms, p99 "
           "%.3f ms, most behind schedule %.1f ms; %zu seen before the "
           "append returned; %.2f events per batch read\n",
           raw ? "raw " : "loom", what, res->events, res->rate,
           bench_samples_ms(&res->lat, 0.50), bench_samples_ms(&res->lat, 0.90),
           bench_samples_ms(&res->lat, 0.99), bench_samples_ms(&res->lat, 1.0),
           bench_samples_ms(&res->took, 0.50),
           bench_samples_ms(&res->took, 0.99), res->lag_ms, res->early,
           res->per_batch);
    fflush(stdout);
}

static int
lv_once(bench_env *env, const bench_opts *o, int raw, unsigned run,
        lv_result *res)
{
    double secs = o->seconds / o->rounds;
    lv_run r;
    int rc;

    memset(&r, 0, sizeof r);
    r.env = env;
    r.raw = raw;
    r.run = run;
    r.period_ns = (int64_t) (1e9 / o->rate);
    r.n_warm = (size_t) (o->rate * LV_WARMUP_S);
    r.n_total = r.n_warm + (size_t) (o->rate * secs);
    if (r.n_warm < 1 || r.n_total <= r.n_warm)
        return -1;
    r.ack = calloc(r.n_total, sizeof *r.ack);
    r.seen = calloc(r.n_total, sizeof *r.seen);
    r.took = calloc(r.n_total, sizeof *r.took);
    atomic_init(&r.writer_done, 0);
    atomic_init(&r.failed, 0);
    atomic_init(&r.stop, 0);
    atomic_init(&r.writer_end, 0);
    if (r.ack == NULL || r.seen == NULL || r.took == NULL) {
        lv_free(&r);
        return -1;
    }
    bench_db_checkpoint(env);
    rc = raw ? lv_read_raw(&r) : lv_read_loom(&r);
    if (r.started) {
        /* Done or failed: a writer still running stops at its next
         * event (after all were seen it has none left). */
        atomic_store(&r.stop, 1);
        pthread_join(r.writer, NULL);
    }
    if (rc == 0 && (atomic_load(&bench_stopped) || atomic_load(&r.failed) ||
                    r.n_seen != r.n_total))
        rc = -1;
    if (rc == 0)
        rc = lv_collect(&r, res);
    lv_free(&r);
    return rc;
}

/* Adds run `one` to the totals of its side (and frees it). */
static int
lv_add(lv_result *all, lv_result *one, int rounds)
{
    int rc = 0;

    all->events += one->events;
    all->early += one->early;
    if (one->lag_ms > all->lag_ms)
        all->lag_ms = one->lag_ms;
    all->rate += one->rate / rounds; /* the means of the runs */
    all->per_batch += one->per_batch / rounds;
    if (bench_samples_merge(&all->lat, &one->lat) != 0 ||
        bench_samples_merge(&all->took, &one->took) != 0)
        rc = -1;
    bench_samples_free(&one->lat);
    bench_samples_free(&one->took);
    return rc;
}

/* The totals, the baseline's line, then the case's line. A writer that
 * fell behind its schedule measured a lighter load than asked: say so. */
static void
lv_summary(lv_result all[2], double rate)
{
    double p99[2];

    for (int raw = 0; raw < 2; raw++) {
        lv_print("all runs", raw, &all[raw]);
        p99[raw] = bench_samples_ms(&all[raw].lat, 0.99);
        if (all[raw].rate < 0.98 * rate)
            printf("  live %s: NOTE: the writer reached only %.0f of %.0f "
                   "events/s (appends took longer than the schedule "
                   "allows)\n",
                   raw ? "raw " : "loom", all[raw].rate, rate);
    }
    printf("BENCH live_raw p50_ms=%.3f p99_ms=%.3f\n",
           bench_samples_ms(&all[1].lat, 0.50), p99[1]);
    printf("BENCH live p50_ms=%.3f p99_ms=%.3f raw_p99_ms=%.3f ratio=%.3f\n",
           bench_samples_ms(&all[0].lat, 0.50), p99[0], p99[1],
           p99[1] > 0 ? p99[0] / p99[1] : 0.0);
    fflush(stdout);
}

int
bench_live(bench_env *env, const bench_opts *o)
{
    lv_result all[2], one;
    double secs = o->seconds / o->rounds;
    int rc = 0;

    if (o->rounds < 1 || o->rounds > LV_MAX_ROUNDS)
        return -1;
    memset(all, 0, sizeof all);
    printf("live: single-event appends at %.0f events/s, %.1f s measured per "
           "side in %d rounds of %.1f s (each after %.0f s of warm-up); "
           "latency from the append's return to the reader seeing the "
           "event\n",
           o->rate, o->seconds, o->rounds, secs, LV_WARMUP_S);
    for (int r = 0; rc == 0 && r < o->rounds; r++)
        for (int i = 0; rc == 0 && i < 2; i++) {
            int raw = r % 2 == 0 ? i : 1 - i;
            bench_progress("live: round %d/%d, %s (%.1f s + %.0f s warm-up)",
                           r + 1, o->rounds, raw ? "raw" : "loom", secs,
                           LV_WARMUP_S);
            rc = lv_once(env, o, raw, (unsigned) (2 * r + raw + 1), &one);
            if (rc != 0)
                break;
            lv_print("run", raw, &one);
            rc = lv_add(&all[raw], &one, o->rounds);
        }
    if (rc == 0)
        lv_summary(all, o->rate);
    for (int raw = 0; raw < 2; raw++) {
        bench_samples_free(&all[raw].lat);
        bench_samples_free(&all[raw].took);
    }
    return rc;
}
