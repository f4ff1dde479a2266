/*
 * Upcasters: events stored at schema version 1 are read, by every kind of
 * read and by aggregate loads, in the current shape; history is unchanged.
 *
 * The test's OrderPlaced payload evolves: v1 holds whole dollars as text
 * ("12"), v2 cents as text ("1200"), and v3 renames the type to
 * shop.OrderOpened with "cents:1200".
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

static loom_err
up_dollars_to_cents(const loom_event *ev, loom_upcast *out, void *arg)
{
    char text[32];
    long dollars;

    (void) arg;
    if (ev->data_len == 0 || ev->data_len >= sizeof text)
        return LOOM_EDECODE;
    memcpy(text, ev->data, ev->data_len);
    text[ev->data_len] = '\0';
    dollars = strtol(text, NULL, 10);
    if ((out->data = loom_malloc(32)) == NULL)
        return LOOM_ENOMEM;
    out->data_len = (size_t) snprintf(out->data, 32, "%ld", dollars * 100);
    return LOOM_OK;
}

static loom_err
up_rename(const loom_event *ev, loom_upcast *out, void *arg)
{
    (void) arg;
    out->type = "shop.OrderOpened";
    if ((out->data = loom_malloc(ev->data_len + 6)) == NULL)
        return LOOM_ENOMEM;
    memcpy(out->data, "cents:", 6);
    memcpy((char *) out->data + 6, ev->data, ev->data_len);
    out->data_len = ev->data_len + 6;
    return LOOM_OK;
}

static loom_err
up_fails(const loom_event *ev, loom_upcast *out, void *arg)
{
    (void) ev;
    (void) arg;
    out->data = loom_malloc(8); /* owned by Eventloom even on failure */
    return LOOM_EHANDLER;
}

static loom_err
up_bad_output(const loom_event *ev, loom_upcast *out, void *arg)
{
    (void) ev;
    (void) arg;
    out->data_len = 4; /* but no data */
    return LOOM_OK;
}

/* Writes `n` v1 OrderPlaced events (12, 13, ...) to `stream`. */
static void
up_write_v1(loom_store *s, const char *stream, int n)
{
    for (int i = 0; i < n; i++) {
        char text[16];
        loom_event_data ev;
        int len = snprintf(text, sizeof text, "%d", 12 + i);
        est_event(&ev, "shop.OrderPlaced", text, (size_t) len);
        ev.schema_version = 1;
        assert_int_equal(
            loom_store_append(s, stream, LOOM_EXPECT_ANY, &ev, 1, NULL),
            LOOM_OK);
    }
}

static void
up_expect(const loom_event *ev, const char *type, int sv, const char *data)
{
    assert_string_equal(ev->type, type);
    assert_int_equal(ev->schema_version, sv);
    assert_int_equal(ev->data_len, strlen(data));
    assert_memory_equal(ev->data, data, ev->data_len);
}

static void
test_upcast_without_upcasters_reads_as_stored(void **state)
{
    est_fx *f = *state;
    loom_events *page = NULL;

    up_write_v1(f->s, "upplain-1", 1);
    assert_int_equal(
        loom_store_read_stream(f->s, "upplain-1", 0, LOOM_FORWARD, 10, &page),
        LOOM_OK);
    up_expect(loom_events_at(page, 0), "shop.OrderPlaced", 1, "12");
    loom_events_free(page);
}

static void
test_upcast_applies_to_every_read(void **state)
{
    est_fx *f = *state;
    loom_upcasters *u = NULL;
    loom_events *page = NULL;
    loom_position cur = est_read_all_end(f->s);
    est_seen seen[2];

    assert_int_equal(loom_upcasters_new(&u), LOOM_OK);
    assert_int_equal(loom_upcasters_add(u, "shop.OrderPlaced", 1, 2,
                                        up_dollars_to_cents, NULL),
                     LOOM_OK);
    up_write_v1(f->s, "upevery-1", 2);
    assert_int_equal(loom_store_set_upcasters(f->s, u), LOOM_OK);

    assert_int_equal(
        loom_store_read_stream(f->s, "upevery-1", 0, LOOM_FORWARD, 10, &page),
        LOOM_OK);
    up_expect(loom_events_at(page, 0), "shop.OrderPlaced", 2, "1200");
    up_expect(loom_events_at(page, 1), "shop.OrderPlaced", 2, "1300");
    loom_events_free(page);
    /* Wait until both are readable in commit order, then read them so. */
    {
        loom_position from = cur;
        size_t ours = 0;
        assert_int_equal(
            est_collect_all(f->s, &cur, 100, "upevery-", seen, 2, 2, 10000), 2);
        assert_int_equal(loom_store_read_all(f->s, from, 100, &page), LOOM_OK);
        for (size_t i = 0; i < loom_events_count(page); i++) {
            const loom_event *ev = loom_events_at(page, i);
            if (strcmp(ev->stream, "upevery-1") == 0)
                up_expect(ev, "shop.OrderPlaced", 2, ours++ ? "1300" : "1200");
        }
        assert_int_equal(ours, 2);
        loom_events_free(page);
    }
    assert_int_equal(loom_store_read_category(f->s, "upevery",
                                              (loom_position){0, 0}, NULL, 10,
                                              &page),
                     LOOM_OK);
    assert_int_equal(loom_events_count(page), 2);
    up_expect(loom_events_at(page, 1), "shop.OrderPlaced", 2, "1300");
    loom_events_free(page);
    /* History is untouched. */
    assert_int_equal(
        loomt_sql_ll("SELECT count(*) FROM loom.events WHERE "
                     "stream = 'upevery-1' AND schema_version = 1"),
        2);
    loom_store_set_upcasters(f->s, NULL);
    loom_upcasters_free(u);
}

static void
test_upcast_chains_steps_across_a_rename(void **state)
{
    est_fx *f = *state;
    loom_upcasters *u = NULL;
    loom_events *page = NULL;

    assert_int_equal(loom_upcasters_new(&u), LOOM_OK);
    assert_int_equal(
        loom_upcasters_add(u, "shop.OrderPlaced", 2, 3, up_rename, NULL),
        LOOM_OK);
    assert_int_equal(loom_upcasters_add(u, "shop.OrderPlaced", 1, 2,
                                        up_dollars_to_cents, NULL),
                     LOOM_OK);
    up_write_v1(f->s, "upchain-1", 1);
    assert_int_equal(loom_store_set_upcasters(f->s, u), LOOM_OK);
    assert_int_equal(
        loom_store_read_stream(f->s, "upchain-1", 0, LOOM_FORWARD, 10, &page),
        LOOM_OK);
    up_expect(loom_events_at(page, 0), "shop.OrderOpened", 3, "cents:1200");
    loom_events_free(page);
    loom_store_set_upcasters(f->s, NULL);
    loom_upcasters_free(u);
}

/* A version-2 aggregate: refuses to see version-1 events. */
typedef struct up_order {
    long cents;
} up_order;

static loom_err
up_apply_v2(void *state, const loom_event *ev)
{
    up_order *o = state;
    char text[32];

    if (ev->schema_version != 2 || ev->data_len >= sizeof text)
        return LOOM_EHANDLER;
    memcpy(text, ev->data, ev->data_len);
    text[ev->data_len] = '\0';
    o->cents += strtol(text, NULL, 10);
    return LOOM_OK;
}

static void
test_upcast_old_events_load_into_a_current_aggregate(void **state)
{
    static const loom_aggregate_type type = {"upagg", sizeof(up_order), 1,
                                             NULL,    up_apply_v2,      0};
    est_fx *f = *state;
    loom_upcasters *u = NULL;
    up_order o;
    int64_t version;

    up_write_v1(f->s, "upagg-7", 3);
    assert_int_equal(loom_aggregate_load(f->s, &type, "7", &o, &version),
                     LOOM_EHANDLER);
    assert_int_equal(loom_upcasters_new(&u), LOOM_OK);
    assert_int_equal(loom_upcasters_add(u, "shop.OrderPlaced", 1, 2,
                                        up_dollars_to_cents, NULL),
                     LOOM_OK);
    assert_int_equal(loom_store_set_upcasters(f->s, u), LOOM_OK);
    assert_int_equal(loom_aggregate_load(f->s, &type, "7", &o, &version),
                     LOOM_OK);
    assert_int_equal(version, 2);
    assert_int_equal(o.cents, 1200 + 1300 + 1400);
    loom_store_set_upcasters(f->s, NULL);
    loom_upcasters_free(u);
}

static void
test_upcast_failure_names_the_event_and_the_handle_recovers(void **state)
{
    est_fx *f = *state;
    loom_upcasters *u = NULL;
    loom_events *page = NULL;

    assert_int_equal(loom_upcasters_new(&u), LOOM_OK);
    assert_int_equal(
        loom_upcasters_add(u, "shop.OrderPlaced", 1, 2, up_fails, NULL),
        LOOM_OK);
    assert_int_equal(
        loom_upcasters_add(u, "shop.Broken", 1, 2, up_bad_output, NULL),
        LOOM_OK);
    up_write_v1(f->s, "upfail-1", 1);
    assert_int_equal(loom_store_set_upcasters(f->s, u), LOOM_OK);
    assert_int_equal(
        loom_store_read_stream(f->s, "upfail-1", 0, LOOM_FORWARD, 10, &page),
        LOOM_EHANDLER);
    assert_null(page);
    assert_non_null(strstr(loom_store_errmsg(f->s), "upfail-1"));
    assert_non_null(strstr(loom_store_errmsg(f->s), "shop.OrderPlaced"));
    {
        loom_event_data ev;
        est_event(&ev, "shop.Broken", "x", 1);
        ev.schema_version = 1;
        assert_int_equal(
            loom_store_append(f->s, "upfail-2", LOOM_EXPECT_ANY, &ev, 1, NULL),
            LOOM_OK);
    }
    assert_int_equal(
        loom_store_read_stream(f->s, "upfail-2", 0, LOOM_FORWARD, 10, &page),
        LOOM_EINVAL);
    loom_store_set_upcasters(f->s, NULL);
    assert_int_equal(
        loom_store_read_stream(f->s, "upfail-1", 0, LOOM_FORWARD, 10, &page),
        LOOM_OK);
    loom_events_free(page);
    loom_upcasters_free(u);
}

static void
test_upcast_registration_errors(void **state)
{
    est_fx *f = *state;
    loom_upcasters *u = NULL;

    assert_int_equal(loom_upcasters_new(NULL), LOOM_EINVAL);
    assert_int_equal(loom_upcasters_new(&u), LOOM_OK);
    assert_int_equal(loom_upcasters_add(NULL, "t", 1, 2, up_rename, NULL),
                     LOOM_EINVAL);
    assert_int_equal(loom_upcasters_add(u, NULL, 1, 2, up_rename, NULL),
                     LOOM_EINVAL);
    assert_int_equal(loom_upcasters_add(u, "", 1, 2, up_rename, NULL),
                     LOOM_EINVAL);
    /* Types no append would store: no event could take these steps. */
    assert_int_equal(loom_upcasters_add(u, "t\xc3", 1, 2, up_rename, NULL),
                     LOOM_EINVAL);
    {
        char long_type[LOOM_MAX_TYPE_NAME + 2];
        memset(long_type, 't', sizeof long_type - 1);
        long_type[sizeof long_type - 1] = '\0';
        assert_int_equal(
            loom_upcasters_add(u, long_type, 1, 2, up_rename, NULL),
            LOOM_ETOOBIG);
        long_type[LOOM_MAX_TYPE_NAME] = '\0'; /* the longest allowed */
        assert_int_equal(
            loom_upcasters_add(u, long_type, 1, 2, up_rename, NULL), LOOM_OK);
    }
    assert_int_equal(loom_upcasters_add(u, "t", 1, 2, NULL, NULL), LOOM_EINVAL);
    assert_int_equal(loom_upcasters_add(u, "t", -1, 2, up_rename, NULL),
                     LOOM_EINVAL);
    assert_int_equal(loom_upcasters_add(u, "t", 2, 2, up_rename, NULL),
                     LOOM_EINVAL);
    assert_int_equal(loom_upcasters_add(u, "t", 1, 2, up_rename, NULL),
                     LOOM_OK);
    assert_int_equal(loom_upcasters_add(u, "t", 1, 3, up_rename, NULL),
                     LOOM_EDUPLICATE);
    assert_int_equal(loom_store_set_upcasters(NULL, u), LOOM_EINVAL);
    assert_int_equal(loom_store_read_all_send(f->s, (loom_position){0, 0}, 1),
                     LOOM_OK);
    assert_int_equal(loom_store_set_upcasters(f->s, u), LOOM_EBUSY);
    {
        loom_events *page = NULL;
        while (loom_store_poll(f->s, NULL) == LOOM_EAGAIN)
            est_sleep_ms(1);
        assert_int_equal(loom_store_events_recv(f->s, &page), LOOM_OK);
        loom_events_free(page);
    }
    loom_upcasters_free(u);
    loom_upcasters_free(NULL);
}

int
main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, est_setup, est_teardown)
    const struct CMUnitTest tests[] = {
        T(test_upcast_without_upcasters_reads_as_stored),
        T(test_upcast_applies_to_every_read),
        T(test_upcast_chains_steps_across_a_rename),
        T(test_upcast_old_events_load_into_a_current_aggregate),
        T(test_upcast_failure_names_the_event_and_the_handle_recovers),
        T(test_upcast_registration_errors),
    };
#undef T

    return cmocka_run_group_tests_name("eventstore.upcast", tests,
                                       est_group_setup, est_group_teardown);
}
