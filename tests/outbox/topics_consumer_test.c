/*
 * How consumers and groups of the topic streams behave, against a real
 * PostgreSQL, one test per promise of loom/topics.h: pattern subscriptions
 * match whole words and pick up topics created later; groups are
 * independent, each receiving every message; committed offsets survive a
 * restart of the group, and acknowledged messages are not redelivered
 * after a graceful close; manual commit writes offsets only when asked;
 * a new group starts where its start position says; a member of a stale
 * generation cannot commit (in SQL or through the API) and the new owner
 * redelivers; a member without partitions waits, then takes over; publish
 * and consumer open refuse bad input; and keyed messages land in the
 * partitions Kafka's murmur2 partitioner picks.
 *
 * The tests of this executable share one database (its own, made by
 * est_group_setup()): each creates its own topics and groups under names
 * no other test uses (and no other test creates a topic under "orders.",
 * which the pattern test reads whole). Loop callbacks only record; the
 * checks run after tpt_run().
 *
 * tpt_run() turns the loop itself, so the runtime's LISTEN connection
 * (started by loom_runtime_run() only) never runs: consumers here find
 * new messages and rebalances by polling and heartbeats, hence the short
 * poll_ms and heartbeat_ms of tpt_fast_topts().
 *
 * TPT_FILTER=<glob> runs only the matching tests; TPT_LOG=1 prints every
 * log line of the library (info included) with a millisecond clock.
 */
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "inproc.h"
#include "tptest.h"

/* ---- helpers ------------------------------------------------------------ */

/* Fails unless each of payloads first..first+n-1 ("%d") was delivered
 * exactly once and nothing else was. */
static void
rec_check_once(const tpt_rec *r, int first, int n)
{
    for (int i = first; i < first + n; i++) {
        char p[16];
        snprintf(p, sizeof p, "%d", i);
        if (tpt_rec_count(r, p) != 1)
            fail_msg("payload %s delivered %zu times", p, tpt_rec_count(r, p));
    }
    assert_int_equal(r->n, (size_t) n);
}

/* Runs the loop until the consumer holds `n` partitions. */
typedef struct parts_until {
    loom_consumer *c;
    size_t n;
} parts_until;

static int
parts_done(void *arg)
{
    parts_until *w = arg;
    loom_topics_consumer_stats st;

    return loom_topics_consumer_stats_get(w->c, &st) == LOOM_OK &&
           st.partitions == w->n;
}

static void
parts_wait(tpt_env *e, loom_consumer *c, size_t n)
{
    parts_until w = {c, n};

    if (!tpt_run(e, parts_done, &w, TPT_WAIT_MS))
        fail_msg("waited for %zu partitions, have %zu", n,
                 tpt_stats_of(c).partitions);
}

/* ---- 1. patterns -------------------------------------------------------- */

static int
rec_has_topic(const tpt_rec *r, const char *topic)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->m[i].topic, topic) == 0)
            return 1;
    return 0;
}

static void
pattern_subscriptions_match_words_and_pick_up_new_topics(void **state)
{
    static const char *topics[] = {"orders.created.eu", "orders.created.us",
                                   "orders.paid.eu", "billing",
                                   "orders.created.eu.dlq"};
    tpt_env e;
    tpt_rec eu = {0}, all = {0};

    (void) state;
    for (size_t i = 0; i < 5; i++)
        tpt_topic_create(topics[i], 1, -1, -1, -1, -1);
    tpt_open(&e, "");
    tpt_rec_open(&e, "pat-eu", "orders.*.eu", NULL, &eu);
    tpt_rec_open(&e, "pat-all", "orders.#", NULL, &all);
    parts_wait(&e, eu.c, 2);
    parts_wait(&e, all.c, 3);
    for (size_t i = 0; i < 5; i++) {
        loom_message m;
        tpt_msg_init(&m, topics[i], NULL, topics[i]);
        assert_int_equal(tpt_publish_wait(&e, &m, 1), LOOM_OK);
    }
    tpt_rec_wait(&e, &eu, 2);
    tpt_rec_wait(&e, &all, 3);
    tpt_run(&e, NULL, NULL, TPT_QUIET_MS);
    assert_int_equal(eu.n, 2);
    assert_true(rec_has_topic(&eu, "orders.created.eu"));
    assert_true(rec_has_topic(&eu, "orders.paid.eu"));
    assert_int_equal(all.n, 3);
    assert_true(rec_has_topic(&all, "orders.created.eu"));
    assert_true(rec_has_topic(&all, "orders.created.us"));
    assert_true(rec_has_topic(&all, "orders.paid.eu"));
    for (size_t i = 0; i < all.n; i++)
        assert_string_equal(all.m[i].topic, all.m[i].payload);

    /* A topic created now joins both subscriptions (the heartbeat sees
     * loom.topic_meta move and the group rebalances). */
    tpt_topic_create("orders.refunded.eu", 1, -1, -1, -1, -1);
    parts_wait(&e, eu.c, 3);
    parts_wait(&e, all.c, 4);
    {
        loom_message m;
        tpt_msg_init(&m, "orders.refunded.eu", NULL, "refund");
        assert_int_equal(tpt_publish_wait(&e, &m, 1), LOOM_OK);
    }
    tpt_rec_wait(&e, &eu, 3);
    tpt_rec_wait(&e, &all, 4);
    tpt_run(&e, NULL, NULL, TPT_QUIET_MS);
    assert_int_equal(eu.n, 3);
    assert_int_equal(all.n, 4);
    assert_string_equal(eu.m[2].topic, "orders.refunded.eu");
    assert_string_equal(all.m[3].topic, "orders.refunded.eu");
    tpt_close(&e);
    tpt_rec_free(&eu);
    tpt_rec_free(&all);
}

/* ---- 2. independent groups ---------------------------------------------- */

static void
independent_groups_each_receive_every_message(void **state)
{
    tpt_env e;
    tpt_rec r[3];
    tpt_rec *rs[4] = {&r[0], &r[1], &r[2], NULL};
    const char *groups[3] = {"ind-a", "ind-b", "ind-c"};

    (void) state;
    memset(r, 0, sizeof r);
    tpt_topic_create("ind.t", 3, -1, -1, -1, -1);
    tpt_open(&e, "");
    for (int i = 0; i < 3; i++)
        tpt_rec_open(&e, groups[i], "ind.t", NULL, &r[i]);
    tpt_publish_seq(&e, "ind.t", 0, 60, 7);
    for (int i = 0; i < 3; i++)
        r[i].want = 60;
    assert_true(tpt_run(&e, tpt_recs_done, rs, TPT_WAIT_MS));
    tpt_run(&e, NULL, NULL, TPT_QUIET_MS);
    for (int i = 0; i < 3; i++) {
        rec_check_once(&r[i], 0, 60);
        assert_int_equal(tpt_stats_of(r[i].c).partitions, 3);
    }
    tpt_close(&e);
    for (int i = 0; i < 3; i++)
        tpt_rec_free(&r[i]);
}

/* ---- 3. offsets across restarts and closes, manual commit --------------- */

static void
committed_offsets_survive_a_restart_of_the_group(void **state)
{
    tpt_env e;
    tpt_rec a = {0}, b = {0};
    int64_t count[2] = {0, 0};
    size_t acked = 0;
    char *was_acked;

    (void) state;
    tpt_topic_create("rs.t", 2, -1, -1, -1, -1);
    tpt_open(&e, "");
    a.hold = 1;
    tpt_rec_open(&e, "rs-g", "rs.t", NULL, &a);
    tpt_publish_seq(&e, "rs.t", 0, 40, 5);
    tpt_rec_wait(&e, &a, 40);
    /* Acknowledge the first half of each partition. */
    for (size_t i = 0; i < a.n; i++)
        count[a.m[i].partition]++;
    assert_true(count[0] > 0 && count[1] > 0);
    was_acked = calloc(a.n, 1);
    assert_non_null(was_acked);
    for (size_t i = 0; i < a.n; i++)
        if (a.m[i].offset < count[a.m[i].partition] / 2) {
            assert_int_equal(loom_consumer_ack(a.c, a.m[i].held), LOOM_OK);
            was_acked[i] = 1;
            acked++;
        }
    tpt_sql_wait(&e, (long long) (count[0] / 2 + count[1] / 2),
                 "SELECT sum(\"offset\") FROM loom.topic_offsets o "
                 "JOIN loom.topics t ON t.id = o.topic_id "
                 "WHERE o.group_name = 'rs-g' AND t.name = 'rs.t'");
    loom_consumer_close(a.c);

    /* The group again: exactly the unacknowledged ones, once each. */
    tpt_rec_open(&e, "rs-g", "rs.t", NULL, &b);
    tpt_rec_wait(&e, &b, 40 - acked);
    tpt_run(&e, NULL, NULL, TPT_QUIET_MS);
    assert_int_equal(b.n, 40 - acked);
    for (size_t i = 0; i < a.n; i++)
        assert_int_equal(tpt_rec_count(&b, a.m[i].payload),
                         was_acked[i] ? 0 : 1);
    for (size_t i = 0; i < b.n; i++) {
        assert_true(b.m[i].offset >= count[b.m[i].partition] / 2);
        assert_int_equal(b.m[i].attempt, 1);
    }
    tpt_sql_wait(&e, 0,
                 "SELECT coalesce(sum(lag), -1) FROM loom.topic_lag "
                 "WHERE group_name = 'rs-g'");
    free(was_acked);
    tpt_close(&e);
    tpt_rec_free(&a);
    tpt_rec_free(&b);
}

/* loom/transport.h: an acknowledged message "is not delivered to this
 * group again", and closing redelivers the unacknowledged ones; so a
 * graceful close writes what was acknowledged (as Kafka's close() makes
 * a last commit). Here every message is acknowledged, then the consumer
 * is closed at once: the commit of the first acknowledgement may be in
 * flight, the others are not yet written. */
static void
acknowledged_messages_are_not_redelivered_after_close(void **state)
{
    tpt_env e;
    tpt_rec a = {0}, b = {0};

    (void) state;
    tpt_topic_create("cl.t", 1, -1, -1, -1, -1);
    tpt_open(&e, "");
    a.hold = 1;
    tpt_rec_open(&e, "cl-g", "cl.t", NULL, &a);
    tpt_publish_seq(&e, "cl.t", 0, 10, 0);
    tpt_rec_wait(&e, &a, 10);
    for (size_t i = 0; i < a.n; i++)
        assert_int_equal(loom_consumer_ack(a.c, a.m[i].held), LOOM_OK);
    loom_consumer_close(a.c);

    tpt_rec_open(&e, "cl-g", "cl.t", NULL, &b);
    parts_wait(&e, b.c, 1);
    tpt_run(&e, NULL, NULL, 10 * TPT_POLL_MS + TPT_QUIET_MS);
    if (b.n != 0)
        fail_msg("%zu acknowledged messages were delivered again after "
                 "close (first: %s)",
                 b.n, b.m[0].payload);
    tpt_close(&e);
    tpt_rec_free(&a);
    tpt_rec_free(&b);
}

static void
manual_commit_writes_offsets_only_when_asked(void **state)
{
    tpt_env e;
    tpt_rec r = {0};
    loom_topics_consumer_config t = tpt_fast_topts();

    (void) state;
    tpt_topic_create("mc.t", 1, -1, -1, -1, -1);
    tpt_open(&e, "");
    t.manual_commit = 1;
    tpt_rec_open(&e, "mc-g", "mc.t", &t, &r);
    tpt_publish_seq(&e, "mc.t", 0, 10, 0);
    tpt_rec_wait(&e, &r, 10);
    tpt_run(&e, NULL, NULL, TPT_QUIET_MS);
    assert_int_equal(est_ll("SELECT committed FROM loom.topic_lag "
                            "WHERE group_name = 'mc-g'"),
                     0);
    assert_int_equal(loom_topics_commit(r.c), LOOM_OK);
    tpt_sql_wait(&e, 10,
                 "SELECT committed FROM loom.topic_lag "
                 "WHERE group_name = 'mc-g'");
    rec_check_once(&r, 0, 10);
    tpt_close(&e);
    tpt_rec_free(&r);
}

/* ---- 4. start positions ------------------------------------------------- */

static void
new_groups_start_where_their_start_position_says(void **state)
{
    tpt_env e;
    tpt_rec latest = {0}, bytime = {0}, byoff = {0}, past_end = {0},
            earliest = {0}, again = {0};
    loom_topics_consumer_config t = tpt_fast_topts();
    long long t1;

    (void) state;
    tpt_topic_create("sp.t", 1, -1, -1, -1, -1);
    tpt_open(&e, "");
    tpt_publish_seq(&e, "sp.t", 0, 5, 0); /* offsets 0..4 */
    t1 = est_ll("SELECT (extract(epoch FROM clock_timestamp()) * 1000000)"
                "::bigint");
    tpt_publish_seq(&e, "sp.t", 5, 5, 0); /* 5..9, published after t1 */

    t.start.start = LOOM_START_LATEST;
    tpt_rec_open(&e, "sp-latest", "sp.t", &t, &latest);
    t.start.start = LOOM_START_TIME;
    t.start.time = t1;
    tpt_rec_open(&e, "sp-time", "sp.t", &t, &bytime);
    t.start.start = LOOM_START_OFFSET;
    t.start.time = 0;
    t.start.offset = 7;
    tpt_rec_open(&e, "sp-offset", "sp.t", &t, &byoff);
    t.start.offset = 1000; /* clamped to the end */
    tpt_rec_open(&e, "sp-past-end", "sp.t", &t, &past_end);
    tpt_rec_open(&e, "sp-earliest", "sp.t", NULL, &earliest);
    tpt_run(&e, NULL, NULL, TPT_QUIET_MS);
    assert_int_equal(latest.n, 0);
    assert_int_equal(past_end.n, 0);

    tpt_publish_seq(&e, "sp.t", 10, 3, 0); /* 10..12 */
    tpt_rec_wait(&e, &latest, 3);
    tpt_rec_wait(&e, &bytime, 8);
    tpt_rec_wait(&e, &byoff, 6);
    tpt_rec_wait(&e, &past_end, 3);
    tpt_rec_wait(&e, &earliest, 13);
    tpt_run(&e, NULL, NULL, TPT_QUIET_MS);
    rec_check_once(&latest, 10, 3);
    rec_check_once(&bytime, 5, 8);
    rec_check_once(&byoff, 7, 6);
    rec_check_once(&past_end, 10, 3);
    rec_check_once(&earliest, 0, 13);

    /* The start position only counts without a committed offset. */
    tpt_sql_wait(&e, 13,
                 "SELECT committed FROM loom.topic_lag "
                 "WHERE group_name = 'sp-latest'");
    loom_consumer_close(latest.c);
    tpt_rec_open(&e, "sp-latest", "sp.t", NULL, &again); /* earliest */
    tpt_publish_seq(&e, "sp.t", 13, 1, 0);
    tpt_rec_wait(&e, &again, 1);
    tpt_run(&e, NULL, NULL, TPT_QUIET_MS);
    rec_check_once(&again, 13, 1);
    tpt_close(&e);
    tpt_rec_free(&latest);
    tpt_rec_free(&bytime);
    tpt_rec_free(&byoff);
    tpt_rec_free(&past_end);
    tpt_rec_free(&earliest);
    tpt_rec_free(&again);
}

/* ---- 5. fencing --------------------------------------------------------- */

/* The one member of `group` and the generation of its assignment. */
static void
sole_member(PGconn *pg, const char *group, char *member, size_t len,
            long long *gen)
{
    char sql[256];
    PGresult *res;

    snprintf(sql, sizeof sql,
             "SELECT DISTINCT member::text, generation FROM "
             "loom.topic_assignments WHERE group_name = '%s'",
             group);
    res = est_query(pg, sql);
    assert_int_equal(PQntuples(res), 1);
    snprintf(member, len, "%s", PQgetvalue(res, 0, 0));
    *gen = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
    PQclear(res);
}

static void
stale_generation_cannot_commit_in_sql(void **state)
{
    tpt_env e;
    tpt_rec r = {0};
    PGconn *pg;
    char member[64], sql[512];
    long long gen, tid;

    (void) state;
    tpt_topic_create("fn.sql", 1, -1, -1, -1, -1);
    tpt_open(&e, "");
    tpt_rec_open(&e, "fn-sql", "fn.sql", NULL, &r);
    parts_wait(&e, r.c, 1);
    tid = tpt_topic_id("fn.sql");
    pg = est_connect(NULL);
    sole_member(pg, "fn-sql", member, sizeof member, &gen);

    snprintf(sql, sizeof sql,
             "SELECT loom.topic_commit('fn-sql', '%s', %lld, %lld, 0, 0)",
             member, gen - 1, tid);
    est_exec_fails(pg, sql, "LM012");
    snprintf(sql, sizeof sql,
             "SELECT loom.topic_commit('fn-sql', "
             "'0190a1b2-0000-7000-8000-0000000000ff', %lld, %lld, 0, 0)",
             gen, tid);
    est_exec_fails(pg, sql, "LM012");
    snprintf(sql, sizeof sql,
             "SELECT loom.topic_retry('fn-sql', '%s', %lld, %lld, 0, 0, 1, "
             "now(), 'x')",
             member, gen - 1, tid);
    est_exec_fails(pg, sql, "LM012");
    snprintf(sql, sizeof sql,
             "SELECT loom.topic_dead_letter('fn-sql', '%s', %lld, %lld, 0, "
             "0, 1, 'x', NULL)",
             member, gen - 1, tid);
    est_exec_fails(pg, sql, "LM012");
    /* The owner at its generation may. */
    snprintf(sql, sizeof sql,
             "SELECT loom.topic_commit('fn-sql', '%s', %lld, %lld, 0, 0)",
             member, gen, tid);
    est_exec(pg, sql);
    PQfinish(pg);
    tpt_close(&e);
    tpt_rec_free(&r);
}

/* loom.topic_commit_many() (schema 15), what a consumer's commit runs:
 * one partition not ours at its generation refuses the whole commit,
 * naming it, and writes nothing; offsets only move forward. */
static void
commit_many_is_all_or_nothing_and_names_the_lost_partition(void **state)
{
    tpt_env e;
    tpt_rec r = {0};
    PGconn *pg;
    PGresult *res;
    char member[64], sql[1024];
    long long gen, tid;

    (void) state;
    tpt_topic_create("fn.many", 3, -1, -1, -1, -1);
    tpt_open(&e, "");
    tpt_rec_open(&e, "fn-many", "fn.many", NULL, &r);
    parts_wait(&e, r.c, 3);
    tid = tpt_topic_id("fn.many");
    pg = est_connect(NULL);
    sole_member(pg, "fn-many", member, sizeof member, &gen);

    /* Partition 2 at a stale generation: nothing of the three moves. */
    snprintf(sql, sizeof sql,
             "SELECT loom.topic_commit_many('fn-many', '%s', "
             "ARRAY[%lld, %lld, %lld], ARRAY[%lld, %lld, %lld]::int[], "
             "ARRAY[0, 1, 2], ARRAY[100, 200, 300]::bigint[])",
             member, gen, gen, gen - 1, tid, tid, tid);
    res = PQexec(pg, sql);
    assert_int_equal(PQresultStatus(res), PGRES_FATAL_ERROR);
    assert_string_equal(PQresultErrorField(res, PG_DIAG_SQLSTATE), "LM012");
    assert_non_null(strstr(PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY),
                           "partition 2 of topic"));
    PQclear(res);
    res = est_query(pg, "SELECT count(*) FROM loom.topic_offsets "
                        "WHERE group_name = 'fn-many' AND \"offset\" >= 100");
    assert_string_equal(PQgetvalue(res, 0, 0), "0");
    PQclear(res);

    /* Another member: refused too. */
    snprintf(sql, sizeof sql,
             "SELECT loom.topic_commit_many('fn-many', "
             "'0190a1b2-0000-7000-8000-0000000000ff', ARRAY[%lld], "
             "ARRAY[%lld]::int[], ARRAY[0], ARRAY[100]::bigint[])",
             gen, tid);
    est_exec_fails(pg, sql, "LM012");
    /* Arrays of different lengths, and a partition given twice. */
    snprintf(sql, sizeof sql,
             "SELECT loom.topic_commit_many('fn-many', '%s', ARRAY[%lld], "
             "ARRAY[%lld]::int[], ARRAY[0, 1], ARRAY[100]::bigint[])",
             member, gen, tid);
    est_exec_fails(pg, sql, "22023");
    snprintf(sql, sizeof sql,
             "SELECT loom.topic_commit_many('fn-many', '%s', "
             "ARRAY[%lld, %lld], ARRAY[%lld, %lld]::int[], ARRAY[1, 1], "
             "ARRAY[100, 200]::bigint[])",
             member, gen, gen, tid, tid);
    est_exec_fails(pg, sql, "21000");

    /* The owner at its generation: all three move, and never back. */
    snprintf(sql, sizeof sql,
             "SELECT loom.topic_commit_many('fn-many', '%s', "
             "ARRAY[%lld, %lld, %lld], ARRAY[%lld, %lld, %lld]::int[], "
             "ARRAY[0, 1, 2], ARRAY[100, 200, 300]::bigint[])",
             member, gen, gen, gen, tid, tid, tid);
    est_exec(pg, sql);
    snprintf(sql, sizeof sql,
             "SELECT loom.topic_commit_many('fn-many', '%s', "
             "ARRAY[%lld, %lld], ARRAY[%lld, %lld]::int[], ARRAY[2, 0], "
             "ARRAY[250, 150]::bigint[])",
             member, gen, gen, tid, tid);
    est_exec(pg, sql);
    res = est_query(pg, "SELECT string_agg(\"offset\"::text, ',' ORDER BY "
                        "partition) FROM loom.topic_offsets "
                        "WHERE group_name = 'fn-many'");
    assert_string_equal(PQgetvalue(res, 0, 0), "150,200,300");
    PQclear(res);
    PQfinish(pg);
    tpt_close(&e);
    tpt_rec_free(&r);
}

static void
member_that_lost_a_partition_cannot_commit_and_the_new_owner_redelivers(
    void **state)
{
    tpt_env e;
    tpt_rec a = {0}, b = {0};
    loom_consumer_config cfg = LOOM_CONSUMER_CONFIG_INIT;
    loom_topics_consumer_config t = tpt_fast_topts();
    const char *topics[1] = {"fn.api"};
    loom_consumer *ca = NULL;
    int b_part[4] = {0, 0, 0, 0};
    size_t on_b = 0;
    loom_topics_consumer_stats st;

    (void) state;
    tpt_topic_create("fn.api", 4, -1, -1, -1, -1);
    tpt_open(&e, "");
    cfg.group = "fn-api";
    cfg.topics = topics;
    cfg.n_topics = 1;
    /* Manual commit: A's acknowledgements are written by one commit,
     * asked for after B joined and sent before A can hear of it. A long
     * poll: caught up, A sleeps until then. (Published first: under
     * tpt_run() the runtime's LISTEN connection never starts, so no
     * publish would wake A before its poll either.) */
    tpt_publish_seq(&e, "fn.api", 0, 40, 16);
    t.manual_commit = 1;
    t.poll_ms = 10000;
    a.hold = 1;
    assert_int_equal(
        loom_topics_consumer_open(e.t, &cfg, &t, tpt_rec_handle, NULL, &a, &ca),
        LOOM_OK);
    a.c = ca;
    parts_wait(&e, ca, 4);
    tpt_rec_wait(&e, &a, 40);
    assert_int_equal(tpt_stats_of(ca).in_flight, 40);
    for (size_t i = 0; i < a.n; i++)
        assert_int_equal(loom_consumer_ack(ca, a.m[i].held), LOOM_OK);
    tpt_run(&e, NULL, NULL, TPT_QUIET_MS);
    assert_int_equal(est_ll("SELECT sum(committed) FROM loom.topic_lag "
                            "WHERE group_name = 'fn-api'"),
                     0);

    /* B joins (blocking: the rebalance has committed when it returns) and
     * A, not having seen it, commits. */
    tpt_rec_open(&e, "fn-api", "fn.api", NULL, &b);
    assert_int_equal(loom_topics_commit(ca), LOOM_OK);
    parts_wait(&e, ca, 2);
    parts_wait(&e, b.c, 2);
    tpt_sql_wait(&e, 0,
                 "SELECT coalesce(sum(lag), -1) FROM loom.topic_lag "
                 "WHERE group_name = 'fn-api'");
    tpt_run(&e, NULL, NULL, TPT_QUIET_MS);

    /* Refused on the moved partitions; what stayed A's committed after
     * all (the lag is 0) without another loom_topics_commit(). */
    st = tpt_stats_of(ca);
    assert_true(st.fenced > 0);
    /* B got every message of its partitions, whose acknowledgement by A
     * was refused; nothing of A's. */
    for (size_t i = 0; i < b.n; i++)
        b_part[b.m[i].partition] = 1;
    for (size_t i = 0; i < a.n; i++) {
        size_t k = tpt_rec_count(&b, a.m[i].payload);
        if (b_part[a.m[i].partition]) {
            assert_int_equal(k, 1);
            on_b++;
        } else {
            assert_int_equal(k, 0);
        }
    }
    assert_int_equal(b.n, on_b);
    assert_true(on_b > 0 && on_b < 40);
    tpt_close(&e);
    tpt_rec_free(&a);
    tpt_rec_free(&b);
}

/* ---- 6. members without partitions -------------------------------------- */

/* Runs the loop until A and B of one group hold `n` partitions between
 * them, each as many as stats say. */
typedef struct pair_until {
    loom_consumer *a, *b;
    size_t n;
} pair_until;

static int
pair_done(void *arg)
{
    pair_until *w = arg;
    loom_topics_consumer_stats sa, sb;

    return loom_topics_consumer_stats_get(w->a, &sa) == LOOM_OK &&
           loom_topics_consumer_stats_get(w->b, &sb) == LOOM_OK &&
           sa.partitions + sb.partitions == w->n;
}

static void
consumer_without_a_partition_waits_then_takes_over(void **state)
{
    tpt_env e;
    tpt_rec a = {0}, b = {0}, p = {0};
    tpt_rec *owner, *other;
    pair_until w;
    PGconn *locker;
    loom_topics_consumer_config t = tpt_fast_topts();

    (void) state;
    tpt_topic_create("idle.one", 1, -1, -1, -1, -1);
    tpt_open(&e, "");
    /* More members than partitions: one of them joins with none. Their
     * session timeout, 60 s, is what a hand-over that waited for it
     * would take. */
    t.session_timeout_ms = 60000;
    tpt_rec_open(&e, "idle-g", "idle.one", &t, &a);
    tpt_rec_open(&e, "idle-g", "idle.one", &t, &b);
    /* A pattern that matches no topic yet: no partition either. */
    tpt_rec_open(&e, "idle-pat", "idle.later.#", NULL, &p);
    w.a = a.c;
    w.b = b.c;
    w.n = 1;
    assert_true(tpt_run(&e, pair_done, &w, TPT_WAIT_MS));
    tpt_run(&e, NULL, NULL, TPT_QUIET_MS);
    assert_int_equal(
        tpt_stats_of(a.c).partitions + tpt_stats_of(b.c).partitions, 1);
    assert_int_equal(tpt_stats_of(p.c).partitions, 0);
    owner = tpt_stats_of(a.c).partitions == 1 ? &a : &b;
    other = owner == &a ? &b : &a;
    tpt_publish_seq(&e, "idle.one", 0, 5, 0);
    tpt_rec_wait(&e, owner, 5);

    /* The owner closes while its heartbeat waits for the group's lock
     * (held 500 ms by another session): it still leaves at once, and the
     * other member takes over long before the 60 s session timeout:
     * parts_wait() fails the test after TPT_WAIT_MS (20 s), a loaded
     * machine's time for a hand-over. */
    locker = est_connect(NULL);
    assert_int_equal(PQsendQuery(locker, "SELECT 1 FROM loom.topic_groups "
                                         "WHERE name = 'idle-g' FOR UPDATE; "
                                         "SELECT pg_sleep(0.5)"),
                     1);
    tpt_run(&e, NULL, NULL, 3 * TPT_HEARTBEAT_MS);
    loom_consumer_close(owner->c);
    parts_wait(&e, other->c, 1);
    for (PGresult *r; (r = PQgetResult(locker)) != NULL;)
        PQclear(r);
    PQfinish(locker);
    tpt_publish_seq(&e, "idle.one", 5, 5, 0);
    tpt_rec_wait(&e, other, 5);
    tpt_run(&e, NULL, NULL, TPT_QUIET_MS);
    rec_check_once(owner, 0, 5);
    rec_check_once(other, 5, 5);

    /* The pattern's first topic. */
    tpt_topic_create("idle.later.x", 1, -1, -1, -1, -1);
    parts_wait(&e, p.c, 1);
    tpt_publish_seq(&e, "idle.later.x", 0, 3, 0);
    tpt_rec_wait(&e, &p, 3);
    tpt_run(&e, NULL, NULL, TPT_QUIET_MS);
    rec_check_once(&p, 0, 3);
    tpt_close(&e);
    tpt_rec_free(&a);
    tpt_rec_free(&b);
    tpt_rec_free(&p);
}

/* ---- 7. bad input ------------------------------------------------------- */

static void
publish_refuses_bad_messages_and_reports_per_call(void **state)
{
    tpt_env e;
    loom_message m[2], big;
    tpt_pcall good1 = {0, LOOM_OK, 0}, unknown = {0, LOOM_OK, 0},
              good2 = {0, LOOM_OK, 0}, beyond = {0, LOOM_OK, 0},
              never = {0, LOOM_OK, 0};
    tpt_pcall *ps[5] = {&good1, &unknown, &good2, &beyond, NULL};
    loom_header nullhdr[1] = {{"k", NULL}};
    char longname[LOOM_MAX_TOPIC_NAME + 2];
    char *payload;
    static const char *bad_names[] = {"",    ".a", "a.",  "a..b", "a b",
                                      "a/b", "ä",  "a.*", "#"};

    (void) state;
    tpt_topic_create("bad.ok", 2, -1, -1, -1, -1);
    /* Linger: the four calls below go out as one transaction. */
    tpt_open(&e, "?linger_ms=200");

    tpt_msg_init(&m[0], "bad.ok", "x", "first");
    assert_int_equal(
        loom_transport_publish(e.t, m, 1, tpt_pcall_record, &good1), LOOM_OK);
    tpt_msg_init(&m[0], "bad.no-such-topic", "x", "lost");
    assert_int_equal(
        loom_transport_publish(e.t, m, 1, tpt_pcall_record, &unknown), LOOM_OK);
    tpt_msg_init(&m[0], "bad.ok", "x", "second");
    assert_int_equal(
        loom_transport_publish(e.t, m, 1, tpt_pcall_record, &good2), LOOM_OK);
    tpt_msg_init(&m[0], "bad.ok", NULL, "beyond");
    m[0].partition = 2; /* the topic has 0 and 1 */
    assert_int_equal(
        loom_transport_publish(e.t, m, 1, tpt_pcall_record, &beyond), LOOM_OK);
    assert_true(tpt_run(&e, tpt_pcalls_done, ps, TPT_WAIT_MS));
    assert_int_equal(good1.rc, LOOM_OK);
    assert_int_equal(good1.n, 1);
    assert_int_equal(unknown.rc, LOOM_ENOTFOUND);
    assert_int_equal(unknown.n, 0);
    assert_int_equal(good2.rc, LOOM_OK);
    assert_int_equal(beyond.rc, LOOM_EINVAL);
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(ps[i]->done, 1);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.topic_messages "
                            "WHERE topic_id = loom.topic_id('bad.ok')"),
                     2);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.topics "
                            "WHERE name = 'bad.no-such-topic'"),
                     0);

    /* Refused at once; the callback never runs. */
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
        tpt_msg_init(&m[0], bad_names[i], NULL, "x");
        if (loom_transport_publish(e.t, m, 1, tpt_pcall_record, &never) !=
            LOOM_EINVAL)
            fail_msg("topic name \"%s\" was not refused", bad_names[i]);
    }
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0'; /* 250 bytes */
    tpt_msg_init(&m[0], longname, NULL, "x");
    assert_int_equal(
        loom_transport_publish(e.t, m, 1, tpt_pcall_record, &never),
        LOOM_EINVAL);
    tpt_msg_init(&m[0], "bad.ok", NULL, "x");
    m[0].partition = LOOM_MAX_PARTITIONS;
    assert_int_equal(
        loom_transport_publish(e.t, m, 1, tpt_pcall_record, &never),
        LOOM_EINVAL);
    m[0].partition = -2;
    assert_int_equal(
        loom_transport_publish(e.t, m, 1, tpt_pcall_record, &never),
        LOOM_EINVAL);
    /* One bad message refuses the whole call. */
    tpt_msg_init(&m[0], "bad.ok", NULL, "x");
    tpt_msg_init(&m[1], "bad..ok", NULL, "x");
    assert_int_equal(
        loom_transport_publish(e.t, m, 2, tpt_pcall_record, &never),
        LOOM_EINVAL);
    tpt_msg_init(&m[0], NULL, NULL, "x");
    assert_int_equal(
        loom_transport_publish(e.t, m, 1, tpt_pcall_record, &never),
        LOOM_EINVAL);
    tpt_msg_init(&m[0], "bad.ok", NULL, "x");
    m[0].payload = NULL;
    assert_int_equal(
        loom_transport_publish(e.t, m, 1, tpt_pcall_record, &never),
        LOOM_EINVAL);
    tpt_msg_init(&m[0], "bad.ok", NULL, "x");
    m[0].key_len = 3; /* key NULL */
    assert_int_equal(
        loom_transport_publish(e.t, m, 1, tpt_pcall_record, &never),
        LOOM_EINVAL);
    tpt_msg_init(&m[0], "bad.ok", NULL, "x");
    m[0].n_headers = 1; /* headers NULL */
    assert_int_equal(
        loom_transport_publish(e.t, m, 1, tpt_pcall_record, &never),
        LOOM_EINVAL);
    m[0].headers = nullhdr;
    assert_int_equal(
        loom_transport_publish(e.t, m, 1, tpt_pcall_record, &never),
        LOOM_EINVAL);
    assert_int_equal(
        loom_transport_publish(NULL, m, 1, tpt_pcall_record, &never),
        LOOM_EINVAL);
    assert_int_equal(
        loom_transport_publish(e.t, NULL, 1, tpt_pcall_record, &never),
        LOOM_EINVAL);
    assert_int_equal(
        loom_transport_publish(e.t, m, 0, tpt_pcall_record, &never),
        LOOM_EINVAL);

    /* Too big: the payload alone, or key and payload together. */
    payload = calloc(1, LOOM_MAX_MESSAGE_BYTES + 1);
    assert_non_null(payload);
    tpt_msg_init(&big, "bad.ok", NULL, "x");
    big.payload = payload;
    big.payload_len = LOOM_MAX_MESSAGE_BYTES + 1;
    assert_int_equal(
        loom_transport_publish(e.t, &big, 1, tpt_pcall_record, &never),
        LOOM_ETOOBIG);
    big.payload_len = LOOM_MAX_MESSAGE_BYTES / 2 + 1;
    big.key = payload;
    big.key_len = LOOM_MAX_MESSAGE_BYTES / 2;
    assert_int_equal(
        loom_transport_publish(e.t, &big, 1, tpt_pcall_record, &never),
        LOOM_ETOOBIG);
    free(payload);

    tpt_run(&e, NULL, NULL, TPT_QUIET_MS);
    assert_int_equal(never.done, 0);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.topic_messages "
                            "WHERE topic_id = loom.topic_id('bad.ok')"),
                     2);
    tpt_close(&e);
}

/* A transactional handler to offer beside a plain one, which
 * loom_topics_consumer_open() must refuse: never called. */
static loom_err
never_called_tx(loom_tx *tx, const loom_message *const *msgs, size_t n,
                void *arg)
{
    (void) tx;
    (void) msgs;
    (void) n;
    (void) arg;
    return LOOM_OK;
}

static void
consumer_open_refuses_bad_arguments(void **state)
{
    tpt_env e;
    tpt_rec r = {0};
    loom_consumer_config cfg = LOOM_CONSUMER_CONFIG_INIT;
    loom_topics_consumer_config t = tpt_fast_topts(), bad;
    const char *topics[1] = {"bad.c"};
    static const char *bad_patterns[] = {"a..b", "a.*x", "a.**", "*a", ".a",
                                         "a.",   "a b",  "a.#.", "a/b"};
    char longname[LOOM_MAX_GROUP_NAME + 2];
    loom_transport *inproc = NULL;
    loom_consumer *c = NULL, *ic = NULL;
    loom_consumer *const sentinel = (loom_consumer *) (void *) &e;
    loom_topics_consumer_stats st;

    (void) state;
    tpt_topic_create("bad.c", 1, -1, -1, -1, -1);
    tpt_open(&e, "");
    cfg.group = "bad-c";
    cfg.topics = topics;
    cfg.n_topics = 1;

    for (size_t i = 0; i < sizeof bad_patterns / sizeof bad_patterns[0]; i++) {
        const char *p[2] = {"bad.c", bad_patterns[i]};
        loom_consumer_config k = cfg;
        k.topics = p;
        k.n_topics = 2;
        c = sentinel;
        if (loom_topics_consumer_open(e.t, &k, &t, tpt_rec_handle, NULL, &r,
                                      &c) != LOOM_EINVAL)
            fail_msg("pattern \"%s\" was not refused", bad_patterns[i]);
        assert_null(c);
        if (loom_consumer_open(e.t, &k, tpt_rec_handle, &r, &c) != LOOM_EINVAL)
            fail_msg("pattern \"%s\" was not refused by "
                     "loom_consumer_open",
                     bad_patterns[i]);
    }
    /* NULL and missing arguments. */
    c = sentinel;
    assert_int_equal(
        loom_topics_consumer_open(NULL, &cfg, &t, tpt_rec_handle, NULL, &r, &c),
        LOOM_EINVAL);
    assert_null(c);
    assert_int_equal(
        loom_topics_consumer_open(e.t, NULL, &t, tpt_rec_handle, NULL, &r, &c),
        LOOM_EINVAL);
    assert_int_equal(loom_topics_consumer_open(e.t, &cfg, &t, tpt_rec_handle,
                                               NULL, &r, NULL),
                     LOOM_EINVAL);
    assert_int_equal(
        loom_topics_consumer_open(e.t, &cfg, &t, NULL, NULL, &r, &c),
        LOOM_EINVAL);
    assert_int_equal(loom_topics_consumer_open(e.t, &cfg, &t, tpt_rec_handle,
                                               never_called_tx, &r, &c),
                     LOOM_EINVAL);
    {
        loom_consumer_config k = cfg;
        k.group = NULL;
        assert_int_equal(loom_topics_consumer_open(e.t, &k, &t, tpt_rec_handle,
                                                   NULL, &r, &c),
                         LOOM_EINVAL);
        k.group = "";
        assert_int_equal(loom_topics_consumer_open(e.t, &k, &t, tpt_rec_handle,
                                                   NULL, &r, &c),
                         LOOM_EINVAL);
        memset(longname, 'g', sizeof longname - 1);
        longname[sizeof longname - 1] = '\0';
        k.group = longname;
        assert_int_equal(loom_topics_consumer_open(e.t, &k, &t, tpt_rec_handle,
                                                   NULL, &r, &c),
                         LOOM_EINVAL);
        k.group = "\xff\xfe";
        assert_int_equal(loom_topics_consumer_open(e.t, &k, &t, tpt_rec_handle,
                                                   NULL, &r, &c),
                         LOOM_EINVAL);
        k = cfg;
        k.n_topics = 0;
        assert_int_equal(loom_topics_consumer_open(e.t, &k, &t, tpt_rec_handle,
                                                   NULL, &r, &c),
                         LOOM_EINVAL);
        k.n_topics = 1;
        k.topics = NULL;
        assert_int_equal(loom_topics_consumer_open(e.t, &k, &t, tpt_rec_handle,
                                                   NULL, &r, &c),
                         LOOM_EINVAL);
        k = cfg;
        k.max_deliveries = 1001;
        assert_int_equal(loom_topics_consumer_open(e.t, &k, &t, tpt_rec_handle,
                                                   NULL, &r, &c),
                         LOOM_EINVAL);
    }
    /* Bad topics options. */
    bad = t;
    bad.assignor = "sticky";
    assert_int_equal(loom_topics_consumer_open(e.t, &cfg, &bad, tpt_rec_handle,
                                               NULL, &r, &c),
                     LOOM_EINVAL);
    bad = t;
    bad.session_timeout_ms = 99;
    assert_int_equal(loom_topics_consumer_open(e.t, &cfg, &bad, tpt_rec_handle,
                                               NULL, &r, &c),
                     LOOM_EINVAL);
    bad = t;
    bad.start.start = (loom_start) 9;
    assert_int_equal(loom_topics_consumer_open(e.t, &cfg, &bad, tpt_rec_handle,
                                               NULL, &r, &c),
                     LOOM_EINVAL);
    assert_null(c);
    /* Nothing joined the group. */
    assert_int_equal(est_ll("SELECT count(*) FROM loom.topic_members "
                            "WHERE group_name = 'bad-c'"),
                     0);

    /* Not a topics transport, not a topics consumer. */
    assert_int_equal(loomt_inproc_register(), LOOM_OK);
    assert_int_equal(
        loom_transport_open(e.rt, "inproc://bad", &inproc, NULL, 0), LOOM_OK);
    c = sentinel;
    assert_int_equal(loom_topics_consumer_open(inproc, &cfg, &t, tpt_rec_handle,
                                               NULL, &r, &c),
                     LOOM_EINVAL);
    assert_null(c);
    assert_int_equal(loom_topics_set_partitioner(inproc, NULL, NULL),
                     LOOM_EINVAL);
    assert_int_equal(loom_consumer_open(inproc, &cfg, tpt_rec_handle, &r, &ic),
                     LOOM_OK);
    assert_int_equal(loom_topics_commit(ic), LOOM_EINVAL);
    assert_int_equal(loom_topics_consumer_stats_get(ic, &st), LOOM_EINVAL);
    loom_transport_close(inproc);
    assert_int_equal(loom_topics_commit(NULL), LOOM_EINVAL);
    assert_int_equal(loom_topics_consumer_stats_get(NULL, &st), LOOM_EINVAL);
    assert_int_equal(loom_topics_set_partitioner(NULL, NULL, NULL),
                     LOOM_EINVAL);

    /* A good one still opens, and its stats need somewhere to go. */
    tpt_rec_open(&e, "bad-c", "bad.c", NULL, &r);
    assert_int_equal(loom_topics_consumer_stats_get(r.c, NULL), LOOM_EINVAL);
    assert_int_equal(loom_consumer_ack(NULL, NULL), LOOM_EINVAL);
    assert_int_equal(loom_consumer_ack(r.c, NULL), LOOM_EINVAL);
    assert_int_equal(loom_consumer_fail(r.c, NULL, "x"), LOOM_EINVAL);
    tpt_close(&e);
    tpt_rec_free(&r);
}

/* ---- 8. Kafka's partitions for keys ------------------------------------- */

/* Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2), written
 * here from its description: seed 0x9747b28c ^ length, four little-endian
 * bytes at a time mixed with m = 0x5bd1e995 and r = 24, the 1-3 byte tail
 * xored in (bytes unsigned), then h ^= h >>> 13; h *= m; h ^= h >>> 15. All
 * arithmetic is 32-bit wrap-around, as Java's int. */
static int32_t
kafka_murmur2(const unsigned char *d, size_t len)
{
    const uint32_t m = 0x5bd1e995u;
    uint32_t h = 0x9747b28cu ^ (uint32_t) len;
    size_t body = len & ~(size_t) 3, tail = len & 3;

    for (size_t i = 0; i < body; i += 4) {
        uint32_t k = (uint32_t) d[i] | (uint32_t) d[i + 1] << 8 |
                     (uint32_t) d[i + 2] << 16 | (uint32_t) d[i + 3] << 24;
        k *= m;
        k ^= k >> 24;
        k *= m;
        h *= m;
        h ^= k;
    }
    if (tail == 3)
        h ^= (uint32_t) d[body + 2] << 16;
    if (tail >= 2)
        h ^= (uint32_t) d[body + 1] << 8;
    if (tail >= 1) {
        h ^= (uint32_t) d[body];
        h *= m;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return (int32_t) h;
}

typedef struct kkey {
    const char *bytes;
    size_t len;
} kkey;

static void
keyed_messages_land_in_kafkas_partitions(void **state)
{
    /* Kafka's own reference values (UtilsTest.testMurmur2) check the
     * hash above before it judges anything. */
    static const struct {
        const char *key;
        int32_t hash;
    } ref[] = {{"21", -973932308},
               {"foobar", -790332482},
               {"a-little-bit-long-string", -985981536},
               {"a-little-bit-longer-string", -1486304829},
               {"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
               {"abc", 479470107},
               {"", 275646681}};
#define K(s)                                                                   \
    {                                                                          \
        s, sizeof s - 1                                                        \
    }
    static const kkey keys[] = {
        K(""),
        K("a"),
        K("ab"),
        K("abc"),
        K("abcd"),
        K("abcde"),
        K("21"),
        K("foobar"),
        K("order-42"),
        K("customer:1001"),
        K("a-little-bit-long-string"),
        K("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
        K("\xc5\xbc\xc3\xb3\xc5\x82w"), /* "żółw" */
        K("\xff"),                      /* high bytes in the tail */
        K("\x80\x81"),
        K("\xde\xad\xbe\xef\xfe"),
        K("\xff\xff\xff\xff\xff\xff\xff"),
        K("\x00"), /* a zero byte */
        K("a\x00"
          "b"),
        K("\x7f\x80\xfe\xff"), /* high bytes in the body */
    };
#undef K
    enum { NK = sizeof keys / sizeof keys[0] };
    tpt_env e;
    loom_message msgs[NK];
    char pay[NK][8];
    long long tid;

    (void) state;
    for (size_t i = 0; i < sizeof ref / sizeof ref[0]; i++)
        assert_int_equal(kafka_murmur2((const unsigned char *) ref[i].key,
                                       strlen(ref[i].key)),
                         ref[i].hash);
    tpt_topic_create("mm.t", 12, -1, -1, -1, -1);
    tpt_open(&e, "");
    for (size_t i = 0; i < NK; i++) {
        snprintf(pay[i], sizeof pay[i], "%zu", i);
        tpt_msg_init(&msgs[i], "mm.t", NULL, pay[i]);
        msgs[i].key = keys[i].bytes;
        msgs[i].key_len = keys[i].len;
    }
    assert_int_equal(tpt_publish_wait(&e, msgs, NK), LOOM_OK);
    tid = tpt_topic_id("mm.t");
    for (size_t i = 0; i < NK; i++) {
        int32_t h =
            kafka_murmur2((const unsigned char *) keys[i].bytes, keys[i].len);
        long long want = (long long) (((uint32_t) h & 0x7fffffffu) % 12u);
        long long got = est_ll("SELECT partition FROM loom.topic_messages "
                               "WHERE topic_id = %lld "
                               "AND payload = convert_to('%zu', 'UTF8')",
                               tid, i);
        if (got != want)
            fail_msg("key %zu (%zu bytes): partition %lld, Kafka's is %lld", i,
                     keys[i].len, got, want);
        /* The key is stored as given. */
        assert_int_equal(est_ll("SELECT octet_length(key) FROM "
                                "loom.topic_messages WHERE topic_id = %lld "
                                "AND payload = convert_to('%zu', 'UTF8')",
                                tid, i),
                         (long long) keys[i].len);
    }
    tpt_close(&e);
}

/* ---- the URL's session timeout ---------------------------------------- */

/* "topics://?session_timeout_ms=N" sets the session of consumers opened
 * through the transport (the generic loom_consumer_open(), as saga
 * participants use), so an operator can make a killed process's
 * partitions move sooner; out-of-range values are refused by name. */
static void
url_session_timeout_applies_to_consumers_opened_through_the_transport(
    void **state)
{
    tpt_env e;
    tpt_rec r = {0};
    loom_consumer_config cfg = LOOM_CONSUMER_CONFIG_INIT;
    const char *topics[1] = {"st.t"};
    loom_transport *bad = NULL;
    char err[256] = "";

    (void) state;
    tpt_topic_create("st.t", 1, -1, -1, -1, -1);
    tpt_open(&e, "?session_timeout_ms=1500");
    cfg.group = "st-g";
    cfg.topics = topics;
    cfg.n_topics = 1;
    assert_int_equal(loom_consumer_open(e.t, &cfg, tpt_rec_handle, &r, &r.c),
                     LOOM_OK);
    tpt_sql_wait(&e, 1500,
                 "SELECT session_timeout_ms FROM loom.topic_members "
                 "WHERE group_name = 'st-g'");
    tpt_publish_seq(&e, "st.t", 0, 2, 0);
    tpt_rec_wait(&e, &r, 2);

    assert_int_equal(loom_transport_open(e.rt,
                                         "topics://?session_timeout_ms=50",
                                         &bad, err, sizeof err),
                     LOOM_EINVAL);
    assert_null(bad);
    assert_non_null(strstr(err, "session_timeout_ms"));
    tpt_close(&e);
    tpt_rec_free(&r);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, est_setup, est_teardown)
        T(pattern_subscriptions_match_words_and_pick_up_new_topics),
        T(independent_groups_each_receive_every_message),
        T(committed_offsets_survive_a_restart_of_the_group),
        T(acknowledged_messages_are_not_redelivered_after_close),
        T(manual_commit_writes_offsets_only_when_asked),
        T(new_groups_start_where_their_start_position_says),
        T(stale_generation_cannot_commit_in_sql),
        T(commit_many_is_all_or_nothing_and_names_the_lost_partition),
        T(member_that_lost_a_partition_cannot_commit_and_the_new_owner_redelivers),
        T(consumer_without_a_partition_waits_then_takes_over),
        T(publish_refuses_bad_messages_and_reports_per_call),
        T(consumer_open_refuses_bad_arguments),
        T(keyed_messages_land_in_kafkas_partitions),
        T(url_session_timeout_applies_to_consumers_opened_through_the_transport),
#undef T
    };
    tpt_debug_from_env();
    return cmocka_run_group_tests_name("outbox.topics_consumer", tests,
                                       est_group_setup, est_group_teardown);
}
