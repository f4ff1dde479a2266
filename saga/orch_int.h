/*
 * Private to saga/: the orchestrator (loom_orchestrator, loom/saga.h) and
 * how its files share it:
 *
 *   orch.c      life cycle: open, close, stop, stats, the work scheduler
 *   register.c  loom.saga_definitions at open
 *   replies.c   reply batches: queue, load, decide, commit, settle
 *   deadline.c  due sagas: the timer, the wake-up, claims
 *   rows.c      instances read from the database
 *   decide.c    the state machine (decide.h); batch.c its transaction
 *
 * Everything runs on the runtime's loop, single-threaded, around ONE
 * PostgreSQL connection (pgconn.h) that carries one request at a time:
 * a load, a claim, or a batch's transaction. Reply batches and claims take
 * turns on it; each transaction commits a whole batch of transitions.
 */
#ifndef LOOM_SAGA_ORCH_INT_H
#define LOOM_SAGA_ORCH_INT_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "batch.h"
#include "cache.h"
#include "decide.h"
#include "pgconn.h"
#include "runtime_int.h"
#include "tx_int.h"

/* A delivered reply in the queue, borrowed from the transport until it is
 * acknowledged or failed. */
typedef struct orch_item {
    const loom_message *m;
    loom__saga_wire wire;
    int settled;        /* acked or failed: skip it */
    int single;         /* handle it alone, from fresh state */
    unsigned conflicts; /* lost compare-and-sets so far */
    /* In the batch in hand: */
    int parsed;  /* wire read */
    int dup;     /* already processed (inbox), or a copy earlier in it */
    int unknown; /* no such saga */
    int in_tx;   /* its inbox mark is in the transaction */
    size_t work; /* its saga's working copy, or SIZE_MAX */
} orch_item;

/* What the connection is doing. */
typedef enum orch_state {
    ORCH_IDLE = 0,
    ORCH_DECIDING,   /* running the state machine (deliveries only queue) */
    ORCH_LOADING,    /* reading the sagas of a reply batch */
    ORCH_CLAIMING,   /* claiming due sagas */
    ORCH_COMMITTING, /* a batch's transaction */
    ORCH_BACKOFF,    /* waiting to retry after a failure */
    ORCH_STOPPED
} orch_state;

/* What the batch in hand is. */
typedef enum orch_kind { ORCH_REPLIES = 1, ORCH_CLAIMS } orch_kind;

/* Most replies per transaction (cfg->batch) and sagas per claim. */
#define ORCH_MAX_BATCH 10000
/* Lost compare-and-sets before a reply goes back to the transport. */
#define ORCH_MAX_CONFLICTS 20

struct loom_orchestrator {
    loom_runtime *rt;
    loom_transport *tp;
    loom_consumer *consumer;
    loom_listener *listener;
    loom__component *comp;
    loom__done_fn stop_done;
    loom__pgconn conn;
    int conn_open;

    /* Configuration (copied). */
    const loom_saga_def **defs;
    size_t n_defs;
    char *group;
    char *inbox; /* "saga:" + group */
    char *me;    /* claimed_by: "<host> pid <pid> #<n>" */
    size_t batch;
    unsigned poll_ms, lease_ms;
    void (*ended)(void *arg, const char *id, loom_saga_state state);
    void *ended_arg;

    loom__saga_cache cache;

    /* Replies waiting, in delivery order: q[head .. n). */
    orch_item *q;
    size_t head, n, cap;

    /* The batch in hand. */
    orch_state state;
    orch_kind kind;
    size_t n_cur;      /* replies: q[head .. head + n_cur) */
    PGresult *claimed; /* claims: the rows, until settled */
    int claim_single;  /* claims: one row per transaction */
    size_t claim_next; /* claims in single mode: the next row */
    size_t claim_rows; /* claims: the rows that are sagas */
    loom__saga_batch b;
    loom__arena h;
    loom__saga_decider dec;
    loom_tx tx;
    loom__backoff backoff;

    /* Deadlines. */
    uv_timer_t timer;   /* the next known deadline, or poll_ms */
    uv_timer_t retry;   /* ORCH_BACKOFF */
    uint64_t timer_due; /* uv_now() when `timer` fires; 0: not armed */
    int scan_due;       /* a claim is wanted */
    int scan_turn;      /* it goes before the next reply batch */

    unsigned open_handles;
    int timers;  /* timer and retry are initialised, not closed */
    int closed;  /* loom_orchestrator_close() called: start nothing */
    int release; /* the last handle's close callback frees it */
    int stopping;
    int in_next;
    int released;
    loom_orchestrator_stats stats;
};

/* The load of a reply batch (replies.c): $1 the inbox's consumer, $2 the
 * replies' ids, $3 the ids of the sagas not in the cache. Rows of kind 0
 * carry (column 12) a reply the inbox has seen, of kind 1 a saga. Shared
 * with saga_plans_test, which checks how it is planned. */
extern const loom__stmt loom__orch_load_stmt;

/* orch.c: runs what is due next when the connection is free. */
void loom__orch_next(loom_orchestrator *o);
/* Waits `ms` (or a growing backoff when 0), then loom__orch_next(). */
void loom__orch_backoff(loom_orchestrator *o, const char *why);
/* Applies a committed batch: stats, cache, ended callbacks, deadlines. */
void loom__orch_committed(loom_orchestrator *o);
/* The callback of a batch's transaction (either kind). */
void loom__orch_tx_done(void *arg, loom_err rc, PGresult *r);
/* Forgets the cached sagas of the batch in hand (after a failure). */
void loom__orch_invalidate(loom_orchestrator *o);
/* The def of (type, version), or NULL. */
const loom_saga_def *loom__orch_def(const loom_orchestrator *o,
                                    const char *type, uint32_t version);
/* 1 when the failure of the last request says nothing about its content:
 * the connection, a deadlock, a serialization failure, ... */
int loom__orch_transient(const loom_orchestrator *o, loom_err rc);

/* replies.c */
void loom__orch_deliver(loom_consumer *c, const loom_message *const *msgs,
                        size_t n, void *arg);
/* Starts the next reply batch; 1 when it settled at once (look again). */
int loom__orch_replies_start(loom_orchestrator *o);
/* The batch's transaction finished. */
void loom__orch_replies_done(loom_orchestrator *o, loom_err rc);

/* deadline.c */
void loom__orch_wake(void *arg, const char *channel, const char *payload);
void loom__orch_on_timer(uv_timer_t *t);
/* Arms the timer `ms` from now unless it fires sooner. */
void loom__orch_arm(loom_orchestrator *o, uint64_t ms);
/* Sends the claim query. */
void loom__orch_claims_start(loom_orchestrator *o);
/* The claims' transaction finished. */
void loom__orch_claims_done(loom_orchestrator *o, loom_err rc);

/* rows.c: reads row `row` of `r` from column `col` on (id, type,
 * def_version, state, step, attempt, waiting, command_id, outbox, data,
 * version) into `out`, whose strings and data point into the result.
 * Returns 0, or -1 when the row is not a saga this orchestrator knows
 * how to read (out->def NULL when only its type is unknown). */
int loom__orch_row(const loom_orchestrator *o, const PGresult *r, int row,
                   int col, loom__saga_inst *out);

/* register.c: records o's defs in loom.saga_definitions (blocking). */
loom_err loom__orch_register(loom_orchestrator *o, char *err, size_t errlen);

#endif /* LOOM_SAGA_ORCH_INT_H */
