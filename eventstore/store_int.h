/*
 * Private to the event store: the handle, and the one path every
 * operation takes (begin, send, poll, receive). The blocking functions are
 * the non-blocking ones plus a wait, so both forms run the same SQL.
 */
#ifndef LOOM_STORE_INT_H
#define LOOM_STORE_INT_H

#include <stdint.h>

#include <libpq-fe.h>

#include "buf.h"
#include "loom/eventstore.h"
#include "loom/tx.h"
#include "loom/upcast.h"

/*
 * The statements the store runs. Each is prepared once per connection, on
 * first use (a blocking round trip; again after a reconnect), so the hot
 * paths skip parsing and planning.
 */
typedef enum loom__stmt_id {
    LOOM__STMT_APPEND,
    LOOM__STMT_REPLAY,
    LOOM__STMT_VERSION,
    LOOM__STMT_READ_FORWARD,
    LOOM__STMT_READ_BACKWARD,
    LOOM__STMT_READ_ALL,
    LOOM__STMT_READ_CATEGORY,
    LOOM__STMT_READ_GROUP,
    LOOM__STMT_SNAPSHOT_SAVE,
    LOOM__STMT_SNAPSHOT_LOAD,
    LOOM__STMT_CHECKPOINT_LOAD,
    LOOM__STMT_CHECKPOINT_SAVE,
    LOOM__STMT_ARM_WAKEUP,
    LOOM__STMT_PARKED_LOAD,
    LOOM__STMT_HORIZON,
    LOOM__STMT_PROJ_LOOKUP,
    LOOM__STMT_PROJ_OWNER,
    LOOM__STMT_REBUILD_STATE,
    LOOM__STMT_REBUILD_LOCK,
    LOOM__STMT_REBUILD_COUNT,
    LOOM__STMT_REBUILD_SWAP,
    /* the inbox's expiry (outbox/inbox_consumer.c) */
    LOOM__STMT_INBOX_EXPIRE,
    /* topics (outbox/transports/topics/) */
    LOOM__STMT_TOPIC_CREATE,
    LOOM__STMT_TOPIC_ALTER,
    LOOM__STMT_TOPIC_DESCRIBE,
    LOOM__STMT_TOPIC_RESET,
    LOOM__STMT_TOPIC_REDRIVE,
    LOOM__STMT_TOPIC_RETENTION,
    LOOM__STMT_TOPIC_META,
    LOOM__STMT_GROUP_JOIN,
    LOOM__STMT_GROUP_HEARTBEAT,
    LOOM__STMT_GROUP_LEAVE,
    LOOM__STMT_GROUP_ASSIGNMENT,
    LOOM__STMT_TOPIC_FETCH,
    LOOM__STMT_TOPIC_FETCH_RETRIES,
    LOOM__STMT_TOPIC_ARM,
    /* the outbox relay (outbox/relay.c) */
    LOOM__STMT_OUTBOX_LEAD,
    LOOM__STMT_OUTBOX_FETCH,
    LOOM__STMT_OUTBOX_HEARTBEAT,
    LOOM__STMT_OUTBOX_CLEANUP,
    LOOM__STMT_OUTBOX_RESIGN,
    LOOM__STMT_OUTBOX_ARM,
    LOOM__STMT_OUTBOX_PENDING,
    LOOM__STMT_OUTBOX_PUBLISH_LOCAL,
    LOOM__STMT_DB_IDENTITY,
    /* sagas (saga/): reads, the orchestrator's loads and claims */
    LOOM__STMT_SAGA_GET,
    LOOM__STMT_SAGA_STARTED,
    LOOM__STMT_SAGA_LOAD,
    LOOM__STMT_SAGA_CLAIM,
    LOOM__STMT_SAGA_RELEASE,
    LOOM__STMT_COUNT
} loom__stmt_id;

/* s->prepared keeps one bit per statement. */
_Static_assert(LOOM__STMT_COUNT <= 64, "loom_store.prepared is 64 bits");

typedef struct loom__stmt {
    loom__stmt_id id;
    /* Server-side name, "loom_<what>"; NULL: sent unprepared, so planned
     * with its parameters on every run. For statements whose plan must
     * not outlive the sizes it was made for: after five runs PostgreSQL
     * may keep a generic plan, and one made while a table was nearly empty
     * (`x = ANY ($1)` by sequential scan) keeps scanning it whole as it
     * grows, until an ANALYZE. */
    const char *name;
    const char *sql;
    int n; /* parameters, all sent in binary */
    Oid types[8];
} loom__stmt;

/* What is in flight on a handle. */
typedef enum loom__store_op {
    LOOM__OP_NONE = 0,
    LOOM__OP_APPEND,
    LOOM__OP_EVENTS,
    LOOM__OP_QUERY,
    LOOM__OP_TX /* a loom_tx in one pipeline (txexec.c) */
} loom__store_op;

/* Most distinct loom_tx statements prepared per connection; further ones
 * are sent unprepared. */
#define LOOM__TX_CACHE 64

/* One loom_tx statement text prepared (or being prepared) as
 * "loom_tx_<slot>" on the current connection. */
typedef struct loom__tx_cached {
    char *key; /* parameter count, types and SQL; owned */
    size_t key_len;
    uint64_t hash;
    int state; /* 0 not prepared, 1 prepare in flight, 2 prepared */
    int index; /* state 1: the prepare's result number in the pipeline */
} loom__tx_cached;

struct loom_store {
    PGconn *conn;
    loom_store_config cfg; /* limits resolved; strings point below */
    char *conninfo;        /* owned copies */
    char *appname;
    char *options;    /* libpq "options" with the role; NULL: none */
    loom__buf err;    /* loom_store_errmsg() */
    char sqlstate[6]; /* loom_store_sqlstate() */
    loom__buf params; /* scratch for binary parameters, reused */
    /* The operation in flight: set by loom__store_send(), cleared by the
     * receive functions. */
    loom__store_op op;
    int flushing;             /* the request is not fully written yet */
    int ready;                /* every result has arrived */
    PGresult *result;         /* first result of the operation, owned */
    loom_position read_after; /* cursor of a read, for an empty page */
    uint64_t prepared;        /* bit per loom__stmt_id prepared on conn */
    /* An append that failed with a conflict or a reused id asks
     * loom.append_replay() whether it was a retry; meanwhile the append's
     * own failure waits here. */
    PGresult *append_failure;
    int append_stream_len; /* the stream name starts params */
    size_t append_ids;     /* offset of the id array in params */
    int append_ids_len;
    const loom_upcasters *upcasters; /* applied to every read; borrowed */
    /* LOOM__OP_TX: the statement cache, the pipeline's result counter,
     * and whether its sync point has arrived. */
    loom__tx_cached txcache[LOOM__TX_CACHE];
    int tx_index;
    int tx_pending; /* prepares in flight */
    int tx_synced;
    loom__buf tx_map; /* per result: the statement it belongs to (int32) */
    long tx_failed;   /* the statement that failed first, or -1 */
    /* The first statement whose command tag says it ran transaction
     * control (loom_tx_exec() refuses such SQL; this catches what gets
     * past it), or -1, and that tag (a literal). */
    long tx_control;
    const char *tx_control_tag;
};

/* Every public entry point that takes a store calls this first, once s is
 * known not to be NULL: loom_store_errmsg() and loom_store_sqlstate()
 * explain the last call only ("" after a success), so what an earlier
 * call left must go before this one fails or succeeds. */
void loom__store_enter(loom_store *s);

/* LOOM_EINVAL with "<fn>: <arg> is NULL" as the message. */
loom_err loom__store_null(loom_store *s, const char *fn, const char *arg);

/* Checks that nothing is in flight (LOOM_EBUSY), clears the last error and
 * reconnects a broken connection (blocking). */
loom_err loom__store_begin(loom_store *s);

/* Non-blocking reconnection of a broken connection (loom__store_begin()
 * reconnects too, but blocking): start, then poll until LOOM_OK or
 * LOOM_ECONN; LOOM_EAGAIN sets *want (LOOM_POLL_*) for the socket, which
 * may change between polls. */
loom_err loom__store_reconnect_start(loom_store *s);
loom_err loom__store_reconnect_poll(loom_store *s, int *want);

/* Sends one prepared statement (preparing it first if needed) with
 * binary parameters and binary results. */
loom_err loom__store_send(loom_store *s, loom__store_op op,
                          const loom__stmt *st, const char *const *values,
                          const int *lengths);

/* Blocks until the operation in flight has its result. */
loom_err loom__store_wait(loom_store *s);

/* Takes the operation's result (the caller PQclears it) and maps a
 * failed one to an error with errmsg and sqlstate set. Clears the op. */
loom_err loom__store_take(loom_store *s, loom__store_op op, PGresult **out);

/* Sends, waits for and takes the result of a one-off statement (the
 * caller has called loom__store_begin()). *out is NULL on failure. */
loom_err loom__store_query(loom_store *s, const loom__stmt *st,
                           const char *const *values, const int *lengths,
                           PGresult **out);

/* Sets the error message (printf-style) and returns `rc`. */
loom_err loom__store_fail(loom_store *s, loom_err rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Validates a stream name: non-empty UTF-8 of at most `limit` bytes. Writes
 * use the handle's max_stream_name; reads accept any name a writer with
 * a higher limit could have stored (LOOM_MAX_STREAM_NAME_LIMIT). */
loom_err loom__store_check_stream(loom_store *s, const char *stream,
                                  size_t limit);
/* The same check with the message written into `err` (a unit of work's). */
loom_err loom__check_stream(const char *stream, size_t limit, loom__buf *err);

/* Statements a subscription and a rebuild queue on their transactions
 * (framework/migrations/0004_exactly_once.sql). */
#define LOOM__SQL_ADVANCE                                                      \
    "SELECT loom.checkpoint_advance($1, $2, $3, $4, $5, $6, $7)"
#define LOOM__SQL_CLAIM "SELECT loom.checkpoint_claim($1, $2, $3, $4)"
/* $1 subscription, $2 event id, $3 stream, $4 version, $5 tx, $6 position,
 * $7 type, $8 error, $9 attempts; all text. */
#define LOOM__SQL_PARK                                                         \
    "INSERT INTO loom.parked AS p (subscription, event_id, stream, "           \
    "version, tx, position, type, error, attempts) VALUES ($1, "               \
    "$2::uuid, $3, $4::bigint, $5::xid8, $6::bigint, $7, $8, "                 \
    "$9::integer) ON CONFLICT (subscription, event_id) DO UPDATE SET "         \
    "error = EXCLUDED.error, attempts = p.attempts + EXCLUDED.attempts, "      \
    "parked_at = now(), replay_requested_at = NULL"

/* Queues LOOM__SQL_ADVANCE: checkpoint `name` from (from, from_ver) to
 * (to, to_ver). */
loom_err loom__tx_advance(loom_tx *tx, const char *name, loom_position from,
                          int64_t from_ver, loom_position to, int64_t to_ver);

/* Queues LOOM__SQL_CLAIM: lock checkpoint `name`, which must still be at
 * (at, ver). */
loom_err loom__tx_claim(loom_tx *tx, const char *name, loom_position at,
                        int64_t ver);

/* Queues LOOM__SQL_PARK for `ev` under `name`. */
loom_err loom__tx_park(loom_tx *tx, const char *name, const loom_event *ev,
                       const char *error, unsigned attempts);

/* Whether a failure with this SQLSTATE says nothing about the statement
 * or the event it served: the connection broke (08, but not 08P01, a
 * message the server refused), the transaction lost a serialization or
 * deadlock race (40), the server is short of resources (53), shutting
 * down (57) or failing (58). Subscriptions and rebuilds retry those
 * without counting them towards parking. */
int loom__sqlstate_transient(const char *sqlstate);

/* Maps a failed result to an error code, errmsg and sqlstate. */
loom_err loom__store_result_error(loom_store *s, const PGresult *r);

/* Sends every statement of `tx` (loom/tx.h) in pipeline mode as one
 * implicit transaction that commits at its sync point; op LOOM__OP_TX.
 * The caller has called loom__store_begin(). */
loom_err loom__store_send_tx(loom_store *s, const loom_tx *tx);

/* loom_store_poll()'s collector for LOOM__OP_TX: reads results up to the
 * sync point, keeping the first error in s->result. */
void loom__store_collect_tx(loom_store *s);

/* Takes the outcome of LOOM__OP_TX: LOOM_OK when everything committed,
 * else the first failure (errmsg and sqlstate set; s->tx_failed the index
 * of the failing statement in the tx when known, else -1; nothing
 * committed unless the error is LOOM_ECONN during the commit, when the
 * outcome is unknown). */
loom_err loom__store_take_tx(loom_store *s);

/* Blocking: runs `tx` and returns loom__store_take_tx()'s outcome. */
loom_err loom__store_run_tx(loom_store *s, const loom_tx *tx);

/* Forgets prepared loom_tx statements (a new session); frees with
 * `release`. */
void loom__store_txcache_clear(loom_store *s, int release);

/* Called by loom_store_poll() when an append's result is in: sends the
 * replay check after a conflict or duplicate. Returns 1 when it did. */
int loom__append_followup(loom_store *s);

/* Page memory for upcast payloads and type names. */
typedef void *(*loom__upcast_alloc_fn)(void *ctx, size_t size);

/* Applies s->upcasters to `ev` until no step matches; new payloads and
 * names live in memory from `alloc`. Sets errmsg on failure. */
loom_err loom__upcast_event(loom_store *s, loom_event *ev,
                            loom__upcast_alloc_fn alloc, void *ctx);

/* Builds a page from a result of the events query (takes `r`). */
loom_err loom__events_from_result(loom_store *s, PGresult *r,
                                  loom_position after, loom_events **out);

/* Event metadata, stored as a protobuf message (framework/proto/loom/
 * metadata.proto): 1 correlation_id, 2 causation_id, 3 repeated header
 * {1 key, 2 value}. */
int loom__metadata_present(const loom_event_data *e);
void loom__metadata_encode(loom__buf *b, const loom_event_data *e);

#endif /* LOOM_STORE_INT_H */
