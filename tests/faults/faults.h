/*
 * loom-faults: the fault campaign. Runs the order-saga services
 * (examples/order-saga, one process per role) under a steady load of
 * orders while it kills processes, crashes PostgreSQL, cuts connections
 * and restarts the transport's server, then checks from the database
 * that nothing was lost, duplicated or left stuck, and that the read
 * model equals a fresh replay. scripts/faults.sh sets up what it needs.
 *
 *   main.c    arguments, the phases, the summary and the FAULTS line
 *   fleet.c   the service processes: start, kill, restart when they die
 *   load.c    the shop and the orders, placed through every outage
 *   chaos.c   the seeded schedule of faults, and inflicting them
 *   audit.c   the checks, from the database
 */
#ifndef LOOM_FAULTS_H
#define LOOM_FAULTS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <libpq-fe.h>

#include "loom/loom.h"

typedef struct fl_opts {
    long sagas;            /* orders (and so sagas) to place */
    int kills;             /* SIGKILLs of service processes */
    int pg_restarts;       /* PostgreSQL crashed and started again */
    int terminations;      /* rounds of pg_terminate_backend */
    int nats_restarts;     /* nats-server stopped and started (nats://) */
    uint64_t seed;         /* the schedule's and the orders' */
    int rate;              /* orders placed per second */
    int backlog;           /* most sagas in flight before placing pauses */
    int drain_s;           /* how long the sagas may take to end, after */
    const char *demo;      /* the loom-order-saga binary */
    const char *pg_dir;    /* scripts/pg.sh's cluster directory */
    const char *nats_dir;  /* scripts/nats.sh's directory (nats://) */
    const char *scripts;   /* the repository's scripts/ */
    const char *transport; /* the services' transport URL */
    const char *log;       /* the services' stderr and the scripts' */
    const char *conninfo;  /* $LOOM_DATABASE_URL */
    int sabotage;          /* damage the database before the checks */
} fl_opts;

/* A splitmix64 generator: the whole schedule follows from the seed. */
typedef struct fl_rng {
    uint64_t s;
} fl_rng;
uint64_t fl_rand(fl_rng *r);
/* Uniform in [0, n). */
uint64_t fl_below(fl_rng *r, uint64_t n);

int64_t fl_now_ms(void);
void fl_sleep_ms(int ms);
/* A line of progress on stdout, prefixed with the seconds since start. */
void fl_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Milliseconds since the campaign began: the time fl_say() prints. */
int64_t fl_elapsed_ms(void);

/* ---- fleet.c ---- */
enum {
    FL_ORCHESTRATOR,
    FL_ORDER,
    FL_PAYMENT,
    FL_INVENTORY,
    FL_SUMMARY,
    FL_RELAY,
    FL_N_ROLES
};
extern const char *const fl_role_names[FL_N_ROLES];

typedef struct fl_fleet fl_fleet;
/* Starts one process per role and waits (up to 60 s) until each is
 * ready. NULL on failure (said on stderr). */
fl_fleet *fl_fleet_start(const fl_opts *o);
/* SIGKILLs the process of `role` (it is started again shortly after);
 * one killed a moment ago is first started again (up to 5 s). 0 when a
 * process was killed. */
int fl_fleet_kill(fl_fleet *f, int role, fl_rng *rng);
/* Reaps processes that died, and starts again those due. Call often. */
void fl_fleet_tend(fl_fleet *f);
/* Processes that died without being killed (exited on their own), and
 * of those, how many by a signal (a crash: SIGSEGV, a sanitizer's abort). */
int fl_fleet_exits(const fl_fleet *f);
int fl_fleet_crashes(const fl_fleet *f);
/* SIGTERM to every process, then SIGKILL after 15 s; frees f. Returns
 * how many did not stop cleanly (status other than 0, or not within the
 * 15 s): a hang or an error found on the way out (a leak, under ASan). */
int fl_fleet_stop(fl_fleet *f);

/* ---- load.c ---- */
typedef struct fl_load fl_load;
/* Opens the shop (its stock and credit, sized for o->sagas orders) and
 * the topics (topics://). NULL on failure. */
fl_load *fl_load_open(const fl_opts *o, fl_rng *rng);
/* Places the orders due by now (o->rate per second, while fewer than
 * o->backlog are in flight); an outage only delays them. Returns the
 * number placed so far (committed, known to be). */
long fl_load_step(fl_load *l, long in_flight);
long fl_load_placed(const fl_load *l);
/* Times placing failed (the database away, the connection cut) and was
 * retried, and how many of those had in fact committed (the retry found
 * the orders there). */
void fl_load_unknown(const fl_load *l, long *retried, long *committed);
const char *fl_load_shop(const fl_load *l);
void fl_load_close(fl_load *l);

/* ---- chaos.c ---- */
typedef enum fl_fault_kind {
    FL_KILL,
    FL_PG_RESTART,
    FL_TERMINATE,
    FL_NATS_RESTART
} fl_fault_kind;

typedef struct fl_fault {
    long at; /* fires once this many orders are placed */
    fl_fault_kind kind;
    int role; /* FL_KILL: whose process */
} fl_fault;

typedef struct fl_chaos fl_chaos;
/* The schedule, from the seed: faults spread over the placing of the
 * orders, kills spread over the roles. */
fl_chaos *fl_chaos_plan(const fl_opts *o, fl_rng *rng);
/* Inflicts every fault due once `placed` orders are placed. */
void fl_chaos_step(fl_chaos *c, long placed, fl_fleet *fleet);
/* Faults not yet inflicted. */
size_t fl_chaos_pending(const fl_chaos *c);
/* What was inflicted. */
typedef struct fl_inflicted {
    int kills[FL_N_ROLES];
    int kills_total;
    int pg_restarts;
    int terminations; /* rounds */
    long terminated;  /* backends */
    int nats_restarts;
} fl_inflicted;
void fl_chaos_done(const fl_chaos *c, fl_inflicted *out);
void fl_chaos_free(fl_chaos *c);

/* ---- audit.c ---- */
typedef struct fl_verdict {
    long sagas, completed, compensated;
    long stuck;         /* not COMPLETED or COMPENSATED */
    long lost_orders;   /* placed, but no saga or no OrderPlaced */
    long lost_messages; /* in the outbox, never in an inbox */
    long lost_effects;  /* an effect a saga's outcome needs, missing */
    long gaps;          /* streams whose versions are not 0..n-1 */
    long dup_effects;   /* an effect that happened twice */
    long phantoms;      /* sagas of the shop nobody placed */
    long model_diff;    /* read-model rows unequal to the replay's */
    long model_status;  /* read-model rows disagreeing with the saga */
    long stock_diff;    /* SKUs whose replay disagrees with the sagas */
    long credit_over;   /* accounts over their limit */
    long messages;      /* outbox messages seen */
    long events;        /* the shop's events */
    long lost, duplicated, replay_mismatch; /* the FAULTS totals */
} fl_verdict;
/* Waits (up to o->drain_s) for the sagas to end, printing progress;
 * returns how many are still in flight. */
long fl_audit_drain(PGconn **pg, const fl_opts *o, const char *shop,
                    long placed, fl_fleet *fleet);
/* The shop's sagas in flight now (-1 when the database cannot say). */
long fl_audit_in_flight(PGconn **pg, const fl_opts *o, const char *shop);
/* Waits (up to o->drain_s) until the read model is quiet: every order
 * in it final, nothing changed for 2 s. */
void fl_audit_settle(PGconn **pg, const fl_opts *o, const char *shop,
                     long placed);
/* The checks of orders 1..placed of the shop; prints what each found.
 * 0 when they ran. */
int fl_audit_run(const fl_opts *o, const char *shop, long placed,
                 fl_verdict *v);

/* The checks' own test (--sabotage): damages the database the way the
 * checks must catch (a saga stuck, a message's inbox mark deleted, an
 * effect appended twice, a read-model row altered). 0 when done. */
int fl_audit_sabotage(const fl_opts *o, const char *shop);

/* Installs the outbox audit trigger (faults.sent). 0 on success. */
int fl_audit_install(PGconn *pg);
/* A connection that comes back after an outage: reconnects *pg when it
 * is broken. 0 when usable. */
int fl_pg_usable(PGconn **pg, const char *conninfo);

#endif /* LOOM_FAULTS_H */
