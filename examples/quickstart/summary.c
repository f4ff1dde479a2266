/*
 * Projection "order_summary": the quickstart's orders as rows, decoded
 * from their protobuf events. Each handler queues one statement that
 * needs no result (the runner commits them with the checkpoint), so a
 * replay of the same events always builds the same table.
 */
#include <stdio.h>
#include <string.h>

#include "order.pb-c.h"
#include "summary.h"

/* "order-<id>" -> "<id>" */
static const char *
summary_order_id(const loom_event *ev)
{
    const char *dash = strchr(ev->stream, '-');

    return dash ? dash + 1 : ev->stream;
}

static loom_err
summary_setup(loom_tx *tx, void *arg)
{
    (void) arg;
    return loom_tx_exec(tx,
                        "CREATE TABLE orders (order_id text PRIMARY KEY, "
                        "customer text NOT NULL, items integer NOT NULL, "
                        "total_cents bigint NOT NULL, status text NOT NULL)",
                        0, NULL);
}

static loom_err
summary_placed(loom_tx *tx, const loom_event *ev, void *arg)
{
    Shop__OrderPlaced *m =
        shop__order_placed__unpack(NULL, ev->data_len, ev->data);
    const char *v[2];
    loom_err rc;

    (void) arg;
    if (m == NULL)
        return LOOM_EDECODE;
    v[0] = summary_order_id(ev);
    v[1] = m->customer;
    rc = loom_tx_exec(tx,
                      "INSERT INTO orders VALUES ($1, $2, 0, 0, 'open') "
                      "ON CONFLICT (order_id) DO NOTHING",
                      2, v);
    shop__order_placed__free_unpacked(m, NULL);
    return rc;
}

static loom_err
summary_item(loom_tx *tx, const loom_event *ev, void *arg)
{
    Shop__ItemAdded *m = shop__item_added__unpack(NULL, ev->data_len, ev->data);
    char qty[16], cents[32];
    const char *v[3] = {NULL, qty, cents};
    loom_err rc;

    (void) arg;
    if (m == NULL)
        return LOOM_EDECODE;
    v[0] = summary_order_id(ev);
    snprintf(qty, sizeof qty, "%d", (int) m->quantity);
    snprintf(cents, sizeof cents, "%lld",
             (long long) m->quantity * (long long) m->price_cents);
    rc = loom_tx_exec(tx,
                      "UPDATE orders SET items = items + $2::integer, "
                      "total_cents = total_cents + $3::bigint "
                      "WHERE order_id = $1",
                      3, v);
    shop__item_added__free_unpacked(m, NULL);
    return rc;
}

static loom_err
summary_confirmed(loom_tx *tx, const loom_event *ev, void *arg)
{
    summary_watch *w = arg;
    const char *v[1] = {summary_order_id(ev)};
    loom_err rc = loom_tx_exec(
        tx, "UPDATE orders SET status = 'confirmed' WHERE order_id = $1", 1, v);

    if (rc == LOOM_OK && w != NULL && w->fn != NULL)
        w->fn(v[0], w->arg);
    return rc;
}

static const loom_projection_handler summary_handlers[] = {
    {"shop.OrderPlaced", summary_placed},
    {"shop.ItemAdded", summary_item},
    {"shop.OrderConfirmed", summary_confirmed},
};

loom_projection_def
summary_def(summary_watch *watch)
{
    loom_projection_def d;

    memset(&d, 0, sizeof d);
    d.name = "order_summary";
    d.schema = "quickstart_read";
    d.handlers = summary_handlers;
    d.n_handlers = sizeof summary_handlers / sizeof summary_handlers[0];
    d.setup = summary_setup;
    d.arg = watch;
    return d;
}
