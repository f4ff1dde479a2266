/*
 * Tutorial step 3 (docs/tutorial.md): the handlers of saga
 * bank.TransferMoney (bank.proto). The orchestrator's build each command
 * from the saga data and note what the replies say; the accounts
 * service's (participant "bank.accounts") do the work on the account
 * aggregates of step 1.
 */
#include <stdio.h>
#include <string.h>

#include "account.h"

/* ---- the orchestrator's side: commands from the saga data -------------- */

loom_err
bank__transfer_money__debit__command(loom_saga_ctx *ctx,
                                     const Bank__Transfer *data,
                                     Bank__Debit *command)
{
    (void) ctx;
    command->account = data->source; /* borrowed until it is packed */
    command->cents = data->cents;
    return LOOM_OK;
}

loom_err
bank__transfer_money__debit__reply(loom_saga_ctx *ctx, Bank__Transfer *data,
                                   const Bank__Debited *reply)
{
    (void) ctx;
    (void) data;
    (void) reply;
    return LOOM_OK;
}

/* Keeps "<step>: <code>" in the saga data, for whoever reads it. */
static loom_err
note_failure(loom_saga_ctx *ctx, Bank__Transfer *data, const char *step,
             const loom_saga_failure *why)
{
    size_t n = strlen(step) + strlen(why->code) + 3;

    data->failure = loom_saga_alloc(ctx, n); /* lives until packed */
    if (data->failure == NULL)
        return LOOM_ENOMEM;
    snprintf(data->failure, n, "%s: %s", step, why->code);
    return LOOM_OK;
}

loom_err
bank__transfer_money__debit__failed(loom_saga_ctx *ctx, Bank__Transfer *data,
                                    const Bank__InsufficientFunds *failure,
                                    const loom_saga_failure *why)
{
    (void) failure; /* NULL when it timed out or failed without one */
    return note_failure(ctx, data, "Debit", why);
}

loom_err
bank__transfer_money__credit__command(loom_saga_ctx *ctx,
                                      const Bank__Transfer *data,
                                      Bank__Credit *command)
{
    (void) ctx;
    command->account = data->target;
    command->cents = data->cents;
    return LOOM_OK;
}

loom_err
bank__transfer_money__credit__reply(loom_saga_ctx *ctx, Bank__Transfer *data,
                                    const Bank__Credited *reply)
{
    (void) ctx;
    (void) data;
    (void) reply;
    return LOOM_OK;
}

loom_err
bank__transfer_money__credit__failed(loom_saga_ctx *ctx, Bank__Transfer *data,
                                     const loom_saga_failure *why)
{
    return note_failure(ctx, data, "Credit", why);
}

loom_err
bank__transfer_money__refund__command(loom_saga_ctx *ctx,
                                      const Bank__Transfer *data,
                                      Bank__Refund *command)
{
    (void) ctx;
    command->account = data->source;
    command->cents = data->cents;
    return LOOM_OK;
}

loom_err
bank__transfer_money__refund__reply(loom_saga_ctx *ctx, Bank__Transfer *data,
                                    const Bank__Refunded *reply)
{
    (void) ctx;
    (void) data;
    (void) reply;
    return LOOM_OK;
}

/* ---- the accounts service: the participant "bank.accounts" ------------- */

/* What the service did for one transfer: stream "transfer-<saga id>".
 * A step sent again (after a timeout, the saga retries with a new
 * command) finds it done and changes nothing twice. */
typedef struct ledger {
    int debited, credited, refunded;
} ledger;

static loom_err
ledger_apply(void *state, const loom_event *ev)
{
    ledger *l = state;

    l->debited |= strcmp(ev->type, "bank.TransferDebited") == 0;
    l->credited |= strcmp(ev->type, "bank.TransferCredited") == 0;
    l->refunded |= strcmp(ev->type, "bank.TransferRefunded") == 0;
    return LOOM_OK;
}

static const loom_aggregate_type ledger_type = {
    .name = "transfer",
    .state_size = sizeof(ledger),
    .state_version = 1,
    .apply = ledger_apply,
};

/* Queues `msg` for `stream` at `expected`, in the command's transaction. */
static loom_err
emit(loom_participant_ctx *ctx, const char *prefix, const char *id,
     int64_t expected, const ProtobufCMessage *msg)
{
    size_t n = strlen(prefix) + strlen(id) + 2;
    char *stream = loom_participant_alloc(ctx, n);
    uint8_t *buf = loom_participant_alloc(
        ctx, protobuf_c_message_get_packed_size(msg) + 1);
    loom_event_data ev;

    if (stream == NULL || buf == NULL)
        return LOOM_ENOMEM;
    snprintf(stream, n, "%s-%s", prefix, id);
    bank_event(&ev, msg, buf);
    return loom_participant_emit(ctx, stream, expected, &ev, 1);
}

/* Moves `cents` (negative: out) on `account`, and records `done` in
 * the transfer's ledger at `ledger_version`: both commit with the reply,
 * or neither does. */
static loom_err
move(loom_participant_ctx *ctx, const char *account_id, int64_t version,
     int64_t cents, int64_t ledger_version, const ProtobufCMessage *done)
{
    const char *saga = loom_participant_saga_id(ctx);
    char *reference = loom_participant_alloc(ctx, strlen(saga) + 10);
    Bank__MoneyDeposited in = BANK__MONEY_DEPOSITED__INIT;
    Bank__MoneyWithdrawn out = BANK__MONEY_WITHDRAWN__INIT;
    loom_err rc;

    if (reference == NULL)
        return LOOM_ENOMEM;
    sprintf(reference, "transfer %s", saga);
    in.cents = cents;
    in.reference = reference;
    out.cents = -cents;
    out.reference = reference;
    rc = emit(ctx, "account", account_id, version,
              cents > 0 ? &in.base : &out.base);
    if (rc == LOOM_OK)
        rc = emit(ctx, "transfer", saga, ledger_version, done);
    return rc;
}

loom_err
bank__bank_accounts__debit__handle(loom_participant_ctx *ctx,
                                   const Bank__Debit *command,
                                   Bank__Debited *reply,
                                   Bank__InsufficientFunds *failure)
{
    Bank__TransferDebited done = BANK__TRANSFER_DEBITED__INIT;
    ledger l;
    account a;
    int64_t lv, av;
    loom_err rc;

    rc = loom_participant_load(ctx, &ledger_type, loom_participant_saga_id(ctx),
                               &l, &lv);
    if (rc == LOOM_OK)
        rc = loom_participant_load(ctx, &account_type, command->account, &a,
                                   &av);
    if (rc != LOOM_OK)
        return rc; /* transient: the command comes again */
    if (l.debited) {
        reply->balance = a.balance; /* done before: just answer again */
        return LOOM_OK;
    }
    if (l.refunded) /* came after its compensation: too late to act */
        return loom_participant_fail(ctx, "CANCELLED", "transfer refunded");
    if (!a.open)
        return loom_participant_fail(ctx, "NO_ACCOUNT", "no account %s",
                                     command->account);
    if (a.balance < command->cents) {
        failure->balance = a.balance;
        return loom_participant_fail(ctx, "INSUFFICIENT_FUNDS",
                                     "%s has %lld cents", command->account,
                                     (long long) a.balance);
    }
    rc = move(ctx, command->account, av, -command->cents, lv, &done.base);
    reply->balance = a.balance - command->cents;
    return rc;
}

loom_err
bank__bank_accounts__credit__handle(loom_participant_ctx *ctx,
                                    const Bank__Credit *command,
                                    Bank__Credited *reply)
{
    Bank__TransferCredited done = BANK__TRANSFER_CREDITED__INIT;
    ledger l;
    account a;
    int64_t lv, av;
    loom_err rc;

    (void) reply;
    rc = loom_participant_load(ctx, &ledger_type, loom_participant_saga_id(ctx),
                               &l, &lv);
    if (rc == LOOM_OK)
        rc = loom_participant_load(ctx, &account_type, command->account, &a,
                                   &av);
    if (rc != LOOM_OK || l.credited)
        return rc;
    if (!a.open)
        return loom_participant_fail(ctx, "NO_ACCOUNT", "no account %s",
                                     command->account);
    return move(ctx, command->account, av, command->cents, lv, &done.base);
}

/* A compensation must accept "nothing to undo": the debit may have
 * timed out without ever happening. It may even come first (the debit
 * redelivered after a failure, or stuck behind an outage), so it records
 * itself either way and a debit that comes later is refused. */
loom_err
bank__bank_accounts__refund__handle(loom_participant_ctx *ctx,
                                    const Bank__Refund *command,
                                    Bank__Refunded *reply)
{
    Bank__TransferRefunded done = BANK__TRANSFER_REFUNDED__INIT;
    ledger l;
    account a;
    int64_t lv, av;
    loom_err rc;

    (void) reply;
    rc = loom_participant_load(ctx, &ledger_type, loom_participant_saga_id(ctx),
                               &l, &lv);
    if (rc != LOOM_OK || l.refunded)
        return rc;
    if (!l.debited) /* nothing to undo */
        return emit(ctx, "transfer", loom_participant_saga_id(ctx), lv,
                    &done.base);
    rc = loom_participant_load(ctx, &account_type, command->account, &a, &av);
    if (rc != LOOM_OK)
        return rc;
    return move(ctx, command->account, av, command->cents, lv, &done.base);
}
