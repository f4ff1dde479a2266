/*
 * A lost connection: the call that finds the backend gone returns
 * LOOM_ECONN and says so, the next call reconnects and works, and an
 * append retried with the same ids after LOOM_ECONN never doubles events.
 * The backend is killed with pg_terminate_backend(), found by a unique
 * application_name.
 */
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "estest.h"

struct fx {
    loom_store *s;
    char appname[64];
};

static int
setup(void **state)
{
    static int seq;
    struct fx *f = calloc(1, sizeof *f);
    loom_store_config cfg = LOOM_STORE_CONFIG_INIT;

    assert_non_null(f);
    snprintf(f->appname, sizeof f->appname, "loomt-reconnect-%ld-%d",
             (long) getpid(), seq++);
    cfg.application_name = f->appname;
    cfg.migrate = LOOM_MIGRATE_AUTO;
    f->s = est_store_open(&cfg);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fx *f = *state;

    loom_store_close(f->s);
    free(f);
    return 0;
}

static long long
backend_pid(const struct fx *f)
{
    return est_ll("SELECT coalesce(max(pid), 0) FROM pg_stat_activity "
                  "WHERE application_name = '%s'",
                  f->appname);
}

/* Terminates the store's backend and waits until it is gone. */
static long long
kill_backend(const struct fx *f)
{
    long long pid = backend_pid(f);

    assert_true(pid > 0);
    assert_int_equal(
        est_ll("SELECT pg_terminate_backend(%lld, 10000)::int", pid), 1);
    assert_int_equal(backend_pid(f), 0);
    return pid;
}

static void
expect_econn(loom_store *s, loom_err rc)
{
    if (rc != LOOM_ECONN)
        fail_msg("got %s, want LOOM_ECONN (%s)", loom_err_name(rc),
                 loom_store_errmsg(s));
    assert_non_null(strstr(loom_store_errmsg(s), "connection"));
}

static loom_err
append_one(loom_store *s, const char *stream, loom_append_result *res)
{
    loom_event_data ev;

    est_event(&ev, "T", "x", 1);
    return loom_store_append(s, stream, LOOM_EXPECT_ANY, &ev, 1, res);
}

static void
test_reconnect_append_after_kill(void **state)
{
    struct fx *f = *state;
    long long old_pid;
    int64_t v = -9;

    assert_int_equal(append_one(f->s, "rc-1", NULL), LOOM_OK);
    old_pid = kill_backend(f);
    expect_econn(f->s, append_one(f->s, "rc-1", NULL));
    /* The next call reconnects (a new backend) and works. */
    assert_int_equal(append_one(f->s, "rc-1", NULL), LOOM_OK);
    assert_string_equal(loom_store_errmsg(f->s), "");
    assert_true(backend_pid(f) > 0);
    assert_true(backend_pid(f) != old_pid);
    assert_int_equal(loom_store_stream_version(f->s, "rc-1", &v), LOOM_OK);
    assert_int_equal(v, 1);
    assert_int_equal(est_count_stream("rc-1"), 2);
}

static void
test_reconnect_reads_after_kill(void **state)
{
    struct fx *f = *state;
    loom_position zero = {0, 0};
    loom_events *page = NULL;
    int64_t v = -9;

    assert_int_equal(append_one(f->s, "rc-2", NULL), LOOM_OK);
    kill_backend(f);
    expect_econn(f->s, loom_store_read_all(f->s, zero, 10, &page));
    assert_null(page);
    assert_int_equal(loom_store_read_all(f->s, zero, 10, &page), LOOM_OK);
    loom_events_free(page);

    kill_backend(f);
    expect_econn(
        f->s, loom_store_read_stream(f->s, "rc-2", 0, LOOM_FORWARD, 10, &page));
    assert_int_equal(
        loom_store_read_stream(f->s, "rc-2", 0, LOOM_FORWARD, 10, &page),
        LOOM_OK);
    assert_int_equal(loom_events_count(page), 1);
    loom_events_free(page);

    kill_backend(f);
    expect_econn(f->s, loom_store_stream_version(f->s, "rc-2", &v));
    assert_int_equal(loom_store_stream_version(f->s, "rc-2", &v), LOOM_OK);
    assert_int_equal(v, 0);

    kill_backend(f);
    expect_econn(f->s,
                 loom_store_read_category(f->s, "rc", zero, NULL, 10, &page));
    assert_int_equal(
        loom_store_read_category(f->s, "rc", zero, NULL, 10, &page), LOOM_OK);
    loom_events_free(page);
}

static void
test_reconnect_schema_calls_after_kill(void **state)
{
    struct fx *f = *state;
    int applied = -1, latest = -1;

    kill_backend(f);
    expect_econn(f->s, loom_store_schema_version(f->s, &applied, &latest));
    assert_int_equal(loom_store_schema_version(f->s, &applied, &latest),
                     LOOM_OK);
    assert_true(latest >= 1);
    assert_int_equal(applied, latest);
    kill_backend(f);
    expect_econn(f->s, loom_store_migrate(f->s, NULL, NULL, &applied));
    assert_int_equal(loom_store_migrate(f->s, NULL, NULL, &applied), LOOM_OK);
    assert_int_equal(applied, 0);
}

static void
test_reconnect_committed_append_retry_is_idempotent(void **state)
{
    struct fx *f = *state;
    loom_event_data ev[3];
    loom_append_result first, res;

    /* The append commits, then the connection dies before the caller
     * learns more: it retries the same array. */
    for (int i = 0; i < 3; i++)
        est_event(&ev[i], "T", "r", 1);
    assert_int_equal(
        loom_store_append(f->s, "rc-3", LOOM_EXPECT_NO_STREAM, ev, 3, &first),
        LOOM_OK);
    kill_backend(f);
    expect_econn(f->s, loom_store_append(f->s, "rc-3", LOOM_EXPECT_NO_STREAM,
                                         ev, 3, &res));
    assert_int_equal(
        loom_store_append(f->s, "rc-3", LOOM_EXPECT_NO_STREAM, ev, 3, &res),
        LOOM_OK);
    assert_int_equal(res.replayed, 1);
    assert_int_equal(res.first_version, first.first_version);
    assert_int_equal(res.last_version, first.last_version);
    assert_int_equal(res.first_position, first.first_position);
    assert_int_equal(est_count_stream("rc-3"), 3);
}

static void
test_reconnect_lost_append_retry_is_idempotent(void **state)
{
    struct fx *f = *state;
    loom_event_data ev[2];
    loom_append_result res;

    /* The connection is gone before the append: its ids are assigned
     * (written back) although nothing reached the server. */
    for (int i = 0; i < 2; i++)
        est_event(&ev[i], "T", "l", 1);
    kill_backend(f);
    expect_econn(f->s, loom_store_append(f->s, "rc-4", LOOM_EXPECT_NO_STREAM,
                                         ev, 2, &res));
    assert_int_equal(est_count_stream("rc-4"), 0);
    assert_int_equal(
        loom_store_append(f->s, "rc-4", LOOM_EXPECT_NO_STREAM, ev, 2, &res),
        LOOM_OK);
    assert_int_equal(res.replayed, 0);
    assert_int_equal(res.first_version, 0);
    /* Retried once more for good measure: now a replay. */
    assert_int_equal(
        loom_store_append(f->s, "rc-4", LOOM_EXPECT_NO_STREAM, ev, 2, &res),
        LOOM_OK);
    assert_int_equal(res.replayed, 1);
    assert_int_equal(est_count_stream("rc-4"), 2);
}

/* Drives a non-blocking operation until loom_store_poll() stops saying
 * LOOM_EAGAIN; returns its last answer. */
static loom_err
drive(loom_store *s)
{
    for (int i = 0; i < 10000; i++) {
        int want = 0;
        loom_err rc = loom_store_poll(s, &want);
        struct pollfd p;
        if (rc != LOOM_EAGAIN)
            return rc;
        p.fd = loom_store_socket(s);
        p.events = (short) ((want & LOOM_POLL_READ ? POLLIN : 0) |
                            (want & LOOM_POLL_WRITE ? POLLOUT : 0));
        p.revents = 0;
        assert_true(p.fd >= 0);
        assert_true(poll(&p, 1, 10000) >= 0);
    }
    fail_msg("operation never finished");
    return LOOM_EIO;
}

static void
test_reconnect_nonblocking_after_kill(void **state)
{
    struct fx *f = *state;
    loom_event_data ev;
    loom_append_result res;
    loom_err rc;

    kill_backend(f);
    est_event(&ev, "T", "n", 1);
    /* The break shows at the send, the poll or the receive; wherever it
     * does, the operation ends with LOOM_ECONN and the handle is free. */
    rc = loom_store_append_send(f->s, "rc-5", LOOM_EXPECT_ANY, &ev, 1);
    if (rc == LOOM_OK) {
        rc = drive(f->s);
        assert_true(rc == LOOM_OK || rc == LOOM_ECONN);
        rc = loom_store_append_recv(f->s, &res);
    }
    expect_econn(f->s, rc);
    assert_int_equal(loom_store_poll(f->s, NULL), LOOM_EINVAL);
    /* The next operation reconnects. */
    assert_int_equal(
        loom_store_append_send(f->s, "rc-5", LOOM_EXPECT_ANY, &ev, 1), LOOM_OK);
    assert_int_equal(drive(f->s), LOOM_OK);
    assert_int_equal(loom_store_append_recv(f->s, &res), LOOM_OK);
    assert_int_equal(res.first_version, 0);
    assert_int_equal(est_count_stream("rc-5"), 1);
}

int
main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_reconnect_append_after_kill),
        T(test_reconnect_reads_after_kill),
        T(test_reconnect_schema_calls_after_kill),
        T(test_reconnect_committed_append_retry_is_idempotent),
        T(test_reconnect_lost_append_retry_is_idempotent),
        T(test_reconnect_nonblocking_after_kill),
    };
#undef T

    return cmocka_run_group_tests_name("eventstore.reconnect", tests,
                                       est_group_setup, est_group_teardown);
}
