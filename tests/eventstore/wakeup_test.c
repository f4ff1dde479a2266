/*
 * Wake-ups (schema 2): an append notifies channel loom_events only when a
 * reader armed it, and exactly once per arming however many appenders
 * race, so a busy system never pays for NOTIFY.
 */
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "estest.h"

#define WAKE_THREADS 8
/* How long the first notification may take (a loaded machine), and the
 * quiet after it in which any more would arrive. */
#define WAKE_FIRST_MS 10000
#define WAKE_QUIET_MS 500

/* Counts the notifications on loom_events that arrive within `ms`. */
static int
wake_count(PGconn *c, int ms)
{
    int64_t deadline = est_now_ms() + ms;
    int n = 0;

    for (;;) {
        struct pollfd p = {PQsocket(c), POLLIN, 0};
        int64_t left = deadline - est_now_ms();
        PGnotify *note;

        assert_int_equal(PQconsumeInput(c), 1);
        while ((note = PQnotifies(c)) != NULL) {
            assert_string_equal(note->relname, "loom_events");
            n++;
            PQfreemem(note);
        }
        if (left <= 0)
            return n;
        poll(&p, 1, (int) left);
    }
}

/* Waits up to WAKE_FIRST_MS for a notification on loom_events, then
 * counts those that arrive within WAKE_QUIET_MS more: returns them all
 * (0 if none came). */
static int
wake_count_first(PGconn *c)
{
    int64_t deadline = est_now_ms() + WAKE_FIRST_MS;
    int n = 0;

    while (n == 0 && est_now_ms() < deadline)
        n = wake_count(c, 50);
    return n == 0 ? 0 : n + wake_count(c, WAKE_QUIET_MS);
}

static PGconn *
wake_listener(void)
{
    PGconn *c = est_connect(loomt_dsn());

    est_exec(c, "LISTEN loom_events");
    return c;
}

static void
wake_append(loom_store *s, const char *stream)
{
    loom_event_data ev;

    est_event(&ev, "wake.Happened", "x", 1);
    assert_int_equal(
        loom_store_append(s, stream, LOOM_EXPECT_ANY, &ev, 1, NULL), LOOM_OK);
}

static void
test_wakeup_unarmed_append_does_not_notify(void **state)
{
    est_fx *f = *state;
    PGconn *c = wake_listener();

    wake_append(f->s, "wake-1");
    assert_int_equal(wake_count(c, 300), 0);
    PQfinish(c);
}

static void
test_wakeup_armed_append_notifies_once_and_disarms(void **state)
{
    est_fx *f = *state;
    PGconn *c = wake_listener();

    loomt_sql_exec("SELECT loom.arm_wakeup('loom_events')");
    wake_append(f->s, "wake-2");
    assert_int_equal(wake_count_first(c), 1);
    assert_int_equal(loomt_sql_ll("SELECT count(*) FROM loom.wakeups "
                                  "WHERE channel = 'loom_events'"),
                     0);
    /* Disarmed: the next append is silent until a reader arms again. */
    wake_append(f->s, "wake-2");
    assert_int_equal(wake_count(c, 300), 0);
    PQfinish(c);
}

static void *
wake_thread(void *arg)
{
    loom_store *s = est_store_open(NULL);
    char stream[32];

    snprintf(stream, sizeof stream, "wakerace-%d", *(int *) arg);
    for (int i = 0; i < 20; i++)
        wake_append(s, stream);
    loom_store_close(s);
    return NULL;
}

static void
test_wakeup_racing_appenders_notify_exactly_once(void **state)
{
    pthread_t t[WAKE_THREADS];
    int ids[WAKE_THREADS];
    PGconn *c = wake_listener();

    (void) state;
    loomt_sql_exec("SELECT loom.arm_wakeup('loom_events')");
    for (int i = 0; i < WAKE_THREADS; i++) {
        ids[i] = i;
        assert_int_equal(pthread_create(&t[i], NULL, wake_thread, &ids[i]), 0);
    }
    for (int i = 0; i < WAKE_THREADS; i++)
        pthread_join(t[i], NULL);
    /* Every append has committed: their notifications, if any, are on
     * their way. */
    assert_int_equal(wake_count_first(c), 1);
    PQfinish(c);
}

int
main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, est_setup, est_teardown)
    const struct CMUnitTest tests[] = {
        T(test_wakeup_unarmed_append_does_not_notify),
        T(test_wakeup_armed_append_notifies_once_and_disarms),
        T(test_wakeup_racing_appenders_notify_exactly_once),
    };
#undef T

    return cmocka_run_group_tests_name("eventstore.wakeup", tests,
                                       est_group_setup, est_group_teardown);
}
