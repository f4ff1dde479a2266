/*
 * A topics consumer's reads (consume.c draws the whole data path): fresh
 * messages from the assigned partitions and the group's redeliveries
 * that are due, each read turned into a batch of entries and handed to
 * the handler (at most once: after the commit of their offsets; a
 * transactional handler: through consume_commit.c).
 */
#include <stdio.h>
#include <string.h>

#include "alloc_int.h"
#include "consume_int.h"
#include "log_int.h"
#include "loom/alloc.h"
#include "pgwire.h"

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
    "loom_topic_take_retries",
    /* Deliveries before the offset: c_fill() reads offset, id, key,
     * headers, payload, published_at and deliver_at as consecutive
     * columns (they were in another order, so a redelivery read its key as
     * headers and its headers as payload, and one whose key was not a
     * header list was dropped as gone). */
    "SELECT topic_id, partition, deliveries, unsettled::int4, \"offset\", "
    "id, key, headers, payload, published_at, deliver_at "
    "FROM loom.topic_take_retries($1, $2, $3, $4, $5)",
    5,
    {LOOM__OID_TEXT, LOOM__OID_AINT4, LOOM__OID_AINT4, LOOM__OID_INT4,
     LOOM__OID_INT8}};

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
 * once, commits first: loom__tp_c_after_commit delivers). */
static void
c_deliver(tp_consumer *c, tp_batch *b)
{
    const loom_message **msgs;
    size_t n = 0;

    msgs = loom_malloc((b->n ? b->n : 1) * sizeof *msgs);
    if (msgs == NULL) {
        /* Give them back: unsettled, they are fetched again. */
        loom__tp_c_fail(c, "out of memory delivering");
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

void
loom__tp_c_after_commit(tp_consumer *c)
{
    tp_batch *b = c->deliver_after;

    if (b != NULL) {
        c->deliver_after = NULL;
        c_deliver(c, b);
    }
}

/* Redelivery e has been handed out more than the topic's max deliveries,
 * the last time without being settled: the consumer that took it died or
 * held it past the visibility timeout, as one a message crashes would. It goes
 * to the dead-letter topic without reaching the handler (an SQS queue's
 * maxReceiveCount), or it would come back forever. */
static void
c_unsettled(tp_consumer *c, tp_entry *e)
{
    char why[160];

    e->deliveries--; /* this one never happens */
    snprintf(why, sizeof why,
             "delivered %u times without being settled: the consumer "
             "stopped or outlived the visibility timeout each time",
             e->deliveries);
    e->error = loom__strdup(why);
    e->rejected = 1;
    e->state = TP_E_FAILED;
    c->pending++;
    loom__log(LOOM_LOG_WARN,
              "topics group \"%s\": message at %s/%d offset %lld %s; it "
              "goes to the dead-letter topic without the handler",
              c->group, e->part->topic, (int) e->part->partition,
              (long long) e->msg.offset, why);
}

/* Turns the rows of a fetch (fresh: `retries` 0) into a batch. */
static void
c_take_rows(tp_consumer *c, PGresult *r, int retries, tp_part **parts,
            size_t n_parts)
{
    int rows = PQntuples(r);
    tp_batch *b;
    size_t deliverable = 0;
    int64_t now = loom__tp_now_us();

    if (rows == 0) {
        PQclear(r);
        return;
    }
    b = c_batch_new(c, r, (size_t) rows);
    if (b == NULL) {
        PQclear(r);
        loom__tp_c_fail(c, "out of memory");
        return;
    }
    for (int i = 0; i < rows; i++) {
        tp_entry *e = &b->entries[i];
        tp_part *p = NULL;
        int gone = 0;
        int32_t unsettled = 0;

        e->magic = TP_ENTRY_MAGIC;
        e->c = c;
        e->batch = b;
        b->unfinished++;
        if (retries) {
            int32_t tid = 0, part = 0, del = 0;
            loom__pg_get_i32(r, i, 0, &tid);
            loom__pg_get_i32(r, i, 1, &part);
            loom__pg_get_i32(r, i, 2, &del);
            loom__pg_get_i32(r, i, 3, &unsettled);
            for (size_t k = 0; k < n_parts; k++)
                if (parts[k]->topic_id == tid && parts[k]->partition == part)
                    p = parts[k];
            e->retry = 1;
            /* The fetch counted this delivery (schema 23). */
            e->deliveries = del > 0 ? (uint32_t) del : 1;
            gone = PQgetisnull(r, i, 5);
            if (p != NULL && !gone && c_fill(e, r, i, 4, p) != 0) {
                /* Undecodable headers: deliver without them, as a fresh
                 * message (marking it gone would drop it unseen). */
                e->msg.headers = NULL;
                e->msg.n_headers = 0;
            }
            if (p != NULL && gone)
                loom__pg_get_i64(r, i, 4, &e->msg.offset);
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
        } else if (unsettled &&
                   e->deliveries > loom__tp_c_max_deliveries(c, p)) {
            c_unsettled(c, e);
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
        loom__tp_batch_free(c, b);
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
        loom__tp_c_tx_run(c);
        return;
    }
    c_deliver(c, b);
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

void
loom__tp_c_send_fetch(tp_consumer *c, int retries)
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
        loom__tp_c_fail(c, "out of memory");
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
        loom__tp_c_fail(c, "fetching");
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
        loom__tp_c_fail(c, "fetching redeliveries");
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
         * up: loom__tp_c_next() arms or sleeps instead). */
        if (c->in_flight < c->max_in_flight && c->n_parts > 0 && !c->stopping &&
            c->tx_batch == NULL && c->deliver_after == NULL && !c->closing &&
            !c->caught_up)
            loom__tp_c_send_fetch(c, 0);
        else
            loom__tp_c_next(c);
    }
}

static void
c_fetched(void *arg, loom_err rc, PGresult *r)
{
    tp_consumer *c = arg;
    int rows;

    c->state = TP_C_IDLE;
    if (rc != LOOM_OK) {
        PQclear(r);
        loom__tp_c_fail(c, "fetching");
        return;
    }
    rows = PQntuples(r);
    if (c->fetch_epoch != c->assign_epoch) {
        PQclear(r); /* fetched for partitions we may no longer own */
        loom__tp_c_next(c);
        return;
    }
    /* A wake-up during the fetch may announce what its snapshot missed:
     * read again. Otherwise a short read means every partition is
     * drained, and loom__tp_c_next() arms rather than reads again. */
    if (c->woken) {
        c->woken = 0;
        c->caught_up = 0;
    } else {
        c->caught_up = (uint32_t) rows < c->fetch_limit;
    }
    if (rows == 0) {
        PQclear(r);
        loom__tp_c_next(c);
        return;
    }
    c_take_rows(c, r, 0, c->fetch_parts, c->n_fetch_parts);
    if (c->state == TP_C_IDLE)
        loom__tp_c_next(c);
}
