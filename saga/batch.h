/*
 * Private to saga/: a batch of transitions the orchestrator decided in
 * memory and commits as one transaction. Per saga touched, a working copy
 * of its instance (several transitions of one saga in a batch fold into
 * one compare-and-set from the version read to the last one), the log
 * entries, the commands to send and the inbox marks of the replies that
 * caused them. loom__saga_batch_encode() turns it into the unit of work:
 * one loom.saga_apply() statement and one loom_outbox_add() per outbox.
 */
#ifndef LOOM_SAGA_BATCH_H
#define LOOM_SAGA_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "loom/tx.h"
#include "saga_int.h"

/* One saga's working copy. Strings and data live in the batch's arena. */
typedef struct loom__saga_work {
    loom__saga_inst s; /* the state after the transitions so far */
    int64_t expected;  /* the version read: the compare-and-set's */
    int touched;       /* a transition changed it (else: check only) */
    int in_tx;         /* it is part of the statement */
    int sent;          /* a command went out: sent_at = now() */
    int has_deadline;  /* deadline_ms is set (else none) */
    int64_t deadline_ms;
    int data_changed;
    int clear_op;          /* an operator request was applied */
    const char *error;     /* new last_error; NULL: unchanged */
    loom_saga_state ended; /* 0, or the final/parked state reached */
} loom__saga_work;

/* One saga_log entry. */
typedef struct loom__saga_logrec {
    size_t work;
    const char *kind;
    int32_t step; /* -1: NULL */
    const char *step_name;
    uint32_t attempt; /* 0: NULL */
    int has_msg;
    loom_uuid msg;
    const char *detail;
} loom__saga_logrec;

/* One command to send. */
typedef struct loom__saga_cmdrec {
    size_t work;
    const loom_saga_step *st;
    uint32_t attempt;
    loom_uuid id;
    void *payload;
    size_t len;
} loom__saga_cmdrec;

/* What a committed batch adds to the orchestrator's stats. */
typedef struct loom__saga_counts {
    uint64_t transitions, replies, late, timeouts, retries, completed,
        compensated, failed, operator_ops;
} loom__saga_counts;

typedef struct loom__saga_batch {
    loom__arena arena;
    loom__saga_work *works;
    size_t n_works, cap_works;
    size_t *index; /* open addressing: works by id; 0 empty, else i + 1 */
    size_t n_index;
    loom__saga_logrec *logs;
    size_t n_logs, cap_logs;
    loom__saga_cmdrec *cmds;
    size_t n_cmds, cap_cmds;
    loom_uuid *inbox;
    size_t n_inbox, cap_inbox;
    loom__saga_counts counts;
    int oom; /* an allocation failed: the batch cannot be encoded */
} loom__saga_batch;

void loom__saga_batch_init(loom__saga_batch *b);
/* Empties it for the next batch, keeping memory. */
void loom__saga_batch_reset(loom__saga_batch *b);
void loom__saga_batch_free(loom__saga_batch *b);

/* The working copy of saga `id`, or SIZE_MAX. */
size_t loom__saga_batch_find(const loom__saga_batch *b, const char *id);

/* Adds a working copy of `inst` (copied into the arena) read at its
 * version; returns its index, or SIZE_MAX when out of memory. */
size_t loom__saga_batch_add(loom__saga_batch *b, const loom__saga_inst *inst);

/* Appends a log entry / a command / an inbox mark; 0 on success, -1 when
 * out of memory (also recorded in b->oom). Strings are borrowed: put them
 * in b->arena (or static memory). */
int loom__saga_batch_log(loom__saga_batch *b, const loom__saga_logrec *l);
int loom__saga_batch_cmd(loom__saga_batch *b, const loom__saga_cmdrec *c);
int loom__saga_batch_mark(loom__saga_batch *b, const loom_uuid *id);

/* 1 when there is something to commit. */
int loom__saga_batch_pending(const loom__saga_batch *b);

/*
 * Queues the batch in `tx` (reset first): loom.saga_apply() with the
 * inbox marks under `consumer`, the instances that are in_tx and the log
 * entries, then the commands through loom_outbox_add(), one statement per
 * outbox. Errors: LOOM_ENOMEM, LOOM_ETOOBIG and loom_outbox_add()'s;
 * loom_tx_errmsg() says why.
 */
loom_err loom__saga_batch_encode(loom__saga_batch *b, const char *consumer,
                                 loom_tx *tx);

#endif /* LOOM_SAGA_BATCH_H */
