/*
 * Operators' requests (loom_saga_request(), `loomctl saga retry|skip|
 * abort`). The request is recorded by the schema's function
 * loom.saga_request() (framework/migrations/0007_saga.sql), which checks
 * the saga's state under a row lock, marks the instance due now and
 * NOTIFYs the orchestrators; one of them applies it as a transition.
 * Doing the check in the database, not here, is what makes it hold
 * against a concurrent transition or a second operator.
 *
 * The call is a one-statement unit of work (loom/tx.h) committed on the
 * store's connection: the NOTIFY is delivered at that commit, and the
 * store maps the function's SQLSTATEs (LM020, LM021, LM022) to error
 * codes with the rest of Eventloom's (eventstore/store.c).
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "loom/saga.h"
#include "text.h"

/* The longest `who` accepted: a user and a host name fit easily. */
#define OPS_MAX_WHO 255

static const char *const ops_names[] = {
    [LOOM_SAGA_OP_RETRY] = "retry",
    [LOOM_SAGA_OP_SKIP] = "skip",
    [LOOM_SAGA_OP_ABORT] = "abort",
};

/* Writes the printf-style message into err (when given); returns rc. */
static loom_err
ops_fail(char *err, size_t errlen, loom_err rc, const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

/* Checks every argument before anything is sent. */
static loom_err
ops_check(const loom_store *s, const char *id, loom_saga_op op, const char *who,
          char *err, size_t errlen)
{
    const char *why;

    if (s == NULL || id == NULL || who == NULL)
        return ops_fail(err, errlen, LOOM_EINVAL,
                        "loom_saga_request: the %s is NULL",
                        s == NULL    ? "store"
                        : id == NULL ? "saga id"
                                     : "who");
    if (op < LOOM_SAGA_OP_RETRY || op > LOOM_SAGA_OP_ABORT)
        return ops_fail(err, errlen, LOOM_EINVAL,
                        "loom_saga_request: unknown request %d (use "
                        "LOOM_SAGA_OP_RETRY, _SKIP or _ABORT)",
                        (int) op);
    if ((why = loom__saga_text_problem(id, LOOM_SAGA_MAX_ID)) != NULL)
        return ops_fail(err, errlen, LOOM_EINVAL,
                        "loom_saga_request: the saga id %s (at most %d "
                        "bytes of UTF-8, no control characters)",
                        why, LOOM_SAGA_MAX_ID);
    if ((why = loom__saga_text_problem(who, OPS_MAX_WHO)) != NULL)
        return ops_fail(err, errlen, LOOM_EINVAL,
                        "loom_saga_request: who %s (at most %d bytes of "
                        "UTF-8, no control characters: \"alice@ops-1\")",
                        why, OPS_MAX_WHO);
    return LOOM_OK;
}

loom_err
loom_saga_request(loom_store *s, const char *id, loom_saga_op op,
                  const char *who, char *err, size_t errlen)
{
    const char *params[3];
    loom_tx *tx = NULL;
    loom_err rc = ops_check(s, id, op, who, err, errlen);

    if (rc != LOOM_OK)
        return rc;
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    params[0] = id;
    params[1] = ops_names[op];
    params[2] = who;
    rc = loom_tx_new(&tx);
    if (rc == LOOM_OK)
        rc =
            loom_tx_exec(tx, "SELECT loom.saga_request($1, $2, $3)", 3, params);
    if (rc != LOOM_OK) {
        ops_fail(err, errlen, rc, "loom_saga_request: %s",
                 tx != NULL ? loom_tx_errmsg(tx) : loom_strerror(rc));
        loom_tx_free(tx);
        return rc;
    }
    /* LM020 (no such saga) is LOOM_ENOTFOUND, LM021 (the op does not
     * apply in its state) LOOM_EINVAL, LM022 (a request is pending)
     * LOOM_EBUSY; the server's message names the saga and the state. */
    rc = loom_store_commit(s, tx);
    if (rc != LOOM_OK)
        ops_fail(err, errlen, rc, "%s", loom_store_errmsg(s));
    loom_tx_free(tx);
    return rc;
}
