/*
 * Allocation failure: an allocator installed with loom_set_allocator()
 * fails the Nth allocation (or every one from the Nth on), for N = 0, 1,
 * 2, ... until the operation succeeds. Each failure must be a clean
 * LOOM_ENOMEM that changes nothing in the database and frees everything
 * it allocated: the allocator counts live blocks, and the sanitizer build
 * also runs LeakSanitizer over it. (libpq allocates with malloc directly;
 * only Eventloom's own allocations are failed.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "estest.h"

/* The failing allocator. One thread only: the counters are plain. */
static struct {
    long count;   /* allocations attempted since the last arm() */
    long fail_at; /* index of the first to fail; -1: none */
    int sticky;   /* fail every allocation from fail_at on */
    long failed;  /* allocations refused since the last arm() */
    long live;    /* blocks allocated and not yet freed */
} fa = {0, -1, 0, 0, 0};

static int
fa_refuse(void)
{
    long i = fa.count++;

    if (fa.fail_at >= 0 && (i == fa.fail_at || (fa.sticky && i > fa.fail_at))) {
        fa.failed++;
        return 1;
    }
    return 0;
}

static void *
fa_malloc(size_t size, void *arg)
{
    void *p;

    (void) arg;
    if (fa_refuse())
        return NULL;
    p = malloc(size ? size : 1);
    if (p != NULL)
        fa.live++;
    return p;
}

static void *
fa_realloc(void *ptr, size_t size, void *arg)
{
    void *p;

    (void) arg;
    if (fa_refuse())
        return NULL;
    p = realloc(ptr, size ? size : 1);
    if (p != NULL && ptr == NULL)
        fa.live++;
    return p;
}

static void
fa_free(void *ptr, void *arg)
{
    (void) arg;
    if (ptr != NULL) {
        fa.live--;
        free(ptr);
    }
}

/* Fails allocation number n from now on (and all after it if sticky). */
static void
fa_arm(long n, int sticky)
{
    fa.count = 0;
    fa.failed = 0;
    fa.fail_at = n;
    fa.sticky = sticky;
}

static void
fa_disarm(void)
{
    fa.fail_at = -1;
}

static int
group_setup(void **state)
{
    static const loom_allocator a = {fa_malloc, fa_realloc, fa_free, NULL};

    (void) state;
    /* Before any handle exists, as loom_set_allocator() requires. */
    assert_int_equal(loom_set_allocator(&a), LOOM_OK);
    loomt_db_create("alloc");
    /* Migrate once; the tests open with LOOM_MIGRATE_CHECK. */
    loom_store_close(loomt_store_open());
    return 0;
}

static int
group_teardown(void **state)
{
    (void) state;
    loomt_db_drop();
    loom_set_allocator(NULL);
    return 0;
}

static int
setup(void **state)
{
    (void) state;
    fa_disarm();
    /* Every test starts and must end with nothing of Eventloom's live. */
    assert_int_equal(fa.live, 0);
    return 0;
}

static int
teardown(void **state)
{
    (void) state;
    fa_disarm();
    return 0;
}

static loom_store_config
config(void)
{
    loom_store_config cfg = LOOM_STORE_CONFIG_INIT;

    cfg.conninfo = loomt_dsn();
    cfg.application_name = "loomt-alloc";
    cfg.migrate = LOOM_MIGRATE_CHECK;
    return cfg;
}

static loom_store *
open_plain(void)
{
    loom_store_config cfg = config();

    fa_disarm();
    return est_store_open(&cfg);
}

static void
test_alloc_set_allocator_checks(void **state)
{
    loom_allocator partial = {fa_malloc, NULL, fa_free, NULL};

    (void) state;
    assert_int_equal(loom_set_allocator(&partial), LOOM_EINVAL);
    /* The refused one did not replace the installed one. */
    fa_arm(0, 0);
    assert_null(loom_malloc(8));
    fa_disarm();
    loom_free(loom_malloc(0));
    loom_free(NULL);
    assert_int_equal(fa.live, 0);
}

/* Opens a store with the Nth allocation failing, for every N. */
static void
open_until_ok(loom_migrate_mode mode, int sticky)
{
    long n;

    for (n = 0; n < 1000; n++) {
        loom_store_config cfg = config();
        loom_store *s = (loom_store *) &cfg;
        char err[256];
        loom_err rc;
        cfg.migrate = mode;
        fa_arm(n, sticky);
        rc = loom_store_open(&s, &cfg, err, sizeof err);
        fa_disarm();
        if (rc == LOOM_OK && fa.failed == 0) {
            loom_store_close(s);
            break;
        }
        if (rc == LOOM_OK) {
            /* A failure the operation could absorb is fine too. */
            loom_store_close(s);
            assert_int_equal(fa.live, 0);
            continue;
        }
        if (rc != LOOM_ENOMEM)
            fail_msg("open with allocation %ld failing: %s (%s)", n,
                     loom_err_name(rc), err);
        assert_null(s);
        if (fa.live != 0)
            fail_msg("open with allocation %ld failing leaked %ld blocks", n,
                     fa.live);
    }
    assert_true(n > 0 && n < 1000);
    assert_int_equal(fa.live, 0);
}

/* A failure of the second allocation (the copy of conninfo) once made
 * the handle connect to libpq's default server instead: every open must
 * fail with LOOM_ENOMEM, never reach for another database. */
static void
test_alloc_store_open_check(void **state)
{
    (void) state;
    open_until_ok(LOOM_MIGRATE_CHECK, 0);
}

static void
test_alloc_store_open_check_sticky(void **state)
{
    (void) state;
    open_until_ok(LOOM_MIGRATE_CHECK, 1);
}

static void
test_alloc_store_open_auto(void **state)
{
    (void) state;
    open_until_ok(LOOM_MIGRATE_AUTO, 0);
    open_until_ok(LOOM_MIGRATE_AUTO, 1);
}

/* An operation under test: runs on `s` while the allocator is armed,
 * disarms it, checks what the database and results say, and returns the
 * operation's result. */
typedef loom_err (*alloc_op)(loom_store *s);

/* Runs `op` for N = 0.. until it succeeds without a refused allocation.
 * Each run gets a new handle, so no buffer is already grown. */
static long
op_until_ok(alloc_op op, int sticky)
{
    long n;

    for (n = 0; n < 5000; n++) {
        loom_store *s = open_plain();
        long failed;
        loom_err rc;
        fa_arm(n, sticky);
        rc = op(s);
        failed = fa.failed;
        fa_disarm();
        if (rc != LOOM_OK && rc != LOOM_ENOMEM)
            fail_msg("allocation %ld failing: %s (%s)", n, loom_err_name(rc),
                     loom_store_errmsg(s));
        /* The handle is still usable after the failure. */
        {
            int64_t v;
            assert_int_equal(loom_store_stream_version(s, "probe-1", &v),
                             LOOM_OK);
        }
        loom_store_close(s);
        if (fa.live != 0)
            fail_msg("allocation %ld failing leaked %ld blocks", n, fa.live);
        if (rc == LOOM_OK && failed == 0)
            break;
    }
    assert_true(n > 0 && n < 5000);
    return n;
}

static int append_seq;

static loom_err
op_append(loom_store *s)
{
    static const loom_header h[3] = {
        {"k1", "v1"}, {"k2", "v2"}, {"a-longer-key", "and a longer value"}};
    char stream[32];
    loom_event_data ev[20];
    loom_append_result res;
    loom_err rc;

    snprintf(stream, sizeof stream, "alloc-%d", append_seq++);
    for (int i = 0; i < 20; i++) {
        est_event(&ev[i], "Alloc", "payload-bytes", 13);
        ev[i].correlation_id = "corr";
        ev[i].headers = h;
        ev[i].n_headers = 3;
    }
    rc = loom_store_append(s, stream, LOOM_EXPECT_NO_STREAM, ev, 20, &res);
    /* All or nothing, whatever failed. */
    fa_disarm();
    assert_int_equal(est_count_stream(stream), rc == LOOM_OK ? 20 : 0);
    return rc;
}

static void
test_alloc_append(void **state)
{
    (void) state;
    op_until_ok(op_append, 0);
    op_until_ok(op_append, 1);
}

/* Seeds events with metadata for the reads (once). */
static void
seed_reads(void)
{
    static int seeded;
    static const loom_header h[2] = {{"rk", "rv"}, {"rk2", "rv2"}};
    loom_store *s;
    loom_event_data ev[30];
    est_seen seen[31];
    loom_position c = {0, 0};

    if (seeded++)
        return;
    s = open_plain();
    for (int i = 0; i < 30; i++) {
        est_event(&ev[i], "Seed", "seed", 4);
        ev[i].causation_id = "cause";
        ev[i].headers = h;
        ev[i].n_headers = 2;
    }
    assert_int_equal(
        loom_store_append(s, "readme-1", LOOM_EXPECT_ANY, ev, 30, NULL),
        LOOM_OK);
    /* Readable by read_all before the reads under test start. */
    assert_int_equal(
        est_collect_all(s, &c, 100, "readme-", seen, 31, 30, 10000), 30);
    loom_store_close(s);
}

static loom_err
op_read_all(loom_store *s)
{
    loom_position zero = {0, 0};
    loom_events *page = (loom_events *) s;
    loom_err rc;

    rc = loom_store_read_all(s, zero, 1000, &page);
    fa_disarm();
    if (rc != LOOM_OK) {
        assert_null(page);
        return rc;
    }
    assert_true(loom_events_count(page) >= 30);
    for (size_t i = 0; i < loom_events_count(page); i++) {
        const loom_event *ev = loom_events_at(page, i);
        if (strcmp(ev->stream, "readme-1") != 0)
            continue;
        assert_string_equal(ev->causation_id, "cause");
        assert_int_equal(ev->n_headers, 2);
        assert_string_equal(ev->headers[1].value, "rv2");
    }
    loom_events_free(page);
    return rc;
}

static loom_err
op_read_stream(loom_store *s)
{
    loom_events *page = NULL;
    loom_err rc;

    rc = loom_store_read_stream(s, "readme-1", 0, LOOM_FORWARD, 100, &page);
    fa_disarm();
    if (rc == LOOM_OK)
        assert_int_equal(loom_events_count(page), 30);
    else
        assert_null(page);
    loom_events_free(page);
    return rc;
}

static void
test_alloc_read_all(void **state)
{
    (void) state;
    seed_reads();
    op_until_ok(op_read_all, 0);
    op_until_ok(op_read_all, 1);
}

static void
test_alloc_read_stream(void **state)
{
    (void) state;
    seed_reads();
    op_until_ok(op_read_stream, 0);
    op_until_ok(op_read_stream, 1);
}

static loom_err
op_snapshot(loom_store *s)
{
    void *data = NULL;
    size_t len = 0;
    int64_t v = -1;
    loom_err rc;

    rc = loom_store_snapshot_save(s, "snapme-1", 3, 1, "state", 5);
    if (rc == LOOM_OK)
        rc = loom_store_snapshot_load(s, "snapme-1", 1, &data, &len, &v);
    fa_disarm();
    if (rc == LOOM_OK) {
        assert_int_equal(len, 5);
        assert_memory_equal(data, "state", 5);
    } else {
        assert_null(data);
    }
    loom_free(data);
    return rc;
}

static void
test_alloc_snapshot(void **state)
{
    loom_store *s = open_plain();
    loom_event_data ev[4];

    (void) state;
    /* A snapshot is of a version its stream has. */
    for (int i = 0; i < 4; i++)
        est_event(&ev[i], "Snap", "x", 1);
    assert_int_equal(
        loom_store_append(s, "snapme-1", LOOM_EXPECT_NO_STREAM, ev, 4, NULL),
        LOOM_OK);
    loom_store_close(s);
    op_until_ok(op_snapshot, 0);
    op_until_ok(op_snapshot, 1);
}

/* An aggregate whose command emits two events with metadata. */
typedef struct tally {
    int64_t n;
} tally;

static loom_err
tally_apply(void *state, const loom_event *ev)
{
    (void) ev;
    ((tally *) state)->n++;
    return LOOM_OK;
}

static const loom_aggregate_type tally_type = {"tally", sizeof(tally), 1,
                                               NULL,    tally_apply,   2};

static loom_err
decide_two(const void *state, int64_t version, loom_decision *out, void *arg)
{
    static const loom_header h = {"why", "because"};
    loom_event_data ev;
    loom_err rc;

    (void) state;
    (void) version;
    (void) arg;
    est_event(&ev, "tally.Counted", "12345678", 8);
    ev.correlation_id = "c";
    ev.headers = &h;
    ev.n_headers = 1;
    rc = loom_decision_emit(out, &ev);
    if (rc == LOOM_OK)
        rc = loom_decision_emit(out, &ev);
    return rc;
}

static int tally_seq;

static loom_err
op_execute(loom_store *s)
{
    char id[16], stream[32];
    loom_execute_result res;
    tally t;
    int64_t v = -9;
    loom_err rc;

    snprintf(id, sizeof id, "%d", tally_seq++);
    snprintf(stream, sizeof stream, "tally-%s", id);
    rc = loom_aggregate_execute(s, &tally_type, id, decide_two, NULL, NULL,
                                &res);
    fa_disarm();
    /* Failures before the append leave nothing; after it (the snapshot)
     * are not errors. */
    assert_int_equal(est_count_stream(stream), rc == LOOM_OK ? 2 : 0);
    if (rc == LOOM_OK) {
        assert_int_equal(loom_aggregate_load(s, &tally_type, id, &t, &v),
                         LOOM_OK);
        assert_int_equal(t.n, 2);
        assert_int_equal(v, 1);
    }
    return rc;
}

static void
test_alloc_aggregate_execute(void **state)
{
    (void) state;
    op_until_ok(op_execute, 0);
    op_until_ok(op_execute, 1);
}

int
main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_alloc_set_allocator_checks),
        T(test_alloc_store_open_check),
        T(test_alloc_store_open_check_sticky),
        T(test_alloc_store_open_auto),
        T(test_alloc_append),
        T(test_alloc_read_all),
        T(test_alloc_read_stream),
        T(test_alloc_snapshot),
        T(test_alloc_aggregate_execute),
    };
#undef T

    return cmocka_run_group_tests_name("eventstore.alloc", tests, group_setup,
                                       group_teardown);
}
