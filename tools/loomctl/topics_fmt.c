/*
 * What the loomctl topics subcommands share (see topics.h): reporting
 * API errors with the right exit code, checking names, and showing
 * durations, sizes and error texts.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "pgwire.h"
#include "stats.h"
#include "termtext.h"
#include "topics.h"

int
ctl_topics_api_fail(const ctl *c, loom_store *s, loom_err rc)
{
    const char *msg = loom_store_errmsg(s);

    if (msg[0] == '\0')
        msg = loom_strerror(rc);
    /* The library checks arguments before it sends anything; the
     * database's refusals carry a SQLSTATE (LM011 and others). */
    if (rc == LOOM_EINVAL && loom_store_sqlstate(s)[0] == '\0')
        return ctl_usage_error(c, "%s", msg);
    ctl_fail_sql(loom_store_sqlstate(s), "%s %s: %s", c->cmd, c->sub, msg);
    return CTL_ERR;
}

int
ctl_topics_check_text(const ctl *c, const char *what, const char *s)
{
    if (s[0] == '\0' || !loom__utf8_valid(s, strlen(s)))
        return ctl_usage_error(c, "%s: expected a non-empty UTF-8 name", what);
    return CTL_OK;
}

void
ctl_topics_fmt_ms(int64_t ms, char out[32])
{
    static const struct {
        int64_t ms;
        const char *unit;
    } units[] = {{86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}};

    /* Settings are usually round: show them exactly, in the largest unit
     * that divides them, so "7d" and "604800000 ms" are one value. */
    for (size_t i = 0; ms > 0 && i < sizeof units / sizeof units[0]; i++) {
        if (ms % units[i].ms == 0) {
            snprintf(out, 32, "%" PRId64 "%s", ms / units[i].ms, units[i].unit);
            return;
        }
    }
    snprintf(out, 32, "%" PRId64 "ms", ms);
}

void
ctl_topics_fmt_retention(int64_t ms, int64_t bytes, char *out, size_t len)
{
    char age[32] = "", size[32] = "";

    if (ms > 0)
        ctl_topics_fmt_ms(ms, age);
    if (bytes > 0)
        ctl_stats_bytes(bytes, size);
    if (ms <= 0 && bytes <= 0)
        snprintf(out, len, "forever");
    else
        snprintf(out, len, "%s%s%s", age, ms > 0 && bytes > 0 ? ", " : "",
                 size);
}

void
ctl_topics_first_line(loom__buf *b, const char *s, size_t max)
{
    const unsigned char *u = (const unsigned char *) s;
    size_t len = strcspn(s, "\r\n"), n = 0;

    while (n < len) {
        size_t k = loom__utf8_seq(u + n, len - n);
        if (k == 0)
            k = 1; /* shown as U+FFFD by the table */
        if (n + k > max)
            break;
        n += k;
    }
    loom__buf_reset(b);
    loom__buf_put(b, s, n);
    if (n < strlen(s))
        loom__buf_puts(b, "\xe2\x80\xa6"); /* U+2026 */
}

const char *
ctl_topics_shown(loom__buf *b, const char *s)
{
    loom__buf_reset(b);
    ctl_term_put(b, s, strlen(s));
    return b->failed ? "?" : b->data;
}

void
ctl_topics_kv(const char *key, const char *fmt, ...)
{
    loom__buf shown = LOOM__BUF_INIT;
    char val[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(val, sizeof val, fmt, ap);
    va_end(ap);
    ctl_term_put(&shown, val, strlen(val));
    printf("%-16s %s\n", key, shown.failed ? "?" : shown.data);
    loom__buf_free(&shown);
}

int
ctl_topics_json_out(loom__buf *b, const char *what)
{
    loom__buf_putc(b, '\n');
    if (b->failed) {
        ctl_fail("printing %s: out of memory", what);
        return CTL_ERR;
    }
    fwrite(b->data, 1, b->len, stdout);
    return CTL_OK;
}

int
ctl_topics_exists(const ctl *c, PGconn *pg, const char *name)
{
    const char *params[1] = {name};
    PGresult *r =
        ctl_pg_exec(pg, "looking up the topic",
                    "SELECT 1 FROM loom.topics WHERE name = $1", 1, params);
    int found;

    if (r == NULL)
        return -1;
    found = PQntuples(r) > 0;
    PQclear(r);
    if (!found)
        ctl_fail("%s %s: topic \"%s\" does not exist (create it: loomctl "
                 "topics create %s --partitions N)",
                 c->cmd, c->sub, name, name);
    return found;
}
