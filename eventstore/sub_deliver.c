/*
 * Delivering a batch and committing it (see sub_int.h): what the handler
 * is given (the filtered page, one event while isolating a failure, or a
 * parked event replayed), the transaction that follows it (the handler's
 * statements, then the checkpoint's compare-and-set, a parking or an
 * unparking), and what a failure leads to: retry, isolation, parking.
 */
#include <stdio.h>
#include <string.h>

#include "log_int.h"
#include "sub_int.h"
#include "tx_int.h"

static void sub_committed(loom_subscription *s);

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
        loom__sub_sent(s, LOOM__SUB_COMMIT, rc);
        return;
    }
    loom__sub_commit_send(s);
}

/* Sends s->tx as it is: the first time, and again after a failure that
 * says nothing about its statements (a lost connection, say). When the
 * lost attempt did commit, the checkpoint's compare-and-set fails the
 * resend (LM004) and the subscription reloads: no effect twice, and no
 * batch handled twice. */
void
loom__sub_commit_send(loom_subscription *s)
{
    loom_err rc = loom__store_begin(s->store);

    if (rc == LOOM_OK)
        rc = loom__store_send_tx(s->store, &s->tx);
    loom__sub_sent(s, LOOM__SUB_COMMIT, rc);
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
        loom__sub_fail(s, LOOM__SUB_DELIVER, rc, why);
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
        loom__sub_deliver(s);
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
void
loom__sub_deliver(loom_subscription *s)
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

/* Selects the events of the new page that pass the type filter. */
void
loom__sub_select(loom_subscription *s)
{
    size_t count = loom_events_count(s->page);

    s->n_sel = 0;
    for (size_t i = 0; i < count; i++) {
        const loom_event *ev = loom_events_at(s->page, i);
        if (sub_wanted(s, ev->type))
            s->sel[s->n_sel++] = ev;
    }
}

/* The delivery in hand committed: move on. */
static void
sub_committed(loom_subscription *s)
{
    loom__backoff_reset(&s->backoff);
    if (s->commit == LOOM__COMMIT_ADVANCE)
        s->stats.events += s->isolating ? 1 : s->n_sel;
    else if (s->commit == LOOM__COMMIT_UNPARK)
        s->stats.events++;
    else if (s->commit == LOOM__COMMIT_PARK)
        s->stats.parked++;
    if (s->commit == LOOM__COMMIT_ADVANCE || s->commit == LOOM__COMMIT_PARK) {
        sub_unit_next(s, &s->cursor, &s->version);
        s->attempts = 0;
        if (s->isolating && ++s->iso < s->n_sel && !s->stopping) {
            loom__sub_deliver(s);
            return;
        }
    }
    s->stats.batches++;
    loom__sub_drop_page(s);
    if (s->stopping)
        loom__sub_finish(s);
    else
        loom__sub_read_next(s);
}

/* The COMMIT in flight finished. */
void
loom__sub_commit_done(loom_subscription *s)
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
            loom__sub_drop_page(s);
            loom__sub_finish(s);
        } else {
            loom__sub_load(s);
        }
        return;
    }
    if (rc != LOOM_ECONN && !s->stopping && by_handler &&
        (s->commit == LOOM__COMMIT_UNPARK ||
         s->commit == LOOM__COMMIT_ADVANCE) &&
        !loom__sqlstate_transient(state)) {
        /* One of the handler's statements failed: its fault, or its
         * event's, so it counts towards parking. */
        sub_set_why(s, "a statement of the handler failed: %s (SQLSTATE %s)",
                    loom_store_errmsg(s->store), state);
        sub_delivery_failed(s, rc);
        return;
    }
    /* Lost connection (the outcome is unknown) or the store's own failure:
     * send the same transaction again. */
    loom__sub_fail(s, LOOM__SUB_COMMIT, rc, loom_store_errmsg(s->store));
}
