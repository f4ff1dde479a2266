/*
 * The Eventloom event store: streams of events in PostgreSQL with
 * per-stream optimistic versioning, read back by stream, in global commit
 * order, or by category with consumer-group hashing.
 *
 * Vocabulary
 *   stream    A named, ordered sequence of events, e.g. "order-42". Stream
 *             names are data (any UTF-8 text without NUL), never SQL.
 *   category  The part of a stream name before the first '-' ("order").
 *             A name without '-' is its own category.
 *   version   The 0-based index of an event in its stream. A stream that
 *             does not exist has version -1 (LOOM_EXPECT_NO_STREAM).
 *   position  A global sequence number given to each event when it is
 *             written. Positions are unique but, because transactions
 *             commit concurrently, NOT assigned in commit order.
 *   cursor    A loom_position (transaction id, position): the place of an
 *             event in commit order. Reads of all events or of a category
 *             return events strictly after a cursor.
 *
 * Reading in commit order never skips an event
 *   Each event row records the id of the transaction that wrote it (xid8).
 *   loom_store_read_all() and loom_store_read_category() return only events
 *   whose transaction id is below the oldest transaction still running
 *   (pg_snapshot_xmin of the reader's snapshot), ordered by (tx, position).
 *   Every such transaction has finished, so no event can later appear
 *   behind a cursor: a reader that resumes from the last cursor it saw
 *   sees every committed event exactly once, in commit order, even when a
 *   transaction that took a smaller position commits after one with a
 *   larger position. The price: while any transaction in the database is
 *   open, events committed after it started are held back until it ends.
 *   A long-running transaction therefore delays (never breaks) readers.
 *
 * Threads and handles
 *   A loom_store is one PostgreSQL connection. Use it from one thread at a
 *   time; open one handle per thread or per concurrent task. Each function
 *   below is either blocking (returns when PostgreSQL has answered) or one
 *   half of the non-blocking form (loom_store_*_send() then
 *   loom_store_poll() until it returns LOOM_OK, then loom_store_*_recv()),
 *   which the libuv runtime drives. Both forms run the same SQL, as
 *   prepared statements: the first use of each statement on a connection
 *   (and the first after a reconnect) prepares it with one blocking round
 *   trip, even in the non-blocking form.
 *
 * Errors
 *   Every function returns LOOM_OK or an error code. After an error,
 *   loom_store_errmsg() names the object and the cause, and
 *   loom_store_sqlstate() gives PostgreSQL's SQLSTATE when the server
 *   refused the statement. When the connection is lost the call returns
 *   LOOM_ECONN and the next call reconnects (blocking, once).
 */
#ifndef LOOM_EVENTSTORE_H
#define LOOM_EVENTSTORE_H

#include <stddef.h>
#include <stdint.h>

#include "loom/error.h"
#include "loom/export.h"
#include "loom/tx.h"
#include "loom/uuid.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct loom_store loom_store;

/* How loom_store_open() treats the database schema. */
typedef enum loom_migrate_mode {
    /* Refuse to open (LOOM_ESCHEMA) unless every migration is applied. */
    LOOM_MIGRATE_CHECK = 0,
    /* Apply missing migrations while opening (under the advisory lock). */
    LOOM_MIGRATE_AUTO = 1,
    /* Do not look at the schema (for tools that migrate it themselves). */
    LOOM_MIGRATE_SKIP = 2
} loom_migrate_mode;

/* Store options. Start from LOOM_STORE_CONFIG_INIT; zero means default. */
typedef struct loom_store_config {
    /* libpq connection string or URL; NULL reads $LOOM_DATABASE_URL and,
     * when that is unset, libpq's defaults (PGHOST, PGDATABASE, ...). */
    const char *conninfo;
    /* Shown in pg_stat_activity; NULL gives "eventloom". */
    const char *application_name;
    loom_migrate_mode migrate;
    /* Largest payload of one event (and of a snapshot), in bytes. Default
     * 1 MiB, at most 256 MiB (LOOM_MAX_PAYLOAD_LIMIT). */
    size_t max_payload;
    /* Largest encoded metadata (ids and headers) of one event. Default
     * 64 KiB, at most 16 MiB (LOOM_MAX_METADATA_LIMIT). */
    size_t max_metadata;
    /* Most events in one append. Default 10,000, at most 1,000,000
     * (LOOM_MAX_APPEND_LIMIT). */
    size_t max_append;
    /* Longest stream name in bytes. Default 255, at most 4,096
     * (LOOM_MAX_STREAM_NAME_LIMIT). */
    size_t max_stream_name;
    /* Most events one read returns. Default 10,000, at most 1,000,000
     * (LOOM_MAX_READ_LIMIT). */
    size_t max_read;
    /* The PostgreSQL role the connection works as; NULL: the login's own
     * rights. Schema 10 makes three (docs/operating.md, "Roles and TLS"):
     * "loom_writer" for services, "loom_reader" for tools and reads,
     * "loom_admin" for migrations. Sent at connection start (the libpq
     * option `-c role=...`, added to the conninfo's `options` or $PGOPTIONS),
     * so it holds after every reconnection. The login must be a member of the
     * role, else connecting fails (LOOM_ECONN, "permission denied to set
     * role"). It narrows a login that holds several roles; it is no wall
     * against SQL the application runs itself (RESET ROLE undoes it): for that,
     * log in as a user that holds only this role. 1 to 63 bytes of
     * [A-Za-z0-9_]. Copied. */
    const char *role;
} loom_store_config;

#define LOOM_STORE_CONFIG_INIT                                                 \
    {                                                                          \
        NULL, NULL, LOOM_MIGRATE_CHECK, 0, 0, 0, 0, 0, NULL                    \
    }

#define LOOM_DEFAULT_MAX_PAYLOAD     ((size_t) 1 << 20)
#define LOOM_DEFAULT_MAX_METADATA    ((size_t) 64 << 10)
#define LOOM_DEFAULT_MAX_APPEND      ((size_t) 10000)
#define LOOM_DEFAULT_MAX_STREAM_NAME ((size_t) 255)
#define LOOM_DEFAULT_MAX_READ        ((size_t) 10000)
#define LOOM_MAX_STREAM_NAME_LIMIT   ((size_t) 4096)
#define LOOM_MAX_TYPE_NAME           ((size_t) 255)
/* The largest value each limit above may be set to: PostgreSQL caps a
 * value and a message at 1 GB, and one append at these limits must fit. */
#define LOOM_MAX_PAYLOAD_LIMIT  ((size_t) 256 << 20)
#define LOOM_MAX_METADATA_LIMIT ((size_t) 16 << 20)
#define LOOM_MAX_APPEND_LIMIT   ((size_t) 1000000)
#define LOOM_MAX_READ_LIMIT     ((size_t) 1000000)

/*
 * Connects to PostgreSQL and checks (or applies) the schema according to
 * cfg->migrate. `cfg` may be NULL for all defaults; it is copied.
 *
 * On success *out owns a new handle to be closed with loom_store_close().
 * On failure *out is set to NULL and nothing needs freeing; when `errbuf`
 * is not NULL, up to `errlen` bytes of an explanation are written to it.
 *
 * Errors: LOOM_EINVAL (out NULL, a limit or the migrate mode out of range,
 * a bad role name: the message names the field and its range),
 * LOOM_ENOMEM,
 * LOOM_ECONN (cannot connect: the message names host and cause),
 * LOOM_ESCHEMA (schema missing or older than this library: run
 * `loomctl migrate`, or newer: upgrade the library), LOOM_EDB.
 */
LOOM_API loom_err loom_store_open(loom_store **out,
                                  const loom_store_config *cfg, char *errbuf,
                                  size_t errlen);

/* Closes the connection and frees `s`. NULL is a no-op. An operation sent
 * but not received is abandoned (a sent append may still commit). */
LOOM_API void loom_store_close(loom_store *s);

/*
 * The explanation of the last error on `s`: which object (stream, event
 * id, limit) and what to do. Never NULL; "" after a success. Borrowed,
 * valid until the next call on `s`.
 */
LOOM_API const char *loom_store_errmsg(const loom_store *s);

/* The SQLSTATE of the last server error on `s` ("40001", or "LM001" for
 * Eventloom's own), or "" when the last error did not come from the
 * server. Borrowed, valid until the next call on `s`. */
LOOM_API const char *loom_store_sqlstate(const loom_store *s);

/* ------------------------------------------------------------------ */
/* Schema                                                              */

/* Progress of loom_store_migrate(): called before (done = 0) and after
 * (done = 1) each migration, with its number and file name (borrowed). */
typedef void (*loom_migrate_fn)(int version, const char *name, int done,
                                void *arg);

/*
 * Applies every migration this library embeds that the database lacks,
 * in order, each in its own transaction, under an advisory lock (so
 * concurrent callers wait, then find nothing to do). `fn` may be NULL.
 * *applied (may be NULL) receives the number applied. Blocking.
 * Errors: LOOM_EINVAL, LOOM_ESCHEMA (an applied migration differs from
 * the embedded text), LOOM_ECONN, LOOM_EDB, LOOM_EBUSY.
 */
LOOM_API loom_err loom_store_migrate(loom_store *s, loom_migrate_fn fn,
                                     void *arg, int *applied);

/* The schema version applied in the database (0: none) and the newest one
 * this library knows. Either pointer may be NULL. Blocking.
 * Errors: LOOM_EINVAL, LOOM_ECONN, LOOM_EDB, LOOM_EBUSY. */
LOOM_API loom_err loom_store_schema_version(loom_store *s, int *applied,
                                            int *latest);

/* ------------------------------------------------------------------ */
/* Appending                                                           */

/* Expected versions for loom_store_append(). Any value >= 0 demands that
 * exact current version. */
#define LOOM_EXPECT_ANY       ((int64_t) -2) /* no check */
#define LOOM_EXPECT_NO_STREAM ((int64_t) -1) /* stream must not exist */
#define LOOM_EXPECT_EXISTS    ((int64_t) -4) /* stream must exist */

/* One free key/value metadata header. Both are NUL-terminated strings,
 * kept byte for byte (any byte but NUL; UTF-8 is not required, and
 * loomctl shows other bytes escaped). */
typedef struct loom_header {
    const char *key;
    const char *value;
} loom_header;

/*
 * An event to append. All pointers are borrowed for the duration of the
 * call (the _send form copies everything before it returns).
 */
typedef struct loom_event_data {
    /* In/out. A nil id is replaced by a fresh time-ordered (v7) UUID that
     * is written back here, so retrying the same array is idempotent. */
    loom_uuid id;
    /* Type name, e.g. "shop.OrderPlaced": 1 to 255 bytes of UTF-8. */
    const char *type;
    /* Version of the payload's schema, >= 0 (upcasters switch on it). */
    int32_t schema_version;
    /* Payload (protobuf bytes, usually); data may be NULL when len is 0. */
    const void *data;
    size_t data_len;
    /* Optional metadata, NUL-terminated and kept byte for byte like the
     * headers; NULL means absent. */
    const char *correlation_id;
    const char *causation_id;
    const loom_header *headers;
    size_t n_headers;
} loom_event_data;

/* What an append did. */
typedef struct loom_append_result {
    int64_t first_version; /* version of the first event appended */
    int64_t last_version;  /* the stream's version after the append */
    int64_t first_position;
    int64_t last_position;
    /* 1 when these events were already in the stream (an idempotent retry
     * of an append that had committed): nothing was written. */
    int replayed;
    /* On LOOM_ECONFLICT: the stream's actual version (-1: no stream). */
    int64_t actual_version;
} loom_append_result;

/*
 * Appends `n` events (1 <= n <= max_append) to `stream` atomically: all or
 * none, with consecutive versions, if the stream's current version
 * satisfies `expected`. Events without an id get one (written back).
 *
 * Idempotent: when every id in `events` is already in `stream`, in this
 * order and at consecutive versions, the call succeeds without writing and
 * reports the original versions with res->replayed = 1, whatever
 * `expected` says. An id already used anywhere else is LOOM_EDUPLICATE.
 *
 * `res` may be NULL. Blocking.
 *
 * Errors: LOOM_EINVAL (NULL or empty arguments, a name that is not UTF-8,
 * negative schema version, expected below -4 or -3), LOOM_ETOOBIG (stream
 * name, type name, payload, metadata or event count over its limit),
 * LOOM_ECONFLICT (res->actual_version says where the stream is),
 * LOOM_EDUPLICATE, LOOM_ECONN, LOOM_ESCHEMA, LOOM_EDB, LOOM_ENOMEM,
 * LOOM_EBUSY (a non-blocking operation is in progress on `s`).
 */
LOOM_API loom_err loom_store_append(loom_store *s, const char *stream,
                                    int64_t expected, loom_event_data *events,
                                    size_t n, loom_append_result *res);

/* Returns the current version of `stream` in *version: -1 when it does not
 * exist (and after an error). Blocking. Errors: LOOM_EINVAL (s, stream or
 * version NULL, a bad name), LOOM_ETOOBIG (name over 4,096 bytes),
 * LOOM_EBUSY (a non-blocking operation is in progress), LOOM_ECONN,
 * LOOM_EDB. */
LOOM_API loom_err loom_store_stream_version(loom_store *s, const char *stream,
                                            int64_t *version);

/* ------------------------------------------------------------------ */
/* Reading                                                             */

/* A place in commit order. {0, 0} is before the first event. */
typedef struct loom_position {
    uint64_t tx;      /* id (xid8) of the transaction that wrote it */
    int64_t position; /* the event's global position */
} loom_position;

/* A recorded event. Every pointer is borrowed from the page that holds it
 * and valid until loom_events_free(). Metadata that cannot be decoded (a
 * row written by other software) reads as absent rather than failing the
 * page. */
typedef struct loom_event {
    int64_t position;
    uint64_t tx;
    const char *stream;
    int64_t version;
    loom_uuid id;
    const char *type;
    int32_t schema_version;
    const uint8_t *data; /* never NULL, may be empty */
    size_t data_len;
    const char *correlation_id; /* NULL when absent */
    const char *causation_id;   /* NULL when absent */
    const loom_header *headers;
    size_t n_headers;
    int64_t recorded_at; /* microseconds since 1970-01-01 UTC */
} loom_event;

/* A page of events returned by a read. */
typedef struct loom_events loom_events;

/* Number of events in `page` (0 for NULL). */
LOOM_API size_t loom_events_count(const loom_events *page);

/* The i-th event of `page`, or NULL when i is out of range. Borrowed. */
LOOM_API const loom_event *loom_events_at(const loom_events *page, size_t i);

/* The cursor to pass to the next read of all events or of a category: the
 * last event's place, or the cursor read from when the page is empty. */
LOOM_API loom_position loom_events_next(const loom_events *page);

/* Frees `page` and everything borrowed from it. NULL is a no-op. */
LOOM_API void loom_events_free(loom_events *page);

typedef enum loom_direction {
    LOOM_FORWARD = 0,
    LOOM_BACKWARD = 1
} loom_direction;

/* For a backward read: start from the stream's last event. */
#define LOOM_VERSION_END INT64_MAX

/*
 * Reads up to `max` events of `stream` starting at version `from`
 * (inclusive): ascending for LOOM_FORWARD, descending for LOOM_BACKWARD
 * (from = LOOM_VERSION_END for the newest). Page on with the next version.
 * A stream that does not exist gives an empty page. On success *out owns
 * a page to free with loom_events_free(); on failure it is NULL.
 *
 * Errors: LOOM_EINVAL (from < 0, max 0, bad name), LOOM_ETOOBIG (max over
 * max_read, name too long), LOOM_ECONN, LOOM_ESCHEMA, LOOM_EDB,
 * LOOM_ENOMEM, LOOM_EBUSY.
 */
LOOM_API loom_err loom_store_read_stream(loom_store *s, const char *stream,
                                         int64_t from, loom_direction dir,
                                         size_t max, loom_events **out);

/*
 * Reads up to `max` events of every stream strictly after `after`, in
 * commit order (see the top of this file). Page on with
 * loom_events_next(). An empty page means nothing committed after the
 * cursor is readable yet. Same ownership and errors as
 * loom_store_read_stream().
 */
LOOM_API loom_err loom_store_read_all(loom_store *s, loom_position after,
                                      size_t max, loom_events **out);

/* A consumer group for category reads: this reader is member `member`
 * (0-based) of `size` readers sharing the category. */
typedef struct loom_group {
    uint32_t member;
    uint32_t size;
} loom_group;

/*
 * Like loom_store_read_all() but only events of streams in `category`.
 * With `group` (NULL for none), only the streams whose id hashes to this
 * member: the id is the part of the name after the first '-' up to any
 * '+' (Message DB's cardinal id), hashed with the first 64 bits of its MD5
 * and taken modulo group->size, so one stream always goes to one member
 * and each member gets an even share. Errors as above, and LOOM_EINVAL
 * when group->size is 0 or over INT32_MAX or member >= size, or the
 * category contains '-'.
 */
LOOM_API loom_err loom_store_read_category(loom_store *s, const char *category,
                                           loom_position after,
                                           const loom_group *group, size_t max,
                                           loom_events **out);

/* ------------------------------------------------------------------ */
/* Snapshots                                                           */

/*
 * Stores the state of `stream` at `version` (borrowed bytes, copied) for
 * the state layout `schema_version`. Only the newest snapshot of a stream
 * is kept; an older version than the stored one is ignored.
 * Errors: LOOM_EINVAL (also when the stream does not exist or has not
 * reached `version`: a snapshot past its end would make loads skip the
 * events up to it), LOOM_ETOOBIG (over max_payload), LOOM_ECONN,
 * LOOM_EDB.
 */
LOOM_API loom_err loom_store_snapshot_save(loom_store *s, const char *stream,
                                           int64_t version,
                                           int32_t schema_version,
                                           const void *data, size_t len);

/*
 * Loads the snapshot of `stream` if one was taken with `schema_version`.
 * On success *data (owned by the caller, free with loom_free()), *len and
 * *version are set; on any error *data is NULL and nothing needs freeing.
 * Blocking. Errors: LOOM_ENOTFOUND when there is none or it was taken
 * with another schema version (so a changed state layout ignores it),
 * LOOM_EINVAL (a NULL argument, a bad name), LOOM_EBUSY, LOOM_ECONN,
 * LOOM_EDB, LOOM_ENOMEM.
 */
LOOM_API loom_err loom_store_snapshot_load(loom_store *s, const char *stream,
                                           int32_t schema_version, void **data,
                                           size_t *len, int64_t *version);

/* ------------------------------------------------------------------ */
/* Units of work                                                       */

/*
 * Queues an append of `n` events to `stream` in `tx` (loom/tx.h), checked
 * against `expected` when tx commits, as loom_store_append() would. The
 * checks that need no database run now, against the default limits
 * (LOOM_DEFAULT_MAX_*); events without an id get one now, written back.
 * Unlike loom_store_append(), a unit of work that is retried after it
 * committed is not recognised: give its events fixed ids and it fails
 * with LOOM_EDUPLICATE instead of appending twice.
 *
 * Errors (nothing queued): as loom_store_append()'s argument checks
 * (LOOM_EINVAL, LOOM_ETOOBIG), LOOM_ENOMEM, LOOM_EIO (no random source);
 * loom_tx_errmsg() says which event and why.
 */
LOOM_API loom_err loom_tx_append(loom_tx *tx, const char *stream,
                                 int64_t expected, loom_event_data *events,
                                 size_t n);

/*
 * Runs every statement queued in `tx` as one transaction on s's
 * connection, in one round trip (see loom/tx.h): all of it commits or
 * none. `tx` is not changed (loom_tx_reset() it to reuse it). Blocking.
 *
 * Errors: LOOM_EINVAL (NULL, or tx empty), LOOM_ECONFLICT (an append's
 * expected version did not hold), LOOM_EDUPLICATE (an event id already
 * used), LOOM_EALREADY (an inbox mark found its message processed),
 * LOOM_ECONN (the connection broke: whether tx committed is unknown, so
 * make the retry idempotent with an inbox mark or fixed event ids),
 * LOOM_EDB (another statement failed: loom_store_errmsg() and
 * loom_store_sqlstate() tell which; or a statement ran transaction
 * control that got past loom_tx_exec(), so tx did not commit as one:
 * the message says what committed), LOOM_ESCHEMA, LOOM_EBUSY.
 */
LOOM_API loom_err loom_store_commit(loom_store *s, const loom_tx *tx);

/* The 0-based index of the statement that failed the last
 * loom_store_commit() on `s` (or that ran transaction control), or -1
 * (none failed, unknown, or s NULL). */
LOOM_API int loom_store_commit_failed_at(const loom_store *s);

/* ------------------------------------------------------------------ */
/* The non-blocking form                                               */

/* Readiness wanted by loom_store_poll(). */
#define LOOM_POLL_READ  1
#define LOOM_POLL_WRITE 2

/*
 * Starts an append without waiting: the arguments are validated and sent
 * (copied; ids are generated and written back now). Then call
 * loom_store_poll() whenever loom_store_socket() is ready, until it
 * returns LOOM_OK, then loom_store_append_recv(). One operation at a time
 * per handle: a second _send before the _recv gives LOOM_EBUSY.
 * Errors: as loom_store_append() for the argument checks, LOOM_ECONN.
 */
LOOM_API loom_err loom_store_append_send(loom_store *s, const char *stream,
                                         int64_t expected,
                                         loom_event_data *events, size_t n);

/*
 * Non-blocking halves of the three reads: the arguments are checked and
 * sent (copied), then drive the read with loom_store_poll() and receive
 * its page with loom_store_events_recv(). Errors: the blocking read's
 * argument checks (LOOM_EINVAL, LOOM_ETOOBIG), LOOM_EBUSY (an operation
 * is in progress on `s`), LOOM_ECONN; nothing is in progress after an
 * error.
 */
LOOM_API loom_err loom_store_read_stream_send(loom_store *s, const char *stream,
                                              int64_t from, loom_direction dir,
                                              size_t max);
LOOM_API loom_err loom_store_read_all_send(loom_store *s, loom_position after,
                                           size_t max);
LOOM_API loom_err loom_store_read_category_send(loom_store *s,
                                                const char *category,
                                                loom_position after,
                                                const loom_group *group,
                                                size_t max);

/* The connection's socket, to watch for readiness; -1 when closed or s is
 * NULL. It changes after a reconnection: read it again after each call
 * that may reconnect. */
LOOM_API int loom_store_socket(const loom_store *s);

/*
 * Moves the operation in progress forward without blocking. Returns
 * LOOM_OK when its result is ready to receive, LOOM_EAGAIN when it must
 * wait: *wait (may be NULL) is then set to LOOM_POLL_READ, plus
 * LOOM_POLL_WRITE while a request is still being sent. LOOM_EINVAL when
 * nothing is in progress, LOOM_ECONN when the connection broke.
 */
LOOM_API loom_err loom_store_poll(loom_store *s, int *wait);

/* Finishes an append started with loom_store_append_send(); same results
 * and errors as loom_store_append(). Returns LOOM_EAGAIN, changing
 * nothing, when loom_store_poll() has not returned LOOM_OK yet. */
LOOM_API loom_err loom_store_append_recv(loom_store *s,
                                         loom_append_result *res);

/* Finishes a read started with a loom_store_read_*_send(): on success
 * *out owns the page (free with loom_events_free()), else it is NULL.
 * Same results and errors as the blocking reads; LOOM_EAGAIN, changing
 * nothing, before loom_store_poll() returned LOOM_OK; LOOM_EINVAL when no
 * read is in progress. */
LOOM_API loom_err loom_store_events_recv(loom_store *s, loom_events **out);

#ifdef __cplusplus
}
#endif

#endif /* LOOM_EVENTSTORE_H */
