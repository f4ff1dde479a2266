/*
 * Publishing. Each loom_transport_publish() call is checked, copied and
 * queued; the queue goes out as one transaction at a time on the
 * producer's own connection, taking every whole call queued meanwhile up
 * to `batch` messages (so a busy producer batches by itself, the way
 * Kafka's accumulator does, and `linger_ms` can wait to fill batches
 * further). In the transaction, one loom.topic_publish() per topic, by
 * topic name, each with its messages in the order the calls came, so
 * each partition's offsets follow publish order.
 *
 * Partitions: an explicit one is passed through; a key is hashed here
 * (Kafka's murmur2, made positive) and the server takes it modulo the
 * partition count it sees, so the producer never holds a stale count;
 * keyless messages get the batch's sticky partition. A custom partitioner
 * chooses here, with the count this process last read.
 *
 * A lost connection keeps the transaction: it is sent again, with a
 * capped backoff, once the connection is back (the message ids make a
 * resend of a commit that did land harmless where the topic
 * deduplicates). After TP_DELIVERY_TIMEOUT_MS without success its calls
 * fail with LOOM_ECONN, as Kafka's delivery.timeout.ms does. A transaction
 * refused for another reason (say, an unknown topic) is split and each of
 * its calls sent alone, so one bad call fails only itself.
 */
#include <stdio.h>
#include <string.h>

#include "log_int.h"
#include "loom/alloc.h"
#include "pgwire.h"
#include "topics_int.h"

#define TP_DELIVERY_TIMEOUT_MS 120000

#define TP_SQL_PUBLISH                                                         \
    "SELECT count(*) FROM loom.topic_publish($1, $2, $3, $4, $5, $6, $7, "     \
    "$8, $9)"

typedef struct tp_qmsg {
    size_t topic; /* offsets into the call's data */
    size_t key, hdr, payload;
    int key_len; /* -1: none */
    int hdr_len; /* -1: none */
    int payload_len;
    int32_t partition; /* -1: hash or sticky */
    int32_t hash;      /* keyed: murmur2 & 0x7fffffff */
    int has_hash;
    int64_t deliver_at; /* µs since 1970; 0: now */
    loom_uuid id;
} tp_qmsg;

typedef struct tp_call {
    loom_publish_cb cb;
    void *arg;
    size_t n;
    tp_qmsg *msgs;
    loom__buf data;
    int solo; /* send alone (its transaction failed with others) */
    struct tp_call *next;
} tp_call;

struct tp_producer {
    tp_transport *tr;
    tp_conn conn;
    tp_call *head, *tail; /* queued */
    size_t queued;        /* messages queued */
    tp_call *sent;        /* the calls of the transaction in flight */
    loom_tx tx;
    uint32_t sticky;
    uint64_t failing_since; /* uv_now() of the first failure in a row; 0 */
    loom__backoff backoff;
    uv_timer_t timer; /* lingering, or waiting to resend */
    int timer_init;
    int linger_armed;
    int retry_armed;
    int linger_due; /* the linger time is up: send what there is */
};

static void prod_send(tp_producer *p);
static void prod_on_retry(uv_timer_t *t);
static void prod_sent(void *arg, loom_err rc, PGresult *r);

static void
call_free(tp_call *c)
{
    loom__buf_free(&c->data);
    loom_free(c->msgs);
    loom_free(c);
}

/* Reports the outcome to every call of the list and frees them. */
static void
prod_report(tp_call *list, loom_err rc)
{
    while (list != NULL) {
        tp_call *next = list->next;
        if (list->cb != NULL)
            list->cb(rc, rc == LOOM_OK ? list->n : 0, list->arg);
        call_free(list);
        list = next;
    }
}

int
loom__tp_producer_busy(const tp_transport *tr)
{
    const tp_producer *p = tr->producer;

    return p != NULL && (p->head != NULL || p->sent != NULL);
}

static void
prod_timer_closed(uv_handle_t *h)
{
    tp_producer *p = h->data;
    tp_transport *tr = p->tr;

    loom_free(p);
    loom__tp_released(tr);
}

void
loom__tp_producer_free(tp_transport *tr)
{
    tp_producer *p = tr->producer;

    if (p == NULL)
        return;
    tr->producer = NULL;
    loom__pgconn_close(&p->conn);
    /* Unfinished: the outcome of the one in flight is unknown, the queued
     * ones were never sent; both are reported as lost connections. */
    prod_report(p->sent, LOOM_ECONN);
    prod_report(p->head, LOOM_ECONN);
    loom__tx_free(&p->tx);
    if (p->timer_init) {
        uv_close((uv_handle_t *) &p->timer, prod_timer_closed);
        return;
    }
    loom_free(p);
}

/* ---- checking and queueing ------------------------------------------- */

static loom_err
prod_check(tp_transport *tr, const loom_message *m)
{
    size_t hbytes = 0;

    if (!loom_topic_name_valid(m->topic, 0) ||
        m->partition >= LOOM_MAX_PARTITIONS)
        return LOOM_EINVAL;
    for (size_t h = 0; h < m->n_headers; h++)
        hbytes += strlen(m->headers[h].key) + strlen(m->headers[h].value) + 8;
    if (m->payload_len > LOOM_MAX_MESSAGE_BYTES ||
        m->key_len > LOOM_MAX_MESSAGE_BYTES ||
        hbytes > LOOM_MAX_MESSAGE_BYTES ||
        m->payload_len + m->key_len + hbytes > LOOM_MAX_MESSAGE_BYTES)
        return LOOM_ETOOBIG;
    (void) tr;
    return LOOM_OK;
}

static loom_err
prod_copy(tp_transport *tr, tp_call *call, size_t i, const loom_message *m)
{
    tp_qmsg *q = &call->msgs[i];
    loom__buf *d = &call->data;

    q->topic = d->len;
    loom__buf_put(d, m->topic, strlen(m->topic) + 1);
    q->key = d->len;
    q->key_len = m->key != NULL ? (int) m->key_len : -1;
    if (m->key_len > 0)
        loom__buf_put(d, m->key, m->key_len);
    q->hdr = d->len;
    q->hdr_len = -1;
    if (m->n_headers > 0) {
        loom__headers_encode(d, m->headers, m->n_headers);
        q->hdr_len = (int) (d->len - q->hdr);
    }
    q->payload = d->len;
    q->payload_len = (int) m->payload_len;
    if (m->payload_len > 0)
        loom__buf_put(d, m->payload, m->payload_len);
    q->deliver_at = m->deliver_at;
    q->id = m->id;
    if (loom_uuid_is_nil(&q->id) && loom_uuid_generate(&q->id) != LOOM_OK)
        return LOOM_EIO;
    q->partition = m->partition;
    q->has_hash = 0;
    if (q->partition == LOOM_PARTITION_ANY && tr->partitioner != NULL) {
        int32_t n = 0;
        loom_err rc = loom__tp_partition_count(tr, m->topic, &n);
        if (rc != LOOM_OK)
            return rc;
        q->partition = tr->partitioner(m->topic, m->key, m->key_len, n,
                                       tr->partitioner_arg);
        if (q->partition < 0 || q->partition >= n)
            return LOOM_EINVAL;
    } else if (q->partition == LOOM_PARTITION_ANY && m->key != NULL) {
        q->hash = loom_murmur2(m->key, m->key_len) & 0x7fffffff;
        q->has_hash = 1;
    }
    return LOOM_OK;
}

static loom_err
prod_start(tp_transport *tr)
{
    char err[256];
    tp_producer *p = loom_malloc(sizeof *p);
    loom_err rc;

    if (p == NULL)
        return LOOM_ENOMEM;
    memset(p, 0, sizeof *p);
    p->tr = tr;
    loom__tx_init(&p->tx);
    loom__backoff_init(&p->backoff, 50, 5000);
    rc = loom__tp_conn_open(&p->conn, tr, "producer", err, sizeof err);
    if (rc != LOOM_OK) {
        loom__log(LOOM_LOG_ERROR, "topics producer: %s", err);
        loom_free(p);
        return rc;
    }
    {
        loom_uuid seed;
        loom_uuid_generate(&seed);
        memcpy(&p->sticky, seed.bytes + 12, sizeof p->sticky);
    }
    tr->producer = p;
    return LOOM_OK;
}

loom_err
loom__tp_publish(tp_transport *tr, const loom_message *msgs, size_t n,
                 loom_publish_cb cb, void *arg)
{
    tp_producer *p;
    tp_call *call;
    loom_err rc = LOOM_OK;

    if (tr->stopping || tr->closed)
        return LOOM_EBUSY;
    for (size_t i = 0; i < n && rc == LOOM_OK; i++)
        rc = prod_check(tr, &msgs[i]);
    if (rc != LOOM_OK)
        return rc;
    if (tr->producer == NULL && (rc = prod_start(tr)) != LOOM_OK)
        return rc;
    p = tr->producer;
    call = loom_malloc(sizeof *call);
    if (call == NULL)
        return LOOM_ENOMEM;
    memset(call, 0, sizeof *call);
    call->msgs = loom_malloc(n * sizeof *call->msgs);
    if (call->msgs == NULL) {
        loom_free(call);
        return LOOM_ENOMEM;
    }
    call->cb = cb;
    call->arg = arg;
    call->n = n;
    for (size_t i = 0; i < n && rc == LOOM_OK; i++)
        rc = prod_copy(tr, call, i, &msgs[i]);
    if (rc == LOOM_OK && call->data.failed)
        rc = LOOM_ENOMEM;
    if (rc != LOOM_OK) {
        call_free(call);
        return rc;
    }
    if (p->tail != NULL)
        p->tail->next = call;
    else
        p->head = call;
    p->tail = call;
    p->queued += n;
    prod_send(p);
    return LOOM_OK;
}

/* ---- sending ------------------------------------------------------------ */

static void
put_i32(loom__buf *b, int32_t v)
{
    char be[4] = {(char) ((uint32_t) v >> 24), (char) ((uint32_t) v >> 16),
                  (char) ((uint32_t) v >> 8), (char) v};
    loom__pg_array_add(b, be, 4);
}

/* Queues one loom.topic_publish() for the messages of `calls` whose topic
 * is `topic`; marks them sent in `done` (one flag per message, in order). */
static loom_err
prod_queue_topic(tp_producer *p, tp_call *calls, const char *topic,
                 unsigned char *done, size_t n_total)
{
    loom__buf arr[8] = {LOOM__BUF_INIT, LOOM__BUF_INIT, LOOM__BUF_INIT,
                        LOOM__BUF_INIT, LOOM__BUF_INIT, LOOM__BUF_INIT,
                        LOOM__BUF_INIT, LOOM__BUF_INIT};
    uint32_t n = 0;
    int any_part = 0, any_hash = 0, any_key = 0, any_hdr = 0, any_at = 0;
    size_t k = 0;
    char sticky[4];
    const char *values[9];
    int lengths[9];
    static const uint32_t types[9] = {
        LOOM__OID_TEXT,   LOOM__OID_AINT4,  LOOM__OID_AINT4,
        LOOM__OID_INT4,   LOOM__OID_AUUID,  LOOM__OID_ABYTEA,
        LOOM__OID_ABYTEA, LOOM__OID_ABYTEA, 1185 /* timestamptz[] */};
    loom_err rc;

    /* Count this topic's messages and what they carry. */
    for (tp_call *c = calls; c != NULL; c = c->next)
        for (size_t i = 0; i < c->n; i++, k++) {
            const tp_qmsg *q = &c->msgs[i];
            if (done[k] || strcmp(c->data.data + q->topic, topic) != 0)
                continue;
            n++;
            any_part |= q->partition >= 0;
            any_hash |= q->has_hash;
            any_key |= q->key_len >= 0;
            any_hdr |= q->hdr_len >= 0;
            any_at |= q->deliver_at != 0;
        }
    loom__pg_array_begin(&arr[0], LOOM__OID_INT4, n);
    loom__pg_array_begin(&arr[1], LOOM__OID_INT4, n);
    loom__pg_array_begin(&arr[2], LOOM__OID_UUID, n);
    loom__pg_array_begin(&arr[3], LOOM__OID_BYTEA, n);
    loom__pg_array_begin(&arr[4], LOOM__OID_BYTEA, n);
    loom__pg_array_begin(&arr[5], LOOM__OID_BYTEA, n);
    loom__pg_array_begin(&arr[6], LOOM__OID_TSTZ, n);
    k = 0;
    for (tp_call *c = calls; c != NULL; c = c->next)
        for (size_t i = 0; i < c->n; i++, k++) {
            const tp_qmsg *q = &c->msgs[i];
            const char *d = c->data.data;
            if (done[k] || strcmp(d + q->topic, topic) != 0)
                continue;
            done[k] = 1;
            if (q->partition >= 0)
                put_i32(&arr[0], q->partition);
            else
                loom__pg_array_add(&arr[0], NULL, LOOM__PG_NULL);
            if (q->has_hash)
                put_i32(&arr[1], q->hash);
            else
                loom__pg_array_add(&arr[1], NULL, LOOM__PG_NULL);
            loom__pg_array_add(&arr[2], q->id.bytes, 16);
            if (q->key_len >= 0)
                loom__pg_array_add(&arr[3], d + q->key, (size_t) q->key_len);
            else
                loom__pg_array_add(&arr[3], NULL, LOOM__PG_NULL);
            if (q->hdr_len >= 0)
                loom__pg_array_add(&arr[4], d + q->hdr, (size_t) q->hdr_len);
            else
                loom__pg_array_add(&arr[4], NULL, LOOM__PG_NULL);
            loom__pg_array_add(&arr[5], d + q->payload,
                               (size_t) q->payload_len);
            if (q->deliver_at != 0) {
                char be[8];
                loom__pg_put_be64(
                    be, (uint64_t) loom__pg_time_from_unix(q->deliver_at));
                loom__pg_array_add(&arr[6], be, 8);
            } else {
                loom__pg_array_add(&arr[6], NULL, LOOM__PG_NULL);
            }
        }
    (void) n_total;
    sticky[0] = (char) (p->sticky >> 24);
    sticky[1] = (char) (p->sticky >> 16);
    sticky[2] = (char) (p->sticky >> 8);
    sticky[3] = (char) p->sticky;
    values[0] = topic;
    lengths[0] = (int) strlen(topic);
    values[1] = any_part ? arr[0].data : NULL;
    lengths[1] = (int) arr[0].len;
    values[2] = any_hash ? arr[1].data : NULL;
    lengths[2] = (int) arr[1].len;
    values[3] = sticky;
    lengths[3] = 4;
    values[4] = arr[2].data;
    lengths[4] = (int) arr[2].len;
    values[5] = any_key ? arr[3].data : NULL;
    lengths[5] = (int) arr[3].len;
    values[6] = any_hdr ? arr[4].data : NULL;
    lengths[6] = (int) arr[4].len;
    values[7] = arr[5].data;
    lengths[7] = (int) arr[5].len;
    values[8] = any_at ? arr[6].data : NULL;
    lengths[8] = (int) arr[6].len;
    rc = LOOM_OK;
    for (int i = 0; i < 7; i++)
        if (arr[i].failed)
            rc = LOOM_ENOMEM;
    if (rc == LOOM_OK)
        rc = loom_tx_exec_binary(&p->tx, TP_SQL_PUBLISH, 9, types, values,
                                 lengths);
    for (int i = 0; i < 8; i++)
        loom__buf_free(&arr[i]);
    return rc;
}

/* Queues the statement that takes the wake lock of every topic of
 * p->sent, shared, in ascending topic id. */
static loom_err
prod_queue_wake_locks(tp_producer *p)
{
    loom__buf names = LOOM__BUF_INIT, seen = LOOM__BUF_INIT;
    uint32_t n = 0;
    loom_err rc;

    /* Distinct names: `seen` holds them NUL-separated. */
    for (tp_call *c = p->sent; c != NULL; c = c->next)
        for (size_t i = 0; i < c->n; i++) {
            const char *t = c->data.data + c->msgs[i].topic;
            size_t len = strlen(t);
            int dup = 0;
            for (size_t at = 0; at < seen.len; at += strlen(seen.data + at) + 1)
                if (strcmp(seen.data + at, t) == 0) {
                    dup = 1;
                    break;
                }
            if (dup)
                continue;
            loom__buf_put(&seen, t, len + 1);
            n++;
        }
    loom__pg_array_begin(&names, LOOM__OID_TEXT, n);
    for (size_t at = 0; at < seen.len; at += strlen(seen.data + at) + 1)
        loom__pg_array_add(&names, seen.data + at, strlen(seen.data + at));
    if (names.failed || seen.failed) {
        rc = LOOM_ENOMEM;
    } else {
        static const uint32_t types[1] = {LOOM__OID_ATEXT};
        const char *values[1] = {names.data};
        int lengths[1] = {(int) names.len};
        rc = loom_tx_exec_binary(
            &p->tx,
            "SELECT count(pg_advisory_xact_lock_shared(" LOOM__TP_WAKE_LOCK
            ", id)) FROM (SELECT id FROM loom.topics WHERE name = "
            "ANY($1::text[]) ORDER BY id OFFSET 0) t",
            1, types, values, lengths);
    }
    loom__buf_free(&names);
    loom__buf_free(&seen);
    return rc;
}

/* Builds the transaction for p->sent and sends it. */
static loom_err
prod_build_and_send(tp_producer *p)
{
    size_t total = 0, k = 0;
    unsigned char *done;
    loom_err rc = LOOM_OK;

    for (tp_call *c = p->sent; c != NULL; c = c->next)
        total += c->n;
    done = loom_malloc(total ? total : 1);
    if (done == NULL)
        return LOOM_ENOMEM;
    memset(done, 0, total ? total : 1);
    loom__tx_reset(&p->tx);
    if (p->tr->acks != LOOM_TOPICS_ACKS_ALL)
        rc = loom_tx_exec(&p->tx,
                          p->tr->acks == LOOM_TOPICS_ACKS_NONE
                              ? "SELECT set_config('synchronous_commit', "
                                "'off', true)"
                              : "SELECT set_config('synchronous_commit', "
                                "'local', true)",
                          0, NULL);
    /* Holds each topic's wake lock shared until commit, taken before any
     * topic_publish() looks for an armed consumer (see the arm in
     * consume.c): a consumer arming meanwhile waits for this commit. */
    if (rc == LOOM_OK)
        rc = prod_queue_wake_locks(p);
    /* One statement per topic, by name (bytewise), as relays publishing
     * inside the database do (schema 13): publishers that take the same
     * topics' partition locks in one order cannot deadlock. Each key's
     * messages keep their order (one topic, call order within it). */
    while (rc == LOOM_OK) {
        const char *next = NULL;
        k = 0;
        for (tp_call *c = p->sent; c != NULL; c = c->next)
            for (size_t i = 0; i < c->n; i++, k++) {
                const char *t = c->data.data + c->msgs[i].topic;
                if (!done[k] && (next == NULL || strcmp(t, next) < 0))
                    next = t;
            }
        if (next == NULL)
            break;
        rc = prod_queue_topic(p, p->sent, next, done, total);
    }
    loom_free(done);
    if (rc == LOOM_OK)
        rc = loom__pgconn_tx(&p->conn, &p->tx, prod_sent, p);
    return rc;
}

/* The connection is down: the transaction in hand goes again after a
 * backoff, or, past the delivery timeout, its calls fail. */
static void
prod_retry_later(tp_producer *p)
{
    uv_loop_t *loop = loom_runtime_loop(p->tr->rt);
    uint64_t now = uv_now(loop);

    if (p->failing_since == 0)
        p->failing_since = now;
    if (now - p->failing_since >= TP_DELIVERY_TIMEOUT_MS || p->tr->closed ||
        p->tr->stopping || !p->timer_init) {
        tp_call *sent = p->sent;
        loom__log(LOOM_LOG_WARN,
                  "topics publish failed: %s (no connection for %llu ms)",
                  loom__pgconn_errmsg(&p->conn),
                  (unsigned long long) (now - p->failing_since));
        p->sent = NULL;
        prod_report(sent, LOOM_ECONN);
        return;
    }
    p->retry_armed = 1;
    uv_timer_start(&p->timer, prod_on_retry, loom__backoff_next(&p->backoff),
                   0);
}

static void
prod_on_retry(uv_timer_t *t)
{
    tp_producer *p = t->data;

    p->retry_armed = 0;
    if (p->sent == NULL) {
        prod_send(p);
        return;
    }
    if (loom__pgconn_tx(&p->conn, &p->tx, prod_sent, p) != LOOM_OK)
        prod_retry_later(p);
}

static void
prod_on_linger(uv_timer_t *t)
{
    tp_producer *p = t->data;

    p->linger_armed = 0;
    p->linger_due = 1;
    prod_send(p);
}

static void
prod_send(tp_producer *p)
{
    size_t taken = 0;
    tp_call **tail = &p->sent;
    loom_err rc;

    if (p->sent != NULL || p->head == NULL || p->conn.busy || p->retry_armed)
        return;
    /* The timer serves lingering and resending; make sure it exists. */
    if (!p->timer_init) {
        if (uv_timer_init(loom_runtime_loop(p->tr->rt), &p->timer) == 0) {
            p->timer.data = p;
            p->timer_init = 1;
            p->tr->open_handles++;
        }
    }
    /* Lingering: wait up to linger_ms for a fuller batch. */
    if (p->tr->linger_ms > 0 && p->queued < p->tr->batch && !p->tr->stopping &&
        !p->linger_due) {
        if (!p->linger_armed) {
            if (!p->timer_init)
                goto send;
            p->linger_armed = 1;
            uv_timer_start(&p->timer, prod_on_linger, p->tr->linger_ms, 0);
        }
        return;
    }
send:
    p->linger_due = 0;
    if (p->linger_armed) {
        uv_timer_stop(&p->timer);
        p->linger_armed = 0;
    }
    /* Whole calls, up to `batch` messages (at least one call); a solo
     * call goes alone. */
    while (p->head != NULL) {
        tp_call *c = p->head;
        if (taken > 0 && (taken + c->n > p->tr->batch || c->solo))
            break;
        p->head = c->next;
        if (p->head == NULL)
            p->tail = NULL;
        c->next = NULL;
        *tail = c;
        tail = &c->next;
        taken += c->n;
        p->queued -= c->n;
        if (c->solo)
            break;
    }
    p->sticky++;
    rc = prod_build_and_send(p);
    if (rc == LOOM_ECONN) {
        prod_retry_later(p);
        return;
    }
    if (rc != LOOM_OK) {
        tp_call *sent = p->sent;
        loom__log(LOOM_LOG_WARN, "topics publish: %s (%s)", loom_strerror(rc),
                  loom__pgconn_errmsg(&p->conn));
        p->sent = NULL;
        prod_report(sent, rc);
        /* Try the rest on the next publish or completion. */
    }
}

static void
prod_sent(void *arg, loom_err rc, PGresult *r)
{
    tp_producer *p = arg;
    tp_transport *tr = p->tr;
    tp_call *sent = p->sent;

    PQclear(r);
    if (rc == LOOM_ECONN && !tr->closed) {
        /* The same transaction again, later: a duplicate of a commit that
         * did land is dropped by the topic's deduplication. */
        prod_retry_later(p);
        if (p->sent != NULL)
            return;
        prod_send(p);
        return;
    }
    if (rc == LOOM_OK) {
        p->failing_since = 0;
        loom__backoff_reset(&p->backoff);
    }
    if (rc != LOOM_OK && rc != LOOM_ECONN && sent != NULL &&
        sent->next != NULL) {
        /* Several calls failed together: each goes again alone, so only
         * the bad one fails. */
        tp_call *last = sent;
        for (tp_call *c = sent; c != NULL; c = c->next) {
            c->solo = 1;
            last = c;
            p->queued += c->n;
        }
        last->next = p->head;
        p->head = sent;
        if (p->tail == NULL)
            p->tail = last;
        p->sent = NULL;
        prod_send(p);
        return;
    }
    if (rc != LOOM_OK)
        loom__log(LOOM_LOG_WARN, "topics publish failed: %s",
                  loom__pgconn_errmsg(&p->conn));
    p->sent = NULL;
    prod_report(sent, rc);
    /* A callback may have closed the transport. */
    if (tr->producer != p)
        return;
    prod_send(p);
    loom__tp_maybe_stopped(tr);
}
