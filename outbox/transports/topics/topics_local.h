/*
 * Private to outbox/: what the outbox relay (relay.c) asks of a topics
 * transport before it publishes inside the database instead of through
 * it (loom.outbox_publish_local, schema 13). The relay's statement does
 * the producer's work in SQL (murmur2 keys, sticky keyless partitions,
 * wake locks, one loom.topic_publish per topic), so it may only stand in
 * for a transport that would have done exactly that, in that database.
 */
#ifndef LOOM_TOPICS_LOCAL_H
#define LOOM_TOPICS_LOCAL_H

#include "loom/transport.h"
#include "pgconn.h"

/* 1 when `t` is a topics transport whose tables are in the database that
 * `conn` (idle) reaches, 0 when not (or a schema before 13 there), -1
 * when either connection could not answer now (busy or broken: ask again
 * later). Blocking: asks loom.database_identity() on both. */
int loom__topics_same_database(loom_transport *t, loom__pgconn *conn);

/* 1 when the in-database publish may stand in for `t` now: a topics
 * transport that is not stopping and has no custom partitioner. *sync
 * gets the synchronous_commit its acks ask for ("on", "local", "off"). */
int loom__topics_local_ok(loom_transport *t, const char **sync);

#endif /* LOOM_TOPICS_LOCAL_H */
