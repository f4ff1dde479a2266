/*
 * Private: the queue behind a loom_tx (loom/tx.h). Statements and their
 * parameters are copied into one growing byte buffer; the records below
 * hold offsets into it, so they stay valid while it grows. The runner
 * that owns the tx builds libpq's pointer arrays only when it sends.
 */
#ifndef LOOM_TX_INT_H
#define LOOM_TX_INT_H

#include "buf.h"
#include "loom/tx.h"

typedef struct loom__tx_param {
    size_t off;    /* into data */
    int len;       /* -1: SQL NULL */
    uint32_t type; /* OID; 0: inferred */
} loom__tx_param;

typedef struct loom__tx_stmt {
    size_t sql;   /* offset of the NUL-terminated SQL text */
    size_t first; /* index of its first parameter */
    int n;
    int binary;
} loom__tx_stmt;

struct loom_tx {
    loom__buf data;
    loom__tx_stmt *stmts;
    size_t n_stmts, cap_stmts;
    loom__tx_param *params;
    size_t n_params, cap_params;
    loom__buf err; /* loom_tx_errmsg(): why the last call failed */
};

/* An empty queue (no allocation until the first statement). */
void loom__tx_init(loom_tx *tx);

/* Empties the queue, keeping its memory for the next batch. */
void loom__tx_reset(loom_tx *tx);

/* Frees the queue's memory. */
void loom__tx_free(loom_tx *tx);

/* Sets the message loom_tx_errmsg() returns (printf-style) and returns
 * `rc`; the queue builders of other modules (loom_tx_append(),
 * loom_outbox_add(), loom_inbox_mark()) report through it. */
loom_err loom__tx_fail(loom_tx *tx, loom_err rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A call on tx succeeded: loom_tx_errmsg() says "" again. */
void loom__tx_ok(loom_tx *tx);

#endif /* LOOM_TX_INT_H */
