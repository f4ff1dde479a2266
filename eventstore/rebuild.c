/*
 * Rebuild by replay (loom_projection_rebuild, see loom/projection.h):
 * fills "<schema>__rebuild" from the first event, then swaps it in.
 *
 * Two connections overlap the work: while the writer commits page k (the
 * handlers' statements, the rebuild checkpoint's compare-and-set and the
 * progress counter, one pipelined transaction), the reader already
 * fetches page k+1. Everything a run needs to resume is committed with
 * each page, so stopping, crashing or losing the server costs at most
 * the page in hand. An advisory lock keeps two rebuilds of one projection
 * apart.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "loom/alloc.h"
#include "loom/subscription.h"
#include "pgwire.h"
#include "projection_int.h"
#include "tx_int.h"

/* Consecutive lost connections survived before giving up. */
#define RB_MAX_RECONNECTS 10

static const loom__stmt rb_lock_stmt = {
    LOOM__STMT_REBUILD_LOCK,
    "loom_rebuild_lock",
    "SELECT pg_try_advisory_lock(hashtextextended($1, 0))",
    1,
    {LOOM__OID_TEXT}};

/* The rebuild checkpoint (if any), whether its schema exists, and the
 * progress counter: what a resumed run starts from. */
static const loom__stmt rb_state_stmt = {
    LOOM__STMT_REBUILD_STATE,
    "loom_rebuild_state",
    "SELECT c.tx, c.position, "
    "EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $2), "
    "coalesce((SELECT rebuild_done FROM loom.projections "
    "WHERE checkpoint || ':rebuild' = c.name), 0) "
    "FROM loom.checkpoints c WHERE c.name = $1",
    2,
    {LOOM__OID_TEXT, LOOM__OID_TEXT}};

static const loom__stmt rb_count_stmt = {
    LOOM__STMT_REBUILD_COUNT,
    "loom_rebuild_count",
    "SELECT count(*) FROM loom.events WHERE (tx, position) > ($1, $2)",
    2,
    {LOOM__OID_XID8, LOOM__OID_INT8}};

static const loom__stmt rb_swap_stmt = {LOOM__STMT_REBUILD_SWAP,
                                        "loom_rebuild_swap",
                                        "SELECT loom.projection_swap($1)",
                                        1,
                                        {LOOM__OID_TEXT}};

typedef struct rb {
    const loom_projection_def *def;
    const loom_rebuild_options *opt;
    loom__proj_names names;
    char quoted[LOOM_MAX_PROJECTION_SCHEMA + 16]; /* "<schema>__rebuild" */
    loom_store *rd, *wr;
    loom_tx tx; /* scratch for the synchronous paths */
    loom_tx ring[2];
    const loom_event **sels[2];
    const char **types;
    size_t n_types;
    size_t batch;
    unsigned max_attempts;
    loom_position cursor;
    int64_t done, done_at_start, total;
    int64_t generation;
    double t0, last_report;
    loom__buf why;
    char *err;
    size_t errlen;
} rb;

static double
rb_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static void
rb_sleep_ms(unsigned ms)
{
    struct timespec ts = {(time_t) (ms / 1000), (long) (ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

static loom_err rb_fail(rb *r, loom_err rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes the reason into the caller's errbuf and returns `rc`. */
static loom_err
rb_fail(rb *r, loom_err rc, const char *fmt, ...)
{
    va_list ap;

    if (r->err != NULL && r->errlen > 0) {
        va_start(ap, fmt);
        vsnprintf(r->err, r->errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

/* Reports the store's failure, naming the projection. */
static loom_err
rb_store_fail(rb *r, loom_store *s, loom_err rc)
{
    return rb_fail(r, rc, "rebuild of projection \"%s\": %s", r->def->name,
                   loom_store_errmsg(s));
}

static int
rb_stopped(const rb *r)
{
    return r->opt->stop != NULL && *r->opt->stop;
}

static void
rb_progress(rb *r, int finished)
{
    loom_rebuild_progress p;
    double now = rb_now(), secs = now - r->t0;
    unsigned every = r->opt->progress_ms ? r->opt->progress_ms : 500;

    if (r->opt->progress == NULL ||
        (!finished && (now - r->last_report) * 1000.0 < every))
        return;
    r->last_report = now;
    p.done = r->done;
    p.total = r->total > r->done ? r->total : r->done;
    p.rate = secs > 0 ? (double) (r->done - r->done_at_start) / secs : 0;
    p.eta_s = p.rate > 0 ? (double) (p.total - p.done) / p.rate : -1;
    p.finished = finished;
    r->opt->progress(&p, r->opt->progress_arg);
}

static loom_err
rb_open(rb *r, loom_store **out)
{
    loom_store_config sc = LOOM_STORE_CONFIG_INIT;
    char err[512];
    loom_err rc;

    sc.conninfo = r->opt->conninfo;
    sc.application_name = r->names.rebuild_app;
    sc.max_read = r->batch > LOOM_DEFAULT_MAX_READ ? r->batch : 0;
    rc = loom_store_open(out, &sc, err, sizeof err);
    if (rc != LOOM_OK)
        rb_fail(r, rc, "rebuild of projection \"%s\": %s", r->def->name, err);
    return rc;
}

/* Takes the advisory lock that keeps rebuilds of one projection apart
 * (held by the writer's session until it closes). */
static loom_err
rb_lock(rb *r)
{
    char key[LOOM_MAX_PROJECTION_NAME + 16];
    const char *v[1] = {key};
    int len[1];
    PGresult *res = NULL;
    int got = 0;
    loom_err rc;

    snprintf(key, sizeof key, "loom.rebuild:%s", r->def->name);
    len[0] = (int) strlen(key);
    rc = loom__store_begin(r->wr);
    if (rc == LOOM_OK)
        rc = loom__store_query(r->wr, &rb_lock_stmt, v, len, &res);
    if (rc != LOOM_OK)
        return rb_store_fail(r, r->wr, rc);
    loom__pg_get_bool(res, 0, 0, &got);
    PQclear(res);
    if (!got)
        return rb_fail(r, LOOM_EBUSY,
                       "a rebuild of projection \"%s\" is already running "
                       "(application_name \"%s\" in pg_stat_activity); wait "
                       "for it or stop it",
                       r->def->name, r->names.rebuild_app);
    return LOOM_OK;
}

/* Counts the events after the cursor (what is left to replay). */
static loom_err
rb_count(rb *r, int64_t *n)
{
    char num[16];
    const char *v[2] = {num, num + 8};
    int len[2] = {8, 8};
    PGresult *res = NULL;
    loom_err rc;

    loom__pg_put_be64(num, r->cursor.tx);
    loom__pg_put_be64(num + 8, (uint64_t) r->cursor.position);
    rc = loom__store_begin(r->wr);
    if (rc == LOOM_OK)
        rc = loom__store_query(r->wr, &rb_count_stmt, v, len, &res);
    if (rc == LOOM_OK && !loom__pg_get_i64(res, 0, 0, n))
        rc = LOOM_ESCHEMA;
    PQclear(res);
    return rc == LOOM_OK ? LOOM_OK : rb_store_fail(r, r->wr, rc);
}

/* Runs r->tx on the writer (blocking). */
static loom_err
rb_commit(rb *r)
{
    return loom__store_run_tx(r->wr, &r->tx);
}

/* Starts from scratch: an empty shadow schema set up by setup(), the
 * rebuild checkpoint at the beginning, no parked events, progress 0. */
static loom_err
rb_fresh(rb *r)
{
    char drop[LOOM_MAX_PROJECTION_SCHEMA + 48];
    char create[LOOM_MAX_PROJECTION_SCHEMA + 32];
    const char *cp[1] = {r->names.rebuild_cp};
    const char *name[1] = {r->def->name};
    loom_err rc;

    snprintf(drop, sizeof drop, "DROP SCHEMA IF EXISTS %s CASCADE", r->quoted);
    snprintf(create, sizeof create, "CREATE SCHEMA %s", r->quoted);
    loom__tx_reset(&r->tx);
    rc = loom_tx_exec(&r->tx, drop, 0, NULL);
    if (rc == LOOM_OK)
        rc = loom_tx_exec(&r->tx, create, 0, NULL);
    if (rc == LOOM_OK)
        rc = loom__proj_search_path(&r->tx, r->names.rebuild_schema);
    if (rc == LOOM_OK) {
        rc = r->def->setup(&r->tx, r->def->arg);
        if (rc != LOOM_OK)
            return rb_fail(r, rc,
                           "rebuild of projection \"%s\": setup() returned "
                           "%s",
                           r->def->name, loom_err_name(rc));
    }
    if (rc == LOOM_OK)
        rc = loom_tx_exec(
            &r->tx,
            "INSERT INTO loom.checkpoints (name, tx, position, version) "
            "VALUES ($1, '0', 0, -1) ON CONFLICT (name) DO UPDATE SET "
            "tx = '0', position = 0, version = -1, updated_at = now()",
            1, cp);
    if (rc == LOOM_OK)
        rc = loom_tx_exec(
            &r->tx, "DELETE FROM loom.parked WHERE subscription = $1", 1, cp);
    if (rc == LOOM_OK)
        rc = loom_tx_exec(&r->tx,
                          "UPDATE loom.projections SET rebuild_started_at = "
                          "now(), rebuild_done = 0, rebuild_updated_at = now() "
                          "WHERE name = $1",
                          1, name);
    if (rc == LOOM_OK)
        rc = rb_commit(r);
    if (rc != LOOM_OK)
        return rb_store_fail(r, r->wr, rc);
    r->cursor.tx = 0;
    r->cursor.position = 0;
    r->done = 0;
    return LOOM_OK;
}

/* Resumes a stopped rebuild, or starts a fresh one. */
static loom_err
rb_begin(rb *r, int restart)
{
    const char *v[2] = {r->names.rebuild_cp, r->names.rebuild_schema};
    int len[2] = {(int) strlen(v[0]), (int) strlen(v[1])};
    PGresult *res = NULL;
    int resumable = 0, exists = 0;
    int64_t left = 0;
    char total[24];
    loom_err rc = loom__store_begin(r->wr);

    if (rc == LOOM_OK)
        rc = loom__store_query(r->wr, &rb_state_stmt, v, len, &res);
    if (rc != LOOM_OK)
        return rb_store_fail(r, r->wr, rc);
    if (PQntuples(res) == 1 && loom__pg_get_bool(res, 0, 2, &exists) &&
        exists && loom__pg_get_u64(res, 0, 0, &r->cursor.tx) &&
        loom__pg_get_i64(res, 0, 1, &r->cursor.position) &&
        loom__pg_get_i64(res, 0, 3, &r->done))
        resumable = 1;
    PQclear(res);
    if (!resumable || restart) {
        rc = rb_fresh(r);
        if (rc != LOOM_OK)
            return rc;
    }
    r->done_at_start = r->done;
    rc = rb_count(r, &left);
    if (rc != LOOM_OK)
        return rc;
    r->total = r->done + left;
    snprintf(total, sizeof total, "%lld", (long long) r->total);
    loom__tx_reset(&r->tx);
    rc = loom_tx_exec(&r->tx,
                      "UPDATE loom.projections SET rebuild_total = $2, "
                      "rebuild_updated_at = now() WHERE name = $1",
                      2, (const char *const[]){r->def->name, total});
    if (rc == LOOM_OK)
        rc = rb_commit(r);
    return rc == LOOM_OK ? LOOM_OK : rb_store_fail(r, r->wr, rc);
}

/* Queues on `tx` the statements that commit `n` events (or park
 * events[0] when `park`): the handlers' (between *h_first and *h_end),
 * then the checkpoint from `from` to `to` and the progress counter.
 * A handler's refusal is returned with r->why set. */
static loom_err
rb_build(rb *r, loom_tx *tx, const loom_event *const *events, size_t n,
         loom_position from, loom_position to, int64_t done, int park,
         unsigned attempts, size_t *h_first, size_t *h_end)
{
    char num[24];
    loom_err rc;

    *h_first = *h_end = 0;
    snprintf(num, sizeof num, "%lld", (long long) done);
    loom__tx_reset(tx);
    /* A page's commit need not wait for its WAL flush: a crash can only
     * lose whole pages (effects and checkpoint together), which the
     * resumed rebuild replays. The swap itself commits durably. */
    rc = loom_tx_exec(tx,
                      "SELECT set_config('search_path', $1, true), "
                      "set_config('synchronous_commit', 'off', true)",
                      1, (const char *const[]){r->quoted});
    if (rc == LOOM_OK && park) {
        rc = loom__tx_park(tx, r->names.rebuild_cp, events[0],
                           loom__buf_str(&r->why), attempts);
    } else if (rc == LOOM_OK && n > 0) {
        *h_first = loom_tx_count(tx);
        rc = loom__proj_dispatch(r->def, tx, events, n);
        *h_end = loom_tx_count(tx);
        if (rc != LOOM_OK) {
            loom__buf_reset(&r->why);
            loom__buf_printf(&r->why, "the handler refused the event (%s)",
                             loom_err_name(rc));
            *h_end = SIZE_MAX; /* tells rb_try the handler refused */
            return rc;
        }
    }
    if (rc == LOOM_OK)
        rc = loom__tx_advance(tx, r->names.rebuild_cp, from, -1, to, -1);
    if (rc == LOOM_OK)
        rc = loom_tx_exec(tx,
                          "UPDATE loom.projections SET rebuild_done = $2, "
                          "rebuild_updated_at = now() WHERE name = $1",
                          2, (const char *const[]){r->def->name, num});
    return rc;
}

/* After a failed commit: did one of the handler's statements fail (its
 * event's fault, counted towards parking)? Sets r->why when so. */
static int
rb_handler_failed(rb *r, loom_err rc, size_t h_first, size_t h_end)
{
    if (rc == LOOM_ECONN || r->wr->tx_failed < (long) h_first ||
        r->wr->tx_failed >= (long) h_end ||
        loom__sqlstate_transient(loom_store_sqlstate(r->wr)))
        return 0;
    loom__buf_reset(&r->why);
    loom__buf_printf(&r->why,
                     "a statement of the handler failed: %s (SQLSTATE %s)",
                     loom_store_errmsg(r->wr), loom_store_sqlstate(r->wr));
    return 1;
}

/* One blocking attempt at committing `n` events (or parking events[0]),
 * from the current cursor. *handler_failed tells a handler's failure
 * from the store's. */
static loom_err
rb_try(rb *r, const loom_event *const *events, size_t n, loom_position to,
       int64_t done, int park, unsigned attempts, int *handler_failed)
{
    size_t h_first, h_end;
    loom_err rc = rb_build(r, &r->tx, events, n, r->cursor, to, done, park,
                           attempts, &h_first, &h_end);

    *handler_failed = 0;
    if (rc != LOOM_OK) {
        *handler_failed = h_end == SIZE_MAX;
        return rc;
    }
    rc = rb_commit(r);
    if (rc == LOOM_OK) {
        r->cursor = to;
        r->done = done;
        return LOOM_OK;
    }
    *handler_failed = rb_handler_failed(r, rc, h_first, h_end);
    return rc;
}

/* Commits `n` events with retries: a handler failure counts towards
 * max_attempts (then isolation, then parking); a transient failure is
 * retried; a lost connection is returned (the caller resumes). */
static loom_err
rb_apply(rb *r, const loom_event *const *events, size_t n, loom_position to,
         int64_t done)
{
    unsigned attempts = 0, delay = 100;

    for (;;) {
        int handler_failed;
        loom_err rc =
            rb_try(r, events, n, to, done, 0, attempts, &handler_failed);

        if (rc == LOOM_OK || rc == LOOM_ECONN)
            return rc;
        if (strcmp(loom_store_sqlstate(r->wr), "LM004") == 0)
            return rb_fail(r, LOOM_ECONFLICT,
                           "rebuild of projection \"%s\": its checkpoint was "
                           "moved by someone else (%s)",
                           r->def->name, loom_store_errmsg(r->wr));
        if (!handler_failed &&
            !loom__sqlstate_transient(loom_store_sqlstate(r->wr)))
            return rb_store_fail(r, r->wr, rc);
        if (rb_stopped(r))
            return LOOM_EAGAIN;
        if (handler_failed && ++attempts >= r->max_attempts) {
            if (n > 1) {
                /* Find the failing event: one at a time. */
                for (size_t i = 0; i < n; i++) {
                    loom_position at = {events[i]->tx, events[i]->position};
                    rc = rb_apply(r, events + i, 1, i + 1 < n ? at : to,
                                  i + 1 < n ? r->done + 1 : done);
                    if (rc != LOOM_OK)
                        return rc;
                }
                return LOOM_OK;
            }
            rc = rb_try(r, events, 1, to, done, 1, attempts, &handler_failed);
            return rc == LOOM_OK ? LOOM_OK : rb_store_fail(r, r->wr, rc);
        }
        rb_sleep_ms(delay);
        delay = delay * 2 > 5000 ? 5000 : delay * 2;
    }
}

static int
rb_wanted(const rb *r, const char *type)
{
    for (size_t i = 0; i < r->n_types; i++)
        if (strcmp(r->types[i], type) == 0)
            return 1;
    return 0;
}

/* Receives the reader's page (blocking). */
static loom_err
rb_recv(rb *r, loom_events **page)
{
    loom_err rc = loom__store_wait(r->rd);

    if (rc == LOOM_OK)
        rc = loom_store_events_recv(r->rd, page);
    return rc;
}

/* A page whose transaction commits in the background while the next
 * page is read and handled. */
typedef struct rb_ahead {
    loom_events *page;
    const loom_event **sel;
    size_t n;
    loom_position to;
    int64_t done;
    int in_flight;
} rb_ahead;

/* Waits for the page committing in the background. When its commit
 * failed for a reason other than a lost connection, the page goes
 * through the blocking path, with its retries, isolation and parking. */
static loom_err
rb_settle(rb *r, rb_ahead *a)
{
    loom_err rc;

    if (!a->in_flight)
        return LOOM_OK;
    a->in_flight = 0;
    rc = loom__store_wait(r->wr);
    if (rc == LOOM_OK)
        rc = loom__store_take_tx(r->wr);
    if (rc == LOOM_OK) {
        r->cursor = a->to;
        r->done = a->done;
    } else if (strcmp(loom_store_sqlstate(r->wr), "LM004") == 0) {
        rc = rb_fail(r, LOOM_ECONFLICT,
                     "rebuild of projection \"%s\": its checkpoint was "
                     "moved by someone else (%s)",
                     r->def->name, loom_store_errmsg(r->wr));
    } else if (rc == LOOM_ECONN) {
        rc = rb_store_fail(r, r->wr, rc);
    } else {
        rc = rb_apply(r, a->sel, a->n, a->to, a->done);
    }
    loom_events_free(a->page);
    a->page = NULL;
    return rc;
}

/* Replays from the cursor until caught up (LOOM_OK), stopped
 * (LOOM_EAGAIN) or failed. Three things overlap: the reader fetches page
 * k+1, the client runs the handlers of page k, and the writer commits
 * page k-1. */
static loom_err
rb_replay(rb *r)
{
    rb_ahead ahead = {NULL, NULL, 0, {0, 0}, 0, 0};
    loom_events *page = NULL;
    int64_t done = r->done;
    int turn = 0, prefetching = 0;
    loom_err rc = loom_store_read_all_send(r->rd, r->cursor, r->batch);

    if (rc != LOOM_OK)
        return rb_store_fail(r, r->rd, rc);
    prefetching = 1;
    for (;;) {
        size_t count, n = 0, h_first, h_end;
        const loom_event **sel = r->sels[turn];
        loom_tx *tx = &r->ring[turn];
        loom_position next;
        loom_err built;

        prefetching = 0;
        rc = rb_recv(r, &page);
        if (rc != LOOM_OK) {
            rc = rb_store_fail(r, r->rd, rc);
            break;
        }
        count = loom_events_count(page);
        if (count == 0)
            break;
        next = loom_events_next(page);
        if (!rb_stopped(r)) {
            rc = loom_store_read_all_send(r->rd, next, r->batch);
            if (rc != LOOM_OK) {
                rc = rb_store_fail(r, r->rd, rc);
                break;
            }
            prefetching = 1;
        }
        for (size_t i = 0; i < count; i++) {
            const loom_event *ev = loom_events_at(page, i);
            if (rb_wanted(r, ev->type))
                sel[n++] = ev;
        }
        done += (int64_t) count;
        /* Handlers run while the previous page commits. */
        built = rb_build(r, tx, sel, n, ahead.in_flight ? ahead.to : r->cursor,
                         next, done, 0, 0, &h_first, &h_end);
        rc = rb_settle(r, &ahead);
        if (rc == LOOM_OK && built != LOOM_OK)
            rc = rb_apply(r, sel, n, next, done); /* retries, isolation */
        else if (rc == LOOM_OK) {
            rc = loom__store_begin(r->wr);
            if (rc == LOOM_OK)
                rc = loom__store_send_tx(r->wr, tx);
            if (rc == LOOM_OK) {
                ahead = (rb_ahead){page, sel, n, next, done, 1};
                page = NULL;
                turn ^= 1;
            } else {
                rc = rb_store_fail(r, r->wr, rc);
            }
        }
        loom_events_free(page);
        page = NULL;
        if (rc == LOOM_OK)
            rb_progress(r, 0);
        if (rc == LOOM_OK && rb_stopped(r))
            rc = LOOM_EAGAIN;
        if (rc != LOOM_OK)
            break;
    }
    /* Whatever ended the loop, the page in the background settles. */
    loom_events_free(page);
    page = NULL;
    if (ahead.in_flight) {
        loom_err settled = rb_settle(r, &ahead);
        if (rc == LOOM_OK || (rc == LOOM_EAGAIN && settled != LOOM_OK))
            rc = settled;
        if (rc == LOOM_OK && rb_stopped(r))
            rc = LOOM_EAGAIN;
    }
    if (prefetching && rb_recv(r, &page) == LOOM_OK)
        loom_events_free(page); /* drain the read in flight */
    return rc;
}

static loom_err
rb_swap(rb *r)
{
    const char *v[1] = {r->def->name};
    int len[1] = {(int) strlen(r->def->name)};
    PGresult *res = NULL;
    loom_err rc = loom__store_begin(r->wr);

    if (rc == LOOM_OK)
        rc = loom__store_query(r->wr, &rb_swap_stmt, v, len, &res);
    if (rc == LOOM_OK)
        loom__pg_get_i64(res, 0, 0, &r->generation);
    PQclear(res);
    return rc == LOOM_OK ? LOOM_OK : rb_store_fail(r, r->wr, rc);
}

/* One run: resume or start, replay, swap. */
static loom_err
rb_run(rb *r, int restart)
{
    loom_err rc = loom__proj_register(r->wr, r->def, &r->names);

    if (rc != LOOM_OK)
        return rb_store_fail(r, r->wr, rc);
    rc = rb_begin(r, restart);
    if (rc == LOOM_OK)
        rc = rb_replay(r);
    if (rc == LOOM_OK)
        rc = rb_swap(r);
    return rc;
}

loom_err
loom_projection_rebuild(const loom_projection_def *def,
                        const loom_rebuild_options *opt, char *errbuf,
                        size_t errlen)
{
    static const loom_rebuild_options defaults = LOOM_REBUILD_OPTIONS_INIT;
    rb r;
    const char *why;
    loom_err rc;
    unsigned delay = 200;

    if (errbuf != NULL && errlen > 0)
        errbuf[0] = '\0';
    memset(&r, 0, sizeof r);
    r.err = errbuf;
    r.errlen = errlen;
    if (loom__proj_check(def, &why) != LOOM_OK)
        return rb_fail(&r, LOOM_EINVAL, "bad projection definition: %s", why);
    if (def->schema == NULL)
        return rb_fail(&r, LOOM_EINVAL,
                       "projection \"%s\" keeps its read model in memory; it "
                       "is rebuilt on every start",
                       def->name);
    r.def = def;
    r.opt = opt ? opt : &defaults;
    if (r.opt->batch > 1000000)
        return rb_fail(&r, LOOM_EINVAL, "batch %zu is over 1,000,000",
                       r.opt->batch);
    r.batch = r.opt->batch ? r.opt->batch : LOOM__REBUILD_BATCH;
    r.max_attempts =
        r.opt->max_attempts ? r.opt->max_attempts : LOOM_DEFAULT_SUB_ATTEMPTS;
    loom__proj_names_init(&r.names, def);
    snprintf(r.quoted, sizeof r.quoted, "\"%s\"", r.names.rebuild_schema);
    loom__tx_init(&r.tx);
    loom__tx_init(&r.ring[0]);
    loom__tx_init(&r.ring[1]);
    r.types = loom__proj_types(def, &r.n_types);
    r.sels[0] = loom_malloc(r.batch * sizeof *r.sels[0]);
    r.sels[1] = loom_malloc(r.batch * sizeof *r.sels[1]);
    if (r.types == NULL || r.sels[0] == NULL || r.sels[1] == NULL) {
        rc = rb_fail(&r, LOOM_ENOMEM, "out of memory starting a rebuild");
        goto out;
    }
    r.t0 = rb_now();
    rc = rb_open(&r, &r.wr);
    if (rc == LOOM_OK)
        rc = rb_open(&r, &r.rd);
    if (rc == LOOM_OK)
        rc = rb_lock(&r);
    for (int lost = 0; rc == LOOM_OK;) {
        rc = rb_run(&r, opt != NULL && opt->restart && lost == 0);
        if (rc != LOOM_ECONN || ++lost > RB_MAX_RECONNECTS || rb_stopped(&r))
            break;
        /* The server went away: resume from what committed. The lock
         * went with the session, so take it again. */
        rb_sleep_ms(delay);
        delay = delay * 2 > 5000 ? 5000 : delay * 2;
        rc = rb_lock(&r);
    }
    if (rc == LOOM_OK)
        rb_progress(&r, 1);
out:
    loom_store_close(r.rd);
    loom_store_close(r.wr);
    loom__tx_free(&r.tx);
    loom__tx_free(&r.ring[0]);
    loom__tx_free(&r.ring[1]);
    loom__buf_free(&r.why);
    loom_free(r.types);
    loom_free(r.sels[0]);
    loom_free(r.sels[1]);
    return rc;
}
