/*
 * The append cases: loom_store_append() against plain INSERTs of the same
 * rows, with the same batch size, connections and threads. Each case runs
 * `rounds` interleaved pairs of runs (loom first in even rounds, raw first
 * in odd ones, so a drifting machine favours neither) and reports the
 * median of each side.
 */
#include <stdio.h>
#include <string.h>

#include "bench.h"

typedef struct append_case {
    const char *name;
    size_t batch; /* events per transaction */
    int threads;  /* connections, each on its own streams */
} append_case;

static const append_case append_cases[] = {
    {"append_1x1", 1, 1},
    {"append_100x1", 100, 1},
    {"append_1x8", 1, 8},
};

#define APPEND_NCASES     (sizeof append_cases / sizeof append_cases[0])
#define APPEND_MAX_ROUNDS 15

/* Every run writes streams no earlier run used. */
static unsigned append_run;

static const char *const append_form_names[] = {"unnest", "values"};

/* Totals of one side of a case over its rounds. */
typedef struct append_side {
    double rate[APPEND_MAX_ROUNDS];
    bench_samples latency;
} append_side;

int
bench_append_has(const char *name)
{
    for (size_t i = 0; i < APPEND_NCASES; i++)
        if (strcmp(append_cases[i].name, name) == 0)
            return 1;
    return 0;
}

/* One timed run; *rate gets events/s. Latencies go to `lat` if given.
 * A run with `quiet` set prints nothing (a warm-up). */
static int
append_run_once(bench_env *env, const append_case *c, int raw,
                bench_raw_form form, double seconds, double *rate,
                bench_samples *lat, int quiet)
{
    bench_write_spec spec = {.env = env,
                             .raw = raw,
                             .form = form,
                             .batch = c->batch,
                             .threads = c->threads,
                             .seconds = seconds,
                             .run = ++append_run,
                             .label = c->name};
    bench_write_result res;
    int rc;

    bench_db_checkpoint(env);
    rc = bench_write(&spec, &res);
    if (atomic_load(&bench_stopped))
        rc = -1; /* a partial run is no result */
    *rate = res.seconds > 0 ? (double) res.events / res.seconds : 0.0;
    if (rc == 0 && lat != NULL && bench_samples_merge(lat, &res.latency))
        rc = -1;
    if (rc == 0 && !quiet)
        printf("  %s %s: %.0f events/s (%zu events in %.2f s), "
               "p50 %.3f ms, p99 %.3f ms per transaction\n",
               c->name, raw ? "raw " : "loom", *rate, res.events, res.seconds,
               bench_samples_ms(&res.latency, 0.50),
               bench_samples_ms(&res.latency, 0.99));
    bench_samples_free(&res.latency);
    return rc;
}

/* A fresh database and session pay once for catalog lookups, plan and
 * PL/pgSQL compilation, and cold indexes: keep that out of the figures. */
static int
append_warmup(bench_env *env, const bench_opts *o, const append_case *c)
{
    double rate, secs = o->seconds / 10 < 1.0 ? o->seconds / 10 : 1.0;

    for (int raw = 0; raw < 2; raw++) {
        bench_progress("%s: warming up %s (%.1f s)", c->name,
                       raw ? "raw" : "loom", secs);
        if (append_run_once(env, c, raw, BENCH_RAW_UNNEST, secs, &rate, NULL,
                            1) != 0)
            return -1;
    }
    return 0;
}

/* The faster of the two honest raw forms of a multi-row INSERT. */
static int
append_pick_form(bench_env *env, const bench_opts *o, const append_case *c,
                 bench_raw_form *form)
{
    double rate[2], probe = o->seconds / 5 > 1.0 ? o->seconds / 5 : 1.0;

    *form = BENCH_RAW_UNNEST;
    if (c->batch == 1)
        return 0; /* one row: a single-row INSERT ... VALUES */
    for (int f = 0; f < 2; f++) {
        bench_progress("%s: probing raw form %s (%.1f s)", c->name,
                       append_form_names[f], probe);
        if (append_run_once(env, c, 1, (bench_raw_form) f, probe, &rate[f],
                            NULL, 0) != 0)
            return -1;
    }
    *form = rate[1] > rate[0] ? BENCH_RAW_VALUES : BENCH_RAW_UNNEST;
    printf("  %s raw form: unnest %.0f events/s, multi-row VALUES %.0f "
           "events/s: baseline uses %s\n",
           c->name, rate[0], rate[1], append_form_names[*form]);
    return 0;
}

static int
append_round(bench_env *env, const bench_opts *o, const append_case *c, int r,
             bench_raw_form form, append_side side[2])
{
    double each = o->seconds / o->rounds;

    for (int i = 0; i < 2; i++) {
        int raw = (r % 2 == 0) ? i : 1 - i;
        bench_progress("%s: round %d/%d, %s (%.1f s)", c->name, r + 1,
                       o->rounds, raw ? "raw" : "loom", each);
        if (append_run_once(env, c, raw, form, each, &side[raw].rate[r],
                            &side[raw].latency, 0) != 0)
            return -1;
    }
    return 0;
}

static void
append_summary(const append_case *c, int rounds, append_side side[2],
               bench_raw_form form)
{
    double med[2];

    for (int raw = 0; raw < 2; raw++) {
        med[raw] = bench_median(side[raw].rate, rounds);
        printf("  %s %s: median %.0f events/s of %d runs; over all runs "
               "p50 %.3f ms, p99 %.3f ms per transaction%s%s\n",
               c->name, raw ? "raw " : "loom", med[raw], rounds,
               bench_samples_ms(&side[raw].latency, 0.50),
               bench_samples_ms(&side[raw].latency, 0.99),
               raw && c->batch > 1 ? ", form " : "",
               raw && c->batch > 1 ? append_form_names[form] : "");
    }
    bench_report(c->name, med[0], med[1]);
}

static const append_case *
append_find(const char *name)
{
    for (size_t i = 0; i < APPEND_NCASES; i++)
        if (strcmp(append_cases[i].name, name) == 0)
            return &append_cases[i];
    return NULL;
}

int
bench_append_case(bench_env *env, const bench_opts *o, const char *name)
{
    const append_case *c = append_find(name);
    append_side side[2];
    bench_raw_form form;
    int rc = 0;

    if (c == NULL || o->rounds < 1 || o->rounds > APPEND_MAX_ROUNDS)
        return -1;
    memset(side, 0, sizeof side);
    printf("%s: %zu event%s per transaction, %d connection%s, %d-byte "
           "payloads\n",
           c->name, c->batch, c->batch > 1 ? "s" : "", c->threads,
           c->threads > 1 ? "s" : "", BENCH_PAYLOAD_BYTES);
    rc = append_warmup(env, o, c);
    if (rc == 0)
        rc = append_pick_form(env, o, c, &form);
    for (int r = 0; rc == 0 && r < o->rounds; r++)
        rc = append_round(env, o, c, r, form, side);
    if (rc == 0)
        append_summary(c, o->rounds, side, form);
    bench_samples_free(&side[0].latency);
    bench_samples_free(&side[1].latency);
    return rc;
}
