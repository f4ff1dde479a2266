/*
 * The handlers of loom-bench's checkout saga (saga/checkout.proto): the
 * orchestrator's command builders and reply handlers, and the three
 * participants, each of which appends one event per command to a stream
 * of its own per order, expecting it new, the way a service records what
 * it did.
 */
#include <stdio.h>
#include <string.h>

#include "saga/checkout.loom.h"

/* ---- the orchestrator's side -------------------------------------------- */

loom_err
benchsaga__checkout_saga__reserve_stock__command(
    loom_saga_ctx *ctx, const Benchsaga__Checkout *data,
    Benchsaga__Reserve *command)
{
    (void) ctx;
    command->order = data->order;
    command->amount = data->amount;
    return LOOM_OK;
}

loom_err
benchsaga__checkout_saga__reserve_stock__reply(loom_saga_ctx *ctx,
                                               Benchsaga__Checkout *data,
                                               const Benchsaga__Reserved *reply)
{
    data->reservation = loom_saga_strdup(ctx, reply->reservation);
    return data->reservation != NULL ? LOOM_OK : LOOM_ENOMEM;
}

loom_err
benchsaga__checkout_saga__reserve_stock__failed(
    loom_saga_ctx *ctx, Benchsaga__Checkout *data,
    const Benchsaga__Refused *failure, const loom_saga_failure *why)
{
    (void) ctx, (void) data, (void) failure, (void) why;
    return LOOM_OK;
}

loom_err
benchsaga__checkout_saga__charge_card__command(loom_saga_ctx *ctx,
                                               const Benchsaga__Checkout *data,
                                               Benchsaga__Charge *command)
{
    (void) ctx;
    command->order = data->order;
    command->amount = data->amount;
    return LOOM_OK;
}

loom_err
benchsaga__checkout_saga__charge_card__reply(loom_saga_ctx *ctx,
                                             Benchsaga__Checkout *data,
                                             const Benchsaga__Charged *reply)
{
    data->payment = loom_saga_strdup(ctx, reply->payment);
    return data->payment != NULL ? LOOM_OK : LOOM_ENOMEM;
}

loom_err
benchsaga__checkout_saga__charge_card__failed(loom_saga_ctx *ctx,
                                              Benchsaga__Checkout *data,
                                              const Benchsaga__Refused *failure,
                                              const loom_saga_failure *why)
{
    (void) ctx, (void) data, (void) failure, (void) why;
    return LOOM_OK;
}

loom_err
benchsaga__checkout_saga__ship_order__command(loom_saga_ctx *ctx,
                                              const Benchsaga__Checkout *data,
                                              Benchsaga__Ship *command)
{
    (void) ctx;
    command->order = data->order;
    return LOOM_OK;
}

loom_err
benchsaga__checkout_saga__ship_order__reply(loom_saga_ctx *ctx,
                                            Benchsaga__Checkout *data,
                                            const Benchsaga__Shipped *reply)
{
    data->shipment = loom_saga_strdup(ctx, reply->shipment);
    return data->shipment != NULL ? LOOM_OK : LOOM_ENOMEM;
}

loom_err
benchsaga__checkout_saga__ship_order__failed(loom_saga_ctx *ctx,
                                             Benchsaga__Checkout *data,
                                             const Benchsaga__Refused *failure,
                                             const loom_saga_failure *why)
{
    (void) ctx, (void) data, (void) failure, (void) why;
    return LOOM_OK;
}

loom_err
benchsaga__checkout_saga__release_stock__command(
    loom_saga_ctx *ctx, const Benchsaga__Checkout *data,
    Benchsaga__Release *command)
{
    (void) ctx;
    command->reservation = data->reservation;
    return LOOM_OK;
}

loom_err
benchsaga__checkout_saga__release_stock__reply(loom_saga_ctx *ctx,
                                               Benchsaga__Checkout *data,
                                               const Benchsaga__Released *reply)
{
    (void) ctx, (void) data, (void) reply;
    return LOOM_OK;
}

loom_err
benchsaga__checkout_saga__refund_card__command(loom_saga_ctx *ctx,
                                               const Benchsaga__Checkout *data,
                                               Benchsaga__Refund *command)
{
    (void) ctx;
    command->payment = data->payment;
    return LOOM_OK;
}

loom_err
benchsaga__checkout_saga__refund_card__reply(loom_saga_ctx *ctx,
                                             Benchsaga__Checkout *data,
                                             const Benchsaga__Refunded *reply)
{
    (void) ctx, (void) data, (void) reply;
    return LOOM_OK;
}

/* ---- the participants -----------------------------------------------------
 */

/* Appends one event of `type` to "<category>-<saga id>", which must be
 * new: the participant's record of what it did for this order. */
static loom_err
record(loom_participant_ctx *ctx, const char *category, const char *type)
{
    char stream[LOOM_SAGA_MAX_ID + 32];
    loom_event_data ev;

    memset(&ev, 0, sizeof ev);
    ev.type = type;
    ev.schema_version = 1;
    ev.data = "";
    ev.data_len = 0;
    snprintf(stream, sizeof stream, "%s-%s", category,
             loom_participant_saga_id(ctx));
    return loom_participant_emit(ctx, stream, LOOM_EXPECT_NO_STREAM, &ev, 1);
}

loom_err
benchsaga__bench_inventory__reserve_stock__handle(
    loom_participant_ctx *ctx, const Benchsaga__Reserve *command,
    Benchsaga__Reserved *reply, Benchsaga__Refused *failure)
{
    (void) failure;
    reply->reservation = command->order;
    return record(ctx, "stock", "benchsaga.StockReserved");
}

loom_err
benchsaga__bench_inventory__release_stock__handle(
    loom_participant_ctx *ctx, const Benchsaga__Release *command,
    Benchsaga__Released *reply)
{
    (void) command, (void) reply;
    return record(ctx, "stockrelease", "benchsaga.StockReleased");
}

loom_err
benchsaga__bench_payment__charge_card__handle(loom_participant_ctx *ctx,
                                              const Benchsaga__Charge *command,
                                              Benchsaga__Charged *reply,
                                              Benchsaga__Refused *failure)
{
    (void) failure;
    reply->payment = command->order;
    return record(ctx, "payment", "benchsaga.CardCharged");
}

loom_err
benchsaga__bench_payment__refund_card__handle(loom_participant_ctx *ctx,
                                              const Benchsaga__Refund *command,
                                              Benchsaga__Refunded *reply)
{
    (void) command, (void) reply;
    return record(ctx, "refund", "benchsaga.CardRefunded");
}

loom_err
benchsaga__bench_shipping__ship_order__handle(loom_participant_ctx *ctx,
                                              const Benchsaga__Ship *command,
                                              Benchsaga__Shipped *reply,
                                              Benchsaga__Refused *failure)
{
    (void) failure;
    reply->shipment = command->order;
    return record(ctx, "shipment", "benchsaga.OrderShipped");
}
