/*
 * loom-bench internals: the options, the scratch database every case runs
 * in, the writers shared by the append cases and the loaders of the read
 * and rebuild cases, and the timing helpers.
 *
 * Every case compares Eventloom ("loom") with a plain libpq program
 * ("raw") that writes or reads the identical rows of a bare table with the
 * same columns and indexes (loom_bench.events), so the ratio loom/raw is
 * the price of the library and its SQL, not of PostgreSQL.
 */
#ifndef LOOM_BENCH_H
#define LOOM_BENCH_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "loom/eventstore.h"

#define BENCH_PROGRAM "loom-bench"

/* Options from the command line. */
typedef struct bench_opts {
    const char *dsn;    /* --db, else $LOOM_DATABASE_URL; NULL: libpq's */
    const char *only;   /* --case NAME, or NULL for every case of the group */
    double seconds;     /* measured time per side (loom, raw) per case */
    size_t events;      /* read_all, rebuild: events loaded */
    size_t page;        /* read_all: events per page */
    size_t batch;       /* rebuild: events per batch and raw page; 0: the
                           library's default (5,000) */
    size_t messages;    /* topics: messages produced and consumed */
    double rate;        /* live: events appended per second; topics:
                           messages per second of the latency part;
                           saga (only when rate_given): sagas started per
                           second, open loop */
    int rate_given;     /* --rate was on the command line */
    int rounds;         /* interleaved loom/raw rounds per case */
    size_t in_flight;   /* saga: most sagas unfinished at once */
    double warmup;      /* saga: seconds of starting before the measured
                           ones, left out of every figure */
    int malloc_default; /* --malloc-default: keep glibc heap trimming */
    int through_transport; /* saga: the relay publishes through the
                              transport, not inside the database */
} bench_opts;

/* The scratch database the cases run in; see bench_db.c. */
typedef struct bench_env {
    PGconn *admin;   /* the --db server and database, for CREATE/DROP */
    PGconn *scratch; /* the scratch database, for set-up statements */
    char dbname[64]; /* loom_bench_<pid> */
    char *conninfo;  /* --db with dbname replaced by the scratch one */
    int created;     /* the scratch database exists: drop it at the end */
    int shown;       /* the server settings have been printed */
    int durable;     /* fsync on and synchronous_commit not off */
} bench_env;

/* Set by SIGINT/SIGTERM: every loop stops at its next transaction. */
extern atomic_int bench_stopped;

/* ------------------------------------------------------------------ */
/* bench_db.c                                                          */

/* Connects with the same settings loom_store_open() uses. NULL on failure
 * after printing why. */
PGconn *bench_db_connect(const char *conninfo, const char *appname);

/* Runs one statement without parameters; 0 or -1 (the error printed). */
int bench_db_exec(PGconn *c, const char *sql);

/* Connects to the --db server and names the scratch database. 0 or -1
 * (printed). */
int bench_db_setup(bench_env *env, const char *dsn);

/* (Re)creates the scratch database, so each case starts from empty
 * tables: drops it if it exists, creates it, migrates it, creates the raw
 * table; the first time, prints the server and its settings. 0 or -1. */
int bench_db_fresh(bench_env *env);

/* Drops the scratch database (WITH FORCE) and closes everything. Safe to
 * call after a failed or partial set-up. */
void bench_db_teardown(bench_env *env);

/* Flushes dirty buffers so a run does not pay for the previous one's
 * checkpoint. Needs superuser or pg_checkpoint; skipped otherwise. */
void bench_db_checkpoint(bench_env *env);

/* ------------------------------------------------------------------ */
/* bench_stat.c                                                        */

/* Monotonic clock in nanoseconds. */
int64_t bench_now_ns(void);

/* A growable list of latencies in nanoseconds. */
typedef struct bench_samples {
    int64_t *v;
    size_t n, cap;
} bench_samples;

int bench_samples_push(bench_samples *s, int64_t ns);
int bench_samples_merge(bench_samples *into, const bench_samples *from);
/* The q-quantile (0..1) in milliseconds; sorts the samples. */
double bench_samples_ms(bench_samples *s, double q);
void bench_samples_free(bench_samples *s);

/* The median of n values (n >= 1); reorders them. */
double bench_median(double *v, int n);

/* Prints the one machine-readable line of a case. */
void bench_report(const char *name, double loom, double raw);

/* Prints a progress line to stderr (prefixed with the program name). */
void bench_progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ------------------------------------------------------------------ */
/* bench_write.c: writers of identical rows, loom or raw               */

/* The statement the raw writer uses for a batch of more than one row. */
typedef enum bench_raw_form {
    BENCH_RAW_UNNEST = 0, /* INSERT ... SELECT FROM unnest($arrays) */
    BENCH_RAW_VALUES = 1  /* INSERT ... VALUES (...), (...), ... */
} bench_raw_form;

typedef struct bench_write_spec {
    const bench_env *env;
    int raw;             /* 0: loom_store_append(), 1: plain libpq */
    bench_raw_form form; /* raw only, batches of more than one row */
    size_t batch;        /* events per transaction (and per statement) */
    int threads;         /* one connection each, on distinct streams */
    double seconds;      /* stop after this long; 0: no time limit */
    size_t max_events;   /* per thread; 0: no limit */
    size_t streams;      /* 0: each stream gets 10 appends, then the next;
                            else append k goes to stream k % streams */
    unsigned run;        /* makes the stream names of this run unique */
    const char *label;   /* for progress lines */
} bench_write_spec;

typedef struct bench_write_result {
    double seconds;        /* from the start signal to the last commit */
    size_t events;         /* all threads */
    bench_samples latency; /* per transaction, all threads */
} bench_write_result;

/* Runs the writers; 0, or -1 after printing the first error. The caller
 * frees res->latency. */
int bench_write(const bench_write_spec *spec, bench_write_result *res);

/* Payload and metadata every written event carries. */
#define BENCH_PAYLOAD_BYTES 200
#define BENCH_EVENT_TYPE    "bench.AccountCredited"

/* ------------------------------------------------------------------ */
/* The cases                                                           */

/* 1 when `name` is a case of bench_append.c. */
int bench_append_has(const char *name);
/* Runs one append case; 0, or -1 after printing the error. */
int bench_append_case(bench_env *env, const bench_opts *o, const char *name);

/* Runs read_all; 0, or -1 after printing the error. */
int bench_read_all(bench_env *env, const bench_opts *o);

/* The raw read query of read_all over `table`, with its three binary
 * parameters (after.tx, after.position, limit) in `buf`. */
#define BENCH_READ_SQL(table)                                                  \
    "SELECT position, tx, stream, version, event_id, type, schema_version, "   \
    "data, metadata, recorded_at FROM " table " "                              \
    "WHERE (tx, position) > ($1, $2) "                                         \
    "AND tx < pg_snapshot_xmin(pg_current_snapshot()) "                        \
    "ORDER BY tx, position LIMIT $3"

/* Sends BENCH_READ_SQL `sql` for the page after `at` (binary results);
 * 1 or 0 (libpq failed, see PQerrorMessage). */
int bench_read_send(PGconn *c, const char *sql, loom_position at, size_t page);

/* Decodes row i of such a query into `e` as the library does, minus the
 * metadata protobuf (pointers into `r`); returns the metadata length. */
size_t bench_read_row(const PGresult *r, int i, loom_event *e);

/* Runs rebuild; 0, or -1 after printing the error. */
int bench_rebuild(bench_env *env, const bench_opts *o);

/* Runs live; 0, or -1 after printing the error. */
int bench_live(bench_env *env, const bench_opts *o);

/* Runs topics (bench_topics.c); 0, or -1 after printing the error. */
int bench_topics(bench_env *env, const bench_opts *o);

/* Runs relay (bench_relay.c) through topics, then NATS JetStream when
 * $LOOM_BENCH_NATS_URL names a server; 0, or -1 after printing the
 * error. */
int bench_relay(bench_env *env, const bench_opts *o);

/* Runs saga (bench_saga.c): three-step sagas end to end on topics, and the
 * raw writes of a hand-made orchestration. 0 or -1 (printed). */
int bench_saga(bench_env *env, const bench_opts *o);

#endif /* LOOM_BENCH_H */
