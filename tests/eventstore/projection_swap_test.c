/*
 * The blue/green swap of a rebuild against a live runner's batch in
 * flight. loom.projection_swap() (migration 0004) promises: "a live batch
 * in flight either commits before the swap or is rolled back by it".
 *
 * Both take their locks in one order: the live batch's first statement,
 * loom.checkpoint_claim(), locks its checkpoint row before the handler's
 * statements write the model, and the swap locks the same row before it
 * renames and drops schemas. So the one that comes second waits for the
 * first to commit; neither can hold what the other needs. (Before the
 * claim existed, the batch wrote the model first and the two deadlocked;
 * a swap chosen as the victim made the rebuild fail with 40P01.)
 *
 * The test makes the interleaving certain: the handler of "s.Gate" events
 * writes the model and then takes a shared advisory lock, but only in the
 * live runner's session (its application_name), so the live batch stops
 * between its model write and its compare-and-set while the test holds
 * that lock. The rebuild is started then; once its swap waits for a lock,
 * the test lets the live batch go. Had the two locked in opposite orders,
 * the swap, the first waiter to look for a deadlock after deadlock_timeout
 * (1 s), would be the one aborted.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "estest.h"
#include "loom/log.h"
#include "loom/projection.h"

#define SW_GATE_KEY "424242"

static loom_err
sw_setup(loom_tx *tx, void *arg)
{
    (void) arg;
    return loom_tx_exec(tx,
                        "CREATE TABLE counts (stream text PRIMARY KEY, "
                        "n bigint NOT NULL)",
                        0, NULL);
}

static loom_err
sw_add(loom_tx *tx, const loom_event *ev, void *arg)
{
    const char *v[1] = {ev->stream};

    (void) arg;
    return loom_tx_exec(tx,
                        "INSERT INTO counts (stream, n) VALUES ($1, 1) "
                        "ON CONFLICT (stream) DO UPDATE SET n = counts.n + 1",
                        1, v);
}

/* Counts like s.Add, then waits for the test's advisory lock, in the
 * live runner's session only (a rebuild replays it without waiting). */
static loom_err
sw_gate(loom_tx *tx, const loom_event *ev, void *arg)
{
    loom_err rc = sw_add(tx, ev, arg);

    if (rc == LOOM_OK)
        rc = loom_tx_exec(tx,
                          "SELECT pg_advisory_xact_lock_shared(" SW_GATE_KEY
                          ") WHERE current_setting('application_name') = "
                          "'eventloom-projection:sw'",
                          0, NULL);
    return rc;
}

static const loom_projection_handler sw_handlers[] = {{"s.Add", sw_add},
                                                      {"s.Gate", sw_gate}};

static const loom_projection_def sw_def = {
    .name = "sw",
    .schema = "sw_model",
    .handlers = sw_handlers,
    .n_handlers = 2,
    .setup = sw_setup,
};

static void
sw_log(void *arg, loom_log_level level, const char *msg)
{
    (void) arg;
    if (getenv("LOOM_TEST_VERBOSE") != NULL)
        fprintf(stderr, "log %s: %s\n", loom_log_level_name(level), msg);
}

static void
sw_append(loom_store *s, const char *stream, const char *type)
{
    loom_event_data ev;

    est_event(&ev, type, "x", 1);
    assert_int_equal(
        loom_store_append(s, stream, LOOM_EXPECT_ANY, &ev, 1, NULL), LOOM_OK);
}

struct sw_rebuild {
    loom_rebuild_options opt;
    loom_err rc;
    char err[512];
    atomic_int done;
};

static void *
sw_rebuild_main(void *arg)
{
    struct sw_rebuild *j = arg;

    j->rc = loom_projection_rebuild(&sw_def, &j->opt, j->err, sizeof j->err);
    atomic_store(&j->done, 1);
    return NULL;
}

/* The phases, driven by a timer on the loop (no cmocka in there). */
struct sw_run {
    loom_runtime *rt;
    uv_timer_t check, deadline;
    PGconn *probe;
    PGconn *gate;  /* holds the advisory lock */
    loom_store *s; /* appends */
    struct sw_rebuild *job;
    pthread_t rebuild_thread;
    int phase;
    int failed; /* a step in a callback failed (see why) */
    char why[256];
    int timed_out;
};

static int
sw_exec(struct sw_run *r, PGconn *c, const char *sql)
{
    PGresult *res = PQexec(c, sql);
    int ok = PQresultStatus(res) == PGRES_TUPLES_OK ||
             PQresultStatus(res) == PGRES_COMMAND_OK;

    if (!ok) {
        snprintf(r->why, sizeof r->why, "%s: %s", sql,
                 PQresultErrorMessage(res));
        r->failed = 1;
    }
    PQclear(res);
    return ok;
}

static int
sw_caught_up(struct sw_run *r)
{
    return est_try_ll_on(&r->probe,
                         "SELECT count(*) FROM loom.checkpoints c WHERE "
                         "c.name = 'projection:sw' AND (c.tx, c.position) = "
                         "(SELECT tx, position FROM loom.events ORDER BY tx "
                         "DESC, position DESC LIMIT 1)") == 1;
}

static void
sw_on_check(uv_timer_t *t)
{
    struct sw_run *r = t->data;

    switch (r->phase) {
    case 0: /* caught up: hold the gate, send a gated event */
        if (!sw_caught_up(r))
            return;
        if (!sw_exec(r, r->gate, "SELECT pg_advisory_lock(" SW_GATE_KEY ")"))
            break;
        {
            loom_event_data ev;
            est_event(&ev, "s.Gate", "x", 1);
            if (loom_store_append(r->s, "sw-gate", LOOM_EXPECT_ANY, &ev, 1,
                                  NULL) != LOOM_OK) {
                snprintf(r->why, sizeof r->why, "append: %s",
                         loom_store_errmsg(r->s));
                r->failed = 1;
                break;
            }
        }
        r->phase = 1;
        return;
    case 1: /* the live batch wrote the model and waits at the gate */
        if (est_try_ll_on(&r->probe,
                          "SELECT count(*) FROM pg_stat_activity WHERE "
                          "application_name = 'eventloom-projection:sw' AND "
                          "wait_event = 'advisory'") != 1)
            return;
        if (pthread_create(&r->rebuild_thread, NULL, sw_rebuild_main, r->job) !=
            0) {
            snprintf(r->why, sizeof r->why, "pthread_create failed");
            r->failed = 1;
            break;
        }
        r->phase = 2;
        return;
    case 2: /* the swap waits for the live batch's table lock: open the
             * gate, so the batch goes on to its compare-and-set */
        if (atomic_load(&r->job->done)) {
            r->phase = 3; /* finished without waiting: nothing to open */
            sw_exec(r, r->gate, "SELECT pg_advisory_unlock(" SW_GATE_KEY ")");
            return;
        }
        if (est_try_ll_on(&r->probe,
                          "SELECT count(*) FROM pg_stat_activity WHERE "
                          "application_name = 'eventloom-rebuild:sw' AND "
                          "wait_event_type = 'Lock'") < 1)
            return;
        if (!sw_exec(r, r->gate, "SELECT pg_advisory_unlock(" SW_GATE_KEY ")"))
            break;
        r->phase = 3;
        return;
    default: /* the rebuild ended; the live runner caught up */
        if (!atomic_load(&r->job->done))
            return;
        if (r->job->rc == LOOM_OK && !sw_caught_up(r))
            return;
        break;
    }
    loom_runtime_stop(r->rt);
}

static void
sw_on_deadline(uv_timer_t *t)
{
    struct sw_run *r = t->data;

    r->timed_out = 1;
    loom_runtime_stop(r->rt);
}

static void
test_projection_swap_completes_while_a_live_batch_holds_the_old_model(
    void **state)
{
    est_fx *fx = *state;
    loom_runtime_config rc = LOOM_RUNTIME_CONFIG_INIT;
    loom_projection_options o = LOOM_PROJECTION_OPTIONS_INIT;
    loom_projection *p = NULL;
    struct sw_rebuild job;
    struct sw_run r;
    uv_loop_t *loop;

    memset(&r, 0, sizeof r);
    memset(&job, 0, sizeof job);
    job.opt = (loom_rebuild_options) LOOM_REBUILD_OPTIONS_INIT;
    job.opt.conninfo = loomt_dsn();
    for (int i = 0; i < 5; i++)
        sw_append(fx->s, i % 2 ? "sw-1" : "sw-2", "s.Add");
    r.s = fx->s;
    r.job = &job;
    r.gate = est_connect(NULL);
    rc.conninfo = loomt_dsn();
    rc.reconnect_min_ms = 5;
    rc.reconnect_max_ms = 50;
    rc.poll_ms = 100;
    assert_int_equal(loom_runtime_open(&r.rt, &rc), LOOM_OK);
    o.conninfo = loomt_dsn();
    assert_int_equal(loom_projection_start(r.rt, &sw_def, &o, &p), LOOM_OK);
    loop = loom_runtime_loop(r.rt);
    uv_timer_init(loop, &r.check);
    uv_timer_init(loop, &r.deadline);
    r.check.data = r.deadline.data = &r;
    uv_timer_start(&r.check, sw_on_check, 10, 10);
    uv_timer_start(&r.deadline, sw_on_deadline, 30000, 0);
    assert_int_equal(loom_runtime_run(r.rt), LOOM_OK);
    uv_close((uv_handle_t *) &r.check, NULL);
    uv_close((uv_handle_t *) &r.deadline, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    if (r.phase >= 2)
        pthread_join(r.rebuild_thread, NULL);
    PQfinish(r.probe);
    PQfinish(r.gate);
    loom_projection_close(p);
    loom_runtime_close(r.rt);

    if (r.failed)
        fail_msg("%s", r.why);
    assert_int_equal(r.timed_out, 0);
    /* The interleaving happened: the swap waited for the live batch. */
    assert_int_equal(r.phase, 3);
    printf("projection_swap_test: rebuild returned %s: %s\n",
           loom_err_name(job.rc), job.err);
    /* Not LOOM_EDB, "deadlock detected" (see the top). */
    assert_int_equal(job.rc, LOOM_OK);
    assert_int_equal(
        est_ll("SELECT generation FROM loom.projections WHERE name = 'sw'"), 2);
    assert_int_equal(
        est_ll("SELECT count(*) FROM (SELECT stream, count(*) AS n FROM "
               "loom.events GROUP BY stream) e FULL JOIN sw_model.counts m "
               "USING (stream) WHERE e.n IS DISTINCT FROM m.n"),
        0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_projection_swap_completes_while_a_live_batch_holds_the_old_model,
            est_setup, est_teardown),
    };

    loom_log_set(sw_log, NULL);
    return cmocka_run_group_tests_name("eventstore.projection_swap", tests,
                                       est_group_setup, est_group_teardown);
}
