/*
 * loom-bench: what Eventloom costs over plain libpq, measured.
 *
 *   loom-bench append  [--seconds S] [--rounds N] [--db URL]
 *   loom-bench read    [--events N] [--page N] [--rounds N] [--db URL]
 *   loom-bench rebuild [--events N] [--batch N] [--rounds N] [--db URL]
 *   loom-bench live    [--rate R] [--seconds S] [--rounds N] [--db URL]
 *   loom-bench topics  [--messages N] [--rate R] [--seconds S] [--db URL]
 *   loom-bench relay   [--rate R] [--seconds S] [--db URL]
 *   loom-bench saga    [--seconds S] [--warmup S] [--in-flight N | --rate R]
 *                      [--through-transport] [--db URL]
 *   loom-bench all     [any of the above]
 *   ... --case NAME   run only one case
 *   ... --malloc-default  keep glibc's heap trimming (see main_pin_malloc)
 *
 * Each throughput case prints detail lines and then exactly one line
 *   BENCH <case> loom=<events/s> raw=<events/s> ratio=<loom/raw>
 * and live, a latency case, prints
 *   BENCH live_raw p50_ms=<x> p99_ms=<y>
 *   BENCH live p50_ms=<x> p99_ms=<y> raw_p99_ms=<z> ratio=<y/z>
 * and topics, whose baseline is PgQ,
 *   BENCH topics produce loom=<msg/s> pgq=<msg/s> ratio=<loom/pgq>
 *   BENCH topics consume loom=<msg/s> pgq=<msg/s> ratio=<loom/pgq>
 *   BENCH topics latency p50_ms=<x> p99_ms=<y>
 * and relay, once per transport (topics; nats when $LOOM_BENCH_NATS_URL
 * names a server), whose baseline is raw libpq inserting the same rows,
 *   BENCH relay <transport> msgs_per_s=<n> ratio=<relay/raw> lag_p99_ms=<x>
 * and saga, three-step sagas end to end against raw libpq writing what a
 * hand-made orchestration writes,
 *   BENCH saga sagas_per_s=<n> p50_ms=<x> p99_ms=<y> tx_per_saga=<k>
 *              wal_bytes_per_saga=<w> ratio=<loom/raw>
 *              [offered_per_s=<r>, with --rate]
 * Progress goes to stderr. The exit status is 0 unless something failed
 * (a low ratio is a result, not an error), 2 for a usage error and 130
 * when interrupted.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"

#ifdef __GLIBC__
#include <malloc.h>
#endif

atomic_int bench_stopped;

typedef struct main_case {
    const char *name;
    const char *group; /* the command that runs it besides "all" */
} main_case;

static const main_case main_cases[] = {
    {"append_1x1", "append"}, {"append_100x1", "append"},
    {"append_1x8", "append"}, {"read_all", "read"},
    {"rebuild", "rebuild"},   {"live", "live"},
    {"topics", "topics"},     {"relay", "relay"},
    {"saga", "saga"},
};

#define MAIN_NCASES (sizeof main_cases / sizeof main_cases[0])

static void
main_usage(FILE *f)
{
    fprintf(f,
            "usage: %s append|read|rebuild|live|topics|relay|saga|all "
            "[options]\n"
            "  --seconds S   measured seconds per side of each append case "
            "and of\n"
            "                live, split over the rounds; topics: of its "
            "latency part;\n"
            "                relay: of each of its three runs; saga: of "
            "starting\n"
            "                sagas (default 10)\n"
            "  --events N    events loaded for read_all and rebuild (default "
            "1000000)\n"
            "  --page N      read_all page size (default 1000)\n"
            "  --batch N     rebuild batch and raw page size (default: the "
            "library's,\n"
            "                5000); topics: messages per loom consumer fetch "
            "(default:\n"
            "                the transport's)\n"
            "  --rate R      live: events appended per second, topics and "
            "relay:\n"
            "                messages published per second for latency "
            "(default 1000);\n"
            "                saga: sagas started per second on a fixed "
            "schedule (open\n"
            "                loop; latency counted from each saga's "
            "scheduled start)\n"
            "  --messages N  topics: messages produced and consumed (default "
            "1000000)\n"
            "  --in-flight N saga without --rate: most sagas unfinished at "
            "once, each\n"
            "                ended saga making room for the next (closed "
            "loop; default 256)\n"
            "  --warmup S    saga: seconds of starting sagas before the "
            "measured ones,\n"
            "                left out of the figures (default 2)\n"
            "  --rounds N    interleaved loom/raw rounds per case, median "
            "taken\n"
            "                (default 3, at most 15)\n"
            "  --case NAME   run only append_1x1, append_100x1, append_1x8, "
            "read_all,\n"
            "                rebuild, live, topics, relay or saga\n"
            "  --db URL      the server (default $LOOM_DATABASE_URL); a "
            "scratch\n"
            "                database loom_bench_<pid> is created on it and "
            "dropped\n"
            "  --malloc-default  leave glibc's malloc trimming on (see "
            "docs/benchmarks.md)\n"
            "  --through-transport  saga: the relay publishes through the "
            "topics\n"
            "                transport instead of inside the database "
            "(schema 13)\n",
            BENCH_PROGRAM);
}

/* A count such as 1000000, 1,000,000 or 1_000_000; 0 when invalid. */
static size_t
main_count(const char *s)
{
    size_t v = 0, digits = 0;

    for (; *s != '\0'; s++) {
        if (*s == ',' || *s == '_')
            continue;
        if (*s < '0' || *s > '9' || v > (SIZE_MAX - 9) / 10)
            return 0;
        v = v * 10 + (size_t) (*s - '0');
        digits++;
    }
    return digits > 0 ? v : 0;
}

/* Sets one option from `arg`; -1 for an unknown name or a bad value. */
static int
main_option(bench_opts *o, const char *name, const char *arg)
{
    char *end;

    if (strcmp(name, "--seconds") == 0) {
        o->seconds = strtod(arg, &end);
        return *end == '\0' && o->seconds >= 0.1 && o->seconds <= 86400 ? 0
                                                                        : -1;
    }
    if (strcmp(name, "--events") == 0)
        return (o->events = main_count(arg)) > 0 ? 0 : -1;
    if (strcmp(name, "--messages") == 0)
        return (o->messages = main_count(arg)) > 0 ? 0 : -1;
    if (strcmp(name, "--page") == 0)
        return (o->page = main_count(arg)) > 0 && o->page <= 1000000 ? 0 : -1;
    if (strcmp(name, "--batch") == 0)
        return (o->batch = main_count(arg)) > 0 && o->batch <= 1000000 ? 0 : -1;
    if (strcmp(name, "--rate") == 0) {
        o->rate = strtod(arg, &end);
        o->rate_given = 1;
        return *end == '\0' && o->rate >= 1 && o->rate <= 100000 ? 0 : -1;
    }
    if (strcmp(name, "--warmup") == 0) {
        o->warmup = strtod(arg, &end);
        return *end == '\0' && o->warmup >= 0 && o->warmup <= 3600 ? 0 : -1;
    }
    if (strcmp(name, "--in-flight") == 0)
        return (o->in_flight = main_count(arg)) > 0 && o->in_flight <= 100000
                   ? 0
                   : -1;
    if (strcmp(name, "--rounds") == 0) {
        size_t n = main_count(arg);
        o->rounds = (int) n;
        return n >= 1 && n <= 15 ? 0 : -1;
    }
    if (strcmp(name, "--case") == 0)
        o->only = arg;
    else if (strcmp(name, "--db") == 0)
        o->dsn = arg;
    else
        return -1;
    return 0;
}

/* Options as "--name value" or "--name=value", and two flags. */
static int
main_parse(bench_opts *o, int argc, char **argv)
{
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--malloc-default") == 0) {
            o->malloc_default = 1;
            continue;
        }
        if (strcmp(argv[i], "--through-transport") == 0) {
            o->through_transport = 1;
            continue;
        }
        char name[32];
        const char *eq = strchr(argv[i], '='), *arg;
        size_t len = eq ? (size_t) (eq - argv[i]) : strlen(argv[i]);

        if (len >= sizeof name)
            len = sizeof name - 1;
        memcpy(name, argv[i], len);
        name[len] = '\0';
        arg = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (arg == NULL || main_option(o, name, arg) != 0) {
            fprintf(stderr, "%s: bad option or value: %s\n", BENCH_PROGRAM,
                    argv[i]);
            return -1;
        }
    }
    return 0;
}

/* 1 when case `c` runs for `cmd` and --case. */
static int
main_selected(const main_case *c, const char *cmd, const bench_opts *o)
{
    if (o->only != NULL && strcmp(o->only, c->name) != 0)
        return 0;
    return strcmp(cmd, "all") == 0 || strcmp(cmd, c->group) == 0;
}

static int
main_check(const char *cmd, const bench_opts *o)
{
    size_t n = 0;

    static const char *const cmds[] = {"append", "read",  "rebuild", "live",
                                       "topics", "relay", "saga",    "all"};
    int known = 0;

    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        known |= strcmp(cmd, cmds[i]) == 0;
    if (!known) {
        fprintf(stderr, "%s: unknown command \"%s\"\n", BENCH_PROGRAM, cmd);
        return -1;
    }
    for (size_t i = 0; i < MAIN_NCASES; i++)
        n += (size_t) main_selected(&main_cases[i], cmd, o);
    if (n == 0) {
        fprintf(stderr, "%s: no case \"%s\" in \"%s\"\n", BENCH_PROGRAM,
                o->only, cmd);
        return -1;
    }
    return 0;
}

/*
 * glibc gives the top of the heap back to the kernel whenever more than
 * 128 KiB is free there, and every page of read results frees megabytes,
 * so each page faults its memory in again: up to 40% of a read's time, on
 * both sides, and varying with the heap's history (a read after the
 * append cases was 1.6 times as fast as a read alone). Keeping the memory
 * makes runs comparable; --malloc-default measures glibc's defaults.
 */
static void
main_pin_malloc(const bench_opts *o)
{
#ifdef __GLIBC__
    if (o->malloc_default) {
        printf("client: glibc malloc defaults (--malloc-default)\n");
        return;
    }
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    printf("client: glibc malloc keeps freed memory (trim threshold 256 "
           "MiB, mmap threshold 32 MiB)\n");
#else
    (void) o;
#endif
}

static void
main_on_signal(int sig)
{
    (void) sig;
    atomic_store(&bench_stopped, 1);
}

/* The first Ctrl-C stops the runs and drops the scratch database; a
 * second one (SA_RESETHAND) kills the process at once. */
static void
main_signals(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = main_on_signal;
    sa.sa_flags = (int) SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static void
main_banner(const char *cmd, const bench_opts *o)
{
    char when[32];
    time_t now = time(NULL);
    struct tm tm;

    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", gmtime_r(&now, &tm));
    printf("%s %s, %s: --seconds %g --rounds %d --events %zu --page %zu "
           "--batch %zu%s --rate %g --messages %zu --in-flight %zu "
           "--warmup %g%s\n",
           BENCH_PROGRAM, cmd, when, o->seconds, o->rounds, o->events, o->page,
           o->batch, o->batch ? "" : " (the library's)", o->rate, o->messages,
           o->in_flight, o->warmup,
           o->through_transport ? " --through-transport" : "");
    fflush(stdout);
}

static int
main_case_run(bench_env *env, const bench_opts *o, const char *name)
{
    if (bench_append_has(name))
        return bench_append_case(env, o, name);
    if (strcmp(name, "read_all") == 0)
        return bench_read_all(env, o);
    if (strcmp(name, "rebuild") == 0)
        return bench_rebuild(env, o);
    if (strcmp(name, "topics") == 0)
        return bench_topics(env, o);
    if (strcmp(name, "relay") == 0)
        return bench_relay(env, o);
    if (strcmp(name, "saga") == 0)
        return bench_saga(env, o);
    return bench_live(env, o);
}

static int
main_run(bench_env *env, const char *cmd, const bench_opts *o)
{
    for (size_t i = 0; i < MAIN_NCASES; i++) {
        const main_case *c = &main_cases[i];
        int rc;

        if (!main_selected(c, cmd, o))
            continue;
        rc = bench_db_fresh(env);
        if (rc == 0)
            rc = main_case_run(env, o, c->name);
        if (atomic_load(&bench_stopped)) {
            bench_progress("interrupted");
            return 130;
        }
        if (rc != 0) {
            fprintf(stderr, "%s: case %s failed\n", BENCH_PROGRAM, c->name);
            return 1;
        }
    }
    return 0;
}

int
main(int argc, char **argv)
{
    bench_opts o = {.dsn = getenv("LOOM_DATABASE_URL"),
                    .seconds = 10,
                    .events = 1000000,
                    .messages = 1000000,
                    .page = 1000,
                    .rate = 1000,
                    .rounds = 3,
                    .in_flight = 256,
                    .warmup = 2};
    bench_env env;
    int rc;

    if (argc >= 2 &&
        (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        main_usage(stdout);
        return 0;
    }
    if (argc < 2 || main_parse(&o, argc, argv) != 0 ||
        main_check(argv[1], &o) != 0) {
        main_usage(stderr);
        return 2;
    }
    atomic_init(&bench_stopped, 0);
    main_signals();
    memset(&env, 0, sizeof env);
    main_banner(argv[1], &o);
    main_pin_malloc(&o);
    rc = bench_db_setup(&env, o.dsn) == 0 ? main_run(&env, argv[1], &o) : 1;
    bench_db_teardown(&env);
    if (rc == 0 && !env.durable)
        bench_progress("WARNING: these figures were measured with fsync or "
                       "synchronous_commit off: NOT durable");
    return atomic_load(&bench_stopped) ? 130 : rc;
}
