/*
 * loomctl tail: events of every stream, or of one category, in commit
 * order (loom_store_read_all() / loom_store_read_category()), from a
 * cursor or from the newest N events, optionally following new ones.
 *
 * The store reads only events below the oldest running transaction, so
 * a cursor printed here never skips an event when passed back with
 * --from. Finding where "the newest N" start and the transaction of a
 * bare position needs catalog queries, run on a separate connection.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "evout.h"
#include "loomctl.h"

#define TL_PAGE       1000  /* events per read */
#define TL_TABLE_ROWS 10000 /* table rows kept before printing */

enum { TL_FROM = 1, TL_CATEGORY, TL_GROUP, TL_LIMIT, TL_FOLLOW, TL_POLL };

static const ctl_opt tl_opts[] = {
    {"--from", 1, TL_FROM},
    {"--category", 1, TL_CATEGORY},
    {"--group", 1, TL_GROUP},
    {"--limit", 1, TL_LIMIT},
    {"--follow", 0, TL_FOLLOW},
    {"--poll-ms", 1, TL_POLL},
    {NULL, 0, 0},
};

typedef struct tl_args {
    const char *from; /* NULL: the newest `limit` events */
    const char *category;
    loom_group group;
    int grouped;
    int64_t limit;
    int follow;
    int64_t poll_ms;
} tl_args;

/* Set by SIGINT/SIGTERM: finish the page in hand, then stop. */
static volatile sig_atomic_t tl_stop;

static void
tl_on_signal(int sig)
{
    (void) sig;
    tl_stop = 1;
}

/* "M/N" with 0 <= M < N <= INT32_MAX (the store's limit). */
static int
tl_parse_group(const ctl *c, const char *s, loom_group *g)
{
    const char *slash = strchr(s, '/');
    char m[32];
    int64_t member, size;

    if (slash == NULL || (size_t) (slash - s) >= sizeof m)
        return ctl_usage_error(c,
                               "--group: expected M/N (member M of N, "
                               "0-based), got \"%s\"",
                               s);
    memcpy(m, s, (size_t) (slash - s));
    m[slash - s] = '\0';
    if (ctl_parse_i64(c, "--group size", slash + 1, 1, INT32_MAX, &size) ||
        ctl_parse_i64(c, "--group member", m, 0, size - 1, &member))
        return CTL_USAGE;
    g->member = (uint32_t) member;
    g->size = (uint32_t) size;
    return CTL_OK;
}

static int
tl_parse(ctl *c, int argc, char **argv, tl_args *ta)
{
    const char *val;
    ctl_args a;
    int r, rc = CTL_OK;

    memset(ta, 0, sizeof *ta);
    ta->limit = 20;
    ta->poll_ms = 200;
    ctl_args_init(&a, argc, argv);
    while (rc == CTL_OK &&
           (r = ctl_args_next(c, &a, tl_opts, &val)) != CTL_ARG_END) {
        if (r == CTL_ARG_BAD)
            return CTL_USAGE;
        if (r == CTL_ARG_POS)
            return ctl_usage_error(c, "unexpected argument \"%s\"", val);
        if (r == TL_FROM)
            ta->from = val;
        else if (r == TL_CATEGORY) {
            ta->category = val;
            rc = ctl_check_category(c, "--category", val);
        } else if (r == TL_GROUP) {
            ta->grouped = 1;
            rc = tl_parse_group(c, val, &ta->group);
        } else if (r == TL_LIMIT)
            rc = ctl_parse_i64(c, "--limit", val, 1, 1000000000, &ta->limit);
        else if (r == TL_FOLLOW)
            ta->follow = 1;
        else if (r == TL_POLL)
            rc = ctl_parse_i64(c, "--poll-ms", val, 1, 3600000, &ta->poll_ms);
    }
    if (rc == CTL_OK && ta->grouped && ta->category == NULL)
        return ctl_usage_error(c, "--group needs --category: consumer "
                                  "groups share the streams of a category");
    return rc;
}

/* ------------------------------------------------------------------ */
/* The starting cursor                                                 */

/* Reads a cursor from a catalog row: tx as text in column 0, position in
 * column 1. */
static int
tl_row_cursor(const PGresult *r, loom_position *pos)
{
    char *end;

    errno = 0;
    pos->tx = strtoull(PQgetvalue(r, 0, 0), &end, 10);
    if (errno != 0 || *end != '\0')
        return -1;
    pos->position = strtoll(PQgetvalue(r, 0, 1), &end, 10);
    return errno != 0 || *end != '\0' ? -1 : 0;
}

/* The cursor just before the event at `position`, so it is printed. */
static int
tl_cursor_of_position(PGconn *pg, int64_t position, loom_position *pos)
{
    char num[24];
    const char *params[1] = {num};
    PGresult *r;
    int rc = CTL_OK;

    snprintf(num, sizeof num, "%" PRId64, position);
    r = ctl_pg_exec(pg, "looking up the event at --from position",
                    "SELECT tx::text, position FROM loom.events "
                    "WHERE position = $1::bigint",
                    1, params);
    if (r == NULL)
        return CTL_ERR;
    if (PQntuples(r) != 1) {
        ctl_fail("--from %" PRId64 ": no event has that position (use "
                 "TX:POS from a \"next:\" line, or \"start\")",
                 position);
        rc = CTL_ERR;
    } else if (tl_row_cursor(r, pos) != 0) {
        ctl_fail("--from: unexpected answer looking up position %" PRId64,
                 position);
        rc = CTL_ERR;
    } else {
        pos->position--;
    }
    PQclear(r);
    return rc;
}

/*
 * The cursor of the (N+1)th newest readable event in commit order, so
 * that reading after it yields the newest N; {0, 0} when there are fewer.
 * Same visibility rule as the store's reads (below the snapshot xmin).
 * "ORDER BY e.tx", qualified: a bare "tx" would name the output column
 * tx::text and sort as text ("999" after "1010").
 */
static int
tl_cursor_of_newest(PGconn *pg, const tl_args *ta, loom_position *pos)
{
    static const char *const sql[3] = {
        "SELECT e.tx::text, e.position FROM loom.events e "
        "WHERE tx < pg_snapshot_xmin(pg_current_snapshot()) "
        "ORDER BY e.tx DESC, e.position DESC OFFSET $1::bigint LIMIT 1",
        "SELECT e.tx::text, e.position FROM loom.events e "
        "WHERE category = $2 "
        "AND tx < pg_snapshot_xmin(pg_current_snapshot()) "
        "ORDER BY e.tx DESC, e.position DESC OFFSET $1::bigint LIMIT 1",
        "SELECT e.tx::text, e.position FROM loom.events e "
        "WHERE category = $2 "
        "AND tx < pg_snapshot_xmin(pg_current_snapshot()) "
        "AND loom.group_member(stream, $4::integer) = $3::integer "
        "ORDER BY e.tx DESC, e.position DESC OFFSET $1::bigint LIMIT 1"};
    char n[24], member[16], size[16];
    const char *params[4] = {n, ta->category, member, size};
    int which = ta->grouped ? 2 : ta->category != NULL ? 1 : 0;
    PGresult *r;
    int rc = CTL_OK;

    snprintf(n, sizeof n, "%" PRId64, ta->limit);
    snprintf(member, sizeof member, "%" PRIu32, ta->group.member);
    snprintf(size, sizeof size, "%" PRIu32, ta->group.size);
    r = ctl_pg_exec(pg, "finding the newest events", sql[which],
                    which == 2 ? 4 : 1 + which, params);
    if (r == NULL)
        return CTL_ERR;
    pos->tx = 0;
    pos->position = 0;
    if (PQntuples(r) == 1 && tl_row_cursor(r, pos) != 0) {
        ctl_fail("finding the newest events: unexpected answer");
        rc = CTL_ERR;
    }
    PQclear(r);
    return rc;
}

/* "start", "TX:POS" or "POS"; looks up what it must. */
static int
tl_start(ctl *c, const tl_args *ta, loom_position *pos)
{
    const char *colon = ta->from ? strchr(ta->from, ':') : NULL;
    PGconn *pg;
    int64_t p;
    int rc;

    pos->tx = 0;
    pos->position = 0;
    if (ta->from != NULL && strcmp(ta->from, "start") == 0)
        return CTL_OK;
    if (colon != NULL) {
        char tx[32];
        if ((size_t) (colon - ta->from) >= sizeof tx)
            return ctl_usage_error(c,
                                   "--from: expected TX:POS, POS or "
                                   "start, got \"%s\"",
                                   ta->from);
        memcpy(tx, ta->from, (size_t) (colon - ta->from));
        tx[colon - ta->from] = '\0';
        if (ctl_parse_u64(c, "--from TX", tx, &pos->tx) ||
            ctl_parse_i64(c, "--from POS", colon + 1, 0, INT64_MAX, &p))
            return CTL_USAGE;
        pos->position = p;
        return CTL_OK;
    }
    if (ta->from != NULL &&
        ctl_parse_i64(c, "--from", ta->from, 1, INT64_MAX, &p) != CTL_OK)
        return CTL_USAGE;
    pg = ctl_pg_open(c);
    if (pg == NULL)
        return CTL_ERR;
    rc = ta->from != NULL ? tl_cursor_of_position(pg, p, pos)
                          : tl_cursor_of_newest(pg, ta, pos);
    PQfinish(pg);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Reading                                                             */

static loom_err
tl_read(loom_store *s, const tl_args *ta, loom_position after, size_t max,
        loom_events **page)
{
    if (ta->category == NULL)
        return loom_store_read_all(s, after, max, page);
    return loom_store_read_category(s, ta->category, after,
                                    ta->grouped ? &ta->group : NULL, max, page);
}

/* Sleeps `ms` unless a signal asks to stop first. */
static void
tl_sleep(int64_t ms)
{
    struct timespec ts = {(time_t) (ms / 1000), (long) (ms % 1000) * 1000000};

    while (!tl_stop && nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/*
 * Prints events after *cur until caught up (or, without --follow, until
 * `limit` events), moving *cur past each page. In follow mode a caught-up
 * reader sleeps and looks again until a signal arrives.
 */
static int
tl_run(const tl_args *ta, loom_store *s, ctl_evout *out, loom_position *cur)
{
    int64_t left = ta->limit;

    while (!tl_stop && (ta->follow || left > 0)) {
        size_t want = ta->follow || left > TL_PAGE ? TL_PAGE : (size_t) left;
        loom_events *page = NULL;
        loom_err rc = tl_read(s, ta, *cur, want, &page);
        size_t n;

        if (rc != LOOM_OK) {
            ctl_fail_sql(loom_store_sqlstate(s), "reading %s%s%s%s: %s",
                         ta->category ? "category \"" : "all events",
                         ta->category ? ta->category : "",
                         ta->category ? "\"" : "",
                         rc == LOOM_ECONN && ta->follow ? " (will retry)" : "",
                         loom_store_errmsg(s));
            /* A follower outlives a server restart: the store reconnects
             * on the next call, and the cursor loses nothing. */
            if (rc != LOOM_ECONN || !ta->follow)
                return CTL_ERR;
            tl_sleep(ta->poll_ms > 1000 ? ta->poll_ms : 1000);
            continue;
        }
        n = loom_events_count(page);
        for (size_t i = 0; i < n; i++) {
            if (ctl_evout_add(out, loom_events_at(page, i)) != 0) {
                loom_events_free(page);
                return CTL_ERR;
            }
        }
        *cur = loom_events_next(page);
        loom_events_free(page);
        left -= (int64_t) n;
        if ((ta->follow || ctl_evout_pending(out) >= TL_TABLE_ROWS) &&
            ctl_evout_flush(out) != 0)
            return CTL_ERR;
        if (n < want && !ta->follow)
            break; /* caught up */
        if (n < want)
            tl_sleep(ta->poll_ms);
    }
    return CTL_OK;
}

static void
tl_signals(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = tl_on_signal;
    sigemptyset(&sa.sa_mask);
    /* No SA_RESTART: the poll sleep must wake up. A read in progress
     * retries its poll() on EINTR and finishes its page. */
    sa.sa_flags = 0;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int
ctl_cmd_tail(ctl *c, int argc, char **argv)
{
    loom_position cur;
    ctl_evout *out = NULL;
    loom_store *s = NULL;
    tl_args ta;
    int rc;

    rc = tl_parse(c, argc, argv, &ta);
    if (rc == CTL_OK)
        rc = ctl_registry(c);
    if (rc == CTL_OK && (s = ctl_store_open(c, LOOM_MIGRATE_CHECK)) == NULL)
        rc = CTL_ERR;
    if (rc == CTL_OK)
        rc = tl_start(c, &ta, &cur);
    if (rc == CTL_OK &&
        (out = ctl_evout_new(CTL_EVOUT_ALL, c->json, c->reg)) == NULL) {
        ctl_fail("out of memory");
        rc = CTL_ERR;
    }
    if (rc == CTL_OK) {
        if (ta.follow)
            tl_signals();
        rc = tl_run(&ta, s, out, &cur);
        if (ctl_evout_flush(out) != 0)
            rc = CTL_ERR;
    }
    /* The cursor to resume from; stdout carries only events with --json,
     * and with --follow the listing never ends, so use stderr there. */
    if (rc == CTL_OK)
        fprintf(c->json || ta.follow ? stderr : stdout,
                "next: %" PRIu64 ":%" PRId64 "\n", cur.tx, cur.position);
    ctl_evout_free(out);
    loom_store_close(s);
    return rc;
}
