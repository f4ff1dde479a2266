/*
 * The saga engine under SIGKILL: 1,000 sagas while the orchestrator and
 * each participant are killed at random moments, again and again; every
 * saga ends COMPLETED or COMPENSATED, and each participant's effect
 * happens exactly once.
 *
 * The saga is sagakill.Checkout (proto/sagakill/checkout.proto, compiled
 * by loom_generate()): Reserve (kill.inventory, compensated by Release)
 * -> Charge (kill.payments, compensated by Refund) -> Ship
 * (kill.shipping). Every 7th saga fails for good, alternately at Charge
 * and at Ship, with a non-retryable code, so compensations run too
 * (saga_kill.h; the handlers are in saga_kill_handlers.c). Timeouts are
 * 60 s: no kill may pass for a timeout, so every step runs exactly once.
 *
 * Processes: this executable re-executes itself (--saga-kill-role) as
 * four children, each a runtime, a topics:// transport and an outbox
 * relay on the default outbox (one leads, the others stand by), plus
 * either the orchestrator or one participant. The parent starts the
 * sagas in batches from a store of its own (loom_saga_start_tx(), with
 * the saga's plan in the same transaction) while it kills a child with
 * SIGKILL every so often and starts it again after a short random delay;
 * each role is killed the same number of times, in a shuffled order. The
 * topics keep every copy a relay publishes twice (no deduplication
 * window): the inboxes must drop them.
 *
 * At the end, with every child running, it waits for every saga to be
 * final, then checks the database: each saga's state and its log entry
 * by entry; one kill_effects row per step and compensation that had to
 * run and none other; each event once, on the right stream, versions
 * dense and in commit order; the shared SKU aggregates' counts; the
 * saga data the reply and failure handlers wrote; one orchestrator inbox
 * mark per reply; no dead letter anywhere.
 *
 * The kill times, batch sizes and restart delays come from a seed it
 * prints; SAGA_KILL_SEED=<n> replays them (the machine's timing still
 * varies). LOOM_TEST_VERBOSE=1 prints the children's warnings.
 *
 * The parent keeps no libpq connection or runtime that a child could
 * use: children exec() at once (libpq's sockets are close-on-exec), and
 * die with the parent (PR_SET_PDEATHSIG). Children never call cmocka.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>
#include <uv.h>

#include "loom/log.h"
#include "loom/outbox.h"
#include "saga_kill.h"
#include "tptest.h"

#define KILL_SAGAS      1000
#define KILL_KILLS      24     /* a multiple of KILL_CHILDREN */
#define KILL_PARTITIONS 4      /* of every topic */
#define KILL_FINAL_MS   120000 /* the most the sagas may take to end */
#define KILL_ROLE_FLAG  "--saga-kill-role"
#define KILL_ID_FMT     "kill-%04d"
#define KILL_REPLIES    "sagakill.Checkout.replies"

/* The children's roles: the orchestrator and the participants' topics. */
enum { KILL_ORCH, KILL_INVENTORY, KILL_PAYMENTS, KILL_SHIPPING, KILL_CHILDREN };
static const char *const kill_roles[KILL_CHILDREN] = {
    "orchestrator", "kill.inventory", "kill.payments", "kill.shipping"};

/* Exit statuses of a child that stopped by itself. */
enum {
    KILL_EXIT_OPEN = 2,  /* runtime or transport */
    KILL_EXIT_RELAY = 3, /* loom_relay_start() */
    KILL_EXIT_ROLE = 4,  /* orchestrator or participant */
    KILL_EXIT_RAN = 5,   /* loom_runtime_run() returned */
    KILL_EXIT_EXEC = 6,  /* execv() failed */
    KILL_EXIT_USAGE = 7  /* unknown role */
};

/* ---- a child: one role, until killed ------------------------------------- */

static void
child_log(void *arg, loom_log_level level, const char *message)
{
    if (level == LOOM_LOG_ERROR || getenv("LOOM_TEST_VERBOSE") != NULL) {
        fprintf(stderr, "%lld [%s %ld] %s: %s\n",
                (long long) (est_now_ms() % 1000000), (const char *) arg,
                (long) getpid(), loom_log_level_name(level), message);
    }
}

static loom_err
child_orchestrator(loom_runtime *rt, loom_transport *t, char *err,
                   size_t errlen)
{
    static const loom_saga_def *const defs[] = {&sagakill__checkout__saga};
    loom_orchestrator_config cfg = LOOM_ORCHESTRATOR_CONFIG_INIT;
    loom_orchestrator *o;

    cfg.transport = t;
    cfg.defs = defs;
    cfg.n_defs = 1;
    cfg.poll_ms = 200;
    cfg.lease_ms = 2000;
    return loom_orchestrator_open(rt, &cfg, &o, err, errlen);
}

static loom_err
child_participant(loom_runtime *rt, loom_transport *t, int role, char *err,
                  size_t errlen)
{
    static const loom_participant_def *const defs[] = {
        NULL, &sagakill__kill_inventory__participant,
        &sagakill__kill_payments__participant,
        &sagakill__kill_shipping__participant};
    loom_participant_config cfg = LOOM_PARTICIPANT_CONFIG_INIT;
    loom_participant *p;

    cfg.transport = t;
    cfg.defs = &defs[role];
    cfg.n_defs = 1;
    return loom_participant_open(rt, &cfg, &p, err, errlen);
}

/* What a child runs (after exec): never returns. */
static void
child_main(const char *name)
{
    loom_runtime_config rcfg = LOOM_RUNTIME_CONFIG_INIT;
    loom_relay_config cfg = LOOM_RELAY_CONFIG_INIT;
    loom_runtime *rt;
    loom_transport *t;
    loom_relay *r;
    char relay[64], err[512] = "";
    int role = 0;
    loom_err rc;

    while (role < KILL_CHILDREN && strcmp(kill_roles[role], name) != 0) {
        role++;
    }
    if (role == KILL_CHILDREN) {
        _exit(KILL_EXIT_USAGE);
    }
    loom_log_set(child_log, (void *) kill_roles[role]);
    if (loom_runtime_open(&rt, &rcfg) != LOOM_OK ||
        loom_transport_open(rt, "topics://", &t, err, sizeof err) != LOOM_OK) {
        fprintf(stderr, "saga_kill %s: %s\n", name, err);
        _exit(KILL_EXIT_OPEN);
    }
    snprintf(relay, sizeof relay, "%s pid %ld", name, (long) getpid());
    cfg.transport = t;
    cfg.name = relay;
    cfg.poll_ms = 50;
    cfg.standby_ms = 100;
    cfg.backoff_ms = 20;
    cfg.backoff_max_ms = 500;
    cfg.cleanup_ms = 200;
    if (loom_relay_start(rt, &cfg, &r, err, sizeof err) != LOOM_OK) {
        fprintf(stderr, "saga_kill %s: relay: %s\n", name, err);
        _exit(KILL_EXIT_RELAY);
    }
    rc = role == KILL_ORCH ? child_orchestrator(rt, t, err, sizeof err)
                           : child_participant(rt, t, role, err, sizeof err);
    if (rc != LOOM_OK) {
        fprintf(stderr, "saga_kill %s: %s: %s\n", name, loom_err_name(rc), err);
        _exit(KILL_EXIT_ROLE);
    }
    loom_runtime_run(rt);
    _exit(KILL_EXIT_RAN);
}

/* ---- the parent: the children -------------------------------------------- */

typedef struct kill_child {
    pid_t pid;          /* 0 while down */
    int64_t restart_at; /* when down: est_now_ms() to start it again */
    int kills;
    int exits; /* stopped by themselves: a failure */
} kill_child;

static kill_child kids[KILL_CHILDREN];
static char kill_self[4096]; /* this executable, for exec */

static void
kill_spawn(int role)
{
    pid_t parent = getpid();
    pid_t pid;

    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* Die with the parent, even if it fails an assertion first. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) {
            _exit(KILL_EXIT_EXEC);
        }
        execl(kill_self, kill_self, KILL_ROLE_FLAG, kill_roles[role],
              (char *) NULL);
        _exit(KILL_EXIT_EXEC);
    }
    kids[role].pid = pid;
}

/* Notices children that stopped by themselves: counted (the test fails)
 * and started again, so the run goes on and says more. */
static void
kill_reap(void)
{
    for (int k = 0; k < KILL_CHILDREN; k++) {
        int status;
        if (kids[k].pid > 0 && waitpid(kids[k].pid, &status, WNOHANG) > 0) {
            fprintf(stderr,
                    "saga_kill_test: %s (pid %ld) stopped by itself: %s %d\n",
                    kill_roles[k], (long) kids[k].pid,
                    WIFEXITED(status) ? "exit" : "signal",
                    WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
            kids[k].exits++;
            kill_spawn(k);
        }
    }
}

static void
kill_child_now(int k)
{
    kill(kids[k].pid, SIGKILL);
    while (waitpid(kids[k].pid, NULL, 0) < 0 && errno == EINTR) {
    }
    kids[k].pid = 0;
    kids[k].kills++;
}

/* Starts the children that are down and due. */
static void
kill_restart_due(int64_t now)
{
    for (int k = 0; k < KILL_CHILDREN; k++) {
        if (kids[k].pid == 0 && kids[k].restart_at <= now) {
            kill_spawn(k);
        }
    }
}

static void
kill_stop_all(void)
{
    for (int k = 0; k < KILL_CHILDREN; k++) {
        if (kids[k].pid > 0) {
            kill(kids[k].pid, SIGKILL);
            waitpid(kids[k].pid, NULL, 0);
            kids[k].pid = 0;
        }
    }
}

/* ---- the parent: the plan and the sagas ---------------------------------- */

/* xorshift64*: the run's own random numbers, replayed from the seed. */
static uint64_t kill_rng;

static unsigned
kill_rand(unsigned below)
{
    kill_rng ^= kill_rng >> 12;
    kill_rng ^= kill_rng << 25;
    kill_rng ^= kill_rng >> 27;
    return (unsigned) ((kill_rng * 2685821657736338717ull) >> 33) % below;
}

static void
kill_schema(void)
{
    loomt_sql_exec(
        "CREATE TABLE kill_effects (seq bigserial PRIMARY KEY, saga_id text "
        "NOT NULL, step text NOT NULL, outcome text NOT NULL, pid integer "
        "NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp());"
        "CREATE TABLE kill_plan (saga_id text PRIMARY KEY, sku integer NOT "
        "NULL, fail_at integer NOT NULL);"
        /* What each plan must leave: its final state and log ... */
        "CREATE TABLE kill_outcome (fail_at integer PRIMARY KEY, state text "
        "NOT NULL, log text NOT NULL);"
        "INSERT INTO kill_outcome VALUES "
        "(0, 'COMPLETED', 'started,command:Reserve,reply:Reserve,"
        "command:Charge,reply:Charge,command:Ship,reply:Ship,completed'),"
        "(2, 'COMPENSATED', 'started,command:Reserve,reply:Reserve,"
        "command:Charge,failure:Charge,compensate:Release,command:Release,"
        "reply:Release,compensated'),"
        "(3, 'COMPENSATED', 'started,command:Reserve,reply:Reserve,"
        "command:Charge,reply:Charge,command:Ship,failure:Ship,"
        "compensate:Refund,command:Refund,reply:Refund,compensate:Release,"
        "command:Release,reply:Release,compensated');"
        /* ... and the effects of its steps, each exactly once. */
        "CREATE VIEW kill_expected AS SELECT p.saga_id, e.step, e.outcome "
        "FROM kill_plan p JOIN (VALUES (0, 'Reserve', 'ok'), (0, 'Charge', "
        "'ok'), (0, 'Ship', 'ok'), (2, 'Reserve', 'ok'), (2, 'Charge', "
        "'failed'), (2, 'Release', 'ok'), (3, 'Reserve', 'ok'), (3, "
        "'Charge', 'ok'), (3, 'Ship', 'failed'), (3, 'Refund', 'ok'), (3, "
        "'Release', 'ok')) AS e(fail_at, step, outcome) ON e.fail_at = "
        "p.fail_at");
    for (int k = KILL_INVENTORY; k < KILL_CHILDREN; k++) {
        tpt_topic_create(kill_roles[k], KILL_PARTITIONS, -1, -1, 0, -1);
    }
    tpt_topic_create(KILL_REPLIES, KILL_PARTITIONS, -1, -1, 0, -1);
}

/* Starts sagas first .. first + n - 1 with their plan rows, in one
 * transaction. */
static void
kill_start(loom_store *s, loom_tx *tx, int first, int n)
{
    loom_tx_reset(tx);
    for (int i = first; i < first + n; i++) {
        Sagakill__Order o = SAGAKILL__ORDER__INIT;
        char id[32], sku[16], fail_at[16];
        const char *values[3] = {id, sku, fail_at};
        loom_err rc;

        snprintf(id, sizeof id, KILL_ID_FMT, i);
        snprintf(sku, sizeof sku, "%d", kill_sku(i));
        snprintf(fail_at, sizeof fail_at, "%d", kill_fail_at(i));
        o.id = id;
        o.sku = kill_sku(i);
        o.amount = 100 + i;
        o.fail_at = kill_fail_at(i);
        rc = loom_saga_start_tx(tx, &sagakill__checkout__saga, id, &o.base,
                                NULL);
        if (rc == LOOM_OK) {
            rc = loom_tx_exec(tx,
                              "INSERT INTO kill_plan (saga_id, sku, fail_at) "
                              "VALUES ($1, $2::integer, $3::integer)",
                              3, values);
        }
        if (rc != LOOM_OK) {
            fail_msg("starting %s: %s: %s", id, loom_err_name(rc),
                     loom_tx_errmsg(tx));
        }
    }
    if (loom_store_commit(s, tx) != LOOM_OK) {
        fail_msg("committing sagas %d..%d: %s", first, first + n - 1,
                 loom_store_errmsg(s));
    }
}

/* The run: sagas started in random batches; after every one or two
 * batches a kill, 0 to 300 ms later, so that it lands while the batch's
 * sagas are in flight (in a relay's publish, a participant's
 * transaction, the orchestrator's, or between a commit and its
 * acknowledgement); the victim is started again 0 to 300 ms after. The
 * roles come in a shuffled order, each KILL_KILLS / KILL_CHILDREN
 * times. Returns when every saga is started and every kill done. */
static void
kill_run(loom_store *s)
{
    int order[KILL_KILLS];
    int started = 0, kills = 0, batches = 0, kill_after = 1;
    int64_t next_start = est_now_ms(), next_kill = INT64_MAX;
    loom_tx *tx;

    assert_int_equal(loom_tx_new(&tx), LOOM_OK);
    for (int i = 0; i < KILL_KILLS; i++) {
        order[i] = i % KILL_CHILDREN;
    }
    for (int i = KILL_KILLS - 1; i > 0; i--) {
        int j = (int) kill_rand((unsigned) i + 1), x = order[i];
        order[i] = order[j];
        order[j] = x;
    }
    while (started < KILL_SAGAS || kills < KILL_KILLS) {
        int64_t now = est_now_ms();

        kill_reap();
        kill_restart_due(now);
        if (started < KILL_SAGAS && now >= next_start) {
            int n = 10 + (int) kill_rand(31);
            if (n > KILL_SAGAS - started) {
                n = KILL_SAGAS - started;
            }
            kill_start(s, tx, started, n);
            started += n;
            batches++;
            next_start = now + 200 + kill_rand(400);
        }
        if (kills < KILL_KILLS && next_kill == INT64_MAX) {
            if (started < KILL_SAGAS && batches >= kill_after) {
                next_kill = now + kill_rand(300);
                kill_after = batches + 1 + (int) kill_rand(2);
            } else if (started == KILL_SAGAS) {
                /* Any left while the backlog drains. */
                next_kill = now + 300 + kill_rand(600);
            }
        }
        if (now >= next_kill && kids[order[kills]].pid > 0) {
            int k = order[kills++];
            kill_child_now(k);
            kids[k].restart_at = now + kill_rand(300);
            next_kill = INT64_MAX;
        }
        est_sleep_ms(5);
    }
    loom_tx_free(tx);
}

/* Waits, with every child running, until every saga is final. */
static long long
kill_wait_final(void)
{
    int64_t end = est_now_ms() + KILL_FINAL_MS;
    PGconn *c = NULL;
    long long final = -1;

    while (est_now_ms() < end) {
        kill_reap();
        kill_restart_due(INT64_MAX);
        final = est_try_ll_on(&c, "SELECT count(*) FROM loom.saga_instances "
                                  "WHERE state IN ('COMPLETED', "
                                  "'COMPENSATED', 'COMPENSATION_FAILED', "
                                  "'ABORTED')");
        if (final == KILL_SAGAS) {
            break;
        }
        est_sleep_ms(50);
    }
    PQfinish(c);
    return final;
}

/* ---- the checks ---------------------------------------------------------- */

static int kill_problems;

/* Counts what `count_sql` returns as problems and, when there are any,
 * prints `what` and the first rows of `rows_sql`. */
static void
kill_expect_none(const char *what, const char *count_sql, const char *rows_sql)
{
    long long n = est_ll("%s", count_sql);
    PGconn *c;
    PGresult *r;

    if (n == 0) {
        return;
    }
    kill_problems++;
    fprintf(stderr, "saga_kill_test: %lld %s\n", n, what);
    if (rows_sql == NULL) {
        return;
    }
    c = est_connect(NULL);
    r = est_query(c, rows_sql);
    for (int i = 0; i < PQntuples(r) && i < 10; i++) {
        fprintf(stderr, "   ");
        for (int j = 0; j < PQnfields(r); j++) {
            fprintf(stderr, " %s=%s", PQfname(r, j),
                    PQgetisnull(r, i, j) ? "NULL" : PQgetvalue(r, i, j));
        }
        fprintf(stderr, "\n");
    }
    PQclear(r);
    PQfinish(c);
}

static void kill_problem(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

static void
kill_problem(const char *fmt, ...)
{
    va_list ap;

    if (kill_problems++ < 20) {
        fprintf(stderr, "saga_kill_test: ");
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fprintf(stderr, "\n");
    }
}

/* States, logs, deadlines, and one orchestrator inbox mark per reply. */
static void
kill_check_sagas(void)
{
    kill_expect_none(
        "sagas not in the state their plan calls for",
        "SELECT count(*) FROM kill_plan p JOIN kill_outcome o USING "
        "(fail_at) LEFT JOIN loom.saga_instances i ON i.id = p.saga_id "
        "WHERE i.state IS DISTINCT FROM o.state",
        "SELECT p.saga_id, p.fail_at, i.state, i.step, i.attempt, i.waiting, "
        "i.deadline, i.last_error FROM kill_plan p JOIN kill_outcome o USING "
        "(fail_at) LEFT JOIN loom.saga_instances i ON i.id = p.saga_id WHERE "
        "i.state IS DISTINCT FROM o.state ORDER BY p.saga_id");
    kill_expect_none("sagas not in the plan",
                     "SELECT count(*) FROM loom.saga_instances i WHERE NOT "
                     "EXISTS (SELECT 1 FROM kill_plan p WHERE p.saga_id = "
                     "i.id)",
                     "SELECT id, state FROM loom.saga_instances i WHERE NOT "
                     "EXISTS (SELECT 1 FROM kill_plan p WHERE p.saga_id = "
                     "i.id)");
    kill_expect_none("final sagas still waiting for something",
                     "SELECT count(*) FROM loom.saga_instances WHERE "
                     "deadline IS NOT NULL OR waiting IS NOT NULL",
                     "SELECT id, state, waiting, deadline FROM "
                     "loom.saga_instances WHERE deadline IS NOT NULL OR "
                     "waiting IS NOT NULL");
    /* Entry by entry: one 'completed' or 'compensated', no timeout, no
     * retry, no late or repeated reply. */
    kill_expect_none(
        "saga logs that differ from the plan's",
        "SELECT count(*) FROM kill_plan p JOIN kill_outcome o USING "
        "(fail_at) LEFT JOIN (SELECT saga_id, string_agg(kind || "
        "coalesce(':' || step_name, ''), ',' ORDER BY id) AS log FROM "
        "loom.saga_log GROUP BY saga_id) l USING (saga_id) WHERE l.log IS "
        "DISTINCT FROM o.log",
        "SELECT p.saga_id, p.fail_at, l.log FROM kill_plan p JOIN "
        "kill_outcome o USING (fail_at) LEFT JOIN (SELECT saga_id, "
        "string_agg(kind || coalesce(':' || step_name, ''), ',' ORDER BY "
        "id) AS log FROM loom.saga_log GROUP BY saga_id) l USING (saga_id) "
        "WHERE l.log IS DISTINCT FROM o.log ORDER BY p.saga_id");
    kill_expect_none("saga log entries of no planned saga",
                     "SELECT count(*) FROM loom.saga_log l WHERE NOT EXISTS "
                     "(SELECT 1 FROM kill_plan p WHERE p.saga_id = "
                     "l.saga_id)",
                     NULL);
    /* Every reply (success or failure) processed once: Reserve, Charge
     * and Ship, or Reserve, Charge and Release, or all five. */
    kill_expect_none(
        "orchestrator inbox marks more or fewer than the replies",
        "SELECT abs((SELECT count(*) FROM loom.inbox WHERE consumer = "
        "'saga:loom-saga') - (SELECT sum(CASE fail_at WHEN 3 THEN 5 ELSE 3 "
        "END) FROM kill_plan))",
        NULL);
}

/* One kill_effects row per (saga, step, outcome) the plan calls for. */
static void
kill_check_effects(void)
{
    kill_expect_none(
        "effects that happened more than once",
        "SELECT count(*) FROM (SELECT 1 FROM kill_effects GROUP BY saga_id, "
        "step, outcome HAVING count(*) > 1) d",
        "SELECT saga_id, step, outcome, count(*), array_agg(pid ORDER BY "
        "seq) AS pids FROM kill_effects GROUP BY saga_id, step, outcome "
        "HAVING count(*) > 1 ORDER BY saga_id");
    kill_expect_none(
        "effects of steps that must not run",
        "SELECT count(*) FROM kill_effects e WHERE NOT EXISTS (SELECT 1 FROM "
        "kill_expected x WHERE x.saga_id = e.saga_id AND x.step = e.step AND "
        "x.outcome = e.outcome)",
        "SELECT saga_id, step, outcome, pid FROM kill_effects e WHERE NOT "
        "EXISTS (SELECT 1 FROM kill_expected x WHERE x.saga_id = e.saga_id "
        "AND x.step = e.step AND x.outcome = e.outcome) ORDER BY seq");
    kill_expect_none(
        "effects that never happened",
        "SELECT count(*) FROM kill_expected x WHERE NOT EXISTS (SELECT 1 "
        "FROM kill_effects e WHERE x.saga_id = e.saga_id AND x.step = e.step "
        "AND x.outcome = e.outcome)",
        "SELECT saga_id, step, outcome FROM kill_expected x WHERE NOT EXISTS "
        "(SELECT 1 FROM kill_effects e WHERE x.saga_id = e.saga_id AND "
        "x.step = e.step AND x.outcome = e.outcome) ORDER BY saga_id");
}

/* The event types, in the order of kill_events_want. */
static const ProtobufCMessageDescriptor *const kill_ev[] = {
    &sagakill__stock_reserved__descriptor,
    &sagakill__stock_released__descriptor,
    &sagakill__card_charged__descriptor,
    &sagakill__card_declined__descriptor,
    &sagakill__card_refunded__descriptor,
    &sagakill__order_shipped__descriptor};
#define KILL_EV_TYPES 6

/* The events each plan leaves, per type, and its per-saga streams'
 * lengths (payment-<id>, shipment-<id>). */
static int
kill_events_want(int fail_at, int type)
{
    static const int want[4][KILL_EV_TYPES] = {
        {1, 0, 1, 0, 0, 1}, {0}, {1, 1, 0, 1, 0, 0}, {1, 1, 1, 0, 1, 0}};
    return want[fail_at][type];
}

/* The order id every event type carries in field 1. */
static const char *
kill_ev_order(int type, const ProtobufCMessage *m)
{
    switch (type) {
    case 0:
        return ((const Sagakill__StockReserved *) m)->order_id;
    case 1:
        return ((const Sagakill__StockReleased *) m)->order_id;
    case 2:
        return ((const Sagakill__CardCharged *) m)->order_id;
    case 3:
        return ((const Sagakill__CardDeclined *) m)->order_id;
    case 4:
        return ((const Sagakill__CardRefunded *) m)->order_id;
    default:
        return ((const Sagakill__OrderShipped *) m)->order_id;
    }
}

typedef struct kill_tally {
    int n[KILL_SAGAS][KILL_EV_TYPES];
    int64_t sku_next[KILL_SKUS];  /* the next version expected, per SKU */
    int64_t pay_next[KILL_SAGAS]; /* ... per payment-<id> */
    int64_t ship_next[KILL_SAGAS];
} kill_tally;

/* One event: its type, its saga (correlation id and payload agree), its
 * stream, its version in commit order. */
static void
kill_tally_event(kill_tally *t, const loom_event *ev)
{
    char stream[64];
    int type = 0, i = -1;
    int64_t *next;
    ProtobufCMessage *m;

    while (type < KILL_EV_TYPES && strcmp(kill_ev[type]->name, ev->type) != 0) {
        type++;
    }
    if (type == KILL_EV_TYPES) {
        kill_problem("event %s of an unknown type %s", ev->stream, ev->type);
        return;
    }
    if (ev->correlation_id == NULL ||
        sscanf(ev->correlation_id, "kill-%d", &i) != 1 || i < 0 ||
        i >= KILL_SAGAS) {
        kill_problem("event %s v%lld: correlation id %s", ev->stream,
                     (long long) ev->version,
                     ev->correlation_id ? ev->correlation_id : "(none)");
        return;
    }
    m = protobuf_c_message_unpack(kill_ev[type], NULL, ev->data_len, ev->data);
    if (m == NULL || strcmp(kill_ev_order(type, m), ev->correlation_id) != 0) {
        kill_problem("event %s v%lld: its payload is not saga %s's %s",
                     ev->stream, (long long) ev->version, ev->correlation_id,
                     ev->type);
    }
    if (m != NULL) {
        protobuf_c_message_free_unpacked(m, NULL);
    }
    if (type <= 1) {
        snprintf(stream, sizeof stream, "sku-%d", kill_sku(i));
        next = &t->sku_next[kill_sku(i)];
    } else if (type <= 4) {
        snprintf(stream, sizeof stream, "payment-%s", ev->correlation_id);
        next = &t->pay_next[i];
    } else {
        snprintf(stream, sizeof stream, "shipment-%s", ev->correlation_id);
        next = &t->ship_next[i];
    }
    if (strcmp(ev->stream, stream) != 0) {
        kill_problem("%s of %s on %s, not %s", ev->type, ev->correlation_id,
                     ev->stream, stream);
    } else if (ev->version != *next) {
        kill_problem("%s v%lld read in commit order after v%lld", ev->stream,
                     (long long) ev->version, (long long) *next - 1);
    }
    *next = ev->version + 1;
    t->n[i][type]++;
}

/* Reads every event in commit order and compares each saga's with its
 * plan; then the shared SKU aggregates as a participant loads them. */
static void
kill_check_events(loom_store *s)
{
    kill_tally *t = calloc(1, sizeof *t);
    long long total = est_ll("SELECT count(*) FROM loom.events");
    long long seen = 0;
    int64_t end = est_now_ms() + 20000;
    loom_position at = {0, 0};
    int64_t sku_want[KILL_SKUS][2];

    assert_non_null(t);
    while (seen < total && est_now_ms() < end) {
        loom_events *page = NULL;
        assert_int_equal(loom_store_read_all(s, at, 500, &page), LOOM_OK);
        for (size_t j = 0; j < loom_events_count(page); j++) {
            kill_tally_event(t, loom_events_at(page, j));
        }
        seen += (long long) loom_events_count(page);
        at = loom_events_next(page);
        if (loom_events_count(page) == 0) {
            est_sleep_ms(20); /* behind the horizon: a moment */
        }
        loom_events_free(page);
    }
    if (seen != total) {
        kill_problem("read %lld events in commit order, the table has %lld",
                     seen, total);
    }
    memset(sku_want, 0, sizeof sku_want);
    for (int i = 0; i < KILL_SAGAS; i++) {
        int f = kill_fail_at(i);
        for (int type = 0; type < KILL_EV_TYPES; type++) {
            if (t->n[i][type] != kill_events_want(f, type)) {
                kill_problem(KILL_ID_FMT ": %d %s event(s), want %d", i,
                             t->n[i][type], kill_ev[type]->name,
                             kill_events_want(f, type));
            }
        }
        sku_want[kill_sku(i)][0]++;
        sku_want[kill_sku(i)][1] += f != 0;
    }
    for (int k = 0; k < KILL_SKUS; k++) {
        kill_sku_state st;
        int64_t version = -1;
        char id[16];

        snprintf(id, sizeof id, "%d", k);
        assert_int_equal(
            loom_aggregate_load(s, &kill_sku_type, id, &st, &version), LOOM_OK);
        if (st.reserved != sku_want[k][0] || st.released != sku_want[k][1] ||
            version != st.reserved + st.released - 1) {
            kill_problem("sku-%d: %lld reserved, %lld released at version "
                         "%lld; want %lld and %lld",
                         k, (long long) st.reserved, (long long) st.released,
                         (long long) version, (long long) sku_want[k][0],
                         (long long) sku_want[k][1]);
        }
    }
    free(t);
    /* Dense versions from 0, whatever stream (the checks above know only
     * those the plan names). */
    kill_expect_none("streams whose versions are not 0..n-1",
                     "SELECT count(*) FROM (SELECT stream FROM loom.events "
                     "GROUP BY stream HAVING min(version) <> 0 OR "
                     "max(version) <> count(*) - 1) g",
                     NULL);
}

/* 1 when `got` is `want` ("" and NULL alike). */
static int
kill_same(const char *got, const char *want)
{
    return strcmp(got != NULL ? got : "", want) == 0;
}

/* What the reply and failure handlers left in each saga's data. */
static void
kill_check_data(void)
{
    PGconn *c = est_connect(NULL);
    PGresult *r = PQexecParams(c,
                               "SELECT id, data FROM loom.saga_instances "
                               "ORDER BY id",
                               0, NULL, NULL, NULL, NULL, 1);

    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    for (int row = 0; row < PQntuples(r); row++) {
        const char *id = PQgetvalue(r, row, 0);
        Sagakill__Order *o =
            sagakill__order__unpack(NULL, (size_t) PQgetlength(r, row, 1),
                                    (const uint8_t *) PQgetvalue(r, row, 1));
        char res[64], pay[64], trk[64];
        int i = -1, f;

        if (o == NULL || sscanf(id, "kill-%d", &i) != 1 || i < 0 ||
            i >= KILL_SAGAS) {
            kill_problem("saga %s: its data does not decode", id);
            if (o != NULL) {
                sagakill__order__free_unpacked(o, NULL);
            }
            continue;
        }
        f = kill_fail_at(i);
        snprintf(res, sizeof res, "res-%s", id);
        snprintf(pay, sizeof pay, "pay-%s", id);
        snprintf(trk, sizeof trk, "trk-%s", id);
        if (!kill_same(o->id, id) || o->sku != kill_sku(i) || o->fail_at != f ||
            o->amount != 100 + i || !kill_same(o->reservation, res) ||
            !kill_same(o->payment, f == 2 ? "" : pay) ||
            !kill_same(o->tracking, f == 0 ? trk : "") ||
            !kill_same(o->failed, f == 0   ? ""
                                  : f == 2 ? "Charge:DECLINED"
                                           : "Ship:REFUSED")) {
            kill_problem("saga %s: data reservation=%s payment=%s "
                         "tracking=%s failed=%s (fail_at %d)",
                         id, o->reservation, o->payment, o->tracking, o->failed,
                         f);
        }
        sagakill__order__free_unpacked(o, NULL);
    }
    PQclear(r);
    PQfinish(c);
}

/* Nothing dead-lettered, nothing left to publish. */
static void
kill_check_transport(void)
{
    PGconn *c = NULL;
    int64_t end = est_now_ms() + 10000;

    while (est_try_ll_on(&c, "SELECT coalesce(sum(pending), 0) FROM "
                             "loom.outbox_status") != 0 &&
           est_now_ms() < end) {
        est_sleep_ms(20);
    }
    PQfinish(c);
    kill_expect_none("outbox messages never published",
                     "SELECT coalesce(sum(pending), 0) FROM "
                     "loom.outbox_status",
                     NULL);
    kill_expect_none("outbox dead letters",
                     "SELECT count(*) FROM loom.outbox_dead_letters", NULL);
    kill_expect_none("dead letters in the topics",
                     "SELECT count(*) FROM loom.topic_messages m JOIN "
                     "loom.topics t ON t.id = m.topic_id WHERE t.name LIKE "
                     "'%.dlq'",
                     "SELECT t.name, encode(m.headers, 'escape') AS headers "
                     "FROM loom.topic_messages m "
                     "JOIN loom.topics t ON t.id = m.topic_id WHERE t.name "
                     "LIKE '%.dlq'");
}

/* ---- the test ------------------------------------------------------------ */

static int
kill_teardown(void **state)
{
    (void) state;
    kill_stop_all();
    return 0;
}

static void
sigkill_of_orchestrator_and_participants_loses_and_repeats_nothing(void **state)
{
    const char *env = getenv("SAGA_KILL_SEED");
    unsigned seed = env ? (unsigned) strtoul(env, NULL, 10)
                        : (unsigned) time(NULL) ^ (unsigned) getpid();
    int64_t t0 = est_now_ms(), t_run;
    loom_store *s;
    long long final;
    PGconn *c;
    PGresult *r;

    (void) state;
    printf("saga_kill_test: SAGA_KILL_SEED=%u\n", seed);
    kill_rng = ((uint64_t) seed << 1) | 1;
    setenv("LOOM_DATABASE_URL", loomt_dsn(), 1);
    s = loomt_store_open(); /* migrates */
    kill_schema();
    for (int k = 0; k < KILL_CHILDREN; k++) {
        kill_spawn(k);
    }
    kill_run(s);
    t_run = est_now_ms() - t0;
    final = kill_wait_final();
    printf("saga_kill_test: %d sagas started and %d kills (orchestrator %d, "
           "inventory %d, payments %d, shipping %d) in %lld ms; %lld "
           "final after %lld ms\n",
           KILL_SAGAS, KILL_KILLS, kids[KILL_ORCH].kills,
           kids[KILL_INVENTORY].kills, kids[KILL_PAYMENTS].kills,
           kids[KILL_SHIPPING].kills, (long long) t_run, final,
           (long long) (est_now_ms() - t0));
    kill_check_sagas();
    kill_check_effects();
    kill_check_events(s);
    kill_check_data();
    kill_check_transport();
    /* How much the inboxes had to drop (copies a relay published
     * again), for the record. */
    c = est_connect(NULL);
    r = est_query(c, "SELECT coalesce(string_agg(t.name || ' ' || x.n, ', ' "
                     "ORDER BY t.name), 'none') FROM (SELECT topic_id, "
                     "count(*) - count(DISTINCT id) AS n FROM "
                     "loom.topic_messages GROUP BY topic_id) x JOIN "
                     "loom.topics t ON t.id = x.topic_id WHERE x.n > 0");
    printf("saga_kill_test: copies published twice: %s; %d problems\n",
           PQgetvalue(r, 0, 0), kill_problems);
    PQclear(r);
    PQfinish(c);
    kill_stop_all();
    loom_store_close(s);
    for (int k = 0; k < KILL_CHILDREN; k++) {
        assert_int_equal(kids[k].exits, 0);
    }
    assert_int_equal(final, KILL_SAGAS);
    assert_int_equal(kill_problems, 0);
}

int
main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(
            sigkill_of_orchestrator_and_participants_loses_and_repeats_nothing,
            kill_teardown),
    };
    ssize_t n;

    if (argc == 3 && strcmp(argv[1], KILL_ROLE_FLAG) == 0) {
        child_main(argv[2]);
    }
    n = readlink("/proc/self/exe", kill_self, sizeof kill_self - 1);
    if (n <= 0) {
        fprintf(stderr, "saga_kill_test: /proc/self/exe: %s\n",
                strerror(errno));
        return 1;
    }
    kill_self[n] = '\0';
    tpt_debug_from_env();
    return cmocka_run_group_tests(tests, est_group_setup, est_group_teardown);
}
