/*
 * A writer killed with SIGKILL at a random moment loses nothing it was
 * told was committed, and leaves no gap or duplicate in any stream.
 *
 * Each round forks a writer process that appends batches to three shared
 * streams and reports every acknowledged append (stream, first version,
 * count, ids) through a pipe; the parent kills it after a random delay,
 * then checks the database against the reports.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "estest.h"

#define CRASH_STREAMS 3
#define CRASH_ROUNDS  12
#define CRASH_BATCH   5

/* One acknowledged append, as the writer reports it. */
typedef struct crash_ack {
    int stream;
    int n;
    int64_t first_version;
    loom_uuid ids[CRASH_BATCH];
} crash_ack;

/* The writer: appends until killed, reporting each success. */
static void
crash_writer(int fd, unsigned seed)
{
    loom_store *s = loomt_store_open();

    for (unsigned i = 0;; i++) {
        loom_event_data ev[CRASH_BATCH];
        loom_append_result r;
        crash_ack ack;
        char stream[32];

        memset(ev, 0, sizeof ev);
        memset(&ack, 0, sizeof ack);
        ack.stream = (int) ((seed + i) % CRASH_STREAMS);
        ack.n = 1 + (int) ((seed * 7 + i) % CRASH_BATCH);
        snprintf(stream, sizeof stream, "crash-%d", ack.stream);
        for (int k = 0; k < ack.n; k++) {
            ev[k].type = "crash.Appended";
            ev[k].data = "payload";
            ev[k].data_len = 7;
        }
        if (loom_store_append(s, stream, LOOM_EXPECT_ANY, ev, (size_t) ack.n,
                              &r) != LOOM_OK)
            _exit(3);
        ack.first_version = r.first_version;
        for (int k = 0; k < ack.n; k++)
            ack.ids[k] = ev[k].id;
        if (write(fd, &ack, sizeof ack) != (ssize_t) sizeof ack)
            _exit(4);
    }
}

/* Runs one writer, kills it after `delay_ms`, and collects its reports. */
static size_t
crash_round(unsigned seed, int delay_ms, crash_ack *acks, size_t cap)
{
    struct timespec ts = {delay_ms / 1000, (long) (delay_ms % 1000) * 1000000};
    int fds[2], status = 0;
    size_t n = 0;
    pid_t pid;

    assert_int_equal(pipe(fds), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        crash_writer(fds[1], seed);
    }
    close(fds[1]);
    nanosleep(&ts, NULL);
    assert_int_equal(kill(pid, SIGKILL), 0);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    while (n < cap &&
           read(fds[0], &acks[n], sizeof acks[n]) == (ssize_t) sizeof acks[n])
        n++;
    close(fds[0]);
    return n;
}

/* Every acknowledged event is in its stream at the reported version. */
static void
crash_check_acks(loom_store *s, const crash_ack *acks, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char stream[32];
        loom_events *page = NULL;

        snprintf(stream, sizeof stream, "crash-%d", acks[i].stream);
        assert_int_equal(
            loom_store_read_stream(s, stream, acks[i].first_version,
                                   LOOM_FORWARD, (size_t) acks[i].n, &page),
            LOOM_OK);
        assert_int_equal(loom_events_count(page), acks[i].n);
        for (int k = 0; k < acks[i].n; k++)
            assert_memory_equal(loom_events_at(page, (size_t) k)->id.bytes,
                                acks[i].ids[k].bytes, 16);
        loom_events_free(page);
    }
}

/* Versions 0..v of each stream exist once each; the stream row agrees. */
static void
crash_check_streams(void)
{
    for (int i = 0; i < CRASH_STREAMS; i++) {
        char sql[256];
        snprintf(sql, sizeof sql,
                 "SELECT (count(*) = max(version) + 1 AND count(DISTINCT "
                 "version) = count(*) AND max(version) = (SELECT version "
                 "FROM loom.streams WHERE stream = 'crash-%d'))::int FROM "
                 "loom.events WHERE stream = 'crash-%d'",
                 i, i);
        assert_int_equal(loomt_sql_ll(sql), 1);
    }
}

static void
test_crash_killed_writer_loses_no_acknowledged_append(void **state)
{
    static crash_ack acks[200000];
    unsigned seed = (unsigned) time(NULL);
    loom_store *s = loomt_store_open();
    size_t total = 0;

    (void) state;
    printf("crash_test: seed %u\n", seed);
    srand(seed);
    for (int round = 0; round < CRASH_ROUNDS; round++) {
        size_t n = crash_round(seed + (unsigned) round, 50 + rand() % 250, acks,
                               sizeof acks / sizeof acks[0]);
        crash_check_acks(s, acks, n);
        total += n;
    }
    crash_check_streams();
    /* The writers did work: the kills landed mid-run, not before it. */
    assert_true(total > CRASH_ROUNDS);
    loom_store_close(s);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crash_killed_writer_loses_no_acknowledged_append),
    };

    return cmocka_run_group_tests_name("eventstore.crash", tests,
                                       est_group_setup, est_group_teardown);
}
