/*
 * loomctl projection rebuild NAME --plugin LIB.so [--restart] [--batch N]:
 * runs loom_projection_rebuild() (loom/projection.h) with the handlers of
 * the projection's own code, loaded from a shared object that exports
 * loom_projections().
 *
 * The rebuild replays every event into "<schema>__rebuild" while the
 * live runner goes on serving the old model, then swaps the two. SIGINT
 * and SIGTERM only set the stop flag the rebuild polls between batches,
 * so a batch in flight commits (or rolls back) whole and the next run
 * resumes after it; the handler resets itself, so a second signal ends
 * the process at once, which is just as safe: the batch's transaction
 * rolls back. Exit 130 says "stopped, resumable" to scripts.
 */
#include <dlfcn.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "json.h"
#include "loom/alloc.h"
#include "proj.h"
#include "stats.h"

#define RB_EXIT_STOPPED 130     /* 128 + SIGINT, as a shell reports Ctrl-C */
#define RB_MAX_BATCH    1000000 /* the library's limit */

enum { RB_PLUGIN = 1, RB_RESTART, RB_BATCH };

static const ctl_opt rb_opts[] = {
    {"--plugin", 1, RB_PLUGIN},
    {"--restart", 0, RB_RESTART},
    {"--batch", 1, RB_BATCH},
    {NULL, 0, 0},
};

typedef struct rb_args {
    const char *name;
    const char *plugin;
    int restart;
    int64_t batch; /* 0: the library's default */
} rb_args;

/* The stop flag polled by the rebuild (opt.stop is a const volatile int
 * pointer; on the platforms loomctl builds on sig_atomic_t is int, and
 * the compiler rejects the assignment below if it is not). */
static volatile sig_atomic_t rb_stop;

/* Said at once, from the handler (write() is async-signal-safe): the
 * batch in flight can take a while. The newline ends a progress bar. */
static const char rb_stopping[] =
    "\nstopping after the batch in flight (interrupt again to quit at "
    "once; running the command again resumes either way)\n";
static int rb_tty;

static void
rb_on_signal(int sig)
{
    /* Without a bar to end, without the first newline. */
    size_t skip = rb_tty ? 0 : 1;
    ssize_t n;

    (void) sig;
    rb_stop = 1;
    n = write(STDERR_FILENO, rb_stopping + skip, sizeof rb_stopping - 1 - skip);
    (void) n; /* nothing to do about a failed write here */
}

static void
rb_signals(int tty)
{
    struct sigaction sa;

    rb_tty = tty;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = rb_on_signal;
    sa.sa_flags = SA_RESETHAND; /* the second one is not caught */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static int
rb_parse(ctl *c, int argc, char **argv, rb_args *ra)
{
    const char *val;
    ctl_args a;
    int opt, rc = CTL_OK;

    memset(ra, 0, sizeof *ra);
    ctl_args_init(&a, argc, argv);
    while (rc == CTL_OK &&
           (opt = ctl_args_next(c, &a, rb_opts, &val)) != CTL_ARG_END) {
        if (opt == CTL_ARG_BAD)
            return CTL_USAGE;
        if (opt == RB_PLUGIN && val[0] == '\0')
            return ctl_usage_error(c, "--plugin needs the path of a shared "
                                      "object");
        if (opt == RB_PLUGIN)
            ra->plugin = val;
        else if (opt == RB_RESTART)
            ra->restart = 1;
        else if (opt == RB_BATCH)
            rc = ctl_parse_i64(c, "--batch", val, 1, RB_MAX_BATCH, &ra->batch);
        else if (ra->name != NULL)
            return ctl_usage_error(c, "unexpected argument \"%s\"", val);
        else
            ra->name = val;
    }
    if (rc != CTL_OK)
        return rc;
    if (ra->name == NULL)
        return ctl_usage_error(c, "give the projection's NAME");
    if (ra->plugin == NULL)
        return ctl_usage_error(c, "--plugin LIB.so is required: the shared "
                                  "object with the projection's handlers");
    return CTL_OK;
}

/* ------------------------------------------------------------------ */
/* The plugin                                                          */

/* "a, b, c" into out: what the plugin offers instead. */
static void
rb_names(const loom_projection_def *const *defs, size_t n, char *out,
         size_t len)
{
    size_t used = 0;

    out[0] = '\0';
    for (size_t i = 0; i < n && used < len; i++) {
        const char *name = defs[i] != NULL && defs[i]->name != NULL
                               ? defs[i]->name
                               : "(unnamed)";
        used += (size_t) snprintf(out + used, len - used, "%s%s",
                                  i > 0 ? ", " : "", name);
    }
}

/* Loads the plugin and finds projection `name` in it. The handle stays
 * open for the rest of the process (*dl, closed by the caller). */
static const loom_projection_def *
rb_load(const rb_args *ra, void **dl)
{
    const loom_projection_def *const *defs;
    loom_projections_fn fn;
    char path[4096], names[1024];
    size_t n = 0;
    void *sym;

    /* dlopen() searches the library path for a bare name; the user
     * means a file. RTLD_NOW: a symbol the plugin lacks fails here, not
     * halfway through the replay. */
    snprintf(path, sizeof path, "%s%s",
             strchr(ra->plugin, '/') != NULL ? "" : "./", ra->plugin);
    *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (*dl == NULL) {
        ctl_fail("--plugin %s: cannot load it: %s", ra->plugin, dlerror());
        return NULL;
    }
    sym = dlsym(*dl, LOOM_PROJECTIONS_SYMBOL);
    if (sym == NULL) {
        ctl_fail("--plugin %s: it does not export %s() (see "
                 "loom/projection.h, \"Plugins\")",
                 ra->plugin, LOOM_PROJECTIONS_SYMBOL);
        return NULL;
    }
    /* POSIX guarantees that a data pointer from dlsym() converts to a
     * function pointer; ISO C does not, hence the memcpy. */
    memcpy(&fn, &sym, sizeof fn);
    defs = fn(&n);
    for (size_t i = 0; defs != NULL && i < n; i++) {
        if (defs[i] != NULL && defs[i]->name != NULL &&
            strcmp(defs[i]->name, ra->name) == 0)
            return defs[i];
    }
    rb_names(defs, defs != NULL ? n : 0, names, sizeof names);
    ctl_fail("--plugin %s has no projection \"%s\"; it has: %s", ra->plugin,
             ra->name, names[0] != '\0' ? names : "none");
    return NULL;
}

/* ------------------------------------------------------------------ */
/* The result                                                          */

/* What the rebuild left in loom.projections: the generation live now
 * and, after a stop, the events done. Progress reports come at most every
 * progress_ms, so the last one can be behind; the table is not. `done`
 * may be NULL. Both stay -1 when they cannot be read (reported). */
static void
rb_state(const ctl *c, const char *name, int64_t *gen, int64_t *done)
{
    const char *params[1] = {name};
    PGconn *pg = ctl_pg_open(c);
    PGresult *r;

    *gen = -1;
    if (done != NULL)
        *done = -1;
    if (pg == NULL)
        return;
    r = ctl_pg_exec(pg, "reading the rebuild's state",
                    "SELECT generation, rebuild_done FROM loom.projections "
                    "WHERE name = $1::text",
                    1, params);
    if (r != NULL && PQntuples(r) == 1) {
        *gen = ctl_stats_i64(r, 0, 0);
        if (done != NULL && !PQgetisnull(r, 0, 1))
            *done = ctl_stats_i64(r, 0, 1);
    }
    PQclear(r);
    PQfinish(pg);
}

static void
rb_print_done(const ctl *c, const char *name, const ctl_progress *p,
              double secs)
{
    int64_t gen;
    /* The library's rate covers this run only; done may include an
     * earlier, stopped run's events. */
    double rate = p->reported ? p->rate
                  : secs > 0  ? (double) p->done / secs
                              : 0;
    loom__buf b = LOOM__BUF_INIT;

    rb_state(c, name, &gen, NULL);
    if (!c->json) {
        printf("rebuilt %s: %" PRId64 " events in %.1f s (%.0f ev/s)", name,
               p->done, secs, rate);
        if (gen >= 0)
            printf("; generation %" PRId64 " is live", gen);
        printf("\n");
        return;
    }
    loom__buf_putc(&b, '{');
    ctl_json_kstr(&b, "projection", name);
    ctl_json_ki64(&b, "events", p->done);
    ctl_json_key(&b, "seconds");
    loom__buf_printf(&b, "%.3f", secs);
    ctl_json_key(&b, "events_per_second");
    loom__buf_printf(&b, "%.0f", rate);
    ctl_json_key(&b, "generation");
    if (gen >= 0)
        loom__buf_printf(&b, "%" PRId64, gen);
    else
        loom__buf_puts(&b, "null");
    loom__buf_puts(&b, "}\n");
    if (!b.failed)
        fputs(b.data, stdout);
    loom__buf_free(&b);
}

/* The rebuild creates schema <schema>__rebuild and renames it into place
 * (CREATE on the database) and records its progress in loom.projections.
 * The library reports a refusal without its SQLSTATE, so the role
 * (--role, or the login's) is checked first, to say what it lacks. */
static int
rb_check_rights(const ctl *c, const char *name)
{
    PGconn *pg = ctl_pg_open(c);
    PGresult *r;
    int ok;

    if (pg == NULL)
        return CTL_ERR;
    r = ctl_pg_exec(pg, "checking the rebuild's rights",
                    "SELECT pg_catalog.has_database_privilege("
                    "pg_catalog.current_database(), 'CREATE') AND "
                    "pg_catalog.has_table_privilege('loom.projections', "
                    "'UPDATE'), current_user",
                    0, NULL);
    if (r == NULL) {
        PQfinish(pg);
        return CTL_ERR;
    }
    ok = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    if (!ok)
        ctl_fail_sql("42501",
                     "projection rebuild: role \"%s\" may not rebuild \"%s\": "
                     "it needs CREATE on database \"%s\" and UPDATE on "
                     "loom.projections",
                     PQgetvalue(r, 0, 1), name, PQdb(pg));
    PQclear(r);
    PQfinish(pg);
    return ok ? CTL_OK : CTL_ERR;
}

static int
rb_run(const ctl *c, const rb_args *ra, const loom_projection_def *def)
{
    loom_rebuild_options opt = LOOM_REBUILD_OPTIONS_INIT;
    ctl_progress p;
    char err[1024] = "", *conninfo;
    double t0;
    loom_err rc;

    /* The rebuild opens its connections from the string alone: --role
     * must be in it, or they would have the login's full rights. */
    if (rb_check_rights(c, ra->name) != CTL_OK ||
        ctl_conninfo_with_role(ctl_conninfo(c), c->role, &conninfo) != CTL_OK)
        return CTL_ERR;
    ctl_progress_init(&p, ra->name);
    opt.conninfo = conninfo;
    opt.batch = (size_t) ra->batch;
    opt.restart = ra->restart;
    opt.stop = &rb_stop;
    opt.progress = ctl_progress_report;
    opt.progress_arg = &p;
    opt.progress_ms = p.tty ? 200 : 1000;
    rb_signals(p.tty);
    t0 = ctl_progress_now();
    rc = loom_projection_rebuild(def, &opt, err, sizeof err);
    loom_free(conninfo);
    ctl_progress_end(&p);
    if (rc == LOOM_EAGAIN) {
        int64_t gen, done;
        rb_state(c, ra->name, &gen, &done);
        fflush(stdout);
        fprintf(stderr,
                "rebuild of %s stopped at %" PRId64 " events; run the same "
                "command again to resume (or --restart)\n",
                ra->name, done >= 0 ? done : p.done);
        return RB_EXIT_STOPPED;
    }
    if (rc != LOOM_OK) {
        /* The library's message names the projection and the cause. */
        if (err[0] != '\0')
            ctl_fail("%s", err);
        else
            ctl_fail("rebuilding projection \"%s\": %s", ra->name,
                     loom_strerror(rc));
        return CTL_ERR;
    }
    rb_print_done(c, ra->name, &p, ctl_progress_now() - t0);
    return CTL_OK;
}

int
ctl_proj_rebuild(ctl *c, int argc, char **argv)
{
    const loom_projection_def *def;
    void *dl = NULL;
    rb_args ra;
    int rc = rb_parse(c, argc, argv, &ra);

    if (rc != CTL_OK)
        return rc;
    def = rb_load(&ra, &dl);
    if (def == NULL) {
        rc = CTL_ERR;
    } else if (def->schema == NULL) {
        ctl_fail("projection \"%s\" keeps its read model in memory: its "
                 "runner replays every event on each start, so there is "
                 "nothing to rebuild",
                 ra.name);
        rc = CTL_ERR;
    } else {
        rc = rb_run(c, &ra, def);
    }
    if (dl != NULL)
        dlclose(dl);
    return rc;
}
