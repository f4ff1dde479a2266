/*
 * relay: does the outbox relay keep up with the services writing to the
 * outbox, and how long does a message wait in it?
 *
 *   raw   RL_WRITERS threads, each transaction ONE statement (a
 *         data-modifying CTE: one round trip, one commit) inserting an
 *         event row into loom_bench.events and an outbox row into
 *         loom_bench.outbox (loom.outbox's columns, defaults and index),
 *         as fast as they go for --seconds. Nothing reads them: this is
 *         the rate at which PostgreSQL takes the rows.
 *   loom  the same threads, each transaction loom_store_commit() of a
 *         loom_tx with loom_tx_append() of one event (expected version)
 *         and loom_outbox_add() of one message keyed by its stream, for
 *         --seconds, while a relay on a runtime in the main thread
 *         publishes the outbox through the transport (acks=all: durable).
 *         Its rate is the messages written over the time from the first
 *         write until the relay has published the last one, so a relay
 *         that falls behind pays for its backlog.
 *   lag   the writers at --rate messages/s in all (default 1000), for
 *         --seconds;
 *         for each message the relay's published hook sees, the wall
 *         clock minus the outbox row's created_at (clock_timestamp() at
 *         its insert, just before its commit): commit-to-published, an
 *         upper bound.
 *
 * Each transport prints
 *   BENCH relay <transport> msgs_per_s=<n> ratio=<loom/raw> lag_p99_ms=<x>
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <uv.h>

#include "bench.h"
#include "bench_topics.h"
#include "buf.h"
#include "headers.h"
#include "loom/outbox.h"
#include "loom/runtime.h"
#include "pgwire.h"

#define RL_WRITERS     4
#define RL_APPENDS     10 /* appends per stream before the next one */
#define RL_TOPIC       "bench.relay"
#define RL_OUTBOX      "bench"
#define RL_DRAIN_NS    INT64_C(60000000000)
#define RL_WARMUP_NS   INT64_C(1000000000)
#define RL_MAX_SAMPLES 10000000

static const char rl_raw_schema_sql[] =
    "CREATE TABLE loom_bench.outbox (LIKE loom.outbox INCLUDING ALL)";

static const char rl_raw_sql[] =
    "WITH e AS (INSERT INTO loom_bench.events (stream, category, version, "
    "event_id, type, schema_version, data) VALUES ($1, 'acct', $2, $3, $4, "
    "1, $5) RETURNING 1) INSERT INTO loom_bench.outbox (outbox, topic, key, "
    "type, headers, payload, message_id) SELECT '" RL_OUTBOX "', '" RL_TOPIC
    "', convert_to($1, 'UTF8'), $4, $6, $5, $7 FROM e";

static const loom_header rl_headers[1] = {{"tenant", "acme-industries"}};

/* One run: the writers and, for loom, the relay's progress. */
typedef struct rl_run {
    const bench_env *env;
    int raw;
    int writers;
    double rate; /* per writer; 0: full speed */
    double seconds;
    unsigned id; /* makes stream names unique per run */
    atomic_int go, stop, failed, writers_done;
    atomic_llong written;
    atomic_llong published;
    atomic_llong start_ns, end_ns; /* first write; last one published */
    bench_samples lag;             /* main thread only */
    int measure_lag;
} rl_run;

static void
rl_sleep_until(int64_t due_ns)
{
    int64_t now = bench_now_ns();
    struct timespec ts;

    if (due_ns <= now)
        return;
    ts.tv_sec = (time_t) ((due_ns - now) / 1000000000);
    ts.tv_nsec = (long) ((due_ns - now) % 1000000000);
    nanosleep(&ts, NULL);
}

static int64_t
rl_wall_us(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return (int64_t) tv.tv_sec * 1000000 + tv.tv_usec;
}

/* ---- writers ---------------------------------------------------------- */

typedef struct rl_writer {
    rl_run *run;
    int index;
    pthread_t thread;
} rl_writer;

static void
rl_fail(rl_run *run, const char *what, const char *why)
{
    if (atomic_exchange(&run->failed, 1) == 0)
        fprintf(stderr, "%s: relay: %s: %s\n", BENCH_PROGRAM, what, why);
    atomic_store(&run->stop, 1);
}

static int
rl_write_loom(rl_writer *w, loom_store *s, loom_tx *tx, const char *stream,
              int64_t expected, const char *payload)
{
    loom_event_data ev;
    loom_outbox_message m;
    loom_err rc;

    memset(&ev, 0, sizeof ev);
    ev.type = BENCH_EVENT_TYPE;
    ev.schema_version = 1;
    ev.data = payload;
    ev.data_len = BENCH_PAYLOAD_BYTES;
    memset(&m, 0, sizeof m);
    m.topic = RL_TOPIC;
    m.key = stream;
    m.key_len = strlen(stream);
    m.type = BENCH_EVENT_TYPE;
    m.headers = rl_headers;
    m.n_headers = 1;
    m.payload = payload;
    m.payload_len = BENCH_PAYLOAD_BYTES;
    loom_tx_reset(tx);
    rc = loom_tx_append(tx, stream, expected, &ev, 1);
    if (rc == LOOM_OK)
        rc = loom_outbox_add(tx, RL_OUTBOX, &m, 1);
    if (rc != LOOM_OK) {
        rl_fail(w->run, "queueing", loom_tx_errmsg(tx));
        return -1;
    }
    rc = loom_store_commit(s, tx);
    if (rc != LOOM_OK) {
        rl_fail(w->run, "loom_store_commit", loom_store_errmsg(s));
        return -1;
    }
    return 0;
}

static int
rl_write_raw(rl_writer *w, PGconn *c, const char *stream, int64_t version,
             const char *payload, const loom__buf *hdr)
{
    char ver[8], eid[16], mid[16];
    const char *values[7] = {stream,  ver,       eid, BENCH_EVENT_TYPE,
                             payload, hdr->data, mid};
    int lengths[7] = {(int) strlen(stream),
                      8,
                      16,
                      (int) strlen(BENCH_EVENT_TYPE),
                      BENCH_PAYLOAD_BYTES,
                      (int) hdr->len,
                      16};
    int formats[7] = {0, 1, 1, 0, 1, 1, 1};
    loom_uuid a, b;
    PGresult *r;
    int ok;

    loom_uuid_generate(&a);
    loom_uuid_generate(&b);
    memcpy(eid, a.bytes, 16);
    memcpy(mid, b.bytes, 16);
    loom__pg_put_be64(ver, (uint64_t) version);
    r = PQexecPrepared(c, "rl_raw", 7, values, lengths, formats, 1);
    ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        rl_fail(w->run, "raw INSERT", PQresultErrorMessage(r));
    PQclear(r);
    return ok ? 0 : -1;
}

static void *
rl_writer_main(void *arg)
{
    rl_writer *w = arg;
    rl_run *run = w->run;
    loom_store_config cfg = LOOM_STORE_CONFIG_INIT;
    loom_store *s = NULL;
    loom_tx *tx = NULL;
    PGconn *c = NULL;
    loom__buf hdr = LOOM__BUF_INIT;
    char payload[BENCH_PAYLOAD_BYTES], stream[64], err[256];
    int64_t start, k = 0;

    memset(payload, 'x', sizeof payload);
    loom__headers_encode(&hdr, rl_headers, 1);
    if (run->raw) {
        PGresult *r;
        c = bench_db_connect(run->env->conninfo, "loom-bench relay raw");
        if (c == NULL) {
            rl_fail(run, "connect", "see above");
            goto out;
        }
        r = PQprepare(c, "rl_raw", rl_raw_sql, 0, NULL);
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            rl_fail(run, "prepare", PQresultErrorMessage(r));
        PQclear(r);
    } else {
        cfg.conninfo = run->env->conninfo;
        cfg.application_name = "loom-bench relay writer";
        if (loom_store_open(&s, &cfg, err, sizeof err) != LOOM_OK)
            rl_fail(run, "loom_store_open", err);
        else if (loom_tx_new(&tx) != LOOM_OK)
            rl_fail(run, "loom_tx_new", "out of memory");
    }
    while (!atomic_load(&run->go) && !atomic_load(&run->stop))
        rl_sleep_until(bench_now_ns() + 100000);
    start = atomic_load(&run->start_ns);
    while (!atomic_load(&run->stop) && !atomic_load(&bench_stopped)) {
        int64_t version = k % RL_APPENDS;
        int rc;

        if (bench_now_ns() - start >= (int64_t) (run->seconds * 1e9))
            break;
        if (run->rate > 0)
            rl_sleep_until(start + (int64_t) ((double) k * 1e9 / run->rate));
        snprintf(stream, sizeof stream, "acct-%u-%d-%lld", run->id, w->index,
                 (long long) (k / RL_APPENDS));
        rc = run->raw ? rl_write_raw(w, c, stream, version, payload, &hdr)
                      : rl_write_loom(w, s, tx, stream,
                                      version == 0 ? LOOM_EXPECT_NO_STREAM
                                                   : version - 1,
                                      payload);
        if (rc != 0)
            break;
        atomic_fetch_add(&run->written, 1);
        k++;
    }
out:
    loom__buf_free(&hdr);
    loom_tx_free(tx);
    loom_store_close(s);
    PQfinish(c);
    atomic_fetch_add(&run->writers_done, 1);
    return NULL;
}

static int
rl_writers_start(rl_run *run, rl_writer *ws)
{
    for (int i = 0; i < run->writers; i++) {
        ws[i].run = run;
        ws[i].index = i;
        if (pthread_create(&ws[i].thread, NULL, rl_writer_main, &ws[i]) != 0) {
            atomic_store(&run->stop, 1);
            for (int j = 0; j < i; j++)
                pthread_join(ws[j].thread, NULL);
            fprintf(stderr, "%s: relay: cannot start a thread\n",
                    BENCH_PROGRAM);
            return -1;
        }
    }
    return 0;
}

static void
rl_writers_join(rl_run *run, rl_writer *ws)
{
    for (int i = 0; i < run->writers; i++)
        pthread_join(ws[i].thread, NULL);
}

/* ---- raw ---------------------------------------------------------------- */

static int
rl_raw(const bench_env *env, const bench_opts *o, double *rate)
{
    rl_run run;
    rl_writer ws[RL_WRITERS];
    int64_t end;

    memset(&run, 0, sizeof run);
    run.env = env;
    run.raw = 1;
    run.writers = RL_WRITERS;
    run.seconds = o->seconds;
    if (rl_writers_start(&run, ws) != 0)
        return -1;
    atomic_store(&run.start_ns, bench_now_ns());
    atomic_store(&run.go, 1);
    rl_writers_join(&run, ws);
    end = bench_now_ns();
    if (atomic_load(&run.failed))
        return -1;
    *rate = (double) atomic_load(&run.written) * 1e9 /
            (double) (end - atomic_load(&run.start_ns));
    bench_progress("relay raw: %lld event + outbox rows in %.1f s: %.0f/s",
                   (long long) atomic_load(&run.written),
                   (double) (end - atomic_load(&run.start_ns)) / 1e9, *rate);
    return 0;
}

/* ---- loom: the relay on the main thread ------------------------------------
 */

typedef struct rl_loop {
    rl_run *run;
    rl_writer *ws;
    loom_runtime *rt;
    loom_relay *relay;
    uv_timer_t tick;
    int phase; /* 0: waiting to lead, 1: writing, 2: draining */
    int64_t phase_ns;
    int started;
} rl_loop;

static void
rl_published(void *arg, const loom_message *msgs, size_t n)
{
    rl_loop *l = arg;
    rl_run *run = l->run;
    long long total;

    if (run->measure_lag) {
        int64_t now = rl_wall_us();
        for (size_t i = 0; i < n; i++)
            if (run->lag.n < RL_MAX_SAMPLES)
                bench_samples_push(&run->lag, (now - msgs[i].timestamp) * 1000);
    }
    total = atomic_fetch_add(&run->published, (long long) n) + (long long) n;
    if (atomic_load(&run->writers_done) == run->writers &&
        total >= atomic_load(&run->written) && atomic_load(&run->end_ns) == 0)
        atomic_store(&run->end_ns, bench_now_ns());
}

static void
rl_on_tick(uv_timer_t *t)
{
    rl_loop *l = t->data;
    rl_run *run = l->run;
    loom_relay_stats st;
    int64_t now = bench_now_ns();

    if (atomic_load(&bench_stopped) || atomic_load(&run->failed)) {
        atomic_store(&run->stop, 1);
        goto stop;
    }
    switch (l->phase) {
    case 0:
        loom_relay_stats_get(l->relay, &st);
        if (!st.leading) {
            if (now - l->phase_ns > RL_DRAIN_NS) {
                rl_fail(run, "relay", "never became the active relay");
                goto stop;
            }
            return;
        }
        if (now - l->phase_ns < RL_WARMUP_NS)
            return; /* let the transport's connections settle */
        atomic_store(&run->start_ns, bench_now_ns());
        atomic_store(&run->go, 1);
        l->phase = 1;
        l->phase_ns = now;
        return;
    case 1:
        if (atomic_load(&run->writers_done) < run->writers)
            return;
        l->phase = 2;
        l->phase_ns = now;
        if (atomic_load(&run->end_ns) == 0 &&
            atomic_load(&run->published) >= atomic_load(&run->written))
            atomic_store(&run->end_ns, now);
        return;
    default:
        if (atomic_load(&run->end_ns) != 0)
            goto stop;
        if (now - l->phase_ns > RL_DRAIN_NS) {
            rl_fail(run, "relay", "did not publish everything within 60 s");
            goto stop;
        }
        return;
    }
stop:
    uv_timer_stop(t);
    uv_close((uv_handle_t *) t, NULL);
    loom_runtime_stop(l->rt);
}

/* One loom run through `url`: the writers at `rate` (0: full speed), the
 * relay publishing. */
static int
rl_loom(const bench_env *env, const bench_opts *o, const char *url, double rate,
        int writers, rl_run *run)
{
    loom_runtime_config rcfg = LOOM_RUNTIME_CONFIG_INIT;
    loom_relay_config cfg = LOOM_RELAY_CONFIG_INIT;
    rl_writer ws[RL_WRITERS];
    rl_loop l;
    loom_transport *t = NULL;
    char err[512] = "";
    loom_err rc;
    static unsigned runs;

    memset(&l, 0, sizeof l);
    run->env = env;
    run->writers = writers;
    run->rate = rate;
    run->seconds = o->seconds;
    run->id = ++runs;
    l.run = run;
    l.ws = ws;
    rcfg.conninfo = env->conninfo;
    if (loom_runtime_open(&l.rt, &rcfg) != LOOM_OK) {
        fprintf(stderr, "%s: relay: cannot open a runtime\n", BENCH_PROGRAM);
        return -1;
    }
    rc = loom_transport_open(l.rt, url, &t, err, sizeof err);
    if (rc != LOOM_OK) {
        fprintf(stderr, "%s: relay: %s: %s\n", BENCH_PROGRAM, url, err);
        loom_runtime_close(l.rt);
        return -1;
    }
    cfg.conninfo = env->conninfo;
    cfg.transport = t;
    cfg.outbox = RL_OUTBOX;
    cfg.published = rl_published;
    cfg.published_arg = &l;
    rc = loom_relay_start(l.rt, &cfg, &l.relay, err, sizeof err);
    if (rc != LOOM_OK) {
        fprintf(stderr, "%s: relay: %s\n", BENCH_PROGRAM, err);
        loom_transport_close(t);
        loom_runtime_close(l.rt);
        return -1;
    }
    if (rl_writers_start(run, ws) != 0) {
        loom_relay_close(l.relay);
        loom_transport_close(t);
        loom_runtime_close(l.rt);
        return -1;
    }
    uv_timer_init(loom_runtime_loop(l.rt), &l.tick);
    l.tick.data = &l;
    l.phase_ns = bench_now_ns();
    uv_timer_start(&l.tick, rl_on_tick, 5, 5);
    loom_runtime_run(l.rt);
    atomic_store(&run->stop, 1);
    rl_writers_join(run, ws);
    loom_relay_close(l.relay);
    loom_transport_close(t);
    loom_runtime_close(l.rt);
    return atomic_load(&run->failed) || atomic_load(&bench_stopped) ? -1 : 0;
}

/* ---- the case
 * ---------------------------------------------------------------- */

/* The transport URL for `name` ("topics", "nats"), or NULL to skip it. */
static char *
rl_url(const bench_env *env, const char *name)
{
    const char *nats = getenv("LOOM_BENCH_NATS_URL");

    if (strcmp(name, "nats") == 0)
        return nats != NULL && nats[0] != '\0' ? strdup(nats) : NULL;
    /* The scratch database, acks=all (durable), as topics does. */
    return tb_loom_url(env);
}

static int
rl_transport(bench_env *env, const bench_opts *o, const char *name)
{
    rl_run full, lag;
    double raw = 0, loom, p50, p99;
    char *url = rl_url(env, name);
    int rc = -1;

    if (url == NULL && strcmp(name, "nats") != 0)
        return -1;
    if (url == NULL) {
        bench_progress("relay %s: skipped (set LOOM_BENCH_NATS_URL to a "
                       "nats-server with JetStream; make bench does)",
                       name);
        return 0;
    }
    memset(&full, 0, sizeof full);
    memset(&lag, 0, sizeof lag);
    if (bench_db_fresh(env) != 0 ||
        bench_db_exec(env->scratch, rl_raw_schema_sql) != 0)
        goto out;
    /* The topic as users get it: deduplication on (5 minute window). */
    if (strcmp(name, "topics") == 0 && tb_loom_topic(env, RL_TOPIC, 1) != 0)
        goto out;
    bench_db_checkpoint(env);
    if (rl_raw(env, o, &raw) != 0)
        goto out;
    bench_db_checkpoint(env);
    if (rl_loom(env, o, url, 0, RL_WRITERS, &full) != 0)
        goto out;
    loom = (double) atomic_load(&full.written) * 1e9 /
           (double) (atomic_load(&full.end_ns) - atomic_load(&full.start_ns));
    bench_progress(
        "relay %s: %lld messages written and published in %.1f s: "
        "%.0f/s",
        name, (long long) atomic_load(&full.written),
        (double) (atomic_load(&full.end_ns) - atomic_load(&full.start_ns)) /
            1e9,
        loom);
    lag.measure_lag = 1;
    if (rl_loom(env, o, url, o->rate / RL_WRITERS, RL_WRITERS, &lag) != 0)
        goto out;
    p50 = bench_samples_ms(&lag.lag, 0.50);
    p99 = bench_samples_ms(&lag.lag, 0.99);
    bench_progress("relay %s: lag at %.0f msg/s over %zu messages: p50 "
                   "%.2f ms, p99 %.2f ms",
                   name, o->rate, lag.lag.n, p50, p99);
    printf("BENCH relay %s msgs_per_s=%.0f ratio=%.3f lag_p99_ms=%.2f\n", name,
           loom, raw > 0 ? loom / raw : 0.0, p99);
    fflush(stdout);
    rc = 0;
out:
    bench_samples_free(&full.lag);
    bench_samples_free(&lag.lag);
    free(url);
    return rc;
}

int
bench_relay(bench_env *env, const bench_opts *o)
{
    if (rl_transport(env, o, "topics") != 0)
        return -1;
    return rl_transport(env, o, "nats");
}
