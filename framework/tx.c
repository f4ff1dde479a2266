/*
 * The unit-of-work queue (loom/tx.h, tx_int.h): copies each statement and
 * its parameters so that a handler may pass stack buffers.
 */
#include <stdarg.h>
#include <stdio.h>
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
    loom__buf_reset(&tx->err);
    tx->n_stmts = 0;
    tx->n_params = 0;
}

void
loom__tx_free(loom_tx *tx)
{
    loom__buf_free(&tx->data);
    loom__buf_free(&tx->err);
    loom_free(tx->stmts);
    loom_free(tx->params);
    loom__tx_init(tx);
}

loom_err
loom__tx_fail(loom_tx *tx, loom_err rc, const char *fmt, ...)
{
    va_list ap;
    int n;

    loom__buf_reset(&tx->err);
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    /* Without memory for the message, errmsg says "" but rc stands. */
    if (n >= 0 && loom__buf_reserve(&tx->err, (size_t) n) == 0) {
        va_start(ap, fmt);
        vsnprintf(tx->err.data, (size_t) n + 1, fmt, ap);
        va_end(ap);
        tx->err.len = (size_t) n;
    }
    return rc;
}

void
loom__tx_ok(loom_tx *tx)
{
    loom__buf_reset(&tx->err);
}

loom_err
loom_tx_new(loom_tx **out)
{
    loom_tx *tx;

    if (out == NULL)
        return LOOM_EINVAL;
    *out = NULL;
    tx = loom_malloc(sizeof *tx);
    if (tx == NULL)
        return LOOM_ENOMEM;
    loom__tx_init(tx);
    *out = tx;
    return LOOM_OK;
}

void
loom_tx_free(loom_tx *tx)
{
    if (tx == NULL)
        return;
    loom__tx_free(tx);
    loom_free(tx);
}

void
loom_tx_reset(loom_tx *tx)
{
    if (tx != NULL)
        loom__tx_reset(tx);
}

const char *
loom_tx_errmsg(const loom_tx *tx)
{
    if (tx == NULL)
        return "no unit of work (NULL)";
    return loom__buf_str(&tx->err);
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
        return loom__tx_fail(tx, LOOM_ETOOBIG,
                             "a statement of %zu bytes would take the unit "
                             "of work past %zu bytes (LOOM_TX_MAX_BYTES; "
                             "%zu queued): commit it in parts",
                             bytes, LOOM_TX_MAX_BYTES, tx->data.len);
    if (tx_grow((void **) &tx->stmts, &tx->cap_stmts, tx->n_stmts + 1,
                sizeof *tx->stmts) != 0 ||
        tx_grow((void **) &tx->params, &tx->cap_params,
                tx->n_params + (size_t) n, sizeof *tx->params) != 0 ||
        loom__buf_reserve(&tx->data, bytes) != 0) {
        tx->data.failed = 0; /* nothing was written: the queue stands */
        return loom__tx_fail(tx, LOOM_ENOMEM,
                             "out of memory queueing a statement");
    }
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
        return loom__tx_fail(tx, LOOM_ENOMEM,
                             "out of memory queueing a statement");
    }
    tx->n_params += (size_t) n;
    tx->n_stmts++;
    loom__tx_ok(tx);
    return LOOM_OK;
}

/* Skips white space and SQL comments (-- to the end of the line, and
 * block comments, which nest in PostgreSQL) in front of a statement. */
static const char *
tx_skip_space(const char *p)
{
    for (;;) {
        int depth = 0;
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' ||
               *p == '\f' || *p == '\v')
            p++;
        if (p[0] == '-' && p[1] == '-') {
            p += strcspn(p, "\n");
            continue;
        }
        if (p[0] != '/' || p[1] != '*')
            return p;
        do {
            if (p[0] == '/' && p[1] == '*') {
                depth++;
                p += 2;
            } else if (p[0] == '*' && p[1] == '/') {
                depth--;
                p += 2;
            } else
                p++;
        } while (depth > 0 && *p != '\0');
    }
}

/* Whether the keyword `kw` (upper case) starts at p as a whole word;
 * *end is set past it. Identifier characters are letters, digits, '_',
 * '$' and every byte of a multibyte character. */
static int
tx_word(const char *p, const char *kw, const char **end)
{
    size_t n = strlen(kw);
    unsigned char c;

    for (size_t i = 0; i < n; i++)
        if ((p[i] & ~0x20) != kw[i])
            return 0;
    c = (unsigned char) p[n];
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')
        return 0;
    if ((c >= '0' && c <= '9') || c == '_' || c == '$' || c >= 0x80)
        return 0;
    *end = p + n;
    return 1;
}

/* The transaction-control keyword `sql` starts with, or NULL. Such a
 * statement would end or split the one transaction the unit of work
 * commits in: ROLLBACK would make nothing commit while the commit reports
 * success, COMMIT would commit what came before it even when a later
 * statement fails, BEGIN would leave everything uncommitted. SAVEPOINT,
 * RELEASE and ROLLBACK TO are refused too: they only work in a block
 * that BEGIN opened, and a failing statement ends the batch anyway. */
static const char *
tx_control(const char *sql)
{
    static const char *const words[] = {"BEGIN",     "START",    "COMMIT",
                                        "END",       "ROLLBACK", "ABORT",
                                        "SAVEPOINT", "RELEASE"};
    const char *p = tx_skip_space(sql), *end;

    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (tx_word(p, words[i], &end))
            return words[i];
    /* PREPARE name AS ... is harmless; PREPARE TRANSACTION is not. */
    if (tx_word(p, "PREPARE", &end) &&
        tx_word(tx_skip_space(end), "TRANSACTION", &end))
        return "PREPARE TRANSACTION";
    return NULL;
}

/* The checks both exec forms share; LOOM_OK or LOOM_EINVAL with why. */
static loom_err
tx_check(loom_tx *tx, const char *sql, int n, const char *const *values)
{
    const char *kw;

    if (sql == NULL || sql[0] == '\0')
        return loom__tx_fail(tx, LOOM_EINVAL, "the SQL text is %s",
                             sql == NULL ? "NULL" : "empty");
    if ((kw = tx_control(sql)) != NULL)
        return loom__tx_fail(tx, LOOM_EINVAL,
                             "the statement begins with %s: a unit of work "
                             "commits itself, all of it or none, so it "
                             "takes no transaction control (BEGIN, START "
                             "TRANSACTION, COMMIT, END, ROLLBACK, ABORT, "
                             "SAVEPOINT, RELEASE, PREPARE TRANSACTION)",
                             kw);
    if (n < 0 || n > LOOM_TX_MAX_PARAMS)
        return loom__tx_fail(tx, LOOM_EINVAL,
                             "%d parameters: a statement takes 0 to %d "
                             "(LOOM_TX_MAX_PARAMS)",
                             n, LOOM_TX_MAX_PARAMS);
    if (n > 0 && values == NULL)
        return loom__tx_fail(tx, LOOM_EINVAL,
                             "values is NULL with %d parameters", n);
    return LOOM_OK;
}

loom_err
loom_tx_exec(loom_tx *tx, const char *sql, int n, const char *const *values)
{
    loom_err rc;

    if (tx == NULL)
        return LOOM_EINVAL;
    rc = tx_check(tx, sql, n, values);
    if (rc != LOOM_OK)
        return rc;
    return tx_queue(tx, sql, n, NULL, values, NULL);
}

loom_err
loom_tx_exec_binary(loom_tx *tx, const char *sql, int n, const uint32_t *types,
                    const char *const *values, const int *lengths)
{
    loom_err rc;

    if (tx == NULL)
        return LOOM_EINVAL;
    rc = tx_check(tx, sql, n, values);
    if (rc != LOOM_OK)
        return rc;
    if (n > 0 && (types == NULL || lengths == NULL))
        return loom__tx_fail(tx, LOOM_EINVAL,
                             "types or lengths is NULL with %d parameters", n);
    for (int i = 0; i < n; i++)
        if (values[i] != NULL && lengths[i] < 0)
            return loom__tx_fail(tx, LOOM_EINVAL,
                                 "parameter $%d has the negative length %d",
                                 i + 1, lengths[i]);
    return tx_queue(tx, sql, n, types, values, lengths);
}

size_t
loom_tx_count(const loom_tx *tx)
{
    return tx != NULL ? tx->n_stmts : 0;
}
