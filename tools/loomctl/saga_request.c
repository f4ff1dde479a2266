/*
 * loomctl saga retry|skip|abort ID: an operator's request, recorded with
 * loom_saga_request() and applied by a running orchestrator (see
 * loom/saga.h). loomctl never changes a saga itself: only the
 * orchestrator that runs its type knows how to send the compensation
 * again or go on to the next one, and it does so in one transaction with
 * the log entry that names who asked.
 *
 * With --wait, loomctl polls the instance until its request is no longer
 * pending (the orchestrator clears it when it applies it) and prints the
 * state it left the saga in; no orchestrator in time is an error (exit
 * 1), and the request stays pending until one runs.
 */
#include <inttypes.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "json.h"
#include "sagactl.h"
#include "topics.h"

enum { RQ_OPT_BY = 1, RQ_OPT_WAIT };

static const ctl_opt rq_opts[] = {
    {"--by", 1, RQ_OPT_BY},
    {"--wait", 1, RQ_OPT_WAIT},
    {NULL, 0, 0},
};

/* How often --wait looks, in ms. An orchestrator applies a request
 * within milliseconds of its NOTIFY, so a tenth of a second is prompt
 * without loading the database. */
#define RQ_POLL_MS 100

/* The longest --wait: a day. */
#define RQ_MAX_WAIT 86400

/* What the saga is doing, read before and after the request. */
static const char rq_state_sql[] =
    "SELECT i.state, i.step, " CTL_SAGA_STEP_NAME ", i.attempt, "
    "i.pending_op, i.pending_by, i.last_error, i.type "
    "FROM loom.saga_instances i " CTL_SAGA_DEF_JOIN "WHERE i.id = $1";

enum {
    RS_STATE,
    RS_STEP,
    RS_STEP_NAME,
    RS_ATTEMPT,
    RS_PENDING_OP,
    RS_PENDING_BY,
    RS_ERROR,
    RS_TYPE
};

typedef struct rq_args {
    const char *id;
    const char *by; /* NULL: "$USER@host" */
    int64_t wait;   /* seconds; 0: do not wait */
    char who[256 + 2 + 256];
} rq_args;

static const char *
rq_op_name(loom_saga_op op)
{
    return op == LOOM_SAGA_OP_RETRY  ? "retry"
           : op == LOOM_SAGA_OP_SKIP ? "skip"
                                     : "abort";
}

/* "$USER@host": who asked, as the saga's log will name them. */
static void
rq_default_who(char *out, size_t len)
{
    const char *user = getenv("USER");
    struct passwd *pw;
    char host[256];

    if (user == NULL || user[0] == '\0') {
        pw = getpwuid(getuid());
        user = pw != NULL && pw->pw_name != NULL ? pw->pw_name : "unknown";
    }
    if (gethostname(host, sizeof host) != 0)
        snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = '\0';
    snprintf(out, len, "%s@%s", user, host);
}

static int
rq_parse(ctl *c, int argc, char **argv, rq_args *ra)
{
    const char *val;
    ctl_args a;
    int opt, rc = CTL_OK;

    memset(ra, 0, sizeof *ra);
    ctl_args_init(&a, argc, argv);
    while (rc == CTL_OK &&
           (opt = ctl_args_next(c, &a, rq_opts, &val)) != CTL_ARG_END) {
        if (opt == CTL_ARG_BAD)
            return CTL_USAGE;
        if (opt == RQ_OPT_BY)
            rc = ctl_topics_check_text(c, "--by", ra->by = val);
        else if (opt == RQ_OPT_WAIT)
            rc = ctl_parse_i64(c, "--wait", val, 1, RQ_MAX_WAIT, &ra->wait);
        else if (ra->id != NULL)
            return ctl_usage_error(c, "unexpected argument \"%s\"", val);
        else
            rc = ctl_saga_check_id(c, ra->id = val);
    }
    if (rc != CTL_OK)
        return rc;
    if (ra->id == NULL)
        return ctl_usage_error(c, "give the saga's ID (`loomctl saga list "
                                  "--state COMPENSATION_FAILED` shows the "
                                  "ones waiting for an operator)");
    if (ra->by != NULL)
        snprintf(ra->who, sizeof ra->who, "%s", ra->by);
    else
        rq_default_who(ra->who, sizeof ra->who);
    return CTL_OK;
}

/* Records the request; the library's (and the database's) refusal is
 * reported as it is: it names the saga, its state and what is allowed. */
static int
rq_send(const ctl *c, const rq_args *ra, loom_saga_op op)
{
    char err[1024];
    loom_store *s = ctl_store_open(c, LOOM_MIGRATE_CHECK);
    loom_err rc;

    if (s == NULL)
        return CTL_ERR;
    rc = loom_saga_request(s, ra->id, op, ra->who, err, sizeof err);
    /* An argument the library refused before asking the database (a
     * --by too long) is the command line's fault. */
    if (rc == LOOM_EINVAL && loom_store_sqlstate(s)[0] == '\0') {
        loom_store_close(s);
        return ctl_usage_error(c, "%s", err);
    }
    if (rc != LOOM_OK)
        ctl_fail_sql(loom_store_sqlstate(s), "saga %s: %s", c->sub,
                     err[0] ? err : loom_strerror(rc));
    loom_store_close(s);
    return rc == LOOM_OK ? CTL_OK : CTL_ERR;
}

static PGresult *
rq_read(PGconn *pg, const char *id)
{
    const char *params[1] = {id};

    return ctl_pg_exec(pg, "reading the saga", rq_state_sql, 1, params);
}

/* "COMPENSATION_FAILED at step 1 ReserveInventory, attempt 5" */
static void
rq_describe(loom__buf *b, const PGresult *r)
{
    loom__buf step = LOOM__BUF_INIT;

    loom__buf_reset(b);
    loom__buf_printf(b, "%s at step %s %s, attempt %s",
                     PQgetvalue(r, 0, RS_STATE), PQgetvalue(r, 0, RS_STEP),
                     ctl_saga_step(&step, r, 0, RS_STEP, RS_STEP_NAME),
                     PQgetvalue(r, 0, RS_ATTEMPT));
    loom__buf_free(&step);
}

static long long
rq_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Polls until the request is no longer pending: *r is then the saga's
 * row (NULL after a failed query or when the saga went away). Returns 1
 * applied, 0 timed out, -1 failed (reported). */
static int
rq_wait(const ctl *c, PGconn *pg, const rq_args *ra, PGresult **r)
{
    long long deadline = rq_now_ms() + ra->wait * 1000;

    for (;;) {
        *r = rq_read(pg, ra->id);
        if (*r == NULL)
            return -1;
        if (PQntuples(*r) == 0) {
            PQclear(*r);
            *r = NULL;
            ctl_saga_not_found(c, ra->id);
            return -1;
        }
        if (PQgetisnull(*r, 0, RS_PENDING_OP))
            return 1;
        if (rq_now_ms() >= deadline)
            return 0;
        PQclear(*r);
        nanosleep(&(struct timespec){0, RQ_POLL_MS * 1000000L}, NULL);
    }
}

static int
rq_print_json(const rq_args *ra, loom_saga_op op, const PGresult *before,
              const PGresult *after, int applied)
{
    loom__buf b = LOOM__BUF_INIT;
    int rc;

    loom__buf_putc(&b, '{');
    ctl_json_kstr(&b, "id", ra->id);
    ctl_json_kstr(&b, "op", rq_op_name(op));
    ctl_json_kstr(&b, "by", ra->who);
    ctl_json_kstr(&b, "state", PQgetvalue(before, 0, RS_STATE));
    ctl_json_kraw(&b, "applied",
                  ra->wait == 0 ? NULL
                  : applied     ? "true"
                                : "false");
    ctl_json_kstr(&b, "new_state",
                  applied ? PQgetvalue(after, 0, RS_STATE) : NULL);
    ctl_json_kraw(&b, "new_step",
                  applied ? PQgetvalue(after, 0, RS_STEP) : NULL);
    ctl_json_kraw(&b, "new_attempt",
                  applied ? PQgetvalue(after, 0, RS_ATTEMPT) : NULL);
    loom__buf_putc(&b, '}');
    rc = ctl_topics_json_out(&b, "the request");
    loom__buf_free(&b);
    return rc;
}

/* `s` as one shell word, for a command line the operator may paste: as
 * it is when every character is plain, else in single quotes (a quote
 * inside as '\''), so a saga id like "a b;$(x)" runs nothing. */
static void
rq_shell_word(loom__buf *out, const char *s)
{
    static const char plain[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOP"
                                "QRSTUVWXYZ0123456789._-:/@%+=,";

    if (s[0] != '\0' && strspn(s, plain) == strlen(s)) {
        loom__buf_puts(out, s);
        return;
    }
    loom__buf_putc(out, '\'');
    for (; *s != '\0'; s++) {
        if (*s == '\'')
            loom__buf_puts(out, "'\\''");
        else
            loom__buf_putc(out, *s);
    }
    loom__buf_putc(out, '\'');
}

/* After the request: what it will do, and, with --wait, what it did. */
static int
rq_report(const ctl *c, PGconn *pg, const rq_args *ra, loom_saga_op op,
          const PGresult *before)
{
    loom__buf what = LOOM__BUF_INIT, id = LOOM__BUF_INIT, word = LOOM__BUF_INIT;
    PGresult *after = NULL;
    int applied = 0, rc = CTL_OK;

    rq_describe(&what, before);
    ctl_topics_shown(&id, ra->id);
    rq_shell_word(&word, loom__buf_str(&id));
    if (!c->json)
        printf("requested: %s saga %s (%s), by %s\n", rq_op_name(op),
               loom__buf_str(&id), loom__buf_str(&what), ra->who);
    if (ra->wait > 0) {
        applied = rq_wait(c, pg, ra, &after);
        if (applied < 0)
            rc = CTL_ERR;
    } else if (!c->json) {
        printf("a running orchestrator for %s applies it, usually at once; "
               "`loomctl saga show %s` shows the outcome\n",
               PQgetvalue(before, 0, RS_TYPE), loom__buf_str(&word));
    }
    if (rc == CTL_OK && c->json)
        rc = rq_print_json(ra, op, before, after, applied);
    if (rc == CTL_OK && applied) {
        rq_describe(&what, after);
        if (!c->json)
            printf("applied: saga %s is %s\n", loom__buf_str(&id),
                   loom__buf_str(&what));
    } else if (rc == CTL_OK && ra->wait > 0) {
        ctl_fail("saga %s: no orchestrator applied the request within %" PRId64
                 " s: is one running for %s? The request stays pending "
                 "until one does (`loomctl saga show %s`)",
                 c->sub, ra->wait, PQgetvalue(before, 0, RS_TYPE),
                 loom__buf_str(&word));
        rc = CTL_ERR;
    }
    PQclear(after);
    loom__buf_free(&what);
    loom__buf_free(&id);
    loom__buf_free(&word);
    return rc;
}

int
ctl_saga_request(ctl *c, int argc, char **argv, loom_saga_op op)
{
    PGresult *before = NULL;
    PGconn *pg;
    rq_args ra;
    int rc = rq_parse(c, argc, argv, &ra);

    if (rc != CTL_OK)
        return rc;
    /* The state is read before the request, which a fast orchestrator
     * may apply at once. A saga that does not exist is left to the
     * request to report, as a program calling it would see. */
    if ((pg = ctl_pg_open(c)) == NULL)
        return CTL_ERR;
    if ((before = rq_read(pg, ra.id)) == NULL)
        rc = CTL_ERR;
    if (rc == CTL_OK)
        rc = rq_send(c, &ra, op);
    /* Created between the two statements: read it now. */
    if (rc == CTL_OK && PQntuples(before) == 0) {
        PQclear(before);
        if ((before = rq_read(pg, ra.id)) == NULL)
            rc = CTL_ERR;
        else if (PQntuples(before) == 0)
            rc = ctl_saga_not_found(c, ra.id);
    }
    if (rc == CTL_OK)
        rc = rq_report(c, pg, &ra, op, before);
    PQclear(before);
    PQfinish(pg);
    return rc;
}
