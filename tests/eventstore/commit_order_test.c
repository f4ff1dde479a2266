/*
 * The key property of the store: a reader that follows loom_store_read_all()
 * from cursor to cursor sees every committed event exactly once, in commit
 * order, although positions are handed out before commit and transactions
 * commit in any order. First two deterministic interleavings made with a
 * transaction held open on a raw connection, then eight writers racing a
 * reader over 100,000 events.
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

#include "estest.h"

/* Appends one event to `stream` through loom.append() on a raw
 * connection, inside whatever transaction `c` has open; returns its
 * position. */
static long long
raw_append(PGconn *c, const char *stream)
{
    char sql[512];
    PGresult *r;
    long long pos;

    snprintf(sql, sizeof sql,
             "SELECT last_position FROM loom.append('%s', -2, "
             "ARRAY[gen_random_uuid()], ARRAY['T'], ARRAY[1], "
             "ARRAY['\\x00'::bytea], ARRAY[NULL::bytea])",
             stream);
    r = est_query(c, sql);
    assert_int_equal(PQntuples(r), 1);
    pos = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return pos;
}

static long long
store_append(loom_store *s, const char *stream)
{
    loom_event_data ev;
    loom_append_result res;

    est_event(&ev, "T", "x", 1);
    assert_int_equal(
        loom_store_append(s, stream, LOOM_EXPECT_ANY, &ev, 1, &res), LOOM_OK);
    return res.last_position;
}

/* One read of everything after `after` (no waiting). */
static size_t
read_once(loom_store *s, loom_position after, est_seen *out, size_t cap)
{
    loom_events *page = NULL;
    size_t n;

    assert_int_equal(loom_store_read_all(s, after, 100, &page), LOOM_OK);
    n = loom_events_count(page);
    for (size_t i = 0; i < n && i < cap; i++) {
        const loom_event *ev = loom_events_at(page, i);
        out[i].at.tx = ev->tx;
        out[i].at.position = ev->position;
        out[i].version = ev->version;
        snprintf(out[i].stream, sizeof out[i].stream, "%s", ev->stream);
    }
    loom_events_free(page);
    return n;
}

/*
 * A takes the smaller position and commits last. While A is open, B's
 * event (committed, larger position) must stay invisible: a reader that
 * took it would move its cursor past A's position and lose A.
 */
static void
test_commit_order_open_transaction_holds_back_later_commits(void **state)
{
    est_fx *f = *state;
    loom_position cursor = est_read_all_end(f->s);
    PGconn *a = est_connect(NULL);
    long long pos_a, pos_b;
    est_seen seen[4];

    est_exec(a, "BEGIN");
    pos_a = raw_append(a, "hold-a");
    pos_b = store_append(f->s, "hold-b");
    assert_true(pos_a < pos_b);
    /* Asked repeatedly, never B (nor A) while A is open. */
    for (int i = 0; i < 20; i++) {
        assert_int_equal(read_once(f->s, cursor, seen, 4), 0);
        est_sleep_ms(2);
    }
    est_exec(a, "COMMIT");
    /* Now both, A first: its transaction began first. */
    assert_int_equal(
        est_collect_all(f->s, &cursor, 100, "hold-", seen, 4, 2, 10000), 2);
    assert_string_equal(seen[0].stream, "hold-a");
    assert_string_equal(seen[1].stream, "hold-b");
    assert_int_equal(seen[0].at.position, pos_a);
    assert_int_equal(seen[1].at.position, pos_b);
    assert_true(seen[0].at.tx < seen[1].at.tx);
    PQfinish(a);
}

/*
 * X gets its transaction id first but writes last (larger position) and
 * commits last; Y writes first (smaller position) and commits first. The
 * reader must return X before Y, against position order, and must not
 * return Y until X is done.
 */
static void
test_commit_order_smaller_tx_larger_position(void **state)
{
    est_fx *f = *state;
    loom_position start = est_read_all_end(f->s), cursor = start;
    PGconn *x = est_connect(NULL);
    long long pos_x, pos_y;
    est_seen seen[4], again[4];

    est_exec(x, "BEGIN");
    est_exec(x, "SELECT pg_current_xact_id()"); /* take an id now */
    pos_y = store_append(f->s, "late-y");
    assert_int_equal(read_once(f->s, cursor, seen, 4), 0);
    pos_x = raw_append(x, "late-x");
    assert_true(pos_y < pos_x);
    assert_int_equal(read_once(f->s, cursor, seen, 4), 0);
    est_exec(x, "COMMIT");
    assert_int_equal(
        est_collect_all(f->s, &cursor, 100, "late-", seen, 4, 2, 10000), 2);
    assert_string_equal(seen[0].stream, "late-x");
    assert_string_equal(seen[1].stream, "late-y");
    assert_int_equal(seen[0].at.position, pos_x);
    assert_int_equal(seen[1].at.position, pos_y);
    assert_true(seen[0].at.tx < seen[1].at.tx);
    /* A reader starting over sees the same order. */
    assert_int_equal(read_once(f->s, start, again, 4), 2);
    assert_int_equal(again[0].at.position, pos_x);
    assert_int_equal(again[1].at.position, pos_y);
    PQfinish(x);
}

/* ------------------------------------------------------------------ */
/* Eight writers and a reader                                          */

enum {
    WRITERS = 8,
    STREAMS_PER_WRITER = 4,
    EVENTS_PER_WRITER = 12500, /* 100,000 in all */
    READ_PAGE = 500
};

/* Batch sizes, in turn: single events (one commit each) and batches. */
static const size_t batch_sizes[] = {1, 10, 1, 50, 1, 10};

typedef struct writer {
    pthread_t thread;
    int index;
    loom_store *s;
    pthread_barrier_t *start;
    size_t written;
    loom_err error; /* first failure, LOOM_OK if none */
    char errmsg[256];
} writer;

typedef struct seen_event {
    uint64_t tx;
    int64_t position;
    int64_t version;
    int stream; /* writer * STREAMS_PER_WRITER + k, or -1: not a writer's */
} seen_event;

typedef struct reader {
    pthread_t thread;
    loom_store *s;
    pthread_barrier_t *start;
    atomic_long target; /* events to see before stopping; -1: not known */
    seen_event *seen;
    size_t n, cap;
    size_t reads;
    loom_err error;
    char errmsg[256];
} reader;

static void *
writer_main(void *arg)
{
    writer *w = arg;
    int64_t next[STREAMS_PER_WRITER] = {0};
    loom_event_data ev[50];
    char stream[32];
    size_t k = 0;

    pthread_barrier_wait(w->start);
    while (w->written < EVENTS_PER_WRITER) {
        size_t n = batch_sizes[k % (sizeof batch_sizes / sizeof *batch_sizes)];
        int st = (int) (k % STREAMS_PER_WRITER);
        loom_err rc;
        if (n > EVENTS_PER_WRITER - w->written)
            n = EVENTS_PER_WRITER - w->written;
        snprintf(stream, sizeof stream, "cow-%d-%d", w->index, st);
        for (size_t i = 0; i < n; i++)
            est_event(&ev[i], "W", stream, strlen(stream));
        /* Exact expected versions: this writer owns its streams. */
        rc = loom_store_append(w->s, stream, next[st] - 1, ev, n, NULL);
        if (rc != LOOM_OK) {
            w->error = rc;
            snprintf(w->errmsg, sizeof w->errmsg, "%s",
                     loom_store_errmsg(w->s));
            return NULL;
        }
        next[st] += (int64_t) n;
        w->written += n;
        k++;
    }
    return NULL;
}

static int
stream_index(const char *name)
{
    int w, k;
    char tail;

    if (sscanf(name, "cow-%d-%d%c", &w, &k, &tail) != 2 || w < 0 ||
        w >= WRITERS || k < 0 || k >= STREAMS_PER_WRITER)
        return -1;
    return w * STREAMS_PER_WRITER + k;
}

static int
reader_fail(reader *r, loom_err rc, const char *msg)
{
    r->error = rc;
    snprintf(r->errmsg, sizeof r->errmsg, "%s", msg);
    return 0;
}

/* Copies one page into r->seen; 0 on failure. */
static int
reader_take(reader *r, const loom_events *page)
{
    size_t n = loom_events_count(page);

    if (r->n + n > r->cap) {
        size_t cap = (r->n + n) * 2;
        seen_event *p = realloc(r->seen, cap * sizeof *p);
        if (p == NULL)
            return reader_fail(r, LOOM_ENOMEM, "reader out of memory");
        r->seen = p;
        r->cap = cap;
    }
    for (size_t i = 0; i < n; i++) {
        const loom_event *ev = loom_events_at(page, i);
        seen_event *e = &r->seen[r->n++];
        e->tx = ev->tx;
        e->position = ev->position;
        e->version = ev->version;
        e->stream = stream_index(ev->stream);
    }
    return 1;
}

static void *
reader_main(void *arg)
{
    reader *r = arg;
    loom_position cursor = {0, 0};
    int64_t deadline = 0;

    pthread_barrier_wait(r->start);
    for (;;) {
        loom_events *page = NULL;
        long target = atomic_load(&r->target);
        loom_err rc;
        if (target >= 0 && (long) r->n >= target)
            return NULL;
        /* Writers are done: whatever is missing must turn up soon. */
        if (target >= 0 && deadline == 0)
            deadline = est_now_ms() + 30000;
        if (deadline != 0 && est_now_ms() > deadline) {
            reader_fail(r, LOOM_EAGAIN, "reader timed out draining");
            return NULL;
        }
        rc = loom_store_read_all(r->s, cursor, READ_PAGE, &page);
        r->reads++;
        if (rc != LOOM_OK) {
            reader_fail(r, rc, loom_store_errmsg(r->s));
            return NULL;
        }
        if (!reader_take(r, page)) {
            loom_events_free(page);
            return NULL;
        }
        cursor = loom_events_next(page);
        if (loom_events_count(page) == 0 && target >= 0)
            est_sleep_ms(1);
        loom_events_free(page);
    }
}

static void
test_commit_order_reader_sees_every_event_once(void **state)
{
    est_fx *f = *state;
    pthread_barrier_t start;
    writer w[WRITERS];
    reader r;
    long long total, max_pos;
    unsigned char *bitmap;
    int64_t next_version[WRITERS * STREAMS_PER_WRITER];
    int64_t t0;
    size_t mine = 0;

    (void) f;
    memset(&r, 0, sizeof r);
    atomic_init(&r.target, -1);
    r.s = loomt_store_open();
    r.start = &start;
    assert_int_equal(pthread_barrier_init(&start, NULL, WRITERS + 2), 0);
    /* Open every handle before any thread waits on the barrier, so a
     * failed open cannot leave threads stuck there. */
    for (int i = 0; i < WRITERS; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].index = i;
        w[i].s = loomt_store_open();
        w[i].start = &start;
    }
    for (int i = 0; i < WRITERS; i++)
        assert_int_equal(pthread_create(&w[i].thread, NULL, writer_main, &w[i]),
                         0);
    assert_int_equal(pthread_create(&r.thread, NULL, reader_main, &r), 0);
    t0 = est_now_ms();
    pthread_barrier_wait(&start);
    for (int i = 0; i < WRITERS; i++)
        pthread_join(w[i].thread, NULL);
    /* Every writer's transaction has ended: the table is final. */
    total = loomt_sql_ll("SELECT count(*) FROM loom.events");
    max_pos = loomt_sql_ll("SELECT max(position) FROM loom.events");
    atomic_store(&r.target, (long) total);
    pthread_join(r.thread, NULL);
    print_message("    %d writers wrote %d events in %lld ms; the reader "
                  "made %zu reads\n",
                  WRITERS, WRITERS * EVENTS_PER_WRITER,
                  (long long) (est_now_ms() - t0), r.reads);
    for (int i = 0; i < WRITERS; i++) {
        if (w[i].error != LOOM_OK)
            fail_msg("writer %d: %s: %s", i, loom_err_name(w[i].error),
                     w[i].errmsg);
        assert_int_equal(w[i].written, EVENTS_PER_WRITER);
        loom_store_close(w[i].s);
    }
    if (r.error != LOOM_OK)
        fail_msg("reader: %s: %s (saw %zu of %lld)", loom_err_name(r.error),
                 r.errmsg, r.n, total);
    loom_store_close(r.s);
    pthread_barrier_destroy(&start);

    /* Exactly the committed events, each once. */
    assert_int_equal(r.n, (size_t) total);
    bitmap = calloc((size_t) max_pos + 1, 1);
    assert_non_null(bitmap);
    for (int i = 0; i < WRITERS * STREAMS_PER_WRITER; i++)
        next_version[i] = 0;
    for (size_t i = 0; i < r.n; i++) {
        const seen_event *e = &r.seen[i];
        assert_true(e->position >= 1 && e->position <= max_pos);
        if (bitmap[e->position])
            fail_msg("position %lld seen twice", (long long) e->position);
        bitmap[e->position] = 1;
        /* Strictly increasing (tx, position): commit order, no going
         * back. */
        if (i > 0 && !(r.seen[i - 1].tx < e->tx ||
                       (r.seen[i - 1].tx == e->tx &&
                        r.seen[i - 1].position < e->position)))
            fail_msg("event %zu (%llu, %lld) not after (%llu, %lld)", i,
                     (unsigned long long) e->tx, (long long) e->position,
                     (unsigned long long) r.seen[i - 1].tx,
                     (long long) r.seen[i - 1].position);
        /* Each stream's versions arrive as 0, 1, 2, ... */
        if (e->stream >= 0) {
            if (e->version != next_version[e->stream])
                fail_msg("stream %d: version %lld seen when %lld was next",
                         e->stream, (long long) e->version,
                         (long long) next_version[e->stream]);
            next_version[e->stream]++;
            mine++;
        }
    }
    assert_int_equal(mine, WRITERS * EVENTS_PER_WRITER);
    free(bitmap);
    free(r.seen);
}

int
main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, est_setup, est_teardown)
    const struct CMUnitTest tests[] = {
        T(test_commit_order_open_transaction_holds_back_later_commits),
        T(test_commit_order_smaller_tx_larger_position),
        T(test_commit_order_reader_sees_every_event_once),
    };
#undef T

    return cmocka_run_group_tests_name("eventstore.commit_order", tests,
                                       est_group_setup, est_group_teardown);
}
