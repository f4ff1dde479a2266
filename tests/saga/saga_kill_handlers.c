/*
 * The handlers of sagakill.Checkout for saga_kill_test (saga_kill.h):
 * the orchestrator's, which build each command from the saga data and
 * keep what the replies say in it, and those of the three participants
 * (kill.inventory, kill.payments, kill.shipping).
 *
 * A participant handler's effects go only through its ctx: the event it
 * appends (with an expected version: the loaded one for the shared SKU
 * streams, so two commands on one SKU conflict and run again; "no
 * stream" for the per-saga payment and shipment streams) and its row in
 * kill_effects. Both commit with the reply and the inbox mark, or not at
 * all, so a command redelivered after a kill must change nothing twice.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "saga_kill.h"

int
kill_fail_at(int i)
{
    if (i % 7 != 3) {
        return 0;
    }
    return (i / 7) % 2 == 0 ? 2 : 3;
}

int
kill_sku(int i)
{
    return i % KILL_SKUS;
}

/* ---- the orchestrator's handlers ----------------------------------------- */

loom_err
sagakill__checkout__reserve__command(loom_saga_ctx *ctx,
                                     const Sagakill__Order *data,
                                     Sagakill__ReserveStock *command)
{
    (void) ctx;
    command->order_id = data->id; /* borrowed until it is packed */
    command->sku = data->sku;
    return LOOM_OK;
}

loom_err
sagakill__checkout__reserve__reply(loom_saga_ctx *ctx, Sagakill__Order *data,
                                   const Sagakill__StockReserved *reply)
{
    (void) ctx;
    data->reservation = reply->reservation; /* the reply outlives packing */
    return LOOM_OK;
}

/* "<step>:<code>" into the data: the test checks the failed handler ran
 * once, with the participant's code. */
static loom_err
kill_failed(loom_saga_ctx *ctx, Sagakill__Order *data, const char *step,
            const loom_saga_failure *why)
{
    size_t n = strlen(step) + strlen(why->code) + 2;
    char *s = loom_saga_alloc(ctx, n);

    if (s == NULL) {
        return LOOM_ENOMEM;
    }
    snprintf(s, n, "%s:%s", step, why->code);
    data->failed = s;
    return LOOM_OK;
}

loom_err
sagakill__checkout__reserve__failed(loom_saga_ctx *ctx, Sagakill__Order *data,
                                    const loom_saga_failure *why)
{
    return kill_failed(ctx, data, "Reserve", why);
}

loom_err
sagakill__checkout__charge__command(loom_saga_ctx *ctx,
                                    const Sagakill__Order *data,
                                    Sagakill__ChargeCard *command)
{
    (void) ctx;
    command->order_id = data->id;
    command->amount = data->amount;
    command->decline = data->fail_at == 2;
    return LOOM_OK;
}

loom_err
sagakill__checkout__charge__reply(loom_saga_ctx *ctx, Sagakill__Order *data,
                                  const Sagakill__CardCharged *reply)
{
    (void) ctx;
    data->payment = reply->payment;
    return LOOM_OK;
}

loom_err
sagakill__checkout__charge__failed(loom_saga_ctx *ctx, Sagakill__Order *data,
                                   const loom_saga_failure *why)
{
    return kill_failed(ctx, data, "Charge", why);
}

loom_err
sagakill__checkout__ship__command(loom_saga_ctx *ctx,
                                  const Sagakill__Order *data,
                                  Sagakill__ShipOrder *command)
{
    (void) ctx;
    command->order_id = data->id;
    command->refuse = data->fail_at == 3;
    return LOOM_OK;
}

loom_err
sagakill__checkout__ship__reply(loom_saga_ctx *ctx, Sagakill__Order *data,
                                const Sagakill__OrderShipped *reply)
{
    (void) ctx;
    data->tracking = reply->tracking;
    return LOOM_OK;
}

loom_err
sagakill__checkout__ship__failed(loom_saga_ctx *ctx, Sagakill__Order *data,
                                 const loom_saga_failure *why)
{
    return kill_failed(ctx, data, "Ship", why);
}

loom_err
sagakill__checkout__release__command(loom_saga_ctx *ctx,
                                     const Sagakill__Order *data,
                                     Sagakill__ReleaseStock *command)
{
    (void) ctx;
    command->order_id = data->id;
    command->sku = data->sku;
    command->reservation = data->reservation;
    return LOOM_OK;
}

loom_err
sagakill__checkout__release__reply(loom_saga_ctx *ctx, Sagakill__Order *data,
                                   const Sagakill__StockReleased *reply)
{
    (void) ctx;
    (void) data;
    (void) reply;
    return LOOM_OK;
}

loom_err
sagakill__checkout__refund__command(loom_saga_ctx *ctx,
                                    const Sagakill__Order *data,
                                    Sagakill__RefundCard *command)
{
    (void) ctx;
    command->order_id = data->id;
    command->payment = data->payment;
    return LOOM_OK;
}

loom_err
sagakill__checkout__refund__reply(loom_saga_ctx *ctx, Sagakill__Order *data,
                                  const Sagakill__CardRefunded *reply)
{
    (void) ctx;
    (void) data;
    (void) reply;
    return LOOM_OK;
}

/* ---- the aggregates ------------------------------------------------------ */

static loom_err
sku_apply(void *state, const loom_event *ev)
{
    kill_sku_state *s = state;

    if (strcmp(ev->type, sagakill__stock_reserved__descriptor.name) == 0) {
        s->reserved++;
    } else if (strcmp(ev->type, sagakill__stock_released__descriptor.name) ==
               0) {
        s->released++;
    }
    return LOOM_OK;
}

const loom_aggregate_type kill_sku_type = {
    "sku", sizeof(kill_sku_state), 1, NULL, sku_apply, 0};

/* A card: charged (or declined), then maybe refunded. */
typedef struct payment_state {
    int charged, declined, refunded;
} payment_state;

static loom_err
payment_apply(void *state, const loom_event *ev)
{
    payment_state *s = state;

    if (strcmp(ev->type, sagakill__card_charged__descriptor.name) == 0) {
        s->charged++;
    } else if (strcmp(ev->type, sagakill__card_declined__descriptor.name) ==
               0) {
        s->declined++;
    } else if (strcmp(ev->type, sagakill__card_refunded__descriptor.name) ==
               0) {
        s->refunded++;
    }
    return LOOM_OK;
}

static const loom_aggregate_type payment_type = {
    "payment", sizeof(payment_state), 1, NULL, payment_apply, 0};

/* ---- what every participant handler does --------------------------------- */

/* Appends `msg` as the one event of this command to `stream`, checked
 * against `expected`. */
static loom_err
kill_emit(loom_participant_ctx *ctx, const char *stream, int64_t expected,
          const ProtobufCMessage *msg)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = loom_participant_alloc(ctx, n > 0 ? n : 1);
    loom_event_data ev;

    if (buf == NULL) {
        return LOOM_ENOMEM;
    }
    protobuf_c_message_pack(msg, buf);
    memset(&ev, 0, sizeof ev);
    ev.type = msg->descriptor->name;
    ev.schema_version = 1;
    ev.data = buf;
    ev.data_len = n;
    return loom_participant_emit(ctx, stream, expected, &ev, 1);
}

/* The command's row in kill_effects, in its transaction. */
static loom_err
kill_effect(loom_participant_ctx *ctx, const char *step, const char *outcome)
{
    char pid[24];
    const char *values[4] = {loom_participant_saga_id(ctx), step, outcome, pid};

    snprintf(pid, sizeof pid, "%ld", (long) getpid());
    return loom_tx_exec(loom_participant_tx(ctx),
                        "INSERT INTO kill_effects (saga_id, step, outcome, "
                        "pid) VALUES ($1, $2, $3, $4::integer)",
                        4, values);
}

/* "<prefix>-<order id>" in the command's memory. */
static char *
kill_name(loom_participant_ctx *ctx, const char *prefix, const char *order)
{
    size_t n = strlen(prefix) + strlen(order) + 2;
    char *s = loom_participant_alloc(ctx, n);

    if (s != NULL) {
        snprintf(s, n, "%s-%s", prefix, order);
    }
    return s;
}

/* ---- kill.inventory ------------------------------------------------------ */

/* Loads sku-<n> and appends `msg` at the version it was loaded at. */
static loom_err
sku_emit(loom_participant_ctx *ctx, int32_t sku, const ProtobufCMessage *msg)
{
    kill_sku_state st;
    int64_t version = -1;
    char id[16];
    char *stream;
    loom_err rc;

    snprintf(id, sizeof id, "%d", (int) sku);
    rc = loom_participant_load(ctx, &kill_sku_type, id, &st, &version);
    if (rc != LOOM_OK) {
        return rc;
    }
    stream = kill_name(ctx, "sku", id);
    if (stream == NULL) {
        return LOOM_ENOMEM;
    }
    return kill_emit(ctx, stream, version, msg);
}

loom_err
sagakill__kill_inventory__reserve__handle(loom_participant_ctx *ctx,
                                          const Sagakill__ReserveStock *command,
                                          Sagakill__StockReserved *reply)
{
    loom_err rc;

    reply->order_id = command->order_id;
    reply->sku = command->sku;
    reply->reservation = kill_name(ctx, "res", command->order_id);
    if (reply->reservation == NULL) {
        return LOOM_ENOMEM;
    }
    rc = sku_emit(ctx, command->sku, &reply->base);
    return rc == LOOM_OK ? kill_effect(ctx, "Reserve", "ok") : rc;
}

loom_err
sagakill__kill_inventory__release__handle(loom_participant_ctx *ctx,
                                          const Sagakill__ReleaseStock *command,
                                          Sagakill__StockReleased *reply)
{
    loom_err rc;

    reply->order_id = command->order_id;
    reply->sku = command->sku;
    reply->reservation = command->reservation;
    rc = sku_emit(ctx, command->sku, &reply->base);
    return rc == LOOM_OK ? kill_effect(ctx, "Release", "ok") : rc;
}

/* ---- kill.payments ------------------------------------------------------- */

loom_err
sagakill__kill_payments__charge__handle(loom_participant_ctx *ctx,
                                        const Sagakill__ChargeCard *command,
                                        Sagakill__CardCharged *reply)
{
    char *stream = kill_name(ctx, "payment", command->order_id);
    loom_err rc;

    if (stream == NULL) {
        return LOOM_ENOMEM;
    }
    if (command->decline) {
        /* The refusal is on record too: it commits with the failure. */
        Sagakill__CardDeclined no = SAGAKILL__CARD_DECLINED__INIT;
        no.order_id = command->order_id;
        no.amount = command->amount;
        rc = kill_emit(ctx, stream, LOOM_EXPECT_NO_STREAM, &no.base);
        if (rc == LOOM_OK) {
            rc = kill_effect(ctx, "Charge", "failed");
        }
        if (rc != LOOM_OK) {
            return rc;
        }
        return loom_participant_fail(ctx, "DECLINED", "the card of %s",
                                     command->order_id);
    }
    reply->order_id = command->order_id;
    reply->amount = command->amount;
    reply->payment = kill_name(ctx, "pay", command->order_id);
    if (reply->payment == NULL) {
        return LOOM_ENOMEM;
    }
    rc = kill_emit(ctx, stream, LOOM_EXPECT_NO_STREAM, &reply->base);
    return rc == LOOM_OK ? kill_effect(ctx, "Charge", "ok") : rc;
}

loom_err
sagakill__kill_payments__refund__handle(loom_participant_ctx *ctx,
                                        const Sagakill__RefundCard *command,
                                        Sagakill__CardRefunded *reply)
{
    payment_state st;
    int64_t version = -1;
    char *stream = kill_name(ctx, "payment", command->order_id);
    loom_err rc;

    if (stream == NULL) {
        return LOOM_ENOMEM;
    }
    rc = loom_participant_load(ctx, &payment_type, command->order_id, &st,
                               &version);
    if (rc != LOOM_OK) {
        return rc;
    }
    reply->order_id = command->order_id;
    reply->payment = command->payment;
    if (st.charged == 0 || st.refunded > 0) {
        /* Nothing to undo: a compensation must accept that. It never
         * happens here (no step times out), and the test would see the
         * row. */
        return kill_effect(ctx, "Refund", "nothing");
    }
    rc = kill_emit(ctx, stream, version, &reply->base);
    return rc == LOOM_OK ? kill_effect(ctx, "Refund", "ok") : rc;
}

/* ---- kill.shipping ------------------------------------------------------- */

loom_err
sagakill__kill_shipping__ship__handle(loom_participant_ctx *ctx,
                                      const Sagakill__ShipOrder *command,
                                      Sagakill__OrderShipped *reply)
{
    char *stream = kill_name(ctx, "shipment", command->order_id);
    loom_err rc;

    if (stream == NULL) {
        return LOOM_ENOMEM;
    }
    if (command->refuse) {
        rc = kill_effect(ctx, "Ship", "failed");
        if (rc != LOOM_OK) {
            return rc;
        }
        return loom_participant_fail(ctx, "REFUSED", "no shipping for %s",
                                     command->order_id);
    }
    reply->order_id = command->order_id;
    reply->tracking = kill_name(ctx, "trk", command->order_id);
    if (reply->tracking == NULL) {
        return LOOM_ENOMEM;
    }
    rc = kill_emit(ctx, stream, LOOM_EXPECT_NO_STREAM, &reply->base);
    return rc == LOOM_OK ? kill_effect(ctx, "Ship", "ok") : rc;
}
