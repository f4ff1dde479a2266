/*
 * Projections against the real PostgreSQL: a read model in its own schema
 * kept exactly-once by the live runner, blue/green rebuild by replay while
 * writers append, a stopped rebuild that resumes, parking of an event the
 * handler keeps failing on and its replay, in-memory models, and bad
 * definitions.
 *
 * The model everywhere: table counts(stream, n), one row per stream, n
 * the number of "p.Add" events of that stream; "p.Other" events are not
 * handled. A correct model equals, row for row, the same count taken
 * straight from loom.events (a fresh replay).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <uv.h>

#include "estest.h"
#include "loom/log.h"
#include "loom/projection.h"

/* The data of an event the handler refuses while `poison_on` is set. */
static const char poison[] = "poison";
static volatile int poison_on;

static loom_err
counts_setup(loom_tx *tx, void *arg)
{
    (void) arg;
    return loom_tx_exec(tx,
                        "CREATE TABLE counts (stream text PRIMARY KEY, "
                        "n bigint NOT NULL)",
                        0, NULL);
}

static loom_err
counts_add(loom_tx *tx, const loom_event *ev, void *arg)
{
    const char *v[1] = {ev->stream};

    (void) arg;
    if (poison_on && ev->data_len == sizeof poison - 1 &&
        memcmp(ev->data, poison, ev->data_len) == 0) {
        if (poison_on == 1)
            return LOOM_EHANDLER; /* refused by the C handler */
        /* Accepted by the C handler, refused by PostgreSQL at commit. */
        return loom_tx_exec(tx, "SELECT 1 / 0", 0, NULL);
    }
    return loom_tx_exec(tx,
                        "INSERT INTO counts (stream, n) VALUES ($1, 1) "
                        "ON CONFLICT (stream) DO UPDATE SET n = counts.n + 1",
                        1, v);
}

static const loom_projection_handler counts_handlers[] = {
    {"p.Add", counts_add}};

static loom_projection_def
counts_def(const char *name, const char *schema)
{
    loom_projection_def d;

    memset(&d, 0, sizeof d);
    d.name = name;
    d.schema = schema;
    d.handlers = counts_handlers;
    d.n_handlers = 1;
    d.setup = counts_setup;
    return d;
}

/* Options naming the test database. */
static const loom_projection_options *
opts(void)
{
    static loom_projection_options o = LOOM_PROJECTION_OPTIONS_INIT;

    o.conninfo = loomt_dsn();
    return &o;
}

static void
append_mix(loom_store *s, const char *prefix, int streams, int per_stream)
{
    for (int i = 0; i < streams; i++) {
        loom_event_data ev[64];
        char stream[64];
        snprintf(stream, sizeof stream, "%s-%d", prefix, i);
        assert_true(per_stream <= 64);
        for (int j = 0; j < per_stream; j++)
            est_event(&ev[j], j % 3 == 2 ? "p.Other" : "p.Add", "x", 1);
        assert_int_equal(loom_store_append(s, stream, LOOM_EXPECT_ANY, ev,
                                           (size_t) per_stream, NULL),
                         LOOM_OK);
    }
}

/* Rows of the model that differ from a fresh count over loom.events, in
 * either direction. 0 when the model is exact. */
static long long
model_mismatches(const char *schema, const char *prefix)
{
    if (getenv("LOOM_TEST_VERBOSE") != NULL) {
        char sql[512];
        PGconn *c = est_connect(NULL);
        PGresult *r;
        snprintf(sql, sizeof sql,
                 "SELECT stream, e.n, m.n FROM (SELECT stream, count(*) AS n "
                 "FROM loom.events WHERE type = 'p.Add' AND stream LIKE "
                 "'%s-%%' GROUP BY stream) e FULL JOIN (SELECT * FROM "
                 "%s.counts WHERE stream LIKE '%s-%%') m USING (stream)",
                 prefix, schema, prefix);
        r = est_query(c, sql);
        for (int i = 0; i < PQntuples(r); i++)
            fprintf(stderr, "model %s: %s events %s model %s\n", schema,
                    PQgetvalue(r, i, 0), PQgetvalue(r, i, 1),
                    PQgetvalue(r, i, 2));
        PQclear(r);
        PQfinish(c);
    }
    return est_ll(
        "SELECT count(*) FROM (SELECT stream, count(*) AS n FROM "
        "loom.events WHERE type = 'p.Add' AND stream LIKE '%s-%%' GROUP BY "
        "stream) e FULL JOIN (SELECT * FROM %s.counts WHERE stream LIKE "
        "'%s-%%') m USING (stream) WHERE e.n IS DISTINCT FROM m.n",
        prefix, schema, prefix);
}

/* The checkpoint has reached the last event in loom.events. */
static int
caught_up(const char *checkpoint)
{
    return est_ll("SELECT count(*) FROM loom.checkpoints c WHERE c.name = "
                  "'%s' AND (c.tx, c.position) = (SELECT tx, position FROM "
                  "loom.events ORDER BY tx DESC, position DESC LIMIT 1)",
                  checkpoint) == 1;
}

/* Waits (up to 30 s) until every event is below the reader horizon. A
 * rebuild is done when it reaches the horizon, and the horizon is
 * cluster-wide: a transaction open in another test's database holds back
 * events this test appended, which the live runner would handle after
 * the swap. The tests that check a rebuild's model on its own wait for
 * them first. */
static void
wait_visible(void)
{
    for (int i = 0; i < 3000; i++) {
        if (est_ll("SELECT count(*) FROM loom.events WHERE tx >= "
                   "pg_snapshot_xmin(pg_current_snapshot())") == 0)
            return;
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    }
    fail_msg("events stayed behind the horizon for 30 s");
}

/* ------------------------------------------------------------------ */
/* Running the loop until a condition holds                            */

typedef int (*until_fn)(void *arg);

struct run {
    loom_runtime *rt;
    uv_timer_t check, deadline;
    until_fn until;
    void *until_arg;
    int timed_out;
};

static void
on_check(uv_timer_t *t)
{
    struct run *r = t->data;

    if (r->until(r->until_arg))
        loom_runtime_stop(r->rt);
}

static void
on_deadline(uv_timer_t *t)
{
    struct run *r = t->data;

    r->timed_out = 1;
    loom_runtime_stop(r->rt);
}

static void
run_open(struct run *r)
{
    loom_runtime_config c = LOOM_RUNTIME_CONFIG_INIT;

    memset(r, 0, sizeof *r);
    c.conninfo = loomt_dsn();
    c.reconnect_min_ms = 5;
    c.reconnect_max_ms = 50;
    c.poll_ms = 200;
    assert_int_equal(loom_runtime_open(&r->rt, &c), LOOM_OK);
}

/* Runs until `until` holds (checked every 20 ms) or 60 s pass. */
static void
run_until(struct run *r, until_fn until, void *arg)
{
    uv_loop_t *loop = loom_runtime_loop(r->rt);

    r->until = until;
    r->until_arg = arg;
    uv_timer_init(loop, &r->check);
    uv_timer_init(loop, &r->deadline);
    r->check.data = r->deadline.data = r;
    uv_timer_start(&r->check, on_check, 20, 20);
    uv_timer_start(&r->deadline, on_deadline, 60000, 0);
    assert_int_equal(loom_runtime_run(r->rt), LOOM_OK);
    uv_close((uv_handle_t *) &r->check, NULL);
    uv_close((uv_handle_t *) &r->deadline, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    assert_int_equal(r->timed_out, 0);
}

static int
until_caught_up(void *arg)
{
    return caught_up(arg);
}

/* ------------------------------------------------------------------ */

/* Caught up once, then more events appended from the loop (so they
 * arrive live, through the wake-up), then caught up again. */
struct live_phase {
    loom_store *s;
    int appended;
};

static int
until_live_twice(void *arg)
{
    struct live_phase *l = arg;

    if (!caught_up("projection:live"))
        return 0;
    if (l->appended)
        return 1;
    assert_int_equal(model_mismatches("live_model", "live"), 0);
    append_mix(l->s, "live", 12, 7);
    l->appended = 1;
    return 0;
}

static void
test_projection_live_model_counts_each_event_once(void **state)
{
    est_fx *fx = *state;
    loom_projection_def d = counts_def("live", "live_model");
    loom_projection *p = NULL;
    struct live_phase l = {fx->s, 0};
    struct run r;

    append_mix(fx->s, "live", 10, 30);
    run_open(&r);
    assert_int_equal(loom_projection_start(r.rt, &d, opts(), &p), LOOM_OK);
    run_until(&r, until_live_twice, &l);
    loom_projection_close(p);
    loom_runtime_close(r.rt);
    assert_int_equal(model_mismatches("live_model", "live"), 0);
    assert_int_equal(est_ll("SELECT sum(n) FROM live_model.counts WHERE "
                            "stream LIKE 'live-%%'"),
                     10 * 20 + 12 * 5);

    /* A restart resumes from its checkpoint: nothing counted twice. */
    append_mix(fx->s, "live", 3, 3);
    run_open(&r);
    assert_int_equal(loom_projection_start(r.rt, &d, opts(), &p), LOOM_OK);
    run_until(&r, until_caught_up, "projection:live");
    loom_projection_close(p);
    loom_runtime_close(r.rt);
    assert_int_equal(model_mismatches("live_model", "live"), 0);
    assert_int_equal(
        est_ll("SELECT generation FROM loom.projections WHERE name = 'live'"),
        1);
}

struct rebuild_job {
    loom_projection_def def;
    loom_rebuild_options opt;
    loom_err rc;
    char err[512];
    volatile int done;
    volatile int stop;
    int reports;
    int stop_after; /* set stop after this many progress reports (0: no) */
};

static void
on_progress(const loom_rebuild_progress *p, void *arg)
{
    struct rebuild_job *j = arg;

    assert_true(p->done <= p->total);
    j->reports++;
    if (j->stop_after && j->reports >= j->stop_after)
        j->stop = 1;
}

static void *
rebuild_main(void *arg)
{
    struct rebuild_job *j = arg;

    j->rc = loom_projection_rebuild(&j->def, &j->opt, j->err, sizeof j->err);
    j->done = 1;
    return NULL;
}

struct writer {
    loom_store *s;
    volatile int done;
};

static void *
writer_main(void *arg)
{
    struct writer *w = arg;

    for (int round = 0; round < 40; round++) {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "bg-w%d", round % 4);
        append_mix(w->s, prefix, 5, 9);
    }
    w->done = 1;
    return NULL;
}

struct both {
    struct writer *w;
    struct rebuild_job *j;
};

static int
until_all_done(void *arg)
{
    struct both *b = arg;

    return b->w->done && b->j->done && caught_up("projection:bg");
}

static void
job_init(struct rebuild_job *j, const char *name, const char *schema)
{
    memset(j, 0, sizeof *j);
    j->def = counts_def(name, schema);
    j->opt = (loom_rebuild_options) LOOM_REBUILD_OPTIONS_INIT;
    j->opt.conninfo = loomt_dsn();
    j->opt.batch = 100;
    j->opt.stop = &j->stop;
    j->opt.progress = on_progress;
    j->opt.progress_arg = j;
    j->opt.progress_ms = 1;
}

static void
test_projection_rebuild_swaps_in_a_full_replay_while_writers_append(
    void **state)
{
    est_fx *fx = *state;
    struct rebuild_job j;
    struct writer w = {NULL, 0};
    struct both b = {&w, &j};
    loom_projection *p = NULL;
    pthread_t wt, rt;
    struct run r;

    append_mix(fx->s, "bg", 20, 20);
    job_init(&j, "bg", "bg_model");
    run_open(&r);
    assert_int_equal(loom_projection_start(r.rt, &j.def, opts(), &p), LOOM_OK);
    run_until(&r, until_caught_up, "projection:bg");
    loom_projection_close(p);
    loom_runtime_close(r.rt);
    /* Damage the live model: only a replay repairs it. */
    est_ll("WITH d AS (DELETE FROM bg_model.counts WHERE stream = 'bg-3' "
           "RETURNING 1) SELECT count(*) FROM d");
    assert_int_equal(model_mismatches("bg_model", "bg"), 1);

    /* The live runner keeps going while writers append and the rebuild
     * replays beside it. */
    run_open(&r);
    assert_int_equal(loom_projection_start(r.rt, &j.def, opts(), &p), LOOM_OK);
    w.s = est_store_open(NULL);
    assert_int_equal(pthread_create(&wt, NULL, writer_main, &w), 0);
    assert_int_equal(pthread_create(&rt, NULL, rebuild_main, &j), 0);
    run_until(&r, until_all_done, &b);
    pthread_join(wt, NULL);
    pthread_join(rt, NULL);
    assert_int_equal(j.rc, LOOM_OK);
    assert_true(j.reports >= 2);
    /* The swapped-in model is a full replay, kept current since. */
    assert_int_equal(model_mismatches("bg_model", "bg"), 0);
    assert_int_equal(
        est_ll("SELECT generation FROM loom.projections WHERE name = 'bg'"), 2);
    assert_int_equal(est_ll("SELECT count(*) FROM pg_namespace WHERE nspname "
                            "IN ('bg_model__rebuild', 'bg_model__old')"),
                     0);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.checkpoints WHERE "
                            "name = 'projection:bg:rebuild'"),
                     0);
    loom_projection_close(p);
    loom_runtime_close(r.rt);
    loom_store_close(w.s);
}

static void
test_projection_rebuild_stops_and_resumes(void **state)
{
    est_fx *fx = *state;
    struct rebuild_job j;
    long long done_at_stop;

    append_mix(fx->s, "rs", 30, 10);
    wait_visible();
    job_init(&j, "rs", "rs_model");
    j.opt.batch = 50;
    j.stop_after = 2;
    rebuild_main(&j);
    assert_int_equal(j.rc, LOOM_EAGAIN);
    done_at_stop =
        est_ll("SELECT rebuild_done FROM loom.projections WHERE name = 'rs'");
    assert_true(done_at_stop >= 50);
    assert_int_equal(est_ll("SELECT count(*) FROM pg_namespace WHERE nspname = "
                            "'rs_model__rebuild'"),
                     1);
    /* The live model is untouched (empty: no runner ever ran). */
    assert_int_equal(est_ll("SELECT count(*) FROM rs_model.counts"), 0);

    /* Run again: resumes (no fresh start) and swaps in. */
    j.stop = 0;
    j.stop_after = 0;
    j.reports = 0;
    rebuild_main(&j);
    assert_int_equal(j.rc, LOOM_OK);
    assert_int_equal(model_mismatches("rs_model", "rs"), 0);
    assert_true(est_ll("SELECT count(*) FROM loom.events") > 0);

    /* A second rebuild while one holds the lock is refused. */
    {
        PGconn *c = est_connect(NULL);
        est_exec(c, "SELECT pg_advisory_lock(hashtextextended("
                    "'loom.rebuild:rs', 0))");
        rebuild_main(&j);
        assert_int_equal(j.rc, LOOM_EBUSY);
        assert_non_null(strstr(j.err, "already running"));
        PQfinish(c);
    }
}

struct park_wait {
    const char *checkpoint;
    long long parked;
};

static int
until_parked(void *arg)
{
    struct park_wait *w = arg;

    return caught_up(w->checkpoint) &&
           est_ll("SELECT count(*) FROM loom.parked WHERE subscription = "
                  "'%s'",
                  w->checkpoint) == w->parked;
}

static void
test_projection_parks_a_failing_event_then_replays_it(void **state)
{
    est_fx *fx = *state;
    loom_projection_def d = counts_def("pk", "pk_model");
    loom_projection_options o = LOOM_PROJECTION_OPTIONS_INIT;
    loom_projection *p = NULL;
    loom_event_data ev[5];
    struct park_wait pw = {"projection:pk", 1};
    struct run r;

    for (int i = 0; i < 5; i++)
        est_event(&ev[i], "p.Add", i == 2 ? poison : "x",
                  i == 2 ? sizeof poison - 1 : 1);
    assert_int_equal(
        loom_store_append(fx->s, "pk-1", LOOM_EXPECT_ANY, ev, 5, NULL),
        LOOM_OK);
    append_mix(fx->s, "pk", 4, 6);
    poison_on = 1;
    o.conninfo = loomt_dsn();
    o.max_attempts = 2;
    run_open(&r);
    assert_int_equal(loom_projection_start(r.rt, &d, &o, &p), LOOM_OK);
    run_until(&r, until_parked, &pw);
    loom_projection_close(p);
    loom_runtime_close(r.rt);
    /* Everything but the poison event is in the model. */
    assert_int_equal(
        est_ll("SELECT n FROM pk_model.counts WHERE stream = 'pk-1'"), 4 + 4);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.parked WHERE "
                            "subscription = 'projection:pk' AND stream = "
                            "'pk-1' AND version = 2 AND attempts = 2 AND "
                            "error LIKE '%%refused%%'"),
                     1);

    /* Fixed: a replay request delivers it once more, and unparks it. */
    poison_on = 0;
    run_open(&r);
    assert_int_equal(loom_projection_start(r.rt, &d, &o, &p), LOOM_OK);
    est_ll("SELECT loom.parked_request_replay('projection:pk', NULL)");
    pw.parked = 0;
    run_until(&r, until_parked, &pw);
    assert_int_equal(model_mismatches("pk_model", "pk"), 0);
    loom_projection_close(p);
    loom_runtime_close(r.rt);
}

static void
test_projection_rebuild_parks_a_failing_event_and_swaps_it_in(void **state)
{
    est_fx *fx = *state;
    struct rebuild_job j;
    loom_event_data ev[3];

    for (int i = 0; i < 3; i++)
        est_event(&ev[i], "p.Add", i == 1 ? poison : "x",
                  i == 1 ? sizeof poison - 1 : 1);
    assert_int_equal(
        loom_store_append(fx->s, "rp-1", LOOM_EXPECT_ANY, ev, 3, NULL),
        LOOM_OK);
    append_mix(fx->s, "rp", 6, 9);
    wait_visible();
    job_init(&j, "rp", "rp_model");
    j.opt.batch = 20; /* several pages, committed in the background */
    j.opt.max_attempts = 2;
    poison_on = 1;
    rebuild_main(&j);
    poison_on = 0;
    assert_int_equal(j.rc, LOOM_OK);
    /* The rest is in the model; the poison event is parked, and the swap
     * moved it to the live projection's name. */
    assert_int_equal(
        est_ll("SELECT n FROM rp_model.counts WHERE stream = 'rp-1'"), 2 + 6);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.parked WHERE "
                            "subscription = 'projection:rp' AND stream = "
                            "'rp-1' AND version = 1"),
                     1);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.parked WHERE "
                            "subscription = 'projection:rp:rebuild'"),
                     0);
    assert_int_equal(est_ll("SELECT sum(n) FROM rp_model.counts WHERE stream "
                            "LIKE 'rp-%%' AND stream <> 'rp-1'"),
                     5 * 6);

    /* Again, with the failure at commit time (a statement the handler
     * queued fails in PostgreSQL), while later pages are already being
     * handled. */
    j.opt.restart = 1;
    poison_on = 2;
    rebuild_main(&j);
    poison_on = 0;
    assert_int_equal(j.rc, LOOM_OK);
    assert_int_equal(
        est_ll("SELECT n FROM rp_model.counts WHERE stream = 'rp-1'"), 2 + 6);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.parked WHERE "
                            "subscription = 'projection:rp' AND stream = "
                            "'rp-1' AND version = 1 AND error LIKE "
                            "'%%22012%%'"),
                     1);
    assert_int_equal(est_ll("SELECT sum(n) FROM rp_model.counts WHERE stream "
                            "LIKE 'rp-%%' AND stream <> 'rp-1'"),
                     5 * 6);
}

struct memory_model {
    long long adds;
    int resets;
};

static void
mem_reset(void *arg)
{
    struct memory_model *m = arg;

    m->adds = 0;
    m->resets++;
}

static loom_err
mem_add(loom_tx *tx, const loom_event *ev, void *arg)
{
    struct memory_model *m = arg;

    assert_null(tx);
    if (strncmp(ev->stream, "mem-", 4) == 0)
        m->adds++;
    return LOOM_OK;
}

static int
until_mem(void *arg)
{
    struct memory_model *m = arg;

    return m->adds ==
           est_ll("SELECT count(*) FROM loom.events WHERE type = 'p.Add' "
                  "AND stream LIKE 'mem-%%'");
}

static void
test_projection_in_memory_model_replays_from_the_start(void **state)
{
    est_fx *fx = *state;
    static const loom_projection_handler h[] = {{"p.Add", mem_add}};
    struct memory_model m = {123, 0};
    loom_projection_def d;
    loom_projection *p = NULL;
    struct run r;
    char err[256];

    memset(&d, 0, sizeof d);
    d.name = "mem";
    d.handlers = h;
    d.n_handlers = 1;
    d.reset = mem_reset;
    d.arg = &m;
    append_mix(fx->s, "mem", 4, 9);
    for (int round = 0; round < 2; round++) {
        run_open(&r);
        assert_int_equal(loom_projection_start(r.rt, &d, opts(), &p), LOOM_OK);
        assert_int_equal(m.resets, round + 1);
        run_until(&r, until_mem, &m);
        loom_projection_close(p);
        loom_runtime_close(r.rt);
    }
    assert_int_equal(m.adds, 4 * 6);
    /* No stored cursor, and nothing to rebuild. */
    assert_int_equal(est_ll("SELECT count(*) FROM loom.checkpoints WHERE "
                            "name = 'projection:mem'"),
                     0);
    assert_int_equal(loom_projection_rebuild(&d, NULL, err, sizeof err),
                     LOOM_EINVAL);
    assert_non_null(strstr(err, "memory"));
}

static void
test_projection_rejects_bad_definitions(void **state)
{
    loom_projection_def d = counts_def("ok", "ok_model");
    loom_projection *p = (loom_projection *) &d;
    loom_runtime *rt = NULL;
    loom_runtime_config c = LOOM_RUNTIME_CONFIG_INIT;
    char err[256];
    static const char *const names[] = {"", "Upper", "has-dash",
                                        "x234567890123456789012345678901234567"
                                        "8901"};
    static const char *const schemas[] = {"public", "loom", "pg_x", "1abc",
                                          "with space"};

    (void) state;
    c.conninfo = loomt_dsn();
    assert_int_equal(loom_runtime_open(&rt, &c), LOOM_OK);
    assert_int_equal(loom_projection_start(NULL, &d, NULL, &p), LOOM_EINVAL);
    assert_null(p);
    assert_int_equal(loom_projection_start(rt, NULL, NULL, &p), LOOM_EINVAL);
    assert_int_equal(loom_projection_start(rt, &d, NULL, NULL), LOOM_EINVAL);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        loom_projection_def b = counts_def(names[i], "ok_model");
        assert_int_equal(loom_projection_start(rt, &b, opts(), &p),
                         LOOM_EINVAL);
        assert_int_equal(loom_projection_rebuild(&b, NULL, err, sizeof err),
                         LOOM_EINVAL);
    }
    for (size_t i = 0; i < sizeof schemas / sizeof schemas[0]; i++) {
        loom_projection_def b = counts_def("ok", schemas[i]);
        assert_int_equal(loom_projection_start(rt, &b, opts(), &p),
                         LOOM_EINVAL);
    }
    {
        loom_projection_def b = counts_def("ok", "ok_model");
        b.setup = NULL;
        assert_int_equal(loom_projection_start(rt, &b, opts(), &p),
                         LOOM_EINVAL);
        b = counts_def("ok", NULL); /* in memory without reset() */
        assert_int_equal(loom_projection_start(rt, &b, opts(), &p),
                         LOOM_EINVAL);
        b = counts_def("ok", "ok_model");
        b.n_handlers = 0; /* no handlers at all */
        assert_int_equal(loom_projection_start(rt, &b, opts(), &p),
                         LOOM_EINVAL);
    }
    /* A type no event can have (not UTF-8), or one type twice (its second
     * handler would never run): refused by start and rebuild alike. */
    {
        static const loom_projection_handler bad_utf8[] = {
            {"p.\xff", counts_add}};
        static const loom_projection_handler twice[] = {{"p.Add", counts_add},
                                                        {"p.Add", counts_add}};
        loom_projection_def b = counts_def("ok", "ok_model");
        b.handlers = bad_utf8;
        assert_int_equal(loom_projection_start(rt, &b, opts(), &p),
                         LOOM_EINVAL);
        assert_int_equal(loom_projection_rebuild(&b, NULL, err, sizeof err),
                         LOOM_EINVAL);
        assert_non_null(strstr(err, "UTF-8"));
        b.handlers = twice;
        b.n_handlers = 2;
        assert_int_equal(loom_projection_start(rt, &b, opts(), &p),
                         LOOM_EINVAL);
        assert_int_equal(loom_projection_rebuild(&b, NULL, err, sizeof err),
                         LOOM_EINVAL);
        assert_non_null(strstr(err, "twice"));
    }
    /* The same name registered with another schema. */
    {
        loom_projection_def a = counts_def("clash", "clash_a");
        loom_projection_def b = counts_def("clash", "clash_b");
        loom_projection *pa = NULL;
        assert_int_equal(loom_projection_start(rt, &a, opts(), &pa), LOOM_OK);
        assert_int_equal(loom_projection_start(rt, &b, opts(), &p),
                         LOOM_ECONFLICT);
        loom_projection_close(pa);
    }
    /* Another name on a schema that is a projection's model, or that
     * exists and is nobody's: the error says whose it is (it used to
     * blame a race: "keeps being created and dropped"). */
    {
        loom_rebuild_options o = LOOM_REBUILD_OPTIONS_INIT;
        loom_projection_def b = counts_def("clash_other", "clash_a");
        o.conninfo = loomt_dsn();
        assert_int_equal(loom_projection_rebuild(&b, &o, err, sizeof err),
                         LOOM_ECONFLICT);
        assert_non_null(strstr(err, "schema \"clash_a\" is the model of "
                                    "projection \"clash\""));
        loomt_sql_exec("CREATE SCHEMA stray_model");
        b = counts_def("clash_stray", "stray_model");
        assert_int_equal(loom_projection_rebuild(&b, &o, err, sizeof err),
                         LOOM_ECONFLICT);
        assert_non_null(strstr(err, "is no projection's model"));
        loomt_sql_exec("DROP SCHEMA stray_model");
    }
    loom_runtime_close(rt);
}

/* Expected warnings (retries, parking) stay quiet unless
 * LOOM_TEST_VERBOSE is set. */
static void
quiet(void *arg, loom_log_level level, const char *msg)
{
    (void) arg;
    if (getenv("LOOM_TEST_VERBOSE") != NULL)
        fprintf(stderr, "log %d: %s\n", (int) level, msg);
}

static int
group_setup(void **state)
{
    loom_log_set(quiet, NULL);
    return est_group_setup(state);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_projection_live_model_counts_each_event_once, est_setup,
            est_teardown),
        cmocka_unit_test_setup_teardown(
            test_projection_rebuild_swaps_in_a_full_replay_while_writers_append,
            est_setup, est_teardown),
        cmocka_unit_test_setup_teardown(
            test_projection_rebuild_stops_and_resumes, est_setup, est_teardown),
        cmocka_unit_test_setup_teardown(
            test_projection_parks_a_failing_event_then_replays_it, est_setup,
            est_teardown),
        cmocka_unit_test_setup_teardown(
            test_projection_rebuild_parks_a_failing_event_and_swaps_it_in,
            est_setup, est_teardown),
        cmocka_unit_test_setup_teardown(
            test_projection_in_memory_model_replays_from_the_start, est_setup,
            est_teardown),
        cmocka_unit_test(test_projection_rejects_bad_definitions),
    };

    return cmocka_run_group_tests(tests, group_setup, est_group_teardown);
}
