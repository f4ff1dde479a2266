/*
 * Private to the event store: the subscription object shared by
 * subscription.c (configuration, life cycle, stopping) and sub_loop.c (the
 * state machine that reads, delivers and checkpoints).
 *
 * One state machine per subscription on the runtime's loop, driving its
 * own store handle through the non-blocking form (send, uv_poll on the
 * socket, poll, receive):
 *
 *   start ─▶ LOAD checkpoint (or SAVE the zero cursor: from_start)
 *   READ ─▶ page ─▶ DELIVER (filtered) ─▶ COMMIT ─▶ READ (a full page)
 *     │ empty page, or         │               the handler's statements and
 *     │ a short one committed  │               the checkpoint's compare-and-
 *     │                        │               set, one pipelined transaction
 *     │                        └ refused ─▶ BACKOFF ─▶ DELIVER again; after
 *     │                          max_attempts one event at a time (isolating),
 *     │                          then COMMIT parks the failing event
 *     ├─ due: HORIZON check (a WARN when a transaction holds events back)
 *     ├─ not listening yet, or armed ─▶ SLEEP ─(listener called)─▶ READ
 *     └─ listening, not armed ─▶ ARM ─▶ READ (once more)
 *   READ with a replay requested ─▶ PARKED load ─▶ DELIVER that event ─▶
 *     COMMIT (unpark it, or record its new error) ─▶ READ
 *   COMMIT moved by someone else (LM004) ─▶ LOAD; lost connection ─▶ the
 *     same COMMIT again (its compare-and-set fails if the first committed)
 *   any failure ─▶ BACKOFF ─(timer)─▶ the step that failed, after
 *     CONNECT (a non-blocking reconnect) when the connection broke
 *
 * Stopping waits for the step in flight (a read is delivered and saved),
 * then closes the timer, the poll handle and the listener, and reports
 * done to the runtime (or frees the subscription when it was closed).
 */
#ifndef LOOM_SUB_INT_H
#define LOOM_SUB_INT_H

#include "loom/subscription.h"
#include "runtime_int.h"
#include "store_int.h"
#include "tx_int.h"

/* The channel every append wakes (framework/migrations/0002_wakeup.sql). */
#define LOOM__SUB_CHANNEL "loom_events"

typedef enum loom__sub_state {
    LOOM__SUB_IDLE = 0, /* between steps (only inside a callback) */
    LOOM__SUB_LOAD,     /* checkpoint load in flight */
    LOOM__SUB_READ,     /* read in flight */
    LOOM__SUB_DELIVER,  /* inside the handler */
    LOOM__SUB_SAVE,     /* checkpoint save in flight */
    LOOM__SUB_ARM,      /* arm_wakeup in flight */
    LOOM__SUB_COMMIT,   /* the batch's transaction in flight */
    LOOM__SUB_PARKED,   /* loading a parked event to replay */
    LOOM__SUB_HORIZON,  /* the stall check in flight */
    LOOM__SUB_CONNECT,  /* reconnecting (non-blocking), then `retry` */
    LOOM__SUB_SLEEP,    /* caught up: waiting for the listener */
    LOOM__SUB_BACKOFF,  /* waiting for the timer, then `retry` */
    LOOM__SUB_DONE      /* stopped: handles closing or closed */
} loom__sub_state;

/* What a COMMIT step commits. */
typedef enum loom__sub_commit {
    LOOM__COMMIT_ADVANCE = 0, /* the handler's effects, then the checkpoint */
    LOOM__COMMIT_PARK,        /* park the failing event, pass the checkpoint */
    LOOM__COMMIT_UNPARK,      /* a replayed event's effects; unpark it */
    LOOM__COMMIT_REPARK       /* a replay failed: record its error */
} loom__sub_commit;

/* A uv_poll handle on the store's socket; allocated because it outlives
 * the socket (a reconnect changes it) until its close callback. */
typedef struct sub_poll {
    uv_poll_t h;
    loom_subscription *sub;
} sub_poll;

struct loom_subscription {
    loom_runtime *rt;
    loom_store *store;
    loom__component *comp;
    loom_listener *listener;
    loom_sub_fn fn;
    loom_sub_tx_fn tx_fn; /* the transactional handler, or NULL */
    void *arg;
    loom_listener *parked_listener;
    char *search_path; /* projections: the model's schema, owned */
    loom_tx tx;        /* the transaction a COMMIT sends */
    loom__sub_commit commit;
    unsigned max_attempts;
    unsigned attempts; /* failed deliveries of the batch or event in hand */
    int isolating;     /* delivering the page one event at a time */
    size_t iso;        /* isolating: index in sel of the event in hand */
    size_t n_sel;      /* events of the page that pass the filter */
    int replaying;     /* the page is one parked event, replayed */
    int parked_due;    /* a replay may have been requested */
    uint64_t parked_checked; /* uv_now() of the last parked load */
    uint64_t horizon_ms;     /* stall check period */
    uint64_t horizon_checked;
    loom__buf why;         /* the last delivery failure, for parking */
    size_t h_first, h_end; /* the handler's statements in tx */
    int volatile_cursor;   /* the cursor lives in memory only */
    char name[LOOM_MAX_SUBSCRIPTION_NAME + 1];
    loom_sub_source source;
    char *target; /* category or stream, owned */
    loom_group group;
    char **types; /* owned copies */
    size_t n_types;
    size_t batch;
    const loom_event **sel; /* the filtered batch, `batch` entries */
    /* Where the checkpoint is, and where it goes once the page is saved. */
    loom_position cursor;
    int64_t version;
    loom_position next_cursor;
    int64_t next_version;
    loom_events *page; /* the batch in hand, owned */
    loom__sub_state state;
    loom__sub_state retry; /* the step a BACKOFF retries */
    int listening;         /* the listener has been called once */
    int short_page;        /* the page in hand drained the source */
    int armed;             /* armed, and no wake-up taken since (woken) */
    int woken;             /* the listener was called while busy */
    int stopping;
    int finished;        /* every handle closed */
    int close_requested; /* loom_subscription_close() called */
    int keep;            /* close() frees it itself */
    loom__done_fn done;  /* the runtime asked us to stop */
    unsigned open_handles;
    uv_timer_t timer;
    sub_poll *poll;
    int poll_fd;
    loom__backoff backoff;
    loom_subscription_stats stats;
};

/* What projections add to a subscription. */
typedef struct loom__sub_extra {
    const char *search_path; /* set for each transaction; copied */
    const char *appname;     /* the connection's application_name */
    int volatile_cursor;     /* start at the beginning, store no cursor */
} loom__sub_extra;

/* loom_subscribe() and loom_subscribe_tx() (exactly one of fn and tx_fn),
 * and projections (`extra` not NULL). */
loom_err loom__subscribe(loom_runtime *rt, const loom_subscription_config *cfg,
                         loom_sub_fn fn, loom_sub_tx_fn tx_fn, void *arg,
                         const loom__sub_extra *extra, loom_subscription **out);

/* sub_loop.c: the steps that read and the failure path. */
void loom__sub_read(loom_subscription *s);
/* After a committed page: read again, or, when the page was short (it
 * drained the source), treat it as caught up (arm, read once more). */
void loom__sub_read_next(loom_subscription *s);
void loom__sub_load(loom_subscription *s);
void loom__sub_drop_page(loom_subscription *s);
void loom__sub_fail(loom_subscription *s, loom__sub_state step, loom_err rc,
                    const char *why);
void loom__sub_sent(loom_subscription *s, loom__sub_state step, loom_err rc);

/* sub_deliver.c: selecting, delivering and committing a batch. */
void loom__sub_select(loom_subscription *s);
void loom__sub_deliver(loom_subscription *s);
void loom__sub_commit_send(loom_subscription *s);
void loom__sub_commit_done(loom_subscription *s);

/* Starts `step` (LOOM__SUB_LOAD, _READ, _SAVE, _ARM or _DELIVER). */
void loom__sub_step(loom_subscription *s, loom__sub_state step);

/* The retry timer's callback: runs s->retry. */
void loom__sub_on_timer(uv_timer_t *t);

/* Closes the poll handle (the next store call may reconnect). */
void loom__sub_close_poll(loom_subscription *s);

/* Stopped: frees the page, closes the listener and handles, then reports
 * done (or frees the subscription after a close). */
void loom__sub_finish(loom_subscription *s);

#endif /* LOOM_SUB_INT_H */
