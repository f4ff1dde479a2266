/*
 * A projection runner killed with SIGKILL at random moments, again and
 * again while a writer appends, leaves a read model equal to a fresh
 * replay: every handled event counted once, none twice, none missing.
 *
 * The writer is a child process appending "c.Add" (handled) and "c.Other"
 * (not handled) events to 20 streams until its pipe closes. Each round
 * forks a runner child (a runtime with the projection's live runner and
 * nothing else, a random batch size) and kills it after a random delay,
 * so kills land while it registers, reads, waits in its handler's
 * pipelined transaction or sleeps; a transaction the dead client had
 * sent may even commit after the next runner loaded the checkpoint,
 * which the checkpoint's compare-and-set must catch. At the end the
 * writer stops, one runner (in the parent) catches up, and the model is
 * compared with the count taken straight from loom.events.
 *
 * fork(): the parent keeps no libpq connection, runtime or thread across
 * a fork (each of its queries opens and closes a connection), and the
 * children never call cmocka: they report through their exit status.
 * LOOM_TEST_SEED=<n> replays a run's kill delays and batch sizes.
 */
#include <errno.h>
#include <poll.h>
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
#include <uv.h>

#include "estest.h"
#include "loom/log.h"
#include "loom/projection.h"

#define PC_STREAMS    20
#define PC_KILLS      20
#define PC_MIN_DELAY  20  /* ms before a kill, at least */
#define PC_SPAN_DELAY 700 /* ... plus up to this */
#define PC_CHECKPOINT "projection:pcrash"

/* Exit statuses of the children, for the parent's messages. */
enum {
    PC_EXIT_OPEN = 2,   /* the store or runtime did not open */
    PC_EXIT_APPEND = 3, /* an append failed */
    PC_EXIT_START = 4,  /* loom_projection_start() failed */
    PC_EXIT_RAN = 5     /* loom_runtime_run() returned: nothing stops it */
};

static loom_err
pc_setup(loom_tx *tx, void *arg)
{
    (void) arg;
    return loom_tx_exec(tx,
                        "CREATE TABLE counts (stream text PRIMARY KEY, "
                        "n bigint NOT NULL)",
                        0, NULL);
}

static loom_err
pc_add(loom_tx *tx, const loom_event *ev, void *arg)
{
    const char *v[1] = {ev->stream};

    (void) arg;
    return loom_tx_exec(tx,
                        "INSERT INTO counts (stream, n) VALUES ($1, 1) "
                        "ON CONFLICT (stream) DO UPDATE SET n = counts.n + 1",
                        1, v);
}

static const loom_projection_handler pc_handlers[] = {{"c.Add", pc_add}};

static const loom_projection_def pc_def = {
    .name = "pcrash",
    .schema = "pcrash_model",
    .handlers = pc_handlers,
    .n_handlers = 1,
    .setup = pc_setup,
};

/* Expected warnings (a killed client's backend, retries) stay quiet
 * unless LOOM_TEST_VERBOSE is set. */
static void
pc_log(void *arg, loom_log_level level, const char *msg)
{
    (void) arg;
    if (getenv("LOOM_TEST_VERBOSE") != NULL)
        fprintf(stderr, "[%ld] log %s: %s\n", (long) getpid(),
                loom_log_level_name(level), msg);
}

/* ------------------------------------------------------------------ */
/* The children                                                        */

static void
pc_child_init(void)
{
    /* A parent that dies (a failed assertion, ctest's timeout) takes its
     * children along. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    loom_log_set(pc_log, NULL);
}

/* Appends batches of 1 to 4 events to random streams until `stop_fd`
 * reads EOF (the parent closed its end). */
static void
pc_writer(int stop_fd, unsigned seed)
{
    loom_store_config c = LOOM_STORE_CONFIG_INIT;
    loom_store *s = NULL;
    char err[512];

    pc_child_init();
    c.conninfo = loomt_dsn();
    if (loom_store_open(&s, &c, err, sizeof err) != LOOM_OK) {
        fprintf(stderr, "writer: %s\n", err);
        _exit(PC_EXIT_OPEN);
    }
    for (;;) {
        struct pollfd p = {stop_fd, POLLIN, 0};
        loom_event_data ev[4];
        char stream[32];
        int n = 1 + (int) (rand_r(&seed) % 4);
        struct timespec pace = {0, 1000000};

        if (poll(&p, 1, 0) != 0)
            break;
        snprintf(stream, sizeof stream, "cc-%u", rand_r(&seed) % PC_STREAMS);
        for (int i = 0; i < n; i++)
            est_event(&ev[i], rand_r(&seed) % 3 == 2 ? "c.Other" : "c.Add", "x",
                      1);
        if (loom_store_append(s, stream, LOOM_EXPECT_ANY, ev, (size_t) n,
                              NULL) != LOOM_OK) {
            fprintf(stderr, "writer: %s\n", loom_store_errmsg(s));
            _exit(PC_EXIT_APPEND);
        }
        nanosleep(&pace, NULL);
    }
    loom_store_close(s);
    _exit(0);
}

/* Runs the projection until killed. */
static void
pc_runner(size_t batch)
{
    loom_runtime_config rc = LOOM_RUNTIME_CONFIG_INIT;
    loom_projection_options o = LOOM_PROJECTION_OPTIONS_INIT;
    loom_runtime *rt = NULL;
    loom_projection *p = NULL;
    loom_err err;

    pc_child_init();
    rc.conninfo = loomt_dsn();
    rc.reconnect_min_ms = 5;
    rc.reconnect_max_ms = 50;
    rc.poll_ms = 100;
    if (loom_runtime_open(&rt, &rc) != LOOM_OK)
        _exit(PC_EXIT_OPEN);
    o.conninfo = loomt_dsn();
    o.batch = batch;
    err = loom_projection_start(rt, &pc_def, &o, &p);
    if (err != LOOM_OK) {
        fprintf(stderr, "runner: loom_projection_start: %s\n",
                loom_err_name(err));
        _exit(PC_EXIT_START);
    }
    loom_runtime_run(rt);
    _exit(PC_EXIT_RAN);
}

/* ------------------------------------------------------------------ */
/* The parent                                                          */

static pid_t
pc_fork(void)
{
    pid_t pid;

    fflush(stdout); /* or the child's exit could print it twice */
    fflush(stderr);
    pid = fork();
    assert_true(pid >= 0);
    return pid;
}

/* The checkpoint row's version (its xmin changes with every commit that
 * moves it), or -1 when there is none yet. */
static long long
pc_checkpoint_stamp(void)
{
    return est_ll("SELECT coalesce((SELECT xmin::text::bigint FROM "
                  "loom.checkpoints WHERE name = '%s'), -1)",
                  PC_CHECKPOINT);
}

/* The checkpoint has reached the last event in commit order. */
static int
pc_caught_up(PGconn **probe)
{
    return est_try_ll_on(
               probe,
               "SELECT count(*) FROM loom.checkpoints c WHERE c.name = "
               "'%s' AND (c.tx, c.position) = (SELECT tx, position "
               "FROM loom.events ORDER BY tx DESC, position DESC "
               "LIMIT 1)",
               PC_CHECKPOINT) == 1;
}

/* Streams whose model count differs from a fresh count over loom.events
 * (in either direction), printed; returns how many. */
static long long
pc_mismatches(void)
{
    static const char diff[] =
        "SELECT stream, e.n, m.n FROM (SELECT stream, count(*) AS n FROM "
        "loom.events WHERE type = 'c.Add' GROUP BY stream) e FULL JOIN "
        "pcrash_model.counts m USING (stream) WHERE e.n IS DISTINCT FROM m.n";
    PGconn *c = est_connect(NULL);
    PGresult *r = est_query(c, diff);
    long long n = PQntuples(r);

    for (int i = 0; i < PQntuples(r); i++)
        fprintf(stderr, "stream %s: %s c.Add events, model says %s\n",
                PQgetvalue(r, i, 0), PQgetvalue(r, i, 1),
                PQgetisnull(r, i, 2) ? "nothing" : PQgetvalue(r, i, 2));
    PQclear(r);
    PQfinish(c);
    return n;
}

/* Waits for `pid` and fails the test unless it ended as `sig` (0: exit
 * status 0). */
static void
pc_reap(pid_t pid, int sig, const char *what)
{
    int status = 0;

    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (sig != 0 && WIFSIGNALED(status) && WTERMSIG(status) == sig)
        return;
    if (sig == 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return;
    if (WIFEXITED(status))
        fail_msg("%s exited by itself with status %d", what,
                 WEXITSTATUS(status));
    fail_msg("%s died of signal %d", what,
             WIFSIGNALED(status) ? WTERMSIG(status) : -1);
}

struct pc_run {
    loom_runtime *rt;
    uv_timer_t check, deadline;
    PGconn *probe;
    int timed_out;
};

static void
pc_on_check(uv_timer_t *t)
{
    struct pc_run *r = t->data;

    if (pc_caught_up(&r->probe))
        loom_runtime_stop(r->rt);
}

static void
pc_on_deadline(uv_timer_t *t)
{
    struct pc_run *r = t->data;

    r->timed_out = 1;
    loom_runtime_stop(r->rt);
}

/* One runner in this process until the checkpoint reaches the last event
 * (at most 30 s). Only after the last fork. */
static void
pc_catch_up(void)
{
    loom_runtime_config rc = LOOM_RUNTIME_CONFIG_INIT;
    loom_projection_options o = LOOM_PROJECTION_OPTIONS_INIT;
    loom_projection *p = NULL;
    struct pc_run r;
    uv_loop_t *loop;

    memset(&r, 0, sizeof r);
    rc.conninfo = loomt_dsn();
    rc.reconnect_min_ms = 5;
    rc.reconnect_max_ms = 50;
    rc.poll_ms = 100;
    assert_int_equal(loom_runtime_open(&r.rt, &rc), LOOM_OK);
    o.conninfo = loomt_dsn();
    assert_int_equal(loom_projection_start(r.rt, &pc_def, &o, &p), LOOM_OK);
    loop = loom_runtime_loop(r.rt);
    uv_timer_init(loop, &r.check);
    uv_timer_init(loop, &r.deadline);
    r.check.data = r.deadline.data = &r;
    uv_timer_start(&r.check, pc_on_check, 20, 20);
    uv_timer_start(&r.deadline, pc_on_deadline, 30000, 0);
    assert_int_equal(loom_runtime_run(r.rt), LOOM_OK);
    uv_close((uv_handle_t *) &r.check, NULL);
    uv_close((uv_handle_t *) &r.deadline, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    PQfinish(r.probe);
    loom_projection_close(p);
    loom_runtime_close(r.rt);
    assert_int_equal(r.timed_out, 0);
}

static unsigned
pc_seed(void)
{
    const char *env = getenv("LOOM_TEST_SEED");

    if (env != NULL && env[0] != '\0')
        return (unsigned) strtoul(env, NULL, 10);
    return (unsigned) time(NULL) ^ ((unsigned) getpid() << 16);
}

static void
test_projection_crash_sigkilled_runner_leaves_model_equal_to_replay(
    void **state)
{
    unsigned seed = pc_seed();
    int stop[2], moved = 0;
    pid_t writer;
    int64_t t0 = est_now_ms();

    (void) state;
    printf("projection_crash_test: seed %u (LOOM_TEST_SEED=%u replays it)\n",
           seed, seed);
    srand(seed);
    /* The schema, before any child opens a store that only checks it. */
    loom_store_close(loomt_store_open());

    assert_int_equal(pipe(stop), 0);
    writer = pc_fork();
    if (writer == 0) {
        close(stop[1]);
        pc_writer(stop[0], seed);
    }
    close(stop[0]);

    for (int round = 0; round < PC_KILLS; round++) {
        int delay = PC_MIN_DELAY + rand() % PC_SPAN_DELAY;
        size_t batch = 1 + (size_t) (rand() % 64);
        struct timespec ts = {0, (long) delay * 1000000L};
        long long before = pc_checkpoint_stamp();
        pid_t runner = pc_fork();

        if (runner == 0) {
            close(stop[1]);
            pc_runner(batch);
        }
        nanosleep(&ts, NULL);
        assert_int_equal(kill(runner, SIGKILL), 0);
        pc_reap(runner, SIGKILL, "a projection runner");
        if (pc_checkpoint_stamp() != before)
            moved++;
    }
    close(stop[1]); /* the writer stops after the append in hand */
    pc_reap(writer, 0, "the writer");
    printf("projection_crash_test: %d kills in %lld ms, the checkpoint moved "
           "in %d runs; %lld events (%lld c.Add)\n",
           PC_KILLS, (long long) (est_now_ms() - t0), moved,
           est_ll("SELECT count(*) FROM loom.events"),
           est_ll("SELECT count(*) FROM loom.events WHERE type = 'c.Add'"));
    /* The kills hit runners at work, not only ones still starting. */
    assert_true(moved >= PC_KILLS / 4);

    pc_catch_up();
    {
        PGconn *probe = NULL;
        assert_true(pc_caught_up(&probe));
        PQfinish(probe);
    }
    assert_int_equal(pc_mismatches(), 0);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.parked"), 0);
    /* Both types were written, and only c.Add counted. */
    assert_true(est_ll("SELECT count(*) FROM loom.events WHERE type = "
                       "'c.Other'") > 0);
    assert_int_equal(
        est_ll("SELECT sum(n) FROM pcrash_model.counts"),
        est_ll("SELECT count(*) FROM loom.events WHERE type = 'c.Add'"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            test_projection_crash_sigkilled_runner_leaves_model_equal_to_replay),
    };

    loom_log_set(pc_log, NULL);
    return cmocka_run_group_tests_name("eventstore.projection_crash", tests,
                                       est_group_setup, est_group_teardown);
}
