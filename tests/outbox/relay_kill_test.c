/*
 * The relay's promise under SIGKILL: at least once, nothing lost, each
 * key in order, and duplicates only for the batches in flight.
 *
 * Two relay processes (forked children, each a runtime, a topics
 * transport and a relay: what `loomctl relay` runs) share one outbox
 * while this process writes RELAY_KILL_MESSAGES messages into it in small
 * transactions. RELAY_KILLS times, at seeded random moments, the ACTIVE
 * relay is killed with SIGKILL and a new standby is started: the other
 * one must take over. At the end every message is in the topic at least
 * once; the copies beyond the first are at most one batch per kill; for
 * every key the first copies are in outbox order; and an idempotent
 * consumer (loom/inbox_consumer.h) reading the topic applies each message
 * exactly once, dropping every copy.
 *
 * RELAY_KILL_SEED=<n> replays one run; the seed is printed.
 */
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

#include "loom/inbox_consumer.h"
#include "loom/outbox.h"
#include "tptest.h"

#define RELAY_KILL_MESSAGES 50000
#define RELAY_KILLS         20
#define RELAY_KILL_BATCH    200
#define RELAY_KILL_CHUNK    250 /* messages per writing transaction */
#define RELAY_KILL_KEYS     64

/* A relay process: never returns. */
static void
relay_child(void)
{
    loom_runtime_config rcfg = LOOM_RUNTIME_CONFIG_INIT;
    loom_relay_config cfg = LOOM_RELAY_CONFIG_INIT;
    loom_runtime *rt;
    loom_transport *t;
    loom_relay *r;
    char name[64], err[512];

    snprintf(name, sizeof name, "child %ld", (long) getpid());
    if (loom_runtime_open(&rt, &rcfg) != LOOM_OK ||
        loom_transport_open(rt, "topics://", &t, err, sizeof err) != LOOM_OK)
        _exit(3);
    cfg.transport = t;
    cfg.outbox = "kill";
    cfg.name = name;
    cfg.batch = RELAY_KILL_BATCH;
    cfg.poll_ms = 50;
    cfg.standby_ms = 100;
    cfg.cleanup_ms = 200;
    if (loom_relay_start(rt, &cfg, &r, err, sizeof err) != LOOM_OK) {
        fprintf(stderr, "relay child: %s\n", err);
        _exit(4);
    }
    loom_runtime_run(rt);
    _exit(0);
}

static pid_t
relay_spawn(void)
{
    pid_t pid;

    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        relay_child();
    return pid;
}

/* The pid of the child that leads now, or 0. */
static pid_t
relay_leader(void)
{
    return (pid_t) est_try_ll("SELECT COALESCE(substr(leader, 7)::int, 0) "
                              "FROM loom.outbox_relays WHERE outbox = 'kill' "
                              "AND leader LIKE 'child %%'");
}

static void
sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

static loom_err
kill_apply(const loom_message *m, loom_tx *tx, char *why, size_t whylen,
           void *arg)
{
    char id[LOOM_UUID_STRLEN];
    const char *values[1] = {id};

    (void) why;
    (void) whylen;
    (void) arg;
    loom_uuid_format(&m->id, id);
    return loom_tx_exec(tx, "INSERT INTO kill_effects (message_id) VALUES ($1)",
                        1, values);
}

/* Reads the whole topic through an inbox consumer; returns the copies it
 * dropped as duplicates. */
static long long
kill_consume(void)
{
    tpt_env e;
    loom_consumer_config cfg = LOOM_CONSUMER_CONFIG_INIT;
    loom_inbox_consumer_config icfg = LOOM_INBOX_CONSUMER_CONFIG_INIT;
    const char *topics[1] = {"relay.kill"};
    loom_inbox_consumer *ic = NULL;
    loom_inbox_consumer_stats st;
    uint64_t seen = 0;
    int64_t moved_ms;
    char err[512] = "";
    long long copies =
        est_ll("SELECT count(*) FROM loom.topic_messages m JOIN loom.topics t "
               "ON t.id = m.topic_id WHERE t.name = 'relay.kill'");

    tpt_open(&e, "");
    cfg.group = "kill-inbox";
    cfg.topics = topics;
    cfg.n_topics = 1;
    if (loom_inbox_consumer_open(e.t, &cfg, &icfg, kill_apply, NULL, &ic, err,
                                 sizeof err) != LOOM_OK)
        fail_msg("loom_inbox_consumer_open: %s", err);
    /* As long as the consumer gets on: on a loaded machine, with a
     * sanitizer, its durable commits take their time. */
    moved_ms = est_now_ms();
    for (;;) {
        loom_inbox_consumer_stats_get(ic, &st);
        if ((long long) (st.handled + st.duplicates) >= copies)
            break;
        if (st.handled + st.duplicates != seen) {
            seen = st.handled + st.duplicates;
            moved_ms = est_now_ms();
        } else if (est_now_ms() - moved_ms > TPT_WAIT_MS)
            break; /* stuck: the check below says how far it got */
        tpt_run(&e, NULL, NULL, 10);
    }
    loom_inbox_consumer_stats_get(ic, &st);
    loom_inbox_consumer_close(ic);
    tpt_close(&e);
    assert_int_equal(st.handled + st.duplicates, copies);
    return (long long) st.duplicates;
}

static void
relay_sigkill_at_random_points_loses_nothing(void **state)
{
    const char *env = getenv("RELAY_KILL_SEED");
    unsigned seed = env ? (unsigned) strtoul(env, NULL, 10)
                        : (unsigned) time(NULL) ^ (unsigned) getpid();
    PGconn *c = est_connect(NULL);
    pid_t kids[2];
    int written = 0, kills = 0, next_kill_at;
    int64_t moved_ms;
    long long total, distinct, bad_order, leftover, dropped, before = -1;
    char sql[1024];

    (void) state;
    printf("relay_kill_test: RELAY_KILL_SEED=%u\n", seed);
    srand(seed);
    setenv("LOOM_DATABASE_URL", loomt_dsn(), 1);
    /* No deduplication in the topic: every copy the relay sends is kept
     * and counted. */
    tpt_topic_create("relay.kill", 8, -1, -1, 0, -1);
    kids[0] = relay_spawn();
    kids[1] = relay_spawn();

    next_kill_at = RELAY_KILL_CHUNK * (1 + rand() % 8);
    while (written < RELAY_KILL_MESSAGES || kills < RELAY_KILLS) {
        if (written < RELAY_KILL_MESSAGES) {
            snprintf(sql, sizeof sql,
                     "INSERT INTO loom.outbox (outbox, topic, key, payload, "
                     "message_id) SELECT 'kill', 'relay.kill', convert_to('k' "
                     "|| (i %% %d), 'UTF8'), convert_to(i::text, 'UTF8'), "
                     "gen_random_uuid() FROM generate_series(%d, %d) AS i",
                     RELAY_KILL_KEYS, written, written + RELAY_KILL_CHUNK - 1);
            est_exec(c, sql);
            written += RELAY_KILL_CHUNK;
            sleep_ms(5 + rand() % 20);
        } else
            sleep_ms(50 + rand() % 200);
        if (kills < RELAY_KILLS &&
            (written >= next_kill_at || written >= RELAY_KILL_MESSAGES)) {
            pid_t leader = relay_leader();
            int k = leader == kids[0] ? 0 : leader == kids[1] ? 1 : -1;
            if (k < 0) {
                sleep_ms(20); /* between leaders: try again */
                continue;
            }
            kill(kids[k], SIGKILL);
            waitpid(kids[k], NULL, 0);
            kids[k] = relay_spawn();
            kills++;
            next_kill_at = written + RELAY_KILL_CHUNK * (1 + rand() % 8);
        }
    }

    /* Wait for the survivors to publish everything, as long as they get
     * on. */
    moved_ms = est_now_ms();
    for (;;) {
        leftover = est_ll("SELECT pending FROM loom.outbox_status WHERE "
                          "outbox = 'kill'");
        if (leftover == 0)
            break;
        if (leftover != before) {
            before = leftover;
            moved_ms = est_now_ms();
        } else if (est_now_ms() - moved_ms > TPT_WAIT_MS)
            break;
        sleep_ms(100);
    }
    for (int k = 0; k < 2; k++) {
        kill(kids[k], SIGTERM);
        waitpid(kids[k], NULL, 0);
    }
    total = est_ll("SELECT count(*) FROM loom.topic_messages m JOIN "
                   "loom.topics t ON t.id = m.topic_id WHERE t.name = "
                   "'relay.kill'");
    distinct = est_ll("SELECT count(DISTINCT m.id) FROM loom.topic_messages "
                      "m JOIN loom.topics t ON t.id = m.topic_id WHERE "
                      "t.name = 'relay.kill'");
    /* Per key, the first copy of each message in offset order follows
     * the outbox order. */
    bad_order = est_ll(
        "SELECT count(*) FROM (SELECT seq, lag(seq) OVER (PARTITION BY key "
        "ORDER BY first_offset) AS prev FROM (SELECT key, min(\"offset\") "
        "AS first_offset, min(convert_from(payload, 'UTF8')::int) AS seq "
        "FROM loom.topic_messages m JOIN loom.topics t ON t.id = m.topic_id "
        "WHERE t.name = 'relay.kill' GROUP BY key, m.id) f) x WHERE prev > "
        "seq");
    printf("relay_kill_test: %d messages, %d kills: %lld copies in the "
           "topic, %lld distinct, %lld duplicates (at most %d allowed)\n",
           written, kills, total, distinct, total - distinct,
           kills * RELAY_KILL_BATCH);
    assert_int_equal(leftover, 0);
    assert_int_equal(distinct, RELAY_KILL_MESSAGES);
    assert_true(total - distinct <= (long long) kills * RELAY_KILL_BATCH);
    assert_int_equal(bad_order, 0);
    assert_int_equal(kills, RELAY_KILLS);

    /* The inbox drops every copy: each message's effect exactly once. */
    est_exec(c, "CREATE TABLE kill_effects (message_id uuid NOT NULL)");
    dropped = kill_consume();
    assert_int_equal(dropped, total - distinct);
    assert_int_equal(est_ll("SELECT count(*) FROM kill_effects"),
                     RELAY_KILL_MESSAGES);
    assert_int_equal(est_ll("SELECT count(DISTINCT message_id) FROM "
                            "kill_effects"),
                     RELAY_KILL_MESSAGES);
    PQfinish(c);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            relay_sigkill_at_random_points_loses_nothing, est_setup,
            est_teardown),
    };

    tpt_debug_from_env();
    return cmocka_run_group_tests(tests, est_group_setup, est_group_teardown);
}
