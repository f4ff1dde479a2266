/*
 * Private to saga/: the participant helper (loom/saga.h, "Participants").
 * participant.c opens and closes it and keeps its counters;
 * participant_cmd.c handles one command (its headers, its step, the
 * handler, the reply) and serves the ctx functions handlers call.
 */
#ifndef LOOM_SAGA_PARTICIPANT_INT_H
#define LOOM_SAGA_PARTICIPANT_INT_H

#include <stddef.h>
#include <stdint.h>

#include "append_many.h"
#include "arena.h"
#include "loom/inbox_consumer.h"
#include "loom/saga.h"
#include "outbox_batch.h"
#include "wire.h"

/* A command whose handler ran and whose transaction is not settled yet:
 * whether its reply is a failure, counted once it commits. */
typedef struct loom__pt_note {
    const loom_message *m; /* the transport's, until settled */
    int failure;
} loom__pt_note;

struct loom_participant {
    loom_inbox_consumer *ic;
    loom_store *store; /* blocking, for loom_participant_load() */
    const loom_participant_def **defs; /* copied array, borrowed defs */
    size_t n_defs;
    char *group;  /* consumer group and inbox consumer name; owned */
    char *outbox; /* where replies go; owned */
    /* The memory of the command in hand: reset before each handler
     * call, so nothing of one command outlives its turn. */
    loom__arena arena;
    loom__pt_note *notes;
    size_t n_notes, cap_notes;
    uint64_t failures; /* failure replies committed */
    /* What the handlers of the transaction being built emitted,
     * written by one statement after the last of them
     * (participant_batch.c). */
    loom__append_many appends;
    loom__outbox_batch replies; /* likewise, one loom.outbox_add() */
};

/* What a handler is given (loom_participant_ctx): lives in the arena,
 * for one call. */
struct loom_participant_ctx {
    loom_participant *p;
    loom_tx *tx; /* the inbox consumer's, borrowed */
    const loom_message *m;
    const loom__saga_wire *w;
    char message_id[LOOM_UUID_STRLEN]; /* m's id, for causation */
    int failed;                        /* loom_participant_fail() was called */
    const char *code;                  /* its code (arena) */
    const char *message;               /* its message (arena), "" when none */
};

/*
 * Handles command `m` into `tx` (the handler's statements and events,
 * then its reply in the outbox). *failure is 1 when the reply queued is a
 * failure. Any other return than LOOM_OK fails the message, with why.
 */
loom_err loom__participant_handle(loom_participant *p, const loom_message *m,
                                  loom_tx *tx, char *why, size_t whylen,
                                  int *failure);

/*
 * participant_batch.c: the inbox consumer's hooks (inbox_consumer_int.h).
 * begin drops what an unsent transaction had collected; end queues the
 * transaction's appends (one loom.append_many()) and replies (one
 * loom.outbox_add()).
 */
void loom__participant_begin(void *arg);
loom_err loom__participant_end(loom_tx *tx, char *why, size_t whylen,
                               void *arg);

#endif /* LOOM_SAGA_PARTICIPANT_INT_H */
