/*
 * The checkout's write side: a shop's opening stock and credit, and an
 * order placed together with the start of its saga. Shared by the demo's
 * scenarios and the fault campaign (tests/faults), which place orders
 * the same way a web front end would.
 */
#include <stdio.h>
#include <string.h>

#include "loom/topics.h"
#include "services.h"

loom_err
os_queue_event(loom_tx *tx, const char *stream, int64_t expected,
               const ProtobufCMessage *m, const char *correlation)
{
    uint8_t buf[1024];
    loom_event_data ev;

    if (protobuf_c_message_get_packed_size(m) > sizeof buf)
        return LOOM_ETOOBIG;
    memset(&ev, 0, sizeof ev);
    ev.type = m->descriptor->name;
    ev.schema_version = 1;
    ev.data = buf;
    ev.data_len = protobuf_c_message_pack(m, buf);
    ev.correlation_id = correlation;
    return loom_tx_append(tx, stream, expected, &ev, 1);
}

loom_err
os_queue_stock(loom_tx *tx, const char *shop, const char *sku, int32_t qty)
{
    Ordersaga__StockAdded m = ORDERSAGA__STOCK_ADDED__INIT;
    char id[OS_ID_MAX], stream[OS_ID_MAX + 8];

    m.sku = (char *) sku;
    m.qty = qty;
    os_id(id, sizeof id, shop, sku);
    snprintf(stream, sizeof stream, "stock-%s", id);
    return os_queue_event(tx, stream, LOOM_EXPECT_NO_STREAM, &m.base, NULL);
}

loom_err
os_queue_credit(loom_tx *tx, const char *shop, const char *customer,
                int64_t limit_cents)
{
    Ordersaga__CreditLimitSet m = ORDERSAGA__CREDIT_LIMIT_SET__INIT;
    char id[OS_ID_MAX], stream[OS_ID_MAX + 16];

    m.customer = (char *) customer;
    m.limit_cents = limit_cents;
    os_id(id, sizeof id, shop, customer);
    snprintf(stream, sizeof stream, "customer-%s", id);
    return os_queue_event(tx, stream, LOOM_EXPECT_NO_STREAM, &m.base, NULL);
}

loom_err
os_queue_order(loom_tx *tx, const char *shop, const char *id,
               const char *customer, const os_line *lines, size_t n)
{
    Ordersaga__Item items[OS_MAX_LINES], *ptrs[OS_MAX_LINES];
    Ordersaga__OrderPlaced placed = ORDERSAGA__ORDER_PLACED__INIT;
    Ordersaga__CreateOrderData data = ORDERSAGA__CREATE_ORDER_DATA__INIT;
    char stream[OS_ID_MAX + 8];
    int64_t total = 0;
    loom_err rc;

    if (n == 0 || n > OS_MAX_LINES)
        return LOOM_EINVAL;
    for (size_t i = 0; i < n; i++) {
        ordersaga__item__init(&items[i]);
        items[i].sku = (char *) lines[i].sku;
        items[i].qty = lines[i].qty;
        items[i].price_cents = lines[i].price_cents;
        total += items[i].qty * items[i].price_cents;
        ptrs[i] = &items[i];
    }
    placed.order_id = (char *) id;
    placed.shop = (char *) shop;
    placed.customer = (char *) customer;
    placed.n_items = n;
    placed.items = ptrs;
    placed.total_cents = total;
    snprintf(stream, sizeof stream, "order-%s", id);
    rc = os_queue_event(tx, stream, LOOM_EXPECT_NO_STREAM, &placed.base, id);
    if (rc != LOOM_OK)
        return rc;
    data.order_id = placed.order_id;
    data.shop = placed.shop;
    data.customer = placed.customer;
    data.n_items = n;
    data.items = ptrs;
    data.total_cents = total;
    return loom_saga_start_tx(tx, &ordersaga__create_order__saga, id,
                              &data.base, NULL);
}

loom_err
os_create_topics(loom_store *s, const char **failed)
{
    static const char *const names[] = {"inventory", "payment", "order",
                                        "ordersaga.replies"};
    loom_topic_config tc = LOOM_TOPIC_CONFIG_INIT;

    tc.partitions = 4;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        loom_err rc = loom_topic_create(s, names[i], &tc);
        if (rc != LOOM_OK && rc != LOOM_EDUPLICATE) {
            *failed = names[i];
            return rc;
        }
    }
    return LOOM_OK;
}
