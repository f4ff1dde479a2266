/*
 * Runs a loom_tx (loom/tx.h) on a store's connection: every statement in
 * libpq pipeline mode, then one sync point, so the batch costs one round
 * trip and commits as one implicit transaction (the extended query
 * protocol commits at Sync; an error skips everything up to it, so
 * nothing of a failed batch commits).
 *
 * Each distinct statement is prepared in the same pipeline the first time
 * it is sent ("loom_tx_<slot>"), and only marked prepared once its Parse
 * succeeded, so a batch that fails early leaves no false entry behind.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "loom/alloc.h"
#include "pgwire.h"
#include "store_int.h"
#include "tx_int.h"

void
loom__store_txcache_clear(loom_store *s, int release)
{
    for (int i = 0; i < LOOM__TX_CACHE; i++) {
        loom__tx_cached *c = &s->txcache[i];
        if (release) {
            loom_free(c->key);
            c->key = NULL;
            c->key_len = 0;
        }
        c->state = 0;
    }
    s->tx_pending = 0;
}

/* FNV-1a: the cache is small and keys are compared in full anyway. */
static uint64_t
tx_hash(const char *p, size_t n)
{
    uint64_t h = 14695981039346656037ull;

    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char) p[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* The cache key: parameter count and types (they shape the prepared
 * statement), then the SQL text. */
static void
tx_key(loom__buf *k, const loom_tx *tx, const loom__tx_stmt *st)
{
    loom__buf_reset(k);
    loom__buf_put_be32(k, (uint32_t) st->n);
    for (int i = 0; i < st->n; i++)
        loom__buf_put_be32(k, tx->params[st->first + (size_t) i].type);
    loom__buf_puts(k, tx->data.data + st->sql);
}

/* The slot holding `key`, or a free slot claimed for it, or -1 (full, or
 * no memory: the statement is sent unprepared). */
static int
tx_slot(loom_store *s, const loom__buf *key)
{
    uint64_t h = tx_hash(key->data, key->len);
    int free_slot = -1;

    for (int i = 0; i < LOOM__TX_CACHE; i++) {
        loom__tx_cached *c = &s->txcache[i];
        if (c->key == NULL) {
            if (free_slot < 0)
                free_slot = i;
            continue;
        }
        if (c->hash == h && c->key_len == key->len &&
            memcmp(c->key, key->data, key->len) == 0)
            return i;
    }
    if (free_slot < 0)
        return -1;
    s->txcache[free_slot].key = loom_malloc(key->len);
    if (s->txcache[free_slot].key == NULL)
        return -1;
    memcpy(s->txcache[free_slot].key, key->data, key->len);
    s->txcache[free_slot].key_len = key->len;
    s->txcache[free_slot].hash = h;
    s->txcache[free_slot].state = 0;
    return free_slot;
}

/* Records that the next result belongs to statement `i`. */
static void
tx_map(loom_store *s, size_t i)
{
    int32_t v = (int32_t) i;

    loom__buf_put(&s->tx_map, &v, sizeof v);
}

/* Sends statement `k` (and its Parse when it is new). */
static int
tx_send_stmt(loom_store *s, const loom_tx *tx, size_t k, loom__buf *key)
{
    const loom__tx_stmt *st = &tx->stmts[k];
    const char *values[LOOM_TX_MAX_PARAMS];
    int lengths[LOOM_TX_MAX_PARAMS], formats[LOOM_TX_MAX_PARAMS];
    Oid types[LOOM_TX_MAX_PARAMS];
    const char *sql = tx->data.data + st->sql;
    char name[32];
    int slot;

    for (int i = 0; i < st->n; i++) {
        const loom__tx_param *p = &tx->params[st->first + (size_t) i];
        values[i] = p->len < 0 ? NULL : tx->data.data + p->off;
        lengths[i] = p->len < 0 ? 0 : p->len;
        formats[i] = st->binary && p->type != 0;
        types[i] = p->type;
    }
    tx_key(key, tx, st);
    slot = key->failed ? -1 : tx_slot(s, key);
    if (slot < 0) {
        tx_map(s, k);
        return PQsendQueryParams(s->conn, sql, st->n, types, values, lengths,
                                 formats, 1);
    }
    snprintf(name, sizeof name, "loom_tx_%d", slot);
    if (s->txcache[slot].state == 0) {
        if (!PQsendPrepare(s->conn, name, sql, st->n, types))
            return 0;
        s->txcache[slot].state = 1;
        s->txcache[slot].index = s->tx_index++;
        s->tx_pending++;
        tx_map(s, k);
    }
    s->tx_index++;
    tx_map(s, k);
    return PQsendQueryPrepared(s->conn, name, st->n, values, lengths, formats,
                               1);
}

/* A half-sent pipeline or a session left inside a transaction block
 * cannot be used again: drop the session (blocking; the next call finds
 * it reset, with no prepared statements). */
static void
tx_reset_session(loom_store *s)
{
    PQreset(s->conn);
    loom__store_txcache_clear(s, 0);
    s->prepared = 0;
    if (PQstatus(s->conn) == CONNECTION_OK)
        PQsetnonblocking(s->conn, 1);
}

loom_err
loom__store_send_tx(loom_store *s, const loom_tx *tx)
{
    loom__buf key = LOOM__BUF_INIT;
    int ok = 1, flushed;

    if (!PQenterPipelineMode(s->conn))
        return loom__store_fail(s, LOOM_ECONN, "cannot enter pipeline mode: %s",
                                PQerrorMessage(s->conn));
    s->tx_index = 0;
    s->tx_synced = 0;
    s->tx_failed = -1;
    s->tx_control = -1;
    s->tx_control_tag = NULL;
    loom__buf_reset(&s->tx_map);
    for (size_t i = 0; ok && i < tx->n_stmts; i++)
        ok = tx_send_stmt(s, tx, i, &key);
    loom__buf_free(&key);
    /* A map cut short by a lack of memory only blurs which statement
     * failed (tx_failed -1). */
    if (ok)
        ok = PQpipelineSync(s->conn);
    if (!ok) {
        loom__store_fail(s, LOOM_ECONN, "sending to PostgreSQL failed: %s",
                         PQerrorMessage(s->conn));
        /* A half-sent pipeline cannot be finished. */
        tx_reset_session(s);
        return LOOM_ECONN;
    }
    s->tx_index = 0; /* now counts the results as they arrive */
    flushed = PQflush(s->conn);
    if (flushed < 0)
        return loom__store_fail(s, LOOM_ECONN, "%s", PQerrorMessage(s->conn));
    s->op = LOOM__OP_TX;
    s->flushing = flushed == 1;
    s->ready = 0;
    return LOOM_OK;
}

/* A prepare's result arrived: trust the slot once its Parse succeeded. */
static void
tx_prepared(loom_store *s, int index, int ok)
{
    for (int i = 0; i < LOOM__TX_CACHE; i++) {
        loom__tx_cached *c = &s->txcache[i];
        if (c->state == 1 && c->index == index) {
            c->state = ok ? 2 : 0;
            s->tx_pending--;
            return;
        }
    }
}

/* The tag of a result that ran transaction control, or NULL. The server
 * names what actually ran, whatever the SQL text looked like. */
static const char *
tx_control_tag(const PGresult *r)
{
    static const char *const tags[] = {"BEGIN",
                                       "START TRANSACTION",
                                       "COMMIT",
                                       "ROLLBACK",
                                       "SAVEPOINT",
                                       "RELEASE",
                                       "PREPARE TRANSACTION",
                                       "COMMIT PREPARED",
                                       "ROLLBACK PREPARED"};
    const char *tag = PQcmdStatus((PGresult *) r);

    for (size_t i = 0; tag != NULL && i < sizeof tags / sizeof tags[0]; i++)
        if (strcmp(tag, tags[i]) == 0)
            return tags[i];
    return NULL;
}

/* The statement the current result belongs to, or -1 (map cut short). */
static long
tx_current(const loom_store *s)
{
    size_t at = (size_t) s->tx_index * sizeof(int32_t);
    int32_t k = -1;

    if (at + sizeof k <= s->tx_map.len)
        memcpy(&k, s->tx_map.data + at, sizeof k);
    return k;
}

void
loom__store_collect_tx(loom_store *s)
{
    PGresult *r;

    while (!s->tx_synced && !PQisBusy(s->conn)) {
        ExecStatusType st;

        r = PQgetResult(s->conn);
        if (r == NULL) { /* the end of one statement's results */
            s->tx_index++;
            if (PQstatus(s->conn) != CONNECTION_OK)
                break;
            continue;
        }
        st = PQresultStatus(r);
        if (st == PGRES_PIPELINE_SYNC) {
            s->tx_synced = 1;
            PQclear(r);
            break;
        }
        if (s->tx_pending > 0)
            tx_prepared(s, s->tx_index, st == PGRES_COMMAND_OK);
        if (st == PGRES_COMMAND_OK && s->tx_control_tag == NULL &&
            (s->tx_control_tag = tx_control_tag(r)) != NULL)
            s->tx_control = tx_current(s);
        if (st == PGRES_FATAL_ERROR && s->result == NULL) {
            s->tx_failed = tx_current(s);
            s->result = r;
        } else
            PQclear(r);
    }
}

/* Ends a transaction block the batch left open (a BEGIN that got past
 * loom_tx_exec()): nothing in it committed, and the session must not run
 * the next call inside it. Blocking, but only on that misuse. Returns
 * whether a block was left open. */
static int
tx_close_block(loom_store *s)
{
    PGTransactionStatusType ts = PQtransactionStatus(s->conn);
    PGresult *r;

    if (ts != PQTRANS_INTRANS && ts != PQTRANS_INERROR)
        return 0;
    r = PQexec(s->conn, "ROLLBACK");
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        tx_reset_session(s);
    PQclear(r);
    return 1;
}

/* What transaction control did to the batch, for the message. */
static const char *
tx_control_effect(const char *tag, int block_left)
{
    if (block_left)
        return "nothing of it committed (the transaction block left open "
               "was rolled back)";
    if (strstr(tag, "PREPARED") != NULL)
        return "it finished a prepared transaction that is not the unit "
               "of work's";
    if (strcmp(tag, "COMMIT") == 0)
        return "the statements before it committed, those after it ran in "
               "a transaction of their own";
    if (strcmp(tag, "ROLLBACK") == 0)
        return "the statements before it were rolled back, those after it "
               "ran in a transaction of their own";
    return "the transaction block it opened was ended by a later statement";
}

/* The second line of defence behind loom_tx_exec()'s refusal of
 * transaction control: the command tags the server sent back and the
 * session's state after the sync point. Either way the batch did not
 * commit as one, which must never be reported as LOOM_OK. */
static loom_err
tx_check_control(loom_store *s, loom_err rc)
{
    int block_left = tx_close_block(s);
    const char *tag = s->tx_control_tag;
    loom__buf earlier = LOOM__BUF_INIT;

    if (tag == NULL && !block_left)
        return rc;
    if (rc != LOOM_OK)
        loom__buf_puts(&earlier, loom_store_errmsg(s));
    if (tag == NULL) /* a block opened where no tag showed it */
        loom__store_fail(s, LOOM_EDB,
                         "the unit of work left its session inside a "
                         "transaction block, so it did not commit as one: "
                         "%s; a unit of work commits itself, so queue no "
                         "transaction control",
                         tx_control_effect("BEGIN", block_left));
    else
        loom__store_fail(s, LOOM_EDB,
                         "statement %ld of the unit of work ran %s, so it "
                         "did not commit as one: %s; a unit of work commits "
                         "itself, so queue no transaction control",
                         s->tx_control, tag,
                         tx_control_effect(tag, block_left));
    if (rc != LOOM_OK)
        loom__buf_printf(&s->err, " (then statement %ld failed: %s)",
                         s->tx_failed, loom__buf_str(&earlier));
    loom__buf_free(&earlier);
    if (s->tx_control >= 0)
        s->tx_failed = s->tx_control;
    return LOOM_EDB;
}

loom_err
loom__store_take_tx(loom_store *s)
{
    PGresult *r;
    loom_err rc = LOOM_OK;

    if (s->op != LOOM__OP_TX)
        return loom__store_fail(s, LOOM_EINVAL,
                                "no transaction in progress on this store "
                                "handle");
    if (!s->ready)
        return LOOM_EAGAIN;
    r = s->result;
    s->result = NULL;
    s->ready = 0;
    /* Prepares still marked in flight never ran (skipped or cut off). */
    for (int i = 0; s->tx_pending > 0 && i < LOOM__TX_CACHE; i++)
        if (s->txcache[i].state == 1) {
            s->txcache[i].state = 0;
            s->tx_pending--;
        }
    if (r != NULL || !s->tx_synced || PQstatus(s->conn) != CONNECTION_OK) {
        rc = loom__store_result_error(s, r);
        if (rc == LOOM_ECONN || !s->tx_synced)
            loom__store_fail(
                s, LOOM_ECONN,
                "connection lost during a transaction (%s): whether "
                "it committed is unknown (retry it idempotently: an "
                "inbox mark, fixed event ids, a checkpoint)",
                r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY)
                        ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY)
                        : "no reason given"
                  : PQerrorMessage(s->conn));
        if (!s->tx_synced)
            rc = LOOM_ECONN;
    }
    PQclear(r);
    if (PQpipelineStatus(s->conn) != PQ_PIPELINE_OFF &&
        !PQexitPipelineMode(s->conn) && rc == LOOM_OK)
        rc = loom__store_fail(s, LOOM_ECONN, "cannot leave pipeline mode: %s",
                              PQerrorMessage(s->conn));
    if (rc != LOOM_ECONN && PQpipelineStatus(s->conn) == PQ_PIPELINE_OFF)
        rc = tx_check_control(s, rc);
    s->op = LOOM__OP_NONE;
    return rc;
}

loom_err
loom__store_run_tx(loom_store *s, const loom_tx *tx)
{
    loom_err rc = loom__store_begin(s);

    if (rc == LOOM_OK)
        rc = loom__store_send_tx(s, tx);
    if (rc == LOOM_OK)
        rc = loom__store_wait(s);
    if (rc == LOOM_OK)
        rc = loom__store_take_tx(s);
    return rc;
}

loom_err
loom_store_commit(loom_store *s, const loom_tx *tx)
{
    if (s == NULL)
        return LOOM_EINVAL;
    loom__store_enter(s);
    if (s->op != LOOM__OP_NONE)
        return loom__store_fail(s, LOOM_EBUSY,
                                "an operation is already in progress on "
                                "this store handle: receive it first");
    s->tx_failed = -1;
    if (tx == NULL || tx->n_stmts == 0)
        return loom__store_fail(s, LOOM_EINVAL,
                                "nothing to commit: the unit of work is %s",
                                tx == NULL ? "NULL" : "empty");
    return loom__store_run_tx(s, tx);
}

int
loom_store_commit_failed_at(const loom_store *s)
{
    if (s == NULL || s->tx_failed < 0 || s->tx_failed > INT_MAX)
        return -1;
    return (int) s->tx_failed;
}

loom_err
loom__tx_advance(loom_tx *tx, const char *name, loom_position from,
                 int64_t from_ver, loom_position to, int64_t to_ver)
{
    static const uint32_t types[7] = {
        LOOM__OID_TEXT, LOOM__OID_XID8, LOOM__OID_INT8, LOOM__OID_INT8,
        LOOM__OID_XID8, LOOM__OID_INT8, LOOM__OID_INT8};
    char num[48];
    const char *values[7] = {name,     num,      num + 8, num + 16,
                             num + 24, num + 32, num + 40};
    int lengths[7] = {(int) strlen(name), 8, 8, 8, 8, 8, 8};

    loom__pg_put_be64(num, from.tx);
    loom__pg_put_be64(num + 8, (uint64_t) from.position);
    loom__pg_put_be64(num + 16, (uint64_t) from_ver);
    loom__pg_put_be64(num + 24, to.tx);
    loom__pg_put_be64(num + 32, (uint64_t) to.position);
    loom__pg_put_be64(num + 40, (uint64_t) to_ver);
    return loom_tx_exec_binary(tx, LOOM__SQL_ADVANCE, 7, types, values,
                               lengths);
}

loom_err
loom__tx_claim(loom_tx *tx, const char *name, loom_position at, int64_t ver)
{
    static const uint32_t types[4] = {LOOM__OID_TEXT, LOOM__OID_XID8,
                                      LOOM__OID_INT8, LOOM__OID_INT8};
    char num[24];
    const char *values[4] = {name, num, num + 8, num + 16};
    int lengths[4] = {(int) strlen(name), 8, 8, 8};

    loom__pg_put_be64(num, at.tx);
    loom__pg_put_be64(num + 8, (uint64_t) at.position);
    loom__pg_put_be64(num + 16, (uint64_t) ver);
    return loom_tx_exec_binary(tx, LOOM__SQL_CLAIM, 4, types, values, lengths);
}

loom_err
loom__tx_park(loom_tx *tx, const char *name, const loom_event *ev,
              const char *error, unsigned attempts)
{
    char pos[24], ver[24], xid[24], att[16], id[LOOM_UUID_STRLEN];
    const char *values[9] = {name, id,       ev->stream, ver, xid,
                             pos,  ev->type, error,      att};

    loom_uuid_format(&ev->id, id);
    snprintf(pos, sizeof pos, "%lld", (long long) ev->position);
    snprintf(ver, sizeof ver, "%lld", (long long) ev->version);
    snprintf(xid, sizeof xid, "%llu", (unsigned long long) ev->tx);
    snprintf(att, sizeof att, "%u", attempts);
    return loom_tx_exec(tx, LOOM__SQL_PARK, 9, values);
}
