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
 * This file holds its timers, leadership, housekeeping (heartbeat and
 * cleanup) and life cycle; relay_fetch.c reads the outbox (and publishes
 * inside the database when it can), relay_publish.c publishes the batch
 * in hand through the transport and records the progress. relay_int.h is
 * what the three share.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "alloc_int.h"
#include "log_int.h"
#include "loom/alloc.h"
#include "outbox_int.h"
#include "pgwire.h"
#include "relay_int.h"
#include "transports/topics/topics_local.h"

#define RELAY_MAX_BATCH   10000
#define RELAY_TICK_MS     1000
#define RELAY_CLEAN_CHUNK 5000

static void relay_lead(loom_relay *r);

static const loom__stmt lead_stmt = {
    LOOM__STMT_OUTBOX_LEAD,
    "loom_outbox_lead",
    "SELECT tx, position FROM loom.outbox_lead($1, $2, $3)",
    3,
    {LOOM__OID_TEXT, LOOM__OID_TEXT, LOOM__OID_TEXT}};

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
void *
loom__relay_calloc(size_t n, size_t size)
{
    void *p = loom_malloc(n * size);

    if (p != NULL)
        memset(p, 0, n * size);
    return p;
}

uint64_t
loom__relay_now(const loom_relay *r)
{
    return uv_now(loom_runtime_loop(r->rt));
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
        loom__relay_fetch(r);
        break;
    case WAIT_BACKOFF:
        /* Retry what failed: the fetch, or the batch in hand (which goes
         * on to its advance once every message is out). */
        if (r->n == 0)
            loom__relay_fetch(r);
        else
            loom__relay_publish(r);
        break;
    case WAIT_NONE:
        break;
    }
}

void
loom__relay_wait_for(loom_relay *r, relay_wait w, uint64_t ms)
{
    r->wait = w;
    r->sleeping = w == WAIT_SLEEP;
    uv_timer_start(&r->timer, relay_on_timer, ms, 0);
}

/* A step failed in a way worth retrying: wait, then try it again. */
void
loom__relay_backoff(loom_relay *r)
{
    loom__relay_wait_for(r, WAIT_BACKOFF, loom__backoff_next(&r->backoff));
}

void
loom__relay_set_error(loom_relay *r, const char *what, const char *detail)
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
void
loom__relay_lost(loom_relay *r, const char *why)
{
    if (r->role == RELAY_LEADING)
        loom__log(LOOM_LOG_WARN,
                  "relay %s: no longer the active relay (%s); standing by",
                  r->outbox, why);
    r->role = RELAY_STANDBY;
    r->armed = 0;
    loom__relay_drop_batch(r);
    if (r->stopping) {
        loom__relay_finish_stop(r);
        return;
    }
    loom__relay_wait_for(r, WAIT_LEAD, r->standby_ms);
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
        loom__relay_fetch(r);
        return;
    }
    /* Busy: the read in flight may have taken its snapshot before the
     * commit that woke us, whose writer took the wake-up row. Dropping
     * the wake-up here left the relay asleep until its next heartbeat
     * read (up to two seconds) with that message unpublished: read once
     * more before sleeping instead, as the consumers do. */
    r->woken = 1;
}

/* A bid to lead failed. A lost connection or a server going down passes
 * and is only noted; a refusal that will repeat (a role without the right
 * to write loom.outbox_relays, a schema too old) is a warning, once until
 * a bid succeeds: else the relay would stand by in silence for ever. */
static void
relay_lead_failed(loom_relay *r, loom_err rc)
{
    const char *state = loom_store_sqlstate(r->conn.store);
    int lasting = rc != LOOM_ECONN && !loom__sqlstate_transient(state);

    loom__log(lasting && !r->lead_warned ? LOOM_LOG_WARN : LOOM_LOG_DEBUG,
              "relay %s: cannot try to lead: %s (SQLSTATE %s)%s", r->outbox,
              loom__pgconn_errmsg(&r->conn), state,
              strcmp(state, "42501") == 0
                  ? "; the relay's role needs loom_writer's rights"
                  : "");
    if (lasting)
        r->lead_warned = 1;
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
        r->lead_warned = 0;
        r->armed = 0;
        r->last_beat_ms = loom__relay_now(r);
        loom__log(LOOM_LOG_INFO,
                  "relay %s: now the active relay (publishing through %s%s)",
                  r->outbox, loom_transport_scheme(r->tp),
                  r->local > 0 ? ", inside the database" : "");
        if (r->listener == NULL &&
            loom_runtime_listen(r->rt, r->channel, relay_on_wake, r,
                                &r->listener) != LOOM_OK)
            r->listener = NULL; /* the poll timer still finds messages */
        if (r->stopping) {
            loom__relay_finish_stop(r);
            return;
        }
        loom__relay_fetch(r);
        return;
    }
    if (rc != LOOM_OK)
        relay_lead_failed(r, rc);
    PQclear(res);
    if (r->stopping) {
        loom__relay_finish_stop(r);
        return;
    }
    loom__relay_wait_for(r, WAIT_LEAD, r->standby_ms);
}

static void
relay_lead(loom_relay *r)
{
    const char *values[3] = {r->outbox, r->name, loom_transport_scheme(r->tp)};
    int lengths[3] = {(int) strlen(values[0]), (int) strlen(values[1]),
                      (int) strlen(values[2])};

    if (r->stopping) {
        loom__relay_finish_stop(r);
        return;
    }
    r->fetching = 1;
    if (loom__pgconn_query(&r->conn, &lead_stmt, values, lengths, relay_on_lead,
                           r) != LOOM_OK) {
        r->fetching = 0;
        loom__relay_wait_for(r, WAIT_LEAD, r->standby_ms);
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
        loom__relay_lost(r, "the connection to PostgreSQL broke");
        return;
    }
    loom__relay_fetch(r);
}

static void
relay_on_beat(void *arg, loom_err rc, PGresult *res)
{
    loom_relay *r = arg;

    r->fetching = 0;
    PQclear(res);
    if (rc == LOOM_ECONN) {
        loom__relay_lost(r, "the connection to PostgreSQL broke");
        return;
    }
    if (r->wait == WAIT_BACKOFF || r->ticket != NULL)
        return; /* a heartbeat sent while publishing is retried */
    loom__relay_fetch(r);
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
    r->last_beat_ms = loom__relay_now(r);
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
int
loom__relay_housekeeping(loom_relay *r)
{
    uint64_t now = loom__relay_now(r);

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
    uint64_t now = loom__relay_now(r);
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
        loom__relay_fetch(r);
    } else if (r->wait == WAIT_BACKOFF && !r->fetching && !r->advancing &&
               !r->conn.busy && r->n > 0)
        relay_send_beat(r);
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
void
loom__relay_finish_stop(loom_relay *r)
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
    loom__relay_finish_stop(r);
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
    r = loom__relay_calloc(1, sizeof *r);
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
    r->last_tick_ms = loom__relay_now(r);
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
    loom__relay_drop_batch(r);
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
