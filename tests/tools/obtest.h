/*
 * Test helpers for the outbox and relay tests of loomctl
 * (loomctl_outbox_test, loomctl_relay_test): messages put into
 * loom.outbox with plain SQL, as loom_outbox_add() would; `loomctl
 * relay` as child processes; `outbox status` read back. Every function
 * fails the test on an unexpected error (see obtest.c).
 */
#ifndef LOOM_OBTEST_H
#define LOOM_OBTEST_H

#include <stddef.h>
#include <sys/types.h>

#include "lctest.h"

/* How long a relay may take to do something, in ms. Generous: the
 * sanitizer build on a busy machine is slow. */
#define WAIT_MS 30000

/* ------------------------------------------------------------------ */
/* SQL and time                                                        */

long long sqlf_ll(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void sleep_ms(long ms);
long long now_ms(void); /* monotonic */

/* A topic with 3 partitions and the default settings. */
void create_topic(const char *name);

/* Puts n messages for `topic` into outbox `outbox` and remembers their
 * ids in public.sent. */
void add_messages(const char *outbox, const char *topic, int n);

/* The messages of public.sent stored in topic `topic` (each counted
 * once, however often it was published); waits until there are `want`. */
long long arrived(const char *topic);
void wait_arrived(const char *topic, long long want);

/* ------------------------------------------------------------------ */
/* Output                                                              */

void assert_has(const char *text, const char *needle);

/* The first line of `out` containing `needle`, every run of spaces made
 * one, so that a table row compares as its cells in order. */
void row(const char *out, const char *needle, char *line, size_t cap);
void assert_row(const char *out, const char *needle, const char *want);

/* The row starts with `prefix` and ends with `suffix` (what lies
 * between, an age, changes from run to run). */
void assert_row_like(const char *out, const char *needle, const char *prefix,
                     const char *suffix);

/* `outbox status default --json`: its one line. */
void status_json(char *line, size_t cap);

/* The active relay's name in the default outbox's status ("": none). */
void status_relay(char *name, size_t cap);

/* Polls the default outbox's status until the active relay is `want`,
 * or its member `key` is `want` ("true", "3"; the line in `line`). */
void wait_status_relay(const char *want);
void wait_status_member(const char *key, const char *want, char *line,
                        size_t cap);

/* ------------------------------------------------------------------ */
/* loomctl as a child process                                          */

#define MAX_CHILDREN 8

typedef struct child {
    pid_t pid; /* 0 once reaped */
    char out[64], err[64];
} child;

/* Starts `loomctl <args>`; its stdout and stderr go to files. */
child *child_spawn(const char *args);

/* Waits until the child's stdout has `needle` (WAIT_MS at most). */
void child_wait_out(const child *ch, const char *needle);
/* The same for its stderr. */
void child_wait_err(const child *ch, const char *needle);

/* Sends `sig`, waits; returns the exit status (128 + signal if killed). */
int child_stop(child *ch, int sig);

/* A file's contents, to free(). */
char *read_file(const char *path);

/* ------------------------------------------------------------------ */
/* Fixture                                                             */

/* Creates and migrates the executable's database (loomt_<label>_<pid>),
 * for group setup. */
void obt_db_open(const char *label);
int obt_group_teardown(void **state);

/* Before each test: empty outbox and topic tables. After: no child left
 * running, topics that take messages again. */
int obt_setup(void **state);
int obt_teardown(void **state);

#endif /* LOOM_OBTEST_H */
