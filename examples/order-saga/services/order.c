/*
 * The order service: the Order aggregate, the saga's last step
 * (ConfirmOrder) and the policy that cancels an order its saga could not
 * complete.
 */
#include <stdio.h>
#include <string.h>

#include "services.h"

static loom_err
order_apply(void *state, const loom_event *ev)
{
    os_order *o = state;

    if (strcmp(ev->type, "ordersaga.OrderPlaced") == 0) {
        Ordersaga__OrderPlaced *m =
            ordersaga__order_placed__unpack(NULL, ev->data_len, ev->data);
        if (m == NULL)
            return LOOM_EDECODE;
        o->placed = 1;
        o->total_cents = m->total_cents;
        ordersaga__order_placed__free_unpacked(m, NULL);
    } else if (strcmp(ev->type, "ordersaga.OrderConfirmed") == 0) {
        o->confirmed = 1;
    } else if (strcmp(ev->type, "ordersaga.OrderCancelled") == 0) {
        o->cancelled = 1;
    }
    return LOOM_OK;
}

const loom_aggregate_type os_order_type = {
    .name = "order",
    .state_size = sizeof(os_order),
    .state_version = 1,
    .apply = order_apply,
    .snapshot_every = 0,
};

/* Confirms a placed order (again: a no-op); refuses one that is not
 * placed or was cancelled. */
loom_err
ordersaga__order__confirm_order__handle(loom_participant_ctx *ctx,
                                        const Ordersaga__ConfirmOrder *cmd,
                                        Ordersaga__OrderConfirmed *reply,
                                        Ordersaga__OrderRefused *failure)
{
    char stream[OS_ID_MAX + 8];
    os_order o;
    int64_t v;
    loom_err rc =
        loom_participant_load(ctx, &os_order_type, cmd->order_id, &o, &v);

    if (rc != LOOM_OK)
        return rc;
    reply->order_id = cmd->order_id;
    reply->total_cents = o.total_cents;
    if (o.confirmed)
        return LOOM_OK;
    if (!o.placed || o.cancelled) {
        failure->order_id = cmd->order_id;
        failure->state = o.placed ? "cancelled" : "unknown";
        return loom_participant_fail(ctx, "REFUSED", "order %s is %s",
                                     cmd->order_id, failure->state);
    }
    snprintf(stream, sizeof stream, "order-%s", cmd->order_id);
    return os_emit(ctx, stream, v, &reply->base);
}

/* ---- the policy -------------------------------------------------------- */

static const char *const policy_types[] = {"ordersaga.OutOfStock",
                                           "ordersaga.PaymentDeclined"};

static loom_err
policy_cancel(loom_tx *tx, const char *order_id, const char *reason)
{
    Ordersaga__OrderCancelled m = ORDERSAGA__ORDER_CANCELLED__INIT;
    uint8_t buf[512];
    char stream[OS_ID_MAX + 8];
    loom_event_data ev;

    m.order_id = (char *) order_id;
    m.reason = (char *) reason;
    if (protobuf_c_message_get_packed_size(&m.base) > sizeof buf)
        return LOOM_ETOOBIG;
    memset(&ev, 0, sizeof ev);
    ev.type = "ordersaga.OrderCancelled";
    ev.schema_version = 1;
    ev.data = buf;
    ev.data_len = protobuf_c_message_pack(&m.base, buf);
    ev.correlation_id = order_id; /* the saga's id */
    snprintf(stream, sizeof stream, "order-%s", order_id);
    /* The saga failed before ConfirmOrder, so nothing else writes to the
     * order now; the subscription's checkpoint commits with the append,
     * so each refusal cancels once. */
    return loom_tx_append(tx, stream, LOOM_EXPECT_ANY, &ev, 1);
}

static loom_err
policy_handle(loom_tx *tx, const loom_event *const *evs, size_t n, void *arg)
{
    char reason[160];
    loom_err rc = LOOM_OK;

    (void) arg;
    for (size_t i = 0; i < n && rc == LOOM_OK; i++) {
        const loom_event *ev = evs[i];
        if (strcmp(ev->type, "ordersaga.OutOfStock") == 0) {
            Ordersaga__OutOfStock *m =
                ordersaga__out_of_stock__unpack(NULL, ev->data_len, ev->data);
            if (m == NULL)
                return LOOM_EDECODE;
            snprintf(reason, sizeof reason, "out of stock: %s", m->sku);
            rc = policy_cancel(tx, m->order_id, reason);
            ordersaga__out_of_stock__free_unpacked(m, NULL);
        } else {
            Ordersaga__PaymentDeclined *m = ordersaga__payment_declined__unpack(
                NULL, ev->data_len, ev->data);
            if (m == NULL)
                return LOOM_EDECODE;
            rc = policy_cancel(tx, m->order_id, "payment declined");
            ordersaga__payment_declined__free_unpacked(m, NULL);
        }
    }
    return rc;
}

loom_err
os_order_policy_start(loom_runtime *rt, const char *conninfo,
                      loom_subscription **out)
{
    loom_subscription_config cfg = LOOM_SUBSCRIPTION_CONFIG_INIT;

    cfg.name = "ordersaga-order-policy";
    cfg.types = policy_types;
    cfg.n_types = 2;
    cfg.conninfo = conninfo;
    return loom_subscribe_tx(rt, &cfg, policy_handle, NULL, out);
}
