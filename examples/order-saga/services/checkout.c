/*
 * The orchestrator's handlers of the CreateOrder saga
 * (protos/ordersaga/create_order.proto): each builds a step's command
 * from the saga data, or records in the data what a reply or a failure
 * said. They run on the orchestrator's loop, in memory; fields may
 * borrow from the data or the reply (see loom_saga_command_fn).
 */
#include <stdio.h>
#include <string.h>

#include "services.h"

/* "<step>: <code>" into data->failure. */
static loom_err
failed(loom_saga_ctx *ctx, Ordersaga__CreateOrderData *data, const char *step,
       const loom_saga_failure *why)
{
    size_t n = strlen(step) + strlen(why->code) + 3;
    char *s = loom_saga_alloc(ctx, n);

    if (s == NULL)
        return LOOM_ENOMEM;
    snprintf(s, n, "%s: %s", step, why->code);
    data->failure = s;
    return LOOM_OK;
}

loom_err
ordersaga__create_order__reserve_stock__command(
    loom_saga_ctx *ctx, const Ordersaga__CreateOrderData *data,
    Ordersaga__ReserveStock *command)
{
    (void) ctx;
    command->order_id = data->order_id;
    command->shop = data->shop;
    command->n_items = data->n_items;
    command->items = data->items;
    return LOOM_OK;
}

loom_err
ordersaga__create_order__reserve_stock__reply(
    loom_saga_ctx *ctx, Ordersaga__CreateOrderData *data,
    const Ordersaga__StockReservation *reply)
{
    (void) ctx, (void) data, (void) reply;
    return LOOM_OK;
}

loom_err
ordersaga__create_order__reserve_stock__failed(
    loom_saga_ctx *ctx, Ordersaga__CreateOrderData *data,
    const Ordersaga__OutOfStock *failure, const loom_saga_failure *why)
{
    (void) failure;
    return failed(ctx, data, "ReserveStock", why);
}

loom_err
ordersaga__create_order__authorise_payment__command(
    loom_saga_ctx *ctx, const Ordersaga__CreateOrderData *data,
    Ordersaga__AuthorisePayment *command)
{
    (void) ctx;
    command->order_id = data->order_id;
    command->shop = data->shop;
    command->customer = data->customer;
    command->amount_cents = data->total_cents;
    return LOOM_OK;
}

loom_err
ordersaga__create_order__authorise_payment__reply(
    loom_saga_ctx *ctx, Ordersaga__CreateOrderData *data,
    const Ordersaga__PaymentAuthorised *reply)
{
    data->payment_id = loom_saga_strdup(ctx, reply->payment_id);
    return data->payment_id != NULL ? LOOM_OK : LOOM_ENOMEM;
}

loom_err
ordersaga__create_order__authorise_payment__failed(
    loom_saga_ctx *ctx, Ordersaga__CreateOrderData *data,
    const Ordersaga__PaymentRefused *failure, const loom_saga_failure *why)
{
    (void) failure;
    return failed(ctx, data, "AuthorisePayment", why);
}

loom_err
ordersaga__create_order__confirm_order__command(
    loom_saga_ctx *ctx, const Ordersaga__CreateOrderData *data,
    Ordersaga__ConfirmOrder *command)
{
    (void) ctx;
    command->order_id = data->order_id;
    return LOOM_OK;
}

loom_err
ordersaga__create_order__confirm_order__reply(
    loom_saga_ctx *ctx, Ordersaga__CreateOrderData *data,
    const Ordersaga__OrderConfirmed *reply)
{
    (void) ctx, (void) data, (void) reply;
    return LOOM_OK;
}

loom_err
ordersaga__create_order__confirm_order__failed(
    loom_saga_ctx *ctx, Ordersaga__CreateOrderData *data,
    const Ordersaga__OrderRefused *failure, const loom_saga_failure *why)
{
    (void) failure;
    return failed(ctx, data, "ConfirmOrder", why);
}

loom_err
ordersaga__create_order__release_stock__command(
    loom_saga_ctx *ctx, const Ordersaga__CreateOrderData *data,
    Ordersaga__ReleaseStock *command)
{
    (void) ctx;
    command->order_id = data->order_id;
    command->shop = data->shop;
    command->n_items = data->n_items;
    command->items = data->items;
    return LOOM_OK;
}

loom_err
ordersaga__create_order__release_stock__reply(
    loom_saga_ctx *ctx, Ordersaga__CreateOrderData *data,
    const Ordersaga__StockReturned *reply)
{
    (void) ctx, (void) data, (void) reply;
    return LOOM_OK;
}

loom_err
ordersaga__create_order__refund_payment__command(
    loom_saga_ctx *ctx, const Ordersaga__CreateOrderData *data,
    Ordersaga__RefundPayment *command)
{
    (void) ctx;
    command->order_id = data->order_id;
    command->shop = data->shop;
    command->customer = data->customer;
    command->payment_id = data->payment_id;
    command->amount_cents = data->total_cents;
    return LOOM_OK;
}

loom_err
ordersaga__create_order__refund_payment__reply(
    loom_saga_ctx *ctx, Ordersaga__CreateOrderData *data,
    const Ordersaga__PaymentRefunded *reply)
{
    (void) ctx, (void) data, (void) reply;
    return LOOM_OK;
}
