/*
 * The whole path, as a service uses it: units of work append an event
 * and add its message to the outbox in one transaction; a relay publishes
 * the outbox to a topic; an idempotent consumer applies each message in a
 * transaction with its inbox mark. What arrives is what committed, in
 * each key's order, applied exactly once even when everything is
 * published again.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "e2etest.h"

#define E2E_WRITERS    2
#define E2E_PER_WRITER 600
#define E2E_ORDERS     12 /* aggregates per writer */
#define E2E_TOTAL      (E2E_WRITERS * E2E_PER_WRITER)

/* A service writing: each order's events with exact expected versions, a
 * message per event keyed by the order. Every third unit of work is
 * rolled back by a failing statement: neither its event nor its message
 * may appear. */
typedef struct e2e_writer {
    int index;
    int failures; /* unexpected errors */
    int rolled_back;
    pthread_t thread;
} e2e_writer;

static void *
e2e_write(void *arg)
{
    e2e_writer *w = arg;
    loom_store *s = est_store_open(NULL);
    loom_tx *tx = NULL;
    int64_t version[E2E_ORDERS];
    int done = 0;

    for (int i = 0; i < E2E_ORDERS; i++)
        version[i] = -1;
    if (loom_tx_new(&tx) != LOOM_OK) {
        w->failures++;
        loom_store_close(s);
        return NULL;
    }
    for (int k = 0; done < E2E_PER_WRITER; k++) {
        int o = k % E2E_ORDERS, doomed = k % 3 == 2;
        char stream[32];
        loom_err rc;

        snprintf(stream, sizeof stream, "order-%d-%d", w->index, o);
        rc = e2e_order_unit(s, tx, stream, version[o], doomed);
        if (doomed) {
            if (rc == LOOM_EDB)
                w->rolled_back++;
            else
                w->failures++;
            continue;
        }
        if (rc != LOOM_OK) {
            fprintf(stderr, "writer %d: %s: %s\n", w->index, loom_strerror(rc),
                    loom_store_errmsg(s));
            w->failures++;
            break;
        }
        version[o]++;
        done++;
    }
    loom_tx_free(tx);
    loom_store_close(s);
    return NULL;
}

static void
committed_work_reaches_the_consumer_in_key_order_exactly_once(void **state)
{
    tpt_env e;
    loom_relay_config cfg = LOOM_RELAY_CONFIG_INIT;
    loom_relay *r = NULL;
    loom_inbox_consumer *ic;
    loom_inbox_consumer_stats st;
    uint64_t seen = 0;
    int64_t moved_ms;
    e2e_writer ws[E2E_WRITERS];
    PGconn *c = est_connect(NULL);
    char err[512] = "";

    (void) state;
    est_exec(c, E2E_EFFECTS_SQL);
    tpt_topic_create("e2e.orders", 4, -1, -1, 0, -1);
    tpt_open(&e, "");
    cfg.transport = e.t;
    cfg.poll_ms = 50;
    assert_int_equal(loom_relay_start(e.rt, &cfg, &r, err, sizeof err),
                     LOOM_OK);
    ic = e2e_consumer(&e, "e2e.orders");

    for (int i = 0; i < E2E_WRITERS; i++) {
        memset(&ws[i], 0, sizeof ws[i]);
        ws[i].index = i;
        assert_int_equal(pthread_create(&ws[i].thread, NULL, e2e_write, &ws[i]),
                         0);
    }
    /* The loop runs the relay and the consumer meanwhile: 1,800 durable
     * commits and their relaying and consuming, as long as they go on. */
    tpt_sql_wait_progress(&e, E2E_TOTAL, "SELECT count(*) FROM e2e_effects");
    for (int i = 0; i < E2E_WRITERS; i++) {
        pthread_join(ws[i].thread, NULL);
        assert_int_equal(ws[i].failures, 0);
        assert_true(ws[i].rolled_back > 0);
    }
    /* Exactly the committed events, each applied once, each stream's
     * versions in the order applied. */
    assert_int_equal(est_ll("SELECT count(*) FROM loom.events WHERE stream "
                            "LIKE 'order-%%'"),
                     E2E_TOTAL);
    assert_int_equal(est_ll("SELECT count(DISTINCT (stream, version)) FROM "
                            "e2e_effects"),
                     E2E_TOTAL);
    assert_int_equal(est_ll("SELECT count(*) FROM (SELECT version, "
                            "lag(version) OVER (PARTITION BY stream ORDER BY "
                            "seq) AS prev FROM e2e_effects) x WHERE version "
                            "<> prev + 1"),
                     0);

    /* Everything published once more, with the same ids (as a relay
     * that lost its progress would): the inbox drops every copy. */
    est_exec(c, "INSERT INTO loom.outbox (outbox, topic, key, type, payload, "
                "message_id) SELECT 'default', 'e2e.orders', "
                "convert_to(stream, 'UTF8'), 'shop.OrderChanged', "
                "convert_to(stream || ' ' || version, 'UTF8'), message_id "
                "FROM e2e_effects ORDER BY seq");
    /* As long as the copies keep coming. */
    moved_ms = est_now_ms();
    for (;;) {
        loom_inbox_consumer_stats_get(ic, &st);
        if (st.duplicates >= E2E_TOTAL)
            break;
        if (st.duplicates != seen) {
            seen = st.duplicates;
            moved_ms = est_now_ms();
        } else if (est_now_ms() - moved_ms > TPT_WAIT_MS)
            break; /* stuck: the checks below say how */
        tpt_run(&e, NULL, NULL, 10);
    }
    assert_int_equal(loom_inbox_consumer_stats_get(ic, &st), LOOM_OK);
    assert_int_equal(st.duplicates, E2E_TOTAL);
    assert_int_equal(st.handled, E2E_TOTAL);
    assert_int_equal(est_ll("SELECT count(*) FROM e2e_effects"), E2E_TOTAL);

    loom_inbox_consumer_close(ic);
    loom_relay_close(r);
    tpt_close(&e);
    PQfinish(c);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            committed_work_reaches_the_consumer_in_key_order_exactly_once,
            est_setup, est_teardown),
    };

    tpt_debug_from_env();
    return cmocka_run_group_tests(tests, est_group_setup, est_group_teardown);
}
