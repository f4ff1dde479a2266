/*
 * Outbox messages collected over several calls and queued as one
 * loom_outbox_add() (outbox/outbox_batch.h, how saga participants send a
 * batch's replies): every field is copied when added, so the caller may
 * reuse its buffers at once; a bad message is refused when added, with
 * loom_outbox_add()'s reason; the queued statement stores the messages in
 * the order added; an empty batch queues nothing; a reset drops what was
 * collected.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "estest.h"
#include "loom/outbox.h"
#include "outbox_batch.h"

static loom_store *
fx_store(void **state)
{
    return ((est_fx *) *state)->s;
}

static void
msg_set(loom_outbox_message *m, const char *topic, const char *key,
        const char *payload, const loom_header *h, size_t n_h)
{
    memset(m, 0, sizeof *m);
    m->topic = topic;
    m->key = key;
    m->key_len = key != NULL ? strlen(key) : 0;
    m->type = "ob.Reply";
    m->payload = payload;
    m->payload_len = strlen(payload);
    m->headers = h;
    m->n_headers = n_h;
}

static void
test_a_batch_stores_copies_of_its_messages_in_order(void **state)
{
    loom_store *s = fx_store(state);
    loom__outbox_batch b;
    loom_outbox_message m;
    loom_tx *tx = NULL;
    char topic[32], key[32], payload[32], hk[16], hv[16];
    loom_header h[1] = {{hk, hv}};

    loom__outbox_batch_init(&b);
    assert_int_equal(loom_tx_new(&tx), LOOM_OK);
    for (int i = 0; i < 3; i++) {
        /* The same buffers each time: the batch must have copied them. */
        snprintf(topic, sizeof topic, "ob.topic%d", i);
        snprintf(key, sizeof key, "key-%d", i);
        snprintf(payload, sizeof payload, "payload %d", i);
        snprintf(hk, sizeof hk, "h%d", i);
        snprintf(hv, sizeof hv, "v%d", i);
        msg_set(&m, topic, i == 1 ? NULL : key, payload, h, i == 2 ? 0 : 1);
        assert_int_equal(loom__outbox_batch_add(&b, tx, &m), LOOM_OK);
    }
    assert_int_equal(loom_tx_count(tx), 0); /* nothing queued yet */
    assert_int_equal(loom__outbox_batch_queue(&b, tx, "obatch"), LOOM_OK);
    assert_int_equal(loom_tx_count(tx), 1);
    assert_int_equal(b.n, 0); /* queued: reset */
    assert_int_equal(loom__outbox_batch_queue(&b, tx, "obatch"), LOOM_OK);
    assert_int_equal(loom_tx_count(tx), 1); /* empty: nothing */
    assert_int_equal(loom_store_commit(s, tx), LOOM_OK);

    assert_int_equal(
        est_ll("SELECT count(*) FROM loom.outbox WHERE outbox = 'obatch'"), 3);
    assert_int_equal(
        est_ll("SELECT count(*) FROM (SELECT topic, key, payload, type, "
               "row_number() OVER (ORDER BY tx, position) - 1 AS i, "
               "message_id FROM loom.outbox WHERE outbox = 'obatch') o "
               "WHERE topic = 'ob.topic' || i AND payload = convert_to("
               "'payload ' || i, 'UTF8') AND type = 'ob.Reply' AND "
               "(key = convert_to('key-' || i, 'UTF8') OR (i = 1 AND key IS "
               "NULL)) AND message_id IS NOT NULL"),
        3);
    /* Headers of the first two (h0=v0, h1=v1); none on the third. */
    assert_int_equal(est_ll("SELECT count(*) FROM loom.outbox WHERE outbox = "
                            "'obatch' AND headers IS NOT NULL AND "
                            "position(convert_to('v' || (topic = "
                            "'ob.topic1')::int, 'UTF8') IN headers) > 0"),
                     2);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.outbox WHERE outbox = "
                            "'obatch' AND topic = 'ob.topic2' AND headers IS "
                            "NULL"),
                     1);
    loom_tx_free(tx);
    loom__outbox_batch_free(&b);
}

static void
test_a_bad_message_is_refused_when_added_and_reset_drops_the_rest(void **state)
{
    loom_store *s = fx_store(state);
    loom__outbox_batch b;
    loom_outbox_message m;
    loom_tx *tx = NULL;

    loom__outbox_batch_init(&b);
    assert_int_equal(loom_tx_new(&tx), LOOM_OK);
    msg_set(&m, "ob.bad", "k", "p", NULL, 0);
    assert_int_equal(loom__outbox_batch_add(&b, tx, &m), LOOM_OK);
    msg_set(&m, "", "k", "p", NULL, 0);
    assert_int_equal(loom__outbox_batch_add(&b, tx, &m), LOOM_EINVAL);
    assert_non_null(strstr(loom_tx_errmsg(tx), "no topic"));
    m.topic = "ob.bad";
    m.payload_len = LOOM_OUTBOX_MAX_PAYLOAD + 1;
    assert_int_equal(loom__outbox_batch_add(&b, tx, &m), LOOM_ETOOBIG);
    assert_int_equal(b.n, 1); /* the refused ones were not kept */
    assert_int_equal(loom__outbox_batch_add(NULL, tx, &m), LOOM_EINVAL);

    /* A transaction built again starts empty: nothing of the first
     * message is written. */
    loom__outbox_batch_reset(&b);
    loom_tx_reset(tx);
    assert_int_equal(loom__outbox_batch_queue(&b, tx, "obbad"), LOOM_OK);
    assert_int_equal(loom_tx_count(tx), 0);
    /* And the batch works again after the refusals. */
    msg_set(&m, "ob.good", "k", "p", NULL, 0);
    assert_int_equal(loom__outbox_batch_add(&b, tx, &m), LOOM_OK);
    assert_int_equal(loom__outbox_batch_queue(&b, tx, "obbad"), LOOM_OK);
    assert_int_equal(loom_store_commit(s, tx), LOOM_OK);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.outbox WHERE outbox = "
                            "'obbad' AND topic = 'ob.good'"),
                     1);
    assert_int_equal(
        est_ll("SELECT count(*) FROM loom.outbox WHERE outbox = 'obbad'"), 1);
    loom_tx_free(tx);
    loom__outbox_batch_free(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_a_batch_stores_copies_of_its_messages_in_order, est_setup,
            est_teardown),
        cmocka_unit_test_setup_teardown(
            test_a_bad_message_is_refused_when_added_and_reset_drops_the_rest,
            est_setup, est_teardown),
    };

    return cmocka_run_group_tests_name("outbox.batch", tests, est_group_setup,
                                       est_group_teardown);
}
