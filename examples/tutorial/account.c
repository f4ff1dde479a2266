/* Tutorial step 1: the account aggregate (account.h). */
#include <stdio.h>
#include <string.h>

#include "account.h"

static loom_err
account_apply(void *state, const loom_event *ev)
{
    account *a = state;

    if (strcmp(ev->type, "bank.AccountOpened") == 0) {
        Bank__AccountOpened *m =
            bank__account_opened__unpack(NULL, ev->data_len, ev->data);
        if (m == NULL)
            return LOOM_EDECODE;
        a->open = 1;
        snprintf(a->owner, sizeof a->owner, "%s", m->owner);
        bank__account_opened__free_unpacked(m, NULL);
    } else if (strcmp(ev->type, "bank.MoneyDeposited") == 0) {
        Bank__MoneyDeposited *m =
            bank__money_deposited__unpack(NULL, ev->data_len, ev->data);
        if (m == NULL)
            return LOOM_EDECODE;
        a->balance += m->cents;
        bank__money_deposited__free_unpacked(m, NULL);
    } else if (strcmp(ev->type, "bank.MoneyWithdrawn") == 0) {
        Bank__MoneyWithdrawn *m =
            bank__money_withdrawn__unpack(NULL, ev->data_len, ev->data);
        if (m == NULL)
            return LOOM_EDECODE;
        a->balance -= m->cents;
        bank__money_withdrawn__free_unpacked(m, NULL);
    }
    return LOOM_OK;
}

const loom_aggregate_type account_type = {
    .name = "account", /* streams "account-<id>" */
    .state_size = sizeof(account),
    .state_version = 1, /* bump when account or account_apply changes */
    .apply = account_apply,
    .snapshot_every = 100,
};

void
bank_event(loom_event_data *ev, const ProtobufCMessage *msg, uint8_t *buf)
{
    memset(ev, 0, sizeof *ev); /* a nil id: the store makes a UUIDv7 */
    ev->type = msg->descriptor->name;
    ev->schema_version = 1;
    ev->data = buf;
    ev->data_len = protobuf_c_message_pack(msg, buf);
}

/* Adds `msg` to the decision (which copies it). */
static loom_err
decide(loom_decision *out, const ProtobufCMessage *msg)
{
    uint8_t buf[256];
    loom_event_data ev;

    if (protobuf_c_message_get_packed_size(msg) > sizeof buf)
        return LOOM_ETOOBIG;
    bank_event(&ev, msg, buf);
    return loom_decision_emit(out, &ev);
}

loom_err
account_open(const void *state, int64_t version, loom_decision *out, void *arg)
{
    Bank__AccountOpened m = BANK__ACCOUNT_OPENED__INIT;

    (void) version;
    if (((const account *) state)->open)
        return LOOM_EHANDLER; /* opened already */
    m.owner = arg;
    return decide(out, &m.base);
}

loom_err
account_deposit(const void *state, int64_t version, loom_decision *out,
                void *arg)
{
    const money *c = arg;
    Bank__MoneyDeposited m = BANK__MONEY_DEPOSITED__INIT;

    (void) version;
    if (!((const account *) state)->open || c->cents <= 0)
        return LOOM_EHANDLER;
    m.cents = c->cents;
    m.reference = (char *) c->reference;
    return decide(out, &m.base);
}

loom_err
account_withdraw(const void *state, int64_t version, loom_decision *out,
                 void *arg)
{
    const account *a = state;
    const money *c = arg;
    Bank__MoneyWithdrawn m = BANK__MONEY_WITHDRAWN__INIT;

    (void) version;
    if (!a->open || c->cents <= 0 || a->balance < c->cents)
        return LOOM_EHANDLER; /* no overdrafts */
    m.cents = c->cents;
    m.reference = (char *) c->reference;
    return decide(out, &m.base);
}
