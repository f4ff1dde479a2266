/*
 * A topics consumer's commits (consume.c draws the whole data path). A
 * commit is one transaction: each failed message's redelivery
 * (loom.topic_retry, due after an exponential backoff) or dead letter,
 * each acknowledged redelivery's removal, and per partition the offset
 * below the first message still with the handler. Every statement is
 * fenced by the partition's generation, so a member that lost a partition
 * commits nothing on it; it drops what it held there and the new owner
 * starts from the committed offset.
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
#include "consume_int.h"
#include "log_int.h"
#include "loom/alloc.h"
#include "pgwire.h"

#define TP_SQL_COMMIT "SELECT loom.topic_commit_many($1, $2, $3, $4, $5, $6)"
#define TP_SQL_RETRY                                                           \
    "SELECT loom.topic_retry($1, $2, $3, $4, $5, $6, $7, $8, $9)"
#define TP_SQL_RETRY_DONE "SELECT loom.topic_retry_done($1, $2, $3, $4, $5, $6)"
#define TP_SQL_DEAD                                                            \
    "SELECT loom.topic_dead_letter($1, $2, $3, $4, $5, $6, $7, $8, $9)"

static void c_tx_revert(tp_consumer *c);

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

uint32_t
loom__tp_c_max_deliveries(const tp_consumer *c, const tp_part *p)
{
    return c->max_deliveries
               ? c->max_deliveries
               : (uint32_t) (p->max_deliveries > 0 ? p->max_deliveries : 5);
}

/* Whether messages of topic `name` can have a dead-letter topic: its
 * name plus LOOM_DLQ_SUFFIX must fit LOOM_MAX_TOPIC_NAME. Only a
 * dead-letter topic's name is longer than 245 bytes, so this is one whose
 * own dead letters cannot be kept apart. */
static int
c_has_dlq(const char *name)
{
    return strlen(name) + strlen(LOOM_DLQ_SUFFIX) <= LOOM_MAX_TOPIC_NAME;
}

/* Whether failed entry `e` is done with retries: rejected, or out of
 * deliveries. A delayed message is neither failed nor rejected: it only
 * waits. */
static int
c_spent(const tp_consumer *c, const tp_entry *e)
{
    return !e->delay &&
           (e->rejected ||
            e->deliveries >= loom__tp_c_max_deliveries(c, e->part));
}

/* Whether failed entry `e` (its partition still ours) is dead-lettered
 * by the commit rather than redelivered. A message of a topic that cannot
 * have a dead-letter topic is delivered again instead, after the longest
 * backoff (as SQS keeps a message of a queue without a redrive policy):
 * a dead letter that cannot be written would fail every commit, and with
 * it every partition of the member. */
static int
c_dead_now(const tp_consumer *c, const tp_entry *e)
{
    return c_spent(c, e) && c_has_dlq(e->part->topic);
}

/* Says, once per failure, that spent entry `e` has no dead-letter topic. */
static void
c_warn_no_dlq(const tp_consumer *c, const tp_entry *e)
{
    loom__log(LOOM_LOG_WARN,
              "topics group \"%s\": message at %.40s.../%d offset %lld "
              "failed (%s) and has no dead-letter topic: its name plus "
              "\"%s\" would pass %d bytes. It is delivered again in %llu "
              "ms; name topics at most %d bytes to keep the dead letters of "
              "their dead letters",
              c->group, e->part->topic, (int) e->part->partition,
              (long long) e->msg.offset, e->error ? e->error : "rejected",
              LOOM_DLQ_SUFFIX, LOOM_MAX_TOPIC_NAME,
              (unsigned long long) c->topts.backoff_max_ms,
              (int) (LOOM_MAX_TOPIC_NAME - 2 * strlen(LOOM_DLQ_SUFFIX)));
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
    if (c_spent(c, e))
        c_warn_no_dlq(c, e);
    visible = e->delay ? e->msg.deliver_at
                       : loom__tp_now_us() +
                             (int64_t) (c_spent(c, e)
                                            ? c->topts.backoff_max_ms
                                            : c_backoff_ms(c, e->deliveries)) *
                                 1000;
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
int
loom__tp_c_commit(tp_consumer *c, int keep_tx)
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
        loom__tp_c_fail(c, "committing");
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
void
loom__tp_c_flush(tp_consumer *c)
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
                loom__tp_entry_done(c, e);
        }
    if (rc == LOOM_OK) {
        for (size_t i = 0; i < c->n_committing; i++) {
            tp_entry *e = c->committing[i];
            if (e->state == TP_E_FAILED && e->part != NULL && c_dead_now(c, e))
                c->stats.dead++;
            if (e->state == TP_E_HANDLER)
                continue; /* at most once: a redelivery, delivered next */
            loom__tp_entry_done(c, e);
        }
        for (tp_part *p = c->parts; p != NULL; p = p->next) {
            if (p->committing > p->committed)
                p->committed = p->committing;
            p->committing = -1;
            loom__tp_part_pop_done(c, p);
        }
        c->n_committing = 0;
        loom__backoff_reset(&c->backoff);
        if (c->tx_fn != NULL && c->tx_batch != NULL && c->isolating) {
            c->iso_i++;
            loom__tp_c_tx_run(c);
            return;
        }
        c->tx_batch = NULL;
        loom__tp_c_after_commit(c);
        loom__tp_c_next(c);
        return;
    }
    c->n_committing = 0;
    /* A commit that did not happen is still wanted: with manual_commit,
     * loom__tp_c_next() would otherwise leave what it settled (an
     * acknowledged partition that stayed ours, say) unwritten until the
     * next loom_topics_commit(). */
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
        loom__tp_c_fail(c, NULL);
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
    loom__tp_c_fail(c, "committing");
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

void
loom__tp_c_tx_run(tp_consumer *c)
{
    tp_batch *b = c->tx_batch;
    const loom_message **msgs;
    size_t n;
    loom_err rc;

    msgs = loom_malloc((b->n ? b->n : 1) * sizeof *msgs);
    if (msgs == NULL) {
        loom__tp_c_fail(c, "out of memory");
        return;
    }
    n = c_tx_select(c, msgs);
    if (n == 0) {
        /* Everything delivered (or taken away). */
        loom_free(msgs);
        c->tx_batch = NULL;
        c->isolating = 0;
        loom__tp_c_next(c);
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
        loom__tp_entry_resolved(c, (tp_entry *) (void *) msgs[i], TP_E_ACKED);
    loom_free(msgs);
    if (!loom__tp_c_commit(c, 1))
        loom__tp_c_next(c);
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
        loom__tp_c_next(c);
        return;
    }
    if (!c->isolating && held > 1) {
        loom__log(LOOM_LOG_INFO,
                  "topics group \"%s\": a batch of %zu failed (%s); "
                  "delivering its messages one by one",
                  c->group, held, why);
        c->isolating = 1;
        c->iso_i = 0;
        loom__tp_c_tx_run(c);
        return;
    }
    /* One message failed alone: redelivered later, or dead-lettered. */
    loom_free(one->error);
    one->error = loom__strdup(why);
    one->rejected = reject;
    loom__tp_entry_resolved(c, one, TP_E_FAILED);
    c->isolating = held > 1 || c->isolating;
    if (!loom__tp_c_commit(c, 0))
        loom__tp_c_next(c);
}
