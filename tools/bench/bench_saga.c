/*
 * saga: how many three-step sagas complete per second, end to end, and
 * how long each takes, with every part in one process on the built-in
 * topics, durable settings.
 *
 *   loom  the checkout saga of saga/checkout.proto: an orchestrator, three
 *         participants (each command appends one event, expecting a new
 *         stream, and replies) and a relay, on one runtime in the main
 *         thread, over topics:// (acks=all; the relay publishes inside
 *         the database unless --through-transport). A starter thread starts
 *         sagas (loom_saga_start_tx, up to SG_START_BATCH per
 *         transaction) for --warmup then --seconds, then waits for the
 *         last to end: closed loop, while fewer than --in-flight are
 *         unfinished (how many complete per second at that
 *         concurrency), or with --rate, open loop, R per second on a
 *         fixed schedule (how long each takes at that load, whatever
 *         the concurrency it takes). Only the --seconds after the
 *         warm-up are measured: the first sagas start into cold caches
 *         and plans, and would set the tail. Rate: sagas completed
 *         within the measured seconds over their length. Latency: of
 *         the sagas started within them, to the orchestrator's `ended`
 *         hook, from just before the start's commit (closed loop) or
 *         from the saga's time on the schedule (open loop: a starter
 *         that falls behind counts against the system).
 *         tx_per_saga: the scratch database's committed transactions
 *         (pg_stat_database.xact_commit, every connection: starter,
 *         orchestrator, participants, relay, topics) over the sagas.
 *   raw   what a hand-written orchestration without messaging must write
 *         durably per saga, through plain libpq: the saga row, then per
 *         step the participant's event row and the saga row's update,
 *         each its own transaction (7 per saga), SG_RAW_WRITERS threads
 *         at full speed for --seconds.
 *
 *   BENCH saga sagas_per_s=<n> p50_ms=<x> p99_ms=<y> tx_per_saga=<k>
 *              ratio=<loom/raw> [offered_per_s=<r>: open loop only]
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <uv.h>

#include "bench.h"
#include "bench_topics.h"
#include "loom/outbox.h"
#include "loom/runtime.h"
#include "loom/saga.h"
#include "saga/checkout.loom.h"

#define SG_START_BATCH 16
#define SG_RAW_WRITERS 4
#define SG_MAX_SAGAS   2000000
#define SG_DRAIN_NS    INT64_C(120000000000)

static const char sg_raw_schema_sql[] =
    "CREATE TABLE loom_bench.sagas (id text PRIMARY KEY, state text NOT "
    "NULL, step int NOT NULL, data bytea NOT NULL, version bigint NOT NULL, "
    "updated_at timestamptz NOT NULL DEFAULT now())";

static const char *const sg_topics[] = {"bench.saga.replies", "bench.inventory",
                                        "bench.payment", "bench.shipping"};

/* One loom run: shared by the starter thread and the loop. */
typedef struct sg_run {
    const bench_env *env;
    double seconds, warmup;
    double rate; /* sagas started per second (open loop); 0: closed loop */
    atomic_int go, stop, failed, starter_done;
    atomic_llong started, ended, completed;
    atomic_llong start_ns;
    int64_t measure_ns, measure_end_ns; /* the measured window */
    long long measured;                 /* completed within it */
    int64_t *t0;         /* start time of saga i (ns), SG_MAX_SAGAS entries */
    long long in_flight; /* closed loop: most sagas unfinished at once */
    long long peak;      /* most unfinished seen (loop thread) */
    bench_samples lat;   /* loop thread only */
} sg_run;

static void
sg_fail(sg_run *run, const char *what, const char *why)
{
    if (atomic_exchange(&run->failed, 1) == 0)
        fprintf(stderr, "%s: saga: %s: %s\n", BENCH_PROGRAM, what, why);
    atomic_store(&run->stop, 1);
}

static void
sg_nap(int64_t ns)
{
    struct timespec ts = {(time_t) (ns / 1000000000), (long) (ns % 1000000000)};
    nanosleep(&ts, NULL);
}

/* ---- the starter thread ---------------------------------------------------
 */

/* Starts sagas first .. first + n - 1 in one transaction; t0[i] is when
 * saga i counts as started (its latency runs from there). */
static int
sg_start(sg_run *run, loom_store *s, loom_tx *tx, long long first, long long n)
{
    char id[32], order[32];
    int64_t now;

    loom_tx_reset(tx);
    for (long long i = first; i < first + n; i++) {
        Benchsaga__Checkout data = BENCHSAGA__CHECKOUT__INIT;
        snprintf(id, sizeof id, "c%lld", i);
        snprintf(order, sizeof order, "order-%lld", i);
        data.order = order;
        data.amount = 100 + i % 900;
        if (loom_saga_start_tx(tx, &benchsaga__checkout_saga__saga, id,
                               &data.base, NULL) != LOOM_OK) {
            sg_fail(run, "loom_saga_start_tx", loom_tx_errmsg(tx));
            return -1;
        }
    }
    now = bench_now_ns();
    for (long long i = first; i < first + n; i++)
        if (run->rate <= 0) /* open loop: t0 is the schedule, already set */
            run->t0[i] = now;
    atomic_store(&run->started, first + n);
    if (loom_store_commit(s, tx) != LOOM_OK) {
        sg_fail(run, "starting sagas", loom_store_errmsg(s));
        return -1;
    }
    return 0;
}

/* Closed loop: while fewer than in_flight are unfinished, start more, up
 * to SG_START_BATCH per transaction. */
static void
sg_start_closed(sg_run *run, loom_store *s, loom_tx *tx, int64_t deadline)
{
    while (!atomic_load(&run->stop) && !atomic_load(&bench_stopped) &&
           bench_now_ns() < deadline) {
        long long first = atomic_load(&run->started);
        long long room = run->in_flight - (first - atomic_load(&run->ended));
        long long n = room < SG_START_BATCH ? room : SG_START_BATCH;

        if (n < SG_START_BATCH / 2 || first + n > SG_MAX_SAGAS) {
            sg_nap(200000);
            continue;
        }
        if (sg_start(run, s, tx, first, n) != 0)
            return;
    }
}

/* Open loop: saga i is due at go + i / rate, whatever the earlier ones
 * are doing. Each transaction starts every saga due by now (up to
 * SG_START_BATCH); a server that cannot keep up makes the backlog, and
 * so the latency counted from the schedule, grow, instead of slowing the
 * arrivals down (no coordinated omission). */
static void
sg_start_open(sg_run *run, loom_store *s, loom_tx *tx, int64_t go,
              int64_t deadline)
{
    double ns_per_saga = 1e9 / run->rate;

    while (!atomic_load(&run->stop) && !atomic_load(&bench_stopped)) {
        long long first = atomic_load(&run->started), due, n;
        int64_t now = bench_now_ns(),
                next = go + (int64_t) ((double) first * ns_per_saga);

        if (next >= deadline || first >= SG_MAX_SAGAS)
            return;
        if (next > now) {
            sg_nap(next - now);
            continue;
        }
        due = (long long) ((double) (now - go) / ns_per_saga) + 1;
        if (due > SG_MAX_SAGAS)
            due = SG_MAX_SAGAS;
        n = due - first;
        if (n > SG_START_BATCH)
            n = SG_START_BATCH;
        for (long long i = first; i < first + n; i++)
            run->t0[i] = go + (int64_t) ((double) i * ns_per_saga);
        if (sg_start(run, s, tx, first, n) != 0)
            return;
    }
}

static void *
sg_starter_main(void *arg)
{
    sg_run *run = arg;
    loom_store_config cfg = LOOM_STORE_CONFIG_INIT;
    loom_store *s = NULL;
    loom_tx *tx = NULL;
    char err[256];
    int64_t go, deadline;

    cfg.conninfo = run->env->conninfo;
    cfg.application_name = "loom-bench saga starter";
    if (loom_store_open(&s, &cfg, err, sizeof err) != LOOM_OK) {
        sg_fail(run, "loom_store_open", err);
        goto out;
    }
    if (loom_tx_new(&tx) != LOOM_OK) {
        sg_fail(run, "loom_tx_new", "out of memory");
        goto out;
    }
    while (!atomic_load(&run->go) && !atomic_load(&run->stop))
        sg_nap(100000);
    go = atomic_load(&run->start_ns);
    deadline = go + (int64_t) ((run->warmup + run->seconds) * 1e9);
    if (run->rate > 0)
        sg_start_open(run, s, tx, go, deadline);
    else
        sg_start_closed(run, s, tx, deadline);
out:
    loom_tx_free(tx);
    loom_store_close(s);
    atomic_store(&run->starter_done, 1);
    return NULL;
}

/* ---- the loop: orchestrator, participants, relay ---------------------------
 */

typedef struct sg_loop {
    sg_run *run;
    loom_runtime *rt;
    uv_timer_t tick;
    int phase; /* 0: settling, 1: starting, 2: draining */
    int64_t phase_ns;
} sg_loop;

static void
sg_ended(void *arg, const char *id, loom_saga_state state)
{
    sg_loop *l = arg;
    sg_run *run = l->run;
    long long i = id[0] == 'c' ? atoll(id + 1) : -1;

    if (i < 0 || i >= SG_MAX_SAGAS)
        return;
    if (state == LOOM_SAGA_COMPLETED) {
        int64_t now = bench_now_ns();
        if (run->t0[i] >= run->measure_ns && run->t0[i] < run->measure_end_ns)
            bench_samples_push(&run->lat, now - run->t0[i]);
        if (now >= run->measure_ns && now < run->measure_end_ns)
            run->measured++;
        atomic_fetch_add(&run->completed, 1);
    } else {
        sg_fail(run, id, loom_saga_state_name(state));
    }
    atomic_fetch_add(&run->ended, 1);
}

static void
sg_on_tick(uv_timer_t *t)
{
    sg_loop *l = t->data;
    sg_run *run = l->run;
    int64_t now = bench_now_ns();

    if (atomic_load(&bench_stopped) || atomic_load(&run->failed))
        goto stop;
    if (atomic_load(&run->started) - atomic_load(&run->ended) > run->peak)
        run->peak = atomic_load(&run->started) - atomic_load(&run->ended);
    switch (l->phase) {
    case 0:
        if (now - l->phase_ns < INT64_C(1000000000))
            return; /* connections, group joins and the relay settle */
        run->measure_ns = now + (int64_t) (run->warmup * 1e9);
        run->measure_end_ns = run->measure_ns + (int64_t) (run->seconds * 1e9);
        atomic_store(&run->start_ns, now);
        atomic_store(&run->go, 1);
        l->phase = 1;
        return;
    case 1:
        if (!atomic_load(&run->starter_done))
            return;
        l->phase = 2;
        l->phase_ns = now;
        /* fall through */
    default:
        if (atomic_load(&run->ended) >= atomic_load(&run->started))
            goto stop;
        if (now - l->phase_ns > SG_DRAIN_NS) {
            sg_fail(run, "draining", "sagas still unfinished after 120 s");
            goto stop;
        }
        return;
    }
stop:
    atomic_store(&run->stop, 1);
    uv_timer_stop(t);
    uv_close((uv_handle_t *) t, NULL);
    loom_runtime_stop(l->rt);
}

/* The relay's counters over the whole run, warm-up included: how it
 * batched, and how often a running transaction held its read back. */
static void
sg_print_relay(const loom_relay *relay)
{
    loom_relay_stats st;

    if (loom_relay_stats_get(relay, &st) != LOOM_OK || st.batches == 0)
        return;
    fprintf(stderr,
            "%s: saga: relay: %llu messages in %llu batches (%.1f a batch), "
            "%llu wake-ups, %llu reads held back\n",
            BENCH_PROGRAM, (unsigned long long) st.published,
            (unsigned long long) st.batches,
            (double) st.published / (double) st.batches,
            (unsigned long long) st.wakeups, (unsigned long long) st.held_back);
}

static int
sg_loom(const bench_env *env, const bench_opts *o, sg_run *run)
{
    loom_runtime_config rcfg = LOOM_RUNTIME_CONFIG_INIT;
    loom_relay_config rl = LOOM_RELAY_CONFIG_INIT;
    loom_orchestrator_config oc = LOOM_ORCHESTRATOR_CONFIG_INIT;
    const loom_saga_def *defs[] = {&benchsaga__checkout_saga__saga};
    const loom_participant_def *pdefs[] = {
        &benchsaga__bench_inventory__participant,
        &benchsaga__bench_payment__participant,
        &benchsaga__bench_shipping__participant};
    loom_participant *parts[3] = {NULL, NULL, NULL};
    loom_orchestrator *orch = NULL;
    loom_relay *relay = NULL;
    loom_transport *t = NULL;
    pthread_t starter;
    sg_loop l;
    char err[512] = "", *url = NULL;
    int rc = -1, started = 0;

    memset(&l, 0, sizeof l);
    run->env = env;
    run->seconds = o->seconds;
    run->warmup = o->warmup;
    run->rate = o->rate_given ? o->rate : 0;
    l.run = run;
    rcfg.conninfo = env->conninfo;
    if (loom_runtime_open(&l.rt, &rcfg) != LOOM_OK) {
        fprintf(stderr, "%s: saga: cannot open a runtime\n", BENCH_PROGRAM);
        return -1;
    }
    url = tb_loom_url(env);
    if (url == NULL ||
        loom_transport_open(l.rt, url, &t, err, sizeof err) != LOOM_OK) {
        fprintf(stderr, "%s: saga: transport: %s\n", BENCH_PROGRAM, err);
        goto out;
    }
    rl.conninfo = env->conninfo;
    rl.transport = t;
    rl.through_transport = o->through_transport;
    if (loom_relay_start(l.rt, &rl, &relay, err, sizeof err) != LOOM_OK) {
        fprintf(stderr, "%s: saga: relay: %s\n", BENCH_PROGRAM, err);
        goto out;
    }
    oc.conninfo = env->conninfo;
    oc.transport = t;
    oc.defs = defs;
    oc.n_defs = 1;
    oc.ended = sg_ended;
    oc.ended_arg = &l;
    if (loom_orchestrator_open(l.rt, &oc, &orch, err, sizeof err) != LOOM_OK) {
        fprintf(stderr, "%s: saga: orchestrator: %s\n", BENCH_PROGRAM, err);
        goto out;
    }
    for (int i = 0; i < 3; i++) {
        loom_participant_config pc = LOOM_PARTICIPANT_CONFIG_INIT;
        pc.conninfo = env->conninfo;
        pc.transport = t;
        pc.defs = &pdefs[i];
        pc.n_defs = 1;
        if (loom_participant_open(l.rt, &pc, &parts[i], err, sizeof err) !=
            LOOM_OK) {
            fprintf(stderr, "%s: saga: participant %s: %s\n", BENCH_PROGRAM,
                    pdefs[i]->name, err);
            goto out;
        }
    }
    if (pthread_create(&starter, NULL, sg_starter_main, run) != 0) {
        fprintf(stderr, "%s: saga: cannot start a thread\n", BENCH_PROGRAM);
        goto out;
    }
    started = 1;
    uv_timer_init(loom_runtime_loop(l.rt), &l.tick);
    l.tick.data = &l;
    l.phase_ns = bench_now_ns();
    uv_timer_start(&l.tick, sg_on_tick, 5, 5);
    loom_runtime_run(l.rt);
    rc = atomic_load(&run->failed) || atomic_load(&bench_stopped) ? -1 : 0;
    sg_print_relay(relay);
out:
    atomic_store(&run->stop, 1);
    if (started)
        pthread_join(starter, NULL);
    for (int i = 0; i < 3; i++)
        loom_participant_close(parts[i]);
    loom_orchestrator_close(orch);
    loom_relay_close(relay);
    loom_transport_close(t);
    loom_runtime_close(l.rt);
    free(url);
    return rc;
}

/* ---- raw ------------------------------------------------------------------
 */

typedef struct sg_raw {
    const bench_env *env;
    double seconds;
    int index;
    pthread_t thread;
    atomic_int *failed;
    long long done;
} sg_raw;

static const char *const sg_raw_sql[] = {
    "INSERT INTO loom_bench.sagas (id, state, step, data, version) VALUES "
    "($1, 'RUNNING', 0, $2, 1)",
    "INSERT INTO loom_bench.events (stream, category, version, event_id, "
    "type, schema_version, data) VALUES ($1, 'step', 0, gen_random_uuid(), "
    "'benchsaga.Step', 1, $2)",
    "UPDATE loom_bench.sagas SET step = step + 1, data = $2, version = "
    "version + 1, updated_at = now() WHERE id = $1",
};

static int
sg_raw_exec(PGconn *c, int stmt, const char *a, const char *b, size_t blen)
{
    char name[8];
    const char *values[2] = {a, b};
    int lengths[2] = {(int) strlen(a), (int) blen};
    int formats[2] = {0, 1};
    PGresult *r;
    int ok;

    snprintf(name, sizeof name, "sg%d", stmt);
    r = PQexecPrepared(c, name, 2, values, lengths, formats, 0);
    ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        fprintf(stderr, "%s: saga raw: %s", BENCH_PROGRAM,
                PQresultErrorMessage(r));
    PQclear(r);
    return ok ? 0 : -1;
}

static void *
sg_raw_main(void *arg)
{
    sg_raw *w = arg;
    PGconn *c = bench_db_connect(w->env->conninfo, "loom-bench saga raw");
    char id[48], stream[64], data[64];
    int64_t deadline = bench_now_ns() + (int64_t) (w->seconds * 1e9);

    memset(data, 'd', sizeof data);
    if (c == NULL)
        goto fail;
    for (int i = 0; i < 3; i++) {
        char name[8];
        PGresult *r;
        snprintf(name, sizeof name, "sg%d", i);
        r = PQprepare(c, name, sg_raw_sql[i], 0, NULL);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            fprintf(stderr, "%s: saga raw: %s", BENCH_PROGRAM,
                    PQresultErrorMessage(r));
            PQclear(r);
            goto fail;
        }
        PQclear(r);
    }
    while (bench_now_ns() < deadline && !atomic_load(&bench_stopped)) {
        snprintf(id, sizeof id, "r%d-%lld", w->index, w->done);
        if (sg_raw_exec(c, 0, id, data, sizeof data) != 0)
            goto fail;
        for (int step = 0; step < 3; step++) {
            snprintf(stream, sizeof stream, "step%d-%s", step, id);
            if (sg_raw_exec(c, 1, stream, data, sizeof data) != 0 ||
                sg_raw_exec(c, 2, id, data, sizeof data) != 0)
                goto fail;
        }
        w->done++;
    }
    PQfinish(c);
    return NULL;
fail:
    atomic_store(w->failed, 1);
    PQfinish(c);
    return NULL;
}

static int
sg_raw_run(const bench_env *env, const bench_opts *o, double *rate,
           long long *sagas)
{
    sg_raw ws[SG_RAW_WRITERS];
    atomic_int failed;
    long long total = 0;
    int64_t t0, t1;

    atomic_init(&failed, 0);
    t0 = bench_now_ns();
    for (int i = 0; i < SG_RAW_WRITERS; i++) {
        memset(&ws[i], 0, sizeof ws[i]);
        ws[i].env = env;
        ws[i].seconds = o->seconds;
        ws[i].index = i;
        ws[i].failed = &failed;
        if (pthread_create(&ws[i].thread, NULL, sg_raw_main, &ws[i]) != 0) {
            atomic_store(&failed, 1);
            for (int j = 0; j < i; j++)
                pthread_join(ws[j].thread, NULL);
            return -1;
        }
    }
    for (int i = 0; i < SG_RAW_WRITERS; i++) {
        pthread_join(ws[i].thread, NULL);
        total += ws[i].done;
    }
    t1 = bench_now_ns();
    if (atomic_load(&failed))
        return -1;
    *rate = (double) total * 1e9 / (double) (t1 - t0);
    *sagas = total;
    bench_progress("saga raw: %lld sagas (7 transactions each) in %.1f s: "
                   "%.0f/s",
                   total, (double) (t1 - t0) / 1e9, *rate);
    return 0;
}

/* ---- the case -------------------------------------------------------------
 */

/* Committed transactions of the scratch database so far. Every
 * connection of the run is closed first, and a backend reports its
 * counts as it exits: wait until the others are gone (a busy server
 * takes a while; up to 10 s), then a moment more. */
static long long
sg_xact_commit(const bench_env *env)
{
    PGresult *r;
    long long n = -1;

    for (int i = 0; i < 100; i++) {
        int others = -1;
        r = PQexec(env->scratch,
                   "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                   "current_database() AND pid <> pg_backend_pid()");
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
            others = atoi(PQgetvalue(r, 0, 0));
        PQclear(r);
        if (others == 0)
            break;
        sg_nap(100000000);
    }
    sg_nap(200000000);
    r = PQexec(env->scratch, "SELECT pg_stat_clear_snapshot()");
    PQclear(r);
    r = PQexec(env->scratch, "SELECT xact_commit FROM pg_stat_database WHERE "
                             "datname = current_database()");
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
        n = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    return n;
}

/* Bytes of WAL the server has written so far (the whole cluster's: the
 * bench assumes it has the server to itself), -1 on error. A count of
 * what a side wrote that does not depend on how busy the machine is. */
static long long
sg_wal_bytes(const bench_env *env)
{
    PGresult *r = PQexec(env->scratch, "SELECT pg_wal_lsn_diff("
                                       "pg_current_wal_lsn(), '0/0')::int8");
    long long n = -1;

    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
        n = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    return n;
}

/* WAL bytes per saga between two readings, -1 when either failed. */
static double
sg_wal_per_saga(long long w0, long long w1, long long sagas)
{
    if (w0 < 0 || w1 < w0 || sagas <= 0)
        return -1;
    return (double) (w1 - w0) / (double) sagas;
}

int
bench_saga(bench_env *env, const bench_opts *o)
{
    sg_run run;
    char how[64];
    double raw = 0, rate, secs;
    long long tx0, tx1, done, raw_n = 0, w0, w1;
    double raw_wal, wal;
    int rc = -1;

    memset(&run, 0, sizeof run);
    run.t0 = calloc(SG_MAX_SAGAS, sizeof *run.t0);
    run.in_flight = (long long) o->in_flight;
    if (run.t0 == NULL)
        return -1;
    if (bench_db_exec(env->scratch, sg_raw_schema_sql) != 0)
        goto out;
    for (size_t i = 0; i < sizeof sg_topics / sizeof sg_topics[0]; i++)
        if (tb_loom_topic(env, sg_topics[i], 1) != 0)
            goto out;
    bench_db_checkpoint(env);
    w0 = sg_wal_bytes(env);
    if (sg_raw_run(env, o, &raw, &raw_n) != 0)
        goto out;
    raw_wal = sg_wal_per_saga(w0, sg_wal_bytes(env), raw_n);
    /* The raw side's dead rows are its own cost: vacuumed now, so that
     * autovacuum finds no work of it to do while loom's side is measured
     * (it did: up to 0.6 s of CPU in the middle of the measured window). */
    if (bench_db_exec(env->scratch, "VACUUM (ANALYZE) loom_bench.sagas, "
                                    "loom_bench.events") != 0)
        goto out;
    bench_db_checkpoint(env);
    tx0 = sg_xact_commit(env);
    w0 = sg_wal_bytes(env);
    if (sg_loom(env, o, &run) != 0)
        goto out;
    tx1 = sg_xact_commit(env);
    w1 = sg_wal_bytes(env);
    done = atomic_load(&run.completed);
    wal = sg_wal_per_saga(w0, w1, done);
    secs = (double) (run.measure_end_ns - run.measure_ns) / 1e9;
    if (run.measured == 0 || run.lat.n == 0 || secs <= 0) {
        fprintf(stderr, "%s: saga: no saga completed in the measured %.1f s\n",
                BENCH_PROGRAM, secs);
        goto out;
    }
    rate = (double) run.measured / secs;
    if (run.rate > 0)
        snprintf(how, sizeof how, "started at %g/s on a schedule", run.rate);
    else
        snprintf(how, sizeof how, "at most %lld in flight", run.in_flight);
    bench_progress("saga loom: %lld sagas completed in the measured %.1f s "
                   "(after a %.1f s warm-up; %s; %lld unfinished at "
                   "most): %.0f/s; %lld sagas and %lld transactions in all",
                   run.measured, secs, run.warmup, how, run.peak, rate, done,
                   tx1 - tx0);
    /* The tail's shape: a few stalled sagas (a lost wake-up, a lock
     * wait) show as a maximum far above p99.9; a saturated system moves
     * them all together. */
    bench_progress(
        "saga loom: latency p50 %.1f, p90 %.1f, p99 %.1f, p99.9 "
        "%.1f, max %.1f ms",
        bench_samples_ms(&run.lat, 0.50), bench_samples_ms(&run.lat, 0.90),
        bench_samples_ms(&run.lat, 0.99), bench_samples_ms(&run.lat, 0.999),
        bench_samples_ms(&run.lat, 1.0));
    bench_progress("saga loom: %.0f bytes of WAL per saga (raw side: %.0f)",
                   wal, raw_wal);
    printf("BENCH saga sagas_per_s=%.0f p50_ms=%.2f p99_ms=%.2f "
           "tx_per_saga=%.2f wal_bytes_per_saga=%.0f ratio=%.3f",
           rate, bench_samples_ms(&run.lat, 0.50),
           bench_samples_ms(&run.lat, 0.99),
           tx0 >= 0 && tx1 >= tx0 ? (double) (tx1 - tx0) / (double) done : -1,
           wal, raw > 0 ? rate / raw : 0.0);
    if (run.rate > 0)
        printf(" offered_per_s=%.0f", run.rate);
    printf("\n");
    fflush(stdout);
    rc = 0;
out:
    bench_samples_free(&run.lat);
    free(run.t0);
    return rc;
}
