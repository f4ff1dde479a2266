/*
 * What operators and unruly participants do to a saga: a compensation
 * that exhausts its retries parks the saga in COMPENSATION_FAILED, and an
 * operator's request (loom.saga_request: retry, skip, abort) moves it on;
 * a reply delivered twice is applied once; a reply that comes after its
 * attempt timed out is logged as late and ignored.
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

#define WAIT_MS 15000

/* Charge fails for good, then Unreserve fails twice (its policy's
 * attempts): parked. An operator retries one after repairing the
 * participant, and aborts the other. */
static void
a_failed_compensation_parks_the_saga_until_an_operator_retries_or_aborts(
    void **state)
{
    static const char *const script[] = {"Charge=fail:NOPE",
                                         "Unreserve=fail:BAD", NULL};
    st_fx *f = *state;
    loom_orchestrator *o = st_orch_open(f->v, NULL);
    loom_orchestrator_stats st;
    loom_saga_info info;
    char buf[1024];

    st_start(f->s, &st_three, "cf-retry", script);
    st_start(f->s, &st_three, "cf-abort", script);
    st_wait_state("cf-retry", "COMPENSATION_FAILED", WAIT_MS);
    st_wait_state("cf-abort", "COMPENSATION_FAILED", WAIT_MS);
    assert_string_equal(st_effects(buf, sizeof buf, "cf-retry", "fail"),
                        "Charge,Unreserve,Unreserve");
    assert_int_equal(loom_saga_get(f->s, "cf-retry", &info), LOOM_OK);
    assert_int_equal(info.state, LOOM_SAGA_COMPENSATION_FAILED);
    assert_int_equal(info.step, 0); /* Reserve's compensation failed */
    assert_int_equal(info.attempt, 2);
    assert_string_equal(info.last_error,
                        "compensation Unreserve of step Reserve failed after "
                        "2 attempt(s): BAD: the test said so");
    /* Parked: nothing is due, nothing waits. */
    assert_int_equal(est_ll("SELECT count(*) FROM loom.saga_instances WHERE "
                            "id = 'cf-retry' AND deadline IS NULL AND "
                            "waiting IS NULL"),
                     1);
    st_wait_ended(f->v, 2);
    st = st_stats(f->v, o);
    assert_int_equal(st.failed, 2);

    /* Repaired: the operator's retry runs Unreserve with fresh attempts. */
    st_fix(f->v, "cf-retry");
    loomt_sql_exec("SELECT loom.saga_request('cf-retry', 'retry', 'alice')");
    st_wait_state("cf-retry", "COMPENSATED", WAIT_MS);
    assert_string_equal(st_effects(buf, sizeof buf, "cf-retry", "ok"),
                        "Reserve,Unreserve");
    assert_string_equal(
        st_str(buf, sizeof buf,
               "SELECT string_agg(attempt || outcome, ',' ORDER BY seq) FROM "
               "st_effects WHERE saga_id = 'cf-retry' AND step = "
               "'Unreserve'"),
        "1fail,2fail,1ok");
    assert_int_equal(est_ll("SELECT count(*) FROM loom.saga_log WHERE "
                            "saga_id = 'cf-retry' AND kind = 'operator' AND "
                            "detail = 'retry by alice'"),
                     1);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.saga_instances WHERE "
                            "id = 'cf-retry' AND pending_op IS NULL AND "
                            "pending_by IS NULL AND ended_at IS NOT NULL"),
                     1);

    /* Abort: final, nothing more is sent. */
    loomt_sql_exec("SELECT loom.saga_request('cf-abort', 'abort', 'bob')");
    st_wait_state("cf-abort", "ABORTED", WAIT_MS);
    st_log_of(buf, sizeof buf, "cf-abort");
    assert_non_null(strstr(buf, ",compensation_failed,operator,aborted"));
    assert_int_equal(strlen(strstr(buf, ",compensation_failed,")),
                     strlen(",compensation_failed,operator,aborted"));
    assert_string_equal(st_effects(buf, sizeof buf, "cf-abort", "ok"),
                        "Reserve");
    st_wait_ended(f->v, 4); /* the parkings, COMPENSATED and ABORTED */
    st = st_stats(f->v, o);
    assert_int_equal(st.operator_ops, 2);
    assert_int_equal(st.compensated, 1);
}

/* Skip counts the failed compensation as done: the earlier ones run. */
static void
an_operator_skip_goes_on_with_the_compensations_before_it(void **state)
{
    static const char *const script[] = {"D=fail:NOPE", "UndoC=fail:BAD", NULL};
    st_fx *f = *state;
    char buf[1024];

    st_orch_open(f->v, NULL);
    st_start(f->s, &st_four, "cf-skip", script);
    st_wait_state("cf-skip", "COMPENSATION_FAILED", WAIT_MS);
    assert_int_equal(est_ll("SELECT step FROM loom.saga_instances WHERE id = "
                            "'cf-skip'"),
                     2);
    loomt_sql_exec("SELECT loom.saga_request('cf-skip', 'skip', 'carol')");
    st_wait_state("cf-skip", "COMPENSATED", WAIT_MS);
    assert_string_equal(st_effects(buf, sizeof buf, "cf-skip", "ok"),
                        "A,B,C,UndoA");
    assert_string_equal(st_effects(buf, sizeof buf, "cf-skip", "fail"),
                        "D,UndoC,UndoC");
    assert_int_equal(est_ll("SELECT count(*) FROM loom.saga_log WHERE "
                            "saga_id = 'cf-skip' AND kind = 'operator' AND "
                            "detail = 'skip by carol'"),
                     1);
}

/* A running saga can be aborted while it waits for a reply: its timeout
 * no longer fires, nothing more is sent. */
static void
an_operator_abort_stops_a_running_saga(void **state)
{
    static const char *const script[] = {"Charge=never", NULL};
    st_fx *f = *state;
    char buf[1024];

    /* The abort must land before Charge's timeout: 8 s of room for it,
     * its command's way to the participant and the request's to the
     * orchestrator included (only Charge: Reserve's reply has 10 s). */
    st_forward_timeouts("Charge", 8000);
    st_orch_open(f->v, NULL);
    st_start(f->s, &st_three, "abort-run", script);
    st_wait(1, WAIT_MS,
            "SELECT count(*) FROM st_effects WHERE saga_id = 'abort-run' AND "
            "step = 'Charge'");
    loomt_sql_exec("SELECT loom.saga_request('abort-run', 'abort', 'dave')");
    st_wait_state("abort-run", "ABORTED", WAIT_MS);
    /* Past the step's timeout (its deadline was 8 s after the command's
     * transaction began), with a second for a timeout to show: no
     * timeout, no retry. */
    st_wait(1, WAIT_MS,
            "SELECT (clock_timestamp() > at + interval '9 s')::int FROM "
            "loom.saga_log WHERE saga_id = 'abort-run' AND kind = 'command' "
            "AND step_name = 'Charge'");
    assert_string_equal(st_log_of(buf, sizeof buf, "abort-run"),
                        "started,command:Reserve,reply:Reserve,"
                        "command:Charge,operator,aborted");
    assert_int_equal(est_ll("SELECT count(*) FROM loom.saga_instances WHERE "
                            "id = 'abort-run' AND deadline IS NULL AND "
                            "waiting IS NULL AND last_error = 'aborted by "
                            "dave'"),
                     1);
}

/* The participant sends its reply twice with one message id: the second
 * is a duplicate (the orchestrator's inbox) and changes nothing. */
static void
a_reply_delivered_twice_is_applied_once(void **state)
{
    static const char *const script[] = {"Reserve=twice", NULL};
    st_fx *f = *state;
    loom_orchestrator *o = st_orch_open(f->v, NULL);
    int64_t end;
    char buf[1024];

    st_start(f->s, &st_three, "dup-1", script);
    st_wait_state("dup-1", "COMPLETED", WAIT_MS);
    /* Both copies reached the reply topic. */
    assert_int_equal(
        est_ll("SELECT count(*) FROM loom.topic_messages m JOIN loom.topics "
               "t ON t.id = m.topic_id WHERE t.name = 'st.replies' AND "
               "convert_from(m.key, 'UTF8') = 'dup-1'"),
        4);
    end = est_now_ms() + WAIT_MS;
    while (st_stats(f->v, o).duplicates < 1 && est_now_ms() < end) {
        est_sleep_ms(10);
    }
    assert_int_equal(st_stats(f->v, o).duplicates, 1);
    assert_string_equal(st_log_of(buf, sizeof buf, "dup-1"),
                        "started,command:Reserve,reply:Reserve,"
                        "command:Charge,reply:Charge,command:Ship,"
                        "reply:Ship,completed");
    assert_string_equal(st_trail_of(buf, sizeof buf, "dup-1"),
                        "Reserve,Charge,Ship");
    assert_int_equal(est_ll("SELECT count(*) FROM loom.inbox WHERE consumer "
                            "= 'saga:loom-saga' AND message_id IN (SELECT "
                            "message_id FROM loom.saga_log WHERE saga_id = "
                            "'dup-1' AND kind = 'reply')"),
                     3);
}

/* Attempt 1's reply comes after its timeout: attempt 2 has gone out and
 * answered; the old reply is logged as late and ignored. */
static void
a_late_reply_is_logged_and_ignored(void **state)
{
    static const char *const script[] = {"Charge=late:10000", NULL};
    st_fx *f = *state;
    loom_orchestrator *o;
    loom_orchestrator_stats st;
    char buf[1024];

    /* Attempt 1's reply comes 5 s after its timeout; attempt 2, sent at
     * the timeout, has 5 s for its own (only Charge: the other steps'
     * replies have 10 s). */
    st_forward_timeouts("Charge", 5000);
    o = st_orch_open(f->v, NULL);
    st_start(f->s, &st_three, "late-1", script);
    st_wait_state("late-1", "COMPLETED", WAIT_MS);
    st_wait(1, WAIT_MS,
            "SELECT count(*) FROM loom.saga_log WHERE saga_id = 'late-1' AND "
            "kind = 'late_reply' AND step_name = 'Charge' AND attempt = 1 "
            "AND step = 1");
    /* Once, after attempt 1 timed out (before, it would have been the
     * reply), wherever it fell among attempt 2's entries and later ones
     * (a loaded machine may finish the saga after it); without it, the
     * log is that of a saga whose first Charge timed out. */
    assert_int_equal(est_ll("SELECT count(*) FROM loom.saga_log WHERE "
                            "saga_id = 'late-1' AND kind = 'late_reply'"),
                     1);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.saga_log l JOIN "
                            "loom.saga_log t ON t.saga_id = l.saga_id AND "
                            "t.kind = 'timeout' AND t.step_name = 'Charge' "
                            "AND t.attempt = 1 AND t.id < l.id WHERE "
                            "l.saga_id = 'late-1' AND l.kind = 'late_reply'"),
                     1);
    assert_string_equal(
        st_str(buf, sizeof buf,
               "SELECT string_agg(kind || coalesce(':' || step_name, ''), "
               "',' ORDER BY id) FROM loom.saga_log WHERE saga_id = 'late-1' "
               "AND kind <> 'late_reply'"),
        "started,command:Reserve,reply:Reserve,command:Charge,"
        "timeout:Charge,retry:Charge,command:Charge,reply:Charge,"
        "command:Ship,reply:Ship,completed");
    assert_string_equal(st_trail_of(buf, sizeof buf, "late-1"),
                        "Reserve,Charge,Ship");
    st_wait_ended(f->v, 1); /* the stats counted the timeout too */
    st = st_wait_stat(f->v, o, late, 1);
    assert_int_equal(st.late, 1);
    assert_int_equal(st.timeouts, 1);
    /* The late reply is in the inbox: a redelivery is a duplicate. */
    assert_int_equal(est_ll("SELECT count(*) FROM loom.inbox i JOIN "
                            "loom.saga_log l ON l.message_id = i.message_id "
                            "WHERE l.saga_id = 'late-1' AND l.kind = "
                            "'late_reply'"),
                     1);
}

/* A reply without saga headers and one whose payload does not decode are
 * rejected: dead-lettered on their first delivery; a reply for a saga
 * that does not exist is dropped. None of them disturbs the saga they
 * name, which goes on with the right reply. */
static void
replies_that_cannot_be_processed_are_dead_lettered_or_dropped(void **state)
{
    static const char *const script[] = {"A=never", NULL};
    static const unsigned char junk[] = {0x0a, 0xff, 0xff};
    st_fx *f = *state;
    loom_orchestrator *o = st_orch_open(f->v, NULL);
    Sagatest__Ok ok = SAGATEST__OK__INIT;
    uint8_t payload[64];
    loom_uuid cmd, ghost;
    char buf[256];
    int64_t end;

    st_start(f->s, &st_four, "poison-1", script);
    st_wait(1, WAIT_MS,
            "SELECT count(*) FROM st_effects WHERE saga_id = 'poison-1'");
    st_str(buf, sizeof buf,
           "SELECT message_id FROM loom.saga_log WHERE saga_id = 'poison-1' "
           "AND kind = 'command'");
    assert_int_equal(loom_uuid_parse(&cmd, buf), LOOM_OK);
    /* The right correlation, a payload that is not a sagatest.Ok. */
    st_send_reply(f->s, &st_four, "poison-1", "A", &cmd, junk, sizeof junk);
    /* No saga headers at all. */
    loomt_sql_exec("SELECT loom.outbox_add('default', ARRAY['st.replies'], "
                   "ARRAY['junk'::bytea], ARRAY[NULL], ARRAY[NULL::bytea], "
                   "ARRAY['junk'::bytea], ARRAY[gen_random_uuid()], "
                   "ARRAY[NULL::timestamptz])");
    /* A saga nobody started. */
    assert_int_equal(loom_uuid_generate(&ghost), LOOM_OK);
    st_send_reply(f->s, &st_three, "ghost-1", "Reserve", &ghost, "", 0);

    /* A waits 30 s: both bad replies are dead-lettered while it waits,
     * each on its first delivery. */
    st_wait(2, WAIT_MS,
            "SELECT count(*) FROM loom.topic_dead_letters WHERE group_name = "
            "'loom-saga'");
    assert_int_equal(est_ll("SELECT count(*) FROM loom.topic_dead_letters "
                            "WHERE group_name = 'loom-saga' AND deliveries = "
                            "1"),
                     2);
    assert_string_equal(
        st_str(buf, sizeof buf,
               "SELECT string_agg(left(error, 80), '|' ORDER BY error) FROM "
               "loom.topic_dead_letters WHERE group_name = 'loom-saga'"),
        "not a saga reply: missing or empty header loom-saga-id|saga "
        "\"poison-1\": the reply to A does not decode as sagatest.Ok");
    end = est_now_ms() + WAIT_MS;
    while (st_stats(f->v, o).late < 1 && est_now_ms() < end) {
        est_sleep_ms(10);
    }
    assert_int_equal(st_stats(f->v, o).late, 1); /* the ghost's */
    assert_int_equal(est_ll("SELECT count(*) FROM loom.saga_log WHERE "
                            "saga_id = 'ghost-1'"),
                     0);
    /* The saga still waits for A, and goes on with a good reply. */
    assert_string_equal(st_log_of(buf, sizeof buf, "poison-1"),
                        "started,command:A");
    ok.note = "A";
    st_send_reply(f->s, &st_four, "poison-1", "A", &cmd, payload,
                  sagatest__ok__pack(&ok, payload));
    st_wait_state("poison-1", "COMPLETED", WAIT_MS);
    assert_string_equal(st_trail_of(buf, sizeof buf, "poison-1"), "A,B,C,D");
}

#define T(f) cmocka_unit_test_setup_teardown(f, st_fx_setup, st_fx_teardown)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        T(a_failed_compensation_parks_the_saga_until_an_operator_retries_or_aborts),
        T(an_operator_skip_goes_on_with_the_compensations_before_it),
        T(an_operator_abort_stops_a_running_saga),
        T(a_reply_delivered_twice_is_applied_once),
        T(a_late_reply_is_logged_and_ignored),
        T(replies_that_cannot_be_processed_are_dead_lettered_or_dropped),
    };

    return cmocka_run_group_tests_name("saga.ops", tests, st_group_setup,
                                       st_group_teardown);
}
