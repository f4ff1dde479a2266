/*
 * Every handler shop/order_saga.proto asks for, as a user writes them
 * (see handlers.h). Compiled with -Wpedantic -Wconversion -Wcast-qual
 * -Wunused-parameter on top of the project's warnings.
 */
#include "handlers.h"

#include "shop/order_saga.loom.h"

handler_call codegen_last_call;

static loom_err
record(const char *fn, const void *ctx, const void *a, const void *b,
       const void *c)
{
    codegen_last_call.fn = fn;
    codegen_last_call.ctx = ctx;
    codegen_last_call.arg[0] = a;
    codegen_last_call.arg[1] = b;
    codegen_last_call.arg[2] = c;
    codegen_last_call.calls++;
    return LOOM_OK;
}

/* Saga shop__create_order */

loom_err
shop__create_order__reserve_inventory__command(loom_saga_ctx *ctx,
                                               const Shop__OrderData *data,
                                               Shop__ReserveInventory *command)
{
    return record(__func__, ctx, data, command, NULL);
}

loom_err
shop__create_order__reserve_inventory__reply(
    loom_saga_ctx *ctx, Shop__OrderData *data,
    const Shop__InventoryReserved *reply)
{
    return record(__func__, ctx, data, reply, NULL);
}

loom_err
shop__create_order__reserve_inventory__failed(
    loom_saga_ctx *ctx, Shop__OrderData *data,
    const Shop__ReservationFailed *failure, const loom_saga_failure *why)
{
    return record(__func__, ctx, data, failure, why);
}

loom_err
shop__create_order__charge_payment__command(loom_saga_ctx *ctx,
                                            const Shop__OrderData *data,
                                            Shop__ChargePayment *command)
{
    return record(__func__, ctx, data, command, NULL);
}

loom_err
shop__create_order__charge_payment__reply(loom_saga_ctx *ctx,
                                          Shop__OrderData *data,
                                          const Shop__PaymentCharged *reply)
{
    return record(__func__, ctx, data, reply, NULL);
}

loom_err
shop__create_order__charge_payment__failed(loom_saga_ctx *ctx,
                                           Shop__OrderData *data,
                                           const Shop__PaymentDeclined *failure,
                                           const loom_saga_failure *why)
{
    return record(__func__, ctx, data, failure, why);
}

loom_err
shop__create_order__confirm_order__command(loom_saga_ctx *ctx,
                                           const Shop__OrderData *data,
                                           Shop__ConfirmOrder *command)
{
    return record(__func__, ctx, data, command, NULL);
}

loom_err
shop__create_order__confirm_order__reply(loom_saga_ctx *ctx,
                                         Shop__OrderData *data,
                                         const Shop__OrderConfirmed *reply)
{
    return record(__func__, ctx, data, reply, NULL);
}

loom_err
shop__create_order__confirm_order__failed(loom_saga_ctx *ctx,
                                          Shop__OrderData *data,
                                          const loom_saga_failure *why)
{
    return record(__func__, ctx, data, why, NULL);
}

loom_err
shop__create_order__release_inventory__command(loom_saga_ctx *ctx,
                                               const Shop__OrderData *data,
                                               Shop__ReleaseInventory *command)
{
    return record(__func__, ctx, data, command, NULL);
}

loom_err
shop__create_order__release_inventory__reply(
    loom_saga_ctx *ctx, Shop__OrderData *data,
    const Shop__InventoryReleased *reply)
{
    return record(__func__, ctx, data, reply, NULL);
}

loom_err
shop__create_order__refund_payment__command(loom_saga_ctx *ctx,
                                            const Shop__OrderData *data,
                                            Shop__RefundPayment *command)
{
    return record(__func__, ctx, data, command, NULL);
}

loom_err
shop__create_order__refund_payment__reply(loom_saga_ctx *ctx,
                                          Shop__OrderData *data,
                                          const Shop__PaymentRefunded *reply)
{
    return record(__func__, ctx, data, reply, NULL);
}

/* Saga shop__cancel_order */

loom_err
shop__cancel_order__cancel_payment__command(loom_saga_ctx *ctx,
                                            const Shop__OrderData *data,
                                            Shop__RefundPayment *command)
{
    return record(__func__, ctx, data, command, NULL);
}

loom_err
shop__cancel_order__cancel_payment__reply(loom_saga_ctx *ctx,
                                          Shop__OrderData *data,
                                          const Shop__PaymentRefunded *reply)
{
    return record(__func__, ctx, data, reply, NULL);
}

loom_err
shop__cancel_order__cancel_payment__failed(loom_saga_ctx *ctx,
                                           Shop__OrderData *data,
                                           const loom_saga_failure *why)
{
    return record(__func__, ctx, data, why, NULL);
}

loom_err
shop__cancel_order__mark_cancelled__command(loom_saga_ctx *ctx,
                                            const Shop__OrderData *data,
                                            Shop__ConfirmOrder *command)
{
    return record(__func__, ctx, data, command, NULL);
}

loom_err
shop__cancel_order__mark_cancelled__reply(loom_saga_ctx *ctx,
                                          Shop__OrderData *data,
                                          const Shop__OrderConfirmed *reply)
{
    return record(__func__, ctx, data, reply, NULL);
}

loom_err
shop__cancel_order__mark_cancelled__failed(loom_saga_ctx *ctx,
                                           Shop__OrderData *data,
                                           const loom_saga_failure *why)
{
    return record(__func__, ctx, data, why, NULL);
}

loom_err
shop__cancel_order__recharge_payment__command(loom_saga_ctx *ctx,
                                              const Shop__OrderData *data,
                                              Shop__ChargePayment *command)
{
    return record(__func__, ctx, data, command, NULL);
}

loom_err
shop__cancel_order__recharge_payment__reply(loom_saga_ctx *ctx,
                                            Shop__OrderData *data,
                                            const Shop__PaymentCharged *reply)
{
    return record(__func__, ctx, data, reply, NULL);
}

/* Participant shop__inventory */

loom_err
shop__inventory__reserve_inventory__handle(
    loom_participant_ctx *ctx, const Shop__ReserveInventory *command,
    Shop__InventoryReserved *reply, Shop__ReservationFailed *failure)
{
    return record(__func__, ctx, command, reply, failure);
}

loom_err
shop__inventory__release_inventory__handle(
    loom_participant_ctx *ctx, const Shop__ReleaseInventory *command,
    Shop__InventoryReleased *reply)
{
    return record(__func__, ctx, command, reply, NULL);
}

/* Participant shop__payments_charges */

loom_err
shop__payments_charges__charge_payment__handle(
    loom_participant_ctx *ctx, const Shop__ChargePayment *command,
    Shop__PaymentCharged *reply, Shop__PaymentDeclined *failure)
{
    return record(__func__, ctx, command, reply, failure);
}

loom_err
shop__payments_charges__refund_payment__handle(
    loom_participant_ctx *ctx, const Shop__RefundPayment *command,
    Shop__PaymentRefunded *reply, Shop__PaymentDeclined *failure)
{
    return record(__func__, ctx, command, reply, failure);
}

loom_err
shop__payments_charges__cancel_payment__handle(
    loom_participant_ctx *ctx, const Shop__RefundPayment *command,
    Shop__PaymentRefunded *reply)
{
    return record(__func__, ctx, command, reply, NULL);
}

loom_err
shop__payments_charges__recharge_payment__handle(
    loom_participant_ctx *ctx, const Shop__ChargePayment *command,
    Shop__PaymentCharged *reply)
{
    return record(__func__, ctx, command, reply, NULL);
}

/* Participant shop__orders */

loom_err
shop__orders__confirm_order__handle(loom_participant_ctx *ctx,
                                    const Shop__ConfirmOrder *command,
                                    Shop__OrderConfirmed *reply)
{
    return record(__func__, ctx, command, reply, NULL);
}

loom_err
shop__orders__mark_cancelled__handle(loom_participant_ctx *ctx,
                                     const Shop__ConfirmOrder *command,
                                     Shop__OrderConfirmed *reply)
{
    return record(__func__, ctx, command, reply, NULL);
}
