/*
 * loomctl topics: what its subcommands share. Private to cmd_topics.c
 * (dispatch, create, alter, retention), topics_show.c (list, describe),
 * topics_lag.c (lag, reset), topics_dlq.c (dead letters) and
 * topics_fmt.c (these helpers).
 *
 * Changes go through the C API of loom/topics.h on an event store
 * handle, so loomctl checks and does exactly what a program would;
 * listings are catalog queries on a plain libpq connection.
 */
#ifndef LOOMCTL_TOPICS_H
#define LOOMCTL_TOPICS_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "buf.h"
#include "loom/topics.h"
#include "loomctl.h"

/* The longest retention or deduplication window loomctl and the library
 * accept: 100 years, in ms. */
#define CTL_TOPICS_MAX_MS INT64_C(3155760000000)

/*
 * The bytes a partition stores now, as SQL over `tp` (a row of
 * loom.topic_partitions) and `m` (its message at tp.start_offset, LEFT
 * JOINed by CTL_TOPICS_FIRST_JOIN): all bytes ever published less what
 * came before the first stored message (each message records the running
 * total in pos). One index lookup per partition, no scan.
 */
#define CTL_TOPICS_STORED_BYTES                                                \
    "(tp.bytes - coalesce(m.pos - octet_length(m.payload) "                    \
    "- coalesce(octet_length(m.key), 0) "                                      \
    "- coalesce(octet_length(m.headers), 0), tp.bytes))"
#define CTL_TOPICS_FIRST_JOIN                                                  \
    "LEFT JOIN loom.topic_messages m ON m.topic_id = tp.topic_id "             \
    "AND m.partition = tp.partition AND m.\"offset\" = tp.start_offset "

/* The subcommands; argv still holds "topics" and the subcommand, which
 * ctl_args_next() skips. Each returns an exit code. */
int ctl_topics_create(ctl *c, int argc, char **argv);
int ctl_topics_alter(ctl *c, int argc, char **argv);
int ctl_topics_retention(ctl *c, int argc, char **argv);
int ctl_topics_list(ctl *c, int argc, char **argv);
int ctl_topics_describe(ctl *c, int argc, char **argv);
int ctl_topics_lag(ctl *c, int argc, char **argv);
int ctl_topics_reset(ctl *c, int argc, char **argv);
int ctl_topics_dlq(ctl *c, int argc, char **argv);

/*
 * Reports a failed loom/topics.h call on `s` and returns the exit code:
 * a bad argument the library caught before asking the database (no
 * SQLSTATE) is a usage error (2); anything the database refused (an
 * unknown topic, fewer partitions than now) or a failure is 1.
 */
int ctl_topics_api_fail(const ctl *c, loom_store *s, loom_err rc);

/* Checks a name given on the command line that goes to SQL as text:
 * non-empty UTF-8 (PostgreSQL refuses other bytes with a message that
 * would not say which argument was wrong). `what` is "TOPIC", "GROUP". */
int ctl_topics_check_text(const ctl *c, const char *what, const char *s);

/* A duration in ms as its largest exact unit: "7d", "36h", "90s",
 * "1500ms". */
void ctl_topics_fmt_ms(int64_t ms, char out[32]);

/* A topic's retention for tables: "forever", "7d", "1.0 GB", or
 * "7d, 1.0 GB" (age and size per partition; 0 is no limit). */
void ctl_topics_fmt_retention(int64_t ms, int64_t bytes, char *out, size_t len);

/* The first line of `s`, at most `max` bytes of it cut on a UTF-8
 * boundary, with "…" when anything was left out; into `b` (reset). */
void ctl_topics_first_line(loom__buf *b, const char *s, size_t max);

/* `s` made safe to print (see termtext.h), valid until the next use of
 * `b`: group names are any UTF-8 and may hold escape sequences. */
const char *ctl_topics_shown(loom__buf *b, const char *s);

/* Prints "key  value" with the value made safe for a terminal. */
void ctl_topics_kv(const char *key, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Writes the JSON line in `b` (plus a newline) to stdout, or reports an
 * allocation failure; returns CTL_OK or CTL_ERR. */
int ctl_topics_json_out(loom__buf *b, const char *what);

/* Looks up topic `name` on `pg`: 1 when it exists, 0 after printing that
 * it does not (with the command that creates it), -1 after a failed
 * query. */
int ctl_topics_exists(const ctl *c, PGconn *pg, const char *name);

#endif /* LOOMCTL_TOPICS_H */
