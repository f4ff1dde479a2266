/*
 * Eventloom: event sourcing, sagas and reliable messaging on PostgreSQL.
 * This umbrella header includes the event store, aggregates, units of
 * work, the inbox mark, the runtime, subscriptions, projections,
 * upcasters, the partitioner and the framework's helpers (errors,
 * allocation, logging, UUIDs, the type registry). Messaging and sagas are
 * included on their own: loom/transport.h, loom/outbox.h,
 * loom/inbox_consumer.h, loom/topics.h, loom/nats.h and loom/saga.h
 * (which a generated <name>.loom.h includes for you).
 */
#ifndef LOOM_LOOM_H
#define LOOM_LOOM_H

#include "loom/aggregate.h"
#include "loom/alloc.h"
#include "loom/error.h"
#include "loom/eventstore.h"
#include "loom/inbox.h"
#include "loom/log.h"
#include "loom/partitioner.h"
#include "loom/projection.h"
#include "loom/registry.h"
#include "loom/runtime.h"
#include "loom/subscription.h"
#include "loom/tx.h"
#include "loom/upcast.h"
#include "loom/uuid.h"

#define LOOM_VERSION_MAJOR 0
#define LOOM_VERSION_MINOR 1
#define LOOM_VERSION_PATCH 0

#endif /* LOOM_LOOM_H */
