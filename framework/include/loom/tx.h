/*
 * A unit of work: the SQL statements a handler wants committed together
 * with its subscription's checkpoint (or a projection's), in one
 * PostgreSQL transaction. That is what makes a handler's effects
 * exactly-once: the effects and the position they cover commit together
 * or not at all.
 *
 * A handler does not run the statements itself: it queues them with
 * loom_tx_exec(), and when it returns LOOM_OK its runner sends them all,
 * followed by the checkpoint's compare-and-set, in one pipelined round
 * trip (libpq pipeline mode) without blocking the loop. So a handler
 * cannot read results inside the batch: write each effect as a statement
 * that needs none (INSERT ... ON CONFLICT DO UPDATE, UPDATE ... SET n =
 * n + 1), or keep what it must read in memory.
 *
 * Statements run in the order queued. Each distinct SQL text (with its
 * parameter types) is prepared once per connection, so a statement
 * repeated for every event is parsed and planned once. When any statement
 * fails, nothing of the batch commits: the handler is called again with
 * the same events (see loom/subscription.h for retries and parking).
 *
 * A loom_tx handed to a handler is owned by its runner and valid only
 * during that call. A service that is not in a handler (a command
 * handler, a saga step) makes its own with loom_tx_new(), fills it, and
 * commits it with loom_store_commit() (loom/eventstore.h), which also
 * takes events (loom_tx_append()), outbox messages (loom/outbox.h) and
 * inbox marks (loom/inbox.h): all of them commit together or none does.
 * Everything passed in is copied.
 */
#ifndef LOOM_TX_H
#define LOOM_TX_H

#include <stddef.h>
#include <stdint.h>

#include "loom/error.h"
#include "loom/export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct loom_tx loom_tx;

/* Most parameters of one statement. */
#define LOOM_TX_MAX_PARAMS 64

/* Most bytes queued in one transaction (SQL and parameters). */
#define LOOM_TX_MAX_BYTES ((size_t) 256 << 20)

/*
 * Makes an empty unit of work, owned by the caller: free it with
 * loom_tx_free(). Errors: LOOM_EINVAL (out NULL), LOOM_ENOMEM.
 */
LOOM_API loom_err loom_tx_new(loom_tx **out);

/* Frees a loom_tx made by loom_tx_new(). NULL is a no-op. Never pass the
 * loom_tx a runner handed to a handler. */
LOOM_API void loom_tx_free(loom_tx *tx);

/* Empties tx for reuse, keeping its memory. NULL is a no-op. */
LOOM_API void loom_tx_reset(loom_tx *tx);

/* Why the last call on tx failed ("" when none did); owned by tx, valid
 * until its next call. Never NULL. */
LOOM_API const char *loom_tx_errmsg(const loom_tx *tx);

/*
 * Queues `sql` with `n` text parameters ($1 ... $n; a NULL value is SQL
 * NULL; their types are inferred by PostgreSQL as in PQprepare()).
 *
 * `sql` is one statement: every statement is sent with the extended query
 * protocol (even with no parameters), which refuses several in one text,
 * so "SELECT 1; ROLLBACK" fails the commit (LOOM_EDB) and nothing of the
 * unit of work commits.
 *
 * The unit of work is one transaction that its runner or
 * loom_store_commit() begins and commits, so transaction control is
 * refused: a statement whose first word (after white space and -- or
 * block comments, in any case) is BEGIN, START, COMMIT, END, ROLLBACK,
 * ABORT, SAVEPOINT or RELEASE, or that begins with PREPARE TRANSACTION
 * (COMMIT PREPARED and ROLLBACK PREPARED included). Savepoints are
 * refused with the rest: they work only inside a block BEGIN opened, and
 * a failing statement ends the batch anyway. As a second line of
 * defence, a commit whose server reports such a command (or leaves the
 * session inside a transaction block) fails with LOOM_EDB instead of
 * reporting success. A procedure or DO block that commits on its own is
 * not detected: do not queue one.
 *
 * Errors: LOOM_EINVAL (tx or sql NULL, sql empty, transaction control,
 * n outside 0..64, or values NULL with n > 0; loom_tx_errmsg() says
 * which), LOOM_ETOOBIG (the transaction would exceed LOOM_TX_MAX_BYTES),
 * LOOM_ENOMEM. After an error the statement is not queued; the others
 * are kept.
 */
LOOM_API loom_err loom_tx_exec(loom_tx *tx, const char *sql, int n,
                               const char *const *values);

/*
 * Queues `sql` with `n` parameters given in PostgreSQL's binary format:
 * types[i] is the parameter's type OID (0: inferred, then values[i] must
 * be text), lengths[i] its length in bytes. A NULL values[i] is SQL NULL.
 * Errors as loom_tx_exec(), and LOOM_EINVAL when types or lengths is NULL
 * with n > 0 or a length is negative.
 */
LOOM_API loom_err loom_tx_exec_binary(loom_tx *tx, const char *sql, int n,
                                      const uint32_t *types,
                                      const char *const *values,
                                      const int *lengths);

/* Number of statements queued so far (0 for NULL). */
LOOM_API size_t loom_tx_count(const loom_tx *tx);

#ifdef __cplusplus
}
#endif

#endif /* LOOM_TX_H */
