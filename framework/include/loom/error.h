/*
 * Eventloom errors.
 *
 * Every public function that can fail returns a loom_err. LOOM_OK is zero,
 * every error is a positive value, so `if (rc != LOOM_OK)` and `if (rc)`
 * both work. Details that depend on the failing call (the PostgreSQL
 * SQLSTATE, the server's message, the object that was refused) are kept on
 * the handle that made the call, e.g. loom_store_errmsg().
 */
#ifndef LOOM_ERROR_H
#define LOOM_ERROR_H

#include "loom/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The one list of error codes. Each entry is (name, value, message). Values
 * are stable: new codes are appended, none is renumbered, so a code stored
 * in a log or a database keeps its meaning.
 */
#define LOOM_ERR_MAP(X)                                                        \
    X(LOOM_OK, 0, "success")                                                   \
    X(LOOM_EINVAL, 1, "invalid argument")                                      \
    X(LOOM_ENOMEM, 2, "out of memory")                                         \
    X(LOOM_ECONFLICT, 3, "expected stream version mismatch")                   \
    X(LOOM_EDUPLICATE, 4, "event id already used by a different append")       \
    X(LOOM_ENOTFOUND, 5, "not found")                                          \
    X(LOOM_ETOOBIG, 6, "size limit exceeded")                                  \
    X(LOOM_ECONN, 7, "connection to PostgreSQL failed or was lost")            \
    X(LOOM_EDB, 8, "PostgreSQL reported an error")                             \
    X(LOOM_ESCHEMA, 9, "database schema missing or out of date")               \
    X(LOOM_EAGAIN, 10, "operation would block; try again when ready")          \
    X(LOOM_EBUSY, 11, "another operation is in progress on this handle")       \
    X(LOOM_EDECODE, 12, "payload could not be decoded")                        \
    X(LOOM_EHANDLER, 13, "a user callback reported failure")                   \
    X(LOOM_EIO, 14, "input/output error")                                      \
    X(LOOM_EALREADY, 15, "message already processed by this consumer")

typedef enum loom_err {
#define LOOM__ERR_ENUM(name, value, msg) name = value,
    LOOM_ERR_MAP(LOOM__ERR_ENUM)
#undef LOOM__ERR_ENUM
} loom_err;

/*
 * Returns a human-readable sentence for `err`: a string literal, never NULL,
 * valid forever. An unknown value gives "unknown error".
 */
LOOM_API const char *loom_strerror(loom_err err);

/*
 * Returns the symbolic name of `err` ("LOOM_ECONFLICT"), or "LOOM_UNKNOWN"
 * for a value not in the list. A string literal, never NULL.
 */
LOOM_API const char *loom_err_name(loom_err err);

#ifdef __cplusplus
}
#endif

#endif /* LOOM_ERROR_H */
