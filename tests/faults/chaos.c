/*
 * The faults: a schedule drawn from the seed before the run (so a seed
 * names a campaign), each fault due once so many orders are placed, and
 * what inflicting each one means:
 *
 *   kill          SIGKILL of one service process, the roles in turn in
 *                 an order drawn from the seed; it is started again
 *                 after 50-500 ms (fleet.c)
 *   pg restart    PostgreSQL stopped in immediate mode (a crash: no
 *                 checkpoint, every connection cut), down 0.5-2 s, then
 *                 started, recovering from its WAL (scripts/pg.sh)
 *   terminate     pg_terminate_backend() of a random half of the
 *                 database's client connections
 *   nats restart  nats-server stopped and started again on its store
 *                 (scripts/nats.sh), nats:// only
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "faults.h"

struct fl_chaos {
    const fl_opts *o;
    fl_rng rng;
    fl_fault *f;
    size_t n, next;
    fl_inflicted done;
    PGconn *pg; /* for pg_terminate_backend */
};

static int
by_at(const void *a, const void *b)
{
    const fl_fault *x = a, *y = b;

    return x->at < y->at ? -1 : x->at > y->at;
}

fl_chaos *
fl_chaos_plan(const fl_opts *o, fl_rng *rng)
{
    fl_chaos *c = calloc(1, sizeof *c);
    size_t n = (size_t) o->kills + (size_t) o->pg_restarts +
               (size_t) o->terminations +
               (o->nats_dir ? (size_t) o->nats_restarts : 0);
    int order[FL_N_ROLES];
    long span = o->sagas * 9 / 10, from = o->sagas / 20;

    if (c == NULL)
        return NULL;
    c->o = o;
    c->rng.s = fl_rand(rng);
    c->f = calloc(n ? n : 1, sizeof *c->f);
    if (c->f == NULL) {
        free(c);
        return NULL;
    }
    for (int i = 0; i < FL_N_ROLES; i++)
        order[i] = i;
    for (int i = FL_N_ROLES - 1; i > 0; i--) {
        int j = (int) fl_below(rng, (uint64_t) i + 1), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (size_t i = 0; i < n; i++) {
        fl_fault *f = &c->f[i];
        size_t k = i;
        f->at = from + (long) fl_below(rng, (uint64_t) (span > 0 ? span : 1));
        if (k < (size_t) o->kills) {
            f->kind = FL_KILL;
            f->role = order[k % FL_N_ROLES];
        } else if ((k -= (size_t) o->kills) < (size_t) o->pg_restarts) {
            /* Restarts at even intervals, so each meets a loaded system. */
            f->kind = FL_PG_RESTART;
            f->at = from + span * (long) (k + 1) / (o->pg_restarts + 1);
        } else if ((k -= (size_t) o->pg_restarts) < (size_t) o->terminations) {
            f->kind = FL_TERMINATE;
        } else {
            f->kind = FL_NATS_RESTART;
        }
    }
    qsort(c->f, n, sizeof *c->f, by_at);
    c->n = n;
    return c;
}

/* Runs a scripts/ command, its output to the log. 0 on success. */
static int
script(const fl_chaos *c, const char *name, const char *cmd, const char *dir)
{
    char line[4096];

    snprintf(line, sizeof line, "'%s/%s' %s '%s' >>'%s' 2>&1", c->o->scripts,
             name, cmd, dir, c->o->log);
    return system(line) == 0 ? 0 : -1;
}

static void
pg_restart(fl_chaos *c)
{
    int down = 500 + (int) fl_below(&c->rng, 1500);
    int64_t t0 = fl_now_ms();

    fl_say("fault: PostgreSQL crashed (immediate shutdown), down for %d ms",
           down);
    if (script(c, "pg.sh", "crash", c->o->pg_dir) != 0)
        fl_say("scripts/pg.sh crash failed; see %s", c->o->log);
    fl_sleep_ms(down);
    for (int attempt = 1; script(c, "pg.sh", "start", c->o->pg_dir) != 0;
         attempt++) {
        fl_say("scripts/pg.sh start failed (attempt %d); see %s", attempt,
               c->o->log);
        if (attempt == 5) {
            fprintf(stderr, "loom-faults: PostgreSQL does not start again; "
                            "giving up\n");
            exit(2);
        }
        fl_sleep_ms(1000);
    }
    fl_say("PostgreSQL is back after %.1f s (crash recovery included)",
           (double) (fl_now_ms() - t0) / 1000);
    c->done.pg_restarts++;
}

static void
terminate(fl_chaos *c)
{
    PGresult *r;
    long n = 0;

    if (fl_pg_usable(&c->pg, c->o->conninfo) != 0) {
        fl_say("fault: pg_terminate_backend skipped: no connection");
        return;
    }
    r = PQexec(c->pg, "SELECT pid FROM pg_stat_activity WHERE datname = "
                      "current_database() AND pid <> pg_backend_pid() AND "
                      "backend_type = 'client backend' ORDER BY pid");
    if (PQresultStatus(r) == PGRES_TUPLES_OK) {
        for (int i = 0; i < PQntuples(r); i++) {
            const char *pid[1] = {PQgetvalue(r, i, 0)};
            PGresult *k;
            if (fl_below(&c->rng, 2) == 0)
                continue;
            k = PQexecParams(c->pg, "SELECT pg_terminate_backend($1::int)", 1,
                             NULL, pid, NULL, NULL, 0);
            n += PQresultStatus(k) == PGRES_TUPLES_OK &&
                 PQgetvalue(k, 0, 0)[0] == 't';
            PQclear(k);
        }
    }
    PQclear(r);
    fl_say("fault: pg_terminate_backend cut %ld connections", n);
    c->done.terminations++;
    c->done.terminated += n;
}

static void
nats_restart(fl_chaos *c)
{
    int down = 200 + (int) fl_below(&c->rng, 1300);

    fl_say("fault: nats-server stopped, down for %d ms", down);
    if (script(c, "nats.sh", "stop", c->o->nats_dir) != 0)
        fl_say("scripts/nats.sh stop failed; see %s", c->o->log);
    fl_sleep_ms(down);
    if (script(c, "nats.sh", "start", c->o->nats_dir) != 0) {
        fprintf(stderr,
                "loom-faults: nats-server does not start again; "
                "see %s\n",
                c->o->log);
        exit(2);
    }
    c->done.nats_restarts++;
}

void
fl_chaos_step(fl_chaos *c, long placed, fl_fleet *fleet)
{
    while (c->next < c->n && c->f[c->next].at <= placed) {
        const fl_fault *f = &c->f[c->next++];
        switch (f->kind) {
        case FL_KILL:
            fl_say("fault: SIGKILL the %s process", fl_role_names[f->role]);
            if (fl_fleet_kill(fleet, f->role, &c->rng) == 0) {
                c->done.kills[f->role]++;
                c->done.kills_total++;
            }
            break;
        case FL_PG_RESTART:
            pg_restart(c);
            break;
        case FL_TERMINATE:
            terminate(c);
            break;
        case FL_NATS_RESTART:
            nats_restart(c);
            break;
        }
        fl_fleet_tend(fleet);
    }
}

size_t
fl_chaos_pending(const fl_chaos *c)
{
    return c->n - c->next;
}

void
fl_chaos_done(const fl_chaos *c, fl_inflicted *out)
{
    *out = c->done;
}

void
fl_chaos_free(fl_chaos *c)
{
    if (c == NULL)
        return;
    if (c->pg != NULL)
        PQfinish(c->pg);
    free(c->f);
    free(c);
}
