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
 *   READ ─▶ page ─▶ DELIVER (filtered; skipped when none pass) ─▶ SAVE ─▶ READ
 *     │ empty page
 *     ├─ not listening yet, or armed ─▶ SLEEP ─(listener called)─▶ READ
 *     └─ listening, not armed ─▶ ARM ─▶ READ (once more)
 *   any failure ─▶ BACKOFF ─(timer)─▶ the step that failed
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

/* The channel every append wakes (framework/migrations/0002_wakeup.sql). */
#define LOOM__SUB_CHANNEL "loom_events"

typedef enum loom__sub_state {
    LOOM__SUB_IDLE = 0, /* between steps (only inside a callback) */
    LOOM__SUB_LOAD,     /* checkpoint load in flight */
    LOOM__SUB_READ,     /* read in flight */
    LOOM__SUB_DELIVER,  /* inside the handler */
    LOOM__SUB_SAVE,     /* checkpoint save in flight */
    LOOM__SUB_ARM,      /* arm_wakeup in flight */
    LOOM__SUB_SLEEP,    /* caught up: waiting for the listener */
    LOOM__SUB_BACKOFF,  /* waiting for the timer, then `retry` */
    LOOM__SUB_DONE      /* stopped: handles closing or closed */
} loom__sub_state;

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
    void *arg;
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
    int armed;             /* armed since the last non-empty page */
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
};

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
