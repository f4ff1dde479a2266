/*
 * The unit-of-work queue (loom/tx.h, tx_int.h): copies each statement and
 * its parameters so that a handler may pass stack buffers.
 */
#include <string.h>

#include "loom/alloc.h"
#include "tx_int.h"

void
loom__tx_init(loom_tx *tx)
{
    memset(tx, 0, sizeof *tx);
}

void
loom__tx_reset(loom_tx *tx)
{
    loom__buf_reset(&tx->data);
    tx->n_stmts = 0;
    tx->n_params = 0;
}

void
loom__tx_free(loom_tx *tx)
{
    loom__buf_free(&tx->data);
    loom_free(tx->stmts);
    loom_free(tx->params);
    loom__tx_init(tx);
}

/* Grows an array of `size`-byte records to hold `need`; 0 or -1. */
static int
tx_grow(void **arr, size_t *cap, size_t need, size_t size)
{
    size_t ncap = *cap ? *cap : 16;
    void *p;

    if (need <= *cap)
        return 0;
    while (ncap < need)
        ncap *= 2;
    p = loom_realloc(*arr, ncap * size);
    if (p == NULL)
        return -1;
    *arr = p;
    *cap = ncap;
    return 0;
}

static loom_err
tx_queue(loom_tx *tx, const char *sql, int n, const uint32_t *types,
         const char *const *values, const int *lengths)
{
    size_t bytes = strlen(sql) + 1, mark = tx->data.len;
    loom__tx_stmt *st;

    for (int i = 0; i < n; i++)
        if (values[i] != NULL)
            bytes += (lengths ? (size_t) lengths[i] : strlen(values[i])) + 1;
    if (bytes > LOOM_TX_MAX_BYTES || tx->data.len > LOOM_TX_MAX_BYTES - bytes)
        return LOOM_ETOOBIG;
    if (tx_grow((void **) &tx->stmts, &tx->cap_stmts, tx->n_stmts + 1,
                sizeof *tx->stmts) != 0 ||
        tx_grow((void **) &tx->params, &tx->cap_params,
                tx->n_params + (size_t) n, sizeof *tx->params) != 0 ||
        loom__buf_reserve(&tx->data, bytes) != 0)
        return LOOM_ENOMEM;
    st = &tx->stmts[tx->n_stmts];
    st->sql = tx->data.len;
    st->first = tx->n_params;
    st->n = n;
    st->binary = lengths != NULL;
    loom__buf_put(&tx->data, sql, strlen(sql) + 1);
    for (int i = 0; i < n; i++) {
        loom__tx_param *p = &tx->params[tx->n_params + (size_t) i];
        size_t len = values[i] == NULL ? 0
                     : lengths         ? (size_t) lengths[i]
                                       : strlen(values[i]);
        p->off = tx->data.len;
        p->len = values[i] == NULL ? -1 : (int) len;
        p->type = types ? types[i] : 0;
        if (values[i] != NULL)
            loom__buf_put(&tx->data, values[i], len);
        loom__buf_putc(&tx->data, '\0'); /* text values end in NUL */
    }
    if (tx->data.failed) {
        tx->data.len = mark;
        tx->data.failed = 0;
        return LOOM_ENOMEM;
    }
    tx->n_params += (size_t) n;
    tx->n_stmts++;
    return LOOM_OK;
}

loom_err
loom_tx_exec(loom_tx *tx, const char *sql, int n, const char *const *values)
{
    if (tx == NULL || sql == NULL || sql[0] == '\0' || n < 0 ||
        n > LOOM_TX_MAX_PARAMS || (n > 0 && values == NULL))
        return LOOM_EINVAL;
    return tx_queue(tx, sql, n, NULL, values, NULL);
}

loom_err
loom_tx_exec_binary(loom_tx *tx, const char *sql, int n, const uint32_t *types,
                    const char *const *values, const int *lengths)
{
    if (tx == NULL || sql == NULL || sql[0] == '\0' || n < 0 ||
        n > LOOM_TX_MAX_PARAMS ||
        (n > 0 && (values == NULL || types == NULL || lengths == NULL)))
        return LOOM_EINVAL;
    for (int i = 0; i < n; i++)
        if (values[i] != NULL && lengths[i] < 0)
            return LOOM_EINVAL;
    return tx_queue(tx, sql, n, types, values, lengths);
}

size_t
loom_tx_count(const loom_tx *tx)
{
    return tx != NULL ? tx->n_stmts : 0;
}
