/*
 * Private to outbox/: what a transport's own API (loom/topics.h) needs
 * from the handles of loom/transport.h.
 */
#ifndef LOOM_TRANSPORT_INT_H
#define LOOM_TRANSPORT_INT_H

#include "loom/transport.h"

/* ops->subscribe with a transport-specific `extra`. */
typedef loom_err (*loom__subscribe_fn)(void *state,
                                       const loom_consumer_config *cfg,
                                       loom_consumer *c, const void *extra,
                                       void **cstate);

/* loom_consumer_open() through `sub` instead of ops->subscribe (fn may be
 * NULL when the transport delivers by other means). Checks cfg as
 * loom_consumer_open() does. */
loom_err loom__consumer_open(loom_transport *t, const loom_consumer_config *cfg,
                             loom_consume_fn fn, void *arg,
                             loom__subscribe_fn sub, const void *extra,
                             loom_consumer **out);

/* The operations and state behind a handle (NULL for NULL). */
const loom_transport_ops *loom__transport_ops(const loom_transport *t);
void *loom__transport_state(const loom_transport *t);
/* The runtime the transport was opened on (NULL for NULL). */
loom_runtime *loom__transport_runtime(const loom_transport *t);
const loom_transport_ops *loom__consumer_ops(const loom_consumer *c);
void *loom__consumer_state(const loom_consumer *c);
void *loom__consumer_arg(const loom_consumer *c);

#endif /* LOOM_TRANSPORT_INT_H */
