/*
 * Eventloom's log lines. The library logs what an operator needs to know
 * and cannot learn from a return code: a lost PostgreSQL connection and
 * its restoration, a retry delay, a component that misbehaved. By default
 * WARN and ERROR lines go to stderr as `eventloom: <level>: <message>`;
 * a program routes every level elsewhere with loom_log_set().
 */
#ifndef LOOM_LOG_H
#define LOOM_LOG_H

#include "loom/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Severity, most severe first (so `level <= LOOM_LOG_WARN` filters). */
typedef enum loom_log_level {
    LOOM_LOG_ERROR = 0, /* something failed and was not retried */
    LOOM_LOG_WARN = 1,  /* something failed and is being retried */
    LOOM_LOG_INFO = 2,  /* a notable change of state (connection restored) */
    LOOM_LOG_DEBUG = 3  /* detail for developers */
} loom_log_level;

/*
 * Receives one log line: `message` is a complete sentence without a
 * trailing newline, borrowed for the duration of the call. It is called
 * on the thread that logs (for the runtime, the loop thread) and must not
 * call back into the object that logged.
 */
typedef void (*loom_log_fn)(void *arg, loom_log_level level,
                            const char *message);

/*
 * Sends every later log line, of every level, to fn(arg, level, message).
 * NULL restores the default (WARN and ERROR to stderr, the rest dropped).
 * Not thread-safe: call it at start-up, before opening handles.
 */
LOOM_API void loom_log_set(loom_log_fn fn, void *arg);

/* "error", "warn", "info" or "debug"; "unknown" for another value. A
 * string literal, never NULL. */
LOOM_API const char *loom_log_level_name(loom_log_level level);

#ifdef __cplusplus
}
#endif

#endif /* LOOM_LOG_H */
