/*
 * loomctl parked list|replay|drop: the events subscriptions gave up on
 * (table loom.parked, see loom/subscription.h).
 *
 * replay does not deliver anything itself: it marks the rows through
 * loom.parked_request_replay(), which also NOTIFYs channel loom_parked,
 * and the subscription that parked them delivers each once more with its
 * own handler, in its own process. drop deletes rows for good. Both take
 * one event id or --all, never a default, because a mistaken bare
 * subscription name would otherwise act on every parked event it has.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "loom/uuid.h"
#include "loomctl.h"
#include "parked.h"
#include "pgwire.h"
#include "stats.h"
#include "termtext.h"

enum { PK_LIST, PK_REPLAY, PK_DROP };
enum { PK_OPT_LIMIT = 1, PK_OPT_ALL };

static const char *const pk_subs[] = {"list", "replay", "drop", NULL};

static const ctl_opt pk_any_opts[] = {
    {"--limit", 1, PK_OPT_LIMIT},
    {"--all", 0, PK_OPT_ALL},
    {NULL, 0, 0},
};
static const ctl_opt pk_list_opts[] = {
    {"--limit", 1, PK_OPT_LIMIT},
    {NULL, 0, 0},
};
static const ctl_opt pk_target_opts[] = {
    {"--all", 0, PK_OPT_ALL},
    {NULL, 0, 0},
};

static const char pk_list_sql[] =
    CTL_PARKED_SELECT "WHERE ($1::text IS NULL OR subscription = $1::text) "
                      "ORDER BY subscription, position LIMIT $2::bigint";

static const char pk_replay_sql[] =
    "SELECT loom.parked_request_replay($1::text, $2::uuid)";

static const char pk_drop_sql[] =
    "DELETE FROM loom.parked WHERE subscription = $1::text "
    "AND ($2::uuid IS NULL OR event_id = $2::uuid)";

/* What replay and drop act on: one event of a subscription, or all. */
typedef struct pk_target {
    const char *sub;
    const char *event_id; /* NULL with --all */
} pk_target;

/* A subscription name travels as a text parameter: PostgreSQL refuses
 * bytes that are not UTF-8 with an error that would not say which
 * argument was wrong. */
static int
pk_check_sub(const ctl *c, const char *sub)
{
    if (sub[0] == '\0' || !loom__utf8_valid(sub, strlen(sub)))
        return ctl_usage_error(c, "SUBSCRIPTION: expected a non-empty "
                                  "UTF-8 name");
    return CTL_OK;
}

/* `s` made safe to print (see termtext.h); valid until the next call
 * with `b`. Subscription names are data and may hold escape sequences. */
static const char *
pk_shown(loom__buf *b, const char *s)
{
    loom__buf_reset(b);
    ctl_term_put(b, s, strlen(s));
    return b->failed ? "?" : b->data;
}

/* ------------------------------------------------------------------ */
/* list                                                                */

static int
pk_list_print(const ctl *c, const PGresult *r, const char *sub)
{
    loom__buf line = LOOM__BUF_INIT;
    int rows = PQntuples(r), rc = CTL_OK;

    if (!c->json && rows == 0) {
        if (sub != NULL)
            printf("(no parked events of \"%s\")\n", pk_shown(&line, sub));
        else
            printf("(no parked events)\n");
        loom__buf_free(&line);
        return CTL_OK;
    }
    if (!c->json) {
        loom__buf_free(&line);
        return ctl_parked_table(r);
    }
    for (int i = 0; i < rows && rc == CTL_OK; i++) {
        loom__buf_reset(&line);
        ctl_parked_json(&line, r, i);
        loom__buf_putc(&line, '\n');
        if (line.failed) {
            ctl_fail("printing parked events: out of memory");
            rc = CTL_ERR;
        } else {
            fwrite(line.data, 1, line.len, stdout);
        }
    }
    loom__buf_free(&line);
    return rc;
}

static int
pk_list(ctl *c, int argc, char **argv)
{
    const char *val, *sub = NULL, *params[2];
    char limit_s[24];
    int64_t limit = 100;
    PGconn *pg;
    PGresult *r;
    ctl_args a;
    int rc = CTL_OK, opt;

    ctl_args_init(&a, argc, argv);
    while (rc == CTL_OK &&
           (opt = ctl_args_next(c, &a, pk_list_opts, &val)) != CTL_ARG_END) {
        if (opt == CTL_ARG_BAD)
            return CTL_USAGE;
        if (opt == PK_OPT_LIMIT)
            rc = ctl_parse_i64(c, "--limit", val, 1, 100000, &limit);
        else if (sub != NULL)
            return ctl_usage_error(c, "unexpected argument \"%s\"", val);
        else if ((rc = pk_check_sub(c, val)) == CTL_OK)
            sub = val;
    }
    if (rc != CTL_OK)
        return rc;
    pg = ctl_pg_open(c);
    if (pg == NULL)
        return CTL_ERR;
    snprintf(limit_s, sizeof limit_s, "%" PRId64, limit);
    params[0] = sub;
    params[1] = limit_s;
    r = ctl_pg_exec(pg, "listing parked events", pk_list_sql, 2, params);
    rc = r != NULL ? pk_list_print(c, r, sub) : CTL_ERR;
    PQclear(r);
    PQfinish(pg);
    return rc;
}

/* ------------------------------------------------------------------ */
/* replay and drop                                                     */

/* SUBSCRIPTION, then exactly one of EVENT_ID or --all. */
static int
pk_target_parse(ctl *c, int argc, char **argv, pk_target *t)
{
    const char *val;
    loom_uuid id;
    ctl_args a;
    int opt, all = 0;

    t->sub = t->event_id = NULL;
    ctl_args_init(&a, argc, argv);
    while ((opt = ctl_args_next(c, &a, pk_target_opts, &val)) != CTL_ARG_END) {
        if (opt == CTL_ARG_BAD)
            return CTL_USAGE;
        if (opt == PK_OPT_ALL)
            all = 1;
        else if (t->sub == NULL)
            t->sub = val;
        else if (t->event_id == NULL)
            t->event_id = val;
        else
            return ctl_usage_error(c, "unexpected argument \"%s\"", val);
    }
    if (t->sub == NULL)
        return ctl_usage_error(c, "give the SUBSCRIPTION, then an EVENT_ID "
                                  "or --all");
    if (pk_check_sub(c, t->sub) != CTL_OK)
        return CTL_USAGE;
    if (t->event_id == NULL && !all)
        return ctl_usage_error(c, "give an EVENT_ID (`loomctl parked list "
                                  "SUBSCRIPTION` shows them) or --all");
    if (t->event_id != NULL && all)
        return ctl_usage_error(c, "give an EVENT_ID or --all, not both");
    if (t->event_id != NULL && loom_uuid_parse(&id, t->event_id) != LOOM_OK)
        return ctl_usage_error(c,
                               "EVENT_ID: \"%s\" is not an event id (a UUID "
                               "such as 0190f5c2-8a41-7cc3-9d52-1b7e0f3a4c11)",
                               t->event_id);
    return CTL_OK;
}

/* Runs `sql` with (subscription, event id or NULL); *n is the count the
 * statement returned (replay) or the rows it affected (drop). */
static int
pk_target_exec(const ctl *c, const pk_target *t, const char *what,
               const char *sql, int64_t *n)
{
    const char *params[2] = {t->sub, t->event_id};
    PGconn *pg = ctl_pg_open(c);
    PGresult *r;

    if (pg == NULL)
        return CTL_ERR;
    r = ctl_pg_exec(pg, what, sql, 2, params);
    if (r != NULL)
        *n = PQntuples(r) > 0 ? ctl_stats_i64(r, 0, 0)
                              : strtoll(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    PQfinish(pg);
    return r != NULL ? CTL_OK : CTL_ERR;
}

static void
pk_result_json(const pk_target *t, const char *key, int64_t n)
{
    loom__buf b = LOOM__BUF_INIT;

    loom__buf_putc(&b, '{');
    ctl_json_kstr(&b, "subscription", t->sub);
    ctl_json_kstr(&b, "event_id", t->event_id);
    ctl_json_ki64(&b, key, n);
    loom__buf_puts(&b, "}\n");
    if (b.failed)
        ctl_fail("printing the result: out of memory");
    else
        fputs(b.data, stdout);
    loom__buf_free(&b);
}

static int
pk_replay(ctl *c, int argc, char **argv)
{
    loom__buf shown = LOOM__BUF_INIT;
    const char *name;
    pk_target t;
    int64_t n = 0;
    int rc = pk_target_parse(c, argc, argv, &t);

    if (rc == CTL_OK)
        rc = pk_target_exec(c, &t, "requesting a replay", pk_replay_sql, &n);
    if (rc != CTL_OK)
        return rc;
    if (n == 0 && t.event_id != NULL) {
        ctl_fail("parked replay: subscription \"%s\" has no parked event %s; "
                 "`loomctl parked list %s` shows the ones it has",
                 t.sub, t.event_id, t.sub);
        return CTL_ERR;
    }
    if (n == 0) {
        ctl_fail("parked replay: subscription \"%s\" has no parked events; "
                 "`loomctl parked list` shows which subscriptions have some",
                 t.sub);
        return CTL_ERR;
    }
    if (c->json) {
        pk_result_json(&t, "marked", n);
        return CTL_OK;
    }
    name = pk_shown(&shown, t.sub);
    printf("marked %" PRId64 " parked event%s of \"%s\" for replay; the "
           "running subscription retries %s (`loomctl parked list %s` "
           "shows what is left)\n",
           n, n == 1 ? "" : "s", name,
           n == 1 ? "it and unparks it if its handler accepts it"
                  : "them and unparks each one its handler accepts",
           name);
    loom__buf_free(&shown);
    return CTL_OK;
}

static int
pk_drop(ctl *c, int argc, char **argv)
{
    loom__buf shown = LOOM__BUF_INIT;
    pk_target t;
    int64_t n = 0;
    int rc = pk_target_parse(c, argc, argv, &t);

    if (rc == CTL_OK)
        rc = pk_target_exec(c, &t, "dropping parked events", pk_drop_sql, &n);
    if (rc != CTL_OK)
        return rc;
    if (c->json) {
        pk_result_json(&t, "dropped", n);
        return CTL_OK;
    }
    printf("dropped %" PRId64 " parked event%s of \"%s\"%s\n", n,
           n == 1 ? "" : "s", pk_shown(&shown, t.sub),
           n == 0 ? " (none matched; `loomctl parked list` shows what is "
                    "parked)"
                  : "");
    loom__buf_free(&shown);
    return CTL_OK;
}

int
ctl_cmd_parked(ctl *c, int argc, char **argv)
{
    int which, rc = ctl_args_sub(c, argc, argv, pk_any_opts, pk_subs, &which);

    if (rc != CTL_OK)
        return rc;
    switch (which) {
    case PK_LIST:
        return pk_list(c, argc, argv);
    case PK_REPLAY:
        return pk_replay(c, argc, argv);
    default:
        return pk_drop(c, argc, argv);
    }
}
