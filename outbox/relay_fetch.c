/*
 * The outbox relay's reads (relay.c draws the whole state machine): a
 * page of the outbox after the cursor; when there is none, whether
 * messages are held back by an older transaction, then the wake-up.
 *
 * In the database: when the transport is the built-in topics of the
 * outbox's own database, one statement (loom.outbox_publish_local, schema
 * 13) does fetch, publish and advance inside the server, in one
 * transaction, so each batch costs one round trip and never leaves the
 * server. A batch that statement declines (a message only the transport's
 * path handles: an unknown topic, one too big) or that fails goes through
 * the transport (relay_publish.c), and the next one is tried in the
 * database again.
 */
#include <string.h>

#include "log_int.h"
#include "loom/alloc.h"
#include "pgwire.h"
#include "relay_int.h"
#include "transports/topics/topics_local.h"

#define RELAY_LINGER_MS 5 /* a second look before arming; batching */
/* In-database publishes failing in a row before the relay keeps to the
 * transport (a deadlock now and then is no reason to). */
#define RELAY_LOCAL_TRIES 5
/* Looking again while committed messages wait behind an older
 * transaction: from 1 ms, doubling, up to this. */
#define RELAY_HELD_MAX_MS 64

static void relay_check_pending(loom_relay *r);
static void relay_publish_local(loom_relay *r, const char *sync);

static const loom__stmt fetch_stmt = {
    LOOM__STMT_OUTBOX_FETCH,
    "loom_outbox_fetch",
    "SELECT tx, position, topic, key, type, headers, payload, message_id, "
    "deliver_at, created_at FROM loom.outbox_fetch($1, $2, $3, $4)",
    4,
    {LOOM__OID_TEXT, LOOM__OID_XID8, LOOM__OID_INT8, LOOM__OID_INT4}};

/* Arms the outbox's wake-up and waits for the writers in flight (schema
 * 8): the read after it finds their messages, and a writer that comes
 * meanwhile finds the relay armed. */
static const loom__stmt arm_stmt = {LOOM__STMT_OUTBOX_ARM,
                                    "loom_outbox_arm",
                                    "SELECT loom.outbox_arm($1)",
                                    1,
                                    {LOOM__OID_TEXT}};

/* After an empty fetch: are committed messages held back by an older
 * transaction still running (schema 9)? */
static const loom__stmt pending_stmt = {
    LOOM__STMT_OUTBOX_PENDING,
    "loom_outbox_pending",
    "SELECT loom.outbox_pending($1, $2, $3)",
    3,
    {LOOM__OID_TEXT, LOOM__OID_XID8, LOOM__OID_INT8}};

/* Fetch, publish to this database's topics and advance, in one
 * transaction (schema 13). */
static const loom__stmt local_stmt = {
    LOOM__STMT_OUTBOX_PUBLISH_LOCAL,
    "loom_outbox_publish_local",
    "SELECT published, tx, position FROM loom.outbox_publish_local($1, $2, "
    "$3, $4, $5, $6, $7)",
    7,
    {LOOM__OID_TEXT, LOOM__OID_XID8, LOOM__OID_INT8, LOOM__OID_INT4,
     LOOM__OID_INT4, LOOM__OID_TEXT, 701 /* float8 */}};

/* ---- fetching ---------------------------------------------------------- */

static void
relay_on_arm(void *arg, loom_err rc, PGresult *res)
{
    loom_relay *r = arg;

    r->fetching = 0;
    PQclear(res);
    if (rc == LOOM_ECONN) {
        loom__relay_lost(r, "the connection to PostgreSQL broke");
        return;
    }
    r->armed = rc == LOOM_OK;
    if (r->stopping) {
        loom__relay_finish_stop(r);
        return;
    }
    if (r->armed)
        loom__relay_fetch(r); /* once more: a message may have come before */
    else
        loom__relay_wait_for(r, WAIT_SLEEP, r->poll_ms);
}

/* Caught up, and nothing is held back: linger once, then arm the
 * wake-up, or sleep until the poll. */
static void
relay_caught_up(loom_relay *r)
{
    const char *values[1] = {r->outbox};
    int lengths[1] = {(int) strlen(r->outbox)};

    r->held_ms = 0;
    if (r->woken) {
        loom__relay_fetch(r); /* see relay_on_wake() */
        return;
    }
    if (r->armed || r->listener == NULL) {
        loom__relay_wait_for(r, WAIT_SLEEP, r->poll_ms);
        return;
    }
    if (!r->lingered) {
        /* Just caught up: look again shortly before arming. Writers
         * that keep coming are then found by this poll, and none of
         * their commits pays for a NOTIFY (schema 2 says what that
         * costs them). */
        r->lingered = 1;
        loom__relay_wait_for(r, WAIT_SLEEP, RELAY_LINGER_MS);
        return;
    }
    r->fetching = 1;
    if (loom__pgconn_query(&r->conn, &arm_stmt, values, lengths, relay_on_arm,
                           r) != LOOM_OK) {
        r->fetching = 0;
        loom__relay_wait_for(r, WAIT_SLEEP, r->poll_ms);
    }
}

static void
relay_on_pending(void *arg, loom_err rc, PGresult *res)
{
    loom_relay *r = arg;
    int held = rc == LOOM_OK && PQntuples(res) == 1 &&
               PQgetlength(res, 0, 0) == 1 && PQgetvalue(res, 0, 0)[0] != 0;

    r->fetching = 0;
    PQclear(res);
    if (rc == LOOM_ECONN) {
        loom__relay_lost(r, "the connection to PostgreSQL broke");
        return;
    }
    if (r->stopping) {
        loom__relay_finish_stop(r);
        return;
    }
    if (!held) {
        relay_caught_up(r);
        return;
    }
    /* Their writers have committed (and woken nobody, or woke us too
     * early): the transaction in the way ends soon, mostly, and may never
     * touch the outbox to wake us. */
    r->held_ms = r->held_ms == 0 ? 1 : r->held_ms * 2;
    if (r->held_ms > RELAY_HELD_MAX_MS)
        r->held_ms = RELAY_HELD_MAX_MS;
    r->stats.held_back++;
    loom__relay_wait_for(r, WAIT_SLEEP, r->held_ms);
}

/* An empty fetch: ask whether messages are held back before sleeping. */
static void
relay_check_pending(loom_relay *r)
{
    char xid[8], pos[8];
    const char *values[3] = {r->outbox, xid, pos};
    int lengths[3] = {(int) strlen(r->outbox), 8, 8};

    loom__pg_put_be64(xid, r->cur_tx);
    loom__pg_put_be64(pos, (uint64_t) r->cur_pos);
    r->fetching = 1;
    if (loom__pgconn_query(&r->conn, &pending_stmt, values, lengths,
                           relay_on_pending, r) != LOOM_OK) {
        r->fetching = 0;
        relay_caught_up(r);
    }
}

static void
relay_on_fetch(void *arg, loom_err rc, PGresult *res)
{
    loom_relay *r = arg;

    r->fetching = 0;
    r->via_transport = 0; /* the batch after this one: in the database */
    if (rc != LOOM_OK) {
        PQclear(res);
        if (rc == LOOM_ECONN) {
            loom__relay_lost(r, "the connection to PostgreSQL broke");
            return;
        }
        loom__relay_set_error(r, "reading the outbox failed",
                              loom__pgconn_errmsg(&r->conn));
        if (r->stopping) {
            loom__relay_finish_stop(r);
            return;
        }
        loom__relay_backoff(r);
        return;
    }
    if (PQntuples(res) == 0) {
        PQclear(res);
        if (r->stopping) {
            loom__relay_finish_stop(r);
            return;
        }
        relay_check_pending(r);
        return;
    }
    r->held_ms = 0;
    r->armed = 0;
    r->lingered = 0;
    if (loom__relay_take_rows(r, res) != LOOM_OK) {
        loom__relay_backoff(r);
        return;
    }
    r->single_mode = r->n_dead > 0;
    loom__relay_publish(r);
}

/* A read (or a publish inside the database) could not even be sent: the
 * connection is gone, or it goes again after a backoff. */
static void
relay_unsent(loom_relay *r)
{
    r->fetching = 0;
    if (PQstatus(r->conn.store->conn) != CONNECTION_OK ||
        r->conn.reconnecting) {
        loom__relay_lost(r, "the connection to PostgreSQL broke");
        return;
    }
    loom__relay_backoff(r);
}

/* A publish went out: a failing streak, if any, is over. */
void
loom__relay_recovered(loom_relay *r)
{
    loom__backoff_reset(&r->backoff);
    if (r->error != NULL) {
        loom__log(LOOM_LOG_INFO, "relay %s: publishing again", r->outbox);
        loom_free(r->error);
        r->error = NULL;
    }
}

/* The cursor moved past a batch of n: read on at once after a full one,
 * else let the writers' next messages gather for RELAY_LINGER_MS instead
 * of chasing them a few at a time (fewer, fuller publishes, for a few ms
 * of lag). */
void
loom__relay_moved(loom_relay *r, uint64_t tx, int64_t pos, size_t n)
{
    r->cur_tx = tx;
    r->cur_pos = pos;
    r->last_beat_ms = loom__relay_now(r); /* the advance is a heartbeat */
    if (n >= r->batch || r->stopping) {
        loom__relay_fetch(r);
        return;
    }
    loom__relay_wait_for(r, WAIT_SLEEP, RELAY_LINGER_MS);
}

/* ---- publishing inside the database ------------------------------------- */

/* Published in the database: the cursor moved with it. */
static void
relay_local_done(loom_relay *r, int32_t n, uint64_t tx, int64_t pos)
{
    r->held_ms = 0;
    r->armed = 0;
    r->lingered = 0;
    r->stats.published += (uint64_t) n;
    r->stats.in_database += (uint64_t) n;
    r->stats.batches++;
    r->stats.batches_in_database++;
    loom__relay_recovered(r);
    loom__relay_moved(r, tx, pos, (size_t) n);
}

static void
relay_on_local(void *arg, loom_err rc, PGresult *res)
{
    loom_relay *r = arg;
    int32_t n = 0;
    uint64_t tx = 0;
    int64_t pos = 0;

    r->fetching = 0;
    if (rc == LOOM_OK &&
        (PQntuples(res) != 1 || !loom__pg_get_i32(res, 0, 0, &n) ||
         !loom__pg_get_u64(res, 0, 1, &tx) ||
         !loom__pg_get_i64(res, 0, 2, &pos)))
        rc = LOOM_EDB;
    PQclear(res);
    if (rc == LOOM_ECONN) {
        loom__relay_lost(r, "the connection to PostgreSQL broke");
        return;
    }
    if (rc != LOOM_OK &&
        strcmp(loom_store_sqlstate(r->conn.store), "LM016") == 0) {
        loom__relay_lost(r, "another relay moved the cursor");
        return;
    }
    if (rc != LOOM_OK || n < 0) {
        /* Declined (a message only the transport's path handles) or
         * failed (say, a deadlock with another publisher): nothing was
         * published, and this batch goes through the transport, which
         * retries, refuses and dead-letters message by message. */
        if (rc != LOOM_OK && ++r->local_failures >= RELAY_LOCAL_TRIES) {
            /* Not a passing conflict: stop paying for a statement that
             * fails (a permission, a damaged schema), and say why. */
            loom__log(LOOM_LOG_WARN,
                      "relay %s: publishing inside the database failed %u "
                      "times in a row (%s); publishing through the "
                      "transport from now on",
                      r->outbox, r->local_failures,
                      loom__pgconn_errmsg(&r->conn));
            r->local = 0;
        } else if (rc != LOOM_OK) {
            loom__log(LOOM_LOG_DEBUG,
                      "relay %s: publishing in the database failed (%s); "
                      "this batch goes through the transport",
                      r->outbox, loom__pgconn_errmsg(&r->conn));
        }
        r->via_transport = 1;
        loom__relay_fetch(r);
        return;
    }
    if (r->stopping && n == 0) {
        loom__relay_finish_stop(r);
        return;
    }
    r->local_failures = 0;
    if (n == 0) {
        relay_check_pending(r);
        return;
    }
    relay_local_done(r, n, tx, pos);
}

static void
relay_publish_local(loom_relay *r, const char *sync)
{
    char xid[8], pos[8], limit[4], sticky[4], rate[8];
    const char *values[7] = {r->outbox, xid, pos, limit, sticky, sync, rate};
    int lengths[7] = {(int) strlen(r->outbox), 8, 8, 4, 4,
                      (int) strlen(sync),      8};
    uint64_t bits;

    loom__pg_put_be64(xid, r->cur_tx);
    loom__pg_put_be64(pos, (uint64_t) r->cur_pos);
    loom__pg_put_be32(limit, (uint32_t) r->batch);
    loom__pg_put_be32(sticky, r->sticky++ & 0x7fffffffu);
    memcpy(&bits, &r->rate, sizeof bits);
    loom__pg_put_be64(rate, bits);
    r->fetching = 1;
    if (loom__pgconn_query(&r->conn, &local_stmt, values, lengths,
                           relay_on_local, r) != LOOM_OK)
        relay_unsent(r);
}

void
loom__relay_fetch(loom_relay *r)
{
    char limit[4], xid[8], pos[8];
    const char *values[4] = {r->outbox, xid, pos, limit};
    int lengths[4] = {(int) strlen(r->outbox), 8, 8, 4};
    const char *sync = NULL;

    if (r->stopping) {
        loom__relay_finish_stop(r);
        return;
    }
    if (r->role != RELAY_LEADING || r->fetching || r->conn.busy)
        return;
    if (loom__relay_housekeeping(r))
        return;
    r->woken = 0; /* this read sees every commit that woke us */
    if (r->local > 0 && !r->via_transport &&
        loom__topics_local_ok(r->tp, &sync)) {
        relay_publish_local(r, sync);
        return;
    }
    loom__pg_put_be64(xid, r->cur_tx);
    loom__pg_put_be64(pos, (uint64_t) r->cur_pos);
    loom__pg_put_be32(limit, (uint32_t) r->batch);
    r->fetching = 1;
    if (loom__pgconn_query(&r->conn, &fetch_stmt, values, lengths,
                           relay_on_fetch, r) != LOOM_OK)
        relay_unsent(r);
}
