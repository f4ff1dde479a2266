/*
 * Helpers shared by the topic-stream tests: a runtime with a "topics://"
 * transport on the test database, a bounded run of its loop, and a
 * consumer that records what it receives.
 *
 * Loop callbacks never call cmocka (a failure would jump out of uv_run);
 * they record, and the test checks after the run.
 *
 * The second half serves topics_delivery_test and topics_consumer_test:
 * SQL helpers, a consumer recording whole messages (tpt_rec) and
 * publishing helpers.
 */
#ifndef LOOM_TPTEST_H
#define LOOM_TPTEST_H

#include <stddef.h>
#include <stdint.h>

#include "estest.h"
#include "loom/outbox.h"
#include "loom/topics.h"

typedef struct tpt_env {
    loom_runtime *rt;
    loom_transport *t;
    uv_timer_t tick;
    int (*done)(void *arg); /* run until this returns non-zero */
    void *done_arg;
    uint64_t deadline_ms;
    int timed_out;
} tpt_env;

/* Opens a runtime and a transport on the test database (URL
 * "topics://<options>"; options may be ""). Fails the test on error. */
void tpt_open(tpt_env *e, const char *options);
/* The same with the runtime's fallback wake-up every `poll_ms` (tpt_open:
 * 200), for tests that must tell a wake-up from the poll. */
void tpt_open_polling(tpt_env *e, const char *options, unsigned poll_ms);
/* Closes the transport (if still open) and the runtime. */
void tpt_close(tpt_env *e);
/* A relay config on `t` with short periods, so that takeovers and retries
 * are fast (relay tests). */
loom_relay_config tpt_relay_config(loom_transport *t);
/* loom_relay_start() on e's runtime; fails the test on error. */
loom_relay *tpt_relay_start(tpt_env *e, const loom_relay_config *cfg);
/* Runs the loop until done(arg) or `ms` pass; returns 1 when done. */
int tpt_run(tpt_env *e, int (*done)(void *), void *arg, uint64_t ms);

/* What a recording consumer saw. */
typedef struct tpt_seen {
    size_t n; /* deliveries */
    size_t cap;
    char (*keys)[32]; /* per delivery */
    int64_t *seq;     /* payload as a number */
    int32_t *partition;
    int64_t *offset;
    uint32_t *attempt;
    int fail_until;   /* fail deliveries with attempt < this */
    int64_t fail_seq; /* only this payload (-1: any) */
    int hold;         /* do not acknowledge */
    loom_consumer *c;
} tpt_seen;

/* A loom_consume_fn recording into a tpt_seen (arg). */
void tpt_record(loom_consumer *c, const loom_message *const *msgs, size_t n,
                void *arg);
void tpt_seen_free(tpt_seen *s);

/* Publishes `n` messages to `topic` keyed "k<i % keys>" (keys 0: no key)
 * with payload "<seq>" where seq counts per key from `first`, and waits
 * for the callbacks. Fails the test on error. */
void tpt_publish(tpt_env *e, const char *topic, int n, int keys, int64_t first);

/* ---- for topics_delivery_test and topics_consumer_test ------------------ */

/* Short periods keep redelivery, polling and rebalancing fast. */
#define TPT_POLL_MS      50
#define TPT_BACKOFF_MS   50
#define TPT_HEARTBEAT_MS 100
#define TPT_WAIT_MS      20000 /* the most any single wait may take */
#define TPT_QUIET_MS     300   /* extra run to catch late duplicates */

/* Runs the printf-formatted SQL (trusted text: nothing is quoted) on the
 * test database. Fails the test on error. */
void tpt_sqlf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Creates a topic with loom.topic_create(); -1 leaves a setting at its
 * default (NULL). */
void tpt_topic_create(const char *name, int partitions, long long retention_ms,
                      long long retention_bytes, long long dedup_window_ms,
                      int max_deliveries);
/* The id of the topic `name` in loom.topics. */
long long tpt_topic_id(const char *name);
/* Runs the loop until the printf-formatted SQL (trusted text) returns
 * `want`; the query runs at most every 20 ms, on a connection of its
 * own. Fails the test after TPT_WAIT_MS. */
void tpt_sql_wait(tpt_env *e, long long want, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* As tpt_sql_wait(), for a count that climbs to `want` over a long run
 * (many durable commits, which a loaded machine slows down): fails only
 * once a TPT_WAIT_MS wait ends with the result where it began. */
void tpt_sql_wait_progress(tpt_env *e, long long want, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The wall clock in microseconds since the epoch (as deliver_at). */
int64_t tpt_realtime_us(void);

/* One delivery as a tpt_rec saw it. */
typedef struct tpt_rmsg {
    char topic[80];
    char key[48];
    char payload[48];
    char headers[512]; /* "key=value;" each */
    loom_uuid id;
    int32_t partition;
    int64_t offset;
    int64_t deliver_at;
    uint32_t attempt;
    int64_t at_ms;            /* monotonic, when the handler got it */
    int64_t at_us;            /* wall clock, when the handler got it */
    const loom_message *held; /* hold mode: not acknowledged yet */
} tpt_rmsg;

/* What a recording consumer saw, with the full message (unlike
 * tpt_seen), and how it answers. */
typedef struct tpt_rec {
    tpt_rmsg *m;
    size_t n, cap;
    size_t want; /* tpt_rec_wait(): deliveries to wait for */
    int hold;    /* do not acknowledge: the test does */
    /* Fail deliveries of this payload while their attempt is below
     * fail_until. */
    const char *fail_payload;
    uint32_t fail_until;
    const char *fail_error; /* NULL: "boom" */
    int reject;             /* reject them (loom_consumer_reject) instead */
    int oom;
    loom_consumer *c;
} tpt_rec;

/* A loom_consume_fn recording into a tpt_rec (arg): acknowledges each
 * delivery, or fails it as fail_payload says, or (hold) leaves it to the
 * test. */
void tpt_rec_handle(loom_consumer *c, const loom_message *const *msgs, size_t n,
                    void *arg);
void tpt_rec_free(tpt_rec *r);
/* For tpt_run(): arg is a NULL-terminated array of tpt_rec pointers;
 * done when each has its `want` deliveries. */
int tpt_recs_done(void *arg);
/* Runs the loop until `r` has `want` deliveries. Fails the test after
 * TPT_WAIT_MS. */
void tpt_rec_wait(tpt_env *e, tpt_rec *r, size_t want);
/* Deliveries of `payload`. */
size_t tpt_rec_count(const tpt_rec *r, const char *payload);
/* The default consumer options with the short periods above (see the
 * note on polling in the tests that use them). */
loom_topics_consumer_config tpt_fast_topts(void);
/* Opens a consumer of `group` on `topic` (a name or a pattern) recording
 * into `r`, with `topts` (NULL: tpt_fast_topts()). Fails the test on
 * error. */
loom_consumer *tpt_rec_open(tpt_env *e, const char *group, const char *topic,
                            const loom_topics_consumer_config *topts,
                            tpt_rec *r);
/* The consumer's stats. Fails the test on error. */
loom_topics_consumer_stats tpt_stats_of(loom_consumer *c);

/* What the callback of one publish call got. */
typedef struct tpt_pcall {
    int done; /* times called back */
    loom_err rc;
    size_t n;
} tpt_pcall;

/* A loom_publish_cb recording into a tpt_pcall (arg). */
void tpt_pcall_record(loom_err rc, size_t n, void *arg);
/* For tpt_run(): arg is a NULL-terminated array of tpt_pcall pointers;
 * done when each was called back. */
int tpt_pcalls_done(void *arg);
/* Fills `m`: `topic`, `key` (NULL: none) and `payload` as strings, any
 * partition, the rest zero. */
void tpt_msg_init(loom_message *m, const char *topic, const char *key,
                  const char *payload);
/* Publishes `n` messages in one call and returns what its callback got.
 * Fails the test if the call is refused or not called back within
 * TPT_WAIT_MS. */
loom_err tpt_publish_wait(tpt_env *e, const loom_message *msgs, size_t n);
/* Publishes payloads "first".."first+n-1" in one call, keyed "k<i % keys>"
 * (keys 0: no key), and fails the test unless all are taken. */
void tpt_publish_seq(tpt_env *e, const char *topic, int first, int n, int keys);

/* Applies the debug variables; call at the start of main().
 * TPT_FILTER=<glob> runs only the matching tests; TPT_LOG=1 prints every
 * log line of the library (info included) with a millisecond clock. */
void tpt_debug_from_env(void);

#endif /* LOOM_TPTEST_H */
