/*
 * Topic streams under concurrency and crashes, against a real PostgreSQL:
 * four producers publishing at once keep each key's order in its
 * partition, with dense offsets; a member killed with SIGKILL hands its
 * partitions over within the session timeout, and with a transactional
 * handler no message is lost or applied twice across the hand-over.
 */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "tptest.h"

static void
sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- four producers ------------------------------------------------------ */

#define PRODUCERS         4
#define PER_PRODUCER      1500
#define KEYS_PER_PRODUCER 5

typedef struct producer_arg {
    int id;
    int rc; /* 0 ok */
    char dsn[512];
} producer_arg;

typedef struct pub_count {
    int done, failed, calls;
} pub_count;

static void
on_pub(loom_err rc, size_t n, void *arg)
{
    pub_count *p = arg;

    (void) n;
    p->done++;
    p->failed += rc != LOOM_OK;
}

static void *
producer_main(void *varg)
{
    producer_arg *a = varg;
    loom_runtime *rt = NULL;
    loom_transport *t = NULL;
    pub_count pc = {0, 0, 0};
    char err[256];

    a->rc = 1;
    if (loom_runtime_open(&rt, NULL) != LOOM_OK)
        return NULL;
    if (loom_transport_open(rt, "topics://?batch=50", &t, err, sizeof err) !=
        LOOM_OK) {
        loom_runtime_close(rt);
        return NULL;
    }
    /* Publish in small calls while earlier ones are in flight, so the
     * four producers' transactions interleave on the partitions. */
    for (int i = 0; i < PER_PRODUCER; i++) {
        char key[32], payload[32];
        loom_message m;

        memset(&m, 0, sizeof m);
        snprintf(key, sizeof key, "p%d-k%d", a->id, i % KEYS_PER_PRODUCER);
        snprintf(payload, sizeof payload, "%d", i / KEYS_PER_PRODUCER);
        m.topic = "concurrent";
        m.partition = LOOM_PARTITION_ANY;
        m.key = key;
        m.key_len = strlen(key);
        m.payload = payload;
        m.payload_len = strlen(payload);
        if (loom_transport_publish(t, &m, 1, on_pub, &pc) != LOOM_OK)
            break;
        pc.calls++;
        if (i % 25 == 0)
            uv_run(loom_runtime_loop(rt), UV_RUN_NOWAIT);
    }
    while (pc.done < pc.calls)
        uv_run(loom_runtime_loop(rt), UV_RUN_ONCE);
    loom_transport_close(t);
    loom_runtime_close(rt);
    a->rc = pc.calls == PER_PRODUCER && pc.failed == 0 ? 0 : 2;
    return NULL;
}

static void
four_producers_keep_key_order_in_dense_partitions(void **state)
{
    pthread_t th[PRODUCERS];
    producer_arg args[PRODUCERS];
    PGconn *c;
    PGresult *r;

    (void) state;
    loomt_sql_exec("SELECT loom.topic_create('concurrent', 3, NULL, NULL, "
                   "NULL, NULL)");
    setenv("LOOM_DATABASE_URL", loomt_dsn(), 1);
    for (int i = 0; i < PRODUCERS; i++) {
        args[i].id = i;
        assert_int_equal(pthread_create(&th[i], NULL, producer_main, &args[i]),
                         0);
    }
    for (int i = 0; i < PRODUCERS; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].rc, 0);
    }
    /* Offsets are dense per partition, and all messages are there. */
    assert_int_equal(est_ll("SELECT count(*) FROM loom.topic_messages m "
                            "JOIN loom.topics t ON t.id = m.topic_id "
                            "WHERE t.name = 'concurrent'"),
                     PRODUCERS * PER_PRODUCER);
    assert_int_equal(est_ll("SELECT count(*) FROM (SELECT partition, "
                            "max(\"offset\") - min(\"offset\") + 1 = count(*) "
                            "AS dense FROM loom.topic_messages m JOIN "
                            "loom.topics t ON t.id = m.topic_id WHERE t.name "
                            "= 'concurrent' GROUP BY partition) d WHERE NOT "
                            "dense"),
                     0);
    /* Each key stays in one partition, its sequence in offset order. */
    c = est_connect(NULL);
    r = est_query(c, "SELECT convert_from(key, 'UTF8'), count(DISTINCT "
                     "partition), bool_and(ordered) FROM (SELECT key, "
                     "partition, convert_from(payload, 'UTF8')::int = "
                     "row_number() OVER (PARTITION BY key ORDER BY "
                     "\"offset\") - 1 AS ordered FROM loom.topic_messages m "
                     "JOIN loom.topics t ON t.id = m.topic_id WHERE t.name "
                     "= 'concurrent') x GROUP BY key");
    assert_int_equal(PQntuples(r), PRODUCERS * KEYS_PER_PRODUCER);
    for (int i = 0; i < PQntuples(r); i++) {
        if (strcmp(PQgetvalue(r, i, 1), "1") != 0 ||
            strcmp(PQgetvalue(r, i, 2), "t") != 0)
            fail_msg("key %s: %s partitions, in order: %s", PQgetvalue(r, i, 0),
                     PQgetvalue(r, i, 1), PQgetvalue(r, i, 2));
    }
    PQclear(r);
    PQfinish(c);
}

/* ---- a member killed ------------------------------------------------------
 */

#define KILL_MESSAGES 3000

static loom_err
apply(loom_tx *tx, const loom_message *const *msgs, size_t n, void *arg)
{
    for (size_t i = 0; i < n; i++) {
        char part[16], off[24];
        const char *v[2] = {part, off};
        loom_err rc;
        snprintf(part, sizeof part, "%d", (int) msgs[i]->partition);
        snprintf(off, sizeof off, "%lld", (long long) msgs[i]->offset);
        rc = loom_tx_exec(
            tx,
            "INSERT INTO applied (part, off, by_child) VALUES "
            "($1::int, $2::bigint, $3::boolean)",
            3, (const char *const[]){v[0], v[1], arg ? "true" : "false"});
        if (rc != LOOM_OK)
            return rc;
    }
    /* A slow handler: the kill lands while the child holds partitions. */
    sleep_ms(5);
    return LOOM_OK;
}

static const loom_topics_consumer_config *
kill_topts(void)
{
    static loom_topics_consumer_config t = LOOM_TOPICS_CONSUMER_INIT;

    t.session_timeout_ms = 1500;
    t.heartbeat_ms = 300;
    t.poll_ms = 100;
    return &t;
}

static void
child_member(void)
{
    loom_runtime *rt;
    loom_transport *t;
    loom_consumer *c;
    const char *topics[] = {"kill"};
    loom_consumer_config cfg = LOOM_CONSUMER_CONFIG_INIT;
    char err[256];

    cfg.group = "survivors";
    cfg.topics = topics;
    cfg.n_topics = 1;
    cfg.batch = 20;
    if (loom_runtime_open(&rt, NULL) != LOOM_OK ||
        loom_transport_open(rt, "topics://", &t, err, sizeof err) != LOOM_OK ||
        loom_topics_consumer_open(t, &cfg, kill_topts(), NULL, apply,
                                  (void *) 1, &c) != LOOM_OK)
        _exit(3);
    loom_runtime_run(rt); /* until killed */
    _exit(0);
}

typedef struct kill_watch {
    loom_consumer *c;
    pid_t child;
    int killed;
    uint64_t killed_at, took_over_at;
    uint64_t last_check;
    long long rows;
    int finished;
} kill_watch;

static uint64_t
ms_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

static int
kill_progress(void *arg)
{
    kill_watch *w = arg;
    loom_topics_consumer_stats st;
    uint64_t now = ms_now();

    if (now - w->last_check < 100)
        return w->finished;
    w->last_check = now;
    w->rows = est_try_ll("SELECT count(*) FROM applied");
    if (getenv("LOOM_TEST_VERBOSE") != NULL &&
        loom_topics_consumer_stats_get(w->c, &st) == LOOM_OK)
        fprintf(stderr,
                "rows %lld child %lld parts %zu in_flight %zu "
                "delivered %llu fenced %llu gen %lld\n",
                w->rows,
                est_try_ll("SELECT count(*) FROM applied WHERE by_child"),
                st.partitions, st.in_flight, (unsigned long long) st.delivered,
                (unsigned long long) st.fenced, (long long) st.generation);
    if (!w->killed && est_try_ll("SELECT count(*) FROM applied WHERE "
                                 "by_child") >= 300) {
        kill(w->child, SIGKILL);
        w->killed = 1;
        w->killed_at = now;
    }
    if (w->killed && w->took_over_at == 0 &&
        loom_topics_consumer_stats_get(w->c, &st) == LOOM_OK &&
        st.partitions == 4)
        w->took_over_at = now;
    w->finished = w->killed && w->took_over_at != 0 && w->rows >= KILL_MESSAGES;
    return w->finished;
}

static void
killed_member_hands_over_and_nothing_is_applied_twice(void **state)
{
    tpt_env e;
    kill_watch w;
    const char *topics[] = {"kill"};
    loom_consumer_config cfg = LOOM_CONSUMER_CONFIG_INIT;
    int status = 0;

    (void) state;
    memset(&w, 0, sizeof w);
    loomt_sql_exec("SELECT loom.topic_create('kill', 4, NULL, NULL, NULL, "
                   "NULL); CREATE TABLE applied (part int, off bigint, "
                   "by_child boolean)");
    tpt_open(&e, "");
    tpt_publish(&e, "kill", KILL_MESSAGES, 40, 0);
    w.child = fork();
    assert_true(w.child >= 0);
    if (w.child == 0)
        child_member();
    /* Let the child take the whole group first. */
    while (est_try_ll("SELECT count(*) FROM applied") < 20)
        sleep_ms(10);
    cfg.group = "survivors";
    cfg.topics = topics;
    cfg.n_topics = 1;
    cfg.batch = 20;
    assert_int_equal(loom_topics_consumer_open(e.t, &cfg, kill_topts(), NULL,
                                               apply, NULL, &w.c),
                     LOOM_OK);
    if (!tpt_run(&e, kill_progress, &w, 60000)) {
        kill(w.child, SIGKILL);
        waitpid(w.child, &status, 0);
        fail_msg("killed %d, took over %d, %lld of %d applied", w.killed,
                 w.took_over_at != 0, w.rows, KILL_MESSAGES);
    }
    waitpid(w.child, &status, 0);
    assert_true(WIFSIGNALED(status));
    /* Within the session timeout plus a heartbeat, with slack for a
     * loaded machine: the survivor's loop, which sends its heartbeats,
     * also runs kill_progress()'s blocking queries, and its handler
     * commits durably. (A killed member whose session never expired
     * would keep its partitions: the run above fails after 60 s.) */
    if (w.took_over_at - w.killed_at > 1500 + 300 + 8000)
        fail_msg("took over after %llu ms",
                 (unsigned long long) (w.took_over_at - w.killed_at));
    /* Exactly once: every message applied, none twice. */
    assert_int_equal(est_ll("SELECT count(*) FROM applied"), KILL_MESSAGES);
    assert_int_equal(est_ll("SELECT count(*) FROM (SELECT DISTINCT part, off "
                            "FROM applied) d"),
                     KILL_MESSAGES);
    assert_int_equal(est_ll("SELECT sum(lag) FROM loom.topic_lag WHERE "
                            "group_name = 'survivors'"),
                     0);
    loom_consumer_close(w.c);
    tpt_close(&e);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            four_producers_keep_key_order_in_dense_partitions, est_setup,
            est_teardown),
        cmocka_unit_test_setup_teardown(
            killed_member_hands_over_and_nothing_is_applied_twice, est_setup,
            est_teardown),
    };
    return cmocka_run_group_tests(tests, est_group_setup, est_group_teardown);
}
