/*
 * Optimistic concurrency on one stream: threads race read-version-then-
 * append; every append either wins a version no one else got or fails
 * with LOOM_ECONFLICT, and the stream ends up gap-free. Also the races
 * the stream row lock settles: creating a stream, and appends without an
 * expectation.
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

#include "estest.h"

enum { THREADS = 8 };

typedef struct worker {
    pthread_t thread;
    loom_store *s;
    pthread_barrier_t *start;
    const char *stream;
    int64_t expected; /* for the fixed-expectation tests */
    size_t goal;      /* successes wanted */
    /* Results. */
    int64_t *versions; /* first version of each success */
    size_t successes;
    size_t conflicts;
    size_t bad_actual; /* conflicts whose actual version made no sense */
    size_t other;      /* any other outcome */
    loom_err other_rc;
    char other_msg[256];
} worker;

struct fx {
    worker w[THREADS];
    pthread_barrier_t start;
};

static int
setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);

    assert_non_null(f);
    assert_int_equal(pthread_barrier_init(&f->start, NULL, THREADS), 0);
    for (int i = 0; i < THREADS; i++) {
        f->w[i].s = loomt_store_open();
        f->w[i].start = &f->start;
    }
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fx *f = *state;

    for (int i = 0; i < THREADS; i++) {
        loom_store_close(f->w[i].s);
        free(f->w[i].versions);
    }
    pthread_barrier_destroy(&f->start);
    free(f);
    return 0;
}

static void
worker_other(worker *w, loom_err rc)
{
    if (w->other++ == 0) {
        w->other_rc = rc;
        snprintf(w->other_msg, sizeof w->other_msg, "%s",
                 loom_store_errmsg(w->s));
    }
}

/* Reads the version, appends expecting it; until `goal` successes. */
static void *
optimistic_main(void *arg)
{
    worker *w = arg;
    size_t attempts = 0;

    pthread_barrier_wait(w->start);
    while (w->successes < w->goal && attempts++ < 100000 && w->other == 0) {
        loom_event_data ev;
        loom_append_result res;
        int64_t v = -9;
        loom_err rc = loom_store_stream_version(w->s, w->stream, &v);
        if (rc != LOOM_OK) {
            worker_other(w, rc);
            break;
        }
        est_event(&ev, "Inc", "+", 1);
        rc = loom_store_append(w->s, w->stream, v, &ev, 1, &res);
        if (rc == LOOM_OK) {
            if (res.first_version != v + 1)
                w->bad_actual++;
            w->versions[w->successes++] = res.first_version;
        } else if (rc == LOOM_ECONFLICT) {
            /* Someone else moved the stream on since we read it. */
            if (res.actual_version <= v)
                w->bad_actual++;
            w->conflicts++;
        } else {
            worker_other(w, rc);
        }
    }
    return NULL;
}

/* Appends `goal` single events with a fixed expectation. */
static void *
fixed_main(void *arg)
{
    worker *w = arg;

    pthread_barrier_wait(w->start);
    for (size_t i = 0; i < w->goal; i++) {
        loom_event_data ev;
        loom_append_result res;
        loom_err rc;
        est_event(&ev, "Fixed", "f", 1);
        rc = loom_store_append(w->s, w->stream, w->expected, &ev, 1, &res);
        if (rc == LOOM_OK)
            w->versions[w->successes++] = res.first_version;
        else if (rc == LOOM_ECONFLICT)
            w->conflicts++;
        else
            worker_other(w, rc);
    }
    return NULL;
}

static void
run_workers(struct fx *f, void *(*fn)(void *), const char *stream,
            int64_t expected, size_t goal)
{
    for (int i = 0; i < THREADS; i++) {
        worker *w = &f->w[i];
        free(w->versions);
        w->versions = calloc(goal, sizeof *w->versions);
        assert_non_null(w->versions);
        w->stream = stream;
        w->expected = expected;
        w->goal = goal;
        w->successes = w->conflicts = w->bad_actual = w->other = 0;
    }
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&f->w[i].thread, NULL, fn, &f->w[i]),
                         0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(f->w[i].thread, NULL);
    for (int i = 0; i < THREADS; i++)
        if (f->w[i].other != 0)
            fail_msg("thread %d: %zu unexpected results, first %s: %s", i,
                     f->w[i].other, loom_err_name(f->w[i].other_rc),
                     f->w[i].other_msg);
}

/* Checks the successes' versions are exactly 0..n-1, each once, and
 * that the stream agrees; returns n. */
static size_t
check_gap_free(struct fx *f, const char *stream)
{
    size_t n = 0;
    unsigned char *hit;

    for (int i = 0; i < THREADS; i++)
        n += f->w[i].successes;
    hit = calloc(n + 1, 1);
    assert_non_null(hit);
    for (int i = 0; i < THREADS; i++)
        for (size_t k = 0; k < f->w[i].successes; k++) {
            int64_t v = f->w[i].versions[k];
            assert_true(v >= 0 && v < (int64_t) n);
            if (hit[v])
                fail_msg("version %lld won twice", (long long) v);
            hit[v] = 1;
        }
    free(hit);
    assert_int_equal(est_count_stream(stream), (long long) n);
    assert_int_equal(est_ll("SELECT max(version) + 1 FROM loom.events "
                            "WHERE stream = '%s'",
                            stream),
                     (long long) n);
    assert_int_equal(est_ll("SELECT count(DISTINCT version) FROM loom.events "
                            "WHERE stream = '%s'",
                            stream),
                     (long long) n);
    assert_int_equal(
        est_ll("SELECT version + 1 FROM loom.streams WHERE stream = '%s'",
               stream),
        (long long) n);
    return n;
}

static void
test_concurrency_same_stream_optimistic(void **state)
{
    enum { PER_THREAD = 40 };
    struct fx *f = *state;
    size_t conflicts = 0, bad = 0;
    int64_t t0 = est_now_ms();

    run_workers(f, optimistic_main, "race-1", 0, PER_THREAD);
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(f->w[i].successes, PER_THREAD);
        conflicts += f->w[i].conflicts;
        bad += f->w[i].bad_actual;
    }
    assert_int_equal(check_gap_free(f, "race-1"), THREADS * PER_THREAD);
    assert_int_equal(bad, 0);
    /* Both outcomes happened: the race was real. */
    assert_true(conflicts > 0);
    print_message("    %d successes, %zu conflicts in %lld ms\n",
                  THREADS * PER_THREAD, conflicts,
                  (long long) (est_now_ms() - t0));
}

static void
test_concurrency_any_appends_serialise(void **state)
{
    enum { PER_THREAD = 50 };
    struct fx *f = *state;

    run_workers(f, fixed_main, "any-1", LOOM_EXPECT_ANY, PER_THREAD);
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(f->w[i].successes, PER_THREAD);
        assert_int_equal(f->w[i].conflicts, 0);
    }
    assert_int_equal(check_gap_free(f, "any-1"), THREADS * PER_THREAD);
}

static void
test_concurrency_one_creator_wins(void **state)
{
    struct fx *f = *state;

    /* All threads create the same new stream at once, many times over:
     * exactly one wins each stream. */
    for (int round = 0; round < 20; round++) {
        char stream[32];
        size_t wins = 0, conflicts = 0;
        snprintf(stream, sizeof stream, "create-%d", round);
        run_workers(f, fixed_main, stream, LOOM_EXPECT_NO_STREAM, 1);
        for (int i = 0; i < THREADS; i++) {
            wins += f->w[i].successes;
            conflicts += f->w[i].conflicts;
        }
        assert_int_equal(wins, 1);
        assert_int_equal(conflicts, THREADS - 1);
        assert_int_equal(check_gap_free(f, stream), 1);
    }
}

/* Every thread appends the same events (same ids) to one stream. */
static loom_event_data shared_batch[3];

static void *
retry_main(void *arg)
{
    worker *w = arg;
    loom_event_data mine[3];
    loom_append_result res;
    loom_err rc;

    memcpy(mine, shared_batch, sizeof mine);
    pthread_barrier_wait(w->start);
    rc = loom_store_append(w->s, w->stream, w->expected, mine, 3, &res);
    if (rc != LOOM_OK) {
        worker_other(w, rc);
        return NULL;
    }
    /* successes counts writes, conflicts counts replays here. */
    if (res.replayed)
        w->conflicts++;
    else
        w->successes++;
    w->versions[0] = res.first_version;
    return NULL;
}

static void
test_concurrency_identical_retries_write_once(void **state)
{
    struct fx *f = *state;
    const int64_t expectations[2] = {LOOM_EXPECT_NO_STREAM, 2};

    /* The same append retried by many clients at once, on a new stream
     * and on an existing one: one writes, the others see replays. */
    for (int k = 0; k < 2; k++) {
        const char *stream = k == 0 ? "retry-new" : "retry-old";
        size_t writes = 0, replays = 0;
        if (k == 1) {
            loom_event_data pre[3];
            for (int i = 0; i < 3; i++)
                est_event(&pre[i], "Pre", "p", 1);
            assert_int_equal(loom_store_append(f->w[0].s, stream,
                                               LOOM_EXPECT_NO_STREAM, pre, 3,
                                               NULL),
                             LOOM_OK);
        }
        for (int i = 0; i < 3; i++) {
            est_event(&shared_batch[i], "Same", "s", 1);
            assert_int_equal(loom_uuid_generate(&shared_batch[i].id), LOOM_OK);
        }
        run_workers(f, retry_main, stream, expectations[k], 1);
        for (int i = 0; i < THREADS; i++) {
            writes += f->w[i].successes;
            replays += f->w[i].conflicts;
            assert_int_equal(f->w[i].versions[0], k == 0 ? 0 : 3);
        }
        assert_int_equal(writes, 1);
        assert_int_equal(replays, THREADS - 1);
        assert_int_equal(est_count_stream(stream), k == 0 ? 3 : 6);
    }
}

int
main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_concurrency_same_stream_optimistic),
        T(test_concurrency_any_appends_serialise),
        T(test_concurrency_one_creator_wins),
        T(test_concurrency_identical_retries_write_once),
    };
#undef T

    return cmocka_run_group_tests_name("eventstore.concurrency", tests,
                                       est_group_setup, est_group_teardown);
}
