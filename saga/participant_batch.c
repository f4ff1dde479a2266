/*
 * A participant's appends per transaction (participant_int.h): handlers
 * emit events one command at a time, but they go to the database as one
 * statement for the whole delivered batch, after the last handler
 * (loom.append_many(), schema 12). One loom.append() per command was the
 * participant's largest server cost (docs/benchmarks.md, saga).
 *
 * Replies are not held back: each goes into the outbox as its handler
 * returns (an INSERT; the outbox looks for an armed relay once per
 * transaction, schema 12).
 *
 * The inbox consumer builds a transaction again when one fails (each
 * message alone), so `begin` drops whatever an unsent build collected.
 */
#include <stdio.h>

#include "participant_int.h"

void
loom__participant_begin(void *arg)
{
    loom_participant *p = arg;

    loom__append_many_reset(&p->appends);
}

loom_err
loom__participant_end(loom_tx *tx, char *why, size_t whylen, void *arg)
{
    loom_participant *p = arg;
    loom_err rc = loom__append_many_queue(&p->appends, tx);

    if (rc != LOOM_OK)
        snprintf(why, whylen, "participant %s: %s", p->group,
                 loom_tx_errmsg(tx));
    loom__participant_begin(p);
    return rc;
}
