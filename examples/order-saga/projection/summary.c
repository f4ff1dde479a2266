/*
 * Projection "ordersaga_summary": each handler queues one statement that
 * needs no result, keyed by the order id, so a replay of the same events
 * builds the same rows. The `saga` column lists what the services did
 * for the order, in commit order ("reserved → authorised → confirmed").
 */
#include <stdio.h>
#include <string.h>

#include "ordersaga/inventory.pb-c.h"
#include "ordersaga/order.pb-c.h"
#include "ordersaga/payment.pb-c.h"
#include "summary.h"

static loom_err
summary_setup(loom_tx *tx, void *arg)
{
    (void) arg;
    return loom_tx_exec(tx,
                        "CREATE TABLE order_summary (order_id text PRIMARY "
                        "KEY, customer text NOT NULL, items text NOT NULL, "
                        "total_cents bigint NOT NULL, status text NOT NULL, "
                        "saga text NOT NULL, reason text)",
                        0, NULL);
}

/* Appends `fact` to the order's saga column unless it is the last one
 * already (one StockReserved per SKU is one fact). */
static loom_err
summary_fact(loom_tx *tx, const char *order_id, const char *fact)
{
    const char *v[2] = {order_id, fact};

    return loom_tx_exec(tx,
                        "UPDATE order_summary SET saga = CASE WHEN saga = $2 "
                        "OR saga LIKE '%→ ' || $2 THEN saga ELSE saga || "
                        "' → ' || $2 END WHERE order_id = $1",
                        2, v);
}

static loom_err
summary_placed(loom_tx *tx, const Ordersaga__OrderPlaced *m)
{
    char items[512] = "", total[32];
    const char *v[4] = {m->order_id, m->customer, items, total};
    size_t len = 0;

    for (size_t i = 0; i < m->n_items && len < sizeof items; i++)
        len += (size_t) snprintf(items + len, sizeof items - len, "%s%d %s",
                                 i ? ", " : "", (int) m->items[i]->qty,
                                 m->items[i]->sku);
    snprintf(total, sizeof total, "%lld", (long long) m->total_cents);
    return loom_tx_exec(tx,
                        "INSERT INTO order_summary VALUES ($1, $2, $3, "
                        "$4::bigint, 'placed', 'placed', NULL) "
                        "ON CONFLICT (order_id) DO NOTHING",
                        4, v);
}

static loom_err
summary_status(loom_tx *tx, const char *order_id, const char *status,
               const char *reason)
{
    const char *v[3] = {order_id, status, reason};

    return loom_tx_exec(tx,
                        "UPDATE order_summary SET status = $2, reason = $3 "
                        "WHERE order_id = $1",
                        3, v);
}

/* One event: decoded by its type, then the row updated. */
static loom_err
summary_event(loom_tx *tx, const loom_event *ev, void *arg)
{
    const ProtobufCMessageDescriptor *d = NULL;
    ProtobufCMessage *m;
    loom_err rc = LOOM_OK;
    char why[128];

    (void) arg;
    static const ProtobufCMessageDescriptor *const all[] = {
        &ordersaga__order_placed__descriptor,
        &ordersaga__order_confirmed__descriptor,
        &ordersaga__order_cancelled__descriptor,
        &ordersaga__stock_reserved__descriptor,
        &ordersaga__stock_released__descriptor,
        &ordersaga__out_of_stock__descriptor,
        &ordersaga__payment_authorised__descriptor,
        &ordersaga__payment_declined__descriptor,
        &ordersaga__payment_refunded__descriptor};
    for (size_t i = 0; i < sizeof all / sizeof all[0] && d == NULL; i++)
        if (strcmp(all[i]->name, ev->type) == 0)
            d = all[i];
    if (d == NULL)
        return LOOM_OK;
    m = protobuf_c_message_unpack(d, NULL, ev->data_len, ev->data);
    if (m == NULL)
        return LOOM_EDECODE;
    if (d == &ordersaga__order_placed__descriptor) {
        rc = summary_placed(tx, (Ordersaga__OrderPlaced *) m);
    } else if (d == &ordersaga__order_confirmed__descriptor) {
        const char *id = ((Ordersaga__OrderConfirmed *) m)->order_id;
        rc = summary_status(tx, id, "confirmed", NULL);
        if (rc == LOOM_OK)
            rc = summary_fact(tx, id, "confirmed");
    } else if (d == &ordersaga__order_cancelled__descriptor) {
        Ordersaga__OrderCancelled *c = (Ordersaga__OrderCancelled *) m;
        rc = summary_status(tx, c->order_id, "cancelled", c->reason);
    } else if (d == &ordersaga__stock_reserved__descriptor) {
        rc = summary_fact(tx, ((Ordersaga__StockReserved *) m)->order_id,
                          "reserved");
    } else if (d == &ordersaga__stock_released__descriptor) {
        rc = summary_fact(tx, ((Ordersaga__StockReleased *) m)->order_id,
                          "released");
    } else if (d == &ordersaga__out_of_stock__descriptor) {
        Ordersaga__OutOfStock *o = (Ordersaga__OutOfStock *) m;
        snprintf(why, sizeof why, "out of stock (%s)", o->sku);
        rc = summary_fact(tx, o->order_id, why);
    } else if (d == &ordersaga__payment_authorised__descriptor) {
        rc = summary_fact(tx, ((Ordersaga__PaymentAuthorised *) m)->order_id,
                          "authorised");
    } else if (d == &ordersaga__payment_declined__descriptor) {
        rc = summary_fact(tx, ((Ordersaga__PaymentDeclined *) m)->order_id,
                          "declined");
    } else {
        rc = summary_fact(tx, ((Ordersaga__PaymentRefunded *) m)->order_id,
                          "refunded");
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return rc;
}

static const loom_projection_handler summary_handlers[] = {
    {"ordersaga.OrderPlaced", summary_event},
    {"ordersaga.OrderConfirmed", summary_event},
    {"ordersaga.OrderCancelled", summary_event},
    {"ordersaga.StockReserved", summary_event},
    {"ordersaga.StockReleased", summary_event},
    {"ordersaga.OutOfStock", summary_event},
    {"ordersaga.PaymentAuthorised", summary_event},
    {"ordersaga.PaymentDeclined", summary_event},
    {"ordersaga.PaymentRefunded", summary_event},
};

static const loom_projection_def summary_def = {
    .name = "ordersaga_summary",
    .schema = OS_SUMMARY_SCHEMA,
    .handlers = summary_handlers,
    .n_handlers = sizeof summary_handlers / sizeof summary_handlers[0],
    .setup = summary_setup,
};

const loom_projection_def *
os_summary_def(void)
{
    return &summary_def;
}
