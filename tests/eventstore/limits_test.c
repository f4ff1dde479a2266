/*
 * Bad input gets an exact error code and leaves the handle usable; hostile
 * stream names are data, never SQL; opening refuses bad configurations
 * and an unmigrated database with a message that says what to do.
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
#include "loom/upcast.h"

/* Small limits, to test each one without huge inputs. */
#define SMALL_STREAM_NAME 16
#define SMALL_PAYLOAD     1024
#define SMALL_APPEND      5
#define SMALL_METADATA    256
#define SMALL_READ        50

struct fx {
    loom_store *s;     /* default limits */
    loom_store *small; /* the limits above */
};

/* Numbers the streams of store_still_works() across all tests. */
static int probe_seq;

static int
setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    loom_store_config cfg = LOOM_STORE_CONFIG_INIT;

    assert_non_null(f);
    f->s = loomt_store_open();
    cfg.migrate = LOOM_MIGRATE_CHECK;
    cfg.max_stream_name = SMALL_STREAM_NAME;
    cfg.max_payload = SMALL_PAYLOAD;
    cfg.max_append = SMALL_APPEND;
    cfg.max_metadata = SMALL_METADATA;
    cfg.max_read = SMALL_READ;
    f->small = est_store_open(&cfg);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fx *f = *state;

    loom_store_close(f->s);
    loom_store_close(f->small);
    free(f);
    return 0;
}

/* After an error the handle must still append, read and report a clean
 * state: run after every refused call. */
static void
store_still_works(loom_store *s)
{
    char stream[16];
    loom_event_data ev;
    loom_events *page = NULL;
    int64_t v = -9;

    snprintf(stream, sizeof stream, "ok-%d", probe_seq++);
    est_event(&ev, "T", "x", 1);
    assert_int_equal(
        loom_store_append(s, stream, LOOM_EXPECT_NO_STREAM, &ev, 1, NULL),
        LOOM_OK);
    assert_string_equal(loom_store_errmsg(s), "");
    assert_int_equal(loom_store_stream_version(s, stream, &v), LOOM_OK);
    assert_int_equal(v, 0);
    assert_int_equal(
        loom_store_read_stream(s, stream, 0, LOOM_FORWARD, 10, &page), LOOM_OK);
    assert_int_equal(loom_events_count(page), 1);
    loom_events_free(page);
}

/* Checks that `rc` is `want` with an explanation on the handle, then that
 * the handle still works. */
#define EXPECT(s, call, want)                                                  \
    do {                                                                       \
        loom_err rc_ = (call);                                                 \
        if (rc_ != (want))                                                     \
            fail_msg("%s: got %s, want %s (%s)", #call, loom_err_name(rc_),    \
                     loom_err_name(want), loom_store_errmsg(s));               \
        assert_true(loom_store_errmsg(s)[0] != '\0');                          \
        /* Refused before reaching the server. */                              \
        assert_string_equal(loom_store_sqlstate(s), "");                       \
        store_still_works(s);                                                  \
    } while (0)

/* Appends a copy of `ev` with a fresh id to `stream` on `s`, so one
 * event can be offered many times without being taken for a retry. */
static loom_err
append1(loom_store *s, const char *stream, const loom_event_data *ev)
{
    loom_event_data copy = *ev;

    memset(&copy.id, 0, sizeof copy.id);
    return loom_store_append(s, stream, LOOM_EXPECT_ANY, &copy, 1, NULL);
}

static char *
repeat(char c, size_t n)
{
    char *p = malloc(n + 1);

    assert_non_null(p);
    memset(p, c, n);
    p[n] = '\0';
    return p;
}

static void
test_limits_null_arguments(void **state)
{
    struct fx *f = *state;
    loom_event_data ev;
    loom_events *page = (loom_events *) &ev; /* must be reset to NULL */
    loom_position zero = {0, 0};
    int64_t v;

    est_event(&ev, "T", "x", 1);
    /* No handle: nothing to put a message on, but never a crash. */
    assert_int_equal(append1(NULL, "s-1", &ev), LOOM_EINVAL);
    assert_int_equal(loom_store_append_send(NULL, "s-1", -2, &ev, 1),
                     LOOM_EINVAL);
    assert_int_equal(loom_store_append_recv(NULL, NULL), LOOM_EINVAL);
    assert_int_equal(loom_store_stream_version(NULL, "s-1", &v), LOOM_EINVAL);
    assert_int_equal(loom_store_read_all(NULL, zero, 10, &page), LOOM_EINVAL);
    assert_null(page);
    assert_int_equal(
        loom_store_read_stream(NULL, "s-1", 0, LOOM_FORWARD, 10, &page),
        LOOM_EINVAL);
    assert_int_equal(loom_store_read_category(NULL, "s", zero, NULL, 10, &page),
                     LOOM_EINVAL);
    assert_int_equal(loom_store_events_recv(NULL, &page), LOOM_EINVAL);
    assert_int_equal(loom_store_migrate(NULL, NULL, NULL, NULL), LOOM_EINVAL);
    assert_int_equal(loom_store_schema_version(NULL, NULL, NULL), LOOM_EINVAL);
    assert_int_equal(loom_store_snapshot_save(NULL, "s-1", 0, 0, "x", 1),
                     LOOM_EINVAL);
    assert_int_equal(loom_store_poll(NULL, NULL), LOOM_EINVAL);
    assert_int_equal(loom_store_socket(NULL), -1);
    assert_non_null(loom_store_errmsg(NULL));
    assert_non_null(loom_store_sqlstate(NULL));
    loom_store_close(NULL);

    /* NULL stream, events and out-params on a real handle. */
    EXPECT(f->s, append1(f->s, NULL, &ev), LOOM_EINVAL);
    EXPECT(f->s, loom_store_append(f->s, "s-1", LOOM_EXPECT_ANY, NULL, 1, NULL),
           LOOM_EINVAL);
    EXPECT(f->s, loom_store_stream_version(f->s, NULL, &v), LOOM_EINVAL);
    EXPECT(f->s, loom_store_read_stream(f->s, NULL, 0, LOOM_FORWARD, 10, &page),
           LOOM_EINVAL);
    EXPECT(f->s, loom_store_read_category(f->s, NULL, zero, NULL, 10, &page),
           LOOM_EINVAL);
    EXPECT(f->s, loom_store_stream_version(f->s, "s-1", NULL), LOOM_EINVAL);
    EXPECT(f->s, loom_store_read_all(f->s, zero, 10, NULL), LOOM_EINVAL);
    EXPECT(f->s, loom_store_read_stream(f->s, "s-1", 0, LOOM_FORWARD, 10, NULL),
           LOOM_EINVAL);
    EXPECT(f->s, loom_store_read_category(f->s, "s", zero, NULL, 10, NULL),
           LOOM_EINVAL);
    EXPECT(f->s, loom_store_events_recv(f->s, NULL), LOOM_EINVAL);
    store_still_works(f->s);
}

/* An unrelated error, so that a call leaving the message alone shows. */
static void
provoke_error(loom_store *s)
{
    loom_event_data ev;

    est_event(&ev, "T", "x", 1);
    assert_int_equal(append1(s, "", &ev), LOOM_EINVAL);
    assert_non_null(strstr(loom_store_errmsg(s), "stream name is empty"));
}

/* `rc` is `want`, and errmsg is about this call: it contains `needle`,
 * or is "" after a success. */
static void
expect_own_message(loom_store *s, loom_err rc, loom_err want,
                   const char *needle)
{
    const char *msg = loom_store_errmsg(s);

    if (rc != want)
        fail_msg("got %s, want %s (%s)", loom_err_name(rc), loom_err_name(want),
                 msg);
    if (want == LOOM_OK)
        assert_string_equal(msg, "");
    else if (strstr(msg, needle) == NULL)
        fail_msg("message \"%s\" lacks \"%s\"", msg, needle);
    assert_string_equal(loom_store_sqlstate(s), "");
}

/* loom_store_errmsg() explains the last call only: no call, failing or
 * succeeding, leaves an earlier call's message behind. */
static void
test_limits_errmsg_belongs_to_the_last_call(void **state)
{
    struct fx *f = *state;
    loom_position zero = {0, 0};
    loom_events *page = NULL;
    size_t len;
    int64_t v;
    int wait;

    provoke_error(f->s);
    expect_own_message(f->s,
                       loom_store_snapshot_load(f->s, "x-1", 0, NULL, &len, &v),
                       LOOM_EINVAL, "data is NULL");
    provoke_error(f->s);
    expect_own_message(f->s, loom_store_stream_version(f->s, "x-1", NULL),
                       LOOM_EINVAL, "version is NULL");
    provoke_error(f->s);
    expect_own_message(f->s, loom_store_poll(f->s, NULL), LOOM_EINVAL,
                       "no operation is in progress");
    provoke_error(f->s);
    expect_own_message(f->s, loom_store_events_recv(f->s, NULL), LOOM_EINVAL,
                       "out is NULL");
    provoke_error(f->s);
    expect_own_message(f->s, loom_store_set_upcasters(f->s, NULL), LOOM_OK,
                       NULL);
    /* The non-blocking form: each step after an error. */
    provoke_error(f->s);
    expect_own_message(f->s, loom_store_read_all_send(f->s, zero, 1), LOOM_OK,
                       NULL);
    /* Busy: refused, and the read goes on. */
    expect_own_message(f->s, loom_store_read_all_send(f->s, zero, 1),
                       LOOM_EBUSY, "in progress");
    while (loom_store_poll(f->s, &wait) == LOOM_EAGAIN)
        est_sleep_ms(1);
    assert_string_equal(loom_store_errmsg(f->s), "");
    expect_own_message(f->s, loom_store_stream_version(f->s, "x-1", &v),
                       LOOM_EBUSY, "in progress");
    expect_own_message(f->s, loom_store_events_recv(f->s, &page), LOOM_OK,
                       NULL);
    loom_events_free(page);
    store_still_works(f->s);
}

static void
test_limits_empty_stream_name(void **state)
{
    struct fx *f = *state;
    loom_event_data ev;
    loom_events *page;
    int64_t v;

    est_event(&ev, "T", "x", 1);
    EXPECT(f->s, append1(f->s, "", &ev), LOOM_EINVAL);
    EXPECT(f->s, loom_store_stream_version(f->s, "", &v), LOOM_EINVAL);
    EXPECT(f->s, loom_store_read_stream(f->s, "", 0, LOOM_FORWARD, 10, &page),
           LOOM_EINVAL);
    EXPECT(f->s, loom_store_snapshot_save(f->s, "", 0, 0, "x", 1), LOOM_EINVAL);
}

/* max_stream_name limits what a handle writes. Reads accept any name up
 * to LOOM_MAX_STREAM_NAME_LIMIT, so a handle with a small limit can still
 * read streams written through one with a larger limit. */
static void
test_limits_stream_name_small_limit(void **state)
{
    struct fx *f = *state;
    char *fits = repeat('a', SMALL_STREAM_NAME);
    char *over = repeat('b', SMALL_STREAM_NAME + 1);
    char *huge = repeat('h', LOOM_MAX_STREAM_NAME_LIMIT + 1);
    loom_event_data ev;
    loom_events *page = NULL;
    int64_t v = -9;

    est_event(&ev, "T", "x", 1);
    assert_int_equal(append1(f->small, fits, &ev), LOOM_OK);
    EXPECT(f->small, append1(f->small, over, &ev), LOOM_ETOOBIG);
    EXPECT(f->small, loom_store_snapshot_save(f->small, over, 0, 0, "x", 1),
           LOOM_ETOOBIG);
    assert_int_equal(est_count_stream(over), 0);
    /* The limit is per handle: the default store takes the long name,
     * and the small one reads it back. */
    assert_int_equal(append1(f->s, over, &ev), LOOM_OK);
    assert_int_equal(est_count_stream(over), 1);
    assert_int_equal(loom_store_stream_version(f->small, over, &v), LOOM_OK);
    assert_int_equal(v, 0);
    assert_int_equal(
        loom_store_read_stream(f->small, over, 0, LOOM_FORWARD, 10, &page),
        LOOM_OK);
    assert_int_equal(loom_events_count(page), 1);
    assert_string_equal(loom_events_at(page, 0)->stream, over);
    loom_events_free(page);
    /* Past the absolute limit no name is valid, for reads either. */
    EXPECT(f->small, loom_store_stream_version(f->small, huge, &v),
           LOOM_ETOOBIG);
    EXPECT(f->small,
           loom_store_read_stream(f->small, huge, 0, LOOM_FORWARD, 10, &page),
           LOOM_ETOOBIG);
    free(fits);
    free(over);
    free(huge);
}

static void
test_limits_stream_name_default_limit(void **state)
{
    struct fx *f = *state;
    char *fits = repeat('c', LOOM_DEFAULT_MAX_STREAM_NAME);
    char *over = repeat('d', LOOM_DEFAULT_MAX_STREAM_NAME + 1);
    loom_event_data ev;
    loom_events *page = NULL;

    est_event(&ev, "T", "x", 1);
    assert_int_equal(append1(f->s, fits, &ev), LOOM_OK);
    assert_int_equal(
        loom_store_read_stream(f->s, fits, 0, LOOM_FORWARD, 10, &page),
        LOOM_OK);
    assert_int_equal(loom_events_count(page), 1);
    assert_string_equal(loom_events_at(page, 0)->stream, fits);
    loom_events_free(page);
    EXPECT(f->s, append1(f->s, over, &ev), LOOM_ETOOBIG);
    EXPECT(f->s, loom_store_snapshot_save(f->s, over, 0, 0, "x", 1),
           LOOM_ETOOBIG);
    assert_int_equal(est_count_stream(over), 0);
    free(fits);
    free(over);
}

static void
test_limits_stream_name_not_utf8(void **state)
{
    static const char *const bad[] = {
        "bad-\xff",             /* never valid */
        "bad-\xc3",             /* truncated sequence */
        "bad-\xc0\xaf",         /* overlong '/' */
        "bad-\xe0\x80\xaf",     /* overlong, three bytes */
        "bad-\xed\xa0\x80",     /* UTF-16 surrogate */
        "bad-\xf4\x90\x80\x80", /* past U+10FFFF */
        "bad-\x80",             /* stray continuation byte */
        "\xfe\xfe-x",           /* invalid first bytes */
    };
    struct fx *f = *state;
    loom_event_data ev;
    loom_events *page;
    int64_t v;

    est_event(&ev, "T", "x", 1);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        EXPECT(f->s, append1(f->s, bad[i], &ev), LOOM_EINVAL);
        EXPECT(f->s, loom_store_stream_version(f->s, bad[i], &v), LOOM_EINVAL);
        EXPECT(f->s,
               loom_store_read_stream(f->s, bad[i], 0, LOOM_FORWARD, 10, &page),
               LOOM_EINVAL);
    }
}

static void
test_limits_event_count(void **state)
{
    struct fx *f = *state;
    const size_t n = LOOM_DEFAULT_MAX_APPEND + 1;
    loom_event_data *ev = calloc(n, sizeof *ev);

    assert_non_null(ev);
    for (size_t i = 0; i < n; i++)
        est_event(&ev[i], "T", NULL, 0);
    EXPECT(f->s,
           loom_store_append(f->s, "count-1", LOOM_EXPECT_ANY, ev, 0, NULL),
           LOOM_EINVAL);
    EXPECT(f->small,
           loom_store_append(f->small, "count-1", LOOM_EXPECT_ANY, ev,
                             SMALL_APPEND + 1, NULL),
           LOOM_ETOOBIG);
    EXPECT(f->s,
           loom_store_append(f->s, "count-1", LOOM_EXPECT_ANY, ev, n, NULL),
           LOOM_ETOOBIG);
    assert_int_equal(est_count_stream("count-1"), 0);
    assert_int_equal(loom_store_append(f->small, "count-1", LOOM_EXPECT_ANY, ev,
                                       SMALL_APPEND, NULL),
                     LOOM_OK);
    free(ev);
}

static void
test_limits_default_max_append_fits(void **state)
{
    struct fx *f = *state;
    const size_t n = LOOM_DEFAULT_MAX_APPEND;
    loom_event_data *ev = calloc(n, sizeof *ev);
    loom_append_result res;

    assert_non_null(ev);
    for (size_t i = 0; i < n; i++)
        est_event(&ev[i], "T", "x", 1);
    assert_int_equal(
        loom_store_append(f->s, "count-max", LOOM_EXPECT_ANY, ev, n, &res),
        LOOM_OK);
    assert_int_equal(res.last_version, (int64_t) n - 1);
    assert_int_equal(est_count_stream("count-max"), (long long) n);
    free(ev);
}

static void
test_limits_payload_size(void **state)
{
    struct fx *f = *state;
    size_t big = LOOM_DEFAULT_MAX_PAYLOAD + 1;
    char *data = calloc(1, big);
    loom_event_data ev[2];

    assert_non_null(data);
    est_event(&ev[0], "T", data, SMALL_PAYLOAD);
    assert_int_equal(append1(f->small, "pay-1", &ev[0]), LOOM_OK);
    ev[0].data_len = SMALL_PAYLOAD + 1;
    EXPECT(f->small, append1(f->small, "pay-1", &ev[0]), LOOM_ETOOBIG);
    EXPECT(f->small,
           loom_store_snapshot_save(f->small, "pay-1", 0, 0, data,
                                    SMALL_PAYLOAD + 1),
           LOOM_ETOOBIG);
    /* Default limit; the second event of a batch counts as much as the
     * first, and nothing of the batch is written. */
    est_event(&ev[0], "T", "x", 1);
    est_event(&ev[1], "T", data, big);
    EXPECT(f->s, loom_store_append(f->s, "pay-2", LOOM_EXPECT_ANY, ev, 2, NULL),
           LOOM_ETOOBIG);
    assert_int_equal(est_count_stream("pay-2"), 0);
    ev[1].data_len = LOOM_DEFAULT_MAX_PAYLOAD;
    assert_int_equal(
        loom_store_append(f->s, "pay-2", LOOM_EXPECT_ANY, ev, 2, NULL),
        LOOM_OK);
    assert_int_equal(est_count_stream("pay-2"), 2);
    free(data);
}

static void
test_limits_type_name(void **state)
{
    struct fx *f = *state;
    char *fits = repeat('t', LOOM_MAX_TYPE_NAME);
    char *over = repeat('u', LOOM_MAX_TYPE_NAME + 1);
    loom_event_data ev;
    loom_events *page = NULL;

    est_event(&ev, NULL, "x", 1);
    EXPECT(f->s, append1(f->s, "type-1", &ev), LOOM_EINVAL);
    ev.type = "";
    EXPECT(f->s, append1(f->s, "type-1", &ev), LOOM_EINVAL);
    ev.type = "bad\xff";
    EXPECT(f->s, append1(f->s, "type-1", &ev), LOOM_EINVAL);
    ev.type = over;
    EXPECT(f->s, append1(f->s, "type-1", &ev), LOOM_ETOOBIG);
    assert_int_equal(est_count_stream("type-1"), 0);
    ev.type = fits;
    assert_int_equal(append1(f->s, "type-1", &ev), LOOM_OK);
    assert_int_equal(
        loom_store_read_stream(f->s, "type-1", 0, LOOM_FORWARD, 1, &page),
        LOOM_OK);
    assert_string_equal(loom_events_at(page, 0)->type, fits);
    loom_events_free(page);
    free(fits);
    free(over);
}

static void
test_limits_negative_schema_version(void **state)
{
    struct fx *f = *state;
    loom_event_data ev;

    est_event(&ev, "T", "x", 1);
    ev.schema_version = -1;
    EXPECT(f->s, append1(f->s, "sv-1", &ev), LOOM_EINVAL);
    ev.schema_version = INT32_MIN;
    EXPECT(f->s, append1(f->s, "sv-1", &ev), LOOM_EINVAL);
    assert_int_equal(est_count_stream("sv-1"), 0);
}

static void
test_limits_null_data_with_length(void **state)
{
    struct fx *f = *state;
    loom_event_data ev;

    est_event(&ev, "T", NULL, 1);
    EXPECT(f->s, append1(f->s, "nd-1", &ev), LOOM_EINVAL);
    EXPECT(f->s, loom_store_snapshot_save(f->s, "nd-1", 0, 0, NULL, 1),
           LOOM_EINVAL);
    assert_int_equal(est_count_stream("nd-1"), 0);
}

static void
test_limits_bad_headers(void **state)
{
    struct fx *f = *state;
    loom_event_data ev;
    loom_header h[2] = {{"k", "v"}, {NULL, "v"}};

    est_event(&ev, "T", "x", 1);
    ev.n_headers = 1;
    EXPECT(f->s, append1(f->s, "hdr-1", &ev), LOOM_EINVAL);
    ev.headers = h;
    ev.n_headers = 2;
    EXPECT(f->s, append1(f->s, "hdr-1", &ev), LOOM_EINVAL);
    h[1] = (loom_header){"k", NULL};
    EXPECT(f->s, append1(f->s, "hdr-1", &ev), LOOM_EINVAL);
    h[1] = (loom_header){"", "v"};
    EXPECT(f->s, append1(f->s, "hdr-1", &ev), LOOM_EINVAL);
    assert_int_equal(est_count_stream("hdr-1"), 0);
}

static void
test_limits_metadata_size(void **state)
{
    struct fx *f = *state;
    char *corr = repeat('m', SMALL_METADATA);
    char *value = repeat('v', LOOM_DEFAULT_MAX_METADATA);
    loom_header h = {"k", value};
    loom_event_data ev[2];

    est_event(&ev[0], "T", "x", 1);
    ev[0].correlation_id = "fits";
    assert_int_equal(append1(f->small, "md-1", &ev[0]), LOOM_OK);
    ev[0].correlation_id = corr; /* the field's tag and length push it over */
    EXPECT(f->small, append1(f->small, "md-1", &ev[0]), LOOM_ETOOBIG);
    /* Default limit, on the second event of a batch. */
    est_event(&ev[0], "T", "x", 1);
    est_event(&ev[1], "T", "x", 1);
    ev[1].headers = &h;
    ev[1].n_headers = 1;
    EXPECT(f->s, loom_store_append(f->s, "md-2", LOOM_EXPECT_ANY, ev, 2, NULL),
           LOOM_ETOOBIG);
    assert_int_equal(est_count_stream("md-2"), 0);
    value[LOOM_DEFAULT_MAX_METADATA - 100] = '\0';
    assert_int_equal(
        loom_store_append(f->s, "md-2", LOOM_EXPECT_ANY, ev, 2, NULL), LOOM_OK);
    free(corr);
    free(value);
}

static void
test_limits_bad_expected_version(void **state)
{
    static const int64_t bad[] = {-3, -5, -100, INT64_MIN};
    struct fx *f = *state;
    loom_event_data ev;

    est_event(&ev, "T", "x", 1);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        EXPECT(f->s, loom_store_append(f->s, "exp-1", bad[i], &ev, 1, NULL),
               LOOM_EINVAL);
    assert_int_equal(est_count_stream("exp-1"), 0);
}

static void
test_limits_read_max(void **state)
{
    struct fx *f = *state;
    loom_position zero = {0, 0};
    loom_group g = {0, 2};
    loom_events *page = (loom_events *) f;

    EXPECT(f->s, loom_store_read_stream(f->s, "r-1", 0, LOOM_FORWARD, 0, &page),
           LOOM_EINVAL);
    assert_null(page);
    EXPECT(f->s, loom_store_read_all(f->s, zero, 0, &page), LOOM_EINVAL);
    EXPECT(f->s, loom_store_read_category(f->s, "r", zero, &g, 0, &page),
           LOOM_EINVAL);
    EXPECT(f->s,
           loom_store_read_stream(f->s, "r-1", 0, LOOM_FORWARD,
                                  LOOM_DEFAULT_MAX_READ + 1, &page),
           LOOM_ETOOBIG);
    EXPECT(f->s,
           loom_store_read_all(f->s, zero, LOOM_DEFAULT_MAX_READ + 1, &page),
           LOOM_ETOOBIG);
    EXPECT(f->small, loom_store_read_all(f->small, zero, SMALL_READ + 1, &page),
           LOOM_ETOOBIG);
    EXPECT(f->small,
           loom_store_read_category(f->small, "r", zero, NULL, SMALL_READ + 1,
                                    &page),
           LOOM_ETOOBIG);
    assert_null(page);
    /* At the limit is fine. */
    assert_int_equal(loom_store_read_all(f->small, zero, SMALL_READ, &page),
                     LOOM_OK);
    loom_events_free(page);
    assert_int_equal(
        loom_store_read_all(f->s, zero, LOOM_DEFAULT_MAX_READ, &page), LOOM_OK);
    loom_events_free(page);
}

static void
test_limits_read_stream_bad_position(void **state)
{
    struct fx *f = *state;
    loom_events *page;

    EXPECT(f->s,
           loom_store_read_stream(f->s, "r-1", -1, LOOM_FORWARD, 10, &page),
           LOOM_EINVAL);
    EXPECT(f->s,
           loom_store_read_stream(f->s, "r-1", INT64_MIN, LOOM_BACKWARD, 10,
                                  &page),
           LOOM_EINVAL);
    EXPECT(
        f->s,
        loom_store_read_stream(f->s, "r-1", 0, (loom_direction) 7, 10, &page),
        LOOM_EINVAL);
}

static void
test_limits_category_and_group(void **state)
{
    struct fx *f = *state;
    loom_position zero = {0, 0};
    loom_group g;
    loom_events *page = NULL;

    EXPECT(f->s,
           loom_store_read_category(f->s, "has-dash", zero, NULL, 10, &page),
           LOOM_EINVAL);
    EXPECT(f->s, loom_store_read_category(f->s, "", zero, NULL, 10, &page),
           LOOM_EINVAL);
    EXPECT(f->s, loom_store_read_category(f->s, "c\xff", zero, NULL, 10, &page),
           LOOM_EINVAL);
    g = (loom_group){4, 4};
    EXPECT(f->s, loom_store_read_category(f->s, "c", zero, &g, 10, &page),
           LOOM_EINVAL);
    g = (loom_group){9, 4};
    EXPECT(f->s, loom_store_read_category(f->s, "c", zero, &g, 10, &page),
           LOOM_EINVAL);
    g = (loom_group){0, 0};
    EXPECT(f->s, loom_store_read_category(f->s, "c", zero, &g, 10, &page),
           LOOM_EINVAL);
    g = (loom_group){0, UINT32_MAX};
    EXPECT(f->s, loom_store_read_category(f->s, "c", zero, &g, 10, &page),
           LOOM_EINVAL);
    g = (loom_group){0, 1};
    assert_int_equal(loom_store_read_category(f->s, "c", zero, &g, 10, &page),
                     LOOM_OK);
    loom_events_free(page);
}

/* Names that would break naively built SQL or text protocols. */
static void
test_limits_hostile_stream_names_are_data(void **state)
{
    struct fx *f = *state;
    char *near = repeat('\'', LOOM_DEFAULT_MAX_STREAM_NAME);
    const char *names[] = {
        "it's-1",
        "quote\"d-1",
        "semi;colon-1",
        "'; DROP TABLE loom.events; --",
        "x'); DELETE FROM loom.streams; --",
        "back\\slash-\\\\1\\",
        "pct-%s%n%d$1",
        "ws- \t\r\n",
        "\xd0\xb7\xd0\xb0\xd0\xba\xd0\xb0\xd0\xb7-1",
        "emoji-\xf0\x9f\x93\xa6",
        "$1-$2",
        near,
    };
    const size_t n = sizeof names / sizeof names[0];
    long long events_before = est_ll("SELECT count(*) FROM loom.events");
    loom_position zero = {0, 0};

    /* Make the near-limit name hostile in more than one way. */
    near[10] = ';';
    near[20] = '\\';
    memcpy(near + 30, "--", 2);
    for (size_t i = 0; i < n; i++) {
        loom_event_data ev;
        loom_events *page = NULL;
        int64_t v = -9;
        est_event(&ev, "T", names[i], strlen(names[i]));
        assert_int_equal(loom_store_append(f->s, names[i],
                                           LOOM_EXPECT_NO_STREAM, &ev, 1, NULL),
                         LOOM_OK);
        assert_int_equal(loom_store_stream_version(f->s, names[i], &v),
                         LOOM_OK);
        assert_int_equal(v, 0);
        assert_int_equal(loom_store_read_stream(f->s, names[i],
                                                LOOM_VERSION_END, LOOM_BACKWARD,
                                                10, &page),
                         LOOM_OK);
        assert_int_equal(loom_events_count(page), 1);
        assert_string_equal(loom_events_at(page, 0)->stream, names[i]);
        assert_int_equal(loom_events_at(page, 0)->data_len, strlen(names[i]));
        assert_memory_equal(loom_events_at(page, 0)->data, names[i],
                            strlen(names[i]));
        loom_events_free(page);
        assert_int_equal(loom_store_snapshot_save(f->s, names[i], 0, 0, "s", 1),
                         LOOM_OK);
    }
    /* Every table is still there and holds exactly what was written. */
    assert_int_equal(est_ll("SELECT count(*) FROM loom.events"),
                     events_before + (long long) n);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.snapshots"),
                     (long long) n);
    /* The injection's category is itself a hostile name: read it. Wait
     * for it, as another database's open transaction may hold it back. */
    {
        const char *cat = "'; DROP TABLE loom.events; ";
        int64_t deadline = est_now_ms() + 10000;
        int found = 0;
        while (!found && est_now_ms() < deadline) {
            loom_events *page = NULL;
            assert_int_equal(
                loom_store_read_category(f->s, cat, zero, NULL, 100, &page),
                LOOM_OK);
            for (size_t i = 0; i < loom_events_count(page); i++) {
                assert_string_equal(loom_events_at(page, i)->stream,
                                    "'; DROP TABLE loom.events; --");
                found++;
            }
            loom_events_free(page);
            if (!found)
                est_sleep_ms(10);
        }
        assert_int_equal(found, 1);
    }
    free(near);
}

static void
test_limits_open_null_out(void **state)
{
    loom_store_config cfg = LOOM_STORE_CONFIG_INIT;
    char err[256];

    (void) state;
    cfg.conninfo = loomt_dsn();
    assert_int_equal(loom_store_open(NULL, &cfg, err, sizeof err), LOOM_EINVAL);
    assert_int_equal(loom_store_open(NULL, NULL, NULL, 0), LOOM_EINVAL);
}

static void
test_limits_open_unreachable(void **state)
{
    loom_store_config cfg = LOOM_STORE_CONFIG_INIT;
    loom_store *s = (loom_store *) &cfg; /* must be reset to NULL */
    char err[512];

    (void) state;
    /* Port 1 on loopback: refused at once, no timeout to wait for. */
    cfg.conninfo = "host=127.0.0.1 port=1 dbname=none connect_timeout=5";
    assert_int_equal(loom_store_open(&s, &cfg, err, sizeof err), LOOM_ECONN);
    assert_null(s);
    assert_true(strlen(err) > 10);
    assert_non_null(strstr(err, "127.0.0.1"));
    /* No room for the message is fine too. */
    s = (loom_store *) &cfg;
    assert_int_equal(loom_store_open(&s, &cfg, NULL, 0), LOOM_ECONN);
    assert_null(s);
    /* A truncated message is still a terminated string. */
    memset(err, 'x', sizeof err);
    assert_int_equal(loom_store_open(&s, &cfg, err, 8), LOOM_ECONN);
    assert_true(strlen(err) < 8);
}

static void
test_limits_open_limit_out_of_range(void **state)
{
    static const char *const field[7] = {"max_stream_name is 4097",
                                         "max_payload",
                                         "max_read",
                                         "max_append",
                                         "max_metadata",
                                         "migrate is 7",
                                         "migrate is -1"};
    static const char *const range[7] = {"1 to 4096",
                                         "1 to 268435456",
                                         "1 to 1000000",
                                         "1 to 1000000",
                                         "1 to 16777216",
                                         "LOOM_MIGRATE_SKIP (2)",
                                         "LOOM_MIGRATE_CHECK (0)"};
    loom_store_config bad[7];
    char err[256];

    (void) state;
    for (int i = 0; i < 6; i++) {
        loom_store_config c = LOOM_STORE_CONFIG_INIT;
        c.conninfo = loomt_dsn();
        bad[i] = c;
    }
    bad[0].max_stream_name = LOOM_MAX_STREAM_NAME_LIMIT + 1;
    bad[1].max_payload = ((size_t) 256 << 20) + 1;
    bad[2].max_read = 1000001;
    bad[3].max_append = 1000001;
    bad[4].max_metadata = ((size_t) 16 << 20) + 1;
    bad[5].migrate = (loom_migrate_mode) 7;
    bad[6] = bad[5];
    bad[6].migrate = (loom_migrate_mode) -1;
    for (int i = 0; i < 7; i++) {
        loom_store *s = (loom_store *) &bad[i];
        err[0] = '\0';
        assert_int_equal(loom_store_open(&s, &bad[i], err, sizeof err),
                         LOOM_EINVAL);
        assert_null(s);
        /* The message names the field and its range. */
        if (strstr(err, field[i]) == NULL || strstr(err, range[i]) == NULL)
            fail_msg("message \"%s\" lacks \"%s\" or \"%s\"", err, field[i],
                     range[i]);
    }
    /* The documented maximum itself is accepted. */
    {
        loom_store_config c = LOOM_STORE_CONFIG_INIT;
        loom_store *s = NULL;
        c.conninfo = loomt_dsn();
        c.max_stream_name = LOOM_MAX_STREAM_NAME_LIMIT;
        assert_int_equal(loom_store_open(&s, &c, err, sizeof err), LOOM_OK);
        loom_store_close(s);
    }
}

static void
test_limits_open_defaults_from_environment(void **state)
{
    loom_store *s = NULL;
    char err[512];
    loom_event_data ev;

    (void) state;
    /* No conninfo: $LOOM_DATABASE_URL names the database; no
     * application_name: "eventloom". */
    assert_int_equal(setenv("LOOM_DATABASE_URL", loomt_dsn(), 1), 0);
    assert_int_equal(loom_store_open(&s, NULL, err, sizeof err), LOOM_OK);
    assert_int_equal(unsetenv("LOOM_DATABASE_URL"), 0);
    est_event(&ev, "T", "x", 1);
    assert_int_equal(append1(s, "env-1", &ev), LOOM_OK);
    assert_int_equal(est_count_stream("env-1"), 1);
    assert_true(est_ll("SELECT count(*) FROM pg_stat_activity WHERE "
                       "application_name = 'eventloom' AND datname = "
                       "current_database()") >= 1);
    loom_store_close(s);
}

static void
test_limits_open_check_on_empty_database(void **state)
{
    loom_store_config cfg = LOOM_STORE_CONFIG_INIT;
    loom_store *s = NULL;
    char dsn[4096], err[512];
    loom_event_data ev;

    (void) state;
    est_db_create_extra("limits_empty", dsn, sizeof dsn);
    cfg.conninfo = dsn;
    cfg.migrate = LOOM_MIGRATE_CHECK;
    assert_int_equal(loom_store_open(&s, &cfg, err, sizeof err), LOOM_ESCHEMA);
    assert_null(s);
    assert_non_null(strstr(err, "loomctl migrate"));
    /* Opened without the check, the first append says the same. */
    cfg.migrate = LOOM_MIGRATE_SKIP;
    assert_int_equal(loom_store_open(&s, &cfg, err, sizeof err), LOOM_OK);
    est_event(&ev, "T", "x", 1);
    assert_int_equal(append1(s, "e-1", &ev), LOOM_ESCHEMA);
    assert_non_null(strstr(loom_store_errmsg(s), "loomctl migrate"));
    loom_store_close(s);
    est_db_drop_extra("limits_empty");
}

int
main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_limits_null_arguments),
        T(test_limits_errmsg_belongs_to_the_last_call),
        T(test_limits_empty_stream_name),
        T(test_limits_stream_name_small_limit),
        T(test_limits_stream_name_default_limit),
        T(test_limits_stream_name_not_utf8),
        T(test_limits_event_count),
        T(test_limits_default_max_append_fits),
        T(test_limits_payload_size),
        T(test_limits_type_name),
        T(test_limits_negative_schema_version),
        T(test_limits_null_data_with_length),
        T(test_limits_bad_headers),
        T(test_limits_metadata_size),
        T(test_limits_bad_expected_version),
        T(test_limits_read_max),
        T(test_limits_read_stream_bad_position),
        T(test_limits_category_and_group),
        T(test_limits_hostile_stream_names_are_data),
        T(test_limits_open_null_out),
        T(test_limits_open_unreachable),
        T(test_limits_open_limit_out_of_range),
        T(test_limits_open_defaults_from_environment),
        T(test_limits_open_check_on_empty_database),
    };
#undef T

    return cmocka_run_group_tests_name("eventstore.limits", tests,
                                       est_group_setup, est_group_teardown);
}
