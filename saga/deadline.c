/*
 * Due sagas (orch_int.h): timeouts, the ends of retry backoffs, and
 * operator requests (which make a saga due at once). One timer fires at
 * the earliest deadline this orchestrator knows of (the claim query
 * returns the next one; its own transitions set others) and at least
 * every poll_ms; a NOTIFY on channel loom_saga (loom.saga_request sends
 * one) wakes it at once.
 *
 * A scan claims up to `batch` due sagas of its types (loom.saga_claim:
 * FOR UPDATE SKIP LOCKED, and a lease instead of a lock: the deadline
 * moves lease_ms ahead, so the sagas of an orchestrator that dies are due
 * again after that) and decides them in one transaction. When that
 * transaction fails on its content (another orchestrator moved a saga
 * on), the same rows go again one per transaction; a saga that still
 * fails is left to its lease.
 */
#include <stdio.h>
#include <string.h>

#include "log_int.h"
#include "orch_int.h"
#include "pgwire.h"

static const loom__stmt claim_stmt = {
    LOOM__STMT_SAGA_CLAIM,
    "loom_saga_claim",
    "SELECT id, type, def_version, state, step, attempt, waiting, "
    "command_id, outbox, data, version, pending_op, pending_by, next_ms "
    "FROM loom.saga_claim($1, $2, $3, $4, $5)",
    5,
    {LOOM__OID_TEXT, LOOM__OID_INT4, LOOM__OID_INT4, LOOM__OID_ATEXT,
     LOOM__OID_AINT4}};

/* Columns of a claimed row after the instance's. */
#define COL_OP   11
#define COL_WHO  12
#define COL_NEXT 13

/* ---- waking up ---------------------------------------------------------- */

void
loom__orch_on_timer(uv_timer_t *t)
{
    loom_orchestrator *o = t->data;

    o->timer_due = 0;
    o->scan_due = 1;
    loom__orch_next(o);
}

void
loom__orch_wake(void *arg, const char *channel, const char *payload)
{
    loom_orchestrator *o = arg;

    (void) channel;
    (void) payload;
    o->scan_due = 1;
    loom__orch_next(o);
}

void
loom__orch_arm(loom_orchestrator *o, uint64_t ms)
{
    uint64_t now = uv_now(loom_runtime_loop(o->rt));

    if (o->stopping || o->closed) {
        return;
    }
    if (ms > o->poll_ms) {
        ms = o->poll_ms;
    }
    if (o->timer_due != 0 && o->timer_due <= now + ms) {
        return; /* it fires sooner already */
    }
    o->timer_due = now + ms;
    uv_timer_start(&o->timer, loom__orch_on_timer, ms, 0);
}

/* ---- deciding the claimed sagas ------------------------------------------ */

static void
claims_forget(loom_orchestrator *o)
{
    PQclear(o->claimed);
    o->claimed = NULL;
    o->claim_single = 0;
    o->claim_next = 0;
}

static const char *
cell(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

/* Adds claimed row `row` to the batch and decides it; 0 on success (or a
 * saga left to its lease), -1 when the whole batch must wait. */
static int
claims_decide_row(loom_orchestrator *o, int row)
{
    loom__saga_inst inst;
    size_t w;
    loom_err rc;

    if (PQgetisnull(o->claimed, row, 0)) {
        return 0; /* the next_ms row */
    }
    if (loom__orch_row(o, o->claimed, row, 0, &inst) != 0 || inst.def == NULL) {
        loom__log(LOOM_LOG_ERROR,
                  "orchestrator %s: saga \"%s\" has a row this library cannot "
                  "read (a step out of range or an unknown state): fix it "
                  "with loomctl saga abort",
                  o->group, PQgetvalue(o->claimed, row, 0));
        return 0;
    }
    w = loom__saga_batch_add(&o->b, &inst);
    if (w == SIZE_MAX) {
        loom__orch_backoff(o, "out of memory");
        return -1;
    }
    rc = loom__saga_decide_due(&o->dec, w, cell(o->claimed, row, COL_OP),
                               cell(o->claimed, row, COL_WHO));
    if (rc == LOOM_ENOMEM || rc == LOOM_EIO) {
        loom__orch_backoff(o, o->dec.why);
        return -1;
    }
    if (rc != LOOM_OK) {
        loom__log(LOOM_LOG_ERROR,
                  "orchestrator %s: %s; the saga is due again in %u ms (its "
                  "lease)",
                  o->group, o->dec.why, o->lease_ms);
    }
    return 0;
}

/* Decides the claimed rows (all, or the next one in single mode) and
 * sends their transaction. */
static void
claims_decide(loom_orchestrator *o)
{
    int rows = PQntuples(o->claimed);
    loom_err rc;

    o->kind = ORCH_CLAIMS;
    o->state = ORCH_DECIDING;
    loom__saga_batch_reset(&o->b);
    if (o->claim_single) {
        /* The next row that is a saga, alone. */
        while ((int) o->claim_next < rows &&
               PQgetisnull(o->claimed, (int) o->claim_next, 0)) {
            o->claim_next++;
        }
        if ((int) o->claim_next >= rows) {
            claims_forget(o);
            o->state = ORCH_IDLE;
            return;
        }
        if (claims_decide_row(o, (int) o->claim_next) != 0) {
            return;
        }
    } else {
        for (int row = 0; row < rows; row++) {
            if (claims_decide_row(o, row) != 0) {
                return;
            }
        }
    }
    if (!loom__saga_batch_pending(&o->b)) {
        loom__orch_claims_done(o, LOOM_OK);
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
    loom__orch_backoff(o, rc == LOOM_ECONN || rc == LOOM_EBUSY
                              ? loom__pgconn_errmsg(&o->conn)
                              : loom_tx_errmsg(&o->tx));
}

void
loom__orch_claims_done(loom_orchestrator *o, loom_err rc)
{
    if (rc == LOOM_OK) {
        loom__orch_committed(o);
        if (o->claim_single) {
            o->claim_next++;
        } else {
            claims_forget(o);
        }
        o->state = ORCH_IDLE;
        return;
    }
    loom__orch_invalidate(o);
    if (rc == LOOM_ECONFLICT) {
        o->stats.conflicts++;
    }
    if (rc != LOOM_ECONFLICT && loom__orch_transient(o, rc)) {
        /* Whether it committed is unknown: the same rows again (a
         * transition that did commit conflicts, and is dropped). */
        loom__orch_backoff(o, loom__pgconn_errmsg(&o->conn));
        return;
    }
    if (!o->claim_single && o->b.n_works > 1) {
        loom__log(LOOM_LOG_INFO,
                  "orchestrator %s: a batch of %zu due sagas failed (%s: "
                  "%s); deciding them one by one",
                  o->group, o->b.n_works, loom_err_name(rc),
                  loom__pgconn_errmsg(&o->conn));
        o->claim_single = 1;
        o->claim_next = 0;
    } else {
        if (rc != LOOM_ECONFLICT) {
            loom__log(LOOM_LOG_ERROR,
                      "orchestrator %s: a due saga's transition failed: %s "
                      "(SQLSTATE %s); it is due again in %u ms (its lease)",
                      o->group, loom__pgconn_errmsg(&o->conn),
                      loom_store_sqlstate(o->conn.store), o->lease_ms);
        }
        if (o->claim_single) {
            o->claim_next++;
        } else {
            claims_forget(o);
        }
    }
    o->state = ORCH_IDLE;
}

/* ---- claiming ------------------------------------------------------------ */

static void
claims_claimed(void *arg, loom_err rc, PGresult *r)
{
    loom_orchestrator *o = arg;
    int rows, sagas = 0;
    int64_t next = -1;

    o->state = ORCH_IDLE;
    if (rc != LOOM_OK) {
        PQclear(r);
        loom__orch_backoff(o, loom__pgconn_errmsg(&o->conn));
        loom__orch_next(o);
        return;
    }
    rows = PQntuples(r);
    for (int row = 0; row < rows; row++) {
        if (!PQgetisnull(r, row, 0)) {
            sagas++;
        } else if (PQnfields(r) > COL_NEXT) {
            loom__pg_get_i64(r, row, COL_NEXT, &next);
        }
    }
    loom__orch_arm(o, next < 0 ? o->poll_ms : (uint64_t) next);
    if (sagas == 0) {
        PQclear(r);
        loom__orch_next(o);
        return;
    }
    /* A full claim: more may be due right now. */
    if ((size_t) sagas >= o->batch) {
        o->scan_due = 1;
    }
    o->claimed = r;
    o->claim_single = 0;
    o->claim_next = 0;
    claims_decide(o);
    loom__orch_next(o);
}

void
loom__orch_claims_start(loom_orchestrator *o)
{
    loom__buf p = LOOM__BUF_INIT;
    char num[8];
    size_t offs[5];
    const char *values[5];
    int lengths[5];
    loom_err rc;

    if (o->claimed != NULL) {
        claims_decide(o);
        return;
    }
    offs[0] = 0;
    loom__buf_puts(&p, o->me);
    offs[1] = p.len;
    loom__buf_put_be32(&p, o->lease_ms);
    offs[2] = p.len;
    loom__buf_put_be32(&p, (uint32_t) o->batch);
    offs[3] = p.len;
    loom__pg_array_begin(&p, LOOM__OID_TEXT, (uint32_t) o->n_defs);
    for (size_t i = 0; i < o->n_defs; i++) {
        loom__pg_array_add(&p, o->defs[i]->name, strlen(o->defs[i]->name));
    }
    offs[4] = p.len;
    loom__pg_array_begin(&p, LOOM__OID_INT4, (uint32_t) o->n_defs);
    for (size_t i = 0; i < o->n_defs; i++) {
        uint32_t v = o->defs[i]->version;
        num[0] = (char) (v >> 24);
        num[1] = (char) (v >> 16);
        num[2] = (char) (v >> 8);
        num[3] = (char) v;
        loom__pg_array_add(&p, num, 4);
    }
    rc = p.failed ? LOOM_ENOMEM : LOOM_OK;
    if (rc == LOOM_OK) {
        for (int k = 0; k < 5; k++) {
            values[k] = p.data + offs[k];
            lengths[k] = (int) ((k < 4 ? offs[k + 1] : p.len) - offs[k]);
        }
        rc = loom__pgconn_query(&o->conn, &claim_stmt, values, lengths,
                                claims_claimed, o);
    }
    loom__buf_free(&p);
    if (rc == LOOM_OK) {
        o->state = ORCH_CLAIMING;
        return;
    }
    o->scan_due = 1; /* after the backoff */
    loom__orch_backoff(o, rc == LOOM_ENOMEM ? "out of memory"
                                            : loom__pgconn_errmsg(&o->conn));
}
