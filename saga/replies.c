/*
 * Replies (orch_int.h): delivered batches wait in a queue, in delivery
 * order; the orchestrator takes up to `batch` of them at a time:
 *
 *   parse   the wire headers (a reply without them is failed back to the
 *           transport: redelivered, then dead-lettered)
 *   load    the sagas the cache does not hold, and which replies the
 *           inbox has seen, in ONE query (none when the cache holds all)
 *   decide  every reply in memory, in order (decide.h)
 *   commit  ONE transaction: inbox marks, the sagas' compare-and-sets,
 *           log entries, commands (batch.h)
 *   settle  acknowledge on commit. A batch that fails on its content (a
 *           reply already processed, a saga another orchestrator moved
 *           on) is handled again one reply at a time from fresh state;
 *           a lost connection retries the same replies after a backoff.
 *
 * A queued message is borrowed from the transport until it is acked or
 * failed, and an ack may deliver more at once: the queue then grows but
 * never moves its items while a batch is in hand, and loop code refers to
 * items by index.
 */
#include <stdio.h>
#include <string.h>

#include "log_int.h"
#include "loom/alloc.h"
#include "orch_int.h"
#include "pgwire.h"

/* loom.saga_load() (schema 19): each reply and saga one key lookup, by a
 * plan that does not depend on the tables' sizes, made once per session.
 * Sent as it was before, unprepared so that PostgreSQL planned it for the
 * tables of the moment, it cost 23 us of planning per saga. */
const loom__stmt loom__orch_load_stmt = {
    LOOM__STMT_SAGA_LOAD,
    "loom_saga_load",
    "SELECT kind, id, type, def_version, state, step, attempt, waiting, "
    "command_id, outbox, data, version, message_id "
    "FROM loom.saga_load($1, $2, $3)",
    3,
    {LOOM__OID_TEXT, LOOM__OID_AUUID, LOOM__OID_ATEXT}};

static orch_item *
item(loom_orchestrator *o, size_t i)
{
    return &o->q[o->head + i];
}

/* ---- the queue ------------------------------------------------------- */

void
loom__orch_deliver(loom_consumer *c, const loom_message *const *msgs, size_t n,
                   void *arg)
{
    loom_orchestrator *o = arg;

    if (o->n + n > o->cap && o->head > 0 && o->state == ORCH_IDLE) {
        /* Nothing in hand refers to the items: move them down. */
        memmove(o->q, o->q + o->head, (o->n - o->head) * sizeof *o->q);
        o->n -= o->head;
        o->head = 0;
    }
    if (o->n + n > o->cap) {
        size_t cap = o->cap ? o->cap : 256;
        orch_item *q;
        while (cap < o->n + n) {
            cap *= 2;
        }
        q = loom_malloc(cap * sizeof *q);
        if (q == NULL) {
            for (size_t i = 0; i < n; i++) {
                loom_consumer_fail(c, msgs[i], "orchestrator: out of memory");
            }
            return;
        }
        if (o->n > 0) {
            memcpy(q, o->q, o->n * sizeof *q);
        }
        loom_free(o->q);
        o->q = q;
        o->cap = cap;
    }
    for (size_t i = 0; i < n; i++) {
        orch_item *it = &o->q[o->n++];
        memset(it, 0, sizeof *it);
        it->m = msgs[i];
        it->work = SIZE_MAX;
    }
    loom__orch_next(o);
}

static void
settle_ack(loom_orchestrator *o, size_t i)
{
    orch_item *it = item(o, i);
    const loom_message *m = it->m;
    loom_err rc;

    it->settled = 1;
    rc = loom_consumer_ack(o->consumer, m);
    if (rc != LOOM_OK) {
        loom__log(LOOM_LOG_WARN,
                  "orchestrator %s: acknowledging a processed reply failed "
                  "(%s); its redelivery is a duplicate",
                  o->group, loom_strerror(rc));
    }
}

/* Gives the reply back to the transport: failed (delivered again after a
 * backoff, dead-lettered after max_deliveries) or, when it can never be
 * handled (not a saga reply, a payload that does not decode), rejected:
 * to the dead letters now. */
static void
settle_back(loom_orchestrator *o, size_t i, const char *why, int reject)
{
    orch_item *it = item(o, i);
    const loom_message *m = it->m;
    char id[LOOM_UUID_STRLEN];

    it->settled = 1;
    loom_uuid_format(&m->id, id);
    loom__log(LOOM_LOG_WARN,
              "orchestrator %s: reply %s on %s (saga \"%s\") %s: %s", o->group,
              id, m->topic ? m->topic : "?",
              it->parsed && it->wire.saga_id ? it->wire.saga_id : "?",
              reject ? "rejected to the dead letters"
                     : "failed back to the transport",
              why);
    if (reject)
        loom_consumer_reject(o->consumer, m, why);
    else
        loom_consumer_fail(o->consumer, m, why);
}

static void
settle_fail(loom_orchestrator *o, size_t i, const char *why)
{
    settle_back(o, i, why, 0);
}

static void
settle_reject(loom_orchestrator *o, size_t i, const char *why)
{
    settle_back(o, i, why, 1);
}

/* ---- taking a batch --------------------------------------------------- */

/* Reads the headers of the replies in hand and finds their sagas in the
 * batch or the cache; returns 1 when some must be loaded. */
static int
take_parse(loom_orchestrator *o)
{
    int load = 0;

    for (size_t i = 0; i < o->n_cur; i++) {
        orch_item *it = item(o, i);
        char why[256];

        it->parsed = it->dup = it->unknown = it->in_tx = 0;
        it->work = SIZE_MAX;
        if (it->settled) {
            continue;
        }
        if (loom__saga_wire_read(it->m, 1, &it->wire, why, sizeof why) !=
            LOOM_OK) {
            char reason[300];
            snprintf(reason, sizeof reason, "not a saga reply: %s", why);
            settle_reject(o, i, reason);
            continue;
        }
        it->parsed = 1;
        for (size_t j = 0; j < i && !it->dup; j++) {
            const orch_item *p = item(o, j);
            it->dup = p->parsed && !p->settled && !p->dup &&
                      memcmp(p->m->id.bytes, it->m->id.bytes, 16) == 0;
        }
        if (it->dup || o->q[o->head].single) {
            load |= !it->dup;
            continue;
        }
        if (loom__saga_batch_find(&o->b, it->wire.saga_id) == SIZE_MAX) {
            const loom__saga_inst *c =
                loom__saga_cache_get(&o->cache, it->wire.saga_id);
            if (c != NULL) {
                loom__saga_batch_add(&o->b, c);
            } else {
                load = 1;
            }
        }
    }
    return load;
}

/* ---- deciding ---------------------------------------------------------- */

static void replies_commit(loom_orchestrator *o);

/* Decides every reply in hand, then commits (or settles at once when
 * there is nothing to commit). */
static void
replies_decide(loom_orchestrator *o)
{
    for (size_t i = 0; i < o->n_cur; i++) {
        orch_item *it = item(o, i);
        int late = 0;
        size_t w;
        loom_err rc;

        if (it->settled || !it->parsed || it->dup) {
            continue;
        }
        w = loom__saga_batch_find(&o->b, it->wire.saga_id);
        if (w == SIZE_MAX) {
            it->unknown = 1;
            continue;
        }
        if (o->b.works[w].s.def == NULL) {
            char why[512];
            snprintf(why, sizeof why,
                     "saga \"%s\" runs a type and version this orchestrator "
                     "does not (%s): open one with that definition",
                     it->wire.saga_id, it->wire.saga_type);
            settle_fail(o, i, why);
            continue;
        }
        rc = loom__saga_decide_reply(&o->dec, w, &it->wire, it->m, &late);
        if (rc == LOOM_ENOMEM || rc == LOOM_EIO) {
            loom__orch_invalidate(o);
            loom__orch_backoff(o, o->dec.why);
            return;
        }
        if (rc == LOOM_EDECODE) {
            settle_reject(o, i, o->dec.why);
            continue;
        }
        if (rc != LOOM_OK) {
            settle_fail(o, i, o->dec.why);
            continue;
        }
        if (late) {
            loom__log(LOOM_LOG_INFO,
                      "orchestrator %s: saga \"%s\": a late reply to %s "
                      "(attempt %u) ignored: the saga no longer waits for it",
                      o->group, it->wire.saga_id, it->wire.step,
                      (unsigned) it->wire.attempt);
        }
        it->work = w;
        it->in_tx = 1;
        loom__saga_batch_mark(&o->b, &it->m->id);
    }
    replies_commit(o);
}

/* The outcome of a batch that committed (or had nothing to commit). */
static void
replies_settle(loom_orchestrator *o)
{
    for (size_t i = 0; i < o->n_cur; i++) {
        orch_item *it = item(o, i);

        if (it->settled) {
            continue;
        }
        if (it->dup) {
            o->stats.duplicates++;
        } else if (it->unknown) {
            o->stats.late++;
            loom__log(LOOM_LOG_WARN,
                      "orchestrator %s: a reply for saga \"%s\", which does "
                      "not exist, was dropped",
                      o->group, it->wire.saga_id);
        } else if (!it->in_tx) {
            continue; /* not decided: left for the next batch */
        }
        settle_ack(o, i);
    }
}

static void
replies_commit(loom_orchestrator *o)
{
    loom_err rc;

    if (!loom__saga_batch_pending(&o->b)) {
        loom__orch_committed(o);
        replies_settle(o);
        o->state = ORCH_IDLE;
        return;
    }
    rc = loom__saga_batch_encode(&o->b, o->inbox, &o->tx);
    if (rc == LOOM_OK) {
        rc = loom__pgconn_tx(&o->conn, &o->tx, loom__orch_tx_done, o);
    }
    if (rc == LOOM_OK) {
        o->state = ORCH_COMMITTING;
        return;
    }
    loom__orch_invalidate(o);
    loom__orch_backoff(o, rc == LOOM_ECONN || rc == LOOM_EBUSY
                              ? loom__pgconn_errmsg(&o->conn)
                              : loom_tx_errmsg(&o->tx));
}

/* ---- loading ----------------------------------------------------------- */

/* The load's rows: sagas into the batch, replies the inbox has seen. */
static void
replies_loaded(void *arg, loom_err rc, PGresult *r)
{
    loom_orchestrator *o = arg;

    o->state = ORCH_DECIDING;
    if (rc != LOOM_OK) {
        PQclear(r);
        loom__orch_backoff(o, loom__pgconn_errmsg(&o->conn));
        loom__orch_next(o);
        return;
    }
    for (int row = 0; row < PQntuples(r); row++) {
        int32_t kind = -1;
        loom__saga_inst inst;

        loom__pg_get_i32(r, row, 0, &kind);
        if (kind == 0 && PQgetlength(r, row, 12) == 16) {
            for (size_t i = 0; i < o->n_cur; i++) {
                orch_item *it = item(o, i);
                if (it->parsed &&
                    memcmp(it->m->id.bytes, PQgetvalue(r, row, 12), 16) == 0) {
                    it->dup = 1;
                }
            }
        } else if (loom__orch_row(o, r, row, 1, &inst) == 0) {
            if (loom__saga_batch_find(&o->b, inst.id) == SIZE_MAX) {
                loom__saga_batch_add(&o->b, &inst);
            }
        } else if (kind == 1) {
            loom__log(LOOM_LOG_ERROR,
                      "orchestrator %s: saga \"%s\" has a row this library "
                      "cannot read (a step out of range or an unknown "
                      "state): fix it with loomctl saga abort",
                      o->group, PQgetvalue(r, row, 1));
        }
    }
    PQclear(r);
    replies_decide(o);
    loom__orch_next(o);
}

static void
replies_load(loom_orchestrator *o)
{
    loom__buf p = LOOM__BUF_INIT;
    size_t offs[3], n_ids = 0, n_msgs = 0;
    const char *values[3];
    int lengths[3];
    loom_err rc;

    for (size_t i = 0; i < o->n_cur; i++) {
        const orch_item *it = item(o, i);
        n_msgs += it->parsed;
        n_ids += it->parsed && !it->dup &&
                 loom__saga_batch_find(&o->b, it->wire.saga_id) == SIZE_MAX;
    }
    offs[0] = 0;
    loom__buf_puts(&p, o->inbox);
    offs[1] = p.len;
    loom__pg_array_begin(&p, LOOM__OID_UUID, (uint32_t) n_msgs);
    for (size_t i = 0; i < o->n_cur; i++) {
        if (item(o, i)->parsed) {
            loom__pg_array_add(&p, item(o, i)->m->id.bytes, 16);
        }
    }
    offs[2] = p.len;
    loom__pg_array_begin(&p, LOOM__OID_TEXT, (uint32_t) n_ids);
    for (size_t i = 0; i < o->n_cur; i++) {
        const orch_item *it = item(o, i);
        if (it->parsed && !it->dup &&
            loom__saga_batch_find(&o->b, it->wire.saga_id) == SIZE_MAX) {
            loom__pg_array_add(&p, it->wire.saga_id, strlen(it->wire.saga_id));
        }
    }
    rc = p.failed ? LOOM_ENOMEM : LOOM_OK;
    if (rc == LOOM_OK) {
        for (int k = 0; k < 3; k++) {
            values[k] = p.data + offs[k];
            lengths[k] = (int) ((k < 2 ? offs[k + 1] : p.len) - offs[k]);
        }
        rc = loom__pgconn_query(&o->conn, &loom__orch_load_stmt, values,
                                lengths, replies_loaded, o);
    }
    loom__buf_free(&p);
    if (rc == LOOM_OK) {
        o->state = ORCH_LOADING;
        return;
    }
    loom__orch_backoff(o, rc == LOOM_ENOMEM ? "out of memory"
                                            : loom__pgconn_errmsg(&o->conn));
}

int
loom__orch_replies_start(loom_orchestrator *o)
{
    size_t avail = o->n - o->head;

    o->kind = ORCH_REPLIES;
    o->state = ORCH_DECIDING; /* an ack or a fail may deliver: queue only */
    loom__saga_batch_reset(&o->b);
    if (o->q[o->head].single) {
        o->n_cur = 1;
    } else {
        o->n_cur = 0;
        while (o->n_cur < avail && o->n_cur < o->batch &&
               !item(o, o->n_cur)->single) {
            o->n_cur++;
        }
    }
    if (take_parse(o)) {
        replies_load(o);
        return 0;
    }
    replies_decide(o);
    return o->state == ORCH_IDLE;
}

/* ---- the transaction's outcome ------------------------------------------ */

/* The batch failed on its content: each reply again, alone. */
static void
replies_isolate(loom_orchestrator *o, loom_err rc)
{
    size_t n = 0;

    for (size_t i = 0; i < o->n_cur; i++) {
        orch_item *it = item(o, i);
        if (!it->settled) {
            it->single = 1;
            n++;
        }
    }
    loom__log(LOOM_LOG_INFO,
              "orchestrator %s: a batch of %zu replies failed (%s: %s); "
              "handling them one by one from the stored state",
              o->group, n, loom_err_name(rc), loom__pgconn_errmsg(&o->conn));
}

/* One reply alone failed on its content. */
static void
replies_single_failed(loom_orchestrator *o, loom_err rc)
{
    orch_item *it = item(o, 0);
    char why[768];

    for (size_t i = 0; i < o->n_cur; i++) {
        if (item(o, i)->settled) {
            return;
        }
    }
    if (rc == LOOM_EALREADY) {
        o->stats.duplicates++;
        settle_ack(o, 0);
        return;
    }
    if (rc == LOOM_ECONFLICT && ++it->conflicts < ORCH_MAX_CONFLICTS) {
        loom__log(LOOM_LOG_DEBUG,
                  "orchestrator %s: saga \"%s\" was moved on by another "
                  "orchestrator; deciding its reply again",
                  o->group, it->wire.saga_id);
        return;
    }
    snprintf(why, sizeof why, "%s (SQLSTATE %s)", loom__pgconn_errmsg(&o->conn),
             loom_store_sqlstate(o->conn.store));
    settle_fail(o, 0, why);
}

void
loom__orch_replies_done(loom_orchestrator *o, loom_err rc)
{
    if (rc == LOOM_OK) {
        loom__orch_committed(o);
        replies_settle(o);
        o->state = ORCH_IDLE;
        return;
    }
    loom__orch_invalidate(o);
    if (rc == LOOM_ECONFLICT) {
        o->stats.conflicts++;
    }
    if (rc != LOOM_EALREADY && rc != LOOM_ECONFLICT &&
        loom__orch_transient(o, rc)) {
        loom__orch_backoff(o, loom__pgconn_errmsg(&o->conn));
        return;
    }
    if (o->n_cur == 1 && item(o, 0)->single) {
        replies_single_failed(o, rc);
    } else {
        replies_isolate(o, rc);
    }
    o->state = ORCH_IDLE;
}
