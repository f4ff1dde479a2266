/*
 * Tutorial step 1 (docs/tutorial.md): the account aggregate. Its state
 * is the fold of the events of stream "account-<id>"; its commands
 * decide new events from that state, or refuse.
 */
#ifndef TUTORIAL_ACCOUNT_H
#define TUTORIAL_ACCOUNT_H

#include <stdint.h>

#include "bank.loom.h"
#include "loom/loom.h"

/* The state: a flat struct (no pointers), so a snapshot is its bytes. */
typedef struct account {
    int open;
    int64_t balance; /* cents */
    char owner[64];
} account;

extern const loom_aggregate_type account_type;

/* An amount of money and why it moves (borrowed). */
typedef struct money {
    int64_t cents;
    const char *reference;
} money;

/* The commands, for loom_aggregate_execute(): each decides from the
 * state or refuses with LOOM_EHANDLER. `arg` is the owner's name (const
 * char *) for account_open, a money for the others. */
loom_err account_open(const void *state, int64_t version, loom_decision *out,
                      void *arg);
loom_err account_deposit(const void *state, int64_t version, loom_decision *out,
                         void *arg);
loom_err account_withdraw(const void *state, int64_t version,
                          loom_decision *out, void *arg);

/* Fills `ev` with `msg` packed into `buf` (of at least
 * protobuf_c_message_get_packed_size(msg) bytes), typed by the
 * message's full name. */
void bank_event(loom_event_data *ev, const ProtobufCMessage *msg, uint8_t *buf);

#endif /* TUTORIAL_ACCOUNT_H */
