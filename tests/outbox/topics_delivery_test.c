/*
 * What happens to a message on the topic streams, against a real
 * PostgreSQL, one test per promise of loom/topics.h: a failed message is
 * redelivered with growing backoff, then dead-lettered into "<topic>.dlq"
 * with headers saying why; a rejected message is dead-lettered so on its
 * first delivery and its partition goes on; a redelivery counts each time
 * it is handed out, so one whose consumers die holding it (SIGKILLed
 * children) is dead-lettered unhandled; a topic with no room for a
 * ".dlq" redelivers instead of blocking its member; a dead letter can be
 * re-driven; a delayed
 * message waits while later ones in its partition flow; a repeated
 * message id is stored and delivered once within the deduplication window
 * and each time without one; at-most-once drops failures but still
 * delivers delayed messages; undecodable stored headers cost a message its
 * headers only; a transactional handler's effects apply exactly once; and
 * retention removes old messages by size and by age.
 *
 * The tests of this executable share one database (its own, made by
 * est_group_setup()): each creates its own topics and groups under names
 * no other test uses. Loop callbacks only record; the checks run after
 * tpt_run().
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
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "tptest.h"

/* ---- helpers ------------------------------------------------------------ */

/* The k-th delivery of `payload` (fails the test when there is none). */
static const tpt_rmsg *
rec_nth(const tpt_rec *r, const char *payload, size_t k)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->m[i].payload, payload) == 0 && k-- == 0)
            return &r->m[i];
    fail_msg("delivery %zu of \"%s\" is missing", k, payload);
    return NULL;
}

/* ---- 1. redelivery with backoff, then the dead-letter topic ------------- */

static void
failed_message_is_redelivered_with_backoff_then_dead_lettered(void **state)
{
    tpt_env e;
    tpt_rec r = {0}, dlq = {0};
    loom_message msgs[3];
    loom_header hdr[1] = {{"trace", "t-1"}};
    loom_uuid poison_id;
    const tpt_rmsg *p[4], *d;
    char want[160];
    long long tid, dlq_tid;
    loom_topics_consumer_stats st;

    (void) state;
    tpt_topic_create("dl.orders", 2, -1, -1, -1, 4);
    tpt_open(&e, "");
    r.fail_payload = "poison";
    r.fail_until = 1000; /* always */
    r.fail_error = "card declined";
    tpt_rec_open(&e, "dl-g", "dl.orders", NULL, &r);
    /* One key: one partition, the poison between two good ones. */
    tpt_msg_init(&msgs[0], "dl.orders", "cust-7", "ok-1");
    tpt_msg_init(&msgs[1], "dl.orders", "cust-7", "poison");
    tpt_msg_init(&msgs[2], "dl.orders", "cust-7", "ok-2");
    msgs[1].headers = hdr;
    msgs[1].n_headers = 1;
    assert_int_equal(loom_uuid_generate(&poison_id), LOOM_OK);
    msgs[1].id = poison_id;
    assert_int_equal(tpt_publish_wait(&e, msgs, 3), LOOM_OK);

    tpt_rec_wait(&e, &r, 6); /* 2 good ones, 4 deliveries of the poison */
    tpt_sql_wait(&e, 1,
                 "SELECT count(*) FROM loom.topic_dead_letters "
                 "WHERE group_name = 'dl-g'");
    tpt_sql_wait(&e, 0,
                 "SELECT coalesce(sum(lag), -1) FROM loom.topic_lag "
                 "WHERE group_name = 'dl-g'");
    tpt_run(&e, NULL, NULL, TPT_QUIET_MS);

    /* The good ones once each, not held up by the poison before them. */
    assert_int_equal(tpt_rec_count(&r, "ok-1"), 1);
    assert_int_equal(tpt_rec_count(&r, "ok-2"), 1);
    assert_int_equal(rec_nth(&r, "ok-2", 0)->attempt, 1);
    assert_int_equal(tpt_rec_count(&r, "poison"), 4);
    for (size_t i = 0; i < 4; i++) {
        p[i] = rec_nth(&r, "poison", i);
        assert_int_equal(p[i]->attempt, i + 1);
        assert_int_equal(p[i]->offset, p[0]->offset);
        assert_string_equal(p[i]->headers, "trace=t-1;");
    }
    assert_true(rec_nth(&r, "ok-2", 0)->at_ms <= p[1]->at_ms);
    /* Exponential backoff: 50, 100, 200 ms at least. Lower bounds only
     * (a late redelivery, on a loaded machine, stretches a gap but never
     * shortens one): the third gap must be four times the base, which a
     * backoff stuck at the base would not wait. */
    for (size_t i = 1; i < 4; i++) {
        int64_t gap = p[i]->at_ms - p[i - 1]->at_ms;
        int64_t min = (int64_t) TPT_BACKOFF_MS << (i - 1);
        if (gap < min - 2)
            fail_msg("redelivery %zu came after %lld ms, backoff is %lld", i,
                     (long long) gap, (long long) min);
    }
    st = tpt_stats_of(r.c);
    assert_int_equal(st.dead, 1);
    assert_int_equal(st.redelivered, 3);

    /* The record of the dead letter. */
    tid = tpt_topic_id("dl.orders");
    dlq_tid = tpt_topic_id("dl.orders.dlq");
    assert_true(dlq_tid > 0);
    assert_int_equal(est_ll("SELECT partitions FROM loom.topics "
                            "WHERE id = %lld",
                            dlq_tid),
                     2);
    assert_int_equal(
        est_ll("SELECT count(*) FROM loom.topic_dead_letters "
               "WHERE group_name = 'dl-g' AND topic_id = %lld "
               "AND partition = %d AND \"offset\" = %lld AND deliveries = 4 "
               "AND error = 'card declined' AND redriven_at IS NULL "
               "AND dlq_topic_id = %lld AND dlq_partition = %d",
               tid, (int) p[0]->partition, (long long) p[0]->offset, dlq_tid,
               (int) p[0]->partition),
        1);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.topic_retries "
                            "WHERE group_name = 'dl-g'"),
                     0);

    /* The copy in "<topic>.dlq", read by a consumer of its own. */
    tpt_rec_open(&e, "dl-reader", "dl.orders.dlq", NULL, &dlq);
    tpt_rec_wait(&e, &dlq, 1);
    tpt_run(&e, NULL, NULL, TPT_QUIET_MS);
    assert_int_equal(dlq.n, 1);
    d = &dlq.m[0];
    assert_string_equal(d->topic, "dl.orders.dlq");
    assert_string_equal(d->payload, "poison");
    assert_string_equal(d->key, "cust-7");
    assert_memory_equal(d->id.bytes, poison_id.bytes, 16);
    assert_int_equal(d->partition, p[0]->partition);
    assert_int_equal(d->attempt, 1);
    snprintf(want, sizeof want,
             "trace=t-1;x-error=card declined;x-group=dl-g;x-deliveries=4;"
             "x-topic=dl.orders;x-partition=%d;x-offset=%lld;",
             (int) p[0]->partition, (long long) p[0]->offset);
    assert_string_equal(d->headers, want);

    tpt_close(&e);
    tpt_rec_free(&r);
    tpt_rec_free(&dlq);
}

static void
a_rejected_message_is_dead_lettered_on_its_first_delivery(void **state)
{
    tpt_env e;
    tpt_rec r = {0}, dlq = {0};
    loom_message msgs[3];
    const tpt_rmsg *p, *ok2;
    char want[200];
    loom_topics_consumer_stats st;

    (void) state;
    /* max_deliveries 5 (the default): a failure would come back 4 times. */
    tpt_topic_create("rj.orders", 2, -1, -1, -1, -1);
    tpt_open(&e, "");
    r.fail_payload = "poison";
    r.fail_until = 1000;
    r.reject = 1;
    r.fail_error = "does not decode";
    tpt_rec_open(&e, "rj-g", "rj.orders", NULL, &r);
    tpt_msg_init(&msgs[0], "rj.orders", "cust-9", "ok-1");
    tpt_msg_init(&msgs[1], "rj.orders", "cust-9", "poison");
    tpt_msg_init(&msgs[2], "rj.orders", "cust-9", "ok-2");
    assert_int_equal(tpt_publish_wait(&e, msgs, 3), LOOM_OK);

    tpt_rec_wait(&e, &r, 3);
    tpt_sql_wait(&e, 1,
                 "SELECT count(*) FROM loom.topic_dead_letters "
                 "WHERE group_name = 'rj-g'");
    tpt_sql_wait(&e, 0,
                 "SELECT coalesce(sum(lag), -1) FROM loom.topic_lag "
                 "WHERE group_name = 'rj-g'");
    /* Longer than the first backoffs: a redelivery would show. */
    tpt_run(&e, NULL, NULL, TPT_QUIET_MS + 4 * TPT_BACKOFF_MS);

    assert_int_equal(tpt_rec_count(&r, "poison"), 1);
    assert_int_equal(tpt_rec_count(&r, "ok-1"), 1);
    assert_int_equal(tpt_rec_count(&r, "ok-2"), 1);
    p = rec_nth(&r, "poison", 0);
    ok2 = rec_nth(&r, "ok-2", 0);
    assert_int_equal(p->attempt, 1);
    assert_int_equal(ok2->attempt, 1);
    assert_int_equal(ok2->partition, p->partition);
    assert_true(ok2->offset > p->offset);
    st = tpt_stats_of(r.c);
    assert_int_equal(st.dead, 1);
    assert_int_equal(st.redelivered, 0);
    assert_int_equal(
        est_ll("SELECT count(*) FROM loom.topic_dead_letters "
               "WHERE group_name = 'rj-g' AND topic_id = %lld "
               "AND partition = %d AND \"offset\" = %lld AND deliveries = 1 "
               "AND error = 'does not decode'",
               tpt_topic_id("rj.orders"), (int) p->partition,
               (long long) p->offset),
        1);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.topic_retries "
                            "WHERE group_name = 'rj-g'"),
                     0);

    /* The copy in "<topic>.dlq" carries a dead letter's headers. */
    tpt_rec_open(&e, "rj-reader", "rj.orders.dlq", NULL, &dlq);
    tpt_rec_wait(&e, &dlq, 1);
    assert_string_equal(dlq.m[0].payload, "poison");
    snprintf(want, sizeof want,
             "x-error=does not decode;x-group=rj-g;x-deliveries=1;"
             "x-topic=rj.orders;x-partition=%d;x-offset=%lld;",
             (int) p->partition, (long long) p->offset);
    assert_string_equal(dlq.m[0].headers, want);

    tpt_close(&e);
    tpt_rec_free(&r);
    tpt_rec_free(&dlq);
}

/* A member that dies holding a redelivery never settles it: the
 * database sees only its fetch. Two such members, as SQL, then a live
 * one: the third hand-out is past max deliveries 3, so the live member
 * dead-letters it unseen, where it used to get it as attempt 2, again
 * and again. */
static void
a_redelivery_taken_and_never_settled_counts_then_dead_letters(void **state)
{
    tpt_env e;
    tpt_rec r = {0}, r2 = {0}, dlq = {0};
    long long tid;
    char want[240];
    int64_t off;

    (void) state;
    tpt_topic_create("us.jobs", 1, -1, -1, -1, 3);
    tid = tpt_topic_id("us.jobs");
    tpt_open(&e, "");
    r.fail_payload = "poison";
    r.fail_until = 2; /* the first delivery fails */
    tpt_rec_open(&e, "us-g", "us.jobs", NULL, &r);
    {
        loom_message m;
        tpt_msg_init(&m, "us.jobs", NULL, "poison");
        assert_int_equal(tpt_publish_wait(&e, &m, 1), LOOM_OK);
    }
    tpt_rec_wait(&e, &r, 1);
    tpt_sql_wait(&e, 1,
                 "SELECT count(*) FROM loom.topic_retries "
                 "WHERE group_name = 'us-g' AND deliveries = 1");
    off = r.m[0].offset;
    loom_consumer_close(r.c);
    r.c = NULL;

    /* Two members take it and vanish: each fetch counts. */
    for (long long want_n = 2; want_n <= 3; want_n++) {
        tpt_sqlf("UPDATE loom.topic_retries SET visible_at = now() "
                 "WHERE group_name = 'us-g'");
        assert_int_equal(est_ll("SELECT deliveries FROM "
                                "loom.topic_take_retries('us-g', "
                                "ARRAY[%lld]::int4[], ARRAY[0], 10, 60000)",
                                tid),
                         want_n);
    }
    tpt_sqlf("UPDATE loom.topic_retries SET visible_at = now() "
             "WHERE group_name = 'us-g'");

    tpt_rec_open(&e, "us-g", "us.jobs", NULL, &r2);
    tpt_sql_wait(&e, 1,
                 "SELECT count(*) FROM loom.topic_dead_letters "
                 "WHERE group_name = 'us-g'");
    tpt_run(&e, NULL, NULL, TPT_QUIET_MS);
    assert_int_equal(r2.n, 0);
    assert_int_equal(tpt_stats_of(r2.c).dead, 1);
    assert_int_equal(
        est_ll("SELECT count(*) FROM loom.topic_dead_letters "
               "WHERE group_name = 'us-g' AND \"offset\" = %lld "
               "AND deliveries = 3 AND error LIKE 'delivered 3 times "
               "without being settled%%'",
               (long long) off),
        1);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.topic_retries "
                            "WHERE group_name = 'us-g'"),
                     0);
    tpt_rec_open(&e, "us-reader", "us.jobs.dlq", NULL, &dlq);
    tpt_rec_wait(&e, &dlq, 1);
    snprintf(want, sizeof want,
             "x-error=delivered 3 times without being settled: the "
             "consumer stopped or outlived the visibility timeout each "
             "time;x-group=us-g;x-deliveries=3;x-topic=us.jobs;"
             "x-partition=0;x-offset=%lld;",
             (long long) off);
    assert_string_equal(dlq.m[0].headers, want);

    tpt_close(&e);
    tpt_rec_free(&r);
    tpt_rec_free(&r2);
    tpt_rec_free(&dlq);
}

/* The same with real deaths: a member process takes the redelivery and
 * holds it (as a handler that crashes would) until it is SIGKILLed, twice.
 * The next member finds it delivered max deliveries times and unsettled:
 * dead letter, handler never called. */
static void
kd_hold(loom_consumer *c, const loom_message *const *msgs, size_t n, void *arg)
{
    (void) c;
    (void) msgs;
    (void) n;
    (void) arg;
}

static void
kd_child(void)
{
    loom_runtime *rt;
    loom_transport *t;
    loom_consumer *c;
    const char *topics[] = {"kd.jobs"};
    loom_consumer_config cfg = LOOM_CONSUMER_CONFIG_INIT;
    loom_topics_consumer_config topts = tpt_fast_topts();
    char err[256];

    cfg.group = "kd-g";
    cfg.topics = topics;
    cfg.n_topics = 1;
    topts.visibility_ms = 300;
    topts.session_timeout_ms = 500;
    topts.heartbeat_ms = 100;
    if (loom_runtime_open(&rt, NULL) != LOOM_OK ||
        loom_transport_open(rt, "topics://", &t, err, sizeof err) != LOOM_OK ||
        loom_topics_consumer_open(t, &cfg, &topts, kd_hold, NULL, NULL, &c) !=
            LOOM_OK)
        _exit(3);
    loom_runtime_run(rt); /* until killed */
    _exit(0);
}

static void
a_redelivery_whose_consumers_are_killed_holding_it_is_dead_lettered(
    void **state)
{
    tpt_env e;
    tpt_rec r = {0}, r2 = {0};
    int status = 0;

    (void) state;
    tpt_topic_create("kd.jobs", 1, -1, -1, -1, 3);
    tpt_open(&e, "");
    r.fail_payload = "poison";
    r.fail_until = 2; /* the first delivery fails: a redelivery */
    tpt_rec_open(&e, "kd-g", "kd.jobs", NULL, &r);
    {
        loom_message m;
        tpt_msg_init(&m, "kd.jobs", NULL, "poison");
        assert_int_equal(tpt_publish_wait(&e, &m, 1), LOOM_OK);
    }
    tpt_sql_wait(&e, 1,
                 "SELECT count(*) FROM loom.topic_retries "
                 "WHERE group_name = 'kd-g' AND deliveries = 1");
    tpt_sql_wait(&e, 0,
                 "SELECT coalesce(sum(lag), -1) FROM loom.topic_lag "
                 "WHERE group_name = 'kd-g'");
    loom_consumer_close(r.c);
    r.c = NULL;

    for (int k = 2; k <= 3; k++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
            kd_child();
        tpt_sql_wait(&e, 1,
                     "SELECT count(*) FROM loom.topic_retries "
                     "WHERE group_name = 'kd-g' AND taken AND deliveries = %d",
                     k);
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        assert_true(WIFSIGNALED(status));
    }

    tpt_rec_open(&e, "kd-g", "kd.jobs", NULL, &r2);
    tpt_sql_wait(&e, 1,
                 "SELECT count(*) FROM loom.topic_dead_letters "
                 "WHERE group_name = 'kd-g' AND deliveries = 3 AND error LIKE "
                 "'delivered 3 times without being settled%%'");
    tpt_run(&e, NULL, NULL, TPT_QUIET_MS);
    assert_int_equal(r2.n, 0);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.topic_retries "
                            "WHERE group_name = 'kd-g'"),
                     0);
    tpt_close(&e);
    tpt_rec_free(&r);
    tpt_rec_free(&r2);
}

/* A topic whose name leaves no room for ".dlq" (a dead-letter topic of a
 * 245-byte name) has no dead-letter topic. Its failed message comes back
 * after the longest backoff instead, and the messages behind it flow:
 * the dead letter used to fail every commit of the member, forever. */
static void
a_topic_too_long_for_a_dead_letter_topic_redelivers_and_flows(void **state)
{
    tpt_env e;
    tpt_rec r = {0};
    loom_topics_consumer_config t = tpt_fast_topts();
    char name[LOOM_MAX_TOPIC_NAME + 1];
    loom_message msgs[3];

    (void) state;
    memset(name, 'e', sizeof name);
    memcpy(name + LOOM_MAX_TOPIC_NAME - 4, ".dlq", 5);
    tpt_topic_create(name, 1, -1, -1, -1, 1);
    tpt_open(&e, "");
    r.fail_payload = "poison";
    r.fail_until = 3; /* fails twice, then succeeds */
    t.backoff_max_ms = 100;
    tpt_rec_open(&e, "tl-g", name, &t, &r);
    tpt_msg_init(&msgs[0], name, NULL, "poison");
    tpt_msg_init(&msgs[1], name, NULL, "ok-1");
    tpt_msg_init(&msgs[2], name, NULL, "ok-2");
    assert_int_equal(tpt_publish_wait(&e, msgs, 3), LOOM_OK);

    tpt_rec_wait(&e, &r, 5);
    tpt_sql_wait(&e, 0,
                 "SELECT coalesce(sum(lag), -1) FROM loom.topic_lag "
                 "WHERE group_name = 'tl-g'");
    tpt_sql_wait(&e, 0,
                 "SELECT count(*) FROM loom.topic_retries "
                 "WHERE group_name = 'tl-g'");
    tpt_run(&e, NULL, NULL, TPT_QUIET_MS);
    assert_int_equal(tpt_rec_count(&r, "ok-1"), 1);
    assert_int_equal(tpt_rec_count(&r, "ok-2"), 1);
    assert_int_equal(tpt_rec_count(&r, "poison"), 3);
    assert_int_equal(rec_nth(&r, "poison", 2)->attempt, 3);
    assert_int_equal(tpt_stats_of(r.c).dead, 0);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.topic_dead_letters"),
                     est_ll("SELECT count(*) FROM loom.topic_dead_letters "
                            "WHERE group_name <> 'tl-g'"));
    tpt_close(&e);
    tpt_rec_free(&r);
}

/* ---- 2. re-drive -------------------------------------------------------- */

static void
redriven_dead_letter_is_delivered_again_counting_from_one(void **state)
{
    tpt_env e;
    tpt_rec r = {0};
    size_t mark;

    (void) state;
    tpt_topic_create("rd.jobs", 1, -1, -1, -1, 2);
    tpt_open(&e, "");
    r.fail_payload = "poison";
    r.fail_until = 1000;
    tpt_rec_open(&e, "rd-g", "rd.jobs", NULL, &r);
    tpt_publish_seq(&e, "rd.jobs", 0, 1, 0);
    {
        loom_message m;
        tpt_msg_init(&m, "rd.jobs", NULL, "poison");
        assert_int_equal(tpt_publish_wait(&e, &m, 1), LOOM_OK);
    }
    tpt_rec_wait(&e, &r, 3);
    tpt_sql_wait(&e, 1,
                 "SELECT count(*) FROM loom.topic_dead_letters "
                 "WHERE group_name = 'rd-g'");
    assert_int_equal(tpt_rec_count(&r, "poison"), 2);

    /* From now on the poison fails once more, then succeeds. */
    mark = r.n;
    r.fail_until = 2;
    assert_int_equal(est_ll("SELECT loom.topic_redrive('rd.jobs', 'rd-g', "
                            "NULL, NULL)"),
                     1);
    tpt_rec_wait(&e, &r, mark + 2);
    tpt_sql_wait(&e, 0,
                 "SELECT count(*) FROM loom.topic_retries "
                 "WHERE group_name = 'rd-g'");
    tpt_run(&e, NULL, NULL, TPT_QUIET_MS);
    assert_int_equal(r.n, mark + 2);
    assert_string_equal(r.m[mark].payload, "poison");
    assert_int_equal(r.m[mark].attempt, 1);
    assert_string_equal(r.m[mark + 1].payload, "poison");
    assert_int_equal(r.m[mark + 1].attempt, 2);
    /* Re-driven once: not dead again, and not re-driven twice. */
    assert_int_equal(est_ll("SELECT count(*) FROM loom.topic_dead_letters "
                            "WHERE group_name = 'rd-g' "
                            "AND redriven_at IS NOT NULL"),
                     1);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.topic_dead_letters "
                            "WHERE group_name = 'rd-g'"),
                     1);
    assert_int_equal(est_ll("SELECT loom.topic_redrive('rd.jobs', NULL, "
                            "NULL, NULL)"),
                     0);
    assert_int_equal(tpt_rec_count(&r, "0"), 1);
    tpt_close(&e);
    tpt_rec_free(&r);
}

/* ---- 3. delays ---------------------------------------------------------- */

/* The delay of the first message: the two after it must flow before it
 * is due, so it leaves room for their publish (a durable commit, which a
 * loaded machine can stall) and a poll or two. */
#define DLY_MS 4000

static void
delayed_message_waits_while_later_ones_in_its_partition_flow(void **state)
{
    tpt_env e;
    tpt_rec r = {0};
    loom_message msgs[3];
    int64_t t0, at;
    const tpt_rmsg *late;

    (void) state;
    tpt_topic_create("dly.q", 1, -1, -1, -1, -1);
    tpt_open(&e, "");
    tpt_rec_open(&e, "dly-g", "dly.q", NULL, &r);
    tpt_msg_init(&msgs[0], "dly.q", "same", "late");
    tpt_msg_init(&msgs[1], "dly.q", "same", "a");
    tpt_msg_init(&msgs[2], "dly.q", "same", "b");
    t0 = est_now_ms();
    at = tpt_realtime_us() + (int64_t) DLY_MS * 1000;
    msgs[0].deliver_at = at;
    assert_int_equal(tpt_publish_wait(&e, msgs, 3), LOOM_OK);

    tpt_rec_wait(&e, &r, 2);
    assert_int_equal(tpt_rec_count(&r, "late"), 0);
    assert_int_equal(tpt_rec_count(&r, "a"), 1);
    assert_int_equal(tpt_rec_count(&r, "b"), 1);
    /* Both before the first was due. */
    assert_true(rec_nth(&r, "b", 0)->at_ms - t0 < DLY_MS);
    /* Their offset commits past the delayed one, which waits. */
    tpt_sql_wait(&e, 3,
                 "SELECT committed FROM loom.topic_lag "
                 "WHERE group_name = 'dly-g'");

    tpt_rec_wait(&e, &r, 3);
    tpt_run(&e, NULL, NULL, TPT_QUIET_MS);
    assert_int_equal(r.n, 3);
    late = rec_nth(&r, "late", 0);
    assert_int_equal(late->attempt, 1);
    assert_int_equal(late->offset, 0);
    assert_int_equal(late->deliver_at, at);
    if (late->at_us < at)
        fail_msg("delivered %lld µs before its time",
                 (long long) (at - late->at_us));
    assert_true(late->at_ms - t0 >= DLY_MS - 2);
    assert_true(late->at_ms - t0 < DLY_MS + 10000);
    tpt_sql_wait(&e, 0,
                 "SELECT count(*) FROM loom.topic_retries "
                 "WHERE group_name = 'dly-g'");
    tpt_close(&e);
    tpt_rec_free(&r);
}

/* ---- 4. at most once ---------------------------------------------------- */

/* At most once: offsets commit before the handler sees a batch, so a
 * failed message is dropped, not redelivered; a delayed message (alone
 * in its fetch) still arrives once, when due. */
static void
at_most_once_drops_failures_and_still_delivers_delayed_messages(void **state)
{
    tpt_env e;
    tpt_rec r = {0};
    loom_topics_consumer_config t = tpt_fast_topts();
    loom_message m;
    int64_t at;

    (void) state;
    tpt_topic_create("amo.q", 1, -1, -1, -1, -1);
    tpt_open(&e, "");
    t.at_most_once = 1;
    r.fail_payload = "x";
    r.fail_until = 1000;
    tpt_rec_open(&e, "amo-g", "amo.q", &t, &r);
    tpt_msg_init(&m, "amo.q", NULL, "later");
    at = tpt_realtime_us() + 500000;
    m.deliver_at = at;
    assert_int_equal(tpt_publish_wait(&e, &m, 1), LOOM_OK);
    tpt_rec_wait(&e, &r, 1);
    assert_string_equal(r.m[0].payload, "later");
    assert_true(r.m[0].at_us >= at);
    assert_int_equal(r.m[0].attempt, 1);

    tpt_publish_seq(&e, "amo.q", 0, 2, 0);
    tpt_msg_init(&m, "amo.q", NULL, "x");
    assert_int_equal(tpt_publish_wait(&e, &m, 1), LOOM_OK);
    tpt_publish_seq(&e, "amo.q", 2, 2, 0);
    tpt_rec_wait(&e, &r, 6);
    tpt_sql_wait(&e, 6,
                 "SELECT committed FROM loom.topic_lag "
                 "WHERE group_name = 'amo-g'");
    tpt_run(&e, NULL, NULL, 4 * TPT_POLL_MS + TPT_QUIET_MS);
    assert_int_equal(r.n, 6);
    assert_int_equal(tpt_rec_count(&r, "x"), 1);
    assert_int_equal(tpt_rec_count(&r, "later"), 1);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.topic_retries "
                            "WHERE group_name = 'amo-g'"),
                     0);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.topic_dead_letters "
                            "WHERE group_name = 'amo-g'"),
                     0);
    tpt_close(&e);
    tpt_rec_free(&r);
}

/* ---- 5. undecodable headers --------------------------------------------- */

/* Stored headers that are not a header list (written by another tool,
 * say) cost the message its headers, never its body, its delay or its
 * redelivery. */
static void
undecodable_headers_are_dropped_but_the_message_is_not(void **state)
{
    tpt_env e;
    tpt_rec r = {0};
    long long at;
    const tpt_rmsg *late;

    (void) state;
    tpt_topic_create("hd.bad", 1, -1, -1, -1, -1);
    tpt_open(&e, "");
    r.fail_payload = "body";
    r.fail_until = 2;
    tpt_rec_open(&e, "hd-g", "hd.bad", NULL, &r);
    at = est_ll("SELECT (extract(epoch FROM clock_timestamp() + "
                "interval '500 ms') * 1000000)::bigint");
    /* 0x63 = field 12, wire type 3: not what headers.c writes. */
    tpt_sqlf("SELECT count(*) FROM loom.topic_publish('hd.bad', NULL, NULL, 0, "
             "ARRAY[gen_random_uuid(), gen_random_uuid()], NULL, "
             "ARRAY['\\x63757374'::bytea, '\\x63757374'::bytea], "
             "ARRAY[convert_to('body', 'UTF8'), convert_to('body-late', "
             "'UTF8')], ARRAY[NULL, to_timestamp(%lld / 1e6)])",
             at);
    tpt_rec_wait(&e, &r, 3);
    tpt_run(&e, NULL, NULL, TPT_QUIET_MS);
    assert_int_equal(r.n, 3);
    assert_int_equal(tpt_rec_count(&r, "body"), 2);
    assert_int_equal(rec_nth(&r, "body", 0)->attempt, 1);
    assert_int_equal(rec_nth(&r, "body", 1)->attempt, 2);
    assert_string_equal(rec_nth(&r, "body", 1)->headers, "");
    late = rec_nth(&r, "body-late", 0);
    assert_string_equal(late->headers, "");
    assert_int_equal(late->attempt, 1);
    assert_true(late->at_us >= at);
    tpt_close(&e);
    tpt_rec_free(&r);
}

/* ---- 6. deduplication --------------------------------------------------- */

/* Publishes the same id as two calls queued together (one transaction)
 * and as two calls one after the other, and as two messages of one
 * call. */
static void
publish_twice_each_way(tpt_env *e, const char *topic, const char *ids[3])
{
    loom_message m[2];
    tpt_pcall a = {0, LOOM_OK, 0}, b = {0, LOOM_OK, 0};
    tpt_pcall filler = {0, LOOM_OK, 0};
    tpt_pcall *ps[4] = {&filler, &a, &b, NULL};
    loom_uuid id;

    /* After one another. */
    assert_int_equal(loom_uuid_parse(&id, ids[0]), LOOM_OK);
    tpt_msg_init(&m[0], topic, "k", "seq-1");
    m[0].id = id;
    assert_int_equal(tpt_publish_wait(e, m, 1), LOOM_OK);
    assert_int_equal(tpt_publish_wait(e, m, 1), LOOM_OK);
    /* Two calls queued while another is in flight: they go out together,
     * in one transaction. */
    tpt_msg_init(&m[0], topic, "k", "filler");
    assert_int_equal(
        loom_transport_publish(e->t, m, 1, tpt_pcall_record, &filler), LOOM_OK);
    assert_int_equal(loom_uuid_parse(&id, ids[1]), LOOM_OK);
    tpt_msg_init(&m[0], topic, "k", "queued");
    m[0].id = id;
    assert_int_equal(loom_transport_publish(e->t, m, 1, tpt_pcall_record, &a),
                     LOOM_OK);
    assert_int_equal(loom_transport_publish(e->t, m, 1, tpt_pcall_record, &b),
                     LOOM_OK);
    assert_true(tpt_run(e, tpt_pcalls_done, ps, TPT_WAIT_MS));
    assert_int_equal(filler.rc, LOOM_OK);
    assert_int_equal(a.rc, LOOM_OK);
    assert_int_equal(b.rc, LOOM_OK);
    /* Twice in one call. */
    assert_int_equal(loom_uuid_parse(&id, ids[2]), LOOM_OK);
    tpt_msg_init(&m[0], topic, "k", "one-call");
    tpt_msg_init(&m[1], topic, "k", "one-call");
    m[0].id = m[1].id = id;
    assert_int_equal(tpt_publish_wait(e, m, 2), LOOM_OK);
}

static void
duplicate_message_id_within_window_is_stored_and_delivered_once(void **state)
{
    static const char *ids[3] = {"0190a1b2-0000-7000-8000-000000000001",
                                 "0190a1b2-0000-7000-8000-000000000002",
                                 "0190a1b2-0000-7000-8000-000000000003"};
    tpt_env e;
    tpt_rec r = {0};
    long long tid;

    (void) state;
    tpt_topic_create("dd.win", 2, -1, -1, -1, -1); /* window 300 s */
    tpt_open(&e, "");
    tpt_rec_open(&e, "dd-win-g", "dd.win", NULL, &r);
    publish_twice_each_way(&e, "dd.win", ids);
    tid = tpt_topic_id("dd.win");
    for (int i = 0; i < 3; i++)
        assert_int_equal(est_ll("SELECT count(*) FROM loom.topic_messages "
                                "WHERE topic_id = %lld AND id = '%s'",
                                tid, ids[i]),
                         1);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.topic_messages "
                            "WHERE topic_id = %lld",
                            tid),
                     4);
    tpt_rec_wait(&e, &r, 4);
    tpt_run(&e, NULL, NULL, TPT_QUIET_MS);
    assert_int_equal(r.n, 4);
    assert_int_equal(tpt_rec_count(&r, "filler"), 1);
    assert_int_equal(tpt_rec_count(&r, "seq-1"), 1);
    assert_int_equal(tpt_rec_count(&r, "queued"), 1);
    assert_int_equal(tpt_rec_count(&r, "one-call"), 1);
    tpt_close(&e);
    tpt_rec_free(&r);
}

static void
without_dedup_window_the_same_id_is_stored_each_time(void **state)
{
    static const char *ids[3] = {"0190a1b2-0000-7000-8000-000000000011",
                                 "0190a1b2-0000-7000-8000-000000000012",
                                 "0190a1b2-0000-7000-8000-000000000013"};
    tpt_env e;
    tpt_rec r = {0};
    long long tid;

    (void) state;
    tpt_topic_create("dd.off", 2, -1, -1, 0, -1);
    tpt_open(&e, "");
    tpt_rec_open(&e, "dd-off-g", "dd.off", NULL, &r);
    publish_twice_each_way(&e, "dd.off", ids);
    tid = tpt_topic_id("dd.off");
    for (int i = 0; i < 3; i++)
        if (est_ll("SELECT count(*) FROM loom.topic_messages "
                   "WHERE topic_id = %lld AND id = '%s'",
                   tid, ids[i]) != 2)
            fail_msg("id %s (%s) stored %lld times, expected 2", ids[i],
                     i == 0   ? "two calls in turn"
                     : i == 1 ? "two calls queued together"
                              : "twice in one call",
                     est_ll("SELECT count(*) FROM loom.topic_messages "
                            "WHERE topic_id = %lld AND id = '%s'",
                            tid, ids[i]));
    /* Offsets stay dense. */
    assert_int_equal(est_ll("SELECT count(*) FROM loom.topic_messages m "
                            "JOIN loom.topic_partitions tp USING (topic_id, "
                            "partition) WHERE topic_id = %lld "
                            "AND m.\"offset\" >= tp.next_offset",
                            tid),
                     0);
    tpt_rec_wait(&e, &r, 7);
    tpt_run(&e, NULL, NULL, TPT_QUIET_MS);
    assert_int_equal(r.n, 7);
    assert_int_equal(tpt_rec_count(&r, "filler"), 1);
    assert_int_equal(tpt_rec_count(&r, "seq-1"), 2);
    assert_int_equal(tpt_rec_count(&r, "queued"), 2);
    assert_int_equal(tpt_rec_count(&r, "one-call"), 2);
    tpt_close(&e);
    tpt_rec_free(&r);
}

/* ---- 7. exactly-once effects -------------------------------------------- */

typedef struct eo {
    const char *table;
    const char *poison;
    int fail_by_error; /* return an error (else the INSERT fails) */
    int reject;        /* the error is LOOM_EDECODE: never retried */
    size_t calls;
    size_t poison_in_batch; /* deliveries of the poison with others */
    uint32_t alone[16];     /* attempts of the poison delivered alone */
    size_t n_alone;
    loom_err queue_rc;
} eo;

static loom_err
eo_handle(loom_tx *tx, const loom_message *const *msgs, size_t n, void *arg)
{
    eo *s = arg;
    char sql[128];
    int poison = 0;

    snprintf(sql, sizeof sql, "INSERT INTO %s (id) VALUES ($1)", s->table);
    s->calls++;
    for (size_t i = 0; i < n; i++) {
        char id[48];
        const char *v[1] = {id};
        loom_err rc;

        snprintf(id, sizeof id, "%.*s",
                 (int) (msgs[i]->payload_len < sizeof id ? msgs[i]->payload_len
                                                         : sizeof id - 1),
                 (const char *) msgs[i]->payload);
        rc = loom_tx_exec(tx, sql, 1, v);
        if (rc != LOOM_OK && s->queue_rc == LOOM_OK)
            s->queue_rc = rc;
        if (strcmp(id, s->poison) != 0)
            continue;
        poison = 1;
        if (n > 1)
            s->poison_in_batch++;
        else if (s->n_alone < 16)
            s->alone[s->n_alone++] = msgs[i]->attempt;
    }
    if (poison && s->fail_by_error)
        return s->reject ? LOOM_EDECODE : LOOM_EHANDLER;
    return LOOM_OK;
}

static void
exactly_once_run(eo *s, const char *topic, const char *group)
{
    tpt_env e;
    loom_consumer_config cfg = LOOM_CONSUMER_CONFIG_INIT;
    loom_topics_consumer_config t = tpt_fast_topts();
    const char *topics[1] = {topic};
    loom_consumer *c = NULL;
    loom_message msgs[31];
    char pay[31][16];

    tpt_topic_create(topic, 2, -1, -1, -1, 3);
    tpt_open(&e, "");
    cfg.group = group;
    cfg.topics = topics;
    cfg.n_topics = 1;
    cfg.batch = 8;
    assert_int_equal(
        loom_topics_consumer_open(e.t, &cfg, &t, NULL, eo_handle, s, &c),
        LOOM_OK);
    /* All on one key: one partition, batches of 8, the poison in the
     * middle of one. */
    for (int i = 0; i < 31; i++) {
        snprintf(pay[i], sizeof pay[i], "m%d", i);
        tpt_msg_init(&msgs[i], topic, "one-key", i == 12 ? s->poison : pay[i]);
    }
    assert_int_equal(tpt_publish_wait(&e, msgs, 31), LOOM_OK);
    tpt_sql_wait(&e, 1,
                 "SELECT count(*) FROM loom.topic_dead_letters "
                 "WHERE group_name = '%s'",
                 group);
    tpt_sql_wait(&e, 0,
                 "SELECT coalesce(sum(lag), -1) FROM loom.topic_lag "
                 "WHERE group_name = '%s'",
                 group);
    tpt_sql_wait(&e, 0,
                 "SELECT count(*) FROM loom.topic_retries "
                 "WHERE group_name = '%s'",
                 group);
    tpt_run(&e, NULL, NULL, TPT_QUIET_MS);
    tpt_close(&e);

    assert_int_equal(s->queue_rc, LOOM_OK);
    /* Each good message's effect once; none of the poison's. */
    assert_int_equal(est_ll("SELECT count(*) FROM %s", s->table), 30);
    assert_int_equal(est_ll("SELECT count(DISTINCT id) FROM %s", s->table), 30);
    assert_int_equal(
        est_ll("SELECT count(*) FROM %s WHERE id = '%s'", s->table, s->poison),
        0);
    /* The poison failed in its batch, then alone: attempt 1 isolated,
     * then its two redeliveries, then the dead-letter topic; rejected,
     * straight there from attempt 1. */
    assert_true(s->poison_in_batch >= 1);
    assert_int_equal(s->n_alone, s->reject ? 1 : 3);
    for (size_t i = 0; i < s->n_alone; i++)
        assert_int_equal(s->alone[i], i + 1);
    assert_int_equal(est_ll("SELECT deliveries FROM loom.topic_dead_letters "
                            "WHERE group_name = '%s'",
                            group),
                     s->reject ? 1 : 3);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.topic_messages "
                            "WHERE topic_id = loom.topic_id('%s.dlq') "
                            "AND payload = convert_to('%s', 'UTF8')",
                            topic, s->poison),
                     1);
}

static void
tx_handler_effects_apply_once_when_a_statement_fails(void **state)
{
    eo s;

    (void) state;
    memset(&s, 0, sizeof s);
    s.table = "eo_stmt";
    s.poison = "poison";
    loomt_sql_exec("CREATE TABLE eo_stmt (id text NOT NULL "
                   "CHECK (id <> 'poison'))");
    exactly_once_run(&s, "eo.stmt", "eo-stmt-g");
}

static void
tx_handler_effects_apply_once_when_the_handler_fails(void **state)
{
    eo s;

    (void) state;
    memset(&s, 0, sizeof s);
    s.table = "eo_err";
    s.poison = "bad";
    s.fail_by_error = 1;
    loomt_sql_exec("CREATE TABLE eo_err (id text NOT NULL)");
    exactly_once_run(&s, "eo.err", "eo-err-g");
}

static void
tx_handler_returning_edecode_dead_letters_the_message_on_its_first_delivery(
    void **state)
{
    eo s;

    (void) state;
    memset(&s, 0, sizeof s);
    s.table = "eo_rej";
    s.poison = "undecodable";
    s.fail_by_error = 1;
    s.reject = 1;
    loomt_sql_exec("CREATE TABLE eo_rej (id text NOT NULL)");
    exactly_once_run(&s, "eo.rej", "eo-rej-g");
}

/* ---- 8. retention ------------------------------------------------------- */

static long long
retention_to_completion(void)
{
    long long total = 0, n;

    while ((n = est_ll("SELECT loom.topic_retention_step(10000)")) > 0)
        total += n;
    return total;
}

/* Payloads "m000000000".. of exactly 10 bytes, no key: 10 bytes each. */
static void
publish_ten_byte(tpt_env *e, const char *topic, int first, int n)
{
    for (int i = first; i < first + n; i++) {
        loom_message m;
        char p[16];
        snprintf(p, sizeof p, "m%09d", i);
        tpt_msg_init(&m, topic, NULL, p);
        assert_int_equal(tpt_publish_wait(e, &m, 1), LOOM_OK);
    }
}

static void
retention_by_size_removes_oldest_and_lagging_group_restarts_at_start(
    void **state)
{
    tpt_env e;
    tpt_rec first = {0}, later = {0};
    long long tid;

    (void) state;
    tpt_topic_create("rt.size", 1, -1, 100, -1, -1); /* 100 bytes */
    tpt_open(&e, "?retention_ms=0");
    tid = tpt_topic_id("rt.size");
    publish_ten_byte(&e, "rt.size", 0, 3);
    tpt_rec_open(&e, "rt-g", "rt.size", NULL, &first);
    tpt_rec_wait(&e, &first, 3);
    tpt_sql_wait(
        &e, 3,
        "SELECT committed FROM loom.topic_lag WHERE group_name = 'rt-g'");
    loom_consumer_close(first.c);

    publish_ten_byte(&e, "rt.size", 3, 17); /* 200 bytes in all */
    assert_true(retention_to_completion() >= 10);
    /* The newest 100 bytes stay: offsets 10..19. */
    assert_int_equal(est_ll("SELECT start_offset FROM loom.topic_partitions "
                            "WHERE topic_id = %lld",
                            tid),
                     10);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.topic_messages "
                            "WHERE topic_id = %lld",
                            tid),
                     10);
    assert_int_equal(est_ll("SELECT min(\"offset\") FROM loom.topic_messages "
                            "WHERE topic_id = %lld",
                            tid),
                     10);
    assert_int_equal(est_ll("SELECT lag FROM loom.topic_lag "
                            "WHERE group_name = 'rt-g'"),
                     10);

    /* The group committed 3, now below the start: it goes on at 10. */
    tpt_rec_open(&e, "rt-g", "rt.size", NULL, &later);
    tpt_rec_wait(&e, &later, 10);
    tpt_run(&e, NULL, NULL, TPT_QUIET_MS);
    assert_int_equal(later.n, 10);
    for (size_t i = 0; i < later.n; i++) {
        char p[16];
        snprintf(p, sizeof p, "m%09zu", i + 10);
        assert_string_equal(later.m[i].payload, p);
        assert_int_equal(later.m[i].offset, (int64_t) (i + 10));
    }
    tpt_sql_wait(
        &e, 20,
        "SELECT committed FROM loom.topic_lag WHERE group_name = 'rt-g'");
    tpt_close(&e);
    tpt_rec_free(&first);
    tpt_rec_free(&later);
}

static void
retention_by_age_runs_on_the_transports_timer(void **state)
{
    tpt_env e;
    long long tid;

    (void) state;
    tpt_topic_create("rt.age", 2, 300, -1, -1, -1);
    tpt_open(&e, "?retention_ms=100");
    tid = tpt_topic_id("rt.age");
    tpt_publish_seq(&e, "rt.age", 0, 20, 4);
    /* Nothing older than 300 ms is kept; the transport's own timer
     * removes them. */
    tpt_sql_wait(
        &e, 0, "SELECT count(*) FROM loom.topic_messages WHERE topic_id = %lld",
        tid);
    assert_int_equal(est_ll("SELECT sum(start_offset) FROM "
                            "loom.topic_partitions WHERE topic_id = %lld",
                            tid),
                     20);
    tpt_close(&e);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, est_setup, est_teardown)
        T(failed_message_is_redelivered_with_backoff_then_dead_lettered),
        T(a_rejected_message_is_dead_lettered_on_its_first_delivery),
        T(a_redelivery_taken_and_never_settled_counts_then_dead_letters),
        T(a_redelivery_whose_consumers_are_killed_holding_it_is_dead_lettered),
        T(a_topic_too_long_for_a_dead_letter_topic_redelivers_and_flows),
        T(redriven_dead_letter_is_delivered_again_counting_from_one),
        T(delayed_message_waits_while_later_ones_in_its_partition_flow),
        T(at_most_once_drops_failures_and_still_delivers_delayed_messages),
        T(undecodable_headers_are_dropped_but_the_message_is_not),
        T(duplicate_message_id_within_window_is_stored_and_delivered_once),
        T(without_dedup_window_the_same_id_is_stored_each_time),
        T(tx_handler_effects_apply_once_when_a_statement_fails),
        T(tx_handler_effects_apply_once_when_the_handler_fails),
        T(tx_handler_returning_edecode_dead_letters_the_message_on_its_first_delivery),
        T(retention_by_size_removes_oldest_and_lagging_group_restarts_at_start),
        T(retention_by_age_runs_on_the_transports_timer),
#undef T
    };
    tpt_debug_from_env();
    return cmocka_run_group_tests_name("outbox.topics_delivery", tests,
                                       est_group_setup, est_group_teardown);
}
