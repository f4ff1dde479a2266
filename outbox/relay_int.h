/*
 * Private to the outbox relay (loom/outbox.h): what its three files share.
 *
 *   relay.c          the state machine's timers, leadership, housekeeping
 *                    (heartbeat, cleanup) and life cycle
 *   relay_fetch.c    reading the outbox, and publishing inside the
 *                    database when the transport is the built-in topics
 *   relay_publish.c  the batch in hand: published through the transport,
 *                    then the cursor's advance
 */
#ifndef LOOM_RELAY_INT_H
#define LOOM_RELAY_INT_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>
#include <uv.h>

#include "loom/outbox.h"
#include "pgconn.h"
#include "runtime_int.h"

typedef enum relay_role { RELAY_STANDBY, RELAY_LEADING } relay_role;

/* What the single timer is waiting for. */
typedef enum relay_wait {
    WAIT_NONE,
    WAIT_LEAD,    /* standby: the next try to lead */
    WAIT_SLEEP,   /* leading, caught up: the poll fallback */
    WAIT_BACKOFF, /* leading: a failed step is retried */
} relay_wait;

/* The argument of a publish callback: it outlives the relay when the
 * relay closes with a publish in flight (the transport calls back later,
 * at the latest when it closes), so it is freed by the callback. */
typedef struct relay_ticket {
    loom_relay *r; /* NULL once the relay is gone or moved on */
    size_t index;  /* single mode: the message published */
    size_t n;
} relay_ticket;

/* One message of the batch in hand. */
typedef struct relay_msg {
    uint64_t tx;
    int64_t position;
    void *hdr_mem; /* decoded headers' arena */
    char *dead;    /* why it is refused for good; NULL: publish it */
} relay_msg;

struct loom_relay {
    loom_runtime *rt;
    loom_transport *tp;
    loom__component *comp;
    loom__done_fn stop_done;
    loom__pgconn conn;
    loom_listener *listener;
    char *outbox;
    char *name;
    char *channel;
    size_t batch;
    unsigned poll_ms, standby_ms, cleanup_ms;
    void (*published)(void *arg, const loom_message *msgs, size_t n);
    void *published_arg;

    relay_role role;
    int backend_pid; /* the session that holds the lock */
    uint64_t cur_tx; /* the cursor: published up to here */
    int64_t cur_pos;

    /* The batch in hand (n == 0: none). */
    PGresult *rows;
    size_t n;
    loom_message *msgs;
    relay_msg *meta;
    loom_header *hdrs;
    size_t single; /* next message in single mode */
    int single_mode;
    size_t n_dead;
    relay_ticket *ticket; /* publish in flight */
    int advancing;        /* the advance is in flight */
    int fetching;         /* a fetch (or arm, lead, ...) is in flight */
    int lead_warned;      /* a refused bid to lead was logged as a warning */
    int local;         /* the transport's topics are in our database; -1: ask */
    int via_transport; /* the next batch goes through the transport */
    unsigned local_failures; /* in-database publishes failed in a row */
    uint32_t sticky;         /* keyless messages' partition, per local batch */

    uv_timer_t timer, tick;
    relay_wait wait;
    int armed;        /* the wake-up is armed since the last fetch */
    int lingered;     /* an empty fetch since the last non-empty one */
    int woken;        /* woken while busy: read again before sleeping */
    unsigned held_ms; /* the last wait for messages held back; 0: none */
    int sleeping;
    loom__backoff backoff;
    uint64_t last_clean_ms, last_beat_ms, last_tick_ms;
    uint64_t tick_published;
    double rate;
    char *error; /* the last publish failure, for the heartbeat */
    int error_sent;

    unsigned open_handles;
    int closed, stopping;
    loom_relay_stats stats;
};

/* relay.c */

/* Zeroed memory; n * size cannot overflow here (n <= RELAY_MAX_BATCH). */
void *loom__relay_calloc(size_t n, size_t size);
/* The loop's time in ms (uv_now). */
uint64_t loom__relay_now(const loom_relay *r);
/* Waits ms on the single timer for w (sleeping: WAIT_SLEEP). */
void loom__relay_wait_for(loom_relay *r, relay_wait w, uint64_t ms);
/* A step failed in a way worth retrying: wait, then try it again. */
void loom__relay_backoff(loom_relay *r);
/* Records (and logs, when new) why a step failed, for the heartbeat. */
void loom__relay_set_error(loom_relay *r, const char *what, const char *detail);
/* The connection broke or the cursor moved: stand by, drop the batch. */
void loom__relay_lost(loom_relay *r, const char *why);
/* Completes a runtime stop once nothing is in flight: steps down. */
void loom__relay_finish_stop(loom_relay *r);
/* Sends the heartbeat or cleanup when due; 1 when a request went out. */
int loom__relay_housekeeping(loom_relay *r);

/* relay_fetch.c */

/* Leading and idle: housekeeping, then reads the next page (or
 * publishes inside the database). Stopping: finishes the stop. */
void loom__relay_fetch(loom_relay *r);
/* The cursor moved past a batch of n: read on now, or after a linger. */
void loom__relay_moved(loom_relay *r, uint64_t tx, int64_t pos, size_t n);
/* A publish went out: a failing streak, if any, is over. */
void loom__relay_recovered(loom_relay *r);

/* relay_publish.c */

/* Publishes the batch in hand (or its next message, in single mode). */
void loom__relay_publish(loom_relay *r);
/* Forgets the batch in hand; a publish in flight finds it gone. */
void loom__relay_drop_batch(loom_relay *r);
/* Makes a fetched page the batch in hand (takes rows). LOOM_ENOMEM: the
 * batch is dropped. */
loom_err loom__relay_take_rows(loom_relay *r, PGresult *rows);

#endif /* LOOM_RELAY_INT_H */
