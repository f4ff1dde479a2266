/*
 * The idempotent consumer (loom/inbox_consumer.h): a transport consumer
 * whose messages are handled in PostgreSQL transactions that first record
 * each message id in the inbox (loom/inbox.h).
 *
 * Messages are handled in delivery order, one delivered batch at a time,
 * on one connection driven from the loop (pgconn.h: one request at a
 * time, reconnected without blocking):
 *
 *   batch   one loom_tx with the inbox marks of every message (one
 *           statement), then each handler's statements, then what the
 *           end hook adds (inbox_consumer_int.h). Committed: every
 *           message is acked.
 *   one     the batch failed (a duplicate, a handler error, a statement
 *           that failed): each message again in a tx of its own. Committed:
 *           acked; LOOM_EALREADY: acked as a duplicate; LOOM_ECONFLICT:
 *           the same message again at once (the handler decides on fresher
 *           state), max_conflicts times; a statement failed:
 *           loom_consumer_fail() with the server's reason.
 *   probe   the handler refused a message: a tx that raises LM015 only if
 *           the message is already in the inbox (and writes nothing), so a
 *           processed message is acked, never failed and dead-lettered.
 *           Not recorded: failed, or rejected when the handler said
 *           LOOM_EDECODE.
 *
 * A message that can never be handled (over a limit, without an id) is
 * rejected on receipt, before any SQL, and never joins a batch.
 *
 * A lost connection (or a transient SQLSTATE: a deadlock, a serialization
 * failure) leaves the outcome unknown: the same step runs again after a
 * backoff, and the inbox marks tell what had committed. Nothing is acked
 * before its transaction committed.
 *
 * An expiry timer deletes entries older than the window in chunks,
 * between batches, repeating at once while chunks come back full.
 */
#include <stdio.h>
#include <string.h>

#include "alloc_int.h"
#include "headers.h"
#include "inbox_consumer_int.h"
#include "log_int.h"
#include "loom/alloc.h"
#include "loom/inbox.h"
#include "loom/inbox_consumer.h"
#include "loom/outbox.h"
#include "pgconn.h"
#include "pgwire.h"
#include "runtime_int.h"
#include "transport_int.h"
#include "tx_int.h"

/* Entries deleted per expiry statement: short statements, short locks. */
#define IC_EXPIRE_CHUNK 10000

#define IC_DEFAULT_WINDOW_MS (7ull * 24 * 3600 * 1000)
#define IC_DEFAULT_EXPIRE_MS 60000u
#define IC_DEFAULT_CONFLICTS 10u
#define IC_MAX_CONFLICTS     1000u
/* 100 years: past that an interval overflows soon enough to refuse. */
#define IC_MAX_WINDOW_MS 3155760000000ull

static const loom__stmt expire_stmt = {
    LOOM__STMT_INBOX_EXPIRE,
    "loom_inbox_expire",
    "SELECT loom.inbox_expire($1, $2 * interval '1 millisecond', $3)",
    3,
    {LOOM__OID_TEXT, LOOM__OID_INT8, LOOM__OID_INT4}};

/* Raises LM015 (LOOM_EALREADY) when message $2 is in $1's inbox, and
 * does nothing otherwise. */
#define IC_SQL_PROBE                                                           \
    "SELECT loom.inbox_mark(consumer, message_id) FROM loom.inbox WHERE "      \
    "consumer = $1 AND message_id = $2"

/* The inbox marks of a whole batch, one statement (schema 9): LM015 when
 * any of them is already recorded. */
#define IC_SQL_MARK_MANY "SELECT loom.inbox_mark_many($1, $2)"

/* A delivered batch, borrowed from the transport until each message is
 * acked or failed. */
typedef struct ic_batch {
    const loom_message **m;
    size_t n;
    size_t next;   /* isolating: the message in hand */
    int isolating; /* handling the messages one by one */
    struct ic_batch *after;
} ic_batch;

typedef enum ic_state {
    IC_IDLE = 0, /* nothing in flight */
    IC_BATCH,    /* a batch's transaction */
    IC_ONE,      /* one message's transaction */
    IC_PROBE,    /* after a handler failure: already processed? */
    IC_EXPIRE,   /* an expiry step */
    IC_BACKOFF,  /* waiting to retry after a lost connection */
    IC_STOPPED   /* the runtime stopped: nothing more */
} ic_state;

struct loom_inbox_consumer {
    loom_runtime *rt;
    loom_consumer *c; /* the transport's consumer */
    loom_inbox_fn fn;
    void *arg;
    loom_inbox_settled_fn settled; /* may be NULL */
    loom__inbox_begin_fn begin;    /* may be NULL (inbox_consumer_int.h) */
    loom__inbox_end_fn end;        /* may be NULL */
    void *hooks_arg;
    char *name; /* the inbox's consumer name; owned */
    uint64_t window_ms;
    unsigned expire_every_ms;
    unsigned max_conflicts;
    size_t max_payload;
    unsigned conflict_runs; /* IC_ONE: re-runs of the message in hand */
    loom__pgconn conn;
    int conn_open;
    loom_tx tx;
    ic_batch *head, *tail; /* in delivery order */
    ic_state state;
    char why[512];  /* IC_PROBE: the handler's reason */
    int why_reject; /* IC_PROBE: the handler said LOOM_EDECODE */
    /* IC_PROBE: the handler said LOOM_ECONN or LOOM_ENOMEM: its own
     * database or memory is away, which is not the message's fault. */
    int why_transient;
    int expire_due;  /* an expiry step is wanted */
    int expire_turn; /* it goes before the next batch */
    int in_next;     /* inside ic_next(): a nested call returns */
    uv_timer_t retry;
    uv_timer_t expire;
    int timers;         /* the timers are initialised */
    int handles;        /* libuv handles open (timers, the connection's poll):
                           the memory waits for their close callbacks */
    int handles_closed; /* uv_close() called on them */
    int closed;         /* loom_inbox_consumer_close() called */
    int release;        /* the last close callback frees the memory */
    int stopping;       /* the runtime asked us to stop */
    loom__component *comp;
    loom__done_fn stop_done;
    loom__backoff backoff;
    loom_inbox_consumer_stats stats;
};

static void ic_next(loom_inbox_consumer *ic);

/* ---- settling messages ---------------------------------------------- */

/* Tells the owner first: m is the transport's again once settled. */
static void
ic_ack(loom_inbox_consumer *ic, const loom_message *m,
       loom_inbox_outcome outcome)
{
    loom_err rc;

    if (ic->settled != NULL)
        ic->settled(m, outcome, ic->arg);
    rc = loom_consumer_ack(ic->c, m);

    if (rc != LOOM_OK)
        loom__log(LOOM_LOG_WARN,
                  "inbox consumer \"%s\": acknowledging a committed "
                  "message failed (%s); its redelivery is a duplicate",
                  ic->name, loom_strerror(rc));
}

/* Gives m back to the transport: failed (delivered again after a backoff,
 * dead-lettered after max_deliveries) or, when it can never be handled,
 * rejected: dead-lettered now, not retried. */
static void
ic_give_back(loom_inbox_consumer *ic, const loom_message *m, const char *why,
             int reject)
{
    const char *verb = reject ? "rejecting" : "failing";
    char id[LOOM_UUID_STRLEN];
    loom_err rc;

    loom_uuid_format(&m->id, id);
    loom__log(reject ? LOOM_LOG_WARN : LOOM_LOG_INFO,
              "inbox consumer \"%s\": message %s on %s %s: %s", ic->name, id,
              m->topic ? m->topic : "?",
              reject ? "rejected (to the dead letters)" : "failed", why);
    if (reject)
        ic->stats.rejected++;
    else
        ic->stats.failed++;
    if (ic->settled != NULL)
        ic->settled(m, reject ? LOOM_INBOX_REJECTED : LOOM_INBOX_FAILED,
                    ic->arg);
    rc = reject ? loom_consumer_reject(ic->c, m, why)
                : loom_consumer_fail(ic->c, m, why);
    if (rc != LOOM_OK)
        loom__log(LOOM_LOG_WARN,
                  "inbox consumer \"%s\": %s message %s failed (%s)", ic->name,
                  verb, id, loom_strerror(rc));
}

static void
ic_fail(loom_inbox_consumer *ic, const loom_message *m, const char *why)
{
    ic_give_back(ic, m, why, 0);
}

static void
ic_reject(loom_inbox_consumer *ic, const loom_message *m, const char *why)
{
    ic_give_back(ic, m, why, 1);
}

/* The size of m's headers as the outbox encodes (and limits) them: an
 * estimate that is never low first (tag and length prefixes of 5 bytes,
 * empty strings written), and only when that is over the limit the exact
 * encoding. */
static size_t
ic_headers_size(const loom_message *m, size_t limit)
{
    loom__buf b = LOOM__BUF_INIT;
    size_t bound = 0, n;

    for (size_t i = 0; i < m->n_headers; i++)
        bound += 18 + strlen(m->headers[i].key) + strlen(m->headers[i].value);
    if (bound <= limit)
        return bound;
    loom__headers_encode(&b, m->headers, m->n_headers);
    n = b.failed ? bound : b.len;
    loom__buf_free(&b);
    return n;
}

/* Why m can never be handled, in why; 0 when it can. */
static int
ic_over_limits(loom_inbox_consumer *ic, const loom_message *m, char *why,
               size_t whylen)
{
    size_t hs;

    if (loom_uuid_is_nil(&m->id)) {
        snprintf(why, whylen,
                 "the message has no id: it cannot be made idempotent");
        return 1;
    }
    if (m->payload_len > ic->max_payload) {
        snprintf(why, whylen,
                 "the payload of %zu bytes is over the consumer's limit of "
                 "%zu (max_payload)",
                 m->payload_len, ic->max_payload);
        return 1;
    }
    if (m->key_len > LOOM_OUTBOX_MAX_KEY) {
        snprintf(why, whylen,
                 "the key of %zu bytes is over the limit of %zu "
                 "(LOOM_OUTBOX_MAX_KEY)",
                 m->key_len, LOOM_OUTBOX_MAX_KEY);
        return 1;
    }
    hs = m->n_headers ? ic_headers_size(m, LOOM_OUTBOX_MAX_HEADERS) : 0;
    if (hs > LOOM_OUTBOX_MAX_HEADERS) {
        snprintf(why, whylen,
                 "the headers of %zu bytes encoded are over the limit of %zu "
                 "(LOOM_OUTBOX_MAX_HEADERS)",
                 hs, LOOM_OUTBOX_MAX_HEADERS);
        return 1;
    }
    return 0;
}

static void
ic_batch_free(ic_batch *b)
{
    loom_free(b->m);
    loom_free(b);
}

/* Unlinks the head batch (every message of it settled). */
static void
ic_pop(loom_inbox_consumer *ic)
{
    ic_batch *b = ic->head;

    ic->head = b->after;
    if (ic->head == NULL)
        ic->tail = NULL;
    ic_batch_free(b);
}

/* The message in hand (isolating) is settled: on to the next. */
static void
ic_advance(loom_inbox_consumer *ic)
{
    ic->conflict_runs = 0;
    if (++ic->head->next == ic->head->n)
        ic_pop(ic);
}

/* ---- sending ----------------------------------------------------------- */

static void
ic_on_retry(uv_timer_t *t)
{
    loom_inbox_consumer *ic = t->data;

    if (ic->state != IC_BACKOFF)
        return;
    ic->state = IC_IDLE;
    ic_next(ic);
}

/* The outcome is unknown or the server is busy: the same step again
 * after a backoff. */
static void
ic_backoff(loom_inbox_consumer *ic, const char *why)
{
    uint64_t ms = loom__backoff_next(&ic->backoff);

    loom__log(LOOM_LOG_WARN, "inbox consumer \"%s\": %s; retrying in %llu ms",
              ic->name, why, (unsigned long long) ms);
    ic->state = IC_BACKOFF;
    uv_timer_start(&ic->retry, ic_on_retry, ms, 0);
}

/* Whether a failed transaction may have committed, or failed for reasons
 * that are not the messages' (so they must not be failed for them). */
static int
ic_retryable(loom_inbox_consumer *ic, loom_err rc)
{
    return rc == LOOM_ECONN || rc == LOOM_ENOMEM ||
           loom__sqlstate_transient(loom_store_sqlstate(ic->conn.store));
}

static void ic_tx_done(void *arg, loom_err rc, PGresult *r);

/* Sends ic->tx; the state says what it is. */
static void
ic_send(loom_inbox_consumer *ic, ic_state st)
{
    loom_err rc = loom__pgconn_tx(&ic->conn, &ic->tx, ic_tx_done, ic);

    if (rc == LOOM_OK) {
        ic->state = st;
        return;
    }
    ic_backoff(ic, loom__pgconn_errmsg(&ic->conn));
}

/* ---- the batch ----------------------------------------------------------- */

/* Queues the marks of every message of b as one statement; 0, or -1
 * with ic->why set (a message without an id cannot be made idempotent:
 * isolated, it fails alone). */
static int
ic_mark_batch(loom_inbox_consumer *ic, ic_batch *b)
{
    static const uint32_t types[2] = {LOOM__OID_TEXT, LOOM__OID_AUUID};
    loom__buf ids = LOOM__BUF_INIT;
    const char *values[2];
    int lengths[2];
    loom_err rc;

    for (size_t i = 0; i < b->n; i++) {
        if (loom_uuid_is_nil(&b->m[i]->id)) {
            snprintf(ic->why, sizeof ic->why,
                     "message %zu of the batch has no id", i);
            return -1;
        }
    }
    loom__pg_array_begin(&ids, LOOM__OID_UUID, (uint32_t) b->n);
    for (size_t i = 0; i < b->n; i++)
        loom__pg_array_add(&ids, b->m[i]->id.bytes, 16);
    if (ids.failed) {
        loom__buf_free(&ids);
        snprintf(ic->why, sizeof ic->why, "out of memory");
        return -1;
    }
    values[0] = ic->name;
    lengths[0] = (int) strlen(ic->name);
    values[1] = ids.data;
    lengths[1] = (int) ids.len;
    rc = loom_tx_exec_binary(&ic->tx, IC_SQL_MARK_MANY, 2, types, values,
                             lengths);
    loom__buf_free(&ids);
    if (rc != LOOM_OK) {
        snprintf(ic->why, sizeof ic->why, "%s", loom_tx_errmsg(&ic->tx));
        return -1;
    }
    return 0;
}

/* Runs the end hook, if any, after a transaction's last handler. */
static loom_err
ic_end(loom_inbox_consumer *ic)
{
    loom_err rc;

    if (ic->end == NULL)
        return LOOM_OK;
    ic->why[0] = '\0';
    rc = ic->end(&ic->tx, ic->why, sizeof ic->why, ic->hooks_arg);
    ic->why[sizeof ic->why - 1] = '\0';
    if (rc != LOOM_OK && ic->why[0] == '\0')
        snprintf(ic->why, sizeof ic->why, "the handler failed: %s",
                 loom_strerror(rc));
    return rc;
}

/* Queues the batch's marks, then every message's handler; 0 when all
 * went in. */
static int
ic_build_batch(loom_inbox_consumer *ic, ic_batch *b)
{
    loom_err rc;

    loom__tx_reset(&ic->tx);
    if (ic->begin != NULL)
        ic->begin(ic->hooks_arg);
    if (ic_mark_batch(ic, b) != 0)
        return -1;
    for (size_t i = 0; i < b->n; i++) {
        ic->why[0] = '\0';
        rc = ic->fn(b->m[i], &ic->tx, ic->why, sizeof ic->why, ic->arg);
        if (rc != LOOM_OK) {
            ic->why[sizeof ic->why - 1] = '\0';
            if (ic->why[0] == '\0')
                snprintf(ic->why, sizeof ic->why, "the handler failed: %s",
                         loom_strerror(rc));
            return -1;
        }
    }
    return ic_end(ic) == LOOM_OK ? 0 : -1;
}

static void
ic_isolate(loom_inbox_consumer *ic, const char *why)
{
    loom__log(LOOM_LOG_INFO,
              "inbox consumer \"%s\": a batch of %zu failed (%s); handling "
              "its messages one by one",
              ic->name, ic->head->n, why);
    ic->head->isolating = 1;
    ic->head->next = 0;
}

static void
ic_batch_done(loom_inbox_consumer *ic, loom_err rc)
{
    ic_batch *b = ic->head;

    if (rc == LOOM_OK) {
        /* Unlinked first: an ack may bring the next delivery. */
        ic->head = b->after;
        if (ic->head == NULL)
            ic->tail = NULL;
        ic->stats.handled += b->n;
        loom__backoff_reset(&ic->backoff);
        for (size_t i = 0; i < b->n; i++)
            ic_ack(ic, b->m[i], LOOM_INBOX_COMMITTED);
        ic_batch_free(b);
        ic->state = IC_IDLE;
    } else if (ic_retryable(ic, rc)) {
        ic_backoff(ic, loom__pgconn_errmsg(&ic->conn));
    } else {
        /* A conflict too: alone, each message meets fresh state. */
        if (rc == LOOM_ECONFLICT)
            ic->stats.conflicts++;
        ic_isolate(ic, loom__pgconn_errmsg(&ic->conn));
        ic->state = IC_IDLE;
    }
}

/* ---- one message --------------------------------------------------------- */

/* Runs the message in hand alone; returns 1 when it was settled at once
 * (ic_next() goes on), 0 when a request or a backoff is under way. */
static int
ic_run_one(loom_inbox_consumer *ic)
{
    const loom_message *m = ic->head->m[ic->head->next];
    loom_err rc;

    loom__tx_reset(&ic->tx);
    rc = loom_inbox_mark(&ic->tx, ic->name, &m->id);
    if (rc == LOOM_ENOMEM) {
        ic_backoff(ic, "out of memory");
        return 0;
    }
    if (rc != LOOM_OK) { /* no id: it cannot be made idempotent */
        ic_reject(ic, m, loom_tx_errmsg(&ic->tx));
        ic_advance(ic);
        return 1;
    }
    if (ic->begin != NULL)
        ic->begin(ic->hooks_arg);
    ic->why[0] = '\0';
    rc = ic->fn(m, &ic->tx, ic->why, sizeof ic->why, ic->arg);
    if (rc == LOOM_OK)
        rc = ic_end(ic);
    if (rc == LOOM_OK) {
        ic_send(ic, IC_ONE);
        return 0;
    }
    ic->why_reject = rc == LOOM_EDECODE;
    ic->why_transient = rc == LOOM_ECONN || rc == LOOM_ENOMEM;
    ic->why[sizeof ic->why - 1] = '\0';
    if (ic->why[0] == '\0')
        snprintf(ic->why, sizeof ic->why, "the handler failed: %s",
                 loom_tx_errmsg(&ic->tx)[0] ? loom_tx_errmsg(&ic->tx)
                                            : loom_strerror(rc));
    /* Already processed? Then the refusal does not matter. */
    loom__tx_reset(&ic->tx);
    {
        static const uint32_t types[2] = {LOOM__OID_TEXT, LOOM__OID_UUID};
        const char *values[2] = {ic->name, (const char *) m->id.bytes};
        int lengths[2] = {(int) strlen(ic->name), 16};
        if (loom_tx_exec_binary(&ic->tx, IC_SQL_PROBE, 2, types, values,
                                lengths) != LOOM_OK) {
            ic_backoff(ic, "out of memory");
            return 0;
        }
    }
    ic_send(ic, IC_PROBE);
    return 0;
}

static void
ic_one_done(loom_inbox_consumer *ic, loom_err rc)
{
    const loom_message *m = ic->head->m[ic->head->next];

    if (rc != LOOM_OK && rc != LOOM_EALREADY && ic_retryable(ic, rc)) {
        ic_backoff(ic, loom__pgconn_errmsg(&ic->conn));
        return;
    }
    loom__backoff_reset(&ic->backoff);
    if (rc == LOOM_ECONFLICT && ic->conflict_runs < ic->max_conflicts) {
        /* Another transaction moved a stream first: it has committed, so
         * the handler decides again on what it left, at once, without
         * failing the message back (which would count as a delivery). */
        ic->conflict_runs++;
        ic->stats.conflicts++;
        loom__log(LOOM_LOG_DEBUG,
                  "inbox consumer \"%s\": version conflict (%s); handling "
                  "the message again (%u of %u)",
                  ic->name, loom__pgconn_errmsg(&ic->conn), ic->conflict_runs,
                  ic->max_conflicts);
        ic->state = IC_IDLE;
        return;
    }
    if (rc == LOOM_OK) {
        ic->stats.handled++;
        ic_ack(ic, m, LOOM_INBOX_COMMITTED);
    } else if (rc == LOOM_EALREADY) {
        ic->stats.duplicates++;
        ic_ack(ic, m, LOOM_INBOX_DUPLICATE);
    } else if (rc == LOOM_ECONFLICT) {
        char why[1024];
        snprintf(why, sizeof why,
                 "%s (SQLSTATE %s), still after %u re-runs on fresh state",
                 loom__pgconn_errmsg(&ic->conn),
                 loom_store_sqlstate(ic->conn.store), ic->conflict_runs);
        ic_fail(ic, m, why);
    } else {
        const char *state = loom_store_sqlstate(ic->conn.store);
        char why[1024];
        snprintf(why, sizeof why, "%s%s%s%s", loom__pgconn_errmsg(&ic->conn),
                 state[0] ? " (SQLSTATE " : "", state, state[0] ? ")" : "");
        ic_fail(ic, m, why);
    }
    ic_advance(ic);
    ic->state = IC_IDLE;
}

static void
ic_probe_done(loom_inbox_consumer *ic, loom_err rc)
{
    const loom_message *m = ic->head->m[ic->head->next];

    if (rc != LOOM_OK && rc != LOOM_EALREADY && ic_retryable(ic, rc)) {
        ic_backoff(ic, loom__pgconn_errmsg(&ic->conn));
        return;
    }
    loom__backoff_reset(&ic->backoff);
    if (rc == LOOM_EALREADY) {
        ic->stats.duplicates++;
        ic_ack(ic, m, LOOM_INBOX_DUPLICATE);
    } else if (ic->why_transient) {
        /* Failing it back would count a delivery towards its dead letter
         * for an outage of the handler's own: the same message again
         * after a backoff instead. */
        ic_backoff(ic, ic->why);
        return;
    } else if (ic->why_reject) {
        ic_reject(ic, m, ic->why);
    } else {
        ic_fail(ic, m, ic->why);
    }
    ic_advance(ic);
    ic->state = IC_IDLE;
}

static void
ic_tx_done(void *arg, loom_err rc, PGresult *r)
{
    loom_inbox_consumer *ic = arg;

    PQclear(r);
    /* The state stays set while settling: a delivery that an ack brings
     * is queued, not started, until this one is done. */
    switch (ic->state) {
    case IC_BATCH:
        ic_batch_done(ic, rc);
        break;
    case IC_ONE:
        ic_one_done(ic, rc);
        break;
    case IC_PROBE:
        ic_probe_done(ic, rc);
        break;
    default:
        ic->state = IC_IDLE;
        break;
    }
    ic_next(ic);
}

/* ---- expiry -------------------------------------------------------------- */

static void
ic_expired(void *arg, loom_err rc, PGresult *r)
{
    loom_inbox_consumer *ic = arg;
    int64_t n = 0;

    if (rc == LOOM_OK && PQntuples(r) == 1)
        loom__pg_get_i64(r, 0, 0, &n);
    else if (rc != LOOM_OK)
        loom__log(LOOM_LOG_WARN, "inbox consumer \"%s\": expiry failed: %s",
                  ic->name, loom__pgconn_errmsg(&ic->conn));
    PQclear(r);
    ic->stats.expired += (uint64_t) n;
    /* A full chunk: there may be more, right after the next batch. */
    ic->expire_due = rc == LOOM_OK && n >= IC_EXPIRE_CHUNK;
    ic->expire_turn = 0;
    ic->state = IC_IDLE;
    ic_next(ic);
}

static void
ic_expire_send(loom_inbox_consumer *ic)
{
    char window[8], limit[4] = {0, 0, 0, 0};
    const char *values[3] = {ic->name, window, limit};
    int lengths[3] = {(int) strlen(ic->name), 8, 4};
    loom_err rc;

    loom__pg_put_be64(window, ic->window_ms);
    limit[1] = (char) ((IC_EXPIRE_CHUNK >> 16) & 0xff);
    limit[2] = (char) ((IC_EXPIRE_CHUNK >> 8) & 0xff);
    limit[3] = (char) (IC_EXPIRE_CHUNK & 0xff);
    rc = loom__pgconn_query(&ic->conn, &expire_stmt, values, lengths,
                            ic_expired, ic);
    if (rc == LOOM_OK) {
        ic->state = IC_EXPIRE;
        return;
    }
    /* Tried again at the next period. */
    ic->expire_due = 0;
    loom__log(LOOM_LOG_WARN, "inbox consumer \"%s\": expiry failed: %s",
              ic->name, loom__pgconn_errmsg(&ic->conn));
}

static void
ic_on_expire(uv_timer_t *t)
{
    loom_inbox_consumer *ic = t->data;

    ic->expire_due = 1;
    ic_next(ic);
}

/* ---- the driver ---------------------------------------------------------- */

static void ic_stop_finish(loom_inbox_consumer *ic);

/* Starts what comes next; returns 1 when it settled something at once
 * (look again), 0 when a request is in flight or nothing is to do. */
static int
ic_step(loom_inbox_consumer *ic)
{
    ic_batch *b = ic->head;

    if (ic->stopping) {
        ic_stop_finish(ic);
        return 0;
    }
    if (ic->expire_due && (b == NULL || ic->expire_turn)) {
        ic_expire_send(ic);
        return ic->state == IC_IDLE;
    }
    if (b == NULL)
        return 0;
    ic->expire_turn = 1;
    if (b->n == 1)
        b->isolating = 1; /* a batch of one is one */
    if (b->isolating)
        return ic_run_one(ic);
    if (ic_build_batch(ic, b) != 0) {
        ic_isolate(ic, ic->why);
        return 1;
    }
    ic_send(ic, IC_BATCH);
    return 0;
}

static void
ic_next(loom_inbox_consumer *ic)
{
    /* A nested call (an ack or a fail that delivered at once) returns:
     * the loop below sees what it queued. */
    if (ic->in_next)
        return;
    ic->in_next = 1;
    while (ic->state == IC_IDLE && !ic->closed && ic_step(ic))
        ;
    ic->in_next = 0;
}

/* The transport's handler: rejects what can never be handled and queues
 * the rest as a batch, in delivery order. */
static void
ic_on_deliver(loom_consumer *c, const loom_message *const *msgs, size_t n,
              void *arg)
{
    loom_inbox_consumer *ic = arg;
    ic_batch *b = loom_malloc(sizeof *b);
    char why[256];
    size_t k = 0;

    (void) c;
    if (b != NULL) {
        memset(b, 0, sizeof *b);
        b->m = loom_malloc(n * sizeof *b->m);
    }
    if (b == NULL || b->m == NULL) {
        /* Back to the transport, which delivers them again. */
        loom_free(b);
        for (size_t i = 0; i < n; i++) {
            if (ic->settled != NULL)
                ic->settled(msgs[i], LOOM_INBOX_FAILED, ic->arg);
            loom_consumer_fail(ic->c, msgs[i], "inbox consumer: out of memory");
        }
        return;
    }
    for (size_t i = 0; i < n; i++)
        if (!ic_over_limits(ic, msgs[i], why, sizeof why))
            b->m[k++] = msgs[i];
    b->n = k;
    if (k == 0) {
        ic_batch_free(b);
        b = NULL;
    } else if (ic->tail != NULL) {
        ic->tail->after = b;
    } else {
        ic->head = b;
    }
    if (b != NULL)
        ic->tail = b;
    /* Rejected after the rest is queued: a delivery the transport makes
     * while settling them (none does today) then comes after this one. */
    if (k < n)
        for (size_t i = 0; i < n; i++)
            if (ic_over_limits(ic, msgs[i], why, sizeof why))
                ic_reject(ic, msgs[i], why);
    ic_next(ic);
}

/* ---- life cycle ---------------------------------------------------------- */

static void
ic_free(loom_inbox_consumer *ic)
{
    while (ic->head != NULL)
        ic_pop(ic);
    loom__tx_free(&ic->tx);
    loom_free(ic->name);
    loom_free(ic);
}

static void
ic_released(void *owner)
{
    loom_inbox_consumer *ic = owner;

    if (--ic->handles == 0 && ic->release)
        ic_free(ic);
}

static void
ic_opened(void *owner)
{
    loom_inbox_consumer *ic = owner;

    ic->handles++;
}

static void
ic_handle_closed(uv_handle_t *h)
{
    ic_released(h->data);
}

/* Closes the timers and the connection (a request in flight is abandoned:
 * its callback never comes). Idempotent. */
static void
ic_close_handles(loom_inbox_consumer *ic)
{
    if (ic->conn_open) {
        loom__pgconn_close(&ic->conn);
        ic->conn_open = 0;
    }
    if (!ic->timers || ic->handles_closed)
        return;
    ic->handles_closed = 1;
    uv_timer_stop(&ic->retry);
    uv_timer_stop(&ic->expire);
    uv_close((uv_handle_t *) &ic->retry, ic_handle_closed);
    uv_close((uv_handle_t *) &ic->expire, ic_handle_closed);
}

/* Stopping, with nothing in flight: done. What was not committed is
 * delivered again after a restart. */
static void
ic_stop_finish(loom_inbox_consumer *ic)
{
    loom__done_fn done = ic->stop_done;

    ic->state = IC_STOPPED;
    ic_close_handles(ic);
    ic->stop_done = NULL;
    if (done != NULL)
        done(ic->comp);
}

/* The runtime is stopping: finish the transaction in flight (and settle
 * its messages), then stop. */
static void
ic_stop(void *arg, loom__component *comp, loom__done_fn done)
{
    loom_inbox_consumer *ic = arg;

    (void) comp;
    ic->stopping = 1;
    ic->stop_done = done;
    uv_timer_stop(&ic->expire);
    if (ic->state == IC_BACKOFF) {
        uv_timer_stop(&ic->retry);
        ic->state = IC_IDLE;
    }
    ic_next(ic);
}

/* Tears down a consumer (open's failure path and close). */
static void
ic_destroy(loom_inbox_consumer *ic)
{
    ic->closed = 1;
    if (ic->c != NULL) {
        loom_consumer_close(ic->c);
        ic->c = NULL;
    }
    ic_close_handles(ic);
    ic->stop_done = NULL;
    loom__runtime_remove_component(ic->comp);
    ic->comp = NULL;
    /* Outside the loop's run, close callbacks only run when it turns. */
    if (!ic->rt->running)
        for (int i = 0; i < 1000 && ic->handles > 0; i++)
            uv_run(loom_runtime_loop(ic->rt), UV_RUN_NOWAIT);
    if (ic->handles == 0)
        ic_free(ic);
    else
        ic->release = 1; /* the last close callback frees it */
}

static loom_err
ic_err(char *err, size_t errlen, loom_err rc, const char *msg)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s", msg);
    return rc;
}

/* Resolves the inbox options into ic; LOOM_EINVAL with err set. */
static loom_err
ic_config(loom_inbox_consumer *ic, const loom_consumer_config *cfg,
          const loom_inbox_consumer_config *icfg, char *err, size_t errlen)
{
    const char *name = icfg->consumer ? icfg->consumer : cfg->group;
    size_t len;

    if (name == NULL || name[0] == '\0')
        return ic_err(err, errlen, LOOM_EINVAL,
                      icfg->consumer != NULL
                          ? "inbox consumer: the consumer name is empty "
                            "(NULL takes the group's name)"
                          : "inbox consumer: no consumer name and no group");
    len = strnlen(name, LOOM_INBOX_MAX_CONSUMER + 1);
    if (len > LOOM_INBOX_MAX_CONSUMER || !loom__utf8_valid(name, len))
        return ic_err(err, errlen, LOOM_EINVAL,
                      "inbox consumer: the consumer name is not 1 to 255 "
                      "bytes of UTF-8 (LOOM_INBOX_MAX_CONSUMER)");
    if (icfg->window_ms > IC_MAX_WINDOW_MS)
        return ic_err(err, errlen, LOOM_EINVAL,
                      "inbox consumer: window_ms is over 100 years");
    if (icfg->max_conflicts > IC_MAX_CONFLICTS)
        return ic_err(err, errlen, LOOM_EINVAL,
                      "inbox consumer: max_conflicts is over 1000");
    ic->name = loom__strdup(name);
    if (ic->name == NULL)
        return ic_err(err, errlen, LOOM_ENOMEM, "out of memory");
    ic->window_ms = icfg->window_ms ? icfg->window_ms : IC_DEFAULT_WINDOW_MS;
    ic->expire_every_ms =
        icfg->expire_every_ms ? icfg->expire_every_ms : IC_DEFAULT_EXPIRE_MS;
    ic->max_conflicts =
        icfg->max_conflicts ? icfg->max_conflicts : IC_DEFAULT_CONFLICTS;
    ic->settled = icfg->settled;
    ic->max_payload =
        icfg->max_payload ? icfg->max_payload : LOOM_OUTBOX_MAX_PAYLOAD;
    return LOOM_OK;
}

/* Opens the connection, registers the component, starts the timers. */
static loom_err
ic_start(loom_inbox_consumer *ic, const loom_inbox_consumer_config *icfg,
         char *err, size_t errlen)
{
    loom__pgconn_config pc = {0};
    uv_loop_t *loop = loom_runtime_loop(ic->rt);
    loom_err rc;

    pc.rt = ic->rt;
    pc.conninfo = icfg->conninfo;
    pc.application_name = "eventloom inbox";
    pc.what = "inbox";
    pc.opened = ic_opened;
    pc.released = ic_released;
    pc.owner = ic;
    rc = loom__pgconn_open(&ic->conn, &pc, err, errlen);
    if (rc != LOOM_OK)
        return rc;
    ic->conn_open = 1;
    rc = loom__runtime_add_component(ic->rt, ic_stop, ic, &ic->comp);
    if (rc != LOOM_OK)
        return ic_err(err, errlen, rc,
                      "inbox consumer: the runtime is "
                      "stopping");
    uv_timer_init(loop, &ic->retry);
    uv_timer_init(loop, &ic->expire);
    ic->retry.data = ic->expire.data = ic;
    ic->timers = 1;
    ic->handles += 2;
    /* The first look soon after starting: a service restarted more
     * often than the period would otherwise never expire anything. */
    uv_timer_start(&ic->expire, ic_on_expire,
                   ic->expire_every_ms < 1000 ? ic->expire_every_ms : 1000,
                   ic->expire_every_ms);
    uv_unref((uv_handle_t *) &ic->expire);
    return LOOM_OK;
}

loom_err
loom_inbox_consumer_open(loom_transport *t, const loom_consumer_config *cfg,
                         const loom_inbox_consumer_config *icfg,
                         loom_inbox_fn fn, void *arg, loom_inbox_consumer **out,
                         char *err, size_t errlen)
{
    static const loom_inbox_consumer_config defaults =
        LOOM_INBOX_CONSUMER_CONFIG_INIT;
    loom_inbox_consumer *ic;
    loom_err rc;

    ic_err(err, errlen, LOOM_OK, "");
    if (out != NULL)
        *out = NULL;
    if (t == NULL || cfg == NULL || fn == NULL || out == NULL ||
        loom__transport_runtime(t) == NULL)
        return ic_err(err, errlen, LOOM_EINVAL,
                      "inbox consumer: a transport, a consumer config, a "
                      "handler and a result pointer are required");
    ic = loom_malloc(sizeof *ic);
    if (ic == NULL)
        return ic_err(err, errlen, LOOM_ENOMEM, "out of memory");
    memset(ic, 0, sizeof *ic);
    ic->rt = loom__transport_runtime(t);
    ic->fn = fn;
    ic->arg = arg;
    loom__tx_init(&ic->tx);
    loom__backoff_init(&ic->backoff, 100, 10000);
    if (icfg == NULL)
        icfg = &defaults;
    rc = ic_config(ic, cfg, icfg, err, errlen);
    if (rc == LOOM_OK)
        rc = ic_start(ic, icfg, err, errlen);
    if (rc == LOOM_OK) {
        rc = loom_consumer_open(t, cfg, ic_on_deliver, ic, &ic->c);
        if (rc != LOOM_OK && err != NULL && errlen > 0)
            snprintf(err, errlen,
                     "inbox consumer \"%s\": the transport refused the "
                     "consumer: %s",
                     ic->name, loom_strerror(rc));
    }
    if (rc != LOOM_OK) {
        ic->c = NULL;
        ic_destroy(ic);
        return rc;
    }
    *out = ic;
    return LOOM_OK;
}

void
loom_inbox_consumer_close(loom_inbox_consumer *ic)
{
    if (ic != NULL)
        ic_destroy(ic);
}

loom_err
loom_inbox_consumer_stats_get(const loom_inbox_consumer *ic,
                              loom_inbox_consumer_stats *out)
{
    if (ic == NULL || out == NULL)
        return LOOM_EINVAL;
    *out = ic->stats;
    return LOOM_OK;
}

void
loom__inbox_consumer_hooks(loom_inbox_consumer *ic, loom__inbox_begin_fn begin,
                           loom__inbox_end_fn end, void *arg)
{
    ic->begin = begin;
    ic->end = end;
    ic->hooks_arg = arg;
}
