/*
 * The subscription's state machine (see sub_int.h): each step sends one
 * prepared statement through the store's non-blocking path, watches the
 * socket with uv_poll until loom_store_poll() has the result, then takes
 * the next step. Failures go to a backoff timer that retries the step.
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

static void sub_read(loom_subscription *s);
static void sub_save(loom_subscription *s);
static void sub_load(loom_subscription *s);
static void sub_deliver(loom_subscription *s);
static void sub_arm(loom_subscription *s);
static void sub_drive(loom_subscription *s);
static void sub_commit_send(loom_subscription *s);
static void sub_committed(loom_subscription *s);

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
    default:
        return "delivering a batch";
    }
}

/* Drops the page in hand and every per-page state. */
static void
sub_drop_page(loom_subscription *s)
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
static void
sub_fail(loom_subscription *s, loom__sub_state step, loom_err rc,
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
static void
sub_sent(loom_subscription *s, loom__sub_state step, loom_err rc)
{
    s->state = step;
    if (rc != LOOM_OK) {
        sub_fail(s, step, rc, loom_store_errmsg(s->store));
        return;
    }
    sub_drive(s);
}

void
loom__sub_step(loom_subscription *s, loom__sub_state step)
{
    s->state = LOOM__SUB_IDLE;
    switch (step) {
    case LOOM__SUB_LOAD:
        sub_load(s);
        break;
    case LOOM__SUB_SAVE:
        sub_save(s);
        break;
    case LOOM__SUB_DELIVER:
        sub_deliver(s);
        break;
    case LOOM__SUB_ARM:
        sub_arm(s);
        break;
    case LOOM__SUB_COMMIT:
        sub_commit_send(s);
        break;
    default:
        sub_read(s);
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
static void
sub_load(loom_subscription *s)
{
    const char *values[1] = {s->name};
    int lengths[1] = {(int) strlen(s->name)};

    sub_drop_page(s);
    sub_sent(s, LOOM__SUB_LOAD,
             sub_begin_query(s, &checkpoint_load_stmt, values, lengths));
}

static void
sub_put_be64(char *p, uint64_t v)
{
    for (int j = 0; j < 8; j++)
        p[j] = (char) (v >> (56 - 8 * j));
}

/* Saves next_cursor/next_version as the checkpoint, unconditionally: the
 * start of a from_start subscription. */
static void
sub_save(loom_subscription *s)
{
    char num[24];
    const char *values[4] = {s->name, num, num + 8, num + 16};
    int lengths[4] = {(int) strlen(s->name), 8, 8, 8};

    sub_put_be64(num, s->next_cursor.tx);
    sub_put_be64(num + 8, (uint64_t) s->next_cursor.position);
    sub_put_be64(num + 16, (uint64_t) s->next_version);
    sub_sent(s, LOOM__SUB_SAVE,
             sub_begin_query(s, &checkpoint_save_stmt, values, lengths));
}

static void
sub_arm(loom_subscription *s)
{
    sub_sent(s, LOOM__SUB_ARM,
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
    sub_sent(s, LOOM__SUB_PARKED, rc);
}

static void
sub_horizon(loom_subscription *s)
{
    char num[8];
    const char *values[1] = {num};
    int lengths[1] = {8};

    s->horizon_checked = uv_now(s->rt->loop);
    sub_put_be64(num, s->horizon_ms);
    sub_sent(s, LOOM__SUB_HORIZON,
             sub_begin_query(s, &horizon_stmt, values, lengths));
}

static void
sub_read(loom_subscription *s)
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
    sub_sent(s, LOOM__SUB_READ, rc);
}

static int
sub_wanted(const loom_subscription *s, const char *type)
{
    if (s->n_types == 0)
        return 1;
    for (size_t i = 0; i < s->n_types; i++)
        if (strcmp(s->types[i], type) == 0)
            return 1;
    return 0;
}

/* The events of the delivery in hand: the filtered page, one of them
 * while isolating, or the replayed parked event. */
static const loom_event *const *
sub_unit(loom_subscription *s, size_t *n)
{
    if (s->replaying) {
        s->sel[0] = loom_events_at(s->page, 0);
        *n = 1;
        return s->sel;
    }
    if (s->isolating) {
        *n = 1;
        return s->sel + s->iso;
    }
    *n = s->n_sel;
    return s->sel;
}

/* Where the checkpoint goes once the delivery in hand commits. */
static void
sub_unit_next(const loom_subscription *s, loom_position *pos, int64_t *ver)
{
    if (s->isolating && s->iso + 1 < s->n_sel) {
        const loom_event *ev = s->sel[s->iso];
        pos->tx = s->source == LOOM_SUB_STREAM ? 0 : ev->tx;
        pos->position = s->source == LOOM_SUB_STREAM ? 0 : ev->position;
        *ver = s->source == LOOM_SUB_STREAM ? ev->version : s->version;
        return;
    }
    *pos = s->next_cursor;
    *ver = s->next_version;
}

static loom_err
sub_queue_text(loom_subscription *s, const char *sql, int n,
               const char *const *v)
{
    return loom_tx_exec(&s->tx, sql, n, v);
}

/* Queues the checkpoint's compare-and-set from cursor to the unit's end. */
static loom_err
sub_queue_advance(loom_subscription *s)
{
    loom_position to;
    int64_t ver;

    if (s->volatile_cursor)
        return LOOM_OK; /* kept in memory only */
    sub_unit_next(s, &to, &ver);
    return loom__tx_advance(&s->tx, s->name, s->cursor, s->version, to, ver);
}

/* Queues the parking (or re-parking) of the event in hand. */
static loom_err
sub_queue_park(loom_subscription *s, const loom_event *ev, int repark)
{
    char id[LOOM_UUID_STRLEN];
    const char *why = loom__buf_str(&s->why);

    if (!repark)
        return loom__tx_park(&s->tx, s->name, ev, why, s->attempts);
    loom_uuid_format(&ev->id, id);
    return sub_queue_text(
        s,
        "UPDATE loom.parked SET error = $3, attempts = attempts + 1, "
        "replay_requested_at = NULL, parked_at = now() "
        "WHERE subscription = $1 AND event_id = $2::uuid",
        3, (const char *const[]){s->name, id, why});
}

static loom_err
sub_queue_unpark(loom_subscription *s, const loom_event *ev)
{
    char id[LOOM_UUID_STRLEN];

    loom_uuid_format(&ev->id, id);
    return sub_queue_text(s,
                          "DELETE FROM loom.parked WHERE subscription = $1 "
                          "AND event_id = $2::uuid",
                          2, (const char *const[]){s->name, id});
}

/* Sends s->tx, completed by what `kind` commits. The handler's statements
 * are already queued for ADVANCE and UNPARK; PARK and REPARK start from an
 * empty transaction (the handler's failed). */
static void
sub_commit(loom_subscription *s, loom__sub_commit kind)
{
    size_t n;
    const loom_event *const *unit = sub_unit(s, &n);
    loom_err rc = LOOM_OK;

    s->commit = kind;
    if (kind == LOOM__COMMIT_PARK || kind == LOOM__COMMIT_REPARK) {
        loom__tx_reset(&s->tx);
        s->h_first = s->h_end = 0;
    }
    switch (kind) {
    case LOOM__COMMIT_ADVANCE:
        rc = sub_queue_advance(s);
        break;
    case LOOM__COMMIT_PARK:
        rc = sub_queue_park(s, unit[0], 0);
        if (rc == LOOM_OK)
            rc = sub_queue_advance(s);
        break;
    case LOOM__COMMIT_UNPARK:
        rc = sub_queue_unpark(s, unit[0]);
        break;
    case LOOM__COMMIT_REPARK:
        rc = sub_queue_park(s, unit[0], 1);
        break;
    }
    if (rc == LOOM_OK && loom_tx_count(&s->tx) == 0) {
        sub_committed(s); /* nothing to write: a cursor kept in memory */
        return;
    }
    /* Without the handler's effects, the transaction only records where
     * the subscription is (or that it parked an event). Losing it in a
     * server crash only means delivering again, which at-least-once
     * allows, so it need not wait for its WAL flush: at a steady trickle
     * of events that wait is most of a live subscription's cost, and it
     * slows every writer sharing the WAL. Effects keep the server's
     * setting. */
    if (rc == LOOM_OK && s->h_end == s->h_first && kind != LOOM__COMMIT_UNPARK)
        rc = sub_queue_text(
            s, "SELECT set_config('synchronous_commit', 'off', true)", 0, NULL);
    if (rc != LOOM_OK) {
        sub_sent(s, LOOM__SUB_COMMIT, rc);
        return;
    }
    sub_commit_send(s);
}

/* Sends s->tx as it is: the first time, and again after a failure that
 * says nothing about its statements (a lost connection, say). When the
 * lost attempt did commit, the checkpoint's compare-and-set fails the
 * resend (LM004) and the subscription reloads: no effect twice, and no
 * batch handled twice. */
static void
sub_commit_send(loom_subscription *s)
{
    loom_err rc = loom__store_begin(s->store);

    if (rc == LOOM_OK)
        rc = loom__store_send_tx(s->store, &s->tx);
    sub_sent(s, LOOM__SUB_COMMIT, rc);
}

static void
sub_set_why(loom_subscription *s, const char *fmt, const char *a, const char *b)
{
    loom__buf_reset(&s->why);
    loom__buf_printf(&s->why, fmt, a, b);
    if (s->why.failed) {
        loom__buf_reset(&s->why);
        loom__buf_puts(&s->why, "handler failed");
    }
}

/* The delivery in hand failed (`why` is set): retry it, isolate the
 * failing event, or park it. */
static void
sub_delivery_failed(loom_subscription *s, loom_err rc)
{
    size_t n;
    const loom_event *const *unit = sub_unit(s, &n);
    const char *why = loom__buf_str(&s->why);

    if (s->replaying) {
        loom__log(LOOM_LOG_WARN,
                  "subscription \"%s\": replay of parked event %s@%lld "
                  "failed again (%s); it stays parked",
                  s->name, unit[0]->stream, (long long) unit[0]->version, why);
        sub_commit(s, LOOM__COMMIT_REPARK);
        return;
    }
    s->attempts++;
    if (s->stopping || s->max_attempts == LOOM_SUB_NEVER_PARK ||
        s->attempts < s->max_attempts) {
        sub_fail(s, LOOM__SUB_DELIVER, rc, why);
        return;
    }
    if (!s->isolating && n > 1) {
        loom__log(LOOM_LOG_WARN,
                  "subscription \"%s\": a batch of %zu events failed %u "
                  "times (%s); delivering them one at a time to find the "
                  "failing one",
                  s->name, n, s->attempts, why);
        s->isolating = 1;
        s->iso = 0;
        s->attempts = 0;
        sub_deliver(s);
        return;
    }
    loom__log(LOOM_LOG_WARN,
              "subscription \"%s\": parking event %s@%lld (type %s, "
              "position %lld) after %u failed attempts: %s; `loomctl parked "
              "list %s` shows it, `loomctl parked replay` retries it",
              s->name, unit[0]->stream, (long long) unit[0]->version,
              unit[0]->type, (long long) unit[0]->position, s->attempts, why,
              s->name);
    sub_commit(s, LOOM__COMMIT_PARK);
}

/* Hands the delivery in hand to the handler, then commits. A page with
 * nothing wanted still moves the cursor, so it is committed too. */
static void
sub_deliver(loom_subscription *s)
{
    size_t n;
    const loom_event *const *unit = sub_unit(s, &n);
    loom_err rc = LOOM_OK;

    loom__tx_reset(&s->tx);
    s->h_first = s->h_end = 0;
    if (n > 0) {
        s->state = LOOM__SUB_DELIVER;
        if (s->tx_fn != NULL) {
            /* Checkpoint row first, then the handler's tables: the lock
             * order of loom.checkpoint_claim(). */
            if (!s->volatile_cursor && !s->replaying)
                rc = loom__tx_claim(&s->tx, s->name, s->cursor, s->version);
            if (rc == LOOM_OK && s->search_path != NULL)
                rc = sub_queue_text(
                    s, "SELECT set_config('search_path', $1, true)", 1,
                    (const char *const[]){s->search_path});
            s->h_first = loom_tx_count(&s->tx);
            if (rc == LOOM_OK)
                rc = s->tx_fn(&s->tx, unit, n, s->arg);
            s->h_end = loom_tx_count(&s->tx);
        } else {
            rc = s->fn(unit, n, s->arg);
        }
        s->state = LOOM__SUB_IDLE;
    }
    if (rc != LOOM_OK) {
        sub_set_why(s, "the handler refused the batch (%s)%s",
                    loom_err_name(rc), "");
        sub_delivery_failed(s, rc);
        return;
    }
    sub_commit(s, s->replaying ? LOOM__COMMIT_UNPARK : LOOM__COMMIT_ADVANCE);
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
        sub_read(s);
    } else if (s->listening && !s->armed) {
        sub_arm(s);
    } else {
        /* Not listening yet: the listener's first call (its LISTEN is
         * acknowledged) wakes us, and only then is arming safe. */
        s->state = LOOM__SUB_SLEEP;
    }
}

/* Selects the events of the new page that pass the type filter. */
static void
sub_select(loom_subscription *s)
{
    size_t count = loom_events_count(s->page);

    s->n_sel = 0;
    for (size_t i = 0; i < count; i++) {
        const loom_event *ev = loom_events_at(s->page, i);
        if (sub_wanted(s, ev->type))
            s->sel[s->n_sel++] = ev;
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
        sub_fail(s, step, rc, loom_store_errmsg(s->store));
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
            sub_read(s); /* no replay requested: back to the events */
        else
            sub_caught_up(s);
        return;
    }
    s->attempts = 0;
    s->isolating = 0;
    if (step == LOOM__SUB_PARKED) {
        s->replaying = 1;
        s->parked_due = 1; /* look for the next one afterwards */
        sub_deliver(s);
        return;
    }
    s->armed = 0;
    s->next_cursor = loom_events_next(s->page);
    s->next_version = s->source == LOOM_SUB_STREAM
                          ? loom_events_at(s->page, n - 1)->version
                          : s->version;
    sub_select(s);
    sub_deliver(s);
}

/* Failures that say nothing about the event: the server is short of
 * resources or shutting down, the connection broke, or the transaction
 * lost a serialization or deadlock race. They are retried without
 * counting towards parking. */
static int
sub_transient(const char *sqlstate)
{
    static const char *const classes[] = {"08", "40", "53", "57", "58"};

    for (size_t i = 0; i < sizeof classes / sizeof classes[0]; i++)
        if (strncmp(sqlstate, classes[i], 2) == 0)
            return 1;
    return 0;
}

/* The delivery in hand committed: move on. */
static void
sub_committed(loom_subscription *s)
{
    loom__backoff_reset(&s->backoff);
    if (s->commit == LOOM__COMMIT_ADVANCE || s->commit == LOOM__COMMIT_PARK) {
        sub_unit_next(s, &s->cursor, &s->version);
        s->attempts = 0;
        if (s->isolating && ++s->iso < s->n_sel && !s->stopping) {
            sub_deliver(s);
            return;
        }
    }
    sub_drop_page(s);
    if (s->stopping)
        loom__sub_finish(s);
    else
        sub_read(s);
}

/* The COMMIT in flight finished. */
static void
sub_commit_done(loom_subscription *s)
{
    loom_err rc = loom__store_take_tx(s->store);
    const char *state = loom_store_sqlstate(s->store);
    long failed = s->store->tx_failed;
    int by_handler = failed >= (long) s->h_first && failed < (long) s->h_end;

    if (rc == LOOM_OK) {
        sub_committed(s);
        return;
    }
    if (strcmp(state, "LM004") == 0) {
        /* Someone else moved the checkpoint: this batch rolled back. */
        loom__log(LOOM_LOG_INFO,
                  "subscription \"%s\": the checkpoint was moved by someone "
                  "else (%s); reloading it",
                  s->name, loom_store_errmsg(s->store));
        if (s->stopping) {
            sub_drop_page(s);
            loom__sub_finish(s);
        } else {
            sub_load(s);
        }
        return;
    }
    if (rc != LOOM_ECONN && !s->stopping && by_handler &&
        (s->commit == LOOM__COMMIT_UNPARK ||
         s->commit == LOOM__COMMIT_ADVANCE) &&
        !sub_transient(state)) {
        /* One of the handler's statements failed: its fault, or its
         * event's, so it counts towards parking. */
        sub_set_why(s, "a statement of the handler failed: %s (SQLSTATE %s)",
                    loom_store_errmsg(s->store), state);
        sub_delivery_failed(s, rc);
        return;
    }
    /* Lost connection (the outcome is unknown) or the store's own failure:
     * send the same transaction again. */
    sub_fail(s, LOOM__SUB_COMMIT, rc, loom_store_errmsg(s->store));
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
        sub_fail(s, step, rc,
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
        sub_read(s);
}

/* Moves the step in flight forward; called after a send and whenever the
 * socket is ready. */
static void
sub_drive(loom_subscription *s)
{
    int want = 0;
    loom_err rc = loom_store_poll(s->store, &want);

    if (rc == LOOM_EAGAIN) {
        if (sub_watch(s, want) != 0) {
            /* The result is abandoned with the connection's next reset. */
            sub_fail(s, s->state, LOOM_EIO, "libuv cannot poll the socket");
        }
        return;
    }
    if (s->poll != NULL)
        uv_poll_stop(&s->poll->h);
    /* On LOOM_ECONN the receive below reports the lost connection. */
    switch (s->state) {
    case LOOM__SUB_READ:
    case LOOM__SUB_PARKED:
        sub_read_done(s, s->state);
        break;
    case LOOM__SUB_COMMIT:
        sub_commit_done(s);
        break;
    default:
        sub_query_done(s, s->state);
        break;
    }
}
