/*
 * Helpers shared by the NATS JetStream tests (nats_*_test.c), on top of
 * tptest.h (tpt_env, tpt_run, the recording consumer tpt_rec and the
 * publishing helpers all work on any transport).
 *
 * The server is LOOM_TEST_NATS_URL ("nats://127.0.0.1:4222"; `make test`
 * starts one with scripts/nats.sh). Without it these tests fail: they
 * never skip. Each executable works in a stream and subject prefix of
 * its own ("LT<pid>", "lt<pid>"), deleted before and after, so
 * executables run in parallel and start empty.
 */
#ifndef LOOM_NTEST_H
#define LOOM_NTEST_H

#include <stddef.h>

#include <uv.h> /* tptest.h needs it first */

#include "loom/nats.h"
#include "tptest.h"

/* Short periods keep redelivery fast in tests. Pull requests keep the
 * default fetch_wait_ms (5 s): nats-server 2.9 can skip or repeat a
 * message's delivery count when a redelivery meets a pull request that
 * is expiring (fixed in 2.10.14, nats-server #5305 and #5338), and short
 * requests make that frequent. */
#define NTT_BACKOFF_MS 50
#define NTT_OPTIONS    "backoff_ms=50&backoff_max_ms=400&ack_wait_ms=5000"

/* LOOM_TEST_NATS_URL, failing the test when it is not set. */
const char *ntt_server(void);
/* This executable's stream and prefix. */
const char *ntt_stream(void);
const char *ntt_prefix(void);
/* The URL of this executable's stream and prefix with NTT_OPTIONS and
 * then `options` ("" or "a=1&b=2"); static storage, overwritten by the
 * next call. */
const char *ntt_url(const char *options);
/* Opens a runtime and a transport on ntt_url(options). Fails the test on
 * error. Close with tpt_close(). */
void ntt_open(tpt_env *e, const char *options);
/* Deletes this executable's stream, if any (with libnats: the transport
 * never deletes one). */
void ntt_stream_delete(void);
/* Deletes this executable's stream (if any); cmocka group set-up and
 * tear-down. */
int ntt_group_setup(void **state);
int ntt_group_teardown(void **state);

/* Opens a consumer of `group` on `topic` (name or pattern) recording into
 * r, with max_in_flight and max_deliveries (0: defaults). Fails the test
 * on error. */
loom_consumer *ntt_rec_open(tpt_env *e, const char *group, const char *topic,
                            size_t max_in_flight, unsigned max_deliveries,
                            tpt_rec *r);
/* Runs the loop for `ms` more, to catch late or duplicate deliveries. */
void ntt_quiet(tpt_env *e, uint64_t ms);
/* The k-th delivery of `payload` in r (fails the test when missing). */
const tpt_rmsg *ntt_nth(const tpt_rec *r, const char *payload, size_t k);
/* Runs scripts/nats.sh `cmd` on `dir`, a nats-server of the test's own;
 * for "start", copies its URL into url. Fails the test on error. */
void ntt_nats_sh(const char *dir, const char *cmd, char *url, size_t len);

#endif /* LOOM_NTEST_H */
