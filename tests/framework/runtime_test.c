/*
 * The runtime against a real PostgreSQL: run and stop (from a timer, by
 * SIGTERM, twice), components finishing their batch before run returns,
 * LISTEN/NOTIFY routing by channel with quoted names, the NULL wake-up
 * after a killed LISTEN backend reconnects, the fallback poll, and
 * argument errors. Every test bounds its run with a deadline timer: when
 * it fires the runtime is stopped and the test fails (a cmocka failure
 * inside a loop callback would jump out of uv_run).
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "pgtest.h"
#include "runtime_int.h"

#define MAX_CALLS 64

struct call {
    char channel[80];
    char payload[80];
    int is_null;
};

struct fx {
    loom_runtime *rt;
    uv_timer_t deadline;
    uv_timer_t tick;
    int timed_out;
    int phase;
    char appname[64];
    PGconn *peer;
    struct call calls[MAX_CALLS];
    int ncalls;
    loom_listener *l1, *l2;
    int lost_logged, restored_logged;
    char lost_line[512];
    int refused_logged, unlistened_logged; /* bad channel names */
    char unlistened_line[512];
};

static struct fx *cur; /* for the log capture */

static void
fx_log(void *arg, loom_log_level level, const char *msg)
{
    (void) arg;
    if (cur == NULL)
        return;
    if (level == LOOM_LOG_WARN && strstr(msg, "lost the connection")) {
        cur->lost_logged++;
        snprintf(cur->lost_line, sizeof cur->lost_line, "%s", msg);
    }
    if (level == LOOM_LOG_INFO && strstr(msg, "restored"))
        cur->restored_logged++;
    if (level == LOOM_LOG_WARN && strstr(msg, "not valid UTF-8"))
        cur->refused_logged++;
    if (level == LOOM_LOG_ERROR && strstr(msg, "cannot LISTEN to channel")) {
        cur->unlistened_logged++;
        snprintf(cur->unlistened_line, sizeof cur->unlistened_line, "%s", msg);
    }
}

static int
group_setup(void **state)
{
    (void) state;
    loomt_db_create("runtime");
    loom_log_set(fx_log, NULL);
    return 0;
}

static int
group_teardown(void **state)
{
    (void) state;
    loom_log_set(NULL, NULL);
    loomt_db_drop();
    return 0;
}

static void
on_deadline(uv_timer_t *t)
{
    struct fx *f = t->data;

    f->timed_out = 1;
    loom_runtime_stop(f->rt);
}

/* Opens a runtime on the test database with `cfg` (conninfo and
 * application_name filled in when unset) and arms a 15 s deadline. */
static struct fx *
fx_open(loom_runtime_config *cfg)
{
    static int seq;
    struct fx *f = test_calloc(1, sizeof *f);

    snprintf(f->appname, sizeof f->appname, "loomt-rt-%ld-%d", (long) getpid(),
             seq++);
    if (cfg->conninfo == NULL)
        cfg->conninfo = loomt_dsn();
    if (cfg->application_name == NULL)
        cfg->application_name = f->appname;
    if (cfg->poll_ms == 0)
        cfg->poll_ms = 600000; /* no fallback wake-ups unless asked */
    assert_int_equal(loom_runtime_open(&f->rt, cfg), LOOM_OK);
    uv_timer_init(loom_runtime_loop(f->rt), &f->deadline);
    uv_timer_init(loom_runtime_loop(f->rt), &f->tick);
    f->deadline.data = f->tick.data = f;
    uv_timer_start(&f->deadline, on_deadline, 15000, 0);
    cur = f;
    return f;
}

static void
fx_close(struct fx *f)
{
    uv_close((uv_handle_t *) &f->deadline, NULL);
    uv_close((uv_handle_t *) &f->tick, NULL);
    uv_run(loom_runtime_loop(f->rt), UV_RUN_DEFAULT); /* close callbacks */
    loom_runtime_close(f->rt);
    if (f->peer)
        PQfinish(f->peer);
    cur = NULL;
    test_free(f);
}

static void
fx_sql(struct fx *f, const char *sql, const char *p1, const char *p2)
{
    const char *params[] = {p1, p2};
    PGresult *r;

    if (f->peer == NULL)
        f->peer = PQconnectdb(loomt_dsn());
    assert_int_equal(PQstatus(f->peer), CONNECTION_OK);
    r = PQexecParams(f->peer, sql,
                     p2   ? 2
                     : p1 ? 1
                          : 0,
                     NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK &&
        PQresultStatus(r) != PGRES_COMMAND_OK)
        fprintf(stderr, "%s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
}

static void
fx_notify(struct fx *f, const char *channel, const char *payload)
{
    fx_sql(f, "SELECT pg_notify($1, $2)", channel, payload);
}

static void
record(struct fx *f, const char *channel, const char *payload)
{
    struct call *c;

    if (f->ncalls == MAX_CALLS)
        return;
    c = &f->calls[f->ncalls++];
    snprintf(c->channel, sizeof c->channel, "%s", channel);
    snprintf(c->payload, sizeof c->payload, "%s", payload ? payload : "");
    c->is_null = payload == NULL;
}

static int
count(const struct fx *f, const char *channel, const char *payload)
{
    int n = 0;

    for (int i = 0; i < f->ncalls; i++)
        if (strcmp(f->calls[i].channel, channel) == 0 &&
            (payload ? !f->calls[i].is_null &&
                           strcmp(f->calls[i].payload, payload) == 0
                     : f->calls[i].is_null))
            n++;
    return n;
}

static void
stop_soon(uv_timer_t *t)
{
    struct fx *f = t->data;

    loom_runtime_stop(f->rt);
    loom_runtime_stop(f->rt); /* idempotent */
}

static void
test_runtime_stop_from_timer_returns(void **state)
{
    loom_runtime_config cfg = LOOM_RUNTIME_CONFIG_INIT;
    struct fx *f = fx_open(&cfg);

    (void) state;
    uv_timer_start(&f->tick, stop_soon, 10, 0);
    assert_int_equal(loom_runtime_run(f->rt), LOOM_OK);
    assert_false(f->timed_out);
    /* Stopped: stop is a no-op and run returns at once. */
    loom_runtime_stop(f->rt);
    loom_runtime_stop(NULL);
    assert_int_equal(loom_runtime_run(f->rt), LOOM_OK);
    assert_int_equal(loom_runtime_run(NULL), LOOM_EINVAL);
    fx_close(f);
}

static void
test_runtime_stop_before_run_returns(void **state)
{
    loom_runtime *rt;

    (void) state;
    assert_int_equal(loom_runtime_open(&rt, NULL), LOOM_OK);
    loom_runtime_stop(rt);
    assert_int_equal(loom_runtime_run(rt), LOOM_OK);
    loom_runtime_close(rt);
    /* Never run at all. */
    assert_int_equal(loom_runtime_open(&rt, NULL), LOOM_OK);
    loom_runtime_close(rt);
    loom_runtime_close(NULL);
    assert_null(loom_runtime_loop(NULL));
}

static void
raise_term(uv_timer_t *t)
{
    (void) t;
    raise(SIGTERM);
}

static void
test_runtime_sigterm_stops(void **state)
{
    loom_runtime_config cfg = LOOM_RUNTIME_CONFIG_INIT;
    struct fx *f;

    (void) state;
    cfg.handle_signals = 1;
    f = fx_open(&cfg);
    uv_timer_start(&f->tick, raise_term, 10, 0);
    assert_int_equal(loom_runtime_run(f->rt), LOOM_OK);
    assert_false(f->timed_out);
    fx_close(f);
}

/* A component whose batch takes 50 ms to finish after stop(). */
struct comp {
    uv_timer_t t;
    loom__component *c;
    loom__done_fn done;
    int asked, finished;
};

static void
comp_finish(uv_timer_t *t)
{
    struct comp *k = t->data;

    k->finished = 1;
    uv_close((uv_handle_t *) &k->t, NULL);
    k->done(k->c);
}

static void
comp_stop(void *arg, loom__component *c, loom__done_fn done)
{
    struct comp *k = arg;

    k->asked++;
    k->c = c;
    k->done = done;
    uv_timer_start(&k->t, comp_finish, 50, 0);
}

static void
test_runtime_stop_waits_for_components(void **state)
{
    loom_runtime_config cfg = LOOM_RUNTIME_CONFIG_INIT;
    struct fx *f = fx_open(&cfg);
    struct comp k = {0};
    loom__component *c, *gone;

    (void) state;
    uv_timer_init(loom_runtime_loop(f->rt), &k.t);
    k.t.data = &k;
    assert_int_equal(loom__runtime_add_component(f->rt, comp_stop, &k, &c),
                     LOOM_OK);
    assert_int_equal(loom__runtime_add_component(f->rt, comp_stop, &k, &gone),
                     LOOM_OK);
    loom__runtime_remove_component(gone);
    assert_int_equal(loom__runtime_add_component(f->rt, NULL, &k, &gone),
                     LOOM_EINVAL);
    assert_null(gone);
    uv_timer_start(&f->tick, stop_soon, 10, 0);
    assert_int_equal(loom_runtime_run(f->rt), LOOM_OK);
    assert_int_equal(k.asked, 1);
    assert_true(k.finished);
    assert_false(f->timed_out);
    assert_int_equal(loom__runtime_add_component(f->rt, comp_stop, &k, &gone),
                     LOOM_EBUSY);
    fx_close(f);
}

static void
on_wake(void *arg, const char *channel, const char *payload)
{
    struct fx *f = arg;

    record(f, channel, payload);
    if (payload == NULL && f->phase == 0) {
        f->phase = 1;
        fx_notify(f, "chan", "x");
    } else if (payload && strcmp(payload, "x") == 0) {
        loom_runtime_stop(f->rt);
    }
}

static void
test_runtime_listen_delivers_notify(void **state)
{
    loom_runtime_config cfg = LOOM_RUNTIME_CONFIG_INIT;
    struct fx *f = fx_open(&cfg);

    (void) state;
    assert_int_equal(loom_runtime_listen(f->rt, "chan", on_wake, f, &f->l1),
                     LOOM_OK);
    assert_int_equal(loom_runtime_run(f->rt), LOOM_OK);
    assert_false(f->timed_out);
    assert_int_equal(count(f, "chan", NULL), 1); /* LISTEN acknowledged */
    assert_int_equal(count(f, "chan", "x"), 1);
    assert_true(f->calls[0].is_null); /* the ready call came first */
    fx_close(f);
}

/* Listeners for two channels; the NOTIFYs go out once both are ready.
 * The second listener registers from the first one's ready call, so its
 * LISTEN is queued while the connection is up. */
static void
on_two(void *arg, const char *channel, const char *payload)
{
    struct fx *f = arg;

    record(f, channel, payload);
    if (payload == NULL && f->phase == 0) {
        f->phase = 1;
        assert_int_equal(loom_runtime_listen(f->rt, "beta", on_two, f, &f->l2),
                         LOOM_OK);
    } else if (payload == NULL && f->phase == 1 &&
               strcmp(channel, "beta") == 0) {
        f->phase = 2;
        fx_notify(f, "alpha", "a");
        fx_notify(f, "beta", "b");
        fx_notify(f, "gamma", "g"); /* nobody listens */
    }
    if (count(f, "alpha", "a") && count(f, "beta", "b"))
        loom_runtime_stop(f->rt);
}

static void
test_runtime_listen_routes_by_channel(void **state)
{
    loom_runtime_config cfg = LOOM_RUNTIME_CONFIG_INIT;
    struct fx *f = fx_open(&cfg);

    (void) state;
    assert_int_equal(loom_runtime_listen(f->rt, "alpha", on_two, f, &f->l1),
                     LOOM_OK);
    assert_int_equal(loom_runtime_run(f->rt), LOOM_OK);
    assert_false(f->timed_out);
    assert_int_equal(count(f, "alpha", "a"), 1);
    assert_int_equal(count(f, "beta", "b"), 1);
    assert_int_equal(count(f, "alpha", "b") + count(f, "beta", "a"), 0);
    assert_int_equal(count(f, "gamma", "g"), 0);
    fx_close(f);
}

#define ODD "We\"ird 'Chan"

static void
on_odd(void *arg, const char *channel, const char *payload)
{
    struct fx *f = arg;

    record(f, channel, payload);
    if (payload == NULL && ++f->phase == 2) /* both LISTENs are active */
        fx_notify(f, ODD, "q");
    if (payload && strcmp(payload, "q") == 0)
        loom_runtime_stop(f->rt);
}

static void
test_runtime_listen_quotes_channel(void **state)
{
    loom_runtime_config cfg = LOOM_RUNTIME_CONFIG_INIT;
    struct fx *f = fx_open(&cfg);

    (void) state;
    assert_int_equal(loom_runtime_listen(f->rt, ODD, on_odd, f, &f->l1),
                     LOOM_OK);
    /* Not folded to lower case: this one must not hear ODD. */
    assert_int_equal(
        loom_runtime_listen(f->rt, "we\"ird 'chan", on_odd, f, &f->l2),
        LOOM_OK);
    assert_int_equal(loom_runtime_run(f->rt), LOOM_OK);
    assert_false(f->timed_out);
    assert_int_equal(count(f, ODD, "q"), 1);
    assert_int_equal(count(f, "we\"ird 'chan", "q"), 0);
    fx_close(f);
}

/* Listeners around one whose channel cannot be LISTENed to: once both
 * good ones are ready, each is notified. */
static void
on_around(void *arg, const char *channel, const char *payload)
{
    struct fx *f = arg;

    record(f, channel, payload);
    if (payload == NULL && ++f->phase == 2) {
        fx_notify(f, "first", "1");
        fx_notify(f, "last", "2");
    }
    if (count(f, "first", "1") && count(f, "last", "2"))
        loom_runtime_stop(f->rt);
}

/* A channel name that is not UTF-8 is refused (PQescapeIdentifier() would
 * refuse it on the connection); one that still cannot be put in a LISTEN
 * fails alone: the listeners registered before and after it get their
 * ready call and their notifications. */
static void
test_runtime_unusable_channel_holds_no_one_up(void **state)
{
    loom_runtime_config cfg = LOOM_RUNTIME_CONFIG_INIT;
    struct fx *f = fx_open(&cfg);
    loom_listener *bad = (loom_listener *) f, *mid = NULL, *last = NULL;

    (void) state;
    assert_int_equal(loom_runtime_listen(f->rt, "first", on_around, f, &f->l1),
                     LOOM_OK);
    assert_int_equal(loom_runtime_listen(f->rt, "bad\xff", on_around, f, &bad),
                     LOOM_EINVAL);
    assert_null(bad);
    assert_int_equal(f->refused_logged, 1);
    assert_int_equal(
        loom_runtime_listen(f->rt, "mid\xc3\xa9", on_around, f, &mid), LOOM_OK);
    /* White box: make it unusable after the check, as a failure of
     * PQescapeIdentifier() would (out of memory, say). */
    mid->channel[3] = (char) 0xc3;
    mid->channel[4] = (char) 0x28;
    assert_int_equal(loom_runtime_listen(f->rt, "last", on_around, f, &last),
                     LOOM_OK);
    assert_int_equal(loom_runtime_run(f->rt), LOOM_OK);
    assert_false(f->timed_out);
    assert_int_equal(count(f, "first", NULL), 1);
    assert_int_equal(count(f, "last", NULL), 1);
    assert_int_equal(count(f, "first", "1"), 1);
    assert_int_equal(count(f, "last", "2"), 1);
    assert_int_equal(f->ncalls, 4); /* nothing for the unusable one */
    assert_int_equal(f->unlistened_logged, 1);
    assert_non_null(strstr(f->unlistened_line, "mid\\xc3("));
    fx_close(f);
}

static void
on_reconnect(void *arg, const char *channel, const char *payload)
{
    struct fx *f = arg;
    char sql[256];

    record(f, channel, payload);
    if (payload == NULL && f->phase == 0) {
        /* Listening: kill our LISTEN backend. */
        f->phase = 1;
        snprintf(sql, sizeof sql,
                 "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                 "WHERE application_name = '%s'",
                 f->appname);
        fx_sql(f, sql, NULL, NULL);
    } else if (payload == NULL && f->phase == 1) {
        /* Reconnected and listening again: a real NOTIFY must arrive. */
        f->phase = 2;
        fx_notify(f, "chan", "again");
    } else if (payload && strcmp(payload, "again") == 0) {
        loom_runtime_stop(f->rt);
    }
}

static void
test_runtime_reconnects_after_backend_killed(void **state)
{
    loom_runtime_config cfg = LOOM_RUNTIME_CONFIG_INIT;
    struct fx *f;

    (void) state;
    cfg.reconnect_min_ms = 10;
    cfg.reconnect_max_ms = 200;
    f = fx_open(&cfg);
    assert_int_equal(
        loom_runtime_listen(f->rt, "chan", on_reconnect, f, &f->l1), LOOM_OK);
    assert_int_equal(loom_runtime_run(f->rt), LOOM_OK);
    assert_false(f->timed_out);
    assert_int_equal(f->phase, 2);
    assert_int_equal(count(f, "chan", NULL), 2); /* ready, then reconnect */
    assert_int_equal(count(f, "chan", "again"), 1);
    assert_true(f->lost_logged >= 1);
    assert_true(f->restored_logged >= 1);
    /* The line names the server and the delay. */
    assert_non_null(strstr(f->lost_line, "PostgreSQL at "));
    assert_non_null(strstr(f->lost_line, "retrying in "));
    fx_close(f);
}

static void
on_poll(void *arg, const char *channel, const char *payload)
{
    struct fx *f = arg;

    record(f, channel, payload);
    if (count(f, "chan", NULL) >= 3)
        loom_runtime_stop(f->rt);
}

static void
test_runtime_fallback_poll_wakes_listeners(void **state)
{
    loom_runtime_config cfg = LOOM_RUNTIME_CONFIG_INIT;
    struct fx *f;

    (void) state;
    /* No server there: only the fallback timer can wake the listener. */
    cfg.conninfo = "host=/nonexistent-loom-test port=1 connect_timeout=1";
    cfg.poll_ms = 30;
    cfg.reconnect_min_ms = 20;
    cfg.reconnect_max_ms = 40;
    f = fx_open(&cfg);
    assert_int_equal(loom_runtime_listen(f->rt, "chan", on_poll, f, &f->l1),
                     LOOM_OK);
    assert_int_equal(loom_runtime_run(f->rt), LOOM_OK);
    assert_false(f->timed_out);
    assert_int_equal(count(f, "chan", NULL), 3);
    fx_close(f);
}

static void
on_self_close(void *arg, const char *channel, const char *payload)
{
    struct fx *f = arg;

    record(f, channel, payload);
    loom_listener_close(f->l1); /* itself, during dispatch */
    f->l1 = NULL;
    if (count(f, "chan", NULL) >= 1 && ++f->phase == 1)
        uv_timer_start(&f->tick, stop_soon, 100, 0);
}

static void
test_runtime_listener_close_in_callback(void **state)
{
    loom_runtime_config cfg = LOOM_RUNTIME_CONFIG_INIT;
    struct fx *f;

    (void) state;
    cfg.poll_ms = 10;
    f = fx_open(&cfg);
    assert_int_equal(
        loom_runtime_listen(f->rt, "chan", on_self_close, f, &f->l1), LOOM_OK);
    assert_int_equal(loom_runtime_run(f->rt), LOOM_OK);
    assert_false(f->timed_out);
    assert_int_equal(f->ncalls, 1); /* closed: never called again */
    loom_listener_close(NULL);
    fx_close(f);
}

static void
noop_wake(void *arg, const char *channel, const char *payload)
{
    (void) arg;
    (void) channel;
    (void) payload;
}

static void
test_runtime_argument_errors(void **state)
{
    loom_runtime_config cfg = LOOM_RUNTIME_CONFIG_INIT;
    loom_runtime *rt = (loom_runtime *) &cfg;
    loom_listener *l = (loom_listener *) &cfg;
    char longname[LOOM_MAX_CHANNEL + 2];

    (void) state;
    assert_int_equal(loom_runtime_open(NULL, NULL), LOOM_EINVAL);
    cfg.reconnect_min_ms = 500;
    cfg.reconnect_max_ms = 100;
    assert_int_equal(loom_runtime_open(&rt, &cfg), LOOM_EINVAL);
    assert_null(rt);
    cfg.reconnect_max_ms = 0; /* the default 10 s is above 500 ms */
    assert_int_equal(loom_runtime_open(&rt, &cfg), LOOM_OK);

    memset(longname, 'c', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    assert_int_equal(loom_runtime_listen(NULL, "c", noop_wake, NULL, &l),
                     LOOM_EINVAL);
    assert_null(l);
    assert_int_equal(loom_runtime_listen(rt, NULL, noop_wake, NULL, &l),
                     LOOM_EINVAL);
    assert_int_equal(loom_runtime_listen(rt, "", noop_wake, NULL, &l),
                     LOOM_EINVAL);
    assert_int_equal(loom_runtime_listen(rt, longname, noop_wake, NULL, &l),
                     LOOM_EINVAL);
    assert_int_equal(loom_runtime_listen(rt, "\xc0\x80", noop_wake, NULL, &l),
                     LOOM_EINVAL); /* an overlong NUL is not UTF-8 */
    assert_int_equal(loom_runtime_listen(rt, "c", NULL, NULL, &l), LOOM_EINVAL);
    assert_int_equal(loom_runtime_listen(rt, "c", noop_wake, NULL, NULL),
                     LOOM_EINVAL);
    longname[LOOM_MAX_CHANNEL] = '\0';
    assert_int_equal(loom_runtime_listen(rt, longname, noop_wake, NULL, &l),
                     LOOM_OK); /* freed by loom_runtime_close() */
    loom_runtime_stop(rt);
    assert_int_equal(loom_runtime_listen(rt, "c", noop_wake, NULL, &l),
                     LOOM_EBUSY);
    loom_runtime_close(rt);
}

static void
test_runtime_borrowed_loop_survives(void **state)
{
    uv_loop_t loop;
    loom_runtime_config cfg = LOOM_RUNTIME_CONFIG_INIT;
    struct fx *f;

    (void) state;
    assert_int_equal(uv_loop_init(&loop), 0);
    cfg.loop = &loop;
    f = fx_open(&cfg);
    assert_ptr_equal(loom_runtime_loop(f->rt), &loop);
    assert_int_equal(loom_runtime_listen(f->rt, "chan", on_wake, f, &f->l1),
                     LOOM_OK);
    assert_int_equal(loom_runtime_run(f->rt), LOOM_OK);
    assert_false(f->timed_out);
    assert_int_equal(count(f, "chan", "x"), 1);
    fx_close(f);
    assert_int_equal(uv_loop_close(&loop), 0); /* nothing of ours left */
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_runtime_stop_from_timer_returns),
        cmocka_unit_test(test_runtime_stop_before_run_returns),
        cmocka_unit_test(test_runtime_sigterm_stops),
        cmocka_unit_test(test_runtime_stop_waits_for_components),
        cmocka_unit_test(test_runtime_listen_delivers_notify),
        cmocka_unit_test(test_runtime_listen_routes_by_channel),
        cmocka_unit_test(test_runtime_listen_quotes_channel),
        cmocka_unit_test(test_runtime_unusable_channel_holds_no_one_up),
        cmocka_unit_test(test_runtime_reconnects_after_backend_killed),
        cmocka_unit_test(test_runtime_fallback_poll_wakes_listeners),
        cmocka_unit_test(test_runtime_listener_close_in_callback),
        cmocka_unit_test(test_runtime_argument_errors),
        cmocka_unit_test(test_runtime_borrowed_loop_survives),
    };

    return cmocka_run_group_tests_name("framework.runtime", tests, group_setup,
                                       group_teardown);
}
