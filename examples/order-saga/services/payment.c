/*
 * The payment service: each customer's credit account. An authorisation
 * takes the order's total from the credit left, or is declined (recorded
 * as PaymentDeclined, committed with the failure reply); a refund gives
 * it back. Both are idempotent per order (the ledger key, services.h).
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "services.h"

static loom_err
account_apply(void *state, const loom_event *ev)
{
    os_account *a = state;
    const char *t = ev->type;

    if (strcmp(t, "ordersaga.CreditLimitSet") == 0) {
        Ordersaga__CreditLimitSet *m =
            ordersaga__credit_limit_set__unpack(NULL, ev->data_len, ev->data);
        if (m == NULL)
            return LOOM_EDECODE;
        a->limit_cents = m->limit_cents;
        ordersaga__credit_limit_set__free_unpacked(m, NULL);
    } else if (strcmp(t, "ordersaga.PaymentAuthorised") == 0) {
        Ordersaga__PaymentAuthorised *m =
            ordersaga__payment_authorised__unpack(NULL, ev->data_len, ev->data);
        if (m == NULL)
            return LOOM_EDECODE;
        a->used_cents += m->amount_cents;
        if (os_ledger_is(m->order_id))
            a->held_cents += m->amount_cents;
        ordersaga__payment_authorised__free_unpacked(m, NULL);
    } else if (strcmp(t, "ordersaga.PaymentRefunded") == 0) {
        Ordersaga__PaymentRefunded *m =
            ordersaga__payment_refunded__unpack(NULL, ev->data_len, ev->data);
        if (m == NULL)
            return LOOM_EDECODE;
        a->used_cents -= m->amount_cents;
        if (os_ledger_is(m->order_id)) {
            a->held_cents -= m->amount_cents;
            a->refunded = 1;
        }
        ordersaga__payment_refunded__free_unpacked(m, NULL);
    } else if (strcmp(t, "ordersaga.PaymentDeclined") == 0) {
        Ordersaga__PaymentDeclined *m =
            ordersaga__payment_declined__unpack(NULL, ev->data_len, ev->data);
        if (m == NULL)
            return LOOM_EDECODE;
        if (os_ledger_is(m->order_id))
            a->declined = 1; /* the credit is untouched */
        ordersaga__payment_declined__free_unpacked(m, NULL);
    }
    return LOOM_OK;
}

const loom_aggregate_type os_account_type = {
    .name = "customer",
    .state_size = sizeof(os_account),
    .state_version = 1,
    .apply = account_apply,
    .snapshot_every = 0,
};

static char hang_order[OS_ID_MAX];
static int hang_fd = -1;

void
os_payment_hang_on(const char *order_id, int notify_fd)
{
    snprintf(hang_order, sizeof hang_order, "%s", order_id ? order_id : "");
    hang_fd = notify_fd;
}

/* The kill scenario's stand-in for a process that hangs mid-command:
 * nothing of the command has committed, and nothing will. */
static void
maybe_hang(const char *order_id)
{
    if (hang_order[0] == '\0' || strcmp(hang_order, order_id) != 0)
        return;
    if (hang_fd >= 0 && write(hang_fd, "hang\n", 5) < 0)
        hang_fd = -1;
    for (;;)
        pause();
}

loom_err
ordersaga__payment__authorise_payment__handle(
    loom_participant_ctx *ctx, const Ordersaga__AuthorisePayment *cmd,
    Ordersaga__PaymentAuthorised *reply, Ordersaga__PaymentRefused *failure)
{
    char id[OS_ID_MAX], stream[OS_ID_MAX + 16];
    os_account a;
    int64_t v, left;
    loom_err rc;

    maybe_hang(cmd->order_id);
    os_id(id, sizeof id, cmd->shop, cmd->customer);
    snprintf(stream, sizeof stream, "customer-%s", id);
    os_ledger_key(cmd->order_id);
    rc = loom_participant_load(ctx, &os_account_type, id, &a, &v);
    if (rc != LOOM_OK)
        return rc;
    reply->payment_id = loom_participant_alloc(ctx, strlen(cmd->order_id) + 5);
    if (reply->payment_id == NULL)
        return LOOM_ENOMEM;
    sprintf(reply->payment_id, "pay-%s", cmd->order_id);
    reply->order_id = cmd->order_id;
    reply->customer = cmd->customer;
    reply->amount_cents = cmd->amount_cents;
    if (a.held_cents > 0) /* a retried attempt: authorised already */
        return LOOM_OK;
    left = a.limit_cents - a.used_cents;
    if (a.refunded) {
        /* An authorisation that comes after its saga compensated (an
         * attempt sent again after a timeout, delivered late): charging
         * now would never be refunded. */
        failure->available_cents = left;
        return loom_participant_fail(ctx, "REFUNDED",
                                     "refunded already: the order's saga "
                                     "compensated");
    }
    if (a.declined) {
        /* A retried attempt (its first reply came after the step's
         * timeout): declined already, and said so once in the stream. */
        failure->available_cents = left;
        return loom_participant_fail(ctx, "DECLINED",
                                     "declined already for this order");
    }
    if (left < cmd->amount_cents) {
        Ordersaga__PaymentDeclined d = ORDERSAGA__PAYMENT_DECLINED__INIT;
        d.order_id = cmd->order_id;
        d.customer = cmd->customer;
        d.amount_cents = cmd->amount_cents;
        d.available_cents = left;
        rc = os_emit(ctx, stream, v, &d.base);
        if (rc != LOOM_OK)
            return rc;
        failure->available_cents = left;
        return loom_participant_fail(
            ctx, "DECLINED", "credit left %lld.%02lld, order %lld.%02lld",
            (long long) (left / 100), (long long) (left % 100),
            (long long) (cmd->amount_cents / 100),
            (long long) (cmd->amount_cents % 100));
    }
    return os_emit(ctx, stream, v, &reply->base);
}

loom_err
ordersaga__payment__refund_payment__handle(loom_participant_ctx *ctx,
                                           const Ordersaga__RefundPayment *cmd,
                                           Ordersaga__PaymentRefunded *reply)
{
    char id[OS_ID_MAX], stream[OS_ID_MAX + 16];
    os_account a;
    int64_t v;
    loom_err rc;

    os_id(id, sizeof id, cmd->shop, cmd->customer);
    snprintf(stream, sizeof stream, "customer-%s", id);
    os_ledger_key(cmd->order_id);
    rc = loom_participant_load(ctx, &os_account_type, id, &a, &v);
    if (rc != LOOM_OK)
        return rc;
    reply->payment_id = cmd->payment_id;
    reply->order_id = cmd->order_id;
    reply->customer = cmd->customer;
    reply->amount_cents = a.held_cents; /* 0: nothing to undo */
    if (a.held_cents <= 0)
        return LOOM_OK;
    return os_emit(ctx, stream, v, &reply->base);
}
