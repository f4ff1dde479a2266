/*
 * Every value reaches PostgreSQL as a parameter, never as SQL text: stream
 * names, types, header keys and values full of quotes, semicolons,
 * backslashes, SQL comments, binary (NUL-free) bytes and very long text
 * go in and come back byte for byte, by stream, in commit order and by
 * category; the schema is untouched. Values over a documented limit get
 * LOOM_ETOOBIG with a message naming the limit, and text that must be
 * UTF-8 (stream and type names) gets LOOM_EINVAL.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "estest.h"

static const char *const hostile[] = {
    "it's",
    "a;b",
    "x'); DROP TABLE loom.events; --",
    "x\"; DELETE FROM loom.streams; --",
    "back\\slash\\\\ and \\' and \\x00",
    "$1 $$ $tag$ E'\\n' /* c */ -- d",
    "semi;colon;'quote'\"dq\"",
    "tab\tnew\nline\rcr",
    "ünïcødé ✓ 𝄞",
    "%s %n %d {} [] \\u0000",
};

typedef struct fx {
    loom_store *s;
} fx;

static int
setup(void **state)
{
    loom_store_config cfg = LOOM_STORE_CONFIG_INIT;
    fx *f = calloc(1, sizeof *f);

    assert_non_null(f);
    loom_store_close(loomt_store_open()); /* migrates */
    cfg.max_stream_name = LOOM_MAX_STREAM_NAME_LIMIT;
    cfg.max_metadata = (size_t) 1 << 20;
    f->s = est_store_open(&cfg);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    fx *f = *state;

    loom_store_close(f->s);
    free(f);
    return 0;
}

/* Every byte 1..255 but NUL, repeated to `len` bytes. */
static char *
binary_text(size_t len)
{
    char *s = malloc(len + 1);

    assert_non_null(s);
    for (size_t i = 0; i < len; i++)
        s[i] = (char) (1 + i % 255);
    s[len] = '\0';
    return s;
}

/* Appends `ev` as a new event (a fresh id) to `stream`. */
static void
append_ok(loom_store *s, const char *stream, loom_event_data *ev)
{
    loom_err rc;

    memset(&ev->id, 0, sizeof ev->id);
    rc = loom_store_append(s, stream, LOOM_EXPECT_ANY, ev, 1, NULL);

    if (rc != LOOM_OK)
        fail_msg("append to a hostile stream: %s: %s", loom_err_name(rc),
                 loom_store_errmsg(s));
}

/* The one event of `stream` has `ev`'s type, data and headers. */
static void
check_back(loom_store *s, const char *stream, const loom_event_data *ev)
{
    loom_events *page = NULL;
    const loom_event *got;

    assert_int_equal(
        loom_store_read_stream(s, stream, 0, LOOM_FORWARD, 10, &page), LOOM_OK);
    assert_int_equal(loom_events_count(page), 1);
    got = loom_events_at(page, 0);
    assert_string_equal(got->stream, stream);
    assert_string_equal(got->type, ev->type);
    assert_int_equal(got->data_len, ev->data_len);
    assert_memory_equal(got->data, ev->data, ev->data_len);
    assert_int_equal(got->n_headers, ev->n_headers);
    for (size_t i = 0; i < ev->n_headers; i++) {
        assert_string_equal(got->headers[i].key, ev->headers[i].key);
        assert_int_equal(strlen(got->headers[i].value),
                         strlen(ev->headers[i].value));
        assert_string_equal(got->headers[i].value, ev->headers[i].value);
    }
    if (ev->correlation_id != NULL)
        assert_string_equal(got->correlation_id, ev->correlation_id);
    loom_events_free(page);
}

static void
hostile_stream_names_types_and_headers_come_back_byte_exact(void **state)
{
    fx *f = *state;
    size_t n = sizeof hostile / sizeof hostile[0];
    long long before = est_ll("SELECT count(*) FROM pg_class WHERE "
                              "relnamespace = 'loom'::regnamespace");

    for (size_t i = 0; i < n; i++) {
        char stream[128], type[128];
        loom_header h[3];
        loom_event_data ev;
        uint8_t data[256];

        /* As a whole name, and as a category with an id. */
        snprintf(stream, sizeof stream, "%s-%zu", hostile[i], i);
        snprintf(type, sizeof type, "t.%s", hostile[i]);
        for (size_t b = 0; b < sizeof data; b++)
            data[b] = (uint8_t) (b * 7 + i); /* NUL bytes included */
        h[0].key = hostile[i];
        h[0].value = hostile[(i + 1) % n];
        h[1].key = "k;'\\";
        h[1].value = hostile[i];
        h[2].key = "empty";
        h[2].value = "";
        memset(&ev, 0, sizeof ev);
        ev.type = type;
        ev.data = data;
        ev.data_len = sizeof data;
        ev.headers = h;
        ev.n_headers = 3;
        ev.correlation_id = hostile[i];
        append_ok(f->s, stream, &ev);
        append_ok(f->s, hostile[i], &ev);
        check_back(f->s, stream, &ev);
        check_back(f->s, hostile[i], &ev);
    }
    /* By category: the text before the first '-', quotes and all. A
     * category read returns only events older than every transaction
     * still running in the cluster (commit order), and other tests run
     * beside this one: wait for the horizon to pass them. */
    for (size_t i = 0; i < n; i++) {
        loom_position start = {0, 0};
        int64_t deadline = est_now_ms() + 30000;
        size_t got = 0;

        if (strchr(hostile[i], '-') != NULL)
            continue; /* a category has no '-' */
        for (;;) {
            loom_events *page = NULL;
            loom_err rc = loom_store_read_category(f->s, hostile[i], start,
                                                   NULL, 100, &page);
            if (rc != LOOM_OK)
                fail_msg("category %s: %s", hostile[i],
                         loom_store_errmsg(f->s));
            got = loom_events_count(page);
            loom_events_free(page);
            if (got >= 2 || est_now_ms() > deadline)
                break;
            nanosleep(&(struct timespec){0, 20000000}, NULL);
        }
        assert_int_equal(got, 2);
    }
    assert_int_equal(est_ll("SELECT count(*) FROM loom.events"), 2 * n);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.streams"), 2 * n);
    assert_int_equal(est_ll("SELECT count(*) FROM pg_class WHERE "
                            "relnamespace = 'loom'::regnamespace"),
                     before);
}

static void
binary_and_64k_header_values_come_back_byte_exact(void **state)
{
    fx *f = *state;
    char *big = binary_text((size_t) 64 << 10);
    char *key = binary_text(1000);
    loom_header h[2] = {{"bin", NULL}, {NULL, "v"}};
    loom_event_data ev;

    h[0].value = big;
    h[1].key = key;
    memset(&ev, 0, sizeof ev);
    ev.type = "sec.Binary";
    ev.data = big;
    ev.data_len = strlen(big);
    ev.headers = h;
    ev.n_headers = 2;
    append_ok(f->s, "binary-1", &ev);
    check_back(f->s, "binary-1", &ev);
    free(big);
    free(key);
}

static void
longest_stream_name_works_and_one_more_byte_is_too_big(void **state)
{
    fx *f = *state;
    char *name = binary_text(LOOM_MAX_STREAM_NAME_LIMIT + 1);
    loom_store *dflt = est_store_open(NULL);
    loom_event_data ev;

    /* Printable, with quotes and backslashes, 4,096 bytes. */
    for (size_t i = 0; i < LOOM_MAX_STREAM_NAME_LIMIT; i++)
        name[i] = "a'b;c\\d\"e-"[i % 10];
    memset(&ev, 0, sizeof ev);
    ev.type = "sec.Long";
    ev.data = "x";
    ev.data_len = 1;
    name[LOOM_MAX_STREAM_NAME_LIMIT] = '\0';
    append_ok(f->s, name, &ev);
    check_back(f->s, name, &ev);
    /* One byte over the limit: a clear error, nothing written. */
    name[LOOM_MAX_STREAM_NAME_LIMIT] = 'z';
    assert_int_equal(
        loom_store_append(f->s, name, LOOM_EXPECT_ANY, &ev, 1, NULL),
        LOOM_ETOOBIG);
    assert_non_null(strstr(loom_store_errmsg(f->s), "max_stream_name"));
    /* The default limit is 255 bytes. */
    name[LOOM_DEFAULT_MAX_STREAM_NAME] = '\0';
    append_ok(dflt, name, &ev);
    name[LOOM_DEFAULT_MAX_STREAM_NAME] = 'z';
    name[LOOM_DEFAULT_MAX_STREAM_NAME + 1] = '\0';
    assert_int_equal(
        loom_store_append(dflt, name, LOOM_EXPECT_ANY, &ev, 1, NULL),
        LOOM_ETOOBIG);
    assert_non_null(strstr(loom_store_errmsg(dflt), "255"));
    loom_store_close(dflt);
    free(name);
}

static void
metadata_over_its_limit_and_non_utf8_names_are_refused_clearly(void **state)
{
    fx *f = *state;
    loom_store *dflt = est_store_open(NULL);
    char *big = binary_text((size_t) 64 << 10);
    loom_header h[1] = {{"big", NULL}};
    loom_event_data ev;
    long long before = est_ll("SELECT count(*) FROM loom.events");

    (void) f;
    h[0].value = big;
    memset(&ev, 0, sizeof ev);
    ev.type = "sec.Big";
    ev.data = "x";
    ev.data_len = 1;
    ev.headers = h;
    ev.n_headers = 1;
    /* The default max_metadata is 64 KiB, ids and header keys included. */
    assert_int_equal(
        loom_store_append(dflt, "big-1", LOOM_EXPECT_ANY, &ev, 1, NULL),
        LOOM_ETOOBIG);
    assert_non_null(strstr(loom_store_errmsg(dflt), "max_metadata"));
    ev.n_headers = 0;
    /* Binary bytes in a stream or type name: not UTF-8. */
    assert_int_equal(
        loom_store_append(dflt, "bad\xff\xfe-1", LOOM_EXPECT_ANY, &ev, 1, NULL),
        LOOM_EINVAL);
    assert_non_null(strstr(loom_store_errmsg(dflt), "UTF-8"));
    ev.type = "t\xc3(";
    assert_int_equal(
        loom_store_append(dflt, "ok-1", LOOM_EXPECT_ANY, &ev, 1, NULL),
        LOOM_EINVAL);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.events"), before);
    loom_store_close(dflt);
    free(big);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            hostile_stream_names_types_and_headers_come_back_byte_exact, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            binary_and_64k_header_values_come_back_byte_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(
            longest_stream_name_works_and_one_more_byte_is_too_big, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            metadata_over_its_limit_and_non_utf8_names_are_refused_clearly,
            setup, teardown),
    };

    return cmocka_run_group_tests_name("security.hostile_values", tests,
                                       est_group_setup, est_group_teardown);
}
