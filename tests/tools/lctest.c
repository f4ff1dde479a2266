/*
 * Running the built loomctl binary (LOOMCTL_PATH) in tests and reading
 * what it prints: exit status, stdout and stderr, lines, and members of
 * JSON lines (through jsonlite). Shared by the loomctl_*_test
 * executables; every function fails the test on an unexpected error.
 */
#include "lctest.h"

#include <setjmp.h>
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

#include "jsonlite.h"

void
run_free(run *r)
{
    free(r->out);
    free(r->err);
}

static char *
slurp(FILE *f)
{
    size_t len = 0, cap = 4096, n;
    char *buf = malloc(cap);

    assert_non_null(buf);
    while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len < 2) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
    }
    buf[len] = '\0';
    return buf;
}

/* Single-quotes `s` for sh; rotating buffers, so a few fit in one call. */
const char *
sq(const char *s)
{
    static char bufs[4][1024];
    static int next;
    char *out = bufs[next++ % 4];
    size_t n = 0;

    out[n++] = '\'';
    for (; *s != '\0' && n < sizeof bufs[0] - 8; s++) {
        if (*s == '\'') {
            memcpy(out + n, "'\\''", 4);
            n += 4;
        } else {
            out[n++] = *s;
        }
    }
    out[n++] = '\'';
    out[n] = '\0';
    return out;
}

/* Runs `loomctl <args>` through the shell; stdout and stderr captured. */
run
lc(const char *fmt, ...)
{
    char args[4096], cmd[8192], errpath[] = "/tmp/loomctl_test_XXXXXX";
    run r;
    va_list ap;
    FILE *p, *e;
    int fd, status;

    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    fd = mkstemp(errpath);
    assert_true(fd >= 0);
    close(fd);
    snprintf(cmd, sizeof cmd, "%s %s 2>%s", LOOMCTL_PATH, args, errpath);
    p = popen(cmd, "r");
    assert_non_null(p);
    r.out = slurp(p);
    status = pclose(p);
    e = fopen(errpath, "r");
    assert_non_null(e);
    r.err = slurp(e);
    fclose(e);
    unlink(errpath);
    r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return r;
}

size_t
count_lines(const char *s)
{
    size_t n = 0;

    for (; *s != '\0'; s++)
        n += *s == '\n';
    return n;
}

/* The i-th line of `s` (0-based) copied into `out`. */
void
line_at(const char *s, size_t i, char *out, size_t cap)
{
    const char *end;

    for (; i > 0; i--) {
        s = strchr(s, '\n');
        assert_non_null(s);
        s++;
    }
    end = strchr(s, '\n');
    assert_non_null(end);
    assert_true((size_t) (end - s) < cap);
    memcpy(out, s, (size_t) (end - s));
    out[end - s] = '\0';
}

/* Member `key` of JSON object `obj` as a string ("" and 0 when null). */
int
get_str(const char *obj, const char *key, char *out, size_t cap)
{
    const char *v;

    assert_true(jl_member(obj, key, &v, NULL));
    if (jl_is_null(v)) {
        out[0] = '\0';
        return 0;
    }
    assert_true(jl_string(v, out, cap, NULL));
    return 1;
}

int64_t
get_i64(const char *obj, const char *key)
{
    const char *v;
    int64_t n = 0;

    assert_true(jl_member(obj, key, &v, NULL));
    assert_true(jl_i64(v, &n));
    return n;
}

/* Member `key`'s JSON text, copied. */
void
get_raw(const char *obj, const char *key, char *out, size_t cap)
{
    const char *v, *end;

    assert_true(jl_member(obj, key, &v, &end));
    assert_true((size_t) (end - v) < cap);
    memcpy(out, v, (size_t) (end - v));
    out[end - v] = '\0';
}

/* Copies the only line of `out` into `line`, checking that it is one
 * valid JSON value. */
void
only_json_line(const char *out, char *line, size_t cap)
{
    assert_int_equal(count_lines(out), 1);
    line_at(out, 0, line, cap);
    if (!jl_valid(line))
        fail_msg("not JSON: %s", line);
}

/* Every line of `out` is one valid JSON value. */
void
assert_json_lines(const char *out)
{
    char line[8192];

    for (size_t i = 0; i < count_lines(out); i++) {
        line_at(out, i, line, sizeof line);
        if (!jl_valid(line))
            fail_msg("not JSON: %s", line);
    }
}

/* Runs a commit-order read until it prints `want` lines: another test's
 * open transaction may hold events back for a while. */
run
lc_wait_lines(size_t want, const char *args)
{
    time_t deadline = time(NULL) + 60;

    for (;;) {
        run r = lc("%s", args);
        assert_int_equal(r.rc, 0);
        if (count_lines(r.out) >= want || time(NULL) > deadline)
            return r;
        run_free(&r);
        nanosleep(&(struct timespec){0, 100 * 1000 * 1000}, NULL);
    }
}

void
append_one(loom_store *s, const char *stream, const char *type,
           const void *data, size_t len, loom_event_data *ev)
{
    ev->type = type;
    ev->schema_version = 1;
    ev->data = data;
    ev->data_len = len;
    assert_int_equal(loom_store_append(s, stream, LOOM_EXPECT_ANY, ev, 1, NULL),
                     LOOM_OK);
}
