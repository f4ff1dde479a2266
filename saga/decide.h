/*
 * Private to saga/: the saga state machine (loom/saga.h, above
 * loom_saga_state), run in memory. Each event (a reply, a deadline, an
 * operator's request) moves one saga's working copy in a batch (batch.h)
 * and appends the log entries and commands it causes; handlers run here,
 * with the decider's handler arena as their memory. Nothing touches the
 * database: the batch commits later, as one transaction, or not at all.
 */
#ifndef LOOM_SAGA_DECIDE_H
#define LOOM_SAGA_DECIDE_H

#include <stddef.h>
#include <stdint.h>

#include "batch.h"
#include "loom/transport.h"
#include "wire.h"

typedef struct loom__saga_decider {
    loom__saga_batch *b;
    loom__arena *h; /* handler memory: reset after every event */
    uint64_t rng;   /* xorshift64 state for backoff jitter; never 0 */
    char why[512];  /* why the last event failed */
} loom__saga_decider;

/*
 * A reply for work `w` (whose def is known). It counts when its
 * correlation id is the saga's command in flight and the saga waits for
 * a reply; otherwise it is late: *late is set, a 'late_reply' entry is
 * logged and the saga is only checked to be still at the version read.
 * Errors (nothing of this event stays in the batch; d->why says why):
 * LOOM_EHANDLER (a handler returned an error: deliver the reply again
 * later), LOOM_EDECODE (the payload or the saga data does not decode),
 * LOOM_ENOMEM, LOOM_EIO (no random source for a command id).
 */
loom_err loom__saga_decide_reply(loom__saga_decider *d, size_t w,
                                 const loom__saga_wire *wire,
                                 const loom_message *m, int *late);

/*
 * A saga claimed because its deadline passed: the operator's request `op`
 * ("retry", "skip", "abort"; by `who`) when there is one, else the
 * timeout of the attempt in flight or the end of a retry's backoff.
 * Errors as loom__saga_decide_reply().
 */
loom_err loom__saga_decide_due(loom__saga_decider *d, size_t w, const char *op,
                               const char *who);

/* The delay before attempt `failed` + 1 of a step with policy `r`, in
 * ms, with up to 20% jitter added from *rng. */
uint64_t loom__saga_backoff(const loom_saga_retry *r, uint32_t failed,
                            uint64_t *rng);

#endif /* LOOM_SAGA_DECIDE_H */
