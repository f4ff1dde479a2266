/*
 * The outbox relay (loom/outbox.h): a state machine on the runtime's loop
 * around one PostgreSQL connection (pgconn.h) and one transport.
 *
 *   standby ──lead──▶ leading: fetch ─▶ publish ─▶ advance ─▶ fetch ...
 *      ▲                 │ nothing new: messages held back by an older
 *      │                 │ transaction? look again in 1-64 ms; else arm
 *      │                 │ the wake-up, fetch once more, then sleep until
 *      │                 │ NOTIFY or poll_ms
 *      └── lost ◀────────┘ connection broken, or the cursor moved under us
 *
 * Leading means holding the outbox's advisory lock (loom.outbox_lead) on
 * this connection: a session lock, so it dies with the session and a
 * standby's next try takes over. Every advance is a compare-and-set on
 * the cursor that also checks the leader's backend pid, so a relay that
 * lost its lock unawares can publish a batch twice (at least once) but
 * never move the cursor.
 *
 * In the database: when the transport is the built-in topics of the
 * outbox's own database, one statement (loom.outbox_publish_local, schema
 * 13) does fetch, publish and advance inside the server, in one
 * transaction, so each batch costs one round trip and never leaves the
 * server. A batch that statement declines (a message only the transport's
 * path handles: an unknown topic, one too big) or that fails goes through
 * the transport as below, and the next one is tried in the database again.
 *
 * A batch stays in memory until its advance commits: a failed publish is
 * retried with the same messages after a backoff (capped, with jitter),
 * and the outbox is untouched meanwhile. A message the transport refuses
 * for good (LOOM_EINVAL, LOOM_ETOOBIG, LOOM_ENOTFOUND) makes the batch go
 * again one message at a time; the refused ones are moved to
 * loom.outbox_dead_letters in the advance, so they never block the rest.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc_int.h"
#include "headers.h"
#include "log_int.h"
#include "loom/alloc.h"
#include "loom/outbox.h"
#include "outbox_int.h"
#include "pgconn.h"
#include "pgwire.h"
#include "runtime_int.h"
#include "transports/topics/topics_local.h"
#include "tx_int.h"

#define RELAY_MAX_BATCH   10000
#define RELAY_TICK_MS     1000
#define RELAY_CLEAN_CHUNK 5000
#define RELAY_LINGER_MS   5 /* a second look before arming; batching */
/* In-database publishes failing in a row before the relay keeps to the
 * transport (a deadlock now and then is no reason to). */
#define RELAY_LOCAL_TRIES 5
/* Looking again while committed messages wait behind an older
 * transaction: from 1 ms, doubling, up to this. */
#define RELAY_HELD_MAX_MS 64

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

static void relay_fetch(loom_relay *r);
static void relay_publish(loom_relay *r);
static void relay_advance(loom_relay *r);
static void relay_lead(loom_relay *r);
static void relay_finish_stop(loom_relay *r);
static void relay_check_pending(loom_relay *r);
static void relay_publish_local(loom_relay *r, const char *sync);

static const loom__stmt lead_stmt = {
    LOOM__STMT_OUTBOX_LEAD,
    "loom_outbox_lead",
    "SELECT tx, position FROM loom.outbox_lead($1, $2, $3)",
    3,
    {LOOM__OID_TEXT, LOOM__OID_TEXT, LOOM__OID_TEXT}};

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

static const loom__stmt beat_stmt = {
    LOOM__STMT_OUTBOX_HEARTBEAT,
    "loom_outbox_heartbeat",
    "SELECT loom.outbox_heartbeat($1, $2, $3)",
    3,
    {LOOM__OID_TEXT, 701 /* float8 */, LOOM__OID_TEXT}};

static const loom__stmt clean_stmt = {LOOM__STMT_OUTBOX_CLEANUP,
                                      "loom_outbox_cleanup",
                                      "SELECT loom.outbox_cleanup($1, $2)",
                                      2,
                                      {LOOM__OID_TEXT, LOOM__OID_INT4}};

static const loom__stmt resign_stmt = {LOOM__STMT_OUTBOX_RESIGN,
                                       "loom_outbox_resign",
                                       "SELECT loom.outbox_resign($1)",
                                       1,
                                       {LOOM__OID_TEXT}};

/* Zeroed memory; n * size cannot overflow here (n <= RELAY_MAX_BATCH). */
static void *
relay_calloc(size_t n, size_t size)
{
    void *p = loom_malloc(n * size);

    if (p != NULL)
        memset(p, 0, n * size);
    return p;
}

static uint64_t
relay_now(const loom_relay *r)
{
    return uv_now(loom_runtime_loop(r->rt));
}

/* ---- the batch in hand ------------------------------------------------ */

static void
relay_drop_batch(loom_relay *r)
{
    if (r->ticket != NULL) {
        r->ticket->r = NULL; /* its callback frees it */
        r->ticket = NULL;
    }
    for (size_t i = 0; i < r->n; i++) {
        loom_free(r->meta[i].hdr_mem);
        loom_free(r->meta[i].dead);
    }
    loom_free(r->msgs);
    loom_free(r->meta);
    loom_free(r->hdrs);
    PQclear(r->rows);
    r->rows = NULL;
    r->msgs = NULL;
    r->meta = NULL;
    r->hdrs = NULL;
    r->n = 0;
    r->n_dead = 0;
    r->single = 0;
    r->single_mode = 0;
}

static void
relay_set_dead(loom_relay *r, size_t i, const char *fmt, const char *detail)
{
    char buf[512];

    if (r->meta[i].dead != NULL)
        return;
    snprintf(buf, sizeof buf, fmt, detail);
    r->meta[i].dead = loom__strdup(buf);
    if (r->meta[i].dead == NULL) /* still refused: a fixed reason */
        r->meta[i].dead = loom__strdup("refused");
    r->n_dead++;
    r->stats.dead_letters++;
    loom__log(LOOM_LOG_WARN,
              "relay %s: message at position %lld (topic \"%s\") moved to "
              "the outbox's dead letters: %s",
              r->outbox, (long long) r->meta[i].position,
              r->msgs[i].topic ? r->msgs[i].topic : "", buf);
}

/* Builds the messages of a fetched page: decoded headers plus "x-type".
 * A row that cannot be decoded is marked dead (it is never published). */
static loom_err
relay_take_rows(loom_relay *r, PGresult *rows)
{
    size_t n = (size_t) PQntuples(rows), total = 0;
    loom_header **dec;
    size_t *ndec;
    loom_err rc = LOOM_OK;

    r->rows = rows;
    r->n = n;
    r->msgs = relay_calloc(n, sizeof *r->msgs);
    r->meta = relay_calloc(n, sizeof *r->meta);
    dec = relay_calloc(n, sizeof *dec);
    ndec = relay_calloc(n, sizeof *ndec);
    if (r->msgs == NULL || r->meta == NULL || dec == NULL || ndec == NULL) {
        rc = LOOM_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        loom_message *m = &r->msgs[i];
        relay_msg *x = &r->meta[i];
        int row = (int) i;
        int64_t ts;

        loom__pg_get_u64(rows, row, 0, &x->tx);
        loom__pg_get_i64(rows, row, 1, &x->position);
        m->topic = PQgetvalue(rows, row, 2);
        m->partition = LOOM_PARTITION_ANY;
        if (!PQgetisnull(rows, row, 3)) {
            m->key = PQgetvalue(rows, row, 3);
            m->key_len = (size_t) PQgetlength(rows, row, 3);
        }
        if (!PQgetisnull(rows, row, 5) &&
            loom__headers_decode(PQgetvalue(rows, row, 5),
                                 (size_t) PQgetlength(rows, row, 5), &dec[i],
                                 &ndec[i], &x->hdr_mem) != 0) {
            dec[i] = NULL;
            ndec[i] = 0;
            relay_set_dead(r, i, "%s",
                           "its headers are not a header list (written "
                           "without loom_outbox_add?)");
        }
        total += ndec[i] + !PQgetisnull(rows, row, 4);
        m->payload = PQgetvalue(rows, row, 6);
        m->payload_len = (size_t) PQgetlength(rows, row, 6);
        if (PQgetlength(rows, row, 7) == 16)
            memcpy(m->id.bytes, PQgetvalue(rows, row, 7), 16);
        if (loom__pg_get_i64(rows, row, 8, &ts))
            m->deliver_at = loom__pg_time_to_unix(ts);
        if (loom__pg_get_i64(rows, row, 9, &ts))
            m->timestamp = loom__pg_time_to_unix(ts);
    }
    r->hdrs = relay_calloc(total ? total : 1, sizeof *r->hdrs);
    if (r->hdrs == NULL) {
        rc = LOOM_ENOMEM;
        goto out;
    }
    total = 0;
    for (size_t i = 0; i < n; i++) {
        loom_message *m = &r->msgs[i];
        m->headers = &r->hdrs[total];
        if (ndec[i] > 0)
            memcpy(&r->hdrs[total], dec[i], ndec[i] * sizeof *dec[i]);
        total += ndec[i];
        if (!PQgetisnull(rows, (int) i, 4)) {
            r->hdrs[total].key = "x-type";
            r->hdrs[total].value = PQgetvalue(rows, (int) i, 4);
            total++;
        }
        m->n_headers = (size_t) (&r->hdrs[total] - m->headers);
    }
out:
    loom_free(dec);
    loom_free(ndec);
    if (rc != LOOM_OK) {
        relay_drop_batch(r);
        loom__log(LOOM_LOG_ERROR, "relay %s: out of memory for a batch",
                  r->outbox);
    }
    return rc;
}

/* ---- timers ----------------------------------------------------------- */

static void
relay_on_timer(uv_timer_t *t)
{
    loom_relay *r = t->data;
    relay_wait w = r->wait;

    r->wait = WAIT_NONE;
    r->sleeping = 0;
    switch (w) {
    case WAIT_LEAD:
        relay_lead(r);
        break;
    case WAIT_SLEEP:
        relay_fetch(r);
        break;
    case WAIT_BACKOFF:
        /* Retry what failed: the fetch, or the batch in hand (which goes
         * on to its advance once every message is out). */
        if (r->n == 0)
            relay_fetch(r);
        else
            relay_publish(r);
        break;
    case WAIT_NONE:
        break;
    }
}

static void
relay_wait_for(loom_relay *r, relay_wait w, uint64_t ms)
{
    r->wait = w;
    r->sleeping = w == WAIT_SLEEP;
    uv_timer_start(&r->timer, relay_on_timer, ms, 0);
}

/* A step failed in a way worth retrying: wait, then try it again. */
static void
relay_backoff(loom_relay *r)
{
    relay_wait_for(r, WAIT_BACKOFF, loom__backoff_next(&r->backoff));
}

static void
relay_set_error(loom_relay *r, const char *what, const char *detail)
{
    char buf[512];

    snprintf(buf, sizeof buf, "%s: %s", what, detail);
    if (r->error == NULL || strcmp(r->error, buf) != 0) {
        loom__log(LOOM_LOG_WARN, "relay %s: %s (retrying with backoff)",
                  r->outbox, buf);
        loom_free(r->error);
        r->error = loom__strdup(buf);
        r->error_sent = 0;
    }
}

/* ---- leadership ------------------------------------------------------- */

/* The connection broke or the cursor moved: stand by, drop the batch (the
 * next leader publishes it again). */
static void
relay_lost(loom_relay *r, const char *why)
{
    if (r->role == RELAY_LEADING)
        loom__log(LOOM_LOG_WARN,
                  "relay %s: no longer the active relay (%s); standing by",
                  r->outbox, why);
    r->role = RELAY_STANDBY;
    r->armed = 0;
    relay_drop_batch(r);
    if (r->stopping) {
        relay_finish_stop(r);
        return;
    }
    relay_wait_for(r, WAIT_LEAD, r->standby_ms);
}

/* A step failed during a stop: the batch is left to the next leader
 * (at least once), and the relay steps down while it still leads.
 * relay_lost() would stand by first, which skips the resign: the row
 * would keep naming this relay, shown as gone once it exits. */
static void
relay_stop_now(loom_relay *r)
{
    loom__log(LOOM_LOG_INFO,
              "relay %s: stopping; the batch in hand is published again by "
              "the next active relay",
              r->outbox);
    relay_drop_batch(r);
    relay_finish_stop(r);
}

static void
relay_on_wake(void *arg, const char *channel, const char *payload)
{
    loom_relay *r = arg;

    (void) channel;
    if (payload != NULL) /* NULL: the runtime's own poll */
        r->armed = 0;    /* the writer that woke us took the wake-up row */
    if (r->role != RELAY_LEADING)
        return;
    if (r->sleeping) {
        if (payload != NULL)
            r->stats.wakeups++;
        uv_timer_stop(&r->timer);
        r->wait = WAIT_NONE;
        r->sleeping = 0;
        relay_fetch(r);
        return;
    }
    /* Busy: the read in flight may have taken its snapshot before the
     * commit that woke us, whose writer took the wake-up row. Dropping
     * the wake-up here left the relay asleep until its next heartbeat
     * read (up to two seconds) with that message unpublished: read once
     * more before sleeping instead, as the consumers do. */
    r->woken = 1;
}

static void
relay_on_lead(void *arg, loom_err rc, PGresult *res)
{
    loom_relay *r = arg;

    r->fetching = 0;
    if (rc == LOOM_OK && PQntuples(res) == 1) {
        loom__pg_get_u64(res, 0, 0, &r->cur_tx);
        loom__pg_get_i64(res, 0, 1, &r->cur_pos);
        r->role = RELAY_LEADING;
        r->backend_pid = PQbackendPID(r->conn.store->conn);
        PQclear(res);
        res = NULL;
        if (r->local < 0) /* not known yet: ask again */
            r->local = loom__topics_same_database(r->tp, &r->conn);
        r->stats.takeovers++;
        r->armed = 0;
        r->last_beat_ms = relay_now(r);
        loom__log(LOOM_LOG_INFO,
                  "relay %s: now the active relay (publishing through %s%s)",
                  r->outbox, loom_transport_scheme(r->tp),
                  r->local > 0 ? ", inside the database" : "");
        if (r->listener == NULL &&
            loom_runtime_listen(r->rt, r->channel, relay_on_wake, r,
                                &r->listener) != LOOM_OK)
            r->listener = NULL; /* the poll timer still finds messages */
        if (r->stopping) {
            relay_finish_stop(r);
            return;
        }
        relay_fetch(r);
        return;
    }
    if (rc != LOOM_OK)
        loom__log(LOOM_LOG_DEBUG, "relay %s: cannot try to lead: %s", r->outbox,
                  loom__pgconn_errmsg(&r->conn));
    PQclear(res);
    if (r->stopping) {
        relay_finish_stop(r);
        return;
    }
    relay_wait_for(r, WAIT_LEAD, r->standby_ms);
}

static void
relay_lead(loom_relay *r)
{
    const char *values[3] = {r->outbox, r->name, loom_transport_scheme(r->tp)};
    int lengths[3] = {(int) strlen(values[0]), (int) strlen(values[1]),
                      (int) strlen(values[2])};

    if (r->stopping) {
        relay_finish_stop(r);
        return;
    }
    r->fetching = 1;
    if (loom__pgconn_query(&r->conn, &lead_stmt, values, lengths, relay_on_lead,
                           r) != LOOM_OK) {
        r->fetching = 0;
        relay_wait_for(r, WAIT_LEAD, r->standby_ms);
    }
}

/* ---- housekeeping: heartbeat and cleanup, between batches -------------- */

static void
relay_on_clean(void *arg, loom_err rc, PGresult *res)
{
    loom_relay *r = arg;
    int64_t n = 0;

    r->fetching = 0;
    if (rc == LOOM_OK && loom__pg_get_i64(res, 0, 0, &n)) {
        r->stats.cleaned += (uint64_t) n;
        /* A full chunk: more is waiting; go again after the next batch. */
        if (n >= RELAY_CLEAN_CHUNK)
            r->last_clean_ms = 0;
    }
    PQclear(res);
    if (rc == LOOM_ECONN) {
        relay_lost(r, "the connection to PostgreSQL broke");
        return;
    }
    relay_fetch(r);
}

static void
relay_on_beat(void *arg, loom_err rc, PGresult *res)
{
    loom_relay *r = arg;

    r->fetching = 0;
    PQclear(res);
    if (rc == LOOM_ECONN) {
        relay_lost(r, "the connection to PostgreSQL broke");
        return;
    }
    if (r->wait == WAIT_BACKOFF || r->ticket != NULL)
        return; /* a heartbeat sent while publishing is retried */
    relay_fetch(r);
}

static int
relay_send_beat(loom_relay *r)
{
    char rate[8];
    const char *values[3] = {r->outbox, rate, NULL};
    int lengths[3] = {(int) strlen(r->outbox), 8, 0};
    uint64_t bits;

    memcpy(&bits, &r->rate, sizeof bits);
    loom__pg_put_be64(rate, bits);
    /* Every beat while failing carries the error: a NULL one clears
     * failing_since (loom.outbox_heartbeat), so `outbox status` would
     * show a relay that still fails as healthy from its second beat on. */
    if (r->error != NULL) {
        values[2] = r->error;
        lengths[2] = (int) strlen(r->error);
        r->error_sent = 1;
    }
    r->last_beat_ms = relay_now(r);
    r->fetching = 1;
    if (loom__pgconn_query(&r->conn, &beat_stmt, values, lengths, relay_on_beat,
                           r) != LOOM_OK) {
        r->fetching = 0;
        return 0;
    }
    return 1;
}

/* Runs what is due before the next fetch; 1 when a request went out (its
 * callback fetches next). */
static int
relay_housekeeping(loom_relay *r)
{
    uint64_t now = relay_now(r);

    if (now - r->last_beat_ms >= RELAY_TICK_MS && relay_send_beat(r))
        return 1;
    if (r->cleanup_ms > 0 && now - r->last_clean_ms >= r->cleanup_ms) {
        char lim[4];
        const char *values[2] = {r->outbox, lim};
        int lengths[2] = {(int) strlen(r->outbox), 4};

        r->last_clean_ms = now;
        loom__pg_put_be32(lim, RELAY_CLEAN_CHUNK);
        r->fetching = 1;
        if (loom__pgconn_query(&r->conn, &clean_stmt, values, lengths,
                               relay_on_clean, r) == LOOM_OK)
            return 1;
        r->fetching = 0;
    }
    return 0;
}

/* Every second: the publish rate, and the heartbeat of an active relay
 * that is not publishing (caught up, or waiting on a failing transport,
 * whose failure the heartbeat reports). */
static void
relay_on_tick(uv_timer_t *t)
{
    loom_relay *r = t->data;
    uint64_t now = relay_now(r);
    uint64_t ms = now - r->last_tick_ms;
    double inst;

    if (ms == 0)
        return;
    inst = (double) (r->stats.published - r->tick_published) * 1000.0 /
           (double) ms;
    r->rate = r->rate == 0 ? inst : 0.7 * r->rate + 0.3 * inst;
    r->tick_published = r->stats.published;
    r->last_tick_ms = now;
    if (r->role != RELAY_LEADING || now - r->last_beat_ms < RELAY_TICK_MS)
        return;
    if (r->sleeping) {
        /* Caught up: beat now (the fetch runs it first), which also finds
         * out soon if the connection, and so the lock, was lost. */
        uv_timer_stop(&r->timer);
        r->wait = WAIT_NONE;
        r->sleeping = 0;
        relay_fetch(r);
    } else if (r->wait == WAIT_BACKOFF && !r->fetching && !r->advancing &&
               !r->conn.busy && r->n > 0)
        relay_send_beat(r);
}

/* ---- fetching ---------------------------------------------------------- */

static void
relay_on_arm(void *arg, loom_err rc, PGresult *res)
{
    loom_relay *r = arg;

    r->fetching = 0;
    PQclear(res);
    if (rc == LOOM_ECONN) {
        relay_lost(r, "the connection to PostgreSQL broke");
        return;
    }
    r->armed = rc == LOOM_OK;
    if (r->stopping) {
        relay_finish_stop(r);
        return;
    }
    if (r->armed)
        relay_fetch(r); /* once more: a message may have come before */
    else
        relay_wait_for(r, WAIT_SLEEP, r->poll_ms);
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
        relay_fetch(r); /* see relay_on_wake() */
        return;
    }
    if (r->armed || r->listener == NULL) {
        relay_wait_for(r, WAIT_SLEEP, r->poll_ms);
        return;
    }
    if (!r->lingered) {
        /* Just caught up: look again shortly before arming. Writers
         * that keep coming are then found by this poll, and none of
         * their commits pays for a NOTIFY (schema 2 says what that
         * costs them). */
        r->lingered = 1;
        relay_wait_for(r, WAIT_SLEEP, RELAY_LINGER_MS);
        return;
    }
    r->fetching = 1;
    if (loom__pgconn_query(&r->conn, &arm_stmt, values, lengths, relay_on_arm,
                           r) != LOOM_OK) {
        r->fetching = 0;
        relay_wait_for(r, WAIT_SLEEP, r->poll_ms);
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
        relay_lost(r, "the connection to PostgreSQL broke");
        return;
    }
    if (r->stopping) {
        relay_finish_stop(r);
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
    relay_wait_for(r, WAIT_SLEEP, r->held_ms);
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
            relay_lost(r, "the connection to PostgreSQL broke");
            return;
        }
        relay_set_error(r, "reading the outbox failed",
                        loom__pgconn_errmsg(&r->conn));
        if (r->stopping) {
            relay_finish_stop(r);
            return;
        }
        relay_backoff(r);
        return;
    }
    if (PQntuples(res) == 0) {
        PQclear(res);
        if (r->stopping) {
            relay_finish_stop(r);
            return;
        }
        relay_check_pending(r);
        return;
    }
    r->held_ms = 0;
    r->armed = 0;
    r->lingered = 0;
    if (relay_take_rows(r, res) != LOOM_OK) {
        relay_backoff(r);
        return;
    }
    r->single_mode = r->n_dead > 0;
    relay_publish(r);
}

/* A read (or a publish inside the database) could not even be sent: the
 * connection is gone, or it goes again after a backoff. */
static void
relay_unsent(loom_relay *r)
{
    r->fetching = 0;
    if (PQstatus(r->conn.store->conn) != CONNECTION_OK ||
        r->conn.reconnecting) {
        relay_lost(r, "the connection to PostgreSQL broke");
        return;
    }
    relay_backoff(r);
}

/* A publish went out: a failing streak, if any, is over. */
static void
relay_recovered(loom_relay *r)
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
static void
relay_moved(loom_relay *r, uint64_t tx, int64_t pos, size_t n)
{
    r->cur_tx = tx;
    r->cur_pos = pos;
    r->last_beat_ms = relay_now(r); /* the advance is a heartbeat */
    if (n >= r->batch || r->stopping) {
        relay_fetch(r);
        return;
    }
    relay_wait_for(r, WAIT_SLEEP, RELAY_LINGER_MS);
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
    relay_recovered(r);
    relay_moved(r, tx, pos, (size_t) n);
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
        relay_lost(r, "the connection to PostgreSQL broke");
        return;
    }
    if (rc != LOOM_OK &&
        strcmp(loom_store_sqlstate(r->conn.store), "LM016") == 0) {
        relay_lost(r, "another relay moved the cursor");
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
        relay_fetch(r);
        return;
    }
    if (r->stopping && n == 0) {
        relay_finish_stop(r);
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

static void
relay_fetch(loom_relay *r)
{
    char limit[4], xid[8], pos[8];
    const char *values[4] = {r->outbox, xid, pos, limit};
    int lengths[4] = {(int) strlen(r->outbox), 8, 8, 4};
    const char *sync = NULL;

    if (r->stopping) {
        relay_finish_stop(r);
        return;
    }
    if (r->role != RELAY_LEADING || r->fetching || r->conn.busy)
        return;
    if (relay_housekeeping(r))
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

/* ---- publishing --------------------------------------------------------- */

/* Errors that no retry can fix: the message itself is refused. */
static int
relay_refused_for_good(loom_err rc)
{
    return rc == LOOM_EINVAL || rc == LOOM_ETOOBIG || rc == LOOM_ENOTFOUND;
}

static void
relay_publish_done(loom_relay *r, loom_err rc, size_t index, size_t count)
{
    if (rc == LOOM_OK) {
        relay_recovered(r);
        r->stats.published += count;
        if (r->published != NULL)
            r->published(r->published_arg, &r->msgs[index], count);
        if (!r->single_mode) {
            r->stats.batches++;
            relay_advance(r);
            return;
        }
        r->single = index + 1;
        relay_publish(r);
        return;
    }
    if (relay_refused_for_good(rc)) {
        if (!r->single_mode) {
            /* Find the refused ones: one at a time from the start. */
            r->single_mode = 1;
            r->single = 0;
            relay_publish(r);
            return;
        }
        relay_set_dead(r, index, "the transport refused it: %s",
                       loom_strerror(rc));
        r->single = index + 1;
        relay_publish(r);
        return;
    }
    r->stats.failures++;
    if (r->stopping) {
        relay_stop_now(r);
        return;
    }
    {
        char what[96];
        snprintf(what, sizeof what, "publishing through %s:// failed",
                 loom_transport_scheme(r->tp));
        relay_set_error(r, what, loom_err_name(rc));
    }
    relay_backoff(r);
}

static void
relay_published(loom_err rc, size_t n, void *arg)
{
    relay_ticket *t = arg;
    loom_relay *r = t->r;
    size_t index = t->index, count = t->n;

    (void) n;
    loom_free(t);
    if (r == NULL)
        return; /* the relay moved on or is gone */
    r->ticket = NULL;
    relay_publish_done(r, rc, index, count);
}

static void
relay_publish(loom_relay *r)
{
    relay_ticket *t;
    size_t first = 0, count = r->n;
    loom_err rc;

    if (r->single_mode) {
        while (r->single < r->n && r->meta[r->single].dead != NULL)
            r->single++;
        if (r->single >= r->n) {
            relay_advance(r);
            return;
        }
        first = r->single;
        count = 1;
    }
    t = loom_malloc(sizeof *t);
    if (t == NULL) {
        relay_backoff(r);
        return;
    }
    t->r = r;
    t->index = first;
    t->n = count;
    r->ticket = t;
    rc = loom_transport_publish(r->tp, &r->msgs[first], count, relay_published,
                                t);
    if (rc == LOOM_OK)
        return;
    /* Refused at once: the callback will not come. */
    r->ticket = NULL;
    loom_free(t);
    relay_publish_done(r, rc, first, count);
}

/* ---- recording progress ------------------------------------------------- */

static void
relay_on_advanced(void *arg, loom_err rc, PGresult *res)
{
    loom_relay *r = arg;

    (void) res;
    r->advancing = 0;
    if (rc == LOOM_OK) {
        uint64_t tx = r->meta[r->n - 1].tx;
        int64_t pos = r->meta[r->n - 1].position;
        size_t n = r->n;

        relay_drop_batch(r);
        relay_moved(r, tx, pos, n);
        return;
    }
    if (rc == LOOM_ECONN) {
        relay_lost(r, "the connection to PostgreSQL broke");
        return;
    }
    if (rc == LOOM_ECONFLICT) {
        relay_lost(r, "another relay moved the cursor");
        return;
    }
    if (r->stopping) {
        relay_stop_now(r);
        return;
    }
    relay_set_error(r, "recording progress failed",
                    loom__pgconn_errmsg(&r->conn));
    r->single_mode = 1;
    r->single = r->n; /* published: only the advance is retried */
    relay_backoff(r);
}

static void
relay_advance(loom_relay *r)
{
    static const uint32_t types[7] = {LOOM__OID_TEXT,
                                      LOOM__OID_XID8,
                                      LOOM__OID_INT8,
                                      LOOM__OID_XID8,
                                      LOOM__OID_INT8,
                                      LOOM__OID_INT8,
                                      701 /* float8 */};
    loom_tx tx;
    char num[48];
    const char *values[7] = {r->outbox, num,      num + 8, num + 16,
                             num + 24,  num + 32, num + 40};
    int lengths[7] = {(int) strlen(r->outbox), 8, 8, 8, 8, 8, 8};
    uint64_t bits;
    loom_err rc;

    loom__tx_init(&tx);
    /* A progress record lost in a server crash only makes the next leader
     * publish its batch again (at least once), so it need not wait for
     * the WAL flush; the transport's own commit stays durable. */
    rc = loom_tx_exec(
        &tx, "SELECT set_config('synchronous_commit', 'off', true)", 0, NULL);
    for (size_t i = 0; i < r->n && rc == LOOM_OK; i++) {
        char xid[24], pos[24];
        const char *bv[4] = {r->outbox, xid, pos, r->meta[i].dead};

        if (r->meta[i].dead == NULL)
            continue;
        snprintf(xid, sizeof xid, "%llu", (unsigned long long) r->meta[i].tx);
        snprintf(pos, sizeof pos, "%lld", (long long) r->meta[i].position);
        rc =
            loom_tx_exec(&tx, "SELECT loom.outbox_bury($1, $2, $3, $4)", 4, bv);
    }
    loom__pg_put_be64(num, r->cur_tx);
    loom__pg_put_be64(num + 8, (uint64_t) r->cur_pos);
    loom__pg_put_be64(num + 16, r->meta[r->n - 1].tx);
    loom__pg_put_be64(num + 24, (uint64_t) r->meta[r->n - 1].position);
    loom__pg_put_be64(num + 32, (uint64_t) r->n);
    memcpy(&bits, &r->rate, sizeof bits);
    loom__pg_put_be64(num + 40, bits);
    if (rc == LOOM_OK)
        rc = loom_tx_exec_binary(&tx,
                                 "SELECT loom.outbox_advance($1, $2, $3, "
                                 "$4, $5, $6, $7)",
                                 7, types, values, lengths);
    if (rc == LOOM_OK) {
        r->advancing = 1;
        rc = loom__pgconn_tx(&r->conn, &tx, relay_on_advanced, r);
        if (rc != LOOM_OK)
            r->advancing = 0;
    }
    loom__tx_free(&tx);
    if (rc == LOOM_OK)
        return;
    if (rc == LOOM_ECONN) {
        relay_lost(r, "the connection to PostgreSQL broke");
        return;
    }
    r->single_mode = 1;
    r->single = r->n;
    relay_backoff(r);
}

/* ---- life ------------------------------------------------------------------
 */

static void
relay_free(loom_relay *r)
{
    loom_free(r->outbox);
    loom_free(r->name);
    loom_free(r->channel);
    loom_free(r->error);
    loom_free(r);
}

static void
relay_handle_opened(void *arg)
{
    ((loom_relay *) arg)->open_handles++;
}

static void
relay_handle_released(void *arg)
{
    loom_relay *r = arg;

    r->open_handles--;
    if (r->closed && r->open_handles == 0)
        relay_free(r);
}

static void
relay_timer_closed(uv_handle_t *h)
{
    relay_handle_released(h->data);
}

/* Gives up leadership on a clean stop (blocking, best effort: closing the
 * connection releases the lock anyway; this also clears the leader shown
 * by `loomctl outbox status`). */
static void
relay_resign(loom_relay *r)
{
    const char *values[1] = {r->outbox};
    int lengths[1] = {(int) strlen(r->outbox)};
    PGresult *res = NULL;

    if (r->role != RELAY_LEADING || r->conn.store == NULL || r->conn.busy ||
        PQstatus(r->conn.store->conn) != CONNECTION_OK ||
        PQbackendPID(r->conn.store->conn) != r->backend_pid)
        return;
    if (loom__pgconn_query_now(&r->conn, &resign_stmt, values, lengths, &res) ==
        LOOM_OK)
        loom__log(LOOM_LOG_INFO, "relay %s: stepped down", r->outbox);
    PQclear(res);
    r->role = RELAY_STANDBY;
}

/* A runtime stop: finish the step in flight (a publish and its advance
 * complete, so a clean stop republishes nothing), then step down. */
static void
relay_finish_stop(loom_relay *r)
{
    loom__done_fn done = r->stop_done;

    if (done == NULL || r->conn.busy || r->ticket != NULL || r->advancing)
        return;
    uv_timer_stop(&r->timer);
    uv_timer_stop(&r->tick);
    r->wait = WAIT_NONE;
    relay_resign(r);
    r->stop_done = NULL;
    done(r->comp);
}

static void
relay_stop(void *arg, loom__component *comp, loom__done_fn done)
{
    loom_relay *r = arg;

    (void) comp;
    r->stopping = 1;
    r->stop_done = done;
    if (r->wait != WAIT_NONE) {
        uv_timer_stop(&r->timer);
        r->wait = WAIT_NONE;
        r->sleeping = 0;
    }
    relay_finish_stop(r);
}

int
loom__outbox_name_ok(const char *s)
{
    size_t n = 0;

    if (s == NULL)
        return 0;
    for (; s[n] != '\0'; n++) {
        char ch = s[n];
        if (n >= LOOM_OUTBOX_MAX_NAME ||
            !((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' || ch == '.'))
            return 0;
    }
    return n > 0;
}

loom_err
loom_relay_start(loom_runtime *rt, const loom_relay_config *cfg,
                 loom_relay **out, char *err, size_t errlen)
{
    loom__pgconn_config pc = {0};
    loom_relay *r;
    char host[256], name[320], app[128];
    const char *outbox;
    loom_err rc;

    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (out != NULL)
        *out = NULL;
    if (rt == NULL || cfg == NULL || cfg->transport == NULL || out == NULL) {
        if (err != NULL)
            snprintf(err, errlen,
                     "relay: runtime, config, transport and out "
                     "are required");
        return LOOM_EINVAL;
    }
    outbox = cfg->outbox != NULL ? cfg->outbox : LOOM_OUTBOX_DEFAULT;
    if (!loom__outbox_name_ok(outbox)) {
        if (err != NULL)
            snprintf(err, errlen,
                     "relay: outbox name \"%.80s\" is not 1 to %d letters, "
                     "digits, '_', '-' or '.'",
                     outbox, LOOM_OUTBOX_MAX_NAME);
        return LOOM_EINVAL;
    }
    if (cfg->batch > RELAY_MAX_BATCH) {
        if (err != NULL)
            snprintf(err, errlen, "relay: batch %zu is over %d", cfg->batch,
                     RELAY_MAX_BATCH);
        return LOOM_EINVAL;
    }
    r = relay_calloc(1, sizeof *r);
    if (r == NULL)
        return LOOM_ENOMEM;
    r->rt = rt;
    r->tp = cfg->transport;
    r->batch = cfg->batch ? cfg->batch : 500;
    r->poll_ms = cfg->poll_ms ? cfg->poll_ms : 1000;
    r->standby_ms = cfg->standby_ms ? cfg->standby_ms : 1000;
    r->cleanup_ms = cfg->cleanup_ms ? cfg->cleanup_ms : 1000;
    r->published = cfg->published;
    r->published_arg = cfg->published_arg;
    loom__backoff_init(&r->backoff, cfg->backoff_ms ? cfg->backoff_ms : 100,
                       cfg->backoff_max_ms ? cfg->backoff_max_ms : 30000);
    if (gethostname(host, sizeof host) != 0)
        snprintf(host, sizeof host, "unknown");
    host[sizeof host - 1] = '\0';
    snprintf(name, sizeof name, "%s pid %ld", host, (long) getpid());
    r->outbox = loom__strdup(outbox);
    r->name = loom__strdup(cfg->name != NULL ? cfg->name : name);
    r->channel = loom_malloc(strlen(outbox) + 13);
    if (r->outbox == NULL || r->name == NULL || r->channel == NULL) {
        relay_free(r);
        return LOOM_ENOMEM;
    }
    snprintf(r->channel, strlen(outbox) + 13, "loom_outbox_%s", outbox);
    snprintf(app, sizeof app, "eventloom relay %.60s", outbox);
    pc.rt = rt;
    pc.conninfo = cfg->conninfo;
    pc.application_name = app;
    pc.what = "relay";
    pc.opened = relay_handle_opened;
    pc.released = relay_handle_released;
    pc.owner = r;
    rc = loom__pgconn_open(&r->conn, &pc, err, errlen);
    if (rc != LOOM_OK) {
        relay_free(r);
        return rc;
    }
    /* Blocking, as the connect above; -1 (no answer) asks again at the
     * next lead. */
    r->local = cfg->through_transport || cfg->published != NULL
                   ? 0
                   : loom__topics_same_database(r->tp, &r->conn);
    rc = loom__runtime_add_component(rt, relay_stop, r, &r->comp);
    if (rc != LOOM_OK) {
        loom__pgconn_close(&r->conn);
        if (err != NULL)
            snprintf(err, errlen, "relay: the runtime is stopping");
        relay_free(r);
        return rc;
    }
    uv_timer_init(loom_runtime_loop(rt), &r->timer);
    uv_timer_init(loom_runtime_loop(rt), &r->tick);
    r->timer.data = r;
    r->tick.data = r;
    r->open_handles += 2;
    r->last_tick_ms = relay_now(r);
    uv_timer_start(&r->tick, relay_on_tick, RELAY_TICK_MS, RELAY_TICK_MS);
    relay_lead(r);
    *out = r;
    return LOOM_OK;
}

void
loom_relay_close(loom_relay *r)
{
    if (r == NULL)
        return;
    if (r->stop_done != NULL) {
        loom__done_fn done = r->stop_done;
        r->stop_done = NULL;
        done(r->comp);
    }
    loom__runtime_remove_component(r->comp);
    r->comp = NULL;
    relay_resign(r);
    relay_drop_batch(r);
    loom_listener_close(r->listener);
    r->listener = NULL;
    uv_close((uv_handle_t *) &r->timer, relay_timer_closed);
    uv_close((uv_handle_t *) &r->tick, relay_timer_closed);
    loom__pgconn_close(&r->conn);
    /* Outside the loop's run, close callbacks only run when it turns. */
    if (!r->rt->running)
        for (int i = 0; i < 1000 && r->open_handles > 0; i++)
            uv_run(loom_runtime_loop(r->rt), UV_RUN_NOWAIT);
    r->closed = 1;
    if (r->open_handles == 0)
        relay_free(r);
}

loom_err
loom_relay_stats_get(const loom_relay *r, loom_relay_stats *out)
{
    if (r == NULL || out == NULL)
        return LOOM_EINVAL;
    *out = r->stats;
    out->leading = r->role == RELAY_LEADING;
    return LOOM_OK;
}
