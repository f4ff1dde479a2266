/*
 * Aggregates: an Order folded from its events, commands decided on its
 * state (and rejected without side effects), snapshots that loads really
 * use (counted through apply()), and the retry loop under contention.
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
#include <time.h>

#include <cmocka.h>

#include "estest.h"

/* ------------------------------------------------------------------ */
/* The Order aggregate                                                 */

/* Nonzero first state, so a load that skipped init() would show. */
enum { ORDER_NEW = 1, ORDER_PLACED = 2, ORDER_CONFIRMED = 3 };

typedef struct order_state {
    int32_t status;
    int32_t items;
    int64_t total; /* cents */
} order_state;

/* Events apply() has folded; reset before a load to see what it did. */
static atomic_int applied;

static void
order_init(void *state)
{
    order_state *o = state;

    o->status = ORDER_NEW;
}

static int64_t
price_of(const loom_event *ev)
{
    int64_t p = 0;

    for (size_t i = 0; i < ev->data_len && i < 8; i++)
        p = p << 8 | ev->data[i];
    return p;
}

static loom_err
order_apply(void *state, const loom_event *ev)
{
    order_state *o = state;

    atomic_fetch_add(&applied, 1);
    if (strcmp(ev->type, "order.Placed") == 0)
        o->status = ORDER_PLACED;
    else if (strcmp(ev->type, "order.ItemAdded") == 0 && ev->data_len == 8) {
        o->items++;
        o->total += price_of(ev);
    } else if (strcmp(ev->type, "order.Confirmed") == 0)
        o->status = ORDER_CONFIRMED;
    else
        return LOOM_EHANDLER; /* an event this code cannot fold */
    return LOOM_OK;
}

static const loom_aggregate_type order_type = {
    "order", sizeof(order_state), 1, order_init, order_apply, 0};

/* The same with snapshots every 5 events, and a later state layout. */
static const loom_aggregate_type order_snap_type = {
    "order", sizeof(order_state), 1, order_init, order_apply, 5};
static const loom_aggregate_type order_snap_v2_type = {
    "order", sizeof(order_state), 2, order_init, order_apply, 5};

static loom_err
decide_place(const void *state, int64_t version, loom_decision *out, void *arg)
{
    const order_state *o = state;
    loom_event_data ev;

    (void) arg;
    if (version != -1 || o->status != ORDER_NEW)
        return LOOM_EHANDLER; /* already placed */
    est_event(&ev, "order.Placed", NULL, 0);
    return loom_decision_emit(out, &ev);
}

static loom_err
emit_item(loom_decision *out, int64_t price)
{
    unsigned char data[8];
    loom_event_data ev;

    for (int i = 0; i < 8; i++)
        data[i] = (unsigned char) ((uint64_t) price >> (56 - 8 * i));
    /* The decision copies: `data` may go out of scope after this. */
    est_event(&ev, "order.ItemAdded", data, sizeof data);
    return loom_decision_emit(out, &ev);
}

static loom_err
decide_add_item(const void *state, int64_t version, loom_decision *out,
                void *arg)
{
    const order_state *o = state;

    (void) version;
    if (o->status != ORDER_PLACED)
        return LOOM_EHANDLER;
    return emit_item(out, *(const int64_t *) arg);
}

static loom_err
decide_confirm(const void *state, int64_t version, loom_decision *out,
               void *arg)
{
    const order_state *o = state;
    loom_event_data ev;

    (void) version;
    (void) arg;
    if (o->status != ORDER_PLACED || o->items == 0)
        return LOOM_EHANDLER;
    est_event(&ev, "order.Confirmed", NULL, 0);
    return loom_decision_emit(out, &ev);
}

static loom_err
decide_nothing(const void *state, int64_t version, loom_decision *out,
               void *arg)
{
    (void) state;
    (void) version;
    (void) out;
    (void) arg;
    return LOOM_OK;
}

/* ------------------------------------------------------------------ */

static loom_execute_result
execute_ok(loom_store *s, const loom_aggregate_type *t, const char *id,
           loom_decide_fn decide, void *arg)
{
    loom_execute_result res;
    loom_err rc;

    memset(&res, 0, sizeof res);
    rc = loom_aggregate_execute(s, t, id, decide, arg, NULL, &res);
    if (rc != LOOM_OK)
        fail_msg("execute on %s: %s: %s", id, loom_err_name(rc),
                 loom_store_errmsg(s));
    return res;
}

static void
add_items(loom_store *s, const loom_aggregate_type *t, const char *id,
          int count, int64_t price)
{
    for (int i = 0; i < count; i++)
        execute_ok(s, t, id, decide_add_item, &price);
}

static void
test_aggregate_commands_fold_into_state(void **state)
{
    est_fx *f = *state;
    int64_t prices[3] = {100, 250, 50};
    loom_execute_result res;
    order_state o;
    int64_t v = -9;

    res = execute_ok(f->s, &order_type, "1", decide_place, NULL);
    assert_int_equal(res.version, 0);
    assert_int_equal(res.n_events, 1);
    assert_int_equal(res.attempts, 1);
    for (int i = 0; i < 3; i++) {
        res = execute_ok(f->s, &order_type, "1", decide_add_item, &prices[i]);
        assert_int_equal(res.version, i + 1);
    }
    res = execute_ok(f->s, &order_type, "1", decide_confirm, NULL);
    assert_int_equal(res.version, 4);
    memset(&o, 0x7f, sizeof o);
    assert_int_equal(loom_aggregate_load(f->s, &order_type, "1", &o, &v),
                     LOOM_OK);
    assert_int_equal(v, 4);
    assert_int_equal(o.status, ORDER_CONFIRMED);
    assert_int_equal(o.items, 3);
    assert_int_equal(o.total, 400);
    /* The aggregate lives in stream "<type>-<id>". */
    assert_int_equal(est_count_stream("order-1"), 5);
}

static void
test_aggregate_load_new_is_initial_state(void **state)
{
    est_fx *f = *state;
    order_state o;
    int64_t v = 99;

    memset(&o, 0x7f, sizeof o);
    assert_int_equal(loom_aggregate_load(f->s, &order_type, "never", &o, &v),
                     LOOM_OK);
    assert_int_equal(v, -1);
    /* init() ran on zeroed bytes. */
    assert_int_equal(o.status, ORDER_NEW);
    assert_int_equal(o.items, 0);
    assert_int_equal(o.total, 0);
}

static void
test_aggregate_rejected_command_appends_nothing(void **state)
{
    est_fx *f = *state;
    int64_t price = 10;
    loom_execute_result res;

    /* No item before the order is placed. */
    assert_int_equal(loom_aggregate_execute(f->s, &order_type, "2",
                                            decide_add_item, &price, NULL,
                                            &res),
                     LOOM_EHANDLER);
    assert_int_equal(res.n_events, 0);
    assert_int_equal(est_count_stream("order-2"), 0);
    execute_ok(f->s, &order_type, "2", decide_place, NULL);
    /* Not twice; no confirmation without items. */
    assert_int_equal(loom_aggregate_execute(f->s, &order_type, "2",
                                            decide_place, NULL, NULL, NULL),
                     LOOM_EHANDLER);
    assert_int_equal(loom_aggregate_execute(f->s, &order_type, "2",
                                            decide_confirm, NULL, NULL, &res),
                     LOOM_EHANDLER);
    assert_int_equal(res.version, 0);
    assert_int_equal(est_count_stream("order-2"), 1);
    execute_ok(f->s, &order_type, "2", decide_add_item, &price);
    execute_ok(f->s, &order_type, "2", decide_confirm, NULL);
    /* Nothing after confirmation. */
    assert_int_equal(loom_aggregate_execute(f->s, &order_type, "2",
                                            decide_add_item, &price, NULL,
                                            NULL),
                     LOOM_EHANDLER);
    assert_int_equal(est_count_stream("order-2"), 3);
}

static void
test_aggregate_empty_decision_is_ok(void **state)
{
    est_fx *f = *state;
    loom_execute_result res;

    execute_ok(f->s, &order_type, "3", decide_place, NULL);
    res = execute_ok(f->s, &order_type, "3", decide_nothing, NULL);
    assert_int_equal(res.n_events, 0);
    assert_int_equal(res.version, 0);
    assert_int_equal(est_count_stream("order-3"), 1);
}

static void
test_aggregate_snapshot_is_taken_and_used(void **state)
{
    est_fx *f = *state;
    order_state o, o2, snap;
    void *data = NULL;
    size_t len = 0;
    int64_t v = -9, sv = -9;

    /* 12 events: versions 0..11, crossing multiples of 5 at 4 and 9. */
    execute_ok(f->s, &order_snap_type, "snap", decide_place, NULL);
    add_items(f->s, &order_snap_type, "snap", 11, 7);
    assert_int_equal(est_count_stream("order-snap"), 12);
    assert_int_equal(est_ll("SELECT version FROM loom.snapshots WHERE stream = "
                            "'order-snap' AND schema_version = 1"),
                     9);
    /* The snapshot holds the state after version 9: placed, 9 items. */
    assert_int_equal(
        loom_store_snapshot_load(f->s, "order-snap", 1, &data, &len, &sv),
        LOOM_OK);
    assert_int_equal(sv, 9);
    assert_int_equal(len, sizeof snap);
    memcpy(&snap, data, sizeof snap);
    loom_free(data);
    assert_int_equal(snap.status, ORDER_PLACED);
    assert_int_equal(snap.items, 9);
    assert_int_equal(snap.total, 63);

    /* A load starts from it: only versions 10 and 11 are applied. */
    atomic_store(&applied, 0);
    assert_int_equal(
        loom_aggregate_load(f->s, &order_snap_type, "snap", &o, &v), LOOM_OK);
    assert_int_equal(atomic_load(&applied), 2);
    assert_int_equal(v, 11);
    assert_int_equal(o.status, ORDER_PLACED);
    assert_int_equal(o.items, 11);
    assert_int_equal(o.total, 77);

    /* A new state layout ignores it and folds everything: same state. */
    atomic_store(&applied, 0);
    assert_int_equal(
        loom_aggregate_load(f->s, &order_snap_v2_type, "snap", &o2, &v),
        LOOM_OK);
    assert_int_equal(atomic_load(&applied), 12);
    assert_int_equal(v, 11);
    assert_memory_equal(&o, &o2, sizeof o);

    /* A type that takes no snapshots folds to the same state. */
    assert_int_equal(loom_aggregate_load(f->s, &order_type, "snap", &o2, &v),
                     LOOM_OK);
    assert_int_equal(v, 11);
    assert_memory_equal(&o, &o2, sizeof o);
}

/* Several items in one decision: arg is {count, price}. */
static loom_err
decide_add_items(const void *state, int64_t version, loom_decision *out,
                 void *arg)
{
    const order_state *o = state;
    const int64_t *count_price = arg;
    loom_err rc = LOOM_OK;

    (void) version;
    if (o->status != ORDER_PLACED)
        return LOOM_EHANDLER;
    for (int64_t i = 0; rc == LOOM_OK && i < count_price[0]; i++)
        rc = emit_item(out, count_price[1]);
    return rc;
}

static void
test_aggregate_snapshot_after_batch(void **state)
{
    est_fx *f = *state;
    int64_t three[2] = {3, 1000};
    loom_execute_result res;
    order_state o;
    int64_t v = -9;

    execute_ok(f->s, &order_snap_type, "batch", decide_place, NULL);
    add_items(f->s, &order_snap_type, "batch", 2, 1); /* versions 1, 2 */
    assert_int_equal(
        est_ll("SELECT count(*) FROM loom.snapshots WHERE stream = "
               "'order-batch'"),
        0);
    /* Versions 3..5 in one append jump over the multiple of 5: the
     * snapshot is of the state after the whole batch. */
    res = execute_ok(f->s, &order_snap_type, "batch", decide_add_items, three);
    assert_int_equal(res.n_events, 3);
    assert_int_equal(res.version, 5);
    assert_int_equal(est_ll("SELECT version FROM loom.snapshots WHERE stream = "
                            "'order-batch'"),
                     5);
    atomic_store(&applied, 0);
    assert_int_equal(
        loom_aggregate_load(f->s, &order_snap_type, "batch", &o, &v), LOOM_OK);
    assert_int_equal(atomic_load(&applied), 0);
    assert_int_equal(v, 5);
    assert_int_equal(o.status, ORDER_PLACED);
    assert_int_equal(o.items, 5);
    assert_int_equal(o.total, 3002);
}

static void
test_aggregate_snapshot_of_other_size_is_ignored(void **state)
{
    est_fx *f = *state;
    order_state o;
    int64_t v = -9;

    execute_ok(f->s, &order_snap_type, "resized", decide_place, NULL);
    add_items(f->s, &order_snap_type, "resized", 2, 5);
    /* A snapshot of the right layout version but the wrong size (a
     * struct changed without bumping state_version) is not trusted. */
    assert_int_equal(
        loom_store_snapshot_save(f->s, "order-resized", 2, 1, "abc", 3),
        LOOM_OK);
    atomic_store(&applied, 0);
    assert_int_equal(
        loom_aggregate_load(f->s, &order_snap_type, "resized", &o, &v),
        LOOM_OK);
    assert_int_equal(atomic_load(&applied), 3);
    assert_int_equal(v, 2);
    assert_int_equal(o.items, 2);
    assert_int_equal(o.total, 10);
}

static void
test_aggregate_snapshot_keeps_newest(void **state)
{
    est_fx *f = *state;
    void *data = NULL;
    size_t len = 0;
    int64_t v = -9;
    loom_event_data ev[9];

    /* A snapshot is of a version the stream has: none of one that does
     * not exist, none past its end (every load would then skip the
     * events up to it once they came). */
    assert_int_equal(
        loom_store_snapshot_save(f->s, "snaponly-1", 7, 1, "seven", 5),
        LOOM_EINVAL);
    assert_non_null(strstr(loom_store_errmsg(f->s), "no such stream"));
    for (int i = 0; i < 9; i++)
        est_event(&ev[i], "Snap", "x", 1);
    assert_int_equal(loom_store_append(f->s, "snaponly-1",
                                       LOOM_EXPECT_NO_STREAM, ev, 7, NULL),
                     LOOM_OK);
    assert_int_equal(
        loom_store_snapshot_save(f->s, "snaponly-1", 7, 1, "seven", 5),
        LOOM_EINVAL);
    assert_non_null(strstr(loom_store_errmsg(f->s), "at version 6"));
    assert_int_equal(
        loom_store_snapshot_load(f->s, "snaponly-1", 1, &data, &len, &v),
        LOOM_ENOTFOUND);
    assert_int_equal(loom_store_append(f->s, "snaponly-1", 6, ev + 7, 2, NULL),
                     LOOM_OK);
    assert_int_equal(
        loom_store_snapshot_save(f->s, "snaponly-1", 7, 1, "seven", 5),
        LOOM_OK);
    /* An older one arriving late does not replace it. */
    assert_int_equal(
        loom_store_snapshot_save(f->s, "snaponly-1", 3, 1, "three", 5),
        LOOM_OK);
    assert_int_equal(
        loom_store_snapshot_load(f->s, "snaponly-1", 1, &data, &len, &v),
        LOOM_OK);
    assert_int_equal(v, 7);
    assert_int_equal(len, 5);
    assert_memory_equal(data, "seven", 5);
    loom_free(data);
    data = NULL;
    /* Another layout version finds nothing. */
    assert_int_equal(
        loom_store_snapshot_load(f->s, "snaponly-1", 2, &data, &len, &v),
        LOOM_ENOTFOUND);
    assert_null(data);
    assert_int_equal(
        loom_store_snapshot_load(f->s, "snaponly-none", 1, &data, &len, &v),
        LOOM_ENOTFOUND);
    /* An empty snapshot is a snapshot. */
    est_event(&ev[0], "Snap", "x", 1); /* a new event id */
    assert_int_equal(loom_store_append(f->s, "snaponly-2",
                                       LOOM_EXPECT_NO_STREAM, ev, 1, NULL),
                     LOOM_OK);
    assert_int_equal(
        loom_store_snapshot_save(f->s, "snaponly-2", 0, 1, NULL, 0), LOOM_OK);
    assert_int_equal(
        loom_store_snapshot_load(f->s, "snaponly-2", 1, &data, &len, &v),
        LOOM_OK);
    assert_int_equal(len, 0);
    assert_int_equal(v, 0);
    loom_free(data);
}

static void
test_aggregate_load_pages_through_long_streams(void **state)
{
    est_fx *f = *state;
    loom_store_config cfg = LOOM_STORE_CONFIG_INIT;
    loom_store *small;
    order_state o;
    int64_t v = -9;

    /* A read limit of 3 makes the load page; 10 and 9 events end on a
     * partial and on a full page. */
    cfg.max_read = 3;
    small = est_store_open(&cfg);
    execute_ok(f->s, &order_type, "long", decide_place, NULL);
    add_items(f->s, &order_type, "long", 8, 1);
    atomic_store(&applied, 0);
    assert_int_equal(loom_aggregate_load(small, &order_type, "long", &o, &v),
                     LOOM_OK);
    assert_int_equal(atomic_load(&applied), 9);
    assert_int_equal(v, 8);
    assert_int_equal(o.items, 8);
    add_items(f->s, &order_type, "long", 1, 1);
    atomic_store(&applied, 0);
    assert_int_equal(loom_aggregate_load(small, &order_type, "long", &o, &v),
                     LOOM_OK);
    assert_int_equal(atomic_load(&applied), 10);
    assert_int_equal(v, 9);
    assert_int_equal(o.items, 9);
    loom_store_close(small);
}

static void
test_aggregate_apply_error_stops_load(void **state)
{
    est_fx *f = *state;
    loom_event_data ev;
    order_state o;
    int64_t v = -9;

    est_event(&ev, "order.Unknown", NULL, 0);
    assert_int_equal(loom_store_append(f->s, "order-bad", LOOM_EXPECT_NO_STREAM,
                                       &ev, 1, NULL),
                     LOOM_OK);
    assert_int_equal(loom_aggregate_load(f->s, &order_type, "bad", &o, &v),
                     LOOM_EHANDLER);
    assert_int_equal(v, -1);
    /* A command cannot run on state that does not load. */
    assert_int_equal(loom_aggregate_execute(f->s, &order_type, "bad",
                                            decide_nothing, NULL, NULL, NULL),
                     LOOM_EHANDLER);
    assert_int_equal(est_count_stream("order-bad"), 1);
}

static void
test_aggregate_invalid_arguments(void **state)
{
    est_fx *f = *state;
    loom_aggregate_type dash = order_type, noapply = order_type,
                        nosize = order_type;
    order_state o;

    dash.name = "or-der";
    noapply.apply = NULL;
    nosize.state_size = 0;
    assert_int_equal(loom_aggregate_load(NULL, &order_type, "x", &o, NULL),
                     LOOM_EINVAL);
    assert_int_equal(loom_aggregate_load(f->s, NULL, "x", &o, NULL),
                     LOOM_EINVAL);
    assert_int_equal(loom_aggregate_load(f->s, &order_type, NULL, &o, NULL),
                     LOOM_EINVAL);
    assert_int_equal(loom_aggregate_load(f->s, &order_type, "", &o, NULL),
                     LOOM_EINVAL);
    assert_int_equal(loom_aggregate_load(f->s, &order_type, "x", NULL, NULL),
                     LOOM_EINVAL);
    assert_int_equal(loom_aggregate_load(f->s, &dash, "x", &o, NULL),
                     LOOM_EINVAL);
    assert_int_equal(loom_aggregate_load(f->s, &noapply, "x", &o, NULL),
                     LOOM_EINVAL);
    assert_int_equal(loom_aggregate_load(f->s, &nosize, "x", &o, NULL),
                     LOOM_EINVAL);
    assert_int_equal(loom_aggregate_execute(NULL, &order_type, "x",
                                            decide_place, NULL, NULL, NULL),
                     LOOM_EINVAL);
    assert_int_equal(
        loom_aggregate_execute(f->s, &order_type, "x", NULL, NULL, NULL, NULL),
        LOOM_EINVAL);
    assert_int_equal(loom_aggregate_execute(f->s, &dash, "x", decide_place,
                                            NULL, NULL, NULL),
                     LOOM_EINVAL);
    assert_int_equal(loom_aggregate_execute(f->s, &order_type, "", decide_place,
                                            NULL, NULL, NULL),
                     LOOM_EINVAL);
    assert_int_equal(loom_decision_emit(NULL, NULL), LOOM_EINVAL);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.events WHERE stream "
                            "IN ('order-x', 'or-der-x', 'order-')"),
                     0);
}

/* Loads `t` expecting LOOM_EINVAL with `needle` in the message, after an
 * unrelated error whose message must not be left behind. */
static void
expect_bad_type(loom_store *s, const loom_aggregate_type *t, const char *id,
                const char *needle)
{
    loom_event_data ev;
    order_state o;
    int64_t v = 7;

    est_event(&ev, "T", "x", 1);
    assert_int_equal(loom_store_append(s, "", LOOM_EXPECT_ANY, &ev, 1, NULL),
                     LOOM_EINVAL);
    assert_int_equal(loom_aggregate_load(s, t, id, &o, &v), LOOM_EINVAL);
    assert_int_equal(v, -1);
    if (strstr(loom_store_errmsg(s), needle) == NULL)
        fail_msg("message \"%s\" lacks \"%s\"", loom_store_errmsg(s), needle);
}

/* A bad type is refused with a message naming what is wrong; a state_size
 * no snapshot could hold (SIZE_MAX once reached memset()) among them. */
static void
test_aggregate_bad_type_is_named(void **state)
{
    est_fx *f = *state;
    loom_aggregate_type t = order_type;
    order_state o;

    expect_bad_type(f->s, NULL, "x", "type is NULL");
    t.name = "or-der";
    expect_bad_type(f->s, &t, "x", "'-'");
    t = order_type;
    t.apply = NULL;
    expect_bad_type(f->s, &t, "x", "apply is NULL");
    t = order_type;
    t.state_size = 0;
    expect_bad_type(f->s, &t, "x", "state_size 0 is out of range");
    t.state_size = SIZE_MAX;
    expect_bad_type(f->s, &t, "x", "max_payload");
    t.state_size = LOOM_DEFAULT_MAX_PAYLOAD + 1;
    expect_bad_type(f->s, &t, "x", "1 to 1048576 bytes");
    t = order_type;
    t.state_version = -1;
    expect_bad_type(f->s, &t, "x", "state_version -1");
    expect_bad_type(f->s, &order_type, "", "the id is empty");
    assert_int_equal(loom_aggregate_load(f->s, &order_type, "x", NULL, NULL),
                     LOOM_EINVAL);
    assert_non_null(strstr(loom_store_errmsg(f->s), "state is NULL"));
    t.state_size = SIZE_MAX;
    assert_int_equal(
        loom_aggregate_execute(f->s, &t, "x", decide_place, NULL, NULL, NULL),
        LOOM_EINVAL);
    assert_non_null(strstr(loom_store_errmsg(f->s), "state_size"));
    /* A good load afterwards says nothing. */
    assert_int_equal(loom_aggregate_load(f->s, &order_type, "x", &o, NULL),
                     LOOM_OK);
    assert_string_equal(loom_store_errmsg(f->s), "");
}

/* ------------------------------------------------------------------ */
/* Contention                                                          */

/* A counter aggregate: state is the number of increments. */
typedef struct counter_state {
    int64_t n;
} counter_state;

static loom_err
counter_apply(void *state, const loom_event *ev)
{
    counter_state *c = state;

    if (strcmp(ev->type, "counter.Incremented") != 0)
        return LOOM_EHANDLER;
    c->n++;
    return LOOM_OK;
}

static const loom_aggregate_type counter_type = {
    "counter", sizeof(counter_state), 1, NULL, counter_apply, 10};
static const loom_aggregate_type counter_nosnap_type = {
    "counter", sizeof(counter_state), 1, NULL, counter_apply, 0};

static loom_err
decide_increment(const void *state, int64_t version, loom_decision *out,
                 void *arg)
{
    struct timespec pause = {0, 200 * 1000};
    loom_event_data ev;

    (void) state;
    (void) version;
    (void) arg;
    /* Work between load and append widens the race window. */
    nanosleep(&pause, NULL);
    est_event(&ev, "counter.Incremented", NULL, 0);
    return loom_decision_emit(out, &ev);
}

enum { INCREMENTERS = 2, INCREMENTS = 100 };

typedef struct incrementer {
    pthread_t thread;
    loom_store *s;
    pthread_barrier_t *start;
    size_t done;
    unsigned max_attempts_seen;
    unsigned retried; /* commands that needed more than one attempt */
    loom_err error;
    char errmsg[256];
} incrementer;

static void *
incrementer_main(void *arg)
{
    incrementer *inc = arg;
    /* Ample attempts: this test is about retries succeeding, not about
     * running out of them. */
    loom_execute_options opt = {1000};

    pthread_barrier_wait(inc->start);
    for (int i = 0; i < INCREMENTS; i++) {
        loom_execute_result res;
        loom_err rc =
            loom_aggregate_execute(inc->s, &counter_type, "shared",
                                   decide_increment, NULL, &opt, &res);
        if (rc != LOOM_OK) {
            inc->error = rc;
            snprintf(inc->errmsg, sizeof inc->errmsg, "%s",
                     loom_store_errmsg(inc->s));
            return NULL;
        }
        if (res.attempts > inc->max_attempts_seen)
            inc->max_attempts_seen = res.attempts;
        inc->retried += res.attempts > 1;
        inc->done++;
    }
    return NULL;
}

static void
test_aggregate_concurrent_commands_retry(void **state)
{
    est_fx *f = *state;
    incrementer inc[INCREMENTERS];
    pthread_barrier_t start;
    counter_state c, c2;
    int64_t v = -9;
    unsigned retried = 0;

    assert_int_equal(pthread_barrier_init(&start, NULL, INCREMENTERS), 0);
    for (int i = 0; i < INCREMENTERS; i++) {
        memset(&inc[i], 0, sizeof inc[i]);
        inc[i].s = loomt_store_open();
        inc[i].start = &start;
    }
    for (int i = 0; i < INCREMENTERS; i++)
        assert_int_equal(
            pthread_create(&inc[i].thread, NULL, incrementer_main, &inc[i]), 0);
    for (int i = 0; i < INCREMENTERS; i++)
        pthread_join(inc[i].thread, NULL);
    for (int i = 0; i < INCREMENTERS; i++) {
        if (inc[i].error != LOOM_OK)
            fail_msg("incrementer %d: %s: %s", i, loom_err_name(inc[i].error),
                     inc[i].errmsg);
        assert_int_equal(inc[i].done, INCREMENTS);
        retried += inc[i].retried;
        loom_store_close(inc[i].s);
    }
    pthread_barrier_destroy(&start);
    /* Some commands lost a race and were decided again. */
    assert_true(retried > 0);
    /* No increment lost or doubled, with or without snapshots. */
    assert_int_equal(loom_aggregate_load(f->s, &counter_type, "shared", &c, &v),
                     LOOM_OK);
    assert_int_equal(c.n, INCREMENTERS * INCREMENTS);
    assert_int_equal(v, INCREMENTERS * INCREMENTS - 1);
    assert_int_equal(
        loom_aggregate_load(f->s, &counter_nosnap_type, "shared", &c2, &v),
        LOOM_OK);
    assert_int_equal(c2.n, INCREMENTERS * INCREMENTS);
    assert_int_equal(est_count_stream("counter-shared"),
                     INCREMENTERS * INCREMENTS);
    print_message("    %u of %d commands retried\n", retried,
                  INCREMENTERS * INCREMENTS);
}

/* Appends to the aggregate's stream through another handle while the
 * command is being decided, so every attempt's append is stale. */
typedef struct saboteur {
    loom_store *other;
    int calls;
} saboteur;

static loom_err
decide_sabotaged(const void *state, int64_t version, loom_decision *out,
                 void *arg)
{
    saboteur *sab = arg;
    loom_event_data ev;

    (void) state;
    (void) version;
    sab->calls++;
    est_event(&ev, "counter.Incremented", NULL, 0);
    if (loom_store_append(sab->other, "counter-sabotaged", LOOM_EXPECT_ANY, &ev,
                          1, NULL) != LOOM_OK)
        return LOOM_EIO;
    est_event(&ev, "counter.Incremented", NULL, 0);
    return loom_decision_emit(out, &ev);
}

static void
test_aggregate_attempts_exhausted_is_conflict(void **state)
{
    est_fx *f = *state;
    saboteur sab = {loomt_store_open(), 0};
    loom_execute_options opt = {3};
    loom_execute_result res;

    memset(&res, 0, sizeof res);
    assert_int_equal(loom_aggregate_execute(f->s, &counter_type, "sabotaged",
                                            decide_sabotaged, &sab, &opt, &res),
                     LOOM_ECONFLICT);
    assert_int_equal(sab.calls, 3);
    assert_int_equal(res.attempts, 3);
    assert_int_equal(res.n_events, 0);
    assert_non_null(strstr(loom_store_errmsg(f->s), "counter-sabotaged"));
    /* Only the saboteur's events went in. */
    assert_int_equal(est_count_stream("counter-sabotaged"), 3);
    /* The default is 10 attempts. */
    sab.calls = 0;
    assert_int_equal(loom_aggregate_execute(f->s, &counter_type, "sabotaged",
                                            decide_sabotaged, &sab, NULL, &res),
                     LOOM_ECONFLICT);
    assert_int_equal(sab.calls, 10);
    assert_int_equal(res.attempts, 10);
    loom_store_close(sab.other);
}

int
main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, est_setup, est_teardown)
    const struct CMUnitTest tests[] = {
        T(test_aggregate_commands_fold_into_state),
        T(test_aggregate_load_new_is_initial_state),
        T(test_aggregate_rejected_command_appends_nothing),
        T(test_aggregate_empty_decision_is_ok),
        T(test_aggregate_snapshot_is_taken_and_used),
        T(test_aggregate_snapshot_after_batch),
        T(test_aggregate_snapshot_of_other_size_is_ignored),
        T(test_aggregate_snapshot_keeps_newest),
        T(test_aggregate_load_pages_through_long_streams),
        T(test_aggregate_apply_error_stops_load),
        T(test_aggregate_invalid_arguments),
        T(test_aggregate_bad_type_is_named),
        T(test_aggregate_concurrent_commands_retry),
        T(test_aggregate_attempts_exhausted_is_conflict),
    };
#undef T

    return cmocka_run_group_tests_name("eventstore.aggregate", tests,
                                       est_group_setup, est_group_teardown);
}
