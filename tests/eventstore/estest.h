/*
 * Helpers shared by the event store tests: raw libpq access to the test
 * database (to hold a transaction open, inspect tables, or do what the
 * store API deliberately refuses), extra databases for tests that need an
 * empty schema, and event builders. Every helper fails the running test
 * on error, so call them from the cmocka thread only.
 */
#ifndef LOOM_ESTEST_H
#define LOOM_ESTEST_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "pgtest.h"

/*
 * The cmocka fixture most of these tests share. The group functions give
 * the executable a database of its own, named after it (loomt_append_<pid>
 * for append_test), and drop it at the end. est_setup() hands each test an
 * est_fx with a store opened by loomt_store_open(); est_teardown() closes
 * it. Tests that need more keep a fixture of their own and use only the
 * group functions.
 */
typedef struct est_fx {
    loom_store *s;
} est_fx;

int est_group_setup(void **state);
int est_group_teardown(void **state);
int est_setup(void **state);
int est_teardown(void **state);

/* A libpq connection to `dsn`, or to the test database when NULL. */
PGconn *est_connect(const char *dsn);

/* Runs `sql` on `c` and returns its result (PQclear it); fails the test
 * unless it succeeded. */
PGresult *est_query(PGconn *c, const char *sql);

/* Runs `sql` on `c` and fails the test unless it succeeded. */
void est_exec(PGconn *c, const char *sql);

/* Runs `sql` on `c` and fails the test unless it failed with SQLSTATE
 * `state`. */
void est_exec_fails(PGconn *c, const char *sql, const char *state);

/* loomt_sql_ll() with a printf format. Only for trusted text: nothing is
 * quoted. */
long long est_ll(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* As est_ll() but never fails the test: returns -1 on any error (the
 * server is down, say) and stores nothing. Safe from other threads, loop
 * callbacks and forked children, where a cmocka failure must not happen.
 * A query may still legitimately return -1: use it for counts. */
long long est_try_ll(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

/* est_try_ll() on a connection the caller keeps in *c (NULL at first;
 * opened, and reopened after a failure, as needed; PQfinish() it at the
 * end), for checks that run every few milliseconds on a loop: opening a
 * connection per query would block the loop most of the time. */
long long est_try_ll_on(PGconn **c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Opens a store on the test database (or cfg->conninfo when set) with
 * the limits and options of `cfg` (NULL: defaults) and migrations
 * applied unless cfg->migrate says otherwise. Fails the test on error. */
loom_store *est_store_open(const loom_store_config *cfg);

/* Fills `e` with an event of `type` and the borrowed payload. */
void est_event(loom_event_data *e, const char *type, const void *data,
               size_t len);

/* Creates an empty database loomtx_<tag>_<pid> beside the test database
 * and writes its connection string into dsn. Drop it with
 * est_db_drop_extra(). */
void est_db_create_extra(const char *tag, char *dsn, size_t len);
void est_db_drop_extra(const char *tag);

/* Reads all events to the current end and returns the cursor there, so a
 * test can look only at what it writes afterwards. */
loom_position est_read_all_end(loom_store *s);

/* 1 when a is strictly before b in commit order. */
int est_pos_before(loom_position a, loom_position b);

/* Counts events of `stream` (a trusted literal) in loom.events. */
long long est_count_stream(const char *stream);

/* One event as a reader saw it, copied out of its page. */
typedef struct est_seen {
    loom_position at;
    int64_t version;
    loom_uuid id;
    char stream[128];
} est_seen;

/* Copies what an est_seen keeps of `ev` into `out`. */
void est_seen_copy(est_seen *out, const loom_event *ev);

/*
 * Reads every event after *cursor with loom_store_read_all() in pages of
 * `page`, advancing *cursor, and copies those whose stream name starts
 * with `prefix` (NULL: all) into out[0..cap). Stops once `want` are kept
 * and the page ends, or after `timeout_ms` (an empty page only means the
 * horizon has not passed them yet: see CMakeLists.txt). Fails the test on
 * a read error or an event not strictly after the one before. Returns the
 * number kept, which exceeds `want` if more matching events arrived.
 */
size_t est_collect_all(loom_store *s, loom_position *cursor, size_t page,
                       const char *prefix, est_seen *out, size_t cap,
                       size_t want, int timeout_ms);

/* Milliseconds on a monotonic clock. */
int64_t est_now_ms(void);

/* Sleeps `ms` milliseconds. */
void est_sleep_ms(int ms);

#endif /* LOOM_ESTEST_H */
