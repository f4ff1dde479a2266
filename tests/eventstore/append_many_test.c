/*
 * Appends to several streams as one statement of a unit of work
 * (eventstore/append_many.h, loom.append_many(), schema 12): the same
 * outcome as the loom.append() calls it replaces, made in order. Saga
 * participants write each delivered batch's events with it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "append_many.h"
#include "estest.h"
#include "tx_int.h"

static loom_store *
fx_store(void **state)
{
    return ((est_fx *) *state)->s;
}

/* Adds one event of `type` to `stream` expecting `expected`. */
static loom_err
am_add1(loom__append_many *am, loom_tx *tx, const char *stream,
        int64_t expected, const char *type)
{
    loom_event_data ev;

    est_event(&ev, type, type, strlen(type));
    return loom__append_many_add(am, stream, expected, &ev, 1, &tx->err);
}

/* Streams, their versions and their events' order, as one appended
 * each in turn by loom_tx_append() would leave them. */
static void
test_append_many_writes_every_stream_in_the_order_given(void **state)
{
    loom_store *s = fx_store(state);
    loom__append_many am;
    loom_tx *tx = NULL;
    loom_event_data two[2];

    loom__append_many_init(&am);
    assert_int_equal(loom_tx_new(&tx), LOOM_OK);
    est_event(&two[0], "am.First", "a", 1);
    est_event(&two[1], "am.Second", "b", 1);
    assert_int_equal(am_add1(&am, tx, "amA-1", LOOM_EXPECT_NO_STREAM, "am.X"),
                     LOOM_OK);
    assert_int_equal(
        loom__append_many_add(&am, "amB-1", LOOM_EXPECT_ANY, two, 2, &tx->err),
        LOOM_OK);
    assert_false(loom_uuid_is_nil(&two[0].id)); /* ids given back */
    /* The same stream again: its entries follow each other. */
    assert_int_equal(am_add1(&am, tx, "amA-1", 0, "am.Y"), LOOM_OK);
    assert_int_equal(loom__append_many_queue(&am, tx), LOOM_OK);
    assert_int_equal(loom_tx_count(tx), 1);
    assert_int_equal(am.n_appends, 0); /* reset once queued */
    assert_int_equal(loom_store_commit(s, tx), LOOM_OK);

    assert_int_equal(est_ll("SELECT version FROM loom.streams WHERE stream "
                            "= 'amA-1'"),
                     1);
    assert_int_equal(est_ll("SELECT version FROM loom.streams WHERE stream "
                            "= 'amB-1'"),
                     1);
    /* Positions follow the order given: X, First, Second, Y. */
    assert_int_equal(est_ll("SELECT count(*) FROM (SELECT type, row_number() "
                            "OVER (ORDER BY position) AS r FROM loom.events "
                            "WHERE category IN ('amA', 'amB')) t WHERE "
                            "(r, type) IN ((1, 'am.X'), (2, 'am.First'), (3, "
                            "'am.Second'), (4, 'am.Y'))"),
                     4);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.events WHERE stream = "
                            "'amA-1' AND ((version = 0 AND type = 'am.X') OR "
                            "(version = 1 AND type = 'am.Y'))"),
                     2);
    char id[LOOM_UUID_STRLEN];
    loom_uuid_format(&two[0].id, id);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.events WHERE event_id "
                            "= '%s'::uuid AND stream = 'amB-1' AND version = "
                            "0",
                            id),
                     1);
    loom_tx_free(tx);
    loom__append_many_free(&am);
}

/* One stale expected version fails the whole statement with the
 * conflict of loom.append(), and nothing of it is written. */
static void
test_append_many_conflict_writes_nothing(void **state)
{
    loom_store *s = fx_store(state);
    loom__append_many am;
    loom_tx *tx = NULL;

    loom__append_many_init(&am);
    assert_int_equal(loom_tx_new(&tx), LOOM_OK);
    assert_int_equal(am_add1(&am, tx, "amC-1", LOOM_EXPECT_NO_STREAM, "am.X"),
                     LOOM_OK);
    assert_int_equal(loom__append_many_queue(&am, tx), LOOM_OK);
    assert_int_equal(loom_store_commit(s, tx), LOOM_OK);

    loom_tx_reset(tx);
    assert_int_equal(am_add1(&am, tx, "amC-2", LOOM_EXPECT_NO_STREAM, "am.X"),
                     LOOM_OK);
    assert_int_equal(am_add1(&am, tx, "amC-1", LOOM_EXPECT_NO_STREAM, "am.Y"),
                     LOOM_OK);
    assert_int_equal(loom__append_many_queue(&am, tx), LOOM_OK);
    assert_int_equal(loom_store_commit(s, tx), LOOM_ECONFLICT);
    assert_non_null(strstr(loom_store_errmsg(s), "amC-1"));
    assert_int_equal(est_ll("SELECT count(*) FROM loom.streams WHERE stream = "
                            "'amC-2'"),
                     0);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.events WHERE category "
                            "= 'amC'"),
                     1);

    /* Two entries on one stream that both expect its current version:
     * the second meets the first's. */
    loom_tx_reset(tx);
    assert_int_equal(am_add1(&am, tx, "amC-1", 0, "am.Y"), LOOM_OK);
    assert_int_equal(am_add1(&am, tx, "amC-1", 0, "am.Z"), LOOM_OK);
    assert_int_equal(loom__append_many_queue(&am, tx), LOOM_OK);
    assert_int_equal(loom_store_commit(s, tx), LOOM_ECONFLICT);
    assert_int_equal(est_ll("SELECT version FROM loom.streams WHERE stream = "
                            "'amC-1'"),
                     0);
    loom_tx_free(tx);
    loom__append_many_free(&am);
}

/* Bad appends are refused when added, with loom_tx_append()'s reasons,
 * and leave what was added before intact. */
static void
test_append_many_refuses_bad_appends_when_added(void **state)
{
    loom_store *s = fx_store(state);
    loom__append_many am;
    loom_tx *tx = NULL;
    loom_event_data ev;

    loom__append_many_init(&am);
    assert_int_equal(loom_tx_new(&tx), LOOM_OK);
    /* Nothing added: nothing queued. */
    assert_int_equal(loom__append_many_queue(&am, tx), LOOM_OK);
    assert_int_equal(loom_tx_count(tx), 0);

    assert_int_equal(am_add1(&am, tx, "amD-1", LOOM_EXPECT_ANY, "am.X"),
                     LOOM_OK);
    assert_int_equal(am_add1(&am, tx, "", LOOM_EXPECT_ANY, "am.X"),
                     LOOM_EINVAL);
    assert_int_equal(am_add1(&am, tx, "amD-1", -3, "am.X"), LOOM_EINVAL);
    assert_non_null(strstr(loom_tx_errmsg(tx), "-3"));
    est_event(&ev, "", "x", 1);
    assert_int_equal(
        loom__append_many_add(&am, "amD-1", LOOM_EXPECT_ANY, &ev, 1, &tx->err),
        LOOM_EINVAL);
    assert_int_equal(
        loom__append_many_add(&am, "amD-1", LOOM_EXPECT_ANY, NULL, 0, &tx->err),
        LOOM_EINVAL);
    assert_int_equal(am.n_appends, 1);
    assert_int_equal(loom__append_many_queue(&am, tx), LOOM_OK);
    assert_int_equal(loom_store_commit(s, tx), LOOM_OK);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.events WHERE stream = "
                            "'amD-1'"),
                     1);
    loom_tx_free(tx);
    loom__append_many_free(&am);
}

/* The SQL function refuses arrays that do not match. */
static void
test_append_many_sql_refuses_mismatched_arrays(void **state)
{
    PGconn *c = est_connect(loomt_dsn());

    (void) state;
    est_exec_fails(c,
                   "SELECT loom.append_many('{amE-1}', '{-2}', '{2}', "
                   "ARRAY[gen_random_uuid()], '{t}', '{1}', '{x}', '{NULL}')",
                   "22023");
    est_exec_fails(c,
                   "SELECT loom.append_many('{amE-1}', '{-2}', '{0}', "
                   "'{}'::uuid[], '{}', '{}', '{}', '{}')",
                   "22023");
    PQfinish(c);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_append_many_writes_every_stream_in_the_order_given, est_setup,
            est_teardown),
        cmocka_unit_test_setup_teardown(
            test_append_many_conflict_writes_nothing, est_setup, est_teardown),
        cmocka_unit_test_setup_teardown(
            test_append_many_refuses_bad_appends_when_added, est_setup,
            est_teardown),
        cmocka_unit_test_setup_teardown(
            test_append_many_sql_refuses_mismatched_arrays, est_setup,
            est_teardown),
    };
    return cmocka_run_group_tests(tests, est_group_setup, est_group_teardown);
}
