/*
 * loom_store_append(): every expected-version rule, atomic batches,
 * generated ids, idempotent retries, duplicate ids, and byte-exact round
 * trips of payloads and metadata.
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

/* Appends `n` fresh events of type "T" and checks it worked. */
static loom_append_result
append_n(loom_store *s, const char *stream, int64_t expected, size_t n)
{
    loom_event_data ev[64];
    loom_append_result res;
    loom_err rc;

    assert_true(n <= 64);
    for (size_t i = 0; i < n; i++)
        est_event(&ev[i], "T", "x", 1);
    rc = loom_store_append(s, stream, expected, ev, n, &res);
    if (rc != LOOM_OK)
        fail_msg("append to %s: %s: %s", stream, loom_err_name(rc),
                 loom_store_errmsg(s));
    return res;
}

static int64_t
stream_version(loom_store *s, const char *stream)
{
    int64_t v = -99;

    assert_int_equal(loom_store_stream_version(s, stream, &v), LOOM_OK);
    return v;
}

/* Reads the whole stream (at most 1,000 events) forward. */
static loom_events *
read_stream(loom_store *s, const char *stream)
{
    loom_events *page = NULL;
    loom_err rc =
        loom_store_read_stream(s, stream, 0, LOOM_FORWARD, 1000, &page);

    if (rc != LOOM_OK)
        fail_msg("read %s: %s: %s", stream, loom_err_name(rc),
                 loom_store_errmsg(s));
    assert_non_null(page);
    return page;
}

/* Checks a conflict: the code, the actual version, and an error message
 * naming the stream; and that the stream did not change. */
static void
expect_conflict(loom_store *s, const char *stream, int64_t expected,
                int64_t actual)
{
    long long before = est_count_stream(stream);
    loom_event_data ev;
    loom_append_result res;

    est_event(&ev, "T", "x", 1);
    memset(&res, 0x55, sizeof res);
    assert_int_equal(loom_store_append(s, stream, expected, &ev, 1, &res),
                     LOOM_ECONFLICT);
    assert_int_equal(res.actual_version, actual);
    assert_int_equal(res.replayed, 0);
    assert_non_null(strstr(loom_store_errmsg(s), stream));
    assert_string_equal(loom_store_sqlstate(s), "LM001");
    assert_int_equal(est_count_stream(stream), before);
    assert_int_equal(stream_version(s, stream), actual);
}

static void
test_append_any_on_new_stream(void **state)
{
    est_fx *f = *state;
    loom_append_result res = append_n(f->s, "any-new", LOOM_EXPECT_ANY, 1);

    assert_int_equal(res.first_version, 0);
    assert_int_equal(res.last_version, 0);
    assert_int_equal(res.replayed, 0);
    assert_true(res.first_position > 0);
    assert_true(res.first_position == res.last_position);
    assert_int_equal(stream_version(f->s, "any-new"), 0);
    /* Success clears the error text. */
    assert_string_equal(loom_store_errmsg(f->s), "");
    assert_string_equal(loom_store_sqlstate(f->s), "");
}

static void
test_append_any_on_existing_stream(void **state)
{
    est_fx *f = *state;
    loom_append_result res;

    append_n(f->s, "any-existing", LOOM_EXPECT_NO_STREAM, 2);
    res = append_n(f->s, "any-existing", LOOM_EXPECT_ANY, 3);
    assert_int_equal(res.first_version, 2);
    assert_int_equal(res.last_version, 4);
    assert_int_equal(stream_version(f->s, "any-existing"), 4);
}

static void
test_append_no_stream_on_new_stream(void **state)
{
    est_fx *f = *state;
    loom_append_result res =
        append_n(f->s, "nostream-new", LOOM_EXPECT_NO_STREAM, 2);

    assert_int_equal(res.first_version, 0);
    assert_int_equal(res.last_version, 1);
}

static void
test_append_no_stream_on_existing_conflicts(void **state)
{
    est_fx *f = *state;

    append_n(f->s, "nostream-existing", LOOM_EXPECT_NO_STREAM, 3);
    expect_conflict(f->s, "nostream-existing", LOOM_EXPECT_NO_STREAM, 2);
}

static void
test_append_exists_on_new_conflicts(void **state)
{
    est_fx *f = *state;

    expect_conflict(f->s, "exists-new", LOOM_EXPECT_EXISTS, -1);
    /* The refused append must not leave an empty stream row behind. */
    assert_int_equal(est_ll("SELECT count(*) FROM loom.streams WHERE stream = "
                            "'exists-new'"),
                     0);
}

static void
test_append_exists_on_existing_stream(void **state)
{
    est_fx *f = *state;
    loom_append_result res;

    append_n(f->s, "exists-existing", LOOM_EXPECT_ANY, 1);
    res = append_n(f->s, "exists-existing", LOOM_EXPECT_EXISTS, 2);
    assert_int_equal(res.first_version, 1);
    assert_int_equal(res.last_version, 2);
}

static void
test_append_exact_version_matches(void **state)
{
    est_fx *f = *state;
    loom_append_result res;

    append_n(f->s, "exact-ok", LOOM_EXPECT_NO_STREAM, 3);
    res = append_n(f->s, "exact-ok", 2, 1);
    assert_int_equal(res.first_version, 3);
    res = append_n(f->s, "exact-ok", 3, 4);
    assert_int_equal(res.first_version, 4);
    assert_int_equal(res.last_version, 7);
}

static void
test_append_stale_version_conflicts(void **state)
{
    est_fx *f = *state;

    append_n(f->s, "exact-stale", LOOM_EXPECT_NO_STREAM, 3);
    expect_conflict(f->s, "exact-stale", 0, 2);
    expect_conflict(f->s, "exact-stale", 1, 2);
}

static void
test_append_future_version_conflicts(void **state)
{
    est_fx *f = *state;

    append_n(f->s, "exact-future", LOOM_EXPECT_NO_STREAM, 3);
    expect_conflict(f->s, "exact-future", 3, 2);
    expect_conflict(f->s, "exact-future", 1000000, 2);
    /* An exact version on a stream that does not exist. */
    expect_conflict(f->s, "exact-missing", 0, -1);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.streams WHERE stream = "
                            "'exact-missing'"),
                     0);
}

static void
test_append_batch_gets_consecutive_versions(void **state)
{
    est_fx *f = *state;
    loom_append_result a = append_n(f->s, "batch-1", LOOM_EXPECT_NO_STREAM, 5);
    loom_append_result b = append_n(f->s, "batch-1", 4, 3);
    loom_events *page;

    assert_int_equal(a.first_version, 0);
    assert_int_equal(a.last_version, 4);
    assert_int_equal(b.first_version, 5);
    assert_int_equal(b.last_version, 7);
    assert_true(a.first_position < a.last_position);
    assert_true(a.last_position < b.first_position);
    page = read_stream(f->s, "batch-1");
    assert_int_equal(loom_events_count(page), 8);
    for (size_t i = 0; i < 8; i++) {
        const loom_event *ev = loom_events_at(page, i);
        assert_int_equal(ev->version, (int64_t) i);
        /* Positions follow versions inside a stream, and each batch's
         * first and last positions are the ones reported. */
        if (i > 0)
            assert_true(loom_events_at(page, i - 1)->position < ev->position);
    }
    assert_int_equal(loom_events_at(page, 0)->position, a.first_position);
    assert_int_equal(loom_events_at(page, 4)->position, a.last_position);
    assert_int_equal(loom_events_at(page, 5)->position, b.first_position);
    assert_int_equal(loom_events_at(page, 7)->position, b.last_position);
    /* One transaction for the whole batch. */
    assert_int_equal(loom_events_at(page, 0)->tx, loom_events_at(page, 4)->tx);
    assert_true(loom_events_at(page, 4)->tx < loom_events_at(page, 5)->tx);
    loom_events_free(page);
}

static void
test_append_writes_back_generated_ids(void **state)
{
    est_fx *f = *state;
    loom_event_data ev[4];
    loom_uuid mine;
    loom_events *page;

    for (int i = 0; i < 4; i++)
        est_event(&ev[i], "T", NULL, 0);
    /* A caller-chosen id is kept as it is. */
    assert_int_equal(loom_uuid_generate(&mine), LOOM_OK);
    ev[2].id = mine;
    assert_int_equal(
        loom_store_append(f->s, "ids-1", LOOM_EXPECT_ANY, ev, 4, NULL),
        LOOM_OK);
    for (int i = 0; i < 4; i++) {
        assert_false(loom_uuid_is_nil(&ev[i].id));
        for (int j = 0; j < i; j++)
            assert_memory_not_equal(&ev[i].id, &ev[j].id, sizeof ev[i].id);
    }
    assert_memory_equal(&ev[2].id, &mine, sizeof mine);
    assert_int_equal(ev[0].id.bytes[6] >> 4, 7); /* generated are v7 */
    page = read_stream(f->s, "ids-1");
    assert_int_equal(loom_events_count(page), 4);
    for (size_t i = 0; i < 4; i++)
        assert_memory_equal(&loom_events_at(page, i)->id, &ev[i].id,
                            sizeof ev[i].id);
    loom_events_free(page);
}

static void
test_append_retry_is_idempotent(void **state)
{
    est_fx *f = *state;
    loom_event_data ev[3];
    loom_append_result first, again;
    const int64_t expectations[] = {
        LOOM_EXPECT_NO_STREAM, LOOM_EXPECT_ANY, LOOM_EXPECT_EXISTS, 0, 2, 99};

    for (int i = 0; i < 3; i++)
        est_event(&ev[i], "T", "abc", 3);
    assert_int_equal(loom_store_append(f->s, "retry-1", LOOM_EXPECT_NO_STREAM,
                                       ev, 3, &first),
                     LOOM_OK);
    assert_int_equal(first.replayed, 0);
    /* Later appends move the stream on: the retry must still report the
     * original versions, whatever it now expects. */
    append_n(f->s, "retry-1", 2, 2);
    for (size_t k = 0; k < sizeof expectations / sizeof expectations[0]; k++) {
        memset(&again, 0, sizeof again);
        assert_int_equal(
            loom_store_append(f->s, "retry-1", expectations[k], ev, 3, &again),
            LOOM_OK);
        assert_int_equal(again.replayed, 1);
        assert_int_equal(again.first_version, first.first_version);
        assert_int_equal(again.last_version, first.last_version);
        assert_int_equal(again.first_position, first.first_position);
        assert_int_equal(again.last_position, first.last_position);
    }
    assert_int_equal(est_count_stream("retry-1"), 5);
    assert_int_equal(stream_version(f->s, "retry-1"), 4);
}

static void
test_append_retry_of_new_stream_is_idempotent(void **state)
{
    est_fx *f = *state;
    loom_event_data ev[2];
    loom_append_result first, again;

    est_event(&ev[0], "T", "a", 1);
    est_event(&ev[1], "T", "b", 1);
    assert_int_equal(loom_store_append(f->s, "retry-2", LOOM_EXPECT_NO_STREAM,
                                       ev, 2, &first),
                     LOOM_OK);
    assert_int_equal(loom_store_append(f->s, "retry-2", LOOM_EXPECT_NO_STREAM,
                                       ev, 2, &again),
                     LOOM_OK);
    assert_int_equal(again.replayed, 1);
    assert_int_equal(again.first_version, 0);
    assert_int_equal(again.last_version, 1);
    assert_int_equal(again.first_position, first.first_position);
    assert_int_equal(est_count_stream("retry-2"), 2);
}

static void
test_append_reused_id_is_duplicate(void **state)
{
    est_fx *f = *state;
    loom_event_data one, two[2];
    char text[LOOM_UUID_STRLEN];

    est_event(&one, "T", "x", 1);
    assert_int_equal(
        loom_store_append(f->s, "dup-a", LOOM_EXPECT_ANY, &one, 1, NULL),
        LOOM_OK);
    append_n(f->s, "dup-b", LOOM_EXPECT_ANY, 1);

    /* The id again, in a different append to the same stream. */
    two[0] = one;
    est_event(&two[1], "T", "y", 1);
    assert_int_equal(
        loom_store_append(f->s, "dup-a", LOOM_EXPECT_ANY, two, 2, NULL),
        LOOM_EDUPLICATE);
    assert_string_equal(loom_store_sqlstate(f->s), "LM002");
    loom_uuid_format(&one.id, text);
    assert_non_null(strstr(loom_store_errmsg(f->s), text));
    /* In a new stream: refused, and the stream is not created. */
    assert_int_equal(
        loom_store_append(f->s, "dup-new", LOOM_EXPECT_ANY, &one, 1, NULL),
        LOOM_EDUPLICATE);
    assert_int_equal(stream_version(f->s, "dup-new"), -1);
    /* In another existing stream. */
    assert_int_equal(
        loom_store_append(f->s, "dup-b", LOOM_EXPECT_ANY, &one, 1, NULL),
        LOOM_EDUPLICATE);
    assert_int_equal(est_count_stream("dup-a"), 1);
    assert_int_equal(est_count_stream("dup-b"), 1);
}

static void
test_append_retry_in_other_order_is_duplicate(void **state)
{
    est_fx *f = *state;
    loom_event_data ev[3], swapped[2];

    for (int i = 0; i < 3; i++)
        est_event(&ev[i], "T", "x", 1);
    assert_int_equal(
        loom_store_append(f->s, "dup-order", LOOM_EXPECT_ANY, ev, 3, NULL),
        LOOM_OK);
    /* Only the same ids in the same order at consecutive versions are a
     * retry; anything else reuses ids and is refused. */
    swapped[0] = ev[1];
    swapped[1] = ev[0];
    assert_int_equal(
        loom_store_append(f->s, "dup-order", LOOM_EXPECT_ANY, swapped, 2, NULL),
        LOOM_EDUPLICATE);
    swapped[0] = ev[0];
    swapped[1] = ev[2];
    assert_int_equal(
        loom_store_append(f->s, "dup-order", LOOM_EXPECT_ANY, swapped, 2, NULL),
        LOOM_EDUPLICATE);
    /* The original with one more event appended: the new one is not in
     * the stream, so this is not a retry either. */
    ev[2].id = (loom_uuid){{0}};
    assert_int_equal(
        loom_store_append(f->s, "dup-order", LOOM_EXPECT_ANY, ev, 3, NULL),
        LOOM_EDUPLICATE);
    assert_int_equal(est_count_stream("dup-order"), 3);
    assert_int_equal(est_count_stream("dup-new"), 0);
    assert_int_equal(stream_version(f->s, "dup-b"), 0);
}

static void
test_append_later_reused_id_writes_nothing(void **state)
{
    est_fx *f = *state;
    loom_event_data used, batch[4];
    char sql[256], text[LOOM_UUID_STRLEN];

    est_event(&used, "T", "x", 1);
    assert_int_equal(
        loom_store_append(f->s, "dup-later-a", LOOM_EXPECT_ANY, &used, 1, NULL),
        LOOM_OK);
    append_n(f->s, "dup-later-b", LOOM_EXPECT_ANY, 2);
    for (int i = 0; i < 4; i++)
        est_event(&batch[i], "T", "z", 1);
    batch[2].id = used.id;

    /* To a new stream and to an existing one: all or nothing. */
    assert_int_equal(loom_store_append(f->s, "dup-later-new", LOOM_EXPECT_ANY,
                                       batch, 4, NULL),
                     LOOM_EDUPLICATE);
    assert_int_equal(stream_version(f->s, "dup-later-new"), -1);
    assert_int_equal(loom_store_append(f->s, "dup-later-b", 1, batch, 4, NULL),
                     LOOM_EDUPLICATE);
    assert_int_equal(stream_version(f->s, "dup-later-b"), 1);
    assert_int_equal(est_count_stream("dup-later-new"), 0);
    assert_int_equal(est_count_stream("dup-later-b"), 2);
    /* None of the batch's fresh ids was written anywhere. */
    for (int i = 0; i < 4; i++) {
        if (i == 2)
            continue;
        loom_uuid_format(&batch[i].id, text);
        snprintf(sql, sizeof sql,
                 "SELECT count(*) FROM loom.events WHERE event_id = '%s'",
                 text);
        assert_int_equal(loomt_sql_ll(sql), 0);
    }
    /* Without the reused id the same events go in. */
    batch[2] = batch[3];
    assert_int_equal(loom_store_append(f->s, "dup-later-b", 1, batch, 3, NULL),
                     LOOM_OK);
    assert_int_equal(stream_version(f->s, "dup-later-b"), 4);
}

static void
test_append_duplicate_message_names_the_id(void **state)
{
    est_fx *f = *state;
    loom_event_data used, batch[2];
    char text[LOOM_UUID_STRLEN];

    est_event(&used, "T", "x", 1);
    assert_int_equal(
        loom_store_append(f->s, "dup-msg-a", LOOM_EXPECT_ANY, &used, 1, NULL),
        LOOM_OK);
    loom_uuid_format(&used.id, text);
    /* eventstore.h: errmsg names "which object (stream, event id,
     * limit)". The reused id first in the batch... */
    assert_int_equal(
        loom_store_append(f->s, "dup-msg-b", LOOM_EXPECT_ANY, &used, 1, NULL),
        LOOM_EDUPLICATE);
    assert_non_null(strstr(loom_store_errmsg(f->s), text));
    /* ...and later in it. */
    est_event(&batch[0], "T", "y", 1);
    batch[1] = used;
    assert_int_equal(
        loom_store_append(f->s, "dup-msg-b", LOOM_EXPECT_ANY, batch, 2, NULL),
        LOOM_EDUPLICATE);
    if (strstr(loom_store_errmsg(f->s), text) == NULL)
        fail_msg("errmsg \"%s\" does not name the reused id %s",
                 loom_store_errmsg(f->s), text);
}

static void
test_append_same_id_twice_in_batch_is_duplicate(void **state)
{
    est_fx *f = *state;
    loom_event_data batch[2];

    est_event(&batch[0], "T", "a", 1);
    assert_int_equal(loom_uuid_generate(&batch[0].id), LOOM_OK);
    batch[1] = batch[0];
    assert_int_equal(
        loom_store_append(f->s, "dup-twice", LOOM_EXPECT_ANY, batch, 2, NULL),
        LOOM_EDUPLICATE);
    assert_int_equal(stream_version(f->s, "dup-twice"), -1);
}

static void
test_append_metadata_round_trips(void **state)
{
    est_fx *f = *state;
    char binary[256];
    static const char utf8[] = "\xd0\xb7\xd0\xb0\xd0\xba\xd0\xb0\xd0\xb7 "
                               "\xe6\xb3\xa8\xe6\x96\x87 \xf0\x9f\x93\xa6";
    loom_header headers[8];
    char *large = malloc(20001);
    loom_event_data ev[3];
    loom_events *page;
    const loom_event *e;

    /* Every byte value but NUL, in one header value. */
    for (int i = 1; i < 256; i++)
        binary[i - 1] = (char) i;
    binary[255] = '\0';
    headers[0] = (loom_header){"quote", "it's \"quoted\" ''"};
    headers[1] = (loom_header){"semi;colon", "a;b;c; DROP TABLE x;--"};
    headers[2] = (loom_header){"back\\slash", "\\x00\\\\ \\n"};
    headers[3] = (loom_header){"utf8", utf8};
    headers[4] = (loom_header){"binary", binary};
    headers[5] = (loom_header){"empty", ""};
    headers[6] = (loom_header){"quote", "a repeated key keeps its place"};
    /* Long enough for three-byte length prefixes in the encoding. */
    assert_non_null(large);
    for (int i = 0; i < 20000; i++)
        large[i] = (char) ('a' + i % 26);
    large[20000] = '\0';
    headers[7] = (loom_header){"large", large};

    est_event(&ev[0], "Meta", "1", 1);
    ev[0].correlation_id = "corr-\"'; \\ \xe2\x82\xac";
    ev[0].causation_id = binary;
    ev[0].headers = headers;
    ev[0].n_headers = 8;
    est_event(&ev[1], "Meta", "2", 1); /* no metadata at all */
    est_event(&ev[2], "Meta", "3", 1); /* only a causation id, empty */
    ev[2].causation_id = "";
    assert_int_equal(
        loom_store_append(f->s, "meta-1", LOOM_EXPECT_NO_STREAM, ev, 3, NULL),
        LOOM_OK);

    page = read_stream(f->s, "meta-1");
    assert_int_equal(loom_events_count(page), 3);
    e = loom_events_at(page, 0);
    assert_non_null(e->correlation_id);
    assert_string_equal(e->correlation_id, ev[0].correlation_id);
    assert_non_null(e->causation_id);
    assert_string_equal(e->causation_id, binary);
    assert_int_equal(e->n_headers, 8);
    for (size_t i = 0; i < 8; i++) {
        assert_string_equal(e->headers[i].key, headers[i].key);
        assert_string_equal(e->headers[i].value, headers[i].value);
    }
    e = loom_events_at(page, 1);
    assert_null(e->correlation_id);
    assert_null(e->causation_id);
    assert_int_equal(e->n_headers, 0);
    e = loom_events_at(page, 2);
    assert_null(e->correlation_id);
    assert_non_null(e->causation_id);
    assert_string_equal(e->causation_id, "");
    assert_int_equal(e->n_headers, 0);
    loom_events_free(page);
    free(large);
}

static void
test_append_type_and_schema_version_round_trip(void **state)
{
    est_fx *f = *state;
    loom_event_data ev;
    loom_events *page;
    const loom_event *e;
    int64_t now_us = (int64_t) time(NULL) * 1000000;

    est_event(&ev, "shop.OrderPlaced", "p", 1);
    ev.schema_version = 2147483647;
    assert_int_equal(
        loom_store_append(f->s, "type-1", LOOM_EXPECT_ANY, &ev, 1, NULL),
        LOOM_OK);
    page = read_stream(f->s, "type-1");
    e = loom_events_at(page, 0);
    assert_non_null(e);
    assert_string_equal(e->type, "shop.OrderPlaced");
    assert_string_equal(e->stream, "type-1");
    assert_int_equal(e->schema_version, 2147483647);
    /* Recorded by the server's clock, which is this machine's. */
    assert_true(e->recorded_at > now_us - 60 * 1000000LL);
    assert_true(e->recorded_at < now_us + 60 * 1000000LL);
    loom_events_free(page);
}

static void
test_append_payload_all_bytes_round_trip(void **state)
{
    est_fx *f = *state;
    unsigned char all[256], *big;
    loom_event_data ev[2];
    loom_events *page;
    const size_t big_len = 300000;

    for (int i = 0; i < 256; i++)
        all[i] = (unsigned char) i;
    big = malloc(big_len);
    assert_non_null(big);
    srand(42);
    for (size_t i = 0; i < big_len; i++)
        big[i] = (unsigned char) rand();
    est_event(&ev[0], "Bytes", all, sizeof all);
    est_event(&ev[1], "Bytes", big, big_len);
    assert_int_equal(
        loom_store_append(f->s, "bytes-1", LOOM_EXPECT_ANY, ev, 2, NULL),
        LOOM_OK);
    page = read_stream(f->s, "bytes-1");
    assert_int_equal(loom_events_count(page), 2);
    assert_int_equal(loom_events_at(page, 0)->data_len, sizeof all);
    assert_memory_equal(loom_events_at(page, 0)->data, all, sizeof all);
    assert_int_equal(loom_events_at(page, 1)->data_len, big_len);
    assert_memory_equal(loom_events_at(page, 1)->data, big, big_len);
    loom_events_free(page);
    free(big);
}

static void
test_append_empty_payload(void **state)
{
    est_fx *f = *state;
    loom_event_data ev[2];
    loom_events *page;

    est_event(&ev[0], "Empty", NULL, 0);
    est_event(&ev[1], "Empty", "ignored", 0);
    assert_int_equal(
        loom_store_append(f->s, "empty-1", LOOM_EXPECT_ANY, ev, 2, NULL),
        LOOM_OK);
    page = read_stream(f->s, "empty-1");
    assert_int_equal(loom_events_count(page), 2);
    for (size_t i = 0; i < 2; i++) {
        assert_non_null(loom_events_at(page, i)->data);
        assert_int_equal(loom_events_at(page, i)->data_len, 0);
    }
    loom_events_free(page);
}

/*
 * The transaction of an append can fail at COMMIT, after loom.append()
 * has returned its row: a serialization failure, a deferred constraint,
 * a full disk. The server then sends the row, then the error. A deferred
 * trigger that refuses one stream's rows stands in for all of these: the
 * append must report the error, not the row of an append that was rolled
 * back.
 */
static void
test_append_commit_failure_is_reported(void **state)
{
    est_fx *f = *state;
    loom_event_data ev;
    loom_append_result res;
    loom_err rc;

    loomt_sql_exec(
        "CREATE FUNCTION public.loomt_refuse_commit() RETURNS trigger "
        "LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.stream LIKE 'commitfail-%' THEN "
        "RAISE EXCEPTION 'commit of % refused', NEW.stream "
        "USING ERRCODE = '40001'; END IF; RETURN NULL; END $$; "
        "CREATE CONSTRAINT TRIGGER loomt_refuse_commit AFTER INSERT ON "
        "loom.events DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
        "EXECUTE FUNCTION public.loomt_refuse_commit()");
    est_event(&ev, "T", "x", 1);
    memset(&res, 0, sizeof res);
    rc = loom_store_append(f->s, "commitfail-1", LOOM_EXPECT_NO_STREAM, &ev, 1,
                           &res);
    /* Remove the trigger before any assertion can end the test. */
    loomt_sql_exec("DROP TRIGGER loomt_refuse_commit ON loom.events; "
                   "DROP FUNCTION public.loomt_refuse_commit()");
    assert_int_equal(est_count_stream("commitfail-1"), 0);
    if (rc == LOOM_OK)
        fail_msg("append reported LOOM_OK (version %lld, position %lld) but "
                 "its transaction failed at commit and nothing was written",
                 (long long) res.first_version, (long long) res.first_position);
    assert_int_equal(rc, LOOM_EDB);
    assert_string_equal(loom_store_sqlstate(f->s), "40001");
    assert_non_null(strstr(loom_store_errmsg(f->s), "refused"));
    /* The handle is usable and the stream still new. */
    assert_int_equal(stream_version(f->s, "commitfail-1"), -1);
    append_n(f->s, "commitfail-1", LOOM_EXPECT_NO_STREAM, 1);
}

int
main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, est_setup, est_teardown)
    const struct CMUnitTest tests[] = {
        T(test_append_any_on_new_stream),
        T(test_append_any_on_existing_stream),
        T(test_append_no_stream_on_new_stream),
        T(test_append_no_stream_on_existing_conflicts),
        T(test_append_exists_on_new_conflicts),
        T(test_append_exists_on_existing_stream),
        T(test_append_exact_version_matches),
        T(test_append_stale_version_conflicts),
        T(test_append_future_version_conflicts),
        T(test_append_batch_gets_consecutive_versions),
        T(test_append_writes_back_generated_ids),
        T(test_append_retry_is_idempotent),
        T(test_append_retry_of_new_stream_is_idempotent),
        T(test_append_reused_id_is_duplicate),
        T(test_append_retry_in_other_order_is_duplicate),
        T(test_append_later_reused_id_writes_nothing),
        T(test_append_duplicate_message_names_the_id),
        T(test_append_same_id_twice_in_batch_is_duplicate),
        T(test_append_metadata_round_trips),
        T(test_append_type_and_schema_version_round_trip),
        T(test_append_payload_all_bytes_round_trip),
        T(test_append_empty_payload),
        T(test_append_commit_failure_is_reported),
    };
#undef T

    return cmocka_run_group_tests_name("eventstore.append", tests,
                                       est_group_setup, est_group_teardown);
}
