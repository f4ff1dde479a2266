/*
 * What the orchestrator tests share: two hand-written saga definitions
 * over tests/saga/sagatest.proto, a test participant, and an environment
 * that runs them for real.
 *
 * The environment runs loom_runtime_run() on a thread of its own (so
 * LISTEN/NOTIFY wake-ups and graceful stops work as in a service) with
 * the topics transport, an outbox relay and the participant, while the
 * test body runs on the main thread: it starts sagas on a store of its
 * own, checks the database, and asks the loop thread to open or close
 * orchestrators (st_orch_open(), ...), waiting for the answer. cmocka
 * assertions happen on the main thread only.
 *
 * The participant (an inbox consumer of every step's topic) records each
 * command it handles in st_effects and answers as the saga data's script
 * says for that step ("<step>=<behaviour>"; none: "ok"):
 *   ok            a success reply
 *   fail:CODE     a failure reply with CODE, until st_fix() names the saga
 *   failn:N:CODE  failure replies to attempts 1..N, then success
 *   never         no reply at all
 *   nevern:N      no reply to attempts 1..N, then success
 *   twice         the success reply twice, with the same message id
 *   late:MS       attempt 1's reply delivered MS ms later; then success
 */
#ifndef LOOM_SAGATEST_H
#define LOOM_SAGATEST_H

#include <stddef.h>
#include <stdint.h>

#include "estest.h"
#include "loom/saga.h"
#include "sagatest.pb-c.h"

/* sagatest.Three: Reserve (compensated by Unreserve), Charge (by
 * Refund), Ship. Forward steps: timeout ST_FORWARD_TIMEOUT_MS (see
 * st_forward_timeouts()), 3 attempts, backoff 150 ms doubling, NOPE not
 * retryable. Compensations: 10 s, 2 attempts, 50 ms. */
extern const loom_saga_def st_three;
/* sagatest.Four: A (UndoA), B (none), C (UndoC), D; policies as Three,
 * but A waits 30 s for its reply whatever the forward timeouts are. */
extern const loom_saga_def st_four;

/* The forward steps' timeout unless a test sets another: long enough
 * that no reply of a loaded `make test` (two cores, the kill tests beside
 * it) becomes a timeout, which would add timeout and retry entries to
 * logs the tests compare whole. */
#define ST_FORWARD_TIMEOUT_MS 10000

/* Sets the timeout of forward step `step` of Three, or of B, C or D of
 * Four (NULL: all of them), for the sagas started after it in this test
 * (st_fx_setup puts ST_FORWARD_TIMEOUT_MS back). For the tests of
 * timeouts themselves, which shorten only the step they wait on: a reply
 * of another step later than a short timeout (a loaded machine) would
 * add a timeout and a retry to what they count. */
void st_forward_timeouts(const char *step, uint32_t ms);

/* The participant topics and the reply topic. */
#define ST_REPLIES "st.replies"

/* The topics, st_effects, and a quiet log; call once per executable
 * after loomt_db_create() (st_group_setup does both). */
int st_group_setup(void **state);
int st_group_teardown(void **state);

typedef struct st_env st_env;

/* Starts the loop thread with the transport, the relay and the
 * participant. */
st_env *st_open(void);
/* Stops the runtime gracefully, closes everything, joins the thread. */
void st_close(st_env *v);

/* The config st_orch_open() uses: transport, both defs, poll_ms 100,
 * lease_ms 2000, the ended counter. */
loom_orchestrator_config st_orch_config(st_env *v);
/* Opens an orchestrator on the loop thread (cfg NULL: st_orch_config());
 * fails the test on error. */
loom_orchestrator *st_orch_open(st_env *v, const loom_orchestrator_config *cfg);
/* loom_orchestrator_open(cfg) on the loop thread, returning its code. */
loom_err st_orch_try(st_env *v, const loom_orchestrator_config *cfg,
                     loom_orchestrator **out, char *err, size_t errlen);
void st_orch_close(st_env *v, loom_orchestrator *o);
/* The runtime (for calls that fail before they touch its loop). */
loom_runtime *st_runtime(st_env *v);
loom_orchestrator_stats st_stats(st_env *v, loom_orchestrator *o);
/* ended callbacks seen so far (all sagas). */
int st_ended_count(st_env *v);
/* From now on the participant answers "fail:" steps of saga `id` with a
 * success (the fault was repaired). */
void st_fix(st_env *v, const char *id);

/* The data of a new saga `id` with a NULL-terminated script (may be
 * NULL), in static storage. */
const Sagatest__Order *st_order(const char *id, const char *const *script);
/* Starts saga `id` of `def` on `s`; returns `created`. Fails the test on
 * error. */
int st_start(loom_store *s, const loom_saga_def *def, const char *id,
             const char *const *script);

/* Waits (on the main thread) until the printf-formatted SQL (trusted
 * text) returns `want`, polling every 10 ms; fails the test after
 * `timeout_ms`. */
void st_wait(long long want, int timeout_ms, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Waits until saga `id` is in `state`. */
void st_wait_state(const char *id, const char *state, int timeout_ms);
/* The first column of the first row as text, into buf ("" when NULL or
 * none). */
const char *st_str(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The saga data of `id` as stored; free with sagatest__order__free_unpacked
 * (…, NULL). */
Sagatest__Order *st_data(const char *id);
/* "Reserve,Charge" : the steps the participant handled for saga `id` with
 * `outcome` ('ok', 'fail', 'silent'), in order. */
const char *st_effects(char *buf, size_t len, const char *id,
                       const char *outcome);

/* Sends a success reply to `step` of `saga_id` (of `def`, attempt 1)
 * with `correlation` and the raw `payload`, through the outbox on `s`. */
void st_send_reply(loom_store *s, const loom_saga_def *def, const char *saga_id,
                   const char *step, const loom_uuid *correlation,
                   const void *payload, size_t len);
/* The log of saga `id` as "kind[:step_name],..." in order. */
const char *st_log_of(char *buf, size_t len, const char *id);
/* The trail the handlers left in the saga data, comma-separated. */
const char *st_trail_of(char *buf, size_t len, const char *id);
/* Waits until `want` ended callbacks were seen; fails the test after
 * 15 s. The orchestrator adds a transaction's stats, then calls ended,
 * once it has processed the commit's reply on the loop thread, which can
 * be after the database shows the transaction: wait for this before
 * reading stats (st_stats()) of a saga's end or anything before it. */
void st_wait_ended(st_env *v, int want);
/* Waits until counter `field` of o's stats is at least `want` (see
 * st_wait_ended()) and returns the stats then; fails the test after
 * 15 s. */
#define st_wait_stat(v, o, field, want)                                        \
    st_wait_stat_at((v), (o), offsetof(loom_orchestrator_stats, field),        \
                    #field, (want))
loom_orchestrator_stats st_wait_stat_at(st_env *v, loom_orchestrator *o,
                                        size_t at, const char *name,
                                        uint64_t want);

/* The fixture most tests use: the environment and a store of the test's
 * own, closed by the teardown even when the test fails. */
typedef struct st_fx {
    st_env *v;
    loom_store *s;
} st_fx;

int st_fx_setup(void **state);
int st_fx_teardown(void **state);

#endif /* LOOM_SAGATEST_H */
