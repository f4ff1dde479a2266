/*
 * Units of work against a real PostgreSQL: events (loom_tx_append),
 * outbox messages (loom_outbox_add), an inbox mark (loom_inbox_mark) and
 * plain SQL commit together with loom_store_commit(), or, when any of
 * them fails, none of them does, and the error names the statement. The
 * same holds inside a transactional subscription handler, whose
 * checkpoint joins the transaction.
 *
 * "Nothing visible" is checked against every table a unit of work
 * touches: loom.events and loom.streams, loom.outbox, loom.inbox.
 */
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

#include "estest.h"
#include "loom/inbox.h"
#include "loom/outbox.h"
#include "loom/subscription.h"
#include "tx_int.h"

static loom_tx *
tx_new(void)
{
    loom_tx *tx = NULL;

    assert_int_equal(loom_tx_new(&tx), LOOM_OK);
    assert_non_null(tx);
    assert_int_equal(loom_tx_count(tx), 0);
    assert_string_equal(loom_tx_errmsg(tx), "");
    return tx;
}

/* An outbox message with a topic and a string payload, the rest zero. */
static void
msg_init(loom_outbox_message *m, const char *topic, const char *payload)
{
    memset(m, 0, sizeof *m);
    m->topic = topic;
    m->payload = payload;
    m->payload_len = payload ? strlen(payload) : 0;
}

/* Queues one event of `type` on `stream`. */
static loom_err
tx_append1(loom_tx *tx, const char *stream, int64_t expected,
           loom_event_data *ev)
{
    est_event(ev, "uow.Happened", "x", 1);
    return loom_tx_append(tx, stream, expected, ev, 1);
}

static void
uuid_text(const loom_uuid *id, char out[LOOM_UUID_STRLEN])
{
    loom_uuid_format(id, out);
}

/* How many rows of everything a unit of work writes carry `tag`: events
 * of streams "<tag>-*", outbox rows of outbox "<tag>", inbox rows of
 * consumer "<tag>". */
static long long
rows_tagged(const char *tag)
{
    return est_ll("SELECT (SELECT count(*) FROM loom.events WHERE category "
                  "= '%s') + (SELECT count(*) FROM loom.streams WHERE "
                  "category = '%s') + (SELECT count(*) FROM loom.outbox "
                  "WHERE outbox = '%s') + (SELECT count(*) FROM loom.inbox "
                  "WHERE consumer = '%s')",
                  tag, tag, tag, tag);
}

/* Queues an event on "<tag>-1", an outbox message on "<tag>" and an
 * inbox mark for consumer "<tag>": statements 0, 1 and 2. */
static void
queue_all_three(loom_tx *tx, const char *tag, int64_t expected,
                const loom_uuid *mark)
{
    char stream[64];
    loom_event_data ev;
    loom_outbox_message m;

    snprintf(stream, sizeof stream, "%s-1", tag);
    assert_int_equal(tx_append1(tx, stream, expected, &ev), LOOM_OK);
    msg_init(&m, "uow.topic", "payload");
    assert_int_equal(loom_outbox_add(tx, tag, &m, 1), LOOM_OK);
    assert_int_equal(loom_inbox_mark(tx, tag, mark), LOOM_OK);
}

/* ------------------------------------------------------------------ */

static void
test_uow_commits_events_outbox_and_inbox_together(void **state)
{
    est_fx *fx = *state;
    loom_tx *tx = tx_new();
    loom_event_data ev[2];
    loom_outbox_message m[2];
    loom_header hd[1] = {{"a", "b"}};
    loom_uuid fixed, mark;
    char id0[LOOM_UUID_STRLEN], id1[LOOM_UUID_STRLEN], idm[LOOM_UUID_STRLEN];
    char e0[LOOM_UUID_STRLEN], e1[LOOM_UUID_STRLEN];

    est_event(&ev[0], "uow.Created", "one", 3);
    est_event(&ev[1], "uow.Updated", "two", 3);
    ev[1].correlation_id = "corr-1";
    assert_int_equal(loom_tx_append(tx, "uowa-1", LOOM_EXPECT_NO_STREAM, ev, 2),
                     LOOM_OK);
    assert_false(loom_uuid_is_nil(&ev[0].id)); /* generated, written back */
    assert_false(loom_uuid_is_nil(&ev[1].id));

    msg_init(&m[0], "orders.created", "p0");
    m[0].key = "k1";
    m[0].key_len = 2;
    m[0].type = "shop.OrderCreated";
    m[0].headers = hd;
    m[0].n_headers = 1;
    m[0].deliver_at = INT64_C(1700000000123456);
    msg_init(&m[1], "orders.audit", NULL);
    assert_int_equal(
        loom_uuid_parse(&fixed, "01890a5d-ac96-774b-bcce-b302099a8057"),
        LOOM_OK);
    m[1].id = fixed;
    assert_int_equal(loom_outbox_add(tx, "uowa", m, 2), LOOM_OK);
    /* A generated id is a UUIDv7; a given one is kept. */
    assert_false(loom_uuid_is_nil(&m[0].id));
    assert_int_equal(m[0].id.bytes[6] >> 4, 7);
    assert_memory_equal(m[1].id.bytes, fixed.bytes, 16);

    assert_int_equal(loom_uuid_generate(&mark), LOOM_OK);
    assert_int_equal(loom_inbox_mark(tx, "uowa", &mark), LOOM_OK);
    assert_int_equal(loom_tx_count(tx), 3);
    assert_string_equal(loom_tx_errmsg(tx), "");

    assert_int_equal(loom_store_commit(fx->s, tx), LOOM_OK);
    assert_int_equal(loom_store_commit_failed_at(fx->s), -1);
    assert_int_equal(loom_tx_count(tx), 3); /* commit leaves it as it was */

    uuid_text(&m[0].id, id0);
    uuid_text(&m[1].id, id1);
    uuid_text(&mark, idm);
    uuid_text(&ev[0].id, e0);
    uuid_text(&ev[1].id, e1);
    /* The events, with their written-back ids. */
    assert_int_equal(est_ll("SELECT count(*) FROM loom.events WHERE stream = "
                            "'uowa-1' AND ((version = 0 AND event_id = '%s' "
                            "AND type = 'uow.Created') OR (version = 1 AND "
                            "event_id = '%s' AND type = 'uow.Updated'))",
                            e0, e1),
                     2);
    /* Every field of the outbox rows, in the order given. */
    assert_int_equal(
        est_ll("SELECT count(*) FROM loom.outbox WHERE outbox = 'uowa' AND "
               "topic = 'orders.created' AND key = 'k1'::bytea AND type = "
               "'shop.OrderCreated' AND encode(headers, 'hex') = "
               "'1a060a0161120162' AND payload = 'p0'::bytea AND message_id "
               "= '%s' AND deliver_at = '2023-11-14 22:13:20.123456+00'",
               id0),
        1);
    assert_int_equal(
        est_ll("SELECT count(*) FROM loom.outbox WHERE outbox = 'uowa' AND "
               "topic = 'orders.audit' AND key IS NULL AND type IS NULL AND "
               "headers IS NULL AND length(payload) = 0 AND message_id = "
               "'%s' AND deliver_at IS NULL",
               id1),
        1);
    assert_int_equal(est_ll("SELECT count(*) FROM (SELECT topic, position, "
                            "lag(position) OVER (ORDER BY position) AS prev "
                            "FROM loom.outbox WHERE outbox = 'uowa') t WHERE "
                            "topic = 'orders.audit' AND prev IS NOT NULL"),
                     1);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.inbox WHERE consumer "
                            "= 'uowa' AND message_id = '%s'",
                            idm),
                     1);
    /* One transaction wrote all of it. */
    assert_int_equal(
        est_ll("SELECT count(DISTINCT x) FROM (SELECT xmin::text AS x FROM "
               "loom.events WHERE stream = 'uowa-1' UNION ALL SELECT "
               "xmin::text FROM loom.outbox WHERE outbox = 'uowa' UNION ALL "
               "SELECT xmin::text FROM loom.inbox WHERE consumer = 'uowa') "
               "t"),
        1);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.outbox o, loom.events "
                            "e WHERE o.outbox = 'uowa' AND e.stream = "
                            "'uowa-1' AND o.tx = e.tx"),
                     4);
    loom_tx_free(tx);
}

static void
test_uow_version_conflict_rolls_everything_back(void **state)
{
    est_fx *fx = *state;
    loom_tx *tx = tx_new();
    loom_event_data ev;
    loom_uuid mark;
    int64_t version = -9;

    assert_int_equal(tx_append1(tx, "uowb-1", LOOM_EXPECT_NO_STREAM, &ev),
                     LOOM_OK);
    assert_int_equal(loom_store_commit(fx->s, tx), LOOM_OK);
    assert_int_equal(rows_tagged("uowb"), 2); /* the event, its stream */

    /* The mark first (as loom/inbox.h asks), then the rest. */
    loom_tx_reset(tx);
    assert_int_equal(loom_uuid_generate(&mark), LOOM_OK);
    assert_int_equal(loom_inbox_mark(tx, "uowb", &mark), LOOM_OK);
    {
        loom_outbox_message m;
        msg_init(&m, "uow.topic", "payload");
        assert_int_equal(loom_outbox_add(tx, "uowb", &m, 1), LOOM_OK);
    }
    assert_int_equal(tx_append1(tx, "uowb-1", LOOM_EXPECT_NO_STREAM, &ev),
                     LOOM_OK);
    assert_int_equal(loom_store_commit(fx->s, tx), LOOM_ECONFLICT);
    assert_int_equal(loom_store_commit_failed_at(fx->s), 2);
    assert_string_equal(loom_store_sqlstate(fx->s), "LM001");
    assert_non_null(strstr(loom_store_errmsg(fx->s), "uowb-1"));
    assert_int_equal(rows_tagged("uowb"), 2);
    assert_int_equal(loom_store_stream_version(fx->s, "uowb-1", &version),
                     LOOM_OK);
    assert_int_equal(version, 0);

    /* Reset, then the right expectation commits all three. */
    loom_tx_reset(tx);
    assert_int_equal(loom_tx_count(tx), 0);
    queue_all_three(tx, "uowb", 0, &mark);
    assert_int_equal(loom_store_commit(fx->s, tx), LOOM_OK);
    assert_int_equal(loom_store_commit_failed_at(fx->s), -1);
    assert_int_equal(rows_tagged("uowb"), 2 + 1 + 1 + 1);
    loom_tx_free(tx);
}

static void
test_uow_duplicate_inbox_mark_rolls_everything_back(void **state)
{
    est_fx *fx = *state;
    loom_tx *tx = tx_new();
    loom_uuid mark;
    loom_event_data ev;

    assert_int_equal(loom_uuid_generate(&mark), LOOM_OK);
    assert_int_equal(loom_inbox_mark(tx, "uowc", &mark), LOOM_OK);
    assert_int_equal(loom_store_commit(fx->s, tx), LOOM_OK);
    assert_int_equal(rows_tagged("uowc"), 1);

    /* Marked last: everything before it rolls back too. */
    loom_tx_reset(tx);
    queue_all_three(tx, "uowc", LOOM_EXPECT_ANY, &mark);
    assert_int_equal(loom_store_commit(fx->s, tx), LOOM_EALREADY);
    assert_int_equal(loom_store_commit_failed_at(fx->s), 2);
    assert_string_equal(loom_store_sqlstate(fx->s), "LM015");
    assert_non_null(strstr(loom_store_errmsg(fx->s), "already processed"));
    assert_int_equal(rows_tagged("uowc"), 1);

    /* Marked first, as recommended: the same answer at statement 0. */
    loom_tx_reset(tx);
    assert_int_equal(loom_inbox_mark(tx, "uowc", &mark), LOOM_OK);
    assert_int_equal(tx_append1(tx, "uowc-1", LOOM_EXPECT_ANY, &ev), LOOM_OK);
    assert_int_equal(loom_store_commit(fx->s, tx), LOOM_EALREADY);
    assert_int_equal(loom_store_commit_failed_at(fx->s), 0);
    assert_int_equal(rows_tagged("uowc"), 1);

    /* The same id under another consumer is another consumer's business. */
    loom_tx_reset(tx);
    assert_int_equal(loom_inbox_mark(tx, "uowc-other", &mark), LOOM_OK);
    assert_int_equal(loom_store_commit(fx->s, tx), LOOM_OK);
    loom_tx_free(tx);
}

static void
test_uow_failing_statement_rolls_everything_back(void **state)
{
    est_fx *fx = *state;
    loom_tx *tx = tx_new();
    loom_uuid mark;
    loom_event_data ev;

    assert_int_equal(loom_uuid_generate(&mark), LOOM_OK);
    queue_all_three(tx, "uowd", LOOM_EXPECT_ANY, &mark);
    assert_int_equal(
        loom_tx_exec(tx, "SELECT 1 / $1::int", 1, (const char *const[]){"0"}),
        LOOM_OK);
    assert_int_equal(loom_store_commit(fx->s, tx), LOOM_EDB);
    assert_int_equal(loom_store_commit_failed_at(fx->s), 3);
    assert_string_equal(loom_store_sqlstate(fx->s), "22012");
    assert_int_equal(rows_tagged("uowd"), 0);

    /* A failure in the middle: the index says which. */
    loom_tx_reset(tx);
    assert_int_equal(tx_append1(tx, "uowd-1", LOOM_EXPECT_ANY, &ev), LOOM_OK);
    assert_int_equal(loom_tx_exec(tx, "SELECT 1 / 0", 0, NULL), LOOM_OK);
    assert_int_equal(loom_inbox_mark(tx, "uowd", &mark), LOOM_OK);
    assert_int_equal(loom_store_commit(fx->s, tx), LOOM_EDB);
    assert_int_equal(loom_store_commit_failed_at(fx->s), 1);
    assert_int_equal(rows_tagged("uowd"), 0);

    /* An event id already used: LOOM_EDUPLICATE, nothing written. */
    loom_tx_reset(tx);
    assert_int_equal(tx_append1(tx, "uowd-1", LOOM_EXPECT_ANY, &ev), LOOM_OK);
    assert_int_equal(loom_store_commit(fx->s, tx), LOOM_OK);
    assert_int_equal(rows_tagged("uowd"), 2);
    loom_tx_reset(tx);
    assert_int_equal(loom_inbox_mark(tx, "uowd", &mark), LOOM_OK);
    assert_int_equal(loom_tx_append(tx, "uowd-2", LOOM_EXPECT_ANY, &ev, 1),
                     LOOM_OK);
    assert_int_equal(loom_store_commit(fx->s, tx), LOOM_EDUPLICATE);
    assert_int_equal(loom_store_commit_failed_at(fx->s), 1);
    assert_int_equal(rows_tagged("uowd"), 2);

    /* The handle is fine afterwards. */
    loom_tx_reset(tx);
    queue_all_three(tx, "uowd", LOOM_EXPECT_ANY, &mark);
    assert_int_equal(loom_store_commit(fx->s, tx), LOOM_OK);
    assert_int_equal(rows_tagged("uowd"), 2 + 1 + 1 + 1);
    loom_tx_free(tx);
}

/* A unit of work is reusable after loom_tx_reset(), and committing one
 * twice does not append twice: its ids were fixed when it was built. */
static void
test_uow_reset_reuse(void **state)
{
    est_fx *fx = *state;
    loom_tx *tx = tx_new();
    loom_event_data ev;

    for (int i = 0; i < 5; i++) {
        loom_uuid mark;
        loom_tx_reset(tx);
        assert_int_equal(loom_tx_count(tx), 0);
        assert_int_equal(loom_uuid_generate(&mark), LOOM_OK);
        queue_all_three(tx, "uowe", i - 1, &mark);
        assert_int_equal(loom_store_commit(fx->s, tx), LOOM_OK);
    }
    assert_int_equal(rows_tagged("uowe"), 5 * 3 + 1);
    assert_int_equal(est_ll("SELECT version FROM loom.streams WHERE stream = "
                            "'uowe-1'"),
                     4);

    /* A reset after a failure clears the message too. */
    loom_tx_reset(tx);
    assert_int_equal(loom_tx_exec(tx, "", 0, NULL), LOOM_EINVAL);
    assert_string_not_equal(loom_tx_errmsg(tx), "");
    loom_tx_reset(tx);
    assert_string_equal(loom_tx_errmsg(tx), "");

    /* The same tx committed twice: the retry fails on the event id. */
    assert_int_equal(tx_append1(tx, "uowe-1", LOOM_EXPECT_ANY, &ev), LOOM_OK);
    assert_int_equal(loom_store_commit(fx->s, tx), LOOM_OK);
    assert_int_equal(loom_store_commit(fx->s, tx), LOOM_EDUPLICATE);
    assert_int_equal(est_ll("SELECT version FROM loom.streams WHERE stream = "
                            "'uowe-1'"),
                     5);
    loom_tx_free(tx);
}

/* ------------------------------------------------------------------ */
/* Bad arguments                                                       */

/* rc is `want`, nothing was queued, and errmsg contains `needle`. */
static void
expect_refused(loom_tx *tx, loom_err rc, loom_err want, const char *needle)
{
    if (rc != want)
        fail_msg("got %s, want %s (%s)", loom_err_name(rc), loom_err_name(want),
                 loom_tx_errmsg(tx));
    assert_int_equal(loom_tx_count(tx), 1);
    if (strstr(loom_tx_errmsg(tx), needle) == NULL)
        fail_msg("message \"%s\" lacks \"%s\"", loom_tx_errmsg(tx), needle);
}

static void
test_uow_tx_bad_arguments(void **state)
{
    loom_tx *tx = tx_new();
    const char *vals[1] = {"1"};
    int len[1] = {-2};
    uint32_t types[1] = {23};

    (void) state;
    assert_int_equal(loom_tx_new(NULL), LOOM_EINVAL);
    loom_tx_free(NULL);
    loom_tx_reset(NULL);
    assert_non_null(loom_tx_errmsg(NULL));
    assert_int_equal(loom_tx_count(NULL), 0);
    assert_int_equal(loom_tx_exec(NULL, "SELECT 1", 0, NULL), LOOM_EINVAL);

    /* One good statement, then refusals that must not add to it. */
    assert_int_equal(loom_tx_exec(tx, "SELECT 1", 0, NULL), LOOM_OK);
    expect_refused(tx, loom_tx_exec(tx, NULL, 0, NULL), LOOM_EINVAL, "NULL");
    expect_refused(tx, loom_tx_exec(tx, "", 0, NULL), LOOM_EINVAL, "empty");
    expect_refused(tx, loom_tx_exec(tx, "SELECT $1", 65, vals), LOOM_EINVAL,
                   "LOOM_TX_MAX_PARAMS");
    expect_refused(tx, loom_tx_exec(tx, "SELECT $1", -1, vals), LOOM_EINVAL,
                   "parameters");
    expect_refused(tx, loom_tx_exec(tx, "SELECT $1", 1, NULL), LOOM_EINVAL,
                   "values is NULL");
    expect_refused(tx, loom_tx_exec_binary(tx, "SELECT $1", 1, NULL, vals, len),
                   LOOM_EINVAL, "types or lengths");
    expect_refused(tx,
                   loom_tx_exec_binary(tx, "SELECT $1", 1, types, vals, len),
                   LOOM_EINVAL, "negative length");
    /* A success clears the message. */
    assert_int_equal(loom_tx_exec(tx, "SELECT 2", 0, NULL), LOOM_OK);
    assert_string_equal(loom_tx_errmsg(tx), "");
    loom_tx_free(tx);
}

static void
test_uow_append_bad_arguments(void **state)
{
    loom_tx *tx = tx_new();
    loom_event_data ev, two[2];
    loom_header bad_hd[1] = {{"", "v"}};
    char longname[300], *big;
    const char bad_utf8[] = {'a', (char) 0xc3, (char) 0x28, 0};

    (void) state;
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    assert_int_equal(loom_tx_exec(tx, "SELECT 1", 0, NULL), LOOM_OK);
    est_event(&ev, "uow.E", "x", 1);
    assert_int_equal(loom_tx_append(NULL, "s-1", LOOM_EXPECT_ANY, &ev, 1),
                     LOOM_EINVAL);
    expect_refused(tx, loom_tx_append(tx, NULL, LOOM_EXPECT_ANY, &ev, 1),
                   LOOM_EINVAL, "stream name is empty");
    expect_refused(tx, loom_tx_append(tx, "", LOOM_EXPECT_ANY, &ev, 1),
                   LOOM_EINVAL, "stream name is empty");
    expect_refused(tx, loom_tx_append(tx, bad_utf8, LOOM_EXPECT_ANY, &ev, 1),
                   LOOM_EINVAL, "UTF-8");
    expect_refused(tx, loom_tx_append(tx, longname, LOOM_EXPECT_ANY, &ev, 1),
                   LOOM_ETOOBIG, "255");
    expect_refused(tx, loom_tx_append(tx, "s-1", -3, &ev, 1), LOOM_EINVAL,
                   "expected version -3");
    expect_refused(tx, loom_tx_append(tx, "s-1", LOOM_EXPECT_ANY, NULL, 1),
                   LOOM_EINVAL, "no events");
    expect_refused(tx, loom_tx_append(tx, "s-1", LOOM_EXPECT_ANY, &ev, 0),
                   LOOM_EINVAL, "no events");
    expect_refused(tx, loom_tx_append(tx, "s-1", LOOM_EXPECT_ANY, &ev, 10001),
                   LOOM_ETOOBIG, "max_append");

    est_event(&two[0], "uow.E", "x", 1);
    est_event(&two[1], NULL, "x", 1);
    expect_refused(tx, loom_tx_append(tx, "s-1", LOOM_EXPECT_ANY, two, 2),
                   LOOM_EINVAL, "event 1 has no type");
    two[1].type = bad_utf8;
    expect_refused(tx, loom_tx_append(tx, "s-1", LOOM_EXPECT_ANY, two, 2),
                   LOOM_EINVAL, "event 1: type name is not valid UTF-8");
    two[1].type = longname;
    expect_refused(tx, loom_tx_append(tx, "s-1", LOOM_EXPECT_ANY, two, 2),
                   LOOM_ETOOBIG, "event 1: type name longer");
    two[1].type = "uow.E";
    two[1].schema_version = -1;
    expect_refused(tx, loom_tx_append(tx, "s-1", LOOM_EXPECT_ANY, two, 2),
                   LOOM_EINVAL, "schema_version -1");
    two[1].schema_version = 0;
    two[1].data = NULL;
    expect_refused(tx, loom_tx_append(tx, "s-1", LOOM_EXPECT_ANY, two, 2),
                   LOOM_EINVAL, "data is NULL");
    big = calloc(1, LOOM_DEFAULT_MAX_PAYLOAD + 1);
    two[1].data = big;
    two[1].data_len = LOOM_DEFAULT_MAX_PAYLOAD + 1;
    expect_refused(tx, loom_tx_append(tx, "s-1", LOOM_EXPECT_ANY, two, 2),
                   LOOM_ETOOBIG, "max_payload");
    two[1].data_len = 1;
    two[1].headers = NULL;
    two[1].n_headers = 1;
    expect_refused(tx, loom_tx_append(tx, "s-1", LOOM_EXPECT_ANY, two, 2),
                   LOOM_EINVAL, "headers is NULL");
    two[1].headers = bad_hd;
    expect_refused(tx, loom_tx_append(tx, "s-1", LOOM_EXPECT_ANY, two, 2),
                   LOOM_EINVAL, "header 0 has an empty key");
    /* Metadata over 64 KiB once encoded. */
    {
        loom_header hd[1];
        memset(big, 'v', LOOM_DEFAULT_MAX_METADATA);
        big[LOOM_DEFAULT_MAX_METADATA] = '\0';
        hd[0].key = "k";
        hd[0].value = big;
        two[1].headers = hd;
        expect_refused(tx, loom_tx_append(tx, "s-1", LOOM_EXPECT_ANY, two, 2),
                       LOOM_ETOOBIG, "max_metadata");
    }
    free(big);
    loom_tx_free(tx);
}

static void
test_uow_outbox_bad_arguments(void **state)
{
    loom_tx *tx = tx_new();
    loom_outbox_message m[2];
    loom_header hd[1] = {{"k", NULL}}, ok_hd[1] = {{"k", "v"}};
    const char bad_utf8[] = {'a', (char) 0xff, 0};
    char name64[65], topic250[251], *big;

    (void) state;
    memset(name64, 'o', 64);
    name64[64] = '\0';
    memset(topic250, 't', 250);
    topic250[250] = '\0';
    assert_int_equal(loom_tx_exec(tx, "SELECT 1", 0, NULL), LOOM_OK);
    msg_init(&m[0], "t.ok", "p");
    msg_init(&m[1], "t.ok", "p");
    assert_int_equal(loom_outbox_add(NULL, NULL, m, 1), LOOM_EINVAL);
    expect_refused(tx, loom_outbox_add(tx, NULL, NULL, 1), LOOM_EINVAL,
                   "no messages");
    expect_refused(tx, loom_outbox_add(tx, NULL, m, 0), LOOM_EINVAL,
                   "no messages");
    expect_refused(tx, loom_outbox_add(tx, "", m, 1), LOOM_EINVAL,
                   "outbox name");
    expect_refused(tx, loom_outbox_add(tx, "has space", m, 1), LOOM_EINVAL,
                   "outbox name");
    expect_refused(tx, loom_outbox_add(tx, "ümlaut", m, 1), LOOM_EINVAL,
                   "outbox name");
    expect_refused(tx, loom_outbox_add(tx, name64, m, 1), LOOM_EINVAL,
                   "outbox name");
    name64[63] = '\0'; /* 63 is fine */
    assert_int_equal(loom_outbox_add(tx, name64, m, 1), LOOM_OK);
    memset(&m[0].id, 0, sizeof m[0].id);
    loom_tx_reset(tx);
    assert_int_equal(loom_tx_exec(tx, "SELECT 1", 0, NULL), LOOM_OK);

    m[1].topic = NULL;
    expect_refused(tx, loom_outbox_add(tx, NULL, m, 2), LOOM_EINVAL,
                   "outbox message 1 has no topic");
    m[1].topic = "";
    expect_refused(tx, loom_outbox_add(tx, NULL, m, 2), LOOM_EINVAL,
                   "outbox message 1 has no topic");
    m[1].topic = topic250;
    expect_refused(tx, loom_outbox_add(tx, NULL, m, 2), LOOM_ETOOBIG,
                   "LOOM_OUTBOX_MAX_TOPIC");
    m[1].topic = bad_utf8;
    expect_refused(tx, loom_outbox_add(tx, NULL, m, 2), LOOM_EINVAL,
                   "message 1: topic is not valid UTF-8");
    m[1].topic = "t.ok";
    m[1].type = bad_utf8;
    expect_refused(tx, loom_outbox_add(tx, NULL, m, 2), LOOM_EINVAL,
                   "type name is not valid UTF-8");
    m[1].type = topic250; /* 250 bytes: under 255, fine */
    assert_int_equal(loom_outbox_add(tx, NULL, m, 2), LOOM_OK);
    memset(&m[0].id, 0, sizeof m[0].id);
    memset(&m[1].id, 0, sizeof m[1].id);
    loom_tx_reset(tx);
    assert_int_equal(loom_tx_exec(tx, "SELECT 1", 0, NULL), LOOM_OK);
    m[1].type = NULL;
    m[1].key_len = 3;
    expect_refused(tx, loom_outbox_add(tx, NULL, m, 2), LOOM_EINVAL,
                   "key is NULL");
    big = calloc(1, LOOM_OUTBOX_MAX_PAYLOAD + 1);
    m[1].key = big;
    m[1].key_len = LOOM_OUTBOX_MAX_KEY + 1;
    expect_refused(tx, loom_outbox_add(tx, NULL, m, 2), LOOM_ETOOBIG,
                   "LOOM_OUTBOX_MAX_KEY");
    m[1].key = NULL;
    m[1].key_len = 0;
    m[1].payload = NULL;
    expect_refused(tx, loom_outbox_add(tx, NULL, m, 2), LOOM_EINVAL,
                   "payload is NULL");
    m[1].payload = big;
    m[1].payload_len = LOOM_OUTBOX_MAX_PAYLOAD + 1;
    expect_refused(tx, loom_outbox_add(tx, NULL, m, 2), LOOM_ETOOBIG,
                   "LOOM_OUTBOX_MAX_PAYLOAD");
    m[1].payload_len = 1;
    m[1].n_headers = 1;
    expect_refused(tx, loom_outbox_add(tx, NULL, m, 2), LOOM_EINVAL,
                   "headers is NULL");
    m[1].headers = hd;
    expect_refused(tx, loom_outbox_add(tx, NULL, m, 2), LOOM_EINVAL,
                   "header 0 has an empty key or a NULL value");
    hd[0].value = bad_utf8;
    expect_refused(tx, loom_outbox_add(tx, NULL, m, 2), LOOM_EINVAL,
                   "header 0 is not valid UTF-8");
    /* Headers over 64 KiB once encoded. */
    memset(big, 'h', LOOM_OUTBOX_MAX_HEADERS);
    big[LOOM_OUTBOX_MAX_HEADERS] = '\0';
    hd[0].value = big;
    expect_refused(tx, loom_outbox_add(tx, NULL, m, 2), LOOM_ETOOBIG,
                   "LOOM_OUTBOX_MAX_HEADERS");
    m[1].headers = ok_hd;
    m[1].deliver_at = -1;
    expect_refused(tx, loom_outbox_add(tx, NULL, m, 2), LOOM_EINVAL,
                   "deliver_at");
    m[1].deliver_at = 0;
    /* Nothing refused wrote an id back. */
    assert_true(loom_uuid_is_nil(&m[0].id));
    /* Two messages of one call with one id: the later would be lost as a
     * duplicate of the earlier. */
    assert_int_equal(loom_uuid_generate(&m[0].id), LOOM_OK);
    m[1].id = m[0].id;
    expect_refused(tx, loom_outbox_add(tx, NULL, m, 2), LOOM_EINVAL,
                   "outbox messages 0 and 1 have the same id");
    memset(&m[0].id, 0, sizeof m[0].id);
    memset(&m[1].id, 0, sizeof m[1].id);
    assert_int_equal(loom_outbox_add(tx, NULL, m, 2), LOOM_OK);
    assert_false(loom_uuid_is_nil(&m[0].id));
    free(big);
    loom_tx_free(tx);
}

static void
test_uow_inbox_mark_bad_arguments(void **state)
{
    loom_tx *tx = tx_new();
    loom_uuid id, nil;
    const char bad_utf8[] = {(char) 0xe2, (char) 0x82, 0};
    char name[257];

    (void) state;
    memset(&nil, 0, sizeof nil);
    memset(name, 'c', 256);
    name[256] = '\0';
    assert_int_equal(loom_uuid_generate(&id), LOOM_OK);
    assert_int_equal(loom_tx_exec(tx, "SELECT 1", 0, NULL), LOOM_OK);
    assert_int_equal(loom_inbox_mark(NULL, "c", &id), LOOM_EINVAL);
    expect_refused(tx, loom_inbox_mark(tx, NULL, &id), LOOM_EINVAL, "NULL");
    expect_refused(tx, loom_inbox_mark(tx, "", &id), LOOM_EINVAL, "empty");
    expect_refused(tx, loom_inbox_mark(tx, bad_utf8, &id), LOOM_EINVAL,
                   "UTF-8");
    expect_refused(tx, loom_inbox_mark(tx, name, &id), LOOM_ETOOBIG,
                   "LOOM_INBOX_MAX_CONSUMER");
    expect_refused(tx, loom_inbox_mark(tx, "c", NULL), LOOM_EINVAL,
                   "id is NULL");
    expect_refused(tx, loom_inbox_mark(tx, "c", &nil), LOOM_EINVAL,
                   "id is nil");
    name[255] = '\0'; /* 255 bytes is the limit, included */
    assert_int_equal(loom_inbox_mark(tx, name, &id), LOOM_OK);
    loom_tx_free(tx);
}

static void
test_uow_commit_bad_arguments(void **state)
{
    est_fx *fx = *state;
    loom_tx *tx = tx_new();
    loom_position start = {0, 0};
    loom_events *page = NULL;

    assert_int_equal(loom_store_commit(NULL, tx), LOOM_EINVAL);
    assert_int_equal(loom_store_commit_failed_at(NULL), -1);
    assert_int_equal(loom_store_commit(fx->s, NULL), LOOM_EINVAL);
    assert_non_null(strstr(loom_store_errmsg(fx->s), "NULL"));
    assert_int_equal(loom_store_commit(fx->s, tx), LOOM_EINVAL);
    assert_non_null(strstr(loom_store_errmsg(fx->s), "empty"));
    assert_int_equal(loom_store_commit_failed_at(fx->s), -1);
    /* A non-blocking operation in flight: busy, and it is not disturbed. */
    assert_int_equal(loom_tx_exec(tx, "SELECT 1", 0, NULL), LOOM_OK);
    assert_int_equal(loom_store_read_all_send(fx->s, start, 10), LOOM_OK);
    assert_int_equal(loom_store_commit(fx->s, tx), LOOM_EBUSY);
    while (loom_store_poll(fx->s, NULL) == LOOM_EAGAIN)
        est_sleep_ms(1);
    assert_int_equal(loom_store_events_recv(fx->s, &page), LOOM_OK);
    loom_events_free(page);
    assert_int_equal(loom_store_commit(fx->s, tx), LOOM_OK);
    loom_tx_free(tx);
}

/* ------------------------------------------------------------------ */
/* Transaction control                                                 */

/* The unit of work is one transaction that commit begins and ends, so
 * SQL that would end or split it is refused when queued, however it is
 * spelled; look-alikes are not. */
static void
test_uow_refuses_transaction_control(void **state)
{
    static const char *const refused[] = {
        "ROLLBACK",
        "rollback",
        "  \n\tCommit",
        "COMMIT;",
        "END",
        "end transaction",
        "ABORT",
        "BEGIN",
        "begin isolation level serializable",
        "START TRANSACTION",
        "-- a note\nROLLBACK",
        "/* a /* nested */ comment */ COMMIT",
        "/**/-- x\n/* y */  savepoint a",
        "RELEASE SAVEPOINT a",
        "ROLLBACK TO SAVEPOINT a",
        "PREPARE TRANSACTION 'x'",
        "prepare /* c */ transaction 'x'",
        "COMMIT PREPARED 'x'",
        "ROLLBACK PREPARED 'x'",
    };
    static const char *const accepted[] = {
        "SELECT 'COMMIT'",
        "SELECT 1 -- ROLLBACK",
        "/* COMMIT */ SELECT 1",
        "/* unterminated",
        "PREPARE p AS SELECT 1",
        "SELECT 1 AS rollback",
        "committed",
        "ending",
        "begin_x",
        "end$",
        "abort\xc3\xa9",
    };
    loom_tx *tx = tx_new();

    (void) state;
    assert_int_equal(loom_tx_exec(tx, "SELECT 1", 0, NULL), LOOM_OK);
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        expect_refused(tx, loom_tx_exec(tx, refused[i], 0, NULL), LOOM_EINVAL,
                       "commits itself");
        expect_refused(tx,
                       loom_tx_exec_binary(tx, refused[i], 0, NULL, NULL, NULL),
                       LOOM_EINVAL, "transaction control");
    }
    for (size_t i = 0; i < sizeof accepted / sizeof accepted[0]; i++) {
        if (loom_tx_exec(tx, accepted[i], 0, NULL) != LOOM_OK)
            fail_msg("\"%s\" refused: %s", accepted[i], loom_tx_errmsg(tx));
        loom_tx_reset(tx);
        assert_int_equal(loom_tx_exec(tx, "SELECT 1", 0, NULL), LOOM_OK);
    }
    loom_tx_free(tx);
}

/* Several statements in one text cannot split the transaction either:
 * the extended query protocol, which every statement is sent with,
 * refuses them, so nothing of the unit of work commits. */
static void
test_uow_several_statements_in_one_text_fail(void **state)
{
    est_fx *fx = *state;
    loom_tx *tx = tx_new();
    loom_event_data ev;

    assert_int_equal(tx_append1(tx, "tcm-1", LOOM_EXPECT_ANY, &ev), LOOM_OK);
    assert_int_equal(loom_tx_exec(tx, "SELECT 1; ROLLBACK", 0, NULL), LOOM_OK);
    assert_int_equal(loom_store_commit(fx->s, tx), LOOM_EDB);
    assert_int_equal(loom_store_commit_failed_at(fx->s), 1);
    assert_int_equal(rows_tagged("tcm"), 0);
    loom_tx_reset(tx);
    assert_int_equal(tx_append1(tx, "tcm-1", LOOM_EXPECT_ANY, &ev), LOOM_OK);
    assert_int_equal(loom_tx_exec(tx, "SELECT 1; COMMIT", 0, NULL), LOOM_OK);
    assert_int_equal(loom_tx_exec(tx, "SELECT 1 / 0", 0, NULL), LOOM_OK);
    assert_int_equal(loom_store_commit(fx->s, tx), LOOM_EDB);
    assert_int_equal(rows_tagged("tcm"), 0);
    loom_tx_free(tx);
}

/* Queues "SELECT 1" and rewrites its text in place to `sql` (8 bytes):
 * transaction control that got past loom_tx_exec()'s check, to test the
 * commit's own check behind it. */
static void
queue_behind_the_check(loom_tx *tx, const char *sql)
{
    assert_int_equal(strlen(sql), strlen("SELECT 1"));
    assert_int_equal(loom_tx_exec(tx, "SELECT 1", 0, NULL), LOOM_OK);
    memcpy(tx->data.data + tx->stmts[tx->n_stmts - 1].sql, sql, strlen(sql));
}

/* rc is LOOM_EDB, statement `at` is blamed, the message says what
 * happened (`needle`), and the handle works afterwards. */
static void
expect_split(est_fx *fx, loom_err rc, int at, const char *needle)
{
    const char *msg = loom_store_errmsg(fx->s);
    loom_tx *ok = tx_new();

    if (rc != LOOM_EDB)
        fail_msg("got %s (%s), want LOOM_EDB", loom_err_name(rc), msg);
    assert_int_equal(loom_store_commit_failed_at(fx->s), at);
    if (strstr(msg, needle) == NULL || strstr(msg, "commits itself") == NULL)
        fail_msg("message \"%s\" lacks \"%s\"", msg, needle);
    /* No transaction block was left behind on the session. */
    assert_int_equal(loom_tx_exec(ok, "SELECT 1", 0, NULL), LOOM_OK);
    assert_int_equal(loom_store_commit(fx->s, ok), LOOM_OK);
    assert_string_equal(loom_store_errmsg(fx->s), "");
    loom_tx_free(ok);
}

static void
test_uow_transaction_control_past_the_check_fails_the_commit(void **state)
{
    est_fx *fx = *state;
    loom_tx *tx = tx_new();
    loom_event_data ev;

    /* ROLLBACK: nothing committed, and the commit must not say LOOM_OK. */
    assert_int_equal(tx_append1(tx, "tcr-1", LOOM_EXPECT_ANY, &ev), LOOM_OK);
    queue_behind_the_check(tx, "ROLLBACK");
    expect_split(fx, loom_store_commit(fx->s, tx), 1, "rolled back");
    assert_int_equal(rows_tagged("tcr"), 0);

    /* COMMIT, then a failure: the first part did commit, and says so. */
    loom_tx_reset(tx);
    assert_int_equal(tx_append1(tx, "tcc-1", LOOM_EXPECT_ANY, &ev), LOOM_OK);
    queue_behind_the_check(tx, "COMMIT  ");
    assert_int_equal(loom_tx_exec(tx, "SELECT 1 / 0", 0, NULL), LOOM_OK);
    assert_int_equal(loom_store_commit(fx->s, tx), LOOM_EDB);
    assert_non_null(strstr(loom_store_errmsg(fx->s), "then statement 2"));
    expect_split(fx, LOOM_EDB, 1, "before it committed");
    assert_int_equal(rows_tagged("tcc"), 2);

    /* BEGIN: the block is left open at the sync point, nothing commits,
     * and the session is rolled back for the next call. */
    loom_tx_reset(tx);
    assert_int_equal(tx_append1(tx, "tcb-1", LOOM_EXPECT_ANY, &ev), LOOM_OK);
    queue_behind_the_check(tx, "BEGIN   ");
    assert_int_equal(loom_tx_exec(tx, "SELECT 2", 0, NULL), LOOM_OK);
    expect_split(fx, loom_store_commit(fx->s, tx), 1, "nothing of it");
    assert_int_equal(rows_tagged("tcb"), 0);
    loom_tx_free(tx);
}

/* ------------------------------------------------------------------ */
/* Inside a transactional subscription handler                         */

struct uh {
    atomic_int calls;
    atomic_int fail; /* queue a failing statement after the effects */
    atomic_int queue_rc;
};

/* Per event of category "uin": an event on "uout-<stream's id>", an
 * outbox message on outbox "uout", and (when asked) a failure. */
static loom_err
uh_fn(loom_tx *tx, const loom_event *const *events, size_t n, void *arg)
{
    struct uh *h = arg;
    loom_err rc = LOOM_OK;

    atomic_fetch_add(&h->calls, 1);
    for (size_t i = 0; i < n && rc == LOOM_OK; i++) {
        char stream[96];
        loom_event_data ev;
        loom_outbox_message m;

        snprintf(stream, sizeof stream, "uout-%s",
                 strchr(events[i]->stream, '-') + 1);
        est_event(&ev, "uow.Derived", events[i]->data, events[i]->data_len);
        rc = loom_tx_append(tx, stream, LOOM_EXPECT_ANY, &ev, 1);
        if (rc == LOOM_OK) {
            msg_init(&m, "uow.derived", NULL);
            m.key = events[i]->stream;
            m.key_len = strlen(events[i]->stream);
            m.payload = events[i]->data;
            m.payload_len = events[i]->data_len;
            rc = loom_outbox_add(tx, "uout", &m, 1);
        }
    }
    if (rc == LOOM_OK && atomic_load(&h->fail))
        rc = loom_tx_exec(tx, "SELECT 1 / 0", 0, NULL);
    if (rc != LOOM_OK)
        atomic_store(&h->queue_rc, (int) rc);
    return rc;
}

struct urun {
    loom_runtime *rt;
    uv_timer_t check, deadline;
    int (*until)(struct urun *r);
    struct uh *h;
    int want_calls;
    PGconn *probe;
    int timed_out;
};

static void
urun_on_check(uv_timer_t *t)
{
    struct urun *r = t->data;

    if (r->until(r))
        loom_runtime_stop(r->rt);
}

static void
urun_on_deadline(uv_timer_t *t)
{
    struct urun *r = t->data;

    r->timed_out = 1;
    loom_runtime_stop(r->rt);
}

/* Runs a subscription "usub" on category "uin" with handler h until
 * `until` holds (checked every 20 ms on the loop). */
static void
urun_go(struct urun *r, struct uh *h, int (*until)(struct urun *))
{
    loom_runtime_config rc = LOOM_RUNTIME_CONFIG_INIT;
    loom_subscription_config c = LOOM_SUBSCRIPTION_CONFIG_INIT;
    loom_subscription *sub = NULL;
    uv_loop_t *loop;

    r->h = h;
    r->until = until;
    r->timed_out = 0;
    rc.conninfo = loomt_dsn();
    rc.reconnect_min_ms = 5;
    rc.reconnect_max_ms = 20;
    rc.poll_ms = 100;
    assert_int_equal(loom_runtime_open(&r->rt, &rc), LOOM_OK);
    c.name = "usub";
    c.source = LOOM_SUB_CATEGORY;
    c.category = "uin";
    c.batch = 4;
    c.conninfo = loomt_dsn();
    c.max_attempts = LOOM_SUB_NEVER_PARK;
    assert_int_equal(loom_subscribe_tx(r->rt, &c, uh_fn, h, &sub), LOOM_OK);
    loop = loom_runtime_loop(r->rt);
    uv_timer_init(loop, &r->check);
    uv_timer_init(loop, &r->deadline);
    r->check.data = r->deadline.data = r;
    uv_timer_start(&r->check, urun_on_check, 20, 20);
    uv_timer_start(&r->deadline, urun_on_deadline, 30000, 0);
    assert_int_equal(loom_runtime_run(r->rt), LOOM_OK);
    uv_close((uv_handle_t *) &r->check, NULL);
    uv_close((uv_handle_t *) &r->deadline, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    PQfinish(r->probe);
    r->probe = NULL;
    loom_subscription_close(sub);
    loom_runtime_close(r->rt);
    assert_int_equal(r->timed_out, 0);
}

static int
until_calls(struct urun *r)
{
    return atomic_load(&r->h->calls) >= r->want_calls;
}

static int
until_checkpoint_at_end(struct urun *r)
{
    return est_try_ll_on(&r->probe,
                         "SELECT count(*) FROM loom.checkpoints c WHERE name "
                         "= 'usub' AND (c.tx, c.position) = (SELECT tx, "
                         "position FROM loom.events WHERE category = 'uin' "
                         "ORDER BY tx DESC, position DESC LIMIT 1)") == 1;
}

static void
test_uow_subscription_handler_appends_and_sends_with_its_checkpoint(
    void **state)
{
    est_fx *fx = *state;
    struct uh h;
    struct urun r;

    memset(&h, 0, sizeof h);
    memset(&r, 0, sizeof r);
    for (int s = 0; s < 3; s++) {
        loom_event_data ev[3];
        char stream[16];
        snprintf(stream, sizeof stream, "uin-%d", s);
        for (int i = 0; i < 3; i++)
            est_event(&ev[i], "uow.In", stream, strlen(stream));
        assert_int_equal(
            loom_store_append(fx->s, stream, LOOM_EXPECT_ANY, ev, 3, NULL),
            LOOM_OK);
    }

    /* Forced to fail: retried, and nothing of it ever commits. */
    atomic_store(&h.fail, 1);
    r.want_calls = 3;
    urun_go(&r, &h, until_calls);
    assert_true(atomic_load(&h.calls) >= 3);
    assert_int_equal(atomic_load(&h.queue_rc), LOOM_OK);
    assert_int_equal(rows_tagged("uout"), 0);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.checkpoints WHERE "
                            "name = 'usub' AND (tx <> '0' OR position <> "
                            "0)"),
                     0);

    /* Then it works: every effect once, with the checkpoint. */
    atomic_store(&h.fail, 0);
    urun_go(&r, &h, until_checkpoint_at_end);
    assert_int_equal(atomic_load(&h.queue_rc), LOOM_OK);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.events WHERE category "
                            "= 'uout'"),
                     9);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.outbox WHERE outbox = "
                            "'uout'"),
                     9);
    assert_int_equal(est_ll("SELECT count(*) FROM (SELECT key, count(*) AS k "
                            "FROM loom.outbox WHERE outbox = 'uout' GROUP BY "
                            "key) t WHERE k = 3"),
                     3);
    /* The last batch's effects and the checkpoint: one transaction. */
    assert_true(est_ll("SELECT count(*) FROM loom.checkpoints c, loom.outbox "
                       "o WHERE c.name = 'usub' AND o.outbox = 'uout' AND "
                       "o.xmin = c.xmin") >= 1);
    assert_true(est_ll("SELECT count(*) FROM loom.checkpoints c, loom.events "
                       "e WHERE c.name = 'usub' AND e.category = 'uout' AND "
                       "e.xmin = c.xmin") >= 1);

    /* A restart delivers nothing again. */
    atomic_store(&h.calls, 0);
    r.want_calls = 1;
    {
        loom_event_data ev;
        est_event(&ev, "uow.In", "late", 4);
        assert_int_equal(
            loom_store_append(fx->s, "uin-9", LOOM_EXPECT_ANY, &ev, 1, NULL),
            LOOM_OK);
    }
    urun_go(&r, &h, until_checkpoint_at_end);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.events WHERE category "
                            "= 'uout'"),
                     10);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.outbox WHERE outbox = "
                            "'uout'"),
                     10);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_uow_commits_events_outbox_and_inbox_together, est_setup,
            est_teardown),
        cmocka_unit_test_setup_teardown(
            test_uow_version_conflict_rolls_everything_back, est_setup,
            est_teardown),
        cmocka_unit_test_setup_teardown(
            test_uow_duplicate_inbox_mark_rolls_everything_back, est_setup,
            est_teardown),
        cmocka_unit_test_setup_teardown(
            test_uow_failing_statement_rolls_everything_back, est_setup,
            est_teardown),
        cmocka_unit_test_setup_teardown(test_uow_reset_reuse, est_setup,
                                        est_teardown),
        cmocka_unit_test(test_uow_tx_bad_arguments),
        cmocka_unit_test(test_uow_append_bad_arguments),
        cmocka_unit_test(test_uow_outbox_bad_arguments),
        cmocka_unit_test(test_uow_inbox_mark_bad_arguments),
        cmocka_unit_test_setup_teardown(test_uow_commit_bad_arguments,
                                        est_setup, est_teardown),
        cmocka_unit_test(test_uow_refuses_transaction_control),
        cmocka_unit_test_setup_teardown(
            test_uow_several_statements_in_one_text_fail, est_setup,
            est_teardown),
        cmocka_unit_test_setup_teardown(
            test_uow_transaction_control_past_the_check_fails_the_commit,
            est_setup, est_teardown),
        cmocka_unit_test_setup_teardown(
            test_uow_subscription_handler_appends_and_sends_with_its_checkpoint,
            est_setup, est_teardown),
    };

    return cmocka_run_group_tests_name("eventstore.uow", tests, est_group_setup,
                                       est_group_teardown);
}
