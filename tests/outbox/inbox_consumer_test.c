/*
 * The idempotent consumer (loom/inbox_consumer.h) on the topic streams,
 * against a real PostgreSQL. Its handler writes one row per message into
 * a table of the test's own (ib_fx, no unique key): a message applied
 * twice shows as a duplicate row, a lost one as a missing row. Each
 * message's effects must apply exactly once when the same messages are
 * published twice under the same ids (the topics use no deduplication
 * window, so the transport delivers both copies), when the consumer is
 * closed with a transaction in flight and reopened (the transport
 * redelivers what was never acknowledged), when the connection breaks
 * under a transaction (retried after a backoff), and around a poison
 * message, which fails alone and is dead-lettered. A message over the
 * limits, or one the handler says does not decode (LOOM_EDECODE), is
 * rejected: dead-lettered on its first delivery, and the partition goes
 * on. Expiry deletes entries
 * past the window in chunks; a graceful runtime stop finishes the
 * transaction in flight. End to end, messages written by units of work
 * with loom_outbox_add() and published (twice) by the relay apply once.
 * A version conflict is not a failed delivery: the message is handled
 * again on fresh state (up to max_conflicts times), and the settled
 * callback reports how each message ended.
 *
 * Most tests turn the loop with tpt_run(), so the runtime's LISTEN
 * connection never runs and the consumers find new messages by polling
 * (the transport's default, every second). Loop callbacks only record;
 * the checks run after the loop returns.
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

#include "loom/inbox.h"
#include "loom/inbox_consumer.h"
#include "loom/outbox.h"
#include "tptest.h"

/* What the handler does, and what it saw. */
typedef struct ibh {
    const char *name; /* the inbox consumer, written into each row */
    int calls;
    int slow_seen; /* the handler queued the "slow" message's sleep */
    double slow_s; /* how long "slow" sleeps in its transaction */
    /* Also append an event to "ibev-<n>" and send an outbox message to
     * outbox "ibout" per message. */
    int more;
    /* "conflict": while this is above 0, count it down and append to
     * stream "ibconf-1" (which exists) expecting no stream: a version
     * conflict; then append expecting any version. */
    int conflict_left;
    /* "outage": while this is above 0, count it down and return
     * LOOM_ECONN, as a handler whose own database is away. */
    int outage_left;
    loom_store *vs; /* "version": reads the version of "ibver-1" here */
    /* What the settled callback saw, by loom_inbox_outcome. */
    int settled[5];
} ibh;

static void
ibh_settled(const loom_message *m, loom_inbox_outcome outcome, void *arg)
{
    ibh *h = arg;

    (void) m;
    if (outcome >= LOOM_INBOX_COMMITTED && outcome <= LOOM_INBOX_REJECTED)
        h->settled[outcome]++;
}

/* One row in ib_fx per message; "poison" refuses, "undecodable" refuses
 * for good (LOOM_EDECODE), "badsql" queues a statement that fails, "slow"
 * sleeps in the transaction. */
static loom_err
ibh_fn(const loom_message *m, loom_tx *tx, char *why, size_t whylen, void *arg)
{
    ibh *h = arg;
    char payload[64], id[LOOM_UUID_STRLEN], sleep_s[32];
    const char *v[3] = {h->name, payload, id};
    loom_err rc;

    h->calls++;
    snprintf(payload, sizeof payload, "%.*s", (int) m->payload_len,
             (const char *) m->payload);
    loom_uuid_format(&m->id, id);
    if (strcmp(payload, "poison") == 0) {
        snprintf(why, whylen, "poison pill");
        return LOOM_EHANDLER;
    }
    if (strcmp(payload, "undecodable") == 0) {
        snprintf(why, whylen, "not a valid ib.Command");
        return LOOM_EDECODE;
    }
    if (strcmp(payload, "outage") == 0 && h->outage_left > 0) {
        h->outage_left--;
        snprintf(why, whylen, "the handler's database is away");
        return LOOM_ECONN;
    }
    rc = loom_tx_exec(tx,
                      "INSERT INTO ib_fx (consumer, payload, id) VALUES ($1, "
                      "$2, $3::uuid)",
                      3, v);
    if (rc == LOOM_OK && h->more) {
        loom_event_data ev;
        loom_outbox_message om;
        memset(&ev, 0, sizeof ev);
        ev.type = "ib.Handled";
        ev.data = m->payload;
        ev.data_len = m->payload_len;
        rc = loom_tx_append(tx, "ibev-1", LOOM_EXPECT_ANY, &ev, 1);
        memset(&om, 0, sizeof om);
        om.topic = "ib.out";
        om.payload = m->payload;
        om.payload_len = m->payload_len;
        if (rc == LOOM_OK)
            rc = loom_outbox_add(tx, "ibout", &om, 1);
    }
    if (rc == LOOM_OK && strcmp(payload, "badsql") == 0)
        rc = loom_tx_exec(tx, "SELECT 1 / 0", 0, NULL);
    if (rc == LOOM_OK && strcmp(payload, "conflict") == 0) {
        loom_event_data ev;
        memset(&ev, 0, sizeof ev);
        ev.type = "ib.Conflict";
        rc = loom_tx_append(tx, "ibconf-1",
                            h->conflict_left-- > 0 ? LOOM_EXPECT_NO_STREAM
                                                   : LOOM_EXPECT_ANY,
                            &ev, 1);
    }
    if (rc == LOOM_OK && strcmp(payload, "version") == 0) {
        /* As an aggregate's command would: decide on the version read,
         * append expecting it. */
        loom_event_data ev;
        int64_t ver = -1;
        rc = loom_store_stream_version(h->vs, "ibver-1", &ver);
        memset(&ev, 0, sizeof ev);
        ev.type = "ib.Versioned";
        if (rc == LOOM_OK)
            rc = loom_tx_append(tx, "ibver-1", ver, &ev, 1);
    }
    if (rc == LOOM_OK && strcmp(payload, "slow") == 0) {
        const char *sv[1] = {sleep_s};
        snprintf(sleep_s, sizeof sleep_s, "%.3f", h->slow_s);
        rc = loom_tx_exec(tx, "SELECT pg_sleep($1::float8)", 1, sv);
        h->slow_seen = 1;
    }
    return rc;
}

static int
group_setup(void **state)
{
    int rc = est_group_setup(state);

    loomt_sql_exec("CREATE TABLE ib_fx (consumer text NOT NULL, payload "
                   "text NOT NULL, id uuid NOT NULL)");
    return rc;
}

/* Opens an inbox consumer of `group` on `topic`. */
static loom_inbox_consumer *
ib_open(tpt_env *e, const char *group, const char *topic, unsigned max_del,
        const loom_inbox_consumer_config *icfg, ibh *h)
{
    loom_consumer_config cfg = LOOM_CONSUMER_CONFIG_INIT;
    const char *topics[1] = {topic};
    loom_inbox_consumer *ic = NULL;
    char err[512] = "";
    loom_err rc;

    cfg.group = group;
    cfg.topics = topics;
    cfg.n_topics = 1;
    cfg.max_deliveries = max_del;
    h->name = icfg && icfg->consumer ? icfg->consumer : group;
    rc = loom_inbox_consumer_open(e->t, &cfg, icfg, ibh_fn, h, &ic, err,
                                  sizeof err);
    if (rc != LOOM_OK)
        fail_msg("loom_inbox_consumer_open(%s): %s: %s", group,
                 loom_err_name(rc), err);
    assert_string_equal(err, "");
    return ic;
}

static loom_inbox_consumer_stats
ib_stats(const loom_inbox_consumer *ic)
{
    loom_inbox_consumer_stats st;

    assert_int_equal(loom_inbox_consumer_stats_get(ic, &st), LOOM_OK);
    return st;
}

/* Publishes payloads[0..n) to `topic` under one key (so one partition,
 * in order) with the ids in ids[] (nil ones get generated and written
 * back). */
static void
ib_publish(tpt_env *e, const char *topic, const char *const *payloads, size_t n,
           loom_uuid *ids)
{
    loom_message *msgs = calloc(n, sizeof *msgs);

    assert_non_null(msgs);
    for (size_t i = 0; i < n; i++) {
        tpt_msg_init(&msgs[i], topic, "key", payloads[i]);
        if (loom_uuid_is_nil(&ids[i]))
            assert_int_equal(loom_uuid_generate(&ids[i]), LOOM_OK);
        msgs[i].id = ids[i];
    }
    assert_int_equal(tpt_publish_wait(e, msgs, n), LOOM_OK);
    free(msgs);
}

/* Rows of ib_fx for `consumer` that are not exactly one per message id
 * in loom.inbox: 0 when every processed message was applied once. */
static long long
ib_mismatch(const char *consumer)
{
    return est_ll("SELECT count(*) FROM (SELECT id, count(*) AS k FROM "
                  "ib_fx WHERE consumer = '%s' GROUP BY id) f FULL JOIN "
                  "(SELECT message_id AS id FROM loom.inbox WHERE consumer "
                  "= '%s') i USING (id) WHERE f.k IS DISTINCT FROM 1 OR "
                  "NOT EXISTS (SELECT 1 FROM loom.inbox x WHERE x.consumer "
                  "= '%s' AND x.message_id = f.id)",
                  consumer, consumer, consumer);
}

struct ib_until {
    const loom_inbox_consumer *ic;
    uint64_t handled, duplicates, failed, expired;
};

/* Done when the stats reach every count asked for. */
static int
ib_stats_reached(void *arg)
{
    struct ib_until *u = arg;
    loom_inbox_consumer_stats st;

    loom_inbox_consumer_stats_get(u->ic, &st);
    return st.handled >= u->handled && st.duplicates >= u->duplicates &&
           st.failed >= u->failed && st.expired >= u->expired;
}

static void
ib_wait_stats(tpt_env *e, const loom_inbox_consumer *ic, uint64_t handled,
              uint64_t duplicates, uint64_t failed, uint64_t expired)
{
    struct ib_until u = {ic, handled, duplicates, failed, expired};
    loom_inbox_consumer_stats st;

    if (tpt_run(e, ib_stats_reached, &u, TPT_WAIT_MS))
        return;
    st = ib_stats(ic);
    fail_msg("waited for handled %llu duplicates %llu failed %llu expired "
             "%llu; got %llu %llu %llu %llu",
             (unsigned long long) handled, (unsigned long long) duplicates,
             (unsigned long long) failed, (unsigned long long) expired,
             (unsigned long long) st.handled,
             (unsigned long long) st.duplicates, (unsigned long long) st.failed,
             (unsigned long long) st.expired);
}

static int
ib_slow_seen(void *arg)
{
    return ((ibh *) arg)->slow_seen;
}

/* ---- 1. the same messages twice ------------------------------------------ */

static void
test_inbox_same_ids_published_twice_apply_once(void **state)
{
    static const char *const payloads[] = {"a1", "a2", "a3", "a4", "a5",
                                           "a6", "a7", "a8", "a9", "a10"};
    tpt_env e;
    ibh h = {0};
    loom_uuid ids[10];
    loom_inbox_consumer *ic;
    loom_inbox_consumer_stats st;

    (void) state;
    memset(ids, 0, sizeof ids);
    tpt_topic_create("ib.dup", 2, -1, -1, 0, -1); /* no dedup window */
    tpt_open(&e, "");
    ic = ib_open(&e, "ib-dup", "ib.dup", 0, NULL, &h);
    ib_publish(&e, "ib.dup", payloads, 10, ids);
    ib_wait_stats(&e, ic, 10, 0, 0, 0);
    /* Again, the same ids: each is acknowledged as a duplicate. */
    ib_publish(&e, "ib.dup", payloads, 10, ids);
    ib_wait_stats(&e, ic, 10, 10, 0, 0);
    /* And two of them twice within one publish (one batch, likely). */
    {
        const char *const twice[4] = {"a1", "a2", "a1", "a2"};
        loom_uuid tids[4] = {ids[0], ids[1], ids[0], ids[1]};
        ib_publish(&e, "ib.dup", twice, 4, tids);
    }
    ib_wait_stats(&e, ic, 10, 14, 0, 0);
    tpt_sql_wait(&e, 0,
                 "SELECT coalesce(sum(lag), -1) FROM loom.topic_lag WHERE "
                 "group_name = 'ib-dup'");
    tpt_run(&e, NULL, NULL, TPT_QUIET_MS);

    st = ib_stats(ic);
    assert_int_equal(st.handled, 10);
    assert_int_equal(st.duplicates, 14);
    assert_int_equal(st.failed, 0);
    assert_int_equal(est_ll("SELECT count(*) FROM ib_fx WHERE consumer = "
                            "'ib-dup'"),
                     10);
    assert_int_equal(est_ll("SELECT count(DISTINCT payload) FROM ib_fx WHERE "
                            "consumer = 'ib-dup'"),
                     10);
    assert_int_equal(ib_mismatch("ib-dup"), 0);
    loom_inbox_consumer_close(ic);
    tpt_close(&e);
}

/* ---- 2. closed with a transaction in flight, then reopened -------------- */

static void
test_inbox_close_mid_stream_and_reopen_applies_once(void **state)
{
    static const char *const payloads[] = {"b1",   "b2", "b3", "b4",
                                           "slow", "b6", "b7", "b8"};
    tpt_env e;
    ibh h = {0};
    loom_uuid ids[8];
    loom_inbox_consumer *ic;
    loom_inbox_consumer_stats st;
    char slow_id[LOOM_UUID_STRLEN];

    (void) state;
    memset(ids, 0, sizeof ids);
    h.slow_s = 0.5;
    h.more = 1;
    tpt_topic_create("ib.close", 1, -1, -1, 0, -1);
    tpt_open(&e, "");
    ib_publish(&e, "ib.close", payloads, 8, ids);
    loom_uuid_format(&ids[4], slow_id);
    ic = ib_open(&e, "ib-close", "ib.close", 0, NULL, &h);
    assert_true(tpt_run(&e, ib_slow_seen, &h, TPT_WAIT_MS));
    /* The transaction holding "slow" is in flight: abandon it. */
    loom_inbox_consumer_close(ic);
    /* The server commits it all the same, unacknowledged. */
    tpt_sql_wait(&e, 1,
                 "SELECT count(*) FROM loom.inbox WHERE consumer = "
                 "'ib-close' AND message_id = '%s'",
                 slow_id);

    /* Reopened: what was committed comes back as duplicates, the rest is
     * handled, nothing twice. */
    h.slow_s = 0;
    ic = ib_open(&e, "ib-close", "ib.close", 0, NULL, &h);
    tpt_sql_wait(&e, 8,
                 "SELECT count(*) FROM loom.inbox WHERE consumer = "
                 "'ib-close'");
    tpt_sql_wait(&e, 0,
                 "SELECT coalesce(sum(lag), -1) FROM loom.topic_lag WHERE "
                 "group_name = 'ib-close'");
    tpt_run(&e, NULL, NULL, TPT_QUIET_MS);
    st = ib_stats(ic);
    assert_true(st.duplicates >= 1); /* "slow" at least */
    assert_int_equal(st.failed, 0);
    assert_int_equal(est_ll("SELECT count(*) FROM ib_fx WHERE consumer = "
                            "'ib-close'"),
                     8);
    assert_int_equal(ib_mismatch("ib-close"), 0);
    /* The events and outbox messages of the handler: once each too. */
    assert_int_equal(est_ll("SELECT count(DISTINCT data) FROM loom.events "
                            "WHERE stream = 'ibev-1'"),
                     8);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.events WHERE stream = "
                            "'ibev-1'"),
                     8);
    assert_int_equal(est_ll("SELECT count(DISTINCT payload) FROM loom.outbox "
                            "WHERE outbox = 'ibout'"),
                     8);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.outbox WHERE outbox = "
                            "'ibout'"),
                     8);
    loom_inbox_consumer_close(ic);
    tpt_close(&e);
}

/* ---- 3. a lost connection ----------------------------------------------- */

static void
test_inbox_lost_connection_retries_and_applies_once(void **state)
{
    static const char *const payloads[] = {"f1", "f2", "slow", "f4"};
    tpt_env e;
    ibh h = {0};
    loom_uuid ids[4];
    loom_inbox_consumer *ic;
    loom_inbox_consumer_stats st;

    (void) state;
    memset(ids, 0, sizeof ids);
    h.slow_s = 2;
    tpt_topic_create("ib.lost", 1, -1, -1, 0, -1);
    tpt_open(&e, "");
    ib_publish(&e, "ib.lost", payloads, 4, ids);
    ic = ib_open(&e, "ib-lost", "ib.lost", 0, NULL, &h);
    assert_true(tpt_run(&e, ib_slow_seen, &h, TPT_WAIT_MS));
    /* Its transaction is in flight: kill the connection under it. */
    h.slow_s = 0;
    assert_int_equal(est_ll("SELECT count(pg_terminate_backend(pid)) FROM "
                            "pg_stat_activity WHERE application_name = "
                            "'eventloom inbox' AND datname = "
                            "current_database()"),
                     1);
    ib_wait_stats(&e, ic, 4, 0, 0, 0);
    tpt_sql_wait(&e, 0,
                 "SELECT coalesce(sum(lag), -1) FROM loom.topic_lag WHERE "
                 "group_name = 'ib-lost'");
    tpt_run(&e, NULL, NULL, TPT_QUIET_MS);
    st = ib_stats(ic);
    assert_int_equal(st.handled, 4);
    assert_int_equal(st.failed, 0);
    assert_int_equal(est_ll("SELECT count(*) FROM ib_fx WHERE consumer = "
                            "'ib-lost'"),
                     4);
    assert_int_equal(ib_mismatch("ib-lost"), 0);
    loom_inbox_consumer_close(ic);
    tpt_close(&e);
}

/* ---- 4. poison messages ---------------------------------------------------
 */

static void
test_inbox_poison_fails_alone_and_is_dead_lettered(void **state)
{
    static const char *const payloads[] = {"c1", "poison", "c2", "badsql",
                                           "c3"};
    tpt_env e;
    ibh h = {0};
    loom_uuid ids[5];
    loom_inbox_consumer *ic;
    loom_inbox_consumer_stats st;
    long long tid;

    (void) state;
    memset(ids, 0, sizeof ids);
    tpt_topic_create("ib.poison", 1, -1, -1, 0, -1);
    tpt_open(&e, "");
    ic = ib_open(&e, "ib-poison", "ib.poison", 3, NULL, &h);
    ib_publish(&e, "ib.poison", payloads, 5, ids);
    tpt_sql_wait(&e, 2,
                 "SELECT count(*) FROM loom.topic_dead_letters WHERE "
                 "group_name = 'ib-poison'");
    tpt_sql_wait(&e, 0,
                 "SELECT coalesce(sum(lag), -1) FROM loom.topic_lag WHERE "
                 "group_name = 'ib-poison'");
    tpt_run(&e, NULL, NULL, TPT_QUIET_MS);

    /* The good ones once each; the bad ones never, three tries each. */
    st = ib_stats(ic);
    assert_int_equal(st.handled, 3);
    assert_int_equal(st.failed, 6);
    assert_int_equal(st.duplicates, 0);
    assert_int_equal(est_ll("SELECT count(*) FROM ib_fx WHERE consumer = "
                            "'ib-poison'"),
                     3);
    assert_int_equal(est_ll("SELECT count(*) FROM ib_fx WHERE consumer = "
                            "'ib-poison' AND payload IN ('c1', 'c2', 'c3')"),
                     3);
    assert_int_equal(ib_mismatch("ib-poison"), 0);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.inbox WHERE consumer "
                            "= 'ib-poison'"),
                     3);
    /* Dead-lettered with the handler's reason and the server's. */
    tid = tpt_topic_id("ib.poison");
    assert_int_equal(est_ll("SELECT count(*) FROM loom.topic_dead_letters "
                            "WHERE group_name = 'ib-poison' AND topic_id = "
                            "%lld AND deliveries = 3 AND error LIKE "
                            "'%%poison pill%%'",
                            tid),
                     1);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.topic_dead_letters "
                            "WHERE group_name = 'ib-poison' AND topic_id = "
                            "%lld AND deliveries = 3 AND error LIKE "
                            "'%%division by zero (SQLSTATE 22012)%%'",
                            tid),
                     1);
    loom_inbox_consumer_close(ic);
    tpt_close(&e);
}

/* Over the payload limit, over the headers limit, or refused by the
 * handler with LOOM_EDECODE: each dead-lettered on its first delivery
 * (max_deliveries is 5), with its reason, and the messages after it in
 * the partition handled at once; nothing of them in the inbox. */
static void
test_inbox_message_over_the_limits_is_dead_lettered_on_its_first_delivery(
    void **state)
{
    tpt_env e;
    ibh h = {0};
    loom_inbox_consumer_config icfg = LOOM_INBOX_CONSUMER_CONFIG_INIT;
    loom_inbox_consumer *ic;
    loom_inbox_consumer_stats st;
    loom_message msgs[6];
    loom_header big_h = {"trace", NULL};
    char *big = malloc(LOOM_OUTBOX_MAX_PAYLOAD + 1);
    char *big_v = malloc(LOOM_OUTBOX_MAX_HEADERS + 1);
    long long tid;

    (void) state;
    assert_non_null(big);
    assert_non_null(big_v);
    memset(big, 'p', LOOM_OUTBOX_MAX_PAYLOAD + 1);
    memset(big_v, 'h', LOOM_OUTBOX_MAX_HEADERS);
    big_v[LOOM_OUTBOX_MAX_HEADERS] = '\0';
    big_h.value = big_v;
    tpt_topic_create("ib.limits", 1, -1, -1, 0, -1);
    tpt_open(&e, "");
    icfg.settled = ibh_settled;
    ic = ib_open(&e, "ib-limits", "ib.limits", 5, &icfg, &h);
    /* One key: one partition, each refused one followed by a good one. */
    tpt_msg_init(&msgs[0], "ib.limits", "key", "big");
    msgs[0].payload = big;
    msgs[0].payload_len = LOOM_OUTBOX_MAX_PAYLOAD + 1;
    tpt_msg_init(&msgs[1], "ib.limits", "key", "l1");
    tpt_msg_init(&msgs[2], "ib.limits", "key", "headers");
    msgs[2].headers = &big_h;
    msgs[2].n_headers = 1;
    tpt_msg_init(&msgs[3], "ib.limits", "key", "l2");
    tpt_msg_init(&msgs[4], "ib.limits", "key", "undecodable");
    tpt_msg_init(&msgs[5], "ib.limits", "key", "l3");
    assert_int_equal(tpt_publish_wait(&e, msgs, 6), LOOM_OK);
    free(big);
    free(big_v);
    tpt_sql_wait(&e, 3,
                 "SELECT count(*) FROM loom.topic_dead_letters WHERE "
                 "group_name = 'ib-limits'");
    tpt_sql_wait(&e, 0,
                 "SELECT coalesce(sum(lag), -1) FROM loom.topic_lag WHERE "
                 "group_name = 'ib-limits'");
    /* Past the first backoffs: a redelivery would show. */
    tpt_run(&e, NULL, NULL, 1500);

    st = ib_stats(ic);
    assert_int_equal(st.handled, 3);
    assert_int_equal(st.rejected, 3);
    assert_int_equal(st.failed, 0);
    assert_int_equal(h.settled[LOOM_INBOX_REJECTED], 3);
    assert_int_equal(h.settled[LOOM_INBOX_FAILED], 0);
    assert_int_equal(h.settled[LOOM_INBOX_COMMITTED], 3);
    assert_int_equal(est_ll("SELECT count(*) FROM ib_fx WHERE consumer = "
                            "'ib-limits' AND payload IN ('l1', 'l2', 'l3')"),
                     3);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.inbox WHERE consumer "
                            "= 'ib-limits'"),
                     3);
    assert_int_equal(ib_mismatch("ib-limits"), 0);
    tid = tpt_topic_id("ib.limits");
    assert_int_equal(est_ll("SELECT count(*) FROM loom.topic_dead_letters "
                            "WHERE group_name = 'ib-limits' AND topic_id = "
                            "%lld AND deliveries = 1",
                            tid),
                     3);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.topic_dead_letters "
                            "WHERE group_name = 'ib-limits' AND error LIKE "
                            "'%%payload of 1048577 bytes%%max_payload%%'"),
                     1);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.topic_dead_letters "
                            "WHERE group_name = 'ib-limits' AND error LIKE "
                            "'%%headers%%LOOM_OUTBOX_MAX_HEADERS%%'"),
                     1);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.topic_dead_letters "
                            "WHERE group_name = 'ib-limits' AND error = "
                            "'not a valid ib.Command'"),
                     1);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.topic_retries "
                            "WHERE group_name = 'ib-limits'"),
                     0);
    loom_inbox_consumer_close(ic);
    tpt_close(&e);
}

/* max_payload moves the payload limit: a message over it is rejected, one
 * at it handled. */
static void
test_inbox_max_payload_sets_the_payload_limit(void **state)
{
    static const char *const payloads[] = {"12345678", "123456789", "ok"};
    tpt_env e;
    ibh h = {0};
    loom_inbox_consumer_config icfg = LOOM_INBOX_CONSUMER_CONFIG_INIT;
    loom_inbox_consumer *ic;
    loom_inbox_consumer_stats st;
    loom_uuid ids[3];

    (void) state;
    memset(ids, 0, sizeof ids);
    tpt_topic_create("ib.maxp", 1, -1, -1, 0, -1);
    tpt_open(&e, "");
    icfg.max_payload = 8;
    ic = ib_open(&e, "ib-maxp", "ib.maxp", 0, &icfg, &h);
    ib_publish(&e, "ib.maxp", payloads, 3, ids);
    tpt_sql_wait(&e, 0,
                 "SELECT coalesce(sum(lag), -1) FROM loom.topic_lag WHERE "
                 "group_name = 'ib-maxp'");
    st = ib_stats(ic);
    assert_int_equal(st.handled, 2);
    assert_int_equal(st.rejected, 1);
    assert_int_equal(
        est_ll("SELECT count(*) FROM loom.topic_dead_letters "
               "WHERE group_name = 'ib-maxp' AND deliveries = 1 "
               "AND error LIKE '%%payload of 9 bytes%%limit of 8%%'"),
        1);
    loom_inbox_consumer_close(ic);
    tpt_close(&e);
}

/* A message already processed is acknowledged as a duplicate even when the
 * handler now refuses it: it is never failed, nor dead-lettered. */
static void
test_inbox_refused_but_processed_is_a_duplicate(void **state)
{
    static const char *const payloads[] = {"poison"};
    tpt_env e;
    ibh h = {0};
    loom_uuid ids[1];
    loom_inbox_consumer *ic;
    loom_inbox_consumer_stats st;
    loom_tx *tx = NULL;
    loom_store *s = est_store_open(NULL);

    (void) state;
    assert_int_equal(loom_uuid_generate(&ids[0]), LOOM_OK);
    assert_int_equal(loom_tx_new(&tx), LOOM_OK);
    assert_int_equal(loom_inbox_mark(tx, "ib-done", &ids[0]), LOOM_OK);
    assert_int_equal(loom_store_commit(s, tx), LOOM_OK);
    loom_tx_free(tx);
    loom_store_close(s);
    tpt_topic_create("ib.done", 1, -1, -1, 0, 3);
    tpt_open(&e, "");
    ic = ib_open(&e, "ib-done", "ib.done", 0, NULL, &h);
    ib_publish(&e, "ib.done", payloads, 1, ids);
    ib_wait_stats(&e, ic, 0, 1, 0, 0);
    tpt_sql_wait(&e, 0,
                 "SELECT coalesce(sum(lag), -1) FROM loom.topic_lag WHERE "
                 "group_name = 'ib-done'");
    st = ib_stats(ic);
    assert_int_equal(st.failed, 0);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.topic_dead_letters "
                            "WHERE group_name = 'ib-done'"),
                     0);
    loom_inbox_consumer_close(ic);
    tpt_close(&e);
}

/* ---- 5. expiry ------------------------------------------------------------
 */

static void
test_inbox_expiry_deletes_entries_past_the_window(void **state)
{
    static const char *const payloads[] = {"d1", "d2", "d3"};
    loom_inbox_consumer_config icfg = LOOM_INBOX_CONSUMER_CONFIG_INIT;
    tpt_env e;
    ibh h = {0};
    loom_uuid ids[3];
    loom_inbox_consumer *ic;
    loom_inbox_consumer_stats st;

    (void) state;
    memset(ids, 0, sizeof ids);
    /* Old entries, more than two chunks of them, and another consumer's. */
    loomt_sql_exec("INSERT INTO loom.inbox (consumer, message_id, "
                   "received_at) SELECT 'ib-exp', gen_random_uuid(), now() "
                   "- interval '1 hour' FROM generate_series(1, 25000)");
    loomt_sql_exec("INSERT INTO loom.inbox (consumer, message_id, "
                   "received_at) SELECT 'ib-other', gen_random_uuid(), now() "
                   "- interval '1 hour' FROM generate_series(1, 5)");
    tpt_topic_create("ib.exp", 1, -1, -1, 0, -1);
    tpt_open(&e, "");
    icfg.window_ms = 60000;
    icfg.expire_every_ms = 50;
    ic = ib_open(&e, "ib-exp", "ib.exp", 0, &icfg, &h);
    ib_publish(&e, "ib.exp", payloads, 3, ids);
    ib_wait_stats(&e, ic, 3, 0, 0, 25000);
    tpt_run(&e, NULL, NULL, TPT_QUIET_MS);
    st = ib_stats(ic);
    assert_int_equal(st.expired, 25000);
    /* The fresh entries stay; so does everything of the other consumer. */
    assert_int_equal(est_ll("SELECT count(*) FROM loom.inbox WHERE consumer "
                            "= 'ib-exp'"),
                     3);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.inbox WHERE consumer "
                            "= 'ib-other'"),
                     5);
    loom_inbox_consumer_close(ic);

    /* A tiny window: the fresh ones go too, soon after. */
    icfg.window_ms = 1;
    ic = ib_open(&e, "ib-exp", "ib.exp", 0, &icfg, &h);
    ib_wait_stats(&e, ic, 0, 0, 0, 3);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.inbox WHERE consumer "
                            "= 'ib-exp'"),
                     0);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.inbox WHERE consumer "
                            "= 'ib-other'"),
                     5);
    loom_inbox_consumer_close(ic);
    tpt_close(&e);
}

/* ---- 6. a graceful runtime stop ----------------------------------------- */

struct stop_run {
    loom_runtime *rt;
    ibh *h;
    uv_timer_t check, deadline;
    int stopped_in_flight;
    int timed_out;
};

static void
stop_on_check(uv_timer_t *t)
{
    struct stop_run *r = t->data;

    if (r->h->slow_seen && !r->stopped_in_flight) {
        r->stopped_in_flight = 1;
        loom_runtime_stop(r->rt);
    }
}

static void
stop_on_deadline(uv_timer_t *t)
{
    struct stop_run *r = t->data;

    r->timed_out = 1;
    loom_runtime_stop(r->rt);
}

static void
test_inbox_runtime_stop_finishes_the_transaction_in_flight(void **state)
{
    static const char *const payloads[] = {"e1", "e2", "slow", "e4"};
    loom_runtime_config rc = LOOM_RUNTIME_CONFIG_INIT;
    loom_consumer_config cfg = LOOM_CONSUMER_CONFIG_INIT;
    const char *topics[1] = {"ib.stop"};
    struct stop_run r;
    ibh h = {0};
    loom_uuid ids[4];
    tpt_env pub;
    loom_transport *t = NULL;
    loom_inbox_consumer *ic = NULL;
    loom_inbox_consumer_stats st;
    char err[512];
    uv_loop_t *loop;

    (void) state;
    memset(ids, 0, sizeof ids);
    memset(&r, 0, sizeof r);
    tpt_topic_create("ib.stop", 1, -1, -1, 0, -1);
    tpt_open(&pub, "");
    ib_publish(&pub, "ib.stop", payloads, 4, ids);
    tpt_close(&pub);

    h.slow_s = 0.3;
    h.name = "ib-stop";
    rc.conninfo = loomt_dsn();
    assert_int_equal(loom_runtime_open(&r.rt, &rc), LOOM_OK);
    assert_int_equal(
        loom_transport_open(r.rt, "topics://", &t, err, sizeof err), LOOM_OK);
    cfg.group = "ib-stop";
    cfg.topics = topics;
    cfg.n_topics = 1;
    assert_int_equal(loom_inbox_consumer_open(t, &cfg, NULL, ibh_fn, &h, &ic,
                                              err, sizeof err),
                     LOOM_OK);
    r.h = &h;
    loop = loom_runtime_loop(r.rt);
    uv_timer_init(loop, &r.check);
    uv_timer_init(loop, &r.deadline);
    r.check.data = r.deadline.data = &r;
    uv_timer_start(&r.check, stop_on_check, 1, 1);
    uv_timer_start(&r.deadline, stop_on_deadline, TPT_WAIT_MS, 0);
    assert_int_equal(loom_runtime_run(r.rt), LOOM_OK);
    uv_close((uv_handle_t *) &r.check, NULL);
    uv_close((uv_handle_t *) &r.deadline, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    assert_false(r.timed_out);
    assert_true(r.stopped_in_flight);

    /* The stop waited for the batch with "slow" and settled it. */
    st = ib_stats(ic);
    assert_true(st.handled >= 3);
    assert_int_equal(st.handled, (uint64_t) est_ll("SELECT count(*) FROM "
                                                   "ib_fx WHERE consumer = "
                                                   "'ib-stop'"));
    assert_int_equal(ib_mismatch("ib-stop"), 0);
    loom_inbox_consumer_close(ic);
    loom_transport_close(t);
    loom_runtime_close(r.rt);
}

/* ---- 7. end to end: outbox, relay, topics, inbox ------------------------ */

/* A relay on e's transport for outbox `outbox`, polling fast. */
static loom_relay *
e2e_relay(tpt_env *e, const char *outbox)
{
    loom_relay_config cfg = LOOM_RELAY_CONFIG_INIT;
    loom_relay *r = NULL;
    char err[512] = "";

    cfg.transport = e->t;
    cfg.outbox = outbox;
    cfg.poll_ms = 50;
    cfg.standby_ms = 50;
    cfg.cleanup_ms = 600000; /* keep the rows: the test republishes them */
    if (loom_relay_start(e->rt, &cfg, &r, err, sizeof err) != LOOM_OK)
        fail_msg("loom_relay_start: %s", err);
    return r;
}

/* Units of work append events and send messages through the outbox; the
 * relay publishes them; the inbox consumer applies each once, even when
 * the relay publishes everything a second time. */
static void
test_inbox_end_to_end_with_the_outbox_and_the_relay(void **state)
{
    est_fx *fx = *state;
    tpt_env e;
    ibh h = {0};
    loom_inbox_consumer *ic;
    loom_relay *relay;
    loom_tx *tx = NULL;

    tpt_topic_create("ib.e2e", 2, -1, -1, 0, -1);
    assert_int_equal(loom_tx_new(&tx), LOOM_OK);
    for (int i = 0; i < 5; i++) {
        char stream[16], pay[2][16];
        loom_event_data ev;
        loom_outbox_message m[2];

        snprintf(stream, sizeof stream, "e2e-%d", i);
        memset(&ev, 0, sizeof ev);
        ev.type = "e2e.Done";
        loom_tx_reset(tx);
        assert_int_equal(
            loom_tx_append(tx, stream, LOOM_EXPECT_NO_STREAM, &ev, 1), LOOM_OK);
        for (int j = 0; j < 2; j++) {
            snprintf(pay[j], sizeof pay[j], "e%d-%d", i, j);
            memset(&m[j], 0, sizeof m[j]);
            m[j].topic = "ib.e2e";
            m[j].key = stream;
            m[j].key_len = strlen(stream);
            m[j].payload = pay[j];
            m[j].payload_len = strlen(pay[j]);
        }
        assert_int_equal(loom_outbox_add(tx, "ibe2e", m, 2), LOOM_OK);
        assert_int_equal(loom_store_commit(fx->s, tx), LOOM_OK);
    }
    loom_tx_free(tx);

    tpt_open(&e, "");
    ic = ib_open(&e, "ib-e2e", "ib.e2e", 0, NULL, &h);
    relay = e2e_relay(&e, "ibe2e");
    ib_wait_stats(&e, ic, 10, 0, 0, 0);
    loom_relay_close(relay);

    /* As if a relay died before recording its progress: all again. */
    loomt_sql_exec("UPDATE loom.outbox_relays SET tx = '0', position = 0 "
                   "WHERE outbox = 'ibe2e'");
    relay = e2e_relay(&e, "ibe2e");
    ib_wait_stats(&e, ic, 10, 10, 0, 0);
    tpt_run(&e, NULL, NULL, TPT_QUIET_MS);
    loom_relay_close(relay);

    assert_int_equal(ib_stats(ic).handled, 10);
    assert_int_equal(ib_stats(ic).duplicates, 10);
    assert_int_equal(est_ll("SELECT count(*) FROM ib_fx WHERE consumer = "
                            "'ib-e2e'"),
                     10);
    assert_int_equal(ib_mismatch("ib-e2e"), 0);
    /* The ids the inbox recorded are the ones loom_outbox_add() gave. */
    assert_int_equal(est_ll("SELECT count(*) FROM loom.inbox i JOIN "
                            "loom.outbox o ON o.message_id = i.message_id "
                            "WHERE i.consumer = 'ib-e2e' AND o.outbox = "
                            "'ibe2e'"),
                     10);
    loom_inbox_consumer_close(ic);
    tpt_close(&e);
}

/* ---- 8. version conflicts ---------------------------------------------- */

/* A message alone whose transaction loses a version conflict is handled
 * again at once, on fresh state: with max_deliveries 1, one failure back
 * to the transport would have dead-lettered it. */
static void
test_inbox_lone_conflict_is_handled_again_not_failed(void **state)
{
    est_fx *fx = *state;
    static const char *const payloads[] = {"conflict"};
    loom_inbox_consumer_config icfg = LOOM_INBOX_CONSUMER_CONFIG_INIT;
    loom_event_data ev;
    tpt_env e;
    ibh h = {0};
    loom_uuid ids[1];
    loom_inbox_consumer *ic;
    loom_inbox_consumer_stats st;

    memset(ids, 0, sizeof ids);
    est_event(&ev, "ib.Conflict", NULL, 0);
    assert_int_equal(loom_store_append(fx->s, "ibconf-1", LOOM_EXPECT_NO_STREAM,
                                       &ev, 1, NULL),
                     LOOM_OK);
    h.conflict_left = 4;
    icfg.settled = ibh_settled;
    tpt_topic_create("ib.conf", 1, -1, -1, 0, 1);
    tpt_open(&e, "");
    ic = ib_open(&e, "ib-conf", "ib.conf", 0, &icfg, &h);
    ib_publish(&e, "ib.conf", payloads, 1, ids);
    ib_wait_stats(&e, ic, 1, 0, 0, 0);
    /* Again under the same id: a duplicate, whatever the handler does. */
    ib_publish(&e, "ib.conf", payloads, 1, ids);
    ib_wait_stats(&e, ic, 1, 1, 0, 0);
    tpt_run(&e, NULL, NULL, TPT_QUIET_MS);

    st = ib_stats(ic);
    assert_int_equal(st.handled, 1);
    assert_int_equal(st.failed, 0);
    assert_int_equal(st.conflicts, 4);
    assert_int_equal(h.calls, 6); /* 4 conflicts, 1 commit, 1 duplicate */
    assert_int_equal(h.settled[LOOM_INBOX_COMMITTED], 1);
    assert_int_equal(h.settled[LOOM_INBOX_DUPLICATE], 1);
    assert_int_equal(h.settled[LOOM_INBOX_FAILED], 0);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.topic_dead_letters "
                            "WHERE group_name = 'ib-conf'"),
                     0);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.events WHERE stream = "
                            "'ibconf-1'"),
                     2);
    assert_int_equal(ib_mismatch("ib-conf"), 0);
    loom_inbox_consumer_close(ic);
    tpt_close(&e);
}

/* A handler whose own database is away (LOOM_ECONN) does not fail its
 * message: with max_deliveries 1, one failure back to the transport
 * would have dead-lettered it. It is handled again after a backoff, and
 * once the outage ends, it commits. */
static void
test_inbox_handler_outage_retries_without_failing_the_message(void **state)
{
    static const char *const payloads[] = {"outage"};
    loom_inbox_consumer_config icfg = LOOM_INBOX_CONSUMER_CONFIG_INIT;
    tpt_env e;
    ibh h = {0};
    loom_uuid ids[1];
    loom_inbox_consumer *ic;
    loom_inbox_consumer_stats st;

    (void) state;
    memset(ids, 0, sizeof ids);
    h.outage_left = 3;
    icfg.settled = ibh_settled;
    tpt_topic_create("ib.outage", 1, -1, -1, 0, 1);
    tpt_open(&e, "");
    ic = ib_open(&e, "ib-outage", "ib.outage", 0, &icfg, &h);
    ib_publish(&e, "ib.outage", payloads, 1, ids);
    ib_wait_stats(&e, ic, 1, 0, 0, 0);
    tpt_run(&e, NULL, NULL, TPT_QUIET_MS);

    st = ib_stats(ic);
    assert_int_equal(st.handled, 1);
    assert_int_equal(st.failed, 0);
    assert_int_equal(h.calls, 4); /* three outages, then the commit */
    assert_int_equal(h.settled[LOOM_INBOX_COMMITTED], 1);
    assert_int_equal(h.settled[LOOM_INBOX_FAILED], 0);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.topic_dead_letters "
                            "WHERE group_name = 'ib-outage'"),
                     0);
    assert_int_equal(ib_mismatch("ib-outage"), 0);
    loom_inbox_consumer_close(ic);
    tpt_close(&e);
}

/* A conflict that never resolves fails the message after max_conflicts
 * re-runs, with the server's reason. */
static void
test_inbox_conflicts_past_max_conflicts_fail_the_message(void **state)
{
    est_fx *fx = *state;
    static const char *const payloads[] = {"conflict", "c9"};
    loom_inbox_consumer_config icfg = LOOM_INBOX_CONSUMER_CONFIG_INIT;
    tpt_env e;
    ibh h = {0};
    loom_uuid ids[2];
    loom_inbox_consumer *ic;
    loom_inbox_consumer_stats st;
    int64_t v = -1;

    memset(ids, 0, sizeof ids);
    assert_int_equal(loom_store_stream_version(fx->s, "ibconf-1", &v), LOOM_OK);
    if (v < 0) {
        loom_event_data ev;
        est_event(&ev, "ib.Conflict", NULL, 0);
        assert_int_equal(
            loom_store_append(fx->s, "ibconf-1", LOOM_EXPECT_ANY, &ev, 1, NULL),
            LOOM_OK);
    }
    h.conflict_left = 1000000;
    icfg.max_conflicts = 2;
    icfg.settled = ibh_settled;
    tpt_topic_create("ib.confx", 1, -1, -1, 0, 1);
    tpt_open(&e, "");
    ic = ib_open(&e, "ib-confx", "ib.confx", 0, &icfg, &h);
    ib_publish(&e, "ib.confx", payloads, 2, ids);
    tpt_sql_wait(&e, 1,
                 "SELECT count(*) FROM loom.topic_dead_letters WHERE "
                 "group_name = 'ib-confx'");
    ib_wait_stats(&e, ic, 1, 0, 1, 0);
    tpt_run(&e, NULL, NULL, TPT_QUIET_MS);

    st = ib_stats(ic);
    assert_int_equal(st.failed, 1);
    assert_int_equal(st.handled, 1); /* "c9" goes on */
    /* The batch of two lost once; then "conflict" alone, twice again. */
    assert_true(st.conflicts == 2 || st.conflicts == 3);
    assert_int_equal(h.settled[LOOM_INBOX_FAILED], 1);
    assert_int_equal(h.settled[LOOM_INBOX_COMMITTED], 1);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.topic_dead_letters "
                            "WHERE group_name = 'ib-confx' AND error LIKE "
                            "'%%LM001%%after 2 re-runs%%'"),
                     1);
    assert_int_equal(ib_mismatch("ib-confx"), 0);
    loom_inbox_consumer_close(ic);
    tpt_close(&e);
}

/* Messages deciding on the same stream's version in one batch: the batch
 * loses a conflict, then each alone meets the version its predecessor
 * left, and all commit, none failed. */
static void
test_inbox_conflicting_batch_is_handled_one_by_one(void **state)
{
    static const char *const payloads[] = {"version", "version", "version",
                                           "version", "version", "version"};
    tpt_env e;
    ibh h = {0};
    loom_uuid ids[6];
    loom_inbox_consumer *ic;
    loom_inbox_consumer_stats st;

    (void) state;
    memset(ids, 0, sizeof ids);
    h.vs = est_store_open(NULL);
    tpt_topic_create("ib.ver", 1, -1, -1, 0, 1);
    tpt_open(&e, "");
    /* Published before the consumer starts: one batch. */
    ib_publish(&e, "ib.ver", payloads, 6, ids);
    ic = ib_open(&e, "ib-ver", "ib.ver", 0, NULL, &h);
    ib_wait_stats(&e, ic, 6, 0, 0, 0);
    tpt_run(&e, NULL, NULL, TPT_QUIET_MS);

    st = ib_stats(ic);
    assert_int_equal(st.handled, 6);
    assert_int_equal(st.failed, 0);
    assert_true(st.conflicts >= 1);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.events WHERE stream = "
                            "'ibver-1'"),
                     6);
    assert_int_equal(est_ll("SELECT max(version) FROM loom.events WHERE "
                            "stream = 'ibver-1'"),
                     5);
    loom_inbox_consumer_close(ic);
    loom_store_close(h.vs);
    tpt_close(&e);
}

/* ---- 9. bad arguments -----------------------------------------------------
 */

static void
test_inbox_consumer_bad_arguments(void **state)
{
    loom_consumer_config cfg = LOOM_CONSUMER_CONFIG_INIT;
    loom_inbox_consumer_config icfg = LOOM_INBOX_CONSUMER_CONFIG_INIT;
    const char *topics[1] = {"ib.bad"};
    const char bad_utf8[] = {'x', (char) 0xc0, 0};
    loom_inbox_consumer *ic = (loom_inbox_consumer *) &icfg;
    loom_inbox_consumer_stats st;
    tpt_env e;
    ibh h = {0};
    char err[512], name[300];

    (void) state;
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    tpt_topic_create("ib.bad", 1, -1, -1, 0, -1);
    tpt_open(&e, "");
    cfg.group = "ib-bad";
    cfg.topics = topics;
    cfg.n_topics = 1;

    assert_int_equal(loom_inbox_consumer_open(NULL, &cfg, NULL, ibh_fn, &h, &ic,
                                              err, sizeof err),
                     LOOM_EINVAL);
    assert_null(ic);
    assert_string_not_equal(err, "");
    assert_int_equal(loom_inbox_consumer_open(e.t, NULL, NULL, ibh_fn, &h, &ic,
                                              err, sizeof err),
                     LOOM_EINVAL);
    assert_int_equal(loom_inbox_consumer_open(e.t, &cfg, NULL, NULL, &h, &ic,
                                              err, sizeof err),
                     LOOM_EINVAL);
    assert_int_equal(loom_inbox_consumer_open(e.t, &cfg, NULL, ibh_fn, &h, NULL,
                                              err, sizeof err),
                     LOOM_EINVAL);
    /* Names: too long, not UTF-8, none at all. */
    icfg.consumer = name;
    assert_int_equal(loom_inbox_consumer_open(e.t, &cfg, &icfg, ibh_fn, &h, &ic,
                                              err, sizeof err),
                     LOOM_EINVAL);
    assert_non_null(strstr(err, "LOOM_INBOX_MAX_CONSUMER"));
    icfg.consumer = bad_utf8;
    assert_int_equal(loom_inbox_consumer_open(e.t, &cfg, &icfg, ibh_fn, &h, &ic,
                                              err, sizeof err),
                     LOOM_EINVAL);
    /* An empty name is said to be empty, even with a group to fall back
     * on; no name and no group is said as such. */
    icfg.consumer = "";
    assert_int_equal(loom_inbox_consumer_open(e.t, &cfg, &icfg, ibh_fn, &h, &ic,
                                              err, sizeof err),
                     LOOM_EINVAL);
    assert_non_null(strstr(err, "the consumer name is empty"));
    icfg.consumer = NULL;
    cfg.group = NULL;
    assert_int_equal(loom_inbox_consumer_open(e.t, &cfg, &icfg, ibh_fn, &h, &ic,
                                              err, sizeof err),
                     LOOM_EINVAL);
    assert_non_null(strstr(err, "no consumer name"));
    /* A window past 100 years. */
    cfg.group = "ib-bad";
    icfg.consumer = NULL;
    icfg.window_ms = 3155760000001ull;
    assert_int_equal(loom_inbox_consumer_open(e.t, &cfg, &icfg, ibh_fn, &h, &ic,
                                              err, sizeof err),
                     LOOM_EINVAL);
    assert_non_null(strstr(err, "window_ms"));
    icfg.window_ms = 0;
    icfg.max_conflicts = 1001;
    assert_int_equal(loom_inbox_consumer_open(e.t, &cfg, &icfg, ibh_fn, &h, &ic,
                                              err, sizeof err),
                     LOOM_EINVAL);
    assert_non_null(strstr(err, "max_conflicts"));
    icfg.max_conflicts = 0;
    /* The transport refuses the consumer (no topics): nothing is left. */
    cfg.n_topics = 0;
    assert_int_equal(loom_inbox_consumer_open(e.t, &cfg, &icfg, ibh_fn, &h, &ic,
                                              err, sizeof err),
                     LOOM_EINVAL);
    assert_non_null(strstr(err, "transport refused"));
    assert_null(ic);
    cfg.n_topics = 1;
    /* A server that is not there. */
    icfg.conninfo = "host=/nonexistent port=1 connect_timeout=1";
    assert_int_equal(loom_inbox_consumer_open(e.t, &cfg, &icfg, ibh_fn, &h, &ic,
                                              err, sizeof err),
                     LOOM_ECONN);
    assert_non_null(strstr(err, "connect"));
    assert_null(ic);
    /* err may be NULL. */
    assert_int_equal(
        loom_inbox_consumer_open(e.t, &cfg, &icfg, ibh_fn, &h, &ic, NULL, 0),
        LOOM_ECONN);

    assert_int_equal(loom_inbox_consumer_stats_get(NULL, &st), LOOM_EINVAL);
    loom_inbox_consumer_close(NULL);
    /* And a good one still opens and closes. */
    icfg.conninfo = NULL;
    ic = ib_open(&e, "ib-bad", "ib.bad", 0, &icfg, &h);
    assert_int_equal(loom_inbox_consumer_stats_get(ic, NULL), LOOM_EINVAL);
    loom_inbox_consumer_close(ic);
    tpt_close(&e);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, est_setup, est_teardown)
        T(test_inbox_same_ids_published_twice_apply_once),
        T(test_inbox_close_mid_stream_and_reopen_applies_once),
        T(test_inbox_lost_connection_retries_and_applies_once),
        T(test_inbox_poison_fails_alone_and_is_dead_lettered),
        T(test_inbox_refused_but_processed_is_a_duplicate),
        T(test_inbox_message_over_the_limits_is_dead_lettered_on_its_first_delivery),
        T(test_inbox_max_payload_sets_the_payload_limit),
        T(test_inbox_expiry_deletes_entries_past_the_window),
        T(test_inbox_runtime_stop_finishes_the_transaction_in_flight),
        T(test_inbox_end_to_end_with_the_outbox_and_the_relay),
        T(test_inbox_lone_conflict_is_handled_again_not_failed),
        T(test_inbox_handler_outage_retries_without_failing_the_message),
        T(test_inbox_conflicts_past_max_conflicts_fail_the_message),
        T(test_inbox_conflicting_batch_is_handled_one_by_one),
        T(test_inbox_consumer_bad_arguments),
#undef T
    };
    tpt_debug_from_env();
    return cmocka_run_group_tests_name("outbox.inbox_consumer", tests,
                                       group_setup, est_group_teardown);
}
