/*
 * The outbox relay's batch in hand (relay.c draws the whole state
 * machine): its messages, built from a fetched page, published through
 * the transport, then the advance of the cursor that records them.
 *
 * A batch stays in memory until its advance commits: a failed publish is
 * retried with the same messages after a backoff (capped, with jitter),
 * and the outbox is untouched meanwhile. A message the transport refuses
 * for good (LOOM_EINVAL, LOOM_ETOOBIG, LOOM_ENOTFOUND) makes the batch go
 * again one message at a time; the refused ones are moved to
 * loom.outbox_dead_letters in the advance, so they never block the rest.
 */
#include <stdio.h>
#include <string.h>

#include "alloc_int.h"
#include "headers.h"
#include "log_int.h"
#include "loom/alloc.h"
#include "loom/nats.h"
#include "pgwire.h"
#include "relay_int.h"
#include "tx_int.h"

static void relay_advance(loom_relay *r);

/* ---- the batch in hand ------------------------------------------------ */

void
loom__relay_drop_batch(loom_relay *r)
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
loom_err
loom__relay_take_rows(loom_relay *r, PGresult *rows)
{
    size_t n = (size_t) PQntuples(rows), total = 0;
    loom_header **dec;
    size_t *ndec;
    loom_err rc = LOOM_OK;

    r->rows = rows;
    r->n = n;
    r->msgs = loom__relay_calloc(n, sizeof *r->msgs);
    r->meta = loom__relay_calloc(n, sizeof *r->meta);
    dec = loom__relay_calloc(n, sizeof *dec);
    ndec = loom__relay_calloc(n, sizeof *ndec);
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
    r->hdrs = loom__relay_calloc(total ? total : 1, sizeof *r->hdrs);
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
        loom__relay_drop_batch(r);
        loom__log(LOOM_LOG_ERROR, "relay %s: out of memory for a batch",
                  r->outbox);
    }
    return rc;
}

/* A step failed during a stop: the batch is left to the next leader
 * (at least once), and the relay steps down while it still leads.
 * loom__relay_lost() would stand by first, which skips the resign: the row
 * would keep naming this relay, shown as gone once it exits. */
static void
relay_stop_now(loom_relay *r)
{
    loom__log(LOOM_LOG_INFO,
              "relay %s: stopping; the batch in hand is published again by "
              "the next active relay",
              r->outbox);
    loom__relay_drop_batch(r);
    loom__relay_finish_stop(r);
}

/* ---- publishing --------------------------------------------------------- */

/* Errors that no retry can fix: the message itself is refused. */
static int
relay_refused_for_good(loom_err rc)
{
    return rc == LOOM_EINVAL || rc == LOOM_ETOOBIG || rc == LOOM_ENOTFOUND;
}

/* Why the transport refused message `index` for good: its own words when
 * it gave them (`why`: loom_nats_errmsg() after a refusal at the call;
 * topics:// logs its own), else a topic name no transport takes, else
 * only the code. An operator reading `loomctl outbox dlq` must see what
 * to change. */
static void
relay_refused(loom_relay *r, loom_err rc, size_t index, const char *why)
{
    char buf[400];
    const char *topic = r->msgs[index].topic;

    if (why != NULL && why[0] != '\0')
        snprintf(buf, sizeof buf, "%s: %s", loom_strerror(rc), why);
    else if (topic != NULL && !loom_topic_name_valid(topic, 0))
        snprintf(buf, sizeof buf,
                 "%s: \"%.200s\" is not a topic name (1 to 249 bytes of "
                 "words of letters, digits, '_' and '-' separated by single "
                 "dots)",
                 loom_strerror(rc), topic);
    else
        snprintf(buf, sizeof buf, "%s", loom_strerror(rc));
    relay_set_dead(r, index, "the transport refused it: %s", buf);
}

static void
relay_publish_done(loom_relay *r, loom_err rc, size_t index, size_t count,
                   const char *why)
{
    if (rc == LOOM_OK) {
        loom__relay_recovered(r);
        r->stats.published += count;
        if (r->published != NULL)
            r->published(r->published_arg, &r->msgs[index], count);
        if (!r->single_mode) {
            r->stats.batches++;
            relay_advance(r);
            return;
        }
        r->single = index + 1;
        loom__relay_publish(r);
        return;
    }
    if (relay_refused_for_good(rc)) {
        if (!r->single_mode) {
            /* Find the refused ones: one at a time from the start. */
            r->single_mode = 1;
            r->single = 0;
            loom__relay_publish(r);
            return;
        }
        relay_refused(r, rc, index, why);
        r->single = index + 1;
        loom__relay_publish(r);
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
        loom__relay_set_error(r, what, loom_err_name(rc));
    }
    loom__relay_backoff(r);
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
    relay_publish_done(r, rc, index, count, NULL);
}

void
loom__relay_publish(loom_relay *r)
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
        loom__relay_backoff(r);
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
    /* Refused at once: the callback will not come. A NATS transport
     * says why (the others answer ""). */
    r->ticket = NULL;
    loom_free(t);
    relay_publish_done(r, rc, first, count, loom_nats_errmsg(r->tp));
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

        loom__relay_drop_batch(r);
        loom__relay_moved(r, tx, pos, n);
        return;
    }
    if (rc == LOOM_ECONN) {
        loom__relay_lost(r, "the connection to PostgreSQL broke");
        return;
    }
    if (rc == LOOM_ECONFLICT) {
        loom__relay_lost(r, "another relay moved the cursor");
        return;
    }
    if (r->stopping) {
        relay_stop_now(r);
        return;
    }
    loom__relay_set_error(r, "recording progress failed",
                          loom__pgconn_errmsg(&r->conn));
    r->single_mode = 1;
    r->single = r->n; /* published: only the advance is retried */
    loom__relay_backoff(r);
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
        loom__relay_lost(r, "the connection to PostgreSQL broke");
        return;
    }
    r->single_mode = 1;
    r->single = r->n;
    loom__relay_backoff(r);
}
