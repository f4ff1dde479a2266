/*
 * Transactional subscriptions (loom_subscribe_tx) against a real
 * PostgreSQL: the handler's effects and the checkpoint commit in one
 * transaction; a statement that fails rolls the whole batch back, is
 * retried, isolated and parked with its SQLSTATE; two subscriptions under
 * one name never apply an event twice (the checkpoint's compare-and-set);
 * a transaction that holds the horizon back is reported by process id,
 * and the events arrive once it ends.
 *
 * The handler everywhere writes one row per event into a table of the
 * test's own, with no unique key: an event applied twice is a duplicate
 * row, a lost one a missing row, and both show against loom.events.
 * Every run is bounded by a deadline; loop callbacks never call cmocka
 * (a failure would jump out of uv_run): they set flags checked after.
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

/* ------------------------------------------------------------------ */
/* What the library logs                                              */

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static atomic_int log_moved; /* INFO: checkpoint moved by someone else */
static char log_want[64];    /* a WARN containing this sets log_hit */
static char log_hit_msg[1024];
static atomic_int log_hit;

static void
tx_log(void *arg, loom_log_level level, const char *msg)
{
    (void) arg;
    if (getenv("LOOM_TEST_VERBOSE") != NULL)
        fprintf(stderr, "log %s: %s\n", loom_log_level_name(level), msg);
    if (strstr(msg, "moved by someone else") != NULL)
        atomic_fetch_add(&log_moved, 1);
    pthread_mutex_lock(&log_mu);
    if (level == LOOM_LOG_WARN && log_want[0] != '\0' &&
        strstr(msg, log_want) != NULL && !atomic_load(&log_hit)) {
        snprintf(log_hit_msg, sizeof log_hit_msg, "%s", msg);
        atomic_store(&log_hit, 1);
    }
    pthread_mutex_unlock(&log_mu);
}

/* From now on, the first WARN containing `needle` sets log_hit and is
 * kept in log_hit_msg; "" stops looking (and keeps the message). */
static void
log_expect(const char *needle)
{
    pthread_mutex_lock(&log_mu);
    snprintf(log_want, sizeof log_want, "%s", needle);
    if (needle[0] != '\0') {
        log_hit_msg[0] = '\0';
        atomic_store(&log_hit, 0);
    }
    pthread_mutex_unlock(&log_mu);
}

static int
group_setup(void **state)
{
    loom_log_set(tx_log, NULL);
    return est_group_setup(state);
}

static int
group_teardown(void **state)
{
    loom_log_set(NULL, NULL);
    return est_group_teardown(state);
}

/* ------------------------------------------------------------------ */
/* The handler: one row per event                                      */

#define TXH_VERSIONS 64

struct txh {
    char table[32];
    atomic_int calls;
    atomic_int events;                   /* events handed to it */
    atomic_int by_version[TXH_VERSIONS]; /* ... by stream version */
    /* >= 0: the event of this version also sends an int4 parameter two
     * bytes long, which the server refuses with 08P01 (protocol_violation)
     * on a connection that goes on. */
    long long bad_binary_version;
};

static void
txh_init(struct txh *h, const char *table)
{
    memset(h, 0, sizeof *h);
    snprintf(h->table, sizeof h->table, "%s", table);
    h->bad_binary_version = -1;
}

/* Creates the handler's table; `check` adds a column constraint on n. */
static void
txh_create(const struct txh *h, const char *check)
{
    char sql[512];

    snprintf(sql, sizeof sql,
             "CREATE TABLE %s (event_id uuid NOT NULL, stream text NOT "
             "NULL, version bigint NOT NULL, n int %s)",
             h->table, check ? check : "");
    loomt_sql_exec(sql);
}

static loom_err
txh_fn(loom_tx *tx, const loom_event *const *events, size_t n, void *arg)
{
    struct txh *h = arg;
    char sql[256];

    snprintf(sql, sizeof sql,
             "INSERT INTO %s (event_id, stream, version, n) VALUES "
             "($1::uuid, $2, $3::bigint, $4::int)",
             h->table);
    atomic_fetch_add(&h->calls, 1);
    for (size_t i = 0; i < n; i++) {
        const loom_event *ev = events[i];
        char id[LOOM_UUID_STRLEN], ver[24], num[24];
        const char *v[4] = {id, ev->stream, ver, num};
        loom_err rc;

        loom_uuid_format(&ev->id, id);
        snprintf(ver, sizeof ver, "%lld", (long long) ev->version);
        snprintf(num, sizeof num, "%.*s", (int) ev->data_len,
                 (const char *) ev->data);
        rc = loom_tx_exec(tx, sql, 4, v);
        if (rc == LOOM_OK && ev->version == h->bad_binary_version) {
            static const uint32_t int4[1] = {23};
            static const int two[1] = {2};
            const char *const bad[1] = {"\x00\x01"};
            rc = loom_tx_exec_binary(tx, "SELECT $1::int4", 1, int4, bad, two);
        }
        if (rc != LOOM_OK)
            return rc;
        atomic_fetch_add(&h->events, 1);
        if (ev->version >= 0 && ev->version < TXH_VERSIONS)
            atomic_fetch_add(&h->by_version[ev->version], 1);
    }
    return LOOM_OK;
}

/* Appends `n` events to `stream`, the i-th with payload "<first + i>". */
static void
append_numbered(loom_store *s, const char *stream, int n, int first)
{
    loom_event_data ev[64];
    char num[64][12];

    assert_true(n <= 64);
    for (int i = 0; i < n; i++) {
        snprintf(num[i], sizeof num[i], "%d", first + i);
        est_event(&ev[i], "tx.E", num[i], strlen(num[i]));
    }
    assert_int_equal(
        loom_store_append(s, stream, LOOM_EXPECT_ANY, ev, (size_t) n, NULL),
        LOOM_OK);
}

/* Rows of `table` against the events of `category`: events without a row
 * plus rows without an event or repeated. 0 when each event has exactly
 * one row. */
static long long
rows_mismatch(const char *table, const char *category)
{
    return est_ll(
        "SELECT count(*) FROM (SELECT event_id, stream, version FROM "
        "loom.events WHERE category = '%s') e FULL JOIN (SELECT event_id, "
        "count(*) AS k, min(stream) AS stream, min(version) AS version FROM "
        "%s GROUP BY event_id) r USING (event_id) WHERE r.k IS DISTINCT "
        "FROM 1 OR e.stream IS DISTINCT FROM r.stream OR e.version IS "
        "DISTINCT FROM r.version",
        category, table);
}

/* ------------------------------------------------------------------ */
/* Running a runtime until a condition holds                           */

/* Checked on the loop: a query through `probe` (see est_try_ll_on()),
 * and nothing that could fail the test. */
typedef int (*until_fn)(PGconn **probe, void *arg);

struct run {
    loom_runtime *rt;
    uv_timer_t check, deadline;
    until_fn until;
    void *until_arg;
    PGconn *probe;
    int timed_out;
};

static loom_err
run_open_rc(struct run *r)
{
    loom_runtime_config c = LOOM_RUNTIME_CONFIG_INIT;

    memset(r, 0, sizeof *r);
    c.conninfo = loomt_dsn();
    c.reconnect_min_ms = 5;
    c.reconnect_max_ms = 20;
    c.poll_ms = 100;
    return loom_runtime_open(&r->rt, &c);
}

static void
on_check(uv_timer_t *t)
{
    struct run *r = t->data;

    if (r->until(&r->probe, r->until_arg))
        loom_runtime_stop(r->rt);
}

static void
on_deadline(uv_timer_t *t)
{
    struct run *r = t->data;

    r->timed_out = 1;
    loom_runtime_stop(r->rt);
}

/* Runs until `until` holds (checked every 20 ms) or `timeout_ms` pass;
 * returns what loom_runtime_run() did. Any thread. */
static loom_err
run_go(struct run *r, until_fn until, void *arg, unsigned timeout_ms)
{
    uv_loop_t *loop = loom_runtime_loop(r->rt);
    loom_err rc;

    r->until = until;
    r->until_arg = arg;
    uv_timer_init(loop, &r->check);
    uv_timer_init(loop, &r->deadline);
    r->check.data = r->deadline.data = r;
    uv_timer_start(&r->check, on_check, 20, 20);
    uv_timer_start(&r->deadline, on_deadline, timeout_ms, 0);
    rc = loom_runtime_run(r->rt);
    uv_close((uv_handle_t *) &r->check, NULL);
    uv_close((uv_handle_t *) &r->deadline, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    PQfinish(r->probe);
    r->probe = NULL;
    return rc;
}

/* One subscription `name` on `category` with handler `h`, run to `until`
 * on the cmocka thread. */
static void
run_sub(const loom_subscription_config *cfg, struct txh *h, until_fn until,
        void *arg)
{
    loom_subscription_config c = *cfg;
    loom_subscription *sub = NULL;
    struct run r;

    assert_int_equal(run_open_rc(&r), LOOM_OK);
    c.conninfo = loomt_dsn();
    assert_int_equal(loom_subscribe_tx(r.rt, &c, txh_fn, h, &sub), LOOM_OK);
    assert_int_equal(run_go(&r, until, arg, 30000), LOOM_OK);
    loom_subscription_close(sub);
    loom_runtime_close(r.rt);
    assert_int_equal(r.timed_out, 0);
}

/* The checkpoint `name` is at the last event of `category`. */
struct at_end {
    const char *name;
    const char *category;
};

static int
checkpoint_at_end(PGconn **probe, const struct at_end *e)
{
    return est_try_ll_on(probe,
                         "SELECT count(*) FROM loom.checkpoints c WHERE name = "
                         "'%s' AND (c.tx, c.position) = (SELECT tx, position "
                         "FROM loom.events WHERE category = '%s' ORDER BY tx "
                         "DESC, position DESC LIMIT 1)",
                         e->name, e->category) == 1;
}

static int
until_at_end(PGconn **probe, void *arg)
{
    return checkpoint_at_end(probe, arg);
}

/* ------------------------------------------------------------------ */

static void
test_sub_tx_effects_commit_with_the_checkpoint_and_never_double(void **state)
{
    est_fx *fx = *state;
    loom_subscription_config c = LOOM_SUBSCRIPTION_CONFIG_INIT;
    struct at_end end = {"txa", "txa"};
    struct txh h;

    txh_init(&h, "txa_rows");
    txh_create(&h, NULL);
    for (int i = 0; i < 3; i++) {
        char stream[16];
        snprintf(stream, sizeof stream, "txa-%d", i);
        append_numbered(fx->s, stream, 10, 0);
    }
    c.name = "txa";
    c.source = LOOM_SUB_CATEGORY;
    c.category = "txa";
    c.batch = 7;
    run_sub(&c, &h, until_at_end, &end);
    assert_int_equal(est_ll("SELECT count(*) FROM txa_rows"), 30);
    assert_int_equal(rows_mismatch("txa_rows", "txa"), 0);
    assert_int_equal(atomic_load(&h.events), 30);
    /* The checkpoint row was written by the transaction that wrote the
     * last batch's rows, the last event's among them. */
    assert_int_equal(
        est_ll("SELECT count(*) FROM txa_rows r JOIN loom.events e USING "
               "(event_id) JOIN loom.checkpoints c ON c.name = 'txa' AND "
               "c.position = e.position WHERE r.xmin = c.xmin"),
        1);
    assert_true(est_ll("SELECT count(*) FROM txa_rows r, loom.checkpoints c "
                       "WHERE c.name = 'txa' AND r.xmin = c.xmin") >= 1);

    /* A second run gets only the new events: nothing doubles. */
    append_numbered(fx->s, "txa-0", 10, 10);
    append_numbered(fx->s, "txa-9", 10, 0);
    txh_init(&h, "txa_rows");
    run_sub(&c, &h, until_at_end, &end);
    assert_int_equal(atomic_load(&h.events), 20);
    assert_int_equal(est_ll("SELECT count(*) FROM txa_rows"), 50);
    assert_int_equal(rows_mismatch("txa_rows", "txa"), 0);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.parked WHERE "
                            "subscription = 'txa'"),
                     0);
}

struct parked_at_end {
    struct at_end end;
    long long parked;
};

static int
until_parked_at_end(PGconn **probe, void *arg)
{
    struct parked_at_end *p = arg;

    return checkpoint_at_end(probe, &p->end) &&
           est_try_ll_on(probe,
                         "SELECT count(*) FROM loom.parked WHERE subscription "
                         "= '%s'",
                         p->end.name) == p->parked;
}

static void
test_sub_tx_failing_statement_rolls_back_batch_retries_then_parks(void **state)
{
    est_fx *fx = *state;
    loom_subscription_config c = LOOM_SUBSCRIPTION_CONFIG_INIT;
    struct parked_at_end pe = {{"txb", "txb"}, 1};
    struct txh h;

    txh_init(&h, "txb_rows");
    /* Event version 13 carries n = 13, which the table refuses. */
    txh_create(&h, "CHECK (n <> 13)");
    append_numbered(fx->s, "txb-1", 20, 0);
    c.name = "txb";
    c.source = LOOM_SUB_CATEGORY;
    c.category = "txb";
    c.batch = 10;
    c.max_attempts = 3;
    run_sub(&c, &h, until_parked_at_end, &pe);

    /* The batch 10..19 was delivered 3 times, then one event at a time:
     * 13 three more times before it was parked. */
    assert_int_equal(atomic_load(&h.by_version[13]), 3 + 3);
    assert_int_equal(atomic_load(&h.by_version[12]), 3 + 1);
    assert_int_equal(atomic_load(&h.by_version[0]), 1);
    /* Each failed delivery rolled back the batch's other rows too. */
    assert_int_equal(est_ll("SELECT count(*) FROM txb_rows"), 19);
    assert_int_equal(est_ll("SELECT count(DISTINCT event_id) FROM txb_rows"),
                     19);
    assert_int_equal(est_ll("SELECT count(*) FROM txb_rows WHERE version = "
                            "13"),
                     0);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.events e LEFT JOIN "
                            "txb_rows r USING (event_id) WHERE e.category "
                            "= 'txb' AND r.event_id IS NULL"),
                     1);
    /* Parked with the SQLSTATE and the attempts it took. */
    assert_int_equal(
        est_ll("SELECT count(*) FROM loom.parked p JOIN loom.events e USING "
               "(event_id) WHERE p.subscription = 'txb' AND e.stream = "
               "'txb-1' AND e.version = 13 AND p.version = 13 AND p.attempts "
               "= 3 AND p.error LIKE '%%23514%%' AND p.error LIKE "
               "'%%txb_rows%%'"),
        1);
}

/* A statement the server refuses with 08P01 (a binary parameter it
 * cannot read) fails on a connection that stays up: the handler's
 * failure, parked like any other. It was taken for a lost connection and
 * the batch sent again forever, holding back every event after it. */
static void
test_sub_tx_statement_refused_as_protocol_violation_is_parked(void **state)
{
    est_fx *fx = *state;
    loom_subscription_config c = LOOM_SUBSCRIPTION_CONFIG_INIT;
    struct parked_at_end pe = {{"txp", "txp"}, 1};
    struct txh h;

    txh_init(&h, "txp_rows");
    h.bad_binary_version = 2;
    txh_create(&h, NULL);
    append_numbered(fx->s, "txp-1", 5, 0);
    c.name = "txp";
    c.source = LOOM_SUB_CATEGORY;
    c.category = "txp";
    c.max_attempts = 2;
    run_sub(&c, &h, until_parked_at_end, &pe);

    assert_int_equal(est_ll("SELECT count(*) FROM txp_rows"), 4);
    assert_int_equal(est_ll("SELECT count(*) FROM txp_rows WHERE version = "
                            "2"),
                     0);
    assert_int_equal(
        est_ll("SELECT count(*) FROM loom.parked p WHERE p.subscription = "
               "'txp' AND p.version = 2 AND p.attempts = 2 AND p.error LIKE "
               "'%%08P01%%'"),
        1);
}

/* Two runtimes, each on a thread of its own, running a subscription under
 * the same name. No cmocka here: errors are returned. */
struct racer {
    struct txh *h;
    pthread_barrier_t *go;
    struct at_end *end;
    loom_err rc;
    int timed_out;
};

static void *
racer_main(void *arg)
{
    struct racer *x = arg;
    loom_subscription_config c = LOOM_SUBSCRIPTION_CONFIG_INIT;
    loom_subscription *sub = NULL;
    struct run r;

    x->rc = run_open_rc(&r);
    c.name = x->end->name;
    c.source = LOOM_SUB_CATEGORY;
    c.category = x->end->category;
    c.batch = 5;
    c.conninfo = loomt_dsn();
    if (x->rc == LOOM_OK)
        x->rc = loom_subscribe_tx(r.rt, &c, txh_fn, x->h, &sub);
    pthread_barrier_wait(x->go);
    if (x->rc == LOOM_OK) {
        x->rc = run_go(&r, until_at_end, x->end, 60000);
        x->timed_out = r.timed_out;
    }
    loom_subscription_close(sub);
    loom_runtime_close(r.rt);
    return NULL;
}

static void
test_sub_tx_same_name_twice_never_applies_an_event_twice(void **state)
{
    est_fx *fx = *state;
    struct at_end end = {"txc", "txc"};
    struct txh h[2];
    struct racer x[2];
    pthread_t th[2];
    pthread_barrier_t go;
    int before = atomic_load(&log_moved);

    txh_init(&h[0], "txc_rows");
    txh_init(&h[1], "txc_rows");
    txh_create(&h[0], NULL);
    for (int i = 0; i < 50; i++) {
        char stream[16];
        snprintf(stream, sizeof stream, "txc-%d", i % 10);
        append_numbered(fx->s, stream, 10, 0);
    }
    assert_int_equal(pthread_barrier_init(&go, NULL, 2), 0);
    for (int i = 0; i < 2; i++) {
        x[i] = (struct racer){&h[i], &go, &end, LOOM_OK, 0};
        assert_int_equal(pthread_create(&th[i], NULL, racer_main, &x[i]), 0);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(x[i].rc, LOOM_OK);
        assert_int_equal(x[i].timed_out, 0);
    }
    pthread_barrier_destroy(&go);
    printf("sub_tx_test: two runners handed %d + %d events (500 appended), "
           "%d compare-and-set losses\n",
           atomic_load(&h[0].events), atomic_load(&h[1].events),
           atomic_load(&log_moved) - before);
    /* Both worked on the same events at once ... */
    assert_true(atomic_load(&h[0].events) + atomic_load(&h[1].events) > 500);
    assert_true(atomic_load(&log_moved) - before >= 1);
    /* ... and each event was applied once. */
    assert_int_equal(est_ll("SELECT count(*) FROM txc_rows"), 500);
    assert_int_equal(est_ll("SELECT count(DISTINCT event_id) FROM txc_rows"),
                     500);
    assert_int_equal(rows_mismatch("txc_rows", "txc"), 0);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.parked WHERE "
                            "subscription = 'txc'"),
                     0);
}

/* The stall check: the test's own transaction holds the horizon back. */
struct stall {
    struct at_end end;
    struct txh *h;
    PGconn *holder;
    int committed;        /* the holder's COMMIT went through */
    int commit_failed;    /* ... or did not */
    int events_before;    /* events handed to the handler by then */
    int64_t warned_after; /* ms from the start to the WARN */
    int64_t t0;
};

static int
until_stall_over(PGconn **probe, void *arg)
{
    struct stall *st = arg;

    if (!st->committed) {
        PGresult *r;
        if (!atomic_load(&log_hit))
            return 0;
        st->warned_after = est_now_ms() - st->t0;
        st->events_before = atomic_load(&st->h->events);
        r = PQexec(st->holder, "COMMIT");
        st->committed = 1;
        st->commit_failed = PQresultStatus(r) != PGRES_COMMAND_OK;
        PQclear(r);
        return st->commit_failed;
    }
    return checkpoint_at_end(probe, &st->end);
}

static void
test_sub_tx_horizon_stall_names_the_holder_then_events_arrive(void **state)
{
    est_fx *fx = *state;
    loom_subscription_config c = LOOM_SUBSCRIPTION_CONFIG_INIT;
    struct stall st;
    struct txh h;
    PGresult *r;
    char needle[64];
    long long pid;

    memset(&st, 0, sizeof st);
    txh_init(&h, "txd_rows");
    txh_create(&h, NULL);
    st.end = (struct at_end){"txd", "txd"};
    st.h = &h;
    st.holder = est_connect(NULL);
    est_exec(st.holder, "BEGIN");
    est_exec(st.holder, "SELECT pg_current_xact_id()"); /* takes an xid */
    r = est_query(st.holder, "SELECT pg_backend_pid()");
    pid = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    append_numbered(fx->s, "txd-1", 10, 0);
    snprintf(needle, sizeof needle, "process %lld ", pid);
    log_expect(needle);

    c.name = "txd";
    c.source = LOOM_SUB_CATEGORY;
    c.category = "txd";
    c.horizon_warn_ms = 200;
    st.t0 = est_now_ms();
    run_sub(&c, &h, until_stall_over, &st);
    log_expect("");
    PQfinish(st.holder);

    printf("sub_tx_test: stall reported after %lld ms: %s\n",
           (long long) st.warned_after, log_hit_msg);
    assert_int_equal(st.committed, 1);
    assert_int_equal(st.commit_failed, 0);
    /* Held back until the holder ended, then delivered once each. */
    assert_int_equal(st.events_before, 0);
    assert_non_null(strstr(log_hit_msg, "\"txd\""));
    assert_non_null(strstr(log_hit_msg, "10 committed events wait"));
    assert_int_equal(atomic_load(&h.events), 10);
    assert_int_equal(rows_mismatch("txd_rows", "txd"), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_sub_tx_effects_commit_with_the_checkpoint_and_never_double,
            est_setup, est_teardown),
        cmocka_unit_test_setup_teardown(
            test_sub_tx_failing_statement_rolls_back_batch_retries_then_parks,
            est_setup, est_teardown),
        cmocka_unit_test_setup_teardown(
            test_sub_tx_statement_refused_as_protocol_violation_is_parked,
            est_setup, est_teardown),
        cmocka_unit_test_setup_teardown(
            test_sub_tx_same_name_twice_never_applies_an_event_twice, est_setup,
            est_teardown),
        cmocka_unit_test_setup_teardown(
            test_sub_tx_horizon_stall_names_the_holder_then_events_arrive,
            est_setup, est_teardown),
    };

    return cmocka_run_group_tests_name("eventstore.sub_tx", tests, group_setup,
                                       group_teardown);
}
