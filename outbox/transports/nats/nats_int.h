/*
 * Private to the NATS JetStream transport (loom/nats.h).
 *
 *   nats.c     the transport: open and close, the runtime component, the
 *              ops table, the queue of events for the loop (uv_async)
 *              and the registry through which libnats' threads find a
 *              live transport
 *   url.c      the URL and its options
 *   codec.c    names (topics, patterns, subjects, durable consumers) and
 *              messages (loom_message <-> natsMsg, headers, the key)
 *   io.c       the I/O thread: publishes and acknowledgements, so the
 *              loop never writes to the socket (libnats writes in the
 *              calling thread once its buffer is full)
 *   produce.c  publishing: calls, JetStream's acknowledgements (on a
 *              libnats thread), the callbacks on the loop
 *   consume.c  consumers: durable pull consumers, a fetching thread per
 *              pattern, delivery, acknowledgement, redelivery and dead
 *              letters
 *
 * Threads and locks. The loop thread owns everything marked "loop".
 * Other threads (the I/O thread, the fetching threads, libnats' threads)
 * touch only what is marked "mu" (under tr->mu) and hand work over
 * through two queues: jobs for the I/O thread and events for the loop
 * (uv_async_send). Objects that cross threads carry their queue links
 * (nt_job, nt_event) inside them, so handing over never allocates.
 */
#ifndef LOOM_NATS_INT_H
#define LOOM_NATS_INT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <nats/nats.h>
#include <uv.h>

#include "log_int.h"
#include "loom/nats.h"
#include "runtime_int.h"
#include "transport_int.h"

typedef struct nt_transport nt_transport;
typedef struct nt_consumer nt_consumer;
typedef struct nt_sub nt_sub;
typedef struct nt_entry nt_entry;
typedef struct nt_call nt_call;
typedef struct nt_pub nt_pub;
typedef struct nt_job nt_job;
typedef struct nt_event nt_event;

/* The longest topic name (as topics://), and group name. */
#define NT_MAX_TOPIC 249
#define NT_MAX_GROUP 249

/* The object holding `ptr` as its `member`. */
#define NT_CONTAINER(ptr, type, member)                                        \
    ((type *) (void *) ((char *) (ptr) -offsetof(type, member)))

/* Buckets of the table of publishes awaiting acknowledgement. */
#define NT_PUB_BUCKETS 4096

/* ---- url.c --------------------------------------------------------------- */

typedef struct nt_config {
    char **servers; /* "nats://host:port" each; owned */
    int n_servers;
    char *stream; /* owned */
    char *prefix; /* owned */
    int64_t dedup_window_ms;
    int64_t ack_wait_ms;
    int64_t publish_timeout_ms;
    int64_t connect_timeout_ms;
    int64_t reconnect_wait_ms;
    int64_t backoff_ms;
    int64_t backoff_max_ms;
    int64_t fetch_wait_ms;
    int max_reconnect; /* -1: forever */
    size_t max_pending;
} nt_config;

/* Parses `url` into cfg (freed with loom__nt_config_free()). Errors:
 * LOOM_EINVAL (err says which part), LOOM_ENOMEM. */
loom_err loom__nt_config_parse(nt_config *cfg, const char *url, char *err,
                               size_t errlen);
void loom__nt_config_free(nt_config *cfg);

/* ---- codec.c ------------------------------------------------------------- */

/* Whether `name` is a topic name (words of ASCII letters, digits, '_' and
 * '-' separated by single dots, at most NT_MAX_TOPIC bytes). */
int loom__nt_topic_ok(const char *name);
/* The subject filters of a consumer pattern: one, or two for a trailing
 * "#" ("a.#": "<prefix>.a" and "<prefix>.a.>"). Each filters[i] is owned
 * by the caller. Errors: LOOM_EINVAL (err says why), LOOM_ENOMEM. */
loom_err loom__nt_filters(const char *prefix, const char *pattern,
                          char *filters[2], size_t *n, char *err,
                          size_t errlen);
/* The durable consumer name of (group, filter): both escaped ("_XX" for
 * every byte but ASCII letters, digits and '-'), joined by "__", and
 * shortened with a hash past 200 bytes. Owned by the caller; NULL when
 * memory runs out. */
char *loom__nt_durable(const char *group, const char *filter);
/* Whether `key` may name a user header. */
int loom__nt_header_key_ok(const char *key);
/* The bytes `m` takes on the wire with a Nats-Msg-Id of id_len bytes and
 * `extra` headers (headers and payload, the subject excepted): what the
 * server compares with its max_payload. */
size_t loom__nt_wire_size(const loom_message *m, size_t id_len,
                          const loom_header *extra, size_t n_extra);
/* Builds the natsMsg of `m` on `subject` with Nats-Msg-Id `id_text`, the
 * key and headers of `m` followed by `extra`. Errors: LOOM_ENOMEM,
 * LOOM_EIO (libnats refused). */
loom_err loom__nt_msg_build(natsMsg **out, const char *subject,
                            const char *id_text, const loom_message *m,
                            const loom_header *extra, size_t n_extra);
/* Fills e->msg (topic, key, headers, payload, id) from e->nm, with the
 * strings in e->mem. Errors: LOOM_ENOMEM. */
loom_err loom__nt_entry_decode(nt_entry *e, const char *prefix);

/* ---- nats.c: events for the loop ----------------------------------------- */

typedef enum nt_ev_type {
    NT_EV_CALL = 0, /* a publish call has its outcome */
    NT_EV_BATCH,    /* a consumer fetched messages */
    NT_EV_LOG       /* a log line from another thread */
} nt_ev_type;

struct nt_event {
    nt_ev_type type;
    nt_event *next;
};

/* A batch fetched for a consumer, allocated with its arrays: e[n], then
 * msgs (the handler's view, filled on the loop). */
typedef struct nt_batch {
    nt_event ev; /* first */
    nt_consumer *c;
    size_t n;
    const loom_message **msgs;
    nt_entry *e[];
} nt_batch;

/* Queues an event for the loop (takes tr->mu) and wakes it. */
void loom__nt_post(nt_transport *tr, nt_event *ev);
/* The same with tr->mu held. */
void loom__nt_post_locked(nt_transport *tr, nt_event *ev);
/* Logs on the loop thread (any thread; a line that cannot be queued is
 * dropped). */
void loom__nt_log(nt_transport *tr, loom_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Sets tr->errmsg (loop). */
void loom__nt_errf(nt_transport *tr, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Finishes the runtime's stop once nothing is in flight (loop). */
void loom__nt_maybe_stopped(nt_transport *tr);

/* Entered by a libnats callback with the closure the transport gave
 * libnats (its registry id, never a pointer: libnats may call after the
 * transport is gone): returns the transport, alive until
 * loom__nt_leave(), or NULL when it is closed or closing. */
nt_transport *loom__nt_enter(void *closure);
void loom__nt_leave(nt_transport *tr);

/* ---- io.c ---------------------------------------------------------------- */

typedef enum nt_job_type {
    NT_JOB_PUBLISH = 0, /* send the rest of a publish call */
    NT_JOB_ACK,         /* settle an entry: +ACK */
    NT_JOB_NAK,         /* -NAK with delay_ms */
    NT_JOB_TERM,        /* +TERM */
    NT_JOB_DEAD         /* publish the entry's dead letter */
} nt_job_type;

struct nt_job {
    nt_job_type type;
    int64_t delay_ms; /* NAK */
    nt_job *next;
};

/* Starts and stops the I/O thread. Stopping joins it; jobs still queued
 * stay queued (loom__nt_io_drain() runs or fails them). Settling jobs go
 * first; publishing jobs (PUBLISH, DEAD) wait in their own queue while
 * max_pending publishes await acknowledgement, so an acknowledgement
 * never waits behind a full window. */
loom_err loom__nt_io_start(nt_transport *tr);
void loom__nt_io_stop(nt_transport *tr);
/* Queues a job (takes tr->mu). */
void loom__nt_io_push(nt_transport *tr, nt_job *job);
void loom__nt_io_push_locked(nt_transport *tr, nt_job *job);
/* On close, after loom__nt_io_stop(): settles entries still queued on the
 * calling thread and fails publishes (LOOM_ECONN). */
void loom__nt_io_drain(nt_transport *tr);
/* Runs one settling job now (io.c and close). */
void loom__nt_settle_now(nt_transport *tr, nt_entry *e, nt_job_type type,
                         int64_t delay_ms);

/* ---- produce.c ----------------------------------------------------------- */

/* A publish of one natsMsg awaiting JetStream's acknowledgement: a
 * message of a call, or an entry's dead letter. Keyed by the natsMsg. */
struct nt_pub {
    natsMsg *m; /* the key only: libnats owns the message */
    nt_call *call;
    nt_entry *dead;
    nt_pub *next; /* in its bucket */
};

struct nt_call {
    nt_job job;  /* NT_JOB_PUBLISH */
    nt_event ev; /* NT_EV_CALL */
    loom_publish_cb cb;
    void *arg;
    size_t n;
    natsMsg **msgs; /* NULL once libnats has it */
    nt_pub *pubs;   /* one per message */
    size_t sent;    /* io thread: messages handed to libnats */
    /* mu. Messages without an outcome yet, plus one while the call is on
     * the I/O thread's queue: that thread still reads and writes the call
     * after handing its last message to libnats, whose acknowledgement
     * (and so the loop's finish, which frees the call) may come first. */
    size_t unresolved;
    size_t acked;
    loom_err rc; /* the first failure */
    /* loop */
    nt_call *prev, *next; /* tr->calls */
};

loom_err loom__nt_publish(nt_transport *tr, const loom_message *msgs, size_t n,
                          loom_publish_cb cb, void *arg);
/* io thread: hands the call's remaining messages to libnats while fewer
 * than max_pending await acknowledgement; returns 0 when it must wait. */
int loom__nt_publish_some(nt_transport *tr, nt_call *call);
/* io thread: publishes an entry's dead letter. */
void loom__nt_publish_dead(nt_transport *tr, nt_entry *e);
/* Resolves `k` messages of a call with rc (mu held). */
void loom__nt_call_resolve_locked(nt_transport *tr, nt_call *call, size_t k,
                                  loom_err rc);
/* The I/O thread's queue lets go of a call (mu held): its last use. */
void loom__nt_call_release_locked(nt_transport *tr, nt_call *call);
/* Loop: the callback of a resolved call, and its memory. */
void loom__nt_call_finish(nt_transport *tr, nt_call *call);
/* Table of publishes awaiting acknowledgement (mu held). */
void loom__nt_pub_add(nt_transport *tr, nt_pub *p);
int loom__nt_pub_remove(nt_transport *tr, nt_pub *p);
/* The jsPubAckHandler given to libnats. */
void loom__nt_on_pub_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa,
                         jsPubAckErr *pae, void *closure);
/* Close: fails every call still open (their callbacks run now) and
 * forgets every awaited publish. */
void loom__nt_produce_close(nt_transport *tr);
/* The server's max_payload (any thread). Cached: libnats holds its
 * connection lock while it reconnects, up to connect_timeout_ms per
 * attempt, and the loop must not wait for that. */
int64_t loom__nt_max_payload(nt_transport *tr);
/* libnats' last error text on this thread, or the text of s. */
const char *loom__nt_why(natsStatus s);
/* Maps a libnats status to a loom_err. */
loom_err loom__nt_err(natsStatus s);

/* ---- consume.c ----------------------------------------------------------- */

/* A delivered message, from the fetch until it is settled. */
struct nt_entry {
    loom_message msg; /* first: the handler's pointer is the entry's */
    uint32_t magic;
    nt_consumer *c;
    natsMsg *nm;   /* owned */
    nt_job job;    /* settling */
    nt_pub pub;    /* its dead letter's publish */
    natsMsg *dead; /* the dead letter, until libnats has it */
    uint64_t deliveries;
    void *mem; /* owned: topic, key, headers */
    int state; /* NT_E_*: loop */
    int skip;  /* a dead letter under a wildcard: acknowledge unseen */
    nt_entry *prev, *next; /* loop: c->held */
};

#define NT_ENTRY_MAGIC 0x6e617473u

enum {
    NT_E_FETCHED = 0, /* in a batch on its way to the loop */
    NT_E_HANDLER,     /* with the handler */
    NT_E_SETTLING     /* acknowledged, failed or dead: the I/O thread has
                         it */
};

/* A pattern's JetStream consumer, the inbox its messages are pulled to
 * and the thread pulling them. */
struct nt_sub {
    nt_consumer *c;
    char *filter;       /* the subject filter; owned */
    char *durable;      /* owned */
    char *inbox;        /* where pulled messages arrive; owned */
    char *next_subject; /* the JetStream API subject to pull from; owned */
    int wild;           /* the pattern has a wildcard: skip ".dlq" topics */
    natsSubscription *sub;
    pthread_t thread;
    int started;
};

struct nt_consumer {
    nt_transport *tr;
    loom_consumer *handle;
    char *group; /* owned */
    unsigned max_deliveries;
    size_t batch;
    size_t max_in_flight;
    nt_sub *subs;
    size_t n_subs;
    pthread_cond_t cond; /* fetching threads wait here for room */
    /* mu */
    size_t in_flight; /* fetched or being fetched, not yet settled */
    unsigned refs;    /* the handle, and every entry not yet settled */
    int stop;         /* fetching threads leave */
    /* loop */
    nt_entry *held; /* with the handler */
    int stopped;    /* runtime stop: no more fetching */
    nt_consumer *next;
};

loom_err loom__nt_subscribe(nt_transport *tr, const loom_consumer_config *cfg,
                            loom_consumer *h, nt_consumer **out);
void loom__nt_unsubscribe(nt_consumer *c);
loom_err loom__nt_ack(nt_consumer *c, const loom_message *m);
loom_err loom__nt_fail(nt_consumer *c, const loom_message *m,
                       const char *error);
/* Dead-letters m now (the max_deliveries path, whatever its deliveries). */
loom_err loom__nt_reject(nt_consumer *c, const loom_message *m,
                         const char *error);
/* Loop: hands a fetched batch to the handler. */
void loom__nt_deliver(nt_transport *tr, nt_batch *b);
/* Runtime stop: stop fetching (without blocking). */
void loom__nt_consumer_stop(nt_consumer *c);
/* An entry is settled (any thread, mu not held): frees it, and its
 * consumer with the last reference. */
void loom__nt_entry_release(nt_entry *e);

/* ---- nats.c: the transport ----------------------------------------------- */

struct nt_transport {
    loom_runtime *rt;
    uv_loop_t *loop;
    nt_config cfg;
    natsConnection *nc;
    jsCtx *js;
    loom__component *comp;
    uv_async_t *async; /* own allocation: freed by its close callback */
    pthread_mutex_t mu;
    pthread_cond_t io_cond; /* the I/O thread waits here */
    pthread_t io;
    int io_started;
    int js_async; /* io thread: a js_PublishMsgAsync() succeeded */
    /* mu */
    nt_event *ev_head, *ev_tail;
    nt_job *settle_head, *settle_tail; /* ACK, NAK, TERM */
    nt_job *pubq_head, *pubq_tail;     /* PUBLISH, DEAD */
    int io_stop;
    int64_t max_payload;  /* the server's, as of the last (re)connection */
    unsigned reconnects;  /* reconnections so far */
    size_t pub_in_flight; /* publishes awaiting acknowledgement */
    nt_pub *pubs[NT_PUB_BUCKETS];
    /* loop */
    nt_consumer *consumers;
    nt_call *calls; /* open: not yet called back */
    int stopping;
    loom__done_fn stop_done;
    int dispatching; /* inside the async callback */
    int closed;
    char errmsg[512];
    /* the registry's lock (nats.c) */
    uintptr_t reg_id;
    unsigned reg_active; /* libnats callbacks inside */
    nt_transport *reg_next;
};

#endif /* LOOM_NATS_INT_H */
