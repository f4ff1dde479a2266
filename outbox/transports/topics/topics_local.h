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

/* 1 when `t` is a topics transport whose tables are in the database
 * named by `db` (what loom.database_identity() returned on the relay's
 * connection), 0 when not, -1 when it could not ask now (its admin
 * connection busy or broken: ask again later). Blocking: asks on the
 * transport's admin connection. */
int loom__topics_same_database(loom_transport *t, const char *db);

/* 1 when the in-database publish may stand in for `t` now: a topics
 * transport that is not stopping and has no custom partitioner. *sync
 * gets the synchronous_commit its acks ask for ("on", "local", "off"). */
int loom__topics_local_ok(loom_transport *t, const char **sync);

#endif /* LOOM_TOPICS_LOCAL_H */
