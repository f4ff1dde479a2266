/*
 * Reads: one stream by version in both directions, all events in commit
 * order with cursors, one category, and consumer groups (Message DB's
 * hashing, checked against the formula computed independently in SQL).
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

/* Appends `n` events to `stream` whose payloads are "<stream>#<version>",
 * so every read can check it got the right bytes for each version. */
static void
append_numbered(loom_store *s, const char *stream, size_t n)
{
    loom_event_data ev[64];
    char data[64][160];
    int64_t v = -9;

    assert_true(n <= 64);
    assert_int_equal(loom_store_stream_version(s, stream, &v), LOOM_OK);
    for (size_t i = 0; i < n; i++) {
        int len = snprintf(data[i], sizeof data[i], "%s#%lld", stream,
                           (long long) (v + 1 + (int64_t) i));
        est_event(&ev[i], "N", data[i], (size_t) len);
    }
    assert_int_equal(loom_store_append(s, stream, v, ev, n, NULL), LOOM_OK);
}

static void
check_numbered(const loom_event *ev)
{
    char want[160];
    int len = snprintf(want, sizeof want, "%s#%lld", ev->stream,
                       (long long) ev->version);

    assert_int_equal(ev->data_len, (size_t) len);
    assert_memory_equal(ev->data, want, (size_t) len);
}

static loom_events *
read_stream(loom_store *s, const char *stream, int64_t from, loom_direction dir,
            size_t max)
{
    loom_events *page = NULL;

    assert_int_equal(loom_store_read_stream(s, stream, from, dir, max, &page),
                     LOOM_OK);
    assert_non_null(page);
    return page;
}

/* Reads a page of `stream` and checks it holds `count` numbered events,
 * from version `first` on in the direction read. */
static void
expect_page(loom_store *s, const char *stream, int64_t from, loom_direction dir,
            size_t max, int64_t first, size_t count)
{
    loom_events *page = read_stream(s, stream, from, dir, max);
    int64_t step = dir == LOOM_FORWARD ? 1 : -1;

    assert_int_equal(loom_events_count(page), count);
    for (size_t i = 0; i < count; i++) {
        const loom_event *ev = loom_events_at(page, i);
        assert_int_equal(ev->version, first + step * (int64_t) i);
        check_numbered(ev);
    }
    loom_events_free(page);
}

static void
test_read_stream_forward_paging(void **state)
{
    est_fx *f = *state;

    append_numbered(f->s, "fwd-1", 7);
    append_numbered(f->s, "fwd-1", 1);
    append_numbered(f->s, "fwd-1", 17);
    append_numbered(f->s, "fwd-2", 3); /* another stream, never returned */
    expect_page(f->s, "fwd-1", 0, LOOM_FORWARD, 10, 0, 10);
    expect_page(f->s, "fwd-1", 10, LOOM_FORWARD, 10, 10, 10);
    expect_page(f->s, "fwd-1", 20, LOOM_FORWARD, 10, 20, 5);
    expect_page(f->s, "fwd-1", 25, LOOM_FORWARD, 10, 25, 0);
    expect_page(f->s, "fwd-1", 1000, LOOM_FORWARD, 10, 0, 0);
    /* From the middle, one at a time. */
    expect_page(f->s, "fwd-1", 13, LOOM_FORWARD, 1, 13, 1);
}

static void
test_read_stream_backward_paging(void **state)
{
    est_fx *f = *state;

    append_numbered(f->s, "bwd-1", 25);
    expect_page(f->s, "bwd-1", LOOM_VERSION_END, LOOM_BACKWARD, 10, 24, 10);
    expect_page(f->s, "bwd-1", 14, LOOM_BACKWARD, 10, 14, 10);
    expect_page(f->s, "bwd-1", 4, LOOM_BACKWARD, 10, 4, 5);
    expect_page(f->s, "bwd-1", 0, LOOM_BACKWARD, 10, 0, 1);
    /* Past the end starts at the newest event. */
    expect_page(f->s, "bwd-1", 100, LOOM_BACKWARD, 3, 24, 3);
}

/* A row whose metadata is not loom.Metadata (written by other software)
 * must not block readers: it reads with its payload and no metadata. */
static void
test_read_undecodable_metadata_reads_as_absent(void **state)
{
    est_fx *f = *state;
    loom_events *page;
    const loom_event *ev;

    loomt_sql_exec("INSERT INTO loom.streams (stream, category, version) "
                   "VALUES ('alien-1', 'alien', 0);"
                   "INSERT INTO loom.events (stream, category, version, "
                   "event_id, type, schema_version, data, metadata) VALUES "
                   "('alien-1', 'alien', 0, gen_random_uuid(), 'X', 1, "
                   "'\\x0102', '\\xffffffff')");
    page = read_stream(f->s, "alien-1", 0, LOOM_FORWARD, 10);
    assert_int_equal(loom_events_count(page), 1);
    ev = loom_events_at(page, 0);
    assert_int_equal(ev->data_len, 2);
    assert_null(ev->correlation_id);
    assert_int_equal(ev->n_headers, 0);
    loom_events_free(page);
}

static void
test_read_stream_missing_is_empty(void **state)
{
    est_fx *f = *state;
    loom_events *page;

    page = read_stream(f->s, "missing-1", 0, LOOM_FORWARD, 10);
    assert_int_equal(loom_events_count(page), 0);
    assert_null(loom_events_at(page, 0));
    loom_events_free(page);
    page = read_stream(f->s, "missing-1", LOOM_VERSION_END, LOOM_BACKWARD, 10);
    assert_int_equal(loom_events_count(page), 0);
    loom_events_free(page);
}

static void
test_read_all_pages_in_commit_order(void **state)
{
    enum { STREAMS = 7, TOTAL = 1234 };
    static const size_t sizes[] = {1, 3, 50, 7, 13};
    est_fx *f = *state;
    loom_position cursor = est_read_all_end(f->s);
    loom_uuid *ids = malloc(TOTAL * sizeof *ids);
    est_seen *seen = malloc((TOTAL + 10) * sizeof *seen);
    size_t written = 0, k = 0, got;
    int64_t next_version[STREAMS] = {0};

    assert_non_null(ids);
    assert_non_null(seen);
    /* One writer, so commit order is the order of the appends. */
    while (written < TOTAL) {
        size_t n = sizes[k % 5], st = k % STREAMS;
        loom_event_data ev[50];
        char stream[16];
        if (n > TOTAL - written)
            n = TOTAL - written;
        snprintf(stream, sizeof stream, "ra-%zu", st);
        for (size_t i = 0; i < n; i++)
            est_event(&ev[i], "R", "r", 1);
        assert_int_equal(
            loom_store_append(f->s, stream, next_version[st] - 1, ev, n, NULL),
            LOOM_OK);
        next_version[st] += (int64_t) n;
        for (size_t i = 0; i < n; i++)
            ids[written + i] = ev[i].id;
        written += n;
        k++;
    }
    got = est_collect_all(f->s, &cursor, 100, "ra-", seen, TOTAL + 10, TOTAL,
                          20000);
    assert_int_equal(got, TOTAL);
    for (size_t i = 0; i < TOTAL; i++) {
        assert_memory_equal(&seen[i].id, &ids[i], sizeof ids[i]);
        if (i > 0)
            assert_true(est_pos_before(seen[i - 1].at, seen[i].at));
    }
    free(ids);
    free(seen);
}

static void
test_read_all_cursor_is_exclusive(void **state)
{
    est_fx *f = *state;
    loom_position cursor = est_read_all_end(f->s);
    est_seen seen[5];
    loom_events *page = NULL;

    append_numbered(f->s, "excl-1", 5);
    assert_int_equal(
        est_collect_all(f->s, &cursor, 100, "excl-", seen, 5, 5, 10000), 5);
    /* Step through one at a time: each read starts right after the
     * cursor it was given. Start just before the first event (nothing
     * can sit between): under a lagging horizon `start` may precede
     * older events. */
    cursor.tx = seen[0].at.tx;
    cursor.position = seen[0].at.position - 1;
    for (size_t i = 0; i < 5; i++) {
        const loom_event *ev;
        assert_int_equal(loom_store_read_all(f->s, cursor, 1, &page), LOOM_OK);
        assert_int_equal(loom_events_count(page), 1);
        ev = loom_events_at(page, 0);
        assert_int_equal(ev->position, seen[i].at.position);
        assert_int_equal(ev->tx, seen[i].at.tx);
        cursor = loom_events_next(page);
        assert_int_equal(cursor.position, ev->position);
        assert_int_equal(cursor.tx, ev->tx);
        loom_events_free(page);
    }
    /* After the last one: an empty page that keeps the cursor. */
    assert_int_equal(loom_store_read_all(f->s, cursor, 10, &page), LOOM_OK);
    assert_int_equal(loom_events_count(page), 0);
    assert_int_equal(loom_events_next(page).tx, cursor.tx);
    assert_int_equal(loom_events_next(page).position, cursor.position);
    loom_events_free(page);
    /* A cursor on the third event starts at the fourth. */
    assert_int_equal(loom_store_read_all(f->s, seen[2].at, 10, &page), LOOM_OK);
    assert_int_equal(loom_events_count(page), 2);
    assert_int_equal(loom_events_at(page, 0)->position, seen[3].at.position);
    loom_events_free(page);
}

static void
test_read_all_pages_inside_one_transaction(void **state)
{
    est_fx *f = *state;
    loom_position start = est_read_all_end(f->s), cursor;
    est_seen seen[51];
    loom_events *page = NULL;
    size_t total = 0;

    append_numbered(f->s, "onetx-1", 50);
    cursor = start;
    assert_int_equal(
        est_collect_all(f->s, &cursor, 100, "onetx-", seen, 51, 50, 10000), 50);
    /* Pages of 7 split the one transaction; the cursor's position part
     * carries the read on inside it. */
    cursor = start;
    while (total < 50) {
        assert_int_equal(loom_store_read_all(f->s, cursor, 7, &page), LOOM_OK);
        /* All 50 are readable already, so no page comes back empty. */
        assert_true(loom_events_count(page) > 0);
        for (size_t i = 0; i < loom_events_count(page); i++) {
            const loom_event *ev = loom_events_at(page, i);
            if (strcmp(ev->stream, "onetx-1") != 0)
                continue;
            assert_int_equal(ev->tx, seen[total].at.tx);
            assert_int_equal(ev->position, seen[total].at.position);
            assert_int_equal(ev->version, (int64_t) total);
            total++;
        }
        cursor = loom_events_next(page);
        loom_events_free(page);
    }
    assert_int_equal(total, 50);
    for (size_t i = 1; i < 50; i++)
        assert_int_equal(seen[i].at.tx, seen[0].at.tx);
}

static void
test_read_event_fields_match_table(void **state)
{
    est_fx *f = *state;
    loom_events *page;
    const loom_event *ev;
    char text[LOOM_UUID_STRLEN];

    append_numbered(f->s, "fields-1", 2);
    page = read_stream(f->s, "fields-1", 1, LOOM_FORWARD, 1);
    ev = loom_events_at(page, 0);
    assert_non_null(ev);
    /* The cursor parts are the row's own transaction id and position. */
    loom_uuid_format(&ev->id, text);
    assert_int_equal(est_ll("SELECT position FROM loom.events WHERE "
                            "event_id = '%s'",
                            text),
                     ev->position);
    assert_int_equal(est_ll("SELECT tx::text::bigint FROM loom.events WHERE "
                            "event_id = '%s'",
                            text),
                     (long long) ev->tx);
    assert_int_equal(est_ll("SELECT version FROM loom.events WHERE "
                            "event_id = '%s'",
                            text),
                     1);
    assert_int_equal(est_ll("SELECT (extract(epoch FROM recorded_at) * "
                            "1000000)::bigint FROM loom.events WHERE "
                            "event_id = '%s'",
                            text),
                     ev->recorded_at);
    loom_events_free(page);
}

/* Reads `category` (with `group`, may be NULL) from the start until
 * `want` events arrived or 10 s passed; copies them into out. */
static size_t
collect_category(loom_store *s, const char *category, const loom_group *group,
                 est_seen *out, size_t cap, size_t want)
{
    loom_position cursor = {0, 0};
    int64_t deadline = est_now_ms() + 10000;
    size_t kept = 0;

    while (kept < want && est_now_ms() < deadline) {
        loom_events *page = NULL;
        size_t n;
        loom_err rc =
            loom_store_read_category(s, category, cursor, group, 100, &page);
        if (rc != LOOM_OK)
            fail_msg("read_category %s: %s: %s", category, loom_err_name(rc),
                     loom_store_errmsg(s));
        n = loom_events_count(page);
        for (size_t i = 0; i < n; i++) {
            const loom_event *ev = loom_events_at(page, i);
            loom_position at = {ev->tx, ev->position};
            assert_true(est_pos_before(cursor, at));
            cursor = at;
            if (kept < cap)
                est_seen_copy(&out[kept], ev);
            kept++;
        }
        loom_events_free(page);
        if (n == 0 && kept < want)
            est_sleep_ms(5);
    }
    return kept;
}

static void
test_read_category_only_that_category(void **state)
{
    /* In append order; the ones in category "cat1" are marked. */
    static const struct {
        const char *stream;
        int in;
    } order[] = {
        {"cat1-a", 1},   {"cat10-x", 0}, {"cat1-b", 1},   {"cat1x-y", 0},
        {"cat1", 1},     {"Cat1-u", 0},  {"cat1+z-q", 0}, {"cat1-a", 1},
        {"cat1-a+b", 1}, {"other-1", 0}, {"cat1-b-c", 1},
    };
    const size_t n = sizeof order / sizeof order[0];
    est_fx *f = *state;
    est_seen seen[16];
    size_t want = 0, got, j = 0;

    for (size_t i = 0; i < n; i++) {
        append_numbered(f->s, order[i].stream, 1);
        want += (size_t) order[i].in;
    }
    got = collect_category(f->s, "cat1", NULL, seen, 16, want);
    assert_int_equal(got, want);
    /* Exactly the marked ones, in the order they were committed. */
    for (size_t i = 0; i < n; i++) {
        if (!order[i].in)
            continue;
        assert_string_equal(seen[j].stream, order[i].stream);
        j++;
    }
    /* Nothing else is in the category: one read gets all of it. */
    {
        loom_position zero = {0, 0};
        loom_events *page = NULL;
        assert_int_equal(
            loom_store_read_category(f->s, "cat1", zero, NULL, 100, &page),
            LOOM_OK);
        assert_int_equal(loom_events_count(page), want);
        loom_events_free(page);
    }
}

/* Streams of the consumer-group test: "grp-<i>", plus ids with '+' (one
 * cardinal id, so one member) and with a second '-'. */
enum { GROUP_STREAMS = 400, GROUP_EXTRA = 3 };
static const char *const group_extra[GROUP_EXTRA] = {"grp-777+a", "grp-777+b",
                                                     "grp-x-y-z"};

static void
group_stream_name(size_t i, char *out, size_t len)
{
    if (i < GROUP_STREAMS)
        snprintf(out, len, "grp-%zu", i);
    else
        snprintf(out, len, "%s", group_extra[i - GROUP_STREAMS]);
}

static size_t
group_stream_index(const char *name)
{
    char *end;
    unsigned long i;

    for (size_t k = 0; k < GROUP_EXTRA; k++)
        if (strcmp(name, group_extra[k]) == 0)
            return GROUP_STREAMS + k;
    assert_int_equal(strncmp(name, "grp-", 4), 0);
    i = strtoul(name + 4, &end, 10);
    assert_true(*end == '\0' && i < GROUP_STREAMS);
    return i;
}

/* The member of every stream by Message DB's formula, in SQL written
 * here rather than the library's: md5 of the cardinal id (after the
 * first '-', before any '+'), first 64 bits as a signed integer,
 * absolute value modulo the group size. */
static void
group_members_by_sql(int size, int *member)
{
    PGconn *c = est_connect(NULL);
    char sql[512];
    PGresult *r;

    snprintf(sql, sizeof sql,
             "SELECT stream, abs(('x' || left(md5(substring(stream from "
             "'^[^-]*-([^+]*)')), 16))::bit(64)::bigint) %% %d "
             "FROM loom.streams WHERE category = 'grp'",
             size);
    r = est_query(c, sql);
    assert_int_equal(PQntuples(r), GROUP_STREAMS + GROUP_EXTRA);
    for (int i = 0; i < PQntuples(r); i++)
        member[group_stream_index(PQgetvalue(r, i, 0))] =
            atoi(PQgetvalue(r, i, 1));
    PQclear(r);
    PQfinish(c);
}

static void
check_group_split(loom_store *s, uint32_t size, size_t total_events,
                  const size_t *events_of)
{
    const size_t nstreams = GROUP_STREAMS + GROUP_EXTRA;
    int *member = malloc(nstreams * sizeof *member);
    int *by_sql = malloc(nstreams * sizeof *by_sql);
    size_t *count = calloc(nstreams, sizeof *count);
    est_seen *seen = malloc((total_events + 1) * sizeof *seen);
    size_t sum = 0;

    assert_non_null(member);
    assert_non_null(by_sql);
    assert_non_null(count);
    assert_non_null(seen);
    for (size_t i = 0; i < nstreams; i++)
        member[i] = -1;
    group_members_by_sql((int) size, by_sql);
    /* Members read one after another: the first may have to wait for
     * the horizon, the others then find everything at once. */
    for (uint32_t m = 0; m < size; m++) {
        loom_group g = {m, size};
        size_t streams_here = 0;
        int64_t *last = malloc(nstreams * sizeof *last);
        size_t got;
        assert_non_null(last);
        for (size_t i = 0; i < nstreams; i++)
            last[i] = -1;
        /* Stop on the count the SQL formula predicts for this member; a
         * different split shows as a shortfall (after the deadline), as
         * surplus events, or as a stream on the wrong member below. */
        {
            size_t expect_here = 0;
            for (size_t i = 0; i < nstreams; i++)
                if (by_sql[i] == (int) m)
                    expect_here += events_of[i];
            got = collect_category(s, "grp", &g, seen, total_events + 1,
                                   expect_here);
            assert_int_equal(got, expect_here);
        }
        for (size_t e = 0; e < got; e++) {
            size_t i = group_stream_index(seen[e].stream);
            /* A stream belongs to one member only... */
            if (member[i] == -1) {
                member[i] = (int) m;
                streams_here++;
            }
            assert_int_equal(member[i], (int) m);
            /* ...which gets its events in order, none missing. */
            assert_int_equal(seen[e].version, last[i] + 1);
            last[i] = seen[e].version;
            count[i]++;
        }
        free(last);
        /* An even split: 25% of the streams for 4 members, within 8
         * points. The names are fixed, so this is deterministic. */
        assert_true(streams_here * 100 >=
                    nstreams * (100 / size) - nstreams * 8);
        assert_true(streams_here * 100 <=
                    nstreams * (100 / size) + nstreams * 8);
        sum += got;
    }
    /* Together the members saw every event of every stream once. */
    assert_int_equal(sum, total_events);
    for (size_t i = 0; i < nstreams; i++) {
        assert_int_equal(count[i], events_of[i]);
        assert_int_equal(member[i], by_sql[i]);
    }
    /* Streams of one cardinal id share a member. */
    assert_int_equal(member[GROUP_STREAMS], member[GROUP_STREAMS + 1]);
    free(member);
    free(by_sql);
    free(count);
    free(seen);
}

static void
test_read_category_groups_split_streams(void **state)
{
    est_fx *f = *state;
    const size_t nstreams = GROUP_STREAMS + GROUP_EXTRA;
    size_t *events_of = malloc(nstreams * sizeof *events_of);
    size_t total = 0;
    est_seen *all;

    assert_non_null(events_of);
    for (size_t i = 0; i < nstreams; i++) {
        char name[32];
        group_stream_name(i, name, sizeof name);
        events_of[i] = i % 3 + 1;
        append_numbered(f->s, name, events_of[i]);
        total += events_of[i];
    }
    check_group_split(f->s, 4, total, events_of);
    check_group_split(f->s, 3, total, events_of);
    /* A group of one is the whole category. */
    all = malloc((total + 1) * sizeof *all);
    assert_non_null(all);
    {
        loom_group one = {0, 1};
        assert_int_equal(
            collect_category(f->s, "grp", &one, all, total + 1, total), total);
    }
    free(all);
    free(events_of);
}

static void
test_read_page_accessors(void **state)
{
    est_fx *f = *state;
    loom_events *page;
    loom_position none;

    append_numbered(f->s, "acc-1", 3);
    page = read_stream(f->s, "acc-1", 0, LOOM_FORWARD, 10);
    assert_int_equal(loom_events_count(page), 3);
    assert_non_null(loom_events_at(page, 2));
    assert_null(loom_events_at(page, 3));
    assert_null(loom_events_at(page, 1000));
    assert_null(loom_events_at(page, SIZE_MAX));
    loom_events_free(page);
    assert_int_equal(loom_events_count(NULL), 0);
    assert_null(loom_events_at(NULL, 0));
    none = loom_events_next(NULL);
    assert_int_equal(none.tx, 0);
    assert_int_equal(none.position, 0);
    loom_events_free(NULL);
}

int
main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, est_setup, est_teardown)
    const struct CMUnitTest tests[] = {
        T(test_read_stream_forward_paging),
        T(test_read_stream_backward_paging),
        T(test_read_stream_missing_is_empty),
        T(test_read_undecodable_metadata_reads_as_absent),
        T(test_read_all_pages_in_commit_order),
        T(test_read_all_cursor_is_exclusive),
        T(test_read_all_pages_inside_one_transaction),
        T(test_read_event_fields_match_table),
        T(test_read_category_only_that_category),
        T(test_read_category_groups_split_streams),
        T(test_read_page_accessors),
    };
#undef T

    return cmocka_run_group_tests_name("eventstore.read", tests,
                                       est_group_setup, est_group_teardown);
}
