/*
 * An in-process transport for unit tests of code above the transport
 * interface (loom/transport.h): scheme "inproc", one broker in memory per
 * opened transport. A test helper, not a product transport: nothing
 * survives the process, and there is one partition per topic.
 *
 * What it does, so that code above it meets the semantics of the real
 * ones:
 *   - topics are created by the first publish; offsets count from 0;
 *   - a message id published twice to a topic is stored once (dedup);
 *   - deliver_at delays a message; delivery runs on the runtime's loop;
 *   - consumers name topics or patterns; each group gets every message,
 *     members of one group share them (round-robin);
 *   - at most max_in_flight unacknowledged messages per consumer;
 *   - a failed message comes back after 10 ms * 2^(attempt-1), and after
 *     max_deliveries deliveries goes to "<topic>.dlq" with headers
 *     "x-error", "x-group" and "x-attempts";
 *   - closing a consumer returns its unacknowledged messages to its group.
 */
#ifndef LOOM_TEST_INPROC_H
#define LOOM_TEST_INPROC_H

#include "loom/transport.h"

/* Registers scheme "inproc" (once per process; later calls are no-ops). */
loom_err loomt_inproc_register(void);

#endif /* LOOM_TEST_INPROC_H */
