/*
 * Test helpers for the loomctl end-to-end tests: run the built binary
 * through the shell and inspect its output (see lctest.c).
 */
#ifndef LOOM_LCTEST_H
#define LOOM_LCTEST_H

#include <stddef.h>
#include <stdint.h>

#include "loom/loom.h"

/* One run of loomctl. */
typedef struct run {
    int rc; /* exit status; 128 + signal when killed */
    char *out, *err;
} run;

void run_free(run *r);

/* Runs `loomctl <args>` through the shell; stdout and stderr captured. */
run lc(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Runs a commit-order read until it prints `want` lines: another test's
 * open transaction may hold events back for a while (60 s at most). */
run lc_wait_lines(size_t want, const char *args);

/* Single-quotes `s` for sh; rotating buffers, so a few fit in one call. */
const char *sq(const char *s);

size_t count_lines(const char *s);

/* The i-th line of `s` (0-based) copied into `out`. */
void line_at(const char *s, size_t i, char *out, size_t cap);

/* Member `key` of JSON object `obj` as a string ("" and 0 when null). */
int get_str(const char *obj, const char *key, char *out, size_t cap);
int64_t get_i64(const char *obj, const char *key);

/* Member `key`'s JSON text, copied. */
void get_raw(const char *obj, const char *key, char *out, size_t cap);

/* Copies the only line of `out` into `line`, checking that it is one
 * valid JSON value. */
void only_json_line(const char *out, char *line, size_t cap);

/* Every line of `out` is one valid JSON value. */
void assert_json_lines(const char *out);

/* Appends one event to `stream` (any version); ev's other fields are the
 * caller's, its id is set on return. */
void append_one(loom_store *s, const char *stream, const char *type,
                const void *data, size_t len, loom_event_data *ev);

#endif /* LOOM_LCTEST_H */
