/*
 * Topic streams ride out a restart of the PostgreSQL server: a producer
 * publishing steadily and a transactional consumer group lose their
 * connections mid-stream, reconnect without blocking the loop, and in the
 * end every message is stored once (a resent transaction is deduplicated
 * by its message ids) and applied once (effects commit with the offsets).
 *
 * Restarting the server needs LOOM_TEST_PG_RESTART (set by `make test`,
 * which owns the cluster); without it the test says so and skips. It is
 * RUN_SERIAL in CTest: the restart breaks every other test's connections.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "tptest.h"

#define RS_MESSAGES 2000

typedef struct rs_state {
    tpt_env *e;
    uv_timer_t pub;
    int published; /* calls made */
    int acked;     /* callbacks with LOOM_OK */
    int failed;    /* callbacks with an error */
    loom_err last_rc;
    atomic_int restart_done;
    int restart_status;
    const char *cmd;
    int64_t last_check;
    long long applied;
    PGconn *probe;
} rs_state;

static void
rs_published(loom_err rc, size_t n, void *arg)
{
    rs_state *s = arg;

    (void) n;
    if (rc == LOOM_OK) {
        s->acked++;
    } else {
        s->failed++;
        s->last_rc = rc;
    }
}

/* One message every tick, RS_MESSAGES in all. */
static void
rs_on_pub(uv_timer_t *t)
{
    rs_state *s = t->data;
    char payload[32];
    loom_message m;

    for (int i = 0; i < 4 && s->published < RS_MESSAGES; i++) {
        memset(&m, 0, sizeof m);
        snprintf(payload, sizeof payload, "%d", s->published);
        m.topic = "survive";
        m.partition = LOOM_PARTITION_ANY;
        m.key = payload;
        m.key_len = strlen(payload);
        m.payload = payload;
        m.payload_len = strlen(payload);
        if (loom_transport_publish(s->e->t, &m, 1, rs_published, s) !=
            LOOM_OK) {
            s->failed++;
            return;
        }
        s->published++;
    }
    if (s->published == RS_MESSAGES)
        uv_timer_stop(t);
}

static void *
rs_restart_main(void *arg)
{
    rs_state *s = arg;

    s->restart_status = system(s->cmd);
    atomic_store(&s->restart_done, 1);
    return NULL;
}

static loom_err
rs_apply(loom_tx *tx, const loom_message *const *msgs, size_t n, void *arg)
{
    (void) arg;
    for (size_t i = 0; i < n; i++) {
        char part[16], off[24];
        loom_err rc;
        snprintf(part, sizeof part, "%d", (int) msgs[i]->partition);
        snprintf(off, sizeof off, "%lld", (long long) msgs[i]->offset);
        rc = loom_tx_exec(tx,
                          "INSERT INTO rs_applied (part, off) VALUES "
                          "($1::int, $2::bigint)",
                          2, (const char *const[]){part, off});
        if (rc != LOOM_OK)
            return rc;
    }
    return LOOM_OK;
}

static int
rs_finished(void *arg)
{
    rs_state *s = arg;
    int64_t now = est_now_ms();

    if (now - s->last_check >= 100) {
        s->last_check = now;
        s->applied =
            est_try_ll_on(&s->probe, "SELECT count(*) FROM rs_applied");
    }
    return atomic_load(&s->restart_done) &&
           s->acked + s->failed == RS_MESSAGES && s->applied >= RS_MESSAGES;
}

static void
publisher_and_consumers_ride_out_a_server_restart(void **state)
{
    rs_state s;
    tpt_env e;
    pthread_t th;
    const char *topics[] = {"survive"};
    loom_consumer_config cfg = LOOM_CONSUMER_CONFIG_INIT;
    loom_topics_consumer_config topts = LOOM_TOPICS_CONSUMER_INIT;
    loom_consumer *c;
    long long started;

    (void) state;
    memset(&s, 0, sizeof s);
    s.cmd = getenv("LOOM_TEST_PG_RESTART");
    if (s.cmd == NULL || s.cmd[0] == '\0') {
        printf("topics_restart_test: LOOM_TEST_PG_RESTART is not set (the "
               "server is not the tests' to restart): skipped; `make test` "
               "runs it on its own cluster\n");
        skip();
    }
    loomt_sql_exec("SELECT loom.topic_create('survive', 4, NULL, NULL, "
                   "NULL, NULL); CREATE TABLE rs_applied (part int, off "
                   "bigint)");
    started = est_ll("SELECT extract(epoch FROM pg_postmaster_start_time())");
    tpt_open(&e, "?batch=100");
    s.e = &e;
    cfg.group = "survivors";
    cfg.topics = topics;
    cfg.n_topics = 1;
    cfg.batch = 50;
    topts.poll_ms = 100;
    topts.session_timeout_ms = 30000; /* the restart must not expel it */
    assert_int_equal(
        loom_topics_consumer_open(e.t, &cfg, &topts, NULL, rs_apply, NULL, &c),
        LOOM_OK);
    uv_timer_init(loom_runtime_loop(e.rt), &s.pub);
    s.pub.data = &s;
    uv_timer_start(&s.pub, rs_on_pub, 2, 2);
    /* Restart once a third is published, while everything is busy. */
    while (s.published < RS_MESSAGES / 3)
        uv_run(loom_runtime_loop(e.rt), UV_RUN_ONCE);
    assert_int_equal(pthread_create(&th, NULL, rs_restart_main, &s), 0);
    if (!tpt_run(&e, rs_finished, &s, 120000))
        fail_msg("after the restart: %d of %d published (%d acknowledged, "
                 "%d failed: %s), %lld applied",
                 s.published, RS_MESSAGES, s.acked, s.failed,
                 loom_strerror(s.last_rc), s.applied);
    pthread_join(th, NULL);
    assert_int_equal(s.restart_status, 0);
    assert_true(est_ll("SELECT extract(epoch FROM "
                       "pg_postmaster_start_time())") > started);
    assert_int_equal(s.failed, 0);
    /* Stored once each, applied once each. */
    assert_int_equal(est_ll("SELECT count(*) FROM loom.topic_messages m JOIN "
                            "loom.topics t ON t.id = m.topic_id WHERE t.name "
                            "= 'survive'"),
                     RS_MESSAGES);
    assert_int_equal(est_ll("SELECT count(DISTINCT m.payload) FROM "
                            "loom.topic_messages m JOIN loom.topics t ON "
                            "t.id = m.topic_id WHERE t.name = 'survive'"),
                     RS_MESSAGES);
    assert_int_equal(est_ll("SELECT count(*) FROM rs_applied"), RS_MESSAGES);
    assert_int_equal(est_ll("SELECT count(*) FROM (SELECT DISTINCT part, off "
                            "FROM rs_applied) d"),
                     RS_MESSAGES);
    uv_close((uv_handle_t *) &s.pub, NULL);
    PQfinish(s.probe);
    loom_consumer_close(c);
    tpt_close(&e);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            publisher_and_consumers_ride_out_a_server_restart, est_setup,
            est_teardown),
    };
    return cmocka_run_group_tests(tests, est_group_setup, est_group_teardown);
}
