/*
 * topics: the "topics://" transport against PgQ, doing the same work in
 * the same run (docs/benchmarks.md, "topics").
 *
 * Produce --messages messages (default 1,000,000) of 200 bytes with keys
 * over TB_KEYS values, in transactions of TB_BATCH; then consume them all,
 * the transport with one group of TB_MEMBERS members over TB_PARTITIONS
 * partitions, PgQ with its one consumer. The phases run in the order
 * PgQ produce, loom produce, loom consume, PgQ consume (ABBA, so neither
 * side always runs on the fuller database), each after a CHECKPOINT.
 * Every consumer checksums every payload; a phase that lost, doubled
 * without noticing or altered a message fails the case. Three more
 * phases give like-for-like figures where the two differ: a loom group of
 * one member (PgQ has no consumer groups), a PgQ consumer whose commits do
 * not wait for the WAL flush (the transport's automatic offset commits do
 * not), and a loom produce to a topic without deduplication (PgQ has
 * none). Before all of them, on the empty
 * database, the latency of the transport at --rate messages/s for
 * --seconds seconds.
 *
 * Prints
 *   BENCH topics produce loom=<msg/s> pgq=<msg/s> ratio=<loom/pgq>
 *   BENCH topics consume loom=<msg/s> pgq=<msg/s> ratio=<loom/pgq>
 *   BENCH topics latency p50_ms=<x> p99_ms=<y>
 * The PgQ phases run even when the loom side fails, so a broken transport
 * still leaves the baseline in the output (and the case fails).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_topics.h"

#define TB_GROUP        "bench"
#define TB_GROUP_SINGLE "bench-single"

static double
tb_rate(const tb_phase *p)
{
    return p->seconds > 0 ? (double) p->messages / p->seconds : 0.0;
}

static void
tb_print(const char *phase, const char *side, const tb_phase *p,
         const char *unit)
{
    printf("  topics %s %s: %zu messages in %.2f s = %.0f msg/s; %zu %s "
           "(%.1f messages each)\n",
           phase, side, p->messages, p->seconds, tb_rate(p), p->batches, unit,
           p->batches ? (double) p->messages / (double) p->batches : 0.0);
    fflush(stdout);
}

/* A consume phase is good when every message arrived, unaltered. */
static int
tb_check(const char *side, const tb_phase *p, size_t n, uint64_t sum)
{
    if (p->dups > 0)
        printf("  topics consume %s: %zu duplicate deliveries (at-least-once "
               "redeliveries, not counted)\n",
               side, p->dups);
    if (p->messages == n && p->sum == sum)
        return 0;
    fprintf(stderr,
            "%s: topics consume %s: %zu of %zu messages received, "
            "checksum %s\n",
            BENCH_PROGRAM, side, p->messages, n,
            p->sum == sum ? "matches" : "DIFFERS");
    return -1;
}

/* How evenly the keys spread over the partitions. */
static void
tb_partitions(bench_env *env)
{
    PGresult *r =
        PQexec(env->scratch, "SELECT min(next_offset), max(next_offset) "
                             "FROM loom.topic_partitions "
                             "WHERE topic_id = loom.topic_id('" TB_TOPIC "')");

    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
        printf("  topics: messages per partition of %s: %s to %s\n", TB_TOPIC,
               PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1));
    PQclear(r);
}

typedef struct tb_results {
    tb_phase produce[2], consume[2]; /* [0] loom, [1] pgq */
    tb_phase single, nodedup;        /* the extra loom phases */
    tb_phase lazy;                   /* the extra PgQ phase */
    tb_latency lat;
} tb_results;

/* Each phase prints its detail line; 0, or -1 after printing why. */
static int
tb_loom_produce_phase(const tb_spec *spec, tb_results *res)
{
    bench_db_checkpoint(spec->env);
    bench_progress("topics: loom produce");
    if (tb_loom_produce(spec, TB_TOPIC, &res->produce[0]) != 0)
        return -1;
    tb_print("produce", "loom", &res->produce[0], "publish calls");
    tb_partitions(spec->env);
    return 0;
}

static int
tb_loom_consume_phase(const tb_spec *spec, tb_results *res, uint64_t sum)
{
    bench_db_checkpoint(spec->env);
    bench_progress("topics: loom consume, group of %d", TB_MEMBERS);
    if (tb_loom_consume(spec, TB_GROUP, TB_MEMBERS, &res->consume[0]) != 0)
        return -1;
    tb_print("consume", "loom (2 members)", &res->consume[0], "handler calls");
    return tb_check("loom", &res->consume[0], spec->messages, sum);
}

/* Extra, for the comparison with PgQ's single consumer: the same backlog
 * read by a group of one. */
static int
tb_loom_single_phase(const tb_spec *spec, tb_results *res, uint64_t sum)
{
    bench_db_checkpoint(spec->env);
    bench_progress("topics: loom consume, group of 1");
    if (tb_loom_consume(spec, TB_GROUP_SINGLE, 1, &res->single) != 0)
        return -1;
    tb_print("consume", "loom (1 member)", &res->single, "handler calls");
    return tb_check("loom (1 member)", &res->single, spec->messages, sum);
}

/* Extra: the same messages to a topic without deduplication, which PgQ
 * does not have: the like-for-like produce. */
static int
tb_loom_nodedup_phase(const tb_spec *spec, tb_results *res)
{
    bench_db_checkpoint(spec->env);
    bench_progress("topics: loom produce, no deduplication");
    if (tb_loom_produce(spec, TB_TOPIC_NODEDUP, &res->nodedup) != 0)
        return -1;
    tb_print("produce", "loom (no deduplication)", &res->nodedup,
             "publish calls");
    return 0;
}

static int
tb_latency_phase(const tb_spec *spec, tb_results *res)
{
    tb_latency *l = &res->lat;

    bench_db_checkpoint(spec->env);
    bench_progress("topics: latency at %.0f msg/s for %.0f s", spec->rate,
                   spec->seconds);
    if (tb_loom_latency(spec, l) != 0)
        return -1;
    printf("  topics latency: %zu messages at %.1f msg/s (one per publish "
           "call): publish to handler p50 %.3f ms, p90 %.3f ms, p99 %.3f ms, "
           "max %.3f ms (published at +%.2f s); publish callback p50 %.3f "
           "ms, p99 %.3f ms; most behind schedule %.1f ms\n",
           l->messages, l->rate, bench_samples_ms(&l->lat, 0.50),
           bench_samples_ms(&l->lat, 0.90), bench_samples_ms(&l->lat, 0.99),
           bench_samples_ms(&l->lat, 1.0), l->slowest_at_s,
           bench_samples_ms(&l->publish, 0.50),
           bench_samples_ms(&l->publish, 0.99), l->behind_ms);
    return 0;
}

static int
tb_pgq_produce_phase(tb_pgq *q, const tb_spec *spec, tb_results *res)
{
    bench_db_checkpoint(spec->env);
    bench_progress("topics: pgq produce");
    if (tb_pgq_produce(q, &res->produce[1]) != 0)
        return -1;
    tb_print("produce", "pgq", &res->produce[1], "transactions");
    return 0;
}

/* `lazy`: the extra PgQ phase, a second consumer of the same events
 * whose commits do not wait for the WAL flush, as the transport's
 * automatic offset commits do not: like-for-like durability. */
static int
tb_pgq_consume_phase(tb_pgq *q, const tb_spec *spec, tb_phase *out, int lazy,
                     uint64_t sum)
{
    const char *side = lazy ? "pgq (commits without flush wait)" : "pgq";

    bench_db_checkpoint(spec->env);
    bench_progress("topics: %s consume", side);
    if (tb_pgq_consume(q, lazy, out) != 0)
        return -1;
    tb_print("consume", side, out, "batches");
    return tb_check(side, out, spec->messages, sum);
}

static void
tb_summary(tb_results *res)
{
    double lp = tb_rate(&res->produce[0]), pp = tb_rate(&res->produce[1]);
    double lc = tb_rate(&res->consume[0]), pc = tb_rate(&res->consume[1]);

    printf("BENCH topics produce loom=%.0f pgq=%.0f ratio=%.3f\n", lp, pp,
           pp > 0 ? lp / pp : 0.0);
    printf("BENCH topics consume loom=%.0f pgq=%.0f ratio=%.3f\n", lc, pc,
           pc > 0 ? lc / pc : 0.0);
    printf("BENCH topics latency p50_ms=%.3f p99_ms=%.3f\n",
           bench_samples_ms(&res->lat.lat, 0.50),
           bench_samples_ms(&res->lat.lat, 0.99));
    fflush(stdout);
}

/* The phases in ABBA order; the PgQ ones run whatever the loom side
 * does. */
static int
tb_run(tb_pgq *q, const tb_spec *spec, tb_results *res)
{
    uint64_t sum = tb_expected_sum(spec->messages);
    /* Latency first, on the empty database: after the throughput phases
     * autovacuum works through millions of new rows for a while, and the
     * latency would measure that. */
    int loom = tb_latency_phase(spec, res);

    /* Ctrl-C ends every phase early; then run no more of them. */
    if (atomic_load(&bench_stopped) || tb_pgq_produce_phase(q, spec, res) != 0)
        return -1;
    if (loom == 0)
        loom = tb_loom_produce_phase(spec, res);
    if (loom == 0)
        loom = tb_loom_consume_phase(spec, res, sum);
    if (atomic_load(&bench_stopped) ||
        tb_pgq_consume_phase(q, spec, &res->consume[1], 0, sum) != 0)
        return -1;
    if (loom == 0)
        loom = tb_loom_single_phase(spec, res, sum);
    if (atomic_load(&bench_stopped) ||
        tb_pgq_consume_phase(q, spec, &res->lazy, 1, sum) != 0)
        return -1;
    if (loom == 0)
        loom = tb_loom_nodedup_phase(spec, res);
    if (loom != 0)
        fprintf(stderr,
                "%s: topics: the loom side failed (see above); only "
                "the PgQ figures were measured\n",
                BENCH_PROGRAM);
    return loom;
}

int
bench_topics(bench_env *env, const bench_opts *o)
{
    /* Both sides at their defaults: PgQ batches as pgqd's ticker cuts
     * them, loom consumers fetch the transport's default unless --batch
     * says otherwise. */
    tb_spec spec = {env, o->messages, o->rate, o->seconds, o->batch};
    char fetch[64];
    tb_results res;
    tb_pgq *q = NULL;
    int rc;

    memset(&res, 0, sizeof res);
    if (spec.batch > 0)
        snprintf(fetch, sizeof fetch, "up to %zu", spec.batch);
    else
        snprintf(fetch, sizeof fetch, "the transport's default number");
    printf("topics: %zu messages of %d bytes, keys over %d values, %d per "
           "produce transaction; loom: %d partitions, a group of %d members "
           "fetching %s at a time; PgQ: one consumer (and one more whose "
           "commits skip the flush wait), pgq.ticker() every second; first, "
           "loom latency at %.0f msg/s for %.0f s\n",
           spec.messages, TB_PAYLOAD_BYTES, TB_KEYS, TB_BATCH, TB_PARTITIONS,
           TB_MEMBERS, fetch, spec.rate, spec.seconds);
    fflush(stdout);
    if (tb_pgq_open(&q, &spec) != 0 || tb_loom_topic(env, TB_TOPIC, 1) != 0 ||
        tb_loom_topic(env, TB_TOPIC_NODEDUP, 0) != 0 ||
        tb_loom_topic(env, TB_LAT_TOPIC, 1) != 0) {
        tb_pgq_close(q);
        return -1;
    }
    rc = tb_run(q, &spec, &res);
    tb_pgq_close(q);
    if (rc == 0)
        tb_summary(&res);
    bench_samples_free(&res.lat.lat);
    bench_samples_free(&res.lat.publish);
    return rc;
}
