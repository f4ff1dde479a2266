/*
 * How a saga runs (loom/saga.h), end to end over the topics transport:
 * an orchestrator, an outbox relay and a test participant on a runtime,
 * checked in loom.saga_instances, loom.saga_log and the participant's
 * effects. The happy path, a failure at every step, retries with their
 * backoff, and timeouts.
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

static void
a_three_step_saga_completes_and_starting_it_twice_is_one_saga(void **state)
{
    st_fx *f = *state;
    st_env *v = f->v;
    loom_store *s = f->s;
    loom_orchestrator *o = st_orch_open(v, NULL);
    loom_orchestrator_stats st;
    loom_saga_info info;
    char buf[1024];

    assert_int_equal(st_start(s, &st_three, "happy-1", NULL), 1);
    assert_int_equal(st_start(s, &st_three, "happy-1", NULL), 0);
    st_wait_state("happy-1", "COMPLETED", WAIT_MS);

    assert_string_equal(st_log_of(buf, sizeof buf, "happy-1"),
                        "started,command:Reserve,reply:Reserve,"
                        "command:Charge,reply:Charge,command:Ship,"
                        "reply:Ship,completed");
    assert_string_equal(st_effects(buf, sizeof buf, "happy-1", "ok"),
                        "Reserve,Charge,Ship");
    /* The reply handlers' changes are in the stored data. */
    st_trail_of(buf, sizeof buf, "happy-1");
    assert_string_equal(buf, "Reserve,Charge,Ship");
    /* Each command carries the id logged for it. */
    assert_int_equal(est_ll("SELECT count(*) FROM st_effects e JOIN "
                            "loom.saga_log l ON l.message_id = e.command_id "
                            "AND l.kind = 'command' WHERE e.saga_id = "
                            "'happy-1'"),
                     3);
    assert_int_equal(loom_saga_get(s, "happy-1", &info), LOOM_OK);
    assert_int_equal(info.state, LOOM_SAGA_COMPLETED);
    assert_string_equal(info.type, "sagatest.Three");
    assert_int_equal(info.def_version, 1);
    assert_int_equal(info.step, 2);
    assert_int_equal(info.version, 4); /* the start and three replies */
    assert_true(info.started_at > 0 && info.ended_at >= info.started_at);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.saga_instances WHERE "
                            "id = 'happy-1' AND deadline IS NULL AND waiting "
                            "IS NULL"),
                     1);
    st_wait_ended(v, 1);
    st = st_stats(v, o);
    assert_int_equal(st.completed, 1);
    assert_int_equal(st.replies, 3);
    assert_int_equal(st.transitions, 3);
    /* The definitions are on record for tools. */
    assert_int_equal(est_ll("SELECT jsonb_array_length(steps) FROM "
                            "loom.saga_definitions WHERE name = "
                            "'sagatest.Three' AND version = 1"),
                     5);
    assert_string_equal(
        st_str(buf, sizeof buf,
               "SELECT steps->1->>'compensation' || ' ' || "
               "(steps->1->'retry'->>'max_attempts') FROM "
               "loom.saga_definitions WHERE name = 'sagatest.Three'"),
        "Refund 3");
    /* ... with the data's type, which `loomctl saga show` decodes by. */
    assert_string_equal(st_str(buf, sizeof buf,
                               "SELECT data_type FROM loom.saga_definitions "
                               "WHERE name = 'sagatest.Three'"),
                        "sagatest.Order");
}

/* A non-retryable failure at step i compensates exactly the completed
 * steps before i, last first, skipping those without a compensation. */
static void
a_failure_at_each_step_compensates_the_completed_steps_in_reverse(void **state)
{
    static const char *const at0[] = {"Reserve=fail:NOPE", NULL};
    static const char *const at1[] = {"Charge=fail:NOPE", NULL};
    static const char *const at2[] = {"Ship=fail:NOPE", NULL};
    static const char *const atd[] = {"D=fail:NOPE", NULL};
    st_fx *f = *state;
    st_env *v = f->v;
    loom_store *s = f->s;
    loom_orchestrator *o = st_orch_open(v, NULL);
    loom_orchestrator_stats st;
    char buf[1024];

    st_start(s, &st_three, "fail-0", at0);
    st_start(s, &st_three, "fail-1", at1);
    st_start(s, &st_three, "fail-2", at2);
    st_start(s, &st_four, "fail-d", atd);
    st_wait_state("fail-0", "COMPENSATED", WAIT_MS);
    st_wait_state("fail-1", "COMPENSATED", WAIT_MS);
    st_wait_state("fail-2", "COMPENSATED", WAIT_MS);
    st_wait_state("fail-d", "COMPENSATED", WAIT_MS);

    /* Nothing to undo at step 0; the failed step is never compensated. */
    assert_string_equal(st_effects(buf, sizeof buf, "fail-0", "ok"), "");
    assert_string_equal(st_effects(buf, sizeof buf, "fail-0", "fail"),
                        "Reserve");
    assert_string_equal(st_log_of(buf, sizeof buf, "fail-0"),
                        "started,command:Reserve,failure:Reserve,"
                        "compensated");
    assert_string_equal(st_effects(buf, sizeof buf, "fail-1", "ok"),
                        "Reserve,Unreserve");
    assert_string_equal(st_effects(buf, sizeof buf, "fail-2", "ok"),
                        "Reserve,Charge,Refund,Unreserve");
    assert_string_equal(st_log_of(buf, sizeof buf, "fail-2"),
                        "started,command:Reserve,reply:Reserve,"
                        "command:Charge,reply:Charge,command:Ship,"
                        "failure:Ship,compensate:Refund,command:Refund,"
                        "reply:Refund,compensate:Unreserve,"
                        "command:Unreserve,reply:Unreserve,compensated");
    /* B has no compensation: skipped. */
    assert_string_equal(st_effects(buf, sizeof buf, "fail-d", "ok"),
                        "A,B,C,UndoC,UndoA");
    /* on_failed ran once, before the compensations' replies. */
    st_trail_of(buf, sizeof buf, "fail-2");
    assert_string_equal(buf, "Reserve,Charge,Ship!NOPE,Refund,Unreserve");
    assert_string_equal(st_str(buf, sizeof buf,
                               "SELECT last_error FROM loom.saga_instances "
                               "WHERE id = 'fail-2'"),
                        "step Ship failed after 1 attempt(s): NOPE: the "
                        "test said so");
    st_wait_ended(v, 4); /* the stats counted the ends too */
    st = st_stats(v, o);
    assert_int_equal(st.compensated, 4);
    assert_int_equal(st.completed, 0);
}

/* How long it took to send attempt n + 1 of `step` in saga `id`, in ms,
 * up to that command's log entry from: the participant's handling of
 * attempt n (`from_log` 0), or the failure the orchestrator logged for
 * attempt n (1). The retry's deadline is the backoff after the start of
 * the failure's transaction, which begins after the participant's
 * handling: the first is never less than the backoff, whatever the load;
 * the second leaves out the reply's way back. */
static long long
gap_ms(const char *id, const char *step, int n, int from_log)
{
    return est_ll(
        "SELECT (extract(epoch FROM c.at - %s.at) * 1000)::bigint FROM "
        "loom.saga_log f JOIN st_effects e ON e.saga_id = f.saga_id AND "
        "e.step = f.step_name AND e.attempt = f.attempt JOIN loom.saga_log "
        "c ON c.saga_id = f.saga_id AND c.kind = 'command' AND c.step_name "
        "= f.step_name AND c.attempt = f.attempt + 1 WHERE f.saga_id = '%s' "
        "AND f.kind = 'failure' AND f.step_name = '%s' AND f.attempt = %d",
        from_log ? "f" : "e", id, step, n);
}

/* The backoff the orchestrator chose after attempt n of `step` failed,
 * from its retry entry ("attempt <n + 1> in <ms> ms"); 0 when none. */
static long long
backoff_ms(const char *id, const char *step, int n)
{
    return est_ll("SELECT substring(detail FROM '^attempt [0-9]+ in ([0-9]+) "
                  "ms$')::bigint FROM loom.saga_log WHERE saga_id = '%s' AND "
                  "kind = 'retry' AND step_name = '%s' AND attempt = %d",
                  id, step, n + 1);
}

static void
failed_attempts_are_retried_after_their_backoff_then_succeed(void **state)
{
    static const char *const script[] = {"Charge=failn:2:TEMP", NULL};
    st_fx *f = *state;
    st_env *v = f->v;
    loom_store *s = f->s;
    loom_orchestrator *o = st_orch_open(v, NULL);
    loom_orchestrator_stats st;
    long long b[2], lo[2], hi[2];
    char buf[1024];

    st_start(s, &st_three, "retry-1", script);
    st_wait_state("retry-1", "COMPLETED", WAIT_MS);
    assert_string_equal(
        st_str(buf, sizeof buf,
               "SELECT string_agg(attempt || outcome, ',' ORDER BY seq) FROM "
               "st_effects WHERE saga_id = 'retry-1' AND step = 'Charge'"),
        "1fail,2fail,3ok");
    assert_string_equal(st_log_of(buf, sizeof buf, "retry-1"),
                        "started,command:Reserve,reply:Reserve,"
                        "command:Charge,failure:Charge,retry:Charge,"
                        "command:Charge,failure:Charge,retry:Charge,"
                        "command:Charge,reply:Charge,command:Ship,"
                        "reply:Ship,completed");
    for (int n = 1; n <= 2; n++) {
        b[n - 1] = backoff_ms("retry-1", "Charge", n);
        lo[n - 1] = gap_ms("retry-1", "Charge", n, 0);
        hi[n - 1] = gap_ms("retry-1", "Charge", n, 1);
    }
    printf("saga_flow_test: backoffs %lld ms and %lld ms; retries %lld ms "
           "and %lld ms after the failures, %lld ms and %lld ms after the "
           "participant's handling\n",
           b[0], b[1], hi[0], hi[1], lo[0], lo[1]);
    /* Backoff 150 ms, doubling, up to 20% jitter. */
    assert_true(b[0] >= 150 && b[0] <= 180);
    assert_true(b[1] >= 300 && b[1] <= 360);
    for (int n = 0; n < 2; n++) {
        /* Not before the backoff: counted from before the failure's
         * transaction began, so no slack for the machine's load. */
        assert_true(lo[n] >= b[n]);
        /* Nor much after: not a lease (2 s) that ran out; room for a
         * commit that stalls (the 100 ms poll fits either way). */
        assert_true(hi[n] < b[n] + 1500);
    }
    st_wait_ended(v, 1); /* the stats counted the end too */
    st = st_stats(v, o);
    assert_int_equal(st.retries, 2);
    assert_int_equal(st.completed, 1);
}

/* A participant that never answers: each attempt times out, the step
 * fails for good, and it is compensated with the completed ones (its
 * outcome is unknown). */
static void
a_step_that_times_out_is_retried_then_compensated_with_the_others(void **state)
{
    static const char *const script[] = {"Charge=never", NULL};
    st_fx *f = *state;
    st_env *v = f->v;
    loom_store *s = f->s;
    loom_orchestrator *o;
    loom_orchestrator_stats st;
    char buf[1024];

    /* Only Charge: a late reply to another step would be retried. */
    st_forward_timeouts("Charge", 2000);
    o = st_orch_open(v, NULL);
    st_start(s, &st_three, "timeout-1", script);
    st_wait_state("timeout-1", "COMPENSATED", WAIT_MS);
    assert_string_equal(st_effects(buf, sizeof buf, "timeout-1", "silent"),
                        "Charge,Charge,Charge");
    assert_string_equal(st_effects(buf, sizeof buf, "timeout-1", "ok"),
                        "Reserve,Refund,Unreserve");
    assert_int_equal(est_ll("SELECT count(*) FROM loom.saga_log WHERE "
                            "saga_id = 'timeout-1' AND kind = 'timeout' AND "
                            "step_name = 'Charge'"),
                     3);
    st_trail_of(buf, sizeof buf, "timeout-1");
    assert_string_equal(buf, "Reserve,Charge!TIMEOUT,Refund,Unreserve");
    st_wait_ended(v, 1); /* the stats counted the end too */
    st = st_stats(v, o);
    assert_int_equal(st.timeouts, 3);
    assert_int_equal(st.retries, 2);
    assert_int_equal(st.compensated, 1);
}

#define T(f) cmocka_unit_test_setup_teardown(f, st_fx_setup, st_fx_teardown)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        T(a_three_step_saga_completes_and_starting_it_twice_is_one_saga),
        T(a_failure_at_each_step_compensates_the_completed_steps_in_reverse),
        T(failed_attempts_are_retried_after_their_backoff_then_succeed),
        T(a_step_that_times_out_is_retried_then_compensated_with_the_others),
    };

    return cmocka_run_group_tests_name("saga.flow", tests, st_group_setup,
                                       st_group_teardown);
}
