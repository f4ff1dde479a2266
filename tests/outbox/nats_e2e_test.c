/*
 * The whole path through NATS JetStream, as a service uses it: units of
 * work append an event and add its message to the outbox in one
 * transaction; a relay publishes the outbox to a nats:// transport; an
 * idempotent consumer applies each message in a transaction with its
 * inbox mark. What arrives is what committed, in each key's order,
 * applied exactly once, also when the outbox is published again (the
 * stream's duplicate window drops the copies). A message NATS cannot
 * carry (a deliver_at in the future) is set aside in the outbox's dead
 * letters without holding up the ones behind it. A message over the
 * consumer's payload limit, or one its handler cannot decode, is
 * dead-lettered to "<topic>.dlq" on its first delivery, and the ones
 * behind it are handled.
 *
 * Needs PostgreSQL (LOOM_TEST_PG_DSN) and NATS (LOOM_TEST_NATS_URL).
 */
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
#include "ntest.h"

#define E2E_ORDERS 8
#define E2E_UNITS  400 /* committed; every third attempt rolls back */

/* Units of work on the loop's thread, blocking: fine for a test. */
static void
e2e_write(loom_store *s, int *rolled_back)
{
    int64_t version[E2E_ORDERS];
    loom_tx *tx = NULL;
    int done = 0;

    for (int i = 0; i < E2E_ORDERS; i++)
        version[i] = -1;
    assert_int_equal(loom_tx_new(&tx), LOOM_OK);
    for (int k = 0; done < E2E_UNITS; k++) {
        int o = k % E2E_ORDERS, doomed = k % 3 == 2;
        char stream[32];
        loom_err rc;

        snprintf(stream, sizeof stream, "order-%d", o);
        rc = e2e_order_unit(s, tx, stream, version[o], doomed);
        if (doomed) {
            assert_int_equal(rc, LOOM_EDB);
            (*rolled_back)++;
            continue;
        }
        if (rc != LOOM_OK)
            fail_msg("unit of work: %s: %s", loom_strerror(rc),
                     loom_store_errmsg(s));
        version[o]++;
        done++;
    }
    loom_tx_free(tx);
}

static loom_relay *
e2e_relay(tpt_env *e)
{
    loom_relay_config cfg = LOOM_RELAY_CONFIG_INIT;
    loom_relay *r = NULL;
    char err[512] = "";

    cfg.transport = e->t;
    cfg.poll_ms = 50;
    if (loom_relay_start(e->rt, &cfg, &r, err, sizeof err) != LOOM_OK)
        fail_msg("loom_relay_start: %s", err);
    return r;
}

static void
test_nats_e2e_committed_work_arrives_in_key_order_exactly_once(void **state)
{
    loom_store *s = est_store_open(NULL);
    PGconn *c = est_connect(NULL);
    loom_inbox_consumer *ic;
    loom_inbox_consumer_stats st;
    loom_relay *r;
    int rolled_back = 0;
    tpt_env e;

    (void) state;
    est_exec(c, E2E_EFFECTS_SQL);
    setenv("LOOM_DATABASE_URL", loomt_dsn(), 1);
    ntt_open(&e, "");
    r = e2e_relay(&e);
    ic = e2e_consumer(&e, "e2e.orders");
    e2e_write(s, &rolled_back);
    assert_true(rolled_back > 0);
    tpt_sql_wait(&e, E2E_UNITS, "SELECT count(*) FROM e2e_effects");
    /* The committed events, each applied once, keys in version order. */
    assert_int_equal(est_ll("SELECT count(*) FROM loom.events WHERE stream "
                            "LIKE 'order-%%'"),
                     E2E_UNITS);
    assert_int_equal(est_ll("SELECT count(DISTINCT (stream, version)) FROM "
                            "e2e_effects"),
                     E2E_UNITS);
    assert_int_equal(est_ll("SELECT count(*) FROM e2e_effects WHERE key <> "
                            "stream"),
                     0);
    assert_int_equal(est_ll("SELECT count(*) FROM (SELECT version, "
                            "lag(version) OVER (PARTITION BY stream ORDER BY "
                            "seq) AS prev FROM e2e_effects) x WHERE version "
                            "<> prev + 1"),
                     0);

    /* Everything published once more with the same ids, within the
     * stream's duplicate window: JetStream stores none of it again. */
    est_exec(c, "INSERT INTO loom.outbox (outbox, topic, key, type, payload, "
                "message_id) SELECT 'default', 'e2e.orders', "
                "convert_to(stream, 'UTF8'), 'shop.OrderChanged', "
                "convert_to(stream || ' ' || version, 'UTF8'), message_id "
                "FROM e2e_effects ORDER BY seq");
    tpt_sql_wait(&e, 0,
                 "SELECT count(*) FROM loom.outbox o WHERE (o.tx, o.position) "
                 "> (SELECT tx, position FROM loom.outbox_relays WHERE "
                 "outbox = 'default')");
    ntt_quiet(&e, 500);
    assert_int_equal(loom_inbox_consumer_stats_get(ic, &st), LOOM_OK);
    assert_int_equal(st.handled, E2E_UNITS);
    assert_int_equal(est_ll("SELECT count(*) FROM e2e_effects"), E2E_UNITS);

    loom_inbox_consumer_close(ic);
    loom_relay_close(r);
    tpt_close(&e);
    loom_store_close(s);
    PQfinish(c);
}

static void
test_nats_e2e_what_nats_refuses_is_set_aside(void **state)
{
    loom_store *s = est_store_open(NULL);
    PGconn *c = est_connect(NULL);
    loom_outbox_message m[3];
    loom_inbox_consumer *ic;
    loom_tx *tx = NULL;
    loom_relay *r;
    tpt_env e;

    (void) state;
    est_exec(c, E2E_EFFECTS_SQL);
    setenv("LOOM_DATABASE_URL", loomt_dsn(), 1);
    ntt_open(&e, "");
    r = e2e_relay(&e);
    ic = e2e_consumer(&e, "e2e.later");
    memset(m, 0, sizeof m);
    for (int i = 0; i < 3; i++) {
        m[i].topic = "e2e.later";
        m[i].key = "later";
        m[i].key_len = 5;
        m[i].payload = i == 0   ? "later 100"
                       : i == 1 ? "later 101"
                                : "later 102";
        m[i].payload_len = 9;
    }
    m[1].deliver_at = tpt_realtime_us() + 3600LL * 1000000; /* in an hour */
    assert_int_equal(loom_tx_new(&tx), LOOM_OK);
    assert_int_equal(loom_outbox_add(tx, NULL, m, 3), LOOM_OK);
    assert_int_equal(loom_store_commit(s, tx), LOOM_OK);
    loom_tx_free(tx);
    tpt_sql_wait(&e, 2,
                 "SELECT count(*) FROM e2e_effects WHERE stream = 'later'");
    /* With NATS's own reason, not only "invalid argument". */
    tpt_sql_wait(&e, 1,
                 "SELECT count(*) FROM loom.outbox_dead_letters WHERE topic = "
                 "'e2e.later' AND deliver_at IS NOT NULL AND error LIKE "
                 "'%%deliver_at is in the future%%'");
    assert_int_equal(est_ll("SELECT count(*) FROM e2e_effects WHERE stream = "
                            "'later' AND version IN (100, 102)"),
                     2);
    loom_inbox_consumer_close(ic);
    loom_relay_close(r);
    tpt_close(&e);
    loom_store_close(s);
    PQfinish(c);
}

/* What the limit test's handler and settled callback saw. */
typedef struct lim_seen {
    /* Handler calls of "lim-ok-1", "undecodable", "lim-ok-2" (a batch
     * that fails is handled again one message at a time). */
    int calls[3];
    int others;      /* calls for any other payload */
    int outcomes[5]; /* by loom_inbox_outcome */
} lim_seen;

static loom_err
lim_handle(const loom_message *m, loom_tx *tx, char *why, size_t whylen,
           void *arg)
{
    static const char *const names[3] = {"lim-ok-1", "undecodable", "lim-ok-2"};
    lim_seen *s = arg;
    int known = 0;

    (void) tx;
    for (int i = 0; i < 3; i++)
        if (m->payload_len == strlen(names[i]) &&
            memcmp(m->payload, names[i], m->payload_len) == 0) {
            s->calls[i]++;
            known = 1;
        }
    s->others += !known;
    if (m->payload_len == 11 && memcmp(m->payload, "undecodable", 11) == 0) {
        snprintf(why, whylen, "not a valid lim.Command");
        return LOOM_EDECODE;
    }
    return LOOM_OK;
}

static void
lim_settled(const loom_message *m, loom_inbox_outcome outcome, void *arg)
{
    lim_seen *s = arg;

    (void) m;
    if (outcome >= 1 && outcome <= 4)
        s->outcomes[outcome]++;
}

static void
test_nats_e2e_a_message_over_the_payload_limit_is_dead_lettered_on_its_first_delivery(
    void **state)
{
    loom_consumer_config cfg = LOOM_CONSUMER_CONFIG_INIT;
    loom_inbox_consumer_config icfg = LOOM_INBOX_CONSUMER_CONFIG_INIT;
    const char *topics[1] = {"e2e.limit"};
    loom_inbox_consumer *ic = NULL;
    loom_inbox_consumer_stats st;
    loom_message m[4];
    lim_seen seen;
    tpt_rec dlq = {0};
    char err[512] = "";
    tpt_env e;

    (void) state;
    memset(&seen, 0, sizeof seen);
    ntt_open(&e, "");
    cfg.group = "limits";
    cfg.topics = topics;
    cfg.n_topics = 1; /* max_deliveries 5: a failure would come back */
    icfg.conninfo = loomt_dsn();
    icfg.max_payload = 16;
    icfg.settled = lim_settled;
    assert_int_equal(loom_inbox_consumer_open(e.t, &cfg, &icfg, lim_handle,
                                              &seen, &ic, err, sizeof err),
                     LOOM_OK);
    tpt_msg_init(&m[0], "e2e.limit", "lim", "lim-ok-1");
    tpt_msg_init(&m[1], "e2e.limit", "lim", "a payload over sixteen bytes");
    tpt_msg_init(&m[2], "e2e.limit", "lim", "undecodable");
    tpt_msg_init(&m[3], "e2e.limit", "lim", "lim-ok-2");
    assert_int_equal(tpt_publish_wait(&e, m, 4), LOOM_OK);
    ntt_rec_open(&e, "limits-reader", "e2e.limit.dlq", 0, 0, &dlq);
    tpt_rec_wait(&e, &dlq, 2);
    tpt_sql_wait(&e, 2,
                 "SELECT count(*) FROM loom.inbox WHERE consumer = 'limits'");
    /* Past the backoffs: a redelivery would show. */
    ntt_quiet(&e, 1500);

    assert_int_equal(loom_inbox_consumer_stats_get(ic, &st), LOOM_OK);
    assert_int_equal(st.handled, 2);
    assert_int_equal(st.rejected, 2);
    assert_int_equal(st.failed, 0);
    assert_int_equal(seen.outcomes[LOOM_INBOX_REJECTED], 2);
    assert_int_equal(seen.outcomes[LOOM_INBOX_FAILED], 0);
    /* One settlement per delivery: four messages, four deliveries. */
    assert_int_equal(seen.outcomes[LOOM_INBOX_COMMITTED], 2);
    assert_int_equal(seen.outcomes[LOOM_INBOX_DUPLICATE], 0);
    /* The handler saw the undecodable one (in its batch, then alone), but
     * never the one over the limit. */
    assert_true(seen.calls[1] >= 1);
    assert_true(seen.calls[0] >= 1 && seen.calls[2] >= 1);
    assert_int_equal(seen.others, 0);
    assert_int_equal(dlq.n, 2);
    assert_int_equal(tpt_rec_count(&dlq, "a payload over sixteen bytes"), 1);
    assert_int_equal(tpt_rec_count(&dlq, "undecodable"), 1);
    for (size_t i = 0; i < 2; i++) {
        if (strstr(dlq.m[i].headers, "x-deliveries=1;") == NULL)
            fail_msg("dead letter headers: %s", dlq.m[i].headers);
        if (strstr(dlq.m[i].headers, "x-group=limits;") == NULL)
            fail_msg("dead letter headers: %s", dlq.m[i].headers);
    }
    if (strstr(dlq.m[0].headers, "max_payload") == NULL &&
        strstr(dlq.m[1].headers, "max_payload") == NULL)
        fail_msg("no dead letter names max_payload: %s | %s", dlq.m[0].headers,
                 dlq.m[1].headers);
    loom_inbox_consumer_close(ic);
    tpt_close(&e);
    tpt_rec_free(&dlq);
}

static int
e2e_group_setup(void **state)
{
    if (est_group_setup(state) != 0)
        return -1;
    return ntt_group_setup(state);
}

static int
e2e_group_teardown(void **state)
{
    int rc = ntt_group_teardown(state);

    return est_group_teardown(state) != 0 ? -1 : rc;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_nats_e2e_committed_work_arrives_in_key_order_exactly_once,
            est_setup, est_teardown),
        cmocka_unit_test_setup_teardown(
            test_nats_e2e_what_nats_refuses_is_set_aside, est_setup,
            est_teardown),
        cmocka_unit_test_setup_teardown(
            test_nats_e2e_a_message_over_the_payload_limit_is_dead_lettered_on_its_first_delivery,
            est_setup, est_teardown),
    };

    tpt_debug_from_env();
    return cmocka_run_group_tests_name("outbox.nats_e2e", tests,
                                       e2e_group_setup, e2e_group_teardown);
}
