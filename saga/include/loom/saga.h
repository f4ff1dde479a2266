/*
 * Sagas: work that spans services, run durably by an orchestrator.
 *
 * A saga is a sequence of steps. Each step sends a command to a
 * participant (a service that owns some aggregates) and waits for its
 * reply. When a step fails for good (its retry policy is exhausted, or the
 * participant answered with a non-retryable failure), the steps that had
 * completed are undone by their compensations, in reverse order.
 *
 * A saga is defined in a .proto file (a `service` whose rpcs are the
 * steps; see codegen/proto/loom/options.proto and docs/sagas.md), from
 * which protoc-gen-loom generates a loom_saga_def table and the typed
 * prototypes of the handlers you write. This header is what those tables
 * and handlers plug into; you rarely fill the tables by hand.
 *
 * Durability
 *   Every transition of an instance (a reply received, a timeout, a retry,
 *   an operator's request) is ONE PostgreSQL transaction that updates the
 *   instance row (checked against its version, so two orchestrators never
 *   both advance one instance), appends to its log, marks the reply in the
 *   orchestrator's inbox, and puts the next command in the outbox. A crash
 *   anywhere loses nothing: the instance, its deadline and the command in
 *   flight are in the database; a restarted orchestrator resumes.
 *
 * The wire (what a participant written in any language must honour)
 *   A command is a message on the participant's topic, keyed by the saga
 *   id, whose type (header "x-type") is the command's protobuf full name,
 *   whose payload is the command, and whose headers are
 *   LOOM_SAGA_HDR_ID, _TYPE, _STEP, _ATTEMPT and _REPLY_TO. Its reply goes
 *   to the _REPLY_TO topic, keyed by the saga id, with headers _ID, _TYPE,
 *   _STEP, _CORRELATION (the command's message id) and _OUTCOME
 *   ("success" with the step's reply type as payload, or "failure" with
 *   the failure type (or nothing) as payload and _FAILURE_CODE /
 *   _FAILURE_MESSAGE).
 */
#ifndef LOOM_SAGA_H
#define LOOM_SAGA_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "loom/aggregate.h"
#include "loom/error.h"
#include "loom/eventstore.h"
#include "loom/export.h"
#include "loom/runtime.h"
#include "loom/transport.h"
#include "loom/tx.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The life of a saga instance:
 *
 *   start ──▶ RUNNING(step 0) ─▶ RUNNING(step 1) ─▶ ... ─▶ COMPLETED
 *                │ a step fails for good (failure reply that is not
 *                │ retryable, or attempts exhausted by failures/timeouts)
 *                ▼
 *            COMPENSATING(the completed steps, last first) ─▶ COMPENSATED
 *                │ a compensation exhausts its own retries
 *                ▼
 *            COMPENSATION_FAILED ── operator: retry ──▶ COMPENSATING
 *                                 ── operator: skip  ──▶ COMPENSATING (next)
 *                                 ── operator: abort ──▶ ABORTED
 *
 * RUNNING and COMPENSATING wait either for a reply (until the step's
 * timeout) or for a retry's backoff to pass. A step that failed with a
 * failure reply is not compensated (the participant said it did nothing);
 * one whose last attempt timed out is, because its outcome is unknown:
 * compensations must accept "nothing to undo". The last forward step has
 * no compensation (loom_saga_def_check() refuses one), so give it a
 * retry policy that outlasts its participant's outages (docs/sagas.md).
 * A failure at step 0 (or
 * where no completed step has a compensation) goes straight to
 * COMPENSATED. COMPLETED, COMPENSATED and ABORTED are final; an operator
 * may abort any saga that is not final.
 *
 * The values are stored (as their names, in loom.saga_instances.state) and
 * never renumbered. There is no separate STARTED state: a saga's first
 * command commits with its instance row, so a stored saga is RUNNING.
 */
typedef enum loom_saga_state {
    LOOM_SAGA_RUNNING = 1,
    LOOM_SAGA_COMPENSATING = 2,
    LOOM_SAGA_COMPLETED = 3,
    LOOM_SAGA_COMPENSATED = 4,
    LOOM_SAGA_COMPENSATION_FAILED = 5,
    LOOM_SAGA_ABORTED = 6
} loom_saga_state;

/* "RUNNING", ..., or "UNKNOWN": a string literal, never NULL. */
LOOM_API const char *loom_saga_state_name(loom_saga_state s);

/* The state called `name` ("RUNNING", exact case), or 0 when there is
 * none or name is NULL. */
LOOM_API loom_saga_state loom_saga_state_parse(const char *name);

/* Headers of commands and replies (see "The wire" above). */
#define LOOM_SAGA_HDR_ID              "loom-saga-id"
#define LOOM_SAGA_HDR_TYPE            "loom-saga-type"
#define LOOM_SAGA_HDR_STEP            "loom-saga-step"
#define LOOM_SAGA_HDR_ATTEMPT         "loom-saga-attempt"
#define LOOM_SAGA_HDR_REPLY_TO        "loom-reply-to"
#define LOOM_SAGA_HDR_CORRELATION     "loom-correlation-id"
#define LOOM_SAGA_HDR_OUTCOME         "loom-outcome"
#define LOOM_SAGA_HDR_FAILURE_CODE    "loom-failure-code"
#define LOOM_SAGA_HDR_FAILURE_MESSAGE "loom-failure-message"

/* Longest saga id, in bytes (UTF-8, no control characters). */
#define LOOM_SAGA_MAX_ID 255

/* The layout of loom_saga_def and loom_participant_def that this library
 * reads; generated tables carry the version they were generated for. */
#define LOOM_SAGA_ABI_VERSION 1u

/* ------------------------------------------------------------------ */
/* Definitions (generated by protoc-gen-loom)                          */

/* Memory and facts a handler may use while it runs. Borrowed for the
 * call. */
typedef struct loom_saga_ctx loom_saga_ctx;

/*
 * `n` bytes that live until the transition that called the handler has
 * been encoded (so a handler may point a command's or the saga data's
 * fields at them). NULL when out of memory or ctx is NULL.
 */
LOOM_API void *loom_saga_alloc(loom_saga_ctx *ctx, size_t n);
/* A copy of `s` in the same memory; NULL when out of memory or NULL. */
LOOM_API char *loom_saga_strdup(loom_saga_ctx *ctx, const char *s);
/* The saga's id (borrowed, NUL-terminated), "" for NULL. */
LOOM_API const char *loom_saga_ctx_id(const loom_saga_ctx *ctx);
/* The attempt being built or answered: 1 for the first. 0 for NULL. */
LOOM_API uint32_t loom_saga_ctx_attempt(const loom_saga_ctx *ctx);

/* Why a step failed, for its `failed` handler. Borrowed for the call. */
typedef struct loom_saga_failure {
    const char *code;    /* the participant's code; "TIMEOUT" for a timeout */
    const char *message; /* its explanation, "" when none */
    uint32_t attempts;   /* attempts made */
    int timed_out;       /* 1 when the last attempt timed out */
} loom_saga_failure;

/*
 * Builds a step's command from the saga data. `command` is initialised
 * (protobuf_c_message_init) and its fields may borrow from `data`, static
 * memory or loom_saga_alloc(); it is packed once the handler returns and
 * never freed field by field. A non-OK return fails this attempt as if
 * the participant had failed with code "BUILD" (retried by the policy).
 */
typedef loom_err (*loom_saga_command_fn)(loom_saga_ctx *ctx,
                                         const ProtobufCMessage *data,
                                         ProtobufCMessage *command);
/*
 * A step's success reply: may update `data` (new field values may borrow
 * from `reply`, static memory or loom_saga_alloc(): data is packed
 * before they go away). A non-OK return leaves the reply unprocessed: it
 * is delivered again later (a bug in the handler should not fail the
 * saga).
 */
typedef loom_err (*loom_saga_reply_fn)(loom_saga_ctx *ctx,
                                       ProtobufCMessage *data,
                                       const ProtobufCMessage *reply);
/*
 * A forward step failed for good (`failure`: the participant's failure
 * payload, NULL when it sent none or the step timed out). May update
 * `data` as a reply handler does; compensation starts afterwards. A
 * non-OK return leaves the failure unprocessed: a failure reply is
 * delivered again, a timeout is handled again when its lease runs out.
 */
typedef loom_err (*loom_saga_failed_fn)(loom_saga_ctx *ctx,
                                        ProtobufCMessage *data,
                                        const ProtobufCMessage *failure,
                                        const loom_saga_failure *why);

/* A step's retry policy. Attempt n+1 (n >= 1) is sent
 * min(max_backoff_ms, initial_backoff_ms * multiplier^(n-1)) ms after
 * attempt n failed or timed out, with up to 20% random jitter. */
typedef struct loom_saga_retry {
    uint32_t max_attempts;       /* >= 1 (1: no retry) */
    uint32_t initial_backoff_ms; /* >= 1 */
    double multiplier;           /* >= 1.0 */
    uint32_t max_backoff_ms;     /* >= initial_backoff_ms */
    /* Failure codes that are not retried: the step fails at once. */
    const char *const *non_retryable;
    size_t n_non_retryable;
} loom_saga_retry;

/* One step: an rpc of the saga's service. Static data. */
typedef struct loom_saga_step {
    const char *name;        /* the rpc's name: "ReserveInventory" */
    const char *participant; /* the topic its commands go to */
    const ProtobufCMessageDescriptor *command; /* the rpc's request */
    const ProtobufCMessageDescriptor *reply;   /* the rpc's response */
    const ProtobufCMessageDescriptor *failure; /* NULL: no failure payload */
    /* Forward steps: index of its compensation in def->compensations, -1
     * for none. Compensations: -1. */
    int32_t compensation;
    uint32_t timeout_ms; /* >= 1: wait this long for a reply */
    loom_saga_retry retry;
    loom_saga_command_fn build;    /* required */
    loom_saga_reply_fn on_reply;   /* required */
    loom_saga_failed_fn on_failed; /* forward steps: required; else NULL */
} loom_saga_step;

/* A saga type. Static data, usually generated. */
typedef struct loom_saga_def {
    uint32_t abi;            /* LOOM_SAGA_ABI_VERSION */
    const char *name;        /* the service's full name: "shop.CreateOrder" */
    uint32_t version;        /* >= 1; stored with every instance it starts */
    const char *reply_topic; /* where participants reply */
    const ProtobufCMessageDescriptor *data; /* the saga's data */
    const loom_saga_step *steps; /* forward steps, in order; n >= 1 */
    size_t n_steps;
    const loom_saga_step *compensations;
    size_t n_compensations;
    const char *diagram; /* Mermaid text (may be NULL) */
    const char *source;  /* the .proto it came from (may be NULL) */
} loom_saga_def;

/*
 * Checks a definition the way the orchestrator will use it: the ABI,
 * names, topics (loom_topic_name_valid(), and no participant on the reply
 * topic), descriptors, indexes (each compensation undoes one step),
 * timeouts, retry policies and handlers.
 * Errors: LOOM_EINVAL, with the step and the rule in err (may be NULL).
 */
LOOM_API loom_err loom_saga_def_check(const loom_saga_def *def, char *err,
                                      size_t errlen);

/* ------------------------------------------------------------------ */
/* Starting a saga                                                     */

typedef struct loom_saga_start_options {
    /* The outbox its commands go through, now and for the rest of its
     * life; NULL: LOOM_OUTBOX_DEFAULT. */
    const char *outbox;
} loom_saga_start_options;

/*
 * Queues, in `tx`, the start of saga `id` of type `def` with `data`: the
 * instance row (RUNNING, step 0, attempt 1, its deadline), its log entry,
 * and step 0's command (built now by steps[0].build) in the outbox. It
 * commits, or not, with the rest of tx: start a saga in the transaction
 * of the change that calls for it. Idempotent: when a saga with this id
 * exists already, the statement does nothing (whatever its type or
 * data), so starting the same id twice is one saga. `opt` may be NULL.
 *
 * Errors (nothing queued): LOOM_EINVAL (NULL arguments, a bad id, a def
 * that fails loom_saga_def_check(), data not of def->data's type),
 * LOOM_EHANDLER (the builder failed), LOOM_ETOOBIG, LOOM_ENOMEM,
 * LOOM_EIO; loom_tx_errmsg() says why.
 */
LOOM_API loom_err loom_saga_start_tx(loom_tx *tx, const loom_saga_def *def,
                                     const char *id,
                                     const ProtobufCMessage *data,
                                     const loom_saga_start_options *opt);

/*
 * Starts saga `id` in its own transaction on `s` (blocking); *created
 * (may be NULL) is 1 when this call created it, 0 when it existed.
 * Errors: those of loom_saga_start_tx() and loom_store_commit();
 * loom_store_errmsg() says why.
 */
LOOM_API loom_err loom_saga_start(loom_store *s, const loom_saga_def *def,
                                  const char *id, const ProtobufCMessage *data,
                                  const loom_saga_start_options *opt,
                                  int *created);

/* What an instance is doing now. */
typedef struct loom_saga_info {
    char id[LOOM_SAGA_MAX_ID + 1];
    char type[256];
    uint32_t def_version;
    loom_saga_state state;
    int32_t step;     /* forward step running, or being compensated */
    uint32_t attempt; /* of that step or compensation */
    int64_t version;  /* transitions so far (1 after the start) */
    int64_t started_at, updated_at, ended_at; /* µs since 1970; 0: none */
    char last_error[512];
} loom_saga_info;

/* Reads saga `id` (blocking). Errors: LOOM_EINVAL, LOOM_ENOTFOUND,
 * LOOM_ECONN, LOOM_EDB, LOOM_ESCHEMA. */
LOOM_API loom_err loom_saga_get(loom_store *s, const char *id,
                                loom_saga_info *out);

/* What an operator may ask of a saga (loomctl saga retry|skip|abort). */
typedef enum loom_saga_op {
    LOOM_SAGA_OP_RETRY = 1, /* COMPENSATION_FAILED: run that compensation
                               again, with fresh attempts */
    LOOM_SAGA_OP_SKIP = 2,  /* COMPENSATION_FAILED: count it as done, go on
                               with the compensations before it */
    LOOM_SAGA_OP_ABORT = 3  /* not final: stop for good (ABORTED); nothing
                               more is sent, nothing is compensated */
} loom_saga_op;

/*
 * Records an operator's request for saga `id` and wakes the
 * orchestrators: a running orchestrator applies it as a transition (with
 * a log entry naming `who`) within its poll interval, usually at once.
 * Blocking. Errors: LOOM_EINVAL (NULL, a bad op, or the saga is not in a
 * state the op applies to: err names the state and what is allowed),
 * LOOM_ENOTFOUND (no such saga), LOOM_EBUSY (another request is pending
 * and this one suits the saga's state: checked after the state),
 * LOOM_ECONN, LOOM_EDB, LOOM_ESCHEMA. `err` may be NULL.
 */
LOOM_API loom_err loom_saga_request(loom_store *s, const char *id,
                                    loom_saga_op op, const char *who, char *err,
                                    size_t errlen);

/* ------------------------------------------------------------------ */
/* The orchestrator                                                    */

typedef struct loom_orchestrator loom_orchestrator;

/* Start from LOOM_ORCHESTRATOR_CONFIG_INIT; strings and the defs array
 * are copied (the defs themselves are borrowed: static tables). */
typedef struct loom_orchestrator_config {
    /* PostgreSQL; NULL: $LOOM_DATABASE_URL. */
    const char *conninfo;
    /* Where commands are read from by participants and replies come
     * back; borrowed, must outlive the orchestrator. */
    loom_transport *transport;
    /* The saga types it runs (n >= 1). Several versions of one type may
     * be given: each instance runs the version it started with. */
    const loom_saga_def *const *defs;
    size_t n_defs;
    /* Consumer group of the reply topics; orchestrators with the same
     * group share the work. NULL: "loom-saga". */
    const char *group;
    size_t batch;      /* most replies per transaction; 0: 100 */
    unsigned poll_ms;  /* look for due deadlines at least this often; 0:
                          1000 */
    unsigned lease_ms; /* a due saga claimed by an orchestrator that died is
                          taken by another after this; 0: 30000 */
    size_t cache;      /* instances kept in memory; 0: 10000 */
    /* Optional: called on the loop after a transition that ended a saga
     * (COMPLETED, COMPENSATED, ABORTED) or parked it
     * (COMPENSATION_FAILED) committed. Borrowed for the call. */
    void (*ended)(void *arg, const char *id, loom_saga_state state);
    void *ended_arg;
} loom_orchestrator_config;

#define LOOM_ORCHESTRATOR_CONFIG_INIT                                          \
    {                                                                          \
        NULL, NULL, NULL, 0, NULL, 0, 0, 0, 0, NULL, NULL                      \
    }

/*
 * Starts an orchestrator on `rt`: checks each def, records it in
 * loom.saga_definitions (for loomctl), connects (blocking, once),
 * subscribes to the defs' reply topics and serves deadlines, including
 * those that passed while no orchestrator ran. A reply that can never be
 * handled (not a saga reply, a payload that does not decode as the step's
 * reply or failure type, or a saga whose stored data does not decode) is
 * rejected: dead-lettered at once rather than after max_deliveries.
 * Close it with loom_orchestrator_close() before the transport and the
 * runtime.
 * Errors: LOOM_EINVAL (NULL arguments, a bad def, two defs with one name
 * and version), LOOM_ECONN, LOOM_ESCHEMA, LOOM_ENOMEM, and the
 * transport's; err (may be NULL) says why.
 */
LOOM_API loom_err loom_orchestrator_open(loom_runtime *rt,
                                         const loom_orchestrator_config *cfg,
                                         loom_orchestrator **out, char *err,
                                         size_t errlen);

/* Stops: a transaction in flight is abandoned (its replies come again).
 * NULL is a no-op. Loop thread. */
LOOM_API void loom_orchestrator_close(loom_orchestrator *o);

typedef struct loom_orchestrator_stats {
    uint64_t transitions;  /* committed */
    uint64_t replies;      /* replies that advanced a saga */
    uint64_t duplicates;   /* replies already processed (inbox) */
    uint64_t late;         /* replies for a step no longer waiting */
    uint64_t timeouts;     /* attempts that timed out */
    uint64_t retries;      /* attempts sent again */
    uint64_t completed;    /* sagas COMPLETED */
    uint64_t compensated;  /* sagas COMPENSATED */
    uint64_t failed;       /* sagas that reached COMPENSATION_FAILED */
    uint64_t conflicts;    /* transitions lost to another orchestrator */
    uint64_t operator_ops; /* operator requests applied */
} loom_orchestrator_stats;

/* Copies o's counters. Errors: LOOM_EINVAL (NULL). */
LOOM_API loom_err loom_orchestrator_stats_get(const loom_orchestrator *o,
                                              loom_orchestrator_stats *out);

/* ------------------------------------------------------------------ */
/* Participants                                                        */

typedef struct loom_participant_ctx loom_participant_ctx;

/*
 * A participant's handler for one step's command. To succeed, fill
 * `reply` (initialised; fields may borrow from `command`, static memory
 * or loom_participant_alloc()) and return LOOM_OK. To fail the step,
 * return loom_participant_fail(ctx, ...) after filling `failure` (NULL
 * when the step has no failure type). Events emitted with
 * loom_participant_emit() commit with either reply. LOOM_EDECODE says the
 * command can never be handled: nothing commits and it is dead-lettered
 * at once (loom_consumer_reject). Any other return is a transient error:
 * nothing commits and the command is delivered again.
 * It may run more than once for one command (after a version conflict,
 * on fresher state), so its only effects are through ctx.
 */
typedef loom_err (*loom_participant_fn)(loom_participant_ctx *ctx,
                                        const ProtobufCMessage *command,
                                        ProtobufCMessage *reply,
                                        ProtobufCMessage *failure);

/* One step a participant serves. Static data. */
typedef struct loom_participant_step {
    const char *saga; /* "shop.CreateOrder" */
    const char *step; /* "ReserveInventory" */
    const ProtobufCMessageDescriptor *command;
    const ProtobufCMessageDescriptor *reply;
    const ProtobufCMessageDescriptor *failure; /* may be NULL */
    loom_participant_fn handle;
} loom_participant_step;

/* The steps a .proto file sends to one participant. Static data. */
typedef struct loom_participant_def {
    uint32_t abi;     /* LOOM_SAGA_ABI_VERSION */
    const char *name; /* the participant: its command topic */
    const loom_participant_step *steps;
    size_t n_steps;
} loom_participant_def;

/* Memory for reply and failure fields (and anything else the handler
 * needs): `n` bytes, or a copy of `s`, that live until the reply has been
 * packed, owned by the participant and never freed by the handler. NULL
 * when out of memory, or for a NULL ctx (or s). */
LOOM_API void *loom_participant_alloc(loom_participant_ctx *ctx, size_t n);
LOOM_API char *loom_participant_strdup(loom_participant_ctx *ctx,
                                       const char *s);
/* The saga id (borrowed for the call; "" for NULL) and the attempt (1 for
 * the first; 0 for NULL) of the command. A retry of a step is a new
 * command with the same saga id and a higher attempt. */
LOOM_API const char *loom_participant_saga_id(const loom_participant_ctx *ctx);
LOOM_API uint32_t loom_participant_attempt(const loom_participant_ctx *ctx);

/*
 * Loads aggregate `id` of `t` (loom_aggregate_load()), blocking the loop,
 * on the participant's own connection: it reads committed state only, not
 * what this command (or its batch) has emitted. Errors: LOOM_EINVAL (ctx
 * NULL) and those of loom_aggregate_load(); return them from the handler
 * to have the command delivered again.
 */
LOOM_API loom_err loom_participant_load(loom_participant_ctx *ctx,
                                        const loom_aggregate_type *t,
                                        const char *id, void *state,
                                        int64_t *version);

/*
 * Queues events for `stream`, checked against `expected` when the
 * command's transaction commits (loom_tx_append()'s checks and limits,
 * applied now). A version conflict runs the handler again on fresh state
 * (up to max_conflicts times). Events without a correlation id get the
 * saga id, and without a causation id the command's message id. The
 * events are copied (ids generated now are written back into `events`).
 *
 * The events of every command of a delivered batch are written by one
 * statement after the batch's last handler, so the
 * handler's own statements (loom_participant_tx()) run before them and
 * cannot see them. Errors (nothing queued, the reason in
 * loom_tx_errmsg(loom_participant_tx(ctx))): LOOM_EINVAL (ctx NULL, or a
 * bad stream, version or event), LOOM_ETOOBIG, LOOM_ENOMEM, LOOM_EIO.
 */
LOOM_API loom_err loom_participant_emit(loom_participant_ctx *ctx,
                                        const char *stream, int64_t expected,
                                        loom_event_data *events, size_t n);

/* The command's unit of work, for any other statement (loom/tx.h): queue
 * on it, never reset, free or commit it. Borrowed for the handler's call;
 * NULL for a NULL ctx. */
LOOM_API loom_tx *loom_participant_tx(loom_participant_ctx *ctx);

/*
 * Marks the command failed with `code` (1 to 255 bytes of UTF-8 without
 * control characters: the saga's retry policy matches it against
 * non_retryable) and a printf-style message (fmt may be NULL; cut to 1024
 * bytes of valid UTF-8); returns LOOM_EHANDLER for the handler to return.
 * Returns LOOM_EINVAL (ctx NULL, a bad code) or LOOM_ENOMEM instead when
 * it cannot: returned by the handler, those are transient errors (the
 * command is delivered again), not a failure reply.
 */
LOOM_API loom_err loom_participant_fail(loom_participant_ctx *ctx,
                                        const char *code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

typedef struct loom_participant loom_participant;

/* Start from LOOM_PARTICIPANT_CONFIG_INIT; strings and arrays copied. */
typedef struct loom_participant_config {
    const char *conninfo;                    /* NULL: $LOOM_DATABASE_URL */
    loom_transport *transport;               /* borrowed */
    const loom_participant_def *const *defs; /* n >= 1 */
    size_t n_defs;
    /* Consumer group (and inbox consumer name); NULL: "<name>-participant"
     * of the first def. */
    const char *group;
    /* The outbox its replies go through; NULL: LOOM_OUTBOX_DEFAULT. */
    const char *outbox;
    size_t batch;           /* most commands per transaction; 0: 100 */
    unsigned max_conflicts; /* handler re-runs on a version conflict; 0: 10 */
} loom_participant_config;

#define LOOM_PARTICIPANT_CONFIG_INIT                                           \
    {                                                                          \
        NULL, NULL, NULL, 0, NULL, NULL, 0, 0                                  \
    }

/*
 * Runs a participant on `t`'s runtime: consumes the commands of every
 * def's topic; for each, in one transaction: the inbox mark, the events
 * the handler emitted, and the reply in the outbox. A redelivered command
 * changes nothing twice. A command that is not a saga command, or whose
 * payload does not decode as its step's command type, is rejected
 * (dead-lettered at once: see loom/inbox_consumer.h); a command for a
 * step no def serves is failed back to the transport (and dead-lettered
 * in the end: a newer process may serve it). Errors:
 * LOOM_EINVAL (NULL, a bad def, one step served twice), LOOM_ECONN,
 * LOOM_ESCHEMA, LOOM_ENOMEM, the transport's; err says why.
 */
LOOM_API loom_err loom_participant_open(loom_runtime *rt,
                                        const loom_participant_config *cfg,
                                        loom_participant **out, char *err,
                                        size_t errlen);

/* Stops consuming and frees the participant, as
 * loom_inbox_consumer_close(): a transaction in flight is abandoned and
 * unacknowledged commands come again. Close it before the transport and
 * the runtime. NULL is a no-op. Loop thread. */
LOOM_API void loom_participant_close(loom_participant *p);

typedef struct loom_participant_stats {
    uint64_t handled;    /* commands whose effects and reply committed */
    uint64_t failures;   /* of which answered with a failure */
    uint64_t duplicates; /* already processed */
    uint64_t conflicts;  /* handler re-runs after version conflicts */
    uint64_t errors;     /* commands failed back to the transport */
    uint64_t rejected;   /* commands that can never be handled:
                            dead-lettered at once */
} loom_participant_stats;

/* Copies p's counters. Errors: LOOM_EINVAL (NULL). */
LOOM_API loom_err loom_participant_stats_get(const loom_participant *p,
                                             loom_participant_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* LOOM_SAGA_H */
