/*
 * Eventloom: event sourcing, sagas and reliable messaging on PostgreSQL.
 * This umbrella header includes every public header: the event store,
 * aggregates, units of work, the inbox mark, the runtime, subscriptions,
 * projections, upcasters, the framework's helpers (errors, allocation,
 * logging, UUIDs, the type registry), messaging (transports, the
 * partitioner, the outbox and its relay, the inbox consumer, the topics://
 * and nats:// transports) and sagas. Each may also be included alone.
 */
#ifndef LOOM_LOOM_H
#define LOOM_LOOM_H

#include "loom/aggregate.h"
#include "loom/alloc.h"
#include "loom/error.h"
#include "loom/eventstore.h"
#include "loom/inbox.h"
#include "loom/inbox_consumer.h"
#include "loom/log.h"
#include "loom/nats.h"
#include "loom/outbox.h"
#include "loom/partitioner.h"
#include "loom/projection.h"
#include "loom/registry.h"
#include "loom/runtime.h"
#include "loom/saga.h"
#include "loom/subscription.h"
#include "loom/topics.h"
#include "loom/transport.h"
#include "loom/tx.h"
#include "loom/upcast.h"
#include "loom/uuid.h"

#define LOOM_VERSION_MAJOR 0
#define LOOM_VERSION_MINOR 1
#define LOOM_VERSION_PATCH 0

#endif /* LOOM_LOOM_H */
