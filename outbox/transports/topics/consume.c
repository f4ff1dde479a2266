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
 * rows it points into) until the commit that settles it. A commit is one
 * transaction: each failed message's redelivery (loom.topic_retry, due
 * after an exponential backoff) or dead letter, each acknowledged
 * redelivery's removal, and per partition the offset below the first
 * message still with the handler. Every statement is fenced by the
 * partition's generation, so a member that lost a partition commits
 * nothing on it; it drops what it held there and the new owner starts
 * from the committed offset.
 *
 * With a transactional handler the batch's own statements lead that
 * transaction, so effects and offsets commit together. A batch that
 * fails is delivered again one message at a time ("isolating"), so one
 * bad message is retried (and dead-lettered) alone.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "alloc_int.h"
#include "log_int.h"
#include "loom/alloc.h"
#include "pgwire.h"
#include "topics_int.h"

static const loom__stmt fetch_stmt = {
    LOOM__STMT_TOPIC_FETCH,
    "loom_topic_fetch",
    "SELECT f.i::int4, m.\"offset\", m.id, m.key, m.headers, m.payload, "
    "m.published_at, m.deliver_at FROM unnest($1::int4[], $2::int4[], "
    "$3::int8[]) WITH ORDINALITY AS f(topic_id, part, from_off, i) "
    "CROSS JOIN LATERAL (SELECT * FROM loom.topic_messages m "
    "WHERE m.topic_id = f.topic_id AND m.partition = f.part "
    "AND m.\"offset\" >= f.from_off ORDER BY m.\"offset\" LIMIT $4) m "
    "LIMIT $4",
    4,
    {LOOM__OID_AINT4, LOOM__OID_AINT4, 1016 /* int8[] */, LOOM__OID_INT4}};

static const loom__stmt retries_stmt = {
    LOOM__STMT_TOPIC_FETCH_RETRIES,
    "loom_topic_fetch_retries",
    /* Deliveries before the offset: c_fill() reads offset, id, key,
     * headers, payload, published_at and deliver_at as consecutive
     * columns (they were in another order, so a redelivery read its key as
     * headers and its headers as payload, and one whose key was not a
     * header list was dropped as gone). */
    "SELECT topic_id, partition, deliveries, \"offset\", id, key, headers, "
    "payload, published_at, deliver_at "
    "FROM loom.topic_fetch_retries($1, $2, $3, $4, $5)",
    5,
    {LOOM__OID_TEXT, LOOM__OID_AINT4, LOOM__OID_AINT4, LOOM__OID_INT4,
     LOOM__OID_INT8}};

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

#define TP_SQL_COMMIT "SELECT loom.topic_commit_many($1, $2, $3, $4, $5, $6)"
#define TP_SQL_RETRY                                                           \
    "SELECT loom.topic_retry($1, $2, $3, $4, $5, $6, $7, $8, $9)"
#define TP_SQL_RETRY_DONE "SELECT loom.topic_retry_done($1, $2, $3, $4, $5, $6)"
#define TP_SQL_DEAD                                                            \
    "SELECT loom.topic_dead_letter($1, $2, $3, $4, $5, $6, $7, $8, $9)"

static void c_next(tp_consumer *c);
static void c_fail(tp_consumer *c, const char *what);
static void c_tx_run(tp_consumer *c);
static void c_tx_revert(tp_consumer *c);

static int64_t
now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- entries and batches ------------------------------------------------ */

static void
batch_free(tp_consumer *c, tp_batch *b)
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
        batch_free(c, b);
}

/* The entry needs nothing more from us. */
static void
entry_done(tp_consumer *c, tp_entry *e)
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
static void
entry_resolved(tp_consumer *c, tp_entry *e, int state)
{
    e->state = state;
    c->pending++;
    c->in_flight--;
    e->batch->unresolved--;
}

/* Unlinks the done entries at the head of the partition's list. */
static void
part_pop_done(tp_consumer *c, tp_part *p)
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
        c_next(c);
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

/* ---- fetching ----------------------------------------------------------- */

/* Fills e->msg from row `row` of r, whose columns start at `col`: offset,
 * id, key, headers, payload, published_at, deliver_at. */
static int
c_fill(tp_entry *e, PGresult *r, int row, int col, const tp_part *p)
{
    loom_message *m = &e->msg;
    int64_t ts = 0;
    int rc = 0;

    memset(m, 0, sizeof *m);
    m->topic = p->topic;
    m->partition = p->partition;
    loom__pg_get_i64(r, row, col, &m->offset);
    if (PQgetlength(r, row, col + 1) == 16)
        memcpy(m->id.bytes, PQgetvalue(r, row, col + 1), 16);
    if (!PQgetisnull(r, row, col + 2)) {
        m->key = PQgetvalue(r, row, col + 2);
        m->key_len = (size_t) PQgetlength(r, row, col + 2);
    }
    if (!PQgetisnull(r, row, col + 3) &&
        loom__headers_decode(
            PQgetvalue(r, row, col + 3), (size_t) PQgetlength(r, row, col + 3),
            (loom_header **) &m->headers, &m->n_headers, &e->hdr_mem) != 0) {
        /* The rest is still filled in: the callers deliver the message
         * without headers (returning here left the payload empty and
         * deliver_at 0, so it went out at once without its body). */
        m->headers = NULL;
        m->n_headers = 0;
        rc = -1;
    }
    m->payload = PQgetvalue(r, row, col + 4);
    m->payload_len = (size_t) PQgetlength(r, row, col + 4);
    if (loom__pg_get_i64(r, row, col + 5, &ts))
        m->timestamp = loom__pg_time_to_unix(ts);
    if (loom__pg_get_i64(r, row, col + 6, &ts))
        m->deliver_at = loom__pg_time_to_unix(ts);
    return rc;
}

static tp_batch *
c_batch_new(tp_consumer *c, PGresult *r, size_t n)
{
    tp_batch *b = loom_malloc(sizeof *b);

    if (b == NULL)
        return NULL;
    memset(b, 0, sizeof *b);
    b->entries = loom_malloc((n ? n : 1) * sizeof *b->entries);
    if (b->entries == NULL) {
        loom_free(b);
        return NULL;
    }
    memset(b->entries, 0, (n ? n : 1) * sizeof *b->entries);
    b->res = r;
    b->n = n;
    b->next = c->batches;
    c->batches = b;
    return b;
}

/* Hands the batch's deliverable entries to the handler (or, at most
 * once, commits first: c_after_commit delivers). */
static void
c_deliver(tp_consumer *c, tp_batch *b)
{
    const loom_message **msgs;
    size_t n = 0;

    msgs = loom_malloc((b->n ? b->n : 1) * sizeof *msgs);
    if (msgs == NULL) {
        /* Give them back: unsettled, they are fetched again. */
        c_fail(c, "out of memory delivering");
        return;
    }
    for (size_t i = 0; i < b->n; i++)
        if (b->entries[i].state == TP_E_HANDLER)
            msgs[n++] = &b->entries[i].msg;
    c->stats.delivered += n;
    if (n > 0)
        loom_consumer_deliver(c->handle, msgs, n);
    loom_free(msgs);
}

/* Turns the rows of a fetch (fresh: `retries` 0) into a batch. */
static void
c_take_rows(tp_consumer *c, PGresult *r, int retries, tp_part **parts,
            size_t n_parts)
{
    int rows = PQntuples(r);
    tp_batch *b;
    size_t deliverable = 0;
    int64_t now = now_us();

    if (rows == 0) {
        PQclear(r);
        return;
    }
    b = c_batch_new(c, r, (size_t) rows);
    if (b == NULL) {
        PQclear(r);
        c_fail(c, "out of memory");
        return;
    }
    for (int i = 0; i < rows; i++) {
        tp_entry *e = &b->entries[i];
        tp_part *p = NULL;
        int gone = 0;

        e->magic = TP_ENTRY_MAGIC;
        e->c = c;
        e->batch = b;
        b->unfinished++;
        if (retries) {
            int32_t tid = 0, part = 0, del = 0;
            loom__pg_get_i32(r, i, 0, &tid);
            loom__pg_get_i32(r, i, 1, &part);
            loom__pg_get_i32(r, i, 2, &del);
            for (size_t k = 0; k < n_parts; k++)
                if (parts[k]->topic_id == tid && parts[k]->partition == part)
                    p = parts[k];
            e->retry = 1;
            e->deliveries = (uint32_t) del + 1;
            gone = PQgetisnull(r, i, 4);
            if (p != NULL && !gone && c_fill(e, r, i, 3, p) != 0) {
                /* Undecodable headers: deliver without them, as a fresh
                 * message (marking it gone would drop it unseen). */
                e->msg.headers = NULL;
                e->msg.n_headers = 0;
            }
            if (p != NULL && gone)
                loom__pg_get_i64(r, i, 3, &e->msg.offset);
        } else {
            int32_t idx = 0;
            loom__pg_get_i32(r, i, 0, &idx);
            if (idx >= 1 && (size_t) idx <= n_parts)
                p = parts[idx - 1];
            e->deliveries = 1;
            if (p != NULL && c_fill(e, r, i, 1, p) != 0) {
                /* Undecodable headers: deliver without them. */
                e->msg.headers = NULL;
                e->msg.n_headers = 0;
            }
        }
        e->part = p;
        if (p == NULL) {
            e->state = TP_E_DONE;
            b->unfinished--;
            continue;
        }
        e->msg.attempt = e->deliveries;
        if (!retries) {
            p->fetch = e->msg.offset + 1;
            if (p->tail != NULL)
                p->tail->next = e;
            else
                p->head = e;
            p->tail = e;
            b->linked++;
        }
        /* Not delivered: a redelivery whose message retention removed, and
         * a delayed message that is not due (it waits as a redelivery). */
        if (gone) {
            e->gone = 1;
            e->state = TP_E_ACKED;
            c->pending++;
        } else if (!retries && e->msg.deliver_at > now) {
            e->delay = 1;
            e->state = TP_E_FAILED;
            c->pending++;
        } else {
            e->state = TP_E_HANDLER;
            b->unresolved++;
            c->in_flight++;
            deliverable++;
            if (retries)
                c->stats.redelivered++;
        }
    }
    if (b->unfinished == 0) {
        batch_free(c, b);
        return;
    }
    if (c->topts.at_most_once) {
        /* The offsets commit before the handler sees the batch: a failure
         * or a crash loses it, never delivers it twice. */
        c->deliver_after = b;
        c->commit_asked = 1;
        return;
    }
    if (c->tx_fn != NULL) {
        c->tx_batch = b;
        c->iso_i = 0;
        c->isolating = 0;
        c_tx_run(c);
        return;
    }
    c_deliver(c, b);
}

/* ---- committing --------------------------------------------------------- */

/* Text parameters of the fenced statements: group, member, generation,
 * topic id, partition, offset, then up to three more. */
typedef struct c_params {
    char gen[24], tid[16], part[16], off[24], a[24], b[40];
    const char *v[9];
} c_params;

static void
c_fence_params(tp_consumer *c, c_params *pr, const tp_part *p, int64_t off)
{
    snprintf(pr->gen, sizeof pr->gen, "%lld", (long long) p->generation);
    snprintf(pr->tid, sizeof pr->tid, "%d", (int) p->topic_id);
    snprintf(pr->part, sizeof pr->part, "%d", (int) p->partition);
    snprintf(pr->off, sizeof pr->off, "%lld", (long long) off);
    pr->v[0] = c->group;
    pr->v[1] = c->member_text;
    pr->v[2] = pr->gen;
    pr->v[3] = pr->tid;
    pr->v[4] = pr->part;
    pr->v[5] = pr->off;
}

/* "2026-11-29 08:00:00.123456+00" for a time in µs since 1970. */
static void
c_timestamp(char *out, size_t len, int64_t us)
{
    time_t secs = (time_t) (us / 1000000);
    struct tm tm;

    gmtime_r(&secs, &tm);
    snprintf(out, len, "%04d-%02d-%02d %02d:%02d:%02d.%06d+00",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, (int) (us % 1000000));
}

/* The redelivery delay after `deliveries` failed deliveries. */
static uint64_t
c_backoff_ms(const tp_consumer *c, uint32_t deliveries)
{
    uint64_t ms = c->topts.backoff_ms;

    for (uint32_t i = 1; i < deliveries && ms < c->topts.backoff_max_ms; i++)
        ms *= 2;
    return ms < c->topts.backoff_max_ms ? ms : c->topts.backoff_max_ms;
}

static uint32_t
c_max_deliveries(const tp_consumer *c, const tp_part *p)
{
    return c->max_deliveries
               ? c->max_deliveries
               : (uint32_t) (p->max_deliveries > 0 ? p->max_deliveries : 5);
}

/* Whether failed entry `e` (its partition still ours) is dead-lettered
 * by the commit rather than redelivered: rejected, or out of deliveries.
 * A delayed message is neither failed nor rejected: it only waits. */
static int
c_dead_now(const tp_consumer *c, const tp_entry *e)
{
    return !e->delay &&
           (e->rejected || e->deliveries >= c_max_deliveries(c, e->part));
}

/* Queues the dead letter of `e`: original headers plus the reasons. */
static loom_err
c_queue_dead(tp_consumer *c, tp_entry *e, c_params *pr)
{
    loom__buf hb = LOOM__BUF_INIT;
    char deliveries[16], part[16], off[24];
    loom_header extra[6] = {{LOOM_HEADER_ERROR, e->error ? e->error : "failed"},
                            {LOOM_HEADER_GROUP, c->group},
                            {LOOM_HEADER_DELIVERIES, deliveries},
                            {LOOM_HEADER_TOPIC, e->part->topic},
                            {LOOM_HEADER_PARTITION, part},
                            {LOOM_HEADER_OFFSET, off}};
    static const uint32_t types[9] = {0, 0, 0, 0, 0, 0, 0, 0, LOOM__OID_BYTEA};
    int lengths[9];
    loom_err rc;

    snprintf(deliveries, sizeof deliveries, "%u", e->deliveries);
    snprintf(part, sizeof part, "%d", (int) e->part->partition);
    snprintf(off, sizeof off, "%lld", (long long) e->msg.offset);
    loom__headers_encode(&hb, e->msg.headers, e->msg.n_headers);
    loom__headers_encode(&hb, extra, 6);
    pr->v[6] = deliveries;
    pr->v[7] = e->error ? e->error : "failed";
    pr->v[8] = hb.data ? hb.data : "";
    for (int i = 0; i < 8; i++)
        lengths[i] = (int) strlen(pr->v[i]);
    lengths[8] = (int) hb.len;
    rc = hb.failed ? LOOM_ENOMEM
                   : loom_tx_exec_binary(&c->tx, TP_SQL_DEAD, 9, types, pr->v,
                                         lengths);
    loom__buf_free(&hb);
    return rc;
}

/* Queues what settling `e` takes; 0 when nothing. */
static loom_err
c_queue_entry(tp_consumer *c, tp_entry *e)
{
    c_params pr;
    char at[64];
    int64_t visible;

    c_fence_params(c, &pr, e->part, e->msg.offset);
    if (e->state == TP_E_ACKED ||
        (e->state == TP_E_HANDLER && c->topts.at_most_once)) {
        if (!e->retry)
            return LOOM_OK; /* the offset covers it */
        return loom_tx_exec(&c->tx, TP_SQL_RETRY_DONE, 6, pr.v);
    }
    /* Failed (or delayed). */
    if (c_dead_now(c, e))
        return c_queue_dead(c, e, &pr);
    visible = e->delay
                  ? e->msg.deliver_at
                  : now_us() + (int64_t) c_backoff_ms(c, e->deliveries) * 1000;
    c_timestamp(at, sizeof at, visible);
    snprintf(pr.a, sizeof pr.a, "%u", e->delay ? 0u : e->deliveries);
    pr.v[6] = pr.a;
    pr.v[7] = at;
    pr.v[8] = e->delay ? NULL : (e->error ? e->error : "failed");
    return loom_tx_exec(&c->tx, TP_SQL_RETRY, 9, pr.v);
}

static int
c_committing_add(tp_consumer *c, tp_entry *e)
{
    if (c->n_committing == c->cap_committing) {
        size_t cap = c->cap_committing ? c->cap_committing * 2 : 64;
        tp_entry **grown = loom_realloc(c->committing, cap * sizeof *grown);
        if (grown == NULL)
            return -1;
        c->committing = grown;
        c->cap_committing = cap;
    }
    c->committing[c->n_committing++] = e;
    e->queued = 1;
    return 0;
}

/* Where partition p's committed offset can move: below the first
 * message still with the handler or not yet settled (at most once: past
 * everything fetched). */
static int64_t
c_commit_offset(const tp_consumer *c, const tp_part *p)
{
    if (!c->topts.at_most_once)
        for (const tp_entry *e = p->head; e != NULL; e = e->next)
            if (e->state == TP_E_HANDLER ||
                ((e->state == TP_E_ACKED || e->state == TP_E_FAILED) &&
                 !e->queued))
                return e->msg.offset;
    return p->fetch;
}

/* Queues on c->tx the offsets of every partition whose offset moves, as
 * one loom.topic_commit_many() (schema 15): one fence check and one
 * upsert for all of them, not a call per partition. p->committing is the
 * offset queued for p, -1 when none. */
static loom_err
c_queue_offsets(tp_consumer *c)
{
    static const uint32_t types[6] = {0,
                                      0,
                                      LOOM__OID_AINT8,
                                      LOOM__OID_AINT4,
                                      LOOM__OID_AINT4,
                                      LOOM__OID_AINT8};
    loom__buf arr[4] = {LOOM__BUF_INIT, LOOM__BUF_INIT, LOOM__BUF_INIT,
                        LOOM__BUF_INIT};
    const char *values[6];
    int lengths[6];
    uint32_t n = 0;
    loom_err rc = LOOM_OK;

    for (tp_part *p = c->parts; p != NULL; p = p->next) {
        int64_t off = c_commit_offset(c, p);
        p->committing = off > p->committed ? off : -1;
        n += p->committing >= 0;
    }
    if (n == 0)
        return LOOM_OK;
    loom__pg_array_begin(&arr[0], LOOM__OID_INT8, n);
    loom__pg_array_begin(&arr[1], LOOM__OID_INT4, n);
    loom__pg_array_begin(&arr[2], LOOM__OID_INT4, n);
    loom__pg_array_begin(&arr[3], LOOM__OID_INT8, n);
    for (tp_part *p = c->parts; p != NULL; p = p->next) {
        char gen[8], tid[4], part[4], off[8];
        if (p->committing < 0)
            continue;
        loom__pg_put_be64(gen, (uint64_t) p->generation);
        loom__pg_put_be32(tid, (uint32_t) p->topic_id);
        loom__pg_put_be32(part, (uint32_t) p->partition);
        loom__pg_put_be64(off, (uint64_t) p->committing);
        loom__pg_array_add(&arr[0], gen, 8);
        loom__pg_array_add(&arr[1], tid, 4);
        loom__pg_array_add(&arr[2], part, 4);
        loom__pg_array_add(&arr[3], off, 8);
    }
    values[0] = c->group;
    values[1] = c->member_text;
    lengths[0] = (int) strlen(c->group);
    lengths[1] = (int) strlen(c->member_text);
    for (int i = 0; i < 4; i++) {
        if (arr[i].failed)
            rc = LOOM_ENOMEM;
        values[2 + i] = arr[i].data;
        lengths[2 + i] = (int) arr[i].len;
    }
    if (rc == LOOM_OK)
        rc = loom_tx_exec_binary(&c->tx, TP_SQL_COMMIT, 6, types, values,
                                 lengths);
    for (int i = 0; i < 4; i++)
        loom__buf_free(&arr[i]);
    if (rc != LOOM_OK)
        for (tp_part *p = c->parts; p != NULL; p = p->next)
            p->committing = -1;
    return rc;
}

static void c_committed(void *arg, loom_err rc, PGresult *r);

/* Queues on c->tx what settles the acknowledged and failed messages and
 * moves the offsets; c->committing lists the entries it settles. In tx
 * mode c->tx already holds the handler's statements (keep_tx). */
static loom_err
c_build_commit(tp_consumer *c, int keep_tx)
{
    loom_err rc = LOOM_OK;

    if (!keep_tx) {
        loom__tx_reset(&c->tx);
        c->h_end = 0;
        /* At least once with automatic commits: a commit lost in a server
         * crash only delivers its messages again, so it need not wait for
         * the WAL flush (the subscriptions' checkpoint-only commits do the
         * same). At most once must not lose one, and a manual commit is
         * the caller's explicit promise: both stay durable, as do the
         * transactional handler's effects. */
        if (c->tx_fn == NULL && !c->topts.at_most_once &&
            !c->topts.manual_commit &&
            loom_tx_exec(&c->tx,
                         "SELECT set_config('synchronous_commit', 'off', "
                         "true)",
                         0, NULL) != LOOM_OK)
            return LOOM_ENOMEM;
    }
    c->commit_base = keep_tx ? 0 : loom_tx_count(&c->tx);
    c->n_committing = 0;
    for (tp_batch *b = c->batches; b != NULL && rc == LOOM_OK; b = b->next)
        for (size_t i = 0; i < b->n && rc == LOOM_OK; i++) {
            tp_entry *e = &b->entries[i];
            int settle = e->state == TP_E_ACKED || e->state == TP_E_FAILED;
            if (c->topts.at_most_once && b == c->deliver_after &&
                e->state == TP_E_HANDLER && e->retry)
                settle = 1;
            if (!settle || e->part == NULL || e->queued)
                continue;
            rc = c_queue_entry(c, e);
            if (rc == LOOM_OK && c_committing_add(c, e) != 0)
                rc = LOOM_ENOMEM;
        }
    if (rc == LOOM_OK)
        rc = c_queue_offsets(c);
    if (rc != LOOM_OK) {
        for (size_t i = 0; i < c->n_committing; i++)
            c->committing[i]->queued = 0;
        c->n_committing = 0;
    }
    return rc;
}

/* Builds and sends the commit; returns 0 when there was nothing to send. */
static int
c_commit(tp_consumer *c, int keep_tx)
{
    loom_err rc = c_build_commit(c, keep_tx);

    if (rc == LOOM_OK && loom_tx_count(&c->tx) == c->commit_base)
        return 0;
    if (rc == LOOM_OK)
        rc = loom__pgconn_tx(&c->dconn, &c->tx, c_committed, c);
    if (rc != LOOM_OK) {
        for (size_t i = 0; i < c->n_committing; i++)
            c->committing[i]->queued = 0;
        c->n_committing = 0;
        c->commit_asked = 1; /* manual_commit: still asked for */
        /* A transactional batch that could not even be sent (the
         * connection is being re-established) goes back to the handler,
         * as after a failed commit: its statements must commit with its
         * offsets. Left acknowledged, the next commit (built afresh,
         * without them) would move the offsets past messages whose
         * effects never committed. */
        if (keep_tx && c->tx_fn != NULL && c->tx_batch != NULL)
            c_tx_revert(c);
        c_fail(c, "committing");
        return 1;
    }
    c->state = TP_C_COMMIT;
    return 1;
}

/* Closing: commits what was acknowledged, blocking, so a consumer that
 * closes after its handler acknowledged everything leaves no lag (Kafka's
 * close() does the same). The request in flight, if any, is waited for
 * and dropped first; settling again what it may have settled is
 * harmless (offsets only move forward, redeliveries are upserts). */
static void
c_flush(tp_consumer *c)
{
    loom_store *s = c->dconn.store;

    if (s == NULL || c->tx_fn != NULL || c->topts.manual_commit)
        return;
    if (c->dconn.busy) {
        PGresult *r = NULL;
        loom__store_wait(s);
        if (c->dconn.is_tx)
            loom__store_take_tx(s);
        else
            loom__store_take(s, LOOM__OP_QUERY, &r);
        PQclear(r);
        c->dconn.busy = 0;
        for (size_t i = 0; i < c->n_committing; i++)
            c->committing[i]->queued = 0;
        c->n_committing = 0;
    }
    if (c->pending == 0 || c_build_commit(c, 0) != LOOM_OK ||
        loom_tx_count(&c->tx) == c->commit_base)
        return;
    if (loom__store_begin(s) != LOOM_OK ||
        loom__store_run_tx(s, &c->tx) != LOOM_OK)
        loom__log(LOOM_LOG_WARN,
                  "topics group \"%s\": the last commit failed (%s); its "
                  "messages are delivered again",
                  c->group, loom_store_errmsg(s));
}

static void
c_after_commit(tp_consumer *c)
{
    tp_batch *b = c->deliver_after;

    if (b != NULL) {
        c->deliver_after = NULL;
        c_deliver(c, b);
    }
}

static void c_tx_failed(tp_consumer *c, const char *why, int reject);

static void
c_committed(void *arg, loom_err rc, PGresult *r)
{
    tp_consumer *c = arg;
    const char *state = loom_store_sqlstate(c->dconn.store);
    long failed = c->dconn.store->tx_failed;

    PQclear(r);
    c->state = TP_C_IDLE;
    for (size_t i = 0; i < c->n_committing; i++)
        c->committing[i]->queued = 0;
    if (rc != LOOM_OK)
        for (size_t i = 0; i < c->n_committing; i++) {
            /* Its partition moved meanwhile: nothing left to commit. */
            tp_entry *e = c->committing[i];
            if (e->part == NULL && e->state != TP_E_HANDLER)
                entry_done(c, e);
        }
    if (rc == LOOM_OK) {
        for (size_t i = 0; i < c->n_committing; i++) {
            tp_entry *e = c->committing[i];
            if (e->state == TP_E_FAILED && e->part != NULL && c_dead_now(c, e))
                c->stats.dead++;
            if (e->state == TP_E_HANDLER)
                continue; /* at most once: a redelivery, delivered next */
            entry_done(c, e);
        }
        for (tp_part *p = c->parts; p != NULL; p = p->next) {
            if (p->committing > p->committed)
                p->committed = p->committing;
            p->committing = -1;
            part_pop_done(c, p);
        }
        c->n_committing = 0;
        loom__backoff_reset(&c->backoff);
        if (c->tx_fn != NULL && c->tx_batch != NULL && c->isolating) {
            c->iso_i++;
            c_tx_run(c);
            return;
        }
        c->tx_batch = NULL;
        c_after_commit(c);
        c_next(c);
        return;
    }
    c->n_committing = 0;
    /* A commit that did not happen is still wanted: with manual_commit,
     * c_next() would otherwise leave what it settled (an acknowledged
     * partition that stayed ours, say) unwritten until the next
     * loom_topics_commit(). */
    c->commit_asked = 1;
    if (strcmp(state, "LM012") == 0) {
        /* A partition moved: read the assignment; the refreshed one drops
         * what we held of it, and the commit then goes again. */
        c->stats.fenced++;
        loom__log(LOOM_LOG_INFO, "topics group \"%s\": commit fenced (%s)",
                  c->group, loom__pgconn_errmsg(&c->dconn));
        loom__tp_group_refresh(c);
        if (c->tx_fn != NULL && c->tx_batch != NULL)
            c_tx_revert(c);
        c_fail(c, NULL);
        return;
    }
    if (c->tx_fn != NULL && c->tx_batch != NULL && c->h_end > 0 &&
        (rc != LOOM_ECONN && !loom__sqlstate_transient(state)) &&
        (failed < 0 || failed < (long) c->h_end)) {
        c_tx_failed(c, loom__pgconn_errmsg(&c->dconn), 0);
        return;
    }
    if (c->tx_fn != NULL && c->tx_batch != NULL)
        c_tx_revert(c);
    c_fail(c, "committing");
}

/* ---- the transactional handler ------------------------------------------ */

/* The entries of c->tx_batch with the handler: all of them, or while
 * isolating the iso_i-th of them. */
static size_t
c_tx_select(tp_consumer *c, const loom_message **msgs)
{
    tp_batch *b = c->tx_batch;
    size_t n = 0, k = 0;

    for (size_t i = 0; i < b->n; i++) {
        tp_entry *e = &b->entries[i];
        if (e->state != TP_E_HANDLER || e->part == NULL)
            continue;
        if (!c->isolating || k++ == 0)
            msgs[n++] = &e->msg;
        if (c->isolating)
            break;
    }
    return n;
}

static void
c_tx_run(tp_consumer *c)
{
    tp_batch *b = c->tx_batch;
    const loom_message **msgs;
    size_t n;
    loom_err rc;

    msgs = loom_malloc((b->n ? b->n : 1) * sizeof *msgs);
    if (msgs == NULL) {
        c_fail(c, "out of memory");
        return;
    }
    n = c_tx_select(c, msgs);
    if (n == 0) {
        /* Everything delivered (or taken away). */
        loom_free(msgs);
        c->tx_batch = NULL;
        c->isolating = 0;
        c_next(c);
        return;
    }
    loom__tx_reset(&c->tx);
    c->stats.delivered += n;
    rc = c->tx_fn(&c->tx, msgs, n, c->arg);
    c->h_end = loom_tx_count(&c->tx);
    if (rc != LOOM_OK) {
        loom_free(msgs);
        /* LOOM_EDECODE: the handler says the message can never be
         * handled; alone, it is rejected rather than retried. */
        c_tx_failed(c, loom_strerror(rc), rc == LOOM_EDECODE);
        return;
    }
    for (size_t i = 0; i < n; i++)
        entry_resolved(c, (tp_entry *) (void *) msgs[i], TP_E_ACKED);
    loom_free(msgs);
    if (!c_commit(c, 1))
        c_next(c);
}

/* A transactional batch's commit failed: what it acknowledged is with
 * the handler again (its effects rolled back with it). */
static void
c_tx_revert(tp_consumer *c)
{
    tp_batch *b = c->tx_batch;

    for (size_t i = 0; i < b->n; i++) {
        tp_entry *e = &b->entries[i];
        if (e->state == TP_E_ACKED && e->part != NULL && !e->gone) {
            e->state = TP_E_HANDLER;
            c->pending--;
            c->in_flight++;
            b->unresolved++;
        }
    }
    loom__tx_reset(&c->tx);
    c->h_end = 0;
}

/* The handler or its statements failed: isolate, or fail (reject: dead-
 * letter at once) the one. */
static void
c_tx_failed(tp_consumer *c, const char *why, int reject)
{
    tp_batch *b = c->tx_batch;
    tp_entry *one = NULL;
    size_t held = 0;

    c_tx_revert(c);
    for (size_t i = 0; i < b->n; i++) {
        tp_entry *e = &b->entries[i];
        if (e->state == TP_E_HANDLER && e->part != NULL) {
            held++;
            if (one == NULL)
                one = e;
        }
    }
    if (one == NULL) {
        c->tx_batch = NULL;
        c_next(c);
        return;
    }
    if (!c->isolating && held > 1) {
        loom__log(LOOM_LOG_INFO,
                  "topics group \"%s\": a batch of %zu failed (%s); "
                  "delivering its messages one by one",
                  c->group, held, why);
        c->isolating = 1;
        c->iso_i = 0;
        c_tx_run(c);
        return;
    }
    /* One message failed alone: redelivered later, or dead-lettered. */
    loom_free(one->error);
    one->error = loom__strdup(why);
    one->rejected = reject;
    entry_resolved(c, one, TP_E_FAILED);
    c->isolating = held > 1 || c->isolating;
    if (!c_commit(c, 0))
        c_next(c);
}

/* ---- fetching: sending --------------------------------------------------- */

static void c_fetched(void *arg, loom_err rc, PGresult *r);
static void c_retries_fetched(void *arg, loom_err rc, PGresult *r);

/* The assigned partitions, rotated so each gets to go first in turn. */
static int
c_snapshot_parts(tp_consumer *c)
{
    size_t n = c->n_parts, i = 0, start;
    tp_part **arr;

    arr = loom_realloc(c->fetch_parts, (n ? n : 1) * sizeof *arr);
    if (arr == NULL)
        return -1;
    c->fetch_parts = arr;
    start = n ? c->rotate++ % n : 0;
    for (tp_part *p = c->parts; p != NULL; p = p->next, i++)
        arr[(i + n - start) % n] = p;
    c->n_fetch_parts = n;
    c->fetch_epoch = c->assign_epoch;
    return 0;
}

static void
c_send_fetch(tp_consumer *c, int retries)
{
    loom__buf a = LOOM__BUF_INIT, b = LOOM__BUF_INIT, o = LOOM__BUF_INIT;
    size_t room = c->max_in_flight - c->in_flight;
    uint32_t limit = (uint32_t) (room < c->batch ? room : c->batch);
    char lim[4] = {(char) (limit >> 24), (char) (limit >> 16),
                   (char) (limit >> 8), (char) limit};
    char vis[8];
    const char *values[5];
    int lengths[5];
    loom_err rc;

    if (c_snapshot_parts(c) != 0) {
        c_fail(c, "out of memory");
        return;
    }
    loom__pg_array_begin(&a, LOOM__OID_INT4, (uint32_t) c->n_fetch_parts);
    loom__pg_array_begin(&b, LOOM__OID_INT4, (uint32_t) c->n_fetch_parts);
    loom__pg_array_begin(&o, LOOM__OID_INT8, (uint32_t) c->n_fetch_parts);
    for (size_t i = 0; i < c->n_fetch_parts; i++) {
        const tp_part *p = c->fetch_parts[i];
        char be[8];
        loom__pg_put_be64(be, (uint64_t) p->topic_id << 32);
        loom__pg_array_add(&a, be, 4);
        loom__pg_put_be64(be, (uint64_t) p->partition << 32);
        loom__pg_array_add(&b, be, 4);
        loom__pg_put_be64(be, (uint64_t) p->fetch);
        loom__pg_array_add(&o, be, 8);
    }
    if (a.failed || b.failed || o.failed) {
        rc = LOOM_ENOMEM;
    } else if (retries) {
        loom__pg_put_be64(vis, c->topts.visibility_ms);
        values[0] = c->group;
        lengths[0] = (int) strlen(c->group);
        values[1] = a.data;
        lengths[1] = (int) a.len;
        values[2] = b.data;
        lengths[2] = (int) b.len;
        values[3] = lim;
        lengths[3] = 4;
        values[4] = vis;
        lengths[4] = 8;
        rc = loom__pgconn_query(&c->dconn, &retries_stmt, values, lengths,
                                c_retries_fetched, c);
    } else {
        c->fetch_limit = limit;
        c->stats.fetches++;
        values[0] = a.data;
        lengths[0] = (int) a.len;
        values[1] = b.data;
        lengths[1] = (int) b.len;
        values[2] = o.data;
        lengths[2] = (int) o.len;
        values[3] = lim;
        lengths[3] = 4;
        rc = loom__pgconn_query(&c->dconn, &fetch_stmt, values, lengths,
                                c_fetched, c);
    }
    loom__buf_free(&a);
    loom__buf_free(&b);
    loom__buf_free(&o);
    if (rc != LOOM_OK) {
        c_fail(c, "fetching");
        return;
    }
    c->state = retries ? TP_C_RETRIES : TP_C_FETCH;
}

static void
c_retries_fetched(void *arg, loom_err rc, PGresult *r)
{
    tp_consumer *c = arg;

    c->state = TP_C_IDLE;
    if (rc != LOOM_OK) {
        PQclear(r);
        c_fail(c, "fetching redeliveries");
        return;
    }
    if (c->fetch_epoch != c->assign_epoch) {
        /* The assignment changed meanwhile; their visibility timeout
         * gives these back to whoever owns them now. */
        PQclear(r);
    } else {
        c_take_rows(c, r, 1, c->fetch_parts, c->n_fetch_parts);
    }
    if (c->state == TP_C_IDLE) {
        /* Then fresh messages, whatever the redeliveries were (caught
         * up: c_next() arms or sleeps instead). */
        if (c->in_flight < c->max_in_flight && c->n_parts > 0 && !c->stopping &&
            c->tx_batch == NULL && c->deliver_after == NULL && !c->closing &&
            !c->caught_up)
            c_send_fetch(c, 0);
        else
            c_next(c);
    }
}

static void c_arm(tp_consumer *c);

static void
c_fetched(void *arg, loom_err rc, PGresult *r)
{
    tp_consumer *c = arg;
    int rows;

    c->state = TP_C_IDLE;
    if (rc != LOOM_OK) {
        PQclear(r);
        c_fail(c, "fetching");
        return;
    }
    rows = PQntuples(r);
    if (c->fetch_epoch != c->assign_epoch) {
        PQclear(r); /* fetched for partitions we may no longer own */
        c_next(c);
        return;
    }
    /* A wake-up during the fetch may announce what its snapshot missed:
     * read again. Otherwise a short read means every partition is
     * drained, and c_next() arms rather than reads again. */
    if (c->woken) {
        c->woken = 0;
        c->caught_up = 0;
    } else {
        c->caught_up = (uint32_t) rows < c->fetch_limit;
    }
    if (rows == 0) {
        PQclear(r);
        c_next(c);
        return;
    }
    c_take_rows(c, r, 0, c->fetch_parts, c->n_fetch_parts);
    if (c->state == TP_C_IDLE)
        c_next(c);
}

/* ---- sleeping ------------------------------------------------------------ */

static void
c_on_timer(uv_timer_t *t)
{
    tp_consumer *c = t->data;

    if (c->state == TP_C_SLEEP || c->state == TP_C_BACKOFF)
        c->state = TP_C_IDLE;
    c->caught_up = 0; /* the poll: read whatever woke nobody */
    c_next(c);
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
    c_next(c);
}

/* ---- the loop ------------------------------------------------------------ */

static void
c_fail(tp_consumer *c, const char *what)
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

static void
c_next(tp_consumer *c)
{
    uint64_t now;

    if (c->state != TP_C_IDLE || c->closing)
        return;
    /* Settle first: commits free the handler's budget and the memory. */
    if ((c->pending > 0 || c->deliver_after != NULL) &&
        (!c->topts.manual_commit || c->commit_asked || c->stopping ||
         c->deliver_after != NULL)) {
        c->commit_asked = 0;
        if (c_commit(c, 0))
            return;
    }
    if (c->deliver_after != NULL) {
        /* At most once: its commit had nothing to write (say, the batch
         * was only redeliveries already settled). */
        c_after_commit(c);
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
        c_tx_run(c);
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
        c_send_fetch(c, 1);
        return;
    }
    if (c->caught_up) {
        c_arm(c); /* armed already: sleeps */
        return;
    }
    c_send_fetch(c, 0);
}

void
loom__tp_consume_kick(tp_consumer *c)
{
    if (c->state == TP_C_SLEEP) {
        uv_timer_stop(&c->timer);
        c->state = TP_C_IDLE;
    }
    c_next(c);
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
    entry_resolved(c, e, state);
    if (c->topts.at_most_once || e->part == NULL) {
        /* Nothing to settle: at most once committed it before, and a
         * partition taken away is someone else's to settle. */
        if (c->topts.at_most_once && state == TP_E_FAILED)
            loom__log(LOOM_LOG_WARN,
                      "topics group \"%s\": %s[%d]@%lld failed (%s); at "
                      "most once: dropped",
                      c->group, e->msg.topic, (int) e->msg.partition,
                      (long long) e->msg.offset, error ? error : "");
        entry_done(c, e);
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
        if (!loom__tp_name_ok(cfg->topics[i], 1))
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
    c_next(c);
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
    c_next(c);
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
        batch_free(c, c->batches);
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
    c_flush(c);
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
