/*
 * Helpers shared by the topic-stream tests: a runtime with a "topics://"
 * transport on the test database, a bounded run of its loop, and a
 * consumer that records what it receives.
 *
 * Loop callbacks never call cmocka (a failure would jump out of uv_run);
 * they record, and the test checks after the run.
 */
#ifndef LOOM_TPTEST_H
#define LOOM_TPTEST_H

#include <stddef.h>
#include <stdint.h>

#include "estest.h"
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
/* Closes the transport (if still open) and the runtime. */
void tpt_close(tpt_env *e);
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

#endif /* LOOM_TPTEST_H */
