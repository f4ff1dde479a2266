/*
 * A consumer that catches up arms its topic's wake-up, reads once more,
 * then sleeps until a publisher wakes it. A publish that looked for an
 * armed consumer just before the arm committed, and committed just after
 * that last read, used to wake nobody: its message waited for the poll
 * (a second by default), the tail of every end-to-end latency. Now every
 * publish transaction holds its topic's wake lock shared until it
 * commits, and the arm takes it exclusive, so each side waits for the
 * other. These tests hold one side open by hand, with every poll set to
 * a minute, and prove the other side waits and then delivers at once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "tptest.h"

#define WK_POLL_MS 60000 /* a miss would wait this long */
#define WK_WAIT_MS 5000  /* what a woken consumer may take */

/* The lock class the transport uses (topics_int.h, LOOM__TP_WAKE_LOCK). */
#define WK_LOCK "1819242351"

typedef struct wk_state {
    size_t delivered;
    int acked;
    loom_err rc;
} wk_state;

static void
wk_consume(loom_consumer *c, const loom_message *const *msgs, size_t n,
           void *arg)
{
    wk_state *s = arg;

    for (size_t i = 0; i < n; i++) {
        s->delivered++;
        loom_consumer_ack(c, msgs[i]);
    }
}

static int
wk_delivered(void *arg)
{
    return ((wk_state *) arg)->delivered > 0;
}

static int
wk_never(void *arg)
{
    (void) arg;
    return 0;
}

static void
wk_published(loom_err rc, size_t n, void *arg)
{
    wk_state *s = arg;

    (void) n;
    s->rc = rc;
    s->acked = 1;
}

static int
wk_acked(void *arg)
{
    return ((wk_state *) arg)->acked;
}

/* A publish still in flight (it has looked for an armed consumer and
 * found none) when a consumer catches up and arms: the arm waits for its
 * commit, so the consumer's last read finds the message at once. */
static void
a_consumer_arming_waits_for_a_publish_in_flight(void **state)
{
    tpt_env e;
    wk_state s;
    const char *topics[] = {"wake"};
    loom_consumer_config cfg = LOOM_CONSUMER_CONFIG_INIT;
    loom_topics_consumer_config topts = LOOM_TOPICS_CONSUMER_INIT;
    loom_consumer *c;
    PGconn *pub;

    (void) state;
    memset(&s, 0, sizeof s);
    tpt_topic_create("wake", 1, -1, -1, -1, -1);
    tpt_open_polling(&e, "", WK_POLL_MS);
    /* What the transport's publish transaction does, held open: the wake
     * lock shared, then loom.topic_publish(), which finds nobody armed. */
    pub = est_connect(loomt_dsn());
    est_exec(pub, "BEGIN");
    est_exec(pub, "SELECT pg_advisory_xact_lock_shared(" WK_LOCK ", id) FROM "
                  "loom.topics WHERE name = 'wake'");
    est_exec(pub, "SELECT * FROM loom.topic_publish('wake', NULL, NULL, 0, "
                  "ARRAY[gen_random_uuid()], NULL, NULL, ARRAY['x'::bytea], "
                  "NULL)");
    cfg.group = "sleepers";
    cfg.topics = topics;
    cfg.n_topics = 1;
    topts.poll_ms = WK_POLL_MS;
    assert_int_equal(
        loom_topics_consumer_open(e.t, &cfg, &topts, wk_consume, NULL, &s, &c),
        LOOM_OK);
    /* The consumer reads nothing, arms, and waits in the arm (counted in
     * this test's database only: other tests share the server). */
    tpt_run(&e, wk_never, NULL, 700);
    assert_int_equal(s.delivered, 0);
    assert_int_equal(
        est_ll("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
               "AND classid = " WK_LOCK " AND mode = 'ExclusiveLock' AND NOT "
               "granted AND database = (SELECT oid FROM pg_database WHERE "
               "datname = current_database())"),
        1);
    est_exec(pub, "COMMIT");
    if (!tpt_run(&e, wk_delivered, &s, WK_WAIT_MS))
        fail_msg("the message committed while the consumer armed was not "
                 "delivered within %d ms (the poll is %d ms)",
                 WK_WAIT_MS, WK_POLL_MS);
    PQfinish(pub);
    loom_consumer_close(c);
    tpt_close(&e);
}

/* A consumer arming (its transaction holds the wake lock exclusive): a
 * publish queues behind it, and then finds the channel armed. */
static void
a_publish_waits_for_a_consumer_arming(void **state)
{
    tpt_env e;
    wk_state s;
    loom_message m;
    PGconn *arm;

    (void) state;
    memset(&s, 0, sizeof s);
    tpt_topic_create("armed", 1, -1, -1, -1, -1);
    tpt_open_polling(&e, "", WK_POLL_MS);
    arm = est_connect(loomt_dsn());
    est_exec(arm, "BEGIN");
    est_exec(arm, "SELECT pg_advisory_xact_lock(" WK_LOCK ", id) FROM "
                  "loom.topics WHERE name = 'armed'");
    memset(&m, 0, sizeof m);
    m.topic = "armed";
    m.partition = LOOM_PARTITION_ANY;
    m.payload = "y";
    m.payload_len = 1;
    assert_int_equal(loom_transport_publish(e.t, &m, 1, wk_published, &s),
                     LOOM_OK);
    tpt_run(&e, wk_never, NULL, 700);
    assert_int_equal(s.acked, 0); /* waiting for the arm's commit */
    est_exec(arm, "COMMIT");
    assert_true(tpt_run(&e, wk_acked, &s, WK_WAIT_MS));
    assert_int_equal(s.rc, LOOM_OK);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.topic_messages m JOIN "
                            "loom.topics t ON t.id = m.topic_id WHERE t.name "
                            "= 'armed'"),
                     1);
    PQfinish(arm);
    tpt_close(&e);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            a_consumer_arming_waits_for_a_publish_in_flight, est_setup,
            est_teardown),
        cmocka_unit_test_setup_teardown(a_publish_waits_for_a_consumer_arming,
                                        est_setup, est_teardown),
    };
    return cmocka_run_group_tests(tests, est_group_setup, est_group_teardown);
}
