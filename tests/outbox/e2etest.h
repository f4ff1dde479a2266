/*
 * What the end-to-end tests (outbox_e2e_test over topics://,
 * nats_e2e_test over nats://) share: a service's unit of work on an
 * order, and the idempotent consumer that applies its messages to
 * e2e_effects.
 */
#ifndef LOOM_E2ETEST_H
#define LOOM_E2ETEST_H

#include "loom/inbox_consumer.h"
#include "loom/outbox.h"
#include "tptest.h"

/* The consumer's effects: a row per applied message, in applied order. */
#define E2E_EFFECTS_SQL                                                        \
    "CREATE TABLE IF NOT EXISTS e2e_effects (seq bigserial PRIMARY KEY, "      \
    "stream text NOT NULL, version bigint NOT NULL, message_id uuid NOT "      \
    "NULL, key text NOT NULL)"

/* One unit of work on `stream`, now at `version` (-1: none): append an
 * event at version + 1 and add its message ("<stream> <version + 1>" to
 * topic e2e.orders, keyed by the stream) in `tx`, then commit on `s`.
 * With `doomed`, a failing statement rolls it all back (LOOM_EDB).
 * Calls no cmocka function: writer threads use it. */
loom_err e2e_order_unit(loom_store *s, loom_tx *tx, const char *stream,
                        int64_t version, int doomed);

/* Opens an inbox consumer of group "billing" on `topic` that inserts each
 * message into e2e_effects. Fails the test on error. */
loom_inbox_consumer *e2e_consumer(tpt_env *e, const char *topic);

#endif /* LOOM_E2ETEST_H */
