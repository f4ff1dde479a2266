/*
 * Private to outbox/: what the outbox writer (outbox.c), its batches
 * (outbox_batch.c) and the relay (relay.c) share.
 */
#ifndef LOOM_OUTBOX_INT_H
#define LOOM_OUTBOX_INT_H

#include <stddef.h>

#include "loom/outbox.h"
#include "loom/tx.h"

/* 1 when `name` is a valid outbox name (loom/outbox.h), else 0. */
int loom__outbox_name_ok(const char *name);

/* loom_outbox_add()'s checks of message `m` (the `i`-th of its call)
 * that need no encoding; the reason goes to tx's message. */
loom_err loom__outbox_check_msg(loom_tx *tx, size_t i,
                                const loom_outbox_message *m);

#endif /* LOOM_OUTBOX_INT_H */
