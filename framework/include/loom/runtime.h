/*
 * The Eventloom runtime: one libuv loop per process (DESIGN.md principle
 * 5) that drives the long-running side of a service, i.e. the PostgreSQL
 * LISTEN connection that wakes components, timers, and SIGINT/SIGTERM
 * handling that stops components gracefully.
 *
 * Threads
 *   A loom_runtime belongs to the thread that runs its loop. Every
 *   function below except loom_runtime_open() and loom_runtime_close()
 *   must be called on that thread (from a libuv callback, or before
 *   loom_runtime_run()). Callbacks (loom_wake_fn) run on that thread.
 *
 * Life cycle
 *   open -> [listen ...] -> run (blocks; returns after stop) -> close.
 *   loom_runtime_stop() may be called from any callback on the loop, or
 *   by SIGINT/SIGTERM when cfg.handle_signals is set. Stopping asks every
 *   component (subscriptions, relays) to finish the batch in hand, waits
 *   until each has done so, then closes the runtime's connection and
 *   libuv handles; loom_runtime_run() returns when all are closed.
 *
 * Notifications are wake-ups, never data (DESIGN.md principle 3)
 *   A listener is called with the NOTIFY payload, but a payload can be
 *   lost (the connection drops, or the notification was sent while the
 *   LISTEN was not yet active), so a listener must treat every call as
 *   "re-read your table" and never as the data itself. The runtime makes
 *   lost notifications harmless with three guarantees:
 *     1. Once a listener's channel is being listened to (after its LISTEN
 *        is acknowledged by the server), fn is called once with payload
 *        NULL: anything committed before then must be re-read.
 *     2. When the LISTEN connection drops (backend killed, server
 *        restarted), the runtime logs it with the server's host and port
 *        and the delay, reconnects with capped exponential backoff and
 *        full jitter, LISTENs again to every channel, then calls EVERY
 *        listener once with payload NULL ("you may have missed
 *        notifications: re-read").
 *     3. Every cfg.poll_ms milliseconds every listener is called with
 *        payload NULL, whether or not the connection is up: a fallback
 *        for a notification lost for any other reason.
 */
#ifndef LOOM_RUNTIME_H
#define LOOM_RUNTIME_H

#include "loom/error.h"
#include "loom/export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct loom_runtime loom_runtime;
typedef struct loom_listener loom_listener;

/* libuv's uv_loop_t, declared here so that this header (and loom/loom.h)
 * compiles without <uv.h>, which needs POSIX declarations that a strict
 * -std=c11 build lacks. Pass and receive plain uv_loop_t pointers. */
struct uv_loop_s;

/* Runtime options. Start from LOOM_RUNTIME_CONFIG_INIT; zero (or NULL)
 * means the default given with each field. */
typedef struct loom_runtime_config {
    /* libpq connection string or URL for the LISTEN connection; NULL
     * reads $LOOM_DATABASE_URL and, when that is unset, libpq's defaults
     * (PGHOST, PGDATABASE, ...). Copied by loom_runtime_open(). */
    const char *conninfo;
    /* A loop to borrow; it must outlive the runtime. NULL: the runtime
     * creates and owns its own loop. */
    struct uv_loop_s *loop;
    /* Non-zero: SIGINT and SIGTERM call loom_runtime_stop() while the
     * runtime runs (libuv signal handles: the process's previous
     * dispositions come back when the runtime stops). */
    int handle_signals;
    /* Reconnection delay bounds in milliseconds: the delay before attempt
     * n is random in [0, min(max, min * 2^n)]. Defaults 100 and 10,000;
     * min must not exceed max. */
    unsigned reconnect_min_ms;
    unsigned reconnect_max_ms;
    /* Period of the fallback wake-up (guarantee 3), in milliseconds.
     * Default 1,000. */
    unsigned poll_ms;
    /* application_name of the LISTEN connection, shown in
     * pg_stat_activity; NULL gives "eventloom-listen" unless conninfo
     * sets one. Copied by loom_runtime_open(). */
    const char *application_name;
} loom_runtime_config;

#define LOOM_RUNTIME_CONFIG_INIT                                               \
    {                                                                          \
        NULL, NULL, 0, 0, 0, 0, NULL                                           \
    }

#define LOOM_DEFAULT_RECONNECT_MIN_MS 100u
#define LOOM_DEFAULT_RECONNECT_MAX_MS 10000u
#define LOOM_DEFAULT_POLL_MS          1000u

/* The longest channel name, in bytes: PostgreSQL truncates identifiers
 * longer than this (NAMEDATALEN - 1), so a longer name would never match
 * the channel a NOTIFY reports. */
#define LOOM_MAX_CHANNEL 63

/*
 * Creates a runtime. `cfg` may be NULL for all defaults; it is copied
 * (strings included). Nothing touches the network here: the LISTEN
 * connection is opened by loom_runtime_run(), and only when there is a
 * listener.
 *
 * On success *out owns a new runtime to be freed with
 * loom_runtime_close(). On failure *out is set to NULL (when out is not
 * NULL) and nothing needs freeing.
 *
 * Errors: LOOM_EINVAL (out NULL, or reconnect_min_ms greater than
 * reconnect_max_ms after defaults are applied), LOOM_ENOMEM, LOOM_EIO
 * (libuv could not create the loop).
 */
LOOM_API loom_err loom_runtime_open(loom_runtime **out,
                                    const loom_runtime_config *cfg);

/*
 * Runs the loop on the calling thread until loom_runtime_stop() has
 * completed: every component reported done and every handle of the
 * runtime is closed. With a borrowed loop, the caller's own handles stay
 * open and the loop stops when the runtime's handles are closed. The
 * runtime keeps the loop alive until it is stopped, even with nothing
 * else to do; a component that never reports done keeps it running. A
 * runtime runs once: a later call returns LOOM_OK at once.
 *
 * Returns LOOM_OK after a stop. Errors: LOOM_EINVAL (rt NULL),
 * LOOM_EBUSY (called from a callback of the runtime's own loop while it
 * runs, or, after a stop, the loop ran out of work while a component
 * still had not reported done: a bug in that component), LOOM_EIO (libuv
 * could not install a handle: the error is logged, and the runtime
 * stopped and closed what it had opened before returning).
 */
LOOM_API loom_err loom_runtime_run(loom_runtime *rt);

/*
 * Begins a graceful stop and returns at once: each component is asked to
 * finish the batch in hand; when all have, the LISTEN connection, timers
 * and signal handles are closed and loom_runtime_run() returns. Calling it
 * again, or when the runtime has already stopped, does nothing; calling
 * it before loom_runtime_run() makes run return as soon as it starts.
 * Listeners are not called after stop. Loop thread only; NULL is a no-op.
 */
LOOM_API void loom_runtime_stop(loom_runtime *rt);

/*
 * Frees the runtime, its own loop if it made one, and every listener not
 * yet closed (whose pointers become invalid). Call it after
 * loom_runtime_run() returned or if run was never called, never from a
 * callback of the runtime. NULL is a no-op.
 */
LOOM_API void loom_runtime_close(loom_runtime *rt);

/* The loop the runtime runs on (its own or the borrowed one), for the
 * caller's timers and handles. Borrowed; valid until loom_runtime_close().
 * NULL when rt is NULL. */
LOOM_API struct uv_loop_s *loom_runtime_loop(loom_runtime *rt);

/*
 * A wake-up: `channel` is the channel the listener registered (borrowed
 * for the call); `payload` is the NOTIFY payload (borrowed for the call),
 * or NULL when the runtime asks the listener to re-read because
 * notifications may have been missed (see guarantees 1-3 above). Runs on
 * the loop thread; it may call loom_runtime_listen(),
 * loom_listener_close() (for any listener, itself included) and
 * loom_runtime_stop(), but not loom_runtime_close().
 */
typedef void (*loom_wake_fn)(void *arg, const char *channel,
                             const char *payload);

/*
 * Registers fn(arg, channel, payload) for notifications on `channel`, a
 * channel name as NOTIFY spells it after identifier folding: the name is
 * sent quoted (LISTEN "Name"), so it is case-sensitive and may contain any
 * character but NUL; it must be valid UTF-8 (the LISTEN connection's
 * encoding, as the store's). Several listeners may share a channel; each is
 * called. Registration never blocks: while the runtime runs, the LISTEN is
 * queued on the LISTEN connection (opened now if this is the first
 * listener) and fn is called with NULL once it is acknowledged. `channel`
 * is copied; `arg` is borrowed and must stay valid until the listener is
 * closed.
 *
 * On success *out is the listener, to be closed with loom_listener_close()
 * or freed by loom_runtime_close(). On failure *out is set to NULL (when
 * out is not NULL).
 *
 * If the connection still cannot put the channel in a LISTEN (libpq
 * refuses to quote it), the runtime logs an error naming the channel and
 * that listener gets only the fallback wake-ups (guarantee 3) until the
 * next reconnection tries again; the other listeners are not held up.
 *
 * Errors: LOOM_EINVAL (rt, channel, fn or out NULL, channel empty, longer
 * than LOOM_MAX_CHANNEL bytes or not valid UTF-8; a runtime has no error
 * message, so a refused channel is logged at LOOM_LOG_WARN with its name
 * and why), LOOM_EBUSY (the runtime is stopping or stopped), LOOM_ENOMEM.
 * Loop thread only.
 */
LOOM_API loom_err loom_runtime_listen(loom_runtime *rt, const char *channel,
                                      loom_wake_fn fn, void *arg,
                                      loom_listener **out);

/*
 * Stops calling the listener's fn and frees it (at once, or after the
 * current dispatch when called from a callback). The connection keeps
 * listening to the channel until it next reconnects; such notifications
 * are ignored. NULL is a no-op. Loop thread only.
 */
LOOM_API void loom_listener_close(loom_listener *l);

#ifdef __cplusplus
}
#endif

#endif /* LOOM_RUNTIME_H */
