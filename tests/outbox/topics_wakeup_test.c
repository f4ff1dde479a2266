/*
 * A consumer that catches up arms its topic's wake-up, reads once more,
 * then sleeps until a publisher wakes it. A publish that looked for an
 * armed consumer just before the arm committed, and committed just after
 * that last read, used to wake nobody: its message waited for the poll
 * (a second by default), the tail of every end-to-end latency. Now every
 * publish transaction holds its topic's wake lock shared until it
 * commits, and the arm takes it exclusive, so each side waits for the
 * other. These tests hold one side open by hand, with every poll set to
 * a minute, and prove the other side waits and then delivers at once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "tptest.h"

#define WK_POLL_MS  60000 /* a miss would wait this long */
#define WK_WAIT_MS  10000 /* what a woken consumer may take */
#define WK_STILL_MS 500   /* no read for this long, armed: asleep */

/* The lock class the transport uses (topics_int.h, LOOM__TP_WAKE_LOCK). */
#define WK_LOCK "1819242351"

typedef struct wk_state {
    size_t delivered;
    int acked;
    loom_err rc;
} wk_state;

static void
wk_consume(loom_consumer *c, const loom_message *const *msgs, size_t n,
           void *arg)
{
    wk_state *s = arg;

    for (size_t i = 0; i < n; i++) {
        s->delivered++;
        loom_consumer_ack(c, msgs[i]);
    }
}

static int
wk_delivered(void *arg)
{
    return ((wk_state *) arg)->delivered > 0;
}

static void
wk_published(loom_err rc, size_t n, void *arg)
{
    wk_state *s = arg;

    (void) n;
    s->rc = rc;
    s->acked = 1;
}

static int
wk_acked(void *arg)
{
    return ((wk_state *) arg)->acked;
}

/* For tpt_run(): waits, looking every 20 ms, until a session waits for
 * a wake lock in `mode` (counted in this test's database only: other
 * tests share the server), or until *stop (if not NULL) is set. */
typedef struct wk_lock_wait {
    PGconn *probe;
    const char *mode;
    const int *stop;
    long long waiting;
    int64_t next_ms;
} wk_lock_wait;

static int
wk_lock_waited(void *arg)
{
    wk_lock_wait *w = arg;
    int64_t now = est_now_ms();

    if (w->waiting == 1 || (w->stop != NULL && *w->stop))
        return 1; /* tpt_run() asks once more at the end */
    if (now < w->next_ms)
        return 0;
    w->next_ms = now + 20;
    w->waiting = est_try_ll_on(
        &w->probe,
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND "
        "classid = " WK_LOCK " AND mode = '%s' AND NOT granted AND database "
        "= (SELECT oid FROM pg_database WHERE datname = current_database())",
        w->mode);
    return w->waiting == 1;
}

/* Runs e's loop until a session waits for a wake lock in `mode` (or
 * *stop is set) and returns how many do, TPT_WAIT_MS at most. */
static long long
wk_wait_for_lock(tpt_env *e, const char *mode, const int *stop)
{
    wk_lock_wait w = {NULL, mode, stop, 0, 0};

    tpt_run(e, wk_lock_waited, &w, TPT_WAIT_MS);
    PQfinish(w.probe);
    return w.waiting;
}

/* A publish still in flight (it has looked for an armed consumer and
 * found none) when a consumer catches up and arms: the arm waits for its
 * commit, so the consumer's last read finds the message at once. */
static void
a_consumer_arming_waits_for_a_publish_in_flight(void **state)
{
    tpt_env e;
    wk_state s;
    const char *topics[] = {"wake"};
    loom_consumer_config cfg = LOOM_CONSUMER_CONFIG_INIT;
    loom_topics_consumer_config topts = LOOM_TOPICS_CONSUMER_INIT;
    loom_consumer *c;
    PGconn *pub;

    (void) state;
    memset(&s, 0, sizeof s);
    tpt_topic_create("wake", 1, -1, -1, -1, -1);
    tpt_open_polling(&e, "", WK_POLL_MS);
    /* What the transport's publish transaction does, held open: the wake
     * lock shared, then loom.topic_publish(), which finds nobody armed. */
    pub = est_connect(loomt_dsn());
    est_exec(pub, "BEGIN");
    est_exec(pub, "SELECT pg_advisory_xact_lock_shared(" WK_LOCK ", id) FROM "
                  "loom.topics WHERE name = 'wake'");
    est_exec(pub, "SELECT * FROM loom.topic_publish('wake', NULL, NULL, 0, "
                  "ARRAY[gen_random_uuid()], NULL, NULL, ARRAY['x'::bytea], "
                  "NULL)");
    cfg.group = "sleepers";
    cfg.topics = topics;
    cfg.n_topics = 1;
    topts.poll_ms = WK_POLL_MS;
    assert_int_equal(
        loom_topics_consumer_open(e.t, &cfg, &topts, wk_consume, NULL, &s, &c),
        LOOM_OK);
    /* The consumer reads nothing, arms, and waits in the arm. */
    assert_int_equal(wk_wait_for_lock(&e, "ExclusiveLock", NULL), 1);
    assert_int_equal(s.delivered, 0);
    est_exec(pub, "COMMIT");
    if (!tpt_run(&e, wk_delivered, &s, WK_WAIT_MS))
        fail_msg("the message committed while the consumer armed was not "
                 "delivered within %d ms (the poll is %d ms)",
                 WK_WAIT_MS, WK_POLL_MS);
    PQfinish(pub);
    loom_consumer_close(c);
    tpt_close(&e);
}

/* A consumer arming (its transaction holds the wake lock exclusive): a
 * publish queues behind it, and then finds the channel armed. */
static void
a_publish_waits_for_a_consumer_arming(void **state)
{
    tpt_env e;
    wk_state s;
    loom_message m;
    PGconn *arm;

    (void) state;
    memset(&s, 0, sizeof s);
    tpt_topic_create("armed", 1, -1, -1, -1, -1);
    tpt_open_polling(&e, "", WK_POLL_MS);
    arm = est_connect(loomt_dsn());
    est_exec(arm, "BEGIN");
    est_exec(arm, "SELECT pg_advisory_xact_lock(" WK_LOCK ", id) FROM "
                  "loom.topics WHERE name = 'armed'");
    memset(&m, 0, sizeof m);
    m.topic = "armed";
    m.partition = LOOM_PARTITION_ANY;
    m.payload = "y";
    m.payload_len = 1;
    assert_int_equal(loom_transport_publish(e.t, &m, 1, wk_published, &s),
                     LOOM_OK);
    /* The publish waits for the arm's commit (and is not done). */
    assert_int_equal(wk_wait_for_lock(&e, "ShareLock", &s.acked), 1);
    assert_int_equal(s.acked, 0);
    est_exec(arm, "COMMIT");
    assert_true(tpt_run(&e, wk_acked, &s, WK_WAIT_MS));
    assert_int_equal(s.rc, LOOM_OK);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.topic_messages m JOIN "
                            "loom.topics t ON t.id = m.topic_id WHERE t.name "
                            "= 'armed'"),
                     1);
    PQfinish(arm);
    tpt_close(&e);
}

/* ---- reads per wake-up: a phased run on a started runtime, whose LISTEN
 * connection delivers the wake-ups (tpt_run() drives the loop without
 * starting the runtime, so its consumers only poll). */

typedef struct wk_drain {
    tpt_env e;
    wk_state s;
    loom_consumer *c;
    PGconn *pub, *probe;
    uv_timer_t tick;
    int phase;
    uint64_t phase_ms; /* uv_now() when the phase began */
    uint64_t f0, f1;   /* fetches at the phases' marks */
    /* wk_drain_asleep(): the fetches seen last, uv_now() when they
     * changed, and when the consumer was seen armed since (0: not). */
    uint64_t f_seen, still_ms, armed_ms;
    const char *failure;
} wk_drain;

static uint64_t
wk_fetches(const wk_drain *d)
{
    loom_topics_consumer_stats st;

    return loom_topics_consumer_stats_get(d->c, &st) == LOOM_OK ? st.fetches
                                                                : 0;
}

/* Twenty keyed messages (or one) in one transaction: one wake-up. On
 * the loop, so it reports instead of failing the test. */
static int
wk_drain_publish(wk_drain *d, int n)
{
    char sql[512];
    PGresult *r;
    int ok;

    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM loom.topic_publish('drain', NULL, NULL, 0, "
             "(SELECT array_agg(gen_random_uuid()) FROM generate_series(1, "
             "%d)), (SELECT array_agg(convert_to('k' || i, 'UTF8')) FROM "
             "generate_series(1, %d) i), NULL, (SELECT array_agg('x'::bytea) "
             "FROM generate_series(1, %d)), NULL)",
             n, n, n);
    r = PQexec(d->pub, sql);
    ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok)
        fprintf(stderr, "publishing: %s", PQerrorMessage(d->pub));
    PQclear(r);
    return ok;
}

static void
wk_drain_end(wk_drain *d, const char *failure)
{
    d->failure = failure;
    d->f1 = wk_fetches(d);
    uv_timer_stop(&d->tick);
    uv_close((uv_handle_t *) &d->tick, NULL);
    loom_consumer_close(d->c);
    d->c = NULL;
    loom_runtime_stop(d->e.rt);
}

static void
wk_drain_next(wk_drain *d, uint64_t now)
{
    d->phase++;
    d->phase_ms = now;
    d->f_seen = wk_fetches(d);
    d->still_ms = now;
    d->armed_ms = 0;
}

/* Whether the consumer sleeps: its wake-up is armed (the row a publish
 * takes to wake it is there), and it has not read since, for
 * WK_STILL_MS (it reads once more right after arming). On the loop, so
 * it reports instead of failing the test. */
static int
wk_drain_asleep(wk_drain *d, uint64_t now)
{
    uint64_t f = wk_fetches(d);

    if (f != d->f_seen) {
        d->f_seen = f;
        d->still_ms = now;
        d->armed_ms = 0;
        return 0;
    }
    if (d->armed_ms == 0) {
        if (est_try_ll_on(&d->probe,
                          "SELECT count(*) FROM loom.wakeups WHERE channel "
                          "= (SELECT 'loom_topic_' || id FROM loom.topics "
                          "WHERE name = 'drain')") != 1)
            return 0;
        d->armed_ms = now;
    }
    return now - d->still_ms >= WK_STILL_MS && now - d->armed_ms >= WK_STILL_MS;
}

static void
wk_drain_tick(uv_timer_t *t)
{
    wk_drain *d = t->data;
    uint64_t now = uv_now(t->loop), in = now - d->phase_ms;

    switch (d->phase) {
    case 0: /* joined, read, armed, asleep */
        if (wk_drain_asleep(d, now)) {
            d->f0 = wk_fetches(d);
            wk_drain_next(d, now);
        } else if (in >= TPT_WAIT_MS) {
            wk_drain_end(d, "the consumer did not join, arm and sleep "
                            "within the wait");
            return;
        }
        break;
    case 1: /* asleep: no reads */
        if (in >= 500) {
            if (wk_fetches(d) != d->f0) {
                wk_drain_end(d, "an idle consumer read while nothing was "
                                "published");
                return;
            }
            if (!wk_drain_publish(d, 20)) {
                wk_drain_end(d, "publishing twenty messages failed");
                return;
            }
            wk_drain_next(d, now);
        }
        break;
    case 2: /* woken: the twenty delivered */
        if (d->s.delivered >= 20) {
            wk_drain_next(d, now);
        } else if (in >= WK_WAIT_MS) {
            wk_drain_end(d, "twenty messages published, not all delivered "
                            "within the wait (the poll is a minute)");
            return;
        }
        break;
    case 3: /* settled, armed, asleep again: two reads in all */
        if (!wk_drain_asleep(d, now)) {
            if (in >= WK_WAIT_MS) {
                wk_drain_end(d, "the consumer did not arm and sleep again "
                                "within the wait");
                return;
            }
        } else {
            d->f1 = wk_fetches(d);
            if (d->f1 - d->f0 != 2) {
                wk_drain_end(d, "the wake-up took other than 2 reads (the "
                                "one that drained the partitions and the "
                                "one after arming)");
                return;
            }
            if (!wk_drain_publish(d, 1)) {
                wk_drain_end(d, "publishing one more message failed");
                return;
            }
            wk_drain_next(d, now);
        }
        break;
    case 4: /* the next publish wakes it as well */
        if (d->s.delivered >= 21) {
            wk_drain_end(d, NULL);
        } else if (in >= WK_WAIT_MS) {
            wk_drain_end(d, "the 21st message was not delivered within the "
                            "wait (the poll is a minute)");
        }
        break;
    }
}

/* A consumer whose read drains its partitions arms at once and reads once
 * more, then sleeps: two reads per wake-up, and none while nothing is
 * published. It used to read again after each batch, and twice after
 * arming, before it slept (4 reads for this wake-up). */
static void
a_drained_consumer_arms_at_once_and_reads_once_more(void **state)
{
    wk_drain d;
    const char *topics[] = {"drain"};
    loom_consumer_config cfg = LOOM_CONSUMER_CONFIG_INIT;
    loom_topics_consumer_config topts = LOOM_TOPICS_CONSUMER_INIT;

    (void) state;
    memset(&d, 0, sizeof d);
    tpt_topic_create("drain", 4, -1, -1, -1, -1);
    tpt_open_polling(&d.e, "", WK_POLL_MS);
    cfg.group = "drainers";
    cfg.topics = topics;
    cfg.n_topics = 1;
    topts.poll_ms = WK_POLL_MS;
    assert_int_equal(loom_topics_consumer_open(d.e.t, &cfg, &topts, wk_consume,
                                               NULL, &d.s, &d.c),
                     LOOM_OK);
    d.pub = est_connect(loomt_dsn());
    uv_timer_init(loom_runtime_loop(d.e.rt), &d.tick);
    d.tick.data = &d;
    d.phase_ms = uv_now(loom_runtime_loop(d.e.rt));
    uv_timer_start(&d.tick, wk_drain_tick, 5, 5);
    assert_int_equal(loom_runtime_run(d.e.rt), LOOM_OK);
    PQfinish(d.pub);
    PQfinish(d.probe);
    tpt_close(&d.e); /* before any failure, which leaves the test */
    if (d.failure != NULL)
        fail_msg("%s: phase %d, %zu delivered, %llu reads since asleep",
                 d.failure, d.phase, d.s.delivered,
                 (unsigned long long) (d.f1 - d.f0));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            a_consumer_arming_waits_for_a_publish_in_flight, est_setup,
            est_teardown),
        cmocka_unit_test_setup_teardown(a_publish_waits_for_a_consumer_arming,
                                        est_setup, est_teardown),
        cmocka_unit_test_setup_teardown(
            a_drained_consumer_arms_at_once_and_reads_once_more, est_setup,
            est_teardown),
    };
    return cmocka_run_group_tests(tests, est_group_setup, est_group_teardown);
}
