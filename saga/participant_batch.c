/*
 * A participant's writes per transaction (participant_int.h): handlers
 * emit events and reply one command at a time, but the events go to the
 * database as one statement for the whole delivered batch, after the last
 * handler (loom.append_many(), schema 12), and so do the replies (one
 * loom.outbox_add()). One loom.append() and one outbox write per command
 * were the participant's largest server costs (docs/benchmarks.md, saga).
 * Nothing waits for this: the transaction commits after its last handler
 * either way.
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
    loom__outbox_batch_reset(&p->replies);
}

loom_err
loom__participant_end(loom_tx *tx, char *why, size_t whylen, void *arg)
{
    loom_participant *p = arg;
    loom_err rc = loom__append_many_queue(&p->appends, tx);

    if (rc == LOOM_OK)
        rc = loom__outbox_batch_queue(&p->replies, tx, p->outbox);

    if (rc != LOOM_OK)
        snprintf(why, whylen, "participant %s: %s", p->group,
                 loom_tx_errmsg(tx));
    loom__participant_begin(p);
    return rc;
}
