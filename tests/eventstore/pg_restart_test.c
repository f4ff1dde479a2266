/*
 * The runtime survives a restart of the PostgreSQL server in the middle of
 * a run: a transactional subscription follows a category while a writer
 * thread appends, the server is stopped and started again half-way, and
 * every event is still handled exactly once, without the runtime stopping.
 *
 * Everything reconnects: the runtime's LISTEN connection (backoff, then
 * every listener is woken), the subscription's connection (its step in
 * flight fails with LOOM_ECONN and is retried), and the writer, which
 * retries an append that failed with LOOM_ECONN with the same event ids
 * (the store makes that idempotent: an append that did commit is
 * reported as replayed, not written twice).
 *
 * Restarting the server needs a command: LOOM_TEST_PG_RESTART, which
 * scripts/test.sh (make test) exports for its private cluster. It must
 * keep the server's address, so that LOOM_TEST_PG_DSN stays valid.
 * Without it (LOOM_DATABASE_URL names a server the tests must not
 * restart) the test says so and skips. It is RUN_SERIAL in CTest: the
 * restart breaks every other test's connections.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "estest.h"
#include "loom/log.h"
#include "loom/subscription.h"

#define PR_EVENTS     1200 /* appended at least; the restart is at half */
#define PR_PER_APPEND 3
#define PR_STREAMS    10
#define PR_NAME       "restart"

/* What the library logged, counted (the log hook runs on the loop
 * thread; the counters are read on the same thread after the run). */
static atomic_int pr_listen_lost;     /* WARN: LISTEN connection lost */
static atomic_int pr_listen_restored; /* INFO: LISTEN connection restored */
static atomic_int pr_sub_failed;      /* WARN: a subscription step failed */
static atomic_int pr_handler_failed;  /* WARN: a handler statement failed */

static void
pr_log(void *arg, loom_log_level level, const char *msg)
{
    (void) arg;
    if (getenv("LOOM_TEST_VERBOSE") != NULL)
        fprintf(stderr, "log %s: %s\n", loom_log_level_name(level), msg);
    if (level == LOOM_LOG_WARN && strstr(msg, "for LISTEN") != NULL)
        atomic_fetch_add(&pr_listen_lost, 1);
    if (level == LOOM_LOG_INFO && strstr(msg, "LISTEN connection") != NULL &&
        strstr(msg, "restored") != NULL)
        atomic_fetch_add(&pr_listen_restored, 1);
    if (level == LOOM_LOG_WARN && strstr(msg, "\"" PR_NAME "\"") != NULL)
        atomic_fetch_add(&pr_sub_failed, 1);
    if (strstr(msg, "a statement of the handler failed") != NULL)
        atomic_fetch_add(&pr_handler_failed, 1);
}

/* ------------------------------------------------------------------ */
/* The writer and the restart, each on a thread of its own             */

struct pr_writer {
    loom_store *s;
    atomic_int *restarted; /* set once the restart command returned */
    atomic_int appended;   /* events acknowledged */
    atomic_int done;
    int retried;  /* appends retried after LOOM_ECONN */
    int replayed; /* retries that found the append committed */
    int failed;   /* 1: an append failed for good (see err) */
    char err[600];
};

/* Appends one batch, retrying while the server is away (at most 60 s). */
static int
pr_append(struct pr_writer *w, const char *stream, loom_event_data *ev)
{
    int64_t deadline = est_now_ms() + 60000;
    int attempts = 0;

    for (;;) {
        loom_append_result res;
        loom_err rc = loom_store_append(w->s, stream, LOOM_EXPECT_ANY, ev,
                                        PR_PER_APPEND, &res);
        if (rc == LOOM_OK) {
            w->replayed += res.replayed;
            return 0;
        }
        if (rc != LOOM_ECONN || est_now_ms() > deadline) {
            snprintf(w->err, sizeof w->err, "append to %s: %s: %s", stream,
                     loom_err_name(rc), loom_store_errmsg(w->s));
            return -1;
        }
        if (attempts++ == 0)
            w->retried++;
        est_sleep_ms(20);
    }
}

/* Appends until PR_EVENTS are in and the restart is over, so that some
 * appends meet the server down; from half-way on, at a gentle pace. */
static void *
pr_writer_main(void *arg)
{
    struct pr_writer *w = arg;

    for (int i = 0;
         atomic_load(&w->appended) < PR_EVENTS || !atomic_load(w->restarted);
         i++) {
        loom_event_data ev[PR_PER_APPEND];
        char stream[32];

        /* Nil ids: the first attempt writes fresh ones back into ev, so
         * a retry sends the same ids. */
        for (int j = 0; j < PR_PER_APPEND; j++)
            est_event(&ev[j], "r.E", "r", 1);
        snprintf(stream, sizeof stream, "rs-%d", i % PR_STREAMS);
        if (pr_append(w, stream, ev) != 0) {
            w->failed = 1;
            break;
        }
        if (atomic_fetch_add(&w->appended, PR_PER_APPEND) >= PR_EVENTS / 2)
            est_sleep_ms(2);
    }
    atomic_store(&w->done, 1);
    return NULL;
}

struct pr_restart {
    struct pr_writer *w;
    atomic_int *handled; /* events the handler was given so far */
    const char *cmd;
    int status;          /* of system() */
    int appended_before; /* when the restart began */
    int handled_before;
    int64_t took_ms;
    atomic_int done;
};

/* Restarts the server once half the events are appended. */
static void *
pr_restart_main(void *arg)
{
    struct pr_restart *r = arg;
    int64_t deadline = est_now_ms() + 60000, t0;

    while (atomic_load(&r->w->appended) < PR_EVENTS / 2 &&
           !atomic_load(&r->w->done) && est_now_ms() < deadline)
        est_sleep_ms(5);
    r->appended_before = atomic_load(&r->w->appended);
    r->handled_before = atomic_load(r->handled);
    t0 = est_now_ms();
    r->status = system(r->cmd);
    r->took_ms = est_now_ms() - t0;
    atomic_store(&r->done, 1);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* The subscription                                                    */

struct pr_run {
    loom_runtime *rt;
    uv_timer_t check, deadline;
    struct pr_writer *w;
    struct pr_restart *restart;
    atomic_int handled;
    PGconn *probe; /* for the checks; reconnects after the restart */
    int stopped_by_test;
    int timed_out;
};

/* One row per event, keyed by its id: applying an event twice fails the
 * transaction (and would end up parked), a lost one is a missing row. */
static loom_err
pr_handler(loom_tx *tx, const loom_event *const *events, size_t n, void *arg)
{
    struct pr_run *r = arg;

    for (size_t i = 0; i < n; i++) {
        char id[LOOM_UUID_STRLEN], ver[24];
        const char *v[3] = {id, events[i]->stream, ver};
        loom_err rc;

        loom_uuid_format(&events[i]->id, id);
        snprintf(ver, sizeof ver, "%lld", (long long) events[i]->version);
        rc = loom_tx_exec(tx,
                          "INSERT INTO restart_seen (event_id, stream, "
                          "version) VALUES ($1::uuid, $2, $3::bigint)",
                          3, v);
        if (rc != LOOM_OK)
            return rc;
    }
    atomic_fetch_add(&r->handled, (int) n);
    return LOOM_OK;
}

/* The writer done (so the restart is over), every event handled and the
 * checkpoint at the category's last event. Never fails (the server may
 * be down): a query that cannot run reads as "not yet". */
static void
pr_on_check(uv_timer_t *t)
{
    struct pr_run *r = t->data;

    if (!atomic_load(&r->w->done))
        return;
    if (r->w->failed) { /* reported after the run */
        loom_runtime_stop(r->rt);
        return;
    }
    if (est_try_ll_on(&r->probe, "SELECT count(*) FROM restart_seen") !=
        atomic_load(&r->w->appended))
        return;
    if (est_try_ll_on(&r->probe,
                      "SELECT count(*) FROM loom.checkpoints c WHERE name = "
                      "'" PR_NAME "' AND (c.tx, c.position) = (SELECT tx, "
                      "position FROM loom.events WHERE category = 'rs' ORDER "
                      "BY tx DESC, position DESC LIMIT 1)") != 1)
        return;
    r->stopped_by_test = 1;
    loom_runtime_stop(r->rt);
}

static void
pr_on_deadline(uv_timer_t *t)
{
    struct pr_run *r = t->data;

    r->timed_out = 1;
    loom_runtime_stop(r->rt);
}

static void
test_pg_restart_runtime_survives_server_restart_and_handles_each_event_once(
    void **state)
{
    const char *cmd = getenv("LOOM_TEST_PG_RESTART");
    loom_runtime_config rc = LOOM_RUNTIME_CONFIG_INIT;
    loom_subscription_config c = LOOM_SUBSCRIPTION_CONFIG_INIT;
    loom_subscription *sub = NULL;
    struct pr_writer w;
    struct pr_restart restart;
    struct pr_run r;
    pthread_t wt, rt;
    long long started, total;
    uv_loop_t *loop;
    int64_t t0 = est_now_ms();

    (void) state;
    if (cmd == NULL || cmd[0] == '\0') {
        printf("pg_restart_test: LOOM_TEST_PG_RESTART is not set (the "
               "server in LOOM_DATABASE_URL is not the tests' to restart): "
               "skipped; `make test` runs it on its own cluster\n");
        skip();
    }
    memset(&w, 0, sizeof w);
    memset(&restart, 0, sizeof restart);
    memset(&r, 0, sizeof r);
    w.s = est_store_open(NULL);
    loomt_sql_exec("CREATE TABLE restart_seen (event_id uuid PRIMARY KEY, "
                   "stream text NOT NULL, version bigint NOT NULL)");
    started = est_ll("SELECT extract(epoch FROM pg_postmaster_start_time()) "
                     "* 1000000");

    rc.conninfo = loomt_dsn();
    rc.reconnect_min_ms = 10;
    rc.reconnect_max_ms = 200;
    rc.poll_ms = 200;
    assert_int_equal(loom_runtime_open(&r.rt, &rc), LOOM_OK);
    c.name = PR_NAME;
    c.source = LOOM_SUB_CATEGORY;
    c.category = "rs";
    c.batch = 50;
    c.conninfo = loomt_dsn();
    assert_int_equal(loom_subscribe_tx(r.rt, &c, pr_handler, &r, &sub),
                     LOOM_OK);
    r.w = &w;
    w.restarted = &restart.done;
    r.restart = &restart;
    restart.w = &w;
    restart.handled = &r.handled;
    restart.cmd = cmd;
    loop = loom_runtime_loop(r.rt);
    uv_timer_init(loop, &r.check);
    uv_timer_init(loop, &r.deadline);
    r.check.data = r.deadline.data = &r;
    uv_timer_start(&r.check, pr_on_check, 50, 50);
    uv_timer_start(&r.deadline, pr_on_deadline, 120000, 0);

    assert_int_equal(pthread_create(&wt, NULL, pr_writer_main, &w), 0);
    assert_int_equal(pthread_create(&rt, NULL, pr_restart_main, &restart), 0);
    assert_int_equal(loom_runtime_run(r.rt), LOOM_OK);
    pthread_join(wt, NULL);
    pthread_join(rt, NULL);
    uv_close((uv_handle_t *) &r.check, NULL);
    uv_close((uv_handle_t *) &r.deadline, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    PQfinish(r.probe);
    loom_subscription_close(sub);
    loom_runtime_close(r.rt);

    printf("pg_restart_test: restart after %d appended / %d handled events "
           "took %lld ms; writer retried %d appends (%d had committed); "
           "%d events appended, handler given %d; %lld ms in all\n",
           restart.appended_before, restart.handled_before,
           (long long) restart.took_ms, w.retried, w.replayed,
           atomic_load(&w.appended), atomic_load(&r.handled),
           (long long) (est_now_ms() - t0));
    if (w.failed)
        fail_msg("the writer gave up: %s", w.err);
    total = atomic_load(&w.appended);
    if (restart.status != 0)
        fail_msg("the restart command failed (status %d; did the server "
                 "come back on another address?): %s",
                 restart.status, cmd);
    /* The server did restart, in the middle of the run. */
    assert_true(est_ll("SELECT extract(epoch FROM pg_postmaster_start_time()) "
                       "* 1000000") != started);
    assert_true(restart.appended_before >= PR_EVENTS / 2 &&
                restart.appended_before < total);
    assert_true(restart.handled_before > 0);
    /* The runtime ran until the test stopped it. */
    assert_int_equal(r.timed_out, 0);
    assert_int_equal(r.stopped_by_test, 1);
    /* Each connection noticed and came back. */
    assert_true(atomic_load(&pr_listen_lost) >= 1);
    assert_true(atomic_load(&pr_listen_restored) >= 1);
    assert_true(atomic_load(&pr_sub_failed) >= 1);
    assert_true(w.retried >= 1);
    /* Every event exactly once, nothing refused, nothing parked. */
    assert_int_equal(est_ll("SELECT count(*) FROM loom.events"), total);
    assert_int_equal(est_ll("SELECT count(*) FROM restart_seen"), total);
    assert_int_equal(
        est_ll("SELECT count(*) FROM loom.events e FULL JOIN restart_seen s "
               "USING (event_id) WHERE e.event_id IS NULL OR s.event_id IS "
               "NULL OR e.stream <> s.stream OR e.version <> s.version"),
        0);
    assert_int_equal(atomic_load(&pr_handler_failed), 0);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.parked"), 0);
    /* Streams have no gap and no duplicate version. */
    assert_int_equal(est_ll("SELECT count(*) FROM (SELECT stream FROM "
                            "loom.events GROUP BY stream HAVING count(*) <> "
                            "max(version) + 1) g"),
                     0);
    loom_store_close(w.s);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            test_pg_restart_runtime_survives_server_restart_and_handles_each_event_once),
    };

    loom_log_set(pr_log, NULL);
    return cmocka_run_group_tests_name("eventstore.pg_restart", tests,
                                       est_group_setup, est_group_teardown);
}
