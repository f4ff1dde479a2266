/*
 * Orchestrators come and go: one closed while sagas wait (their timeouts
 * and backoffs expire while none runs) is replaced by another that
 * finishes every saga; two in one consumer group share the sagas, and no
 * step's command is ever sent twice.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sagatest.h"

#define WAIT_MS 30000

/* No (saga, step, attempt) was commanded twice. */
static long long
commands_sent_twice(const char *prefix)
{
    return est_ll("SELECT count(*) FROM (SELECT saga_id, step_name, attempt "
                  "FROM loom.saga_log WHERE kind = 'command' AND saga_id "
                  "LIKE '%s%%' GROUP BY 1, 2, 3 HAVING count(*) > 1) x",
                  prefix);
}

/* The silent sagas (their Charge's attempt 1 is never answered) whose
 * timeout is not logged: those that still wait for it. */
#define RS_WAITING                                                             \
    "FROM loom.saga_instances i WHERE i.id LIKE 'rs-%%' AND EXISTS (SELECT "   \
    "1 FROM st_effects e WHERE e.saga_id = i.id AND e.outcome = 'silent') "    \
    "AND NOT EXISTS (SELECT 1 FROM loom.saga_log l WHERE l.saga_id = i.id "    \
    "AND l.kind = 'timeout')"

static void
a_restarted_orchestrator_finishes_the_sagas_that_waited(void **state)
{
    static const char *const silent[] = {"Charge=nevern:1", NULL};
    static const char *const failing[] = {"Ship=failn:1:TEMP", NULL};
    st_fx *f = *state;
    loom_orchestrator *o;
    long long waiting;
    char id[32];

    /* Only Charge, the step whose timeouts this is about (a slow reply
     * to another step would be one more timeout). 5 s: the first
     * orchestrator is closed before a silent saga times out unless its
     * command took that long to reach the participant. */
    st_forward_timeouts("Charge", 5000);
    o = st_orch_open(f->v, NULL);
    for (int i = 0; i < 12; i++) {
        snprintf(id, sizeof id, "rs-%02d", i);
        st_start(f->s, &st_three, id,
                 i % 3 == 0   ? silent
                 : i % 3 == 1 ? failing
                              : NULL);
    }
    /* Every silent saga waits for its Charge reply, which never comes. */
    st_wait(4, WAIT_MS,
            "SELECT count(*) FROM st_effects WHERE saga_id LIKE 'rs-%%' AND "
            "outcome = 'silent'");
    st_orch_close(f->v, o);
    /* Their timeouts expire while no orchestrator runs (all of them,
     * but for any the first orchestrator saw expire on a slow machine);
     * replies to the others wait in the topic. */
    st_wait(0, WAIT_MS,
            "SELECT count(*) " RS_WAITING
            " AND (deadline IS NULL OR deadline >= now())");
    waiting = est_ll("SELECT count(*) " RS_WAITING);
    printf("saga_restart_test: %lld of 4 silent sagas timed out while no "
           "orchestrator ran\n",
           waiting);
    assert_true(waiting >= 1);
    o = st_orch_open(f->v, NULL);
    st_wait(12, WAIT_MS,
            "SELECT count(*) FROM loom.saga_instances WHERE id LIKE 'rs-%%' "
            "AND state = 'COMPLETED'");
    /* The new orchestrator served the timeouts that expired while none
     * ran (the stats count once the commits' replies are processed). */
    st_wait_stat(f->v, o, timeouts, (uint64_t) waiting);
    /* Each silent saga's attempt 1 timed out once, whichever orchestrator
     * saw it. */
    assert_int_equal(est_ll("SELECT count(*) FROM loom.saga_log l JOIN "
                            "st_effects e ON e.saga_id = l.saga_id AND "
                            "e.step = l.step_name AND e.attempt = l.attempt "
                            "AND e.outcome = 'silent' WHERE l.saga_id LIKE "
                            "'rs-%%' AND l.kind = 'timeout'"),
                     4);
    assert_int_equal(commands_sent_twice("rs-"), 0);
    /* Every silent saga sent Charge again. Others may have too: a reply
     * that waited in the topic while no orchestrator ran comes after the
     * deadline, which the new orchestrator serves first (the reply is then
     * late). Whatever was retried, each step's attempt went out once. */
    assert_int_equal(est_ll("SELECT count(DISTINCT e.saga_id) FROM st_effects "
                            "e JOIN loom.saga_log l ON l.saga_id = e.saga_id "
                            "AND l.kind = 'command' AND l.step_name = "
                            "'Charge' AND l.attempt = 2 WHERE e.saga_id LIKE "
                            "'rs-%%' AND e.outcome = 'silent'"),
                     4);
    assert_true(est_ll("SELECT count(*) FROM loom.saga_log WHERE saga_id "
                       "LIKE 'rs-%%' AND kind = 'command' AND step_name = "
                       "'Ship' AND attempt = 2") >= 4);
    /* Each reply applied once: the data's trail has three steps. */
    for (int i = 0; i < 12; i++) {
        char buf[256];
        snprintf(id, sizeof id, "rs-%02d", i);
        assert_string_equal(st_trail_of(buf, sizeof buf, id),
                            "Reserve,Charge,Ship");
    }
}

/* Starts sagas first..first+n-1 of `prefix` in one transaction, with
 * `script` (may be NULL). */
static void
start_many(loom_store *s, const char *prefix, int first, int n,
           const char *const *script)
{
    loom_tx *tx = NULL;
    char id[64];

    assert_int_equal(loom_tx_new(&tx), LOOM_OK);
    for (int i = first; i < first + n; i++) {
        snprintf(id, sizeof id, "%s%03d", prefix, i);
        assert_int_equal(loom_saga_start_tx(tx, &st_three, id,
                                            &st_order(id, script)->base, NULL),
                         LOOM_OK);
    }
    if (loom_store_commit(s, tx) != LOOM_OK) {
        fail_msg("commit: %s", loom_store_errmsg(s));
    }
    loom_tx_free(tx);
}

static void
two_orchestrators_share_the_sagas_and_send_no_command_twice(void **state)
{
    st_fx *f = *state;
    loom_orchestrator *a = st_orch_open(f->v, NULL);
    loom_orchestrator *b = st_orch_open(f->v, NULL);
    loom_orchestrator_stats sa, sb;

    /* Both members hold partitions of the reply topic. */
    st_wait(2, WAIT_MS,
            "SELECT count(DISTINCT member) FROM loom.topic_assignments WHERE "
            "group_name = 'loom-saga'");
    for (int i = 0; i < 200; i += 50) {
        start_many(f->s, "pair-", i, 50, NULL);
    }
    st_wait(200, 60000,
            "SELECT count(*) FROM loom.saga_instances WHERE id LIKE 'pair-%%' "
            "AND state = 'COMPLETED'");
    assert_int_equal(commands_sent_twice("pair-"), 0);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.saga_log WHERE "
                            "saga_id LIKE 'pair-%%' AND kind = 'command'"),
                     600);
    /* The participant received each command once: 600 distinct ids. */
    assert_int_equal(est_ll("SELECT count(DISTINCT command_id) FROM "
                            "st_effects WHERE saga_id LIKE 'pair-%%'"),
                     600);
    assert_int_equal(est_ll("SELECT count(*) FROM st_effects WHERE saga_id "
                            "LIKE 'pair-%%'"),
                     600);
    st_wait_ended(f->v, 200); /* the stats counted the ends */
    sa = st_stats(f->v, a);
    sb = st_stats(f->v, b);
    printf("saga_restart_test: completed %llu + %llu, conflicts %llu + "
           "%llu, duplicates %llu + %llu\n",
           (unsigned long long) sa.completed, (unsigned long long) sb.completed,
           (unsigned long long) sa.conflicts, (unsigned long long) sb.conflicts,
           (unsigned long long) sa.duplicates,
           (unsigned long long) sb.duplicates);
    assert_int_equal(sa.completed + sb.completed, 200);
    assert_true(sa.completed > 0 && sb.completed > 0);
}

/* Another orchestrator moved a saga on behind this one's cache (here: a
 * version bumped by hand while the saga waits for Charge, whose reply the
 * test then sends itself): the batch's compare-and-set fails, and the
 * reply is decided again from the stored state, once. */
static void
a_stale_cache_costs_a_conflict_and_a_reload_not_a_wrong_transition(void **state)
{
    static const char *const script[] = {"Charge=never", NULL};
    st_fx *f = *state;
    loom_orchestrator *o = st_orch_open(f->v, NULL);
    loom_orchestrator_stats st;
    Sagatest__Ok ok = SAGATEST__OK__INIT;
    uint8_t payload[64];
    size_t len;
    loom_uuid cmd;
    char buf[256];

    st_start(f->s, &st_three, "stale-1", script);
    st_wait(1, WAIT_MS,
            "SELECT count(*) FROM st_effects WHERE saga_id = 'stale-1' AND "
            "step = 'Charge'");
    loomt_sql_exec("UPDATE loom.saga_instances SET version = version + 1 "
                   "WHERE id = 'stale-1'");
    st_str(buf, sizeof buf,
           "SELECT message_id FROM loom.saga_log WHERE saga_id = 'stale-1' "
           "AND kind = 'command' AND step_name = 'Charge'");
    assert_int_equal(loom_uuid_parse(&cmd, buf), LOOM_OK);
    ok.note = "Charge";
    len = sagatest__ok__pack(&ok, payload);
    st_send_reply(f->s, &st_three, "stale-1", "Charge", &cmd, payload, len);
    st_wait_state("stale-1", "COMPLETED", WAIT_MS);
    st = st_stats(f->v, o);
    assert_true(st.conflicts >= 1);
    assert_int_equal(st.timeouts, 0);
    assert_string_equal(st_trail_of(buf, sizeof buf, "stale-1"),
                        "Reserve,Charge,Ship");
    assert_int_equal(est_ll("SELECT count(*) FROM loom.saga_log WHERE "
                            "saga_id = 'stale-1' AND kind = 'reply' AND "
                            "step_name = 'Charge'"),
                     1);
    assert_int_equal(est_ll("SELECT version FROM loom.saga_instances WHERE "
                            "id = 'stale-1'"),
                     5);
}

/* loom_runtime_stop() with sagas in full flow (half of them wait 5 s
 * for Ship's reply, so that they still run when the other half has
 * finished, however slow the machine is to get there): the orchestrator
 * finishes the transaction in hand and reports done (the runtime's run
 * returns); an orchestrator on a new runtime finishes every saga, each
 * step's command sent once. */
static void
a_runtime_stop_lets_the_batch_in_hand_finish_and_a_new_runtime_resumes(
    void **state)
{
    static const char *const slow[] = {"Ship=late:5000", NULL};
    st_fx *f = *state;
    long long running;

    st_orch_open(f->v, NULL);
    for (int i = 0; i < 200; i += 50) {
        start_many(f->s, "stop-", i, 50, i % 100 == 0 ? NULL : slow);
    }
    st_wait(1, WAIT_MS,
            "SELECT (count(*) >= 50)::int FROM loom.saga_instances WHERE id "
            "LIKE 'stop-%%' AND state = 'COMPLETED'");
    st_close(f->v); /* a graceful stop, mid-stream */
    f->v = NULL;
    running = est_ll("SELECT count(*) FROM loom.saga_instances WHERE id LIKE "
                     "'stop-%%' AND state = 'RUNNING'");
    printf("saga_restart_test: %lld sagas running at the stop\n", running);
    assert_true(running > 0);
    f->v = st_open();
    st_orch_open(f->v, NULL);
    st_wait(200, 60000,
            "SELECT count(*) FROM loom.saga_instances WHERE id LIKE 'stop-%%' "
            "AND state = 'COMPLETED'");
    assert_int_equal(commands_sent_twice("stop-"), 0);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.saga_log WHERE "
                            "saga_id LIKE 'stop-%%' AND kind = 'reply'"),
                     600);
}

#define T(f) cmocka_unit_test_setup_teardown(f, st_fx_setup, st_fx_teardown)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        T(a_restarted_orchestrator_finishes_the_sagas_that_waited),
        T(two_orchestrators_share_the_sagas_and_send_no_command_twice),
        T(a_stale_cache_costs_a_conflict_and_a_reload_not_a_wrong_transition),
        T(a_runtime_stop_lets_the_batch_in_hand_finish_and_a_new_runtime_resumes),
    };

    return cmocka_run_group_tests_name("saga.restart", tests, st_group_setup,
                                       st_group_teardown);
}
