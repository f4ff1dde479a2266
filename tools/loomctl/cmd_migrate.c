/*
 * loomctl migrate [--status]: applies the migrations embedded in the
 * library (loom_store_migrate() takes the advisory lock, so two operators
 * running it at once is safe) or only reports the versions.
 */
#include <stdio.h>
#include <time.h>

#include "json.h"
#include "loomctl.h"

enum { MIG_STATUS = 1 };

static const ctl_opt mig_opts[] = {
    {"--status", 0, MIG_STATUS},
    {NULL, 0, 0},
};

/* Progress state shared with the callback. */
typedef struct mig_progress {
    int quiet;     /* --json: no progress lines */
    int open_line; /* "applying ..." printed without its end */
    struct timespec started;
} mig_progress;

static double
mig_ms_since(const struct timespec *t0)
{
    struct timespec t1;

    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double) (t1.tv_sec - t0->tv_sec) * 1e3 +
           (double) (t1.tv_nsec - t0->tv_nsec) / 1e6;
}

static void
mig_progress_cb(int version, const char *name, int done, void *arg)
{
    mig_progress *p = arg;

    (void) version;
    if (p->quiet)
        return;
    if (!done) {
        clock_gettime(CLOCK_MONOTONIC, &p->started);
        printf("applying %s ... ", name);
        fflush(stdout); /* a long migration shows what it is doing */
        p->open_line = 1;
        return;
    }
    printf("done (%.0f ms)\n", mig_ms_since(&p->started));
    p->open_line = 0;
}

static int
mig_status(ctl *c, loom_store *s)
{
    int applied = 0, latest = 0;
    loom_err rc = loom_store_schema_version(s, &applied, &latest);
    loom__buf b = LOOM__BUF_INIT;

    if (rc != LOOM_OK) {
        ctl_fail_sql(loom_store_sqlstate(s), "reading the schema version: %s",
                     loom_store_errmsg(s));
        return CTL_ERR;
    }
    if (c->json) {
        loom__buf_putc(&b, '{');
        ctl_json_ki64(&b, "version", applied);
        ctl_json_ki64(&b, "latest", latest);
        ctl_json_ki64(&b, "pending", latest > applied ? latest - applied : 0);
        loom__buf_puts(&b, "}\n");
        fputs(loom__buf_str(&b), stdout);
        loom__buf_free(&b);
    } else if (applied < latest) {
        printf("schema is at version %d, latest is %d: run `loomctl "
               "migrate`\n",
               applied, latest);
    } else if (applied > latest) {
        printf("schema is at version %d, newer than this loomctl knows "
               "(%d): upgrade loomctl\n",
               applied, latest);
    } else {
        printf("schema is up to date (version %d)\n", applied);
    }
    return CTL_OK;
}

static int
mig_apply(ctl *c, loom_store *s)
{
    mig_progress p = {c->json, 0, {0, 0}};
    int applied = 0, version = 0;
    loom_err rc;

    rc = loom_store_migrate(s, mig_progress_cb, &p, &applied);
    if (p.open_line)
        printf("failed\n");
    if (rc != LOOM_OK) {
        ctl_fail_sql(loom_store_sqlstate(s), "applying migrations: %s",
                     loom_store_errmsg(s));
        return CTL_ERR;
    }
    rc = loom_store_schema_version(s, &version, NULL);
    if (rc != LOOM_OK) {
        ctl_fail_sql(loom_store_sqlstate(s), "reading the schema version: %s",
                     loom_store_errmsg(s));
        return CTL_ERR;
    }
    if (c->json)
        printf("{\"applied\":%d,\"version\":%d}\n", applied, version);
    else if (applied > 0)
        printf("schema is at version %d\n", version);
    else
        printf("schema is up to date (version %d)\n", version);
    return CTL_OK;
}

int
ctl_cmd_migrate(ctl *c, int argc, char **argv)
{
    int status = 0, r, rc;
    const char *val;
    loom_store *s;
    ctl_args a;

    ctl_args_init(&a, argc, argv);
    while ((r = ctl_args_next(c, &a, mig_opts, &val)) != CTL_ARG_END) {
        if (r == CTL_ARG_BAD)
            return CTL_USAGE;
        if (r == CTL_ARG_POS)
            return ctl_usage_error(c, "unexpected argument \"%s\"", val);
        status = 1;
    }
    s = ctl_store_open(c, LOOM_MIGRATE_SKIP);
    if (s == NULL)
        return CTL_ERR;
    rc = status ? mig_status(c, s) : mig_apply(c, s);
    loom_store_close(s);
    return rc;
}
