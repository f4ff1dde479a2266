/*
 * Live subscriptions against a real PostgreSQL: catch-up then live with a
 * concurrent writer, resuming from the stored checkpoint and from_start,
 * redelivery after a handler error, the types filter, single-stream
 * subscriptions (closed from their own handler), a consumer group of two,
 * reads per wake-up (a page hidden from the read a NOTIFY starts
 * included), and argument errors. Every run is bounded by a deadline
 * timer that stops the runtime and fails the test (a cmocka failure inside a
 * loop callback would jump out of uv_run).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "estest.h"
#include "loom/subscription.h"

#define SEEN_MAX 4096

/* What one subscription's handler saw, plus when to stop. */
struct rec {
    struct run *run;
    loom_subscription *sub;
    est_seen seen[SEEN_MAX];
    char types[SEEN_MAX][16];
    size_t n;
    size_t calls;
    size_t fail_call; /* 1-based call to refuse; 0: none */
    int64_t failed_first;
    int64_t redelivered_first;
    int close_in_handler;
    int append_at;    /* append 5 to sub-stream once this many are seen */
    size_t kill_call; /* 1-based call that kills the subscription's backend */
};

struct run {
    loom_runtime *rt;
    uv_timer_t deadline;
    int timed_out;
    size_t want; /* stop once the recs together saw this many */
    struct rec *recs[2];
    int nrecs;
    loom_store *s; /* for appends from a handler */
};

static int warn_refused;
static int warn_kill_econn; /* lost-connection retries of "kill" */

static void
log_capture(void *arg, loom_log_level level, const char *msg)
{
    (void) arg;
    if (level == LOOM_LOG_WARN && strstr(msg, "refused") != NULL)
        warn_refused++;
    if (level == LOOM_LOG_WARN && strstr(msg, "\"kill\"") != NULL &&
        strstr(msg, "LOOM_ECONN") != NULL)
        warn_kill_econn++;
}

static int
group_setup(void **state)
{
    loom_log_set(log_capture, NULL);
    return est_group_setup(state);
}

static int
group_teardown(void **state)
{
    loom_log_set(NULL, NULL);
    return est_group_teardown(state);
}

static void
on_deadline(uv_timer_t *t)
{
    struct run *r = t->data;

    r->timed_out = 1;
    loom_runtime_stop(r->rt);
}

/* A runtime whose listener also wakes every poll_ms. */
static void
run_open_poll(struct run *r, unsigned poll_ms)
{
    loom_runtime_config c = LOOM_RUNTIME_CONFIG_INIT;

    memset(r, 0, sizeof *r);
    c.conninfo = loomt_dsn();
    c.reconnect_min_ms = 5;
    c.reconnect_max_ms = 100;
    c.poll_ms = poll_ms;
    assert_int_equal(loom_runtime_open(&r->rt, &c), LOOM_OK);
    uv_timer_init(loom_runtime_loop(r->rt), &r->deadline);
    r->deadline.data = r;
    uv_timer_start(&r->deadline, on_deadline, 30000, 0);
}

static void
run_open(struct run *r)
{
    run_open_poll(r, 2000);
}

static void
run_close(struct run *r)
{
    uv_close((uv_handle_t *) &r->deadline, NULL);
    uv_run(loom_runtime_loop(r->rt), UV_RUN_DEFAULT);
    for (int i = 0; i < r->nrecs; i++)
        loom_subscription_close(r->recs[i]->sub);
    loom_runtime_close(r->rt);
}

static size_t
run_total(const struct run *r)
{
    size_t n = 0;

    for (int i = 0; i < r->nrecs; i++)
        n += r->recs[i]->n;
    return n;
}

static void
append_n(loom_store *s, const char *stream, int n, const char *type)
{
    loom_event_data ev[64];

    assert_true(n <= 64);
    for (int i = 0; i < n; i++)
        est_event(&ev[i], type, "x", 1);
    assert_int_equal(
        loom_store_append(s, stream, LOOM_EXPECT_ANY, ev, (size_t) n, NULL),
        LOOM_OK);
}

static loom_err
on_events(const loom_event *const *events, size_t n, void *arg)
{
    struct rec *rec = arg;
    struct run *r = rec->run;

    rec->calls++;
    if (rec->fail_call == rec->calls) {
        rec->failed_first = events[0]->position;
        return LOOM_EIO;
    }
    if (rec->fail_call != 0 && rec->calls == rec->fail_call + 1)
        rec->redelivered_first = events[0]->position;
    if (rec->kill_call == rec->calls)
        assert_int_equal(est_ll("SELECT count(pg_terminate_backend(pid)) "
                                "FROM pg_stat_activity WHERE "
                                "application_name = 'loomt-subkill'"),
                         1);
    for (size_t i = 0; i < n && rec->n < SEEN_MAX; i++) {
        est_seen_copy(&rec->seen[rec->n], events[i]);
        snprintf(rec->types[rec->n], sizeof rec->types[0], "%s",
                 events[i]->type);
        rec->n++;
    }
    if (rec->append_at && rec->n == (size_t) rec->append_at) {
        loom_event_data ev[5];
        for (int i = 0; i < 5; i++)
            est_event(&ev[i], "str.E", "x", 1);
        if (loom_store_append(r->s, "str-1", LOOM_EXPECT_ANY, ev, 5, NULL))
            r->timed_out = 2; /* reported after the run */
    }
    if (run_total(r) >= r->want) {
        if (rec->close_in_handler) {
            loom_subscription_close(rec->sub);
            rec->sub = NULL;
        }
        loom_runtime_stop(r->rt);
    }
    return LOOM_OK;
}

static struct rec *
rec_new(struct run *r)
{
    struct rec *rec = calloc(1, sizeof *rec);

    assert_non_null(rec);
    rec->run = r;
    r->recs[r->nrecs++] = rec;
    return rec;
}

static void
subscribe(struct run *r, struct rec *rec, loom_subscription_config *c)
{
    c->conninfo = loomt_dsn();
    assert_int_equal(loom_subscribe(r->rt, c, on_events, rec, &rec->sub),
                     LOOM_OK);
}

/* Runs until the handlers saw `want` events; fails on the deadline. */
static void
run_until(struct run *r, size_t want)
{
    r->want = want;
    assert_int_equal(loom_runtime_run(r->rt), LOOM_OK);
    assert_int_equal(r->timed_out, 0);
}

/* Events in strictly increasing commit order, none twice. */
static void
assert_commit_order(const struct rec *rec)
{
    for (size_t i = 1; i < rec->n; i++)
        assert_true(est_pos_before(rec->seen[i - 1].at, rec->seen[i].at));
}

/* ------------------------------------------------------------------ */

struct writer {
    loom_store *s;
    int failed;
};

static void *
writer_main(void *arg)
{
    struct writer *w = arg;
    loom_event_data ev[5];
    char stream[32];

    est_sleep_ms(300); /* let the subscription catch up and sleep */
    for (int i = 0; i < 40 && !w->failed; i++) {
        for (int j = 0; j < 5; j++)
            est_event(&ev[j], "live.E", "y", 1);
        snprintf(stream, sizeof stream, "%s-%d", i % 4 ? "live" : "noise",
                 i % 7);
        if (loom_store_append(w->s, stream, LOOM_EXPECT_ANY, ev, 5, NULL))
            w->failed = 1;
        if (i % 10 == 0)
            est_sleep_ms(50);
    }
    return NULL;
}

static void
test_subscription_catch_up_then_live(void **state)
{
    loom_store *s = est_store_open(NULL);
    loom_subscription_config c = LOOM_SUBSCRIPTION_CONFIG_INIT;
    struct writer w = {est_store_open(NULL), 0};
    struct run r;
    struct rec *rec;
    pthread_t th;
    char stream[32];

    (void) state;
    for (int i = 0; i < 50; i++) {
        snprintf(stream, sizeof stream, "live-%d", i % 10);
        append_n(s, stream, 10, "live.E");
        append_n(s, "noise-1", 1, "live.E");
    }
    run_open(&r);
    rec = rec_new(&r);
    c.name = "live";
    c.source = LOOM_SUB_CATEGORY;
    c.category = "live";
    c.batch = 128;
    subscribe(&r, rec, &c);
    assert_int_equal(pthread_create(&th, NULL, writer_main, &w), 0);
    r.want = 650; /* 500 before, 30 x 5 live */
    assert_int_equal(loom_runtime_run(r.rt), LOOM_OK);
    pthread_join(th, NULL);
    assert_int_equal(w.failed, 0);
    assert_int_equal(r.timed_out, 0);
    assert_int_equal(rec->n, 650);
    assert_commit_order(rec);
    for (size_t i = 0; i < rec->n; i++)
        assert_memory_equal(rec->seen[i].stream, "live-", 5);
    assert_int_equal(
        est_ll("SELECT count(*) FROM loom.events WHERE category = 'live'"),
        650);
    run_close(&r);
    free(rec);
    loom_store_close(w.s);
    loom_store_close(s);
}

static void
test_subscription_resumes_from_checkpoint(void **state)
{
    loom_store *s = est_store_open(NULL);
    loom_subscription_config c = LOOM_SUBSCRIPTION_CONFIG_INIT;
    struct run r;
    struct rec *rec;
    long long first, saved;

    (void) state;
    c.name = "resume";
    c.source = LOOM_SUB_CATEGORY;
    c.category = "res";
    c.batch = 8;
    for (int i = 0; i < 3; i++)
        append_n(s, i % 2 ? "res-a" : "res-b", 10, "res.E");
    run_open(&r);
    rec = rec_new(&r);
    subscribe(&r, rec, &c);
    run_until(&r, 30);
    run_close(&r);
    assert_int_equal(rec->n, 30);
    saved = est_ll("SELECT position FROM loom.checkpoints WHERE name = "
                   "'resume'");
    assert_int_equal(saved, est_ll("SELECT max(position) FROM loom.events "
                                   "WHERE category = 'res'"));
    assert_int_equal(est_ll("SELECT version FROM loom.checkpoints WHERE "
                            "name = 'resume'"),
                     -1);
    first = rec->seen[0].at.position;
    free(rec);

    /* A second run delivers only what came after the checkpoint. */
    append_n(s, "res-c", 10, "res.E");
    run_open(&r);
    rec = rec_new(&r);
    subscribe(&r, rec, &c);
    run_until(&r, 10);
    run_close(&r);
    assert_int_equal(rec->n, 10);
    for (size_t i = 0; i < rec->n; i++)
        assert_string_equal(rec->seen[i].stream, "res-c");
    assert_true(est_ll("SELECT position FROM loom.checkpoints WHERE name = "
                       "'resume'") > saved);
    free(rec);

    /* from_start delivers everything again. */
    c.from_start = 1;
    run_open(&r);
    rec = rec_new(&r);
    subscribe(&r, rec, &c);
    run_until(&r, 40);
    run_close(&r);
    assert_int_equal(rec->n, 40);
    assert_int_equal(rec->seen[0].at.position, first);
    assert_commit_order(rec);
    free(rec);
    loom_store_close(s);
}

static void
test_subscription_handler_error_redelivers(void **state)
{
    loom_store *s = est_store_open(NULL);
    loom_subscription_config c = LOOM_SUBSCRIPTION_CONFIG_INIT;
    struct run r;
    struct rec *rec;

    (void) state;
    append_n(s, "err-1", 20, "err.E");
    run_open(&r);
    rec = rec_new(&r);
    rec->fail_call = 2;
    c.name = "err";
    c.source = LOOM_SUB_CATEGORY;
    c.category = "err";
    c.batch = 5;
    warn_refused = 0;
    subscribe(&r, rec, &c);
    run_until(&r, 20);
    run_close(&r);
    /* The refused second batch came again, then the rest. */
    assert_int_equal(rec->calls, 5);
    assert_int_equal(rec->failed_first, rec->redelivered_first);
    assert_int_equal(rec->n, 20);
    assert_commit_order(rec);
    for (size_t i = 0; i < rec->n; i++)
        assert_int_equal(rec->seen[i].version, (int64_t) i);
    assert_true(warn_refused >= 1);
    free(rec);
    loom_store_close(s);
}

static void
test_subscription_filters_types(void **state)
{
    loom_store *s = est_store_open(NULL);
    loom_subscription_config c = LOOM_SUBSCRIPTION_CONFIG_INIT;
    const char *types[] = {"typ.A", "typ.C"};
    static const char *all[] = {"typ.A", "typ.B", "typ.C"};
    struct run r;
    struct rec *rec;

    (void) state;
    for (int i = 0; i < 30; i++)
        append_n(s, "typ-1", 1, all[i % 3]);
    run_open(&r);
    rec = rec_new(&r);
    c.name = "types";
    c.source = LOOM_SUB_ALL;
    c.types = types;
    c.n_types = 2;
    c.batch = 7;
    subscribe(&r, rec, &c);
    run_until(&r, 20);
    run_close(&r);
    assert_int_equal(rec->n, 20);
    for (size_t i = 0; i < rec->n; i++) {
        assert_string_equal(rec->seen[i].stream, "typ-1");
        assert_true(strcmp(rec->types[i], "typ.B") != 0);
        assert_int_equal(rec->seen[i].version % 3 == 1, 0);
    }
    assert_commit_order(rec);
    free(rec);
    loom_store_close(s);
}

static void
test_subscription_single_stream(void **state)
{
    loom_store *s = est_store_open(NULL);
    loom_subscription_config c = LOOM_SUBSCRIPTION_CONFIG_INIT;
    struct run r;
    struct rec *rec;

    (void) state;
    append_n(s, "str-1", 25, "str.E");
    append_n(s, "str-2", 5, "str.E");
    run_open(&r);
    r.s = s;
    rec = rec_new(&r);
    rec->append_at = 25;
    rec->close_in_handler = 1;
    c.name = "stream";
    c.source = LOOM_SUB_STREAM;
    c.stream = "str-1";
    c.batch = 10;
    subscribe(&r, rec, &c);
    run_until(&r, 30);
    assert_null(rec->sub); /* closed (and freed) from its handler */
    run_close(&r);
    assert_int_equal(rec->n, 30);
    for (size_t i = 0; i < rec->n; i++) {
        assert_string_equal(rec->seen[i].stream, "str-1");
        assert_int_equal(rec->seen[i].version, (int64_t) i);
    }
    assert_int_equal(est_ll("SELECT version FROM loom.checkpoints WHERE "
                            "name = 'stream'"),
                     29);
    free(rec);
    loom_store_close(s);
}

static void
test_subscription_consumer_group_shares(void **state)
{
    loom_store *s = est_store_open(NULL);
    loom_subscription_config c = LOOM_SUBSCRIPTION_CONFIG_INIT;
    struct run r;
    struct rec *rec[2];
    char stream[32], name[8];

    (void) state;
    for (int i = 0; i < 40; i++) {
        snprintf(stream, sizeof stream, "grp-%d", i);
        append_n(s, stream, 2, "grp.E");
    }
    run_open(&r);
    for (uint32_t m = 0; m < 2; m++) {
        loom_subscription_config g = c;
        rec[m] = rec_new(&r);
        snprintf(name, sizeof name, "grp%u", m);
        g.name = name;
        g.source = LOOM_SUB_CATEGORY;
        g.category = "grp";
        g.group.member = m;
        g.group.size = 2;
        subscribe(&r, rec[m], &g);
    }
    run_until(&r, 80);
    run_close(&r);
    assert_int_equal(rec[0]->n + rec[1]->n, 80);
    assert_true(rec[0]->n > 0 && rec[1]->n > 0);
    for (int i = 0; i < 40; i++) {
        int hits[2] = {0, 0};
        snprintf(stream, sizeof stream, "grp-%d", i);
        for (int m = 0; m < 2; m++)
            for (size_t k = 0; k < rec[m]->n; k++)
                hits[m] += strcmp(rec[m]->seen[k].stream, stream) == 0;
        /* Both events of each stream, at one member only. */
        assert_true((hits[0] == 2 && hits[1] == 0) ||
                    (hits[0] == 0 && hits[1] == 2));
    }
    for (int m = 0; m < 2; m++) {
        assert_commit_order(rec[m]);
        free(rec[m]);
    }
    loom_store_close(s);
}

/* The subscription's backend is killed while it holds a batch: it logs,
 * reconnects after the backoff, saves the checkpoint it owed and goes on.
 * Every event arrives, and none twice (the save, not the batch, is what
 * gets retried). */
static void
test_subscription_survives_killed_backend(void **state)
{
    static char dsn[4200];
    loom_store *s = est_store_open(NULL);
    loom_subscription_config c = LOOM_SUBSCRIPTION_CONFIG_INIT;
    struct run r;
    struct rec *rec;
    char stream[32];

    (void) state;
    for (int i = 0; i < 30; i++) {
        snprintf(stream, sizeof stream, "kill-%d", i % 10);
        append_n(s, stream, 10, "kill.E");
    }
    snprintf(dsn, sizeof dsn, "%s application_name='loomt-subkill'",
             loomt_dsn());
    run_open(&r);
    rec = rec_new(&r);
    rec->kill_call = 2;
    c.name = "kill";
    c.source = LOOM_SUB_CATEGORY;
    c.category = "kill";
    c.batch = 50;
    c.conninfo = dsn;
    assert_int_equal(loom_subscribe(r.rt, &c, on_events, rec, &rec->sub),
                     LOOM_OK);
    run_until(&r, 300);
    assert_true(warn_kill_econn >= 1); /* the kill was noticed, and survived */
    assert_int_equal(rec->n, 300);
    assert_commit_order(rec);
    assert_int_equal(
        est_ll("SELECT count(*) FROM loom.checkpoints c JOIN "
               "loom.events e ON e.position = c.position "
               "WHERE c.name = 'kill' AND e.stream LIKE 'kill-%%'"),
        1);
    run_close(&r);
    free(rec);
    loom_store_close(s);
}

/* Counts a subscription's reads around its wake-ups, from a timer on the
 * loop that appends once the subscription is asleep: armed (the wake-up
 * row is there) and quiet (no read and no wake-up for 400 ms). */
struct wake_probe {
    struct run *r;
    struct rec *rec;
    loom_store *s;
    uv_timer_t tick;
    int phase;
    uint64_t since; /* uv_now() when the phase began or the counts moved */
    loom_subscription_stats last;
    loom_subscription_stats at[2];
    uint64_t events_first; /* events after the first append's delivery */
    char stream[16];       /* appended to: "<category>-1" */
    PGconn *hider;         /* holds an older transaction open (hide test) */
    PGconn *probe;         /* for est_try_ll_on() */
    int failed;
};

static void
wake_probe_next(struct wake_probe *p, int phase)
{
    p->phase = phase;
    p->since = uv_now(loom_runtime_loop(p->r->rt));
}

static void
wake_probe_append(struct wake_probe *p)
{
    loom_event_data ev[5];

    for (int i = 0; i < 5; i++)
        est_event(&ev[i], "wk.E", "x", 1);
    if (loom_store_append(p->s, p->stream, LOOM_EXPECT_ANY, ev, 5, NULL))
        p->failed = 1;
}

/* Whether the subscription sleeps armed: an append now notifies it. */
static int
wake_probe_asleep(struct wake_probe *p, const loom_subscription_stats *st,
                  int64_t quiet)
{
    return st->wakeups > 0 && quiet >= 400 &&
           est_try_ll_on(&p->probe, "SELECT count(*) FROM loom.wakeups WHERE "
                                    "channel = 'loom_events'") == 1;
}

/* Takes the subscription's counters into *st and returns for how long
 * they have shown no read and no wake-up, in ms; -1 (the run stopped)
 * after a failure. */
static int64_t
wake_probe_look(struct wake_probe *p, loom_subscription_stats *st)
{
    uv_loop_t *loop = loom_runtime_loop(p->r->rt);

    if (loom_subscription_stats_get(p->rec->sub, st) != LOOM_OK)
        p->failed = 1;
    if (p->failed) {
        loom_runtime_stop(p->r->rt);
        return -1;
    }
    if (st->reads != p->last.reads || st->wakeups != p->last.wakeups)
        p->since = uv_now(loop);
    p->last = *st;
    return (int64_t) (uv_now(loop) - p->since);
}

static void
on_wake_tick(uv_timer_t *t)
{
    struct wake_probe *p = t->data;
    loom_subscription_stats st;
    int64_t quiet = wake_probe_look(p, &st);

    if (quiet < 0)
        return;
    switch (p->phase) {
    case 0: /* listening, then caught up and asleep */
        if (!wake_probe_asleep(p, &st, quiet))
            return;
        p->at[0] = st;
        wake_probe_append(p);
        wake_probe_next(p, 1);
        break;
    case 1:
        if (p->rec->n == 5)
            wake_probe_next(p, 2);
        break;
    case 2:
        if (quiet < 400)
            return;
        p->events_first = st.events;
        wake_probe_next(p, 3);
        break;
    case 3: /* a second with nothing appended */
        if (quiet < 1000 || !wake_probe_asleep(p, &st, quiet))
            return;
        wake_probe_append(p);
        wake_probe_next(p, 4);
        break;
    case 4:
        if (p->rec->n == 10)
            wake_probe_next(p, 5);
        break;
    default:
        if (quiet < 400)
            return;
        p->at[1] = st;
        loom_runtime_stop(p->r->rt);
        break;
    }
}

/* Subscribes to `category` (batch 64, the runtime polling every
 * poll_ms), then runs the loop with `tick` on the probe every 20 ms
 * until it stops the run; fails the test if the probe failed or the
 * run's deadline passed. The hider is open for ticks that need one. */
static void
wake_probe_run(struct wake_probe *p, struct run *r, const char *category,
               unsigned poll_ms, uv_timer_cb tick)
{
    loom_subscription_config c = LOOM_SUBSCRIPTION_CONFIG_INIT;

    memset(p, 0, sizeof *p);
    run_open_poll(r, poll_ms);
    p->r = r;
    p->rec = rec_new(r);
    c.name = category;
    c.source = LOOM_SUB_CATEGORY;
    c.category = category;
    c.batch = 64;
    subscribe(r, p->rec, &c);
    r->want = SIZE_MAX; /* the probe stops the run */
    snprintf(p->stream, sizeof p->stream, "%s-1", category);
    p->s = est_store_open(NULL);
    p->hider = est_connect(loomt_dsn());
    uv_timer_init(loom_runtime_loop(r->rt), &p->tick);
    p->tick.data = p;
    uv_timer_start(&p->tick, tick, 20, 20);
    wake_probe_next(p, 0);
    assert_int_equal(loom_runtime_run(r->rt), LOOM_OK);
    uv_close((uv_handle_t *) &p->tick, NULL);
    assert_int_equal(p->failed, 0);
    assert_int_equal(r->timed_out, 0);
}

static void
wake_probe_close(struct wake_probe *p)
{
    run_close(p->r);
    free(p->rec);
    PQfinish(p->hider);
    PQfinish(p->probe);
    loom_store_close(p->s);
}

/* A short page drains what was committed: the subscription arms and
 * reads once more, instead of reading again first. */
static void
test_subscription_reads_twice_per_wakeup(void **state)
{
    struct wake_probe p;
    struct run r;
    uint64_t reads, wakeups;

    (void) state;
    assert_int_equal(loom_subscription_stats_get(NULL, &p.at[0]), LOOM_EINVAL);
    /* The poll is what wakes the subscription when another transaction
     * of the cluster (another test's) hid the appended events from the
     * read a NOTIFY started; it is one more wake-up, with its reads. */
    wake_probe_run(&p, &r, "wk", 5000, on_wake_tick);
    assert_int_equal(loom_subscription_stats_get(p.rec->sub, NULL),
                     LOOM_EINVAL);
    assert_int_equal(p.rec->n, 10);
    assert_int_equal(p.events_first - p.at[0].events, 5);
    assert_int_equal(p.at[1].events - p.at[0].events, 10);
    assert_int_equal(p.at[1].batches - p.at[0].batches, 2);
    assert_int_equal(p.at[1].parked, 0);
    /* Every read answers a wake-up, two each: the page, then one more
     * after arming (the old loop read a third time first). Asleep, it
     * reads nothing. A wake-up that comes while busy may share reads. */
    reads = p.at[1].reads - p.at[0].reads;
    wakeups = p.at[1].wakeups - p.at[0].wakeups;
    assert_true(wakeups >= 2);
    assert_true(reads >= 4);
    assert_true(reads <= 2 * wakeups);
    wake_probe_close(&p);
}

/* Runs sql on the hider's connection from a loop callback, where a
 * cmocka failure must not jump: a failure is recorded instead. */
static void
hide_exec(struct wake_probe *p, const char *sql)
{
    PGresult *res = PQexec(p->hider, sql);

    if (PQresultStatus(res) != PGRES_COMMAND_OK &&
        PQresultStatus(res) != PGRES_TUPLES_OK)
        p->failed = 1;
    PQclear(res);
}

/* Appends while an older transaction is open, so the read the NOTIFY
 * starts finds nothing; the table lock holds the arm that follows until
 * that transaction ends, so the read after arming finds the page. */
static void
on_hide_tick(uv_timer_t *t)
{
    struct wake_probe *p = t->data;
    loom_subscription_stats st;
    int64_t quiet = wake_probe_look(p, &st);

    if (quiet < 0)
        return;
    switch (p->phase) {
    case 0: /* caught up and asleep, armed */
        if (!wake_probe_asleep(p, &st, quiet))
            return;
        p->at[0] = st;
        hide_exec(p, "BEGIN");
        hide_exec(p, "SELECT pg_current_xact_id()");
        wake_probe_append(p);
        hide_exec(p, "LOCK TABLE loom.wakeups IN SHARE ROW EXCLUSIVE MODE");
        wake_probe_next(p, 1);
        break;
    case 1: /* the NOTIFY's read came back empty: the arm waits */
        if (st.reads == p->at[0].reads ||
            est_try_ll_on(&p->probe,
                          "SELECT count(*) FROM pg_locks WHERE relation = "
                          "'loom.wakeups'::regclass AND NOT granted") < 1)
            return;
        p->events_first = st.events;
        hide_exec(p, "COMMIT");
        wake_probe_next(p, 2);
        break;
    default:
        if (p->rec->n < 5 || quiet < 400)
            return;
        p->at[1] = st;
        loom_runtime_stop(p->r->rt);
        break;
    }
}

/* A page that an open transaction hid from the read a NOTIFY started is
 * found by the read after arming, and the arm still stands: the
 * subscription sleeps after it, without arming and reading again. */
static void
test_subscription_hidden_page_keeps_the_arm(void **state)
{
    struct wake_probe p;
    struct run r;

    (void) state;
    wake_probe_run(&p, &r, "hid", 20000, on_hide_tick);
    assert_int_equal(p.rec->n, 5);
    /* Hidden: the first read delivered nothing. */
    assert_int_equal(p.events_first, p.at[0].events);
    assert_int_equal(p.at[1].wakeups - p.at[0].wakeups, 1);
    assert_int_equal(p.at[1].reads - p.at[0].reads, 2);
    wake_probe_close(&p);
}

static loom_err
never(const loom_event *const *events, size_t n, void *arg)
{
    (void) events;
    (void) n;
    (void) arg;
    return LOOM_OK;
}

static void
test_subscription_argument_errors(void **state)
{
    loom_subscription_config c = LOOM_SUBSCRIPTION_CONFIG_INIT;
    loom_subscription *sub = (loom_subscription *) &c;
    const char *bad_types[] = {""};
    char long_name[70];
    struct run r;

    (void) state;
    run_open(&r);
    c.conninfo = loomt_dsn();
    c.name = "args";
#define EXPECT(rc_, rt_, cfg_, fn_, out_)                                      \
    do {                                                                       \
        sub = (loom_subscription *) &c;                                        \
        assert_int_equal(loom_subscribe(rt_, cfg_, fn_, NULL, out_), rc_);     \
    } while (0)
    EXPECT(LOOM_EINVAL, NULL, &c, never, &sub);
    assert_null(sub);
    EXPECT(LOOM_EINVAL, r.rt, NULL, never, &sub);
    EXPECT(LOOM_EINVAL, r.rt, &c, NULL, &sub);
    EXPECT(LOOM_EINVAL, r.rt, &c, never, NULL);
    c.name = "";
    EXPECT(LOOM_EINVAL, r.rt, &c, never, &sub);
    memset(long_name, 'n', 64);
    long_name[64] = '\0';
    c.name = long_name;
    EXPECT(LOOM_EINVAL, r.rt, &c, never, &sub);
    long_name[63] = '\0'; /* 63 bytes is fine: checked below */
    c.source = (loom_sub_source) 7;
    EXPECT(LOOM_EINVAL, r.rt, &c, never, &sub);
    c.source = LOOM_SUB_CATEGORY;
    EXPECT(LOOM_EINVAL, r.rt, &c, never, &sub); /* no category */
    c.category = "a-b";
    EXPECT(LOOM_EINVAL, r.rt, &c, never, &sub);
    c.category = "a";
    c.group.member = 2;
    c.group.size = 2;
    EXPECT(LOOM_EINVAL, r.rt, &c, never, &sub);
    c.group.size = 0;
    c.group.member = 1;
    EXPECT(LOOM_EINVAL, r.rt, &c, never, &sub);
    c.group.member = 0;
    c.source = LOOM_SUB_STREAM;
    EXPECT(LOOM_EINVAL, r.rt, &c, never, &sub); /* no stream */
    c.stream = "a-1";
    c.n_types = 1;
    EXPECT(LOOM_EINVAL, r.rt, &c, never, &sub);
    c.types = bad_types;
    EXPECT(LOOM_EINVAL, r.rt, &c, never, &sub);
    c.n_types = 0;
    c.batch = LOOM_DEFAULT_MAX_READ + 1;
    EXPECT(LOOM_EINVAL, r.rt, &c, never, &sub);
    c.batch = 0;
    /* A server that is not there: the open fails, nothing is left. */
    c.conninfo = "host=/nonexistent-loom port=1";
    EXPECT(LOOM_ECONN, r.rt, &c, never, &sub);
    assert_null(sub);
    /* Valid, then closed without ever running. */
    c.conninfo = loomt_dsn();
    EXPECT(LOOM_OK, r.rt, &c, never, &sub);
    assert_non_null(sub);
    loom_subscription_close(sub);
    loom_subscription_close(NULL);
    /* A stopping runtime takes no new subscriptions. */
    loom_runtime_stop(r.rt);
    EXPECT(LOOM_EBUSY, r.rt, &c, never, &sub);
    assert_null(sub);
#undef EXPECT
    run_close(&r);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_subscription_catch_up_then_live),
        cmocka_unit_test(test_subscription_resumes_from_checkpoint),
        cmocka_unit_test(test_subscription_handler_error_redelivers),
        cmocka_unit_test(test_subscription_filters_types),
        cmocka_unit_test(test_subscription_single_stream),
        cmocka_unit_test(test_subscription_consumer_group_shares),
        cmocka_unit_test(test_subscription_survives_killed_backend),
        cmocka_unit_test(test_subscription_reads_twice_per_wakeup),
        cmocka_unit_test(test_subscription_hidden_page_keeps_the_arm),
        cmocka_unit_test(test_subscription_argument_errors),
    };

    return cmocka_run_group_tests_name("eventstore.subscription", tests,
                                       group_setup, group_teardown);
}
