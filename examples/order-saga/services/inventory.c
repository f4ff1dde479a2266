/*
 * The inventory service: stock per SKU, reservations all or nothing.
 *
 * ReserveStock loads every SKU of the order and emits one StockReserved
 * per item, each expecting the version it loaded: a concurrent
 * reservation that committed first makes the append conflict, and the
 * participant runs the handler again on the fresh stock (counted in
 * loom_participant_stats.conflicts). That is what keeps a burst of orders
 * on the same SKUs from overselling.
 */
#include <stdio.h>
#include <string.h>

#include "services.h"

static loom_err
stock_apply(void *state, const loom_event *ev)
{
    os_stock *s = state;
    const char *t = ev->type;
    ProtobufCMessage *m;
    const char *order = NULL;
    int64_t delta = 0;

    if (strcmp(t, "ordersaga.StockAdded") == 0)
        m = protobuf_c_message_unpack(&ordersaga__stock_added__descriptor, NULL,
                                      ev->data_len, ev->data);
    else if (strcmp(t, "ordersaga.StockReserved") == 0)
        m = protobuf_c_message_unpack(&ordersaga__stock_reserved__descriptor,
                                      NULL, ev->data_len, ev->data);
    else if (strcmp(t, "ordersaga.StockReleased") == 0)
        m = protobuf_c_message_unpack(&ordersaga__stock_released__descriptor,
                                      NULL, ev->data_len, ev->data);
    else if (strcmp(t, "ordersaga.OutOfStock") == 0)
        m = protobuf_c_message_unpack(&ordersaga__out_of_stock__descriptor,
                                      NULL, ev->data_len, ev->data);
    else
        return LOOM_OK;
    if (m == NULL)
        return LOOM_EDECODE;
    if (m->descriptor == &ordersaga__stock_added__descriptor) {
        delta = ((Ordersaga__StockAdded *) m)->qty;
    } else if (m->descriptor == &ordersaga__stock_reserved__descriptor) {
        delta = -((Ordersaga__StockReserved *) m)->qty;
        order = ((Ordersaga__StockReserved *) m)->order_id;
    } else if (m->descriptor == &ordersaga__stock_released__descriptor) {
        delta = ((Ordersaga__StockReleased *) m)->qty;
        order = ((Ordersaga__StockReleased *) m)->order_id;
    } else if (os_ledger_is(((Ordersaga__OutOfStock *) m)->order_id)) {
        s->refused = 1; /* the stock is untouched */
    }
    s->on_hand += delta;
    if (order != NULL && os_ledger_is(order)) {
        s->held -= delta;
        if (m->descriptor == &ordersaga__stock_released__descriptor)
            s->released = 1;
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return LOOM_OK;
}

/* No snapshots: `held` depends on the ledger key, not only the stream. */
const loom_aggregate_type os_stock_type = {
    .name = "stock",
    .state_size = sizeof(os_stock),
    .state_version = 1,
    .apply = stock_apply,
    .snapshot_every = 0,
};

/* Refuses an order that names a SKU twice: its appends would expect the
 * same version and conflict for ever. */
static int
has_duplicate(Ordersaga__Item *const *items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            if (strcmp(items[i]->sku, items[j]->sku) == 0)
                return 1;
    return 0;
}

/* Refuses the order for want of item i: records OutOfStock on `stream`
 * (expecting version `v`) unless stream is NULL (refused before), and
 * fails the step. */
static loom_err
refuse(loom_participant_ctx *ctx, const Ordersaga__ReserveStock *cmd, size_t i,
       const os_stock *st, const char *stream, int64_t v,
       Ordersaga__OutOfStock *failure)
{
    const Ordersaga__Item *it = cmd->items[i];
    loom_err rc;

    failure->order_id = cmd->order_id;
    failure->sku = it->sku;
    failure->requested = it->qty;
    failure->available = (int32_t) st->on_hand;
    if (stream != NULL &&
        (rc = os_emit(ctx, stream, v, &failure->base)) != LOOM_OK)
        return rc;
    return loom_participant_fail(ctx, "OUT_OF_STOCK",
                                 "%s: %d wanted, %lld left%s", it->sku,
                                 (int) it->qty, (long long) st->on_hand,
                                 stream ? "" : " (refused before)");
}

loom_err
ordersaga__inventory__reserve_stock__handle(loom_participant_ctx *ctx,
                                            const Ordersaga__ReserveStock *cmd,
                                            Ordersaga__StockReservation *reply,
                                            Ordersaga__OutOfStock *failure)
{
    os_stock st[16];
    int64_t ver[16];
    char id[OS_ID_MAX], stream[OS_ID_MAX + 8];
    int32_t units = 0;
    loom_err rc;

    if (cmd->n_items == 0 || cmd->n_items > 16 ||
        has_duplicate(cmd->items, cmd->n_items))
        return loom_participant_fail(ctx, "BAD_ORDER",
                                     "1 to 16 items, each SKU once");
    os_ledger_key(cmd->order_id);
    for (size_t i = 0; i < cmd->n_items; i++) {
        os_id(id, sizeof id, cmd->shop, cmd->items[i]->sku);
        rc = loom_participant_load(ctx, &os_stock_type, id, &st[i], &ver[i]);
        if (rc != LOOM_OK)
            return rc;
        if (st[i].held > 0) /* a retried attempt: reserved already */
            goto done;
    }
    /* A retried attempt (its first reply came after the step's timeout)
     * of an order refused already gets the same answer, said once in the
     * stream: whatever came back on the shelves since. */
    for (size_t i = 0; i < cmd->n_items; i++)
        if (st[i].refused)
            return refuse(ctx, cmd, i, &st[i], NULL, 0, failure);
    /* A reservation command that comes after its saga compensated (an
     * attempt sent again after a timeout, delivered late): the saga no
     * longer waits for it, and reserving now would hold the stock for
     * good. */
    for (size_t i = 0; i < cmd->n_items; i++)
        if (st[i].released)
            return loom_participant_fail(ctx, "RELEASED",
                                         "%s: released already: the order's "
                                         "saga compensated",
                                         cmd->items[i]->sku);
    for (size_t i = 0; i < cmd->n_items; i++)
        if (st[i].on_hand < cmd->items[i]->qty) {
            os_id(id, sizeof id, cmd->shop, cmd->items[i]->sku);
            snprintf(stream, sizeof stream, "stock-%s", id);
            return refuse(ctx, cmd, i, &st[i], stream, ver[i], failure);
        }
    for (size_t i = 0; i < cmd->n_items; i++) {
        Ordersaga__StockReserved ev = ORDERSAGA__STOCK_RESERVED__INIT;
        os_id(id, sizeof id, cmd->shop, cmd->items[i]->sku);
        snprintf(stream, sizeof stream, "stock-%s", id);
        ev.order_id = cmd->order_id;
        ev.sku = cmd->items[i]->sku;
        ev.qty = cmd->items[i]->qty;
        rc = os_emit(ctx, stream, ver[i], &ev.base);
        if (rc != LOOM_OK)
            return rc;
    }
done:
    for (size_t i = 0; i < cmd->n_items; i++)
        units += cmd->items[i]->qty;
    reply->order_id = cmd->order_id;
    reply->units = units;
    return LOOM_OK;
}

/* Gives back what the order holds of each SKU; nothing when it holds
 * nothing (the reservation never happened, or was released already). */
loom_err
ordersaga__inventory__release_stock__handle(loom_participant_ctx *ctx,
                                            const Ordersaga__ReleaseStock *cmd,
                                            Ordersaga__StockReturned *reply)
{
    char id[OS_ID_MAX], stream[OS_ID_MAX + 8];
    int32_t units = 0;
    loom_err rc;

    os_ledger_key(cmd->order_id);
    for (size_t i = 0; i < cmd->n_items; i++) {
        Ordersaga__StockReleased ev = ORDERSAGA__STOCK_RELEASED__INIT;
        os_stock st;
        int64_t v;

        os_id(id, sizeof id, cmd->shop, cmd->items[i]->sku);
        rc = loom_participant_load(ctx, &os_stock_type, id, &st, &v);
        if (rc != LOOM_OK)
            return rc;
        if (st.held <= 0)
            continue;
        snprintf(stream, sizeof stream, "stock-%s", id);
        ev.order_id = cmd->order_id;
        ev.sku = cmd->items[i]->sku;
        ev.qty = (int32_t) st.held;
        rc = os_emit(ctx, stream, v, &ev.base);
        if (rc != LOOM_OK)
            return rc;
        units += ev.qty;
    }
    reply->units = units;
    return LOOM_OK;
}
