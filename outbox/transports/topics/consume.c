/*
 * A consumer's data path, on its own connection, one step at a time:
 *
 *   IDLE ─▶ COMMIT   when acknowledged or failed messages wait (at once in
 *                    auto-commit mode, on loom_topics_commit() otherwise)
 *        ─▶ RETRIES  every poll_ms: the group's redeliveries that are due
 *        ─▶ FETCH    fresh messages from the assigned partitions, while
 *                    fewer than max_in_flight are with the handler
 *   FETCH short (every partition drained) ─▶ ARM (wake me on the topics'
 *        channels) ─▶ FETCH once more ─▶ SLEEP until a wake-up or poll_ms;
 *        still armed and nothing announced, it sleeps without a read
 *   any failure ─▶ BACKOFF ─▶ IDLE
 *
 * Every fetched message becomes an entry that stays in its batch (whose
 * rows it points into) until the commit that settles it (consume_commit.c
 * says what a commit holds).
 *
 * This file holds the loop above, its sleeping and wake-ups, the entries'
 * bookkeeping, the handler's acknowledgements and the consumer's life
 * cycle; consume_fetch.c fetches and delivers, consume_commit.c commits
 * and runs the transactional handler. consume_int.h is what they share.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "alloc_int.h"
#include "consume_int.h"
#include "log_int.h"
#include "loom/alloc.h"
#include "pgwire.h"

/* Arms the channels, then waits for every publish transaction of their
 * topics still in flight (each holds its topic's lock shared until it
 * commits: produce.c). Without that wait, a publish that checked for an
 * armed channel before this transaction committed, and commits after the
 * fetch that follows it, would wake nobody and wait for the poll. Locks
 * are taken in ascending topic id, as publishers take theirs, so the two
 * never deadlock; a publish that asks after this one queues behind it and
 * then finds the channel armed. */
static const loom__stmt arm_stmt = {
    LOOM__STMT_TOPIC_ARM,
    "loom_topic_arm",
    "SELECT count(*) FROM (SELECT loom.arm_wakeup(ch), "
    "pg_advisory_xact_lock(" LOOM__TP_WAKE_LOCK ", substr(ch, 12)::int) "
    "FROM (SELECT ch FROM unnest($1::text[]) ch ORDER BY substr(ch, 12)::int "
    "OFFSET 0) o) a",
    1,
    {LOOM__OID_ATEXT}};

int64_t
loom__tp_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- entries and batches ------------------------------------------------ */

void
loom__tp_batch_free(tp_consumer *c, tp_batch *b)
{
    /* A batch may go while still named as the one in hand: its last
     * entry settled by the commit of an isolated message (tx mode), or
     * an at-most-once batch of only delayed or gone entries, freed by the
     * commit that precedes its delivery. Both used the freed batch. */
    if (c->tx_batch == b) {
        c->tx_batch = NULL;
        c->isolating = 0;
    }
    if (c->deliver_after == b)
        c->deliver_after = NULL;
    for (tp_batch **pp = &c->batches; *pp != NULL; pp = &(*pp)->next)
        if (*pp == b) {
            *pp = b->next;
            break;
        }
    for (size_t i = 0; i < b->n; i++) {
        loom_free(b->entries[i].error);
        loom_free(b->entries[i].hdr_mem);
        b->entries[i].magic = 0;
    }
    PQclear(b->res);
    loom_free(b->entries);
    loom_free(b);
}

/* A batch goes once every entry is done and none is still linked in its
 * partition's list (which runs through later batches too). */
static void
batch_maybe_free(tp_consumer *c, tp_batch *b)
{
    if (b->unfinished == 0 && b->unresolved == 0 && b->linked == 0)
        loom__tp_batch_free(c, b);
}

/* The entry needs nothing more from us. */
void
loom__tp_entry_done(tp_consumer *c, tp_entry *e)
{
    if (e->state == TP_E_DONE)
        return;
    if (e->state != TP_E_HANDLER)
        c->pending--;
    e->state = TP_E_DONE;
    e->batch->unfinished--;
    batch_maybe_free(c, e->batch);
}

/* The handler has given the entry back (ack or fail). */
void
loom__tp_entry_resolved(tp_consumer *c, tp_entry *e, int state)
{
    e->state = state;
    c->pending++;
    c->in_flight--;
    e->batch->unresolved--;
}

/* Unlinks the done entries at the head of the partition's list. */
void
loom__tp_part_pop_done(tp_consumer *c, tp_part *p)
{
    while (p->head != NULL && p->head->state == TP_E_DONE) {
        tp_entry *e = p->head;
        p->head = e->next;
        if (p->head == NULL)
            p->tail = NULL;
        e->next = NULL;
        e->batch->linked--;
        batch_maybe_free(c, e->batch);
    }
}

void
loom__tp_consume_drop_part(tp_consumer *c, tp_part *p)
{
    for (tp_entry *e = p->head, *next; e != NULL; e = next) {
        next = e->next;
        e->next = NULL;
        e->batch->linked--;
    }
    p->head = p->tail = NULL;
    /* Whatever of it is in hand is someone else's now: nothing of it
     * commits; what the handler still holds is forgotten when given
     * back. */
    for (tp_batch *b = c->batches, *next; b != NULL; b = next) {
        next = b->next;
        for (size_t i = 0; i < b->n; i++) {
            tp_entry *e = &b->entries[i];
            if (e->part != p)
                continue;
            e->part = NULL;
            if (e->state == TP_E_HANDLER && c->tx_fn != NULL) {
                /* No handler holds it (the transactional one returns
                 * before this): forget it. */
                e->state = TP_E_DONE;
                c->in_flight--;
                b->unresolved--;
                b->unfinished--;
            } else if (e->state != TP_E_HANDLER && e->state != TP_E_DONE &&
                       !e->queued) {
                e->state = TP_E_DONE;
                c->pending--;
                b->unfinished--;
            }
            /* A settled entry in the commit in flight stays until that
             * commit returns (the fence fails it; c_committed then lets
             * the entry go). */
        }
        batch_maybe_free(c, b);
    }
    loom_free(p->topic);
    loom_free(p);
}

/* ---- listening ---------------------------------------------------------- */

static void
c_on_wake(void *arg, const char *channel, const char *payload)
{
    tp_consumer *c = arg;

    (void) channel;
    (void) payload;
    c->armed = 0;
    c->caught_up = 0;
    if (c->state == TP_C_SLEEP) {
        uv_timer_stop(&c->timer);
        c->state = TP_C_IDLE;
        loom__tp_c_next(c);
    } else {
        c->woken = 1;
    }
}

void
loom__tp_consume_listen(tp_consumer *c)
{
    /* One listener per assigned topic: close the others, open the new. */
    for (size_t i = 0; i < c->n_listeners;) {
        int used = 0;
        for (tp_part *p = c->parts; p != NULL; p = p->next)
            used |= p->topic_id == c->listen_ids[i];
        if (used) {
            i++;
            continue;
        }
        loom_listener_close(c->listeners[i]);
        c->listeners[i] = c->listeners[c->n_listeners - 1];
        c->listen_ids[i] = c->listen_ids[c->n_listeners - 1];
        c->n_listeners--;
    }
    for (tp_part *p = c->parts; p != NULL; p = p->next) {
        char chan[32];
        size_t i;
        loom_listener **ls;
        int32_t *ids;

        for (i = 0; i < c->n_listeners; i++)
            if (c->listen_ids[i] == p->topic_id)
                break;
        if (i < c->n_listeners)
            continue;
        ls = loom_realloc(c->listeners, (i + 1) * sizeof *ls);
        if (ls == NULL)
            return;
        c->listeners = ls;
        ids = loom_realloc(c->listen_ids, (i + 1) * sizeof *ids);
        if (ids == NULL)
            return;
        c->listen_ids = ids;
        snprintf(chan, sizeof chan, "loom_topic_%d", (int) p->topic_id);
        if (loom_runtime_listen(c->tr->rt, chan, c_on_wake, c, &ls[i]) !=
            LOOM_OK)
            return; /* the poll timer still finds new messages */
        ids[i] = p->topic_id;
        c->n_listeners++;
    }
    c->armed = 0;
    c->caught_up = 0;
}

/* ---- sleeping ------------------------------------------------------------ */

static void
c_on_timer(uv_timer_t *t)
{
    tp_consumer *c = t->data;

    if (c->state == TP_C_SLEEP || c->state == TP_C_BACKOFF)
        c->state = TP_C_IDLE;
    c->caught_up = 0; /* the poll: read whatever woke nobody */
    loom__tp_c_next(c);
}

static void
c_sleep(tp_consumer *c)
{
    c->state = TP_C_SLEEP;
    uv_timer_start(&c->timer, c_on_timer, c->topts.poll_ms, 0);
}

static void c_armed(void *arg, loom_err rc, PGresult *r);

/* Caught up: ask publishers to wake us, then read once more (a message
 * committed between the empty fetch and the arming is found then). */
static void
c_arm(tp_consumer *c)
{
    loom__buf arr = LOOM__BUF_INIT;
    const char *values[1];
    int lengths[1];
    loom_err rc;

    if (c->armed || c->n_listeners == 0) {
        c_sleep(c);
        return;
    }
    loom__pg_array_begin(&arr, LOOM__OID_TEXT, (uint32_t) c->n_listeners);
    for (size_t i = 0; i < c->n_listeners; i++) {
        char chan[32];
        snprintf(chan, sizeof chan, "loom_topic_%d", (int) c->listen_ids[i]);
        loom__pg_array_add(&arr, chan, strlen(chan));
    }
    values[0] = arr.data;
    lengths[0] = (int) arr.len;
    rc = arr.failed ? LOOM_ENOMEM
                    : loom__pgconn_query(&c->dconn, &arm_stmt, values, lengths,
                                         c_armed, c);
    loom__buf_free(&arr);
    if (rc != LOOM_OK) {
        c_sleep(c);
        return;
    }
    c->state = TP_C_ARM;
}

static void
c_armed(void *arg, loom_err rc, PGresult *r)
{
    tp_consumer *c = arg;

    PQclear(r);
    c->state = TP_C_IDLE;
    /* Armed (or woken meanwhile): read once more, for what committed
     * between the last read and the arming; empty, that read sleeps. */
    if (rc == LOOM_OK && !c->woken)
        c->armed = 1;
    c->woken = 0;
    c->caught_up = 0;
    loom__tp_c_next(c);
}

/* ---- the loop ------------------------------------------------------------ */

void
loom__tp_c_fail(tp_consumer *c, const char *what)
{
    uint64_t ms = loom__backoff_next(&c->backoff);

    if (what != NULL)
        loom__log(LOOM_LOG_WARN,
                  "topics group \"%s\": %s failed: %s; again in %llu ms",
                  c->group, what, loom__pgconn_errmsg(&c->dconn),
                  (unsigned long long) ms);
    c->state = TP_C_BACKOFF;
    uv_timer_start(&c->timer, c_on_timer, ms, 0);
}

static void
c_finish_stop(tp_consumer *c)
{
    c->state = TP_C_DONE;
    uv_timer_stop(&c->timer);
    uv_timer_stop(&c->heartbeat);
    loom__tp_maybe_stopped(c->tr);
}

void
loom__tp_c_next(tp_consumer *c)
{
    uint64_t now;

    if (c->state != TP_C_IDLE || c->closing)
        return;
    /* Settle first: commits free the handler's budget and the memory. */
    if ((c->pending > 0 || c->deliver_after != NULL) &&
        (!c->topts.manual_commit || c->commit_asked || c->stopping ||
         c->deliver_after != NULL)) {
        c->commit_asked = 0;
        if (loom__tp_c_commit(c, 0))
            return;
    }
    if (c->deliver_after != NULL) {
        /* At most once: its commit had nothing to write (say, the batch
         * was only redeliveries already settled). */
        loom__tp_c_after_commit(c);
        if (c->state != TP_C_IDLE)
            return;
    }
    if (c->stopping) {
        /* What the handler still holds is redelivered after a restart. */
        c_finish_stop(c);
        return;
    }
    if (c->tx_batch != NULL) {
        /* A transactional batch whose commit failed: its effects rolled
         * back, so the handler runs again for what is still ours. */
        loom__tp_c_tx_run(c);
        return;
    }
    if (c->n_parts == 0) {
        c_sleep(c);
        return;
    }
    if (c->in_flight >= c->max_in_flight)
        return; /* an acknowledgement kicks us again */
    now = uv_now(loom_runtime_loop(c->tr->rt));
    if (now >= c->retries_due) {
        c->retries_due = now + c->topts.poll_ms;
        loom__tp_c_send_fetch(c, 1);
        return;
    }
    if (c->caught_up) {
        c_arm(c); /* armed already: sleeps */
        return;
    }
    loom__tp_c_send_fetch(c, 0);
}

void
loom__tp_consume_kick(tp_consumer *c)
{
    if (c->state == TP_C_SLEEP) {
        uv_timer_stop(&c->timer);
        c->state = TP_C_IDLE;
    }
    loom__tp_c_next(c);
}

/* ---- acknowledgements ---------------------------------------------------- */

static tp_entry *
c_entry(tp_consumer *c, const loom_message *m)
{
    tp_entry *e = (tp_entry *) (void *) m;

    return e->magic == TP_ENTRY_MAGIC && e->c == c ? e : NULL;
}

/* The loop's next turn after acknowledgements: settle them together. */
static void
c_on_settle(uv_idle_t *h)
{
    tp_consumer *c = h->data;

    uv_idle_stop(h);
    if (c->state == TP_C_IDLE || c->state == TP_C_SLEEP)
        loom__tp_consume_kick(c);
}

static loom_err
c_give_back(tp_consumer *c, const loom_message *m, int state, const char *error,
            int reject)
{
    tp_entry *e = c_entry(c, m);

    if (e == NULL || c->tx_fn != NULL)
        return LOOM_EINVAL;
    if (e->state != TP_E_HANDLER)
        return LOOM_OK; /* given back before */
    if (error != NULL) {
        loom_free(e->error);
        e->error = loom__strdup(error);
    }
    /* A rejected message takes the failed path to the same commit; only
     * the dead letter comes on this delivery instead of the last. */
    e->rejected = reject;
    loom__tp_entry_resolved(c, e, state);
    if (c->topts.at_most_once || e->part == NULL) {
        /* Nothing to settle: at most once committed it before, and a
         * partition taken away is someone else's to settle. */
        if (c->topts.at_most_once && state == TP_E_FAILED)
            loom__log(LOOM_LOG_WARN,
                      "topics group \"%s\": %s[%d]@%lld failed (%s); at "
                      "most once: dropped",
                      c->group, e->msg.topic, (int) e->msg.partition,
                      (long long) e->msg.offset, error ? error : "");
        loom__tp_entry_done(c, e);
    }
    /* Not at once: a handler that settles a batch gives its messages back
     * one after another in one callback, and kicking at the first would
     * commit it alone, then the rest in a second transaction. */
    if (!c->closing && !uv_is_active((uv_handle_t *) &c->settle))
        uv_idle_start(&c->settle, c_on_settle);
    return LOOM_OK;
}

loom_err
loom__tp_consume_ack(tp_consumer *c, const loom_message *m)
{
    return c_give_back(c, m, TP_E_ACKED, NULL, 0);
}

loom_err
loom__tp_consume_fail(tp_consumer *c, const loom_message *m, const char *error)
{
    return c_give_back(c, m, TP_E_FAILED, error, 0);
}

loom_err
loom__tp_consume_reject(tp_consumer *c, const loom_message *m,
                        const char *error)
{
    return c_give_back(c, m, TP_E_FAILED, error, 1);
}

/* ---- life cycle ---------------------------------------------------------- */

static void
c_handle_closed(uv_handle_t *h)
{
    tp_consumer *c = h->data;
    tp_transport *tr = c->tr;

    if (--c->open_timers == 0) {
        loom_free(c);
    }
    loom__tp_released(tr);
}

static loom_err
c_check(const loom_consumer_config *cfg, const loom_topics_consumer_config *t)
{
    size_t glen = strlen(cfg->group);

    if (glen > LOOM_MAX_GROUP_NAME || !loom__utf8_valid(cfg->group, glen))
        return LOOM_EINVAL;
    for (size_t i = 0; i < cfg->n_topics; i++)
        if (!loom_topic_name_valid(cfg->topics[i], 1))
            return LOOM_EINVAL;
    if ((unsigned) t->start.start > LOOM_START_OFFSET ||
        (t->assignor != NULL && strcmp(t->assignor, "range") != 0 &&
         strcmp(t->assignor, "roundrobin") != 0) ||
        (t->session_timeout_ms != 0 &&
         (t->session_timeout_ms < 100 || t->session_timeout_ms > 3600000)) ||
        cfg->max_deliveries > 1000)
        return LOOM_EINVAL;
    return LOOM_OK;
}

loom_err
loom__tp_subscribe(void *state, const loom_consumer_config *cfg,
                   loom_consumer *h, const void *extra, void **cstate)
{
    static const loom_topics_consumer_config defaults =
        LOOM_TOPICS_CONSUMER_INIT;
    const struct {
        const loom_topics_consumer_config *topts;
        loom_topics_tx_fn tx_fn;
    } *x = extra;
    tp_transport *tr = state;
    tp_consumer *c;
    loom_err rc;
    char err[512];

    if (tr->stopping || tr->closed)
        return LOOM_EBUSY;
    rc = c_check(cfg, x ? x->topts : &defaults);
    if (rc != LOOM_OK)
        return rc;
    c = loom_malloc(sizeof *c);
    if (c == NULL)
        return LOOM_ENOMEM;
    memset(c, 0, sizeof *c);
    c->tr = tr;
    c->handle = h;
    c->arg = loom__consumer_arg(h);
    c->tx_fn = x ? x->tx_fn : NULL;
    c->topts = x ? *x->topts : defaults;
    if (c->topts.assignor == NULL)
        c->topts.assignor = "range";
    c->topts.assignor =
        strcmp(c->topts.assignor, "range") == 0 ? "range" : "roundrobin";
    if (c->topts.session_timeout_ms == 0)
        c->topts.session_timeout_ms = tr->session_timeout_ms;
    if (c->topts.session_timeout_ms == 0)
        c->topts.session_timeout_ms = 10000;
    if (c->topts.heartbeat_ms == 0 ||
        c->topts.heartbeat_ms >= c->topts.session_timeout_ms)
        c->topts.heartbeat_ms = c->topts.session_timeout_ms / 3;
    if (c->topts.backoff_ms == 0)
        c->topts.backoff_ms = 1000;
    if (c->topts.backoff_max_ms == 0)
        c->topts.backoff_max_ms = 60000;
    if (c->topts.backoff_max_ms < c->topts.backoff_ms)
        c->topts.backoff_max_ms = c->topts.backoff_ms;
    if (c->topts.visibility_ms == 0)
        c->topts.visibility_ms = 30000;
    if (c->topts.poll_ms == 0)
        c->topts.poll_ms = 1000;
    /* Kafka's max.poll.records: big enough to spread a commit's round
     * trip over many messages. */
    c->batch = cfg->batch ? cfg->batch : 500;
    c->max_in_flight = cfg->max_in_flight ? cfg->max_in_flight : 1000;
    if (c->batch > c->max_in_flight)
        c->batch = c->max_in_flight;
    if (c->tx_fn != NULL)
        c->max_in_flight = c->batch; /* one batch at a time */
    c->max_deliveries = cfg->max_deliveries;
    loom__tx_init(&c->tx);
    loom__backoff_init(&c->backoff, 100, 5000);
    c->group = loom__strdup(cfg->group);
    c->patterns = loom_malloc(cfg->n_topics * sizeof *c->patterns);
    if (c->group == NULL || c->patterns == NULL ||
        loom_uuid_generate(&c->member) != LOOM_OK) {
        rc = LOOM_ENOMEM;
        goto fail;
    }
    for (size_t i = 0; i < cfg->n_topics; i++) {
        c->patterns[i] = loom__strdup(cfg->topics[i]);
        if (c->patterns[i] == NULL) {
            rc = LOOM_ENOMEM;
            goto fail;
        }
        c->n_patterns++;
    }
    loom_uuid_format(&c->member, c->member_text);
    /* The timers before the join: applying the assignment kicks the data
     * path, which sleeps on c->timer when no partition is ours yet (a
     * pattern that matches nothing, more members than partitions); set
     * up after the join, that started a timer never initialized. */
    uv_timer_init(loom_runtime_loop(tr->rt), &c->timer);
    uv_timer_init(loom_runtime_loop(tr->rt), &c->heartbeat);
    uv_idle_init(loom_runtime_loop(tr->rt), &c->settle);
    c->timer.data = c;
    c->heartbeat.data = c;
    c->settle.data = c;
    c->open_timers = 3;
    tr->open_handles += 3;
    rc = loom__tp_conn_open(&c->gconn, tr, "group", err, sizeof err);
    if (rc == LOOM_OK)
        rc = loom__tp_conn_open(&c->dconn, tr, "consumer", err, sizeof err);
    if (rc == LOOM_OK)
        rc = loom__tp_group_join_now(c, err, sizeof err);
    if (rc != LOOM_OK) {
        loom__log(LOOM_LOG_ERROR, "topics consumer: %s", err);
        goto fail;
    }
    c->next = tr->consumers;
    tr->consumers = c;
    loom__tp_group_start(c);
    loom__tp_consume_listen(c);
    loom__tp_c_next(c);
    *cstate = c;
    return LOOM_OK;
fail:
    loom__tp_consume_free_parts(c);
    loom__pgconn_close(&c->gconn);
    loom__pgconn_close(&c->dconn);
    for (size_t i = 0; i < c->n_patterns; i++)
        loom_free(c->patterns[i]);
    loom_free(c->patterns);
    loom_free(c->group);
    loom__tx_free(&c->tx);
    if (c->open_timers > 0) {
        /* The last close callback frees c. */
        uv_close((uv_handle_t *) &c->timer, c_handle_closed);
        uv_close((uv_handle_t *) &c->heartbeat, c_handle_closed);
        uv_close((uv_handle_t *) &c->settle, c_handle_closed);
        return rc;
    }
    loom_free(c);
    return rc;
}

void
loom__tp_consume_stop(tp_consumer *c)
{
    c->stopping = 1;
    uv_timer_stop(&c->heartbeat);
    if (c->state == TP_C_SLEEP || c->state == TP_C_BACKOFF) {
        uv_timer_stop(&c->timer);
        c->state = TP_C_IDLE;
    }
    loom__tp_c_next(c);
}

void
loom__tp_consume_free_parts(tp_consumer *c)
{
    while (c->parts != NULL) {
        tp_part *p = c->parts;
        c->parts = p->next;
        loom_free(p->topic);
        loom_free(p);
    }
    c->n_parts = 0;
    while (c->batches != NULL)
        loom__tp_batch_free(c, c->batches);
}

void
loom__tp_consume_free(tp_consumer *c)
{
    tp_transport *tr = c->tr;

    c->closing = 1;
    for (tp_consumer **pp = &tr->consumers; *pp != NULL; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    loom__tp_c_flush(c);
    /* Leaving hands our partitions over at once instead of after the
     * session timeout. Unsettled messages are redelivered to the group. */
    loom__tp_group_leave(c);
    loom__pgconn_close(&c->gconn);
    loom__pgconn_close(&c->dconn);
    for (size_t i = 0; i < c->n_listeners; i++)
        loom_listener_close(c->listeners[i]);
    loom_free(c->listeners);
    loom_free(c->listen_ids);
    loom__tp_consume_free_parts(c);
    loom_free(c->fetch_parts);
    loom_free(c->committing);
    for (size_t i = 0; i < c->n_patterns; i++)
        loom_free(c->patterns[i]);
    loom_free(c->patterns);
    loom_free(c->group);
    loom__tx_free(&c->tx);
    uv_timer_stop(&c->timer);
    uv_timer_stop(&c->heartbeat);
    uv_idle_stop(&c->settle);
    uv_close((uv_handle_t *) &c->timer, c_handle_closed);
    uv_close((uv_handle_t *) &c->heartbeat, c_handle_closed);
    uv_close((uv_handle_t *) &c->settle, c_handle_closed);
    /* The stop may have been waiting for us. */
    loom__tp_maybe_stopped(tr);
}
