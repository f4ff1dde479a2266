/*
 * loom-bench topics: the "topics://" transport against PgQ (see
 * docs/benchmarks.md, "topics"). Private to the files of this case:
 *
 *   topics_msg.c    the messages both sides publish, and the record of
 *                   what a consumer received
 *   topics_pgq.c    PgQ: queue, ticker, producer and consumer
 *   topics_loom.c   Eventloom: producer and consume phase
 *   topics_group.c  Eventloom: a consumer group, one thread per member
 *   topics_lat.c    Eventloom: end-to-end latency under a steady rate
 *   bench_topics.c  the case: phases, checks and the BENCH lines
 *
 * Both sides publish the same messages: message i has the key
 * "key-<i % TB_KEYS>" and a payload of TB_PAYLOAD_BYTES printable bytes
 * (PgQ stores its event data as text) carrying i, so every consumer can
 * tell what it received and check that nothing was lost or altered.
 */
#ifndef LOOM_BENCH_TOPICS_H
#define LOOM_BENCH_TOPICS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "bench.h"

#define TB_PAYLOAD_BYTES 200
#define TB_KEYS          10000
#define TB_KEY_MAX       16   /* "key-9999" and its NUL, with room */
#define TB_BATCH         1000 /* messages per produce transaction */
#define TB_PARTITIONS    8
#define TB_MEMBERS       2 /* of the loom consumer group */
#define TB_TOPIC         "bench"
#define TB_TOPIC_NODEDUP "bench.nodedup"
#define TB_LAT_TOPIC     "bench.latency"
#define TB_QUEUE         "bench"
#define TB_PGQ_CONSUMER  "bench"
#define TB_PGQ_LAZY      "bench_lazy" /* commits without flush wait */

/* What the case passes to each side. */
typedef struct tb_spec {
    bench_env *env;
    size_t messages; /* --messages */
    double rate;     /* latency: messages per second (--rate) */
    double seconds;  /* latency: measured seconds (--seconds) */
    size_t batch;    /* loom consumers: messages per fetch (--batch);
                        0: the transport's default */
} tb_spec;

/* The outcome of one produce or consume phase. */
typedef struct tb_phase {
    double seconds;  /* first call to last acknowledgement or commit */
    size_t messages; /* produced, or distinct messages consumed */
    size_t batches;  /* transactions or handler calls */
    size_t dups;     /* consume: deliveries of a message seen before */
    uint64_t sum;    /* consume: sum of the checksums of distinct ones */
} tb_phase;

/* ------------------------------------------------------------------ */
/* topics_msg.c                                                        */

/* Writes message i's payload: TB_PAYLOAD_BYTES bytes of [0-9A-Za-z],
 * starting with i and `stamp` (a bench_now_ns() time, or 0) in 16
 * hexadecimal digits each, then pseudo-random letters that differ from
 * message to message. */
void tb_payload(char *p, uint64_t i, int64_t stamp);

/* Writes message i's key (NUL-terminated); returns its length. */
size_t tb_key(char *buf, uint64_t i);

/* The message number and stamp of a payload; -1 when it is not one of
 * ours. */
int tb_parse(const void *payload, size_t len, uint64_t *i, int64_t *stamp);

/* The work every consumer does per message: FNV-1a over the payload. */
uint64_t tb_checksum(const void *payload, size_t len);

/* The sum of the checksums of messages 0..n-1: what a consumer that
 * received each exactly once reports. */
uint64_t tb_expected_sum(size_t n);

/* Which messages a consumer (of any number of threads) received. */
typedef struct tb_seen {
    _Atomic uint64_t *bits;
    size_t n;
    atomic_size_t distinct, dups, bad;
    _Atomic uint64_t sum;
    atomic_llong last_ns; /* bench_now_ns() when the last one arrived */
} tb_seen;

int tb_seen_init(tb_seen *s, size_t n);
void tb_seen_free(tb_seen *s);

/* Records one delivery (checksums the payload); returns 1 when it
 * completed the set, else 0. Thread-safe. */
int tb_seen_add(tb_seen *s, const void *payload, size_t len);

/* Fills `out` from what was seen between start_ns and the last arrival. */
void tb_seen_phase(tb_seen *s, int64_t start_ns, tb_phase *out);

/* ------------------------------------------------------------------ */
/* topics_pgq.c                                                        */

typedef struct tb_pgq tb_pgq;

/* Installs the pgq extension in the scratch database, creates the queue
 * and registers the consumer (before anything is produced, as PgQ
 * requires). 0, or -1 after printing why. */
int tb_pgq_open(tb_pgq **out, const tb_spec *spec);
void tb_pgq_close(tb_pgq *q);

/* Produce: pgq.insert_event() of TB_BATCH events per transaction, while
 * a ticker thread calls pgq.ticker() as pgqd does; then one last tick. */
int tb_pgq_produce(tb_pgq *q, tb_phase *out);

/* Consume: next_batch, get_batch_events, finish_batch, one transaction
 * per batch, until every message was received; the ticker runs. `lazy`:
 * as consumer TB_PGQ_LAZY, whose batch transactions commit with
 * synchronous_commit off. */
int tb_pgq_consume(tb_pgq *q, int lazy, tb_phase *out);

/* ------------------------------------------------------------------ */
/* topics_loom.c                                                       */

/* The "topics://" URL of the scratch database. loom_free() it. */
char *tb_loom_url(const bench_env *env);

/* Creates a topic of TB_PARTITIONS partitions, its other settings the
 * defaults, but without deduplication when `dedup` is 0. 0 or -1
 * (printed). */
int tb_loom_topic(const bench_env *env, const char *name, int dedup);

/* Publishes spec->messages messages to `topic` in calls of TB_BATCH
 * messages. 0, or -1 after printing why. */
int tb_loom_produce(const tb_spec *spec, const char *topic, tb_phase *out);

/* Consumes every message of TB_TOPIC with a new group of `members`
 * members, one thread and runtime each, from the earliest offset. */
int tb_loom_consume(const tb_spec *spec, const char *group, int members,
                    tb_phase *out);

/* One member of a consumer group on its own thread and runtime: what
 * topics_loom.c and topics_lat.c share. */
typedef struct tb_member tb_member;
typedef struct tb_group {
    const bench_env *env;
    const char *topic;
    const char *group;
    int members;
    size_t batch; /* messages per fetch and handler call; 0: default */
    /* Called on a member's loop thread for each delivered payload. */
    void (*on_msg)(void *arg, const void *payload, size_t len, int64_t now);
    void *arg;
    atomic_int stop; /* set by anyone: every member stops */
    atomic_int failed;
    atomic_size_t batches; /* handler calls, all members */
    int64_t go_ns;         /* when the joined members were released */
    /* Internal: the members, and the hand-over from joined to running. */
    tb_member *m;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int go; /* under lock */
} tb_group;

/* Starts the members; each connects and joins, then all are released
 * at once (g->go_ns) and run until g->stop. 0, or -1 after printing why
 * (nothing is left running then). */
int tb_group_start(tb_group *g);
/* Stops (if not yet) and joins every member, and frees them. */
void tb_group_stop(tb_group *g);

/* ------------------------------------------------------------------ */
/* topics_lat.c                                                        */

typedef struct tb_latency {
    bench_samples lat;     /* publish call to delivery, per message */
    bench_samples publish; /* publish call to its callback */
    size_t messages;
    double rate; /* achieved */
    double behind_ms;
    /* The slowest message: when it was published (seconds after the
     * first measured one), so a stall can be matched with the logs. */
    double slowest_at_s;
} tb_latency;

/* Publishes one message per call at spec->rate for spec->seconds (after
 * a warm-up that is not counted) to TB_LAT_TOPIC, read by a group of
 * TB_MEMBERS members. The caller frees the samples. */
int tb_loom_latency(const tb_spec *spec, tb_latency *out);

#endif /* LOOM_BENCH_TOPICS_H */
