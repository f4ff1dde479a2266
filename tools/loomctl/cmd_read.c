/*
 * loomctl read STREAM [--from V] [--backward] [--limit N]: one stream's
 * events by version, read in pages with loom_store_read_stream().
 *
 * The store reads a stream that does not exist as an empty one, and so
 * does loomctl (exit 0), but it says so: printing nothing would make a
 * mistyped name look like a stream without events. A read that finds
 * none asks for the stream's version and says which it is.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "evout.h"
#include "loomctl.h"
#include "pgwire.h"
#include "termtext.h"

/* Events per read; well under the store's max_read. */
#define RD_PAGE 1000
/* Table rows kept before printing, so a huge --limit stays bounded. */
#define RD_TABLE_ROWS 10000

enum { RD_FROM = 1, RD_BACKWARD, RD_LIMIT };

static const ctl_opt rd_opts[] = {
    {"--from", 1, RD_FROM},
    {"--backward", 0, RD_BACKWARD},
    {"--limit", 1, RD_LIMIT},
    {NULL, 0, 0},
};

typedef struct rd_args {
    const char *stream;
    int64_t from; /* -1: the default for the direction */
    loom_direction dir;
    int64_t limit;
} rd_args;

static int
rd_parse(ctl *c, int argc, char **argv, rd_args *ra)
{
    const char *val;
    ctl_args a;
    int r;

    ra->stream = NULL;
    ra->from = -1;
    ra->dir = LOOM_FORWARD;
    ra->limit = 100;
    ctl_args_init(&a, argc, argv);
    while ((r = ctl_args_next(c, &a, rd_opts, &val)) != CTL_ARG_END) {
        if (r == CTL_ARG_BAD)
            return CTL_USAGE;
        if (r == CTL_ARG_POS && ra->stream != NULL)
            return ctl_usage_error(c,
                                   "unexpected argument \"%s\" (one "
                                   "stream at a time)",
                                   val);
        if (r == CTL_ARG_POS)
            ra->stream = val;
        else if (r == RD_BACKWARD)
            ra->dir = LOOM_BACKWARD;
        else if (r == RD_FROM &&
                 ctl_parse_i64(c, "--from", val, 0, INT64_MAX - 1, &ra->from) !=
                     CTL_OK)
            return CTL_USAGE;
        else if (r == RD_LIMIT &&
                 ctl_parse_i64(c, "--limit", val, 1, 1000000000, &ra->limit) !=
                     CTL_OK)
            return CTL_USAGE;
    }
    if (ra->stream == NULL)
        return ctl_usage_error(c, "which stream? give its name");
    /* The same checks as the store's, as usage errors (exit 2). */
    if (ra->stream[0] == '\0' ||
        strlen(ra->stream) > LOOM_MAX_STREAM_NAME_LIMIT ||
        !loom__utf8_valid(ra->stream, strlen(ra->stream)))
        return ctl_usage_error(c, "a stream name is 1 to %zu bytes of UTF-8",
                               LOOM_MAX_STREAM_NAME_LIMIT);
    if (ra->from < 0)
        ra->from = ra->dir == LOOM_FORWARD ? 0 : LOOM_VERSION_END;
    return CTL_OK;
}

/* Prints where to continue, on stdout with the table (it belongs to the
 * listing) and on stderr with --json (stdout holds only events). */
static void
rd_print_next(const ctl *c, int64_t next)
{
    fprintf(c->json ? stderr : stdout, "next: %" PRId64 "\n", next);
}

/*
 * Reads pages until the limit, the end of the stream (a short page), or
 * version 0 going backward. *next is where another read would continue,
 * or -1 when the stream has nothing more in that direction.
 */
static int
rd_run(ctl *c, loom_store *s, const rd_args *ra, ctl_evout *out, int64_t *next,
       int64_t *shown)
{
    int64_t from = ra->from, left = ra->limit;
    loom_events *page = NULL;
    loom_err rc;

    *next = -1;
    *shown = 0;
    while (left > 0) {
        size_t want = left < RD_PAGE ? (size_t) left : RD_PAGE;
        size_t n;
        rc = loom_store_read_stream(s, ra->stream, from, ra->dir, want, &page);
        if (rc != LOOM_OK) {
            ctl_fail_sql(loom_store_sqlstate(s), "reading stream \"%s\": %s",
                         ra->stream, loom_store_errmsg(s));
            return CTL_ERR;
        }
        n = loom_events_count(page);
        for (size_t i = 0; i < n; i++) {
            if (ctl_evout_add(out, loom_events_at(page, i)) != 0) {
                loom_events_free(page);
                return CTL_ERR;
            }
        }
        if (n > 0) {
            int64_t last = loom_events_at(page, n - 1)->version;
            from = ra->dir == LOOM_FORWARD ? last + 1 : last - 1;
        }
        loom_events_free(page);
        page = NULL;
        left -= (int64_t) n;
        *shown += (int64_t) n;
        if (n < want || from < 0)
            return CTL_OK; /* the end of the stream */
        if (ctl_evout_pending(out) >= RD_TABLE_ROWS &&
            ctl_evout_flush(out) != 0)
            return CTL_ERR;
    }
    *next = from;
    return CTL_OK;
}

/* The stream's version in *version, -1 when it does not exist. */
static int
rd_version(loom_store *s, const rd_args *ra, int64_t *version)
{
    if (loom_store_stream_version(s, ra->stream, version) != LOOM_OK) {
        ctl_fail_sql(loom_store_sqlstate(s),
                     "reading the version of stream \"%s\": %s", ra->stream,
                     loom_store_errmsg(s));
        return CTL_ERR;
    }
    return CTL_OK;
}

/* Nothing was printed: say whether the stream does not exist (a
 * mistyped name, or one not written yet: the store reads it as empty, so
 * this is no error) or has nothing from --from on. Like "next:", on
 * stdout with the table and on stderr with --json (stdout holds only
 * events). */
static int
rd_say_none(const ctl *c, loom_store *s, const rd_args *ra)
{
    FILE *f = c->json ? stderr : stdout;
    loom__buf name = LOOM__BUF_INIT;
    int64_t version;

    if (rd_version(s, ra, &version) != CTL_OK)
        return CTL_ERR;
    /* Names are data and may hold escape sequences. */
    ctl_term_put(&name, ra->stream, strlen(ra->stream));
    if (version < 0)
        fprintf(f,
                "(no stream \"%s\"; `loomctl streams` lists the streams "
                "there are)\n",
                name.failed ? "?" : loom__buf_str(&name));
    else if (!c->json)
        fprintf(f,
                "(no events in stream \"%s\" from version %" PRId64
                "; its last is version %" PRId64 ")\n",
                name.failed ? "?" : loom__buf_str(&name), ra->from, version);
    loom__buf_free(&name);
    return CTL_OK;
}

/* A read that stopped at --limit going forward cannot tell whether more
 * events follow: ask, so that "next:" only shows where there is more. */
static int
rd_check_next(loom_store *s, const rd_args *ra, int64_t *next)
{
    int64_t version;

    if (*next < 0 || ra->dir != LOOM_FORWARD)
        return CTL_OK;
    if (rd_version(s, ra, &version) != CTL_OK)
        return CTL_ERR;
    if (*next > version)
        *next = -1;
    return CTL_OK;
}

int
ctl_cmd_read(ctl *c, int argc, char **argv)
{
    ctl_evout *out = NULL;
    loom_store *s = NULL;
    int64_t next = -1, shown = 0;
    rd_args ra;
    int rc;

    rc = rd_parse(c, argc, argv, &ra);
    if (rc != CTL_OK)
        return rc;
    rc = ctl_registry(c);
    if (rc != CTL_OK)
        return rc;
    s = ctl_store_open(c, LOOM_MIGRATE_CHECK);
    if (s == NULL)
        return CTL_ERR;
    out = ctl_evout_new(CTL_EVOUT_STREAM, c->json, c->reg);
    if (out == NULL) {
        ctl_fail("out of memory");
        rc = CTL_ERR;
    } else {
        rc = rd_run(c, s, &ra, out, &next, &shown);
        if (ctl_evout_flush(out) != 0)
            rc = CTL_ERR;
    }
    if (rc == CTL_OK && shown == 0)
        rc = rd_say_none(c, s, &ra);
    if (rc == CTL_OK)
        rc = rd_check_next(s, &ra, &next);
    if (rc == CTL_OK && next >= 0)
        rd_print_next(c, next);
    ctl_evout_free(out);
    loom_store_close(s);
    return rc;
}
