/*
 * The PgQ side of the topics case, through PgQ's own SQL API as a
 * Skytools producer and consumer use it.
 *
 * Producer: one connection; each transaction is one statement
 *   SELECT pgq.insert_event(queue, 'bench', data, key, NULL, NULL, NULL)
 *     FROM unnest($data::text[], $key::text[])
 * of TB_BATCH events (binary array parameters), so PgQ stores the same
 * key and payload bytes per message as the topics transport.
 *
 * Ticker: PgQ only hands out events between two ticks. A deployment runs
 * pgqd, which calls pgq.ticker() every ticker_period (1 s by default);
 * pgq.ticker() then ticks a queue once ticker_max_count (500) events or
 * ticker_max_lag (3 s) have accumulated. A thread here does exactly
 * that on its own connection while PgQ produces and consumes (not while
 * the other side runs), so the batches are the ones pgqd would have cut.
 * pgqd's maintenance (table rotation every 2 h, retry queue every 30 s)
 * has nothing to do in a run this short and is left out.
 *
 * Consumer: one, because core PgQ has no consumer groups: every
 * registered consumer receives every event (cooperative consumers are the
 * separate pgq_coop extension, not packaged for Debian 12). Per batch,
 * one transaction: next_batch, get_batch_events, the per-message work,
 * finish_batch, COMMIT (durable), as Skytools' Consumer does. A second
 * consumer, registered alongside, reads the same events once more with
 * commits that do not wait for the WAL flush, for the comparison with the
 * transport's offset commits, which do not either.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_topics.h"
#include "buf.h"
#include "pgwire.h"

#define PQ_TICK_PERIOD_MS 1000              /* pgqd's ticker_period default */
#define PQ_IDLE_NS        INT64_C(10000000) /* no batch: wait 10 ms */
#define PQ_GIVE_UP_NS     INT64_C(60000000000) /* no new batch for 60 s */

static const char pq_insert_sql[] =
    "SELECT pgq.insert_event($1, 'bench', d, k, NULL, NULL, NULL) "
    "FROM unnest($2::text[], $3::text[]) AS u(d, k)";

struct tb_pgq {
    const tb_spec *spec;
    PGconn *conn; /* producer, then consumer */
    pthread_t ticker;
    int ticking;
    atomic_int tick_stop, tick_failed;
    atomic_size_t ticks; /* ticks pgq.ticker() made */
};

static int
pq_fail(const char *what, PGconn *c, PGresult *r)
{
    fprintf(stderr, "%s: topics pgq: %s: %s", BENCH_PROGRAM, what,
            r != NULL ? PQresultErrorMessage(r) : PQerrorMessage(c));
    PQclear(r);
    return -1;
}

/* Runs `sql` with text parameters; the result, or NULL (printed). */
static PGresult *
pq_query(PGconn *c, const char *sql, int n, const char *const *params)
{
    PGresult *r = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);

    if (PQresultStatus(r) != PGRES_TUPLES_OK &&
        PQresultStatus(r) != PGRES_COMMAND_OK) {
        pq_fail(sql, c, r);
        return NULL;
    }
    return r;
}

/* ------------------------------------------------------------------ */
/* The ticker thread: pgqd's ticker loop                               */

static void
pq_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long) (ms % 1000) * 1000000};

    nanosleep(&ts, NULL);
}

static void *
pq_ticker_main(void *arg)
{
    tb_pgq *q = arg;
    PGconn *c = bench_db_connect(q->spec->env->conninfo, "loom-bench-pgqd");

    while (c != NULL && !atomic_load(&q->tick_stop)) {
        PGresult *r = pq_query(c, "SELECT pgq.ticker()", 0, NULL);
        if (r == NULL) {
            atomic_store(&q->tick_failed, 1);
            break;
        }
        atomic_fetch_add(&q->ticks, (size_t) atoi(PQgetvalue(r, 0, 0)));
        PQclear(r);
        /* Sleep the period in short steps so that a stop is quick. */
        for (int t = 0; t < PQ_TICK_PERIOD_MS && !atomic_load(&q->tick_stop);
             t += 10)
            pq_sleep_ms(10);
    }
    if (c == NULL)
        atomic_store(&q->tick_failed, 1);
    PQfinish(c);
    return NULL;
}

static int
pq_ticker_start(tb_pgq *q)
{
    atomic_store(&q->tick_stop, 0);
    atomic_store(&q->ticks, 0);
    if (pthread_create(&q->ticker, NULL, pq_ticker_main, q) != 0) {
        fprintf(stderr, "%s: topics pgq: cannot start the ticker thread\n",
                BENCH_PROGRAM);
        return -1;
    }
    q->ticking = 1;
    return 0;
}

/* Stops the ticker; -1 when it had failed. */
static int
pq_ticker_stop(tb_pgq *q)
{
    if (q->ticking) {
        atomic_store(&q->tick_stop, 1);
        pthread_join(q->ticker, NULL);
        q->ticking = 0;
    }
    return atomic_load(&q->tick_failed) ? -1 : 0;
}

/* ------------------------------------------------------------------ */
/* Set-up                                                              */

int
tb_pgq_open(tb_pgq **out, const tb_spec *spec)
{
    const char *const names[2] = {TB_QUEUE, TB_PGQ_CONSUMER};
    const char *const lazy[2] = {TB_QUEUE, TB_PGQ_LAZY};
    PGconn *c = spec->env->scratch;
    tb_pgq *q;
    PGresult *r;

    *out = NULL;
    /* CREATE EXTENSION pgq needs a superuser (pgq.control says so). */
    if (bench_db_exec(c, "CREATE EXTENSION IF NOT EXISTS pgq") != 0) {
        fprintf(stderr,
                "%s: topics: PgQ is missing: install the Debian package "
                "postgresql-15-pgq3 (scripts/bench.sh does) and connect as "
                "a superuser\n",
                BENCH_PROGRAM);
        return -1;
    }
    /* The consumer registers before the first event: PgQ hands a
     * consumer only what was inserted after its registration. */
    if ((r = pq_query(c, "SELECT pgq.create_queue($1)", 1, names)) == NULL)
        return -1;
    PQclear(r);
    if ((r = pq_query(c, "SELECT pgq.register_consumer($1, $2)", 2, names)) ==
        NULL)
        return -1;
    PQclear(r);
    if ((r = pq_query(c, "SELECT pgq.register_consumer($1, $2)", 2, lazy)) ==
        NULL)
        return -1;
    PQclear(r);
    q = calloc(1, sizeof *q);
    if (q == NULL)
        return -1;
    q->spec = spec;
    atomic_init(&q->tick_stop, 0);
    atomic_init(&q->tick_failed, 0);
    atomic_init(&q->ticks, 0);
    q->conn = bench_db_connect(spec->env->conninfo, "loom-bench-pgq");
    if (q->conn == NULL) {
        free(q);
        return -1;
    }
    *out = q;
    return 0;
}

void
tb_pgq_close(tb_pgq *q)
{
    if (q == NULL)
        return;
    pq_ticker_stop(q);
    PQfinish(q->conn);
    free(q);
}

/* ------------------------------------------------------------------ */
/* Produce                                                             */

/* Sends events first..first+n-1 in one statement (one transaction). */
static int
pq_insert(tb_pgq *q, loom__buf *data, loom__buf *keys, size_t first, size_t n)
{
    static const Oid types[3] = {LOOM__OID_TEXT, LOOM__OID_ATEXT,
                                 LOOM__OID_ATEXT};
    static const int formats[3] = {1, 1, 1};
    char payload[TB_PAYLOAD_BYTES], key[TB_KEY_MAX];
    const char *values[3];
    int lengths[3];
    PGresult *r;

    loom__buf_reset(data);
    loom__buf_reset(keys);
    loom__pg_array_begin(data, LOOM__OID_TEXT, (uint32_t) n);
    loom__pg_array_begin(keys, LOOM__OID_TEXT, (uint32_t) n);
    for (size_t i = first; i < first + n; i++) {
        tb_payload(payload, i, 0);
        loom__pg_array_add(data, payload, sizeof payload);
        loom__pg_array_add(keys, key, tb_key(key, i));
    }
    if (data->failed || keys->failed)
        return pq_fail("building the arrays", q->conn, NULL);
    values[0] = TB_QUEUE;
    lengths[0] = (int) strlen(TB_QUEUE);
    values[1] = data->data;
    lengths[1] = (int) data->len;
    values[2] = keys->data;
    lengths[2] = (int) keys->len;
    r = PQexecParams(q->conn, pq_insert_sql, 3, types, values, lengths, formats,
                     1);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || (size_t) PQntuples(r) != n)
        return pq_fail("pgq.insert_event", q->conn, r);
    PQclear(r);
    return 0;
}

/* After the last insert: the tick pgqd would make within ticker_max_lag,
 * made now, so that the consumer finds the whole backlog in batches. */
static int
pq_last_tick(tb_pgq *q)
{
    const char *const name[1] = {TB_QUEUE};
    PGresult *r = pq_query(q->conn, "SELECT pgq.force_tick($1)", 1, name);

    if (r == NULL)
        return -1;
    PQclear(r);
    r = pq_query(q->conn, "SELECT pgq.ticker($1)", 1, name);
    if (r == NULL)
        return -1;
    PQclear(r);
    return 0;
}

int
tb_pgq_produce(tb_pgq *q, tb_phase *out)
{
    loom__buf data = LOOM__BUF_INIT, keys = LOOM__BUF_INIT;
    size_t total = q->spec->messages, done = 0;
    int64_t t0;
    int rc = 0;

    memset(out, 0, sizeof *out);
    if (pq_ticker_start(q) != 0)
        return -1;
    t0 = bench_now_ns();
    while (rc == 0 && done < total && !atomic_load(&bench_stopped)) {
        size_t n = total - done < TB_BATCH ? total - done : TB_BATCH;
        rc = pq_insert(q, &data, &keys, done, n);
        done += rc == 0 ? n : 0;
        out->batches++;
    }
    out->seconds = (double) (bench_now_ns() - t0) / 1e9;
    out->messages = done;
    if (pq_ticker_stop(q) != 0)
        rc = -1;
    loom__buf_free(&data);
    loom__buf_free(&keys);
    printf("  topics pgq: the ticker made %zu ticks while producing, then "
           "one more after the last event\n",
           atomic_load(&q->ticks));
    if (rc == 0 && done == total)
        rc = pq_last_tick(q);
    return rc == 0 && done == total ? 0 : -1;
}

/* ------------------------------------------------------------------ */
/* Consume                                                             */

/* Handles one batch's events; -1 on a failure (printed). */
static int
pq_events(tb_pgq *q, const char *batch, tb_seen *seen)
{
    const char *params[1] = {batch};
    PGresult *r =
        PQexecParams(q->conn, "SELECT * FROM pgq.get_batch_events($1)", 1, NULL,
                     params, NULL, NULL, 1);
    int col, n;

    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        return pq_fail("pgq.get_batch_events", q->conn, r);
    col = PQfnumber(r, "ev_data");
    n = PQntuples(r);
    for (int i = 0; i < n && col >= 0; i++)
        tb_seen_add(seen, PQgetvalue(r, i, col),
                    (size_t) PQgetlength(r, i, col));
    PQclear(r);
    return col >= 0 ? 0 : pq_fail("no ev_data column", q->conn, NULL);
}

/* One transaction: the next batch, its events, finish_batch, COMMIT.
 * Returns 1 when a batch was handled, 0 when none was ready, -1. */
static int
pq_batch(tb_pgq *q, int lazy, tb_seen *seen)
{
    const char *const names[2] = {TB_QUEUE,
                                  lazy ? TB_PGQ_LAZY : TB_PGQ_CONSUMER};
    PGresult *r = NULL;
    char batch[32];
    int got;

    /* Lazy: a lost finish_batch only hands the batch out again, which
     * is what the topics transport relies on for its offset commits. */
    if (bench_db_exec(q->conn, lazy
                                   ? "BEGIN; SET LOCAL synchronous_commit = off"
                                   : "BEGIN") != 0 ||
        (r = pq_query(q->conn, "SELECT pgq.next_batch($1, $2)", 2, names)) ==
            NULL)
        return -1;
    got = !PQgetisnull(r, 0, 0);
    snprintf(batch, sizeof batch, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    if (got) {
        const char *params[1] = {batch};
        if (pq_events(q, batch, seen) != 0 ||
            (r = pq_query(q->conn, "SELECT pgq.finish_batch($1)", 1, params)) ==
                NULL)
            return -1;
        PQclear(r);
    }
    return bench_db_exec(q->conn, "COMMIT") == 0 ? got : -1;
}

int
tb_pgq_consume(tb_pgq *q, int lazy, tb_phase *out)
{
    tb_seen seen;
    int64_t t0, idle_since = 0;
    int rc = 0;

    memset(out, 0, sizeof *out);
    if (tb_seen_init(&seen, q->spec->messages) != 0 ||
        pq_ticker_start(q) != 0) {
        tb_seen_free(&seen);
        return -1;
    }
    t0 = bench_now_ns();
    while (atomic_load(&seen.distinct) < seen.n &&
           !atomic_load(&bench_stopped)) {
        int got = pq_batch(q, lazy, &seen);
        if (got < 0) {
            rc = -1;
            break;
        }
        if (got) {
            out->batches++;
            idle_since = 0;
            continue;
        }
        if (idle_since == 0)
            idle_since = bench_now_ns();
        else if (bench_now_ns() - idle_since > PQ_GIVE_UP_NS) {
            fprintf(stderr,
                    "%s: topics pgq: no batch for 60 s with %zu of "
                    "%zu events received\n",
                    BENCH_PROGRAM, atomic_load(&seen.distinct), seen.n);
            rc = -1;
            break;
        }
        pq_sleep_ms((int) (PQ_IDLE_NS / 1000000));
    }
    /* The end is the COMMIT of the batch that completed the set. */
    tb_seen_phase(&seen, t0, out);
    out->seconds = (double) (bench_now_ns() - t0) / 1e9;
    if (pq_ticker_stop(q) != 0)
        rc = -1;
    printf("  topics pgq: the ticker made %zu ticks while consuming\n",
           atomic_load(&q->ticks));
    tb_seen_free(&seen);
    return rc;
}
