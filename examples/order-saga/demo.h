/*
 * loom-order-saga: the demo program's parts.
 *
 *   main.c       arguments, the run, the order of the sections
 *   roles.c      child processes: one role each (--role), and the
 *                parent's side (spawn, read their lines, stop, kill)
 *   scenarios.c  the shop's opening stock and credit, the orders placed
 *   report.c     the tables: saga timelines, the read model, the replay
 *   figures.c    throughput and latency of the burst, conflicts
 */
#ifndef ORDERSAGA_DEMO_H
#define ORDERSAGA_DEMO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <libpq-fe.h>

#include "services.h"

#define DEMO_TAG_MAX 16

typedef struct demo_opts {
    int processes;          /* --processes */
    int verbose;            /* --verbose */
    int burst;              /* --burst N: orders in the burst */
    const char *transport;  /* --transport URL */
    char tag[DEMO_TAG_MAX]; /* --run TAG, else a fresh one */
} demo_opts;

/* A child process playing one role, and its stdout pipe. */
typedef struct demo_child {
    const char *role;
    pid_t pid;
    int out;       /* read end of its stdout */
    char buf[256]; /* a partial line */
    size_t len;
    os_counts counts; /* reported when it stopped */
} demo_child;

/* ---- roles.c ---- */
/* Runs `--role NAME [--hang-on ORDER]` (after exec); returns the exit
 * status. */
int demo_role_main(const demo_opts *o, const char *role, const char *hang);
/* Starts a child in `role` (hang: an order id, or NULL); 0 or -1. */
int demo_spawn(demo_child *c, const demo_opts *o, const char *self,
               const char *role, const char *hang);
/* Waits up to ms for the next line "want..." from c; 0 when it came. */
int demo_expect(demo_child *c, const char *want, int ms);
/* SIGKILL, and reaped. */
void demo_kill(demo_child *c);
/* SIGTERM: a graceful stop; reads its counts. 0 when it exited cleanly. */
int demo_stop(demo_child *c);

/* ---- scenarios.c ---- */
typedef struct demo_run demo_run;
/* What the scenarios need from main: the store, the tag, and how to
 * hand the payment service to a child and back. */
struct demo_run {
    const demo_opts *o;
    const char *self;
    loom_store *s;
    PGconn *pg;
    os_host *host;      /* one-process mode */
    demo_child kids[5]; /* --processes: orchestrator, order, payment,
                           inventory, summary */
    int n_kids;
    demo_child victim; /* one-process mode: the kill scenario's child */
    os_counts victim_counts;
    int64_t burst_first, burst_n; /* order numbers of the burst */
    int failures;                 /* checks the demo itself saw fail */
};
/* Creates the topics (topics:// only) and the shop's stock and credit. */
int demo_setup(demo_run *r);
/* Runs every scenario, printing each saga's timeline. 0 on success. */
int demo_scenarios(demo_run *r);

/* ---- report.c ---- */
void demo_heading(const char *title);
/* Waits until saga `id` is final; its state name into state. 0 when it
 * is within ms. */
int demo_wait_saga(PGconn *pg, const char *id, char *state, size_t len, int ms);
void demo_timeline(PGconn *pg, const char *id);
/* Waits until every order of the run has its final status in the read
 * model, then prints it. */
int demo_read_model(demo_run *r);
/* Rebuilds the read model by replay and compares. */
int demo_replay(demo_run *r);

/* ---- figures.c ---- */
void demo_figures(demo_run *r, const os_counts *counts);

/* Helpers. */
PGresult *demo_query(PGconn *pg, const char *sql, int n,
                     const char *const *params);
void demo_sleep_ms(int ms);
int64_t demo_now_ms(void);

#endif /* ORDERSAGA_DEMO_H */
