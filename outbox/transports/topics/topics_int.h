/*
 * Private to the topics transport (loom/topics.h).
 *
 *   topics.c   the transport: URL, open/close, the ops table, retention
 *   produce.c  publishing: calls queue, coalesce into one transaction per
 *              batch, one loom.topic_publish() per topic in it
 *   group.c    a consumer's membership: join, heartbeat, assignment
 *   consume.c  a consumer's data path: fetch, deliver, acknowledge,
 *              commit (offsets, redeliveries, dead letters); its
 *              fetches are in consume_fetch.c, its commits in
 *              consume_commit.c (consume_int.h: what the three share)
 *
 * A consumer has two connections: membership traffic (heartbeats) must not
 * wait behind a long commit, or a busy member would miss its session
 * timeout.
 */
#ifndef LOOM_TOPICS_INT_H
#define LOOM_TOPICS_INT_H

#include <stdint.h>

#include <libpq-fe.h>
#include <uv.h>

#include "buf.h"
#include "headers.h"
#include "loom/topics.h"
#include "pgconn.h"
#include "runtime_int.h"
#include "store_int.h"
#include "transport_int.h"
#include "tx_int.h"

typedef struct tp_transport tp_transport;
typedef struct tp_consumer tp_consumer;

/* ---- connections (../../pgconn.h) ------------------------------------ */

typedef loom__pgconn tp_conn;

/* Opens one of the transport's connections ("producer", "group", ...):
 * loom__pgconn_open() with the transport's conninfo and handle count. */
loom_err loom__tp_conn_open(tp_conn *c, tp_transport *tr, const char *role,
                            char *err, size_t errlen);

/* ---- topics.c -------------------------------------------------------- */

typedef struct tp_producer tp_producer;

struct tp_transport {
    loom_runtime *rt;
    char *conninfo; /* the libpq URI, transport options removed */
    loom_topics_acks acks;
    unsigned linger_ms;
    unsigned batch;
    uint64_t retention_ms;
    /* Consumers' session timeout unless their own config sets one; 0:
     * 10000. */
    unsigned session_timeout_ms;
    loom_partitioner_fn partitioner;
    void *partitioner_arg;
    tp_producer *producer; /* created on the first publish */
    tp_consumer *consumers;
    loom__component *comp;
    tp_conn admin; /* retention, partition counts; opened on demand */
    int admin_open;
    uv_timer_t retention; /* every retention_ms */
    int retention_started;
    unsigned open_handles; /* closes pending; memory waits for them */
    int stopping;          /* the runtime asked us to stop */
    int closed;            /* loom_transport_close() called */
    loom__done_fn stop_done;
    loom_listener *meta_listener; /* "loom_topics": partition counts */
    /* Partition counts for the custom partitioner. */
    struct tp_count {
        char *topic;
        int32_t n;
    } * counts;
    size_t n_counts;
};

/* Reads the options of a "topics://" URL (`url` starts with it) into
 * tr's acks, linger_ms, batch, retention_ms and session_timeout_ms, and the
 * rest into tr->conninfo (owned; NULL when nothing is left). Errors:
 * LOOM_EINVAL (err names the option), LOOM_ENOMEM. */
loom_err loom__tp_parse_url(tp_transport *tr, const char *url, char *err,
                            size_t errlen);

/* Every libuv handle of the transport and its consumers counts in
 * open_handles; its close callback calls this, which frees the transport
 * once it is closed and the last handle is gone. */
void loom__tp_released(tp_transport *tr);
/* Called when a stopping consumer or the producer has nothing in flight:
 * finishes the runtime's stop when everything has. */
void loom__tp_maybe_stopped(tp_transport *tr);
/* The partition count of `topic` (blocking on the admin connection when
 * not cached). Errors: LOOM_ENOTFOUND, LOOM_ECONN, LOOM_EDB. */
loom_err loom__tp_partition_count(tp_transport *tr, const char *topic,
                                  int32_t *n);

/* ---- produce.c ------------------------------------------------------- */

loom_err loom__tp_publish(tp_transport *tr, const loom_message *msgs, size_t n,
                          loom_publish_cb cb, void *arg);
/* Whether a publish is queued or in flight. */
int loom__tp_producer_busy(const tp_transport *tr);
/* Stop: fails what is queued with LOOM_ECONN... no: sends it all, then
 * reports idle through loom__tp_maybe_stopped(). Close: frees everything. */
void loom__tp_producer_free(tp_transport *tr);

/* ---- group.c / consume.c --------------------------------------------- */

/* A partition assigned to this member. */
typedef struct tp_part tp_part;
typedef struct tp_entry tp_entry;
typedef struct tp_batch tp_batch;

struct tp_part {
    int32_t topic_id;
    int32_t partition;
    int64_t generation;
    int32_t max_deliveries;
    char *topic;        /* owned */
    int64_t fetch;      /* the next offset to fetch */
    int64_t committed;  /* the group's committed offset, as last written */
    int64_t committing; /* the offset the commit in flight writes; -1 */
    tp_entry *head;     /* fresh messages in hand, by offset */
    tp_entry *tail;
    tp_part *next;
};

/* A delivered message and what became of it. */
struct tp_entry {
    loom_message msg; /* first: the handler's pointer is the entry's */
    uint32_t magic;
    tp_consumer *c;
    tp_batch *batch;
    tp_part *part;  /* NULL once the partition was taken away */
    tp_entry *next; /* in part's list of fresh messages */
    int retry;      /* came from loom.topic_retries */
    int delay;      /* not delivered: parked until deliver_at */
    int queued;     /* its statement is in the commit in flight */
    int gone;       /* a redelivery whose message retention removed */
    int rejected;   /* failed for good: dead-lettered, never retried */
    int state;      /* TP_E_* */
    uint32_t deliveries;
    char *error;   /* failed: why; owned */
    void *hdr_mem; /* decoded headers; owned */
};

enum {
    TP_E_HANDLER = 0, /* in the handler's hands */
    TP_E_ACKED,       /* acknowledged, not yet committed */
    TP_E_FAILED,      /* failed or rejected, its redelivery or dead
                         letter not yet committed */
    TP_E_DONE         /* committed (or dropped): nothing left to do */
};

struct tp_batch {
    PGresult *res; /* the rows the messages point into */
    tp_entry *entries;
    size_t n;
    size_t unfinished; /* entries not TP_E_DONE */
    size_t unresolved; /* entries still with the handler */
    size_t linked;     /* entries still in their partition's list */
    tp_batch *next;
};

typedef enum tp_cstate {
    TP_C_IDLE = 0, /* nothing in flight on the data connection */
    TP_C_FETCH,    /* fetching fresh messages */
    TP_C_RETRIES,  /* fetching redeliveries */
    TP_C_COMMIT,   /* a commit transaction */
    TP_C_ARM,      /* arming wake-ups before sleeping */
    TP_C_SLEEP,    /* caught up: waiting for a wake-up or the timer */
    TP_C_BACKOFF,  /* after a failure */
    TP_C_DONE
} tp_cstate;

struct tp_consumer {
    tp_transport *tr;
    loom_consumer *handle;
    loom_consume_fn fn;
    loom_topics_tx_fn tx_fn;
    void *arg;
    char *group;
    char **patterns;
    size_t n_patterns;
    loom_topics_consumer_config topts;
    size_t batch;
    size_t max_in_flight;
    unsigned max_deliveries; /* 0: the topic's */
    loom_uuid member;
    char member_text[37];
    /* membership (group.c) */
    tp_conn gconn;
    int64_t generation;
    int g_busy;            /* a membership request in flight */
    int g_refresh;         /* re-read the assignment as soon as possible */
    uint64_t assign_epoch; /* bumped by every assignment change */
    tp_part *parts;
    size_t n_parts;
    uv_timer_t heartbeat;
    loom_listener *group_listener; /* "loom_group": rebalances */
    /* data (consume.c, consume_fetch.c, consume_commit.c) */
    tp_conn dconn;
    tp_cstate state;
    uint64_t fetch_epoch; /* assign_epoch when the fetch was sent */
    unsigned rotate;      /* first partition of the next fetch */
    tp_batch *batches;
    size_t in_flight;      /* entries with the handler */
    size_t pending;        /* resolved, not committed */
    int commit_asked;      /* loom_topics_commit(), or a batch resolved */
    uint64_t retries_due;  /* uv_now() of the next redelivery check */
    tp_entry **committing; /* the entries the commit in flight settles */
    size_t n_committing, cap_committing;
    loom_tx tx;
    tp_part **fetch_parts; /* the partitions of the fetch in flight */
    size_t n_fetch_parts;
    tp_batch *deliver_after; /* at most once: delivered after the commit */
    tp_batch *tx_batch;      /* tx mode: the batch in hand */
    size_t iso_i;            /* isolating: the entry in hand */
    size_t h_end;            /* the handler's statements in tx */
    size_t commit_base;      /* statements in tx before the commit's own */
    int isolating; /* tx mode: redelivering a failed batch one by one */
    int armed;     /* the wake-up row is in place: a publish notifies us */
    int woken;     /* a wake-up came while a statement was in flight */
    /* The last fetch drained every partition it read (fewer rows than its
     * limit), and no wake-up, poll or new assignment came since: reading
     * again finds nothing a NOTIFY would not announce, so the consumer
     * arms (or, armed, sleeps) instead. */
    int caught_up;
    uint32_t fetch_limit;      /* the limit of the fetch in flight */
    loom_listener **listeners; /* per topic of the assignment */
    int32_t *listen_ids;
    size_t n_listeners;
    uv_timer_t timer; /* sleep, backoff */
    /* Runs the data path once the acknowledgements given in one turn of
     * the loop are all in, so they settle in one commit. */
    uv_idle_t settle;
    loom__backoff backoff;
    int stopping;
    int closing;
    int open_timers; /* timer, heartbeat and settle: freed with the last */
    loom_topics_consumer_stats stats;
    tp_consumer *next;
};

/* The advisory lock class of a topic's wake-up (key 2: the topic's id):
 * publish transactions hold it shared, a consumer arming takes it
 * exclusive (consume.c, arm_stmt). */
#define LOOM__TP_WAKE_LOCK "1819242351"

#define TP_ENTRY_MAGIC 0x746f7069u

/* group.c */
loom_err loom__tp_group_join_now(tp_consumer *c, char *err, size_t errlen);
void loom__tp_group_start(tp_consumer *c);
void loom__tp_group_refresh(tp_consumer *c); /* re-read the assignment soon */
void loom__tp_group_leave(tp_consumer *c);   /* blocking, best effort */
/* Applies a loom.group_assignment() result (takes r). */
void loom__tp_group_apply(tp_consumer *c, PGresult *r);

/* consume.c */
void loom__tp_consume_kick(tp_consumer *c); /* fetch if it may */
void loom__tp_consume_drop_part(tp_consumer *c, tp_part *p);
void loom__tp_consume_stop(tp_consumer *c); /* runtime stop */
void loom__tp_consume_free(tp_consumer *c);
void loom__tp_consume_free_parts(tp_consumer *c);
loom_err loom__tp_subscribe(void *state, const loom_consumer_config *cfg,
                            loom_consumer *h, const void *extra, void **cstate);
loom_err loom__tp_consume_ack(tp_consumer *c, const loom_message *m);
loom_err loom__tp_consume_fail(tp_consumer *c, const loom_message *m,
                               const char *error);
/* Dead-letters m in the next commit, whatever its deliveries. */
loom_err loom__tp_consume_reject(tp_consumer *c, const loom_message *m,
                                 const char *error);
void loom__tp_consume_listen(tp_consumer *c); /* LISTEN per assigned topic */

#endif /* LOOM_TOPICS_INT_H */
