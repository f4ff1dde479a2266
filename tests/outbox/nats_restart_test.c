/*
 * The NATS transport rides out a restart of nats-server: a producer
 * publishing steadily (each message in a call of its own, a failed call
 * published again with the same id, as an outbox relay does) and a
 * consumer group lose the connection mid-stream; libnats reconnects, and
 * in the end every message whose publish was acknowledged has been
 * consumed (at least once: JetStream may redeliver what was acknowledged
 * while the server was down), and nothing was lost.
 *
 * A message the consumer never saw may have been dead-lettered unseen:
 * the transport sends one whose delivery count (JetStream's NumDelivered)
 * exceeds max_deliveries to "<topic>.dlq" without the handler, and
 * nats-server 2.9.10 can inflate that count across a restart. So the
 * group allows 1000 deliveries, not 5, and the test reads
 * "survive.t.dlq" too: a failure says how many went there.
 *
 * Restarting the server needs LOOM_TEST_NATS_RESTART, a shell command
 * that stops the server of LOOM_TEST_NATS_URL and starts it again on the
 * same port and store (set by `make test`, which owns that server);
 * without it the test says so and skips. It is RUN_SERIAL in CTest: the
 * restart breaks every other NATS test's connection.
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

#include "ntest.h"

#define RS_MESSAGES  3000
#define RS_IN_FLIGHT 200 /* calls at once */
/* Deliveries before a message is dead-lettered: a margin, not a measure
 * (what a restart adds to a count depends on the pull requests that
 * expired meanwhile; docs/messaging.md). */
#define RS_MAX_DELIVERIES 1000

typedef struct rs_state rs_state;

typedef struct rs_msg {
    rs_state *s;
    int i;
    int acked;   /* its publish was acknowledged */
    int pending; /* a call is in flight */
    int seen;    /* deliveries */
    int dead;    /* copies on survive.t.dlq */
    loom_uuid id;
} rs_msg;

struct rs_state {
    tpt_env *e;
    uv_timer_t pub;
    rs_msg *m;
    int next;   /* the next message never published */
    int *retry; /* indexes to publish again */
    int n_retry;
    int in_flight; /* calls */
    int acked;
    int failed; /* callbacks with an error, each published again */
    loom_err last_rc;
    int delivered;
    int dead; /* messages read from survive.t.dlq */
    atomic_int restart_done;
    int restart_status;
    const char *cmd;
};

static void
rs_published(loom_err rc, size_t n, void *arg)
{
    rs_msg *m = arg;
    rs_state *s = m->s;

    (void) n;
    m->pending = 0;
    s->in_flight--;
    if (rc == LOOM_OK) {
        m->acked = 1;
        s->acked++;
    } else {
        s->failed++;
        s->last_rc = rc;
        s->retry[s->n_retry++] = m->i;
    }
}

static void
rs_send(rs_state *s, int i)
{
    char payload[16];
    loom_message msg;

    snprintf(payload, sizeof payload, "%d", i);
    tpt_msg_init(&msg, "survive.t", NULL, payload);
    msg.id = s->m[i].id;
    if (loom_transport_publish(s->e->t, &msg, 1, rs_published, &s->m[i]) !=
        LOOM_OK) {
        s->failed++;
        s->retry[s->n_retry++] = i;
        return;
    }
    s->m[i].pending = 1;
    s->in_flight++;
}

/* Every tick: the failed ones again, and a new one. */
static void
rs_on_pub(uv_timer_t *t)
{
    rs_state *s = t->data;
    int n = s->n_retry;

    s->n_retry = 0;
    for (int k = 0; k < n && s->in_flight < RS_IN_FLIGHT; k++)
        rs_send(s, s->retry[k]);
    if (s->next < RS_MESSAGES && s->in_flight < RS_IN_FLIGHT)
        rs_send(s, s->next++);
}

/* The message's number (its payload), or -1 when it is not one of ours. */
static int
rs_index(const loom_message *m)
{
    char buf[16];
    int i;

    snprintf(buf, sizeof buf, "%.*s", (int) m->payload_len,
             (const char *) m->payload);
    i = atoi(buf);
    return i >= 0 && i < RS_MESSAGES ? i : -1;
}

static void
rs_consume(loom_consumer *c, const loom_message *const *msgs, size_t n,
           void *arg)
{
    rs_state *s = arg;

    for (size_t k = 0; k < n; k++) {
        int i = rs_index(msgs[k]);
        if (i >= 0)
            s->m[i].seen++;
        s->delivered++;
        loom_consumer_ack(c, msgs[k]);
    }
}

/* Reads survive.t.dlq: what was dead-lettered without the handler. */
static void
rs_dead(loom_consumer *c, const loom_message *const *msgs, size_t n, void *arg)
{
    rs_state *s = arg;

    for (size_t k = 0; k < n; k++) {
        int i = rs_index(msgs[k]);
        if (i >= 0)
            s->m[i].dead++;
        s->dead++;
        loom_consumer_ack(c, msgs[k]);
    }
}

static void *
rs_restart_main(void *arg)
{
    rs_state *s = arg;

    s->restart_status = system(s->cmd);
    atomic_store(&s->restart_done, 1);
    return NULL;
}

static int
rs_finished(void *arg)
{
    rs_state *s = arg;

    if (!atomic_load(&s->restart_done) || s->acked < RS_MESSAGES)
        return 0;
    for (int i = 0; i < RS_MESSAGES; i++)
        if (s->m[i].seen == 0)
            return 0;
    return 1;
}

static void
test_nats_restart_nothing_acknowledged_is_lost(void **state)
{
    rs_state s;
    tpt_env e;
    pthread_t th;
    loom_consumer_config cfg = LOOM_CONSUMER_CONFIG_INIT;
    const char *topics[] = {"survive.t"}, *dlq_topics[] = {"survive.t.dlq"};
    loom_consumer *c, *dlq;
    int lost = 0, lost_dead = 0, twice = 0;

    (void) state;
    memset(&s, 0, sizeof s);
    s.cmd = getenv("LOOM_TEST_NATS_RESTART");
    if (s.cmd == NULL || s.cmd[0] == '\0') {
        printf("nats_restart_test: LOOM_TEST_NATS_RESTART is not set (the "
               "server is not the tests' to restart): skipped; `make test` "
               "runs it on its own server\n");
        skip();
    }
    s.m = calloc(RS_MESSAGES, sizeof *s.m);
    s.retry = calloc(RS_MESSAGES, sizeof *s.retry);
    assert_non_null(s.m);
    assert_non_null(s.retry);
    for (int i = 0; i < RS_MESSAGES; i++) {
        s.m[i].s = &s;
        s.m[i].i = i;
        assert_int_equal(loom_uuid_generate(&s.m[i].id), LOOM_OK);
    }
    ntt_open(&e, "publish_timeout_ms=3000&reconnect_wait_ms=100");
    s.e = &e;
    cfg.group = "survivors";
    cfg.topics = topics;
    cfg.n_topics = 1;
    cfg.batch = 50;
    cfg.max_deliveries = RS_MAX_DELIVERIES;
    assert_int_equal(loom_consumer_open(e.t, &cfg, rs_consume, &s, &c),
                     LOOM_OK);
    cfg.group = "survivors-dlq";
    cfg.topics = dlq_topics;
    assert_int_equal(loom_consumer_open(e.t, &cfg, rs_dead, &s, &dlq), LOOM_OK);
    uv_timer_init(loom_runtime_loop(e.rt), &s.pub);
    s.pub.data = &s;
    uv_timer_start(&s.pub, rs_on_pub, 2, 2);
    /* Restart once a third is published, while everything is busy. */
    while (s.next < RS_MESSAGES / 3)
        uv_run(loom_runtime_loop(e.rt), UV_RUN_ONCE);
    assert_true(s.delivered > 0);
    assert_int_equal(pthread_create(&th, NULL, rs_restart_main, &s), 0);
    if (!tpt_run(&e, rs_finished, &s, 120000)) {
        for (int i = 0; i < RS_MESSAGES; i++) {
            lost += s.m[i].acked && s.m[i].seen == 0;
            lost_dead += s.m[i].acked && s.m[i].seen == 0 && s.m[i].dead > 0;
        }
        fail_msg("after the restart: %d of %d published, %d acknowledged, "
                 "%d failed (last: %s), %d delivered, %d acknowledged but "
                 "not consumed (%d of them on survive.t.dlq, which has "
                 "%d; the transport's warnings say why), restart %s",
                 s.next, RS_MESSAGES, s.acked, s.failed,
                 loom_err_name(s.last_rc), s.delivered, lost, lost_dead, s.dead,
                 atomic_load(&s.restart_done) ? "done" : "not done");
    }
    pthread_join(th, NULL);
    assert_int_equal(s.restart_status, 0);
    for (int i = 0; i < RS_MESSAGES; i++) {
        assert_true(s.m[i].acked);
        assert_true(s.m[i].seen >= 1);
        twice += s.m[i].seen > 1;
    }
    printf("nats_restart_test: %d publishes failed and were retried, %d "
           "messages delivered more than once (at-least-once), %d read "
           "from survive.t.dlq\n",
           s.failed, twice, s.dead);
    uv_close((uv_handle_t *) &s.pub, NULL);
    loom_consumer_close(dlq);
    loom_consumer_close(c);
    tpt_close(&e);
    free(s.m);
    free(s.retry);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nats_restart_nothing_acknowledged_is_lost),
    };
    tpt_debug_from_env();
    return cmocka_run_group_tests_name("outbox.nats_restart", tests,
                                       ntt_group_setup, ntt_group_teardown);
}
