/*
 * The runtime's internals: the runtime object, the component registry
 * that graceful stops go through, the LISTEN connection's state and the
 * reconnection backoff. Private to framework/ and eventstore/.
 */
#ifndef LOOM_RUNTIME_INT_H
#define LOOM_RUNTIME_INT_H

#include <stdint.h>

#include <libpq-fe.h>
#include <uv.h>

#include "loom/runtime.h"

/*
 * Capped exponential backoff with full jitter: the delay before attempt n
 * (counting from 0 after the last success) is uniform in
 * [0, min(max_ms, min_ms * 2^n)]. Full jitter spreads the reconnections of
 * many processes after a server restart instead of synchronising them.
 */
typedef struct loom__backoff {
    uint64_t min_ms;
    uint64_t max_ms;
    unsigned attempt; /* attempts since the last reset */
    uint64_t rng;     /* xorshift64 state; never 0 */
} loom__backoff;

/* Sets the bounds (min_ms <= max_ms) and seeds the generator from
 * getrandom(), falling back to the clock and address when that fails. */
void loom__backoff_init(loom__backoff *b, uint64_t min_ms, uint64_t max_ms);
/* Re-seeds with `seed` (0 is replaced by a fixed constant), for tests. */
void loom__backoff_seed(loom__backoff *b, uint64_t seed);
/* The ceiling of the next delay: min(max_ms, min_ms * 2^attempt). */
uint64_t loom__backoff_ceiling(const loom__backoff *b);
/* Returns the delay before the next attempt and counts the attempt. */
uint64_t loom__backoff_next(loom__backoff *b);
/* After a success: the next delay starts again from min_ms. */
void loom__backoff_reset(loom__backoff *b);

/*
 * Components: long-lived parts (subscriptions, the outbox relay) that must
 * finish their batch before the runtime stops. On loom_runtime_stop() each
 * component's stop(arg, c, done) is called once; the component finishes
 * what it has in hand, closes its own libuv handles, then calls done(c)
 * exactly once (during stop() or later, on the loop thread). When every
 * component is done the runtime closes its own handles.
 */
typedef struct loom__component loom__component;
typedef void (*loom__done_fn)(loom__component *c);
typedef void (*loom__stop_fn)(void *arg, loom__component *c,
                              loom__done_fn done);

/* Registers a component. On success *out is the registration, freed by
 * loom__runtime_remove_component() or loom_runtime_close(). Errors:
 * LOOM_EINVAL, LOOM_EBUSY (already stopping), LOOM_ENOMEM. */
loom_err loom__runtime_add_component(loom_runtime *rt, loom__stop_fn stop,
                                     void *arg, loom__component **out);
/* Unregisters and frees `c`; during a stop it counts as done. NULL is a
 * no-op. Not from inside c's own stop(). */
void loom__runtime_remove_component(loom__component *c);

struct loom__component {
    loom_runtime *rt;
    loom__stop_fn stop;
    void *arg;
    int asked; /* stop() was called */
    int done;  /* done() was called (or the component was removed) */
    loom__component *next;
};

/* Where the LISTEN connection is in its life. */
typedef enum loom__lsn_state {
    LOOM__LSN_IDLE = 0,   /* not started: no listener yet, or not running */
    LOOM__LSN_CONNECTING, /* PQconnectPoll in progress */
    LOOM__LSN_READY,      /* connected; LISTENs sent as needed */
    LOOM__LSN_WAITING,    /* lost or failed; the retry timer is armed */
    LOOM__LSN_CLOSED      /* the runtime is stopping: never reconnect */
} loom__lsn_state;

/* A listener's LISTEN on the current connection. */
/* FAILED: its channel could not be put in a LISTEN on this connection
 * (logged); it lives on the fallback wake-ups until the next reconnect
 * tries again. */
enum { LOOM__L_PENDING = 0, LOOM__L_SENT, LOOM__L_ACTIVE, LOOM__L_FAILED };

struct loom_listener {
    loom_runtime *rt;
    char *channel; /* owned copy */
    loom_wake_fn fn;
    void *arg;
    int state;  /* LOOM__L_* on the current connection */
    int ready;  /* its LISTEN was just acknowledged: call fn(NULL) */
    int closed; /* loom_listener_close() called; freed by the sweep */
    loom_listener *next;
};

/* A uv_poll handle on one socket; allocated because a handle outlives
 * the socket until its close callback runs. */
typedef struct loom__lsn_poll {
    uv_poll_t h;
    loom_runtime *rt;
} loom__lsn_poll;

typedef struct loom__lsn {
    loom__lsn_state state;
    PGconn *conn;
    loom__lsn_poll *poll; /* on PQsocket(conn); NULL when none */
    int poll_fd;
    int poll_events;
    int in_flight;    /* a LISTEN command awaits its results */
    int flushing;     /* PQflush has more to send */
    int failed;       /* the command in flight got an error result */
    int lost;         /* reconnecting after a loss (vs. a first connect) */
    int timers;       /* retry and fallback are initialised, not closed */
    unsigned gen;     /* bumped when conn is finished; guards dispatch */
    char server[256]; /* "host:port" of the last attempt, for logs */
    char why[256];    /* the first error of the batch in flight */
    loom__backoff backoff;
    uv_timer_t retry;    /* reconnection delay */
    uv_timer_t fallback; /* guarantee 3 */
} loom__lsn;

struct loom_runtime {
    loom_runtime_config cfg; /* defaults applied; strings below */
    char *conninfo;          /* owned */
    char *appname;           /* owned; NULL: fallback_application_name */
    uv_loop_t own_loop;
    uv_loop_t *loop;
    int owns_loop;
    int started;           /* run() installed the handles below */
    int running;           /* inside uv_run() */
    int stopping;          /* stop() called */
    int closing;           /* components done; handles being closed */
    int stopped;           /* every handle closed */
    unsigned open_handles; /* closes still pending */
    unsigned dispatching;  /* depth of listener dispatch */
    uv_async_t keepalive;  /* keeps run() alive until stop() */
    uv_signal_t sigint;
    uv_signal_t sigterm;
    loom__component *components;
    loom_listener *listeners;
    loom__lsn lsn;
};

/* The close callback of every handle the runtime owns: counts it. */
void loom__runtime_handle_closed(uv_handle_t *h);

/* listen.c, called by runtime.c. Start initialises the timers (two
 * handles); kick opens the connection if there are listeners and none is
 * open; shutdown closes everything (idempotent); free releases listeners. */
loom_err loom__lsn_start(loom_runtime *rt);
void loom__lsn_kick(loom_runtime *rt);
void loom__lsn_shutdown(loom_runtime *rt);
void loom__lsn_free(loom_runtime *rt);

#endif /* LOOM_RUNTIME_INT_H */
