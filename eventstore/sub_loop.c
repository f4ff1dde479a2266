/*
 * The subscription's state machine (see sub_int.h): each step sends one
 * prepared statement (or, to commit, one pipelined transaction) through
 * the store's non-blocking path, watches the socket with uv_poll until
 * loom_store_poll() has the result, then takes the next step. Failures go
 * to a backoff timer that retries the step. This file holds the reads
 * and the other queries; delivering and committing are in sub_deliver.c.
 */
#include <stdio.h>
#include <string.h>

#include "log_int.h"
#include "loom/alloc.h"
#include "pgwire.h"
#include "sub_int.h"
#include "tx_int.h"

static const loom__stmt checkpoint_load_stmt = {
    LOOM__STMT_CHECKPOINT_LOAD,
    "loom_checkpoint_load",
    "SELECT tx, position, version FROM loom.checkpoints WHERE name = $1",
    1,
    {LOOM__OID_TEXT}};

static const loom__stmt checkpoint_save_stmt = {
    LOOM__STMT_CHECKPOINT_SAVE,
    "loom_checkpoint_save",
    "INSERT INTO loom.checkpoints AS c (name, tx, position, version) "
    "VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO UPDATE "
    "SET tx = EXCLUDED.tx, position = EXCLUDED.position, "
    "version = EXCLUDED.version, updated_at = now()",
    4,
    {LOOM__OID_TEXT, LOOM__OID_XID8, LOOM__OID_INT8, LOOM__OID_INT8}};

static const loom__stmt parked_load_stmt = {
    LOOM__STMT_PARKED_LOAD,
    "loom_parked_load",
    "SELECT e.position, e.tx, e.stream, e.version, e.event_id, e.type, "
    "e.schema_version, e.data, e.metadata, e.recorded_at "
    "FROM loom.parked p JOIN loom.events e ON e.event_id = p.event_id "
    "WHERE p.subscription = $1 AND p.replay_requested_at IS NOT NULL "
    "ORDER BY p.position LIMIT 1",
    1,
    {LOOM__OID_TEXT}};

static const loom__stmt horizon_stmt = {
    LOOM__STMT_HORIZON,
    "loom_horizon",
    "SELECT waiting::text, coalesce(pid::text, ''), application, state, "
    "round(xact_age)::text, coalesce(gid, '') "
    "FROM loom.horizon_blocker($1 * interval '1 millisecond')",
    1,
    {LOOM__OID_INT8}};

static const loom__stmt arm_wakeup_stmt = {
    LOOM__STMT_ARM_WAKEUP,
    "loom_arm_wakeup",
    "SELECT loom.arm_wakeup('" LOOM__SUB_CHANNEL "')",
    0,
    {0}};

static void sub_save(loom_subscription *s);
static void sub_arm(loom_subscription *s);
static void sub_drive(loom_subscription *s);

static void
sub_on_poll(uv_poll_t *h, int status, int events)
{
    sub_poll *p = h->data;

    (void) status; /* an error shows in loom_store_poll() */
    (void) events;
    sub_drive(p->sub);
}

/* Watches the store's socket for `want` (LOOM_POLL_*). A new socket (after
 * a reconnect) gets a new handle. Returns 0, or -1 when libuv refused. */
static int
sub_watch(loom_subscription *s, int want)
{
    int fd = loom_store_socket(s->store);
    int ev = (want & LOOM_POLL_READ ? UV_READABLE : 0) |
             (want & LOOM_POLL_WRITE ? UV_WRITABLE : 0);

    if (s->poll != NULL && s->poll_fd != fd)
        loom__sub_close_poll(s);
    if (s->poll == NULL) {
        sub_poll *p = loom_malloc(sizeof *p);
        if (p == NULL)
            return -1;
        p->sub = s;
        if (uv_poll_init(s->rt->loop, &p->h, fd) != 0) {
            loom_free(p);
            return -1;
        }
        p->h.data = p;
        s->open_handles++;
        s->poll = p;
        s->poll_fd = fd;
    }
    return uv_poll_start(&s->poll->h, ev, sub_on_poll) == 0 ? 0 : -1;
}

static const char *
sub_step_name(loom__sub_state st)
{
    switch (st) {
    case LOOM__SUB_LOAD:
        return "loading the checkpoint";
    case LOOM__SUB_READ:
        return "reading events";
    case LOOM__SUB_SAVE:
        return "saving the checkpoint";
    case LOOM__SUB_ARM:
        return "arming the wake-up";
    case LOOM__SUB_COMMIT:
        return "committing a batch";
    case LOOM__SUB_PARKED:
        return "loading a parked event";
    case LOOM__SUB_HORIZON:
        return "checking the horizon";
    case LOOM__SUB_CONNECT:
        return "reconnecting";
    default:
        return "delivering a batch";
    }
}

/* Drops the page in hand and every per-page state. */
void
loom__sub_drop_page(loom_subscription *s)
{
    loom_events_free(s->page);
    s->page = NULL;
    s->isolating = 0;
    s->replaying = 0;
    s->iso = 0;
    s->n_sel = 0;
    s->attempts = 0;
}

/* A step failed: log, then retry it after the backoff (unless stopping,
 * when the batch in hand is left for the next run). The poll handle goes:
 * the next store call reconnects, on a new socket. */
void
loom__sub_fail(loom_subscription *s, loom__sub_state step, loom_err rc,
               const char *why)
{
    uint64_t ms;

    loom__sub_close_poll(s);
    if (s->stopping) {
        loom__log(LOOM_LOG_WARN,
                  "subscription \"%s\": %s failed while "
                  "stopping (%s: %s); the batch will be delivered again "
                  "by the next run",
                  s->name, sub_step_name(step), loom_err_name(rc), why);
        loom__sub_finish(s);
        return;
    }
    ms = loom__backoff_next(&s->backoff);
    loom__log(LOOM_LOG_WARN,
              "subscription \"%s\": %s failed (%s: %s); "
              "retrying in %llu ms",
              s->name, sub_step_name(step), loom_err_name(rc), why,
              (unsigned long long) ms);
    s->state = LOOM__SUB_BACKOFF;
    s->retry = step;
    uv_timer_start(&s->timer, loom__sub_on_timer, ms, 0);
}

/* After a _send: the step is in flight, or failed at once. */
void
loom__sub_sent(loom_subscription *s, loom__sub_state step, loom_err rc)
{
    s->state = step;
    if (rc != LOOM_OK) {
        loom__sub_fail(s, step, rc, loom_store_errmsg(s->store));
        return;
    }
    sub_drive(s);
}

/* Reconnects a broken connection on the loop, then takes `step`. */
static void
sub_connect(loom_subscription *s, loom__sub_state step)
{
    loom_err rc;

    loom__sub_close_poll(s);
    s->retry = step;
    s->state = LOOM__SUB_CONNECT;
    rc = loom__store_reconnect_start(s->store);
    if (rc != LOOM_OK) {
        loom__sub_fail(s, step, rc, loom_store_errmsg(s->store));
        return;
    }
    sub_drive(s);
}

void
loom__sub_step(loom_subscription *s, loom__sub_state step)
{
    s->state = LOOM__SUB_IDLE;
    if (PQstatus(s->store->conn) == CONNECTION_BAD) {
        sub_connect(s, step);
        return;
    }
    switch (step) {
    case LOOM__SUB_LOAD:
        loom__sub_load(s);
        break;
    case LOOM__SUB_SAVE:
        sub_save(s);
        break;
    case LOOM__SUB_DELIVER:
        loom__sub_deliver(s);
        break;
    case LOOM__SUB_ARM:
        sub_arm(s);
        break;
    case LOOM__SUB_COMMIT:
        loom__sub_commit_send(s);
        break;
    default:
        loom__sub_read(s);
        break;
    }
}

void
loom__sub_on_timer(uv_timer_t *t)
{
    loom_subscription *s = t->data;

    loom__sub_step(s, s->retry);
}

static loom_err
sub_begin_query(loom_subscription *s, const loom__stmt *st,
                const char *const *values, const int *lengths)
{
    loom_err rc = loom__store_begin(s->store);

    if (rc == LOOM_OK)
        rc = loom__store_send(s->store, LOOM__OP_QUERY, st, values, lengths);
    return rc;
}

/* Loads the checkpoint, dropping whatever was in hand: the position it
 * covers is whatever committed last. */
void
loom__sub_load(loom_subscription *s)
{
    const char *values[1] = {s->name};
    int lengths[1] = {(int) strlen(s->name)};

    loom__sub_drop_page(s);
    loom__sub_sent(s, LOOM__SUB_LOAD,
                   sub_begin_query(s, &checkpoint_load_stmt, values, lengths));
}

/* Saves next_cursor/next_version as the checkpoint, unconditionally: the
 * start of a from_start subscription. */
static void
sub_save(loom_subscription *s)
{
    char num[24];
    const char *values[4] = {s->name, num, num + 8, num + 16};
    int lengths[4] = {(int) strlen(s->name), 8, 8, 8};

    loom__pg_put_be64(num, s->next_cursor.tx);
    loom__pg_put_be64(num + 8, (uint64_t) s->next_cursor.position);
    loom__pg_put_be64(num + 16, (uint64_t) s->next_version);
    loom__sub_sent(s, LOOM__SUB_SAVE,
                   sub_begin_query(s, &checkpoint_save_stmt, values, lengths));
}

static void
sub_arm(loom_subscription *s)
{
    loom__sub_sent(s, LOOM__SUB_ARM,
                   sub_begin_query(s, &arm_wakeup_stmt, NULL, NULL));
}

/* Loads the first parked event whose replay was requested. */
static void
sub_parked_load(loom_subscription *s)
{
    const char *values[1] = {s->name};
    int lengths[1] = {(int) strlen(s->name)};
    loom_err rc = loom__store_begin(s->store);

    s->parked_due = 0;
    s->parked_checked = uv_now(s->rt->loop);
    if (rc == LOOM_OK) {
        s->store->read_after.tx = 0;
        s->store->read_after.position = 0;
        rc = loom__store_send(s->store, LOOM__OP_EVENTS, &parked_load_stmt,
                              values, lengths);
    }
    loom__sub_sent(s, LOOM__SUB_PARKED, rc);
}

static void
sub_horizon(loom_subscription *s)
{
    char num[8];
    const char *values[1] = {num};
    int lengths[1] = {8};

    s->horizon_checked = uv_now(s->rt->loop);
    loom__pg_put_be64(num, s->horizon_ms);
    loom__sub_sent(s, LOOM__SUB_HORIZON,
                   sub_begin_query(s, &horizon_stmt, values, lengths));
}

void
loom__sub_read(loom_subscription *s)
{
    loom_err rc;

    if (s->parked_due && !s->stopping) {
        sub_parked_load(s);
        return;
    }
    switch (s->source) {
    case LOOM_SUB_CATEGORY:
        rc = loom_store_read_category_send(s->store, s->target, s->cursor,
                                           s->group.size ? &s->group : NULL,
                                           s->batch);
        break;
    case LOOM_SUB_STREAM:
        rc = loom_store_read_stream_send(s->store, s->target, s->version + 1,
                                         LOOM_FORWARD, s->batch);
        break;
    default:
        rc = loom_store_read_all_send(s->store, s->cursor, s->batch);
        break;
    }
    s->stats.reads++;
    loom__sub_sent(s, LOOM__SUB_READ, rc);
}

/* An empty page: caught up for now. */
static void
sub_caught_up(loom_subscription *s)
{
    if (s->horizon_ms > 0 &&
        uv_now(s->rt->loop) - s->horizon_checked >= s->horizon_ms) {
        sub_horizon(s);
    } else if (s->woken) {
        /* Woken while busy: a NOTIFY disarmed the wake-up, or one may have
         * been missed. Read again, and arm again before sleeping. */
        s->woken = 0;
        s->armed = 0;
        loom__sub_read(s);
    } else if (s->listening && !s->armed) {
        sub_arm(s);
    } else {
        /* Not listening yet: the listener's first call (its LISTEN is
         * acknowledged) wakes us, and only then is arming safe. */
        s->state = LOOM__SUB_SLEEP;
    }
}

/* A short page read everything committed below the horizon, as an empty
 * one would have: reading again would only find it empty. Skipping that
 * read is as safe as sleeping after an empty page (events held back by an
 * open transaction wait for the next wake-up, the poll or the horizon
 * check either way). A replayed parked event says nothing of the sort. */
void
loom__sub_read_next(loom_subscription *s)
{
    if (s->short_page && !s->parked_due) {
        s->short_page = 0;
        sub_caught_up(s);
    } else {
        loom__sub_read(s);
    }
}

static void
sub_read_done(loom_subscription *s, loom__sub_state step)
{
    loom_err rc = loom_store_events_recv(s->store, &s->page);
    size_t n;

    if (rc != LOOM_OK) {
        if (step == LOOM__SUB_PARKED)
            s->parked_due = 1; /* look again after the backoff */
        loom__sub_fail(s, step, rc, loom_store_errmsg(s->store));
        return;
    }
    n = loom_events_count(s->page);
    if (n == 0) {
        loom_events_free(s->page);
        s->page = NULL;
        loom__backoff_reset(&s->backoff);
        if (s->stopping)
            loom__sub_finish(s);
        else if (step == LOOM__SUB_PARKED)
            loom__sub_read(s); /* no replay requested: back to the events */
        else
            sub_caught_up(s);
        return;
    }
    s->attempts = 0;
    s->isolating = 0;
    s->short_page = step != LOOM__SUB_PARKED && n < s->batch;
    if (step == LOOM__SUB_PARKED) {
        s->replaying = 1;
        s->parked_due = 1; /* look for the next one afterwards */
        loom__sub_deliver(s);
        return;
    }
    /* A page read after arming (events committed between the last read
     * and the arm, or hidden from it by an older open transaction) leaves
     * the arm standing, and the subscription sleeps after delivering it.
     * An append that commits later either finds the arm and notifies,
     * waking us (woken: we read and arm again), or checked before the arm
     * and commits after this read: the window schema 2 leaves to the
     * poll, the same as after an empty read. Arming again would not close
     * it (the row is there already); only another read would, one per
     * wake-up. */
    s->next_cursor = loom_events_next(s->page);
    s->next_version = s->source == LOOM_SUB_STREAM
                          ? loom_events_at(s->page, n - 1)->version
                          : s->version;
    loom__sub_select(s);
    loom__sub_deliver(s);
}

/* Logs what holds committed events back, if anything does. */
static void
sub_horizon_report(loom_subscription *s, PGresult *r)
{
    const char *waiting, *pid, *app, *st, *age, *gid;

    if (PQntuples(r) != 1 || PQnfields(r) != 6)
        return;
    waiting = PQgetvalue(r, 0, 0);
    pid = PQgetvalue(r, 0, 1);
    app = PQgetvalue(r, 0, 2);
    st = PQgetvalue(r, 0, 3);
    age = PQgetvalue(r, 0, 4);
    gid = PQgetvalue(r, 0, 5);
    if (gid[0] != '\0')
        loom__log(LOOM_LOG_WARN,
                  "subscription \"%s\": %s committed events wait behind "
                  "prepared transaction \"%s\" (prepared %s s ago); readers "
                  "see them only when it ends: COMMIT PREPARED or ROLLBACK "
                  "PREPARED '%s'",
                  s->name, waiting, gid, age, gid);
    else
        loom__log(LOOM_LOG_WARN,
                  "subscription \"%s\": %s committed events wait behind the "
                  "transaction of process %s (application \"%s\", %s, open "
                  "%s s); readers see them only when it ends: finish it, or "
                  "SELECT pg_terminate_backend(%s)",
                  s->name, waiting, pid, app, st, age, pid);
}

/* A query (load, save, arm, horizon) finished: take its result. */
static void
sub_query_done(loom_subscription *s, loom__sub_state step)
{
    PGresult *r = NULL;
    loom_err rc = loom__store_take(s->store, LOOM__OP_QUERY, &r);
    int64_t pos = 0, ver = -1;
    uint64_t tx = 0;

    if (rc == LOOM_OK && step == LOOM__SUB_LOAD && PQntuples(r) == 1 &&
        (!loom__pg_get_u64(r, 0, 0, &tx) || !loom__pg_get_i64(r, 0, 1, &pos) ||
         !loom__pg_get_i64(r, 0, 2, &ver)))
        rc = LOOM_ESCHEMA;
    if (rc == LOOM_OK && step == LOOM__SUB_HORIZON)
        sub_horizon_report(s, r);
    PQclear(r);
    if (rc != LOOM_OK) {
        loom__sub_fail(s, step, rc,
                       rc == LOOM_ESCHEMA && step == LOOM__SUB_LOAD
                           ? "bad loom.checkpoints row"
                           : loom_store_errmsg(s->store));
        return;
    }
    loom__backoff_reset(&s->backoff);
    if (step == LOOM__SUB_LOAD) {
        s->cursor.tx = tx;
        s->cursor.position = pos;
        s->version = ver;
    } else if (step == LOOM__SUB_SAVE) {
        s->cursor = s->next_cursor;
        s->version = s->next_version;
    } else if (step == LOOM__SUB_ARM) {
        s->armed = 1;
    }
    if (s->stopping)
        loom__sub_finish(s);
    else if (step == LOOM__SUB_HORIZON)
        sub_caught_up(s);
    else
        loom__sub_read(s);
}

/* The step's socket work is over: stop watching, and close the handle now
 * if libpq has closed (or replaced) the socket. Closing a uv_poll removes
 * its fd number from epoll; done later, after another connection of this
 * process was given the same number, it would remove that one's
 * registration and leave it waiting forever (outbox/pgconn.c too). */
static void
sub_unwatch(loom_subscription *s)
{
    if (s->poll == NULL)
        return;
    if (PQstatus(s->store->conn) != CONNECTION_OK ||
        PQsocket(s->store->conn) != s->poll_fd)
        loom__sub_close_poll(s);
    else
        uv_poll_stop(&s->poll->h);
}

/* Moves the step in flight forward; called after a send and whenever the
 * socket is ready. */
static void
sub_drive(loom_subscription *s)
{
    int want = 0;
    loom_err rc;

    if (s->state == LOOM__SUB_CONNECT) {
        rc = loom__store_reconnect_poll(s->store, &want);
        if (rc == LOOM_EAGAIN) {
            if (sub_watch(s, want) != 0)
                loom__sub_fail(s, s->retry, LOOM_EIO,
                               "libuv cannot poll the socket");
            return;
        }
        sub_unwatch(s);
        if (rc != LOOM_OK) {
            loom__sub_fail(s, s->retry, rc, loom_store_errmsg(s->store));
            return;
        }
        loom__log(LOOM_LOG_INFO, "subscription \"%s\": reconnected", s->name);
        loom__sub_step(s, s->retry);
        return;
    }
    rc = loom_store_poll(s->store, &want);

    if (rc == LOOM_EAGAIN) {
        if (sub_watch(s, want) != 0) {
            /* The result is abandoned with the connection's next reset. */
            loom__sub_fail(s, s->state, LOOM_EIO,
                           "libuv cannot poll the socket");
        }
        return;
    }
    sub_unwatch(s);
    /* On LOOM_ECONN the receive below reports the lost connection. */
    switch (s->state) {
    case LOOM__SUB_READ:
    case LOOM__SUB_PARKED:
        sub_read_done(s, s->state);
        break;
    case LOOM__SUB_COMMIT:
        loom__sub_commit_done(s);
        break;
    default:
        sub_query_done(s, s->state);
        break;
    }
}
