/*
 * loomctl, the Eventloom operator CLI: what every command shares. The
 * global options, the exit codes, argument parsing, error reporting and
 * the two kinds of database connection (the event store for reads and
 * migrations, a plain libpq connection for catalog queries).
 *
 * Every function that can fail prints why on stderr itself, as
 * "loomctl: <what failed>: <cause>", and returns an exit code or NULL, so
 * commands only pass the code up.
 */
#ifndef LOOMCTL_H
#define LOOMCTL_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "buf.h"
#include "loom/eventstore.h"
#include "loom/registry.h"

/* Exit codes. */
#define CTL_OK    0 /* done */
#define CTL_ERR   1 /* a runtime error: database, I/O, memory */
#define CTL_USAGE 2 /* bad command line */

/* Most --types shared objects on one command line. */
#define CTL_MAX_TYPES 32

/* The global options, set wherever they appear on the command line. */
typedef struct ctl {
    const char *db; /* --db, or NULL for $LOOM_DATABASE_URL */
    /* --role: the PostgreSQL role loomctl's own connections work as
     * (loom_reader, loom_admin, ...), or NULL for the login's rights. */
    const char *role;
    int json; /* --json: one JSON object per line */
    const char *types[CTL_MAX_TYPES];
    size_t ntypes;
    loom_registry *reg; /* decoder for payloads; see ctl_registry() */
    const char *cmd;    /* the command being run, for messages */
    int cmd_index;      /* its index in argv, skipped by ctl_args_next() */
    const char *sub;    /* its subcommand ("list"), or NULL */
    int sub_index;      /* the subcommand's index in argv, skipped too */
} ctl;

/* ------------------------------------------------------------------ */
/* Messages (main.c)                                                   */

/* Prints "loomctl: <message>" and a newline on stderr. Line breaks and
 * other control characters inside the message (libpq's are multi-line)
 * become spaces, so each error is one line. */
void ctl_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ctl_fail() for an error the database reported with `sqlstate` (NULL or
 * "" when there is none). Every such error goes through here, so that a
 * refused privilege (42501) says which role may do what. */
void ctl_fail_sql(const char *sqlstate, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prints "loomctl: <command> [<subcommand>]: <message>" and the
 * command's synopsis on stderr; returns CTL_USAGE. */
int ctl_usage_error(const ctl *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ------------------------------------------------------------------ */
/* Arguments (args.c)                                                  */

/* A command's option: "--name" with an argument or not. */
typedef struct ctl_opt {
    const char *name; /* with the dashes: "--limit" */
    int has_arg;
    int id; /* returned by ctl_args_next(), > 0 */
} ctl_opt;

/* What ctl_args_next() found. */
#define CTL_ARG_END 0    /* no more arguments */
#define CTL_ARG_POS (-1) /* a positional argument, in *val */
#define CTL_ARG_BAD (-2) /* a usage error, already reported */

typedef struct ctl_args {
    int argc;
    char **argv;
    int i;        /* next index */
    int only_pos; /* after "--" */
} ctl_args;

/* Starts iterating over argv[1..argc-1]. */
void ctl_args_init(ctl_args *a, int argc, char **argv);

/*
 * Returns the next option's id (its argument in *val), CTL_ARG_POS,
 * CTL_ARG_END or CTL_ARG_BAD. Global options (--db, --json, --types) are
 * applied to `c` and skipped, wherever they appear; so is the command
 * name. Accepts "--name value" and "--name=value"; "--" ends the options.
 */
int ctl_args_next(ctl *c, ctl_args *a, const ctl_opt *opts, const char **val);

/*
 * For commands with subcommands (`parked list`): finds the first
 * positional argument, skipping global options and `opts` (the options of
 * every subcommand, with their values), and looks it up in `names`
 * (NULL-terminated). On success sets c->sub and c->sub_index, so that
 * ctl_args_next() skips it, and *which to its index in `names`. A
 * missing or unknown subcommand is a usage error.
 */
int ctl_args_sub(ctl *c, int argc, char **argv, const ctl_opt *opts,
                 const char *const *names, int *which);

/* Parses a whole decimal number in [min, max] for option `opt` into *out;
 * anything else (empty, trailing text, out of range) is a usage error. */
int ctl_parse_i64(const ctl *c, const char *opt, const char *s, int64_t min,
                  int64_t max, int64_t *out);

/* Parses an unsigned 64-bit decimal number, as ctl_parse_i64(). */
int ctl_parse_u64(const ctl *c, const char *opt, const char *s, uint64_t *out);

/* Checks a --category value: not empty, valid UTF-8, no '-'. */
int ctl_check_category(const ctl *c, const char *opt, const char *s);

/* ------------------------------------------------------------------ */
/* Connections (conn.c)                                                */

/* The connection string in use: --db, else $LOOM_DATABASE_URL, else NULL
 * (libpq's defaults). */
const char *ctl_conninfo(const ctl *c);

/* 1 when libpq reads `conninfo` as a connection string (a URL, or
 * key=value settings), 0 when it is a bare database name. */
int ctl_conninfo_is_string(const char *conninfo);

/* Writes where `conninfo` points ("host=... port=... dbname=...") into
 * `out`, with any password shown as ***. */
void ctl_conninfo_describe(const char *conninfo, char *out, size_t len);

/*
 * The connection string for the connections the library opens from a
 * string alone (a relay's runtime, relay and transport; a projection
 * rebuild), so that --role reaches them too: `conninfo` (NULL: libpq's
 * environment and defaults) as key='value' settings plus
 * options='-c role=ROLE', after the options it or $PGOPTIONS gave. With
 * `role` NULL, a copy of `conninfo`. On success *out is NULL or a string
 * the caller frees with loom_free(); on failure (an unparsable string, no
 * memory) prints why and returns CTL_ERR.
 */
int ctl_conninfo_with_role(const char *conninfo, const char *role, char **out);

/* Appends "-c role=ROLE" to a libpq `options` value, escaped as the server
 * splits it. */
void ctl_role_option(loom__buf *b, const char *role);

/* Opens the event store in `mode`. NULL after printing why. */
loom_store *ctl_store_open(const ctl *c, loom_migrate_mode mode);

/* Opens a libpq connection for catalog queries (client_encoding UTF8).
 * NULL after printing why. */
PGconn *ctl_pg_open(const ctl *c);

/*
 * Runs one parameterised statement (text parameters and results). On
 * failure prints "loomctl: <what>: <server message>" with the fix for a
 * missing schema, and returns NULL. The caller PQclears the result.
 */
PGresult *ctl_pg_exec(PGconn *pg, const char *what, const char *sql,
                      int nparams, const char *const *params);

/* Loads every --types object into c->reg (created on first use). */
int ctl_registry(ctl *c);

/* ------------------------------------------------------------------ */
/* Commands                                                            */

int ctl_cmd_migrate(ctl *c, int argc, char **argv);
int ctl_cmd_streams(ctl *c, int argc, char **argv);
int ctl_cmd_read(ctl *c, int argc, char **argv);
int ctl_cmd_tail(ctl *c, int argc, char **argv);
int ctl_cmd_stats(ctl *c, int argc, char **argv);
int ctl_cmd_parked(ctl *c, int argc, char **argv);
int ctl_cmd_projection(ctl *c, int argc, char **argv);
int ctl_cmd_topics(ctl *c, int argc, char **argv);
int ctl_cmd_outbox(ctl *c, int argc, char **argv);
int ctl_cmd_relay(ctl *c, int argc, char **argv);
int ctl_cmd_saga(ctl *c, int argc, char **argv);

#endif /* LOOMCTL_H */
