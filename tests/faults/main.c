/*
 * loom-faults: see faults.h. Usually run by scripts/faults.sh (`make
 * faults`, and a short run in `make test`), which starts the database
 * and the transport's server it may restart.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "faults.h"

static int64_t fl_t0;

uint64_t
fl_rand(fl_rng *r)
{
    uint64_t z = (r->s += UINT64_C(0x9e3779b97f4a7c15));

    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

uint64_t
fl_below(fl_rng *r, uint64_t n)
{
    return n == 0 ? 0 : fl_rand(r) % n;
}

int64_t
fl_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
fl_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long) (ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

int64_t
fl_elapsed_ms(void)
{
    return fl_now_ms() - fl_t0;
}

void
fl_say(const char *fmt, ...)
{
    va_list ap;

    printf("[%6.1f s] ", (double) fl_elapsed_ms() / 1000);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

static void
usage(void)
{
    fprintf(stderr,
            "usage: loom-faults --demo PATH --pg-dir DIR --scripts DIR "
            "--log FILE\n"
            "         [--sagas N] [--kills K] [--pg-restarts R] "
            "[--terminations T]\n"
            "         [--seed S] [--rate N] [--backlog N] [--drain-s S]\n"
            "         [--transport URL] [--nats-dir DIR] [--nats-restarts N]\n"
            "         [--sabotage]   (damage the database before checking: "
            "the checks' test)\n"
            "The database is $LOOM_DATABASE_URL, migrated, in the cluster "
            "of --pg-dir\n(which the campaign crashes and starts again); "
            "scripts/faults.sh sets this up.\n");
}

static int
number(const char *s, long lo, long hi, long *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int
parse(int argc, char **argv, fl_opts *o)
{
    static const struct option longs[] = {
        {"sagas", 1, NULL, 's'},         {"kills", 1, NULL, 'k'},
        {"pg-restarts", 1, NULL, 'r'},   {"terminations", 1, NULL, 't'},
        {"nats-restarts", 1, NULL, 'n'}, {"seed", 1, NULL, 'S'},
        {"rate", 1, NULL, 'R'},          {"backlog", 1, NULL, 'b'},
        {"drain-s", 1, NULL, 'd'},       {"demo", 1, NULL, 'D'},
        {"pg-dir", 1, NULL, 'p'},        {"nats-dir", 1, NULL, 'N'},
        {"scripts", 1, NULL, 'x'},       {"transport", 1, NULL, 'T'},
        {"log", 1, NULL, 'l'},           {"sabotage", 0, NULL, 'X'},
        {"help", 0, NULL, 'h'},          {NULL, 0, NULL, 0}};
    int c;
    long v;

    while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case 's':
            bad = number(optarg, 1, 1000000, &o->sagas);
            break;
        case 'k':
            bad = number(optarg, 0, 100000, &v);
            o->kills = (int) v;
            break;
        case 'r':
            bad = number(optarg, 0, 100, &v);
            o->pg_restarts = (int) v;
            break;
        case 't':
            bad = number(optarg, 0, 10000, &v);
            o->terminations = (int) v;
            break;
        case 'n':
            bad = number(optarg, 0, 100, &v);
            o->nats_restarts = (int) v;
            break;
        case 'S': {
            char *end;
            errno = 0;
            o->seed = strtoull(optarg, &end, 10);
            bad = errno != 0 || end == optarg || *end != '\0';
            break;
        }
        case 'R':
            bad = number(optarg, 1, 100000, &v);
            o->rate = (int) v;
            break;
        case 'b':
            bad = number(optarg, 1, 1000000, &v);
            o->backlog = (int) v;
            break;
        case 'd':
            bad = number(optarg, 1, 86400, &v);
            o->drain_s = (int) v;
            break;
        case 'D':
            o->demo = optarg;
            break;
        case 'p':
            o->pg_dir = optarg;
            break;
        case 'N':
            o->nats_dir = optarg;
            break;
        case 'x':
            o->scripts = optarg;
            break;
        case 'T':
            o->transport = optarg;
            break;
        case 'l':
            o->log = optarg;
            break;
        case 'X':
            o->sabotage = 1;
            break;
        default:
            usage();
            return -1;
        }
        if (bad) {
            const char *name = "?";
            for (size_t i = 0; longs[i].name != NULL; i++)
                if (longs[i].val == c)
                    name = longs[i].name;
            fprintf(stderr, "loom-faults: bad value for --%s: %s\n", name,
                    optarg);
            usage();
            return -1;
        }
    }
    if (optind != argc || o->demo == NULL || o->pg_dir == NULL ||
        o->scripts == NULL || o->log == NULL) {
        usage();
        return -1;
    }
    if (o->conninfo == NULL || o->conninfo[0] == '\0') {
        fprintf(stderr, "loom-faults: set LOOM_DATABASE_URL to the "
                        "database of the cluster in --pg-dir\n");
        return -1;
    }
    if (strncmp(o->transport, "nats:", 5) == 0 && o->nats_dir == NULL &&
        o->nats_restarts > 0) {
        fprintf(stderr, "loom-faults: --transport nats:// restarts the "
                        "server: give its --nats-dir (or --nats-restarts 0)\n");
        return -1;
    }
    if (strncmp(o->transport, "nats:", 5) != 0)
        o->nats_dir = NULL; /* no transport server to restart */
    return 0;
}

static void
report(const fl_opts *o, const fl_inflicted *in, const fl_verdict *v,
       long placed, long retried, long retried_committed, int exits,
       double load_s, double total_s)
{
    printf("\nFault campaign: seed %llu, transport %s, %.0f s (%.0f s of "
           "load)\n",
           (unsigned long long) o->seed, o->transport, total_s, load_s);
    printf("  %-44s %ld (%ld completed, %ld compensated)\n", "sagas placed",
           placed, v->completed, v->compensated);
    printf("  %-44s %d:", "processes killed (SIGKILL)", in->kills_total);
    for (int r = 0; r < FL_N_ROLES; r++)
        printf(" %s %d", fl_role_names[r], in->kills[r]);
    printf("\n  %-44s %d\n", "PostgreSQL crashed and restarted",
           in->pg_restarts);
    printf("  %-44s %ld in %d rounds\n",
           "connections cut (pg_terminate_backend)", in->terminated,
           in->terminations);
    if (o->nats_dir != NULL)
        printf("  %-44s %d\n", "nats-server restarts", in->nats_restarts);
    printf("  %-44s %d\n", "processes that exited on their own", exits);
    printf("  %-44s %ld (%ld had committed)\n", "order placements retried",
           retried, retried_committed);
    printf("  %-44s %ld messages, %ld events\n", "written", v->messages,
           v->events);
    printf("\n  %-44s %s\n", "CHECK", "FOUND");
    printf("  %-44s %ld\n", "sagas not COMPLETED or COMPENSATED", v->stuck);
    printf("  %-44s %ld\n", "placed orders without saga or OrderPlaced",
           v->lost_orders);
    printf("  %-44s %ld\n", "outbox messages never in an inbox",
           v->lost_messages);
    printf("  %-44s %ld\n", "effects missing", v->lost_effects);
    printf("  %-44s %ld\n", "streams with a version gap", v->gaps);
    printf("  %-44s %ld\n", "effects duplicated", v->dup_effects);
    printf("  %-44s %ld\n", "sagas nobody placed", v->phantoms);
    printf("  %-44s %ld\n", "read-model rows unequal to a fresh replay",
           v->model_diff);
    printf("  %-44s %ld\n", "read-model statuses unequal to the saga's",
           v->model_status);
    printf("  %-44s %ld\n", "SKUs whose replay disagrees with the sagas",
           v->stock_diff);
    printf("  %-44s %ld\n", "accounts over their limit", v->credit_over);
    printf("\nFAULTS sagas=%ld kills=%d pg_restarts=%d lost=%ld "
           "duplicated=%ld stuck=%ld replay_mismatch=%ld\n",
           placed, in->kills_total, in->pg_restarts, v->lost, v->duplicated,
           v->stuck, v->replay_mismatch);
    fflush(stdout);
}

int
main(int argc, char **argv)
{
    fl_opts o = {0};
    fl_rng rng;
    fl_load *load = NULL;
    fl_fleet *fleet = NULL;
    fl_chaos *chaos = NULL;
    fl_inflicted in;
    fl_verdict v;
    PGconn *pg = NULL;
    long placed = 0, in_flight = 0, retried, retried_committed, left;
    int64_t next_count = 0, next_say, load_end;
    int rc = 2, exits, crashes, unclean;

    fl_t0 = fl_now_ms();
    o.sagas = 10000;
    o.kills = 50;
    o.pg_restarts = 2;
    o.terminations = 10;
    o.nats_restarts = 2;
    o.rate = 250;
    o.backlog = 2000;
    o.drain_s = 300;
    o.transport = "topics://";
    o.seed = (uint64_t) time(NULL);
    o.conninfo = getenv("LOOM_DATABASE_URL");
    if (parse(argc, argv, &o) != 0)
        return 2;
    rng.s = o.seed;
    fl_say("fault campaign, seed %llu: %ld sagas at %d/s, %d kills, %d "
           "PostgreSQL restarts, %d rounds of pg_terminate_backend%s",
           (unsigned long long) o.seed, o.sagas, o.rate, o.kills, o.pg_restarts,
           o.terminations, o.nats_dir ? ", nats-server restarts" : "");
    if (fl_pg_usable(&pg, o.conninfo) != 0) {
        fprintf(stderr, "loom-faults: %s", PQerrorMessage(pg));
        goto out;
    }
    if ((load = fl_load_open(&o, &rng)) == NULL || fl_audit_install(pg) != 0 ||
        (chaos = fl_chaos_plan(&o, &rng)) == NULL ||
        (fleet = fl_fleet_start(&o)) == NULL)
        goto out;
    fl_say("services up (one process per role, log %s); placing orders", o.log);
    next_say = fl_now_ms() + 5000;
    while (placed < o.sagas || fl_chaos_pending(chaos) > 0) {
        int64_t now = fl_now_ms();
        if (now >= next_count) {
            in_flight = fl_audit_in_flight(&pg, &o, fl_load_shop(load));
            next_count = now + 250;
        }
        placed = fl_load_step(load, in_flight);
        fl_chaos_step(chaos, placed, fleet);
        fl_fleet_tend(fleet);
        if (now >= next_say) {
            fl_chaos_done(chaos, &in);
            fl_say("placed %ld of %ld, %ld in flight; %d kills, %d "
                   "PostgreSQL restarts so far",
                   placed, o.sagas, in_flight, in.kills_total, in.pg_restarts);
            next_say = now + 5000;
        }
        fl_sleep_ms(10);
    }
    load_end = fl_now_ms();
    fl_say("all %ld orders placed and every fault inflicted; draining", placed);
    left = fl_audit_drain(&pg, &o, fl_load_shop(load), placed, fleet);
    if (left != 0)
        fl_say("%ld sagas still in flight after %d s", left, o.drain_s);
    fl_audit_settle(&pg, &o, fl_load_shop(load), placed);
    exits = fl_fleet_exits(fleet);
    crashes = fl_fleet_crashes(fleet);
    unclean = fl_fleet_stop(fleet);
    fleet = NULL;
    fl_say("services stopped; checking the database");
    if (o.sabotage && fl_audit_sabotage(&o, fl_load_shop(load)) != 0)
        goto out;
    if (fl_audit_run(&o, fl_load_shop(load), placed, &v) != 0) {
        fprintf(stderr, "loom-faults: the checks could not run\n");
        goto out;
    }
    fl_chaos_done(chaos, &in);
    fl_load_unknown(load, &retried, &retried_committed);
    report(&o, &in, &v, placed, retried, retried_committed, exits,
           (double) (load_end - fl_t0) / 1000,
           (double) (fl_now_ms() - fl_t0) / 1000);
    rc = v.lost == 0 && v.duplicated == 0 && v.stuck == 0 &&
                 v.replay_mismatch == 0
             ? 0
             : 1;
    /* A crash is a failure even when the data survived it. */
    if (crashes > 0 || unclean > 0) {
        fprintf(stderr,
                "loom-faults: %d processes crashed and %d did not stop "
                "cleanly; see %s\n",
                crashes, unclean, o.log);
        rc = 1;
    }
out:
    fl_fleet_stop(fleet);
    fl_chaos_free(chaos);
    fl_load_close(load);
    if (pg != NULL)
        PQfinish(pg);
    return rc;
}
